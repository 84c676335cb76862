//! The trade tape: every fill, identified by (seq, security, fill index), in arrival order.

use std::path::Path;

use matching::{Fill, Timestamp};

use crate::codec::{encode_fill, Decoded, DeltaState, Meta};
use crate::records::TapeFill;
use crate::segment::{read_meta, Scanner, SegmentId, SegmentWriter, Tail, WriterStats, TAPE};
use crate::{JournalError, StoreConfig};

/// Streams the tape, one segment in memory at a time, yielding the fills with `seq >= from_seq`
/// in tape order. Whole segments whose fills all precede `from_seq` are skipped by the
/// `prior_max_seq` in the next segment's META and never read past their first bytes.
/// Never modifies anything; after an error the iterator ends.
pub struct TapeReader {
    scanner: Scanner,
    from_seq: u64,
    meta: Option<Meta>,
    max_seq: u64,
    failed: bool,
}

/// Where to read the tape for fills of seq `from_seq` on: the index of the last segment whose
/// earlier segments hold no fill of a seq >= from_seq (from their META's `prior_max_seq`), and
/// the highest seq of the segments skipped.
pub(crate) fn tape_start(
    segments: &[(crate::segment::SegmentId, std::path::PathBuf)],
    from_seq: u64,
) -> Result<(usize, u64), JournalError> {
    let skippable = if from_seq > 1 { segments.len() } else { 0 };
    for i in (1..skippable).rev() {
        let (id, path) = &segments[i];
        let prior = read_meta(path, TAPE, *id)?.prior_max_seq;
        if prior < from_seq {
            return Ok((i, prior));
        }
    }
    Ok((0, 0))
}

impl TapeReader {
    pub fn open(dir: &Path, from_seq: u64) -> Result<TapeReader, JournalError> {
        let segments = crate::segment::list_segments(dir, TAPE)?;
        let (start, max_seq) = tape_start(&segments, from_seq)?;
        Ok(TapeReader {
            scanner: Scanner::new(dir, TAPE, start, false)?,
            from_seq,
            meta: None,
            max_seq,
            failed: false,
        })
    }

    /// Bytes of torn tail the reader stopped at.
    pub fn truncated_bytes(&self) -> u64 {
        self.scanner.truncated_bytes
    }

    /// Number of the next fill on the tape (fills are numbered from 1 in tape order).
    pub fn next_number(&self) -> u64 {
        self.scanner.next
    }

    /// The highest seq of any fill read so far or in the skipped segments.
    pub fn max_seq(&self) -> u64 {
        self.max_seq
    }

    /// The META of the segment being read.
    pub fn meta(&self) -> Option<&Meta> {
        self.meta.as_ref()
    }

    fn step(&mut self) -> Result<Option<TapeFill>, JournalError> {
        while let Some(item) = self.scanner.next_item()? {
            match item.decoded {
                Decoded::Meta(m) => self.meta = Some(m),
                Decoded::Fill(f) => {
                    self.max_seq = self.max_seq.max(f.seq);
                    if f.seq >= self.from_seq {
                        return Ok(Some(f));
                    }
                }
                _ => unreachable!("the tape decoder yields only META and FILL"),
            }
        }
        Ok(None)
    }
}

