//! The manager's data directory: token, broker credentials, listing, persistence.
//!
//! Defaults that just work: anything not given on the command line is created on first start
//! and reused afterwards, so a second start finds the same identity and the same secrets.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use matching::SecurityTable;
use rand::Rng;

use crate::core::{Core, JournalEntry, Persist, RejectedEntry, Restart, Tape, TapeEntry};

/// The wall clock, ns since the Unix epoch.
pub fn wall_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// A random 128-bit hex secret.
pub fn random_secret() -> String {
    let mut rng = rand::thread_rng();
    format!("{:032x}", rng.gen::<u128>())
}

/// Writes `text` to `path` atomically (temporary file + rename).
pub fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// The operator token: given, or `data_dir/token`, created on first start.
pub fn load_token(data_dir: &Path, given: Option<String>) -> anyhow::Result<String> {
    if let Some(t) = given {
        if t.trim().is_empty() {
            bail!("--token must not be empty");
        }
        return Ok(t);
    }
    let path = data_dir.join("token");
    if path.exists() {
        let t = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return Ok(t.trim().to_string());
    }
    let t = random_secret();
    write_atomic(&path, &format!("{t}\n"))?;
    Ok(t)
}

/// Credentials from `given`, else `data_dir/brokers.csv` (created with B01..B16 on first start).
pub fn load_credentials(
    data_dir: &Path,
    given: Option<&Path>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let path = match given {
        Some(p) => p.to_owned(),
        None => {
            let p = data_dir.join("brokers.csv");
            if !p.exists() {
                let mut text = String::from("broker,secret\n");
                for i in 1..=16 {
                    text.push_str(&format!("B{i:02},{}\n", random_secret()));
                }
                write_atomic(&p, &text)?;
            }
            p
        }
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(transport::credentials::parse(
        &text,
        &path.display().to_string(),
    )?)
}

/// The listing in use: `--securities FILE`, else `data_dir/securities.csv` from an earlier
/// start, else a synthetic one. Nothing is written here: [`save_listing`] writes it back once
/// the journal has accepted it.
pub fn load_securities(
    data_dir: &Path,
    given: Option<&Path>,
    listings: usize,
) -> anyhow::Result<SecurityTable> {
    let saved = data_dir.join("securities.csv");
    let table = if let Some(path) = given {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        SecurityTable::parse_csv(&text).with_context(|| format!("in {}", path.display()))?
    } else if saved.exists() {
        let text = std::fs::read_to_string(&saved)?;
        SecurityTable::parse_csv(&text).with_context(|| format!("in {}", saved.display()))?
    } else {
        SecurityTable::synthetic(listings)?
    };
    if table.is_empty() {
        bail!("the listing has no securities");
    }
    Ok(table)
}

/// Writes the listing in use to `data_dir/securities.csv`, so a restart and `journal export`
/// see the same ids. Call it after the journal opened with this listing: a journal keeps its
/// own copy and refuses another one, so an edited file (or another --securities) is caught
/// there, before anything is overwritten.
pub fn save_listing(data_dir: &Path, table: &SecurityTable) -> anyhow::Result<()> {
    write_atomic(&data_dir.join("securities.csv"), &table.to_csv())
}

/// The schedule in use. It is kept in `data_dir/schedule.json` with its anchor (the wall clock
/// of day 1, 09:00), so a restarted manager resumes the same day at the same exchange time; a
/// data dir keeps the schedule it started with unless the journal is still empty.
pub fn load_schedule(
    data_dir: &Path,
    kind: crate::schedule::ScheduleKind,
    day_length: std::time::Duration,
    days: u32,
    start_date: Option<&str>,
) -> anyhow::Result<crate::schedule::Schedule> {
    use crate::schedule::{today_at_hose, Schedule};
    let path = data_dir.join("schedule.json");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let date = start_date.map_or_else(|| today_at_hose(now_ms), str::to_string);
    let fresh = Schedule::new(kind, day_length, days, &date, now_ms)?;
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let saved: Schedule = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a schedule", path.display()))?;
        let same = saved.kind == fresh.kind
            && saved.day_length_ms == fresh.day_length_ms
            && saved.days == fresh.days
            && start_date.is_none_or(|d| d == saved.start_date);
        let journaled = data_dir
            .join("journal")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some());
        if same {
            return Ok(saved);
        }
        if journaled && kind == saved.kind && kind == crate::schedule::ScheduleKind::Continuous {
            return Ok(saved);
        }
        if journaled {
            bail!(
                "this data dir runs the schedule \"{}\" (see {}); start with the same --schedule/--day-length/--days/--start-date, or use a fresh --data-dir",
                saved.describe(),
                path.display()
            );
        }
    }
    write_atomic(&path, &serde_json::to_string_pretty(&fresh)?)?;
    Ok(fresh)
}

/// The journal and the trade tape on disk, as the core takes them: the journal for its
/// sequencing stage, the tape for the rest (they may run on two threads).
pub fn disk_persist(store: journal::Store) -> (Box<dyn Persist>, Box<dyn Tape>) {
    (
        Box::new(DiskJournal(store.journal)),
        Box::new(DiskTape {
            tape: store.tape,
            dirty: false,
        }),
    )
}

