//! # executor: one grid PC's matching, as a library
//!
//! [`ExecutorCore`] is the executor's state machine, sans-I/O: the manager's messages in, event
//! groups and heartbeat statistics out. The `executor` binary drives it over QUIC; the manager
//! drives it in-process for `--local` (the no-grid baseline); the core simulation test drives
//! it directly. One implementation, so the three cannot drift apart.
//!
//! Must not: sequence, validate or journal (the manager did all that before routing), keep a
//! book across reconnections (the manager replays into a fresh core), or do I/O.

use matching::{Engine, Event, MarketRules, SecurityId, SecurityTable, MAX_ORDER_QTY};
use proto::{
    BookDepth, EventGroup, ExecutorStats, GroupEvents, ImageAssembly, ImagePart, Routed,
    ToExecutor, IMAGE_PART_ORDERS,
};
use rustc_hash::FxHashSet;

/// Most events in one [`EventGroup`]: a command with more (one order sweeping a deep book)
/// is reported in several groups, so no frame ever nears the frame limit.
pub const MAX_GROUP_EVENTS: usize = 4096;

/// What one message did, for logging by the shell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub assigned: usize,
    pub revoked: usize,
    pub replayed: usize,
    pub processed: usize,
    pub map_version: Option<u64>,
    /// Images a `Snapshot` asked for, to send after the events (in this order).
    pub images: Vec<ImagePart>,
    /// A book installed from an image (its security), or why an image was refused.
    pub installed: Option<Result<SecurityId, String>>,
}

/// The executor's state: one engine for every owned security.
pub struct ExecutorCore {
    engine: Engine,
    stats: ExecutorStats,
    /// Securities whose book changed since the last heartbeat (their depth is reported).
    touched: FxHashSet<SecurityId>,
    scratch: Vec<Event>,
    /// Per security: the seq of the last command its book applied (0: none), so an image
    /// says exactly which book state it is.
    last_seq: Vec<u64>,
    /// An image being received in parts.
    incoming: ImageAssembly,
}

impl ExecutorCore {
    pub fn new(rules: MarketRules, securities: &SecurityTable) -> Self {
        ExecutorCore {
            engine: Engine::new(rules, securities),
            stats: ExecutorStats::default(),
            touched: FxHashSet::default(),
            scratch: Vec::with_capacity(64),
            last_seq: vec![0; securities.len()],
            incoming: ImageAssembly::default(),
        }
    }

    /// The seq of the last command `sec`'s book applied (0: none, or not listed).
    pub fn last_seq(&self, sec: SecurityId) -> u64 {
        self.last_seq.get(sec.0 as usize).copied().unwrap_or(0)
    }

