//! Bounded memory over a long day: book images from the executors, checkpoints, and the index
//! of finished orders.
//!
//! The cycle, per security: the owner is asked for an image (by count in
//! [`super::shards::Shards::route`], by time in [`Core::maintain`]); the image arrives after
//! the events of every command before the request ([`Core::executor_image`]); it is checked
//! against the projection (a forged or broken image fails its executor and is never used),
//! becomes the security's base for failover, and the history before it is dropped. The orders
//! of that security that finished up to the image are then due for the index.
//!
//! A checkpoint ([`Core::checkpoint`], on the timer) commits the journal and tape, takes the
//! due finished orders and the rejected NEWs out of memory (projection and gateway), and hands
//! them with the new bases to the [`Archive`], which makes them durable and then writes the
//! manifest, off the core's thread: the core never waits for the disk. Until the archive
//! reports the checkpoint durable the core answers for its orders itself ([`Archived`]), and
//! the next checkpoint waits (at most one is in flight). Invariant of a written manifest: its runs hold exactly the finished orders of
//! each security up to that security's snapshot, plus every NEW rejected before it; the
//! journal from `resume_seq` on holds everything else. So recovery (`recovery.rs`) rebuilds
//! everything exactly from snapshots + runs + the journal tail, and nothing is indexed twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use journal::{BookRef, BookSnapshot, BrokerRef, FinishedOrder, Manifest};
use matching::{BrokerId, OrderId, SecurityId};
use proto::{ImagePart, LogKind};

use super::shards::{ImageFit, NodeId};
use super::Core;

/// What one checkpoint makes durable.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// Orders leaving memory, sorted by id, unique (shared with the core, which answers from
    /// them until the archive says they are durable).
    pub finished: Arc<[FinishedOrder]>,
    /// Book snapshots trusted since the last checkpoint (at most one per security).
    pub books: Vec<Arc<BookSnapshot>>,
    /// The manifest's core fields; the archive fills in runs, books, generation and next run.
    pub manifest: Manifest,
}

/// Figures of an archive, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    pub records: u64,
    pub runs: usize,
    /// Bytes of files on disk.
    pub bytes: u64,
    /// Bytes of in-memory index (fences).
    pub memory: usize,
    pub checkpoints: u64,
    pub merges: u64,
    pub lookups: u64,
}

/// Where the checkpoint handed to [`Archive::begin`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteState {
    /// Nothing handed over, or its completion was already reported.
    Idle,
    /// Being written.
    Writing,
    /// Durable (its manifest is written) and answered by `get`/`scan` from now on; reported
    /// once. `write_time`: how long the writer took.
    Durable { write_time: Duration },
}

/// Where finished orders and book snapshots are kept. Lookups must be exact for what it has
/// reported durable; the core itself answers for the checkpoint being written.
pub trait Archive: Send {
    /// The finished order `id`, if indexed.
    fn get(&self, id: OrderId) -> anyhow::Result<Option<FinishedOrder>>;
    /// The orders indexed now, to be scanned later on another thread (a query's archived
    /// part, off the core thread): what is added or merged afterwards does not change it.
    fn view(&self) -> Box<dyn ArchiveView>;
    /// Starts making `cp` durable (records and books first, then the manifest that names
    /// them), off the caller's thread where the archive has one. One at a time: called only
    /// when [`Self::poll`] has nothing being written. Never waits for the disk.
    fn begin(&mut self, cp: Checkpoint) -> anyhow::Result<()>;
    /// Whether the checkpoint begun last is durable yet (never waits). An error is a failed
    /// write: the checkpoint never became durable.
    fn poll(&mut self) -> anyhow::Result<WriteState>;
    /// Waits until the checkpoint begun last is durable (shutdown, tests).
    fn wait(&mut self) -> anyhow::Result<WriteState>;
    fn stats(&self) -> ArchiveStats;
}

