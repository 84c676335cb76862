//! Markdown output: which invocations the rows come from, per-scenario tables, USL coefficients,
//! and splicing generated blocks into hand-written READMEs between markers.
//!
//! Every table built from the runs of more than one invocation says so: it gets a `from`
//! column with the tags (A, B, ..) of the invocations listed above it.

use std::fmt::Write as _;

use crate::invocation::{utc_text, Invocation};
use crate::runs::{scenarios, Executors, RunRecord, Scenario};
use crate::stats::{cells, CellStats};
use crate::usl::{self, UslFit};

/// Start and end markers of the generated block in `results/README.md`.
pub const BEGIN: &str = "<!-- BEGIN GENERATED (experiment plot) -->";
pub const END: &str = "<!-- END GENERATED -->";

/// Milliseconds with 3 significant digits up to 100 (`2.24`, `13.1`), whole above (`869`).
pub fn ms_text(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

/// Short tags (A, B, ..) for the invocations that measured a set of runs, in start order.
#[derive(Debug, Clone)]
pub struct Sources {
    entries: Vec<Source>,
}

/// One tagged invocation; `invocation` is None for rows without a recorded invocation, or
/// whose id has no entry in `invocations.csv`.
#[derive(Debug, Clone)]
pub struct Source {
    pub tag: String,
    pub id: String,
    pub invocation: Option<Invocation>,
}

/// A, B, .., Z, AA, AB, ..
fn tag_name(mut i: usize) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'A' + (i % 26) as u8);
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII letters")
}

impl Sources {
    /// Tags every invocation id that occurs in `records`, ordered by start time (rows without
    /// an id first: they are older than invocation tracking).
    pub fn of(records: &[RunRecord], invocations: &[Invocation]) -> Sources {
        let mut ids: Vec<&str> = Vec::new();
        for r in records {
            if !ids.contains(&r.invocation.as_str()) {
                ids.push(&r.invocation);
            }
        }
        let find = |id: &str| invocations.iter().find(|i| i.id == id && !id.is_empty());
        ids.sort_by_key(|id| (find(id).map(|i| i.started_unix).unwrap_or(0), id.to_owned()));
        Sources {
            entries: ids
                .into_iter()
                .enumerate()
                .map(|(k, id)| Source {
                    tag: tag_name(k),
                    id: id.to_owned(),
                    invocation: find(id).cloned(),
                })
                .collect(),
        }
    }

    /// Number of distinct invocations.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no runs are tagged.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tagged invocations in order.
    pub fn entries(&self) -> &[Source] {
        &self.entries
    }

