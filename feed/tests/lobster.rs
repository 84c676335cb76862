//! LOBSTER files written from the L3 feed parse back into the same books: line by line against
//! the orderbook file, and at the end against the engine.

mod common;

use common::{Driver, Gen, GenConfig, DAY_START};
use feed::lobster::{
    orderbook_line, parse_orderbook_line, LobsterBook, LobsterConfig, LobsterError, LobsterMessage,
    LobsterWriter,
};
use feed::{
    Body, BookImage, Feed, FeedLevel, LevelInfo, Message, OrderInfo, QueuePolicy, Securities,
    Snapshot, Subscription, Trade, TradeId,
};
use matching::{Aggressor, OrderId, Phase, SecurityId, Side};
use proptest::prelude::*;

type Writer = LobsterWriter<Vec<u8>, Vec<u8>>;

/// Rebuilds the book from the message file, checking every orderbook line on the way.
fn replay(messages: &str, orderbook: &str, levels: usize) -> LobsterBook {
    let mut book = LobsterBook::new();
    let ob: Vec<&str> = orderbook.lines().collect();
    let mut last_time = -1;
    let mut n = 0;
    for (i, line) in messages.lines().enumerate() {
        let m = LobsterMessage::parse(line).unwrap();
        assert_eq!(m.to_line(), line, "line {} does not round-trip", i + 1);
        assert!(m.time >= last_time, "time goes back at line {}", i + 1);
        last_time = m.time;
        book.apply(&m)
            .unwrap_or_else(|e| panic!("line {}: {e}: {line}", i + 1));
        assert_eq!(orderbook_line(&book.book, levels), ob[i], "line {}", i + 1);
        assert_eq!(parse_orderbook_line(ob[i]).unwrap().len(), levels);
        n += 1;
    }
    assert_eq!(n, ob.len());
    book
}

#[test]
fn random_stream_round_trips_through_lobster_files() {
    let cfg = GenConfig::default();
    let mut gen = Gen::new(31, cfg);
    let table = gen.table().clone();
    let mut driver = Driver::new(gen.rules(), &table);
    let mut feed = Feed::new(&table, QueuePolicy::default());
    let all = Subscription {
        level: FeedLevel::L3,
        securities: Securities::All,
    };
    let id = feed.subscribe(&all).unwrap();
    let lob = LobsterConfig {
        levels: 5,
        ..LobsterConfig::default()
    };
    let mut writers: Vec<Writer> = table
        .iter()
        .map(|(sec, _, _)| LobsterWriter::new(sec, lob, Vec::new(), Vec::new()))
        .collect();
    let mut msgs = Vec::new();
    for _ in 0..15_000 {
        let cmd = gen.next_command();
        driver.step_feed(&cmd, &mut feed);
        msgs.clear();
        feed.poll(id, usize::MAX, &mut msgs).unwrap();
        for m in &msgs {
            for w in &mut writers {
                w.write(m).unwrap();
            }
        }
    }
    let mut kinds = [0u64; 8];
    for (w, (sec, _, _)) in writers.into_iter().zip(table.iter()) {
        let lines = w.lines();
        let writer_depth = w.book().depth(usize::MAX);
        let (m, b) = w.into_inner().unwrap();
        let (m, b) = (String::from_utf8(m).unwrap(), String::from_utf8(b).unwrap());
        assert_eq!(m.lines().count() as u64, lines);
        for line in m.lines() {
            kinds[LobsterMessage::parse(line).unwrap().kind as usize] += 1;
        }
        let rebuilt = replay(&m, &b, lob.levels);
        assert_eq!(
            rebuilt.book.depth(usize::MAX),
            driver.engine().depth(sec, usize::MAX)
        );
        assert_eq!(rebuilt.book.depth(usize::MAX), writer_depth);
        assert_eq!(rebuilt.book.totals(), driver.engine().totals(sec));
    }
    eprintln!("LOBSTER event types 1..7: {:?}", &kinds[1..]);
    for k in [1, 3, 4, 7] {
        assert!(kinds[k] > 0, "no type {k} line");
    }
}

fn msg(seq: u64, ns: i64, body: Body) -> Message {
    Message {
        seq,
        time: DAY_START + ns,
        body,
    }
}

const S: SecurityId = SecurityId(0);

