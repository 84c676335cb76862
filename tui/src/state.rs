//! Pure application state of the monitor: applies what the network delivers, keeps bounded
//! history, and answers key presses. No I/O, no clock: the caller passes the time in, so every
//! behaviour here is testable without a terminal or a manager.

use std::collections::{HashMap, VecDeque};

use crate::market::{FeedTrade, MarketPicture};
use matching::{Phase, Price, Qty, SecurityId, Timestamp};
use proto::{
    Counters, GridSnapshot, LatencySummary, LogEntry, LogKind, MonitorMsg, NodeInfo, SecurityView,
    TradeTick, Welcome,
};

/// Trades kept for the matching log (newest last).
pub const MAX_TRADES: usize = 2000;
/// Event lines kept for the log view.
pub const MAX_LOG: usize = 2000;
/// Orders/s samples kept for the sparkline (one per snapshot, ~4 per second: about a minute).
pub const RATE_HISTORY: usize = 240;
/// Trade prices kept per security when the snapshot carries no price history of its own.
pub const PRICE_HISTORY: usize = 200;
/// A connected feed with no snapshot for this long is shown as stale.
pub const STALE_AFTER_MS: u64 = 3000;
/// Rows moved by PageUp/PageDown.
const PAGE: usize = 10;

/// What the network task reports, in the order it happened.
#[derive(Clone, Debug, PartialEq)]
pub enum NetEvent {
    /// Dialling the manager (attempt counts from 1 since the last successful session).
    Connecting {
        attempt: u32,
    },
    Connected(Welcome),
    /// The session ended or could not start; the next attempt follows after `retry_in_ms`.
    Disconnected {
        reason: String,
        attempt: u32,
        retry_in_ms: u64,
    },
    Msg(MonitorMsg),
    /// The manager refused this monitor (wrong token, wrong certificate, other version):
    /// retrying cannot help, the tui exits with this reason.
    Fatal(String),
    /// Subscribed to the market-data feed (L2, `levels` per side, every security).
    FeedUp {
        levels: u32,
    },
    /// The feed session ended (a new one follows unless the manager refused it).
    FeedDown(String),
    /// The books as the feed shows them (newest only).
    Market(MarketPicture),
    /// Every trade from the feed, in order.
    FeedTrades(Vec<FeedTrade>),
}

/// One side's price levels, best first.
pub type Levels<'a> = &'a [(Price, Qty)];

/// The Market view's feed session as shown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum FeedConn {
    /// Not subscribed (yet): the view shows the monitor's sampled depth and trades.
    #[default]
    Off,
    Live {
        levels: u32,
    },
    Lost(String),
}

/// The three screens, in Tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Grid,
    Market,
    Log,
}

impl View {
    pub const ALL: [View; 3] = [View::Grid, View::Market, View::Log];

    pub fn title(self) -> &'static str {
        match self {
            View::Grid => "Grid",
            View::Market => "Market",
            View::Log => "Log",
        }
    }

    pub fn index(self) -> usize {
        View::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }

    fn step(self, delta: isize) -> View {
        let n = View::ALL.len() as isize;
        View::ALL[((self.index() as isize + delta).rem_euclid(n)) as usize]
    }
}

/// Which list of the Log view the arrows scroll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogPane {
    Trades,
    Events,
}

/// Connection state as shown in the header.
#[derive(Clone, Debug, PartialEq)]
pub enum Conn {
    Connecting {
        attempt: u32,
    },
    Connected {
        session: u32,
        rules: String,
    },
    Disconnected {
        reason: String,
        attempt: u32,
        retry_in_ms: u64,
    },
}

/// Terminal-independent key presses (main.rs maps crossterm events onto these).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Tab,
    BackTab,
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Home,
    End,
    Enter,
    Esc,
    Backspace,
    Char(char),
    /// Ctrl-C: raw mode swallows SIGINT, so it arrives as a key.
    Interrupt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
}

/// One listed security: the latest view from the manager plus what the tui saw itself.
#[derive(Clone, Debug, PartialEq)]
pub struct SecurityRow {
    pub view: SecurityView,
    /// Prices of the sampled trades seen by this tui, oldest first (used when the snapshot
    /// carries no price history for this security).
    pub seen_prices: VecDeque<Price>,
}

impl SecurityRow {
    fn listed(id: SecurityId, code: String, reference_price: Price) -> Self {
        SecurityRow {
            view: SecurityView {
                id,
                code,
                reference_price,
                last_price: None,
                volume: 0,
                bid_total: 0,
                ask_total: 0,
                owner: None,
                bids: Vec::new(),
                asks: Vec::new(),
                recent_prices: Vec::new(),
                indicative: None,
                last_auction: None,
            },
            seen_prices: VecDeque::new(),
        }
    }

