//! Order entry through the real gateway in front of a real grid (manager and executors as
//! processes), with QuickFIX/C++ as the brokers' FIX engine: what an exchange client sees.

mod support;

use std::time::Duration;

use matching::{Command, NewOrder, OrderId, OrderType, Side};
use proto::{ClientCommand, ClientMsg, Credentials, ManagerToClient, Report, ReportEvent};
use support::grid::FixGrid;
use support::{field, is_in, Client, ClientOpts, WAIT};

fn nos(cl: &str, side: &str, qty: u64, price: u64) -> String {
    format!("35=D|11={cl}|55=VNM|54={side}|38={qty}|40=2|44={price}|60=20240101-00:00:00")
}

/// An ExecutionReport about ClOrdID `cl` with ExecType `exec`.
fn er<'a>(cl: &'a str, exec: &'a str) -> impl Fn(&str) -> bool + 'a {
    move |l: &str| is_in(l, "8") && field(l, 11) == Some(cl) && field(l, 150) == Some(exec)
}

fn cancel_reject<'a>(cl: &'a str) -> impl Fn(&str) -> bool + 'a {
    move |l: &str| is_in(l, "9") && field(l, 11) == Some(cl)
}

fn f(line: &str, tag: u32) -> &str {
    field(line, tag).unwrap_or_else(|| panic!("no tag {tag} in {line}"))
}

fn logged_on(fg: &FixGrid, broker: &str) -> Client {
    let mut c = fg.client(broker);
    c.logon();
    c
}

#[test]
fn an_order_rests_then_fills_partly_and_fully_and_both_brokers_see_each_trade() {
    let dir = tempfile::tempdir().unwrap();
    let fg = FixGrid::start(dir.path(), 2);
    let mut b1 = logged_on(&fg, "B01");
    let mut b2 = logged_on(&fg, "B02");

    b1.send(&nos("buy1", "1", 500, 10_000));
    let new = b1.expect(er("buy1", "0"), WAIT);
    assert_eq!((f(&new, 39), f(&new, 151), f(&new, 14)), ("0", "500", "0"));
    let order_id = f(&new, 37).to_string();

    // A sell below the bid trades at the resting order's price.
    b2.send(&nos("sell1", "2", 200, 9_950));
    b2.expect(er("sell1", "0"), WAIT);
    let taker = b2.expect(er("sell1", "F"), WAIT);
    assert_eq!((f(&taker, 32), f(&taker, 31)), ("200", "10000"));
    assert_eq!(
        (f(&taker, 39), f(&taker, 14), f(&taker, 151)),
        ("2", "200", "0")
    );
    assert_eq!((f(&taker, 851), f(&taker, 6)), ("2", "10000"));
    let maker = b1.expect(er("buy1", "F"), WAIT);
    assert_eq!((f(&maker, 32), f(&maker, 31)), ("200", "10000"));
    assert_eq!(
        (f(&maker, 39), f(&maker, 14), f(&maker, 151)),
        ("1", "200", "300")
    );
    assert_eq!((f(&maker, 851), f(&maker, 37)), ("1", order_id.as_str()));
    assert_eq!(f(&maker, 527), f(&taker, 527), "one trade id on both sides");
    assert_ne!(f(&maker, 17), f(&taker, 17), "ExecIDs differ");

    // An IOC for more than rests: fills 300, the rest is cancelled.
    b2.send("35=D|11=sell2|55=VNM|54=2|38=400|40=2|44=10000|59=3|60=20240101-00:00:00");
    let t = b2.expect(er("sell2", "F"), WAIT);
    assert_eq!((f(&t, 32), f(&t, 39), f(&t, 151)), ("300", "1", "100"));
    let c = b2.expect(er("sell2", "4"), WAIT);
    assert_eq!((f(&c, 39), f(&c, 14), f(&c, 151)), ("4", "300", "0"));
    let full = b1.expect(er("buy1", "F"), WAIT);
    assert_eq!(
        (f(&full, 39), f(&full, 14), f(&full, 151), f(&full, 6)),
        ("2", "500", "0", "10000")
    );
    // Nothing else for either: no rejects, no logouts.
    for c in [&mut b1, &mut b2] {
        let extra = c.collect_for(Duration::from_millis(300));
        assert!(
            !c.seen
                .iter()
                .any(|l| is_in(l, "3") || is_in(l, "5") || is_in(l, "j")),
            "{extra:?}"
        );
    }
}

