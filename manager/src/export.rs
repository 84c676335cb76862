//! `manager journal export`: what a data dir holds, for other tools. The replay formats (the
//! journal crate's CSV export), or the data-out tables (orders, trades and OHLCV bars in CSV or
//! Parquet with the same columns, and a Qlib data directory of daily bars) built by `dataout`
//! from the journal and the trade tape, with every row's exchange time.
//!
//! Reads only: the journal and tape are streamed, nothing in the data dir changes.

use std::path::{Path, PathBuf};

use anyhow::Context;
use dataout::{Format, Interval, OrderRecord, TradeRecord, UtcOffset};
use matching::SecurityTable;

/// What to write.
#[derive(Clone, Debug)]
pub struct ExportJob {
    pub data_dir: PathBuf,
    pub out_dir: PathBuf,
    /// `None`: the replay formats (orders.csv, trades.csv as `user-sim replay` reads and
    /// writes them). Otherwise the data-out tables in this format.
    pub format: Option<Format>,
    /// Replay formats only: append seq, time, client ref and reject reason columns.
    pub extra_columns: bool,
    pub bars: Vec<Interval>,
    pub qlib: Option<PathBuf>,
}

/// What an export wrote, for the summary line.
#[derive(Clone, Debug, Default)]
pub struct ExportReport {
    pub files: Vec<(PathBuf, u64)>,
}

impl std::fmt::Display for ExportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (path, rows) in &self.files {
            writeln!(f, "wrote {} ({rows} rows)", path.display())?;
        }
        Ok(())
    }
}

pub fn run(job: &ExportJob) -> anyhow::Result<ExportReport> {
    let journal_dir = job.data_dir.join("journal");
    let tape_dir = job.data_dir.join("tape");
    // The journal's own copy of the listing it was written with.
    let listing = journal::journal_listing(&journal_dir)?
        .with_context(|| format!("{} holds no journal", journal_dir.display()))?;
    std::fs::create_dir_all(&job.out_dir)
        .with_context(|| format!("creating {}", job.out_dir.display()))?;
    let mut report = ExportReport::default();
    match job.format {
        None => {
            let s = journal::export_csv(
                &journal_dir,
                &tape_dir,
                &listing,
                &job.out_dir,
                journal::ExportOptions {
                    extra_columns: job.extra_columns,
                },
            )?;
            report
                .files
                .push((job.out_dir.join("orders.csv"), s.commands + s.rejected));
            report
                .files
                .push((job.out_dir.join("trades.csv"), s.trades));
        }
        Some(format) => {
            let contents = journal::read_journal(&journal_dir)?;
            let names: rustc_hash::FxHashMap<u32, String> = contents
                .brokers
                .iter()
                .map(|(id, n)| (id.0, n.clone()))
                .collect();
            let orders = contents.records.iter().filter_map(|r| match r.entry {
                journal::Entry::Command(command) => Some(OrderRecord {
                    time: r.time,
                    seq: r.seq,
                    command,
                    broker: command
                        .broker()
                        .and_then(|b| names.get(&b.0))
                        .map_or("", String::as_str),
                    security: command
                        .security()
                        .and_then(|s| listing.code(s))
                        .unwrap_or(""),
                }),
                journal::Entry::Gap { .. } => None,
            });
            let path = job.out_dir.join(format.file_name("orders"));
            let n = dataout::write_table(&path, format, orders)?;
            report.files.push((path, n));
        }
    }
    if job.format.is_some() || !job.bars.is_empty() || job.qlib.is_some() {
        let fills = sorted_fills(&tape_dir)?;
        let trades = trade_records(&fills, &listing);
        if let Some(format) = job.format {
            let path = job.out_dir.join(format.file_name("trades"));
            let n = dataout::write_table(&path, format, trades.iter().copied())?;
            report.files.push((path, n));
        }
        let format = job.format.unwrap_or(Format::Csv);
        for &interval in &job.bars {
            let bars = dataout::bars(interval, UtcOffset::HOSE, &trades)?;
            let path = job.out_dir.join(format.bars_file_name(interval));
            let n = dataout::write_table(&path, format, &bars)?;
            report.files.push((path, n));
        }
        if let Some(dir) = &job.qlib {
            let daily = dataout::bars(Interval::Day, UtcOffset::HOSE, &trades)?;
            let s = dataout::qlib::write_qlib(dir, &daily)?;
            report.files.push((dir.clone(), s.instruments as u64));
        }
    }
    Ok(report)
}

/// The tape in trade order (by seq, then security, then fill index): executors complete
/// securities out of global order, so the tape is in arrival order.
fn sorted_fills(tape_dir: &Path) -> anyhow::Result<Vec<journal::TapeFill>> {
    let mut fills = journal::read_tape(tape_dir)?.fills;
    fills.sort_by_key(|f| f.key());
    Ok(fills)
}

fn trade_records<'a>(
    fills: &'a [journal::TapeFill],
    listing: &'a SecurityTable,
) -> Vec<TradeRecord<'a>> {
    fills
        .iter()
        .map(|f| {
            TradeRecord::from_fill(
                f.time,
                f.seq,
                f.fill_index,
                listing.code(f.fill.security).unwrap_or("?"),
                &f.fill,
            )
        })
        .collect()
}
