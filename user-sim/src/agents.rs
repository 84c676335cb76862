//! `user-sim agents`: a population of strategy agents (the `agents` crate) trading a whole
//! number of days, either through the local sequential exchange or through the grid.
//!
//! Over the grid the run is the reproducible lockstep one: [`GridVenue`] is one gateway
//! session (operator token, like `replay --manager`) on a fresh manager running `--schedule
//! continuous`. Each agent is its own declared broker. The driver's PHASE commands and each
//! step's commands go out in the driver's order, and a step returns only when every command
//! of it is final. The events come back from the reports, are put back in the order the
//! sequential exchange gives them (a PHASE's books in security-code order), and feed the same
//! view builder and accounts as a local run. The books the agents see are the public feed's
//! L3 mirror ([`feed::FeedBuilder`]) rebuilt from those events, never the manager's own. So a
//! grid run's `trades.csv` and `agents.csv` equal `--local`'s byte for byte, however many
//! executors match them and across an executor failure.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use agents::local::{Run, RunError, Venue, VenueError};
use agents::results::{write_results, RunInfo};
use agents::{Mode, Population, Submission};
use anyhow::{bail, Context};
use feed::{Completed, FeedBuilder};
use matching::book::Depth;
use matching::{
    BrokerId, Command, Event, MarketRules, OrderId, Phase, SecurityId, SecurityTable, Side,
    Timestamp,
};
use proto::{ClientCommand, ClientMsg, Credentials, ManagerToClient, Report, ReportEvent};
use rustc_hash::FxHashMap;

use crate::client::{await_reply, connect, next_reports, table_from, GridTarget, Session};

/// Where `user-sim agents` matches its commands.
#[derive(Clone, Debug)]
pub enum AgentsVenue {
    /// The sequential exchange in this process.
    Local,
    /// The grid, through a gateway session with the operator token.
    Grid { target: GridTarget, token: String },
}

/// One `user-sim agents` run.
#[derive(Clone, Debug)]
pub struct AgentsJob {
    pub config: PathBuf,
    pub out: PathBuf,
    /// Overrides the population file's `days`.
    pub days: Option<u32>,
    /// Securities to plot (PNG per security and day).
    pub plots: usize,
    pub progress: bool,
    pub venue: AgentsVenue,
}

/// Loads the population (with the `--days` override), validated.
pub fn load_population(job: &AgentsJob) -> anyhow::Result<Population> {
    let mut pop = Population::load(&job.config)?;
    if let Some(days) = job.days {
        pop.days = days;
        pop.validate().context("--days")?;
    }
    Ok(pop)
}

/// Runs the job to the end, writes its results into `job.out` and returns the summary.
pub fn run_agents(job: &AgentsJob) -> anyhow::Result<String> {
    let pop = load_population(job)?;
    let listing = pop.listing()?;
    let started = Instant::now();
    let (out, venue) = match &job.venue {
        AgentsVenue::Local => {
            let run = agents::LocalRun::new(&pop, listing.clone())?;
            (drive(run, &pop, job.progress)?, "local sequential exchange")
        }
        AgentsVenue::Grid { target, token } => {
            if pop.mode == Mode::Realtime {
                bail!("mode = \"realtime\" is not available over the grid yet: use mode = \"lockstep\" (the default)");
            }
            let venue = GridVenue::connect(target, token, &pop, &listing)?;
            let run = Run::with_venue(&pop, listing.clone(), venue)?;
            (drive(run, &pop, job.progress)?, "grid, lockstep")
        }
    };
    let info = RunInfo {
        source: &job.config.display().to_string(),
        venue,
        wall_s: started.elapsed().as_secs_f64(),
    };
    Ok(write_results(&job.out, &pop, &out, &info, job.plots)?)
}

