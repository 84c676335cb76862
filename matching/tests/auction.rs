//! `auction::clearing_price` (the pure price rule the engine and outside users share) against
//! a brute force written from DESIGN.md: every candidate price, D, S, V, the tie-breaks.

use matching::auction::clearing_price;
use matching::{Price, Qty};
use proptest::prelude::*;

fn brute(
    bids: &[(Price, Qty)],
    asks: &[(Price, Qty)],
    mb: Qty,
    ms: Qty,
    anchor: Price,
) -> Option<(Price, Qty)> {
    let mut candidates: Vec<Price> = bids.iter().chain(asks).map(|l| l.0).collect();
    if candidates.is_empty() {
        candidates.push(anchor);
    }
    let mut best: Option<(Price, u128)> = None;
    for p in candidates {
        let d = mb as u128
            + bids
                .iter()
                .filter(|l| l.0 >= p)
                .map(|l| l.1 as u128)
                .sum::<u128>();
        let s = ms as u128
            + asks
                .iter()
                .filter(|l| l.0 <= p)
                .map(|l| l.1 as u128)
                .sum::<u128>();
        let v = d.min(s);
        let dist = |x: Price| (x as i128 - anchor as i128).abs();
        let better = best.is_none_or(|(bp, bv)| {
            v > bv || (v == bv && (dist(p) < dist(bp) || (dist(p) == dist(bp) && p > bp)))
        });
        if better {
            best = Some((p, v));
        }
    }
    best.filter(|b| b.1 > 0)
        .map(|(p, v)| (p, Qty::try_from(v).unwrap_or(Qty::MAX)))
}

fn levels(descending: bool) -> impl Strategy<Value = Vec<(Price, Qty)>> {
    // Small price range (many ties and shared prices), quantities including 0 and huge.
    let qty = prop_oneof![4 => 0u64..50, 1 => Just(u64::MAX / 3), 1 => Just(0)];
    prop::collection::vec((-20i64..20, qty), 0..12).prop_map(move |mut v| {
        // Best first, one entry per price, as a depth view gives them.
        v.sort_by_key(|l| l.0);
        v.dedup_by_key(|l| l.0);
        if descending {
            v.reverse();
        }
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    #[test]
    fn clearing_price_matches_brute_force(
        bids in levels(true),
        asks in levels(false),
        mb in prop_oneof![3 => Just(0u64), 2 => 0u64..100, 1 => Just(u64::MAX)],
        ms in prop_oneof![3 => Just(0u64), 2 => 0u64..100, 1 => Just(u64::MAX)],
        anchor in prop_oneof![-25i64..25, Just(i64::MIN), Just(i64::MAX)],
    ) {
        prop_assert_eq!(
            clearing_price(&bids, &asks, mb, ms, anchor),
            brute(&bids, &asks, mb, ms, anchor)
        );
    }
}

#[test]
fn extreme_prices_and_anchors_do_not_overflow_the_distance() {
    let bids = [(i64::MAX, 5)];
    let asks = [(i64::MIN, 5)];
    // Both candidates trade 5; the anchor i64::MIN is nearer i64::MIN.
    assert_eq!(
        clearing_price(&bids, &asks, 0, 0, i64::MIN),
        Some((i64::MIN, 5))
    );
    assert_eq!(
        clearing_price(&bids, &asks, 0, 0, i64::MAX),
        Some((i64::MAX, 5))
    );
    // i64::MAX and -i64::MAX are equally far from the anchor 0: the higher wins.
    let bids = [(i64::MAX, 5)];
    let asks = [(-i64::MAX, 5)];
    assert_eq!(clearing_price(&bids, &asks, 0, 0, 0), Some((i64::MAX, 5)));
}
