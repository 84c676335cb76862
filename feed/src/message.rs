//! What travels on the feed: [`Message`]s (serde, small fixed-size bodies except snapshots) and
//! what a subscriber asks for ([`Subscription`]).
//!
//! Prices and quantities are the engine's integers. A price of 0 on an order or a level means
//! "at market": resting ATO/ATC orders during their call phase, always first in priority.
//!
//! Order ids on the feed are PUBLIC ids, never the broker-chosen order ids (a broker's id
//! scheme could identify it): an order is published under the sequence number of the command
//! that first rested it, kept across amends that cost it its priority. Deterministic, so the
//! same on every replay; a broker learns its own order's sequence number from its `Accepted`.

use bincode::{Decode, Encode};
use matching::{Aggressor, OrderId, Phase, Price, Qty, SecurityId, Side, Timestamp};
use serde::{Deserialize, Serialize};

/// Identity of a trade, the same on every replay: the sequence number of the command that made
/// it and the fill's position (from 0) among that command's fills in this security.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Encode, Decode,
)]
pub struct TradeId {
    pub seq: u64,
    pub index: u32,
}

/// Why an order left the book without trading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
pub enum DeleteReason {
    /// Cancelled by its owner.
    Cancelled,
    /// An ATO/ATC order its auction left unfilled.
    Unfilled,
    /// Still resting when the market closed.
    Expired,
    /// An amend cost it its priority: it left its level; its trades and its re-`Add` (same id,
    /// back of the new level) follow in the same command.
    Amended,
}

/// One aggregated price level. `qty == 0` in a [`Body::Level`] update means the level is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
pub struct LevelInfo {
    pub price: Price,
    pub qty: Qty,
    /// Number of orders resting at the level.
    pub orders: u32,
}

/// One resting order as a snapshot lists it (side given by the list it is in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
pub struct OrderInfo {
    pub id: OrderId,
    pub price: Price,
    pub qty: Qty,
}

/// A trade as the public sees it: no broker. `buy`/`sell` name the RESTING orders it executed
/// (ids already public on L3): one side for a continuous trade, both for an auction trade. They
/// are present on L3 views only; L1/L2 views carry `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Trade {
    pub security: SecurityId,
    pub id: TradeId,
    pub price: Price,
    pub qty: Qty,
    pub aggressor: Aggressor,
    pub buy: Option<OrderId>,
    pub sell: Option<OrderId>,
}

/// A call auction's (actual or indicative) uncross.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
pub struct Uncross {
    pub price: Price,
    pub volume: Qty,
}

/// The last trade of a security, as snapshots report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct LastTrade {
    pub id: TradeId,
    pub price: Price,
    pub qty: Qty,
    pub time: Timestamp,
}

/// A book as a snapshot carries it, best first on each side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum BookImage {
    /// L1 (one limit level per side at most) or L2 (up to the subscribed number of limit
    /// levels), each side led by its at-market level (price 0) when orders rest at market.
    Levels {
        bids: Vec<LevelInfo>,
        asks: Vec<LevelInfo>,
    },
    /// L3: every resting order in priority order (best level first, FIFO within a level).
    Orders {
        bids: Vec<OrderInfo>,
        asks: Vec<OrderInfo>,
    },
}

/// Everything a subscriber needs to start (or restart) one security.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Snapshot {
    pub security: SecurityId,
    pub phase: Phase,
    /// The reference price the daily band is computed from.
    pub reference: Price,
    pub last_trade: Option<LastTrade>,
    /// During a call phase, the indicative uncross (when the feed computes one).
    pub indicative: Option<Uncross>,
    pub book: BookImage,
}

