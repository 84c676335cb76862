//! Text formats: parsing (with line-numbered errors), writing, and the replay collector.

use matching::stream::{
    parse_orders, replay_local, to_command, write_orders, Action, BrokerRegistry, OrderRow,
    ReplayCollector, StreamError,
};
use matching::{
    Aggressor, BrokerId, Command, Event, Fill, MarketRules, OrderId, OrderType, SecurityId,
    SecurityTable, Side,
};

fn err_line(e: StreamError) -> usize {
    match e {
        StreamError::Parse { line, .. } => line,
        other => panic!("expected a parse error, got {other}"),
    }
}

#[test]
fn securities_csv_roundtrip_and_errors() {
    let t =
        SecurityTable::parse_csv("security,reference_price\r\nVNM,10000\n\nFPT, 50000\n").unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t.lookup("FPT"), SecurityId(1));
    assert_eq!(t.lookup("XXX"), SecurityId::UNKNOWN);
    assert_eq!(t.code(SecurityId(0)), Some("VNM"));
    assert_eq!(t.reference(SecurityId(1)), Some(50_000));
    assert_eq!(t.code(SecurityId::UNKNOWN), None);
    assert_eq!(
        t.to_csv(),
        "security,reference_price\nVNM,10000\nFPT,50000\n"
    );
    assert_eq!(SecurityTable::parse_csv(&t.to_csv()).unwrap(), t);
    // Header is optional.
    assert_eq!(SecurityTable::parse_csv("A,1\n").unwrap().len(), 1);
    let e =
        SecurityTable::parse_csv("security,reference_price\nVNM,10000\nVNM,20000\n").unwrap_err();
    assert_eq!(err_line(e.clone()), 3);
    assert!(e.to_string().contains("VNM"), "{e}");
    assert_eq!(
        err_line(SecurityTable::parse_csv("A,1\nB,x\n").unwrap_err()),
        2
    );
    assert_eq!(
        err_line(SecurityTable::parse_csv("A,1\nB\n").unwrap_err()),
        2
    );
    assert_eq!(err_line(SecurityTable::parse_csv("A,0\n").unwrap_err()), 1);
    assert_eq!(
        err_line(SecurityTable::parse_csv("A,1,2\n").unwrap_err()),
        1
    );
    assert_eq!(err_line(SecurityTable::parse_csv(",5\n").unwrap_err()), 1);
    let mut t = SecurityTable::new();
    assert!(t.is_empty());
    t.add("X", 5).unwrap();
    assert!(matches!(
        t.add("X", 5),
        Err(StreamError::DuplicateSecurity { .. })
    ));
    assert!(matches!(
        t.add("a b", 5),
        Err(StreamError::InvalidCode { .. })
    ));
    assert!(matches!(
        t.add("Y", -5),
        Err(StreamError::InvalidReference { .. })
    ));
}

#[test]
fn orders_parse_with_and_without_header() {
    let body = "NEW,1,B1,VNM,BUY,LO,10000,100\nNEW,2,B2,VNM,SELL,MP,0,200\r\n\nCANCEL,1,B1,VNM,,,,\nCANCEL,3,B1,VNM\nNEW,4,B1,VNM,SELL,FOK,-5,0\nNEW,5,B1,VNM,BUY,IOC,10000,100\n";
    let with_header = format!("action,order_id,broker,security,side,type,price,qty\n{body}");
    let a = parse_orders(body).unwrap();
    let b = parse_orders(&with_header).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 6);
    assert_eq!(
        a[0],
        OrderRow {
            action: Action::New,
            order_id: 1,
            broker: "B1".into(),
            security: "VNM".into(),
            side: Some(Side::Buy),
            kind: Some(OrderType::Limit),
            price: 10_000,
            qty: 100,
            phase: None,
        }
    );
    assert_eq!(a[2].action, Action::Cancel);
    assert_eq!(
        (a[2].side, a[2].kind, a[2].price, a[2].qty),
        (None, None, 0, 0)
    );
    assert_eq!(a[4].price, -5);
    assert_eq!(a[5].kind, Some(OrderType::Ioc));
    // Written form re-parses to the same rows.
    let text = write_orders(&a);
    assert!(text.starts_with("action,order_id,broker,security,side,type,price,qty\n"));
    assert!(text.contains("\nCANCEL,1,B1,VNM,,,,\n"));
    assert_eq!(parse_orders(&text).unwrap(), a);
    assert_eq!(parse_orders("").unwrap(), vec![]);
}

