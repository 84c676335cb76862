//! Where runs come from: one invocation of `experiment run` (its id, command line, git commit,
//! machine, how long it took). Every row of `runs.csv` names its invocation, and the directory
//! lists the invocations it holds in `invocations.csv`, so a table can say which invocations it
//! is built from instead of silently mixing them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::csvfile;
use crate::{Error, Result};

/// File name of the invocation list in a results directory.
pub const FILE: &str = "invocations.csv";

/// One `experiment run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invocation {
    /// Unique id: the UTC start time, `20250102T030405Z` (with `-2`, `-3`.. if that directory
    /// already existed). Also the name of the run directory under `results/runs/`.
    pub id: String,
    /// Start, Unix seconds.
    pub started_unix: u64,
    /// Wall time from start to the last run saved (plots excluded), seconds.
    pub wall_s: f64,
    /// Runs saved out of the runs planned (fewer when interrupted or failed).
    pub runs_done: u64,
    pub runs_planned: u64,
    /// The command line as typed, e.g. `experiment run --quick`.
    pub command: String,
    /// `git rev-parse --short=12 HEAD` of the checkout, `-dirty` appended when tracked files had
    /// uncommitted changes; `unknown` outside a git checkout.
    pub commit: String,
    /// Cores and CPU model, e.g. `2 cores, AMD EPYC 7B13`.
    pub machine: String,
    /// 1-minute load average of the machine when the invocation started and ended: on a shared
    /// machine, anything well above 0 means other work competed with the runs.
    #[serde(default)]
    pub load_start: Option<f64>,
    #[serde(default)]
    pub load_end: Option<f64>,
}

impl Invocation {
    /// True when every planned run was saved.
    pub fn complete(&self) -> bool {
        self.runs_done == self.runs_planned
    }
}

/// The id for a start time: `YYYYMMDDTHHMMSSZ` in UTC (sorts like the time it names).
pub fn utc_id(unix_secs: u64) -> String {
    let t = i64::try_from(unix_secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `YYYY-MM-DD HH:MM UTC`, for tables.
pub fn utc_text(unix_secs: u64) -> String {
    let id = utc_id(unix_secs);
    format!(
        "{}-{}-{} {}:{} UTC",
        &id[0..4],
        &id[4..6],
        &id[6..8],
        &id[9..11],
        &id[11..13]
    )
}

/// Creates a fresh directory `parent/<id>` for an invocation that starts now (never reuses an
/// existing one: `-2`, `-3`.. are appended when two invocations start in the same second).
pub fn create_run_dir(parent: &Path, started_unix: u64) -> Result<(String, PathBuf)> {
    std::fs::create_dir_all(parent)
        .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    let base = utc_id(started_unix);
    for k in 1..=100 {
        let id = if k == 1 {
            base.clone()
        } else {
            format!("{base}-{k}")
        };
        let dir = parent.join(&id);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(format!("creating {}", dir.display()), e)),
        }
    }
    Err(Error::Invalid(format!(
        "100 run directories named {base}* already exist in {}",
        parent.display()
    )))
}

/// Reads `invocations.csv` of a results directory (missing file: none).
pub fn read(dir: &Path) -> Result<Vec<Invocation>> {
    csvfile::read(&dir.join(FILE))
}

/// Writes `invocations.csv` of a results directory, sorted by start time.
pub fn write(dir: &Path, invocations: &[Invocation]) -> Result<()> {
    let mut sorted = invocations.to_vec();
    sorted.sort_by(|a, b| (a.started_unix, &a.id).cmp(&(b.started_unix, &b.id)));
    csvfile::write(&dir.join(FILE), &sorted)
}

/// Quotes an argument for a shell command line only when it needs it.
pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./,:=@%+".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// "2 cores, AMD EPYC 7B13" from the available parallelism and /proc/cpuinfo.
pub fn probe_machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores, {model}")
}

