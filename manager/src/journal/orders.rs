//! The order journal: sequenced commands with their brokers' names.

use std::fs;
use std::path::Path;

use matching::{BrokerId, Command};
use rustc_hash::FxHashMap;

use super::codec::{decode, encode_order, Decoded, DeltaState, MAX_BROKER_NAME};
use super::segment::{
    check_header, remove_torn, scan_dir, scan_records, ScanReport, SegmentWriter, Sink, ORDERS,
};
use super::{io_err, Durability, JournalConfig, JournalError};

/// What a journal holds, as found by [`OrderJournal::open`] or [`read_orders`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Every journaled command with its seq, in seq order (1, 2, ...).
    pub orders: Vec<(u64, Command)>,
    /// Every broker named in the journal, by id.
    pub brokers: Vec<(BrokerId, String)>,
    /// The seq the next append must carry.
    pub next_seq: u64,
    /// Bytes of torn tail that were (open) or would be (read_orders) cut.
    pub truncated_bytes: u64,
}

#[derive(Default)]
struct OrderSink {
    state: DeltaState,
    orders: Vec<(u64, Command)>,
    brokers: FxHashMap<u32, String>,
    next_seq: u64,
}

impl Sink for OrderSink {
    fn segment_start(&mut self) {
        self.state.reset();
    }

    fn record(&mut self, payload: &[u8]) -> Result<bool, String> {
        match decode(&mut self.state, payload)? {
            Decoded::Broker(id, name) => {
                if let Some(old) = self.brokers.get(&id.0) {
                    if *old != name {
                        return Err(format!("broker {} renamed from {old:?} to {name:?}", id.0));
                    }
                } else {
                    self.brokers.insert(id.0, name);
                }
                Ok(false)
            }
            Decoded::Order(cmd) => {
                self.orders.push((self.next_seq, cmd));
                self.next_seq += 1;
                Ok(true)
            }
            Decoded::Fill(..) => Err("fill record in the order journal".into()),
        }
    }
}

fn scan(dir: &Path) -> Result<(OrderSink, ScanReport), JournalError> {
    let mut sink = OrderSink {
        next_seq: 1,
        ..Default::default()
    };
    let report = scan_dir(dir, ORDERS, &mut sink)?;
    Ok((sink, report))
}

fn recovered(sink: &OrderSink, report: &ScanReport, orders: Vec<(u64, Command)>) -> Recovered {
    let mut brokers: Vec<_> = sink
        .brokers
        .iter()
        .map(|(id, n)| (BrokerId(*id), n.clone()))
        .collect();
    brokers.sort();
    Recovered {
        orders,
        brokers,
        next_seq: report.next,
        truncated_bytes: report.truncated_bytes,
    }
}

/// Reads a journal directory without modifying it (export, tests). Same errors as
/// [`OrderJournal::open`]; a torn tail is reported in `truncated_bytes` but left in place.
pub fn read_orders(dir: &Path) -> Result<Recovered, JournalError> {
    let (mut sink, report) = scan(dir)?;
    let orders = std::mem::take(&mut sink.orders);
    Ok(recovered(&sink, &report, orders))
}

/// Decodes one order segment file on its own (its seqs come from its header), as a node that
/// received only that segment would. A torn tail is tolerated and reported in
/// `truncated_bytes`; `brokers` are the ones named in this segment.
pub fn read_order_segment(path: &Path) -> Result<Recovered, JournalError> {
    let data = fs::read(path).map_err(|e| io_err(path, e))?;
    let first = check_header(path, &data, ORDERS, None)?;
    let mut sink = OrderSink {
        next_seq: first,
        ..Default::default()
    };
    let (valid_len, _) = scan_records(path, &data, true, &mut sink)?;
    let report = ScanReport {
        truncated_bytes: data.len() as u64 - valid_len,
        torn_files: Vec::new(),
        tail: None,
        next: sink.next_seq,
    };
    let orders = std::mem::take(&mut sink.orders);
    Ok(recovered(&sink, &report, orders))
}

/// The append side of the order journal. One writer per directory.
pub struct OrderJournal {
    writer: SegmentWriter,
    state: DeltaState,
    /// Names of every broker ever journaled, to refuse renames.
    brokers: FxHashMap<u32, String>,
    next_seq: u64,
    durability: Durability,
    segment_bytes: u64,
    payload: Vec<u8>,
    group: Vec<u8>,
}

