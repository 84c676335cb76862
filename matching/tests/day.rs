//! The trading day through the sequential `Exchange` (HOSE rules): the phase table, call
//! auctions and their tie-breaks, the close and the next day's band.

mod common;

use common::{amend, cancel, hose, new, phase, run, table};
use matching::{
    Aggressor, BrokerId, CancelReason, Command, Engine, Event, Exchange, Fill, MarketRules,
    OrderId, OrderType, Phase, Price, Qty, RejectReason, SecurityId, SecurityTable, Side,
};

/// `VNM`: reference 10,000 (band 9,300..10,700; tick 10 below 10,000, 50 from it).
const VNM: SecurityId = SecurityId(0);
/// `FPT`: reference 50,000 (sorts before VNM).
const FPT: SecurityId = SecurityId(1);

fn lo(id: u64, broker: u32, side: Side, price: Price, qty: Qty) -> Command {
    new(id, broker, VNM.0, side, OrderType::Limit, price, qty)
}

fn mkt(id: u64, broker: u32, side: Side, kind: OrderType, qty: Qty) -> Command {
    new(id, broker, VNM.0, side, kind, 0, qty)
}

fn acc(id: u64) -> Event {
    Event::Accepted { id: OrderId(id) }
}

fn rej(id: u64, reason: RejectReason) -> Event {
    Event::Rejected {
        id: OrderId(id),
        reason,
    }
}

fn rested(id: u64, side: Side, price: Price, qty: Qty) -> Event {
    Event::Rested {
        id: OrderId(id),
        security: VNM,
        side,
        price,
        qty,
    }
}

fn totals(sec: SecurityId, bid_total: Qty, ask_total: Qty) -> Event {
    Event::Totals {
        security: sec,
        bid_total,
        ask_total,
    }
}

/// A VNM trade: (buy id, its broker), (sell id, its broker).
fn fill(buy: (u64, u32), sell: (u64, u32), price: Price, qty: Qty, aggressor: Aggressor) -> Event {
    Event::Fill(Fill {
        security: VNM,
        price,
        qty,
        buy: OrderId(buy.0),
        sell: OrderId(sell.0),
        buy_broker: BrokerId(buy.1),
        sell_broker: BrokerId(sell.1),
        aggressor,
    })
}

fn cancelled(id: u64, qty: Qty, reason: CancelReason) -> Event {
    Event::Cancelled {
        id: OrderId(id),
        qty,
        reason,
    }
}

fn auction(price: Price, volume: Qty) -> Event {
    Event::Auction {
        security: VNM,
        price,
        volume,
    }
}

fn reference(sec: SecurityId, price: Price) -> Event {
    Event::Reference {
        security: sec,
        price,
    }
}

/// An exchange already in `p` (reached from CONTINUOUS with one PHASE).
fn hose_in(p: Phase) -> Exchange {
    let mut ex = hose();
    run(&mut ex, phase(p));
    ex
}

/// Only the events of `sec` from a PHASE's events.
fn of(sec: SecurityId, events: Vec<Event>) -> Vec<Event> {
    events
        .into_iter()
        .filter(|e| e.security() == Some(sec) || e.security().is_none())
        .collect()
}

// ----- the phase table ------------------------------------------------------------------

#[test]
fn new_orders_in_every_phase_follow_the_table() {
    use RejectReason::{MarketClosed as MC, PhaseForbids as PF};
    // Columns in OrderType::ALL order: LO, MP, MTL, IOC, FOK, ATO, ATC. None = accepted.
    let table: [(Phase, [Option<RejectReason>; 7]); 5] = [
        (
            Phase::Ato,
            [None, Some(PF), Some(PF), Some(PF), Some(PF), None, Some(PF)],
        ),
        (
            Phase::Continuous,
            [None, None, None, None, None, Some(PF), Some(PF)],
        ),
        (Phase::Break, [Some(MC); 7]),
        (
            Phase::Atc,
            [None, Some(PF), Some(PF), Some(PF), Some(PF), Some(PF), None],
        ),
        (Phase::Closed, [Some(MC); 7]),
    ];
    for (p, row) in table {
        let mut ex = hose_in(p);
        for (i, (kind, want)) in OrderType::ALL.into_iter().zip(row).enumerate() {
            let id = i as u64 + 1;
            let price = if kind.is_priceless() { 0 } else { 10_000 };
            let out = run(&mut ex, new(id, 0, VNM.0, Side::Buy, kind, price, 100));
            match want {
                None => assert_eq!(out[0], acc(id), "{p:?} {kind:?}: {out:?}"),
                Some(reason) => {
                    assert_eq!(out, vec![rej(id, reason)], "{p:?} {kind:?}")
                }
            }
        }
        // A rejected NEW burns its id.
        for id in 1..=7 {
            let out = run(&mut ex, lo(id, 0, Side::Buy, 10_000, 100));
            assert_eq!(out, vec![rej(id, RejectReason::DuplicateOrderId)], "{p:?}");
        }
    }
}

