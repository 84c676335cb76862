//! The manager's state machine: sequencing, routing, failover and order state, with no sockets
//! and no clock of its own (the shell passes `Instant`s in and sends what [`Outbox`] holds).
//!
//! Invariants it keeps:
//! - every accepted command gets the next sequence number and is journaled before it is
//!   acknowledged or routed (`flush` commits the journal first);
//! - per security, commands reach the owning executor in sequence order; `history[..completed]`
//!   is exactly what the current book has absorbed, so a new owner rebuilds it by replaying that
//!   prefix and then receives the rest;
//! - events are accepted only from the current owner, for the next uncompleted command of that
//!   security: a late or duplicated event from a dead or former owner is dropped, so no fill
//!   reaches a broker twice.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use matching::stream::BrokerRegistry;
use matching::{
    BrokerId, Command, Engine, Event, Fill, Gateway, OrderId, Price, Qty, SecurityId, Side,
};
use proto::{
    Counters, ExecutorStats, GridSnapshot, LatencySummary, LogEntry, LogKind, NodeInfo, NodeStatus,
    OrderState, OrderStatus, Report, SecurityView, SeqEvent, Sequenced, ToExecutor, TradeTick,
};
use rustc_hash::FxHashMap;

pub type NodeId = u32;
pub type SessionId = u32;

/// Commands sent per frame when replaying or re-sending history (keeps frames well under the
/// codec's size limit).
const CHUNK: usize = 20_000;
/// Recent trade prices kept per security for the monitor chart.
const RECENT_PRICES: usize = 120;

/// Where sequenced commands are made durable. The disk implementation wraps the journal and the
/// trade tape; tests use [`MemoryPersist`].
pub trait Persist: Send {
    fn append(&mut self, seq: u64, cmd: &Command, broker_name: &str) -> anyhow::Result<()>;
    fn append_trade(&mut self, seq: u64, fill_index: u32, fill: &Fill) -> anyhow::Result<()>;
    /// Makes everything appended so far durable (group commit).
    fn commit(&mut self) -> anyhow::Result<()>;
}

/// Keeps nothing on disk (tests and the `--no-journal` experiments).
#[derive(Default)]
pub struct MemoryPersist {
    pub orders: Vec<(u64, Command)>,
    pub trades: Vec<(u64, u32, Fill)>,
}

impl Persist for MemoryPersist {
    fn append(&mut self, seq: u64, cmd: &Command, _broker_name: &str) -> anyhow::Result<()> {
        self.orders.push((seq, *cmd));
        Ok(())
    }
    fn append_trade(&mut self, seq: u64, fill_index: u32, fill: &Fill) -> anyhow::Result<()> {
        self.trades.push((seq, fill_index, *fill));
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
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            local: false,
            heartbeat_interval: Duration::from_millis(200),
            heartbeat_timeout: Duration::from_millis(1500),
        }
    }
}

/// What the shell must send after a call into the core.
#[derive(Default)]
pub struct Outbox {
    pub reports: FxHashMap<SessionId, Vec<Report>>,
    pub executors: BTreeMap<NodeId, Vec<ToExecutor>>,
    /// Executors declared down: the shell closes their connections.
    pub disconnect: Vec<NodeId>,
    pub log: Vec<LogEntry>,
    pub trades: Vec<TradeTick>,
}

struct SecState {
    owner: Option<NodeId>,
    /// Migration in progress: the owner drains, then `target` takes over.
    target: Option<NodeId>,
    history: Vec<Sequenced>,
    /// Prefix of `history` sent to the current owner.
    sent: usize,
    /// Prefix of `history` whose final event has been received.
    completed: usize,
    last_price: Option<Price>,
    volume: Qty,
    recent: VecDeque<Price>,
    depth: matching::book::Depth,
}

struct Node {
    name: String,
    addr: String,
    status: NodeStatus,
    last_heartbeat: Instant,
    stats: ExecutorStats,
    rate: f64,
    rate_mark: (Instant, u64),
}

