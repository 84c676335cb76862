//! Per-session message store: the two sequence numbers and every application message sent, so a
//! ResendRequest can be answered across restarts of the gateway.
//!
//! [`FileStore`] is one append-only [`RecordLog`] per session; a torn or corrupt tail (crash
//! mid-write) is cut on open. A reset truncates the log. Sent messages are read back from the file on resend; only their offsets stay in
//! memory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::reclog::{LogError, RecordLog};

/// Store failures; the session disconnects on any of them rather than break its promises.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("message store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("message store {path}: record for seq {seq} unreadable")]
    Corrupt { path: PathBuf, seq: u64 },
}

/// What the session needs to keep across restarts.
pub trait MessageStore: Send {
    /// MsgSeqNum of the next message we send.
    fn next_sender_seq(&self) -> u64;
    /// MsgSeqNum we expect next from the counterparty.
    fn next_target_seq(&self) -> u64;
    fn set_next_sender_seq(&mut self, n: u64) -> Result<(), StoreError>;
    fn set_next_target_seq(&mut self, n: u64) -> Result<(), StoreError>;
    /// Records an application message sent with `seq`; the next sender seq becomes `seq + 1`.
    fn store_sent(&mut self, seq: u64, raw: &[u8]) -> Result<(), StoreError>;
    /// The stored messages with `begin <= seq <= end`, in order.
    fn sent_range(&self, begin: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    /// Both sequence numbers back to 1, sent messages forgotten.
    fn reset(&mut self) -> Result<(), StoreError>;
    /// Nothing was ever recorded here (a new session, or a lost store): no number we could
    /// send has been seen by the peer.
    fn is_fresh(&self) -> bool {
        false
    }
}

/// In-memory store, for tests and for sessions that must leave no trace.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    sender: u64,
    target: u64,
    sent: BTreeMap<u64, Vec<u8>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            sender: 1,
            target: 1,
            sent: BTreeMap::new(),
        }
    }
}

impl MemoryStore {
    /// An empty store whose next outgoing MsgSeqNum is `sender`.
    pub fn starting_at(sender: u64) -> Self {
        MemoryStore {
            sender: sender.max(1),
            ..MemoryStore::default()
        }
    }
}

impl MessageStore for MemoryStore {
    fn next_sender_seq(&self) -> u64 {
        self.sender
    }
    fn next_target_seq(&self) -> u64 {
        self.target
    }
    fn set_next_sender_seq(&mut self, n: u64) -> Result<(), StoreError> {
        self.sender = n;
        Ok(())
    }
    fn set_next_target_seq(&mut self, n: u64) -> Result<(), StoreError> {
        self.target = n;
        Ok(())
    }
    fn store_sent(&mut self, seq: u64, raw: &[u8]) -> Result<(), StoreError> {
        self.sent.insert(seq, raw.to_vec());
        self.sender = seq + 1;
        Ok(())
    }
    fn sent_range(&self, begin: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        if begin > end {
            return Ok(Vec::new());
        }
        Ok(self
            .sent
            .range(begin..=end)
            .map(|(s, m)| (*s, m.clone()))
            .collect())
    }
    fn reset(&mut self) -> Result<(), StoreError> {
        *self = MemoryStore::default();
        Ok(())
    }
}

const KIND_SENT: u8 = 1;
const KIND_SENDER: u8 = 2;
const KIND_TARGET: u8 = 3;

impl From<LogError> for StoreError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Io { path, source } => StoreError::Io { path, source },
            LogError::Corrupt { path, at } => StoreError::Corrupt { path, seq: at },
        }
    }
}

/// Durable store: one append-only [`RecordLog`] per session.
#[derive(Debug)]
pub struct FileStore {
    log: RecordLog,
    sender: u64,
    target: u64,
    /// seq -> (offset of the message bytes, length)
    sent: BTreeMap<u64, (u64, u32)>,
    /// Nothing was ever recorded: a session that starts here has no history to honour.
    fresh: bool,
}

impl FileStore {
    /// The log file of a session inside `dir`.
    pub fn path_in(dir: &Path, session: &str) -> PathBuf {
        dir.join(format!("{session}.fixlog"))
    }

    /// Opens (or creates) the log at `path`, recovering its state and cutting a torn tail.
    /// With `fsync`, every record is flushed to the disk before the call returns.
    pub fn open(path: &Path, fsync: bool) -> Result<Self, StoreError> {
        let (log, records) = RecordLog::open(path, fsync)?;
        let mut store = FileStore {
            log,
            sender: 1,
            target: 1,
            sent: BTreeMap::new(),
            fresh: records.is_empty(),
        };
        for r in records {
            match r.kind {
                KIND_SENT => {
                    store.sent.insert(r.value, (r.data_at, r.data.len() as u32));
                    store.sender = r.value + 1;
                }
                KIND_SENDER => store.sender = r.value,
                KIND_TARGET => store.target = r.value,
                other => tracing::warn!(kind = other, "message store: unknown record kind skipped"),
            }
        }
        Ok(store)
    }
}

