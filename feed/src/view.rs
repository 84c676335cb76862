//! [`View`]: one subscriber's slice of the canonical feed, with its own gap-free sequence.
//!
//! - L3: the canonical messages of the wanted securities, renumbered.
//! - L2 (N levels) / L1: trades without order ids, phases, auctions, indicative and reference
//!   messages, then, when the batch changed the subscriber's window of a side (the at-market
//!   level and the best N limit levels; N = 1 for L1), the updates that turn its last window
//!   into the new one: level updates (L2), or a quote of the best limit levels plus a level
//!   update for an at-market change (L1).

use matching::{SecurityId, Side, Timestamp};

use crate::book::better;
use crate::builder::{Batch, FeedBuilder};
use crate::message::{
    Body, FeedLevel, LevelInfo, Message, Securities, Subscription, SubscriptionError, MAX_L2_LEVELS,
};

/// A subscriber's filter and numbering.
#[derive(Clone, Debug)]
pub struct View {
    level: FeedLevel,
    /// `None`: every security; else `wanted[id]`.
    wanted: Option<Vec<bool>>,
    /// Sequence number of the last message this view produced.
    seq: u64,
    /// L1/L2: per security, the window last sent (bids, asks), best first.
    windows: Vec<[Vec<LevelInfo>; 2]>,
    scratch: Vec<LevelInfo>,
}

impl View {
    /// Checks `sub` against the builder's listing.
    pub fn new(sub: &Subscription, builder: &FeedBuilder) -> Result<View, SubscriptionError> {
        if let FeedLevel::L2 { levels } = sub.level {
            if levels == 0 || levels > MAX_L2_LEVELS {
                return Err(SubscriptionError::BadLevels(levels));
            }
        }
        let n = builder.security_count();
        let wanted = match &sub.securities {
            Securities::All => None,
            Securities::Only(list) => {
                if list.is_empty() {
                    return Err(SubscriptionError::NoSecurities);
                }
                let mut wanted = vec![false; n];
                for &s in list {
                    *wanted
                        .get_mut(s.0 as usize)
                        .ok_or(SubscriptionError::UnknownSecurity(s))? = true;
                }
                Some(wanted)
            }
        };
        let windows = match sub.level {
            FeedLevel::L3 => Vec::new(),
            _ => vec![[Vec::new(), Vec::new()]; n],
        };
        Ok(View {
            level: sub.level,
            wanted,
            seq: 0,
            windows,
            scratch: Vec::new(),
        })
    }

    pub fn level(&self) -> FeedLevel {
        self.level
    }

    pub fn wants(&self, security: SecurityId) -> bool {
        match &self.wanted {
            None => true,
            Some(w) => w.get(security.0 as usize).copied().unwrap_or(false),
        }
    }

    /// Sequence number of the last message produced.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Takes `n` sequence numbers for messages kept elsewhere (the fanout's shared log, for
    /// an L3 view of every security: its messages are the canonical ones).
    pub(crate) fn skip(&mut self, n: u64) {
        self.seq += n;
    }

    fn push(&mut self, time: Timestamp, body: Body, out: &mut impl Extend<Message>) {
        self.seq += 1;
        out.extend(Some(Message {
            seq: self.seq,
            time,
            body,
        }));
    }

    /// Appends a resynchronisation: `SnapshotBegin`, then a snapshot of every wanted security
    /// at the builder's current state. The view's windows restart from those snapshots.
    pub fn resync(
        &mut self,
        builder: &FeedBuilder,
        time: Timestamp,
        out: &mut impl Extend<Message>,
    ) {
        let ids: Vec<SecurityId> = (0..builder.security_count() as u32)
            .map(SecurityId)
            .filter(|&s| self.wants(s))
            .collect();
        let begin = Body::SnapshotBegin {
            feed_seq: builder.feed_seq(),
            securities: ids.len() as u32,
        };
        self.push(time, begin, out);
        for sec in ids {
            let Some(snap) = builder.snapshot(sec, self.level) else {
                continue;
            };
            if let crate::message::BookImage::Levels { bids, asks } = &snap.book {
                self.windows[sec.0 as usize] = [bids.clone(), asks.clone()];
            }
            self.push(time, Body::Snapshot(Box::new(snap)), out);
        }
    }

    /// Appends this view's messages for the builder's last batch (nothing if the security is
    /// not wanted). `tops` may hold the batch's top levels, loaded once for many views.
    pub fn on_batch(&mut self, builder: &FeedBuilder, tops: &Tops, out: &mut impl Extend<Message>) {
        let batch = builder.last_batch();
        if !self.wants(batch.security) {
            return;
        }
        let Some(window) = self.level.window() else {
            for m in batch.messages {
                self.push(batch.time, m.body.clone(), out);
            }
            return;
        };
        for m in batch.messages {
            let body = match &m.body {
                Body::Add { .. } | Body::Reduce { .. } | Body::Delete { .. } => continue,
                Body::Trade(t) => Body::Trade(crate::message::Trade {
                    buy: None,
                    sell: None,
                    ..*t
                }),
                other => other.clone(),
            };
            self.push(batch.time, body, out);
        }
        self.window_updates(builder, &batch, window, tops, out);
    }

