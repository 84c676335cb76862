//! `manager`: the exchange host. Parses flags, prepares the data directory, recovers from the
//! journal and hands over to [`manager::server::serve`]. Logic lives in the library.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use manager::core::{Core, CoreConfig, MemoryPersist, Persist};
use manager::journal::{Durability, JournalConfig};
use manager::server::{self, ServerConfig};
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
    /// Write orders.csv and trades.csv (the replay formats) from the journal and trade tape.
    Export {
        /// Write CSV files (the only export format).
        #[arg(long, default_value_t = true)]
        csv: bool,
        /// The manager's data directory.
        #[arg(long, default_value = "gridmatch-data")]
        data_dir: PathBuf,
        /// Directory to write orders.csv and trades.csv into.
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
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
}

fn main() -> anyhow::Result<()> {
    proto::runtime::init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Journal {
            action:
                JournalAction::Export {
                    csv: _,
                    data_dir,
                    out_dir,
                },
        }) => export(&data_dir, &out_dir),
        None => run(cli.run),
    }
}

fn export(data_dir: &std::path::Path, out_dir: &std::path::Path) -> anyhow::Result<()> {
    let listing = data_dir.join("securities.csv");
    let text = std::fs::read_to_string(&listing)
        .with_context(|| format!("reading {}", listing.display()))?;
    let securities = matching::SecurityTable::parse_csv(&text)?;
    std::fs::create_dir_all(out_dir)?;
    manager::journal::export_csv(
        &data_dir.join("journal"),
        &data_dir.join("tape"),
        &securities,
        out_dir,
    )?;
    eprintln!(
        "wrote {} and {}",
        out_dir.join("orders.csv").display(),
        out_dir.join("trades.csv").display()
    );
    Ok(())
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.heartbeat_ms == 0 || args.heartbeat_timeout_ms <= args.heartbeat_ms as u64 {
        anyhow::bail!("--heartbeat-timeout-ms must exceed --heartbeat-ms (> 0)");
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let token = setup::load_token(&args.data_dir, args.token.clone())?;
    let credentials = setup::load_credentials(&args.data_dir, args.credentials.as_deref())?;
    let securities =
        setup::load_securities(&args.data_dir, args.securities.as_deref(), args.listings)?;
    let (identity, cert_path) = proto::quic::load_or_create_identity(
        &args.data_dir,
        args.cert.as_deref(),
        args.key.as_deref(),
    )?;
    tracing::info!(cert = %cert_path.display(), securities = securities.len(), rules = args.rules.name(), "manager starting");

    let config = CoreConfig {
        local: args.local,
        heartbeat_interval: Duration::from_millis(args.heartbeat_ms as u64),
        heartbeat_timeout: Duration::from_millis(args.heartbeat_timeout_ms),
    };
    let gateway = Gateway::new(args.rules, securities);
    let started = Instant::now();
    let core = if args.no_journal {
        Core::new(config, gateway, Box::new(MemoryPersist::default()), started)
    } else {
        let jcfg = JournalConfig {
            dir: args.data_dir.join("journal"),
            segment_bytes: args.segment_bytes,
            durability: args.fsync,
        };
        let (persist, recovered, trades) = setup::DiskPersist::open(&args.data_dir, &jcfg)?;
        let persist: Box<dyn Persist> = Box::new(persist);
        let mut core = Core::new(config, gateway, persist, started);
        if !recovered.orders.is_empty() {
            let t = Instant::now();
            let missing = core.recover(&recovered.brokers, &recovered.orders, &trades)?;
            tracing::info!(
                orders = recovered.orders.len(),
                next_seq = core.next_seq(),
                truncated_bytes = recovered.truncated_bytes,
                fills_restored = missing,
                elapsed_ms = t.elapsed().as_millis() as u64,
                "recovered from the journal"
            );
        }
        core
    };
    let bind = server::bind_addr(&args.bind, args.port)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let endpoint = proto::quic::server_endpoint(bind, identity)
            .with_context(|| format!("binding {bind}"))?;
        let config = ServerConfig {
            token,
            credentials,
            heartbeat_ms: args.heartbeat_ms,
            ready_file: args.ready_file,
        };
        server::serve(endpoint, core, config, proto::runtime::shutdown_signal()).await
    })
}
