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
//!
//! Checkpoints are written by a thread of their own (`checkpoint-writer`), never the core's:
//! the core hands one over ([`Archive::begin`]) and learns at a later poll that it is durable,
//! when the lookups here start to include its run. A checkpoint is at most four fsyncs
//! whatever the number of books: its run, one pack of all its books ([`journal::packs`]), the
//! manifest and the directory. A pack stays while the manifest names any book in it; when
//! fewer than half of a pack's books are still named, they are copied into the next pack, so
//! quiet books do not keep old packs on disk.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use journal::finished::{merge_runs, prefix_of, write_run};
use journal::packs::{pack_file_name, parse_pack_file_name, Pack, PackWriter};
use journal::{BookRef, BookSnapshot, FinishedOrder, FinishedRun, Manifest, RunRef, SnapshotDir};
use matching::OrderId;
use rustc_hash::FxHashMap;

use crate::core::{Archive, ArchiveStats, ArchiveView, Checkpoint, WriteState};

/// Runs of one level merged into one of the next.
const FANOUT: usize = 8;

/// Where a test makes the writer stop as if the process died there (its files stay as they
/// are; the core gets an error). In order of a checkpoint's steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// Before anything of the checkpoint is written.
    BeforeRun,
    /// The run of finished orders is written, the pack is not.
    BeforePack,
    /// Run and pack written, the manifest naming them is not.
    BeforeManifest,
    /// The manifest is written; the files it replaced are not removed, nothing reported.
    AfterManifest,
}

/// What the writer reports of a durable checkpoint.
struct Written {
    /// The runs the new manifest names.
    runs: Vec<Arc<FinishedRun>>,
    checkpoints: u64,
    merges: u64,
    write_time: Duration,
}

/// The core's side: lookups over the runs of the latest durable manifest; checkpoints go to
/// the writer thread through a channel of depth 1 (one checkpoint at a time).
pub struct DiskArchive {
    dir: PathBuf,
    /// The runs the latest durable manifest names.
    runs: Vec<Arc<FinishedRun>>,
    /// Per id namespace: the highest archived id (shared with views; rebuilt on each adopt).
    prefix_max: Arc<FxHashMap<u32, u64>>,
    jobs: Option<SyncSender<Checkpoint>>,
    done: Receiver<anyhow::Result<Written>>,
    writer: Option<JoinHandle<()>>,
    writing: bool,
    /// Ids looked for in the runs (their prefix's highest archived id is not below them),
    /// here and in views.
    disk_lookups: Arc<AtomicU64>,
    checkpoints: u64,
    merges: u64,
}

impl DiskArchive {
    /// Opens the archive of `manifest` (the latest checkpoint; `None`: a fresh one) and starts
    /// its writer thread. Files the manifest does not name must have been removed
    /// ([`SnapshotDir::remove_unreferenced`]).
    pub fn open(dir: SnapshotDir, manifest: Option<&Manifest>) -> anyhow::Result<DiskArchive> {
        DiskArchive::open_crashing(dir, manifest, None)
    }

    /// [`Self::open`] whose writer stops at `crash` (a point, and the how-manieth checkpoint
    /// from 1) as if the process died there: crash tests only.
    pub fn open_crashing(
        dir: SnapshotDir,
        manifest: Option<&Manifest>,
        crash: Option<(CrashPoint, u64)>,
    ) -> anyhow::Result<DiskArchive> {
        let writer = Writer::open(dir, manifest, crash)?;
        let path = writer.dir.path().to_owned();
        let runs = writer.runs.clone();
        let (jobs, inbox) = sync_channel::<Checkpoint>(1);
        let (report, done) = sync_channel(1);
        let handle = std::thread::Builder::new()
            .name("checkpoint-writer".into())
            .spawn(move || writer.run(inbox, report))
            .context("starting the checkpoint writer thread")?;
        let mut a = DiskArchive {
            dir: path,
            runs: Vec::new(),
            prefix_max: Arc::default(),
            jobs: Some(jobs),
            done,
            writer: Some(handle),
            writing: false,
            disk_lookups: Arc::default(),
            checkpoints: 0,
            merges: 0,
        };
        a.adopt(runs);
        Ok(a)
    }

