//! [`FeedBuilder`]: turns each completed command's engine events into the canonical feed (L3
//! order messages, trades, phases, auctions, reference prices) while keeping an L3 mirror of
//! every book, and answers snapshot requests from the mirror.
//!
//! Every batch is checked against the mirror as it is applied (an execution must hit the order
//! first in line, at its price; `Totals` must equal the mirror's totals; ...). A batch that does
//! not fit is refused with a [`FeedError`] and changes nothing: the mirror is rolled back.

use matching::image::{RestingKind, RestingOrder};
use matching::{
    Aggressor, BrokerId, CancelReason, Command, Event, OrderId, Phase, Price, Qty, SecurityId,
    SecurityTable, Side, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::book::{BookError, HeadError, L3Book, OwnedOrder, Rank};
use crate::message::{
    Body, BookImage, DeleteReason, FeedLevel, LastTrade, Message, Snapshot, Trade, TradeId, Uncross,
};

/// One command's events for one security, as the engine produced them. A PHASE command comes
/// once per security (with the same `seq`), with that security's events only.
#[derive(Clone, Copy, Debug)]
pub struct Completed<'a> {
    /// The command's global sequence number: strictly increasing per security.
    pub seq: u64,
    /// Exchange time of the command.
    pub time: Timestamp,
    pub security: SecurityId,
    pub command: &'a Command,
    pub events: &'a [Event],
}

/// Why a batch was refused (nothing was changed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    #[error("security {0:?} is not listed")]
    UnknownSecurity(SecurityId),
    #[error("command {seq} for security {security:?} comes after command {last}")]
    Stale {
        security: SecurityId,
        seq: u64,
        last: u64,
    },
    #[error("command {seq} is for security {batch:?} but an event names {event:?}")]
    WrongSecurity {
        seq: u64,
        batch: SecurityId,
        event: SecurityId,
    },
    #[error("command {seq}: {source}")]
    Book { seq: u64, source: BookError },
    #[error("command {seq}: execution of {id:?} out of priority (first in line: {head:?})")]
    OutOfPriority {
        seq: u64,
        id: OrderId,
        head: Option<OrderId>,
    },
    #[error("command {seq}: fill of {id:?} at {fill} does not fit its limit {limit}")]
    FillPrice {
        seq: u64,
        id: OrderId,
        fill: Price,
        limit: Price,
    },
    #[error(
        "command {seq}: amend of {id:?} keeps priority but changes its price or adds quantity"
    )]
    BadAmend { seq: u64, id: OrderId },
    #[error("command {seq}: the engine's totals ({engine:?}) differ from the feed's ({mirror:?})")]
    Totals {
        seq: u64,
        engine: (Qty, Qty),
        mirror: (Qty, Qty),
    },
    #[error("command {seq}: auction volume {reported} differs from its trades' {traded}")]
    AuctionVolume {
        seq: u64,
        reported: Qty,
        traded: Qty,
    },
    #[error("command {seq}: more fills than trade ids can number")]
    TooManyFills { seq: u64 },
}

/// Computes the indicative uncross of a book in a call phase: the book and the auction's anchor
/// price (last trade since the last close, else the reference price). Nothing is plugged in by
/// default (no `Indicative` messages); [`engine_indicative`] is the engine's own rule.
pub type IndicativeFn = fn(&L3Book, Price) -> Option<Uncross>;

/// The engine's auction rule ([`matching::auction::clearing_price`]) applied to the mirror
/// book: the same answer as `Engine::indicative` for the same book (tested after every command
/// of random trading days in `tests/contract.rs`).
pub fn engine_indicative(book: &L3Book, anchor: Price) -> Option<Uncross> {
    let (bids, asks) = book.depth(usize::MAX);
    let at_market = |side| book.at_market(side).map_or(0, |l| l.qty);
    matching::auction::clearing_price(
        &bids,
        &asks,
        at_market(Side::Buy),
        at_market(Side::Sell),
        anchor,
    )
    .map(|(price, volume)| Uncross { price, volume })
}

/// The last applied batch: its canonical messages and where its books changed.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    pub security: SecurityId,
    pub time: Timestamp,
    pub messages: &'a [Message],
    /// Per side (buy, sell): the best (lowest) rank of any level the batch changed.
    pub touched: [Option<Rank>; 2],
}

