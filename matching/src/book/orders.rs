//! NEW (continuous matching, call-phase resting, MTL), CANCEL and AMEND.

use super::{key_of, price_of, Book, Ladder, OrderIndex, Slot, NIL};
use crate::image::RestingKind;
use crate::types::{
    AmendOrder, BrokerId, CancelOrder, CancelReason, Event, Fill, NewOrder, OrderId, OrderType,
    Price, Qty, RejectReason, Side, MAX_ORDER_QTY,
};

impl Book {
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
}
