//! The manager's state machine played without sockets or clocks: simulated executors (the real
//! `ExecutorCore`) receive what the core sends, deliver events late, in random batches and in
//! parts (a command's events split over several groups), join, and die (losing whatever they
//! had not delivered) at random points of a nasty stream. Whatever happens, the gateway
//! session's result equals the sequential exchange's and every command completes. A forging
//! executor is caught and replaced without anything it sent reaching a client.
//!
//! Book snapshots run at random points too (by count and by explicit rounds): failover and
//! migration then install an image and replay only the tail; a forged image is refused and its
//! executor replaced; at the end every finished order has left memory for the archive. A
//! manager restart from the last checkpoint plus the journal tail rebuilds the same state.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use executor::ExecutorCore;
use manager::archive::CrashPoint;
use manager::core::{
    Archive, Core, CoreConfig, Feedback, JournalEntry, MemoryArchive, MemoryPersist, NodeId,
    Persist, RejectedEntry, Restart, Sequenced, Sequencer, SessionKind, Tape, TapeEntry,
    REPORTS_PER_FRAME,
};
use matching::stream::{replay_local, to_command, BrokerRegistry, ReplayCollector};
use matching::{
    Aggressor, BrokerId, Command, Event, Fill, Gateway, MarketRules, OrderId, SecurityId,
    SecurityTable,
};
use proptest::prelude::*;
use proto::{ClientCommand, EventGroup, ImagePart, OrderState, ReportEvent, ToExecutor};
use testkit::nasty::{nasty_stream, Nasty};
use user_sim::client::{Progress, Tracker};

/// What an executor sends, in order.
#[derive(Clone, Debug)]
enum Out {
    Group(EventGroup),
    Image(ImagePart),
}

/// Ways a rogue executor alters the images it sends.
#[derive(Clone, Copy, Debug)]
enum Tamper {
    /// Swap the first two orders of a side (another priority order).
    SwapPriority,
    /// One more share on an order.
    Quantity,
    /// Leave an order out.
    DropOrder,
    /// Another reference price.
    Reference,
    /// An order twice.
    Duplicate,
    /// An order listed again in place of another of the same quantity, so the count and the
    /// totals hold (only the priority order can tell).
    DuplicateInPlace,
    /// Claim another seq than the book's.
    Seq,
}

struct SimExecutor {
    core: ExecutorCore,
    inbox: VecDeque<ToExecutor>,
    /// What was computed but not yet delivered to the manager.
    outbox: VecDeque<Out>,
    tamper: Option<Tamper>,
    /// Images actually altered (a tamper needs something to alter).
    tampered: usize,
}

impl SimExecutor {
    fn new(securities: &SecurityTable) -> Self {
        SimExecutor {
            core: ExecutorCore::new(MarketRules::hose(), securities),
            inbox: VecDeque::new(),
            outbox: VecDeque::new(),
            tamper: None,
            tampered: 0,
        }
    }

    /// Processes one message the way the real executor does.
    fn step(&mut self) {
        if let Some(msg) = self.inbox.pop_front() {
            let mut out = Vec::new();
            let applied = self.core.apply(msg, &mut out);
            if let Some(Err(e)) = &applied.installed {
                panic!("the manager sent an image that does not install: {e}");
            }
            // Split every group in two parts where it can be, as a frame boundary would.
            for g in out {
                if g.events.len() >= 2 {
                    let mut first = g.clone();
                    let rest = first.events.split_off(g.events.len() / 2);
                    first.last = false;
                    self.outbox.push_back(Out::Group(first));
                    self.outbox
                        .push_back(Out::Group(EventGroup { events: rest, ..g }));
                } else {
                    self.outbox.push_back(Out::Group(g));
                }
            }
            for mut part in applied.images {
                if let Some(t) = self.tamper {
                    if tamper(&mut part, t) {
                        self.tampered += 1;
                    }
                }
                self.outbox.push_back(Out::Image(part));
            }
        }
    }
}

/// Alters one image part; false if there was nothing to alter.
fn tamper(p: &mut ImagePart, t: Tamper) -> bool {
    let side = if p.bids.len() >= p.asks.len() {
        &mut p.bids
    } else {
        &mut p.asks
    };
    match t {
        Tamper::SwapPriority => {
            if side.len() < 2 || side[0] == side[1] {
                return false;
            }
            side.swap(0, 1);
        }
        Tamper::Quantity => match side.first_mut() {
            Some(o) => o.qty += 1,
            None => return false,
        },
        Tamper::DropOrder => {
            if side.pop().is_none() {
                return false;
            }
        }
        Tamper::Reference => p.reference += 10,
        Tamper::Duplicate => match side.last().copied() {
            Some(o) => side.push(o),
            None => return false,
        },
        Tamper::DuplicateInPlace => {
            let pair = (0..side.len()).find_map(|i| {
                (i + 1..side.len())
                    .find(|&j| side[j].qty == side[i].qty)
                    .map(|j| (i, j))
            });
            let Some((i, j)) = pair else { return false };
            side[j] = side[i];
        }
        Tamper::Seq => p.seq += 1,
    }
    true
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
    /// Deliver the first `k % (outbox + 1)` groups of an executor (parts of one command may
    /// straddle two deliveries).
    Deliver(usize, usize),
    Join,
    Kill(usize),
    Tick,
    /// End of a core loop iteration: commit and send.
    Flush,
    /// A checkpoint, then images asked of every book that changed.
    Snapshot,
    /// The checkpoint being written becomes durable (when the archive holds it).
    Durable,
    /// With the sequencing stage split off: it commits, and only the first `k % (lagging + 1)`
    /// of the items it released so far reach the rest of the core.
    Lag(usize),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (1usize..40).prop_map(Action::Submit),
        6 => (0usize..8).prop_map(Action::Step),
        6 => (0usize..8, 0usize..64).prop_map(|(e, k)| Action::Deliver(e, k)),
        1 => Just(Action::Join),
        1 => (0usize..8).prop_map(Action::Kill),
        1 => Just(Action::Tick),
        5 => Just(Action::Flush),
        1 => Just(Action::Snapshot),
        1 => Just(Action::Durable),
        3 => (0usize..64).prop_map(Action::Lag),
    ]
}

const GATEWAY: u32 = 1;

/// The sequencing stage split off, as on its own thread: what it commits reaches the core late,
/// in order, and the core's feedback reaches it only at the next flush.
struct Pipe {
    front: Sequencer,
    lagging: VecDeque<Sequenced>,
    feedback: Vec<Feedback>,
}

struct Sim {
    core: Core,
    pipe: Option<Pipe>,
    execs: BTreeMap<NodeId, SimExecutor>,
    client: Client,
    securities: SecurityTable,
    now: Instant,
    /// Report frames the core handed out (each checked to fit a frame).
    report_frames: usize,
}

/// A journal and tape that outlive a core (the disk, for a restart).
#[derive(Clone, Default)]
struct SharedPersist(Arc<Mutex<MemoryPersist>>);

impl SharedPersist {
    fn get(&self) -> std::sync::MutexGuard<'_, MemoryPersist> {
        self.0.lock().unwrap()
    }
}

impl Persist for SharedPersist {
    fn append(&mut self, e: &JournalEntry<'_>) -> anyhow::Result<()> {
        self.get().append(e)
    }
    fn append_rejected(&mut self, e: &RejectedEntry<'_>) -> anyhow::Result<()> {
        self.get().append_rejected(e)
    }
    fn commit(&mut self) -> anyhow::Result<()> {
        Persist::commit(&mut *self.get())
    }
}

