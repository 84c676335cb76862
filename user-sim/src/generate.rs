//! Seeded, reproducible order-stream generator.
//!
//! Pure: a [`GenConfig`] (with its seed), a security table and market rules in, order rows out.
//! The same inputs always give the same rows, byte for byte once written, because the only
//! randomness is a [`ChaCha8Rng`] seeded from the config and every collection walked in order is
//! a `Vec`.
//!
//! Shape of the stream (see [`GenConfig`] for the shares):
//! - securities are picked with a skewed popularity (a few names trade much more than others);
//! - every row is fed to a private shadow [`Exchange`], so limit prices are placed against the
//!   real touch: most rest at or a few ticks behind their side's best, some cross it; an empty
//!   side is anchored on a per-security fair value that random-walks on the tick grid inside
//!   the daily band;
//! - quantities are board lots, mostly 100 to 1,000 shares;
//! - cancels target orders this generator placed that are still resting in the shadow book
//!   (a bounded, per-broker candidate list), naming the owner and the security;
//! - amends (with `amend_pct`) target the same resting orders: a quantity reduction that
//!   keeps priority, a price move of a few ticks (sometimes through the touch), or more
//!   quantity;
//! - a small share of rows is deliberately invalid, one of [`InvalidKind`].
//!
//! With [`GenConfig::day`] the stream is whole trading days instead of one continuous session
//! (see [`day`]): PHASE rows, an opening call with crossing LO/ATO orders, continuous flow with
//! MTL, amends and cancels, a lunch break, a closing call with ATC orders, the close.

use std::path::{Path, PathBuf};

pub mod day;

use matching::stream::{to_command, write_orders, Action, BrokerRegistry, OrderRow};
use matching::{
    Event, Exchange, MarketRules, OrderType, Price, Qty, SecurityId, SecurityTable, Side,
};

pub use day::DayShape;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;

/// How many resting candidates each broker remembers for later cancels. Older ones are the
/// most likely to have traded away, so a full list overwrites a random slot.
const LIVE_CAP: usize = 512;

/// Parameters of one generated stream.
#[derive(Clone, Debug, PartialEq)]
pub struct GenConfig {
    /// Number of rows; order ids are `1..=orders` in row order.
    pub orders: u64,
    /// Seed of the ChaCha8 generator.
    pub seed: u64,
    /// Number of brokers, named `B01`, `B02`, ...
    pub brokers: u32,
    /// Percent of rows that are deliberately invalid (0..=100).
    pub invalid_pct: f64,
    /// Percent of rows that cancel an earlier order (0..=100).
    pub cancel_pct: f64,
    /// Percent of rows that are takers: MP, IOC or FOK, and MTL in a trading day (0..=100).
    /// The rest are LO.
    pub taker_pct: f64,
    /// Percent of rows that amend a resting order (0..=100).
    pub amend_pct: f64,
    /// Whole trading days (phases, auctions, the close) instead of one continuous session.
    pub day: Option<DayShape>,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            orders: 10_000,
            seed: 1,
            brokers: 8,
            invalid_pct: 0.5,
            cancel_pct: 20.0,
            taker_pct: 10.0,
            amend_pct: 0.0,
            day: None,
        }
    }
}

/// Errors of the generator's inputs.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("the security table is empty: nothing to trade")]
    NoSecurities,
    #[error("--brokers must be between 1 and 99, got {0}")]
    Brokers(u32),
    #[error("{name} must be a percentage between 0 and 100, got {value}")]
    Percent { name: &'static str, value: f64 },
    #[error("--invalid-pct + --cancel-pct + --taker-pct + --amend-pct must not exceed 100")]
    SharesOver100,
    #[error("--days must be between 1 and {max}, got {0}", max = day::MAX_DAYS)]
    Days(u32),
    #[error("--orders {orders} is too few for {days} trading day(s): at least {min} a day")]
    TooFewForDays { orders: u64, days: u32, min: u64 },
}

