//! Bars against a naive reference built a different way (chrono calendar arithmetic, sort and
//! fold), on nasty generated tapes; and the trading-day rules spelled out by hand.

mod common;

use chrono::{DateTime, FixedOffset, NaiveTime, TimeZone, Timelike};
use common::{tape, MONDAY_0900_LOCAL, NS};
use dataout::{bars, Bar, BarBuilder, DataError, Interval, TradeRecord, UtcOffset};
use matching::{Aggressor, MAX_ORDER_QTY};
use proptest::prelude::*;

/// Bucket start and local date through chrono's calendar, not through integer division.
fn reference_bucket(t: i64, interval: Interval, offset: UtcOffset) -> (i64, chrono::NaiveDate) {
    let tz = FixedOffset::east_opt(offset.seconds()).unwrap();
    let local = DateTime::from_timestamp_nanos(t).with_timezone(&tz);
    let start_local = match interval {
        Interval::Second => local.with_nanosecond(0).unwrap(),
        Interval::Minute => local.with_nanosecond(0).unwrap().with_second(0).unwrap(),
        Interval::Day => tz
            .from_local_datetime(&local.date_naive().and_time(NaiveTime::MIN))
            .unwrap(),
    };
    (
        start_local.timestamp_nanos_opt().unwrap(),
        start_local.date_naive(),
    )
}

