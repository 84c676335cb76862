//! Gap recovery (messages dropped and duplicated on purpose between the feed and its
//! subscribers) and the slow-subscriber policy (resynced or dropped; the others unaffected).

mod common;

use common::{Driver, Gen, GenConfig};
use feed::{
    Applied, Body, ClientBook, Feed, FeedClient, FeedLevel, Message, QueuePolicy, Securities,
    SubscriberId, SubscriberState, Subscription,
};
use matching::{Engine, SecurityId, SecurityTable, Side};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn sub(level: FeedLevel, securities: Securities) -> Subscription {
    Subscription { level, securities }
}

/// Every security the client holds equals the engine's book (within the subscribed window).
fn assert_equal(engine: &Engine, table: &SecurityTable, client: &FeedClient, s: &Subscription) {
    assert!(client.is_synced());
    let window = s.level.window().unwrap_or(usize::MAX);
    for (sec, _, _) in table.iter() {
        let Some(view) = client.security(sec) else {
            assert!(matches!(&s.securities, Securities::Only(v) if !v.contains(&sec)));
            continue;
        };
        assert_eq!(
            view.book.depth(usize::MAX),
            engine.depth(sec, window),
            "{sec:?}"
        );
        // Orders at market: in the engine's totals, not in its depth.
        let all = engine.depth(sec, usize::MAX);
        let (bid_total, ask_total) = engine.totals(sec);
        let limit = |v: &[(i64, u64)]| v.iter().map(|l| l.1).sum::<u64>();
        let at_market = |side| view.book.at_market(side).map_or(0, |l| l.qty);
        assert_eq!(at_market(Side::Buy), bid_total - limit(&all.0));
        assert_eq!(at_market(Side::Sell), ask_total - limit(&all.1));
        if let ClientBook::Orders(b) = &view.book {
            assert_eq!(b.totals(), engine.totals(sec));
        }
    }
}

/// Runs the stream, calling `after(feed, engine)` after every command.
fn run(
    seed: u64,
    commands: usize,
    feed: &mut Feed,
    mut after: impl FnMut(usize, &mut Feed, &Engine),
) -> (Driver, SecurityTable) {
    let mut gen = Gen::new(seed, GenConfig::default());
    let table = gen.table().clone();
    let mut driver = Driver::new(gen.rules(), &table);
    for i in 0..commands {
        let cmd = gen.next_command();
        driver.step_feed(&cmd, feed);
        after(i, feed, driver.engine());
    }
    (driver, table)
}

#[test]
fn a_lost_message_is_a_gap_and_a_resync_repairs_it() {
    let table = common::listing(6);
    let mut feed = Feed::new(&table, QueuePolicy::default());
    let s = sub(FeedLevel::L3, Securities::All);
    let id = feed.subscribe(&s).unwrap();
    let mut client = FeedClient::new();
    let mut msgs = Vec::new();
    let mut stage = 0;
    let (driver, table) = run(5, 3_000, &mut feed, |i, feed, engine| {
        msgs.clear();
        feed.poll(id, usize::MAX, &mut msgs).unwrap();
        match (i, stage) {
            (1_000.., 0) if msgs.len() >= 3 => {
                // Lose the second message of this batch.
                assert_eq!(client.apply(&msgs[0]), Applied::Applied);
                let got = client.apply(&msgs[2]);
                assert_eq!(
                    got,
                    Applied::Gap {
                        expected: msgs[1].seq,
                        got: msgs[2].seq
                    }
                );
                assert!(client.needs_resync());
                // Until the resync, everything is ignored (even the lost message itself).
                assert_eq!(client.apply(&msgs[1]), Applied::Ignored);
                assert_eq!(feed.request_resync(id).unwrap(), SubscriberState::Resyncing);
                stage = 1;
            }
            (_, 1) => {
                // The next poll starts with the fresh snapshot.
                assert!(matches!(msgs[0].body, Body::SnapshotBegin { .. }));
                for m in &msgs {
                    assert_eq!(client.apply(m), Applied::Applied);
                }
                assert_equal(engine, &table, &client, &s);
                stage = 2;
            }
            _ => {
                for m in &msgs {
                    assert_eq!(client.apply(m), Applied::Applied);
                }
                // Duplicates (a redelivery) are ignored.
                if let Some(m) = msgs.first() {
                    assert_eq!(client.apply(m), Applied::Ignored);
                }
                assert_equal(engine, &table, &client, &s);
            }
        }
    });
    assert_eq!(stage, 2);
    assert_equal(driver.engine(), &table, &client, &s);
    assert_eq!(client.stats().gaps, 1);
    assert_eq!(client.stats().resyncs, 2);
}

