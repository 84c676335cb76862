//! `executor`: a grid PC. Joins the manager with the executor token, owns the securities the
//! shard map gives it, runs one matching engine for them, reports every command's events in
//! sequence order, heartbeats with statistics, and reconnects with backoff if the manager goes.
//!
//! Must not: sequence, validate or journal (the manager did all that before routing), or keep a
//! book across reconnections (the manager replays the history into a fresh engine).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use matching::{Engine, Event, SecurityId};
use proto::{BookDepth, Credentials, ExecutorStats, FromExecutor, SeqEvent, ToExecutor, WireError};
use rustc_hash::FxHashSet;
use tokio::sync::mpsc;

#[derive(Parser, Debug)]
#[command(
    name = "executor",
    version,
    about = "gridmatch executor: matches the securities the manager assigns to this PC"
)]
struct Args {
    #[command(flatten)]
    grid: proto::cli::ManagerArgs,
    /// Name shown in the monitor (default: host name and process id).
    #[arg(long)]
    name: Option<String>,
    /// Emulated extra work per order, in microseconds (experiments).
    #[arg(long, default_value_t = 0)]
    work_us: u32,
    /// How --work-us is spent: `spin` burns this machine's CPU per order; `sleep` waits
    /// batch-size x work-us per batch, emulating work done on the executor's own CPU (what a
    /// grid of separate PCs has, and a shared test machine does not).
    #[arg(long, value_enum, default_value_t = WorkMode::Spin)]
    work_mode: WorkMode,
    /// Book levels per side reported to monitors in heartbeats.
    #[arg(long, default_value_t = 5)]
    depth: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum WorkMode {
    Spin,
    Sleep,
}

fn main() -> anyhow::Result<()> {
    proto::runtime::init_tracing();
    let args = Args::parse();
    let name = args.name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "executor".into());
        format!("{}-{}", host.trim(), std::process::id())
    });
    // One thread: matching is sequential per executor, and on small machines a second runtime
    // thread mostly competes with the manager for cores.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        tokio::select! {
            r = run(&args, &name) => r,
            _ = proto::runtime::shutdown_signal() => Ok(()),
        }
    })
}

