//! AMEND (DESIGN.md, "Amend"), through the sequential `Exchange` with HOSE rules: priority kept
//! or lost, crossing amends, every reject and the order of the checks.

mod common;

use common::{amend, cancel, hose, new, phase, run};
use matching::{
    Aggressor, BrokerId, Command, Event, Fill, OrderId, OrderType, Phase, Price, Qty, RejectReason,
    SecurityId, Side, MAX_ORDER_QTY,
};

const VNM: SecurityId = SecurityId(0);
const FPT: SecurityId = SecurityId(1);

fn lo(id: u64, broker: u32, side: Side, price: Price, qty: Qty) -> Command {
    new(id, broker, VNM.0, side, OrderType::Limit, price, qty)
}

fn amended(id: u64, price: Price, qty: Qty, priority_kept: bool) -> Event {
    Event::Amended {
        id: OrderId(id),
        security: VNM,
        price,
        qty,
        priority_kept,
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

fn totals(bid_total: Qty, ask_total: Qty) -> Event {
    Event::Totals {
        security: VNM,
        bid_total,
        ask_total,
    }
}

fn rej(id: u64, reason: RejectReason) -> Event {
    Event::Rejected {
        id: OrderId(id),
        reason,
    }
}

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

/// The sell ids a market buy of `qty` takes, in order.
fn taken_by_market_buy(ex: &mut matching::Exchange, id: u64, qty: Qty) -> Vec<u64> {
    run(ex, new(id, 9, VNM.0, Side::Buy, OrderType::Market, 0, qty))
        .into_iter()
        .filter_map(|e| match e {
            Event::Fill(f) => Some(f.sell.0),
            _ => None,
        })
        .collect()
}

#[test]
fn reducing_in_place_keeps_time_priority() {
    let mut ex = hose();
    run(&mut ex, lo(1, 1, Side::Sell, 10_100, 500));
    run(&mut ex, lo(2, 2, Side::Sell, 10_100, 500));
    assert_eq!(
        run(&mut ex, amend(1, 1, VNM.0, 10_100, 200)),
        vec![amended(1, 10_100, 200, true), totals(0, 700)]
    );
    // Same quantity, same price: nothing changes, priority kept.
    assert_eq!(
        run(&mut ex, amend(1, 1, VNM.0, 10_100, 200)),
        vec![amended(1, 10_100, 200, true), totals(0, 700)]
    );
    assert_eq!(taken_by_market_buy(&mut ex, 3, 300), vec![1, 2]);
    assert_eq!(ex.engine().depth(VNM, 5).1, vec![(10_100, 400)]);
}

#[test]
fn more_quantity_at_the_same_price_loses_priority() {
    let mut ex = hose();
    run(&mut ex, lo(1, 1, Side::Sell, 10_100, 100));
    run(&mut ex, lo(2, 2, Side::Sell, 10_100, 100));
    assert_eq!(
        run(&mut ex, amend(1, 1, VNM.0, 10_100, 200)),
        vec![
            amended(1, 10_100, 200, false),
            rested(1, Side::Sell, 10_100, 200),
            totals(0, 300)
        ]
    );
    assert_eq!(taken_by_market_buy(&mut ex, 3, 300), vec![2, 1]);
}

#[test]
fn a_new_price_loses_priority_even_when_it_comes_back() {
    let mut ex = hose();
    run(&mut ex, lo(1, 1, Side::Sell, 10_100, 100));
    run(&mut ex, lo(2, 2, Side::Sell, 10_100, 100));
    run(&mut ex, lo(3, 3, Side::Sell, 10_100, 100));
    assert_eq!(
        run(&mut ex, amend(1, 1, VNM.0, 10_200, 100)),
        vec![
            amended(1, 10_200, 100, false),
            rested(1, Side::Sell, 10_200, 100),
            totals(0, 300)
        ]
    );
    assert_eq!(
        ex.engine().depth(VNM, 5).1,
        vec![(10_100, 200), (10_200, 100)]
    );
    // Back at the old price, order 1 is behind 3; an unchanged amend keeps 2 in front.
    run(&mut ex, amend(1, 1, VNM.0, 10_100, 100));
    run(&mut ex, amend(2, 2, VNM.0, 10_100, 100));
    assert_eq!(taken_by_market_buy(&mut ex, 4, 300), vec![2, 3, 1]);
}

#[test]
fn a_crossing_amend_trades_as_aggressor_at_the_resting_prices() {
    let mut ex = hose();
    run(&mut ex, lo(1, 0, Side::Buy, 10_000, 100));
    run(&mut ex, lo(2, 0, Side::Buy, 10_050, 100));
    run(&mut ex, lo(3, 1, Side::Sell, 10_300, 100));
    assert_eq!(
        run(&mut ex, amend(3, 1, VNM.0, 9_950, 300)),
        vec![
            amended(3, 9_950, 300, false),
            fill((2, 0), (3, 1), 10_050, 100, Aggressor::Sell),
            fill((1, 0), (3, 1), 10_000, 100, Aggressor::Sell),
            rested(3, Side::Sell, 9_950, 100),
            totals(0, 100)
        ]
    );
    assert_eq!(ex.engine().book(VNM).unwrap().last_trade(), Some(10_000));
    // Fully filled by its amend: no Rested; the order is then gone.
    run(&mut ex, lo(4, 0, Side::Buy, 9_900, 100));
    assert_eq!(
        run(&mut ex, amend(4, 0, VNM.0, 9_950, 100)),
        vec![
            amended(4, 9_950, 100, false),
            fill((4, 0), (3, 1), 9_950, 100, Aggressor::Buy),
            totals(0, 0)
        ]
    );
    assert_eq!(
        run(&mut ex, amend(4, 0, VNM.0, 9_950, 100)),
        vec![rej(4, RejectReason::OrderNotLive), totals(0, 0)]
    );
    assert_eq!(ex.engine().live_orders(), 0);
}

#[test]
fn the_rested_part_of_an_mtl_is_amendable() {
    let mut ex = hose();
    run(&mut ex, lo(1, 1, Side::Sell, 10_100, 100));
    run(&mut ex, new(2, 0, VNM.0, Side::Buy, OrderType::Mtl, 0, 300));
    assert_eq!(
        run(&mut ex, amend(2, 0, VNM.0, 10_100, 100)),
        vec![amended(2, 10_100, 100, true), totals(100, 0)]
    );
}

#[test]
fn amends_of_orders_that_are_not_resting() {
    let mut ex = hose();
    // Filled.
    run(&mut ex, lo(1, 0, Side::Buy, 10_000, 100));
    run(&mut ex, lo(2, 1, Side::Sell, 10_000, 100));
    // Cancelled.
    run(&mut ex, lo(3, 0, Side::Buy, 10_000, 100));
    run(&mut ex, cancel(3, 0, VNM.0));
    // Never rested: an IOC with nothing to take, a FOK, a market order.
    run(
        &mut ex,
        new(4, 0, VNM.0, Side::Buy, OrderType::Ioc, 10_000, 100),
    );
    run(
        &mut ex,
        new(5, 0, VNM.0, Side::Buy, OrderType::Fok, 10_000, 100),
    );
    run(
        &mut ex,
        new(6, 0, VNM.0, Side::Buy, OrderType::Market, 0, 100),
    );
    for id in [1, 2, 3, 4, 5, 6] {
        let owner = if id == 2 { 1 } else { 0 };
        assert_eq!(
            run(&mut ex, amend(id, owner, VNM.0, 10_000, 100)),
            vec![rej(id, RejectReason::OrderNotLive), totals(0, 0)],
            "order {id}"
        );
    }
    // Expired at the close (checked the next day).
    run(&mut ex, lo(7, 0, Side::Buy, 10_000, 100));
    run(&mut ex, phase(Phase::Closed));
    run(&mut ex, phase(Phase::Continuous));
    assert_eq!(
        run(&mut ex, amend(7, 0, VNM.0, 10_000, 100)),
        vec![rej(7, RejectReason::OrderNotLive), totals(0, 0)]
    );
    // Gateway rejects: only `Rejected`, no totals.
    run(&mut ex, lo(8, 0, Side::Buy, 10_000, 100));
    assert_eq!(
        run(&mut ex, amend(99, 0, VNM.0, 10_000, 100)),
        vec![rej(99, RejectReason::UnknownOrder)]
    );
    assert_eq!(
        run(&mut ex, amend(8, 0, FPT.0, 10_000, 100)),
        vec![rej(8, RejectReason::UnknownOrder)],
        "another security"
    );
    assert_eq!(
        run(&mut ex, amend(8, 5, VNM.0, 10_000, 100)),
        vec![rej(8, RejectReason::NotOwner)]
    );
    // A rejected NEW's id is unknown to AMEND.
    run(&mut ex, lo(9, 0, Side::Buy, 10_010, 100));
    assert_eq!(
        run(&mut ex, amend(9, 0, VNM.0, 10_000, 100)),
        vec![rej(9, RejectReason::UnknownOrder)]
    );
}

#[test]
fn the_new_price_and_quantity_follow_the_limit_order_rules() {
    let mut ex = hose();
    run(&mut ex, lo(1, 1, Side::Sell, 10_100, 300));
    run(&mut ex, lo(2, 2, Side::Sell, 10_100, 300));
    let cases = [
        (10_100, 0, RejectReason::ZeroQuantity),
        (10_100, MAX_ORDER_QTY + 100, RejectReason::QuantityTooLarge),
        (10_100, 150, RejectReason::OddLot),
        (0, 100, RejectReason::NonPositivePrice),
        (-10_000, 100, RejectReason::NonPositivePrice),
        // 10,010 is on the 10 grid but not on the 50 tick that applies from 10,000.
        (10_010, 100, RejectReason::OffTick),
        (9_995, 100, RejectReason::OffTick),
        (10_750, 100, RejectReason::OutsideBand),
        (9_290, 100, RejectReason::OutsideBand),
    ];
    for (price, qty, reason) in cases {
        assert_eq!(
            run(&mut ex, amend(1, 1, VNM.0, price, qty)),
            vec![rej(1, reason), totals(0, 600)],
            "{price} {qty}"
        );
    }
    // Nothing changed: order 1 is still first.
    assert_eq!(taken_by_market_buy(&mut ex, 3, 400), vec![1, 2]);
    // The band edges themselves are fine.
    assert!(matches!(
        run(&mut ex, amend(2, 2, VNM.0, 10_700, 200))[0],
        Event::Amended { .. }
    ));
    assert!(matches!(
        run(&mut ex, amend(2, 2, VNM.0, 9_300, 200))[0],
        Event::Amended { .. }
    ));
}

#[test]
fn order_of_the_checks() {
    let mut ex = hose();
    run(&mut ex, lo(1, 0, Side::Buy, 10_000, 100));
    run(&mut ex, cancel(1, 0, VNM.0));
    // unknown_order before not_owner (gateway), not_owner before order_not_live.
    assert_eq!(
        run(&mut ex, amend(1, 7, FPT.0, 1, 1)),
        vec![rej(1, RejectReason::UnknownOrder)]
    );
    assert_eq!(
        run(&mut ex, amend(1, 7, VNM.0, 1, 1)),
        vec![rej(1, RejectReason::NotOwner)]
    );
    // order_not_live before the rules.
    assert_eq!(
        run(&mut ex, amend(1, 0, VNM.0, 1, 1)),
        vec![rej(1, RejectReason::OrderNotLive), totals(0, 0)]
    );
    // The rules before the phase; zero_quantity first among the rules.
    run(&mut ex, lo(2, 0, Side::Buy, 10_000, 100));
    run(&mut ex, phase(Phase::Break));
    assert_eq!(
        run(&mut ex, amend(2, 0, VNM.0, 10_010, 0)),
        vec![rej(2, RejectReason::ZeroQuantity), totals(100, 0)]
    );
    assert_eq!(
        run(&mut ex, amend(2, 0, VNM.0, 10_010, 100)),
        vec![rej(2, RejectReason::OffTick), totals(100, 0)]
    );
    assert_eq!(
        run(&mut ex, amend(2, 0, VNM.0, 10_050, 100)),
        vec![rej(2, RejectReason::MarketClosed), totals(100, 0)]
    );
    // CANCEL: liveness before the phase too.
    run(&mut ex, phase(Phase::Atc));
    assert_eq!(
        run(&mut ex, cancel(1, 0, VNM.0)),
        vec![rej(1, RejectReason::OrderNotLive), totals(100, 0)]
    );
    assert_eq!(
        run(&mut ex, cancel(2, 0, VNM.0)),
        vec![rej(2, RejectReason::PhaseForbids), totals(100, 0)]
    );
}

#[test]
fn an_amended_order_keeps_its_id_and_owner() {
    let mut ex = hose();
    run(&mut ex, lo(1, 4, Side::Buy, 10_000, 100));
    run(&mut ex, amend(1, 4, VNM.0, 10_050, 200));
    let out = run(&mut ex, lo(2, 6, Side::Sell, 10_050, 200));
    assert_eq!(out[1], fill((1, 4), (2, 6), 10_050, 200, Aggressor::Sell));
    // The id cannot be reused even though the order was re-entered.
    assert_eq!(
        run(&mut ex, lo(1, 4, Side::Buy, 10_000, 100)),
        vec![rej(1, RejectReason::DuplicateOrderId)]
    );
    let cancel_fully_filled = run(&mut ex, cancel(1, 4, VNM.0));
    assert_eq!(cancel_fully_filled[0], rej(1, RejectReason::OrderNotLive));
}
