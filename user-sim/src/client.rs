//! The grid client: broker sessions that send a generated flow and measure it, the gateway
//! session that replays an orders file through the grid, and a broker's order query.
//!
//! [`Tracker`] is the sans-I/O part: it matches the manager's reports to submitted commands by
//! the client reference every command carries (here: the command's position in the session's
//! list) and every report echoes, never by arrival order. A command's final report has `last`
//! set; a passive report (a resting order traded, expired or was cancelled by an auction) is
//! about an earlier command and never final.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use matching::stream::{BrokerRegistry, OrderRow, ReplayCollector};
use matching::{CancelReason, Command, Event, MarketRules, OrderId, RejectReason, SecurityTable};
use proto::{
    ClientCommand, ClientMsg, Credentials, ManagerToClient, OrderStatus, Report, ReportEvent,
    SessionLimits, Welcome,
};
use serde::Serialize;

use crate::pace::Lane;

/// Where the manager is and how to trust it.
#[derive(Clone, Debug)]
pub struct GridTarget {
    pub manager: String,
    pub ca: PathBuf,
}

/// What happened to one command, as far as the tracker can tell from one report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The command at `pos` was accepted (journaled and sequenced).
    Accepted { pos: usize },
    /// The command at `pos` reached its final state.
    Final { pos: usize },
    /// Nothing to record (an intermediate event, or a passive report).
    Nothing,
}

/// Matches reports to the commands of one session by client reference.
#[derive(Debug)]
pub struct Tracker {
    done: Vec<bool>,
    pub completed: usize,
    pub accepted: u64,
    pub rejected: u64,
    pub fills: u64,
    pub passive_fills: u64,
    pub passive_cancels: u64,
    /// Resting orders expired by the close (passive cancels with reason `Expired`).
    pub expired: u64,
    /// Rejects per reason, indexed like [`RejectReason::ALL`].
    pub rejects_by_reason: [u64; RejectReason::ALL.len()],
}

fn reason_index(reason: RejectReason) -> usize {
    RejectReason::ALL
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(0)
}

impl Tracker {
    /// A tracker for `n` commands with client references `0..n`.
    pub fn new(n: usize) -> Self {
        Tracker {
            done: vec![false; n],
            completed: 0,
            accepted: 0,
            rejected: 0,
            fills: 0,
            passive_fills: 0,
            passive_cancels: 0,
            expired: 0,
            rejects_by_reason: [0; RejectReason::ALL.len()],
        }
    }

    /// Every command has reached its final state.
    pub fn finished(&self) -> bool {
        self.completed == self.done.len()
    }

