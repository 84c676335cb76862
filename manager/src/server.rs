//! The manager's I/O shell: QUIC accept loop, one task per connection, and the two threads of the
//! core pipeline, the only places state changes: the sequencing thread owns the [`Sequencer`]
//! (check, sequence, journal, acknowledge) and the core thread the [`Core`] behind it (routing,
//! executors' events, projection, reports, checkpoints).
//!
//! Each runs on its own OS thread (a single-threaded runtime), so a journal commit (fsync)
//! blocks the sequencing thread only, and routing and validation run on another core than
//! sequencing where the host has one (`--stage-threads 1`: both on one thread, as two tasks).
//! The core thread flushes after at most about a group commit's worth of sequenced commands
//! and of executor event groups, so reports and feed batches go out in group-sized pieces.
//! Queues, all bounded:
//! - submissions travel on a bounded channel that the sequencing thread stops reading while
//!   order entry must wait (too many commands held without an owner, or a CLOSED completing);
//! - session changes and queries go to the sequencing thread, which passes queries on behind
//!   what it sequenced before them;
//! - what the sequencing thread committed goes to the core thread on a short queue
//!   ([`HANDOVER_QUEUE`]): sequencing never runs far ahead of routing;
//! - executor messages on a bounded channel the core thread reads first, so failover is never
//!   stuck behind order entry;
//! - each session's outgoing messages on a bounded queue: a client that does not read is
//!   disconnected (its orders stay), it never slows anyone else;
//! - each session may have at most `max_in_flight` commands not yet final: beyond it the
//!   manager stops reading that session until reports drain it;
//! - monitors get a `watch` snapshot and a lossy broadcast of trades and log lines.
//!
//! Before a peer has authenticated it may send one hello of at most 4 KiB within the
//! handshake timeout; connections are capped in total, sessions per broker too.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use matching::{BrokerId, Command, OrderId, Phase, Qty, SecurityId};
use proto::limits::{CLIENT_MAX_FRAME, MAX_BATCH, MAX_BROKER_ORDER_ID, MAX_QUERY_IDS};
use proto::{
    ClientCommand, ClientMsg, Credentials, FromExecutor, GridSnapshot, HelloReply, ManagerToClient,
    MonitorMsg, SecurityInfo, SessionLimits, ToExecutor, Welcome, MAX_FRAME, PROTOCOL_VERSION,
};
use quinn::{Connection, Endpoint};
use rustc_hash::FxHashMap;
use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify};
use transport::quic::accept_hello;
use transport::{FrameReader, FrameWriter};

use crate::core::pool::{Frames, VecPool};
use crate::core::{
    check_submit, Core, Feedback, NodeId, OrdersAnswer, Sequencer, SessionId, SessionKind,
    EXCHANGE_SESSION,
};
use crate::schedule::Schedule;

/// Submit batches queued towards the core before senders wait.
const SUBMIT_QUEUE: usize = 256;
/// Control messages (executor events, session changes, queries) queued towards a stage.
const CONTROL_QUEUE: usize = 16_384;
/// Hand-overs from the sequencing thread queued towards the core thread before the sequencing
/// thread waits (each at most a group commit's worth of commands): how far sequencing may run
/// ahead of routing.
const HANDOVER_QUEUE: usize = 16;
/// Messages queued to one client (also bounded in bytes by `SESSION_BYTES`).
const SESSION_QUEUE: usize = 1024;
/// Bytes of reports and answers queued to one client before it counts as not reading and is
/// disconnected (its orders stay).
const SESSION_BYTES: usize = 32 << 20;
/// Query answers wait (the session reads nothing more) while this much is queued.
const ANSWER_BYTES: usize = 4 << 20;
/// Messages queued to one executor before it counts as stuck and is disconnected.
const EXECUTOR_QUEUE: usize = 65_536;
/// Order states per answer frame.
const ORDERS_PER_FRAME: usize = 4096;
/// Commands taken into one group commit, at most (plus one batch).
const GROUP_COMMIT_BUDGET: usize = 8192;
const MONITOR_INTERVAL: Duration = Duration::from_millis(250);
/// How long a stopped stage waits for the other to stop and say why.
const STAGE_STOP: Duration = Duration::from_secs(5);

/// Limits of the server, with defaults that suit one exchange host.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Connections of any role (a refused one is told "busy").
    pub max_connections: u32,
    /// Sessions one broker may have open at once.
    pub max_sessions_per_broker: usize,
    /// Time for a new connection to complete its TLS handshake and hello.
    pub handshake_timeout: Duration,
    /// Commands a session may have sent and not yet seen final.
    pub max_in_flight: u32,
    /// Time allowed for the rest of a frame once its header arrived.
    pub frame_timeout: Duration,
    /// A client whose stream accepts nothing for this long is disconnected.
    pub slow_consumer_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 1024,
            max_sessions_per_broker: 8,
            handshake_timeout: Duration::from_secs(5),
            max_in_flight: 200_000,
            frame_timeout: Duration::from_secs(10),
            slow_consumer_timeout: Duration::from_secs(10),
        }
    }
}

pub struct ServerConfig {
    /// Serve Prometheus metrics at `http://ADDR/metrics` (`--metrics-addr`).
    pub metrics_addr: Option<SocketAddr>,
    pub token: String,
    /// The market-data feed (`None`: no feed sessions; the core must run with
    /// `CoreConfig::feed` off too).
    pub feed: Option<crate::feed::FeedOptions>,
    pub credentials: BTreeMap<String, String>,
    pub heartbeat_ms: u32,
    pub ready_file: Option<PathBuf>,
    pub schedule: Schedule,
    /// 2: the sequencing and core stages each on a thread of its own; 1: both on one thread
    /// (`--stage-threads`).
    pub stage_threads: u8,
    pub limits: ServerLimits,
}

/// To the sequencing thread: what changes sessions and brokers, and what must reach the core
/// thread in order with the commands sequenced before it (queries).
enum SessionControl {
    /// Answered with the session's free-id hint, or why it cannot open (session cap).
    OpenSession {
        session: SessionId,
        kind: SessionKind,
        out: SessionOut,
        max_per_broker: usize,
        reply: oneshot::Sender<Result<u64, String>>,
    },
    CloseSession {
        session: SessionId,
    },
    DeclareBrokers {
        names: Vec<String>,
        reply: oneshot::Sender<Result<Vec<(String, BrokerId)>, String>>,
    },
    BrokerId {
        name: String,
        reply: oneshot::Sender<BrokerId>,
    },
    /// Passed on to the core thread behind what was sequenced before it.
    Forward(Control),
}

