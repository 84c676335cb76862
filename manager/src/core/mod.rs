//! The manager's state machine, sans-I/O: the shell passes `Instant`s and exchange times in and
//! sends what [`Outbox`] holds. Its parts, each with its own invariants:
//! - this module: sessions, the sequencing path (check, sequence, journal, acknowledge, route),
//!   collection of executors' event groups and the reports they become;
//! - [`shards`]: the shard map, per-security routing state, migration and failover;
//! - [`orders`]: the order-state projection, which also checks every executor event;
//! - [`checkpoint`]: book images, checkpoints and the finished-order index, which keep memory
//!   flat over a long day; `recovery`: restart from the last checkpoint and the journal tail;
//! - `stats`: counters, latency and the market summary for monitors.
//!
//! Invariants kept here:
//! - every accepted command gets the next sequence number and is journaled before it is
//!   acknowledged or routed; a rejected NEW (it burns its id) is journaled before its reject is
//!   reported (`flush` commits first);
//! - events are accepted only from the current owner, for the next uncompleted command of that
//!   security, as one whole group (a command's events may arrive split over several groups;
//!   they are buffered and applied only when the last part arrives), and only if they agree
//!   with the projection; a late or duplicated group from a former owner is dropped, an
//!   inconsistent one fails its executor. So no fill reaches a broker twice or forged;
//! - a PHASE is one sequenced command routed to every security's owner; it completes when every
//!   security has reported it. Entering CLOSED is a barrier: nothing more is sequenced until
//!   every book has closed and reported its next reference price, because the checks of every
//!   later order depend on those prices;
//! - a broker session sees only its own orders: its order ids are its own namespace (mapped
//!   into the exchange's at the edge), its fill reports never name the counterparty.

pub mod checkpoint;
pub mod orders;
pub mod pool;
mod records;
mod recovery;
pub mod sequencer;
pub mod shards;
mod stats;

pub use checkpoint::{
    Archive, ArchiveStats, ArchiveView, Checkpoint, MemoryArchive, MemoryFigures, WriteState,
};
pub use recovery::Restart;
pub use sequencer::{Feedback, Released, Sequenced, Sequencer};

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use matching::stream::BrokerRegistry;
use matching::{
    BrokerId, Command, Event, Fill, Gateway, MarketRules, NewOrder, OrderId, Phase, Price,
    RejectReason, SecurityId, SecurityTable, Side, Timestamp,
};
use proto::limits::MAX_BROKER_ORDER_ID;
use proto::{
    ClientCommand, EventGroup, ExecutorStats, GridSnapshot, GroupEvents, ImageAssembly, ImagePart,
    Liquidity, LogEntry, LogKind, NodeInfo, NodeStatus, OrderState, OrderStatus, OwnFill, Report,
    ReportEvent, Routed, SecurityView, ToExecutor, TradeId, TradeTick,
};
use rustc_hash::FxHashMap;

use journal::{JournalItem, JournalRecord, RejectedNew};
use orders::Projection;
pub use shards::{NodeId, LOCAL_NODE};
use shards::{ShardNews, Shards};
use stats::Stats;

pub type SessionId = u32;

/// The manager's own session: it submits the schedule's phase changes; its reports go nowhere.
pub const EXCHANGE_SESSION: SessionId = 0;
/// How often [`Outbox::feed_through`] is set.
const FEED_MARK_EVERY: Duration = Duration::from_millis(100);

/// One sequenced command as the journal stores it.
#[derive(Clone, Copy, Debug)]
pub struct JournalEntry<'a> {
    pub seq: u64,
    pub time: Timestamp,
    pub client_ref: u64,
    pub command: &'a Command,
    /// The acting broker's name (empty for a phase change).
    pub broker_name: &'a str,
}

/// A NEW refused before sequencing: it burns its id, so it is journaled too.
#[derive(Clone, Copy, Debug)]
pub struct RejectedEntry<'a> {
    pub time: Timestamp,
    pub client_ref: u64,
    pub order: &'a NewOrder,
    pub reason: RejectReason,
    pub broker_name: &'a str,
}

/// One fill on the trade tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TapeEntry {
    pub seq: u64,
    pub time: Timestamp,
    /// Index of the fill within (seq, security).
    pub fill_index: u32,
    pub fill: Fill,
}

