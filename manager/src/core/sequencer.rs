//! The sequencing stage: what an acknowledgement needs and nothing more. It checks a command at
//! the gateway, gives it the next sequence number, appends it to the journal and, once the
//! journal commit covers it, acknowledges it (or reports its reject).
//!
//! What it sequenced goes on to the rest of the core (routing, executors' events, the order
//! projection, reports, statistics, checkpoints) as [`Sequenced`] items in journal order.
//! [`super::Core`] applies them at once, in the same thread; the manager's shell runs the two
//! stages on two threads ([`super::Core::split`]), and then hands items over only after the
//! commit that covers them, so the rest never sees a command that is not durable.
//!
//! It must not wait on anything but the journal. It learns from the rest only what its checks
//! depend on ([`Feedback`]): the reference prices a close sets (while the close is completing
//! nothing is sequenced: a barrier), and which finished orders the archive answers for now
//! (their ids leave the gateway's memory; an id memory does not hold is looked up in the
//! archive, which is shared).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use journal::FinishedOrder;
use matching::stream::BrokerRegistry;
use matching::{
    BrokerId, Command, Gateway, NewOrder, OrderId, Phase, Price, RejectReason, SecurityId,
    Timestamp,
};
use proto::{ClientCommand, Report, ReportEvent};
use rustc_hash::FxHashMap;

use super::checkpoint::Archived;
use super::pool::{Frames, VecPool};
use super::{
    check_submit, global_order_id, local_order_id, JournalEntry, Persist, RejectedEntry, SessionId,
    SessionKind, EXCHANGE_SESSION, MAX_BROKERS,
};

/// Most room an acknowledgements' vector kept for reuse may have (a few group commits' worth).
const ACKS_KEPT: usize = 1 << 16;
/// Room each released items' vector has from the start: a group commit's worth.
pub const ITEMS_PER_COMMIT: usize = 8192;

/// One thing the sequencing stage did, for the rest of the core, in journal order.
#[derive(Clone, Debug)]
pub enum Sequenced {
    /// A command given `seq` and journaled: route it.
    Command {
        seq: u64,
        session: SessionId,
        client_ref: u64,
        command: Command,
        time: Timestamp,
        /// When the manager received it (latency is counted from here).
        received: Instant,
        /// The gateway's highest used order id after it.
        max_order_id: u64,
    },
    /// A command refused at the gateway (already reported to its session). `burnt`: a NEW
    /// whose id is used up by the refusal, journaled as such.
    Refused {
        client_ref: u64,
        command: Command,
        reason: RejectReason,
        burnt: bool,
        at: Instant,
        max_order_id: u64,
    },
    SessionOpened {
        session: SessionId,
        kind: SessionKind,
    },
    SessionClosed {
        session: SessionId,
    },
    /// A broker name interned for the first time.
    Broker {
        id: BrokerId,
        name: String,
    },
}

/// What the rest of the core tells the sequencing stage.
#[derive(Clone, Debug)]
pub enum Feedback {
    /// The CLOSED sequenced at `seq` completed in every book: tomorrow's reference prices. The
    /// barrier it raised falls.
    Closed {
        seq: u64,
        references: Vec<(SecurityId, Price)>,
    },
    /// These finished orders left memory for the archive, which answers for them now.
    Archived(Arc<[FinishedOrder]>),
}

/// What a commit released: reports for sessions, and items for the rest of the core.
#[derive(Default)]
pub struct Released {
    pub reports: Vec<(SessionId, Report)>,
    pub items: Vec<Sequenced>,
}

/// The archive of finished orders, shared by both stages (the rest of the core writes it; this
/// stage looks ids up in it).
pub(super) type SharedArchive = Arc<Mutex<Archived>>;