/// To the core thread (routing, events, projection, reports).
enum Control {
    QueryOrders {
        session: SessionId,
        ids: Vec<OrderId>,
        /// The session's task finishes the answer (reads the archive), off the core thread.
        reply: oneshot::Sender<OrdersAnswer>,
    },
    QueryTotals {
        reply: oneshot::Sender<Vec<(SecurityId, Qty, Qty)>>,
    },
    ExecutorJoined {
        name: String,
        addr: String,
        tx: mpsc::Sender<ToExecutor>,
        conn: Connection,
        reply: oneshot::Sender<NodeId>,
    },
    Executor {
        node: NodeId,
        msg: FromExecutor,
    },
    ExecutorClosed {
        node: NodeId,
    },
    /// What the sequencing thread committed, in journal order.
    Sequenced(Vec<crate::core::Sequenced>),
    /// Where a session's reports go (before anything of the session is sequenced).
    SessionOut {
        session: SessionId,
        out: SessionOut,
    },
    SessionGone {
        session: SessionId,
    },
}

impl Control {
    /// Commands it carries: sequenced ones (and refusals), or an executor's event groups.
    fn commands(&self) -> usize {
        match self {
            Control::Sequenced(items) => items.len(),
            Control::Executor {
                msg: FromExecutor::Events(groups),
                ..
            } => groups.len(),
            _ => 0,
        }
    }
}

/// The way to one client: its bounded queue, with the bytes queued and the commands in flight
/// counted, so the core thread never waits on it and a client that does not read is cut off.
#[derive(Clone)]
struct SessionOut {
    conn: Connection,
    tx: mpsc::Sender<ManagerToClient>,
    inflight: Arc<AtomicU64>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
}

/// About how many bytes a message takes once encoded (for queue budgets, not framing).
fn approx_bytes(m: &ManagerToClient) -> usize {
    match m {
        ManagerToClient::Reports(r) => 16 + r.len() * 48,
        ManagerToClient::Orders { orders, .. } => 16 + orders.len() * 56,
        ManagerToClient::Totals { totals, .. } => 16 + totals.len() * 24,
        ManagerToClient::Brokers(b) => 16 + b.len() * 40,
        ManagerToClient::Error(e) => 16 + e.len(),
    }
}

impl SessionOut {
    fn new(conn: Connection, tx: mpsc::Sender<ManagerToClient>) -> Self {
        SessionOut {
            conn,
            tx,
            inflight: Arc::new(AtomicU64::new(0)),
            queued: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }
    }

