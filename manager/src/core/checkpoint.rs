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
//! manifest. Invariant of a written manifest: its runs hold exactly the finished orders of
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
    /// Orders leaving memory, sorted by id, unique.
    pub finished: Vec<FinishedOrder>,
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

/// Where finished orders and book snapshots are kept. Lookups must be exact: a finished
/// order's record is answered from here once the projection has dropped it.
pub trait Archive: Send {
    /// The finished order `id`, if indexed.
    fn get(&self, id: OrderId) -> anyhow::Result<Option<FinishedOrder>>;
    /// Every indexed order with `lo <= id <= hi`, in id order.
    fn scan(&self, lo: u64, hi: u64, f: &mut dyn FnMut(&FinishedOrder)) -> anyhow::Result<()>;
    /// Makes `cp` durable (records first, then books, then the manifest that names them).
    fn checkpoint(&mut self, cp: Checkpoint) -> anyhow::Result<()>;
    fn stats(&self) -> ArchiveStats;
}

/// The archive of tests and `--no-journal`: everything in memory, the latest manifest and
/// books kept (a test restarts a core from them). Clones share the same contents.
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
}

impl MemoryArchive {
    pub fn inner(&self) -> std::sync::MutexGuard<'_, MemoryArchiveInner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
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

    fn scan(&self, lo: u64, hi: u64, f: &mut dyn FnMut(&FinishedOrder)) -> anyhow::Result<()> {
        for r in self.inner().records.range(lo..=hi).map(|(_, r)| r) {
            f(r);
        }
        Ok(())
    }

    fn checkpoint(&mut self, cp: Checkpoint) -> anyhow::Result<()> {
        let mut inner = self.inner();
        for r in cp.finished {
            anyhow::ensure!(
                inner.records.insert(r.id.0, r).is_none(),
                "order {} indexed twice",
                r.id.0
            );
        }
        for b in cp.books {
            inner.books.insert(b.security.0, b);
        }
        let mut m = cp.manifest;
        m.generation = inner.manifest.as_ref().map_or(1, |x| x.generation + 1);
        m.books = inner
            .books
            .values()
            .map(|b| BookRef {
                security: b.security,
                seq: b.seq,
                file: Some(b.file_name()),
            })
            .collect();
        inner.manifest = Some(m);
        inner.checkpoints += 1;
        Ok(())
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
    /// Resting orders in the trusted book images.
    pub image_orders: usize,
    /// Finished orders waiting for the next checkpoint.
    pub due: usize,
    pub in_flight: usize,
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
    /// ready, then a request for an image of every book that changed since its last one.
    pub fn maintain(&mut self, now: Instant) -> anyhow::Result<()> {
        let Some(interval) = self.config.snapshot_interval else {
            return Ok(());
        };
        if now.saturating_duration_since(self.last_checkpoint) < interval {
            return Ok(());
        }
        self.snapshot_round(now)
    }

    /// A checkpoint of what is ready, then a request for an image of every book that changed
    /// since its last one (what the timer does; tests call it directly).
    pub fn snapshot_round(&mut self, now: Instant) -> anyhow::Result<()> {
        self.checkpoint(now)?;
        let asked = self.shards.request_images();
        tracing::debug!(asked, "asked for book images");
        Ok(())
    }

    /// Makes the trusted images and the finished orders due durable, and drops those orders
    /// from memory (projection and gateway). See the module doc for the invariant.
    pub fn checkpoint(&mut self, now: Instant) -> anyhow::Result<()> {
        let started = Instant::now();
        self.last_checkpoint = now;
        // Every fill of every completed command, and every journaled command, durable first.
        self.persist.commit()?;
        let mut ids = std::mem::take(&mut self.due);
        ids.extend(self.projection.take_rejected());
        let finished = self.projection.archive(&ids);
        let books = self.shards.fresh_bases();
        let written: Vec<(SecurityId, u64)> = books.iter().map(|b| (b.security, b.seq)).collect();
        let manifest = self.manifest_core();
        let resume_seq = manifest.resume_seq;
        let archived = finished.len();
        let cp = Checkpoint {
            finished,
            books,
            manifest,
        };
        let forget: Vec<OrderId> = cp.finished.iter().map(|f| f.id).collect();
        self.archive.checkpoint(cp)?;
        for id in forget {
            self.gateway.forget(id);
        }
        self.projection.shrink();
        self.shards.bases_durable(&written);
        let m = self.memory_figures();
        let elapsed = started.elapsed();
        tracing::info!(
            next_seq = self.next_seq,
            resume_seq,
            archived,
            books = written.len(),
            records = m.records,
            gateway_ids = m.gateway_ids,
            history = m.history,
            image_orders = m.image_orders,
            elapsed_us = elapsed.as_micros() as u64,
            "checkpoint"
        );
        if elapsed > Duration::from_millis(500) {
            self.stats.log(
                now,
                LogKind::Info,
                format!("slow checkpoint: {} ms", elapsed.as_millis()),
            );
        }
        Ok(())
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
            max_order_id: self.gateway.max_order_id(),
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
            gateway_ids: self.gateway.ids_in_memory(),
            history: self.shards.history_len(),
            image_orders: self
                .shards
                .secs
                .iter()
                .filter_map(|s| s.base.as_ref())
                .map(|b| b.len())
                .sum(),
            due: self.due.len(),
            in_flight: self.inflight.len(),
            images_accepted: self.images_accepted,
            images_stale: self.images_stale,
        }
    }

    pub fn archive_stats(&self) -> ArchiveStats {
        self.archive.stats()
    }

    /// The finished order `id` from the archive, as the gateway needs it.
    pub(super) fn archived_id(
        archive: &dyn Archive,
        id: OrderId,
    ) -> anyhow::Result<Option<matching::ArchivedId>> {
        Ok(archive.get(id)?.map(|f| f.archived_id()))
    }
}