#[test]
fn rules_come_before_the_phase_for_new() {
    let mut ex = hose_in(Phase::Closed);
    assert_eq!(
        run(&mut ex, lo(1, 0, Side::Buy, 10_010, 100)),
        vec![rej(1, RejectReason::OffTick)]
    );
    assert_eq!(
        run(&mut ex, mkt(2, 0, Side::Buy, OrderType::Atc, 150)),
        vec![rej(2, RejectReason::OddLot)]
    );
    let mut ex = hose_in(Phase::Ato);
    assert_eq!(
        run(
            &mut ex,
            new(3, 0, VNM.0, Side::Buy, OrderType::Mtl, 10_000, 100)
        ),
        vec![rej(3, RejectReason::MarketOrderWithPrice)]
    );
    assert_eq!(
        run(&mut ex, new(4, 0, VNM.0, Side::Buy, OrderType::Atc, 0, 100)),
        vec![rej(4, RejectReason::PhaseForbids)]
    );
    // Unknown security and duplicate id come before everything.
    assert_eq!(
        run(&mut ex, new(4, 0, 9, Side::Buy, OrderType::Ato, 0, 100)),
        vec![rej(4, RejectReason::UnknownSecurity)]
    );
    assert_eq!(
        run(&mut ex, new(4, 0, VNM.0, Side::Buy, OrderType::Ato, 0, 100)),
        vec![rej(4, RejectReason::DuplicateOrderId)]
    );
}

#[test]
fn cancel_and_amend_in_every_phase() {
    use RejectReason::{MarketClosed as MC, OrderNotLive as NL, PhaseForbids as PF};
    // (phase, cancel outcome, amend outcome); None = done. In CLOSED every order has expired,
    // and liveness is checked before the phase.
    let cases = [
        (Phase::Ato, Some(PF), Some(PF)),
        (Phase::Continuous, None, None),
        (Phase::Break, None, Some(MC)),
        (Phase::Atc, Some(PF), Some(PF)),
        (Phase::Closed, Some(NL), Some(NL)),
    ];
    for (p, cancel_want, amend_want) in cases {
        let mut ex = hose();
        run(&mut ex, lo(1, 0, Side::Buy, 10_000, 200));
        run(&mut ex, lo(2, 0, Side::Buy, 10_000, 200));
        run(&mut ex, phase(p));
        let out = run(&mut ex, amend(1, 0, VNM.0, 10_000, 100));
        match amend_want {
            None => assert!(matches!(out[0], Event::Amended { .. }), "{p:?}: {out:?}"),
            Some(reason) => assert_eq!(out[0], rej(1, reason), "{p:?}"),
        }
        let out = run(&mut ex, cancel(2, 0, VNM.0));
        match cancel_want {
            None => assert_eq!(out[0], cancelled(2, 200, CancelReason::Requested), "{p:?}"),
            Some(reason) => assert_eq!(out[0], rej(2, reason), "{p:?}"),
        }
        // Engine rejects still report the book's totals.
        assert!(matches!(out[1], Event::Totals { .. }), "{p:?}: {out:?}");
    }
}

