//! Gateway checks and the Exchange that combines gateway and engine.

mod common;

use common::{amend, cancel, new};
use matching::{
    BrokerId, CancelReason, Command, Event, Exchange, Gateway, MarketRules, OrderId, OrderType,
    Phase, RejectReason, SecurityId, SecurityTable, Side,
};

fn table() -> SecurityTable {
    let mut t = SecurityTable::new();
    t.add("VNM", 10_000).unwrap();
    t.add("FPT", 50_000).unwrap();
    t
}

fn gw() -> Gateway {
    Gateway::new(MarketRules::hose(), table())
}

#[test]
fn new_checks_in_order() {
    let mut g = gw();
    let lo = OrderType::Limit;
    // Unknown security first, even before rules.
    assert_eq!(
        g.check(&new(1, 0, 7, Side::Buy, lo, 1, 1)),
        Err(RejectReason::UnknownSecurity)
    );
    assert_eq!(
        g.check(&new(
            2,
            0,
            SecurityId::UNKNOWN.0,
            Side::Buy,
            lo,
            10_000,
            100
        )),
        Err(RejectReason::UnknownSecurity)
    );
    // Rule failure burns the id.
    assert_eq!(
        g.check(&new(3, 0, 0, Side::Buy, lo, 10_010, 100)),
        Err(RejectReason::OffTick)
    );
    assert_eq!(
        g.check(&new(3, 0, 0, Side::Buy, lo, 10_000, 100)),
        Err(RejectReason::DuplicateOrderId)
    );
    // An id used by an unknown-security NEW is burnt too.
    assert_eq!(
        g.check(&new(1, 0, 0, Side::Buy, lo, 10_000, 100)),
        Err(RejectReason::DuplicateOrderId)
    );
    assert_eq!(g.check(&new(4, 2, 1, Side::Sell, lo, 50_000, 200)), Ok(()));
    assert_eq!(
        g.check(&new(4, 2, 1, Side::Sell, lo, 50_000, 200)),
        Err(RejectReason::DuplicateOrderId)
    );
    // A duplicate with an unknown security reports the security.
    assert_eq!(
        g.check(&new(4, 2, 9, Side::Sell, lo, 50_000, 200)),
        Err(RejectReason::UnknownSecurity)
    );
    assert_eq!(g.owner(OrderId(4)), Some((BrokerId(2), SecurityId(1))));
    assert_eq!(g.owner(OrderId(3)), None);
    assert_eq!(g.rules().name(), "hose");
    assert_eq!(g.securities().len(), 2);
}

#[test]
fn cancel_checks() {
    let mut g = gw();
    g.check(&new(1, 5, 0, Side::Buy, OrderType::Limit, 10_000, 100))
        .unwrap();
    let _ = g.check(&new(2, 5, 0, Side::Buy, OrderType::Limit, 10_001, 100));
    assert_eq!(g.check(&cancel(99, 5, 0)), Err(RejectReason::UnknownOrder));
    assert_eq!(
        g.check(&cancel(2, 5, 0)),
        Err(RejectReason::UnknownOrder),
        "rejected NEW"
    );
    assert_eq!(
        g.check(&cancel(1, 5, 1)),
        Err(RejectReason::UnknownOrder),
        "wrong security"
    );
    assert_eq!(g.check(&cancel(1, 6, 0)), Err(RejectReason::NotOwner));
    assert_eq!(g.check(&cancel(1, 5, 0)), Ok(()));
    // The gateway does not track liveness: a second cancel passes and the engine decides.
    assert_eq!(g.check(&cancel(1, 5, 0)), Ok(()));
}

#[test]
fn restore_records_without_checking() {
    let mut g = gw();
    // Off tick, but restored from the journal as accepted.
    g.restore(&new(8, 3, 1, Side::Sell, OrderType::Limit, 50_001, 100));
    g.restore(&cancel(8, 3, 1));
    assert_eq!(g.owner(OrderId(8)), Some((BrokerId(3), SecurityId(1))));
    assert_eq!(g.check(&cancel(8, 3, 1)), Ok(()));
    assert_eq!(
        g.check(&new(8, 3, 1, Side::Sell, OrderType::Limit, 50_000, 100)),
        Err(RejectReason::DuplicateOrderId)
    );
}

