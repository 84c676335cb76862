//! Feed benchmark (plain `main`, no harness): one seeded stream through the gateway and the
//! engine, alone (the baseline, same run), with the FeedBuilder, and with the builder plus 16
//! subscribers' views and queues (drained every 64 commands, as session tasks would), and with
//! the 16 subscribers' FeedClients applying everything too.
//!
//! `cargo bench -p feed --bench feed` prints commands/s (median of 3 runs), feed messages/s and
//! the cost per command. `BENCH_ORDERS` (default 1,000,000) sets the stream length,
//! `BENCH_SECURITIES` (default 100) the listing, `BENCH_SUBSCRIBERS` (default 16) the number
//! of subscribers (cycling through L3 all, L2(10) all, L1 all, L2(5) of 10 securities).
//!
//! Everything runs on one thread, so the figures are the CPU cost of the feed next to the
//! engine's; in the manager the feed task runs beside the sequencing path, not on it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{Driver, Gen, GenConfig};
use feed::{
    Feed, FeedBuilder, FeedClient, FeedLevel, QueuePolicy, Securities, SubscriberId, Subscription,
};
use matching::{Command, SecurityId, SecurityTable};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Runs `f` three times; the median duration and the last run's count.
fn median3(mut f: impl FnMut() -> (u64, u64)) -> (Duration, u64, u64) {
    let mut runs = Vec::new();
    let mut counts = (0, 0);
    for _ in 0..3 {
        let start = Instant::now();
        counts = f();
        runs.push(start.elapsed());
    }
    runs.sort();
    (runs[1], counts.0, counts.1)
}

/// `count` subscriptions cycling through L3 all, L2(10) all, L1 all, L2(5) of 10 securities.
fn subscriptions(n: u32, count: u32) -> Vec<Subscription> {
    let mut subs = Vec::new();
    for i in 0..count {
        let securities = if i % 4 == 3 {
            Securities::Only((0..10).map(|k| SecurityId((i * 7 + k) % n)).collect())
        } else {
            Securities::All
        };
        let level = match i % 4 {
            0 => FeedLevel::L3,
            1 => FeedLevel::L2 { levels: 10 },
            2 => FeedLevel::L1,
            _ => FeedLevel::L2 { levels: 5 },
        };
        subs.push(Subscription { level, securities });
    }
    subs
}