/// The order journal on disk.
pub struct DiskJournal(journal::OrderJournal);

impl Persist for DiskJournal {
    fn append(&mut self, e: &JournalEntry<'_>) -> anyhow::Result<()> {
        Ok(self
            .0
            .append(e.seq, e.time, e.client_ref, e.command, e.broker_name)?)
    }
    fn append_rejected(&mut self, e: &RejectedEntry<'_>) -> anyhow::Result<()> {
        Ok(self
            .0
            .append_rejected(e.time, e.client_ref, e.order, e.reason, e.broker_name)?)
    }
    fn commit(&mut self) -> anyhow::Result<()> {
        Ok(self.0.commit()?)
    }
    fn idle(&mut self) -> anyhow::Result<()> {
        Ok(self.0.refresh_mark()?)
    }
}

/// The trade tape on disk.
pub struct DiskTape {
    tape: journal::TradeTape,
    dirty: bool,
}

impl Tape for DiskTape {
    fn append_trade(&mut self, e: &TapeEntry) -> anyhow::Result<()> {
        self.dirty = true;
        Ok(self.tape.append(e.seq, e.time, e.fill_index, &e.fill)?)
    }
    fn commit(&mut self) -> anyhow::Result<()> {
        if self.dirty {
            self.tape.commit()?;
            self.dirty = false;
        }
        Ok(())
    }
}

/// What recovery did, for the log.
#[derive(Clone, Copy, Debug, Default)]
pub struct Recovered {
    /// The journal was read from this seq (1: the whole journal).
    pub resume_seq: u64,
    pub records: u64,
    pub rejected: u64,
    pub books: usize,
    pub fills_restored: u64,
}

/// Opens the latest checkpoint of a snapshot directory: removes the files its manifest does
/// not name (what an unfinished checkpoint left), reads the book snapshots it names and opens
/// the disk archive (with its writer thread) on it.
pub fn open_checkpoint(snapshots: &Path) -> anyhow::Result<(Restart, crate::archive::DiskArchive)> {
    let dir = journal::SnapshotDir::open(snapshots)?;
    let manifest = dir.read_manifest()?;
    let removed = dir.remove_unreferenced(manifest.as_ref())?;
    if removed > 0 {
        tracing::info!(
            removed,
            "removed checkpoint files the manifest does not name (an unfinished checkpoint)"
        );
    }
    let books = match &manifest {
        Some(m) => dir.read_books(m)?,
        None => Vec::new(),
    };
    let archive = crate::archive::DiskArchive::open(dir, manifest.as_ref())?;
    Ok((Restart { manifest, books }, archive))
}

/// Opens the checkpoint of `data_dir/snapshots` (removing what the manifest does not name),
/// installs the disk archive in `core` and rebuilds the core from the book snapshots plus the
/// journal and tape from the checkpoint's resume seq on. The journal writer's next seq must
/// equal what recovery reached (`journal_next_seq`).
pub fn recover_core(
    core: Core,
    data_dir: &Path,
    cfg: &journal::StoreConfig,
    journal_next_seq: u64,
) -> anyhow::Result<(Core, Recovered)> {
    let (restart, archive) = open_checkpoint(&data_dir.join("snapshots"))?;
    let mut core = core.with_archive(Box::new(archive));
    let resume_seq = restart.resume_seq();
    let mut out = Recovered {
        resume_seq,
        books: restart.books.len(),
        ..Recovered::default()
    };
    if journal_next_seq <= 1 && restart.manifest.is_none() {
        return Ok((core, out));
    }
    let mut taped = rustc_hash::FxHashSet::default();
    for f in journal::TapeReader::open(&cfg.tape_dir, resume_seq)? {
        let f = f?;
        if f.seq >= resume_seq {
            taped.insert(f.key());
        }
    }
    let mut reader = journal::JournalReader::open(&cfg.journal_dir, resume_seq)?;
    let (mut records, mut rejected) = (0u64, 0u64);
    let items = reader.by_ref().map(|item| {
        match &item {
            Ok(journal::JournalItem::Record(_)) => records += 1,
            Ok(journal::JournalItem::Rejected(_)) => rejected += 1,
            Err(_) => {}
        }
        item.map_err(anyhow::Error::from)
    });
    out.fills_restored = core.recover(restart, items, &taped)?;
    core.restore_brokers(&reader.brokers())?;
    out.records = records;
    out.rejected = rejected;
    anyhow::ensure!(
        core.next_seq() == journal_next_seq,
        "recovery reached seq {} but the journal continues at {}: the snapshots in {} do not belong to this journal",
        core.next_seq(),
        journal_next_seq,
        data_dir.join("snapshots").display()
    );
    Ok((core, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_token(dir.path(), None).unwrap();
        let b = load_token(dir.path(), None).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
        assert!(load_token(dir.path(), Some(" ".into())).is_err());
    }
}
