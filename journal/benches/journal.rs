//! Journal throughput, size and recovery on a seeded, realistic order stream.
//!
//! `cargo bench -p manager --bench journal` (optional args: `<orders> <always_orders>`, defaults
//! 1,000,000 and 2,000). Prints appends/s per durability mode, bytes/order of the journal
//! against the replay CSV and bincode 2 (standard config, serde) of each `Command`, and the
//! time to recover (open) the journal of all orders. Files go under the cargo target tmp dir.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use manager::journal::{
    export_csv, read_orders, Durability, JournalConfig, OrderJournal, DEFAULT_SEGMENT_BYTES,
};
use matching::{
    BrokerId, CancelOrder, Command, NewOrder, OrderId, OrderType, SecurityId, SecurityTable, Side,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BATCH: usize = 256;

fn tick(price: i64) -> i64 {
    match price {
        p if p < 10_000 => 10,
        p if p < 50_000 => 50,
        _ => 100,
    }
}

/// Securities across all three tick bands, 12 brokers, ids increasing, 20% cancels of recent
/// orders, prices within +-15 ticks of the reference, lots of 100 to 5,000.
fn generate(n: usize, seed: u64) -> (SecurityTable, Vec<(Command, String)>) {
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
    let mut live: Vec<(u64, u32, u32)> = Vec::new();
    let mut next_id = 1_000_000u64;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let b = rng.gen_range(0..brokers.len() as u32);
        if rng.gen_bool(0.2) && !live.is_empty() {
            // Cancels mostly hit recent orders.
            let back = rng.gen_range(0..live.len().min(2_000));
            let (id, broker, sec) = live.swap_remove(live.len() - 1 - back);
            let cmd = Command::Cancel(CancelOrder {
                id: OrderId(id),
                broker: BrokerId(broker),
                security: SecurityId(sec),
            });
            out.push((cmd, brokers[broker as usize].clone()));
            continue;
        }
        let sec = rng.gen_range(0..refs.len() as u32);
        let reference = refs[sec as usize];
        let kind = match rng.gen_range(0..100) {
            0..=84 => OrderType::Limit,
            85..=89 => OrderType::Market,
            90..=94 => OrderType::Ioc,
            _ => OrderType::Fok,
        };
        let price = if kind == OrderType::Market {
            0
        } else {
            reference + tick(reference) * rng.gen_range(-15..=15)
        };
        next_id += rng.gen_range(1..=3);
        let cmd = Command::New(NewOrder {
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
        });
        if kind == OrderType::Limit {
            live.push((next_id, b, sec));
        }
        out.push((cmd, brokers[b as usize].clone()));
    }
    (table, out)
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .expect("journal dir")
        .map(|e| e.expect("dir entry").metadata().expect("metadata").len())
        .sum()
}

/// Appends all orders (commit every `batch`), returns elapsed time.
fn run(dir: &Path, durability: Durability, orders: &[(Command, String)], batch: usize) -> Duration {
    let cfg = JournalConfig {
        dir: dir.to_owned(),
        segment_bytes: DEFAULT_SEGMENT_BYTES,
        durability,
    };
    let (mut j, _) = OrderJournal::open(cfg).expect("open journal");
    let start = Instant::now();
    for (i, (cmd, name)) in orders.iter().enumerate() {
        j.append(i as u64 + 1, cmd, name).expect("append");
        if (i + 1) % batch == 0 {
            j.commit().expect("commit");
        }
    }
    j.commit().expect("commit");
    start.elapsed()
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.replace('_', "").parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(1_000_000);
    let n_always = args.get(1).copied().unwrap_or(2_000).min(n);
    let (table, orders) = generate(n, 42);
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tmp dir");
    let cancels = orders
        .iter()
        .filter(|(c, _)| matches!(c, Command::Cancel(_)))
        .count();
    println!(
        "journal bench: {n} orders ({:.1}% cancels), {} securities, segments {} MiB, dir {}",
        100.0 * cancels as f64 / n as f64,
        table.len(),
        DEFAULT_SEGMENT_BYTES >> 20,
        root.path().display()
    );

    println!("\n| durability | orders | commit every | time (s) | appends/s |");
    println!("|---|---:|---:|---:|---:|");
    let mut full_dir = None;
    for (mode, count, batch) in [
        (Durability::Always, n_always, 1),
        (Durability::Batch, n, BATCH),
        (Durability::Never, n, BATCH),
    ] {
        let dir = root.path().join(mode.as_str());
        let t = run(&dir, mode, &orders[..count], batch);
        println!(
            "| {mode} | {count} | {} | {:.3} | {:.0} |",
            if mode == Durability::Always {
                "each append".to_string()
            } else {
                batch.to_string()
            },
            t.as_secs_f64(),
            count as f64 / t.as_secs_f64()
        );
        if mode == Durability::Never {
            full_dir = Some(dir);
        }
    }
    let dir = full_dir.expect("never run");

    // Size: journal files (headers included) vs replay CSV (exported from this journal) vs
    // bincode of each Command on its own (no framing, no checksum, broker as an id).
    let journal = dir_bytes(&dir);
    let out = root.path().join("export");
    let tape = root.path().join("tape");
    fs::create_dir_all(&tape).expect("tape dir");
    let t = Instant::now();
    export_csv(&dir, &tape, &table, &out).expect("export");
    let export_time = t.elapsed();
    let csv_text = fs::read_to_string(out.join("orders.csv")).expect("orders.csv");
    let csv = csv_text.len() - csv_text.find('\n').map_or(0, |i| i + 1);
    let cfg = bincode::config::standard();
    let bincode: usize = orders
        .iter()
        .map(|(c, _)| {
            bincode::serde::encode_to_vec(c, cfg)
                .expect("bincode")
                .len()
        })
        .sum();
    let per = |b: usize| b as f64 / n as f64;
    println!("\n| form | total bytes | bytes/order | vs journal |");
    println!("|---|---:|---:|---:|");
    for (form, bytes) in [
        ("journal (framed, CRC32, dict)", journal as usize),
        ("CSV (replay orders format, no header)", csv),
        ("bincode 2 standard (Command only)", bincode),
    ] {
        println!(
            "| {form} | {bytes} | {:.2} | {:.2}x |",
            per(bytes),
            bytes as f64 / journal as f64
        );
    }

    // Recovery: open = scan + decode + CRC of every record, and read-only read_orders.
    let t = Instant::now();
    let cfg = JournalConfig {
        dir: dir.clone(),
        segment_bytes: DEFAULT_SEGMENT_BYTES,
        durability: Durability::Batch,
    };
    let (j, rec) = OrderJournal::open(cfg).expect("recover");
    let open_time = t.elapsed();
    assert_eq!(rec.orders.len(), n, "recovered every order");
    assert_eq!(j.next_seq(), n as u64 + 1);
    assert!(
        rec.orders
            .iter()
            .zip(&orders)
            .all(|((_, a), (b, _))| a == b),
        "recovered orders match"
    );
    drop((j, rec));
    let t = Instant::now();
    let rec = read_orders(&dir).expect("read");
    let read_time = t.elapsed();
    println!(
        "\n| recovery of {} orders | time (ms) | orders/s |",
        rec.orders.len()
    );
    println!("|---|---:|---:|");
    for (what, d) in [
        ("OrderJournal::open", open_time),
        ("read_orders", read_time),
        ("export_csv (read + format + write)", export_time),
    ] {
        println!(
            "| {what} | {:.1} | {:.0} |",
            d.as_secs_f64() * 1e3,
            n as f64 / d.as_secs_f64()
        );
    }
}
