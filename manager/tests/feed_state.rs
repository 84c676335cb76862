//! The feed role's pure parts against the sequential reference: items delivered per security in
//! sequence order but interleaved across securities as executors complete them, some of them
//! lost (the core's queue was full), the builder rebuilt from a journal prefix that runs ahead
//! of what was delivered, the rest applied on top. Subscribers end (and, at sampled points,
//! stand) exactly where the engine's books are.

mod feed_common;

use std::collections::VecDeque;

use feed::{Applied, FeedClient, FeedLevel, QueuePolicy, Securities, SubscriberId, Subscription};
use feed_common::{sequence, Sequenced};
use manager::feed::{rebuild, replay, FeedItem, FeedState, ItemOutcome, ReplayStart};
use manager::feed_checkpoint::FeedCheckpoint;
use matching::{MarketRules, SecurityId, SecurityTable};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use testkit::nasty::{nasty_stream, Nasty};

fn stream(rows: usize, seed: u64) -> (SecurityTable, Sequenced) {
    let table = SecurityTable::synthetic(5).unwrap();
    let cfg = Nasty {
        rows,
        seed,
        brokers: 4,
        day: true,
        sweep_every: 700,
    };
    let rows = nasty_stream(&cfg, &table);
    let s = sequence(&rows, &table, MarketRules::hose());
    (table, s)
}

struct Sub {
    id: SubscriberId,
    level: FeedLevel,
    client: FeedClient,
}

fn subscribe(state: &mut FeedState) -> Vec<Sub> {
    [FeedLevel::L3, FeedLevel::L2 { levels: 3 }, FeedLevel::L1]
        .into_iter()
        .map(|level| {
            let sub = Subscription {
                level,
                securities: Securities::All,
            };
            Sub {
                id: state.feed_mut().subscribe(&sub).unwrap(),
                level,
                client: FeedClient::new(),
            }
        })
        .collect()
}

fn drain(state: &mut FeedState, subs: &mut [Sub]) {
    let mut msgs = Vec::new();
    for s in subs {
        msgs.clear();
        state.feed_mut().poll(s.id, usize::MAX, &mut msgs).unwrap();
        for m in &msgs {
            assert_eq!(s.client.apply(m), Applied::Applied, "{:?}: {m:?}", s.level);
        }
    }
}

/// Every subscriber's copy of `sec` equals `depth` (the engine's full limit depth then).
fn assert_book(subs: &[Sub], sec: SecurityId, depth: &matching::book::Depth, at: &str) {
    for s in subs {
        let n = s.level.window().unwrap_or(usize::MAX);
        let cut = |v: &Vec<(i64, u64)>| v.iter().take(n).copied().collect::<Vec<_>>();
        let want = (cut(&depth.0), cut(&depth.1));
        assert_eq!(
            s.client.depth(sec, usize::MAX),
            want,
            "{:?} book of {sec:?} {at}",
            s.level
        );
    }
}

