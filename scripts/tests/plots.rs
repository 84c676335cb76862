//! Rendering a results directory from synthetic runs of two invocations: real PNGs whose pixels
//! show every setup and every percentile, tables that say which invocation measured what, a
//! README block spliced in place, stale charts removed.

use std::collections::HashMap;
use std::path::Path;

use scripts::invocation::{self, Invocation};
use scripts::plots::{setup_colour, PERCENTILE_COLOURS};
use scripts::runs::{self, Executors, RunRecord};
use scripts::{render, table, usl};

const SETUPS: [Executors; 4] = [
    Executors::Local,
    Executors::Grid(2),
    Executors::Grid(4),
    Executors::Grid(6),
];

fn record(invocation: &str, orders: u64, executors: Executors, repeat: u32) -> RunRecord {
    let x = match executors {
        Executors::Local => 20_000.0,
        Executors::Grid(n) => usl::usl(9000.0, 0.2, 0.03, n as f64),
    } * (1.0 + 0.01 * repeat as f64);
    let elapsed_s = orders as f64 / x;
    let elapsed_us = (elapsed_s * 1e6) as u64;
    RunRecord {
        invocation: invocation.into(),
        cell: RunRecord::cell_label(orders, executors),
        orders,
        executors,
        repeat,
        mode: "loopback".into(),
        netem_ms: 0.0,
        work_us: 0,
        brokers: 4,
        elapsed_s,
        mean_us_per_order: elapsed_s * 1e6 / orders as f64,
        throughput: x,
        // As under --max: p50 about half the run, p99 and p99.9 equal (the whole run).
        p50_us: elapsed_us / 2,
        p99_us: elapsed_us,
        p999_us: elapsed_us,
        accept_p50_us: 200,
        accept_p99_us: 1000,
        accepted: orders,
        rejected: 0,
        fills: orders / 3,
        started_unix: 0,
    }
}

fn invocation(id: &str, started_unix: u64, command: &str) -> Invocation {
    Invocation {
        id: id.into(),
        started_unix,
        wall_s: 75.0,
        runs_done: 1,
        runs_planned: 1,
        command: command.into(),
        commit: "0123456789ab".into(),
        machine: "2 cores, test CPU".into(),
        load_start: None,
        load_end: None,
    }
}

/// Paper sizes from invocation "quick", the large sizes from invocation "big".
fn two_invocations() -> (Vec<RunRecord>, Vec<Invocation>) {
    let mut out = Vec::new();
    for repeat in 0..3u32 {
        for (id, orders) in [
            ("quick", 1000u64),
            ("quick", 3000),
            ("quick", 5000),
            ("big", 100_000),
            ("big", 1_000_000),
        ] {
            for e in SETUPS {
                out.push(record(id, orders, e, repeat));
            }
        }
    }
    let invs = vec![
        invocation("big", 200, "experiment run --orders 100000,1000000"),
        invocation("quick", 100, "experiment run --quick"),
    ];
    (out, invs)
}

/// Pixel counts per exact colour.
fn colours(path: &Path) -> (u32, u32, HashMap<[u8; 3], usize>) {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    let mut counts = HashMap::new();
    for p in img.pixels() {
        *counts.entry(p.0).or_insert(0) += 1;
    }
    (img.width(), img.height(), counts)
}

fn count(counts: &HashMap<[u8; 3], usize>, c: plotters::style::RGBColor) -> usize {
    counts.get(&[c.0, c.1, c.2]).copied().unwrap_or(0)
}

