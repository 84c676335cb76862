//! Random order streams for the property tests: realistic enough to trade and to run whole
//! trading days, nasty enough to hit every reject and edge: every order type in every phase,
//! phase changes on the HOSE schedule and at random (including repeats of the current phase),
//! amends that keep or lose priority, cross, or break a rule, cancels of live, filled,
//! cancelled, expired, foreign, other-security and unknown orders, duplicate ids, invalid
//! prices and quantities, an unlisted security.

use matching::stream::{Action, OrderRow};
use matching::{MarketRules, OrderType, Phase, Price, Qty, SecurityTable, Side, MAX_ORDER_QTY};

/// Raw random numbers for one row.
pub type RawOp = (u8, u16, u16, u16, u8);

/// Listed in an order that is NOT code byte order (a PHASE visits ACB, FPT, VNM), with
/// references straddling the HOSE tick boundaries.
pub fn table() -> SecurityTable {
    SecurityTable::parse_csv("security,reference_price\nVNM,10000\nFPT,50000\nACB,9990\n").unwrap()
}

const CODES: [&str; 3] = ["VNM", "FPT", "ACB"];

/// The HOSE day, as the manager's schedule issues it.
const SCHEDULE: [Phase; 6] = [
    Phase::Ato,
    Phase::Continuous,
    Phase::Break,
    Phase::Continuous,
    Phase::Atc,
    Phase::Closed,
];

/// A price `steps` ticks away from `reference` on `rules`' grid.
fn price_near(rules: &MarketRules, reference: Price, steps: i64) -> Price {
    let mut p = rules.round_to_tick(reference, true);
    for _ in 0..steps.abs() {
        p = if steps > 0 {
            p + rules.tick(p)
        } else {
            rules.round_to_tick(p - 1, false)
        };
    }
    p
}

/// A price within a tick of an edge of the first day's band (floor or ceiling by `pick`): as
/// the reference moves from day to day, such prices fall in or out of the current band.
fn edge_price(rules: &MarketRules, reference: Price, pick: u16) -> Price {
    let (lo, hi) = rules
        .band(reference)
        .unwrap_or((reference - reference / 14, reference + reference / 14));
    let edge = if pick.is_multiple_of(2) { lo } else { hi };
    price_near(rules, edge, (pick / 2 % 3) as i64 - 1)
}

