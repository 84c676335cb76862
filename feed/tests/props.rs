//! Properties: the L3 book's undo log restores exactly; a client fed garbage never panics and
//! only ever applies in-sequence messages; level books follow their updates.

use feed::{
    Applied, Body, BookImage, DeleteReason, FeedClient, L3Book, LevelInfo, Message, OrderInfo,
    Snapshot, Trade, TradeId,
};
use matching::{Aggressor, OrderId, Phase, SecurityId, Side};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Add(u64, bool, i64, u64),
    Execute(u64, u64),
    Reduce(u64, u64),
    Delete(u64),
    /// Execute the first in line (or, with `wrong`, name another order: refused, no change).
    Head(bool, u64, bool),
}

fn op() -> impl Strategy<Value = Op> {
    // Few ids and prices: many collisions, deep levels, orders at market (price 0).
    prop_oneof![
        (0..12u64, any::<bool>(), 0..5i64, 0..4u64).prop_map(|(i, b, p, q)| Op::Add(i, b, p, q)),
        (0..12u64, 0..4u64).prop_map(|(i, q)| Op::Execute(i, q)),
        (0..12u64, 0..4u64).prop_map(|(i, q)| Op::Reduce(i, q)),
        (0..12u64).prop_map(Op::Delete),
        (any::<bool>(), 0..4u64, proptest::bool::weighted(0.2))
            .prop_map(|(b, q, w)| Op::Head(b, q, w)),
    ]
}

fn run(book: &mut L3Book, op: &Op) {
    let side = |b: bool| if b { Side::Buy } else { Side::Sell };
    let _ = match *op {
        Op::Add(i, b, p, q) => book.add(OrderId(i), side(b), p * 10, q).map(|_| ()),
        Op::Execute(i, q) => book.execute(OrderId(i), q).map(|_| ()),
        Op::Reduce(i, q) => book.reduce(OrderId(i), q).map(|_| ()),
        Op::Delete(i) => book.delete(OrderId(i)).map(|_| ()),
        Op::Head(b, q, wrong) => {
            let Some(head) = book.head(side(b)) else {
                return;
            };
            let id = if wrong { OrderId(head.0 + 1) } else { head };
            let before = image(book);
            let r = book.execute_head(side(b), id, q);
            if r.is_err() {
                assert_eq!(image(book), before, "a refused execution changed the book");
            } else {
                assert!(!wrong && q > 0);
            }
            Ok(())
        }
    };
}

fn image(book: &L3Book) -> (Vec<OrderInfo>, Vec<OrderInfo>, (u64, u64), usize) {
    (
        book.orders(Side::Buy).collect(),
        book.orders(Side::Sell).collect(),
        book.totals(),
        book.len(),
    )
}

proptest! {
    #[test]
    fn rollback_restores_the_exact_book(before in proptest::collection::vec(op(), 0..40),
                                        during in proptest::collection::vec(op(), 0..40),
                                        after in proptest::collection::vec(op(), 0..20)) {
        let mut book = L3Book::new();
        for o in &before { run(&mut book, o); }
        let mut twin = book.clone();
        let saved = image(&book);
        book.begin();
        for o in &during { run(&mut book, o); }
        book.rollback();
        prop_assert_eq!(image(&book), saved);
        // And it keeps working the same as a book that never saw the rolled-back ops.
        for o in &after { run(&mut book, o); run(&mut twin, o); }
        prop_assert_eq!(image(&book), image(&twin));
        prop_assert_eq!(book.depth(usize::MAX), twin.depth(usize::MAX));
        // Level totals (at market included) agree with the orders and the side's total.
        for side in [Side::Buy, Side::Sell] {
            let sum: u64 = book.window(side, usize::MAX).map(|l| l.qty).sum();
            let orders: u64 = book.orders(side).map(|o| o.qty).sum();
            prop_assert_eq!(sum, orders);
            let total = if side == Side::Buy { book.totals().0 } else { book.totals().1 };
            prop_assert_eq!(total, orders);
            let n: u32 = book.window(side, usize::MAX).map(|l| l.orders).sum();
            prop_assert_eq!(n as usize, book.orders(side).count());
        }
    }
}

