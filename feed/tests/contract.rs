//! The event contract of matching/src/types.rs, hand-played: amends that keep or lose priority,
//! call auctions (both sides resting, AUCTION aggressor), unfilled ATO orders, the close, the
//! indicative hook, and batches that contradict the mirror (refused, nothing changed). These do
//! not need the engine's trading-day semantics, which the random-stream tests will reach once
//! the engine implements AMEND and PHASE.

use feed::{
    Applied, Body, Completed, DeleteReason, Feed, FeedClient, FeedError, FeedLevel, L3Book,
    Message, QueuePolicy, Securities, SubscriberId, Subscription, Uncross,
};
use matching::{
    Aggressor, AmendOrder, BrokerId, CancelReason, Command, Event, Fill, NewOrder, OrderId,
    OrderType, Phase, SecurityId, SecurityTable, Side,
};

const S: SecurityId = SecurityId(0);

struct Harness {
    feed: Feed,
    subs: Vec<(SubscriberId, FeedClient)>,
    seq: u64,
    log: Vec<Message>,
}

fn new_cmd() -> Command {
    Command::New(NewOrder {
        id: OrderId(0),
        broker: BrokerId(0),
        security: S,
        side: Side::Buy,
        kind: OrderType::Limit,
        price: 1,
        qty: 1,
    })
}

fn amend_cmd() -> Command {
    Command::Amend(AmendOrder {
        id: OrderId(0),
        broker: BrokerId(0),
        security: S,
        price: 1,
        qty: 1,
    })
}

fn rested(id: u64, side: Side, price: i64, qty: u64) -> Event {
    Event::Rested {
        id: OrderId(id),
        security: S,
        side,
        price,
        qty,
    }
}

fn fill(buy: u64, sell: u64, price: i64, qty: u64, aggressor: Aggressor) -> Event {
    Event::Fill(Fill {
        security: S,
        price,
        qty,
        buy: OrderId(buy),
        sell: OrderId(sell),
        buy_broker: BrokerId(1),
        sell_broker: BrokerId(2),
        aggressor,
    })
}

fn totals(bid: u64, ask: u64) -> Event {
    Event::Totals {
        security: S,
        bid_total: bid,
        ask_total: ask,
    }
}

/// Indicative hook for the tests: the best bid's price (at least the anchor) and the quantity
/// resting at market.
fn toy_indicative(book: &L3Book, anchor: i64) -> Option<Uncross> {
    let best = book.levels(Side::Buy).next()?;
    let at_market = book.at_market(Side::Buy).map_or(0, |l| l.qty);
    Some(Uncross {
        price: best.price.max(anchor),
        volume: at_market,
    })
}

impl Harness {
    fn new() -> Self {
        let mut table = SecurityTable::new();
        table.add("AAA", 90).unwrap();
        table.add("BBB", 50).unwrap();
        let mut feed = Feed::new(&table, QueuePolicy::default()).with_indicative(toy_indicative);
        let levels = [FeedLevel::L3, FeedLevel::L2 { levels: 10 }, FeedLevel::L1];
        let subs = levels
            .into_iter()
            .map(|level| {
                let sub = Subscription {
                    level,
                    securities: Securities::All,
                };
                (feed.subscribe(&sub).unwrap(), FeedClient::new())
            })
            .collect();
        let mut h = Harness {
            feed,
            subs,
            seq: 0,
            log: Vec::new(),
        };
        h.deliver();
        h
    }

    /// Delivers queued messages; the L3 subscriber's messages are logged.
    fn deliver(&mut self) {
        for (i, (id, client)) in self.subs.iter_mut().enumerate() {
            let mut msgs = Vec::new();
            self.feed.poll(*id, usize::MAX, &mut msgs).unwrap();
            for m in &msgs {
                assert_eq!(client.apply(m), Applied::Applied, "{m:?}");
            }
            if i == 0 {
                self.log.extend(msgs);
            }
        }
    }