    /// From the core thread: never waits. False when the client is over its budget (it does
    /// not read): the caller disconnects it.
    fn offer(&self, m: ManagerToClient) -> bool {
        let n = approx_bytes(&m);
        if self.queued.load(Ordering::Relaxed) + n > SESSION_BYTES {
            return false;
        }
        self.queued.fetch_add(n, Ordering::Relaxed);
        if self.tx.try_send(m).is_err() {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// From the session's own task: waits while much is queued, so a client that asks and
    /// does not read stops being read itself. False when the session is gone.
    async fn send(&self, m: ManagerToClient) -> bool {
        while self.queued.load(Ordering::Relaxed) > ANSWER_BYTES {
            if self.tx.is_closed() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let n = approx_bytes(&m);
        self.queued.fetch_add(n, Ordering::Relaxed);
        self.tx.send(m).await.is_ok()
    }
}

/// Sends an answer of any size in frames of [`ORDERS_PER_FRAME`] items, `last` on the final
/// one (an empty answer is one empty, final frame). False when the session is gone.
async fn send_chunked<T: Clone>(
    out: &SessionOut,
    items: &[T],
    frame: impl Fn(Vec<T>, bool) -> ManagerToClient,
) -> bool {
    if items.is_empty() {
        return out.send(frame(Vec::new(), true)).await;
    }
    let mut chunks = items.chunks(ORDERS_PER_FRAME).peekable();
    while let Some(c) = chunks.next() {
        let last = chunks.peek().is_none();
        if !out.send(frame(c.to_vec(), last)).await {
            return false;
        }
    }
    true
}

struct Submit {
    session: SessionId,
    cmds: Vec<ClientCommand>,
}

/// Shared with connection tasks.
struct Shared {
    config: ServerConfig,
    securities: Vec<SecurityInfo>,
    rules: String,
    local: bool,
    /// To the core thread (executors).
    control: mpsc::Sender<Control>,
    /// To the sequencing thread (sessions, brokers, queries).
    sessions: mpsc::Sender<SessionControl>,
    submits: mpsc::Sender<Submit>,
    snapshot: watch::Receiver<Option<GridSnapshot>>,
    feed: broadcast::Sender<MonitorMsg>,
    next_session: AtomicU32,
    connections: AtomicU32,
    phase: Arc<AtomicU32>,
    /// Commands sequenced so far (published by the core thread).
    sequenced: Arc<AtomicU64>,
    /// Set when the core stopped (persistence failure): every session says why and ends.
    stopping: Arc<StopSignal>,
    /// The feed task (its control queue and counters; `None`: the manager runs without a feed).
    feed_handle: Option<crate::feed::FeedHandle>,
    /// Open monitor sessions (the core thread publishes session counts as metrics).
    monitors: Arc<AtomicU64>,
    /// Session writers give their report vectors back here once encoded; the stages fill
    /// them again.
    report_pool: VecPool<proto::Report>,
    /// Executors' writers give their order batches' vectors back here once sent.
    routed_pool: VecPool<proto::Routed>,
}

/// Why the manager is stopping, once it is.
#[derive(Default)]
struct StopSignal {
    stopped: AtomicBool,
    reason: std::sync::Mutex<String>,
    notify: Notify,
}

impl StopSignal {
    fn stop(&self, reason: String) {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = reason;
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }
    fn reason(&self) -> String {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.stopped.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

fn phase_code(p: Phase) -> u32 {
    Phase::ALL.iter().position(|x| *x == p).unwrap_or(1) as u32
}

fn phase_of(code: u32) -> Phase {
    Phase::ALL
        .get(code as usize)
        .copied()
        .unwrap_or(Phase::Continuous)
}

/// Runs the manager until `shutdown` completes, or until the core stops on a persistence
/// failure (then every client is told why and the error is returned).
pub async fn serve(
    endpoint: Endpoint,
    mut core: Core,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let local_addr = endpoint.local_addr()?;
    tracing::info!(%local_addr, local = core.is_local(), schedule = %config.schedule.describe(), "manager listening");
    for name in config.credentials.keys() {
        core.broker_id(name);
    }
    core.set_schedule_name(config.schedule.describe());
    let metrics = Arc::new(metrics::Metrics::new());
    if let Some(addr) = config.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding --metrics-addr {addr}"))?;
        tracing::info!(addr = %listener.local_addr()?, "metrics at /metrics");
        core.set_metrics(metrics.clone());
        let m = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(listener, m, std::future::pending()).await {
                tracing::warn!("metrics endpoint stopped: {e}");
            }
        });
    }
    let monitors = Arc::new(AtomicU64::new(0));
    let securities = core
        .listing()
        .iter()
        .map(|(id, code, reference_price)| SecurityInfo {
            id,
            code: code.to_string(),
            reference_price,
        })
        .collect();
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let (handover_tx, handover_rx) = mpsc::channel(HANDOVER_QUEUE);
    let (sessions_tx, sessions_rx) = mpsc::channel(CONTROL_QUEUE);
    // Unbounded on purpose: the core thread must never wait on the sequencing thread (which
    // may be waiting on it for hand-over room), and feedback is one message per CLOSED and per
    // checkpoint.
    let (feedback_tx, feedback_rx) = mpsc::unbounded_channel();
    let (submit_tx, submit_rx) = mpsc::channel(SUBMIT_QUEUE);
    let (snap_tx, snap_rx) = watch::channel(None);
    let (feed_tx, _) = broadcast::channel(1024);
    let phase = Arc::new(AtomicU32::new(phase_code(core.phase())));
    let sequenced = Arc::new(AtomicU64::new(core.next_seq() - 1));
    let stopping = Arc::new(StopSignal::default());
    let (feed_sender, feed_handle) = match &config.feed {
        Some(opts) => {
            let (sender, handle) = crate::feed::spawn(
                opts.clone(),
                *core.rules(),
                core.listing().clone(),
                core.next_seq() > 1,
                metrics.clone(),
                core.feed_pool(),
            )
            .context("starting the feed task")?;
            (Some(sender), Some(handle))
        }
        None => (None, None),
    };
    let shared = Arc::new(Shared {
        rules: core.rules().name().to_string(),
        local: core.is_local(),
        securities,
        control: control_tx,
        sessions: sessions_tx,
        submits: submit_tx,
        snapshot: snap_rx,
        feed: feed_tx.clone(),
        next_session: AtomicU32::new(1),
        connections: AtomicU32::new(0),
        phase: phase.clone(),
        sequenced: sequenced.clone(),
        stopping: stopping.clone(),
        feed_handle,
        monitors: monitors.clone(),
        report_pool: core.report_pool(),
        routed_pool: core.routed_pool(),
        config,
    });
    let schedule = shared.config.schedule.clone();
    // The sequencing stage (its journal commits block only its thread when it has one) and
    // the rest of the core behind it, on two threads or sharing one.
    let front = core
        .split()
        .context("the sequencing stage was taken out already")?;
    let room = Arc::new(AtomicBool::new(true));
    let front_stopping = stopping.clone();
    let front_room = room.clone();
    let front_pool = shared.report_pool.clone();
    let sequencing = move || {
        run_sequencer(
            front,
            schedule,
            (sessions_rx, submit_rx, feedback_rx),
            handover_tx,
            front_room,
            (phase, sequenced, front_pool),
            front_stopping,
        )
    };
    let (done_tx, done_rx) = oneshot::channel();
    let core_stopping = stopping.clone();
    let core_stage = move || {
        run_core(
            core,
            (control_rx, handover_rx),
            (snap_tx, feedback_tx, room),
            (feed_tx, feed_sender),
            (metrics, monitors, core_stopping),
        )
    };
    // The sequencing thread's result, when it has a thread of its own.
    let front_done_rx = if shared.config.stage_threads >= 2 {
        let (front_done_tx, front_done_rx) = oneshot::channel();
        spawn_stage("sequencer", front_done_tx, sequencing)?;
        spawn_stage("core", done_tx, core_stage)?;
        Some(front_done_rx)
    } else {
        // Either stage ending ends the other: the channels between them close.
        spawn_stage("core", done_tx, move || async move {
            let (front, core) = tokio::join!(sequencing(), core_stage());
            front.and(core)
        })?;
        None
    };
    if let Some(path) = &shared.config.ready_file {
        // An unspecified bind address is not dialable: name loopback instead.
        let mut dial = local_addr;
        if dial.ip().is_unspecified() {
            dial.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        crate::setup::write_atomic(path, &format!("{dial}\n"))?;
    }
    let accept = async {
        while let Some(incoming) = endpoint.accept().await {
            let shared = shared.clone();
            let n = shared.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let remote = incoming.remote_address();
                if n >= shared.config.limits.max_connections {
                    // Over the cap: answer the handshake only to say so.
                    if let Ok(Ok(conn)) =
                        tokio::time::timeout(shared.config.limits.handshake_timeout, incoming).await
                    {
                        refuse_busy(&conn, &shared).await;
                    }
                } else {
                    match tokio::time::timeout(shared.config.limits.handshake_timeout, incoming)
                        .await
                    {
                        Ok(Ok(conn)) => {
                            if let Err(e) = handle_connection(conn, &shared).await {
                                tracing::debug!(%remote, "connection ended: {e:#}");
                            }
                        }
                        Ok(Err(e)) => tracing::debug!(%remote, "handshake failed: {e}"),
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                }
                shared.connections.fetch_sub(1, Ordering::SeqCst);
            });
        }
    };
    let stage_failed = async {
        let Some(mut front_rx) = front_done_rx else {
            return done_rx.await.context("core thread ended without a result");
        };
        let mut core_rx = done_rx;
        let (first, other) = tokio::select! {
            r = &mut front_rx => (r.context("sequencing thread ended without a result")?, core_rx),
            r = &mut core_rx => (r.context("core thread ended without a result")?, front_rx),
        };
        // The stages stop together (each stops when the other's channels close), and the one
        // that failed is not always the first to finish: wait a little for the other, so its
        // error is the one reported.
        let second = tokio::time::timeout(STAGE_STOP, other).await;
        Ok(first.and(second.ok().and_then(Result::ok).unwrap_or(Ok(()))))
    };
    let result = tokio::select! {
        _ = accept => Ok(()),
        _ = shutdown => Ok(()),
        r = stage_failed => {
            let r = r?;
            match r {
                Ok(()) => Ok(()),
                Err(e) => {
                    // The core only stops on a persistence failure: nothing more can be
                    // acknowledged. Tell every client why before going.
                    let why = format!("manager stopping: {e:#}");
                    tracing::error!("{why}");
                    stopping.stop(why.clone());
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    endpoint.close(3u32.into(), why.as_bytes());
                    Err(e.context("core stopped"))
                }
            }
        }
    };
    if let Some(feed) = &shared.feed_handle {
        tracing::info!("{}", feed.counters.summary());
    }
    endpoint.close(0u32.into(), b"manager shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    tracing::info!("manager stopped");
    result
}

async fn refuse_busy(conn: &Connection, shared: &Shared) {
    let busy = format!(
        "too many connections (limit {})",
        shared.config.limits.max_connections
    );
    if let Ok(Ok((mut w, _r, _hello))) =
        tokio::time::timeout(shared.config.limits.handshake_timeout, accept_hello(conn)).await
    {
        let _ = w
            .send(&HelloReply::Busy {
                reason: busy.clone(),
            })
            .await;
        w.close(Duration::from_millis(500)).await;
    }
    conn.close(4u32.into(), busy.as_bytes());
}

type Sessions = FxHashMap<SessionId, SessionOut>;
type Executors = BTreeMap<NodeId, (mpsc::Sender<ToExecutor>, Connection)>;

fn wall_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Runs a stage on an OS thread of its own with a single-threaded runtime; its result goes to
/// `done`.
fn spawn_stage<F, Fut>(
    name: &str,
    done: oneshot::Sender<anyhow::Result<()>>,
    stage: F,
) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let result = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(stage()),
                Err(e) => Err(e.into()),
            };
            let _ = done.send(result);
        })
        .with_context(|| format!("starting the {name} thread"))?;
    Ok(())
}

