//! Every message exchanged between broker, manager, executor and monitor.
//!
//! Each connection starts with a [`Hello`] on a bidirectional stream opened by the client and a
//! [`HelloReply`] from the manager; after that the same stream carries the role's messages both
//! ways. Batching is explicit: one frame carries many commands or reports, and anything that can
//! grow without bound (one command's events, a query's answer) is split over several frames, so
//! no legitimate traffic ever meets the frame limit.
//!
//! Correlation: every client command carries the client's own reference ([`ClientCommand`]),
//! every report echoes it, and every query carries a query reference its answer echoes. Clients
//! correlate by these references, never by arrival order.

use bincode::{Decode, Encode};
use matching::{
    BookImage, BrokerId, CancelReason, Command, Event, OrderId, Phase, Price, Qty, RejectReason,
    RestingOrder, SecurityId, Side, Timestamp,
};
use serde::{Deserialize, Serialize};

/// Bumped whenever a message layout changes; a mismatch is refused at the handshake.
pub const PROTOCOL_VERSION: u16 = 3;

/// Who the client is and the secret that proves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum Credentials {
    /// A broker trading for itself; sees and acts on only its own orders.
    Broker { name: String, secret: String },
    /// A grid PC joining with the executor token.
    Executor { name: String, token: String },
    /// A read-only monitor (tui), with the operator token.
    Monitor { token: String },
    /// An order-entry gateway submitting for several brokers (used by `user-sim replay`), with
    /// the operator token. Ownership rules still apply per order.
    Gateway { token: String },
    /// A public market-data subscriber (no order entry): with a broker's name and secret, or
    /// with the operator token as `secret` and no broker. The feed is the same for everyone
    /// and names no broker.
    Feed {
        broker: Option<String>,
        secret: String,
    },
}

