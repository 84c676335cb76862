//! Runs a real grid (manager, executors, user-sim processes on 127.0.0.1) for integration tests
//! and experiments. Every process is killed and reaped when its handle drops, so a failing test
//! leaves nothing behind. Readiness is observed (ready file, log lines), never slept for.
//!
//! Binaries are found beside the running test executable (`target/<profile>/`); `cargo test
//! --workspace` and `cargo nextest run --workspace` build them.
//!
//! [`nasty`] builds order streams meant to break the grid (every reject reason, dead and
//! foreign targets, deep sweeps, the trading day's phases).

pub mod nasty;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The directory holding the workspace binaries.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("GRIDMATCH_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Path of a workspace binary, with a clear panic if it was not built.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} not found: build the workspace first (`cargo build --workspace`)",
        path.display()
    );
    path
}

/// A child process killed (SIGKILL) and reaped on drop; its stderr goes to a log file.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, program: &Path, args: &[String], log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).expect("create log");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log"))
            .stderr(file)
            .env(
                "RUST_LOG",
                std::env::var("GRIDMATCH_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", program.display()));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Polls the log until it contains `needle` `count` times.
    pub fn wait_log(&mut self, needle: &str, count: usize, timeout: Duration) {
        let start = Instant::now();
        loop {
            if self.log_text().matches(needle).count() >= count {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before logging {needle:?}:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            assert!(
                start.elapsed() < timeout,
                "{} did not log {needle:?} within {timeout:?}:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait (bounded) for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Options for [`Grid::start`].
#[derive(Clone, Debug)]
pub struct GridOptions {
    pub executors: usize,
    pub local: bool,
    pub fsync: &'static str,
    pub rules: &'static str,
    pub heartbeat_timeout_ms: u64,
    /// Listing to use (copied into the data dir); None = the manager's synthetic one.
    pub securities: Option<PathBuf>,
    /// More manager flags (limits, schedule, ...).
    pub manager_args: Vec<String>,
}

impl Default for GridOptions {
    fn default() -> Self {
        GridOptions {
            executors: 2,
            local: false,
            fsync: "never",
            rules: "hose",
            heartbeat_timeout_ms: 600,
            securities: None,
            manager_args: Vec::new(),
        }
    }
}

/// A manager and its executors in a temporary directory.
pub struct Grid {
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub addr: String,
    pub options: GridOptions,
    pub manager: Proc,
    pub executors: Vec<Proc>,
    next_executor: usize,
    manager_starts: usize,
}

impl Grid {
    /// Starts a manager (port 0) and `options.executors` executors, and waits until each
    /// executor owns securities.
    pub fn start(dir: &Path, options: GridOptions) -> Grid {
        let data_dir = dir.join("data");
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let manager = Self::spawn_manager(dir, &data_dir, &options, 0, 1);
        let addr = std::fs::read_to_string(dir.join("manager.addr"))
            .expect("ready file")
            .trim()
            .to_string();
        let mut grid = Grid {
            dir: dir.to_path_buf(),
            data_dir,
            addr,
            options: options.clone(),
            manager,
            executors: Vec::new(),
            next_executor: 1,
            manager_starts: 1,
        };
        for _ in 0..options.executors {
            grid.add_executor();
        }
        grid
    }

    fn spawn_manager(dir: &Path, data_dir: &Path, o: &GridOptions, port: u16, n: usize) -> Proc {
        let ready = dir.join("manager.addr");
        let _ = std::fs::remove_file(&ready);
        let mut args: Vec<String> = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--ready-file".into(),
            ready.display().to_string(),
            "--fsync".into(),
            o.fsync.into(),
            "--rules".into(),
            o.rules.into(),
            "--heartbeat-ms".into(),
            "100".into(),
            "--heartbeat-timeout-ms".into(),
            o.heartbeat_timeout_ms.to_string(),
        ];
        if o.local {
            args.push("--local".into());
        }
        if let Some(s) = &o.securities {
            args.push("--securities".into());
            args.push(s.display().to_string());
        }
        args.extend(o.manager_args.iter().cloned());
        let mut p = Proc::spawn(
            "manager",
            &bin("manager"),
            &args,
            dir.join(format!("manager-{n}.log")),
        );
        let start = Instant::now();
        while !ready.exists() {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("manager exited ({status}):\n{}", p.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "manager not ready:\n{}",
                p.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        p
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("token"))
            .expect("token")
            .trim()
            .to_string()
    }

    pub fn ca(&self) -> PathBuf {
        self.data_dir.join("cert.pem")
    }

    pub fn credentials(&self) -> PathBuf {
        self.data_dir.join("brokers.csv")
    }

    pub fn securities(&self) -> PathBuf {
        self.data_dir.join("securities.csv")
    }

    /// Starts one more executor and waits until it owns securities.
    pub fn add_executor(&mut self) -> usize {
        let i = self.spawn_executor(&[]);
        self.executors[i].wait_log("executor ready", 1, Duration::from_secs(30));
        i
    }

    /// Starts an executor without waiting; returns its index.
    pub fn spawn_executor(&mut self, extra: &[&str]) -> usize {
        let n = self.next_executor;
        self.next_executor += 1;
        let name = format!("exec-{n}");
        let mut args = vec![
            "--manager".to_string(),
            self.addr.clone(),
            "--ca".into(),
            self.ca().display().to_string(),
            "--token".into(),
            self.token(),
            "--name".into(),
            name.clone(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = self.dir.join(format!("{name}.log"));
        self.executors
            .push(Proc::spawn(&name, &bin("executor"), &args, log));
        self.executors.len() - 1
    }

    /// kill -9 the manager and start it again on the same port and data dir.
    pub fn restart_manager(&mut self) {
        self.manager.kill();
        let port: u16 = self
            .addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        self.manager_starts += 1;
        self.manager = Self::spawn_manager(
            &self.dir,
            &self.data_dir,
            &self.options,
            port,
            self.manager_starts,
        );
    }

    /// kill -9 the manager only (to tamper with its data dir before [`Grid::restart_manager`]).
    pub fn kill_manager(&mut self) {
        self.manager.kill();
    }

    /// Runs another manager process on this grid's data dir with `extra` flags, to completion
    /// (for starts that must fail: it is killed if still running after `timeout`).
    pub fn manager_once(&self, extra: &[&str], timeout: Duration) -> Output {
        let mut cmd = Command::new(bin("manager"));
        cmd.args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--data-dir",
            path_str(&self.data_dir),
            "--rules",
            self.options.rules,
        ])
        .args(extra)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn manager");
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait_with_output().expect("manager output")
    }

    /// The port the manager listens on.
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }

    /// Runs user-sim to completion with these arguments.
    pub fn user_sim(&self, args: &[&str]) -> Output {
        Command::new(bin("user-sim"))
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .expect("run user-sim")
    }

    /// `user-sim orders --broker B` against the grid: its output (the run must succeed).
    pub fn orders_of(&self, broker: &str) -> String {
        let mut args = vec!["orders".to_string()];
        args.extend(self.load_args());
        args.extend(["--broker".to_string(), broker.to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.user_sim(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The arguments that point a user-sim load at this grid (address, CA, credentials).
    pub fn load_args(&self) -> Vec<String> {
        let (ca, credentials) = (self.ca(), self.credentials());
        [
            "--manager",
            &self.addr,
            "--ca",
            path_str(&ca),
            "--credentials",
            path_str(&credentials),
        ]
        .map(String::from)
        .to_vec()
    }

    /// Runs a user-sim load against this grid to completion (`extra`: --orders, --json ...).
    pub fn load(&self, extra: &[&str]) -> Output {
        let mut args = self.load_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        Command::new(bin("user-sim"))
            .args(&args)
            .env("NO_COLOR", "1")
            .output()
            .expect("run user-sim")
    }

    /// Runs `user-sim` load with `extra` flags, quietly, its JSON report in `<name>.json` in the
    /// grid's directory; asserts it succeeded and returns the report.
    pub fn load_json(&self, name: &str, extra: &[&str]) -> serde_json::Value {
        let json = self.dir.join(format!("{name}.json"));
        let mut args = vec!["--quiet", "--json", json.to_str().expect("a UTF-8 path")];
        args.extend(extra);
        let out = self.load(&args);
        assert!(
            out.status.success(),
            "load {name} failed: {}\nmanager:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.manager.log_text()
        );
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the load's JSON report"))
            .expect("a JSON report")
    }

    /// Starts `user-sim replay --manager` over `orders`, writing `<prefix>-{trades,totals,rejects}.csv`.
    pub fn spawn_replay(&self, orders: &Path, prefix: &str, extra: &[&str]) -> Proc {
        let mut args = self.replay_args(orders, prefix);
        args.extend(extra.iter().map(|s| s.to_string()));
        Proc::spawn(
            "user-sim",
            &bin("user-sim"),
            &args,
            self.dir.join(format!("{prefix}.log")),
        )
    }

    pub fn replay_args(&self, orders: &Path, prefix: &str) -> Vec<String> {
        let out = |kind: &str| {
            self.dir
                .join(format!("{prefix}-{kind}.csv"))
                .display()
                .to_string()
        };
        vec![
            "replay".into(),
            "--manager".into(),
            self.addr.clone(),
            "--ca".into(),
            self.ca().display().to_string(),
            "--token".into(),
            self.token(),
            "--securities".into(),
            self.securities().display().to_string(),
            "--orders".into(),
            orders.display().to_string(),
            "--rules".into(),
            self.options.rules.into(),
            "--trades-out".into(),
            out("trades"),
            "--totals-out".into(),
            out("totals"),
            "--rejects-out".into(),
            out("rejects"),
        ]
    }

    /// Waits until the journal holds `bytes` while `run` (a replay or any client run) is still
    /// going: the moment for a "kill it mid-run" fault.
    pub fn wait_journal(&self, run: &mut Proc, bytes: u64) {
        let start = Instant::now();
        while self.journal_bytes() < bytes {
            assert!(
                run.running(),
                "{} ended before the journal reached {bytes} bytes:\n{}",
                run.name,
                run.log_text()
            );
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "journal stuck at {} bytes",
                self.journal_bytes()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits for a replay to end and asserts it succeeded, showing its log and the manager's.
    pub fn wait_replay(&self, replay: &mut Proc) {
        let status = replay.child.wait().unwrap();
        assert!(
            status.success(),
            "replay failed:\n{}\nmanager:\n{}",
            replay.log_text(),
            self.manager.log_text()
        );
    }

    /// Bytes of journal segments so far (not the journal's listing copy or high-water mark).
    pub fn journal_bytes(&self) -> u64 {
        std::fs::read_dir(self.data_dir.join("journal"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// Writes a generated stream and the local reference outputs into `dir`, returning the orders
/// path. `<prefix>-{trades,totals,rejects}.csv` are the sequential engine's files.
pub fn local_reference(dir: &Path, securities: &Path, orders: &Path, rules: &str, prefix: &str) {
    let out = |kind: &str| {
        dir.join(format!("{prefix}-{kind}.csv"))
            .display()
            .to_string()
    };
    let status = Command::new(bin("user-sim"))
        .args(["replay", "--local", "--securities"])
        .arg(securities)
        .arg("--orders")
        .arg(orders)
        .args([
            "--rules",
            rules,
            "--trades-out",
            &out("trades"),
            "--totals-out",
            &out("totals"),
            "--rejects-out",
            &out("rejects"),
        ])
        .status()
        .expect("run user-sim replay --local");
    assert!(status.success(), "local replay failed");
}

/// The number a log line gives as `key=N` (its first `key=`), if any.
pub fn logged_u64(line: &str, key: &str) -> Option<u64> {
    line.split_once(&format!("{key}="))?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Generates `n` orders with `seed` over `securities` into `out`.
pub fn generate(securities: &Path, n: u64, seed: u64, out: &Path) {
    let status = Command::new(bin("user-sim"))
        .args([
            "generate",
            "--orders",
            &n.to_string(),
            "--seed",
            &seed.to_string(),
            "--securities",
        ])
        .arg(securities)
        .arg("--out")
        .arg(out)
        .status()
        .expect("run user-sim generate");
    assert!(status.success(), "generate failed");
}

/// Asserts two files are byte-identical, showing the first differing line.
pub fn assert_same_file(a: &Path, b: &Path) {
    let (x, y) = (
        std::fs::read_to_string(a).expect("read a"),
        std::fs::read_to_string(b).expect("read b"),
    );
    if x != y {
        let line = x.lines().zip(y.lines()).position(|(p, q)| p != q);
        panic!(
            "{} and {} differ ({} vs {} lines); first difference at line {:?}: {:?} vs {:?}",
            a.display(),
            b.display(),
            x.lines().count(),
            y.lines().count(),
            line.map(|l| l + 1),
            line.and_then(|l| x.lines().nth(l)),
            line.and_then(|l| y.lines().nth(l)),
        );
    }
}

/// Asserts `<a>-{trades,totals,rejects}.csv` equal `<b>-...` in `dir`, byte for byte.
pub fn assert_same_outputs(dir: &Path, a: &str, b: &str) {
    for kind in ["trades", "totals", "rejects"] {
        assert_same_file(
            &dir.join(format!("{a}-{kind}.csv")),
            &dir.join(format!("{b}-{kind}.csv")),
        );
    }
}

/// A plain HTTP/1.1 GET of `/metrics` at `addr` (the scrape a Prometheus server makes): the
/// body of a 200 answer.
pub fn scrape_metrics(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}
