//! Scaling-experiment driver for gridmatch (the `experiment` binary is thin glue over this).
//!
//! Owns: starting a manager, N executors and `user-sim` as child processes that cannot outlive
//! the run ([`process`]), the optional LAN emulation with network namespaces ([`lan`], [`relay`]),
//! the run grid itself ([`experiment`]), the CSV of every run ([`runs`]) and of the invocations
//! that measured them ([`invocation`]), statistics ([`stats`]), the Universal Scalability Law
//! fit ([`usl`]), PNG plots ([`plots`]), the Markdown tables ([`table`]), rendering a results
//! directory ([`render`]) and publishing a run into `results/` ([`publish`]).
//!
//! A results directory is `runs.csv` + `invocations.csv` plus what [`render`] derives from them.
//! Each `experiment run` writes a fresh one (by default `results/runs/<UTC time>/`, gitignored);
//! only [`publish`] writes the tracked `results/` and the README table.
//!
//! Must not: link the grid crates (it measures the release binaries from the outside, exactly
//! as a user would run them), leave processes or namespaces behind, sleep to wait for
//! readiness (it polls ready files and log lines instead), or build a table from several
//! invocations' runs without saying which.

mod csvfile;
pub mod experiment;
pub mod invocation;
pub mod lan;
pub mod plots;
pub mod process;
pub mod publish;
pub mod relay;
pub mod render;
pub mod runs;
pub mod stats;
pub mod table;
pub mod usl;

use std::path::PathBuf;

/// Everything the driver's library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("interrupted (Ctrl-C or SIGTERM); children stopped")]
    Interrupted,
    #[error("timed out after {secs:.1} s waiting for {what}")]
    Timeout { what: String, secs: f64 },
    #[error("{what} exited early with {status}; last log lines:\n{log_tail}")]
    ChildFailed {
        what: String,
        status: String,
        log_tail: String,
    },
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("CSV {path}: {source}")]
    Csv { path: PathBuf, source: csv::Error },
    #[error("JSON {path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("invalid value: {0}")]
    Invalid(String),
    #[error("plot {path}: {message}")]
    Plot { path: PathBuf, message: String },
    #[error("USL fit: {0}")]
    Fit(String),
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
