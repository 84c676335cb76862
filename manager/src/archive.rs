//! The disk archive: the finished-order index and book snapshots of `<data>/snapshots/`
//! ([`journal::snapshots`], [`journal::finished`]) behind the core's [`Archive`] trait.
//!
//! Each checkpoint writes one sorted run of the orders it archives (level 0). Runs are merged
//! in the background, `FANOUT` runs of one level into one of the next, so a day of checkpoints
//! keeps a handful of runs, and a lookup reads at most one block per run whose id range holds
//! the id. A fresh id (above the highest archived id of its namespace) is answered from
//! memory, with no disk read: the common case, since clients' ids increase. A merge runs on a
//! thread of its own over immutable files; its result is adopted at a checkpoint (the new
//! manifest names it) and only then are its inputs deleted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use journal::finished::{merge_runs, prefix_of, write_run};
use journal::{BookRef, FinishedOrder, FinishedRun, Manifest, RunRef, SnapshotDir};
use matching::OrderId;
use rustc_hash::FxHashMap;

use crate::core::{Archive, ArchiveStats, Checkpoint};

/// Runs of one level merged into one of the next.
const FANOUT: usize = 8;

struct Merge {
    inputs: Vec<u64>,
    handle: JoinHandle<Result<FinishedRun, journal::JournalError>>,
}

pub struct DiskArchive {
    dir: SnapshotDir,
    /// The runs the manifest names (plus, until the next manifest, none other).
    runs: Vec<Arc<FinishedRun>>,
    /// Per id namespace: the highest archived id.
    prefix_max: FxHashMap<u32, u64>,
    /// Per security: its latest durable snapshot.
    books: BTreeMap<u32, BookRef>,
    generation: u64,
    next_run: u64,
    merge: Option<Merge>,
    lookups: AtomicU64,
    disk_lookups: AtomicU64,
    checkpoints: u64,
    merges: u64,
}

impl DiskArchive {
    /// Opens the archive of `manifest` (the latest checkpoint; `None`: a fresh one). Files the
    /// manifest does not name must have been removed ([`SnapshotDir::remove_unreferenced`]).
    pub fn open(dir: SnapshotDir, manifest: Option<&Manifest>) -> anyhow::Result<DiskArchive> {
        let mut a = DiskArchive {
            dir,
            runs: Vec::new(),
            prefix_max: FxHashMap::default(),
            books: BTreeMap::new(),
            generation: 0,
            next_run: 1,
            merge: None,
            lookups: AtomicU64::new(0),
            disk_lookups: AtomicU64::new(0),
            checkpoints: 0,
            merges: 0,
        };
        if let Some(m) = manifest {
            a.generation = m.generation;
            a.next_run = m.next_run;
            for r in &m.runs {
                let path = a
                    .dir
                    .path()
                    .join(journal::finished::run_file_name(r.number));
                let run = FinishedRun::open(&path)
                    .with_context(|| format!("the checkpoint names {}", path.display()))?;
                anyhow::ensure!(
                    run.number() == r.number && run.level() == r.level,
                    "{} is not run {} of level {}",
                    path.display(),
                    r.number,
                    r.level
                );
                a.adopt(Arc::new(run));
            }
            for b in &m.books {
                a.books.insert(b.security.0, b.clone());
            }
        }
        Ok(a)
    }

    pub fn dir(&self) -> &SnapshotDir {
        &self.dir
    }

    fn adopt(&mut self, run: Arc<FinishedRun>) {
        for &(p, max) in run.prefix_max() {
            let m = self.prefix_max.entry(p).or_insert(max);
            *m = (*m).max(max);
        }
        self.runs.push(run);
    }

    /// Takes a finished background merge into the run list; returns the files it replaced.
    fn finish_merge(&mut self, wait: bool) -> anyhow::Result<Vec<std::path::PathBuf>> {
        let done = self
            .merge
            .as_ref()
            .is_some_and(|m| wait || m.handle.is_finished());
        if !done {
            return Ok(Vec::new());
        }
        let m = self.merge.take().expect("checked");
        let run = m
            .handle
            .join()
            .map_err(|_| anyhow::anyhow!("the merge thread panicked"))?;
        let run = match run {
            Ok(r) => r,
            Err(e) => {
                // The inputs stay; a half-written output is a .tmp file, removed at restart.
                tracing::warn!("merging finished-order runs failed: {e}; keeping the inputs");
                return Ok(Vec::new());
            }
        };
        let mut replaced = Vec::new();
        self.runs.retain(|r| {
            let gone = m.inputs.contains(&r.number());
            if gone {
                replaced.push(r.path().to_owned());
            }
            !gone
        });
        self.merges += 1;
        self.adopt(Arc::new(run));
        Ok(replaced)
    }

