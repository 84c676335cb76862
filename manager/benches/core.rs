//! The manager's serial path alone, sans I/O: commands in, outbox out, persistence in memory,
//! executors as in-process `ExecutorCore`s. Prints orders/s and ns/order per stage, next to the
//! sequential `matching::Exchange` on the same stream in the same run (the machine is shared and
//! noisy: read the ratio, not the absolute figure). Stages are timed in the thread's CPU time,
//! so time the bench spends descheduled by other processes is not counted.
//!
//! ```sh
//! cargo bench -p manager --bench core [-- ORDERS [EXECUTORS] [--brokers] [--batch=N]]
//! ```
//!
//! `--batch=N` (default 4,096, the server's group-commit budget) sets how many commands each
//! round carries: a paced load reaches the core in small batches, and what a batch costs
//! whatever its size shows there. Each round also reads the thread's CPU clock a few times (a
//! system call each, a few hundred ns in a VM), which below some 64 commands a round is a
//! visible share of the figures.
//!
//! Commands enter through one gateway session (raw ids), or with `--brokers` through one
//! session per broker, as user-sim and FIX clients send them: each batch is split by broker,
//! and ids are the brokers' own (so every id lives in its broker's namespace).
//!
//! Persistence runs twice: in memory ([`MemoryPersist`], as the tests use) and the real journal
//! and finished-order archive writing to tmpfs (`/dev/shm`) without fsync, which is the
//! production code path minus the disk.
//!
//! The core runs as the manager runs it: the sequencing stage split off ([`Core::split`]), the
//! rest fed what it committed. Stages, per batch of 4,096 commands (the server's group-commit
//! budget):
//! - `sequencing`: gateway checks, sequence numbers, journal append and group commit, the
//!   acknowledgements: all an acknowledgement waits for (the sequencing thread);
//! - `route`: what was sequenced applied to the routing state, and flushed into executor
//!   messages (the core thread);
//! - `events`: the executors' groups validated against the projection, reports built (the
//!   core thread);
//! - `executor`: the executors' matching (not the manager's cost; shown for scale).
//!
//! The two threads work in parallel where there are cores for them, so the manager's capacity
//! is set by the slower of the two; both in one thread is what a one-core host gets.

use std::time::{Duration, Instant};

use executor::ExecutorCore;
use manager::core::{Core, CoreConfig, MemoryPersist, NodeId, Sequencer, SessionKind};
use manager::setup::{disk_persist, recover_core};
use matching::stream::{to_command, BrokerRegistry};
use matching::{BrokerId, Exchange, Gateway, MarketRules, SecurityTable};
use proto::ClientCommand;
use user_sim::generate::{generate, GenConfig};

const GATEWAY: u32 = 1;
/// Commands per round unless `--batch=N` says otherwise: the server's group-commit budget.
const BATCH: usize = 4096;

#[derive(Default)]
struct Stages {
    sequencing: Duration,
    route: Duration,
    events: Duration,
    /// Book images checked against the projection and made bases (the core thread).
    images: Duration,
    executor: Duration,
}

/// This thread's CPU time (time spent preempted by other processes is not in it).
fn cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID is unavailable");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time since `start` (a [`cpu_now`] reading).
fn cpu_since(start: Duration) -> Duration {
    cpu_now().saturating_sub(start)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let orders: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let executors: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(4);
    let batch: usize = std::env::args()
        .find_map(|a| a.strip_prefix("--batch=").map(str::to_owned))
        .map(|b| b.parse().expect("--batch=N takes a positive number"))
        .unwrap_or(BATCH);
    assert!(batch > 0, "--batch=N takes a positive number");
    let entry = if std::env::args().any(|a| a == "--brokers") {
        Entry::Brokers
    } else {
        Entry::Gateway
    };
    let rules = MarketRules::hose();
    let securities = SecurityTable::synthetic(200).unwrap();
    let rows = generate(
        &GenConfig {
            orders,
            seed: 1,
            ..GenConfig::default()
        },
        &securities,
        &rules,
    );
    let mut names = BrokerRegistry::new();
    let cmds: Vec<ClientCommand> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| ClientCommand {
            client_ref: i as u64,
            command: to_command(r, &securities, &mut names),
        })
        .collect();
    println!(
        "manager core bench: {} commands in rounds of {batch}, {} securities, {executors} in-process executors, {}",
        cmds.len(),
        securities.len(),
        match entry {
            Entry::Gateway => "one gateway session",
            Entry::Brokers => "one session per broker",
        }
    );

    // Baseline: the sequential exchange (gateway + engine) on the same commands.
    let started = cpu_now();
    let mut exchange = Exchange::new(rules, securities.clone());
    let mut events = Vec::new();
    for c in &cmds {
        events.clear();
        exchange.process(&c.command, &mut events);
    }
    let baseline = cpu_since(started);

    let n = cmds.len() as f64;
    for persistence in [Persistence::Memory, Persistence::Journal] {
        let stages = run_core(
            &cmds,
            &names,
            &securities,
            executors,
            persistence,
            entry,
            batch,
        );
        report(&stages, baseline, n, persistence);
    }
}

