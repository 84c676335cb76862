//! Plain value types shared by the engine, the gateway and the stream formats.
//!
//! The contract of one command's events, in this order:
//! - NEW: `Accepted` or `Rejected`; every `Fill`; then `Rested` (the order, or its remainder,
//!   now rests) or `Cancelled` (an unfilled remainder of MP/MTL/IOC/FOK is killed); `Totals`.
//! - CANCEL: `Cancelled` (reason `Requested`) or `Rejected`; `Totals`.
//! - AMEND: `Amended` or `Rejected`. An amend that keeps priority changes the order in place; one
//!   that loses it takes the order out of its level, then it trades like a new arrival (`Fill`s,
//!   the order the aggressor) and its remainder comes back with `Rested`. `Totals` last.
//! - PHASE: per open book, in security-code byte order: leaving ATO or ATC, the auction's
//!   `Fill`s (aggressor [`Aggressor::Auction`]), `Auction` (only when it traded), `Cancelled`
//!   (reason `Unfilled`) for the ATO/ATC orders left; entering CLOSED, `Cancelled` (reason
//!   `Expired`) for every resting order and `Reference` (the next day's reference price); then
//!   `Totals` of every book. A PHASE naming the current phase produces no event at all.

#[cfg(feature = "serde")]
use bincode::{Decode, Encode};
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

/// Price in the smallest currency unit (VND). Market-type orders (MP, MTL, ATO, ATC) carry 0.
pub type Price = i64;
/// Quantity in shares.
pub type Qty = u64;
/// Exchange time: nanoseconds since the Unix epoch (UTC) on the exchange's clock (the manager's
/// schedule). The engine never reads it; it travels with each sequenced command.
pub type Timestamp = i64;

/// Largest quantity one order may carry (an engineering limit far above any real order): with
/// it no sum of resting quantities can overflow a [`Qty`].
pub const MAX_ORDER_QTY: Qty = 1_000_000_000;

/// Client-chosen order identifier, unique across the whole exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize, Encode, Decode))]
pub struct OrderId(pub u64);

/// Interned broker identity (index into the broker registry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize, Encode, Decode))]
pub struct BrokerId(pub u32);

/// Interned security (index into the [`crate::SecurityTable`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize, Encode, Decode))]
pub struct SecurityId(pub u32);

impl SecurityId {
    /// Stands for a security code that is not listed; always rejected as unknown.
    pub const UNKNOWN: SecurityId = SecurityId(u32::MAX);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize, Encode, Decode))]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
    /// The CSV spelling: `BUY` or `SELL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize, Encode, Decode))]
pub enum OrderType {
    /// LO: limit order; the unfilled remainder rests in the book.
    Limit,
    /// MP: market order; takes what is there, the remainder is cancelled. Price must be 0.
    Market,
    /// MTL: market-to-limit; takes like MP, a partly filled remainder rests as a limit order at
    /// the price of its last fill; nothing filled = cancelled. Price must be 0.
    Mtl,
    /// Immediate-or-cancel limit order.
    Ioc,
    /// Fill-or-kill limit order: fills completely at once or is cancelled with no trade.
    Fok,
    /// At-the-opening: a market order for the opening call auction. Price must be 0.
    Ato,
    /// At-the-close: a market order for the closing call auction. Price must be 0.
    Atc,
}

impl OrderType {
    /// Every order type, in wire/journal code order.
    pub const ALL: [OrderType; 7] = [
        OrderType::Limit,
        OrderType::Market,
        OrderType::Mtl,
        OrderType::Ioc,
        OrderType::Fok,
        OrderType::Ato,
        OrderType::Atc,
    ];

