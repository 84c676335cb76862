//! # journal: the order journal and the trade tape of gridmatch
//!
//! Owns the manager's durable record of the trading day: every sequenced command (the order
//! journal), every NEW refused before sequencing, and every fill (the trade tape); the
//! checkpoints that bound a long day's memory and recovery time (book snapshots, the index of
//! finished orders, the manifest tying them to a journal seq: [`snapshots`], [`finished`]); their
//! recovery after a crash with a precise report of anything lost; the binding of a journal to
//! the listing and rules it was written with; the data directory's exclusive lock; and the CSV
//! export in the replay formats.
//!
//! Must not: match, validate or route orders (it depends on `matching` for value types only),
//! start threads or tasks, or drop anything silently: a loss is reported and a torn tail is
//! cut with a WARN.
//!
//! ## Use
//! [`recover`] opens a data directory's journal and tape read-only, cross-checks them and
//! returns a [`Recovery`] with a [`RecoveryReport`]. Without a loss, [`Recovery::open`] cuts torn
//! tails and gives the writers ([`Store`]); with one it refuses and [`Recovery::accept_loss`]
//! (the operator's explicit decision) appends GAP records over the lost seqs first. Appends
//! buffer; [`OrderJournal::commit`] / [`TradeTape::commit`] make them durable. Read back with
//! [`JournalReader`] / [`TapeReader`] (streaming, one segment in memory, from any seq) or
//! [`read_journal`] / [`read_tape`] (everything). [`DataDirLock`] keeps a second manager out.
//!
//! ## Files
//! ```text
//! <data>/LOCK                            DataDirLock (pid inside)
//! <data>/journal/orders-<seq:012>.seg    journal segments, named by their first seq
//! <data>/journal/orders-<seq:012>-<k>.seg  k-th further segment starting at the same seq
//!                                        (the one before held only rejected NEWs)
//! <data>/journal/COMMITTED               high-water mark (below)
//! <data>/journal/listing.csv             the listing the journal was written with
//! <data>/tape/trades-<n:012>.seg         tape segments, named by their first trade number
//!                                        (fills counted from 1 in tape order)
//! <data>/snapshots/MANIFEST              the latest checkpoint ([`snapshots`])
//! <data>/snapshots/book-<sec>-<seq>.snap book snapshots
//! <data>/snapshots/run-<n>.fin           sorted runs of finished orders ([`finished`])
//! ```
//! A segment never exceeds `segment_bytes`: a writer rolls to a new file when the next record
//! (with its dictionary record, if any) would not fit.
//!
//! ## Segment header (17 bytes)
//! ```text
//! magic[4] "GMJO" (journal) | "GMJT" (tape)
//! version u8 = 2            format 2; version 1 files (gridmatch before the journal crate)
//!                           are refused with an error, they cannot be read
//! first   u64 LE            seq (journal) / trade number (tape) of the segment's first record
//! crc     u32 LE            CRC32 of the 13 bytes above
//! ```
//!
//! ## Record framing
//! ```text
//! len     stop-bit uint, 1..=1024     payload length
//! payload len bytes                   first byte is the tag
//! crc     u32 LE                      CRC32 (crc32fast) of the len bytes and the payload
//! ```
//! Stop-bit (FAST) uints: 7 bits per byte, most significant first, high bit set on the last byte
//! only, no leading zero byte; so zero-filled space never parses as a record. `zz(x)`: zigzag
//! of a signed delta. Round factors are divided out: a price delta by the largest of 1, 10, 50,
//! 100 that divides it (`pc` = its index, carried in the tag), a quantity by the largest of 1,
//! 10, 100, 1000 (`qc`). `scaled(q)` = `q / qscale[qc] << 2 | qc`. `T` = exchange time as
//! `zz(dt / tscale[tc]) << 2 | tc` with `dt` = time - previous record's time in the segment
//! and tscale = 1, 1e3, 1e6, 1e9 ns. Per broker `b`, `id[b]` is the broker's last order id (its
//! last NEW or rejected NEW; on the tape, the last id it had on either side of a fill) and
//! `ref[b]` its last client reference; `price[s]` is security `s`'s last non-zero price.
//! `R` = `zz(client_ref - ref[b])`; `I` = `zz(id - id[b])`.
//!
//! ## Journal payloads
//! ```text
//! META     0x02 | version uint (2) | fingerprint u64 LE | rules_len uint (<= 32) | rules
//!          | prior_max_seq uint (journal: 0)                      first record of a segment
//! DICT     0x00 | broker uint | name_len uint (<= 256) | name UTF-8
//!          precedes the first record of each broker in each segment
//! NEW      0bPPokkks1: s side (0 BUY, 1 SELL), kkk type (index in OrderType::ALL: LO MP MTL
//!          IOC FOK ATO ATC), o=1 price is 0 and omitted, PP price scale
//!          | T | broker uint | R | I | security uint | [zz((price - price[s]) / pscale)]
//!          | scaled(qty)
//! CANCEL   0x04 | T | broker uint | R | I (the order cancelled) | security uint
//! AMEND    0b00PP0110 | T | broker uint | R | I (the order amended) | security uint
//!          | zz((new price - price[s]) / pscale) | scaled(new qty)
//! PHASE    0b0ppp1000: ppp index in Phase::ALL (ATO CONTINUOUS BREAK ATC CLOSED)
//!          | T | client_ref uint
//! GAP      0x0A | T | client_ref uint | count uint (>= 1)
//! REJECTED 0x0C | T | broker uint | R | I | security uint | 0b0000skkk | zz(price)
//!          | qty uint | reason uint (index in RejectReason::ALL)
//! ```
//! NEW, CANCEL, AMEND and PHASE take one seq each, GAP `count` seqs, in file order from the
//! header's first seq: seqs are implicit and appends are gap-free. META, DICT and REJECTED take
//! none. A typical NEW is 13 bytes: length 1, tag 1, time 1, broker 1, ref 1, id 1, security 1,
//! price 1, qty 1, CRC 4 (time is 1 byte for a delta of 0, or of up to 15 whole microseconds,
//! milliseconds or seconds; 2-3 bytes for an arbitrary nanosecond delta).
//!
//! ## Tape payloads
//! ```text
//! META     as above; prior_max_seq = highest seq of any fill in the earlier segments, so a
//!          reader from seq S skips every segment before one whose META says < S
//! FILL     0bQQPPfaa1: aa aggressor (0 BUY, 1 SELL, 2 AUCTION), f=1 continuation: same seq,
//!          time and security as the previous fill of the segment and fill index + 1 (the
//!          bracketed fields are absent), PP price scale, QQ qty scale
//!          | [zz(seq - prev seq) | T | security uint | fill_index uint]
//!          | zz((price - price[s]) / pscale) | qty / qscale[QQ]
//!          | buy_broker uint | zz(buy - id[buy_broker]) | sell_broker uint | zz(sell - id[sell_broker])
//! ```
//! The tape's identity of a fill is (seq, security, fill index): a PHASE's auction trades
//! span many securities, each numbered from 0. Fills are taped in arrival order (executors
//! complete different securities out of seq order); readers that need seq order sort.
//!
//! All delta references and the broker dictionary reset at each segment start, so any segment
//! decodes alone. A broker id always keeps the name it was first journaled with.
//!
//! ## High-water mark (`journal/COMMITTED`)
//! Two 160-byte text slots (`gen=<n> seq=<last committed seq> segment=<file name>
//! length=<committed bytes of that segment> crc32=<hex of what precedes>`, padded with spaces,
//! line feed). Created once aside and renamed in; then each update overwrites the older slot
//! (generation n goes to slot n % 2) and makes one `fdatasync` (none under `never`): a write
//! torn by a crash leaves the other slot, and the reader takes the intact slot with the
//! highest generation. Written after a commit made those bytes durable, at most every
//! [`StoreConfig::hwm_interval`] (100 ms by default) or every [`StoreConfig::hwm_commits`]
//! commits, and on [`OrderJournal::close`]. Records committed after the last update (at most
//! that interval) are not covered by it.
//!
//! ## Recovery rules
//! In the last segment, a bad record (length past EOF, zero bytes, CRC failure) with no intact
//! record at any later offset is a torn tail; trailing segments with no intact record are torn
//! files. Both are cut with a WARN, unless the cut reaches below the high-water mark: then it
//! is a loss. A bad record with intact data after it, or any bad record in an earlier segment,
//! is [`JournalError::Corrupt`] naming the file and byte offset. [`recover`] reports as a
//! [`Loss`]: seqs below the high-water mark the journal no longer has, missing segments
//! (holes in the numbering), tape fills of seqs beyond the journal's end, a missing
//! high-water mark beside a non-empty journal.
//!
//! Layout: `varint` (integers), `codec` (framing and payloads), `segment` (files, scanner,
//! appender), `records` (public record types), `orders` (journal writer and readers), `tape`,
//! `hwm` (high-water mark), `listing` (binding), `recover`, `lock`, `export`.

