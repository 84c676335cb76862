//! The shard map and the routing state of every security: who owns it, what it was sent, what
//! came back; executors joining, failing and being replaced.
//!
//! Invariants:
//! - per security, `base` (a trusted book image, or the empty book) followed by
//!   `history[..completed]` is exactly what the owner's book has absorbed; commands reach the
//!   owner in sequence order; completion is a prefix;
//! - a security changes owner only when drained (migration: the owner has completed everything
//!   it was sent) or when its owner is declared down (failover); the new owner installs `base`,
//!   replays `history[..completed]` silently and then receives the rest live;
//! - the history is bounded: every `snapshot_every` commands (and on the core's timer) the
//!   owner is asked for an image, in its ordered queue, after the last command routed; the
//!   image is tagged with the seq of the last command the book applied, and once the core has
//!   checked it against the projection it becomes `base` and the history before it is dropped;
//! - messages to each executor go through one ordered queue (`outgoing`), released by the
//!   core's flush after the journal commit, so a `Revoke` never overtakes commands routed
//!   before it and nothing reaches an executor before it is durable.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use journal::BookSnapshot;
use matching::SecurityId;
use proto::{ExecutorStats, ImagePart, NodeStatus, Routed, ToExecutor, IMAGE_PART_ORDERS};

use super::pool::VecPool;

pub type NodeId = u32;

/// The pseudo-node that matches in-process in `--local` mode.
pub const LOCAL_NODE: NodeId = 0;

/// Commands of history a book keeps capacity for after an image, whatever its peak.
const HISTORY_KEEP: usize = 256;
/// Commands sent per frame when routing, replaying or re-sending history (keeps frames well
/// under the codec's size limit).
pub(crate) const CHUNK: usize = 20_000;
/// Room each batch of orders to an executor has from the start (a flush's share, commonly).
const ROUTED_PER_BATCH: usize = 4096;

pub(crate) struct SecState {
    pub owner: Option<NodeId>,
    /// Migration in progress: the owner drains, then `target` takes over.
    pub target: Option<NodeId>,
    /// The trusted image `history` continues from (`None`: the empty book before seq 1).
    pub base: Option<Arc<BookSnapshot>>,
    /// Whether `base` is in the latest durable checkpoint.
    pub base_durable: bool,
    /// Commands after `base`, in sequence order.
    pub history: Vec<Routed>,
    /// Prefix of `history` sent to the current owner.
    pub sent: usize,
    /// Prefix of `history` whose final event group has been received.
    pub completed: usize,
    /// An image was asked of the owner right after the command with this seq.
    pub asked: Option<u64>,
}

/// How an arriving image fits the security's state.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ImageFit {
    /// The image answers the open request and the book's history is complete up to it.
    Expected,
    /// From a former owner, or answering a request that no longer stands: dropped.
    Stale,
    /// From the owner, answering the open request, but not for the state asked: the executor
    /// is broken or lying.
    Wrong(String),
}

pub(crate) struct Node {
    pub name: String,
    pub addr: String,
    pub status: NodeStatus,
    pub last_heartbeat: Instant,
    pub stats: ExecutorStats,
    pub rate: f64,
    pub rate_mark: (Instant, u64),
    /// Securities this node was ever given: late events for them are legitimate leftovers of a
    /// migration or failover; events for any other security are forged.
    pub ever_owned: rustc_hash::FxHashSet<SecurityId>,
}

/// Something the shard map did that the monitor and the log should hear about.
pub(crate) enum ShardNews {
    Joined {
        node: NodeId,
        name: String,
        addr: String,
    },
    Lost {
        node: NodeId,
        name: String,
        moved: usize,
    },
    Moving {
        node: NodeId,
        count: usize,
    },
    Assigned {
        node: NodeId,
        count: usize,
        version: u64,
    },
}

pub(crate) struct Shards {
    pub secs: Vec<SecState>,
    pub nodes: BTreeMap<NodeId, Node>,
    next_node: NodeId,
    pub map_version: u64,
    local: bool,
    /// Messages to each executor, in the order they must arrive.
    pub outgoing: BTreeMap<NodeId, Vec<ToExecutor>>,
    /// Executors declared down: the shell closes their connections.
    pub disconnect: Vec<NodeId>,
    pub news: Vec<ShardNews>,
    /// Ask for an image once a security's history holds this many commands (0: never).
    pub snapshot_every: usize,
    /// Where order batches' vectors come from; the executors' writers give them back.
    pub routed_pool: VecPool<Routed>,
}