#[test]
fn the_managers_refusal_is_the_logouts_text_and_a_first_refused_logon_leaves_the_numbers_usable() {
    let dir = tempfile::tempdir().unwrap();
    let fg = FixGrid::start(dir.path(), 0);
    // B03's very first logon, with a wrong password.
    let mut bad = fg.client_with("B03", "not-the-secret");
    bad.cmd("start");
    let logout = bad.expect(|l| is_in(l, "5"), WAIT);
    assert_eq!(field(&logout, 58), Some("unknown broker or wrong secret"));
    bad.cmd("stop_now");
    assert!(!bad.seen.iter().any(|l| l == "logon"));
    drop(bad);

    // The same client store, the right password: the session goes on without a sequence
    // problem (our numbering starts where the client's refused attempt left it).
    let mut good = fg.client("B03");
    good.logon();
    good.send(&nos("g1", "1", 100, 10_000));
    good.expect(er("g1", "0"), WAIT);
    good.collect_for(Duration::from_millis(300));
    assert!(
        !good.seen.iter().any(|l| l == "logout"
            || is_in(l, "5")
            || is_in(l, "3")
            || (l.starts_with("out ") && field(l, 35) == Some("5"))),
        "logged on at the first attempt, no logout or reject either way: {:#?}",
        good.seen
    );
    good.stop();

    // A broker the manager does not know: refused, and no trace left in the gateway.
    let mut stranger = Client::start(
        fg.port,
        &dir.path().join("qf-stranger"),
        ClientOpts {
            sender: "NOBODY",
            password: "x",
            ..ClientOpts::default()
        },
    );
    stranger.cmd("start");
    stranger.expect(|l| is_in(l, "5"), WAIT);
    assert!(!dir.path().join("gw/store/NOBODY.fixlog").exists());
    assert!(!dir.path().join("gw/store/NOBODY.orders").exists());
}

#[test]
fn a_replace_that_keeps_priority_one_that_loses_it_and_cancels() {
    let dir = tempfile::tempdir().unwrap();
    let fg = FixGrid::start(dir.path(), 2);
    let mut b1 = logged_on(&fg, "B01");
    let mut b2 = logged_on(&fg, "B02");
    for cl in ["o1", "o2", "o3"] {
        b1.send(&nos(cl, "1", 200, 10_000));
        b1.expect(er(cl, "0"), WAIT);
    }
    // o1: reduced in place, keeps its place at the head of the level.
    b1.send("35=G|11=r1|41=o1|55=VNM|54=1|38=100|40=2|44=10000|60=20240101-00:00:00");
    let rep = b1.expect(er("r1", "5"), WAIT);
    assert_eq!(
        (f(&rep, 41), f(&rep, 38), f(&rep, 151), f(&rep, 39)),
        ("o1", "100", "100", "0")
    );
    assert!(f(&rep, 58).contains("priority kept"), "{rep}");
    b2.send(&nos("s1", "2", 100, 10_000));
    let t = b1.expect(|l| is_in(l, "8") && field(l, 150) == Some("F"), WAIT);
    assert_eq!(
        (f(&t, 11), f(&t, 39), f(&t, 32)),
        ("r1", "2", "100"),
        "o1 (now r1) first"
    );

    // o2: more quantity, loses priority: o3 is now ahead of it.
    b1.send("35=G|11=r2|41=o2|55=VNM|54=1|38=300|40=2|44=10000|60=20240101-00:00:00");
    let rep = b1.expect(er("r2", "5"), WAIT);
    assert_eq!((f(&rep, 38), f(&rep, 151)), ("300", "300"));
    assert!(f(&rep, 58).contains("priority lost"), "{rep}");
    b2.send(&nos("s2", "2", 200, 10_000));
    let t = b1.expect(|l| is_in(l, "8") && field(l, 150) == Some("F"), WAIT);
    assert_eq!(
        (f(&t, 11), f(&t, 39)),
        ("o3", "2"),
        "o3 traded, not the replaced o2"
    );

    // Cancel by the newest ClOrdID, then again: too late; an unknown one: unknown.
    b1.send("35=F|11=c1|41=r2|55=VNM|54=1|60=20240101-00:00:00");
    let c = b1.expect(er("c1", "4"), WAIT);
    assert_eq!(
        (f(&c, 41), f(&c, 39), f(&c, 151), f(&c, 38)),
        ("r2", "4", "0", "300")
    );
    b1.send("35=F|11=c2|41=c1|55=VNM|54=1|60=20240101-00:00:00");
    let rej = b1.expect(cancel_reject("c2"), WAIT);
    assert_eq!((f(&rej, 102), f(&rej, 434), f(&rej, 39)), ("0", "1", "4"));
    assert!(f(&rej, 58).starts_with("order_not_live"), "{rej}");
    b1.send("35=F|11=c3|41=never-sent|55=VNM|54=1|60=20240101-00:00:00");
    let rej = b1.expect(cancel_reject("c3"), WAIT);
    assert_eq!((f(&rej, 102), f(&rej, 37)), ("1", "NONE"));
    // A replace of a filled order: the exchange refuses it.
    b1.send("35=G|11=r3|41=r1|55=VNM|54=1|38=300|40=2|44=10000|60=20240101-00:00:00");
    let rej = b1.expect(cancel_reject("r3"), WAIT);
    assert_eq!((f(&rej, 434), f(&rej, 102)), ("2", "0"));
}

