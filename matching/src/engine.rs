//! Many books behind one `process` call. Commands arriving here are already validated by the
//! [`crate::Gateway`]: the engine knows no rules and no reference prices.

use rustc_hash::FxHashMap;

use crate::book::Loc;
use crate::book::{Book, Depth, OrderIndex};
use crate::rules::MarketRules;
use crate::securities::SecurityTable;
use crate::types::{Command, Event, Qty, RejectReason, SecurityId};

/// Security ids below this are looked up in a direct table; larger ones (sparse, unusual) in a
/// hash map, so a huge id can never make the table allocate gigabytes.
const DIRECT_IDS: u32 = 1 << 16;

/// The matching engine: one [`Book`] per open security plus a global order-id index.
#[derive(Clone, Debug)]
pub struct Engine {
    #[allow(dead_code)]
    rules: MarketRules,
    #[allow(dead_code)]
    securities: SecurityTable,
    direct: Vec<Option<Book>>,
    far: FxHashMap<u32, Box<Book>>,
    index: OrderIndex,
}

impl Engine {
    /// An engine with no open book. `rules` and `securities` (reference prices, code order) are
    /// what amends, auctions and the close need.
    pub fn new(rules: MarketRules, securities: &SecurityTable) -> Self {
        Self {
            rules,
            securities: securities.clone(),
            direct: Vec::new(),
            far: FxHashMap::default(),
            index: OrderIndex::new(Loc::NONE),
        }
    }

    /// Opens an empty book for `id` (no-op if already open, or for [`SecurityId::UNKNOWN`]).
    pub fn open_book(&mut self, id: SecurityId) {
        if id == SecurityId::UNKNOWN || self.has_book(id) {
            return;
        }
        let book = Book::new(id);
        if id.0 < DIRECT_IDS {
            let i = id.0 as usize;
            if self.direct.len() <= i {
                self.direct.resize_with(i + 1, || None);
            }
            self.direct[i] = Some(book);
        } else {
            self.far.insert(id.0, Box::new(book));
        }
    }

    /// Drops `id`'s book and all its resting orders.
    pub fn close_book(&mut self, id: SecurityId) {
        let book = if id.0 < DIRECT_IDS {
            self.direct.get_mut(id.0 as usize).and_then(Option::take)
        } else {
            self.far.remove(&id.0).map(|b| *b)
        };
        if let Some(book) = book {
            for oid in book.resting_ids() {
                self.index.remove(oid);
            }
        }
    }

    pub fn has_book(&self, id: SecurityId) -> bool {
        self.book(id).is_some()
    }

    /// Read access to one book.
    pub fn book(&self, id: SecurityId) -> Option<&Book> {
        if id.0 < DIRECT_IDS {
            self.direct.get(id.0 as usize)?.as_ref()
        } else {
            self.far.get(&id.0).map(|b| &**b)
        }
    }

    /// Processes one command, APPENDING its events to `out` (never clears it). A phase change
    /// applies to every open book, in security-code byte order.
    pub fn process(&mut self, cmd: &Command, out: &mut Vec<Event>) {
        let Some(sec) = cmd.security() else {
            // TODO(trading day): phase changes.
            return;
        };
        self.process_for(sec, cmd, out);
    }

    /// Processes one command for book `sec` only: a phase change applies to that book alone
    /// (the grid routes one per security); any other command must name `sec`.
    pub fn process_for(&mut self, sec: SecurityId, cmd: &Command, out: &mut Vec<Event>) {
        let book = if sec.0 < DIRECT_IDS {
            self.direct.get_mut(sec.0 as usize).and_then(Option::as_mut)
        } else {
            self.far.get_mut(&sec.0).map(|b| &mut **b)
        };
        let Some(book) = book else {
            if let Some(id) = cmd.order_id() {
                out.push(Event::Rejected {
                    id,
                    reason: RejectReason::UnknownSecurity,
                });
            }
            return;
        };
        match cmd {
            Command::New(o) => {
                if self.index.contains(o.id.0) {
                    book.reject(o.id, RejectReason::DuplicateOrderId, out);
                } else {
                    book.new_order(o, &mut self.index, out);
                }
            }
            Command::Cancel(c) => match self.index.get(c.id.0) {
                Some(loc) if loc.security == sec.0 => {
                    let slot = loc.slot;
                    book.cancel(c, slot, &mut self.index, out);
                }
                _ => book.reject(c.id, RejectReason::OrderNotLive, out),
            },
            // TODO(trading day): amend and phases.
            Command::Amend(a) => book.reject(a.id, RejectReason::OrderNotLive, out),
            Command::Phase(_) => {}
        }
    }

    /// `(bid_total, ask_total)` of `id`'s book; `(0, 0)` if it has none.
    pub fn totals(&self, id: SecurityId) -> (Qty, Qty) {
        self.book(id).map_or((0, 0), Book::totals)
    }

    /// Best-first aggregated `(bids, asks)` of `id`'s book, at most `levels` per side.
    pub fn depth(&self, id: SecurityId, levels: usize) -> Depth {
        self.book(id)
            .map_or_else(|| (Vec::new(), Vec::new()), |b| b.depth(levels))
    }

    /// While `id`'s book is in a call phase: the indicative auction price and volume.
    pub fn indicative(&self, _id: SecurityId) -> Option<(crate::types::Price, Qty)> {
        None // TODO(trading day)
    }

    /// Resting orders across all books.
    pub fn live_orders(&self) -> usize {
        self.index.len()
    }
}