#[test]
fn resting_auction_orders_pass_liveness_then_fail_the_phase() {
    let mut ex = hose_in(Phase::Ato);
    run(&mut ex, mkt(1, 0, Side::Buy, OrderType::Ato, 100));
    assert_eq!(
        run(&mut ex, cancel(1, 0, VNM.0)),
        vec![rej(1, RejectReason::PhaseForbids), totals(VNM, 100, 0)]
    );
    // An amend checks the rules on the new price first, then the phase.
    assert_eq!(
        run(&mut ex, amend(1, 0, VNM.0, 0, 100)),
        vec![rej(1, RejectReason::NonPositivePrice), totals(VNM, 100, 0)]
    );
    assert_eq!(
        run(&mut ex, amend(1, 0, VNM.0, 10_000, 100)),
        vec![rej(1, RejectReason::PhaseForbids), totals(VNM, 100, 0)]
    );
}

#[test]
fn a_phase_naming_the_current_phase_is_silent() {
    let mut ex = hose();
    assert_eq!(run(&mut ex, phase(Phase::Continuous)), vec![]);
    run(&mut ex, lo(1, 0, Side::Buy, 10_000, 100));
    assert!(!run(&mut ex, phase(Phase::Ato)).is_empty());
    assert_eq!(run(&mut ex, phase(Phase::Ato)), vec![]);
    assert!(!run(&mut ex, phase(Phase::Closed)).is_empty());
    // No second expiry, no second Reference.
    assert_eq!(run(&mut ex, phase(Phase::Closed)), vec![]);
}

#[test]
fn every_other_phase_change_reports_every_book_in_code_order() {
    let mut t = SecurityTable::new();
    for (code, r) in [("abc", 10_000), ("ABD", 10_000), ("AB", 10_000)] {
        t.add(code, r).unwrap();
    }
    let mut ex = Exchange::new(MarketRules::hose(), t);
    // Byte order: "AB" (id 2) < "ABD" (id 1) < "abc" (id 0).
    let order = [SecurityId(2), SecurityId(1), SecurityId(0)];
    let out = run(&mut ex, phase(Phase::Break));
    assert_eq!(out, order.map(|s| totals(s, 0, 0)).to_vec());
    let out = run(&mut ex, phase(Phase::Closed));
    let mut want = Vec::new();
    for s in order {
        want.push(reference(s, 10_000));
        want.push(totals(s, 0, 0));
    }
    assert_eq!(out, want);
}

// ----- call phases and the uncross ----------------------------------------------------------

#[test]
fn call_phase_orders_rest_without_matching_even_when_crossing() {
    let mut ex = hose_in(Phase::Ato);
    assert_eq!(
        run(&mut ex, lo(1, 0, Side::Buy, 10_300, 100)),
        vec![
            acc(1),
            rested(1, Side::Buy, 10_300, 100),
            totals(VNM, 100, 0)
        ]
    );
    assert_eq!(
        run(&mut ex, lo(2, 1, Side::Sell, 9_800, 300)),
        vec![
            acc(2),
            rested(2, Side::Sell, 9_800, 300),
            totals(VNM, 100, 300)
        ]
    );
    // ATO orders rest at price 0 and count in the totals, not in the depth.
    assert_eq!(
        run(&mut ex, mkt(3, 0, Side::Buy, OrderType::Ato, 500)),
        vec![acc(3), rested(3, Side::Buy, 0, 500), totals(VNM, 600, 300)]
    );
    let book = ex.engine().book(VNM).unwrap();
    assert_eq!(book.depth(5), (vec![(10_300, 100)], vec![(9_800, 300)]));
    assert_eq!(book.auction_totals(), (500, 0));
    assert_eq!(book.totals(), (600, 300));
}

