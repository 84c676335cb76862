//! The grid client: broker sessions that send a generated flow and measure it, and the gateway
//! session that replays an orders file through the grid.
//!
//! [`Tracker`] is the sans-I/O part: it matches the manager's reports to submitted commands.
//! The manager answers every submitted command, in submission order, with exactly one first
//! report (`Accepted` with its sequence number, or `Rejected` with sequence 0); every later
//! report names the sequence number; the command's final report has `last` set.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use matching::stream::{BrokerRegistry, OrderRow, ReplayCollector};
use matching::{Command, Event, MarketRules, SecurityTable};
use proto::{ClientMsg, Credentials, ManagerToClient, Report, Welcome};
use rustc_hash::FxHashMap;
use serde::Serialize;

/// Commands per submitted frame.
const BATCH: usize = 512;

/// Where the manager is and how to trust it.
#[derive(Clone, Debug)]
pub struct GridTarget {
    pub manager: String,
    pub ca: PathBuf,
}

/// What happened to one command, as far as the tracker can tell from one report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// First report: the command at `pos` was accepted (journaled and sequenced).
    Accepted { pos: usize },
    /// The command at `pos` reached its final state.
    Final { pos: usize },
    /// Nothing to record (an intermediate event, or a passive fill).
    Nothing,
}

#[derive(Default)]
pub struct Tracker {
    next_first: usize,
    by_seq: FxHashMap<u64, usize>,
    pub completed: usize,
    pub accepted: u64,
    pub rejected: u64,
    pub fills: u64,
    pub passive_fills: u64,
}