/// The finished orders an archive held at one moment ([`Archive::view`]).
pub trait ArchiveView: Send {
    /// Every order with `lo <= id <= hi` (in id order per run or part).
    fn scan(&self, lo: u64, hi: u64, f: &mut dyn FnMut(&FinishedOrder)) -> anyhow::Result<()>;
    /// The orders among `ids` (sorted, no duplicates), in no particular order. On disk each
    /// block is read at most once per run for the whole set.
    fn get_many(&self, ids: &[OrderId], f: &mut dyn FnMut(FinishedOrder)) -> anyhow::Result<()>;
}

/// [`MemoryArchive::view`].
struct MemoryView(MemoryArchive);

impl ArchiveView for MemoryView {
    fn scan(&self, lo: u64, hi: u64, f: &mut dyn FnMut(&FinishedOrder)) -> anyhow::Result<()> {
        for r in self.0.inner().records.range(lo..=hi).map(|(_, r)| r) {
            f(r);
        }
        Ok(())
    }

    fn get_many(&self, ids: &[OrderId], f: &mut dyn FnMut(FinishedOrder)) -> anyhow::Result<()> {
        let inner = self.0.inner();
        for id in ids {
            if let Some(r) = inner.records.get(&id.0) {
                f(*r);
            }
        }
        Ok(())
    }
}

/// [`Archived::view`]: the archive's view plus the checkpoint being written.
pub struct ArchivedView {
    store: Box<dyn ArchiveView>,
    writing: Option<Arc<[FinishedOrder]>>,
}

impl ArchivedView {
    /// The orders of the checkpoint being written at the view's moment, sorted by id.
    fn writing(&self) -> &[FinishedOrder] {
        self.writing.as_deref().unwrap_or(&[])
    }

    /// The finished orders among `ids` (sorted, no duplicates), in no particular order.
    pub fn get_many(
        &self,
        ids: &[OrderId],
        f: &mut dyn FnMut(FinishedOrder),
    ) -> anyhow::Result<()> {
        let writing = self.writing();
        let mut rest = Vec::new();
        for &id in ids {
            match writing.binary_search_by_key(&id.0, |r| r.id.0) {
                Ok(i) => f(writing[i]),
                Err(_) => rest.push(id),
            }
        }
        self.store.get_many(&rest, f)
    }

    /// Every finished order with `lo <= id <= hi` (the archive's, then those in flight).
    pub fn scan(&self, lo: u64, hi: u64, f: &mut dyn FnMut(&FinishedOrder)) -> anyhow::Result<()> {
        self.store.scan(lo, hi, f)?;
        let writing = self.writing();
        let start = writing.partition_point(|r| r.id.0 < lo);
        for r in writing[start..].iter().take_while(|r| r.id.0 <= hi) {
            f(r);
        }
        Ok(())
    }
}

/// The checkpoint being written: its orders left the projection and the gateway's memory but
/// the archive does not answer for them yet, so the core does.
pub(super) struct Writing {
    finished: Arc<[FinishedOrder]>,
    /// The bases it makes durable.
    written: Vec<(SecurityId, u64)>,
    began: Instant,
    /// Time on the core thread, of which the journal commit took `commit_us`.
    core_us: u64,
    commit_us: u64,
    next_seq: u64,
    resume_seq: u64,
}

/// The archive plus the checkpoint in flight: every finished order that left memory is
/// answered exactly, whether the writer has finished with it or not.
pub(super) struct Archived {
    store: Box<dyn Archive>,
    writing: Option<Writing>,
}

impl Archived {
    pub fn new(store: Box<dyn Archive>) -> Archived {
        Archived {
            store,
            writing: None,
        }
    }

    fn in_flight(&self) -> &[FinishedOrder] {
        self.writing.as_ref().map_or(&[], |w| &w.finished)
    }

    pub fn get(&self, id: OrderId) -> anyhow::Result<Option<FinishedOrder>> {
        let fl = self.in_flight();
        match fl.binary_search_by_key(&id.0, |f| f.id.0) {
            Ok(i) => Ok(Some(fl[i])),
            Err(_) => self.store.get(id),
        }
    }

