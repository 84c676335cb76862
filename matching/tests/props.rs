//! Property tests: random streams through the fast `Exchange` and the naive reference must give
//! identical events and identical output files; replay is deterministic; the collector is
//! order-independent.

mod common;

use common::naive::NaiveExchange;
use matching::stream::{
    parse_orders, replay_local, to_command, write_orders, Action, BrokerRegistry, OrderRow,
    ReplayCollector,
};
use matching::{Event, Exchange, MarketRules, OrderType, SecurityTable, Side};
use proptest::prelude::*;

fn table() -> SecurityTable {
    // References straddling the HOSE tick boundaries.
    SecurityTable::parse_csv("security,reference_price\nAAA,10000\nBBB,50000\nCCC,9990\n").unwrap()
}

type RawOp = (u8, u16, u16, u16, u8);

/// Turns raw random numbers into a realistic-but-nasty order stream: crossing prices around
/// the reference, all order types, cancels of live, dead, foreign and unknown ids, duplicate
/// ids, invalid prices and quantities, an unlisted security.
/// `scale` (odd) maps ids bijectively: 1 keeps them small and increasing, a large constant
/// scatters them over u64 (the id tables' sparse path).
fn build(rules: &MarketRules, ops: &[RawOp], scale: u64) -> Vec<OrderRow> {
    let sec = table();
    let codes = ["AAA", "BBB", "CCC"];
    let mut issued: Vec<(u64, u16, usize)> = Vec::new();
    let mut next_id = 1u64;
    let mut rows = Vec::new();
    for &(r, a, b, c, d) in ops {
        if r < 20 && !issued.is_empty() {
            let (id, owner, s) = issued[a as usize % issued.len()];
            let broker = if c % 5 == 0 { (owner + 1) % 4 } else { owner };
            let security = if b % 11 == 0 {
                codes[(s + 1) % 3]
            } else {
                codes[s]
            };
            let id = if b % 17 == 0 { 999_999 } else { id };
            rows.push(OrderRow {
                action: Action::Cancel,
                order_id: id.wrapping_mul(scale),
                broker: format!("B{broker}"),
                security: security.to_string(),
                side: None,
                kind: None,
                price: 0,
                qty: 0,
            });
            continue;
        }
        let kind = match r {
            0..=75 => OrderType::Limit,
            76..=83 => OrderType::Market,
            84..=91 => OrderType::Ioc,
            _ => OrderType::Fok,
        };
        let s = (c % 3) as usize;
        let code = if c % 31 == 0 { "ZZZ" } else { codes[s] };
        let reference = sec.reference(matching::SecurityId(s as u32)).unwrap();
        let side = if b % 2 == 0 { Side::Buy } else { Side::Sell };
        let mut price = {
            // Within +/-3 ticks of the reference, biased so buys and sells overlap.
            let steps = (a % 7) as i64 - 3;
            let base = rules.round_to_tick(reference, true);
            let mut p = base;
            for _ in 0..steps.abs() {
                p = if steps > 0 {
                    p + rules.tick(p)
                } else {
                    rules.round_to_tick(p - 1, false)
                };
            }
            p
        };
        match (a / 7) % 40 {
            0 => price += 1,                                                  // off tick
            1 => price = rules.band(reference).map_or(0, |(_, hi)| hi + 100), // outside band
            2 => price = 0,
            _ => {}
        }
        if kind == OrderType::Market {
            price = if b % 23 == 0 { 100 } else { 0 };
        }
        let lot = rules.lot();
        let mut qty = lot * (1 + (d % 5) as u64);
        match b % 29 {
            0 => qty = 0,
            1 if lot > 1 => qty = lot / 2,
            _ => {}
        }
        let broker = (d as u16 / 5) % 4;
        let id = if a % 19 == 0 && !issued.is_empty() {
            issued[b as usize % issued.len()].0
        } else {
            next_id += 1;
            next_id
        };
        issued.push((id, broker, s));
        rows.push(OrderRow {
            action: Action::New,
            order_id: id.wrapping_mul(scale),
            broker: format!("B{broker}"),
            security: code.to_string(),
            side: Some(side),
            kind: Some(kind),
            price,
            qty,
        });
    }
    rows
}

struct Run {
    events: Vec<Vec<Event>>,
    files: [String; 3],
}

fn files(c: &ReplayCollector) -> [String; 3] {
    [c.trades_csv(), c.totals_csv(), c.rejects_csv()]
}

fn run_fast(rules: MarketRules, rows: &[OrderRow]) -> Run {
    let sec = table();
    let mut ex = Exchange::new(rules, sec.clone());
    let mut brokers = BrokerRegistry::new();
    let mut col = ReplayCollector::new(&sec);
    let mut events = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let mut out = Vec::new();
        ex.process(&to_command(row, &sec, &mut brokers), &mut out);
        col.record(i as u64, &out);
        events.push(out);
    }
    // Cross-check the engine's bookkeeping against its own totals.
    for (id, _, _) in sec.iter() {
        let (b, a) = ex.engine().totals(id);
        let (bids, asks) = ex.engine().depth(id, usize::MAX);
        assert_eq!(b, bids.iter().map(|l| l.1).sum::<u64>());
        assert_eq!(a, asks.iter().map(|l| l.1).sum::<u64>());
        assert!(bids.windows(2).all(|w| w[0].0 > w[1].0));
        assert!(asks.windows(2).all(|w| w[0].0 < w[1].0));
        if let (Some(bb), Some(ba)) = (bids.first(), asks.first()) {
            assert!(bb.0 < ba.0, "book crossed after the stream");
        }
    }
    Run {
        events,
        files: files(&col),
    }
}

