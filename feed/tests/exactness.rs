//! Random streams through the sequential exchange -> FeedBuilder -> views -> FeedClients:
//! every subscriber's books equal the engine's books after every command (cheap checks on the
//! command's security) and at sampled points and the end (everything, L3 order lists included).
//! The builder itself refuses any batch whose executions are not in the mirror's priority order
//! or whose totals differ from the engine's, so every accepted batch is checked too.

mod common;

use std::collections::BTreeMap;

use common::{Driver, Gen, GenConfig};
use feed::{
    Applied, Body, ClientBook, Completed, Feed, FeedClient, FeedLevel, QueuePolicy, Securities,
    SubscriberId, Subscription,
};
use matching::{Engine, Event, SecurityId, Side};

struct Sub {
    id: SubscriberId,
    sub: Subscription,
    client: FeedClient,
}

fn wants(sub: &Subscription, sec: SecurityId) -> bool {
    match &sub.securities {
        Securities::All => true,
        Securities::Only(v) => v.contains(&sec),
    }
}

/// A mix of levels and security lists (ids beyond the listing wrap around).
fn subscriptions(n: u32) -> Vec<Subscription> {
    let only = |v: &[u32]| {
        let mut ids: Vec<SecurityId> = v.iter().map(|&s| SecurityId(s % n)).collect();
        ids.dedup();
        Securities::Only(ids)
    };
    vec![
        Subscription {
            level: FeedLevel::L3,
            securities: Securities::All,
        },
        Subscription {
            level: FeedLevel::L3,
            securities: only(&[0, 2]),
        },
        Subscription {
            level: FeedLevel::L2 { levels: 5 },
            securities: Securities::All,
        },
        Subscription {
            level: FeedLevel::L2 { levels: 1000 },
            securities: only(&[1, 3, 5]),
        },
        Subscription {
            level: FeedLevel::L2 { levels: 1 },
            securities: only(&[4]),
        },
        Subscription {
            level: FeedLevel::L1,
            securities: Securities::All,
        },
    ]
}

/// The subscriber's view of `sec` equals the engine's book (and, for L3, the builder's mirror
/// order by order). `full`: compare whole order lists too.
fn check(engine: &Engine, feed: &Feed, s: &Sub, sec: SecurityId, full: bool, at: u64) {
    let Some(view) = s.client.security(sec) else {
        assert!(!wants(&s.sub, sec), "cmd {at}: {:?} lacks {sec:?}", s.sub);
        return;
    };
    assert!(wants(&s.sub, sec), "cmd {at}: {:?} holds {sec:?}", s.sub);
    assert_eq!(
        Some(view.phase),
        feed.builder().phase(sec),
        "cmd {at}: phase"
    );
    let window = s.sub.level.window().unwrap_or(usize::MAX);
    assert_eq!(
        view.book.depth(usize::MAX),
        engine.depth(sec, window),
        "cmd {at}: {:?} depth of {sec:?}",
        s.sub.level
    );
    // Orders at market: the engine counts them in its totals, not in its depth.
    let all = engine.depth(sec, usize::MAX);
    let (bid_total, ask_total) = engine.totals(sec);
    let limit = |v: &[(i64, u64)]| v.iter().map(|l| l.1).sum::<u64>();
    let at_market = |side| view.book.at_market(side).map_or(0, |l| l.qty);
    assert_eq!(
        (at_market(Side::Buy), at_market(Side::Sell)),
        (bid_total - limit(&all.0), ask_total - limit(&all.1)),
        "cmd {at}: {:?} at market in {sec:?}",
        s.sub.level
    );
    if let ClientBook::Orders(book) = &view.book {
        assert_eq!(book.totals(), engine.totals(sec), "cmd {at}: totals");
        assert_eq!(
            book.len(),
            engine.book(sec).unwrap().len(),
            "cmd {at}: count"
        );
        if full {
            let mirror = feed.builder().book(sec).unwrap();
            for side in [Side::Buy, Side::Sell] {
                assert!(
                    book.orders(side).eq(mirror.orders(side)),
                    "cmd {at}: {side:?} orders of {sec:?}"
                );
            }
        }
    }
}

fn drain(feed: &mut Feed, subs: &mut [Sub], kinds: &mut BTreeMap<&'static str, u64>) {
    let mut msgs = Vec::new();
    for s in subs.iter_mut() {
        msgs.clear();
        feed.poll(s.id, usize::MAX, &mut msgs).unwrap();
        for m in &msgs {
            let r = s.client.apply(m);
            assert_eq!(r, Applied::Applied, "{:?}: {m:?}", s.sub.level);
            let kind = match &m.body {
                Body::Add { .. } => "add",
                Body::Reduce { .. } => "reduce",
                Body::Delete { .. } => "delete",
                Body::Trade(_) => "trade",
                Body::Level { .. } => "level",
                Body::Quote { .. } => "quote",
                Body::Phase { .. } => "phase",
                Body::Auction { .. } => "auction",
                Body::Indicative { .. } => "indicative",
                Body::Reference { .. } => "reference",
                Body::SnapshotBegin { .. } => "snapshot_begin",
                Body::Snapshot(_) => "snapshot",
                Body::Heartbeat => "heartbeat",
            };
            *kinds.entry(kind).or_default() += 1;
        }
    }
}

