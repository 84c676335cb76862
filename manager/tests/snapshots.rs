//! Book snapshots and the finished-order index with real processes: a manager that takes
//! images often (`--snapshot-every`, `--snapshot-secs`), executors killed after images were
//! trusted (failover installs the image and replays the tail), and a manager killed and
//! restarted from its checkpoint plus the journal tail. The results must equal the sequential
//! engine's (`user-sim replay --local`), and `user-sim orders` must answer the same before and
//! after a restart while the finished orders live on disk.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testkit::{
    assert_same_file, assert_same_outputs, bin, generate, local_reference, logged_u64, Grid,
    GridOptions, Proc,
};

/// Images often enough that a run of a few ten thousand orders takes many of them.
fn snapshot_args() -> Vec<String> {
    ["--snapshot-every", "400", "--snapshot-secs", "0.2"]
        .map(String::from)
        .to_vec()
}

/// A grid whose executors burn `work_us` per order (so that a run lasts long enough for
/// images and kills to land in the middle of it).
fn grid(dir: &Path, executors: usize, work_us: u32) -> Grid {
    let mut grid = Grid::start(
        dir,
        GridOptions {
            executors: 0,
            manager_args: snapshot_args(),
            ..GridOptions::default()
        },
    );
    let work = work_us.to_string();
    for _ in 0..executors {
        let i = grid.spawn_executor(&["--work-us", &work, "--work-mode", "sleep"]);
        grid.executors[i].wait_log("executor ready", 1, Duration::from_secs(30));
    }
    grid
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Files of the snapshot directory whose names start with `prefix`.
fn files(grid: &Grid, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(grid.data_dir.join("snapshots"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Waits until the manager logged `count` checkpoints that wrote book images, while `replay`
/// (if any) is still running.
fn wait_checkpoints(grid: &mut Grid, replay: Option<&mut Proc>, count: usize) {
    let start = Instant::now();
    let mut replay = replay;
    loop {
        let log = grid.manager.log_text();
        let n = imaged_checkpoints(&log);
        if n >= count {
            return;
        }
        if let Some(r) = replay.as_deref_mut() {
            assert!(
                r.running(),
                "the replay ended before {count} checkpoints with images:\n{log}"
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "only {n} checkpoints with images:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The resume seq of the latest checkpoint in a manager log (0: none).
fn last_resume_seq(log: &str) -> u64 {
    log.lines()
        .rev()
        .filter(|l| l.contains(" checkpoint "))
        .find_map(|l| logged_u64(l, "resume_seq"))
        .unwrap_or(0)
}

/// Checkpoints in a manager log that wrote book images.
fn imaged_checkpoints(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(" checkpoint ") && !l.contains("books=0"))
        .count()
}

/// Executors die one after the other once images were trusted: each failover installs the
/// latest images and replays only the tail; the result equals the sequential engine's.
#[test]
fn failover_from_images_equals_the_sequential_engine() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut grid = grid(dir, 3, 150);
    let stream = dir.join("orders.csv");
    generate(&grid.securities(), 60_000, 71, &stream);
    local_reference(dir, &grid.securities(), &stream, "hose", "local");
    let mut replay = grid.spawn_replay(&stream, "grid", &[]);
    wait_checkpoints(&mut grid, Some(&mut replay), 3);
    grid.executors[0].kill();
    grid.manager
        .wait_log("exec-1 (node 1) lost", 1, Duration::from_secs(10));
    // The second kill after more images (the run may be ending by then: the failover must
    // still start from the images and replay only the tail).
    let seen = imaged_checkpoints(&grid.manager.log_text());
    wait_checkpoints(&mut grid, None, seen + 1);
    grid.executors[1].kill();
    let i = grid.spawn_executor(&["--work-us", "150", "--work-mode", "sleep"]);
    grid.wait_replay(&mut replay);
    assert_same_outputs(dir, "local", "grid");
    grid.executors[i].wait_log("executor ready", 1, Duration::from_secs(10));
    assert!(
        !files(&grid, "pack-").is_empty(),
        "no book image reached the disk"
    );
}

/// Finished orders leave memory for run files; `user-sim orders` answers byte for byte the
/// same before and after a kill -9 and restart (from the checkpoint and the journal tail),
/// and the restarted grid refuses a re-used old id exactly.
#[test]
fn user_sim_orders_answers_the_same_after_a_restart_with_finished_orders_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let mut grid = grid(tmp.path(), 2, 0);
    let out = grid.load(&["--orders", "4000", "--brokers", "2", "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Every order's book imaged and its finished orders written out (two rounds after the load).
    let seen = grid.manager.log_text().matches("checkpoint").count();
    wait_checkpoints(&mut grid, None, 1);
    let start = Instant::now();
    while grid.manager.log_text().matches("checkpoint").count() < seen + 3 {
        assert!(start.elapsed() < Duration::from_secs(30), "no checkpoints");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !files(&grid, "run-").is_empty(),
        "no finished-order run on disk"
    );
    let archived: u64 = grid
        .manager
        .log_text()
        .lines()
        .filter(|l| l.contains("checkpoint"))
        .filter_map(|l| logged_u64(l, "archived"))
        .sum();
    assert!(archived > 1000, "only {archived} orders left memory");
    let before: Vec<String> = ["B01", "B02"].iter().map(|b| grid.orders_of(b)).collect();
    assert!(
        before[0].contains("FILLED") && before[0].contains("REJECTED"),
        "{}",
        before[0]
    );
    grid.restart_manager();
    grid.manager
        .wait_log("recovered from the journal", 1, Duration::from_secs(30));
    let log = grid.manager.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("recovered from the journal"))
        .unwrap();
    assert!(
        !line.contains("resume_seq=1 "),
        "the restart read the whole journal: {line}"
    );
    let after: Vec<String> = ["B01", "B02"].iter().map(|b| grid.orders_of(b)).collect();
    assert_eq!(before, after);
    // Still serving, with the archived orders' ids burnt: a second load completes.
    let out = grid.load(&["--orders", "1000", "--brokers", "2", "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Kill -9 the manager mid-run after several checkpoints, restart it on the same data dir,
/// trade on, and restart it once more at the end.
/// The trade tape then equals the sequential engine over the journaled orders: nothing
/// acknowledged lost, no fill twice, although recovery started from images, not seq 1.
#[test]
fn a_manager_restart_after_snapshots_equals_the_sequential_engine() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut grid = grid(dir, 3, 150);
    let stream = dir.join("orders.csv");
    generate(&grid.securities(), 60_000, 72, &stream);
    let mut first = grid.spawn_replay(&stream, "first", &[]);
    // Kill once a checkpoint lets recovery skip part of the journal (every book imaged once).
    let start = Instant::now();
    while last_resume_seq(&grid.manager.log_text()) <= 1 {
        assert!(
            first.running(),
            "the replay ended first:\n{}",
            grid.manager.log_text()
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint moved resume_seq"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let seen = imaged_checkpoints(&grid.manager.log_text());
    wait_checkpoints(&mut grid, Some(&mut first), seen + 1);
    grid.restart_manager();
    let _ = first.child.wait();
    grid.manager
        .wait_log("recovered from the journal", 1, Duration::from_secs(30));
    let line = grid
        .manager
        .log_text()
        .lines()
        .find(|l| l.contains("recovered from the journal"))
        .unwrap()
        .to_string();
    assert!(
        !line.contains("resume_seq=1 "),
        "recovery did not start from the images: {line}"
    );
    for e in &mut grid.executors {
        e.wait_log("executor joined the grid", 2, Duration::from_secs(30));
    }
    // The restarted grid keeps trading (and imaging) with broker sessions.
    let out = grid.load(&["--orders", "3000", "--brokers", "2", "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // One more restart at the end, from the latest checkpoint: the tape gains nothing.
    wait_checkpoints(&mut grid, None, 2);
    grid.restart_manager();
    grid.manager
        .wait_log("recovered from the journal", 1, Duration::from_secs(30));
    let export = dir.join("export");
    let out = std::process::Command::new(bin("manager"))
        .args([
            "journal",
            "export",
            "--csv",
            "--data-dir",
            grid.data_dir.to_str().unwrap(),
            "--out-dir",
            export.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    local_reference(
        dir,
        &grid.securities(),
        &export.join("orders.csv"),
        "hose",
        "journal",
    );
    assert_same_file(&dir.join("journal-trades.csv"), &export.join("trades.csv"));
}

/// Checkpoints the manager's core logged.
fn checkpoints(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains(": checkpoint next_seq="))
        .collect()
}

/// An idle grid writes no checkpoint that would repeat the last one: one at the start, then
/// none while nothing happens; a load brings new ones, and once its orders are all
/// archived and its images trusted, the grid is quiet again.
#[test]
fn an_idle_grid_writes_no_checkpoint_that_repeats_the_last() {
    let tmp = tempfile::tempdir().unwrap();
    let mut grid = grid(tmp.path(), 1, 0);
    // The timer runs every 0.2 s: before, 1.5 s idle gave 8 identical checkpoints.
    grid.manager
        .wait_log(": checkpoint next_seq=", 1, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(1500));
    let log = grid.manager.log_text();
    assert_eq!(checkpoints(&log).len(), 1, "{log}");

    let load = grid.load(&["--orders", "3000", "--quiet"]);
    assert!(load.status.success(), "{}", stderr(&load));
    // Settled: no new checkpoint for a second (five timer periods).
    let start = Instant::now();
    let (mut seen, mut since) = (0, Instant::now());
    loop {
        let n = checkpoints(&grid.manager.log_text()).len();
        if n != seen {
            (seen, since) = (n, Instant::now());
        } else if since.elapsed() > Duration::from_secs(1) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "checkpoints never stopped:\n{}",
            grid.manager.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = grid.manager.log_text();
    let all = checkpoints(&log);
    assert!(all.len() >= 2, "the load was checkpointed:\n{log}");
    // The last one holds the whole day so far: every book's image covers every command, so
    // a restart would read no journal at all.
    let last = all.last().unwrap();
    let field = |key: &str| logged_u64(last, key).unwrap_or_else(|| panic!("no {key} in {last}"));
    assert!(field("next_seq") > 1, "{last}");
    assert_eq!(field("resume_seq"), field("next_seq"), "{last}");
}
