//! The `experiment` binary end to end in a throw-away git checkout, against a fake grid (shell
//! scripts that speak the manager/executor/user-sim contract the driver relies on: ready file,
//! "executor ready" line, JSON report). A plain run must leave every tracked file untouched and
//! write one self-describing run directory; only --publish / `publish` change results/ and the
//! README table, and the tables then say which invocations they merge.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use scripts::invocation;
use scripts::runs;

const MANAGER: &str = r#"#!/bin/sh
data=; ready=
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) data=$2; shift;;
    --ready-file) ready=$2; shift;;
  esac
  shift
done
mkdir -p "$data" && echo cert > "$data/cert.pem" && echo "B01,secret" > "$data/brokers.csv"
echo "127.0.0.1:47000" > "$ready.tmp" && mv "$ready.tmp" "$ready"
exec sleep 600
"#;

const EXECUTOR: &str = r#"#!/bin/sh
echo "INFO executor ready shard=1" >&2
exec sleep 600
"#;

const USER_SIM: &str = r#"#!/bin/sh
orders=; seed=0; json=
while [ $# -gt 0 ]; do
  case "$1" in
    --orders) orders=$2; shift;;
    --seed) seed=$2; shift;;
    --json) json=$2; shift;;
  esac
  shift
done
if [ "$orders" = "${FAKE_FAIL_ORDERS:-none}" ]; then echo "fake user-sim: refused" >&2; exit 3; fi
elapsed=$(awk "BEGIN { print $orders / 1000000 + $seed / 10000 + 0.001 }")
rate=$(awk "BEGIN { print $orders / $elapsed }")
cat > "$json" <<EOF
{"orders":$orders,"brokers":4,"elapsed_s":$elapsed,"throughput":$rate,"accepted":$orders,
 "rejected":0,"fills":1,"accept_us":{"p50":100,"p90":200,"p99":300,"p999":400,"max":500},
 "final_us":{"p50":$((orders / 2)),"p90":$orders,"p99":$orders,"p999":$((orders + 1)),"max":$((orders + 2))}}
EOF
"#;

/// A committed checkout with a README table, a hand-written results/README.md and a legacy
/// runs.csv (no invocation column), plus a directory of fake grid binaries.
struct Fixture {
    repo: tempfile::TempDir,
    bins: tempfile::TempDir,
}

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

const LEGACY_RUNS: &str = "cell,orders,executors,repeat,mode,netem_ms,work_us,brokers,elapsed_s,mean_us_per_order,throughput,p50_us,p99_us,p999_us,accept_p50_us,accept_p99_us,accepted,rejected,fills,started_unix
1000xlocal,1000,local,0,loopback,0.0,0,4,0.9,900.0,1111.0,5,9,9,1,2,1000,0,1,1
1000000xlocal,1000000,local,0,loopback,0.0,0,4,0.869,0.869,1150000.0,455000,860000,863000,1,2,1000000,0,1,1
";

impl Fixture {
    fn new() -> Fixture {
        let repo = tempfile::tempdir().unwrap();
        let r = repo.path();
        std::fs::create_dir_all(r.join("results")).unwrap();
        std::fs::write(
            r.join("README.md"),
            format!(
                "# project\n\n{}\nold table\n{}\n\nmore prose\n",
                scripts::table::README_BEGIN,
                scripts::table::README_END
            ),
        )
        .unwrap();
        std::fs::write(
            r.join("results/README.md"),
            format!(
                "# results\n\nhand-written\n\n{}\nold block\n{}\n",
                scripts::table::BEGIN,
                scripts::table::END
            ),
        )
        .unwrap();
        std::fs::write(r.join("results/runs.csv"), LEGACY_RUNS).unwrap();
        std::fs::write(r.join(".gitignore"), "/results/runs/\n").unwrap();
        git(r, &["init", "-q"]);
        git(r, &["add", "-A"]);
        git(r, &["commit", "-q", "-m", "fixture"]);
        let bins = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("manager", MANAGER),
            ("executor", EXECUTOR),
            ("user-sim", USER_SIM),
        ] {
            let p = bins.path().join(name);
            std::fs::write(&p, text).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Fixture { repo, bins }
    }