/// Advances a run to its end with a progress bar over the steps.
fn drive<V: Venue>(
    mut run: Run<V>,
    pop: &Population,
    progress: bool,
) -> Result<agents::LocalOutcome, RunError> {
    let total = u64::from(pop.days) * u64::from(pop.steps_per_day);
    let bar = if progress {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} steps ({per_sec}) {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    while run.advance()? {
        let stats = run.driver().stats();
        bar.set_position(stats.steps);
        bar.set_message(format!(
            "{} commands, {} trades",
            stats.submitted,
            run.stats().trades
        ));
    }
    bar.finish_and_clear();
    Ok(run.finish())
}

/// Broker name of agent `index` as declared to the manager.
pub fn agent_broker_name(index: usize) -> String {
    format!("agent{index:05}")
}

/// The grid as a [`Venue`]: one gateway session, driven step by step.
pub struct GridVenue {
    rt: tokio::runtime::Runtime,
    link: Link,
}

/// The session and what the venue knows about the orders it sent.
struct Link {
    session: Session,
    /// Per agent (the driver's broker id): the manager's broker id.
    to_grid: Vec<BrokerId>,
    from_grid: FxHashMap<BrokerId, BrokerId>,
    /// Every order sent: its security and side (reports name neither).
    orders: FxHashMap<OrderId, (SecurityId, Side)>,
    /// The public books, rebuilt from the events.
    feed: FeedBuilder,
    /// Security ids in code byte order (a PHASE's books, as the sequential exchange runs them).
    code_order: Vec<SecurityId>,
    next_ref: u64,
}

fn contract(msg: String) -> VenueError {
    anyhow::anyhow!(msg).into()
}

impl GridVenue {
    /// Logs in with the operator token and checks the manager can reproduce a local run: the
    /// same listing and rules, nothing sequenced yet; then declares one broker per agent.
    pub fn connect(
        target: &GridTarget,
        token: &str,
        pop: &Population,
        listing: &SecurityTable,
    ) -> anyhow::Result<GridVenue> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let link = rt.block_on(Link::open(target, token, pop, listing))?;
        Ok(GridVenue { rt, link })
    }
}

impl Link {
    async fn open(
        target: &GridTarget,
        token: &str,
        pop: &Population,
        listing: &SecurityTable,
    ) -> anyhow::Result<Link> {
        let mut session = connect(
            target,
            Credentials::Gateway {
                token: token.to_string(),
            },
        )
        .await?;
        let w = &session.welcome;
        if w.sequenced > 0 {
            bail!(
                "the manager at {} has already sequenced {} commands (its journal is not empty, or its schedule is running), so an agents run through it cannot equal `agents --local`: start a manager on a fresh --data-dir with --schedule continuous for each run",
                target.manager,
                w.sequenced
            );
        }
        let rules = pop.rules()?;
        let theirs = MarketRules::from_str(&w.rules).map_err(|e| anyhow::anyhow!("{e}"))?;
        if theirs.name() != rules.name() {
            bail!(
                "the population trades under [market] rules = {:?} but the manager runs {}: start it with --rules {}",
                rules.name(),
                w.rules,
                rules.name()
            );
        }
        let table = table_from(w)?;
        if table.to_csv() != listing.to_csv() {
            bail!(
                "the manager lists {} securities unlike the population's synthetic listing of {} ([market] listing): start it on a fresh data dir with --listings {} and no --securities",
                table.len(),
                listing.len(),
                pop.market.listing
            );
        }
        let names: Vec<String> = (0..pop.agent_count() as usize)
            .map(agent_broker_name)
            .collect();
        let mut to_grid = Vec::with_capacity(names.len());
        for chunk in names.chunks(proto::limits::MAX_DECLARED) {
            session
                .writer
                .send(&ClientMsg::DeclareBrokers(chunk.to_vec()))
                .await?;
            let ids = await_reply(&mut session.reader, |m| match m {
                ManagerToClient::Brokers(ids) => Some(ids),
                _ => None,
            })
            .await
            .context("declaring the agents' brokers")?;
            if ids.len() != chunk.len() {
                bail!(
                    "declared {} brokers, the manager answered {}",
                    chunk.len(),
                    ids.len()
                );
            }
            to_grid.extend(ids.into_iter().map(|(_, id)| id));
        }
        let from_grid = to_grid
            .iter()
            .enumerate()
            .map(|(i, g)| (*g, BrokerId(i as u32)))
            .collect();
        let mut code_order: Vec<SecurityId> = listing.iter().map(|(id, _, _)| id).collect();
        code_order.sort_by(|a, b| listing.code(*a).cmp(&listing.code(*b)));
        Ok(Link {
            session,
            to_grid,
            from_grid,
            orders: FxHashMap::default(),
            feed: FeedBuilder::new(listing),
            code_order,
            next_ref: 0,
        })
    }

