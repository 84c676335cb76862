//! Naive reference exchange: deliberately simple (Vecs, linear scans, sorts, std HashMap),
//! written straight from DESIGN.md ("Matching", "Amend", "The trading day") and independent of
//! the fast engine, the gateway, the phase table and `MarketRules`' arithmetic. Tests compare
//! the fast [`matching::Exchange`] against it event for event; the benchmark uses it as a
//! baseline (feature `reference`).
//!
//! Per security: one unsorted Vec of resting orders per side, each with an arrival number
//! ("time"); every decision scans or sorts them. The only cached values are the side totals
//! (summing on every command would make 100k-order tests quadratic); `NaiveExchange::audit`
//! checks them against the sums.

use std::collections::HashMap;

use matching::{
    Aggressor, BookImage, BrokerId, CancelReason, Command, Event, Fill, MarketRules, NewOrder,
    OrderId, OrderType, Phase, Price, Qty, RejectReason, RestingKind, RestingOrder, SecurityId,
    SecurityTable, Side,
};

#[derive(Clone, Debug)]
struct Resting {
    id: OrderId,
    broker: BrokerId,
    kind: RestingKind,
    /// 0 for ATO/ATC orders.
    price: Price,
    qty: Qty,
    /// Arrival number (or that of the AMEND that last cost it priority): lower = earlier.
    time: u64,
}

impl Resting {
    fn is_market(&self) -> bool {
        self.kind != RestingKind::Limit
    }
}

#[derive(Clone, Debug, Default)]
struct NaiveBook {
    bids: Vec<Resting>,
    asks: Vec<Resting>,
    bid_total: Qty,
    ask_total: Qty,
    reference: Price,
    /// Price of the last trade since the last CLOSED.
    last_trade: Option<Price>,
}

impl NaiveBook {
    fn side(&mut self, side: Side) -> (&mut Vec<Resting>, &mut Qty) {
        match side {
            Side::Buy => (&mut self.bids, &mut self.bid_total),
            Side::Sell => (&mut self.asks, &mut self.ask_total),
        }
    }

    /// Where order `id` rests: its side and position.
    fn find(&self, id: OrderId) -> Option<(Side, usize)> {
        if let Some(i) = self.bids.iter().position(|r| r.id == id) {
            return Some((Side::Buy, i));
        }
        self.asks
            .iter()
            .position(|r| r.id == id)
            .map(|i| (Side::Sell, i))
    }

    /// Positions of one side's orders in priority order (ATO/ATC first, then best price,
    /// then earliest time).
    fn priority(&self, side: Side) -> Vec<usize> {
        let orders = match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        };
        let mut idx: Vec<usize> = (0..orders.len()).collect();
        idx.sort_by_key(|&i| {
            let r = &orders[i];
            let price_rank: i128 = match side {
                Side::Buy => -(r.price as i128),
                Side::Sell => r.price as i128,
            };
            if r.is_market() {
                (0, 0, r.time)
            } else {
                (1, price_rank, r.time)
            }
        });
        idx
    }
}

/// The naive exchange: gateway checks, rules, phases and matching in one plain struct.
#[derive(Clone, Debug)]
pub struct NaiveExchange {
    preset: &'static str,
    codes: Vec<String>,
    /// id -> None if a rejected NEW used it, Some((owner, security)) if accepted.
    used: HashMap<u64, Option<(BrokerId, SecurityId)>>,
    books: Vec<NaiveBook>,
    clock: u64,
    /// One market-wide phase.
    phase: Phase,
}

impl NaiveExchange {
    pub fn new(rules: &MarketRules, securities: &SecurityTable) -> Self {
        let books = securities
            .iter()
            .map(|(_, _, r)| NaiveBook {
                reference: r,
                ..NaiveBook::default()
            })
            .collect();
        Self {
            preset: rules.name(),
            codes: securities.iter().map(|(_, c, _)| c.to_string()).collect(),
            used: HashMap::new(),
            books,
            clock: 0,
            phase: Phase::Continuous,
        }
    }

    // ----- rules, written out from DESIGN.md -------------------------------------------

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

