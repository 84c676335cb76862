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
//!
//! Real time (`--realtime`, or `mode = "realtime"` in the file): the agents submit as they
//! decide and a step lasts `--step-ms` of wall time, not until its commands are final; the
//! agents see whatever reports have come in. Results then depend on timing and differ from run
//! to run. Phase changes still wait until they are in force.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use agents::local::{Final, Run, RunError, Venue, VenueError};
use agents::results::{write_results, RunInfo};
use agents::{Mode, Population, Submission};
use anyhow::{bail, Context};
use feed::{Completed, FeedBuilder};
use matching::book::Depth;
use matching::{
    BrokerId, Command, Event, MarketRules, OrderId, Phase, SecurityId, SecurityTable, Side,
    Timestamp,
};
use proto::{ClientCommand, ClientMsg, Credentials, Report, ReportEvent};
use rustc_hash::FxHashMap;

use crate::client::{connect, declare_brokers, next_reports, table_from, GridTarget, Session};
use std::collections::VecDeque;

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
    /// Run in real time (`mode = "realtime"`) whatever the population file says.
    pub realtime: bool,
    /// Real time over the grid: wall time of one step (zero: a step ends as soon as its
    /// commands are sent and the reports already in are read).
    pub step_wall: Duration,
}

/// Loads the population (with the `--days` override), validated.
pub fn load_population(job: &AgentsJob) -> anyhow::Result<Population> {
    let mut pop = Population::load(&job.config)?;
    if job.realtime {
        pop.mode = Mode::Realtime;
    }
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
            let pace = (pop.mode == Mode::Realtime).then_some(job.step_wall);
            let venue = GridVenue::connect(target, token, &pop, &listing, pace)?;
            let run = Run::with_venue(&pop, listing.clone(), venue)?;
            let how = match pace {
                None => "grid, lockstep",
                Some(_) => "grid, real time",
            };
            (drive(run, &pop, job.progress)?, how)
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

/// Report batches from the session's reader task (a bounded queue: the reader waits when the
/// run falls behind, and the manager's flow control holds the rest).
type ReportQueue = tokio::sync::mpsc::Receiver<anyhow::Result<Vec<Report>>>;

/// A command sent and not yet final.
struct Open {
    /// The driver's token (`None`: a phase change).
    token: Option<u64>,
    command: Command,
    reports: Vec<Report>,
}

/// The session and what the venue knows about the orders it sent.
struct Link {
    session_conn: quinn::Connection,
    _endpoint: quinn::Endpoint,
    writer: transport::FrameWriter,
    reports: ReportQueue,
    limits: proto::SessionLimits,
    /// Real time: the wall time of a step; `None`: lockstep.
    pace: Option<Duration>,
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
    open: FxHashMap<u64, Open>,
    /// Client references that became final, in the order the reports said so.
    finished: VecDeque<u64>,
    /// Real time: submissions that became final while a phase change was awaited.
    early: Vec<Final>,
}

fn contract(msg: String) -> VenueError {
    anyhow::anyhow!(msg).into()
}

impl GridVenue {
    /// Logs in with the operator token and checks the manager can reproduce a local run: the
    /// same listing and rules, nothing sequenced yet; then declares one broker per agent.
    /// `pace`: real time with this wall time per step; `None`: lockstep.
    pub fn connect(
        target: &GridTarget,
        token: &str,
        pop: &Population,
        listing: &SecurityTable,
        pace: Option<Duration>,
    ) -> anyhow::Result<GridVenue> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let link = rt.block_on(Link::open(target, token, pop, listing, pace))?;
        Ok(GridVenue { rt, link })
    }
}