    fn applied(&mut self, r: &Routed) {
        if let Some(s) = self.last_seq.get_mut(r.security.0 as usize) {
            *s = r.seq;
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Applies one manager message, appending the events to report (for `Orders`) to `out`.
    pub fn apply(&mut self, msg: ToExecutor, out: &mut Vec<EventGroup>) -> Applied {
        let mut done = Applied::default();
        match msg {
            ToExecutor::Assign {
                map_version,
                securities,
            } => {
                for s in &securities {
                    self.engine.open_book(*s);
                    self.touched.insert(*s);
                    if let Some(x) = self.last_seq.get_mut(s.0 as usize) {
                        *x = 0;
                    }
                }
                done.assigned = securities.len();
                done.map_version = Some(map_version);
            }
            ToExecutor::Replay(cmds) => {
                // Rebuild silently: these commands' events were delivered already.
                for r in &cmds {
                    self.scratch.clear();
                    self.engine
                        .process_for(r.security, &r.command, &mut self.scratch);
                    self.applied(r);
                }
                done.replayed = cmds.len();
            }
            ToExecutor::Revoke {
                map_version,
                securities,
            } => {
                for s in &securities {
                    self.engine.close_book(*s);
                    self.touched.remove(s);
                }
                done.revoked = securities.len();
                done.map_version = Some(map_version);
            }
            ToExecutor::Orders(cmds) => {
                self.process(&cmds, out);
                done.processed = cmds.len();
            }
            ToExecutor::Snapshot(securities) => {
                for s in securities {
                    if let Some(image) = self.engine.export_book(s) {
                        let seq = self.last_seq(s);
                        done.images
                            .extend(ImagePart::split(&image, seq, IMAGE_PART_ORDERS));
                    }
                }
            }
            ToExecutor::Image(part) => {
                let (security, seq) = (part.security, part.seq);
                // No book holds more orders than shares can be split into lots of one.
                let max = usize::try_from(MAX_ORDER_QTY).unwrap_or(usize::MAX);
                done.installed = match self.incoming.push(part, max) {
                    Ok(None) => None,
                    Ok(Some((seq, image))) => Some(match self.engine.import_book(&image) {
                        Ok(()) => {
                            if let Some(x) = self.last_seq.get_mut(security.0 as usize) {
                                *x = seq;
                            }
                            self.touched.insert(security);
                            Ok(security)
                        }
                        Err(e) => Err(format!(
                            "image of security {} at seq {seq}: {e}",
                            security.0
                        )),
                    }),
                    Err(e) => Some(Err(format!(
                        "image part of security {} at seq {seq}: {e}",
                        security.0
                    ))),
                };
            }
        }
        done
    }

    /// Matches routed commands in order, appending each one's events as groups.
    pub fn process(&mut self, cmds: &[Routed], out: &mut Vec<EventGroup>) {
        for r in cmds {
            self.scratch.clear();
            self.engine
                .process_for(r.security, &r.command, &mut self.scratch);
            self.applied(r);
            self.touched.insert(r.security);
            // The manager acknowledged acceptance already.
            let events: GroupEvents = self
                .scratch
                .iter()
                .filter(|e| !matches!(e, Event::Accepted { .. }))
                .copied()
                .collect();
            push_groups(r, events, out);
        }
        self.stats.orders_handled += cmds.len() as u64;
    }

    /// Adds engine time to the statistics (the shell measures it).
    pub fn add_busy_micros(&mut self, micros: u64) {
        self.stats.busy_micros += micros;
    }

    /// Statistics for a heartbeat, with the depth of the books touched since the last one.
    pub fn heartbeat(&mut self, depth: usize, queue_depth: usize) -> ExecutorStats {
        let mut stats = self.stats.clone();
        stats.queue_depth = queue_depth.min(u32::MAX as usize) as u32;
        let mut touched: Vec<SecurityId> = self.touched.drain().collect();
        touched.sort();
        stats.books = touched
            .into_iter()
            .filter(|s| self.engine.has_book(*s))
            .map(|security| {
                let (bids, asks) = self.engine.depth(security, depth);
                BookDepth {
                    security,
                    bids,
                    asks,
                    indicative: self.engine.indicative(security),
                }
            })
            .collect();
        stats
    }
}

/// Splits one command's events into groups of at most [`MAX_GROUP_EVENTS`]; a command with no
/// event still yields one (empty, final) group, which marks it complete.
fn push_groups(r: &Routed, mut events: GroupEvents, out: &mut Vec<EventGroup>) {
    if events.len() <= MAX_GROUP_EVENTS {
        out.push(EventGroup {
            seq: r.seq,
            security: r.security,
            events,
            last: true,
        });
        return;
    }
    let mut rest = events.split_off(MAX_GROUP_EVENTS);
    out.push(EventGroup {
        seq: r.seq,
        security: r.security,
        events,
        last: false,
    });
    while !rest.is_empty() {
        let tail = if rest.len() > MAX_GROUP_EVENTS {
            rest.split_off(MAX_GROUP_EVENTS)
        } else {
            GroupEvents::new()
        };
        out.push(EventGroup {
            seq: r.seq,
            security: r.security,
            events: rest,
            last: tail.is_empty(),
        });
        rest = tail;
    }
}

/// Cuts a list of groups into frames of at most about `max_events` events each, never
/// splitting a group.
pub fn frames(groups: Vec<EventGroup>, max_events: usize) -> Vec<Vec<EventGroup>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut n = 0;
    for g in groups {
        if n > 0 && n + g.events.len() > max_events {
            out.push(std::mem::take(&mut cur));
            n = 0;
        }
        n += g.events.len().max(1);
        cur.push(g);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use matching::{
        BrokerId, Command, NewOrder, OrderId, OrderType, SecurityTable, Side, MAX_ORDER_QTY,
    };

    fn listing() -> SecurityTable {
        SecurityTable::parse_csv("security,reference_price\nAAA,10000\n").unwrap()
    }

    fn order(id: u64, side: Side, kind: OrderType, price: i64, qty: u64) -> Routed {
        Routed {
            seq: id,
            security: SecurityId(0),
            command: Command::New(NewOrder {
                id: OrderId(id),
                broker: BrokerId((id % 2) as u32),
                security: SecurityId(0),
                side,
                kind,
                price,
                qty,
            }),
        }
    }

    /// An executor core (no price rules) that owns security 0, and its output vector.
    fn assigned_core() -> (ExecutorCore, Vec<EventGroup>) {
        let mut core = ExecutorCore::new(MarketRules::none(), &listing());
        let mut out = Vec::new();
        core.apply(
            ToExecutor::Assign {
                map_version: 1,
                securities: vec![SecurityId(0)],
            },
            &mut out,
        );
        (core, out)
    }

    #[test]
    fn a_deep_sweep_is_split_into_bounded_groups_in_order() {
        let (mut core, mut out) = assigned_core();
        let n = 3 * MAX_GROUP_EVENTS as u64 + 17;
        let resting: Vec<Routed> = (1..=n)
            .map(|i| order(i, Side::Sell, OrderType::Limit, 10_000, 1))
            .collect();
        core.apply(ToExecutor::Orders(resting), &mut out);
        out.clear();
        core.apply(
            ToExecutor::Orders(vec![order(
                n + 1,
                Side::Buy,
                OrderType::Market,
                0,
                MAX_ORDER_QTY,
            )]),
            &mut out,
        );
        assert!(out.len() > 1, "split into several groups");
        assert!(out.iter().all(|g| g.events.len() <= MAX_GROUP_EVENTS));
        assert!(out.iter().all(|g| g.seq == n + 1));
        let lasts: Vec<bool> = out.iter().map(|g| g.last).collect();
        assert_eq!(lasts.iter().filter(|l| **l).count(), 1);
        assert_eq!(lasts.last(), Some(&true));
        let fills = out
            .iter()
            .flat_map(|g| &g.events)
            .filter(|e| matches!(e, Event::Fill(_)))
            .count() as u64;
        assert_eq!(fills, n, "every resting order filled once, none lost");
        let frames = frames(out, 2 * MAX_GROUP_EVENTS);
        assert!(frames.len() >= 2);
        assert!(frames
            .iter()
            .all(|f| f.iter().map(|g| g.events.len()).sum::<usize>() <= 2 * MAX_GROUP_EVENTS));
    }

    #[test]
    fn the_common_groups_hold_their_events_inline() {
        let (mut core, mut out) = assigned_core();
        let cancel = Routed {
            seq: 4,
            security: SecurityId(0),
            command: Command::Cancel(matching::CancelOrder {
                id: OrderId(2),
                broker: BrokerId(0),
                security: SecurityId(0),
            }),
        };
        out.clear();
        core.apply(
            ToExecutor::Orders(vec![
                // Each rests: [Rested, Totals].
                order(1, Side::Sell, OrderType::Limit, 10_000, 5),
                order(2, Side::Sell, OrderType::Limit, 10_100, 5),
                // Takes all of 1, the rest rests: [Fill, Rested, Totals].
                order(3, Side::Buy, OrderType::Limit, 10_000, 7),
                // [Cancelled, Totals].
                cancel,
            ]),
            &mut out,
        );
        let sizes: Vec<usize> = out.iter().map(|g| g.events.len()).collect();
        assert_eq!(sizes, [2, 2, 3, 2]);
        for g in &out {
            assert!(matches!(g.events.last(), Some(Event::Totals { .. })));
            assert!(!g.events.spilled(), "seq {}: {:?}", g.seq, g.events);
        }
    }
}
