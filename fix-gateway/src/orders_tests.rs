//! Unit tests of the order entry: FIX messages and manager reports in, commands and FIX
//! messages out, no I/O.

use super::*;
use crate::codec::Decoded;
use matching::{OrderId, RejectReason, SecurityId};
use proptest::prelude::*;
use proto::{OwnFill, TradeId};

const NOW: i64 = 1_700_000_000_000;

fn listing() -> Listing {
    Listing::new(&[
        SecurityInfo {
            id: SecurityId(0),
            code: "VNM".into(),
            reference_price: 10_000,
        },
        SecurityInfo {
            id: SecurityId(1),
            code: "FPT".into(),
            reference_price: 50_000,
        },
    ])
}

/// A client message with `fields` (`tag=value` pairs separated by `|`).
fn msg(msg_type: &str, fields: &str) -> AppMessage {
    msg_dup(msg_type, fields, false)
}

fn msg_dup(msg_type: &str, fields: &str, poss_dup: bool) -> AppMessage {
    let mut b = MessageBuilder::new(msg_type.as_bytes());
    b.str_field(49, "BRK1")
        .str_field(56, "GRIDMATCH")
        .u64_field(34, 7)
        .str_field(52, &utc::format(NOW));
    for f in fields.split('|').filter(|f| !f.is_empty()) {
        let (t, v) = f.split_once('=').unwrap();
        b.str_field(t.parse().unwrap(), v);
    }
    match Message::parse(b.finish("FIX.4.4")) {
        Ok(Decoded::Message(message)) => AppMessage { message, poss_dup },
        other => panic!("{other:?}"),
    }
}

/// An outbound message as the client would parse it.
fn parsed(o: &Outbound) -> Message {
    let mut b = MessageBuilder::new(&o.msg_type);
    b.str_field(49, "GRIDMATCH")
        .str_field(56, "BRK1")
        .u64_field(34, 1)
        .str_field(52, &utc::format(NOW));
    b.append(&o.body);
    match Message::parse(b.finish("FIX.4.4")) {
        Ok(Decoded::Message(m)) => m,
        other => panic!("an outbound message does not parse: {other:?}"),
    }
}

fn get(m: &Message, tag: u32) -> &str {
    m.get_str(tag)
        .unwrap_or_else(|| panic!("tag {tag} missing in {m:?}"))
}

struct Harness {
    e: OrderEntry,
}

impl Harness {
    fn new() -> Self {
        let mut e = OrderEntry::in_memory(listing());
        e.set_id_floor(1000);
        Harness { e }
    }

    fn send(&mut self, m: AppMessage) -> (Vec<ClientCommand>, Vec<Message>) {
        let mut out = Vec::new();
        self.e.on_message(NOW, &m, true, &mut out).unwrap();
        let mut cmds = Vec::new();
        let mut replies = Vec::new();
        for a in out {
            match a {
                Action::Submit(c) => cmds.push(c),
                Action::Reply(o) => replies.push(parsed(&o)),
            }
        }
        (cmds, replies)
    }

    fn report(&mut self, r: Report) -> Vec<Message> {
        let mut out = Vec::new();
        self.e.on_report(NOW, &r, &mut out).unwrap();
        out.iter().map(parsed).collect()
    }
}

fn new_order(cl: &str, side: &str, qty: u64, price: &str) -> AppMessage {
    msg(
        "D",
        &format!("11={cl}|55=VNM|54={side}|38={qty}|40=2|44={price}|60=20240101-00:00:00"),
    )
}

fn report(client_ref: u64, order: u64, event: ReportEvent, last: bool, passive: bool) -> Report {
    Report {
        client_ref,
        seq: 55,
        time: 1_700_000_000_123_000_000,
        order: OrderId(order),
        event,
        last,
        passive,
    }
}

fn fill(side: Side, price: i64, qty: u64, liquidity: Liquidity, index: u32) -> ReportEvent {
    ReportEvent::Fill(OwnFill {
        security: SecurityId(0),
        side,
        price,
        qty,
        liquidity,
        trade: TradeId {
            seq: 55,
            security: SecurityId(0),
            index,
        },
    })
}

