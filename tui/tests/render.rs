//! Rendering tests: each view drawn from a fixed state into ratatui's TestBackend, asserting on
//! the text (and a few colours) of the resulting buffer.

use matching::{OrderId, SecurityId};
use proto::{
    Counters, GridSnapshot, LatencySummary, LogEntry, LogKind, MonitorMsg, NodeInfo, NodeStatus,
    SecurityInfo, SecurityView, TradeTick, Welcome,
};
use ratatui::style::Color;
use tui::{AppState, Key, NetEvent, View};

mod screen;
use screen::{cell_at, line_with, lines, render, text};

fn node(id: u32, name: &str, status: NodeStatus, handled: u64) -> NodeInfo {
    NodeInfo {
        id,
        name: name.into(),
        addr: format!("127.0.0.1:{}", 40000 + id),
        status,
        securities: 2,
        orders_handled: handled,
        orders_per_sec: 1234.0,
        queue_depth: 17,
        heartbeat_age_ms: 120,
    }
}

fn fixed_state() -> AppState {
    let mut s = AppState::new("127.0.0.1:7000");
    let codes = ["AAA", "FPT", "VNM", "VIC"];
    s.apply(NetEvent::Connected(Welcome {
        session: 3,
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
        phase: matching::Phase::Continuous,
        sequenced: 0,
    }));
    let security = |id: u32, owner: u32| SecurityView {
        id: SecurityId(id),
        code: codes[id as usize].into(),
        reference_price: 25_000,
        last_price: Some(25_350),
        volume: 123_400,
        bid_total: 5_000,
        ask_total: 7_100,
        owner: Some(owner),
        bids: vec![(25_300, 1_000), (25_250, 2_500)],
        asks: vec![(25_400, 800), (25_450, 3_300)],
        recent_prices: vec![25_000, 25_100, 25_350, 25_200, 25_350],
        indicative: None,
        last_auction: None,
    };
    let mut rates = vec![0.0, 800.0, 1600.0];
    rates.push(2000.0);
    for (i, rate) in rates.iter().enumerate() {
        s.apply(NetEvent::Msg(MonitorMsg::Snapshot(GridSnapshot {
            uptime_ms: 60_000 + i as u64 * 250,
            shard_map_version: 4,
            nodes: vec![
                node(1, "exec-a", NodeStatus::Up, 11_000),
                node(2, "exec-b", NodeStatus::Suspect, 9_000),
                node(3, "exec-c", NodeStatus::Down, 300),
            ],
            counters: Counters {
                received: 20_000,
                accepted: 19_500,
                rejected: 500,
                fills: 7_777,
                cancelled: 12,
            },
            orders_per_sec: *rate,
            latency: LatencySummary {
                p50_us: 210,
                p90_us: 480,
                p99_us: 1_900,
                p999_us: 4_200,
                max_us: 9_999,
            },
            securities: vec![
                security(0, 1),
                security(1, 2),
                security(2, 1),
                security(3, 2),
            ],
            phase: matching::Phase::Continuous,
            exchange_time: 0,
            schedule: "continuous".into(),
        })));
    }
    s.apply(NetEvent::Msg(MonitorMsg::Trades(vec![
        TradeTick {
            uptime_ms: 61_234,
            security: SecurityId(1),
            price: 25_350,
            qty: 300,
            buy: OrderId(4242),
            sell: OrderId(4243),
        },
        TradeTick {
            uptime_ms: 61_500,
            security: SecurityId(2),
            price: 25_100,
            qty: 100,
            buy: OrderId(5001),
            sell: OrderId(4999),
        },
    ])));
    s.apply(NetEvent::Msg(MonitorMsg::Log(vec![
        LogEntry {
            uptime_ms: 59_000,
            kind: LogKind::NodeJoined,
            text: "exec-c joined".into(),
        },
        LogEntry {
            uptime_ms: 61_000,
            kind: LogKind::NodeLost,
            text: "exec-c lost (heartbeat timeout)".into(),
        },
    ])));
    s
}

