//! # user-sim binary
//!
//! Thin clap front end over the `user_sim` library: `generate` writes a seeded order stream,
//! `replay --local` runs an order file through the sequential reference exchange, `record`
//! writes the L3 market-data feed as LOBSTER files, `agents` runs a population of strategy
//! agents. Logic lives
//! in the library modules; this file only parses flags, calls them and prints summaries.
//!
//! Must not: hold generator, replay or client logic of its own.

use std::path::PathBuf;

use anyhow::Context;
use clap::{ArgGroup, Args, Parser, Subcommand};
use matching::MarketRules;
use user_sim::generate::{self, GenConfig, GenerateJob};
use user_sim::replay::{self, LocalReplay};
use user_sim::{agents, client};

#[derive(Parser, Debug)]
#[command(
    name = "user-sim",
    version,
    about = "gridmatch order generator, replayer and grid client",
    long_about = "gridmatch order generator, replayer and grid client.\n\nWithout a subcommand, \
                  runs a load: K broker sessions send a generated flow to the manager, wait for \
                  every order's final state and print throughput and latency percentiles.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    grid: transport::cli::ManagerArgs,
    /// Broker credentials CSV `broker,secret` (the manager's data dir brokers.csv).
    #[arg(long, default_value = "gridmatch-data/brokers.csv")]
    credentials: PathBuf,
    /// Orders to send in total.
    #[arg(long, default_value_t = 5000)]
    orders: u64,
    /// Concurrent broker sessions (the first K brokers of the credentials file).
    #[arg(long, default_value_t = 4)]
    brokers: u32,
    /// Paced sending: orders per second over all brokers, evenly spaced (each broker's share on
    /// its own schedule; one pacer thread releases what is due, sleeping 50 us at least
    /// between releases); latency is counted from each order's due time (coordinated omission
    /// corrected), so a late release shows in the figures.
    #[arg(long, conflicts_with = "max")]
    rate: Option<f64>,
    /// Send as fast as possible (the default when --rate is not given).
    #[arg(long)]
    max: bool,
    /// Seed of the generated flow (same seed, same orders).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// No progress bar and no report on stdout (the JSON file is still written).
    #[arg(long)]
    quiet: bool,
    /// Also report the run as a timeline: windows of this many seconds, each with the orders
    /// that became final in it (rate, rejects, p50/p99, exchange times: on a scheduled
    /// manager, which part of the trading day it was).
    #[arg(long, value_name = "SECS")]
    timeline: Option<f64>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a seeded, reproducible order stream (orders CSV).
    Generate(GenerateArgs),
    /// Replay an orders file and write trades, totals and rejects CSV files.
    Replay(ReplayArgs),
    /// Log in as one broker and print the state of its orders (CSV), e.g. after a reconnect.
    Orders(OrdersArgs),
    /// Subscribe to the manager's L3 market-data feed and write LOBSTER message and orderbook
    /// files per security plus a trades CSV, until Ctrl-C / SIGTERM (or --duration).
    Record(RecordArgs),
    /// Run a population of strategy agents (noise, value, momentum, market makers, random) for
    /// whole trading days, locally or through the grid in lockstep, and write their results.
    Agents(AgentsArgs),
}

#[derive(Args, Debug)]
struct RecordArgs {
    #[command(flatten)]
    grid: transport::cli::ManagerArgs,
    #[command(flatten)]
    token: transport::cli::TokenArg,
    /// Log in with this broker's secret (from --credentials) instead of the operator token;
    /// the feed is the same, and public, either way.
    #[arg(long)]
    broker: Option<String>,
    /// Broker credentials CSV `broker,secret` (with --broker).
    #[arg(long, default_value = "gridmatch-data/brokers.csv")]
    credentials: PathBuf,
    /// Directory for `<CODE>_message_<N>.csv`, `<CODE>_orderbook_<N>.csv` and `trades.csv`
    /// (created; existing files are overwritten). With --sessions N > 1, session i writes
    /// under DIR/i.
    #[arg(long, value_name = "DIR", required_unless_present = "count_only")]
    out: Option<PathBuf>,
    /// Write no files: decode every message, apply it to the books and count it (a subscriber
    /// that loads the manager's feed, not the machine's disks).
    #[arg(long, conflicts_with = "out")]
    count_only: bool,
    /// Subscriptions held by this process, each with its own connection and books (one
    /// thread for all of them).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    sessions: u64,
    /// At the end, write the final books of the recorded securities to this CSV
    /// (`security,row,price,qty`: the same rows as `replay --local --books-out`, so equal books
    /// give equal files). With --sessions N > 1, session i writes FILE.i.
    #[arg(long, value_name = "FILE")]
    books_out: Option<PathBuf>,
    /// Price levels per side in the orderbook files.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    levels: u64,
    /// Only these security codes (comma separated); default all listed securities.
    #[arg(long, value_delimiter = ',')]
    securities: Vec<String>,
    /// Stop after this many seconds (default: at Ctrl-C / SIGTERM).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// For testing gap recovery: discard every N-th message received as if it had been lost
    /// (the recorder then asks for a resync, as it would after a real loss).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..))]
    drop_every: Option<u64>,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("venue").required(true).args(["local", "manager"])))]
