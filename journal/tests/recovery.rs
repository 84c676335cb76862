//! Recovery against real damaged directories: torn tails are cut with a WARN, everything else
//! missing is reported precisely, nothing is cut before the operator decides, and accepting a
//! loss journals a GAP so no lost seq is ever used again.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use journal::{
    read_journal, read_tape, recover, recover_from, Durability, Entry, JournalError, JournalItem,
    JournalRecord, StoreConfig, TapeFill,
};
use matching::{Aggressor, BrokerId, Command, Fill, OrderId, Phase, SecurityId};
use proptest::prelude::*;

/// A day as the manager writes it: commands with their fills, journal and tape committed
/// together every 7 commands. Returns the journal items and the fills.
fn write_day(c: &StoreConfig, n: u64) -> (Vec<JournalItem>, Vec<TapeFill>) {
    let mut store = recover(c, &binding()).unwrap().open().unwrap();
    let mut fills = Vec::new();
    let mut items = Vec::new();
    for (i, op) in stream(n).iter().enumerate() {
        items.extend(write_ops_no_commit(&mut store.journal, op));
        if let Some(JournalItem::Record(r)) = items.last() {
            if let Entry::Command(Command::New(o)) = r.entry {
                for k in 0..(r.seq % 3) as u32 {
                    let f = TapeFill {
                        seq: r.seq,
                        time: r.time,
                        fill_index: k,
                        fill: Fill {
                            security: o.security,
                            price: 20_000,
                            qty: 100,
                            buy: o.id,
                            sell: OrderId(o.id.0 / 2 + u64::from(k)),
                            buy_broker: o.broker,
                            sell_broker: BrokerId(1),
                            aggressor: Aggressor::Buy,
                        },
                    };
                    store
                        .tape
                        .append(f.seq, f.time, f.fill_index, &f.fill)
                        .unwrap();
                    fills.push(f);
                }
            }
        }
        if i % 7 == 6 {
            store.journal.commit().unwrap();
            store.tape.commit().unwrap();
        }
    }
    store.journal.commit().unwrap();
    store.tape.commit().unwrap();
    (items, fills)
}

/// A day of `n` commands written in segments of `segment_bytes`, without fsyncs.
struct SegmentedDay {
    _tmp: tempfile::TempDir,
    c: StoreConfig,
    fills: Vec<TapeFill>,
    /// The last journaled seq.
    end: u64,
    /// The journal's segment files, in order.
    segs: Vec<std::path::PathBuf>,
}

/// A recovered store takes seq `end + 1` next, and commits a record there.
fn continues_after(mut store: journal::Store, end: u64) {
    assert_eq!(store.journal.next_seq(), end + 1);
    store
        .journal
        .append(end + 1, T0, 0, &Command::Phase(Phase::Closed), "")
        .unwrap();
    store.journal.commit().unwrap();
}

fn segmented_day(segment_bytes: u64, n: u64) -> SegmentedDay {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path(), segment_bytes, Durability::Never);
    let (items, fills) = write_day(&c, n);
    let end = last_seq(&items);
    let segs = segments(&c.journal_dir, "orders-");
    SegmentedDay {
        _tmp: tmp,
        c,
        fills,
        end,
        segs,
    }
}

fn write_ops_no_commit(j: &mut journal::OrderJournal, op: &Op) -> Vec<JournalItem> {
    match op {
        Op::Cmd {
            time,
            client_ref,
            cmd,
        } => {
            let seq = j.next_seq();
            let broker = cmd.broker().map(name).unwrap_or_default();
            j.append(seq, *time, *client_ref, cmd, &broker).unwrap();
            vec![JournalItem::Record(JournalRecord {
                seq,
                time: *time,
                client_ref: *client_ref,
                entry: Entry::Command(*cmd),
            })]
        }
        Op::Rejected {
            time,
            client_ref,
            order,
            reason,
        } => {
            j.append_rejected(*time, *client_ref, order, *reason, &name(order.broker))
                .unwrap();
            vec![]
        }
    }
}