/// Where sequenced commands are made durable: the journal on disk; tests use [`MemoryPersist`].
/// Written by the sequencing stage only.
pub trait Persist: Send {
    fn append(&mut self, entry: &JournalEntry<'_>) -> anyhow::Result<()>;
    fn append_rejected(&mut self, entry: &RejectedEntry<'_>) -> anyhow::Result<()>;
    /// Makes everything appended so far durable (group commit).
    fn commit(&mut self) -> anyhow::Result<()>;
    /// Called while idle: housekeeping that must not wait for the next commit.
    fn idle(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Where fills are made durable: the trade tape on disk; tests use [`MemoryPersist`]. Written by
/// the rest of the core, which may run on another thread than the journal's writer.
pub trait Tape: Send {
    fn append_trade(&mut self, entry: &TapeEntry) -> anyhow::Result<()>;
    /// Makes every fill appended so far durable.
    fn commit(&mut self) -> anyhow::Result<()>;
}

/// Keeps everything in memory (tests and the `--no-journal` experiments).
#[derive(Default)]
pub struct MemoryPersist {
    /// Records and rejected NEWs in journal order.
    pub items: Vec<JournalItem>,
    pub trades: Vec<TapeEntry>,
    next_seq: u64,
}

impl MemoryPersist {
    /// A journal and a tape kept in memory, nobody reading them back.
    pub fn pair() -> (Box<dyn Persist>, Box<dyn Tape>) {
        (
            Box::new(MemoryPersist::default()),
            Box::new(MemoryPersist::default()),
        )
    }

    /// The items a journal reader from `from_seq` yields (see `journal::JournalReader`).
    pub fn items_from(&self, from_seq: u64) -> Vec<JournalItem> {
        self.items
            .iter()
            .filter(|i| match i {
                JournalItem::Record(r) => r.next_seq() > from_seq,
                JournalItem::Rejected(r) => r.next_seq >= from_seq,
            })
            .copied()
            .collect()
    }
}

impl Persist for MemoryPersist {
    fn append(&mut self, e: &JournalEntry<'_>) -> anyhow::Result<()> {
        self.items.push(JournalItem::Record(JournalRecord {
            seq: e.seq,
            time: e.time,
            client_ref: e.client_ref,
            entry: journal::Entry::Command(*e.command),
        }));
        self.next_seq = e.seq + 1;
        Ok(())
    }
    fn append_rejected(&mut self, e: &RejectedEntry<'_>) -> anyhow::Result<()> {
        self.items.push(JournalItem::Rejected(RejectedNew {
            order: *e.order,
            reason: e.reason,
            time: e.time,
            client_ref: e.client_ref,
            next_seq: self.next_seq.max(1),
        }));
        Ok(())
    }
    fn commit(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

impl Tape for MemoryPersist {
    fn append_trade(&mut self, e: &TapeEntry) -> anyhow::Result<()> {
        self.trades.push(*e);
        Ok(())
    }
    fn commit(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Match in-process instead of on executors (the no-grid baseline).
    pub local: bool,
    pub heartbeat_interval: Duration,
    /// Silence after which an executor is declared down and its securities move.
    pub heartbeat_timeout: Duration,
    /// Commit the journal after every command (`--fsync always`) instead of once per batch.
    pub commit_each: bool,
    /// Commands held (sequenced, no owner yet) before order entry pauses.
    pub max_held: usize,
    /// Ask a book's owner for an image once its history holds this many commands (0: only
    /// on the timer).
    pub snapshot_every: usize,
    /// Checkpoint, then ask for images of every book that changed, this often (`None`: never;
    /// then nothing leaves memory).
    pub snapshot_interval: Option<Duration>,
    /// Hand every validated event group to the market-data feed ([`Outbox::feed`]).
    pub feed: bool,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            local: false,
            heartbeat_interval: Duration::from_millis(200),
            heartbeat_timeout: Duration::from_millis(1500),
            commit_each: false,
            max_held: 2_000_000,
            snapshot_every: 0,
            snapshot_interval: None,
            feed: false,
        }
    }
}

/// What the shell must send after a call into the core.
#[derive(Default)]
pub struct Outbox {
    /// Each session's reports, in frames of at most [`REPORTS_PER_FRAME`].
    pub reports: pool::Frames<SessionId, Report>,
    pub executors: std::collections::BTreeMap<NodeId, Vec<ToExecutor>>,
    /// Executors declared down or inconsistent: the shell closes their connections.
    pub disconnect: Vec<NodeId>,
    pub log: Vec<LogEntry>,
    pub trades: Vec<TradeTick>,
    /// Phases the market entered (for the shell's schedule and monitors).
    pub phases: Vec<Phase>,
    /// With [`CoreConfig::feed`]: every validated group, per security in sequence order,
    /// deduplicated across failover (the shell hands them to the feed task; never waits).
    pub feed: Vec<FeedItem>,
    /// With [`CoreConfig::feed`], about ten times a second: every command up to this seq has had
    /// all its feed items handed out (in this outbox or before). The feed checkpoints there.
    pub feed_through: Option<u64>,
    /// For the sequencing stage, when it runs on its own thread ([`Core::split`]).
    pub feedback: Vec<Feedback>,
}

/// One command's events for one security, as the market-data feed consumes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedItem {
    pub seq: u64,
    pub time: Timestamp,
    pub security: SecurityId,
    pub command: Command,
    pub events: GroupEvents,
}

/// Who a session acts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionKind {
    /// A broker: acts for itself only, in its own order-id namespace.
    Broker(BrokerId),
    /// An operator gateway (replay): acts for declared brokers with exchange-wide order ids.
    Gateway,
    /// The manager's own schedule: phase changes only.
    Exchange,
}

/// A sequenced command awaiting its final group(s).
struct InFlight {
    session: SessionId,
    client_ref: u64,
    /// A NEW, so a pending order can be listed before its events arrive.
    new: Option<NewOrder>,
    received: Instant,
    time: Timestamp,
    /// Securities still to report (1, or every listed security for a phase change).
    remaining: u32,
}

/// Commands awaiting completion, by sequence number. Sequence numbers are dense, so a ring
/// indexed by `seq - base` replaces a hash map; completed slots at the front are dropped.
#[derive(Default)]
struct InFlightRing {
    base: u64,
    slots: VecDeque<Option<InFlight>>,
    live: usize,
}

impl InFlightRing {
    fn insert(&mut self, seq: u64, v: InFlight) {
        if self.slots.is_empty() {
            self.base = seq;
        }
        debug_assert_eq!(seq, self.base + self.slots.len() as u64);
        self.slots.push_back(Some(v));
        self.live += 1;
    }
    fn get(&self, seq: u64) -> Option<&InFlight> {
        let i = seq.checked_sub(self.base)?;
        self.slots.get(i as usize)?.as_ref()
    }
    fn get_mut(&mut self, seq: u64) -> Option<&mut InFlight> {
        let i = seq.checked_sub(self.base)?;
        self.slots.get_mut(i as usize)?.as_mut()
    }
    fn remove(&mut self, seq: u64) -> Option<InFlight> {
        let i = seq.checked_sub(self.base)?;
        let v = self.slots.get_mut(i as usize)?.take();
        if v.is_some() {
            self.live -= 1;
        }
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.base += 1;
        }
        v
    }
    fn len(&self) -> usize {
        self.live
    }
    fn iter(&self) -> impl Iterator<Item = &InFlight> {
        self.slots.iter().flatten()
    }
}

/// Part of a command's events received so far from one executor.
struct Partial {
    seq: u64,
    security: SecurityId,
    events: GroupEvents,
}

/// The namespace of a broker's own order ids: an exchange-wide id's bits from 40 up (0 is
/// the gateways' exchange-wide ids).
pub fn namespace(broker: BrokerId) -> u64 {
    u64::from(broker.0) + 1
}

/// The exchange-wide id of a broker's own order id (a broker's ids are its own namespace).
pub fn global_order_id(broker: BrokerId, local: u64) -> Option<OrderId> {
    (local <= MAX_BROKER_ORDER_ID).then(|| OrderId((namespace(broker) << 40) | local))
}

/// The broker's own id of an exchange-wide order id of that broker.
pub fn local_order_id(id: OrderId) -> OrderId {
    OrderId(id.0 & MAX_BROKER_ORDER_ID)
}

/// Whether `id` is in `broker`'s own namespace (placed by one of its sessions). Orders a
/// gateway placed on a broker's behalf carry exchange-wide ids: they are the operator's to
/// follow, and a broker session never sees them (their ids could collide with its own).
pub fn in_namespace(broker: BrokerId, id: OrderId) -> bool {
    id.0 >> 40 == namespace(broker)
}

/// Reports per frame to a client; report vectors are taken with room for this many.
pub const REPORTS_PER_FRAME: usize = 8192;

/// Room each feed batch's vector has from the start (about a flush's event groups).
const FEED_ITEMS_PER_FLUSH: usize = 8192;
/// Report vectors kept for reuse (about a megabyte each): a grid's busy sessions each have one
/// or two in circulation; more are freed.
const REPORT_VECS_KEPT: usize = 8;
/// Vectors kept for reuse per hand-over between two threads (commands, feed batches, order
/// batches to an executor): a few are in circulation at a time.
pub(crate) const HANDOVERS_KEPT: usize = 4;

/// Most brokers the id namespaces leave room for.
pub const MAX_BROKERS: usize = 1 << 20;

/// The manager's core. It holds the sequencing stage ([`Sequencer`]) and applies what that
/// sequences at once, unless [`Core::split`] took the stage out to run it on another thread;
/// then what it sequenced comes in through [`Core::apply_sequenced`].
pub struct Core {
    config: CoreConfig,
    /// The sequencing stage, while it runs in this thread.
    front: Option<Box<Sequencer>>,
    /// The listing and rules the gateway checks against.
    listing: SecurityTable,
    rules: MarketRules,
    tape: Box<dyn Tape>,
    // What the sequencing stage knew, as of the last item applied here (a checkpoint's
    // manifest records it: it must match the journal up to that item).
    brokers: BrokerRegistry,
    /// Per broker: the highest of its own order ids used by a NEW.
    broker_max_id: FxHashMap<BrokerId, u64>,
    max_order_id: u64,
    next_seq: u64,
    last_time: Timestamp,
    phase: Phase,
    /// Ids in the gateway's memory (written by the sequencing stage).
    gateway_ids: Arc<AtomicU64>,
    sessions: FxHashMap<SessionId, SessionKind>,
    broker_sessions: FxHashMap<BrokerId, Vec<SessionId>>,
    inflight: InFlightRing,
    projection: Projection,
    shards: Shards,
    stats: Stats,
    partial: FxHashMap<NodeId, Partial>,
    /// A CLOSED being completed, and the reference prices its books reported so far.
    closing: Option<(u64, Vec<(SecurityId, Price)>)>,
    /// Items taken from the in-thread sequencing stage (kept to reuse its allocation).
    items: Vec<Sequenced>,
    /// `--local`: the executor core matching in-process.
    local: Option<executor::ExecutorCore>,
    out: Outbox,
    /// Report vectors the session writers gave back ([`Core::report_pool`]).
    report_pool: pool::VecPool<Report>,
    /// Where the sequencing stage on its own thread takes its released items' vectors from.
    items_pool: pool::VecPool<Sequenced>,
    /// Feed batches' vectors the feed task gave back ([`Core::feed_pool`]).
    feed_pool: pool::VecPool<FeedItem>,
    /// Schedule name for monitors.
    schedule: String,
    /// Finished orders and book snapshots leave memory for it (see [`checkpoint`]), with the
    /// checkpoint being written. Shared with the sequencing stage, which looks ids up in it.
    archive: sequencer::SharedArchive,
    checkpoints_delayed: u64,
    /// Finished orders of books whose image was trusted: due for the next checkpoint.
    due: Vec<OrderId>,
    /// Image parts being received, per executor.
    images_in: FxHashMap<NodeId, ImageAssembly>,
    last_checkpoint: Instant,
    /// The core's part of the last checkpoint's manifest (`None`: none since the start).
    last_manifest: Option<journal::Manifest>,
    /// Refusals journaled since the last sequenced command (a checkpoint records it: recovery
    /// then knows which refusals at the manifest's `next_seq` its runs hold).
    refusals_at_next_seq: u64,
    /// When [`Outbox::feed_through`] was last set.
    last_feed_mark: Option<Instant>,
    /// Recent phase changes (seq, new phase), bounded, and the phase before the oldest: the
    /// phase in effect at a checkpoint's resume seq.
    phase_log: VecDeque<(u64, Phase)>,
    phase_floor: Phase,
    images_accepted: u64,
    images_stale: u64,
    /// Prometheus metrics (`--metrics-addr`): atomics only, cheap on the hot path.
    metrics: Option<std::sync::Arc<metrics::Metrics>>,
}

impl Core {
    /// A core on `gateway`, journaling into `journal` and writing fills to `tape`.
    pub fn new(
        config: CoreConfig,
        gateway: Gateway,
        (journal, tape): (Box<dyn Persist>, Box<dyn Tape>),
        now: Instant,
    ) -> Self {
        let n = gateway.securities().len();
        let references: Vec<_> = gateway.securities().iter().map(|(_, _, r)| r).collect();
        let local = config.local.then(|| {
            let mut core = executor::ExecutorCore::new(*gateway.rules(), gateway.securities());
            let mut ignored = Vec::new();
            core.apply(
                ToExecutor::Assign {
                    map_version: 0,
                    securities: (0..n as u32).map(SecurityId).collect(),
                },
                &mut ignored,
            );
            core
        });
        let mut sessions = FxHashMap::default();
        sessions.insert(EXCHANGE_SESSION, SessionKind::Exchange);
        let mut shards = Shards::new(n, config.local);
        shards.snapshot_every = config.snapshot_every;
        let archive = Arc::new(Mutex::new(checkpoint::Archived::new(Box::new(
            MemoryArchive::default(),
        ))));
        let gateway_ids = Arc::new(AtomicU64::new(0));
        let listing = gateway.securities().clone();
        let rules = *gateway.rules();
        let items_pool = pool::VecPool::new(sequencer::ITEMS_PER_COMMIT, HANDOVERS_KEPT);
        let front = Sequencer::new(
            gateway,
            journal,
            archive.clone(),
            config.commit_each,
            gateway_ids.clone(),
            items_pool.clone(),
        );
        Core {
            shards,
            projection: Projection::new(references),
            stats: Stats::new(n, now),
            front: Some(Box::new(front)),
            listing,
            rules,
            tape,
            brokers: BrokerRegistry::new(),
            sessions,
            broker_sessions: FxHashMap::default(),
            broker_max_id: FxHashMap::default(),
            max_order_id: 0,
            next_seq: 1,
            last_time: 0,
            phase: Phase::Continuous,
            gateway_ids,
            inflight: InFlightRing::default(),
            partial: FxHashMap::default(),
            closing: None,
            items: Vec::new(),
            local,
            out: Outbox::default(),
            report_pool: pool::VecPool::new(REPORTS_PER_FRAME, REPORT_VECS_KEPT),
            items_pool,
            feed_pool: pool::VecPool::new(FEED_ITEMS_PER_FLUSH, HANDOVERS_KEPT),
            schedule: "continuous".into(),
            metrics: None,
            config,
            archive,
            checkpoints_delayed: 0,
            due: Vec::new(),
            images_in: FxHashMap::default(),
            last_checkpoint: now,
            last_manifest: None,
            refusals_at_next_seq: 0,
            last_feed_mark: None,
            phase_log: VecDeque::new(),
            phase_floor: Phase::Continuous,
            images_accepted: 0,
            images_stale: 0,
        }
    }

    /// Replaces the archive (the disk index in production; memory by default).
    pub fn with_archive(self, archive: Box<dyn Archive>) -> Self {
        *self.archive.lock().expect("archive lock") = checkpoint::Archived::new(archive);
        self
    }

    /// Records a phase change at `seq` in the bounded phase log.
    fn note_phase(&mut self, seq: u64, phase: Phase) {
        self.phase_log.push_back((seq, phase));
        if self.phase_log.len() > 64 {
            if let Some((_, p)) = self.phase_log.pop_front() {
                self.phase_floor = p;
            }
        }
    }

    /// The phase in effect right after command `seq` (as far as the log reaches back).
    fn phase_at(&self, seq: u64) -> Phase {
        self.phase_log
            .iter()
            .rev()
            .find(|(s, _)| *s <= seq)
            .map_or(self.phase_floor, |(_, p)| *p)
    }

    /// Records into these metrics from now on.
    pub fn set_metrics(&mut self, m: std::sync::Arc<metrics::Metrics>) {
        if let Some(front) = &mut self.front {
            front.set_metrics(m.clone());
        }
        self.metrics = Some(m);
    }

    /// Where the shell gives back report vectors it is done with (after encoding them): the
    /// next flushes fill them again instead of fresh memory (see [`pool`]).
    pub fn report_pool(&self) -> pool::VecPool<Report> {
        self.report_pool.clone()
    }

    /// Where the executors' writers give back order batches' vectors once they sent them.
    pub fn routed_pool(&self) -> pool::VecPool<Routed> {
        self.shards.routed_pool.clone()
    }

    /// Where the feed task gives back the batches' vectors once it applied them.
    pub fn feed_pool(&self) -> pool::VecPool<FeedItem> {
        self.feed_pool.clone()
    }

    pub fn set_schedule_name(&mut self, name: impl Into<String>) {
        self.schedule = name.into();
    }

    /// Takes the sequencing stage out, to run it on a thread of its own: from now on this core
    /// is the rest of the pipeline. Feed it what the stage releases with
    /// [`Self::apply_sequenced`] (after the commit that covers it, in order), and hand the
    /// stage what [`Outbox::feedback`] holds. `None` if it was taken already.
    pub fn split(&mut self) -> Option<Sequencer> {
        self.front.take().map(|f| *f)
    }

    /// The in-thread sequencing stage (every call that sequences needs it).
    fn front(&mut self) -> &mut Sequencer {
        self.front
            .as_mut()
            .expect("the sequencing stage runs on its own thread: send it there")
    }

    /// The seq the next command gets (as far as this core has seen: with the sequencing stage
    /// in this thread, everything it sequenced).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn is_local(&self) -> bool {
        self.config.local
    }

    /// The listing the gateway checks against.
    pub fn listing(&self) -> &SecurityTable {
        &self.listing
    }

    pub fn rules(&self) -> &MarketRules {
        &self.rules
    }

    /// The gateway, while the sequencing stage runs in this thread.
    pub fn gateway(&self) -> Option<&Gateway> {
        self.front.as_ref().map(|f| f.gateway())
    }

    /// The market's phase as sequenced (the books reach it as they process the command).
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The exchange time of the last sequenced command.
    pub fn last_time(&self) -> Timestamp {
        self.last_time
    }

    /// False while order entry must wait: too many commands held without an owner, or a CLOSED
    /// completing.
    pub fn accepting(&self) -> bool {
        self.front.as_ref().is_none_or(|f| f.accepting()) && self.routing_room()
    }

    /// Whether fewer commands than the limit are held without an owner (the sequencing stage
    /// on its own thread pauses order entry while not).
    pub fn routing_room(&self) -> bool {
        self.shards.held() < self.config.max_held
    }

    /// Interns a broker name (from the credentials file or a gateway's declaration).
    pub fn broker_id(&mut self, name: &str) -> BrokerId {
        let id = self.front().broker_id(name);
        self.pump();
        id
    }

    /// A gateway declares the brokers it acts for: names are checked like credentials.
    pub fn declare_brokers(&mut self, names: &[String]) -> Result<Vec<(String, BrokerId)>, String> {
        let r = self.front().declare_brokers(names);
        self.pump();
        r
    }

    /// Every order id above this one is unused, in the session's own namespace.
    pub fn max_order_id(&self, session: SessionId) -> u64 {
        self.front.as_ref().map_or(0, |f| f.max_order_id(session))
    }

    // ------------------------------------------------------------------------------ sessions

    pub fn open_session(&mut self, session: SessionId, kind: SessionKind) {
        self.front().open_session(session, kind);
        self.pump();
    }

    pub fn close_session(&mut self, session: SessionId) {
        self.front().close_session(session);
        self.pump();
    }

    /// Open sessions of a broker.
    pub fn sessions_of(&self, broker: BrokerId) -> usize {
        self.front.as_ref().map_or(0, |f| f.sessions_of(broker))
    }

    /// Checks a submit frame as a whole before anything of it is processed (see
    /// [`check_submit`]); the core checks again what a session already checked.
    pub fn check_batch(&self, session: SessionId, cmds: &[ClientCommand]) -> Result<(), String> {
        match &self.front {
            Some(f) => f.check_batch(session, cmds),
            None => Err("the sequencing stage runs on its own thread".into()),
        }
    }

    // ---------------------------------------------------------------------------- sequencing

    /// Sequences a batch of commands from one session, in order, at exchange time `time`.
    /// Acceptances and rejects are reported after the journal commit ([`Core::flush`]).
    pub fn submit(
        &mut self,
        session: SessionId,
        cmds: &[ClientCommand],
        now: Instant,
        time: Timestamp,
    ) -> anyhow::Result<()> {
        let r = self.front().submit(session, cmds, now, time);
        self.pump();
        r
    }

    /// Applies what the in-thread sequencing stage did since the last call (routing happens at
    /// once; nothing routed leaves before the commit, see [`Self::flush`]).
    fn pump(&mut self) {
        let Some(front) = &mut self.front else { return };
        let mut items = std::mem::take(&mut self.items);
        items.extend(front.take_uncommitted());
        for item in items.drain(..) {
            self.apply(item);
        }
        self.items = items;
    }

    /// What the sequencing stage released (on its own thread: after the commit that covers
    /// it), in order.
    pub fn apply_sequenced(&mut self, mut items: Vec<Sequenced>) {
        for item in items.drain(..) {
            self.apply(item);
        }
        self.items_pool.give(items);
    }

    fn apply(&mut self, item: Sequenced) {
        match item {
            Sequenced::Command {
                seq,
                session,
                client_ref,
                command,
                time,
                received,
                max_order_id,
            } => {
                self.stats.counters.received += 1;
                self.stats.counters.accepted += 1;
                self.next_seq = seq + 1;
                self.refusals_at_next_seq = 0;
                self.last_time = time;
                self.max_order_id = max_order_id;
                let new = match command {
                    Command::New(o) => {
                        sequencer::note_max_id(&mut self.broker_max_id, &o);
                        Some(o)
                    }
                    _ => None,
                };
                let routed = self.fan_out(seq, &command);
                self.inflight.insert(
                    seq,
                    InFlight {
                        session,
                        client_ref,
                        new,
                        received,
                        time,
                        remaining: routed.len() as u32,
                    },
                );
                for r in routed {
                    self.shards.route(r);
                }
                if let Command::Phase(p) = command {
                    self.phase = p;
                    self.note_phase(seq, p);
                    if p == Phase::Closed {
                        self.closing = Some((seq, Vec::new()));
                    }
                }
            }
            Sequenced::Refused {
                client_ref,
                command,
                reason,
                burnt,
                at,
                max_order_id,
            } => {
                self.stats.counters.received += 1;
                self.refused(client_ref, &command, reason, burnt, at);
                self.max_order_id = max_order_id;
            }
            Sequenced::SessionOpened { session, kind } => {
                self.sessions.insert(session, kind);
                if let SessionKind::Broker(b) = kind {
                    self.broker_sessions.entry(b).or_default().push(session);
                }
            }
            Sequenced::SessionClosed { session } => {
                if let Some(SessionKind::Broker(b)) = self.sessions.remove(&session) {
                    if let Some(list) = self.broker_sessions.get_mut(&b) {
                        list.retain(|x| *x != session);
                    }
                }
                for v in self.out.reports.remove(session) {
                    self.report_pool.give(v);
                }
            }
            Sequenced::Broker { id, name } => {
                let got = self.brokers.intern(&name);
                debug_assert_eq!(got, id, "brokers are interned in the same order");
            }
        }
    }

    /// The per-security commands a sequenced command becomes: one, or one per listed security
    /// for a phase change. An iterator, not a vector: one allocation per order otherwise.
    fn fan_out(&self, seq: u64, cmd: &Command) -> impl ExactSizeIterator<Item = Routed> {
        let securities = match cmd.security() {
            Some(security) => security.0..security.0 + 1,
            None => 0..self.listing.len() as u32,
        };
        let command = *cmd;
        securities.map(move |i| Routed {
            seq,
            security: SecurityId(i),
            command,
        })
    }

    /// A command the gateway refused: counted, logged, and a burnt NEW listed as rejected.
    fn refused(
        &mut self,
        client_ref: u64,
        cmd: &Command,
        reason: RejectReason,
        burnt: bool,
        now: Instant,
    ) {
        self.stats.counters.rejected += 1;
        let id = cmd.order_id().unwrap_or(OrderId(0));
        if let (Command::New(o), true) = (cmd, burnt) {
            self.projection.insert_rejected(o, client_ref, reason);
            sequencer::note_max_id(&mut self.broker_max_id, o);
            self.refusals_at_next_seq += 1;
        }
        if let Some(m) = &self.metrics {
            match cmd {
                Command::New(o) => m.order_final(
                    o.kind,
                    o.side,
                    metrics::OrderResult::Rejected(reason),
                    Duration::ZERO,
                ),
                Command::Cancel(_) => m.cancel_final(Err(reason), Duration::ZERO),
                Command::Amend(_) => {
                    m.amend_final(metrics::AmendResult::Rejected(reason), Duration::ZERO)
                }
                Command::Phase(_) => {}
            }
        }
        self.stats.log(
            now,
            LogKind::Reject,
            format!("order {} rejected: {}", id.0, reason.code()),
        );
    }

    /// Hands the sequencing stage what it must know: at once if it runs in this thread.
    fn feed_back(&mut self, fb: Feedback, now: Instant) -> anyhow::Result<()> {
        match &mut self.front {
            Some(front) => {
                front.feedback(fb, now)?;
                self.pump();
            }
            None => self.out.feedback.push(fb),
        }
        Ok(())
    }

    /// Commits the journal (in-thread stage) and queues what the commit released.
    fn commit_front(&mut self) -> anyhow::Result<()> {
        let Some(front) = &mut self.front else {
            return Ok(());
        };
        let released = front.commit()?;
        front.queue_acks(released.reports, &self.report_pool, &mut self.out.reports);
        debug_assert!(released.items.is_empty(), "the core took them at once");
        Ok(())
    }

    /// Commits the journal, then releases acknowledgements and rejects and the commands routed
    /// to executors. In local mode the routed commands are matched here. (With the sequencing
    /// stage on its own thread, everything applied here was committed already.)
    pub fn flush(&mut self, now: Instant) -> anyhow::Result<Outbox> {
        loop {
            // Also what a barrier that fell let through (deferred submissions).
            self.commit_front()?;
            let outgoing = std::mem::take(&mut self.shards.outgoing);
            if outgoing.is_empty() {
                break;
            }
            for (node, msgs) in outgoing {
                if node == LOCAL_NODE {
                    self.match_locally(msgs, now)?;
                } else {
                    self.out.executors.entry(node).or_default().extend(msgs);
                }
            }
        }
        self.tape.commit()?;
        self.out.disconnect.append(&mut self.shards.disconnect);
        self.drain_news(now);
        self.out.log.append(&mut self.stats.log);
        self.out.trades.append(&mut self.stats.trades);
        if self.config.feed
            && self
                .last_feed_mark
                .is_none_or(|t| now.saturating_duration_since(t) >= FEED_MARK_EVERY)
        {
            // O(securities): ten times a second, not per flush.
            self.last_feed_mark = Some(now);
            self.out.feed_through = Some(self.shards.completed_through(self.next_seq));
        }
        Ok(std::mem::take(&mut self.out))
    }

    fn match_locally(&mut self, msgs: Vec<ToExecutor>, now: Instant) -> anyhow::Result<()> {
        let mut local = self.local.take().expect("local mode has an executor core");
        // Images go in after the events before them, as an executor sends them.
        let mut steps: Vec<(Vec<EventGroup>, Vec<ImagePart>)> = Vec::new();
        let mut groups = Vec::new();
        for m in msgs {
            let applied = local.apply(m, &mut groups);
            if !applied.images.is_empty() {
                steps.push((std::mem::take(&mut groups), applied.images));
            }
        }
        steps.push((groups, Vec::new()));
        self.local = Some(local);
        for (groups, images) in steps {
            self.executor_events(LOCAL_NODE, groups, now)?;
            for part in images {
                self.executor_image(LOCAL_NODE, part, now)?;
            }
        }
        Ok(())
    }

    fn drain_news(&mut self, now: Instant) {
        for news in std::mem::take(&mut self.shards.news) {
            let (kind, text) = match news {
                ShardNews::Joined { node, name, addr } => (
                    LogKind::NodeJoined,
                    format!("executor {name} (node {node}) joined from {addr}"),
                ),
                ShardNews::Lost { node, name, moved } => (
                    LogKind::NodeLost,
                    format!("executor {name} (node {node}) lost; {moved} securities to move"),
                ),
                ShardNews::Moving { node, count } => (
                    LogKind::ShardMoved,
                    format!("{count} securities moving off node {node}"),
                ),
                ShardNews::Assigned {
                    node,
                    count,
                    version,
                } => (
                    LogKind::ShardMoved,
                    format!("{count} securities assigned to node {node} (map v{version})"),
                ),
            };
            self.stats.log(now, kind, text);
        }
    }

    // ----------------------------------------------------------------------------- executors

    pub fn executor_joined(&mut self, name: &str, addr: &str, now: Instant) -> NodeId {
        let id = self.shards.executor_joined(name, addr, now);
        self.drain_news(now);
        id
    }

    /// An executor's connection closed or its heartbeat timed out.
    pub fn executor_lost(&mut self, node: NodeId, now: Instant) {
        self.partial.remove(&node);
        self.images_in.remove(&node);
        self.shards.executor_lost(node);
        self.drain_news(now);
    }

    pub fn executor_heartbeat(&mut self, node: NodeId, stats: ExecutorStats, now: Instant) {
        let books = stats.books.clone();
        if self.shards.heartbeat(node, stats, now) {
            for b in &books {
                if self.shards.owner(b.security) == Some(node) {
                    self.stats.depth(b);
                }
            }
        }
    }

    /// Periodic check: heartbeat ages, node status, rates.
    /// Persistence housekeeping while idle (the journal's high-water mark catches up).
    pub fn persist_idle(&mut self) -> anyhow::Result<()> {
        match &mut self.front {
            Some(front) => front.idle(),
            None => Ok(()),
        }
    }

    pub fn tick(&mut self, now: Instant) {
        let lost = self.shards.silent(
            now,
            self.config.heartbeat_interval * 3,
            self.config.heartbeat_timeout,
        );
        for id in lost {
            self.executor_lost(id, now);
        }
        self.stats.tick(now);
        if let Some(m) = &self.metrics {
            m.set_in_flight(self.inflight.len() as u64);
            m.set_held(self.shards.held() as u64);
            m.set_phase(self.phase);
            for n in self.shards.nodes.values() {
                if n.status == NodeStatus::Down {
                    m.executor_gone(&n.name);
                } else {
                    m.executor_stats(
                        &n.name,
                        n.stats.orders_handled,
                        u64::from(n.stats.queue_depth),
                    );
                }
            }
        }
    }

    /// Event groups from an executor (or the local core), in the order it processed them.
    pub fn executor_events(
        &mut self,
        node: NodeId,
        groups: Vec<EventGroup>,
        now: Instant,
    ) -> anyhow::Result<()> {
        let mut groups = groups.into_iter();
        while let Some(g) = groups.next() {
            // While this group is validated, the next ones' order records start loading.
            let ahead = groups.as_slice();
            if let Some(next) = ahead.get(1) {
                self.projection.prefetch(&next.events, orders::Ahead::Slots);
            }
            if let Some(next) = ahead.first() {
                self.projection
                    .prefetch(&next.events, orders::Ahead::Records);
            }
            if self.shards.owner(g.security) != Some(node) {
                if !self.shards.ever_owned(node, g.security) {
                    self.fail_executor(
                        node,
                        format!(
                            "events for security {}, which it was never given",
                            g.security.0
                        ),
                        now,
                    );
                    return Ok(());
                }
                // Late or duplicate events of a former owner: the new owner redoes them.
                tracing::debug!(node, seq = g.seq, "dropping events not from the owner");
                continue;
            }
            if self
                .shards
                .next_expected(g.security)
                .is_some_and(|next| g.seq < next.seq)
            {
                // Left over from an earlier ownership of the same security by this node
                // (it migrated away and back): that command is complete already.
                tracing::debug!(node, seq = g.seq, "dropping events of a completed command");
                continue;
            }
            let events = match self.partial.remove(&node) {
                Some(mut p) => {
                    if (p.seq, p.security) != (g.seq, g.security) {
                        self.fail_executor(
                            node,
                            format!(
                                "parts of command {} interleaved with command {}",
                                p.seq, g.seq
                            ),
                            now,
                        );
                        return Ok(());
                    }
                    p.events.extend(g.events);
                    p.events
                }
                None => g.events,
            };
            let limit = self.group_limit(g.security);
            if events.len() > limit {
                self.fail_executor(
                    node,
                    format!(
                        "{} events for one command, more than its book could produce",
                        events.len()
                    ),
                    now,
                );
                return Ok(());
            }
            if !g.last {
                self.partial.insert(
                    node,
                    Partial {
                        seq: g.seq,
                        security: g.security,
                        events,
                    },
                );
                continue;
            }
            self.group_done(node, g.seq, g.security, events, now)?;
        }
        Ok(())
    }

    /// Most events one command can legitimately produce in a book: every resting order once
    /// (a sweep, an uncross, an expiry) plus a handful.
    fn group_limit(&self, sec: SecurityId) -> usize {
        let live = self.projection.book(sec).map_or(0, |b| b.live as usize);
        2 * live + 16
    }

    fn fail_executor(&mut self, node: NodeId, why: String, now: Instant) {
        tracing::error!(
            node,
            "executor sent inconsistent events: {why}; declaring it failed"
        );
        self.stats.log(
            now,
            LogKind::NodeLost,
            format!("node {node} sent inconsistent events ({why}): declared failed"),
        );
        self.executor_lost(node, now);
    }

    fn group_done(
        &mut self,
        node: NodeId,
        seq: u64,
        security: SecurityId,
        events: GroupEvents,
        now: Instant,
    ) -> anyhow::Result<()> {
        let Some(routed) = self.shards.next_expected(security).copied() else {
            self.fail_executor(
                node,
                format!("events for seq {seq}, which was never routed"),
                now,
            );
            return Ok(());
        };
        if routed.seq != seq {
            self.fail_executor(
                node,
                format!(
                    "events for seq {seq} but seq {} is next in security {}",
                    routed.seq, security.0
                ),
                now,
            );
            return Ok(());
        }
        let Some(meta) = self.inflight.get(seq) else {
            self.fail_executor(node, format!("seq {seq} is not in flight"), now);
            return Ok(());
        };
        let (session, client_ref, time, received) =
            (meta.session, meta.client_ref, meta.time, meta.received);
        let outcome = match self.projection.apply_group(&routed, client_ref, &events) {
            Ok(o) => o,
            Err(why) => {
                self.fail_executor(node, format!("seq {seq}: {why}"), now);
                return Ok(());
            }
        };
        if let Some((_, refs)) = &mut self.closing {
            refs.extend_from_slice(&outcome.references);
        }
        if let Some(result) = outcome.auction {
            self.stats.auction(security, result);
        }
        self.report_group(session, client_ref, &routed, time, &events, now)?;
        self.shards.complete(security);
        let meta = self.inflight.get_mut(seq).expect("checked above");
        meta.remaining -= 1;
        let done = meta.remaining == 0;
        if done {
            self.inflight.remove(seq);
            self.stats.completed(received, now);
            self.record_final(
                &routed.command,
                &events,
                now.saturating_duration_since(received),
            );
        }
        if self.config.feed {
            if self.out.feed.capacity() == 0 {
                self.out.feed = self.feed_pool.take();
            }
            self.out.feed.push(FeedItem {
                seq,
                time,
                security,
                command: routed.command,
                events,
            });
        }
        if done {
            if let Command::Phase(p) = routed.command {
                self.push_report(
                    session,
                    Report {
                        client_ref,
                        seq,
                        time,
                        order: OrderId(0),
                        event: ReportEvent::PhaseChanged { phase: p },
                        last: true,
                        passive: false,
                    },
                );
                self.out.phases.push(p);
                self.stats.log(
                    now,
                    LogKind::Info,
                    format!("phase {} complete in every book (seq {seq})", p.as_str()),
                );
            }
            if self.closing.as_ref().is_some_and(|(s, _)| *s == seq) {
                let (seq, references) = self.closing.take().expect("checked");
                self.feed_back(Feedback::Closed { seq, references }, now)?;
            }
        }
        Ok(())
    }

    /// How a completed command ended, for the metrics.
    fn record_final(&self, cmd: &Command, events: &[Event], latency: Duration) {
        let Some(m) = &self.metrics else { return };
        let rejected = events.iter().find_map(|e| match e {
            Event::Rejected { reason, .. } => Some(*reason),
            _ => None,
        });
        match cmd {
            Command::New(o) => {
                let result = match self.projection.get(o.id).map(|r| r.state) {
                    Some(OrderState::Filled) => metrics::OrderResult::Filled,
                    Some(OrderState::Resting) => metrics::OrderResult::Rested,
                    _ => metrics::OrderResult::Cancelled,
                };
                m.order_final(o.kind, o.side, result, latency);
            }
            Command::Cancel(_) => m.cancel_final(rejected.map_or(Ok(()), Err), latency),
            Command::Amend(_) => {
                let result = match (rejected, events.first()) {
                    (Some(r), _) => metrics::AmendResult::Rejected(r),
                    (
                        None,
                        Some(Event::Amended {
                            priority_kept: true,
                            ..
                        }),
                    ) => metrics::AmendResult::PriorityKept,
                    _ => metrics::AmendResult::PriorityLost,
                };
                m.amend_final(result, latency);
            }
            Command::Phase(p) => m.set_phase(*p),
        }
    }

    fn push_report(&mut self, session: SessionId, report: Report) {
        if session != EXCHANGE_SESSION && self.sessions.contains_key(&session) {
            self.out.reports.push(&self.report_pool, session, report);
        }
    }

    /// Turns one completed group into reports: to the command's session (a broker sees its own
    /// order's side of each fill; a gateway the whole trade), and unsolicited ("passive") ones
    /// to every session of the broker of a resting order that traded, was cancelled by an
    /// uncross or expired.
    fn report_group(
        &mut self,
        session: SessionId,
        client_ref: u64,
        routed: &Routed,
        time: Timestamp,
        events: &[Event],
        now: Instant,
    ) -> anyhow::Result<()> {
        let seq = routed.seq;
        let kind = self.sessions.get(&session).copied();
        let is_broker = matches!(kind, Some(SessionKind::Broker(_)));
        let own = routed.command.order_id();
        let is_phase = matches!(routed.command, Command::Phase(_));
        let mut fill_index = 0u32;
        let n = events.len();
        for (k, ev) in events.iter().enumerate() {
            let last = !is_phase && k + 1 == n;
            let to_submitter = |core: &mut Core, order: OrderId, event: ReportEvent| {
                let order = if is_broker {
                    local_order_id(order)
                } else {
                    order
                };
                core.push_report(
                    session,
                    Report {
                        client_ref,
                        seq,
                        time,
                        order,
                        event,
                        last,
                        passive: false,
                    },
                );
            };
            match *ev {
                Event::Fill(f) => {
                    let trade = TradeId {
                        seq,
                        security: f.security,
                        index: fill_index,
                    };
                    fill_index += 1;
                    self.tape.append_trade(&TapeEntry {
                        seq,
                        time,
                        fill_index: trade.index,
                        fill: f,
                    })?;
                    self.stats.trade(&f, now);
                    if let Some(m) = &self.metrics {
                        m.trade(f.aggressor, f.qty);
                    }
                    if is_broker {
                        if let Some(side) = f.aggressor.side() {
                            let id = if side == Side::Buy { f.buy } else { f.sell };
                            let event = ReportEvent::Fill(OwnFill {
                                security: f.security,
                                side,
                                price: f.price,
                                qty: f.qty,
                                liquidity: Liquidity::Taker,
                                trade,
                            });
                            to_submitter(self, id, event);
                        }
                    } else {
                        to_submitter(
                            self,
                            own.unwrap_or(OrderId(0)),
                            ReportEvent::Trade { fill: f, trade },
                        );
                    }
                    for (side, id, broker) in f.passive() {
                        let liquidity = if f.aggressor.side().is_some() {
                            Liquidity::Maker
                        } else {
                            Liquidity::Auction
                        };
                        self.passive_report(
                            broker,
                            id,
                            seq,
                            time,
                            ReportEvent::Fill(OwnFill {
                                security: f.security,
                                side,
                                price: f.price,
                                qty: f.qty,
                                liquidity,
                                trade,
                            }),
                        );
                    }
                }
                Event::Cancelled { id, qty, reason } => {
                    self.stats.counters.cancelled += 1;
                    let event = ReportEvent::Cancelled { qty, reason };
                    if Some(id) == own {
                        to_submitter(self, id, event);
                    } else {
                        if !is_broker {
                            to_submitter(self, id, event);
                        }
                        if let Some(broker) = self.projection.get(id).map(|r| r.broker) {
                            self.passive_report(broker, id, seq, time, event);
                        }
                    }
                }
                Event::Rejected { id, reason } => {
                    self.stats.counters.rejected += 1;
                    to_submitter(self, id, ReportEvent::Rejected { reason });
                }
                Event::Rested { id, price, qty, .. } => {
                    to_submitter(self, id, ReportEvent::Rested { price, qty });
                }
                Event::Amended {
                    id,
                    price,
                    qty,
                    priority_kept,
                    ..
                } => to_submitter(
                    self,
                    id,
                    ReportEvent::Amended {
                        price,
                        qty,
                        priority_kept,
                    },
                ),
                Event::Auction {
                    security,
                    price,
                    volume,
                } => {
                    if !is_broker {
                        to_submitter(
                            self,
                            OrderId(0),
                            ReportEvent::Auction {
                                security,
                                price,
                                volume,
                            },
                        );
                    }
                }
                Event::Reference { security, price } => {
                    if !is_broker {
                        to_submitter(self, OrderId(0), ReportEvent::Reference { security, price });
                    }
                }
                Event::Totals {
                    security,
                    bid_total,
                    ask_total,
                } => to_submitter(
                    self,
                    own.unwrap_or(OrderId(0)),
                    ReportEvent::Totals {
                        security,
                        bid_total,
                        ask_total,
                    },
                ),
                Event::Accepted { .. } => {}
            }
        }
        Ok(())
    }

    /// An unsolicited report about a broker's order, on every session of that broker.
    fn passive_report(
        &mut self,
        broker: BrokerId,
        id: OrderId,
        seq: u64,
        time: Timestamp,
        event: ReportEvent,
    ) {
        if !in_namespace(broker, id) {
            return;
        }
        let Some(list) = self.broker_sessions.get(&broker) else {
            return;
        };
        let client_ref = self.projection.get(id).map_or(0, |r| r.client_ref);
        let report = Report {
            client_ref,
            seq,
            time,
            order: local_order_id(id),
            event,
            last: false,
            passive: true,
        };
        for &s in list {
            self.out.reports.push(&self.report_pool, s, report);
        }
    }

    // ------------------------------------------------------------------------------- queries

    /// The state of the session's orders (`ids` empty: all of them, in the session's own id
    /// namespace for a broker). Other brokers' orders are never returned. Finished orders that
    /// left memory are read from the archive (a broker's own ids are one id range there).
    pub fn query_orders(
        &self,
        session: SessionId,
        ids: &[OrderId],
    ) -> anyhow::Result<Vec<OrderStatus>> {
        self.query_orders_begin(session, ids).finish()
    }

    /// [`Self::query_orders`] up to what must be read here; the rest (scanning the archive for
    /// "all my orders", as long as the asker's history) is [`OrdersAnswer::finish`], which the
    /// server runs off the core thread.
    pub fn query_orders_begin(&self, session: SessionId, ids: &[OrderId]) -> OrdersAnswer {
        let broker = match self.sessions.get(&session) {
            Some(SessionKind::Broker(b)) => Some(*b),
            Some(_) => None,
            None => return OrdersAnswer::default(),
        };
        let to_global = |id: OrderId| match broker {
            Some(b) => global_order_id(b, id.0),
            None => Some(id),
        };
        let visible = |b: BrokerId, id: OrderId| visible_to(broker, b, id);
        let mut answer = OrdersAnswer {
            broker,
            ..OrdersAnswer::default()
        };
        let held = &mut answer.held;
        let pending = |f: &InFlight| f.new.filter(|o| visible(o.broker, o.id));
        // Held only to take a view: the sequencing stage looks ids up in the archive.
        let archive = || self.archive.lock().expect("archive lock");
        if ids.is_empty() {
            let records: Box<dyn Iterator<Item = (OrderId, &orders::OrderRecord)>> = match broker {
                Some(b) => Box::new(self.projection.of_broker(b)),
                None => Box::new(self.projection.iter()),
            };
            held.extend(
                records
                    .filter(|(id, r)| visible(r.broker, *id))
                    .map(|(id, r)| r.status(id)),
            );
            let (lo, hi) = match broker {
                Some(b) => (
                    global_order_id(b, 0).map_or(u64::MAX, |x| x.0),
                    global_order_id(b, MAX_BROKER_ORDER_ID).map_or(0, |x| x.0),
                ),
                None => (0, u64::MAX),
            };
            answer.archived = Some((archive().view(), ArchivedPart::Range(lo, hi)));
            answer.pending = self
                .inflight
                .iter()
                .filter_map(pending)
                .map(pending_status)
                .collect();
        } else {
            // In memory here; the rest is looked up in the archive by `finish`, all at once
            // (each block read once, not once per id), and what it does not hold may still be
            // in flight: those are taken here, from one index built for the query.
            let mut missing: Vec<OrderId> = Vec::new();
            for id in ids.iter().filter_map(|i| to_global(*i)) {
                match self.projection.get(id) {
                    Some(r) if visible(r.broker, id) => held.push(r.status(id)),
                    Some(_) => {}
                    None => missing.push(id),
                }
            }
            missing.sort_unstable();
            missing.dedup();
            if !missing.is_empty() {
                let in_flight: FxHashMap<OrderId, NewOrder> = self
                    .inflight
                    .iter()
                    .filter_map(pending)
                    .map(|o| (o.id, o))
                    .collect();
                answer.pending = missing
                    .iter()
                    .filter_map(|id| in_flight.get(id))
                    .map(|o| pending_status(*o))
                    .collect();
                answer.archived = Some((archive().view(), ArchivedPart::Ids(missing)));
            }
        }
        answer
    }

    pub fn totals(&self) -> Vec<(SecurityId, matching::Qty, matching::Qty)> {
        self.projection.totals().collect()
    }

    /// Commands sequenced but not yet routed to any executor (no owner yet, or migrating).
    pub fn held(&self) -> usize {
        self.shards.held()
    }

    /// Submissions waiting, unsequenced, for a CLOSED to complete.
    pub fn deferred(&self) -> usize {
        self.front.as_ref().map_or(0, |f| f.deferred())
    }

    /// Commands sequenced and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    pub fn snapshot(&self, now: Instant) -> GridSnapshot {
        let nodes = self
            .shards
            .nodes
            .iter()
            .map(|(id, n)| NodeInfo {
                id: *id,
                name: n.name.clone(),
                addr: n.addr.clone(),
                status: n.status,
                securities: self
                    .shards
                    .secs
                    .iter()
                    .filter(|s| s.owner == Some(*id))
                    .count() as u32,
                orders_handled: n.stats.orders_handled,
                orders_per_sec: if n.status == NodeStatus::Down {
                    0.0
                } else {
                    n.rate
                },
                queue_depth: n.stats.queue_depth,
                heartbeat_age_ms: now.saturating_duration_since(n.last_heartbeat).as_millis()
                    as u64,
            })
            .collect();
        let securities = self
            .listing
            .iter()
            .map(|(id, code, reference)| {
                let i = id.0 as usize;
                let m = &self.stats.market[i];
                let book = self.projection.book(id).copied().unwrap_or_default();
                SecurityView {
                    id,
                    code: code.to_string(),
                    reference_price: if book.reference > 0 {
                        book.reference
                    } else {
                        reference
                    },
                    last_price: m.last_price,
                    volume: m.volume,
                    bid_total: book.bid_total,
                    ask_total: book.ask_total,
                    owner: self.shards.secs[i].owner,
                    bids: m.bids.clone(),
                    asks: m.asks.clone(),
                    recent_prices: m.recent.iter().copied().collect(),
                    indicative: m.indicative,
                    last_auction: m.last_auction,
                }
            })
            .collect();
        GridSnapshot {
            uptime_ms: self.stats.uptime(now).as_millis() as u64,
            shard_map_version: self.shards.map_version,
            nodes,
            counters: self.stats.counters,
            orders_per_sec: self.stats.rate,
            latency: self.stats.latency_summary(),
            securities,
            phase: self.phase,
            exchange_time: self.last_time,
            schedule: self.schedule.clone(),
        }
    }