    /// Records one report; returns what it means and the command's position (None for a
    /// passive report). A report for an unknown reference, or after the command's final
    /// report, is an error: the manager broke the contract.
    pub fn on_report(&mut self, r: &Report) -> anyhow::Result<(Progress, Option<usize>)> {
        if r.passive {
            match r.event {
                ReportEvent::Fill(_) => self.passive_fills += 1,
                ReportEvent::Cancelled { reason, .. } => {
                    self.passive_cancels += 1;
                    if reason == CancelReason::Expired {
                        self.expired += 1;
                    }
                }
                _ => {}
            }
            return Ok((Progress::Nothing, None));
        }
        let pos = usize::try_from(r.client_ref)
            .ok()
            .filter(|p| *p < self.done.len())
            .with_context(|| format!("report for unknown client reference {}", r.client_ref))?;
        if self.done[pos] {
            bail!("report for client reference {pos} after its final report");
        }
        match r.event {
            ReportEvent::Accepted => {
                self.accepted += 1;
                return Ok((Progress::Accepted { pos }, Some(pos)));
            }
            ReportEvent::Fill(_) | ReportEvent::Trade { .. } => self.fills += 1,
            ReportEvent::Rejected { reason } => {
                self.rejected += 1;
                self.rejects_by_reason[reason_index(reason)] += 1;
            }
            _ => {}
        }
        if r.last {
            self.done[pos] = true;
            self.completed += 1;
            return Ok((Progress::Final { pos }, Some(pos)));
        }
        Ok((Progress::Nothing, Some(pos)))
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        Percentiles {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// The result of a load run (also written as JSON with `--json`).
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    pub orders: u64,
    pub brokers: u32,
    pub mode: &'static str,
    pub rate: Option<f64>,
    pub elapsed_s: f64,
    pub throughput: f64,
    pub accepted: u64,
    pub rejected: u64,
    pub fills: u64,
    /// From the time each order was due (paced runs: its slot in the schedule, so a sender
    /// that fell behind does not hide the delay: coordinated omission corrected; `--max`: its
    /// actual send time) to its acceptance.
    pub accept_us: Percentiles,
    /// From the same start to the order's final state.
    pub final_us: Percentiles,
    /// The trading phase when the load started and when it ended (a manager on a schedule
    /// moves through the day meanwhile).
    pub phase_at_start: String,
    pub phase_at_end: String,
    /// Rejects per reason code (phase rejects included: `phase_forbids`, `market_closed`).
    pub rejects_by_reason: std::collections::BTreeMap<String, u64>,
    /// Fills of resting orders caused by others (auction fills included).
    pub passive_fills: u64,
    /// Resting orders expired by the close.
    pub expired: u64,
    /// With `--timeline`: the run cut into windows of final-state time.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<Window>,
}

/// One window of a load run's timeline: the orders that reached their final state in it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Window {
    /// Seconds since the start of the run.
    pub start_s: f64,
    pub end_s: f64,
    /// Orders that became final in the window, and their rate.
    pub finals: u64,
    pub orders_per_s: f64,
    /// Of those, rejected ones.
    pub rejected: u64,
    /// Send (or due) to final, microseconds.
    pub p50_us: u64,
    pub p99_us: u64,
    /// Exchange time (ns since the epoch) of the first and last of those orders.
    pub exchange_from: i64,
    pub exchange_to: i64,
}

/// One order's final state, for the timeline.
#[derive(Clone, Copy, Debug)]
struct FinalSample {
    at: Duration,
    latency_us: u64,
    rejected: bool,
    exchange_time: i64,
}

/// Cuts samples into windows of `width` seconds of final-state time (empty windows kept, so
/// a stall shows as zeros).
fn timeline(mut samples: Vec<FinalSample>, width: f64) -> Vec<Window> {
    if samples.is_empty() || !(width > 0.0 && width.is_finite()) {
        return Vec::new();
    }
    samples.sort_by_key(|s| s.at);
    let last = samples.last().map_or(0.0, |s| s.at.as_secs_f64());
    let n = ((last / width).floor() as usize + 1).min(100_000);
    let mut windows: Vec<Vec<FinalSample>> = vec![Vec::new(); n];
    for s in samples {
        let i = ((s.at.as_secs_f64() / width) as usize).min(n - 1);
        windows[i].push(s);
    }
    windows
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let mut h = histogram();
            for s in &w {
                let _ = h.record(s.latency_us.max(1));
            }
            let exchange = w.iter().map(|s| s.exchange_time).filter(|t| *t > 0);
            Window {
                start_s: i as f64 * width,
                end_s: (i + 1) as f64 * width,
                finals: w.len() as u64,
                orders_per_s: w.len() as f64 / width,
                rejected: w.iter().filter(|s| s.rejected).count() as u64,
                p50_us: if w.is_empty() {
                    0
                } else {
                    h.value_at_quantile(0.5)
                },
                p99_us: if w.is_empty() {
                    0
                } else {
                    h.value_at_quantile(0.99)
                },
                exchange_from: exchange.clone().min().unwrap_or(0),
                exchange_to: exchange.max().unwrap_or(0),
            }
        })
        .collect()
}

/// `HH:MM:SS` of an exchange time at HOSE (UTC+7); `--` for none.
pub fn fmt_exchange_clock(t: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t)).ok();
    let offset = time::UtcOffset::from_hms(7, 0, 0).ok();
    match (t, at, offset) {
        (1.., Some(at), Some(offset)) => {
            let at = at.to_offset(offset);
            format!("{:02}:{:02}:{:02}", at.hour(), at.minute(), at.second())
        }
        _ => "--".into(),
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} orders from {} brokers in {:.3} s: {:.0} orders/s ({} accepted, {} rejected, {} fills)",
            self.orders, self.brokers, self.elapsed_s, self.throughput, self.accepted, self.rejected, self.fills
        )?;
        let start = if self.rate.is_some() { "due" } else { "send" };
        for (name, p) in [("accepted", self.accept_us), ("final", self.final_us)] {
            writeln!(
                f,
                "  {start}->{name:<9} us  p50 {:>7}  p90 {:>7}  p99 {:>7}  p99.9 {:>7}  max {:>7}",
                p.p50, p.p90, p.p99, p.p999, p.max
            )?;
        }
        if self.rate.is_some() {
            writeln!(f, "  (paced evenly; latency counted from each order's due time: coordinated omission corrected)")?;
        }
        if self.phase_at_start == self.phase_at_end {
            writeln!(f, "  phase {}", self.phase_at_start)?;
        } else {
            writeln!(
                f,
                "  phase {} at the start, {} at the end",
                self.phase_at_start, self.phase_at_end
            )?;
        }
        if !self.rejects_by_reason.is_empty() {
            let list: Vec<String> = self
                .rejects_by_reason
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            writeln!(f, "  rejects: {}", list.join(", "))?;
        }
        if self.passive_fills > 0 || self.expired > 0 {
            writeln!(
                f,
                "  resting orders: {} passive fills, {} expired at the close",
                self.passive_fills, self.expired
            )?;
        }
        if !self.timeline.is_empty() {
            writeln!(
                f,
                "  {:>7} {:>7} {:>8} {:>10} {:>8} {:>9} {:>9}  exchange time",
                "from_s", "to_s", "finals", "orders/s", "rejected", "p50_us", "p99_us"
            )?;
            for w in &self.timeline {
                writeln!(
                    f,
                    "  {:>7.1} {:>7.1} {:>8} {:>10.0} {:>8} {:>9} {:>9}  {}-{}",
                    w.start_s,
                    w.end_s,
                    w.finals,
                    w.orders_per_s,
                    w.rejected,
                    w.p50_us,
                    w.p99_us,
                    fmt_exchange_clock(w.exchange_from),
                    fmt_exchange_clock(w.exchange_to)
                )?;
            }
        }
        Ok(())
    }
}