    /// The snapshot directory.
    pub fn path(&self) -> &std::path::Path {
        &self.dir
    }

    fn adopt(&mut self, runs: Vec<Arc<FinishedRun>>) {
        let mut prefix_max = FxHashMap::default();
        for run in &runs {
            for &(p, max) in run.prefix_max() {
                let m = prefix_max.entry(p).or_insert(max);
                *m = (*m).max(max);
            }
        }
        self.prefix_max = Arc::new(prefix_max);
        self.runs = runs;
    }

    fn collect(&mut self, report: anyhow::Result<Written>) -> anyhow::Result<WriteState> {
        self.writing = false;
        let w = report.context("writing a checkpoint")?;
        self.adopt(w.runs);
        self.checkpoints = w.checkpoints;
        self.merges = w.merges;
        Ok(WriteState::Durable {
            write_time: w.write_time,
        })
    }
}

impl Drop for DiskArchive {
    /// Lets the writer finish the checkpoint it has (an orderly stop leaves it durable).
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

/// Whether the runs may hold `id`: not above the highest archived id of its prefix (a client's
/// new ids, the common case, are answered without a disk read).
fn may_hold(prefix_max: &FxHashMap<u32, u64>, id: u64) -> bool {
    prefix_max.get(&prefix_of(id)).is_some_and(|max| id <= *max)
}

/// [`DiskArchive::view`]: the runs of one moment (their files stay readable while open, even
/// once a merge replaced them).
struct RunsView {
    runs: Vec<Arc<FinishedRun>>,
    prefix_max: Arc<FxHashMap<u32, u64>>,
    disk_lookups: Arc<AtomicU64>,
}

impl ArchiveView for RunsView {
    fn scan(&self, lo: u64, hi: u64, f: &mut dyn FnMut(&FinishedOrder)) -> anyhow::Result<()> {
        for run in &self.runs {
            run.scan(lo, hi, f)?;
        }
        Ok(())
    }

