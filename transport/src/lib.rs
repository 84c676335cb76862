//! # transport: how gridmatch processes reach each other
//!
//! QUIC endpoints with TLS 1.3 and certificate pinning ([`quic`]), framed streams with per-stage
//! size and time limits and the versioned handshake, the broker credentials file
//! ([`credentials`]), the command-line flags every client shares ([`cli`]), and process
//! plumbing ([`runtime`]: logging, shutdown signals).
//!
//! Must not: know what the messages mean (that is `proto` and the binaries) or hold grid logic.

pub mod cli;
pub mod credentials;
pub mod quic;
pub mod runtime;

pub use quic::{FrameReader, FrameWriter, WireError};
