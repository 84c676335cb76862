//! The manager's I/O shell: QUIC accept loop, one task per connection, and the core task that
//! owns [`Core`] and is the only place state changes.
//!
//! Back-pressure: submissions travel on a bounded channel that the core stops reading while too
//! many commands are held (no executor yet); executor messages and control requests use an
//! unbounded channel so failover is never stuck behind order entry. Monitors get a `watch`
//! snapshot and a lossy broadcast of trades and log lines: a stalled monitor loses samples,
//! matching never waits for it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use matching::{BrokerId, Command, OrderId, Qty, SecurityId};
use proto::quic::{accept_hello, FrameReader, FrameWriter};
use proto::{
    ClientMsg, Credentials, FromExecutor, GridSnapshot, HelloReply, ManagerToClient, MonitorMsg,
    OrderStatus, SecurityInfo, ToExecutor, Welcome, PROTOCOL_VERSION,
};
use quinn::{Connection, Endpoint};
use rustc_hash::FxHashMap;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::core::{Core, NodeId, SessionId};

/// Commands held at the manager (no owner yet) before order entry is paused.
const MAX_HELD: usize = 2_000_000;
/// Submit batches queued towards the core before senders wait.
const SUBMIT_QUEUE: usize = 256;
/// Reports per frame to a client (about 40 bytes each, far below the frame limit).
const REPORTS_PER_FRAME: usize = 16_384;
/// Commands taken into one group commit, at most (plus one batch).
const GROUP_COMMIT_BUDGET: usize = 8192;
const MONITOR_INTERVAL: Duration = Duration::from_millis(250);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ServerConfig {
    pub token: String,
    pub credentials: BTreeMap<String, String>,
    pub heartbeat_ms: u32,
    pub ready_file: Option<PathBuf>,
}

