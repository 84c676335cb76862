//! The tokio shell around [`Session`]: accepts TCP (optionally TLS) connections, waits for the
//! Logon, has the [`Backend`] authenticate it, then moves bytes, ticks and application messages
//! into the session and carries its outputs out. No FIX logic here.
//!
//! A connection task reads the Logon and judges it; then it hands the connection to the
//! broker's session task, which lives for the whole process once the broker's first Logon
//! succeeded: it keeps the FIX session (and its store) and the link to the application side
//! across TCP connections, so messages for a client that is not connected are stored and
//! resent after its next Logon. A SenderCompID is logged on at most once at a time; a second
//! connection for it is closed without a word.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::backend::{AppLink, AuthRequest, Backend, Outbound};
use crate::codec::{display_raw, Decoded, Decoder, Message};
use crate::session::{AppMessage, Event, Now, Output, Session, SessionConfig};
use crate::store::{FileStore, MemoryStore, MessageStore};
use crate::tags;

/// How often the session's timers are looked at.
const TICK: Duration = Duration::from_millis(100);

/// Acceptor settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub session: SessionConfig,
    /// One message log per SenderCompID lives here.
    pub data_dir: PathBuf,
    /// fsync every store record (slower; survives power loss, not only process crashes).
    pub fsync: bool,
    /// A connection that sends no Logon within this time is closed.
    pub logon_timeout: Duration,
    /// Frames longer than this are garbled.
    pub max_message_len: usize,
}

impl GatewayConfig {
    /// Defaults for `comp_id`, storing in `data_dir`.
    pub fn new(comp_id: &str, data_dir: &Path) -> Self {
        GatewayConfig {
            session: SessionConfig::new(comp_id),
            data_dir: data_dir.to_path_buf(),
            fsync: false,
            logon_timeout: Duration::from_secs(10),
            max_message_len: 64 * 1024,
        }
    }
}