fn main() {
    let orders = env_usize("BENCH_ORDERS", 1_000_000);
    let securities = env_usize("BENCH_SECURITIES", 100);
    let subscribers = env_usize("BENCH_SUBSCRIBERS", 16);
    let cfg = GenConfig {
        securities,
        spread_ticks: 12,
        nasty: 0.05,
        phases: 0.0,
    };
    let mut gen = Gen::new(20_260_101, cfg);
    let table: SecurityTable = gen.table().clone();
    let rules = gen.rules();
    let cmds: Vec<Command> = (0..orders).map(|_| gen.next_command()).collect();
    println!(
        "feed bench: {orders} commands, {securities} securities, one thread, median of 3 runs"
    );

    let (engine_alone, batches, _) = median3(|| {
        let mut d = Driver::new(rules, &table);
        let mut n = 0u64;
        for c in &cmds {
            d.step(c, |c| n += black_box(c.events.len()) as u64);
        }
        (n, 0)
    });
    let base = orders as f64 / engine_alone.as_secs_f64();
    println!(
        "engine alone (gateway + engine):      {:>10.0} commands/s  ({batches} events)",
        base
    );

    let (with_builder, canonical, _) = median3(|| {
        let mut d = Driver::new(rules, &table);
        let mut b = FeedBuilder::new(&table);
        let mut n = 0u64;
        for c in &cmds {
            d.step(c, |c| {
                n += b.apply(c).unwrap().messages.len() as u64;
            });
        }
        (n, 0)
    });
    report(
        "engine + FeedBuilder",
        orders,
        with_builder,
        base,
        canonical,
        None,
    );

    let subs = subscriptions(securities as u32, subscribers as u32);
    let mut client_report: Vec<String> = Vec::new();
    let mut run_fanout = |apply_clients: bool| {
        let mut d = Driver::new(rules, &table);
        let mut feed = Feed::new(&table, QueuePolicy::default());
        let ids: Vec<SubscriberId> = subs.iter().map(|s| feed.subscribe(s).unwrap()).collect();
        let mut clients: Vec<FeedClient> = subs.iter().map(|_| FeedClient::new()).collect();
        let mut out = Vec::with_capacity(1 << 16);
        let mut delivered = 0u64;
        // Per subscriber: time spent in its client, messages applied.
        let mut client_cost = vec![(Duration::ZERO, 0u64); subs.len()];
        for (i, c) in cmds.iter().enumerate() {
            d.step_feed(c, &mut feed);
            if i % 64 == 63 || i + 1 == cmds.len() {
                for (k, &id) in ids.iter().enumerate() {
                    out.clear();
                    feed.poll(id, usize::MAX, &mut out).unwrap();
                    delivered += out.len() as u64;
                    if apply_clients {
                        let start = Instant::now();
                        for m in &out {
                            clients[k].apply(m);
                        }
                        client_cost[k].0 += start.elapsed();
                        client_cost[k].1 += out.len() as u64;
                    }
                }
            }
        }
        for (k, &id) in ids.iter().enumerate() {
            let s = feed.fanout().stats(id).unwrap();
            assert_eq!(s.overflows, 0, "subscriber {k} overflowed");
        }
        if apply_clients {
            // Per level: (time, messages) summed over its subscribers.
            let mut per_level: Vec<(String, Duration, u64)> = Vec::new();
            for (k, &(d, n)) in client_cost.iter().enumerate() {
                let name = match (&subs[k].level, &subs[k].securities) {
                    (l, Securities::All) => format!("{l:?}, all securities"),
                    (l, Securities::Only(v)) => format!("{l:?}, {} securities", v.len()),
                };
                match per_level.iter_mut().find(|(l, _, _)| *l == name) {
                    Some(e) => {
                        e.1 += d;
                        e.2 += n;
                    }
                    None => per_level.push((name, d, n)),
                }
            }
            client_report.clear();
            for (name, d, n) in per_level {
                client_report.push(format!(
                    "  clients {name:<36} {:>10} msgs, {:>6.0} ns/msg applied",
                    n,
                    d.as_nanos() as f64 / n.max(1) as f64
                ));
            }
            client_report.push(format!(
                "  resting orders at the end: {} (every L3 client holds them all)",
                d.engine().live_orders()
            ));
        }
        (feed.builder().feed_seq(), delivered)
    };
    let (with_subs, canonical, delivered) = median3(|| run_fanout(false));
    report(
        &format!("engine + feed + {subscribers} subscribers"),
        orders,
        with_subs,
        base,
        canonical,
        Some(delivered),
    );
    let (with_clients, canonical, delivered) = median3(|| run_fanout(true));
    report(
        &format!("... + their {subscribers} FeedClients applying"),
        orders,
        with_clients,
        base,
        canonical,
        Some(delivered),
    );
    for line in &client_report {
        println!("{line}");
    }
    // One L3 client alone (warm caches, as in its own process) on a recorded L3 stream.
    let recorded = {
        let mut d = Driver::new(rules, &table);
        let mut feed = Feed::new(&table, QueuePolicy::default());
        let all = Subscription {
            level: FeedLevel::L3,
            securities: Securities::All,
        };
        let id = feed.subscribe(&all).unwrap();
        let mut msgs = Vec::new();
        for c in &cmds {
            d.step_feed(c, &mut feed);
            feed.poll(id, usize::MAX, &mut msgs).unwrap();
            if msgs.len() >= 2_000_000 {
                break;
            }
        }
        msgs
    };
    let (alone, applied, _) = median3(|| {
        let mut client = FeedClient::new();
        for m in &recorded {
            client.apply(m);
        }
        assert!(client.is_synced());
        (client.stats().applied, 0)
    });
    println!(
        "one L3 FeedClient alone: {applied} msgs, {:.0} ns/msg, {:.0} msgs/s",
        alone.as_nanos() as f64 / applied as f64,
        applied as f64 / alone.as_secs_f64()
    );
    println!(
        "feed cost per command: builder {:.0} ns, builder + {subscribers} subscribers {:.0} ns",
        (with_builder.as_secs_f64() - engine_alone.as_secs_f64()) * 1e9 / orders as f64,
        (with_subs.as_secs_f64() - engine_alone.as_secs_f64()) * 1e9 / orders as f64,
    );
}

fn report(
    what: &str,
    orders: usize,
    d: Duration,
    base: f64,
    canonical: u64,
    delivered: Option<u64>,
) {
    let rate = orders as f64 / d.as_secs_f64();
    let secs = d.as_secs_f64();
    print!(
        "{what:<38}{rate:>10.0} commands/s  ({:>5.1}% of alone); feed {:>10.0} msgs/s",
        100.0 * rate / base,
        canonical as f64 / secs
    );
    if let Some(n) = delivered {
        print!("; subscribers {:>10.0} msgs/s ({n} msgs)", n as f64 / secs);
    }
    println!();
}
