//! The manager's metric families and the methods that record them.
//!
//! Every label combination of the hot families (orders, rejects, trades, latencies) is created
//! up front and kept in arrays indexed by enum, so recording is a few relaxed atomic additions:
//! no lock, no allocation, no hashing. Only per-executor series, updated once per heartbeat,
//! go through a map.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use matching::{Aggressor, OrderType, Phase, RejectReason, Side};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::histogram::LatencyHistogram;

/// Most executors tracked with their own series; more are ignored (with a warning), so a
/// misbehaving client cannot grow the label set without bound.
pub const MAX_EXECUTORS: usize = 256;

/// How the processing of a NEW order ended (its last report for that command).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderResult {
    /// Completely filled on arrival (or at its auction).
    Filled,
    /// Rests in the book, possibly after partial fills (ATO/ATC orders rest in their phase).
    Rested,
    /// The unfilled remainder was killed (MP, MTL, IOC, FOK), possibly after partial fills.
    Cancelled,
    Rejected(RejectReason),
}

impl OrderResult {
    const LABELS: [&'static str; 4] = ["filled", "rested", "cancelled", "rejected"];

    fn index(self) -> usize {
        match self {
            OrderResult::Filled => 0,
            OrderResult::Rested => 1,
            OrderResult::Cancelled => 2,
            OrderResult::Rejected(_) => 3,
        }
    }
}

/// How an AMEND command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AmendResult {
    /// Reduced in place, time priority kept.
    PriorityKept,
    /// Priority lost: the order re-entered its (new) level, maybe trading first.
    PriorityLost,
    Rejected(RejectReason),
}

impl AmendResult {
    const LABELS: [&'static str; 3] = ["priority_kept", "priority_lost", "rejected"];

    fn index(self) -> usize {
        match self {
            AmendResult::PriorityKept => 0,
            AmendResult::PriorityLost => 1,
            AmendResult::Rejected(_) => 2,
        }
    }
}

const CANCEL_LABELS: [&str; 2] = ["cancelled", "rejected"];

/// A client command's action, for the latency and reject families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    New,
    Cancel,
    Amend,
}

impl Action {
    const ALL: [Action; 3] = [Action::New, Action::Cancel, Action::Amend];

    fn label(self) -> &'static str {
        match self {
            Action::New => "new",
            Action::Cancel => "cancel",
            Action::Amend => "amend",
        }
    }
}

/// A kind of connected session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionKind {
    /// A broker on the native QUIC protocol.
    Broker,
    /// A broker on FIX.
    Fix,
    /// A read-only monitor (the tui).
    Monitor,
    /// An executor.
    Executor,
}

impl SessionKind {
    const ALL: [SessionKind; 4] = [
        SessionKind::Broker,
        SessionKind::Fix,
        SessionKind::Monitor,
        SessionKind::Executor,
    ];

    fn label(self) -> &'static str {
        match self {
            SessionKind::Broker => "broker",
            SessionKind::Fix => "fix",
            SessionKind::Monitor => "monitor",
            SessionKind::Executor => "executor",
        }
    }
}

/// A stream of the market-data feed, for `feed_messages_total{view}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FeedView {
    /// The canonical feed: each message once, whoever subscribes.
    Canonical,
    /// Messages produced for subscribers' L1, L2 or L3 views (summed over the subscribers).
    L1,
    L2,
    L3,
}

impl FeedView {
    const ALL: [FeedView; 4] = [
        FeedView::Canonical,
        FeedView::L1,
        FeedView::L2,
        FeedView::L3,
    ];

    fn label(self) -> &'static str {
        match self {
            FeedView::Canonical => "canonical",
            FeedView::L1 => "L1",
            FeedView::L2 => "L2",
            FeedView::L3 => "L3",
        }
    }
}

fn type_index(t: OrderType) -> usize {
    OrderType::ALL.iter().position(|k| *k == t).unwrap_or(0)
}

fn side_index(s: Side) -> usize {
    match s {
        Side::Buy => 0,
        Side::Sell => 1,
    }
}

fn reason_index(r: RejectReason) -> usize {
    RejectReason::ALL.iter().position(|k| *k == r).unwrap_or(0)
}

fn aggressor_index(a: Aggressor) -> usize {
    match a {
        Aggressor::Buy => 0,
        Aggressor::Sell => 1,
        Aggressor::Auction => 2,
    }
}