impl Tracker {
    /// Positions are indices into the session's submitted commands.
    pub fn on_report(&mut self, r: &Report) -> anyhow::Result<(Progress, Option<usize>)> {
        if r.passive {
            self.passive_fills += 1;
            return Ok((Progress::Nothing, None));
        }
        let pos = match r.event {
            Event::Accepted { .. } if r.seq != 0 && !r.last => {
                let pos = self.next_first;
                self.next_first += 1;
                self.by_seq.insert(r.seq, pos);
                self.accepted += 1;
                return Ok((Progress::Accepted { pos }, Some(pos)));
            }
            Event::Rejected { .. } if r.seq == 0 => {
                let pos = self.next_first;
                self.next_first += 1;
                pos
            }
            _ => match self.by_seq.get(&r.seq) {
                Some(p) => *p,
                None => bail!("report for unknown sequence number {}", r.seq),
            },
        };
        match r.event {
            Event::Fill(_) => self.fills += 1,
            Event::Rejected { .. } => self.rejected += 1,
            _ => {}
        }
        if r.last {
            self.by_seq.remove(&r.seq);
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
    pub accept_us: Percentiles,
    pub final_us: Percentiles,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} orders from {} brokers in {:.3} s: {:.0} orders/s ({} accepted, {} rejected, {} fills)",
            self.orders, self.brokers, self.elapsed_s, self.throughput, self.accepted, self.rejected, self.fills
        )?;
        for (name, p) in [
            ("send->accepted", self.accept_us),
            ("send->final", self.final_us),
        ] {
            writeln!(
                f,
                "  {name:<15} us  p50 {:>7}  p90 {:>7}  p99 {:>7}  p99.9 {:>7}  max {:>7}",
                p.p50, p.p90, p.p99, p.p999, p.max
            )?;
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
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds")
}

fn table_from(welcome: &Welcome) -> anyhow::Result<SecurityTable> {
    let mut t = SecurityTable::new();
    for s in &welcome.securities {
        let id = t.add(&s.code, s.reference_price)?;
        if id != s.id {
            bail!("the manager's security ids are not dense");
        }
    }
    Ok(t)
}

async fn connect(
    target: &GridTarget,
    creds: Credentials,
) -> anyhow::Result<(
    quinn::Connection,
    proto::FrameWriter,
    proto::FrameReader,
    Welcome,
    quinn::Endpoint,
)> {
    let endpoint = proto::quic::client_endpoint(&target.ca)?;
    let addr = proto::quic::resolve(&target.manager)?;
    let (conn, w, r, welcome) = proto::quic::connect(&endpoint, addr, creds)
        .await
        .with_context(|| format!("connecting to the manager at {addr}"))?;
    Ok((conn, w, r, welcome, endpoint))
}

/// Runs K broker sessions over the generated flow and measures it.
pub async fn run_load(cfg: LoadConfig) -> anyhow::Result<LoadReport> {
    let text = std::fs::read_to_string(&cfg.credentials)
        .with_context(|| format!("reading {}", cfg.credentials.display()))?;
    let creds = proto::credentials::parse(&text, &cfg.credentials.display().to_string())?;
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
    let creds: Vec<(String, String)> = creds.into_iter().take(cfg.brokers as usize).collect();
    let mut sessions = Vec::new();
    for (name, secret) in &creds {
        let c = Credentials::Broker {
            name: name.clone(),
            secret: secret.clone(),
        };
        sessions.push(connect(&cfg.target, c).await?);
    }
    let welcome = &sessions[0].3;
    let securities = table_from(welcome)?;
    let rules = MarketRules::from_str(&welcome.rules).map_err(|e| anyhow::anyhow!("{e}"))?;
    let gen = crate::generate::GenConfig {
        orders: cfg.orders,
        seed: cfg.seed,
        brokers: cfg.brokers,
        ..crate::generate::GenConfig::default()
    };
    let mut rows = crate::generate::generate(&gen, &securities, &rules);
    // Start above every id the manager has seen, so repeated runs against one manager do not
    // collide (the flow itself stays the seed's).
    for row in &mut rows {
        row.order_id += welcome.max_order_id;
    }
    // Generator broker i is the i-th credentialed broker; each session sends its own rows.
    let mut per_broker: Vec<Vec<Command>> = vec![Vec::new(); cfg.brokers as usize];
    let mut names = BrokerRegistry::new();
    for i in 0..cfg.brokers {
        names.intern(&crate::generate::broker_name(i));
    }
    for row in &rows {
        let cmd = matching::stream::to_command(row, &securities, &mut names);
        let b = cmd.broker().0 as usize;
        if b >= per_broker.len() {
            bail!(
                "generated broker {} is not one of the {} sessions",
                row.broker,
                cfg.brokers
            );
        }
        per_broker[b].push(cmd);
    }
    let total: usize = per_broker.iter().map(Vec::len).sum();
    let bar = progress_bar(cfg.progress && total >= 20_000, total as u64);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for ((conn, writer, reader, _, endpoint), cmds) in sessions.into_iter().zip(per_broker) {
        let rate = cfg.rate.map(|r| r / cfg.brokers as f64);
        let bar = bar.clone();
        tasks.push(tokio::spawn(async move {
            let r = broker_session(writer, reader, cmds, rate, start, bar).await;
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
    };
    let mut last_final = Duration::ZERO;
    for t in tasks {
        let s = t.await.context("broker session panicked")??;
        accept.add(&s.accept)?;
        fin.add(&s.fin)?;
        report.accepted += s.tracker.accepted;
        report.rejected += s.tracker.rejected;
        report.fills += s.tracker.fills;
        last_final = last_final.max(s.last_final);
    }
    bar.finish_and_clear();
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
}

async fn broker_session(
    mut writer: proto::FrameWriter,
    mut reader: proto::FrameReader,
    cmds: Vec<Command>,
    rate: Option<f64>,
    start: Instant,
    bar: indicatif::ProgressBar,
) -> anyhow::Result<SessionResult> {
    let n = cmds.len();
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let sender = {
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            let mut pos = 0;
            while pos < cmds.len() {
                let end = match rate {
                    None => (pos + BATCH).min(cmds.len()),
                    Some(r) => {
                        // Send what is due by now (at least one), pacing against the start.
                        let due_at = start + Duration::from_secs_f64(pos as f64 / r);
                        tokio::time::sleep_until(due_at.into()).await;
                        let due = (start.elapsed().as_secs_f64() * r) as usize + 1;
                        due.clamp(pos + 1, (pos + BATCH).min(cmds.len()))
                    }
                };
                let now = start.elapsed().as_nanos() as u64;
                for s in &sent_at[pos..end] {
                    s.store(now.max(1), Ordering::Relaxed);
                }
                writer
                    .send(&ClientMsg::Submit(cmds[pos..end].to_vec()))
                    .await?;
                pos = end;
            }
            Ok::<_, anyhow::Error>(writer)
        })
    };
    let mut result = SessionResult {
        tracker: Tracker::default(),
        accept: histogram(),
        fin: histogram(),
        last_final: Duration::ZERO,
    };
    let since = |pos: usize| {
        let now = start.elapsed();
        let sent = Duration::from_nanos(sent_at[pos].load(Ordering::Relaxed));
        (now, now.saturating_sub(sent).as_micros() as u64)
    };
    while result.tracker.completed < n {
        for r in &next_reports(&mut reader).await? {
            match result.tracker.on_report(r)?.0 {
                Progress::Accepted { pos } => {
                    result.accept.record(since(pos).1.max(1))?;
                }
                Progress::Final { pos } => {
                    let (now, us) = since(pos);
                    result.fin.record(us.max(1))?;
                    result.last_final = now;
                    bar.inc(1);
                }
                Progress::Nothing => {}
            }
        }
    }
    let _writer = sender.await.context("sender panicked")??;
    Ok(result)
}

/// Reads messages until `pick` takes one; a manager error ends the wait.
async fn await_reply<T>(
    reader: &mut proto::FrameReader,
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
async fn next_reports(reader: &mut proto::FrameReader) -> anyhow::Result<Vec<Report>> {
    await_reply(reader, |m| match m {
        ManagerToClient::Reports(r) => Some(r),
        _ => None,
    })
    .await
}

/// Replays `rows` through the grid as one gateway session, in file order (so the file order is
/// the sequence order), and collects each command's events.
pub async fn replay_grid(
    target: &GridTarget,
    token: &str,
    securities_file: &SecurityTable,
    rows: &[OrderRow],
    progress: bool,
    mut acks: Option<&mut dyn std::io::Write>,
) -> anyhow::Result<ReplayCollector> {
    let (conn, mut writer, mut reader, welcome, _endpoint) = connect(
        target,
        Credentials::Gateway {
            token: token.to_string(),
        },
    )
    .await?;
    let securities = table_from(&welcome)?;
    if securities.to_csv() != securities_file.to_csv() {
        bail!("the manager lists different securities than --securities; start it with the same listing");
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
    writer
        .send(&ClientMsg::DeclareBrokers(names.clone()))
        .await?;
    let ids = await_reply(&mut reader, |m| match m {
        ManagerToClient::Brokers(ids) => Some(ids),
        _ => None,
    })
    .await?;
    let remote: FxHashMap<&str, matching::BrokerId> =
        ids.iter().map(|(n, id)| (n.as_str(), *id)).collect();
    let map: Vec<matching::BrokerId> = names.iter().map(|n| remote[n.as_str()]).collect();
    let cmds: Vec<Command> = cmds_local
        .into_iter()
        .map(|mut c| {
            match &mut c {
                Command::New(o) => o.broker = map[o.broker.0 as usize],
                Command::Cancel(x) => x.broker = map[x.broker.0 as usize],
            }
            c
        })
        .collect();
    let n = cmds.len();
    let sender = tokio::spawn(async move {
        for chunk in cmds.chunks(BATCH * 4) {
            writer.send(&ClientMsg::Submit(chunk.to_vec())).await?;
        }
        Ok::<_, anyhow::Error>(writer)
    });
    let bar = progress_bar(progress && n >= 20_000, n as u64);
    let mut collector = ReplayCollector::new(&securities);
    let mut tracker = Tracker::default();
    let mut pending: FxHashMap<usize, Vec<Event>> = FxHashMap::default();
    while tracker.completed < n {
        for r in &next_reports(&mut reader).await? {
            let (progress, pos) = tracker.on_report(r)?;
            if let (Progress::Accepted { .. }, Some(w)) = (progress, acks.as_mut()) {
                writeln!(w, "{},{}", r.order.0, r.seq)?;
            }
            let Some(pos) = pos else { continue };
            pending.entry(pos).or_default().push(r.event);
            if let Progress::Final { pos } = progress {
                let events = pending.remove(&pos).unwrap_or_default();
                collector.record(pos as u64, &events);
                bar.inc(1);
            }
        }
        if let Some(w) = acks.as_mut() {
            w.flush()?;
        }
    }
    bar.finish_and_clear();
    let mut writer = sender.await.context("sender panicked")??;
    // The books' final totals come from the manager: exact even when this run's events do not
    // cover every book (a run resumed after a manager restart).
    writer.send(&ClientMsg::QueryTotals).await?;
    let totals = await_reply(&mut reader, |m| match m {
        ManagerToClient::Totals(t) => Some(t),
        _ => None,
    })
    .await?;
    collector.set_final_totals(&totals);
    conn.close(0u32.into(), b"done");
    Ok(collector)
}

/// Logs in as `broker` (secret from the credentials file) and asks the manager for the state of
/// that broker's orders (all of them if `ids` is empty). Returns CSV
/// `order_id,security,side,price,qty,filled,state`, sorted by order id.
pub async fn query_orders(
    target: &GridTarget,
    credentials: &Path,
    broker: &str,
    ids: &[u64],
) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(credentials)
        .with_context(|| format!("reading {}", credentials.display()))?;
    let creds = proto::credentials::parse(&text, &credentials.display().to_string())?;
    let Some(secret) = creds.get(broker) else {
        bail!("broker {broker} is not in {}", credentials.display());
    };
    let (conn, mut writer, mut reader, welcome, _endpoint) = connect(
        target,
        Credentials::Broker {
            name: broker.to_string(),
            secret: secret.clone(),
        },
    )
    .await?;
    let securities = table_from(&welcome)?;
    let ids = ids.iter().map(|i| matching::OrderId(*i)).collect();
    writer.send(&ClientMsg::QueryOrders { ids }).await?;
    let orders = await_reply(&mut reader, |m| match m {
        ManagerToClient::Orders(o) => Some(o),
        _ => None,
    })
    .await?;
    conn.close(0u32.into(), b"done");
    let mut out = String::from("order_id,security,side,price,qty,filled,state\n");
    for o in orders {
        use std::fmt::Write as _;
        let state = match o.state {
            proto::OrderState::Pending => "PENDING",
            proto::OrderState::Resting => "RESTING",
            proto::OrderState::Filled => "FILLED",
            proto::OrderState::Cancelled => "CANCELLED",
            proto::OrderState::Rejected => "REJECTED",
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{}",
            o.id.0,
            securities.code(o.security).unwrap_or("?"),
            o.side.as_str(),
            o.price,
            o.qty,
            o.filled,
            state
        );
    }
    Ok(out)
}

/// Reads the operator token from a value or a file path (`@path`).
pub fn read_token(value: &str) -> anyhow::Result<String> {
    match value.strip_prefix('@') {
        Some(path) => Ok(std::fs::read_to_string(Path::new(path))
            .with_context(|| format!("reading token file {path}"))?
            .trim()
            .to_string()),
        None => Ok(value.to_string()),
    }
}

/// `replay --manager`: reads the files of `job`, replays through the grid, writes the same
/// three files `replay --local` writes.
pub async fn run_grid_replay(
    target: &GridTarget,
    token: &str,
    job: &crate::replay::LocalReplay,
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
    use matching::{OrderId, RejectReason, SecurityId};

    fn rep(seq: u64, event: Event, last: bool) -> Report {
        Report {
            seq,
            order: OrderId(1),
            event,
            last,
            passive: false,
        }
    }

    #[test]
    fn tracker_matches_first_reports_in_order_and_later_ones_by_seq() {
        let mut t = Tracker::default();
        let acc = |id| Event::Accepted { id: OrderId(id) };
        let totals = Event::Totals {
            security: SecurityId(0),
            bid_total: 0,
            ask_total: 0,
        };
        assert_eq!(
            t.on_report(&rep(10, acc(1), false)).unwrap().0,
            Progress::Accepted { pos: 0 }
        );
        let rej = Event::Rejected {
            id: OrderId(2),
            reason: RejectReason::OffTick,
        };
        assert_eq!(
            t.on_report(&rep(0, rej, true)).unwrap().0,
            Progress::Final { pos: 1 }
        );
        assert_eq!(
            t.on_report(&rep(11, acc(3), false)).unwrap().0,
            Progress::Accepted { pos: 2 }
        );
        // Completion out of order: seq 11 first.
        assert_eq!(
            t.on_report(&rep(11, totals, true)).unwrap().0,
            Progress::Final { pos: 2 }
        );
        assert_eq!(
            t.on_report(&rep(10, totals, true)).unwrap().0,
            Progress::Final { pos: 0 }
        );
        assert_eq!(t.completed, 3);
        assert_eq!((t.accepted, t.rejected), (2, 1));
        assert!(
            t.on_report(&rep(99, totals, true)).is_err(),
            "unknown seq is an error"
        );
    }
}