impl MessageStore for FileStore {
    fn next_sender_seq(&self) -> u64 {
        self.sender
    }
    fn next_target_seq(&self) -> u64 {
        self.target
    }
    fn set_next_sender_seq(&mut self, n: u64) -> Result<(), StoreError> {
        self.log.append(KIND_SENDER, n, &[])?;
        self.sender = n;
        self.fresh = false;
        Ok(())
    }
    fn set_next_target_seq(&mut self, n: u64) -> Result<(), StoreError> {
        self.log.append(KIND_TARGET, n, &[])?;
        self.target = n;
        self.fresh = false;
        Ok(())
    }
    fn store_sent(&mut self, seq: u64, raw: &[u8]) -> Result<(), StoreError> {
        let at = self.log.append(KIND_SENT, seq, raw)?;
        self.sent.insert(seq, (at, raw.len() as u32));
        self.sender = seq + 1;
        self.fresh = false;
        Ok(())
    }
    fn sent_range(&self, begin: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        if begin > end {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for (&seq, &(at, len)) in self.sent.range(begin..=end) {
            let buf = self
                .log
                .read_at(at, len as usize)
                .map_err(|_| StoreError::Corrupt {
                    path: self.log.path().to_path_buf(),
                    seq,
                })?;
            out.push((seq, buf));
        }
        Ok(out)
    }
    fn reset(&mut self) -> Result<(), StoreError> {
        self.log.truncate()?;
        self.sent.clear();
        self.sender = 1;
        self.target = 1;
        // A reset is history too: the peer agreed to start over at 1.
        self.fresh = false;
        Ok(())
    }
    fn is_fresh(&self) -> bool {
        self.fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    #[test]
    fn state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = FileStore::path_in(dir.path(), "BRK");
        {
            let mut s = FileStore::open(&path, false).unwrap();
            s.store_sent(1, b"one").unwrap();
            s.set_next_sender_seq(3).unwrap(); // an admin message took 2
            s.store_sent(3, b"three").unwrap();
            s.set_next_target_seq(7).unwrap();
        }
        let s = FileStore::open(&path, false).unwrap();
        assert_eq!(s.next_sender_seq(), 4);
        assert_eq!(s.next_target_seq(), 7);
        assert_eq!(
            s.sent_range(1, 10).unwrap(),
            vec![(1, b"one".to_vec()), (3, b"three".to_vec())]
        );
        assert_eq!(s.sent_range(2, 2).unwrap(), vec![]);
    }

    #[test]
    fn torn_tail_is_cut_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let path = FileStore::path_in(dir.path(), "BRK");
        {
            let mut s = FileStore::open(&path, false).unwrap();
            s.store_sent(1, b"one").unwrap();
            s.store_sent(2, b"two-two").unwrap();
        }
        let full = std::fs::metadata(&path).unwrap().len();
        for cut in 1..=20u64 {
            let copy = dir.path().join(format!("cut{cut}.fixlog"));
            std::fs::copy(&path, &copy).unwrap();
            let f = OpenOptions::new().write(true).open(&copy).unwrap();
            f.set_len(full - cut).unwrap();
            let mut s = FileStore::open(&copy, false).unwrap();
            assert_eq!(s.next_sender_seq(), 2, "cut {cut}");
            assert_eq!(s.sent_range(1, 9).unwrap(), vec![(1, b"one".to_vec())]);
            s.store_sent(2, b"again").unwrap();
            drop(s);
            let s = FileStore::open(&copy, false).unwrap();
            assert_eq!(s.sent_range(2, 2).unwrap(), vec![(2, b"again".to_vec())]);
        }
    }

    #[test]
    fn flipped_byte_stops_recovery_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = FileStore::path_in(dir.path(), "BRK");
        {
            let mut s = FileStore::open(&path, false).unwrap();
            s.set_next_target_seq(5).unwrap();
            s.set_next_target_seq(6).unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let s = FileStore::open(&path, false).unwrap();
        assert_eq!(s.next_target_seq(), 5);
    }

    #[test]
    fn reset_forgets_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = FileStore::path_in(dir.path(), "BRK");
        let mut s = FileStore::open(&path, true).unwrap();
        s.store_sent(1, b"x").unwrap();
        s.set_next_target_seq(9).unwrap();
        s.reset().unwrap();
        s.store_sent(1, b"y").unwrap();
        drop(s);
        let s = FileStore::open(&path, false).unwrap();
        assert_eq!((s.next_sender_seq(), s.next_target_seq()), (2, 1));
        assert_eq!(s.sent_range(1, 1).unwrap(), vec![(1, b"y".to_vec())]);
    }
}
