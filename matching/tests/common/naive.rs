//! Naive reference exchange: deliberately simple (Vecs, linear scans, std HashMap), written
//! straight from the rules and independent of the fast engine, the gateway and `MarketRules`'
//! arithmetic. Tests compare the fast [`matching::Exchange`] against it event for event; the
//! benchmark uses it as a baseline (feature `reference`).

use std::collections::HashMap;

use matching::{
    BrokerId, Command, Event, Fill, MarketRules, NewOrder, OrderId, OrderType, Price, Qty,
    RejectReason, SecurityId, SecurityTable, Side,
};

#[derive(Clone, Debug)]
struct Resting {
    id: OrderId,
    broker: BrokerId,
    side: Side,
    price: Price,
    qty: Qty,
    /// Arrival number: lower = earlier = first in line at its price.
    arrival: u64,
}

/// The naive exchange: gateway checks, rules and matching in one plain struct.
#[derive(Clone, Debug)]
pub struct NaiveExchange {
    preset: &'static str,
    references: Vec<Price>,
    /// id -> None if a rejected NEW used it, Some((owner, security)) if accepted.
    used: HashMap<u64, Option<(BrokerId, SecurityId)>>,
    /// One unsorted Vec of resting orders per security.
    books: Vec<Vec<Resting>>,
    arrivals: u64,
}

impl NaiveExchange {
    pub fn new(rules: &MarketRules, securities: &SecurityTable) -> Self {
        let references: Vec<Price> = securities.iter().map(|(_, _, r)| r).collect();
        Self {
            preset: rules.name(),
            books: vec![Vec::new(); references.len()],
            references,
            used: HashMap::new(),
            arrivals: 0,
        }
    }

    fn tick(&self, price: Price) -> Price {
        match self.preset {
            "hose" if price < 10_000 => 10,
            "hose" if price < 50_000 => 50,
            "hose" => 100,
            "hnx" | "upcom" => 100,
            _ => 1,
        }
    }

    fn lot(&self) -> Qty {
        if self.preset == "none" {
            1
        } else {
            100
        }
    }

    /// Band by walking from the exact percentage bound inward until a price is on its tick.
    fn band(&self, reference: Price) -> Option<(Price, Price)> {
        let pct: i128 = match self.preset {
            "hose" => 7,
            "hnx" => 10,
            "upcom" => 15,
            _ => return None,
        };
        let r = reference as i128;
        // Largest integer c with c*100 <= r*(100+pct).
        let mut c = (r * (100 + pct)) / 100;
        while c * 100 > r * (100 + pct) {
            c -= 1;
        }
        // Smallest integer f with f*100 >= r*(100-pct).
        let mut f = (r * (100 - pct)) / 100;
        while f * 100 < r * (100 - pct) {
            f += 1;
        }
        let (mut c, mut f) = (c as Price, f as Price);
        while c % self.tick(c) != 0 {
            c -= 1;
        }
        while f % self.tick(f) != 0 {
            f += 1;
        }
        Some((f, c))
    }

    fn rules_check(&self, o: &NewOrder, reference: Price) -> Result<(), RejectReason> {
        if o.qty == 0 {
            return Err(RejectReason::ZeroQuantity);
        }
        if !o.qty.is_multiple_of(self.lot()) {
            return Err(RejectReason::OddLot);
        }
        if o.kind == OrderType::Market {
            if o.price != 0 {
                return Err(RejectReason::MarketOrderWithPrice);
            }
            return Ok(());
        }
        if o.price <= 0 {
            return Err(RejectReason::NonPositivePrice);
        }
        if o.price % self.tick(o.price) != 0 {
            return Err(RejectReason::OffTick);
        }
        if let Some((lo, hi)) = self.band(reference) {
            if o.price < lo || o.price > hi {
                return Err(RejectReason::OutsideBand);
            }
        }
        Ok(())
    }

    fn gateway(&mut self, cmd: &Command) -> Result<(), RejectReason> {
        match cmd {
            Command::New(o) => {
                let Some(&reference) = self.references.get(o.security.0 as usize) else {
                    self.used.entry(o.id.0).or_insert(None);
                    return Err(RejectReason::UnknownSecurity);
                };
                if self.used.contains_key(&o.id.0) {
                    return Err(RejectReason::DuplicateOrderId);
                }
                let r = self.rules_check(o, reference);
                let rec = if r.is_ok() {
                    Some((o.broker, o.security))
                } else {
                    None
                };
                self.used.insert(o.id.0, rec);
                r
            }
            Command::Cancel(c) => match self.used.get(&c.id.0) {
                Some(Some((owner, sec))) if *sec == c.security => {
                    if *owner == c.broker {
                        Ok(())
                    } else {
                        Err(RejectReason::NotOwner)
                    }
                }
                _ => Err(RejectReason::UnknownOrder),
            },
            Command::Amend(_) | Command::Phase(_) => Ok(()),
        }
    }

