//! Publishing: merging one run directory into the tracked results directory (`results/`) and
//! the repository README's table. Only ever done on request (`--publish`, `experiment publish`);
//! a plain run never writes outside its own run directory.

use std::path::{Path, PathBuf};

use crate::invocation::{self, Invocation};
use crate::render::{self, Rendered, RUNS};
use crate::runs::{self, RunRecord};
use crate::table;
use crate::{Error, Result};

/// What a publish changed.
#[derive(Debug)]
pub struct Published {
    /// Rows taken from the run directory.
    pub added: usize,
    /// Rows of earlier invocations replaced because the new one re-measured their cells.
    pub replaced: usize,
    /// Rows now in the results directory, how many invocations they come from, and how many
    /// of them name no invocation (recorded before invocations were).
    pub total: usize,
    pub invocations: usize,
    pub without_id: usize,
    pub rendered: Rendered,
}

/// The invocations still referenced by `records`: `old` ones updated by `new` ones of the same
/// id, in start order.
pub fn merge_invocations(
    old: &[Invocation],
    new: &[Invocation],
    records: &[RunRecord],
) -> Vec<Invocation> {
    let mut out: Vec<Invocation> = old
        .iter()
        .filter(|o| !new.iter().any(|n| n.id == o.id))
        .chain(new)
        .filter(|i| records.iter().any(|r| r.invocation == i.id))
        .cloned()
        .collect();
    out.sort_by(|a, b| (a.started_unix, &a.id).cmp(&(b.started_unix, &b.id)));
    out
}

/// Merges the runs of `run_dir` into `results` (re-measured cells replace the old ones, other
/// rows stay and keep their invocation), then re-renders `results`. Refuses a run directory
/// whose invocation stopped early unless `partial` is set, and one that is `results` itself.
pub fn publish(run_dir: &Path, results: &Path, partial: bool) -> Result<Published> {
    let same = match (run_dir.canonicalize(), results.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(Error::Invalid(format!(
            "{} is the results directory itself; publish a run directory into it",
            run_dir.display()
        )));
    }
    let (new_records, new_invocations) = render::load(run_dir)?;
    if new_records.is_empty() {
        return Err(Error::Invalid(format!(
            "{} has no runs to publish",
            run_dir.join(RUNS).display()
        )));
    }
    if let Some(missing) = new_records
        .iter()
        .find(|r| !new_invocations.iter().any(|i| i.id == r.invocation))
    {
        return Err(Error::Invalid(format!(
            "{}: run {} names invocation {:?}, which {} does not list",
            run_dir.display(),
            missing.cell,
            missing.invocation,
            invocation::FILE
        )));
    }
    if !partial {
        if let Some(i) = new_invocations.iter().find(|i| !i.complete()) {
            return Err(Error::Invalid(format!(
                "invocation {} stopped after {} of {} runs; pass --partial to publish it anyway",
                i.id, i.runs_done, i.runs_planned
            )));
        }
    }
    std::fs::create_dir_all(results)
        .map_err(|e| Error::io(format!("creating {}", results.display()), e))?;
    let (old_records, old_invocations) = render::load(results)?;
    let before = old_records.len();
    let merged = runs::merge(old_records, &new_records);
    let replaced = before + new_records.len() - merged.len();
    let invocations = merge_invocations(&old_invocations, &new_invocations, &merged);
    runs::write_csv(&results.join(RUNS), &merged)?;
    invocation::write(results, &invocations)?;
    let rendered = render::render(results)?;
    Ok(Published {
        added: new_records.len(),
        replaced,
        total: merged.len(),
        invocations: invocations.len(),
        without_id: merged.iter().filter(|r| r.invocation.is_empty()).count(),
        rendered,
    })
}

/// Rewrites the results table between the markers of the repository README from the results
/// directory. Returns the README path when it changed it; None when the README has no markers.
pub fn update_readme_table(readme: &Path, results: &Path) -> Result<Option<PathBuf>> {
    let (records, invocations) = render::load(results)?;
    let Some(block) = table::readme_table(&records, &invocations) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(readme)
        .map_err(|e| Error::io(format!("reading {}", readme.display()), e))?;
    match table::splice_marked(&text, table::README_BEGIN, table::README_END, &block) {
        Some(updated) => {
            std::fs::write(readme, updated)
                .map_err(|e| Error::io(format!("writing {}", readme.display()), e))?;
            Ok(Some(readme.to_owned()))
        }
        None => Ok(None),
    }
}
