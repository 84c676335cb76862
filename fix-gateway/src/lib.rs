//! # fix_gateway: FIX 4.4 order entry for gridmatch
//!
//! Owns the FIX side of the `fix-gateway` process: the tag-value codec, the FIX 4.4 session
//! layer, the durable per-session message store and the TCP (optionally TLS) acceptor. Each
//! FIX session is one broker session; what its application messages mean is the business of a
//! [`backend::Backend`] (the manager's client protocol in production, a loopback in tests).
//!
//! Must not: hold broker secrets (the backend authenticates), block the acceptor on one slow
//! session, trust input (every frame is validated; nothing here panics on bytes from the wire),
//! or send anything that depends on state not yet written to the message store.
//!
//! Layout:
//! - [`codec`]: framing (BodyLength, CheckSum), field splitting, message builder.
//! - [`tags`]: tag numbers and message types.
//! - [`session`]: the session layer as a sans-I/O state machine.
//! - [`store`]: message stores (file log per session, memory).
//! - [`utc`]: FIX UTCTimestamp formatting and parsing.
//! - [`backend`]: the application side's interface, and the loopback backend.
//! - [`acceptor`]: the tokio shell: listener, TLS, one task per connection.
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
