//! # metrics: the manager's Prometheus metrics
//!
//! Owns the metric families of a running grid (orders, rejects and trades by bounded labels,
//! order-to-final and journal-commit latency histograms with microsecond buckets, in-flight and
//! held commands, sessions, feed subscribers, phase, per-executor work and queue depth) and the
//! HTTP endpoint that serves them at `GET /metrics` in the OpenMetrics text format.
//!
//! Must not: label by order id, broker or anything else unbounded (executor names are capped
//! at [`MAX_EXECUTORS`]); take a lock or allocate on the recording path of orders, trades and
//! commits; know the grid's logic (the manager calls plain methods such as
//! [`Metrics::order_final`]).
//!
//! Layout:
//! - [`registry`]: [`Metrics`], the families and the recording methods.
//! - [`histogram`]: [`LatencyHistogram`], an atomics-only histogram.
//! - [`http`]: [`serve`], the endpoint (hyper, bounded connections and timeouts).
//!
//! Metric names (all prefixed `gridmatch_`): `orders_total{type,side,result}`,
//! `rejects_total{action,reason}`, `cancels_total{result}`, `amends_total{result}`,
//! `order_latency_seconds{action}` (histogram), `trades_total{aggressor}`,
//! `traded_shares_total{aggressor}`, `journal_commit_seconds` (histogram),
//! `journal_records_total`, `in_flight_commands`, `held_commands`, `sessions{kind}`,
//! `feed_subscribers`, `feed_messages_total{view}` (canonical, L1, L2, L3),
//! `feed_sent_messages_total`, `feed_sent_bytes_total`, `feed_dropped_items_total`,
//! `feed_overflows_total`, `feed_rebuilds_total`, `phase{phase}`, `executor_handled_total{executor}`,
//! `executor_queue_depth{executor}`.
#![warn(missing_docs)]
#![allow(missing_docs)]

pub mod histogram;
pub mod http;
pub mod registry;

pub use histogram::{LatencyHistogram, LATENCY_BOUNDS_US};
pub use http::serve;
pub use registry::{
    Action, AmendResult, FeedView, Metrics, OrderResult, SessionKind, MAX_EXECUTORS,
};
