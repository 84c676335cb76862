//! Continuous engine semantics, one order type or rule at a time (market rules `none`: the
//! gateway's rules are not the engine's business; see tests/day.rs and tests/amend.rs for the
//! trading day).

mod common;

use common::{buy, cancel, new, sell, table};
use matching::{
    BrokerId, CancelReason, Command, Engine, Event, Fill, MarketRules, OrderId, OrderType, Qty,
    RejectReason, SecurityId, Side, MAX_ORDER_QTY,
};

const S: SecurityId = SecurityId(0);

fn engine() -> Engine {
    let mut e = Engine::new(MarketRules::none(), &table(2, 100));
    e.open_book(S);
    e
}

fn run(e: &mut Engine, cmd: Command) -> Vec<Event> {
    let mut out = Vec::new();
    e.process(&cmd, &mut out);
    out
}

fn totals(bid: Qty, ask: Qty) -> Event {
    Event::Totals {
        security: S,
        bid_total: bid,
        ask_total: ask,
    }
}

fn fill(price: i64, qty: Qty, buy: u64, sell: u64, aggressor: Side) -> Event {
    let aggressor = aggressor.into();
    let (buy_broker, sell_broker) = (BrokerId(0), BrokerId(1));
    Event::Fill(Fill {
        security: S,
        price,
        qty,
        buy: OrderId(buy),
        sell: OrderId(sell),
        buy_broker,
        sell_broker,
        aggressor,
    })
}

fn acc(id: u64) -> Event {
    Event::Accepted { id: OrderId(id) }
}

/// An unfilled remainder killed (MP, IOC, FOK).
fn killed(id: u64, qty: Qty) -> Event {
    Event::Cancelled {
        id: OrderId(id),
        qty,
        reason: CancelReason::Unfilled,
    }
}

fn cancelled(id: u64, qty: Qty) -> Event {
    Event::Cancelled {
        id: OrderId(id),
        qty,
        reason: CancelReason::Requested,
    }
}

fn rested(id: u64, side: Side, price: i64, qty: Qty) -> Event {
    Event::Rested {
        id: OrderId(id),
        security: S,
        side,
        price,
        qty,
    }
}

fn rej(id: u64, reason: RejectReason) -> Event {
    Event::Rejected {
        id: OrderId(id),
        reason,
    }
}

#[test]
fn limit_rests_when_nothing_crosses() {
    let mut e = engine();
    assert_eq!(
        run(&mut e, buy(1, 100, 10)),
        vec![acc(1), rested(1, Side::Buy, 100, 10), totals(10, 0)]
    );
    assert_eq!(
        run(&mut e, sell(2, 101, 5)),
        vec![acc(2), rested(2, Side::Sell, 101, 5), totals(10, 5)]
    );
    assert_eq!(e.live_orders(), 2);
    assert_eq!(e.depth(S, 5), (vec![(100, 10)], vec![(101, 5)]));
}

#[test]
fn partial_fill_leaves_remainder_resting_at_resting_price() {
    let mut e = engine();
    run(&mut e, sell(1, 100, 10));
    // Buyer willing to pay 105 trades at the resting 100.
    assert_eq!(
        run(&mut e, buy(2, 105, 4)),
        vec![acc(2), fill(100, 4, 2, 1, Side::Buy), totals(0, 6)]
    );
    // Incoming larger than resting: remainder rests at its own limit.
    assert_eq!(
        run(&mut e, buy(3, 100, 10)),
        vec![
            acc(3),
            fill(100, 6, 3, 1, Side::Buy),
            rested(3, Side::Buy, 100, 4),
            totals(4, 0)
        ]
    );
    assert_eq!(e.depth(S, 5), (vec![(100, 4)], vec![]));
    assert_eq!(e.book(S).unwrap().last_trade(), Some(100));
}

#[test]
fn sweep_several_levels_best_first() {
    let mut e = engine();
    run(&mut e, buy(1, 98, 5));
    run(&mut e, buy(2, 100, 5));
    run(&mut e, buy(3, 99, 5));
    run(&mut e, buy(4, 97, 5));
    assert_eq!(
        run(&mut e, sell(5, 98, 20)),
        vec![
            acc(5),
            fill(100, 5, 2, 5, Side::Sell),
            fill(99, 5, 3, 5, Side::Sell),
            fill(98, 5, 1, 5, Side::Sell),
            rested(5, Side::Sell, 98, 5),
            totals(5, 5)
        ]
    );
    assert_eq!(e.depth(S, 5), (vec![(97, 5)], vec![(98, 5)]));
}