#[test]
fn uncross_maximises_volume_and_cancels_auction_leftovers() {
    let mut ex = hose_in(Phase::Ato);
    run(&mut ex, mkt(1, 0, Side::Buy, OrderType::Ato, 300));
    run(&mut ex, lo(2, 0, Side::Buy, 10_100, 200));
    run(&mut ex, lo(3, 0, Side::Buy, 9_900, 500));
    run(&mut ex, lo(4, 1, Side::Sell, 9_800, 400));
    run(&mut ex, lo(5, 1, Side::Sell, 10_050, 300));
    run(&mut ex, lo(6, 1, Side::Sell, 10_200, 900));
    // D: 9800 -> 1000, 9900 -> 1000, 10050 -> 500, 10100 -> 500, 10200 -> 300.
    // S: 9800 -> 400, 9900 -> 400, 10050 -> 700, 10100 -> 700, 10200 -> 1600.
    // V: 400, 400, 500, 500, 300: 10,050 and 10,100 tie; the anchor 10,000 is nearer 10,050.
    assert_eq!(ex.engine().indicative(VNM), Some((10_050, 500)));
    let out = run(&mut ex, phase(Phase::Continuous));
    let a = Aggressor::Auction;
    assert_eq!(
        of(VNM, out),
        vec![
            fill((1, 0), (4, 1), 10_050, 300, a),
            fill((2, 0), (4, 1), 10_050, 100, a),
            fill((2, 0), (5, 1), 10_050, 100, a),
            auction(10_050, 500),
            totals(VNM, 500, 1_100),
        ]
    );
    // Limit leftovers keep resting; the book is no longer crossed.
    let book = ex.engine().book(VNM).unwrap();
    assert_eq!(
        book.depth(5),
        (vec![(9_900, 500)], vec![(10_050, 200), (10_200, 900)])
    );
    assert_eq!(book.last_trade(), Some(10_050));
    assert_eq!(ex.engine().indicative(VNM), None, "not in a call phase");
}

#[test]
fn tie_goes_to_the_price_nearest_the_anchor_in_price_not_ticks() {
    // Anchor 10,000 (the reference). Candidates 9,990 (one 10-tick below) and 10,050 (one
    // 50-tick above) both trade 100: 9,990 is nearer in price (10 vs 50) although both are
    // one tick away.
    let mut ex = hose_in(Phase::Ato);
    run(&mut ex, lo(1, 0, Side::Buy, 10_050, 100));
    run(&mut ex, lo(2, 1, Side::Sell, 9_990, 100));
    let out = of(VNM, run(&mut ex, phase(Phase::Continuous)));
    assert_eq!(out[0], fill((1, 0), (2, 1), 9_990, 100, Aggressor::Auction));
    assert_eq!(out[1], auction(9_990, 100));
}

#[test]
fn tie_of_distance_goes_to_the_higher_price() {
    let mut ex = hose_in(Phase::Ato);
    run(&mut ex, lo(1, 0, Side::Buy, 10_050, 100));
    run(&mut ex, lo(2, 1, Side::Sell, 9_950, 100));
    assert_eq!(ex.engine().indicative(VNM), Some((10_050, 100)));
    let out = of(VNM, run(&mut ex, phase(Phase::Break)));
    assert_eq!(out[1], auction(10_050, 100));
}

#[test]
fn anchor_is_the_days_last_trade_else_the_reference() {
    let mut ex = hose();
    // A continuous trade at 10,300 moves the anchor away from the reference 10,000.
    run(&mut ex, lo(1, 0, Side::Buy, 10_300, 100));
    run(&mut ex, lo(2, 1, Side::Sell, 10_300, 100));
    run(&mut ex, phase(Phase::Atc));
    run(&mut ex, lo(3, 0, Side::Buy, 10_250, 100));
    run(&mut ex, lo(4, 1, Side::Sell, 10_050, 100));
    // Tie between 10,050 and 10,250: 10,250 is nearer the last trade 10,300.
    assert_eq!(ex.engine().indicative(VNM), Some((10_250, 100)));
    let out = of(VNM, run(&mut ex, phase(Phase::Closed)));
    assert_eq!(
        out,
        vec![
            fill((3, 0), (4, 1), 10_250, 100, Aggressor::Auction),
            auction(10_250, 100),
            reference(VNM, 10_250),
            totals(VNM, 0, 0),
        ]
    );
    // The close forgot the day's last trade: the anchor is now the new reference.
    let book = ex.engine().book(VNM).unwrap();
    assert_eq!(
        (book.last_trade(), book.reference(), book.anchor()),
        (None, 10_250, 10_250)
    );
    assert_eq!(ex.engine().export_book(VNM).unwrap().last_trade, None);
    // Next day: no trade yet, the anchor is the new reference 10,250.
    run(&mut ex, phase(Phase::Ato));
    run(&mut ex, lo(5, 0, Side::Buy, 10_500, 100));
    run(&mut ex, lo(6, 1, Side::Sell, 10_000, 100));
    // Tie between 10,000 (250 away) and 10,500 (250 away): the higher.
    assert_eq!(ex.engine().indicative(VNM), Some((10_500, 100)));
    run(&mut ex, lo(7, 1, Side::Sell, 10_100, 100));
    run(&mut ex, lo(8, 0, Side::Buy, 10_150, 100));
    // Candidates 10,000 (V 100), 10,100 (V 200), 10,150 (V 200), 10,500 (V 100).
    assert_eq!(ex.engine().indicative(VNM), Some((10_150, 200)));
}

