//! [`FeedClient`]: the subscriber side. Applies a snapshot and then incrementals, detects a gap
//! (or a message that does not fit its books) by the view's sequence numbers, and then waits
//! for the resynchronisation it should ask for, ignoring everything until `SnapshotBegin`.

use matching::{Phase, Price, SecurityId, Side};
use rustc_hash::FxHashMap;

use crate::book::{L3Book, LevelBook};
use crate::message::{Body, BookImage, LastTrade, Message, Snapshot, Uncross};

/// A subscriber's copy of one book.
#[derive(Clone, Debug)]
pub enum ClientBook {
    /// L3: every order.
    Orders(L3Book),
    /// L1/L2: the subscribed window of levels.
    Levels(LevelBook),
}

impl ClientBook {
    /// Aggregated limit `(bids, asks)`, best first, at most `n` levels per side (orders at
    /// market excluded, as in `matching::Engine::depth`).
    pub fn depth(&self, n: usize) -> matching::book::Depth {
        match self {
            ClientBook::Orders(b) => b.depth(n),
            ClientBook::Levels(b) => b.depth(n),
        }
    }

    /// The orders resting at market on `side` (ATO/ATC in a call phase), as a price-0 level.
    pub fn at_market(&self, side: Side) -> Option<crate::message::LevelInfo> {
        match self {
            ClientBook::Orders(b) => b.at_market(side),
            ClientBook::Levels(b) => b.at_market(side),
        }
    }
}

/// What a subscriber knows about one security.
#[derive(Clone, Debug)]
pub struct SecurityView {
    pub phase: Phase,
    pub reference: Price,
    pub last_trade: Option<LastTrade>,
    pub indicative: Option<Uncross>,
    /// The last call auction's result.
    pub auction: Option<Uncross>,
    pub book: ClientBook,
}

impl SecurityView {
    fn from_snapshot(s: Snapshot) -> Result<Self, &'static str> {
        let book = match s.book {
            BookImage::Levels { bids, asks } => ClientBook::Levels(LevelBook::new(bids, asks)),
            BookImage::Orders { bids, asks } => {
                let mut b = L3Book::new();
                for (side, list) in [(Side::Buy, bids), (Side::Sell, asks)] {
                    for o in list {
                        b.add(o.id, side, o.price, o.qty)
                            .map_err(|_| "snapshot lists an order twice or with no quantity")?;
                    }
                }
                ClientBook::Orders(b)
            }
        };
        Ok(SecurityView {
            phase: s.phase,
            reference: s.reference,
            last_trade: s.last_trade,
            indicative: s.indicative,
            auction: None,
            book,
        })
    }
}

/// What [`FeedClient::apply`] did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// A duplicate, or a message while waiting for a resync.
    Ignored,
    /// Messages were lost: ask the feed for a resync.
    Gap {
        expected: u64,
        got: u64,
    },
    /// The message does not fit the books (a feed bug, or a corrupted message): ask for a
    /// resync.
    Inconsistent(&'static str),
}

/// A subscriber's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub applied: u64,
    pub ignored: u64,
    pub gaps: u64,
    pub inconsistencies: u64,
    pub resyncs: u64,
}

/// The subscriber-side state machine.
#[derive(Clone, Debug, Default)]
pub struct FeedClient {
    /// Sequence number expected next; `None` until the first `SnapshotBegin`, and after a gap.
    expected: Option<u64>,
    /// Highest sequence number received: an older `SnapshotBegin` (a redelivery) is ignored.
    high: u64,
    /// Snapshots announced by the last `SnapshotBegin` not yet received.
    pending: u32,
    feed_seq: u64,
    securities: FxHashMap<SecurityId, SecurityView>,
    stats: ClientStats,
}

impl FeedClient {
    pub fn new() -> Self {
        Self::default()
    }

    /// True when the client has lost track and waits for a `SnapshotBegin`.
    pub fn needs_resync(&self) -> bool {
        self.expected.is_none()
    }

    /// True when every announced snapshot arrived and no gap happened since.
    pub fn is_synced(&self) -> bool {
        self.expected.is_some() && self.pending == 0
    }

