//! The market-data feed role: the feed task and its subscriber sessions, off the sequencing
//! path.
//!
//! The core hands every validated event group ([`FeedItem`]: per security in sequence order,
//! deduplicated across failover) to the feed task through [`FeedSender::offer`], which never
//! waits: when the bounded queue is full the items are dropped and the feed is marked lagged.
//! The feed task owns [`feed::Feed`] (the canonical builder, every subscriber's view and
//! bounded queue, the slow-subscriber policy) and moves each subscriber's messages to its
//! session through a small bounded channel, only when that channel has room: a subscriber that
//! does not read fills its own queue in the feed, which resyncs it and then drops it
//! ([`feed::QueuePolicy`]). Nothing a subscriber does reaches the core.
//!
//! Lost input: when the core dropped items, or a group did not fit the feed's mirror books (a
//! bug, logged loudly), the feed task rebuilds its builder by replaying the journal through a
//! local engine ([`rebuild`], on a helper thread) while it keeps receiving items into a bounded
//! pending list; it then installs the rebuilt builder, applies the pending items the journal
//! did not cover, and resyncs every subscriber from a fresh snapshot. Why this is exact: an
//! item reaches the feed only after its command was journaled and committed, and the lagged
//! flag is cleared before the journal is read, so every item dropped before that is in the
//! replay, and any dropped after it sets the flag again (another rebuild). A manager restarted
//! on a journal starts the same way, so its feed resumes where the day is. With a checkpoint
//! ([`crate::feed_checkpoint`], written on the snapshot timer at the core's completed-through
//! mark) a rebuild starts from it and reads only the journal after it.
//!
//! Pure parts ([`FeedState`], [`rebuild`]) are tested without sockets; the task and the
//! sessions are thin tokio shells around them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use feed::{
    Completed, Feed, FeedBuilder, FeedError, Message, QueuePolicy, SubscriberId, SubscriberState,
    Subscription,
};
use journal::{Entry, JournalItem, JournalRecord};

use crate::feed_checkpoint::FeedCheckpoint;
use matching::{Engine, Event, MarketRules, SecurityId, SecurityTable};
use proto::{FeedRequest, FeedUpdate};
use tokio::sync::{mpsc, oneshot};
use transport::{FrameReader, FrameWriter};

use crate::core::pool::VecPool;
pub use crate::core::FeedItem;

/// Messages moved to a session's channel at a time (one channel slot).
const MESSAGES_PER_SLOT: usize = 1024;
/// Slots of a session's channel: with the feed's own per-subscriber queue, all a slow
/// subscriber can hold up.
const SESSION_SLOTS: usize = 4;
/// Encoded bytes per frame to a subscriber, about (a single larger message goes alone).
const FRAME_BYTES: usize = 1 << 20;
/// Items applied between two moves of messages to the sessions.
const PUMP_EVERY: usize = 256;
/// How often the task moves queued messages to sessions that made room.
const PUMP_INTERVAL: Duration = Duration::from_millis(5);
/// Control messages (subscribe, resync, unsubscribe) queued towards the task.
const CONTROL_QUEUE: usize = 1024;
/// Failed rebuilds in a row before the feed gives up.
const MAX_REBUILD_FAILURES: u32 = 5;
/// Wait before the n-th retry of a failed rebuild: n times this.
const REBUILD_RETRY: Duration = Duration::from_millis(200);

/// How the feed role runs.
#[derive(Clone, Debug)]
pub struct FeedOptions {
    /// Items (one command's events for one security) queued from the core to the feed task;
    /// beyond it the core drops them and the feed rebuilds from the journal.
    pub queue: usize,
    /// Items kept while a rebuild runs; beyond it they are dropped and the rebuild repeats.
    pub pending: usize,
    /// Each subscriber's bounded queue and drop policy.
    pub policy: QueuePolicy,
    /// Heartbeat to idle subscribers (so a lost tail is noticed).
    pub heartbeat: Duration,
    pub max_subscribers: usize,
    /// The journal to rebuild from; `None` (`--no-journal`): a lagged feed stops for good.
    pub journal_dir: Option<PathBuf>,
    /// Where the feed keeps its checkpoint ([`crate::feed_checkpoint`]) and how often it
    /// writes it; `None`: never (a rebuild then reads the whole journal).
    pub checkpoint: Option<(PathBuf, Duration)>,
}

impl Default for FeedOptions {
    fn default() -> Self {
        FeedOptions {
            queue: 1 << 17,
            pending: 1 << 20,
            policy: QueuePolicy::default(),
            heartbeat: Duration::from_secs(1),
            max_subscribers: 256,
            journal_dir: None,
            checkpoint: None,
        }
    }
}

/// Counters of the feed role, readable from any thread.
#[derive(Debug)]
pub struct FeedCounters {
    /// Items the core handed over (queued).
    pub offered: AtomicU64,
    /// Items the core dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Items applied to the builder.
    pub applied: AtomicU64,
    /// Rebuilds from the journal completed.
    pub rebuilds: AtomicU64,
    /// Messages handed to subscriber sessions.
    pub delivered: AtomicU64,
    /// Canonical messages published (each once, whoever subscribes).
    pub canonical: AtomicU64,
    /// Messages produced for subscribers' views by kind (L1, L2, L3: `FeedLevel::KINDS`),
    /// snapshots included.
    pub produced: [AtomicU64; 3],
    /// Subscriber queue overflows.
    pub overflows: AtomicU64,
    /// Messages and bytes written to subscriber streams (heartbeats included).
    pub sent: AtomicU64,
    pub sent_bytes: AtomicU64,
    /// When the feed task started, and the first and last batch of items arrived, in µs
    /// after it (0: none yet): the span the message rates are computed over.
    pub started: Instant,
    pub first_item_us: AtomicU64,
    pub last_item_us: AtomicU64,
}