/// Delivers `items` per security in seq order, securities interleaved at random; loses some;
/// rebuilds after each loss from a journal prefix that runs ahead. Returns how many rebuilds
/// and covered items there were.
fn run(seed: u64, loss: f64) -> (u32, u64) {
    let (table, s) = stream(6_000, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // The engine's depth of each security after each of its commands, to check sampled points.
    let mut after: Vec<Vec<(u64, matching::book::Depth)>> = vec![Vec::new(); table.len()];
    {
        let mut engine = matching::Engine::new(MarketRules::hose(), &table);
        for (id, _, _) in table.iter() {
            engine.open_book(id);
        }
        for it in &s.items {
            let mut ev = Vec::new();
            engine.process_for(it.security, &it.command, &mut ev);
            after[it.security.0 as usize].push((it.seq, engine.depth(it.security, usize::MAX)));
        }
    }
    let mut queues: Vec<VecDeque<&FeedItem>> = vec![VecDeque::new(); table.len()];
    for it in &s.items {
        queues[it.security.0 as usize].push_back(it);
    }
    let mut state = FeedState::new(&table, QueuePolicy::default());
    let mut subs = subscribe(&mut state);
    let (mut rebuilds, mut covered) = (0u32, 0u64);
    let mut max_delivered = 0u64;
    // Items taken while a rebuild "runs", applied after it.
    let mut pending: Vec<&FeedItem> = Vec::new();
    let mut lost = false;
    let mut steps = 0u64;
    let mut deep_samples = 0u32;
    loop {
        let open: Vec<usize> = (0..queues.len())
            .filter(|&i| !queues[i].is_empty())
            .collect();
        if open.is_empty() {
            break;
        }
        let q = open[rng.gen_range(0..open.len())];
        let item = queues[q].pop_front().unwrap();
        max_delivered = max_delivered.max(item.seq);
        steps += 1;
        if rng.gen_bool(loss) {
            lost = true; // dropped by the core: never delivered
            continue;
        }
        if lost {
            pending.push(item);
            if pending.len() < rng.gen_range(1..40) {
                continue;
            }
            // The rebuild read the journal up to somewhere past everything handed over so far.
            let ahead = rng.gen_range(0..60);
            let through = (max_delivered + ahead).min(s.records.len() as u64);
            let prefix = s.records[..through as usize].iter().map(|r| Ok(*r));
            let rebuilt =
                rebuild::<std::convert::Infallible>(prefix, MarketRules::hose(), &table).unwrap();
            assert_eq!(rebuilt.through, through);
            state.install(rebuilt);
            rebuilds += 1;
            lost = false;
            for p in std::mem::take(&mut pending) {
                if state.apply(p).unwrap() == ItemOutcome::Covered {
                    covered += 1;
                }
            }
        } else if state.apply(item).unwrap() == ItemOutcome::Covered {
            covered += 1;
        }
        drain(&mut state, &mut subs);
        if !lost && steps.is_multiple_of(97) {
            // Sampled point: each security stands where the engine stood after the last
            // command of it the feed holds.
            for (sec, _, _) in table.iter() {
                let Some(last) = state.feed().builder().last_seq(sec) else {
                    continue;
                };
                let hist = &after[sec.0 as usize];
                let i = hist.partition_point(|(seq, _)| *seq <= last);
                let empty = (Vec::new(), Vec::new());
                let depth = if i == 0 { &empty } else { &hist[i - 1].1 };
                deep_samples += u32::from(depth.0.len() + depth.1.len() >= 4);
                assert_book(&subs, sec, depth, &format!("at seq {last}"));
            }
        }
    }
    if lost {
        let all = s.records.iter().map(|r| Ok(*r));
        state.install(
            rebuild::<std::convert::Infallible>(all, MarketRules::hose(), &table).unwrap(),
        );
        for p in std::mem::take(&mut pending) {
            assert_eq!(state.apply(p).unwrap(), ItemOutcome::Covered);
        }
        rebuilds += 1;
    }
    drain(&mut state, &mut subs);
    assert!(
        deep_samples > 50,
        "books were compared while deep ({deep_samples} times)"
    );
    for (sec, _, _) in table.iter() {
        assert_book(&subs, sec, &s.engine.depth(sec, usize::MAX), "at the end");
        if let Some(view) = subs[0].client.security(sec) {
            if let feed::ClientBook::Orders(b) = &view.book {
                assert_eq!(b.totals(), s.engine.totals(sec), "L3 totals of {sec:?}");
            }
        }
    }
    (rebuilds, covered)
}

#[test]
fn without_loss_the_state_follows_the_engine() {
    let (rebuilds, covered) = run(3, 0.0);
    assert_eq!((rebuilds, covered), (0, 0));
}

#[test]
fn lost_items_are_repaired_by_rebuilds_from_a_journal_that_runs_ahead() {
    for seed in [4, 5, 6] {
        let (rebuilds, covered) = run(seed, 0.004);
        assert!(rebuilds >= 5, "seed {seed}: {rebuilds} rebuilds");
        assert!(covered > 0, "seed {seed}: no item was covered by a rebuild");
    }
}

#[test]
fn a_rebuild_of_the_whole_journal_equals_the_live_feed() {
    let (table, s) = stream(4_000, 9);
    let mut live = FeedState::new(&table, QueuePolicy::default());
    for it in &s.items {
        live.apply(it).unwrap();
    }
    let rebuilt = rebuild::<std::convert::Infallible>(
        s.records.iter().map(|r| Ok(*r)),
        MarketRules::hose(),
        &table,
    )
    .unwrap();
    assert_eq!(rebuilt.commands, s.records.len() as u64);
    for (sec, _, _) in table.iter() {
        for level in [FeedLevel::L3, FeedLevel::L2 { levels: 1000 }] {
            assert_eq!(
                rebuilt.builder.snapshot(sec, level),
                live.feed().builder().snapshot(sec, level),
                "{sec:?} {level:?}"
            );
        }
        assert_eq!(
            rebuilt.builder.last_seq(sec),
            live.feed().builder().last_seq(sec)
        );
    }
}

#[test]
fn a_group_that_does_not_fit_is_refused_and_changes_nothing() {
    let (table, s) = stream(1_000, 11);
    let mut state = FeedState::new(&table, QueuePolicy::default());
    let mut subs = subscribe(&mut state);
    // Skip one item that rested an order, then deliver the rest of that security: an event
    // about the missing order must be refused (the task then rebuilds).
    let skip = s
        .items
        .iter()
        .position(|i| {
            i.events
                .iter()
                .any(|e| matches!(e, matching::Event::Rested { .. }))
        })
        .unwrap();
    let sec = s.items[skip].security;
    let mut refused = 0;
    for (i, it) in s.items.iter().enumerate() {
        if i == skip || it.security != sec {
            continue;
        }
        let before = state.feed().builder().snapshot(sec, FeedLevel::L3);
        if state.apply(it).is_err() {
            refused += 1;
            assert_eq!(state.feed().builder().snapshot(sec, FeedLevel::L3), before);
        }
        drain(&mut state, &mut subs);
    }
    assert!(
        refused > 0,
        "a later event named the order the feed never saw rest"
    );
}

/// The feed checkpoint as the task takes it: items arrive per security in order but interleaved
/// across securities, so at the checkpoint some books are past its `through` (every command up
/// to it is in). Restoring it from its file and replaying the journal after `through` must end
/// exactly where the live feed ends, books ahead of `through` skipping what they hold.
#[test]
fn a_replay_from_a_checkpoint_taken_mid_interleaving_equals_the_live_feed() {
    let dir = tempfile::tempdir().unwrap();
    let path = manager::feed_checkpoint::path_in(dir.path());
    for seed in [4u64, 5, 6] {
        let (table, s) = stream(5_000, seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut queues: Vec<VecDeque<&FeedItem>> = vec![VecDeque::new(); table.len()];
        for it in &s.items {
            queues[it.security.0 as usize].push_back(it);
        }
        let mut live = FeedState::new(&table, QueuePolicy::default());
        // Seqs some security still has to deliver: `through` is one below the lowest.
        let pending_low = |queues: &[VecDeque<&FeedItem>]| {
            queues.iter().filter_map(|q| q.front().map(|i| i.seq)).min()
        };
        let mut checkpoints = 0;
        let mut ahead = 0;
        while let Some(low) = pending_low(&queues) {
            let q = loop {
                let k = rng.gen_range(0..queues.len());
                if !queues[k].is_empty() {
                    break k;
                }
            };
            for _ in 0..rng.gen_range(1..20) {
                if let Some(it) = queues[q].pop_front() {
                    live.apply(it).unwrap();
                }
            }
            if rng.gen_bool(0.05) {
                let through = low - 1;
                let cp = FeedCheckpoint {
                    through,
                    state: live.feed().builder().state(),
                };
                ahead += cp
                    .state
                    .securities
                    .iter()
                    .filter(|m| m.status.last_seq.is_some_and(|l| l > through))
                    .count();
                manager::feed_checkpoint::write(&path, &cp).unwrap();
                let read = manager::feed_checkpoint::read(&path).unwrap().unwrap();
                assert_eq!(read, cp);
                let start = ReplayStart::checkpoint(&read, MarketRules::hose(), &table).unwrap();
                let tail = s.records.iter().filter(|r| r.seq > through).map(|r| Ok(*r));
                let rebuilt = replay::<std::convert::Infallible>(start, tail).unwrap();
                assert_eq!(rebuilt.from_checkpoint, Some(through));
                let full = rebuild::<std::convert::Infallible>(
                    s.records.iter().map(|r| Ok(*r)),
                    MarketRules::hose(),
                    &table,
                )
                .unwrap();
                assert_eq!(rebuilt.through, full.through);
                assert_eq!(
                    rebuilt.builder.state().securities,
                    full.builder.state().securities
                );
                assert_eq!(rebuilt.builder.feed_seq(), full.builder.feed_seq());
                checkpoints += 1;
            }
        }
        assert!(checkpoints >= 3, "seed {seed}: {checkpoints} checkpoints");
        assert!(ahead > 0, "seed {seed}: no book was ahead of a checkpoint");
        // And the live feed, once everything arrived, is where the replays ended.
        let full = rebuild::<std::convert::Infallible>(
            s.records.iter().map(|r| Ok(*r)),
            MarketRules::hose(),
            &table,
        )
        .unwrap();
        assert_eq!(
            live.feed().builder().state().securities,
            full.builder.state().securities
        );
    }
}