impl Tape for SharedPersist {
    fn append_trade(&mut self, e: &TapeEntry) -> anyhow::Result<()> {
        self.get().append_trade(e)
    }
    fn commit(&mut self) -> anyhow::Result<()> {
        Tape::commit(&mut *self.get())
    }
}

impl SharedPersist {
    /// The journal and the tape of one shared store, as a core takes them.
    fn halves(&self) -> (Box<dyn Persist>, Box<dyn Tape>) {
        (Box::new(self.clone()), Box::new(self.clone()))
    }
}

fn config(snapshot_every: usize) -> CoreConfig {
    CoreConfig {
        snapshot_every,
        ..CoreConfig::default()
    }
}

impl Sim {
    fn new(securities: &SecurityTable, names: &BrokerRegistry, n: usize) -> Sim {
        Sim::with(
            securities,
            names,
            n,
            config(0),
            SharedPersist::default(),
            MemoryArchive::default(),
        )
    }

    fn with(
        securities: &SecurityTable,
        names: &BrokerRegistry,
        n: usize,
        config: CoreConfig,
        persist: SharedPersist,
        archive: MemoryArchive,
    ) -> Sim {
        Sim::with_store(securities, names, n, config, persist, Box::new(archive))
    }

    fn with_store(
        securities: &SecurityTable,
        names: &BrokerRegistry,
        n: usize,
        config: CoreConfig,
        persist: SharedPersist,
        archive: Box<dyn Archive>,
    ) -> Sim {
        let now = Instant::now();
        let core = Core::new(
            config,
            Gateway::new(MarketRules::hose(), securities.clone()),
            persist.halves(),
            now,
        )
        .with_archive(archive);
        Sim::around(core, securities, names, n, now)
    }

    fn around(
        mut core: Core,
        securities: &SecurityTable,
        names: &BrokerRegistry,
        n: usize,
        now: Instant,
    ) -> Sim {
        for i in 0..names.len() as u32 {
            core.broker_id(names.name(BrokerId(i)).unwrap());
        }
        core.open_session(GATEWAY, SessionKind::Gateway);
        Sim {
            core,
            pipe: None,
            execs: BTreeMap::new(),
            client: Client {
                tracker: Tracker::new(n),
                collector: ReplayCollector::new(securities),
                pending: BTreeMap::new(),
            },
            securities: securities.clone(),
            now,
            report_frames: 0,
        }
    }

    /// Runs the sequencing stage apart from the rest of the core from now on.
    fn split(&mut self) {
        self.pipe = Some(Pipe {
            front: self.core.split().unwrap(),
            lagging: VecDeque::new(),
            feedback: Vec::new(),
        });
    }

    fn submit(&mut self, cmds: &[ClientCommand]) {
        match &mut self.pipe {
            Some(p) => p.front.submit(GATEWAY, cmds, self.now, 0).unwrap(),
            None => self.core.submit(GATEWAY, cmds, self.now, 0).unwrap(),
        }
    }

    /// The split stage commits: its acknowledgements go out, then the first `k` of what it
    /// released so far (all with `None`) reaches the core.
    fn pass_on(&mut self, k: Option<usize>) {
        let Some(p) = &mut self.pipe else { return };
        for fb in p.feedback.drain(..) {
            p.front.feedback(fb, self.now).unwrap();
        }
        let released = p.front.commit().unwrap();
        p.lagging.extend(released.items);
        let n = k.map_or(p.lagging.len(), |k| k % (p.lagging.len() + 1));
        let items: Vec<Sequenced> = p.lagging.drain(..n).collect();
        for (session, r) in released.reports {
            if session == GATEWAY {
                self.on_report(&r);
            }
        }
        self.core.apply_sequenced(items);
    }

    fn on_report(&mut self, r: &proto::Report) {
        let (progress, pos) = self.client.tracker.on_report(r).unwrap();
        if let Some(pos) = pos {
            if let Some(ev) = r.event.to_engine_event(r.order) {
                self.client.pending.entry(pos).or_default().push(ev);
            }
        }
        if let Progress::Final { pos } = progress {
            let events = self.client.pending.remove(&pos).unwrap_or_default();
            self.client.collector.record(pos as u64, &events);
        }
    }

    fn settle(&mut self) {
        self.pass_on(None);
        let mut out = self.core.flush(self.now).unwrap();
        if let Some(p) = &mut self.pipe {
            p.feedback.append(&mut out.feedback);
        }
        for (node, msgs) in out.executors {
            if let Some(e) = self.execs.get_mut(&node) {
                e.inbox.extend(msgs);
            }
        }
        for node in out.disconnect {
            self.execs.remove(&node);
        }
        for l in &out.log {
            if matches!(l.kind, proto::LogKind::NodeLost) {
                eprintln!("{}", l.text);
            }
        }
        let mut frames = 0;
        for (session, frame) in std::mem::take(&mut out.reports) {
            assert!(
                frame.len() <= REPORTS_PER_FRAME && frame.capacity() <= 2 * REPORTS_PER_FRAME,
                "a frame of {} reports, room for {}",
                frame.len(),
                frame.capacity()
            );
            frames += 1;
            if session == GATEWAY {
                for r in &frame {
                    self.on_report(r);
                }
            }
        }
        self.report_frames += frames;
    }

    fn join(&mut self) -> NodeId {
        let id = self.core.executor_joined("sim", "sim", self.now);
        self.execs.insert(id, SimExecutor::new(&self.securities));
        id
    }

    fn pick(&self, k: usize) -> Option<NodeId> {
        self.execs.keys().nth(k % self.execs.len().max(1)).copied()
    }

    fn deliver(&mut self, id: NodeId, k: usize) {
        let e = self.execs.get_mut(&id).unwrap();
        let n = k % (e.outbox.len() + 1);
        let items: Vec<Out> = e.outbox.drain(..n).collect();
        self.feed(id, items);
    }

    /// Hands an executor's output to the core in order: groups batched, images one by one.
    fn feed(&mut self, id: NodeId, items: Vec<Out>) {
        let mut groups = Vec::new();
        for item in items {
            match item {
                Out::Group(g) => groups.push(g),
                Out::Image(p) => {
                    let batch = std::mem::take(&mut groups);
                    self.core.executor_events(id, batch, self.now).unwrap();
                    self.core.executor_image(id, p, self.now).unwrap();
                }
            }
        }
        self.core.executor_events(id, groups, self.now).unwrap();
    }

    /// Every image still asked for answered, then a checkpoint: all that can leave memory has.
    /// A sim whose journal and archive are kept (in memory) for a restart.
    fn stored(
        securities: &SecurityTable,
        names: &BrokerRegistry,
        n: usize,
        cfg: CoreConfig,
    ) -> (Sim, SharedPersist, MemoryArchive) {
        let persist = SharedPersist::default();
        let archive = MemoryArchive::default();
        let sim = Sim::with(securities, names, n, cfg, persist.clone(), archive.clone());
        (sim, persist, archive)
    }

    /// Submits `cmds` from the gateway session in frames of 4,096, settling after each, and
    /// runs until all of them are final.
    fn submit_all(&mut self, cmds: &[ClientCommand]) {
        for chunk in cmds.chunks(4096) {
            self.core.submit(GATEWAY, chunk, self.now, 0).unwrap();
            self.settle();
        }
        self.drain(cmds.len());
    }

    fn settle_snapshots(&mut self) {
        for _ in 0..4 {
            if self.execs.is_empty() {
                self.join();
                self.settle();
            }
            self.run_dry();
            self.core.snapshot_round(self.now).unwrap();
            self.settle();
            self.run_dry();
            if self.core.memory_figures().history == 0 {
                break;
            }
        }
        self.core.checkpoint(self.now).unwrap();
        // A split sequencing stage hears of the archived ids at the flush after the next.
        self.settle();
        self.settle();
    }