impl Default for FeedCounters {
    fn default() -> Self {
        FeedCounters {
            offered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            rebuilds: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            canonical: AtomicU64::new(0),
            produced: Default::default(),
            overflows: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            started: Instant::now(),
            first_item_us: AtomicU64::new(0),
            last_item_us: AtomicU64::new(0),
        }
    }
}

impl FeedCounters {
    /// One line for the log: totals and rates over the span items were applied.
    pub fn summary(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let span_us = get(&self.last_item_us).saturating_sub(get(&self.first_item_us));
        let secs = span_us as f64 / 1e6;
        let rate = |n: u64| {
            if secs > 0.0 {
                format!("{:.0}/s", n as f64 / secs)
            } else {
                "-".to_string()
            }
        };
        let produced: Vec<String> = feed::FeedLevel::KINDS
            .iter()
            .zip(&self.produced)
            .map(|(k, n)| format!("{k} {}", get(n)))
            .collect();
        let (canonical, sent) = (get(&self.canonical), get(&self.sent));
        format!(
            "feed totals: {} items applied ({} dropped by the core, {} rebuilds) over {secs:.2} s; \
             {canonical} canonical messages ({}); produced for views: {}; \
             {sent} messages sent to subscribers ({}), {} bytes ({}); {} queue overflows",
            get(&self.applied),
            get(&self.dropped),
            get(&self.rebuilds),
            rate(canonical),
            produced.join(", "),
            rate(sent),
            get(&self.sent_bytes),
            rate(get(&self.sent_bytes)).replace("/s", " B/s"),
            get(&self.overflows),
        )
    }

    /// A batch of items arrived now (once per batch: the clock is read once).
    fn mark_item(&self) {
        let us = (self.started.elapsed().as_micros() as u64).max(1);
        if self.first_item_us.load(Ordering::Relaxed) == 0 {
            self.first_item_us.store(us, Ordering::Relaxed);
        }
        self.last_item_us.store(us, Ordering::Relaxed);
    }
}

// ------------------------------------------------------------------------------- core side

/// One flush's items, and the core's mark that every command up to `through` has had all its
/// items handed out ([`crate::core::Outbox::feed_through`]).
#[derive(Debug, Default)]
pub struct FeedBatch {
    pub items: Vec<FeedItem>,
    pub through: Option<u64>,
}

/// The core thread's end of the feed queue.
#[derive(Clone)]
pub struct FeedSender {
    tx: mpsc::Sender<FeedBatch>,
    queued: Arc<AtomicUsize>,
    limit: usize,
    lagged: Arc<AtomicBool>,
    counters: Arc<FeedCounters>,
}

impl FeedSender {
    /// Hands a flush's items to the feed task. Never waits: over the bound they are dropped
    /// and the feed is marked lagged (it rebuilds from the journal).
    pub fn offer(&self, batch: FeedBatch) {
        if batch.items.is_empty() && batch.through.is_none() {
            return;
        }
        let n = batch.items.len();
        let over = self.queued.load(Ordering::Relaxed) + n > self.limit;
        if !over {
            self.queued.fetch_add(n, Ordering::Relaxed);
            match self.tx.try_send(batch) {
                Ok(()) => {
                    self.counters.offered.fetch_add(n as u64, Ordering::Relaxed);
                    return;
                }
                Err(_) => {
                    self.queued.fetch_sub(n, Ordering::Relaxed);
                }
            }
        }
        // Set before anything later is sent, so the task sees it no later than the next item.
        self.lagged.store(true, Ordering::SeqCst);
        self.counters.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn counters(&self) -> &FeedCounters {
        &self.counters
    }
}

// ------------------------------------------------------------------------------ pure state

/// A builder rebuilt from the journal: it holds every command up to `through`.
#[derive(Debug)]
pub struct Rebuilt {
    pub builder: FeedBuilder,
    pub through: u64,
    /// Commands replayed.
    pub commands: u64,
    /// The seq of the checkpoint it started from (`None`: the day's first command).
    pub from_checkpoint: Option<u64>,
}

/// Why a rebuild failed.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("reading the journal: {0}")]
    Journal(#[from] journal::JournalError),
    #[error("journal record {seq} does not fit the feed (a bug): {source}")]
    Feed { seq: u64, source: FeedError },
    #[error("the rebuild thread ended without a result")]
    Lost,
}

impl From<std::convert::Infallible> for RebuildError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

/// A fresh builder for `table` with the engine's indicative-uncross rule.
pub fn new_builder(table: &SecurityTable) -> FeedBuilder {
    FeedBuilder::new(table).with_indicative(feed::engine_indicative)
}

/// Where a replay starts: a local engine and a builder in the same state, and the seq through
/// which they hold every command.
pub struct ReplayStart {
    engine: Engine,
    builder: FeedBuilder,
    through: u64,
    from_checkpoint: Option<u64>,
}

impl ReplayStart {
    /// Before the day's first command: every book open and empty.
    pub fn fresh(rules: MarketRules, table: &SecurityTable) -> Self {
        let mut engine = Engine::new(rules, table);
        for (id, _, _) in table.iter() {
            engine.open_book(id);
        }
        ReplayStart {
            engine,
            builder: new_builder(table),
            through: 0,
            from_checkpoint: None,
        }
    }

