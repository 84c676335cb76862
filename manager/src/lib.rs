//! # manager: the exchange host of gridmatch
//!
//! Sequences every order (global, gap-free), journals it before routing, routes it by security
//! to the executor that owns it through a versioned shard map, relays each order's events to its
//! own broker, detects lost executors and moves their securities, and feeds monitors.
//!
//! Must not: match orders itself except in `--local` mode (which reuses `matching::Exchange`),
//! or block its sequencing loop on a slow client or monitor.
pub mod core;
pub mod server;
pub mod setup;
pub mod testkit;
