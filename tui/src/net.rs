//! The connection tasks: [`run`] dials the manager as a monitor, reads [`MonitorMsg`] frames
//! and hands them to the UI through an [`Inbox`]; [`run_feed`] subscribes to the public
//! market-data feed (L2, every security), applies it in a [`MarketTracker`] and hands the UI
//! the books and every trade. Both reconnect with backoff when their session ends.
//!
//! The inbox never blocks the readers and is bounded: only the newest snapshot and market
//! picture are kept (each one is complete), trades and log lines are capped (oldest dropped
//! first, counted), connection changes are kept in order. So a slow or frozen terminal costs
//! the manager nothing: it keeps writing to readers that are always draining.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use feed::{FeedLevel, Securities, Subscription};
use proto::{Credentials, FeedRequest, FeedUpdate, GridSnapshot, LogEntry, MonitorMsg, TradeTick};
use tokio::sync::watch;

use crate::market::{FeedTrade, MarketPicture, MarketTracker};
use crate::state::NetEvent;

/// Trades buffered between two UI drains before the oldest are dropped.
pub const INBOX_TRADES: usize = 4096;
/// Log lines buffered between two UI drains before the oldest are dropped.
pub const INBOX_LOG: usize = 4096;
/// Connection changes buffered (only the latest matter if the UI is frozen that long).
const INBOX_STATUS: usize = 64;
/// Limit for one dial + handshake: QUIC gets no "connection refused" from a manager that is
/// down, so without a limit a dial waits for the idle timeout. Short at first (a restarting
/// manager on loopback answers in milliseconds), longer on later attempts for slow links.
pub fn connect_timeout(attempt: u32) -> Duration {
    Duration::from_millis((1000 * u64::from(attempt.max(1))).min(5000))
}

/// Pure, bounded buffer between the reader and the UI.
#[derive(Debug, Default)]
pub struct InboxState {
    status: VecDeque<NetEvent>,
    log: VecDeque<LogEntry>,
    trades: VecDeque<TradeTick>,
    snapshot: Option<GridSnapshot>,
    feed_trades: VecDeque<FeedTrade>,
    market: Option<MarketPicture>,
    /// Trades and log lines dropped because the UI did not drain in time.
    pub dropped: u64,
}

impl InboxState {
    pub fn push(&mut self, event: NetEvent) {
        match event {
            NetEvent::Msg(MonitorMsg::Snapshot(s)) => self.snapshot = Some(s),
            NetEvent::Msg(MonitorMsg::Trades(t)) => {
                self.trades.extend(t);
                let over = self.trades.len().saturating_sub(INBOX_TRADES);
                self.trades.drain(..over);
                self.dropped += over as u64;
            }
            NetEvent::Msg(MonitorMsg::Log(l)) => {
                self.log.extend(l);
                let over = self.log.len().saturating_sub(INBOX_LOG);
                self.log.drain(..over);
                self.dropped += over as u64;
            }
            NetEvent::FeedTrades(t) => {
                self.feed_trades.extend(t);
                let over = self.feed_trades.len().saturating_sub(INBOX_TRADES);
                self.feed_trades.drain(..over);
                self.dropped += over as u64;
            }
            NetEvent::Market(p) => self.market = Some(p),
            status => {
                self.status.push_back(status);
                if self.status.len() > INBOX_STATUS {
                    self.status.pop_front();
                }
            }
        }
    }

    /// Everything buffered, connection changes first and the newest snapshot last, so the
    /// state ends up showing the latest picture.
    pub fn drain(&mut self) -> Vec<NetEvent> {
        let mut out: Vec<NetEvent> = self.status.drain(..).collect();
        if !self.log.is_empty() {
            out.push(NetEvent::Msg(MonitorMsg::Log(self.log.drain(..).collect())));
        }
        if !self.trades.is_empty() {
            out.push(NetEvent::Msg(MonitorMsg::Trades(
                self.trades.drain(..).collect(),
            )));
        }
        if !self.feed_trades.is_empty() {
            out.push(NetEvent::FeedTrades(self.feed_trades.drain(..).collect()));
        }
        if let Some(s) = self.snapshot.take() {
            out.push(NetEvent::Msg(MonitorMsg::Snapshot(s)));
        }
        if let Some(p) = self.market.take() {
            out.push(NetEvent::Market(p));
        }
        out
    }
}