#[test]
fn a_new_order_is_submitted_above_the_id_floor_and_acknowledged_by_its_first_engine_event() {
    let mut h = Harness::new();
    let (cmds, replies) = h.send(new_order("a1", "1", 500, "10000.00"));
    assert!(replies.is_empty());
    let [c] = &cmds[..] else { panic!("{cmds:?}") };
    let Command::New(o) = c.command else {
        panic!("{c:?}")
    };
    assert_eq!(o.id, OrderId(1001), "above the broker's highest id");
    assert_eq!(
        (o.security, o.side, o.kind, o.price, o.qty),
        (SecurityId(0), Side::Buy, OrderType::Limit, 10_000, 500)
    );
    let r = c.client_ref;
    assert!(
        h.report(report(r, 1001, ReportEvent::Accepted, false, false))
            .is_empty(),
        "sequenced is not yet New"
    );
    let ers = h.report(report(
        r,
        1001,
        fill(Side::Buy, 9_990, 200, Liquidity::Taker, 0),
        false,
        false,
    ));
    assert_eq!(ers.len(), 2, "New, then the Trade: {ers:?}");
    assert_eq!((get(&ers[0], 150), get(&ers[0], 39)), ("0", "0"));
    assert_eq!((get(&ers[0], 151), get(&ers[0], 14)), ("500", "0"));
    let t = &ers[1];
    assert_eq!((get(t, 150), get(t, 39)), ("F", "1"));
    assert_eq!((get(t, 32), get(t, 31)), ("200", "9990"));
    assert_eq!((get(t, 14), get(t, 151), get(t, 6)), ("200", "300", "9990"));
    assert_eq!(
        (get(t, 37), get(t, 11), get(t, 55), get(t, 54)),
        ("1001", "a1", "VNM", "1")
    );
    assert_eq!(
        get(t, 527),
        "55.0.0",
        "the trade's id, the same on both sides"
    );
    assert_eq!(get(t, 851), "2", "aggressor removed liquidity");
    assert_eq!(
        get(t, 60),
        "20231114-22:13:20.123",
        "exchange time of the command"
    );
    assert!(h
        .report(report(
            r,
            1001,
            ReportEvent::Rested {
                price: 10_000,
                qty: 300
            },
            false,
            false
        ))
        .is_empty());
    assert!(h
        .report(report(
            r,
            1001,
            ReportEvent::Totals {
                security: SecurityId(0),
                bid_total: 300,
                ask_total: 0
            },
            true,
            false
        ))
        .is_empty());
    assert_eq!(h.e.in_flight(), 0);
    // Later, a passive fill at the order's own price completes it.
    let ers = h.report(report(
        999,
        1001,
        fill(Side::Buy, 10_000, 300, Liquidity::Maker, 3),
        false,
        true,
    ));
    let [t] = &ers[..] else { panic!("{ers:?}") };
    assert_eq!((get(t, 150), get(t, 39), get(t, 851)), ("F", "2", "1"));
    assert_eq!((get(t, 14), get(t, 151)), ("500", "0"));
    // (200 x 9990 + 300 x 10000) / 500 = 9996
    assert_eq!(get(t, 6), "9996");
    assert_eq!(get(t, 17), "55.0.3.B");
}

#[test]
fn exchange_rejects_carry_ord_rej_reason_and_the_code_in_text() {
    let mut h = Harness::new();
    let (cmds, _) = h.send(new_order("r1", "2", 150, "10000"));
    let r = cmds[0].client_ref;
    let ers = h.report(report(
        r,
        1001,
        ReportEvent::Rejected {
            reason: RejectReason::OddLot,
        },
        true,
        false,
    ));
    let [er] = &ers[..] else { panic!("{ers:?}") };
    assert_eq!((get(er, 150), get(er, 39), get(er, 103)), ("8", "8", "13"));
    assert_eq!(mapping::code_of_text(get(er, 58)), "odd_lot");
    assert_eq!((get(er, 151), get(er, 14)), ("0", "0"));
    // The ClOrdID is used: reusing it is a duplicate; a possible resend gets the state instead.
    let (cmds, ers) = h.send(new_order("r1", "2", 100, "10000"));
    assert!(cmds.is_empty());
    assert_eq!(
        (get(&ers[0], 150), get(&ers[0], 103), get(&ers[0], 37)),
        ("8", "6", "NONE")
    );
    assert!(get(&ers[0], 58).starts_with("duplicate_order_id"));
    let (cmds, ers) = h.send(msg_dup("D", "11=r1|55=VNM|54=2|38=150|40=2|44=10000", true));
    assert!(cmds.is_empty());
    assert_eq!(
        (get(&ers[0], 150), get(&ers[0], 39), get(&ers[0], 37)),
        ("I", "8", "1001")
    );
}