#[test]
fn a_lost_tail_is_noticed_by_the_heartbeat() {
    let table = common::listing(6);
    let mut feed = Feed::new(&table, QueuePolicy::default());
    let s = sub(FeedLevel::L2 { levels: 3 }, Securities::All);
    let id = feed.subscribe(&s).unwrap();
    let mut client = FeedClient::new();
    let mut msgs = Vec::new();
    let (driver, table) = run(6, 500, &mut feed, |_, feed, _| {
        msgs.clear();
        feed.poll(id, usize::MAX, &mut msgs).unwrap();
        for m in &msgs {
            client.apply(m);
        }
    });
    // A heartbeat after everything was delivered: nothing is missing.
    let hb = feed.heartbeat(id).unwrap().expect("idle");
    assert_eq!(client.apply(&hb), Applied::Ignored);
    assert!(client.is_synced());
    // More commands whose messages are all lost: only the heartbeat can tell.
    let mut gen = Gen::new(66, GenConfig::default());
    let mut driver = driver;
    let mut lost = 0;
    while lost == 0 {
        let cmd = gen.next_command();
        driver.step_feed(&cmd, &mut feed);
        msgs.clear();
        feed.poll(id, usize::MAX, &mut msgs).unwrap();
        lost += msgs.len();
    }
    // No heartbeat while messages are queued.
    let hb = feed.heartbeat(id).unwrap().expect("idle");
    assert!(matches!(client.apply(&hb), Applied::Gap { .. }));
    feed.request_resync(id).unwrap();
    assert_eq!(feed.heartbeat(id).unwrap(), None, "resyncing: no heartbeat");
    msgs.clear();
    feed.poll(id, usize::MAX, &mut msgs).unwrap();
    for m in &msgs {
        assert_eq!(client.apply(m), Applied::Applied);
    }
    assert_equal(driver.engine(), &table, &client, &s);
}

/// A lossy link: drops single messages and bursts, and redelivers old ones.
struct Link {
    rng: ChaCha8Rng,
    loss: f64,
    last: Option<Message>,
}

impl Link {
    fn deliver(&mut self, m: &Message, client: &mut FeedClient) -> Option<Applied> {
        if self.rng.gen_bool(self.loss) {
            return None;
        }
        if self.rng.gen_bool(0.01) {
            if let Some(old) = &self.last {
                let r = client.apply(old);
                assert_ne!(r, Applied::Applied, "a redelivered message applied twice");
            }
        }
        self.last = Some(m.clone());
        Some(client.apply(m))
    }
}