    /// Runs every executor dry once.
    fn run_dry(&mut self) {
        let ids: Vec<NodeId> = self.execs.keys().copied().collect();
        for id in ids {
            let Some(e) = self.execs.get_mut(&id) else {
                continue;
            };
            while !e.inbox.is_empty() {
                e.step();
            }
            let items: Vec<Out> = e.outbox.drain(..).collect();
            self.feed(id, items);
            self.core
                .executor_heartbeat(id, Default::default(), self.now);
        }
        self.settle();
    }

    /// Runs every executor dry until all commands are final.
    fn drain(&mut self, total: usize) {
        let mut rounds = 0;
        while !self.client.tracker.finished() {
            rounds += 1;
            assert!(
                rounds < 10_000,
                "commands never complete: {} of {total}",
                self.client.tracker.completed
            );
            let ids: Vec<NodeId> = self.execs.keys().copied().collect();
            for id in ids {
                let Some(e) = self.execs.get_mut(&id) else {
                    continue;
                };
                while !e.inbox.is_empty() {
                    e.step();
                }
                let items: Vec<Out> = e.outbox.drain(..).collect();
                self.feed(id, items);
                self.now += Duration::from_millis(1);
                // Keep every simulated executor's heartbeat fresh while draining.
                self.core
                    .executor_heartbeat(id, Default::default(), self.now);
            }
            if self.execs.is_empty() {
                self.join();
            }
            self.settle();
        }
    }
}

fn commands(
    securities: &SecurityTable,
    cfg: &Nasty,
) -> (Vec<ClientCommand>, BrokerRegistry, ReplayCollector) {
    let rows = nasty_stream(cfg, securities);
    let expected = replay_local(MarketRules::hose(), securities, &rows);
    let mut names = BrokerRegistry::new();
    let cmds = rows
        .iter()
        .enumerate()
        .map(|(i, r)| ClientCommand {
            client_ref: i as u64,
            command: to_command(r, securities, &mut names),
        })
        .collect();
    (cmds, names, expected)
}

fn run(seed: u64, day: bool, actions: &[Action]) {
    run_with(seed, day, 0, false, actions);
}

/// Images trusted during a run, before the final settling round (which asks every book once).
fn images_during(seed: u64, day: bool, every: usize, actions: &[Action]) -> u64 {
    run_with(seed, day, every, false, actions)
}

fn run_with(seed: u64, day: bool, snapshot_every: usize, split: bool, actions: &[Action]) -> u64 {
    let securities = SecurityTable::synthetic(6).unwrap();
    let cfg = Nasty {
        rows: 400,
        seed,
        brokers: 3,
        day,
        sweep_every: 97,
    };
    let (cmds, names, expected) = commands(&securities, &cfg);
    let mut sim = Sim::with(
        &securities,
        &names,
        cmds.len(),
        config(snapshot_every),
        SharedPersist::default(),
        MemoryArchive::default(),
    );
    let mut sent = 0;
    if split {
        sim.split();
    }
    sim.join();
    sim.settle();
    // The scripted part, then drain with at least one executor alive.
    for a in actions.iter().cloned().chain(std::iter::once(Action::Tick)) {
        sim.now += Duration::from_millis(1);
        match a {
            Action::Submit(k) => {
                let end = (sent + k).min(cmds.len());
                sim.submit(&cmds[sent..end]);
                sent = end;
            }
            Action::Step(k) => {
                if let Some(id) = sim.pick(k) {
                    sim.execs.get_mut(&id).unwrap().step();
                }
            }
            Action::Deliver(e, k) => {
                if let Some(id) = sim.pick(e) {
                    sim.deliver(id, k);
                }
            }
            Action::Join => {
                sim.join();
            }
            Action::Kill(k) => {
                if sim.execs.len() > 1 {
                    if let Some(id) = sim.pick(k) {
                        sim.execs.remove(&id);
                        sim.core.executor_lost(id, sim.now);
                    }
                }
            }
            Action::Tick => sim.core.tick(sim.now),
            Action::Flush => sim.settle(),
            Action::Snapshot => sim.core.snapshot_round(sim.now).unwrap(),
            Action::Durable => {}
            Action::Lag(k) => sim.pass_on(Some(k)),
        }
    }
    sim.settle();
    sim.submit(&cmds[sent..]);
    sim.settle();
    sim.drain(cmds.len());
    let collector = &mut sim.client.collector;
    collector.set_final_totals(&sim.core.totals());
    if std::env::var("SIM_DEBUG").is_ok() {
        let (a, b) = (collector.rejects_csv(), expected.rejects_csv());
        for (x, y) in a.lines().zip(b.lines()) {
            if x != y {
                eprintln!("grid {x} local {y}");
            }
        }
    }
    assert_eq!(collector.trades_csv(), expected.trades_csv());
    assert_eq!(collector.rejects_csv(), expected.rejects_csv());
    assert_eq!(collector.totals_csv(), expected.totals_csv());
    assert_eq!(sim.core.in_flight(), 0);
    // Queries answer the same before and after finished orders leave memory, and afterwards
    // memory holds the live orders only.
    let during = sim.core.memory_figures().images_accepted;
    let before = sim.core.query_orders(GATEWAY, &[]).unwrap();
    sim.settle_snapshots();
    let after = sim.core.query_orders(GATEWAY, &[]).unwrap();
    assert_eq!(before, after);
    let live: usize = sim
        .execs
        .values()
        .map(|e| e.core.engine().live_orders())
        .sum();
    let m = sim.core.memory_figures();
    assert_eq!(m.history, 0, "{m:?}");
    assert_eq!(m.due, 0, "{m:?}");
    assert_eq!(m.records, live, "{m:?}");
    assert_eq!(m.gateway_ids, live, "{m:?}");
    assert_eq!(m.image_orders, live, "{m:?}");
    let some: Vec<OrderId> = before.iter().step_by(7).map(|s| s.id).collect();
    let by_id = sim.core.query_orders(GATEWAY, &some).unwrap();
    assert_eq!(by_id, before.iter().step_by(7).cloned().collect::<Vec<_>>());
    during
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn any_interleaving_of_joins_kills_and_late_split_events_equals_sequential(
        seed in 0u64..1_000,
        day in proptest::bool::ANY,
        actions in proptest::collection::vec(action(), 0..120),
        snapshot_every in prop_oneof![Just(0usize), 1usize..4, 5usize..60],
        split in proptest::bool::ANY,
    ) {
        run_with(seed, day, snapshot_every, split, &actions);
    }
}

#[test]
fn executor_joining_in_the_same_batch_as_routed_orders() {
    // The regression that motivated the ordered outgoing queue: orders routed to node 1, then
    // node 2 joins before the flush; node 1 must see the orders before its Revoke.
    run(
        7,
        false,
        &[
            Action::Submit(30),
            Action::Join,
            Action::Flush,
            Action::Step(0),
            Action::Step(0),
            Action::Deliver(0, 63),
        ],
    );
}

#[test]
fn migration_target_dies_before_taking_over() {
    run(
        8,
        false,
        &[
            Action::Submit(30),
            Action::Flush,
            Action::Join,
            Action::Flush,
            Action::Kill(1),
            Action::Step(0),
            Action::Deliver(0, 63),
            Action::Submit(30),
        ],
    );
}

#[test]
fn old_owner_dies_mid_migration() {
    run(
        9,
        false,
        &[
            Action::Submit(30),
            Action::Flush,
            Action::Join,
            Action::Flush,
            Action::Kill(0),
            Action::Submit(30),
            Action::Flush,
            Action::Step(1),
            Action::Deliver(1, 63),
        ],
    );
}