pub struct LoadConfig {
    pub target: GridTarget,
    pub credentials: PathBuf,
    pub orders: u64,
    pub brokers: u32,
    /// Orders per second over all brokers; `None` sends as fast as possible.
    pub rate: Option<f64>,
    pub seed: u64,
    pub progress: bool,
    /// Seconds per window of the report's timeline (`None`: no timeline).
    pub timeline_s: Option<f64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds")
}

/// The listing a manager announced, as a table with the same ids.
pub fn table_from(welcome: &Welcome) -> anyhow::Result<SecurityTable> {
    let mut t = SecurityTable::new();
    for s in &welcome.securities {
        let id = t.add(&s.code, s.reference_price)?;
        if id != s.id {
            bail!("the manager's security ids are not dense");
        }
    }
    Ok(t)
}

/// An open session to the manager.
pub struct Session {
    pub conn: quinn::Connection,
    pub writer: transport::FrameWriter,
    pub reader: transport::FrameReader,
    pub welcome: Welcome,
    /// Keeps the endpoint (and its socket) alive as long as the session.
    pub endpoint: quinn::Endpoint,
}

/// Dials the manager and logs in.
pub async fn connect(target: &GridTarget, creds: Credentials) -> anyhow::Result<Session> {
    let endpoint = transport::quic::client_endpoint(&target.ca)?;
    let addr = transport::quic::resolve(&target.manager)?;
    let (conn, writer, reader, welcome) = transport::quic::connect(&endpoint, addr, creds)
        .await
        .with_context(|| format!("connecting to the manager at {addr}"))?;
    Ok(Session {
        conn,
        writer,
        reader,
        welcome,
        endpoint,
    })
}