#[test]
fn the_mapping_line_by_line() {
    let cfg = LobsterConfig {
        levels: 2,
        ..LobsterConfig::default()
    };
    let mut w = LobsterWriter::new(S, cfg, Vec::new(), Vec::new());
    let add = |seq, id, side, price, qty| {
        msg(
            seq,
            seq as i64,
            Body::Add {
                security: S,
                id: OrderId(id),
                side,
                price,
                qty,
            },
        )
    };
    let trade = |seq, buy, sell, price, qty, aggressor| {
        msg(
            seq,
            seq as i64,
            Body::Trade(Trade {
                security: S,
                id: TradeId { seq, index: 0 },
                price,
                qty,
                aggressor,
                buy,
                sell,
            }),
        )
    };
    let stream = [
        msg(
            1,
            0,
            Body::Phase {
                security: S,
                phase: Phase::Ato,
            },
        ),
        add(2, 1, Side::Buy, 25_050, 500),
        add(3, 2, Side::Buy, 0, 300),
        add(4, 3, Side::Sell, 25_000, 700),
        // Another security: skipped.
        msg(
            5,
            5,
            Body::Add {
                security: SecurityId(1),
                id: OrderId(9),
                side: Side::Buy,
                price: 1,
                qty: 1,
            },
        ),
        trade(
            6,
            Some(OrderId(2)),
            Some(OrderId(3)),
            25_050,
            300,
            Aggressor::Auction,
        ),
        msg(
            7,
            7,
            Body::Auction {
                security: S,
                price: 25_050,
                volume: 300,
            },
        ),
        msg(
            8,
            8,
            Body::Phase {
                security: S,
                phase: Phase::Continuous,
            },
        ),
        msg(
            9,
            9,
            Body::Reduce {
                security: S,
                id: OrderId(1),
                qty: 200,
            },
        ),
        trade(10, None, Some(OrderId(3)), 25_000, 100, Aggressor::Buy),
        msg(
            11,
            11,
            Body::Delete {
                security: S,
                id: OrderId(3),
                reason: feed::DeleteReason::Cancelled,
            },
        ),
        msg(
            12,
            8 * 3_600_000_000_000 - 1,
            Body::Phase {
                security: S,
                phase: Phase::Break,
            },
        ),
    ];
    for m in &stream {
        w.write(m).unwrap();
    }
    let (m, b) = w.into_inner().unwrap();
    let (m, b) = (String::from_utf8(m).unwrap(), String::from_utf8(b).unwrap());
    let expected_messages = "\
32400.000000000,7,0,0,0,-1
32400.000000002,1,1,500,250500000,1
32400.000000003,1,2,300,0,1
32400.000000004,1,3,700,250000000,-1
32400.000000006,6,2,300,250500000,1
32400.000000006,6,3,300,250500000,-1
32400.000000008,7,0,0,1,-1
32400.000000009,2,1,300,250500000,1
32400.000000010,4,3,100,250000000,-1
32400.000000011,3,3,300,250000000,-1
61199.999999999,7,0,0,-1,-1
";
    assert_eq!(m, expected_messages);
    let e = "9999999999,0,-9999999999,0";
    let expected_book = [
        format!("{e},{e}"),
        format!("9999999999,0,250500000,500,{e}"),
        "9999999999,0,0,300,9999999999,0,250500000,500".to_string(),
        "250000000,700,0,300,9999999999,0,250500000,500".to_string(),
        format!("250000000,700,250500000,500,{e}"),
        format!("250000000,400,250500000,500,{e}"),
        format!("250000000,400,250500000,500,{e}"),
        format!("250000000,400,250500000,200,{e}"),
        format!("250000000,300,250500000,200,{e}"),
        format!("9999999999,0,250500000,200,{e}"),
        format!("9999999999,0,250500000,200,{e}"),
    ];
    assert_eq!(b.lines().collect::<Vec<_>>(), expected_book);
    let rebuilt = replay(&m, &b, 2);
    assert_eq!(rebuilt.book.depth(9), (vec![(25_050, 200)], vec![]));
    // Level messages cannot make LOBSTER files.
    let mut w = LobsterWriter::new(S, cfg, Vec::new(), Vec::new());
    let level = msg(
        1,
        0,
        Body::Level {
            security: S,
            side: Side::Buy,
            level: LevelInfo {
                price: 1,
                qty: 1,
                orders: 1,
            },
        },
    );
    assert!(matches!(w.write(&level), Err(LobsterError::NotL3)));
    // An execution of an unknown order is an error, not a panic, and writes nothing.
    let bad = trade(2, Some(OrderId(77)), None, 1, 1, Aggressor::Sell);
    assert!(matches!(w.write(&bad), Err(LobsterError::Inconsistent(_))));
    assert_eq!(w.lines(), 0);
}

