//! Order journal and trade tape against real files in temporary directories.

use std::fs;
use std::path::{Path, PathBuf};

use manager::journal::{
    export_csv, read_order_segment, read_orders, read_trades, Durability, JournalConfig,
    JournalError, OrderJournal, TradeTape,
};
use matching::{
    BrokerId, CancelOrder, Command, Fill, NewOrder, OrderId, OrderType, SecurityId, SecurityTable,
    Side,
};
use proptest::prelude::*;

fn cfg(dir: &Path, segment_bytes: u64, durability: Durability) -> JournalConfig {
    JournalConfig {
        dir: dir.to_owned(),
        segment_bytes,
        durability,
    }
}

fn name(b: BrokerId) -> String {
    format!("broker{}", b.0)
}

fn new_order(
    id: u64,
    broker: u32,
    security: u32,
    side: Side,
    kind: OrderType,
    price: i64,
    qty: u64,
) -> Command {
    Command::New(NewOrder {
        id: OrderId(id),
        broker: BrokerId(broker),
        security: SecurityId(security),
        side,
        kind,
        price,
        qty,
    })
}

/// A plausible stream: increasing ids, prices on ticks near a reference, some cancels.
fn stream(n: u64) -> Vec<Command> {
    (1..=n)
        .map(|i| {
            if i % 5 == 0 {
                Command::Cancel(CancelOrder {
                    id: OrderId(i - 3),
                    broker: BrokerId((i % 3) as u32),
                    security: SecurityId((i % 4) as u32),
                })
            } else {
                let side = if i % 2 == 0 { Side::Buy } else { Side::Sell };
                new_order(
                    i,
                    (i % 3) as u32,
                    (i % 4) as u32,
                    side,
                    OrderType::Limit,
                    20_000 + 50 * (i % 7) as i64,
                    100 * (i % 9 + 1),
                )
            }
        })
        .collect()
}

fn write_all(dir: &Path, segment_bytes: u64, cmds: &[Command]) {
    let (mut j, rec) = OrderJournal::open(cfg(dir, segment_bytes, Durability::Never)).unwrap();
    for (seq, c) in (rec.next_seq..).zip(cmds) {
        j.append(seq, c, &name(c.broker())).unwrap();
    }
    j.commit().unwrap();
}

fn segments(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
        .collect();
    v.sort();
    v
}

fn numbered(cmds: &[Command]) -> Vec<(u64, Command)> {
    cmds.iter()
        .enumerate()
        .map(|(i, c)| (i as u64 + 1, *c))
        .collect()
}

fn arb_command() -> impl Strategy<Value = Command> {
    let side = prop_oneof![Just(Side::Buy), Just(Side::Sell)];
    let kind = prop_oneof![
        Just(OrderType::Limit),
        Just(OrderType::Market),
        Just(OrderType::Ioc),
        Just(OrderType::Fok)
    ];
    let price =
        prop_oneof![3 => (1i64..3000).prop_map(|t| t * 50), 1 => any::<i64>(), 1 => Just(0i64)];
    let qty = prop_oneof![3 => (1u64..200).prop_map(|l| l * 100), 1 => any::<u64>()];
    let new = (any::<u64>(), 0u32..6, 0u32..8, side, kind, price, qty).prop_map(
        |(id, b, s, side, kind, price, qty)| {
            new_order(id % 1_000_000, b, s, side, kind, price, qty)
        },
    );
    let cancel = (
        0u64..1_000_000,
        0u32..6,
        prop_oneof![0u32..8, Just(u32::MAX)],
    )
        .prop_map(|(id, b, s)| {
            Command::Cancel(CancelOrder {
                id: OrderId(id),
                broker: BrokerId(b),
                security: SecurityId(s),
            })
        });
    prop_oneof![4 => new, 1 => cancel]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_commands_round_trip_across_rollovers(
        cmds in proptest::collection::vec(arb_command(), 1..400),
        commit_every in 1usize..50,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        {
            let (mut j, rec) = OrderJournal::open(cfg(dir, 256, Durability::Never)).unwrap();
            prop_assert_eq!(rec.next_seq, 1);
            for (i, c) in cmds.iter().enumerate() {
                j.append(i as u64 + 1, c, &name(c.broker())).unwrap();
                if i % commit_every == 0 {
                    j.commit().unwrap();
                }
            }
            j.commit().unwrap();
            prop_assert_eq!(j.next_seq(), cmds.len() as u64 + 1);
        }
        let rec = read_orders(dir).unwrap();
        prop_assert_eq!(&rec.orders, &numbered(&cmds));
        prop_assert_eq!(rec.truncated_bytes, 0);
        let mut brokers: Vec<_> = cmds.iter().map(|c| (c.broker(), name(c.broker()))).collect();
        brokers.sort();
        brokers.dedup();
        prop_assert_eq!(&rec.brokers, &brokers);

        // Every segment stays within its size and decodes alone; together they are the stream.
        let segs = segments(dir, "orders-");
        if cmds.len() > 40 {
            prop_assert!(segs.len() > 2, "expected rollovers, got {} segments", segs.len());
        }
        let mut joined = Vec::new();
        for s in &segs {
            prop_assert!(fs::metadata(s).unwrap().len() <= 256);
            let alone = read_order_segment(s).unwrap();
            let expected_name = format!("orders-{:012}.seg", alone.orders[0].0);
            prop_assert_eq!(s.file_name().unwrap().to_str().unwrap(), expected_name.as_str());
            joined.extend(alone.orders);
        }
        prop_assert_eq!(joined, numbered(&cmds));
    }
}