fn run(seed: u64, commands: usize, cfg: GenConfig, sample: usize) {
    let mut gen = Gen::new(seed, cfg);
    let table = gen.table().clone();
    let mut driver = Driver::new(gen.rules(), &table);
    let mut feed = Feed::new(
        &table,
        QueuePolicy {
            capacity: 1 << 22,
            ..QueuePolicy::default()
        },
    );
    let mut subs: Vec<Sub> = subscriptions(cfg.securities as u32)
        .into_iter()
        .map(|sub| Sub {
            id: feed.subscribe(&sub).unwrap(),
            sub,
            client: FeedClient::new(),
        })
        .collect();
    let mut kinds = BTreeMap::new();
    let mut events_seen: BTreeMap<&'static str, u64> = BTreeMap::new();
    drain(&mut feed, &mut subs, &mut kinds);
    for i in 0..commands {
        let cmd = gen.next_command();
        let mut touched = Vec::new();
        driver.step(&cmd, |c| {
            for e in c.events {
                let k = match e {
                    Event::Accepted { .. } => "accepted",
                    Event::Rejected { .. } => "rejected",
                    Event::Fill(_) => "fill",
                    Event::Rested { .. } => "rested",
                    Event::Amended { .. } => "amended",
                    Event::Cancelled { .. } => "cancelled",
                    Event::Auction { .. } => "auction",
                    Event::Reference { .. } => "reference",
                    Event::Totals { .. } => "totals",
                };
                *events_seen.entry(k).or_default() += 1;
            }
            if let Err(e) = feed.apply(c) {
                panic!(
                    "seed {seed} command {} ({:?}): {e}\nevents: {:?}",
                    c.seq, c.command, c.events
                );
            }
            touched.push(c.security);
        });
        drain(&mut feed, &mut subs, &mut kinds);
        let full = i % sample == 0;
        for s in &subs {
            assert!(s.client.is_synced());
            if full {
                for (sec, _, _) in table.iter() {
                    check(driver.engine(), &feed, s, sec, true, driver.seq);
                }
            } else {
                for &sec in &touched {
                    check(driver.engine(), &feed, s, sec, false, driver.seq);
                }
            }
        }
    }
    for s in &subs {
        for (sec, _, _) in table.iter() {
            check(driver.engine(), &feed, s, sec, true, driver.seq);
        }
    }
    eprintln!("seed {seed}: engine events {events_seen:?}");
    eprintln!("seed {seed}: feed messages {kinds:?}");
    for k in [
        "accepted",
        "rejected",
        "fill",
        "rested",
        "cancelled",
        "totals",
    ] {
        assert!(events_seen.get(k).is_some_and(|&n| n > 0), "no {k} event");
    }
    for k in [
        "add", "delete", "trade", "level", "quote", "phase", "snapshot",
    ] {
        assert!(kinds.get(k).is_some_and(|&n| n > 0), "no {k} message");
    }
}

#[test]
fn subscribers_books_equal_the_engines_at_every_command() {
    for seed in [1, 2, 3] {
        run(seed, 60_000, GenConfig::default(), 500);
    }
}

#[test]
fn deep_narrow_books_with_many_rejects() {
    // Three ticks each side: long FIFOs at few prices, most orders trade; many bad commands.
    let cfg = GenConfig {
        securities: 3,
        spread_ticks: 3,
        nasty: 0.3,
        phases: 0.01,
    };
    run(11, 60_000, cfg, 250);
}

#[test]
fn wide_books_many_securities() {
    let cfg = GenConfig {
        securities: 40,
        spread_ticks: 200,
        nasty: 0.05,
        phases: 0.0005,
    };
    run(21, 20_000, cfg, 2_000);
}

