//! Journal and tape round trips against real files: every record type, rollovers, streaming
//! reads from any seq, reopen-and-continue, commit semantics and field limits.

mod common;

use std::fs;

use common::*;
use journal::{
    read_journal, read_tape, Durability, Entry, JournalError, JournalItem, JournalReader,
    JournalRecord, TapeFill, TapeReader,
};
use matching::{
    Aggressor, BrokerId, Command, Fill, OrderId, OrderType, RejectReason, SecurityId, Side,
};
use proptest::prelude::*;

fn records(items: &[JournalItem]) -> Vec<JournalRecord> {
    items
        .iter()
        .filter_map(|i| match i {
            JournalItem::Record(r) => Some(*r),
            JournalItem::Rejected(_) => None,
        })
        .collect()
}

/// What a reader from `from_seq` must yield out of everything written.
fn expected_from(items: &[JournalItem], from_seq: u64) -> Vec<JournalItem> {
    items
        .iter()
        .filter(|i| match i {
            JournalItem::Record(r) => r.next_seq() > from_seq,
            JournalItem::Rejected(r) => r.next_seq >= from_seq,
        })
        .copied()
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn random_items_round_trip_across_rollovers_and_stream_from_any_seq(
        ops in proptest::collection::vec(arb_op(), 1..300),
        commit_every in 1usize..40,
        from in any::<prop::sample::Index>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let c = cfg(tmp.path(), 256, Durability::Never);
        let mut store = open(&c);
        prop_assert_eq!(store.journal.next_seq(), 1);
        let written = write_ops(&mut store.journal, &ops, commit_every);
        let next = store.journal.next_seq();
        drop(store);

        let all = read_journal(&c.journal_dir).unwrap();
        prop_assert_eq!(all.next_seq, next);
        prop_assert_eq!(all.truncated_bytes, 0);
        prop_assert_eq!(&all.records, &records(&written));
        let seqs: Vec<u64> = all.records.iter().map(|r| r.seq).collect();
        prop_assert_eq!(seqs, (1..next).collect::<Vec<_>>(), "dense seqs");
        for seg in segments(&c.journal_dir, "orders-") {
            prop_assert!(fs::metadata(&seg).unwrap().len() <= 256);
        }
        // Streaming from any seq yields exactly the suffix.
        let from_seq = from.index(next as usize + 1) as u64;
        prop_assert_eq!(read_items(&c.journal_dir, from_seq), expected_from(&written, from_seq));

        // Reopen, continue, read again.
        let mut store = open(&c);
        prop_assert_eq!(store.journal.next_seq(), next);
        let more = write_ops(&mut store.journal, &ops[..ops.len().min(20)], 3);
        drop(store);
        let mut both = written.clone();
        both.extend(more);
        prop_assert_eq!(read_items(&c.journal_dir, 0), both);
    }
}

#[test]
fn a_typical_day_round_trips_and_brokers_are_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let ops = stream(2_000);
    let written = write_store(tmp.path(), 4096, &ops);
    let c = cfg(tmp.path(), 4096, Durability::Never);
    let all = read_journal(&c.journal_dir).unwrap();
    assert_eq!(all.records, records(&written));
    assert_eq!(all.rejected.len(), written.len() - all.records.len());
    assert!(all.rejected.len() > 100);
    assert_eq!(
        all.brokers,
        (0..3)
            .map(|b| (BrokerId(b), name(BrokerId(b))))
            .collect::<Vec<_>>()
    );
    let meta = all.meta.unwrap();
    assert_eq!(meta.fingerprint, binding().fingerprint());
    assert_eq!(meta.rules, "hose");
    assert!(segments(&c.journal_dir, "orders-").len() > 5);
}