/// The body of a feed message. Every body except the snapshot pair names its security.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum Body {
    /// L3: order `id` now rests at the back of its level (`price` 0: at market).
    Add {
        security: SecurityId,
        id: OrderId,
        side: Side,
        price: Price,
        qty: Qty,
    },
    /// L3: order `id` was reduced in place (priority kept) to `qty` open.
    Reduce {
        security: SecurityId,
        id: OrderId,
        qty: Qty,
    },
    /// L3: order `id` left the book without trading.
    Delete {
        security: SecurityId,
        id: OrderId,
        reason: DeleteReason,
    },
    /// Every view: one execution. On L3 it also executes the named resting orders.
    Trade(Trade),
    /// L2: the level at `price` on `side` now is `level` (`qty` 0: gone, or out of the window).
    Level {
        security: SecurityId,
        side: Side,
        level: LevelInfo,
    },
    /// L1: the best limit level of each side after a change (orders at market, during a
    /// call phase, come as a `Level` update at price 0).
    Quote {
        security: SecurityId,
        bid: Option<LevelInfo>,
        ask: Option<LevelInfo>,
    },
    /// The security entered `phase`.
    Phase {
        security: SecurityId,
        phase: Phase,
    },
    /// A call auction uncrossed (sent after its trades).
    Auction {
        security: SecurityId,
        price: Price,
        volume: Qty,
    },
    /// During a call phase: the uncross if the auction ran now (`None`: nothing would trade).
    Indicative {
        security: SecurityId,
        uncross: Option<Uncross>,
    },
    /// The security's reference price changed (entering CLOSED: the next day's).
    Reference {
        security: SecurityId,
        price: Price,
    },
    /// A (re)synchronisation starts: `securities` snapshots follow, taken at canonical feed
    /// sequence `feed_seq`. A subscriber accepts it whatever its sequence number and drops any
    /// book it held.
    SnapshotBegin {
        feed_seq: u64,
        securities: u32,
    },
    Snapshot(Box<Snapshot>),
    /// Sent when the view has nothing queued: its `seq` is the view's LAST sequence number
    /// (not a new one), so a subscriber that lost the tail of the stream notices.
    Heartbeat,
}

impl Body {
    /// The security the body is about; `None` for `SnapshotBegin` and `Heartbeat`.
    pub fn security(&self) -> Option<SecurityId> {
        match self {
            Body::Add { security, .. }
            | Body::Reduce { security, .. }
            | Body::Delete { security, .. }
            | Body::Level { security, .. }
            | Body::Quote { security, .. }
            | Body::Phase { security, .. }
            | Body::Auction { security, .. }
            | Body::Indicative { security, .. }
            | Body::Reference { security, .. } => Some(*security),
            Body::Trade(t) => Some(t.security),
            Body::Snapshot(s) => Some(s.security),
            Body::SnapshotBegin { .. } | Body::Heartbeat => None,
        }
    }

    /// Part of a resynchronisation (`SnapshotBegin` or `Snapshot`).
    pub fn is_snapshot(&self) -> bool {
        matches!(self, Body::Snapshot(_) | Body::SnapshotBegin { .. })
    }
}

/// One feed message: a sequence number (the canonical feed's, or a subscriber view's own, gap
/// free from 1), the exchange time of the command that caused it, and the body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Message {
    pub seq: u64,
    pub time: Timestamp,
    pub body: Body,
}

/// Largest L2 window a subscriber may ask for.
pub const MAX_L2_LEVELS: u32 = 1_000;

/// How much of each book a subscriber wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
pub enum FeedLevel {
    /// Top of book: best bid and ask (price, size, orders) and the quantity at market, trades,
    /// phases, auctions.
    L1,
    /// The best `levels` limit levels per side and the quantity at market, plus everything L1
    /// has.
    L2 { levels: u32 },
    /// Order by order (no broker), trades with the resting order ids, everything else.
    L3,
}

impl FeedLevel {
    /// Number of limit levels per side of the window (`None` for L3: the whole book); the
    /// at-market level comes on top.
    pub fn window(self) -> Option<usize> {
        match self {
            FeedLevel::L1 => Some(1),
            FeedLevel::L2 { levels } => Some(levels as usize),
            FeedLevel::L3 => None,
        }
    }

    /// Names of the view kinds, in [`FeedLevel::kind_index`] order.
    pub const KINDS: [&'static str; 3] = ["L1", "L2", "L3"];

    /// 0 for L1, 1 for L2 (whatever its depth), 2 for L3: where counters per kind go.
    pub fn kind_index(self) -> usize {
        match self {
            FeedLevel::L1 => 0,
            FeedLevel::L2 { .. } => 1,
            FeedLevel::L3 => 2,
        }
    }
}

/// Which securities a subscriber wants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum Securities {
    All,
    Only(Vec<SecurityId>),
}

/// A subscription request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Subscription {
    pub level: FeedLevel,
    pub securities: Securities,
}

/// Why a subscription was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    #[error("an L2 subscription needs 1 to {MAX_L2_LEVELS} levels, not {0}")]
    BadLevels(u32),
    #[error("security {0:?} is not listed")]
    UnknownSecurity(SecurityId),
    #[error("the list of securities is empty")]
    NoSecurities,
}