/// The grid completes securities out of global order (each executor at its own pace) and a
/// dead executor's late events can arrive again: the feed sees per-security order only, and a
/// replayed batch is refused (the manager dedupes first; the builder is a second line).
#[test]
fn out_of_order_securities_and_replayed_batches() {
    use rand::{Rng, SeedableRng};
    let cfg = GenConfig::default();
    let mut gen = Gen::new(41, cfg);
    let table = gen.table().clone();
    let mut driver = Driver::new(gen.rules(), &table);
    type Batch = (u64, i64, SecurityId, matching::Command, Vec<Event>);
    let mut per_security: Vec<std::collections::VecDeque<Batch>> =
        vec![Default::default(); table.len()];
    let mut in_order: Vec<Batch> = Vec::new();
    for _ in 0..20_000 {
        let cmd = gen.next_command();
        driver.step(&cmd, |c| {
            let b = (c.seq, c.time, c.security, *c.command, c.events.to_vec());
            per_security[c.security.0 as usize].push_back(b.clone());
            in_order.push(b);
        });
    }
    let all = Subscription {
        level: FeedLevel::L3,
        securities: Securities::All,
    };
    // Per security, the L3 bodies of a feed fed in global order...
    let bodies = |feed: &mut Feed, id| {
        let mut msgs = Vec::new();
        feed.poll(id, usize::MAX, &mut msgs).unwrap();
        let mut by_sec: BTreeMap<SecurityId, Vec<Body>> = BTreeMap::new();
        for m in msgs {
            if let Some(sec) = m.body.security() {
                if !matches!(m.body, Body::Snapshot(_)) {
                    by_sec.entry(sec).or_default().push(m.body);
                }
            }
        }
        by_sec
    };
    let mut sequential = Feed::new(&table, QueuePolicy::default());
    let sid = sequential.subscribe(&all).unwrap();
    for (seq, time, security, command, events) in &in_order {
        let c = Completed {
            seq: *seq,
            time: *time,
            security: *security,
            command,
            events,
        };
        sequential.apply(c).unwrap();
    }
    // ... equal those of a feed fed in a random interleaving, with replays mixed in.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut shuffled = Feed::new(
        &table,
        QueuePolicy {
            capacity: 1 << 22,
            ..QueuePolicy::default()
        },
    );
    let id = shuffled.subscribe(&all).unwrap();
    let mut client = FeedClient::new();
    let mut done: Vec<Vec<Batch>> = vec![Vec::new(); table.len()];
    let mut replays = 0;
    loop {
        let live: Vec<usize> = (0..table.len())
            .filter(|&s| !per_security[s].is_empty())
            .collect();
        if live.is_empty() {
            break;
        }
        let s = live[rng.gen_range(0..live.len())];
        let b = per_security[s].pop_front().unwrap();
        let feed_seq = shuffled.builder().feed_seq();
        if rng.gen_bool(0.02) && !done[s].is_empty() {
            let (seq, time, security, command, events) = &done[s][rng.gen_range(0..done[s].len())];
            let c = Completed {
                seq: *seq,
                time: *time,
                security: *security,
                command,
                events,
            };
            assert!(matches!(
                shuffled.apply(c),
                Err(feed::FeedError::Stale { .. })
            ));
            assert_eq!(shuffled.builder().feed_seq(), feed_seq);
            replays += 1;
        }
        let (seq, time, security, command, events) = &b;
        let c = Completed {
            seq: *seq,
            time: *time,
            security: *security,
            command,
            events,
        };
        shuffled.apply(c).unwrap();
        done[s].push(b);
    }
    assert!(replays > 100);
    let mut msgs = Vec::new();
    shuffled.poll(id, usize::MAX, &mut msgs).unwrap();
    for m in &msgs {
        assert_eq!(client.apply(m), Applied::Applied);
    }
    for (sec, _, _) in table.iter() {
        assert_eq!(
            client.depth(sec, usize::MAX),
            driver.engine().depth(sec, usize::MAX)
        );
    }
    let seq_bodies = bodies(&mut sequential, sid);
    let mut shuffled_bodies: BTreeMap<SecurityId, Vec<Body>> = BTreeMap::new();
    for m in msgs {
        if let Some(sec) = m.body.security() {
            if !matches!(m.body, Body::Snapshot(_)) {
                shuffled_bodies.entry(sec).or_default().push(m.body);
            }
        }
    }
    assert_eq!(seq_bodies, shuffled_bodies);
}

/// The feed's indicative uncross (the engine's rule applied to the mirror book) equals the
/// engine's own after every command of days with many phase changes, as an L1 subscriber
/// receives it (`None` outside call phases and when nothing would trade).
#[test]
fn indicative_uncross_equals_the_engines() {
    let cfg = GenConfig {
        phases: 0.02,
        ..GenConfig::default()
    };
    let mut gen = Gen::new(41, cfg);
    let table = gen.table().clone();
    let mut feed =
        Feed::new(&table, QueuePolicy::default()).with_indicative(feed::engine_indicative);
    let sub = Subscription {
        level: FeedLevel::L1,
        securities: Securities::All,
    };
    let id = feed.subscribe(&sub).unwrap();
    let mut client = FeedClient::new();
    let mut driver = Driver::new(gen.rules(), &table);
    let (mut msgs, mut seen_some) = (Vec::new(), 0u32);
    for _ in 0..30_000 {
        let cmd = gen.next_command();
        driver.step_feed(&cmd, &mut feed);
        msgs.clear();
        feed.poll(id, usize::MAX, &mut msgs).unwrap();
        for m in &msgs {
            assert_eq!(client.apply(m), Applied::Applied, "{m:?}");
        }
        for (sec, _, _) in table.iter() {
            let engine = driver.engine().indicative(sec);
            let published = client
                .security(sec)
                .and_then(|v| v.indicative)
                .map(|u| (u.price, u.volume));
            assert_eq!(published, engine, "{sec:?} after {cmd:?}");
            seen_some += u32::from(engine.is_some());
        }
    }
    assert!(
        seen_some > 100,
        "call phases with a crossing book happened ({seen_some})"
    );
}