    /// The CSV spelling: `LO`, `MP`, `MTL`, `IOC`, `FOK`, `ATO` or `ATC`.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::Limit => "LO",
            OrderType::Market => "MP",
            OrderType::Mtl => "MTL",
            OrderType::Ioc => "IOC",
            OrderType::Fok => "FOK",
            OrderType::Ato => "ATO",
            OrderType::Atc => "ATC",
        }
    }

    /// Parses the CSV spelling.
    pub fn parse(s: &str) -> Option<OrderType> {
        OrderType::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Orders that carry no price (price field must be 0): MP, MTL, ATO, ATC.
    pub fn is_priceless(self) -> bool {
        matches!(
            self,
            OrderType::Market | OrderType::Mtl | OrderType::Ato | OrderType::Atc
        )
    }

    /// ATO or ATC: a call-auction market order.
    pub fn is_auction(self) -> bool {
        matches!(self, OrderType::Ato | OrderType::Atc)
    }
}

/// A phase of the trading day (DESIGN.md, "The trading day").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize, Encode, Decode))]
pub enum Phase {
    /// Opening call auction: LO and ATO rest, nothing matches.
    Ato,
    /// Continuous matching (a stream starts here).
    #[default]
    Continuous,
    /// Lunch break: only cancels.
    Break,
    /// Closing call auction: LO and ATC rest, nothing matches.
    Atc,
    /// After the close: nothing is accepted; entering it expires every resting order.
    Closed,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Ato,
        Phase::Continuous,
        Phase::Break,
        Phase::Atc,
        Phase::Closed,
    ];

    /// The CSV spelling: `ATO`, `CONTINUOUS`, `BREAK`, `ATC` or `CLOSED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Ato => "ATO",
            Phase::Continuous => "CONTINUOUS",
            Phase::Break => "BREAK",
            Phase::Atc => "ATC",
            Phase::Closed => "CLOSED",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// ATO or ATC: orders rest without matching and leaving the phase uncrosses the book.
    pub fn is_call(self) -> bool {
        matches!(self, Phase::Ato | Phase::Atc)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize, Encode, Decode))]
pub struct NewOrder {
    pub id: OrderId,
    pub broker: BrokerId,
    pub security: SecurityId,
    pub side: Side,
    pub kind: OrderType,
    pub price: Price,
    pub qty: Qty,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize, Encode, Decode))]
pub struct CancelOrder {
    /// The order to cancel.
    pub id: OrderId,
    /// Who asks: must be the order's owner.
    pub broker: BrokerId,
    pub security: SecurityId,
}

/// Cancel/replace of a resting limit order (DESIGN.md, "Amend").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize, Encode, Decode))]
pub struct AmendOrder {
    /// The order to amend; it keeps its id.
    pub id: OrderId,
    /// Who asks: must be the order's owner.
    pub broker: BrokerId,
    pub security: SecurityId,
    /// The new limit price.
    pub price: Price,
    /// The new open (unfilled) quantity.
    pub qty: Qty,
}

/// One incoming instruction, in sequence order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize, Encode, Decode))]
pub enum Command {
    New(NewOrder),
    Cancel(CancelOrder),
    Amend(AmendOrder),
    /// A market-wide phase change: applies to every book.
    Phase(Phase),
}

impl Command {
    /// The order id the command is about (the new order, or the order to cancel or amend);
    /// `None` for a phase change.
    pub fn order_id(&self) -> Option<OrderId> {
        match self {
            Command::New(o) => Some(o.id),
            Command::Cancel(c) => Some(c.id),
            Command::Amend(a) => Some(a.id),
            Command::Phase(_) => None,
        }
    }
    /// The one security the command is for; `None` for a (market-wide) phase change.
    pub fn security(&self) -> Option<SecurityId> {
        match self {
            Command::New(o) => Some(o.security),
            Command::Cancel(c) => Some(c.security),
            Command::Amend(a) => Some(a.security),
            Command::Phase(_) => None,
        }
    }
    /// Who sent the command; `None` for a phase change (the exchange's own).
    pub fn broker(&self) -> Option<BrokerId> {
        match self {
            Command::New(o) => Some(o.broker),
            Command::Cancel(c) => Some(c.broker),
            Command::Amend(a) => Some(a.broker),
            Command::Phase(_) => None,
        }
    }
    /// Replaces the acting broker (a broker session can only act for itself).
    pub fn set_broker(&mut self, broker: BrokerId) {
        match self {
            Command::New(o) => o.broker = broker,
            Command::Cancel(c) => c.broker = broker,
            Command::Amend(a) => a.broker = broker,
            Command::Phase(_) => {}
        }
    }
}

