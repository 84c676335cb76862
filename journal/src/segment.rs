//! Segment files: naming, header, the streaming scanner with the torn-tail rules, and the
//! buffered appender shared by the order journal and the trade tape.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::codec::{
    decode, encode_meta, parse_frame, Decoded, DeltaState, Log, Meta, FORMAT_VERSION, MAX_PAYLOAD,
};
use crate::files::sync_dir;
use crate::{io_err, Durability, JournalError};

/// Header: magic (4) | version (1) | first number u64 LE (8) | CRC32 LE of the previous 13 (4).
pub(crate) const HEADER_LEN: u64 = 17;
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
    pub log: Log,
}

pub(crate) const JOURNAL: Kind = Kind {
    prefix: "orders",
    magic: *b"GMJO",
    unit: "seq",
    log: Log::Journal,
};
pub(crate) const TAPE: Kind = Kind {
    prefix: "trades",
    magic: *b"GMJT",
    unit: "trade number",
    log: Log::Tape,
};

/// A segment's place in its log: the number of its first record, and a part number that tells
/// apart journal segments starting at the same seq (a segment that filled up with rejected
/// NEWs, which take no seq).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SegmentId {
    pub first: u64,
    pub part: u32,
}

pub(crate) fn file_name(kind: Kind, id: SegmentId) -> String {
    if id.part == 0 {
        format!("{}-{:012}.seg", kind.prefix, id.first)
    } else {
        format!("{}-{:012}-{}.seg", kind.prefix, id.first, id.part)
    }
}

/// `None` for a file that is not a segment of `kind`.
fn parse_name(kind: Kind, name: &str) -> Option<Option<SegmentId>> {
    let rest = name
        .strip_prefix(kind.prefix)?
        .strip_prefix('-')?
        .strip_suffix(".seg")?;
    let (first, part) = match rest.split_once('-') {
        Some((f, p)) => (f, p.parse::<u32>().ok().filter(|&p| p > 0)),
        None => (rest, Some(0)),
    };
    Some(
        first
            .parse::<u64>()
            .ok()
            .zip(part)
            .map(|(first, part)| SegmentId { first, part }),
    )
}

