//! `user-sim agents` through real grids (manager, executors and user-sim processes): the grid
//! lockstep run must equal `--local` byte for byte (trades.csv and agents.csv) with 1 and 3
//! executors and across an executor killed mid-run; bad populations and managers that cannot
//! reproduce a local run are refused before anything is sent.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use testkit::{assert_same_file, bin, Grid, GridOptions, Proc};

/// Every kind of agent over three securities of an 8-security listing, two short days.
const SMALL: &str = r#"
seed = 11
days = 2
steps_per_day = 23
securities = ["AAA", "AAB", "AAC"]

[market]
rules = "hose"
listing = 8

[noise]
count = 30
activity = 0.3

[value]
count = 8
activity = 0.3

[momentum]
count = 3

[market_maker]
count = 2

[random]
count = 3
activity = 0.3
invalid_share = 0.05
"#;

fn write_population(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn user_sim(args: &[String]) -> Output {
    std::process::Command::new(bin("user-sim"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run user-sim")
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn agents_args(config: &Path, out: &Path) -> Vec<String> {
    [
        "agents",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--plots",
        "0",
        "--quiet",
    ]
    .map(String::from)
    .to_vec()
}

fn grid_args(grid: &Grid, config: &Path, out: &Path) -> Vec<String> {
    let mut args = agents_args(config, out);
    args.extend(
        [
            "--manager",
            &grid.addr,
            "--ca",
            grid.ca().to_str().unwrap(),
            "--token",
            &grid.token(),
        ]
        .map(String::from),
    );
    args
}

/// Runs the population locally into `<dir>/local` and returns the trade count.
fn run_local(dir: &Path, config: &Path) -> usize {
    let mut args = agents_args(config, &dir.join("local"));
    args.push("--local".into());
    let o = user_sim(&args);
    assert!(o.status.success(), "{}", text(&o));
    let trades = std::fs::read_to_string(dir.join("local/trades.csv")).unwrap();
    trades.lines().count() - 1
}

fn start_grid(dir: &Path, executors: usize, listings: usize) -> Grid {
    Grid::start(
        dir,
        GridOptions {
            executors,
            manager_args: [
                "--schedule",
                "continuous",
                "--listings",
                &listings.to_string(),
            ]
            .map(String::from)
            .to_vec(),
            ..GridOptions::default()
        },
    )
}

fn assert_same_results(dir: &Path, grid_out: &str) {
    for file in [
        "trades.csv",
        "agents.csv",
        "agents.txt",
        "kinds.txt",
        "facts.md",
    ] {
        assert_same_file(
            &dir.join("local").join(file),
            &dir.join(grid_out).join(file),
        );
    }
}

fn grid_equals_local(executors: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = write_population(dir, "small.toml", SMALL);
    let trades = run_local(dir, &config);
    assert!(trades > 50, "too few trades to compare: {trades}");
    let grid = start_grid(&dir.join("grid"), executors, 8);
    let o = user_sim(&grid_args(&grid, &config, &dir.join("out")));
    assert!(
        o.status.success(),
        "{}\nmanager:\n{}",
        text(&o),
        grid.manager.log_text()
    );
    assert_same_results(dir, "out");
    // The summary names the venue: the two runs really went different ways.
    let summary = std::fs::read_to_string(dir.join("out/summary.md")).unwrap();
    assert!(summary.contains("grid, lockstep"), "{summary}");
}

#[test]
fn grid_lockstep_on_one_executor_equals_local() {
    grid_equals_local(1);
}

#[test]
fn grid_lockstep_on_three_executors_equals_local() {
    grid_equals_local(3);
}

#[test]
fn grid_lockstep_with_an_executor_killed_mid_run_equals_local() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Every kind over five securities, three days of 69 steps (about 55 KB of journal).
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../agents/populations/mixed.toml");
    let mut local = agents_args(&config, &dir.join("local"));
    local.extend(["--local", "--days", "3"].map(String::from));
    let o = user_sim(&local);
    assert!(o.status.success(), "{}", text(&o));
    let mut grid = start_grid(&dir.join("grid"), 3, 200);
    let mut args = grid_args(&grid, &config, &dir.join("out"));
    args.extend(["--days", "3"].map(String::from));
    let mut run = Proc::spawn("user-sim", &bin("user-sim"), &args, dir.join("agents.log"));
    // The kill must land mid-run.
    grid.wait_journal(&mut run, 12_000);
    grid.executors[1].kill();
    let status = run.child.wait().unwrap();
    assert!(
        status.success(),
        "{}\nmanager:\n{}",
        run.log_text(),
        grid.manager.log_text()
    );
    assert_same_results(dir, "out");
    grid.manager
        .wait_log("exec-2 (node 2) lost", 1, Duration::from_secs(5));
    // Most of the run (and every later PHASE, which reaches every book) came after the kill.
    assert!(
        grid.journal_bytes() > 36_000,
        "journal {} bytes",
        grid.journal_bytes()
    );
}

#[test]
fn a_bad_population_is_refused_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cases = [
        (
            SMALL.replace("steps_per_day = 23", "steps_per_day = 5"),
            "steps_per_day",
        ),
        (
            SMALL.replace("rules = \"hose\"", "rules = \"nyse\""),
            "market.rules",
        ),
        (SMALL.replace("\"AAC\"]", "\"ZZZZ\"]"), "securities"),
        (SMALL.replace("count = 30", "count = -3"), "count"),
        (SMALL.replace("seed = 11", "seed = 11\nsteps = 4"), "steps"),
    ];
    for (i, (population, field)) in cases.iter().enumerate() {
        let config = write_population(dir, &format!("bad{i}.toml"), population);
        let out = dir.join(format!("out{i}"));
        let mut args = agents_args(&config, &out);
        args.push("--local".into());
        let o = user_sim(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "case {i} accepted:\n{}", text(&o));
        assert!(err.contains(field), "case {i}: {field} not named:\n{err}");
        assert!(
            !out.exists(),
            "case {i}: results written for a bad population"
        );
    }
    // A --days override is checked like the file's `days`.
    let config = write_population(dir, "good.toml", SMALL);
    let mut args = agents_args(&config, &dir.join("days"));
    args.extend(["--local", "--days", "0"].map(String::from));
    let o = user_sim(&args);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("days"),
        "{}",
        text(&o)
    );
    // A missing file names the file.
    let mut args = agents_args(&dir.join("missing.toml"), &dir.join("missing"));
    args.push("--local".into());
    let o = user_sim(&args);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("missing.toml"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_manager_that_cannot_reproduce_the_local_run_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = write_population(
        dir,
        "small.toml",
        SMALL.replace("days = 2", "days = 1").as_str(),
    );
    let grid = start_grid(&dir.join("grid"), 1, 8);
    // Another listing than the population's: refused before anything is sent.
    let other = write_population(
        dir,
        "other.toml",
        SMALL.replace("listing = 8", "listing = 9").as_str(),
    );
    let o = user_sim(&grid_args(&grid, &other, &dir.join("listing")));
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--listings 9"),
        "{}",
        text(&o)
    );
    assert!(!dir.join("listing").exists());
    // So the manager is still fresh: a run goes through.
    let o = user_sim(&grid_args(&grid, &config, &dir.join("first")));
    assert!(o.status.success(), "{}", text(&o));
    assert!(dir.join("first/trades.csv").exists());
    // Now it has sequenced that run: a second one could not equal --local.
    let o = user_sim(&grid_args(&grid, &config, &dir.join("second")));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(err.contains("already sequenced"), "{err}");
    assert!(
        !dir.join("second").exists(),
        "results written for a refused run"
    );
}

/// Column `name` of a CSV file, as integers.
fn column(path: &Path, name: &str) -> Vec<i128> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let i = header.iter().position(|h| *h == name).unwrap();
    lines
        .map(|l| l.split(',').nth(i).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn realtime_over_the_grid_runs_the_days_and_its_books_balance() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = write_population(dir, "small.toml", SMALL);
    let grid = start_grid(&dir.join("grid"), 2, 8);
    let mut args = grid_args(&grid, &config, &dir.join("rt"));
    args.extend(["--realtime", "--step-ms", "2"].map(String::from));
    let o = user_sim(&args);
    assert!(o.status.success(), "{}", text(&o));
    let summary = std::fs::read_to_string(dir.join("rt/summary.md")).unwrap();
    assert!(summary.contains("grid, real time"), "{summary}");
    // Every trade has a buyer and a seller among the agents: their accounts add up to the
    // tape, whatever the timing did to the decisions.
    let traded: i128 = column(&dir.join("rt/trades.csv"), "qty").iter().sum();
    assert!(traded > 0, "no trades in real time");
    let bought: i128 = column(&dir.join("rt/agents.csv"), "bought").iter().sum();
    let sold: i128 = column(&dir.join("rt/agents.csv"), "sold").iter().sum();
    let inventory: i128 = column(&dir.join("rt/agents.csv"), "inventory").iter().sum();
    assert_eq!((bought, sold, inventory), (traded, traded, 0));
    // Real time needs a grid: locally every command is final at once.
    let mut args = agents_args(&config, &dir.join("x"));
    args.extend(["--local", "--realtime"].map(String::from));
    assert!(!user_sim(&args).status.success());
}