    /// Change of the last price against the reference price, absolute and in percent.
    pub fn change(&self) -> Option<(Price, f64)> {
        let last = self.view.last_price?;
        let diff = last - self.view.reference_price;
        let pct = if self.view.reference_price != 0 {
            diff as f64 * 100.0 / self.view.reference_price as f64
        } else {
            0.0
        };
        Some((diff, pct))
    }

    /// Recent trade prices for the chart, oldest first.
    pub fn chart_prices(&self) -> Vec<Price> {
        if !self.view.recent_prices.is_empty() {
            self.view.recent_prices.clone()
        } else {
            self.seen_prices.iter().copied().collect()
        }
    }
}

/// Everything the screens show. Mutated only through [`AppState::apply`],
/// [`AppState::handle_key`] and [`AppState::tick`].
#[derive(Clone, Debug)]
pub struct AppState {
    pub manager_addr: String,
    pub view: View,
    pub conn: Conn,
    /// Local clock (ms since the tui started), set by [`AppState::tick`].
    pub now_ms: u64,
    last_snapshot_at: Option<u64>,

    pub nodes: Vec<NodeInfo>,
    pub selected_node: usize,
    pub uptime_ms: u64,
    pub shard_map_version: u64,
    pub counters: Counters,
    pub orders_per_sec: f64,
    pub latency: LatencySummary,
    pub rate_history: VecDeque<u64>,

    pub securities: Vec<SecurityRow>,
    index: HashMap<SecurityId, usize>,
    pub selected_security: usize,
    /// `Some` while the `/` prompt is open.
    pub search: Option<String>,

    pub trades: VecDeque<TradeTick>,
    pub log: VecDeque<LogEntry>,
    pub paused: bool,
    held_trades: VecDeque<TradeTick>,
    held_log: VecDeque<LogEntry>,
    /// Rows skipped from the newest end of each Log pane.
    pub trade_scroll: usize,
    pub log_scroll: usize,
    pub log_focus: LogPane,
    /// Trades and log lines held while paused that overflowed. Ageing out of the visible
    /// history is not counted: that is the bound working, not a loss.
    pub dropped: u64,
    /// Overflow of the network inbox (set by the caller from [`crate::net::Inbox::dropped`]).
    pub feed_dropped: u64,
    /// Set when the manager refused this monitor for good: the tui exits with it.
    pub fatal: Option<String>,

    /// The trading phase (from the welcome, then every snapshot).
    pub phase: Phase,
    /// The exchange clock of the last snapshot, ns since the Unix epoch (0: none yet).
    pub exchange_time: Timestamp,
    /// The manager's schedule, as it describes it (`continuous`, or `hose, ...`).
    pub schedule: String,

    /// The market-data feed session; while it is live its books and trades replace the
    /// monitor's samples in the Market and Log views.
    pub feed: FeedConn,
    pub market: MarketPicture,
}

/// One row of the grid view's auction panel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuctionRow {
    pub code: String,
    pub price: Price,
    pub volume: Qty,
}

/// What the auction panel shows: while a call phase is open, the indicative price and volume
/// of each security that would trade; otherwise the latest auction's results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuctionPanel {
    Indicative(Vec<AuctionRow>),
    Results(Vec<AuctionRow>),
}

fn push_bounded<T>(q: &mut VecDeque<T>, item: T, cap: usize) -> bool {
    q.push_back(item);
    if q.len() > cap {
        q.pop_front();
        true
    } else {
        false
    }
}

impl AppState {
    pub fn new(manager_addr: impl Into<String>) -> Self {
        AppState {
            manager_addr: manager_addr.into(),
            view: View::Grid,
            conn: Conn::Connecting { attempt: 1 },
            now_ms: 0,
            last_snapshot_at: None,
            nodes: Vec::new(),
            selected_node: 0,
            uptime_ms: 0,
            shard_map_version: 0,
            counters: Counters::default(),
            orders_per_sec: 0.0,
            latency: LatencySummary::default(),
            rate_history: VecDeque::new(),
            securities: Vec::new(),
            index: HashMap::new(),
            selected_security: 0,
            search: None,
            trades: VecDeque::new(),
            log: VecDeque::new(),
            paused: false,
            held_trades: VecDeque::new(),
            held_log: VecDeque::new(),
            trade_scroll: 0,
            log_scroll: 0,
            log_focus: LogPane::Trades,
            dropped: 0,
            feed_dropped: 0,
            fatal: None,
            phase: Phase::Continuous,
            exchange_time: 0,
            schedule: String::new(),
            feed: FeedConn::Off,
            market: MarketPicture::default(),
        }
    }