#[test]
fn fifo_within_a_level() {
    let mut e = engine();
    run(&mut e, sell(1, 100, 3));
    run(&mut e, sell(2, 100, 3));
    run(&mut e, sell(3, 100, 3));
    // Cancel the middle one; FIFO of the rest is kept.
    run(&mut e, cancel(2, 1, 0));
    run(&mut e, sell(4, 100, 3));
    assert_eq!(
        run(&mut e, buy(5, 100, 7)),
        vec![
            acc(5),
            fill(100, 3, 5, 1, Side::Buy),
            fill(100, 3, 5, 3, Side::Buy),
            fill(100, 1, 5, 4, Side::Buy),
            totals(0, 2)
        ]
    );
}

#[test]
fn market_order_takes_any_price_and_cancels_remainder() {
    let mut e = engine();
    run(&mut e, sell(1, 100, 5));
    run(&mut e, sell(2, 1_000_000, 5));
    let mp = new(3, 0, 0, Side::Buy, OrderType::Market, 0, 15);
    assert_eq!(
        run(&mut e, mp),
        vec![
            acc(3),
            fill(100, 5, 3, 1, Side::Buy),
            fill(1_000_000, 5, 3, 2, Side::Buy),
            killed(3, 5),
            totals(0, 0)
        ]
    );
    // Market order into an empty side: all cancelled, nothing rests.
    let mp = new(4, 1, 0, Side::Sell, OrderType::Market, 0, 10);
    assert_eq!(run(&mut e, mp), vec![acc(4), killed(4, 10), totals(0, 0)]);
    assert_eq!(e.live_orders(), 0);
}

#[test]
fn mtl_fully_filled_sweeps_like_a_market_order() {
    let mut e = engine();
    run(&mut e, sell(1, 100, 5));
    run(&mut e, sell(2, 120, 5));
    let mtl = new(3, 0, 0, Side::Buy, OrderType::Mtl, 0, 10);
    assert_eq!(
        run(&mut e, mtl),
        vec![
            acc(3),
            fill(100, 5, 3, 1, Side::Buy),
            fill(120, 5, 3, 2, Side::Buy),
            totals(0, 0)
        ]
    );
    assert_eq!(e.live_orders(), 0);
}

#[test]
fn mtl_partial_rests_as_limit_at_its_last_fill_price() {
    let mut e = engine();
    run(&mut e, buy(1, 90, 5));
    run(&mut e, buy(2, 95, 5));
    run(&mut e, buy(3, 80, 5));
    // A sell MTL sweeps every level (95, 90, 80) and rests at 80, the last fill.
    let mtl = new(4, 1, 0, Side::Sell, OrderType::Mtl, 0, 20);
    assert_eq!(
        run(&mut e, mtl),
        vec![
            acc(4),
            fill(95, 5, 2, 4, Side::Sell),
            fill(90, 5, 1, 4, Side::Sell),
            fill(80, 5, 3, 4, Side::Sell),
            rested(4, Side::Sell, 80, 5),
            totals(0, 5)
        ]
    );
    assert_eq!(e.depth(S, 5), (vec![], vec![(80, 5)]));
    // The remainder is an ordinary limit order: it trades at 80 and can be cancelled.
    assert_eq!(
        run(&mut e, buy(5, 85, 2)),
        vec![acc(5), fill(80, 2, 5, 4, Side::Buy), totals(0, 3)]
    );
    assert_eq!(
        run(&mut e, cancel(4, 1, 0)),
        vec![cancelled(4, 3), totals(0, 0)]
    );
}

#[test]
fn mtl_with_nothing_to_take_is_cancelled() {
    let mut e = engine();
    run(&mut e, buy(1, 90, 5));
    let mtl = new(2, 0, 0, Side::Buy, OrderType::Mtl, 0, 10);
    assert_eq!(run(&mut e, mtl), vec![acc(2), killed(2, 10), totals(5, 0)]);
    assert_eq!(e.live_orders(), 1);
}

