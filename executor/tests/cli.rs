//! The executor's command line: every flag is explained, bad input is a clear error.
//! (Also makes `cargo test`/`nextest` build the `executor` binary that the grid tests run.)

use std::process::Command;

fn executor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_executor"))
}

#[test]
fn help_explains_every_flag() {
    let out = executor().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--manager",
        "--ca",
        "--token",
        "--name",
        "--work-us",
        "--work-mode",
        "--depth",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
    assert!(
        help.contains("GRIDMATCH_TOKEN"),
        "the token's environment variable is documented"
    );
}

#[test]
fn defaults_point_at_a_local_manager_and_say_what_is_missing() {
    // No flags: the defaults name gridmatch-data/ in the current directory; without it the
    // executor stops at once with the file it needs (no retry loop, no backtrace).
    let dir = tempfile::tempdir().unwrap();
    let out = executor()
        .current_dir(dir.path())
        .env_remove("GRIDMATCH_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gridmatch-data/token"), "{err}");
    assert!(!err.contains("backtrace"), "{err}");
    // A bad flag value is a usage error.
    let out = executor().args(["--name", "a b"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--name"));
}

#[test]
fn an_unknown_work_mode_is_rejected() {
    let out = executor()
        .args([
            "--manager",
            "127.0.0.1:1",
            "--ca",
            "x.pem",
            "--token",
            "t",
            "--work-mode",
            "nap",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nap"));
}

#[test]
fn an_unreadable_certificate_is_a_clear_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-cert.pem");
    let out = executor()
        .args([
            "--manager",
            "127.0.0.1:1",
            "--ca",
            missing.to_str().unwrap(),
            "--token",
            "t",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-cert.pem"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_file_without_a_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("empty.pem");
    std::fs::write(&bogus, "not a certificate\n").unwrap();
    let out = executor()
        .args([
            "--manager",
            "127.0.0.1:1",
            "--ca",
            bogus.to_str().unwrap(),
            "--token",
            "t",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no certificate"));
}