#[test]
fn lossy_links_recover_and_end_equal() {
    let table = common::listing(6);
    let mut feed = Feed::new(
        &table,
        QueuePolicy {
            capacity: 1 << 20,
            max_overflows: u32::MAX,
            window: 1,
        },
    );
    let only = |v: &[u32]| Securities::Only(v.iter().map(|&s| SecurityId(s)).collect());
    let subs = [
        sub(FeedLevel::L3, Securities::All),
        sub(FeedLevel::L3, only(&[1, 4])),
        sub(FeedLevel::L2 { levels: 4 }, Securities::All),
        sub(FeedLevel::L1, only(&[0, 2, 3])),
    ];
    let ids: Vec<SubscriberId> = subs.iter().map(|s| feed.subscribe(s).unwrap()).collect();
    let mut clients: Vec<FeedClient> = subs.iter().map(|_| FeedClient::new()).collect();
    let mut links: Vec<Link> = (0..subs.len())
        .map(|i| Link {
            rng: ChaCha8Rng::seed_from_u64(100 + i as u64),
            loss: [0.002, 0.01, 0.005, 0.02][i],
            last: None,
        })
        .collect();
    let mut msgs = Vec::new();
    let mut checked = 0;
    let commands = 30_000;
    let (driver, table) = run(9, commands, &mut feed, |i, feed, engine| {
        for k in 0..subs.len() {
            msgs.clear();
            feed.poll(ids[k], usize::MAX, &mut msgs).unwrap();
            // Stop losing messages near the end so everyone converges.
            let lossy = i < commands - 100;
            for m in &msgs {
                let r = if lossy {
                    links[k].deliver(m, &mut clients[k])
                } else {
                    Some(clients[k].apply(m))
                };
                if matches!(r, Some(Applied::Gap { .. } | Applied::Inconsistent(_))) {
                    feed.request_resync(ids[k]).unwrap();
                }
            }
            // A client can only know it is current when a heartbeat gets through.
            let mut confirmed = false;
            if let Some(hb) = feed.heartbeat(ids[k]).unwrap() {
                if !lossy || !links[k].rng.gen_bool(0.5) {
                    match clients[k].apply(&hb) {
                        Applied::Gap { .. } => {
                            feed.request_resync(ids[k]).unwrap();
                        }
                        Applied::Ignored => confirmed = clients[k].is_synced(),
                        other => panic!("heartbeat: {other:?}"),
                    }
                }
            }
            if confirmed && i % 50 == 0 {
                assert_equal(engine, &table, &clients[k], &subs[k]);
                checked += 1;
            }
        }
    });
    // A last lossless delivery (a resync asked for at the very end is served now).
    for k in 0..subs.len() {
        for attempt in 0.. {
            assert!(attempt < 3, "subscriber {k} does not converge");
            msgs.clear();
            feed.poll(ids[k], usize::MAX, &mut msgs).unwrap();
            for m in &msgs {
                clients[k].apply(m);
            }
            let hb = feed.heartbeat(ids[k]).unwrap().unwrap();
            match clients[k].apply(&hb) {
                Applied::Ignored => break,
                _ => feed.request_resync(ids[k]).unwrap(),
            };
        }
    }
    for k in 0..subs.len() {
        assert_eq!(
            clients[k].stats().inconsistencies,
            0,
            "a gap was applied as data"
        );
        assert!(clients[k].stats().gaps > 0, "subscriber {k} lost nothing");
        assert!(clients[k].stats().resyncs > 1);
        assert_equal(driver.engine(), &table, &clients[k], &subs[k]);
        eprintln!("subscriber {k}: {:?}", clients[k].stats());
    }
    assert!(checked > 1_000);
}

