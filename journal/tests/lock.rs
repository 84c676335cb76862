//! The data directory lock with two real processes: this test executable re-spawns itself as
//! the first manager.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use journal::{DataDirLock, LockError};

const CHILD_ENV: &str = "JOURNAL_LOCK_TEST_CHILD_DIR";
const TEST_NAME: &str = "a_second_manager_is_refused_until_the_first_dies";

#[test]
fn a_second_manager_is_refused_until_the_first_dies() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        // Child: hold the lock until killed (or until the parent closes stdin).
        let _lock = DataDirLock::acquire(std::path::Path::new(&dir)).unwrap();
        // The harness may have written "test ... " on this line already.
        println!("\nLOCKED-PID={}", std::process::id());
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let pid = loop {
        let line = lines.next().expect("child exited before locking").unwrap();
        if let Some((_, pid)) = line.split_once("LOCKED-PID=") {
            break pid.trim().to_owned();
        }
    };
    assert_eq!(pid, child.id().to_string());

    let err = DataDirLock::acquire(&dir).unwrap_err();
    assert!(matches!(err, LockError::InUse { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "data directory {} is in use by another manager (pid {pid})",
            dir.display()
        )
    );

    // kill -9: the operating system releases the lock.
    child.kill().unwrap();
    child.wait().unwrap();
    let lock = DataDirLock::acquire(&dir).unwrap();
    assert_eq!(
        std::fs::read_to_string(lock.path()).unwrap().trim(),
        std::process::id().to_string()
    );

    // In one process too: a second acquire fails while the first is held, works after drop.
    let err = DataDirLock::acquire(&dir).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("(pid {})", std::process::id())),
        "{err}"
    );
    drop(lock);
    DataDirLock::acquire(&dir).unwrap();
}
