//! The journal's durable high-water mark: the last committed seq and where its bytes end, kept
//! beside the segments so recovery can tell a torn tail from committed records that vanished.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{io_err, Durability, JournalError};

pub(crate) const FILE: &str = "COMMITTED";
const TMP: &str = "COMMITTED.tmp";

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
    fn body(&self) -> String {
        format!(
            "seq={}\nsegment={}\nlength={}\n",
            self.seq, self.segment, self.length
        )
    }

    fn to_text(&self) -> String {
        let body = self.body();
        format!("{body}crc32={:08x}\n", crc32fast::hash(body.as_bytes()))
    }

    fn parse(text: &str) -> Result<HighWaterMark, String> {
        let mut lines = text.lines();
        let mut field = |key: &str| -> Result<String, String> {
            let line = lines.next().ok_or_else(|| format!("missing {key}= line"))?;
            line.strip_prefix(key)
                .and_then(|v| v.strip_prefix('='))
                .map(str::to_owned)
                .ok_or_else(|| format!("expected {key}=..., got {line:?}"))
        };
        let seq = field("seq")?;
        let segment = field("segment")?;
        let length = field("length")?;
        let crc = field("crc32")?;
        let hwm = HighWaterMark {
            seq: seq
                .parse()
                .map_err(|_| format!("seq {seq:?} is not a number"))?,
            length: length
                .parse()
                .map_err(|_| format!("length {length:?} is not a number"))?,
            segment,
        };
        let expected = format!("{:08x}", crc32fast::hash(hwm.body().as_bytes()));
        if crc != expected {
            return Err(format!("checksum {crc} does not match {expected}"));
        }
        if hwm.segment.contains(['/', '\\']) {
            return Err(format!("segment {:?} is not a file name", hwm.segment));
        }
        Ok(hwm)
    }

    /// Reads `dir/COMMITTED`; `None` if there is none.
    pub fn read(dir: &Path) -> Result<Option<HighWaterMark>, JournalError> {
        let path = dir.join(FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).map_err(|_| JournalError::HighWaterMark {
                    path: path.clone(),
                    detail: "not UTF-8 text".into(),
                })?;
                HighWaterMark::parse(&text)
                    .map(Some)
                    .map_err(|detail| JournalError::HighWaterMark { path, detail })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, e)),
        }
    }

    /// Replaces `dir/COMMITTED` atomically; syncs file and directory unless `Never`.
    pub(crate) fn write(&self, dir: &Path, durability: Durability) -> Result<u64, JournalError> {
        let tmp = dir.join(TMP);
        let path = dir.join(FILE);
        let mut fsyncs = 0;
        let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        f.write_all(self.to_text().as_bytes())
            .map_err(|e| io_err(&tmp, e))?;
        if durability != Durability::Never {
            f.sync_data().map_err(|e| io_err(&tmp, e))?;
            fsyncs += 1;
        }
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
        if durability != Durability::Never {
            #[cfg(unix)]
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_err(dir, e))?;
            fsyncs += 1;
        }
        Ok(fsyncs)
    }
}

/// Decides when the high-water mark follows the commits, and writes it.
pub(crate) struct HwmWriter {
    dir: PathBuf,
    durability: Durability,
    interval: Duration,
    every_commits: u64,
    last_write: Instant,
    commits_since: u64,
    /// Seq of the last mark written.
    written_seq: u64,
}

impl HwmWriter {
    pub(crate) fn new(
        dir: &Path,
        durability: Durability,
        interval: Duration,
        every_commits: u64,
        written_seq: u64,
    ) -> Self {
        HwmWriter {
            dir: dir.to_owned(),
            durability,
            interval,
            every_commits,
            last_write: Instant::now(),
            commits_since: 0,
            written_seq,
        }
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

    /// Writes `mark` now.
    pub(crate) fn force(&mut self, mark: HighWaterMark) -> Result<u64, JournalError> {
        let fsyncs = mark.write(&self.dir, self.durability)?;
        self.written_seq = mark.seq;
        self.last_write = Instant::now();
        self.commits_since = 0;
        Ok(fsyncs)
    }

    pub(crate) fn written_seq(&self) -> u64 {
        self.written_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_damage_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(HighWaterMark::read(tmp.path()).unwrap(), None);
        let m = HighWaterMark {
            seq: 41_200,
            segment: "orders-000000040001.seg".into(),
            length: 123_456,
        };
        m.write(tmp.path(), Durability::Batch).unwrap();
        assert_eq!(HighWaterMark::read(tmp.path()).unwrap(), Some(m.clone()));
        let path = tmp.path().join(FILE);
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("seq=41200\nsegment=orders-000000040001.seg\nlength=123456\ncrc32=")
        );
        for bad in [
            text.replace("41200", "41201"),
            text.replace("seq=", "sq="),
            String::new(),
            text.lines().take(3).collect::<Vec<_>>().join("\n"),
        ] {
            fs::write(&path, bad).unwrap();
            let err = HighWaterMark::read(tmp.path()).unwrap_err();
            assert!(err.to_string().contains("COMMITTED is damaged"), "{err}");
        }
        fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(HighWaterMark::read(tmp.path()).is_err());
    }
}