const SIDES: [Side; 2] = [Side::Buy, Side::Sell];
const AGGRESSORS: [Aggressor; 3] = [Aggressor::Buy, Aggressor::Sell, Aggressor::Auction];

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];
type Labels3 = [(&'static str, &'static str); 3];
type ExecutorLabels = [(&'static str, String); 1];

/// Last reported handled count per executor, to turn heartbeat totals into counter increments.
#[derive(Debug, Default)]
struct ExecutorMarks {
    handled: HashMap<String, u64>,
    warned: bool,
}

/// Every metric of the manager. Share it as `Arc<Metrics>`: recording takes `&self`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// [type][side][result]
    orders: Vec<Counter>,
    /// [action][reason]
    rejects: Vec<Counter>,
    cancels: [Counter; 2],
    amends: [Counter; 3],
    latency: [LatencyHistogram; 3],
    trades: [Counter; 3],
    traded_shares: [Counter; 3],
    journal_commit: LatencyHistogram,
    journal_records: Counter,
    in_flight: Gauge,
    held: Gauge,
    sessions: [Gauge; 4],
    feed_subscribers: Gauge,
    feed_messages: [Counter; 4],
    feed_sent_messages: Counter,
    feed_sent_bytes: Counter,
    feed_dropped_items: Counter,
    feed_overflows: Counter,
    feed_rebuilds: Counter,
    phase: [Gauge; 5],
    executor_handled: Family<ExecutorLabels, Counter>,
    executor_queue: Family<ExecutorLabels, Gauge>,
    executor_marks: Mutex<ExecutorMarks>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every family registered under the `gridmatch_` prefix, all series at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("gridmatch");

        let orders_family = Family::<Labels3, Counter>::default();
        let mut orders = Vec::with_capacity(OrderType::ALL.len() * 2 * 4);
        for kind in OrderType::ALL {
            for side in SIDES {
                for result in OrderResult::LABELS {
                    let labels = [
                        ("type", kind.as_str()),
                        ("side", side.as_str()),
                        ("result", result),
                    ];
                    orders.push(orders_family.get_or_create(&labels).clone());
                }
            }
        }
        registry.register(
            "orders",
            "NEW orders by type, side and how their processing ended (filled, rested, cancelled remainder, rejected)",
            orders_family,
        );

        let rejects_family = Family::<Labels2, Counter>::default();
        let mut rejects = Vec::with_capacity(3 * RejectReason::ALL.len());
        for action in Action::ALL {
            for reason in RejectReason::ALL {
                let labels = [("action", action.label()), ("reason", reason.code())];
                rejects.push(rejects_family.get_or_create(&labels).clone());
            }
        }
        registry.register(
            "rejects",
            "Rejected commands by action and reason",
            rejects_family,
        );

        let cancels_family = Family::<Labels1, Counter>::default();
        let cancels = CANCEL_LABELS.map(|r| cancels_family.get_or_create(&[("result", r)]).clone());
        registry.register("cancels", "CANCEL commands by result", cancels_family);
        let amends_family = Family::<Labels1, Counter>::default();
        let amends =
            AmendResult::LABELS.map(|r| amends_family.get_or_create(&[("result", r)]).clone());
        registry.register("amends", "AMEND commands by result", amends_family);

        let latency_family = Family::<Labels1, LatencyHistogram>::new_with_constructor(
            LatencyHistogram::default as fn() -> LatencyHistogram,
        );
        let latency = Action::ALL.map(|a| {
            latency_family
                .get_or_create(&[("action", a.label())])
                .clone()
        });
        registry.register_with_unit(
            "order_latency",
            "Time from receiving a command to its final report (last fill, rest, cancel or reject)",
            Unit::Seconds,
            latency_family,
        );

        let trades_family = Family::<Labels1, Counter>::default();
        let trades = AGGRESSORS.map(|a| {
            trades_family
                .get_or_create(&[("aggressor", a.as_str())])
                .clone()
        });
        registry.register(
            "trades",
            "Trades by aggressor (BUY, SELL, AUCTION)",
            trades_family,
        );
        let shares_family = Family::<Labels1, Counter>::default();
        let traded_shares = AGGRESSORS.map(|a| {
            shares_family
                .get_or_create(&[("aggressor", a.as_str())])
                .clone()
        });
        registry.register("traded_shares", "Shares traded by aggressor", shares_family);

        let journal_commit = LatencyHistogram::default();
        registry.register_with_unit(
            "journal_commit",
            "Time of one journal group commit (write, and fsync when durable)",
            Unit::Seconds,
            journal_commit.clone(),
        );
        let journal_records = Counter::default();
        registry.register(
            "journal_records",
            "Commands committed to the journal",
            journal_records.clone(),
        );

        let in_flight = Gauge::default();
        registry.register(
            "in_flight_commands",
            "Sequenced commands not yet completed by their executor",
            in_flight.clone(),
        );
        let held = Gauge::default();
        registry.register(
            "held_commands",
            "Commands waiting for their security to get an owner (failover, migration)",
            held.clone(),
        );
        let sessions_family = Family::<Labels1, Gauge>::default();
        let sessions = SessionKind::ALL.map(|k| {
            sessions_family
                .get_or_create(&[("kind", k.label())])
                .clone()
        });
        registry.register("sessions", "Connected sessions by kind", sessions_family);
        let feed_subscribers = Gauge::default();
        registry.register(
            "feed_subscribers",
            "Subscribers of the public market-data feed",
            feed_subscribers.clone(),
        );
        let feed_family = Family::<Labels1, Counter>::default();
        let feed_messages =
            FeedView::ALL.map(|v| feed_family.get_or_create(&[("view", v.label())]).clone());
        registry.register(
            "feed_messages",
            "Market-data messages produced: the canonical feed once, and per view kind the sum over the subscribers (snapshots included, heartbeats not)",
            feed_family,
        );
        let feed_sent_messages = Counter::default();
        registry.register(
            "feed_sent_messages",
            "Market-data messages written to subscriber streams (heartbeats included)",
            feed_sent_messages.clone(),
        );
        let feed_sent_bytes = Counter::default();
        registry.register_with_unit(
            "feed_sent",
            "Bytes of the market-data frames written to subscriber streams",
            Unit::Bytes,
            feed_sent_bytes.clone(),
        );
        let feed_dropped_items = Counter::default();
        registry.register(
            "feed_dropped_items",
            "Event groups the core could not queue to the feed (the feed then rebuilds from the journal)",
            feed_dropped_items.clone(),
        );
        let feed_overflows = Counter::default();
        registry.register(
            "feed_overflows",
            "Subscriber queue overflows (each resyncs or drops a slow subscriber)",
            feed_overflows.clone(),
        );
        let feed_rebuilds = Counter::default();
        registry.register(
            "feed_rebuilds",
            "Rebuilds of the feed from the journal",
            feed_rebuilds.clone(),
        );
        let phase_family = Family::<Labels1, Gauge>::default();
        let phase =
            Phase::ALL.map(|p| phase_family.get_or_create(&[("phase", p.as_str())]).clone());
        phase[1].set(1); // A stream starts in CONTINUOUS.
        registry.register(
            "phase",
            "1 for the market's current trading phase, 0 for the others",
            phase_family,
        );

        let executor_handled = Family::<ExecutorLabels, Counter>::default();
        registry.register(
            "executor_handled",
            "Commands handled per executor (summed over its reconnections)",
            executor_handled.clone(),
        );
        let executor_queue = Family::<ExecutorLabels, Gauge>::default();
        registry.register(
            "executor_queue_depth",
            "Commands queued at each executor at its last heartbeat",
            executor_queue.clone(),
        );

        Metrics {
            registry,
            orders,
            rejects,
            cancels,
            amends,
            latency,
            trades,
            traded_shares,
            journal_commit,
            journal_records,
            in_flight,
            held,
            sessions,
            feed_subscribers,
            feed_messages,
            feed_sent_messages,
            feed_sent_bytes,
            feed_dropped_items,
            feed_overflows,
            feed_rebuilds,
            phase,
            executor_handled,
            executor_queue,
            executor_marks: Mutex::new(ExecutorMarks::default()),
        }
    }

    fn reject(&self, action: Action, reason: RejectReason) {
        let a = Action::ALL.iter().position(|x| *x == action).unwrap_or(0);
        self.rejects[a * RejectReason::ALL.len() + reason_index(reason)].inc();
    }

    /// A NEW order's processing ended with `result`, `latency` after it was received.
    pub fn order_final(&self, kind: OrderType, side: Side, result: OrderResult, latency: Duration) {
        let i =
            (type_index(kind) * 2 + side_index(side)) * OrderResult::LABELS.len() + result.index();
        self.orders[i].inc();
        if let OrderResult::Rejected(reason) = result {
            self.reject(Action::New, reason);
        }
        self.latency[0].observe(latency);
    }

    /// A CANCEL ended: the order was cancelled (`Ok`) or the cancel rejected.
    pub fn cancel_final(&self, result: Result<(), RejectReason>, latency: Duration) {
        match result {
            Ok(()) => {
                self.cancels[0].inc();
            }
            Err(reason) => {
                self.cancels[1].inc();
                self.reject(Action::Cancel, reason);
            }
        }
        self.latency[1].observe(latency);
    }

    /// An AMEND ended with `result`.
    pub fn amend_final(&self, result: AmendResult, latency: Duration) {
        self.amends[result.index()].inc();
        if let AmendResult::Rejected(reason) = result {
            self.reject(Action::Amend, reason);
        }
        self.latency[2].observe(latency);
    }

    /// One trade of `qty` shares.
    pub fn trade(&self, aggressor: Aggressor, qty: u64) {
        let i = aggressor_index(aggressor);
        self.trades[i].inc();
        self.traded_shares[i].inc_by(qty);
    }

    /// One journal commit of `records` commands that took `latency`.
    pub fn journal_commit(&self, latency: Duration, records: u64) {
        self.journal_commit.observe(latency);
        self.journal_records.inc_by(records);
    }

    pub fn set_in_flight(&self, n: u64) {
        self.in_flight.set(gauge_value(n));
    }

    pub fn set_held(&self, n: u64) {
        self.held.set(gauge_value(n));
    }

    pub fn set_sessions(&self, kind: SessionKind, n: u64) {
        let i = SessionKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0);
        self.sessions[i].set(gauge_value(n));
    }

    pub fn set_feed_subscribers(&self, n: u64) {
        self.feed_subscribers.set(gauge_value(n));
    }

    /// `n` more messages produced on the `view` stream.
    pub fn feed_messages(&self, view: FeedView, n: u64) {
        let i = FeedView::ALL.iter().position(|v| *v == view).unwrap_or(0);
        self.feed_messages[i].inc_by(n);
    }

    /// One frame of `messages` messages, `bytes` long, written to a subscriber.
    pub fn feed_sent(&self, messages: u64, bytes: u64) {
        self.feed_sent_messages.inc_by(messages);
        self.feed_sent_bytes.inc_by(bytes);
    }

    /// Feed trouble: items the core dropped, subscriber queue overflows, rebuilds (increments).
    pub fn feed_trouble(&self, dropped_items: u64, overflows: u64, rebuilds: u64) {
        self.feed_dropped_items.inc_by(dropped_items);
        self.feed_overflows.inc_by(overflows);
        self.feed_rebuilds.inc_by(rebuilds);
    }

    /// The market entered `phase`.
    pub fn set_phase(&self, phase: Phase) {
        for (p, g) in Phase::ALL.iter().zip(&self.phase) {
            g.set(i64::from(*p == phase));
        }
    }

    /// An executor's heartbeat: `handled` is its own running total (it restarts from 0 when
    /// the executor reconnects; the exported counter keeps growing across that).
    pub fn executor_stats(&self, name: &str, handled: u64, queue_depth: u64) {
        let Ok(mut marks) = self.executor_marks.lock() else {
            return;
        };
        let previous = match marks.handled.get(name) {
            Some(&p) => p,
            None if marks.handled.len() >= MAX_EXECUTORS => {
                if !std::mem::replace(&mut marks.warned, true) {
                    tracing::warn!(
                        max = MAX_EXECUTORS,
                        "too many executors for per-executor metrics; ignoring the rest"
                    );
                }
                return;
            }
            None => 0,
        };
        // A total below the last one means the executor started counting again.
        let added = if handled >= previous {
            handled - previous
        } else {
            handled
        };
        marks.handled.insert(name.to_owned(), handled);
        let labels = [("executor", name.to_owned())];
        self.executor_handled.get_or_create(&labels).inc_by(added);
        self.executor_queue
            .get_or_create(&labels)
            .set(gauge_value(queue_depth));
    }

    /// The executor left for good: its series disappear.
    pub fn executor_gone(&self, name: &str) {
        if let Ok(mut marks) = self.executor_marks.lock() {
            marks.handled.remove(name);
        }
        let labels = [("executor", name.to_owned())];
        self.executor_handled.remove(&labels);
        self.executor_queue.remove(&labels);
    }

    /// The exposition text (OpenMetrics 1.0, which Prometheus scrapes natively).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(32 * 1024);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line starting with `prefix` (name and labels, exactly).
    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn executor_totals_become_a_counter_that_survives_reconnections() {
        let m = Metrics::new();
        m.executor_stats("e1", 100, 4);
        m.executor_stats("e1", 250, 9);
        m.executor_stats("e1", 30, 1); // a fresh connection counts from 0
        m.executor_stats("e1", 30, 0); // nothing new
        let text = m.encode();
        assert_eq!(
            sample(&text, "gridmatch_executor_handled_total{executor=\"e1\"}"),
            Some(280.0)
        );
        assert_eq!(
            sample(&text, "gridmatch_executor_queue_depth{executor=\"e1\"}"),
            Some(0.0)
        );
        m.executor_gone("e1");
        let text = m.encode();
        assert!(!text.contains("executor=\"e1\""), "{text}");
        // Back again: a new series from 0.
        m.executor_stats("e1", 5, 0);
        assert_eq!(
            sample(
                &m.encode(),
                "gridmatch_executor_handled_total{executor=\"e1\"}"
            ),
            Some(5.0)
        );
    }

    #[test]
    fn executor_series_are_capped() {
        let m = Metrics::new();
        for i in 0..MAX_EXECUTORS + 10 {
            m.executor_stats(&format!("e{i}"), 1, 1);
        }
        let text = m.encode();
        let series = text
            .lines()
            .filter(|l| l.starts_with("gridmatch_executor_handled_total{"))
            .count();
        assert_eq!(series, MAX_EXECUTORS);
        // Known executors keep updating past the cap.
        m.executor_stats("e0", 3, 1);
        assert_eq!(
            sample(
                &m.encode(),
                "gridmatch_executor_handled_total{executor=\"e0\"}"
            ),
            Some(3.0)
        );
    }

    #[test]
    fn every_hot_series_exists_from_the_start_and_records_where_labelled() {
        let m = Metrics::new();
        let text = m.encode();
        // 7 types x 2 sides x 4 results, 3 actions x 14 reasons.
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("gridmatch_orders_total{"))
                .count(),
            56
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("gridmatch_rejects_total{"))
                .count(),
            42
        );
        assert!(text.ends_with("# EOF\n"));
        m.order_final(
            OrderType::Mtl,
            Side::Sell,
            OrderResult::Rejected(RejectReason::OddLot),
            Duration::from_micros(3),
        );
        m.amend_final(AmendResult::PriorityLost, Duration::from_millis(2));
        m.cancel_final(Err(RejectReason::NotOwner), Duration::ZERO);
        m.trade(Aggressor::Auction, 500);
        m.set_phase(Phase::Break);
        m.feed_messages(FeedView::Canonical, 10);
        m.feed_messages(FeedView::L3, 7);
        m.feed_messages(FeedView::L3, 5);
        m.feed_sent(12, 300);
        m.feed_sent(1, 9);
        m.feed_trouble(4, 1, 0);
        m.set_feed_subscribers(3);
        let text = m.encode();
        for (line, v) in [
            (
                "gridmatch_orders_total{type=\"MTL\",side=\"SELL\",result=\"rejected\"}",
                1.0,
            ),
            (
                "gridmatch_orders_total{type=\"MTL\",side=\"BUY\",result=\"rejected\"}",
                0.0,
            ),
            (
                "gridmatch_rejects_total{action=\"new\",reason=\"odd_lot\"}",
                1.0,
            ),
            (
                "gridmatch_rejects_total{action=\"cancel\",reason=\"not_owner\"}",
                1.0,
            ),
            ("gridmatch_amends_total{result=\"priority_lost\"}", 1.0),
            ("gridmatch_cancels_total{result=\"rejected\"}", 1.0),
            (
                "gridmatch_traded_shares_total{aggressor=\"AUCTION\"}",
                500.0,
            ),
            ("gridmatch_order_latency_seconds_count{action=\"new\"}", 1.0),
            (
                "gridmatch_order_latency_seconds_bucket{le=\"0.000002\",action=\"new\"}",
                0.0,
            ),
            (
                "gridmatch_order_latency_seconds_bucket{le=\"0.000005\",action=\"new\"}",
                1.0,
            ),
            ("gridmatch_phase{phase=\"BREAK\"}", 1.0),
            ("gridmatch_feed_messages_total{view=\"canonical\"}", 10.0),
            ("gridmatch_feed_messages_total{view=\"L3\"}", 12.0),
            ("gridmatch_feed_messages_total{view=\"L1\"}", 0.0),
            ("gridmatch_feed_sent_messages_total", 13.0),
            ("gridmatch_feed_sent_bytes_total", 309.0),
            ("gridmatch_feed_dropped_items_total", 4.0),
            ("gridmatch_feed_overflows_total", 1.0),
            ("gridmatch_feed_rebuilds_total", 0.0),
            ("gridmatch_feed_subscribers", 3.0),
            ("gridmatch_phase{phase=\"CONTINUOUS\"}", 0.0),
        ] {
            assert_eq!(sample(&text, line), Some(v), "{line}\n{text}");
        }
    }
}
