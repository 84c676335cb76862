//! CSV export: the replay formats, every action and order type, auction trades in replay
//! order, RFC 4180 quoting for any broker name, and a listing check.

mod common;

use std::fs;

use common::*;
use journal::{
    export_csv, recover, Binding, Durability, ExportOptions, ExportSummary, JournalError,
};
use matching::{
    Aggressor, AmendOrder, BrokerId, CancelOrder, Command, Fill, MarketRules, OrderId, OrderType,
    Phase, RejectReason, SecurityId, SecurityTable, Side,
};

fn table() -> SecurityTable {
    SecurityTable::parse_csv("VNM,60000\nFPT,95000\nHPG,25000\n").unwrap()
}

fn trade(sec: u32, price: i64, qty: u64, buy: u64, sell: u64, aggressor: Aggressor) -> Fill {
    Fill {
        security: SecurityId(sec),
        price,
        qty,
        buy: OrderId(buy),
        sell: OrderId(sell),
        buy_broker: BrokerId(0),
        sell_broker: BrokerId(1),
        aggressor,
    }
}

const ODD: &str = "s\"s,i";

/// Writes a small day with a loss accepted in the middle; returns the store config.
fn write_day(root: &std::path::Path) -> journal::StoreConfig {
    let c = cfg(root, 1 << 20, Durability::Batch);
    let b = Binding::new(&table(), MarketRules::hose());
    let mut s = recover(&c, &b).unwrap().open().unwrap();
    let j = &mut s.journal;
    let names = ["hsc", ODD, "ssi"];
    let mut seq = 0;
    let mut cmd = |j: &mut journal::OrderJournal, t: i64, r: u64, c: Command| {
        seq += 1;
        let n = c.broker().map_or("", |b| names[b.0 as usize]);
        j.append(seq, T0 + t, r, &c, n).unwrap();
    };
    cmd(
        j,
        1,
        1,
        Command::New(new_order(
            1,
            0,
            0,
            Side::Buy,
            OrderType::Limit,
            60_100,
            1_000,
        )),
    );
    cmd(
        j,
        2,
        1,
        Command::New(new_order(2, 1, 0, Side::Sell, OrderType::Mtl, 0, 500)),
    );
    j.append_rejected(
        T0 + 3,
        1,
        &new_order(3, 2, 1, Side::Buy, OrderType::Limit, 95_001, 100),
        RejectReason::OffTick,
        "ssi",
    )
    .unwrap();
    cmd(
        j,
        4,
        2,
        Command::New(new_order(4, 2, 1, Side::Sell, OrderType::Atc, 0, 100)),
    );
    cmd(
        j,
        5,
        2,
        Command::Amend(AmendOrder {
            id: OrderId(1),
            broker: BrokerId(0),
            security: SecurityId(0),
            price: 60_200,
            qty: 800,
        }),
    );
    cmd(
        j,
        6,
        3,
        Command::Cancel(CancelOrder {
            id: OrderId(1),
            broker: BrokerId(0),
            security: SecurityId(0),
        }),
    );
    cmd(j, 7, 0, Command::Phase(Phase::Atc));
    j.commit().unwrap();
    let t = &mut s.tape;
    t.append(2, T0 + 2, 0, &trade(0, 60_100, 500, 1, 2, Aggressor::Sell))
        .unwrap();
    // The auction of seq 6 arrives in any order; export lists it by security code.
    t.append(
        6,
        T0 + 7,
        0,
        &trade(0, 60_000, 100, 5, 6, Aggressor::Auction),
    )
    .unwrap();
    t.append(
        6,
        T0 + 7,
        1,
        &trade(1, 95_000, 300, 7, 8, Aggressor::Auction),
    )
    .unwrap();
    t.append(
        6,
        T0 + 7,
        0,
        &trade(2, 25_000, 200, 9, 10, Aggressor::Auction),
    )
    .unwrap();
    t.append(
        6,
        T0 + 7,
        0,
        &trade(1, 95_000, 100, 7, 4, Aggressor::Auction),
    )
    .unwrap();
    // A fill of a seq the journal lost (seq 9): the loss is accepted below.
    t.append(9, T0 + 9, 0, &trade(2, 25_100, 100, 11, 12, Aggressor::Buy))
        .unwrap();
    t.commit().unwrap();
    drop(s);
    let mut s = recover(&c, &b).unwrap().accept_loss(T0 + 10).unwrap();
    assert_eq!(s.journal.next_seq(), 10);
    s.journal
        .append(10, T0 + 11, 0, &Command::Phase(Phase::Closed), "")
        .unwrap();
    s.journal.commit().unwrap();
    c
}

