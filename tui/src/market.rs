//! The Market view's data from the public market-data feed: an L2 subscription over every
//! security, applied by a [`feed::FeedClient`] in the network task and handed to the UI as a
//! [`MarketPicture`] (exact top levels of each book) plus every trade. Pure: no I/O, no clock
//! (the caller passes the time for the resync retry).

use std::collections::BTreeMap;

use feed::{Applied, Body, FeedClient, Message, ResyncGate};
use matching::{Phase, Price, Qty, SecurityId, Timestamp};

/// Levels per side the tui subscribes to by default (the book panel shows at most this many).
pub const FEED_LEVELS: u32 = 10;
/// A resync request that got no snapshot is repeated after this long.
const RESYNC_RETRY_MS: u64 = 2000;

/// One book as the feed shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedBook {
    /// Best first, limit levels only (as `matching::Engine::depth`).
    pub bids: Vec<(Price, Qty)>,
    pub asks: Vec<(Price, Qty)>,
    pub phase: Option<Phase>,
    /// The last trade's price and quantity.
    pub last: Option<(Price, Qty)>,
}

/// Every book of the feed at one moment, and how the subscription stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MarketPicture {
    pub books: BTreeMap<SecurityId, FeedBook>,
    /// False between a gap and the end of the snapshot that repairs it.
    pub synced: bool,
    /// Snapshots applied (the first one included) and gaps seen.
    pub resyncs: u64,
    pub gaps: u64,
    /// Feed messages received.
    pub messages: u64,
}

/// A trade from the feed, with its exchange time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedTrade {
    pub time: Timestamp,
    pub trade: feed::Trade,
}

/// What one frame of messages produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Trades applied (none while the client waits for a resync: the snapshot covers them).
    pub trades: Vec<FeedTrade>,
    /// Ask the manager for a resync now.
    pub resync: bool,
}

/// The subscriber side of the tui's feed session.
#[derive(Debug)]
pub struct MarketTracker {
    client: FeedClient,
    gate: ResyncGate,
    levels: usize,
    messages: u64,
    /// Something changed since the last [`MarketTracker::picture`].
    pub dirty: bool,
}

impl MarketTracker {
    pub fn new(levels: u32) -> Self {
        MarketTracker {
            client: FeedClient::new(),
            gate: ResyncGate::default(),
            levels: levels as usize,
            messages: 0,
            dirty: false,
        }
    }

    /// Applies one frame of the view's messages, in order.
    pub fn apply(&mut self, msgs: &[Message], now_ms: u64) -> Step {
        let mut step = Step::default();
        for m in msgs {
            self.messages += 1;
            let applied = self.client.apply(m);
            if self
                .gate
                .after(applied, &self.client, now_ms, RESYNC_RETRY_MS)
            {
                step.resync = true;
            }
            if applied == Applied::Applied {
                self.dirty = true;
                if let Body::Trade(t) = &m.body {
                    step.trades.push(FeedTrade {
                        time: m.time,
                        trade: *t,
                    });
                }
            }
        }
        step
    }

    pub fn is_synced(&self) -> bool {
        self.client.is_synced()
    }