#[test]
fn exchange_rejects_before_engine_and_matches_after() {
    let mut ex = Exchange::new(MarketRules::hose(), table());
    assert!(ex.engine().has_book(SecurityId(0)) && ex.engine().has_book(SecurityId(1)));
    let mut out = Vec::new();
    ex.process(
        &new(1, 0, 0, Side::Buy, OrderType::Limit, 10_000, 150),
        &mut out,
    );
    assert_eq!(
        out,
        vec![Event::Rejected {
            id: OrderId(1),
            reason: RejectReason::OddLot
        }]
    );
    out.clear();
    ex.process(
        &new(2, 0, 0, Side::Buy, OrderType::Limit, 10_000, 100),
        &mut out,
    );
    ex.process(
        &new(3, 1, 0, Side::Sell, OrderType::Market, 0, 300),
        &mut out,
    );
    // Accepted, Rested, Totals; Accepted, Fill, Cancelled, Totals.
    assert_eq!(out.len(), 3 + 4);
    assert!(matches!(out[4], Event::Fill(f) if f.price == 10_000 && f.qty == 100));
    assert_eq!(
        out[5],
        Event::Cancelled {
            id: OrderId(3),
            qty: 200,
            reason: CancelReason::Unfilled,
        }
    );
    out.clear();
    // Cancel of a filled order passes the gateway; the engine says it is not live.
    ex.process(&cancel(2, 0, 0), &mut out);
    assert_eq!(
        out,
        vec![
            Event::Rejected {
                id: OrderId(2),
                reason: RejectReason::OrderNotLive
            },
            Event::Totals {
                security: SecurityId(0),
                bid_total: 0,
                ask_total: 0
            }
        ]
    );
    assert_eq!(
        ex.gateway().owner(OrderId(2)),
        Some((BrokerId(0), SecurityId(0)))
    );
}

#[test]
fn max_order_id_tracks_every_used_id_including_rejected_and_restored() {
    let mut g = gw();
    let lo = OrderType::Limit;
    assert_eq!(g.max_order_id(), 0);
    g.check(&new(7, 0, 0, Side::Buy, lo, 10_000, 100)).unwrap();
    assert_eq!(g.max_order_id(), 7);
    // A rejected NEW burns its id, so it counts.
    let _ = g.check(&new(40, 0, 0, Side::Buy, lo, 10_010, 100));
    assert_eq!(g.max_order_id(), 40);
    // Smaller ids and cancels do not lower or raise it.
    g.check(&new(3, 0, 0, Side::Buy, lo, 10_000, 100)).unwrap();
    let _ = g.check(&cancel(900, 0, 0));
    assert_eq!(g.max_order_id(), 40);
    g.restore(&new(1_000, 0, 1, Side::Sell, lo, 50_000, 100));
    assert_eq!(g.max_order_id(), 1_000);
}