#[test]
fn cancels_are_matched_by_orig_cl_ord_id_and_answered_with_the_cancels_cl_ord_id() {
    let mut h = Harness::new();
    let (cmds, _) = h.send(new_order("o1", "1", 100, "10000"));
    let r = cmds[0].client_ref;
    h.report(report(
        r,
        1001,
        ReportEvent::Rested {
            price: 10_000,
            qty: 100,
        },
        true,
        false,
    ));
    let (_, ers) = h.send(msg("F", "11=c1|41=nope|55=VNM|54=1"));
    assert_eq!(ers[0].msg_type(), b"9");
    assert_eq!(
        (get(&ers[0], 102), get(&ers[0], 434), get(&ers[0], 37)),
        ("1", "1", "NONE")
    );
    assert!(get(&ers[0], 58).starts_with("unknown_order"));
    let (cmds, ers) = h.send(msg("F", "11=c2|41=o1|55=VNM|54=1"));
    assert!(ers.is_empty());
    let Command::Cancel(c) = cmds[0].command else {
        panic!()
    };
    assert_eq!((c.id, c.security), (OrderId(1001), SecurityId(0)));
    let ers = h.report(report(
        cmds[0].client_ref,
        1001,
        ReportEvent::Cancelled {
            qty: 100,
            reason: CancelReason::Requested,
        },
        false,
        false,
    ));
    assert_eq!((get(&ers[0], 150), get(&ers[0], 39)), ("4", "4"));
    assert_eq!((get(&ers[0], 11), get(&ers[0], 41)), ("c2", "o1"));
    // A second cancel, by the order's newest ClOrdID, goes to the exchange, which says no.
    let (cmds, _) = h.send(msg("F", "11=c3|41=c2|55=VNM|54=1"));
    let ers = h.report(report(
        cmds[0].client_ref,
        1001,
        ReportEvent::Rejected {
            reason: RejectReason::OrderNotLive,
        },
        true,
        false,
    ));
    assert_eq!(ers[0].msg_type(), b"9");
    assert_eq!(
        (get(&ers[0], 102), get(&ers[0], 39), get(&ers[0], 11)),
        ("0", "4", "c3")
    );
    assert_eq!(mapping::code_of_text(get(&ers[0], 58)), "order_not_live");
    // The cancel's ClOrdID was used too.
    let (cmds, ers) = h.send(msg("F", "11=c2|41=o1|55=VNM|54=1"));
    assert!(cmds.is_empty());
    assert_eq!(get(&ers[0], 102), "6");
}