    /// The tag of an invocation id (`?` if the id is not among the tagged ones).
    pub fn tag(&self, id: &str) -> &str {
        self.entries
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.tag.as_str())
            .unwrap_or("?")
    }

    /// Tags of several ids, sorted and comma separated: `A` or `A, C`.
    pub fn tags(&self, ids: &[String]) -> String {
        let mut tags: Vec<&str> = ids.iter().map(|id| self.tag(id)).collect();
        tags.sort_by_key(|t| (t.len(), *t));
        tags.dedup();
        tags.join(", ")
    }

    /// Only the sources whose ids occur in `records` (tags unchanged).
    pub fn restricted_to(&self, records: &[&RunRecord]) -> Sources {
        Sources {
            entries: self
                .entries
                .iter()
                .filter(|s| records.iter().any(|r| r.invocation == s.id))
                .cloned()
                .collect(),
        }
    }

    /// The distinct machines of the tagged invocations, `; ` separated (`unknown machine` when
    /// none is recorded).
    pub fn machines(&self) -> String {
        let mut m: Vec<&str> = self
            .entries
            .iter()
            .filter_map(|s| s.invocation.as_ref().map(|i| i.machine.as_str()))
            .collect();
        let mut seen: Vec<&str> = Vec::new();
        m.retain(|x| {
            let new = !seen.contains(x);
            seen.push(x);
            new
        });
        if m.is_empty() {
            "unknown machine".into()
        } else {
            m.join("; ")
        }
    }

    /// One Markdown bullet per source: tag, id, command, commit, machine, date, runs, time.
    pub fn bullets(&self) -> String {
        let mut out = String::new();
        for s in &self.entries {
            let _ = match (&s.invocation, s.id.is_empty()) {
                (_, true) => writeln!(
                    out,
                    "- **{}** (no id): rows recorded before runs carried an invocation id; \
                     command, commit and date unknown",
                    s.tag
                ),
                (None, false) => writeln!(
                    out,
                    "- **{}** `{}`: not listed in invocations.csv; command and commit unknown",
                    s.tag, s.id
                ),
                (Some(i), false) => writeln!(
                    out,
                    "- **{}** `{}`: `{}` at commit `{}` on {}, {}; {} of {} runs{} in {:.0} s{}",
                    s.tag,
                    i.id,
                    i.command,
                    i.commit,
                    i.machine,
                    utc_text(i.started_unix),
                    i.runs_done,
                    i.runs_planned,
                    if i.complete() { "" } else { " (stopped early)" },
                    i.wall_s,
                    load_text(i)
                ),
            };
        }
        out
    }

    /// The sentence that says where a table's rows come from.
    pub fn provenance(&self) -> String {
        match self.entries.as_slice() {
            [] => "No runs.".into(),
            [one] => format!("All rows from invocation {}.", one.tag),
            many => format!(
                "Merges {} invocations ({}): the `from` column says which measured each row.",
                many.len(),
                many.iter()
                    .map(|s| s.tag.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// "; load average 0.4 to 1.2" (1 minute, at start and end), or nothing if unknown.
fn load_text(i: &Invocation) -> String {
    match (i.load_start, i.load_end) {
        (Some(a), Some(b)) => format!("; load average {a:.1} to {b:.1}"),
        (Some(a), None) => format!("; load average {a:.1} at start"),
        (None, Some(b)) => format!("; load average {b:.1} at end"),
        (None, None) => String::new(),
    }
}

fn setup_header(s: Executors) -> String {
    match s {
        Executors::Local => "local".into(),
        Executors::Grid(n) => format!("{n} exec"),
    }
}

/// The paper's table: median processing time (ms), rows = orders, columns = setups; with a
/// `from` column when `sources` spans more than one invocation.
pub fn pivot(stats: &[CellStats], sources: &Sources) -> String {
    let merged = sources.len() > 1;
    let mut setups: Vec<Executors> = stats.iter().map(|c| c.executors).collect();
    setups.sort();
    setups.dedup();
    let mut orders: Vec<u64> = stats.iter().map(|c| c.orders).collect();
    orders.sort();
    orders.dedup();
    let mut out = String::from("| orders |");
    for s in &setups {
        let _ = write!(out, " {} |", setup_header(*s));
    }
    if merged {
        out.push_str(" from |");
    }
    out.push_str("\n|---:|");
    out.push_str(&"---:|".repeat(setups.len()));
    if merged {
        out.push_str("---|");
    }
    out.push('\n');
    for o in &orders {
        let _ = write!(out, "| {o} |");
        let mut ids: Vec<String> = Vec::new();
        for s in &setups {
            match stats.iter().find(|c| c.orders == *o && c.executors == *s) {
                Some(c) => {
                    let _ = write!(out, " {} |", ms_text(c.elapsed_s.median * 1e3));
                    ids.extend(c.invocations.iter().cloned());
                }
                None => out.push_str(" - |"),
            }
        }
        if merged {
            let _ = write!(out, " {} |", sources.tags(&ids));
        }
        out.push('\n');
    }
    out
}

/// Every cell with median and spread of each measure (`from` column when merged).
pub fn detail(stats: &[CellStats], sources: &Sources) -> String {
    let merged = sources.len() > 1;
    let mut out = String::from(
        "| orders | executors | runs | time ms: median (min-max) | us/order | orders/s: median (IQR) | p50 ms | p99 ms | p99.9 ms |",
    );
    out.push_str(if merged { " from |\n" } else { "\n" });
    out.push_str("|---:|---:|---:|---|---:|---|---:|---:|---:|");
    out.push_str(if merged { "---|\n" } else { "\n" });
    for c in stats {
        let _ = write!(
            out,
            "| {} | {} | {} | {} ({}-{}) | {:.1} | {:.0} ({:.0}) | {} | {} | {} |",
            c.orders,
            c.executors,
            c.elapsed_s.n,
            ms_text(c.elapsed_s.median * 1e3),
            ms_text(c.elapsed_s.min * 1e3),
            ms_text(c.elapsed_s.max * 1e3),
            c.mean_us_per_order.median,
            c.throughput.median,
            c.throughput.iqr(),
            ms_text(c.p50_us.median / 1e3),
            ms_text(c.p99_us.median / 1e3),
            ms_text(c.p999_us.median / 1e3),
        );
        if merged {
            let _ = write!(out, " {} |", sources.tags(&c.invocations));
        }
        out.push('\n');
    }
    out
}

/// One line of USL coefficients.
pub fn usl_row(label: &str, orders: u64, fit: &UslFit, from: &str) -> String {
    let peak = match fit.peak_n() {
        Some(n) if n <= 1000.0 => format!("{n:.1}"),
        Some(_) => "> 1000 (kappa ~ 0)".into(),
        None => "none (kappa=0)".into(),
    };
    format!(
        "| {label} | {orders} | {:.0} | {:.4} | {:.5} | {peak} | {:.3} | {} | {from} |\n",
        fit.lambda, fit.sigma, fit.kappa, fit.r2, fit.points
    )
}

/// Fits of every scenario that has enough grid points.
pub fn fits(records: &[RunRecord]) -> Vec<(Scenario, u64, Result<UslFit, String>)> {
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

/// The whole generated Markdown block: the invocations the rows come from, the USL table, then
/// per scenario where its rows come from, the pivot, the detail table and the plot links
/// (relative to the results directory).
pub fn generated(
    records: &[RunRecord],
    invocations: &[Invocation],
    plots: &[(String, Vec<String>)],
) -> String {
    let sources = Sources::of(records, invocations);
    let mut out = String::new();
    let _ = writeln!(out, "{BEGIN}\n");
    let _ = writeln!(
        out,
        "{} runs in `runs.csv`, from {} invocation{} of `experiment run`:\n",
        records.len(),
        sources.len(),
        if sources.len() == 1 { "" } else { "s" }
    );
    out.push_str(&sources.bullets());
    let _ = writeln!(out, "\n### Universal Scalability Law fits\n");
    let _ = writeln!(
        out,
        "X(N) = lambda N / (1 + sigma (N-1) + kappa N (N-1)), fitted to the throughput of every grid run at the \
         largest order count of each scenario (local runs have no N and are not fitted).\n"
    );
    out.push_str("| scenario | orders | lambda (orders/s) | sigma (contention) | kappa (coherency) | peak N | R2 | points | from |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for (s, orders, f) in fits(records) {
        let fitted: Vec<&RunRecord> = records
            .iter()
            .filter(|r| r.scenario() == s && r.orders == orders)
            .collect();
        let from = sources.tags(
            &fitted
                .iter()
                .map(|r| r.invocation.clone())
                .collect::<Vec<_>>(),
        );
        match f {
            Ok(f) => out.push_str(&usl_row(&s.label(), orders, &f, &from)),
            Err(e) => {
                let _ = writeln!(
                    out,
                    "| {} | {orders} | not fitted: {e} | | | | | | {from} |",
                    s.label()
                );
            }
        }
    }
    for s in scenarios(records) {
        let rs: Vec<&RunRecord> = records.iter().filter(|r| r.scenario() == s).collect();
        let here = sources.restricted_to(&rs);
        let stats = cells(&rs);
        let _ = writeln!(out, "\n### {}\n", s.label());
        let _ = writeln!(
            out,
            "{} Median processing time (ms), first send to last final state:\n",
            here.provenance()
        );
        out.push_str(&pivot(&stats, &here));
        out.push('\n');
        out.push_str(&detail(&stats, &here));
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

/// The table the top-level README embeds: median processing time per cell of the loopback
/// scenario (the paper's chart; the first scenario if there is none), with where its rows come
/// from, between [`README_BEGIN`] and [`README_END`].
pub fn readme_table(records: &[RunRecord], invocations: &[Invocation]) -> Option<String> {
    let all = scenarios(records);
    let s = all
        .iter()
        .find(|s| s.slug() == "loopback")
        .or(all.first())?
        .clone();
    let rs: Vec<&RunRecord> = records.iter().filter(|r| r.scenario() == s).collect();
    let here = Sources::of(records, invocations).restricted_to(&rs);
    let mut out = format!(
        "{README_BEGIN}\n\nMedian processing time (ms), first send to last final state, {} ({}). {}\n\n",
        s.label(),
        here.machines(),
        here.provenance()
    );
    out.push_str(&pivot(&cells(&rs), &here));
    out.push('\n');
    out.push_str(&here.bullets());
    let _ = writeln!(out, "\n{README_END}");
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
    splice_marked(existing, BEGIN, END, generated).unwrap_or_else(|| {
        let mut s = existing.trim_end().to_owned();
        if !s.is_empty() {
            s.push_str("\n\n");
        }
        s.push_str(generated);
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Summary;

    fn cell(orders: u64, executors: Executors, t: f64, from: &str) -> CellStats {
        let s = Summary::of(&[t, t * 1.1, t * 0.9]).unwrap();
        CellStats {
            orders,
            executors,
            invocations: vec![from.to_owned()],
            elapsed_s: s,
            mean_us_per_order: s,
            throughput: s,
            p50_us: s,
            p99_us: s,
            p999_us: s,
        }
    }

    fn record(invocation: &str, orders: u64) -> RunRecord {
        let mut r = crate::runs::tests_support::sample(orders, Executors::Local, 0);
        r.invocation = invocation.into();
        r
    }

    fn invocation(id: &str, started_unix: u64) -> Invocation {
        Invocation {
            id: id.into(),
            started_unix,
            wall_s: 61.4,
            runs_done: 180,
            runs_planned: 180,
            command: "experiment run --quick".into(),
            commit: "89f8082abcde".into(),
            machine: "2 cores, test CPU".into(),
            load_start: Some(0.25),
            load_end: Some(1.5),
        }
    }

    #[test]
    fn tag_names_continue_past_z() {
        let names: Vec<String> = [0, 1, 25, 26, 27, 51, 52, 701, 702]
            .into_iter()
            .map(tag_name)
            .collect();
        assert_eq!(names, ["A", "B", "Z", "AA", "AB", "AZ", "BA", "ZZ", "AAA"]);
    }

    #[test]
    fn sources_are_tagged_in_start_order_and_describe_unknowns() {
        let records = vec![
            record("late", 1000),
            record("early", 2000),
            record("", 3000),
            record("ghost", 4000),
        ];
        let invs = vec![invocation("late", 200), invocation("early", 100)];
        let s = Sources::of(&records, &invs);
        assert_eq!(s.len(), 4);
        // No id and unknown ids have no start time: they sort first, by id.
        let order: Vec<(&str, &str)> = s
            .entries()
            .iter()
            .map(|e| (e.tag.as_str(), e.id.as_str()))
            .collect();
        assert_eq!(
            order,
            [("A", ""), ("B", "ghost"), ("C", "early"), ("D", "late")]
        );
        let b = s.bullets();
        assert!(b.contains("- **A** (no id): rows recorded before"), "{b}");
        assert!(b.contains("- **B** `ghost`: not listed"), "{b}");
        assert!(
            b.contains("- **C** `early`: `experiment run --quick` at commit `89f8082abcde` on 2 cores, test CPU, 1970-01-01 00:01 UTC; 180 of 180 runs in 61 s; load average 0.2 to 1.5"),
            "{b}"
        );
        assert_eq!(s.tags(&["late".into(), "".into(), "late".into()]), "A, D");
        assert_eq!(s.tag("nope"), "?");
        assert!(s
            .provenance()
            .starts_with("Merges 4 invocations (A, B, C, D)"));
        let one = s.restricted_to(&records[..1].iter().collect::<Vec<_>>());
        assert_eq!(one.provenance(), "All rows from invocation D.");
        assert_eq!(one.machines(), "2 cores, test CPU");
    }

    #[test]
    fn an_incomplete_invocation_says_it_stopped_early() {
        let mut i = invocation("x", 0);
        i.runs_done = 97;
        let s = Sources::of(&[record("x", 1000)], &[i]);
        assert!(s.bullets().contains("97 of 180 runs (stopped early)"));
    }

    #[test]
    fn pivot_has_a_row_per_order_count_and_a_column_per_setup() {
        let one = Sources::of(&[record("a", 1000)], &[]);
        let t = pivot(
            &[
                cell(1000, Executors::Local, 0.5, "a"),
                cell(1000, Executors::Grid(2), 0.0025, "a"),
                cell(2000, Executors::Local, 0.012, "a"),
            ],
            &one,
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "| orders | local | 2 exec |");
        assert_eq!(lines[2], "| 1000 | 500 | 2.50 |");
        assert_eq!(lines[3], "| 2000 | 12.0 | - |");
    }

    #[test]
    fn a_merged_pivot_says_which_invocation_measured_each_row() {
        let two = Sources::of(
            &[record("a", 1000), record("b", 1000)],
            &[invocation("a", 1), invocation("b", 2)],
        );
        let t = pivot(
            &[
                cell(1000, Executors::Local, 0.5, "a"),
                cell(1000, Executors::Grid(2), 0.25, "b"),
                cell(2000, Executors::Local, 1.0, "b"),
            ],
            &two,
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "| orders | local | 2 exec | from |");
        assert_eq!(lines[1], "|---:|---:|---:|---|");
        assert_eq!(lines[2], "| 1000 | 500 | 250 | A, B |");
        assert_eq!(lines[3], "| 2000 | 1000 | - | B |");
        let d = detail(&[cell(1000, Executors::Local, 0.5, "b")], &two);
        assert!(d.lines().next().unwrap().ends_with("p99.9 ms | from |"));
        assert!(d.lines().nth(2).unwrap().ends_with(" | B |"), "{d}");
    }

    #[test]
    fn detail_reports_median_and_spread() {
        let one = Sources::of(&[record("a", 1000)], &[]);
        let t = detail(&[cell(5000, Executors::Grid(3), 2.0, "a")], &one);
        assert!(t.contains("| 5000 | 3 | 3 | 2000 (1800-2200) |"), "{t}");
        assert!(!t.contains("from"));
    }

    #[test]
    fn usl_rows_do_not_print_absurd_peaks() {
        let fit = |kappa: f64| UslFit {
            lambda: 1000.0,
            sigma: 0.5,
            kappa,
            r2: 0.9,
            points: 12,
        };
        assert!(usl_row("x", 5, &fit(0.02), "A").contains("| 5.0 |"));
        assert!(usl_row("x", 5, &fit(1e-12), "A").contains("| > 1000 (kappa ~ 0) |"));
        assert!(usl_row("x", 5, &fit(0.0), "A").contains("| none (kappa=0) |"));
        assert!(usl_row("x", 5, &fit(0.02), "A").ends_with("| 0.900 | 12 | A |\n"));
    }

    #[test]
    fn ms_text_keeps_three_significant_digits_below_100() {
        assert_eq!(ms_text(2.236), "2.24");
        assert_eq!(ms_text(13.06), "13.1");
        assert_eq!(ms_text(868.7), "869");
        assert_eq!(ms_text(0.0), "0.00");
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
        assert!(splice_marked(
            &format!("{README_END} then {README_BEGIN}"),
            README_BEGIN,
            README_END,
            "x"
        )
        .is_none());
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