    /// The finished orders as of now (the archive's and those in flight), to scan on
    /// another thread.
    pub fn view(&self) -> ArchivedView {
        ArchivedView {
            store: self.store.view(),
            writing: self.writing.as_ref().map(|w| w.finished.clone()),
        }
    }

    pub fn stats(&self) -> ArchiveStats {
        self.store.stats()
    }
}

/// The archive of tests and `--no-journal`: everything in memory, the latest manifest and
/// books kept (a test restarts a core from them). Clones share the same contents. A
/// checkpoint becomes durable at the next `poll` (or `wait`); with [`Self::hold`] it stays in
/// flight until [`Self::complete`], and a restart from [`MemoryArchiveInner::manifest`] then
/// is a crash before the manifest.
#[derive(Clone, Default)]
pub struct MemoryArchive(Arc<Mutex<MemoryArchiveInner>>);

#[derive(Default)]
pub struct MemoryArchiveInner {
    pub records: BTreeMap<u64, FinishedOrder>,
    pub manifest: Option<Manifest>,
    /// Latest durable snapshot per security.
    pub books: BTreeMap<u32, Arc<BookSnapshot>>,
    pub checkpoints: u64,
    pub lookups: std::sync::atomic::AtomicU64,
    /// The checkpoint handed over and not yet durable.
    pub pending: Option<Checkpoint>,
    /// Keep `pending` in flight until [`MemoryArchive::complete`].
    pub held: bool,
    /// A checkpoint became durable and `poll` has not said so yet.
    completed: bool,
}

impl MemoryArchiveInner {
    /// Makes the pending checkpoint durable, as the writer does.
    fn apply(&mut self) -> anyhow::Result<()> {
        let Some(cp) = self.pending.take() else {
            return Ok(());
        };
        for r in cp.finished.iter() {
            anyhow::ensure!(
                self.records.insert(r.id.0, *r).is_none(),
                "order {} indexed twice",
                r.id.0
            );
        }
        for b in cp.books {
            self.books.insert(b.security.0, b);
        }
        let mut m = cp.manifest;
        m.generation = self.manifest.as_ref().map_or(1, |x| x.generation + 1);
        m.books = self
            .books
            .values()
            .map(|b| BookRef {
                security: b.security,
                seq: b.seq,
                file: Some(b.file_name()),
            })
            .collect();
        self.manifest = Some(m);
        self.checkpoints += 1;
        self.completed = true;
        Ok(())
    }
}

impl MemoryArchive {
    pub fn inner(&self) -> std::sync::MutexGuard<'_, MemoryArchiveInner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps checkpoints in flight (`true`) until [`Self::complete`].
    pub fn hold(&self, held: bool) {
        self.inner().held = held;
    }

    /// The process died: a checkpoint not yet durable is lost (a restart reads the manifest
    /// before it), and nothing is left to report.
    pub fn crash(&self) {
        let mut inner = self.inner();
        inner.pending = None;
        inner.completed = false;
    }

    /// Makes the checkpoint in flight durable (the writer finished; the core learns it at its
    /// next poll).
    pub fn complete(&self) -> anyhow::Result<()> {
        self.inner().apply()
    }
}

impl Archive for MemoryArchive {
    fn get(&self, id: OrderId) -> anyhow::Result<Option<FinishedOrder>> {
        let inner = self.inner();
        inner
            .lookups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(inner.records.get(&id.0).copied())
    }

    /// The shared records themselves (this archive serves tests and `--no-journal`): a later
    /// scan may also see orders archived since the view was taken, a newer word on them.
    fn view(&self) -> Box<dyn ArchiveView> {
        Box::new(MemoryView(self.clone()))
    }

    fn begin(&mut self, cp: Checkpoint) -> anyhow::Result<()> {
        let mut inner = self.inner();
        anyhow::ensure!(
            inner.pending.is_none() && !inner.completed,
            "a checkpoint is already being written"
        );
        inner.pending = Some(cp);
        Ok(())
    }