    fn get_many(&self, ids: &[OrderId], f: &mut dyn FnMut(FinishedOrder)) -> anyhow::Result<()> {
        let mut left: Vec<u64> = ids
            .iter()
            .map(|id| id.0)
            .filter(|&id| may_hold(&self.prefix_max, id))
            .collect();
        self.disk_lookups
            .fetch_add(left.len() as u64, Ordering::Relaxed);
        // Newest run first, as `get`; an id found is not looked for in older runs.
        for run in self.runs.iter().rev() {
            let Some((lo, hi)) = run.id_range() else {
                continue;
            };
            let from = left.partition_point(|&id| id < lo);
            let to = left.partition_point(|&id| id <= hi);
            let mut found = Vec::new();
            run.get_many(&left[from..to], &mut |r| {
                found.push(r.id.0);
                f(r);
            })?;
            if !found.is_empty() {
                // `found` is in id order.
                left.retain(|id| found.binary_search(id).is_err());
            }
            if left.is_empty() {
                break;
            }
        }
        Ok(())
    }
}

impl Archive for DiskArchive {
    fn get(&self, id: OrderId) -> anyhow::Result<Option<FinishedOrder>> {
        if !may_hold(&self.prefix_max, id.0) {
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

    fn view(&self) -> Box<dyn ArchiveView> {
        Box::new(RunsView {
            runs: self.runs.clone(),
            prefix_max: self.prefix_max.clone(),
            disk_lookups: self.disk_lookups.clone(),
        })
    }

    fn begin(&mut self, cp: Checkpoint) -> anyhow::Result<()> {
        anyhow::ensure!(!self.writing, "a checkpoint is already being written");
        let jobs = self.jobs.as_ref().context("the archive is closed")?;
        match jobs.try_send(cp) {
            Ok(()) => {
                self.writing = true;
                Ok(())
            }
            Err(TrySendError::Full(_)) => anyhow::bail!("the checkpoint writer is busy"),
            Err(TrySendError::Disconnected(_)) => {
                anyhow::bail!("the checkpoint writer has stopped")
            }
        }
    }

    fn poll(&mut self) -> anyhow::Result<WriteState> {
        if !self.writing {
            return Ok(WriteState::Idle);
        }
        match self.done.try_recv() {
            Ok(report) => self.collect(report),
            Err(TryRecvError::Empty) => Ok(WriteState::Writing),
            Err(TryRecvError::Disconnected) => {
                self.writing = false;
                anyhow::bail!("the checkpoint writer stopped before the checkpoint was durable")
            }
        }
    }

    fn wait(&mut self) -> anyhow::Result<WriteState> {
        if !self.writing {
            return Ok(WriteState::Idle);
        }
        match self.done.recv() {
            Ok(report) => self.collect(report),
            Err(_) => {
                self.writing = false;
                anyhow::bail!("the checkpoint writer stopped before the checkpoint was durable")
            }
        }
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

struct Merge {
    inputs: Vec<u64>,
    handle: JoinHandle<Result<FinishedRun, journal::JournalError>>,
}

/// How many books of a pack (or old single-book file) the manifest still names.
#[derive(Clone, Copy, Debug)]
struct PackUse {
    total: usize,
    live: usize,
}

/// The writer thread's state: what the latest manifest names, and the background merge.
struct Writer {
    dir: SnapshotDir,
    runs: Vec<Arc<FinishedRun>>,
    /// Per security: its latest durable snapshot.
    books: BTreeMap<u32, BookRef>,
    /// Per book file (pack or old single book) the manifest names.
    packs: FxHashMap<String, PackUse>,
    generation: u64,
    /// Number of the next run or pack file.
    next_run: u64,
    merge: Option<Merge>,
    checkpoints: u64,
    merges: u64,
    crash: Option<(CrashPoint, u64)>,
}

impl Writer {
    fn open(
        dir: SnapshotDir,
        manifest: Option<&Manifest>,
        crash: Option<(CrashPoint, u64)>,
    ) -> anyhow::Result<Writer> {
        let mut w = Writer {
            dir,
            runs: Vec::new(),
            books: BTreeMap::new(),
            packs: FxHashMap::default(),
            generation: 0,
            next_run: 1,
            merge: None,
            checkpoints: 0,
            merges: 0,
            crash,
        };
        let Some(m) = manifest else {
            return Ok(w);
        };
        w.generation = m.generation;
        w.next_run = m.next_run;
        for r in &m.runs {
            let path = w
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
            w.runs.push(Arc::new(run));
        }
        for b in &m.books {
            w.books.insert(b.security.0, b.clone());
            let Some(file) = &b.file else {
                continue;
            };
            if !w.packs.contains_key(file) {
                let total = if parse_pack_file_name(file).is_some() {
                    let path = w.dir.path().join(file);
                    Pack::open(&path)
                        .with_context(|| format!("the checkpoint names {}", path.display()))?
                        .entries()
                        .len()
                } else {
                    1
                };
                w.packs.insert(file.clone(), PackUse { total, live: 0 });
            }
            w.packs.get_mut(file).expect("inserted").live += 1;
        }
        Ok(w)
    }

    fn run(mut self, inbox: Receiver<Checkpoint>, report: SyncSender<anyhow::Result<Written>>) {
        while let Ok(cp) = inbox.recv() {
            let started = Instant::now();
            let result = self.checkpoint(cp).map(|()| Written {
                runs: self.runs.clone(),
                checkpoints: self.checkpoints,
                merges: self.merges,
                write_time: started.elapsed(),
            });
            let failed = result.is_err();
            if report.send(result).is_err() || failed {
                // A failed writer stops: the core stops on its error.
                return;
            }
        }
    }

    fn crash_at(&self, point: CrashPoint) -> anyhow::Result<()> {
        match self.crash {
            Some((p, n)) if p == point && n == self.checkpoints + 1 => {
                anyhow::bail!("injected crash {point:?} in checkpoint {n}")
            }
            _ => Ok(()),
        }
    }

    /// Makes `cp` durable: the run of its finished orders, then one pack of its books, then
    /// the manifest naming both (the commit point); only then are replaced files removed.
    fn checkpoint(&mut self, cp: Checkpoint) -> anyhow::Result<()> {
        self.crash_at(CrashPoint::BeforeRun)?;
        let mut doomed = self.finish_merge(false)?;
        if !cp.finished.is_empty() {
            let run = write_run(self.dir.path(), self.next_run, 0, &cp.finished[..])?;
            self.next_run += 1;
            self.runs.push(Arc::new(run));
        }
        self.crash_at(CrashPoint::BeforePack)?;
        if !cp.books.is_empty() {
            doomed.extend(self.write_pack(&cp.books)?);
        }
        self.crash_at(CrashPoint::BeforeManifest)?;
        self.write_manifest(cp.manifest)?;
        self.crash_at(CrashPoint::AfterManifest)?;
        remove(doomed);
        self.checkpoints += 1;
        self.start_merge();
        Ok(())
    }

    /// Writes `books` (one per security) into one new pack, with the still-named books of any
    /// older pack this leaves mostly unnamed (fewer than half its books), so old packs never
    /// pile up behind a few quiet books. Returns the files no book is named in any more.
    fn write_pack(&mut self, books: &[Arc<BookSnapshot>]) -> anyhow::Result<Vec<PathBuf>> {
        let fresh: BTreeMap<u32, &BookSnapshot> =
            books.iter().map(|b| (b.security.0, b.as_ref())).collect();
        let mut losing: FxHashMap<&str, usize> = FxHashMap::default();
        for sec in fresh.keys() {
            if let Some(file) = self.books.get(sec).and_then(|b| b.file.as_deref()) {
                *losing.entry(file).or_default() += 1;
            }
        }
        let sparse: Vec<String> = losing
            .into_iter()
            .filter(|(f, lost)| {
                parse_pack_file_name(f).is_some()
                    && self.packs.get(*f).is_some_and(|u| {
                        let left = u.live.saturating_sub(*lost);
                        left > 0 && left * 2 < u.total
                    })
            })
            .map(|(f, _)| f.to_string())
            .collect();
        let mut carried: BTreeMap<u32, (u64, &str)> = BTreeMap::new();
        for (sec, b) in &self.books {
            if let Some(f) = b.file.as_deref() {
                if !fresh.contains_key(sec) && sparse.iter().any(|s| s == f) {
                    carried.insert(*sec, (b.seq, f));
                }
            }
        }
        let number = self.next_run;
        self.next_run += 1;
        let name = pack_file_name(number);
        let mut opened: FxHashMap<&str, Pack> = FxHashMap::default();
        let mut w = PackWriter::create(self.dir.path(), number)?;
        let secs: std::collections::BTreeSet<u32> =
            fresh.keys().chain(carried.keys()).copied().collect();
        for sec in secs {
            if let Some(b) = fresh.get(&sec) {
                w.push(b)?;
            } else if let Some((seq, f)) = carried.get(&sec) {
                if !opened.contains_key(f) {
                    opened.insert(f, Pack::open(&self.dir.path().join(f))?);
                }
                w.push_encoded(sec, *seq, &opened[f].read_encoded(sec)?)?;
            }
        }
        let entries = w.finish()?;
        drop(opened);
        let mut doomed = Vec::new();
        for e in &entries {
            let new = BookRef {
                security: matching::SecurityId(e.security),
                seq: e.seq,
                file: Some(name.clone()),
            };
            if let Some(old) = self.books.insert(e.security, new).and_then(|o| o.file) {
                if let Some(u) = self.packs.get_mut(&old) {
                    u.live = u.live.saturating_sub(1);
                    if u.live == 0 {
                        self.packs.remove(&old);
                        doomed.push(self.dir.path().join(old));
                    }
                }
            }
        }
        self.packs.insert(
            name,
            PackUse {
                total: entries.len(),
                live: entries.len(),
            },
        );
        Ok(doomed)
    }

    /// Takes a finished background merge into the run list; returns the files it replaced.
    fn finish_merge(&mut self, wait: bool) -> anyhow::Result<Vec<PathBuf>> {
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
        self.runs.push(Arc::new(run));
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

    /// Writes the manifest: the core's fields of `m` with this writer's runs and books.
    fn write_manifest(&mut self, mut m: Manifest) -> anyhow::Result<()> {
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
        Ok(())
    }
}

fn remove(files: Vec<PathBuf>) {
    for p in files {
        if let Err(e) = std::fs::remove_file(&p) {
            tracing::warn!(file = %p.display(), "cannot remove a replaced file: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use journal::snapshots::LiveOrder;
    use journal::{BrokerRef, FinalState};
    use matching::{BrokerId, OrderType, Phase, SecurityId, Side};

    fn book(security: u32, seq: u64) -> Arc<BookSnapshot> {
        Arc::new(BookSnapshot {
            security: SecurityId(security),
            seq,
            phase: Phase::Continuous,
            reference: 1_000,
            last_trade: None,
            bids: vec![LiveOrder {
                id: OrderId(seq * 100 + u64::from(security)),
                broker: BrokerId(0),
                side: Side::Buy,
                kind: OrderType::Limit,
                price: 990,
                qty: 100,
                filled: 0,
                client_ref: seq,
                since: seq,
            }],
            asks: vec![],
        })
    }

    fn finished(ids: std::ops::Range<u64>) -> Arc<[FinishedOrder]> {
        ids.map(|id| FinishedOrder {
            id: OrderId(id),
            broker: BrokerId(0),
            security: SecurityId(0),
            side: Side::Sell,
            kind: OrderType::Limit,
            price: 1_000,
            qty: 100,
            filled: 100,
            state: FinalState::Filled,
        })
        .collect()
    }

    fn manifest(next_seq: u64) -> Manifest {
        Manifest {
            generation: 0,
            next_seq,
            resume_seq: next_seq,
            phase: Phase::Continuous,
            last_time: 0,
            max_order_id: 0,
            refusals_at_next_seq: None,
            next_run: 0,
            brokers: vec![BrokerRef {
                id: BrokerId(0),
                name: "B".into(),
                max_own_id: 0,
            }],
            runs: vec![],
            books: vec![],
        }
    }

    fn names(dir: &std::path::Path, prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(prefix))
            .collect();
        v.sort();
        v
    }

    /// Many ids at once over several runs with overlapping id ranges, ids of other prefixes,
    /// past a prefix's highest id and never archived: exactly what one `get` per id finds. A
    /// view taken after two checkpoints scans exactly those two, whatever came after.
    #[test]
    fn get_many_answers_as_get_does_and_a_view_keeps_its_moment() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SnapshotDir::open(tmp.path()).unwrap();
        let mut a = DiskArchive::open(dir, None).unwrap();
        let spread = |ids: Vec<u64>| -> Arc<[FinishedOrder]> {
            let mut v: Vec<FinishedOrder> =
                ids.into_iter().map(|id| finished(id..id + 1)[0]).collect();
            v.sort_by_key(|f| f.id);
            v.into()
        };
        let runs: [Vec<u64>; 4] = [
            (1..20_000).step_by(3).collect(),
            (2..20_000)
                .step_by(3)
                .chain((1 << 40)..(1 << 40) + 500)
                .collect(),
            (30_000..31_000)
                .chain(((2 << 40) + 7)..((2 << 40) + 9))
                .collect(),
            (20_000..20_100).collect(),
        ];
        let mut first_two = None;
        for (k, ids) in runs.iter().enumerate() {
            if k == 2 {
                first_two = Some(a.view());
            }
            a.begin(Checkpoint {
                finished: spread(ids.clone()),
                books: vec![],
                manifest: manifest(k as u64 + 2),
            })
            .unwrap();
            a.wait().unwrap();
        }
        assert!(a.stats().runs >= 2, "lookups cross runs");
        // A view is the archive of its moment: later checkpoints (and merges) do not show.
        let mut seen = Vec::new();
        first_two
            .unwrap()
            .scan(0, u64::MAX, &mut |f| seen.push(f.id.0))
            .unwrap();
        seen.sort_unstable();
        let mut expected: Vec<u64> = runs[..2].concat();
        expected.sort_unstable();
        assert_eq!(seen, expected);
        let mut asked: Vec<OrderId> = (0..32_000)
            .step_by(2)
            .chain((1 << 40) - 3..(1 << 40) + 600)
            .chain([(2 << 40) + 8, (2 << 40) + 9, (3 << 40) + 1, u64::MAX])
            .map(OrderId)
            .collect();
        asked.sort_unstable();
        let mut found = Vec::new();
        a.view()
            .get_many(&asked, &mut |f| found.push(f.id))
            .unwrap();
        found.sort_unstable();
        let expected: Vec<OrderId> = asked
            .iter()
            .filter(|&&id| a.get(id).unwrap().is_some())
            .copied()
            .collect();
        assert!(expected.len() > 7_000, "{} found", expected.len());
        assert_eq!(found, expected);
    }

    /// Checkpoints through the writer thread: a pack per checkpoint, lookups answer a run only
    /// once it is reported durable, a pack mostly replaced is folded into the next one, and a
    /// reopened archive reads exactly the books the manifest names.
    #[test]
    fn packs_are_written_replaced_and_folded_and_lookups_follow_durability() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SnapshotDir::open(tmp.path()).unwrap();
        let mut a = DiskArchive::open(dir.clone(), None).unwrap();
        assert_eq!(a.poll().unwrap(), WriteState::Idle);
        // Checkpoint 1: books of securities 0..4 in one pack, orders 1..50.
        a.begin(Checkpoint {
            finished: finished(1..50),
            books: (0..4).map(|s| book(s, 10)).collect(),
            manifest: manifest(11),
        })
        .unwrap();
        assert!(
            a.begin(Checkpoint {
                finished: finished(60..61),
                books: vec![],
                manifest: manifest(11),
            })
            .is_err(),
            "one checkpoint at a time"
        );
        assert!(matches!(a.wait().unwrap(), WriteState::Durable { .. }));
        assert_eq!(a.get(OrderId(7)).unwrap().map(|f| f.id), Some(OrderId(7)));
        assert_eq!(a.get(OrderId(60)).unwrap(), None, "refused, never written");
        let first = names(tmp.path(), "pack-");
        assert_eq!(first.len(), 1);
        // Checkpoint 2: one book replaced; the first pack still holds 3 of 4: it stays.
        a.begin(Checkpoint {
            finished: finished(50..60),
            books: vec![book(1, 20)],
            manifest: manifest(21),
        })
        .unwrap();
        // Not answered before the writer said durable (the core answers meanwhile).
        assert_eq!(a.get(OrderId(55)).unwrap(), None);
        a.wait().unwrap();
        assert!(a.get(OrderId(55)).unwrap().is_some());
        assert_eq!(names(tmp.path(), "pack-").len(), 2);
        // Checkpoint 3: two more replaced; 1 of 4 left in the first pack: folded into this one.
        a.begin(Checkpoint {
            finished: finished(0..0),
            books: vec![book(0, 30), book(2, 30)],
            manifest: manifest(31),
        })
        .unwrap();
        a.wait().unwrap();
        let packs = names(tmp.path(), "pack-");
        assert_eq!(packs.len(), 2, "{packs:?}");
        assert!(!packs.contains(&first[0]), "the folded pack is removed");
        let m = dir.read_manifest().unwrap().unwrap();
        let books = dir.read_books(&m).unwrap();
        let seqs: Vec<(u32, u64)> = books.iter().map(|b| (b.security.0, b.seq)).collect();
        assert_eq!(seqs, vec![(0, 30), (1, 20), (2, 30), (3, 10)]);
        assert_eq!(books[3], *book(3, 10), "the folded book is the same book");
        assert_eq!(m.next_seq, 31);
        drop(a);
        // Reopened: the same runs answer, and the next checkpoint goes on from the manifest.
        let mut b = DiskArchive::open(dir.clone(), Some(&m)).unwrap();
        assert_eq!(b.stats().records, 59);
        assert!(b.get(OrderId(58)).unwrap().is_some());
        b.begin(Checkpoint {
            finished: finished(100..101),
            books: vec![book(3, 40)],
            manifest: manifest(41),
        })
        .unwrap();
        b.wait().unwrap();
        let m2 = dir.read_manifest().unwrap().unwrap();
        assert_eq!(m2.generation, m.generation + 1);
        assert_eq!(dir.read_books(&m2).unwrap().len(), 4);
        assert_eq!(
            dir.remove_unreferenced(Some(&m2)).unwrap(),
            0,
            "nothing left over"
        );
    }
}