/// Shared handle on an [`InboxState`]; both sides hold the lock only to move data.
#[derive(Debug, Default)]
pub struct Inbox(Mutex<InboxState>);

impl Inbox {
    pub fn push(&self, event: NetEvent) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
    }
    pub fn drain(&self) -> Vec<NetEvent> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
    }
    pub fn dropped(&self) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .dropped
    }
}

/// Delay before attempt `attempt` (1-based) after a failure: 250 ms doubling to 5 s.
pub fn backoff(attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(5);
    Duration::from_millis((250u64 << exp).min(5000))
}

pub struct NetConfig {
    pub manager: String,
    pub token: String,
    /// Levels per side of the Market view's feed subscription.
    pub feed_levels: u32,
}

/// How often the feed task hands the UI a new picture of the books while messages flow (the
/// UI redraws at 10 Hz; trades go over as they come).
pub const PICTURE_EVERY: Duration = Duration::from_millis(50);

/// How one session ended.
struct SessionEnd {
    /// The handshake succeeded, so the backoff starts over.
    connected: bool,
    /// Retrying cannot help (refused credentials, untrusted certificate).
    fatal: bool,
    reason: String,
}

async fn session(
    endpoint: &quinn::Endpoint,
    cfg: &NetConfig,
    inbox: &Inbox,
    attempt: u32,
) -> SessionEnd {
    let addr: SocketAddr = match transport::quic::resolve(&cfg.manager) {
        Ok(a) => a,
        Err(e) => {
            return SessionEnd {
                connected: false,
                fatal: false,
                reason: e.to_string(),
            }
        }
    };
    let credentials = Credentials::Monitor {
        token: cfg.token.clone(),
    };
    let dial = transport::quic::connect(endpoint, addr, credentials);
    let (conn, _writer, mut reader, welcome) =
        match tokio::time::timeout(connect_timeout(attempt), dial).await {
            Ok(Ok(parts)) => parts,
            Ok(Err(e)) => {
                return SessionEnd {
                    connected: false,
                    fatal: e.is_fatal(),
                    reason: e.to_string(),
                }
            }
            Err(_) => {
                return SessionEnd {
                    connected: false,
                    fatal: false,
                    reason: "connect timed out".into(),
                }
            }
        };
    tracing::info!(%addr, session = welcome.session, "connected as monitor");
    inbox.push(NetEvent::Connected(welcome));
    let reason = loop {
        match reader.recv::<MonitorMsg>().await {
            Ok(Some(msg)) => inbox.push(NetEvent::Msg(msg)),
            Ok(None) => break "manager closed the monitor stream".to_string(),
            Err(e) => break e.to_string(),
        }
    };
    conn.close(0u32.into(), b"monitor done");
    SessionEnd {
        connected: true,
        fatal: false,
        reason,
    }
}