    fn rules_check(
        &self,
        kind: OrderType,
        price: Price,
        qty: Qty,
        reference: Price,
    ) -> Result<(), RejectReason> {
        if qty == 0 {
            return Err(RejectReason::ZeroQuantity);
        }
        if qty > 1_000_000_000 {
            return Err(RejectReason::QuantityTooLarge);
        }
        if !qty.is_multiple_of(self.lot()) {
            return Err(RejectReason::OddLot);
        }
        let priceless = matches!(
            kind,
            OrderType::Market | OrderType::Mtl | OrderType::Ato | OrderType::Atc
        );
        if priceless {
            if price != 0 {
                return Err(RejectReason::MarketOrderWithPrice);
            }
            return Ok(());
        }
        if price <= 0 {
            return Err(RejectReason::NonPositivePrice);
        }
        if price % self.tick(price) != 0 {
            return Err(RejectReason::OffTick);
        }
        if let Some((lo, hi)) = self.band(reference) {
            if price < lo || price > hi {
                return Err(RejectReason::OutsideBand);
            }
        }
        Ok(())
    }

    /// DESIGN's phase table, NEW columns.
    fn phase_allows_new(&self, kind: OrderType) -> Result<(), RejectReason> {
        use OrderType as K;
        match (self.phase, kind) {
            (Phase::Break | Phase::Closed, _) => Err(RejectReason::MarketClosed),
            (Phase::Ato, K::Limit | K::Ato) => Ok(()),
            (Phase::Atc, K::Limit | K::Atc) => Ok(()),
            (Phase::Continuous, K::Ato | K::Atc) => Err(RejectReason::PhaseForbids),
            (Phase::Continuous, _) => Ok(()),
            _ => Err(RejectReason::PhaseForbids),
        }
    }

    fn gateway(&mut self, cmd: &Command) -> Result<(), RejectReason> {
        let owner_check = |used: &HashMap<_, Option<(BrokerId, SecurityId)>>,
                           id: OrderId,
                           broker: BrokerId,
                           sec: SecurityId| match used.get(&id.0) {
            Some(Some((owner, s))) if *s == sec => {
                if *owner == broker {
                    Ok(())
                } else {
                    Err(RejectReason::NotOwner)
                }
            }
            _ => Err(RejectReason::UnknownOrder),
        };
        match cmd {
            Command::New(o) => {
                let Some(book) = self.books.get(o.security.0 as usize) else {
                    self.used.entry(o.id.0).or_insert(None);
                    return Err(RejectReason::UnknownSecurity);
                };
                if self.used.contains_key(&o.id.0) {
                    return Err(RejectReason::DuplicateOrderId);
                }
                let r = self
                    .rules_check(o.kind, o.price, o.qty, book.reference)
                    .and_then(|()| self.phase_allows_new(o.kind));
                self.used
                    .insert(o.id.0, r.is_ok().then_some((o.broker, o.security)));
                r
            }
            Command::Cancel(c) => owner_check(&self.used, c.id, c.broker, c.security),
            Command::Amend(a) => owner_check(&self.used, a.id, a.broker, a.security),
            Command::Phase(_) => Ok(()),
        }
    }

    // ----- commands ----------------------------------------------------------------------

    /// Processes one command, appending its events to `out`.
    pub fn process(&mut self, cmd: &Command, out: &mut Vec<Event>) {
        if let Err(reason) = self.gateway(cmd) {
            if let Some(id) = cmd.order_id() {
                out.push(Event::Rejected { id, reason });
            }
            return;
        }
        let sec = match cmd {
            Command::Phase(p) => return self.phase_change(*p, out),
            Command::New(o) => {
                self.new_order(o, out);
                o.security
            }
            Command::Cancel(c) => {
                if let Err(reason) = self.cancel(c.id, c.security, out) {
                    out.push(Event::Rejected { id: c.id, reason });
                }
                c.security
            }
            Command::Amend(a) => {
                if let Err(reason) = self.amend(a, out) {
                    out.push(Event::Rejected { id: a.id, reason });
                }
                a.security
            }
        };
        self.push_totals(sec, out);
    }

    fn push_totals(&self, sec: SecurityId, out: &mut Vec<Event>) {
        let b = &self.books[sec.0 as usize];
        out.push(Event::Totals {
            security: sec,
            bid_total: b.bid_total,
            ask_total: b.ask_total,
        });
    }

    fn rest(&mut self, sec: SecurityId, side: Side, order: Resting, out: &mut Vec<Event>) {
        out.push(Event::Rested {
            id: order.id,
            security: sec,
            side,
            price: order.price,
            qty: order.qty,
        });
        let (orders, total) = self.books[sec.0 as usize].side(side);
        *total += order.qty;
        orders.push(order);
    }