/// How commands reach the core.
#[derive(Clone, Copy, Debug)]
enum Entry {
    Gateway,
    Brokers,
}

#[derive(Clone, Copy, Debug)]
enum Persistence {
    /// `MemoryPersist`: every record kept in a vector.
    Memory,
    /// The journal, tape and archive in a scratch directory on tmpfs, no fsync.
    Journal,
}

fn report(stages: &Stages, baseline: Duration, n: f64, persistence: Persistence) {
    let ns = |d: Duration| d.as_nanos() as f64 / n;
    let core = stages.route + stages.events;
    let both = stages.sequencing + core;
    let slower = stages.sequencing.max(core);
    println!(
        "\npersistence: {}",
        match persistence {
            Persistence::Memory => "in memory (MemoryPersist)",
            Persistence::Journal => "the journal on tmpfs, no fsync",
        }
    );
    println!("{:<34} {:>10} {:>12}", "stage", "ns/order", "orders/s");
    let line = |name: &str, d: Duration| {
        println!(
            "{name:<34} {:>10.0} {:>12.0}",
            ns(d),
            n / d.as_secs_f64().max(1e-9)
        )
    };
    line("sequential Exchange (baseline)", baseline);
    line("sequencing: check, seq, journal, ack", stages.sequencing);
    line("core: route", stages.route);
    line("core: events (validate, report)", stages.events);
    line("core thread, total", core);
    line("both stages in one thread", both);
    line("pipeline (the slower stage)", slower);
    line("executors' matching (for scale)", stages.executor);
    let x = |d: Duration| d.as_secs_f64() / baseline.as_secs_f64();
    println!(
        "per order, against the sequential exchange: acknowledgement path {:.2}x, core thread {:.2}x, both in one thread {:.2}x",
        x(stages.sequencing),
        x(core),
        x(both)
    );
}

