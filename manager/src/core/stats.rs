//! Statistics for monitors and metrics: counters, manager-side latency, per-security market
//! summary (last price, volume, recent prices, depth and indicative auction price from
//! heartbeats). Nothing here feeds back into sequencing or routing.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use matching::{Fill, Price, Qty, SecurityId};
use proto::{BookDepth, Counters, LatencySummary, LogEntry, LogKind, TradeTick};

/// Recent trade prices kept per security for the monitor chart.
const RECENT_PRICES: usize = 120;
/// Trades sampled into the monitor feed per flush.
const MONITOR_TRADES: usize = 256;

#[derive(Clone, Debug, Default)]
pub(crate) struct MarketSummary {
    pub last_price: Option<Price>,
    pub volume: Qty,
    pub recent: VecDeque<Price>,
    pub bids: Vec<(Price, Qty)>,
    pub asks: Vec<(Price, Qty)>,
    pub indicative: Option<(Price, Qty)>,
    pub last_auction: Option<(Price, Qty)>,
}

pub(crate) struct Stats {
    pub counters: Counters,
    pub latency: Histogram<u64>,
    started: Instant,
    rate_mark: (Instant, u64),
    pub rate: f64,
    pub market: Vec<MarketSummary>,
    /// Monitor feed material, drained at every flush.
    pub trades: Vec<TradeTick>,
    pub log: Vec<LogEntry>,
}

impl Stats {
    pub fn new(securities: usize, now: Instant) -> Self {
        Stats {
            counters: Counters::default(),
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            started: now,
            rate_mark: (now, 0),
            rate: 0.0,
            market: vec![MarketSummary::default(); securities],
            trades: Vec::new(),
            log: Vec::new(),
        }
    }

    pub fn uptime_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.started).as_millis() as u64
    }

    pub fn log(&mut self, now: Instant, kind: LogKind, text: String) {
        match kind {
            LogKind::Reject => tracing::debug!("{text}"),
            _ => tracing::info!("{text}"),
        }
        self.log.push(LogEntry {
            uptime_ms: self.uptime_ms(now),
            kind,
            text,
        });
    }

    pub fn completed(&mut self, received: Instant, now: Instant) {
        let us = now.saturating_duration_since(received).as_micros() as u64;
        let _ = self.latency.record(us.max(1));
    }

    pub fn trade(&mut self, f: &Fill, now: Instant) {
        self.counters.fills += 1;
        if let Some(m) = self.market.get_mut(f.security.0 as usize) {
            m.last_price = Some(f.price);
            m.volume = m.volume.saturating_add(f.qty);
            if m.recent.len() == RECENT_PRICES {
                m.recent.pop_front();
            }
            m.recent.push_back(f.price);
        }
        if self.trades.len() < MONITOR_TRADES {
            self.trades.push(TradeTick {
                uptime_ms: self.uptime_ms(now),
                security: f.security,
                price: f.price,
                qty: f.qty,
                buy: f.buy,
                sell: f.sell,
            });
        }
    }

    pub fn auction(&mut self, sec: SecurityId, result: (Price, Qty)) {
        if let Some(m) = self.market.get_mut(sec.0 as usize) {
            m.last_auction = Some(result);
        }
    }

    pub fn depth(&mut self, b: &BookDepth) {
        if let Some(m) = self.market.get_mut(b.security.0 as usize) {
            m.bids = b.bids.clone();
            m.asks = b.asks.clone();
            m.indicative = b.indicative;
        }
    }

    pub fn tick(&mut self, now: Instant) {
        let dt = now
            .saturating_duration_since(self.rate_mark.0)
            .as_secs_f64();
        if dt >= 0.5 {
            self.rate = (self.counters.accepted - self.rate_mark.1) as f64 / dt;
            self.rate_mark = (now, self.counters.accepted);
        }
    }

    pub fn latency_summary(&self) -> LatencySummary {
        let q = |p: f64| self.latency.value_at_quantile(p);
        LatencySummary {
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: self.latency.max(),
        }
    }

    /// Time since start, for the monitor.
    pub fn uptime(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }
}