#[test]
fn reopen_append_reopen_continues_seq() {
    let tmp = tempfile::tempdir().unwrap();
    let cmds = stream(300);
    write_all(tmp.path(), 512, &cmds[..120]);
    let (mut j, rec) = OrderJournal::open(cfg(tmp.path(), 512, Durability::Batch)).unwrap();
    assert_eq!(rec.next_seq, 121);
    assert_eq!(rec.orders, numbered(&cmds[..120]));
    assert_eq!(j.next_seq(), 121);
    assert!(matches!(
        j.append(120, &cmds[120], "broker0"),
        Err(JournalError::OutOfSequence {
            expected: 121,
            got: 120
        })
    ));
    assert!(matches!(
        j.append(122, &cmds[120], "broker0"),
        Err(JournalError::OutOfSequence { .. })
    ));
    for (i, c) in cmds[120..].iter().enumerate() {
        j.append(121 + i as u64, c, &name(c.broker())).unwrap();
    }
    j.commit().unwrap();
    drop(j);
    let (j, rec) = OrderJournal::open(cfg(tmp.path(), 512, Durability::Batch)).unwrap();
    assert_eq!(rec.orders, numbered(&cmds));
    assert_eq!(j.next_seq(), 301);
    assert_eq!(
        rec.brokers,
        vec![
            (BrokerId(0), "broker0".into()),
            (BrokerId(1), "broker1".into()),
            (BrokerId(2), "broker2".into())
        ]
    );
}

#[test]
fn always_durability_writes_before_append_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let cmds = stream(20);
    let (mut j, _) = OrderJournal::open(cfg(tmp.path(), 1 << 20, Durability::Always)).unwrap();
    for (i, c) in cmds.iter().enumerate() {
        j.append(i as u64 + 1, c, &name(c.broker())).unwrap();
        // No commit: the record must already be in the file.
        assert_eq!(read_orders(tmp.path()).unwrap().orders.len(), i + 1);
    }
}

#[test]
fn torn_tail_is_cut_and_appends_continue() {
    let tmp = tempfile::tempdir().unwrap();
    let cmds = stream(200);
    write_all(tmp.path(), 1024, &cmds[..150]);
    let last = segments(tmp.path(), "orders-").pop().unwrap();
    let len = fs::metadata(&last).unwrap().len();
    // Cut 3 bytes into the final record: it is at least 10 bytes long.
    let f = fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);

    let peek = read_orders(tmp.path()).unwrap();
    assert_eq!(peek.orders, numbered(&cmds[..149]));
    assert!(peek.truncated_bytes > 0);
    assert_eq!(
        fs::metadata(&last).unwrap().len(),
        len - 3,
        "read_orders must not modify"
    );

    let (mut j, rec) = OrderJournal::open(cfg(tmp.path(), 1024, Durability::Batch)).unwrap();
    assert_eq!(rec.orders, numbered(&cmds[..149]));
    assert_eq!(rec.truncated_bytes, peek.truncated_bytes);
    assert_eq!(
        fs::metadata(&last).unwrap().len(),
        len - 3 - rec.truncated_bytes
    );
    for (i, c) in cmds[149..].iter().enumerate() {
        j.append(150 + i as u64, c, &name(c.broker())).unwrap();
    }
    j.commit().unwrap();
    drop(j);
    let rec = read_orders(tmp.path()).unwrap();
    assert_eq!(rec.orders, numbered(&cmds));
    assert_eq!(rec.truncated_bytes, 0);
}