fn last_seq(items: &[JournalItem]) -> u64 {
    items
        .iter()
        .filter_map(|i| match i {
            JournalItem::Record(r) => Some(r.seq),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

fn dir_snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn clean_restart_reports_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path(), 4096, Durability::Never);
    let (items, fills) = write_day(&c, 1_000);
    let rec = recover(&c, &binding()).unwrap();
    let r = rec.report().clone();
    assert_eq!(r.loss, None);
    assert!(r.torn.is_empty());
    assert_eq!(r.journal_next_seq, last_seq(&items) + 1);
    assert_eq!(r.tape_fills, fills.len() as u64);
    assert_eq!(r.high_water_mark.unwrap().seq, last_seq(&items));
    let store = rec.open().unwrap();
    assert_eq!(store.journal.next_seq(), last_seq(&items) + 1);
}

#[test]
fn torn_tail_after_the_high_water_mark_is_cut_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path(), 1 << 20, Durability::Batch);
    let (items, _) = write_day(&c, 300);
    let last = segments(&c.journal_dir, "orders-").pop().unwrap();
    let len = fs::metadata(&last).unwrap().len();
    // An incomplete write after the last commit: the first bytes of a record.
    let mut data = fs::read(&last).unwrap();
    data.extend_from_slice(&[0x8c, 0x05, 0x81, 0x93]);
    fs::write(&last, &data).unwrap();
    let rec = recover(&c, &binding()).unwrap();
    assert_eq!(rec.report().loss, None, "a torn tail is not a loss");
    assert_eq!(rec.report().torn.len(), 1);
    assert_eq!(rec.report().torn[0].offset, len);
    assert_eq!(rec.report().torn[0].length, len + 4);
    assert_eq!(
        fs::metadata(&last).unwrap().len(),
        len + 4,
        "recover itself cuts nothing"
    );
    let mut store = rec.open().unwrap();
    assert_eq!(
        fs::metadata(&last).unwrap().len(),
        len,
        "open cuts the torn bytes"
    );
    let seq = store.journal.next_seq();
    assert_eq!(seq, last_seq(&items) + 1);
    store
        .journal
        .append(seq, T0, 1, &Command::Phase(Phase::Closed), "")
        .unwrap();
    store.journal.commit().unwrap();
    assert_eq!(read_journal(&c.journal_dir).unwrap().next_seq, seq + 1);
}

#[test]
fn truncated_newest_segment_is_a_loss_with_an_exact_report_and_nothing_is_cut() {
    // Fault 2: this used to be cut as a 9-byte "torn tail" while committed orders vanished.
    let SegmentedDay {
        _tmp,
        c,
        fills,
        end,
        segs,
        ..
    } = segmented_day(64 << 10, 6_000);
    assert!(segs.len() >= 2);
    let last = segs.last().unwrap();
    let len = fs::metadata(last).unwrap().len();
    truncate(last, len / 2 + 3);
    let before = dir_snapshot(&c.journal_dir);

    let rec = recover(&c, &binding()).unwrap();
    let loss = rec.report().loss.clone().expect("a loss");
    let kept = loss.journal_end;
    assert!(kept < end && kept > 0);
    let tail = loss.tail.clone().unwrap();
    assert_eq!((tail.first, tail.last), (kept + 1, end));
    assert_eq!(tail.committed_seq, Some(end));
    let lost_fills = fills.iter().filter(|f| f.seq > kept).count() as u64;
    assert!(lost_fills > 100);
    assert_eq!(tail.tape_fills, lost_fills);
    assert_eq!(loss.cuts.len(), 1);
    assert_eq!(loss.cuts[0].committed_length, Some(len));
    let text = loss.to_string();
    let first_line = format!(
        "- journal ends at seq {} but seqs {}..={} were committed (high-water mark) and the tape holds {} fills of them",
        thousands(kept),
        thousands(kept + 1),
        thousands(end),
        thousands(lost_fills)
    );
    assert!(text.contains(&first_line), "{text}");
    assert!(
        text.contains(&format!(
            "{} holds intact records only up to byte {} of {}, below its committed length of {} bytes",
            last.display(),
            thousands(loss.cuts[0].offset),
            thousands(len / 2 + 3),
            thousands(len)
        )),
        "{text}"
    );

    // Refusing to open changes nothing.
    let err = rec.open().unwrap_err();
    assert!(matches!(err, JournalError::Loss(_)));
    assert_eq!(err.to_string(), text);
    assert_eq!(dir_snapshot(&c.journal_dir), before);

    // Accepting journals a GAP; new orders never reuse a lost seq.
    let mut store = recover(&c, &binding())
        .unwrap()
        .accept_loss(T0 + 99)
        .unwrap();
    assert_eq!(store.journal.next_seq(), end + 1);
    store
        .journal
        .append(end + 1, T0 + 100, 7, &Command::Phase(Phase::Atc), "")
        .unwrap();
    store.journal.commit().unwrap();
    drop(store);
    let all = read_journal(&c.journal_dir).unwrap();
    let gap = all
        .records
        .iter()
        .find(|r| matches!(r.entry, Entry::Gap { .. }))
        .unwrap();
    assert_eq!(
        *gap,
        JournalRecord {
            seq: kept + 1,
            time: T0 + 99,
            client_ref: 0,
            entry: Entry::Gap { count: end - kept }
        }
    );
    assert_eq!(all.next_seq, end + 2);
    let again = recover(&c, &binding()).unwrap();
    assert_eq!(again.report().loss, None, "{:?}", again.report().loss);
}