impl Credentials {
    pub fn role(&self) -> &'static str {
        match self {
            Credentials::Broker { .. } => "broker",
            Credentials::Executor { .. } => "executor",
            Credentials::Monitor { .. } => "monitor",
            Credentials::Gateway { .. } => "gateway",
            Credentials::Feed { .. } => "feed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Hello {
    pub version: u16,
    pub credentials: Credentials,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum HelloReply {
    Welcome(Welcome),
    /// Authentication or version failure: final, retrying with the same hello cannot succeed.
    Refused {
        reason: String,
    },
    /// The manager cannot take this session now (connection or session cap, shutting down):
    /// retrying later may succeed.
    Busy {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
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
    /// its ids here so that runs against a long-lived manager do not collide. For a broker
    /// session it is the broker's own highest id (its ids are its own namespace).
    pub max_order_id: u64,
    /// What the manager accepts from this session.
    pub limits: SessionLimits,
    /// The trading phase at the handshake.
    pub phase: Phase,
    /// Commands sequenced so far (0 on a fresh manager): a replay that must equal a local one
    /// needs a fresh manager.
    pub sequenced: u64,
}

/// Limits a session must respect; exceeding them is a protocol error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct SessionLimits {
    /// Largest frame payload the manager reads from this session, in bytes.
    pub max_frame: u32,
    /// Most commands in one [`ClientMsg::Submit`].
    pub max_batch: u32,
    /// Most commands sent but not yet final; order entry beyond it waits (clients pace
    /// themselves; the manager stops reading the session meanwhile).
    pub max_in_flight: u32,
    /// Largest order id a broker session may use (its own namespace).
    pub max_order_id: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct SecurityInfo {
    pub id: SecurityId,
    pub code: String,
    pub reference_price: Price,
}

// ---------------------------------------------------------------- broker / gateway <-> manager

/// A command with the client's own reference for it, echoed by every report about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct ClientCommand {
    pub client_ref: u64,
    pub command: Command,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum ClientMsg {
    /// Commands in the order they must be sequenced. A broker session's broker field is
    /// overwritten with the session's own id. At most [`SessionLimits::max_batch`] commands.
    Submit(Vec<ClientCommand>),
    /// Gateway only: intern broker names; answered by [`ManagerToClient::Brokers`].
    DeclareBrokers(Vec<String>),
    /// State of this session's orders (all of its broker's orders if `ids` is empty); answered
    /// by [`ManagerToClient::Orders`] frames with the same `query`.
    QueryOrders { query: u64, ids: Vec<OrderId> },
    /// Outstanding bid/ask totals of every security once all earlier submits are final;
    /// answered by [`ManagerToClient::Totals`] frames with the same `query`.
    QueryTotals { query: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum ManagerToClient {
    Reports(Vec<Report>),
    Brokers(Vec<(String, BrokerId)>),
    /// One part of an answer to `QueryOrders { query }`; `last` on the final part.
    Orders {
        query: u64,
        orders: Vec<OrderStatus>,
        last: bool,
    },
    /// One part of an answer to `QueryTotals { query }`; `last` on the final part.
    Totals {
        query: u64,
        totals: Vec<(SecurityId, Qty, Qty)>,
        last: bool,
    },
    /// The manager refused a message (not an order: a protocol-level problem); the session
    /// ends after it.
    Error(String),
}

/// One event about a command, as delivered to the session that sent it (or, for a passive
/// fill, to every session of the resting order's broker).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Report {
    /// The client's reference of the command (for a passive fill: of the resting order's NEW).
    pub client_ref: u64,
    /// Global sequence number of the command the event belongs to (0: rejected unsequenced).
    pub seq: u64,
    /// Exchange time of that command (0 for a reject before sequencing).
    pub time: Timestamp,
    /// The order the event is about (for a passive fill: the resting order).
    pub order: OrderId,
    pub event: ReportEvent,
    /// Last report of this command: it is in its final state.
    pub last: bool,
    /// A fill on a resting order of this broker, caused by another command.
    pub passive: bool,
}

/// Identity of one trade: the command that caused it, the security and the fill's index
/// within (seq, security). Stable across failover and replay.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Encode, Decode,
)]
pub struct TradeId {
    pub seq: u64,
    pub security: SecurityId,
    pub index: u32,
}

/// Whether a fill took or provided liquidity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
pub enum Liquidity {
    /// The order was resting.
    Maker,
    /// The order was the aggressor.
    Taker,
    /// A call-auction trade.
    Auction,
}

/// A broker's view of one of its own order's fills: no counterparty order or broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct OwnFill {
    pub security: SecurityId,
    pub side: Side,
    pub price: Price,
    pub qty: Qty,
    pub liquidity: Liquidity,
    pub trade: TradeId,
}

/// What happened, as a client sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum ReportEvent {
    /// Sequenced and journaled.
    Accepted,
    Rejected {
        reason: RejectReason,
    },
    /// A fill of the reported order (broker sessions: never names the counterparty).
    Fill(OwnFill),
    /// A whole trade (gateway sessions only: they act for every broker they declared).
    Trade {
        fill: matching::Fill,
        trade: TradeId,
    },
    /// The order (or its remainder) rests with `qty` open at `price` (0 for ATO/ATC).
    Rested {
        price: Price,
        qty: Qty,
    },
    Amended {
        price: Price,
        qty: Qty,
        priority_kept: bool,
    },
    Cancelled {
        qty: Qty,
        reason: CancelReason,
    },
    /// A call auction's result (to the sender of the PHASE command).
    Auction {
        security: SecurityId,
        price: Price,
        volume: Qty,
    },
    /// Next day's reference price (to the sender of the PHASE command).
    Reference {
        security: SecurityId,
        price: Price,
    },
    Totals {
        security: SecurityId,
        bid_total: Qty,
        ask_total: Qty,
    },
    /// Final report of a PHASE command: the market is now in `phase`.
    PhaseChanged {
        phase: Phase,
    },
}

