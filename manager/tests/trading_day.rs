//! The trading day through the whole grid (real manager, executor and user-sim processes on
//! 127.0.0.1): generated HOSE days replayed through 1, 3 and 6 executors equal the sequential
//! engine byte for byte; executors lost in the opening call and in continuous trading, and one
//! added in the closing call, lose nothing; a manager killed in the opening call comes back in
//! it; and the manager's own HOSE schedule (`--schedule hose --day-length 6s --days 2`) moves
//! the market through two days at the right exchange times, under load, also across a
//! manager restart.
//!
//! Mid-phase events are placed without timing luck: the replay is stopped (SIGSTOP) once its
//! acknowledgements show it inside the phase, so the grid sits in that phase (the phase
//! change that ends it lies beyond what the replay had sent) while the event happens.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::{
    assert_same_file, assert_same_outputs, bin, local_reference, Grid, GridOptions, Proc,
};

/// Commands the replay may have sent beyond the ones that reached their final state, with
/// the manager's `--max-in-flight` at [`STOPPABLE_IN_FLIGHT`]: `user-sim replay` keeps at most
/// `max_in_flight` commands unfinished (it sends what the window has room for).
const REPLAY_AHEAD: usize = 1024;
/// The manager's `--max-in-flight` for tests that stop a replay inside a phase.
const STOPPABLE_IN_FLIGHT: &str = "1024";

