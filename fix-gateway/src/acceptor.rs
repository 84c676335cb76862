//! The tokio shell around [`Session`]: accepts TCP (optionally TLS) connections, waits for the
//! Logon, has the [`Backend`] authenticate it, then moves bytes, ticks and application messages
//! into the session and carries its outputs out. No FIX logic here.
//!
//! One task per connection. A SenderCompID is logged on at most once at a time; a second
//! connection for it is closed without a word (its store is in use).

use std::collections::HashSet;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::backend::{AppLink, Backend};
use crate::codec::{display_raw, Decoded, Decoder, Message};
use crate::session::{Event, Now, Output, Session, SessionConfig};
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

/// A running acceptor.
pub struct Gateway {
    cfg: GatewayConfig,
    backend: Arc<dyn Backend>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    logged_on: Mutex<HashSet<String>>,
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
            logged_on: Mutex::new(HashSet::new()),
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
        while tasks.join_next().await.is_some() {}
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
        let result = match &self.tls {
            None => self.clone().run(stream, shutdown).await,
            Some(tls) => match tls.accept(stream).await {
                Ok(s) => self.clone().run(s, shutdown).await,
                Err(e) => Err(anyhow::anyhow!("TLS handshake: {e}")),
            },
        };
        match result {
            Ok(()) => tracing::debug!(%peer, "connection closed"),
            Err(e) => tracing::info!(%peer, "connection closed: {e:#}"),
        }
    }

    /// Reads the Logon (ignoring garbled frames), within the logon timeout.
    async fn read_logon<S: AsyncRead + Unpin>(
        &self,
        io: &mut S,
        decoder: &mut Decoder,
    ) -> anyhow::Result<Message> {
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

    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        self: Arc<Self>,
        mut io: S,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut decoder = Decoder::new(self.cfg.max_message_len);
        let logon = self.read_logon(&mut io, &mut decoder).await?;
        let broker = logon
            .get_str(tags::SENDER_COMP_ID)
            .filter(|c| valid_comp_id(c))
            .context("Logon without a usable SenderCompID")?
            .to_string();
        if logon.get(tags::TARGET_COMP_ID) != Some(self.cfg.session.comp_id.as_bytes()) {
            anyhow::bail!("Logon from {broker} for another TargetCompID");
        }
        let Some(_slot) = LogonSlot::claim(&self, &broker) else {
            anyhow::bail!("{broker} is already logged on");
        };
        let password = logon
            .get_str(tags::PASSWORD)
            .unwrap_or_default()
            .to_string();
        let path = FileStore::path_in(&self.cfg.data_dir, &broker);
        match self.backend.logon(&broker, &password).await {
            Err(text) => {
                // Keep the numbers of a known session consistent; leave no trace of a stranger.
                let store: Box<dyn MessageStore> = if path.exists() {
                    Box::new(FileStore::open(&path, self.cfg.fsync)?)
                } else {
                    Box::new(MemoryStore::default())
                };
                let mut session = Session::new(self.cfg.session.clone(), &broker, store);
                session.refuse_logon(self.now(), &text);
                tracing::info!(%broker, "logon refused: {text}");
                self.flush(&mut io, &mut session, None).await?;
                Ok(())
            }
            Ok(link) => {
                let store = FileStore::open(&path, self.cfg.fsync)?;
                let mut session = Session::new(self.cfg.session.clone(), &broker, Box::new(store));
                session.on_logon(self.now(), logon);
                self.drive(io, decoder, session, link, &mut shutdown).await
            }
        }
    }

    /// The connection's loop after a successful Logon.
    async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut io: S,
        mut decoder: Decoder,
        mut session: Session,
        mut link: AppLink,
        shutdown: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backend_open = true;
        loop {
            if !self.flush(&mut io, &mut session, Some(&link)).await? {
                return Ok(());
            }
            tokio::select! {
                read = io.read(&mut buf) => {
                    let n = read?;
                    if n == 0 {
                        session.on_disconnected();
                        tracing::info!(broker = session.peer(), "peer closed the connection");
                        return Ok(());
                    }
                    decoder.extend(&buf[..n]);
                    let now = self.now();
                    while let Some(frame) = decoder.next_frame() {
                        match frame {
                            Ok(decoded) => session.on_decoded(now, decoded),
                            Err(g) => session.on_garbled(now, g),
                        }
                    }
                }
                _ = ticker.tick() => session.on_tick(self.now()),
                out = link.from_backend.recv(), if backend_open => match out {
                    Some(out) => {
                        session.send_app(self.now(), &out.msg_type, &out.body)?;
                    }
                    None => {
                        backend_open = false;
                        session.logout(self.now(), "order entry unavailable");
                    }
                },
                _ = shutdown.changed() => session.logout(self.now(), "gateway shutting down"),
            }
        }
    }

    /// Carries out the session's outputs. Returns false once it asked to disconnect.
    async fn flush<S: AsyncWrite + Unpin>(
        &self,
        io: &mut S,
        session: &mut Session,
        link: Option<&AppLink>,
    ) -> anyhow::Result<bool> {
        let mut wire = Vec::new();
        let mut open = true;
        let broker = session.peer().to_string();
        let outputs: Vec<Output> = session.drain_output().collect();
        for out in outputs {
            match out {
                Output::Send(bytes) => wire.extend_from_slice(&bytes),
                Output::Deliver(app) => {
                    if let Some(link) = link {
                        // Bounded: a slow backend slows this client, nobody else.
                        if !wire.is_empty() {
                            io.write_all(&wire).await?;
                            wire.clear();
                        }
                        if link.to_backend.send(app).await.is_err() {
                            tracing::warn!(%broker, "backend gone; message dropped");
                        }
                    }
                }
                Output::Event(e) => log_event(&broker, &e),
                Output::Disconnect => {
                    open = false;
                    break;
                }
            }
        }
        if !wire.is_empty() {
            io.write_all(&wire).await?;
        }
        io.flush().await?;
        if !open {
            let _ = io.shutdown().await;
        }
        Ok(open)
    }
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
struct LogonSlot<'a> {
    gateway: &'a Gateway,
    broker: String,
}

impl<'a> LogonSlot<'a> {
    fn claim(gateway: &'a Gateway, broker: &str) -> Option<Self> {
        let mut set = gateway.logged_on.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(broker.to_string()).then(|| LogonSlot {
            gateway,
            broker: broker.to_string(),
        })
    }
}

impl Drop for LogonSlot<'_> {
    fn drop(&mut self) {
        let mut set = self
            .gateway
            .logged_on
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        set.remove(&self.broker);
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