fn header(kind: Kind, first: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..4].copy_from_slice(&kind.magic);
    h[4] = FORMAT_VERSION;
    h[5..13].copy_from_slice(&first.to_le_bytes());
    let crc = crc32fast::hash(&h[..13]);
    h[13..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Segment files of `kind` in `dir` in log order. Other files are ignored; a missing directory
/// is an empty log.
pub(crate) fn list_segments(
    dir: &Path,
    kind: Kind,
) -> Result<Vec<(SegmentId, PathBuf)>, JournalError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        match parse_name(kind, name) {
            None => continue,
            Some(Some(id)) => out.push((id, entry.path())),
            Some(None) => {
                return Err(JournalError::Corrupt {
                    segment: entry.path(),
                    offset: 0,
                    detail: format!("segment file name does not carry a {} number", kind.unit),
                })
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Checks a segment header; returns the first number it carries, which must be `expect_first`
/// (the number in the file name) when given.
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
    if data[4] != FORMAT_VERSION {
        return Err(corrupt(
            4,
            format!(
                "format version {} is not supported (this build reads version {FORMAT_VERSION} only; \
                 version 1 journals cannot be read)",
                data[4]
            ),
        ));
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

/// True if no intact record starts at any offset from `pos` on: then a bad record at `pos` is
/// a torn tail, not damage in the middle.
fn nothing_valid_from(data: &[u8], pos: usize) -> bool {
    (pos..data.len()).all(|p| parse_frame(data, p).is_err())
}

/// Whether an intact record (normally the META) follows the header: the cheap common case of
/// "this segment is not a torn file", read from the first bytes only.
fn starts_with_a_record(path: &Path) -> Result<bool, JournalError> {
    let mut head = Vec::with_capacity(HEADER_LEN as usize + MAX_PAYLOAD + 8);
    File::open(path)
        .and_then(|f| {
            f.take(HEADER_LEN + MAX_PAYLOAD as u64 + 8)
                .read_to_end(&mut head)
        })
        .map_err(|e| io_err(path, e))?;
    Ok(head.len() > HEADER_LEN as usize && parse_frame(&head, HEADER_LEN as usize).is_ok())
}

/// Reads the first bytes of a segment (header and META) and returns its META.
pub(crate) fn read_meta(path: &Path, kind: Kind, id: SegmentId) -> Result<Meta, JournalError> {
    let mut head = Vec::with_capacity(160);
    File::open(path)
        .and_then(|f| f.take(160).read_to_end(&mut head))
        .map_err(|e| io_err(path, e))?;
    check_header(path, &head, kind, Some(id.first))?;
    let corrupt = |detail: String| JournalError::Corrupt {
        segment: path.to_owned(),
        offset: HEADER_LEN,
        detail,
    };
    let (b, e, _) = parse_frame(&head, HEADER_LEN as usize).map_err(corrupt)?;
    match decode(&mut DeltaState::default(), kind.log, &head[b..e]).map_err(corrupt)? {
        Decoded::Meta(m) => Ok(m),
        _ => Err(corrupt("segment does not start with a META record".into())),
    }
}

/// Where appending resumes after a scan.
#[derive(Clone, Debug)]
pub(crate) struct Tail {
    pub id: SegmentId,
    pub path: PathBuf,
    /// Length of the intact prefix: the file is cut to this on recovery.
    pub valid_len: u64,
    pub file_len: u64,
}

/// A stretch of numbers no segment holds: between `expected` and the first number of `next`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hole {
    pub first: u64,
    pub last: u64,
    /// The segment after the hole.
    pub next: PathBuf,
    /// The segment before the hole, if any (the filler segment's part follows it).
    pub prev: Option<SegmentId>,
}

/// One decoded record with its number: the seq (journal record, or the next seq for a
/// rejected NEW) or the trade number (tape).
pub(crate) struct ScanItem {
    pub number: u64,
    pub decoded: Decoded,
    /// Set on the first item (the META) of each segment.
    pub segment: Option<(SegmentId, PathBuf)>,
}

struct Loaded {
    id: SegmentId,
    path: PathBuf,
    data: Vec<u8>,
    pos: usize,
    file_len: u64,
    is_last: bool,
    started: bool,
}

/// Reads a log's segments in order with one segment in memory at a time. Torn-tail rules: in
/// the last segment a bad record with no intact record at any later offset ends the log (its
/// bytes are counted in `truncated_bytes`); trailing segments holding no intact record at all
/// (a crash while creating them) are skipped and listed in `torn_files`. Anything else bad is
/// [`JournalError::Corrupt`] naming the file and offset.
pub(crate) struct Scanner {
    kind: Kind,
    segments: Vec<(SegmentId, PathBuf)>,
    next_index: usize,
    cur: Option<Loaded>,
    pub state: DeltaState,
    /// Number of the next counted record.
    pub next: u64,
    /// Number the next segment must start at, when known.
    expected: Option<SegmentId>,
    /// Record holes instead of failing on them (recovery).
    allow_holes: bool,
    pub holes: Vec<Hole>,
    pub torn_files: Vec<PathBuf>,
    pub truncated_bytes: u64,
    pub tail: Option<Tail>,
    done: bool,
}

impl Scanner {
    /// Scans the log in `dir` from its segment at index `start` (all of it for 0). With
    /// `start == 0` the first segment must start at number 1 (or the gap is a hole).
    pub(crate) fn new(
        dir: &Path,
        kind: Kind,
        start: usize,
        allow_holes: bool,
    ) -> Result<Scanner, JournalError> {
        let mut segments = list_segments(dir, kind)?;
        let mut torn_files = Vec::new();
        let mut truncated_bytes = 0;
        // Trailing segments without a single intact record were being created when the
        // writer died: they hold nothing.
        while let Some((_, path)) = segments.last() {
            if starts_with_a_record(path)? {
                break;
            }
            let data = fs::read(path).map_err(|e| io_err(path, e))?;
            if nothing_valid_from(&data, HEADER_LEN.min(data.len() as u64) as usize) {
                truncated_bytes += data.len() as u64;
                torn_files.push(path.clone());
                segments.pop();
            } else {
                break;
            }
        }
        let first_number = segments.get(start).map_or(1, |(id, _)| id.first);
        Ok(Scanner {
            kind,
            expected: (start == 0).then_some(SegmentId { first: 1, part: 0 }),
            next_index: start.min(segments.len()),
            segments,
            cur: None,
            state: DeltaState::default(),
            next: if start == 0 { 1 } else { first_number },
            allow_holes,
            holes: Vec::new(),
            torn_files,
            truncated_bytes,
            tail: None,
            done: false,
        })
    }

    pub(crate) fn segments(&self) -> &[(SegmentId, PathBuf)] {
        &self.segments
    }

    /// The segment being read (for error messages).
    pub(crate) fn current_path(&self) -> PathBuf {
        self.cur
            .as_ref()
            .map_or_else(PathBuf::new, |c| c.path.clone())
    }

    /// Offset of the record after the last one read in the current segment.
    pub(crate) fn current_offset(&self) -> u64 {
        self.cur.as_ref().map_or(0, |c| c.pos as u64)
    }

    fn corrupt(path: &Path, offset: usize, detail: String) -> JournalError {
        JournalError::Corrupt {
            segment: path.to_owned(),
            offset: offset as u64,
            detail,
        }
    }

    /// Loads the next segment and checks that its numbering continues the log.
    fn load_next(&mut self) -> Result<bool, JournalError> {
        let Some((id, path)) = self.segments.get(self.next_index).cloned() else {
            return Ok(false);
        };
        let prev = self.next_index.checked_sub(1).map(|i| self.segments[i].0);
        self.next_index += 1;
        let is_last = self.next_index == self.segments.len();
        let data = fs::read(&path).map_err(|e| io_err(&path, e))?;
        check_header(&path, &data, self.kind, Some(id.first))?;
        if let Some(exp) = self.expected {
            let same_first_part = prev
                .filter(|p| p.first == id.first)
                .map_or(0, |p| p.part + 1);
            let ok = id.first == exp.first && id.part == same_first_part;
            if !ok {
                let hole = id.first > exp.first && id.part == 0;
                if id.first == exp.first && id.part != same_first_part {
                    return Err(Self::corrupt(
                        &path,
                        0,
                        format!(
                            "segment part {} of {} {} comes without part {} before it: a \
                             segment holding only rejected NEWs is missing",
                            id.part, self.kind.unit, id.first, same_first_part
                        ),
                    ));
                }
                if hole && self.allow_holes {
                    self.holes.push(Hole {
                        first: exp.first,
                        last: id.first - 1,
                        next: path.clone(),
                        prev,
                    });
                } else {
                    return Err(JournalError::Gap {
                        segment: path,
                        expected: exp.first,
                        found: id.first,
                        unit: self.kind.unit,
                    });
                }
            }
        }
        self.next = id.first;
        self.state.reset();
        self.cur = Some(Loaded {
            id,
            path,
            file_len: data.len() as u64,
            data,
            pos: HEADER_LEN as usize,
            is_last,
            started: false,
        });
        Ok(true)
    }

    /// The next record, or `None` at the end of the log.
    pub(crate) fn next_item(&mut self) -> Result<Option<ScanItem>, JournalError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let Some(cur) = self.cur.as_mut() else {
                if !self.load_next()? {
                    self.done = true;
                }
                continue;
            };
            if cur.pos >= cur.data.len() {
                self.finish_segment();
                continue;
            }
            let pos = cur.pos;
            match parse_frame(&cur.data, pos) {
                Ok((b, e, next)) => {
                    let decoded = decode(&mut self.state, self.kind.log, &cur.data[b..e])
                        .map_err(|d| Self::corrupt(&cur.path, pos, d))?;
                    cur.pos = next;
                    let number = self.next;
                    let count = match &decoded {
                        Decoded::Record { entry, .. } => match entry {
                            crate::Entry::Gap { count } => *count,
                            crate::Entry::Command(_) => 1,
                        },
                        Decoded::Fill(_) => 1,
                        Decoded::Meta(_) | Decoded::Dict(..) | Decoded::Rejected { .. } => 0,
                    };
                    self.next = self.next.checked_add(count).ok_or_else(|| {
                        Self::corrupt(&cur.path, pos, format!("{} overflows", self.kind.unit))
                    })?;
                    let segment = (!cur.started).then(|| (cur.id, cur.path.clone()));
                    cur.started = true;
                    return Ok(Some(ScanItem {
                        number,
                        decoded,
                        segment,
                    }));
                }
                Err(detail) => {
                    if cur.is_last && nothing_valid_from(&cur.data, pos + 1) {
                        cur.data.truncate(pos);
                        self.truncated_bytes += cur.file_len - pos as u64;
                        continue;
                    }
                    return Err(Self::corrupt(&cur.path, pos, detail));
                }
            }
        }
    }

    fn finish_segment(&mut self) {
        if let Some(cur) = self.cur.take() {
            if cur.is_last {
                self.tail = Some(Tail {
                    id: cur.id,
                    path: cur.path,
                    valid_len: cur.data.len() as u64,
                    file_len: cur.file_len,
                });
            }
            self.expected = Some(SegmentId {
                first: self.next,
                part: 0,
            });
        }
    }
}

/// Write and fsync counts of a log writer, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// `write` calls on segment files.
    pub writes: u64,
    /// `fsync` calls on segment files and the directory.
    pub fsyncs: u64,
    /// High-water mark updates (journal only).
    pub hwm_updates: u64,
}