#[test]
fn trading_days_with_failover_in_every_phase() {
    // Phases, amends, MTL/ATO/ATC, auctions and closes, with executors joining and dying.
    for seed in 0..20 {
        run(
            seed,
            true,
            &[
                Action::Submit(50),
                Action::Flush,
                Action::Step(0),
                Action::Deliver(0, 3),
                Action::Join,
                Action::Submit(80),
                Action::Flush,
                Action::Kill(0),
                Action::Step(1),
                Action::Deliver(1, 9),
                Action::Submit(100),
                Action::Flush,
                Action::Join,
                Action::Step(0),
                Action::Deliver(0, 63),
                Action::Kill(1),
                Action::Flush,
            ],
        );
    }
}

#[test]
fn owner_dies_between_the_parts_of_one_command() {
    // Half of a command's events arrive, then the owner dies: the half must be dropped and
    // the new owner's whole answer delivered once.
    run(
        11,
        false,
        &[
            Action::Submit(60),
            Action::Flush,
            Action::Step(0),
            Action::Deliver(0, 1),
            Action::Join,
            Action::Kill(0),
            Action::Flush,
        ],
    );
}

/// A rogue executor with the token: it forges a fill for a security it does not own, against
/// an invented order of another broker, for 1,000,000,000 shares at price 1. The manager
/// refuses it, declares the executor failed, and nothing of it reaches any report or the tape.
#[test]
fn a_forged_fill_is_caught_and_the_forger_replaced() {
    let securities = SecurityTable::synthetic(4).unwrap();
    let cfg = Nasty {
        rows: 200,
        seed: 3,
        day: false,
        ..Nasty::default()
    };
    let (cmds, names, expected) = commands(&securities, &cfg);
    let mut sim = Sim::new(&securities, &names, cmds.len());
    let honest = sim.join();
    let rogue = sim.join();
    sim.settle();
    sim.core.submit(GATEWAY, &cmds[..100], sim.now, 0).unwrap();
    sim.settle();
    // The rogue claims a security owned by the honest executor, and an invented order.
    let owned_by_honest = sim
        .core
        .snapshot(sim.now)
        .securities
        .iter()
        .find(|s| s.owner == Some(honest))
        .map(|s| s.id)
        .expect("the honest executor owns something");
    let forged = EventGroup {
        seq: 1,
        security: owned_by_honest,
        events: vec![
            Event::Fill(Fill {
                security: owned_by_honest,
                price: 1,
                qty: 1_000_000_000,
                buy: OrderId(1),
                sell: OrderId(999_999),
                buy_broker: BrokerId(0),
                sell_broker: BrokerId(1),
                aggressor: Aggressor::Buy,
            }),
            Event::Totals {
                security: owned_by_honest,
                bid_total: 0,
                ask_total: 0,
            },
        ]
        .into(),
        last: true,
    };
    sim.core
        .executor_events(rogue, vec![forged.clone()], sim.now)
        .unwrap();
    let out = sim.core.flush(sim.now).unwrap();
    assert!(
        out.disconnect.contains(&rogue),
        "a forger is declared failed"
    );
    assert!(out
        .reports
        .items()
        .all(|r| !matches!(r.event, ReportEvent::Trade { fill, .. } if fill.qty == 1_000_000_000)));
    sim.execs.remove(&rogue);
    sim.core.submit(GATEWAY, &cmds[100..], sim.now, 0).unwrap();
    sim.settle();
    sim.drain(cmds.len());
    let collector = &mut sim.client.collector;
    collector.set_final_totals(&sim.core.totals());
    assert_eq!(collector.trades_csv(), expected.trades_csv());
    assert_eq!(collector.rejects_csv(), expected.rejects_csv());
    assert_eq!(collector.totals_csv(), expected.totals_csv());
}

/// An owner that lies about its own security's totals (or drops a fill) is caught too.
#[test]
fn an_owner_lying_about_its_own_book_is_replaced() {
    let securities = SecurityTable::synthetic(2).unwrap();
    let cfg = Nasty {
        rows: 300,
        seed: 5,
        day: false,
        ..Nasty::default()
    };
    let (cmds, names, expected) = commands(&securities, &cfg);
    let mut sim = Sim::new(&securities, &names, cmds.len());
    let liar = sim.join();
    sim.settle();
    sim.core.submit(GATEWAY, &cmds, sim.now, 0).unwrap();
    sim.settle();
    // Process honestly, then tamper with the first group that carries totals.
    let e = sim.execs.get_mut(&liar).unwrap();
    while !e.inbox.is_empty() {
        e.step();
    }
    let mut groups: Vec<EventGroup> = e
        .outbox
        .drain(..)
        .filter_map(|o| match o {
            Out::Group(g) => Some(g),
            Out::Image(_) => None,
        })
        .collect();
    let g = groups
        .iter_mut()
        .find(|g| g.last && g.events.iter().any(|e| matches!(e, Event::Totals { .. })))
        .unwrap();
    for ev in &mut g.events {
        if let Event::Totals { bid_total, .. } = ev {
            *bid_total += 100;
        }
    }
    sim.core.executor_events(liar, groups, sim.now).unwrap();
    let out = sim.core.flush(sim.now).unwrap();
    assert!(out.disconnect.contains(&liar));
    sim.execs.remove(&liar);
    sim.join();
    sim.settle();
    sim.drain(cmds.len());
    let collector = &mut sim.client.collector;
    collector.set_final_totals(&sim.core.totals());
    assert_eq!(collector.trades_csv(), expected.trades_csv());
    assert_eq!(collector.totals_csv(), expected.totals_csv());
}

/// A core with two brokers, A (session 1) and B (session 2), each with a session open.
fn two_broker_core(config: CoreConfig, securities: &SecurityTable, now: Instant) -> Core {
    let mut core = Core::new(
        config,
        Gateway::new(MarketRules::hose(), securities.clone()),
        MemoryPersist::pair(),
        now,
    );
    let (a, b) = (core.broker_id("A"), core.broker_id("B"));
    core.open_session(1, SessionKind::Broker(a));
    core.open_session(2, SessionKind::Broker(b));
    core
}