    fn root(&self) -> &Path {
        self.repo.path()
    }

    /// `experiment ARGS` in the checkout, with the fake binaries appended for `run`.
    fn experiment(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_experiment"));
        c.current_dir(self.root()).args(args);
        if args.first() == Some(&"run") {
            c.arg("--bin-dir").arg(self.bins.path());
        }
        c.envs(env.iter().copied()).env("RUST_LOG", "warn");
        c.output().unwrap()
    }

    fn git_status(&self) -> String {
        git(
            self.root(),
            &["status", "--porcelain", "--untracked-files=all"],
        )
    }

    fn run_dirs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = match std::fs::read_dir(self.root().join("results/runs")) {
            Ok(d) => d.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        };
        v.sort();
        v
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root().join(rel)).unwrap()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_default_run_writes_one_self_describing_directory_and_no_tracked_file() {
    let f = Fixture::new();
    let head = git(f.root(), &["rev-parse", "--short=12", "HEAD"])
        .trim()
        .to_owned();
    let o = f.experiment(
        &[
            "run",
            "--orders",
            "1000,2000",
            "--executors",
            "local,2",
            "--repeats",
            "2",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(f.git_status(), "", "a plain run changed the checkout");
    let dirs = f.run_dirs();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let dir = &dirs[0];
    let id = dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(stderr(&o).contains(&format!("results/runs/{id}")));
    assert!(stderr(&o).contains("nothing tracked changed"));

    let rows = runs::read_csv(&dir.join("runs.csv")).unwrap();
    assert_eq!(rows.len(), 8);
    assert!(rows.iter().all(|r| r.invocation == id));
    let invs = invocation::read(dir).unwrap();
    assert_eq!(invs.len(), 1);
    let inv = &invs[0];
    assert_eq!(inv.id, id);
    assert_eq!(
        inv.command,
        format!(
            "experiment run --orders 1000,2000 --executors local,2 --repeats 2 --bin-dir {}",
            f.bins.path().display()
        )
    );
    assert_eq!(inv.commit, head);
    assert!(inv.machine.contains("cores"));
    assert_eq!((inv.runs_done, inv.runs_planned), (8, 8));
    assert!(inv.wall_s > 0.0);

    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(summary.contains("8 runs in `runs.csv`, from 1 invocation of"));
    assert!(summary.contains(&format!(
        "- **A** `{id}`: `experiment run --orders 1000,2000"
    )));
    assert!(summary.contains("All rows from invocation A."));
    // The fake reports orders/1e6 + seed/1e4 + 0.001 s: 1000 orders -> 2.0 and 2.1 ms.
    assert!(summary.contains("| 1000 | 2.05 | 2.05 |"), "{summary}");
    for png in [
        "processing_time_loopback.png",
        "throughput_usl_loopback.png",
        "latency_loopback.png",
    ] {
        assert!(dir.join(png).is_file(), "{png} missing");
    }
    // The tracked results were not re-rendered either.
    assert!(!f.root().join("results/summary.md").exists());
    assert!(!f.root().join("results/invocations.csv").exists());
}

#[test]
fn publish_merges_into_results_and_the_readme_and_says_what_it_merged() {
    let f = Fixture::new();
    let o = f.experiment(
        &[
            "run",
            "--orders",
            "1000",
            "--executors",
            "local,2",
            "--repeats",
            "1",
            "--publish",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let id = f.run_dirs()[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    // Only results/ and the README changed; the run directory stays ignored.
    let mut changed: Vec<String> = f.git_status().lines().map(str::to_owned).collect();
    changed.sort();
    assert!(
        changed.contains(&" M README.md".to_owned())
            && changed.contains(&" M results/README.md".to_owned())
            && changed.contains(&" M results/runs.csv".to_owned())
            && changed.contains(&"?? results/invocations.csv".to_owned())
            && changed
                .iter()
                .all(|l| l.contains("README.md") || l.contains("results/")),
        "{changed:?}"
    );
    let rows = runs::read_csv(&f.root().join("results/runs.csv")).unwrap();
    // The legacy 1000xlocal row was re-measured and replaced; the legacy 1M row stays.
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].orders, 1_000_000);
    assert_eq!(rows[0].invocation, "");
    assert!(rows[1..].iter().all(|r| r.invocation == id));

    let readme = f.read("README.md");
    assert!(readme.starts_with("# project\n\n"));
    assert!(readme.ends_with("\n\nmore prose\n"));
    assert!(!readme.contains("old table"));
    assert!(
        readme.contains("Merges 2 invocations (A, B): the `from` column"),
        "{readme}"
    );
    assert!(readme.contains("| orders | local | 2 exec | from |"));
    assert!(readme.contains("| 1000 | 2.00 | 2.00 | B |"), "{readme}");
    assert!(readme.contains("| 1000000 | 869 | - | A |"), "{readme}");
    assert!(readme.contains("- **A** (no id): rows recorded before"));
    assert!(readme.contains(&format!("- **B** `{id}`: `experiment run --orders 1000")));
    let results_readme = f.read("results/README.md");
    assert!(results_readme.starts_with("# results\n\nhand-written\n\n"));
    assert!(!results_readme.contains("old block"));
    assert!(results_readme.contains("3 runs in `runs.csv`, from 2 invocations"));

    // A second invocation published explicitly replaces the cells it re-measures.
    let o = f.experiment(
        &[
            "run",
            "--orders",
            "1000,2000",
            "--executors",
            "2",
            "--repeats",
            "1",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let second = f.run_dirs()[1].clone();
    let second_id = second.file_name().unwrap().to_string_lossy().into_owned();
    let o = f.experiment(&["publish", second.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("published 2 runs"), "{}", stderr(&o));
    let rows = runs::read_csv(&f.root().join("results/runs.csv")).unwrap();
    let from = |orders: u64, e: &str| {
        rows.iter()
            .filter(|r| r.orders == orders && r.executors.to_string() == e)
            .map(|r| r.invocation.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(from(1000, "local"), [id.as_str()]);
    assert_eq!(from(1000, "2"), [second_id.as_str()]);
    assert_eq!(from(2000, "2"), [second_id.as_str()]);
    let invs = invocation::read(&f.root().join("results")).unwrap();
    assert_eq!(
        invs.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        [id.as_str(), second_id.as_str()]
    );
    let readme = f.read("README.md");
    assert!(
        readme.contains("Merges 3 invocations (A, B, C)"),
        "{readme}"
    );
    assert!(readme.contains("| 1000 | 2.00 | 2.00 | B, C |"), "{readme}");

    // Publishing results/ into itself is refused.
    let o = f.experiment(&["publish", "results"], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is the results directory itself"));
}

#[test]
fn a_failed_run_keeps_what_it_measured_and_is_not_published() {
    let f = Fixture::new();
    let o = f.experiment(
        &[
            "run",
            "--orders",
            "1000,2000",
            "--executors",
            "local",
            "--repeats",
            "1",
            "--publish",
        ],
        &[("FAKE_FAIL_ORDERS", "2000")],
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("stopped after 1 of 2 runs"), "{err}");
    assert!(err.contains("fake user-sim: refused"), "{err}");
    assert!(err.contains("not published (incomplete)"), "{err}");
    assert_eq!(f.git_status(), "");
    let dir = f.run_dirs().pop().unwrap();
    let inv = &invocation::read(&dir).unwrap()[0];
    assert_eq!((inv.runs_done, inv.runs_planned), (1, 2));
    assert_eq!(runs::read_csv(&dir.join("runs.csv")).unwrap().len(), 1);
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(summary.contains("1 of 2 runs (stopped early)"), "{summary}");

    let o = f.experiment(&["publish", dir.to_str().unwrap()], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("pass --partial"), "{}", stderr(&o));
    assert_eq!(f.git_status(), "");
    let o = f.experiment(&["publish", "--partial", dir.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(f.read("README.md").contains("(stopped early)"));
}

#[test]
fn bad_invocations_fail_before_creating_anything() {
    let f = Fixture::new();
    let o = f.experiment(&["run", "--orders", "0", "--executors", "local"], &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("order counts must be positive"),
        "{}",
        stderr(&o)
    );
    let o = f.experiment(&["run", "--executors", "none"], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("expected `local` or a count"));
    assert!(f.run_dirs().is_empty());

    // --out must be a new or empty directory: one invocation per directory.
    std::fs::create_dir_all(f.root().join("mine")).unwrap();
    std::fs::write(f.root().join("mine/notes.txt"), "x").unwrap();
    let o = f.experiment(
        &[
            "run",
            "--orders",
            "1000",
            "--executors",
            "local",
            "--out",
            "mine",
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("mine is not empty"), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(f.root().join("mine")).unwrap().count(), 1);

    let o = f.experiment(
        &[
            "run",
            "--orders",
            "1000",
            "--executors",
            "local",
            "--repeats",
            "1",
            "--out",
            "fresh/dir",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        runs::read_csv(&f.root().join("fresh/dir/runs.csv"))
            .unwrap()
            .len(),
        1
    );
    assert!(f.run_dirs().is_empty());
}

/// scripts/run-experiment.sh in a scratch tree with a fake `cargo` on PATH and a fake
/// `target/release/experiment`, both logging their arguments.
fn wrapper(args: &[&str], cargo_fails: bool) -> (Output, String) {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let exe = |p: &Path, text: &str| {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("run-experiment.sh");
    exe(
        &r.join("scripts/run-experiment.sh"),
        &std::fs::read_to_string(script).unwrap(),
    );
    exe(
        &r.join("fake/cargo"),
        &format!(
            "#!/bin/sh\necho \"cargo $*\" >> \"$LOG\"\nexit {}\n",
            u8::from(cargo_fails)
        ),
    );
    exe(
        &r.join("target/release/experiment"),
        "#!/bin/sh\necho \"experiment $*\" >> \"$LOG\"\n",
    );
    let path = format!(
        "{}:{}",
        r.join("fake").display(),
        std::env::var("PATH").unwrap()
    );
    let out = Command::new(r.join("scripts/run-experiment.sh"))
        .args(args)
        .current_dir("/")
        .env("PATH", path)
        .env("LOG", r.join("log"))
        .output()
        .unwrap();
    let log = std::fs::read_to_string(r.join("log")).unwrap_or_default();
    (out, log)
}

#[test]
fn the_wrapper_builds_only_what_it_runs_and_defaults_to_a_quick_run() {
    let build = "cargo build --release -p manager -p executor -p user-sim -p scripts\n";
    for (args, expected) in [
        (&[][..], "experiment run --quick\n"),
        (&["--publish"][..], "experiment run --quick --publish\n"),
        (
            &["--out", "x", "--publish"][..],
            "experiment run --quick --out x --publish\n",
        ),
        (
            &["run", "--orders", "1000"][..],
            "experiment run --orders 1000\n",
        ),
        (&["plot", "--dir", "d"][..], "experiment plot --dir d\n"),
        (&["--help"][..], "experiment --help\n"),
    ] {
        let (out, log) = wrapper(args, false);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_eq!(log, format!("{build}{expected}"), "{args:?}");
    }
    // A failed build stops the script before anything runs.
    let (out, log) = wrapper(&[], true);
    assert!(!out.status.success());
    assert_eq!(log, build);
}
