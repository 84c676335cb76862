//! The gateway's command line: a setup it cannot start with ends it at once with exit status
//! 1 and one line saying why, named for the binary (no panic, no backtrace), and it never
//! starts listening.

use std::path::Path;
use std::process::{Command, Output};

fn gateway(dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fix-gateway"))
        .args(["--listen", "127.0.0.1:0", "--comp-id", "GRIDMATCH"])
        .arg("--data-dir")
        .arg(dir.join("store"))
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .expect("runs fix-gateway")
}

/// The `fix-gateway: error: ` line of a failed run.
fn error_line(o: &Output) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("listening"),
        "it must not start serving"
    );
    stderr
        .lines()
        .find(|l| l.starts_with("fix-gateway: error: "))
        .unwrap_or_else(|| panic!("no error line in: {stderr}"))
        .to_owned()
}

#[test]
fn a_setup_it_cannot_start_with_ends_it_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-creds.txt");
    let line = error_line(&gateway(
        dir.path(),
        &["--loopback-credentials", missing.to_str().unwrap()],
    ));
    assert!(line.contains("no-such-creds.txt"), "{line}");

    let creds = dir.path().join("creds.txt");
    std::fs::write(&creds, "BRK1,s3cret\n").unwrap();
    let absent_key = dir.path().join("absent-key.pem");
    let line = error_line(&gateway(
        dir.path(),
        &[
            "--loopback-credentials",
            creds.to_str().unwrap(),
            "--tls-cert",
            absent_key.to_str().unwrap(),
            "--tls-key",
            absent_key.to_str().unwrap(),
        ],
    ));
    assert!(line.contains("absent-key.pem"), "{line}");
}