    /// At a feed checkpoint: its builder, and the engine its mirror books describe.
    pub fn checkpoint(
        cp: &FeedCheckpoint,
        rules: MarketRules,
        table: &SecurityTable,
    ) -> anyhow::Result<Self> {
        let (engine, builder) = crate::feed_checkpoint::restore(cp, rules, table)?;
        Ok(ReplayStart {
            engine,
            builder: builder.with_indicative(feed::engine_indicative),
            through: cp.through,
            from_checkpoint: Some(cp.through),
        })
    }
}

/// Replays journaled commands (in seq order) through the start's engine into its builder:
/// exactly what the executors produced for them (the engine is deterministic, and a PHASE
/// reaches every book). A book skips the commands its builder already holds (a checkpoint's
/// book may be ahead of the checkpoint's seq).
pub fn replay<E>(
    start: ReplayStart,
    records: impl IntoIterator<Item = Result<JournalRecord, E>>,
) -> Result<Rebuilt, RebuildError>
where
    RebuildError: From<E>,
{
    let ReplayStart {
        mut engine,
        mut builder,
        mut through,
        from_checkpoint,
    } = start;
    let mut commands = 0u64;
    let mut events: Vec<Event> = Vec::new();
    let n = builder.security_count() as u32;
    for rec in records {
        let rec = rec?;
        through = through.max(rec.next_seq() - 1);
        let Entry::Command(cmd) = rec.entry else {
            continue;
        };
        commands += 1;
        let mut one = |security: SecurityId| -> Result<(), RebuildError> {
            if builder.last_seq(security).is_some_and(|l| rec.seq <= l) {
                return Ok(());
            }
            events.clear();
            engine.process_for(security, &cmd, &mut events);
            builder
                .apply(Completed {
                    seq: rec.seq,
                    time: rec.time,
                    security,
                    command: &cmd,
                    events: &events,
                })
                .map(|_| ())
                .map_err(|source| RebuildError::Feed {
                    seq: rec.seq,
                    source,
                })
        };
        match cmd.security() {
            Some(sec) => one(sec)?,
            None => (0..n).map(SecurityId).try_for_each(&mut one)?,
        }
    }
    Ok(Rebuilt {
        builder,
        through,
        commands,
        from_checkpoint,
    })
}

/// [`replay`] from the day's first command.
pub fn rebuild<E>(
    records: impl IntoIterator<Item = Result<JournalRecord, E>>,
    rules: MarketRules,
    table: &SecurityTable,
) -> Result<Rebuilt, RebuildError>
where
    RebuildError: From<E>,
{
    replay(ReplayStart::fresh(rules, table), records)
}

/// The journal records `reader` yields (refused NEWs are not the feed's business); the reader
/// stays borrowed, so the caller can ask where it stopped.
fn journal_records(
    reader: &mut journal::JournalReader,
) -> impl Iterator<Item = Result<JournalRecord, journal::JournalError>> + '_ {
    reader.filter_map(|item| match item {
        Ok(JournalItem::Record(r)) => Some(Ok(r)),
        Ok(JournalItem::Rejected(_)) => None,
        Err(e) => Some(Err(e)),
    })
}

/// Rebuilds from a journal directory (read while the manager appends to it: a record being
/// written is a torn tail the reader stops before): from the feed checkpoint at `checkpoint`
/// when there is a usable one, else from the day's first command. A checkpoint is not used
/// when it is damaged, does not fit the listing, or is ahead of the journal (a journal tail
/// lost in a crash): each is logged.
pub fn rebuild_from_journal(
    dir: &std::path::Path,
    rules: MarketRules,
    table: &SecurityTable,
    checkpoint: Option<&std::path::Path>,
) -> Result<Rebuilt, RebuildError> {
    let start = checkpoint.map(|path| -> anyhow::Result<Option<ReplayStart>> {
        let Some(cp) = crate::feed_checkpoint::read(path)? else {
            return Ok(None);
        };
        ReplayStart::checkpoint(&cp, rules, table).map(Some)
    });
    match start {
        Some(Ok(Some(start))) => {
            let through = start.through;
            let mut reader = journal::JournalReader::open(dir, through + 1)?;
            let rebuilt = replay(start, journal_records(&mut reader))?;
            if reader.next_seq() > through {
                return Ok(rebuilt);
            }
            tracing::warn!(
                checkpoint_seq = through,
                journal_next_seq = reader.next_seq(),
                "feed: the checkpoint is ahead of the journal; rebuilding from the day's first command"
            );
        }
        Some(Err(e)) => tracing::warn!(
            "feed: the checkpoint cannot be used ({e:#}); rebuilding from the day's first command"
        ),
        Some(Ok(None)) | None => {}
    }
    let mut reader = journal::JournalReader::open(dir, 0)?;
    rebuild(journal_records(&mut reader), rules, table)
}

/// What [`FeedState::apply`] did with an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemOutcome {
    Applied,
    /// Already in the rebuilt builder (its seq is at or below the rebuild's end).
    Covered,
}

/// The feed and where its builder came from (sans-I/O).
pub struct FeedState {
    feed: Feed,
    /// Items with a seq up to this one are in the builder already (from a rebuild).
    covered_through: u64,
}

impl FeedState {
    pub fn new(table: &SecurityTable, policy: QueuePolicy) -> Self {
        FeedState {
            feed: Feed::new(table, policy).with_indicative(feed::engine_indicative),
            covered_through: 0,
        }
    }

    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    pub fn feed_mut(&mut self) -> &mut Feed {
        &mut self.feed
    }