    /// The auction panel's rows, the largest volume first (then by code): indicative while a
    /// call phase is open, else each security's latest auction.
    pub fn auctions(&self) -> AuctionPanel {
        let call = self.phase.is_call();
        let mut rows: Vec<AuctionRow> = self
            .securities
            .iter()
            .filter_map(|s| {
                let v = &s.view;
                let (price, volume) = if call { v.indicative } else { v.last_auction }?;
                Some(AuctionRow {
                    code: v.code.clone(),
                    price,
                    volume,
                })
            })
            .collect();
        rows.sort_by(|a, b| b.volume.cmp(&a.volume).then_with(|| a.code.cmp(&b.code)));
        if call {
            AuctionPanel::Indicative(rows)
        } else {
            AuctionPanel::Results(rows)
        }
    }

    /// The feed session is up and its books are in sync.
    pub fn feed_live(&self) -> bool {
        matches!(self.feed, FeedConn::Live { .. })
    }

    /// The selected book's top levels, from the feed when it is live and synced, else from
    /// the monitor's snapshot; with where they came from.
    pub fn book_levels<'a>(
        &'a self,
        row: &'a SecurityRow,
    ) -> (Levels<'a>, Levels<'a>, &'static str) {
        match self.market.books.get(&row.view.id) {
            Some(b) if self.feed_live() && self.market.synced => (&b.bids, &b.asks, "feed"),
            _ => (&row.view.bids, &row.view.asks, "sampled"),
        }
    }

    /// Recent trade prices for the selected book's chart: every trade this tui saw while the
    /// feed is live, else the snapshot's own history when it has one.
    pub fn chart_prices(&self, row: &SecurityRow) -> Vec<Price> {
        if self.feed_live() {
            row.seen_prices.iter().copied().collect()
        } else {
            row.chart_prices()
        }
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.conn, Conn::Connected { .. })
    }

    /// Connected, but no snapshot for [`STALE_AFTER_MS`]: the manager may be stalled.
    pub fn is_stale(&self) -> bool {
        self.is_connected()
            && self
                .last_snapshot_at
                .is_some_and(|t| self.now_ms.saturating_sub(t) > STALE_AFTER_MS)
    }

    /// Trades and log lines held back while paused.
    pub fn held(&self) -> usize {
        self.held_trades.len() + self.held_log.len()
    }

    /// Rows the operator will never see (paused overflow + inbox overflow).
    pub fn lost(&self) -> u64 {
        self.dropped + self.feed_dropped
    }

    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    pub fn security(&self, id: SecurityId) -> Option<&SecurityRow> {
        self.index.get(&id).map(|&i| &self.securities[i])
    }

    pub fn selected(&self) -> Option<&SecurityRow> {
        self.securities.get(self.selected_security)
    }

    /// Security code for display; unknown ids show as `#id`.
    pub fn code(&self, id: SecurityId) -> String {
        self.security(id)
            .map_or_else(|| format!("#{}", id.0), |s| s.view.code.clone())
    }

    pub fn node_name(&self, id: u32) -> Option<&str> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.name.as_str())
    }

    /// Securities owned by each node according to the last snapshot, in node order.
    pub fn shard_map(&self) -> Vec<(u32, Vec<&str>)> {
        let mut owned: Vec<(u32, Vec<&str>)> =
            self.nodes.iter().map(|n| (n.id, Vec::new())).collect();
        for s in &self.securities {
            if let Some(owner) = s.view.owner {
                match owned.iter_mut().find(|(id, _)| *id == owner) {
                    Some((_, codes)) => codes.push(&s.view.code),
                    None => owned.push((owner, vec![&s.view.code])),
                }
            }
        }
        owned
    }

    /// Listed securities with no owner in the last snapshot that mentioned them.
    pub fn unassigned(&self) -> usize {
        self.securities
            .iter()
            .filter(|s| s.view.owner.is_none())
            .count()
    }

    fn local_event(&mut self, text: String) {
        let entry = LogEntry {
            uptime_ms: self.uptime_ms,
            kind: LogKind::Info,
            text,
        };
        self.add_log(entry);
    }

    fn add_log(&mut self, entry: LogEntry) {
        if self.paused {
            self.dropped += u64::from(push_bounded(&mut self.held_log, entry, MAX_LOG));
        } else {
            push_bounded(&mut self.log, entry, MAX_LOG);
            if self.log_scroll > 0 {
                // Keep the rows the operator is reading in place.
                self.log_scroll = (self.log_scroll + 1).min(self.log.len().saturating_sub(1));
            }
        }
    }

    fn add_trade(&mut self, t: TradeTick) {
        if let Some(&i) = self.index.get(&t.security) {
            let row = &mut self.securities[i];
            push_bounded(&mut row.seen_prices, t.price, PRICE_HISTORY);
            if row.view.recent_prices.is_empty() {
                row.view.last_price = Some(t.price);
            }
        }
        if self.paused {
            self.dropped += u64::from(push_bounded(&mut self.held_trades, t, MAX_TRADES));
        } else {
            push_bounded(&mut self.trades, t, MAX_TRADES);
            if self.trade_scroll > 0 {
                self.trade_scroll =
                    (self.trade_scroll + 1).min(self.trades.len().saturating_sub(1));
            }
        }
    }

    fn set_listing(&mut self, welcome: &Welcome) {
        let selected_id = self.selected().map(|s| s.view.id);
        let old: HashMap<SecurityId, SecurityRow> =
            self.securities.drain(..).map(|s| (s.view.id, s)).collect();
        let mut old = old;
        let mut rows: Vec<SecurityRow> = welcome
            .securities
            .iter()
            .map(|info| {
                // Keep what we already saw of a security that is still listed.
                let mut row = old.remove(&info.id).unwrap_or_else(|| {
                    SecurityRow::listed(info.id, info.code.clone(), info.reference_price)
                });
                row.view.code = info.code.clone();
                row.view.reference_price = info.reference_price;
                row
            })
            .collect();
        rows.sort_by_key(|r| r.view.id);
        self.securities = rows;
        self.reindex();
        self.selected_security = selected_id
            .and_then(|id| self.index.get(&id).copied())
            .unwrap_or(0);
    }

    fn reindex(&mut self) {
        self.index = self
            .securities
            .iter()
            .enumerate()
            .map(|(i, s)| (s.view.id, i))
            .collect();
    }

    fn apply_snapshot(&mut self, snap: GridSnapshot) {
        self.last_snapshot_at = Some(self.now_ms);
        self.uptime_ms = snap.uptime_ms;
        if snap.phase != self.phase {
            self.local_event(format!(
                "phase {} -> {} at {}",
                self.phase.as_str(),
                snap.phase.as_str(),
                fmt_exchange_time(snap.exchange_time)
            ));
        }
        self.phase = snap.phase;
        self.exchange_time = snap.exchange_time;
        self.schedule = snap.schedule;
        self.shard_map_version = snap.shard_map_version;
        self.counters = snap.counters;
        self.orders_per_sec = snap.orders_per_sec;
        self.latency = snap.latency;
        push_bounded(
            &mut self.rate_history,
            snap.orders_per_sec.max(0.0).round() as u64,
            RATE_HISTORY,
        );
        self.nodes = snap.nodes;
        self.selected_node = self.selected_node.min(self.nodes.len().saturating_sub(1));
        let mut added = false;
        for view in snap.securities {
            match self.index.get(&view.id) {
                Some(&i) => self.securities[i].view = view,
                None => {
                    // Not in the welcome listing (should not happen); show it anyway.
                    self.securities.push(SecurityRow {
                        view,
                        seen_prices: VecDeque::new(),
                    });
                    added = true;
                }
            }
        }
        if added {
            let selected_id = self.selected().map(|s| s.view.id);
            self.securities.sort_by_key(|r| r.view.id);
            self.reindex();
            if let Some(i) = selected_id.and_then(|id| self.index.get(&id).copied()) {
                self.selected_security = i;
            }
        }
    }

    /// Applies one report from the network task.
    pub fn apply(&mut self, event: NetEvent) {
        match event {
            NetEvent::Connecting { attempt } => {
                // While disconnected the header keeps the reason; only a first dial shows this.
                if !matches!(self.conn, Conn::Disconnected { .. }) {
                    self.conn = Conn::Connecting { attempt };
                }
            }
            NetEvent::Connected(welcome) => {
                self.set_listing(&welcome);
                self.phase = welcome.phase;
                self.conn = Conn::Connected {
                    session: welcome.session,
                    rules: welcome.rules.clone(),
                };
                self.last_snapshot_at = Some(self.now_ms);
                self.local_event(format!(
                    "tui: connected to {} (session {}, {} securities, rules {})",
                    self.manager_addr,
                    welcome.session,
                    welcome.securities.len(),
                    welcome.rules
                ));
            }
            NetEvent::Disconnected {
                reason,
                attempt,
                retry_in_ms,
            } => {
                if self.is_connected() {
                    self.local_event(format!("tui: connection lost: {reason}"));
                }
                self.conn = Conn::Disconnected {
                    reason,
                    attempt,
                    retry_in_ms,
                };
            }
            NetEvent::Fatal(reason) => self.fatal = Some(reason),
            NetEvent::Msg(MonitorMsg::Snapshot(snap)) => self.apply_snapshot(snap),
            NetEvent::Msg(MonitorMsg::Trades(trades)) => {
                // The feed has every trade; the monitor's are samples.
                if !self.feed_live() {
                    trades.into_iter().for_each(|t| self.add_trade(t))
                }
            }
            NetEvent::FeedUp { levels } => {
                self.local_event(format!(
                    "tui: market view on the feed (L2, {levels} levels, every trade)"
                ));
                self.feed = FeedConn::Live { levels };
            }
            NetEvent::FeedDown(reason) => {
                if self.feed_live() {
                    self.local_event(format!("tui: market feed lost: {reason}"));
                }
                self.feed = FeedConn::Lost(reason);
            }
            NetEvent::Market(picture) => self.market = picture,
            NetEvent::FeedTrades(trades) => {
                for t in trades {
                    // Public trades name no orders at L2: ids show as 0.
                    self.add_trade(TradeTick {
                        uptime_ms: self.uptime_ms,
                        security: t.trade.security,
                        price: t.trade.price,
                        qty: t.trade.qty,
                        buy: t.trade.buy.unwrap_or(matching::OrderId(0)),
                        sell: t.trade.sell.unwrap_or(matching::OrderId(0)),
                    });
                }
            }
            NetEvent::Msg(MonitorMsg::Log(entries)) => {
                entries.into_iter().for_each(|e| self.add_log(e))
            }
        }
    }

    fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
        if !paused {
            for t in std::mem::take(&mut self.held_trades) {
                push_bounded(&mut self.trades, t, MAX_TRADES);
            }
            for e in std::mem::take(&mut self.held_log) {
                push_bounded(&mut self.log, e, MAX_LOG);
            }
            self.trade_scroll = 0;
            self.log_scroll = 0;
        }
    }

    /// Index of the first security whose code starts with `query` (case-insensitive), else
    /// the first whose code contains it.
    pub fn find(&self, query: &str) -> Option<usize> {
        let q = query.trim().to_ascii_uppercase();
        if q.is_empty() {
            return None;
        }
        let codes = || {
            self.securities
                .iter()
                .map(|s| s.view.code.to_ascii_uppercase())
        };
        codes()
            .position(|c| c.starts_with(&q))
            .or_else(|| codes().position(|c| c.contains(&q)))
    }

    /// Moves the selection of the current view by `delta` rows (scrolls in the Log view).
    fn move_selection(&mut self, delta: isize) {
        fn moved(cur: usize, delta: isize, len: usize) -> usize {
            if len == 0 {
                return 0;
            }
            (cur as isize + delta).clamp(0, len as isize - 1) as usize
        }
        match self.view {
            View::Grid => self.selected_node = moved(self.selected_node, delta, self.nodes.len()),
            View::Market => {
                self.selected_security = moved(self.selected_security, delta, self.securities.len())
            }
            // Log rows are newest first: "down" goes to older rows, i.e. a larger offset.
            View::Log => match self.log_focus {
                LogPane::Trades => {
                    self.trade_scroll = moved(self.trade_scroll, delta, self.trades.len())
                }
                LogPane::Events => self.log_scroll = moved(self.log_scroll, delta, self.log.len()),
            },
        }
    }

    /// Applies one key press; returns [`Action::Quit`] when the tui should exit.
    pub fn handle_key(&mut self, key: Key) -> Action {
        if key == Key::Interrupt {
            return Action::Quit;
        }
        if let Some(query) = self.search.as_mut() {
            match key {
                Key::Esc => self.search = None,
                Key::Enter => {
                    self.search = None;
                    self.view = View::Market;
                }
                Key::Backspace => {
                    query.pop();
                }
                Key::Char(c) if !c.is_control() => query.push(c),
                Key::Up => self.selected_security = self.selected_security.saturating_sub(1),
                Key::Down => {
                    self.selected_security =
                        (self.selected_security + 1).min(self.securities.len().saturating_sub(1))
                }
                _ => {}
            }
            if matches!(key, Key::Char(_) | Key::Backspace) {
                let query = self.search.clone().unwrap_or_default();
                if let Some(i) = self.find(&query) {
                    self.selected_security = i;
                }
            }
            return Action::None;
        }
        match key {
            Key::Char('q') | Key::Char('Q') => return Action::Quit,
            Key::Tab => self.view = self.view.step(1),
            Key::BackTab => self.view = self.view.step(-1),
            Key::Char('1') => self.view = View::Grid,
            Key::Char('2') => self.view = View::Market,
            Key::Char('3') => self.view = View::Log,
            Key::Up | Key::Char('k') => self.move_selection(-1),
            Key::Down | Key::Char('j') => self.move_selection(1),
            Key::PageUp => self.move_selection(-(PAGE as isize)),
            Key::PageDown => self.move_selection(PAGE as isize),
            Key::Home | Key::Char('g') => self.move_selection(isize::MIN / 2),
            Key::End | Key::Char('G') => self.move_selection(isize::MAX / 2),
            Key::Left | Key::Right | Key::Char('h') | Key::Char('l') if self.view == View::Log => {
                self.log_focus = match self.log_focus {
                    LogPane::Trades => LogPane::Events,
                    LogPane::Events => LogPane::Trades,
                }
            }
            Key::Char('/') => {
                self.search = Some(String::new());
                self.view = View::Market;
            }
            Key::Char(' ') => self.set_paused(!self.paused),
            Key::Esc if self.view == View::Log => {
                self.trade_scroll = 0;
                self.log_scroll = 0;
            }
            _ => {}
        }
        Action::None
    }
}

