//! `experiment`: the gridmatch scaling experiment (thin CLI over the `scripts` library).
//!
//! `run` measures the cell grid (orders x setups x repeats) with the release binaries into a
//! fresh run directory (runs.csv, invocations.csv, charts, summary.md); `--publish` then merges
//! it into `results/` and the README table. `publish` does that for an existing run directory,
//! `plot` re-renders a directory, `fit` prints the USL coefficients. A plain `run` writes
//! nothing outside its run directory. It must not leave processes or network namespaces behind,
//! also on Ctrl-C.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use scripts::experiment::{run_plan, Plan};
use scripts::invocation::{self, Invocation};
use scripts::publish::{self, Published};
use scripts::render::{self, Rendered, RUNS};
use scripts::runs::{self, Executors, RunRecord};
use scripts::table;

#[derive(Parser)]
#[command(
    name = "experiment",
    about = "gridmatch scaling experiment: run the grid into a fresh run directory, plot, \
             fit the USL, and publish into results/ on request",
    long_about = "gridmatch scaling experiment.\n\n\
        `run` writes a fresh run directory (default results/runs/<UTC start time>/, which git \
        ignores) holding runs.csv, invocations.csv (flags, git commit, machine), summary.md and \
        the PNG charts; it changes no tracked file. `run --publish` or `publish DIR` merges a \
        run directory into results/ (re-measured cells replace older ones; every table names \
        the invocations it merges) and rewrites the README table."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the cell grid (fresh manager + executors per run) into a new run directory, then plot.
    Run(RunArgs),
    /// Merge a finished run directory into results/ and rewrite README.md's results table.
    Publish(PublishArgs),
    /// Re-render a results directory (run directory or results/) from its runs.csv.
    Plot(DirArgs),
    /// Print the USL fit of every scenario of a results directory.
    Fit(DirArgs),
}

#[derive(clap::Args)]
struct DirArgs {
    /// Results directory: runs.csv and invocations.csv are read here; charts, summary.md and
    /// the generated block of its README.md (if it has one) are written here.
    #[arg(long, visible_alias = "out-dir", default_value = "results")]
    dir: PathBuf,
}

#[derive(clap::Args)]
struct PublishTarget {
    /// The tracked results directory that --publish / publish merge into.
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// The README whose results table (between its BEGIN/END RESULTS TABLE markers) is
    /// rewritten on publish; a README without the markers is left alone.
    #[arg(long, default_value = "README.md")]
    readme: PathBuf,
}