    fn apply(&mut self, cmd: &Command, events: &[Event]) -> Result<Vec<Body>, FeedError> {
        self.seq += 1;
        let before = self.log.len();
        self.feed.apply(Completed {
            seq: self.seq,
            time: self.seq as i64 * 1_000,
            security: S,
            command: cmd,
            events,
        })?;
        self.deliver();
        self.check();
        Ok(self.log[before..].iter().map(|m| m.body.clone()).collect())
    }

    /// Every client's book equals the mirror.
    fn check(&self) {
        let mirror = self.feed.builder().book(S).unwrap();
        for (i, (_, client)) in self.subs.iter().enumerate() {
            let n = [usize::MAX, 10, 1][i];
            assert_eq!(
                client.depth(S, usize::MAX),
                mirror.depth(n),
                "subscriber {i}"
            );
        }
    }

    fn l3(&self) -> &FeedClient {
        &self.subs[0].1
    }
}

fn ids(book: &L3Book, side: Side) -> Vec<u64> {
    book.orders(side).map(|o| o.id.0).collect()
}

#[test]
fn amend_keeping_priority_reduces_in_place() {
    let mut h = Harness::new();
    let ev = [rested(1, Side::Buy, 100, 500), totals(500, 0)];
    h.apply(&new_cmd(), &ev).unwrap();
    let ev = [rested(2, Side::Buy, 100, 300), totals(800, 0)];
    h.apply(&new_cmd(), &ev).unwrap();
    let amended = Event::Amended {
        id: OrderId(1),
        security: S,
        price: 100,
        qty: 200,
        priority_kept: true,
    };
    let out = h.apply(&amend_cmd(), &[amended, totals(500, 0)]).unwrap();
    assert_eq!(
        out,
        vec![Body::Reduce {
            security: S,
            id: OrderId(1),
            qty: 200
        }]
    );
    assert_eq!(
        ids(h.feed.builder().book(S).unwrap(), Side::Buy),
        vec![1, 2]
    );
    // Same price and quantity: nothing changes, nothing is sent.
    let same = Event::Amended {
        id: OrderId(1),
        security: S,
        price: 100,
        qty: 200,
        priority_kept: true,
    };
    assert_eq!(
        h.apply(&amend_cmd(), &[same, totals(500, 0)]).unwrap(),
        vec![]
    );
}

#[test]
fn amend_losing_priority_deletes_trades_and_re_adds() {
    let mut h = Harness::new();
    h.apply(
        &new_cmd(),
        &[rested(1, Side::Buy, 100, 500), totals(500, 0)],
    )
    .unwrap();
    h.apply(
        &new_cmd(),
        &[rested(2, Side::Buy, 100, 300), totals(800, 0)],
    )
    .unwrap();
    h.apply(
        &new_cmd(),
        &[rested(3, Side::Sell, 101, 100), totals(800, 100)],
    )
    .unwrap();
    let ev = [
        Event::Amended {
            id: OrderId(1),
            security: S,
            price: 101,
            qty: 400,
            priority_kept: false,
        },
        fill(1, 3, 101, 100, Aggressor::Buy),
        rested(1, Side::Buy, 101, 300),
        totals(600, 0),
    ];
    let out = h.apply(&amend_cmd(), &ev).unwrap();
    assert!(matches!(
        out[0],
        Body::Delete {
            id: OrderId(1),
            reason: DeleteReason::Amended,
            ..
        }
    ));
    let Body::Trade(t) = &out[1] else {
        panic!("{out:?}")
    };
    // Only the resting order's id is public; the amended (aggressing) order's is not.
    assert_eq!(
        (t.buy, t.sell, t.price, t.qty),
        (None, Some(OrderId(3)), 101, 100)
    );
    assert_eq!(t.aggressor, Aggressor::Buy);
    assert!(matches!(
        out[2],
        Body::Add {
            id: OrderId(1),
            price: 101,
            qty: 300,
            ..
        }
    ));
    let book = h.feed.builder().book(S).unwrap();
    assert_eq!(book.depth(5).0, vec![(101, 300), (100, 300)]);
    // Back of a new level: an amend back to 100 queues it behind order 2.
    let ev = [
        Event::Amended {
            id: OrderId(1),
            security: S,
            price: 100,
            qty: 300,
            priority_kept: false,
        },
        rested(1, Side::Buy, 100, 300),
        totals(600, 0),
    ];
    h.apply(&amend_cmd(), &ev).unwrap();
    assert_eq!(
        ids(h.feed.builder().book(S).unwrap(), Side::Buy),
        vec![2, 1]
    );
    assert_eq!(
        ids(
            match &h.l3().security(S).unwrap().book {
                feed::ClientBook::Orders(b) => b,
                _ => unreachable!(),
            },
            Side::Buy
        ),
        vec![2, 1]
    );
}