/// Sort by (security, bucket, time, tape position) and fold each group.
fn reference_bars(trades: &[TradeRecord<'_>], interval: Interval, offset: UtcOffset) -> Vec<Bar> {
    let mut keyed: Vec<_> = trades
        .iter()
        .enumerate()
        .map(|(pos, t)| {
            let (start, date) = reference_bucket(t.time, interval, offset);
            ((t.security.to_owned(), start, t.time, pos), date, t)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<Bar> = Vec::new();
    for ((security, start, _, _), date, t) in keyed {
        match out.last_mut() {
            Some(b) if b.security == security && b.start == start => {
                b.high = b.high.max(t.price);
                b.low = b.low.min(t.price);
                b.close = t.price;
                b.volume += t.qty;
                b.value += t.price as i128 * t.qty as i128;
                b.trades += 1;
            }
            _ => out.push(Bar {
                security,
                interval,
                start,
                date,
                open: t.price,
                high: t.price,
                low: t.price,
                close: t.price,
                volume: t.qty,
                value: t.price as i128 * t.qty as i128,
                trades: 1,
            }),
        }
    }
    out
}

#[test]
fn generated_tapes_match_the_reference_at_every_interval() {
    for seed in 0..6 {
        let trades = tape(seed, 4_000, 9);
        for interval in Interval::ALL {
            for offset in [UtcOffset::HOSE, UtcOffset::UTC, "-05:30".parse().unwrap()] {
                let got = bars(interval, offset, &trades).unwrap();
                let want = reference_bars(&trades, interval, offset);
                assert_eq!(got, want, "seed {seed} {interval} {offset}");
                assert_eq!(
                    got.iter().map(|b| b.trades).sum::<u64>(),
                    trades.len() as u64
                );
            }
        }
    }
}

fn trade(
    time: i64,
    price: i64,
    qty: u64,
    security: &'static str,
    aggressor: Aggressor,
) -> TradeRecord<'static> {
    TradeRecord {
        time,
        seq: 0,
        fill: 0,
        security,
        price,
        qty,
        buy_order_id: 1,
        sell_order_id: 2,
        aggressor,
    }
}

#[test]
fn auctions_open_and_close_the_hose_day_and_the_day_is_local() {
    let local = |h: i64, m: i64| MONDAY_0900_LOCAL + ((h - 9) * 3600 + m * 60) * NS;
    let trades = [
        // Before the open on the same local day (08:00 local = 01:00Z).
        trade(local(8, 0), 10_500, 100, "VNM", Aggressor::Buy),
        trade(local(9, 15), 10_000, 300, "VNM", Aggressor::Auction),
        trade(local(9, 15), 10_050, 200, "VNM", Aggressor::Auction),
        trade(local(10, 0), 11_000, 100, "VNM", Aggressor::Buy),
        trade(local(13, 30), 9_500, 100, "VNM", Aggressor::Sell),
        trade(local(14, 45), 10_200, 400, "VNM", Aggressor::Auction),
        // 23:59 local is still Monday; 00:00 local (17:00Z) is Tuesday.
        trade(local(23, 59), 10_300, 100, "VNM", Aggressor::Buy),
        trade(local(24, 0), 10_400, 100, "VNM", Aggressor::Buy),
    ];
    // The first trade sits at 08:00, so build the day from the auction on separately too.
    let day = bars(Interval::Day, UtcOffset::HOSE, &trades[1..6]).unwrap();
    assert_eq!(day.len(), 1);
    let b = &day[0];
    assert_eq!(
        (b.open, b.high, b.low, b.close),
        (10_000, 11_000, 9_500, 10_200)
    );
    assert_eq!(b.volume, 1_100);
    assert_eq!(b.trades, 5);
    assert_eq!(
        b.value,
        10_000 * 300 + 10_050 * 200 + 11_000 * 100 + 9_500 * 100 + 10_200 * 400
    );
    assert_eq!(b.date.to_string(), "2025-06-02");
    assert_eq!(b.start, MONDAY_0900_LOCAL - 9 * 3600 * NS);
    assert_eq!(b.vwap(), b.value as f64 / 1_100.0);

    let all = bars(Interval::Day, UtcOffset::HOSE, &trades).unwrap();
    let summary: Vec<_> = all
        .iter()
        .map(|b| (b.date.to_string(), b.open, b.close, b.trades))
        .collect();
    assert_eq!(
        summary,
        [
            ("2025-06-02".to_string(), 10_500, 10_300, 7),
            ("2025-06-03".to_string(), 10_400, 10_400, 1)
        ]
    );
    // In UTC the 08:00-local trade (01:00Z) and 00:00-local (17:00Z) trades are all on 06-02.
    let utc = bars(Interval::Day, UtcOffset::UTC, &trades).unwrap();
    assert_eq!(utc.len(), 1);
    assert_eq!(utc[0].trades, 8);
}

#[test]
fn minute_bars_are_sparse_and_sorted_by_security_then_time() {
    let t0 = MONDAY_0900_LOCAL;
    let trades = [
        trade(t0 + 61 * NS, 200, 100, "BBB", Aggressor::Buy),
        trade(t0, 100, 100, "AAA", Aggressor::Buy),
        trade(t0 + 3600 * NS, 100, 100, "BBB", Aggressor::Sell),
        trade(t0 + 59 * NS + NS - 1, 300, 100, "AAA", Aggressor::Sell),
        trade(t0 + 60 * NS, 400, 100, "AAA", Aggressor::Buy),
    ];
    let got = bars(Interval::Minute, UtcOffset::HOSE, &trades).unwrap();
    let keys: Vec<_> = got
        .iter()
        .map(|b| (b.security.as_str(), (b.start - t0) / NS, b.trades))
        .collect();
    assert_eq!(
        keys,
        [
            ("AAA", 0, 2),
            ("AAA", 60, 1),
            ("BBB", 60, 1),
            ("BBB", 3600, 1)
        ]
    );
    assert_eq!((got[0].open, got[0].close), (100, 300));
}

#[test]
fn out_of_order_times_open_at_the_earliest_and_ties_keep_tape_order() {
    let t0 = MONDAY_0900_LOCAL;
    let trades = [
        trade(t0 + 5 * NS, 500, 100, "S", Aggressor::Buy),
        trade(t0 + NS, 100, 100, "S", Aggressor::Buy),
        trade(t0 + NS, 150, 100, "S", Aggressor::Buy),
        trade(t0 + 9 * NS, 900, 100, "S", Aggressor::Buy),
        trade(t0 + 9 * NS, 950, 100, "S", Aggressor::Buy),
        trade(t0 + 2 * NS, 200, 100, "S", Aggressor::Buy),
    ];
    let b = &bars(Interval::Minute, UtcOffset::HOSE, &trades).unwrap()[0];
    assert_eq!((b.open, b.close, b.high, b.low), (100, 950, 950, 100));
}

#[test]
fn value_is_exact_beyond_i64_and_vwap_keeps_its_precision() {
    let big = i64::MAX / 2;
    let trades: Vec<_> = (0..5)
        .map(|i| {
            trade(
                MONDAY_0900_LOCAL + i,
                big,
                MAX_ORDER_QTY,
                "S",
                Aggressor::Buy,
            )
        })
        .collect();
    let b = &bars(Interval::Second, UtcOffset::HOSE, &trades).unwrap()[0];
    assert_eq!(b.value, 5 * big as i128 * MAX_ORDER_QTY as i128);
    assert!(b.value > i64::MAX as i128);
    assert_eq!(b.volume, 5 * MAX_ORDER_QTY);
    assert_eq!(b.vwap(), big as f64);
}

#[test]
fn invalid_trades_are_refused_and_change_nothing() {
    let good = trade(MONDAY_0900_LOCAL, 1_000, 100, "S", Aggressor::Buy);
    let mut builder = BarBuilder::new(Interval::Minute, UtcOffset::HOSE);
    builder.push(&good).unwrap();
    for bad in [
        TradeRecord { price: 0, ..good },
        TradeRecord { price: -5, ..good },
        TradeRecord { qty: 0, ..good },
        TradeRecord {
            qty: MAX_ORDER_QTY + 1,
            ..good
        },
        TradeRecord {
            security: "",
            ..good
        },
        TradeRecord {
            time: i64::MIN,
            ..good
        },
    ] {
        let err = builder.push(&bad).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::InvalidTrade { .. } | DataError::TimeOutOfRange(_)
            ),
            "{err}"
        );
    }
    let got = builder.finish();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].trades, got[0].volume), (1, 100));
}