#[test]
fn orders_parse_errors_name_the_line() {
    let good =
        "action,order_id,broker,security,side,type,price,qty\nNEW,1,B1,VNM,BUY,LO,10000,100\n";
    let cases = [
        ("NEW,2,B1,VNM,BUY,LO,10000", "fields"),
        ("NEW,2,B1,VNM,BUY,LO,10000,100,9", "more"),
        ("MODIFY,2,B1,VNM,BUY,LO,10000,100", "action"),
        ("NEW,x,B1,VNM,BUY,LO,10000,100", "order_id"),
        ("NEW,-2,B1,VNM,BUY,LO,10000,100", "order_id"),
        ("NEW,2,,VNM,BUY,LO,10000,100", "broker"),
        ("NEW,2,B1,,BUY,LO,10000,100", "security"),
        ("NEW,2,B1,VNM,HOLD,LO,10000,100", "side"),
        ("NEW,2,B1,VNM,BUY,GTC,10000,100", "type"),
        ("NEW,2,B1,VNM,BUY,LO,10.5,100", "price"),
        ("NEW,2,B1,VNM,BUY,LO,10000,-1", "qty"),
        ("NEW,2,B1,VNM,BUY,LO,10000,99999999999999999999999", "qty"),
        ("CANCEL,2,B1", "fields"),
    ];
    for (bad, word) in cases {
        let text = format!("{good}\n{bad}\n");
        let e = parse_orders(&text).unwrap_err();
        assert_eq!(err_line(e.clone()), 4, "{bad}");
        assert!(e.to_string().starts_with("line 4: "), "{e}");
        assert!(e.to_string().contains(word), "{bad}: {e}");
    }
    let e = parse_orders("action,id\nNEW,1,B1,VNM,BUY,LO,1,1\n").unwrap_err();
    assert_eq!(err_line(e), 1);
}

#[test]
fn brokers_and_commands() {
    let t = SecurityTable::parse_csv("VNM,10000\n").unwrap();
    let rows = parse_orders(
        "NEW,1,BX,VNM,SELL,LO,10000,100\nCANCEL,1,BY,NOPE\nNEW,2,BX,VNM,BUY,MP,0,100\n",
    )
    .unwrap();
    let mut reg = BrokerRegistry::new();
    let cmds: Vec<Command> = rows.iter().map(|r| to_command(r, &t, &mut reg)).collect();
    assert_eq!(reg.len(), 2);
    assert_eq!(reg.name(BrokerId(1)), Some("BY"));
    assert_eq!(reg.get("BX"), Some(BrokerId(0)));
    assert_eq!(cmds[0].security(), Some(SecurityId(0)));
    assert_eq!(cmds[1].security(), Some(SecurityId::UNKNOWN));
    assert_eq!(cmds[1].broker(), Some(BrokerId(1)));
    assert_eq!(cmds[2].broker(), Some(BrokerId(0)));
    assert!(
        matches!(cmds[2], Command::New(o) if o.kind == OrderType::Market && o.side == Side::Buy)
    );
}

#[test]
fn replay_files_exact() {
    let t = SecurityTable::parse_csv("security,reference_price\nVNM,10000\nAAA,20000\nFPT,50000\n")
        .unwrap();
    let rows = parse_orders(
        "NEW,1,B1,VNM,SELL,LO,10000,100\n\
         NEW,2,B1,VNM,SELL,LO,10050,200\n\
         NEW,3,B2,VNM,BUY,LO,10050,200\n\
         NEW,4,B2,VNM,BUY,LO,10001,100\n\
         CANCEL,2,B2,VNM\n\
         CANCEL,2,B1,VNM\n\
         NEW,5,B3,FPT,BUY,LO,50000,300\n\
         NEW,6,B3,XYZ,BUY,LO,50000,300\n\
         NEW,7,B1,FPT,SELL,IOC,49900,100\n",
    )
    .unwrap();
    let c = replay_local(MarketRules::hose(), &t, &rows);
    assert_eq!(
        c.trades_csv(),
        "security,price,qty,buy_order_id,sell_order_id,aggressor\n\
         VNM,10000,100,3,1,BUY\n\
         VNM,10050,100,3,2,BUY\n\
         FPT,50000,100,5,7,SELL\n"
    );
    assert_eq!(
        c.totals_csv(),
        "security,bid_total,ask_total\nAAA,0,0\nFPT,200,0\nVNM,0,0\n"
    );
    assert_eq!(
        c.rejects_csv(),
        "order_id,reason\n4,off_tick\n2,not_owner\n6,unknown_security\n"
    );
    assert_eq!((c.trade_count(), c.reject_count(), c.commands()), (3, 3, 9));
    assert_eq!(c.trades().len(), 3);
}