impl ReportEvent {
    /// The engine event a gateway-session report stands for (trades, rejects, totals, ...), so
    /// a grid replay can feed the same collector as a local one. `None` for reports with no
    /// engine counterpart (acceptance, phase completion, broker-side fills).
    pub fn to_engine_event(&self, order: OrderId) -> Option<Event> {
        Some(match *self {
            ReportEvent::Rejected { reason } => Event::Rejected { id: order, reason },
            ReportEvent::Trade { fill, .. } => Event::Fill(fill),
            ReportEvent::Auction {
                security,
                price,
                volume,
            } => Event::Auction {
                security,
                price,
                volume,
            },
            ReportEvent::Reference { security, price } => Event::Reference { security, price },
            ReportEvent::Totals {
                security,
                bid_total,
                ask_total,
            } => Event::Totals {
                security,
                bid_total,
                ask_total,
            },
            ReportEvent::Accepted
            | ReportEvent::Fill(_)
            | ReportEvent::Rested { .. }
            | ReportEvent::Amended { .. }
            | ReportEvent::Cancelled { .. }
            | ReportEvent::PhaseChanged { .. } => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum OrderState {
    /// Sequenced and journaled, not yet processed by its executor.
    Pending,
    Resting,
    Filled,
    Cancelled,
    /// Still resting when the market closed.
    Expired,
    Rejected,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct OrderStatus {
    pub id: OrderId,
    pub security: SecurityId,
    pub side: Side,
    pub kind: matching::OrderType,
    /// Limit price (an MTL remainder: the price it rests at; after an amend: the new price).
    pub price: Price,
    /// Filled plus open quantity (after an amend: filled + the new open quantity).
    pub qty: Qty,
    pub filled: Qty,
    pub state: OrderState,
    /// Why a rejected order was rejected.
    pub reject: Option<RejectReason>,
}

// ---------------------------------------------------------------------- manager <-> executor

/// A sequenced command as routed to the owner of `security`: a PHASE is routed once per
/// security (with the same seq) and applies to that book only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Routed {
    pub seq: u64,
    pub security: SecurityId,
    pub command: Command,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum ToExecutor {
    /// Take ownership of these securities: open empty books (a following `Replay` rebuilds
    /// them).
    Assign {
        map_version: u64,
        securities: Vec<SecurityId>,
    },
    /// Apply silently: these commands' events were delivered already (rebuilding books after a
    /// failover, a migration or a manager restart). Per security in sequence order.
    Replay(Vec<Routed>),
    /// Drop these securities' books.
    Revoke {
        map_version: u64,
        securities: Vec<SecurityId>,
    },
    /// Commands to match, in sequence order.
    Orders(Vec<Routed>),
    /// Answer with an image of each of these books ([`FromExecutor::Image`] parts), taken
    /// after every command sent before this message: it travels in the same ordered queue.
    Snapshot(Vec<SecurityId>),
    /// Install a book from an image (failover, migration, manager restart): the book becomes
    /// exactly the image, as of command `seq`; a following `Replay` continues from there. The
    /// parts of one image are consecutive; the book is installed at the `last` one.
    Image(ImagePart),
}

/// Most resting orders in one [`ImagePart`] (keeps frames far below the frame limit).
pub const IMAGE_PART_ORDERS: usize = 32_768;

/// One part of a book image: the book's exact state right after command `seq` of its
/// security (0: before any). Every part repeats the header; orders are in priority order,
/// the parts' bids and asks concatenated in part order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct ImagePart {
    pub security: SecurityId,
    pub seq: u64,
    pub phase: Phase,
    pub reference: Price,
    pub last_trade: Option<Price>,
    pub bids: Vec<RestingOrder>,
    pub asks: Vec<RestingOrder>,
    pub last: bool,
}

impl ImagePart {
    /// Cuts `image` (the book after `seq`) into parts of at most `max_orders` orders
    /// (at least one part, even for an empty book).
    pub fn split(image: &BookImage, seq: u64, max_orders: usize) -> Vec<ImagePart> {
        let max = max_orders.max(1);
        let header = |bids: &[RestingOrder], asks: &[RestingOrder]| ImagePart {
            security: image.security,
            seq,
            phase: image.phase,
            reference: image.reference,
            last_trade: image.last_trade,
            bids: bids.to_vec(),
            asks: asks.to_vec(),
            last: false,
        };
        let mut parts: Vec<ImagePart> = image
            .bids
            .chunks(max)
            .map(|c| header(c, &[]))
            .chain(image.asks.chunks(max).map(|c| header(&[], c)))
            .collect();
        if parts.is_empty() {
            parts.push(header(&[], &[]));
        }
        if let Some(p) = parts.last_mut() {
            p.last = true;
        }
        parts
    }
}

/// Why [`ImageAssembly`] refused a part.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImagePartError {
    #[error("image part of security {got:?} (seq {got_seq}) inside the image of {expected:?} (seq {expected_seq})")]
    Interleaved {
        expected: SecurityId,
        expected_seq: u64,
        got: SecurityId,
        got_seq: u64,
    },
    #[error("image parts disagree on the book's phase, reference or last trade")]
    HeaderChanged,
    #[error("image of more than {0} resting orders")]
    TooLarge(usize),
}

/// Collects the parts of one image, bounded: at most `max_orders` orders in all.
#[derive(Clone, Debug, Default)]
pub struct ImageAssembly {
    image: Option<(u64, BookImage)>,
}

impl ImageAssembly {
    /// Adds a part; returns the whole image and its seq at the last part. The first part's
    /// orders are moved in, not copied: most books fit one part, and a big one is copied once
    /// less.
    pub fn push(
        &mut self,
        part: ImagePart,
        max_orders: usize,
    ) -> Result<Option<(u64, BookImage)>, ImagePartError> {
        let last = part.last;
        let result = match &mut self.image {
            None if part.bids.len() + part.asks.len() > max_orders => {
                Err(ImagePartError::TooLarge(max_orders))
            }
            None => {
                self.image = Some((
                    part.seq,
                    BookImage {
                        security: part.security,
                        phase: part.phase,
                        reference: part.reference,
                        last_trade: part.last_trade,
                        bids: part.bids,
                        asks: part.asks,
                    },
                ));
                Ok(())
            }
            Some((seq, image)) => {
                if image.security != part.security || *seq != part.seq {
                    Err(ImagePartError::Interleaved {
                        expected: image.security,
                        expected_seq: *seq,
                        got: part.security,
                        got_seq: part.seq,
                    })
                } else if (image.phase, image.reference, image.last_trade)
                    != (part.phase, part.reference, part.last_trade)
                {
                    Err(ImagePartError::HeaderChanged)
                } else if image.bids.len() + image.asks.len() + part.bids.len() + part.asks.len()
                    > max_orders
                {
                    Err(ImagePartError::TooLarge(max_orders))
                } else {
                    image.bids.extend_from_slice(&part.bids);
                    image.asks.extend_from_slice(&part.asks);
                    Ok(())
                }
            }
        };
        match result {
            Err(e) => {
                self.image = None;
                Err(e)
            }
            Ok(()) if last => Ok(self.image.take()),
            Ok(()) => Ok(None),
        }
    }

    /// Whether a part was received and the image is not complete yet.
    pub fn in_progress(&self) -> bool {
        self.image.is_some()
    }
}

/// The events of one routed command, or of one part of them: a command whose events do not
/// fit one group (a sweep of 275,000 resting orders) is sent as several groups, `last` on the
/// final one. The engine's `Accepted` is not sent (the manager acknowledged already).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct EventGroup {
    pub seq: u64,
    pub security: SecurityId,
    pub events: crate::GroupEvents,
    pub last: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum FromExecutor {
    /// Groups in the order the executor processed the commands; the parts of one command are
    /// consecutive.
    Events(Vec<EventGroup>),
    Heartbeat(ExecutorStats),
    /// One part of the image a [`ToExecutor::Snapshot`] asked for, after the events of every
    /// command before the request; `seq` is the last command the book applied.
    Image(ImagePart),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct ExecutorStats {
    pub orders_handled: u64,
    pub queue_depth: u32,
    /// Cumulative time spent inside the engine, in microseconds.
    pub busy_micros: u64,
    /// Top of book of a few owned securities, for monitors.
    pub books: Vec<BookDepth>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct BookDepth {
    pub security: SecurityId,
    /// Best first.
    pub bids: Vec<(Price, Qty)>,
    /// Best first.
    pub asks: Vec<(Price, Qty)>,
    /// While a call phase is open: the indicative auction price and volume.
    pub indicative: Option<(Price, Qty)>,
}

// ------------------------------------------------------------------ feed subscriber <-> manager

/// What a market-data subscriber sends after the handshake. The feed's own types
/// ([`feed::Subscription`], [`feed::Message`]) are the wire format: they are plain serde data
/// with no logic, owned by the `feed` crate that builds and checks them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum FeedRequest {
    /// The session's first message, and only once: what to receive. Answered by a snapshot
    /// (`SnapshotBegin`, then one `Snapshot` per security) and incrementals from then on.
    Subscribe(feed::Subscription),
    /// The subscriber lost track (a gap in its view's sequence numbers): its queue is cleared
    /// and a fresh snapshot follows. Counts towards the slow-subscriber policy, like an
    /// overflow of its queue.
    Resync,
}

/// What the manager sends a market-data subscriber.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum FeedUpdate {
    /// Messages of the subscriber's view, in its sequence order (a frame holds many).
    Messages(Vec<feed::Message>),
    /// The subscription ended (refused, too slow, feed unavailable); the session closes.
    Closed(String),
}

// ------------------------------------------------------------------------ manager -> monitor

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
pub enum MonitorMsg {
    Snapshot(GridSnapshot),
    /// Sampled recent trades (bounded per tick).
    Trades(Vec<TradeTick>),
    Log(Vec<LogEntry>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum NodeStatus {
    Up,
    /// Missed a heartbeat, not yet declared down.
    Suspect,
    Down,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
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

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Counters {
    pub received: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub fills: u64,
    pub cancelled: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct LatencySummary {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
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
    /// While a call phase is open: the indicative auction price and volume.
    pub indicative: Option<(Price, Qty)>,
    /// The latest auction's price and volume.
    pub last_auction: Option<(Price, Qty)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Encode, Decode)]
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
    /// The trading phase and the exchange clock (ns since the Unix epoch).
    pub phase: Phase,
    pub exchange_time: Timestamp,
    /// The schedule the manager runs (`continuous`, or `hose` with its day length).
    pub schedule: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct TradeTick {
    pub uptime_ms: u64,
    pub security: SecurityId,
    pub price: Price,
    pub qty: Qty,
    pub buy: OrderId,
    pub sell: OrderId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum LogKind {
    NodeJoined,
    NodeLost,
    ShardMoved,
    Reject,
    Info,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct LogEntry {
    pub uptime_ms: u64,
    pub kind: LogKind,
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use matching::{BrokerId, OrderId, Phase, RestingKind};

    fn image(bids: u64, asks: u64) -> BookImage {
        let order = |id: u64| RestingOrder {
            id: OrderId(id),
            broker: BrokerId(1),
            qty: 100 * id,
            kind: RestingKind::Limit,
            price: 10_000 + id as i64,
        };
        BookImage {
            security: SecurityId(3),
            phase: Phase::Continuous,
            reference: 10_000,
            last_trade: Some(10_050),
            bids: (1..=bids).map(order).collect(),
            asks: (bids + 1..=bids + asks).map(order).collect(),
        }
    }

    /// Feeds every part; the assembled image at the last one.
    fn assemble(
        parts: Vec<ImagePart>,
        max_orders: usize,
    ) -> Result<(u64, BookImage), ImagePartError> {
        let mut assembly = ImageAssembly::default();
        let n = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            let done = assembly.push(part, max_orders)?;
            assert_eq!(
                done.is_some(),
                i + 1 == n,
                "complete exactly at the last part"
            );
            if let Some(done) = done {
                assert!(!assembly.in_progress());
                return Ok(done);
            }
            assert!(assembly.in_progress());
        }
        unreachable!("the last part completes the image")
    }

    #[test]
    fn split_parts_assemble_to_the_image() {
        for (bids, asks, per_part) in [(0, 0, 4), (3, 2, 100), (7, 5, 3), (0, 9, 2), (6, 0, 6)] {
            let img = image(bids, asks);
            let parts = ImagePart::split(&img, 42, per_part);
            assert!(parts
                .iter()
                .all(|p| p.bids.len() + p.asks.len() <= per_part));
            let total = (bids + asks) as usize;
            assert_eq!(
                assemble(parts, total),
                Ok((42, img)),
                "{bids}/{asks} by {per_part}"
            );
        }
    }

    #[test]
    fn a_bad_part_is_refused_and_the_assembly_starts_over() {
        let img = image(4, 4);
        // More orders than the book holds, in the first part or over several.
        assert_eq!(
            assemble(ImagePart::split(&img, 1, 100), 7),
            Err(ImagePartError::TooLarge(7))
        );
        assert_eq!(
            assemble(ImagePart::split(&img, 1, 3), 7),
            Err(ImagePartError::TooLarge(7))
        );
        // Another seq, or another book, inside an image.
        let mut parts = ImagePart::split(&img, 1, 3);
        parts[1].seq = 2;
        assert!(matches!(
            assemble(parts, 8),
            Err(ImagePartError::Interleaved { got_seq: 2, .. })
        ));
        let mut parts = ImagePart::split(&img, 1, 3);
        parts[2].reference += 1;
        assert_eq!(assemble(parts, 8), Err(ImagePartError::HeaderChanged));
        // After a refusal the next image assembles from scratch.
        let mut assembly = ImageAssembly::default();
        let mut parts = ImagePart::split(&img, 1, 3).into_iter();
        assembly.push(parts.next().unwrap(), 8).unwrap();
        let mut stray = parts.next().unwrap();
        stray.security = SecurityId(4);
        assert!(assembly.push(stray, 8).is_err());
        assert!(!assembly.in_progress());
        let mut done = None;
        for part in ImagePart::split(&img, 5, 3) {
            done = assembly.push(part, 8).unwrap();
        }
        assert_eq!(done, Some((5, img)));
    }
}