async fn feed_session(
    endpoint: &quinn::Endpoint,
    cfg: &NetConfig,
    inbox: &Inbox,
    attempt: u32,
) -> SessionEnd {
    let ended = |connected, fatal, reason: String| SessionEnd {
        connected,
        fatal,
        reason,
    };
    let addr: SocketAddr = match transport::quic::resolve(&cfg.manager) {
        Ok(a) => a,
        Err(e) => return ended(false, false, e.to_string()),
    };
    // The operator token opens a feed session too; it carries no order entry.
    let credentials = Credentials::Feed {
        broker: None,
        secret: cfg.token.clone(),
    };
    let dial = transport::quic::connect(endpoint, addr, credentials);
    let (conn, mut writer, mut reader, _welcome) =
        match tokio::time::timeout(connect_timeout(attempt), dial).await {
            Ok(Ok(parts)) => parts,
            Ok(Err(e)) => return ended(false, e.is_fatal(), e.to_string()),
            Err(_) => return ended(false, false, "connect timed out".into()),
        };
    let sub = FeedRequest::Subscribe(Subscription {
        level: FeedLevel::L2 {
            levels: cfg.feed_levels,
        },
        securities: Securities::All,
    });
    if let Err(e) = writer.send(&sub).await {
        return ended(false, false, e.to_string());
    }
    tracing::info!(%addr, levels = cfg.feed_levels, "subscribed to the market-data feed");
    inbox.push(NetEvent::FeedUp {
        levels: cfg.feed_levels,
    });
    let start = tokio::time::Instant::now();
    let mut tracker = MarketTracker::new(cfg.feed_levels);
    let mut tick = tokio::time::interval(PICTURE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let reason = loop {
        tokio::select! {
            m = reader.recv::<FeedUpdate>() => match m {
                Ok(Some(FeedUpdate::Messages(msgs))) => {
                    let now_ms = start.elapsed().as_millis() as u64;
                    let step = tracker.apply(&msgs, now_ms);
                    if !step.trades.is_empty() {
                        inbox.push(NetEvent::FeedTrades(step.trades));
                    }
                    if step.resync {
                        tracing::warn!("market-data feed: gap; asking for a snapshot");
                        if let Err(e) = writer.send(&FeedRequest::Resync).await {
                            break e.to_string();
                        }
                    }
                }
                Ok(Some(FeedUpdate::Closed(why))) => break format!("the feed closed: {why}"),
                Ok(None) => break "manager closed the feed stream".to_string(),
                Err(e) => break e.to_string(),
            },
            _ = tick.tick() => {
                if tracker.dirty && tracker.is_synced() {
                    inbox.push(NetEvent::Market(tracker.picture()));
                }
            }
        }
    };
    conn.close(0u32.into(), b"feed done");
    ended(true, false, reason)
}

/// Runs feed sessions until `shutdown` turns true (like [`run`] for the monitor session).
pub async fn run_feed(
    endpoint: quinn::Endpoint,
    cfg: NetConfig,
    inbox: Arc<Inbox>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let end = tokio::select! {
            end = feed_session(&endpoint, &cfg, &inbox, attempt) => end,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        if end.connected {
            attempt = 1;
        }
        if end.fatal {
            // The monitor session reports the refusal; the Market view keeps its fallback.
            tracing::error!(reason = %end.reason, "feed refused; giving up");
            inbox.push(NetEvent::FeedDown(end.reason));
            break;
        }
        let delay = backoff(attempt);
        tracing::warn!(reason = %end.reason, retry_in = ?delay, "feed session ended");
        inbox.push(NetEvent::FeedDown(end.reason));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
}

/// Runs sessions until `shutdown` turns true, reporting every change to `inbox`.
pub async fn run(
    endpoint: quinn::Endpoint,
    cfg: NetConfig,
    inbox: Arc<Inbox>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        inbox.push(NetEvent::Connecting { attempt });
        let end = tokio::select! {
            end = session(&endpoint, &cfg, &inbox, attempt) => end,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        if end.fatal {
            tracing::error!(reason = %end.reason, "monitor refused; giving up");
            inbox.push(NetEvent::Fatal(end.reason));
            break;
        }
        if end.connected {
            attempt = 1;
        }
        let delay = backoff(attempt);
        tracing::warn!(reason = %end.reason, retry_in = ?delay, "monitor session ended");
        inbox.push(NetEvent::Disconnected {
            reason: end.reason,
            attempt,
            retry_in_ms: delay.as_millis() as u64,
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    // Tell the manager we are gone instead of letting it wait for the idle timeout.
    endpoint.close(0u32.into(), b"monitor quit");
    let _ = tokio::time::timeout(Duration::from_millis(300), endpoint.wait_idle()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use matching::{OrderId, SecurityId};
    use proto::{Counters, LatencySummary, LogKind};

    fn snap(uptime_ms: u64) -> GridSnapshot {
        GridSnapshot {
            uptime_ms,
            shard_map_version: 1,
            nodes: vec![],
            counters: Counters::default(),
            orders_per_sec: 0.0,
            latency: LatencySummary::default(),
            securities: vec![],
            phase: matching::Phase::Continuous,
            exchange_time: 0,
            schedule: "continuous".into(),
        }
    }

    fn tick(i: u64) -> TradeTick {
        TradeTick {
            uptime_ms: i,
            security: SecurityId(0),
            price: 1,
            qty: 1,
            buy: OrderId(i),
            sell: OrderId(i),
        }
    }

    #[test]
    fn keeps_only_newest_snapshot_and_bounds_trades() {
        let mut inbox = InboxState::default();
        inbox.push(NetEvent::Msg(MonitorMsg::Snapshot(snap(1))));
        inbox.push(NetEvent::Msg(MonitorMsg::Trades(
            (0..INBOX_TRADES as u64 + 10).map(tick).collect(),
        )));
        inbox.push(NetEvent::Disconnected {
            reason: "x".into(),
            attempt: 1,
            retry_in_ms: 250,
        });
        inbox.push(NetEvent::Msg(MonitorMsg::Log(vec![LogEntry {
            uptime_ms: 5,
            kind: LogKind::NodeLost,
            text: "lost".into(),
        }])));
        inbox.push(NetEvent::Msg(MonitorMsg::Snapshot(snap(2))));
        assert_eq!(inbox.dropped, 10);
        let out = inbox.drain();
        assert_eq!(out.len(), 4);
        assert!(matches!(out[0], NetEvent::Disconnected { .. }));
        assert!(matches!(&out[1], NetEvent::Msg(MonitorMsg::Log(l)) if l.len() == 1));
        match &out[2] {
            NetEvent::Msg(MonitorMsg::Trades(t)) => {
                assert_eq!(t.len(), INBOX_TRADES);
                assert_eq!(t[0].buy, OrderId(10), "oldest dropped first");
            }
            other => panic!("expected trades, got {other:?}"),
        }
        assert!(matches!(&out[3], NetEvent::Msg(MonitorMsg::Snapshot(s)) if s.uptime_ms == 2));
        assert!(inbox.drain().is_empty());
    }

    #[test]
    fn keeps_only_the_newest_market_picture_and_bounds_feed_trades() {
        use crate::market::{FeedTrade, MarketPicture};
        let ft = |i: u64| FeedTrade {
            time: i as i64,
            trade: feed::Trade {
                security: SecurityId(0),
                id: feed::TradeId { seq: i, index: 0 },
                price: 1,
                qty: 1,
                aggressor: matching::Aggressor::Sell,
                buy: None,
                sell: None,
            },
        };
        let mut inbox = InboxState::default();
        let pic = |messages| MarketPicture {
            messages,
            ..MarketPicture::default()
        };
        inbox.push(NetEvent::Market(pic(1)));
        inbox.push(NetEvent::FeedUp { levels: 5 });
        inbox.push(NetEvent::FeedTrades(
            (0..INBOX_TRADES as u64 + 7).map(ft).collect(),
        ));
        inbox.push(NetEvent::Market(pic(2)));
        assert_eq!(inbox.dropped, 7);
        let out = inbox.drain();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], NetEvent::FeedUp { levels: 5 });
        match &out[1] {
            NetEvent::FeedTrades(t) => {
                assert_eq!(t.len(), INBOX_TRADES);
                assert_eq!(t[0].time, 7, "oldest dropped first");
            }
            other => panic!("expected trades, got {other:?}"),
        }
        assert_eq!(out[2], NetEvent::Market(pic(2)));
        assert!(inbox.drain().is_empty());
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(5), Duration::from_millis(4000));
        assert_eq!(backoff(6), Duration::from_millis(5000));
        assert_eq!(backoff(u32::MAX), Duration::from_millis(5000));
        assert_eq!(connect_timeout(1), Duration::from_secs(1));
        assert_eq!(connect_timeout(9), Duration::from_secs(5));
    }
}
