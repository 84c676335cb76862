//! The trades CSV a recorder writes beside the LOBSTER files, and the final-books CSV that
//! compares a subscriber's books with the engine's (the same rows from both sides).

use std::io::{self, Write};

use matching::book::Depth;
use matching::{Qty, Timestamp};

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

/// Header of the books CSV.
pub const BOOKS_HEADER: &str = "security,row,price,qty";

/// Writes one security's book as books-CSV rows: every limit level, best first (`bid` rows,
/// then `ask` rows: `depth` as [`matching::Engine::depth`] gives it), then `bid_total` and
/// `ask_total` (open quantity, orders at market included, as [`matching::Engine::totals`]) with
/// an empty price. Equal books give equal rows, whoever writes them.
pub fn write_book_rows(
    w: &mut impl Write,
    code: &str,
    depth: &Depth,
    (bid_total, ask_total): (Qty, Qty),
) -> io::Result<()> {
    for (row, levels) in [("bid", &depth.0), ("ask", &depth.1)] {
        for (price, qty) in levels {
            writeln!(w, "{code},{row},{price},{qty}")?;
        }
    }
    writeln!(w, "{code},bid_total,,{bid_total}")?;
    writeln!(w, "{code},ask_total,,{ask_total}")
}
