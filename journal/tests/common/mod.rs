//! Helpers shared by the journal's integration tests: a listing, configurations, command
//! streams (tame and nasty) and writers over real directories.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use journal::{
    recover, Binding, Durability, Entry, JournalItem, JournalRecord, OrderJournal, RejectedNew,
    Store, StoreConfig,
};
use matching::{
    AmendOrder, BrokerId, CancelOrder, Command, MarketRules, NewOrder, OrderId, OrderType, Phase,
    RejectReason, SecurityId, SecurityTable, Side, Timestamp,
};
use proptest::prelude::*;

/// 2026-01-05 09:00 (UTC+7) in ns.
pub const T0: Timestamp = 1_767_578_400_000_000_000;

pub fn listing() -> SecurityTable {
    SecurityTable::synthetic(8).unwrap()
}

pub fn binding() -> Binding {
    Binding::new(&listing(), MarketRules::hose())
}

/// A store in `data` whose high-water mark follows every commit (deterministic tests).
pub fn cfg(data: &Path, segment_bytes: u64, durability: Durability) -> StoreConfig {
    StoreConfig {
        segment_bytes,
        durability,
        hwm_interval: Duration::from_secs(3600),
        hwm_commits: 1,
        ..StoreConfig::in_data_dir(data)
    }
}

pub fn open(cfg: &StoreConfig) -> Store {
    recover(cfg, &binding()).unwrap().open().unwrap()
}

pub fn name(b: BrokerId) -> String {
    format!("broker{}", b.0)
}

/// One thing appended to the journal.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Cmd {
        time: Timestamp,
        client_ref: u64,
        cmd: Command,
    },
    Rejected {
        time: Timestamp,
        client_ref: u64,
        order: NewOrder,
        reason: RejectReason,
    },
}

pub fn new_order(
    id: u64,
    broker: u32,
    security: u32,
    side: Side,
    kind: OrderType,
    price: i64,
    qty: u64,
) -> NewOrder {
    NewOrder {
        id: OrderId(id),
        broker: BrokerId(broker),
        security: SecurityId(security),
        side,
        kind,
        price,
        qty,
    }
}

/// A plausible day: increasing ids, prices on ticks, some cancels, amends, phases, rejects.
pub fn stream(n: u64) -> Vec<Op> {
    (1..=n)
        .map(|i| {
            let time = T0 + (i as i64) * 13_000;
            let broker = (i % 3) as u32;
            let security = (i % 4) as u32;
            let client_ref = i / 3 + 1;
            match i % 11 {
                5 => Op::Cmd {
                    time,
                    client_ref,
                    cmd: Command::Cancel(CancelOrder {
                        id: OrderId(i - 3),
                        broker: BrokerId(broker),
                        security: SecurityId(security),
                    }),
                },
                7 => Op::Cmd {
                    time,
                    client_ref,
                    cmd: Command::Amend(AmendOrder {
                        id: OrderId(i - 6),
                        broker: BrokerId(broker),
                        security: SecurityId(security),
                        price: 20_000 + 50 * (i % 5) as i64,
                        qty: 100 * (i % 4 + 1),
                    }),
                },
                9 if i % 3 == 0 => Op::Cmd {
                    time,
                    client_ref: 0,
                    cmd: Command::Phase(Phase::ALL[(i as usize / 11) % 5]),
                },
                10 => Op::Rejected {
                    time,
                    client_ref,
                    order: new_order(
                        i,
                        broker,
                        security,
                        Side::Buy,
                        OrderType::Limit,
                        20_003,
                        150,
                    ),
                    reason: RejectReason::OffTick,
                },
                _ => {
                    let side = if i % 2 == 0 { Side::Buy } else { Side::Sell };
                    let kind = OrderType::ALL[(i % 7) as usize];
                    let price = if kind.is_priceless() {
                        0
                    } else {
                        20_000 + 50 * (i % 7) as i64
                    };
                    Op::Cmd {
                        time,
                        client_ref,
                        cmd: Command::New(new_order(
                            i,
                            broker,
                            security,
                            side,
                            kind,
                            price,
                            100 * (i % 9 + 1),
                        )),
                    }
                }
            }
        })
        .collect()
}

