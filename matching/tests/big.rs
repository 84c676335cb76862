//! Nasty large cases, fast engine against the naive reference: one order sweeping 100k resting
//! orders (market, MTL and a crossing amend), call auctions over 100k orders and thousands of
//! price levels, long plateaus of tied auction volumes.

mod common;

use common::naive::NaiveExchange;
use common::{amend, new, phase};
use matching::{
    Command, Event, Exchange, MarketRules, OrderType, Phase, Price, Qty, SecurityId, SecurityTable,
    Side,
};

const S: u32 = 0;

fn listing(reference: Price) -> SecurityTable {
    let mut t = SecurityTable::new();
    t.add("BIG", reference).unwrap();
    t
}

/// Runs `cmds` through both exchanges; panics at the first command whose events differ
/// (printing only that command's events). Returns the fast exchange and all its events.
fn both(reference: Price, cmds: &[Command]) -> (Exchange, Vec<Vec<Event>>) {
    let t = listing(reference);
    let mut fast = Exchange::new(MarketRules::none(), t.clone());
    let mut naive = NaiveExchange::new(&MarketRules::none(), &t);
    let mut all = Vec::with_capacity(cmds.len());
    for (i, cmd) in cmds.iter().enumerate() {
        let (mut f, mut n) = (Vec::new(), Vec::new());
        fast.process(cmd, &mut f);
        naive.process(cmd, &mut n);
        if f != n {
            let at = f
                .iter()
                .zip(&n)
                .position(|(a, b)| a != b)
                .unwrap_or(f.len().min(n.len()));
            panic!(
                "command {i} ({cmd:?}): {} vs {} events, first difference at {at}: {:?} vs {:?}",
                f.len(),
                n.len(),
                f.get(at),
                n.get(at)
            );
        }
        all.push(f);
    }
    naive.audit();
    assert_eq!(
        fast.engine().export_book(SecurityId(S)).unwrap(),
        naive.image(SecurityId(S))
    );
    (fast, all)
}

fn count_fills(events: &[Event]) -> (usize, Qty) {
    events.iter().fold((0, 0), |(n, q), e| match e {
        Event::Fill(f) => (n + 1, q + f.qty),
        _ => (n, q),
    })
}

/// 100k sells over 500 levels (1,000..1,499), quantities 1..=3, brokers cycling.
fn deep_asks(first_id: u64) -> (Vec<Command>, Qty) {
    let mut total = 0;
    let cmds = (0..100_000u64)
        .map(|i| {
            let qty = 1 + i % 3;
            total += qty;
            let price = 1_000 + ((i * 7_919) % 500) as Price;
            new(
                first_id + i,
                (i % 13) as u32,
                S,
                Side::Sell,
                OrderType::Limit,
                price,
                qty,
            )
        })
        .collect();
    (cmds, total)
}

#[test]
fn one_market_order_sweeps_100k_resting_orders() {
    let (mut cmds, total) = deep_asks(1);
    cmds.push(new(
        500_000,
        99,
        S,
        Side::Buy,
        OrderType::Market,
        0,
        total + 5,
    ));
    let (fast, events) = both(1_200, &cmds);
    let last = events.last().unwrap();
    assert_eq!(count_fills(last), (100_000, total));
    assert_eq!(fast.engine().live_orders(), 0);
}

#[test]
fn one_mtl_sweeps_100k_orders_and_rests_at_the_last_level() {
    let (mut cmds, total) = deep_asks(1);
    cmds.push(new(
        500_000,
        99,
        S,
        Side::Buy,
        OrderType::Mtl,
        0,
        total + 500,
    ));
    let (fast, events) = both(1_200, &cmds);
    let last = events.last().unwrap();
    assert_eq!(count_fills(last), (100_000, total));
    assert_eq!(fast.engine().depth(SecurityId(S), 5).0, vec![(1_499, 500)]);
}