/// Appends framed records to the current segment through a buffer; commit writes and syncs.
pub(crate) struct SegmentWriter {
    dir: PathBuf,
    kind: Kind,
    segment_bytes: u64,
    durability: Durability,
    file: File,
    id: SegmentId,
    path: PathBuf,
    /// Segment length including `pending`.
    len: u64,
    /// Length written and (unless `Never`) synced.
    committed_len: u64,
    /// Length of header + META: nothing else appended yet when `len` equals it.
    fresh_len: u64,
    pending: Vec<u8>,
    unsynced: bool,
    /// Set after a failed write: the file may end in a partial record, so stop appending.
    poisoned: bool,
    pub stats: WriterStats,
}

impl SegmentWriter {
    /// Starts a fresh segment (header and META written and synced at once, so a segment that
    /// exists always says which listing it belongs to).
    pub(crate) fn create(
        dir: &Path,
        kind: Kind,
        id: SegmentId,
        meta: &Meta,
        segment_bytes: u64,
        durability: Durability,
        stats: WriterStats,
    ) -> Result<Self, JournalError> {
        let path = dir.join(file_name(kind, id));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        let mut pending = header(kind, id.first).to_vec();
        encode_meta(meta, &mut Vec::new(), &mut pending);
        let fresh_len = pending.len() as u64;
        let mut w = SegmentWriter {
            dir: dir.to_owned(),
            kind,
            segment_bytes,
            durability,
            file,
            id,
            path,
            len: fresh_len,
            committed_len: 0,
            fresh_len,
            pending,
            unsynced: false,
            poisoned: false,
            stats,
        };
        w.commit()?;
        if durability != Durability::Never {
            sync_dir(dir)?;
            w.stats.fsyncs += 1;
        }
        Ok(w)
    }