#[test]
fn a_hand_made_bar_beyond_decimal_38_or_without_volume_is_refused() {
    // Sums that large need about 10^10 maximal trades, so the builder's overflow checks are
    // defensive; bars made by hand are checked before they are written.
    let t = trade(
        MONDAY_0900_LOCAL,
        i64::MAX,
        MAX_ORDER_QTY,
        "S",
        Aggressor::Buy,
    );
    let good = bars(Interval::Day, UtcOffset::HOSE, &[t])
        .unwrap()
        .remove(0);
    good.validate().unwrap();
    for (bad, why) in [
        (
            Bar {
                value: dataout::bars::MAX_VALUE + 1,
                ..good.clone()
            },
            "10^38",
        ),
        (
            Bar {
                value: -1,
                ..good.clone()
            },
            "10^38",
        ),
        (
            Bar {
                volume: 0,
                ..good.clone()
            },
            "at least one trade",
        ),
        (
            Bar {
                trades: 0,
                ..good.clone()
            },
            "at least one trade",
        ),
        (
            Bar {
                open: i64::MAX,
                high: 5,
                ..good.clone()
            },
            "low <= open",
        ),
        (
            Bar {
                low: 0,
                open: 0,
                ..good.clone()
            },
            "low <= open",
        ),
        (
            Bar {
                security: String::new(),
                ..good.clone()
            },
            "empty",
        ),
    ] {
        let err = bad.validate().unwrap_err();
        assert!(err.to_string().contains(why), "{err}");
    }
    assert!(Bar { volume: 0, ..good }.vwap().is_nan());
}

#[test]
fn empty_tape_has_no_bars_and_intervals_parse() {
    assert!(bars(Interval::Day, UtcOffset::HOSE, &[])
        .unwrap()
        .is_empty());
    for i in Interval::ALL {
        assert_eq!(i.as_str().parse::<Interval>().unwrap(), i);
    }
    for bad in ["", "1h", "1M", "60s", "1 m"] {
        assert!(matches!(
            bad.parse::<Interval>(),
            Err(DataError::UnknownInterval(_))
        ));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Random tapes near bucket edges, with repeated instants, any offset: same bars as the
    /// reference, and every trade lands in exactly one bar.
    #[test]
    fn random_tapes_match_the_reference(
        rows in prop::collection::vec(
            (0i64..4, -3i64..3, 0usize..3, 1i64..1_000_000, 1u64..=MAX_ORDER_QTY),
            0..200,
        ),
        offset_min in -(23 * 60)..(23 * 60 + 59),
        base in -(1i64 << 62)..(1i64 << 62),
        interval in prop::sample::select(Interval::ALL.to_vec()),
    ) {
        let offset = UtcOffset::from_seconds(offset_min * 60).unwrap();
        let unit = interval.seconds() * NS;
        // Near a bucket edge: k whole buckets after an edge, plus -3..3 ns.
        let edge = base - base.rem_euclid(unit);
        let trades: Vec<_> = rows
            .iter()
            .map(|&(k, ns, s, price, qty)| {
                trade(edge + k * unit + ns - offset.seconds() as i64 * NS, price, qty, ["A", "B", "C"][s], Aggressor::Sell)
            })
            .collect();
        let got = bars(interval, offset, &trades).unwrap();
        prop_assert_eq!(&got, &reference_bars(&trades, interval, offset));
        prop_assert_eq!(got.iter().map(|b| b.trades).sum::<u64>(), trades.len() as u64);
        for b in &got {
            prop_assert!(b.low <= b.open.min(b.close) && b.high >= b.open.max(b.close));
            prop_assert!(b.vwap() >= b.low as f64 && b.vwap() <= b.high as f64);
            b.validate().unwrap();
        }
    }
}

#[test]
fn chrono_reference_agrees_on_a_known_instant() {
    // Guard the reference itself: 2025-06-02T02:15:30.5Z in UTC+7 is 09:15:30.5 local.
    let t = MONDAY_0900_LOCAL + 15 * 60 * NS + 30 * NS + NS / 2;
    let (s, d) = reference_bucket(t, Interval::Day, UtcOffset::HOSE);
    assert_eq!(s, MONDAY_0900_LOCAL - 9 * 3600 * NS);
    assert_eq!(d.to_string(), "2025-06-02");
    let (s, _) = reference_bucket(t, Interval::Minute, UtcOffset::HOSE);
    assert_eq!(s, MONDAY_0900_LOCAL + 15 * 60 * NS);
}
