//! Segment files: naming, header, directory scan with torn-tail/corruption rules, and the
//! buffered appender shared by the order journal and the trade tape.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::codec::parse_frame;
use super::{io_err, Durability, JournalConfig, JournalError};

/// Header: magic (4) | version (1) | first number u64 LE (8) | CRC32 LE of the previous 13 (4).
pub(crate) const HEADER_LEN: u64 = 17;
const VERSION: u8 = 1;
/// Pending bytes are written out (not synced) beyond this, so a caller that never commits does
/// not grow memory without bound.
const MAX_PENDING: usize = 1 << 20;

/// Which log a directory holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Kind {
    pub prefix: &'static str,
    pub magic: [u8; 4],
    /// What the header's first number counts, for error messages.
    pub unit: &'static str,
}

pub(crate) const ORDERS: Kind = Kind {
    prefix: "orders",
    magic: *b"GMJO",
    unit: "seq",
};
pub(crate) const TRADES: Kind = Kind {
    prefix: "trades",
    magic: *b"GMJT",
    unit: "trade number",
};

pub(crate) fn segment_path(dir: &Path, kind: Kind, first: u64) -> PathBuf {
    dir.join(format!("{}-{first:012}.seg", kind.prefix))
}

fn header(kind: Kind, first: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..4].copy_from_slice(&kind.magic);
    h[4] = VERSION;
    h[5..13].copy_from_slice(&first.to_le_bytes());
    let crc = crc32fast::hash(&h[..13]);
    h[13..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Segment files of `kind` in `dir`, sorted by the first number in their name. Other files are
/// ignored.
pub(crate) fn list_segments(dir: &Path, kind: Kind) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(num) = name
            .strip_prefix(kind.prefix)
            .and_then(|n| n.strip_prefix('-'))
            .and_then(|n| n.strip_suffix(".seg"))
        else {
            continue;
        };
        let first = num.parse::<u64>().map_err(|_| JournalError::Corrupt {
            segment: entry.path(),
            offset: 0,
            detail: format!("segment file name does not carry a {} number", kind.unit),
        })?;
        out.push((first, entry.path()));
    }
    out.sort();
    Ok(out)
}

/// Receives the records of a directory scan, in order.
pub(crate) trait Sink {
    /// A new segment starts: delta state must be reset.
    fn segment_start(&mut self);
    /// One intact record; returns whether it counts towards the segment's numbering (orders and
    /// fills do, dictionary records do not). An error is reported as corruption at its offset.
    fn record(&mut self, payload: &[u8]) -> Result<bool, String>;
}

/// Where appending resumes after a scan.
pub(crate) struct Tail {
    pub path: PathBuf,
    /// Length of the intact prefix: the file is cut to this on recovery.
    pub valid_len: u64,
    pub file_len: u64,
}

pub(crate) struct ScanReport {
    pub truncated_bytes: u64,
    /// Last segments whose header never made it to disk (crash while rolling over).
    pub torn_files: Vec<PathBuf>,
    pub tail: Option<Tail>,
    /// Number the next record gets (1 for an empty log).
    pub next: u64,
}

/// True if the bytes from `pos` on hold nothing that parses as an intact record at any offset:
/// then a bad record at `pos` is a torn tail, not corruption in the middle.
fn nothing_valid_after(data: &[u8], pos: usize) -> bool {
    (pos + 1..data.len()).all(|p| parse_frame(data, p).is_err())
}