    /// Canonical feed sequence of the last `SnapshotBegin`.
    pub fn snapshot_feed_seq(&self) -> u64 {
        self.feed_seq
    }

    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    pub fn security(&self, id: SecurityId) -> Option<&SecurityView> {
        self.securities.get(&id)
    }

    /// Securities the client holds, in id order.
    pub fn securities(&self) -> Vec<SecurityId> {
        let mut v: Vec<_> = self.securities.keys().copied().collect();
        v.sort();
        v
    }

    /// Aggregated depth of one book (empty if the client does not hold it).
    pub fn depth(&self, id: SecurityId, n: usize) -> matching::book::Depth {
        self.security(id)
            .map_or_else(|| (Vec::new(), Vec::new()), |s| s.book.depth(n))
    }
}

fn l3(b: &mut ClientBook) -> Result<&mut L3Book, &'static str> {
    match b {
        ClientBook::Orders(b) => Ok(b),
        ClientBook::Levels(_) => Err("order message on a level book"),
    }
}

impl FeedClient {
    /// Applies one message of the subscriber's view.
    pub fn apply(&mut self, msg: &Message) -> Applied {
        if let Body::SnapshotBegin {
            feed_seq,
            securities,
        } = msg.body
        {
            if msg.seq <= self.high {
                self.stats.ignored += 1;
                return Applied::Ignored;
            }
            self.high = msg.seq;
            self.securities.clear();
            self.expected = Some(msg.seq + 1);
            self.pending = securities;
            self.feed_seq = feed_seq;
            self.stats.resyncs += 1;
            self.stats.applied += 1;
            return Applied::Applied;
        }
        let Some(expected) = self.expected else {
            if msg.body == Body::Heartbeat {
                // Still waiting, and the feed has nothing queued for us: the resync request or
                // the start of its snapshot was lost. Ask again.
                return Applied::Gap {
                    expected: self.high + 1,
                    got: msg.seq,
                };
            }
            self.stats.ignored += 1;
            return Applied::Ignored;
        };
        if msg.body == Body::Heartbeat {
            // It repeats the last sequence number sent: anything at or past `expected` was lost.
            if msg.seq >= expected {
                self.expected = None;
                self.stats.gaps += 1;
                return Applied::Gap {
                    expected,
                    got: msg.seq,
                };
            }
            self.stats.ignored += 1;
            return Applied::Ignored;
        }
        if msg.seq < expected {
            self.stats.ignored += 1;
            return Applied::Ignored;
        }
        self.high = self.high.max(msg.seq);
        if msg.seq > expected {
            self.expected = None;
            self.stats.gaps += 1;
            return Applied::Gap {
                expected,
                got: msg.seq,
            };
        }
        self.expected = Some(expected + 1);
        match self.apply_body(&msg.body, msg.time) {
            Ok(()) => {
                self.stats.applied += 1;
                Applied::Applied
            }
            Err(why) => {
                self.expected = None;
                self.stats.inconsistencies += 1;
                Applied::Inconsistent(why)
            }
        }
    }

