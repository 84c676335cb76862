//! Shared test helpers: the venv's Python, and nasty trade and order generators.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use dataout::{OrderRecord, TradeRecord};
use matching::{
    Aggressor, AmendOrder, BrokerId, CancelOrder, Command as Cmd, NewOrder, OrderId, OrderType,
    Phase, SecurityId, Side, MAX_ORDER_QTY,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const NS: i64 = 1_000_000_000;
/// 2025-06-02 09:00 in Asia/Ho_Chi_Minh (02:00 UTC).
pub const MONDAY_0900_LOCAL: i64 = 1_748_829_600 * NS;

/// The repository's `.venv` Python. Fails loudly (never skips) when the venv is missing.
pub fn venv_python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "the Python test venv is missing ({}): run scripts/venv.sh first",
        python.display()
    );
    python
}

/// Runs `dataout/tests/py/<script>` with `args`; returns whether it succeeded, its stdout and
/// its stderr.
pub fn try_checker(script: &str, args: &[&Path]) -> (bool, String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    let out = Command::new(venv_python())
        .arg(&script)
        .args(args)
        .output()
        .expect("run the Python checker");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a checker; returns its stdout, or fails the test with the checker's own message.
pub fn run_checker(script: &str, args: &[&Path]) -> String {
    let (ok, stdout, stderr) = try_checker(script, args);
    assert!(ok, "{script} failed:\n{stdout}\n{stderr}");
    stdout
}

/// Runs a checker that must fail with a message containing `expected`.
pub fn checker_rejects(script: &str, args: &[&Path], expected: &str) {
    let (ok, stdout, stderr) = try_checker(script, args);
    assert!(!ok, "{script} accepted tampered data:\n{stdout}");
    assert!(
        stderr.contains(expected),
        "{script} failed for another reason:\n{stderr}"
    );
}

/// Security codes that stress names: short, long, lowercase, punctuation CSV must quote-free
/// carry, Windows-reserved (Qlib prefixes those).
pub const CODES: [&str; 6] = ["VNM", "E1VFVN30", "con", "A-B.C", "X", "LPT1"];
/// Broker names that need CSV quoting, and one beyond ASCII.
pub const BROKERS: [&str; 5] = [
    "B1",
    "comma,broker",
    "quote\"broker",
    "line\nbreak",
    "môi giới ☂",
];

/// A tape of trades in tape order (seq increasing, fills numbered), over `days` HOSE trading
/// days: opening and closing auction trades at 09:15 and 14:45 local, continuous trades in
/// between, some days skipped by some securities, some whole days without trades, several
/// trades in one nanosecond, extreme prices and quantities.
pub fn tape(seed: u64, n: usize, days: i64) -> Vec<TradeRecord<'static>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    // Enough instants per trading day (four in five days trade) to reach `n` near the end.
    let per_day = (n as i64 * 5 / (4 * days.max(1))).max(3);
    let mut seq = 1u64;
    for day in 0..days {
        if day % 5 == 3 {
            continue; // a holiday: nobody trades
        }
        let base = MONDAY_0900_LOCAL + day * 86_400 * NS;
        let mut times: Vec<i64> = (0..per_day)
            .map(|_| base + rng.gen_range(15 * 60 * NS..(5 * 3600 + 45 * 60) * NS))
            .collect();
        times.sort_unstable();
        let mut push =
            |time: i64, aggressor: Aggressor, rng: &mut ChaCha8Rng, seq: u64, fill: u32| {
                let security = CODES[rng.gen_range(0..CODES.len())];
                if (security == "X" && day % 2 == 1) || out.len() >= n {
                    return;
                }
                let price = match rng.gen_range(0..20) {
                    0 => i64::MAX / 4,
                    1 => 1,
                    _ => rng.gen_range(1..2_000) * 50,
                };
                let qty = match rng.gen_range(0..20) {
                    0 => MAX_ORDER_QTY,
                    1 => 1,
                    _ => rng.gen_range(1..100) * 100,
                };
                out.push(TradeRecord {
                    time,
                    seq,
                    fill,
                    security,
                    price,
                    qty,
                    buy_order_id: rng.gen(),
                    sell_order_id: rng.gen(),
                    aggressor,
                });
            };
        // Opening auction: several fills of one PHASE command, all at 09:15 local.
        for f in 0..3 {
            push(base + 15 * 60 * NS, Aggressor::Auction, &mut rng, seq, f);
        }
        seq += 1;
        for (i, t) in times.into_iter().enumerate() {
            let fills = if i % 7 == 0 { 2 } else { 1 };
            for f in 0..fills {
                let a = if rng.gen_bool(0.5) {
                    Aggressor::Buy
                } else {
                    Aggressor::Sell
                };
                push(t, a, &mut rng, seq, f);
            }
            seq += 1;
        }
        for f in 0..3 {
            push(
                base + (5 * 3600 + 45 * 60) * NS,
                Aggressor::Auction,
                &mut rng,
                seq,
                f,
            );
        }
        seq += 1;
    }
    out
}

/// Orders of every action, with names that need quoting and extreme values.
pub fn orders(seed: u64, n: usize) -> Vec<OrderRecord<'static>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut t = MONDAY_0900_LOCAL - 3 * NS;
    (0..n as u64)
        .map(|seq| {
            t += rng.gen_range(0..2 * NS);
            let broker = BROKERS[rng.gen_range(0..BROKERS.len())];
            let security = CODES[rng.gen_range(0..CODES.len())];
            let (b, s) = (BrokerId(0), SecurityId(0));
            let id = OrderId(if rng.gen_bool(0.05) {
                u64::MAX
            } else {
                rng.gen()
            });
            let command = match rng.gen_range(0..10) {
                0 => Cmd::Phase(Phase::ALL[rng.gen_range(0..5)]),
                1 | 2 => Cmd::Cancel(CancelOrder {
                    id,
                    broker: b,
                    security: s,
                }),
                3 => Cmd::Amend(AmendOrder {
                    id,
                    broker: b,
                    security: s,
                    price: rng.gen_range(-5..5) * 1000,
                    qty: rng.gen_range(0..3) * 100,
                }),
                _ => {
                    let kind = OrderType::ALL[rng.gen_range(0..7)];
                    Cmd::New(NewOrder {
                        id,
                        broker: b,
                        security: s,
                        side: if rng.gen_bool(0.5) {
                            Side::Buy
                        } else {
                            Side::Sell
                        },
                        kind,
                        price: match rng.gen_range(0..10) {
                            0 => i64::MIN,
                            1 => i64::MAX,
                            _ if kind.is_priceless() => 0,
                            _ => rng.gen_range(1..1000) * 10,
                        },
                        qty: if rng.gen_bool(0.05) {
                            u64::MAX
                        } else {
                            rng.gen_range(0..50) * 100
                        },
                    })
                }
            };
            OrderRecord {
                time: t,
                seq: seq + 1,
                command,
                broker,
                security,
            }
        })
        .collect()
}