struct AgentsArgs {
    /// Population file (TOML): seed, days, steps per day, securities, market rules and listing,
    /// and per agent kind its count, latency and parameters (see agents/populations/).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Directory for the results (created): trades.csv, agents.csv (per-agent P&L, inventory,
    /// order counts), agents.txt and kinds.txt (tables), facts.md (stylized facts of the
    /// returns next to the literature's values), summary.md and PNG plots.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Run through one sequential exchange in this process (the reference results).
    #[arg(long)]
    local: bool,
    /// Run through the grid, in lockstep: the manager's address, host:port. The manager must
    /// be fresh (a new --data-dir, nothing sequenced), run --schedule continuous (the agents'
    /// driver sends the trading day's PHASE commands itself) and the population's rules and
    /// synthetic listing (--rules, --listings); then the results equal --local's byte for byte.
    #[arg(long, value_name = "ADDR")]
    manager: Option<String>,
    /// The manager's certificate (with --manager).
    #[arg(long, default_value = "gridmatch-data/cert.pem")]
    ca: PathBuf,
    #[command(flatten)]
    token: transport::cli::TokenArg,
    /// Trade this many days instead of the population file's `days`.
    #[arg(long, value_name = "N")]
    days: Option<u32>,
    /// Plot price with MA5/MA20, spread and volume for the first N traded securities (one PNG
    /// per security and day; 0: none).
    #[arg(long, value_name = "N", default_value_t = 3)]
    plots: usize,
    /// Real time instead of lockstep (with --manager): agents submit as they decide and a step
    /// lasts --step-ms of wall time, not until its commands are final; each decides from the
    /// reports that have come in. Not reproducible (timing decides), unlike lockstep.
    #[arg(long, conflicts_with = "local")]
    realtime: bool,
    /// With --realtime: wall time of one step in milliseconds (0: a step ends as soon as its
    /// commands are sent and the reports already in are read).
    #[arg(long, value_name = "MS", default_value_t = 0, requires = "realtime")]
    step_ms: u64,
    /// No progress bar and no summary on stdout (the files are still written).
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct GenerateArgs {
    /// Number of rows to generate; new orders get ids 1..=N in row order.
    #[arg(long)]
    orders: u64,
    /// Seed of the generator: same arguments and seed, same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Securities CSV (`security,reference_price`) to trade.
    #[arg(long, value_name = "FILE")]
    securities: PathBuf,
    /// If the --securities file does not exist, first write M synthetic listings there.
    #[arg(long, value_name = "M")]
    listings: Option<usize>,
    /// Output orders CSV.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Market rules the stream is made valid for: hose, hnx, upcom or none.
    #[arg(long, default_value = "hose")]
    rules: MarketRules,
    /// Number of brokers, named B01..Bkk (1 to 99).
    #[arg(long, default_value_t = 8)]
    brokers: u32,
    /// Percent of rows that are deliberately invalid (off tick, outside band, odd lot, zero
    /// quantity, unknown security, foreign cancel).
    #[arg(long, default_value_t = 0.5)]
    invalid_pct: f64,
    /// Percent of rows that cancel an earlier, probably still live order.
    #[arg(long, default_value_t = 20.0)]
    cancel_pct: f64,
    /// Percent of rows that are takers (MP, IOC or FOK; with --day also MTL); the rest are LO.
    #[arg(long, default_value_t = 10.0)]
    taker_pct: f64,
    /// Percent of rows that amend a resting order (a smaller quantity, a new price or more
    /// quantity). Default 0, or 10 with --day.
    #[arg(long)]
    amend_pct: Option<f64>,
    /// Generate whole trading days instead of one continuous session: `hose` writes PHASE rows
    /// and each day's opening call (LO and ATO orders that cross), continuous trading with
    /// MTL, amends and cancels, a lunch break (cancels, and orders refused as market_closed),
    /// a closing call with ATC orders, and the close. --orders counts order rows over all
    /// days (PHASE rows come on top, six a day).
    #[arg(long, value_enum, value_name = "SCHEDULE")]
    day: Option<DayKind>,
    /// With --day: trading days to generate; each day's band follows the previous close.
    #[arg(long, default_value_t = 1, requires = "day")]
    days: u32,
}

/// Trading-day shapes `generate --day` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum DayKind {
    /// The HOSE day: ATO, continuous, break, continuous, ATC, closed.
    Hose,
}