    fn poll(&mut self) -> anyhow::Result<WriteState> {
        let mut inner = self.inner();
        if inner.pending.is_some() && !inner.held {
            inner.apply()?;
        }
        Ok(if std::mem::take(&mut inner.completed) {
            WriteState::Durable {
                write_time: Duration::ZERO,
            }
        } else if inner.pending.is_some() {
            WriteState::Writing
        } else {
            WriteState::Idle
        })
    }

    fn wait(&mut self) -> anyhow::Result<WriteState> {
        self.inner().apply()?;
        self.poll()
    }

    fn stats(&self) -> ArchiveStats {
        let inner = self.inner();
        ArchiveStats {
            records: inner.records.len() as u64,
            runs: 1,
            checkpoints: inner.checkpoints,
            lookups: inner.lookups.load(std::sync::atomic::Ordering::Relaxed),
            ..ArchiveStats::default()
        }
    }
}

/// Memory the core holds that grows with orders, for logs, monitors and the soak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryFigures {
    /// Order records in the projection (live + finished, not yet indexed).
    pub records: usize,
    /// Order ids in the gateway's memory.
    pub gateway_ids: usize,
    /// Commands kept for failover.
    pub history: usize,
    /// Commands the failover histories have room for (bounded after each image whatever the
    /// peak was).
    pub history_capacity: usize,
    /// Resting orders in the trusted book images.
    pub image_orders: usize,
    /// Finished orders waiting for the next checkpoint.
    pub due: usize,
    pub in_flight: usize,
    /// Finished orders of the checkpoint being written (out of the projection, not yet
    /// answered by the archive).
    pub archiving: usize,
    /// Checkpoints put off because the previous one was still being written.
    pub checkpoints_delayed: u64,
    /// Images trusted, and dropped as stale, since the start.
    pub images_accepted: u64,
    pub images_stale: u64,
}

impl Core {
    /// One part of a book image from an executor. The image must answer the open request of
    /// the security's current owner, for exactly the state the manager has completed, and
    /// agree with the projection; then it becomes the security's base. A part from a former
    /// owner or for a request that no longer stands is dropped; anything else is a broken or
    /// lying executor, which is failed (its image is never used).
    pub fn executor_image(
        &mut self,
        node: NodeId,
        part: ImagePart,
        now: Instant,
    ) -> anyhow::Result<()> {
        let (sec, seq) = (part.security, part.seq);
        match self.shards.image_fit(node, sec, seq) {
            ImageFit::Stale => {
                self.images_stale += 1;
                self.images_in.remove(&node);
                tracing::debug!(node, security = sec.0, seq, "dropping a stale image");
                return Ok(());
            }
            ImageFit::Wrong(why) => {
                self.fail_executor(node, why, now);
                return Ok(());
            }
            ImageFit::Expected => {}
        }
        let live = self.projection.book(sec).map_or(0, |b| b.live) as usize;
        let assembled = self.images_in.entry(node).or_default().push(part, live);
        let (seq, image) = match assembled {
            Ok(Some(done)) => done,
            Ok(None) => return Ok(()),
            Err(e) => {
                self.images_in.remove(&node);
                self.fail_executor(node, format!("image of security {}: {e}", sec.0), now);
                return Ok(());
            }
        };
        self.images_in.remove(&node);
        match self.projection.verify_image(sec, seq, &image) {
            Ok(snap) => {
                let due = self.projection.take_finished(sec);
                self.due.extend(due);
                self.shards.accept_image(snap);
                self.images_accepted += 1;
            }
            Err(why) => self.fail_executor(
                node,
                format!("image of security {} at seq {seq}: {why}", sec.0),
                now,
            ),
        }
        Ok(())
    }

