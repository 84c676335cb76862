//! `executor`: a grid PC. Joins the manager with the executor token, owns the securities the
//! shard map gives it, runs [`executor::ExecutorCore`] for them, reports every command's events
//! in sequence order, heartbeats with statistics, and reconnects with backoff if the manager
//! goes. Authentication and certificate errors are final: it exits with the reason.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use executor::ExecutorCore;
use matching::{MarketRules, SecurityTable};
use proto::{Credentials, FromExecutor, Routed, ToExecutor, Welcome};
use tokio::sync::mpsc;

#[derive(Parser, Debug)]
#[command(
    name = "executor",
    version,
    about = "gridmatch executor: matches the securities the manager assigns to this PC"
)]
struct Args {
    #[command(flatten)]
    grid: transport::cli::ManagerArgs,
    #[command(flatten)]
    token: transport::cli::TokenArg,
    /// Name shown in the monitor (default: host name and process id; 1 to 32 characters of
    /// letters, digits, '_', '-', '.').
    #[arg(long)]
    name: Option<String>,
    /// Emulated extra work per order, in microseconds (experiments).
    #[arg(long, default_value_t = 0)]
    work_us: u32,
    /// How --work-us is spent: `spin` burns this machine's CPU per order; `sleep` waits
    /// batch-size x work-us per batch, emulating work done on the executor's own CPU (what a
    /// grid of separate PCs has, and a shared test machine does not).
    #[arg(long, value_enum, default_value_t = WorkMode::Spin)]
    work_mode: WorkMode,
    /// Book levels per side reported to monitors in heartbeats.
    #[arg(long, default_value_t = 5)]
    depth: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum WorkMode {
    Spin,
    Sleep,
}

/// Events per frame sent to the manager (groups are never split across frames).
const EVENTS_PER_FRAME: usize = 16_384;

fn main() -> std::process::ExitCode {
    transport::runtime::init_tracing();
    let args = Args::parse();
    let result = (|| {
        let name = args.name.clone().unwrap_or_else(default_name);
        proto::limits::check_name(&name).context("--name")?;
        let token = args.token.resolve().context("--token")?;
        // One thread: matching is sequential per executor, and on small machines a second
        // runtime thread mostly competes with the manager for cores.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            tokio::select! {
                r = run(&args, &name, &token) => r,
                _ = transport::runtime::shutdown_signal() => Ok(()),
            }
        })
    })();
    if let Err(e) = &result {
        // Also in the log, which is often all an operator of a grid PC looks at.
        tracing::error!("{e:#}");
    }
    transport::runtime::exit_code("executor", result)
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "executor".into());
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(20)
        .collect();
    format!("{host}-{}", std::process::id())
}