impl Shards {
    pub fn new(securities: usize, local: bool) -> Self {
        let secs = (0..securities)
            .map(|_| SecState {
                owner: local.then_some(LOCAL_NODE),
                target: None,
                base: None,
                base_durable: false,
                history: Vec::new(),
                sent: 0,
                completed: 0,
                asked: None,
            })
            .collect();
        Shards {
            secs,
            nodes: BTreeMap::new(),
            next_node: 1,
            map_version: 0,
            local,
            outgoing: BTreeMap::new(),
            disconnect: Vec::new(),
            news: Vec::new(),
            snapshot_every: 0,
            routed_pool: VecPool::new(ROUTED_PER_BATCH, super::HANDOVERS_KEPT),
        }
    }

    /// Appends a sequenced command to its security's history and sends it if the security has
    /// a settled owner.
    pub fn route(&mut self, routed: Routed) {
        let st = &mut self.secs[routed.security.0 as usize];
        st.history.push(routed);
        if let (Some(owner), None) = (st.owner, st.target) {
            st.sent += 1;
            Self::enqueue(&mut self.outgoing, &self.routed_pool, owner, routed);
            if self.snapshot_every > 0
                && st.asked.is_none()
                && st.sent == st.history.len()
                && st.history.len() >= self.snapshot_every
            {
                st.asked = Some(routed.seq);
                self.outgoing
                    .entry(owner)
                    .or_default()
                    .push(ToExecutor::Snapshot(vec![routed.security]));
            }
        }
    }

    /// Asks every settled owner for an image of each of its books that has commands since
    /// its last image (the core's timer). Returns how many were asked.
    pub fn request_images(&mut self) -> usize {
        let mut asks: BTreeMap<NodeId, Vec<SecurityId>> = BTreeMap::new();
        for (i, st) in self.secs.iter_mut().enumerate() {
            if let (Some(owner), None, None, Some(last)) =
                (st.owner, st.target, st.asked, st.history.last())
            {
                if st.sent == st.history.len() {
                    st.asked = Some(last.seq);
                    asks.entry(owner).or_default().push(SecurityId(i as u32));
                }
            }
        }
        let n = asks.values().map(Vec::len).sum();
        for (node, secs) in asks {
            self.outgoing
                .entry(node)
                .or_default()
                .push(ToExecutor::Snapshot(secs));
        }
        n
    }

    /// Whether an image of `sec` from `node`, taken after command `seq`, answers the open
    /// request for the state the manager has completed.
    pub fn image_fit(&self, node: NodeId, sec: SecurityId, seq: u64) -> ImageFit {
        let Some(st) = self.secs.get(sec.0 as usize) else {
            return ImageFit::Wrong(format!("image of unlisted security {}", sec.0));
        };
        let Some(asked) = st.asked else {
            return ImageFit::Stale;
        };
        if st.owner != Some(node) {
            return ImageFit::Stale;
        }
        // An answer to an older request of the same node (it owned the book before, lost it
        // to a migration or failover, and got it back): the book state is older than asked.
        // Never trusted, not a lie either. Seqs only grow, so a legitimate image is never
        // newer than the open request.
        if seq < asked {
            return ImageFit::Stale;
        }
        let done = st.completed.checked_sub(1).map(|k| st.history[k].seq);
        if seq != asked || done != Some(seq) {
            return ImageFit::Wrong(format!(
                "image of security {} after seq {seq}, but seq {asked} was asked and {done:?} is complete",
                sec.0
            ));
        }
        ImageFit::Expected
    }

    /// Makes a checked image the security's base and drops the history it covers.
    pub fn accept_image(&mut self, snap: BookSnapshot) {
        let st = &mut self.secs[snap.security.0 as usize];
        st.history.drain(..st.completed);
        // A book busy for a while (or waiting out a barrier) must not keep that peak's
        // capacity for the rest of the run: over a day every book has its busy moment.
        let keep = 2 * st.history.len().max(HISTORY_KEEP);
        if st.history.capacity() > 2 * keep {
            st.history.shrink_to(keep);
        }
        st.sent -= st.completed;
        st.completed = 0;
        st.base = Some(Arc::new(snap));
        st.base_durable = false;
        st.asked = None;
    }