#[test]
fn only_auction_orders_trade_at_the_anchor() {
    let mut ex = hose_in(Phase::Ato);
    run(&mut ex, mkt(1, 0, Side::Buy, OrderType::Ato, 300));
    run(&mut ex, mkt(2, 1, Side::Sell, OrderType::Ato, 200));
    assert_eq!(ex.engine().indicative(VNM), Some((10_000, 200)));
    let out = of(VNM, run(&mut ex, phase(Phase::Continuous)));
    assert_eq!(
        out,
        vec![
            fill((1, 0), (2, 1), 10_000, 200, Aggressor::Auction),
            auction(10_000, 200),
            cancelled(1, 100, CancelReason::Unfilled),
            totals(VNM, 0, 0),
        ]
    );
}

#[test]
fn a_limit_order_anywhere_replaces_the_anchor_as_candidate() {
    let mut ex = hose_in(Phase::Ato);
    run(&mut ex, mkt(1, 0, Side::Buy, OrderType::Ato, 300));
    run(&mut ex, mkt(2, 1, Side::Sell, OrderType::Ato, 200));
    // A buy far below everything: the only candidate; D = 400, S = 200.
    run(&mut ex, lo(3, 0, Side::Buy, 9_300, 100));
    assert_eq!(ex.engine().indicative(VNM), Some((9_300, 200)));
}

#[test]
fn no_cross_no_auction() {
    // Limit orders that do not cross: no trade, no Auction event, they keep resting.
    let mut ex = hose_in(Phase::Ato);
    run(&mut ex, lo(1, 0, Side::Buy, 9_900, 100));
    run(&mut ex, lo(2, 1, Side::Sell, 10_100, 100));
    assert_eq!(ex.engine().indicative(VNM), None);
    assert_eq!(
        of(VNM, run(&mut ex, phase(Phase::Continuous))),
        vec![totals(VNM, 100, 100)]
    );
    assert_eq!(ex.engine().live_orders(), 2);
    // Buyers only (an ATO buy among them): V = 0 everywhere; the ATO order is cancelled.
    let mut ex = hose_in(Phase::Ato);
    run(&mut ex, lo(1, 0, Side::Buy, 9_900, 100));
    run(&mut ex, mkt(2, 0, Side::Buy, OrderType::Ato, 300));
    assert_eq!(ex.engine().indicative(VNM), None);
    assert_eq!(
        of(VNM, run(&mut ex, phase(Phase::Continuous))),
        vec![
            cancelled(2, 300, CancelReason::Unfilled),
            totals(VNM, 100, 0)
        ]
    );
}

#[test]
fn allocation_ato_first_then_higher_limit_then_earlier_time_amend_loses_time() {
    let mut ex = hose();
    run(&mut ex, lo(1, 0, Side::Buy, 10_000, 100)); // A, first in time...
    run(&mut ex, lo(2, 2, Side::Buy, 10_000, 100)); // B
                                                    // ...until an amend to more quantity costs A its place behind B.
    let out = run(&mut ex, amend(1, 0, VNM.0, 10_000, 300));
    assert!(matches!(
        out[0],
        Event::Amended {
            priority_kept: false,
            ..
        }
    ));
    run(&mut ex, phase(Phase::Ato));
    run(&mut ex, mkt(3, 3, Side::Buy, OrderType::Ato, 200)); // C: ATO, the latest buy
    run(&mut ex, lo(4, 4, Side::Buy, 10_050, 100)); // D: higher limit
    run(&mut ex, lo(5, 1, Side::Sell, 9_950, 500)); // E
    run(&mut ex, mkt(6, 5, Side::Sell, OrderType::Ato, 100)); // F: ATO sell, after E
                                                              // V(9950) = min(700, 600), V(10000) = 600, V(10050) = 300: 10,000 is the anchor.
    let a = Aggressor::Auction;
    let out = of(VNM, run(&mut ex, phase(Phase::Continuous)));
    assert_eq!(
        out,
        vec![
            fill((3, 3), (6, 5), 10_000, 100, a),
            fill((3, 3), (5, 1), 10_000, 100, a),
            fill((4, 4), (5, 1), 10_000, 100, a),
            fill((2, 2), (5, 1), 10_000, 100, a),
            fill((1, 0), (5, 1), 10_000, 200, a),
            auction(10_000, 600),
            totals(VNM, 100, 0),
        ]
    );
    // The partly filled limit order keeps resting with its (post-amend) priority.
    let image = ex.engine().export_book(VNM).unwrap();
    assert_eq!(image.bids.len(), 1);
    assert_eq!((image.bids[0].id, image.bids[0].qty), (OrderId(1), 100));
}

