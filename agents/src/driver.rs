//! The lockstep driver: a pure state machine that runs a population over trading days.
//!
//! The shell (a local exchange, or later the grid with the feed and broker sessions) asks
//! [`Lockstep::poll`] what to do and reports back:
//!
//! ```text
//! loop {
//!     match driver.poll() {
//!         Next::Phase { phase, .. }  => enter the phase at the exchange (or wait for the feed to
//!                                       announce it), pass its events to on_event(None, ..),
//!                                       then phase_done()
//!         Next::Decide { .. }        => build the view, submissions = decide(&view)?, submit
//!                                       them in order; for each: on_event(Some(token), ..) per
//!                                       event, complete(token) when final
//!         Next::Wait { .. }          => wait for reports
//!         Next::Done                 => stop
//!     }
//! }
//! ```
//!
//! Lockstep: at each step every agent (in index order) decides from the view as of the end of
//! the previous step; the step's commands go out in a fixed order (delivery time = decision
//! time + the agent's latency, then agent index, then the agent's own order); a command whose
//! latency carries it past the step's end is held for the step it arrives in; the step ends
//! when every command sent in it is final. Every agent's random generator is seeded from the
//! population seed and its index. So the same population and seed give the same commands and,
//! through a deterministic exchange, the same trades, however the exchange is spread.
//!
//! Real-time mode differs in one point: [`Lockstep::poll`] never waits for outstanding
//! commands, so the shell paces the steps by the clock and agents see whatever has arrived.

use std::collections::BTreeMap;

use matching::{
    BrokerId, Command, Event, MarketRules, OrderId, Phase, SecurityId, SecurityTable, Timestamp,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;

use crate::account::Account;
use crate::agent::{Agent, AgentKind, Ctx, Signals};
use crate::config::{ConfigError, Mode, Population};
use crate::fundamental::Fundamental;
use crate::kinds::market_maker::MarketMaker;
use crate::kinds::momentum::MomentumAgent;
use crate::kinds::noise::NoiseAgent;
use crate::kinds::random::RandomAgent;
use crate::kinds::value::ValueAgent;
use crate::schedule::DayClock;
use crate::view::MarketView;

/// What the shell must do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Enter `phase` (it opens `step` of `day`; `step == steps_per_day` is the close), then
    /// call [`Lockstep::phase_done`].
    Phase {
        phase: Phase,
        day: u32,
        step: u32,
        time: Timestamp,
    },
    /// Build the view for this step and call [`Lockstep::decide`].
    Decide {
        day: u32,
        step: u32,
        time: Timestamp,
        phase: Phase,
    },
    /// Commands of the step are not final yet.
    Wait { outstanding: usize },
    /// Every day has been traded.
    Done,
}

/// One command to submit, in order. `token` identifies it in [`Lockstep::on_event`] and
/// [`Lockstep::complete`] (over the grid: the client reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Submission {
    pub token: u64,
    pub agent: u32,
    /// Exchange time at which it reaches the exchange (decision time + the agent's latency).
    pub at: Timestamp,
    pub command: Command,
}

/// The shell called the driver out of turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    #[error("decide called while the driver waits for {0}")]
    NotDeciding(&'static str),
    #[error("phase_done called while no phase change is pending")]
    NoPhasePending,
    #[error("the view is of day {view_day} step {view_step} ({view_phase:?}), the driver is at day {day} step {step} ({phase:?})")]
    StaleView {
        view_day: u32,
        view_step: u32,
        view_phase: Phase,
        day: u32,
        step: u32,
        phase: Phase,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    StepStart,
    AwaitPhase(Phase),
    AwaitDecide,
    AwaitFinal,
    AwaitClose,
    Done,
}

/// One agent with everything private to it.
struct Slot {
    agent: Box<dyn Agent>,
    kind: AgentKind,
    rng: ChaCha8Rng,
    account: Account,
    broker: BrokerId,
    latency_ns: i64,
}

/// A read-only look at one agent, for reports and tests.
#[derive(Clone, Copy)]
pub struct AgentInfo<'a> {
    pub index: u32,
    pub kind: AgentKind,
    pub broker: BrokerId,
    pub security: Option<SecurityId>,
    pub account: &'a Account,
}

/// Counters of the driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Commands handed to the shell.
    pub submitted: u64,
    /// Steps decided.
    pub steps: u64,
    /// Commands decided but not yet due (latency beyond the step) right now.
    pub held: u64,
}