#[derive(clap::Args)]
struct PublishArgs {
    /// The run directory to publish (e.g. results/runs/20250102T030405Z).
    run_dir: PathBuf,
    #[command(flatten)]
    target: PublishTarget,
    /// Publish even if the invocation stopped before its last planned run.
    #[arg(long)]
    partial: bool,
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
    /// The README default: the paper's grid plus 100,000 orders (orders 1000..5000,100000 x
    /// local,2..6 x 5 repeats, 180 runs). Overrides --orders/--executors/--repeats.
    #[arg(long)]
    quick: bool,
    /// Run directory to create (must not exist or be empty). Default:
    /// results/runs/<UTC start time>, e.g. results/runs/20250102T030405Z.
    #[arg(long, visible_alias = "out-dir")]
    out: Option<PathBuf>,
    /// After a complete run, merge it into results/ and rewrite README.md's results table
    /// (tracked files). Without it nothing outside the run directory changes.
    #[arg(long)]
    publish: bool,
    #[command(flatten)]
    target: PublishTarget,
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
    /// Do not draw charts or tables after running (runs.csv and invocations.csv only).
    #[arg(long)]
    no_plot: bool,
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
        Cmd::Publish(args) => {
            let p = publish::publish(&args.run_dir, &args.target.results, args.partial)?;
            report_publish(&p, &args.target)
        }
        Cmd::Plot(args) => {
            let r = render::render(&args.dir)?;
            report_render(&r);
            Ok(())
        }
        Cmd::Fit(args) => fit(&args.dir),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The run directory: --out (new or empty), else a fresh `results/runs/<id>`.
fn run_dir(out: Option<&Path>, started: u64) -> Result<(String, PathBuf)> {
    let id = invocation::utc_id(started);
    match out {
        None => Ok(invocation::create_run_dir(
            Path::new("results/runs"),
            started,
        )?),
        Some(dir) => {
            if dir.join(RUNS).exists()
                || dir
                    .read_dir()
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(false)
            {
                bail!(
                    "{} is not empty: each run gets its own directory (omit --out for a fresh \
                     results/runs/<time>, or `experiment publish` to merge runs)",
                    dir.display()
                );
            }
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            Ok((id, dir.to_owned()))
        }
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
    let mut plan = Plan {
        invocation: String::new(),
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
    // Bad flags or missing binaries fail before any directory is created.
    plan.check()?;
    let started = unix_now();
    let clock = Instant::now();
    let (id, dir) = run_dir(args.out.as_deref(), started)?;
    plan.invocation = id.clone();
    let mut inv = Invocation {
        id,
        started_unix: started,
        wall_s: 0.0,
        runs_done: 0,
        runs_planned: plan.total_runs() as u64,
        command: std::iter::once("experiment".to_owned())
            .chain(std::env::args().skip(1))
            .map(|a| invocation::shell_quote(&a))
            .collect::<Vec<_>>()
            .join(" "),
        commit: invocation::probe_commit(Path::new(".")),
        machine: invocation::probe_machine(),
        load_start: invocation::probe_load(),
        load_end: None,
    };
    invocation::write(&dir, std::slice::from_ref(&inv))?;
    let csv = dir.join(RUNS);
    eprintln!(
        "experiment: {} runs on {} at commit {}; writing {}",
        plan.total_runs(),
        inv.machine,
        inv.commit,
        dir.display()
    );
    let mut new: Vec<RunRecord> = Vec::new();
    let result = run_plan(
        &plan,
        |record| {
            new.push(record.clone());
            // Saved after every run so an interrupted experiment keeps what it measured.
            runs::write_csv(&csv, &new)?;
            inv.runs_done = new.len() as u64;
            inv.wall_s = clock.elapsed().as_secs_f64();
            inv.load_end = invocation::probe_load();
            invocation::write(&dir, std::slice::from_ref(&inv))
        },
        |line| eprintln!("{line}"),
    );
    let wall = clock.elapsed();
    if let Err(e) = result {
        eprintln!(
            "experiment: stopped after {} of {} runs ({:.0} s): {e}",
            new.len(),
            plan.total_runs(),
            wall.as_secs_f64()
        );
        if !new.is_empty() && !args.no_plot {
            report_render(&render::render(&dir)?);
        }
        if args.publish {
            eprintln!(
                "experiment: not published (incomplete); `experiment publish --partial {}` would",
                dir.display()
            );
        }
        return Err(e.into());
    }
    eprintln!(
        "experiment: {} runs in {:.0} s ({:.1} min)",
        new.len(),
        wall.as_secs_f64(),
        wall.as_secs_f64() / 60.0
    );
    if !args.no_plot {
        report_render(&render::render(&dir)?);
    }
    if args.publish {
        let p = publish::publish(&dir, &args.target.results, false)?;
        report_publish(&p, &args.target)?;
    } else {
        eprintln!(
            "experiment: results in {}/ (summary.md, runs.csv, charts); nothing tracked changed. \
             To publish into {}/ and {}: experiment publish {}",
            dir.display(),
            args.target.results.display(),
            args.target.readme.display(),
            dir.display()
        );
    }
    Ok(())
}

fn report_render(r: &Rendered) {
    eprintln!(
        "experiment: wrote {} charts and {}{}",
        r.plots.len(),
        r.summary.display(),
        r.readme
            .as_ref()
            .map(|p| format!(" and the generated block of {}", p.display()))
            .unwrap_or_default()
    );
    for p in &r.removed {
        eprintln!("experiment: removed stale chart {}", p.display());
    }
}

fn report_publish(p: &Published, target: &PublishTarget) -> Result<()> {
    report_render(&p.rendered);
    eprintln!(
        "experiment: published {} runs into {} ({} older runs of re-measured cells replaced; \
         {} runs from {} invocation(s) now{})",
        p.added,
        target.results.display(),
        p.replaced,
        p.total,
        p.invocations,
        if p.without_id > 0 {
            format!(", {} older rows without an invocation id", p.without_id)
        } else {
            String::new()
        }
    );
    match publish::update_readme_table(&target.readme, &target.results) {
        Ok(Some(path)) => eprintln!(
            "experiment: rewrote the results table of {}",
            path.display()
        ),
        Ok(None) => eprintln!(
            "experiment: {} has no {} marker; its table is unchanged",
            target.readme.display(),
            table::README_BEGIN
        ),
        Err(e) => bail!(
            "published into {}, but the README table: {e}",
            target.results.display()
        ),
    }
    Ok(())
}

fn fit(dir: &Path) -> Result<()> {
    let (records, _) = render::load(dir)?;
    if records.is_empty() {
        bail!("{} has no runs", dir.join(RUNS).display());
    }
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
