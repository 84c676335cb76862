//! The one error type of the crate.

use std::path::PathBuf;

use matching::Timestamp;

/// What can go wrong turning rows into files. Bad input is reported before anything is renamed
/// into place, so a failed export leaves no partial output behind.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A trade that cannot come from the engine (non-positive price, zero or oversized qty).
    #[error("trade seq {seq} fill {fill} ({security}): {problem}")]
    InvalidTrade {
        seq: u64,
        fill: u32,
        security: String,
        problem: &'static str,
    },
    /// A hand-made bar that trades could not have produced.
    #[error("bar of {security} starting at {start} ns: {problem}")]
    InvalidBar {
        security: String,
        start: Timestamp,
        problem: &'static str,
    },
    /// The time plus the trading day's UTC offset leaves the range of a nanosecond timestamp.
    #[error("time {0} ns is outside the range this export can bucket")]
    TimeOutOfRange(Timestamp),
    /// A running total left its type (or Parquet's DECIMAL(38, 0) for `value`).
    #[error("{what} of security {security} overflowed")]
    Overflow {
        what: &'static str,
        security: String,
    },
    #[error("unknown bar interval {0:?}: expected 1s, 1m or 1d")]
    UnknownInterval(String),
    #[error("unknown format {0:?}: expected csv or parquet")]
    UnknownFormat(String),
    #[error("UTC offset {0:?} is invalid: expected +HH:MM or -HH:MM, less than 24 hours")]
    InvalidUtcOffset(String),
    /// The Qlib writer takes daily bars only.
    #[error("Qlib data needs daily bars, got a {0} bar")]
    NotDaily(&'static str),
    /// Two daily bars of one security on one trading day.
    #[error("two daily bars for {security} on {date}")]
    DuplicateBar { security: String, date: String },
    /// A security code that cannot name a Qlib feature directory.
    #[error("security code {0:?} cannot be a Qlib instrument: it must not contain '/', '\\\\' or start with '.'")]
    QlibName(String),
    /// Two codes that differ only in letter case share one Qlib directory.
    #[error("securities {0:?} and {1:?} map to the same Qlib directory (Qlib lowercases names)")]
    QlibNameClash(String, String),
    /// The output directory exists and holds files: refusing to mix old and new data.
    #[error("{0}: directory exists and is not empty")]
    NotEmpty(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> DataError {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}