#[test]
fn rejects_carry_ord_rej_reason_and_the_exchanges_reason_code() {
    let dir = tempfile::tempdir().unwrap();
    let fg = FixGrid::start(dir.path(), 1);
    let mut b1 = logged_on(&fg, "B01");
    let cases = [
        // (ClOrdID, fields after ClOrdID, OrdRejReason, code)
        ("tick", "55=VNM|54=1|38=100|40=2|44=10010", "99", "off_tick"),
        (
            "band",
            "55=VNM|54=1|38=100|40=2|44=12000",
            "99",
            "outside_band",
        ),
        ("lot", "55=VNM|54=1|38=150|40=2|44=10000", "13", "odd_lot"),
        (
            "sym",
            "55=ZZZ|54=1|38=100|40=2|44=10000",
            "1",
            "unknown_security",
        ),
        (
            "zero",
            "55=VNM|54=1|38=0|40=2|44=10000",
            "13",
            "zero_quantity",
        ),
        (
            "mpx",
            "55=VNM|54=1|38=100|40=1|44=10000",
            "99",
            "market_order_with_price",
        ),
        // ATO orders are refused in the continuous session (by the engine, after sequencing).
        ("ato", "55=VNM|54=1|38=100|40=1|59=2", "0", "phase_forbids"),
    ];
    for (cl, rest, reason, code) in cases {
        b1.send(&format!("35=D|11={cl}|{rest}|60=20240101-00:00:00"));
        let r = b1.expect(er(cl, "8"), WAIT);
        assert_eq!((f(&r, 39), f(&r, 103)), ("8", reason), "{cl}: {r}");
        assert_eq!(f(&r, 58).split(':').next(), Some(code), "{cl}: {r}");
    }
    assert!(
        !b1.seen
            .iter()
            .any(|l| is_in(l, "8") && field(l, 150) == Some("0")),
        "no rejected order was acknowledged first"
    );
    // The gateway's own refusals: a reused ClOrdID, an unsupported TimeInForce.
    b1.send(&nos("dup", "1", 100, 10_000));
    b1.expect(er("dup", "0"), WAIT);
    b1.send(&nos("dup", "1", 100, 10_000));
    let r = b1.expect(er("dup", "8"), WAIT);
    assert_eq!((f(&r, 103), f(&r, 37)), ("6", "NONE"));
    b1.send("35=D|11=gtc|55=VNM|54=1|38=100|40=2|44=10000|59=1|60=20240101-00:00:00");
    let r = b1.expect(er("gtc", "8"), WAIT);
    assert_eq!(f(&r, 103), "11");
}

#[test]
fn a_fill_while_the_client_is_away_is_stored_and_resent_after_its_next_logon() {
    let dir = tempfile::tempdir().unwrap();
    let fg = FixGrid::start(dir.path(), 2);
    let mut b1 = logged_on(&fg, "B01");
    b1.send(&nos("p1", "1", 100, 10_000));
    b1.expect(er("p1", "0"), WAIT);
    b1.stop();

    let mut b2 = logged_on(&fg, "B02");
    b2.send(&nos("s1", "2", 100, 10_000));
    b2.expect(er("s1", "F"), WAIT);

    let mut b1 = fg.client("B01");
    b1.logon();
    let fill = b1.expect(er("p1", "F"), WAIT);
    assert_eq!(field(&fill, 43), Some("Y"), "resent: {fill}");
    assert_eq!(
        (f(&fill, 39), f(&fill, 32), f(&fill, 31)),
        ("2", "100", "10000")
    );
    assert!(field(&fill, 122).is_some(), "OrigSendingTime");
    // And the session simply goes on.
    b1.send(&nos("p2", "1", 100, 10_000));
    b1.expect(er("p2", "0"), WAIT);
}