/// Runs K broker sessions over the generated flow and measures it.
pub async fn run_load(cfg: LoadConfig) -> anyhow::Result<LoadReport> {
    let text = std::fs::read_to_string(&cfg.credentials)
        .with_context(|| format!("reading {}", cfg.credentials.display()))?;
    let creds = transport::credentials::parse(&text, &cfg.credentials.display().to_string())?;
    if cfg.brokers == 0 || cfg.brokers as usize > creds.len() {
        bail!(
            "--brokers {} but {} has {} brokers",
            cfg.brokers,
            cfg.credentials.display(),
            creds.len()
        );
    }
    if cfg.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("--rate must be a positive number of orders per second");
    }
    if let Some(rate) = cfg.rate {
        let span = cfg.orders as f64 / rate;
        if span > crate::pace::MAX_SCHEDULE.as_secs_f64() {
            bail!(
                "--rate {rate} would spread {} orders over {span:.0} s; a paced run may last at most {} s",
                cfg.orders,
                crate::pace::MAX_SCHEDULE.as_secs()
            );
        }
    }
    let creds: Vec<(String, String)> = creds.into_iter().take(cfg.brokers as usize).collect();
    let mut sessions = Vec::new();
    for (name, secret) in &creds {
        let c = Credentials::Broker {
            name: name.clone(),
            secret: secret.clone(),
        };
        sessions.push(connect(&cfg.target, c).await?);
    }
    let phase_at_start = sessions[0].welcome.phase;
    let securities = table_from(&sessions[0].welcome)?;
    let rules =
        MarketRules::from_str(&sessions[0].welcome.rules).map_err(|e| anyhow::anyhow!("{e}"))?;
    let gen = crate::generate::GenConfig {
        orders: cfg.orders,
        seed: cfg.seed,
        brokers: cfg.brokers,
        ..crate::generate::GenConfig::default()
    };
    let rows = crate::generate::generate(&gen, &securities, &rules);
    // Generator broker i is the i-th credentialed broker; each session sends its own rows, in
    // its own id namespace, above every id it used before (so runs can repeat against one
    // manager; the flow itself stays the seed's).
    let mut per_broker: Vec<Vec<Command>> = vec![Vec::new(); cfg.brokers as usize];
    let mut names = BrokerRegistry::new();
    for i in 0..cfg.brokers {
        names.intern(&crate::generate::broker_name(i));
    }
    for row in &rows {
        let mut cmd = matching::stream::to_command(row, &securities, &mut names);
        let Some(b) = cmd.broker().map(|b| b.0 as usize) else {
            continue; // phase rows are the exchange's, not a broker's
        };
        if b >= per_broker.len() {
            bail!(
                "generated broker {} is not one of the {} sessions",
                row.broker,
                cfg.brokers
            );
        }
        let offset = sessions[b].welcome.max_order_id;
        shift_order_id(&mut cmd, offset);
        per_broker[b].push(cmd);
    }
    let total: usize = per_broker.iter().map(Vec::len).sum();
    let bar = progress_bar(cfg.progress && total >= 20_000, total as u64);
    let start = Instant::now();
    let mut tasks = Vec::new();
    let keep_samples = cfg.timeline_s.is_some();
    let rate = cfg.rate.map(|r| r / cfg.brokers as f64);
    let lanes: Vec<Arc<Lane>> = sessions
        .iter()
        .zip(&per_broker)
        .map(|(s, cmds)| Lane::new(cmds.len(), s.welcome.limits.max_in_flight as usize, rate))
        .collect();
    crate::pace::spawn_pacer(lanes.clone(), start).context("starting the pacer thread")?;
    for ((s, cmds), lane) in sessions.into_iter().zip(per_broker).zip(lanes) {
        let bar = bar.clone();
        tasks.push(tokio::spawn(async move {
            let Session {
                conn,
                writer,
                reader,
                welcome,
                endpoint,
            } = s;
            let pacing = Pacing {
                start,
                keep_samples,
            };
            let r = broker_session(writer, reader, welcome.limits, cmds, lane, pacing, bar).await;
            conn.close(0u32.into(), b"done");
            drop(endpoint);
            r
        }));
    }
    let (mut accept, mut fin) = (histogram(), histogram());
    let mut report = LoadReport {
        orders: total as u64,
        brokers: cfg.brokers,
        mode: if cfg.rate.is_some() { "rate" } else { "max" },
        rate: cfg.rate,
        elapsed_s: 0.0,
        throughput: 0.0,
        accepted: 0,
        rejected: 0,
        fills: 0,
        accept_us: Percentiles::default(),
        final_us: Percentiles::default(),
        phase_at_start: phase_at_start.as_str().into(),
        phase_at_end: String::new(),
        rejects_by_reason: Default::default(),
        passive_fills: 0,
        expired: 0,
        timeline: Vec::new(),
    };
    let mut last_final = Duration::ZERO;
    let mut samples = Vec::new();
    for t in tasks {
        let s = t.await.context("broker session panicked")??;
        accept.add(&s.accept)?;
        fin.add(&s.fin)?;
        report.accepted += s.tracker.accepted;
        report.rejected += s.tracker.rejected;
        report.fills += s.tracker.fills;
        report.passive_fills += s.tracker.passive_fills;
        report.expired += s.tracker.expired;
        for (reason, n) in RejectReason::ALL.iter().zip(s.tracker.rejects_by_reason) {
            if n > 0 {
                *report
                    .rejects_by_reason
                    .entry(reason.code().to_string())
                    .or_default() += n;
            }
        }
        last_final = last_final.max(s.last_final);
        samples.extend(s.samples);
    }
    bar.finish_and_clear();
    if let Some(width) = cfg.timeline_s {
        report.timeline = timeline(samples, width);
    }
    // The phase now: a fresh handshake tells it (the manager may have moved through the day).
    let (name, secret) = &creds[0];
    let end = connect(
        &cfg.target,
        Credentials::Broker {
            name: name.clone(),
            secret: secret.clone(),
        },
    )
    .await?;
    report.phase_at_end = end.welcome.phase.as_str().into();
    end.conn.close(0u32.into(), b"done");
    report.elapsed_s = last_final.as_secs_f64();
    report.throughput = if report.elapsed_s > 0.0 {
        total as f64 / report.elapsed_s
    } else {
        0.0
    };
    report.accept_us = Percentiles::of(&accept);
    report.final_us = Percentiles::of(&fin);
    Ok(report)
}

fn shift_order_id(cmd: &mut Command, offset: u64) {
    match cmd {
        Command::New(o) => o.id.0 += offset,
        Command::Cancel(c) => c.id.0 += offset,
        Command::Amend(a) => a.id.0 += offset,
        Command::Phase(_) => {}
    }
}

fn progress_bar(show: bool, len: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} orders final ({per_sec})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

struct SessionResult {
    tracker: Tracker,
    accept: Histogram<u64>,
    fin: Histogram<u64>,
    last_final: Duration,
    /// Every order's final state, when a timeline was asked for.
    samples: Vec<FinalSample>,
}

/// The run's common start, and whether to keep per-order samples for a timeline.
#[derive(Clone, Copy)]
struct Pacing {
    start: Instant,
    keep_samples: bool,
}

/// A submit frame of `cmds[i]` for each index `i`, the index as its client reference (reports
/// are matched back to rows by it).
fn submit_of(cmds: &[Command], indices: impl IntoIterator<Item = usize>) -> ClientMsg {
    ClientMsg::Submit(
        indices
            .into_iter()
            .map(|i| ClientCommand {
                client_ref: i as u64,
                command: cmds[i],
            })
            .collect(),
    )
}

/// Sends the lane's orders as the pacer releases them: whatever was released since the last
/// frame goes in one (or a few, `batch` at most each).
fn paced_sender(
    mut writer: transport::FrameWriter,
    cmds: Vec<Command>,
    lane: Arc<Lane>,
    batch: usize,
) -> tokio::task::JoinHandle<anyhow::Result<transport::FrameWriter>> {
    tokio::spawn(async move {
        let mut sent = 0;
        while sent < cmds.len() {
            let released = lane.released_beyond(sent).await;
            while sent < released {
                let end = (sent + batch).min(released);
                writer.send(&submit_of(&cmds, sent..end)).await?;
                sent = end;
            }
        }
        Ok(writer)
    })
}

