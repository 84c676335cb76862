//! # matching: the pure heart of gridmatch
//!
//! Owns the price-time matching engine and the trading day (phases, call auctions, the close),
//! the market rules (tick, lot, price band), the pre-sequencing gateway checks, and the
//! order-stream file formats. It is the contract the
//! grid is tested against: the grid must produce exactly what [`Exchange`] produces sequentially.
//!
//! Must not: do I/O, use threads, clocks, randomness or floats. Same input, same output, byte for
//! byte.
//!
//! Layout:
//! - [`types`]: ids, sides, order types, commands, events, reject reasons.
//! - [`rules`]: market rule presets (HOSE, HNX, UPCoM, none) and order validation.
//! - [`securities`]: the security table (code <-> id, reference price).
//! - [`phase`]: the phase table (which instruction each trading phase admits).
//! - [`auction`]: the call auction's price rule, a pure function of aggregated levels.
//! - [`book`]: one security's order book and trading day (price levels, FIFO queues, O(1)
//!   cancel, amend, uncross, close).
//! - [`engine`]: many books; processes validated commands into events; book images.
//! - [`image`]: [`BookImage`], a book's exact state as plain data.
//! - [`gateway`]: stateful checks made before sequencing (rules, phase of a NEW, duplicate
//!   id, ownership).
//! - [`exchange`]: gateway + engine: the sequential reference exchange.
//! - [`stream`]: CSV formats (securities, orders, trades, totals, rejects) and the replay
//!   collector that turns events into those files.
//! - [`idmap`]: order id -> value table, paged and direct for increasing ids (per id
//!   namespace), hashed for sparse ones; used by the engine's order index, the gateway's id
//!   registry and the manager's order projection.
//! - [`splitmap`]: a `u64`-keyed hash map in parts that grow on their own, so no insert waits
//!   for a whole big table to rehash (the id tables' sparse half).
//! - `reference` (feature `reference`): the naive reference exchange the tests compare against,
//!   exposed as a benchmark baseline.
//!
//! Speed notes: orders live in per-book slabs with intrusive FIFO links; price levels are a
//! sorted `Vec` per side with the best level last; a NEW that does not trade and a cancel both
//! cost O(log levels) plus one id-table access; nothing is allocated per order in steady state.
#![warn(missing_docs)]
#![allow(missing_docs)]

pub mod auction;
pub mod book;
pub mod engine;
pub mod exchange;
pub mod gateway;
pub mod idmap;
pub mod image;
pub mod phase;
pub mod rules;
pub mod securities;
pub mod splitmap;
pub mod stream;
pub mod types;

/// The naive reference exchange (Vecs and linear scans) used by the tests, exposed for the
/// benchmark baseline. One copy of the code lives in `tests/common/naive.rs`.
#[cfg(feature = "reference")]
#[path = "../tests/common/naive.rs"]
pub mod reference;

// Lets `tests/common/naive.rs` name `matching::...` both as a test module and as `reference`.
extern crate self as matching;

pub use engine::Engine;
pub use exchange::Exchange;
pub use gateway::{ArchivedId, Gateway};
pub use image::{BookImage, ImportError, RestingKind, RestingOrder};
pub use rules::MarketRules;
pub use securities::SecurityTable;
pub use types::*;