#[test]
fn a_replace_sends_the_new_open_quantity_and_reports_the_total() {
    let mut h = Harness::new();
    let (cmds, _) = h.send(new_order("o1", "2", 1000, "10000"));
    let r = cmds[0].client_ref;
    h.report(report(
        r,
        1001,
        fill(Side::Sell, 10_000, 300, Liquidity::Taker, 0),
        false,
        false,
    ));
    h.report(report(
        r,
        1001,
        ReportEvent::Rested {
            price: 10_000,
            qty: 700,
        },
        true,
        false,
    ));
    // OrderQty 800 with 300 done: 500 open.
    let (cmds, _) = h.send(msg("G", "11=g1|41=o1|55=VNM|54=2|38=800|40=2|44=10050"));
    let Command::Amend(a) = cmds[0].command else {
        panic!("{cmds:?}")
    };
    assert_eq!((a.id, a.price, a.qty), (OrderId(1001), 10_050, 500));
    let ers = h.report(report(
        cmds[0].client_ref,
        1001,
        ReportEvent::Amended {
            price: 10_050,
            qty: 500,
            priority_kept: false,
        },
        false,
        false,
    ));
    let er = &ers[0];
    assert_eq!(
        (get(er, 150), get(er, 39), get(er, 11), get(er, 41)),
        ("5", "1", "g1", "o1")
    );
    assert_eq!(
        (get(er, 38), get(er, 151), get(er, 14), get(er, 44)),
        ("800", "500", "300", "10050")
    );
    assert!(get(er, 58).contains("priority lost"));
    // A replace asking for no more than what is done: open 0, the exchange's zero_quantity.
    let (cmds, _) = h.send(msg("G", "11=g2|41=g1|55=VNM|54=2|38=200|40=2|44=10050"));
    let Command::Amend(a) = cmds[0].command else {
        panic!()
    };
    assert_eq!(a.qty, 0);
    let ers = h.report(report(
        cmds[0].client_ref,
        1001,
        ReportEvent::Rejected {
            reason: RejectReason::ZeroQuantity,
        },
        true,
        false,
    ));
    assert_eq!(
        (get(&ers[0], 434), get(&ers[0], 102), get(&ers[0], 39)),
        ("2", "99", "1")
    );
    // Side cannot change; OrdType must be Limit.
    let (cmds, ers) = h.send(msg("G", "11=g3|41=g1|55=VNM|54=1|38=800|40=2|44=10050"));
    assert!(cmds.is_empty() && ers[0].msg_type() == b"9");
    let (cmds, ers) = h.send(msg("G", "11=g4|41=g1|55=VNM|54=2|38=800|40=1"));
    assert!(cmds.is_empty() && ers[0].msg_type() == b"9");
}

#[test]
fn ioc_remainders_expiry_and_auction_fills_are_reported() {
    let mut h = Harness::new();
    let (cmds, _) = h.send(msg("D", "11=i1|55=FPT|54=1|38=500|40=2|44=50000|59=3"));
    let Command::New(o) = cmds[0].command else {
        panic!()
    };
    assert_eq!((o.kind, o.security), (OrderType::Ioc, SecurityId(1)));
    let r = cmds[0].client_ref;
    let ers = h.report(report(
        r,
        1001,
        ReportEvent::Cancelled {
            qty: 500,
            reason: CancelReason::Unfilled,
        },
        false,
        false,
    ));
    assert_eq!(ers.len(), 2);
    assert_eq!(
        (get(&ers[0], 150), get(&ers[1], 150), get(&ers[1], 39)),
        ("0", "4", "4")
    );
    assert_eq!(get(&ers[1], 59), "3");
    // An ATC order rests, trades in the auction and its rest expires... no: ATC remainder is
    // cancelled unfilled; a limit order expires at the close.
    let (cmds, _) = h.send(msg("D", "11=atc|55=VNM|54=2|38=300|40=1|59=7"));
    let Command::New(o) = cmds[0].command else {
        panic!()
    };
    assert_eq!((o.kind, o.price), (OrderType::Atc, 0));
    h.report(report(
        cmds[0].client_ref,
        1002,
        ReportEvent::Rested { price: 0, qty: 300 },
        true,
        false,
    ));
    let ers = h.report(report(
        0,
        1002,
        fill(Side::Sell, 10_050, 100, Liquidity::Auction, 0),
        false,
        true,
    ));
    assert_eq!(
        (get(&ers[0], 150), get(&ers[0], 39), get(&ers[0], 31)),
        ("F", "1", "10050")
    );
    assert!(
        ers[0].get(851).is_none(),
        "no LastLiquidityInd for an auction trade"
    );
    let (cmds, _) = h.send(new_order("lo", "1", 100, "10000"));
    h.report(report(
        cmds[0].client_ref,
        1003,
        ReportEvent::Rested {
            price: 10_000,
            qty: 100,
        },
        true,
        false,
    ));
    let ers = h.report(report(
        0,
        1003,
        ReportEvent::Cancelled {
            qty: 100,
            reason: CancelReason::Expired,
        },
        false,
        true,
    ));
    assert_eq!(
        (get(&ers[0], 150), get(&ers[0], 39), get(&ers[0], 151)),
        ("C", "C", "0")
    );
}

