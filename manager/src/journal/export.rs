//! `manager journal export --csv`: the journal and tape as orders.csv and trades.csv in the
//! replay formats of `matching::stream`.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use matching::stream::{write_orders, Action, OrderRow, TRADES_HEADER};
use matching::{Command, SecurityId, SecurityTable};
use rustc_hash::FxHashMap;

use super::{io_err, read_orders, read_trades, JournalError};

/// Code written for [`SecurityId::UNKNOWN`] (an unlisted code the gateway let through to be
/// rejected); replaying it is rejected again as unknown.
const UNKNOWN_CODE: &str = "?";

fn code(securities: &SecurityTable, id: SecurityId) -> Result<&str, JournalError> {
    if id == SecurityId::UNKNOWN {
        return Ok(UNKNOWN_CODE);
    }
    securities
        .code(id)
        .ok_or(JournalError::UnknownSecurity(id.0))
}

/// Writes `orders.csv` and `trades.csv` in the replay formats into `out_dir` (created if
/// missing). Reads both logs without modifying them; a torn tail is left out.
pub fn export_csv(
    orders_dir: &Path,
    trades_dir: &Path,
    securities: &SecurityTable,
    out_dir: &Path,
) -> Result<(), JournalError> {
    let rec = read_orders(orders_dir)?;
    let names: FxHashMap<u32, &str> = rec
        .brokers
        .iter()
        .map(|(id, n)| (id.0, n.as_str()))
        .collect();
    for name in names.values() {
        if name.is_empty() || name.contains([',', '"', '\n', '\r']) {
            return Err(JournalError::UnexportableBroker(name.to_string()));
        }
    }
    let mut rows = Vec::with_capacity(rec.orders.len());
    for (_, cmd) in &rec.orders {
        let broker = cmd.broker().map_or(0, |b| b.0);
        let broker = names
            .get(&broker)
            .ok_or(JournalError::UnknownBroker(broker))?;
        let security = code(securities, cmd.security().unwrap_or(SecurityId::UNKNOWN))?.to_owned();
        rows.push(match cmd {
            Command::New(o) => OrderRow {
                action: Action::New,
                order_id: o.id.0,
                broker: broker.to_string(),
                security,
                side: Some(o.side),
                kind: Some(o.kind),
                price: o.price,
                qty: o.qty,
                phase: None,
            },
            Command::Cancel(c) => OrderRow {
                action: Action::Cancel,
                order_id: c.id.0,
                broker: broker.to_string(),
                security,
                side: None,
                kind: None,
                price: 0,
                qty: 0,
                phase: None,
            },
            // Journal v1 never stores these.
            Command::Amend(_) | Command::Phase(_) => continue,
        });
    }
    let orders_csv = write_orders(&rows);
    drop(rows);

    let mut trades = read_trades(trades_dir)?;
    // Taped in arrival order; the replay format lists trades in (seq, fill) order.
    trades.sort_by_key(|(seq, fill_index, _)| (*seq, *fill_index));
    let mut trades_csv = String::with_capacity(trades.len() * 40 + TRADES_HEADER.len() + 1);
    trades_csv.push_str(TRADES_HEADER);
    trades_csv.push('\n');
    for (_, _, f) in &trades {
        let _ = writeln!(
            trades_csv,
            "{},{},{},{},{},{}",
            code(securities, f.security)?,
            f.price,
            f.qty,
            f.buy.0,
            f.sell.0,
            f.aggressor.as_str()
        );
    }

    fs::create_dir_all(out_dir).map_err(|e| io_err(out_dir, e))?;
    for (name, text) in [("orders.csv", orders_csv), ("trades.csv", trades_csv)] {
        let path = out_dir.join(name);
        fs::write(&path, text).map_err(|e| io_err(&path, e))?;
    }
    Ok(())
}