#[test]
fn broker_sessions_see_only_their_own_orders_and_anonymous_fills() {
    let securities = SecurityTable::synthetic(1).unwrap();
    let now = Instant::now();
    let config = CoreConfig {
        local: true,
        ..CoreConfig::default()
    };
    let mut core = two_broker_core(config, &securities, now);
    let reference = securities.reference(SecurityId(0)).unwrap();
    let new = |id: u64, side, qty| ClientCommand {
        client_ref: id,
        command: Command::New(matching::NewOrder {
            id: OrderId(id),
            broker: BrokerId(0),
            security: SecurityId(0),
            side,
            kind: matching::OrderType::Limit,
            price: reference,
            qty,
        }),
    };
    // Both brokers use order id 7: their own namespaces, no duplicate.
    core.submit(1, &[new(7, matching::Side::Sell, 500)], now, 0)
        .unwrap();
    core.submit(2, &[new(7, matching::Side::Buy, 200)], now, 0)
        .unwrap();
    // B tries to cancel A's order 7 by its id: that is B's own order 7 (already filled).
    let cancel = ClientCommand {
        client_ref: 8,
        command: Command::Cancel(matching::CancelOrder {
            id: OrderId(7),
            broker: BrokerId(0),
            security: SecurityId(0),
        }),
    };
    core.submit(2, &[cancel], now, 0).unwrap();
    let out = core.flush(now).unwrap();
    let a_reports: Vec<_> = out.reports.of(1).copied().collect();
    let b_reports: Vec<_> = out.reports.of(2).copied().collect();
    // A hears of its passive fill: own id, maker, no counterparty anywhere.
    assert!(a_reports.iter().any(|r| r.passive
        && r.order == OrderId(7)
        && matches!(r.event, ReportEvent::Fill(f) if f.qty == 200 && f.liquidity == proto::Liquidity::Maker)));
    assert!(b_reports.iter().any(|r| r.client_ref == 7
        && matches!(r.event, ReportEvent::Fill(f) if f.qty == 200 && f.liquidity == proto::Liquidity::Taker)));
    for r in a_reports.iter().chain(&b_reports) {
        assert!(
            !matches!(r.event, ReportEvent::Trade { .. }),
            "brokers never see whole trades"
        );
        assert_eq!(r.order.0 >> 40, 0, "ids are the broker's own");
    }
    // B's cancel concerned its own (filled) order 7, never A's resting one.
    assert!(b_reports.iter().any(|r| r.client_ref == 8
        && matches!(r.event, ReportEvent::Rejected { reason } if reason == matching::RejectReason::OrderNotLive)));
    let a_orders = core.query_orders(1, &[]).unwrap();
    assert_eq!(a_orders.len(), 1);
    assert_eq!((a_orders[0].id, a_orders[0].filled), (OrderId(7), 200));
    let b7 = core.query_orders(2, &[OrderId(7)]).unwrap();
    assert_eq!(b7[0].filled, 200);
    // An answer begun now and finished after the checkpoint (as the server finishes it, off
    // the core thread) is the answer of now.
    let begun = core.query_orders_begin(2, &[]);
    // After a checkpoint B's filled order 7 lives in the archive: same answers, still B's only.
    core.snapshot_round(now).unwrap();
    core.flush(now).unwrap();
    core.checkpoint(now).unwrap();
    assert_eq!(
        core.memory_figures().records,
        1,
        "only A's resting order stays"
    );
    assert_eq!(begun.finish().unwrap(), b7);
    assert_eq!(core.query_orders(2, &[OrderId(7)]).unwrap(), b7);
    assert_eq!(core.query_orders(2, &[]).unwrap(), b7);
    assert_eq!(core.query_orders(1, &[]).unwrap(), a_orders);
    assert_eq!(core.query_orders(1, &[OrderId(8)]).unwrap(), vec![]);
    assert_eq!(core.max_order_id(1), 7);
    assert_eq!(core.totals(), vec![(SecurityId(0), 0, 300)]);
}

/// Brokers' order queries, resting and in flight, over ids in and out of each broker's direct
/// table (scattered ids are hashed): a broker gets exactly its own orders, under its own ids,
/// and asking many ids it never used finds nothing.
#[test]
fn broker_queries_list_exactly_their_own_orders_resting_or_in_flight() {
    let securities = SecurityTable::synthetic(2).unwrap();
    let now = Instant::now();
    let mut core = two_broker_core(CoreConfig::default(), &securities, now);
    let node = core.executor_joined("e", "e", now);
    let mut exec = ExecutorCore::new(MarketRules::hose(), &securities);
    let rules = MarketRules::hose();
    let new = |id: u64, side, security: u32| {
        let reference = securities.reference(SecurityId(security)).unwrap();
        let tick = rules.tick(reference);
        ClientCommand {
            client_ref: id,
            command: Command::New(matching::NewOrder {
                id: OrderId(id),
                broker: BrokerId(0),
                security: SecurityId(security),
                side,
                kind: matching::OrderType::Limit,
                // Sells above buys: nothing trades, everything rests.
                price: match side {
                    matching::Side::Sell => reference + tick,
                    matching::Side::Buy => reference - tick,
                },
                qty: 100,
            }),
        }
    };
    // Increasing ids (direct), ids pages apart and one near the top (hashed); B reuses some
    // of A's ids in its own namespace.
    let a_ids: Vec<u64> = (1..=300)
        .chain((1..=40).map(|k| k * 70_001))
        .chain([1 << 39])
        .collect();
    let b_ids: Vec<u64> = (1..=200).chain([70_001, 5 << 30]).collect();
    let a_cmds: Vec<_> = a_ids
        .iter()
        .map(|&i| new(i, matching::Side::Sell, (i % 2) as u32))
        .collect();
    let b_cmds: Vec<_> = b_ids
        .iter()
        .map(|&i| new(i, matching::Side::Buy, (i % 2) as u32))
        .collect();
    // Orders at even positions rest (the executor answers); the others stay in flight.
    let half = |cmds: &[ClientCommand], parity: usize| -> Vec<ClientCommand> {
        cmds.iter().skip(parity).step_by(2).copied().collect()
    };
    core.submit(1, &half(&a_cmds, 0), now, 0).unwrap();
    core.submit(2, &half(&b_cmds, 0), now, 0).unwrap();
    for _ in 0..4 {
        let out = core.flush(now).unwrap();
        let mut groups = Vec::new();
        for m in out.executors.into_values().flatten() {
            exec.apply(m, &mut groups);
        }
        core.executor_events(node, groups, now).unwrap();
    }
    assert_eq!(core.in_flight(), 0);
    core.submit(1, &half(&a_cmds, 1), now, 0).unwrap();
    core.submit(2, &half(&b_cmds, 1), now, 0).unwrap();
    core.flush(now).unwrap();
    assert_eq!(core.in_flight(), a_ids.len() / 2 + b_ids.len() / 2);
    let listed = |session, ids: &[OrderId]| -> Vec<(u64, matching::Side, OrderState)> {
        core.query_orders(session, ids)
            .unwrap()
            .iter()
            .map(|s| (s.id.0, s.side, s.state))
            .collect()
    };
    let expected = |ids: &[u64], side| -> Vec<(u64, matching::Side, OrderState)> {
        let mut v: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let state = if k % 2 == 0 {
                    OrderState::Resting
                } else {
                    OrderState::Pending
                };
                (i, side, state)
            })
            .collect();
        v.sort_unstable_by_key(|x| x.0);
        v
    };
    let a_all = expected(&a_ids, matching::Side::Sell);
    let b_all = expected(&b_ids, matching::Side::Buy);
    assert_eq!(listed(1, &[]), a_all);
    assert_eq!(listed(2, &[]), b_all);
    // By id: every id each broker used, plus thousands it never used.
    let asked = |ids: &[u64]| -> Vec<OrderId> {
        ids.iter()
            .copied()
            .chain((0..5_000).map(|k| (1 << 30) + k))
            .map(OrderId)
            .collect()
    };
    assert_eq!(listed(1, &asked(&a_ids)), a_all);
    assert_eq!(listed(2, &asked(&b_ids)), b_all);
    // Each asking the other's ids: only the ids both used, each its own order.
    let shared: Vec<u64> = b_ids
        .iter()
        .copied()
        .filter(|i| a_ids.contains(i))
        .collect();
    let a_shared: Vec<_> = a_all
        .iter()
        .copied()
        .filter(|x| shared.contains(&x.0))
        .collect();
    assert_eq!(listed(1, &asked(&b_ids)), a_shared);
}

