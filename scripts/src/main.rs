//! `experiment`: the gridmatch scaling experiment (thin CLI over the `scripts` library).
//!
//! `run` measures the cell grid (orders x setups x repeats) with the release binaries and saves
//! every run to `results/runs.csv`, then plots; `plot` rebuilds PNGs and Markdown from the CSV;
//! `fit` prints the Universal Scalability Law coefficients. It must not leave processes or
//! network namespaces behind, also on Ctrl-C.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use scripts::experiment::{run_plan, Plan};
use scripts::runs::{self, Executors, RunRecord};
use scripts::{plots, table};

#[derive(Parser)]
#[command(
    name = "experiment",
    about = "gridmatch scaling experiment: run the grid, record CSV, fit USL, plot"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the cell grid (fresh manager + executors per run), append to runs.csv, then plot.
    Run(RunArgs),
    /// Re-read runs.csv and rewrite the PNG plots, summary.md and README.md's generated block.
    Plot(OutArgs),
    /// Print the USL fit of every scenario in runs.csv.
    Fit(OutArgs),
}

#[derive(clap::Args)]
struct OutArgs {
    /// Directory with runs.csv; plots and Markdown are written here.
    #[arg(long, default_value = "results")]
    out_dir: PathBuf,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Order counts per run, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,2000,3000,4000,5000"
    )]
    orders: Vec<u64>,
    /// Setups, comma separated: `local` (manager matches in-process, no grid) or an executor count.
    #[arg(long, value_delimiter = ',', default_value = "local,2,3,4,5,6")]
    executors: Vec<String>,
    /// Runs per cell (median and spread are reported).
    #[arg(long, default_value_t = 5)]
    repeats: u32,
    /// The README default, about a minute on 2 cores: the paper's grid plus 100,000 orders
    /// (orders 1000..5000,100000 x local,2..6 x 5 repeats). Overrides --orders/--executors/--repeats.
    #[arg(long)]
    quick: bool,
    /// Output directory (runs.csv, PNGs, summary.md, README.md).
    #[arg(long, default_value = "results")]
    out_dir: PathBuf,
    /// Directory with the release binaries manager, executor, user-sim.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// LAN mode: put each executor in its own network namespace with this one-way delay (ms)
    /// per direction on its link (tc netem, or a userspace relay when the kernel lacks netem).
    /// Needs root, ip and tc.
    #[arg(long)]
    netem_delay_ms: Option<f64>,
    /// Emulated processing per order on each executor, microseconds (executor --work-us).
    #[arg(long, default_value_t = 0)]
    work_us: u64,
    /// Broker sessions of user-sim (its default if omitted).
    #[arg(long)]
    brokers: Option<u32>,
    /// Text in an executor's log line that means it owns its shard and is ready.
    #[arg(long, default_value = "executor ready")]
    ready_marker: String,
    /// Seconds to wait for the manager's ready file and each executor's ready line.
    #[arg(long, default_value_t = 30.0)]
    startup_timeout_s: f64,
    /// Seconds one user-sim run may take before the run is abandoned.
    #[arg(long, default_value_t = 900.0)]
    run_timeout_s: f64,
    /// Do not plot after running.
    #[arg(long)]
    no_plot: bool,
}

/// "2 cores, Intel(R) Xeon(R) ..." from /proc/cpuinfo.
fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores, {model}")
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Cmd::Run(args) => run(args),
        Cmd::Plot(args) => plot(&args.out_dir),
        Cmd::Fit(args) => fit(&args.out_dir),
    }
}

