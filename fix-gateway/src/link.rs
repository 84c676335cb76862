//! The production backend: each broker's FIX session is a broker session at the manager, over
//! QUIC (`Credentials::Broker { name: SenderCompID, secret: Password }`). The manager
//! authenticates; a refusal becomes the Logout's text.
//!
//! One task per broker owns the broker's [`OrderEntry`] and its connection to the manager, for
//! the life of the gateway process: reports about resting orders (passive fills, expiry at the
//! close) keep arriving while the client is not connected, and the FIX session stores them for
//! a resend. A lost connection is re-established with the password of the last good Logon
//! (kept in memory only); meanwhile new requests are refused at once. After every
//! (re)connection the task queries the manager for its open orders and reports what the
//! client missed ([`OrderEntry::on_status`]).
//!
//! Flow control: commands in flight stay below the manager's window (`max_in_flight`); beyond
//! it the task stops taking the session's messages, which stops the session reading its socket,
//! which pushes back on the client through TCP. Reports are always read, so the window drains.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use matching::OrderId;
use proto::{ClientCommand, ClientMsg, Credentials, ManagerToClient, OrderState, Welcome};
use tokio::sync::mpsc;
use tokio::time::Instant;
use transport::{FrameWriter, WireError};

use crate::backend::{
    secret_eq, AppLink, AuthRequest, Backend, LogonFuture, Outbound, Refusal, LINK_CAPACITY,
};
use crate::orders::{Action, Listing, OrderEntry};
use crate::session::AppMessage;

/// Most commands in one submit frame.
const MAX_BATCH: usize = 512;
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Orders still pending at the manager after a reconnection are asked about again after this.
const REQUERY: Duration = Duration::from_millis(200);

/// Where the manager is.
#[derive(Clone)]
struct Target {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
}

/// Brokers' sessions at the manager, one per FIX session.
pub struct ManagerBackend {
    target: Target,
    data_dir: PathBuf,
    fsync: bool,
}

impl ManagerBackend {
    /// A backend for the manager at `manager` (host:port), trusting only the certificate in
    /// `ca`; order logs go to `data_dir`. Must run inside a tokio runtime.
    pub fn new(manager: &str, ca: &Path, data_dir: &Path, fsync: bool) -> anyhow::Result<Self> {
        let endpoint = transport::quic::client_endpoint(ca)
            .with_context(|| format!("setting up QUIC with the certificate {}", ca.display()))?;
        let addr = transport::quic::resolve(manager)?;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        Ok(ManagerBackend {
            target: Target { endpoint, addr },
            data_dir: data_dir.to_path_buf(),
            fsync,
        })
    }
}

/// The connection of one broker session.
struct Live {
    conn: quinn::Connection,
    writer: FrameWriter,
    frames: mpsc::Receiver<ManagerToClient>,
    welcome: Welcome,
}

/// Why a connection to the manager failed.
#[derive(Debug)]
enum ConnectError {
    /// The manager refused the credentials: retrying with them cannot help.
    Refused(String),
    /// Anything else (unreachable, busy, timed out): worth retrying.
    Unavailable(String),
}

impl ConnectError {
    fn text(self) -> Refusal {
        match self {
            ConnectError::Refused(t) | ConnectError::Unavailable(t) => t,
        }
    }
}

impl Target {
    async fn connect(&self, broker: &str, password: &str) -> Result<Live, ConnectError> {
        let creds = Credentials::Broker {
            name: broker.to_string(),
            secret: password.to_string(),
        };
        match transport::quic::connect(&self.endpoint, self.addr, creds).await {
            Ok((conn, writer, mut reader, welcome)) => {
                let (tx, frames) = mpsc::channel(64);
                let who = broker.to_string();
                tokio::spawn(async move {
                    loop {
                        match reader.recv::<ManagerToClient>().await {
                            Ok(Some(m)) => {
                                if tx.send(m).await.is_err() {
                                    break;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!(broker = %who, "connection to the manager lost: {e}");
                                break;
                            }
                        }
                    }
                });
                Ok(Live {
                    conn,
                    writer,
                    frames,
                    welcome,
                })
            }
            Err(WireError::Refused(reason)) => Err(ConnectError::Refused(reason)),
            Err(e) => Err(ConnectError::Unavailable(format!(
                "order entry unavailable: {e}"
            ))),
        }
    }
}

impl Backend for ManagerBackend {
    fn logon<'a>(&'a self, broker: &'a str, password: &'a str) -> LogonFuture<'a> {
        Box::pin(async move {
            let live = self
                .target
                .connect(broker, password)
                .await
                .map_err(ConnectError::text)?;
            let path = OrderEntry::path_in(&self.data_dir, broker);
            let entry = OrderEntry::open(&path, self.fsync, Listing::new(&live.welcome.securities))
                .map_err(|e| {
                    tracing::error!(%broker, "order log: {e}");
                    format!("order entry unavailable: order log: {e}")
                })?;
            let (to_backend, from_session) = mpsc::channel::<AppMessage>(LINK_CAPACITY);
            let (to_session, from_backend) = mpsc::channel::<Outbound>(LINK_CAPACITY);
            let (auth, auth_rx) = mpsc::channel::<AuthRequest>(8);
            let mut task = BrokerTask {
                broker: broker.to_string(),
                password: password.to_string(),
                target: Arc::new(self.target.clone()),
                entry,
                live: None,
                to_session,
                queries: HashMap::new(),
                next_query: 1,
                requery: Vec::new(),
                requery_at: None,
                retry_at: None,
                backoff: Duration::from_millis(100),
            };
            task.install(live).await;
            tokio::spawn(task.run(from_session, auth_rx));
            Ok(AppLink {
                to_backend,
                from_backend,
                auth,
            })
        })
    }
}