/// Why an instruction was refused. The `code()` strings are the `reason` column of rejects CSV.
///
/// Order of checks (the first failing one is reported):
/// - NEW: `unknown_security`, `duplicate_order_id`, then the rules (`zero_quantity`,
///   `quantity_too_large`, `odd_lot`, `market_order_with_price` or `non_positive_price`,
///   `off_tick`, `outside_band`), then the phase (`phase_forbids`, `market_closed`).
/// - CANCEL: `unknown_order`, `not_owner`, `order_not_live`, then the phase.
/// - AMEND: `unknown_order`, `not_owner`, `order_not_live`, the rules for the new price and
///   quantity, then the phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize, Encode, Decode))]
pub enum RejectReason {
    #[error("quantity must be positive")]
    ZeroQuantity,
    #[error("quantity exceeds the maximum order quantity")]
    QuantityTooLarge,
    #[error("quantity is not a multiple of the board lot")]
    OddLot,
    #[error("price must be positive for a limit order")]
    NonPositivePrice,
    #[error("market, MTL, ATO and ATC orders must carry price 0")]
    MarketOrderWithPrice,
    #[error("price is not on the tick")]
    OffTick,
    #[error("price is outside the daily band")]
    OutsideBand,
    #[error("security is not listed")]
    UnknownSecurity,
    #[error("order id already used")]
    DuplicateOrderId,
    #[error("no such order")]
    UnknownOrder,
    #[error("order belongs to another broker")]
    NotOwner,
    #[error("order is no longer live (filled, cancelled or expired)")]
    OrderNotLive,
    #[error("the current trading phase does not accept this instruction")]
    PhaseForbids,
    #[error("the market is closed")]
    MarketClosed,
}

impl RejectReason {
    /// Every reason, for tests and documentation.
    pub const ALL: [RejectReason; 14] = [
        RejectReason::ZeroQuantity,
        RejectReason::QuantityTooLarge,
        RejectReason::OddLot,
        RejectReason::NonPositivePrice,
        RejectReason::MarketOrderWithPrice,
        RejectReason::OffTick,
        RejectReason::OutsideBand,
        RejectReason::UnknownSecurity,
        RejectReason::DuplicateOrderId,
        RejectReason::UnknownOrder,
        RejectReason::NotOwner,
        RejectReason::OrderNotLive,
        RejectReason::PhaseForbids,
        RejectReason::MarketClosed,
    ];

    /// Stable machine-readable code, written in rejects CSV.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::ZeroQuantity => "zero_quantity",
            RejectReason::QuantityTooLarge => "quantity_too_large",
            RejectReason::OddLot => "odd_lot",
            RejectReason::NonPositivePrice => "non_positive_price",
            RejectReason::MarketOrderWithPrice => "market_order_with_price",
            RejectReason::OffTick => "off_tick",
            RejectReason::OutsideBand => "outside_band",
            RejectReason::UnknownSecurity => "unknown_security",
            RejectReason::DuplicateOrderId => "duplicate_order_id",
            RejectReason::UnknownOrder => "unknown_order",
            RejectReason::NotOwner => "not_owner",
            RejectReason::OrderNotLive => "order_not_live",
            RejectReason::PhaseForbids => "phase_forbids",
            RejectReason::MarketClosed => "market_closed",
        }
    }

    /// Parses a `code()` string.
    pub fn parse(s: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.code() == s)
    }
}

/// Who took liquidity in a trade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize, Encode, Decode))]
pub enum Aggressor {
    Buy,
    Sell,
    /// A call-auction trade: both orders were resting.
    Auction,
}