#[test]
fn rejected_only_segments_get_part_numbers_and_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path(), 256, Durability::Never);
    // A broker flooding rejects: hundreds of NEWs without a single seq between them.
    let mut ops = stream(12);
    for i in 0..300u64 {
        ops.push(Op::Rejected {
            time: T0 + i as i64,
            client_ref: 1000 + i,
            order: new_order(10_000 + i, 1, 2, Side::Sell, OrderType::Ato, 0, 100),
            reason: RejectReason::PhaseForbids,
        });
    }
    ops.extend(stream(12));
    let mut store = open(&c);
    let written = write_ops(&mut store.journal, &ops, 5);
    drop(store);
    let names: Vec<String> = segments(&c.journal_dir, "orders-")
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with("-3.seg")),
        "expected several parts at one seq: {names:?}"
    );
    assert_eq!(read_items(&c.journal_dir, 0), written);
    // A missing part is named as such (it held only rejected NEWs: no seq is lost).
    let part1 = names.iter().find(|n| n.ends_with("-1.seg")).unwrap();
    let saved = fs::read(c.journal_dir.join(part1)).unwrap();
    fs::remove_file(c.journal_dir.join(part1)).unwrap();
    let err = read_journal(&c.journal_dir).unwrap_err().to_string();
    assert!(
        err.contains(
            "comes without part 1 before it: a segment holding only rejected NEWs is missing"
        ),
        "{err}"
    );
    fs::write(c.journal_dir.join(part1), saved).unwrap();
    let mid_seq = 11;
    assert_eq!(
        read_items(&c.journal_dir, mid_seq),
        expected_from(&written, mid_seq)
    );
    // Continue after a reopen.
    let mut store = open(&c);
    let more = write_ops(&mut store.journal, &stream(5), 1);
    drop(store);
    let mut both = written;
    both.extend(more);
    assert_eq!(read_items(&c.journal_dir, 0), both);
}

#[test]
fn streaming_reader_skips_earlier_segments_without_reading_them() {
    let tmp = tempfile::tempdir().unwrap();
    let written = write_store(tmp.path(), 1024, &stream(3_000));
    let c = cfg(tmp.path(), 1024, Durability::Never);
    let segs = segments(&c.journal_dir, "orders-");
    assert!(segs.len() > 20);
    // Damage the body of the first segment (not its header or META).
    let mut data = fs::read(&segs[0]).unwrap();
    let n = data.len();
    data[n / 2] ^= 0x55;
    fs::write(&segs[0], &data).unwrap();
    let whole = JournalReader::open(&c.journal_dir, 0)
        .unwrap()
        .collect::<Result<Vec<_>, _>>();
    assert!(
        matches!(whole, Err(JournalError::Corrupt { ref segment, .. }) if *segment == segs[0]),
        "{whole:?}"
    );
    let from_seq = 2_000;
    assert_eq!(
        read_items(&c.journal_dir, from_seq),
        expected_from(&written, from_seq)
    );
}

#[test]
fn reopen_append_reopen_continues_seq_and_refuses_out_of_sequence() {
    let tmp = tempfile::tempdir().unwrap();
    let ops = stream(300);
    let c = cfg(tmp.path(), 512, Durability::Batch);
    let first = write_store(tmp.path(), 512, &ops[..120]);
    let mut store = open(&c);
    let next = store.journal.next_seq();
    assert_eq!(next, records(&first).len() as u64 + 1);
    let cmd = Command::Phase(matching::Phase::Break);
    for bad in [next - 1, next + 1, 0, u64::MAX] {
        assert!(matches!(
            store.journal.append(bad, T0, 0, &cmd, ""),
            Err(JournalError::OutOfSequence { .. })
        ));
    }
    assert_eq!(store.journal.next_seq(), next, "refused appends use no seq");
    let second = write_ops(&mut store.journal, &ops[120..], 10);
    drop(store);
    let mut all = first;
    all.extend(second);
    assert_eq!(read_items(&c.journal_dir, 0), all);
}

