//! Runs the real `tui` binary in tmux against an in-process fake manager that speaks the
//! monitor protocol: checks the Grid and Log screens, that a manager restart shows
//! "disconnected, retrying" with the last known nodes, that the tui reconnects and shows the
//! new state (an executor down), and that `q` exits cleanly. Needs no other grid binary.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{is_trade_row, shell_quote, sibling_bin, Tmux};
use matching::{OrderId, SecurityId};
use proto::{
    Counters, Credentials, GridSnapshot, HelloReply, LatencySummary, LogEntry, LogKind, MonitorMsg,
    NodeInfo, NodeStatus, SecurityInfo, TradeTick, Welcome,
};

const TOKEN: &str = "operator-secret";

fn nodes(b_status: NodeStatus) -> Vec<NodeInfo> {
    [("exec-a", NodeStatus::Up), ("exec-b", b_status)]
        .iter()
        .enumerate()
        .map(|(i, (name, status))| NodeInfo {
            id: i as u32 + 1,
            name: name.to_string(),
            addr: format!("127.0.0.1:{}", 50_000 + i),
            status: *status,
            securities: 2,
            orders_handled: 1000 * (i as u64 + 1),
            orders_per_sec: 500.0,
            queue_depth: 3,
            heartbeat_age_ms: 80,
        })
        .collect()
}

