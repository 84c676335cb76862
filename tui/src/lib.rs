//! # tui: the gridmatch live monitor
//!
//! Owns the read-only operator view of the grid: which executors are up, how load spreads,
//! what is being matched. The `tui` binary is thin glue (terminal setup, event loop) over:
//! - [`state`]: pure application state: applies monitor messages, bounded history, key
//!   handling. No I/O, no clock.
//! - [`ui`]: pure rendering of the state into a ratatui frame (tested with `TestBackend`).
//! - [`net`]: the connection task (QUIC monitor session, reconnect with backoff) and the
//!   bounded inbox that keeps a slow terminal from ever slowing the manager.
//!
//! Must not: send anything to the manager after the hello (monitors are read-only), or block
//! the network reader on the terminal.

pub mod net;
pub mod state;
pub mod ui;

pub use state::{Action, AppState, Key, NetEvent, View};