#[test]
fn commit_makes_appends_durable_and_appends_never_fsync() {
    // Fault 1: under `always` every append used to be written and fsynced on its own.
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path(), 1 << 20, Durability::Always);
    let mut store = open(&c);
    let base = store.journal.stats();
    let ops = stream(500);
    let mut seq = 1;
    for op in &ops {
        if let Op::Cmd {
            time,
            client_ref,
            cmd,
        } = op
        {
            let broker = cmd.broker().map(name).unwrap_or_default();
            store
                .journal
                .append(seq, *time, *client_ref, cmd, &broker)
                .unwrap();
            seq += 1;
        }
    }
    assert_eq!(
        read_journal(&c.journal_dir).unwrap().records.len(),
        0,
        "nothing reaches the file before commit"
    );
    assert_eq!(store.journal.stats().fsyncs, base.fsyncs);
    store.journal.commit().unwrap();
    assert_eq!(
        read_journal(&c.journal_dir).unwrap().records.len() as u64,
        seq - 1
    );
    let after = store.journal.stats();
    assert_eq!(after.writes - base.writes, 1, "one write per commit");
    // One fsync of the segment, one of the high-water mark (written in place).
    assert_eq!(after.fsyncs - base.fsyncs, 2, "{after:?}");
    assert_eq!(after.hwm_updates - base.hwm_updates, 1);

    // 70k fills restored into the tape at recovery: O(1) fsyncs, not 70k.
    let tape_base = store.tape.stats();
    for i in 0..70_000u64 {
        store
            .tape
            .append(
                i / 3 + 1,
                T0,
                (i % 3) as u32,
                &fill(0, 20_000, 100, i, i + 1, Aggressor::Buy),
            )
            .unwrap();
    }
    store.tape.commit().unwrap();
    let t = store.tape.stats();
    assert!(t.fsyncs - tape_base.fsyncs <= 2, "{t:?}");
    assert_eq!(read_tape(&c.tape_dir).unwrap().fills.len(), 70_000);
}

fn fill(security: u32, price: i64, qty: u64, buy: u64, sell: u64, aggressor: Aggressor) -> Fill {
    Fill {
        security: SecurityId(security),
        price,
        qty,
        buy: OrderId(buy),
        sell: OrderId(sell),
        buy_broker: BrokerId((buy % 5) as u32),
        sell_broker: BrokerId((sell % 7) as u32),
        aggressor,
    }
}

/// Fills as executors report them: per seq, fills in one or (for a PHASE) many securities,
/// seqs completed out of order.
fn tape_stream(n: u64) -> Vec<TapeFill> {
    let mut v = Vec::new();
    for k in 1..=n {
        // Out of order: pairs of seqs swapped.
        let seq = if k % 2 == 0 { k - 1 } else { k + 1 };
        let auction = seq % 17 == 0;
        let securities: Vec<u32> = if auction {
            vec![0, 2, 5]
        } else {
            vec![(seq % 3) as u32]
        };
        for sec in securities {
            for idx in 0..(seq % 4) as u32 {
                let aggressor = if auction {
                    Aggressor::Auction
                } else if seq % 2 == 0 {
                    Aggressor::Buy
                } else {
                    Aggressor::Sell
                };
                v.push(TapeFill {
                    seq,
                    time: T0 + seq as i64 * 1_000,
                    fill_index: idx,
                    fill: fill(
                        sec,
                        10_000 + 10 * i64::from(idx),
                        100 * (u64::from(idx) + 1),
                        seq * 10,
                        seq * 10 - 1 - u64::from(idx),
                        aggressor,
                    ),
                });
            }
        }
    }
    v
}

#[test]
fn tape_round_trips_and_streams_from_any_seq_despite_arrival_order() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path(), 300, Durability::Batch);
    let fills = tape_stream(400);
    let mut store = open(&c);
    for (i, f) in fills.iter().enumerate() {
        store
            .tape
            .append(f.seq, f.time, f.fill_index, &f.fill)
            .unwrap();
        if i % 9 == 0 {
            store.tape.commit().unwrap();
        }
    }
    store.tape.commit().unwrap();
    drop(store);
    let segs = segments(&c.tape_dir, "trades-");
    assert!(segs.len() > 10);
    let back = read_tape(&c.tape_dir).unwrap();
    assert_eq!(back.fills, fills);
    for from in [0u64, 1, 2, 50, 199, 200, 201, 399, 400, 401, 10_000] {
        let got: Vec<TapeFill> = TapeReader::open(&c.tape_dir, from)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let want: Vec<TapeFill> = fills.iter().filter(|f| f.seq >= from).copied().collect();
        assert_eq!(got, want, "from seq {from}");
    }
    // Skipping is real: damage the first segment's body; a late reader never reads it.
    let mut data = fs::read(&segs[0]).unwrap();
    let n = data.len();
    data[n - 3] ^= 0x21;
    fs::write(&segs[0], &data).unwrap();
    assert!(TapeReader::open(&c.tape_dir, 0)
        .unwrap()
        .any(|r| r.is_err()));
    let late: Vec<TapeFill> = TapeReader::open(&c.tape_dir, 380)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        late,
        fills
            .iter()
            .filter(|f| f.seq >= 380)
            .copied()
            .collect::<Vec<_>>()
    );
}