/// A security's feed state besides its book: what a checkpoint carries with the book, and what
/// a refused batch rolls back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityStatus {
    pub phase: Phase,
    pub reference: Price,
    pub last_trade: Option<LastTrade>,
    /// A trade happened since the last CLOSED (the auction anchor is then the last trade).
    pub traded_since_close: bool,
    pub indicative: Option<Uncross>,
    /// Sequence number of the last command applied (`None`: none yet).
    pub last_seq: Option<u64>,
}

#[derive(Clone, Debug)]
struct SecurityState {
    book: L3Book,
    status: SecurityStatus,
}

/// One security's whole feed state ([`FeedBuilder::state`]): its status and its mirror book
/// with private ids and owners, each side in priority order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityMirror {
    pub status: SecurityStatus,
    pub bids: Vec<OwnedOrder>,
    pub asks: Vec<OwnedOrder>,
}

impl SecurityMirror {
    /// The engine's book this state mirrors: the same orders, owners and priority, phase,
    /// reference and auction anchor (the last trade since the last CLOSED). At-market orders
    /// rest only in their own call phase, so their kind is the phase's.
    pub fn engine_image(&self, security: SecurityId) -> matching::image::BookImage {
        let at_market = match self.status.phase {
            Phase::Atc => RestingKind::Atc,
            _ => RestingKind::Ato,
        };
        let side = |orders: &[OwnedOrder]| {
            orders
                .iter()
                .map(|o| RestingOrder {
                    id: o.id,
                    broker: o.owner,
                    qty: o.qty,
                    kind: if o.price == 0 {
                        at_market
                    } else {
                        RestingKind::Limit
                    },
                    price: o.price,
                })
                .collect()
        };
        matching::image::BookImage {
            security,
            phase: self.status.phase,
            reference: self.status.reference,
            last_trade: self
                .status
                .last_trade
                .filter(|_| self.status.traded_since_close)
                .map(|t| t.price),
            bids: side(&self.bids),
            asks: side(&self.asks),
        }
    }
}

/// A builder's whole state: what the manager checkpoints so a restarted feed replays only the
/// journal after it. Ids are private: it never goes to a subscriber.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuilderState {
    /// Canonical sequence number of the last message emitted.
    pub feed_seq: u64,
    pub clock: Timestamp,
    /// Indexed by security id.
    pub securities: Vec<SecurityMirror>,
}

/// Why [`FeedBuilder::from_state`] refused a state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("the state has {state} securities, the listing {listing}")]
    Listing { state: usize, listing: usize },
    #[error("security {security:?}: {source}")]
    Book {
        security: SecurityId,
        source: BookError,
    },
}

/// The canonical feed and its L3 mirror books.
#[derive(Clone, Debug)]
pub struct FeedBuilder {
    securities: Vec<SecurityState>,
    /// Canonical sequence number of the last message emitted (0: none yet).
    seq: u64,
    out: Vec<Message>,
    batch_security: SecurityId,
    batch_time: Timestamp,
    touched: [Option<Rank>; 2],
    indicative: Option<IndicativeFn>,
    /// Exchange time of the last accepted batch.
    clock: Timestamp,
}

fn touch(touched: &mut [Option<Rank>; 2], side: Side, rank: Rank) {
    let t = &mut touched[side as usize];
    *t = Some(t.map_or(rank, |r| r.min(rank)));
}

impl FeedBuilder {
    /// A builder for every security of the listing: empty books, CONTINUOUS, listed reference.
    pub fn new(securities: &SecurityTable) -> Self {
        FeedBuilder {
            securities: securities
                .iter()
                .map(|(_, _, reference)| SecurityState {
                    book: L3Book::new(),
                    status: SecurityStatus {
                        phase: Phase::Continuous,
                        reference,
                        last_trade: None,
                        traded_since_close: false,
                        indicative: None,
                        last_seq: None,
                    },
                })
                .collect(),
            seq: 0,
            out: Vec::new(),
            batch_security: SecurityId(0),
            batch_time: 0,
            touched: [None; 2],
            indicative: None,
            clock: 0,
        }
    }

    /// Plugs in the indicative-uncross computation (see [`IndicativeFn`]).
    pub fn with_indicative(mut self, f: IndicativeFn) -> Self {
        self.indicative = Some(f);
        self
    }