/// One security: `resting` sells of 100 from the first broker at the reference price, then a
/// market buy from the second for `swept` of them (one command with that many fills).
fn a_sweep(resting: u64, swept: u64) -> (SecurityTable, BrokerRegistry, Vec<ClientCommand>) {
    let securities = SecurityTable::synthetic(1).unwrap();
    let reference = securities.reference(SecurityId(0)).unwrap();
    let mut names = BrokerRegistry::new();
    names.intern("B01");
    names.intern("B02");
    let order = |i: u64, broker: u32, side, kind, price, qty| ClientCommand {
        client_ref: i,
        command: Command::New(matching::NewOrder {
            id: OrderId(i + 1),
            broker: BrokerId(broker),
            security: SecurityId(0),
            side,
            kind,
            price,
            qty,
        }),
    };
    let mut cmds: Vec<ClientCommand> = (0..resting)
        .map(|i| {
            order(
                i,
                0,
                matching::Side::Sell,
                matching::OrderType::Limit,
                reference,
                100,
            )
        })
        .collect();
    cmds.push(order(
        resting,
        1,
        matching::Side::Buy,
        matching::OrderType::Market,
        0,
        100 * swept,
    ));
    (securities, names, cmds)
}

#[test]
fn a_command_of_300000_fills_is_reported_whole() {
    // One order sweeps a book of 300,000 resting orders: its events span many groups, the
    // manager collects them and reports every fill once.
    let n = 300_000u64;
    let (securities, names, cmds) = a_sweep(n, n);
    let mut sim = Sim::new(&securities, &names, cmds.len());
    sim.join();
    sim.settle();
    sim.submit_all(&cmds);
    assert_eq!(sim.client.tracker.fills, n);
    assert_eq!(sim.client.collector.trade_count() as u64, n);
    // Every report went out in a frame of at most REPORTS_PER_FRAME (checked in `settle`).
    assert!(sim.report_frames as u64 >= n / REPORTS_PER_FRAME as u64);
    assert_eq!(sim.core.totals(), vec![(SecurityId(0), 0, 0)]);
    // The book's history held every command; once an image covers them the memory is given
    // back, not kept at the peak for the rest of the day.
    assert!(sim.core.memory_figures().history_capacity > n as usize);
    sim.settle_snapshots();
    let m = sim.core.memory_figures();
    assert_eq!(m.history, 0, "{m:?}");
    assert!(m.history_capacity <= 1024, "{m:?}");
}

#[test]
fn failover_and_migration_from_images_with_every_snapshot_cadence() {
    // Images after every command, every few, and only on explicit rounds; executors join,
    // die and migrate around them, in continuous trading and through whole days.
    for (seed, every) in [(21u64, 1usize), (22, 3), (23, 17), (24, 0)] {
        for day in [false, true] {
            let images = images_during(
                seed,
                day,
                every,
                &[
                    Action::Submit(60),
                    Action::Flush,
                    Action::Step(0),
                    Action::Step(0),
                    Action::Deliver(0, 63),
                    Action::Snapshot,
                    Action::Flush,
                    Action::Join,
                    Action::Submit(80),
                    Action::Flush,
                    Action::Step(0),
                    Action::Step(1),
                    Action::Deliver(0, 63),
                    Action::Deliver(1, 63),
                    Action::Snapshot,
                    Action::Flush,
                    Action::Step(0),
                    Action::Step(1),
                    Action::Deliver(0, 5),
                    Action::Kill(0),
                    Action::Submit(100),
                    Action::Flush,
                    Action::Join,
                    Action::Snapshot,
                    Action::Flush,
                    Action::Step(1),
                    Action::Deliver(1, 63),
                    Action::Kill(1),
                    Action::Flush,
                ],
            );
            // By count, images flow all along; by explicit rounds only, the script's three
            // rounds are answered in part (one executor dies before it answers).
            let least = if every == 0 { 2 } else { 6 };
            assert!(
                images >= least,
                "seed {seed} every {every}: only {images} images trusted"
            );
        }
    }
}

/// An executor that alters the images it sends, in each way a forger could: the image is
/// refused, the executor declared failed, and the result still equals the sequential one.
#[test]
fn a_forged_image_is_refused_and_its_executor_replaced() {
    let securities = SecurityTable::synthetic(3).unwrap();
    for (k, t) in [
        Tamper::SwapPriority,
        Tamper::Quantity,
        Tamper::DropOrder,
        Tamper::Reference,
        Tamper::Duplicate,
        Tamper::DuplicateInPlace,
        Tamper::Seq,
    ]
    .into_iter()
    .enumerate()
    {
        let cfg = Nasty {
            rows: 600,
            seed: 40 + k as u64,
            day: false,
            ..Nasty::default()
        };
        let (cmds, names, expected) = commands(&securities, &cfg);
        let mut sim = Sim::with(
            &securities,
            &names,
            cmds.len(),
            config(0),
            SharedPersist::default(),
            MemoryArchive::default(),
        );
        let rogue = sim.join();
        sim.execs.get_mut(&rogue).unwrap().tamper = Some(t);
        sim.settle();
        sim.core.submit(GATEWAY, &cmds[..400], sim.now, 0).unwrap();
        sim.settle();
        sim.run_dry();
        sim.core.snapshot_round(sim.now).unwrap();
        sim.settle();
        let e = sim.execs.get_mut(&rogue).unwrap();
        while !e.inbox.is_empty() {
            e.step();
        }
        assert!(e.tampered > 0, "{t:?}: nothing to tamper with");
        let items: Vec<Out> = e.outbox.drain(..).collect();
        sim.feed(rogue, items);
        let out = sim.core.flush(sim.now).unwrap();
        assert!(
            out.disconnect.contains(&rogue),
            "{t:?}: the forger is failed"
        );
        assert_eq!(
            sim.core.memory_figures().image_orders,
            0,
            "{t:?}: no forged image became a base"
        );
        sim.execs.remove(&rogue);
        sim.join();
        sim.settle();
        sim.core.submit(GATEWAY, &cmds[400..], sim.now, 0).unwrap();
        sim.settle();
        sim.drain(cmds.len());
        let collector = &mut sim.client.collector;
        collector.set_final_totals(&sim.core.totals());
        assert_eq!(collector.trades_csv(), expected.trades_csv(), "{t:?}");
        assert_eq!(collector.rejects_csv(), expected.rejects_csv(), "{t:?}");
        assert_eq!(collector.totals_csv(), expected.totals_csv(), "{t:?}");
    }
}

/// The commands from `from` on, numbered again from 0 (a restarted client's references).
fn renumbered(cmds: &[ClientCommand], from: usize) -> Vec<ClientCommand> {
    cmds[from..]
        .iter()
        .enumerate()
        .map(|(i, c)| ClientCommand {
            client_ref: i as u64,
            ..*c
        })
        .collect()
}

/// What a restarted manager must answer exactly as before the crash.
struct Observed {
    orders: Vec<proto::OrderStatus>,
    totals: Vec<(SecurityId, matching::Qty, matching::Qty)>,
    next_seq: u64,
    max_id: u64,
    tape: Vec<String>,
}

impl Observed {
    fn of(core: &Core, persist: &SharedPersist) -> Observed {
        Observed {
            orders: core.query_orders(GATEWAY, &[]).unwrap(),
            totals: core.totals(),
            next_seq: core.next_seq(),
            max_id: core.max_order_id(GATEWAY),
            tape: tape_multiset(persist),
        }
    }

    fn assert_same(&self, core: &Core, persist: &SharedPersist, label: &str) {
        assert_eq!(
            core.query_orders(GATEWAY, &[]).unwrap(),
            self.orders,
            "{label}"
        );
        assert_eq!(core.totals(), self.totals, "{label}");
        assert_eq!(core.next_seq(), self.next_seq, "{label}");
        assert_eq!(core.max_order_id(GATEWAY), self.max_id, "{label}");
        assert_eq!(
            tape_multiset(persist),
            self.tape,
            "{label}: nothing re-taped"
        );
    }
}

/// Every trade of the journal on the tape exactly once, as a sorted list.
fn tape_multiset(persist: &SharedPersist) -> Vec<String> {
    let mut v: Vec<String> = persist
        .get()
        .trades
        .iter()
        .map(|t| format!("{:?}", t.fill))
        .collect();
    v.sort();
    v
}