#[test]
fn slow_subscribers_are_resynced_or_dropped_and_the_others_are_unaffected() {
    let table = common::listing(6);
    let policy = QueuePolicy {
        capacity: 1_000,
        max_overflows: 3,
        window: 8_000_000_000,
    };
    let fast = [
        sub(FeedLevel::L3, Securities::All),
        sub(FeedLevel::L2 { levels: 5 }, Securities::All),
    ];
    let commands = 15_000;
    // Control run: the fast subscribers alone.
    let mut control = Feed::new(&table, policy);
    let ids: Vec<_> = fast.iter().map(|s| control.subscribe(s).unwrap()).collect();
    let mut expected: Vec<Vec<Message>> = vec![Vec::new(); fast.len()];
    run(12, commands, &mut control, |_, feed, _| {
        for (k, &id) in ids.iter().enumerate() {
            feed.poll(id, usize::MAX, &mut expected[k]).unwrap();
        }
    });
    // The same with a laggard (drains everything every ~5 s: overflows, but less often than
    // 3 times in 8 s) and a trickler (takes one message every 10 commands: overflows again and
    // again, and is dropped). Commands come every 1 ms on average.
    let mut feed = Feed::new(&table, policy);
    let ids: Vec<_> = fast.iter().map(|s| feed.subscribe(s).unwrap()).collect();
    let all_l3 = sub(FeedLevel::L3, Securities::All);
    let laggard = feed.subscribe(&all_l3).unwrap();
    let trickler = feed.subscribe(&all_l3).unwrap();
    let mut got: Vec<Vec<Message>> = vec![Vec::new(); fast.len()];
    let (mut lag_client, mut trickle_client) = (FeedClient::new(), FeedClient::new());
    let mut dropped_at = None;
    let mut lag_checks = 0;
    let mut msgs = Vec::new();
    let (driver, table) = run(12, commands, &mut feed, |i, feed, engine| {
        for (k, &id) in ids.iter().enumerate() {
            assert_eq!(
                feed.poll(id, usize::MAX, &mut got[k]).unwrap(),
                SubscriberState::Live
            );
        }
        if i % 5_000 == 4_999 {
            msgs.clear();
            feed.poll(laggard, usize::MAX, &mut msgs).unwrap();
            for m in &msgs {
                lag_client.apply(m);
            }
            // Whether it overflowed (and got a snapshot) or not, it is exact now.
            assert_equal(engine, &table, &lag_client, &all_l3);
            lag_checks += 1;
        }
        if i % 10 == 0 && dropped_at.is_none() {
            msgs.clear();
            let state = feed.poll(trickler, 1, &mut msgs).unwrap();
            for m in &msgs {
                if let Applied::Gap { .. } = trickle_client.apply(m) {
                    // Its queue was cleared: it will get a snapshot anyway.
                }
            }
            if state == SubscriberState::Dropped {
                dropped_at = Some(i);
            }
        }
        let stats = feed.fanout().stats(trickler).unwrap();
        assert!(stats.queued_incrementals <= policy.capacity);
        let stats = feed.fanout().stats(laggard).unwrap();
        assert!(stats.queued_incrementals <= policy.capacity);
    });
    assert_eq!(
        got, expected,
        "a slow subscriber changed what the others got"
    );
    assert_eq!(lag_checks, 3);
    let lag = feed.fanout().stats(laggard).unwrap();
    assert!(lag.overflows >= 1, "{lag:?}");
    assert_eq!(feed.fanout().state(laggard), Some(SubscriberState::Live));
    let trickle = feed.fanout().stats(trickler).unwrap();
    assert!(dropped_at.is_some(), "trickler never dropped: {trickle:?}");
    assert_eq!(trickle.overflows, 3);
    assert_eq!(trickle.queued, 0, "a dropped subscriber holds nothing");
    assert_eq!(
        feed.fanout().state(trickler),
        Some(SubscriberState::Dropped)
    );
    eprintln!("laggard {lag:?}; trickler dropped at command {dropped_at:?}: {trickle:?}");
    // The laggard still ends exact.
    msgs.clear();
    feed.poll(laggard, usize::MAX, &mut msgs).unwrap();
    for m in &msgs {
        lag_client.apply(m);
    }
    assert_equal(driver.engine(), &table, &lag_client, &all_l3);
    feed.unsubscribe(trickler).unwrap();
    assert!(feed.poll(trickler, 1, &mut msgs).is_err());
}

#[test]
fn bad_subscriptions_are_refused() {
    let table = common::listing(3);
    let mut feed = Feed::new(&table, QueuePolicy::default());
    for bad in [
        sub(FeedLevel::L2 { levels: 0 }, Securities::All),
        sub(FeedLevel::L2 { levels: 1_001 }, Securities::All),
        sub(FeedLevel::L3, Securities::Only(vec![])),
        sub(FeedLevel::L3, Securities::Only(vec![SecurityId(3)])),
        sub(FeedLevel::L1, Securities::Only(vec![SecurityId::UNKNOWN])),
    ] {
        assert!(feed.subscribe(&bad).is_err(), "{bad:?}");
    }
    assert!(feed.fanout().is_empty());
}

