//! The order journal: the writer, the streaming reader and the whole-journal reader.

use std::path::Path;

use matching::{BrokerId, Command, NewOrder, RejectReason, Timestamp};
use rustc_hash::FxHashMap;

use crate::codec::{
    encode_dict, encode_record, encode_rejected, Decoded, DeltaState, Meta, MAX_BROKER_NAME,
};
use crate::hwm::{HighWaterMark, HwmWriter};
use crate::records::{Entry, JournalItem, JournalRecord, RejectedNew};
use crate::segment::{file_name, Scanner, SegmentId, SegmentWriter, Tail, WriterStats, JOURNAL};
use crate::{JournalError, StoreConfig};

/// Broker names across segments: a broker id keeps its first name forever.
#[derive(Default, Debug)]
pub(crate) struct Names(pub FxHashMap<u32, String>);

impl Names {
    /// Records a DICT entry; an error if the id was journaled with another name.
    pub(crate) fn learn(&mut self, id: BrokerId, name: &str) -> Result<(), String> {
        match self.0.get(&id.0) {
            Some(old) if old != name => {
                Err(format!("broker {} renamed from {old:?} to {name:?}", id.0))
            }
            Some(_) => Ok(()),
            None => {
                self.0.insert(id.0, name.to_owned());
                Ok(())
            }
        }
    }

    pub(crate) fn sorted(&self) -> Vec<(BrokerId, String)> {
        let mut v: Vec<_> = self
            .0
            .iter()
            .map(|(id, n)| (BrokerId(*id), n.clone()))
            .collect();
        v.sort();
        v
    }
}

/// Streams the journal from a seq on, one segment in memory at a time. Yields every record
/// with `seq >= from_seq` (a GAP is yielded if it ends at or after `from_seq`) and every
/// rejected NEW with `next_seq >= from_seq`, in journal order. Whole segments before the one
/// holding seq `from_seq - 1` are skipped by the seq in their file name and never read.
///
/// The last segment may end in a torn tail (see [`JournalReader::truncated_bytes`]); the
/// reader never modifies anything. After an error the iterator ends.
pub struct JournalReader {
    scanner: Scanner,
    from_seq: u64,
    names: Names,
    meta: Option<Meta>,
    failed: bool,
}

/// The index of the journal segment to read from for records from `from_seq` on: the earliest
/// segment starting at the largest first seq <= from_seq - 1 (it holds the record before
/// from_seq, so also the rejected NEWs that followed it).
pub(crate) fn journal_start(
    segments: &[(crate::segment::SegmentId, std::path::PathBuf)],
    from_seq: u64,
) -> usize {
    let before = from_seq.saturating_sub(1);
    match segments.iter().rposition(|(id, _)| id.first <= before) {
        Some(i) => {
            let first = segments[i].0.first;
            segments
                .iter()
                .position(|(id, _)| id.first == first)
                .unwrap_or(i)
        }
        None => 0,
    }
}

impl JournalReader {
    pub fn open(dir: &Path, from_seq: u64) -> Result<JournalReader, JournalError> {
        let segments = crate::segment::list_segments(dir, JOURNAL)?;
        let start = journal_start(&segments, from_seq);
        Ok(JournalReader {
            scanner: Scanner::new(dir, JOURNAL, start, false)?,
            from_seq,
            names: Names::default(),
            meta: None,
            failed: false,
        })
    }

    /// The name of a broker whose records were yielded (or are in the segments read so far).
    pub fn broker_name(&self, id: BrokerId) -> Option<&str> {
        self.names.0.get(&id.0).map(String::as_str)
    }

    /// Every broker named in the segments read so far, by id.
    pub fn brokers(&self) -> Vec<(BrokerId, String)> {
        self.names.sorted()
    }

    /// The seq after the last record read.
    pub fn next_seq(&self) -> u64 {
        self.scanner.next
    }

    /// Bytes of torn tail in the last segment (or torn trailing segments) the reader stopped at.
    pub fn truncated_bytes(&self) -> u64 {
        self.scanner.truncated_bytes
    }

