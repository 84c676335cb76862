//! One security's order book.
//!
//! Orders live in a slab (`Vec<Slot>` plus an intrusive free list, so steady state allocates
//! nothing). Each side is a ladder: a `Vec<Level>` sorted by a side-normalised key with the best
//! level at the END, so matching pops from the back and new levels near the touch are cheap
//! inserts. Each level is an intrusive doubly linked FIFO through the slab, which makes cancel
//! O(1) once the level is found by binary search. The order-id index lives in the
//! [`crate::Engine`] so ids are unique across books.

use crate::idmap::IdMap;
use crate::types::{
    BrokerId, CancelOrder, CancelReason, Event, Fill, NewOrder, OrderId, OrderType, Price, Qty,
    RejectReason, SecurityId, Side,
};

const NIL: u32 = u32::MAX;

/// Where a resting order lives: its book and its slab slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(crate) security: u32,
    pub(crate) slot: u32,
}

impl Loc {
    /// Never a real location: the index's empty marker.
    pub(crate) const NONE: Loc = Loc {
        security: u32::MAX,
        slot: u32::MAX,
    };
}

/// Order id -> location of the resting order.
pub(crate) type OrderIndex = IdMap<Loc>;

#[derive(Clone, Copy, Debug)]
struct Slot {
    id: u64,
    qty: Qty,
    price: Price,
    broker: u32,
    /// Next in the level's FIFO, or next free slot when on the free list.
    next: u32,
    prev: u32,
    side: Side,
}

#[derive(Clone, Copy, Debug)]
struct Level {
    /// `price` for bids, `!price` for asks: ascending key order puts the best level last.
    key: i64,
    total: Qty,
    head: u32,
    tail: u32,
}

/// Totals use wrapping arithmetic: adds and subtracts cancel exactly, so they are exact whenever
/// the true total fits in a `Qty`, and absurd quantities can never panic the engine.
#[derive(Clone, Debug, Default)]
struct Ladder {
    levels: Vec<Level>,
    total: Qty,
}

/// Side-normalised sort key (an exact order-reversing bijection for asks, no overflow).
#[inline]
fn key_of(side: Side, price: Price) -> i64 {
    match side {
        Side::Buy => price,
        Side::Sell => !price,
    }
}

#[inline]
fn price_of(side: Side, key: i64) -> Price {
    key_of(side, key) // both mappings are involutions
}

impl Ladder {
    /// Index of the level with `key`, searching from the back first (activity clusters at
    /// the touch).
    #[inline]
    fn find(&self, key: i64) -> Result<usize, usize> {
        let n = self.levels.len();
        if n > 0 {
            let last = self.levels[n - 1].key;
            if key == last {
                return Ok(n - 1);
            }
            if key > last {
                return Err(n);
            }
        }
        self.levels.binary_search_by(|l| l.key.cmp(&key))
    }
}

/// Aggregated `(price, qty)` levels, best first: `(bids, asks)`.
pub type Depth = (Vec<(Price, Qty)>, Vec<(Price, Qty)>);

/// One security's book. Built and driven by [`crate::Engine`]; read-only accessors are public.
#[derive(Clone, Debug)]
pub struct Book {
    security: SecurityId,
    bids: Ladder,
    asks: Ladder,
    slots: Vec<Slot>,
    free: u32,
    live: usize,
}

impl Book {
    pub(crate) fn new(security: SecurityId) -> Self {
        Self {
            security,
            bids: Ladder::default(),
            asks: Ladder::default(),
            slots: Vec::new(),
            free: NIL,
            live: 0,
        }
    }

    pub fn security(&self) -> SecurityId {
        self.security
    }

    /// `(bid_total, ask_total)`: resting quantity per side.
    pub fn totals(&self) -> (Qty, Qty) {
        (self.bids.total, self.asks.total)
    }