/// Offers reports to their sessions; a session that does not read is cut off (its orders
/// stay). Returns the sessions cut off.
fn deliver(
    sessions: &mut Sessions,
    by_session: impl IntoIterator<Item = (SessionId, Vec<proto::Report>)>,
) -> Vec<SessionId> {
    let mut cut = Vec::new();
    for (session, reports) in by_session {
        let Some(out) = sessions.get(&session) else {
            continue;
        };
        // Each vector is one frame already (the core's frames hold at most
        // REPORTS_PER_FRAME); a session cut off below is gone for its later frames.
        if !out.offer(ManagerToClient::Reports(reports)) {
            // A client that does not read: cut it off rather than hold its backlog.
            tracing::warn!(
                session,
                "client not reading its reports; disconnecting it (its orders stay)"
            );
            if let Some(out) = sessions.remove(&session) {
                out.conn.close(5u32.into(), b"not reading its reports");
            }
            cut.push(session);
        }
    }
    cut
}

/// The sequencing thread: checks, sequences, journals and acknowledges, then hands what it
/// committed to the core thread. It reads order entry only while the core has room and no
/// CLOSED is completing.
async fn run_sequencer(
    mut front: Sequencer,
    schedule: Schedule,
    (mut control, mut submits, mut feedback): (
        mpsc::Receiver<SessionControl>,
        mpsc::Receiver<Submit>,
        mpsc::UnboundedReceiver<Feedback>,
    ),
    core: mpsc::Sender<Control>,
    room: Arc<AtomicBool>,
    (phase, sequenced, report_pool): (Arc<AtomicU32>, Arc<AtomicU64>, VecPool<proto::Report>),
    stopping: Arc<StopSignal>,
) -> anyhow::Result<()> {
    let mut sessions: Sessions = FxHashMap::default();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    // The last schedule boundary sequenced: phases in the journal say where the day is.
    let mut issued: Option<matching::Timestamp> = None;
    if schedule.kind == crate::schedule::ScheduleKind::Hose && front.next_seq() > 1 {
        issued = schedule
            .boundaries()
            .map(|(t, _)| t)
            .filter(|t| *t <= front.last_time())
            .last();
    }
    let gone = || anyhow::anyhow!("the core thread stopped");
    let result: anyhow::Result<()> = async {
        loop {
            let accepting = front.accepting() && room.load(Ordering::Acquire);
            tokio::select! {
                biased;
                fb = feedback.recv() => match fb {
                    Some(fb) => front.feedback(fb, Instant::now())?,
                    None => return Err(gone()),
                },
                msg = control.recv() => match msg {
                    Some(c) => handle_session_control(&mut front, c, &mut sessions, &core).await?,
                    None => return Ok(()),
                },
                msg = submits.recv(), if accepting => match msg {
                    Some(s) => submit(&mut front, s, &schedule, &mut issued)?,
                    None => return Ok(()),
                },
                _ = tick.tick() => {
                    issue_due_phases(&mut front, &schedule, &mut issued, wall_ns(), Instant::now())?;
                    front.idle()?;
                }
            }
            while let Ok(fb) = feedback.try_recv() {
                front.feedback(fb, Instant::now())?;
            }
            for _ in 0..4096 {
                match control.try_recv() {
                    Ok(c) => handle_session_control(&mut front, c, &mut sessions, &core).await?,
                    Err(_) => break,
                }
            }
            // Bounded, so acknowledgements are not delayed behind a huge backlog.
            let mut budget = GROUP_COMMIT_BUDGET;
            while budget > 0 && front.accepting() && room.load(Ordering::Acquire) {
                match submits.try_recv() {
                    Ok(s) => {
                        budget = budget.saturating_sub(s.cmds.len());
                        submit(&mut front, s, &schedule, &mut issued)?;
                    }
                    Err(_) => break,
                }
            }
            let released = front.commit()?;
            phase.store(phase_code(front.phase()), Ordering::Relaxed);
            sequenced.store(front.next_seq() - 1, Ordering::Relaxed);
            // Acknowledgements are queued to their sessions before the core thread gets the
            // commands, so no report of a command's outcome can overtake its acknowledgement.
            // Whatever a session asks after an acknowledgement still reaches the core thread
            // behind the command: it is read here, after this send.
            let mut by_session = Frames::default();
            front.queue_acks(released.reports, &report_pool, &mut by_session);
            let cut = deliver(&mut sessions, by_session);
            if !released.items.is_empty() {
                core.send(Control::Sequenced(released.items))
                    .await
                    .map_err(|_| gone())?;
            }
            for session in cut {
                close_session(&mut front, session, &core).await?;
            }
        }
    }
    .await;
    if let Err(e) = &result {
        // Say why while the sessions are still open: their writers end when this returns.
        stopping.stop(format!("manager stopping: {e:#}"));
    }
    result
}

