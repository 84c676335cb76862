//! Order streams built to break things, not to look like a market: every reject reason the
//! gateway and the engine can give, mixed in the same batches; cancels and amends of orders
//! that are live, filled, cancelled, expired, foreign, unknown or in another book; crossing
//! prices and deep sweeps; and, with `day`, the trading day's phases (in and out of order),
//! MTL/ATO/ATC orders and amends that keep or lose priority.
//!
//! Seeded and self-contained (a small xorshift generator), so a failing seed reproduces.

use matching::stream::{Action, OrderRow};
use matching::{OrderType, Phase, Price, SecurityTable, Side};

/// What to put in a stream.
#[derive(Clone, Debug)]
pub struct Nasty {
    pub rows: usize,
    pub seed: u64,
    pub brokers: u32,
    /// Phases, amends, MTL/ATO/ATC.
    pub day: bool,
    /// Every this many rows, one order sweeps everything resting on one side (0: never).
    pub sweep_every: usize,
}

impl Default for Nasty {
    fn default() -> Self {
        Nasty {
            rows: 400,
            seed: 1,
            brokers: 3,
            day: true,
            sweep_every: 0,
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The HOSE tick at `price`.
fn tick(price: Price) -> Price {
    if price < 10_000 {
        10
    } else if price < 50_000 {
        50
    } else {
        100
    }
}

/// Builds the stream over `securities` (HOSE rules assumed for "valid" prices; some are not).
pub fn nasty_stream(cfg: &Nasty, securities: &SecurityTable) -> Vec<OrderRow> {
    let mut rng = Rng(cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let codes: Vec<(String, Price)> = securities
        .iter()
        .map(|(_, c, r)| (c.to_string(), r))
        .collect();
    let broker = |i: u64| format!("B{:02}", i % u64::from(cfg.brokers.max(1)) + 1);
    // (id, broker index, security index): every NEW issued so far.
    let mut issued: Vec<(u64, u64, usize)> = Vec::new();
    let mut next_id = 1u64;
    let mut rows = Vec::with_capacity(cfg.rows);
    let day = [
        Phase::Ato,
        Phase::Continuous,
        Phase::Break,
        Phase::Continuous,
        Phase::Atc,
        Phase::Closed,
    ];
    let mut day_pos = 1usize; // streams start in CONTINUOUS
    while rows.len() < cfg.rows {
        let r = rng.below(100);
        if cfg.day && r < 3 {
            // Mostly the day in order; sometimes a repeat or a jump.
            let phase = match rng.below(10) {
                0 => day[rng.below(6) as usize],
                1 => day[day_pos],
                _ => {
                    day_pos = (day_pos + 1) % 6;
                    day[day_pos]
                }
            };
            rows.push(OrderRow::phase(phase));
            continue;
        }
        let s = rng.below(codes.len() as u64) as usize;
        let (code, reference) = (&codes[s].0, codes[s].1);
        let b = rng.below(u64::from(cfg.brokers.max(1)));
        if cfg.sweep_every > 0 && rows.len() % cfg.sweep_every == cfg.sweep_every - 1 {
            let side = if rng.chance(50) {
                Side::Buy
            } else {
                Side::Sell
            };
            rows.push(new_row(
                next_id,
                broker(b),
                code,
                side,
                OrderType::Market,
                0,
                100_000_000,
            ));
            issued.push((next_id, b, s));
            next_id += 1;
            continue;
        }
        if r < 25 && !issued.is_empty() {
            // CANCEL or AMEND of something: own live or dead order, a foreign one, an unknown
            // id, the wrong security.
            let (id, owner, sec) = issued[rng.below(issued.len() as u64) as usize];
            let who = if rng.chance(15) { owner + 1 } else { owner };
            let id = if rng.chance(5) {
                next_id + 1_000_000
            } else {
                id
            };
            let sec = if rng.chance(5) {
                (sec + 1) % codes.len()
            } else {
                sec
            };
            let (c, refp) = (&codes[sec].0, codes[sec].1);
            if cfg.day && rng.chance(45) {
                let price = near(&mut rng, refp);
                let qty = 100 * (1 + rng.below(10));
                let qty = if rng.chance(5) { qty + 50 } else { qty };
                rows.push(OrderRow {
                    action: Action::Amend,
                    order_id: id,
                    broker: broker(who),
                    security: c.clone(),
                    side: None,
                    kind: None,
                    price,
                    qty,
                    phase: None,
                });
            } else {
                rows.push(OrderRow {
                    action: Action::Cancel,
                    order_id: id,
                    broker: broker(who),
                    security: c.clone(),
                    side: None,
                    kind: None,
                    price: 0,
                    qty: 0,
                    phase: None,
                });
            }
            continue;
        }
        let side = if rng.chance(50) {
            Side::Buy
        } else {
            Side::Sell
        };
        let kind = match rng.below(100) {
            0..=64 => OrderType::Limit,
            65..=70 => OrderType::Market,
            71..=76 => OrderType::Ioc,
            77..=81 => OrderType::Fok,
            82..=87 if cfg.day => OrderType::Mtl,
            88..=93 if cfg.day => OrderType::Ato,
            94..=99 if cfg.day => OrderType::Atc,
            _ => OrderType::Limit,
        };
        let mut price = if kind.is_priceless() {
            0
        } else {
            near(&mut rng, reference)
        };
        let mut qty = 100 * (1 + rng.below(20));
        let mut code = code.clone();
        // Gateway rejects mixed in: every rule, an unknown security, a reused id.
        let mut id = next_id;
        match rng.below(100) {
            0 => qty = 0,
            1 => qty += 30,
            2 => price = if price == 0 { 1_000 } else { price + 1 },
            3 => price = reference * 2,
            4 => code = "ZZZZ".into(),
            5 if !issued.is_empty() => id = issued[rng.below(issued.len() as u64) as usize].0,
            6 if !kind.is_priceless() => price = -price,
            7 => qty = 2_000_000_000,
            _ => {}
        }
        rows.push(new_row(id, broker(b), &code, side, kind, price, qty));
        if id == next_id {
            issued.push((id, b, s));
            next_id += 1;
        }
    }
    rows
}

fn near(rng: &mut Rng, reference: Price) -> Price {
    let t = tick(reference);
    let steps = rng.below(9) as i64 - 4;
    let p = reference + steps * t;
    p - p.rem_euclid(tick(p))
}

fn new_row(
    id: u64,
    broker: String,
    security: &str,
    side: Side,
    kind: OrderType,
    price: Price,
    qty: u64,
) -> OrderRow {
    OrderRow {
        action: Action::New,
        order_id: id,
        broker,
        security: security.to_string(),
        side: Some(side),
        kind: Some(kind),
        price,
        qty,
        phase: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use matching::stream::replay_local;
    use matching::MarketRules;

    #[test]
    fn streams_are_reproducible_and_full_of_rejects_of_both_kinds() {
        let secs = SecurityTable::synthetic(5).unwrap();
        let cfg = Nasty {
            rows: 3000,
            ..Nasty::default()
        };
        let a = nasty_stream(&cfg, &secs);
        assert_eq!(a, nasty_stream(&cfg, &secs));
        let out = replay_local(MarketRules::hose(), &secs, &a);
        let rejects = out.rejects_csv();
        for reason in [
            "zero_quantity",
            "odd_lot",
            "off_tick",
            "outside_band",
            "unknown_security",
            "duplicate_order_id",
            "unknown_order",
            "not_owner",
            "order_not_live",
            "quantity_too_large",
        ] {
            assert!(
                rejects.contains(reason),
                "no {reason} in {} rejects",
                out.reject_count()
            );
        }
        assert!(out.trade_count() > 100);
    }
}