impl GenConfig {
    /// Checks the config makes sense before generating.
    pub fn validate(&self, securities: &SecurityTable) -> Result<(), GenError> {
        if securities.is_empty() {
            return Err(GenError::NoSecurities);
        }
        if !(1..=99).contains(&self.brokers) {
            return Err(GenError::Brokers(self.brokers));
        }
        for (name, value) in [
            ("--invalid-pct", self.invalid_pct),
            ("--cancel-pct", self.cancel_pct),
            ("--taker-pct", self.taker_pct),
            ("--amend-pct", self.amend_pct),
        ] {
            if !(0.0..=100.0).contains(&value) {
                return Err(GenError::Percent { name, value });
            }
        }
        if self.invalid_pct + self.cancel_pct + self.taker_pct + self.amend_pct > 100.0 {
            return Err(GenError::SharesOver100);
        }
        if let Some(shape) = &self.day {
            shape.validate(self.orders)?;
        }
        Ok(())
    }
}

/// The kinds of deliberately invalid rows, each rejected by the gateway with its own reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidKind {
    /// Limit price not on the tick grid (`off_tick`).
    OffTick,
    /// Limit price beyond the ceiling or below the floor (`outside_band`).
    OutsideBand,
    /// Quantity not a multiple of the board lot (`odd_lot`).
    OddLot,
    /// Quantity zero (`zero_quantity`).
    ZeroQty,
    /// Security code that is not listed (`unknown_security`).
    UnknownSecurity,
    /// Cancel of another broker's order (`not_owner`).
    ForeignCancel,
}

/// Broker name for index `i` (0-based): `B01`, `B02`, ...
pub fn broker_name(i: u32) -> String {
    format!("B{:02}", i + 1)
}