struct BrokerTask {
    broker: String,
    /// Of the last good Logon: for reconnections. Memory only.
    password: String,
    target: Arc<Target>,
    entry: OrderEntry,
    live: Option<Live>,
    to_session: mpsc::Sender<Outbound>,
    /// Reconciliation queries in flight: query -> (ids asked, ids answered).
    queries: HashMap<u64, (Vec<OrderId>, HashSet<OrderId>)>,
    next_query: u64,
    /// Orders the manager had not processed yet when asked: asked again at `requery_at`.
    requery: Vec<OrderId>,
    requery_at: Option<Instant>,
    retry_at: Option<Instant>,
    backoff: Duration,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn next_frame(live: &mut Option<Live>) -> Option<ManagerToClient> {
    match live {
        Some(l) => l.frames.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl BrokerTask {
    async fn run(
        mut self,
        mut from_session: mpsc::Receiver<AppMessage>,
        mut auth: mpsc::Receiver<AuthRequest>,
    ) {
        loop {
            let window = self.live.as_ref().map_or(usize::MAX, |l| {
                l.welcome.limits.max_in_flight.max(1) as usize
            });
            let can_take = self.entry.in_flight() < window;
            let ok = tokio::select! {
                frame = next_frame(&mut self.live) => match frame {
                    Some(m) => self.on_frame(m).await,
                    None => {
                        self.lost("the manager closed the session");
                        true
                    }
                },
                app = from_session.recv(), if can_take => match app {
                    Some(app) => self.on_app(app, &mut from_session, window).await,
                    None => false,
                },
                req = auth.recv() => match req {
                    Some(req) => {
                        let answer = self.authenticate(&req.password).await;
                        let _ = req.reply.send(answer);
                        true
                    }
                    None => false,
                },
                _ = sleep_until(self.retry_at), if self.live.is_none() => {
                    self.retry_at = None;
                    match self.target.connect(&self.broker, &self.password).await {
                        Ok(live) => {
                            tracing::info!(broker = %self.broker, "reconnected to the manager");
                            self.install(live).await
                        }
                        Err(e) => {
                            tracing::info!(broker = %self.broker, "reconnection failed: {e:?}");
                            if matches!(e, ConnectError::Unavailable(_)) {
                                self.schedule_retry();
                            }
                            true
                        }
                    }
                }
                _ = sleep_until(self.requery_at), if self.live.is_some() => {
                    self.requery_at = None;
                    let ids = std::mem::take(&mut self.requery);
                    self.query(ids).await
                }
            };
            if !ok {
                break;
            }
        }
        if let Some(live) = self.live.take() {
            live.conn.close(0u32.into(), b"gateway session closed");
        }
    }

    /// Uses a new connection: id floor from the welcome, then ask about every open order.
    async fn install(&mut self, live: Live) -> bool {
        self.entry.set_id_floor(live.welcome.max_order_id);
        self.live = Some(live);
        self.backoff = Duration::from_millis(100);
        let ids = self.entry.to_reconcile();
        self.query(ids).await
    }

    fn lost(&mut self, why: &str) {
        if let Some(live) = self.live.take() {
            tracing::warn!(broker = %self.broker, "connection to the manager lost: {why}");
            live.conn.close(0u32.into(), b"lost");
        }
        self.entry.link_lost();
        self.queries.clear();
        self.requery.clear();
        self.schedule_retry();
    }

    /// Another attempt later (not after a refusal: the password no longer works, so the next
    /// Logon's password is tried instead).
    fn schedule_retry(&mut self) {
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    async fn authenticate(&mut self, password: &str) -> Result<(), Refusal> {
        if self.live.is_some() && secret_eq(password, &self.password) {
            return Ok(());
        }
        let live = self
            .target
            .connect(&self.broker, password)
            .await
            .map_err(ConnectError::text)?;
        self.password = password.to_string();
        if self.live.is_some() {
            // A new password that works; keep the connection we have.
            live.conn.close(0u32.into(), b"password check");
            Ok(())
        } else {
            self.retry_at = None;
            if self.install(live).await {
                Ok(())
            } else {
                Err("order entry unavailable".into())
            }
        }
    }

    async fn send_msg(&mut self, msg: &ClientMsg) -> bool {
        let Some(live) = self.live.as_mut() else {
            return true;
        };
        if let Err(e) = live.writer.send(msg).await {
            self.lost(&e.to_string());
        }
        true
    }

    async fn forward(&mut self, outs: Vec<Outbound>) -> bool {
        for o in outs {
            if self.to_session.send(o).await.is_err() {
                return false;
            }
        }
        true
    }

    async fn on_app(
        &mut self,
        first: AppMessage,
        more: &mut mpsc::Receiver<AppMessage>,
        window: usize,
    ) -> bool {
        let batch_max = self.live.as_ref().map_or(MAX_BATCH, |l| {
            (l.welcome.limits.max_batch as usize).clamp(1, MAX_BATCH)
        });
        let mut actions = Vec::new();
        let mut batch: Vec<ClientCommand> = Vec::new();
        let mut next = Some(first);
        while let Some(app) = next.take() {
            let link_up = self.live.is_some();
            if let Err(e) = self.entry.on_message(now_ms(), &app, link_up, &mut actions) {
                tracing::error!(broker = %self.broker, "order log failed: {e}");
                return false;
            }
            let mut replies = Vec::new();
            for a in actions.drain(..) {
                match a {
                    Action::Submit(c) => batch.push(c),
                    Action::Reply(o) => replies.push(o),
                }
            }
            if !self.forward(replies).await {
                return false;
            }
            if batch.len() < batch_max && self.entry.in_flight() < window {
                next = more.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            return self.send_msg(&ClientMsg::Submit(batch)).await;
        }
        true
    }

    async fn on_frame(&mut self, m: ManagerToClient) -> bool {
        let now = now_ms();
        let mut outs = Vec::new();
        match m {
            ManagerToClient::Reports(reports) => {
                for r in &reports {
                    if let Err(e) = self.entry.on_report(now, r, &mut outs) {
                        tracing::error!(broker = %self.broker, "order log failed: {e}");
                        return false;
                    }
                }
            }
            ManagerToClient::Orders {
                query,
                orders,
                last,
            } => {
                let Some((_, seen)) = self.queries.get_mut(&query) else {
                    return true;
                };
                seen.extend(orders.iter().map(|o| o.id));
                for st in &orders {
                    let result = if st.state == OrderState::Pending {
                        self.requery.push(st.id);
                        Ok(())
                    } else {
                        self.entry.on_status(now, st, &mut outs)
                    };
                    if let Err(e) = result {
                        tracing::error!(broker = %self.broker, "order log failed: {e}");
                        return false;
                    }
                }
                if last {
                    let (asked, seen) = self.queries.remove(&query).unwrap_or_default();
                    for id in asked.into_iter().filter(|id| !seen.contains(id)) {
                        if let Err(e) = self.entry.on_missing(now, id, &mut outs) {
                            tracing::error!(broker = %self.broker, "order log failed: {e}");
                            return false;
                        }
                    }
                    if !self.requery.is_empty() && self.requery_at.is_none() {
                        self.requery_at = Some(Instant::now() + REQUERY);
                    }
                }
            }
            ManagerToClient::Error(text) => {
                self.lost(&format!("the manager ended the session: {text}"));
            }
            ManagerToClient::Brokers(_) | ManagerToClient::Totals { .. } => {}
        }
        self.forward(outs).await
    }

    /// Asks the manager about `ids` (in chunks within its query limit).
    async fn query(&mut self, ids: Vec<OrderId>) -> bool {
        for chunk in ids.chunks(proto::limits::MAX_QUERY_IDS) {
            let query = self.next_query;
            self.next_query += 1;
            self.queries.insert(query, (chunk.to_vec(), HashSet::new()));
            let msg = ClientMsg::QueryOrders {
                query,
                ids: chunk.to_vec(),
            };
            if !self.send_msg(&msg).await {
                return false;
            }
        }
        true
    }
}