/// The lockstep state machine.
pub struct Lockstep {
    clock: DayClock,
    mode: Mode,
    use_amend: bool,
    rules: MarketRules,
    slots: Vec<Slot>,
    fundamental: Fundamental,
    /// Live order id -> agent index.
    owners: FxHashMap<OrderId, u32>,
    next_id: u64,
    /// Decided commands by (delivery time, agent, decision sequence).
    held: BTreeMap<(Timestamp, u32, u64), Command>,
    decision_seq: u64,
    /// Submitted, not yet final: token -> (agent, command).
    outstanding: FxHashMap<u64, (u32, Command)>,
    next_token: u64,
    day: u32,
    step: u32,
    stage: Stage,
    /// The exchange's phase as far as the driver knows (a stream starts continuous).
    phase: Phase,
    stats: DriverStats,
    scratch: Vec<Command>,
}

impl Lockstep {
    /// Builds the population over `listing`. Order ids start at `first_order_id` (over the
    /// grid: above the manager's highest used id); agent `i` trades as `BrokerId(i)` until
    /// [`Lockstep::set_broker`] says otherwise.
    pub fn new(
        pop: &Population,
        listing: &SecurityTable,
        rules: MarketRules,
        first_order_id: u64,
    ) -> Result<Lockstep, ConfigError> {
        pop.validate()?;
        let clock = pop.clock()?;
        let universe = pop.universe(listing)?;
        let means: Vec<f64> = universe
            .iter()
            .map(|&id| listing.reference(id).unwrap_or(1) as f64)
            .collect();
        let step_minutes = clock.step_ns() as f64 / 60e9;
        let fundamental = Fundamental::new(pop.fundamental.clone(), means, pop.seed, step_minutes);
        let mut slots = Vec::new();
        for (kind, count, latency_us) in pop.kinds() {
            for j in 0..count as usize {
                let index = slots.len();
                let mut rng = ChaCha8Rng::seed_from_u64(pop.seed);
                rng.set_stream(index as u64);
                let fund_index = j % universe.len();
                let sec = universe[fund_index];
                let agent: Box<dyn Agent> = match kind {
                    AgentKind::Noise => Box::new(NoiseAgent::new(pop.noise.clone(), sec)),
                    AgentKind::Value => {
                        Box::new(ValueAgent::new(pop.value.clone(), sec, fund_index))
                    }
                    AgentKind::Momentum => Box::new(MomentumAgent::new(pop.momentum.clone(), sec)),
                    AgentKind::MarketMaker => {
                        Box::new(MarketMaker::new(pop.market_maker.clone(), sec))
                    }
                    AgentKind::Random => Box::new(RandomAgent::new(
                        pop.random.clone(),
                        universe.clone(),
                        &mut rng,
                    )),
                };
                slots.push(Slot {
                    agent,
                    kind,
                    rng,
                    account: Account::new(i128::from(pop.starting_cash)),
                    broker: BrokerId(index as u32),
                    latency_ns: (latency_us as i64).saturating_mul(1_000),
                });
            }
        }
        Ok(Lockstep {
            clock,
            mode: pop.mode,
            use_amend: pop.use_amend,
            rules,
            slots,
            fundamental,
            owners: FxHashMap::default(),
            next_id: first_order_id.max(1),
            held: BTreeMap::new(),
            decision_seq: 0,
            outstanding: FxHashMap::default(),
            next_token: 0,
            day: 0,
            step: 0,
            stage: Stage::StepStart,
            phase: Phase::Continuous,
            stats: DriverStats::default(),
            scratch: Vec::new(),
        })
    }

    /// Makes agent `index` trade as `broker` (several agents may share a broker session).
    pub fn set_broker(&mut self, index: u32, broker: BrokerId) {
        if let Some(s) = self.slots.get_mut(index as usize) {
            s.broker = broker;
        }
    }

    pub fn clock(&self) -> &DayClock {
        &self.clock
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn stats(&self) -> DriverStats {
        DriverStats {
            held: self.held.len() as u64,
            ..self.stats
        }
    }

    pub fn fundamental(&self) -> &Fundamental {
        &self.fundamental
    }

    /// Number of agents.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The agents, in index order.
    pub fn agents(&self) -> impl Iterator<Item = AgentInfo<'_>> {
        self.slots.iter().enumerate().map(|(i, s)| AgentInfo {
            index: i as u32,
            kind: s.kind,
            broker: s.broker,
            security: s.agent.security(),
            account: &s.account,
        })
    }