#[test]
fn atc_auction_then_close_expires_and_sets_the_reference() {
    let mut ex = hose();
    run(&mut ex, lo(1, 0, Side::Buy, 9_900, 100));
    run(&mut ex, lo(2, 0, Side::Buy, 10_000, 200));
    run(&mut ex, lo(3, 0, Side::Buy, 10_000, 300));
    run(&mut ex, lo(4, 1, Side::Sell, 10_300, 100));
    run(&mut ex, lo(5, 1, Side::Sell, 10_200, 400));
    run(&mut ex, phase(Phase::Atc));
    run(&mut ex, mkt(6, 1, Side::Sell, OrderType::Atc, 100));
    run(&mut ex, mkt(7, 0, Side::Buy, OrderType::Atc, 500));
    // D(p) = 500 + limits >= p; S(p) = 100 + limits <= p. V(9900) = 100,
    // V(10000) = 100, V(10200) = 500, V(10300) = 500: 10,200 is nearer the anchor 10,000.
    let a = Aggressor::Auction;
    let out = of(VNM, run(&mut ex, phase(Phase::Closed)));
    assert_eq!(
        out,
        vec![
            fill((7, 0), (6, 1), 10_200, 100, a),
            fill((7, 0), (5, 1), 10_200, 400, a),
            auction(10_200, 500),
            // Bids best price first then time, then asks.
            cancelled(2, 200, CancelReason::Expired),
            cancelled(3, 300, CancelReason::Expired),
            cancelled(1, 100, CancelReason::Expired),
            cancelled(4, 100, CancelReason::Expired),
            reference(VNM, 10_200),
            totals(VNM, 0, 0),
        ]
    );
    assert_eq!(ex.engine().live_orders(), 0);
    // Expired orders are not live; their ids stay burnt.
    run(&mut ex, phase(Phase::Continuous));
    assert_eq!(
        run(&mut ex, cancel(2, 0, VNM.0)),
        vec![rej(2, RejectReason::OrderNotLive), totals(VNM, 0, 0)]
    );
    assert_eq!(
        run(&mut ex, lo(2, 0, Side::Buy, 10_000, 100)),
        vec![rej(2, RejectReason::DuplicateOrderId)]
    );
}

#[test]
fn the_band_follows_the_close_for_new_orders_and_amends() {
    let mut ex = hose();
    // Day 1 band around 10,000: 9,300..10,700. Close at 10,700.
    run(&mut ex, lo(1, 0, Side::Buy, 10_700, 100));
    run(&mut ex, lo(2, 1, Side::Sell, 10_700, 100));
    assert_eq!(
        run(&mut ex, lo(3, 0, Side::Buy, 11_000, 100)),
        vec![rej(3, RejectReason::OutsideBand)]
    );
    run(&mut ex, lo(4, 0, Side::Buy, 9_300, 100));
    let out = run(&mut ex, phase(Phase::Closed));
    assert!(out.contains(&reference(VNM, 10_700)), "{out:?}");
    assert_eq!(ex.gateway().reference(VNM), Some(10_700));
    // Day 2 band around 10,700: 9,951 -> 9,960 (the tick at 9,951 is 10) .. 11,449 -> 11,400.
    assert_eq!(ex.engine().book(VNM).unwrap().band(), Some((9_960, 11_400)));
    run(&mut ex, phase(Phase::Continuous));
    assert_eq!(run(&mut ex, lo(5, 0, Side::Buy, 11_000, 100))[0], acc(5));
    assert_eq!(
        run(&mut ex, lo(6, 0, Side::Buy, 9_900, 100)),
        vec![rej(6, RejectReason::OutsideBand)]
    );
    // The amend check uses the book's current band too.
    assert_eq!(
        run(&mut ex, amend(5, 0, VNM.0, 9_950, 100)),
        vec![rej(5, RejectReason::OutsideBand), totals(VNM, 100, 0)]
    );
    assert_eq!(run(&mut ex, amend(5, 0, VNM.0, 11_400, 100))[0], {
        Event::Amended {
            id: OrderId(5),
            security: VNM,
            price: 11_400,
            qty: 100,
            priority_kept: false,
        }
    });
    // A day without trades keeps the reference.
    run(&mut ex, cancel(5, 0, VNM.0));
    let out = run(&mut ex, phase(Phase::Closed));
    assert!(out.contains(&reference(VNM, 10_700)), "{out:?}");
    assert!(out.contains(&reference(FPT, 50_000)), "{out:?}");
}