#[derive(Args, Debug)]
struct OrdersArgs {
    #[command(flatten)]
    grid: transport::cli::ManagerArgs,
    /// Broker credentials CSV `broker,secret`.
    #[arg(long, default_value = "gridmatch-data/brokers.csv")]
    credentials: PathBuf,
    /// The broker to log in as; only its own orders are ever shown, by its own order ids.
    #[arg(long)]
    broker: String,
    /// Only these order ids (comma separated); default all of the broker's orders.
    #[arg(long, value_delimiter = ',')]
    ids: Vec<u64>,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("mode").required(true).args(["local", "manager"])))]
struct ReplayArgs {
    /// Replay in this process through one sequential exchange (the reference output).
    #[arg(long)]
    local: bool,
    /// Replay through the grid: the manager's address, host:port. The manager must be fresh
    /// (nothing sequenced: a new --data-dir, --schedule continuous) and run the same listing
    /// and rules, or the replay fails before sending anything.
    #[arg(long)]
    manager: Option<String>,
    /// The manager's certificate (with --manager).
    #[arg(long, default_value = "gridmatch-data/cert.pem")]
    ca: PathBuf,
    #[command(flatten)]
    token: transport::cli::TokenArg,
    /// With --manager: log `order_id,seq` of every acknowledged command here as it arrives
    /// (flushed per message), so a crash can be audited against the journal.
    #[arg(long, value_name = "FILE", requires = "manager")]
    acks_out: Option<PathBuf>,
    /// Securities CSV (`security,reference_price`).
    #[arg(long, value_name = "FILE")]
    securities: PathBuf,
    /// Orders CSV to replay, in sequence order.
    #[arg(long, value_name = "FILE")]
    orders: PathBuf,
    /// Market rules: hose, hnx, upcom or none (default hose locally; with --manager, checked
    /// against the manager's and defaulting to them).
    #[arg(long)]
    rules: Option<MarketRules>,
    /// Where to write the trades CSV.
    #[arg(long, value_name = "FILE")]
    trades_out: PathBuf,
    /// Where to write the per-security totals CSV.
    #[arg(long, value_name = "FILE")]
    totals_out: PathBuf,
    /// Where to write the rejects CSV.
    #[arg(long, value_name = "FILE")]
    rejects_out: PathBuf,
    /// With --local: also write the exchange's final books (`security,row,price,qty`), the
    /// reference for `record --books-out`.
    #[arg(long, value_name = "FILE", requires = "local")]
    books_out: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    transport::runtime::init_tracing_at("warn");
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Generate(a)) => run_generate(a),
        Some(Command::Replay(a)) => run_replay(a),
        Some(Command::Orders(a)) => run_orders(a),
        Some(Command::Record(a)) => run_record(a),
        Some(Command::Agents(a)) => run_agents(a),
        None => run_load(cli.run),
    };
    transport::runtime::exit_code("user-sim", result)
}