/// Formats manager uptime milliseconds as `HH:MM:SS.mmm`.
pub fn fmt_uptime(ms: u64) -> String {
    let s = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        s / 3600,
        (s / 60) % 60,
        s % 60,
        ms % 1000
    )
}

/// Formats an exchange time (ns since the Unix epoch) as `YYYY-MM-DD HH:MM:SS` at the
/// exchange (HOSE, UTC+7, no daylight saving); `--` before the first snapshot.
pub fn fmt_exchange_time(t: Timestamp) -> String {
    if t == 0 {
        return "--".into();
    }
    let Ok(offset) = time::UtcOffset::from_hms(7, 0, 0) else {
        return "--".into();
    };
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t)) {
        Ok(at) => {
            let at = at.to_offset(offset);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                at.year(),
                u8::from(at.month()),
                at.day(),
                at.hour(),
                at.minute(),
                at.second()
            )
        }
        Err(_) => "--".into(),
    }
}

/// Formats an integer with thousands separators (`25350` -> `25,350`).
pub fn fmt_int(v: i128) -> String {
    let digits = v.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if v < 0 {
        out.push('-');
    }
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

pub fn fmt_price(p: Price) -> String {
    fmt_int(i128::from(p))
}

pub fn fmt_qty(q: Qty) -> String {
    fmt_int(i128::from(q))
}

/// Formats a heartbeat age compactly (`850ms`, `12.3s`).
pub fn fmt_age(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use matching::OrderId;
    use proto::{NodeStatus, SecurityInfo};

    fn welcome(codes: &[&str]) -> Welcome {
        Welcome {
            session: 7,
            securities: codes
                .iter()
                .enumerate()
                .map(|(i, c)| SecurityInfo {
                    id: SecurityId(i as u32),
                    code: c.to_string(),
                    reference_price: 10_000,
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
        }
    }

    fn trade(i: u64) -> TradeTick {
        TradeTick {
            uptime_ms: i,
            security: SecurityId(0),
            price: 10_000 + i as i64,
            qty: 100,
            buy: OrderId(i),
            sell: OrderId(i + 1),
        }
    }

    fn node(id: u32, name: &str, status: NodeStatus) -> NodeInfo {
        NodeInfo {
            id,
            name: name.into(),
            addr: "127.0.0.1:1".into(),
            status,
            securities: 1,
            orders_handled: 10,
            orders_per_sec: 1.0,
            queue_depth: 0,
            heartbeat_age_ms: 100,
        }
    }

    fn snapshot(nodes: Vec<NodeInfo>, rate: f64) -> GridSnapshot {
        GridSnapshot {
            uptime_ms: 1000,
            shard_map_version: 2,
            nodes,
            counters: Counters::default(),
            orders_per_sec: rate,
            latency: LatencySummary::default(),
            securities: Vec::new(),
            phase: matching::Phase::Continuous,
            exchange_time: 0,
            schedule: "continuous".into(),
        }
    }

    #[test]
    fn tab_cycles_views_both_ways() {
        let mut s = AppState::new("m");
        assert_eq!(s.view, View::Grid);
        s.handle_key(Key::Tab);
        assert_eq!(s.view, View::Market);
        s.handle_key(Key::Tab);
        assert_eq!(s.view, View::Log);
        s.handle_key(Key::Tab);
        assert_eq!(s.view, View::Grid);
        s.handle_key(Key::BackTab);
        assert_eq!(s.view, View::Log);
        assert_eq!(s.handle_key(Key::Char('q')), Action::Quit);
        assert_eq!(s.handle_key(Key::Interrupt), Action::Quit);
    }

    #[test]
    fn trade_history_is_bounded_and_keeps_newest() {
        let mut s = AppState::new("m");
        s.apply(NetEvent::Connected(welcome(&["AAA"])));
        s.apply(NetEvent::Msg(MonitorMsg::Trades(
            (0..MAX_TRADES as u64 + 50).map(trade).collect(),
        )));
        assert_eq!(s.trades.len(), MAX_TRADES);
        assert_eq!(
            s.trades.back().unwrap().buy,
            OrderId(MAX_TRADES as u64 + 49)
        );
        assert_eq!(s.trades.front().unwrap().buy, OrderId(50));
        assert_eq!(s.dropped, 0, "ageing out of the history is not a loss");
        assert_eq!(s.securities[0].seen_prices.len(), PRICE_HISTORY);
        assert_eq!(
            s.securities[0].view.last_price,
            Some(10_000 + MAX_TRADES as i64 + 49)
        );
    }

    #[test]
    fn rate_history_is_bounded() {
        let mut s = AppState::new("m");
        for i in 0..RATE_HISTORY + 10 {
            s.apply(NetEvent::Msg(MonitorMsg::Snapshot(snapshot(
                vec![],
                i as f64,
            ))));
        }
        assert_eq!(s.rate_history.len(), RATE_HISTORY);
        assert_eq!(*s.rate_history.back().unwrap(), (RATE_HISTORY + 9) as u64);
    }

    #[test]
    fn pause_holds_new_rows_and_resume_releases_them() {
        let mut s = AppState::new("m");
        s.apply(NetEvent::Connected(welcome(&["AAA"])));
        s.apply(NetEvent::Msg(MonitorMsg::Trades(vec![trade(1)])));
        s.handle_key(Key::Char(' '));
        assert!(s.paused);
        s.apply(NetEvent::Msg(MonitorMsg::Trades(vec![trade(2), trade(3)])));
        assert_eq!(s.trades.len(), 1, "paused view must not move");
        assert_eq!(s.held(), 2);
        s.handle_key(Key::Char(' '));
        assert!(!s.paused);
        assert_eq!(s.trades.len(), 3);
        assert_eq!(s.held(), 0);

        // Held rows are bounded too; what overflows is counted as dropped.
        s.handle_key(Key::Char(' '));
        s.apply(NetEvent::Msg(MonitorMsg::Trades(
            (0..MAX_TRADES as u64 + 5).map(trade).collect(),
        )));
        assert_eq!(s.held(), MAX_TRADES);
        assert_eq!(s.dropped, 5);
    }

    #[test]
    fn scrolling_keeps_rows_in_place_when_new_ones_arrive() {
        let mut s = AppState::new("m");
        s.apply(NetEvent::Connected(welcome(&["AAA"])));
        s.apply(NetEvent::Msg(MonitorMsg::Trades(
            (0..20).map(trade).collect(),
        )));
        s.view = View::Log;
        s.handle_key(Key::Down);
        s.handle_key(Key::Char('j'));
        assert_eq!(s.trade_scroll, 2);
        s.apply(NetEvent::Msg(MonitorMsg::Trades(vec![trade(20)])));
        assert_eq!(s.trade_scroll, 3);
        s.handle_key(Key::Home);
        assert_eq!(s.trade_scroll, 0);
        s.handle_key(Key::Right);
        assert_eq!(s.log_focus, LogPane::Events);
    }

    #[test]
    fn search_selects_matching_security() {
        let mut s = AppState::new("m");
        s.apply(NetEvent::Connected(welcome(&["AAA", "VNM", "FPT", "VIC"])));
        s.handle_key(Key::Char('/'));
        assert_eq!(s.view, View::Market);
        s.handle_key(Key::Char('f'));
        assert_eq!(s.selected().unwrap().view.code, "FPT");
        s.handle_key(Key::Backspace);
        s.handle_key(Key::Char('v'));
        s.handle_key(Key::Char('i'));
        assert_eq!(s.selected().unwrap().view.code, "VIC");
        // 'q' while typing is text, not quit.
        assert_eq!(s.handle_key(Key::Char('q')), Action::None);
        s.handle_key(Key::Enter);
        assert!(s.search.is_none());
        assert_eq!(s.selected().unwrap().view.code, "VIC");
        assert_eq!(s.find("n"), Some(1), "falls back to a substring match");
        assert_eq!(s.find("zzz"), None);
    }

    #[test]
    fn disconnect_keeps_last_nodes_and_reconnect_rebuilds_listing() {
        let mut s = AppState::new("m");
        s.apply(NetEvent::Connected(welcome(&["AAA", "BBB"])));
        s.apply(NetEvent::Msg(MonitorMsg::Snapshot(snapshot(
            vec![node(1, "exec-a", NodeStatus::Up)],
            5.0,
        ))));
        s.handle_key(Key::Tab);
        s.handle_key(Key::Down);
        s.apply(NetEvent::Disconnected {
            reason: "timed out".into(),
            attempt: 1,
            retry_in_ms: 250,
        });
        assert!(!s.is_connected());
        assert_eq!(s.nodes.len(), 1, "last known nodes stay visible");
        assert!(s
            .log
            .iter()
            .any(|e| e.text.contains("connection lost: timed out")));
        s.apply(NetEvent::Connecting { attempt: 2 });
        assert!(
            matches!(s.conn, Conn::Disconnected { .. }),
            "reason stays shown while retrying"
        );
        // The restarted manager lists one more security; ids of the old ones are unchanged.
        let mut relisted = welcome(&["AAA", "BBB"]);
        relisted.securities.insert(
            0,
            SecurityInfo {
                id: SecurityId(9),
                code: "CCC".into(),
                reference_price: 5_000,
            },
        );
        s.apply(NetEvent::Connected(relisted));
        assert!(s.is_connected());
        assert_eq!(s.securities.len(), 3);
        assert_eq!(
            s.selected().unwrap().view.code,
            "BBB",
            "selection follows the security"
        );
        assert_eq!(s.securities[2].view.code, "CCC", "rows are sorted by id");
    }

    #[test]
    fn stale_feed_is_detected() {
        let mut s = AppState::new("m");
        s.apply(NetEvent::Connected(welcome(&["AAA"])));
        s.apply(NetEvent::Msg(MonitorMsg::Snapshot(snapshot(vec![], 1.0))));
        s.tick(STALE_AFTER_MS - 1);
        assert!(!s.is_stale());
        s.tick(STALE_AFTER_MS + 1);
        assert!(s.is_stale());
    }

    fn view(id: u32, code: &str) -> SecurityView {
        SecurityView {
            id: SecurityId(id),
            code: code.into(),
            reference_price: 10_000,
            last_price: None,
            volume: 0,
            bid_total: 0,
            ask_total: 0,
            owner: None,
            bids: Vec::new(),
            asks: Vec::new(),
            recent_prices: Vec::new(),
            indicative: None,
            last_auction: None,
        }
    }

    #[test]
    fn phase_and_clock_follow_snapshots_and_changes_are_logged() {
        let mut s = AppState::new("m");
        let mut w = welcome(&["AAA"]);
        w.phase = matching::Phase::Ato;
        s.apply(NetEvent::Connected(w));
        assert_eq!(s.phase, matching::Phase::Ato, "the welcome tells the phase");
        let mut snap = snapshot(vec![], 0.0);
        snap.phase = matching::Phase::Ato;
        // 2026-01-09 09:07:30 at HOSE (UTC+7) = 02:07:30 UTC.
        snap.exchange_time = 1_767_924_450_000_000_000;
        snap.schedule = "hose, 1 day(s) from 2026-01-09, 60.0 s per day".into();
        s.apply(NetEvent::Msg(MonitorMsg::Snapshot(snap.clone())));
        assert_eq!(s.exchange_time, snap.exchange_time);
        assert!(s.schedule.starts_with("hose"));
        assert!(!s.log.iter().any(|e| e.text.contains("phase ")));
        snap.phase = matching::Phase::Continuous;
        snap.exchange_time += 8 * 60 * 1_000_000_000;
        s.apply(NetEvent::Msg(MonitorMsg::Snapshot(snap)));
        assert_eq!(s.phase, matching::Phase::Continuous);
        assert!(
            s.log
                .iter()
                .any(|e| e.text == "phase ATO -> CONTINUOUS at 2026-01-09 09:15:30"),
            "{:?}",
            s.log
        );
    }

    #[test]
    fn auction_panel_shows_indicative_in_a_call_and_results_outside() {
        let mut s = AppState::new("m");
        s.apply(NetEvent::Connected(welcome(&["AAA", "BBB", "CCC"])));
        let mut snap = snapshot(vec![], 0.0);
        let mut a = view(0, "AAA");
        a.indicative = Some((10_050, 300));
        a.last_auction = Some((9_990, 1_000));
        let mut b = view(1, "BBB");
        b.indicative = Some((20_000, 5_000));
        let c = view(2, "CCC");
        snap.securities = vec![a, b, c];
        snap.phase = matching::Phase::Atc;
        s.apply(NetEvent::Msg(MonitorMsg::Snapshot(snap.clone())));
        let row = |code: &str, price, volume| AuctionRow {
            code: code.into(),
            price,
            volume,
        };
        assert_eq!(
            s.auctions(),
            AuctionPanel::Indicative(vec![row("BBB", 20_000, 5_000), row("AAA", 10_050, 300)])
        );
        snap.phase = matching::Phase::Closed;
        s.apply(NetEvent::Msg(MonitorMsg::Snapshot(snap)));
        assert_eq!(
            s.auctions(),
            AuctionPanel::Results(vec![row("AAA", 9_990, 1_000)])
        );
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_exchange_time(0), "--");
        assert_eq!(
            fmt_exchange_time(1_767_924_450_000_000_000),
            "2026-01-09 09:07:30"
        );
        assert_eq!(fmt_uptime(3_723_004), "01:02:03.004");
        assert_eq!(fmt_int(25_350), "25,350");
        assert_eq!(fmt_int(-1_234_567), "-1,234,567");
        assert_eq!(fmt_int(999), "999");
        assert_eq!(fmt_age(850), "850ms");
        assert_eq!(fmt_age(12_300), "12.3s");
    }
}