#[test]
fn export_writes_the_replay_formats_with_rfc4180_quoting() {
    let tmp = tempfile::tempdir().unwrap();
    let c = write_day(tmp.path());
    let out = tmp.path().join("out");
    let summary = export_csv(
        &c.journal_dir,
        &c.tape_dir,
        &table(),
        &out,
        ExportOptions::default(),
    )
    .unwrap();
    assert_eq!(
        summary,
        ExportSummary {
            commands: 7,
            rejected: 1,
            gap_seqs: 3,
            trades: 6
        }
    );
    let orders = fs::read_to_string(out.join("orders.csv")).unwrap();
    assert_eq!(
        orders,
        "action,order_id,broker,security,side,type,price,qty\n\
         NEW,1,hsc,VNM,BUY,LO,60100,1000\n\
         NEW,2,\"s\"\"s,i\",VNM,SELL,MTL,0,500\n\
         NEW,3,ssi,FPT,BUY,LO,95001,100\n\
         NEW,4,ssi,FPT,SELL,ATC,0,100\n\
         AMEND,1,hsc,VNM,,,60200,800\n\
         CANCEL,1,hsc,VNM,,,,\n\
         PHASE,,,,,ATC,,\n\
         PHASE,,,,,CLOSED,,\n"
    );
    assert_eq!(
        fs::read_to_string(out.join("trades.csv")).unwrap(),
        "security,price,qty,buy_order_id,sell_order_id,aggressor\n\
         VNM,60100,500,1,2,SELL\n\
         FPT,95000,100,7,4,AUCTION\n\
         FPT,95000,300,7,8,AUCTION\n\
         HPG,25000,200,9,10,AUCTION\n\
         VNM,60000,100,5,6,AUCTION\n\
         HPG,25100,100,11,12,BUY\n"
    );
    // Any RFC 4180 reader gets the broker name back.
    let mut r = csv::Reader::from_path(out.join("orders.csv")).unwrap();
    let brokers: Vec<String> = r.records().map(|rec| rec.unwrap()[2].to_owned()).collect();
    assert_eq!(brokers, ["hsc", ODD, "ssi", "ssi", "hsc", "hsc", "", ""]);
}

#[test]
fn extra_columns_come_after_the_replay_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let c = write_day(tmp.path());
    let out = tmp.path().join("out");
    export_csv(
        &c.journal_dir,
        &c.tape_dir,
        &table(),
        &out,
        ExportOptions {
            extra_columns: true,
        },
    )
    .unwrap();
    let orders = fs::read_to_string(out.join("orders.csv")).unwrap();
    let lines: Vec<&str> = orders.lines().collect();
    assert_eq!(
        lines[0],
        "action,order_id,broker,security,side,type,price,qty,seq,time,client_ref,reject_reason"
    );
    assert_eq!(
        lines[1],
        format!("NEW,1,hsc,VNM,BUY,LO,60100,1000,1,{},1,", T0 + 1)
    );
    assert_eq!(
        lines[3],
        format!("NEW,3,ssi,FPT,BUY,LO,95001,100,,{},1,off_tick", T0 + 3)
    );
    assert_eq!(lines[8], format!("PHASE,,,,,CLOSED,,,10,{},0,", T0 + 11));
    let trades = fs::read_to_string(out.join("trades.csv")).unwrap();
    let lines: Vec<&str> = trades.lines().collect();
    assert_eq!(
        lines[0],
        "security,price,qty,buy_order_id,sell_order_id,aggressor,seq,time,fill_index"
    );
    assert_eq!(
        lines[3],
        format!("FPT,95000,300,7,8,AUCTION,6,{},1", T0 + 7)
    );
}

#[test]
fn export_refuses_another_listing_and_parses_back_with_the_replay_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let c = write_day(tmp.path());
    let other = SecurityTable::parse_csv("FPT,95000\nVNM,60000\nHPG,25000\n").unwrap();
    let err = export_csv(
        &c.journal_dir,
        &c.tape_dir,
        &other,
        &tmp.path().join("x"),
        ExportOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, JournalError::ListingMismatch { .. }), "{err}");

    // A typical day with plain names reads back row for row with matching's parser.
    let tmp = tempfile::tempdir().unwrap();
    let items = write_store(tmp.path(), 4096, &stream(500));
    let c = cfg(tmp.path(), 4096, Durability::Never);
    let out = tmp.path().join("out");
    export_csv(
        &c.journal_dir,
        &c.tape_dir,
        &listing(),
        &out,
        ExportOptions::default(),
    )
    .unwrap();
    let rows = matching::stream::parse_orders(&fs::read_to_string(out.join("orders.csv")).unwrap())
        .unwrap();
    assert_eq!(rows.len(), items.len());
    let mut brokers = matching::stream::BrokerRegistry::new();
    for (row, item) in rows.iter().zip(&items) {
        let cmd = matching::stream::to_command(row, &listing(), &mut brokers);
        let want = match item {
            journal::JournalItem::Record(r) => match r.entry {
                journal::Entry::Command(c) => c,
                journal::Entry::Gap { .. } => unreachable!(),
            },
            journal::JournalItem::Rejected(r) => Command::New(r.order),
        };
        // Broker ids are interned by the reader in first-seen order; compare by name.
        assert_eq!(cmd.order_id(), want.order_id());
        assert_eq!(row.broker, want.broker().map(name).unwrap_or_default());
        match (cmd, want) {
            (Command::New(a), Command::New(b)) => {
                assert_eq!(
                    (a.side, a.kind, a.price, a.qty, a.security),
                    (b.side, b.kind, b.price, b.qty, b.security)
                )
            }
            (Command::Amend(a), Command::Amend(b)) => {
                assert_eq!((a.price, a.qty, a.security), (b.price, b.qty, b.security))
            }
            (Command::Cancel(a), Command::Cancel(b)) => assert_eq!(a.security, b.security),
            (Command::Phase(a), Command::Phase(b)) => assert_eq!(a, b),
            (a, b) => panic!("{a:?} vs {b:?}"),
        }
    }
}
