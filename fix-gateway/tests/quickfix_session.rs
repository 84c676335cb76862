//! Session-level tests of the real `fix-gateway` process against QuickFIX/C++, an independently
//! written FIX engine with its own session layer and store (see tests/quickfix/fixclient.cpp).

mod support;

use std::time::Duration;

use support::{field, is_in, Client, ClientOpts, Gateway, Relay, WAIT};

const CREDS: &str = "BRK1,s3cret\nBRK2,other\n";

fn order(id: &str) -> String {
    format!("35=D|11={id}|55=VNM|54=1|38=100|40=2|44=10000|60=20240101-00:00:00")
}

fn ack_of<'a>(id: &'a str) -> impl Fn(&str) -> bool + 'a {
    move |l: &str| is_in(l, "8") && field(l, 11) == Some(id)
}

#[test]
fn logon_with_good_password_orders_are_acknowledged_and_logout_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), CREDS, 0);
    let mut c = Client::start(
        gw.addr.port(),
        &dir.path().join("c1"),
        ClientOpts::default(),
    );
    c.logon();
    let reply = c.expect(|l| is_in(l, "A"), WAIT);
    assert_eq!(field(&reply, 49), Some("GRIDMATCH"));
    assert_eq!(field(&reply, 108), Some("30"), "HeartBtInt echoed");
    c.send(&order("o1"));
    let ack = c.expect(ack_of("o1"), WAIT);
    assert_eq!(field(&ack, 150), Some("0"), "ExecType=New");
    assert_eq!(field(&ack, 151), Some("100"));
    c.cmd("stop");
    c.expect(|l| is_in(l, "5"), WAIT);
    c.expect(|l| l == "logout", WAIT);
    assert!(gw.log().contains("peer logged out"), "{}", gw.log());
}

#[test]
fn bad_password_gets_a_logout_with_the_reason_and_numbers_stay_usable() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), CREDS, 0);
    let store = dir.path().join("c1");

    // First a good session, so the broker's store exists.
    let mut c = Client::start(gw.addr.port(), &store, ClientOpts::default());
    c.logon();
    c.send(&order("o1"));
    c.expect(ack_of("o1"), WAIT);
    c.stop();

    let mut bad = Client::start(
        gw.addr.port(),
        &store,
        ClientOpts {
            password: "wrong",
            ..Default::default()
        },
    );
    bad.cmd("start");
    let logout = bad.expect(|l| is_in(l, "5"), WAIT);
    assert_eq!(field(&logout, 58), Some("unknown broker or wrong password"));
    bad.cmd("stop_now");
    assert!(
        !bad.seen.iter().any(|l| l == "logon"),
        "never logged on: {:?}",
        bad.seen
    );
    drop(bad);

    // The right password again: the session resumes on the numbers both sides kept.
    let mut c = Client::start(gw.addr.port(), &store, ClientOpts::default());
    c.logon();
    c.send(&order("o2"));
    c.expect(ack_of("o2"), WAIT);
    let lines = c.collect_for(Duration::from_millis(300));
    assert!(
        !lines.iter().any(|l| is_in(l, "5") || is_in(l, "3")),
        "no logout or reject after the refused logon: {lines:?}"
    );

    // An unknown broker is refused too, and leaves no store behind.
    let mut stranger = Client::start(
        gw.addr.port(),
        &dir.path().join("c3"),
        ClientOpts {
            sender: "NOBODY",
            password: "x",
            ..Default::default()
        },
    );
    stranger.cmd("start");
    stranger.expect(|l| is_in(l, "5"), WAIT);
    assert!(!dir.path().join("store/NOBODY.fixlog").exists());
}

#[test]
fn heartbeats_flow_and_test_requests_are_answered_with_their_id() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), CREDS, 0);
    let mut c = Client::start(
        gw.addr.port(),
        &dir.path().join("c1"),
        ClientOpts {
            heartbeat: 1,
            ..Default::default()
        },
    );
    c.logon();
    c.send("35=1|112=PING-42");
    let hb = c.expect(|l| is_in(l, "0") && field(l, 112) == Some("PING-42"), WAIT);
    assert_eq!(field(&hb, 49), Some("GRIDMATCH"));
    // Unprompted heartbeats at the 1 s interval.
    let lines = c.collect_for(Duration::from_millis(3500));
    let beats = lines
        .iter()
        .filter(|l| is_in(l, "0") && field(l, 112).is_none())
        .count();
    assert!(
        beats >= 2,
        "gateway heartbeats in 3.5 s: {beats}: {lines:?}"
    );
    assert!(!lines.iter().any(|l| l == "logout"));
}

