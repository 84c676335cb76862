//! [`Fanout`]: every subscriber's [`View`] and bounded queue, and the slow-subscriber policy.
//!
//! The subscribers of the whole L3 feed (L3, every security: recorders, the common case) get no
//! queue of their own: each batch's messages are stored once in a shared log that each of them
//! reads from its own position, renumbered for its view when it polls. Their queue holds only
//! their resync snapshots; their bound is how far behind the log's end they are.
//!
//! Publishing never waits: a batch's messages go into each subscriber's queue; a queue that
//! would pass its bound is cleared instead and its subscriber is resynchronised with a fresh
//! snapshot when it next polls (when it can take it). A subscriber that overflows (or asks for
//! a resync) `max_overflows` times within `window` nanoseconds of exchange time is dropped.

use std::collections::VecDeque;

use matching::Timestamp;

use crate::builder::FeedBuilder;
use crate::message::{Body, FeedLevel, Message, Securities, Subscription, SubscriptionError};
use crate::view::{Tops, View};

/// Slow-subscriber policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuePolicy {
    /// Bound of a queue in incremental messages. A resync's snapshot messages are not counted:
    /// they are queued only into an empty queue, so a queue holds at most one resync plus
    /// `capacity` incrementals, and a subscriber of a big book can always resync.
    pub capacity: usize,
    /// Overflows or resync requests within `window` that get a subscriber dropped.
    pub max_overflows: u32,
    /// The window, in nanoseconds of exchange time.
    pub window: i64,
}

impl Default for QueuePolicy {
    /// 65,536 messages; dropped at the 3rd overflow within 60 s.
    fn default() -> Self {
        QueuePolicy {
            capacity: 1 << 16,
            max_overflows: 3,
            window: 60_000_000_000,
        }
    }
}

/// A subscriber's handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriberId(pub u64);

/// Where a subscriber stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscriberState {
    /// Receiving incrementals.
    Live,
    /// Its queue was cleared; a snapshot is queued at its next poll.
    Resyncing,
    /// Too many overflows: nothing more is queued; the session should be closed.
    Dropped,
}

/// What the fanout produced since it started (every subscriber, past ones included): the
/// figures of the feed's throughput.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FanoutTotals {
    /// Canonical messages published (the builder's batches, once each whoever subscribes).
    pub canonical: u64,
    /// Messages produced for subscribers' views, by view kind ([`FeedLevel::kind_index`]:
    /// L1, L2, L3): incrementals queued plus resync snapshots, heartbeats not included.
    pub produced: [u64; 3],
    /// Of those, resync messages (`SnapshotBegin` and snapshots).
    pub snapshot_messages: u64,
    /// Messages handed out by `poll`.
    pub delivered: u64,
    /// Queue overflows (each cleared a queue and resynced or dropped its subscriber).
    pub overflows: u64,
}

/// A subscriber's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Messages handed out by `poll`.
    pub delivered: u64,
    /// Queue overflows so far.
    pub overflows: u64,
    /// Resynchronisations (the initial snapshot included).
    pub resyncs: u64,
    /// Messages now queued, and how many of them are incrementals (the bounded part).
    pub queued: usize,
    pub queued_incrementals: usize,
}

#[derive(Debug)]
struct Subscriber {
    id: SubscriberId,
    view: View,
    queue: VecDeque<Message>,
    /// Incremental (non-snapshot) messages in `queue`.
    incrementals: usize,
    state: SubscriberState,
    /// Exchange times of recent overflows and resync requests (within the window).
    strikes: VecDeque<Timestamp>,
    stats: SubscriberStats,
    /// Reads the shared log (L3, every security) instead of a queue of incrementals.
    reads_log: bool,
    /// While live, its position in the shared log (next entry to deliver).
    cursor: Option<u64>,
}

impl Subscriber {
    /// Incrementals waiting for it: queued, or the part of the shared log it has not read.
    fn pending(&self, log: &SharedLog) -> usize {
        match self.cursor {
            Some(c) => (log.end() - c) as usize,
            None => self.incrementals,
        }
    }
}

/// The L3 messages of every security, stored once for every subscriber that reads the whole L3
/// feed, from the oldest position one of them still has to read.
#[derive(Debug, Default)]
struct SharedLog {
    entries: VecDeque<(Timestamp, Body)>,
    /// Position of `entries[0]` (positions count every entry ever appended).
    start: u64,
}

impl SharedLog {
    fn end(&self) -> u64 {
        self.start + self.entries.len() as u64
    }

