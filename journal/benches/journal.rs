//! Journal throughput, size, high-water mark cost, recovery and fill restore on a seeded,
//! realistic stream.
//!
//! `cargo bench -p journal --bench journal` (optional args: `<records> <always_records>`,
//! defaults 1,000,000 and 2,000). Prints markdown tables: appends/s per durability mode,
//! bytes per record type vs CSV and bincode 2, the high-water mark's cost, recovery of all
//! records (whole, streaming, tail only, `recover`), and the restore of 70k fills under
//! `always` against per-fill commits (the old behaviour) measured in the same run. Files go
//! under the cargo target tmp dir.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use journal::{
    export_csv, read_journal, recover, Binding, Durability, ExportOptions, JournalReader,
    StoreConfig, TapeReader, DEFAULT_SEGMENT_BYTES,
};
use matching::{
    Aggressor, AmendOrder, BrokerId, CancelOrder, Command, Fill, MarketRules, NewOrder, OrderId,
    OrderType, Phase, SecurityId, SecurityTable, Side, Timestamp,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BATCH: usize = 256;
const T0: Timestamp = 1_767_578_400_000_000_000;

struct Rec {
    time: Timestamp,
    client_ref: u64,
    cmd: Command,
}

fn tick(price: i64) -> i64 {
    match price {
        p if p < 10_000 => 10,
        p if p < 50_000 => 50,
        _ => 100,
    }
}

/// 30 securities across the three tick bands, 12 brokers with their own client refs, ids
/// increasing, 15% cancels and 10% amends of recent orders, a phase change every 100k,
/// prices within +-15 ticks, lots of 100 to 5,000, exchange time advancing by 0.2-20 us with
/// nanosecond precision.
fn generate(n: usize, seed: u64) -> (SecurityTable, Vec<String>, Vec<Rec>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut table = SecurityTable::new();
    let refs: Vec<i64> = (0..30)
        .map(|i| match i % 3 {
            0 => 2_000 + 100 * rng.gen_range(0..70),
            1 => 10_000 + 500 * rng.gen_range(0..70),
            _ => 50_000 + 1_000 * rng.gen_range(0..100),
        })
        .collect();
    for (i, r) in refs.iter().enumerate() {
        table.add(&format!("S{i:03}"), *r).expect("valid security");
    }
    let brokers: Vec<String> = (0..12).map(|i| format!("broker{i:02}")).collect();
    let mut client_refs = [0u64; 12];
    let mut live: Vec<(u64, u32, u32)> = Vec::new();
    let mut next_id = 1_000_000u64;
    let mut time = T0;
    let mut out = Vec::with_capacity(n);
    let phases = [Phase::Break, Phase::Continuous];
    while out.len() < n {
        time += rng.gen_range(200..20_000);
        if out.len() % 100_000 == 99_999 {
            out.push(Rec {
                time,
                client_ref: 0,
                cmd: Command::Phase(phases[out.len() / 100_000 % 2]),
            });
            continue;
        }
        let b = rng.gen_range(0..brokers.len() as u32);
        client_refs[b as usize] += 1;
        let client_ref = client_refs[b as usize];
        let roll = rng.gen_range(0..100);
        if roll < 25 && !live.is_empty() {
            let back = rng.gen_range(0..live.len().min(2_000));
            let i = live.len() - 1 - back;
            let (id, broker, sec) = live[i];
            client_refs[broker as usize] += 1;
            let client_ref = client_refs[broker as usize];
            let cmd = if roll < 15 {
                live.swap_remove(i);
                Command::Cancel(CancelOrder {
                    id: OrderId(id),
                    broker: BrokerId(broker),
                    security: SecurityId(sec),
                })
            } else {
                let r = refs[sec as usize];
                Command::Amend(AmendOrder {
                    id: OrderId(id),
                    broker: BrokerId(broker),
                    security: SecurityId(sec),
                    price: r + tick(r) * rng.gen_range(-15..=15),
                    qty: 100 * rng.gen_range(1..=50),
                })
            };
            out.push(Rec {
                time,
                client_ref,
                cmd,
            });
            continue;
        }
        let sec = rng.gen_range(0..refs.len() as u32);
        let reference = refs[sec as usize];
        let kind = match rng.gen_range(0..100) {
            0..=79 => OrderType::Limit,
            80..=84 => OrderType::Mtl,
            85..=89 => OrderType::Market,
            90..=94 => OrderType::Ioc,
            _ => OrderType::Fok,
        };
        let price = if kind.is_priceless() {
            0
        } else {
            reference + tick(reference) * rng.gen_range(-15..=15)
        };
        next_id += rng.gen_range(1..=3);
        if kind == OrderType::Limit {
            live.push((next_id, b, sec));
        }
        out.push(Rec {
            time,
            client_ref,
            cmd: Command::New(NewOrder {
                id: OrderId(next_id),
                broker: BrokerId(b),
                security: SecurityId(sec),
                side: if rng.gen_bool(0.5) {
                    Side::Buy
                } else {
                    Side::Sell
                },
                kind,
                price,
                qty: 100 * rng.gen_range(1..=50),
            }),
        });
    }
    (table, brokers, out)
}

/// 1-3 fills for a third of the NEWs: against recent resting ids, at tick prices.
fn fills_for(recs: &[Rec], seed: u64) -> Vec<(u64, Timestamp, u32, Fill)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        let Command::New(o) = r.cmd else { continue };
        if !rng.gen_bool(0.33) {
            continue;
        }
        let price = if o.price == 0 { 20_000 } else { o.price };
        for k in 0..rng.gen_range(1..=3u32) {
            let passive = OrderId(o.id.0 - rng.gen_range(1..2_000));
            let passive_broker = BrokerId(rng.gen_range(0..12));
            let (buy, sell, bb, sb) = match o.side {
                Side::Buy => (o.id, passive, o.broker, passive_broker),
                Side::Sell => (passive, o.id, passive_broker, o.broker),
            };
            out.push((
                i as u64 + 1,
                r.time,
                k,
                Fill {
                    security: o.security,
                    price: price - tick(price) * i64::from(k),
                    qty: 100 * rng.gen_range(1..=20),
                    buy,
                    sell,
                    buy_broker: bb,
                    sell_broker: sb,
                    aggressor: Aggressor::from(o.side),
                },
            ));
        }
    }
    out
}

