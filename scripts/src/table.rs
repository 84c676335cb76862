//! Markdown output: per-scenario tables, USL coefficients, and splicing the generated part into
//! a hand-written README between markers.

use std::fmt::Write as _;

use crate::runs::{scenarios, Executors, RunRecord};
use crate::stats::{cells, CellStats};
use crate::usl::{self, UslFit};

/// Start and end markers of the generated block in `results/README.md`.
pub const BEGIN: &str = "<!-- BEGIN GENERATED (experiment plot) -->";
pub const END: &str = "<!-- END GENERATED -->";

fn ms(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.0}", us / 1e3)
    } else {
        format!("{:.2}", us / 1e3)
    }
}

fn secs(s: f64) -> String {
    if s >= 10.0 {
        format!("{s:.1}")
    } else {
        format!("{s:.3}")
    }
}

/// The paper's table: median processing time (s) with rows = orders, columns = setups.
pub fn pivot(stats: &[CellStats]) -> String {
    let mut setups: Vec<Executors> = stats.iter().map(|c| c.executors).collect();
    setups.sort();
    setups.dedup();
    let mut orders: Vec<u64> = stats.iter().map(|c| c.orders).collect();
    orders.sort();
    orders.dedup();
    let mut out = String::from("| orders |");
    for s in &setups {
        let _ = write!(
            out,
            " {} |",
            if *s == Executors::Local {
                "local".to_string()
            } else {
                format!("{s} exec")
            }
        );
    }
    out.push_str("\n|---:|");
    out.push_str(&"---:|".repeat(setups.len()));
    out.push('\n');
    for o in &orders {
        let _ = write!(out, "| {o} |");
        for s in &setups {
            match stats.iter().find(|c| c.orders == *o && c.executors == *s) {
                Some(c) => {
                    let _ = write!(out, " {} |", secs(c.elapsed_s.median));
                }
                None => out.push_str(" - |"),
            }
        }
        out.push('\n');
    }
    out
}

/// Every cell with median and spread of each measure.
pub fn detail(stats: &[CellStats]) -> String {
    let mut out = String::from(
        "| orders | executors | runs | time s: median (min-max) | us/order | orders/s: median (IQR) | p50 ms | p99 ms | p99.9 ms |\n\
         |---:|---:|---:|---|---:|---|---:|---:|---:|\n",
    );
    for c in stats {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} ({}-{}) | {:.1} | {:.0} ({:.0}) | {} | {} | {} |",
            c.orders,
            c.executors,
            c.elapsed_s.n,
            secs(c.elapsed_s.median),
            secs(c.elapsed_s.min),
            secs(c.elapsed_s.max),
            c.mean_us_per_order.median,
            c.throughput.median,
            c.throughput.iqr(),
            ms(c.p50_us.median),
            ms(c.p99_us.median),
            ms(c.p999_us.median),
        );
    }
    out
}

/// One line of USL coefficients.
pub fn usl_row(label: &str, orders: u64, fit: &UslFit) -> String {
    let peak = fit
        .peak_n()
        .map(|n| format!("{n:.1}"))
        .unwrap_or_else(|| "none (kappa=0)".into());
    format!(
        "| {label} | {orders} | {:.0} | {:.4} | {:.5} | {peak} | {:.3} | {} |\n",
        fit.lambda, fit.sigma, fit.kappa, fit.r2, fit.points
    )
}

/// Fits of every scenario that has enough grid points.
pub fn fits(records: &[RunRecord]) -> Vec<(crate::runs::Scenario, u64, Result<UslFit, String>)> {
    scenarios(records)
        .into_iter()
        .map(|s| {
            let rs: Vec<&RunRecord> = records.iter().filter(|r| r.scenario() == s).collect();
            let orders = rs.iter().map(|r| r.orders).max().unwrap_or(0);
            let f = usl::fit(&usl::points_for(&rs))
                .map_err(|e| e.to_string().trim_start_matches("USL fit: ").to_owned());
            (s, orders, f)
        })
        .collect()
}

/// The whole generated Markdown block: machine line, USL table, then per scenario the pivot,
/// the detail table and the plot links (relative to the results directory).
pub fn generated(records: &[RunRecord], machine: &str, plots: &[(String, Vec<String>)]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{BEGIN}\n");
    let _ = writeln!(
        out,
        "Machine: {machine}. {} runs in `runs.csv`.\n",
        records.len()
    );
    let _ = writeln!(out, "### Universal Scalability Law fits\n");
    let _ = writeln!(
        out,
        "X(N) = lambda N / (1 + sigma (N-1) + kappa N (N-1)), fitted to the throughput of every grid run at the \
         largest order count of each scenario (local runs have no N and are not fitted).\n"
    );
    out.push_str("| scenario | orders | lambda (orders/s) | sigma (contention) | kappa (coherency) | peak N | R2 | points |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (s, orders, f) in fits(records) {
        match f {
            Ok(f) => out.push_str(&usl_row(&s.label(), orders, &f)),
            Err(e) => {
                let _ = writeln!(
                    out,
                    "| {} | {orders} | not fitted: {e} | | | | | |",
                    s.label()
                );
            }
        }
    }
    for s in scenarios(records) {
        let rs: Vec<&RunRecord> = records.iter().filter(|r| r.scenario() == s).collect();
        let stats = cells(&rs);
        let _ = writeln!(out, "\n### {}\n", s.label());
        let _ = writeln!(
            out,
            "Median processing time (s), first send to last final state:\n"
        );
        out.push_str(&pivot(&stats));
        out.push('\n');
        out.push_str(&detail(&stats));
        if let Some((_, files)) = plots.iter().find(|(slug, _)| *slug == s.slug()) {
            out.push('\n');
            for f in files {
                let _ = writeln!(out, "![{f}]({f})");
            }
        }
    }
    let _ = writeln!(out, "\n{END}");
    out
}

