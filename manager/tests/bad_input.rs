//! Bad input from the network gets a clear error or reject and changes nothing: garbage bytes,
//! an oversized frame, a wrong protocol version, wrong credentials, a broker cancelling or
//! querying another broker's order, invalid orders. Afterwards the same manager still produces
//! exactly the sequential engine's results for a fresh stream.

use std::time::Duration;

use matching::{
    BrokerId, CancelOrder, Command, Event, NewOrder, OrderId, OrderType, RejectReason, SecurityId,
    Side,
};
use proto::quic::{client_endpoint, connect, resolve, FrameReader, FrameWriter, SERVER_NAME};
use proto::{ClientMsg, Credentials, Hello, HelloReply, ManagerToClient, OrderState, Report};
use testkit::{assert_same_outputs, generate, local_reference, Grid, GridOptions};

fn broker_creds(grid: &Grid, name: &str) -> Credentials {
    let text = std::fs::read_to_string(grid.credentials()).unwrap();
    let creds = proto::credentials::parse(&text, "brokers.csv").unwrap();
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

/// Reports until `n` commands reached their final state (or a non-report message).
async fn reports_until_final(r: &mut FrameReader, n: usize) -> Vec<Report> {
    let mut out = Vec::new();
    let mut finals = 0;
    while finals < n {
        let msg = tokio::time::timeout(Duration::from_secs(10), r.recv::<ManagerToClient>())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let ManagerToClient::Reports(rs) = msg {
            for rep in rs {
                finals += rep.last as usize;
                out.push(rep);
            }
        }
    }
    out
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

fn rejected(reports: &[Report]) -> Vec<RejectReason> {
    reports
        .iter()
        .filter_map(|r| match r.event {
            Event::Rejected { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

/// Waits until the manager has closed `conn` (or the stream ends).
async fn closed_by_manager(r: &mut FrameReader) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match r.recv::<ManagerToClient>().await {
                    Ok(Some(ManagerToClient::Error(_))) => continue,
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => return,
                }
            }
        })
        .await,
        Ok(())
    )
}

#[test]
fn bad_input_is_refused_and_the_manager_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let grid = Grid::start(
        dir,
        GridOptions {
            executors: 2,
            ..GridOptions::default()
        },
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Garbage instead of a hello: the connection is dropped.
        let ep = client_endpoint(&grid.ca()).unwrap();
        let conn = ep
            .connect(resolve(&grid.addr).unwrap(), SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        let (mut send, recv) = conn.open_bi().await.unwrap();
        send.write_all(&[
            0x17, 0x03, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5,
        ])
        .await
        .unwrap();
        send.finish().unwrap();
        assert!(
            closed_by_manager(&mut FrameReader::new(recv)).await,
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

        // Wrong credentials: refused with a clear message on the client side.
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
            assert!(err.to_string().contains("refused"), "{err}");
        }

        // Invalid orders are rejected with their reason; nothing is sequenced for them.
        let (_e1, _c1, mut w1, mut r1) = session(&grid, broker_creds(&grid, "B01")).await;
        let listing = matching::SecurityTable::parse_csv(
            &std::fs::read_to_string(grid.securities()).unwrap(),
        )
        .unwrap();
        let reference = listing.reference(SecurityId(0)).unwrap();
        assert!(
            reference < 10_000,
            "security 0 of the synthetic listing is in the tick-10 region"
        );
        w1.send(&ClientMsg::Submit(vec![
            new_order(1_000_001, 60_000, reference, 100, Side::Buy),
            new_order(1_000_002, 0, reference, 0, Side::Buy),
            new_order(1_000_003, 0, reference + 5, 100, Side::Buy),
            new_order(
                1_000_004,
                0,
                matching::MarketRules::hose().round_to_tick(reference * 2, false),
                100,
                Side::Buy,
            ),
            new_order(1_000_005, 0, reference, 150, Side::Buy),
            new_order(1_000_006, 0, reference - 100, 100, Side::Buy),
        ]))
        .await
        .unwrap();
        let reps = reports_until_final(&mut r1, 6).await;
        assert_eq!(
            rejected(&reps),
            vec![
                RejectReason::UnknownSecurity,
                RejectReason::ZeroQuantity,
                RejectReason::OffTick,
                RejectReason::OutsideBand,
                RejectReason::OddLot
            ]
        );
        assert!(
            reps.iter()
                .all(|r| r.seq == 0 || r.order == OrderId(1_000_006)),
            "only the valid order is sequenced"
        );

        // Another broker can neither cancel nor see B01's resting order.
        let (_e2, _c2, mut w2, mut r2) = session(&grid, broker_creds(&grid, "B02")).await;
        w2.send(&ClientMsg::Submit(vec![Command::Cancel(CancelOrder {
            id: OrderId(1_000_006),
            broker: BrokerId(0),
            security: SecurityId(0),
        })]))
        .await
        .unwrap();
        let reps = reports_until_final(&mut r2, 1).await;
        assert_eq!(rejected(&reps), vec![RejectReason::NotOwner]);
        w2.send(&ClientMsg::QueryOrders {
            ids: vec![OrderId(1_000_006)],
        })
        .await
        .unwrap();
        match r2.recv::<ManagerToClient>().await.unwrap() {
            Some(ManagerToClient::Orders(list)) => {
                assert!(list.is_empty(), "B02 sees B01's order: {list:?}")
            }
            other => panic!("{other:?}"),
        }
        w1.send(&ClientMsg::QueryOrders { ids: vec![] })
            .await
            .unwrap();
        let mine = loop {
            if let Some(ManagerToClient::Orders(list)) = r1.recv::<ManagerToClient>().await.unwrap()
            {
                break list;
            }
        };
        let order = mine
            .iter()
            .find(|o| o.id == OrderId(1_000_006))
            .expect("B01 sees its order");
        assert_eq!(order.state, OrderState::Resting);

        // An oversized frame after the handshake ends only that session, with an error.
        let (_e3, _c3, mut w3, mut r3) = session(&grid, broker_creds(&grid, "B03")).await;
        w3.send_raw(&((proto::MAX_FRAME as u32 + 1).to_le_bytes()))
            .await
            .unwrap();
        w3.send_raw(&[0u8; 64]).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), r3.recv::<ManagerToClient>())
            .await
            .unwrap();
        match first {
            Ok(Some(ManagerToClient::Error(e))) => assert!(e.contains("exceeds"), "{e}"),
            other => panic!("expected an error for the oversized frame, got {other:?}"),
        }
        assert!(closed_by_manager(&mut r3).await);

        // B01's own cancel still works: nothing was lost or changed by the bad input.
        w1.send(&ClientMsg::Submit(vec![Command::Cancel(CancelOrder {
            id: OrderId(1_000_006),
            broker: BrokerId(0),
            security: SecurityId(0),
        })]))
        .await
        .unwrap();
        let reps = reports_until_final(&mut r1, 1).await;
        assert!(
            reps.iter().any(|r| matches!(
                r.event,
                Event::Cancelled {
                    id: OrderId(1_000_006),
                    qty: 100
                }
            )),
            "{reps:?}"
        );
    });

    // The grid still equals the sequential engine on a fresh stream (ids start at 1).
    let stream = dir.join("orders.csv");
    generate(&grid.securities(), 5_000, 21, &stream);
    local_reference(dir, &grid.securities(), &stream, "hose", "local");
    let mut replay = grid.spawn_replay(&stream, "grid", &[]);
    assert!(
        replay.child.wait().unwrap().success(),
        "{}",
        replay.log_text()
    );
    assert_same_outputs(dir, "local", "grid");
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
fn executor_with_an_untrusted_certificate_cannot_connect() {
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
    proto::quic::load_or_create_identity(&other, None, None).unwrap();
    let mut child = std::process::Command::new(testkit::bin("executor"))
        .args([
            "--manager",
            &grid.addr,
            "--ca",
            other.join("cert.pem").to_str().unwrap(),
            "--token",
            &grid.token(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It keeps retrying; its log must name the TLS failure.
    std::thread::sleep(Duration::from_millis(1500));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach the manager")
            && stderr.to_lowercase().contains("certificate"),
        "{stderr}"
    );
}