#[test]
fn ioc_fills_what_crosses_and_never_rests() {
    let mut e = engine();
    run(&mut e, sell(1, 100, 5));
    run(&mut e, sell(2, 101, 5));
    let ioc = new(3, 0, 0, Side::Buy, OrderType::Ioc, 100, 8);
    assert_eq!(
        run(&mut e, ioc),
        vec![
            acc(3),
            fill(100, 5, 3, 1, Side::Buy),
            killed(3, 3),
            totals(0, 5)
        ]
    );
    // Fully filled IOC: no Cancelled event.
    let ioc = new(4, 0, 0, Side::Buy, OrderType::Ioc, 101, 5);
    assert_eq!(
        run(&mut e, ioc),
        vec![acc(4), fill(101, 5, 4, 2, Side::Buy), totals(0, 0)]
    );
}

#[test]
fn fok_kills_without_trading_when_short() {
    let mut e = engine();
    run(&mut e, sell(1, 100, 5));
    run(&mut e, sell(2, 101, 5));
    run(&mut e, sell(3, 102, 5));
    // 10 available at <= 101; asks 11.
    let fok = new(4, 0, 0, Side::Buy, OrderType::Fok, 101, 11);
    assert_eq!(run(&mut e, fok), vec![acc(4), killed(4, 11), totals(0, 15)]);
    // Needs several levels and gets them.
    let fok = new(5, 0, 0, Side::Buy, OrderType::Fok, 102, 12);
    assert_eq!(
        run(&mut e, fok),
        vec![
            acc(5),
            fill(100, 5, 5, 1, Side::Buy),
            fill(101, 5, 5, 2, Side::Buy),
            fill(102, 2, 5, 3, Side::Buy),
            totals(0, 3)
        ]
    );
    // FOK sell against bids.
    run(&mut e, buy(6, 99, 4));
    let fok = new(7, 1, 0, Side::Sell, OrderType::Fok, 99, 4);
    assert_eq!(
        run(&mut e, fok),
        vec![acc(7), fill(99, 4, 6, 7, Side::Sell), totals(0, 3)]
    );
}

#[test]
fn cancel_owner_foreign_finished_unknown() {
    let mut e = engine();
    run(&mut e, buy(1, 100, 10));
    assert_eq!(
        run(&mut e, cancel(1, 9, 0)),
        vec![rej(1, RejectReason::NotOwner), totals(10, 0)]
    );
    assert_eq!(
        run(&mut e, cancel(1, 0, 0)),
        vec![cancelled(1, 10), totals(0, 0)]
    );
    assert_eq!(
        run(&mut e, cancel(1, 0, 0)),
        vec![rej(1, RejectReason::OrderNotLive), totals(0, 0)]
    );
    assert_eq!(
        run(&mut e, cancel(77, 0, 0)),
        vec![rej(77, RejectReason::OrderNotLive), totals(0, 0)]
    );
    // Filled order cannot be cancelled.
    run(&mut e, buy(2, 100, 10));
    run(&mut e, sell(3, 100, 10));
    assert_eq!(
        run(&mut e, cancel(2, 0, 0)),
        vec![rej(2, RejectReason::OrderNotLive), totals(0, 0)]
    );
    // Partially filled: cancels the remainder only.
    run(&mut e, buy(4, 100, 10));
    run(&mut e, sell(5, 100, 4));
    assert_eq!(
        run(&mut e, cancel(4, 0, 0)),
        vec![cancelled(4, 6), totals(0, 0)]
    );
    assert_eq!(e.live_orders(), 0);
}

#[test]
fn cancel_in_another_book_is_not_live_there() {
    let mut e = engine();
    e.open_book(SecurityId(1));
    run(&mut e, buy(1, 100, 10));
    let mut out = Vec::new();
    e.process(&cancel(1, 0, 1), &mut out);
    assert_eq!(
        out,
        vec![
            rej(1, RejectReason::OrderNotLive),
            Event::Totals {
                security: SecurityId(1),
                bid_total: 0,
                ask_total: 0
            }
        ]
    );
    assert_eq!(e.totals(S), (10, 0));
}

#[test]
fn duplicate_resting_id_and_unknown_security() {
    let mut e = engine();
    run(&mut e, buy(1, 100, 10));
    assert_eq!(
        run(&mut e, sell(1, 100, 10)),
        vec![rej(1, RejectReason::DuplicateOrderId), totals(10, 0)]
    );
    let other = new(2, 0, 5, Side::Buy, OrderType::Limit, 100, 10);
    assert_eq!(
        run(&mut e, other),
        vec![rej(2, RejectReason::UnknownSecurity)]
    );
    assert_eq!(
        run(&mut e, cancel(1, 0, 5)),
        vec![rej(1, RejectReason::UnknownSecurity)]
    );
    let unknown = new(
        3,
        0,
        SecurityId::UNKNOWN.0,
        Side::Buy,
        OrderType::Limit,
        100,
        10,
    );
    assert_eq!(
        run(&mut e, unknown),
        vec![rej(3, RejectReason::UnknownSecurity)]
    );
}