#[test]
fn deleted_newest_segment_is_a_loss() {
    let SegmentedDay {
        _tmp,
        c,
        fills,
        end,
        segs,
        ..
    } = segmented_day(16 << 10, 3_000);
    let last = segs.last().unwrap();
    fs::remove_file(last).unwrap();
    let loss = recover(&c, &binding())
        .unwrap()
        .report()
        .loss
        .clone()
        .unwrap();
    let kept = loss.journal_end;
    let tail = loss.tail.clone().unwrap();
    assert_eq!((tail.first, tail.last), (kept + 1, end));
    assert_eq!(
        tail.tape_fills,
        fills.iter().filter(|f| f.seq > kept).count() as u64
    );
    let name = last.file_name().unwrap().to_str().unwrap();
    assert_eq!(loss.missing_segment.as_deref(), Some(name));
    assert!(loss.to_string().contains(&format!(
        "the high-water mark names {name}, which is missing"
    )));
}

#[test]
fn tape_beyond_the_journal_is_a_loss_even_without_a_high_water_mark() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path(), 16 << 10, Durability::Never);
    let (_, fills) = write_day(&c, 3_000);
    fs::remove_file(segments(&c.journal_dir, "orders-").pop().unwrap()).unwrap();
    fs::remove_file(c.journal_dir.join("COMMITTED")).unwrap();
    let loss = recover(&c, &binding())
        .unwrap()
        .report()
        .loss
        .clone()
        .unwrap();
    let kept = loss.journal_end;
    let max = fills.iter().map(|f| f.seq).max().unwrap();
    let tail = loss.tail.clone().unwrap();
    assert_eq!(tail.committed_seq, None);
    assert_eq!(tail.tape_max_seq, Some(max));
    assert_eq!((tail.first, tail.last), (kept + 1, max));
    let n = fills.iter().filter(|f| f.seq > kept).count() as u64;
    assert!(loss.no_high_water_mark);
    let text = loss.to_string();
    assert!(
        text.contains(&format!(
            "- journal ends at seq {} but the tape holds {} fills of seqs {}..={}",
            thousands(kept),
            thousands(n),
            thousands(kept + 1),
            thousands(max)
        )),
        "{text}"
    );
    assert!(text.contains("there is no high-water mark"), "{text}");
    // Accepted: the next seq is past every seq the tape has seen.
    let store = recover(&c, &binding()).unwrap().accept_loss(T0).unwrap();
    assert_eq!(store.journal.next_seq(), max + 1);
}