fn store_cfg(dir: &Path, durability: Durability) -> StoreConfig {
    StoreConfig {
        durability,
        ..StoreConfig::in_data_dir(dir)
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry"))
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .map(|e| e.metadata().expect("metadata").len())
        .sum()
}

/// Appends `recs` (commit every `batch`) into a fresh store; returns the elapsed time.
fn append_run(
    cfg: &StoreConfig,
    binding: &Binding,
    brokers: &[String],
    recs: &[Rec],
    batch: usize,
) -> Duration {
    let mut store = recover(cfg, binding)
        .expect("recover")
        .open()
        .expect("open");
    let start = Instant::now();
    for (i, r) in recs.iter().enumerate() {
        let name = r
            .cmd
            .broker()
            .map_or("", |b| brokers[b.0 as usize].as_str());
        store
            .journal
            .append(i as u64 + 1, r.time, r.client_ref, &r.cmd, name)
            .expect("append");
        if (i + 1) % batch == 0 {
            store.journal.commit().expect("commit");
        }
    }
    store.journal.commit().expect("commit");
    let t = start.elapsed();
    store.journal.close().expect("close");
    t
}

fn rate(n: usize, d: Duration) -> String {
    format!("{:.0}", n as f64 / d.as_secs_f64())
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.replace('_', "").parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(1_000_000);
    let n_always = args.get(1).copied().unwrap_or(2_000).min(n);
    let (table, brokers, recs) = generate(n, 42);
    let binding = Binding::new(&table, MarketRules::hose());
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tmp dir");
    let count = |f: fn(&Command) -> bool| recs.iter().filter(|r| f(&r.cmd)).count();
    let (news, cancels, amends) = (
        count(|c| matches!(c, Command::New(_))),
        count(|c| matches!(c, Command::Cancel(_))),
        count(|c| matches!(c, Command::Amend(_))),
    );
    println!(
        "journal bench: {n} records ({news} NEW, {cancels} CANCEL, {amends} AMEND, {} PHASE), {} securities, segments {} MiB, dir {}",
        n - news - cancels - amends,
        table.len(),
        DEFAULT_SEGMENT_BYTES >> 20,
        root.path().display()
    );

    // --- Appends per durability mode -------------------------------------------------------
    println!("\n| durability | records | commit every | time (s) | appends/s |");
    println!("|---|---:|---:|---:|---:|");
    for (mode, count, batch) in [
        (Durability::Always, n_always, 1),
        (Durability::Batch, n, BATCH),
        (Durability::Never, n, BATCH),
    ] {
        let cfg = store_cfg(&root.path().join(mode.as_str()), mode);
        let t = append_run(&cfg, &binding, &brokers, &recs[..count], batch);
        println!(
            "| {mode} | {count} | {batch} | {:.3} | {} |",
            t.as_secs_f64(),
            rate(count, t)
        );
    }
    let full = store_cfg(&root.path().join("never"), Durability::Never);

    // --- High-water mark cost ----------------------------------------------------------------
    let hwm_dir = root.path().join("hwm");
    let mut hcfg = store_cfg(&hwm_dir, Durability::Batch);
    hcfg.hwm_commits = 1;
    let mut store = recover(&hcfg, &binding)
        .expect("recover")
        .open()
        .expect("open");
    let base_updates = store.journal.stats().hwm_updates;
    let updates = 300;
    let mut commit_with = Duration::ZERO;
    for (i, r) in recs[..updates].iter().enumerate() {
        let name = r
            .cmd
            .broker()
            .map_or("", |b| brokers[b.0 as usize].as_str());
        store
            .journal
            .append(i as u64 + 1, r.time, r.client_ref, &r.cmd, name)
            .expect("append");
        let t = Instant::now();
        store.journal.commit().expect("commit");
        commit_with += t.elapsed();
    }
    assert_eq!(
        (store.journal.stats().hwm_updates - base_updates) as usize,
        updates
    );
    drop(store);
    let mut hcfg2 = store_cfg(&root.path().join("hwm2"), Durability::Batch);
    hcfg2.hwm_interval = Duration::from_secs(3600);
    let mut store = recover(&hcfg2, &binding)
        .expect("recover")
        .open()
        .expect("open");
    let mut commit_without = Duration::ZERO;
    for (i, r) in recs[..updates].iter().enumerate() {
        let name = r
            .cmd
            .broker()
            .map_or("", |b| brokers[b.0 as usize].as_str());
        store
            .journal
            .append(i as u64 + 1, r.time, r.client_ref, &r.cmd, name)
            .expect("append");
        let t = Instant::now();
        store.journal.commit().expect("commit");
        commit_without += t.elapsed();
    }
    drop(store);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / updates as f64;
    let hwm_cost = per(commit_with) - per(commit_without);
    println!("\n| batch commit of 1 record | us/commit |");
    println!("|---|---:|");
    println!(
        "| without high-water mark update | {:.1} |",
        per(commit_without)
    );
    println!(
        "| with high-water mark update (every commit) | {:.1} |",
        per(commit_with)
    );
    println!(
        "| high-water mark update alone | {hwm_cost:.1} (at one update per 100 ms: {:.2}% of wall time spent waiting for it) |",
        hwm_cost / 1e5 * 100.0
    );

    // --- Size per record type ---------------------------------------------------------------
    // Per-type sizes from sample journals committed after every record (Never: write only),
    // under two clocks: every command stamped with its own nanosecond time (as generated), and
    // one time stamp per batch of 16 commands (a manager that reads the clock per batch).
    let sample = 100_000.min(n);
    let per_type = |name: &str, batch_stamps: bool| -> [(u64, u64); 4] {
        let scfg = store_cfg(&root.path().join(name), Durability::Never);
        let mut store = recover(&scfg, &binding)
            .expect("recover")
            .open()
            .expect("open");
        let seg = store.journal.segment_path().to_owned();
        let mut size = fs::metadata(&seg).expect("segment").len();
        let mut by_type = [(0u64, 0u64); 4];
        for (i, r) in recs[..sample].iter().enumerate() {
            let name = r
                .cmd
                .broker()
                .map_or("", |b| brokers[b.0 as usize].as_str());
            let time = if batch_stamps {
                recs[i - i % 16].time
            } else {
                r.time
            };
            store
                .journal
                .append(i as u64 + 1, time, r.client_ref, &r.cmd, name)
                .expect("append");
            store.journal.commit().expect("commit");
            let now = fs::metadata(&seg).expect("segment").len();
            let k = match r.cmd {
                Command::New(_) => 0,
                Command::Cancel(_) => 1,
                Command::Amend(_) => 2,
                Command::Phase(_) => 3,
            };
            by_type[k].0 += now - size;
            by_type[k].1 += 1;
            size = now;
        }
        by_type
    };
    let ns_clock = per_type("sizes-ns", false);
    let batch_clock = per_type("sizes-batch", true);
    let fills = fills_for(&recs, 7);
    let tape_cfg = store_cfg(&root.path().join("never"), Durability::Never);
    let mut store = recover(&tape_cfg, &binding)
        .expect("recover")
        .open()
        .expect("open");
    let t = Instant::now();
    for (seq, time, k, f) in &fills {
        store.tape.append(*seq, *time, *k, f).expect("tape append");
    }
    store.tape.commit().expect("commit");
    let tape_time = t.elapsed();
    drop(store);
    let tape_bytes = dir_bytes(&tape_cfg.tape_dir);
    let journal_bytes = dir_bytes(&full.journal_dir);
    let out = root.path().join("export");
    let t = Instant::now();
    let summary = export_csv(
        &full.journal_dir,
        &full.tape_dir,
        &table,
        &out,
        ExportOptions::default(),
    )
    .expect("export");
    let export_time = t.elapsed();
    let body = |name: &str| {
        let text = fs::read_to_string(out.join(name)).expect("csv");
        (text.len() - text.find('\n').map_or(0, |i| i + 1)) as f64
    };
    let cfgb = bincode::config::standard();
    let bincode_of = |f: fn(&Command) -> bool| {
        let v: Vec<usize> = recs
            .iter()
            .filter(|r| f(&r.cmd))
            .map(|r| {
                bincode::serde::encode_to_vec((r.time, r.client_ref, r.cmd), cfgb)
                    .expect("bincode")
                    .len()
            })
            .collect();
        v.iter().sum::<usize>() as f64 / v.len().max(1) as f64
    };
    let bincode_fill = fills
        .iter()
        .map(|(s, t, k, f)| {
            bincode::serde::encode_to_vec((s, t, k, f), cfgb)
                .expect("bincode")
                .len()
        })
        .sum::<usize>() as f64
        / fills.len() as f64;
    let avg = |(b, c): (u64, u64)| b as f64 / c.max(1) as f64;
    println!(
        "\n| record | journal bytes, ns clock | journal bytes, one stamp per 16 | bincode 2 standard (time, client ref, value; no framing, no CRC) |"
    );
    println!("|---|---:|---:|---:|");
    for (k, what, f) in [
        (
            0,
            "NEW",
            (|c: &Command| matches!(c, Command::New(_))) as fn(&Command) -> bool,
        ),
        (1, "CANCEL", |c: &Command| matches!(c, Command::Cancel(_))),
        (2, "AMEND", |c: &Command| matches!(c, Command::Amend(_))),
    ] {
        println!(
            "| {what} | {:.2} | {:.2} | {:.2} |",
            avg(ns_clock[k]),
            avg(batch_clock[k]),
            bincode_of(f)
        );
    }
    println!(
        "| FILL (tape; bincode of seq, time, index, fill) | {:.2} | | {bincode_fill:.2} |",
        tape_bytes as f64 / fills.len() as f64
    );
    println!(
        "\n| form | orders: bytes/record | fills: bytes/fill |\n|---|---:|---:|\n| journal / tape files (all segments) | {:.2} | {:.2} |\n| CSV (replay formats, export) | {:.2} | {:.2} |",
        journal_bytes as f64 / n as f64,
        tape_bytes as f64 / fills.len() as f64,
        body("orders.csv") / n as f64,
        body("trades.csv") / fills.len() as f64
    );

    // --- Recovery -------------------------------------------------------------------------------
    let t = Instant::now();
    let rec = recover(&full, &binding).expect("recover");
    let recover_time = t.elapsed();
    assert!(rec.report().loss.is_none());
    assert_eq!(rec.report().journal_next_seq, n as u64 + 1);
    assert_eq!(rec.report().tape_fills, fills.len() as u64);
    drop(rec);
    let t = Instant::now();
    let all = read_journal(&full.journal_dir).expect("read");
    let whole_time = t.elapsed();
    assert_eq!(all.records.len(), n);
    assert!(all
        .records
        .iter()
        .zip(&recs)
        .all(|(a, b)| a.entry == journal::Entry::Command(b.cmd) && a.time == b.time));
    drop(all);
    let t = Instant::now();
    let streamed = JournalReader::open(&full.journal_dir, 0)
        .expect("reader")
        .fold(0, |n, r| {
            r.expect("record");
            n + 1
        });
    let stream_time = t.elapsed();
    assert_eq!(streamed, n);
    // The same records in 1 MiB segments: a reader of the last 1,000 seqs skips the rest.
    let mut small = store_cfg(&root.path().join("small-segments"), Durability::Never);
    small.segment_bytes = 1 << 20;
    append_run(&small, &binding, &brokers, &recs, BATCH);
    let t = Instant::now();
    let tail = JournalReader::open(&small.journal_dir, n as u64 - 999)
        .expect("reader")
        .fold(0, |n, r| {
            r.expect("record");
            n + 1
        });
    let tail_time = t.elapsed();
    assert_eq!(tail, 1000);
    let t = Instant::now();
    let small_all = JournalReader::open(&small.journal_dir, 0)
        .expect("reader")
        .fold(0, |n, r| {
            r.expect("record");
            n + 1
        });
    let small_time = t.elapsed();
    assert_eq!(small_all, n);
    let t = Instant::now();
    let tape_streamed = TapeReader::open(&full.tape_dir, 0)
        .expect("reader")
        .fold(0, |n, r| {
            r.expect("fill");
            n + 1
        });
    let tape_stream_time = t.elapsed();
    assert_eq!(tape_streamed, fills.len());
    println!(
        "\n| recovery: {n} records, {} fills | time (ms) | records/s |",
        fills.len()
    );
    println!("|---|---:|---:|");
    for (what, d, k) in [
        (
            "recover() (scan + CRC of journal and tape, cross-checks)",
            recover_time,
            n + fills.len(),
        ),
        ("read_journal (whole, into memory)", whole_time, n),
        (
            "JournalReader from seq 1 (streaming, one segment in memory)",
            stream_time,
            n,
        ),
        ("JournalReader from seq 1, 1 MiB segments", small_time, n),
        (
            "JournalReader for the last 1,000 seqs, 1 MiB segments (skips the others)",
            tail_time,
            1_000,
        ),
        (
            "TapeReader from seq 1 (streaming)",
            tape_stream_time,
            fills.len(),
        ),
        ("tape append + commit (never)", tape_time, fills.len()),
        (
            "export_csv (stream, format, write; trades sorted)",
            export_time,
            n + fills.len(),
        ),
    ] {
        println!("| {what} | {:.1} | {} |", d.as_secs_f64() * 1e3, rate(k, d));
    }
    let _ = summary;

    // --- Restore of 70k fills under always -------------------------------------------------------
    let restore = 70_000.min(fills.len());
    let rcfg = store_cfg(&root.path().join("restore"), Durability::Always);
    let mut store = recover(&rcfg, &binding)
        .expect("recover")
        .open()
        .expect("open");
    let before = store.tape.stats();
    let t = Instant::now();
    for (seq, time, k, f) in &fills[..restore] {
        store.tape.append(*seq, *time, *k, f).expect("append");
    }
    store.tape.commit().expect("commit");
    let one_commit = t.elapsed();
    let fsyncs = store.tape.stats().fsyncs - before.fsyncs;
    drop(store);
    // Baseline in the same run: a commit per fill (what `always` did per append before).
    let per_fill = 2_000.min(restore);
    let bcfg = store_cfg(&root.path().join("restore-old"), Durability::Always);
    let mut store = recover(&bcfg, &binding)
        .expect("recover")
        .open()
        .expect("open");
    let t = Instant::now();
    for (seq, time, k, f) in &fills[..per_fill] {
        store.tape.append(*seq, *time, *k, f).expect("append");
        store.tape.commit().expect("commit");
    }
    let per_fill_time = t.elapsed();
    drop(store);
    println!("\n| restore of {restore} fills under always | time (ms) | fsyncs |");
    println!("|---|---:|---:|");
    println!(
        "| appends + one commit (now) | {:.1} | {fsyncs} |",
        one_commit.as_secs_f64() * 1e3
    );
    println!(
        "| a commit per fill (before), measured on {per_fill}, scaled to {restore} | {:.1} | {restore} |",
        per_fill_time.as_secs_f64() * 1e3 * restore as f64 / per_fill as f64
    );
}
