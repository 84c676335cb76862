//! A population run: the shell of the [`Lockstep`] driver over a [`Venue`] (where commands
//! are matched). It plays the exchange's side of the protocol: phase changes, each step's
//! submissions in order, every event back to the driver and to the view builder, depth
//! snapshots of the books.
//!
//! [`LocalRun`] is the run against the sequential [`matching::Exchange`] (the reference); the
//! grid shell (`user-sim agents --manager`) implements [`Venue`] over a gateway session and
//! must produce the same trades byte for byte. A lockstep venue answers a step's submissions
//! once every one of them is final (the local exchange at once); a real-time venue hands back
//! whatever became final meanwhile, and the run absorbs the rest when it comes.

use std::collections::BTreeMap;

use matching::book::Depth;
use matching::{
    Aggressor, Command, Event, Exchange, OrderId, Phase, Price, Qty, SecurityId, SecurityTable,
    Timestamp,
};

use crate::config::{ConfigError, Population};
use crate::driver::{DriverError, Lockstep, Next, Submission};
use crate::report::{summarize, AgentSummary};
use crate::schedule::DayClock;
use crate::tracker::MarketTracker;
use crate::view::Bar;

/// One trade of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TradeRecord {
    pub day: u32,
    /// The step (bar) the trade belongs to.
    pub step: u32,
    /// Exchange time of the command (or phase change) that made it.
    pub time: Timestamp,
    pub security: SecurityId,
    pub price: Price,
    pub qty: Qty,
    pub buy: OrderId,
    pub sell: OrderId,
    pub aggressor: Aggressor,
}

/// Counts of one trading day.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DayStats {
    /// NEW orders submitted.
    pub orders: u64,
    /// NEW, CANCEL and AMEND commands submitted.
    pub commands: u64,
    pub rejects: u64,
    pub trades: u64,
    pub volume: Qty,
    /// Trades made by the call auctions.
    pub auction_trades: u64,
}

/// Counts of the whole run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    pub news: u64,
    pub cancels: u64,
    pub amends: u64,
    pub phases: u64,
    /// Rejects by reason code.
    pub rejects: BTreeMap<&'static str, u64>,
    pub trades: u64,
    pub volume: Qty,
    pub days: Vec<DayStats>,
}

impl RunStats {
    /// NEW, CANCEL and AMEND commands.
    pub fn commands(&self) -> u64 {
        self.news + self.cancels + self.amends
    }

    pub fn rejected(&self) -> u64 {
        self.rejects.values().sum()
    }
}

/// Why a run stopped: the shell broke the protocol (a bug, never bad input) or the venue
/// failed (over the grid: the connection, or a manager that broke the contract).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error("the driver waits for {0} reports the venue never owes")]
    Stalled(usize),
    #[error("venue: {0}")]
    Venue(#[source] VenueError),
}

/// The old name of [`RunError`].
pub type LocalError = RunError;

/// A venue's failure, boxed: each venue has its own.
pub type VenueError = Box<dyn std::error::Error + Send + Sync>;

/// One submission's events, once it is final.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Final {
    pub token: u64,
    pub events: Vec<Event>,
}

/// Where a run's commands are matched. Events come in the order the sequential exchange
/// produces them.
pub trait Venue {
    /// Enters `phase` at exchange time `time` and waits until it is in force; appends its
    /// events to `out` (every book's, in security-code byte order).
    fn phase(
        &mut self,
        phase: Phase,
        time: Timestamp,
        out: &mut Vec<Event>,
    ) -> Result<(), VenueError>;
    /// Sends `subs` in order. A lockstep venue waits until every one is final and pushes them
    /// all to `finals`, in order; a real-time venue pushes whatever became final meanwhile
    /// (of this step's or earlier submissions), in the order it learnt of them.
    fn submit(&mut self, subs: &[Submission], finals: &mut Vec<Final>) -> Result<(), VenueError>;
    /// Real-time venues: submissions that became final while [`Venue::phase`] waited (they
    /// were sequenced before the phase change). Lockstep venues have none.
    fn take_finals(&mut self, _finals: &mut Vec<Final>) {}
    /// The aggregated limit levels of `security`, at most `levels` per side, best first, as
    /// `matching::Engine::depth` gives them.
    fn depth(&self, security: SecurityId, levels: usize) -> Depth;
}

/// The sequential exchange as a venue: every command is final as soon as it is processed.
impl Venue for Exchange {
    fn phase(
        &mut self,
        phase: Phase,
        _time: Timestamp,
        out: &mut Vec<Event>,
    ) -> Result<(), VenueError> {
        self.process(&Command::Phase(phase), out);
        Ok(())
    }

    fn submit(&mut self, subs: &[Submission], finals: &mut Vec<Final>) -> Result<(), VenueError> {
        for sub in subs {
            let mut events = Vec::new();
            self.process(&sub.command, &mut events);
            finals.push(Final {
                token: sub.token,
                events,
            });
        }
        Ok(())
    }

    fn depth(&self, security: SecurityId, levels: usize) -> Depth {
        self.engine().depth(security, levels)
    }
}

