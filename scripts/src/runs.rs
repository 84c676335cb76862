//! One row per run: the CSV schema of `results/runs.csv`, and `user-sim`'s JSON report.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{csvfile, Error, Result};

/// Which setup a cell runs: the manager matching in-process, or a grid of N executors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Executors {
    /// `manager --local`: no grid, the no-grid baseline of the paper.
    Local,
    /// A manager plus this many executor processes.
    Grid(u32),
}

impl Executors {
    /// Position on a numeric axis: local = 0, grid = N.
    pub fn axis(self) -> u32 {
        match self {
            Executors::Local => 0,
            Executors::Grid(n) => n,
        }
    }
}

impl fmt::Display for Executors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Executors::Local => f.write_str("local"),
            Executors::Grid(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for Executors {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("local") {
            return Ok(Executors::Local);
        }
        match s.parse::<u32>() {
            Ok(n) if (1..=64).contains(&n) => Ok(Executors::Grid(n)),
            _ => Err(Error::Invalid(format!(
                "executors {s:?}: expected `local` or a count 1..=64"
            ))),
        }
    }
}

impl TryFrom<String> for Executors {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Executors> for String {
    fn from(e: Executors) -> String {
        e.to_string()
    }
}

/// One measured run: a row of `runs.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Id of the `experiment run` that measured it (see [`crate::invocation`]); empty in rows
    /// recorded before runs carried one.
    #[serde(default)]
    pub invocation: String,
    /// Cell label, `<orders>x<executors>`, e.g. `5000x3` or `1000xlocal`.
    pub cell: String,
    pub orders: u64,
    pub executors: Executors,
    /// Repeat index (also the user-sim seed, so repeat k sends the same flow in every cell).
    pub repeat: u32,
    /// `loopback` (every process on 127.0.0.1) or `lan` (executors in network namespaces).
    pub mode: String,
    /// One-way delay added per direction on each executor link (0 on loopback).
    pub netem_ms: f64,
    /// Emulated per-order work on each executor, microseconds.
    pub work_us: u64,
    /// Broker sessions user-sim used.
    pub brokers: u64,
    /// First send to last final state, seconds (the paper's "processing time").
    pub elapsed_s: f64,
    pub mean_us_per_order: f64,
    /// Orders per second.
    pub throughput: f64,
    /// Send to final state, per order.
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    /// Send to accepted/rejected, per order.
    pub accept_p50_us: u64,
    pub accept_p99_us: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub fills: u64,
    /// Unix time the run started, seconds.
    pub started_unix: u64,
}

impl RunRecord {
    /// The cell label for a given size and setup.
    pub fn cell_label(orders: u64, executors: Executors) -> String {
        format!("{orders}x{executors}")
    }

    /// The scenario (everything but orders, executors and repeat) this run belongs to.
    pub fn scenario(&self) -> Scenario {
        Scenario {
            mode: self.mode.clone(),
            netem_ms: self.netem_ms,
            work_us: self.work_us,
        }
    }
}

/// Runs that can be compared on one chart: same network mode, delay and per-order work.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub mode: String,
    pub netem_ms: f64,
    pub work_us: u64,
}

impl Scenario {
    /// Human label, e.g. `loopback` or `lan, 0.2 ms one-way, 50 us/order work`.
    pub fn label(&self) -> String {
        let mut s = self.mode.clone();
        if self.mode != "loopback" {
            s.push_str(&format!(", {} ms one-way delay", self.netem_ms));
        }
        if self.work_us > 0 {
            s.push_str(&format!(", {} us/order work", self.work_us));
        }
        s
    }

    /// File-name part, e.g. `loopback` or `lan-0.2ms-work50us`.
    pub fn slug(&self) -> String {
        let mut s = self.mode.clone();
        if self.mode != "loopback" {
            s.push_str(&format!("-{}ms", self.netem_ms));
        }
        if self.work_us > 0 {
            s.push_str(&format!("-work{}us", self.work_us));
        }
        s
    }
}

/// Distinct scenarios in first-seen order.
pub fn scenarios(records: &[RunRecord]) -> Vec<Scenario> {
    let mut out: Vec<Scenario> = Vec::new();
    for r in records {
        let s = r.scenario();
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Percentiles in microseconds as user-sim reports them.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct Percentiles {
    pub p50: u64,
    #[serde(default)]
    pub p90: u64,
    pub p99: u64,
    #[serde(default)]
    pub p999: u64,
    #[serde(default)]
    pub max: u64,
}

/// The `--json` report of `user-sim` (see the CLI contract).
#[derive(Debug, Clone, Deserialize)]
pub struct UserSimReport {
    pub orders: u64,
    #[serde(default)]
    pub brokers: u64,
    pub elapsed_s: f64,
    pub throughput: f64,
    #[serde(default)]
    pub accepted: u64,
    #[serde(default)]
    pub rejected: u64,
    #[serde(default)]
    pub fills: u64,
    #[serde(default)]
    pub accept_us: Percentiles,
    pub final_us: Percentiles,
}

impl UserSimReport {
    /// Parses a report file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.to_owned(),
            source,
        })
    }
}

/// Reads every row of a runs CSV. A missing file is an empty list.
pub fn read_csv(path: &Path) -> Result<Vec<RunRecord>> {
    csvfile::read(path)
}

/// Writes all rows (with a header), replacing the file atomically.
pub fn write_csv(path: &Path, records: &[RunRecord]) -> Result<()> {
    csvfile::write(path, records)
}