    /// Commands submitted and not yet final.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// The agent that owns live order `id`.
    pub fn owner(&self, id: OrderId) -> Option<u32> {
        self.owners.get(&id).copied()
    }

    /// What to do next.
    pub fn poll(&mut self) -> Next {
        loop {
            match self.stage {
                Stage::StepStart => {
                    let phase = self.clock.phase(self.step);
                    self.stage = if phase != self.phase {
                        Stage::AwaitPhase(phase)
                    } else {
                        Stage::AwaitDecide
                    };
                }
                Stage::AwaitPhase(phase) => {
                    return Next::Phase {
                        phase,
                        day: self.day,
                        step: self.step,
                        time: self.clock.time(self.day, self.step),
                    }
                }
                Stage::AwaitClose => {
                    return Next::Phase {
                        phase: Phase::Closed,
                        day: self.day,
                        step: self.clock.steps_per_day(),
                        time: self.clock.close_time(self.day),
                    }
                }
                Stage::AwaitDecide => {
                    return Next::Decide {
                        day: self.day,
                        step: self.step,
                        time: self.clock.time(self.day, self.step),
                        phase: self.phase,
                    }
                }
                Stage::AwaitFinal => {
                    if self.mode == Mode::Lockstep && !self.outstanding.is_empty() {
                        return Next::Wait {
                            outstanding: self.outstanding.len(),
                        };
                    }
                    self.step += 1;
                    self.stage = if self.step == self.clock.steps_per_day() {
                        Stage::AwaitClose
                    } else {
                        Stage::StepStart
                    };
                }
                Stage::Done => return Next::Done,
            }
        }
    }

    /// The phase asked for by [`Next::Phase`] is in force (its events delivered).
    pub fn phase_done(&mut self) -> Result<(), DriverError> {
        match self.stage {
            Stage::AwaitPhase(p) => {
                self.phase = p;
                self.stage = Stage::AwaitDecide;
            }
            Stage::AwaitClose => {
                self.phase = Phase::Closed;
                self.day += 1;
                self.step = 0;
                self.stage = if self.day == self.clock.days() {
                    Stage::Done
                } else {
                    Stage::StepStart
                };
            }
            _ => return Err(DriverError::NoPhasePending),
        }
        Ok(())
    }

    /// Every agent decides from `view`; returns the commands due in this step, in submission
    /// order.
    pub fn decide(&mut self, view: &MarketView) -> Result<Vec<Submission>, DriverError> {
        match self.stage {
            Stage::AwaitDecide => {}
            Stage::AwaitFinal => return Err(DriverError::NotDeciding("final reports")),
            Stage::Done => return Err(DriverError::NotDeciding("nothing: the run is over")),
            _ => return Err(DriverError::NotDeciding("a phase change")),
        }
        let now = self.clock.time(self.day, self.step);
        if (view.day, view.step, view.phase, view.time) != (self.day, self.step, self.phase, now) {
            return Err(DriverError::StaleView {
                view_day: view.day,
                view_step: view.step,
                view_phase: view.phase,
                day: self.day,
                step: self.step,
                phase: self.phase,
            });
        }
        self.fundamental.step();
        let signals = Signals {
            fundamental: &self.fundamental,
        };
        for (i, slot) in self.slots.iter_mut().enumerate() {
            self.scratch.clear();
            let mut ctx = Ctx::new(
                view,
                &slot.account,
                &self.rules,
                signals,
                &mut slot.rng,
                slot.broker,
                &mut self.next_id,
                &mut self.scratch,
            )
            .replace_amends(!self.use_amend);
            slot.agent.decide(&mut ctx);
            let due = now.saturating_add(slot.latency_ns);
            for cmd in self.scratch.drain(..) {
                slot.account.on_sent(&cmd);
                if let Command::New(o) = cmd {
                    self.owners.insert(o.id, i as u32);
                }
                self.held.insert((due, i as u32, self.decision_seq), cmd);
                self.decision_seq += 1;
            }
        }
        let step_end = self.clock.time(self.day, self.step + 1);
        let mut out = Vec::new();
        while let Some(entry) = self.held.first_entry() {
            if entry.key().0 >= step_end {
                break;
            }
            let ((at, agent, _), command) = entry.remove_entry();
            let token = self.next_token;
            self.next_token += 1;
            self.outstanding.insert(token, (agent, command));
            out.push(Submission {
                token,
                agent,
                at,
                command,
            });
        }
        self.stats.submitted += out.len() as u64;
        self.stats.steps += 1;
        self.stage = Stage::AwaitFinal;
        Ok(out)
    }

