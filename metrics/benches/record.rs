//! Cost of recording and scraping, against prometheus-client's own (mutex) histogram and
//! counter as the baseline, in the same run.
//!
//! Run: `cargo bench -p metrics --bench record`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use matching::{OrderType, Side};
use metrics::{LatencyHistogram, Metrics, OrderResult};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

const N: u64 = 20_000_000;

fn latency(i: u64) -> Duration {
    // Spread over the buckets: 0 .. ~1 ms.
    Duration::from_nanos((i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 44) & 0xF_FFFF)
}

fn bounds_s() -> Vec<f64> {
    metrics::LATENCY_BOUNDS_US
        .iter()
        .map(|us| *us as f64 / 1e6)
        .collect()
}

/// ns per call of `f`, run `n` times on each of `threads` threads at once.
fn per_op(threads: usize, n: u64, f: impl Fn(u64) + Send + Sync + 'static) -> f64 {
    let f = Arc::new(f);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let f = f.clone();
            std::thread::spawn(move || {
                for i in 0..n {
                    f(i ^ ((t as u64) << 40));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    start.elapsed().as_nanos() as f64 / (n as f64 * threads as f64)
}

fn main() {
    println!("metrics recording cost, {N} operations per thread (ns per operation)");
    println!("{:<58} {:>8} {:>8}", "operation", "1 thread", "2 threads");
    let row = |name: &str, a: f64, b: f64| println!("{name:<58} {a:>8.1} {b:>8.1}");

    let ours = LatencyHistogram::default();
    let theirs = Histogram::new(bounds_s());
    let (o1, t1) = (ours.clone(), theirs.clone());
    let (o2, t2) = (ours.clone(), theirs.clone());
    row(
        "histogram observe: ours (atomics)",
        per_op(1, N, move |i| o1.observe(black_box(latency(i)))),
        per_op(2, N, move |i| o2.observe(black_box(latency(i)))),
    );
    row(
        "histogram observe: baseline prometheus-client (mutex)",
        per_op(1, N, move |i| {
            t1.observe(black_box(latency(i).as_secs_f64()))
        }),
        per_op(2, N, move |i| {
            t2.observe(black_box(latency(i).as_secs_f64()))
        }),
    );
    let c = Counter::<u64>::default();
    let (c1, c2) = (c.clone(), c.clone());
    row(
        "counter inc: prometheus-client (atomic)",
        per_op(1, N, move |_| {
            c1.inc();
        }),
        per_op(2, N, move |_| {
            c2.inc();
        }),
    );
    let m = Arc::new(Metrics::new());
    let (m1, m2) = (m.clone(), m.clone());
    row(
        "Metrics::order_final (counter + latency histogram)",
        per_op(1, N, move |i| {
            m1.order_final(OrderType::Limit, Side::Buy, OrderResult::Rested, latency(i))
        }),
        per_op(2, N, move |i| {
            m2.order_final(
                OrderType::Limit,
                Side::Sell,
                OrderResult::Filled,
                latency(i),
            )
        }),
    );
    let m3 = m.clone();
    row(
        "Metrics::trade",
        per_op(1, N, move |i| {
            m3.trade(matching::Aggressor::Buy, i & 0xFFFF)
        }),
        f64::NAN,
    );
    black_box((ours.count(), c.get()));

    m.executor_stats("exec-1", 10, 1);
    let scrapes = 2_000;
    let start = Instant::now();
    let mut bytes = 0;
    for _ in 0..scrapes {
        bytes = black_box(m.encode()).len();
    }
    let per = start.elapsed() / scrapes;
    println!(
        "encode (one scrape, {bytes} bytes): {:.1} us",
        per.as_secs_f64() * 1e6
    );
}