    /// Continues the recovered last segment, cutting a torn tail first.
    pub(crate) fn resume(
        dir: &Path,
        kind: Kind,
        tail: &Tail,
        fresh_len: u64,
        segment_bytes: u64,
        durability: Durability,
    ) -> Result<Self, JournalError> {
        let path = tail.path.clone();
        let mut file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        let mut stats = WriterStats::default();
        if tail.valid_len != tail.file_len {
            file.set_len(tail.valid_len)
                .and_then(|_| file.sync_all())
                .map_err(|e| io_err(&path, e))?;
            stats.fsyncs += 1;
        }
        file.seek(SeekFrom::Start(tail.valid_len))
            .map_err(|e| io_err(&path, e))?;
        Ok(SegmentWriter {
            dir: dir.to_owned(),
            kind,
            segment_bytes,
            durability,
            file,
            id: tail.id,
            path,
            len: tail.valid_len,
            committed_len: tail.valid_len,
            fresh_len,
            pending: Vec::new(),
            unsynced: false,
            poisoned: false,
            stats,
        })
    }

    pub(crate) fn id(&self) -> SegmentId {
        self.id
    }

    /// The segment file being appended to.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn committed_len(&self) -> u64 {
        self.committed_len
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

    /// Room for records in an empty segment with this META.
    pub(crate) fn capacity(&self) -> u64 {
        self.segment_bytes.saturating_sub(self.fresh_len)
    }

