//! Book snapshots: an engine that imports exported books behaves exactly like the engine that
//! processed the history; bad images are refused and change nothing.

mod common;

use common::gen::{build, table, RawOp};
use common::{buy, new, phase, sell};
use matching::stream::{to_command, BrokerRegistry};
use matching::{
    BookImage, BrokerId, Command, Engine, Event, Gateway, ImportError, MarketRules, OrderId,
    OrderType, Phase, RestingKind, RestingOrder, SecurityId, Side, MAX_ORDER_QTY,
};
use proptest::prelude::*;

const S: SecurityId = SecurityId(0);

fn engine() -> Engine {
    let t = common::table(2, 100);
    let mut e = Engine::new(MarketRules::none(), &t);
    e.open_book(S);
    e.open_book(SecurityId(1));
    e
}

fn feed(e: &mut Engine, cmds: &[Command]) -> Vec<Event> {
    let mut out = Vec::new();
    for c in cmds {
        e.process(c, &mut out);
    }
    out
}

fn order(id: u64, kind: RestingKind, price: i64, qty: u64) -> RestingOrder {
    RestingOrder {
        id: OrderId(id),
        broker: BrokerId(0),
        qty,
        kind,
        price,
    }
}

fn image(phase: Phase, bids: Vec<RestingOrder>, asks: Vec<RestingOrder>) -> BookImage {
    BookImage {
        security: S,
        phase,
        reference: 100,
        last_trade: None,
        bids,
        asks,
    }
}

#[test]
fn export_lists_orders_in_priority_order_and_import_reproduces_behaviour() {
    let mut a = engine();
    feed(
        &mut a,
        &[
            buy(1, 99, 5),
            buy(2, 101, 5),
            buy(3, 99, 7),
            sell(4, 103, 5),
            sell(5, 102, 5),
            buy(6, 102, 2), // trades 2 with 5: last trade 102
            phase(Phase::Ato),
            new(7, 0, 0, Side::Buy, OrderType::Ato, 0, 4),
            new(8, 1, 0, Side::Sell, OrderType::Ato, 0, 3),
            new(9, 0, 0, Side::Buy, OrderType::Ato, 0, 1),
        ],
    );
    let img = a.export_book(S).unwrap();
    let ids = |v: &[RestingOrder]| v.iter().map(|o| o.id.0).collect::<Vec<_>>();
    assert_eq!(ids(&img.bids), vec![7, 9, 2, 1, 3]);
    assert_eq!(ids(&img.asks), vec![8, 5, 4]);
    assert_eq!(
        (img.phase, img.reference, img.last_trade),
        (Phase::Ato, 100, Some(102))
    );
    assert_eq!(img.asks[1].qty, 3);
    assert_eq!(img.bids[0].kind, RestingKind::Ato);
    let mut b = Engine::new(MarketRules::none(), &common::table(2, 100));
    b.import_book(&img).unwrap();
    assert_eq!(b.export_book(S), Some(img.clone()));
    assert_eq!(b.live_orders(), 8);
    assert_eq!(b.indicative(S), a.indicative(S));
    assert!(!b.has_book(SecurityId(1)));
    // Book 1 is in ATO too (the phase was market-wide): a freshly opened book would not be.
    b.import_book(&a.export_book(SecurityId(1)).unwrap())
        .unwrap();
    let rest = [
        buy(10, 103, 3),
        phase(Phase::Continuous),
        sell(11, 99, 20),
        Command::Amend(matching::AmendOrder {
            id: OrderId(3),
            broker: BrokerId(0),
            security: S,
            price: 104,
            qty: 9,
        }),
        phase(Phase::Closed),
    ];
    assert_eq!(feed(&mut a, &rest), feed(&mut b, &rest));
    assert_eq!(a.export_book(S), b.export_book(S));
}

#[test]
fn import_replaces_an_open_book_and_frees_its_ids() {
    let mut e = engine();
    feed(&mut e, &[buy(1, 99, 5), sell(2, 105, 5)]);
    let img = image(
        Phase::Continuous,
        vec![order(7, RestingKind::Limit, 98, 3)],
        vec![],
    );
    e.import_book(&img).unwrap();
    assert_eq!(e.live_orders(), 1);
    assert_eq!(e.totals(S), (3, 0));
    // Old ids are free again, the new one is taken.
    let out = feed(&mut e, &[buy(1, 99, 5), buy(7, 99, 5)]);
    assert!(matches!(out[0], Event::Accepted { .. }));
    assert!(matches!(
        out[3],
        Event::Rejected {
            reason: matching::RejectReason::DuplicateOrderId,
            ..
        }
    ));
}