#[test]
fn renders_charts_and_tables_that_name_their_invocations() {
    let dir = tempfile::tempdir().unwrap();
    let (records, invs) = two_invocations();
    runs::write_csv(&dir.path().join("runs.csv"), &records).unwrap();
    invocation::write(dir.path(), &invs).unwrap();
    std::fs::write(
        dir.path().join("README.md"),
        format!(
            "# Prose\nkept\n{}\nold\n{}\nafter\n",
            table::BEGIN,
            table::END
        ),
    )
    .unwrap();
    // A chart of a scenario that no longer exists, and a file that is not ours.
    std::fs::write(dir.path().join("latency_lan-0.2ms.png"), b"old").unwrap();
    std::fs::write(dir.path().join("diagram.png"), b"mine").unwrap();

    let r = render::render(dir.path()).unwrap();

    let names: Vec<String> = r
        .plots
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "processing_time_loopback.png",
            "processing_time_large_loopback.png",
            "throughput_usl_loopback.png",
            "latency_loopback.png"
        ]
    );
    assert!(!dir.path().join("latency_lan-0.2ms.png").exists());
    assert!(dir.path().join("diagram.png").exists());
    assert_eq!(r.removed.len(), 1);

    for p in &r.plots {
        let (w, h, counts) = colours(p);
        assert_eq!((w, h), (1200, 700), "{}", p.display());
        let white = counts.get(&[255, 255, 255]).copied().unwrap_or(0);
        assert!(
            white < (w * h) as usize * 97 / 100,
            "{} is nearly blank",
            p.display()
        );
    }
    // Every setup's bars are visible in both processing-time charts.
    for chart in &r.plots[..2] {
        let (_, _, counts) = colours(chart);
        for e in SETUPS {
            assert!(
                count(&counts, setup_colour(e)) > 200,
                "{}: setup {e} hardly visible",
                chart.display()
            );
        }
    }
    // p50, p99 and p99.9 all visible, although p99 == p99.9 in every cell.
    let (_, _, counts) = colours(&r.plots[3]);
    for (i, c) in PERCENTILE_COLOURS.iter().enumerate() {
        assert!(count(&counts, *c) > 150, "percentile {i} hardly visible");
    }

    let summary = std::fs::read_to_string(&r.summary).unwrap();
    assert!(summary.contains("60 runs in `runs.csv`, from 2 invocations"));
    assert!(
        summary.contains("- **A** `quick`: `experiment run --quick` at commit `0123456789ab`"),
        "{summary}"
    );
    assert!(summary.contains("- **B** `big`: `experiment run --orders 100000,1000000`"));
    assert!(summary.contains("Merges 2 invocations (A, B)"));
    assert!(
        summary.contains("| orders | local | 2 exec | 4 exec | 6 exec | from |"),
        "{summary}"
    );
    assert!(summary.contains("| 5000 |") && summary.contains("| A |\n| 100000 |"));
    assert!(
        summary.contains("| B |\n\n| orders | executors |"),
        "{summary}"
    );
    // The USL fit uses the largest order count only, measured by B.
    assert!(summary.contains("| loopback | 1000000 |") && summary.contains(" | 9 | B |"));
    assert!(summary.contains("![latency_loopback.png](latency_loopback.png)"));

    let readme = std::fs::read_to_string(dir.path().join("README.md")).unwrap();
    assert!(readme.starts_with("# Prose\nkept\n"));
    assert!(readme.ends_with("\nafter\n"));
    assert!(!readme.contains("\nold\n"));
    assert!(readme.contains("Merges 2 invocations"));
}

#[test]
fn one_invocation_gets_no_from_column_and_only_the_charts_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<RunRecord> = SETUPS
        .into_iter()
        .flat_map(|e| (0..2).map(move |k| record("only", 2000, e, k)))
        .collect();
    runs::write_csv(&dir.path().join("runs.csv"), &records).unwrap();
    invocation::write(dir.path(), &[invocation("only", 5, "experiment run")]).unwrap();
    let r = render::render(dir.path()).unwrap();
    assert!(
        r.readme.is_none(),
        "a run directory has no README to splice"
    );
    let names: Vec<String> = r
        .plots
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "processing_time_loopback.png",
            "throughput_usl_loopback.png",
            "latency_loopback.png"
        ]
    );
    let summary = std::fs::read_to_string(&r.summary).unwrap();
    assert!(summary.contains("All rows from invocation A."));
    assert!(summary.contains("| orders | local | 2 exec | 4 exec | 6 exec |\n"));
    assert!(summary.contains("| p99 ms | p99.9 ms |\n"));
}

#[test]
fn latency_spanning_decades_gets_a_log_axis_with_every_percentile_visible() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<RunRecord> = SETUPS
        .into_iter()
        .flat_map(|e| {
            (0..3).map(move |k| {
                let mut r = record("paced", 20_000, e, k);
                // A paced run: p50 far below the tail.
                r.p50_us = 900 + 10 * k as u64;
                r.p99_us = 40_000;
                r.p999_us = 250_000;
                r
            })
        })
        .collect();
    runs::write_csv(&dir.path().join("runs.csv"), &records).unwrap();
    invocation::write(dir.path(), &[invocation("paced", 5, "experiment run")]).unwrap();
    let r = render::render(dir.path()).unwrap();
    let latency = r
        .plots
        .iter()
        .find(|p| p.ends_with("latency_loopback.png"))
        .unwrap();
    let (_, _, counts) = colours(latency);
    for (i, c) in PERCENTILE_COLOURS.iter().enumerate() {
        assert!(count(&counts, *c) > 150, "percentile {i} hardly visible");
    }
}

#[test]
fn an_empty_directory_is_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let err = render::render(dir.path()).unwrap_err().to_string();
    assert!(err.contains("has no runs"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