    fn apply_body(&mut self, body: &Body, time: matching::Timestamp) -> Result<(), &'static str> {
        if let Body::Snapshot(s) = body {
            self.pending = self.pending.saturating_sub(1);
            let view = SecurityView::from_snapshot((**s).clone())?;
            self.securities.insert(s.security, view);
            return Ok(());
        }
        let sec = body.security().ok_or("message without a security")?;
        let view = self
            .securities
            .get_mut(&sec)
            .ok_or("message for a security without a snapshot")?;
        match *body {
            Body::Add {
                id,
                side,
                price,
                qty,
                ..
            } => {
                l3(&mut view.book)?
                    .add(id, side, price, qty)
                    .map_err(|_| "add of a resting order")?;
            }
            Body::Reduce { id, qty, .. } => {
                l3(&mut view.book)?
                    .reduce(id, qty)
                    .map_err(|_| "reduce of an unknown order or to a bad quantity")?;
            }
            Body::Delete { id, .. } => {
                l3(&mut view.book)?
                    .delete(id)
                    .map_err(|_| "delete of an unknown order")?;
            }
            Body::Trade(t) => {
                if let ClientBook::Orders(b) = &mut view.book {
                    for id in [t.buy, t.sell].into_iter().flatten() {
                        b.execute(id, t.qty)
                            .map_err(|_| "execution of an unknown order or too large")?;
                    }
                }
                view.last_trade = Some(LastTrade {
                    id: t.id,
                    price: t.price,
                    qty: t.qty,
                    time,
                });
            }
            Body::Level { side, level, .. } => match &mut view.book {
                ClientBook::Levels(b) => b.set(side, level),
                ClientBook::Orders(_) => return Err("level message on an order book"),
            },
            Body::Quote { bid, ask, .. } => match &mut view.book {
                ClientBook::Levels(b) => {
                    b.set_best(Side::Buy, bid);
                    b.set_best(Side::Sell, ask);
                }
                ClientBook::Orders(_) => return Err("quote message on an order book"),
            },
            Body::Phase { phase, .. } => view.phase = phase,
            Body::Auction { price, volume, .. } => {
                view.auction = Some(Uncross { price, volume });
            }
            Body::Indicative { uncross, .. } => view.indicative = uncross,
            Body::Reference { price, .. } => view.reference = price,
            // Handled before this match.
            Body::Snapshot(_) | Body::SnapshotBegin { .. } | Body::Heartbeat => {}
        }
        Ok(())
    }
}

/// When a subscriber asks the feed for a resync: on a gap or an inconsistency, once, and again
/// only if no snapshot has started within `retry_ms` (the request or the snapshot's start may
/// be lost too). Every request counts against the subscriber in the feed's drop policy, so
/// asking again for each message that arrives after a gap would get it dropped.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResyncGate {
    asked_at: Option<u64>,
}

impl ResyncGate {
    /// Call after each [`FeedClient::apply`] with its result and the time in milliseconds;
    /// true: send a resync request now.
    pub fn after(
        &mut self,
        applied: Applied,
        client: &FeedClient,
        now_ms: u64,
        retry_ms: u64,
    ) -> bool {
        if !client.needs_resync() {
            self.asked_at = None;
            return false;
        }
        let lost = matches!(applied, Applied::Gap { .. } | Applied::Inconsistent(_));
        let due = self
            .asked_at
            .is_none_or(|t| now_ms.saturating_sub(t) >= retry_ms);
        if lost && due {
            self.asked_at = Some(now_ms);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    fn msg(seq: u64, body: Body) -> Message {
        Message { seq, time: 0, body }
    }

    #[test]
    fn resync_is_asked_once_per_gap_and_again_after_the_retry_time() {
        let mut client = FeedClient::new();
        let mut gate = ResyncGate::default();
        let begin = |seq| {
            msg(
                seq,
                Body::SnapshotBegin {
                    feed_seq: 0,
                    securities: 0,
                },
            )
        };
        let a = client.apply(&begin(1));
        assert!(!gate.after(a, &client, 0, 1000), "in sync");
        // Message 3 after 1: a gap. Ask once...
        let a = client.apply(&msg(3, Body::Heartbeat));
        assert!(matches!(a, Applied::Gap { .. }));
        assert!(gate.after(a, &client, 10, 1000));
        // ...not again for the heartbeats that keep coming while the snapshot is on its way...
        for t in [20, 500, 999] {
            let a = client.apply(&msg(3, Body::Heartbeat));
            assert!(!gate.after(a, &client, t, 1000), "at {t} ms");
        }
        // ...but again once the retry time passed without a snapshot.
        let a = client.apply(&msg(3, Body::Heartbeat));
        assert!(gate.after(a, &client, 1010, 1000));
        // A snapshot starts: synced, and the next gap asks at once.
        let a = client.apply(&begin(4));
        assert!(!gate.after(a, &client, 1020, 1000));
        let a = client.apply(&msg(9, Body::Heartbeat));
        assert!(gate.after(a, &client, 1030, 1000));
    }
}
