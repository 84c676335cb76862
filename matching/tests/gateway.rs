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

mod split_registry {
    //! The gateway with part of its id registry moved out (forgotten into an archive the
    //! caller answers from) decides exactly like one that keeps every id in memory, and asks
    //! the archive only about ids memory does not hold.

    use super::common::gen::{build, table, RawOp};
    use matching::stream::{to_command, BrokerRegistry};
    use matching::{ArchivedId, Command, Gateway, MarketRules, OrderId};
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn run(ops: &[RawOp], scale: u64, forget_every: u64) {
        let rules = MarketRules::hose();
        let sec = table();
        let rows = build(&rules, ops, scale);
        let mut brokers = BrokerRegistry::new();
        let mut whole = Gateway::new(rules, sec.clone());
        let mut split = Gateway::new(rules, sec.clone());
        let mut archive: HashMap<OrderId, ArchivedId> = HashMap::new();
        let mut used: Vec<OrderId> = Vec::new();
        let mut in_memory: std::collections::HashSet<OrderId> = Default::default();
        for (i, row) in rows.iter().enumerate() {
            let cmd = to_command(row, &sec, &mut brokers);
            let expected = whole.check(&cmd);
            let got = split
                .check_with(&cmd, |id| {
                    assert!(!in_memory.contains(&id), "asked about an id memory holds");
                    Ok::<_, ()>(archive.get(&id).copied())
                })
                .unwrap();
            assert_eq!(got, expected, "row {i}: {row:?}");
            assert_eq!(split.max_order_id(), whole.max_order_id());
            if let Command::New(o) = cmd {
                if split.remembers(o.id) && in_memory.insert(o.id) {
                    used.push(o.id);
                }
            }
            // Move the oldest ids out now and then, as the manager archives finished orders.
            if forget_every > 0 && (i as u64 + 1).is_multiple_of(forget_every) {
                let n = used.len() / 2;
                for id in used.drain(..n) {
                    let (broker, security, accepted) = match whole.owner(id) {
                        Some((b, s)) => (b, s, true),
                        None => {
                            // A rejected NEW: burnt, not cancellable. Its broker and security
                            // do not matter to any later check.
                            (matching::BrokerId(0), matching::SecurityId(0), false)
                        }
                    };
                    assert!(split.forget(id));
                    assert!(!split.forget(id), "forgotten once");
                    in_memory.remove(&id);
                    archive.insert(
                        id,
                        ArchivedId {
                            broker,
                            security,
                            accepted,
                        },
                    );
                }
            }
        }
        assert_eq!(split.ids_in_memory(), in_memory.len());
        assert_eq!(
            split.ids_in_memory() + archive.len(),
            whole.ids_in_memory(),
            "every id is in exactly one place"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn forgetting_ids_changes_no_decision(
            ops in proptest::collection::vec(any::<RawOp>(), 1..600),
            scattered in any::<bool>(),
            forget_every in 1u64..50,
        ) {
            let scale = if scattered { 0x9e37_79b9_7f4a_7c15 } else { 1 };
            run(&ops, scale, forget_every);
        }
    }

    #[test]
    fn memory_holds_only_what_was_not_forgotten() {
        let mut g = Gateway::new(MarketRules::hose(), table());
        let mut asked = 0;
        for id in 1..=10_000u64 {
            let cmd = super::new(
                id,
                1,
                0,
                matching::Side::Buy,
                matching::OrderType::Limit,
                10_000,
                100,
            );
            if id > 1 {
                g.forget(OrderId(id - 1));
            }
            let r = g
                .check_with(&cmd, |x| {
                    asked += 1;
                    Ok::<_, ()>((x.0 < id).then_some(ArchivedId {
                        broker: matching::BrokerId(1),
                        security: matching::SecurityId(0),
                        accepted: true,
                    }))
                })
                .unwrap();
            assert_eq!(r, Ok(()));
        }
        // Memory cannot know a fresh id was never used, so the archive is asked (the manager's
        // archive answers "no" from its highest id before any disk read).
        assert_eq!(asked, 10_000);
        assert_eq!(g.ids_in_memory(), 1);
        // An archived id is still a duplicate, and still cancellable by its owner only.
        let dup = super::new(
            5,
            1,
            0,
            matching::Side::Buy,
            matching::OrderType::Limit,
            10_000,
            100,
        );
        let archived = |x: OrderId| {
            Ok::<_, ()>((x.0 < 10_000).then_some(ArchivedId {
                broker: matching::BrokerId(1),
                security: matching::SecurityId(0),
                accepted: true,
            }))
        };
        assert_eq!(
            g.check_with(&dup, archived).unwrap(),
            Err(matching::RejectReason::DuplicateOrderId)
        );
        assert_eq!(
            g.check_with(&super::cancel(5, 1, 0), archived).unwrap(),
            Ok(())
        );
        assert_eq!(
            g.check_with(&super::cancel(5, 2, 0), archived).unwrap(),
            Err(matching::RejectReason::NotOwner)
        );
        assert_eq!(
            g.check_with(&super::cancel(5, 1, 1), archived).unwrap(),
            Err(matching::RejectReason::UnknownOrder)
        );
        assert_eq!(g.check_with(&dup, |_| Err("disk")), Err("disk"));
    }
}