impl Iterator for TapeReader {
    type Item = Result<TapeFill, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.step() {
            Ok(f) => f.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Everything a tape holds, as read by [`read_tape`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TapeContents {
    /// Fills in tape (arrival) order.
    pub fills: Vec<TapeFill>,
    /// Bytes of torn tail a writer would cut (left in place here).
    pub truncated_bytes: u64,
    pub meta: Option<Meta>,
}

/// Reads a whole tape directory without modifying it. Use [`TapeReader`] to stream.
pub fn read_tape(dir: &Path) -> Result<TapeContents, JournalError> {
    let mut reader = TapeReader::open(dir, 0)?;
    let mut out = TapeContents::default();
    for f in reader.by_ref() {
        out.fills.push(f?);
    }
    out.truncated_bytes = reader.truncated_bytes();
    out.meta = reader.meta;
    Ok(out)
}

/// The append side of the trade tape. One writer per directory; obtained from
/// [`crate::Recovery`].
pub struct TradeTape {
    writer: SegmentWriter,
    state: DeltaState,
    /// Number of the next fill on the tape (segments are named by it).
    next_number: u64,
    /// Highest seq of any fill on the tape (for the next segment's META).
    max_seq: u64,
    meta: Meta,
    payload: Vec<u8>,
    record: Vec<u8>,
}

impl std::fmt::Debug for TradeTape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TradeTape")
            .field("segment", &self.writer.path())
            .field("next_number", &self.next_number)
            .finish_non_exhaustive()
    }
}

impl TradeTape {
    pub(crate) fn resume(
        cfg: &StoreConfig,
        meta: Meta,
        tail: Option<&Tail>,
        state: DeltaState,
        next_number: u64,
        max_seq: u64,
    ) -> Result<TradeTape, JournalError> {
        let dir = &cfg.tape_dir;
        let (writer, state) = match tail {
            Some(t) => (
                SegmentWriter::resume(
                    dir,
                    TAPE,
                    t,
                    crate::orders::fresh_len(&meta),
                    cfg.segment_bytes,
                    cfg.durability,
                )?,
                state,
            ),
            None => {
                let mut st = DeltaState::default();
                st.apply_meta();
                (
                    SegmentWriter::create(
                        dir,
                        TAPE,
                        SegmentId {
                            first: next_number,
                            part: 0,
                        },
                        &Meta {
                            prior_max_seq: max_seq,
                            ..meta.clone()
                        },
                        cfg.segment_bytes,
                        cfg.durability,
                        WriterStats::default(),
                    )?,
                    st,
                )
            }
        };
        Ok(TradeTape {
            writer,
            state,
            next_number,
            max_seq,
            meta,
            payload: Vec::with_capacity(64),
            record: Vec::with_capacity(64),
        })
    }

    /// Buffers one fill of the command with `seq` (exchange time `time`): the `fill_index`-th
    /// fill of that command in `fill.security`. Fills are taped in arrival order: executors
    /// complete different securities out of seq order. Nothing is written before
    /// [`Self::commit`] (beyond 1 MiB of buffered records, written unsynced).
    pub fn append(
        &mut self,
        seq: u64,
        time: Timestamp,
        fill_index: u32,
        fill: &Fill,
    ) -> Result<(), JournalError> {
        self.writer.check()?;
        let f = TapeFill {
            seq,
            time,
            fill_index,
            fill: *fill,
        };
        self.record.clear();
        encode_fill(&self.state, &f, &mut self.payload, &mut self.record);
        if !self.writer.fits(self.record.len()) {
            if self.record.len() as u64 > self.writer.capacity() {
                return Err(JournalError::RecordTooLarge {
                    record: self.record.len(),
                    segment_bytes: self.writer.capacity(),
                });
            }
            let meta = Meta {
                prior_max_seq: self.max_seq,
                ..self.meta.clone()
            };
            self.writer.roll(
                SegmentId {
                    first: self.next_number,
                    part: 0,
                },
                &meta,
            )?;
            self.state.reset();
            self.state.apply_meta();
            self.record.clear();
            encode_fill(&self.state, &f, &mut self.payload, &mut self.record);
        }
        self.writer.push(&self.record)?;
        self.state.apply_fill(&f);
        self.next_number += 1;
        self.max_seq = self.max_seq.max(seq);
        Ok(())
    }

    /// Group commit, as [`crate::OrderJournal::commit`] (no high-water mark: missing fills of
    /// journaled commands are restored from the journal).
    pub fn commit(&mut self) -> Result<(), JournalError> {
        self.writer.commit()
    }

    /// Number of the next fill on the tape.
    pub fn next_number(&self) -> u64 {
        self.next_number
    }

    /// Writes and fsyncs made so far.
    pub fn stats(&self) -> WriterStats {
        self.writer.stats
    }
}