    fn new_order(&mut self, o: &NewOrder, out: &mut Vec<Event>) {
        out.push(Event::Accepted { id: o.id });
        self.clock += 1;
        let time = self.clock;
        let resting = |kind, price, qty| Resting {
            id: o.id,
            broker: o.broker,
            kind,
            price,
            qty,
            time,
        };
        if matches!(self.phase, Phase::Ato | Phase::Atc) {
            // Call phase: LO and the phase's own auction orders rest without matching.
            let order = match o.kind {
                OrderType::Ato => resting(RestingKind::Ato, 0, o.qty),
                OrderType::Atc => resting(RestingKind::Atc, 0, o.qty),
                _ => resting(RestingKind::Limit, o.price, o.qty),
            };
            return self.rest(o.security, o.side, order, out);
        }
        let limit = match o.kind {
            OrderType::Market | OrderType::Mtl => None,
            _ => Some(o.price),
        };
        if o.kind == OrderType::Fok {
            let book = &self.books[o.security.0 as usize];
            let opposite = match o.side {
                Side::Buy => &book.asks,
                Side::Sell => &book.bids,
            };
            let available: Qty = opposite
                .iter()
                .filter(|r| acceptable(o.side, limit, r))
                .map(|r| r.qty)
                .sum();
            if available < o.qty {
                out.push(Event::Cancelled {
                    id: o.id,
                    qty: o.qty,
                    reason: CancelReason::Unfilled,
                });
                return;
            }
        }
        let remaining = self.trade_incoming(o, limit, out);
        if remaining == 0 {
            return;
        }
        match o.kind {
            OrderType::Limit => {
                self.rest(
                    o.security,
                    o.side,
                    resting(RestingKind::Limit, o.price, remaining),
                    out,
                );
            }
            OrderType::Mtl if remaining < o.qty => {
                // Rests as a limit order at the price of its last fill.
                let last = self.books[o.security.0 as usize].last_trade.unwrap();
                self.rest(
                    o.security,
                    o.side,
                    resting(RestingKind::Limit, last, remaining),
                    out,
                );
            }
            _ => out.push(Event::Cancelled {
                id: o.id,
                qty: remaining,
                reason: CancelReason::Unfilled,
            }),
        }
    }

    /// Trades an incoming (or re-entering) order against the opposite side: best price first,
    /// at that price earliest first, each at the resting price. Returns what is left.
    fn trade_incoming(&mut self, o: &NewOrder, limit: Option<Price>, out: &mut Vec<Event>) -> Qty {
        let book = &mut self.books[o.security.0 as usize];
        let mut remaining = o.qty;
        while remaining > 0 {
            let (opposite, total) = book.side(o.side.opposite());
            let best = opposite
                .iter()
                .filter(|r| acceptable(o.side, limit, r))
                .map(|r| r.price)
                .reduce(|a, b| match o.side {
                    Side::Buy => a.min(b),
                    Side::Sell => a.max(b),
                });
            let Some(price) = best else {
                break;
            };
            let mut at_price: Vec<usize> = (0..opposite.len())
                .filter(|&i| !opposite[i].is_market() && opposite[i].price == price)
                .collect();
            at_price.sort_by_key(|&i| opposite[i].time);
            for i in at_price {
                if remaining == 0 {
                    break;
                }
                let r = &mut opposite[i];
                let q = remaining.min(r.qty);
                let (buy, sell, buy_broker, sell_broker) = match o.side {
                    Side::Buy => (o.id, r.id, o.broker, r.broker),
                    Side::Sell => (r.id, o.id, r.broker, o.broker),
                };
                out.push(Event::Fill(Fill {
                    security: o.security,
                    price,
                    qty: q,
                    buy,
                    sell,
                    buy_broker,
                    sell_broker,
                    aggressor: match o.side {
                        Side::Buy => Aggressor::Buy,
                        Side::Sell => Aggressor::Sell,
                    },
                }));
                r.qty -= q;
                *total -= q;
                remaining -= q;
            }
            opposite.retain(|r| r.qty > 0);
            book.last_trade = Some(price);
        }
        remaining
    }

    fn cancel(
        &mut self,
        id: OrderId,
        sec: SecurityId,
        out: &mut Vec<Event>,
    ) -> Result<(), RejectReason> {
        let book = &mut self.books[sec.0 as usize];
        let Some((side, i)) = book.find(id) else {
            return Err(RejectReason::OrderNotLive);
        };
        match self.phase {
            Phase::Ato | Phase::Atc => return Err(RejectReason::PhaseForbids),
            Phase::Closed => return Err(RejectReason::MarketClosed),
            Phase::Continuous | Phase::Break => {}
        }
        let (orders, total) = book.side(side);
        let r = orders.remove(i);
        *total -= r.qty;
        out.push(Event::Cancelled {
            id,
            qty: r.qty,
            reason: CancelReason::Requested,
        });
        Ok(())
    }