#[test]
fn missing_first_and_middle_segments_become_gap_segments_when_accepted() {
    let SegmentedDay {
        _tmp,
        c,
        fills,
        end,
        segs,
        ..
    } = segmented_day(4 << 10, 3_000);
    assert!(segs.len() > 6);
    fs::remove_file(&segs[0]).unwrap();
    fs::remove_file(&segs[3]).unwrap();
    assert!(matches!(
        read_journal(&c.journal_dir),
        Err(JournalError::Gap { .. })
    ));
    let loss = recover(&c, &binding())
        .unwrap()
        .report()
        .loss
        .clone()
        .unwrap();
    assert_eq!(loss.tail, None);
    assert_eq!(loss.holes.len(), 2);
    let h0 = &loss.holes[0];
    assert_eq!(h0.first, 1);
    assert_eq!(h0.next_segment, segs[1]);
    let h1 = &loss.holes[1];
    assert_eq!(h1.next_segment, segs[4]);
    for h in [h0, h1] {
        let n = fills
            .iter()
            .filter(|f| (h.first..=h.last).contains(&f.seq))
            .count() as u64;
        assert_eq!(h.tape_fills, n);
        assert!(loss.to_string().contains(&format!(
            "- seqs {}..={} are missing: no segment holds them before {} (the tape holds {} fills of them)",
            thousands(h.first),
            thousands(h.last),
            h.next_segment.file_name().unwrap().to_str().unwrap(),
            thousands(n)
        )));
    }
    continues_after(
        recover(&c, &binding()).unwrap().accept_loss(T0).unwrap(),
        end,
    );
    let all = read_journal(&c.journal_dir).unwrap();
    let seqs: Vec<u64> = all.records.iter().map(|r| r.seq).collect();
    let gaps: Vec<(u64, u64)> = all
        .records
        .iter()
        .filter_map(|r| match r.entry {
            Entry::Gap { count } => Some((r.seq, r.seq + count - 1)),
            _ => None,
        })
        .collect();
    assert_eq!(gaps, vec![(h0.first, h0.last), (h1.first, h1.last)]);
    // Dense: every seq is a record or inside a gap.
    let covered: u64 = all.records.iter().map(|r| r.next_seq() - r.seq).sum();
    assert_eq!(covered, end + 1);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(recover(&c, &binding()).unwrap().report().loss, None);
}

#[test]
fn missing_or_damaged_high_water_mark() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path(), 1 << 20, Durability::Batch);
    write_day(&c, 200);
    let hwm = c.journal_dir.join("COMMITTED");
    let saved = fs::read(&hwm).unwrap();
    fs::write(&hwm, b"seq=5\nsegment=x\nlength=1\ncrc32=00000000\n").unwrap();
    let err = recover(&c, &binding()).err().unwrap();
    assert!(matches!(err, JournalError::HighWaterMark { .. }), "{err}");
    assert!(err.to_string().contains("delete the file"), "{err}");
    fs::remove_file(&hwm).unwrap();
    let loss = recover(&c, &binding())
        .unwrap()
        .report()
        .loss
        .clone()
        .unwrap();
    assert!(loss.no_high_water_mark && loss.tail.is_none() && loss.holes.is_empty());
    recover(&c, &binding()).unwrap().accept_loss(T0).unwrap();
    assert!(hwm.exists());
    assert_eq!(recover(&c, &binding()).unwrap().report().loss, None);
    drop(saved);
}

#[test]
fn high_water_mark_lags_by_its_interval_and_only_covers_what_it_saw() {
    // With the default policy (by time only), a crash right after commits leaves a mark
    // behind: damage after it is a torn tail, which is the documented window.
    let tmp = tempfile::tempdir().unwrap();
    let mut c = cfg(tmp.path(), 1 << 20, Durability::Never);
    c.hwm_commits = 0;
    let (items, _) = write_day(&c, 500);
    let hwm = journal::HighWaterMark::read(&c.journal_dir)
        .unwrap()
        .unwrap();
    assert!(hwm.seq < last_seq(&items), "the mark lags: {hwm:?}");
    let last = segments(&c.journal_dir, "orders-").pop().unwrap();
    let len = fs::metadata(&last).unwrap().len();
    truncate(&last, len - 2);
    let rec = recover(&c, &binding()).unwrap();
    assert_eq!(rec.report().loss, None);
    assert_eq!(rec.report().torn.len(), 1);
    // A clean close brings the mark up to date.
    let store = rec.open().unwrap();
    let next = store.journal.next_seq();
    store.journal.close().unwrap();
    assert_eq!(
        journal::HighWaterMark::read(&c.journal_dir)
            .unwrap()
            .unwrap()
            .seq,
        next - 1
    );
}