    /// Number of resting orders.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Up to `levels` aggregated `(price, qty)` levels per side, best first.
    pub fn depth(&self, levels: usize) -> Depth {
        let side = |l: &Ladder, s: Side| {
            l.levels
                .iter()
                .rev()
                .take(levels)
                .map(|lv| (price_of(s, lv.key), lv.total))
                .collect()
        };
        (side(&self.bids, Side::Buy), side(&self.asks, Side::Sell))
    }

    /// Ids of all resting orders (any order); used to purge the engine index on close.
    pub(crate) fn resting_ids(&self) -> impl Iterator<Item = u64> + '_ {
        let ladders = [(&self.bids, Side::Buy), (&self.asks, Side::Sell)];
        ladders.into_iter().flat_map(move |(l, _)| {
            l.levels.iter().flat_map(move |lv| {
                let mut cur = lv.head;
                std::iter::from_fn(move || {
                    if cur == NIL {
                        return None;
                    }
                    let s = &self.slots[cur as usize];
                    cur = s.next;
                    Some(s.id)
                })
            })
        })
    }

    fn push_totals(&self, out: &mut Vec<Event>) {
        out.push(Event::Totals {
            security: self.security,
            bid_total: self.bids.total,
            ask_total: self.asks.total,
        });
    }

    #[inline]
    fn alloc(&mut self, slot: Slot) -> u32 {
        self.live += 1;
        if self.free != NIL {
            let i = self.free;
            let s = &mut self.slots[i as usize];
            self.free = s.next;
            *s = slot;
            i
        } else {
            self.slots.push(slot);
            (self.slots.len() - 1) as u32
        }
    }

    /// Processes a NEW whose id the engine has checked is not resting anywhere.
    pub(crate) fn new_order(&mut self, o: &NewOrder, index: &mut OrderIndex, out: &mut Vec<Event>) {
        out.push(Event::Accepted { id: o.id });
        let opp_side = o.side.opposite();
        // The opposite ladder's levels are acceptable while their key >= threshold.
        let threshold = if o.kind.is_priceless() {
            i64::MIN
        } else {
            key_of(opp_side, o.price)
        };
        let opp = match o.side {
            Side::Buy => &self.asks,
            Side::Sell => &self.bids,
        };
        if o.kind == OrderType::Fok && !Self::available_at_least(opp, threshold, o.qty) {
            out.push(Event::Cancelled {
                id: o.id,
                qty: o.qty,
                reason: CancelReason::Unfilled,
            });
            self.push_totals(out);
            return;
        }
        let remaining = self.take(o, opp_side, threshold, index, out);
        if remaining > 0 {
            match o.kind {
                OrderType::Limit => {
                    self.rest(o, remaining, index);
                    out.push(Event::Rested {
                        id: o.id,
                        security: self.security,
                        side: o.side,
                        price: o.price,
                        qty: remaining,
                    });
                }
                _ => out.push(Event::Cancelled {
                    id: o.id,
                    qty: remaining,
                    reason: CancelReason::Unfilled,
                }),
            }
        }
        self.push_totals(out);
    }

    /// True when the acceptable levels hold at least `qty`.
    fn available_at_least(opp: &Ladder, threshold: i64, qty: Qty) -> bool {
        let mut sum: Qty = 0;
        for lv in opp.levels.iter().rev() {
            if lv.key < threshold {
                return false;
            }
            sum = sum.saturating_add(lv.total);
            if sum >= qty {
                return true;
            }
        }
        false
    }

    /// Matches `o` against the opposite ladder; returns the unfilled quantity.
    #[inline]
    fn take(
        &mut self,
        o: &NewOrder,
        opp_side: Side,
        threshold: i64,
        index: &mut OrderIndex,
        out: &mut Vec<Event>,
    ) -> Qty {
        let Book {
            security,
            bids,
            asks,
            slots,
            free,
            live,
        } = self;
        let opp = match o.side {
            Side::Buy => asks,
            Side::Sell => bids,
        };
        let mut remaining = o.qty;
        while remaining > 0 {
            let Some(level) = opp.levels.last_mut() else {
                break;
            };
            if level.key < threshold {
                break;
            }
            let price = price_of(opp_side, level.key);
            let mut cur = level.head;
            while remaining > 0 && cur != NIL {
                let s = &mut slots[cur as usize];
                let q = remaining.min(s.qty);
                let (buy, sell, buy_broker, sell_broker) = match o.side {
                    Side::Buy => (o.id.0, s.id, o.broker.0, s.broker),
                    Side::Sell => (s.id, o.id.0, s.broker, o.broker.0),
                };
                out.push(Event::Fill(Fill {
                    security: *security,
                    price,
                    qty: q,
                    buy: OrderId(buy),
                    sell: OrderId(sell),
                    buy_broker: BrokerId(buy_broker),
                    sell_broker: BrokerId(sell_broker),
                    aggressor: o.side.into(),
                }));
                remaining -= q;
                s.qty -= q;
                level.total = level.total.wrapping_sub(q);
                if s.qty == 0 {
                    let next = s.next;
                    index.remove(s.id);
                    s.next = *free;
                    *free = cur;
                    *live -= 1;
                    cur = next;
                }
            }
            level.head = cur;
            if cur == NIL {
                opp.levels.pop();
            } else {
                slots[cur as usize].prev = NIL;
            }
        }
        opp.total = opp.total.wrapping_sub(o.qty - remaining);
        remaining
    }

    fn rest(&mut self, o: &NewOrder, qty: Qty, index: &mut OrderIndex) {
        let slot = self.alloc(Slot {
            id: o.id.0,
            qty,
            price: o.price,
            broker: o.broker.0,
            next: NIL,
            prev: NIL,
            side: o.side,
        });
        index.insert_new(
            o.id.0,
            Loc {
                security: self.security.0,
                slot,
            },
        );
        let key = key_of(o.side, o.price);
        let ladder = match o.side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        ladder.total = ladder.total.wrapping_add(qty);
        match ladder.find(key) {
            Ok(i) => {
                let lv = &mut ladder.levels[i];
                let tail = lv.tail;
                lv.tail = slot;
                lv.total = lv.total.wrapping_add(qty);
                self.slots[slot as usize].prev = tail;
                self.slots[tail as usize].next = slot;
            }
            Err(i) => ladder.levels.insert(
                i,
                Level {
                    key,
                    total: qty,
                    head: slot,
                    tail: slot,
                },
            ),
        }
    }

    /// Processes a CANCEL whose id the engine found resting in this book at `slot`.
    pub(crate) fn cancel(
        &mut self,
        c: &CancelOrder,
        slot: u32,
        index: &mut OrderIndex,
        out: &mut Vec<Event>,
    ) {
        let s = self.slots[slot as usize];
        if s.broker != c.broker.0 {
            out.push(Event::Rejected {
                id: c.id,
                reason: RejectReason::NotOwner,
            });
            self.push_totals(out);
            return;
        }
        index.remove(s.id);
        let ladder = match s.side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        ladder.total = ladder.total.wrapping_sub(s.qty);
        if let Ok(i) = ladder.find(key_of(s.side, s.price)) {
            let lv = &mut ladder.levels[i];
            lv.total = lv.total.wrapping_sub(s.qty);
            if s.prev == NIL {
                lv.head = s.next;
            } else {
                self.slots[s.prev as usize].next = s.next;
            }
            if s.next == NIL {
                lv.tail = s.prev;
            } else {
                self.slots[s.next as usize].prev = s.prev;
            }
            if lv.head == NIL {
                ladder.levels.remove(i);
            }
        }
        self.slots[slot as usize].next = self.free;
        self.free = slot;
        self.live -= 1;
        out.push(Event::Cancelled {
            id: c.id,
            qty: s.qty,
            reason: CancelReason::Requested,
        });
        self.push_totals(out);
    }

    /// Rejects a command aimed at this book, still reporting totals.
    pub(crate) fn reject(&self, id: OrderId, reason: RejectReason, out: &mut Vec<Event>) {
        out.push(Event::Rejected { id, reason });
        self.push_totals(out);
    }
}
