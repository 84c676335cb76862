//! Runs a population file through the local sequential exchange and writes its results (the
//! same files as `user-sim agents --local`, by the same function: see `agents::results`).
//!
//! ```sh
//! cargo run -p agents --example run_population -- agents/populations/mixed.toml out/
//! ```

use std::path::PathBuf;
use std::time::Instant;

use agents::local::LocalRun;
use agents::results::{write_results, RunInfo};
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
    let started = Instant::now();
    let out = LocalRun::synthetic(&pop)?.run()?;
    let info = RunInfo {
        source: file,
        venue: "local sequential exchange",
        wall_s: started.elapsed().as_secs_f64(),
    };
    let summary = write_results(&PathBuf::from(dir), &pop, &out, &info, plots)?;
    print!("{summary}");
    Ok(())
}