#[test]
fn an_idle_journal_brings_its_lagging_mark_up_to_date() {
    // The window above closes once the journal is idle for an interval: refresh_mark (the
    // manager calls it every tick) writes the mark, so a later loss is seen as one.
    let tmp = tempfile::tempdir().unwrap();
    let mut c = cfg(tmp.path(), 1 << 20, Durability::Never);
    c.hwm_commits = 0;
    c.hwm_interval = std::time::Duration::from_millis(30);
    let (items, _) = write_day(&c, 500);
    let mut store = recover(&c, &binding()).unwrap().open().unwrap();
    store.journal.refresh_mark().unwrap();
    let before = journal::HighWaterMark::read(&c.journal_dir)
        .unwrap()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(40));
    store.journal.refresh_mark().unwrap();
    let after = journal::HighWaterMark::read(&c.journal_dir)
        .unwrap()
        .unwrap();
    assert_eq!(after.seq, last_seq(&items), "before: {before:?}");
    drop(store); // a kill: no close
    let last = segments(&c.journal_dir, "orders-").pop().unwrap();
    let len = fs::metadata(&last).unwrap().len();
    truncate(&last, len - 2);
    let rec = recover(&c, &binding()).unwrap();
    assert!(rec.report().loss.is_some(), "{:?}", rec.report());
}

