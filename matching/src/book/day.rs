//! Phase changes: the call auction's uncross, the cancellation of unfilled ATO/ATC orders, and
//! the close (expiry, next day's reference).

use super::{price_of, Book, Ladder, OrderIndex, NIL, SLAB_KEEP};
use crate::auction;
use crate::types::{
    Aggressor, BrokerId, CancelReason, Event, Fill, OrderId, Phase, Price, Qty, Side,
};

impl Book {
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
    pub(super) fn auction_result(&self) -> Option<(Price, Qty)> {
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
        if self.slots.capacity() > SLAB_KEEP {
            // Tomorrow starts empty: a busy day's slab is not kept for the rest of the run.
            self.slots = Vec::new();
        } else {
            self.slots.clear();
        }
        self.free = NIL;
        self.live = 0;
    }
}