#[test]
fn execution_reports_the_client_dropped_are_resent_as_possible_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let fg = FixGrid::start(dir.path(), 1);
    let mut b1 = logged_on(&fg, "B01");
    let mut b2 = logged_on(&fg, "B02");
    b1.send(&nos("d1", "1", 200, 10_000));
    let first = b1.expect(er("d1", "0"), WAIT);
    b2.send(&nos("x1", "2", 100, 10_000));
    let fill = b1.expect(er("d1", "F"), WAIT);
    let (sender, _) = b1.seqnums();
    let lost_from: u64 = f(&first, 34).parse().unwrap();
    let last: u64 = f(&fill, 34).parse().unwrap();
    b1.wait_seqnums((sender, last + 1));
    // The client "loses" everything from the New on.
    b1.cmd(&format!("set_next_target {lost_from}"));
    b1.send("35=1|112=gap");
    let again_new = b1.expect(|l| er("d1", "0")(l) && field(l, 43) == Some("Y"), WAIT);
    let again_fill = b1.expect(|l| er("d1", "F")(l) && field(l, 43) == Some("Y"), WAIT);
    assert_eq!(f(&again_new, 17), f(&first, 17), "same ExecID");
    assert_eq!(f(&again_fill, 17), f(&fill, 17));
    assert_eq!(
        (f(&again_fill, 34), f(&again_fill, 14)),
        (f(&fill, 34), "100")
    );
    b1.send(&nos("d2", "1", 100, 10_000));
    b1.expect(er("d2", "0"), WAIT);
    assert!(!b1.seen.iter().any(|l| l == "logout"), "{:?}", b1.seen);
}

/// A broker session over the native protocol (QUIC): places `orders` and waits for each one's
/// last report.
fn native_orders(fg: &FixGrid, broker: &str, orders: &[(u64, Side, i64, u64)]) -> Vec<Report> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let endpoint = transport::quic::client_endpoint(&fg.grid.ca()).unwrap();
        let addr = transport::quic::resolve(&fg.grid.addr).unwrap();
        let creds = Credentials::Broker {
            name: broker.into(),
            secret: fg.secret(broker).into(),
        };
        let (conn, mut w, mut r, welcome) = transport::quic::connect(&endpoint, addr, creds)
            .await
            .unwrap();
        let vnm = welcome
            .securities
            .iter()
            .find(|s| s.code == "VNM")
            .unwrap()
            .id;
        let cmds = orders
            .iter()
            .enumerate()
            .map(|(i, &(id, side, price, qty))| ClientCommand {
                client_ref: i as u64,
                command: Command::New(NewOrder {
                    id: OrderId(id),
                    broker: matching::BrokerId(0),
                    security: vnm,
                    side,
                    kind: OrderType::Limit,
                    price,
                    qty,
                }),
            })
            .collect();
        w.send(&ClientMsg::Submit(cmds)).await.unwrap();
        let mut reports = Vec::new();
        let mut done = 0;
        while done < orders.len() {
            match r.recv::<ManagerToClient>().await.unwrap() {
                Some(ManagerToClient::Reports(rs)) => {
                    done += rs.iter().filter(|r| r.last && !r.passive).count();
                    reports.extend(rs);
                }
                Some(_) => {}
                None => panic!("manager closed the session"),
            }
        }
        conn.close(0u32.into(), b"done");
        reports
    })
}