#[test]
fn bad_requests_are_refused_without_reaching_the_exchange() {
    let mut h = Harness::new();
    for (fields, reason) in [
        ("11=x1|55=VNM|54=1|38=100|40=2|44=10000|59=1", "11"), // GTC
        ("11=x2|55=VNM|54=5|38=100|40=2|44=10000", "11"),      // sell short
        ("11=x3|55=VNM|54=1|38=100|40=2", "99"),               // limit without price
        ("11=x4|55=VNM|54=1|38=100|40=2|44=10000.5", "99"),    // fractional price
        ("11=x5|55=VNM|54=1|38=1.5|40=2|44=10000", "13"),      // fractional quantity
        ("11=x6|55=VNM|54=1|38=100|40=3|44=10000", "11"),      // stop
    ] {
        let (cmds, ers) = h.send(msg("D", fields));
        assert!(cmds.is_empty(), "{fields}");
        assert_eq!(
            (get(&ers[0], 150), get(&ers[0], 103)),
            ("8", reason),
            "{fields}"
        );
    }
    // Missing required fields: a business reject naming the tag.
    let (cmds, ers) = h.send(msg("D", "11=y1|54=1|38=100|40=2|44=10000"));
    assert!(cmds.is_empty());
    assert_eq!(ers[0].msg_type(), b"j");
    assert!(get(&ers[0], 58).contains("55"));
    let (_, ers) = h.send(msg("D", "55=VNM|54=1|38=100|40=2|44=10000"));
    assert_eq!((ers[0].msg_type(), get(&ers[0], 380)), (&b"j"[..], "5"));
    let (_, ers) = h.send(msg("R", "131=q"));
    assert_eq!((ers[0].msg_type(), get(&ers[0], 380)), (&b"j"[..], "3"));
    // A market order with a price is the exchange's to reject (as a native order would be).
    let (cmds, _) = h.send(msg("D", "11=m1|55=VNM|54=1|38=100|40=1|44=10000"));
    let Command::New(o) = cmds[0].command else {
        panic!()
    };
    assert_eq!((o.kind, o.price), (OrderType::Market, 10_000));
    // Unlisted symbols too (unknown_security), so the id is burned exactly as natively.
    let (cmds, _) = h.send(msg("D", "11=z1|55=ZZZZ|54=1|38=100|40=2|44=10000"));
    let Command::New(o) = cmds[0].command else {
        panic!()
    };
    assert_eq!(o.security, SecurityId::UNKNOWN);
    // No link: refused at once.
    let mut out = Vec::new();
    h.e.on_message(NOW, &new_order("n1", "1", 100, "10000"), false, &mut out)
        .unwrap();
    assert!(matches!(&out[..], [Action::Reply(_)]));
}

#[test]
fn the_order_log_brings_back_ids_cl_ord_ids_and_states_after_a_restart() {
    let mut h = Harness::new();
    let (cmds, _) = h.send(new_order("p1", "1", 400, "10000"));
    h.report(report(
        cmds[0].client_ref,
        1001,
        fill(Side::Buy, 9_990, 100, Liquidity::Taker, 0),
        false,
        false,
    ));
    h.report(report(
        cmds[0].client_ref,
        1001,
        ReportEvent::Rested {
            price: 10_000,
            qty: 300,
        },
        true,
        false,
    ));
    let (cmds, _) = h.send(msg("G", "11=p2|41=p1|55=VNM|54=1|38=400|40=2|44=10050"));
    h.report(report(
        cmds[0].client_ref,
        1001,
        ReportEvent::Amended {
            price: 10_050,
            qty: 300,
            priority_kept: false,
        },
        true,
        false,
    ));
    let mut h2 = Harness { e: h.e.restarted() };
    assert_eq!(h2.e.order(1001), h.e.order(1001));
    let (_, ers) = h2.send(new_order("p1", "1", 100, "10000"));
    assert_eq!(
        get(&ers[0], 103),
        "6",
        "still a duplicate after the restart"
    );
    let (cmds, _) = h2.send(new_order("p3", "1", 100, "10000"));
    let Command::New(o) = cmds[0].command else {
        panic!()
    };
    assert_eq!(o.id, OrderId(1002), "ids keep increasing");
    assert!(cmds[0].client_ref > 2, "client references too");
    let ers = h2.report(report(
        0,
        1001,
        fill(Side::Buy, 10_050, 300, Liquidity::Maker, 1),
        false,
        true,
    ));
    assert_eq!(
        (get(&ers[0], 11), get(&ers[0], 39), get(&ers[0], 14)),
        ("p2", "2", "400")
    );
    // (100 x 9990 + 300 x 10050) / 400
    assert_eq!(get(&ers[0], 6), "10035");
}