/// Writes `m` default listings to `path` unless the file already exists. Returns whether it
/// wrote them.
pub fn ensure_listings(path: &Path, m: Option<usize>) -> std::io::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    match m {
        Some(m) => {
            let table = SecurityTable::synthetic(m).map_err(std::io::Error::other)?;
            std::fs::write(path, table.to_csv())?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Per-security walking state.
struct SecState {
    id: SecurityId,
    code: String,
    /// Lowest and highest price the mid may reach (the band, or a wide range without one).
    floor: Price,
    ceiling: Price,
    /// Band limits for orders; `None` when the rules have no band.
    band: Option<(Price, Price)>,
    /// Fair value: anchors a side of the book that is empty.
    mid: Price,
}

/// A remembered resting order of some broker, candidate for a later cancel or amend.
#[derive(Clone, Copy)]
struct Resting {
    id: u64,
    sec: u32,
}

/// An order resting in the shadow book now, as its `Rested`/`Amended`/`Fill` events say.
#[derive(Clone, Copy, Debug)]
struct LiveOrder {
    open: Qty,
    /// Limit price (0 for an ATO/ATC order waiting for its auction).
    price: Price,
}

/// Generates the stream described by `cfg` over `securities` under `rules`.
///
/// Never panics; an empty table or a bad config gives an empty stream (call
/// [`GenConfig::validate`] first to get the reason).
///
/// The generator feeds every row it makes to a private [`Exchange`] so that prices follow the
/// real touch and cancels name orders that are really still resting; the exchange is as
/// deterministic as the generator, so the output stays a pure function of the inputs.
pub fn generate(cfg: &GenConfig, securities: &SecurityTable, rules: &MarketRules) -> Vec<OrderRow> {
    if cfg.validate(securities).is_err() {
        return Vec::new();
    }
    let generator = Generator::new(cfg, securities, rules);
    match cfg.day {
        Some(shape) => generator.run_days(shape),
        None => generator.run(),
    }
}

struct Generator<'a> {
    cfg: &'a GenConfig,
    rules: &'a MarketRules,
    securities: &'a SecurityTable,
    rng: ChaCha8Rng,
    secs: Vec<SecState>,
    /// Cumulative popularity weights, for a skewed pick of the security.
    cum_weights: Vec<u64>,
    brokers: Vec<String>,
    /// Per broker: resting candidates, possibly stale (checked against `live` when used).
    candidates: Vec<Vec<Resting>>,
    /// Exactly the orders resting now, with their open quantity and price.
    live: FxHashMap<u64, LiveOrder>,
    exchange: Exchange,
    broker_ids: BrokerRegistry,
    events: Vec<Event>,
    unknown_code: String,
}

impl<'a> Generator<'a> {
    fn new(cfg: &'a GenConfig, securities: &'a SecurityTable, rules: &'a MarketRules) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut secs = Vec::with_capacity(securities.len());
        for (id, code, reference) in securities.iter() {
            secs.push(day::sec_state(rules, id, code, reference));
        }
        // Popularity ~ 1/(rank+1), shuffled so the busy names are not all the first codes.
        let mut weights: Vec<u64> = (0..secs.len())
            .map(|r| (1_000_000 / (r as u64 + 1)).max(1))
            .collect();
        for i in (1..weights.len()).rev() {
            let j = rng.gen_range(0..=i);
            weights.swap(i, j);
        }
        let mut acc = 0u64;
        let cum_weights = weights
            .iter()
            .map(|w| {
                acc += w;
                acc
            })
            .collect();
        let mut unknown_code = String::from("ZZZZ");
        while securities.lookup(&unknown_code) != SecurityId::UNKNOWN {
            unknown_code.push('Z');
        }
        Generator {
            cfg,
            rules,
            securities,
            rng,
            secs,
            cum_weights,
            brokers: (0..cfg.brokers).map(broker_name).collect(),
            candidates: vec![Vec::new(); cfg.brokers as usize],
            live: FxHashMap::default(),
            exchange: Exchange::new(*rules, securities.clone()),
            broker_ids: BrokerRegistry::new(),
            events: Vec::with_capacity(64),
            unknown_code,
        }
    }

    fn run(mut self) -> Vec<OrderRow> {
        let mut rows = Vec::with_capacity(self.cfg.orders as usize);
        for id in 1..=self.cfg.orders {
            let row = self.continuous_row(id);
            self.apply(&row);
            rows.push(row);
        }
        rows
    }

    /// One row of continuous trading: invalid, cancel, taker, amend or limit by the config's
    /// shares (a cancel or amend with nothing to target becomes a limit order).
    fn continuous_row(&mut self, id: u64) -> OrderRow {
        let invalid = self.cfg.invalid_pct;
        let cancel = invalid + self.cfg.cancel_pct;
        let taker = cancel + self.cfg.taker_pct;
        let amend = taker + self.cfg.amend_pct;
        let roll: f64 = self.rng.gen_range(0.0..100.0);
        if roll < invalid {
            self.invalid(id)
        } else if roll < cancel {
            match self.cancel() {
                Some(row) => row,
                None => self.limit(id),
            }
        } else if roll < taker {
            self.taker(id)
        } else if roll < amend {
            match self.amend() {
                Some(row) => row,
                None => self.limit(id),
            }
        } else {
            self.limit(id)
        }
    }

    /// Feeds the row to the shadow exchange and updates the live set from its events: an
    /// order is live from its `Rested` (with the open quantity it reports) until a `Cancelled`
    /// or the fills that use it up; an amend that loses priority takes it out until its
    /// `Rested` brings it back.
    fn apply(&mut self, row: &OrderRow) {
        let cmd = to_command(row, self.securities, &mut self.broker_ids);
        self.events.clear();
        self.exchange.process(&cmd, &mut self.events);
        let mut rested = None;
        for ev in &self.events {
            match *ev {
                Event::Fill(f) => {
                    // Both sides: an incoming order is not live yet, an auction's both rest.
                    for id in [f.buy.0, f.sell.0] {
                        if let Some(o) = self.live.get_mut(&id) {
                            o.open = o.open.saturating_sub(f.qty);
                            if o.open == 0 {
                                self.live.remove(&id);
                            }
                        }
                    }
                }
                Event::Cancelled { id, .. } => {
                    self.live.remove(&id.0);
                }
                Event::Rested {
                    id,
                    security,
                    price,
                    qty,
                    ..
                } => {
                    self.live.insert(id.0, LiveOrder { open: qty, price });
                    // An ATO/ATC order (price 0) can be neither cancelled nor amended in its
                    // call phase and is gone after it.
                    if price > 0 {
                        rested = Some(Resting {
                            id: id.0,
                            sec: security.0,
                        });
                    }
                }
                Event::Amended {
                    id,
                    price,
                    qty,
                    priority_kept,
                    ..
                } => {
                    if priority_kept {
                        self.live.insert(id.0, LiveOrder { open: qty, price });
                    } else {
                        self.live.remove(&id.0);
                    }
                }
                Event::Accepted { .. }
                | Event::Rejected { .. }
                | Event::Totals { .. }
                | Event::Auction { .. }
                | Event::Reference { .. } => {}
            }
        }
        if let Some(r) = rested {
            if let Some(b) = self.brokers.iter().position(|b| *b == row.broker) {
                self.remember(b, r);
            }
        }
    }

    fn pick_security(&mut self) -> u32 {
        let total = self.cum_weights.last().copied().unwrap_or(1);
        let x = self.rng.gen_range(0..total);
        self.cum_weights.partition_point(|&c| c <= x) as u32
    }

    /// Moves the security's fair value one tick now and then, pushed back from the band edges
    /// and pulled towards the real touch when the book has both sides.
    fn walk(&mut self, sec: u32) {
        let rules = self.rules;
        let (bid, ask) = self.touch(sec);
        let step: i64 = match self.rng.gen_range(0..10) {
            0 => -1,
            1 => 1,
            _ => 0,
        };
        let s = &mut self.secs[sec as usize];
        if let (Some(b), Some(a)) = (bid, ask) {
            s.mid = rules.round_to_tick((a + b) / 2, false);
        }
        let tick = rules.tick(s.mid);
        let margin = (10 * tick).min((s.ceiling - s.floor) / 4);
        let step = if s.mid - tick < s.floor + margin {
            1
        } else if s.mid + tick > s.ceiling - margin {
            -1
        } else {
            step
        };
        let moved = s.mid + step * rules.tick(s.mid + step);
        s.mid = rules
            .round_to_tick(moved, step > 0)
            .clamp(s.floor, s.ceiling);
    }

    /// Best bid and best ask of the shadow book.
    fn touch(&self, sec: u32) -> (Option<Price>, Option<Price>) {
        let (bids, asks) = self.exchange.engine().depth(self.secs[sec as usize].id, 1);
        (bids.first().map(|l| l.0), asks.first().map(|l| l.0))
    }

    /// On tick (rounded away from the mid on the passive side) and inside the band.
    fn legal(&self, sec: u32, price: Price, up: bool) -> Price {
        let s = &self.secs[sec as usize];
        let p = self.rules.round_to_tick(price.max(1), up);
        let p = match s.band {
            Some((lo, hi)) => p.clamp(lo, hi),
            None => p,
        };
        p.max(self.rules.tick(1))
    }

    /// A resting price: at or a few ticks behind the own-side best (now and then one tick
    /// inside the spread), never crossing the other side.
    fn passive_price(&mut self, sec: u32, side: Side) -> Price {
        let (bid, ask) = self.touch(sec);
        let mid = self.secs[sec as usize].mid;
        let a = self.rng.gen_range(0..=6i64);
        let b = self.rng.gen_range(0..=6i64);
        // Behind the touch by 0..6 ticks, nearer more often; -1 improves the touch.
        let behind = if self.rng.gen_range(0..10) == 0 {
            -1
        } else {
            a.min(b)
        };
        match side {
            Side::Buy => {
                let anchor = bid.unwrap_or_else(|| ask.map_or(mid, |x| x - self.rules.tick(x - 1)));
                let tick = self.rules.tick(anchor);
                let mut p = self.legal(sec, anchor - behind * tick, false);
                if let Some(ask) = ask {
                    if p >= ask {
                        p = self.legal(sec, ask - self.rules.tick(ask - 1), false);
                    }
                }
                p
            }
            Side::Sell => {
                let anchor = ask.unwrap_or_else(|| bid.map_or(mid, |x| x + self.rules.tick(x)));
                let tick = self.rules.tick(anchor);
                let mut p = self.legal(sec, anchor + behind * tick, true);
                if let Some(bid) = bid {
                    if p <= bid {
                        p = self.legal(sec, bid + self.rules.tick(bid), true);
                    }
                }
                p
            }
        }
    }

    /// A marketable price: at the other side's best or up to `extra` ticks through it.
    fn crossing_price(&mut self, sec: u32, side: Side, extra: i64) -> Price {
        let (bid, ask) = self.touch(sec);
        let mid = self.secs[sec as usize].mid;
        let through = self.rng.gen_range(0..=extra);
        match side {
            Side::Buy => {
                let anchor = ask.unwrap_or(mid);
                self.legal(sec, anchor + through * self.rules.tick(anchor), true)
            }
            Side::Sell => {
                let anchor = bid.unwrap_or(mid);
                self.legal(sec, anchor - through * self.rules.tick(anchor - 1), false)
            }
        }
    }

    /// Board-lot quantity: mostly 100 to 1,000 shares, sometimes a block up to 10,000.
    fn qty(&mut self) -> Qty {
        let lots: u64 = if self.rng.gen_range(0..20) == 0 {
            self.rng.gen_range(11..=100)
        } else {
            // Small orders are commoner than large ones.
            let a = self.rng.gen_range(1..=10);
            let b = self.rng.gen_range(1..=10);
            a.min(b)
        };
        let lot = self.rules.lot().max(1);
        let q = lots * 100;
        if q.is_multiple_of(lot) {
            q
        } else {
            lots * lot
        }
    }

    fn side(&mut self) -> Side {
        if self.rng.gen_bool(0.5) {
            Side::Buy
        } else {
            Side::Sell
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn new_row(
        &self,
        id: u64,
        broker: usize,
        code: &str,
        side: Side,
        kind: OrderType,
        price: Price,
        qty: Qty,
    ) -> OrderRow {
        OrderRow {
            action: Action::New,
            order_id: id,
            broker: self.brokers[broker].clone(),
            security: code.to_string(),
            side: Some(side),
            kind: Some(kind),
            price,
            qty,
            phase: None,
        }
    }

    fn cancel_row(&self, target: u64, broker: usize, sec: u32) -> OrderRow {
        OrderRow {
            action: Action::Cancel,
            order_id: target,
            broker: self.brokers[broker].clone(),
            security: self.secs[sec as usize].code.clone(),
            side: None,
            kind: None,
            price: 0,
            qty: 0,
            phase: None,
        }
    }

    fn limit(&mut self, id: u64) -> OrderRow {
        let sec = self.pick_security();
        self.walk(sec);
        let side = self.side();
        let broker = self.rng.gen_range(0..self.brokers.len());
        // ~15% of limit orders are marketable; the rest rest near the touch.
        let price = if self.rng.gen_range(0..100) < 15 {
            self.crossing_price(sec, side, 2)
        } else {
            self.passive_price(sec, side)
        };
        let qty = self.qty();
        let code = self.secs[sec as usize].code.clone();
        self.new_row(id, broker, &code, side, OrderType::Limit, price, qty)
    }

    /// MP (40%), IOC (30%) or FOK (30%); in a trading day (HOSE since 2025: MTL replaced
    /// most MP) MTL 30%, MP 10%, IOC 30%, FOK 30%.
    fn taker(&mut self, id: u64) -> OrderRow {
        let sec = self.pick_security();
        self.walk(sec);
        let side = self.side();
        let broker = self.rng.gen_range(0..self.brokers.len());
        let code = self.secs[sec as usize].code.clone();
        let qty = self.qty();
        let day = self.cfg.day.is_some();
        match self.rng.gen_range(0..10) {
            0..=2 if day => self.new_row(id, broker, &code, side, OrderType::Mtl, 0, qty),
            0..=3 => self.new_row(id, broker, &code, side, OrderType::Market, 0, qty),
            k => {
                let kind = if k < 7 {
                    OrderType::Ioc
                } else {
                    OrderType::Fok
                };
                let price = self.crossing_price(sec, side, 3);
                self.new_row(id, broker, &code, side, kind, price, qty)
            }
        }
    }

    fn remember(&mut self, broker: usize, r: Resting) {
        let list = &mut self.candidates[broker];
        if list.len() < LIVE_CAP {
            list.push(r);
        } else {
            // Overwrite a random slot: keeps a mix of young and old resting orders.
            let slot = self.rng.gen_range(0..LIVE_CAP);
            list[slot] = r;
        }
    }

    /// Takes a resting order of `broker` that is still live; forgets stale candidates met.
    fn take_live(&mut self, broker: usize) -> Option<Resting> {
        loop {
            let list = &mut self.candidates[broker];
            if list.is_empty() {
                return None;
            }
            let i = self.rng.gen_range(0..list.len());
            let r = list.swap_remove(i);
            if self.live.contains_key(&r.id) {
                return Some(r);
            }
        }
    }

    /// A live order of any broker but `not`, left in its owner's candidates.
    fn peek_foreign(&mut self, not: usize) -> Option<Resting> {
        let n = self.brokers.len();
        let start = self.rng.gen_range(0..n);
        for k in 0..n {
            let b = (start + k) % n;
            if b == not {
                continue;
            }
            if let Some(r) = self.take_live(b) {
                // Put it back: a foreign cancel must not stop the owner cancelling it later.
                self.candidates[b].push(r);
                return Some(r);
            }
        }
        None
    }

    fn cancel(&mut self) -> Option<OrderRow> {
        let broker = self.rng.gen_range(0..self.brokers.len());
        let r = self.take_live(broker)?;
        Some(self.cancel_row(r.id, broker, r.sec))
    }

    /// An amend of one of a broker's resting limit orders: 40% a quantity reduction at the
    /// same price (keeps priority), 40% a price move of 1 to 3 ticks either way (loses
    /// priority; a move through the touch trades), 20% more quantity (loses priority).
    fn amend(&mut self) -> Option<OrderRow> {
        let broker = self.rng.gen_range(0..self.brokers.len());
        let r = self.take_live(broker)?;
        let o = self.live.get(&r.id).copied()?;
        let lot = self.rules.lot().max(1);
        let lots = o.open / lot;
        let kind = self.rng.gen_range(0..10);
        let (price, qty) = if kind < 4 && lots >= 2 {
            (o.price, lot * self.rng.gen_range(1..lots))
        } else if kind < 8 {
            let steps = self.rng.gen_range(1..=3i64) * if self.rng.gen_bool(0.5) { 1 } else { -1 };
            let up = steps > 0;
            let mut p = o.price;
            for _ in 0..steps.abs() {
                p = if up {
                    p + self.rules.tick(p)
                } else {
                    p - self.rules.tick(p - 1)
                };
            }
            (self.legal(r.sec, p, up), o.open)
        } else {
            (o.price, o.open + lot * self.rng.gen_range(1..=5))
        };
        // An amend that keeps priority leaves the order live where it is; one that loses it
        // comes back through its `Rested` (which remembers it again).
        if price == o.price && qty <= o.open {
            self.candidates[broker].push(r);
        }
        Some(OrderRow {
            action: Action::Amend,
            order_id: r.id,
            broker: self.brokers[broker].clone(),
            security: self.secs[r.sec as usize].code.clone(),
            side: None,
            kind: None,
            price,
            qty,
            phase: None,
        })
    }

    fn invalid(&mut self, id: u64) -> OrderRow {
        let sec = self.pick_security();
        let mut kinds = vec![InvalidKind::ZeroQty, InvalidKind::UnknownSecurity];
        if self.rules.lot() > 1 {
            kinds.push(InvalidKind::OddLot);
        }
        if self.rules.tick(self.secs[sec as usize].mid) > 1 {
            kinds.push(InvalidKind::OffTick);
        }
        if self.secs[sec as usize].band.is_some() {
            kinds.push(InvalidKind::OutsideBand);
        }
        if self.brokers.len() > 1 {
            kinds.push(InvalidKind::ForeignCancel);
        }
        let kind = kinds[self.rng.gen_range(0..kinds.len())];
        self.invalid_of(id, kind, sec)
    }

    fn invalid_of(&mut self, id: u64, kind: InvalidKind, sec: u32) -> OrderRow {
        let side = self.side();
        let broker = self.rng.gen_range(0..self.brokers.len());
        let code = self.secs[sec as usize].code.clone();
        let price = self.passive_price(sec, side);
        let qty = self.qty();
        let lo = |p| self.new_row(id, broker, &code, side, OrderType::Limit, p, qty);
        match kind {
            // One unit off a tick of at least 2 is never on the grid.
            InvalidKind::OffTick => lo(price + 1),
            InvalidKind::OutsideBand => {
                let (floor, ceiling) = self.secs[sec as usize].band.unwrap_or((1, price));
                let below = floor - self.rules.tick(floor - 1);
                let p = if side == Side::Sell && below > 0 {
                    below
                } else {
                    ceiling.saturating_add(self.rules.tick(ceiling))
                };
                lo(p)
            }
            InvalidKind::OddLot => {
                let odd = qty + self.rng.gen_range(1..self.rules.lot().max(2));
                self.new_row(id, broker, &code, side, OrderType::Limit, price, odd)
            }
            InvalidKind::ZeroQty => {
                self.new_row(id, broker, &code, side, OrderType::Limit, price, 0)
            }
            InvalidKind::UnknownSecurity => {
                let unknown = self.unknown_code.clone();
                self.new_row(id, broker, &unknown, side, OrderType::Limit, price, qty)
            }
            InvalidKind::ForeignCancel => match self.peek_foreign(broker) {
                Some(r) => self.cancel_row(r.id, broker, r.sec),
                // Nothing rests yet: fall back to another invalid kind.
                None => self.new_row(id, broker, &code, side, OrderType::Limit, price, 0),
            },
        }
    }
}

/// Errors of [`run_job`]: the generator's file wrapper.
#[derive(Debug, thiserror::Error)]
pub enum GenerateFileError {
    #[error("securities file {0} does not exist (pass --listings M to create it with M synthetic listings)")]
    MissingSecurities(PathBuf),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Read(#[from] crate::replay::ReplayError),
    #[error(transparent)]
    Config(#[from] GenError),
}

/// A generate command: where to read listings from (creating them if asked) and where to write.
#[derive(Clone, Debug)]
pub struct GenerateJob {
    pub config: GenConfig,
    pub rules: MarketRules,
    pub securities: PathBuf,
    /// Synthetic listings to write to `securities` if that file does not exist.
    pub listings: Option<usize>,
    pub out: PathBuf,
}

/// What [`run_job`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenerateSummary {
    pub rows: usize,
    pub securities: usize,
    /// Whether the securities file was created from `--listings`.
    pub wrote_listings: bool,
}

/// Reads (or first creates) the listings, generates the stream and writes the orders CSV.
pub fn run_job(job: &GenerateJob) -> Result<GenerateSummary, GenerateFileError> {
    let wrote_listings = ensure_listings(&job.securities, job.listings).map_err(|source| {
        GenerateFileError::Write {
            path: job.securities.clone(),
            source,
        }
    })?;
    if !job.securities.exists() {
        return Err(GenerateFileError::MissingSecurities(job.securities.clone()));
    }
    let securities = crate::replay::read_securities(&job.securities)?;
    job.config.validate(&securities)?;
    let rows = generate(&job.config, &securities, &job.rules);
    std::fs::write(&job.out, write_orders(&rows)).map_err(|source| GenerateFileError::Write {
        path: job.out.clone(),
        source,
    })?;
    Ok(GenerateSummary {
        rows: rows.len(),
        securities: securities.len(),
        wrote_listings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use matching::stream::replay_local;

    fn cfg(orders: u64, invalid_pct: f64) -> GenConfig {
        GenConfig {
            orders,
            seed: 3,
            invalid_pct,
            ..GenConfig::default()
        }
    }

    #[test]
    fn default_listings_cover_the_three_hose_tick_regions_on_tick() {
        let t = SecurityTable::synthetic(30).unwrap();
        assert_eq!(t.len(), 30);
        assert_eq!(
            t,
            SecurityTable::synthetic(30).unwrap(),
            "listings are reproducible"
        );
        let hose = MarketRules::hose();
        let mut regions = [0; 3];
        for (_, _, r) in t.iter() {
            assert_eq!(r % hose.tick(r), 0, "reference {r} off tick");
            regions[match r {
                ..10_000 => 0,
                10_000..50_000 => 1,
                _ => 2,
            }] += 1;
        }
        assert_eq!(regions, [10, 10, 10]);
    }

    #[test]
    fn valid_rows_are_on_tick_in_band_in_board_lots() {
        let secs = SecurityTable::synthetic(50).unwrap();
        let rules = MarketRules::hose();
        let rows = generate(&cfg(20_000, 0.0), &secs, &rules);
        assert_eq!(rows.len(), 20_000);
        let mut small = 0;
        for r in rows.iter().filter(|r| r.action == Action::New) {
            let id = secs.lookup(&r.security);
            let (floor, ceiling) = rules.band(secs.reference(id).unwrap()).unwrap();
            assert!(r.qty > 0 && r.qty % 100 == 0 && r.qty <= 10_000, "{r:?}");
            if r.qty <= 1_000 {
                small += 1;
            }
            if r.kind == Some(OrderType::Market) {
                assert_eq!(r.price, 0);
            } else {
                assert_eq!(r.price % rules.tick(r.price), 0, "{r:?}");
                assert!((floor..=ceiling).contains(&r.price), "{r:?}");
            }
        }
        let news = rows.iter().filter(|r| r.action == Action::New).count();
        assert!(small * 100 > news * 90, "mostly 100-1,000 shares");
        assert_eq!(replay_local(rules, &secs, &rows).reject_count(), 0);
    }

    #[test]
    fn limit_prices_sit_near_the_touch() {
        let secs = SecurityTable::synthetic(40).unwrap();
        let rules = MarketRules::hose();
        let rows = generate(&cfg(20_000, 0.0), &secs, &rules);
        let mut ex = Exchange::new(rules, secs.clone());
        let mut brokers = BrokerRegistry::new();
        let mut events = Vec::new();
        let (mut near, mut crossing, mut measured) = (0, 0, 0);
        for r in &rows {
            if r.kind == Some(OrderType::Limit) {
                let (bids, asks) = ex.engine().depth(secs.lookup(&r.security), 1);
                let (own, other) = match r.side {
                    Some(Side::Buy) => (bids.first(), asks.first()),
                    _ => (asks.first(), bids.first()),
                };
                if let (Some(&(own, _)), Some(&(other, _))) = (own, other) {
                    measured += 1;
                    let ticks = (r.price - own).abs() / rules.tick(own);
                    if ticks <= 6 {
                        near += 1;
                    }
                    let crosses = match r.side {
                        Some(Side::Buy) => r.price >= other,
                        _ => r.price <= other,
                    };
                    if crosses {
                        crossing += 1;
                    }
                }
            }
            events.clear();
            ex.process(&to_command(r, &secs, &mut brokers), &mut events);
        }
        assert!(measured > 5_000);
        assert!(near * 100 > measured * 90, "near {near} of {measured}");
        assert!(
            crossing * 100 > measured * 8 && crossing * 100 < measured * 25,
            "crossing {crossing} of {measured}"
        );
    }

    #[test]
    fn rules_none_stream_has_only_applicable_invalid_kinds() {
        let secs = SecurityTable::synthetic(20).unwrap();
        let rules = MarketRules::none();
        let clean = generate(&cfg(10_000, 0.0), &secs, &rules);
        assert_eq!(replay_local(rules, &secs, &clean).reject_count(), 0);
        let all_bad_cfg = GenConfig {
            cancel_pct: 0.0,
            taker_pct: 0.0,
            ..cfg(2_000, 100.0)
        };
        let all_bad = generate(&all_bad_cfg, &secs, &rules);
        let c = replay_local(rules, &secs, &all_bad);
        let csv = c.rejects_csv();
        assert!(c.reject_count() > 1_900, "{} rejects", c.reject_count());
        for line in csv.lines().skip(1) {
            let reason = line.split(',').nth(1).unwrap_or("");
            assert!(
                ["zero_quantity", "unknown_security", "not_owner"].contains(&reason),
                "{line}"
            );
        }
    }

    #[test]
    fn bad_configs_are_refused() {
        let secs = SecurityTable::synthetic(3).unwrap();
        let bad = [
            GenConfig {
                brokers: 0,
                ..GenConfig::default()
            },
            GenConfig {
                invalid_pct: -1.0,
                ..GenConfig::default()
            },
            GenConfig {
                cancel_pct: 60.0,
                taker_pct: 50.0,
                ..GenConfig::default()
            },
        ];
        for c in bad {
            assert!(c.validate(&secs).is_err(), "{c:?}");
            assert!(generate(&c, &secs, &MarketRules::hose()).is_empty());
        }
        assert!(matches!(
            GenConfig::default().validate(&SecurityTable::new()),
            Err(GenError::NoSecurities)
        ));
    }
}