    /// The first seq whose command a recovery must read: every security's base covers all its
    /// commands before its history's first (`next_seq` when every history is empty).
    pub fn resume_seq(&self, next_seq: u64) -> u64 {
        self.secs
            .iter()
            .filter_map(|st| st.history.first().map(|r| r.seq))
            .min()
            .unwrap_or(next_seq)
            .min(next_seq)
    }

    /// The highest seq through which every command is completed (its events taken) in every
    /// book: one below the oldest command some owner has still to complete.
    pub fn completed_through(&self, next_seq: u64) -> u64 {
        self.secs
            .iter()
            .filter_map(|st| st.history.get(st.completed).map(|r| r.seq))
            .min()
            .unwrap_or(next_seq)
            .min(next_seq)
            .saturating_sub(1)
    }

    /// Bases not yet in a durable checkpoint.
    pub fn fresh_bases(&self) -> Vec<Arc<BookSnapshot>> {
        self.fresh().cloned().collect()
    }

    /// Whether there is any [`Shards::fresh_bases`].
    pub fn has_fresh_bases(&self) -> bool {
        self.fresh().next().is_some()
    }

    fn fresh(&self) -> impl Iterator<Item = &Arc<BookSnapshot>> {
        self.secs
            .iter()
            .filter(|st| !st.base_durable)
            .filter_map(|st| st.base.as_ref())
    }

    /// The bases of `written` (securities and seqs) are durable now.
    pub fn bases_durable(&mut self, written: &[(SecurityId, u64)]) {
        for (sec, seq) in written {
            if let Some(st) = self.secs.get_mut(sec.0 as usize) {
                if st.base.as_ref().is_some_and(|b| b.seq == *seq) {
                    st.base_durable = true;
                }
            }
        }
    }

    /// Commands kept for failover, over all securities.
    pub fn history_len(&self) -> usize {
        self.secs.iter().map(|s| s.history.len()).sum()
    }

    /// Room for commands in the histories, over all securities.
    pub fn history_capacity(&self) -> usize {
        self.secs.iter().map(|s| s.history.capacity()).sum()
    }

    /// Queues one command for `node`, batching consecutive commands into one frame.
    fn enqueue(
        outgoing: &mut BTreeMap<NodeId, Vec<ToExecutor>>,
        pool: &VecPool<Routed>,
        node: NodeId,
        cmd: Routed,
    ) {
        let q = outgoing.entry(node).or_default();
        match q.last_mut() {
            Some(ToExecutor::Orders(batch)) if batch.len() < CHUNK => batch.push(cmd),
            _ => {
                let mut batch = pool.take();
                batch.push(cmd);
                q.push(ToExecutor::Orders(batch));
            }
        }
    }

    /// The command the owner of `sec` must complete next.
    pub fn next_expected(&self, sec: SecurityId) -> Option<&Routed> {
        let st = self.secs.get(sec.0 as usize)?;
        st.history.get(st.completed)
    }

    /// Whether `node` was ever given `sec`.
    pub fn ever_owned(&self, node: NodeId, sec: SecurityId) -> bool {
        node == LOCAL_NODE
            || self
                .nodes
                .get(&node)
                .is_some_and(|n| n.ever_owned.contains(&sec))
    }

    pub fn owner(&self, sec: SecurityId) -> Option<NodeId> {
        self.secs.get(sec.0 as usize).and_then(|s| s.owner)
    }

    /// The owner completed the next command of `sec`.
    pub fn complete(&mut self, sec: SecurityId) {
        let i = sec.0 as usize;
        self.secs[i].completed += 1;
        self.try_finish_migration(i);
    }