#[test]
fn resend_after_the_client_drops_messages_gap_fills_admin_and_resends_orders_as_poss_dup() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), CREDS, 0);
    let mut c = Client::start(
        gw.addr.port(),
        &dir.path().join("c1"),
        ClientOpts::default(),
    );
    c.logon();
    // Gateway seq 2: a Heartbeat (admin); seqs 3..5: ExecutionReports (application).
    c.send("35=1|112=T1");
    c.expect(|l| is_in(l, "0") && field(l, 112) == Some("T1"), WAIT);
    for id in ["a", "b", "c"] {
        c.send(&order(id));
        c.expect(ack_of(id), WAIT);
    }
    let sender = c.seqnums().0;
    c.wait_seqnums((sender, 6));
    // The client "loses" 2..5: it now expects 2, so the next message reveals a gap.
    c.cmd("set_next_target 2");
    c.send("35=1|112=T2");
    let rr = c.expect(|l| l.starts_with("out ") && field(l, 35) == Some("2"), WAIT);
    assert_eq!((field(&rr, 7), field(&rr, 16)), (Some("2"), Some("0")));
    let fill = c.expect(|l| is_in(l, "4") && field(l, 34) == Some("2"), WAIT);
    assert_eq!(
        field(&fill, 123),
        Some("Y"),
        "GapFill for the admin Heartbeat"
    );
    assert_eq!(field(&fill, 36), Some("3"));
    assert_eq!(field(&fill, 43), Some("Y"));
    for (id, seq) in [("a", "3"), ("b", "4"), ("c", "5")] {
        let again = c.expect(|l| ack_of(id)(l) && field(l, 43) == Some("Y"), WAIT);
        assert_eq!(field(&again, 34), Some(seq));
        assert!(field(&again, 122).is_some(), "OrigSendingTime on {again}");
        assert_eq!(field(&again, 150), Some("0"), "same body");
    }
    // Caught up: both agree, and the session goes on.
    c.send(&order("d"));
    c.expect(ack_of("d"), WAIT);
    // 6 = Heartbeat(T2), gap-filled; 7 = ack d.
    let sender = c.seqnums().0;
    c.wait_seqnums((sender, 8));
    assert!(!c.seen.iter().any(|l| l == "logout"), "{:?}", c.seen);
}

#[test]
fn gateway_asks_for_a_resend_when_the_client_skips_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), CREDS, 0);
    let mut c = Client::start(
        gw.addr.port(),
        &dir.path().join("c1"),
        ClientOpts::default(),
    );
    c.logon();
    let (sender, _) = c.seqnums();
    c.cmd(&format!("set_next_sender {}", sender + 5));
    c.send(&order("after-gap"));
    let rr = c.expect(|l| is_in(l, "2"), WAIT);
    assert_eq!(field(&rr, 7), Some(sender.to_string().as_str()));
    assert_eq!(field(&rr, 16), Some("0"));
    // QuickFIX gap-fills the numbers it never used and resends the order; the gateway then
    // processes the queued or resent order exactly once.
    c.expect(ack_of("after-gap"), WAIT);
    let extra = c.collect_for(Duration::from_millis(500));
    let acks = c.seen.iter().filter(|l| ack_of("after-gap")(l)).count();
    assert_eq!(acks, 1, "{extra:?}");
    c.send(&order("next"));
    c.expect(ack_of("next"), WAIT);
    assert!(gw.log().contains("GapDetected"), "{}", gw.log());
}