    /// Number of listed securities (ids `0..n`).
    pub fn security_count(&self) -> usize {
        self.securities.len()
    }

    /// Canonical sequence number of the last message emitted.
    pub fn feed_seq(&self) -> u64 {
        self.seq
    }

    /// Exchange time of the last accepted batch (0 before the first).
    pub fn clock(&self) -> Timestamp {
        self.clock
    }

    /// The mirror of `security`'s book.
    pub fn book(&self, security: SecurityId) -> Option<&L3Book> {
        self.securities.get(security.0 as usize).map(|s| &s.book)
    }

    /// Sequence number of the last command applied to `security` (`None`: none yet).
    pub fn last_seq(&self, security: SecurityId) -> Option<u64> {
        self.securities.get(security.0 as usize)?.status.last_seq
    }

    pub fn phase(&self, security: SecurityId) -> Option<Phase> {
        self.securities
            .get(security.0 as usize)
            .map(|s| s.status.phase)
    }

    /// The batch [`FeedBuilder::apply`] last accepted (empty after a refused one).
    pub fn last_batch(&self) -> Batch<'_> {
        Batch {
            security: self.batch_security,
            time: self.batch_time,
            messages: &self.out,
            touched: self.touched,
        }
    }

    /// A snapshot of `security` at the current feed sequence number, at `level` of detail.
    pub fn snapshot(&self, security: SecurityId, level: FeedLevel) -> Option<Snapshot> {
        let s = self.securities.get(security.0 as usize)?;
        let book = match level.window() {
            Some(n) => BookImage::Levels {
                bids: s.book.window(Side::Buy, n).collect(),
                asks: s.book.window(Side::Sell, n).collect(),
            },
            None => BookImage::Orders {
                bids: s.book.orders(Side::Buy).collect(),
                asks: s.book.orders(Side::Sell).collect(),
            },
        };
        Some(Snapshot {
            security,
            phase: s.status.phase,
            reference: s.status.reference,
            last_trade: s.status.last_trade,
            indicative: s.status.indicative,
            book,
        })
    }

    /// The whole state, for a checkpoint (a copy of every resting order: O(book)).
    pub fn state(&self) -> BuilderState {
        BuilderState {
            feed_seq: self.seq,
            clock: self.clock,
            securities: self
                .securities
                .iter()
                .map(|s| SecurityMirror {
                    status: s.status,
                    bids: s.book.owned_orders(Side::Buy).collect(),
                    asks: s.book.owned_orders(Side::Sell).collect(),
                })
                .collect(),
        }
    }

    /// A builder in `state` (from [`FeedBuilder::state`]) for the listing `securities`; plug
    /// the indicative rule in again with [`FeedBuilder::with_indicative`].
    pub fn from_state(
        securities: &SecurityTable,
        state: &BuilderState,
    ) -> Result<Self, StateError> {
        if state.securities.len() != securities.len() {
            return Err(StateError::Listing {
                state: state.securities.len(),
                listing: securities.len(),
            });
        }
        let mut b = FeedBuilder::new(securities);
        b.seq = state.feed_seq;
        b.clock = state.clock;
        for (i, (st, m)) in b.securities.iter_mut().zip(&state.securities).enumerate() {
            let fail = |source| StateError::Book {
                security: SecurityId(i as u32),
                source,
            };
            for (side, orders) in [(Side::Buy, &m.bids), (Side::Sell, &m.asks)] {
                for o in orders {
                    st.book
                        .add_public(o.id, o.public, o.owner, side, o.price, o.qty)
                        .map_err(fail)?;
                }
            }
            st.status = m.status;
        }
        Ok(b)
    }

    /// Applies one command's events for one security; on success [`FeedBuilder::last_batch`]
    /// holds the messages it produced. On error nothing changed.
    pub fn apply(&mut self, c: Completed<'_>) -> Result<Batch<'_>, FeedError> {
        self.out.clear();
        self.touched = [None; 2];
        self.batch_security = c.security;
        self.batch_time = c.time;
        let indicative = self.indicative;
        let seq_before = self.seq;
        let Some(st) = self.securities.get_mut(c.security.0 as usize) else {
            return Err(FeedError::UnknownSecurity(c.security));
        };
        if let Some(last) = st.status.last_seq.filter(|&l| c.seq <= l) {
            return Err(FeedError::Stale {
                security: c.security,
                seq: c.seq,
                last,
            });
        }
        let saved = st.status;
        st.book.begin();
        let mut emit = Emitter {
            seq: &mut self.seq,
            time: c.time,
            out: &mut self.out,
        };
        match apply_events(st, &c, &mut emit, &mut self.touched, indicative) {
            Ok(()) => {
                st.book.commit();
                st.status.last_seq = Some(c.seq);
                self.clock = self.clock.max(c.time);
                Ok(self.last_batch())
            }
            Err(e) => {
                st.book.rollback();
                st.status = saved;
                self.seq = seq_before;
                self.out.clear();
                self.touched = [None; 2];
                Err(e)
            }
        }
    }
}

