//! Export of the journal and the tape as `orders.csv` and `trades.csv` in the replay formats,
//! written with RFC 4180 quoting (the `csv` crate) so any broker name survives.

use std::fs;
use std::path::Path;

use matching::{Command, SecurityId, SecurityTable};

use crate::listing::{listing_fingerprint, LISTING_FILE};
use crate::records::{Entry, JournalItem};
use crate::{io_err, JournalError, JournalReader, TapeFill, TapeReader};

/// Code written for [`SecurityId::UNKNOWN`] (a rejected NEW for an unlisted code; the code
/// itself is not journaled). Replaying it is rejected as unknown again.
const UNKNOWN_CODE: &str = "?";

/// What [`export_csv`] writes beyond the replay columns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportOptions {
    /// Append `seq,time,client_ref,reject_reason` to orders.csv (seq empty and the reason set
    /// for a rejected NEW) and `seq,time,fill_index` to trades.csv. Off: exactly the replay
    /// formats.
    pub extra_columns: bool,
}

/// What an export wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Sequenced command rows.
    pub commands: u64,
    /// Rejected NEW rows (written at their place in the stream: replaying the file rejects
    /// them again, for the same reason).
    pub rejected: u64,
    /// Seqs inside GAP records (lost at a recovery; nothing to write for them).
    pub gap_seqs: u64,
    pub trades: u64,
}

fn code(listing: &SecurityTable, id: SecurityId) -> Result<&str, JournalError> {
    if id == SecurityId::UNKNOWN {
        return Ok(UNKNOWN_CODE);
    }
    listing.code(id).ok_or(JournalError::UnknownSecurity(id.0))
}

fn csv_err(path: &Path, e: impl std::fmt::Display) -> JournalError {
    JournalError::Csv {
        path: path.to_owned(),
        detail: e.to_string(),
    }
}