    fn amend(
        &mut self,
        a: &matching::AmendOrder,
        out: &mut Vec<Event>,
    ) -> Result<(), RejectReason> {
        let book = &self.books[a.security.0 as usize];
        let Some((side, i)) = book.find(a.id) else {
            return Err(RejectReason::OrderNotLive);
        };
        self.rules_check(OrderType::Limit, a.price, a.qty, book.reference)?;
        match self.phase {
            Phase::Continuous => {}
            Phase::Ato | Phase::Atc => return Err(RejectReason::PhaseForbids),
            Phase::Break | Phase::Closed => return Err(RejectReason::MarketClosed),
        }
        let book = &mut self.books[a.security.0 as usize];
        let (orders, total) = book.side(side);
        let amended = |kept| Event::Amended {
            id: a.id,
            security: a.security,
            price: a.price,
            qty: a.qty,
            priority_kept: kept,
        };
        if orders[i].price == a.price && a.qty <= orders[i].qty {
            *total -= orders[i].qty - a.qty;
            orders[i].qty = a.qty;
            out.push(amended(true));
            return Ok(());
        }
        let old = orders.remove(i);
        *total -= old.qty;
        out.push(amended(false));
        // Re-enters as a limit order arriving now.
        let again = NewOrder {
            id: a.id,
            broker: old.broker,
            security: a.security,
            side,
            kind: OrderType::Limit,
            price: a.price,
            qty: a.qty,
        };
        let remaining = self.trade_incoming(&again, Some(a.price), out);
        if remaining > 0 {
            self.clock += 1;
            let order = Resting {
                id: a.id,
                broker: old.broker,
                kind: RestingKind::Limit,
                price: a.price,
                qty: remaining,
                time: self.clock,
            };
            self.rest(a.security, side, order, out);
        }
        Ok(())
    }

    // ----- the trading day ----------------------------------------------------------------

    fn phase_change(&mut self, new: Phase, out: &mut Vec<Event>) {
        if new == self.phase {
            return;
        }
        let leaving_call = matches!(self.phase, Phase::Ato | Phase::Atc);
        let mut by_code: Vec<usize> = (0..self.books.len()).collect();
        by_code.sort_by(|&a, &b| self.codes[a].as_bytes().cmp(self.codes[b].as_bytes()));
        for s in by_code {
            let sec = SecurityId(s as u32);
            if leaving_call {
                self.auction(sec, out);
                self.cancel_leftover_market_orders(sec, out);
            }
            if new == Phase::Closed {
                self.close(sec, out);
            }
            self.push_totals(sec, out);
        }
        self.phase = new;
    }

    fn auction(&mut self, sec: SecurityId, out: &mut Vec<Event>) {
        let book = &mut self.books[sec.0 as usize];
        let anchor = book.last_trade.unwrap_or(book.reference);
        let mut candidates: Vec<Price> = book
            .bids
            .iter()
            .chain(&book.asks)
            .filter(|r| !r.is_market())
            .map(|r| r.price)
            .collect();
        candidates.sort();
        candidates.dedup();
        if candidates.is_empty() {
            candidates.push(anchor);
        }
        let mut best: Option<(Price, u128)> = None;
        for p in candidates {
            let demand: u128 = book
                .bids
                .iter()
                .filter(|r| r.is_market() || r.price >= p)
                .map(|r| r.qty as u128)
                .sum();
            let supply: u128 = book
                .asks
                .iter()
                .filter(|r| r.is_market() || r.price <= p)
                .map(|r| r.qty as u128)
                .sum();
            let v = demand.min(supply);
            let distance = |x: Price| (x as i128 - anchor as i128).abs();
            let better = match best {
                None => true,
                Some((bp, bv)) => {
                    v > bv
                        || (v == bv
                            && (distance(p) < distance(bp)
                                || (distance(p) == distance(bp) && p > bp)))
                }
            };
            if better {
                best = Some((p, v));
            }
        }
        let Some((price, volume)) = best.filter(|&(_, v)| v > 0) else {
            return;
        };
        let buys: Vec<usize> = book
            .priority(Side::Buy)
            .into_iter()
            .filter(|&i| book.bids[i].is_market() || book.bids[i].price >= price)
            .collect();
        let sells: Vec<usize> = book
            .priority(Side::Sell)
            .into_iter()
            .filter(|&i| book.asks[i].is_market() || book.asks[i].price <= price)
            .collect();
        let (mut i, mut j) = (0, 0);
        let mut left = volume as Qty;
        while left > 0 {
            let (b, s) = (&mut book.bids[buys[i]], &mut book.asks[sells[j]]);
            let q = b.qty.min(s.qty);
            out.push(Event::Fill(Fill {
                security: sec,
                price,
                qty: q,
                buy: b.id,
                sell: s.id,
                buy_broker: b.broker,
                sell_broker: s.broker,
                aggressor: Aggressor::Auction,
            }));
            b.qty -= q;
            s.qty -= q;
            left -= q;
            if b.qty == 0 {
                i += 1;
            }
            if s.qty == 0 {
                j += 1;
            }
            book.bid_total -= q;
            book.ask_total -= q;
        }
        book.bids.retain(|r| r.qty > 0);
        book.asks.retain(|r| r.qty > 0);
        book.last_trade = Some(price);
        out.push(Event::Auction {
            security: sec,
            price,
            volume: volume as Qty,
        });
    }