    /// Closes the current segment (written and, unless `Never`, synced) and starts `id`.
    pub(crate) fn roll(&mut self, id: SegmentId, meta: &Meta) -> Result<(), JournalError> {
        self.commit()?;
        match SegmentWriter::create(
            &self.dir,
            self.kind,
            id,
            meta,
            self.segment_bytes,
            self.durability,
            self.stats,
        ) {
            Ok(next) => {
                // The old file is committed: its Drop has nothing left to write.
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
        self.stats.writes += 1;
        if let Err(e) = self.file.write_all(&self.pending) {
            self.poisoned = true;
            return Err(io_err(&self.path, e));
        }
        self.pending.clear();
        self.unsynced = true;
        Ok(())
    }

    /// Writes everything buffered; syncs unless the durability is `Never`.
    pub(crate) fn commit(&mut self) -> Result<(), JournalError> {
        self.write_pending()?;
        if self.unsynced && self.durability != Durability::Never {
            self.stats.fsyncs += 1;
            self.file.sync_data().map_err(|e| {
                self.poisoned = true;
                io_err(&self.path, e)
            })?;
        }
        self.unsynced = false;
        self.committed_len = self.len;
        Ok(())
    }
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        // Best effort: what was appended but not committed still reaches the OS.
        if !self.poisoned && !self.pending.is_empty() {
            let _ = self.file.write_all(&self.pending);
        }
    }
}

/// Removes the segments a scan found torn (they hold no intact record).
pub(crate) fn remove_files(files: &[PathBuf]) -> Result<(), JournalError> {
    for p in files {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_in_log_order() {
        let ids = [
            SegmentId { first: 1, part: 0 },
            SegmentId { first: 42, part: 0 },
            SegmentId { first: 42, part: 1 },
            SegmentId {
                first: 42,
                part: 12,
            },
            SegmentId {
                first: 1_000_000_000_000,
                part: 0,
            },
        ];
        for id in ids {
            assert_eq!(parse_name(JOURNAL, &file_name(JOURNAL, id)), Some(Some(id)));
        }
        assert_eq!(file_name(TAPE, ids[1]), "trades-000000000042.seg");
        assert_eq!(file_name(JOURNAL, ids[2]), "orders-000000000042-1.seg");
        assert_eq!(parse_name(JOURNAL, "trades-000000000042.seg"), None);
        assert_eq!(parse_name(JOURNAL, "orders-x.seg"), Some(None));
        assert_eq!(parse_name(JOURNAL, "orders-000000000042-0.seg"), Some(None));
        let mut sorted = ids;
        sorted.reverse();
        sorted.sort();
        assert_eq!(sorted, ids);
    }
}
