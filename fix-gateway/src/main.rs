//! `fix-gateway`: FIX 4.4 order entry in front of gridmatch. Thin glue over the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use fix_gateway::acceptor::{tls_config, Gateway, GatewayConfig};
use fix_gateway::backend::{Backend, LoopbackBackend};
use fix_gateway::link::ManagerBackend;

/// FIX 4.4 order entry for gridmatch: one FIX session per broker (SenderCompID = the broker,
/// Password = its secret), each a broker session at the manager over QUIC.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to accept FIX connections on (port 0 picks a free port; the bound address is
    /// printed on stdout as "fix-gateway listening on ADDR").
    #[arg(long, default_value = "127.0.0.1:9878")]
    listen: SocketAddr,

    /// Our CompID: clients send it as TargetCompID(56) and see it as SenderCompID(49).
    #[arg(long, default_value = "GRIDMATCH")]
    comp_id: String,

    /// Directory of the per-session message logs (sequence numbers and sent messages) and order
    /// logs (ClOrdID <-> order id, order states), kept across restarts.
    #[arg(long, default_value = "fix-data")]
    data_dir: PathBuf,

    /// fsync every message-log and order-log record: survives power loss, not only crashes;
    /// slower.
    #[arg(long)]
    fsync: bool,

    /// Serve TLS with this certificate chain (PEM; e.g. the manager's cert.pem).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// Private key for --tls-cert (PEM; e.g. the manager's key.pem).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Largest |SendingTime - now| accepted, in seconds (0 turns the check off).
    #[arg(long, default_value_t = 120)]
    max_clock_skew_secs: u64,

    /// Seconds a connection may take to send its Logon.
    #[arg(long, default_value_t = 10)]
    logon_timeout_secs: u64,

    #[command(flatten)]
    manager: transport::cli::ManagerArgs,

    /// Instead of a manager, a loopback backend for session tests and demos (no matching):
    /// `broker,secret` lines; every NewOrderSingle is acknowledged, other application messages
    /// are rejected.
    #[arg(long, value_name = "FILE")]
    loopback_credentials: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    transport::runtime::init_tracing();
    let args = Args::parse();
    transport::runtime::exit_code("fix-gateway", run(args))
}

#[tokio::main(flavor = "current_thread")]
async fn run(args: Args) -> anyhow::Result<()> {
    let mut cfg = GatewayConfig::new(&args.comp_id, &args.data_dir);
    cfg.fsync = args.fsync;
    cfg.session.max_clock_skew_ms =
        (args.max_clock_skew_secs > 0).then_some(args.max_clock_skew_secs * 1000);
    cfg.logon_timeout = Duration::from_secs(args.logon_timeout_secs);

    let backend: Arc<dyn Backend> = match &args.loopback_credentials {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Arc::new(LoopbackBackend::from_credentials(&text).map_err(anyhow::Error::msg)?)
        }
        None => Arc::new(ManagerBackend::new(
            &args.manager.manager,
            &args.manager.ca,
            &args.data_dir,
            args.fsync,
        )?),
    };

    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
        _ => None,
    };
    let gateway = Gateway::new(cfg, backend, tls)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    println!("fix-gateway listening on {}", listener.local_addr()?);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        transport::runtime::shutdown_signal().await;
        tracing::info!("shutting down: logging every session out");
        let _ = stop_tx.send(true);
    });
    gateway.serve(listener, stop_rx).await
}