/// Turns raw random numbers into an orders stream. `scale` (odd) maps ids bijectively: 1 keeps
/// them small and increasing, a large constant scatters them over u64 (the id tables' sparse
/// path).
pub fn build(rules: &MarketRules, ops: &[RawOp], scale: u64) -> Vec<OrderRow> {
    let sec = table();
    let reference = |s: usize| sec.reference(matching::SecurityId(s as u32)).unwrap();
    // (id, owner, security index, last requested price)
    let mut issued: Vec<(u64, u16, usize, Price)> = Vec::new();
    // Positions in `issued` of the NEWs the generator expects to be accepted.
    let mut good: Vec<usize> = Vec::new();
    let mut next_id = 1u64;
    let mut step = 1; // a stream starts in CONTINUOUS (the morning session)
    let mut phase = Phase::Continuous;
    let mut rows = Vec::new();
    let lot = rules.lot();
    for &(r, a, b, c, d) in ops {
        // Mostly a recent accepted order (likely live), sometimes any order ever issued.
        let target = |n: u16| {
            if n.is_multiple_of(4) || good.is_empty() {
                n as usize % issued.len()
            } else {
                good[good.len() - 1 - (n as usize / 4) % good.len().min(24)]
            }
        };
        let pick = |n: u16| issued[target(n)];
        if r < 2 {
            if a % 6 == 0 {
                // Anywhere, the current phase included (a no-op).
                phase = Phase::ALL[b as usize % 5];
                step = SCHEDULE.iter().position(|&p| p == phase).unwrap();
            } else {
                step = (step + 1) % SCHEDULE.len();
                phase = SCHEDULE[step];
            }
            rows.push(OrderRow::phase(phase));
            continue;
        }
        if (2..12).contains(&r) && !issued.is_empty() {
            // Cancels aim at older orders more often than amends do, so they do not kill
            // every amend target first.
            let (id, owner, s, _) = if a % 3 == 0 {
                pick(a)
            } else {
                issued[a as usize % issued.len()]
            };
            let broker = if c % 5 == 0 { (owner + 1) % 4 } else { owner };
            let security = if b % 11 == 0 { (s + 1) % 3 } else { s };
            let id = if b % 17 == 0 { 999_999 } else { id };
            rows.push(OrderRow {
                action: Action::Cancel,
                order_id: id.wrapping_mul(scale),
                broker: format!("B{broker}"),
                security: CODES[security].to_string(),
                side: None,
                kind: None,
                price: 0,
                qty: 0,
                phase: None,
            });
            continue;
        }
        if (12..28).contains(&r) && !issued.is_empty() {
            let i = target(a);
            let (id, owner, s, old_price) = issued[i];
            let broker = if c % 7 == 0 { (owner + 1) % 4 } else { owner };
            let security = if b % 13 == 0 { (s + 1) % 3 } else { s };
            let id = if b % 19 == 0 { 999_998 } else { id };
            let same_price = c % 5 < 3;
            let mut price = if same_price {
                old_price
            } else {
                price_near(rules, reference(s), (b % 9) as i64 - 4)
            };
            match d % 23 {
                0 => price += 1, // off tick (or fine with tick 1)
                1 => price = rules.band(reference(s)).map_or(-5, |(_, hi)| hi + 1_000),
                2 => price = 0,
                3 => price = -100,
                4 | 5 => price = edge_price(rules, reference(s), b),
                _ => {}
            }
            let qty = match d % 11 {
                0 => 0,
                1 if lot > 1 => lot / 2,
                2 => MAX_ORDER_QTY + lot,
                // The same price with less (or equal) quantity keeps priority.
                _ if same_price => lot * (1 + (d / 11) as Qty % 3),
                _ => lot * (1 + (d / 11) as Qty % 6),
            };
            issued[i].3 = price;
            rows.push(OrderRow {
                action: Action::Amend,
                order_id: id.wrapping_mul(scale),
                broker: format!("B{broker}"),
                security: CODES[security].to_string(),
                side: None,
                kind: None,
                price,
                qty,
                phase: None,
            });
            continue;
        }
        let kind = if phase.is_call() {
            let own = if phase == Phase::Ato {
                OrderType::Ato
            } else {
                OrderType::Atc
            };
            match r {
                0..=69 => OrderType::Limit,
                70..=86 => own,
                87..=90 => {
                    if own == OrderType::Ato {
                        OrderType::Atc
                    } else {
                        OrderType::Ato
                    }
                }
                91..=93 => OrderType::Market,
                94..=95 => OrderType::Mtl,
                96..=97 => OrderType::Ioc,
                _ => OrderType::Fok,
            }
        } else {
            match r {
                0..=69 => OrderType::Limit,
                70..=76 => OrderType::Market,
                77..=83 => OrderType::Mtl,
                84..=89 => OrderType::Ioc,
                90..=96 => OrderType::Fok,
                97..=98 => OrderType::Ato,
                _ => OrderType::Atc,
            }
        };
        let s = (c % 3) as usize;
        let code = if c % 31 == 0 { "ZZZ" } else { CODES[s] };
        let side = if b % 2 == 0 { Side::Buy } else { Side::Sell };
        // Buys from 5 ticks below the reference to 1 above, sells from 1 below to 5 above:
        // books build up and still cross often.
        let skew = if side == Side::Buy { -2 } else { 2 };
        let mut price = price_near(rules, reference(s), (a % 7) as i64 - 3 + skew);
        let mut valid = c % 31 != 0;
        match (a / 7) % 40 {
            0 => price += 1,                                                     // off tick
            1 => price = rules.band(reference(s)).map_or(0, |(_, hi)| hi + 100), // outside band
            2 => price = 0,
            3 | 4 => price = edge_price(rules, reference(s), d as u16),
            _ => {}
        }
        valid &= (a / 7) % 40 > 2;
        if kind.is_priceless() {
            price = if b % 23 == 0 { 100 } else { 0 };
            valid &= b % 23 != 0;
        }
        let mut qty = lot * (1 + (d % 5) as Qty);
        match b % 29 {
            0 => qty = 0,
            1 if lot > 1 => qty = lot / 2,
            2 => qty = MAX_ORDER_QTY + lot,
            _ => {}
        }
        valid &= b % 29 > 2;
        // The phase table, as the generator understands DESIGN.md.
        valid &= match phase {
            Phase::Break | Phase::Closed => false,
            Phase::Ato => matches!(kind, OrderType::Limit | OrderType::Ato),
            Phase::Atc => matches!(kind, OrderType::Limit | OrderType::Atc),
            Phase::Continuous => !matches!(kind, OrderType::Ato | OrderType::Atc),
        };
        let broker = (d as u16 / 5) % 4;
        let id = if a % 19 == 0 && !issued.is_empty() {
            valid = false;
            pick(b).0 // a duplicate id
        } else {
            next_id += 1;
            next_id
        };
        // Amends and cancels aim mostly at limit orders: the others rarely rest.
        if valid && kind == OrderType::Limit {
            good.push(issued.len());
        }
        issued.push((id, broker, s, price));
        rows.push(OrderRow {
            action: Action::New,
            order_id: id.wrapping_mul(scale),
            broker: format!("B{broker}"),
            security: code.to_string(),
            side: Some(side),
            kind: Some(kind),
            price,
            qty,
            phase: None,
        });
    }
    rows
}

/// Deterministic raw ops from a seed (for long, non-proptest streams).
pub fn seeded_ops(seed: u32, n: u32) -> Vec<RawOp> {
    (0..n)
        .map(|i| {
            let h = (i ^ seed.wrapping_mul(0x85eb_ca6b)).wrapping_mul(2_654_435_761);
            let h2 = h.rotate_left(11).wrapping_mul(0xc2b2_ae35);
            (
                (h % 100) as u8,
                (h2 >> 5) as u16,
                (h >> 13) as u16,
                (h2 >> 17) as u16,
                (h >> 21) as u8,
            )
        })
        .collect()
}