    /// The META of the segment being read.
    pub fn meta(&self) -> Option<&Meta> {
        self.meta.as_ref()
    }

    fn step(&mut self) -> Result<Option<JournalItem>, JournalError> {
        while let Some(item) = self.scanner.next_item()? {
            let seq = item.number;
            match item.decoded {
                Decoded::Meta(m) => self.meta = Some(m),
                Decoded::Dict(id, name) => {
                    if let Err(detail) = self.names.learn(id, &name) {
                        return Err(JournalError::Corrupt {
                            segment: self.scanner.current_path(),
                            offset: self.scanner.current_offset(),
                            detail,
                        });
                    }
                }
                Decoded::Record {
                    time,
                    client_ref,
                    entry,
                } => {
                    let rec = JournalRecord {
                        seq,
                        time,
                        client_ref,
                        entry,
                    };
                    if rec.next_seq() > self.from_seq {
                        return Ok(Some(JournalItem::Record(rec)));
                    }
                }
                Decoded::Rejected {
                    time,
                    client_ref,
                    order,
                    reason,
                } => {
                    if seq >= self.from_seq {
                        return Ok(Some(JournalItem::Rejected(RejectedNew {
                            order,
                            reason,
                            time,
                            client_ref,
                            next_seq: seq,
                        })));
                    }
                }
                Decoded::Fill(_) => unreachable!("the journal decoder never yields fills"),
            }
        }
        Ok(None)
    }
}