/// The fanout's totals are exact: per view kind, what subscribers polled (snapshots included,
/// a subscriber that left included); the canonical count is what the builder published; an
/// overflow counts once and what it cleared was produced but never delivered.
#[test]
fn fanout_totals_count_every_message_produced_and_delivered() {
    let mut gen = Gen::new(21, GenConfig::default());
    let table = gen.table().clone();
    let mut driver = common::Driver::new(gen.rules(), &table);
    let mut feed = Feed::new(&table, QueuePolicy::default());
    let subs = [
        sub(FeedLevel::L1, Securities::All),
        sub(FeedLevel::L2 { levels: 5 }, Securities::All),
        sub(
            FeedLevel::L2 { levels: 1 },
            Securities::Only(vec![SecurityId(2)]),
        ),
        sub(FeedLevel::L3, Securities::All),
        sub(
            FeedLevel::L3,
            Securities::Only(vec![SecurityId(0), SecurityId(4)]),
        ),
    ];
    let mut ids: Vec<(SubscriberId, FeedLevel)> = subs
        .iter()
        .map(|s| (feed.subscribe(s).unwrap(), s.level))
        .collect();
    let (mut polled, mut snapshots, mut canonical) = ([0u64; 3], 0u64, 0u64);
    let mut msgs = Vec::new();
    for i in 0..12_000 {
        let cmd = gen.next_command();
        driver.step(&cmd, |c| {
            feed.apply(c).unwrap();
            canonical += feed.builder().last_batch().messages.len() as u64;
        });
        match i {
            // One joins late, one leaves after it took everything.
            3_000 => ids.push((feed.subscribe(&subs[3]).unwrap(), FeedLevel::L3)),
            6_000 => {
                let (gone, level) = ids.remove(1);
                msgs.clear();
                feed.poll(gone, usize::MAX, &mut msgs).unwrap();
                polled[level.kind_index()] += msgs.len() as u64;
                snapshots += msgs.iter().filter(|m| m.body.is_snapshot()).count() as u64;
                feed.unsubscribe(gone).unwrap();
            }
            _ => {}
        }
        // A resync on request: its snapshot is counted too.
        if i == 8_000 {
            feed.request_resync(ids[0].0).unwrap();
        }
        for &(id, level) in &ids {
            msgs.clear();
            // Small polls, so a subscriber's queue spans many commands.
            feed.poll(id, 7, &mut msgs).unwrap();
            polled[level.kind_index()] += msgs.len() as u64;
            snapshots += msgs.iter().filter(|m| m.body.is_snapshot()).count() as u64;
        }
    }
    for &(id, level) in &ids {
        msgs.clear();
        feed.poll(id, usize::MAX, &mut msgs).unwrap();
        polled[level.kind_index()] += msgs.len() as u64;
        snapshots += msgs.iter().filter(|m| m.body.is_snapshot()).count() as u64;
    }
    let t = feed.fanout().totals();
    eprintln!("{t:?}");
    assert_eq!(t.produced, polled);
    assert!(polled.iter().all(|&n| n > 1_000), "{polled:?}");
    assert_eq!(t.snapshot_messages, snapshots);
    // Initial snapshots of 6 subscriptions and one requested resync (6 + 1 + 3 + 1 + 6 + 3 + 6
    // securities, each with its SnapshotBegin).
    assert_eq!(
        snapshots,
        (6 + 1) + (1 + 1) + (6 + 1) + (2 + 1) + (6 + 1) + (6 + 1) + (6 + 1)
    );
    assert_eq!(t.delivered, polled.iter().sum::<u64>());
    assert_eq!(t.canonical, canonical);
    assert!(canonical > 5_000, "{canonical}");
    assert_eq!(t.overflows, 0);

    // A subscriber that never polls overflows; the others' counts stay exact.
    let policy = QueuePolicy {
        capacity: 300,
        max_overflows: 1_000,
        window: 1,
    };
    let mut gen = Gen::new(22, GenConfig::default());
    let mut driver = common::Driver::new(gen.rules(), &table);
    let mut feed = Feed::new(&table, policy);
    let stalled = feed.subscribe(&subs[3]).unwrap();
    let reader = feed.subscribe(&subs[3]).unwrap();
    let mut read = 0u64;
    for _ in 0..3_000 {
        let cmd = gen.next_command();
        driver.step_feed(&cmd, &mut feed);
        msgs.clear();
        feed.poll(reader, usize::MAX, &mut msgs).unwrap();
        read += msgs.len() as u64;
        // The stalled one takes its snapshot only, at its first poll.
        if feed.fanout().stats(stalled).unwrap().resyncs == 0 {
            msgs.clear();
            feed.poll(stalled, usize::MAX, &mut msgs).unwrap();
            read += msgs.len() as u64;
        }
    }
    let t = feed.fanout().totals();
    let s = feed.fanout().stats(stalled).unwrap();
    // Once: a resyncing subscriber gets nothing more until it polls its snapshot.
    assert_eq!(s.overflows, 1, "{s:?}");
    assert_eq!(t.overflows, 1);
    assert_eq!(t.delivered, read);
    // Produced: what was read, plus the more than `capacity` messages the overflow cleared.
    assert!(t.produced[2] > read + policy.capacity as u64, "{t:?} {s:?}");
}

