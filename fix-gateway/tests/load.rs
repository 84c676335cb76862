//! The load client (`fix-load`) streams a generated flow through the gateway in front of a real
//! grid and gets an answer to every request, paced or not.

mod support;

use std::process::Command;

use support::grid::FixGrid;

fn fix_load(fg: &FixGrid, orders: &std::path::Path, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fix-load"))
        .args([
            "--gateway",
            &format!("127.0.0.1:{}", fg.port),
            "--sender",
            "B02",
        ])
        .arg("--password")
        .arg(format!("@{}", fg.grid.credentials().display()))
        .arg("--orders")
        .arg(orders)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "fix-load failed: {stdout}{}\ngateway log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        fg.gateway_log()
    );
    stdout
}

#[test]
fn every_request_of_a_generated_flow_is_answered_streamed_and_paced() {
    let dir = tempfile::tempdir().unwrap();
    let fg = FixGrid::start(dir.path(), 2);
    let orders = dir.path().join("orders.csv");
    testkit::generate(&dir.path().join("listing.csv"), 3000, 5, &orders);
    let rows = std::fs::read_to_string(&orders).unwrap().lines().count() - 1;
    // A small window makes the client wait for answers many times.
    let out = fix_load(&fg, &orders, &["--window", "64"]);
    assert!(
        out.starts_with(&format!("{rows} requests through one FIX session")),
        "{out}"
    );
    // Again on the same session (ResetSeqNumFlag, fresh ClOrdIDs), paced, with a JSON report.
    let json = dir.path().join("r.json");
    let out = fix_load(
        &fg,
        &orders,
        &["--rate", "5000", "--json", json.to_str().unwrap()],
    );
    assert!(out.contains("due->first answer"), "{out}");
    let report = std::fs::read_to_string(&json).unwrap();
    assert!(report.contains(&format!("\"requests\":{rows}")), "{report}");
}
