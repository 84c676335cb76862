//! # dataout: market data out of gridmatch
//!
//! Owns the file formats through which the simulated market reaches data platforms: OHLCV bars
//! (1 s, 1 min, 1 day) computed from the trade tape; CSV and Parquet files of orders, trades
//! and bars with one documented schema; and Qlib data directories of daily bars that Qlib's own
//! loader reads like a real market.
//!
//! Must not: read the journal or know the grid (the caller turns journal records into
//! [`OrderRecord`]s and [`TradeRecord`]s), run async code, or leave a half-written file behind:
//! every file is written under a temporary name and renamed into place on success.
//!
//! Layout:
//! - [`record`]: the input rows, borrowing names from the caller.
//! - [`time`]: the trading day's UTC offset (HOSE: +07:00), buckets, text form of times.
//! - [`bars`]: [`BarBuilder`] and [`Bar`] (pure).
//! - [`table`]: the columns of the orders, trades and bars tables and their types; both
//!   writers are generic over it, so CSV and Parquet always agree.
//! - [`csv_file`], [`parquet_file`]: the writers, over any `io::Write` (Parquet through the
//!   `parquet` crate's column writers, without Arrow).
//! - [`qlib`]: the Qlib layout (pure) and its writer.
//!
//! Typical use (what `manager journal export` does):
//! ```no_run
//! # fn main() -> Result<(), dataout::DataError> {
//! use dataout::{bars, write_table, Format, Interval, TradeRecord, UtcOffset};
//! # let trades: Vec<TradeRecord> = Vec::new();
//! let out = std::path::Path::new("export");
//! write_table(&out.join(Format::Parquet.file_name("trades")), Format::Parquet, &trades)?;
//! let minute = bars(Interval::Minute, UtcOffset::HOSE, &trades)?;
//! write_table(&out.join(Format::Csv.bars_file_name(Interval::Minute)), Format::Csv, &minute)?;
//! let daily = bars(Interval::Day, UtcOffset::HOSE, &trades)?;
//! dataout::qlib::write_qlib(&out.join("qlib"), &daily)?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
#![allow(missing_docs)]

pub mod bars;
pub mod csv_file;
mod error;
pub mod parquet_file;
pub mod qlib;
pub mod record;
pub mod table;
pub mod time;

use std::fmt;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::str::FromStr;

pub use bars::{bars, Bar, BarBuilder, Interval};
pub use chrono::NaiveDate;
pub use error::DataError;
pub use record::{OrderRecord, TradeRecord};
pub use table::Table;
pub use time::UtcOffset;

/// File format of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    Csv,
    Parquet,
}

impl Format {
    /// `csv` or `parquet`: the flag value and the file extension.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }

    /// `<table>.<ext>`, e.g. `trades.parquet`.
    pub fn file_name(self, table: &str) -> String {
        format!("{table}.{}", self.as_str())
    }

    /// `bars_<interval>.<ext>`, e.g. `bars_1m.csv`.
    pub fn bars_file_name(self, interval: Interval) -> String {
        self.file_name(&format!("bars_{interval}"))
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, DataError> {
        match s {
            "csv" => Ok(Format::Csv),
            "parquet" => Ok(Format::Parquet),
            _ => Err(DataError::UnknownFormat(s.to_owned())),
        }
    }
}

/// Writes `rows` to `path` in `format`; returns the number of rows. The file appears only when
/// complete: it is written as `<path>.tmp` and renamed; on error the temporary file is removed
/// and an existing file at `path` is left untouched. The parent directory must exist.
pub fn write_table<T: Table>(
    path: &Path,
    format: Format,
    rows: impl IntoIterator<Item = T>,
) -> Result<u64, DataError> {
    write_file(path, |w| match format {
        Format::Csv => csv_file::write_csv(w, rows),
        Format::Parquet => parquet_file::write_parquet(w, rows),
    })
}

/// Runs `write` on a buffered temporary file next to `path` and renames it to `path` when it
/// succeeds.
pub fn write_file<R>(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<fs::File>) -> Result<R, DataError>,
) -> Result<R, DataError> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let file = fs::File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    let mut w = BufWriter::with_capacity(1 << 16, file);
    let result = write(&mut w)
        .and_then(|r| w.flush().map(|()| r).map_err(|e| DataError::io(&tmp, e)))
        .and_then(|r| {
            fs::rename(&tmp, path)
                .map(|()| r)
                .map_err(|e| DataError::io(path, e))
        });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
