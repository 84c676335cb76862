//! The trading day on the grid view: phase and exchange clock in the header, the schedule, the
//! indicative auction price while a call is open and the auction results after it, drawn into
//! ratatui's TestBackend.

use matching::{Phase, SecurityId};
use proto::{
    Counters, GridSnapshot, LatencySummary, MonitorMsg, SecurityInfo, SecurityView, Welcome,
};
use ratatui::style::Color;
use tui::{AppState, NetEvent, View};

mod screen;
use screen::{cell_at, line_with, lines, render};

/// 2026-01-09 09:07:30 at HOSE (UTC+7).
const T_0907: i64 = 1_767_924_450_000_000_000;
const MINUTE: i64 = 60_000_000_000;

fn welcome(codes: &[&str], phase: Phase) -> Welcome {
    Welcome {
        session: 1,
        securities: codes
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
        phase,
        sequenced: 0,
    }
}

fn view(
    id: u32,
    code: &str,
    indicative: Option<(i64, u64)>,
    last: Option<(i64, u64)>,
) -> SecurityView {
    SecurityView {
        id: SecurityId(id),
        code: code.into(),
        reference_price: 25_000,
        last_price: last.map(|(p, _)| p),
        volume: 0,
        bid_total: 0,
        ask_total: 0,
        owner: None,
        bids: Vec::new(),
        asks: Vec::new(),
        recent_prices: Vec::new(),
        indicative,
        last_auction: last,
    }
}

fn snapshot(phase: Phase, time: i64, securities: Vec<SecurityView>) -> MonitorMsg {
    MonitorMsg::Snapshot(GridSnapshot {
        uptime_ms: 5_000,
        shard_map_version: 1,
        nodes: Vec::new(),
        counters: Counters::default(),
        orders_per_sec: 0.0,
        latency: LatencySummary::default(),
        securities,
        phase,
        exchange_time: time,
        schedule: "hose, 2 day(s) from 2026-01-09, 6.0 s per day".into(),
    })
}

fn in_call() -> AppState {
    let mut s = AppState::new("127.0.0.1:7000");
    s.apply(NetEvent::Connected(welcome(
        &["AAA", "FPT", "VNM"],
        Phase::Ato,
    )));
    s.apply(NetEvent::Msg(snapshot(
        Phase::Ato,
        T_0907,
        vec![
            view(0, "AAA", Some((25_100, 1_200)), None),
            view(1, "FPT", Some((24_950, 48_300)), None),
            view(2, "VNM", None, None),
        ],
    )));
    s
}

#[test]
fn a_call_phase_shows_phase_clock_schedule_and_indicative_prices() {
    let s = in_call();
    assert_eq!(s.view, View::Grid);
    let buf = render(&s, 160, 45);
    let top = &lines(&buf)[0];
    assert!(
        top.contains(" ATO ") && top.contains("2026-01-09 09:07:30"),
        "{top}"
    );
    assert_eq!(cell_at(&buf, 0, "ATO ").bg, Color::Yellow);
    let (y, title) = line_with(&buf, "Trading day");
    assert!(
        title.contains("ATO") && title.contains("09:07:30"),
        "{title}"
    );
    assert_eq!(cell_at(&buf, y, "ATO ").bg, Color::Yellow);
    // The description wraps inside the panel: its first line reaches the day length.
    let (_, schedule) = line_with(&buf, "schedule: hose, 2 day(s) from 2026-01-09");
    assert!(schedule.contains("6.0 s per"), "{schedule}");
    let (y_header, header) = line_with(&buf, "Indicative");
    assert!(header.contains("Volume"), "{header}");
    // Largest indicative volume first; a security with nothing crossing is not listed.
    let (y_fpt, fpt) = line_with(&buf, "FPT ");
    assert!(fpt.contains("24,950") && fpt.contains("48,300"), "{fpt}");
    let (y_aaa, aaa) = line_with(&buf, "AAA ");
    assert!(aaa.contains("25,100") && aaa.contains("1,200"), "{aaa}");
    assert!(y_header < y_fpt && y_fpt < y_aaa);
    assert!(!lines(&buf).iter().any(|l| l.contains("VNM")));
}

#[test]
fn after_the_call_the_auction_results_replace_the_indicative_prices() {
    let mut s = in_call();
    s.apply(NetEvent::Msg(snapshot(
        Phase::Continuous,
        T_0907 + 8 * MINUTE,
        vec![
            view(0, "AAA", None, Some((25_100, 1_000))),
            view(1, "FPT", None, None),
            view(2, "VNM", None, Some((25_000, 700))),
        ],
    )));
    let buf = render(&s, 160, 45);
    let top = &lines(&buf)[0];
    assert!(
        top.contains(" CONTINUOUS ") && top.contains("09:15:30"),
        "{top}"
    );
    assert_eq!(cell_at(&buf, 0, "CONTINUOUS").bg, Color::Green);
    let (_, header) = line_with(&buf, "Auction");
    assert!(!header.contains("Indicative"), "{header}");
    assert!(line_with(&buf, "AAA ").1.contains("1,000"));
    assert!(line_with(&buf, "VNM ").1.contains("700"));
    // The phase change went into the event log with its exchange time.
    assert!(s
        .log
        .iter()
        .any(|e| e.text == "phase ATO -> CONTINUOUS at 2026-01-09 09:15:30"));
}

#[test]
fn an_open_call_with_nothing_crossing_and_a_closed_market_say_so() {
    let mut s = AppState::new("m:1");
    s.apply(NetEvent::Connected(welcome(&["AAA"], Phase::Atc)));
    s.apply(NetEvent::Msg(snapshot(
        Phase::Atc,
        T_0907,
        vec![view(0, "AAA", None, None)],
    )));
    let buf = render(&s, 160, 45);
    line_with(&buf, "call open: nothing crosses yet");
    s.apply(NetEvent::Msg(snapshot(
        Phase::Closed,
        T_0907,
        vec![view(0, "AAA", None, None)],
    )));
    let buf = render(&s, 160, 45);
    line_with(&buf, "no auction yet");
    assert_eq!(cell_at(&buf, 0, "CLOSED").bg, Color::Red);
}

#[test]
fn many_auctions_are_cut_to_the_panel_and_counted() {
    let codes: Vec<String> = (0..60).map(|i| format!("S{i:02}")).collect();
    let refs: Vec<&str> = codes.iter().map(String::as_str).collect();
    let mut s = AppState::new("m:1");
    s.apply(NetEvent::Connected(welcome(&refs, Phase::Ato)));
    let views = (0..60)
        .map(|i| {
            view(
                i,
                &codes[i as usize],
                Some((25_000, 100 * u64::from(i) + 100)),
                None,
            )
        })
        .collect();
    s.apply(NetEvent::Msg(snapshot(Phase::Ato, T_0907, views)));
    let buf = render(&s, 160, 45);
    let (_, header) = line_with(&buf, "Indicative");
    assert!(header.contains("Code (+"), "{header}");
    // The biggest volume is on screen, the smallest is not.
    line_with(&buf, "S59 ");
    assert!(!lines(&buf).iter().any(|l| l.contains("S00 ")));
    for (w, h) in [(1, 1), (20, 5), (60, 12), (80, 24)] {
        render(&s, w, h);
    }
}