/// Loads a TLS server configuration from PEM files (the manager's cert.pem and key.pem).
pub fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = rustls_pemfile::certs(&mut BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("opening {}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("reading certificates from {}", cert.display()))?;
    let key = rustls_pemfile::private_key(&mut BufReader::new(
        std::fs::File::open(key).with_context(|| format!("opening {}", key.display()))?,
    ))
    .with_context(|| format!("reading the key from {}", key.display()))?
    .with_context(|| format!("no private key in {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// The connection's byte stream: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type BoxIo = Box<dyn Io>;

/// How long a write to a client may block before the connection is dropped (the session goes
/// on storing its messages for a resend).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a connection hands to its broker's session task once the Logon is judged.
enum Attach {
    /// Authenticated: the session takes the connection over.
    Logon {
        io: BoxIo,
        decoder: Decoder,
        logon: Message,
        slot: LogonSlot,
    },
    /// Refused: the session answers with a Logout (its numbers stay consistent) and closes.
    Refuse {
        io: BoxIo,
        text: String,
        slot: LogonSlot,
    },
}

/// A broker's session task, as the acceptor reaches it.
#[derive(Clone)]
struct BrokerHandle {
    attach: mpsc::Sender<Attach>,
    auth: mpsc::Sender<AuthRequest>,
}

/// A running acceptor.
pub struct Gateway {
    cfg: GatewayConfig,
    backend: Arc<dyn Backend>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// SenderCompIDs with a connection past its Logon (or being judged).
    logged_on: Arc<Mutex<HashSet<String>>>,
    /// One session task per broker that ever logged on, for the life of the process.
    brokers: Mutex<HashMap<String, BrokerHandle>>,
    actors: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    started: Instant,
}

impl Gateway {
    /// A gateway; `tls` from [`tls_config`] makes every connection TLS.
    pub fn new(
        cfg: GatewayConfig,
        backend: Arc<dyn Backend>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
        Ok(Arc::new(Gateway {
            cfg,
            backend,
            tls: tls.map(tokio_rustls::TlsAcceptor::from),
            logged_on: Arc::new(Mutex::new(HashSet::new())),
            brokers: Mutex::new(HashMap::new()),
            actors: Mutex::new(Vec::new()),
            started: Instant::now(),
        }))
    }

    /// Accepts connections until `shutdown` turns true; then every session logs out.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut stop = shutdown.clone();
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let gw = self.clone();
                    let shutdown = shutdown.clone();
                    tasks.spawn(async move { gw.connection(stream, peer, shutdown).await });
                }
                _ = stop.changed() => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        drop(listener);
        while tasks.join_next().await.is_some() {}
        let actors = std::mem::take(&mut *lock(&self.actors));
        for a in actors {
            let _ = a.await;
        }
        Ok(())
    }

    fn now(&self) -> Now {
        Now {
            mono_ms: self.started.elapsed().as_millis() as u64,
            utc_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
        }
    }

    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) {
        let io: anyhow::Result<BoxIo> = match &self.tls {
            None => Ok(Box::new(stream)),
            Some(tls) => tls
                .accept(stream)
                .await
                .map(|s| Box::new(s) as BoxIo)
                .map_err(|e| anyhow::anyhow!("TLS handshake: {e}")),
        };
        let result = match io {
            Ok(io) => self.clone().run(io, shutdown).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => tracing::debug!(%peer, "connection handed over or closed"),
            Err(e) => tracing::info!(%peer, "connection closed: {e:#}"),
        }
    }

    /// Reads the Logon (ignoring garbled frames), within the logon timeout.
    async fn read_logon(&self, io: &mut BoxIo, decoder: &mut Decoder) -> anyhow::Result<Message> {
        let mut buf = vec![0u8; 16 * 1024];
        let deadline = tokio::time::Instant::now() + self.cfg.logon_timeout;
        loop {
            while let Some(frame) = decoder.next_frame() {
                match frame {
                    Ok(Decoded::Message(m)) if m.msg_type() == tags::msg_type::LOGON => {
                        return Ok(m)
                    }
                    Ok(Decoded::Message(m)) => {
                        anyhow::bail!("first message is not a Logon: {m:?}")
                    }
                    Ok(Decoded::Malformed(m)) => {
                        anyhow::bail!("malformed first message: {}", display_raw(&m.raw))
                    }
                    Err(g) => tracing::info!("garbled frame before Logon ignored: {g}"),
                }
            }
            let n = tokio::time::timeout_at(deadline, io.read(&mut buf))
                .await
                .context("no Logon in time")??;
            if n == 0 {
                anyhow::bail!("closed before Logon");
            }
            decoder.extend(&buf[..n]);
        }
    }

    /// Judges the Logon and hands the connection to the broker's session task.
    async fn run(
        self: Arc<Self>,
        mut io: BoxIo,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut decoder = Decoder::new(self.cfg.max_message_len);
        let logon = tokio::select! {
            l = self.read_logon(&mut io, &mut decoder) => l?,
            _ = shutdown.changed() => anyhow::bail!("shutting down"),
        };
        let broker = logon
            .get_str(tags::SENDER_COMP_ID)
            .filter(|c| valid_comp_id(c))
            .context("Logon without a usable SenderCompID")?
            .to_string();
        if logon.get(tags::TARGET_COMP_ID) != Some(self.cfg.session.comp_id.as_bytes()) {
            anyhow::bail!("Logon from {broker} for another TargetCompID");
        }
        let Some(slot) = LogonSlot::claim(&self.logged_on, &broker) else {
            anyhow::bail!("{broker} is already logged on");
        };
        let password = logon
            .get_str(tags::PASSWORD)
            .unwrap_or_default()
            .to_string();
        let handle = lock(&self.brokers).get(&broker).cloned();
        if let Some(h) = handle {
            let attach = match AppLink::check(&h.auth, &password).await {
                Ok(()) => Attach::Logon {
                    io,
                    decoder,
                    logon,
                    slot,
                },
                Err(text) => {
                    tracing::info!(%broker, "logon refused: {text}");
                    Attach::Refuse { io, text, slot }
                }
            };
            if h.attach.send(attach).await.is_err() {
                anyhow::bail!("{broker}'s session has ended");
            }
            return Ok(());
        }
        let path = FileStore::path_in(&self.cfg.data_dir, &broker);
        match self.backend.logon(&broker, &password).await {
            Err(text) => {
                tracing::info!(%broker, "logon refused: {text}");
                // Keep the numbers of a known session consistent; leave no trace of a stranger.
                // Without a store, our Logout carries the peer's own number: a later session
                // (its numbers continuing) then starts ours there (see Session::on_logon).
                let store: Box<dyn MessageStore> = if path.exists() {
                    Box::new(FileStore::open(&path, self.cfg.fsync)?)
                } else {
                    let seq = logon.get_u64(tags::MSG_SEQ_NUM).ok().flatten().unwrap_or(1);
                    Box::new(MemoryStore::starting_at(seq))
                };
                let mut session = Session::new(self.cfg.session.clone(), &broker, store);
                session.refuse_logon(self.now(), &text);
                let wire: Vec<u8> = session
                    .drain_output()
                    .filter_map(|o| match o {
                        Output::Send(b) => Some(b),
                        _ => None,
                    })
                    .flatten()
                    .collect();
                let _ = tokio::time::timeout(WRITE_TIMEOUT, io.write_all(&wire)).await;
                let _ = io.shutdown().await;
                drop(slot);
                Ok(())
            }
            Ok(link) => {
                let store = FileStore::open(&path, self.cfg.fsync)?;
                let session = Session::new(self.cfg.session.clone(), &broker, Box::new(store));
                let (attach_tx, attach_rx) = mpsc::channel(4);
                lock(&self.brokers).insert(
                    broker.clone(),
                    BrokerHandle {
                        attach: attach_tx.clone(),
                        auth: link.auth.clone(),
                    },
                );
                let actor = BrokerSession {
                    gw: self.clone(),
                    session,
                    to_backend: link.to_backend,
                    from_backend: link.from_backend,
                    conn: None,
                    pending: VecDeque::new(),
                    backend_open: true,
                };
                let task = tokio::spawn(actor.run(attach_rx, shutdown));
                lock(&self.actors).push(task);
                let attach = Attach::Logon {
                    io,
                    decoder,
                    logon,
                    slot,
                };
                if attach_tx.send(attach).await.is_err() {
                    anyhow::bail!("{broker}'s session has ended");
                }
                Ok(())
            }
        }
    }
}

/// One broker's FIX session for the life of the process: the session layer, the link to the
/// application side, and the TCP connection while one is attached.
struct BrokerSession {
    gw: Arc<Gateway>,
    session: Session,
    to_backend: mpsc::Sender<AppMessage>,
    from_backend: mpsc::Receiver<Outbound>,
    conn: Option<Conn>,
    /// Application messages received, not yet taken by the backend. While any wait, the socket
    /// is not read: a slow backend slows this client and nobody else.
    pending: VecDeque<AppMessage>,
    backend_open: bool,
}

struct Conn {
    io: BoxIo,
    decoder: Decoder,
    _slot: LogonSlot,
}

async fn read_some(conn: &mut Option<Conn>, buf: &mut [u8]) -> std::io::Result<usize> {
    match conn {
        Some(c) => c.io.read(buf).await,
        None => std::future::pending().await,
    }
}

impl BrokerSession {
    async fn run(
        mut self,
        mut attach: mpsc::Receiver<Attach>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopping = *shutdown.borrow();
        loop {
            self.flush().await;
            if stopping && self.conn.is_none() {
                break;
            }
            let to_backend = self.to_backend.clone();
            tokio::select! {
                a = attach.recv() => match a {
                    Some(a) => self.on_attach(a),
                    None => break,
                },
                n = read_some(&mut self.conn, &mut buf), if self.pending.is_empty() => {
                    self.on_read(n, &buf);
                }
                permit = to_backend.reserve_owned(), if !self.pending.is_empty() => match permit {
                    Ok(p) => {
                        if let Some(app) = self.pending.pop_front() {
                            p.send(app);
                        }
                    }
                    Err(_) => {
                        self.pending.clear();
                        self.backend_gone();
                    }
                },
                out = self.from_backend.recv(), if self.backend_open => match out {
                    Some(out) => {
                        if let Err(e) = self.session.send_app(self.gw.now(), &out.msg_type, &out.body) {
                            tracing::error!(broker = self.session.peer(), "message store: {e}");
                            self.session.logout(self.gw.now(), "message store failed");
                        }
                    }
                    None => self.backend_gone(),
                },
                _ = ticker.tick() => self.session.on_tick(self.gw.now()),
                _ = shutdown.changed(), if !stopping => {
                    stopping = true;
                    self.session.logout(self.gw.now(), "gateway shutting down");
                }
            }
        }
    }

    fn backend_gone(&mut self) {
        self.backend_open = false;
        self.session
            .logout(self.gw.now(), "order entry unavailable");
    }

    fn on_attach(&mut self, a: Attach) {
        let now = self.gw.now();
        match a {
            Attach::Logon {
                io,
                decoder,
                logon,
                slot,
            } => {
                if self.conn.is_some() {
                    return; // cannot happen: the slot admits one connection per broker
                }
                self.session.on_logon(now, logon);
                self.conn = Some(Conn {
                    io,
                    decoder,
                    _slot: slot,
                });
                // Messages the client sent right behind its Logon.
                self.decode(now);
            }
            Attach::Refuse { io, text, slot } => {
                if self.conn.is_some() {
                    return;
                }
                self.session.refuse_logon(now, &text);
                // The next flush writes the Logout to this connection, then closes it.
                self.conn = Some(Conn {
                    io,
                    decoder: Decoder::new(64),
                    _slot: slot,
                });
            }
        }
    }

    fn on_read(&mut self, n: std::io::Result<usize>, buf: &[u8]) {
        match n {
            Ok(n) if n > 0 => {
                if let Some(c) = &mut self.conn {
                    c.decoder.extend(&buf[..n]);
                }
                self.decode(self.gw.now());
            }
            other => {
                if let Err(e) = other {
                    tracing::info!(broker = self.session.peer(), "connection error: {e}");
                } else {
                    tracing::info!(broker = self.session.peer(), "peer closed the connection");
                }
                self.session.on_disconnected();
                self.conn = None;
            }
        }
    }

    fn decode(&mut self, now: Now) {
        let Some(c) = &mut self.conn else { return };
        while let Some(frame) = c.decoder.next_frame() {
            match frame {
                Ok(decoded) => self.session.on_decoded(now, decoded),
                Err(g) => self.session.on_garbled(now, g),
            }
        }
    }

    /// Carries out the session's outputs.
    async fn flush(&mut self) {
        let mut wire = Vec::new();
        let mut disconnect = false;
        let broker = self.session.peer().to_string();
        let outputs: Vec<Output> = self.session.drain_output().collect();
        for out in outputs {
            match out {
                Output::Send(bytes) if !disconnect => wire.extend_from_slice(&bytes),
                Output::Send(_) => {}
                Output::Deliver(app) => self.pending.push_back(app),
                Output::Event(e) => log_event(&broker, &e),
                Output::Disconnect => disconnect = true,
            }
        }
        let Some(c) = &mut self.conn else { return };
        if !wire.is_empty() {
            let written = tokio::time::timeout(WRITE_TIMEOUT, async {
                c.io.write_all(&wire).await?;
                c.io.flush().await
            })
            .await;
            if !matches!(written, Ok(Ok(()))) {
                tracing::warn!(%broker, "client not reading: connection dropped");
                self.session.on_disconnected();
                disconnect = true;
            }
        }
        if disconnect {
            if let Some(mut c) = self.conn.take() {
                let _ = tokio::time::timeout(Duration::from_secs(1), c.io.shutdown()).await;
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn log_event(broker: &str, e: &Event) {
    match e {
        Event::Garbled(_) | Event::Rejected { .. } | Event::StoreFailed(_) => {
            tracing::warn!(%broker, event = ?e, "session")
        }
        _ => tracing::info!(%broker, event = ?e, "session"),
    }
}

/// A SenderCompID usable as a file name: 1..=64 of `[A-Za-z0-9._-]`, not starting with a dot.
pub fn valid_comp_id(c: &str) -> bool {
    (1..=64).contains(&c.len())
        && !c.starts_with('.')
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Marks a SenderCompID logged on for as long as it lives.
struct LogonSlot {
    set: Arc<Mutex<HashSet<String>>>,
    broker: String,
}

impl LogonSlot {
    fn claim(set: &Arc<Mutex<HashSet<String>>>, broker: &str) -> Option<Self> {
        lock(set).insert(broker.to_string()).then(|| LogonSlot {
            set: set.clone(),
            broker: broker.to_string(),
        })
    }
}

impl Drop for LogonSlot {
    fn drop(&mut self) {
        lock(&self.set).remove(&self.broker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comp_ids_that_could_escape_the_data_dir_are_refused() {
        for bad in ["", "..", ".hidden", "a/b", "a\\b", "a b", &"x".repeat(65)] {
            assert!(!valid_comp_id(bad), "{bad}");
        }
        for good in ["BRK1", "broker_2", "a.b-c"] {
            assert!(valid_comp_id(good), "{good}");
        }
    }
}
