//! # user-sim: load and reference tooling for gridmatch
//!
//! Owns the seeded order-stream generator ([`generate`]) and local replay of an order file
//! through the sequential reference exchange ([`replay`]); the grid client (broker sessions,
//! load runs, latency reports) lives beside them. The `user-sim` binary is thin clap glue over
//! these modules.
//!
//! Must not: match orders itself (the `matching` crate does), or write anything but the files
//! it is told to write.
//!
//! Layout:
//! - [`generate`]: pure generator: config + securities + rules in, order rows out.
//! - [`agents`]: `user-sim agents`: a strategy-agent population through the local exchange
//!   or, in lockstep, through the grid ([`agents::GridVenue`]).
//! - [`pace`]: the send schedule of a load run: one pacer thread for every broker session.
//! - [`replay`]: read securities and orders files, run [`matching::Exchange`], write trades,
//!   totals and rejects files.
//! - [`record`]: an L3 market-data subscriber writing LOBSTER files and a trades CSV.

pub mod agents;
pub mod client;
pub mod generate;
pub mod pace;
pub mod record;
pub mod replay;