impl Link {
    async fn open(
        target: &GridTarget,
        token: &str,
        pop: &Population,
        listing: &SecurityTable,
        pace: Option<Duration>,
    ) -> anyhow::Result<Link> {
        let Session {
            conn,
            mut writer,
            mut reader,
            welcome,
            endpoint,
        } = connect(
            target,
            Credentials::Gateway {
                token: token.to_string(),
            },
        )
        .await?;
        if welcome.sequenced > 0 {
            bail!(
                "the manager at {} has already sequenced {} commands (its journal is not empty, or its schedule is running), so an agents run through it cannot equal `agents --local`: start a manager on a fresh --data-dir with --schedule continuous for each run",
                target.manager,
                welcome.sequenced
            );
        }
        let rules = pop.rules()?;
        let theirs = MarketRules::from_str(&welcome.rules).map_err(|e| anyhow::anyhow!("{e}"))?;
        if theirs.name() != rules.name() {
            bail!(
                "the population trades under [market] rules = {:?} but the manager runs {}: start it with --rules {}",
                rules.name(),
                welcome.rules,
                rules.name()
            );
        }
        let table = table_from(&welcome)?;
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
        let to_grid = declare_brokers(&mut writer, &mut reader, &names)
            .await
            .context("declaring the agents' brokers")?;
        let from_grid = to_grid
            .iter()
            .enumerate()
            .map(|(i, g)| (*g, BrokerId(i as u32)))
            .collect();
        let mut code_order: Vec<SecurityId> = listing.iter().map(|(id, _, _)| id).collect();
        code_order.sort_by(|a, b| listing.code(*a).cmp(&listing.code(*b)));
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                let batch = next_reports(&mut reader).await;
                let failed = batch.is_err();
                if tx.send(batch).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Link {
            session_conn: conn,
            _endpoint: endpoint,
            writer,
            reports: rx,
            limits: welcome.limits,
            pace,
            to_grid,
            from_grid,
            orders: FxHashMap::default(),
            feed: FeedBuilder::new(listing),
            code_order,
            next_ref: 0,
            open: FxHashMap::default(),
            finished: VecDeque::new(),
            early: Vec::new(),
        })
    }

    /// Sends `cmds` in order within the manager's in-flight window (reading reports while it
    /// is full); returns their client references.
    async fn send(&mut self, cmds: &[(Option<u64>, Command)]) -> anyhow::Result<Vec<u64>> {
        let batch = (self.limits.max_batch as usize).clamp(1, 2048);
        let window = (self.limits.max_in_flight as usize).max(1);
        let mut refs = Vec::with_capacity(cmds.len());
        let mut pos = 0;
        while pos < cmds.len() {
            while self.open.len() >= window {
                self.read_batch().await?;
            }
            let end = (pos + batch)
                .min(cmds.len())
                .min(pos + window - self.open.len());
            let mut chunk = Vec::with_capacity(end - pos);
            for &(token, command) in &cmds[pos..end] {
                let client_ref = self.next_ref;
                self.next_ref += 1;
                self.open.insert(
                    client_ref,
                    Open {
                        token,
                        command,
                        reports: Vec::new(),
                    },
                );
                refs.push(client_ref);
                chunk.push(ClientCommand {
                    client_ref,
                    command,
                });
            }
            self.writer.send(&ClientMsg::Submit(chunk)).await?;
            pos = end;
        }
        Ok(refs)
    }

    /// Waits for the next batch of reports and files them.
    async fn read_batch(&mut self) -> anyhow::Result<()> {
        let batch = self
            .reports
            .recv()
            .await
            .context("the manager closed the session")??;
        self.file(batch)
    }

    fn file(&mut self, batch: Vec<Report>) -> anyhow::Result<()> {
        for r in batch {
            if r.passive {
                continue; // about a broker's resting order: the gateway has its own copy
            }
            let open = self.open.get_mut(&r.client_ref).with_context(|| {
                format!(
                    "report for client reference {}, which is not open",
                    r.client_ref
                )
            })?;
            let last = r.last;
            open.reports.push(r);
            if last {
                self.finished.push_back(r.client_ref);
            }
        }
        Ok(())
    }

    /// Reads reports until every one of `refs` is final.
    async fn until_final(&mut self, refs: &[u64]) -> anyhow::Result<()> {
        let refs: rustc_hash::FxHashSet<u64> = refs.iter().copied().collect();
        let mut waiting = refs.len();
        let mut seen = 0;
        loop {
            // Count the finals among `refs` learnt so far (they stay in `finished`).
            while seen < self.finished.len() {
                if refs.contains(&self.finished[seen]) {
                    waiting -= 1;
                }
                seen += 1;
            }
            if waiting == 0 {
                return Ok(());
            }
            self.read_batch().await?;
        }
    }

    /// Reads whatever reports arrive until `deadline` (at least those already queued).
    async fn until(&mut self, deadline: tokio::time::Instant) -> anyhow::Result<()> {
        tokio::task::yield_now().await;
        loop {
            match tokio::time::timeout_at(deadline, self.reports.recv()).await {
                Err(_) => return Ok(()),
                Ok(batch) => self.file(batch.context("the manager closed the session")??)?,
            }
            if tokio::time::Instant::now() >= deadline {
                // Drain what is already queued, then stop.
                while let Ok(batch) = self.reports.try_recv() {
                    self.file(batch?)?;
                }
                return Ok(());
            }
        }
    }

    /// Takes a final command's reports: its engine events, also applied to the mirror books.
    /// `Some` for a submission, `None` for a phase change (its events go to `phase_out`).
    fn close(
        &mut self,
        client_ref: u64,
        phase_out: &mut Vec<Event>,
    ) -> Result<Option<Final>, VenueError> {
        let open = self
            .open
            .remove(&client_ref)
            .ok_or_else(|| contract(format!("client reference {client_ref} closed twice")))?;
        let seq = open.reports.iter().map(|r| r.seq).max().unwrap_or(0);
        let time = open.reports.last().map_or(0, |r| r.time);
        if let Command::Phase(_) = open.command {
            // One group per book, in whatever order the executors finished: put them back in
            // code order, each book's events in the engine's order.
            let mut books: FxHashMap<SecurityId, Vec<Event>> = FxHashMap::default();
            for r in &open.reports {
                if let Some(e) = self.engine_event(r)? {
                    let sec = self
                        .event_security(&e)
                        .ok_or_else(|| contract(format!("a phase event names no book: {e:?}")))?;
                    books.entry(sec).or_default().push(e);
                }
            }
            for sec in self.code_order.clone() {
                let events = books.remove(&sec).unwrap_or_default();
                self.mirror(seq, time, sec, &open.command, &events)?;
                phase_out.extend(events);
            }
            if !books.is_empty() {
                return Err(contract("phase events for unlisted securities".into()));
            }
            return Ok(None);
        }
        let mut events = Vec::with_capacity(open.reports.len());
        for r in &open.reports {
            if let Some(e) = self.engine_event(r)? {
                events.push(e);
            }
        }
        // Commands the manager's gateway refused never reached a book (no sequence number).
        if let (Some(sec), true) = (open.command.security(), seq > 0) {
            self.mirror(seq, time, sec, &open.command, &events)?;
        }
        let token = open
            .token
            .ok_or_else(|| contract("a submission without a token".into()))?;
        Ok(Some(Final { token, events }))
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

    /// Closes every command learnt final so far, in that order: submissions to `finals`, a
    /// phase change's events to `phase_out`.
    fn close_finished(
        &mut self,
        finals: &mut Vec<Final>,
        phase_out: &mut Vec<Event>,
    ) -> Result<(), VenueError> {
        while let Some(r) = self.finished.pop_front() {
            if let Some(f) = self.close(r, phase_out)? {
                finals.push(f);
            }
        }
        Ok(())
    }
}

