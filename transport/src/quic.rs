//! QUIC endpoints with TLS 1.3 (rustls + ring), certificate handling, framed streams and the
//! handshake, shared by every binary so none repeats this setup.
//!
//! Identity: the manager uses a certificate given on the command line, or the one in its data
//! directory, or creates a self-signed one there on first start (`cert.pem`, `key.pem`). Clients
//! pin that certificate with `--ca`: it is their only trust root, and they always verify the
//! name [`SERVER_NAME`], whatever address they dial.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, RecvStream, SendStream, TransportConfig, VarInt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use proto::codec::{self, CodecError, HEADER_LEN, HELLO_MAX_FRAME, MAX_FRAME};
use proto::messages::{Credentials, Hello, HelloReply, Welcome, PROTOCOL_VERSION};

/// DNS name in the manager's certificate; clients verify it.
pub const SERVER_NAME: &str = "gridmatch";
/// ALPN protocol id: refuses connections from other QUIC applications early.
pub const ALPN: &[u8] = b"gridmatch/1";

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    Codec(#[from] CodecError),
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("could not connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("stream read failed: {0}")]
    Read(#[from] quinn::ReadExactError),
    #[error("stream write failed: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("stream closed: {0}")]
    Closed(#[from] quinn::ClosedStream),
    #[error("the manager refused this client: {0}")]
    Refused(String),
    #[error("the manager is busy: {0}")]
    Busy(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl WireError {
    /// True when retrying cannot help: a refused hello (credentials, protocol version), a
    /// certificate the pinned CA does not trust, a TLS or ALPN mismatch, bad local files. A
    /// client exits on these with the reason instead of reconnecting forever.
    pub fn is_fatal(&self) -> bool {
        match self {
            WireError::Refused(_) | WireError::Tls(_) | WireError::File { .. } => true,
            WireError::Connection(e) => connection_error_is_fatal(e),
            WireError::Connect(quinn::ConnectError::InvalidServerName(_))
            | WireError::Connect(quinn::ConnectError::NoDefaultClientConfig)
            | WireError::Connect(quinn::ConnectError::UnsupportedVersion) => true,
            _ => false,
        }
    }
}

/// A connection that failed in its TLS handshake (untrusted certificate, wrong name, no common
/// ALPN) is a configuration error, not a network hiccup.
fn connection_error_is_fatal(e: &quinn::ConnectionError) -> bool {
    match e {
        quinn::ConnectionError::TransportError(t) => {
            let code = u64::from(t.code);
            // 0x0100..=0x01ff: TLS alerts carried as QUIC CRYPTO_ERRORs (RFC 9001 4.8).
            (0x0100..=0x01ff).contains(&code)
        }
        quinn::ConnectionError::ConnectionClosed(c) => {
            let code = u64::from(c.error_code);
            (0x0100..=0x01ff).contains(&code)
        }
        quinn::ConnectionError::VersionMismatch => true,
        _ => false,
    }
}

/// A certificate chain and its private key.
pub struct Identity {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

fn read_file(path: &Path) -> Result<Vec<u8>, WireError> {
    std::fs::read(path).map_err(|source| WireError::File {
        path: path.to_owned(),
        source,
    })
}

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, WireError> {
    let pem = read_file(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| WireError::File {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(WireError::Tls(format!(
            "{}: no certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, WireError> {
    let pem = read_file(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|source| WireError::File {
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| WireError::Tls(format!("{}: no private key in the file", path.display())))
}

/// The manager's identity: `cert`/`key` if given, else `data_dir/cert.pem` + `key.pem`, created
/// self-signed on first use. Returns the identity and the path clients should pin.
pub fn load_or_create_identity(
    data_dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<(Identity, PathBuf), WireError> {
    match (cert, key) {
        (Some(cert), Some(key)) => {
            return Ok((
                Identity {
                    certs: load_certs(cert)?,
                    key: load_key(key)?,
                },
                cert.to_owned(),
            ))
        }
        (None, None) => {}
        _ => {
            return Err(WireError::Tls(
                "--cert and --key must be given together".into(),
            ))
        }
    }
    let cert_path = data_dir.join("cert.pem");
    let key_path = data_dir.join("key.pem");
    if !cert_path.exists() || !key_path.exists() {
        std::fs::create_dir_all(data_dir).map_err(|source| WireError::File {
            path: data_dir.to_owned(),
            source,
        })?;
        let generated = rcgen::generate_simple_self_signed(vec![
            SERVER_NAME.to_string(),
            "localhost".to_string(),
        ])
        .map_err(|e| WireError::Tls(e.to_string()))?;
        write_private(&key_path, generated.key_pair.serialize_pem().as_bytes())?;
        std::fs::write(&cert_path, generated.cert.pem()).map_err(|source| WireError::File {
            path: cert_path.clone(),
            source,
        })?;
        tracing::info!(cert = %cert_path.display(), "created a self-signed certificate");
        let key =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(generated.key_pair.serialize_der()));
        return Ok((
            Identity {
                certs: vec![generated.cert.der().clone()],
                key,
            },
            cert_path,
        ));
    }
    Ok((
        Identity {
            certs: load_certs(&cert_path)?,
            key: load_key(&key_path)?,
        },
        cert_path,
    ))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), WireError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|source| WireError::File {
        path: path.to_owned(),
        source,
    })?;
    file.write_all(bytes).map_err(|source| WireError::File {
        path: path.to_owned(),
        source,
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Transport tuned for many small messages on few long-lived streams (see DESIGN.md): larger
/// flow-control windows, a larger first MTU, no fairness splitting of small writes, and
/// keep-alives so idle sessions survive.
pub fn transport_config() -> TransportConfig {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(64))
        .max_concurrent_uni_streams(VarInt::from_u32(64))
        .stream_receive_window(VarInt::from_u32(16 * 1024 * 1024))
        .receive_window(VarInt::from_u32(64 * 1024 * 1024))
        .send_window(64 * 1024 * 1024)
        .initial_mtu(1452)
        .send_fairness(false)
        .keep_alive_interval(Some(Duration::from_secs(1)))
        // A peer silent for this long is gone (stateless resets usually tell sooner).
        .max_idle_timeout(Some(VarInt::from_u32(10_000).into()));
    // Let path MTU discovery go beyond Ethernet where the path allows it (loopback, jumbo
    // frames): fewer, larger datagrams. On a 1500-byte LAN the probes simply fail.
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(16_384);
    t.mtu_discovery_config(Some(mtu));
    t
}

/// A listening endpoint for the manager.
pub fn server_endpoint(bind: SocketAddr, identity: Identity) -> Result<Endpoint, WireError> {
    let key_der = identity.key.secret_der().to_vec();
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| WireError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(identity.certs, identity.key)
        .map_err(|e| WireError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| WireError::Tls(e.to_string()))?;
    // Stateless-reset key derived from the private key: a manager restarted after a crash can
    // reset its clients' old connections at once, instead of them waiting for the idle timeout.
    let secret = ring::digest::digest(
        &ring::digest::SHA256,
        &[b"gridmatch stateless reset".as_slice(), key_der.as_slice()].concat(),
    );
    let reset_key: Arc<dyn quinn::crypto::HmacKey> = Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        secret.as_ref(),
    ));
    // Connection ids are validated with a keyed hash; the same stable key lets the restarted
    // manager recognise its predecessor's ids and answer them with a reset.
    let cid_key = u64::from_le_bytes(
        secret.as_ref()[..8]
            .try_into()
            .expect("SHA-256 is 32 bytes"),
    );
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config()));
    let mut endpoint_config = quinn::EndpointConfig::new(reset_key);
    endpoint_config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    endpoint(bind, Some(config), endpoint_config)
}

/// Socket buffer size asked for. Bursts of many small datagrams overflow Linux's default
/// (about 208 KiB) and every drop makes QUIC's congestion control back off; the kernel caps the
/// request at `net.core.rmem_max` / `wmem_max` (raise them for multi-gigabit runs).
const SOCKET_BUFFER: usize = 8 * 1024 * 1024;

fn endpoint(
    bind: SocketAddr,
    server: Option<quinn::ServerConfig>,
    endpoint_config: quinn::EndpointConfig,
) -> Result<Endpoint, WireError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = socket.set_recv_buffer_size(SOCKET_BUFFER) {
        tracing::debug!("could not enlarge the UDP receive buffer: {e}");
    }
    if let Err(e) = socket.set_send_buffer_size(SOCKET_BUFFER) {
        tracing::debug!("could not enlarge the UDP send buffer: {e}");
    }
    socket.bind(&bind.into())?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| WireError::Protocol("no async runtime for the QUIC endpoint".into()))?;
    Ok(Endpoint::new(
        endpoint_config,
        server,
        socket.into(),
        runtime,
    )?)
}

/// A client endpoint trusting only the certificate(s) in `ca_pem`.
pub fn client_endpoint(ca_pem: &Path) -> Result<Endpoint, WireError> {
    client_endpoint_with(ca_pem, transport_config())
}

/// [`client_endpoint`] with another transport configuration (e.g. the small receive windows of
/// a client on a slow link).
pub fn client_endpoint_with(
    ca_pem: &Path,
    transport: TransportConfig,
) -> Result<Endpoint, WireError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(ca_pem)? {
        roots
            .add(cert)
            .map_err(|e| WireError::Tls(format!("{}: {e}", ca_pem.display())))?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| WireError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| WireError::Tls(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    let bind: SocketAddr = "0.0.0.0:0".parse().expect("valid literal");
    let rng = ring::rand::SystemRandom::new();
    let reset_key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
        .map_err(|_| WireError::Tls("no system randomness for the reset key".into()))?;
    let mut endpoint = endpoint(bind, None, quinn::EndpointConfig::new(Arc::new(reset_key)))?;
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

/// Resolves `host:port` (names allowed) to one socket address.
pub fn resolve(addr: &str) -> Result<SocketAddr, WireError> {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .map_err(|e| WireError::Protocol(format!("cannot resolve {addr}: {e}")))?
        .next()
        .ok_or_else(|| WireError::Protocol(format!("{addr} resolves to no address")))
}

/// Writes frames to one QUIC stream, reusing its buffer.
pub struct FrameWriter {
    stream: SendStream,
    buf: Vec<u8>,
}

impl FrameWriter {
    pub fn new(stream: SendStream) -> Self {
        FrameWriter {
            stream,
            buf: Vec::with_capacity(64 * 1024),
        }
    }
    pub async fn send<T: bincode::Encode>(&mut self, msg: &T) -> Result<(), WireError> {
        self.buf.clear();
        codec::encode_frame(msg, &mut self.buf)?;
        self.stream.write_all(&self.buf).await?;
        Ok(())
    }
    /// Sends raw bytes (already framed, or deliberately not: tests use it for garbage).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }
    /// Gracefully ends the stream.
    pub fn finish(&mut self) -> Result<(), WireError> {
        Ok(self.stream.finish()?)
    }
    /// Ends the stream and waits, at most `wait`, until the peer has received all of it (so a
    /// last error message is not lost when the connection is dropped right after).
    pub async fn close(&mut self, wait: Duration) {
        let _ = self.stream.finish();
        let _ = tokio::time::timeout(wait, self.stream.stopped()).await;
    }
}

/// Bytes read from the stream at a time: what a peer announcing a large frame and then sending
/// nothing can make the reader hold.
const READ_CHUNK: usize = 64 * 1024;

/// Reads frames from one QUIC stream, within a size limit (per stage: small before the peer has
/// authenticated) and a time limit for each frame once its header has arrived, so a peer that
/// announces a large frame and trickles it (or sends nothing) holds little memory for little
/// time.
///
/// `recv` is cancel-safe: a frame's progress (header bytes, payload bytes, its deadline) lives
/// in the reader, so a `select!` that drops a `recv` future mid-frame loses nothing and the
/// next `recv` carries on where it stopped.
pub struct FrameReader {
    stream: RecvStream,
    buf: Vec<u8>,
    limit: usize,
    frame_timeout: Duration,
    /// Header bytes of the frame in progress.
    header: [u8; HEADER_LEN],
    header_len: usize,
    /// Once the header is whole: the payload length, and when the frame must be complete.
    payload: Option<(usize, tokio::time::Instant)>,
    /// Payload bytes received into `buf` so far.
    filled: usize,
}

impl FrameReader {
    /// A reader with the hello limit ([`HELLO_MAX_FRAME`]) and a 10 s frame deadline.
    pub fn new(stream: RecvStream) -> Self {
        FrameReader {
            stream,
            buf: Vec::new(),
            limit: HELLO_MAX_FRAME,
            frame_timeout: Duration::from_secs(10),
            header: [0; HEADER_LEN],
            header_len: 0,
            payload: None,
            filled: 0,
        }
    }

    /// Largest payload accepted from now on (capped at [`MAX_FRAME`]).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.min(MAX_FRAME);
    }

    /// Time allowed for the rest of a frame once its header arrived.
    pub fn set_frame_timeout(&mut self, timeout: Duration) {
        self.frame_timeout = timeout;
    }

    /// Next message; `Ok(None)` when the peer finished the stream cleanly between frames.
    /// Cancel-safe (see the type's doc).
    pub async fn recv<T: bincode::Decode<()>>(&mut self) -> Result<Option<T>, WireError> {
        while self.header_len < HEADER_LEN {
            match self.stream.read(&mut self.header[self.header_len..]).await {
                Ok(Some(n)) => self.header_len += n,
                Ok(None) if self.header_len == 0 => return Ok(None),
                Ok(None) => return Err(finished_early(self.header_len)),
                Err(e) => return Err(quinn::ReadExactError::ReadError(e).into()),
            }
        }
        let (len, deadline) = match self.payload {
            Some(p) => p,
            None => {
                let len = codec::frame_len(self.header, self.limit)?;
                let p = (len, tokio::time::Instant::now() + self.frame_timeout);
                self.payload = Some(p);
                // The buffer's bytes are overwritten as the payload arrives: not zeroed again.
                self.filled = 0;
                p
            }
        };
        tokio::time::timeout_at(deadline, self.read_payload(len))
            .await
            .map_err(|_| {
                WireError::Timeout(format!(
                    "a {len}-byte frame did not arrive within {:?}",
                    self.frame_timeout
                ))
            })??;
        // The frame is whole: the next recv starts a new one.
        self.header_len = 0;
        self.payload = None;
        // What decoding may reserve follows this stage's limit, not the largest frame's.
        let msg = codec::decode_payload_within(&self.buf[..len], self.limit);
        // Keep the buffer for the next frame (a busy stream's frames are alike in size), but
        // not one far larger than this frame needed: a stream that sent one large frame and
        // then small ones gives the memory back. What a stream can hold is bounded by its
        // stage's frame limit either way (a frame in progress holds as much).
        if self.buf.capacity() > 4 * READ_CHUNK && len * 4 < self.buf.capacity() {
            self.buf = Vec::new();
        }
        Ok(Some(msg?))
    }

    /// Reads the rest of `len` payload bytes into `buf`, growing it only as data arrives.
    async fn read_payload(&mut self, len: usize) -> Result<(), WireError> {
        while self.filled < len {
            let n = (len - self.filled).min(READ_CHUNK);
            if self.buf.len() < self.filled + n {
                self.buf.resize(self.filled + n, 0);
            }
            match self
                .stream
                .read(&mut self.buf[self.filled..self.filled + n])
                .await
            {
                Ok(Some(k)) => self.filled += k,
                Ok(None) => return Err(finished_early(HEADER_LEN + self.filled)),
                Err(e) => return Err(quinn::ReadExactError::ReadError(e).into()),
            }
        }
        Ok(())
    }
}

fn finished_early(got: usize) -> WireError {
    quinn::ReadExactError::FinishedEarly(got).into()
}

/// Client side of the handshake: opens the session stream, presents credentials, and returns
/// the stream halves and the manager's welcome. A refusal is [`WireError::Refused`].
pub async fn client_handshake(
    conn: &Connection,
    credentials: Credentials,
) -> Result<(FrameWriter, FrameReader, Welcome), WireError> {
    let (send, recv) = conn.open_bi().await?;
    let mut writer = FrameWriter::new(send);
    let mut reader = FrameReader::new(recv);
    writer
        .send(&Hello {
            version: PROTOCOL_VERSION,
            credentials,
        })
        .await?;
    // The manager is trusted (pinned certificate): its frames may be as large as any.
    reader.set_limit(MAX_FRAME);
    match reader.recv::<HelloReply>().await? {
        Some(HelloReply::Welcome(w)) => Ok((writer, reader, w)),
        Some(HelloReply::Refused { reason }) => Err(WireError::Refused(reason)),
        Some(HelloReply::Busy { reason }) => Err(WireError::Busy(reason)),
        None => Err(WireError::Protocol(
            "manager closed the stream during the handshake".into(),
        )),
    }
}

/// How long a dial plus handshake may take. QUIC gets no "connection refused" from a port where
/// nothing listens, so without a limit a dial waits for the idle timeout (10 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Dials the manager and performs the handshake, within [`CONNECT_TIMEOUT`].
pub async fn connect(
    endpoint: &Endpoint,
    addr: SocketAddr,
    credentials: Credentials,
) -> Result<(Connection, FrameWriter, FrameReader, Welcome), WireError> {
    connect_within(endpoint, addr, credentials, CONNECT_TIMEOUT).await
}

/// [`connect`] with another time limit.
pub async fn connect_within(
    endpoint: &Endpoint,
    addr: SocketAddr,
    credentials: Credentials,
    limit: Duration,
) -> Result<(Connection, FrameWriter, FrameReader, Welcome), WireError> {
    let attempt = async {
        let conn = endpoint.connect(addr, SERVER_NAME)?.await?;
        let (w, r, welcome) = client_handshake(&conn, credentials).await?;
        Ok((conn, w, r, welcome))
    };
    tokio::time::timeout(limit, attempt).await.map_err(|_| {
        WireError::Timeout(format!(
            "no answer from {addr} within {limit:?}: is a manager listening there?"
        ))
    })?
}

/// Server side: accepts the session stream and reads the client's hello (at most
/// [`HELLO_MAX_FRAME`] bytes; the caller bounds the time).
pub async fn accept_hello(
    conn: &Connection,
) -> Result<(FrameWriter, FrameReader, Hello), WireError> {
    let (send, recv) = conn.accept_bi().await?;
    let writer = FrameWriter::new(send);
    let mut reader = FrameReader::new(recv);
    match reader.recv::<Hello>().await? {
        Some(hello) => Ok((writer, reader, hello)),
        None => Err(WireError::Protocol(
            "client closed the stream before its hello".into(),
        )),
    }
}