/// The core thread: routes what was sequenced, takes the executors' events, keeps the
/// projection, reports fills, checkpoints.
async fn run_core(
    mut core: Core,
    (mut control, mut handover): (mpsc::Receiver<Control>, mpsc::Receiver<Control>),
    (snapshot, feedback, room): (
        watch::Sender<Option<GridSnapshot>>,
        mpsc::UnboundedSender<Feedback>,
        Arc<AtomicBool>,
    ),
    (feed, market_data): (
        broadcast::Sender<MonitorMsg>,
        Option<crate::feed::FeedSender>,
    ),
    (metrics, monitors, stopping): (Arc<metrics::Metrics>, Arc<AtomicU64>, Arc<StopSignal>),
) -> anyhow::Result<()> {
    let mut sessions: Sessions = FxHashMap::default();
    let mut executors: Executors = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut last_snapshot = Instant::now();
    let result: anyhow::Result<()> = async {
    loop {
        // Sequenced commands and executors' event groups taken since the last flush: a flush
        // routes, reports and feeds about a group commit's worth of each, not a backlog.
        let (mut taken, mut events) = (0, 0);
        tokio::select! {
            // Executors first: failover is never stuck behind order entry.
            biased;
            msg = control.recv() => match msg {
                Some(c) => {
                    events = c.commands();
                    handle_control(&mut core, c, &mut sessions, &mut executors)?
                }
                None => return Ok(()),
            },
            msg = handover.recv() => match msg {
                Some(c) => {
                    taken = c.commands();
                    handle_control(&mut core, c, &mut sessions, &mut executors)?
                }
                None => return Ok(()),
            },
            _ = tick.tick() => {
                let now = Instant::now();
                core.tick(now);
                core.maintain(now)?;
                if now.duration_since(last_snapshot) >= MONITOR_INTERVAL {
                    last_snapshot = now;
                    metrics.set_sessions(metrics::SessionKind::Broker, sessions.len() as u64);
                    metrics.set_sessions(metrics::SessionKind::Executor, executors.len() as u64);
                    metrics.set_sessions(metrics::SessionKind::Monitor, monitors.load(Ordering::Relaxed));
                    core.refresh_local_depth();
                    let _ = snapshot.send(Some(core.snapshot(now)));
                }
            }
        }
        // Drain what is already queued, bounded, so reports and routing go out in time.
        drain_queued(&mut control, events, &mut core, &mut sessions, &mut executors)?;
        drain_queued(&mut handover, taken, &mut core, &mut sessions, &mut executors)?;
        let mut out = core.flush(Instant::now())?;
        room.store(core.routing_room(), Ordering::Release);
        for fb in out.feedback.drain(..) {
            // The sequencing thread gone means the manager is stopping.
            let _ = feedback.send(fb);
        }
        // Before the reports: a client that saw its command final finds it in the feed queue.
        let items = std::mem::take(&mut out.feed);
        if let Some(md) = &market_data {
            md.offer(crate::feed::FeedBatch {
                items,
                through: out.feed_through,
            });
        }
        // A session cut off here ends its connection; its task then closes it in sequencing.
        deliver(&mut sessions, out.reports);
        for (node, msgs) in out.executors {
            let mut stuck = false;
            if let Some((tx, _)) = executors.get(&node) {
                for m in msgs {
                    if tx.try_send(m).is_err() {
                        stuck = true;
                        break;
                    }
                }
            }
            if stuck {
                tracing::warn!(node, "executor not reading; declaring it failed");
                if let Some((_, conn)) = executors.remove(&node) {
                    conn.close(2u32.into(), b"not reading");
                }
                core.executor_lost(node, Instant::now());
            }
        }
        for node in out.disconnect {
            if let Some((_, conn)) = executors.remove(&node) {
                conn.close(2u32.into(), b"declared down");
            }
        }
        if !out.trades.is_empty() {
            let _ = feed.send(MonitorMsg::Trades(out.trades));
        }
        if !out.log.is_empty() {
            let _ = feed.send(MonitorMsg::Log(out.log));
        }
    }
    }
    .await;
    // An orderly stop leaves the checkpoint being written durable (the writer thread's).
    let result = result.and_then(|()| core.wait_checkpoint(Instant::now()));
    if let Err(e) = &result {
        stopping.stop(format!("manager stopping: {e:#}"));
    }
    result
}

/// Sequences the schedule's phase changes due at wall-clock `wall` (ns) that come after
/// `issued`, each stamped with its exact boundary time.
fn issue_due_phases(
    front: &mut Sequencer,
    schedule: &Schedule,
    issued: &mut Option<matching::Timestamp>,
    wall: i64,
    now: Instant,
) -> anyhow::Result<()> {
    for (t, p) in schedule.due(wall, *issued) {
        *issued = Some(t);
        let cmd = ClientCommand {
            client_ref: 0,
            command: Command::Phase(p),
        };
        front.submit(EXCHANGE_SESSION, &[cmd], now, t)?;
        tracing::info!(phase = p.as_str(), "schedule: phase change");
    }
    Ok(())
}

fn submit(
    front: &mut Sequencer,
    s: Submit,
    schedule: &Schedule,
    issued: &mut Option<matching::Timestamp>,
) -> anyhow::Result<()> {
    if let Err(e) = front.check_batch(s.session, &s.cmds) {
        // The session checked the frame already; this one's session is gone (or a bug).
        tracing::warn!(session = s.session, "dropping a submit: {e}");
        return Ok(());
    }
    // A phase boundary that passed since the last tick is sequenced first: no order stamped
    // after a boundary may be sequenced before its phase change (exchange time never goes
    // backwards along the sequence, and a BREAK refuses what is stamped inside it).
    let wall = wall_ns();
    let now = Instant::now();
    issue_due_phases(front, schedule, issued, wall, now)?;
    front.submit(s.session, &s.cmds, now, schedule.time_at(wall))?;
    Ok(())
}

