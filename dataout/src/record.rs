//! The input rows: what the journal reader hands over. Names are borrowed (from the security
//! table and the broker registry), so feeding a million rows allocates nothing per row.

use matching::{Aggressor, Command, Fill, Price, Qty, Timestamp, MAX_ORDER_QTY};

use crate::error::DataError;

/// One trade of the tape, in tape order: by `seq`, then `fill`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TradeRecord<'a> {
    /// Exchange time of the command that traded (ns since the Unix epoch, UTC).
    pub time: Timestamp,
    /// Sequence number of the command that traded (for an auction trade: the PHASE command).
    pub seq: u64,
    /// Index of this fill among the command's fills, from 0.
    pub fill: u32,
    pub security: &'a str,
    pub price: Price,
    pub qty: Qty,
    pub buy_order_id: u64,
    pub sell_order_id: u64,
    pub aggressor: Aggressor,
}

impl<'a> TradeRecord<'a> {
    /// The record of an engine [`Fill`] whose security code is `security`.
    pub fn from_fill(
        time: Timestamp,
        seq: u64,
        fill_index: u32,
        security: &'a str,
        f: &Fill,
    ) -> Self {
        TradeRecord {
            time,
            seq,
            fill: fill_index,
            security,
            price: f.price,
            qty: f.qty,
            buy_order_id: f.buy.0,
            sell_order_id: f.sell.0,
            aggressor: f.aggressor,
        }
    }

    /// Refuses what the engine can never produce, so value sums and bars stay meaningful.
    pub fn validate(&self) -> Result<(), DataError> {
        let problem = if self.price <= 0 {
            "price must be positive"
        } else if self.qty == 0 {
            "qty must be positive"
        } else if self.qty > MAX_ORDER_QTY {
            "qty exceeds the maximum order quantity"
        } else if self.security.is_empty() {
            "security code is empty"
        } else {
            return Ok(());
        };
        Err(DataError::InvalidTrade {
            seq: self.seq,
            fill: self.fill,
            security: self.security.to_owned(),
            problem,
        })
    }
}

/// One sequenced command with its exchange time. `broker` and `security` are the names of the
/// command's broker and security; a PHASE command has neither (pass `""`, they are ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderRecord<'a> {
    /// Exchange time stamped when the command was sequenced (ns since the Unix epoch, UTC).
    pub time: Timestamp,
    pub seq: u64,
    pub command: Command,
    pub broker: &'a str,
    pub security: &'a str,
}