    /// Commands sequenced but not yet routed to any executor (no owner yet, or migrating).
    pub fn held(&self) -> usize {
        self.secs.iter().map(|s| s.history.len() - s.sent).sum()
    }

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
                ever_owned: Default::default(),
            },
        );
        self.news.push(ShardNews::Joined {
            node: id,
            name: name.to_string(),
            addr: addr.to_string(),
        });
        self.rebalance();
        id
    }

    /// An executor's connection closed, its heartbeat timed out, or it sent events that
    /// contradict what the manager knows.
    pub fn executor_lost(&mut self, node: NodeId) {
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
                st.asked = None;
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
                st.asked = None;
                st.sent = st.completed;
                moved += 1;
            }
        }
        self.outgoing.remove(&node);
        self.disconnect.push(node);
        for i in drained {
            self.try_finish_migration(i);
        }
        self.news.push(ShardNews::Lost { node, name, moved });
        self.rebalance();
    }

    pub fn live_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.status != NodeStatus::Down)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Gives every unowned security an owner and evens out the load: the shard map balances
    /// security counts over the live executors.
    fn rebalance(&mut self) {
        if self.local {
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
            self.news.push(ShardNews::Moving { node, count: n });
            for s in secs {
                self.try_finish_migration(s.0 as usize);
            }
        }
        for (node, secs) in assign {
            let n = secs.len();
            self.hand_over(node, &secs);
            self.news.push(ShardNews::Assigned {
                node,
                count: n,
                version,
            });
        }
    }

    /// Makes `node` the owner of `secs`: it installs each one's base image, replays the
    /// completed history after it silently, then receives the commands not yet completed.
    fn hand_over(&mut self, node: NodeId, secs: &[usize]) {
        let securities = secs.iter().map(|i| SecurityId(*i as u32)).collect();
        let mut msgs = vec![ToExecutor::Assign {
            map_version: self.map_version,
            securities,
        }];
        let mut replay = Vec::new();
        let mut live = Vec::new();
        if let Some(n) = self.nodes.get_mut(&node) {
            n.ever_owned
                .extend(secs.iter().map(|i| SecurityId(*i as u32)));
        }
        for &i in secs {
            let st = &mut self.secs[i];
            st.owner = Some(node);
            st.target = None;
            st.asked = None;
            if let Some(base) = &st.base {
                msgs.extend(
                    ImagePart::split(&base.image(), base.seq, IMAGE_PART_ORDERS)
                        .into_iter()
                        .map(ToExecutor::Image),
                );
            }
            replay.extend_from_slice(&st.history[..st.completed]);
            live.extend_from_slice(&st.history[st.completed..]);
            st.sent = st.history.len();
        }
        // Replayed commands of different securities are independent: each book only sees its
        // own, in order. Live commands are sent in global sequence order.
        for chunk in replay.chunks(CHUNK) {
            msgs.push(ToExecutor::Replay(chunk.to_vec()));
        }
        self.outgoing.entry(node).or_default().extend(msgs);
        live.sort_by_key(|r| (r.seq, r.security));
        for cmd in live {
            Self::enqueue(&mut self.outgoing, &self.routed_pool, node, cmd);
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

    pub fn heartbeat(&mut self, node: NodeId, stats: ExecutorStats, now: Instant) -> bool {
        let Some(n) = self.nodes.get_mut(&node) else {
            return false;
        };
        if n.status == NodeStatus::Down {
            return false;
        }
        n.status = NodeStatus::Up;
        n.last_heartbeat = now;
        let dt = now.saturating_duration_since(n.rate_mark.0).as_secs_f64();
        if dt >= 0.5 {
            n.rate = (stats.orders_handled.saturating_sub(n.rate_mark.1)) as f64 / dt;
            n.rate_mark = (now, stats.orders_handled);
        }
        n.stats = stats;
        true
    }

    /// Marks silent executors suspect, and returns those silent for longer than `timeout`.
    pub fn silent(
        &mut self,
        now: Instant,
        suspect_after: std::time::Duration,
        timeout: std::time::Duration,
    ) -> Vec<NodeId> {
        let mut lost = Vec::new();
        for (id, n) in &mut self.nodes {
            if n.status == NodeStatus::Down {
                continue;
            }
            let age = now.saturating_duration_since(n.last_heartbeat);
            if age > timeout {
                lost.push(*id);
            } else if age > suspect_after {
                n.status = NodeStatus::Suspect;
            }
        }
        lost
    }
}

fn least_loaded(load: &BTreeMap<NodeId, usize>) -> NodeId {
    *load
        .iter()
        .min_by_key(|(id, c)| (**c, **id))
        .expect("at least one live node")
        .0
}