fn run_naive(rules: MarketRules, rows: &[OrderRow]) -> Run {
    let sec = table();
    let mut ex = NaiveExchange::new(&rules, &sec);
    let mut brokers = BrokerRegistry::new();
    let mut col = ReplayCollector::new(&sec);
    let mut events = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let mut out = Vec::new();
        ex.process(&to_command(row, &sec, &mut brokers), &mut out);
        col.record(i as u64, &out);
        events.push(out);
    }
    Run {
        events,
        files: files(&col),
    }
}

fn ops() -> impl Strategy<Value = Vec<RawOp>> {
    prop::collection::vec(
        (
            0u8..100,
            any::<u16>(),
            any::<u16>(),
            any::<u16>(),
            any::<u8>(),
        ),
        1..300,
    )
}

fn scale() -> impl Strategy<Value = u64> {
    prop_oneof![3 => Just(1u64), 1 => Just(0x9e37_79b9_7f4a_7c15u64)]
}

fn rules_strategy() -> impl Strategy<Value = MarketRules> {
    prop_oneof![
        Just(MarketRules::hose()),
        Just(MarketRules::none()),
        Just(MarketRules::hnx()),
        Just(MarketRules::upcom())
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn fast_matches_naive(rules in rules_strategy(), ops in ops(), scale in scale()) {
        let rows = build(&rules, &ops, scale);
        let fast = run_fast(rules, &rows);
        let naive = run_naive(rules, &rows);
        for (i, (f, n)) in fast.events.iter().zip(&naive.events).enumerate() {
            prop_assert_eq!(f, n, "command {} ({:?})", i, rows[i]);
        }
        prop_assert_eq!(&fast.files, &naive.files);
    }

    #[test]
    fn replay_is_deterministic_and_roundtrips(rules in rules_strategy(), ops in ops(), scale in scale()) {
        let rows = build(&rules, &ops, scale);
        // Writing and re-parsing the stream gives the same rows.
        let text = write_orders(&rows);
        let parsed = parse_orders(&text).unwrap();
        prop_assert_eq!(&parsed, &rows);
        let a = files(&replay_local(rules, &table(), &rows));
        let b = files(&replay_local(rules, &table(), &parsed));
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(&a, &run_fast(rules, &rows).files);
    }

    #[test]
    fn collector_is_order_independent(ops in ops(), seed in any::<u64>()) {
        let rules = MarketRules::hose();
        let rows = build(&rules, &ops, 1);
        let fast = run_fast(rules, &rows);
        let mut order: Vec<usize> = (0..rows.len()).collect();
        // Deterministic Fisher-Yates from the seed (xorshift).
        let mut x = seed | 1;
        for i in (1..order.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut col = ReplayCollector::new(&table());
        for &i in &order {
            col.record(i as u64, &fast.events[i]);
        }
        prop_assert_eq!(files(&col), fast.files);
    }
}

#[test]
fn streams_actually_trade_and_reject() {
    // Guard against a generator that never exercises the interesting paths.
    let ops: Vec<RawOp> = (0..2000u32)
        .map(|i| {
            let h = i.wrapping_mul(2_654_435_761);
            (
                (h % 100) as u8,
                (h >> 7) as u16,
                (h >> 13) as u16,
                (h >> 3) as u16,
                (h >> 21) as u8,
            )
        })
        .collect();
    let rows = build(&MarketRules::hose(), &ops, 1);
    let run = run_fast(MarketRules::hose(), &rows);
    let trades = run.files[0].lines().count() - 1;
    let rejects = run.files[2].lines().count() - 1;
    assert!(trades > 100, "only {trades} trades");
    assert!(rejects > 50 && rejects < 1000, "{rejects} rejects");
    for code in [
        "not_owner",
        "order_not_live",
        "unknown_order",
        "duplicate_order_id",
        "off_tick",
        "outside_band",
        "unknown_security",
        "zero_quantity",
        "odd_lot",
    ] {
        assert!(run.files[2].contains(code), "no {code} reject");
    }
    let naive = run_naive(MarketRules::hose(), &rows);
    assert_eq!(run.files, naive.files);
}

#[test]
fn long_streams_match_naive() {
    // Long enough to span many id-table pages (recycling them) and deep books.
    for (seed, scale) in [(1u32, 1u64), (2, 0x9e37_79b9_7f4a_7c15)] {
        let ops: Vec<RawOp> = (0..30_000u32)
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
            .collect();
        for rules in [MarketRules::hose(), MarketRules::none()] {
            let rows = build(&rules, &ops, scale);
            let fast = run_fast(rules, &rows);
            let naive = run_naive(rules, &rows);
            assert!(
                fast.events == naive.events,
                "events differ (seed {seed}, {})",
                rules.name()
            );
            assert_eq!(fast.files, naive.files);
        }
    }
}
