//! The wire codec on the frames of the order path, as a busy grid carries them: orders routed
//! to an executor, its event groups back, a broker's submissions and its reports. Prints ns per
//! item (a command, a group or a report) for encoding and decoding, next to the same through
//! bincode's serde layer (the codec's former path, checked to give the same bytes) and a byte
//! copy of the frame, the baselines measured in the same run (the machine is shared and noisy).
//!
//! `cargo bench -p proto --bench codec -- [ITEMS_PER_FRAME] [ROUNDS]`

use std::hint::black_box;
use std::time::Instant;

use matching::{
    BrokerId, Command, Event, NewOrder, OrderId, OrderType, SecurityId, Side, Timestamp,
};
use proto::codec::{decode_frame, encode_frame, VecWriter};
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

/// One round's figures, ns per item.
#[derive(Clone, Copy)]
struct Figures {
    encode: f64,
    decode: f64,
    serde_encode: f64,
    serde_decode: f64,
    copy: f64,
}

/// Best of `rounds` rounds: ns per item to encode and decode with the codec (bincode's own
/// derives), the same through bincode's serde layer (what the codec used before; the bytes are
/// checked to be identical), and to copy the frame's bytes.
fn measure<T: bincode::Encode + bincode::Decode<()> + Serialize + DeserializeOwned>(
    msg: &T,
    items: u64,
    rounds: u32,
) -> (Figures, usize) {
    let config = bincode::config::standard().with_limit::<{ proto::codec::MAX_FRAME }>();
    let mut buf = Vec::with_capacity(1 << 20);
    encode_frame(msg, &mut buf).expect("encodes");
    let frame = buf.clone();
    let payload = &frame[proto::codec::HEADER_LEN..];
    let through_serde = bincode::serde::encode_to_vec(msg, config).expect("serde encodes");
    assert_eq!(
        through_serde, payload,
        "the serde layer must encode the same bytes"
    );
    let reps = (200_000 / items).max(1);
    let per_item = |start: Instant| start.elapsed().as_nanos() as f64 / (reps * items) as f64;
    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..reps {
            f();
        }
        per_item(start)
    };
    let mut best = Figures {
        encode: f64::MAX,
        decode: f64::MAX,
        serde_encode: f64::MAX,
        serde_decode: f64::MAX,
        copy: f64::MAX,
    };
    let mut sink = vec![0u8; frame.len()];
    for _ in 0..rounds {
        let encode = time(&mut || {
            buf.clear();
            encode_frame(black_box(msg), &mut buf).expect("encodes");
            black_box(&buf);
        });
        let decode = time(&mut || {
            let decoded: Option<(T, usize)> = decode_frame(black_box(&frame)).expect("decodes");
            black_box(decoded);
        });
        let serde_encode = time(&mut || {
            buf.clear();
            // The writer the codec used with serde: only the encoding differs.
            bincode::serde::encode_into_writer(black_box(msg), VecWriter(&mut buf), config)
                .expect("encodes");
            black_box(&buf);
        });
        let serde_decode = time(&mut || {
            let decoded: (T, usize) =
                bincode::serde::decode_from_slice(black_box(payload), config).expect("decodes");
            black_box(decoded);
        });
        let copy = time(&mut || {
            sink.copy_from_slice(black_box(&frame));
            black_box(&sink);
        });
        best = Figures {
            encode: best.encode.min(encode),
            decode: best.decode.min(decode),
            serde_encode: best.serde_encode.min(serde_encode),
            serde_decode: best.serde_decode.min(serde_decode),
            copy: best.copy.min(copy),
        };
    }
    (best, frame.len())
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let items: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(96);
    let rounds: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(15);
    println!("wire codec bench: {items} items per frame, best of {rounds} rounds, ns per item");
    println!(
        "{:<30} {:>9} {:>9} {:>9} {:>9} {:>8} {:>10}",
        "frame", "encode", "serde enc", "decode", "serde dec", "copy", "bytes/item"
    );
    let row = |name: &str, (f, len): (Figures, usize)| {
        println!(
            "{name:<30} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>8.2} {:>10.1}",
            f.encode,
            f.serde_encode,
            f.decode,
            f.serde_decode,
            f.copy,
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
