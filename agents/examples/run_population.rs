//! Runs a population file through the local sequential exchange and writes its results:
//! `trades.csv`, `agents.csv`, `agents.txt` and `kinds.txt` (tables), `facts.md` (stylized
//! facts), `summary.md`, and one PNG per security and day (`<code>_day<N>.png`, at most
//! `--plots` securities).
//!
//! ```sh
//! cargo run -p agents --example run_population -- agents/populations/mixed.toml out/
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use agents::facts::StylizedFacts;
use agents::local::{trades_csv, LocalRun};
use agents::plots::plot_day;
use agents::report::{agents_csv, agents_table, kinds_table};
use agents::Population;
use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(file), Some(dir)) = (args.first(), args.get(1)) else {
        bail!("usage: run_population POPULATION.toml OUT_DIR [--plots N]");
    };
    let plots: usize = match args.get(2).map(String::as_str) {
        Some("--plots") => args
            .get(3)
            .context("--plots needs a number")?
            .parse()
            .context("--plots needs a number")?,
        Some(other) => bail!("unknown argument {other:?}"),
        None => 3,
    };
    let pop = Population::load(&PathBuf::from(file))?;
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let started = Instant::now();
    let out = LocalRun::synthetic(&pop)?.run()?;
    let wall = started.elapsed().as_secs_f64();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("trades.csv", &trades_csv(&out.trades, &out.listing))?;
    write("agents.csv", &agents_csv(&out.agents))?;
    write("agents.txt", &agents_table(&out.agents))?;
    write("kinds.txt", &kinds_table(&out.agents))?;
    let histories: Vec<&[agents::Bar]> = out.history.iter().map(|h| h.2.as_slice()).collect();
    let facts = StylizedFacts::compute(&histories, &out.clock, 10);
    write(
        "facts.md",
        &facts.as_ref().map_or_else(
            || "Too few returns for stylized facts (fewer than 30).\n".to_string(),
            StylizedFacts::to_markdown,
        ),
    )?;
    let mut summary = String::new();
    writeln!(summary, "# Population run: {file}\n")?;
    writeln!(
        summary,
        "{} agents, seed {}, {} day(s) of {} steps, {} securities; {:.2} s wall time \
         (local sequential exchange).\n",
        pop.agent_count(),
        pop.seed,
        pop.days,
        pop.steps_per_day,
        out.history.len(),
        wall
    )?;
    writeln!(
        summary,
        "| day | orders | commands | rejects | trades | auction trades | volume |"
    )?;
    writeln!(summary, "|---:|---:|---:|---:|---:|---:|---:|")?;
    for (d, s) in out.stats.days.iter().enumerate() {
        writeln!(
            summary,
            "| {} | {} | {} | {} | {} | {} | {} |",
            d + 1,
            s.orders,
            s.commands,
            s.rejects,
            s.trades,
            s.auction_trades,
            s.volume
        )?;
    }
    writeln!(summary, "\nRejects by reason: {:?}\n", out.stats.rejects)?;
    writeln!(summary, "```\n{}```", kinds_table(&out.agents))?;
    write("summary.md", &summary)?;
    for ((_, code, bars), fund) in out.history.iter().zip(&out.fundamental).take(plots) {
        let fund = (pop.value.count > 0).then_some(fund.as_slice());
        for day in 0..pop.days {
            let path = dir.join(format!("{code}_day{}.png", day + 1));
            plot_day(&path, code, bars, fund, day, &out.clock)?;
        }
    }
    print!("{summary}");
    Ok(())
}