fn run_core(
    cmds: &[ClientCommand],
    names: &BrokerRegistry,
    securities: &SecurityTable,
    executors: usize,
    persistence: Persistence,
    entry: Entry,
    batch_size: usize,
) -> Stages {
    let now = Instant::now();
    let gateway = Gateway::new(MarketRules::hose(), securities.clone());
    let scratch = tempfile::Builder::new()
        .prefix("gridmatch-core-bench")
        .tempdir_in(if std::path::Path::new("/dev/shm").is_dir() {
            std::path::PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        })
        .expect("a scratch directory");
    let mut core = match persistence {
        Persistence::Memory => {
            Core::new(CoreConfig::default(), gateway, MemoryPersist::pair(), now)
        }
        Persistence::Journal => {
            let mut cfg = journal::StoreConfig::in_data_dir(scratch.path());
            cfg.durability = journal::Durability::Never;
            let binding = journal::Binding::new(securities, MarketRules::hose());
            let store = journal::recover(&cfg, &binding)
                .and_then(|r| r.open())
                .expect("a fresh journal");
            let next = store.journal.next_seq();
            let core = Core::new(CoreConfig::default(), gateway, disk_persist(store), now);
            recover_core(core, scratch.path(), &cfg, next)
                .expect("a fresh archive")
                .0
        }
    };
    for i in 0..names.len() as u32 {
        core.broker_id(names.name(BrokerId(i)).unwrap());
    }
    core.open_session(GATEWAY, SessionKind::Gateway);
    // Broker b's session is GATEWAY + 1 + b.
    for b in 0..names.len() as u32 {
        core.open_session(GATEWAY + 1 + b, SessionKind::Broker(BrokerId(b)));
    }
    let mut front = core.split().expect("the sequencing stage");
    let mut per_broker: Vec<Vec<ClientCommand>> = vec![Vec::new(); names.len()];
    let mut execs: Vec<(NodeId, ExecutorCore)> = (0..executors)
        .map(|i| {
            let id = core.executor_joined(&format!("e{i}"), "bench", now);
            (id, ExecutorCore::new(MarketRules::hose(), securities))
        })
        .collect();
    let mut stages = Stages::default();
    let mut groups = Vec::new();
    // Settle the shard map before measuring.
    deliver(
        (&mut front, &mut core),
        &mut execs,
        &mut groups,
        now,
        &mut Stages::default(),
    );
    for batch in cmds.chunks(batch_size) {
        match entry {
            Entry::Gateway => {
                let t = cpu_now();
                front.submit(GATEWAY, batch, now, 0).unwrap();
                stages.sequencing += cpu_since(t);
            }
            Entry::Brokers => {
                for c in batch {
                    let b = c
                        .command
                        .broker()
                        .expect("generated commands name a broker");
                    per_broker[b.0 as usize].push(*c);
                }
                let t = cpu_now();
                for (b, cmds) in per_broker.iter().enumerate() {
                    if !cmds.is_empty() {
                        front.submit(GATEWAY + 1 + b as u32, cmds, now, 0).unwrap();
                    }
                }
                stages.sequencing += cpu_since(t);
                per_broker.iter_mut().for_each(Vec::clear);
            }
        }
        deliver(
            (&mut front, &mut core),
            &mut execs,
            &mut groups,
            now,
            &mut stages,
        );
    }
    // Whatever is still travelling.
    for _ in 0..8 {
        deliver(
            (&mut front, &mut core),
            &mut execs,
            &mut groups,
            now,
            &mut stages,
        );
    }
    assert_eq!(core.in_flight(), 0, "every command must be final");
    if matches!(persistence, Persistence::Memory) {
        image_costs((&mut front, &mut core), &mut execs, &mut groups, now);
        query_costs((&mut front, &mut core), cmds, now);
    }
    stages
}

/// What book images cost the core thread: an image of every book (the run's resting orders),
/// each checked order by order against the projection before it may serve failover. A book of
/// tens of thousands of orders is checked in one go, so this is a pause in the core's loop.
fn image_costs(
    (front, core): (&mut Sequencer, &mut Core),
    execs: &mut [(NodeId, ExecutorCore)],
    groups: &mut Vec<proto::EventGroup>,
    now: Instant,
) {
    core.snapshot_round(now).unwrap();
    let mut stages = Stages::default();
    for _ in 0..4 {
        deliver((&mut *front, &mut *core), execs, groups, now, &mut stages);
    }
    let figures = core.memory_figures();
    let imaged = figures.image_orders as u64;
    assert!(
        figures.images_accepted > 0,
        "the books' images were accepted"
    );
    println!(
        "\nbook images ({} books, {imaged} resting orders), checked on the core thread: {:.3} ms, {:.0} ns per order",
        figures.images_accepted,
        stages.images.as_secs_f64() * 1e3,
        stages.images.as_nanos() as f64 / imaged.max(1) as f64,
    );
}