    /// Applies one item and queues its messages for every subscriber. An error means the
    /// item does not fit the mirror (input was lost, or a bug): nothing changed, rebuild.
    pub fn apply(&mut self, item: &FeedItem) -> Result<ItemOutcome, FeedError> {
        if item.seq <= self.covered_through {
            return Ok(ItemOutcome::Covered);
        }
        self.feed.apply(Completed {
            seq: item.seq,
            time: item.time,
            security: item.security,
            command: &item.command,
            events: &item.events,
        })?;
        Ok(ItemOutcome::Applied)
    }

    /// Installs a rebuilt builder and resyncs every subscriber from it.
    pub fn install(&mut self, rebuilt: Rebuilt) {
        self.feed.replace_builder(rebuilt.builder);
        self.covered_through = rebuilt.through;
    }
}

// ------------------------------------------------------------------------------- the task

/// A request from a subscriber session to the feed task.
pub enum FeedControl {
    Subscribe {
        sub: Subscription,
        out: mpsc::Sender<Vec<Message>>,
        /// Set by the task before it lets go of `out`: why the subscription ended.
        closed: Arc<Mutex<Option<String>>>,
        reply: oneshot::Sender<Result<SubscriberId, String>>,
    },
    Resync {
        id: SubscriberId,
    },
    Unsubscribe {
        id: SubscriberId,
    },
}

/// What the server keeps of the running feed.
#[derive(Clone)]
pub struct FeedHandle {
    pub control: mpsc::Sender<FeedControl>,
    pub counters: Arc<FeedCounters>,
    pub metrics: Arc<metrics::Metrics>,
}

struct SubOut {
    tx: mpsc::Sender<Vec<Message>>,
    closed: Arc<Mutex<Option<String>>>,
}

struct Rebuilding {
    pending: Vec<FeedItem>,
    /// More input was lost while it ran: its result is stale, run again.
    again: bool,
    started: Instant,
}

struct Task {
    state: FeedState,
    opts: FeedOptions,
    rules: MarketRules,
    table: SecurityTable,
    subs: BTreeMap<SubscriberId, SubOut>,
    rebuilding: Option<Rebuilding>,
    rebuild_rx: Option<oneshot::Receiver<Result<Rebuilt, RebuildError>>>,
    /// The feed cannot continue (lost input and no journal, or the journal unreadable).
    broken: Option<String>,
    /// Failed rebuilds in a row.
    failures: u32,
    lagged: Arc<AtomicBool>,
    queued: Arc<AtomicUsize>,
    counters: Arc<FeedCounters>,
    metrics: Arc<metrics::Metrics>,
    /// What was last added to the metrics (they take increments).
    reported: Reported,
    scratch: Vec<Message>,
    /// Batches' vectors go back to the core thread here once applied.
    items_pool: VecPool<FeedItem>,
    /// When the last checkpoint was taken, and whether its writer thread is still at it.
    last_checkpoint: Option<Instant>,
    checkpoint_writing: Arc<AtomicBool>,
    /// The `through` of the last checkpoint taken (0: none yet).
    checkpoint_through: u64,
}

#[derive(Default)]
struct Reported {
    totals: feed::FanoutTotals,
    dropped: u64,
    rebuilds: u64,
}