    /// The timer of the snapshot policy: every `snapshot_interval`, a checkpoint of what is
    /// ready, then a request for an image of every book that changed since its last one. A
    /// checkpoint still being written puts the next one off (retried at the next call).
    pub fn maintain(&mut self, now: Instant) -> anyhow::Result<()> {
        let Some(interval) = self.config.snapshot_interval else {
            return Ok(());
        };
        self.collect_checkpoint(now)?;
        if now.saturating_duration_since(self.last_checkpoint) < interval {
            return Ok(());
        }
        if self.checkpoint_would_repeat() {
            // An idle grid (a quiet hour, a night): the last checkpoint holds all there is.
            self.last_checkpoint = now;
            return Ok(());
        }
        self.snapshot_round(now)
    }

    /// Whether a checkpoint now would write what the last one holds: nothing sequenced or
    /// refused (the manifest's core part is the same), no order finished and no image trusted
    /// since. A hint for the timer only: the last one may still be being written.
    fn checkpoint_would_repeat(&self) -> bool {
        self.due.is_empty()
            && !self.projection.has_rejected()
            && !self.shards.has_fresh_bases()
            && self
                .last_manifest
                .as_ref()
                .is_some_and(|m| *m == self.manifest_core())
    }

    /// A checkpoint of what is ready, then a request for an image of every book that changed
    /// since its last one (what the timer does; tests call it directly). Nothing happens
    /// while the previous checkpoint is still being written.
    pub fn snapshot_round(&mut self, now: Instant) -> anyhow::Result<()> {
        if self.checkpoint(now)? {
            let asked = self.shards.request_images();
            tracing::debug!(asked, "asked for book images");
        }
        Ok(())
    }

    /// Takes the trusted images and the finished orders due out of memory (projection and
    /// gateway) and hands them to the archive's writer; returns false (and does nothing) while
    /// the previous checkpoint is still being written. Until the archive reports it durable,
    /// the core answers for those orders itself. See the module doc for the invariant.
    pub fn checkpoint(&mut self, now: Instant) -> anyhow::Result<bool> {
        self.collect_checkpoint(now)?;
        if self.archive.lock().expect("archive lock").writing.is_some() {
            self.checkpoints_delayed += 1;
            return Ok(false);
        }
        let started = Instant::now();
        self.last_checkpoint = now;
        // Every fill of every completed command, and every journaled command, durable first
        // (a sequencing stage on its own thread hands over only what it committed).
        self.commit_front()?;
        self.tape.commit()?;
        let commit_us = started.elapsed().as_micros() as u64;
        let mut ids = std::mem::take(&mut self.due);
        ids.extend(self.projection.take_rejected());
        let finished: Arc<[FinishedOrder]> = self.projection.archive(&ids).into();
        let books = self.shards.fresh_bases();
        let written: Vec<(SecurityId, u64)> = books.iter().map(|b| (b.security, b.seq)).collect();
        let manifest = self.manifest_core();
        self.last_manifest = Some(manifest.clone());
        let (next_seq, resume_seq) = (manifest.next_seq, manifest.resume_seq);
        {
            let mut archive = self.archive.lock().expect("archive lock");
            archive.store.begin(Checkpoint {
                finished: finished.clone(),
                books,
                manifest,
            })?;
            archive.writing = Some(Writing {
                finished: finished.clone(),
                written,
                began: now,
                core_us: 0,
                commit_us,
                next_seq,
                resume_seq,
            });
        }
        // The archive answers for these ids now: the gateway's memory may let them go.
        self.feed_back(super::Feedback::Archived(finished), now)?;
        self.projection.shrink();
        if let Some(w) = &mut self.archive.lock().expect("archive lock").writing {
            w.core_us = started.elapsed().as_micros() as u64;
        }
        Ok(true)
    }

    /// Collects the checkpoint being written if the archive says it is durable: its bases
    /// count as durable, and its orders are answered by the archive from now on.
    fn collect_checkpoint(&mut self, now: Instant) -> anyhow::Result<()> {
        self.settle_checkpoint(now, false)
    }