/// A sequenced command awaiting its final event.
struct InFlight {
    security: SecurityId,
    session: SessionId,
    order: OrderId,
    /// The order's state record (NEW commands).
    record: Option<u32>,
    received: Instant,
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
        debug_assert_eq!(
            seq,
            self.base + self.slots.len() as u64,
            "seqs are inserted densely"
        );
        self.slots.push_back(Some(v));
        self.live += 1;
    }
    fn get(&self, seq: u64) -> Option<&InFlight> {
        let i = seq.checked_sub(self.base)?;
        self.slots.get(i as usize)?.as_ref()
    }
    fn remove(&mut self, seq: u64) {
        let Some(i) = seq.checked_sub(self.base) else {
            return;
        };
        if let Some(slot) = self.slots.get_mut(i as usize) {
            if slot.take().is_some() {
                self.live -= 1;
            }
        }
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.base += 1;
        }
    }
    fn len(&self) -> usize {
        self.live
    }
}

/// Order states for broker queries: records in arrival order (updates touch recent memory),
/// found by id through a compact index.
#[derive(Default)]
struct OrderStates {
    index: FxHashMap<OrderId, u32>,
    records: Vec<OrderRecord>,
}

impl OrderStates {
    /// Adds a record unless the id has one; returns the record's index.
    fn insert(&mut self, id: OrderId, record: OrderRecord) -> u32 {
        let next = self.records.len() as u32;
        let idx = *self.index.entry(id).or_insert(next);
        if idx == next {
            self.records.push(record);
        }
        idx
    }
    /// A pending record for a NEW command (None for a cancel).
    fn record(&mut self, cmd: &Command) -> Option<u32> {
        match cmd {
            Command::New(o) => Some(self.insert(
                o.id,
                OrderRecord {
                    broker: o.broker,
                    status: pending_status(o),
                },
            )),
            Command::Cancel(_) => None,
        }
    }

    fn get(&self, id: &OrderId) -> Option<&OrderRecord> {
        self.index.get(id).map(|i| &self.records[*i as usize])
    }
    fn get_mut(&mut self, id: &OrderId) -> Option<&mut OrderRecord> {
        self.index.get(id).map(|i| &mut self.records[*i as usize])
    }
    /// The record at `idx` when the caller knows it, else by id.
    fn find(&mut self, id: OrderId, known: Option<(OrderId, u32)>) -> Option<&mut OrderRecord> {
        match known {
            Some((k, idx)) if k == id => self.records.get_mut(idx as usize),
            _ => self.get_mut(&id),
        }
    }
}

struct OrderRecord {
    broker: BrokerId,
    status: OrderStatus,
}

/// A broker session (`broker` set) or a gateway session acting for declared brokers.
#[derive(Clone, Copy)]
struct Session {
    broker: Option<BrokerId>,
}

pub struct Core {
    config: CoreConfig,
    gateway: Gateway,
    persist: Box<dyn Persist>,
    brokers: BrokerRegistry,
    next_seq: u64,
    secs: Vec<SecState>,
    nodes: BTreeMap<NodeId, Node>,
    next_node: NodeId,
    map_version: u64,
    inflight: InFlightRing,
    orders: OrderStates,
    totals: Vec<(Qty, Qty)>,
    sessions: FxHashMap<SessionId, Session>,
    broker_sessions: FxHashMap<BrokerId, Vec<SessionId>>,
    local: Option<Engine>,
    counters: Counters,
    latency: Histogram<u64>,
    started: Instant,
    rate_mark: (Instant, u64),
    rate: f64,
    /// Accepted reports waiting for the journal commit.
    unacked: Vec<(SessionId, Report)>,
    /// Commands waiting for the journal commit before they are routed.
    /// Messages to each executor, in the order they must arrive; released by `flush` after the
    /// journal commit, so nothing reaches an executor before it is durable and a `Revoke` never
    /// overtakes commands routed before it.
    outgoing: BTreeMap<NodeId, Vec<ToExecutor>>,
    out: Outbox,
    scratch: Vec<Event>,
}

/// The pseudo-node that matches in-process in `--local` mode.
pub const LOCAL_NODE: NodeId = 0;