/// Reads every segment of `kind` in `dir` (read-only), feeding intact records to `sink`.
pub(crate) fn scan_dir(
    dir: &Path,
    kind: Kind,
    sink: &mut impl Sink,
) -> Result<ScanReport, JournalError> {
    let mut segments = list_segments(dir, kind)?;
    let mut report = ScanReport {
        truncated_bytes: 0,
        torn_files: Vec::new(),
        tail: None,
        next: 1,
    };
    let mut datas = Vec::with_capacity(segments.len());
    // A last segment whose header is incomplete (or still zero-filled) was being created when the
    // writer died; it holds no records and is dropped.
    while let Some((_, path)) = segments.last() {
        let data = fs::read(path).map_err(|e| io_err(path, e))?;
        if (data.len() as u64) < HEADER_LEN || data.iter().all(|&b| b == 0) {
            report.truncated_bytes += data.len() as u64;
            report.torn_files.push(path.clone());
            segments.pop();
        } else {
            datas.push(data);
            break;
        }
    }
    let count = segments.len();
    for (i, (first, path)) in segments.iter().enumerate() {
        let is_last = i + 1 == count;
        let data = if is_last {
            datas.pop().unwrap_or_default()
        } else {
            fs::read(path).map_err(|e| io_err(path, e))?
        };
        check_header(path, &data, kind, Some(*first))?;
        if *first != report.next {
            return Err(JournalError::Gap {
                segment: path.clone(),
                expected: report.next,
                found: *first,
                unit: kind.unit,
            });
        }
        let (valid_len, records) = scan_records(path, &data, is_last, sink)?;
        report.next += records;
        report.truncated_bytes += data.len() as u64 - valid_len;
        if is_last {
            report.tail = Some(Tail {
                path: path.clone(),
                valid_len,
                file_len: data.len() as u64,
            });
        }
    }
    Ok(report)
}

/// Checks a segment header; returns the first number it carries. With `expect_first`, the header
/// must carry exactly that (the number in the file name).
pub(crate) fn check_header(
    path: &Path,
    data: &[u8],
    kind: Kind,
    expect_first: Option<u64>,
) -> Result<u64, JournalError> {
    let corrupt = |offset: u64, detail: String| JournalError::Corrupt {
        segment: path.to_owned(),
        offset,
        detail,
    };
    if (data.len() as u64) < HEADER_LEN {
        return Err(corrupt(
            0,
            format!("segment of {} bytes is shorter than its header", data.len()),
        ));
    }
    if data[..4] != kind.magic {
        return Err(corrupt(
            0,
            format!(
                "bad magic, expected {:?}",
                String::from_utf8_lossy(&kind.magic)
            ),
        ));
    }
    if data[4] != VERSION {
        return Err(corrupt(4, format!("unsupported version {}", data[4])));
    }
    let mut num = [0u8; 8];
    num.copy_from_slice(&data[5..13]);
    let first = u64::from_le_bytes(num);
    if data[..HEADER_LEN as usize] != header(kind, first) {
        return Err(corrupt(13, "header checksum mismatch".into()));
    }
    if let Some(expected) = expect_first {
        if expected != first {
            return Err(corrupt(
                5,
                format!(
                    "header says {} {first} but the file name says {expected}",
                    kind.unit
                ),
            ));
        }
    }
    Ok(first)
}

