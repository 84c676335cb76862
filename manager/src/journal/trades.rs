//! The trade tape: every fill, keyed by (seq of the aggressing command, fill index).

use std::fs;
use std::path::Path;

use matching::Fill;

use super::codec::{decode, encode_fill, Decoded, DeltaState};
use super::segment::{remove_torn, scan_dir, ScanReport, SegmentWriter, Sink, TRADES};
use super::{io_err, Durability, JournalConfig, JournalError};

/// One tape entry: seq of the command that traded, index of the fill within it, the fill.
pub type Trade = (u64, u32, Fill);

#[derive(Default)]
struct TradeSink {
    state: DeltaState,
    trades: Vec<Trade>,
}

impl Sink for TradeSink {
    fn segment_start(&mut self) {
        self.state.reset();
    }

    fn record(&mut self, payload: &[u8]) -> Result<bool, String> {
        match decode(&mut self.state, payload)? {
            Decoded::Fill(seq, idx, fill) => {
                self.trades.push((seq, idx, fill));
                Ok(true)
            }
            _ => Err("order or dictionary record in the trade tape".into()),
        }
    }
}

fn scan(dir: &Path) -> Result<(TradeSink, ScanReport), JournalError> {
    let mut sink = TradeSink::default();
    let report = scan_dir(dir, TRADES, &mut sink)?;
    Ok((sink, report))
}

/// Reads a trade tape directory without modifying it, in tape order (seq, fill_index).
pub fn read_trades(dir: &Path) -> Result<Vec<Trade>, JournalError> {
    Ok(scan(dir)?.0.trades)
}

/// The append side of the trade tape. One writer per directory.
pub struct TradeTape {
    writer: SegmentWriter,
    state: DeltaState,
    /// Number of the next fill on the tape (segments are named by it).
    next_number: u64,
    durability: Durability,
    segment_bytes: u64,
    payload: Vec<u8>,
    record: Vec<u8>,
}

impl std::fmt::Debug for TradeTape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TradeTape")
            .field("segment", &self.writer.path())
            .field("durability", &self.durability)
            .field("next_number", &self.next_number)
            .finish_non_exhaustive()
    }
}

impl TradeTape {
    /// Opens (creating the dir) and recovers like [`super::OrderJournal::open`]; returns the
    /// fills already on the tape.
    pub fn open(cfg: JournalConfig) -> Result<(TradeTape, Vec<Trade>), JournalError> {
        cfg.validate()?;
        fs::create_dir_all(&cfg.dir).map_err(|e| io_err(&cfg.dir, e))?;
        let (mut sink, report) = scan(&cfg.dir)?;
        remove_torn(&report)?;
        let writer = match &report.tail {
            Some(tail) => SegmentWriter::resume(&cfg, TRADES, tail)?,
            None => SegmentWriter::create(&cfg, TRADES, report.next)?,
        };
        if report.tail.is_none() {
            sink.state.reset();
        }
        if report.truncated_bytes > 0 {
            tracing::warn!(dir = %cfg.dir.display(), bytes = report.truncated_bytes, "cut torn trade tape tail");
        }
        let tape = TradeTape {
            writer,
            state: sink.state,
            next_number: report.next,
            durability: cfg.durability,
            segment_bytes: cfg.segment_bytes,
            payload: Vec::with_capacity(64),
            record: Vec::with_capacity(64),
        };
        Ok((tape, sink.trades))
    }

    /// Buffers one fill. Fills are taped in arrival order: executors complete different
    /// securities' commands out of seq order, so (seq, fill_index) need not increase (the
    /// export sorts). With [`Durability::Always`] it is written and fsynced before returning.
    pub fn append(&mut self, seq: u64, fill_index: u32, fill: &Fill) -> Result<(), JournalError> {
        self.writer.check()?;
        self.record.clear();
        encode_fill(
            &self.state,
            seq,
            fill_index,
            fill,
            &mut self.payload,
            &mut self.record,
        );
        if !self.writer.fits(self.record.len()) {
            if !self.writer.is_fresh() {
                self.writer.roll(self.next_number)?;
                self.state.reset();
                self.record.clear();
                encode_fill(
                    &self.state,
                    seq,
                    fill_index,
                    fill,
                    &mut self.payload,
                    &mut self.record,
                );
            }
            if !self.writer.fits(self.record.len()) {
                return Err(JournalError::RecordTooLarge {
                    record: self.record.len(),
                    segment_bytes: self.segment_bytes,
                });
            }
        }
        self.writer.push(&self.record)?;
        self.state.apply_fill(seq, fill_index, fill);
        self.next_number += 1;
        if self.durability == Durability::Always {
            self.writer.commit()?;
        }
        Ok(())
    }

    /// Group commit, as [`super::OrderJournal::commit`].
    pub fn commit(&mut self) -> Result<(), JournalError> {
        self.writer.commit()
    }
}
