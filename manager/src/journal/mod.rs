//! # The order journal and the trade tape
//!
//! Every sequenced command is appended here before it is routed; a broker hears "accepted" only
//! after [`OrderJournal::commit`] (group commit) under the chosen [`Durability`]. Fills go to a
//! [`TradeTape`] with the same framing. Both are directories of fixed-size segment files that
//! decode independently. This module only stores and reads back; it never matches or validates
//! orders, and it does not depend on the engine, only on `matching`'s value types.
//!
//! ## Files
//! `<dir>/orders-<first seq, 12+ digits>.seg` (trade tape: `trades-<first trade number>.seg`,
//! where the trade number counts fills on the tape from 1, because one seq's fills may span two
//! segments). A segment never exceeds `segment_bytes`: a writer rolls to a new file when the next
//! record (with its dictionary record, if any) would not fit.
//!
//! ## Segment header (17 bytes)
//! ```text
//! magic[4] "GMJO" (orders) | "GMJT" (trades)
//! version u8 = 1
//! first   u64 LE   seq (orders) / trade number (trades) of the segment's first record
//! crc     u32 LE   CRC32 of the 13 bytes above
//! ```
//!
//! ## Record framing
//! ```text
//! len     stop-bit uint, 1..=1024     payload length
//! payload len bytes                   first byte is the tag, see below
//! crc     u32 LE                      CRC32 (crc32fast) of the len bytes and the payload
//! ```
//! Stop-bit (FAST) uints: 7 bits per byte, most significant first, high bit set on the last byte
//! only, no leading zero byte. Zero-filled space therefore never parses as a record.
//! `zz(x)` = zigzag of a signed delta. Round factors are divided out: a price delta is divided
//! by the largest of 1, 10, 50, 100 (`pc` = its index) that divides it, a quantity by the
//! largest of 1, 10, 100, 1000 (`qc`), so a 5-tick move or a 500-share lot is one byte.
//! `scaled(q)` = `q / qscale[qc] << 2 | qc` (scale index inline).
//!
//! ## Payloads (tag low 2 bits = record type)
//! ```text
//! 0 DICT   tag=0x00 | broker uint | name_len uint | name UTF-8 (<= 256 bytes)
//! 1 NEW    tag=0bPPokks01: s side (0=BUY 1=SELL), kk type (LO/MP/IOC/FOK), o=1 price is 0 and
//!          omitted, PP price scale index
//!          | zz(id - prev_id) | broker uint | security uint
//!          | [zz((price - last_price[security]) / pscale[PP])] | scaled(qty)
//! 2 CANCEL tag=0x02 | zz(id - prev_id) | broker uint | security uint
//! 3 FILL   tag=0bQQPPfs11: s aggressor, f=1 same seq as the previous fill with index + 1,
//!          PP price scale index, QQ qty scale index
//!          | [zz(seq - prev_seq) | fill_index uint] (absent when f=1) | security uint
//!          | zz((price - last_price[security]) / pscale[PP]) | qty / qscale[QQ]
//!          | zz(buy - prev_id) | zz(sell - buy) | buy_broker uint | sell_broker uint
//! ```
//! A typical NEW record is 11 bytes: length 1, tag 1, id 1, broker 1, security 1, price 1,
//! qty 1, CRC 4.
//! Order seqs are implicit: the header's first seq, plus one per NEW/CANCEL record (appends must
//! be gap-free). `prev_id` is the last NEW id (orders) or the larger id of the last fill
//! (trades); `last_price` is the last non-zero price per security. All delta references, and the
//! broker dictionary, reset to zero/empty at each segment start, so any segment decodes alone.
//! A DICT record precedes the first NEW/CANCEL of each broker in each segment; a broker id
//! always keeps the name it was first journaled with.
//!
//! ## Recovery
//! In the last segment, a bad record (length past EOF, zero bytes, CRC failure) with no intact
//! record at any later offset is a torn tail: it is cut and counted in
//! [`Recovered::truncated_bytes`], as is a last segment whose header never reached disk. A bad
//! record with intact data after it, any bad record in an earlier segment, or a missing segment
//! (numbering gap) is an error naming the file and byte offset.
//!
//! Layout: `varint` (integers), `codec` (framing and payloads), `segment` (files, scan,
//! appender), `orders`, `trades`, `export` (CSV in the replay formats).

mod codec;
mod export;
mod orders;
mod segment;
mod trades;
mod varint;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use export::export_csv;
pub use orders::{read_order_segment, read_orders, OrderJournal, Recovered};
pub use trades::{read_trades, Trade, TradeTape};

/// Default segment size: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Smallest accepted segment size: a header plus a few records.
pub const MIN_SEGMENT_BYTES: u64 = 64;

/// When an appended record counts as safe (`--fsync always|batch|never`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Durability {
    /// Every append is written and fsynced before it returns.
    Always,
    /// Group commit: `commit()` writes the batch and fsyncs once.
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

/// Where and how a journal (or trade tape) is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalConfig {
    pub dir: PathBuf,
    /// Maximum segment file size in bytes (at least [`MIN_SEGMENT_BYTES`]).
    pub segment_bytes: u64,
    pub durability: Durability,
}

impl JournalConfig {
    /// `dir` with 64 MiB segments and batch (group-commit) durability.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        JournalConfig {
            dir: dir.into(),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            durability: Durability::Batch,
        }
    }

    fn validate(&self) -> Result<(), JournalError> {
        if self.segment_bytes < MIN_SEGMENT_BYTES {
            return Err(JournalError::Config(format!(
                "segment_bytes {} is below the minimum of {MIN_SEGMENT_BYTES}",
                self.segment_bytes
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
    #[error("broker name of {0} bytes exceeds the 256-byte limit")]
    BrokerNameTooLong(usize),
    /// The record (with its dictionary record) is larger than an empty segment.
    #[error("record of {record} bytes does not fit in a {segment_bytes}-byte segment")]
    RecordTooLarge { record: usize, segment_bytes: u64 },
    #[error("invalid journal configuration: {0}")]
    Config(String),
    /// An earlier write failed, so the segment may end in a partial record; reopen to recover.
    #[error("journal segment {} had a failed write; reopen the journal to recover", segment.display())]
    Poisoned { segment: PathBuf },
    /// Export met a security id the security table does not list.
    #[error("security id {0} is not in the security table")]
    UnknownSecurity(u32),
    /// Export met a broker id without a dictionary entry (cannot happen with an intact journal).
    #[error("broker id {0} has no name in the journal")]
    UnknownBroker(u32),
    /// Export met a broker name the CSV format cannot carry.
    #[error("broker name {0:?} cannot be exported: it is empty or contains a comma, quote or line break")]
    UnexportableBroker(String),
}

/// Wraps an I/O error with the path it concerns, keeping its kind.
pub(crate) fn io_err(path: &Path, e: std::io::Error) -> JournalError {
    JournalError::Io(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}
