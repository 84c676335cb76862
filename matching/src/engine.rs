//! Many books behind one `process` call. Commands arriving here have passed the
//! [`crate::Gateway`] (listing, unique id, rules of a NEW, the phase of a NEW, ownership); the
//! engine decides what needs the book: liveness, the rules of an amend's new price and
//! quantity against the book's band, the phase of a cancel or amend, matching, auctions and
//! the close. It re-checks a NEW's quantity bounds and phase so no input can corrupt a book.

use rustc_hash::FxHashSet;

use crate::book::Loc;
use crate::book::{Book, Depth, OrderIndex};
use crate::idmap::IdTable;
use crate::image::{BookImage, ImportError};
use crate::rules::MarketRules;
use crate::securities::SecurityTable;
use crate::types::{Command, Event, OrderId, Phase, Price, Qty, RejectReason, SecurityId};

/// The matching engine: one [`Book`] per open security plus a global order-id index.
#[derive(Clone, Debug)]
pub struct Engine {
    rules: MarketRules,
    securities: SecurityTable,
    /// Listed security ids in code byte order: the order a market-wide PHASE visits books.
    code_order: Vec<SecurityId>,
    /// Indexed by security id (dense, bounded by the listing).
    books: Vec<Option<Book>>,
    index: OrderIndex,
}

impl Engine {
    /// An engine with no open book. `rules` and `securities` (reference prices, code order) are
    /// what amends, auctions and the close need.
    pub fn new(rules: MarketRules, securities: &SecurityTable) -> Self {
        let mut code_order: Vec<SecurityId> = securities.iter().map(|(id, _, _)| id).collect();
        code_order.sort_by(|a, b| {
            let code = |id: &SecurityId| securities.code(*id).unwrap_or("").as_bytes();
            code(a).cmp(code(b))
        });
        Self {
            rules,
            securities: securities.clone(),
            code_order,
            books: Vec::new(),
            index: OrderIndex::new(Loc::NONE),
        }
    }

    pub fn rules(&self) -> &MarketRules {
        &self.rules
    }

    pub fn securities(&self) -> &SecurityTable {
        &self.securities
    }

    /// Opens an empty book for `id` in CONTINUOUS with the listing's reference price. No-op if
    /// it is already open or `id` is not listed.
    pub fn open_book(&mut self, id: SecurityId) {
        if self.has_book(id) {
            return;
        }
        let Some(reference) = self.securities.reference(id) else {
            return;
        };
        let i = id.0 as usize;
        if self.books.len() <= i {
            self.books.resize_with(i + 1, || None);
        }
        self.books[i] = Some(Book::new(id, self.rules, reference));
    }

    /// Drops `id`'s book and all its resting orders.
    pub fn close_book(&mut self, id: SecurityId) {
        let book = self.books.get_mut(id.0 as usize).and_then(Option::take);
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
        self.books.get(id.0 as usize)?.as_ref()
    }

    /// Processes one command, APPENDING its events to `out` (never clears it). A phase change
    /// applies to every open book, in security-code byte order.
    pub fn process(&mut self, cmd: &Command, out: &mut Vec<Event>) {
        match (cmd, cmd.security()) {
            (Command::Phase(phase), _) => {
                let Engine {
                    code_order,
                    books,
                    index,
                    ..
                } = self;
                for id in code_order.iter() {
                    if let Some(Some(book)) = books.get_mut(id.0 as usize) {
                        book.set_phase(*phase, index, out);
                    }
                }
                if *phase == Phase::Closed {
                    index.shrink_if_sparse();
                }
            }
            (_, Some(sec)) => self.process_for(sec, cmd, out),
            (_, None) => {}
        }
    }

    /// Processes one command for book `sec` only: a phase change applies to that book alone
    /// (the grid routes one per security); any other command is taken as aimed at `sec`.
    pub fn process_for(&mut self, sec: SecurityId, cmd: &Command, out: &mut Vec<Event>) {
        let Some(book) = self.books.get_mut(sec.0 as usize).and_then(Option::as_mut) else {
            if let Some(id) = cmd.order_id() {
                out.push(Event::Rejected {
                    id,
                    reason: RejectReason::UnknownSecurity,
                });
            }
            return;
        };
        let index = &mut self.index;
        match cmd {
            Command::New(o) => {
                if index.contains(o.id.0) {
                    book.reject(o.id, RejectReason::DuplicateOrderId, out);
                } else {
                    book.new_order(o, index, out);
                }
            }
            Command::Cancel(c) => match Self::resting_in(index, c.id, sec) {
                Some(slot) => book.cancel(c, slot, index, out),
                None => book.reject(c.id, RejectReason::OrderNotLive, out),
            },
            Command::Amend(a) => match Self::resting_in(index, a.id, sec) {
                Some(slot) => book.amend(a, slot, index, out),
                None => book.reject(a.id, RejectReason::OrderNotLive, out),
            },
            Command::Phase(phase) => {
                book.set_phase(*phase, index, out);
                if *phase == Phase::Closed {
                    index.shrink_if_sparse();
                }
            }
        }
    }