#[test]
fn after_a_lost_connection_the_manager_state_settles_what_the_client_missed() {
    use proto::{OrderState, OrderStatus};
    let status = |id: u64, price: i64, qty: u64, filled: u64, state: OrderState| OrderStatus {
        id: OrderId(id),
        security: SecurityId(0),
        side: Side::Buy,
        kind: OrderType::Limit,
        price,
        qty,
        filled,
        state,
        reject: None,
    };
    let mut h = Harness::new();
    let (a, _) = h.send(new_order("a", "1", 500, "10000")); // rested, then filled while away
    h.report(report(
        a[0].client_ref,
        1001,
        ReportEvent::Rested {
            price: 10_000,
            qty: 500,
        },
        true,
        false,
    ));
    let (_, _) = h.send(new_order("b", "1", 100, "10000")); // in flight: rejected meanwhile
    let (_, _) = h.send(new_order("c", "1", 100, "10000")); // in flight: never arrived
    let (d, _) = h.send(new_order("d", "1", 100, "10000")); // rested; a cancel in flight worked
    h.report(report(
        d[0].client_ref,
        1004,
        ReportEvent::Rested {
            price: 10_000,
            qty: 100,
        },
        true,
        false,
    ));
    let (cx, _) = h.send(msg("F", "11=dx|41=d|55=VNM|54=1"));
    assert_eq!(cx.len(), 1);
    h.e.link_lost();
    let mut ids = h.e.to_reconcile();
    ids.sort();
    assert_eq!(
        ids,
        [OrderId(1001), OrderId(1002), OrderId(1003), OrderId(1004)]
    );
    let mut out = Vec::new();
    h.e.on_status(
        NOW,
        &status(1001, 10_000, 500, 200, OrderState::Resting),
        &mut out,
    )
    .unwrap();
    let mut rej = status(1002, 10_000, 100, 0, OrderState::Rejected);
    rej.reject = Some(RejectReason::OutsideBand);
    h.e.on_status(NOW, &rej, &mut out).unwrap();
    h.e.on_missing(NOW, OrderId(1003), &mut out).unwrap();
    h.e.on_status(
        NOW,
        &status(1004, 10_000, 100, 0, OrderState::Cancelled),
        &mut out,
    )
    .unwrap();
    let ers: Vec<Message> = out.iter().map(parsed).collect();
    let kinds: Vec<(&str, &str, &str)> = ers
        .iter()
        .map(|m| (get(m, 11), get(m, 150), get(m, 39)))
        .collect();
    assert_eq!(
        kinds,
        [
            ("a", "D", "1"),
            ("b", "8", "8"),
            ("c", "8", "8"),
            ("dx", "4", "4")
        ],
        "{ers:?}"
    );
    assert_eq!(
        (get(&ers[0], 14), get(&ers[0], 151), get(&ers[0], 6)),
        ("200", "300", "10000")
    );
    assert_eq!(mapping::code_of_text(get(&ers[1], 58)), "outside_band");
    assert_eq!(get(&ers[3], 41), "d");
    assert!(h.e.to_reconcile().contains(&OrderId(1001)), "still working");
    assert!(!h.e.to_reconcile().contains(&OrderId(1004)));
}

