//! Pure rendering of an [`AppState`] into a ratatui [`Frame`]: a tabs/status bar on top, the
//! current view in the middle, a one-line key help at the bottom. Reads the state, never
//! changes it, and copes with any terminal size (tiny areas simply show less).

use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::symbols;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Bar, BarChart, BarGroup, Block, Cell, Chart, Dataset, GraphType, Paragraph, Row,
    Sparkline, Table, TableState, Tabs, Wrap,
};
use ratatui::Frame;

use matching::Phase;
use proto::{LogKind, NodeStatus};

use crate::state::{
    fmt_age, fmt_exchange_time, fmt_int, fmt_price, fmt_qty, fmt_uptime, AppState, AuctionPanel,
    Conn, LogPane, View,
};

/// Book levels shown per side in the Market view.
pub const BOOK_LEVELS: usize = 5;

const HEADER: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
const SELECTED: Style = Style::new().add_modifier(Modifier::REVERSED);
const GREYED: Style = Style::new().fg(Color::DarkGray);

pub fn status_color(status: NodeStatus) -> Color {
    match status {
        NodeStatus::Up => Color::Green,
        NodeStatus::Suspect => Color::Yellow,
        NodeStatus::Down => Color::Red,
    }
}

/// Call phases yellow (orders wait), continuous green, the break blue, closed red.
pub fn phase_color(phase: Phase) -> Color {
    match phase {
        Phase::Ato | Phase::Atc => Color::Yellow,
        Phase::Continuous => Color::Green,
        Phase::Break => Color::Blue,
        Phase::Closed => Color::Red,
    }
}