    /// The books as they stand; clears `dirty`.
    pub fn picture(&mut self) -> MarketPicture {
        self.dirty = false;
        let books = self
            .client
            .securities()
            .into_iter()
            .filter_map(|id| {
                let s = self.client.security(id)?;
                let (bids, asks) = s.book.depth(self.levels);
                Some((
                    id,
                    FeedBook {
                        bids,
                        asks,
                        phase: Some(s.phase),
                        last: s.last_trade.map(|t| (t.price, t.qty)),
                    },
                ))
            })
            .collect();
        let stats = self.client.stats();
        MarketPicture {
            books,
            synced: self.client.is_synced(),
            resyncs: stats.resyncs,
            gaps: stats.gaps,
            messages: self.messages,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use feed::{Completed, Feed, FeedLevel, QueuePolicy, Securities, Subscription};
    use matching::stream::BrokerRegistry;
    use matching::{Engine, Event, Gateway, MarketRules, SecurityTable};
    use testkit::nasty::{nasty_stream, Nasty};

    /// A nasty trading day sequenced like the manager (gateway, dense seqs, PHASE in every
    /// book) into a real feed; the tracker reads an L2 view of it, losing a message now and
    /// then: its books equal the engine's top levels at the end.
    #[test]
    fn tracks_the_engines_books_and_every_trade_and_recovers_from_gaps() {
        let table = SecurityTable::synthetic(4).unwrap();
        let rules = MarketRules::hose();
        let rows = nasty_stream(
            &Nasty {
                rows: 8000,
                seed: 11,
                brokers: 3,
                day: true,
                sweep_every: 700,
            },
            &table,
        );
        let mut feed = Feed::new(
            &table,
            QueuePolicy {
                capacity: 1 << 20,
                max_overflows: 1000,
                ..QueuePolicy::default()
            },
        )
        .with_indicative(feed::engine_indicative);
        let l2 = Subscription {
            level: FeedLevel::L2 {
                levels: FEED_LEVELS,
            },
            securities: Securities::All,
        };
        let sub = feed.subscribe(&l2).unwrap();
        let mut gateway = Gateway::new(rules, table.clone());
        let mut engine = Engine::new(rules, &table);
        for (id, _, _) in table.iter() {
            engine.open_book(id);
        }
        let mut brokers = BrokerRegistry::new();
        let mut tracker = MarketTracker::new(FEED_LEVELS);
        let (mut seq, mut lost, mut trades_seen, mut trades_made) = (0u64, 0u32, 0usize, 0usize);
        let mut out = Vec::new();
        let mut want_loss = false;
        for row in &rows {
            let cmd = matching::stream::to_command(row, &table, &mut brokers);
            if gateway.check(&cmd).is_err() {
                continue;
            }
            seq += 1;
            let time = 1_750_000_000_000_000_000 + seq as i64 * 1_000;
            let secs: Vec<SecurityId> = match cmd.security() {
                Some(s) => vec![s],
                None => table.iter().map(|(id, _, _)| id).collect(),
            };
            for security in secs {
                let mut events = Vec::new();
                engine.process_for(security, &cmd, &mut events);
                for e in &events {
                    if let Event::Reference { security, price } = *e {
                        gateway.set_reference(security, price);
                    }
                }
                events.retain(|e| !matches!(e, Event::Accepted { .. }));
                trades_made += events
                    .iter()
                    .filter(|e| matches!(e, Event::Fill(_)))
                    .count();
                feed.apply(Completed {
                    seq,
                    time,
                    security,
                    command: &cmd,
                    events: &events,
                })
                .unwrap();
            }
            out.clear();
            feed.poll(sub, usize::MAX, &mut out).unwrap();
            want_loss |= seq % 500 == 0;
            if want_loss && out.len() > 1 {
                want_loss = false;
                // Lost on the way: the tracker asks for a resync and ignores the rest.
                out.remove(0);
                lost += 1;
                let step = tracker.apply(&out, seq);
                assert!(step.resync, "a gap asks for a resync");
                assert!(!tracker.is_synced());
                assert!(tracker.picture().synced.eq(&false));
                feed.request_resync(sub).unwrap();
                continue;
            }
            trades_seen += tracker.apply(&out, seq).trades.len();
        }
        out.clear();
        feed.poll(sub, usize::MAX, &mut out).unwrap();
        trades_seen += tracker.apply(&out, u64::MAX).trades.len();
        assert!(tracker.is_synced());
        let picture = tracker.picture();
        assert!(lost >= 3, "{lost} frames lost");
        assert_eq!(picture.gaps, u64::from(lost), "{picture:?}");
        assert_eq!(picture.resyncs, u64::from(lost) + 1, "{picture:?}");
        for (id, code, _) in table.iter() {
            let (bids, asks) = engine.depth(id, FEED_LEVELS as usize);
            let book = &picture.books[&id];
            assert_eq!((&book.bids, &book.asks), (&bids, &asks), "{code}");
            assert!(book.phase.is_some());
        }
        assert!(trades_made > 100, "{trades_made} trades");
        // Every trade but those in the frames lost with a gap.
        assert!(
            trades_seen <= trades_made && trades_seen > trades_made / 2,
            "{trades_seen} of {trades_made}"
        );
    }
}