    /// Forgets what every reader has read (everything when nobody reads).
    fn trim(&mut self, subs: &[Subscriber]) {
        let keep_from = subs
            .iter()
            .filter_map(|s| s.cursor)
            .min()
            .unwrap_or(self.end());
        let n = (keep_from - self.start) as usize;
        self.entries.drain(..n);
        self.start = keep_from;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no subscriber {0:?}")]
pub struct UnknownSubscriber(pub SubscriberId);

/// All subscribers of one feed.
#[derive(Debug)]
pub struct Fanout {
    policy: QueuePolicy,
    subs: Vec<Subscriber>,
    next_id: u64,
    /// Latest exchange time seen (the clock of resync requests).
    now: Timestamp,
    /// Widest L1/L2 window among the subscribers: the top levels loaded once per batch.
    max_window: usize,
    tops: Tops,
    totals: FanoutTotals,
    log: SharedLog,
}

impl Fanout {
    pub fn new(policy: QueuePolicy) -> Self {
        Fanout {
            policy,
            subs: Vec::new(),
            next_id: 1,
            now: Timestamp::MIN,
            max_window: 0,
            tops: Tops::none(),
            totals: FanoutTotals::default(),
            log: SharedLog::default(),
        }
    }

    pub fn policy(&self) -> QueuePolicy {
        self.policy
    }

    /// What was produced and delivered so far.
    pub fn totals(&self) -> FanoutTotals {
        self.totals
    }

    /// Messages held in the shared log of the whole-L3 subscribers (what the slowest of them
    /// has not read yet).
    pub fn shared_log_len(&self) -> usize {
        self.log.entries.len()
    }

    /// Number of subscribers (dropped ones included until unsubscribed).
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    fn find(&mut self, id: SubscriberId) -> Result<&mut Subscriber, UnknownSubscriber> {
        let i = self
            .subs
            .binary_search_by_key(&id, |s| s.id)
            .map_err(|_| UnknownSubscriber(id))?;
        Ok(&mut self.subs[i])
    }

    /// Adds a subscriber; its first poll starts with a full snapshot.
    pub fn subscribe(
        &mut self,
        sub: &Subscription,
        builder: &FeedBuilder,
    ) -> Result<SubscriberId, SubscriptionError> {
        let view = View::new(sub, builder)?;
        self.max_window = self.max_window.max(view.level().window().unwrap_or(0));
        let id = SubscriberId(self.next_id);
        self.next_id += 1;
        let reads_log = sub.level == FeedLevel::L3 && sub.securities == Securities::All;
        // Ids only grow, so `subs` stays sorted by id.
        self.subs.push(Subscriber {
            id,
            view,
            queue: VecDeque::new(),
            incrementals: 0,
            state: SubscriberState::Resyncing,
            strikes: VecDeque::new(),
            stats: SubscriberStats::default(),
            reads_log,
            cursor: None,
        });
        Ok(id)
    }

    pub fn unsubscribe(&mut self, id: SubscriberId) -> Result<(), UnknownSubscriber> {
        let i = self
            .subs
            .binary_search_by_key(&id, |s| s.id)
            .map_err(|_| UnknownSubscriber(id))?;
        self.subs.remove(i);
        self.log.trim(&self.subs);
        self.max_window = self
            .subs
            .iter()
            .filter_map(|s| s.view.level().window())
            .max()
            .unwrap_or(0);
        Ok(())
    }

    /// Queues the builder's last batch for every live subscriber that wants it. Never waits:
    /// an overflowing queue is cleared and its subscriber resynced (or dropped).
    pub fn publish(&mut self, builder: &FeedBuilder) {
        let batch = builder.last_batch();
        let now = batch.time;
        self.now = self.now.max(now);
        if batch.messages.is_empty() {
            // No message and no book change: no view has anything to say.
            return;
        }
        let n = batch.messages.len();
        self.totals.canonical += n as u64;
        if self.subs.iter().any(|s| s.cursor.is_some()) {
            self.log
                .entries
                .extend(batch.messages.iter().map(|m| (batch.time, m.body.clone())));
        }
        self.tops.load(builder, self.max_window);
        let policy = self.policy;
        for sub in &mut self.subs {
            if sub.state != SubscriberState::Live {
                continue;
            }
            if sub.cursor.is_some() {
                // Numbered now, as a queue would (an overflow discards numbers too).
                sub.view.skip(n as u64);
                self.totals.produced[FeedLevel::L3.kind_index()] += n as u64;
                if sub.pending(&self.log) > policy.capacity {
                    sub.stats.overflows += 1;
                    self.totals.overflows += 1;
                    strike(sub, policy, now);
                }
                continue;
            }
            let before = sub.queue.len();
            sub.view.on_batch(builder, &self.tops, &mut sub.queue);
            let added = sub.queue.len() - before;
            self.totals.produced[sub.view.level().kind_index()] += added as u64;
            if sub.incrementals + added > policy.capacity {
                // Over by at most one batch, and only until `strike` clears it.
                sub.stats.overflows += 1;
                self.totals.overflows += 1;
                strike(sub, policy, now);
            } else {
                sub.incrementals += added;
            }
        }
        self.log.trim(&self.subs);
    }

    /// The subscriber lost messages (a gap) and asks for a fresh snapshot: its queue is cleared
    /// and the snapshot comes at its next poll. Counts towards the drop policy.
    pub fn request_resync(
        &mut self,
        id: SubscriberId,
    ) -> Result<SubscriberState, UnknownSubscriber> {
        let (policy, now) = (self.policy, self.now);
        let sub = self.find(id)?;
        if sub.state == SubscriberState::Live {
            strike(sub, policy, now);
        }
        let state = sub.state;
        self.log.trim(&self.subs);
        Ok(state)
    }

    /// The feed was rebuilt (its builder replaced): every subscriber that is not dropped has
    /// its queue cleared and gets a fresh snapshot at its next poll. Not its fault, so no
    /// strike counts towards the drop policy.
    pub fn resync_all(&mut self) {
        for sub in &mut self.subs {
            if sub.state == SubscriberState::Dropped {
                continue;
            }
            sub.queue.clear();
            sub.incrementals = 0;
            sub.cursor = None;
            sub.state = SubscriberState::Resyncing;
        }
        self.log.trim(&self.subs);
    }

    /// Moves up to `max` queued messages of subscriber `id` into `out` (a pending resync first
    /// queues the snapshot). Returns the subscriber's state: `Dropped` means close the session.
    pub fn poll(
        &mut self,
        id: SubscriberId,
        builder: &FeedBuilder,
        max: usize,
        out: &mut Vec<Message>,
    ) -> Result<SubscriberState, UnknownSubscriber> {
        let time = builder.clock();
        let i = self
            .subs
            .binary_search_by_key(&id, |s| s.id)
            .map_err(|_| UnknownSubscriber(id))?;
        let sub = &mut self.subs[i];
        if sub.state == SubscriberState::Resyncing && sub.queue.is_empty() {
            sub.view.resync(builder, time, &mut sub.queue);
            sub.state = SubscriberState::Live;
            sub.stats.resyncs += 1;
            let n = sub.queue.len() as u64;
            self.totals.produced[sub.view.level().kind_index()] += n;
            self.totals.snapshot_messages += n;
            if sub.reads_log {
                // The snapshot is the builder now: everything logged so far is in it.
                sub.cursor = Some(self.log.end());
            }
        }
        let mut n = max.min(sub.queue.len());
        for m in sub.queue.drain(..n) {
            if !m.body.is_snapshot() {
                sub.incrementals -= 1;
            }
            out.push(m);
        }
        if let Some(cursor) = sub.cursor {
            let pending = self.log.end() - cursor;
            let take = (max - n).min(pending as usize);
            let from = (cursor - self.log.start) as usize;
            // The view numbered the pending entries when they were published.
            let first = sub.view.seq() - pending + 1;
            for (k, (time, body)) in self.log.entries.range(from..from + take).enumerate() {
                out.push(Message {
                    seq: first + k as u64,
                    time: *time,
                    body: body.clone(),
                });
            }
            sub.cursor = Some(cursor + take as u64);
            n += take;
        }
        sub.stats.delivered += n as u64;
        self.totals.delivered += n as u64;
        let (state, read_log) = (sub.state, sub.reads_log && n > 0);
        if read_log {
            self.log.trim(&self.subs);
        }
        Ok(state)
    }

    /// A heartbeat for subscriber `id` when it is live and has nothing queued (`None`
    /// otherwise): it carries the view's last sequence number, so a subscriber that lost the
    /// tail of the stream notices the gap without waiting for the next message.
    pub fn heartbeat(
        &mut self,
        id: SubscriberId,
        builder: &FeedBuilder,
    ) -> Result<Option<Message>, UnknownSubscriber> {
        let time = builder.clock();
        let i = self
            .subs
            .binary_search_by_key(&id, |s| s.id)
            .map_err(|_| UnknownSubscriber(id))?;
        let sub = &self.subs[i];
        let idle = sub.state == SubscriberState::Live
            && sub.queue.is_empty()
            && sub.pending(&self.log) == 0;
        Ok(idle.then(|| Message {
            seq: sub.view.seq(),
            time,
            body: crate::message::Body::Heartbeat,
        }))
    }

    pub fn state(&self, id: SubscriberId) -> Option<SubscriberState> {
        let i = self.subs.binary_search_by_key(&id, |s| s.id).ok()?;
        Some(self.subs[i].state)
    }

    pub fn stats(&self, id: SubscriberId) -> Option<SubscriberStats> {
        let i = self.subs.binary_search_by_key(&id, |s| s.id).ok()?;
        let s = &self.subs[i];
        let pending = s.pending(&self.log);
        Some(SubscriberStats {
            queued: s.queue.len() - s.incrementals + pending,
            queued_incrementals: pending,
            ..s.stats
        })
    }
}

/// Clears the queue and schedules a resync, or drops the subscriber at the policy's limit.
fn strike(sub: &mut Subscriber, policy: QueuePolicy, now: Timestamp) {
    sub.queue.clear();
    sub.incrementals = 0;
    sub.cursor = None;
    while sub
        .strikes
        .front()
        .is_some_and(|&t| now.saturating_sub(t) >= policy.window)
    {
        sub.strikes.pop_front();
    }
    sub.strikes.push_back(now);
    sub.state = if sub.strikes.len() >= policy.max_overflows as usize {
        sub.strikes.clear();
        SubscriberState::Dropped
    } else {
        SubscriberState::Resyncing
    };
}
