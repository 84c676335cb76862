//! Bad input from the network gets a clear error or reject and changes nothing: garbage bytes,
//! oversized frames, a wrong protocol version, wrong credentials, a broker acting on another
//! broker's order, invalid orders. Afterwards the same manager's books are exactly the
//! sequential engine's.

use std::time::Duration;

use matching::{
    BrokerId, CancelOrder, Command, NewOrder, OrderId, OrderType, RejectReason, SecurityId, Side,
};
use proto::{
    ClientCommand, ClientMsg, Credentials, Hello, HelloReply, ManagerToClient, OrderState, Report,
    ReportEvent,
};
use testkit::{generate, local_reference, Grid, GridOptions};
use transport::quic::{client_endpoint, connect, resolve, SERVER_NAME};
use transport::{FrameReader, FrameWriter};

pub fn broker_creds(grid: &Grid, name: &str) -> Credentials {
    let text = std::fs::read_to_string(grid.credentials()).unwrap();
    let creds = transport::credentials::parse(&text, "brokers.csv").unwrap();
    Credentials::Broker {
        name: name.into(),
        secret: creds[name].clone(),
    }
}

async fn session(
    grid: &Grid,
    creds: Credentials,
) -> (quinn::Endpoint, quinn::Connection, FrameWriter, FrameReader) {
    let ep = client_endpoint(&grid.ca()).unwrap();
    let (conn, w, r, _welcome) = connect(&ep, resolve(&grid.addr).unwrap(), creds)
        .await
        .unwrap();
    (ep, conn, w, r)
}

/// Reports until `n` commands reached their final state.
async fn reports_until_final(r: &mut FrameReader, n: usize) -> Vec<Report> {
    let mut out = Vec::new();
    let mut finals = 0;
    while finals < n {
        let msg = tokio::time::timeout(Duration::from_secs(10), r.recv::<ManagerToClient>())
            .await
            .expect("reports in time")
            .unwrap()
            .unwrap();
        if let ManagerToClient::Reports(rs) = msg {
            for rep in rs {
                finals += (rep.last && !rep.passive) as usize;
                out.push(rep);
            }
        }
    }
    out
}

fn cmd(client_ref: u64, command: Command) -> ClientCommand {
    ClientCommand {
        client_ref,
        command,
    }
}

fn new_order(id: u64, security: u32, price: i64, qty: u64, side: Side) -> Command {
    Command::New(NewOrder {
        id: OrderId(id),
        broker: BrokerId(0),
        security: SecurityId(security),
        side,
        kind: OrderType::Limit,
        price,
        qty,
    })
}

fn cancel(id: u64, security: u32) -> Command {
    Command::Cancel(CancelOrder {
        id: OrderId(id),
        broker: BrokerId(0),
        security: SecurityId(security),
    })
}

/// The reject of each command, by client reference.
fn rejects_by_ref(reports: &[Report]) -> std::collections::BTreeMap<u64, RejectReason> {
    reports
        .iter()
        .filter_map(|r| match r.event {
            ReportEvent::Rejected { reason } => Some((r.client_ref, reason)),
            _ => None,
        })
        .collect()
}

/// Waits until the manager has closed the stream; returns its last error message, if any.
async fn closed_by_manager(r: &mut FrameReader) -> Option<Option<String>> {
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut last = None;
        loop {
            match r.recv::<ManagerToClient>().await {
                Ok(Some(ManagerToClient::Error(e))) => last = Some(e),
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return last,
            }
        }
    })
    .await
    .ok()
}

