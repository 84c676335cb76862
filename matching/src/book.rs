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
//! Quantities: the engine admits at most [`MAX_ORDER_QTY`] per order and slots are `u32`
//! indexes, so no total can exceed 2^32 * 2^30 < 2^64; totals still use wrapping arithmetic so
//! that even a corrupted state could never panic.

use crate::auction;
use crate::idmap::IdMap;
use crate::image::{BookImage, ImportError, RestingKind, RestingOrder};
use crate::rules::MarketRules;
use crate::types::{
    Aggressor, AmendOrder, BrokerId, CancelOrder, CancelReason, Event, Fill, NewOrder, OrderId,
    OrderType, Phase, Price, Qty, RejectReason, SecurityId, Side, MAX_ORDER_QTY,
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

    // ----- continuous matching ---------------------------------------------------------

    /// Processes a NEW whose id the engine has checked is not resting anywhere.
    pub(crate) fn new_order(&mut self, o: &NewOrder, index: &mut OrderIndex, out: &mut Vec<Event>) {
        // The gateway has checked the rules; the quantity bounds are re-checked because every
        // total's range depends on them.
        let admitted = if o.qty == 0 {
            Err(RejectReason::ZeroQuantity)
        } else if o.qty > MAX_ORDER_QTY {
            Err(RejectReason::QuantityTooLarge)
        } else {
            self.phase.admits_new(o.kind)
        };
        if let Err(reason) = admitted {
            return self.reject(o.id, reason, out);
        }
        out.push(Event::Accepted { id: o.id });
        if self.phase.is_call() {
            // A call phase admits only LO and its own auction type: they rest, no matching.
            let (kind, price) = match o.kind {
                OrderType::Ato => (RestingKind::Ato, 0),
                OrderType::Atc => (RestingKind::Atc, 0),
                _ => (RestingKind::Limit, o.price),
            };
            self.rest_new(o, kind, price, o.qty, index, out);
            self.push_totals(out);
            return;
        }
        let opp_side = o.side.opposite();
        // The opposite ladder's levels are acceptable while their key >= threshold.
        let threshold = if o.kind.is_priceless() {
            i64::MIN
        } else {
            key_of(opp_side, o.price)
        };
        if o.kind == OrderType::Fok
            && !Self::available_at_least(self.ladder(opp_side), threshold, o.qty)
        {
            out.push(Event::Cancelled {
                id: o.id,
                qty: o.qty,
                reason: CancelReason::Unfilled,
            });
            self.push_totals(out);
            return;
        }
        let remaining = self.take(o, threshold, index, out);
        if remaining > 0 {
            match o.kind {
                OrderType::Limit => {
                    self.rest_new(o, RestingKind::Limit, o.price, remaining, index, out)
                }
                // MTL: a partly filled remainder becomes a limit order at its last fill price
                // (`take` just set `last_trade` to it).
                OrderType::Mtl if remaining < o.qty => {
                    let price = self.last_trade.unwrap_or(o.price);
                    self.rest_new(o, RestingKind::Limit, price, remaining, index, out)
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

    /// Rests (what is left of) an incoming order and reports it.
    fn rest_new(
        &mut self,
        o: &NewOrder,
        kind: RestingKind,
        price: Price,
        qty: Qty,
        index: &mut OrderIndex,
        out: &mut Vec<Event>,
    ) {
        self.rest(
            Slot {
                id: o.id.0,
                qty,
                price,
                broker: o.broker.0,
                next: NIL,
                prev: NIL,
                side: o.side,
                kind,
            },
            index,
        );
        out.push(Event::Rested {
            id: o.id,
            security: self.security,
            side: o.side,
            price,
            qty,
        });
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

    /// Matches `o` (the aggressor) against the opposite ladder's price levels; returns the
    /// unfilled quantity and records the last fill price as the book's last trade.
    #[inline]
    fn take(
        &mut self,
        o: &NewOrder,
        threshold: i64,
        index: &mut OrderIndex,
        out: &mut Vec<Event>,
    ) -> Qty {
        let opp_side = o.side.opposite();
        let Book {
            security,
            bids,
            asks,
            slots,
            free,
            live,
            last_trade,
            ..
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
            *last_trade = Some(price);
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

    // ----- cancel and amend ------------------------------------------------------------

    /// Processes a CANCEL whose id the engine found resting in this book at `slot`.
    pub(crate) fn cancel(
        &mut self,
        c: &CancelOrder,
        slot: u32,
        index: &mut OrderIndex,
        out: &mut Vec<Event>,
    ) {
        if self.slots[slot as usize].broker != c.broker.0 {
            return self.reject(c.id, RejectReason::NotOwner, out);
        }
        if let Err(reason) = self.phase.admits_cancel() {
            return self.reject(c.id, reason, out);
        }
        let s = self.remove(slot, index);
        out.push(Event::Cancelled {
            id: c.id,
            qty: s.qty,
            reason: CancelReason::Requested,
        });
        self.push_totals(out);
    }

    /// Processes an AMEND whose id the engine found resting in this book at `slot`.
    pub(crate) fn amend(
        &mut self,
        a: &AmendOrder,
        slot: u32,
        index: &mut OrderIndex,
        out: &mut Vec<Event>,
    ) {
        let s = self.slots[slot as usize];
        if s.broker != a.broker.0 {
            return self.reject(a.id, RejectReason::NotOwner, out);
        }
        let replacement = NewOrder {
            id: a.id,
            broker: a.broker,
            security: self.security,
            side: s.side,
            kind: OrderType::Limit,
            price: a.price,
            qty: a.qty,
        };
        let checked = self
            .rules
            .check_in_band(&replacement, self.band)
            .and_then(|()| self.phase.admits_amend());
        if let Err(reason) = checked {
            return self.reject(a.id, reason, out);
        }
        if s.kind != RestingKind::Limit {
            // Unreachable through the phase table (ATO/ATC orders rest only in call phases),
            // kept so that no state can make an auction order amendable.
            return self.reject(a.id, RejectReason::PhaseForbids, out);
        }
        if a.price == s.price && a.qty <= s.qty {
            self.reduce(slot, s.qty - a.qty, index);
            out.push(Event::Amended {
                id: a.id,
                security: self.security,
                price: a.price,
                qty: a.qty,
                priority_kept: true,
            });
            self.push_totals(out);
            return;
        }
        // Loses priority: out of its level, then in again as if it arrived now.
        self.remove(slot, index);
        out.push(Event::Amended {
            id: a.id,
            security: self.security,
            price: a.price,
            qty: a.qty,
            priority_kept: false,
        });
        let threshold = key_of(s.side.opposite(), a.price);
        let remaining = self.take(&replacement, threshold, index, out);
        if remaining > 0 {
            self.rest_new(
                &replacement,
                RestingKind::Limit,
                a.price,
                remaining,
                index,
                out,
            );
        }
        self.push_totals(out);
    }

    // ----- the trading day -------------------------------------------------------------

    /// Applies a phase change: leaving a call phase uncrosses the book and cancels the ATO/ATC
    /// orders left; entering CLOSED expires everything and sets tomorrow's reference; then the
    /// totals. Naming the current phase does nothing at all.
    pub(crate) fn set_phase(&mut self, phase: Phase, index: &mut OrderIndex, out: &mut Vec<Event>) {
        if phase == self.phase {
            return;
        }
        if self.phase.is_call() {
            self.uncross(index, out);
            self.cancel_auction_orders(index, out);
        }
        if phase == Phase::Closed {
            self.expire(index, out);
            if let Some(close) = self.last_trade.take() {
                self.set_reference(close);
            }
            out.push(Event::Reference {
                security: self.security,
                price: self.reference,
            });
        }
        self.phase = phase;
        self.push_totals(out);
    }

    /// The auction's price and volume over the current book (whatever the phase).
    fn auction_result(&self) -> Option<(Price, Qty)> {
        let bids = self.bids.levels.iter().map(|l| (l.key, l.total));
        let asks = self.asks.levels.iter().rev().map(|l| (!l.key, l.total));
        auction::clear(
            self.bids.auction.total,
            bids,
            self.asks.auction.total,
            asks,
            self.anchor(),
        )
    }

    /// The first order of `side` in priority order if it is executable at `price`.
    fn executable_head(&self, side: Side, price: Price) -> Option<u32> {
        let l = self.ladder(side);
        if l.auction.head != NIL {
            return Some(l.auction.head);
        }
        let lv = l.levels.last()?;
        let p = price_of(side, lv.key);
        let executable = match side {
            Side::Buy => p >= price,
            Side::Sell => p <= price,
        };
        executable.then_some(lv.head)
    }

    /// The call auction: every trade at the auction price, buys and sells each in priority
    /// order, each trade the smaller remainder of the two heads.
    fn uncross(&mut self, index: &mut OrderIndex, out: &mut Vec<Event>) {
        let Some((price, volume)) = self.auction_result() else {
            return;
        };
        let mut left = volume;
        while left > 0 {
            let (Some(b), Some(s)) = (
                self.executable_head(Side::Buy, price),
                self.executable_head(Side::Sell, price),
            ) else {
                break;
            };
            let (bo, so) = (self.slots[b as usize], self.slots[s as usize]);
            let qty = bo.qty.min(so.qty).min(left);
            out.push(Event::Fill(Fill {
                security: self.security,
                price,
                qty,
                buy: OrderId(bo.id),
                sell: OrderId(so.id),
                buy_broker: BrokerId(bo.broker),
                sell_broker: BrokerId(so.broker),
                aggressor: Aggressor::Auction,
            }));
            left -= qty;
            self.reduce(b, qty, index);
            self.reduce(s, qty, index);
        }
        self.last_trade = Some(price);
        out.push(Event::Auction {
            security: self.security,
            price,
            volume: volume - left,
        });
    }

    /// Cancels the ATO/ATC orders left after an auction: buys, then sells, each in time order.
    fn cancel_auction_orders(&mut self, index: &mut OrderIndex, out: &mut Vec<Event>) {
        for side in [Side::Buy, Side::Sell] {
            loop {
                let head = self.ladder(side).auction.head;
                if head == NIL {
                    break;
                }
                let s = self.remove(head, index);
                out.push(Event::Cancelled {
                    id: OrderId(s.id),
                    qty: s.qty,
                    reason: CancelReason::Unfilled,
                });
            }
        }
    }

    /// Expires every resting order: bids then asks, each in priority order.
    fn expire(&mut self, index: &mut OrderIndex, out: &mut Vec<Event>) {
        for side in [Side::Buy, Side::Sell] {
            for slot in self.priority(side) {
                let s = &self.slots[slot as usize];
                index.remove(s.id);
                out.push(Event::Cancelled {
                    id: OrderId(s.id),
                    qty: s.qty,
                    reason: CancelReason::Expired,
                });
            }
        }
        self.bids = Ladder::default();
        self.asks = Ladder::default();
        self.slots.clear();
        self.free = NIL;
        self.live = 0;
    }

    // ----- images ----------------------------------------------------------------------

    /// The book's exact state as plain data.
    pub(crate) fn export(&self) -> BookImage {
        let side = |side: Side| {
            self.priority(side)
                .map(|slot| {
                    let s = &self.slots[slot as usize];
                    RestingOrder {
                        id: OrderId(s.id),
                        broker: BrokerId(s.broker),
                        qty: s.qty,
                        kind: s.kind,
                        price: s.price,
                    }
                })
                .collect()
        };
        BookImage {
            security: self.security,
            phase: self.phase,
            reference: self.reference,
            last_trade: self.last_trade,
            bids: side(Side::Buy),
            asks: side(Side::Sell),
        }
    }

    /// Checks that `image` is a state some history could have produced (the engine checks
    /// the listing and the ids' uniqueness across books).
    pub(crate) fn validate(image: &BookImage) -> Result<(), ImportError> {
        if image.phase == Phase::Closed && !(image.bids.is_empty() && image.asks.is_empty()) {
            return Err(ImportError::RestingWhileClosed);
        }
        let mut best = [None, None];
        for (i, (side, orders)) in [(Side::Buy, &image.bids), (Side::Sell, &image.asks)]
            .into_iter()
            .enumerate()
        {
            // Priority order: (0 for ATO/ATC, 1 for limit; then the side-normalised price
            // from best to worst) never decreases.
            let mut previous: Option<(u8, i64)> = None;
            for o in orders {
                if o.qty == 0 || o.qty > MAX_ORDER_QTY {
                    return Err(ImportError::BadQuantity {
                        id: o.id,
                        qty: o.qty,
                    });
                }
                let rank = match o.kind {
                    RestingKind::Limit => (1, !key_of(side, o.price)),
                    RestingKind::Ato | RestingKind::Atc => {
                        let own = match image.phase {
                            Phase::Ato => RestingKind::Ato,
                            Phase::Atc => RestingKind::Atc,
                            _ => RestingKind::Limit,
                        };
                        if o.kind != own || o.price != 0 {
                            return Err(ImportError::KindOutOfPhase {
                                id: o.id,
                                kind: o.kind,
                                phase: image.phase,
                            });
                        }
                        (0, 0)
                    }
                };
                if previous.is_some_and(|p| rank < p) {
                    return Err(ImportError::OutOfOrder(o.id));
                }
                previous = Some(rank);
                if o.kind == RestingKind::Limit && best[i].is_none() {
                    best[i] = Some(o.price);
                }
            }
        }
        if let [Some(bid), Some(ask)] = best {
            if !image.phase.is_call() && bid >= ask {
                return Err(ImportError::Crossed { bid, ask });
            }
        }
        Ok(())
    }

    /// Builds a book from a validated image whose ids are free in `index`.
    pub(crate) fn from_image(
        rules: MarketRules,
        image: &BookImage,
        index: &mut OrderIndex,
    ) -> Self {
        let mut book = Book::new(image.security, rules, image.reference);
        book.phase = image.phase;
        book.last_trade = image.last_trade;
        for (side, orders) in [(Side::Buy, &image.bids), (Side::Sell, &image.asks)] {
            for o in orders {
                book.rest(
                    Slot {
                        id: o.id.0,
                        qty: o.qty,
                        price: o.price,
                        broker: o.broker.0,
                        next: NIL,
                        prev: NIL,
                        side,
                        kind: o.kind,
                    },
                    index,
                );
            }
        }
        book
    }
}