#[test]
fn oversized_and_renamed_fields_are_refused_and_nothing_else_stops() {
    // Fault 6: a bad field is refused with a clear error; the journal goes on.
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path(), 4096, Durability::Never);
    let mut store = open(&c);
    let j = &mut store.journal;
    let o = Command::New(new_order(1, 7, 0, Side::Buy, OrderType::Limit, 10_000, 100));
    j.append(1, T0, 1, &o, "alpha").unwrap();
    let err = j.append(2, T0, 2, &o, "beta").unwrap_err();
    assert!(
        matches!(err, JournalError::BrokerRenamed { id: 7, .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "broker 7 is journaled as \"alpha\", cannot rename it to \"beta\""
    );
    let long = "x".repeat(257);
    let other = new_order(2, 8, 0, Side::Buy, OrderType::Limit, 10_000, 100);
    let err = j.append(2, T0, 2, &Command::New(other), &long).unwrap_err();
    assert_eq!(
        err.to_string(),
        "broker name of 257 bytes exceeds the 256-byte limit"
    );
    let err = j
        .append_rejected(T0, 3, &other, RejectReason::OddLot, &long)
        .unwrap_err();
    assert!(matches!(err, JournalError::BrokerNameTooLong(257)));
    assert_eq!(j.next_seq(), 2, "failed appends do not use up a seq");
    let exactly = "é".repeat(128); // 256 bytes
    j.append(2, T0, 2, &Command::New(other), &exactly).unwrap();
    j.commit().unwrap();
    drop(store);
    let all = read_journal(&c.journal_dir).unwrap();
    assert_eq!(all.records.len(), 2);
    assert_eq!(
        all.brokers,
        vec![(BrokerId(7), "alpha".into()), (BrokerId(8), exactly)]
    );

    // A record bigger than an empty segment is refused; smaller ones still go in.
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path(), 128, Durability::Never);
    let mut store = open(&c);
    let err = store
        .journal
        .append(1, T0, 0, &o, &"y".repeat(200))
        .unwrap_err();
    assert!(matches!(err, JournalError::RecordTooLarge { .. }), "{err}");
    store.journal.append(1, T0, 0, &o, "a").unwrap();
    store.journal.commit().unwrap();
    drop(store);
    assert_eq!(read_journal(&c.journal_dir).unwrap().records.len(), 1);
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
        assert_eq!(d.to_string().parse::<Durability>().unwrap(), d);
    }
    let err = "sometimes".parse::<Durability>().unwrap_err();
    assert!(err.to_string().contains("always, batch or never"), "{err}");
    let tmp = tempfile::tempdir().unwrap();
    let small = cfg(tmp.path(), 10, Durability::Never);
    assert!(matches!(
        journal::recover(&small, &binding()),
        Err(JournalError::Config(_))
    ));
    let mut same = cfg(tmp.path(), 4096, Durability::Never);
    same.tape_dir = same.journal_dir.clone();
    assert!(matches!(
        journal::recover(&same, &binding()),
        Err(JournalError::Config(_))
    ));
    assert!(
        !tmp.path().join("journal").exists(),
        "a refused configuration creates nothing"
    );
}

#[test]
fn gaps_are_records_that_consume_their_count() {
    let rec = JournalRecord {
        seq: 10,
        time: T0,
        client_ref: 0,
        entry: Entry::Gap { count: 5 },
    };
    assert_eq!(rec.next_seq(), 15);
}