#[test]
fn trailing_zeros_are_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let cmds = stream(50);
    write_all(tmp.path(), 1 << 20, &cmds);
    let last = segments(tmp.path(), "orders-").pop().unwrap();
    let mut data = fs::read(&last).unwrap();
    data.extend_from_slice(&[0u8; 4096]);
    fs::write(&last, &data).unwrap();
    let (mut j, rec) = OrderJournal::open(cfg(tmp.path(), 1 << 20, Durability::Never)).unwrap();
    assert_eq!(rec.orders, numbered(&cmds));
    assert_eq!(rec.truncated_bytes, 4096);
    j.append(51, &cmds[0], "broker1").unwrap();
    j.commit().unwrap();
    assert_eq!(read_orders(tmp.path()).unwrap().next_seq, 52);
}

#[test]
fn segment_with_torn_header_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let cmds = stream(30);
    write_all(tmp.path(), 1 << 20, &cmds);
    // A crash while rolling over: the new file exists but its header never reached disk.
    let torn = tmp.path().join("orders-000000000031.seg");
    fs::write(&torn, [0u8; 5]).unwrap();
    let (mut j, rec) = OrderJournal::open(cfg(tmp.path(), 1 << 20, Durability::Never)).unwrap();
    assert_eq!(rec.orders, numbered(&cmds));
    assert_eq!(rec.truncated_bytes, 5);
    assert!(!torn.exists());
    j.append(31, &cmds[0], "broker1").unwrap();
    j.commit().unwrap();
    assert_eq!(read_orders(tmp.path()).unwrap().orders.len(), 31);
}

/// Writes `cmds` one commit at a time and returns the file length after each: record groups'
/// boundaries in a single-segment journal.
fn write_with_boundaries(dir: &Path, cmds: &[Command]) -> Vec<u64> {
    let (mut j, _) = OrderJournal::open(cfg(dir, 1 << 20, Durability::Never)).unwrap();
    let seg = segments(dir, "orders-").pop().unwrap();
    let mut ends = Vec::new();
    for (i, c) in cmds.iter().enumerate() {
        j.append(i as u64 + 1, c, "solo").unwrap();
        j.commit().unwrap();
        ends.push(fs::metadata(&seg).unwrap().len());
    }
    ends
}