    /// Depth for the local engine (local mode has no executor heartbeats).
    pub fn refresh_local_depth(&mut self) {
        if let Some(local) = &mut self.local {
            let stats = local.heartbeat(5, 0);
            for b in &stats.books {
                self.stats.depth(b);
            }
        }
    }
}

/// An order query's answer as the core thread leaves it ([`Core::query_orders_begin`]): what
/// it read, and for "all my orders" the archive as of the query, to scan elsewhere.
#[derive(Default)]
pub struct OrdersAnswer {
    /// The asking broker (`None`: a gateway, which sees every order).
    broker: Option<BrokerId>,
    /// From the projection (and, for ids, the archive): these win over the rest.
    held: Vec<OrderStatus>,
    /// The archive of the moment of the query, and what to read in it.
    archived: Option<(checkpoint::ArchivedView, ArchivedPart)>,
    /// Orders in flight (accepted, no events yet): the least recent word on an order.
    pending: Vec<OrderStatus>,
}

impl OrdersAnswer {
    /// Scans the archive's part, if any, then lists each order once (the most recent word on
    /// it), in id order, under the ids the asker knows.
    pub fn finish(self) -> anyhow::Result<Vec<OrderStatus>> {
        let OrdersAnswer {
            broker,
            mut held,
            archived,
            mut pending,
        } = self;
        match archived {
            Some((view, ArchivedPart::Range(lo, hi))) => view.scan(lo, hi, &mut |f| {
                if visible_to(broker, f.broker, f.id) {
                    held.push(orders::finished_status(f));
                }
            })?,
            Some((view, ArchivedPart::Ids(ids))) => {
                let mut archived = Vec::new();
                view.get_many(&ids, &mut |f| {
                    archived.push(f.id);
                    if visible_to(broker, f.broker, f.id) {
                        held.push(orders::finished_status(&f));
                    }
                })?;
                // An id the archive holds (whoever's) is not looked for in flight.
                archived.sort_unstable();
                pending.retain(|s| archived.binary_search(&s.id).is_err());
            }
            None => {}
        }
        held.extend(pending);
        if broker.is_some() {
            for s in &mut held {
                s.id = local_order_id(s.id);
            }
        }
        // Stable: of the same id, the first pushed (the most recent word) stays.
        held.sort_by_key(|s| s.id);
        held.dedup_by_key(|s| s.id);
        Ok(held)
    }
}

