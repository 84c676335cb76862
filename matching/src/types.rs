//! Plain value types shared by the engine, the gateway and the stream formats.

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

/// Price in the smallest currency unit (VND). Market orders carry 0.
pub type Price = i64;
/// Quantity in shares.
pub type Qty = u64;

/// Client-chosen order identifier, unique across the whole exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct OrderId(pub u64);

/// Interned broker identity (index into the broker registry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct BrokerId(pub u32);

/// Interned security (index into the [`crate::SecurityTable`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct SecurityId(pub u32);

impl SecurityId {
    /// Stands for a security code that is not listed; always rejected as unknown.
    pub const UNKNOWN: SecurityId = SecurityId(u32::MAX);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
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
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum OrderType {
    /// LO: limit order; the unfilled remainder rests in the book.
    Limit,
    /// MP: market order; takes what is there, the remainder is cancelled. Price must be 0.
    Market,
    /// Immediate-or-cancel limit order.
    Ioc,
    /// Fill-or-kill limit order: fills completely at once or is cancelled with no trade.
    Fok,
}

impl OrderType {
    /// The CSV spelling: `LO`, `MP`, `IOC` or `FOK`.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::Limit => "LO",
            OrderType::Market => "MP",
            OrderType::Ioc => "IOC",
            OrderType::Fok => "FOK",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
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
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct CancelOrder {
    /// The order to cancel.
    pub id: OrderId,
    /// Who asks: must be the order's owner.
    pub broker: BrokerId,
    pub security: SecurityId,
}

/// One incoming instruction, in sequence order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum Command {
    New(NewOrder),
    Cancel(CancelOrder),
}

impl Command {
    /// The order id the command is about (the new order, or the order to cancel).
    pub fn order_id(&self) -> OrderId {
        match self {
            Command::New(o) => o.id,
            Command::Cancel(c) => c.id,
        }
    }
    pub fn security(&self) -> SecurityId {
        match self {
            Command::New(o) => o.security,
            Command::Cancel(c) => c.security,
        }
    }
    pub fn broker(&self) -> BrokerId {
        match self {
            Command::New(o) => o.broker,
            Command::Cancel(c) => c.broker,
        }
    }
}

/// Why an instruction was refused. The `code()` strings are the `reason` column of rejects CSV.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum RejectReason {
    #[error("quantity must be positive")]
    ZeroQuantity,
    #[error("quantity is not a multiple of the board lot")]
    OddLot,
    #[error("price must be positive for a limit order")]
    NonPositivePrice,
    #[error("market order must carry price 0")]
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
    #[error("order is no longer live (filled or cancelled)")]
    OrderNotLive,
}

impl RejectReason {
    /// Stable machine-readable code, written in rejects CSV.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::ZeroQuantity => "zero_quantity",
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
        }
    }
}

/// One execution. The price is always the resting order's price.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct Fill {
    pub security: SecurityId,
    pub price: Price,
    pub qty: Qty,
    pub buy: OrderId,
    pub sell: OrderId,
    pub buy_broker: BrokerId,
    pub sell_broker: BrokerId,
    pub aggressor: Side,
}

/// What the engine says about one incoming command, in this order:
/// `Accepted` or `Rejected`; then every `Fill`; then `Cancelled` for a killed remainder
/// (MP/IOC/FOK) or for a successful CANCEL; then `Totals` for the touched book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum Event {
    Accepted {
        id: OrderId,
    },
    Rejected {
        id: OrderId,
        reason: RejectReason,
    },
    Fill(Fill),
    /// `qty` shares of order `id` were removed without trading.
    Cancelled {
        id: OrderId,
        qty: Qty,
    },
    /// Outstanding resting quantity on each side of the book after the command.
    Totals {
        security: SecurityId,
        bid_total: Qty,
        ask_total: Qty,
    },
}
