//! The journal's durable high-water mark: the last committed seq and where its bytes end, kept
//! beside the segments so recovery can tell a torn tail from committed records that vanished.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{io_err, Durability, JournalError};

pub(crate) const FILE: &str = "COMMITTED";
const TMP: &str = "COMMITTED.tmp";
/// One text line of the mark, padded with spaces: two alternating slots make the file.
const SLOT: usize = 160;

/// What the high-water mark says: every seq up to `seq` was committed, and the journal's
/// bytes up to `length` of `segment` were durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HighWaterMark {
    /// Last committed seq (0: nothing yet).
    pub seq: u64,
    /// File name of the segment being appended to at that commit.
    pub segment: String,
    /// Committed length of that segment in bytes.
    pub length: u64,
}

impl HighWaterMark {
    fn body(&self, generation: u64) -> String {
        format!(
            "gen={generation} seq={} segment={} length={}",
            self.seq, self.segment, self.length
        )
    }

    /// One slot: the body, its CRC32, spaces up to `SLOT - 1` bytes and a line feed.
    fn slot(&self, generation: u64) -> Vec<u8> {
        let body = self.body(generation);
        let mut line =
            format!("{body} crc32={:08x}", crc32fast::hash(body.as_bytes())).into_bytes();
        line.resize(SLOT - 1, b' ');
        line.push(b'\n');
        line
    }

    /// Parses one slot; `None` for a blank or damaged slot (a write torn by a crash).
    fn parse_slot(slot: &[u8]) -> Option<(u64, HighWaterMark)> {
        let text = std::str::from_utf8(slot).ok()?.trim_end();
        let (body, crc) = text.rsplit_once(" crc32=")?;
        if format!("{:08x}", crc32fast::hash(body.as_bytes())) != crc {
            return None;
        }
        let mut fields = body.split(' ');
        let mut field = |key: &str| fields.next()?.strip_prefix(key)?.strip_prefix('=');
        let generation = field("gen")?.parse().ok()?;
        let seq = field("seq")?.parse().ok()?;
        let segment = field("segment")?.to_owned();
        let length = field("length")?.parse().ok()?;
        if segment.contains(['/', '\\']) {
            return None;
        }
        Some((
            generation,
            HighWaterMark {
                seq,
                segment,
                length,
            },
        ))
    }

    /// The newest intact slot of `dir/COMMITTED` with its generation; `None` if there is no
    /// file.
    fn read_newest(dir: &Path) -> Result<Option<(u64, HighWaterMark)>, JournalError> {
        let path = dir.join(FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path, e)),
        };
        let damaged = |detail: String| JournalError::HighWaterMark {
            path: path.clone(),
            detail,
        };
        if bytes.len() != 2 * SLOT {
            return Err(damaged(format!(
                "{} bytes, expected {}",
                bytes.len(),
                2 * SLOT
            )));
        }
        bytes
            .chunks(SLOT)
            .filter_map(HighWaterMark::parse_slot)
            .max_by_key(|(g, _)| *g)
            .map(Some)
            .ok_or_else(|| damaged("neither slot holds an intact mark".into()))
    }

    /// Reads `dir/COMMITTED`; `None` if there is none.
    pub fn read(dir: &Path) -> Result<Option<HighWaterMark>, JournalError> {
        Ok(HighWaterMark::read_newest(dir)?.map(|(_, m)| m))
    }
}

/// Decides when the high-water mark follows the commits, and writes it: the first time a new
/// file (written aside, synced, renamed), then in place into the older of two slots with one
/// `fdatasync` (unless `Never`): a crash mid-write leaves the other slot intact.
pub(crate) struct HwmWriter {
    dir: PathBuf,
    durability: Durability,
    interval: Duration,
    every_commits: u64,
    last_write: Instant,
    commits_since: u64,
    /// Seq of the last mark written.
    written_seq: u64,
    generation: u64,
    file: Option<File>,
}

impl HwmWriter {
    pub(crate) fn new(
        dir: &Path,
        durability: Durability,
        interval: Duration,
        every_commits: u64,
    ) -> Result<Self, JournalError> {
        let newest = HighWaterMark::read_newest(dir).unwrap_or(None);
        Ok(HwmWriter {
            dir: dir.to_owned(),
            durability,
            interval,
            every_commits,
            last_write: Instant::now(),
            commits_since: 0,
            written_seq: newest.as_ref().map_or(0, |(_, m)| m.seq),
            generation: newest.as_ref().map_or(0, |(g, _)| *g),
            file: None,
        })
    }

    /// Called after every successful commit with the last committed seq: whether the mark
    /// should be written now.
    pub(crate) fn due(&mut self, last_seq: u64) -> bool {
        if last_seq == self.written_seq {
            return false;
        }
        self.commits_since += 1;
        self.last_write.elapsed() >= self.interval
            || (self.every_commits > 0 && self.commits_since >= self.every_commits)
    }

