//! End to end: a real manager, two executors and a user-sim load, watched by the real `tui`
//! binary in a tmux session. Finds both executors on the Grid view and a trade row on the Log
//! view, sees an executor killed go down, then quits with `q` and checks the tui exited
//! cleanly.
//!
//! Needs tmux and the workspace binaries (`cargo build --workspace`; `cargo test --workspace`
//! builds them). Fails with a clear message when either is missing.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{is_trade_row, shell_quote, sibling_bin, Children, Tmux};

fn wait_for_file(path: &Path, timeout: Duration, children: &mut Children) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if !text.trim().is_empty() {
                return text.trim().to_string();
            }
        }
        for (name, child) in children.0.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{name} exited early ({status}) before writing {}",
                    path.display()
                );
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} not written within {timeout:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn dump_logs(dir: &Path) -> String {
    let mut out = String::new();
    for name in ["manager", "exec-a", "exec-b", "user-sim"] {
        let err = std::fs::read_to_string(dir.join(format!("{name}.err"))).unwrap_or_default();
        let tail: Vec<&str> = err.lines().rev().take(15).collect();
        out.push_str(&format!("--- {name} stderr (last lines)\n"));
        for line in tail.into_iter().rev() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn tui_watches_a_real_grid() {
    common::require_tmux();
    let manager = sibling_bin("manager");
    let executor = sibling_bin("executor");
    let user_sim = sibling_bin("user-sim");
    let tui = sibling_bin("tui");

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let data = dir.join("data");
    let ready = dir.join("addr");
    let mut children = Children::default();

    children.spawn(
        "manager",
        Command::new(&manager)
            .args(["--port", "0", "--rules", "hose", "--data-dir"])
            .arg(&data)
            .arg("--ready-file")
            .arg(&ready),
        dir,
    );
    let addr = wait_for_file(&ready, Duration::from_secs(30), &mut children);
    let ca = data.join("cert.pem");
    let token = std::fs::read_to_string(data.join("token"))
        .expect("manager wrote its token")
        .trim()
        .to_string();

    for name in ["exec-a", "exec-b"] {
        children.spawn(
            name,
            Command::new(&executor)
                .args([
                    "--manager",
                    &addr,
                    "--token",
                    &token,
                    "--name",
                    name,
                    "--ca",
                ])
                .arg(&ca),
            dir,
        );
    }

    let cmd = format!(
        "{} --manager {addr} --ca {} --token {token} --log {}",
        shell_quote(&tui),
        shell_quote(&ca),
        shell_quote(&dir.join("tui.log"))
    );
    let tmux = Tmux::start(&cmd, 160, 45, &dir.join("tui.exit"));
    // Generous: under `cargo nextest` other suites load the same 2 cores.
    let wait = Duration::from_secs(30);

    let grid = tmux
        .wait_for(wait, |s| s.contains("exec-a") && s.contains("exec-b"))
        .unwrap_or_else(|s| {
            panic!(
                "executors never shown on the Grid view:\n{s}\n{}",
                dump_logs(dir)
            )
        });
    assert!(
        grid.lines()
            .any(|l| l.contains("exec-a") && l.contains("up")),
        "exec-a not up:\n{grid}"
    );

    children.spawn(
        "user-sim",
        Command::new(&user_sim)
            .args([
                "--manager",
                &addr,
                "--orders",
                "20000",
                "--rate",
                "2000",
                "--quiet",
                "--ca",
            ])
            .arg(&ca)
            .arg("--credentials")
            .arg(data.join("brokers.csv")),
        dir,
    );

    tmux.send_keys(&["Tab", "Tab"]);
    tmux.wait_for(wait, |s| {
        s.contains("Matching log") && s.lines().any(is_trade_row)
    })
    .unwrap_or_else(|s| panic!("no trade row on the Log view:\n{s}\n{}", dump_logs(dir)));

    // The Market view's book comes from the public feed, with levels in it.
    tmux.send_keys(&["2"]);
    tmux.wait_for(wait, |s| {
        s.contains("book (feed)")
            && s.lines()
                .filter(|l| l.contains(" book (feed)") || l.matches(',').count() >= 4)
                .count()
                > 1
    })
    .unwrap_or_else(|s| {
        panic!(
            "the Market view's book is not on the feed:\n{s}\n{}",
            dump_logs(dir)
        )
    });

    // An executor dies: back on the Grid view its row turns suspect, then down.
    tmux.send_keys(&["1"]);
    children.kill("exec-b");
    tmux.wait_for(wait, |s| {
        s.lines()
            .any(|l| l.contains("exec-b") && (l.contains("down") || l.contains("suspect")))
    })
    .unwrap_or_else(|s| panic!("exec-b never shown as lost:\n{s}\n{}", dump_logs(dir)));

    assert_eq!(tmux.quit(), 0, "tui exit status");
}