/// Starts the feed task on a thread of its own. `rebuild_first`: the journal already holds
/// commands (a restart), so the builder starts from a rebuild.
pub fn spawn(
    opts: FeedOptions,
    rules: MarketRules,
    table: SecurityTable,
    rebuild_first: bool,
    metrics: Arc<metrics::Metrics>,
    items_pool: VecPool<FeedItem>,
) -> std::io::Result<(FeedSender, FeedHandle)> {
    if let (false, Some((path, _))) = (rebuild_first, &opts.checkpoint) {
        // An empty journal: a checkpoint left beside it belongs to another day.
        match std::fs::remove_file(path) {
            Ok(()) => tracing::info!("feed: removed a checkpoint of an earlier journal"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let (tx, items) = mpsc::channel::<FeedBatch>(opts.queue.clamp(1, 1 << 16));
    let (control_tx, control) = mpsc::channel(CONTROL_QUEUE);
    let lagged = Arc::new(AtomicBool::new(rebuild_first));
    let queued = Arc::new(AtomicUsize::new(0));
    let counters = Arc::new(FeedCounters::default());
    let sender = FeedSender {
        tx,
        queued: queued.clone(),
        limit: opts.queue.max(1),
        lagged: lagged.clone(),
        counters: counters.clone(),
    };
    let task = Task {
        state: FeedState::new(&table, opts.policy),
        opts,
        rules,
        table,
        subs: BTreeMap::new(),
        rebuilding: None,
        rebuild_rx: None,
        broken: None,
        failures: 0,
        lagged,
        queued,
        counters: counters.clone(),
        metrics: metrics.clone(),
        reported: Reported::default(),
        scratch: Vec::new(),
        items_pool,
        last_checkpoint: None,
        checkpoint_writing: Arc::new(AtomicBool::new(false)),
        checkpoint_through: 0,
    };
    std::thread::Builder::new()
        .name("feed".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(task.run(items, control)),
                Err(e) => tracing::error!("feed task could not start: {e}"),
            }
        })?;
    Ok((
        sender,
        FeedHandle {
            control: control_tx,
            counters,
            metrics,
        },
    ))
}

enum Wake {
    Control(Option<FeedControl>),
    Items(Option<FeedBatch>),
    Rebuilt(Result<Rebuilt, RebuildError>),
    Tick,
}

async fn rebuilt(
    rx: &mut Option<oneshot::Receiver<Result<Rebuilt, RebuildError>>>,
) -> Result<Rebuilt, RebuildError> {
    match rx {
        Some(r) => r.await.unwrap_or(Err(RebuildError::Lost)),
        None => std::future::pending().await,
    }
}

impl Task {
    async fn run(
        mut self,
        mut items: mpsc::Receiver<FeedBatch>,
        mut control: mpsc::Receiver<FeedControl>,
    ) {
        let mut tick = tokio::time::interval(PUMP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heartbeat = Instant::now();
        if self.lagged.load(Ordering::SeqCst) {
            self.start_rebuild("the manager restarted on a journal");
        }
        loop {
            let wake = tokio::select! {
                biased;
                c = control.recv() => Wake::Control(c),
                r = rebuilt(&mut self.rebuild_rx) => Wake::Rebuilt(r),
                b = items.recv() => Wake::Items(b),
                _ = tick.tick() => Wake::Tick,
            };
            match wake {
                Wake::Control(Some(c)) => self.control(c),
                Wake::Control(None) => return,
                Wake::Items(Some(b)) => self.receive(b),
                Wake::Items(None) => return,
                Wake::Rebuilt(r) => {
                    self.rebuild_rx = None;
                    self.install(r);
                }
                Wake::Tick => {}
            }
            // Take what is already queued, boundedly, serving subscribers in between.
            for _ in 0..64 {
                self.pump();
                match items.try_recv() {
                    Ok(b) => self.receive(b),
                    Err(_) => break,
                }
            }
            self.check_lagged("the core dropped items: the feed queue was full");
            self.pump();
            if last_heartbeat.elapsed() >= self.opts.heartbeat {
                last_heartbeat = Instant::now();
                self.heartbeats();
            }
            self.report();
        }
    }

    /// Publishes what changed since the last call to the counters and the metrics.
    fn report(&mut self) {
        let t = self.state.feed().fanout().totals();
        let r = &mut self.reported;
        let c = &self.counters;
        let m = &self.metrics;
        if t != r.totals {
            m.feed_messages(
                metrics::FeedView::Canonical,
                t.canonical - r.totals.canonical,
            );
            let views = [
                metrics::FeedView::L1,
                metrics::FeedView::L2,
                metrics::FeedView::L3,
            ];
            for (k, view) in views.into_iter().enumerate() {
                m.feed_messages(view, t.produced[k] - r.totals.produced[k]);
                c.produced[k].store(t.produced[k], Ordering::Relaxed);
            }
            c.canonical.store(t.canonical, Ordering::Relaxed);
            c.overflows.store(t.overflows, Ordering::Relaxed);
        }
        let dropped = c.dropped.load(Ordering::Relaxed);
        let rebuilds = c.rebuilds.load(Ordering::Relaxed);
        m.feed_trouble(
            dropped - r.dropped,
            t.overflows - r.totals.overflows,
            rebuilds - r.rebuilds,
        );
        *r = Reported {
            totals: t,
            dropped,
            rebuilds,
        };
    }

    fn check_lagged(&mut self, why: &str) {
        if self.broken.is_none() && self.lagged.load(Ordering::SeqCst) {
            self.start_rebuild(why);
        }
    }

    /// A batch taken off the core's queue.
    fn receive(&mut self, batch: FeedBatch) {
        self.queued.fetch_sub(
            batch.items.len().min(self.queued.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        if !batch.items.is_empty() {
            self.counters.mark_item();
        }
        self.apply_items(batch.items);
        if let Some(through) = batch.through {
            self.maybe_checkpoint(through);
        }
    }

    /// Every command up to `through` is applied (if no input was lost): when a checkpoint is
    /// due, copies the builder's state here and has a thread of its own write it.
    fn maybe_checkpoint(&mut self, through: u64) {
        let Some((path, every)) = &self.opts.checkpoint else {
            return;
        };
        let healthy = self.broken.is_none()
            && self.rebuilding.is_none()
            && !self.lagged.load(Ordering::SeqCst);
        let due = self.last_checkpoint.is_none_or(|t| t.elapsed() >= *every);
        // Nothing completed since the last one (an idle grid, or the day's start): the file
        // on disk, or the journal from its first command, already says as much.
        let news = through > self.checkpoint_through;
        if !healthy || !due || !news || self.checkpoint_writing.load(Ordering::Acquire) {
            return;
        }
        let started = Instant::now();
        self.last_checkpoint = Some(started);
        self.checkpoint_through = through;
        let cp = FeedCheckpoint {
            through,
            state: self.state.feed().builder().state(),
        };
        let copied_us = started.elapsed().as_micros() as u64;
        let (path, busy) = (path.clone(), self.checkpoint_writing.clone());
        busy.store(true, Ordering::Release);
        let spawned = std::thread::Builder::new()
            .name("feed-checkpoint".into())
            .spawn(move || {
                let started = Instant::now();
                match crate::feed_checkpoint::write(&path, &cp) {
                    Ok(()) => tracing::info!(
                        through_seq = cp.through,
                        copied_us,
                        write_ms = started.elapsed().as_millis() as u64,
                        "feed: state saved"
                    ),
                    Err(e) => tracing::warn!("feed: writing the checkpoint failed: {e:#}"),
                }
                busy.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            self.checkpoint_writing.store(false, Ordering::Release);
            tracing::warn!("feed: cannot start the checkpoint writer: {e}");
        }
    }

    fn apply_items(&mut self, mut items: Vec<FeedItem>) {
        if self.broken.is_some() {
            return;
        }
        self.check_lagged("the core dropped items: the feed queue was full");
        let mut batch = items.drain(..);
        let mut since_pump = 0usize;
        while self.rebuilding.is_none() {
            let Some(item) = batch.next() else { break };
            since_pump += 1;
            if since_pump == PUMP_EVERY {
                // A large batch: move what subscribers can take before their queues fill.
                since_pump = 0;
                self.pump();
            }
            match self.state.apply(&item) {
                Ok(ItemOutcome::Applied) => {
                    self.counters.applied.fetch_add(1, Ordering::Relaxed);
                }
                Ok(ItemOutcome::Covered) => {}
                Err(e) => {
                    tracing::error!(
                        seq = item.seq,
                        security = item.security.0,
                        "feed: events do not fit the feed's books ({e}); rebuilding from the journal"
                    );
                    self.start_rebuild("an event group did not fit the feed's books");
                    self.keep_pending(std::iter::once(item));
                }
            }
        }
        self.keep_pending(batch);
        self.items_pool.give(items);
    }

    /// While a rebuild runs: keeps items for after it (bounded; past the bound, the rebuild
    /// will run again).
    fn keep_pending(&mut self, items: impl Iterator<Item = FeedItem>) {
        let Some(r) = &mut self.rebuilding else {
            return;
        };
        for item in items {
            if r.pending.len() >= self.opts.pending {
                if !r.again {
                    tracing::warn!(
                        limit = self.opts.pending,
                        "feed: too many items while rebuilding; the rebuild will run again"
                    );
                }
                r.pending.clear();
                r.again = true;
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if !r.again {
                r.pending.push(item);
            }
        }
    }

    fn start_rebuild(&mut self, why: &str) {
        if let Some(r) = &mut self.rebuilding {
            // Input lost while a rebuild runs may be past what it reads: run it again.
            if self.lagged.swap(false, Ordering::SeqCst) {
                r.again = true;
            }
            return;
        }
        let Some(dir) = self.opts.journal_dir.clone() else {
            self.lagged.store(false, Ordering::SeqCst);
            self.fail(format!(
                "{why}, and the manager keeps no journal to rebuild the feed from (--no-journal)"
            ));
            return;
        };
        // Cleared before the journal is read: anything dropped earlier is in what it reads.
        self.lagged.store(false, Ordering::SeqCst);
        tracing::warn!("feed: {why}; rebuilding the feed from the journal");
        let (tx, rx) = oneshot::channel();
        let (rules, table) = (self.rules, self.table.clone());
        let checkpoint = self.opts.checkpoint.as_ref().map(|(p, _)| p.clone());
        let delay = REBUILD_RETRY * self.failures;
        let spawned = std::thread::Builder::new()
            .name("feed-rebuild".into())
            .spawn(move || {
                std::thread::sleep(delay);
                let _ = tx.send(rebuild_from_journal(
                    &dir,
                    rules,
                    &table,
                    checkpoint.as_deref(),
                ));
            });
        if let Err(e) = spawned {
            self.fail(format!("cannot start the feed rebuild: {e}"));
            return;
        }
        self.rebuild_rx = Some(rx);
        self.rebuilding = Some(Rebuilding {
            pending: Vec::new(),
            again: false,
            started: Instant::now(),
        });
    }

    fn install(&mut self, result: Result<Rebuilt, RebuildError>) {
        let Some(r) = self.rebuilding.take() else {
            return;
        };
        let rebuilt = match result {
            Ok(b) => b,
            Err(e) if self.failures < MAX_REBUILD_FAILURES => {
                // E.g. a segment read while the journal was creating it: read again shortly.
                self.failures += 1;
                tracing::warn!(
                    attempt = self.failures,
                    "feed: rebuild failed ({e}); retrying"
                );
                self.start_rebuild("the previous rebuild failed");
                return;
            }
            Err(e) => {
                self.fail(format!("the feed could not be rebuilt: {e}"));
                return;
            }
        };
        if r.again || self.lagged.load(Ordering::SeqCst) {
            // Stale already. What is pending was journaled before the next read: drop it.
            self.start_rebuild("more input was lost during the rebuild");
            return;
        }
        tracing::info!(
            commands = rebuilt.commands,
            from_checkpoint_seq = rebuilt.from_checkpoint.unwrap_or(0),
            through_seq = rebuilt.through,
            pending = r.pending.len(),
            elapsed_ms = r.started.elapsed().as_millis() as u64,
            subscribers = self.subs.len(),
            "feed: rebuilt from the journal; every subscriber resyncs"
        );
        self.state.install(rebuilt);
        self.failures = 0;
        self.counters.rebuilds.fetch_add(1, Ordering::Relaxed);
        self.apply_items(r.pending);
    }

    /// The feed cannot go on: every subscriber is told why, new ones are refused.
    fn fail(&mut self, why: String) {
        tracing::error!("feed stopped: {why}");
        for (id, out) in std::mem::take(&mut self.subs) {
            let _ = self.state.feed_mut().unsubscribe(id);
            close(&out, why.clone());
        }
        self.broken = Some(why);
        self.rebuilding = None;
        self.rebuild_rx = None;
    }

    fn control(&mut self, c: FeedControl) {
        match c {
            FeedControl::Subscribe {
                sub,
                out,
                closed,
                reply,
            } => {
                let result = if let Some(why) = &self.broken {
                    Err(format!("the market-data feed is unavailable: {why}"))
                } else if self.subs.len() >= self.opts.max_subscribers {
                    Err(format!(
                        "too many feed subscribers (limit {})",
                        self.opts.max_subscribers
                    ))
                } else {
                    self.state
                        .feed_mut()
                        .subscribe(&sub)
                        .map_err(|e| format!("subscription refused: {e}"))
                };
                if let Ok(id) = result {
                    self.subs.insert(id, SubOut { tx: out, closed });
                    tracing::info!(subscriber = id.0, level = ?sub.level, "feed: subscribed");
                }
                let _ = reply.send(result);
                self.metrics.set_feed_subscribers(self.subs.len() as u64);
            }
            FeedControl::Resync { id } => {
                if let Ok(SubscriberState::Dropped) = self.state.feed_mut().request_resync(id) {
                    self.drop_subscriber(id, "asked for too many resyncs".into());
                }
            }
            FeedControl::Unsubscribe { id } => {
                let _ = self.state.feed_mut().unsubscribe(id);
                self.subs.remove(&id);
                self.metrics.set_feed_subscribers(self.subs.len() as u64);
            }
        }
    }

    fn drop_subscriber(&mut self, id: SubscriberId, why: String) {
        let _ = self.state.feed_mut().unsubscribe(id);
        if let Some(out) = self.subs.remove(&id) {
            tracing::warn!(subscriber = id.0, "feed: subscriber dropped: {why}");
            close(&out, why);
        }
        self.metrics.set_feed_subscribers(self.subs.len() as u64);
    }

    /// Moves queued messages to every session whose channel has room.
    fn pump(&mut self) {
        if self.rebuilding.is_some() {
            // Queues were cleared; the snapshots come from the rebuilt builder.
            return;
        }
        let ids: Vec<SubscriberId> = self.subs.keys().copied().collect();
        for id in ids {
            loop {
                let Some(tx) = self.subs.get(&id).map(|o| o.tx.clone()) else {
                    break;
                };
                let permit = match tx.try_reserve() {
                    Ok(p) => p,
                    Err(mpsc::error::TrySendError::Full(())) => break,
                    Err(mpsc::error::TrySendError::Closed(())) => {
                        let _ = self.state.feed_mut().unsubscribe(id);
                        self.subs.remove(&id);
                        break;
                    }
                };
                let mut msgs = std::mem::take(&mut self.scratch);
                let state = self.state.feed_mut().poll(id, MESSAGES_PER_SLOT, &mut msgs);
                let n = msgs.len();
                if n > 0 {
                    self.counters
                        .delivered
                        .fetch_add(n as u64, Ordering::Relaxed);
                    permit.send(msgs);
                } else {
                    self.scratch = msgs;
                    drop(permit);
                }
                match state {
                    Ok(SubscriberState::Dropped) => {
                        let limit = self.opts.policy;
                        self.drop_subscriber(
                            id,
                            format!(
                                "too slow: its queue of {} messages overflowed {} times within {} s",
                                limit.capacity,
                                limit.max_overflows,
                                limit.window / 1_000_000_000
                            ),
                        );
                        break;
                    }
                    Err(_) => {
                        self.subs.remove(&id);
                        break;
                    }
                    Ok(_) if n < MESSAGES_PER_SLOT => break,
                    Ok(_) => {}
                }
            }
        }
    }

    fn heartbeats(&mut self) {
        if self.rebuilding.is_some() || self.broken.is_some() {
            return;
        }
        for (id, out) in &self.subs {
            let Ok(permit) = out.tx.try_reserve() else {
                continue;
            };
            if let Ok(Some(m)) = self.state.feed_mut().heartbeat(*id) {
                permit.send(vec![m]);
            }
        }
    }
}

fn close(out: &SubOut, why: String) {
    *out.closed.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
}

// ---------------------------------------------------------------------------- the session

/// Limits of a subscriber session.
#[derive(Clone, Copy, Debug)]
pub struct SessionTimeouts {
    /// Time for the `Subscribe` after the welcome.
    pub subscribe: Duration,
    /// A subscriber whose stream accepts nothing for this long is disconnected.
    pub slow_consumer: Duration,
}

/// About how many bytes a message takes encoded (frame budgets, not framing).
fn approx_bytes(m: &Message) -> usize {
    match &m.body {
        feed::Body::Snapshot(s) => {
            64 + match &s.book {
                feed::BookImage::Levels { bids, asks } => (bids.len() + asks.len()) * 16,
                feed::BookImage::Orders { bids, asks } => (bids.len() + asks.len()) * 24,
            }
        }
        _ => 40,
    }
}

/// Splits messages into frames of about [`FRAME_BYTES`] each.
fn frames(msgs: Vec<Message>) -> Vec<Vec<Message>> {
    let mut out = Vec::new();
    let (mut cur, mut bytes) = (Vec::new(), 0usize);
    for m in msgs {
        let n = approx_bytes(&m);
        if !cur.is_empty() && bytes + n > FRAME_BYTES {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += n;
        cur.push(m);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Serves one market-data subscriber after its welcome: reads its `Subscribe`, registers it
/// with the feed task, then writes its view's messages and forwards its resync requests until
/// either side ends.
pub async fn serve_subscriber(
    remote: std::net::SocketAddr,
    mut writer: FrameWriter,
    mut reader: FrameReader,
    feed: FeedHandle,
    timeouts: SessionTimeouts,
) -> anyhow::Result<()> {
    let FeedHandle {
        control,
        counters,
        metrics,
    } = feed;
    let first = tokio::time::timeout(timeouts.subscribe, reader.recv::<FeedRequest>()).await;
    let sub = match first {
        Ok(Ok(Some(FeedRequest::Subscribe(s)))) => s,
        Ok(Ok(None)) => return Ok(()),
        other => {
            let why = match other {
                Err(_) => "no Subscribe within the time limit".to_string(),
                Ok(Err(e)) => format!("bad frame: {e}"),
                _ => "the first message of a feed session must be Subscribe".to_string(),
            };
            tracing::warn!(%remote, "feed session refused: {why}");
            writer.send(&FeedUpdate::Closed(why)).await?;
            writer.close(Duration::from_secs(1)).await;
            return Ok(());
        }
    };
    let (tx, mut rx) = mpsc::channel::<Vec<Message>>(SESSION_SLOTS);
    let closed = Arc::new(Mutex::new(None));
    let (reply, answer) = oneshot::channel();
    control
        .send(FeedControl::Subscribe {
            sub,
            out: tx,
            closed: closed.clone(),
            reply,
        })
        .await
        .map_err(|_| anyhow::anyhow!("the feed task is gone"))?;
    let id = match answer.await? {
        Ok(id) => id,
        Err(why) => {
            tracing::warn!(%remote, "feed subscription refused: {why}");
            writer.send(&FeedUpdate::Closed(why)).await?;
            writer.close(Duration::from_secs(1)).await;
            return Ok(());
        }
    };
    let slow = timeouts.slow_consumer;
    let mut write_task = tokio::spawn(async move {
        let mut buf = Vec::with_capacity(FRAME_BYTES + (64 << 10));
        while let Some(msgs) = rx.recv().await {
            for frame in frames(msgs) {
                let n = frame.len() as u64;
                buf.clear();
                // Encoded here rather than in `send` to count the bytes.
                if let Err(e) = proto::codec::encode_frame(&FeedUpdate::Messages(frame), &mut buf) {
                    tracing::error!(%remote, "feed frame could not be encoded (a bug): {e}");
                    return;
                }
                match tokio::time::timeout(slow, writer.send_raw(&buf)).await {
                    Ok(Ok(())) => {
                        counters.sent.fetch_add(n, Ordering::Relaxed);
                        counters
                            .sent_bytes
                            .fetch_add(buf.len() as u64, Ordering::Relaxed);
                        metrics.feed_sent(n, buf.len() as u64);
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, "feed subscriber gone: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(%remote, "feed subscriber accepted nothing for {slow:?}; disconnecting it");
                        return;
                    }
                }
            }
        }
        // The task let go of the channel: say why, if it said.
        let why = closed.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(why) = why {
            let _ = tokio::time::timeout(slow, writer.send(&FeedUpdate::Closed(why))).await;
        }
        writer.close(Duration::from_secs(1)).await;
    });
    let mut written = false;
    let result: anyhow::Result<()> = async {
        loop {
            tokio::select! {
                m = reader.recv::<FeedRequest>() => match m {
                    Ok(Some(FeedRequest::Resync)) => {
                        if control.send(FeedControl::Resync { id }).await.is_err() {
                            return Ok(());
                        }
                    }
                    Ok(Some(FeedRequest::Subscribe(_))) => {
                        tracing::warn!(%remote, "feed subscriber subscribed twice; closing");
                        return Ok(());
                    }
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(e.into()),
                },
                _ = &mut write_task => {
                    written = true;
                    return Ok(());
                }
            }
        }
    }
    .await;
    let _ = control.send(FeedControl::Unsubscribe { id }).await;
    if !written {
        let _ = tokio::time::timeout(Duration::from_secs(3), write_task).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: u64) -> FeedItem {
        FeedItem {
            seq,
            time: 0,
            security: SecurityId(0),
            command: matching::Command::Phase(matching::Phase::Continuous),
            events: proto::GroupEvents::new(),
        }
    }

    fn sender(limit: usize, slots: usize) -> (FeedSender, mpsc::Receiver<FeedBatch>) {
        let (tx, rx) = mpsc::channel(slots);
        let s = FeedSender {
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
            limit,
            lagged: Arc::new(AtomicBool::new(false)),
            counters: Arc::new(FeedCounters::default()),
        };
        (s, rx)
    }

    fn batch(items: Vec<FeedItem>) -> FeedBatch {
        FeedBatch {
            items,
            through: None,
        }
    }

    #[test]
    fn the_core_never_waits_past_the_bound_it_drops_and_marks_the_feed_lagged() {
        let (s, mut rx) = sender(5, 100);
        s.offer(batch(vec![item(1), item(2), item(3)]));
        s.offer(batch(Vec::new()));
        assert!(!s.lagged.load(Ordering::SeqCst));
        // 3 queued + 3 > 5: dropped whole, flagged.
        s.offer(batch(vec![item(4), item(5), item(6)]));
        assert!(s.lagged.load(Ordering::SeqCst));
        assert_eq!(s.counters.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(s.counters.offered.load(Ordering::Relaxed), 3);
        assert_eq!(rx.try_recv().unwrap().items.len(), 3);
        assert!(
            rx.try_recv().is_err(),
            "the dropped batch never reached the task"
        );
        // A mark with no items still goes (the feed checkpoints on it).
        s.offer(FeedBatch {
            items: Vec::new(),
            through: Some(9),
        });
        assert_eq!(rx.try_recv().unwrap().through, Some(9));
        // A full channel (in batches) drops too, and un-counts what it could not queue.
        let (s, _rx) = sender(1000, 1);
        s.offer(batch(vec![item(1)]));
        s.offer(batch(vec![item(2)]));
        assert_eq!(s.queued.load(Ordering::Relaxed), 1);
        assert!(s.lagged.load(Ordering::SeqCst));
    }

    #[test]
    fn frames_stay_near_their_byte_budget() {
        let msg = |seq| Message {
            seq,
            time: 0,
            body: feed::Body::Heartbeat,
        };
        let n = FRAME_BYTES / 40 * 3 + 7;
        let split = frames((1..=n as u64).map(msg).collect());
        assert_eq!(split.len(), 4);
        assert!(split.iter().all(|f| f.len() * 40 <= FRAME_BYTES));
        assert_eq!(split.iter().map(Vec::len).sum::<usize>(), n);
        assert!(frames(Vec::new()).is_empty());
    }
}