/// A session ends in sequencing; the core thread stops reporting to it.
async fn close_session(
    front: &mut Sequencer,
    session: SessionId,
    core: &mpsc::Sender<Control>,
) -> anyhow::Result<()> {
    front.close_session(session);
    core.send(Control::SessionGone { session })
        .await
        .map_err(|_| anyhow::anyhow!("the core thread stopped"))
}

async fn handle_session_control(
    front: &mut Sequencer,
    c: SessionControl,
    sessions: &mut Sessions,
    core: &mpsc::Sender<Control>,
) -> anyhow::Result<()> {
    let gone = || anyhow::anyhow!("the core thread stopped");
    match c {
        SessionControl::OpenSession {
            session,
            kind,
            out,
            max_per_broker,
            reply,
        } => {
            if let SessionKind::Broker(b) = kind {
                if front.sessions_of(b) >= max_per_broker {
                    let _ = reply.send(Err(format!(
                        "this broker already has {max_per_broker} sessions open"
                    )));
                    return Ok(());
                }
            }
            core.send(Control::SessionOut {
                session,
                out: out.clone(),
            })
            .await
            .map_err(|_| gone())?;
            sessions.insert(session, out);
            front.open_session(session, kind);
            let _ = reply.send(Ok(front.max_order_id(session)));
        }
        SessionControl::CloseSession { session } => {
            sessions.remove(&session);
            close_session(front, session, core).await?;
        }
        SessionControl::DeclareBrokers { names, reply } => {
            let _ = reply.send(front.declare_brokers(&names));
        }
        SessionControl::BrokerId { name, reply } => {
            let _ = reply.send(front.broker_id(&name));
        }
        SessionControl::Forward(c) => core.send(c).await.map_err(|_| gone())?,
    }
    Ok(())
}

/// Handles what is already queued on `rx` (4096 messages at most) until `taken` commands
/// reach a group commit's worth; a message without commands counts as one.
fn drain_queued(
    rx: &mut mpsc::Receiver<Control>,
    mut taken: usize,
    core: &mut Core,
    sessions: &mut Sessions,
    executors: &mut Executors,
) -> anyhow::Result<()> {
    for _ in 0..4096 {
        if taken >= GROUP_COMMIT_BUDGET {
            break;
        }
        match rx.try_recv() {
            Ok(c) => {
                taken += c.commands().max(1);
                handle_control(core, c, sessions, executors)?
            }
            Err(_) => break,
        }
    }
    Ok(())
}

fn handle_control(
    core: &mut Core,
    c: Control,
    sessions: &mut Sessions,
    executors: &mut Executors,
) -> anyhow::Result<()> {
    let now = Instant::now();
    match c {
        Control::Sequenced(items) => core.apply_sequenced(items),
        Control::SessionOut { session, out } => {
            sessions.insert(session, out);
        }
        Control::SessionGone { session } => {
            sessions.remove(&session);
        }
        Control::QueryOrders {
            session,
            ids,
            reply,
        } => {
            let _ = reply.send(core.query_orders_begin(session, &ids));
        }
        Control::QueryTotals { reply } => {
            let _ = reply.send(core.totals());
        }
        Control::ExecutorJoined {
            name,
            addr,
            tx,
            conn,
            reply,
        } => {
            let node = core.executor_joined(&name, &addr, now);
            executors.insert(node, (tx, conn));
            let _ = reply.send(node);
        }
        Control::Executor { node, msg } => {
            if executors.contains_key(&node) {
                match msg {
                    FromExecutor::Events(groups) => core.executor_events(node, groups, now)?,
                    FromExecutor::Heartbeat(stats) => core.executor_heartbeat(node, stats, now),
                    FromExecutor::Image(part) => core.executor_image(node, part, now)?,
                }
            }
        }
        Control::ExecutorClosed { node } => {
            executors.remove(&node);
            core.executor_lost(node, now);
        }
    }
    Ok(())
}

/// Constant-time comparison, so a secret cannot be guessed byte by byte from timings.
fn secret_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

enum Role {
    Broker(String),
    Executor(String),
    Monitor,
    Gateway,
    Feed,
}

fn authenticate(shared: &Shared, version: u16, credentials: &Credentials) -> Result<Role, String> {
    if version != PROTOCOL_VERSION {
        return Err(format!(
            "protocol version {version} is not supported (manager speaks {PROTOCOL_VERSION})"
        ));
    }
    let token_ok = |t: &str| secret_eq(t, &shared.config.token);
    match credentials {
        Credentials::Broker { name, secret } => match shared.config.credentials.get(name) {
            Some(s) if secret_eq(s, secret) => Ok(Role::Broker(name.clone())),
            // The name is not echoed: it may be anything the peer sent.
            _ => Err("unknown broker or wrong secret".into()),
        },
        Credentials::Executor { name, token } if token_ok(token) => {
            if shared.local {
                Err("the manager runs in --local mode and takes no executors".into())
            } else if let Err(e) = proto::limits::check_name(name) {
                Err(format!("executor name: {e}"))
            } else {
                Ok(Role::Executor(name.clone()))
            }
        }
        Credentials::Monitor { token } if token_ok(token) => Ok(Role::Monitor),
        Credentials::Feed { .. } if shared.feed_handle.is_none() => {
            Err("this manager runs without a market-data feed".into())
        }
        Credentials::Feed {
            broker: Some(name),
            secret,
        } => match shared.config.credentials.get(name) {
            Some(s) if secret_eq(s, secret) => Ok(Role::Feed),
            _ => Err("unknown broker or wrong secret".into()),
        },
        Credentials::Feed {
            broker: None,
            secret,
        } if token_ok(secret) => Ok(Role::Feed),
        Credentials::Gateway { token } if token_ok(token) => Ok(Role::Gateway),
        other => Err(format!("wrong token for a {} session", other.role())),
    }
}