    fn window_updates(
        &mut self,
        builder: &FeedBuilder,
        batch: &Batch<'_>,
        window: usize,
        tops: &Tops,
        out: &mut impl Extend<Message>,
    ) {
        let Some(book) = builder.book(batch.security) else {
            return;
        };
        let (sec, time) = (batch.security, batch.time);
        let mut quote_changed = false;
        let mut scratch = std::mem::take(&mut self.scratch);
        for side in [Side::Buy, Side::Sell] {
            if batch.touched[side as usize].is_none_or(|r| r >= window) {
                continue;
            }
            let new: &[LevelInfo] = if tops.depth >= window {
                // The loaded window: at market (if any) + `tops.depth` limit levels.
                let t = &tops.sides[side as usize];
                let market = usize::from(t.first().is_some_and(|l| l.price == 0));
                &t[..(market + window).min(t.len())]
            } else {
                scratch.clear();
                scratch.extend(book.window(side, window));
                &scratch
            };
            let old = &mut self.windows[sec.0 as usize][side as usize];
            let seq = &mut self.seq;
            let mut emit = |level| {
                *seq += 1;
                out.extend(Some(Message {
                    seq: *seq,
                    time,
                    body: Body::Level {
                        security: sec,
                        side,
                        level,
                    },
                }));
            };
            if self.level == FeedLevel::L1 {
                // The at-market level travels as a level update, the best limit in the quote.
                let split = |w: &[LevelInfo]| {
                    let m = w.first().copied().filter(|l| l.price == 0);
                    (m, w.iter().copied().find(|l| l.price != 0))
                };
                let ((old_m, old_best), (new_m, new_best)) = (split(old), split(new));
                if old_m != new_m {
                    emit(new_m.unwrap_or(LevelInfo {
                        price: 0,
                        qty: 0,
                        orders: 0,
                    }));
                }
                quote_changed |= old_best != new_best;
            } else {
                diff(side, old, new, emit);
            }
            old.clear();
            old.extend_from_slice(new);
        }
        self.scratch = scratch;
        if quote_changed {
            let best = |w: &[LevelInfo]| w.iter().copied().find(|l| l.price != 0);
            let [bids, asks] = &self.windows[sec.0 as usize];
            let body = Body::Quote {
                security: sec,
                bid: best(bids),
                ask: best(asks),
            };
            self.push(time, body, out);
        }
    }
}

/// The best levels of the sides a batch changed, loaded once and shared by every L1/L2 view.
#[derive(Clone, Debug, Default)]
pub struct Tops {
    /// Levels loaded per side (views with a wider window load their own).
    depth: usize,
    sides: [Vec<LevelInfo>; 2],
}

impl Tops {
    /// Nothing loaded: every view reads the book itself.
    pub fn none() -> Self {
        Self::default()
    }

    /// Loads up to `depth` levels of each side the builder's last batch changed within them.
    pub fn load(&mut self, builder: &FeedBuilder, depth: usize) {
        let batch = builder.last_batch();
        self.depth = depth;
        for side in [Side::Buy, Side::Sell] {
            let v = &mut self.sides[side as usize];
            v.clear();
            if let (Some(book), true) = (
                builder.book(batch.security),
                batch.touched[side as usize].is_some_and(|r| r < depth),
            ) {
                v.extend(book.window(side, depth));
            }
        }
    }
}

/// The level updates that turn `old` into `new` (both best first): a zero-quantity level for
/// every price that left, the new level for every price that appeared or changed.
fn diff(side: Side, old: &[LevelInfo], new: &[LevelInfo], mut emit: impl FnMut(LevelInfo)) {
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(o), Some(n)) if o.price == n.price => {
                if o != n {
                    emit(*n);
                }
                i += 1;
                j += 1;
            }
            (Some(o), Some(n)) if better(side, o.price, n.price) => {
                emit(LevelInfo {
                    price: o.price,
                    qty: 0,
                    orders: 0,
                });
                i += 1;
            }
            (Some(o), None) => {
                emit(LevelInfo {
                    price: o.price,
                    qty: 0,
                    orders: 0,
                });
                i += 1;
            }
            (_, Some(n)) => {
                emit(*n);
                j += 1;
            }
            (None, None) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lv(price: i64, qty: u64) -> LevelInfo {
        LevelInfo {
            price,
            qty,
            orders: 1,
        }
    }

    #[test]
    fn diff_emits_removals_changes_and_additions() {
        let old = [lv(0, 5), lv(105, 1), lv(104, 2), lv(100, 3)];
        let new = [lv(105, 1), lv(104, 9), lv(102, 1), lv(101, 1)];
        let mut d = Vec::new();
        diff(Side::Buy, &old, &new, |l| d.push(l));
        assert_eq!(
            d,
            vec![
                LevelInfo {
                    price: 0,
                    qty: 0,
                    orders: 0
                },
                lv(104, 9),
                lv(102, 1),
                lv(101, 1),
                LevelInfo {
                    price: 100,
                    qty: 0,
                    orders: 0
                },
            ]
        );
        diff(Side::Sell, &new, &new, |l| {
            panic!("no change expected: {l:?}")
        });
    }
}