#[test]
fn flipped_byte_in_the_middle_is_corrupt_with_segment_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let cmds: Vec<_> = stream(100)
        .into_iter()
        .map(|c| match c {
            Command::New(mut o) => {
                o.broker = BrokerId(0);
                Command::New(o)
            }
            Command::Cancel(mut x) => {
                x.broker = BrokerId(0);
                Command::Cancel(x)
            }
        })
        .collect();
    let ends = write_with_boundaries(tmp.path(), &cmds);
    let seg = segments(tmp.path(), "orders-").pop().unwrap();
    for (record, byte_in_record) in [(50usize, 0u64), (50, 1), (60, 4), (70, 9)] {
        let start = ends[record - 1];
        let mut data = fs::read(&seg).unwrap();
        let original = data.clone();
        data[(start + byte_in_record) as usize] ^= 0x10;
        fs::write(&seg, &data).unwrap();
        let err = read_orders(tmp.path()).unwrap_err();
        match &err {
            JournalError::Corrupt {
                segment, offset, ..
            } => {
                assert_eq!(segment, &seg);
                assert_eq!(*offset, start, "record {record}, byte {byte_in_record}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let text = err.to_string();
        let prefix = format!(
            "corrupt journal record in {} at offset {start}: ",
            seg.display()
        );
        assert!(text.starts_with(&prefix), "{text}");
        assert!(matches!(
            OrderJournal::open(cfg(tmp.path(), 1 << 20, Durability::Never)),
            Err(JournalError::Corrupt { .. })
        ));
        assert_eq!(
            fs::read(&seg).unwrap(),
            data,
            "a failed open must not cut anything"
        );
        fs::write(&seg, &original).unwrap();
    }
    assert_eq!(read_orders(tmp.path()).unwrap().orders.len(), 100);
}

#[test]
fn bad_record_at_the_end_of_an_earlier_segment_is_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    write_all(tmp.path(), 200, &stream(100));
    let segs = segments(tmp.path(), "orders-");
    assert!(segs.len() >= 3);
    let mut data = fs::read(&segs[0]).unwrap();
    let n = data.len();
    data[n - 2] ^= 0xff; // inside the final record's CRC
    fs::write(&segs[0], &data).unwrap();
    match read_orders(tmp.path()).unwrap_err() {
        JournalError::Corrupt { segment, .. } => assert_eq!(segment, segs[0]),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn missing_middle_segment_is_a_gap() {
    let tmp = tempfile::tempdir().unwrap();
    write_all(tmp.path(), 200, &stream(100));
    let segs = segments(tmp.path(), "orders-");
    assert!(segs.len() >= 3);
    fs::remove_file(&segs[1]).unwrap();
    let err = read_orders(tmp.path()).unwrap_err();
    assert!(
        matches!(err, JournalError::Gap { ref segment, .. } if *segment == segs[2]),
        "{err}"
    );
    assert!(matches!(
        OrderJournal::open(cfg(tmp.path(), 200, Durability::Never)),
        Err(JournalError::Gap { .. })
    ));
}

#[test]
fn broker_names_are_stable_and_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut j, _) = OrderJournal::open(cfg(tmp.path(), 4096, Durability::Never)).unwrap();
    let c = new_order(1, 7, 0, Side::Buy, OrderType::Limit, 10_000, 100);
    j.append(1, &c, "alpha").unwrap();
    assert!(matches!(
        j.append(2, &c, "beta"),
        Err(JournalError::BrokerRenamed { id: 7, .. })
    ));
    let long = "x".repeat(300);
    let other = new_order(2, 8, 0, Side::Buy, OrderType::Limit, 10_000, 100);
    assert!(matches!(
        j.append(2, &other, &long),
        Err(JournalError::BrokerNameTooLong(300))
    ));
    assert_eq!(j.next_seq(), 2, "failed appends do not use up a seq");
    j.append(2, &other, "beta").unwrap();
    j.commit().unwrap();
    assert_eq!(
        read_orders(tmp.path()).unwrap().brokers,
        vec![(BrokerId(7), "alpha".into()), (BrokerId(8), "beta".into())]
    );
}

#[test]
fn config_and_durability_parsing() {
    for (s, d) in [
        ("always", Durability::Always),
        ("batch", Durability::Batch),
        ("never", Durability::Never),
        ("BATCH", Durability::Batch),
    ] {
        assert_eq!(s.parse::<Durability>().unwrap(), d);
    }
    for d in [Durability::Always, Durability::Batch, Durability::Never] {
        assert_eq!(d.to_string().parse::<Durability>().unwrap(), d);
    }
    assert_eq!(Durability::Never.to_string(), "never");
    let err = "sometimes".parse::<Durability>().unwrap_err();
    assert!(err.to_string().contains("always, batch or never"), "{err}");
    let tmp = tempfile::tempdir().unwrap();
    assert!(matches!(
        OrderJournal::open(cfg(tmp.path(), 10, Durability::Never)),
        Err(JournalError::Config(_))
    ));
    assert_eq!(JournalConfig::new(tmp.path()).segment_bytes, 64 << 20);
}

fn fill(security: u32, price: i64, qty: u64, buy: u64, sell: u64, aggressor: Side) -> Fill {
    Fill {
        security: SecurityId(security),
        price,
        qty,
        buy: OrderId(buy),
        sell: OrderId(sell),
        buy_broker: BrokerId(1),
        sell_broker: BrokerId(2),
        aggressor,
    }
}

fn tape_stream(n: u64) -> Vec<(u64, u32, Fill)> {
    let mut v = Vec::new();
    for seq in 1..=n {
        for idx in 0..(seq % 4) as u32 {
            let side = if seq % 2 == 0 { Side::Buy } else { Side::Sell };
            v.push((
                seq * 2,
                idx,
                fill(
                    (seq % 3) as u32,
                    10_000 + 10 * (idx as i64),
                    100 * (idx as u64 + 1),
                    seq,
                    seq.saturating_sub(idx as u64 + 1),
                    side,
                ),
            ));
        }
    }
    v
}

#[test]
fn trade_tape_round_trip_rollover_torn_tail_and_order() {
    let tmp = tempfile::tempdir().unwrap();
    let fills = tape_stream(200);
    {
        let (mut t, existing) = TradeTape::open(cfg(tmp.path(), 300, Durability::Batch)).unwrap();
        assert!(existing.is_empty());
        for (s, i, f) in &fills[..250] {
            t.append(*s, *i, f).unwrap();
        }
        t.commit().unwrap();
    }
    assert!(segments(tmp.path(), "trades-").len() > 3);
    assert_eq!(read_trades(tmp.path()).unwrap(), fills[..250]);
    // Tear the last record, then continue.
    let last = segments(tmp.path(), "trades-").pop().unwrap();
    let len = fs::metadata(&last).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 2)
        .unwrap();
    let (mut t, existing) = TradeTape::open(cfg(tmp.path(), 300, Durability::Batch)).unwrap();
    assert_eq!(existing, fills[..249]);
    for (s, i, f) in &fills[249..] {
        t.append(*s, *i, f).unwrap();
    }
    t.commit().unwrap();
    drop(t);
    assert_eq!(read_trades(tmp.path()).unwrap(), fills);
}