    /// Sends `cmds` in order within the manager's in-flight window and collects each one's
    /// reports until its final one.
    async fn exchange(&mut self, cmds: &[Command]) -> anyhow::Result<Vec<Vec<Report>>> {
        let n = cmds.len();
        let first = self.next_ref;
        self.next_ref += n as u64;
        let limits = self.session.welcome.limits;
        let batch = (limits.max_batch as usize).clamp(1, 2048);
        let window = (limits.max_in_flight as usize).max(1);
        let mut reports: Vec<Vec<Report>> = vec![Vec::new(); n];
        let mut done = vec![false; n];
        let (mut sent, mut finals) = (0usize, 0usize);
        while finals < n {
            while sent < n && sent - finals < window {
                let end = (sent + batch).min(n).min(finals + window);
                let chunk = (sent..end)
                    .map(|i| ClientCommand {
                        client_ref: first + i as u64,
                        command: cmds[i],
                    })
                    .collect();
                self.session.writer.send(&ClientMsg::Submit(chunk)).await?;
                sent = end;
            }
            for r in next_reports(&mut self.session.reader).await? {
                if r.passive {
                    continue; // about a broker's resting order: the gateway has its own copy
                }
                let pos = r
                    .client_ref
                    .checked_sub(first)
                    .map(|p| p as usize)
                    .filter(|&p| p < sent && !done[p])
                    .with_context(|| {
                        format!(
                            "report for client reference {} outside the step's open commands",
                            r.client_ref
                        )
                    })?;
                let last = r.last;
                reports[pos].push(r);
                if last {
                    done[pos] = true;
                    finals += 1;
                }
            }
        }
        Ok(reports)
    }

    /// The engine event a report stands for (`None`: acceptance, the phase's final report).
    fn engine_event(&self, r: &Report) -> Result<Option<Event>, VenueError> {
        let order = |id: OrderId| {
            self.orders
                .get(&id)
                .copied()
                .ok_or_else(|| contract(format!("report about order {} never sent", id.0)))
        };
        Ok(Some(match r.event {
            ReportEvent::Accepted | ReportEvent::PhaseChanged { .. } => return Ok(None),
            ReportEvent::Fill(_) => {
                return Err(contract(
                    "a gateway session got a broker's own-fill report".into(),
                ))
            }
            ReportEvent::Trade { mut fill, .. } => {
                let back = |b: BrokerId| self.from_grid.get(&b).copied().unwrap_or(b);
                fill.buy_broker = back(fill.buy_broker);
                fill.sell_broker = back(fill.sell_broker);
                Event::Fill(fill)
            }
            ReportEvent::Rested { price, qty } => {
                let (security, side) = order(r.order)?;
                Event::Rested {
                    id: r.order,
                    security,
                    side,
                    price,
                    qty,
                }
            }
            ReportEvent::Amended {
                price,
                qty,
                priority_kept,
            } => Event::Amended {
                id: r.order,
                security: order(r.order)?.0,
                price,
                qty,
                priority_kept,
            },
            ReportEvent::Cancelled { qty, reason } => Event::Cancelled {
                id: r.order,
                qty,
                reason,
            },
            ReportEvent::Rejected { .. }
            | ReportEvent::Auction { .. }
            | ReportEvent::Reference { .. }
            | ReportEvent::Totals { .. } => match r.event.to_engine_event(r.order) {
                Some(e) => e,
                None => return Ok(None),
            },
        }))
    }

