//! Writes a finished run's results into a directory: `trades.csv`, `agents.csv`, `agents.txt`
//! and `kinds.txt` (tables), `facts.md` (stylized facts next to the literature's values),
//! `summary.md`, and one PNG per security and day (`<code>_day<N>.png`, for the first
//! `plots` traded securities). One function for every shell (the local example, `user-sim
//! agents --local` and over the grid), so their files can be compared byte for byte.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::Population;
use crate::facts::StylizedFacts;
use crate::local::{trades_csv, LocalOutcome};
use crate::plots::{plot_day, PlotError};
use crate::report::{agents_csv, agents_table, kinds_table};
use crate::view::Bar;

/// Maximum lag of the autocorrelations in `facts.md`.
const FACT_LAGS: usize = 10;

/// Why the results could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plot {path}: {source}")]
    Plot { path: PathBuf, source: PlotError },
}

/// How the run was made, for the summary's header.
#[derive(Clone, Debug)]
pub struct RunInfo<'a> {
    /// The population file's name as given.
    pub source: &'a str,
    /// Where the commands were matched, e.g. "local sequential exchange".
    pub venue: &'a str,
    pub wall_s: f64,
}

/// Writes every result file of `out` into `dir` (created if missing) and returns the summary
/// (also written as `summary.md`).
pub fn write_results(
    dir: &Path,
    pop: &Population,
    out: &LocalOutcome,
    info: &RunInfo<'_>,
    plots: usize,
) -> Result<String, ResultsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ResultsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(io(&path))
    };
    write("trades.csv", &trades_csv(&out.trades, &out.listing))?;
    write("agents.csv", &agents_csv(&out.agents))?;
    write("agents.txt", &agents_table(&out.agents))?;
    write("kinds.txt", &kinds_table(&out.agents))?;
    let histories: Vec<&[Bar]> = out.history.iter().map(|h| h.2.as_slice()).collect();
    let facts = StylizedFacts::compute(&histories, &out.clock, FACT_LAGS);
    write(
        "facts.md",
        &facts.as_ref().map_or_else(
            || "Too few returns for stylized facts (fewer than 30).\n".to_string(),
            StylizedFacts::to_markdown,
        ),
    )?;
    let summary = summary(pop, out, info);
    write("summary.md", &summary)?;
    for ((_, code, bars), fund) in out.history.iter().zip(&out.fundamental).take(plots) {
        let fund = (pop.value.count > 0).then_some(fund.as_slice());
        for day in 0..pop.days {
            let path = dir.join(format!("{code}_day{}.png", day + 1));
            plot_day(&path, code, bars, fund, day, &out.clock)
                .map_err(|source| ResultsError::Plot { path, source })?;
        }
    }
    Ok(summary)
}

/// The run in Markdown: sizes, wall time, per-day counts, rejects, the per-kind table.
pub fn summary(pop: &Population, out: &LocalOutcome, info: &RunInfo<'_>) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(s, "# Population run: {}\n", info.source);
    let _ = writeln!(
        s,
        "{} agents, seed {}, {} day(s) of {} steps, {} securities; {:.2} s wall time ({}).\n",
        pop.agent_count(),
        pop.seed,
        pop.days,
        pop.steps_per_day,
        out.history.len(),
        info.wall_s,
        info.venue
    );
    let _ = writeln!(
        s,
        "| day | orders | commands | rejects | trades | auction trades | volume |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|");
    for (d, day) in out.stats.days.iter().enumerate() {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            d + 1,
            day.orders,
            day.commands,
            day.rejects,
            day.trades,
            day.auction_trades,
            day.volume
        );
    }
    let _ = writeln!(s, "\nRejects by reason: {:?}\n", out.stats.rejects);
    let _ = writeln!(s, "```\n{}```", kinds_table(&out.agents));
    s
}