#[test]
fn export_csv_writes_the_replay_formats_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let (jdir, tdir, out) = (
        tmp.path().join("journal"),
        tmp.path().join("tape"),
        tmp.path().join("out"),
    );
    let mut table = SecurityTable::new();
    table.add("VNM", 60_000).unwrap();
    table.add("FPT", 95_000).unwrap();
    let cmds = [
        (
            new_order(1, 0, 0, Side::Buy, OrderType::Limit, 60_100, 1_000),
            "hsc",
        ),
        (
            new_order(2, 1, 0, Side::Sell, OrderType::Market, 0, 500),
            "ssi",
        ),
        (
            new_order(3, 1, 1, Side::Sell, OrderType::Ioc, 95_000, 100),
            "ssi",
        ),
        (
            Command::Cancel(CancelOrder {
                id: OrderId(1),
                broker: BrokerId(0),
                security: SecurityId(0),
            }),
            "hsc",
        ),
        (
            new_order(4, 0, 1, Side::Buy, OrderType::Fok, 94_900, 200),
            "hsc",
        ),
    ];
    let (mut j, _) = OrderJournal::open(cfg(&jdir, 1 << 20, Durability::Batch)).unwrap();
    for (i, (c, b)) in cmds.iter().enumerate() {
        j.append(i as u64 + 1, c, b).unwrap();
    }
    j.commit().unwrap();
    let (mut t, _) = TradeTape::open(cfg(&tdir, 1 << 20, Durability::Batch)).unwrap();
    t.append(2, 0, &fill(0, 60_100, 500, 1, 2, Side::Sell))
        .unwrap();
    t.append(5, 0, &fill(1, 95_000, 100, 4, 3, Side::Buy))
        .unwrap();
    t.commit().unwrap();

    export_csv(&jdir, &tdir, &table, &out).unwrap();
    assert_eq!(
        fs::read_to_string(out.join("orders.csv")).unwrap(),
        "action,order_id,broker,security,side,type,price,qty\n\
         NEW,1,hsc,VNM,BUY,LO,60100,1000\n\
         NEW,2,ssi,VNM,SELL,MP,0,500\n\
         NEW,3,ssi,FPT,SELL,IOC,95000,100\n\
         CANCEL,1,hsc,VNM,,,,\n\
         NEW,4,hsc,FPT,BUY,FOK,94900,200\n"
    );
    assert_eq!(
        fs::read_to_string(out.join("trades.csv")).unwrap(),
        "security,price,qty,buy_order_id,sell_order_id,aggressor\n\
         VNM,60100,500,1,2,SELL\n\
         FPT,95000,100,4,3,BUY\n"
    );
    // The exported orders parse back with the replay reader.
    let rows = matching::stream::parse_orders(&fs::read_to_string(out.join("orders.csv")).unwrap())
        .unwrap();
    assert_eq!(rows.len(), 5);

    let empty = SecurityTable::new();
    assert!(matches!(
        export_csv(&jdir, &tdir, &empty, &out),
        Err(JournalError::UnknownSecurity(0))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary damage to the last segment never panics: the journal either yields a prefix of
    /// what was written (torn tail) or reports corruption in that segment.
    #[test]
    fn damaged_last_segment_yields_prefix_or_corrupt(
        cut in 0usize..2000,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..3),
        garbage in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let cmds = stream(150);
        write_all(tmp.path(), 1024, &cmds);
        let last = segments(tmp.path(), "orders-").pop().unwrap();
        let mut data = fs::read(&last).unwrap();
        data.truncate(data.len().saturating_sub(cut % 64));
        for (at, x) in &flips {
            let i = at.index(data.len());
            data[i] ^= x;
        }
        data.extend_from_slice(&garbage);
        fs::write(&last, &data).unwrap();
        match OrderJournal::open(cfg(tmp.path(), 1024, Durability::Never)) {
            Ok((mut j, rec)) => {
                let n = rec.orders.len();
                prop_assert_eq!(&rec.orders, &numbered(&cmds[..n]));
                // The journal keeps working after recovery.
                j.append(n as u64 + 1, &cmds[0], "broker1").unwrap();
                j.commit().unwrap();
                prop_assert_eq!(read_orders(tmp.path()).unwrap().orders.len(), n + 1);
            }
            Err(JournalError::Corrupt { segment, .. }) => prop_assert_eq!(segment, last),
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}