fn body() -> impl Strategy<Value = Body> {
    let s = (0..3u32).prop_map(SecurityId);
    let id = (0..6u64).prop_map(OrderId);
    let side = prop_oneof![Just(Side::Buy), Just(Side::Sell)];
    let level = (0..4i64, 0..3u64, 0..3u32).prop_map(|(p, qty, orders)| LevelInfo {
        price: p * 10,
        qty,
        orders,
    });
    let orders = proptest::collection::vec(
        (id.clone(), 0..4i64, 0..3u64).prop_map(|(id, p, qty)| OrderInfo {
            id,
            price: p * 10,
            qty,
        }),
        0..4,
    );
    prop_oneof![
        (s.clone(), id.clone(), side.clone(), 0..4i64, 0..3u64).prop_map(
            |(security, id, side, p, qty)| Body::Add {
                security,
                id,
                side,
                price: p * 10,
                qty
            }
        ),
        (s.clone(), id.clone(), 0..3u64).prop_map(|(security, id, qty)| Body::Reduce {
            security,
            id,
            qty
        }),
        (s.clone(), id.clone()).prop_map(|(security, id)| Body::Delete {
            security,
            id,
            reason: DeleteReason::Cancelled
        }),
        (
            s.clone(),
            proptest::option::of(id.clone()),
            proptest::option::of(id),
            0..3u64
        )
            .prop_map(|(security, buy, sell, qty)| Body::Trade(Trade {
                security,
                id: TradeId { seq: 1, index: 0 },
                price: 10,
                qty,
                aggressor: Aggressor::Auction,
                buy,
                sell
            })),
        (s.clone(), side, level.clone()).prop_map(|(security, side, level)| Body::Level {
            security,
            side,
            level
        }),
        (s.clone(), proptest::option::of(level)).prop_map(|(security, bid)| Body::Quote {
            security,
            bid,
            ask: None
        }),
        (0..4u32).prop_map(|n| Body::SnapshotBegin {
            feed_seq: 0,
            securities: n
        }),
        (s, orders.clone(), orders, any::<bool>()).prop_map(|(security, bids, asks, l3)| {
            let book = if l3 {
                BookImage::Orders { bids, asks }
            } else {
                let lv = |v: Vec<OrderInfo>| {
                    v.into_iter()
                        .map(|o| LevelInfo {
                            price: o.price,
                            qty: o.qty,
                            orders: 1,
                        })
                        .collect()
                };
                BookImage::Levels {
                    bids: lv(bids),
                    asks: lv(asks),
                }
            };
            Body::Snapshot(Box::new(Snapshot {
                security,
                phase: Phase::Ato,
                reference: 10,
                last_trade: None,
                indicative: None,
                book,
            }))
        }),
        Just(Body::Heartbeat),
    ]
}

proptest! {
    #[test]
    fn a_client_fed_garbage_never_panics(msgs in proptest::collection::vec((0..30u64, body()), 0..60)) {
        let mut client = FeedClient::new();
        let mut last_applied = 0;
        for (seq, body) in msgs {
            let m = Message { seq, time: 0, body };
            let begin = matches!(m.body, Body::SnapshotBegin { .. });
            let r = client.apply(&m);
            if r == Applied::Applied && !begin {
                // Only the next message in sequence is ever applied.
                prop_assert_eq!(seq, last_applied + 1);
            }
            if r == Applied::Applied {
                last_applied = seq;
            }
            for sec in client.securities() {
                let (bids, asks) = client.depth(sec, usize::MAX);
                prop_assert!(bids.len() + asks.len() < 1_000);
            }
        }
    }
}

#[test]
fn messages_stay_small_in_memory() {
    // Queues hold many of them: keep a message within two cache lines.
    let size = std::mem::size_of::<Message>();
    eprintln!(
        "Message: {size} bytes, Body: {}",
        std::mem::size_of::<Body>()
    );
    assert!(size <= 96, "{size}");
}