/// Appends `ops` from the journal's next seq on (commit every `commit_every`); returns what
/// the journal must read back.
pub fn write_ops(j: &mut OrderJournal, ops: &[Op], commit_every: usize) -> Vec<JournalItem> {
    let mut out = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Cmd {
                time,
                client_ref,
                cmd,
            } => {
                let seq = j.next_seq();
                let broker = cmd.broker().map(name).unwrap_or_default();
                j.append(seq, *time, *client_ref, cmd, &broker).unwrap();
                out.push(JournalItem::Record(JournalRecord {
                    seq,
                    time: *time,
                    client_ref: *client_ref,
                    entry: Entry::Command(*cmd),
                }));
            }
            Op::Rejected {
                time,
                client_ref,
                order,
                reason,
            } => {
                j.append_rejected(*time, *client_ref, order, *reason, &name(order.broker))
                    .unwrap();
                out.push(JournalItem::Rejected(RejectedNew {
                    order: *order,
                    reason: *reason,
                    time: *time,
                    client_ref: *client_ref,
                    next_seq: j.next_seq(),
                }));
            }
        }
        if (i + 1) % commit_every.max(1) == 0 {
            j.commit().unwrap();
        }
    }
    j.commit().unwrap();
    out
}

/// Writes `ops` into a fresh store in `data`; returns what was written.
pub fn write_store(data: &Path, segment_bytes: u64, ops: &[Op]) -> Vec<JournalItem> {
    let mut store = open(&cfg(data, segment_bytes, Durability::Never));
    let items = write_ops(&mut store.journal, ops, 7);
    store.journal.close().unwrap();
    items
}

pub fn read_items(dir: &Path, from_seq: u64) -> Vec<JournalItem> {
    journal::JournalReader::open(dir, from_seq)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

pub fn segments(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with(prefix) && n.ends_with(".seg")
        })
        .collect();
    v.sort();
    v
}

pub fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Any command the types allow, including values no gateway would pass.
pub fn arb_command() -> impl Strategy<Value = Command> {
    let side = prop_oneof![Just(Side::Buy), Just(Side::Sell)];
    let kind = proptest::sample::select(OrderType::ALL.to_vec());
    let price =
        prop_oneof![3 => (1i64..3000).prop_map(|t| t * 50), 1 => any::<i64>(), 1 => Just(0i64)];
    let qty = prop_oneof![3 => (1u64..200).prop_map(|l| l * 100), 1 => any::<u64>()];
    let id = prop_oneof![4 => 0u64..1_000_000, 1 => any::<u64>()];
    let security = prop_oneof![4 => 0u32..8, 1 => Just(u32::MAX), 1 => any::<u32>()];
    let broker = prop_oneof![8 => 0u32..6, 1 => any::<u32>()];
    let new = (
        id.clone(),
        broker.clone(),
        security.clone(),
        side,
        kind,
        price.clone(),
        qty.clone(),
    )
        .prop_map(|(id, b, s, side, kind, price, qty)| {
            Command::New(new_order(id, b, s, side, kind, price, qty))
        });
    let cancel = (id.clone(), broker.clone(), security.clone()).prop_map(|(id, b, s)| {
        Command::Cancel(CancelOrder {
            id: OrderId(id),
            broker: BrokerId(b),
            security: SecurityId(s),
        })
    });
    let amend = (id, broker, security, price, qty).prop_map(|(id, b, s, price, qty)| {
        Command::Amend(AmendOrder {
            id: OrderId(id),
            broker: BrokerId(b),
            security: SecurityId(s),
            price,
            qty,
        })
    });
    let phase = proptest::sample::select(Phase::ALL.to_vec()).prop_map(Command::Phase);
    prop_oneof![6 => new, 2 => cancel, 2 => amend, 1 => phase]
}

pub fn arb_op() -> impl Strategy<Value = Op> {
    let time = prop_oneof![4 => (0i64..10_000_000).prop_map(|d| T0 + d), 1 => any::<i64>()];
    let client_ref = prop_oneof![4 => 0u64..1000, 1 => any::<u64>()];
    let cmd =
        (time.clone(), client_ref.clone(), arb_command()).prop_map(|(time, client_ref, cmd)| {
            Op::Cmd {
                time,
                client_ref,
                cmd,
            }
        });
    let rejected = (
        time,
        client_ref,
        arb_command(),
        proptest::sample::select(RejectReason::ALL.to_vec()),
    )
        .prop_filter_map("a NEW", |(time, client_ref, cmd, reason)| match cmd {
            Command::New(order) => Some(Op::Rejected {
                time,
                client_ref,
                order,
                reason,
            }),
            _ => None,
        });
    prop_oneof![5 => cmd, 1 => rejected]
}