impl Core {
    pub fn new(
        config: CoreConfig,
        gateway: Gateway,
        persist: Box<dyn Persist>,
        now: Instant,
    ) -> Self {
        let n = gateway.securities().len();
        let secs = (0..n)
            .map(|_| SecState {
                owner: None,
                target: None,
                history: Vec::new(),
                sent: 0,
                completed: 0,
                last_price: None,
                volume: 0,
                recent: VecDeque::new(),
                depth: (Vec::new(), Vec::new()),
            })
            .collect();
        let mut core = Core {
            local: None,
            gateway,
            persist,
            brokers: BrokerRegistry::new(),
            next_seq: 1,
            secs,
            nodes: BTreeMap::new(),
            next_node: 1,
            map_version: 0,
            inflight: InFlightRing::default(),
            orders: OrderStates::default(),
            totals: vec![(0, 0); n],
            sessions: FxHashMap::default(),
            broker_sessions: FxHashMap::default(),
            counters: Counters::default(),
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            started: now,
            rate_mark: (now, 0),
            rate: 0.0,
            unacked: Vec::new(),
            outgoing: BTreeMap::new(),
            out: Outbox::default(),
            scratch: Vec::new(),
            config,
        };
        if core.config.local {
            let mut engine = Engine::new();
            for (id, _, _) in core.gateway.securities().iter() {
                engine.open_book(id);
            }
            core.local = Some(engine);
            for s in &mut core.secs {
                s.owner = Some(LOCAL_NODE);
            }
        }
        core
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn is_local(&self) -> bool {
        self.config.local
    }

    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// Interns a broker name (from the credentials file or a gateway's declaration).
    pub fn broker_id(&mut self, name: &str) -> BrokerId {
        self.brokers.intern(name)
    }

    /// Rebuilds state from journaled commands after a restart: the gateway's memory, every
    /// security's history (all of it counts as completed: the books are recomputed by a
    /// sequential engine here, and rebuilt by replay on the executors), order states, totals,
    /// and the fills the trade tape is missing.
    pub fn recover(
        &mut self,
        brokers: &[(BrokerId, String)],
        orders: &[(u64, Command)],
        taped: &[crate::journal::Trade],
    ) -> anyhow::Result<u64> {
        let mut sorted: Vec<&(BrokerId, String)> = brokers.iter().collect();
        sorted.sort_by_key(|(id, _)| id.0);
        for (id, name) in sorted {
            let got = self.brokers.intern(name);
            anyhow::ensure!(
                got == *id,
                "journal broker ids are not dense: {name} is {id:?}"
            );
        }
        // Fills the tape already holds; any other fill of a journaled command is re-taped.
        let taped: std::collections::HashSet<(u64, u32)> =
            taped.iter().map(|(s, i, _)| (*s, *i)).collect();
        let mut engine = Engine::new();
        for (id, _, _) in self.gateway.securities().iter() {
            engine.open_book(id);
        }
        let mut events = Vec::new();
        let mut missing = 0u64;
        for (seq, cmd) in orders {
            anyhow::ensure!(
                *seq == self.next_seq,
                "journal gap: expected seq {}, found {seq}",
                self.next_seq
            );
            self.next_seq += 1;
            self.gateway.restore(cmd);
            let sec = cmd.security();
            let Some(st) = self.secs.get_mut(sec.0 as usize) else {
                anyhow::bail!("journal names security {} which is not listed", sec.0);
            };
            st.history.push(Sequenced {
                seq: *seq,
                command: *cmd,
            });
            st.completed = st.history.len();
            let record = self.orders.record(cmd);
            events.clear();
            engine.process(cmd, &mut events);
            let mut fill_index = 0u32;
            for ev in &events {
                if let Event::Fill(f) = ev {
                    if !taped.contains(&(*seq, fill_index)) {
                        self.persist.append_trade(*seq, fill_index, f)?;
                        missing += 1;
                    }
                    fill_index += 1;
                }
            }
            let n = events.len();
            for (i, ev) in events.iter().enumerate() {
                apply_state(
                    &mut self.orders,
                    &mut self.totals,
                    cmd.order_id(),
                    record,
                    ev,
                    i + 1 == n,
                );
            }
        }
        self.persist.commit()?;
        if let Some(local) = &mut self.local {
            *local = engine;
        }
        Ok(missing)
    }

    // ------------------------------------------------------------------------------ sessions

    pub fn open_session(&mut self, session: SessionId, broker: Option<BrokerId>) {
        self.sessions.insert(session, Session { broker });
        if let Some(b) = broker {
            self.broker_sessions.entry(b).or_default().push(session);
        }
    }

    pub fn close_session(&mut self, session: SessionId) {
        if let Some(s) = self.sessions.remove(&session) {
            if let Some(b) = s.broker {
                if let Some(list) = self.broker_sessions.get_mut(&b) {
                    list.retain(|x| *x != session);
                }
            }
        }
        self.out.reports.remove(&session);
    }

    /// Sequences a batch of commands from one session, in order. Rejections are reported at
    /// once; acceptances wait for [`Core::flush`] (after the journal commit).
    pub fn submit(
        &mut self,
        session: SessionId,
        cmds: &[Command],
        now: Instant,
    ) -> anyhow::Result<()> {
        let Some(sess) = self.sessions.get(&session).copied() else {
            return Ok(());
        };
        for cmd in cmds {
            let mut cmd = *cmd;
            if let Some(b) = sess.broker {
                // A broker session can only act for itself.
                match &mut cmd {
                    Command::New(o) => o.broker = b,
                    Command::Cancel(c) => c.broker = b,
                }
            } else if self.brokers.name(cmd.broker()).is_none() {
                let id = cmd.order_id();
                self.counters.received += 1;
                self.reject(session, &cmd, id, matching::RejectReason::NotOwner, now);
                continue;
            }
            self.counters.received += 1;
            let id = cmd.order_id();
            if let Err(reason) = self.gateway.check(&cmd) {
                self.reject(session, &cmd, id, reason, now);
                continue;
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            let broker_name = self.brokers.name(cmd.broker()).unwrap_or("?");
            self.persist.append(seq, &cmd, broker_name)?;
            self.counters.accepted += 1;
            let record = self.orders.record(&cmd);
            let security = cmd.security();
            self.inflight.insert(
                seq,
                InFlight {
                    security,
                    session,
                    order: id,
                    record,
                    received: now,
                },
            );
            self.unacked.push((
                session,
                Report {
                    seq,
                    order: id,
                    event: Event::Accepted { id },
                    last: false,
                    passive: false,
                },
            ));
            let st = &mut self.secs[security.0 as usize];
            st.history.push(Sequenced { seq, command: cmd });
            if let (Some(owner), None) = (st.owner, st.target) {
                st.sent += 1;
                self.route(owner, Sequenced { seq, command: cmd });
            }
        }
        Ok(())
    }

    fn reject(
        &mut self,
        session: SessionId,
        cmd: &Command,
        id: OrderId,
        reason: matching::RejectReason,
        now: Instant,
    ) {
        self.counters.rejected += 1;
        if let Command::New(o) = cmd {
            if reason != matching::RejectReason::DuplicateOrderId {
                let mut status = pending_status(o);
                status.state = OrderState::Rejected;
                self.orders.insert(
                    id,
                    OrderRecord {
                        broker: o.broker,
                        status,
                    },
                );
            }
        }
        self.out.log.push(LogEntry {
            uptime_ms: self.uptime_ms(now),
            kind: LogKind::Reject,
            text: format!("order {} rejected: {}", id.0, reason.code()),
        });
        self.out.reports.entry(session).or_default().push(Report {
            seq: 0,
            order: id,
            event: Event::Rejected { id, reason },
            last: true,
            passive: false,
        });
    }

    /// Commits the journal, then releases acknowledgements and routes the batch. In local mode
    /// the batch is matched here.
    pub fn flush(&mut self, now: Instant) -> anyhow::Result<Outbox> {
        if !self.unacked.is_empty() {
            self.persist.commit()?;
            for (session, report) in std::mem::take(&mut self.unacked) {
                self.out.reports.entry(session).or_default().push(report);
            }
        }
        for (node, msgs) in std::mem::take(&mut self.outgoing) {
            if node == LOCAL_NODE {
                for msg in msgs {
                    if let ToExecutor::Orders(cmds) = msg {
                        self.match_locally(&cmds, now)?;
                    }
                }
            } else {
                self.out.executors.entry(node).or_default().extend(msgs);
            }
        }
        self.persist.commit()?;
        Ok(std::mem::take(&mut self.out))
    }

    /// Queues one command for `node`, batching consecutive commands into one frame.
    fn route(&mut self, node: NodeId, cmd: Sequenced) {
        let q = self.outgoing.entry(node).or_default();
        match q.last_mut() {
            Some(ToExecutor::Orders(batch)) if batch.len() < CHUNK => batch.push(cmd),
            _ => q.push(ToExecutor::Orders(vec![cmd])),
        }
    }

    fn match_locally(&mut self, cmds: &[Sequenced], now: Instant) -> anyhow::Result<()> {
        let mut engine = self.local.take().expect("local mode has an engine");
        let mut batch = Vec::with_capacity(cmds.len() * 3);
        let mut events = std::mem::take(&mut self.scratch);
        for s in cmds {
            events.clear();
            engine.process(&s.command, &mut events);
            let n = events.len();
            for (i, ev) in events.iter().enumerate() {
                if !matches!(ev, Event::Accepted { .. }) || i + 1 == n {
                    batch.push(SeqEvent {
                        seq: s.seq,
                        event: *ev,
                        last: i + 1 == n,
                    });
                }
            }
        }
        self.scratch = events;
        self.local = Some(engine);
        self.executor_events(LOCAL_NODE, &batch, now)
    }

    // ----------------------------------------------------------------------------- executors

    /// A new executor joined: it takes unowned securities, then a fair share from the others.
    pub fn executor_joined(&mut self, name: &str, addr: &str, now: Instant) -> NodeId {
        let id = self.next_node;
        self.next_node += 1;
        // A PC that comes back under its old name replaces its "down" row.
        self.nodes
            .retain(|_, n| !(n.status == NodeStatus::Down && n.name == name));
        self.nodes.insert(
            id,
            Node {
                name: name.to_string(),
                addr: addr.to_string(),
                status: NodeStatus::Up,
                last_heartbeat: now,
                stats: ExecutorStats::default(),
                rate: 0.0,
                rate_mark: (now, 0),
            },
        );
        self.log(
            now,
            LogKind::NodeJoined,
            format!("executor {name} (node {id}) joined from {addr}"),
        );
        self.rebalance(now);
        id
    }

    /// An executor's connection closed or its heartbeat timed out.
    pub fn executor_lost(&mut self, node: NodeId, now: Instant) {
        let Some(n) = self.nodes.get_mut(&node) else {
            return;
        };
        if n.status == NodeStatus::Down {
            return;
        }
        n.status = NodeStatus::Down;
        let name = n.name.clone();
        let mut moved = 0;
        let mut drained = Vec::new();
        for (i, st) in self.secs.iter_mut().enumerate() {
            if st.owner == Some(node) {
                st.owner = None;
                // Whatever was sent but not completed is sent again to the next owner.
                st.sent = st.completed;
                moved += 1;
                if st.target.is_some() {
                    // Mid-migration: nothing is left to drain, the target takes over now.
                    drained.push(i);
                }
            }
            if st.target == Some(node) {
                // The target died mid-migration. The old owner has revoked (or will revoke) the
                // book, so the security fails over like a lost one: its in-flight commands are
                // sent again, and late events from the old owner are no longer accepted.
                st.target = None;
                st.owner = None;
                st.sent = st.completed;
                moved += 1;
            }
        }
        self.out.disconnect.push(node);
        for i in drained {
            self.try_finish_migration(i);
        }
        self.log(
            now,
            LogKind::NodeLost,
            format!("executor {name} (node {node}) lost; {moved} securities to move"),
        );
        self.rebalance(now);
    }

    pub fn executor_heartbeat(&mut self, node: NodeId, stats: ExecutorStats, now: Instant) {
        let Some(n) = self.nodes.get_mut(&node) else {
            return;
        };
        if n.status == NodeStatus::Down {
            return;
        }
        n.status = NodeStatus::Up;
        n.last_heartbeat = now;
        let dt = now.saturating_duration_since(n.rate_mark.0).as_secs_f64();
        if dt >= 0.5 {
            n.rate = (stats.orders_handled.saturating_sub(n.rate_mark.1)) as f64 / dt;
            n.rate_mark = (now, stats.orders_handled);
        }
        for b in &stats.books {
            if let Some(st) = self.secs.get_mut(b.security.0 as usize) {
                if st.owner == Some(node) {
                    st.depth = (b.bids.clone(), b.asks.clone());
                }
            }
        }
        n.stats = stats;
    }

    /// Periodic check: heartbeat ages, node status.
    pub fn tick(&mut self, now: Instant) {
        let mut lost = Vec::new();
        for (id, n) in &mut self.nodes {
            if n.status == NodeStatus::Down {
                continue;
            }
            let age = now.saturating_duration_since(n.last_heartbeat);
            if age > self.config.heartbeat_timeout {
                lost.push(*id);
            } else if age > self.config.heartbeat_interval * 3 {
                n.status = NodeStatus::Suspect;
            }
        }
        for id in lost {
            self.executor_lost(id, now);
        }
        let dt = now
            .saturating_duration_since(self.rate_mark.0)
            .as_secs_f64();
        if dt >= 0.5 {
            self.rate = (self.counters.accepted - self.rate_mark.1) as f64 / dt;
            self.rate_mark = (now, self.counters.accepted);
        }
    }

    fn live_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.status != NodeStatus::Down)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Gives every unowned security an owner and evens out the load: the shard map balances
    /// security counts over the live executors.
    fn rebalance(&mut self, now: Instant) {
        if self.config.local {
            return;
        }
        let live = self.live_nodes();
        if live.is_empty() {
            return;
        }
        let mut load: BTreeMap<NodeId, usize> = live.iter().map(|id| (*id, 0)).collect();
        for st in &self.secs {
            if let Some(o) = st.target.or(st.owner) {
                if let Some(c) = load.get_mut(&o) {
                    *c += 1;
                }
            }
        }
        let mut assign: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
        for i in 0..self.secs.len() {
            let st = &self.secs[i];
            if st.owner.is_none() && st.target.is_none() {
                let node = least_loaded(&load);
                *load.get_mut(&node).expect("live node") += 1;
                assign.entry(node).or_default().push(i);
            }
        }
        // Move securities off overloaded nodes onto underloaded ones.
        let fair = self.secs.len().div_ceil(live.len());
        let mut revoke: BTreeMap<NodeId, Vec<SecurityId>> = BTreeMap::new();
        for i in 0..self.secs.len() {
            let st = &self.secs[i];
            let (Some(owner), None) = (st.owner, st.target) else {
                continue;
            };
            if load.get(&owner).copied().unwrap_or(0) <= fair {
                continue;
            }
            let to = least_loaded(&load);
            if to == owner || load[&owner] <= load[&to] + 1 {
                continue;
            }
            *load.get_mut(&owner).expect("live") -= 1;
            *load.get_mut(&to).expect("live") += 1;
            self.secs[i].target = Some(to);
            revoke.entry(owner).or_default().push(SecurityId(i as u32));
        }
        if assign.is_empty() && revoke.is_empty() {
            return;
        }
        self.map_version += 1;
        let version = self.map_version;
        for (node, secs) in revoke {
            let n = secs.len();
            self.outgoing
                .entry(node)
                .or_default()
                .push(ToExecutor::Revoke {
                    map_version: version,
                    securities: secs.clone(),
                });
            self.log(
                now,
                LogKind::ShardMoved,
                format!("{n} securities moving off node {node}"),
            );
            for s in secs {
                self.try_finish_migration(s.0 as usize);
            }
        }
        for (node, secs) in assign {
            let n = secs.len();
            self.hand_over(node, &secs);
            self.log(
                now,
                LogKind::ShardMoved,
                format!("{n} securities assigned to node {node} (map v{version})"),
            );
        }
    }

    /// Makes `node` the owner of `secs`: it replays each one's completed history silently, then
    /// receives the commands not yet completed.
    fn hand_over(&mut self, node: NodeId, secs: &[usize]) {
        let securities = secs.iter().map(|i| SecurityId(*i as u32)).collect();
        let mut msgs = vec![ToExecutor::Assign {
            map_version: self.map_version,
            securities,
            replay: Vec::new(),
        }];
        let mut replay = Vec::new();
        let mut live = Vec::new();
        for &i in secs {
            let st = &mut self.secs[i];
            st.owner = Some(node);
            st.target = None;
            replay.extend_from_slice(&st.history[..st.completed]);
            live.extend_from_slice(&st.history[st.completed..]);
            st.sent = st.history.len();
        }
        // Replayed commands of different securities are independent: each book only sees its own,
        // in order. Live commands are sent in global sequence order.
        for chunk in replay.chunks(CHUNK) {
            msgs.push(ToExecutor::Assign {
                map_version: self.map_version,
                securities: Vec::new(),
                replay: chunk.to_vec(),
            });
        }
        self.outgoing.entry(node).or_default().extend(msgs);
        live.sort_by_key(|s| s.seq);
        for cmd in live {
            self.route(node, cmd);
        }
    }

    fn try_finish_migration(&mut self, i: usize) {
        let st = &self.secs[i];
        if let Some(target) = st.target {
            if st.completed == st.sent
                && self
                    .nodes
                    .get(&target)
                    .is_some_and(|n| n.status != NodeStatus::Down)
            {
                self.hand_over(target, &[i]);
            }
        }
    }

    /// Events from an executor (or the local engine), grouped by command in sequence order.
    pub fn executor_events(
        &mut self,
        node: NodeId,
        events: &[SeqEvent],
        now: Instant,
    ) -> anyhow::Result<()> {
        let mut start = 0;
        while start < events.len() {
            let seq = events[start].seq;
            let mut end = start;
            while end < events.len() && events[end].seq == seq {
                end += 1;
            }
            self.command_events(node, seq, &events[start..end], now)?;
            start = end;
        }
        Ok(())
    }

    fn command_events(
        &mut self,
        node: NodeId,
        seq: u64,
        group: &[SeqEvent],
        now: Instant,
    ) -> anyhow::Result<()> {
        let Some(meta) = self.inflight.get(seq) else {
            return Ok(()); // already completed: a duplicate from a former owner
        };
        let (security, session, order, record, received) = (
            meta.security,
            meta.session,
            meta.order,
            meta.record,
            meta.received,
        );
        let i = security.0 as usize;
        let st = &self.secs[i];
        let next = st.history.get(st.completed).map(|s| s.seq);
        if st.owner != Some(node) || next != Some(seq) || !group.last().is_some_and(|e| e.last) {
            tracing::debug!(
                node,
                seq,
                "dropping events not from the owner or out of order"
            );
            return Ok(());
        }
        let mut fill_index = 0u32;
        for ev in group {
            match ev.event {
                Event::Accepted { .. } if !ev.last => continue,
                Event::Fill(f) => {
                    self.persist.append_trade(seq, fill_index, &f)?;
                    fill_index += 1;
                    self.record_trade(&f, now);
                    let resting = if f.aggressor == Side::Buy {
                        (f.sell, f.sell_broker)
                    } else {
                        (f.buy, f.buy_broker)
                    };
                    // The resting order's broker hears of its fill on every broker session it
                    // has (gateways see only their own commands' events).
                    if let Some(list) = self.broker_sessions.get(&resting.1) {
                        for s in list {
                            self.out.reports.entry(*s).or_default().push(Report {
                                seq,
                                order: resting.0,
                                event: ev.event,
                                last: false,
                                passive: true,
                            });
                        }
                    }
                }
                Event::Rejected { .. } => self.counters.rejected += 1,
                Event::Cancelled { .. } => self.counters.cancelled += 1,
                _ => {}
            }
            apply_state(
                &mut self.orders,
                &mut self.totals,
                order,
                record,
                &ev.event,
                ev.last,
            );
            self.out.reports.entry(session).or_default().push(Report {
                seq,
                order,
                event: ev.event,
                last: ev.last,
                passive: false,
            });
        }
        self.inflight.remove(seq);
        let us = now.saturating_duration_since(received).as_micros() as u64;
        let _ = self.latency.record(us.max(1));
        self.secs[i].completed += 1;
        self.try_finish_migration(i);
        Ok(())
    }

    fn record_trade(&mut self, f: &Fill, now: Instant) {
        self.counters.fills += 1;
        if let Some(st) = self.secs.get_mut(f.security.0 as usize) {
            st.last_price = Some(f.price);
            st.volume += f.qty;
            if st.recent.len() == RECENT_PRICES {
                st.recent.pop_front();
            }
            st.recent.push_back(f.price);
        }
        // The monitor feed is sampled: at most a few hundred trades per flush.
        if self.out.trades.len() < 256 {
            self.out.trades.push(TradeTick {
                uptime_ms: self.uptime_ms(now),
                security: f.security,
                price: f.price,
                qty: f.qty,
                buy: f.buy,
                sell: f.sell,
            });
        }
    }

    // ------------------------------------------------------------------------------- queries

    /// The state of a broker's orders (`ids` empty: all of them). Other brokers' orders are
    /// never returned.
    pub fn query_orders(&self, broker: Option<BrokerId>, ids: &[OrderId]) -> Vec<OrderStatus> {
        let visible = |r: &OrderRecord| broker.is_none_or(|b| r.broker == b);
        let mut out: Vec<OrderStatus> = if ids.is_empty() {
            self.orders
                .records
                .iter()
                .filter(|r| visible(r))
                .map(|r| r.status.clone())
                .collect()
        } else {
            ids.iter()
                .filter_map(|id| self.orders.get(id))
                .filter(|r| visible(r))
                .map(|r| r.status.clone())
                .collect()
        };
        out.sort_by_key(|s| s.id);
        out
    }

    pub fn totals(&self) -> Vec<(SecurityId, Qty, Qty)> {
        self.totals
            .iter()
            .enumerate()
            .map(|(i, (b, a))| (SecurityId(i as u32), *b, *a))
            .collect()
    }

    /// Commands sequenced but not yet routed to any executor (no owner yet, or migrating).
    pub fn held(&self) -> usize {
        self.secs.iter().map(|s| s.history.len() - s.sent).sum()
    }

    /// Commands sequenced and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    fn uptime_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.started).as_millis() as u64
    }

