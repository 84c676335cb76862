//! The grid's contract: for random streams, `replay` through a real grid (manager + N executor
//! processes over QUIC on 127.0.0.1) writes trades, totals and rejects files byte-identical to
//! `replay --local`, the sequential engine.

use testkit::{assert_same_outputs, generate, local_reference, Grid, GridOptions};

fn grid_equals_local(executors: usize, local: bool, orders: u64, seed: u64) {
    grid_with_flags_equals_local(executors, local, orders, seed, &[]);
}

fn grid_with_flags_equals_local(
    executors: usize,
    local: bool,
    orders: u64,
    seed: u64,
    manager_args: &[&str],
) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut grid = Grid::start(
        dir,
        GridOptions {
            executors,
            local,
            manager_args: manager_args.iter().map(|a| a.to_string()).collect(),
            ..GridOptions::default()
        },
    );
    let stream = dir.join("orders.csv");
    generate(&grid.securities(), orders, seed, &stream);
    local_reference(dir, &grid.securities(), &stream, "hose", "local");
    let mut replay = grid.spawn_replay(&stream, "grid", &[]);
    grid.wait_replay(&mut replay);
    assert_same_outputs(dir, "local", "grid");
    let trades = std::fs::read_to_string(dir.join("grid-trades.csv"))
        .unwrap()
        .lines()
        .count();
    assert!(
        trades > orders as usize / 10,
        "a realistic stream trades: only {trades} trades"
    );
    // Every executor did part of the work.
    for e in &mut grid.executors {
        assert!(e.running(), "{} died:\n{}", e.name, e.log_text());
    }
    assert!(
        grid.manager.terminate(std::time::Duration::from_secs(10)),
        "manager did not stop cleanly on SIGTERM"
    );
}

#[test]
fn one_executor_equals_local_replay() {
    grid_equals_local(1, false, 20_000, 11);
}

#[test]
fn two_executors_equal_local_replay() {
    grid_equals_local(2, false, 20_000, 12);
}

#[test]
fn three_executors_equal_local_replay() {
    grid_equals_local(3, false, 20_000, 13);
}

#[test]
fn a_manager_whose_stages_share_a_thread_equals_local_replay() {
    grid_with_flags_equals_local(3, false, 20_000, 16, &["--stage-threads", "1"]);
}

#[test]
fn six_executors_equal_local_replay() {
    grid_equals_local(6, false, 20_000, 14);
}

#[test]
fn manager_local_mode_equals_local_replay() {
    grid_equals_local(0, true, 20_000, 15);
}

#[test]
fn load_run_reports_every_order_and_writes_json() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let grid = Grid::start(dir, GridOptions::default());
    let json = dir.join("report.json");
    let out = grid.load(&[
        "--orders",
        "5000",
        "--brokers",
        "4",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("orders/s") && stdout.contains("p99.9"),
        "{stdout}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["orders"], 5000);
    assert_eq!(v["brokers"], 4);
    // Every command gets exactly one first answer: accepted or rejected before sequencing.
    let accepted = v["accepted"].as_u64().unwrap();
    assert!(accepted > 4_800 && accepted <= 5_000, "{v}");
    assert!(v["fills"].as_u64().unwrap() > 0);
    assert!(v["final_us"]["p50"].as_u64().unwrap() >= v["accept_us"]["p50"].as_u64().unwrap() / 2);
    assert!(v["throughput"].as_f64().unwrap() > 0.0);

    // A second run against the same manager starts its ids above every id already used, so it
    // is not rejected as duplicates.
    let out = grid.load(&[
        "--orders",
        "5000",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let accepted = again["accepted"].as_u64().unwrap();
    assert!(accepted > 4_800, "second run mostly rejected: {again}");
}

#[test]
fn a_paced_load_keeps_to_its_schedule_across_sessions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let grid = Grid::start(dir, GridOptions::default());
    // Three sessions at 2,000/s each: each session's last order is due at 999/2000 s, so the
    // run cannot end sooner, and with one pacer serving all three, none may run ahead.
    let v = grid.load_json(
        "paced",
        &[
            "--orders",
            "3000",
            "--rate",
            "6000",
            "--brokers",
            "3",
            "--timeline",
            "0.1",
        ],
    );
    assert_eq!(v["mode"], "rate");
    let elapsed = v["elapsed_s"].as_f64().unwrap();
    assert!(elapsed >= 0.4995, "ran ahead of the schedule: {v}");
    let finals: u64 = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["finals"].as_u64().unwrap())
        .sum();
    assert_eq!(
        finals, 3000,
        "every order reaches its final state once: {v}"
    );
    // Latency counts from each order's slot, so it is never below zero and the run's figures
    // are all there.
    assert!(v["final_us"]["p50"].as_u64().unwrap() > 0, "{v}");
}

#[test]
fn a_load_stopped_by_sigterm_says_so_and_the_grid_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let grid = Grid::start(
        dir,
        GridOptions {
            executors: 1,
            ..GridOptions::default()
        },
    );
    let mut args = grid.load_args();
    args.extend(["--orders", "100000", "--rate", "2000", "--quiet"].map(String::from));
    let mut load = testkit::Proc::spawn(
        "load",
        &testkit::bin("user-sim"),
        &args,
        dir.join("load.log"),
    );
    // Wait until it is really sending: the manager has journaled something.
    let start = std::time::Instant::now();
    while grid.journal_bytes() < 2_000 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "the load never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        !load.terminate(std::time::Duration::from_secs(10)),
        "an interrupted load must not report success"
    );
    assert!(
        load.log_text().contains("interrupted"),
        "{}",
        load.log_text()
    );
    // The grid keeps serving: the interrupted run's resting orders stay (they were accepted),
    // and a new load reaches a final state for every one of its orders.
    let json = dir.join("second.json");
    let out = grid.load(&[
        "--orders",
        "3000",
        "--seed",
        "16",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["orders"], 3000);
    assert!(v["accepted"].as_u64().unwrap() > 1_000, "{v}");
}