#[test]
fn collector_keeps_highest_seq_totals_and_fill_order() {
    let t = SecurityTable::parse_csv("VNM,10000\n").unwrap();
    let fill = |buy: u64| {
        Event::Fill(Fill {
            security: SecurityId(0),
            price: 10_000,
            qty: 100,
            buy: OrderId(buy),
            sell: OrderId(1),
            buy_broker: BrokerId(0),
            sell_broker: BrokerId(1),
            aggressor: Aggressor::Buy,
        })
    };
    let totals = |b| Event::Totals {
        security: SecurityId(0),
        bid_total: b,
        ask_total: 0,
    };
    let mut c = ReplayCollector::new(&t);
    c.record(5, &[fill(50), fill(51), totals(5)]);
    c.record(2, &[fill(20), totals(2)]);
    c.record(
        9,
        &[Event::Rejected {
            id: OrderId(9),
            reason: matching::RejectReason::OddLot,
        }],
    );
    c.record(3, &[totals(3)]);
    assert_eq!(c.totals_csv(), "security,bid_total,ask_total\nVNM,5,0\n");
    assert_eq!(
        c.trades_csv(),
        "security,price,qty,buy_order_id,sell_order_id,aggressor\nVNM,10000,100,20,1,BUY\nVNM,10000,100,50,1,BUY\nVNM,10000,100,51,1,BUY\n"
    );
    assert_eq!(c.rejects_csv(), "order_id,reason\n9,odd_lot\n");
}

#[test]
fn million_rows_parse() {
    // Correctness at scale (speed is checked in release by the benchmark, not here).
    let mut text = String::from("action,order_id,broker,security,side,type,price,qty\n");
    for i in 0..200_000u64 {
        text.push_str(&format!(
            "NEW,{i},B{},VNM,BUY,LO,{},100\n",
            i % 7,
            10_000 + (i % 5) * 50
        ));
    }
    let rows = parse_orders(&text).unwrap();
    assert_eq!(rows.len(), 200_000);
    assert_eq!(rows[199_999].order_id, 199_999);
    assert_eq!(rows[199_999].price, 10_200);
}

#[test]
fn amend_and_phase_rows_parse_and_write() {
    let text = "AMEND,5,B1,VNM,,,10050,200\nPHASE,,,,,ATC,,\nPHASE,,,,,CLOSED,,\nNEW,6,B1,VNM,SELL,MTL,0,100\nNEW,7,B1,VNM,BUY,ATO,0,100\n";
    let rows = parse_orders(text).unwrap();
    assert_eq!(rows[0].action, Action::Amend);
    assert_eq!(
        (rows[0].price, rows[0].qty, rows[0].side),
        (10_050, 200, None)
    );
    assert_eq!(rows[1], OrderRow::phase(matching::Phase::Atc));
    assert_eq!(rows[2].phase, Some(matching::Phase::Closed));
    assert_eq!(rows[3].kind, Some(OrderType::Mtl));
    assert_eq!(rows[4].kind, Some(OrderType::Ato));
    let written = write_orders(&rows);
    assert_eq!(
        written,
        format!("action,order_id,broker,security,side,type,price,qty\n{text}")
    );
    for (bad, word) in [
        ("PHASE,,,,,LUNCH,,", "type"),
        ("PHASE,1,,,,ATO,,", "only the type column"),
        ("PHASE,,,,", "fields"),
        ("AMEND,5,B1,VNM,,,x,200", "price"),
    ] {
        let e = parse_orders(bad).unwrap_err();
        assert!(e.to_string().contains(word), "{bad}: {e}");
    }
}

