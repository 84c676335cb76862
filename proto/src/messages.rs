//! Every message exchanged between broker, manager, executor and monitor.
//!
//! Each connection starts with a [`Hello`] on a bidirectional stream opened by the client and a
//! [`HelloReply`] from the manager; after that the same stream carries the role's messages both
//! ways. Batching is explicit: one frame carries many commands or reports.

use matching::{BrokerId, Command, Event, OrderId, Price, Qty, SecurityId, Side};
use serde::{Deserialize, Serialize};

/// Bumped whenever a message layout changes; a mismatch is refused at the handshake.
pub const PROTOCOL_VERSION: u16 = 1;

/// Who the client is and the secret that proves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Credentials {
    /// A broker trading for itself; sees and cancels only its own orders.
    Broker { name: String, secret: String },
    /// A grid PC joining with the executor token.
    Executor { name: String, token: String },
    /// A read-only monitor (tui), with the operator token.
    Monitor { token: String },
    /// An order-entry gateway submitting for several brokers (used by `user-sim replay`), with
    /// the operator token. Ownership rules still apply per order.
    Gateway { token: String },
}

impl Credentials {
    pub fn role(&self) -> &'static str {
        match self {
            Credentials::Broker { .. } => "broker",
            Credentials::Executor { .. } => "executor",
            Credentials::Monitor { .. } => "monitor",
            Credentials::Gateway { .. } => "gateway",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u16,
    pub credentials: Credentials,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    Welcome(Welcome),
    Refused { reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// Manager-assigned id for this session (executor node id for executors).
    pub session: u32,
    /// The listed securities; orders name them by [`SecurityId`].
    pub securities: Vec<SecurityInfo>,
    /// Market rules preset name (`hose`, `none`, ...).
    pub rules: String,
    /// The broker id of a broker session.
    pub broker: Option<BrokerId>,
    /// How often an executor must heartbeat.
    pub heartbeat_ms: u32,
    /// Every order id above this one is unused (as of the handshake): a load generator starts
    /// its ids here so that runs against a long-lived manager do not collide.
    pub max_order_id: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityInfo {
    pub id: SecurityId,
    pub code: String,
    pub reference_price: Price,
}

// ---------------------------------------------------------------- broker / gateway <-> manager

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// New orders and cancels, in the order they must be sequenced. A broker session's broker
    /// field is overwritten with the session's own id.
    Submit(Vec<Command>),
    /// Gateway only: intern broker names; answered by [`ManagerToClient::Brokers`].
    DeclareBrokers(Vec<String>),
    /// State of this session's orders (all of its broker's orders if `ids` is empty).
    QueryOrders { ids: Vec<OrderId> },
    /// Outstanding bid/ask totals of every security, once all earlier submits are done.
    QueryTotals,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManagerToClient {
    Reports(Vec<Report>),
    Brokers(Vec<(String, BrokerId)>),
    Orders(Vec<OrderStatus>),
    Totals(Vec<(SecurityId, Qty, Qty)>),
    /// The manager refused a message (not an order: a protocol-level problem).
    Error(String),
}

/// One event about an order, as delivered to a broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Global sequence number of the command the event belongs to (0: rejected unsequenced).
    pub seq: u64,
    /// The order id of the submitted command (for passive fills: the resting order's id).
    pub order: OrderId,
    pub event: Event,
    /// Last event of this command: the command is in its final state.
    pub last: bool,
    /// A fill on a resting order of this broker, caused by someone else's command.
    pub passive: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderState {
    /// Sequenced and journaled, not yet processed by its executor.
    Pending,
    Resting,
    Filled,
    Cancelled,
    Rejected,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderStatus {
    pub id: OrderId,
    pub security: SecurityId,
    pub side: Side,
    pub price: Price,
    pub qty: Qty,
    pub filled: Qty,
    pub state: OrderState,
}

// ---------------------------------------------------------------------- manager <-> executor

/// A command with its global sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequenced {
    pub seq: u64,
    pub command: Command,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToExecutor {
    /// Take ownership of these securities (open empty books), then apply `replay` silently:
    /// commands already completed elsewhere, each security's in sequence order, which rebuild
    /// the books. Long replays follow in further `Assign` frames with no securities.
    Assign {
        map_version: u64,
        securities: Vec<SecurityId>,
        replay: Vec<Sequenced>,
    },
    /// Drop these securities' books.
    Revoke {
        map_version: u64,
        securities: Vec<SecurityId>,
    },
    /// Commands to match, in sequence order.
    Orders(Vec<Sequenced>),
}

/// One engine event tagged with its command's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqEvent {
    pub seq: u64,
    pub event: Event,
    /// Last event of the command `seq`.
    pub last: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromExecutor {
    /// Every event of each command in one frame (a command's events are never split).
    Events(Vec<SeqEvent>),
    Heartbeat(ExecutorStats),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorStats {
    pub orders_handled: u64,
    pub queue_depth: u32,
    /// Cumulative time spent inside the engine, in microseconds.
    pub busy_micros: u64,
    /// Top of book of a few owned securities, for monitors.
    pub books: Vec<BookDepth>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookDepth {
    pub security: SecurityId,
    /// Best first.
    pub bids: Vec<(Price, Qty)>,
    /// Best first.
    pub asks: Vec<(Price, Qty)>,
}

// ------------------------------------------------------------------------ manager -> monitor

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MonitorMsg {
    Snapshot(GridSnapshot),
    /// Sampled recent trades (bounded per tick).
    Trades(Vec<TradeTick>),
    Log(Vec<LogEntry>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeStatus {
    Up,
    /// Missed a heartbeat, not yet declared down.
    Suspect,
    Down,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: u32,
    pub name: String,
    pub addr: String,
    pub status: NodeStatus,
    pub securities: u32,
    pub orders_handled: u64,
    pub orders_per_sec: f64,
    pub queue_depth: u32,
    pub heartbeat_age_ms: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub received: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub fills: u64,
    pub cancelled: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecurityView {
    pub id: SecurityId,
    pub code: String,
    pub reference_price: Price,
    pub last_price: Option<Price>,
    pub volume: Qty,
    pub bid_total: Qty,
    pub ask_total: Qty,
    pub owner: Option<u32>,
    pub bids: Vec<(Price, Qty)>,
    pub asks: Vec<(Price, Qty)>,
    /// Recent trade prices, oldest first (bounded).
    pub recent_prices: Vec<Price>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GridSnapshot {
    /// Milliseconds since the manager started.
    pub uptime_ms: u64,
    pub shard_map_version: u64,
    pub nodes: Vec<NodeInfo>,
    pub counters: Counters,
    /// Orders sequenced per second over the last interval.
    pub orders_per_sec: f64,
    /// Manager-side latency from receipt to final event.
    pub latency: LatencySummary,
    pub securities: Vec<SecurityView>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeTick {
    pub uptime_ms: u64,
    pub security: SecurityId,
    pub price: Price,
    pub qty: Qty,
    pub buy: OrderId,
    pub sell: OrderId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogKind {
    NodeJoined,
    NodeLost,
    ShardMoved,
    Reject,
    Info,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub uptime_ms: u64,
    pub kind: LogKind,
    pub text: String,
}
