//! One trading day of the ABIDES-sized population (1000 noise, 102 value, 12 momentum, 2
//! market makers; `populations/abides-rmsc04.toml`) through the local sequential exchange:
//! wall time in lockstep and real-time mode, orders and trades per simulated day, and in the
//! same run the baseline: the very same command stream replayed straight into a fresh
//! exchange with no agents, so the agents' own cost shows as the difference.
//!
//! ```sh
//! cargo bench -p agents --bench population
//! ```

use std::path::PathBuf;
use std::time::Instant;

use agents::config::Mode;
use agents::local::LocalRun;
use agents::Population;
use matching::{Exchange, SecurityTable};

const RUNS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("populations/abides-rmsc04.toml");
    let base = Population::load(&file).expect("shipped population");
    println!(
        "population {} ({} agents), {} day(s) of {} steps, {} runs each, median wall time",
        file.display(),
        base.agent_count(),
        base.days,
        base.steps_per_day,
        RUNS
    );
    println!(
        "{:<42} {:>10} {:>9} {:>9} {:>8} {:>9} {:>12}",
        "case", "wall_ms", "orders", "commands", "trades", "rejects", "commands/s"
    );
    for use_amend in [true, false] {
        for mode in [Mode::Lockstep, Mode::Realtime] {
            let mut pop = base.clone();
            pop.mode = mode;
            pop.use_amend = use_amend;
            let listing = SecurityTable::synthetic(pop.market.listing).unwrap();
            let mut times = Vec::new();
            let mut replay_times = Vec::new();
            let mut last = None;
            for _ in 0..RUNS {
                let mut run = LocalRun::new(&pop, listing.clone()).expect("valid population");
                run.record_commands();
                let started = Instant::now();
                while run.advance().expect("local run") {}
                times.push(started.elapsed().as_secs_f64());
                let commands = run.commands().to_vec();
                // Baseline: the same commands, no agents, no view, no accounts.
                let mut ex = Exchange::new(pop.rules().expect("rules"), listing.clone());
                let mut out = Vec::with_capacity(64);
                let started = Instant::now();
                for c in &commands {
                    out.clear();
                    ex.process(c, &mut out);
                }
                replay_times.push(started.elapsed().as_secs_f64());
                std::hint::black_box(&out);
                last = Some(run.finish());
            }
            let out = last.expect("ran");
            let day = &out.stats.days[0];
            let label = format!(
                "{} {}",
                match mode {
                    Mode::Lockstep => "lockstep",
                    Mode::Realtime => "realtime",
                },
                if use_amend { "(amend)" } else { "(cancel+new)" }
            );
            let wall = median(times);
            let replay = median(replay_times);
            let commands = out.stats.commands() + out.stats.phases;
            println!(
                "{:<42} {:>10.1} {:>9} {:>9} {:>8} {:>9} {:>12.0}",
                format!("agents + exchange, {label}"),
                wall * 1e3,
                day.orders,
                day.commands,
                day.trades,
                day.rejects,
                commands as f64 / wall
            );
            println!(
                "{:<42} {:>10.1} {:>9} {:>9} {:>8} {:>9} {:>12.0}",
                "  baseline: replay, no agents",
                replay * 1e3,
                day.orders,
                day.commands,
                day.trades,
                day.rejects,
                commands as f64 / replay
            );
        }
    }
}