/// Replaces the rows of `old` that `new` re-measures (same scenario, orders and executors) and
/// appends the rest, so re-running a cell updates it instead of duplicating it.
pub fn merge(old: Vec<RunRecord>, new: &[RunRecord]) -> Vec<RunRecord> {
    let remeasured = |r: &RunRecord| {
        new.iter().any(|n| {
            n.scenario() == r.scenario() && n.orders == r.orders && n.executors == r.executors
        })
    };
    let mut out: Vec<RunRecord> = old.into_iter().filter(|r| !remeasured(r)).collect();
    out.extend_from_slice(new);
    out
}

/// A plausible record for tests of other modules.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub(crate) fn sample(orders: u64, executors: Executors, repeat: u32) -> RunRecord {
        RunRecord {
            invocation: "20240229T235959Z".into(),
            cell: RunRecord::cell_label(orders, executors),
            orders,
            executors,
            repeat,
            mode: "loopback".into(),
            netem_ms: 0.0,
            work_us: 0,
            brokers: 4,
            elapsed_s: 0.5,
            mean_us_per_order: 0.5e6 / orders as f64,
            throughput: orders as f64 / 0.5,
            p50_us: 800,
            p99_us: 4100,
            p999_us: 9000,
            accept_p50_us: 300,
            accept_p99_us: 2000,
            accepted: orders - 3,
            rejected: 3,
            fills: orders / 2,
            started_unix: 1_700_000_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::sample;
    use super::*;

    #[test]
    fn executors_parse_and_print() {
        assert_eq!("local".parse::<Executors>().unwrap(), Executors::Local);
        assert_eq!(" 4 ".parse::<Executors>().unwrap(), Executors::Grid(4));
        assert!("0".parse::<Executors>().is_err());
        assert!("four".parse::<Executors>().is_err());
        assert_eq!(Executors::Grid(6).to_string(), "6");
        assert!(Executors::Local < Executors::Grid(1));
    }

    #[test]
    fn csv_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.csv");
        let rows = vec![
            sample(1000, Executors::Local, 0),
            sample(5000, Executors::Grid(6), 4),
        ];
        write_csv(&path, &rows).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let header = text.lines().next().unwrap();
        for column in [
            "invocation",
            "cell",
            "orders",
            "executors",
            "repeat",
            "elapsed_s",
            "mean_us_per_order",
            "throughput",
            "p50_us",
            "p99_us",
            "mode",
            "netem_ms",
            "work_us",
        ] {
            assert!(
                header.split(',').any(|c| c == column),
                "missing column {column} in {header}"
            );
        }
        assert!(
            text.contains("20240229T235959Z,1000xlocal,1000,local,0,loopback"),
            "{text}"
        );
        assert_eq!(read_csv(&path).unwrap(), rows);
    }

    #[test]
    fn csv_rejects_bad_rows_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.csv");
        write_csv(&path, &[sample(1000, Executors::Grid(2), 0)]).unwrap();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace(",2,0,loopback", ",zero,0,loopback");
        std::fs::write(&path, text).unwrap();
        let err = read_csv(&path).unwrap_err().to_string();
        assert!(err.contains("runs.csv"), "{err}");
        assert!(read_csv(&dir.path().join("absent.csv")).unwrap().is_empty());
    }

    #[test]
    fn legacy_csv_without_invocation_column_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.csv");
        let row = sample(1000, Executors::Grid(2), 0);
        write_csv(&path, std::slice::from_ref(&row)).unwrap();
        // Drop the first column, as in CSVs written before invocations were recorded.
        let text: String = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| format!("{}\n", l.split_once(',').unwrap().1))
            .collect();
        assert!(text.starts_with("cell,orders,"), "{text}");
        std::fs::write(&path, text).unwrap();
        let back = read_csv(&path).unwrap();
        assert_eq!(back[0].invocation, "");
        assert_eq!(back[0].elapsed_s, row.elapsed_s);
    }

    #[test]
    fn merge_replaces_remeasured_cells_only() {
        let old = vec![
            sample(1000, Executors::Local, 0),
            sample(2000, Executors::Grid(2), 0),
        ];
        let mut again = sample(1000, Executors::Local, 0);
        again.elapsed_s = 9.0;
        let merged = merge(old, &[again.clone()]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].orders, 2000);
        assert_eq!(merged[1], again);
    }

    #[test]
    fn user_sim_json_parses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        std::fs::write(
            &path,
            r#"{"orders":1000,"brokers":4,"mode":"max","rate":null,"elapsed_s":0.25,"throughput":4000.0,
               "accepted":990,"rejected":10,"fills":400,
               "accept_us":{"p50":100,"p90":200,"p99":300,"p999":400,"max":500},
               "final_us":{"p50":150,"p90":250,"p99":350,"p999":450,"max":550}}"#,
        )
        .unwrap();
        let r = UserSimReport::read(&path).unwrap();
        assert_eq!(
            (r.orders, r.final_us.p99, r.accept_us.p50),
            (1000, 350, 100)
        );
        std::fs::write(&path, "{\"orders\":").unwrap();
        assert!(UserSimReport::read(&path).is_err());
    }

    #[test]
    fn scenario_labels() {
        let mut r = sample(1000, Executors::Local, 0);
        assert_eq!(r.scenario().slug(), "loopback");
        r.mode = "lan".into();
        r.netem_ms = 0.2;
        r.work_us = 50;
        assert_eq!(r.scenario().slug(), "lan-0.2ms-work50us");
        assert!(r.scenario().label().contains("0.2 ms"));
    }
}