#[test]
fn grid_view_shows_nodes_totals_distribution_and_latency() {
    let s = fixed_state();
    assert_eq!(s.view, View::Grid);
    let buf = render(&s, 160, 45);
    let screen = text(&buf);
    for header in [
        "Node",
        "Address",
        "Status",
        "Orders/s",
        "Queue",
        "Heartbeat",
        "Totals",
        "Latency",
        "Shard map v4",
        "Orders handled per executor",
    ] {
        assert!(screen.contains(header), "missing {header:?}:\n{screen}");
    }
    let (y, row) = line_with(&buf, "exec-a");
    for cell in ["127.0.0.1:40001", "up", "1234", "11,000", "17", "120ms"] {
        assert!(row.contains(cell), "node row lacks {cell:?}: {row}");
    }
    assert_eq!(cell_at(&buf, y, " up ").fg, Color::Green);
    let (y, _) = line_with(&buf, "suspect");
    assert_eq!(cell_at(&buf, y, "suspect").fg, Color::Yellow);
    let (y, _) = line_with(&buf, "down ");
    assert_eq!(cell_at(&buf, y, "down ").fg, Color::Red);
    assert!(line_with(&buf, "received").1.contains("20,000"));
    assert!(line_with(&buf, "rejected").1.contains("500"));
    assert!(line_with(&buf, "filled").1.contains("7,777"));
    assert!(line_with(&buf, "p99.9").1.contains("4,200 us"));
    assert!(
        screen.contains("exec-a [2]: AAA VNM"),
        "shard map:\n{screen}"
    );
    assert!(screen.contains("peak 2,000"), "sparkline title:\n{screen}");
    // Tabs and help bar.
    assert!(lines(&buf)[0].contains("1 Grid"));
    assert!(lines(&buf)[0].contains("session 3"));
    assert!(
        lines(&buf)[44].contains("q  quit"),
        "help bar: {}",
        lines(&buf)[44]
    );
}

#[test]
fn market_view_shows_list_book_and_chart() {
    let mut s = fixed_state();
    s.handle_key(Key::Tab);
    s.handle_key(Key::Down);
    let buf = render(&s, 160, 45);
    let screen = text(&buf);
    for header in [
        "Code",
        "Last",
        "Chg%",
        "Volume",
        "Bid total",
        "Ask total",
        "Bid qty",
        "Ask qty",
    ] {
        assert!(screen.contains(header), "missing {header:?}:\n{screen}");
    }
    let row = line_with(&buf, "VNM ").1;
    for cell in [
        "25,350", "350", "+1.40%", "123,400", "5,000", "7,100", "exec-a",
    ] {
        assert!(row.contains(cell), "security row lacks {cell:?}: {row}");
    }
    // FPT is selected (second row): its book and chart are shown.
    assert!(screen.contains("FPT book"), "{screen}");
    let level = line_with(&buf, "25,300").1;
    assert!(
        level.contains("1,000") && level.contains("25,400") && level.contains("800"),
        "{level}"
    );
    assert!(screen.contains("FPT recent trades (5)"), "{screen}");
}

#[test]
fn log_view_shows_trades_and_events() {
    let mut s = fixed_state();
    s.handle_key(Key::Tab);
    s.handle_key(Key::Tab);
    assert_eq!(s.view, View::Log);
    let buf = render(&s, 120, 30);
    let screen = text(&buf);
    for header in [
        "Time",
        "Security",
        "Price",
        "Qty",
        "Buy order",
        "Sell order",
        "Events",
    ] {
        assert!(screen.contains(header), "missing {header:?}:\n{screen}");
    }
    let (y_fpt, row) = line_with(&buf, "4242");
    for cell in ["00:01:01.234", "FPT", "25,350", "300", "4243"] {
        assert!(row.contains(cell), "trade row lacks {cell:?}: {row}");
    }
    let (y_vnm, _) = line_with(&buf, "5001");
    assert!(y_vnm < y_fpt, "newest trade first");
    let lost = line_with(&buf, "exec-c lost").1;
    assert!(
        lost.contains("lost") && lost.contains("00:01:01.000"),
        "{lost}"
    );
    assert!(
        screen.contains("tui: connected to 127.0.0.1:7000"),
        "{screen}"
    );

    // Pausing freezes the view and says so.
    s.handle_key(Key::Char(' '));
    s.apply(NetEvent::Msg(MonitorMsg::Trades(vec![TradeTick {
        uptime_ms: 62_000,
        security: SecurityId(0),
        price: 25_000,
        qty: 100,
        buy: OrderId(777_777),
        sell: OrderId(777_778),
    }])));
    let screen = text(&render(&s, 120, 30));
    assert!(screen.contains("PAUSED (1 new)"), "{screen}");
    assert!(
        !screen.contains("777777"),
        "paused view must not show new trades"
    );
}