mod codec;
mod export;
mod files;
pub mod finished;
mod hwm;
mod listing;
mod lock;
mod orders;
pub mod packs;
mod records;
mod recover;
mod segment;
pub mod snapshots;
mod tape;
mod varint;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use codec::{Meta, FORMAT_VERSION, MAX_BROKER_NAME, MAX_RULES_NAME};
pub use export::{export_csv, ExportOptions, ExportSummary};
pub use files::{sync_dir, write_aside};
pub use finished::{FinalState, FinishedOrder, FinishedRun};
pub use hwm::HighWaterMark;
pub use listing::{journal_listing, listing_fingerprint, Binding};
pub use lock::{DataDirLock, LockError};
pub use orders::{read_journal, JournalContents, JournalReader, OrderJournal};
pub use records::{Entry, JournalItem, JournalRecord, RejectedNew, TapeFill};
pub use recover::{
    recover, recover_from, Cut, Hole as LostHole, Loss, Recovery, RecoveryReport, Store, TailLoss,
};
pub use segment::WriterStats;
pub use snapshots::{BookRef, BookSnapshot, BrokerRef, LiveOrder, Manifest, RunRef, SnapshotDir};
pub use tape::{read_tape, TapeContents, TapeReader, TradeTape};

/// Default segment size: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Smallest accepted segment size: a header, a META and a few records.
pub const MIN_SEGMENT_BYTES: u64 = 128;

