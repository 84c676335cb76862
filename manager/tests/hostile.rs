//! Hostile or broken peers against a real manager process: nothing they send can make it hold
//! much memory, slow anyone else down or stop it, and nothing forged reaches a broker. Where
//! memory is the point, the manager's peak RSS (VmHWM) is measured and bounded.

use std::time::{Duration, Instant};

use matching::{BrokerId, Command, NewOrder, OrderId, OrderType, SecurityId, Side};
use proto::{
    ClientCommand, ClientMsg, Credentials, EventGroup, FromExecutor, ManagerToClient, ToExecutor,
};
use testkit::{generate, local_reference, Grid, GridOptions};
use transport::quic::{client_endpoint, connect, resolve, SERVER_NAME};
use transport::WireError;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A field of /proc/<pid>/status, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn peak_mib(grid: &Grid) -> u64 {
    status_kib(grid.manager.pid(), "VmHWM:") / 1024
}

fn broker(grid: &Grid, name: &str) -> Credentials {
    let text = std::fs::read_to_string(grid.credentials()).unwrap();
    let creds = transport::credentials::parse(&text, "brokers.csv").unwrap();
    Credentials::Broker {
        name: name.into(),
        secret: creds[name].clone(),
    }
}

fn grid_with(dir: &std::path::Path, executors: usize, flags: &[&str]) -> Grid {
    Grid::start(
        dir,
        GridOptions {
            executors,
            manager_args: flags.iter().map(|s| s.to_string()).collect(),
            ..GridOptions::default()
        },
    )
}

/// Resting limit orders far from the touch, in the broker's own id space.
fn resting(from: u64, n: u64, reference: i64) -> Vec<ClientCommand> {
    (from..from + n)
        .map(|id| ClientCommand {
            client_ref: id,
            command: Command::New(NewOrder {
                id: OrderId(id),
                broker: BrokerId(0),
                security: SecurityId((id % 3) as u32),
                side: Side::Buy,
                kind: OrderType::Limit,
                price: reference,
                qty: 100,
            }),
        })
        .collect()
}

/// Sends `cmds` in frames of at most 4096 and waits until all are final.
async fn submit_all(
    w: &mut transport::FrameWriter,
    r: &mut transport::FrameReader,
    cmds: &[ClientCommand],
) {
    for c in cmds.chunks(4096) {
        w.send(&ClientMsg::Submit(c.to_vec())).await.unwrap();
    }
    let mut finals = 0;
    while finals < cmds.len() {
        for rep in user_sim::client::next_reports(r).await.unwrap() {
            finals += (rep.last && !rep.passive) as usize;
        }
    }
}

/// Unauthenticated peers announce 16 MiB frames (300 connections) or send nothing: the
/// manager reads at most 4 KiB before a hello and drops silent peers after the handshake
/// timeout. Before the fix, 300 such peers made it allocate 5 GiB.
#[test]
fn unauthenticated_peers_cannot_make_the_manager_hold_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = grid_with(tmp.path(), 0, &["--handshake-timeout-ms", "1500"]);
    let before = peak_mib(&grid);
    let rt = rt();
    let held = rt.block_on(async {
        let ep = client_endpoint(&grid.ca()).unwrap();
        let addr = resolve(&grid.addr).unwrap();
        let mut held = Vec::new();
        for i in 0..300 {
            let conn = ep.connect(addr, SERVER_NAME).unwrap().await.unwrap();
            let (mut send, recv) = conn.open_bi().await.unwrap();
            if i % 2 == 0 {
                // A header announcing 16 MiB, then nothing.
                send.write_all(&(16u32 << 20).to_le_bytes()).await.unwrap();
            } else {
                // A plausible 4000-byte hello that never comes.
                send.write_all(&4000u32.to_le_bytes()).await.unwrap();
            }
            held.push((conn, send, recv));
        }
        // Every one of them is dropped: at once (too large) or at the handshake timeout.
        let started = Instant::now();
        for (conn, _, _) in &held {
            tokio::time::timeout(Duration::from_secs(10), conn.closed())
                .await
                .expect("the manager drops a peer that sends no valid hello");
        }
        started.elapsed()
    });
    assert!(held < Duration::from_secs(10));
    let after = peak_mib(&grid);
    eprintln!("hostile: 300 unauthenticated peers, manager peak RSS {before} -> {after} MiB, all dropped within {held:?}");
    assert!(
        after < before + 100,
        "peak RSS grew from {before} to {after} MiB"
    );
}