    /// One event for the agents' own reports. `token`: the submission it answers (`None` for
    /// events of a phase change, or a passive fill reported apart from its command). Deliver
    /// every engine event once; market-wide events are ignored here.
    pub fn on_event(&mut self, token: Option<u64>, event: &Event) {
        if let Event::Rejected { id, reason } = *event {
            if let Some(&(agent, cmd)) = token.and_then(|t| self.outstanding.get(&t)) {
                self.slots[agent as usize].account.on_rejected(&cmd, reason);
                if matches!(cmd, Command::New(o) if o.id == id) {
                    self.owners.remove(&id);
                }
            }
            return;
        }
        let ids: [Option<OrderId>; 2] = match *event {
            Event::Fill(f) => [Some(f.buy), Some(f.sell)],
            Event::Rested { id, .. } | Event::Amended { id, .. } | Event::Cancelled { id, .. } => {
                [Some(id), None]
            }
            _ => return,
        };
        let owners: Vec<u32> = {
            let mut v: Vec<u32> = ids
                .iter()
                .flatten()
                .filter_map(|id| self.owners.get(id).copied())
                .collect();
            v.dedup();
            v
        };
        for agent in owners {
            let owners = &self.owners;
            self.slots[agent as usize]
                .account
                .on_event(event, |id| owners.get(&id) == Some(&agent));
        }
        for id in ids.into_iter().flatten() {
            if let Some(&agent) = self.owners.get(&id) {
                if self.slots[agent as usize].account.order(id).is_none() {
                    self.owners.remove(&id);
                }
            }
        }
    }

