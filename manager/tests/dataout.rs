//! What the manager gives to other tools, read back by those tools: the journal exported as
//! CSV and Parquet tables (pyarrow must read the same rows from both), OHLCV bars, a Qlib data
//! directory (numpy as Qlib's storage reads it, and Qlib's own loader), and /metrics scraped
//! during a load (prometheus_client's OpenMetrics parser; the counters must add up to what
//! user-sim reports). The Python tools live in .venv (scripts/venv.sh; CI creates it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use testkit::{bin, Grid, GridOptions};

fn venv_python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "the Python test venv is missing ({}): run scripts/venv.sh first",
        python.display()
    );
    python
}

fn python(script: &str, args: &[&Path]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = std::process::Command::new(venv_python())
        .arg(root.join(script))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn export(grid: &Grid, out: &Path, args: &[&str]) {
    let o = std::process::Command::new(bin("manager"))
        .args(["journal", "export", "--data-dir"])
        .arg(&grid.data_dir)
        .arg("--out-dir")
        .arg(out)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn exported_tables_bars_and_qlib_are_read_back_by_pyarrow_and_qlib() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let grid = Grid::start(dir, GridOptions::default());
    // A trading-day stream: auctions, amends, closes, rejects of every kind.
    let listing =
        matching::SecurityTable::parse_csv(&std::fs::read_to_string(grid.securities()).unwrap())
            .unwrap();
    let rows = testkit::nasty::nasty_stream(
        &testkit::nasty::Nasty {
            rows: 20_000,
            seed: 17,
            brokers: 4,
            day: true,
            sweep_every: 0,
        },
        &listing,
    );
    let stream = dir.join("orders.csv");
    std::fs::write(&stream, matching::stream::write_orders(&rows)).unwrap();
    let mut replay = grid.spawn_replay(&stream, "grid", &[]);
    assert!(
        replay.child.wait().unwrap().success(),
        "{}",
        replay.log_text()
    );
    let (csv, parquet, qlib) = (dir.join("csv"), dir.join("parquet"), dir.join("qlib"));
    export(&grid, &csv, &["--format", "csv", "--bars", "1s,1m,1d"]);
    export(
        &grid,
        &parquet,
        &[
            "--format",
            "parquet",
            "--bars",
            "1s,1m,1d",
            "--qlib",
            qlib.to_str().unwrap(),
        ],
    );
    for (table, file) in [
        ("orders", "orders"),
        ("trades", "trades"),
        ("bars", "bars_1s"),
        ("bars", "bars_1m"),
        ("bars", "bars_1d"),
    ] {
        let c = csv.join(format!("{file}.csv"));
        let p = parquet.join(format!("{file}.parquet"));
        let out = std::process::Command::new(venv_python())
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../dataout/tests/py/check_tables.py"))
            .arg(table)
            .arg(&c)
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The trades table holds every trade of the replay, in trade order.
    let replayed = std::fs::read_to_string(dir.join("grid-trades.csv")).unwrap();
    let exported = std::fs::read_to_string(csv.join("trades.csv")).unwrap();
    assert_eq!(replayed.lines().count(), exported.lines().count());
    assert!(replayed.contains("AUCTION"), "the stream has auctions");
    let checked = python(
        "dataout/tests/py/check_qlib.py",
        &[&qlib, &csv.join("bars_1d.csv")],
    );
    eprintln!("dataout: qlib read back: {checked}");
}

#[test]
fn metrics_scraped_during_a_load_parse_and_add_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut grid = Grid::start(
        dir,
        GridOptions {
            manager_args: vec!["--metrics-addr".into(), "127.0.0.1:0".into()],
            ..GridOptions::default()
        },
    );
    grid.manager
        .wait_log("metrics at /metrics", 1, Duration::from_secs(10));
    let log = grid.manager.log_text();
    let addr = log
        .lines()
        .find(|l| l.contains("metrics at /metrics"))
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .unwrap()
        .to_string();
    let json = dir.join("load.json");
    let mut args = grid.load_args();
    args.extend(
        [
            "--orders",
            "60000",
            "--brokers",
            "4",
            "--quiet",
            "--json",
            json.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let mut load = testkit::Proc::spawn("load", &bin("user-sim"), &args, dir.join("load.log"));
    let mut scrapes = Vec::new();
    while load.running() {
        let p = dir.join(format!("scrape-{}.txt", scrapes.len()));
        std::fs::write(&p, testkit::scrape_metrics(&addr)).unwrap();
        scrapes.push(p);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(load.child.wait().unwrap().success(), "{}", load.log_text());
    // The last commands' metrics are recorded when their reports go out: scrape after.
    std::thread::sleep(Duration::from_millis(300));
    let p = dir.join("scrape-last.txt");
    std::fs::write(&p, testkit::scrape_metrics(&addr)).unwrap();
    scrapes.push(p);
    assert!(scrapes.len() >= 3, "scraped during the load");
    let mut args: Vec<&Path> = vec![&json];
    args.extend(scrapes.iter().map(PathBuf::as_path));
    let totals = python("manager/tests/py/check_scrapes.py", &args);
    eprintln!("metrics: commands, rejects, trades = {totals}");
}