impl std::fmt::Debug for OrderJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderJournal")
            .field("segment", &self.writer.path())
            .field("durability", &self.durability)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl OrderJournal {
    /// Opens (creating the dir) and recovers: cuts a torn tail, errors on mid-file corruption.
    pub fn open(cfg: JournalConfig) -> Result<(OrderJournal, Recovered), JournalError> {
        cfg.validate()?;
        fs::create_dir_all(&cfg.dir).map_err(|e| io_err(&cfg.dir, e))?;
        let (mut sink, report) = scan(&cfg.dir)?;
        remove_torn(&report)?;
        let writer = match &report.tail {
            Some(tail) => SegmentWriter::resume(&cfg, ORDERS, tail)?,
            None => SegmentWriter::create(&cfg, ORDERS, report.next)?,
        };
        if report.tail.is_none() {
            // Segment-local state is empty; the sink's state belongs to a dropped segment.
            sink.state.reset();
        }
        let orders = std::mem::take(&mut sink.orders);
        let rec = recovered(&sink, &report, orders);
        if rec.truncated_bytes > 0 {
            tracing::warn!(dir = %cfg.dir.display(), bytes = rec.truncated_bytes, "cut torn journal tail");
        }
        let journal = OrderJournal {
            writer,
            state: sink.state,
            brokers: sink.brokers,
            next_seq: report.next,
            durability: cfg.durability,
            segment_bytes: cfg.segment_bytes,
            payload: Vec::with_capacity(64),
            group: Vec::with_capacity(512),
        };
        Ok((journal, rec))
    }

    /// Buffers one sequenced command; with [`Durability::Always`] it is written and fsynced
    /// before returning. `seq` must be exactly `next_seq()`.
    pub fn append(
        &mut self,
        seq: u64,
        cmd: &Command,
        broker_name: &str,
    ) -> Result<(), JournalError> {
        self.writer.check()?;
        if seq != self.next_seq {
            return Err(JournalError::OutOfSequence {
                expected: self.next_seq,
                got: seq,
            });
        }
        let v1 = match cmd {
            Command::New(o) => !matches!(
                o.kind,
                matching::OrderType::Mtl | matching::OrderType::Ato | matching::OrderType::Atc
            ),
            Command::Cancel(_) => true,
            Command::Amend(_) | Command::Phase(_) => false,
        };
        if !v1 {
            return Err(JournalError::Config(
                "journal format v1 cannot store AMEND, PHASE, MTL, ATO or ATC commands".into(),
            ));
        }
        let broker = cmd.broker().map_or(0, |b| b.0);
        let new_broker = match self.brokers.get(&broker) {
            Some(old) if old != broker_name => {
                return Err(JournalError::BrokerRenamed {
                    id: broker,
                    old: old.clone(),
                    new: broker_name.to_owned(),
                })
            }
            Some(_) => false,
            None if broker_name.len() > MAX_BROKER_NAME => {
                return Err(JournalError::BrokerNameTooLong(broker_name.len()))
            }
            None => true,
        };
        self.group.clear();
        encode_order(
            &self.state,
            cmd,
            broker_name,
            &mut self.payload,
            &mut self.group,
        );
        if !self.writer.fits(self.group.len()) {
            if !self.writer.is_fresh() {
                self.writer.roll(seq)?;
                self.state.reset();
                self.group.clear();
                encode_order(
                    &self.state,
                    cmd,
                    broker_name,
                    &mut self.payload,
                    &mut self.group,
                );
            }
            if !self.writer.fits(self.group.len()) {
                return Err(JournalError::RecordTooLarge {
                    record: self.group.len(),
                    segment_bytes: self.segment_bytes,
                });
            }
        }
        self.writer.push(&self.group)?;
        self.state.apply_order(cmd, broker_name);
        if new_broker {
            self.brokers.insert(broker, broker_name.to_owned());
        }
        self.next_seq += 1;
        if self.durability == Durability::Always {
            self.writer.commit()?;
        }
        Ok(())
    }

    /// Group commit: writes buffered records; fsync for Batch (and Always); Never = write only.
    /// After it returns Ok, every appended record survives a process kill (and for Always/Batch
    /// a power loss).
    pub fn commit(&mut self) -> Result<(), JournalError> {
        self.writer.commit()
    }

    /// The seq the next append must carry (the first is 1).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}
