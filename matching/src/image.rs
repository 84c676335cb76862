//! Book snapshots: the exact state of one book as plain data, so a long-running grid can keep
//! a snapshot instead of a whole history ([`crate::Engine::export_book`] and
//! [`crate::Engine::import_book`]). An imported book behaves exactly like one that processed
//! the history: same phase, reference, anchor and priority order.

#[cfg(feature = "serde")]
use bincode::{Decode, Encode};
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

use crate::types::{BrokerId, OrderId, Phase, Price, Qty, SecurityId};

/// What kind of order rests: a limit order (LO, or the rested part of an MTL) or a call-auction
/// market order, which only rests in its own call phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize, Encode, Decode))]
pub enum RestingKind {
    Limit,
    Ato,
    Atc,
}

/// One resting order of a [`BookImage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize, Encode, Decode))]
pub struct RestingOrder {
    pub id: OrderId,
    pub broker: BrokerId,
    /// Open (unfilled) quantity.
    pub qty: Qty,
    pub kind: RestingKind,
    /// The limit price; 0 for ATO/ATC orders.
    pub price: Price,
}

/// A book's exact state.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize, Encode, Decode))]
pub struct BookImage {
    pub security: SecurityId,
    pub phase: Phase,
    /// Today's reference price (the band is derived from it).
    pub reference: Price,
    /// The price of the last trade since the last CLOSED (the auction anchor), if any.
    pub last_trade: Option<Price>,
    /// Buy orders in priority order: ATO/ATC first (by time), then by descending price, then
    /// by time.
    pub bids: Vec<RestingOrder>,
    /// Sell orders in priority order: ATO/ATC first (by time), then by ascending price, then
    /// by time.
    pub asks: Vec<RestingOrder>,
}

/// Why [`crate::Engine::import_book`] refused an image (the engine is left unchanged).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("security {0:?} is not listed")]
    UnknownSecurity(SecurityId),
    #[error("order {0:?} appears twice in the image")]
    DuplicateOrder(OrderId),
    #[error("order {id:?} already rests in the book of security {other:?}")]
    RestsElsewhere { id: OrderId, other: SecurityId },
    #[error("order {id:?}: quantity {qty} is outside 1..=MAX_ORDER_QTY")]
    BadQuantity { id: OrderId, qty: Qty },
    #[error("order {0:?} is out of priority order")]
    OutOfOrder(OrderId),
    #[error(
        "order {id:?}: a {kind:?} order cannot rest in phase {phase:?} (or must have price 0)"
    )]
    KindOutOfPhase {
        id: OrderId,
        kind: RestingKind,
        phase: Phase,
    },
    #[error("a book cannot hold orders while CLOSED")]
    RestingWhileClosed,
    #[error("best bid {bid} >= best ask {ask} outside a call phase")]
    Crossed { bid: Price, ask: Price },
}