impl Iterator for JournalReader {
    type Item = Result<JournalItem, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.step() {
            Ok(item) => item.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Everything a journal holds, as read by [`read_journal`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalContents {
    /// Sequenced records in seq order (1, 2, ...; a GAP covers its count).
    pub records: Vec<JournalRecord>,
    /// NEWs refused before sequencing, in journal order.
    pub rejected: Vec<RejectedNew>,
    /// Every broker named in the journal, by id.
    pub brokers: Vec<(BrokerId, String)>,
    /// The seq the next append must carry.
    pub next_seq: u64,
    /// Bytes of torn tail a writer would cut (left in place here).
    pub truncated_bytes: u64,
    /// The META of the last segment (`None` for an empty journal).
    pub meta: Option<Meta>,
}

/// Reads a whole journal directory into memory without modifying it (export, tests, small
/// days). Use [`JournalReader`] to stream a long day.
pub fn read_journal(dir: &Path) -> Result<JournalContents, JournalError> {
    let mut reader = JournalReader::open(dir, 0)?;
    let mut out = JournalContents::default();
    for item in reader.by_ref() {
        match item? {
            JournalItem::Record(r) => out.records.push(r),
            JournalItem::Rejected(r) => out.rejected.push(r),
        }
    }
    out.brokers = reader.brokers();
    out.next_seq = reader.next_seq();
    out.truncated_bytes = reader.truncated_bytes();
    out.meta = reader.meta;
    Ok(out)
}

/// The append side of the order journal. One writer per directory (see
/// [`crate::DataDirLock`]); obtained from [`crate::Recovery`].
pub struct OrderJournal {
    writer: SegmentWriter,
    state: DeltaState,
    names: Names,
    next_seq: u64,
    meta: Meta,
    hwm: HwmWriter,
    payload: Vec<u8>,
    group: Vec<u8>,
}

impl std::fmt::Debug for OrderJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderJournal")
            .field("segment", &self.writer.path())
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl OrderJournal {
    /// Continues the journal after a recovery scan: resumes `tail` (cutting its torn bytes)
    /// or starts a first segment at `next_seq`.
    pub(crate) fn resume(
        cfg: &StoreConfig,
        meta: Meta,
        tail: Option<&Tail>,
        state: DeltaState,
        names: Names,
        next_seq: u64,
    ) -> Result<OrderJournal, JournalError> {
        let dir = cfg.journal_dir.clone();
        let (writer, state) = match tail {
            Some(t) => {
                let fresh = fresh_len(&meta);
                (
                    SegmentWriter::resume(
                        &dir,
                        JOURNAL,
                        t,
                        fresh,
                        cfg.segment_bytes,
                        cfg.durability,
                    )?,
                    state,
                )
            }
            None => {
                let w = SegmentWriter::create(
                    &dir,
                    JOURNAL,
                    SegmentId {
                        first: next_seq,
                        part: 0,
                    },
                    &meta,
                    cfg.segment_bytes,
                    cfg.durability,
                    WriterStats::default(),
                )?;
                let mut st = DeltaState::default();
                st.apply_meta();
                (w, st)
            }
        };
        let j = OrderJournal {
            hwm: HwmWriter::new(&dir, cfg.durability, cfg.hwm_interval, cfg.hwm_commits)?,
            writer,
            state,
            names,
            next_seq,
            meta,
            payload: Vec::with_capacity(64),
            group: Vec::with_capacity(512),
        };
        if j.writer.capacity() < 64 {
            return Err(JournalError::Config(format!(
                "segments of {} bytes leave no room for records after the header and META",
                cfg.segment_bytes
            )));
        }
        Ok(j)
    }

    fn mark(&self) -> HighWaterMark {
        HighWaterMark {
            seq: self.next_seq - 1,
            segment: file_name(JOURNAL, self.writer.id()),
            length: self.writer.committed_len(),
        }
    }

    pub(crate) fn write_hwm(&mut self) -> Result<(), JournalError> {
        let fsyncs = self.hwm.force(self.mark())?;
        self.writer.stats.fsyncs += fsyncs;
        self.writer.stats.hwm_updates += 1;
        Ok(())
    }

    /// Whether `broker`'s name is new to the journal; an error if it renames a known broker
    /// or is too long.
    fn check_broker(&self, broker: BrokerId, name: &str) -> Result<(), JournalError> {
        match self.names.0.get(&broker.0) {
            Some(old) if old != name => Err(JournalError::BrokerRenamed {
                id: broker.0,
                old: old.clone(),
                new: name.to_owned(),
            }),
            Some(_) => Ok(()),
            None if name.len() > MAX_BROKER_NAME => {
                Err(JournalError::BrokerNameTooLong(name.len()))
            }
            None => Ok(()),
        }
    }

    /// Encodes (DICT if needed and) one record into `group`, rolling to a new segment when it
    /// does not fit; then pushes it. `encode` must not depend on anything but the state.
    fn push(
        &mut self,
        broker: Option<(BrokerId, &str)>,
        encode: impl Fn(&DeltaState, &mut Vec<u8>, &mut Vec<u8>),
    ) -> Result<(), JournalError> {
        let build = |st: &DeltaState, payload: &mut Vec<u8>, group: &mut Vec<u8>| {
            group.clear();
            if let Some((b, name)) = broker.filter(|(b, _)| !st.knows_broker(*b)) {
                encode_dict(b, name, payload, group);
            }
            encode(st, payload, group);
        };
        build(&self.state, &mut self.payload, &mut self.group);
        if !self.writer.fits(self.group.len()) {
            if self.group.len() as u64 > self.writer.capacity() {
                return Err(JournalError::RecordTooLarge {
                    record: self.group.len(),
                    segment_bytes: self.writer.capacity(),
                });
            }
            let cur = self.writer.id();
            let id = SegmentId {
                first: self.next_seq,
                part: if cur.first == self.next_seq {
                    cur.part + 1
                } else {
                    0
                },
            };
            self.writer.roll(id, &self.meta)?;
            self.state.reset();
            self.state.apply_meta();
            build(&self.state, &mut self.payload, &mut self.group);
        }
        self.writer.check()?;
        self.writer.push(&self.group)?;
        if let Some((b, name)) = broker {
            self.state.apply_dict(b, name);
            self.names.0.entry(b.0).or_insert_with(|| name.to_owned());
        }
        Ok(())
    }

    /// Buffers one sequenced command. `seq` must be exactly [`Self::next_seq`]; `broker_name`
    /// is the name of the command's broker (ignored for a PHASE). Nothing is written to the
    /// file before [`Self::commit`] (beyond 1 MiB of buffered records, written unsynced).
    /// A refused append changes nothing and uses up no seq.
    pub fn append(
        &mut self,
        seq: u64,
        time: Timestamp,
        client_ref: u64,
        cmd: &Command,
        broker_name: &str,
    ) -> Result<(), JournalError> {
        self.append_entry(seq, time, client_ref, Entry::Command(*cmd), broker_name)
    }

    fn append_entry(
        &mut self,
        seq: u64,
        time: Timestamp,
        client_ref: u64,
        entry: Entry,
        broker_name: &str,
    ) -> Result<(), JournalError> {
        self.writer.check()?;
        if seq != self.next_seq {
            return Err(JournalError::OutOfSequence {
                expected: self.next_seq,
                got: seq,
            });
        }
        let count = match entry {
            Entry::Command(_) => 1,
            Entry::Gap { count } => count,
        };
        if count == 0 {
            return Err(JournalError::Invalid(
                "a gap must cover at least one seq".into(),
            ));
        }
        let next = seq.checked_add(count).ok_or_else(|| {
            JournalError::Invalid(format!("seq {seq} + {count} overflows the seq range"))
        })?;
        let broker = match entry {
            Entry::Command(c) => c.broker(),
            Entry::Gap { .. } => None,
        };
        if let Some(b) = broker {
            self.check_broker(b, broker_name)?;
        }
        self.push(broker.map(|b| (b, broker_name)), |st, payload, out| {
            encode_record(st, time, client_ref, &entry, payload, out)
        })?;
        self.state.apply_record(time, client_ref, &entry);
        self.next_seq = next;
        Ok(())
    }

    /// Appends a GAP over `count` seqs from `seq` (only recovery's accepted losses do).
    pub(crate) fn append_gap(
        &mut self,
        seq: u64,
        time: Timestamp,
        count: u64,
    ) -> Result<(), JournalError> {
        self.append_entry(seq, time, 0, Entry::Gap { count }, "")
    }

    /// Buffers a NEW refused before sequencing (it takes no seq; it burns its order id).
    pub fn append_rejected(
        &mut self,
        time: Timestamp,
        client_ref: u64,
        order: &NewOrder,
        reason: RejectReason,
        broker_name: &str,
    ) -> Result<(), JournalError> {
        self.writer.check()?;
        self.check_broker(order.broker, broker_name)?;
        let order = *order;
        self.push(Some((order.broker, broker_name)), |st, payload, out| {
            encode_rejected(st, time, client_ref, &order, reason, payload, out)
        })?;
        self.state.apply_rejected(time, client_ref, &order);
        Ok(())
    }

    /// Group commit: writes what was appended and, unless the durability is `Never`, fsyncs
    /// once. After Ok, every appended record survives a process kill (and for Always/Batch a
    /// power loss). Updates the high-water mark when it is due.
    pub fn commit(&mut self) -> Result<(), JournalError> {
        self.writer.commit()?;
        if self.hwm.due(self.next_seq - 1) {
            self.write_hwm()?;
        }
        Ok(())
    }

    /// Brings a trailing high-water mark up to date once its interval has passed without a
    /// commit doing it; call it when idle. Everything the mark names is already committed.
    pub fn refresh_mark(&mut self) -> Result<(), JournalError> {
        if self.hwm.stale(self.next_seq - 1) {
            self.write_hwm()?;
        }
        Ok(())
    }

    /// Commits and brings the high-water mark up to date (a clean shutdown).
    pub fn close(mut self) -> Result<(), JournalError> {
        self.writer.commit()?;
        if self.hwm.written_seq() != self.next_seq - 1 {
            self.write_hwm()?;
        }
        Ok(())
    }

    /// The seq the next append must carry (the first is 1).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The segment file being appended to.
    pub fn segment_path(&self) -> &Path {
        self.writer.path()
    }

    /// Writes and fsyncs made so far.
    pub fn stats(&self) -> WriterStats {
        self.writer.stats
    }
}

/// Length of a fresh segment's header and META.
pub(crate) fn fresh_len(meta: &Meta) -> u64 {
    let mut out = Vec::new();
    crate::codec::encode_meta(meta, &mut Vec::new(), &mut out);
    crate::segment::HEADER_LEN + out.len() as u64
}