#[test]
fn call_auction_then_close() {
    let mut h = Harness::new();
    let ato = Command::Phase(Phase::Ato);
    let out = h.apply(&ato, &[]).unwrap();
    assert_eq!(
        out[0],
        Body::Phase {
            security: S,
            phase: Phase::Ato
        }
    );
    // Orders at market rest ahead of every limit level and count in the totals.
    h.apply(&new_cmd(), &[rested(10, Side::Buy, 0, 500), totals(500, 0)])
        .unwrap();
    let out = h
        .apply(
            &new_cmd(),
            &[rested(11, Side::Buy, 100, 200), totals(700, 0)],
        )
        .unwrap();
    // The indicative hook runs after each change in a call phase.
    assert!(out.contains(&Body::Indicative {
        security: S,
        uncross: Some(Uncross {
            price: 100,
            volume: 500
        })
    }));
    h.apply(
        &new_cmd(),
        &[rested(12, Side::Sell, 99, 600), totals(700, 600)],
    )
    .unwrap();
    h.apply(
        &new_cmd(),
        &[rested(13, Side::Buy, 0, 50), totals(750, 600)],
    )
    .unwrap();
    // At market: ahead of every level, not at a price (depth leaves it out, totals count it).
    assert_eq!(h.l3().depth(S, 9), (vec![(100, 200)], vec![(99, 600)]));
    let at_market = h.l3().security(S).unwrap().book.at_market(Side::Buy);
    assert_eq!(at_market.map(|l| (l.qty, l.orders)), Some((550, 2)));
    let l1 = &h.subs[2].1;
    assert_eq!(l1.depth(S, 9), (vec![(100, 200)], vec![(99, 600)]));
    let l1_market = l1.security(S).unwrap().book.at_market(Side::Buy);
    assert_eq!(l1_market.map(|l| l.qty), Some(550));
    assert_eq!(h.l3().security(S).unwrap().phase, Phase::Ato);
    // Leaving ATO: the uncross, in priority order (at market first), both sides resting.
    let open = Command::Phase(Phase::Continuous);
    let ev = [
        fill(10, 12, 100, 500, Aggressor::Auction),
        fill(13, 12, 100, 50, Aggressor::Auction),
        fill(11, 12, 100, 50, Aggressor::Auction),
        Event::Auction {
            security: S,
            price: 100,
            volume: 600,
        },
        totals(150, 0),
    ];
    let out = h.apply(&open, &ev).unwrap();
    assert_eq!(
        out[0],
        Body::Phase {
            security: S,
            phase: Phase::Continuous
        }
    );
    let trades: Vec<_> = out
        .iter()
        .filter_map(|b| match b {
            Body::Trade(t) => Some((t.buy, t.sell, t.qty, t.aggressor)),
            _ => None,
        })
        .collect();
    // Public ids: the sequence numbers of the commands that rested orders 10 (seq 2), 11
    // (seq 3), 12 (seq 4) and 13 (seq 5); the broker-chosen ids never appear.
    let auction = Aggressor::Auction;
    assert_eq!(
        trades,
        vec![
            (Some(OrderId(2)), Some(OrderId(4)), 500, auction),
            (Some(OrderId(5)), Some(OrderId(4)), 50, auction),
            (Some(OrderId(3)), Some(OrderId(4)), 50, auction),
        ]
    );
    assert!(out.contains(&Body::Auction {
        security: S,
        price: 100,
        volume: 600
    }));
    // Leaving the call phase clears the indicative price.
    assert_eq!(
        out.last(),
        Some(&Body::Indicative {
            security: S,
            uncross: None
        })
    );
    let view = h.l3().security(S).unwrap();
    assert_eq!(
        view.auction,
        Some(Uncross {
            price: 100,
            volume: 600
        })
    );
    assert_eq!(view.last_trade.map(|t| (t.price, t.qty)), Some((100, 50)));
    assert_eq!(h.l3().depth(S, 9), (vec![(100, 150)], vec![]));
    // Closing: the remaining order expires; the reference becomes the closing price.
    let ev = [
        Event::Cancelled {
            id: OrderId(11),
            qty: 150,
            reason: CancelReason::Expired,
        },
        Event::Reference {
            security: S,
            price: 100,
        },
        totals(0, 0),
    ];
    let out = h.apply(&Command::Phase(Phase::Closed), &ev).unwrap();
    assert!(out.contains(&Body::Delete {
        security: S,
        id: OrderId(3),
        reason: DeleteReason::Expired
    }));
    let snap = h.feed.builder().snapshot(S, FeedLevel::L3).unwrap();
    assert_eq!((snap.reference, snap.phase), (100, Phase::Closed));
    assert_eq!(h.l3().security(S).unwrap().reference, 100);
    // A phase naming the current phase says nothing.
    assert_eq!(
        h.apply(&Command::Phase(Phase::Closed), &[]).unwrap(),
        vec![]
    );
}