#[test]
fn a_gateway_restart_keeps_numbers_and_orders_and_restates_fills_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    let mut fg = FixGrid::start(dir.path(), 2);
    let mut b1 = logged_on(&fg, "B01");
    for cl in ["k1", "k2"] {
        b1.send(&nos(cl, "1", 100, 10_000));
        b1.expect(er(cl, "0"), WAIT);
    }
    let k1 = b1.seen.iter().find(|l| er("k1", "0")(l)).cloned().unwrap();
    let k2 = b1.seen.iter().find(|l| er("k2", "0")(l)).cloned().unwrap();
    let target = f(&k2, 34).parse::<u64>().unwrap() + 1;
    fg.kill_gateway();
    b1.expect(|l| l == "logout", WAIT);

    // While the gateway is down, k1 trades (B02 over the native protocol).
    let reports = native_orders(&fg, "B02", &[(1, Side::Sell, 10_000, 100)]);
    assert!(
        reports
            .iter()
            .any(|r| matches!(r.event, ReportEvent::Fill(_))),
        "{reports:?}"
    );

    fg.start_gateway();
    // QuickFIX reconnects by itself, with the numbers both sides kept.
    b1.expect(|l| l == "logon", WAIT);
    let logon = b1
        .seen
        .iter()
        .rev()
        .find(|l| is_in(l, "A"))
        .cloned()
        .unwrap();
    assert_eq!(field(&logon, 141), None, "no reset");
    assert_eq!(
        f(&logon, 34),
        target.to_string(),
        "the gateway's numbers went on"
    );
    let restated = b1.expect(er("k1", "D"), WAIT);
    assert_eq!(
        (f(&restated, 39), f(&restated, 14), f(&restated, 151)),
        ("2", "100", "0")
    );
    assert_eq!(f(&restated, 37), f(&k1, 37));
    // The order map survived: k2 is cancelled by its ClOrdID.
    b1.send("35=F|11=kc|41=k2|55=VNM|54=1|60=20240101-00:00:00");
    let c = b1.expect(er("kc", "4"), WAIT);
    assert_eq!(f(&c, 41), "k2");
    // New orders get ids above the old ones.
    b1.send(&nos("k3", "1", 100, 10_000));
    let n = b1.expect(er("k3", "0"), WAIT);
    let id = |l: &str| f(l, 37).parse::<u64>().unwrap();
    assert!(id(&n) > id(&k1) + 1, "{n}");
    assert!(
        !b1.seen.iter().any(|l| is_in(l, "3")
            || (is_in(l, "5") && field(l, 58).is_some_and(|t| t.contains("MsgSeqNum")))),
        "{:?}",
        b1.seen
    );
}

#[test]
fn after_a_manager_restart_the_gateway_reconnects_and_the_orders_carry_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut fg = FixGrid::start(dir.path(), 1);
    let mut b1 = logged_on(&fg, "B01");
    b1.send(&nos("m1", "1", 100, 10_000));
    b1.expect(er("m1", "0"), WAIT);
    fg.grid.restart_manager();
    // The FIX session stays up. An order sent before the gateway noticed the loss is rejected
    // once the reconnection shows the exchange never got it; orders sent while the link is
    // down are refused at once; both say why.
    let mut accepted = None;
    for i in 0..100 {
        let cl = format!("m2-{i}");
        b1.send(&nos(&cl, "1", 100, 10_000));
        let a = b1.expect(
            |l| {
                is_in(l, "8")
                    && field(l, 11) == Some(cl.as_str())
                    && matches!(field(l, 150), Some("0" | "8"))
            },
            WAIT,
        );
        if field(&a, 150) == Some("0") {
            accepted = Some(cl);
            break;
        }
        let why = f(&a, 58);
        assert!(
            why.contains("no connection to the exchange") || why.starts_with("lost:"),
            "{a}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let accepted = accepted.expect("the gateway reconnected");
    // The order from before the restart is still known, both to the gateway and the exchange.
    b1.send("35=F|11=mc|41=m1|55=VNM|54=1|60=20240101-00:00:00");
    b1.expect(er("mc", "4"), WAIT);
    let mut b2 = logged_on(&fg, "B02");
    b2.send(&nos("ms", "2", 100, 10_000));
    let t = b1.expect(er(&accepted, "F"), WAIT);
    assert_eq!(f(&t, 39), "2");
    assert!(!b1.seen.iter().any(|l| l == "logout"), "{:?}", b1.seen);
}

#[test]
fn sigterm_logs_every_session_out_and_the_gateway_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut fg = FixGrid::start(dir.path(), 0);
    let mut b1 = logged_on(&fg, "B01");
    let b2 = logged_on(&fg, "B02");
    b2.stop(); // a session task with no connection must end too
    b1.send(&nos("t1", "1", 100, 10_000));
    b1.expect(er("t1", "0"), WAIT);
    let mut gw = fg.gateway.take().unwrap();
    assert!(
        gw.terminate(Duration::from_secs(10)),
        "clean exit:\n{}",
        gw.log()
    );
    let logout = b1.expect(|l| is_in(l, "5"), WAIT);
    assert_eq!(field(&logout, 58), Some("gateway shutting down"));
}