/// A stream built to break the grid, through real processes: engine-level rejects (cancels and
/// amends of filled, cancelled and foreign orders) mixed in one batch with gateway rejects
/// (price, lot, band, unknown security, duplicate ids), frequent sweeps, then one order that
/// sweeps 120,000 resting orders (its events span many frames), with an executor killed
/// mid-run. The files must equal the sequential engine's, byte for byte.
#[test]
fn a_nasty_stream_with_a_deep_sweep_and_a_lost_executor_equals_local() {
    use matching::stream::{write_orders, Action, OrderRow};
    use matching::{OrderType, Side};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut grid = Grid::start(
        dir,
        GridOptions {
            executors: 3,
            ..GridOptions::default()
        },
    );
    let listing =
        matching::SecurityTable::parse_csv(&std::fs::read_to_string(grid.securities()).unwrap())
            .unwrap();
    let mut rows = testkit::nasty::nasty_stream(
        &testkit::nasty::Nasty {
            rows: 30_000,
            seed: 23,
            brokers: 5,
            day: false,
            sweep_every: 2_000,
        },
        &listing,
    );
    let next_id = rows.iter().map(|r| r.order_id).max().unwrap() + 1;
    let (_, code, reference) = listing.iter().next().unwrap();
    let resting = 120_000u64;
    let row = |id: u64, broker: &str, side: Side, qty: u64| OrderRow {
        action: Action::New,
        order_id: id,
        broker: broker.into(),
        security: code.to_string(),
        side: Some(side),
        kind: Some(OrderType::Limit),
        price: reference,
        qty,
        phase: None,
    };
    for i in 0..resting {
        rows.push(row(
            next_id + i,
            if i % 2 == 0 { "B01" } else { "B02" },
            Side::Sell,
            100,
        ));
    }
    rows.push(row(next_id + resting, "B03", Side::Buy, resting * 100));
    let stream = dir.join("orders.csv");
    std::fs::write(&stream, write_orders(&rows)).unwrap();
    local_reference(dir, &grid.securities(), &stream, "hose", "local");
    // The reference itself has what the test claims to exercise.
    let rejects = std::fs::read_to_string(dir.join("local-rejects.csv")).unwrap();
    for reason in [
        "order_not_live",
        "unknown_order",
        "not_owner",
        "duplicate_order_id",
        "off_tick",
        "outside_band",
        "unknown_security",
    ] {
        assert!(
            rejects.contains(reason),
            "no {reason} in the stream's rejects"
        );
    }
    let mut replay = grid.spawn_replay(&stream, "grid", &[]);
    let start = std::time::Instant::now();
    while grid.journal_bytes() < 100_000 && replay.running() {
        assert!(start.elapsed() < std::time::Duration::from_secs(120));
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    grid.executors[2].kill();
    grid.wait_replay(&mut replay);
    assert_same_outputs(dir, "local", "grid");
    let sweep = std::fs::read_to_string(dir.join("grid-trades.csv"))
        .unwrap()
        .lines()
        .filter(|l| l.ends_with(",BUY") && l.contains(&format!(",{},", next_id + resting)))
        .count();
    // (A few of the resting sells trade on arrival with buys the nasty part left resting.)
    assert!(
        sweep as u64 >= resting * 9 / 10,
        "the deep sweep traded only {sweep} times"
    );
}