/// A run against the sequential exchange.
pub type LocalRun = Run<Exchange>;

/// A run in progress.
pub struct Run<V: Venue> {
    venue: V,
    tracker: MarketTracker,
    driver: Lockstep,
    listing: SecurityTable,
    trades: Vec<TradeRecord>,
    stats: RunStats,
    events: Vec<Event>,
    /// Final submissions handed back by the venue, to absorb.
    finals: Vec<Final>,
    /// Submissions not yet final: their delivery time.
    sent_at: rustc_hash::FxHashMap<u64, Timestamp>,
    begun: Option<(u32, u32)>,
    /// The fundamental of every traded security at each step (parallel to the bars).
    fundamental: Vec<Vec<f64>>,
    /// Every command sent to the exchange, in order, when recording.
    journal: Option<Vec<Command>>,
}

/// Everything a finished run produced.
pub struct LocalOutcome {
    pub trades: Vec<TradeRecord>,
    pub stats: RunStats,
    pub agents: Vec<AgentSummary>,
    /// Per traded security: its code and every bar of the run.
    pub history: Vec<(SecurityId, String, Vec<Bar>)>,
    /// Per traded security (same order): the fundamental value at each bar.
    pub fundamental: Vec<Vec<f64>>,
    pub clock: DayClock,
    pub listing: SecurityTable,
}

impl LocalRun {
    /// A run of `pop` over `listing` (the population's `[market]` rules), order ids from 1.
    pub fn new(pop: &Population, listing: SecurityTable) -> Result<LocalRun, ConfigError> {
        let exchange = Exchange::new(pop.rules()?, listing.clone());
        Run::with_venue(pop, listing, exchange)
    }

    /// A run of `pop` over its synthetic listing (`[market] listing`).
    pub fn synthetic(pop: &Population) -> Result<LocalRun, ConfigError> {
        LocalRun::new(pop, pop.listing()?)
    }

    pub fn exchange(&self) -> &Exchange {
        &self.venue
    }
}

impl<V: Venue> Run<V> {
    /// A run of `pop` over `listing` (the population's `[market]` rules) through `venue`, which
    /// must list the same securities and have sequenced nothing; order ids from 1.
    pub fn with_venue(
        pop: &Population,
        listing: SecurityTable,
        venue: V,
    ) -> Result<Self, ConfigError> {
        let rules = pop.rules()?;
        let driver = Lockstep::new(pop, &listing, rules, 1)?;
        let universe = pop.universe(&listing)?;
        let tracker = MarketTracker::new(
            &listing,
            &universe,
            rules,
            pop.depth_levels,
            pop.steps_per_day,
        );
        Ok(Run {
            venue,
            tracker,
            driver,
            listing,
            trades: Vec::new(),
            stats: RunStats::default(),
            events: Vec::with_capacity(64),
            finals: Vec::new(),
            sent_at: rustc_hash::FxHashMap::default(),
            begun: None,
            fundamental: vec![Vec::new(); universe.len()],
            journal: None,
        })
    }

    /// Keeps every command sent to the exchange (phase changes included), for replay.
    pub fn record_commands(&mut self) {
        self.journal.get_or_insert_with(Vec::new);
    }

    /// The commands recorded so far (empty unless [`LocalRun::record_commands`] was called).
    pub fn commands(&self) -> &[Command] {
        self.journal.as_deref().unwrap_or(&[])
    }

    pub fn driver(&self) -> &Lockstep {
        &self.driver
    }

    pub fn tracker(&self) -> &MarketTracker {
        &self.tracker
    }

    pub fn venue(&self) -> &V {
        &self.venue
    }

    pub fn trades(&self) -> &[TradeRecord] {
        &self.trades
    }

    pub fn stats(&self) -> &RunStats {
        &self.stats
    }

    /// Carries out one action of the driver; `false` once the run is over.
    pub fn advance(&mut self) -> Result<bool, RunError> {
        match self.driver.poll() {
            Next::Phase {
                phase,
                day,
                step,
                time,
            } => {
                let last = self.driver.clock().steps_per_day() - 1;
                if step <= last {
                    self.begin(day, step, time, phase);
                }
                self.events.clear();
                let cmd = Command::Phase(phase);
                if let Some(j) = self.journal.as_mut() {
                    j.push(cmd);
                }
                let mut events = Vec::with_capacity(64);
                self.venue
                    .phase(phase, time, &mut events)
                    .map_err(RunError::Venue)?;
                let mut finals = std::mem::take(&mut self.finals);
                self.venue.take_finals(&mut finals);
                self.absorb_finals(&mut finals, day, step.min(last));
                self.finals = finals;
                self.events = events;
                self.stats.phases += 1;
                self.absorb(None, day, step.min(last), time, true);
                self.driver.phase_done()?;
                if phase == Phase::Closed {
                    self.refresh_depth();
                    self.tracker.end_day();
                }
                Ok(true)
            }
            Next::Decide {
                day,
                step,
                time,
                phase,
            } => {
                self.begin(day, step, time, phase);
                self.refresh_depth();
                let subs = self.driver.decide(self.tracker.view())?;
                for (i, f) in self.fundamental.iter_mut().enumerate() {
                    f.push(self.driver.fundamental().value(i));
                }
                for sub in &subs {
                    self.count(day, &sub.command);
                    if let Some(j) = self.journal.as_mut() {
                        j.push(sub.command);
                    }
                }
                self.sent_at.extend(subs.iter().map(|s| (s.token, s.at)));
                let mut finals = std::mem::take(&mut self.finals);
                self.venue
                    .submit(&subs, &mut finals)
                    .map_err(RunError::Venue)?;
                self.absorb_finals(&mut finals, day, step);
                self.finals = finals;
                Ok(true)
            }
            Next::Wait { outstanding } => Err(LocalError::Stalled(outstanding)),
            Next::Done => Ok(false),
        }
    }