async fn handle_connection(conn: Connection, shared: &Arc<Shared>) -> anyhow::Result<()> {
    let remote = conn.remote_address();
    let (mut writer, mut reader, hello) =
        tokio::time::timeout(shared.config.limits.handshake_timeout, accept_hello(&conn))
            .await
            .context("no hello within the handshake timeout")??;
    let role = match authenticate(shared, hello.version, &hello.credentials) {
        Ok(r) => r,
        Err(reason) => {
            tracing::warn!(%remote, role = hello.credentials.role(), "refused: {reason}");
            writer
                .send(&HelloReply::Refused {
                    reason: reason.clone(),
                })
                .await?;
            writer.close(Duration::from_secs(2)).await;
            conn.close(1u32.into(), reason.as_bytes());
            return Ok(());
        }
    };
    let session = shared.next_session.fetch_add(1, Ordering::Relaxed);
    let limits = SessionLimits {
        max_frame: CLIENT_MAX_FRAME as u32,
        max_batch: MAX_BATCH as u32,
        max_in_flight: shared.config.limits.max_in_flight,
        max_order_id: MAX_BROKER_ORDER_ID,
    };
    let welcome = Welcome {
        session,
        securities: shared.securities.clone(),
        rules: shared.rules.clone(),
        broker: None,
        heartbeat_ms: shared.config.heartbeat_ms,
        max_order_id: 0,
        limits,
        phase: phase_of(shared.phase.load(Ordering::Relaxed)),
        sequenced: shared.sequenced.load(Ordering::Relaxed),
    };
    match role {
        Role::Broker(name) => {
            let (reply, rx) = oneshot::channel();
            shared
                .sessions
                .send(SessionControl::BrokerId {
                    name: name.clone(),
                    reply,
                })
                .await?;
            let broker = rx.await?;
            reader.set_limit(CLIENT_MAX_FRAME);
            reader.set_frame_timeout(shared.config.limits.frame_timeout);
            tracing::info!(%remote, broker = %name, session, "broker connected");
            client_session(
                &conn,
                shared,
                session,
                SessionKind::Broker(broker),
                welcome,
                writer,
                reader,
            )
            .await
        }
        Role::Gateway => {
            reader.set_limit(CLIENT_MAX_FRAME);
            reader.set_frame_timeout(shared.config.limits.frame_timeout);
            tracing::info!(%remote, session, "gateway connected");
            client_session(
                &conn,
                shared,
                session,
                SessionKind::Gateway,
                welcome,
                writer,
                reader,
            )
            .await
        }
        Role::Executor(name) => {
            reader.set_limit(MAX_FRAME);
            let (tx, rx) = mpsc::channel(EXECUTOR_QUEUE);
            let (reply, node_rx) = oneshot::channel();
            shared
                .control
                .send(Control::ExecutorJoined {
                    name: name.clone(),
                    addr: remote.to_string(),
                    tx,
                    conn: conn.clone(),
                    reply,
                })
                .await?;
            let node = node_rx.await?;
            let welcome = Welcome {
                session: node,
                ..welcome
            };
            writer.send(&HelloReply::Welcome(welcome)).await?;
            executor_session(shared, node, writer, reader, rx).await
        }
        Role::Monitor => {
            writer.send(&HelloReply::Welcome(welcome)).await?;
            tracing::info!(%remote, "monitor connected");
            shared.monitors.fetch_add(1, Ordering::Relaxed);
            let r = monitor_session(&conn, shared, writer).await;
            shared.monitors.fetch_sub(1, Ordering::Relaxed);
            r
        }
        Role::Feed => {
            let Some(feed) = shared.feed_handle.clone() else {
                return Ok(());
            };
            reader.set_limit(CLIENT_MAX_FRAME);
            reader.set_frame_timeout(shared.config.limits.frame_timeout);
            writer.send(&HelloReply::Welcome(welcome)).await?;
            tracing::info!(%remote, "feed subscriber connected");
            let timeouts = crate::feed::SessionTimeouts {
                subscribe: shared.config.limits.handshake_timeout,
                slow_consumer: shared.config.limits.slow_consumer_timeout,
            };
            let r = crate::feed::serve_subscriber(remote, writer, reader, feed, timeouts).await;
            // Whichever side ended it, end the connection too, so the subscriber knows.
            conn.close(0u32.into(), b"feed session ended");
            r
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn client_session(
    conn: &Connection,
    shared: &Shared,
    session: SessionId,
    kind: SessionKind,
    mut welcome: Welcome,
    mut writer: FrameWriter,
    mut reader: FrameReader,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel::<ManagerToClient>(SESSION_QUEUE);
    let out = SessionOut::new(conn.clone(), tx);
    let (reply, opened) = oneshot::channel();
    shared
        .sessions
        .send(SessionControl::OpenSession {
            session,
            kind,
            out: out.clone(),
            max_per_broker: shared.config.limits.max_sessions_per_broker,
            reply,
        })
        .await?;
    match opened.await? {
        Ok(max_id) => welcome.max_order_id = max_id,
        Err(reason) => {
            tracing::warn!(remote = %conn.remote_address(), "refused: {reason}");
            writer.send(&HelloReply::Busy { reason }).await?;
            writer.close(Duration::from_secs(1)).await;
            return Ok(());
        }
    }
    welcome.broker = match kind {
        SessionKind::Broker(b) => Some(b),
        _ => None,
    };
    writer.send(&HelloReply::Welcome(welcome)).await?;
    let stopping = shared.stopping.clone();
    let queued = out.queued.clone();
    // Commands count as in flight until their final report is written to the client.
    let written = out.inflight.clone();
    let slow = shared.config.limits.slow_consumer_timeout;
    let report_pool = shared.report_pool.clone();
    let remote = conn.remote_address();
    let write_task = tokio::spawn(async move {
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(m) => {
                        let n = approx_bytes(&m);
                        let finals = match &m {
                            ManagerToClient::Reports(r) => {
                                r.iter().filter(|r| r.last && !r.passive).count() as u64
                            }
                            _ => 0,
                        };
                        match tokio::time::timeout(slow, writer.send(&m)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => break,
                            Err(_) => {
                                tracing::warn!(%remote, session, "client read nothing for {slow:?}; disconnecting it (its orders stay)");
                                break;
                            }
                        }
                        if let ManagerToClient::Reports(r) = m {
                            report_pool.give(r);
                        }
                        queued.fetch_sub(n.min(queued.load(Ordering::Relaxed)), Ordering::Relaxed);
                        written.fetch_sub(finals.min(written.load(Ordering::Relaxed)), Ordering::Relaxed);
                    }
                    None => {
                        // The core is gone; it said why before dropping its senders.
                        if stopping.stopped.load(Ordering::SeqCst) {
                            let _ = writer.send(&ManagerToClient::Error(stopping.reason())).await;
                        }
                        break;
                    }
                },
                _ = stopping.wait() => {
                    let _ = writer.send(&ManagerToClient::Error(stopping.reason())).await;
                    break;
                }
            }
        }
        writer.close(Duration::from_secs(2)).await;
    });
    // The session ends when the writer gives up on the client.
    let writer_gone = out.tx.clone();
    let inflight = out.inflight.clone();
    let max_in_flight = shared.config.limits.max_in_flight as u64;
    let result = async {
        loop {
            // Order entry waits while too many of this session's commands are not final.
            while inflight.load(Ordering::Relaxed) >= max_in_flight {
                tokio::time::sleep(Duration::from_millis(1)).await;
                if writer_gone.is_closed() {
                    return Ok(());
                }
            }
            let msg = tokio::select! {
                m = reader.recv::<ClientMsg>() => m,
                _ = writer_gone.closed() => return Ok(()),
            };
            let msg = match msg {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(()),
                Err(e @ (transport::WireError::Codec(_) | transport::WireError::Timeout(_))) => {
                    tracing::warn!(remote = %conn.remote_address(), session, "bad frame: {e}");
                    out.offer(ManagerToClient::Error(format!("bad frame: {e}")));
                    return Ok(());
                }
                Err(e) => return Err(anyhow::Error::from(e)),
            };
            match msg {
                ClientMsg::Submit(cmds) => {
                    if cmds.is_empty() {
                        continue;
                    }
                    // Checked here, not by a round trip to the core: the next frame is read
                    // at once, so frames that arrive during a journal commit share the next.
                    if let Err(e) = check_submit(kind, &cmds) {
                        tracing::warn!(session, "refused a submit: {e}");
                        out.offer(ManagerToClient::Error(e));
                        return Ok(());
                    }
                    inflight.fetch_add(cmds.len() as u64, Ordering::Relaxed);
                    if shared.submits.send(Submit { session, cmds }).await.is_err() {
                        return Ok(());
                    }
                }
                ClientMsg::DeclareBrokers(names) => {
                    if kind != SessionKind::Gateway {
                        out.offer(ManagerToClient::Error(
                            "only a gateway may declare brokers".into(),
                        ));
                        return Ok(());
                    }
                    let (reply, rx) = oneshot::channel();
                    shared
                        .sessions
                        .send(SessionControl::DeclareBrokers { names, reply })
                        .await?;
                    match rx.await? {
                        Ok(ids) => {
                            out.send(ManagerToClient::Brokers(ids)).await;
                        }
                        Err(e) => {
                            out.offer(ManagerToClient::Error(e));
                            return Ok(());
                        }
                    }
                }
                ClientMsg::QueryOrders { query, ids } => {
                    if ids.len() > MAX_QUERY_IDS {
                        out.offer(ManagerToClient::Error(format!(
                            "at most {MAX_QUERY_IDS} ids per query"
                        )));
                        return Ok(());
                    }
                    let (reply, rx) = oneshot::channel();
                    shared
                        .sessions
                        .send(SessionControl::Forward(Control::QueryOrders {
                            session,
                            ids,
                            reply,
                        }))
                        .await?;
                    let answer = rx.await?;
                    // A broker's whole history may be read here: not on the core thread. A
                    // failed archive read fails the query, not the core.
                    let finished = tokio::task::spawn_blocking(move || answer.finish()).await?;
                    let orders = match finished {
                        Ok(orders) => orders,
                        Err(e) => {
                            tracing::warn!(session, "order query failed: {e:#}");
                            out.offer(ManagerToClient::Error(format!(
                                "the order query failed: {e:#}"
                            )));
                            continue;
                        }
                    };
                    let answer = |orders, last| ManagerToClient::Orders {
                        query,
                        orders,
                        last,
                    };
                    if !send_chunked(&out, &orders, answer).await {
                        return Ok(());
                    }
                }
                ClientMsg::QueryTotals { query } => {
                    let (reply, rx) = oneshot::channel();
                    shared
                        .sessions
                        .send(SessionControl::Forward(Control::QueryTotals { reply }))
                        .await?;
                    let totals = rx.await?;
                    let answer = |totals, last| ManagerToClient::Totals {
                        query,
                        totals,
                        last,
                    };
                    if !send_chunked(&out, &totals, answer).await {
                        return Ok(());
                    }
                }
            }
        }
    }
    .await;
    let _ = shared
        .sessions
        .send(SessionControl::CloseSession { session })
        .await;
    drop(out);
    drop(writer_gone);
    let _ = tokio::time::timeout(Duration::from_secs(5), write_task).await;
    result
}