    /// Waits until the checkpoint being written is durable (an orderly stop; tests).
    pub fn wait_checkpoint(&mut self, now: Instant) -> anyhow::Result<()> {
        self.settle_checkpoint(now, true)
    }

    /// Asks the archive about the checkpoint being written (`wait`: until it is durable) and
    /// collects it if it is.
    fn settle_checkpoint(&mut self, now: Instant, wait: bool) -> anyhow::Result<()> {
        let state = {
            let mut archive = self.archive.lock().expect("archive lock");
            if archive.writing.is_none() {
                return Ok(());
            }
            if wait {
                archive.store.wait()?
            } else {
                archive.store.poll()?
            }
        };
        if let WriteState::Durable { write_time } = state {
            self.checkpoint_durable(now, write_time);
        }
        Ok(())
    }

    fn checkpoint_durable(&mut self, now: Instant, write_time: Duration) {
        let Some(w) = self.archive.lock().expect("archive lock").writing.take() else {
            return;
        };
        self.shards.bases_durable(&w.written);
        let m = self.memory_figures();
        tracing::info!(
            next_seq = w.next_seq,
            resume_seq = w.resume_seq,
            archived = w.finished.len(),
            books = w.written.len(),
            records = m.records,
            gateway_ids = m.gateway_ids,
            history = m.history,
            history_capacity = m.history_capacity,
            image_orders = m.image_orders,
            delayed = m.checkpoints_delayed,
            core_us = w.core_us,
            commit_us = w.commit_us,
            write_us = write_time.as_micros() as u64,
            durable_after_ms = now.saturating_duration_since(w.began).as_millis() as u64,
            "checkpoint"
        );
        if w.core_us > 100_000 {
            self.stats.log(
                now,
                LogKind::Info,
                format!("slow checkpoint: {} ms on the core", w.core_us / 1000),
            );
        }
    }

    /// The manifest fields only the core knows.
    fn manifest_core(&self) -> Manifest {
        let resume_seq = self.shards.resume_seq(self.next_seq);
        let brokers = (0..self.brokers.len() as u32)
            .filter_map(|i| {
                let id = BrokerId(i);
                Some(BrokerRef {
                    id,
                    name: self.brokers.name(id)?.to_string(),
                    max_own_id: self.broker_max_id.get(&id).copied().unwrap_or(0),
                })
            })
            .collect();
        Manifest {
            generation: 0,
            next_seq: self.next_seq,
            resume_seq,
            phase: self.phase_at(resume_seq.saturating_sub(1)),
            last_time: self.last_time,
            max_order_id: self.max_order_id,
            refusals_at_next_seq: Some(self.refusals_at_next_seq),
            next_run: 0,
            brokers,
            runs: Vec::new(),
            books: Vec::new(),
        }
    }

    /// What grows with orders in memory, right now.
    pub fn memory_figures(&self) -> MemoryFigures {
        MemoryFigures {
            records: self.projection.len(),
            gateway_ids: self.gateway_ids.load(std::sync::atomic::Ordering::Relaxed) as usize,
            history: self.shards.history_len(),
            history_capacity: self.shards.history_capacity(),
            image_orders: self
                .shards
                .secs
                .iter()
                .filter_map(|s| s.base.as_ref())
                .map(|b| b.len())
                .sum(),
            due: self.due.len(),
            in_flight: self.inflight.len(),
            archiving: self.archive.lock().expect("archive lock").in_flight().len(),
            checkpoints_delayed: self.checkpoints_delayed,
            images_accepted: self.images_accepted,
            images_stale: self.images_stale,
        }
    }

    pub fn archive_stats(&self) -> ArchiveStats {
        self.archive.lock().expect("archive lock").stats()
    }

    /// The finished order `id` from the archive, as the gateway needs it.
    pub(super) fn archived_id(
        archive: &Archived,
        id: OrderId,
    ) -> anyhow::Result<Option<matching::ArchivedId>> {
        Ok(archive.get(id)?.map(|f| f.archived_id()))
    }
}