/// The books' totals, as a gateway session asks the manager for them, in the totals CSV.
pub async fn totals_csv(grid: &Grid) -> String {
    let ep = client_endpoint(&grid.ca()).unwrap();
    let (conn, mut w, mut r, welcome) = connect(
        &ep,
        resolve(&grid.addr).unwrap(),
        Credentials::Gateway {
            token: grid.token(),
        },
    )
    .await
    .unwrap();
    let table = user_sim::client::table_from(&welcome).unwrap();
    w.send(&ClientMsg::QueryTotals { query: 5 }).await.unwrap();
    let totals = user_sim::client::collect_totals(&mut r, 5).await.unwrap();
    conn.close(0u32.into(), b"done");
    let mut c = matching::stream::ReplayCollector::new(&table);
    c.set_final_totals(&totals);
    c.totals_csv()
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let grid = Grid::start(dir, GridOptions::default());
    // First a replay through the fresh grid, equal to the sequential engine.
    let stream = dir.join("orders.csv");
    generate(&grid.securities(), 5_000, 21, &stream);
    local_reference(dir, &grid.securities(), &stream, "hose", "local");
    let mut replay = grid.spawn_replay(&stream, "grid", &[]);
    assert!(
        replay.child.wait().unwrap().success(),
        "{}",
        replay.log_text()
    );
    testkit::assert_same_outputs(dir, "local", "grid");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ep = client_endpoint(&grid.ca()).unwrap();
        // Garbage instead of a hello: the connection is dropped.
        let conn = ep
            .connect(resolve(&grid.addr).unwrap(), SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        let (mut send, recv) = conn.open_bi().await.unwrap();
        send.write_all(&[0x17, 0x03, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3])
            .await
            .unwrap();
        send.finish().unwrap();
        assert!(
            closed_by_manager(&mut FrameReader::new(recv))
                .await
                .is_some(),
            "garbage hello not rejected"
        );

        // A wrong protocol version is refused with a reason.
        let (send, recv) = ep
            .connect(resolve(&grid.addr).unwrap(), SERVER_NAME)
            .unwrap()
            .await
            .unwrap()
            .open_bi()
            .await
            .unwrap();
        let (mut w, mut r) = (FrameWriter::new(send), FrameReader::new(recv));
        r.set_limit(proto::MAX_FRAME);
        w.send(&Hello {
            version: 999,
            credentials: Credentials::Monitor {
                token: grid.token(),
            },
        })
        .await
        .unwrap();
        match r.recv::<HelloReply>().await.unwrap() {
            Some(HelloReply::Refused { reason }) => {
                assert!(reason.contains("protocol version 999"), "{reason}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }

        // Wrong credentials: refused, final (a client must not retry), with a reason that
        // does not say whether the broker exists.
        for creds in [
            Credentials::Broker {
                name: "B01".into(),
                secret: "wrong".into(),
            },
            Credentials::Broker {
                name: "nobody".into(),
                secret: "x".into(),
            },
            Credentials::Gateway {
                token: "wrong".into(),
            },
            Credentials::Monitor {
                token: "wrong".into(),
            },
        ] {
            let err = connect(&ep, resolve(&grid.addr).unwrap(), creds)
                .await
                .err()
                .expect("must be refused");
            assert!(err.is_fatal(), "{err}");
            assert!(err.to_string().contains("refused"), "{err}");
        }

        // Invalid orders are rejected with their reason, correlated by client reference, in
        // one batch with valid ones; only the valid order is sequenced.
        let (_e1, _c1, mut w1, mut r1) = session(&grid, broker_creds(&grid, "B01")).await;
        let listing = matching::SecurityTable::parse_csv(
            &std::fs::read_to_string(grid.securities()).unwrap(),
        )
        .unwrap();
        let reference = listing.reference(SecurityId(0)).unwrap();
        assert!(reference < 10_000, "security 0 is in the tick-10 region");
        let far = matching::MarketRules::hose().round_to_tick(reference * 2, false);
        w1.send(&ClientMsg::Submit(vec![
            cmd(10, new_order(1, 60_000, reference, 100, Side::Buy)),
            cmd(11, new_order(2, 0, reference, 0, Side::Buy)),
            cmd(12, new_order(3, 0, reference + 5, 100, Side::Buy)),
            cmd(13, new_order(4, 0, far, 100, Side::Buy)),
            cmd(14, new_order(5, 0, reference, 150, Side::Buy)),
            cmd(15, new_order(6, 0, reference - 100, 100, Side::Buy)),
            cmd(16, new_order(7, 0, reference, u64::MAX - 5, Side::Buy)),
            // A cancel of an order the engine no longer has, next to gateway rejects.
            cmd(17, cancel(1, 0)),
        ]))
        .await
        .unwrap();
        let reps = reports_until_final(&mut r1, 8).await;
        let expected: std::collections::BTreeMap<u64, RejectReason> = [
            (10, RejectReason::UnknownSecurity),
            (11, RejectReason::ZeroQuantity),
            (12, RejectReason::OffTick),
            (13, RejectReason::OutsideBand),
            (14, RejectReason::OddLot),
            (16, RejectReason::QuantityTooLarge),
            (17, RejectReason::UnknownOrder),
        ]
        .into();
        assert_eq!(rejects_by_ref(&reps), expected);
        assert!(
            reps.iter().all(|r| r.seq == 0 || r.client_ref == 15),
            "only the valid order is sequenced"
        );

        // Another broker can neither cancel nor see B01's resting order: its ids are its own,
        // so it cannot even tell whether B01's order exists.
        let (_e2, _c2, mut w2, mut r2) = session(&grid, broker_creds(&grid, "B02")).await;
        w2.send(&ClientMsg::Submit(vec![
            cmd(1, cancel(6, 0)),
            cmd(2, cancel(987_654, 0)),
        ]))
        .await
        .unwrap();
        let reps = reports_until_final(&mut r2, 2).await;
        assert_eq!(
            rejects_by_ref(&reps),
            [
                (1, RejectReason::UnknownOrder),
                (2, RejectReason::UnknownOrder)
            ]
            .into(),
            "a foreign order and a missing one look the same"
        );
        w2.send(&ClientMsg::QueryOrders {
            query: 1,
            ids: vec![OrderId(6)],
        })
        .await
        .unwrap();
        assert!(user_sim::client::collect_orders(&mut r2, 1)
            .await
            .unwrap()
            .is_empty());
        w1.send(&ClientMsg::QueryOrders {
            query: 2,
            ids: vec![],
        })
        .await
        .unwrap();
        let mine = user_sim::client::collect_orders(&mut r1, 2).await.unwrap();
        let order = mine
            .iter()
            .find(|o| o.id == OrderId(6))
            .expect("B01 sees its order");
        assert_eq!(order.state, OrderState::Resting);
        let rejected = mine
            .iter()
            .find(|o| o.id == OrderId(4))
            .expect("rejected orders too");
        assert_eq!(
            (rejected.state, rejected.reject),
            (OrderState::Rejected, Some(RejectReason::OutsideBand))
        );

        // A broker may not change the phase: its session ends with a reason, and nothing of
        // the frame is sequenced, not even the valid order before the phase change (it would
        // rest and change the totals compared at the end).
        let (_e4, _c4, mut w4, mut r4) = session(&grid, broker_creds(&grid, "B04")).await;
        w4.send(&ClientMsg::Submit(vec![
            cmd(1, new_order(1, 0, reference, 100, Side::Sell)),
            cmd(2, Command::Phase(matching::Phase::Closed)),
        ]))
        .await
        .unwrap();
        let err = closed_by_manager(&mut r4)
            .await
            .expect("closed")
            .expect("an error message");
        assert!(err.contains("phase"), "{err}");

        // An oversized frame after the handshake ends only that session, with an error.
        let (_e3, _c3, mut w3, mut r3) = session(&grid, broker_creds(&grid, "B03")).await;
        w3.send_raw(&((proto::limits::CLIENT_MAX_FRAME as u32 + 1).to_le_bytes()))
            .await
            .unwrap();
        w3.send_raw(&[0u8; 64]).await.unwrap();
        let err = closed_by_manager(&mut r3)
            .await
            .expect("closed")
            .expect("an error message");
        assert!(err.contains("exceeds"), "{err}");

        // B01's own cancel still works: nothing was lost or changed by the bad input.
        w1.send(&ClientMsg::Submit(vec![cmd(20, cancel(6, 0))]))
            .await
            .unwrap();
        let reps = reports_until_final(&mut r1, 1).await;
        assert!(
            reps.iter().any(|r| r.client_ref == 20
                && matches!(r.event, ReportEvent::Cancelled { qty: 100, .. })),
            "{reps:?}"
        );
    });
    // The books are exactly the sequential engine's, as before the bad input.
    let totals = rt.block_on(totals_csv(&grid));
    assert_eq!(
        totals,
        std::fs::read_to_string(dir.join("local-totals.csv")).unwrap()
    );
}

#[test]
fn a_replay_that_cannot_be_exact_fails_loudly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let grid = Grid::start(dir, GridOptions::default());
    let stream = dir.join("orders.csv");
    generate(&grid.securities(), 500, 3, &stream);
    let mut first = grid.spawn_replay(&stream, "first", &[]);
    assert!(first.child.wait().unwrap().success());
    // The same file again through the same manager: it already holds those ids.
    let out = grid.user_sim(
        &grid
            .replay_args(&stream, "second")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already sequenced") && stderr.contains("fresh --data-dir"),
        "{stderr}"
    );
    assert!(!dir.join("second-trades.csv").exists(), "nothing written");
    // Rules that differ from the manager's are an error too, not silently ignored.
    let mut args = grid.replay_args(&stream, "third");
    let i = args.iter().position(|a| a == "--rules").unwrap();
    args[i + 1] = "hnx".into();
    let out = grid.user_sim(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rules hnx"));
}

#[test]
fn executor_with_a_wrong_token_is_refused_on_both_sides() {
    let tmp = tempfile::tempdir().unwrap();
    let mut grid = Grid::start(
        tmp.path(),
        GridOptions {
            executors: 0,
            ..GridOptions::default()
        },
    );
    let out = std::process::Command::new(testkit::bin("executor"))
        .args([
            "--manager",
            &grid.addr,
            "--ca",
            grid.ca().to_str().unwrap(),
            "--token",
            "not-the-token",
            "--name",
            "intruder",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused") && stderr.contains("wrong token"),
        "{stderr}"
    );
    grid.manager.wait_log("refused", 1, Duration::from_secs(5));
}

#[test]
fn executor_with_an_untrusted_certificate_exits_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = Grid::start(
        tmp.path(),
        GridOptions {
            executors: 0,
            ..GridOptions::default()
        },
    );
    // A different self-signed certificate: the pinned CA does not match the manager's.
    let other = tmp.path().join("other");
    transport::quic::load_or_create_identity(&other, None, None).unwrap();
    let started = std::time::Instant::now();
    let out = std::process::Command::new(testkit::bin("executor"))
        .args([
            "--manager",
            &grid.addr,
            "--ca",
            other.join("cert.pem").to_str().unwrap(),
            "--token",
            &grid.token(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "retrying forever is not an answer");
    assert!(started.elapsed() < Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
}

#[test]
fn a_dead_port_is_reported_within_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let grid = Grid::start(
        tmp.path(),
        GridOptions {
            executors: 0,
            ..GridOptions::default()
        },
    );
    // A port where nothing listens (QUIC gets no "connection refused").
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let started = std::time::Instant::now();
    let out = grid.user_sim(&[
        "orders",
        "--manager",
        &addr,
        "--ca",
        grid.ca().to_str().unwrap(),
        "--credentials",
        grid.credentials().to_str().unwrap(),
        "--broker",
        "B01",
    ]);
    assert!(!out.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is a manager listening"), "{stderr}");
    assert_eq!(
        stderr.matches("timed out").count(),
        1,
        "the cause once: {stderr}"
    );
}