#[test]
fn a_resync_snapshot_rewrites_the_book() {
    let cfg = LobsterConfig::default();
    let mut w = LobsterWriter::new(S, cfg, Vec::new(), Vec::new());
    for (id, price) in [(1, 100), (2, 101), (3, 100)] {
        let m = msg(
            id,
            id as i64,
            Body::Add {
                security: S,
                id: OrderId(id),
                side: Side::Buy,
                price,
                qty: 10,
            },
        );
        w.write(&m).unwrap();
    }
    let o = |id, price, qty| OrderInfo {
        id: OrderId(id),
        price,
        qty,
    };
    let snap = Snapshot {
        security: S,
        phase: Phase::Continuous,
        reference: 100,
        last_trade: None,
        indicative: None,
        book: BookImage::Orders {
            bids: vec![o(3, 100, 5), o(4, 99, 1)],
            asks: vec![o(5, 102, 2)],
        },
    };
    w.write(&msg(9, 9, Body::Snapshot(Box::new(snap)))).unwrap();
    assert_eq!(w.lines(), 3 + 3 + 3);
    let (m, b) = w.into_inner().unwrap();
    let rebuilt = replay(
        &String::from_utf8(m).unwrap(),
        &String::from_utf8(b).unwrap(),
        cfg.levels,
    );
    assert_eq!(
        rebuilt.book.depth(9),
        (vec![(100, 5), (99, 1)], vec![(102, 2)])
    );
    // A level snapshot is refused.
    let mut w = LobsterWriter::new(S, cfg, Vec::new(), Vec::new());
    let snap = Snapshot {
        security: S,
        phase: Phase::Continuous,
        reference: 100,
        last_trade: None,
        indicative: None,
        book: BookImage::Levels {
            bids: vec![],
            asks: vec![],
        },
    };
    let r = w.write(&msg(1, 0, Body::Snapshot(Box::new(snap))));
    assert!(matches!(r, Err(LobsterError::NotL3)));
}

#[test]
fn bad_lines_are_errors_with_their_line_number() {
    let good = "34200.000000001,1,7,100,250000000,1";
    assert!(LobsterMessage::parse(good).is_ok());
    for bad in [
        "",
        "34200.000000001,1,7,100,250000000",
        "34200.0000000011,1,7,100,250000000,1",
        "-1.5,1,7,100,250000000,1",
        "86400.000000000,1,7,100,250000000,1",
        "34200.000000001,8,7,100,250000000,1",
        "34200.000000001,1,-7,100,250000000,1",
        "34200.000000001,1,7,100,250000000,0",
        "34200.000000001,1,7,1e3,250000000,1",
        "x.1,1,7,100,250000000,1",
    ] {
        assert!(LobsterMessage::parse(bad).is_err(), "{bad:?}");
    }
    let mut book = LobsterBook::new();
    let text = format!("{good}\n34200.000000002,3,8,100,250000000,1\n");
    match book.apply_file(&text) {
        Err(LobsterError::Parse { line: 2, .. }) => {}
        other => panic!("{other:?}"),
    }
    // Not a whole VND.
    let frac = LobsterMessage::parse("1.0,1,1,1,5,1").unwrap();
    assert!(LobsterBook::new().apply(&frac).is_err());
    assert!(parse_orderbook_line("1,2,3").is_err());
    assert!(parse_orderbook_line("1,2,3,x").is_err());
}

proptest! {
    #[test]
    fn parsers_never_panic(line in ".{0,80}", fields in proptest::collection::vec("-?[0-9.]{0,12}", 0..9)) {
        let _ = LobsterMessage::parse(&line);
        let _ = parse_orderbook_line(&line);
        let joined = fields.join(",");
        if let Ok(m) = LobsterMessage::parse(&joined) {
            // Whatever parses, prints back to a line that parses to the same message.
            prop_assert_eq!(LobsterMessage::parse(&m.to_line()), Ok(m));
            let _ = LobsterBook::new().apply(&m);
        }
        let _ = parse_orderbook_line(&joined);
    }
}