/// Serves monitor sessions: a welcome, then a snapshot, a trade and sometimes a log line
/// every 100 ms.
async fn serve(endpoint: quinn::Endpoint, session: u32, b_status: NodeStatus) {
    let seq = Arc::new(AtomicU64::new(1));
    while let Some(incoming) = endpoint.accept().await {
        let seq = seq.clone();
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            let Ok((mut w, _r, hello)) = transport::quic::accept_hello(&conn).await else {
                return;
            };
            if hello.credentials
                != (Credentials::Monitor {
                    token: TOKEN.into(),
                })
            {
                let _ = w
                    .send(&HelloReply::Refused {
                        reason: "bad token".into(),
                    })
                    .await;
                // Let the refusal reach the client before the connection is dropped.
                let _ = w.finish();
                let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
                return;
            }
            let welcome = Welcome {
                session,
                securities: ["AAA", "FPT", "VNM", "VIC"]
                    .iter()
                    .enumerate()
                    .map(|(i, c)| SecurityInfo {
                        id: SecurityId(i as u32),
                        code: c.to_string(),
                        reference_price: 25_000,
                    })
                    .collect(),
                rules: "hose".into(),
                broker: None,
                heartbeat_ms: 500,
                max_order_id: 0,
                limits: proto::SessionLimits {
                    max_frame: 1 << 20,
                    max_batch: 4096,
                    max_in_flight: 1000,
                    max_order_id: 1 << 40,
                },
                phase: matching::Phase::Continuous,
                sequenced: 0,
            };
            if w.send(&HelloReply::Welcome(welcome)).await.is_err() {
                return;
            }
            for tick in 0u64.. {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let snap = GridSnapshot {
                    uptime_ms: tick * 100,
                    shard_map_version: 1,
                    nodes: nodes(b_status),
                    counters: Counters {
                        received: n * 10,
                        accepted: n * 10,
                        rejected: 0,
                        fills: n,
                        cancelled: 0,
                    },
                    orders_per_sec: 100.0,
                    latency: LatencySummary::default(),
                    securities: vec![],
                    phase: matching::Phase::Continuous,
                    exchange_time: 0,
                    schedule: "continuous".into(),
                };
                let trade = TradeTick {
                    uptime_ms: tick * 100,
                    security: SecurityId((n % 4) as u32),
                    price: 25_000 + (n % 7) as i64 * 50,
                    qty: 100,
                    buy: OrderId(2 * n),
                    sell: OrderId(2 * n + 1),
                };
                let mut ok = w.send(&MonitorMsg::Snapshot(snap)).await.is_ok();
                ok &= w.send(&MonitorMsg::Trades(vec![trade])).await.is_ok();
                if tick % 10 == 0 {
                    let line = LogEntry {
                        uptime_ms: tick * 100,
                        kind: LogKind::Info,
                        text: format!("fake tick {tick}"),
                    };
                    ok &= w.send(&MonitorMsg::Log(vec![line])).await.is_ok();
                }
                if !ok {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
}

fn start_fake(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    addr: SocketAddr,
    session: u32,
    b: NodeStatus,
) -> quinn::Endpoint {
    let _guard = rt.enter();
    // The previous server's socket may take a moment to be released after a restart.
    for _ in 0..50 {
        let (identity, _) =
            transport::quic::load_or_create_identity(dir, None, None).expect("identity");
        match transport::quic::server_endpoint(addr, identity) {
            Ok(endpoint) => {
                rt.spawn(serve(endpoint.clone(), session, b));
                return endpoint;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    panic!("could not bind the fake manager to {addr}");
}

#[test]
fn tui_shows_fake_grid_survives_restart_and_quits() {
    let tui = sibling_bin("tui");
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let endpoint = start_fake(
        &rt,
        dir.path(),
        "127.0.0.1:0".parse().expect("addr"),
        1,
        NodeStatus::Up,
    );
    let addr = endpoint.local_addr().expect("local addr");

    let cmd = format!(
        "{} --manager {addr} --ca {} --token {TOKEN} --log {}",
        shell_quote(&tui),
        shell_quote(&dir.path().join("cert.pem")),
        shell_quote(&dir.path().join("tui.log")),
    );
    let tmux = Tmux::start(&cmd, 160, 45, &dir.path().join("tui.exit"));
    // Generous: under `cargo nextest` other suites load the same 2 cores.
    let wait = Duration::from_secs(30);

    let grid = tmux
        .wait_for(wait, |s| {
            s.contains("exec-a") && s.contains("exec-b") && s.contains("session 1")
        })
        .unwrap_or_else(|s| panic!("nodes never shown on the Grid view:\n{s}"));
    assert!(grid.contains("Nodes (2)"), "{grid}");

    tmux.send_keys(&["Tab", "Tab"]);
    tmux.wait_for(wait, |s| {
        s.contains("Matching log") && s.lines().any(is_trade_row)
    })
    .unwrap_or_else(|s| panic!("no trade row on the Log view:\n{s}"));

    // Manager goes away: the header says so and the nodes stay as last known.
    tmux.send_keys(&["Tab"]);
    endpoint.close(0u32.into(), b"restart");
    drop(endpoint);
    tmux.wait_for(wait, |s| {
        s.contains("disconnected, retrying") && s.contains("last known") && s.contains("exec-a")
    })
    .unwrap_or_else(|s| panic!("disconnection not shown:\n{s}"));

    // Manager comes back on the same address with exec-b down: the tui reconnects by itself.
    let endpoint = start_fake(&rt, dir.path(), addr, 2, NodeStatus::Down);
    let back = tmux
        .wait_for(wait, |s| {
            s.contains("session 2")
                && s.lines()
                    .any(|l| l.contains("exec-b") && l.contains("down"))
        })
        .unwrap_or_else(|s| panic!("reconnection not shown:\n{s}"));
    assert!(!back.contains("disconnected"), "{back}");

    assert_eq!(tmux.quit(), 0, "tui exit status");
    endpoint.close(0u32.into(), b"done");
}

#[test]
fn tui_refused_exits_with_the_reason() {
    let tui = sibling_bin("tui");
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let endpoint = start_fake(
        &rt,
        dir.path(),
        "127.0.0.1:0".parse().expect("addr"),
        1,
        NodeStatus::Up,
    );
    let addr = endpoint.local_addr().expect("local addr");
    let stderr = dir.path().join("tui.err");
    let cmd = format!(
        "{} --manager {addr} --ca {} --token wrong-token 2> {}",
        shell_quote(&tui),
        shell_quote(&dir.path().join("cert.pem")),
        shell_quote(&stderr)
    );
    let tmux = Tmux::start(&cmd, 120, 30, &dir.path().join("tui.exit"));
    // A refusal is final: the tui gives the terminal back and exits non-zero with the reason
    // (retrying with the same token cannot succeed).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = tmux.exit_status() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tui did not exit:\n{}",
            tmux.capture()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 1, "tui exit status");
    let err = std::fs::read_to_string(&stderr).unwrap();
    assert!(
        err.contains("refused") && err.contains("bad token"),
        "{err}"
    );
}