enum Control {
    OpenSession {
        session: SessionId,
        broker: Option<BrokerId>,
        tx: mpsc::UnboundedSender<ManagerToClient>,
    },
    CloseSession {
        session: SessionId,
    },
    DeclareBrokers {
        names: Vec<String>,
        reply: oneshot::Sender<Vec<(String, BrokerId)>>,
    },
    BrokerId {
        name: String,
        reply: oneshot::Sender<BrokerId>,
    },
    QueryOrders {
        broker: Option<BrokerId>,
        ids: Vec<OrderId>,
        reply: oneshot::Sender<Vec<OrderStatus>>,
    },
    QueryTotals {
        reply: oneshot::Sender<Vec<(SecurityId, Qty, Qty)>>,
    },
    ExecutorJoined {
        name: String,
        addr: String,
        tx: mpsc::UnboundedSender<ToExecutor>,
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
}

struct Submit {
    session: SessionId,
    cmds: Vec<Command>,
}

/// Shared with connection tasks.
struct Shared {
    config: ServerConfig,
    securities: Vec<SecurityInfo>,
    rules: String,
    local: bool,
    control: mpsc::UnboundedSender<Control>,
    submits: mpsc::Sender<Submit>,
    snapshot: watch::Receiver<Option<GridSnapshot>>,
    feed: broadcast::Sender<MonitorMsg>,
    next_session: std::sync::atomic::AtomicU32,
    /// The gateway's highest used order id, published by the core task after each batch.
    max_order_id: Arc<std::sync::atomic::AtomicU64>,
}

/// Runs the manager until `shutdown` completes.
pub async fn serve(
    endpoint: Endpoint,
    mut core: Core,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let local_addr = endpoint.local_addr()?;
    if let Some(path) = &config.ready_file {
        // An unspecified bind address is not dialable: name loopback instead.
        let mut dial = local_addr;
        if dial.ip().is_unspecified() {
            dial.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        crate::setup::write_atomic(path, &format!("{dial}\n"))?;
    }
    tracing::info!(%local_addr, local = core.is_local(), "manager listening");
    for name in config.credentials.keys() {
        core.broker_id(name);
    }
    let securities = core
        .gateway()
        .securities()
        .iter()
        .map(|(id, code, reference_price)| SecurityInfo {
            id,
            code: code.to_string(),
            reference_price,
        })
        .collect();
    let max_order_id = Arc::new(std::sync::atomic::AtomicU64::new(
        core.gateway().max_order_id(),
    ));
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (submit_tx, submit_rx) = mpsc::channel(SUBMIT_QUEUE);
    let (snap_tx, snap_rx) = watch::channel(None);
    let (feed_tx, _) = broadcast::channel(1024);
    let shared = Arc::new(Shared {
        rules: core.gateway().rules().name().to_string(),
        local: core.is_local(),
        securities,
        config,
        control: control_tx,
        submits: submit_tx,
        snapshot: snap_rx,
        feed: feed_tx.clone(),
        next_session: std::sync::atomic::AtomicU32::new(1),
        max_order_id: max_order_id.clone(),
    });
    let core_task = tokio::spawn(run_core(
        core,
        control_rx,
        submit_rx,
        snap_tx,
        feed_tx,
        max_order_id,
    ));
    let accept = async {
        while let Some(incoming) = endpoint.accept().await {
            let shared = shared.clone();
            tokio::spawn(async move {
                let remote = incoming.remote_address();
                match incoming.await {
                    Ok(conn) => {
                        if let Err(e) = handle_connection(conn, shared).await {
                            tracing::debug!(%remote, "connection ended: {e:#}");
                        }
                    }
                    Err(e) => tracing::warn!(%remote, "handshake failed: {e}"),
                }
            });
        }
    };
    tokio::select! {
        _ = accept => {}
        _ = shutdown => {}
        r = core_task => {
            // The core only stops on a persistence failure: nothing more can be acknowledged.
            return r.context("core task panicked")?.context("core stopped");
        }
    }
    endpoint.close(0u32.into(), b"manager shutting down");
    endpoint.wait_idle().await;
    tracing::info!("manager stopped");
    Ok(())
}

async fn run_core(
    mut core: Core,
    mut control: mpsc::UnboundedReceiver<Control>,
    mut submits: mpsc::Receiver<Submit>,
    snapshot: watch::Sender<Option<GridSnapshot>>,
    feed: broadcast::Sender<MonitorMsg>,
    max_order_id: Arc<std::sync::atomic::AtomicU64>,
) -> anyhow::Result<()> {
    let mut sessions: FxHashMap<SessionId, mpsc::UnboundedSender<ManagerToClient>> =
        FxHashMap::default();
    let mut executors: BTreeMap<NodeId, (mpsc::UnboundedSender<ToExecutor>, Connection)> =
        BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut last_snapshot = Instant::now();
    loop {
        let accepting = core.held() < MAX_HELD;
        tokio::select! {
            biased;
            msg = control.recv() => match msg {
                Some(c) => handle_control(&mut core, c, &mut sessions, &mut executors)?,
                None => return Ok(()),
            },
            msg = submits.recv(), if accepting => match msg {
                Some(s) => core.submit(s.session, &s.cmds, Instant::now())?,
                None => return Ok(()),
            },
            _ = tick.tick() => {
                let now = Instant::now();
                core.tick(now);
                if now.duration_since(last_snapshot) >= MONITOR_INTERVAL {
                    last_snapshot = now;
                    core.refresh_local_depth();
                    let _ = snapshot.send(Some(core.snapshot(now)));
                }
            }
        }
        // Drain what is already queued so one journal commit covers many commands.
        for _ in 0..4096 {
            match control.try_recv() {
                Ok(c) => handle_control(&mut core, c, &mut sessions, &mut executors)?,
                Err(_) => break,
            }
        }
        // Bounded, so acknowledgements and routing are not delayed behind a huge backlog.
        let mut budget = GROUP_COMMIT_BUDGET;
        while budget > 0 && core.held() < MAX_HELD {
            match submits.try_recv() {
                Ok(s) => {
                    budget = budget.saturating_sub(s.cmds.len());
                    core.submit(s.session, &s.cmds, Instant::now())?;
                }
                Err(_) => break,
            }
        }
        let out = core.flush(Instant::now())?;
        max_order_id.store(
            core.gateway().max_order_id(),
            std::sync::atomic::Ordering::Relaxed,
        );
        for (session, mut reports) in out.reports {
            if let Some(tx) = sessions.get(&session) {
                // Bounded frames: a backlog of events must never exceed the frame limit.
                while reports.len() > REPORTS_PER_FRAME {
                    let rest = reports.split_off(REPORTS_PER_FRAME);
                    let _ = tx.send(ManagerToClient::Reports(reports));
                    reports = rest;
                }
                let _ = tx.send(ManagerToClient::Reports(reports));
            }
        }
        for (node, msgs) in out.executors {
            if let Some((tx, _)) = executors.get(&node) {
                for m in msgs {
                    let _ = tx.send(m);
                }
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

fn handle_control(
    core: &mut Core,
    c: Control,
    sessions: &mut FxHashMap<SessionId, mpsc::UnboundedSender<ManagerToClient>>,
    executors: &mut BTreeMap<NodeId, (mpsc::UnboundedSender<ToExecutor>, Connection)>,
) -> anyhow::Result<()> {
    let now = Instant::now();
    match c {
        Control::OpenSession {
            session,
            broker,
            tx,
        } => {
            sessions.insert(session, tx);
            core.open_session(session, broker);
        }
        Control::CloseSession { session } => {
            sessions.remove(&session);
            core.close_session(session);
        }
        Control::DeclareBrokers { names, reply } => {
            let ids = names
                .into_iter()
                .map(|n| {
                    let id = core.broker_id(&n);
                    (n, id)
                })
                .collect();
            let _ = reply.send(ids);
        }
        Control::BrokerId { name, reply } => {
            let _ = reply.send(core.broker_id(&name));
        }
        Control::QueryOrders { broker, ids, reply } => {
            let _ = reply.send(core.query_orders(broker, &ids));
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
        Control::Executor { node, msg } => match msg {
            FromExecutor::Events(events) => core.executor_events(node, &events, now)?,
            FromExecutor::Heartbeat(stats) => core.executor_heartbeat(node, stats, now),
        },
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
            _ => Err(format!("unknown broker {name:?} or wrong secret")),
        },
        Credentials::Executor { name, token } if token_ok(token) => {
            if shared.local {
                Err("the manager runs in --local mode and takes no executors".into())
            } else if name.is_empty() || name.len() > 64 {
                Err("executor name must be 1 to 64 characters".into())
            } else {
                Ok(Role::Executor(name.clone()))
            }
        }
        Credentials::Monitor { token } if token_ok(token) => Ok(Role::Monitor),
        Credentials::Gateway { token } if token_ok(token) => Ok(Role::Gateway),
        other => Err(format!("wrong token for a {} session", other.role())),
    }
}

async fn handle_connection(conn: Connection, shared: Arc<Shared>) -> anyhow::Result<()> {
    let remote = conn.remote_address();
    let (mut writer, reader, hello) = tokio::time::timeout(HANDSHAKE_TIMEOUT, accept_hello(&conn))
        .await
        .context("no hello within the handshake timeout")??;
    let role = match authenticate(&shared, hello.version, &hello.credentials) {
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
    let session = shared
        .next_session
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut welcome = Welcome {
        session,
        securities: shared.securities.clone(),
        rules: shared.rules.clone(),
        broker: None,
        heartbeat_ms: shared.config.heartbeat_ms,
        max_order_id: shared
            .max_order_id
            .load(std::sync::atomic::Ordering::Relaxed),
    };
    match role {
        Role::Broker(name) => {
            let (reply, rx) = oneshot::channel();
            shared.control.send(Control::BrokerId {
                name: name.clone(),
                reply,
            })?;
            let broker = rx.await?;
            welcome.broker = Some(broker);
            writer.send(&HelloReply::Welcome(welcome)).await?;
            tracing::info!(%remote, broker = %name, session, "broker connected");
            client_session(&conn, &shared, session, Some(broker), writer, reader).await
        }
        Role::Gateway => {
            writer.send(&HelloReply::Welcome(welcome)).await?;
            tracing::info!(%remote, session, "gateway connected");
            client_session(&conn, &shared, session, None, writer, reader).await
        }
        Role::Executor(name) => {
            let (tx, rx) = mpsc::unbounded_channel();
            let (reply, node_rx) = oneshot::channel();
            shared.control.send(Control::ExecutorJoined {
                name: name.clone(),
                addr: remote.to_string(),
                tx,
                conn: conn.clone(),
                reply,
            })?;
            let node = node_rx.await?;
            welcome.session = node;
            writer.send(&HelloReply::Welcome(welcome)).await?;
            executor_session(&shared, node, writer, reader, rx).await
        }
        Role::Monitor => {
            writer.send(&HelloReply::Welcome(welcome)).await?;
            tracing::info!(%remote, "monitor connected");
            monitor_session(&conn, &shared, writer).await
        }
    }
}

async fn client_session(
    conn: &Connection,
    shared: &Shared,
    session: SessionId,
    broker: Option<BrokerId>,
    mut writer: FrameWriter,
    mut reader: FrameReader,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<ManagerToClient>();
    shared.control.send(Control::OpenSession {
        session,
        broker,
        tx: tx.clone(),
    })?;
    let write_task = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if writer.send(&msg).await.is_err() {
                break;
            }
        }
        writer.close(Duration::from_secs(2)).await;
    });
    let result = async {
        loop {
            let msg = match reader.recv::<ClientMsg>().await {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(()),
                Err(proto::WireError::Codec(e)) => {
                    tracing::warn!(remote = %conn.remote_address(), session, "bad frame: {e}");
                    let _ = tx.send(ManagerToClient::Error(format!("bad frame: {e}")));
                    return Ok(());
                }
                Err(e) => return Err(anyhow::Error::from(e)),
            };
            match msg {
                ClientMsg::Submit(cmds) => {
                    if shared.submits.send(Submit { session, cmds }).await.is_err() {
                        return Ok(());
                    }
                }
                ClientMsg::DeclareBrokers(names) => {
                    if broker.is_some() {
                        let _ = tx.send(ManagerToClient::Error(
                            "only a gateway may declare brokers".into(),
                        ));
                        continue;
                    }
                    let (reply, rx) = oneshot::channel();
                    shared
                        .control
                        .send(Control::DeclareBrokers { names, reply })?;
                    let _ = tx.send(ManagerToClient::Brokers(rx.await?));
                }
                ClientMsg::QueryOrders { ids } => {
                    let (reply, rx) = oneshot::channel();
                    shared
                        .control
                        .send(Control::QueryOrders { broker, ids, reply })?;
                    let _ = tx.send(ManagerToClient::Orders(rx.await?));
                }
                ClientMsg::QueryTotals => {
                    let (reply, rx) = oneshot::channel();
                    shared.control.send(Control::QueryTotals { reply })?;
                    let _ = tx.send(ManagerToClient::Totals(rx.await?));
                }
            }
        }
    }
    .await;
    let _ = shared.control.send(Control::CloseSession { session });
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), write_task).await;
    result
}

async fn executor_session(
    shared: &Shared,
    node: NodeId,
    mut writer: FrameWriter,
    mut reader: FrameReader,
    mut rx: mpsc::UnboundedReceiver<ToExecutor>,
) -> anyhow::Result<()> {
    let write_task = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if writer.send(&msg).await.is_err() {
                break;
            }
        }
    });
    let result: anyhow::Result<()> = async {
        loop {
            match reader.recv::<FromExecutor>().await {
                Ok(Some(msg)) => shared.control.send(Control::Executor { node, msg })?,
                Ok(None) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
    .await;
    let _ = shared.control.send(Control::ExecutorClosed { node });
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
        }
    }
}

/// Bound address helper for tests and scripts.
pub fn bind_addr(bind: &str, port: u16) -> anyhow::Result<SocketAddr> {
    format!("{bind}:{port}")
        .parse()
        .with_context(|| format!("invalid --bind {bind}"))
}