pub struct Sequencer {
    pub(super) gateway: Gateway,
    journal: Box<dyn Persist>,
    pub(super) brokers: BrokerRegistry,
    sessions: FxHashMap<SessionId, SessionKind>,
    /// Open sessions per broker (the server caps them).
    broker_sessions: FxHashMap<BrokerId, usize>,
    /// Per broker: the highest of its own order ids used by a NEW.
    pub(super) broker_max_id: FxHashMap<BrokerId, u64>,
    pub(super) next_seq: u64,
    pub(super) last_time: Timestamp,
    pub(super) phase: Phase,
    /// A CLOSED being completed: nothing more is sequenced until [`Feedback::Closed`].
    barrier: Option<u64>,
    /// Submissions that arrived behind the barrier, in order.
    deferred: VecDeque<(SessionId, Vec<ClientCommand>, Timestamp)>,
    /// Reports waiting for the journal commit.
    unacked: Vec<(SessionId, Report)>,
    /// Items since the last commit (released with it, unless the in-thread core took them).
    pending: Vec<Sequenced>,
    /// Where the next `pending` comes from: the core thread gives the released ones back.
    items_pool: VecPool<Sequenced>,
    /// The acknowledgements' vector the caller gave back ([`Sequencer::recycle_acks`]).
    spare_acks: Vec<(SessionId, Report)>,
    archive: SharedArchive,
    commit_each: bool,
    /// Ids in the gateway's memory, for the memory figures of the other stage.
    ids_in_memory: Arc<AtomicU64>,
    metrics: Option<Arc<metrics::Metrics>>,
}

impl Sequencer {
    pub(super) fn new(
        gateway: Gateway,
        journal: Box<dyn Persist>,
        archive: SharedArchive,
        commit_each: bool,
        ids_in_memory: Arc<AtomicU64>,
        items_pool: VecPool<Sequenced>,
    ) -> Self {
        let mut sessions = FxHashMap::default();
        sessions.insert(EXCHANGE_SESSION, SessionKind::Exchange);
        Sequencer {
            gateway,
            journal,
            brokers: BrokerRegistry::new(),
            sessions,
            broker_sessions: FxHashMap::default(),
            broker_max_id: FxHashMap::default(),
            next_seq: 1,
            last_time: 0,
            phase: Phase::Continuous,
            barrier: None,
            deferred: VecDeque::new(),
            unacked: Vec::new(),
            pending: Vec::new(),
            items_pool,
            spare_acks: Vec::new(),
            archive,
            commit_each,
            ids_in_memory,
            metrics: None,
        }
    }