    /// Starts merging the oldest `FANOUT` runs of the lowest level that has that many.
    fn start_merge(&mut self) {
        if self.merge.is_some() {
            return;
        }
        let mut by_level: BTreeMap<u8, Vec<Arc<FinishedRun>>> = BTreeMap::new();
        for r in &self.runs {
            by_level.entry(r.level()).or_default().push(r.clone());
        }
        let Some((level, mut runs)) = by_level.into_iter().find(|(_, v)| v.len() >= FANOUT) else {
            return;
        };
        runs.sort_by_key(|r| r.number());
        runs.truncate(FANOUT);
        let number = self.next_run;
        self.next_run += 1;
        let dir = self.dir.path().to_owned();
        let inputs = runs.iter().map(|r| r.number()).collect();
        let next_level = level.saturating_add(1);
        let handle = std::thread::Builder::new()
            .name("archive-merge".into())
            .spawn(move || {
                let refs: Vec<&FinishedRun> = runs.iter().map(|r| r.as_ref()).collect();
                merge_runs(&dir, &refs, number, next_level)
            });
        match handle {
            Ok(handle) => self.merge = Some(Merge { inputs, handle }),
            Err(e) => tracing::warn!("cannot start a merge thread: {e}"),
        }
    }

    /// Waits for a running merge, adopts it and writes a manifest naming it (tests).
    pub fn wait_for_merge(&mut self) -> anyhow::Result<()> {
        if self.merge.is_none() {
            return Ok(());
        }
        let replaced = self.finish_merge(true)?;
        self.write_manifest_after(None, replaced)
    }

    fn write_manifest_after(
        &mut self,
        core: Option<Manifest>,
        doomed: Vec<std::path::PathBuf>,
    ) -> anyhow::Result<()> {
        let mut m = match core {
            Some(m) => m,
            None => match self.dir.read_manifest()? {
                Some(m) => m,
                None => return Ok(()),
            },
        };
        self.generation += 1;
        m.generation = self.generation;
        m.next_run = self.next_run;
        m.runs = self
            .runs
            .iter()
            .map(|r| RunRef {
                number: r.number(),
                level: r.level(),
            })
            .collect();
        m.books = self.books.values().cloned().collect();
        self.dir.write_manifest(&m)?;
        for p in doomed {
            if let Err(e) = std::fs::remove_file(&p) {
                tracing::warn!(file = %p.display(), "cannot remove a replaced file: {e}");
            }
        }
        Ok(())
    }
}

impl Archive for DiskArchive {
    fn get(&self, id: OrderId) -> anyhow::Result<Option<FinishedOrder>> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        if self
            .prefix_max
            .get(&prefix_of(id.0))
            .is_none_or(|max| id.0 > *max)
        {
            return Ok(None);
        }
        self.disk_lookups.fetch_add(1, Ordering::Relaxed);
        for run in self.runs.iter().rev() {
            if run
                .id_range()
                .is_some_and(|(lo, hi)| (lo..=hi).contains(&id.0))
            {
                if let Some(r) = run.get(id)? {
                    return Ok(Some(r));
                }
            }
        }
        Ok(None)
    }

    fn scan(&self, lo: u64, hi: u64, f: &mut dyn FnMut(&FinishedOrder)) -> anyhow::Result<()> {
        for run in &self.runs {
            run.scan(lo, hi, f)?;
        }
        Ok(())
    }

    fn checkpoint(&mut self, cp: Checkpoint) -> anyhow::Result<()> {
        let mut doomed = Vec::new();
        if !cp.finished.is_empty() {
            let run = write_run(self.dir.path(), self.next_run, 0, &cp.finished)?;
            self.next_run += 1;
            self.adopt(Arc::new(run));
        }
        for b in &cp.books {
            let file = self.dir.write_book(b)?;
            let new = BookRef {
                security: b.security,
                seq: b.seq,
                file: Some(file.clone()),
            };
            if let Some(old) = self.books.insert(b.security.0, new) {
                if let Some(f) = old.file.filter(|f| *f != file) {
                    doomed.push(self.dir.path().join(f));
                }
            }
        }
        doomed.extend(self.finish_merge(false)?);
        self.write_manifest_after(Some(cp.manifest), doomed)?;
        self.checkpoints += 1;
        self.start_merge();
        Ok(())
    }

    fn stats(&self) -> ArchiveStats {
        ArchiveStats {
            records: self.runs.iter().map(|r| r.records()).sum(),
            runs: self.runs.len(),
            bytes: self.runs.iter().map(|r| r.bytes()).sum(),
            memory: self.runs.iter().map(|r| r.memory_bytes()).sum(),
            checkpoints: self.checkpoints,
            merges: self.merges,
            lookups: self.disk_lookups.load(Ordering::Relaxed),
        }
    }
}