fn run(args: RunArgs) -> Result<()> {
    scripts::process::install_interrupt_handler()?;
    let (orders, executors, repeats) = if args.quick {
        let setups = ["local", "2", "3", "4", "5", "6"]
            .map(String::from)
            .to_vec();
        (vec![1000, 2000, 3000, 4000, 5000, 100_000], setups, 5)
    } else {
        (args.orders, args.executors, args.repeats)
    };
    let executors: Vec<Executors> = executors
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    if args.startup_timeout_s <= 0.0 || args.run_timeout_s <= 0.0 {
        bail!("timeouts must be positive");
    }
    let plan = Plan {
        orders,
        executors,
        repeats,
        bin_dir: args.bin_dir,
        work_us: args.work_us,
        lan_delay_ms: args.netem_delay_ms,
        brokers: args.brokers,
        ready_marker: args.ready_marker,
        startup_timeout: Duration::from_secs_f64(args.startup_timeout_s),
        run_timeout: Duration::from_secs_f64(args.run_timeout_s),
    };
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;
    let csv = args.out_dir.join("runs.csv");
    let old = runs::read_csv(&csv)?;
    let mut new: Vec<RunRecord> = Vec::new();
    eprintln!(
        "experiment: {} runs on {}; results in {}",
        plan.total_runs(),
        machine(),
        csv.display()
    );
    let result = run_plan(
        &plan,
        |record| {
            new.push(record.clone());
            // Saved after every run so an interrupted experiment keeps what it measured.
            runs::write_csv(&csv, &runs::merge(old.clone(), &new))
        },
        |line| eprintln!("{line}"),
    );
    if let Err(e) = result {
        eprintln!("experiment: stopped after {} runs: {e}", new.len());
        if !new.is_empty() && !args.no_plot {
            plot(&args.out_dir)?;
        }
        return Err(e.into());
    }
    if !args.no_plot {
        plot(&args.out_dir)?;
    }
    eprintln!(
        "experiment: done; see {}/README.md and {}",
        args.out_dir.display(),
        csv.display()
    );
    Ok(())
}

fn plot(out_dir: &Path) -> Result<()> {
    let csv = out_dir.join("runs.csv");
    let records = runs::read_csv(&csv)?;
    if records.is_empty() {
        bail!("{} has no runs; run `experiment run` first", csv.display());
    }
    let machine = machine();
    let fits = table::fits(&records);
    let mut files = Vec::new();
    for (scenario, _, fit) in &fits {
        let rs: Vec<&RunRecord> = records
            .iter()
            .filter(|r| r.scenario() == *scenario)
            .collect();
        let paths = plots::plot_scenario(out_dir, scenario, &rs, fit.as_ref().ok(), &machine)?;
        let names = paths
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        files.push((scenario.slug(), names));
    }
    let generated = table::generated(&records, &machine, &files);
    let summary = out_dir.join("summary.md");
    std::fs::write(
        &summary,
        format!("# gridmatch scaling runs (generated)\n\n{generated}"),
    )
    .with_context(|| format!("writing {}", summary.display()))?;
    let readme = out_dir.join("README.md");
    let existing = std::fs::read_to_string(&readme)
        .unwrap_or_else(|_| "# gridmatch scaling experiment\n".into());
    std::fs::write(&readme, table::splice(&existing, &generated))
        .with_context(|| format!("writing {}", readme.display()))?;
    // The repository README embeds the paper's table, between its markers.
    let top = out_dir.join("..").join("README.md");
    if let (Ok(text), Some(block)) = (
        std::fs::read_to_string(&top),
        table::readme_table(&records, &machine),
    ) {
        if let Some(updated) =
            table::splice_marked(&text, table::README_BEGIN, table::README_END, &block)
        {
            std::fs::write(&top, updated).with_context(|| format!("writing {}", top.display()))?;
        }
    }
    eprintln!(
        "experiment: wrote {} plots, {} and {}",
        files.iter().map(|f| f.1.len()).sum::<usize>(),
        summary.display(),
        readme.display()
    );
    Ok(())
}

fn fit(out_dir: &Path) -> Result<()> {
    let records = runs::read_csv(&out_dir.join("runs.csv"))?;
    for (scenario, orders, fit) in table::fits(&records) {
        match fit {
            Ok(f) => println!(
                "{}: {orders} orders: lambda={:.0}/s sigma={:.4} kappa={:.5} peak_n={} r2={:.3} ({} points)",
                scenario.label(),
                f.lambda,
                f.sigma,
                f.kappa,
                f.peak_n().map(|n| format!("{n:.1}")).unwrap_or_else(|| "none".into()),
                f.r2,
                f.points
            ),
            Err(e) => println!("{}: not fitted: {e}", scenario.label()),
        }
    }
    Ok(())
}