/// `user-sim generate --day hose`: `orders` order rows over `days` days (six PHASE rows a day
/// on top).
fn generate_day(securities: &Path, orders: u64, days: u32, seed: u64, out: &Path) {
    let out = Command::new(bin("user-sim"))
        .args(["generate", "--day", "hose", "--days", &days.to_string()])
        .args(["--orders", &orders.to_string(), "--seed", &seed.to_string()])
        .arg("--securities")
        .arg(securities)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run user-sim generate");
    assert!(
        out.status.success(),
        "generate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Rows of each part of a generated day, from the stream file: the number of order rows
/// after each PHASE row, in file order.
fn part_sizes(stream: &Path) -> Vec<(String, usize)> {
    let text = std::fs::read_to_string(stream).unwrap();
    let mut parts: Vec<(String, usize)> = Vec::new();
    for line in text.lines().skip(1) {
        if let Some(rest) = line.strip_prefix("PHASE,,,,,") {
            parts.push((rest.trim_end_matches(',').to_string(), 0));
        } else if let Some(last) = parts.last_mut() {
            last.1 += 1;
        }
    }
    parts
}

fn signal(p: &Proc, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(p.pid().to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{sig} {}", p.pid());
}

/// Follows the `--acks-out` file of a running replay: `order_id,seq` per acknowledged command,
/// `0,seq` for a PHASE.
struct Acks {
    path: PathBuf,
    offset: u64,
    partial: String,
    /// Acknowledged commands so far.
    count: usize,
    /// `count` when each PHASE was acknowledged (its own ack included).
    phases: Vec<usize>,
}

impl Acks {
    fn new(path: &Path) -> Acks {
        Acks {
            path: path.to_path_buf(),
            offset: 0,
            partial: String::new(),
            count: 0,
            phases: Vec::new(),
        }
    }

    fn poll(&mut self) {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return;
        };
        let mut more = String::new();
        if f.seek(SeekFrom::Start(self.offset)).is_err() || f.read_to_string(&mut more).is_err() {
            return;
        }
        self.offset += more.len() as u64;
        self.partial.push_str(&more);
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            let Some((id, seq)) = line.trim().split_once(',') else {
                continue;
            };
            if seq.parse::<u64>().is_err() {
                continue; // the header
            }
            self.count += 1;
            if id == "0" {
                self.phases.push(self.count);
            }
        }
    }

    /// Waits until `after` commands past the `k`-th PHASE (0-based) are acknowledged, then
    /// stops the replay (SIGSTOP). Fails if the next PHASE was acknowledged first (the
    /// window was missed) or if the replay can still reach it with what it had sent.
    fn stop_inside_phase(&mut self, replay: &mut Proc, k: usize, after: usize, part_rows: usize) {
        // Acknowledgements count sequenced commands; rows refused before sequencing (a few
        // percent) are final without one: allow a tenth more rows than acks.
        let reachable = |acked: usize| acked + acked / 10 + REPLAY_AHEAD + 64;
        assert!(
            reachable(after) < part_rows,
            "the part ({part_rows} rows) is too short to stop {after} rows into it"
        );
        let start = Instant::now();
        loop {
            self.poll();
            assert!(
                self.phases.len() <= k + 1,
                "the replay acknowledged PHASE {} before {after} commands of PHASE {k}",
                k + 1
            );
            if self.phases.len() == k + 1 && self.count >= self.phases[k] + after {
                signal(replay, "STOP");
                // Acks written meanwhile (stopping is not instant): still inside the phase?
                self.poll();
                let into = self.count - self.phases[k];
                assert!(
                    self.phases.len() == k + 1 && reachable(into) < part_rows,
                    "stopped {into} rows into a part of {part_rows}: too late"
                );
                return;
            }
            assert!(
                replay.running(),
                "replay ended before the stop point:\n{}",
                replay.log_text()
            );
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "replay stuck at {} acks",
                self.count
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// What a day's files must show: auction trades, phase rejects of both kinds.
fn assert_day_outputs(dir: &Path) {
    let trades = std::fs::read_to_string(dir.join("grid-trades.csv")).unwrap();
    let auction = trades.lines().filter(|l| l.ends_with(",AUCTION")).count();
    let continuous = trades
        .lines()
        .filter(|l| l.ends_with(",BUY") || l.ends_with(",SELL"))
        .count();
    assert!(
        auction > 50 && continuous > 500,
        "{auction} auction and {continuous} continuous trades"
    );
    let rejects = std::fs::read_to_string(dir.join("grid-rejects.csv")).unwrap();
    for reason in ["market_closed", "phase_forbids"] {
        assert!(rejects.contains(reason), "no {reason} reject");
    }
    // Every day ends CLOSED: every book is empty.
    let totals = std::fs::read_to_string(dir.join("grid-totals.csv")).unwrap();
    assert!(
        totals.lines().skip(1).all(|l| l.ends_with(",0,0")),
        "{totals}"
    );
}

fn day_grid_equals_local(executors: usize, orders: u64, seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut grid = Grid::start(
        dir,
        GridOptions {
            executors,
            ..GridOptions::default()
        },
    );
    let stream = dir.join("orders.csv");
    generate_day(&grid.securities(), orders, 2, seed, &stream);
    local_reference(dir, &grid.securities(), &stream, "hose", "local");
    let mut replay = grid.spawn_replay(&stream, "grid", &[]);
    grid.wait_replay(&mut replay);
    assert_same_outputs(dir, "local", "grid");
    assert_day_outputs(dir);
    for e in &mut grid.executors {
        assert!(e.running(), "{} died:\n{}", e.name, e.log_text());
    }
    assert!(
        grid.manager.terminate(Duration::from_secs(10)),
        "manager did not stop cleanly on SIGTERM"
    );
}

#[test]
fn two_trading_days_through_one_executor_equal_local_replay() {
    day_grid_equals_local(1, 24_000, 21);
}

#[test]
fn two_trading_days_through_three_executors_equal_local_replay() {
    day_grid_equals_local(3, 24_000, 22);
}

#[test]
fn two_trading_days_through_six_executors_equal_local_replay() {
    day_grid_equals_local(6, 24_000, 23);
}

/// One day of 80,000 order rows: 8,000 in each call, 32,000 in the morning.
const FAILOVER_ORDERS: u64 = 80_000;

#[test]
fn executors_lost_in_the_opening_call_and_in_continuous_trading_and_one_added_in_the_closing_call_lose_nothing(
) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut grid = Grid::start(
        dir,
        GridOptions {
            executors: 3,
            manager_args: vec!["--max-in-flight".into(), STOPPABLE_IN_FLIGHT.into()],
            ..GridOptions::default()
        },
    );
    let stream = dir.join("orders.csv");
    generate_day(&grid.securities(), FAILOVER_ORDERS, 1, 24, &stream);
    let parts = part_sizes(&stream);
    let names: Vec<&str> = parts.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        ["ATO", "CONTINUOUS", "BREAK", "CONTINUOUS", "ATC", "CLOSED"]
    );
    local_reference(dir, &grid.securities(), &stream, "hose", "local");
    let acks_path = dir.join("acks.csv");
    let mut replay = grid.spawn_replay(
        &stream,
        "grid",
        &["--acks-out", acks_path.to_str().unwrap()],
    );
    let mut acks = Acks::new(&acks_path);

    // The opening call: ATO and limit orders rest, nothing has matched yet.
    acks.stop_inside_phase(&mut replay, 0, 1_000, parts[0].1);
    grid.executors[0].kill();
    grid.manager
        .wait_log("exec-1 (node 1) lost", 1, Duration::from_secs(10));
    signal(&replay, "CONT");

    // Continuous trading in the morning.
    acks.stop_inside_phase(&mut replay, 1, 2_000, parts[1].1);
    grid.executors[1].kill();
    grid.manager
        .wait_log("exec-2 (node 2) lost", 1, Duration::from_secs(10));
    signal(&replay, "CONT");

    // The closing call: a new executor joins and securities migrate to it mid-auction.
    acks.stop_inside_phase(&mut replay, 4, 500, parts[4].1);
    let added = grid.spawn_executor(&[]);
    grid.executors[added].wait_log("executor ready", 1, Duration::from_secs(30));
    grid.manager
        .wait_log("moving off node", 1, Duration::from_secs(30));
    signal(&replay, "CONT");

    grid.wait_replay(&mut replay);
    assert_same_outputs(dir, "local", "grid");
    assert_day_outputs(dir);
    assert!(grid.executors[2].running() && grid.executors[added].running());
}

fn export(grid: &Grid, out_dir: &Path, extra: bool) -> PathBuf {
    let mut args = vec![
        "journal",
        "export",
        "--csv",
        "--data-dir",
        grid.data_dir.to_str().unwrap(),
        "--out-dir",
        out_dir.to_str().unwrap(),
    ];
    if extra {
        args.push("--extra-columns");
    }
    let out = Command::new(bin("manager")).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out_dir.to_path_buf()
}

/// The journal's trade tape equals the sequential engine run over the journal's own export
/// (phases included where they were sequenced): nothing lost, doubled or invented.
fn assert_tape_equals_sequential_replay(dir: &Path, grid: &Grid) {
    let plain = export(grid, &dir.join("export"), false);
    local_reference(
        dir,
        &grid.securities(),
        &plain.join("orders.csv"),
        "hose",
        "journal",
    );
    assert_same_file(&dir.join("journal-trades.csv"), &plain.join("trades.csv"));
}

/// One row of `journal export --extra-columns` orders.csv.
#[derive(Debug)]
struct Journaled {
    action: String,
    order_id: String,
    kind: String,
    seq: Option<u64>,
    time: i64,
    reason: String,
}

fn journaled(grid: &Grid, dir: &Path) -> Vec<Journaled> {
    let out = export(grid, &dir.join("export-extra"), true);
    let text = std::fs::read_to_string(out.join("orders.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            // action,order_id,broker,security,side,type,price,qty,seq,time,client_ref,reason
            let c: Vec<&str> = l.split(',').collect();
            assert_eq!(c.len(), 12, "{l}");
            Journaled {
                action: c[0].into(),
                order_id: c[1].into(),
                kind: c[5].into(),
                seq: c[8].parse().ok(),
                time: c[9].parse().unwrap(),
                reason: c[11].into(),
            }
        })
        .collect()
}

/// A load's `--json` report.
fn rejects(v: &serde_json::Value, reason: &str) -> u64 {
    v["rejects_by_reason"][reason].as_u64().unwrap_or(0)
}

#[test]
fn a_manager_killed_in_the_opening_call_recovers_it_and_keeps_everything_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut grid = Grid::start(
        dir,
        GridOptions {
            executors: 2,
            fsync: "batch",
            manager_args: vec!["--max-in-flight".into(), STOPPABLE_IN_FLIGHT.into()],
            ..GridOptions::default()
        },
    );
    let stream = dir.join("orders.csv");
    generate_day(&grid.securities(), FAILOVER_ORDERS, 1, 25, &stream);
    let parts = part_sizes(&stream);
    let acks_path = dir.join("acks.csv");
    let mut first = grid.spawn_replay(
        &stream,
        "first",
        &["--acks-out", acks_path.to_str().unwrap()],
    );
    let mut acks = Acks::new(&acks_path);
    acks.stop_inside_phase(&mut first, 0, 2_000, parts[0].1);
    grid.restart_manager();
    signal(&first, "CONT");
    let status = first.child.wait().unwrap();
    assert!(
        !status.success(),
        "the first run cannot finish without its manager"
    );
    grid.manager
        .wait_log("recovered from the journal", 1, Duration::from_secs(30));
    for e in &mut grid.executors {
        e.wait_log("executor joined the grid", 2, Duration::from_secs(30));
    }

    // Every acknowledged command is in the journal at the seq the client was told.
    let rows = journaled(&grid, dir);
    let by_seq: HashMap<u64, &str> = rows
        .iter()
        .filter_map(|r| r.seq.map(|s| (s, r.order_id.as_str())))
        .collect();
    let acked = std::fs::read_to_string(&acks_path).unwrap();
    let mut checked = 0;
    for line in acked.lines().skip(1) {
        let (id, seq) = line.split_once(',').unwrap();
        let seq: u64 = seq.parse().unwrap();
        let id = if id == "0" { "" } else { id };
        assert_eq!(
            by_seq.get(&seq).copied(),
            Some(id),
            "acknowledged seq {seq}"
        );
        checked += 1;
    }
    assert!(checked >= 2_000, "only {checked} acknowledgements checked");
    // The journal ends inside the opening call: its one PHASE is the ATO.
    let phases: Vec<&str> = rows
        .iter()
        .filter(|r| r.action == "PHASE")
        .map(|r| r.kind.as_str())
        .collect();
    assert_eq!(phases, ["ATO"]);
    assert_tape_equals_sequential_replay(dir, &grid);

    // The restarted manager is still in the opening call: limit orders rest, market orders,
    // IOC/FOK and cancels are refused by the phase, nothing trades.
    let v = grid.load_json("after", &["--orders", "2000", "--brokers", "2"]);
    assert_eq!(v["phase_at_start"], "ATO", "{v}");
    assert_eq!(v["phase_at_end"], "ATO", "{v}");
    assert!(rejects(&v, "phase_forbids") > 100, "{v}");
    assert!(v["accepted"].as_u64().unwrap() > 1_000, "{v}");
    assert_eq!(v["fills"], 0, "nothing matches in a call phase: {v}");
}

/// HOSE's day in exchange time: `(minutes after midnight, phase)`.
const HOSE_BOUNDARIES: [(i64, &str); 6] = [
    (9 * 60, "ATO"),
    (9 * 60 + 15, "CONTINUOUS"),
    (11 * 60 + 30, "BREAK"),
    (13 * 60, "CONTINUOUS"),
    (14 * 60 + 30, "ATC"),
    (14 * 60 + 45, "CLOSED"),
];

/// Unix ns of `minute` (local, UTC+7) on the day `days_since_epoch` (UTC calendar days).
fn hose_ns(days_since_epoch: i64, minute: i64) -> i64 {
    ((days_since_epoch * 24 * 60 + minute - 7 * 60) * 60) * 1_000_000_000
}

/// 2026-01-09 (a Friday) and the next trading day, 2026-01-12 (Monday), as days since the
/// Unix epoch.
const DAY_1: i64 = 20_462;
const DAY_2: i64 = 20_465;

fn schedule_grid(dir: &Path) -> Grid {
    Grid::start(
        dir,
        GridOptions {
            executors: 2,
            manager_args: [
                "--schedule",
                "hose",
                "--day-length",
                "6s",
                "--days",
                "2",
                "--start-date",
                "2026-01-09",
            ]
            .map(String::from)
            .to_vec(),
            ..GridOptions::default()
        },
    )
}

/// Waits (bounded) until the journal holds the final CLOSED of a two-day schedule.
fn wait_for_the_last_close(grid: &Grid, dir: &Path) -> Vec<Journaled> {
    let start = Instant::now();
    loop {
        let rows = journaled(grid, dir);
        if rows.iter().filter(|r| r.kind == "CLOSED").count() >= 2 {
            return rows;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the schedule never closed day 2:\n{}",
            grid.manager.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every boundary of both days exactly once, in order, stamped with its exact exchange time;
/// exchange time never goes backwards along the sequence; every NEW in a BREAK or after the
/// last close is refused `market_closed`.
fn assert_two_scheduled_days(rows: &[Journaled]) {
    let phases: Vec<(&str, i64)> = rows
        .iter()
        .filter(|r| r.action == "PHASE")
        .map(|r| (r.kind.as_str(), r.time))
        .collect();
    let want: Vec<(&str, i64)> = [DAY_1, DAY_2]
        .iter()
        .flat_map(|&d| HOSE_BOUNDARIES.map(|(m, p)| (p, hose_ns(d, m))))
        .collect();
    assert_eq!(phases, want);
    let mut last = i64::MIN;
    let mut phase = "CONTINUOUS";
    let mut refused_in_break = 0;
    for r in rows {
        assert!(r.time >= last, "exchange time went backwards at {r:?}");
        last = r.time;
        if r.action == "PHASE" {
            phase = r.kind.as_str();
            continue;
        }
        if r.action == "NEW" && matches!(phase, "BREAK" | "CLOSED") {
            // Refused before sequencing: by the phase, or by a check that comes first (the
            // load's deliberately invalid orders).
            assert!(r.seq.is_none() && !r.reason.is_empty(), "{r:?} in {phase}");
            refused_in_break += usize::from(phase == "BREAK" && r.reason == "market_closed");
        }
        // Every order is stamped inside a trading day's 09:00-15:00.
        let day = if r.time < hose_ns(DAY_2, 0) {
            DAY_1
        } else {
            DAY_2
        };
        assert!(
            (hose_ns(day, 9 * 60)..=hose_ns(day, 15 * 60)).contains(&r.time),
            "{r:?}"
        );
    }
    assert!(refused_in_break > 0, "no order met a break");
}

#[test]
fn the_hose_schedule_runs_two_compressed_days_under_load() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let grid = schedule_grid(dir);
    // 5,200 orders at 400/s: about 13 s, across both days and into the close.
    let v = grid.load_json(
        "day",
        &[
            "--orders",
            "5200",
            "--rate",
            "400",
            "--brokers",
            "4",
            "--timeline",
            "1",
        ],
    );
    assert_eq!(v["orders"], 5200);
    assert_eq!(v["phase_at_end"], "CLOSED", "{v}");
    for reason in ["market_closed", "phase_forbids"] {
        assert!(rejects(&v, reason) > 0, "no {reason} in {v}");
    }
    assert!(v["fills"].as_u64().unwrap() > 100, "{v}");
    assert!(
        v["expired"].as_u64().unwrap() > 0,
        "the close expires resting orders: {v}"
    );
    let timeline = v["timeline"].as_array().unwrap();
    assert!(timeline.len() >= 12, "{v}");
    let rows = wait_for_the_last_close(&grid, dir);
    assert_two_scheduled_days(&rows);
    // Auction trades of both days' calls are on the tape, at the phase changes' seqs.
    let trades = std::fs::read_to_string(dir.join("export-extra/trades.csv")).unwrap();
    assert!(
        trades.lines().any(|l| l.contains(",AUCTION,")),
        "no auction trade"
    );
    assert_tape_equals_sequential_replay(dir, &grid);
}

#[test]
fn a_manager_restarted_mid_day_resumes_the_schedule_where_it_stands() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut grid = schedule_grid(dir);
    // Trade into the first morning, then kill -9 the manager in the middle of day 1.
    let v = grid.load_json(
        "before",
        &["--orders", "600", "--rate", "400", "--brokers", "2"],
    );
    assert!(v["accepted"].as_u64().unwrap() > 0, "{v}");
    grid.restart_manager();
    grid.manager
        .wait_log("recovered from the journal", 1, Duration::from_secs(30));
    // The restarted manager keeps serving through the rest of the two days.
    let v = grid.load_json(
        "after",
        &["--orders", "3000", "--rate", "400", "--brokers", "2"],
    );
    assert_eq!(v["orders"], 3000);
    let rows = wait_for_the_last_close(&grid, dir);
    assert_two_scheduled_days(&rows);
    assert_tape_equals_sequential_replay(dir, &grid);
}