/// Numbers and collects the canonical messages of a batch.
struct Emitter<'a> {
    seq: &'a mut u64,
    time: Timestamp,
    out: &'a mut Vec<Message>,
}

impl Emitter<'_> {
    fn push(&mut self, body: Body) {
        *self.seq += 1;
        self.out.push(Message {
            seq: *self.seq,
            time: self.time,
            body,
        });
    }
}

fn apply_events(
    st: &mut SecurityState,
    c: &Completed<'_>,
    emit: &mut Emitter<'_>,
    touched: &mut [Option<Rank>; 2],
    indicative: Option<IndicativeFn>,
) -> Result<(), FeedError> {
    let (seq, sec) = (c.seq, c.security);
    let book_err = |source| FeedError::Book { seq, source };
    let same = |event: SecurityId| {
        if event == sec {
            Ok(())
        } else {
            Err(FeedError::WrongSecurity {
                seq,
                batch: sec,
                event,
            })
        }
    };
    let mut phase_changed = false;
    if let Command::Phase(p) = *c.command {
        if p != st.status.phase {
            st.status.phase = p;
            phase_changed = true;
            emit.push(Body::Phase {
                security: sec,
                phase: p,
            });
        }
    }
    let mut fills: u32 = 0;
    let mut auction_traded: Qty = 0;
    // Orders an amend took out of their level in this batch: they come back under the same
    // public id.
    let mut amended: Vec<(OrderId, OrderId)> = Vec::new();
    for ev in c.events {
        match *ev {
            Event::Accepted { .. } | Event::Rejected { .. } => {}
            Event::Fill(f) => {
                same(f.security)?;
                let id = TradeId { seq, index: fills };
                fills = fills
                    .checked_add(1)
                    .ok_or(FeedError::TooManyFills { seq })?;
                let mut trade = Trade {
                    security: sec,
                    id,
                    price: f.price,
                    qty: f.qty,
                    aggressor: f.aggressor,
                    buy: None,
                    sell: None,
                };
                for (side, oid, _) in f.passive() {
                    let o = st
                        .book
                        .execute_head(side, oid, f.qty)
                        .map_err(|e| match e {
                            HeadError::NotFirst(head) => {
                                FeedError::OutOfPriority { seq, id: oid, head }
                            }
                            HeadError::Book(source) => FeedError::Book { seq, source },
                        })?;
                    let fits = o.price == 0
                        || match (f.aggressor, side) {
                            (Aggressor::Auction, Side::Buy) => o.price >= f.price,
                            (Aggressor::Auction, Side::Sell) => o.price <= f.price,
                            _ => o.price == f.price,
                        };
                    if !fits {
                        // The book is rolled back with the rest of the batch.
                        return Err(FeedError::FillPrice {
                            seq,
                            id: oid,
                            fill: f.price,
                            limit: o.price,
                        });
                    }
                    touch(touched, side, 0);
                    let public = o.public;
                    match side {
                        Side::Buy => trade.buy = Some(public),
                        Side::Sell => trade.sell = Some(public),
                    }
                }
                if f.aggressor == Aggressor::Auction {
                    auction_traded = auction_traded.wrapping_add(f.qty);
                }
                st.status.last_trade = Some(LastTrade {
                    id,
                    price: f.price,
                    qty: f.qty,
                    time: c.time,
                });
                st.status.traded_since_close = true;
                emit.push(Body::Trade(trade));
            }
            Event::Rested {
                id,
                security,
                side,
                price,
                qty,
            } => {
                same(security)?;
                // Public id: kept across a priority-losing amend, else the sequence number of
                // the command that rested it (never the broker-chosen id).
                let public = amended
                    .iter()
                    .find(|(a, _)| *a == id)
                    .map_or(OrderId(seq), |&(_, p)| p);
                // Only a NEW or an AMEND rests an order, and only its broker's.
                let owner = c.command.broker().unwrap_or(BrokerId(0));
                let rank = st
                    .book
                    .add_public(id, public, owner, side, price, qty)
                    .map_err(book_err)?;
                touch(touched, side, rank);
                emit.push(Body::Add {
                    security,
                    id: public,
                    side,
                    price,
                    qty,
                });
            }
            Event::Amended {
                id,
                security,
                price,
                qty,
                priority_kept,
            } => {
                same(security)?;
                let o = st
                    .book
                    .order(id)
                    .ok_or(book_err(BookError::UnknownOrder(id)))?;
                if !priority_kept {
                    let rank = st.book.delete(id).map_err(book_err)?;
                    touch(touched, o.side, rank);
                    amended.push((id, o.public));
                    emit.push(Body::Delete {
                        security,
                        id: o.public,
                        reason: DeleteReason::Amended,
                    });
                } else if price != o.price || qty > o.qty || qty == 0 {
                    return Err(FeedError::BadAmend { seq, id });
                } else if qty < o.qty {
                    let rank = st.book.reduce(id, qty).map_err(book_err)?;
                    touch(touched, o.side, rank);
                    emit.push(Body::Reduce {
                        security,
                        id: o.public,
                        qty,
                    });
                }
            }
            Event::Cancelled { id, qty, reason } => {
                // An id not resting here is an incoming remainder that never rested.
                let Some(o) = st.book.order(id) else { continue };
                if qty == 0 {
                    continue;
                }
                if qty > o.qty {
                    return Err(book_err(BookError::BadQuantity {
                        id,
                        qty,
                        open: o.qty,
                    }));
                }
                if qty == o.qty {
                    let rank = st.book.delete(id).map_err(book_err)?;
                    touch(touched, o.side, rank);
                    let reason = match reason {
                        CancelReason::Requested => DeleteReason::Cancelled,
                        CancelReason::Unfilled => DeleteReason::Unfilled,
                        CancelReason::Expired => DeleteReason::Expired,
                    };
                    emit.push(Body::Delete {
                        security: sec,
                        id: o.public,
                        reason,
                    });
                } else {
                    // A partial removal: reported as a reduction in place.
                    let left = o.qty - qty;
                    let rank = st.book.reduce(id, left).map_err(book_err)?;
                    touch(touched, o.side, rank);
                    emit.push(Body::Reduce {
                        security: sec,
                        id: o.public,
                        qty: left,
                    });
                }
            }
            Event::Auction {
                security,
                price,
                volume,
            } => {
                same(security)?;
                if volume != auction_traded {
                    return Err(FeedError::AuctionVolume {
                        seq,
                        reported: volume,
                        traded: auction_traded,
                    });
                }
                emit.push(Body::Auction {
                    security,
                    price,
                    volume,
                });
            }
            Event::Reference { security, price } => {
                same(security)?;
                st.status.reference = price;
                emit.push(Body::Reference { security, price });
            }
            Event::Totals {
                security,
                bid_total,
                ask_total,
            } => {
                same(security)?;
                let mirror = st.book.totals();
                if mirror != (bid_total, ask_total) {
                    return Err(FeedError::Totals {
                        seq,
                        engine: (bid_total, ask_total),
                        mirror,
                    });
                }
            }
        }
    }
    if phase_changed && st.status.phase == Phase::Closed {
        st.status.traded_since_close = false;
    }
    let changed = touched.iter().any(Option::is_some);
    let now = match indicative {
        Some(f) if st.status.phase.is_call() => {
            if changed || phase_changed {
                let anchor = match st.status.last_trade {
                    Some(t) if st.status.traded_since_close => t.price,
                    _ => st.status.reference,
                };
                f(&st.book, anchor)
            } else {
                st.status.indicative
            }
        }
        _ => None,
    };
    if now != st.status.indicative {
        st.status.indicative = now;
        emit.push(Body::Indicative {
            security: sec,
            uncross: now,
        });
    }
    Ok(())
}