async fn run(args: &Args, name: &str) -> anyhow::Result<()> {
    let endpoint = proto::quic::client_endpoint(&args.grid.ca)?;
    let mut backoff = Duration::from_millis(100);
    loop {
        let addr: SocketAddr = proto::quic::resolve(&args.grid.manager)?;
        let creds = Credentials::Executor {
            name: name.to_string(),
            token: args.grid.token.clone(),
        };
        match proto::quic::connect(&endpoint, addr, creds).await {
            Ok((conn, writer, reader, welcome)) => {
                backoff = Duration::from_millis(100);
                tracing::info!(node = welcome.session, manager = %addr, name, "executor joined the grid");
                let result = session(args, writer, reader, welcome.heartbeat_ms).await;
                conn.close(0u32.into(), b"bye");
                match result {
                    Ok(()) => tracing::warn!("manager closed the session; reconnecting"),
                    Err(e) => tracing::warn!("session lost: {e:#}; reconnecting"),
                }
            }
            Err(WireError::Refused(reason)) => {
                anyhow::bail!("the manager refused this executor: {reason}")
            }
            Err(e) => {
                tracing::warn!("cannot reach the manager at {addr}: {e}; retrying in {backoff:?}")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

struct State {
    engine: Engine,
    work_us: u32,
    work_mode: WorkMode,
    /// Emulated work still to wait for before reporting (sleep mode).
    owed: Duration,
    stats: ExecutorStats,
    touched: FxHashSet<SecurityId>,
    scratch: Vec<Event>,
    ready: bool,
}

impl State {
    /// Applies one manager message; returns the events to report, if any.
    fn apply(&mut self, msg: ToExecutor) -> Option<Vec<SeqEvent>> {
        match msg {
            ToExecutor::Assign {
                map_version,
                securities,
                replay,
            } => {
                for s in &securities {
                    self.engine.open_book(*s);
                    self.touched.insert(*s);
                }
                // Rebuild silently: these commands' events were delivered already.
                for s in &replay {
                    self.scratch.clear();
                    self.engine.process(&s.command, &mut self.scratch);
                }
                if !securities.is_empty() {
                    tracing::info!(
                        map_version,
                        securities = securities.len(),
                        "securities assigned"
                    );
                    if !self.ready {
                        self.ready = true;
                        tracing::info!("executor ready");
                    }
                }
                if !replay.is_empty() {
                    tracing::info!(
                        map_version,
                        commands = replay.len(),
                        "books rebuilt by replay"
                    );
                }
                None
            }
            ToExecutor::Revoke {
                map_version,
                securities,
            } => {
                for s in &securities {
                    self.engine.close_book(*s);
                    self.touched.remove(s);
                }
                tracing::info!(
                    map_version,
                    securities = securities.len(),
                    "securities revoked"
                );
                None
            }
            ToExecutor::Orders(cmds) => {
                let started = Instant::now();
                let mut out = Vec::with_capacity(cmds.len() * 3);
                for s in &cmds {
                    if self.work_us > 0 {
                        match self.work_mode {
                            WorkMode::Spin => spin(Duration::from_micros(self.work_us as u64)),
                            WorkMode::Sleep => {
                                self.owed += Duration::from_micros(self.work_us as u64)
                            }
                        }
                    }
                    self.scratch.clear();
                    self.engine.process(&s.command, &mut self.scratch);
                    self.touched.insert(s.command.security());
                    let n = self.scratch.len();
                    for (i, ev) in self.scratch.iter().enumerate() {
                        let last = i + 1 == n;
                        // The manager acknowledged acceptance already; only the last event of a
                        // command is always sent, so it can mark completion.
                        if last || !matches!(ev, Event::Accepted { .. }) {
                            out.push(SeqEvent {
                                seq: s.seq,
                                event: *ev,
                                last,
                            });
                        }
                    }
                }
                self.stats.orders_handled += cmds.len() as u64;
                self.stats.busy_micros += started.elapsed().as_micros() as u64;
                Some(out)
            }
        }
    }

    fn heartbeat(&mut self, depth: usize, queue_depth: usize) -> ExecutorStats {
        let mut stats = self.stats.clone();
        stats.queue_depth = queue_depth as u32;
        stats.books = self
            .touched
            .drain()
            .filter(|s| self.engine.has_book(*s))
            .map(|security| {
                let (bids, asks) = self.engine.depth(security, depth);
                BookDepth {
                    security,
                    bids,
                    asks,
                }
            })
            .collect();
        stats
    }
}

/// Busy-waits, emulating CPU-bound work per order.
fn spin(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

async fn session(
    args: &Args,
    mut writer: proto::FrameWriter,
    mut reader: proto::FrameReader,
    heartbeat_ms: u32,
) -> anyhow::Result<()> {
    // Frames are decoded on their own task so the loop below can also heartbeat (a partially
    // read frame must never be abandoned by a select).
    let (in_tx, mut in_rx) = mpsc::channel::<ToExecutor>(1024);
    let read_task = tokio::spawn(async move {
        loop {
            match reader.recv::<ToExecutor>().await {
                Ok(Some(m)) => {
                    if in_tx.send(m).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    });
    let mut state = State {
        engine: Engine::new(),
        work_us: args.work_us,
        work_mode: args.work_mode,
        owed: Duration::ZERO,
        stats: ExecutorStats::default(),
        touched: FxHashSet::default(),
        scratch: Vec::new(),
        ready: false,
    };
    let mut heartbeat = tokio::time::interval(Duration::from_millis(heartbeat_ms.max(10) as u64));
    let result = loop {
        tokio::select! {
            msg = in_rx.recv() => {
                let Some(msg) = msg else { break Ok(()) };
                if let Some(events) = state.apply(msg) {
                    // Emulated work keeps heartbeating: a busy PC is not a dead one. (Only when
                    // work is owed: a timer costs up to a millisecond of timer granularity.)
                    let owed = std::mem::take(&mut state.owed);
                    let until = tokio::time::Instant::now() + owed;
                    while !owed.is_zero() {
                        tokio::select! {
                            _ = tokio::time::sleep_until(until) => break,
                            _ = heartbeat.tick() => {
                                let stats = state.heartbeat(args.depth, in_rx.len());
                                writer.send(&FromExecutor::Heartbeat(stats)).await.context("sending heartbeat")?;
                            }
                        }
                    }
                    writer.send(&FromExecutor::Events(events)).await.context("sending events")?;
                }
            }
            _ = heartbeat.tick() => {
                let stats = state.heartbeat(args.depth, in_rx.len());
                writer.send(&FromExecutor::Heartbeat(stats)).await.context("sending heartbeat")?;
            }
        }
    };
    read_task.abort();
    match read_task.await {
        Ok(Err(e)) => Err(e.into()),
        _ => result,
    }
}