    /// The book an event of a PHASE belongs to.
    fn event_security(&self, e: &Event) -> Option<SecurityId> {
        match e {
            Event::Cancelled { id, .. } | Event::Rejected { id, .. } => {
                self.orders.get(id).map(|o| o.0)
            }
            _ => e.security(),
        }
    }

    fn mirror(
        &mut self,
        seq: u64,
        time: Timestamp,
        security: SecurityId,
        command: &Command,
        events: &[Event],
    ) -> Result<(), VenueError> {
        self.feed
            .apply(Completed {
                seq,
                time,
                security,
                command,
                events,
            })
            .map(|_| ())
            .map_err(|e| contract(format!("the manager's events do not fit the book: {e}")))
    }
}

impl Venue for GridVenue {
    fn phase(
        &mut self,
        phase: Phase,
        _time: Timestamp,
        out: &mut Vec<Event>,
    ) -> Result<(), VenueError> {
        let cmd = Command::Phase(phase);
        let link = &mut self.link;
        let reports = self.rt.block_on(link.exchange(&[cmd]))?;
        let reports = reports.into_iter().next().unwrap_or_default();
        let (seq, time) = reports.last().map_or((0, 0), |r| (r.seq, r.time));
        // One group per book, in whatever order the executors finished: put them back in
        // code order, each book's events in the engine's order.
        let mut books: FxHashMap<SecurityId, Vec<Event>> = FxHashMap::default();
        for r in &reports {
            if let Some(e) = link.engine_event(r)? {
                let sec = link
                    .event_security(&e)
                    .ok_or_else(|| contract(format!("a phase event names no book: {e:?}")))?;
                books.entry(sec).or_default().push(e);
            }
        }
        for sec in link.code_order.clone() {
            let events = books.remove(&sec).unwrap_or_default();
            link.mirror(seq, time, sec, &cmd, &events)?;
            out.extend(events);
        }
        if !books.is_empty() {
            return Err(contract("phase events for unlisted securities".into()));
        }
        Ok(())
    }

    fn submit(&mut self, subs: &[Submission], out: &mut Vec<Vec<Event>>) -> Result<(), VenueError> {
        let link = &mut self.link;
        let mut cmds = Vec::with_capacity(subs.len());
        for s in subs {
            let mut c = s.command;
            if let Some(b) = c.broker() {
                let g = *link
                    .to_grid
                    .get(b.0 as usize)
                    .ok_or_else(|| contract(format!("agent broker {} not declared", b.0)))?;
                c.set_broker(g);
            }
            if let Command::New(o) = c {
                link.orders.insert(o.id, (o.security, o.side));
            }
            cmds.push(c);
        }
        let reports = self.rt.block_on(link.exchange(&cmds))?;
        out.resize_with(subs.len(), Vec::new);
        for ((cmd, reps), events) in cmds.iter().zip(&reports).zip(out.iter_mut()) {
            events.clear();
            for r in reps {
                if let Some(e) = link.engine_event(r)? {
                    events.push(e);
                }
            }
            // Commands the manager's gateway refused never reached a book (no sequence).
            let seq = reps.iter().map(|r| r.seq).max().unwrap_or(0);
            if let (Some(sec), true) = (cmd.security(), seq > 0) {
                let time = reps.last().map_or(0, |r| r.time);
                link.mirror(seq, time, sec, cmd, events)?;
            }
        }
        Ok(())
    }

    fn depth(&self, security: SecurityId, levels: usize) -> Depth {
        self.link
            .feed
            .book(security)
            .map_or_else(|| (Vec::new(), Vec::new()), |b| b.depth(levels))
    }
}

impl Drop for GridVenue {
    fn drop(&mut self) {
        self.link.session.conn.close(0u32.into(), b"done");
    }
}