#[test]
fn process_appends_and_books_open_close() {
    let mut e = Engine::new(MarketRules::none(), &table(2, 100));
    assert!(!e.has_book(S));
    e.open_book(S);
    e.open_book(SecurityId::UNKNOWN);
    assert!(!e.has_book(SecurityId::UNKNOWN));
    // Only listed securities get a book.
    e.open_book(SecurityId(2));
    assert!(!e.has_book(SecurityId(2)));
    let other = SecurityId(1);
    e.open_book(other);
    let mut out = vec![acc(99)];
    e.process(&buy(1, 100, 10), &mut out);
    e.process(
        &new(2, 0, other.0, Side::Sell, OrderType::Limit, 5, 3),
        &mut out,
    );
    assert_eq!(out.len(), 7);
    assert_eq!(out[0], acc(99));
    e.open_book(S); // idempotent: keeps the order
    assert_eq!(e.totals(S), (10, 0));
    assert_eq!(e.totals(other), (0, 3));
    assert_eq!(e.live_orders(), 2);
    e.close_book(S);
    assert!(!e.has_book(S));
    assert_eq!(e.totals(S), (0, 0));
    assert_eq!(e.live_orders(), 1);
    // The id of a dropped order is free again; the reopened book is empty.
    e.open_book(S);
    assert_eq!(
        run(&mut e, buy(1, 100, 10)),
        vec![acc(1), rested(1, Side::Buy, 100, 10), totals(10, 0)]
    );
    e.close_book(other);
    assert_eq!(e.live_orders(), 1);
}

#[test]
fn slots_are_reused_and_depth_aggregates() {
    let mut e = engine();
    for round in 0..100u64 {
        for i in 0..10u64 {
            run(&mut e, buy(round * 100 + i, 100 + (i % 3) as i64, 1));
        }
        let d = e.depth(S, 2);
        assert_eq!(d.0, vec![(102, 3), (101, 3)]);
        run(
            &mut e,
            new(round * 100 + 50, 1, 0, Side::Sell, OrderType::Market, 0, 10),
        );
        assert_eq!(e.live_orders(), 0);
    }
}

#[test]
fn quantities_beyond_the_limit_are_rejected_and_totals_never_wrap() {
    let mut e = engine();
    // The engine re-checks a NEW's quantity bounds (the gateway's rules come first), so no
    // total can ever wrap: nothing changes on a reject.
    for (id, qty, reason) in [
        (1, MAX_ORDER_QTY + 1, RejectReason::QuantityTooLarge),
        (2, u64::MAX, RejectReason::QuantityTooLarge),
        (3, 0, RejectReason::ZeroQuantity),
    ] {
        assert_eq!(
            run(&mut e, sell(id, 100, qty)),
            vec![rej(id, reason), totals(0, 0)]
        );
    }
    let fok = new(4, 0, 0, Side::Buy, OrderType::Fok, 101, u64::MAX);
    assert_eq!(
        run(&mut e, fok),
        vec![rej(4, RejectReason::QuantityTooLarge), totals(0, 0)]
    );
    // Many maximal orders add up exactly, far beyond u32 and without wrapping.
    for id in 10..1_010u64 {
        run(&mut e, sell(id, 100 + (id % 7) as i64, MAX_ORDER_QTY));
    }
    assert_eq!(e.totals(S), (0, 1_000 * MAX_ORDER_QTY));
    let sweep = new(2_000, 0, 0, Side::Buy, OrderType::Market, 0, MAX_ORDER_QTY);
    let out = run(&mut e, sweep);
    assert_eq!(out.last(), Some(&totals(0, 999 * MAX_ORDER_QTY)));
    // Extreme prices keep their order (asks use `!price`, never a negation).
    run(&mut e, sell(3_000, i64::MAX, 1));
    run(&mut e, sell(3_001, i64::MIN + 1, 1));
    run(&mut e, sell(3_002, i64::MIN, 1));
    let asks = e.depth(S, usize::MAX).1;
    assert_eq!(asks[0], (i64::MIN, 1));
    assert_eq!(asks[1], (i64::MIN + 1, 1));
    assert_eq!(asks.last(), Some(&(i64::MAX, 1)));
}