#[test]
fn phase_table_for_new_at_the_gateway_and_the_id_is_burnt() {
    let mut g = gw();
    assert_eq!(g.phase(), Phase::Continuous);
    assert_eq!(g.check(&Command::Phase(Phase::Atc)), Ok(()));
    assert_eq!(g.phase(), Phase::Atc);
    let kinds = OrderType::ALL;
    let mut id = 0;
    for (kind, want) in kinds.into_iter().zip([
        Ok(()),
        Err(RejectReason::PhaseForbids),
        Err(RejectReason::PhaseForbids),
        Err(RejectReason::PhaseForbids),
        Err(RejectReason::PhaseForbids),
        Err(RejectReason::PhaseForbids),
        Ok(()),
    ]) {
        id += 1;
        let price = if kind.is_priceless() { 0 } else { 10_000 };
        assert_eq!(
            g.check(&new(id, 0, 0, Side::Buy, kind, price, 100)),
            want,
            "{kind:?}"
        );
        assert_eq!(
            g.check(&new(id, 0, 0, Side::Buy, kind, price, 100)),
            Err(RejectReason::DuplicateOrderId)
        );
    }
    // The phase does not concern CANCEL and AMEND at the gateway (the engine checks it
    // after liveness).
    assert_eq!(g.check(&cancel(1, 0, 0)), Ok(()));
    assert_eq!(g.check(&amend(1, 0, 0, 10_000, 100)), Ok(()));
    assert_eq!(
        g.check(&amend(1, 3, 0, 10_000, 100)),
        Err(RejectReason::NotOwner)
    );
    assert_eq!(
        g.check(&amend(2, 0, 0, 10_000, 100)),
        Err(RejectReason::UnknownOrder)
    );
    g.check(&Command::Phase(Phase::Closed)).unwrap();
    assert_eq!(
        g.check(&new(20, 0, 0, Side::Buy, OrderType::Limit, 10_000, 100)),
        Err(RejectReason::MarketClosed)
    );
}

#[test]
fn set_reference_moves_the_band() {
    let mut g = gw();
    let lo = OrderType::Limit;
    assert_eq!(g.reference(SecurityId(0)), Some(10_000));
    assert_eq!(
        g.check(&new(1, 0, 0, Side::Buy, lo, 11_000, 100)),
        Err(RejectReason::OutsideBand)
    );
    g.set_reference(SecurityId(0), 10_700);
    assert_eq!(g.reference(SecurityId(0)), Some(10_700));
    assert_eq!(g.check(&new(2, 0, 0, Side::Buy, lo, 11_000, 100)), Ok(()));
    assert_eq!(
        g.check(&new(3, 0, 0, Side::Buy, lo, 9_950, 100)),
        Err(RejectReason::OutsideBand)
    );
    // The other security and the listing itself are untouched; unlisted ids are ignored.
    assert_eq!(g.reference(SecurityId(1)), Some(50_000));
    assert_eq!(g.securities().reference(SecurityId(0)), Some(10_000));
    g.set_reference(SecurityId(9), 1);
    g.set_reference(SecurityId::UNKNOWN, 1);
    assert_eq!(g.reference(SecurityId(9)), None);
}

#[test]
fn restore_of_phases_and_rejected_new_orders() {
    let mut g = gw();
    let lo = OrderType::Limit;
    g.restore(&Command::Phase(Phase::Ato));
    assert_eq!(g.phase(), Phase::Ato);
    assert_eq!(
        g.check(&new(1, 0, 0, Side::Buy, OrderType::Market, 0, 100)),
        Err(RejectReason::PhaseForbids)
    );
    // A rejected NEW restored from the journal keeps its id burnt, and unknown to CANCEL.
    let rejected = matching::NewOrder {
        id: OrderId(50),
        broker: BrokerId(2),
        security: SecurityId(0),
        side: Side::Buy,
        kind: lo,
        price: 10_010,
        qty: 100,
    };
    g.restore_rejected(&rejected);
    assert_eq!(g.max_order_id(), 50);
    assert_eq!(
        g.check(&new(50, 2, 0, Side::Buy, lo, 10_000, 100)),
        Err(RejectReason::DuplicateOrderId)
    );
    assert_eq!(g.check(&cancel(50, 2, 0)), Err(RejectReason::UnknownOrder));
    assert_eq!(g.owner(OrderId(50)), None);
    // A rejected duplicate of an accepted order does not take the accepted one's id away.
    g.restore(&new(60, 3, 1, Side::Sell, lo, 50_000, 100));
    g.restore_rejected(&matching::NewOrder {
        id: OrderId(60),
        broker: BrokerId(4),
        ..rejected
    });
    assert_eq!(g.owner(OrderId(60)), Some((BrokerId(3), SecurityId(1))));
    assert_eq!(g.check(&cancel(60, 3, 1)), Ok(()));
}