/// Subscribers of the whole L3 feed read one shared log: whatever its pace, each gets exactly
/// what an L3 view with a queue of its own gets (a subscription naming every security, polled
/// the same way): the same messages, overflows and resyncs. The log holds only what its
/// slowest live reader has not read.
#[test]
fn shared_log_readers_get_exactly_what_a_queue_of_their_own_would_hold() {
    let mut gen = Gen::new(23, GenConfig::default());
    let table = gen.table().clone();
    let mut driver = common::Driver::new(gen.rules(), &table);
    let policy = QueuePolicy {
        capacity: 2_000,
        max_overflows: 1_000,
        window: 1,
    };
    let mut feed = Feed::new(&table, policy);
    let every: Vec<SecurityId> = table.iter().map(|(id, _, _)| id).collect();
    let subscribe_pair = |feed: &mut Feed| {
        let log = feed
            .subscribe(&sub(FeedLevel::L3, Securities::All))
            .unwrap();
        let own = feed
            .subscribe(&sub(FeedLevel::L3, Securities::Only(every.clone())))
            .unwrap();
        (log, own)
    };
    // Paces (messages, every so many commands): everything, 3 per command, then 1 every 4
    // commands (fewer than the feed makes: it falls behind and overflows).
    let mut pairs: Vec<((SubscriberId, SubscriberId), (usize, usize))> =
        [(usize::MAX, 1), (3, 1), (1, 4)]
            .into_iter()
            .map(|pace| (subscribe_pair(&mut feed), pace))
            .collect();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut compared = 0usize;
    let mut largest_log = 0;
    for i in 0..15_000 {
        let cmd = gen.next_command();
        driver.step_feed(&cmd, &mut feed);
        if i == 4_000 {
            pairs.push((subscribe_pair(&mut feed), (2, 1)));
        }
        if i % 3_001 == 0 {
            let (log, own) = pairs[0].0;
            assert_eq!(
                feed.request_resync(log).unwrap(),
                feed.request_resync(own).unwrap()
            );
        }
        for &((log, own), (pace, every)) in &pairs {
            if i % every != 0 {
                continue;
            }
            a.clear();
            b.clear();
            let sa = feed.poll(log, pace, &mut a).unwrap();
            let sb = feed.poll(own, pace, &mut b).unwrap();
            assert_eq!(sa, sb, "command {i}");
            assert_eq!(a, b, "command {i}");
            compared += a.len();
        }
        largest_log = largest_log.max(feed.fanout().shared_log_len());
        assert!(
            feed.fanout().shared_log_len() <= policy.capacity + 1_000,
            "the log is bounded by its readers' bound"
        );
    }
    for &((log, own), _) in &pairs {
        let (sa, sb) = (
            feed.fanout().stats(log).unwrap(),
            feed.fanout().stats(own).unwrap(),
        );
        assert_eq!(sa.overflows, sb.overflows);
        assert_eq!(sa.resyncs, sb.resyncs);
        assert_eq!(sa.queued, sb.queued);
        assert_eq!(sa.queued_incrementals, sb.queued_incrementals);
        a.clear();
        b.clear();
        feed.poll(log, usize::MAX, &mut a).unwrap();
        feed.poll(own, usize::MAX, &mut b).unwrap();
        assert_eq!(a, b);
    }
    let slow = feed.fanout().stats(pairs[2].0 .0).unwrap();
    assert!(slow.overflows >= 1, "the slow pair overflowed: {slow:?}");
    assert!(compared > 15_000, "{compared}");
    assert!(largest_log > 500, "the log held a backlog: {largest_log}");
    assert_eq!(
        feed.fanout().shared_log_len(),
        0,
        "every reader read it all"
    );
    // Nobody reading: nothing is kept.
    for &((log, own), _) in &pairs {
        feed.unsubscribe(log).unwrap();
        feed.unsubscribe(own).unwrap();
    }
    for _ in 0..500 {
        let cmd = gen.next_command();
        driver.step_feed(&cmd, &mut feed);
    }
    assert_eq!(feed.fanout().shared_log_len(), 0);
}
