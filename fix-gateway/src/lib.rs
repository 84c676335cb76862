//! # fix_gateway: FIX 4.4 order entry for gridmatch
//!
//! Owns the `fix-gateway` process: the tag-value codec, the FIX 4.4 session layer, the durable
//! per-session message store, the order entry that maps FIX orders onto the manager's client
//! protocol, the broker sessions to the manager over QUIC, and the TCP (optionally TLS)
//! acceptor. Each FIX session is one broker session at the manager (SenderCompID = the broker,
//! Password = its secret); the manager authenticates.
//!
//! Must not: hold broker secrets on disk (a password lives in memory while its session's link
//! is up), block the acceptor on one slow session, trust input (every frame is validated;
//! nothing here panics on bytes from the wire), send anything that depends on state not yet
//! written to its store, or decide what only the exchange can decide (liveness, rules, phases:
//! requests go to the manager and its answer is reported).
//!
//! Layout:
//! - [`codec`]: framing (BodyLength, CheckSum), field splitting, message builder.
//! - [`tags`]: tag numbers and message types.
//! - [`session`]: the session layer as a sans-I/O state machine.
//! - [`store`], [`reclog`]: message stores (checksummed append-only file per session, memory).
//! - [`utc`]: FIX UTCTimestamp formatting and parsing.
//! - [`mapping`]: FIX fields <-> gridmatch values (the order type table, reasons).
//! - [`orders`]: the order entry, sans-I/O: ClOrdID <-> order id map, order states,
//!   ExecutionReports and OrderCancelRejects from the manager's reports.
//! - [`backend`]: the application side's interface, and the loopback backend (tests, demos).
//! - [`link`]: the production backend: one task per broker with its QUIC session.
//! - [`acceptor`]: the tokio shell: listener, TLS, one session task per broker.
//!
//! The `fix-load` binary is a load client on this crate's codec (figures only; behaviour is
//! tested against QuickFIX/C++).
#![warn(missing_docs)]
#![allow(missing_docs)]

pub mod acceptor;
pub mod backend;
pub mod codec;
pub mod link;
pub mod mapping;
pub mod orders;
pub mod reclog;
pub mod session;
pub mod store;
pub mod tags;
pub mod utc;