impl Venue for GridVenue {
    fn phase(
        &mut self,
        phase: Phase,
        _time: Timestamp,
        out: &mut Vec<Event>,
    ) -> Result<(), VenueError> {
        let link = &mut self.link;
        self.rt.block_on(async {
            let refs = link.send(&[(None, Command::Phase(phase))]).await?;
            link.until_final(&refs).await
        })?;
        // Real time: commands sequenced before the phase change are final before it is, so
        // they close first (their books' events come before the phase's).
        let mut early = std::mem::take(&mut link.early);
        link.close_finished(&mut early, out)?;
        link.early = early;
        Ok(())
    }

    fn submit(&mut self, subs: &[Submission], finals: &mut Vec<Final>) -> Result<(), VenueError> {
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
            cmds.push((Some(s.token), c));
        }
        let pace = link.pace;
        let started = tokio::time::Instant::now();
        let refs = self.rt.block_on(async {
            let refs = link.send(&cmds).await?;
            match pace {
                None => link.until_final(&refs).await?,
                Some(wall) => link.until(started + wall).await?,
            }
            Ok::<_, anyhow::Error>(refs)
        })?;
        let mut none = Vec::new();
        if pace.is_none() {
            // Lockstep: in submission order (the sequence order), whatever order the
            // reports came in.
            let step: rustc_hash::FxHashSet<u64> = refs.iter().copied().collect();
            link.finished.retain(|r| !step.contains(r));
            for r in refs {
                if let Some(f) = link.close(r, &mut none)? {
                    finals.push(f);
                }
            }
        } else {
            link.close_finished(finals, &mut none)?;
        }
        if !none.is_empty() {
            return Err(contract("phase events outside a phase change".into()));
        }
        Ok(())
    }

    fn take_finals(&mut self, finals: &mut Vec<Final>) {
        finals.append(&mut self.link.early);
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
        self.link.session_conn.close(0u32.into(), b"done");
    }
}
