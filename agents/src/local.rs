//! A population run against the sequential [`matching::Exchange`]: the reference shell of the
//! [`Lockstep`] driver, and the stand-in for the grid until the feed and broker sessions are
//! wired. It plays the exchange's side of the protocol: phase changes, submissions in order,
//! every event back to the driver and to the view builder, depth snapshots from the book.
//!
//! The exchange answers each command synchronously, so every command is final as soon as it is
//! processed; lockstep and real-time modes therefore behave the same here.

use std::collections::BTreeMap;

use matching::{
    Aggressor, Command, Event, Exchange, OrderId, Phase, Price, Qty, SecurityId, SecurityTable,
    Timestamp,
};

use crate::config::{ConfigError, Population};
use crate::driver::{DriverError, Lockstep, Next};
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

/// The shell failed to keep the protocol (a bug, never bad input).
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error("the driver waits for {0} reports the local exchange never owes")]
    Stalled(usize),
}

/// A run in progress.
pub struct LocalRun {
    exchange: Exchange,
    tracker: MarketTracker,
    driver: Lockstep,
    listing: SecurityTable,
    trades: Vec<TradeRecord>,
    stats: RunStats,
    events: Vec<Event>,
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
        Ok(LocalRun {
            exchange: Exchange::new(rules, listing.clone()),
            tracker,
            driver,
            listing,
            trades: Vec::new(),
            stats: RunStats::default(),
            events: Vec::with_capacity(64),
            begun: None,
            fundamental: vec![Vec::new(); universe.len()],
            journal: None,
        })
    }

    /// A run of `pop` over its synthetic listing (`[market] listing`).
    pub fn synthetic(pop: &Population) -> Result<LocalRun, ConfigError> {
        let listing =
            SecurityTable::synthetic(pop.market.listing).map_err(|e| ConfigError::Invalid {
                field: "market.listing".into(),
                message: e.to_string(),
            })?;
        LocalRun::new(pop, listing)
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

    pub fn exchange(&self) -> &Exchange {
        &self.exchange
    }

    pub fn trades(&self) -> &[TradeRecord] {
        &self.trades
    }

    pub fn stats(&self) -> &RunStats {
        &self.stats
    }

    /// Carries out one action of the driver; `false` once the run is over.
    pub fn advance(&mut self) -> Result<bool, LocalError> {
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
                self.exchange.process(&cmd, &mut self.events);
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
                for sub in subs {
                    self.count(day, &sub.command);
                    if let Some(j) = self.journal.as_mut() {
                        j.push(sub.command);
                    }
                    self.events.clear();
                    self.exchange.process(&sub.command, &mut self.events);
                    self.absorb(Some(sub.token), day, step, sub.at, false);
                    self.driver.complete(sub.token);
                }
                Ok(true)
            }
            Next::Wait { outstanding } => Err(LocalError::Stalled(outstanding)),
            Next::Done => Ok(false),
        }
    }

    /// Runs to the end.
    pub fn run(mut self) -> Result<LocalOutcome, LocalError> {
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
            let (bids, asks) = self.exchange.engine().depth(sec, levels);
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