    /// Writes `mark` now; returns the number of fsyncs made.
    pub(crate) fn force(&mut self, mark: HighWaterMark) -> Result<u64, JournalError> {
        let generation = self.generation + 1;
        let slot = mark.slot(generation);
        let path = self.dir.join(FILE);
        let sync = self.durability != Durability::Never;
        let fsyncs = match &self.file {
            Some(f) => {
                write_at(f, &slot, (generation % 2) * SLOT as u64)
                    .and_then(|_| if sync { f.sync_data() } else { Ok(()) })
                    .map_err(|e| io_err(&path, e))?;
                u64::from(sync)
            }
            None => self.create(&slot, generation)?,
        };
        self.generation = generation;
        self.written_seq = mark.seq;
        self.last_write = Instant::now();
        self.commits_since = 0;
        Ok(fsyncs)
    }

    /// Replaces the file with one holding `slot` (the other slot blank), atomically.
    fn create(&mut self, slot: &[u8], generation: u64) -> Result<u64, JournalError> {
        let tmp = self.dir.join(TMP);
        let path = self.dir.join(FILE);
        let mut bytes = vec![b' '; 2 * SLOT];
        bytes[SLOT - 1] = b'\n';
        bytes[2 * SLOT - 1] = b'\n';
        let at = (generation % 2) as usize * SLOT;
        bytes[at..at + SLOT].copy_from_slice(slot);
        let sync = self.durability != Durability::Never;
        let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        f.write_all(&bytes)
            .and_then(|_| if sync { f.sync_data() } else { Ok(()) })
            .map_err(|e| io_err(&tmp, e))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
        if sync {
            #[cfg(unix)]
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_err(&self.dir, e))?;
        }
        self.file = Some(
            OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| io_err(&path, e))?,
        );
        Ok(if sync { 2 } else { 0 })
    }

    /// Whether the mark trails `last_seq` and its interval has passed: an idle journal's mark
    /// must not lag behind the last commit for ever (recovery trusts it to see a lost tail).
    pub(crate) fn stale(&self, last_seq: u64) -> bool {
        last_seq != self.written_seq && self.last_write.elapsed() >= self.interval
    }

    pub(crate) fn written_seq(&self) -> u64 {
        self.written_seq
    }
}

#[cfg(unix)]
fn write_at(f: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, bytes, offset)
}

#[cfg(not(unix))]
fn write_at(mut f: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(seq: u64) -> HighWaterMark {
        HighWaterMark {
            seq,
            segment: "orders-000000040001.seg".into(),
            length: 123_456 + seq,
        }
    }

    #[test]
    fn slots_alternate_and_a_torn_slot_falls_back_to_the_other() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(HighWaterMark::read(tmp.path()).unwrap(), None);
        let mut w = HwmWriter::new(tmp.path(), Durability::Batch, Duration::ZERO, 0).unwrap();
        assert_eq!(
            w.force(mark(41_200)).unwrap(),
            2,
            "creation: file and directory"
        );
        assert_eq!(HighWaterMark::read(tmp.path()).unwrap(), Some(mark(41_200)));
        assert_eq!(w.force(mark(41_300)).unwrap(), 1, "in place: one fdatasync");
        assert_eq!(w.force(mark(41_400)).unwrap(), 1);
        assert_eq!(HighWaterMark::read(tmp.path()).unwrap(), Some(mark(41_400)));
        let path = tmp.path().join(FILE);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 2 * SLOT);
        assert!(
            text.contains("gen=3 seq=41400 segment=orders-000000040001.seg length=164856 crc32="),
            "{text}"
        );
        // A torn write of the newest slot: the previous mark is used.
        let mut bytes = fs::read(&path).unwrap();
        bytes[SLOT + 10] ^= 1; // generation 3 lives in slot 1
        fs::write(&path, &bytes).unwrap();
        assert_eq!(HighWaterMark::read(tmp.path()).unwrap(), Some(mark(41_300)));
        // A new writer continues the generations.
        let mut w = HwmWriter::new(tmp.path(), Durability::Never, Duration::ZERO, 0).unwrap();
        assert_eq!(w.written_seq(), 41_300);
        w.force(mark(50_000)).unwrap();
        assert_eq!(HighWaterMark::read(tmp.path()).unwrap(), Some(mark(50_000)));
        // Both slots damaged, or a file of the wrong size: an error, never a guess.
        for bad in [vec![b' '; 2 * SLOT], b"seq=5\n".to_vec(), Vec::new()] {
            fs::write(&path, bad).unwrap();
            let err = HighWaterMark::read(tmp.path()).unwrap_err();
            assert!(err.to_string().contains("COMMITTED is damaged"), "{err}");
        }
    }

    #[test]
    fn the_longest_mark_fits_a_slot() {
        let m = HighWaterMark {
            seq: u64::MAX,
            segment: "orders-18446744073709551615-4294967295.seg".into(),
            length: u64::MAX,
        };
        let slot = m.slot(u64::MAX);
        assert_eq!(slot.len(), SLOT);
        assert_eq!(HighWaterMark::parse_slot(&slot), Some((u64::MAX, m)));
    }
}
