//! One security's order book and its trading day.
//!
//! Orders live in a slab (`Vec<Slot>` plus an intrusive free list, so steady state allocates
//! nothing). Each side is a ladder: a `Vec<Level>` sorted by a side-normalised key with the best
//! level at the END, so matching pops from the back and new levels near the touch are cheap
//! inserts. Each level is an intrusive doubly linked FIFO through the slab, which makes cancel
//! O(1) once the level is found by binary search. ATO/ATC orders (price 0, ahead of every limit
//! order in an auction) wait in one more FIFO per side, outside the price levels, so no limit
//! price can ever collide with them. The order-id index lives in the [`crate::Engine`] so ids
//! are unique across books.
//!
//! Besides the orders, a book keeps its phase, its reference price (and the band derived from
//! it) and the price of its last trade since the last CLOSED (the auction anchor).
//!
//! Quantities: the engine admits at most [`MAX_ORDER_QTY`](crate::MAX_ORDER_QTY) per order and slots are `u32`
//! indexes, so no total can exceed 2^32 * 2^30 < 2^64; totals still use wrapping arithmetic so
//! that even a corrupted state could never panic.

//! Layout: this file holds the book's state, its accessors and the slab/queue primitives;
//! `orders` processes NEW, CANCEL and AMEND; `day` the phase changes (uncross, close);
//! `snapshot` the book images.

mod day;
mod orders;
mod snapshot;

use crate::idmap::{IdMap, IdTable};
use crate::image::RestingKind;
use crate::rules::MarketRules;
use crate::types::{Event, OrderId, Phase, Price, Qty, RejectReason, SecurityId, Side};

const NIL: u32 = u32::MAX;
/// A slab this small is kept across a close (not worth freeing).
const SLAB_KEEP: usize = 1024;

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
    /// Limit price; 0 for ATO/ATC orders.
    price: Price,
    broker: u32,
    /// Next in the level's FIFO, or next free slot when on the free list.
    next: u32,
    prev: u32,
    side: Side,
    kind: RestingKind,
}

/// A FIFO of resting orders: one price level, or a side's ATO/ATC queue (key unused).
#[derive(Clone, Copy, Debug)]
struct Level {
    /// `price` for bids, `!price` for asks: ascending key order puts the best level last.
    key: i64,
    total: Qty,
    head: u32,
    tail: u32,
}

impl Level {
    const EMPTY: Level = Level {
        key: 0,
        total: 0,
        head: NIL,
        tail: NIL,
    };
}

#[derive(Clone, Debug)]
struct Ladder {
    levels: Vec<Level>,
    /// ATO/ATC orders, in arrival order; ahead of every level in an auction.
    auction: Level,
    /// Every resting quantity of the side, the auction queue included.
    total: Qty,
}

impl Default for Ladder {
    fn default() -> Self {
        Self {
            levels: Vec::new(),
            auction: Level::EMPTY,
            total: 0,
        }
    }
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

/// Appends `slot` to the back of `lv`.
#[inline]
fn push_back(slots: &mut [Slot], lv: &mut Level, slot: u32) {
    let tail = lv.tail;
    let s = &mut slots[slot as usize];
    s.prev = tail;
    s.next = NIL;
    lv.total = lv.total.wrapping_add(s.qty);
    if tail == NIL {
        lv.head = slot;
    } else {
        slots[tail as usize].next = slot;
    }
    lv.tail = slot;
}

/// Unlinks `slot` from `lv` (anywhere in it).
#[inline]
fn detach(slots: &mut [Slot], lv: &mut Level, slot: u32) {
    let s = slots[slot as usize];
    if s.prev == NIL {
        lv.head = s.next;
    } else {
        slots[s.prev as usize].next = s.next;
    }
    if s.next == NIL {
        lv.tail = s.prev;
    } else {
        slots[s.next as usize].prev = s.prev;
    }
    lv.total = lv.total.wrapping_sub(s.qty);
}

/// The slots of one FIFO, front to back.
fn fifo(slots: &[Slot], head: u32) -> impl Iterator<Item = u32> + '_ {
    let mut cur = head;
    std::iter::from_fn(move || {
        if cur == NIL {
            return None;
        }
        let c = cur;
        cur = slots[c as usize].next;
        Some(c)
    })
}

/// Aggregated `(price, qty)` levels, best first: `(bids, asks)`.
pub type Depth = (Vec<(Price, Qty)>, Vec<(Price, Qty)>);

/// One security's book. Built and driven by [`crate::Engine`]; read-only accessors are public.
#[derive(Clone, Debug)]
pub struct Book {
    security: SecurityId,
    rules: MarketRules,
    phase: Phase,
    reference: Price,
    band: Option<(Price, Price)>,
    last_trade: Option<Price>,
    bids: Ladder,
    asks: Ladder,
    slots: Vec<Slot>,
    free: u32,
    live: usize,
}

impl Book {
    /// Slots the slab has room for.
    #[cfg(test)]
    pub(crate) fn slab_capacity(&self) -> usize {
        self.slots.capacity()
    }