fn arb_field() -> impl Strategy<Value = (u32, String)> {
    let tag = prop_oneof![
        Just(11u32),
        Just(41),
        Just(55),
        Just(54),
        Just(38),
        Just(40),
        Just(44),
        Just(59),
        (1u32..1000).prop_filter("body tags only", |&t| {
            !tags::is_header_or_trailer(t)
                && tags::data_field_for_length(t).is_none()
                && !tags::is_data_field(t)
        }),
    ];
    let value = prop_oneof![
        "[a-c]{1,2}",
        "[0-9]{1,4}",
        Just("VNM".to_string()),
        Just("ZZZZ".to_string()),
        Just("1".to_string()),
        Just("2".to_string()),
        Just("K".to_string()),
        Just("10000".to_string()),
        Just("-5".to_string()),
        Just("99999999999999999999".to_string()),
        Just("1.5".to_string()),
        "[ -~]{1,80}",
    ];
    (
        tag,
        value.prop_filter("no SOH, no '|' or '='", |v| !v.contains(['|', '='])),
    )
}

#[derive(Debug, Clone)]
enum Step {
    Message(&'static str, Vec<(u32, String)>, bool),
    /// A report about the k-th submitted command (or a passive one about the k-th order).
    Report(usize, u8, u64, bool),
    LinkLost,
}

/// Well-formed requests over a small pool of ClOrdIDs (so duplicates, chains and references
/// to earlier orders happen), with types, sides and prices from the whole table.
fn arb_request() -> impl Strategy<Value = Step> {
    let cl = "[a-f]";
    (
        prop_oneof![Just("D"), Just("D"), Just("F"), Just("G")],
        cl,
        cl,
        prop_oneof![Just("1"), Just("2")],
        prop_oneof![
            Just("2|59=0"),
            Just("2|59=3"),
            Just("2|59=4"),
            Just("1"),
            Just("K"),
            Just("1|59=2"),
            Just("1|59=7")
        ],
        prop_oneof![Just(0u64), 1u64..3000, Just(u64::MAX / 4)],
        prop_oneof![Just("10000"), Just("-10"), Just("0"), Just("10050.00")],
        any::<bool>(),
    )
        .prop_map(|(t, cl, orig, side, ord_type, qty, px, dup)| {
            let mut f = vec![(11, cl), (55, "VNM".to_string()), (54, side.to_string())];
            if t != "D" {
                f.push((41, orig));
            }
            let (ty, tif) = ord_type.split_once("|59=").unwrap_or((ord_type, ""));
            f.push((40, if t == "G" { "2".into() } else { ty.to_string() }));
            if !tif.is_empty() && t == "D" {
                f.push((59, tif.to_string()));
            }
            f.push((38, qty.to_string()));
            if ty == "2" || t == "G" {
                f.push((44, px.to_string()));
            }
            Step::Message(t, f, dup)
        })
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => arb_request(),
        4 => (prop_oneof![Just("D"), Just("F"), Just("G"), Just("H"), Just("Z")],
              prop::collection::vec(arb_field(), 0..10), any::<bool>())
            .prop_map(|(t, f, d)| Step::Message(t, f, d)),
        4 => (any::<usize>(), 0u8..8, 0u64..2000, any::<bool>())
            .prop_map(|(k, e, q, last)| Step::Report(k, e, q, last)),
        1 => Just(Step::LinkLost),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Random (mostly invalid) messages and reports in any order: never a panic, every outbound
    /// message parses, new orders get fresh ids in the namespace, and an order never shows
    /// more done than asked for.
    #[test]
    fn random_traffic_keeps_the_books_straight(steps in prop::collection::vec(arb_step(), 1..80)) {
        let mut h = Harness::new();
        let mut submitted: Vec<ClientCommand> = Vec::new();
        let mut new_ids = std::collections::HashSet::new();
        let mut cum: HashMap<u64, u64> = HashMap::new();
        for step in steps {
            match step {
                Step::Message(t, fields, dup) => {
                    let text: Vec<String> = fields.iter().map(|(t, v)| format!("{t}={v}")).collect();
                    let m = msg_dup(t, &text.join("|"), dup);
                    let (cmds, _replies) = h.send(m);
                    for c in &cmds {
                        if let Command::New(o) = c.command {
                            prop_assert!(o.id.0 > 1000 && o.id.0 <= MAX_BROKER_ORDER_ID);
                            prop_assert!(new_ids.insert(o.id), "id {:?} reused", o.id);
                        }
                    }
                    submitted.extend(cmds);
                }
                Step::Report(k, e, q, last) if !submitted.is_empty() => {
                    let c = submitted[k % submitted.len()];
                    let order = c.command.order_id().unwrap().0;
                    let event = match e {
                        0 => ReportEvent::Accepted,
                        1 => ReportEvent::Rejected { reason: RejectReason::ALL[q as usize % 14] },
                        2 => fill(Side::Buy, 10_000, q, Liquidity::Taker, q as u32),
                        3 => ReportEvent::Rested { price: 10_000, qty: q },
                        4 => ReportEvent::Cancelled { qty: q, reason: CancelReason::Expired },
                        5 => ReportEvent::Amended { price: 10_050, qty: q, priority_kept: q % 2 == 0 },
                        6 => fill(Side::Sell, 9_000, q, Liquidity::Maker, q as u32),
                        _ => ReportEvent::Totals { security: SecurityId(0), bid_total: q, ask_total: q },
                    };
                    let passive = e == 6;
                    // Which reports the entry applies: passive ones about its orders, and the
                    // others while their request is open.
                    let open = h.e.requests.contains_key(&c.client_ref);
                    let ers = h.report(report(c.client_ref, order, event, last, passive));
                    if let Some(o) = h.e.order(order) {
                        if matches!(e, 2 | 6) && (passive || open) {
                            *cum.entry(order).or_insert(0) += q;
                            let t = ers.iter().find(|m| m.get(150) == Some(b"F")).expect("a Trade report");
                            prop_assert_eq!(get(t, 14), o.cum_qty.to_string());
                        }
                        // Fills are facts: CumQty is the sum of the fills reported, always.
                        prop_assert_eq!(o.cum_qty, cum.get(&order).copied().unwrap_or(0));
                        if o.status.is_final() {
                            prop_assert_eq!(o.leaves, 0, "{:?}", o);
                        }
                    }
                }
                Step::Report(..) => {}
                Step::LinkLost => {
                    h.e.link_lost();
                    prop_assert_eq!(h.e.in_flight(), 0);
                }
            }
        }
        let restarted = h.e.restarted();
        for id in new_ids {
            prop_assert_eq!(restarted.order(id.0), h.e.order(id.0));
        }
    }
}

#[test]
fn a_long_order_log_is_compacted_on_open_and_means_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = OrderEntry::path_in(dir.path(), "BRK1");
    let mut h = Harness {
        e: OrderEntry::open(&path, false, listing()).unwrap(),
    };
    h.e.set_id_floor(1000);
    let (cmds, _) = h.send(new_order("big", "1", 100_000, "10000"));
    let r = cmds[0].client_ref;
    // 12,000 fills of 1 share: 12,000 state records for one order.
    for i in 0..12_000 {
        h.report(report(
            r,
            1001,
            fill(
                Side::Buy,
                10_000 + (i % 3) * 50,
                1,
                Liquidity::Maker,
                i as u32,
            ),
            false,
            true,
        ));
    }
    let (cmds, _) = h.send(msg(
        "G",
        "11=big2|41=big|55=VNM|54=1|38=100000|40=2|44=10050",
    ));
    h.report(report(
        cmds[0].client_ref,
        1001,
        ReportEvent::Amended {
            price: 10_050,
            qty: 88_000,
            priority_kept: false,
        },
        true,
        false,
    ));
    let before = std::fs::metadata(&path).unwrap().len();
    let want = h.e.order(1001).cloned();
    drop(h);
    let e = OrderEntry::open(&path, false, listing()).unwrap();
    let after = std::fs::metadata(&path).unwrap().len();
    assert!(after * 100 < before, "{before} -> {after} bytes");
    assert_eq!(e.order(1001).cloned(), want);
    assert_eq!(
        e.order_by_cl_ord_id("big").map(|o| o.id),
        Some(1001),
        "old ClOrdIDs kept"
    );
    let mut h = Harness { e };
    let (cmds, _) = h.send(new_order("next", "1", 100, "10000"));
    let Command::New(o) = cmds[0].command else {
        panic!()
    };
    assert_eq!(o.id, OrderId(1002));
    assert!(cmds[0].client_ref > 2);
    // Reopened again: the same.
    drop(h);
    let e = OrderEntry::open(&path, false, listing()).unwrap();
    assert_eq!(e.order(1001).cloned(), want);
    assert_eq!(e.order_count(), 2);
}
