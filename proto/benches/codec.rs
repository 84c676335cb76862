//! The wire codec on the frames of the order path, as a busy grid carries them: orders routed
//! to an executor, its event groups back, a broker's submissions and its reports. Prints ns per
//! item (a command, a group or a report) for encoding and decoding, and a byte copy of the
//! same frame as the baseline measured in the same run (the machine is shared and noisy).
//!
//! `cargo bench -p proto --bench codec -- [ITEMS_PER_FRAME] [ROUNDS]`

use std::hint::black_box;
use std::time::Instant;

use matching::{
    BrokerId, Command, Event, NewOrder, OrderId, OrderType, SecurityId, Side, Timestamp,
};
use proto::codec::{decode_frame, encode_frame};
use proto::{
    ClientCommand, ClientMsg, EventGroup, FromExecutor, ManagerToClient, Report, ReportEvent,
    Routed, ToExecutor,
};
use serde::{de::DeserializeOwned, Serialize};

/// An exchange time in 2026, as the manager stamps it (nanoseconds: a nine-byte varint).
const TIME: Timestamp = 1_795_560_121_629_263_241;

fn new_order(i: u64) -> NewOrder {
    NewOrder {
        id: OrderId(1_000_000 + i),
        broker: BrokerId((i % 4) as u32),
        security: SecurityId((i % 200) as u32),
        side: if i.is_multiple_of(2) {
            Side::Buy
        } else {
            Side::Sell
        },
        kind: OrderType::Limit,
        price: 25_000 + (i % 50) as i64 * 50,
        qty: 100 * (1 + i % 9),
    }
}

fn routed(n: u64) -> ToExecutor {
    ToExecutor::Orders(
        (0..n)
            .map(|i| Routed {
                seq: 500_000 + i,
                security: SecurityId((i % 200) as u32),
                command: Command::New(new_order(i)),
            })
            .collect(),
    )
}

/// The common group: the order rests, then the book's totals.
fn events(n: u64) -> FromExecutor {
    FromExecutor::Events(
        (0..n)
            .map(|i| {
                let o = new_order(i);
                let rested = Event::Rested {
                    id: o.id,
                    security: o.security,
                    side: o.side,
                    price: o.price,
                    qty: o.qty,
                };
                let totals = Event::Totals {
                    security: o.security,
                    bid_total: 1_250_000,
                    ask_total: 980_000,
                };
                EventGroup {
                    seq: 500_000 + i,
                    security: o.security,
                    events: [rested, totals].into_iter().collect(),
                    last: true,
                }
            })
            .collect(),
    )
}

fn submit(n: u64) -> ClientMsg {
    ClientMsg::Submit(
        (0..n)
            .map(|i| ClientCommand {
                client_ref: i,
                command: Command::New(new_order(i)),
            })
            .collect(),
    )
}

/// A broker's reports: accepted, rested, totals, for each order.
fn reports(n: u64) -> ManagerToClient {
    let mut out = Vec::new();
    for i in 0..n / 3 {
        let o = new_order(i);
        let report = |event, last| Report {
            client_ref: i,
            seq: 500_000 + i,
            time: TIME,
            order: o.id,
            event,
            last,
            passive: false,
        };
        out.push(report(ReportEvent::Accepted, false));
        out.push(report(
            ReportEvent::Rested {
                price: o.price,
                qty: o.qty,
            },
            false,
        ));
        out.push(report(
            ReportEvent::Totals {
                security: o.security,
                bid_total: 1_250_000,
                ask_total: 980_000,
            },
            true,
        ));
    }
    ManagerToClient::Reports(out)
}

/// Best of `rounds` rounds: ns per item to encode, to decode, and to copy the frame's bytes.
fn measure<T: Serialize + DeserializeOwned>(
    msg: &T,
    items: u64,
    rounds: u32,
) -> (f64, f64, f64, usize) {
    let mut buf = Vec::with_capacity(1 << 20);
    encode_frame(msg, &mut buf).expect("encodes");
    let frame = buf.clone();
    let reps = (200_000 / items).max(1);
    let per_item = |start: Instant| start.elapsed().as_nanos() as f64 / (reps * items) as f64;
    let (mut enc, mut dec, mut copy) = (f64::MAX, f64::MAX, f64::MAX);
    let mut sink = vec![0u8; frame.len()];
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..reps {
            buf.clear();
            encode_frame(black_box(msg), &mut buf).expect("encodes");
            black_box(&buf);
        }
        enc = enc.min(per_item(start));
        let start = Instant::now();
        for _ in 0..reps {
            let decoded: Option<(T, usize)> = decode_frame(black_box(&frame)).expect("decodes");
            black_box(decoded);
        }
        dec = dec.min(per_item(start));
        let start = Instant::now();
        for _ in 0..reps {
            sink.copy_from_slice(black_box(&frame));
            black_box(&sink);
        }
        copy = copy.min(per_item(start));
    }
    (enc, dec, copy, frame.len())
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let items: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(96);
    let rounds: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(15);
    println!("wire codec bench: {items} items per frame, best of {rounds} rounds");
    println!(
        "{:<34} {:>10} {:>10} {:>10} {:>12}",
        "frame", "encode ns", "decode ns", "copy ns", "bytes/item"
    );
    let row = |name: &str, (enc, dec, copy, len): (f64, f64, f64, usize)| {
        println!(
            "{name:<34} {enc:>10.1} {dec:>10.1} {copy:>10.2} {:>12.1}",
            len as f64 / items as f64
        );
    };
    row(
        "to executor: routed orders",
        measure(&routed(items), items, rounds),
    );
    row(
        "from executor: event groups",
        measure(&events(items), items, rounds),
    );
    row(
        "from broker: submissions",
        measure(&submit(items), items, rounds),
    );
    let r = (items / 3) * 3;
    row("to broker: reports", measure(&reports(r), r, rounds));
}
