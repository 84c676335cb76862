//! Codec and session throughput, single thread, no sockets.
//!
//! Prints orders/s for: decoding NewOrderSingle frames (against a baseline that only splits the
//! same bytes at SOH, the least any FIX parser must do); the session taking them in (memory
//! store, and the file store without fsync); the session sending ExecutionReports.
//! Run: `cargo bench -p fix-gateway --bench session`.

use std::hint::black_box;
use std::time::Instant;

use fix_gateway::codec::{Decoded, Decoder, Message, MessageBuilder};
use fix_gateway::session::{Now, Output, Session, SessionConfig};
use fix_gateway::store::{FileStore, MemoryStore, MessageStore};
use fix_gateway::utc;

const N: u64 = 200_000;
const T0: i64 = 1_700_000_000_000;

fn now() -> Now {
    Now {
        mono_ms: 1,
        utc_ms: T0,
    }
}

fn order(seq: u64) -> Vec<u8> {
    let mut b = MessageBuilder::new(b"D");
    b.str_field(49, "BRK1")
        .str_field(56, "GRIDMATCH")
        .u64_field(34, seq)
        .str_field(52, &utc::format(T0))
        .str_field(11, &format!("ord-{seq}"))
        .str_field(55, "VNM")
        .field(54, b"1")
        .field(38, b"100")
        .field(40, b"2")
        .field(44, b"10000")
        .field(59, b"0")
        .str_field(60, &utc::format(T0));
    b.finish("FIX.4.4")
}

fn rate(label: &str, n: u64, start: Instant) {
    let s = start.elapsed().as_secs_f64();
    println!(
        "{label:<52} {:>12.0} msgs/s  ({:.1} ns/msg)",
        n as f64 / s,
        s * 1e9 / n as f64
    );
}

fn logged_on(store: Box<dyn MessageStore>) -> Session {
    let mut s = Session::new(SessionConfig::new("GRIDMATCH"), "BRK1", store);
    let mut b = MessageBuilder::new(b"A");
    b.str_field(49, "BRK1")
        .str_field(56, "GRIDMATCH")
        .u64_field(34, 1)
        .str_field(52, &utc::format(T0))
        .field(98, b"0")
        .field(108, b"30");
    let Ok(Decoded::Message(m)) = Message::parse(b.finish("FIX.4.4")) else {
        unreachable!()
    };
    s.on_logon(now(), m);
    s.drain_output().for_each(drop);
    s
}

fn feed(s: &mut Session, wire: &[u8]) -> u64 {
    let mut d = Decoder::new(64 * 1024);
    let mut delivered = 0;
    for chunk in wire.chunks(64 * 1024) {
        d.extend(chunk);
        while let Some(f) = d.next_frame() {
            s.on_decoded(now(), f.unwrap());
            for o in s.drain_output() {
                if let Output::Deliver(a) = o {
                    black_box(a);
                    delivered += 1;
                }
            }
        }
    }
    delivered
}

fn main() {
    let wire: Vec<u8> = (2..N + 2).flat_map(order).collect();
    println!(
        "{N} NewOrderSingle frames, {} bytes each on average\n",
        wire.len() as u64 / N
    );

    let start = Instant::now();
    let mut fields = 0u64;
    for chunk in wire.chunks(64 * 1024) {
        fields += chunk.iter().filter(|&&b| b == 1).count() as u64;
    }
    black_box(fields);
    rate("baseline: count SOH bytes (no parsing)", N, start);

    let start = Instant::now();
    let mut d = Decoder::new(64 * 1024);
    let mut n = 0u64;
    for chunk in wire.chunks(64 * 1024) {
        d.extend(chunk);
        while let Some(f) = d.next_frame() {
            black_box(&f);
            n += 1;
        }
    }
    assert_eq!(n, N);
    rate(
        "codec: decode + validate (length, checksum, fields)",
        N,
        start,
    );

    let mut s = logged_on(Box::new(MemoryStore::default()));
    let start = Instant::now();
    assert_eq!(feed(&mut s, &wire), N);
    rate("session in: decode + session, memory store", N, start);

    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(&dir.path().join("bench.fixlog"), false).unwrap();
    let mut s = logged_on(Box::new(store));
    let start = Instant::now();
    assert_eq!(feed(&mut s, &wire), N);
    rate(
        "session in: decode + session, file store (no fsync)",
        N,
        start,
    );

    let mut body = MessageBuilder::body();
    body.str_field(37, "O123")
        .str_field(11, "ord-1")
        .str_field(17, "E1")
        .field(150, b"F")
        .field(39, b"2")
        .str_field(55, "VNM")
        .field(54, b"1")
        .field(38, b"100")
        .field(32, b"100")
        .field(31, b"10000")
        .field(151, b"0")
        .field(14, b"100")
        .field(6, b"10000");
    let start = Instant::now();
    for _ in 0..N {
        s.send_app(now(), b"8", &body).unwrap();
        for o in s.drain_output() {
            black_box(o);
        }
    }
    rate(
        "session out: ExecutionReport built + stored (file)",
        N,
        start,
    );
}