/// Writes `orders.csv` (every journaled command and rejected NEW, in journal order) and
/// `trades.csv` (the tape sorted by seq, then security code, then fill index: the order the
/// replay collector writes) into `out_dir`, created if missing. `listing` must be the one the
/// journal was written with. Reads both logs without modifying them (a torn tail is left
/// out); the orders are streamed, the trades are sorted in memory.
pub fn export_csv(
    journal_dir: &Path,
    tape_dir: &Path,
    listing: &SecurityTable,
    out_dir: &Path,
    options: ExportOptions,
) -> Result<ExportSummary, JournalError> {
    let mut summary = ExportSummary::default();
    let given = listing_fingerprint(listing);
    fs::create_dir_all(out_dir).map_err(|e| io_err(out_dir, e))?;

    let orders_path = out_dir.join("orders.csv");
    let mut w = csv::Writer::from_path(&orders_path).map_err(|e| csv_err(&orders_path, e))?;
    let mut header = vec![
        "action", "order_id", "broker", "security", "side", "type", "price", "qty",
    ];
    if options.extra_columns {
        header.extend(["seq", "time", "client_ref", "reject_reason"]);
    }
    w.write_record(&header)
        .map_err(|e| csv_err(&orders_path, e))?;
    let mut reader = JournalReader::open(journal_dir, 0)?;
    let mut row: Vec<String> = Vec::with_capacity(12);
    while let Some(item) = reader.next() {
        let item = item?;
        if let Some(meta) = reader.meta() {
            if meta.fingerprint != given {
                return Err(JournalError::ListingMismatch {
                    journal: meta.fingerprint,
                    given,
                    copy: journal_dir.join(LISTING_FILE),
                });
            }
        }
        row.clear();
        let broker = |id: matching::BrokerId| {
            reader
                .broker_name(id)
                .map(str::to_owned)
                .ok_or(JournalError::UnknownBroker(id.0))
        };
        // A NEW's cells, sequenced or refused.
        let new_cells = |o: &matching::NewOrder| -> Result<[String; 8], JournalError> {
            Ok([
                "NEW".into(),
                o.id.0.to_string(),
                broker(o.broker)?,
                code(listing, o.security)?.into(),
                o.side.as_str().into(),
                o.kind.as_str().into(),
                o.price.to_string(),
                o.qty.to_string(),
            ])
        };
        let (seq, time, client_ref, reason) = match item {
            JournalItem::Record(r) => {
                let cmd = match r.entry {
                    Entry::Gap { count } => {
                        summary.gap_seqs += count;
                        continue;
                    }
                    Entry::Command(c) => c,
                };
                summary.commands += 1;
                match cmd {
                    Command::New(o) => row.extend(new_cells(&o)?),
                    Command::Cancel(c) => row.extend([
                        "CANCEL".into(),
                        c.id.0.to_string(),
                        broker(c.broker)?,
                        code(listing, c.security)?.into(),
                        String::new(),
                        String::new(),
                        String::new(),
                        String::new(),
                    ]),
                    Command::Amend(a) => row.extend([
                        "AMEND".into(),
                        a.id.0.to_string(),
                        broker(a.broker)?,
                        code(listing, a.security)?.into(),
                        String::new(),
                        String::new(),
                        a.price.to_string(),
                        a.qty.to_string(),
                    ]),
                    Command::Phase(p) => {
                        row.extend(["PHASE".into()]);
                        row.extend(std::iter::repeat_n(String::new(), 4));
                        row.push(p.as_str().into());
                        row.extend(std::iter::repeat_n(String::new(), 2));
                    }
                }
                (r.seq.to_string(), r.time, r.client_ref, "")
            }
            JournalItem::Rejected(r) => {
                summary.rejected += 1;
                row.extend(new_cells(&r.order)?);
                (String::new(), r.time, r.client_ref, r.reason.code())
            }
        };
        if options.extra_columns {
            row.extend([seq, time.to_string(), client_ref.to_string(), reason.into()]);
        }
        w.write_record(&row).map_err(|e| csv_err(&orders_path, e))?;
    }
    w.flush().map_err(|e| io_err(&orders_path, e))?;

    let mut fills: Vec<TapeFill> = Vec::new();
    for f in TapeReader::open(tape_dir, 0)? {
        fills.push(f?);
    }
    // Security code byte order within a seq, as the replay collector writes auction trades.
    let mut rank = vec![0u32; listing.len()];
    let mut by_code: Vec<(&str, u32)> = listing.iter().map(|(id, c, _)| (c, id.0)).collect();
    by_code.sort();
    for (r, (_, id)) in by_code.iter().enumerate() {
        rank[*id as usize] = r as u32;
    }
    let rank_of = |s: SecurityId| rank.get(s.0 as usize).copied().unwrap_or(u32::MAX);
    fills.sort_by_key(|f| (f.seq, rank_of(f.fill.security), f.fill_index));
    let trades_path = out_dir.join("trades.csv");
    let mut w = csv::Writer::from_path(&trades_path).map_err(|e| csv_err(&trades_path, e))?;
    let mut header = vec![
        "security",
        "price",
        "qty",
        "buy_order_id",
        "sell_order_id",
        "aggressor",
    ];
    if options.extra_columns {
        header.extend(["seq", "time", "fill_index"]);
    }
    w.write_record(&header)
        .map_err(|e| csv_err(&trades_path, e))?;
    for f in &fills {
        row.clear();
        row.extend([
            code(listing, f.fill.security)?.to_owned(),
            f.fill.price.to_string(),
            f.fill.qty.to_string(),
            f.fill.buy.0.to_string(),
            f.fill.sell.0.to_string(),
            f.fill.aggressor.as_str().into(),
        ]);
        if options.extra_columns {
            row.extend([
                f.seq.to_string(),
                f.time.to_string(),
                f.fill_index.to_string(),
            ]);
        }
        w.write_record(&row).map_err(|e| csv_err(&trades_path, e))?;
        summary.trades += 1;
    }
    w.flush().map_err(|e| io_err(&trades_path, e))?;
    Ok(summary)
}