fn status_text(status: NodeStatus) -> &'static str {
    match status {
        NodeStatus::Up => "up",
        NodeStatus::Suspect => "suspect",
        NodeStatus::Down => "down",
    }
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, state: &AppState) {
    let [top, body, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_top(frame, top, state);
    match state.view {
        View::Grid => draw_grid(frame, body, state),
        View::Market => draw_market(frame, body, state),
        View::Log => draw_log(frame, body, state),
    }
    draw_help(frame, help, state);
}

fn draw_top(frame: &mut Frame, area: Rect, state: &AppState) {
    let [tabs_area, status_area] =
        Layout::horizontal([Constraint::Length(26), Constraint::Min(0)]).areas(area);
    let tabs = Tabs::new(
        View::ALL
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{} {}", i + 1, v.title())),
    )
    .select(state.view.index())
    .highlight_style(
        Style::new()
            .fg(Color::Black)
            .bg(Color::Cyan)
            .add_modifier(Modifier::BOLD),
    )
    .divider("|")
    .padding("", "");
    frame.render_widget(tabs, tabs_area);

    let mut spans = Vec::new();
    match &state.conn {
        Conn::Connecting { attempt } => spans.push(
            format!("connecting to {} (attempt {attempt})", state.manager_addr).fg(Color::Yellow),
        ),
        Conn::Connected { session, rules } => {
            spans.push(format!("{} ", state.manager_addr).fg(Color::Green));
            if state.is_stale() {
                spans.push("STALE FEED ".fg(Color::Black).bg(Color::Yellow));
            }
            spans.push(
                format!(
                    "session {session} | rules {rules} | up {} | map v{}",
                    fmt_uptime(state.uptime_ms)
                        .split('.')
                        .next()
                        .unwrap_or_default(),
                    state.shard_map_version
                )
                .into(),
            );
            spans.push(" | ".into());
            spans.push(
                format!(" {} ", state.phase.as_str())
                    .fg(Color::Black)
                    .bg(phase_color(state.phase))
                    .add_modifier(Modifier::BOLD),
            );
            spans.push(format!(" {}", fmt_exchange_time(state.exchange_time)).into());
        }
        Conn::Disconnected {
            reason,
            attempt,
            retry_in_ms,
        } => spans.push(
            format!(
                "disconnected, retrying in {:.1}s (attempt {attempt}): {reason}",
                *retry_in_ms as f64 / 1000.0
            )
            .fg(Color::White)
            .bg(Color::Red),
        ),
    }
    if state.paused {
        spans.push(
            format!(" PAUSED ({} new)", state.held())
                .fg(Color::Black)
                .bg(Color::Yellow),
        );
    }
    if state.lost() > 0 {
        spans.push(format!(" tui dropped {}", state.lost()).fg(Color::DarkGray));
    }
    frame.render_widget(
        Paragraph::new(Line::from(spans)).alignment(Alignment::Right),
        status_area,
    );
}

fn draw_help(frame: &mut Frame, area: Rect, state: &AppState) {
    let keys: &[(&str, &str)] = if state.search.is_some() {
        &[
            ("type", "code"),
            ("Enter", "select"),
            ("Esc", "close"),
            ("↑↓", "move"),
        ]
    } else {
        match state.view {
            View::Log => &[
                ("Tab", "view"),
                ("↑↓/jk", "scroll"),
                ("←→", "pane"),
                ("Esc", "newest"),
                ("space", "pause"),
                ("/", "find"),
                ("q", "quit"),
            ],
            _ => &[
                ("Tab", "view"),
                ("↑↓/jk", "select"),
                ("PgUp/PgDn", "page"),
                ("/", "find security"),
                ("space", "pause"),
                ("q", "quit"),
            ],
        }
    };
    let mut spans = Vec::new();
    if let Some(query) = &state.search {
        spans.push(Span::styled(
            format!(" /{query}_ "),
            Style::new().fg(Color::Black).bg(Color::Cyan),
        ));
    }
    for (key, what) in keys {
        spans.push(Span::styled(
            format!(" {key} "),
            Style::new().fg(Color::Black).bg(Color::Gray),
        ));
        spans.push(Span::raw(format!(" {what} ")));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

// ------------------------------------------------------------------------------------ Grid

fn draw_grid(frame: &mut Frame, area: Rect, state: &AppState) {
    let table_height = (state.nodes.len() as u16 + 3).clamp(4, (area.height / 2).max(4));
    let [nodes_area, lower] =
        Layout::vertical([Constraint::Length(table_height), Constraint::Min(0)]).areas(area);
    draw_nodes(frame, nodes_area, state);

    let [left, mid, right] = Layout::horizontal([
        Constraint::Percentage(34),
        Constraint::Percentage(33),
        Constraint::Percentage(33),
    ])
    .areas(lower);
    let [totals_area, spark_area] =
        Layout::vertical([Constraint::Length(8), Constraint::Min(0)]).areas(left);
    let [latency_area, shard_area] =
        Layout::vertical([Constraint::Length(7), Constraint::Min(0)]).areas(right);
    let [distribution_area, day_area] =
        Layout::vertical([Constraint::Percentage(45), Constraint::Min(0)]).areas(mid);
    draw_totals(frame, totals_area, state);
    draw_rate(frame, spark_area, state);
    draw_distribution(frame, distribution_area, state);
    draw_day(frame, day_area, state);
    draw_latency(frame, latency_area, state);
    draw_shards(frame, shard_area, state);
}

fn draw_nodes(frame: &mut Frame, area: Rect, state: &AppState) {
    let live = state.is_connected();
    let header = Row::new([
        "Node",
        "Address",
        "Status",
        "Secs",
        "Orders/s",
        "Handled",
        "Queue",
        "Heartbeat",
    ])
    .style(HEADER);
    let rows = state.nodes.iter().map(|n| {
        let status = Cell::from(status_text(n.status)).style(if live {
            Style::new()
                .fg(status_color(n.status))
                .add_modifier(Modifier::BOLD)
        } else {
            GREYED
        });
        let row = Row::new(vec![
            Cell::from(n.name.clone()),
            Cell::from(n.addr.clone()),
            status,
            Cell::from(n.securities.to_string()),
            Cell::from(format!("{:.0}", n.orders_per_sec)),
            Cell::from(fmt_qty(n.orders_handled)),
            Cell::from(n.queue_depth.to_string()),
            Cell::from(fmt_age(n.heartbeat_age_ms)),
        ]);
        if live {
            row
        } else {
            row.style(GREYED)
        }
    });
    let title = if live || state.nodes.is_empty() {
        format!(" Nodes ({}) ", state.nodes.len())
    } else {
        format!(" Nodes ({}, last known) ", state.nodes.len())
    };
    let name_width = state
        .nodes
        .iter()
        .map(|n| n.name.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(4, 24) as u16
        + 1;
    let table = Table::new(
        rows,
        [
            Constraint::Length(name_width),
            Constraint::Length(21),
            Constraint::Length(8),
            Constraint::Length(5),
            Constraint::Length(9),
            Constraint::Length(11),
            Constraint::Length(6),
            Constraint::Length(9),
        ],
    )
    .header(header)
    .block(Block::bordered().title(title))
    .row_highlight_style(SELECTED);
    let mut ts =
        TableState::new().with_selected((!state.nodes.is_empty()).then_some(state.selected_node));
    frame.render_stateful_widget(table, area, &mut ts);
}

fn draw_totals(frame: &mut Frame, area: Rect, state: &AppState) {
    let c = state.counters;
    let line = |label: &str, v: u64| {
        Line::from(vec![format!("{label:<10}").bold(), Span::raw(fmt_qty(v))])
    };
    let text = vec![
        line("received", c.received),
        line("accepted", c.accepted),
        line("rejected", c.rejected),
        line("filled", c.fills),
        line("cancelled", c.cancelled),
        Line::from(vec![
            "orders/s  ".bold(),
            Span::raw(format!("{:.0}", state.orders_per_sec)),
        ]),
    ];
    frame.render_widget(
        Paragraph::new(text).block(Block::bordered().title(" Totals ")),
        area,
    );
}

fn draw_rate(frame: &mut Frame, area: Rect, state: &AppState) {
    let width = area.width.saturating_sub(2) as usize;
    let skip = state.rate_history.len().saturating_sub(width);
    let data: Vec<u64> = state.rate_history.iter().skip(skip).copied().collect();
    let peak = data.iter().copied().max().unwrap_or(0);
    let spark = Sparkline::default()
        .block(Block::bordered().title(format!(" Orders/s (peak {}) ", fmt_qty(peak))))
        .data(&data)
        .style(Style::new().fg(Color::Cyan));
    frame.render_widget(spark, area);
}

fn draw_distribution(frame: &mut Frame, area: Rect, state: &AppState) {
    let bars: Vec<Bar> = state
        .nodes
        .iter()
        .map(|n| {
            Bar::default()
                .label(Line::from(n.name.clone()))
                .value(n.orders_handled)
                .text_value(fmt_qty(n.orders_handled))
                .style(Style::new().fg(if state.is_connected() {
                    status_color(n.status)
                } else {
                    Color::DarkGray
                }))
        })
        .collect();
    let count = bars.len().max(1) as u16;
    let inner = area.width.saturating_sub(2);
    let bar_width = (inner.saturating_sub(count - 1) / count).clamp(1, 12);
    let chart = BarChart::default()
        .block(Block::bordered().title(" Orders handled per executor "))
        .data(BarGroup::default().bars(&bars))
        .bar_width(bar_width)
        .bar_gap(1)
        .value_style(Style::new().fg(Color::Black).bg(Color::Gray));
    frame.render_widget(chart, area);
}

/// The trading day: schedule, phase and exchange clock, then the auction panel (indicative
/// price and volume while a call is open, else the latest auction of each security).
fn draw_day(frame: &mut Frame, area: Rect, state: &AppState) {
    let title = Line::from(vec![
        " Trading day ".into(),
        format!(" {} ", state.phase.as_str())
            .fg(Color::Black)
            .bg(phase_color(state.phase))
            .add_modifier(Modifier::BOLD),
        format!(" {} ", fmt_exchange_time(state.exchange_time)).into(),
    ]);
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // The schedule's description may need two lines in a narrow column.
    let [schedule_area, table_area] =
        Layout::vertical([Constraint::Length(2), Constraint::Min(0)]).areas(inner);
    let schedule = if state.schedule.is_empty() {
        "schedule: -".to_string()
    } else {
        format!("schedule: {}", state.schedule)
    };
    frame.render_widget(
        Paragraph::new(schedule)
            .style(GREYED)
            .wrap(Wrap { trim: true }),
        schedule_area,
    );
    let (caption, rows, empty) = match state.auctions() {
        AuctionPanel::Indicative(rows) => (
            ["Code", "Indicative", "Volume"],
            rows,
            "call open: nothing crosses yet",
        ),
        AuctionPanel::Results(rows) => (["Code", "Auction", "Volume"], rows, "no auction yet"),
    };
    if rows.is_empty() {
        frame.render_widget(Paragraph::new(empty).style(GREYED), table_area);
        return;
    }
    let visible = table_area.height.saturating_sub(1) as usize;
    let more = rows.len().saturating_sub(visible);
    let body = rows.iter().take(visible).map(|r| {
        Row::new(vec![
            Cell::from(r.code.clone()).bold(),
            Cell::from(fmt_price(r.price)),
            Cell::from(fmt_qty(r.volume)),
        ])
    });
    let mut header = caption.map(String::from);
    if more > 0 {
        header[0] = format!("Code (+{more})");
    }
    let table = Table::new(
        body,
        [
            Constraint::Length(11),
            Constraint::Length(11),
            Constraint::Min(8),
        ],
    )
    .header(Row::new(header).style(HEADER));
    frame.render_widget(table, table_area);
}

fn draw_latency(frame: &mut Frame, area: Rect, state: &AppState) {
    let l = state.latency;
    let line = |label: &str, us: u64| {
        Line::from(vec![
            format!("{label:<7}").bold(),
            Span::raw(format!("{} us", fmt_qty(us))),
        ])
    };
    let text = vec![
        line("p50", l.p50_us),
        line("p90", l.p90_us),
        line("p99", l.p99_us),
        line("p99.9", l.p999_us),
        line("max", l.max_us),
    ];
    frame.render_widget(
        Paragraph::new(text).block(Block::bordered().title(" Latency (receipt -> final) ")),
        area,
    );
}

fn draw_shards(frame: &mut Frame, area: Rect, state: &AppState) {
    let mut lines = Vec::new();
    for (id, codes) in state.shard_map() {
        let name = state
            .node_name(id)
            .map_or_else(|| format!("node {id}"), str::to_string);
        let shown: Vec<&str> = codes.iter().take(8).copied().collect();
        let more = codes.len().saturating_sub(shown.len());
        let mut text = format!("{name} [{}]: {}", codes.len(), shown.join(" "));
        if more > 0 {
            text.push_str(&format!(" +{more}"));
        }
        lines.push(Line::from(text));
    }
    let unassigned = state.unassigned();
    if unassigned > 0 {
        lines.push(Line::from(format!("unassigned: {unassigned}")).fg(Color::Red));
    }
    let block = Block::bordered().title(format!(" Shard map v{} ", state.shard_map_version));
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: true }).block(block),
        area,
    );
}

// ---------------------------------------------------------------------------------- Market

fn change_style(diff: i64) -> Style {
    match diff.signum() {
        1 => Style::new().fg(Color::Green),
        -1 => Style::new().fg(Color::Red),
        _ => Style::new().fg(Color::Yellow),
    }
}

fn draw_market(frame: &mut Frame, area: Rect, state: &AppState) {
    let [list_area, detail] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    draw_securities(frame, list_area, state);
    let [book_area, chart_area] = Layout::vertical([
        Constraint::Length(BOOK_LEVELS as u16 + 3),
        Constraint::Min(0),
    ])
    .areas(detail);
    draw_book(frame, book_area, state);
    draw_chart(frame, chart_area, state);
}

fn draw_securities(frame: &mut Frame, area: Rect, state: &AppState) {
    let header = Row::new([
        "Code",
        "Last",
        "Chg",
        "Chg%",
        "Volume",
        "Bid total",
        "Ask total",
        "Owner",
    ])
    .style(HEADER);
    // Only build the rows that can be visible: the listing may hold thousands of securities.
    let visible = area.height.saturating_sub(3).max(1) as usize;
    let first = state.selected_security.saturating_sub(visible - 1);
    let rows = state.securities.iter().skip(first).take(visible).map(|s| {
        let v = &s.view;
        let (chg, pct, style) = match s.change() {
            Some((d, p)) => (fmt_int(i128::from(d)), format!("{p:+.2}%"), change_style(d)),
            None => ("-".into(), "-".into(), Style::new()),
        };
        let owner = v.owner.map_or_else(
            || "-".into(),
            |o| {
                state
                    .node_name(o)
                    .map_or_else(|| format!("#{o}"), str::to_string)
            },
        );
        Row::new(vec![
            Cell::from(v.code.clone()).bold(),
            Cell::from(v.last_price.map_or_else(|| "-".into(), fmt_price)).style(style),
            Cell::from(chg).style(style),
            Cell::from(pct).style(style),
            Cell::from(fmt_qty(v.volume)),
            Cell::from(fmt_qty(v.bid_total)),
            Cell::from(fmt_qty(v.ask_total)),
            Cell::from(owner),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(11),
            Constraint::Length(11),
            Constraint::Length(11),
            Constraint::Min(6),
        ],
    )
    .header(header)
    .block(Block::bordered().title(format!(" Securities ({}) ", state.securities.len())))
    .row_highlight_style(SELECTED);
    let selected = (!state.securities.is_empty()).then_some(state.selected_security - first);
    let mut ts = TableState::new().with_selected(selected);
    frame.render_stateful_widget(table, area, &mut ts);
}

fn draw_book(frame: &mut Frame, area: Rect, state: &AppState) {
    let Some(sec) = state.selected() else {
        frame.render_widget(
            Paragraph::new("no securities listed").block(Block::bordered().title(" Book ")),
            area,
        );
        return;
    };
    let v = &sec.view;
    let (bids, asks, source) = state.book_levels(sec);
    let header = Row::new(["Bid qty", "Bid", "Ask", "Ask qty"]).style(HEADER);
    let level = |side: &[(i64, u64)], i: usize| side.get(i).copied();
    let rows = (0..BOOK_LEVELS).map(|i| {
        let (bp, bq) = level(bids, i).map_or((String::new(), String::new()), |(p, q)| {
            (fmt_price(p), fmt_qty(q))
        });
        let (ap, aq) = level(asks, i).map_or((String::new(), String::new()), |(p, q)| {
            (fmt_price(p), fmt_qty(q))
        });
        Row::new(vec![
            Cell::from(Line::from(bq).alignment(Alignment::Right)),
            Cell::from(Line::from(bp).alignment(Alignment::Right))
                .style(Style::new().fg(Color::Green)),
            Cell::from(ap).style(Style::new().fg(Color::Red)),
            Cell::from(aq),
        ])
    });
    let title = format!(
        " {} book ({source})  bid {} / ask {}  ref {} ",
        v.code,
        fmt_qty(v.bid_total),
        fmt_qty(v.ask_total),
        fmt_price(v.reference_price)
    );
    let table = Table::new(rows, [Constraint::Ratio(1, 4); 4])
        .header(header)
        .block(Block::bordered().title(title));
    frame.render_widget(table, area);
}

fn draw_chart(frame: &mut Frame, area: Rect, state: &AppState) {
    let Some(sec) = state.selected() else { return };
    let prices = state.chart_prices(sec);
    let title = format!(" {} recent trades ({}) ", sec.view.code, prices.len());
    if prices.is_empty() {
        frame.render_widget(
            Paragraph::new("no trades yet").block(Block::bordered().title(title)),
            area,
        );
        return;
    }
    let points: Vec<(f64, f64)> = prices
        .iter()
        .enumerate()
        .map(|(i, p)| (i as f64, *p as f64))
        .collect();
    let lo = prices
        .iter()
        .copied()
        .min()
        .unwrap_or(0)
        .min(sec.view.reference_price);
    let hi = prices
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(sec.view.reference_price);
    // Pad flat series so the line is not drawn on the border.
    let pad = ((hi - lo) / 10).max(1);
    let (lo, hi) = (lo - pad, hi + pad);
    let dataset = Dataset::default()
        .marker(symbols::Marker::Braille)
        .graph_type(GraphType::Line)
        .style(Style::new().fg(Color::Cyan))
        .data(&points);
    let chart = Chart::new(vec![dataset])
        .block(Block::bordered().title(title))
        .x_axis(Axis::default().bounds([0.0, (points.len().max(2) - 1) as f64]))
        .y_axis(Axis::default().bounds([lo as f64, hi as f64]).labels([
            fmt_price(lo),
            fmt_price(sec.view.reference_price),
            fmt_price(hi),
        ]));
    frame.render_widget(chart, area);
}

// ------------------------------------------------------------------------------------- Log

fn pane_block(title: String, focused: bool) -> Block<'static> {
    let block = Block::bordered().title(title);
    if focused {
        block.border_style(Style::new().fg(Color::Cyan))
    } else {
        block
    }
}

fn draw_log(frame: &mut Frame, area: Rect, state: &AppState) {
    let [trades_area, events_area] =
        Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(area);

    let header = Row::new([
        "Time",
        "Security",
        "Price",
        "Qty",
        "Buy order",
        "Sell order",
    ])
    .style(HEADER);
    let visible = trades_area.height.saturating_sub(3) as usize;
    let rows = state
        .trades
        .iter()
        .rev()
        .skip(state.trade_scroll)
        .take(visible)
        .map(|t| {
            Row::new(vec![
                Cell::from(fmt_uptime(t.uptime_ms)),
                Cell::from(state.code(t.security)).bold(),
                Cell::from(fmt_price(t.price)),
                Cell::from(fmt_qty(t.qty)),
                Cell::from(t.buy.0.to_string()).style(Style::new().fg(Color::Green)),
                Cell::from(t.sell.0.to_string()).style(Style::new().fg(Color::Red)),
            ])
        });
    let scroll_note = |n: usize| {
        if n > 0 {
            format!(", {n} newer above")
        } else {
            String::new()
        }
    };
    let title = format!(
        " Matching log ({} sampled{}) ",
        state.trades.len(),
        scroll_note(state.trade_scroll)
    );
    let table = Table::new(
        rows,
        [
            Constraint::Length(13),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Length(9),
            Constraint::Length(14),
            Constraint::Length(14),
        ],
    )
    .header(header)
    .block(pane_block(title, state.log_focus == LogPane::Trades));
    frame.render_widget(table, trades_area);

    let visible = events_area.height.saturating_sub(2) as usize;
    let lines: Vec<Line> = state
        .log
        .iter()
        .rev()
        .skip(state.log_scroll)
        .take(visible)
        .map(|e| {
            let (tag, color) = match e.kind {
                LogKind::NodeJoined => ("joined", Color::Green),
                LogKind::NodeLost => ("lost", Color::Red),
                LogKind::ShardMoved => ("shard", Color::Magenta),
                LogKind::Reject => ("reject", Color::Yellow),
                LogKind::Info => ("info", Color::Gray),
            };
            Line::from(vec![
                Span::raw(format!("{} ", fmt_uptime(e.uptime_ms))),
                Span::styled(
                    format!("{tag:<7}"),
                    Style::new().fg(color).add_modifier(Modifier::BOLD),
                ),
                Span::raw(e.text.clone()),
            ])
        })
        .collect();
    let title = format!(
        " Events ({}{}) ",
        state.log.len(),
        scroll_note(state.log_scroll)
    );
    frame.render_widget(
        Paragraph::new(lines).block(pane_block(title, state.log_focus == LogPane::Events)),
        events_area,
    );
}