#[test]
fn corrupt_record_in_the_middle_is_an_error_naming_file_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path(), 1 << 20, Durability::Never);
    write_day(&c, 400);
    let seg = segments(&c.journal_dir, "orders-").pop().unwrap();
    let mut data = fs::read(&seg).unwrap();
    let at = data.len() / 2;
    data[at] ^= 0x10;
    fs::write(&seg, &data).unwrap();
    let before = dir_snapshot(&c.journal_dir);
    match recover(&c, &binding()).err().unwrap() {
        JournalError::Corrupt {
            segment, offset, ..
        } => {
            assert_eq!(segment, seg);
            assert!(offset <= at as u64 && offset + 1100 > at as u64);
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    assert_eq!(dir_snapshot(&c.journal_dir), before);
}

#[test]
fn recovery_from_a_checkpoint_reads_only_the_tail() {
    // A long day in small segments; a checkpoint covers everything before `from`. Recovery
    // from it decodes nothing before the segment holding `from - 1`: damage to an earlier
    // segment's records (which a full recovery finds) goes unread, while the tail is checked
    // exactly as before, and the store continues where the journal ends.
    let day = segmented_day(4 << 10, 3_000);
    let (c, fills, end, segs) = (&day.c, &day.fills, day.end, &day.segs);
    assert!(segs.len() > 8, "{} segments", segs.len());
    let from = end - 200;
    let full = recover(c, &binding()).unwrap();
    let tail = recover_from(c, &binding(), from).unwrap();
    assert_eq!(tail.report().loss, None);
    assert_eq!(
        tail.report().journal_next_seq,
        full.report().journal_next_seq
    );
    assert_eq!(tail.report().tape_max_seq, full.report().tape_max_seq);
    assert!(tail.report().tape_fills < fills.len() as u64);
    drop((full, tail));

    // Damage the body of the second segment (its META header intact).
    let mut data = fs::read(&segs[1]).unwrap();
    let at = data.len() - 100;
    data[at] ^= 0x10;
    fs::write(&segs[1], &data).unwrap();
    assert!(matches!(
        recover(c, &binding()).err().unwrap(),
        JournalError::Corrupt { .. }
    ));
    continues_after(
        recover_from(c, &binding(), from).unwrap().open().unwrap(),
        end,
    );
    let mut reader = journal::JournalReader::open(&c.journal_dir, from).unwrap();
    let read: Vec<u64> = reader
        .by_ref()
        .filter_map(|i| match i.unwrap() {
            JournalItem::Record(r) if r.seq >= from => Some(r.seq),
            _ => None,
        })
        .collect();
    assert_eq!(read, (from..=end + 1).collect::<Vec<_>>());

    // A hole in the tail is still a loss.
    let last = segs.last().unwrap();
    let k = segs.len() - 2;
    fs::remove_file(&segs[k]).unwrap();
    let hole_from = recover_from(c, &binding(), from)
        .unwrap()
        .report()
        .loss
        .clone();
    assert!(
        hole_from.is_some_and(|l| !l.holes.is_empty()),
        "a segment missing before {} goes unnoticed",
        last.display()
    );
}

#[test]
fn torn_tape_tail_is_cut_and_missing_fills_can_be_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path(), 2048, Durability::Batch);
    let (_, fills) = write_day(&c, 600);
    let last = segments(&c.tape_dir, "trades-").pop().unwrap();
    let len = fs::metadata(&last).unwrap().len();
    truncate(&last, len - 5);
    let rec = recover(&c, &binding()).unwrap();
    assert_eq!(rec.report().loss, None);
    assert_eq!(rec.report().torn.len(), 1);
    let mut store = rec.open().unwrap();
    let have = read_tape(&c.tape_dir).unwrap().fills;
    assert_eq!(have[..], fills[..have.len()]);
    for f in &fills[have.len()..] {
        store
            .tape
            .append(f.seq, f.time, f.fill_index, &f.fill)
            .unwrap();
    }
    store.tape.commit().unwrap();
    assert_eq!(read_tape(&c.tape_dir).unwrap().fills, fills);
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Nothing is lost in silence: whatever happens to the newest segment, recovery either
    /// fails naming the damage, or gives back every committed record, or reports a loss.
    #[test]
    fn damage_to_the_newest_segment_is_never_silent(
        cut in 0usize..3000,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..3),
        garbage in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let c = cfg(tmp.path(), 4096, Durability::Never);
        let (items, _) = write_day(&c, 400);
        let end = last_seq(&items);
        let last = segments(&c.journal_dir, "orders-").pop().unwrap();
        let mut data = fs::read(&last).unwrap();
        data.truncate(data.len().saturating_sub(cut));
        for (at, x) in &flips {
            if !data.is_empty() {
                let i = at.index(data.len());
                data[i] ^= x;
            }
        }
        data.extend_from_slice(&garbage);
        fs::write(&last, &data).unwrap();
        match recover(&c, &binding()) {
            Ok(rec) => {
                let r = rec.report().clone();
                if r.journal_next_seq <= end {
                    prop_assert!(r.loss.is_some(), "{} of {} seqs left and no loss reported", r.journal_next_seq - 1, end);
                }
                let store = rec.accept_loss(T0).unwrap();
                prop_assert!(store.journal.next_seq() > end);
                drop(store);
                let all = read_journal(&c.journal_dir).unwrap();
                let expected: Vec<_> = items.iter().filter_map(|i| match i {
                    JournalItem::Record(r) => Some(*r),
                    _ => None,
                }).take(all.records.iter().filter(|r| !matches!(r.entry, Entry::Gap{..})).count()).collect();
                let kept: Vec<_> = all.records.iter().filter(|r| !matches!(r.entry, Entry::Gap{..})).copied().collect();
                prop_assert_eq!(kept, expected);
            }
            Err(JournalError::Corrupt { segment, .. }) => prop_assert_eq!(segment, last),
            Err(e) => prop_assert!(false, "unexpected error {}", e),
        }
    }
}

#[test]
fn helper_fill_ids() {
    // Keeps the fixture honest: fills reference real journaled orders.
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path(), 1 << 20, Durability::Never);
    let (items, fills) = write_day(&c, 100);
    assert!(!fills.is_empty());
    for f in &fills {
        assert!(items
            .iter()
            .any(|i| matches!(i, JournalItem::Record(r) if r.seq == f.seq)));
        assert_ne!(f.fill.security, SecurityId::UNKNOWN);
    }
}