/// When committed records count as safe (`--fsync always|batch|never`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Like `Batch` in this crate (write + fsync at every commit); the manager commits after
    /// every command under it instead of once per batch.
    Always,
    /// Group commit: `commit()` writes what was appended and fsyncs once.
    #[default]
    Batch,
    /// `commit()` writes to the OS only: survives a process kill, not a power loss.
    Never,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Always => "always",
            Durability::Batch => "batch",
            Durability::Never => "never",
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `--fsync` value that is not `always`, `batch` or `never`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown durability {0:?}: expected always, batch or never")]
pub struct ParseDurabilityError(pub String);

impl FromStr for Durability {
    type Err = ParseDurabilityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "always" => Ok(Durability::Always),
            "batch" => Ok(Durability::Batch),
            "never" => Ok(Durability::Never),
            _ => Err(ParseDurabilityError(s.to_owned())),
        }
    }
}

/// Where and how the journal and the tape are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    pub journal_dir: PathBuf,
    pub tape_dir: PathBuf,
    /// Maximum segment file size in bytes (at least [`MIN_SEGMENT_BYTES`]).
    pub segment_bytes: u64,
    pub durability: Durability,
    /// The high-water mark is updated at a commit when this long has passed since its last
    /// update...
    pub hwm_interval: Duration,
    /// ... or when this many commits were made since (0: only by time).
    pub hwm_commits: u64,
}

impl StoreConfig {
    /// `<data_dir>/journal` and `<data_dir>/tape`, 64 MiB segments, batch durability,
    /// high-water mark at most every 100 ms.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        StoreConfig {
            journal_dir: data_dir.join("journal"),
            tape_dir: data_dir.join("tape"),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            durability: Durability::Batch,
            hwm_interval: Duration::from_millis(100),
            hwm_commits: 0,
        }
    }

    fn validate(&self) -> Result<(), JournalError> {
        if self.segment_bytes < MIN_SEGMENT_BYTES {
            return Err(JournalError::Config(format!(
                "segment_bytes {} is below the minimum of {MIN_SEGMENT_BYTES}",
                self.segment_bytes
            )));
        }
        if self.journal_dir == self.tape_dir {
            return Err(JournalError::Config(format!(
                "journal and tape need separate directories, both are {}",
                self.journal_dir.display()
            )));
        }
        Ok(())
    }
}

