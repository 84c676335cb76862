//! `manager`: the exchange host. Parses flags, prepares the data directory, recovers from the
//! journal and hands over to [`manager::server::serve`]. Logic lives in the library.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use journal::Durability;
use manager::core::{Core, CoreConfig, MemoryPersist};
use manager::schedule::ScheduleKind;
use manager::server::{self, ServerConfig, ServerLimits};
use manager::setup;
use matching::{Gateway, MarketRules};

#[derive(Parser, Debug)]
#[command(
    name = "manager",
    version,
    about = "gridmatch manager: sequences, journals and routes orders to the executors of the grid",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Inspect or export the order journal and trade tape of a data directory.
    Journal {
        #[command(subcommand)]
        action: JournalAction,
    },
}

#[derive(Subcommand, Debug)]
enum JournalAction {
    /// Export the journal and trade tape: by default orders.csv and trades.csv in the replay
    /// formats; with --format, the data-out tables (orders, trades, bars) in CSV or Parquet;
    /// --bars and --qlib add OHLCV bars and a Qlib data directory. Reads only.
    Export {
        /// The replay formats (the default; kept for compatibility).
        #[arg(long, conflicts_with = "format")]
        csv: bool,
        /// Write the data-out tables instead: orders and trades with exchange time and seq,
        /// `csv` or `parquet` (same columns; see README "Data out").
        #[arg(long)]
        format: Option<dataout::Format>,
        /// The manager's data directory.
        #[arg(long, default_value = "gridmatch-data")]
        data_dir: PathBuf,
        /// Directory to write into.
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
        /// Replay formats: also write `seq,time,client_ref,reject_reason` (orders) and
        /// `seq,time,fill_index` (trades) after the replay columns.
        #[arg(long, conflicts_with = "format")]
        extra_columns: bool,
        /// OHLCV bars per security at these intervals (1s, 1m, 1d; comma separated), in
        /// --format (CSV by default); days are HOSE trading days (UTC+07:00).
        #[arg(long, value_delimiter = ',')]
        bars: Vec<dataout::Interval>,
        /// Also write a Qlib data directory of daily bars here (must be new or empty).
        #[arg(long)]
        qlib: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// UDP port to listen on (0 picks a free port; see --ready-file).
    #[arg(long, default_value_t = 7878)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "0.0.0.0")]
    bind: String,
    /// Data directory: certificate, token, broker credentials, listing, journal, trade tape.
    #[arg(long, default_value = "gridmatch-data")]
    data_dir: PathBuf,
    /// Listing CSV `security,reference_price`. Default: the data dir's, or a synthetic one.
    #[arg(long)]
    securities: Option<PathBuf>,
    /// Number of synthetic securities when no listing is given or saved.
    #[arg(long, default_value_t = 200)]
    listings: usize,
    /// Market rules: hose, hnx, upcom or none.
    #[arg(long, default_value = "hose")]
    rules: MarketRules,
    /// Operator token for executors, monitors and gateways (default: data dir `token`, created).
    #[arg(long, env = "GRIDMATCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Broker credentials CSV `broker,secret` (default: data dir `brokers.csv`, created).
    #[arg(long)]
    credentials: Option<PathBuf>,
    /// TLS certificate (PEM). Default: data dir `cert.pem`, self-signed on first start.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// TLS private key (PEM), with --cert.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Match in-process, with no executors: the "no grid" baseline.
    #[arg(long)]
    local: bool,
    /// Journal durability before an order is acknowledged: always (fsync each), batch (group
    /// commit), never (OS buffers only; survives a process kill, not a power cut).
    #[arg(long, default_value = "batch")]
    fsync: Durability,
    /// Keep no journal at all (experiments only: nothing survives a restart).
    #[arg(long)]
    no_journal: bool,
    /// Start even though recovery found acknowledged commands missing from the journal (it
    /// prints exactly which): the lost seqs are journaled as a gap and never used again.
    /// Without it the manager refuses to start on a loss and changes nothing.
    #[arg(long)]
    accept_journal_loss: bool,
    /// Journal segment size in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    segment_bytes: u64,
    /// Executor heartbeat interval, milliseconds.
    #[arg(long, default_value_t = 200)]
    heartbeat_ms: u32,
    /// Silence after which an executor is declared down and its securities move, milliseconds.
    #[arg(long, default_value_t = 1500)]
    heartbeat_timeout_ms: u64,
    /// Write the bound address here once listening (atomically), for scripts and tests.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Trading schedule: `continuous` (one endless continuous session on the wall clock) or
    /// `hose` (ATO 09:00, continuous 09:15-11:30, break, continuous 13:00-14:30, ATC 14:30,
    /// closed 14:45; times are Asia/Ho_Chi_Minh).
    #[arg(long, value_enum, default_value_t = ScheduleKind::Continuous)]
    schedule: ScheduleKind,
    /// With --schedule hose: real time one trading day (09:00-15:00) takes, e.g. 60s, 10m, 6h.
    #[arg(long, default_value = "6h", value_parser = parse_duration)]
    day_length: Duration,
    /// With --schedule hose: trading days to run; afterwards the market stays closed.
    #[arg(long, default_value_t = 1)]
    days: u32,
    /// With --schedule hose: first trading day, YYYY-MM-DD (default: today at HOSE, or the
    /// next weekday). A restarted manager keeps the schedule it started with.
    #[arg(long)]
    start_date: Option<String>,
    /// Most connections of any role at once.
    #[arg(long, default_value_t = 1024)]
    max_connections: u32,
    /// Most sessions one broker may have open at once.
    #[arg(long, default_value_t = 8)]
    max_sessions_per_broker: usize,
    /// Most commands one session may have sent and not yet seen final; beyond it the manager
    /// stops reading the session until its reports catch up.
    #[arg(long, default_value_t = 200_000)]
    max_in_flight: u32,
    /// Serve Prometheus metrics (OpenMetrics text) at http://ADDR/metrics, e.g.
    /// 127.0.0.1:9464 (see scripts/prometheus.yml). Off by default.
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Time a new connection has for its TLS handshake and hello, milliseconds.
    #[arg(long, default_value_t = 5000)]
    handshake_timeout_ms: u64,
    /// Time a client has to complete a frame once its header arrived, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    frame_timeout_ms: u64,
    /// A client that reads nothing of its reports for this long is disconnected (its orders
    /// stay), milliseconds.
    #[arg(long, default_value_t = 10_000)]
    slow_client_ms: u64,
    /// Runtime worker threads for connections (default: the machine's cores). The sequencing
    /// and core stages run on threads of their own in any case (see --stage-threads).
    #[arg(long)]
    threads: Option<usize>,
    /// Threads for the two stages of the core. 2: acknowledgement (check, sequence, journal)
    /// runs on a thread of its own ahead of routing, the projection and reports, so they never
    /// delay an acknowledgement; worth it where a core is free for each. 1: both stages share
    /// one thread (a machine of one core). Default: 2 where the machine has 2 cores or more, else
    /// 1. Results are the same either way.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2))]
    stage_threads: Option<u8>,
    /// Ask a book's executor for an image of it once this many commands of that security
    /// arrived since its last image (0: only on the --snapshot-secs timer). The image replaces
    /// that history for failover, so failover replays at most about this many commands.
    #[arg(long, default_value_t = 20_000)]
    snapshot_every: usize,
    /// Every this many seconds: write a checkpoint (the book images received, the finished
    /// orders they let go to the on-disk index, a manifest), then ask for an image of every book
    /// that changed; the market-data feed checkpoints its own state as often (so a restarted
    /// feed replays only the journal after it). Bounds memory and restart time; 0 turns snapshots and the index off (the
    /// manager then keeps every order and command of the day in memory). A checkpoint is
    /// written by a thread of its own (one pack of all changed books, a run of finished
    /// orders, the manifest: four fsyncs whatever the number of books); the core never waits
    /// for it, and while one is still being written the next is put off. An idle grid writes
    /// none that would repeat the last (nor does the feed).
    #[arg(long, default_value_t = 30.0)]
    snapshot_secs: f64,
    #[command(flatten)]
    feed: FeedArgs,
}

/// The public market-data feed (L1/L2/L3 subscriptions, off the sequencing path).
#[derive(Args, Debug)]
struct FeedArgs {
    /// Run without the market-data feed: no feed sessions, no feed work at all.
    #[arg(long)]
    no_feed: bool,
    /// Event groups (one command's events in one book) queued from the sequencing core to the
    /// feed task. The core never waits: past this it drops them and the feed rebuilds itself
    /// from the journal, resyncing every subscriber.
    #[arg(long, default_value_t = 1 << 17, value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
    feed_queue: u64,
    /// Messages queued per feed subscriber (for subscribers of the whole L3 feed, which share
    /// one log: how far behind its end each may fall). A subscriber that lets its queue
    /// overflow is sent a fresh snapshot; after --feed-max-overflows overflows within a minute
    /// it is dropped.
    #[arg(long, default_value_t = 1 << 16, value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
    feed_subscriber_queue: u64,
    /// Queue overflows (and resync requests) within a minute of exchange time that get a feed
    /// subscriber dropped.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    feed_max_overflows: u32,
    /// Most feed subscribers at once.
    #[arg(long, default_value_t = 256)]
    feed_max_subscribers: usize,
    /// Heartbeat to idle feed subscribers, milliseconds (lets them notice a lost tail).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    feed_heartbeat_ms: u64,
}

/// `90s`, `10m`, `6h`, `250ms` or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 60s, 10m or 6h"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("{s:?}: unit must be ms, s, m or h")),
    };
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("{s:?} is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn main() -> std::process::ExitCode {
    transport::runtime::init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Journal {
            action:
                JournalAction::Export {
                    csv: _,
                    format,
                    data_dir,
                    out_dir,
                    extra_columns,
                    bars,
                    qlib,
                },
        }) => manager::export::run(&manager::export::ExportJob {
            data_dir,
            out_dir,
            format,
            extra_columns,
            bars,
            qlib,
        })
        .map(|r| eprint!("{r}")),
        None => run(cli.run),
    };
    transport::runtime::exit_code("manager", result)
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.heartbeat_ms == 0 || args.heartbeat_timeout_ms <= args.heartbeat_ms as u64 {
        anyhow::bail!("--heartbeat-timeout-ms must exceed --heartbeat-ms (> 0)");
    }
    if args.listings == 0 || args.listings > matching::securities::MAX_LISTINGS {
        anyhow::bail!(
            "--listings must be between 1 and {}",
            matching::securities::MAX_LISTINGS
        );
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let token = setup::load_token(&args.data_dir, args.token.clone())?;
    let credentials = setup::load_credentials(&args.data_dir, args.credentials.as_deref())?;
    if credentials.len() > manager::core::MAX_BROKERS {
        anyhow::bail!("at most {} brokers", manager::core::MAX_BROKERS);
    }
    let securities =
        setup::load_securities(&args.data_dir, args.securities.as_deref(), args.listings)?;
    let (identity, cert_path) = transport::quic::load_or_create_identity(
        &args.data_dir,
        args.cert.as_deref(),
        args.key.as_deref(),
    )?;
    let schedule = setup::load_schedule(
        &args.data_dir,
        args.schedule,
        args.day_length,
        args.days,
        args.start_date.as_deref(),
    )?;
    tracing::info!(cert = %cert_path.display(), securities = securities.len(), rules = args.rules.name(), "manager starting");

    if !(args.snapshot_secs.is_finite() && args.snapshot_secs >= 0.0) {
        anyhow::bail!("--snapshot-secs must be a number of seconds >= 0");
    }
    let snapshots_on = args.snapshot_secs > 0.0;
    let config = CoreConfig {
        local: args.local,
        heartbeat_interval: Duration::from_millis(args.heartbeat_ms as u64),
        heartbeat_timeout: Duration::from_millis(args.heartbeat_timeout_ms),
        commit_each: args.fsync == Durability::Always,
        snapshot_every: if snapshots_on { args.snapshot_every } else { 0 },
        snapshot_interval: snapshots_on.then(|| Duration::from_secs_f64(args.snapshot_secs)),
        feed: !args.feed.no_feed,
        ..CoreConfig::default()
    };
    let feed = (!args.feed.no_feed).then(|| manager::feed::FeedOptions {
        queue: args.feed.feed_queue as usize,
        policy: feed::QueuePolicy {
            capacity: args.feed.feed_subscriber_queue as usize,
            max_overflows: args.feed.feed_max_overflows,
            ..feed::QueuePolicy::default()
        },
        heartbeat: Duration::from_millis(args.feed.feed_heartbeat_ms),
        max_subscribers: args.feed.feed_max_subscribers,
        journal_dir: (!args.no_journal)
            .then(|| journal::StoreConfig::in_data_dir(&args.data_dir).journal_dir),
        // With the journal and checkpoints on, the feed checkpoints on the same timer, so a
        // restart replays only the journal after it.
        checkpoint: (!args.no_journal && snapshots_on).then(|| {
            (
                manager::feed_checkpoint::path_in(&args.data_dir),
                Duration::from_secs_f64(args.snapshot_secs),
            )
        }),
        ..manager::feed::FeedOptions::default()
    });
    // One manager per data dir: a second one would overwrite the first one's journal.
    let _lock = journal::DataDirLock::acquire(&args.data_dir)?;
    let started = Instant::now();
    let core = if args.no_journal {
        setup::save_listing(&args.data_dir, &securities)?;
        let gateway = Gateway::new(args.rules, securities);
        Core::new(config, gateway, MemoryPersist::pair(), started)
    } else {
        let mut cfg = journal::StoreConfig::in_data_dir(&args.data_dir);
        cfg.segment_bytes = args.segment_bytes;
        cfg.durability = args.fsync;
        let binding = journal::Binding::new(&securities, args.rules);
        // What a checkpoint holds need not be read again: the journal is checked from its
        // resume seq on (a restart late in a day costs what the tail costs).
        let checkpointed = journal::SnapshotDir::open(&args.data_dir.join("snapshots"))?
            .read_manifest()?
            .map_or(1, |m| m.resume_seq);
        let recovery = journal::recover_from(&cfg, &binding, checkpointed)?;
        let store = match &recovery.report().loss {
            None => recovery.open()?,
            Some(loss) if args.accept_journal_loss => {
                tracing::warn!("accepting a journal loss: {loss}");
                recovery.accept_loss(setup::wall_ns())?
            }
            Some(loss) => anyhow::bail!(
                "recovery found acknowledged commands missing; nothing was changed:\n{loss}\nRestore the missing files, or start with --accept-journal-loss to continue (the lost seqs are journaled as a gap and never reused)."
            ),
        };
        setup::save_listing(&args.data_dir, &securities)?;
        let gateway = Gateway::new(args.rules, securities);
        let t = Instant::now();
        let journal_next_seq = store.journal.next_seq();
        let core = Core::new(config, gateway, setup::disk_persist(store), started);
        let (core, r) = setup::recover_core(core, &args.data_dir, &cfg, journal_next_seq)?;
        if r.records > 0 || r.rejected > 0 || r.books > 0 {
            tracing::info!(
                resume_seq = r.resume_seq,
                books = r.books,
                records = r.records,
                rejected = r.rejected,
                next_seq = core.next_seq(),
                fills_restored = r.fills_restored,
                elapsed_ms = t.elapsed().as_millis() as u64,
                "recovered from the journal"
            );
        }
        core
    };
    let bind = server::bind_addr(&args.bind, args.port)?;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads = args.threads.unwrap_or(cores).max(1);
    let stage_threads = args.stage_threads.unwrap_or(if cores >= 2 { 2 } else { 1 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let endpoint = transport::quic::server_endpoint(bind, identity)
            .with_context(|| format!("binding {bind}"))?;
        let config = ServerConfig {
            metrics_addr: args.metrics_addr,
            token,
            feed,
            credentials,
            heartbeat_ms: args.heartbeat_ms,
            ready_file: args.ready_file,
            schedule,
            stage_threads,
            limits: ServerLimits {
                max_connections: args.max_connections,
                max_sessions_per_broker: args.max_sessions_per_broker,
                max_in_flight: args.max_in_flight,
                handshake_timeout: Duration::from_millis(args.handshake_timeout_ms),
                frame_timeout: Duration::from_millis(args.frame_timeout_ms),
                slow_consumer_timeout: Duration::from_millis(args.slow_client_ms),
            },
        };
        server::serve(
            endpoint,
            core,
            config,
            transport::runtime::shutdown_signal(),
        )
        .await
    })
}