/// Markers of the results table embedded in the repository's top-level README.md.
pub const README_BEGIN: &str = "<!-- BEGIN RESULTS TABLE (experiment plot) -->";
pub const README_END: &str = "<!-- END RESULTS TABLE -->";

/// The table the top-level README embeds: median processing time per cell of the first
/// scenario (the loopback one, the paper's chart), between [`README_BEGIN`] and [`README_END`].
pub fn readme_table(records: &[RunRecord], machine: &str) -> Option<String> {
    let all = scenarios(records);
    let s = all
        .iter()
        .find(|s| s.slug() == "loopback")
        .or(all.first())?
        .clone();
    let rs: Vec<&RunRecord> = records.iter().filter(|r| r.scenario() == s).collect();
    let mut out = format!(
        "{README_BEGIN}

Median processing time (s), first send to last final state, {} ({machine}):

",
        s.label()
    );
    out.push_str(&pivot(&cells(&rs)));
    let _ = writeln!(
        out,
        "
{README_END}"
    );
    Some(out)
}

/// Replaces the block between `begin` and `end` in `existing`; None if the markers are absent
/// (a README without them is left alone).
pub fn splice_marked(existing: &str, begin: &str, end: &str, block: &str) -> Option<String> {
    let b = existing.find(begin)?;
    let e = existing[b..].find(end)? + b;
    Some(format!(
        "{}{}{}",
        &existing[..b],
        block.trim_end(),
        &existing[e + end.len()..]
    ))
}

/// Replaces the block between [`BEGIN`] and [`END`] in `existing` (or appends it if absent).
pub fn splice(existing: &str, generated: &str) -> String {
    match (existing.find(BEGIN), existing.find(END)) {
        (Some(b), Some(e)) if e > b => {
            format!(
                "{}{}{}",
                &existing[..b],
                generated.trim_end(),
                &existing[e + END.len()..]
            )
        }
        _ => {
            let mut s = existing.trim_end().to_owned();
            if !s.is_empty() {
                s.push_str("\n\n");
            }
            s.push_str(generated);
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Summary;

    fn cell(orders: u64, executors: Executors, t: f64) -> CellStats {
        let s = Summary::of(&[t, t * 1.1, t * 0.9]).unwrap();
        CellStats {
            orders,
            executors,
            elapsed_s: s,
            mean_us_per_order: s,
            throughput: s,
            p50_us: s,
            p99_us: s,
            p999_us: s,
        }
    }

    #[test]
    fn pivot_has_a_row_per_order_count_and_a_column_per_setup() {
        let t = pivot(&[
            cell(1000, Executors::Local, 0.5),
            cell(1000, Executors::Grid(2), 0.25),
            cell(2000, Executors::Local, 1.0),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "| orders | local | 2 exec |");
        assert_eq!(lines[2], "| 1000 | 0.500 | 0.250 |");
        assert_eq!(lines[3], "| 2000 | 1.000 | - |");
    }

    #[test]
    fn detail_reports_median_and_spread() {
        let t = detail(&[cell(5000, Executors::Grid(3), 2.0)]);
        assert!(t.contains("| 5000 | 3 | 3 | 2.000 (1.800-2.200) |"), "{t}");
    }

    #[test]
    fn splice_marked_replaces_only_between_markers_and_needs_both() {
        let doc = format!("intro\n{README_BEGIN}\nold\n{README_END}\noutro\n");
        let out = splice_marked(
            &doc,
            README_BEGIN,
            README_END,
            &format!("{README_BEGIN}\nnew\n{README_END}\n"),
        )
        .unwrap();
        assert_eq!(
            out,
            format!("intro\n{README_BEGIN}\nnew\n{README_END}\noutro\n")
        );
        assert!(splice_marked("no markers here", README_BEGIN, README_END, "x").is_none());
    }

    #[test]
    fn splice_replaces_only_the_generated_block() {
        let readme = format!("# Results\nprose before\n{BEGIN}\nold table\n{END}\nprose after\n");
        let new = format!("{BEGIN}\nnew table\n{END}\n");
        let out = splice(&readme, &new);
        assert!(
            out.contains("prose before")
                && out.contains("prose after")
                && out.contains("new table")
        );
        assert!(!out.contains("old table"));
        assert_eq!(splice(&out, &new), out, "idempotent");
        let appended = splice("# Results\n", &new);
        assert!(appended.starts_with("# Results\n\n<!-- BEGIN"));
    }
}
