//! Nothing lost: executors killed with SIGKILL (or added) in the middle of a 100,000-order
//! replay, and the manager killed and restarted mid-run. The results must equal the sequential
//! engine's: no fill lost, none delivered twice, no order waiting forever.

use std::path::Path;
use std::time::{Duration, Instant};

use testkit::{
    assert_same_file, assert_same_outputs, bin, generate, local_reference, Grid, GridOptions,
};

const ORDERS: u64 = 100_000;
/// Journal bytes of a 100,000-order stream are about 1.1 MB; thresholds are fractions of it.
const JOURNAL_BYTES: u64 = ORDERS * 11;

fn setup(dir: &Path, executors: usize, seed: u64) -> (Grid, std::path::PathBuf) {
    let grid = Grid::start(
        dir,
        GridOptions {
            executors,
            ..GridOptions::default()
        },
    );
    let stream = dir.join("orders.csv");
    generate(&grid.securities(), ORDERS, seed, &stream);
    local_reference(dir, &grid.securities(), &stream, "hose", "local");
    (grid, stream)
}

#[test]
fn killing_one_of_three_executors_mid_run_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut grid, stream) = setup(tmp.path(), 3, 31);
    let mut replay = grid.spawn_replay(&stream, "grid", &[]);
    grid.wait_journal(&mut replay, JOURNAL_BYTES / 3);
    grid.executors[1].kill();
    grid.wait_replay(&mut replay);
    assert_same_outputs(tmp.path(), "local", "grid");
    grid.manager
        .wait_log("exec-2 (node 2) lost", 1, Duration::from_secs(5));
}

#[test]
fn killing_two_executors_one_after_the_other_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut grid, stream) = setup(tmp.path(), 3, 32);
    let mut replay = grid.spawn_replay(&stream, "grid", &[]);
    grid.wait_journal(&mut replay, JOURNAL_BYTES / 4);
    grid.executors[0].kill();
    grid.manager.wait_log("lost", 1, Duration::from_secs(10));
    grid.wait_journal(&mut replay, JOURNAL_BYTES * 6 / 10);
    grid.executors[1].kill();
    grid.wait_replay(&mut replay);
    assert_same_outputs(tmp.path(), "local", "grid");
    grid.manager.wait_log("lost", 2, Duration::from_secs(5));
}

#[test]
fn an_executor_added_mid_run_takes_securities_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut grid, stream) = setup(tmp.path(), 2, 33);
    let mut replay = grid.spawn_replay(&stream, "grid", &[]);
    grid.wait_journal(&mut replay, JOURNAL_BYTES / 3);
    let i = grid.spawn_executor(&[]);
    grid.wait_replay(&mut replay);
    assert_same_outputs(tmp.path(), "local", "grid");
    grid.executors[i].wait_log("executor ready", 1, Duration::from_secs(10));
    grid.manager
        .wait_log("moving off node", 1, Duration::from_secs(5));
}

/// Kill -9 the manager mid-run, restart it on the same data dir, finish the run by replaying
/// the whole file again (already journaled ids are refused as duplicates). Every command a
/// client saw acknowledged is in the journal at the seq it was told, and the trade tape equals
/// the sequential replay of the journaled orders.
fn manager_restart(fsync: &'static str, orders: u64, seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut grid = Grid::start(
        dir,
        GridOptions {
            executors: 2,
            fsync,
            ..GridOptions::default()
        },
    );
    let stream = dir.join("orders.csv");
    generate(&grid.securities(), orders, seed, &stream);
    let acks = dir.join("acks.csv");
    let mut first = grid.spawn_replay(&stream, "first", &["--acks-out", acks.to_str().unwrap()]);
    // Kill once the client has seen a good part of the stream acknowledged.
    let start = Instant::now();
    while std::fs::read_to_string(&acks)
        .map(|t| t.lines().count())
        .unwrap_or(0)
        < orders as usize / 4
    {
        assert!(
            first.running(),
            "first run ended before the kill:\n{}",
            first.log_text()
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no acknowledgements"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    grid.restart_manager();
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
    let export = |name: &str, extra: bool| {
        let out_dir = dir.join(name);
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
        let out = std::process::Command::new(bin("manager"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out_dir
    };
    // Every command the client saw acknowledged is in the journal at the seq it was told.
    let detailed = export("export-seq", true);
    let journaled = std::fs::read_to_string(detailed.join("orders.csv")).unwrap();
    let mut by_seq = std::collections::HashMap::new();
    for row in journaled.lines().skip(1) {
        let cols: Vec<&str> = row.split(',').collect();
        // action,order_id,broker,security,side,type,price,qty,seq,time,client_ref,reject_reason
        if let Ok(seq) = cols[8].parse::<u64>() {
            by_seq.insert(seq, cols[1].to_string());
        }
    }
    let acked = std::fs::read_to_string(&acks).unwrap();
    let mut checked = 0;
    for line in acked.lines().skip(1) {
        let (id, seq) = line.split_once(',').unwrap();
        let seq: u64 = seq.parse().unwrap();
        assert_eq!(
            by_seq.get(&seq).map(String::as_str),
            Some(id),
            "acknowledged seq {seq} (order {id}) is not in the journal at that seq"
        );
        checked += 1;
    }
    assert!(
        checked > 0,
        "the first run saw no acknowledgement before the kill"
    );
    // The trade tape equals the sequential engine run over the journaled orders (rejected NEWs
    // included where they happened): no fill lost, none doubled, none invented.
    let plain = export("export", false);
    local_reference(
        dir,
        &grid.securities(),
        &plain.join("orders.csv"),
        "hose",
        "journal",
    );
    assert_same_file(&dir.join("journal-trades.csv"), &plain.join("trades.csv"));
    // The restarted grid keeps serving: a load reaches a final state for every order.
    let out = grid.load(&[
        "--orders",
        "2000",
        "--quiet",
        "--json",
        dir.join("after.json").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn manager_killed_mid_run_with_fsync_batch_recovers_everything_acknowledged() {
    manager_restart("batch", 60_000, 41);
}

#[test]
fn manager_killed_mid_run_with_fsync_always_recovers_everything_acknowledged() {
    manager_restart("always", 15_000, 42);
}

#[test]
fn orders_wait_for_an_executor_and_none_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut grid = Grid::start(
        dir,
        GridOptions {
            executors: 0,
            ..GridOptions::default()
        },
    );
    let stream = dir.join("orders.csv");
    generate(&grid.securities(), 5_000, 43, &stream);
    local_reference(dir, &grid.securities(), &stream, "hose", "local");
    let mut replay = grid.spawn_replay(&stream, "grid", &[]);
    grid.wait_journal(&mut replay, 5_000 * 11 / 2);
    // Orders are journaled and held; the first executor to join gets them all.
    grid.add_executor();
    grid.wait_replay(&mut replay);
    assert_same_outputs(dir, "local", "grid");
}