async fn run(args: &Args, name: &str, token: &str) -> anyhow::Result<()> {
    let endpoint = transport::quic::client_endpoint(&args.grid.ca)?;
    let mut backoff = Duration::from_millis(100);
    loop {
        let addr: SocketAddr = transport::quic::resolve(&args.grid.manager)?;
        let creds = Credentials::Executor {
            name: name.to_string(),
            token: token.to_string(),
        };
        match transport::quic::connect(&endpoint, addr, creds).await {
            Ok((conn, writer, reader, welcome)) => {
                backoff = Duration::from_millis(100);
                tracing::info!(node = welcome.session, manager = %addr, name, "executor joined the grid");
                let result = session(args, writer, reader, &welcome).await;
                conn.close(0u32.into(), b"bye");
                match result {
                    Ok(()) => tracing::warn!("manager closed the session; reconnecting"),
                    Err(e) => tracing::warn!("session lost: {e:#}; reconnecting"),
                }
            }
            Err(e) if e.is_fatal() => {
                anyhow::bail!("cannot join the manager at {addr}: {e}")
            }
            Err(e) => {
                tracing::warn!("cannot reach the manager at {addr}: {e}; retrying in {backoff:?}")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn core_from(welcome: &Welcome) -> anyhow::Result<ExecutorCore> {
    let rules = MarketRules::from_str(&welcome.rules).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut table = SecurityTable::new();
    for s in &welcome.securities {
        let id = table.add(&s.code, s.reference_price)?;
        anyhow::ensure!(id == s.id, "the manager's security ids are not dense");
    }
    Ok(ExecutorCore::new(rules, &table))
}

/// Busy-waits, emulating CPU-bound work per order.
fn spin(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

async fn session(
    args: &Args,
    mut writer: transport::FrameWriter,
    mut reader: transport::FrameReader,
    welcome: &Welcome,
) -> anyhow::Result<()> {
    let mut core = core_from(welcome)?;
    // Frames are decoded on their own task so the loop below can also heartbeat (a partially
    // read frame must never be abandoned by a select).
    let (in_tx, mut in_rx) = mpsc::channel::<ToExecutor>(1024);
    let read_task = tokio::spawn(async move {
        loop {
            match reader.recv::<ToExecutor>().await {
                Ok(Some(m)) => {
                    if in_tx.send(m).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    });
    let period = Duration::from_millis(welcome.heartbeat_ms.max(10) as u64);
    let mut heartbeat = tokio::time::interval(period);
    let mut ready = false;
    let mut groups = Vec::new();
    let mut images = Vec::new();
    let result: anyhow::Result<()> = async {
        loop {
            tokio::select! {
                msg = in_rx.recv() => {
                    let Some(msg) = msg else { return Ok(()) };
                    match msg {
                        ToExecutor::Orders(cmds) if args.work_us > 0 => {
                            process_with_work(args, &mut core, &cmds, &mut groups, &mut writer, &mut heartbeat, &in_rx).await?;
                        }
                        other => {
                            let started = Instant::now();
                            let applied = core.apply(other, &mut groups);
                            core.add_busy_micros(started.elapsed().as_micros() as u64);
                            if let Some(v) = applied.map_version {
                                tracing::info!(map_version = v, assigned = applied.assigned, revoked = applied.revoked, "shard map changed");
                                if applied.assigned > 0 && !ready {
                                    ready = true;
                                    tracing::info!("executor ready");
                                }
                            }
                            if applied.replayed > 0 {
                                tracing::debug!(commands = applied.replayed, "books rebuilt by replay");
                            }
                            match applied.installed {
                                Some(Ok(sec)) => tracing::debug!(security = sec.0, "book installed from an image"),
                                Some(Err(e)) => tracing::error!("{e}"),
                                None => {}
                            }
                            images = applied.images;
                        }
                    }
                    send_events(&mut writer, &mut groups).await?;
                    // After the events of every command before the request, as promised.
                    for part in images.drain(..) {
                        writer.send(&FromExecutor::Image(part)).await.context("sending an image")?;
                    }
                }
                _ = heartbeat.tick() => {
                    let stats = core.heartbeat(args.depth, in_rx.len());
                    writer.send(&FromExecutor::Heartbeat(stats)).await.context("sending heartbeat")?;
                }
            }
        }
    }
    .await;
    read_task.abort();
    match read_task.await {
        Ok(Err(e)) => Err(e.into()),
        _ => result,
    }
}

async fn send_events(
    writer: &mut transport::FrameWriter,
    groups: &mut Vec<proto::EventGroup>,
) -> anyhow::Result<()> {
    if groups.is_empty() {
        return Ok(());
    }
    for frame in executor::frames(std::mem::take(groups), EVENTS_PER_FRAME) {
        writer
            .send(&FromExecutor::Events(frame))
            .await
            .context("sending events")?;
    }
    Ok(())
}

/// Processes a batch with emulated work, in slices short enough that heartbeats keep going out
/// on time: a busy PC is not a dead one.
async fn process_with_work(
    args: &Args,
    core: &mut ExecutorCore,
    cmds: &[Routed],
    groups: &mut Vec<proto::EventGroup>,
    writer: &mut transport::FrameWriter,
    heartbeat: &mut tokio::time::Interval,
    in_rx: &mpsc::Receiver<ToExecutor>,
) -> anyhow::Result<()> {
    let work = Duration::from_micros(args.work_us as u64);
    let period = heartbeat.period();
    // About a fifth of a heartbeat period per slice.
    let slice = (period.as_micros() as u64 / 5 / args.work_us.max(1) as u64).max(1);
    // The runtime's timers do not advance while this task spins (a current-thread runtime
    // only drives them between tasks), so time the heartbeats by the clock itself.
    let mut last = Instant::now();
    for chunk in cmds.chunks(slice as usize) {
        let started = Instant::now();
        match args.work_mode {
            WorkMode::Spin => {
                for _ in chunk {
                    spin(work);
                }
            }
            WorkMode::Sleep => tokio::time::sleep(work * chunk.len() as u32).await,
        }
        core.process(chunk, groups);
        core.add_busy_micros(started.elapsed().as_micros() as u64);
        if last.elapsed() >= period {
            last = Instant::now();
            let stats = core.heartbeat(args.depth, in_rx.len());
            writer
                .send(&FromExecutor::Heartbeat(stats))
                .await
                .context("sending heartbeat")?;
            heartbeat.reset();
        }
        // Let the connection's driver run: a written frame is only buffered until it does.
        tokio::task::yield_now().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_names_are_valid() {
        proto::limits::check_name(&super::default_name()).unwrap();
    }
}
