//! Local replay: read a securities file and an orders file, run them through one sequential
//! [`matching::Exchange`] (via [`matching::stream::replay_local`]) and write the trades, totals
//! and rejects files. This is the reference output the grid must reproduce byte for byte.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use matching::stream::{parse_orders, replay_local, to_command, BrokerRegistry, StreamError};
use matching::{MarketRules, SecurityTable};

/// Errors of a local replay. Parse errors name the file and the 1-based line.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not `#[source]`: the message already includes the parse error, and a chained source
    /// would print it twice.
    #[error("{path}: {error}")]
    Parse { path: PathBuf, error: StreamError },
}

/// Where a local replay reads and writes.
#[derive(Clone, Debug)]
pub struct LocalReplay {
    pub rules: MarketRules,
    pub securities: PathBuf,
    pub orders: PathBuf,
    pub trades_out: PathBuf,
    pub totals_out: PathBuf,
    pub rejects_out: PathBuf,
}

/// What a replay did, for the one-line summary.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReplaySummary {
    pub orders: usize,
    pub trades: usize,
    pub rejects: usize,
    /// Wall time of parse + match + write.
    pub elapsed: Duration,
}

impl std::fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.orders as f64 / secs
        } else {
            0.0
        };
        write!(
            f,
            "replayed {} orders: {} trades, {} rejects in {:.3} s ({:.0} orders/s)",
            self.orders, self.trades, self.rejects, secs, rate
        )
    }
}

fn read(path: &Path) -> Result<String, ReplayError> {
    std::fs::read_to_string(path).map_err(|source| ReplayError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, text: &str) -> Result<(), ReplayError> {
    std::fs::write(path, text).map_err(|source| ReplayError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a securities CSV file.
pub fn read_securities(path: &Path) -> Result<SecurityTable, ReplayError> {
    SecurityTable::parse_csv(&read(path)?).map_err(|error| ReplayError::Parse {
        path: path.to_path_buf(),
        error,
    })
}

/// Runs a local replay end to end and returns its summary.
pub fn run_local(job: &LocalReplay) -> Result<ReplaySummary, ReplayError> {
    let start = Instant::now();
    let securities = read_securities(&job.securities)?;
    let rows = parse_orders(&read(&job.orders)?).map_err(|error| ReplayError::Parse {
        path: job.orders.clone(),
        error,
    })?;
    tracing::debug!(orders = rows.len(), securities = securities.len(), "parsed");
    let collector = replay_local(job.rules, &securities, &rows);
    write(&job.trades_out, &collector.trades_csv())?;
    write(&job.totals_out, &collector.totals_csv())?;
    write(&job.rejects_out, &collector.rejects_csv())?;
    Ok(ReplaySummary {
        orders: rows.len(),
        trades: collector.trade_count(),
        rejects: collector.reject_count(),
        elapsed: start.elapsed(),
    })
}

/// Replays `job`'s orders through one sequential exchange and writes its final books to `out`
/// as [`feed::export`]'s books CSV (every listed security in id order): the reference a feed
/// subscriber's books (`user-sim record --books-out`) must equal.
pub fn write_books_local(job: &LocalReplay, out: &Path) -> Result<(), ReplayError> {
    let securities = read_securities(&job.securities)?;
    let rows = parse_orders(&read(&job.orders)?).map_err(|error| ReplayError::Parse {
        path: job.orders.clone(),
        error,
    })?;
    let mut exchange = matching::Exchange::new(job.rules, securities.clone());
    let mut brokers = BrokerRegistry::new();
    let mut events = Vec::with_capacity(64);
    for row in &rows {
        events.clear();
        let cmd = to_command(row, &securities, &mut brokers);
        exchange.process(&cmd, &mut events);
    }
    let mut text = Vec::new();
    let engine = exchange.engine();
    let mut w = || -> std::io::Result<()> {
        use std::io::Write;
        writeln!(text, "{}", feed::export::BOOKS_HEADER)?;
        for (id, code, _) in securities.iter() {
            let depth = engine.depth(id, usize::MAX);
            feed::export::write_book_rows(&mut text, code, &depth, engine.totals(id))?;
        }
        Ok(())
    };
    w().map_err(|source| ReplayError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    write(out, &String::from_utf8_lossy(&text))
}