#[test]
fn sequence_reset_moves_the_expected_number() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), CREDS, 0);
    let mut c = Client::start(
        gw.addr.port(),
        &dir.path().join("c1"),
        ClientOpts::default(),
    );
    c.logon();
    c.send("35=4|36=50");
    c.cmd("set_next_sender 50");
    c.send(&order("at-50"));
    let ack = c.expect(ack_of("at-50"), WAIT);
    assert!(ack.contains("|11=at-50|"));
    let lines = c.collect_for(Duration::from_millis(300));
    assert!(
        !lines.iter().any(|l| is_in(l, "2") || is_in(l, "5")),
        "no resend request, no logout: {lines:?}"
    );
    assert!(gw.log().contains("SequenceReset"), "{}", gw.log());

    // ResetSeqNumFlag on Logon: both sides start again at 1.
    c.stop();
    let mut c = Client::start(
        gw.addr.port(),
        &dir.path().join("c1"),
        ClientOpts {
            reset_on_logon: true,
            ..Default::default()
        },
    );
    c.logon();
    let reply = c.expect(|l| is_in(l, "A"), WAIT);
    assert_eq!(field(&reply, 141), Some("Y"));
    assert_eq!(field(&reply, 34), Some("1"));
    c.send(&order("after-reset"));
    c.expect(ack_of("after-reset"), WAIT);
    c.wait_seqnums((3, 3));
}

#[test]
fn garbled_message_is_ignored_and_malformed_message_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), CREDS, 0);
    let relay = Relay::start(gw.addr);
    let mut c = Client::start(relay.port, &dir.path().join("c1"), ClientOpts::default());
    c.logon();
    let (sender, _) = c.seqnums();

    // Garbled: a wrong checksum on a message that would otherwise be next in sequence.
    let body = format!(
        "35=D\x0134={sender}\x0149=BRK1\x0152=20240101-00:00:00\x0156=GRIDMATCH\x0111=evil\x01"
    );
    let bad = format!("8=FIX.4.4\x019={}\x01{body}10=000\x01", body.len());
    let sum: u32 = bad.bytes().take(bad.len() - 7).map(u32::from).sum();
    assert_ne!(sum % 256, 0, "the checksum really is wrong");
    relay.inject(bad.as_bytes());
    relay.inject(b"random noise\x01\x01");
    c.send(&order("real"));
    c.expect(ack_of("real"), WAIT);
    let lines = c.collect_for(Duration::from_millis(300));
    assert!(
        !c.seen
            .iter()
            .any(|l| ack_of("evil")(l) || is_in(l, "3") || is_in(l, "2")),
        "garbled input caused nothing: {lines:?}"
    );
    assert!(gw.log().contains("BadChecksum"), "{}", gw.log());

    // Malformed: a tag without a value. Reject(373=4, 371=58), and its number is consumed.
    c.send("35=D|11=empty|55=VNM|54=1|38=100|40=2|44=10000|60=20240101-00:00:00|58=");
    let sent = c.expect(
        |l| l.starts_with("out ") && field(l, 11) == Some("empty"),
        WAIT,
    );
    let rej = c.expect(|l| is_in(l, "3"), WAIT);
    assert_eq!(field(&rej, 373), Some("4"));
    assert_eq!(field(&rej, 371), Some("58"));
    assert_eq!(field(&rej, 45), field(&sent, 34));
    assert_eq!(field(&rej, 372), Some("D"));
    c.send(&order("after"));
    c.expect(ack_of("after"), WAIT);
    assert!(!c.seen.iter().any(|l| is_in(l, "2") || l == "logout"));
}

#[test]
fn gateway_restart_keeps_sequence_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(dir.path(), CREDS, 0);
    let port = gw.addr.port();
    let mut c = Client::start(port, &dir.path().join("c1"), ClientOpts::default());
    c.logon();
    for id in ["r1", "r2", "r3"] {
        c.send(&order(id));
        c.expect(ack_of(id), WAIT);
    }
    c.wait_seqnums((5, 5));
    gw.kill();
    c.expect(|l| l == "logout", WAIT);

    // Same port, same store directory; the client reconnects by itself.
    let gw = Gateway::start(dir.path(), CREDS, port);
    c.expect(|l| l == "logon", WAIT);
    let reply = c
        .seen
        .iter()
        .rev()
        .find(|l| is_in(l, "A"))
        .cloned()
        .unwrap();
    assert_eq!(field(&reply, 34), Some("5"), "numbers kept: {reply}");
    assert_eq!(field(&reply, 141), None, "no reset");
    c.send(&order("r4"));
    let ack = c.expect(ack_of("r4"), WAIT);
    assert_eq!(field(&ack, 34), Some("6"));
    assert!(
        !c.seen.iter().any(|l| is_in(l, "2") || is_in(l, "3")),
        "no gap, no reject: {:?}",
        c.seen
    );
    assert!(gw.log().contains("LoggedOn"));
}
