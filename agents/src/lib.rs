//! # agents: strategy agents for gridmatch
//!
//! Owns the population of trading agents that play the market through the exchange: noise,
//! value, momentum, market-maker and random (today's generator) traders behind one [`Agent`]
//! trait; the population file; the lockstep driver that runs them over HOSE trading days; and
//! the results (accounts, stylized facts of the returns, plots).
//!
//! Must not: open sockets, read clocks, spawn threads or touch the exchange directly. Agents
//! see only the public [`MarketView`] and their own reports; the shell (the local exchange in
//! [`local`], or the grid with the feed and broker sessions) moves commands and events in and
//! out of the pure [`Lockstep`] state machine. Randomness comes only from ChaCha generators
//! seeded from the population seed.
//!
//! Layout:
//! - [`config`]: the population file (TOML), validated with errors that name the field.
//! - [`schedule`]: the trading day's clock (HOSE phases, compressed to N steps).
//! - [`view`]: [`MarketView`], what an agent sees; [`tracker`] builds it from public data.
//! - [`account`]: an agent's own orders, cash, inventory and counts, from its reports.
//! - [`agent`]: the [`Agent`] trait, the decision context [`Ctx`], the phase table.
//! - [`kinds`]: the strategies; [`fundamental`]: the value agents' private signal.
//! - [`driver`]: [`Lockstep`], the step machine; [`local`]: the run over a [`Venue`]
//!   ([`LocalRun`]: against [`matching::Exchange`]; the grid's venue lives in `user-sim`).
//! - [`report`]: per-agent results (CSV, text table); [`facts`]: stylized facts of the
//!   returns (Markdown); [`plots`]: price with MA5/MA20, spread and volume (PNG);
//!   [`results`]: every result file of a run, written by one function for every shell.
#![warn(missing_docs)]
#![allow(missing_docs)]

pub mod account;
pub mod agent;
pub mod config;
pub mod driver;
pub mod facts;
pub mod fundamental;
pub mod kinds;
pub mod local;
pub mod plots;
pub mod report;
pub mod results;
pub mod schedule;
pub mod tracker;
pub mod view;

pub use account::{Account, OrderState, OwnOrder};
pub use agent::{phase_allows, Agent, AgentKind, Ctx, Signals};
pub use config::{ConfigError, Mode, Population};
pub use driver::{Lockstep, Next, Submission};
pub use facts::StylizedFacts;
pub use local::{Final, LocalOutcome, LocalRun, Run, RunError, TradeRecord, Venue, VenueError};
pub use view::{Bar, MarketView, SecurityView};
