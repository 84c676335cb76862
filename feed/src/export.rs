//! The trades CSV a recorder writes beside the LOBSTER files.

use std::io::{self, Write};

use matching::Timestamp;

use crate::message::Trade;

/// Header of the trades CSV.
pub const TRADES_HEADER: &str =
    "time,security,trade_seq,trade_index,price,qty,aggressor,buy_order,sell_order";

/// Writes one trades-CSV row: exchange time (ns since the epoch), the security code, the trade
/// id, price, quantity, aggressor (`BUY`, `SELL` or `AUCTION`) and the resting order ids the
/// feed published (empty when the view carries none, e.g. the aggressor's side).
pub fn write_trade_row(
    w: &mut impl Write,
    time: Timestamp,
    code: &str,
    t: &Trade,
) -> io::Result<()> {
    let id = |o: Option<matching::OrderId>| o.map(|o| o.0.to_string()).unwrap_or_default();
    writeln!(
        w,
        "{time},{code},{},{},{},{},{},{},{}",
        t.id.seq,
        t.id.index,
        t.price,
        t.qty,
        t.aggressor.as_str(),
        id(t.buy),
        id(t.sell)
    )
}
