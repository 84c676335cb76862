//! # manager: the exchange host of gridmatch
//!
//! Sequences every order (global, gap-free), journals it before routing, routes it by security
//! to the executor that owns it through a versioned shard map, relays each order's events to its
//! own broker, detects lost or inconsistent executors and moves their securities, runs the
//! trading day's schedule, feeds monitors, and publishes the public market-data feed.
//!
//! Layout: [`core`] (the sans-I/O state machine), [`server`] (the tokio/quinn shell),
//! [`feed`] (the market-data feed task and its subscriber sessions, off the sequencing path),
//! [`feed_checkpoint`] (the feed's own checkpoint file, so its rebuild reads only the tail),
//! [`setup`] (the data directory and recovery), [`archive`] (finished orders and book
//! snapshots on disk), [`schedule`] (the exchange clock and the HOSE day),
//! [`export`] (`manager journal export`: replay formats, CSV/Parquet tables, bars, Qlib).
//!
//! Must not: match orders itself except in `--local` mode (which runs the executor's own core
//! in-process), or block its sequencing loop on a slow client or monitor.
pub mod archive;
pub mod core;
pub mod export;
pub mod feed;
pub mod feed_checkpoint;
pub mod schedule;
pub mod server;
pub mod setup;