    /// Processes one command, appending its events to `out`.
    pub fn process(&mut self, cmd: &Command, out: &mut Vec<Event>) {
        if let Err(reason) = self.gateway(cmd) {
            if let Some(id) = cmd.order_id() {
                out.push(Event::Rejected { id, reason });
            }
            return;
        }
        // Placeholder until the trading day lands here: phases and amends do nothing.
        let Some(sec) = cmd.security() else { return };
        match cmd {
            Command::New(o) => self.new_order(o, out),
            Command::Cancel(c) => {
                let book = &mut self.books[sec.0 as usize];
                match book.iter().position(|r| r.id == c.id) {
                    Some(i) => {
                        // The gateway already checked the owner.
                        let r = book.remove(i);
                        out.push(Event::Cancelled {
                            id: c.id,
                            qty: r.qty,
                            reason: matching::CancelReason::Requested,
                        });
                    }
                    None => out.push(Event::Rejected {
                        id: c.id,
                        reason: RejectReason::OrderNotLive,
                    }),
                }
            }
            Command::Amend(a) => out.push(Event::Rejected {
                id: a.id,
                reason: RejectReason::OrderNotLive,
            }),
            Command::Phase(_) => {}
        }
        let (bid_total, ask_total) = self.totals(sec);
        out.push(Event::Totals {
            security: sec,
            bid_total,
            ask_total,
        });
    }

    fn acceptable(o: &NewOrder, resting_price: Price) -> bool {
        match (o.kind, o.side) {
            (OrderType::Market, _) => true,
            (_, Side::Buy) => resting_price <= o.price,
            (_, Side::Sell) => resting_price >= o.price,
        }
    }

    /// Index of the best acceptable resting order on the opposite side, if any.
    fn best_match(book: &[Resting], o: &NewOrder) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, r) in book.iter().enumerate() {
            if r.side == o.side || !Self::acceptable(o, r.price) {
                continue;
            }
            let better = match best {
                None => true,
                Some(b) => {
                    let bp = book[b].price;
                    let price_better = match o.side {
                        Side::Buy => r.price < bp,
                        Side::Sell => r.price > bp,
                    };
                    price_better || (r.price == bp && r.arrival < book[b].arrival)
                }
            };
            if better {
                best = Some(i);
            }
        }
        best
    }

    fn new_order(&mut self, o: &NewOrder, out: &mut Vec<Event>) {
        out.push(Event::Accepted { id: o.id });
        let book = &mut self.books[o.security.0 as usize];
        if o.kind == OrderType::Fok {
            let available: Qty = book
                .iter()
                .filter(|r| r.side != o.side && Self::acceptable(o, r.price))
                .map(|r| r.qty)
                .sum();
            if available < o.qty {
                out.push(Event::Cancelled {
                    id: o.id,
                    qty: o.qty,
                    reason: matching::CancelReason::Unfilled,
                });
                return;
            }
        }
        let mut remaining = o.qty;
        while remaining > 0 {
            let Some(i) = Self::best_match(book, o) else {
                break;
            };
            let q = remaining.min(book[i].qty);
            let r = &book[i];
            let (buy, sell, buy_broker, sell_broker) = if o.side == Side::Buy {
                (o.id, r.id, o.broker, r.broker)
            } else {
                (r.id, o.id, r.broker, o.broker)
            };
            out.push(Event::Fill(Fill {
                security: o.security,
                price: r.price,
                qty: q,
                buy,
                sell,
                buy_broker,
                sell_broker,
                aggressor: o.side.into(),
            }));
            remaining -= q;
            book[i].qty -= q;
            if book[i].qty == 0 {
                book.remove(i);
            }
        }
        if remaining > 0 {
            if o.kind == OrderType::Limit {
                self.arrivals += 1;
                book.push(Resting {
                    id: o.id,
                    broker: o.broker,
                    side: o.side,
                    price: o.price,
                    qty: remaining,
                    arrival: self.arrivals,
                });
            } else {
                out.push(Event::Cancelled {
                    id: o.id,
                    qty: remaining,
                    reason: matching::CancelReason::Unfilled,
                });
            }
        }
    }

    /// (bid_total, ask_total) of a security.
    pub fn totals(&self, sec: SecurityId) -> (Qty, Qty) {
        let book = match self.books.get(sec.0 as usize) {
            Some(b) => b,
            None => return (0, 0),
        };
        let side_total = |s: Side| book.iter().filter(|r| r.side == s).map(|r| r.qty).sum();
        (side_total(Side::Buy), side_total(Side::Sell))
    }

    /// Resting orders across all books.
    pub fn live_orders(&self) -> usize {
        self.books.iter().map(Vec::len).sum()
    }
}
