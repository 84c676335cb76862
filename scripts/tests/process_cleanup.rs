//! The process guard leaves nothing behind: children and their whole process group are gone
//! (not even zombies) after the guard is dropped.

use std::process::Command;
use std::time::Duration;

use scripts::process::{group_members, pid_alive, Guarded};
use scripts::Error;

fn sleeper() -> Command {
    let mut c = Command::new("sleep");
    c.arg("100");
    c
}

#[test]
fn dropping_guards_kills_and_reaps_children() {
    let guards: Vec<Guarded> = (0..3)
        .map(|i| Guarded::spawn(format!("sleep {i}"), sleeper()).unwrap())
        .collect();
    let pids: Vec<u32> = guards.iter().map(Guarded::pid).collect();
    assert!(pids.iter().all(|&p| pid_alive(p)));
    drop(guards);
    for p in pids {
        assert!(!pid_alive(p), "pid {p} survived");
        assert!(
            !std::path::Path::new(&format!("/proc/{p}")).exists(),
            "pid {p} not reaped"
        );
    }
}

#[test]
fn grandchildren_in_the_group_are_killed_too() {
    // The shell starts a background sleep and then waits on a foreground one; SIGTERM to the
    // shell alone would leave the background sleep running.
    let mut c = Command::new("sh");
    c.args(["-c", "sleep 100 & sleep 100; wait"]);
    let g = Guarded::spawn("sh", c)
        .unwrap()
        .with_grace(Duration::from_millis(200));
    let pgid = g.pid();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while group_members(pgid).len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let members = group_members(pgid);
    assert!(
        members.len() >= 3,
        "expected sh + 2 sleeps, got {members:?}"
    );
    drop(g);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !group_members(pgid).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        group_members(pgid).is_empty(),
        "left behind: {:?}",
        group_members(pgid)
    );
}

#[test]
fn a_child_ignoring_sigterm_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let armed = dir.path().join("armed");
    let mut c = Command::new("sh");
    c.arg("-c").arg(format!(
        "trap '' TERM; touch {}; sleep 100",
        armed.display()
    ));
    let mut g = Guarded::spawn("stubborn", c)
        .unwrap()
        .with_grace(Duration::from_millis(300));
    // Stop only once the trap is installed, so SIGTERM is really ignored.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !armed.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(armed.exists());
    let pid = g.pid();
    let start = std::time::Instant::now();
    let status = g.stop().expect("reaped");
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "SIGKILL came before the grace period"
    );
    assert!(!status.success());
    assert!(!pid_alive(pid));
    assert!(group_members(pid).is_empty());
}

#[test]
fn waits_for_a_ready_line_and_reports_early_exit_with_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Command::new("sh");
    c.args([
        "-c",
        "echo booting >&2; echo 'INFO executor ready shard=3' >&2; sleep 100",
    ]);
    let (mut g, lines) =
        Guarded::spawn_logged("fake executor", c, &dir.path().join("a.log")).unwrap();
    let line = g
        .wait_for_line(&lines, "executor ready", Duration::from_secs(10))
        .unwrap();
    assert!(line.contains("shard=3"));
    let pid = g.pid();
    drop(g);
    assert!(!pid_alive(pid));
    assert!(std::fs::read_to_string(dir.path().join("a.log"))
        .unwrap()
        .contains("booting"));

    let mut c = Command::new("sh");
    c.args(["-c", "echo 'fatal: cannot connect' >&2; exit 3"]);
    let (mut g, lines) = Guarded::spawn_logged("crasher", c, &dir.path().join("b.log")).unwrap();
    match g.wait_for_line(&lines, "executor ready", Duration::from_secs(10)) {
        Err(Error::ChildFailed {
            what,
            status,
            log_tail,
        }) => {
            assert_eq!(what, "crasher");
            assert!(status.contains('3'), "{status}");
            assert!(log_tail.contains("cannot connect"), "{log_tail}");
        }
        other => panic!("expected ChildFailed, got {other:?}"),
    }

    let mut c = Command::new("sh");
    c.args(["-c", "echo never >&2; sleep 100"]);
    let (mut g, lines) = Guarded::spawn_logged("silent", c, &dir.path().join("c.log")).unwrap();
    assert!(matches!(
        g.wait_for_line(&lines, "executor ready", Duration::from_millis(300)),
        Err(Error::Timeout { .. })
    ));
    assert!(matches!(
        g.wait_timeout(Duration::from_millis(50)),
        Err(Error::Timeout { .. })
    ));
}

#[test]
fn an_early_exit_reports_the_last_log_line_every_time() {
    // The child's last words reach the log through a reader thread; the error must not be
    // built before that thread caught up (it used to race and show an empty tail).
    let dir = tempfile::tempdir().unwrap();
    for i in 0..40 {
        let mut c = Command::new("sh");
        c.args(["-c", "echo \"fatal: refused $0\" >&2; exit 3"]);
        c.arg(i.to_string());
        let (mut g, _lines) =
            Guarded::spawn_logged("quick", c, &dir.path().join(format!("{i}.log"))).unwrap();
        let status = g.wait_timeout(Duration::from_secs(10)).unwrap();
        match g.failed(status) {
            Error::ChildFailed { log_tail, .. } => {
                assert_eq!(log_tail, format!("fatal: refused {i}"), "attempt {i}")
            }
            other => panic!("{other:?}"),
        }
    }
}