fn expected_multiset(expected: &ReplayCollector) -> Vec<String> {
    let mut v: Vec<String> = expected.trades().iter().map(|f| format!("{f:?}")).collect();
    v.sort();
    v
}

/// Restarts the manager from its archive and journal: a new core, recovered from the last
/// checkpoint (snapshots, manifest) plus the journal from its resume seq, with fresh executors.
fn restart(
    sim: Sim,
    persist: &SharedPersist,
    archive: &MemoryArchive,
    cfg: CoreConfig,
    n: usize,
    names: &BrokerRegistry,
) -> Sim {
    let securities = sim.securities.clone();
    drop(sim);
    archive.crash();
    let (manifest, books) = {
        let inner = archive.inner();
        let books = inner
            .manifest
            .iter()
            .flat_map(|m| &m.books)
            .map(|b| (*inner.books[&b.security.0]).clone())
            .collect::<Vec<_>>();
        (inner.manifest.clone(), books)
    };
    let restart = Restart { manifest, books };
    recovered(
        restart,
        persist,
        Box::new(archive.clone()),
        cfg,
        &securities,
        names,
        n,
    )
}

/// A new core recovered from `restart` plus the journal and tape in `persist` from its resume
/// seq, with fresh executors joined and settled.
fn recovered(
    restart: Restart,
    persist: &SharedPersist,
    archive: Box<dyn Archive>,
    cfg: CoreConfig,
    securities: &SecurityTable,
    names: &BrokerRegistry,
    n: usize,
) -> Sim {
    let resume = restart.resume_seq();
    let items = persist.get().items_from(resume);
    let taped: rustc_hash::FxHashSet<(u64, u32, u32)> = persist
        .get()
        .trades
        .iter()
        .filter(|t| t.seq >= resume)
        .map(|t| (t.seq, t.fill.security.0, t.fill_index))
        .collect();
    let now = Instant::now();
    let mut core = Core::new(
        cfg,
        Gateway::new(MarketRules::hose(), securities.clone()),
        persist.halves(),
        now,
    )
    .with_archive(archive);
    // The manifest says which refusals its runs hold, and a command's replay needs no lookup:
    // a restart late in a day must not read the index at all.
    let lookups_before = core.archive_stats().lookups;
    core.recover(restart, items.into_iter().map(Ok), &taped)
        .unwrap();
    let lookups = core.archive_stats().lookups - lookups_before;
    assert_eq!(lookups, 0, "recovery looked the archive up");
    let mut sim = Sim::around(core, securities, names, n, now);
    sim.join();
    sim.settle();
    sim
}

/// The day so far left the sequential engine's tape (each trade once) and totals.
fn assert_day_is_sequential(
    sim: &Sim,
    persist: &SharedPersist,
    expected: &ReplayCollector,
    label: &str,
) {
    assert_eq!(
        tape_multiset(persist),
        expected_multiset(expected),
        "{label}"
    );
    let mut totals = ReplayCollector::new(&sim.securities);
    totals.set_final_totals(&sim.core.totals());
    assert_eq!(totals.totals_csv(), expected.totals_csv(), "{label}");
}

/// A restart at a quiet moment (nothing in flight) rebuilds exactly the state that was: every
/// order's state (live and archived), totals, ids, and the tape gains nothing.
#[test]
fn a_restart_from_a_checkpoint_rebuilds_the_same_state() {
    let securities = SecurityTable::synthetic(5).unwrap();
    for (seed, day, every) in [
        (61u64, false, 7usize),
        (62, true, 3),
        (63, true, 0),
        (64, false, 1),
    ] {
        let cfg = Nasty {
            rows: 700,
            seed,
            brokers: 3,
            day,
            sweep_every: 89,
        };
        let (cmds, names, expected) = commands(&securities, &cfg);
        let (mut sim, persist, archive) =
            Sim::stored(&securities, &names, cmds.len(), config(every));
        sim.join();
        sim.join();
        sim.settle();
        let cut = 450;
        for (k, chunk) in cmds[..cut].chunks(50).enumerate() {
            sim.core.submit(GATEWAY, chunk, sim.now, 0).unwrap();
            sim.settle();
            sim.run_dry();
            if k % 3 == 1 {
                sim.core.snapshot_round(sim.now).unwrap();
                sim.settle();
            }
        }
        sim.run_dry();
        sim.run_dry();
        let before = Observed::of(&sim.core, &persist);
        let resume = archive.inner().manifest.as_ref().unwrap().resume_seq;
        assert!(
            resume > 1,
            "seed {seed}: the restart starts from snapshots, not seq 1"
        );
        let mut sim = restart(
            sim,
            &persist,
            &archive,
            config(every),
            cmds.len() - cut,
            &names,
        );
        before.assert_same(&sim.core, &persist, &format!("seed {seed}"));
        // The rest of the day on the restarted manager: the tape ends up the sequential one's.
        let rest = renumbered(&cmds, cut);
        sim.core.submit(GATEWAY, &rest, sim.now, 0).unwrap();
        sim.settle();
        sim.drain(rest.len());
        assert_day_is_sequential(&sim, &persist, &expected, &format!("seed {seed}"));
    }
}

