//! # proto: the wire messages of gridmatch
//!
//! Owns every message between broker, manager, executor, monitor and market-data subscriber
//! ([`messages`]; the feed's message bodies are `feed` crate types) and the
//! length-prefixed bincode frame codec with its size limits ([`codec`]). Both are pure: no
//! sockets, no runtime, and decoding never panics on any bytes.
//!
//! Must not: hold grid logic (sequencing, routing, matching: the binaries and `matching`), or
//! network and TLS setup (`transport`). Only this crate (with the `feed` and `matching` types it
//! carries) derives the wire codec: bincode's `Encode`/`Decode`, beside serde for JSON and files.

pub mod codec;
pub mod group_events;
pub mod limits;
pub mod messages;

pub use codec::{CodecError, HELLO_MAX_FRAME, MAX_FRAME};
pub use group_events::GroupEvents;
pub use messages::*;
