//! Per-session message store: the two sequence numbers and every application message sent, so a
//! ResendRequest can be answered across restarts of the gateway.
//!
//! [`FileStore`] is one append-only log per session. Records are `len u32 | crc32 u32 | kind u8 |
//! value u64 | bytes`; a torn or corrupt tail (crash mid-write) is cut on open. A reset truncates
//! the log. Sent messages are read back from the file on resend; only their offsets stay in
//! memory.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

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
/// len + crc
const FRAME_HEAD: usize = 8;
/// kind + value
const RECORD_HEAD: usize = 9;
/// A record larger than this is corruption, not data (messages are far smaller).
const MAX_RECORD: usize = 16 << 20;

/// Durable store: one append-only log file per session.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    file: File,
    len: u64,
    sender: u64,
    target: u64,
    /// seq -> (offset of the message bytes, length)
    sent: BTreeMap<u64, (u64, u32)>,
    fsync: bool,
}

impl FileStore {
    /// The log file of a session inside `dir`.
    pub fn path_in(dir: &Path, session: &str) -> PathBuf {
        dir.join(format!("{session}.fixlog"))
    }

    /// Opens (or creates) the log at `path`, recovering its state and cutting a torn tail.
    /// With `fsync`, every record is flushed to the disk before the call returns.
    pub fn open(path: &Path, fsync: bool) -> Result<Self, StoreError> {
        let io = |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let mut store = FileStore {
            path: path.to_path_buf(),
            file,
            len: 0,
            sender: 1,
            target: 1,
            sent: BTreeMap::new(),
            fsync,
        };
        let good = store.recover(&bytes);
        if good < bytes.len() {
            tracing::warn!(path = %path.display(), cut = bytes.len() - good, "message store: torn tail cut");
            store.file.set_len(good as u64).map_err(io)?;
        }
        store.len = good as u64;
        Ok(store)
    }

    /// Replays records; returns the length of the valid prefix.
    fn recover(&mut self, bytes: &[u8]) -> usize {
        let mut pos = 0usize;
        while bytes.len() - pos >= FRAME_HEAD {
            let len =
                u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap_or_default()) as usize;
            let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap_or_default());
            let start = pos + FRAME_HEAD;
            if !(RECORD_HEAD..=MAX_RECORD).contains(&len) || bytes.len() - start < len {
                break;
            }
            let payload = &bytes[start..start + len];
            if crc32fast::hash(payload) != crc {
                break;
            }
            let value = u64::from_le_bytes(payload[1..9].try_into().unwrap_or_default());
            match payload[0] {
                KIND_SENT => {
                    self.sent.insert(
                        value,
                        ((start + RECORD_HEAD) as u64, (len - RECORD_HEAD) as u32),
                    );
                    self.sender = value + 1;
                }
                KIND_SENDER => self.sender = value,
                KIND_TARGET => self.target = value,
                _ => break,
            }
            pos = start + len;
        }
        pos
    }

    fn append(&mut self, kind: u8, value: u64, data: &[u8]) -> Result<u64, StoreError> {
        let len = RECORD_HEAD + data.len();
        let mut rec = Vec::with_capacity(FRAME_HEAD + len);
        rec.extend_from_slice(&(len as u32).to_le_bytes());
        rec.extend_from_slice(&[0; 4]);
        rec.push(kind);
        rec.extend_from_slice(&value.to_le_bytes());
        rec.extend_from_slice(data);
        let crc = crc32fast::hash(&rec[FRAME_HEAD..]);
        rec[4..8].copy_from_slice(&crc.to_le_bytes());
        // One write per record: a crash leaves a whole record or a torn tail, never a mix.
        self.file.write_all(&rec).map_err(|source| StoreError::Io {
            path: self.path.clone(),
            source,
        })?;
        if self.fsync {
            self.file.sync_data().map_err(|source| StoreError::Io {
                path: self.path.clone(),
                source,
            })?;
        }
        let data_at = self.len + (FRAME_HEAD + RECORD_HEAD) as u64;
        self.len += rec.len() as u64;
        Ok(data_at)
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
        self.append(KIND_SENDER, n, &[])?;
        self.sender = n;
        Ok(())
    }
    fn set_next_target_seq(&mut self, n: u64) -> Result<(), StoreError> {
        self.append(KIND_TARGET, n, &[])?;
        self.target = n;
        Ok(())
    }
    fn store_sent(&mut self, seq: u64, raw: &[u8]) -> Result<(), StoreError> {
        let at = self.append(KIND_SENT, seq, raw)?;
        self.sent.insert(seq, (at, raw.len() as u32));
        self.sender = seq + 1;
        Ok(())
    }
    fn sent_range(&self, begin: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        if begin > end {
            return Ok(Vec::new());
        }
        let mut file = &self.file;
        let mut out = Vec::new();
        for (&seq, &(at, len)) in self.sent.range(begin..=end) {
            let mut buf = vec![0; len as usize];
            file.seek(SeekFrom::Start(at))
                .and_then(|_| file.read_exact(&mut buf))
                .map_err(|_| StoreError::Corrupt {
                    path: self.path.clone(),
                    seq,
                })?;
            out.push((seq, buf));
        }
        Ok(out)
    }
    fn reset(&mut self) -> Result<(), StoreError> {
        self.file.set_len(0).map_err(|source| StoreError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.len = 0;
        self.sent.clear();
        self.sender = 1;
        self.target = 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