/// A command whose events come back in several parts (a sweep of more resting orders than one
/// event group holds) is in the journal's tail: recovery replays it whole, as the live path
/// assembled it, and rebuilds the same state.
#[test]
fn a_restart_replays_a_command_of_many_event_groups() {
    // Sweeps all but 10 of the resting orders: more than two groups' worth of fills.
    let n = 2 * executor::MAX_GROUP_EVENTS as u64 + 100;
    let (securities, names, cmds) = a_sweep(n, n - 10);
    let (mut sim, persist, archive) = Sim::stored(&securities, &names, cmds.len(), config(0));
    sim.join();
    sim.settle();
    sim.submit_all(&cmds);
    assert_eq!(sim.client.tracker.fills, n - 10);
    let before = Observed::of(&sim.core, &persist);
    let sim = restart(sim, &persist, &archive, config(0), 0, &names);
    before.assert_same(&sim.core, &persist, "after the restart");
    assert_eq!(sim.core.totals(), vec![(SecurityId(0), 0, 1_000)]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    /// A crash at any moment (commands in flight, images half received, checkpoints at random
    /// points): the restarted manager completes what was journaled, restores the fills the tape
    /// missed, and the day ends with the sequential engine's trades (each once) and totals.
    #[test]
    fn a_restart_at_any_moment_loses_nothing_and_fills_nothing_twice(
        seed in 0u64..500,
        day in proptest::bool::ANY,
        every in prop_oneof![Just(0usize), 1usize..5, 5usize..40],
        actions in proptest::collection::vec(action(), 0..80),
        after_manifest in proptest::bool::ANY,
    ) {
        let securities = SecurityTable::synthetic(4).unwrap();
        let cfg = Nasty { rows: 300, seed, brokers: 3, day, sweep_every: 71 };
        let (cmds, names, expected) = commands(&securities, &cfg);
        let persist = SharedPersist::default();
        let archive = MemoryArchive::default();
        // Checkpoints stay in flight until a Durable action: the core answers for their orders.
        archive.hold(true);
        let mut sim = Sim::with(&securities, &names, cmds.len(), config(every), persist.clone(), archive.clone());
        sim.join();
        sim.settle();
        let mut sent = 0;
        for a in actions {
            sim.now += Duration::from_millis(1);
            match a {
                Action::Submit(k) => {
                    let end = (sent + k).min(cmds.len());
                    sim.core.submit(GATEWAY, &cmds[sent..end], sim.now, 0).unwrap();
                    sent = end;
                }
                Action::Step(k) => {
                    if let Some(id) = sim.pick(k) {
                        sim.execs.get_mut(&id).unwrap().step();
                    }
                }
                Action::Deliver(e, k) => {
                    if let Some(id) = sim.pick(e) {
                        sim.deliver(id, k);
                    }
                }
                Action::Join => { sim.join(); }
                Action::Kill(k) => {
                    if sim.execs.len() > 1 {
                        if let Some(id) = sim.pick(k) {
                            sim.execs.remove(&id);
                            sim.core.executor_lost(id, sim.now);
                        }
                    }
                }
                Action::Tick => sim.core.tick(sim.now),
                Action::Flush => sim.settle(),
                Action::Snapshot => sim.core.snapshot_round(sim.now).unwrap(),
                Action::Durable => archive.complete().unwrap(),
                Action::Lag(k) => sim.pass_on(Some(k)),
            }
        }
        // Commands waiting unsequenced behind a CLOSED would be resent by their client after
        // a crash; here they are let through first, so `rest` is exactly what was never sent.
        let mut rounds = 0;
        while sim.core.deferred() > 0 {
            rounds += 1;
            prop_assert!(rounds < 10_000, "deferred commands never let through");
            if sim.execs.is_empty() {
                sim.join();
                sim.settle();
            }
            sim.run_dry();
        }
        // Crash: whatever was not flushed is lost with the process (acks and routing only:
        // the journal and tape here are written through, like --fsync always). A checkpoint in
        // flight is lost too, or its manifest was written just before the crash.
        if after_manifest {
            archive.complete().unwrap();
        }
        let rest = renumbered(&cmds, sent);
        let mut sim = restart(sim, &persist, &archive, config(every), rest.len(), &names);
        sim.core.submit(GATEWAY, &rest, sim.now, 0).unwrap();
        sim.settle();
        sim.drain(rest.len());
        prop_assert_eq!(tape_multiset(&persist), expected_multiset(&expected));
        let mut totals = ReplayCollector::new(&securities);
        totals.set_final_totals(&sim.core.totals());
        prop_assert_eq!(totals.totals_csv(), expected.totals_csv());
    }
}

/// Files of a snapshot directory, by name.
fn dir_files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The checkpoint writer (the real one: a thread writing runs, packs and the manifest to disk)
/// dies at each step of a checkpoint (before its run, before its pack, before its manifest,
/// after it), on the first checkpoint and on a later one, while the core answers for the
/// orders in flight. A restart from the snapshot directory and the journal rebuilds exactly the
/// state before the crash, removes what the manifest does not name, and the rest of the day
/// ends with the sequential engine's trades and totals.
#[test]
fn a_crash_at_any_step_of_a_checkpoint_write_recovers_exactly() {
    let securities = SecurityTable::synthetic(5).unwrap();
    let points = [
        None,
        Some(CrashPoint::BeforeRun),
        Some(CrashPoint::BeforePack),
        Some(CrashPoint::BeforeManifest),
        Some(CrashPoint::AfterManifest),
    ];
    let mut in_flight_seen = 0;
    for (i, crash) in points.into_iter().enumerate() {
        for crash_on in [1u64, 3] {
            let label = format!("{crash:?} in checkpoint {crash_on}");
            let cfg = Nasty {
                rows: 700,
                seed: 90 + i as u64 * 7 + crash_on,
                brokers: 3,
                day: i % 2 == 1,
                sweep_every: 83,
            };
            let (cmds, names, expected) = commands(&securities, &cfg);
            let persist = SharedPersist::default();
            let tmp = tempfile::tempdir().unwrap();
            let dir = journal::SnapshotDir::open(tmp.path()).unwrap();
            let archive = manager::archive::DiskArchive::open_crashing(
                dir,
                None,
                crash.map(|c| (c, crash_on)),
            )
            .unwrap();
            let every = 5;
            let mut sim = Sim::with_store(
                &securities,
                &names,
                cmds.len(),
                config(every),
                persist.clone(),
                Box::new(archive),
            );
            sim.join();
            sim.join();
            sim.settle();
            let cut = 500;
            let mut crashed = false;
            let mut sent = 0;
            for (k, chunk) in cmds[..cut].chunks(50).enumerate() {
                sim.core.submit(GATEWAY, chunk, sim.now, 0).unwrap();
                sent += chunk.len();
                sim.settle();
                sim.run_dry();
                if k % 2 == 1 {
                    if let Err(e) = sim.core.wait_checkpoint(sim.now) {
                        assert!(
                            format!("{e:#}").contains("injected crash"),
                            "{label}: {e:#}"
                        );
                        crashed = true;
                        break;
                    }
                    let before = sim.core.query_orders(GATEWAY, &[]).unwrap();
                    let records = sim.core.memory_figures().records;
                    sim.core.snapshot_round(sim.now).unwrap();
                    let m = sim.core.memory_figures();
                    if m.archiving > 0 {
                        in_flight_seen += 1;
                        assert_eq!(records - m.records, m.archiving, "{label}");
                    }
                    // In flight: out of the projection, answered exactly all the same.
                    assert_eq!(
                        sim.core.query_orders(GATEWAY, &[]).unwrap(),
                        before,
                        "{label}"
                    );
                    sim.settle();
                    sim.run_dry();
                }
            }
            if !crashed {
                // The crash comes at the checkpoint in flight at the end, if any.
                crashed = sim.core.wait_checkpoint(sim.now).is_err();
            }
            assert_eq!(crashed, crash.is_some(), "{label}");
            sim.run_dry();
            sim.run_dry();
            let before = Observed::of(&sim.core, &persist);
            let files_at_crash = dir_files(tmp.path());
            drop(sim);
            // Restart from the disk.
            let (restart, archive) = manager::setup::open_checkpoint(tmp.path()).unwrap();
            let generation = restart.manifest.as_ref().map_or(0, |m| m.generation);
            match crash {
                Some(CrashPoint::AfterManifest) => assert_eq!(generation, crash_on, "{label}"),
                Some(_) => assert_eq!(generation, crash_on - 1, "{label}"),
                None => assert!(generation >= 3, "{label}"),
            }
            let named: Vec<String> = restart
                .manifest
                .iter()
                .flat_map(|m| {
                    m.books.iter().filter_map(|b| b.file.clone()).chain(
                        m.runs
                            .iter()
                            .map(|r| journal::finished::run_file_name(r.number)),
                    )
                })
                .chain(restart.manifest.iter().map(|_| "MANIFEST".to_string()))
                .collect();
            let left = dir_files(tmp.path());
            for f in &left {
                assert!(named.contains(f), "{label}: leftover {f} in {left:?}");
            }
            if crash == Some(CrashPoint::BeforeManifest) {
                assert!(
                    files_at_crash.iter().any(|f| !left.contains(f)),
                    "{label}: the unnamed pack and run are removed: {files_at_crash:?}"
                );
            }
            let mut sim = recovered(
                restart,
                &persist,
                Box::new(archive),
                config(every),
                &securities,
                &names,
                cmds.len() - sent,
            );
            before.assert_same(&sim.core, &persist, &label);
            // The rest of the day, with checkpoints on the restarted writer.
            let rest = renumbered(&cmds, sent);
            sim.core.submit(GATEWAY, &rest, sim.now, 0).unwrap();
            sim.settle();
            sim.settle_snapshots();
            sim.core.wait_checkpoint(sim.now).unwrap();
            sim.drain(rest.len());
            assert_day_is_sequential(&sim, &persist, &expected, &label);
        }
    }
    assert!(
        in_flight_seen > 5,
        "orders were in flight: {in_flight_seen}"
    );
}