#[test]
fn disconnected_header_and_greyed_nodes() {
    let mut s = fixed_state();
    s.apply(NetEvent::Disconnected {
        reason: "connection lost: timed out".into(),
        attempt: 3,
        retry_in_ms: 1000,
    });
    let buf = render(&s, 160, 45);
    assert!(
        lines(&buf)[0].contains("disconnected, retrying"),
        "{}",
        lines(&buf)[0]
    );
    let (y, _) = line_with(&buf, "exec-a");
    assert_eq!(cell_at(&buf, y, "exec-a").fg, Color::DarkGray);
    assert_eq!(cell_at(&buf, y, " up ").fg, Color::DarkGray);
    assert!(text(&buf).contains("last known"));
}

#[test]
fn search_prompt_is_shown_in_the_help_bar() {
    let mut s = fixed_state();
    for k in [Key::Char('/'), Key::Char('v'), Key::Char('i')] {
        s.handle_key(k);
    }
    let buf = render(&s, 100, 20);
    assert!(lines(&buf)[19].contains("/vi_"), "{}", lines(&buf)[19]);
    assert!(text(&buf).contains("VIC book"));
}

#[test]
fn every_view_survives_any_terminal_size() {
    let mut s = fixed_state();
    for _ in 0..3 {
        for (w, h) in [(1, 1), (2, 3), (10, 4), (40, 8), (80, 24), (300, 100)] {
            render(&s, w, h);
        }
        s.handle_key(Key::Tab);
    }
    // An empty state renders too.
    let empty = AppState::new("x:1");
    for (w, h) in [(1, 1), (80, 24)] {
        render(&empty, w, h);
    }
}

#[test]
fn market_view_shows_the_feeds_exact_book_and_every_trade() {
    use tui::market::{FeedBook, FeedTrade, MarketPicture};
    let mut s = fixed_state();
    s.handle_key(Key::Tab);
    s.handle_key(Key::Down);
    let fpt = s.selected().unwrap().view.id;
    let trades_before = s.trades.len();
    let seen_before = s.selected().unwrap().seen_prices.len();
    s.apply(NetEvent::FeedUp { levels: 10 });
    let mut picture = MarketPicture {
        synced: true,
        ..MarketPicture::default()
    };
    picture.books.insert(
        fpt,
        FeedBook {
            bids: vec![(25_250, 4_200), (25_200, 300)],
            asks: vec![(25_450, 900)],
            phase: Some(matching::Phase::Continuous),
            last: Some((25_300, 100)),
        },
    );
    s.apply(NetEvent::Market(picture.clone()));
    let trade = |i: u64| FeedTrade {
        time: 0,
        trade: feed::Trade {
            security: fpt,
            id: feed::TradeId { seq: i, index: 0 },
            price: 25_300 + i as i64,
            qty: 10,
            aggressor: matching::Aggressor::Buy,
            buy: None,
            sell: None,
        },
    };
    s.apply(NetEvent::FeedTrades((1..=3).map(trade).collect()));
    // The monitor's sampled trades are ignored while the feed is live.
    s.apply(NetEvent::Msg(MonitorMsg::Trades(vec![TradeTick {
        uptime_ms: 1,
        security: fpt,
        price: 1,
        qty: 1,
        buy: OrderId(1),
        sell: OrderId(2),
    }])));
    assert_eq!(s.trades.len(), trades_before + 3);
    let buf = render(&s, 160, 45);
    let screen = text(&buf);
    assert!(screen.contains("FPT book (feed)"), "{screen}");
    let level = line_with(&buf, "25,250").1;
    assert!(
        level.contains("4,200") && level.contains("25,450") && level.contains("900"),
        "{level}"
    );
    assert!(line_with(&buf, "25,200").1.contains("300"));
    // The snapshot's sampled level is not shown any more.
    assert!(!screen.contains("25,400"), "{screen}");
    // The chart shows the trades this tui saw (every one from the feed), not the samples.
    let title = format!("FPT recent trades ({})", seen_before + 3);
    assert!(screen.contains(&title), "{title}:\n{screen}");

    // Feed lost: back to the sampled book, and saying so.
    s.apply(NetEvent::FeedDown("gone".into()));
    let screen = text(&render(&s, 160, 45));
    assert!(screen.contains("FPT book (sampled)"), "{screen}");
    assert!(screen.contains("25,400"), "{screen}");
    // Out of sync (between a gap and its snapshot): the sampled book too.
    s.apply(NetEvent::FeedUp { levels: 10 });
    picture.synced = false;
    s.apply(NetEvent::Market(picture));
    assert!(text(&render(&s, 160, 45)).contains("FPT book (sampled)"));
}
