//! The manager's state machine played without sockets or clocks: simulated executors (real
//! engines) receive what the core sends, deliver events late and in random batches, join, and
//! die (losing whatever they had not delivered) at random points of a stream. Whatever happens,
//! the broker-visible result equals the sequential exchange's, and every command completes.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use manager::core::{Core, CoreConfig, MemoryPersist, NodeId};
use matching::stream::{replay_local, to_command, BrokerRegistry, ReplayCollector};
use matching::{Command, Engine, Event, Gateway, MarketRules};
use proptest::prelude::*;
use proto::{SeqEvent, ToExecutor};
use user_sim::client::{Progress, Tracker};

struct SimExecutor {
    engine: Engine,
    inbox: VecDeque<ToExecutor>,
    /// Events computed but not yet delivered to the manager.
    outbox: Vec<SeqEvent>,
}

impl SimExecutor {
    /// Processes one message the way the real executor does.
    fn step(&mut self) {
        let Some(msg) = self.inbox.pop_front() else {
            return;
        };
        let mut scratch = Vec::new();
        match msg {
            ToExecutor::Assign {
                securities, replay, ..
            } => {
                for s in securities {
                    self.engine.open_book(s);
                }
                for s in replay {
                    scratch.clear();
                    self.engine.process(&s.command, &mut scratch);
                }
            }
            ToExecutor::Revoke { securities, .. } => {
                for s in securities {
                    self.engine.close_book(s);
                }
            }
            ToExecutor::Orders(cmds) => {
                for s in cmds {
                    scratch.clear();
                    self.engine.process(&s.command, &mut scratch);
                    let n = scratch.len();
                    for (i, ev) in scratch.iter().enumerate() {
                        if i + 1 == n || !matches!(ev, Event::Accepted { .. }) {
                            self.outbox.push(SeqEvent {
                                seq: s.seq,
                                event: *ev,
                                last: i + 1 == n,
                            });
                        }
                    }
                }
            }
        }
    }
}

/// The gateway session's view: reports matched to commands, events collected per command.
struct Client {
    tracker: Tracker,
    collector: ReplayCollector,
    pending: BTreeMap<usize, Vec<Event>>,
}

#[derive(Clone, Debug)]
enum Action {
    Submit(usize),
    Step(usize),
    Deliver(usize),
    Join,
    Kill(usize),
    Tick,
    /// End of a core loop iteration: commit and send (the real shell does this once per
    /// iteration, after draining several inputs).
    Flush,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (1usize..40).prop_map(Action::Submit),
        6 => (0usize..8).prop_map(Action::Step),
        6 => (0usize..8).prop_map(Action::Deliver),
        1 => Just(Action::Join),
        1 => (0usize..8).prop_map(Action::Kill),
        1 => Just(Action::Tick),
        5 => Just(Action::Flush),
    ]
}

