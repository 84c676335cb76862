//! An append-only file of checksummed records: the durable form of the session store and of the
//! order map.
//!
//! Record: `len u32 | crc32 u32 | kind u8 | value u64 | data`, little-endian, `len` counting
//! kind, value and data. One `write` per record, so a crash leaves whole records and at most a
//! torn tail; [`RecordLog::open`] cuts a torn or corrupt tail and returns the records before it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// len + crc
const FRAME_HEAD: usize = 8;
/// kind + value
const RECORD_HEAD: usize = 9;
/// A record larger than this is corruption, not data (records are far smaller).
const MAX_RECORD: usize = 16 << 20;

/// A failure of the record file.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: record at byte {at} unreadable")]
    Corrupt { path: PathBuf, at: u64 },
}

/// One record read back on open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: u8,
    pub value: u64,
    pub data: Vec<u8>,
    /// File offset of `data`, for [`RecordLog::read_at`].
    pub data_at: u64,
}

/// The open file; appends go to its end.
#[derive(Debug)]
pub struct RecordLog {
    path: PathBuf,
    file: File,
    len: u64,
    fsync: bool,
}

impl RecordLog {
    /// Opens (or creates) `path`, returning the log and its valid records; a torn or corrupt
    /// tail is cut. With `fsync`, every append reaches the disk before it returns.
    pub fn open(path: &Path, fsync: bool) -> Result<(Self, Vec<Record>), LogError> {
        let io = |source| LogError::Io {
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
        let (records, good) = parse(&bytes);
        if good < bytes.len() {
            tracing::warn!(path = %path.display(), cut = bytes.len() - good, "torn tail cut");
            file.set_len(good as u64).map_err(io)?;
        }
        Ok((
            RecordLog {
                path: path.to_path_buf(),
                file,
                len: good as u64,
                fsync,
            },
            records,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record; returns the file offset of its data.
    pub fn append(&mut self, kind: u8, value: u64, data: &[u8]) -> Result<u64, LogError> {
        let len = RECORD_HEAD + data.len();
        let mut rec = Vec::with_capacity(FRAME_HEAD + len);
        rec.extend_from_slice(&(len as u32).to_le_bytes());
        rec.extend_from_slice(&[0; 4]);
        rec.push(kind);
        rec.extend_from_slice(&value.to_le_bytes());
        rec.extend_from_slice(data);
        let crc = crc32fast::hash(&rec[FRAME_HEAD..]);
        rec[4..8].copy_from_slice(&crc.to_le_bytes());
        self.file.write_all(&rec).map_err(|e| self.io(e))?;
        if self.fsync {
            self.file.sync_data().map_err(|e| self.io(e))?;
        }
        let data_at = self.len + (FRAME_HEAD + RECORD_HEAD) as u64;
        self.len += rec.len() as u64;
        Ok(data_at)
    }

    /// Reads `len` bytes of record data at `at` (an offset [`RecordLog::append`] returned).
    pub fn read_at(&self, at: u64, len: usize) -> Result<Vec<u8>, LogError> {
        let mut file = &self.file;
        let mut buf = vec![0; len];
        file.seek(SeekFrom::Start(at))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(|_| LogError::Corrupt {
                path: self.path.clone(),
                at,
            })?;
        Ok(buf)
    }

    /// Empties the file.
    pub fn truncate(&mut self) -> Result<(), LogError> {
        self.file.set_len(0).map_err(|e| self.io(e))?;
        self.len = 0;
        Ok(())
    }

    /// Replaces the whole file with `records` (written to a temporary file, synced, renamed
    /// over the old one): compaction.
    pub fn rewrite(&mut self, records: &[(u8, u64, Vec<u8>)]) -> Result<(), LogError> {
        let tmp = self.path.with_extension("compact");
        let _ = std::fs::remove_file(&tmp);
        {
            let (mut fresh, _) = RecordLog::open(&tmp, false)?;
            for (kind, value, data) in records {
                fresh.append(*kind, *value, data)?;
            }
            fresh.file.sync_all().map_err(|e| fresh.io(e))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| self.io(e))?;
        let (reopened, _) = RecordLog::open(&self.path, self.fsync)?;
        *self = reopened;
        Ok(())
    }

    fn io(&self, source: std::io::Error) -> LogError {
        LogError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

/// The valid records of `bytes` and the length of the valid prefix.
fn parse(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut pos = 0usize;
    while bytes.len() - pos >= FRAME_HEAD {
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let len = word(pos) as usize;
        let crc = word(pos + 4);
        let start = pos + FRAME_HEAD;
        if !(RECORD_HEAD..=MAX_RECORD).contains(&len) || bytes.len() - start < len {
            break;
        }
        let payload = &bytes[start..start + len];
        if crc32fast::hash(payload) != crc {
            break;
        }
        let mut value = [0u8; 8];
        value.copy_from_slice(&payload[1..9]);
        records.push(Record {
            kind: payload[0],
            value: u64::from_le_bytes(value),
            data: payload[RECORD_HEAD..].to_vec(),
            data_at: (start + RECORD_HEAD) as u64,
        });
        pos = start + len;
    }
    (records, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let at = {
            let (mut log, recs) = RecordLog::open(&path, false).unwrap();
            assert!(recs.is_empty());
            log.append(1, 7, b"seven").unwrap();
            log.append(2, 8, b"").unwrap()
        };
        let full = std::fs::metadata(&path).unwrap().len();
        // The second record is 17 bytes: every cut inside it leaves the first whole.
        for cut in 1..=17u64 {
            let copy = dir.path().join(format!("cut{cut}"));
            std::fs::copy(&path, &copy).unwrap();
            OpenOptions::new()
                .write(true)
                .open(&copy)
                .unwrap()
                .set_len(full - cut)
                .unwrap();
            let (mut log, recs) = RecordLog::open(&copy, false).unwrap();
            assert_eq!(recs.len(), 1, "cut {cut}");
            assert_eq!(
                (recs[0].kind, recs[0].value, &recs[0].data[..]),
                (1, 7, &b"seven"[..])
            );
            log.append(3, 9, b"after").unwrap();
            drop(log);
            let (_, recs) = RecordLog::open(&copy, false).unwrap();
            assert_eq!(recs.iter().map(|r| r.kind).collect::<Vec<_>>(), [1, 3]);
        }
        let (log, recs) = RecordLog::open(&path, false).unwrap();
        assert_eq!(recs[1].data_at, at);
        assert_eq!(log.read_at(recs[0].data_at, 5).unwrap(), b"seven");
    }

    #[test]
    fn rewrite_replaces_the_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let (mut log, _) = RecordLog::open(&path, true).unwrap();
        for i in 0..100 {
            log.append(1, i, b"x").unwrap();
        }
        log.rewrite(&[(4, 1, b"kept".to_vec())]).unwrap();
        log.append(5, 2, b"next").unwrap();
        drop(log);
        let (_, recs) = RecordLog::open(&path, false).unwrap();
        assert_eq!(
            recs.iter().map(|r| (r.kind, r.value)).collect::<Vec<_>>(),
            [(4, 1), (5, 2)]
        );
    }
}