    fn log(&mut self, now: Instant, kind: LogKind, text: String) {
        tracing::info!("{text}");
        self.out.log.push(LogEntry {
            uptime_ms: self.uptime_ms(now),
            kind,
            text,
        });
    }

    pub fn snapshot(&self, now: Instant) -> GridSnapshot {
        let nodes = self
            .nodes
            .iter()
            .map(|(id, n)| NodeInfo {
                id: *id,
                name: n.name.clone(),
                addr: n.addr.clone(),
                status: n.status,
                securities: self.secs.iter().filter(|s| s.owner == Some(*id)).count() as u32,
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
        let q = |p: f64| self.latency.value_at_quantile(p);
        let securities = self
            .gateway
            .securities()
            .iter()
            .map(|(id, code, reference)| {
                let st = &self.secs[id.0 as usize];
                let (bid_total, ask_total) = self.totals[id.0 as usize];
                SecurityView {
                    id,
                    code: code.to_string(),
                    reference_price: reference,
                    last_price: st.last_price,
                    volume: st.volume,
                    bid_total,
                    ask_total,
                    owner: st.owner,
                    bids: st.depth.0.clone(),
                    asks: st.depth.1.clone(),
                    recent_prices: st.recent.iter().copied().collect(),
                }
            })
            .collect();
        GridSnapshot {
            uptime_ms: self.uptime_ms(now),
            shard_map_version: self.map_version,
            nodes,
            counters: self.counters,
            orders_per_sec: self.rate,
            latency: LatencySummary {
                p50_us: q(0.5),
                p90_us: q(0.9),
                p99_us: q(0.99),
                p999_us: q(0.999),
                max_us: self.latency.max(),
            },
            securities,
        }
    }

    /// Depth for the local engine (local mode has no executor heartbeats).
    pub fn refresh_local_depth(&mut self) {
        if let Some(engine) = &self.local {
            for (i, st) in self.secs.iter_mut().enumerate() {
                st.depth = engine.depth(SecurityId(i as u32), 5);
            }
        }
    }
}

/// Updates order states and totals from one event of the command about `order` (whose record,
/// if it is a NEW, is at index `record`).
fn apply_state(
    orders: &mut OrderStates,
    totals: &mut [(Qty, Qty)],
    order: OrderId,
    record: Option<u32>,
    ev: &Event,
    last: bool,
) {
    let known = record.map(|r| (order, r));
    match *ev {
        Event::Fill(f) => {
            for id in [f.buy, f.sell] {
                if let Some(r) = orders.find(id, known) {
                    r.status.filled += f.qty;
                    if r.status.filled >= r.status.qty {
                        r.status.state = OrderState::Filled;
                    }
                }
            }
        }
        Event::Cancelled { id, .. } => {
            if let Some(r) = orders.find(id, known) {
                r.status.state = OrderState::Cancelled;
            }
        }
        Event::Rejected { id, .. } => {
            if let Some(r) = orders.find(id, known) {
                if r.status.state == OrderState::Pending && id == order {
                    r.status.state = OrderState::Rejected;
                }
            }
        }
        Event::Totals {
            security,
            bid_total,
            ask_total,
        } => {
            if let Some(t) = totals.get_mut(security.0 as usize) {
                *t = (bid_total, ask_total);
            }
        }
        Event::Accepted { .. } => {}
    }
    if let (true, Some(idx)) = (last, record) {
        if let Some(r) = orders.records.get_mut(idx as usize) {
            if r.status.state == OrderState::Pending {
                r.status.state = OrderState::Resting;
            }
        }
    }
}

fn least_loaded(load: &BTreeMap<NodeId, usize>) -> NodeId {
    *load
        .iter()
        .min_by_key(|(id, c)| (**c, **id))
        .expect("at least one live node")
        .0
}

fn pending_status(o: &matching::NewOrder) -> OrderStatus {
    OrderStatus {
        id: o.id,
        security: o.security,
        side: o.side,
        price: o.price,
        qty: o.qty,
        filled: 0,
        state: OrderState::Pending,
    }
}
