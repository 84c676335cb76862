//! # tui: the gridmatch live monitor
//!
//! Owns the read-only operator view of the grid: which executors are up, how load spreads,
//! what is being matched. The `tui` binary is thin glue (terminal setup, event loop) over:
//! - [`state`]: pure application state: applies monitor messages, bounded history, key
//!   handling. No I/O, no clock.
//! - [`ui`]: pure rendering of the state into a ratatui frame (tested with `TestBackend`).
//! - [`net`]: the connection tasks (QUIC monitor session and market-data feed session,
//!   reconnect with backoff) and the bounded inbox that keeps a slow terminal from ever
//!   slowing the manager.
//! - [`market`]: the Market view's books and trades from the public feed (pure).
//!
//! Must not: send anything to the manager after the hello but feed subscription requests
//! (monitors are read-only), or block the network readers on the terminal.

pub mod market;
pub mod net;
pub mod state;
pub mod ui;

pub use state::{Action, AppState, Key, NetEvent, View};
