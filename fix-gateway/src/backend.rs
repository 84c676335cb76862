//! The application side of a FIX session: who authenticates a Logon and what answers its
//! application messages.
//!
//! The first successful Logon of a broker asks the [`Backend`] to start that broker's
//! application side; it returns an [`AppLink`]: application messages in session order towards
//! the backend, application messages to send back to the client, and a channel to check the
//! password of later Logons. The link lives as long as the gateway, across TCP connections, so
//! reports that arrive while no client is connected are stored by the session and resent. The
//! gateway itself holds no secret files: the backend (the manager) decides.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use tokio::sync::{mpsc, oneshot};

use crate::codec::MessageBuilder;
use crate::session::AppMessage;
use crate::tags;

/// Capacity of each direction of an [`AppLink`]: a slow side pushes back instead of growing a
/// queue.
pub const LINK_CAPACITY: usize = 4096;

/// An application message for the client: MsgType and body fields (no header).
#[derive(Debug, Clone)]
pub struct Outbound {
    pub msg_type: Vec<u8>,
    pub body: MessageBuilder,
}

/// A later Logon's password, to be checked by the broker's running application side.
#[derive(Debug)]
pub struct AuthRequest {
    pub password: String,
    pub reply: oneshot::Sender<Result<(), Refusal>>,
}

/// A logged-on broker's channels to and from the backend.
#[derive(Debug)]
pub struct AppLink {
    /// Application messages from the client, in sequence order.
    pub to_backend: mpsc::Sender<AppMessage>,
    /// Application messages for the client. Closed = the backend is gone: the session logs out.
    pub from_backend: mpsc::Receiver<Outbound>,
    /// Password checks of later Logons.
    pub auth: mpsc::Sender<AuthRequest>,
}

impl AppLink {
    /// Checks the password of a later Logon of the same broker.
    pub async fn check(auth: &mpsc::Sender<AuthRequest>, password: &str) -> Result<(), Refusal> {
        let (reply, answer) = oneshot::channel();
        let req = AuthRequest {
            password: password.to_string(),
            reply,
        };
        if auth.send(req).await.is_err() {
            return Err("order entry unavailable".into());
        }
        answer
            .await
            .unwrap_or_else(|_| Err("order entry unavailable".into()))
    }
}

/// Why a Logon was refused; the text goes into the Logout.
pub type Refusal = String;

/// Boxed future returned by [`Backend::logon`].
pub type LogonFuture<'a> = Pin<Box<dyn Future<Output = Result<AppLink, Refusal>> + Send + 'a>>;

/// Authenticates brokers and carries their application traffic.
pub trait Backend: Send + Sync + 'static {
    /// Logs `broker` on with `password` for the first time in this process, starting its
    /// application side.
    fn logon<'a>(&'a self, broker: &'a str, password: &'a str) -> LogonFuture<'a>;
}

/// Constant-time comparison of secrets.
pub fn secret_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A backend for session tests and demos: brokers and passwords from a list; every
/// NewOrderSingle is acknowledged with an ExecutionReport (ExecType=New), every other
/// application message gets a BusinessMessageReject. No matching.
#[derive(Debug, Clone, Default)]
pub struct LoopbackBackend {
    secrets: HashMap<String, String>,
}

impl LoopbackBackend {
    /// From `broker,secret` lines (`#` comments and blank lines skipped).
    pub fn from_credentials(text: &str) -> Result<Self, String> {
        let mut secrets = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((broker, secret)) = line.split_once(',') else {
                return Err(format!(
                    "credentials line {}: expected broker,secret",
                    n + 1
                ));
            };
            secrets.insert(broker.trim().to_string(), secret.trim().to_string());
        }
        Ok(LoopbackBackend { secrets })
    }

    fn check(&self, broker: &str, password: &str) -> Result<(), Refusal> {
        match self.secrets.get(broker) {
            Some(secret) if secret_eq(secret, password) => Ok(()),
            _ => Err("unknown broker or wrong password".to_string()),
        }
    }
}

impl Backend for LoopbackBackend {
    fn logon<'a>(&'a self, broker: &'a str, password: &'a str) -> LogonFuture<'a> {
        Box::pin(async move {
            self.check(broker, password)?;
            let (to_backend, mut inbound) = mpsc::channel::<AppMessage>(LINK_CAPACITY);
            let (outbound, from_backend) = mpsc::channel(LINK_CAPACITY);
            let (auth, mut auth_rx) = mpsc::channel::<AuthRequest>(8);
            let me = self.clone();
            let broker = broker.to_string();
            tokio::spawn(async move {
                let mut exec_id = 0u64;
                loop {
                    tokio::select! {
                        app = inbound.recv() => {
                            let Some(app) = app else { break };
                            exec_id += 1;
                            if outbound.send(loopback_answer(&app, exec_id)).await.is_err() {
                                break;
                            }
                        }
                        req = auth_rx.recv() => {
                            let Some(req) = req else { break };
                            let _ = req.reply.send(me.check(&broker, &req.password));
                        }
                    }
                }
            });
            Ok(AppLink {
                to_backend,
                from_backend,
                auth,
            })
        })
    }
}

fn loopback_answer(app: &AppMessage, exec_id: u64) -> Outbound {
    let m = &app.message;
    let mut body = MessageBuilder::body();
    if m.msg_type() == b"D" {
        let qty = m.get(38).unwrap_or(b"0");
        body.str_field(37, &format!("L{exec_id}"))
            .field(11, m.get(11).unwrap_or(b"?"))
            .str_field(17, &format!("E{exec_id}"))
            .field(150, b"0")
            .field(39, b"0")
            .field(55, m.get(55).unwrap_or(b"?"))
            .field(54, m.get(54).unwrap_or(b"1"))
            .field(38, qty)
            .field(151, qty)
            .field(14, b"0")
            .field(6, b"0");
        if app.poss_dup {
            body.str_field(tags::TEXT, "possible duplicate");
        }
        Outbound {
            msg_type: b"8".to_vec(),
            body,
        }
    } else {
        if let Ok(Some(seq)) = m.get_u64(tags::MSG_SEQ_NUM) {
            body.u64_field(tags::REF_SEQ_NUM, seq);
        }
        body.field(tags::REF_MSG_TYPE, m.msg_type())
            .u64_field(tags::BUSINESS_REJECT_REASON, 3)
            .str_field(tags::TEXT, "Unsupported Message Type");
        Outbound {
            msg_type: tags::msg_type::BUSINESS_MESSAGE_REJECT.to_vec(),
            body,
        }
    }
}
