//! Hostile bytes: decoding never panics, whatever the files hold.

mod common;

use std::fs;

use common::*;
use journal::{read_journal, read_tape, recover, Durability, JournalReader, TapeReader};
use proptest::prelude::*;

/// Reads everything every way there is; only errors are allowed, never panics.
fn read_all_ways(c: &journal::StoreConfig) {
    let _ = read_journal(&c.journal_dir);
    let _ = read_tape(&c.tape_dir);
    for from in [0, 1, 7, 1_000_000] {
        if let Ok(r) = JournalReader::open(&c.journal_dir, from) {
            r.for_each(drop);
        }
        if let Ok(r) = TapeReader::open(&c.tape_dir, from) {
            r.for_each(drop);
        }
    }
    if let Ok(rec) = recover(c, &binding()) {
        let _ = rec.report().loss.as_ref().map(ToString::to_string);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_segment_files_never_panic(
        journal_body in proptest::collection::vec(any::<u8>(), 0..600),
        tape_body in proptest::collection::vec(any::<u8>(), 0..600),
        valid_header in any::<bool>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let c = cfg(tmp.path(), 4096, Durability::Never);
        fs::create_dir_all(&c.journal_dir).unwrap();
        fs::create_dir_all(&c.tape_dir).unwrap();
        let mut j = Vec::new();
        let mut t = Vec::new();
        if valid_header {
            // A real header and META, then random bytes.
            let mut store = open(&cfg(&tmp.path().join("seed"), 4096, Durability::Never));
            store.journal.commit().unwrap();
            drop(store);
            j = fs::read(segments(&tmp.path().join("seed/journal"), "orders-")[0].clone()).unwrap();
            t = fs::read(segments(&tmp.path().join("seed/tape"), "trades-")[0].clone()).unwrap();
        }
        j.extend_from_slice(&journal_body);
        t.extend_from_slice(&tape_body);
        fs::write(c.journal_dir.join("orders-000000000001.seg"), &j).unwrap();
        fs::write(c.tape_dir.join("trades-000000000001.seg"), &t).unwrap();
        read_all_ways(&c);
    }

    #[test]
    fn mutated_real_logs_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        which in 0usize..4,
        cut in 0usize..200,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let c = cfg(tmp.path(), 512, Durability::Never);
        let mut store = open(&c);
        write_ops(&mut store.journal, &stream(120), 9);
        for i in 0..100u64 {
            let f = matching::Fill {
                security: matching::SecurityId((i % 8) as u32),
                price: 20_000 + 50 * (i % 9) as i64,
                qty: 100,
                buy: matching::OrderId(i),
                sell: matching::OrderId(i + 1),
                buy_broker: matching::BrokerId(0),
                sell_broker: matching::BrokerId(1),
                aggressor: matching::Aggressor::Auction,
            };
            store.tape.append(i / 2 + 1, T0, (i % 2) as u32, &f).unwrap();
        }
        store.tape.commit().unwrap();
        drop(store);
        let mut files = segments(&c.journal_dir, "orders-");
        files.extend(segments(&c.tape_dir, "trades-"));
        files.push(c.journal_dir.join("COMMITTED"));
        let target = &files[which * (files.len() - 1) / 3];
        let mut data = fs::read(target).unwrap();
        for (at, x) in &flips {
            if !data.is_empty() {
                let i = at.index(data.len());
                data[i] ^= x;
            }
        }
        data.truncate(data.len().saturating_sub(cut % 16));
        fs::write(target, &data).unwrap();
        read_all_ways(&c);
    }
}
