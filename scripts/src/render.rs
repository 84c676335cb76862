//! A results directory (`runs.csv` + `invocations.csv`) rendered in place: PNG charts per
//! scenario, `summary.md`, and the generated block of the directory's own README.md when it has
//! one. Writes only inside that directory.

use std::path::{Path, PathBuf};

use crate::invocation::{self, Invocation};
use crate::runs::{self, RunRecord};
use crate::table::{self, Sources};
use crate::{plots, Error, Result};

/// Name of the runs file in a results directory.
pub const RUNS: &str = "runs.csv";
/// Name of the generated tables in a results directory.
pub const SUMMARY: &str = "summary.md";
/// File-name prefixes of the charts this module writes (older ones are removed on render).
pub const CHART_PREFIXES: [&str; 4] = [
    "processing_time_",
    "processing_time_large_",
    "throughput_usl_",
    "latency_",
];

/// What a render wrote.
#[derive(Debug)]
pub struct Rendered {
    pub plots: Vec<PathBuf>,
    pub summary: PathBuf,
    /// The README.md whose generated block was rewritten, if the directory has one.
    pub readme: Option<PathBuf>,
    /// Charts of an earlier render that no longer apply, deleted.
    pub removed: Vec<PathBuf>,
}

/// Rows and invocations of a results directory.
pub fn load(dir: &Path) -> Result<(Vec<RunRecord>, Vec<Invocation>)> {
    Ok((runs::read_csv(&dir.join(RUNS))?, invocation::read(dir)?))
}

/// Renders `dir` from its `runs.csv` and `invocations.csv`.
pub fn render(dir: &Path) -> Result<Rendered> {
    let (records, invocations) = load(dir)?;
    if records.is_empty() {
        return Err(Error::Invalid(format!(
            "{} has no runs; run `experiment run` first",
            dir.join(RUNS).display()
        )));
    }
    let all = Sources::of(&records, &invocations);
    let mut written = Vec::new();
    let mut files = Vec::new();
    for (scenario, _, fit) in table::fits(&records) {
        let rs: Vec<&RunRecord> = records
            .iter()
            .filter(|r| r.scenario() == scenario)
            .collect();
        let paths = plots::plot_scenario(dir, &scenario, &rs, fit.as_ref().ok(), &all)?;
        files.push((
            scenario.slug(),
            paths
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect(),
        ));
        written.extend(paths);
    }
    let removed = remove_stale_charts(dir, &written)?;
    let generated = table::generated(&records, &invocations, &files);
    let summary = dir.join(SUMMARY);
    std::fs::write(
        &summary,
        format!("# gridmatch scaling runs (generated)\n\n{generated}"),
    )
    .map_err(|e| Error::io(format!("writing {}", summary.display()), e))?;
    let readme_path = dir.join("README.md");
    let readme = match std::fs::read_to_string(&readme_path) {
        Ok(text) => {
            std::fs::write(&readme_path, table::splice(&text, &generated))
                .map_err(|e| Error::io(format!("writing {}", readme_path.display()), e))?;
            Some(readme_path)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(format!("reading {}", readme_path.display()), e)),
    };
    Ok(Rendered {
        plots: written,
        summary,
        readme,
        removed,
    })
}

/// Deletes this module's charts in `dir` that the latest render did not write (a scenario or a
/// size class that is gone), so no stale figure sits next to fresh tables.
fn remove_stale_charts(dir: &Path, written: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name.ends_with(".png") && CHART_PREFIXES.iter().any(|p| name.starts_with(p));
        if ours && !written.contains(&path) {
            std::fs::remove_file(&path)
                .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
            removed.push(path);
        }
    }
    Ok(removed)
}
