//! # feed: gridmatch's public market data
//!
//! Owns everything between the engine's events and a market-data subscriber's books, as pure
//! state machines: the canonical feed with its L3 mirror books, per-subscriber L1/L2/L3 views
//! with their own sequence numbers, snapshots and gap recovery, the slow-subscriber policy, the
//! subscriber-side client, and the LOBSTER export.
//!
//! Must not: do I/O (beyond writing to a caller's `io::Write`), read clocks, spawn threads, or
//! ever make its caller wait; never publish a broker's identity (no broker ids, and order ids
//! are public ids: the sequence number of the command that rested the order, not the id the
//! broker chose).
//!
//! Input: for every command, once per security it touched (a PHASE once per security), the
//! command, its sequence number and exchange time, and the engine's events for that security
//! ([`Completed`]). The command is needed for phase changes (no event says "the phase is now
//! X"). Each batch is checked against the mirror books; one that contradicts them (an
//! execution not first in line, totals unlike the engine's, ...) is refused whole: that is an
//! engine/feed disagreement, a bug to report loudly, never a silently wrong feed.
//!
//! Layout:
//! - [`message`]: the wire types ([`Message`], [`Body`], snapshots, [`Subscription`]).
//! - [`book`]: [`L3Book`] (order by order, with an undo log) and [`LevelBook`] (L1/L2).
//! - [`builder`]: [`FeedBuilder`]: events of each completed command -> canonical messages,
//!   checked against the mirror (executions in priority order, totals equal to the engine's).
//! - [`view`]: [`View`]: a subscription's slice of the canonical feed (L3 renumbered; L2/L1
//!   level updates or quotes derived from the mirror when the best N levels changed).
//! - [`fanout`]: [`Fanout`]: subscribers' bounded queues and the slow-subscriber policy.
//! - [`client`]: [`FeedClient`]: applies a view, detects gaps, exposes the rebuilt books.
//! - [`lobster`]: LOBSTER message/orderbook files (the mapping is documented there) and a
//!   parser that rebuilds a book from them; [`export`]: the trades CSV.
//!
//! [`Feed`] ties the builder and the fanout together for the manager's feed task:
//!
//! ```
//! use feed::{Completed, Feed, FeedClient, FeedLevel, QueuePolicy, Securities, Subscription};
//! use matching::{BrokerId, Command, Exchange, MarketRules, NewOrder, OrderId, OrderType,
//!     SecurityId, SecurityTable, Side};
//!
//! let mut table = SecurityTable::new();
//! table.add("VNM", 70_000).unwrap();
//! let mut exchange = Exchange::new(MarketRules::none(), table.clone());
//! let mut feed = Feed::new(&table, QueuePolicy::default());
//! let sub = Subscription { level: FeedLevel::L2 { levels: 5 }, securities: Securities::All };
//! let me = feed.subscribe(&sub).unwrap();
//! let cmd = Command::New(NewOrder { id: OrderId(1), broker: BrokerId(0),
//!     security: SecurityId(0), side: Side::Buy, kind: OrderType::Limit, price: 100, qty: 7 });
//! let mut events = Vec::new();
//! exchange.process(&cmd, &mut events);
//! feed.apply(Completed { seq: 1, time: 0, security: SecurityId(0), command: &cmd,
//!     events: &events }).unwrap();
//! let (mut msgs, mut client) = (Vec::new(), FeedClient::new());
//! feed.poll(me, usize::MAX, &mut msgs).unwrap();
//! for m in &msgs { client.apply(m); }
//! assert_eq!(client.depth(SecurityId(0), 5), exchange.engine().depth(SecurityId(0), 5));
//! ```

pub mod book;
pub mod builder;
pub mod client;
pub mod export;
pub mod fanout;
pub mod lobster;
pub mod message;
pub mod view;

pub use book::{L3Book, LevelBook, OwnedOrder};
pub use builder::{
    engine_indicative, Batch, BuilderState, Completed, FeedBuilder, FeedError, IndicativeFn,
    SecurityMirror, SecurityStatus, StateError,
};
pub use client::{Applied, ClientBook, FeedClient, ResyncGate, SecurityView};
pub use fanout::{
    Fanout, FanoutTotals, QueuePolicy, SubscriberId, SubscriberState, SubscriberStats,
    UnknownSubscriber,
};
pub use message::{
    Body, BookImage, DeleteReason, FeedLevel, LevelInfo, Message, OrderInfo, Securities, Snapshot,
    Subscription, SubscriptionError, Trade, TradeId, Uncross,
};
pub use view::{Tops, View};

use matching::SecurityTable;

/// The whole feed role: the canonical builder and its subscribers.
#[derive(Debug)]
pub struct Feed {
    builder: FeedBuilder,
    fanout: Fanout,
}

impl Feed {
    pub fn new(securities: &SecurityTable, policy: QueuePolicy) -> Self {
        Feed {
            builder: FeedBuilder::new(securities),
            fanout: Fanout::new(policy),
        }
    }

    /// Plugs in the indicative-uncross computation.
    pub fn with_indicative(mut self, f: IndicativeFn) -> Self {
        self.builder = self.builder.with_indicative(f);
        self
    }

    /// Applies one completed command (see [`FeedBuilder::apply`]) and queues the result for
    /// every subscriber. Never waits; a refused batch changes nothing and queues nothing.
    pub fn apply(&mut self, c: Completed<'_>) -> Result<(), FeedError> {
        self.builder.apply(c)?;
        self.fanout.publish(&self.builder);
        Ok(())
    }

    /// Replaces the builder (rebuilt from the journal after the feed lost input) and resyncs
    /// every subscriber from it: the messages they were missing cannot be rebuilt, so they
    /// start over from a snapshot (their view sequence numbers keep growing).
    pub fn replace_builder(&mut self, builder: FeedBuilder) {
        self.builder = builder;
        self.fanout.resync_all();
    }

    pub fn subscribe(&mut self, sub: &Subscription) -> Result<SubscriberId, SubscriptionError> {
        self.fanout.subscribe(sub, &self.builder)
    }

    pub fn unsubscribe(&mut self, id: SubscriberId) -> Result<(), UnknownSubscriber> {
        self.fanout.unsubscribe(id)
    }

    /// See [`Fanout::request_resync`].
    pub fn request_resync(
        &mut self,
        id: SubscriberId,
    ) -> Result<SubscriberState, UnknownSubscriber> {
        self.fanout.request_resync(id)
    }

    /// See [`Fanout::poll`].
    pub fn poll(
        &mut self,
        id: SubscriberId,
        max: usize,
        out: &mut Vec<Message>,
    ) -> Result<SubscriberState, UnknownSubscriber> {
        self.fanout.poll(id, &self.builder, max, out)
    }

    /// See [`Fanout::heartbeat`].
    pub fn heartbeat(&mut self, id: SubscriberId) -> Result<Option<Message>, UnknownSubscriber> {
        self.fanout.heartbeat(id, &self.builder)
    }

    pub fn builder(&self) -> &FeedBuilder {
        &self.builder
    }

    pub fn fanout(&self) -> &Fanout {
        &self.fanout
    }
}