#[test]
fn leaving_ato_straight_to_closed_uncrosses_cancels_then_expires() {
    let mut ex = hose_in(Phase::Ato);
    run(&mut ex, mkt(1, 0, Side::Buy, OrderType::Ato, 100));
    run(&mut ex, mkt(2, 0, Side::Buy, OrderType::Ato, 300));
    run(&mut ex, lo(3, 1, Side::Sell, 10_100, 200));
    run(&mut ex, lo(4, 1, Side::Sell, 10_600, 100));
    run(&mut ex, lo(5, 0, Side::Buy, 9_500, 100));
    // V(9500) = 0, V(10100) = 200, V(10600) = 300.
    let a = Aggressor::Auction;
    let out = of(VNM, run(&mut ex, phase(Phase::Closed)));
    assert_eq!(
        out,
        vec![
            fill((1, 0), (3, 1), 10_600, 100, a),
            fill((2, 0), (3, 1), 10_600, 100, a),
            fill((2, 0), (4, 1), 10_600, 100, a),
            auction(10_600, 300),
            cancelled(2, 100, CancelReason::Unfilled),
            cancelled(5, 100, CancelReason::Expired),
            reference(VNM, 10_600),
            totals(VNM, 0, 0),
        ]
    );
}

#[test]
fn process_for_moves_one_book_only() {
    let t = table(2, 100);
    let mut e = Engine::new(MarketRules::none(), &t);
    e.open_book(SecurityId(0));
    e.open_book(SecurityId(1));
    let mut out = Vec::new();
    e.process_for(SecurityId(1), &Command::Phase(Phase::Ato), &mut out);
    assert_eq!(out, vec![totals(SecurityId(1), 0, 0)]);
    assert_eq!(e.phase(SecurityId(0)), Some(Phase::Continuous));
    assert_eq!(e.phase(SecurityId(1)), Some(Phase::Ato));
    // The market-wide form moves each book from where it is: book 1 is already in ATO.
    out.clear();
    e.process(&Command::Phase(Phase::Ato), &mut out);
    assert_eq!(out, vec![totals(SecurityId(0), 0, 0)]);
    // An unknown book rejects what names an order and ignores a phase.
    out.clear();
    e.process_for(SecurityId(7), &Command::Phase(Phase::Closed), &mut out);
    e.process_for(
        SecurityId::UNKNOWN,
        &Command::Phase(Phase::Closed),
        &mut out,
    );
    assert!(out.is_empty());
}

#[test]
fn engine_rechecks_the_phase_of_a_new_order() {
    // The gateway normally stops these; the engine alone must not rest an ATO order in
    // CONTINUOUS or match in a call phase.
    let t = table(1, 100);
    let mut e = Engine::new(MarketRules::none(), &t);
    e.open_book(SecurityId(0));
    let mut out = Vec::new();
    e.process(&new(1, 0, 0, Side::Buy, OrderType::Ato, 0, 5), &mut out);
    assert_eq!(
        out,
        vec![
            rej(1, RejectReason::PhaseForbids),
            totals(SecurityId(0), 0, 0)
        ]
    );
    out.clear();
    e.process(&Command::Phase(Phase::Break), &mut out);
    e.process(&new(2, 0, 0, Side::Buy, OrderType::Limit, 100, 5), &mut out);
    assert_eq!(out[1], rej(2, RejectReason::MarketClosed));
}