/// A logged-in broker that announces a frame and trickles it (or sends nothing) is cut off
/// after the frame timeout; one that announces more than the session limit at once.
#[test]
fn a_logged_in_peer_cannot_hold_a_frame_open() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = grid_with(tmp.path(), 1, &["--frame-timeout-ms", "1000"]);
    rt().block_on(async {
        let ep = client_endpoint(&grid.ca()).unwrap();
        let addr = resolve(&grid.addr).unwrap();
        let (_c, mut w, mut r, _) = connect(&ep, addr, broker(&grid, "B01")).await.unwrap();
        w.send_raw(&1_000_000u32.to_le_bytes()).await.unwrap();
        w.send_raw(&[0u8; 100]).await.unwrap();
        let started = Instant::now();
        let err = loop {
            match tokio::time::timeout(Duration::from_secs(10), r.recv::<ManagerToClient>())
                .await
                .expect("the manager ends the session")
            {
                Ok(Some(ManagerToClient::Error(e))) => break e,
                Ok(Some(_)) => continue,
                other => panic!("expected an error first, got {other:?}"),
            }
        };
        assert!(err.contains("did not arrive"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    });
}

/// Connection cap and per-broker session cap: the extra ones are told "busy", the others
/// keep working.
#[test]
fn connection_and_session_caps_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = grid_with(
        tmp.path(),
        1,
        &["--max-connections", "8", "--max-sessions-per-broker", "2"],
    );
    rt().block_on(async {
        let ep = client_endpoint(&grid.ca()).unwrap();
        let addr = resolve(&grid.addr).unwrap();
        let b01a = connect(&ep, addr, broker(&grid, "B01")).await.unwrap();
        let b01b = connect(&ep, addr, broker(&grid, "B01")).await.unwrap();
        match connect(&ep, addr, broker(&grid, "B01")).await {
            Err(WireError::Busy(reason)) => assert!(reason.contains("2 sessions"), "{reason}"),
            other => panic!(
                "a third B01 session must be refused as busy: {:?}",
                other.err()
            ),
        }
        let mut others = Vec::new();
        for name in ["B02", "B03", "B04", "B05", "B06"] {
            others.push(connect(&ep, addr, broker(&grid, name)).await.unwrap());
        }
        // 1 executor + 7 client connections: the next one is over the cap.
        match connect(&ep, addr, broker(&grid, "B07")).await {
            Err(WireError::Busy(reason)) => {
                assert!(reason.contains("too many connections"), "{reason}")
            }
            other => panic!("over the connection cap: {:?}", other.err()),
        }
        drop(others.pop());
        drop(b01b);
        // Room again once the manager has seen those connections close (the closes travel;
        // a loaded machine may take a while): poll, never sleep a guess.
        let started = std::time::Instant::now();
        let _b07 = loop {
            match connect(&ep, addr, broker(&grid, "B07")).await {
                Ok(c) => break c,
                Err(WireError::Busy(reason)) if started.elapsed() < Duration::from_secs(10) => {
                    assert!(reason.contains("too many connections"), "{reason}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("room must come back after two connections closed: {e}"),
            }
        };
        // The sessions held meanwhile still work.
        let (_c, mut w, mut r, welcome) = b01a;
        let reference = welcome.securities[0].reference_price;
        submit_all(&mut w, &mut r, &resting(1, 10, reference)).await;
    });
}

/// A broker that asks for its orders again and again without reading the answers is cut off;
/// the manager's memory stays bounded and another broker is served meanwhile. Before the fix
/// this grew the manager from 194 MiB to 2.7 GiB.
#[test]
fn a_query_spammer_that_never_reads_is_disconnected() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = grid_with(tmp.path(), 1, &["--slow-client-ms", "1500"]);
    let rt = rt();
    let (before, after) = rt.block_on(async {
        let ep = client_endpoint(&grid.ca()).unwrap();
        let addr = resolve(&grid.addr).unwrap();
        let (conn, mut w, mut r, welcome) = connect(&ep, addr, broker(&grid, "B01")).await.unwrap();
        let reference = welcome.securities[0].reference_price;
        // 60,000 resting orders: each full answer is about 3.4 MB.
        submit_all(&mut w, &mut r, &resting(1, 60_000, reference)).await;
        let before = peak_mib(&grid);
        let spam = tokio::spawn(async move {
            for q in 0..2_000u64 {
                if w.send(&ClientMsg::QueryOrders {
                    query: q,
                    ids: vec![],
                })
                .await
                .is_err()
                {
                    break;
                }
            }
            w
        });
        // Meanwhile another broker trades normally.
        let (_c2, mut w2, mut r2, _) = connect(&ep, addr, broker(&grid, "B02")).await.unwrap();
        let started = Instant::now();
        submit_all(&mut w2, &mut r2, &resting(1, 2_000, reference)).await;
        eprintln!(
            "hostile: another broker's 2,000 orders took {:?} during the spam",
            started.elapsed()
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::timeout(Duration::from_secs(30), conn.closed())
            .await
            .expect("the spammer is disconnected");
        drop(spam);
        (before, peak_mib(&grid))
    });
    eprintln!("hostile: query spammer, manager peak RSS {before} -> {after} MiB");
    assert!(
        after < before + 300,
        "peak RSS grew from {before} to {after} MiB"
    );
    assert!(grid.manager.log_text().contains("disconnecting"));
}

/// A broker that submits without ever reading its reports stops being read itself at the
/// in-flight limit and is then disconnected; nothing it did is lost (its orders stay).
#[test]
fn a_submitter_that_never_reads_is_throttled_then_disconnected() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = grid_with(
        tmp.path(),
        1,
        &["--max-in-flight", "5000", "--slow-client-ms", "1500"],
    );
    let before = peak_mib(&grid);
    rt().block_on(async {
        // A client on a slow link: small receive windows, so what it does not read stays in
        // the manager's queue rather than in its own buffers.
        let mut slow = transport::quic::transport_config();
        slow.stream_receive_window(quinn::VarInt::from_u32(64 * 1024))
            .receive_window(quinn::VarInt::from_u32(128 * 1024));
        let ep = transport::quic::client_endpoint_with(&grid.ca(), slow).unwrap();
        let addr = resolve(&grid.addr).unwrap();
        let (conn, mut w, _r, welcome) = connect(&ep, addr, broker(&grid, "B01")).await.unwrap();
        let reference = welcome.securities[0].reference_price;
        let cmds = resting(1, 200_000, reference);
        let sender = tokio::spawn(async move {
            for c in cmds.chunks(4096) {
                if w.send(&ClientMsg::Submit(c.to_vec())).await.is_err() {
                    break;
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(30), conn.closed())
            .await
            .expect("disconnected");
        sender.abort();
        // What it got in is sequenced and stays: B01 can log in again and see its orders.
        let ep = client_endpoint(&grid.ca()).unwrap();
        let (_c, mut w, mut r, _) = connect(&ep, addr, broker(&grid, "B01")).await.unwrap();
        w.send(&ClientMsg::QueryOrders {
            query: 1,
            ids: vec![],
        })
        .await
        .unwrap();
        let orders = user_sim::client::collect_orders(&mut r, 1).await.unwrap();
        eprintln!(
            "hostile: a non-reading submitter got {} orders in before it was cut off",
            orders.len()
        );
        assert!(!orders.is_empty() && orders.len() < 200_000);
    });
    let after = peak_mib(&grid);
    eprintln!("hostile: non-reading submitter, manager peak RSS {before} -> {after} MiB");
    assert!(
        after < before + 300,
        "peak RSS grew from {before} to {after} MiB"
    );
}

/// A 16 MB broker name in a hello is refused by the 4 KiB hello limit: no 80 MB log line.
#[test]
fn a_huge_name_in_a_hello_is_refused_without_a_huge_log_line() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = grid_with(tmp.path(), 0, &[]);
    let log_before = std::fs::metadata(&grid.manager.log).unwrap().len();
    rt().block_on(async {
        let ep = client_endpoint(&grid.ca()).unwrap();
        let addr = resolve(&grid.addr).unwrap();
        let creds = Credentials::Broker {
            name: "x".repeat(16 << 20),
            secret: "s".into(),
        };
        let err = connect(&ep, addr, creds).await.err().expect("refused");
        // The manager drops the stream after the header: the client sees it end.
        eprintln!("hostile: huge hello -> {err}");
        let long = Credentials::Broker {
            name: "y".repeat(300),
            secret: "s".into(),
        };
        let err = connect(&ep, addr, long).await.err().expect("refused");
        assert!(matches!(err, WireError::Refused(_)), "{err}");
    });
    std::thread::sleep(Duration::from_millis(200));
    let grown = std::fs::metadata(&grid.manager.log).unwrap().len() - log_before;
    assert!(grown < 16 * 1024, "the log grew by {grown} bytes");
}

/// A replay file naming a 300-byte broker: refused with the reason; the manager's core keeps
/// running and serves the next client (it used to exit with "core stopped").
#[test]
fn an_overlong_broker_name_in_a_replay_file_is_refused_and_the_core_runs_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut grid = grid_with(dir, 1, &[]);
    let (_, code, reference) =
        matching::SecurityTable::parse_csv(&std::fs::read_to_string(grid.securities()).unwrap())
            .unwrap()
            .iter()
            .map(|(i, c, p)| (i, c.to_string(), p))
            .next()
            .unwrap();
    let stream = dir.join("long.csv");
    std::fs::write(
        &stream,
        format!(
            "action,order_id,broker,security,side,type,price,qty\nNEW,1,{},{code},BUY,LO,{reference},100\n",
            "b".repeat(300)
        ),
    )
    .unwrap();
    let mut replay = grid.spawn_replay(&stream, "long", &[]);
    assert!(!replay.child.wait().unwrap().success());
    let log = replay.log_text();
    eprintln!("hostile: overlong broker name -> {}", log.trim());
    assert!(log.contains("broker") && log.contains("long"), "{log}");
    assert!(grid.manager.running(), "{}", grid.manager.log_text());
    let out = grid.load(&["--orders", "200", "--quiet"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An executor holding the token forges a fill for a security it does not own, against an
/// invented order of another broker, for 1,000,000,000 shares at price 1; then one for a
/// security it owns. The manager refuses both, treats it as failed, and the grid's result
/// still equals the sequential engine's.
#[test]
fn a_forging_executor_is_dropped_and_nothing_forged_is_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut grid = grid_with(dir, 1, &[]);
    let stream = dir.join("orders.csv");
    generate(&grid.securities(), 3_000, 9, &stream);
    local_reference(dir, &grid.securities(), &stream, "hose", "local");
    rt().block_on(async {
        let ep = client_endpoint(&grid.ca()).unwrap();
        let addr = resolve(&grid.addr).unwrap();
        let creds = Credentials::Executor {
            name: "rogue".into(),
            token: grid.token(),
        };
        let (conn, mut w, mut r, _) = connect(&ep, addr, creds).await.unwrap();
        // Learn what it was given.
        let mine = loop {
            match r.recv::<ToExecutor>().await.unwrap().unwrap() {
                ToExecutor::Assign { securities, .. } if !securities.is_empty() => {
                    break securities
                }
                _ => {}
            }
        };
        let not_mine = (0..200u32)
            .map(SecurityId)
            .find(|s| !mine.contains(s))
            .unwrap();
        let forged = |security| EventGroup {
            seq: 1,
            security,
            events: vec![matching::Event::Fill(matching::Fill {
                security,
                price: 1,
                qty: 1_000_000_000,
                buy: OrderId(1),
                sell: OrderId(424_242),
                buy_broker: BrokerId(0),
                sell_broker: BrokerId(1),
                aggressor: matching::Aggressor::Buy,
            })]
            .into(),
            last: true,
        };
        w.send(&FromExecutor::Events(vec![forged(not_mine)]))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), conn.closed())
            .await
            .expect("the forger is disconnected");
        // Again, for a security it owns (a second rogue session).
        let (conn, mut w, mut r, _) = connect(
            &ep,
            addr,
            Credentials::Executor {
                name: "rogue2".into(),
                token: grid.token(),
            },
        )
        .await
        .unwrap();
        let mine = loop {
            match r.recv::<ToExecutor>().await.unwrap().unwrap() {
                ToExecutor::Assign { securities, .. } if !securities.is_empty() => {
                    break securities
                }
                _ => {}
            }
        };
        w.send(&FromExecutor::Events(vec![forged(mine[0])]))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), conn.closed())
            .await
            .expect("the second forger is disconnected");
    });
    grid.manager
        .wait_log("inconsistent events", 2, Duration::from_secs(5));
    let mut replay = grid.spawn_replay(&stream, "grid", &[]);
    assert!(
        replay.child.wait().unwrap().success(),
        "{}",
        replay.log_text()
    );
    testkit::assert_same_outputs(dir, "local", "grid");
}