/// Feeds the records of one segment (header already checked) to `sink`, which is reset first.
/// Returns the length of the intact prefix and the number of counted records. Only the last
/// segment may end in a torn tail.
pub(crate) fn scan_records(
    path: &Path,
    data: &[u8],
    is_last: bool,
    sink: &mut impl Sink,
) -> Result<(u64, u64), JournalError> {
    let corrupt = |offset: usize, detail: String| JournalError::Corrupt {
        segment: path.to_owned(),
        offset: offset as u64,
        detail,
    };
    sink.segment_start();
    let mut records = 0;
    let mut pos = HEADER_LEN as usize;
    while pos < data.len() {
        match parse_frame(data, pos) {
            Ok((b, e, next)) => {
                if sink.record(&data[b..e]).map_err(|d| corrupt(pos, d))? {
                    records += 1;
                }
                pos = next;
            }
            Err(detail) => {
                if is_last && nothing_valid_after(data, pos) {
                    break;
                }
                return Err(corrupt(pos, detail));
            }
        }
    }
    Ok((pos as u64, records))
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    // Makes a new segment's directory entry durable; directories cannot be opened on Windows.
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Appends framed records to the current segment through a buffer; commit writes and syncs.
pub(crate) struct SegmentWriter {
    dir: PathBuf,
    kind: Kind,
    segment_bytes: u64,
    durability: Durability,
    file: File,
    path: PathBuf,
    /// Segment length including `pending`.
    len: u64,
    pending: Vec<u8>,
    /// Bytes were written since the last sync.
    unsynced: bool,
    /// Set after a failed write: the file may end in a partial record, so stop appending.
    poisoned: bool,
}

impl SegmentWriter {
    /// Starts a fresh segment whose first record gets number `first`.
    pub(crate) fn create(
        cfg: &JournalConfig,
        kind: Kind,
        first: u64,
    ) -> Result<Self, JournalError> {
        let path = segment_path(&cfg.dir, kind, first);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        if cfg.durability != Durability::Never {
            sync_dir(&cfg.dir)?;
        }
        Ok(SegmentWriter {
            dir: cfg.dir.clone(),
            kind,
            segment_bytes: cfg.segment_bytes,
            durability: cfg.durability,
            file,
            path,
            len: HEADER_LEN,
            // The header is committed with the first records; a crash before that leaves a
            // short file that recovery drops.
            pending: header(kind, first).to_vec(),
            unsynced: false,
            poisoned: false,
        })
    }

    /// Continues the recovered last segment, cutting a torn tail first.
    pub(crate) fn resume(
        cfg: &JournalConfig,
        kind: Kind,
        tail: &Tail,
    ) -> Result<Self, JournalError> {
        let path = tail.path.clone();
        let mut file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        if tail.valid_len != tail.file_len {
            file.set_len(tail.valid_len)
                .and_then(|_| file.sync_all())
                .map_err(|e| io_err(&path, e))?;
        }
        file.seek(SeekFrom::Start(tail.valid_len))
            .map_err(|e| io_err(&path, e))?;
        Ok(SegmentWriter {
            dir: cfg.dir.clone(),
            kind,
            segment_bytes: cfg.segment_bytes,
            durability: cfg.durability,
            file,
            path,
            len: tail.valid_len,
            pending: Vec::new(),
            unsynced: false,
            poisoned: false,
        })
    }

    /// The segment file being appended to.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn check(&self) -> Result<(), JournalError> {
        if self.poisoned {
            Err(JournalError::Poisoned {
                segment: self.path.clone(),
            })
        } else {
            Ok(())
        }
    }

    pub(crate) fn fits(&self, n: usize) -> bool {
        self.len + n as u64 <= self.segment_bytes
    }

    pub(crate) fn is_fresh(&self) -> bool {
        self.len == HEADER_LEN
    }

    /// Closes the current segment (written and, unless `Never`, synced) and starts the next.
    pub(crate) fn roll(&mut self, first: u64) -> Result<(), JournalError> {
        self.commit()?;
        let cfg = JournalConfig {
            dir: self.dir.clone(),
            segment_bytes: self.segment_bytes,
            durability: self.durability,
        };
        match SegmentWriter::create(&cfg, self.kind, first) {
            Ok(next) => {
                *self = next;
                Ok(())
            }
            Err(e) => {
                self.poisoned = true;
                Err(e)
            }
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<(), JournalError> {
        self.pending.extend_from_slice(bytes);
        self.len += bytes.len() as u64;
        if self.pending.len() >= MAX_PENDING {
            self.write_pending()?;
        }
        Ok(())
    }

    fn write_pending(&mut self) -> Result<(), JournalError> {
        self.check()?;
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(&self.pending) {
            self.poisoned = true;
            return Err(io_err(&self.path, e));
        }
        self.pending.clear();
        self.unsynced = true;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(|e| {
            self.poisoned = true;
            io_err(&self.path, e)
        })?;
        self.unsynced = false;
        Ok(())
    }

    /// Writes everything buffered; syncs unless the durability is `Never`.
    pub(crate) fn commit(&mut self) -> Result<(), JournalError> {
        self.write_pending()?;
        if self.unsynced && self.durability != Durability::Never {
            self.sync()?;
        }
        Ok(())
    }
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        // Best effort: what was appended but not committed still reaches the OS.
        if !self.poisoned {
            let _ = self.file.write_all(&self.pending);
        }
    }
}

pub(crate) fn remove_torn(report: &ScanReport) -> Result<(), JournalError> {
    for p in &report.torn_files {
        fs::remove_file(p)
            .or_else(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| io_err(p, e))?;
    }
    Ok(())
}
