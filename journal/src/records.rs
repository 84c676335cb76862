//! The typed records a journal and a tape hold, as appended and as read back.

use matching::{Command, Fill, NewOrder, RejectReason, Timestamp};

/// What one sequenced journal record stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A command the exchange accepted and sequenced (NEW, CANCEL, AMEND or PHASE).
    Command(Command),
    /// `count` seqs (from the record's seq on) declared lost when an operator accepted a loss
    /// at recovery: numbering stays dense and none of them is ever used again.
    Gap { count: u64 },
}

/// One sequenced record of the order journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalRecord {
    /// The record's seq; a [`Entry::Gap`] covers `seq..seq + count`.
    pub seq: u64,
    /// Exchange time of the command (ns since the Unix epoch).
    pub time: Timestamp,
    /// The submitting session's own reference for the command; 0 for the exchange's own
    /// commands (phases, gaps).
    pub client_ref: u64,
    pub entry: Entry,
}

impl JournalRecord {
    /// The seq the record after this one carries.
    pub fn next_seq(&self) -> u64 {
        match self.entry {
            Entry::Command(_) => self.seq + 1,
            Entry::Gap { count } => self.seq + count,
        }
    }
}

/// A NEW refused before sequencing. It consumes no seq but burns its order id: after a restart
/// the id is still a duplicate and the order is still listed as REJECTED to its broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RejectedNew {
    pub order: NewOrder,
    pub reason: RejectReason,
    pub time: Timestamp,
    pub client_ref: u64,
    /// The journal's next seq when it was refused: it came after every record below this seq.
    pub next_seq: u64,
}

/// One item of the order journal, in the order it was appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalItem {
    Record(JournalRecord),
    Rejected(RejectedNew),
}

/// One fill on the trade tape. Its identity is `(seq, fill.security, fill_index)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TapeFill {
    /// Seq of the command that traded (a PHASE for auction trades).
    pub seq: u64,
    /// Exchange time of that command.
    pub time: Timestamp,
    /// Index of the fill among the command's fills in this security, from 0.
    pub fill_index: u32,
    pub fill: Fill,
}

impl TapeFill {
    /// The tape's identity of the fill: (seq, security, fill index).
    pub fn key(&self) -> (u64, u32, u32) {
        (self.seq, self.fill.security.0, self.fill_index)
    }
}