    fn cancel_leftover_market_orders(&mut self, sec: SecurityId, out: &mut Vec<Event>) {
        let book = &mut self.books[sec.0 as usize];
        for side in [Side::Buy, Side::Sell] {
            let (orders, total) = book.side(side);
            let mut left: Vec<&Resting> = orders.iter().filter(|r| r.is_market()).collect();
            left.sort_by_key(|r| r.time);
            for r in left {
                out.push(Event::Cancelled {
                    id: r.id,
                    qty: r.qty,
                    reason: CancelReason::Unfilled,
                });
                *total -= r.qty;
            }
            orders.retain(|r| !r.is_market());
        }
    }

    fn close(&mut self, sec: SecurityId, out: &mut Vec<Event>) {
        let book = &mut self.books[sec.0 as usize];
        for side in [Side::Buy, Side::Sell] {
            for i in book.priority(side) {
                let r = match side {
                    Side::Buy => &book.bids[i],
                    Side::Sell => &book.asks[i],
                };
                out.push(Event::Cancelled {
                    id: r.id,
                    qty: r.qty,
                    reason: CancelReason::Expired,
                });
            }
        }
        book.bids.clear();
        book.asks.clear();
        book.bid_total = 0;
        book.ask_total = 0;
        if let Some(close) = book.last_trade.take() {
            book.reference = close;
        }
        out.push(Event::Reference {
            security: sec,
            price: book.reference,
        });
    }

    // ----- inspection ---------------------------------------------------------------------

    /// (bid_total, ask_total) of a security.
    pub fn totals(&self, sec: SecurityId) -> (Qty, Qty) {
        self.books
            .get(sec.0 as usize)
            .map_or((0, 0), |b| (b.bid_total, b.ask_total))
    }

    /// Resting orders across all books.
    pub fn live_orders(&self) -> usize {
        self.books.iter().map(|b| b.bids.len() + b.asks.len()).sum()
    }

    /// The book as a [`BookImage`] (orders in priority order), to compare with the fast
    /// engine's `export_book`.
    pub fn image(&self, sec: SecurityId) -> BookImage {
        let book = &self.books[sec.0 as usize];
        let side = |side: Side| {
            let orders = match side {
                Side::Buy => &book.bids,
                Side::Sell => &book.asks,
            };
            book.priority(side)
                .into_iter()
                .map(|i| {
                    let r = &orders[i];
                    RestingOrder {
                        id: r.id,
                        broker: r.broker,
                        qty: r.qty,
                        kind: r.kind,
                        price: r.price,
                    }
                })
                .collect()
        };
        BookImage {
            security: sec,
            phase: self.phase,
            reference: book.reference,
            last_trade: book.last_trade,
            bids: side(Side::Buy),
            asks: side(Side::Sell),
        }
    }

    /// Panics unless every cached side total equals the sum of its orders.
    pub fn audit(&self) {
        for (s, b) in self.books.iter().enumerate() {
            let sum = |v: &[Resting]| v.iter().map(|r| r.qty).sum::<Qty>();
            assert_eq!(b.bid_total, sum(&b.bids), "bid total of security {s}");
            assert_eq!(b.ask_total, sum(&b.asks), "ask total of security {s}");
            assert!(b.bids.iter().chain(&b.asks).all(|r| r.qty > 0));
        }
    }
}

/// Whether an incoming order on `side` with `limit` (None = market) accepts resting `r`.
fn acceptable(side: Side, limit: Option<Price>, r: &Resting) -> bool {
    if r.is_market() {
        return false;
    }
    match (limit, side) {
        (None, _) => true,
        (Some(p), Side::Buy) => r.price <= p,
        (Some(p), Side::Sell) => r.price >= p,
    }
}