fn run(seed: u64, actions: &[Action]) {
    let rules = MarketRules::hose();
    let securities = user_sim::generate::default_listings(6);
    let cfg = user_sim::generate::GenConfig {
        orders: 400,
        seed,
        brokers: 3,
        ..Default::default()
    };
    let rows = user_sim::generate::generate(&cfg, &securities, &rules);
    let expected = replay_local(rules, &securities, &rows);

    let mut now = Instant::now();
    let mut core = Core::new(
        CoreConfig::default(),
        Gateway::new(rules, securities.clone()),
        Box::new(MemoryPersist::default()),
        now,
    );
    let mut names = BrokerRegistry::new();
    let cmds: Vec<Command> = rows
        .iter()
        .map(|r| to_command(r, &securities, &mut names))
        .collect();
    for i in 0..names.len() as u32 {
        core.broker_id(names.name(matching::BrokerId(i)).unwrap());
    }
    core.open_session(1, None);
    let mut execs: BTreeMap<NodeId, SimExecutor> = BTreeMap::new();
    let mut client = Client {
        tracker: Tracker::default(),
        collector: ReplayCollector::new(&securities),
        pending: BTreeMap::new(),
    };
    let mut sent = 0;
    let settle = |core: &mut Core,
                  execs: &mut BTreeMap<NodeId, SimExecutor>,
                  now: Instant,
                  client: &mut Client| {
        let out = core.flush(now).unwrap();
        for (node, msgs) in out.executors {
            if let Some(e) = execs.get_mut(&node) {
                e.inbox.extend(msgs);
            }
        }
        for node in out.disconnect {
            execs.remove(&node);
        }
        for r in out.reports.get(&1).into_iter().flatten() {
            let (progress, pos) = client.tracker.on_report(r).unwrap();
            if let Some(pos) = pos {
                client.pending.entry(pos).or_default().push(r.event);
            }
            if let Progress::Final { pos } = progress {
                let events = client.pending.remove(&pos).unwrap();
                client.collector.record(pos as u64, &events);
            }
        }
    };
    let join = |core: &mut Core, execs: &mut BTreeMap<NodeId, SimExecutor>, now: Instant| {
        let id = core.executor_joined("sim", "sim", now);
        execs.insert(
            id,
            SimExecutor {
                engine: Engine::new(),
                inbox: VecDeque::new(),
                outbox: Vec::new(),
            },
        );
    };
    join(&mut core, &mut execs, now);
    settle(&mut core, &mut execs, now, &mut client);
    let pick = |execs: &BTreeMap<NodeId, SimExecutor>, k: usize| {
        execs.keys().nth(k % execs.len().max(1)).copied()
    };
    // The scripted part, then drain with at least one executor alive.
    for a in actions.iter().cloned().chain(std::iter::once(Action::Tick)) {
        now += Duration::from_millis(1);
        match a {
            Action::Submit(k) => {
                let end = (sent + k).min(cmds.len());
                core.submit(1, &cmds[sent..end], now).unwrap();
                sent = end;
            }
            Action::Step(k) => {
                if let Some(id) = pick(&execs, k) {
                    execs.get_mut(&id).unwrap().step();
                }
            }
            Action::Deliver(k) => {
                if let Some(id) = pick(&execs, k) {
                    let events = std::mem::take(&mut execs.get_mut(&id).unwrap().outbox);
                    core.executor_events(id, &events, now).unwrap();
                }
            }
            Action::Join => join(&mut core, &mut execs, now),
            Action::Kill(k) => {
                if execs.len() > 1 {
                    if let Some(id) = pick(&execs, k) {
                        execs.remove(&id);
                        core.executor_lost(id, now);
                    }
                }
            }
            Action::Tick => core.tick(now),
            Action::Flush => settle(&mut core, &mut execs, now, &mut client),
        }
    }
    settle(&mut core, &mut execs, now, &mut client);
    core.submit(1, &cmds[sent..], now).unwrap();
    settle(&mut core, &mut execs, now, &mut client);
    let mut rounds = 0;
    while client.tracker.completed < cmds.len() {
        rounds += 1;
        assert!(
            rounds < 10_000,
            "commands never complete: {} of {}",
            client.tracker.completed,
            cmds.len()
        );
        let ids: Vec<NodeId> = execs.keys().copied().collect();
        for id in ids {
            let e = execs.get_mut(&id).unwrap();
            while !e.inbox.is_empty() {
                e.step();
            }
            let events = std::mem::take(&mut e.outbox);
            core.executor_events(id, &events, now).unwrap();
            now += Duration::from_millis(1);
            // Keep every simulated executor's heartbeat fresh while draining.
            core.executor_heartbeat(id, Default::default(), now);
        }
        settle(&mut core, &mut execs, now, &mut client);
    }
    let collector = &mut client.collector;
    collector.set_final_totals(&core.totals());
    assert_eq!(collector.trades_csv(), expected.trades_csv());
    assert_eq!(collector.rejects_csv(), expected.rejects_csv());
    assert_eq!(collector.totals_csv(), expected.totals_csv());
    assert_eq!(core.in_flight(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn any_interleaving_of_joins_kills_and_late_events_equals_sequential(
        seed in 0u64..1_000,
        actions in proptest::collection::vec(action(), 0..120),
    ) {
        run(seed, &actions);
    }
}

#[test]
fn executor_joining_in_the_same_batch_as_routed_orders() {
    // The regression that motivated the ordered outgoing queue: orders routed to node 1, then
    // node 2 joins before the flush; node 1 must see the orders before its Revoke.
    run(
        7,
        &[
            Action::Submit(30),
            Action::Join,
            Action::Flush,
            Action::Step(0),
            Action::Step(0),
            Action::Deliver(0),
        ],
    );
}

#[test]
fn migration_target_dies_before_taking_over() {
    run(
        8,
        &[
            Action::Submit(30),
            Action::Flush,
            Action::Join,
            Action::Flush,
            Action::Kill(1),
            Action::Step(0),
            Action::Deliver(0),
            Action::Submit(30),
        ],
    );
}

#[test]
fn old_owner_dies_mid_migration() {
    run(
        9,
        &[
            Action::Submit(30),
            Action::Flush,
            Action::Join,
            Action::Flush,
            Action::Kill(0),
            Action::Submit(30),
            Action::Flush,
            Action::Step(1),
            Action::Deliver(1),
        ],
    );
}