/// Sends the lane's orders as fast as the in-flight window allows, `batch` at most per frame.
fn max_sender(
    mut writer: transport::FrameWriter,
    cmds: Vec<Command>,
    lane: Arc<Lane>,
    start: Instant,
    batch: usize,
) -> tokio::task::JoinHandle<anyhow::Result<transport::FrameWriter>> {
    tokio::spawn(async move {
        let mut sent = 0;
        while sent < cmds.len() {
            let room = lane.room(sent);
            if room == 0 {
                tokio::time::sleep(Duration::from_micros(200)).await;
                continue;
            }
            let end = (sent + batch.min(room)).min(cmds.len());
            lane.mark_sent(sent, end, start.elapsed().as_nanos() as u64);
            writer.send(&submit_of(&cmds, sent..end)).await?;
            sent = end;
        }
        Ok(writer)
    })
}

/// Closes a lane when its session ends, however it ends, so the pacer stops serving it.
struct CloseOnDrop(Arc<Lane>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

async fn broker_session(
    writer: transport::FrameWriter,
    mut reader: transport::FrameReader,
    limits: SessionLimits,
    cmds: Vec<Command>,
    lane: Arc<Lane>,
    pacing: Pacing,
    bar: indicatif::ProgressBar,
) -> anyhow::Result<SessionResult> {
    let Pacing {
        start,
        keep_samples,
    } = pacing;
    let n = cmds.len();
    let _close = CloseOnDrop(lane.clone());
    let batch = (limits.max_batch as usize).clamp(1, 512);
    let sender = if lane.is_paced() {
        paced_sender(writer, cmds, lane.clone(), batch)
    } else {
        max_sender(writer, cmds, lane.clone(), start, batch)
    };
    let mut result = SessionResult {
        tracker: Tracker::new(n),
        accept: histogram(),
        fin: histogram(),
        last_final: Duration::ZERO,
        // Reserved whole: doubling a vector of a million samples mid-run is a pause of
        // milliseconds in the reader, which the figures would blame on the grid.
        samples: Vec::with_capacity(if keep_samples { n } else { 0 }),
    };
    // Per command: whether it was rejected (for the timeline).
    let mut rejected = vec![false; if keep_samples { n } else { 0 }];
    // Reports of one frame arrived together: one clock reading serves them all (and the
    // decoding of the first does not count against the last).
    let since = |now: Duration, pos: usize| now.saturating_sub(lane.due(pos)).as_micros() as u64;
    while !result.tracker.finished() {
        let reports = next_reports(&mut reader).await?;
        let arrived = start.elapsed();
        // Counted once per frame: the progress bar reads the clock on every update.
        let mut finals = 0;
        for r in &reports {
            let (progress, pos) = result.tracker.on_report(r)?;
            if let (Some(pos), ReportEvent::Rejected { .. }) = (pos, r.event) {
                if let Some(flag) = rejected.get_mut(pos) {
                    *flag = true;
                }
            }
            match progress {
                Progress::Accepted { pos } => {
                    result.accept.record(since(arrived, pos).max(1))?;
                }
                Progress::Final { pos } => {
                    let us = since(arrived, pos);
                    result.fin.record(us.max(1))?;
                    result.last_final = arrived;
                    if keep_samples {
                        result.samples.push(FinalSample {
                            at: arrived,
                            latency_us: us,
                            rejected: rejected.get(pos).copied().unwrap_or(false),
                            exchange_time: r.time,
                        });
                    }
                    finals += 1;
                }
                Progress::Nothing => {}
            }
        }
        lane.complete(finals);
        bar.inc(finals as u64);
    }
    let _writer = sender.await.context("sender panicked")??;
    Ok(result)
}

/// Declares `names` as brokers on a gateway session (in chunks the manager accepts) and returns
/// the grid's id of each, in order.
pub async fn declare_brokers(
    writer: &mut transport::FrameWriter,
    reader: &mut transport::FrameReader,
    names: &[String],
) -> anyhow::Result<Vec<matching::BrokerId>> {
    let mut ids = Vec::with_capacity(names.len());
    for chunk in names.chunks(proto::limits::MAX_DECLARED) {
        writer
            .send(&ClientMsg::DeclareBrokers(chunk.to_vec()))
            .await?;
        let answer = await_reply(reader, |m| match m {
            ManagerToClient::Brokers(ids) => Some(ids),
            _ => None,
        })
        .await?;
        if answer.len() != chunk.len() {
            bail!(
                "declared {} brokers, the manager answered {}",
                chunk.len(),
                answer.len()
            );
        }
        ids.extend(answer.into_iter().map(|(_, id)| id));
    }
    Ok(ids)
}

/// Reads messages until `pick` takes one; a manager error ends the wait.
pub async fn await_reply<T>(
    reader: &mut transport::FrameReader,
    mut pick: impl FnMut(ManagerToClient) -> Option<T>,
) -> anyhow::Result<T> {
    loop {
        match reader
            .recv::<ManagerToClient>()
            .await?
            .context("the manager closed the session early")?
        {
            ManagerToClient::Error(e) => bail!("the manager reported: {e}"),
            m => {
                if let Some(t) = pick(m) {
                    return Ok(t);
                }
            }
        }
    }
}

/// The next batch of reports; a manager error or a closed session ends the run.
pub async fn next_reports(reader: &mut transport::FrameReader) -> anyhow::Result<Vec<Report>> {
    await_reply(reader, |m| match m {
        ManagerToClient::Reports(r) => Some(r),
        _ => None,
    })
    .await
}

/// Collects a split answer: the items of every frame `part` picks (with whether it is the
/// answer's last frame), until the last.
async fn collect_parts<T>(
    reader: &mut transport::FrameReader,
    mut part: impl FnMut(ManagerToClient) -> Option<(Vec<T>, bool)>,
) -> anyhow::Result<Vec<T>> {
    let mut all = Vec::new();
    loop {
        let (items, last) = await_reply(reader, &mut part).await?;
        all.extend(items);
        if last {
            return Ok(all);
        }
    }
}

/// Collects a split answer: every `Orders` frame of query `query` until the last.
pub async fn collect_orders(
    reader: &mut transport::FrameReader,
    query: u64,
) -> anyhow::Result<Vec<OrderStatus>> {
    collect_parts(reader, |m| match m {
        ManagerToClient::Orders {
            query: q,
            orders,
            last,
        } if q == query => Some((orders, last)),
        _ => None,
    })
    .await
}

/// Collects a split answer: every `Totals` frame of query `query` until the last.
pub async fn collect_totals(
    reader: &mut transport::FrameReader,
    query: u64,
) -> anyhow::Result<Vec<(matching::SecurityId, matching::Qty, matching::Qty)>> {
    collect_parts(reader, |m| match m {
        ManagerToClient::Totals {
            query: q,
            totals,
            last,
        } if q == query => Some((totals, last)),
        _ => None,
    })
    .await
}

/// Replays `rows` through the grid as one gateway session, in file order (so the file order is
/// the sequence order), and collects each command's events. The manager must be fresh (nothing
/// sequenced yet) and run the same rules, or the result could not equal a local replay: then
/// this fails before sending anything.
pub async fn replay_grid(
    target: &GridTarget,
    token: &str,
    securities_file: &SecurityTable,
    rules: Option<MarketRules>,
    rows: &[OrderRow],
    progress: bool,
    mut acks: Option<&mut dyn std::io::Write>,
) -> anyhow::Result<ReplayCollector> {
    let Session {
        conn,
        mut writer,
        mut reader,
        welcome,
        endpoint: _endpoint,
    } = connect(
        target,
        Credentials::Gateway {
            token: token.to_string(),
        },
    )
    .await?;
    let securities = table_from(&welcome)?;
    if securities.to_csv() != securities_file.to_csv() {
        bail!("the manager lists different securities than --securities; start it with the same listing (--securities FILE)");
    }
    if let Some(r) = rules {
        if r.name() != welcome.rules {
            bail!(
                "--rules {} but the manager runs {}: start it with --rules {}",
                r.name(),
                welcome.rules,
                r.name()
            );
        }
    }
    if welcome.sequenced > 0 {
        bail!(
            "the manager at {} has already sequenced {} commands (its journal is not empty, or its schedule is running), so a replay through it cannot equal `replay --local`: start a manager on a fresh --data-dir with --schedule continuous for each replay",
            target.manager,
            welcome.sequenced
        );
    }
    let mut local = BrokerRegistry::new();
    let cmds_local: Vec<Command> = rows
        .iter()
        .map(|r| matching::stream::to_command(r, &securities, &mut local))
        .collect();
    let names: Vec<String> = (0..local.len() as u32)
        .map(|i| {
            local
                .name(matching::BrokerId(i))
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let map = declare_brokers(&mut writer, &mut reader, &names)
        .await
        .context("declaring the file's brokers")?;
    let cmds: Vec<Command> = cmds_local
        .into_iter()
        .map(|mut c| {
            if let Some(b) = c.broker() {
                c.set_broker(map[b.0 as usize]);
            }
            c
        })
        .collect();
    let n = cmds.len();
    let batch = (welcome.limits.max_batch as usize).clamp(1, 2048);
    let lane = Lane::new(n, welcome.limits.max_in_flight as usize, None);
    let sender = max_sender(writer, cmds, lane.clone(), Instant::now(), batch);
    let bar = progress_bar(progress && n >= 20_000, n as u64);
    let mut collector = ReplayCollector::new(&securities);
    let mut tracker = Tracker::new(n);
    let mut pending: rustc_hash::FxHashMap<usize, Vec<Event>> = rustc_hash::FxHashMap::default();
    while !tracker.finished() {
        // Counted once per frame: the progress bar reads the clock on every update.
        let mut finals = 0;
        for r in &next_reports(&mut reader).await? {
            let (progress, pos) = tracker.on_report(r)?;
            if let (Progress::Accepted { .. }, Some(w)) = (progress, acks.as_mut()) {
                writeln!(w, "{},{}", r.order.0, r.seq)?;
            }
            let Some(pos) = pos else { continue };
            if let Some(ev) = r.event.to_engine_event(r.order) {
                pending.entry(pos).or_default().push(ev);
            }
            if let Progress::Final { pos } = progress {
                let events = pending.remove(&pos).unwrap_or_default();
                collector.record(pos as u64, &events);
                finals += 1;
            }
        }
        lane.complete(finals);
        bar.inc(finals as u64);
        if let Some(w) = acks.as_mut() {
            w.flush()?;
        }
    }
    bar.finish_and_clear();
    let mut writer = sender.await.context("sender panicked")??;
    // The books' final totals come from the manager: exact even when this run's events do not
    // cover every book.
    writer.send(&ClientMsg::QueryTotals { query: 1 }).await?;
    let totals = collect_totals(&mut reader, 1).await?;
    collector.set_final_totals(&totals);
    conn.close(0u32.into(), b"done");
    Ok(collector)
}

/// Header of `user-sim orders` output.
pub const ORDERS_STATE_HEADER: &str = "order_id,security,side,type,price,qty,filled,state,reason";

/// Logs in as `broker` (secret from the credentials file) and asks the manager for the state of
/// that broker's orders (all of them if `ids` is empty). Returns CSV ([`ORDERS_STATE_HEADER`]),
/// sorted by order id, in the broker's own id namespace.
pub async fn query_orders(
    target: &GridTarget,
    credentials: &Path,
    broker: &str,
    ids: &[u64],
) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(credentials)
        .with_context(|| format!("reading {}", credentials.display()))?;
    let creds = transport::credentials::parse(&text, &credentials.display().to_string())?;
    let Some(secret) = creds.get(broker) else {
        bail!("broker {broker} is not in {}", credentials.display());
    };
    let Session {
        conn,
        mut writer,
        mut reader,
        welcome,
        endpoint: _endpoint,
    } = connect(
        target,
        Credentials::Broker {
            name: broker.to_string(),
            secret: secret.clone(),
        },
    )
    .await?;
    let securities = table_from(&welcome)?;
    let mut orders = Vec::new();
    let ids: Vec<OrderId> = ids.iter().map(|i| OrderId(*i)).collect();
    let chunks: Vec<Vec<OrderId>> = if ids.is_empty() {
        vec![Vec::new()]
    } else {
        ids.chunks(proto::limits::MAX_QUERY_IDS)
            .map(<[OrderId]>::to_vec)
            .collect()
    };
    for (q, chunk) in chunks.into_iter().enumerate() {
        writer
            .send(&ClientMsg::QueryOrders {
                query: q as u64,
                ids: chunk,
            })
            .await?;
        orders.extend(collect_orders(&mut reader, q as u64).await?);
    }
    conn.close(0u32.into(), b"done");
    let mut out = String::from(ORDERS_STATE_HEADER);
    out.push('\n');
    for o in orders {
        use std::fmt::Write as _;
        let state = match o.state {
            proto::OrderState::Pending => "PENDING",
            proto::OrderState::Resting => "RESTING",
            proto::OrderState::Filled => "FILLED",
            proto::OrderState::Cancelled => "CANCELLED",
            proto::OrderState::Expired => "EXPIRED",
            proto::OrderState::Rejected => "REJECTED",
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{}",
            o.id.0,
            securities.code(o.security).unwrap_or("?"),
            o.side.as_str(),
            o.kind.as_str(),
            o.price,
            o.qty,
            o.filled,
            state,
            o.reject.map_or("", |r| r.code())
        );
    }
    Ok(out)
}

/// `replay --manager`: reads the files of `job`, replays through the grid, writes the same
/// three files `replay --local` writes.
pub async fn run_grid_replay(
    target: &GridTarget,
    token: &str,
    job: &crate::replay::LocalReplay,
    rules: Option<MarketRules>,
    acks_out: Option<&Path>,
) -> anyhow::Result<crate::replay::ReplaySummary> {
    let start = Instant::now();
    let securities = crate::replay::read_securities(&job.securities)?;
    let text = std::fs::read_to_string(&job.orders)
        .with_context(|| format!("reading {}", job.orders.display()))?;
    let rows = matching::stream::parse_orders(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", job.orders.display()))?;
    let mut acks = match acks_out {
        Some(p) => {
            let f =
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
            let mut w = std::io::BufWriter::new(f);
            writeln!(w, "order_id,seq")?;
            Some(w)
        }
        None => None,
    };
    let out = replay_grid(
        target,
        token,
        &securities,
        rules,
        &rows,
        true,
        acks.as_mut().map(|w| w as &mut dyn std::io::Write),
    )
    .await?;
    for (path, text) in [
        (&job.trades_out, out.trades_csv()),
        (&job.totals_out, out.totals_csv()),
        (&job.rejects_out, out.rejects_csv()),
    ] {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(crate::replay::ReplaySummary {
        orders: rows.len(),
        trades: out.trade_count(),
        rejects: out.reject_count(),
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use matching::{RejectReason, SecurityId};

    fn rep(client_ref: u64, seq: u64, event: ReportEvent, last: bool) -> Report {
        Report {
            client_ref,
            seq,
            time: 0,
            order: OrderId(1),
            event,
            last,
            passive: false,
        }
    }

    #[test]
    fn tracker_correlates_by_client_reference_in_any_order() {
        let mut t = Tracker::new(3);
        let totals = ReportEvent::Totals {
            security: SecurityId(0),
            bid_total: 0,
            ask_total: 0,
        };
        let rej = ReportEvent::Rejected {
            reason: RejectReason::OffTick,
        };
        // A gateway reject of command 1 arrives before the acceptance of command 0.
        assert_eq!(
            t.on_report(&rep(1, 0, rej, true)).unwrap().0,
            Progress::Final { pos: 1 }
        );
        assert_eq!(
            t.on_report(&rep(2, 11, ReportEvent::Accepted, false))
                .unwrap()
                .0,
            Progress::Accepted { pos: 2 }
        );
        assert_eq!(
            t.on_report(&rep(0, 10, ReportEvent::Accepted, false))
                .unwrap()
                .0,
            Progress::Accepted { pos: 0 }
        );
        // An engine reject (a cancel of a filled order) completes command 2 before command 0.
        let engine_rej = ReportEvent::Rejected {
            reason: RejectReason::OrderNotLive,
        };
        assert_eq!(
            t.on_report(&rep(2, 11, engine_rej, false)).unwrap().0,
            Progress::Nothing
        );
        assert_eq!(
            t.on_report(&rep(2, 11, totals, true)).unwrap().0,
            Progress::Final { pos: 2 }
        );
        assert!(!t.finished());
        assert_eq!(
            t.on_report(&rep(0, 10, totals, true)).unwrap().0,
            Progress::Final { pos: 0 }
        );
        assert!(t.finished());
        assert_eq!((t.accepted, t.rejected), (2, 2));
        assert!(
            t.on_report(&rep(0, 10, totals, true)).is_err(),
            "after final"
        );
        assert!(
            t.on_report(&rep(7, 10, totals, true)).is_err(),
            "unknown ref"
        );
        let mut passive = rep(99, 12, totals, false);
        passive.passive = true;
        assert_eq!(t.on_report(&passive).unwrap().0, Progress::Nothing);
        // Rejects are counted per reason; expiries at the close apart from other cancels.
        assert_eq!(t.rejects_by_reason[reason_index(RejectReason::OffTick)], 1);
        assert_eq!(
            t.rejects_by_reason[reason_index(RejectReason::OrderNotLive)],
            1
        );
        for reason in [CancelReason::Expired, CancelReason::Unfilled] {
            let mut c = rep(0, 13, ReportEvent::Cancelled { qty: 100, reason }, false);
            c.passive = true;
            t.on_report(&c).unwrap();
        }
        assert_eq!((t.passive_cancels, t.expired), (2, 1));
    }

    #[test]
    fn timeline_windows_count_rates_rejects_and_exchange_times() {
        let sample = |ms: u64, us: u64, rejected: bool, t: i64| FinalSample {
            at: Duration::from_millis(ms),
            latency_us: us,
            rejected,
            exchange_time: t,
        };
        let samples = vec![
            sample(2_500, 900, false, 30),
            sample(100, 100, false, 10),
            sample(900, 300, true, 20),
            // Nothing in [1 s, 2 s): an empty window, not a missing one.
        ];
        let w = timeline(samples, 1.0);
        assert_eq!(w.len(), 3);
        assert_eq!((w[0].finals, w[0].rejected, w[0].orders_per_s), (2, 1, 2.0));
        assert_eq!((w[0].exchange_from, w[0].exchange_to), (10, 20));
        assert!(w[0].p50_us >= 100 && w[0].p99_us >= 300 && w[0].p99_us < 310);
        assert_eq!((w[1].finals, w[1].p99_us, w[1].exchange_from), (0, 0, 0));
        assert_eq!((w[2].start_s, w[2].finals, w[2].exchange_to), (2.0, 1, 30));
        assert!(timeline(Vec::new(), 1.0).is_empty());
        assert!(timeline(vec![sample(1, 1, false, 0)], 0.0).is_empty());
        assert!(timeline(vec![sample(1, 1, false, 0)], f64::NAN).is_empty());
        // A huge run with tiny windows stays bounded.
        assert!(timeline(vec![sample(10_000_000, 1, false, 0)], 0.001).len() <= 100_000);
    }

    #[test]
    fn exchange_clock_is_hose_local_time() {
        // 2026-01-09 02:07:30 UTC is 09:07:30 at HOSE.
        assert_eq!(fmt_exchange_clock(1_767_924_450_000_000_000), "09:07:30");
        assert_eq!(fmt_exchange_clock(0), "--");
        assert_eq!(fmt_exchange_clock(-5), "--");
    }
}