/// What a broker's order queries cost the core thread with the whole run's orders in memory
/// and many commands in flight: the core answers queries between batches, so a query that
/// walks every order in memory (or every command in flight, per id asked) is a stall one
/// client can cause at will.
fn query_costs((front, core): (&mut Sequencer, &mut Core), cmds: &[ClientCommand], now: Instant) {
    const IN_FLIGHT: usize = 20_000;
    const ASKED: u64 = 65_536;
    // Fresh NEWs (the run's, their ids moved up) sequenced and routed, never answered by an
    // executor: they stay in flight.
    let fresh: Vec<ClientCommand> = cmds
        .iter()
        .filter_map(|c| match c.command {
            matching::Command::New(mut o) => {
                o.id.0 += 1 << 36;
                Some(ClientCommand {
                    client_ref: c.client_ref,
                    command: matching::Command::New(o),
                })
            }
            _ => None,
        })
        .take(IN_FLIGHT)
        .collect();
    for batch in fresh.chunks(BATCH) {
        front.submit(GATEWAY, batch, now, 0).unwrap();
        core.apply_sequenced(front.commit().unwrap().items);
        drop(core.flush(now).unwrap());
    }
    let broker_session = GATEWAY + 1;
    let t = cpu_now();
    let begun = core.query_orders_begin(broker_session, &[]);
    let all_mine = cpu_since(t);
    let t = cpu_now();
    let own = begun.finish().unwrap();
    let finishing = cpu_since(t);
    let unknown: Vec<matching::OrderId> = (0..ASKED)
        .map(|k| matching::OrderId((1 << 30) + k))
        .collect();
    let t = cpu_now();
    let begun = core.query_orders_begin(broker_session, &unknown);
    let by_id = cpu_since(t);
    assert!(
        begun.finish().unwrap().is_empty(),
        "ids never used cannot be found"
    );
    println!(
        "\nqueries ({} orders in memory, {} in flight), on the core thread: one broker's \"all my orders\" ({} found) {:.3} ms (then {:.3} ms reading the archive and sorting, off it); {ASKED} unknown ids {:.3} ms",
        core.memory_figures().records,
        core.in_flight(),
        own.len(),
        all_mine.as_secs_f64() * 1e3,
        finishing.as_secs_f64() * 1e3,
        by_id.as_secs_f64() * 1e3,
    );
}

/// One loop of both stages: the sequencing stage commits and hands over, the core routes and
/// flushes, executors process, their groups come back.
fn deliver(
    (front, core): (&mut Sequencer, &mut Core),
    execs: &mut [(NodeId, ExecutorCore)],
    groups: &mut Vec<proto::EventGroup>,
    now: Instant,
    stages: &mut Stages,
) {
    let t = cpu_now();
    let released = front.commit().unwrap();
    // The server takes the acknowledgements out and gives their vector back.
    front.recycle_acks(released.reports);
    stages.sequencing += cpu_since(t);
    let t = cpu_now();
    core.apply_sequenced(released.items);
    let mut out = core.flush(now).unwrap();
    stages.route += cpu_since(t);
    for fb in out.feedback.drain(..) {
        front.feedback(fb, now).unwrap();
    }
    // As the session writers do once they encoded them.
    let pool = core.report_pool();
    for (_, reports) in std::mem::take(&mut out.reports) {
        pool.give(reports);
    }
    let routed_pool = core.routed_pool();
    for (node, msgs) in out.executors {
        let Some((_, exec)) = execs.iter_mut().find(|(id, _)| *id == node) else {
            continue;
        };
        groups.clear();
        let mut images = Vec::new();
        let t = cpu_now();
        for m in msgs {
            // The executor's writer encodes a batch and gives its vector back to the pool;
            // here the in-process executor takes a copy in the encoding's place.
            let applied = match m {
                proto::ToExecutor::Orders(batch) => {
                    let applied = exec.apply(proto::ToExecutor::Orders(batch.clone()), groups);
                    routed_pool.give(batch);
                    applied
                }
                m => exec.apply(m, groups),
            };
            images.extend(applied.images);
        }
        stages.executor += cpu_since(t);
        let t = cpu_now();
        core.executor_events(node, std::mem::take(groups), now)
            .unwrap();
        stages.events += cpu_since(t);
        // Images follow the events they were asked after, as the executor sends them. (Clock
        // reads are system calls: none for the rounds without images.)
        if !images.is_empty() {
            let t = cpu_now();
            for part in images {
                core.executor_image(node, part, now).unwrap();
            }
            stages.images += cpu_since(t);
        }
    }
}