#[test]
fn bad_images_are_refused_and_change_nothing() {
    let mut e = engine();
    feed(
        &mut e,
        &[
            buy(1, 99, 5),
            new(2, 0, 1, Side::Sell, OrderType::Limit, 120, 5),
        ],
    );
    let before = (
        e.export_book(S),
        e.export_book(SecurityId(1)),
        e.live_orders(),
    );
    let lim = |id, price, qty| order(id, RestingKind::Limit, price, qty);
    let cases: Vec<(BookImage, ImportError)> = vec![
        (
            BookImage {
                security: SecurityId(9),
                ..image(Phase::Continuous, vec![], vec![])
            },
            ImportError::UnknownSecurity(SecurityId(9)),
        ),
        (
            image(Phase::Continuous, vec![lim(5, 90, 1)], vec![lim(5, 110, 1)]),
            ImportError::DuplicateOrder(OrderId(5)),
        ),
        (
            image(Phase::Continuous, vec![lim(2, 90, 1)], vec![]),
            ImportError::RestsElsewhere {
                id: OrderId(2),
                other: SecurityId(1),
            },
        ),
        (
            image(Phase::Continuous, vec![lim(5, 90, 0)], vec![]),
            ImportError::BadQuantity {
                id: OrderId(5),
                qty: 0,
            },
        ),
        (
            image(
                Phase::Continuous,
                vec![lim(5, 90, MAX_ORDER_QTY + 1)],
                vec![],
            ),
            ImportError::BadQuantity {
                id: OrderId(5),
                qty: MAX_ORDER_QTY + 1,
            },
        ),
        (
            image(
                Phase::Continuous,
                vec![lim(5, 90, 1), lim(6, 91, 1)],
                vec![],
            ),
            ImportError::OutOfOrder(OrderId(6)),
        ),
        (
            image(
                Phase::Continuous,
                vec![],
                vec![lim(5, 110, 1), lim(6, 109, 1)],
            ),
            ImportError::OutOfOrder(OrderId(6)),
        ),
        (
            image(
                Phase::Ato,
                vec![lim(5, 90, 1), order(6, RestingKind::Ato, 0, 1)],
                vec![],
            ),
            ImportError::OutOfOrder(OrderId(6)),
        ),
        (
            image(Phase::Ato, vec![order(5, RestingKind::Atc, 0, 1)], vec![]),
            ImportError::KindOutOfPhase {
                id: OrderId(5),
                kind: RestingKind::Atc,
                phase: Phase::Ato,
            },
        ),
        (
            image(
                Phase::Continuous,
                vec![order(5, RestingKind::Ato, 0, 1)],
                vec![],
            ),
            ImportError::KindOutOfPhase {
                id: OrderId(5),
                kind: RestingKind::Ato,
                phase: Phase::Continuous,
            },
        ),
        (
            image(Phase::Atc, vec![], vec![order(5, RestingKind::Atc, 7, 1)]),
            ImportError::KindOutOfPhase {
                id: OrderId(5),
                kind: RestingKind::Atc,
                phase: Phase::Atc,
            },
        ),
        (
            image(Phase::Closed, vec![lim(5, 90, 1)], vec![]),
            ImportError::RestingWhileClosed,
        ),
        (
            image(Phase::Break, vec![lim(5, 110, 1)], vec![lim(6, 110, 1)]),
            ImportError::Crossed { bid: 110, ask: 110 },
        ),
    ];
    for (img, want) in cases {
        assert_eq!(e.import_book(&img), Err(want.clone()), "{want}");
        assert_eq!(
            (
                e.export_book(S),
                e.export_book(SecurityId(1)),
                e.live_orders()
            ),
            before,
            "{want}"
        );
    }
    // A crossed book is fine in a call phase, and so are its own ids. V = 1 at 100 and at
    // 110: 100 is the anchor (the reference).
    let crossed = image(Phase::Atc, vec![lim(1, 110, 1)], vec![lim(6, 100, 1)]);
    e.import_book(&crossed).unwrap();
    assert_eq!(e.indicative(S), Some((100, 1)));
}

/// Runs `rows` through one gateway and engine A; at each snapshot point, every book of A is
/// exported into a fresh engine B, and from then on A and B must emit identical events.
fn snapshot_run(rules: MarketRules, rows: &[matching::stream::OrderRow], points: &[usize]) {
    let sec = table();
    let mut gateway = Gateway::new(rules, sec.clone());
    let mut a = Engine::new(rules, &sec);
    for (id, _, _) in sec.iter() {
        a.open_book(id);
    }
    let mut b: Option<Engine> = None;
    let mut brokers = BrokerRegistry::new();
    for (i, row) in rows.iter().enumerate() {
        if points.contains(&i) {
            let mut fresh = Engine::new(rules, &sec);
            for (id, _, _) in sec.iter() {
                fresh.import_book(&a.export_book(id).unwrap()).unwrap();
            }
            b = Some(fresh);
        }
        let cmd = to_command(row, &sec, &mut brokers);
        if gateway.check(&cmd).is_err() {
            continue;
        }
        let mut out_a = Vec::new();
        a.process(&cmd, &mut out_a);
        for ev in &out_a {
            if let Event::Reference { security, price } = *ev {
                gateway.set_reference(security, price);
            }
        }
        if let Some(b) = b.as_mut() {
            let mut out_b = Vec::new();
            b.process(&cmd, &mut out_b);
            assert_eq!(out_a, out_b, "command {i}: {row:?}");
        }
    }
    if let Some(b) = b {
        for (id, _, _) in sec.iter() {
            assert_eq!(a.export_book(id), b.export_book(id));
            assert_eq!(a.indicative(id), b.indicative(id));
        }
        assert_eq!(a.live_orders(), b.live_orders());
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
        1..400,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn imported_books_continue_exactly(
        ops in ops(),
        points in prop::collection::vec(0usize..400, 1..4),
        hose in any::<bool>(),
    ) {
        let rules = if hose { MarketRules::hose() } else { MarketRules::none() };
        let rows = build(&rules, &ops, 1);
        snapshot_run(rules, &rows, &points);
    }
}

#[test]
fn imported_books_continue_exactly_over_long_streams() {
    let ops = common::gen::seeded_ops(11, 20_000);
    for rules in [MarketRules::hose(), MarketRules::none()] {
        let rows = build(&rules, &ops, 1);
        let points: Vec<usize> = (1..20).map(|k| k * 997).collect();
        snapshot_run(rules, &rows, &points);
    }
}