/// The 1-minute load average from /proc/loadavg (None where there is none).
pub fn probe_load() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The commit checked out in `repo` (12 hex digits), `-dirty` when tracked files that can
/// change the measurement differ from it; `unknown` without git. Untracked files (run
/// directories), `results/` (published data) and Markdown do not count: publishing one run must
/// not mark the next one dirty.
pub fn probe_commit(repo: &Path) -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(head) if !head.is_empty() => {
            let status = git(&[
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":(exclude)results",
                ":(exclude,glob)**/*.md",
            ]);
            match status {
                Some(s) if s.is_empty() => head,
                Some(_) => format!("{head}-dirty"),
                None => format!("{head}-unknown-state"),
            }
        }
        _ => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: &str, started_unix: u64) -> Invocation {
        Invocation {
            id: id.into(),
            started_unix,
            wall_s: 52.5,
            runs_done: 180,
            runs_planned: 180,
            command: "experiment run --quick --work-us 'a b'".into(),
            commit: "89f8082abcde-dirty".into(),
            machine: "2 cores, AMD EPYC, \"quoted\"".into(),
            load_start: Some(7.5),
            load_end: None,
        }
    }

    #[test]
    fn ids_are_utc_and_sort_like_time() {
        assert_eq!(utc_id(0), "19700101T000000Z");
        // 2024-02-29 23:59:59 UTC, a leap day.
        assert_eq!(utc_id(1_709_251_199), "20240229T235959Z");
        assert_eq!(utc_text(1_709_251_199), "2024-02-29 23:59 UTC");
        assert!(utc_id(1_709_251_199) < utc_id(1_709_251_200));
        // Out of the time crate's range: a clear fallback, not a panic.
        assert_eq!(utc_id(u64::MAX), "19700101T000000Z");
    }

    #[test]
    fn run_dirs_are_never_reused() {
        let parent = tempfile::tempdir().unwrap();
        let runs = parent.path().join("runs");
        let (a, da) = create_run_dir(&runs, 1_709_251_199).unwrap();
        let (b, db) = create_run_dir(&runs, 1_709_251_199).unwrap();
        let (c, _) = create_run_dir(&runs, 1_709_251_199).unwrap();
        assert_eq!(a, "20240229T235959Z");
        assert_eq!(b, "20240229T235959Z-2");
        assert_eq!(c, "20240229T235959Z-3");
        assert!(da.is_dir() && db.is_dir() && da != db);
        // A parent that is a file: an error naming it, not a panic.
        let file = parent.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = create_run_dir(&file, 0).unwrap_err().to_string();
        assert!(err.contains("file"), "{err}");
    }

    #[test]
    fn csv_round_trip_keeps_commas_and_quotes() {
        let dir = tempfile::tempdir().unwrap();
        let list = vec![sample("B", 20), sample("A", 10)];
        write(dir.path(), &list).unwrap();
        let back = read(dir.path()).unwrap();
        assert_eq!(
            back,
            vec![list[1].clone(), list[0].clone()],
            "sorted by start"
        );
        assert!(read(&dir.path().join("absent")).unwrap().is_empty());
        std::fs::write(dir.path().join(FILE), "id,started_unix\nx,notanumber\n").unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains(FILE), "{err}");
    }

    #[test]
    fn commit_probe_sees_dirty_tracked_files_only() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(probe_commit(dir.path()), "unknown");
        let git = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .output()
                .unwrap()
                .status
                .success();
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q"]);
        std::fs::write(dir.path().join("a"), "1").unwrap();
        std::fs::create_dir(dir.path().join("results")).unwrap();
        std::fs::write(dir.path().join("results/runs.csv"), "x").unwrap();
        std::fs::write(dir.path().join("README.md"), "x").unwrap();
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "x"]);
        let clean = probe_commit(dir.path());
        assert_eq!(clean.len(), 12, "{clean}");
        assert!(clean.chars().all(|c| c.is_ascii_hexdigit()));
        std::fs::write(dir.path().join("untracked"), "u").unwrap();
        assert_eq!(probe_commit(dir.path()), clean);
        // Published data and docs do not make the code dirty.
        std::fs::write(dir.path().join("results/runs.csv"), "changed").unwrap();
        std::fs::write(dir.path().join("README.md"), "changed").unwrap();
        assert_eq!(probe_commit(dir.path()), clean);
        std::fs::write(dir.path().join("a"), "2").unwrap();
        assert_eq!(probe_commit(dir.path()), format!("{clean}-dirty"));
    }

    #[test]
    fn machine_names_cores_and_load_is_a_number() {
        assert!(probe_machine().contains(" cores, "));
        let load = probe_load().expect("Linux has /proc/loadavg");
        assert!(load >= 0.0 && load.is_finite());
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("--orders"), "--orders");
        assert_eq!(shell_quote("1000,2000"), "1000,2000");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