/// What an order query reads in the archive, off the core thread.
enum ArchivedPart {
    /// Every order in this id range ("all my orders").
    Range(u64, u64),
    /// These ids (sorted, no duplicates): those a query named that memory does not hold.
    Ids(Vec<OrderId>),
}

/// Whether an order of broker `owner` with id `id` is visible to `asker` (`None`: a gateway).
fn visible_to(asker: Option<BrokerId>, owner: BrokerId, id: OrderId) -> bool {
    asker.is_none_or(|x| x == owner && in_namespace(x, id))
}

/// Checks a submit frame of a session of `kind` as a whole: the session refuses the frame (and
/// ends) on an error, so a malformed batch changes nothing. It depends on the session's kind
/// alone, so a session checks its frames itself and never waits for the core to read on.
pub fn check_submit(kind: SessionKind, cmds: &[ClientCommand]) -> Result<(), String> {
    if cmds.len() > proto::limits::MAX_BATCH {
        return Err(format!(
            "a submit holds at most {} commands, got {}",
            proto::limits::MAX_BATCH,
            cmds.len()
        ));
    }
    match kind {
        SessionKind::Broker(_) => {
            for c in cmds {
                if matches!(c.command, Command::Phase(_)) {
                    return Err("a broker session cannot change the trading phase".into());
                }
                if let Some(id) = c.command.order_id() {
                    if id.0 > MAX_BROKER_ORDER_ID {
                        return Err(format!(
                            "order id {} is above this session's maximum {MAX_BROKER_ORDER_ID}",
                            id.0
                        ));
                    }
                }
            }
            Ok(())
        }
        SessionKind::Gateway => Ok(()),
        SessionKind::Exchange => {
            if cmds.iter().all(|c| matches!(c.command, Command::Phase(_))) {
                Ok(())
            } else {
                Err("the exchange session only changes phases".into())
            }
        }
    }
}

fn pending_status(o: NewOrder) -> OrderStatus {
    orders::OrderRecord::pending(&o, 0).status(o.id)
}
