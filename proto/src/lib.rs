//! # proto: the wire of gridmatch
//!
//! Owns every message between broker, manager, executor and monitor ([`messages`]), the
//! length-prefixed bincode frame codec with its size limit ([`codec`], pure, never panics on
//! any bytes), the QUIC/TLS setup every binary shares ([`quic`]), and small process helpers
//! ([`runtime`]: logging, shutdown signals).
//!
//! Must not: hold grid logic (sequencing, routing, matching); that lives in the binaries and in
//! `matching`.

pub mod cli;
pub mod codec;
pub mod credentials;
pub mod messages;
pub mod quic;
pub mod runtime;

pub use codec::{CodecError, MAX_FRAME};
pub use messages::*;
pub use quic::{FrameReader, FrameWriter, WireError};