fn run_generate(a: GenerateArgs) -> anyhow::Result<()> {
    let job = GenerateJob {
        config: GenConfig {
            orders: a.orders,
            seed: a.seed,
            brokers: a.brokers,
            invalid_pct: a.invalid_pct,
            cancel_pct: a.cancel_pct,
            taker_pct: a.taker_pct,
            amend_pct: a
                .amend_pct
                .unwrap_or(if a.day.is_some() { 10.0 } else { 0.0 }),
            day: a
                .day
                .map(|DayKind::Hose| generate::DayShape { days: a.days }),
        },
        rules: a.rules,
        securities: a.securities,
        listings: a.listings,
        out: a.out,
    };
    let s = generate::run_job(&job).context("generate failed")?;
    if s.wrote_listings {
        eprintln!(
            "wrote {} listings to {}",
            s.securities,
            job.securities.display()
        );
    }
    eprintln!(
        "wrote {} orders over {} securities to {}",
        s.rows,
        s.securities,
        job.out.display()
    );
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // One thread: the client shares the machine with the grid it measures.
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Runs a grid client to completion, or stops it on Ctrl-C / SIGTERM: its connections are
/// closed (so the manager sees the sessions end at once) and nothing half-done is reported.
fn run_until_signal<T>(
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    runtime()?.block_on(async {
        tokio::select! {
            r = work => r,
            _ = transport::runtime::shutdown_signal() => anyhow::bail!("interrupted: stopped before every order reached its final state"),
        }
    })
}

fn run_load(a: RunArgs) -> anyhow::Result<()> {
    let cfg = client::LoadConfig {
        target: client::GridTarget {
            manager: a.grid.manager,
            ca: a.grid.ca,
        },
        credentials: a.credentials,
        orders: a.orders,
        brokers: a.brokers,
        rate: a.rate,
        seed: a.seed,
        progress: !a.quiet,
        timeline_s: a.timeline,
    };
    if a.timeline.is_some_and(|w| !(w > 0.0 && w.is_finite())) {
        anyhow::bail!("--timeline must be a positive number of seconds");
    }
    let report = run_until_signal(client::run_load(cfg))?;
    if !a.quiet {
        print!("{report}");
    }
    if let Some(path) = a.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn run_orders(a: OrdersArgs) -> anyhow::Result<()> {
    let target = client::GridTarget {
        manager: a.grid.manager,
        ca: a.grid.ca,
    };
    let csv = run_until_signal(client::query_orders(
        &target,
        &a.credentials,
        &a.broker,
        &a.ids,
    ))?;
    print!("{csv}");
    Ok(())
}

fn run_record(a: RecordArgs) -> anyhow::Result<()> {
    use user_sim::record::{FeedAuth, RecordConfig};
    let auth = match &a.broker {
        Some(name) => {
            let text = std::fs::read_to_string(&a.credentials)
                .with_context(|| format!("reading {}", a.credentials.display()))?;
            let creds = transport::credentials::parse(&text, &a.credentials.display().to_string())?;
            let secret = creds
                .get(name)
                .with_context(|| format!("broker {name} is not in {}", a.credentials.display()))?;
            FeedAuth::Broker {
                name: name.clone(),
                secret: secret.clone(),
            }
        }
        None => FeedAuth::Token(a.token.resolve().context("--token")?),
    };
    let duration = match a.duration {
        Some(s) if !(s.is_finite() && s > 0.0) => anyhow::bail!("--duration must be positive"),
        Some(s) => Some(std::time::Duration::from_secs_f64(s)),
        None => None,
    };
    let cfg = RecordConfig {
        target: client::GridTarget {
            manager: a.grid.manager,
            ca: a.grid.ca,
        },
        auth,
        out: a.out,
        books_out: a.books_out,
        levels: a.levels as usize,
        securities: a.securities,
        duration,
        drop_every: a.drop_every,
    };
    let summaries = runtime()?.block_on(user_sim::record::run_records(
        cfg,
        a.sessions as usize,
        transport::runtime::shutdown_signal(),
    ))?;
    let mut total = user_sim::record::RecordSummary::default();
    for (i, s) in summaries.iter().enumerate() {
        if summaries.len() > 1 {
            eprintln!("session {}: {s}", i + 1);
        }
        total.add(s);
    }
    // The last line: the whole process's figures.
    eprintln!("{total}");
    Ok(())
}

fn run_agents(a: AgentsArgs) -> anyhow::Result<()> {
    let venue = match a.manager {
        None => agents::AgentsVenue::Local,
        Some(manager) => agents::AgentsVenue::Grid {
            target: client::GridTarget { manager, ca: a.ca },
            token: a.token.resolve().context("--token")?,
        },
    };
    let job = agents::AgentsJob {
        config: a.config,
        out: a.out,
        days: a.days,
        plots: a.plots,
        progress: !a.quiet,
        venue,
        realtime: a.realtime,
        step_wall: std::time::Duration::from_millis(a.step_ms),
    };
    let summary = agents::run_agents(&job).context("agents run failed")?;
    if !a.quiet {
        print!("{summary}");
    }
    Ok(())
}

fn run_replay(a: ReplayArgs) -> anyhow::Result<()> {
    let job = LocalReplay {
        rules: a.rules.unwrap_or_default(),
        securities: a.securities,
        orders: a.orders,
        trades_out: a.trades_out,
        totals_out: a.totals_out,
        rejects_out: a.rejects_out,
    };
    let summary = match a.manager {
        None => {
            let summary = replay::run_local(&job).context("replay failed")?;
            if let Some(path) = &a.books_out {
                replay::write_books_local(&job, path).context("writing the books")?;
            }
            summary
        }
        Some(manager) => {
            let token = a.token.resolve().context("--token")?;
            let target = client::GridTarget { manager, ca: a.ca };
            run_until_signal(client::run_grid_replay(
                &target,
                &token,
                &job,
                a.rules,
                a.acks_out.as_deref(),
            ))?
        }
    };
    eprintln!("{summary}");
    Ok(())
}