#[test]
fn one_amend_sweeps_half_of_100k_orders() {
    let (mut cmds, _) = deep_asks(1);
    cmds.push(new(500_000, 99, S, Side::Buy, OrderType::Limit, 900, 1));
    // Re-priced into the book with a quantity to spare: it takes every ask up to 1,249 and
    // rests the rest at 1,249.
    cmds.push(amend(500_000, 99, S, 1_249, 150_000));
    let (fast, events) = both(1_200, &cmds);
    let last = events.last().unwrap();
    let (fills, qty) = count_fills(last);
    assert_eq!(fills, 50_000);
    assert_eq!(
        fast.engine().depth(SecurityId(S), 1).0,
        vec![(1_249, 150_000 - qty)]
    );
    assert!(matches!(
        last[0],
        Event::Amended {
            priority_kept: false,
            ..
        }
    ));
}

#[test]
fn auction_over_100k_orders_and_a_thousand_levels() {
    let mut cmds = vec![phase(Phase::Ato)];
    let mut id = 0u64;
    for i in 0..50_000u64 {
        // Buys 1,000..1,999 and sells 1,400..2,399: a wide overlap of 600 levels.
        id += 1;
        let bp = 1_000 + ((i * 7_919) % 1_000) as Price;
        cmds.push(new(
            id,
            (i % 5) as u32,
            S,
            Side::Buy,
            OrderType::Limit,
            bp,
            1 + i % 4,
        ));
        id += 1;
        let sp = 1_400 + ((i * 104_729) % 1_000) as Price;
        cmds.push(new(
            id,
            5 + (i % 5) as u32,
            S,
            Side::Sell,
            OrderType::Limit,
            sp,
            1 + i % 3,
        ));
        if i % 100 == 0 {
            id += 1;
            let side = if i % 200 == 0 { Side::Buy } else { Side::Sell };
            cmds.push(new(id, 11, S, side, OrderType::Ato, 0, 50));
        }
    }
    cmds.push(phase(Phase::Continuous));
    let (fast, events) = both(1_500, &cmds);
    let uncross = events.last().unwrap();
    let (fills, qty) = count_fills(uncross);
    assert!(fills > 10_000, "{fills} fills");
    let auction = uncross.iter().find_map(|e| match e {
        Event::Auction { price, volume, .. } => Some((*price, *volume)),
        _ => None,
    });
    assert_eq!(auction.map(|a| a.1), Some(qty));
    // Uncrossed: the best bid is below the best ask.
    let (bids, asks) = fast.engine().depth(SecurityId(S), 1);
    assert!(bids[0].0 < asks[0].0, "{bids:?} {asks:?}");
}

/// ATO 1,000 each side, limit buys 1 each at 100..=199, limit sells 1 each at `ask_from`..+99:
/// every candidate price trades exactly 1,000, so the anchor decides.
fn plateau(reference: Price, ask_from: Price) -> (Price, Qty) {
    let mut cmds = vec![phase(Phase::Ato)];
    cmds.push(new(1, 0, S, Side::Buy, OrderType::Ato, 0, 1_000));
    cmds.push(new(2, 1, S, Side::Sell, OrderType::Ato, 0, 1_000));
    for i in 0..100u64 {
        cmds.push(new(
            10 + i,
            0,
            S,
            Side::Buy,
            OrderType::Limit,
            100 + i as Price,
            1,
        ));
        cmds.push(new(
            500 + i,
            1,
            S,
            Side::Sell,
            OrderType::Limit,
            ask_from + i as Price,
            1,
        ));
    }
    let (fast, _) = both(reference, &cmds);
    let indicative = fast.engine().indicative(SecurityId(S)).unwrap();
    // The uncross agrees with the indicative price, and fast agrees with naive.
    cmds.push(phase(Phase::Closed));
    let (_, events) = both(reference, &cmds);
    let auction = events.last().unwrap().iter().find_map(|e| match e {
        Event::Auction { price, volume, .. } => Some((*price, *volume)),
        _ => None,
    });
    assert_eq!(auction, Some(indicative));
    indicative
}

#[test]
fn long_plateaus_of_tied_volume_go_to_the_anchor_then_up() {
    assert_eq!(plateau(250, 300), (300, 1_000)); // 300 is 50 away, 199 is 51
    assert_eq!(plateau(249, 300), (199, 1_000)); // 199 is 50 away, 300 is 51
    assert_eq!(plateau(250, 301), (301, 1_000)); // both 51 away: the higher
    assert_eq!(plateau(150, 300), (150, 1_000)); // the anchor itself is a candidate
    assert_eq!(plateau(5, 300), (100, 1_000));
    assert_eq!(plateau(1_000_000, 300), (399, 1_000));
}