    /// An empty book in CONTINUOUS with `reference` as today's reference price.
    pub(crate) fn new(security: SecurityId, rules: MarketRules, reference: Price) -> Self {
        Self {
            security,
            rules,
            phase: Phase::Continuous,
            reference,
            band: rules.band(reference),
            last_trade: None,
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

    /// The book's current trading phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Today's reference price.
    pub fn reference(&self) -> Price {
        self.reference
    }

    /// Today's `(floor, ceiling)`, `None` when the rules have no band.
    pub fn band(&self) -> Option<(Price, Price)> {
        self.band
    }

    /// The price of the last trade since the last CLOSED, if any.
    pub fn last_trade(&self) -> Option<Price> {
        self.last_trade
    }

    /// The auction anchor: the last trade since the last CLOSED, else the reference price.
    pub fn anchor(&self) -> Price {
        self.last_trade.unwrap_or(self.reference)
    }

    /// `(bid_total, ask_total)`: resting quantity per side, ATO/ATC orders included.
    pub fn totals(&self) -> (Qty, Qty) {
        (self.bids.total, self.asks.total)
    }

    /// `(buy, sell)` quantity of the resting ATO/ATC orders (part of [`Self::totals`], not of
    /// [`Self::depth`]).
    pub fn auction_totals(&self) -> (Qty, Qty) {
        (self.bids.auction.total, self.asks.auction.total)
    }

    /// Number of resting orders.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Up to `levels` aggregated limit `(price, qty)` levels per side, best first (ATO/ATC
    /// orders are not at a price: see [`Self::auction_totals`]).
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

    /// In a call phase, the price and volume the uncross would give now (`None` if nothing
    /// would trade or the book is not in a call phase).
    pub fn indicative(&self) -> Option<(Price, Qty)> {
        if self.phase.is_call() {
            self.auction_result()
        } else {
            None
        }
    }

    fn ladder(&self, side: Side) -> &Ladder {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    /// Slots of one side in priority order: ATO/ATC first, then best price first, then time.
    fn priority(&self, side: Side) -> impl Iterator<Item = u32> + '_ {
        let l = self.ladder(side);
        fifo(&self.slots, l.auction.head).chain(
            l.levels
                .iter()
                .rev()
                .flat_map(move |lv| fifo(&self.slots, lv.head)),
        )
    }

    /// Ids of all resting orders (any order); used to purge the engine index on close.
    pub(crate) fn resting_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.priority(Side::Buy)
            .chain(self.priority(Side::Sell))
            .map(|s| self.slots[s as usize].id)
    }

    fn push_totals(&self, out: &mut Vec<Event>) {
        out.push(Event::Totals {
            security: self.security,
            bid_total: self.bids.total,
            ask_total: self.asks.total,
        });
    }

    /// Rejects a command aimed at this book, still reporting totals.
    pub(crate) fn reject(&self, id: OrderId, reason: RejectReason, out: &mut Vec<Event>) {
        out.push(Event::Rejected { id, reason });
        self.push_totals(out);
    }

    fn set_reference(&mut self, reference: Price) {
        self.reference = reference;
        self.band = self.rules.band(reference);
    }

    // ----- slab and queues -------------------------------------------------------------

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

    #[inline]
    fn release(&mut self, slot: u32) {
        self.slots[slot as usize].next = self.free;
        self.free = slot;
        self.live -= 1;
    }

    /// Puts an order at the back of its queue (its price level, or the ATO/ATC queue).
    fn rest(&mut self, order: Slot, index: &mut OrderIndex) {
        let slot = self.alloc(order);
        index.insert_new(
            order.id,
            Loc {
                security: self.security.0,
                slot,
            },
        );
        let Book {
            bids, asks, slots, ..
        } = self;
        let ladder = match order.side {
            Side::Buy => bids,
            Side::Sell => asks,
        };
        ladder.total = ladder.total.wrapping_add(order.qty);
        if order.kind != RestingKind::Limit {
            push_back(slots, &mut ladder.auction, slot);
            return;
        }
        let key = key_of(order.side, order.price);
        let i = match ladder.find(key) {
            Ok(i) => i,
            Err(i) => {
                ladder.levels.insert(
                    i,
                    Level {
                        key,
                        ..Level::EMPTY
                    },
                );
                i
            }
        };
        push_back(slots, &mut ladder.levels[i], slot);
    }

    /// Takes `qty` off a resting order (a fill or an in-place reduction); an order left with
    /// nothing leaves the book.
    fn reduce(&mut self, slot: u32, qty: Qty, index: &mut OrderIndex) {
        let s = self.slots[slot as usize];
        if qty >= s.qty {
            self.remove(slot, index);
            return;
        }
        let Book {
            bids, asks, slots, ..
        } = self;
        let ladder = match s.side {
            Side::Buy => bids,
            Side::Sell => asks,
        };
        ladder.total = ladder.total.wrapping_sub(qty);
        slots[slot as usize].qty -= qty;
        let lv = if s.kind == RestingKind::Limit {
            match ladder.find(key_of(s.side, s.price)) {
                Ok(i) => &mut ladder.levels[i],
                Err(_) => return,
            }
        } else {
            &mut ladder.auction
        };
        lv.total = lv.total.wrapping_sub(qty);
    }

    /// Takes a resting order out of the book and the index; returns what it was.
    fn remove(&mut self, slot: u32, index: &mut OrderIndex) -> Slot {
        let s = self.slots[slot as usize];
        index.remove(s.id);
        let Book {
            bids, asks, slots, ..
        } = self;
        let ladder = match s.side {
            Side::Buy => bids,
            Side::Sell => asks,
        };
        ladder.total = ladder.total.wrapping_sub(s.qty);
        if s.kind == RestingKind::Limit {
            if let Ok(i) = ladder.find(key_of(s.side, s.price)) {
                let lv = &mut ladder.levels[i];
                detach(slots, lv, slot);
                if lv.head == NIL {
                    ladder.levels.remove(i);
                }
            }
        } else {
            detach(slots, &mut ladder.auction, slot);
        }
        self.release(slot);
        s
    }
}