/// Everything that can go wrong with a journal or trade tape.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file operation failed; the message names the file.
    #[error("journal I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Damage that is not a torn tail.
    #[error("corrupt journal record in {} at offset {offset}: {detail}", segment.display())]
    Corrupt {
        segment: PathBuf,
        offset: u64,
        detail: String,
    },
    /// A segment is missing: numbering does not continue from the previous one.
    #[error("journal gap: {} starts at {unit} {found}, expected {expected}", segment.display())]
    Gap {
        segment: PathBuf,
        expected: u64,
        found: u64,
        unit: &'static str,
    },
    /// `append` was given a seq other than `next_seq()`.
    #[error("out of sequence append: expected seq {expected}, got {got}")]
    OutOfSequence { expected: u64, got: u64 },
    /// A broker id reappeared with a different name.
    #[error("broker {id} is journaled as {old:?}, cannot rename it to {new:?}")]
    BrokerRenamed { id: u32, old: String, new: String },
    #[error("broker name of {0} bytes exceeds the {MAX_BROKER_NAME}-byte limit")]
    BrokerNameTooLong(usize),
    /// An append the format cannot carry (e.g. a gap of 0 seqs, seqs past u64::MAX).
    #[error("cannot journal this record: {0}")]
    Invalid(String),
    /// The record (with its dictionary record) is larger than an empty segment.
    #[error("record of {record} bytes does not fit in a {segment_bytes}-byte segment")]
    RecordTooLarge { record: usize, segment_bytes: u64 },
    #[error("invalid journal configuration: {0}")]
    Config(String),
    /// An earlier write failed, so the segment may end in a partial record; reopen to recover.
    #[error("journal segment {} had a failed write; reopen the journal to recover", segment.display())]
    Poisoned { segment: PathBuf },
    /// The listing given differs from the one the journal was written with.
    #[error(
        "the listing given (fingerprint {given:016x}) differs from the one this journal was \
         written with (fingerprint {journal:016x}); the journal's own copy is {}",
        copy.display()
    )]
    ListingMismatch {
        journal: u64,
        given: u64,
        copy: PathBuf,
    },
    /// The rules preset given differs from the one the journal was written with.
    #[error("the journal in {} was written under rules {journal:?}, not {given:?}", dir.display())]
    RulesMismatch {
        journal: String,
        given: String,
        dir: PathBuf,
    },
    /// A segment's META disagrees with the journal's listing copy or rules.
    #[error("{} was written with listing fingerprint {found:016x} and rules {found_rules:?}, but the journal's listing copy has fingerprint {expected:016x} and rules {expected_rules:?}", segment.display())]
    MetaMismatch {
        segment: PathBuf,
        expected: u64,
        found: u64,
        expected_rules: String,
        found_rules: String,
    },
    /// The high-water mark file cannot be read.
    #[error("high-water mark {} is damaged ({detail}); if the journal is known to be whole, delete the file to start without the check", path.display())]
    HighWaterMark { path: PathBuf, detail: String },
    /// Recovery found a loss the operator has not accepted.
    #[error("{0}")]
    Loss(Box<Loss>),
    /// Export met a security id the listing does not have.
    #[error("security id {0} is not in the listing")]
    UnknownSecurity(u32),
    /// Export met a broker id without a dictionary entry (cannot happen with an intact journal).
    #[error("broker id {0} has no name in the journal")]
    UnknownBroker(u32),
    /// Writing CSV failed.
    #[error("CSV export to {}: {detail}", path.display())]
    Csv { path: PathBuf, detail: String },
}

/// Wraps an I/O error with the path it concerns, keeping its kind.
pub(crate) fn io_err(path: &Path, e: std::io::Error) -> JournalError {
    JournalError::Io(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

/// `12345678` as `12,345,678`, for reports people read.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_separators() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(41_200), "41,200");
        assert_eq!(super::thousands(1_234_567), "1,234,567");
        assert_eq!(super::thousands(u64::MAX), "18,446,744,073,709,551,615");
    }
}