async fn executor_session(
    shared: &Shared,
    node: NodeId,
    mut writer: FrameWriter,
    mut reader: FrameReader,
    mut rx: mpsc::Receiver<ToExecutor>,
) -> anyhow::Result<()> {
    let stopping = shared.stopping.clone();
    let routed_pool = shared.routed_pool.clone();
    let write_task = tokio::spawn(async move {
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(m) => {
                        if writer.send(&m).await.is_err() {
                            break;
                        }
                        if let ToExecutor::Orders(batch) = m {
                            routed_pool.give(batch);
                        }
                    }
                    None => break,
                },
                _ = stopping.wait() => break,
            }
        }
    });
    let result: anyhow::Result<()> = async {
        loop {
            match reader.recv::<FromExecutor>().await {
                Ok(Some(msg)) => shared.control.send(Control::Executor { node, msg }).await?,
                Ok(None) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
    .await;
    let _ = shared.control.send(Control::ExecutorClosed { node }).await;
    write_task.abort();
    result
}

async fn monitor_session(
    conn: &Connection,
    shared: &Shared,
    mut writer: FrameWriter,
) -> anyhow::Result<()> {
    let mut snapshot = shared.snapshot.clone();
    let mut feed = shared.feed.subscribe();
    let mut interval = tokio::time::interval(MONITOR_INTERVAL);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                let snap = snapshot.borrow_and_update().clone();
                if let Some(s) = snap {
                    writer.send(&MonitorMsg::Snapshot(s)).await?;
                }
            }
            msg = feed.recv() => match msg {
                Ok(m) => writer.send(&m).await?,
                Err(broadcast::error::RecvError::Lagged(n)) => tracing::debug!(n, "monitor lagging; samples dropped"),
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            _ = conn.closed() => return Ok(()),
            _ = shared.stopping.wait() => return Ok(()),
        }
    }
}

/// Bound address helper for tests and scripts.
pub fn bind_addr(bind: &str, port: u16) -> anyhow::Result<SocketAddr> {
    format!("{bind}:{port}")
        .parse()
        .with_context(|| format!("invalid --bind {bind}"))
}