impl Aggressor {
    /// The CSV spelling: `BUY`, `SELL` or `AUCTION`.
    pub fn as_str(self) -> &'static str {
        match self {
            Aggressor::Buy => "BUY",
            Aggressor::Sell => "SELL",
            Aggressor::Auction => "AUCTION",
        }
    }

    /// The aggressing side of a continuous trade; `None` for an auction trade.
    pub fn side(self) -> Option<Side> {
        match self {
            Aggressor::Buy => Some(Side::Buy),
            Aggressor::Sell => Some(Side::Sell),
            Aggressor::Auction => None,
        }
    }
}

impl From<Side> for Aggressor {
    fn from(side: Side) -> Self {
        match side {
            Side::Buy => Aggressor::Buy,
            Side::Sell => Aggressor::Sell,
        }
    }
}

/// One execution. A continuous trade is at the resting order's price; an auction trade at the
/// auction price.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize, Encode, Decode))]
pub struct Fill {
    pub security: SecurityId,
    pub price: Price,
    pub qty: Qty,
    pub buy: OrderId,
    pub sell: OrderId,
    pub buy_broker: BrokerId,
    pub sell_broker: BrokerId,
    pub aggressor: Aggressor,
}

impl Fill {
    /// The resting (passive) orders of the trade with their brokers: one for a continuous
    /// trade, both for an auction trade.
    pub fn passive(&self) -> impl Iterator<Item = (Side, OrderId, BrokerId)> {
        let buy = (Side::Buy, self.buy, self.buy_broker);
        let sell = (Side::Sell, self.sell, self.sell_broker);
        let (a, b) = match self.aggressor {
            Aggressor::Buy => (Some(sell), None),
            Aggressor::Sell => (Some(buy), None),
            Aggressor::Auction => (Some(buy), Some(sell)),
        };
        a.into_iter().chain(b)
    }
}

/// Why resting or incoming quantity left without trading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize, Encode, Decode))]
pub enum CancelReason {
    /// A CANCEL command by the owner.
    Requested,
    /// What an MP, MTL, IOC or FOK order could not fill at once, or an ATO/ATC order left
    /// unfilled by its auction.
    Unfilled,
    /// Still resting when the market closed.
    Expired,
}

/// What the engine says about one incoming command (the order of events per command is
/// described in the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize, Encode, Decode))]
pub enum Event {
    Accepted {
        id: OrderId,
    },
    Rejected {
        id: OrderId,
        reason: RejectReason,
    },
    Fill(Fill),
    /// Order `id` (or its remainder) now rests at the back of its price level with `qty` open.
    /// `price` is 0 for an ATO/ATC order resting in its call phase.
    Rested {
        id: OrderId,
        security: SecurityId,
        side: Side,
        price: Price,
        qty: Qty,
    },
    /// Order `id` was amended to `price` with `qty` open. `priority_kept`: reduced in place;
    /// otherwise it left its level and re-enters (its `Fill`s and `Rested` follow).
    Amended {
        id: OrderId,
        security: SecurityId,
        price: Price,
        qty: Qty,
        priority_kept: bool,
    },
    /// `qty` shares of order `id` were removed without trading.
    Cancelled {
        id: OrderId,
        qty: Qty,
        reason: CancelReason,
    },
    /// A call auction uncrossed `volume` shares at `price`.
    Auction {
        security: SecurityId,
        price: Price,
        volume: Qty,
    },
    /// Entering CLOSED: the security's reference price for the next day (its closing price if it
    /// traded that day, else unchanged). The daily band follows it.
    Reference {
        security: SecurityId,
        price: Price,
    },
    /// Outstanding resting quantity on each side of the book after the command.
    Totals {
        security: SecurityId,
        bid_total: Qty,
        ask_total: Qty,
    },
}

impl Event {
    /// The security an event is about, when it names one.
    pub fn security(&self) -> Option<SecurityId> {
        match self {
            Event::Fill(f) => Some(f.security),
            Event::Rested { security, .. }
            | Event::Amended { security, .. }
            | Event::Auction { security, .. }
            | Event::Reference { security, .. }
            | Event::Totals { security, .. } => Some(*security),
            Event::Accepted { .. } | Event::Rejected { .. } | Event::Cancelled { .. } => None,
        }
    }
}