    pub fn set_metrics(&mut self, m: Arc<metrics::Metrics>) {
        self.metrics = Some(m);
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The market's phase as sequenced.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The exchange time of the last sequenced command.
    pub fn last_time(&self) -> Timestamp {
        self.last_time
    }

    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// False while a CLOSED is completing.
    pub fn accepting(&self) -> bool {
        self.barrier.is_none()
    }

    /// Submissions waiting, unsequenced, for a CLOSED to complete.
    pub fn deferred(&self) -> usize {
        self.deferred.iter().map(|(_, c, _)| c.len()).sum()
    }

    /// Interns a broker name (from the credentials file or a gateway's declaration).
    pub fn broker_id(&mut self, name: &str) -> BrokerId {
        let known = self.brokers.len();
        let id = self.brokers.intern(name);
        if self.brokers.len() > known {
            self.pending.push(Sequenced::Broker {
                id,
                name: name.to_string(),
            });
        }
        id
    }

    /// A gateway declares the brokers it acts for: names are checked like credentials.
    pub fn declare_brokers(&mut self, names: &[String]) -> Result<Vec<(String, BrokerId)>, String> {
        if names.len() > proto::limits::MAX_DECLARED {
            return Err(format!(
                "at most {} brokers per declaration",
                proto::limits::MAX_DECLARED
            ));
        }
        for n in names {
            proto::limits::check_name(n).map_err(|e| format!("broker name {n:?}: {e}"))?;
        }
        if self.brokers.len() + names.len() > MAX_BROKERS {
            return Err(format!("at most {MAX_BROKERS} brokers"));
        }
        Ok(names
            .iter()
            .map(|n| (n.clone(), self.broker_id(n)))
            .collect())
    }

    /// Every order id above this one is unused, in the session's own namespace.
    pub fn max_order_id(&self, session: SessionId) -> u64 {
        match self.sessions.get(&session) {
            Some(SessionKind::Broker(b)) => self.broker_max_id.get(b).copied().unwrap_or(0),
            _ => self.gateway.max_order_id(),
        }
    }

    pub fn open_session(&mut self, session: SessionId, kind: SessionKind) {
        self.sessions.insert(session, kind);
        if let SessionKind::Broker(b) = kind {
            *self.broker_sessions.entry(b).or_default() += 1;
        }
        self.pending
            .push(Sequenced::SessionOpened { session, kind });
    }

    pub fn close_session(&mut self, session: SessionId) {
        if let Some(SessionKind::Broker(b)) = self.sessions.remove(&session) {
            if let Some(n) = self.broker_sessions.get_mut(&b) {
                *n -= 1;
            }
        }
        self.unacked.retain(|(s, _)| *s != session);
        self.pending.push(Sequenced::SessionClosed { session });
    }

    /// Open sessions of a broker.
    pub fn sessions_of(&self, broker: BrokerId) -> usize {
        self.broker_sessions.get(&broker).copied().unwrap_or(0)
    }

    /// Checks a submit frame as a whole before anything of it is processed (see
    /// [`check_submit`]).
    pub fn check_batch(&self, session: SessionId, cmds: &[ClientCommand]) -> Result<(), String> {
        match self.sessions.get(&session) {
            Some(kind) => check_submit(*kind, cmds),
            None => Err("no such session".into()),
        }
    }

    /// Sequences a batch of commands from one session, in order, at exchange time `time`.
    /// Acceptances and rejects are reported after the journal commit ([`Self::commit`]).
    pub fn submit(
        &mut self,
        session: SessionId,
        cmds: &[ClientCommand],
        now: Instant,
        time: Timestamp,
    ) -> anyhow::Result<()> {
        if self.barrier.is_some() || !self.deferred.is_empty() {
            self.deferred.push_back((session, cmds.to_vec(), time));
            return Ok(());
        }
        if let Some(rest) = self.submit_until_barrier(session, cmds, now, time)? {
            self.deferred.push_front((session, rest, time));
        }
        Ok(())
    }

    /// Sequences commands in order until one of them raises a barrier; returns the commands
    /// left after it.
    fn submit_until_barrier(
        &mut self,
        session: SessionId,
        cmds: &[ClientCommand],
        now: Instant,
        time: Timestamp,
    ) -> anyhow::Result<Option<Vec<ClientCommand>>> {
        let Some(kind) = self.sessions.get(&session).copied() else {
            return Ok(None);
        };
        for (k, cc) in cmds.iter().enumerate() {
            self.submit_one(session, kind, cc, now, time)?;
            if self.barrier.is_some() {
                let rest = &cmds[k + 1..];
                return Ok((!rest.is_empty()).then(|| rest.to_vec()));
            }
        }
        Ok(None)
    }

    fn submit_one(
        &mut self,
        session: SessionId,
        kind: SessionKind,
        cc: &ClientCommand,
        now: Instant,
        time: Timestamp,
    ) -> anyhow::Result<()> {
        let mut cmd = cc.command;
        match kind {
            SessionKind::Broker(b) => {
                // A broker session can only act for itself, in its own id namespace.
                cmd.set_broker(b);
                if let Some(local) = cmd.order_id() {
                    let global = global_order_id(b, local.0).expect("checked by check_batch");
                    set_order_id(&mut cmd, global);
                }
            }
            SessionKind::Gateway => {
                if let Some(b) = cmd.broker() {
                    if self.brokers.name(b).is_none() {
                        return self.reject(
                            session,
                            cc.client_ref,
                            &cmd,
                            RejectReason::NotOwner,
                            now,
                            time,
                        );
                    }
                }
            }
            SessionKind::Exchange => {}
        }
        // The archive is locked only for an id memory does not hold.
        let archive = &self.archive;
        let checked = self.gateway.check_with(&cmd, |id| {
            super::Core::archived_id(&archive.lock().expect("archive lock"), id)
        })?;
        if let Err(reason) = checked {
            return self.reject(session, cc.client_ref, &cmd, reason, now, time);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let time = time.max(self.last_time);
        self.last_time = time;
        let broker_name = cmd
            .broker()
            .and_then(|b| self.brokers.name(b))
            .unwrap_or("");
        self.journal.append(&JournalEntry {
            seq,
            time,
            client_ref: cc.client_ref,
            command: &cmd,
            broker_name,
        })?;
        if let Command::New(o) = &cmd {
            note_max_id(&mut self.broker_max_id, o);
        }
        self.unacked.push((
            session,
            Report {
                client_ref: cc.client_ref,
                seq,
                time,
                order: self.visible_id(session, cmd.order_id().unwrap_or(OrderId(0))),
                event: ReportEvent::Accepted,
                last: false,
                passive: false,
            },
        ));
        self.pending.push(Sequenced::Command {
            seq,
            session,
            client_ref: cc.client_ref,
            command: cmd,
            time,
            received: now,
            max_order_id: self.gateway.max_order_id(),
        });
        if let Command::Phase(p) = cmd {
            self.phase = p;
            if p == Phase::Closed {
                self.barrier = Some(seq);
            }
        }
        if self.commit_each {
            self.journal.commit()?;
        }
        Ok(())
    }

    fn reject(
        &mut self,
        session: SessionId,
        client_ref: u64,
        cmd: &Command,
        reason: RejectReason,
        now: Instant,
        time: Timestamp,
    ) -> anyhow::Result<()> {
        let id = cmd.order_id().unwrap_or(OrderId(0));
        // A rejected NEW burns its id (unless the id was taken already): journaled, so a
        // restarted manager still refuses the id and still lists the order as rejected.
        let burnt = matches!(cmd, Command::New(_)) && reason != RejectReason::DuplicateOrderId;
        if let (Command::New(o), true) = (cmd, burnt) {
            let broker_name = self.brokers.name(o.broker).unwrap_or("");
            self.journal.append_rejected(&RejectedEntry {
                time,
                client_ref,
                order: o,
                reason,
                broker_name,
            })?;
            note_max_id(&mut self.broker_max_id, o);
        }
        self.pending.push(Sequenced::Refused {
            client_ref,
            command: *cmd,
            reason,
            burnt,
            at: now,
            max_order_id: self.gateway.max_order_id(),
        });
        self.unacked.push((
            session,
            Report {
                client_ref,
                seq: 0,
                time: 0,
                order: self.visible_id(session, id),
                event: ReportEvent::Rejected { reason },
                last: true,
                passive: false,
            },
        ));
        Ok(())
    }

    /// The id a session knows an order by.
    fn visible_id(&self, session: SessionId, id: OrderId) -> OrderId {
        match self.sessions.get(&session) {
            Some(SessionKind::Broker(_)) => local_order_id(id),
            _ => id,
        }
    }

    /// Items sequenced since the last call, before their commit: the in-thread core routes at
    /// once (what it routes leaves only after the commit, see [`super::Core::flush`]).
    pub(super) fn take_uncommitted(&mut self) -> std::vec::Drain<'_, Sequenced> {
        self.pending.drain(..)
    }

    /// Commits the journal if anything was appended, then releases the reports it covers and
    /// (for a stage on its own thread) the items.
    pub fn commit(&mut self) -> anyhow::Result<Released> {
        if self.unacked.is_empty() && self.pending.is_empty() {
            return Ok(Released::default());
        }
        let started = Instant::now();
        self.journal.commit()?;
        if let Some(m) = &self.metrics {
            m.journal_commit(started.elapsed(), self.unacked.len() as u64);
        }
        self.ids_in_memory
            .store(self.gateway.ids_in_memory() as u64, Ordering::Relaxed);
        let sessions = &self.sessions;
        let mut reports =
            std::mem::replace(&mut self.unacked, std::mem::take(&mut self.spare_acks));
        reports.retain(|(s, _)| *s != EXCHANGE_SESSION && sessions.contains_key(s));
        // Vectors that go round instead of fresh memory each commit (see `super::pool`).
        let items = if self.pending.is_empty() {
            Vec::new()
        } else {
            std::mem::replace(&mut self.pending, self.items_pool.take())
        };
        Ok(Released { reports, items })
    }

    /// Queues a commit's acknowledgements to their sessions' frames in `by_session` (vectors
    /// taken from `pool`), then keeps the emptied vector for the next commit.
    pub fn queue_acks(
        &mut self,
        mut acks: Vec<(SessionId, Report)>,
        pool: &VecPool<Report>,
        by_session: &mut Frames<SessionId, Report>,
    ) {
        for (session, report) in acks.drain(..) {
            by_session.push(pool, session, report);
        }
        self.recycle_acks(acks);
    }

    /// Gives back a commit's acknowledgements once the caller took them out: the next commits
    /// fill that vector again (one kept, of up to [`ACKS_KEPT`] entries' room).
    pub fn recycle_acks(&mut self, mut acks: Vec<(SessionId, Report)>) {
        if acks.capacity() <= ACKS_KEPT && acks.capacity() > self.spare_acks.capacity() {
            acks.clear();
            self.spare_acks = acks;
        }
    }

    /// What the rest of the core reports back. A fallen barrier lets what waited behind it be
    /// sequenced (until the next barrier).
    pub fn feedback(&mut self, fb: Feedback, now: Instant) -> anyhow::Result<()> {
        match fb {
            Feedback::Closed { seq, references } => {
                for (sec, price) in references {
                    self.gateway.set_reference(sec, price);
                }
                if self.barrier == Some(seq) {
                    self.barrier = None;
                    while self.barrier.is_none() {
                        let Some((session, cmds, time)) = self.deferred.pop_front() else {
                            break;
                        };
                        if let Some(rest) = self.submit_until_barrier(session, &cmds, now, time)? {
                            self.deferred.push_front((session, rest, time));
                        }
                    }
                }
            }
            Feedback::Archived(finished) => {
                for f in finished.iter() {
                    self.gateway.forget(f.id);
                }
                self.ids_in_memory
                    .store(self.gateway.ids_in_memory() as u64, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Housekeeping while idle (the journal's high-water mark catches up).
    pub fn idle(&mut self) -> anyhow::Result<()> {
        self.journal.idle()
    }

    /// Recovery: the state the rest of the core rebuilt, from which sequencing continues.
    pub(super) fn restore(
        &mut self,
        next_seq: u64,
        last_time: Timestamp,
        phase: Phase,
        brokers: &BrokerRegistry,
        broker_max_id: &FxHashMap<BrokerId, u64>,
    ) {
        self.next_seq = next_seq;
        self.last_time = last_time;
        self.phase = phase;
        self.brokers = brokers.clone();
        self.broker_max_id = broker_max_id.clone();
        self.ids_in_memory
            .store(self.gateway.ids_in_memory() as u64, Ordering::Relaxed);
    }
}

/// Raises a broker's highest own id with a NEW in its namespace.
pub(super) fn note_max_id(max: &mut FxHashMap<BrokerId, u64>, o: &NewOrder) {
    if o.id.0 >> 40 == u64::from(o.broker.0) + 1 {
        let m = max.entry(o.broker).or_default();
        *m = (*m).max(local_order_id(o.id).0);
    }
}

fn set_order_id(cmd: &mut Command, id: OrderId) {
    match cmd {
        Command::New(o) => o.id = id,
        Command::Cancel(c) => c.id = id,
        Command::Amend(a) => a.id = id,
        Command::Phase(_) => {}
    }
}