    /// Runs to the end.
    pub fn run(mut self) -> Result<LocalOutcome, RunError> {
        while self.advance()? {}
        Ok(self.finish())
    }

    /// The results as they stand.
    pub fn finish(self) -> LocalOutcome {
        let agents = summarize(&self.driver, self.tracker.view());
        let history = self
            .tracker
            .view()
            .securities
            .iter()
            .map(|s| (s.id, s.code.clone(), self.tracker.history(s.id).to_vec()))
            .collect();
        LocalOutcome {
            trades: self.trades,
            stats: self.stats,
            agents,
            history,
            fundamental: self.fundamental,
            clock: self.driver.clock().clone(),
            listing: self.listing,
        }
    }

    /// Takes the events of final submissions, in order, and tells the driver they are final.
    fn absorb_finals(&mut self, finals: &mut Vec<Final>, day: u32, step: u32) {
        for f in finals.drain(..) {
            let at = self.sent_at.remove(&f.token).unwrap_or_default();
            self.events = f.events;
            self.absorb(Some(f.token), day, step, at, false);
            self.driver.complete(f.token);
        }
    }

    fn begin(&mut self, day: u32, step: u32, time: Timestamp, phase: Phase) {
        if self.begun != Some((day, step)) {
            self.refresh_depth();
            self.tracker.begin_step(day, step, time, phase);
            self.begun = Some((day, step));
        }
    }

    fn refresh_depth(&mut self) {
        let levels = self.tracker.levels();
        for sec in self.tracker.dirty() {
            let (bids, asks) = self.venue.depth(sec, levels);
            self.tracker.set_depth(sec, &bids, &asks);
        }
    }

    fn count(&mut self, day: u32, cmd: &Command) {
        let d = self.day_stats(day);
        d.commands += 1;
        match cmd {
            Command::New(_) => {
                d.orders += 1;
                self.stats.news += 1;
            }
            Command::Cancel(_) => self.stats.cancels += 1,
            Command::Amend(_) => self.stats.amends += 1,
            Command::Phase(_) => {}
        }
    }

    fn day_stats(&mut self, day: u32) -> &mut DayStats {
        let i = day as usize;
        if self.stats.days.len() <= i {
            self.stats.days.resize_with(i + 1, DayStats::default);
        }
        &mut self.stats.days[i]
    }

    fn absorb(&mut self, token: Option<u64>, day: u32, step: u32, time: Timestamp, auction: bool) {
        let events = std::mem::take(&mut self.events);
        for ev in &events {
            self.tracker.on_event(time, ev);
            self.driver.on_event(token, ev);
            match ev {
                Event::Fill(f) => {
                    self.trades.push(TradeRecord {
                        day,
                        step,
                        time,
                        security: f.security,
                        price: f.price,
                        qty: f.qty,
                        buy: f.buy,
                        sell: f.sell,
                        aggressor: f.aggressor,
                    });
                    self.stats.trades += 1;
                    self.stats.volume += f.qty;
                    let d = self.day_stats(day);
                    d.trades += 1;
                    d.volume += f.qty;
                    if auction {
                        d.auction_trades += 1;
                    }
                }
                Event::Rejected { reason, .. } => {
                    *self.stats.rejects.entry(reason.code()).or_default() += 1;
                    self.day_stats(day).rejects += 1;
                }
                _ => {}
            }
        }
        self.events = events;
    }
}

/// The trades as CSV (`day,step,time,security,price,qty,buy_order_id,sell_order_id,aggressor`),
/// in the order they happened.
pub fn trades_csv(trades: &[TradeRecord], listing: &SecurityTable) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "day",
        "step",
        "time",
        "security",
        "price",
        "qty",
        "buy_order_id",
        "sell_order_id",
        "aggressor",
    ]);
    for t in trades {
        let _ = w.write_record([
            t.day.to_string(),
            t.step.to_string(),
            t.time.to_string(),
            listing.code(t.security).unwrap_or("?").to_string(),
            t.price.to_string(),
            t.qty.to_string(),
            t.buy.0.to_string(),
            t.sell.0.to_string(),
            t.aggressor.as_str().to_string(),
        ]);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}