#[test]
fn unfilled_ato_orders_are_deleted_and_ioc_remainders_ignored() {
    let mut h = Harness::new();
    h.apply(&Command::Phase(Phase::Ato), &[]).unwrap();
    h.apply(&new_cmd(), &[rested(1, Side::Sell, 0, 300), totals(0, 300)])
        .unwrap();
    let ev = [
        Event::Cancelled {
            id: OrderId(1),
            qty: 300,
            reason: CancelReason::Unfilled,
        },
        totals(0, 0),
    ];
    let out = h.apply(&Command::Phase(Phase::Continuous), &ev).unwrap();
    // Order 1 rested by command 2: published as 2.
    assert!(out.contains(&Body::Delete {
        security: S,
        id: OrderId(2),
        reason: DeleteReason::Unfilled
    }));
    // An IOC remainder that never rested: nothing on the feed.
    let ev = [
        Event::Accepted { id: OrderId(2) },
        Event::Cancelled {
            id: OrderId(2),
            qty: 100,
            reason: CancelReason::Unfilled,
        },
        totals(0, 0),
    ];
    assert_eq!(h.apply(&new_cmd(), &ev).unwrap(), vec![]);
}

#[test]
fn contradicting_batches_are_refused_and_change_nothing() {
    let mut h = Harness::new();
    h.apply(
        &new_cmd(),
        &[rested(1, Side::Buy, 100, 500), totals(500, 0)],
    )
    .unwrap();
    h.apply(
        &new_cmd(),
        &[rested(2, Side::Buy, 100, 300), totals(800, 0)],
    )
    .unwrap();
    h.apply(
        &new_cmd(),
        &[rested(3, Side::Buy, 101, 100), totals(900, 0)],
    )
    .unwrap();
    let snap = h.feed.builder().snapshot(S, FeedLevel::L3).unwrap();
    let feed_seq = h.feed.builder().feed_seq();
    let bad: Vec<(Vec<Event>, &str)> = vec![
        // After order 3, order 1 is first in line, not order 2; refused after valid changes.
        (
            vec![
                rested(4, Side::Sell, 200, 100),
                fill(3, 9, 101, 100, Aggressor::Sell),
                fill(2, 9, 100, 100, Aggressor::Sell),
                totals(700, 100),
            ],
            "priority",
        ),
        (
            vec![rested(4, Side::Sell, 200, 100), totals(900, 0)],
            "totals",
        ),
        (
            vec![fill(3, 9, 100, 100, Aggressor::Sell), totals(800, 0)],
            "fill price",
        ),
        (
            vec![fill(3, 9, 101, 200, Aggressor::Sell), totals(700, 0)],
            "too much",
        ),
        (
            vec![rested(2, Side::Sell, 200, 100), totals(900, 100)],
            "duplicate",
        ),
        (
            vec![
                Event::Cancelled {
                    id: OrderId(2),
                    qty: 301,
                    reason: CancelReason::Requested,
                },
                totals(599, 0),
            ],
            "cancel too much",
        ),
        (
            vec![
                Event::Amended {
                    id: OrderId(2),
                    security: S,
                    price: 100,
                    qty: 400,
                    priority_kept: true,
                },
                totals(1000, 0),
            ],
            "amend adds while keeping priority",
        ),
        (
            vec![
                Event::Amended {
                    id: OrderId(77),
                    security: S,
                    price: 100,
                    qty: 400,
                    priority_kept: false,
                },
                totals(900, 0),
            ],
            "amend unknown",
        ),
        (
            vec![
                rested(4, Side::Sell, 101, 100),
                fill(3, 4, 101, 100, Aggressor::Auction),
                Event::Auction {
                    security: S,
                    price: 101,
                    volume: 200,
                },
                totals(800, 0),
            ],
            "auction volume",
        ),
        (
            vec![Event::Rested {
                id: OrderId(5),
                security: SecurityId(1),
                side: Side::Buy,
                price: 100,
                qty: 1,
            }],
            "other security",
        ),
        (vec![rested(6, Side::Buy, -5, 100)], "negative price"),
        (vec![rested(6, Side::Buy, 5, 0)], "zero quantity"),
    ];
    for (events, what) in bad {
        let err = h.apply(&new_cmd(), &events).expect_err(what);
        let expected = match what {
            "priority" => matches!(err, FeedError::OutOfPriority { id: OrderId(2), .. }),
            "totals" => matches!(err, FeedError::Totals { .. }),
            "fill price" => matches!(err, FeedError::FillPrice { .. }),
            "amend adds while keeping priority" => matches!(err, FeedError::BadAmend { .. }),
            "auction volume" => matches!(err, FeedError::AuctionVolume { .. }),
            "other security" => matches!(err, FeedError::WrongSecurity { .. }),
            _ => matches!(err, FeedError::Book { .. }),
        };
        assert!(expected, "{what}: {err}");
        assert_eq!(
            h.feed.builder().snapshot(S, FeedLevel::L3).unwrap(),
            snap,
            "{what}"
        );
        assert_eq!(h.feed.builder().feed_seq(), feed_seq, "{what}");
        h.deliver();
        h.check();
    }
    // Replayed or stale commands, unknown securities.
    let stale = Completed {
        seq: 2,
        time: 0,
        security: S,
        command: &new_cmd(),
        events: &[rested(8, Side::Buy, 100, 1)],
    };
    assert!(matches!(h.feed.apply(stale), Err(FeedError::Stale { .. })));
    let unknown = Completed {
        security: SecurityId(5),
        seq: 1_000,
        ..stale
    };
    assert_eq!(
        h.feed.apply(unknown),
        Err(FeedError::UnknownSecurity(SecurityId(5)))
    );
    // Still working: the right execution is accepted.
    let ev = [fill(3, 9, 101, 100, Aggressor::Sell), totals(800, 0)];
    let out = h.apply(&new_cmd(), &ev).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(h.feed.builder().feed_seq(), feed_seq + 1);
}

#[test]
fn messages_are_compact_and_round_trip_through_bincode() {
    let mut h = Harness::new();
    h.apply(
        &new_cmd(),
        &[rested(1, Side::Buy, 25_050, 500), totals(500, 0)],
    )
    .unwrap();
    h.apply(
        &new_cmd(),
        &[fill(1, 2, 25_050, 100, Aggressor::Sell), totals(400, 0)],
    )
    .unwrap();
    let cfg = bincode::config::standard();
    for m in &h.log {
        let bytes = bincode::serde::encode_to_vec(m, cfg).unwrap();
        let (back, _): (Message, usize) = bincode::serde::decode_from_slice(&bytes, cfg).unwrap();
        assert_eq!(&back, m);
        if !matches!(m.body, Body::Snapshot(_) | Body::SnapshotBegin { .. }) {
            // seq, 64-bit time and a body of small integers.
            assert!(bytes.len() <= 32, "{} bytes: {m:?}", bytes.len());
        }
    }
}
