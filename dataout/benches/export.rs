//! Export throughput on a seeded tape of one million trades: bars per interval, trades as CSV
//! and Parquet, the Qlib directory; baseline in the same run: the hand-formatted trades CSV the
//! manager's `journal export --csv` writes today (one `writeln!` per row into a String).
//!
//! Run: `cargo bench -p dataout --bench export`

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Instant;

use dataout::{bars, qlib, write_table, Format, Interval, TradeRecord, UtcOffset};
use matching::Aggressor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TRADES: usize = 1_000_000;
const NS: i64 = 1_000_000_000;
const CODES: [&str; 8] = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG", "HHH"];

fn tape() -> Vec<TradeRecord<'static>> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // 20 trading days of 50,000 trades from 09:00 local (02:00Z) on 2025-06-02.
    let mut t = 1_748_829_600 * NS;
    (0..TRADES as u64)
        .map(|seq| {
            if seq % 50_000 == 0 && seq > 0 {
                t += 86_400 * NS - 20_000 * NS;
            }
            t += rng.gen_range(0..800_000_000);
            TradeRecord {
                time: t,
                seq,
                fill: 0,
                security: CODES[rng.gen_range(0..CODES.len())],
                price: rng.gen_range(200..2_000) * 50,
                qty: rng.gen_range(1..50) * 100,
                buy_order_id: rng.gen(),
                sell_order_id: rng.gen(),
                aggressor: if rng.gen_bool(0.5) {
                    Aggressor::Buy
                } else {
                    Aggressor::Sell
                },
            }
        })
        .collect()
}

fn report(name: &str, rows: usize, start: Instant, bytes: Option<u64>) {
    let s = start.elapsed().as_secs_f64();
    let size = bytes.map_or(String::new(), |b| format!("{:>10.1} MB", b as f64 / 1e6));
    println!(
        "{name:<44} {:>8.0} ms {:>10.2} M rows/s {size}",
        s * 1e3,
        rows as f64 / s / 1e6
    );
}

fn main() {
    let trades = tape();
    let dir = tempfile::tempdir().unwrap();
    println!("{TRADES} trades, 8 securities, 20 trading days");

    let start = Instant::now();
    let mut text = String::with_capacity(TRADES * 48);
    text.push_str(matching::stream::TRADES_HEADER);
    text.push('\n');
    for t in &trades {
        let _ = writeln!(
            text,
            "{},{},{},{},{},{}",
            t.security,
            t.price,
            t.qty,
            t.buy_order_id,
            t.sell_order_id,
            t.aggressor.as_str()
        );
    }
    let path = dir.path().join("baseline.csv");
    std::fs::write(&path, &text).unwrap();
    report(
        "baseline: replay trades CSV (writeln!)",
        TRADES,
        start,
        Some(text.len() as u64),
    );
    drop(text);

    for format in [Format::Csv, Format::Parquet] {
        let path = dir.path().join(format.file_name("trades"));
        let start = Instant::now();
        write_table(&path, format, &trades).unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        report(
            &format!("dataout trades {format} (+time, seq, fill)"),
            TRADES,
            start,
            Some(size),
        );
    }

    for interval in Interval::ALL {
        let start = Instant::now();
        let b = black_box(bars(interval, UtcOffset::HOSE, &trades).unwrap());
        report(
            &format!("bars {interval} ({} bars)", b.len()),
            TRADES,
            start,
            None,
        );
        if interval == Interval::Second {
            let path = dir.path().join(Format::Parquet.bars_file_name(interval));
            let start = Instant::now();
            write_table(&path, Format::Parquet, &b).unwrap();
            let size = std::fs::metadata(&path).unwrap().len();
            report("  write 1s bars as Parquet", b.len(), start, Some(size));
        }
        if interval == Interval::Day {
            let start = Instant::now();
            qlib::write_qlib(&dir.path().join("qlib"), &b).unwrap();
            report("  write Qlib directory of daily bars", b.len(), start, None);
        }
    }
}