    /// The slot of order `id` if it rests in book `sec`.
    #[inline]
    fn resting_in(index: &OrderIndex, id: OrderId, sec: SecurityId) -> Option<u32> {
        index
            .get(id.0)
            .filter(|loc| loc.security == sec.0)
            .map(|loc| loc.slot)
    }

    /// `(bid_total, ask_total)` of `id`'s book; `(0, 0)` if it has none.
    pub fn totals(&self, id: SecurityId) -> (Qty, Qty) {
        self.book(id).map_or((0, 0), Book::totals)
    }

    /// Best-first aggregated limit `(bids, asks)` of `id`'s book, at most `levels` per side
    /// (resting ATO/ATC quantities are in [`Book::auction_totals`]).
    pub fn depth(&self, id: SecurityId, levels: usize) -> Depth {
        self.book(id)
            .map_or_else(|| (Vec::new(), Vec::new()), |b| b.depth(levels))
    }

    /// The phase of `id`'s book.
    pub fn phase(&self, id: SecurityId) -> Option<Phase> {
        self.book(id).map(Book::phase)
    }

    /// While `id`'s book is in a call phase: the price and volume its uncross would give now.
    /// `None` when nothing would trade, outside a call phase, or for no open book.
    pub fn indicative(&self, id: SecurityId) -> Option<(Price, Qty)> {
        self.book(id)?.indicative()
    }

    /// Resting orders across all books.
    pub fn live_orders(&self) -> usize {
        self.index.len()
    }

    /// The exact state of `id`'s book, `None` if it is not open.
    pub fn export_book(&self, id: SecurityId) -> Option<BookImage> {
        self.book(id).map(Book::export)
    }

    /// Opens the image's book, or replaces it if open, with exactly the image's state. Errors
    /// (and changes nothing) on an unlisted security, an id twice in the image or resting in
    /// another book, or a state no history could produce.
    pub fn import_book(&mut self, image: &BookImage) -> Result<(), ImportError> {
        let sec = image.security;
        if self.securities.reference(sec).is_none() {
            return Err(ImportError::UnknownSecurity(sec));
        }
        Book::validate(image)?;
        let mut seen = FxHashSet::default();
        for o in image.bids.iter().chain(&image.asks) {
            if !seen.insert(o.id) {
                return Err(ImportError::DuplicateOrder(o.id));
            }
            if let Some(loc) = self.index.get(o.id.0) {
                if loc.security != sec.0 {
                    return Err(ImportError::RestsElsewhere {
                        id: o.id,
                        other: SecurityId(loc.security),
                    });
                }
            }
        }
        self.close_book(sec);
        let book = Book::from_image(self.rules, image, &mut self.index);
        let i = sec.0 as usize;
        if self.books.len() <= i {
            self.books.resize_with(i + 1, || None);
        }
        self.books[i] = Some(book);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{BrokerId, NewOrder, OrderType, Side};

    /// A close gives a busy day's memory back: the books' slabs and the id index shrink, so a
    /// run of many days does not keep every book's busiest moment allocated.
    #[test]
    fn a_close_gives_the_days_memory_back() {
        let mut table = SecurityTable::new();
        table.add("AAA", 10_000).unwrap();
        table.add("BBB", 20_000).unwrap();
        let mut engine = Engine::new(MarketRules::hose(), &table);
        let mut out = Vec::new();
        for day in 0..3u64 {
            engine.process(&Command::Phase(Phase::Continuous), &mut out);
            for sec in [SecurityId(0), SecurityId(1)] {
                engine.open_book(sec);
                for i in 0..20_000u64 {
                    // AAA: a broker's increasing ids (the index's direct pages); BBB: ids
                    // scattered over the whole range (its hash map).
                    let local = day * 1_000_000 + i + 1;
                    let id = match sec.0 {
                        0 => 1 << 40 | local,
                        _ => local.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1 << 63,
                    };
                    engine.process(
                        &Command::New(NewOrder {
                            id: OrderId(id),
                            broker: BrokerId(1),
                            security: sec,
                            side: Side::Buy,
                            kind: OrderType::Limit,
                            price: [9_500, 19_000][sec.0 as usize],
                            qty: 100,
                        }),
                        &mut out,
                    );
                }
            }
            assert_eq!(engine.index.len(), 40_000);
            assert!(engine.index.far_capacity() >= 20_000);
            assert!(engine.index.pages() >= 20_000 / 4096);
            out.clear();
            engine.process(&Command::Phase(Phase::Closed), &mut out);
            let expired = out
                .iter()
                .filter(|e| matches!(e, Event::Cancelled { .. }))
                .count();
            assert_eq!(expired, 40_000, "day {day}");
            assert_eq!(engine.index.len(), 0);
            assert!(engine.index.far_capacity() <= 1024, "day {day}: index kept");
            assert_eq!(engine.index.pages(), 0, "day {day}: direct pages kept");
            for sec in [SecurityId(0), SecurityId(1)] {
                let book = engine.book(sec).unwrap();
                assert_eq!(book.slab_capacity(), 0, "day {day}: {sec:?} kept its slab");
                assert_eq!(book.totals(), (0, 0));
            }
            out.clear();
        }
    }
}