    /// Submission `token` is final (every event of it delivered).
    pub fn complete(&mut self, token: u64) {
        self.outstanding.remove(&token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pop(extra: &str) -> Population {
        Population::from_toml(&format!(
            "seed = 5\nsteps_per_day = 23\nsecurities = [\"AAA\"]\n{extra}"
        ))
        .unwrap()
    }

    fn driver(extra: &str) -> Lockstep {
        Lockstep::new(
            &pop(extra),
            &SecurityTable::synthetic(3).unwrap(),
            MarketRules::hose(),
            1,
        )
        .unwrap()
    }

    /// An empty book's view at the driver's current step.
    fn empty_view(d: &mut Lockstep) -> MarketView {
        let mut t = crate::tracker::MarketTracker::new(
            &SecurityTable::synthetic(3).unwrap(),
            &[SecurityId(0)],
            MarketRules::hose(),
            5,
            d.clock().steps_per_day(),
        );
        if let Next::Decide {
            day,
            step,
            time,
            phase,
        } = d.poll()
        {
            t.begin_step(day, step, time, phase);
        }
        t.view().clone()
    }

    /// Enters phases until the driver asks for a decision.
    fn to_decision(d: &mut Lockstep) -> MarketView {
        while let Next::Phase { .. } = d.poll() {
            d.phase_done().unwrap();
        }
        empty_view(d)
    }

    #[test]
    fn a_view_of_another_step_is_refused() {
        let mut d = driver("[noise]\ncount = 1\n");
        let mut view = to_decision(&mut d);
        view.step += 1;
        assert!(matches!(
            d.decide(&view),
            Err(DriverError::StaleView { .. })
        ));
        view.step -= 1;
        view.phase = Phase::Continuous;
        assert!(matches!(
            d.decide(&view),
            Err(DriverError::StaleView { .. })
        ));
    }

    #[test]
    fn walks_the_day_phase_by_phase_and_refuses_calls_out_of_turn() {
        let mut d = driver("[noise]\ncount = 1\nactivity = 0.0\n");
        let mut seen = Vec::new();
        assert_eq!(d.phase_done(), Err(DriverError::NoPhasePending));
        let mut last_view = None;
        loop {
            match d.poll() {
                Next::Phase { phase, step, .. } => {
                    if let Some(v) = &last_view {
                        assert!(d.decide(v).is_err());
                    }
                    seen.push((step, phase));
                    d.phase_done().unwrap();
                }
                Next::Decide { .. } => {
                    let view = empty_view(&mut d);
                    assert!(d.decide(&view).unwrap().is_empty());
                    assert!(matches!(d.decide(&view), Err(DriverError::NotDeciding(_))));
                    last_view = Some(view);
                }
                Next::Wait { .. } => panic!("nothing was sent"),
                Next::Done => break,
            }
        }
        // 23 steps of 15 minutes: ATO 0, continuous 1..9, break 10..15, continuous 16..21, ATC 22.
        assert_eq!(
            seen,
            [
                (0, Phase::Ato),
                (1, Phase::Continuous),
                (10, Phase::Break),
                (16, Phase::Continuous),
                (22, Phase::Atc),
                (23, Phase::Closed)
            ]
        );
        assert_eq!(d.stats().steps, 23);
        assert!(d.decide(&last_view.unwrap()).is_err());
    }

    #[test]
    fn waits_for_final_reports_in_lockstep_but_not_in_realtime() {
        for (mode, waits) in [("lockstep", true), ("realtime", false)] {
            let mut d = driver(&format!(
                "mode = \"{mode}\"\n[random]\ncount = 3\nactivity = 1.0\ninvalid_share = 0.0\n"
            ));
            let view = to_decision(&mut d);
            let subs = d.decide(&view).unwrap();
            assert_eq!(subs.len(), 3, "{subs:?}");
            assert_eq!(d.outstanding(), 3);
            let next = d.poll();
            assert_eq!(
                matches!(next, Next::Wait { outstanding: 3 }),
                waits,
                "{next:?}"
            );
            for s in &subs {
                d.complete(s.token);
            }
            assert!(!matches!(d.poll(), Next::Wait { .. }));
        }
    }

    #[test]
    fn latency_orders_the_step_and_holds_what_arrives_later() {
        // Noise latency 1 ms, random latency 20 minutes (past the 15-minute step).
        let mut d = driver(
            "[noise]\ncount = 2\nactivity = 1.0\nlatency_us = 1000\n\
             [market_maker]\ncount = 1\nlatency_us = 10\n\
             [random]\ncount = 2\nactivity = 1.0\nlatency_us = 1200000000\n\
             invalid_share = 0.0\ncancel_share = 0.0\n",
        );
        let view = to_decision(&mut d);
        let subs = d.decide(&view).unwrap();
        let agents: Vec<u32> = subs.iter().map(|s| s.agent).collect();
        // The market maker's two opening quotes (agent 2, 10 us) first, then the noise agents
        // in index order; the random agents' orders wait for the next step.
        assert_eq!(agents, [2, 2, 0, 1]);
        assert_eq!(d.stats().held, 2);
        for s in &subs {
            d.complete(s.token);
        }
        let view = to_decision(&mut d);
        let subs = d.decide(&view).unwrap();
        let late: Vec<u32> = subs.iter().map(|s| s.agent).filter(|&a| a >= 3).collect();
        assert_eq!(late, [3, 4]);
    }

    #[test]
    fn reports_reach_their_owners_and_rejects_free_the_id() {
        use matching::{Aggressor, Fill, RejectReason};
        let mut d = driver("[random]\ncount = 2\nactivity = 1.0\ninvalid_share = 0.0\ntaker_share = 0.0\ncancel_share = 0.0\n");
        let view = to_decision(&mut d);
        let subs = d.decide(&view).unwrap();
        let (a, b) = (subs[0], subs[1]);
        let (Command::New(oa), Command::New(ob)) = (a.command, b.command) else {
            panic!("{subs:?}")
        };
        assert_eq!(d.owner(oa.id), Some(a.agent));
        d.on_event(
            Some(a.token),
            &Event::Rejected {
                id: oa.id,
                reason: RejectReason::OutsideBand,
            },
        );
        d.complete(a.token);
        assert_eq!(d.owner(oa.id), None);
        let fill = Fill {
            security: ob.security,
            price: 5_000,
            qty: 100,
            buy: ob.id,
            sell: OrderId(999_999),
            buy_broker: ob.broker,
            sell_broker: BrokerId(77),
            aggressor: Aggressor::Sell,
        };
        d.on_event(None, &Event::Fill(fill));
        let info: Vec<_> = d.agents().collect();
        assert_eq!(info[a.agent as usize].account.counts.rejected, 1);
        let acc_b = info[b.agent as usize].account;
        assert_eq!(acc_b.position(ob.security), 100);
        assert_eq!(acc_b.counts.fills, 1);
    }
}