#[test]
fn quoted_fields_follow_rfc_4180() {
    let text = concat!(
        "\"action\",order_id,broker,security,side,type,price,qty\r\n",
        "NEW,1,\"Broker, Inc.\",VNM,BUY,LO,10000,100\r\n",
        "NEW,2,\"say \"\"hi\"\"\", VNM ,SELL,LO,10000,100\n",
        "NEW,3, \"  padded \" ,\"VNM\",BUY,LO,10000,100\n",
        "NEW,4,\"two\nlines\",VNM,BUY,LO,10000,100\n",
        "CANCEL,4,\"two\r\nlines\",VNM,,,,\n",
        "\"NEW\",\"5\",\"\",VNM,BUY,LO,10000,100\n",
    );
    let e = parse_orders(text).unwrap_err();
    // The quoted empty broker on (physical) line 9 is still empty; the records before it, two
    // of them spanning two lines each, parsed fine.
    assert_eq!(err_line(e.clone()), 9, "{e}");
    assert!(e.to_string().contains("broker is empty"), "{e}");
    let good = &text[..text.rfind("\"NEW\"").unwrap()];
    let rows = parse_orders(good).unwrap();
    let brokers: Vec<&str> = rows.iter().map(|r| r.broker.as_str()).collect();
    assert_eq!(
        brokers,
        vec![
            "Broker, Inc.",
            "say \"hi\"",
            "  padded ",
            "two\nlines",
            "two\r\nlines"
        ]
    );
    assert!(rows.iter().all(|r| r.security == "VNM"));
    // The writer quotes exactly these fields; the result parses back to the same rows.
    let written = write_orders(&rows);
    assert!(written.contains("NEW,1,\"Broker, Inc.\",VNM,BUY,LO,10000,100\n"));
    assert!(written.contains("NEW,2,\"say \"\"hi\"\"\",VNM,SELL,LO,10000,100\n"));
    assert!(written.contains("NEW,3,\"  padded \",VNM,"));
    assert_eq!(parse_orders(&written).unwrap(), rows);
    // CRLF inside quotes is data.
    let crlf = parse_orders("CANCEL,4,\"a\r\nb\",VNM,,,,\r\n").unwrap();
    assert_eq!(crlf[0].broker, "a\r\nb");
}

#[test]
fn malformed_quoting_names_the_line() {
    let good = "NEW,1,B1,VNM,BUY,LO,10000,100\n";
    for (bad, word) in [
        ("NEW,2,B\"1,VNM,BUY,LO,10000,100", "quote inside"),
        (
            "NEW,2,\"B1\"x,VNM,BUY,LO,10000,100",
            "after the closing quote",
        ),
        ("NEW,2,\"B1,VNM,BUY,LO,10000,100", "not closed"),
        ("NEW,2,\"B1\",VNM,BUY,LO,10000,100,\"9\"", "more"),
        ("NEW,\"x\",\"B1\",VNM,BUY,LO,10000,100", "order_id"),
    ] {
        let text = format!("{good}\n{bad}\n{good}");
        let e = parse_orders(&text).unwrap_err();
        assert_eq!(err_line(e.clone()), 3, "{bad}: {e}");
        assert!(e.to_string().contains(word), "{bad}: {e}");
    }
}

proptest::proptest! {
    #[test]
    fn any_broker_name_round_trips(
        names in proptest::collection::vec("[ -~\t\r\n,\"é€]{1,12}", 1..20),
        ids in proptest::collection::vec(proptest::prelude::any::<u64>(), 20),
    ) {
        let rows: Vec<OrderRow> = names
            .iter()
            .zip(&ids)
            .map(|(name, &id)| OrderRow {
                action: if id % 3 == 0 { Action::Cancel } else if id % 3 == 1 { Action::Amend } else { Action::New },
                order_id: id,
                broker: name.clone(),
                security: if id % 5 == 0 { format!("{name}X") } else { "VNM".into() },
                side: (id % 3 == 2).then_some(Side::Sell),
                kind: (id % 3 == 2).then_some(OrderType::Fok),
                price: if id % 3 == 0 { 0 } else { (id % 1000) as i64 - 500 },
                qty: if id % 3 == 0 { 0 } else { id % 7 },
                phase: None,
            })
            .collect();
        let text = write_orders(&rows);
        proptest::prop_assert_eq!(parse_orders(&text).unwrap(), rows);
    }
}
