//! The run grid: for every repeat, every order count and every setup, start a fresh manager
//! (and executors), run `user-sim`, record one [`RunRecord`], stop everything.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::lan::Lan;
use crate::process::{interrupted, Guarded};
use crate::runs::{Executors, RunRecord, UserSimReport};
use crate::{Error, Result};

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Id of this invocation, written into every record.
    pub invocation: String,
    pub orders: Vec<u64>,
    pub executors: Vec<Executors>,
    pub repeats: u32,
    /// Directory holding `manager`, `executor` and `user-sim`.
    pub bin_dir: PathBuf,
    /// Per-order work passed to executors as `--work-us`.
    pub work_us: u64,
    /// One-way delay for LAN mode (recorded as `netem_ms`); `None` = loopback.
    pub lan_delay_ms: Option<f64>,
    /// Broker sessions for user-sim; `None` = its default.
    pub brokers: Option<u32>,
    /// Substring of the executor's stderr line that says it owns its shard.
    pub ready_marker: String,
    /// Limit for start-up steps (ready file, executor readiness).
    pub startup_timeout: Duration,
    /// Limit for one user-sim run.
    pub run_timeout: Duration,
}

impl Plan {
    /// Number of runs this plan makes.
    pub fn total_runs(&self) -> usize {
        self.orders.len() * self.executors.len() * self.repeats as usize
    }

    /// Checks the binaries exist before anything starts.
    pub fn check(&self) -> Result<()> {
        if self.orders.is_empty() || self.executors.is_empty() || self.repeats == 0 {
            return Err(Error::Invalid(
                "need at least one order count, one setup and one repeat".into(),
            ));
        }
        if self.orders.contains(&0) {
            return Err(Error::Invalid("order counts must be positive".into()));
        }
        for bin in ["manager", "executor", "user-sim"] {
            let path = self.bin_dir.join(bin);
            if !path.is_file() {
                return Err(Error::Invalid(format!(
                    "{} not found: build with `cargo build --release --workspace` or pass --bin-dir",
                    path.display()
                )));
            }
        }
        Ok(())
    }

    fn max_executors(&self) -> u32 {
        self.executors.iter().map(|e| e.axis()).max().unwrap_or(0)
    }
}

/// Runs the whole plan, calling `on_record` after each run (to save it at once) and `progress`
/// with a one-line description. Repeats are the outer loop so slow drift of the machine spreads
/// over all cells instead of biasing whichever cell ran last.
pub fn run_plan(
    plan: &Plan,
    mut on_record: impl FnMut(&RunRecord) -> Result<()>,
    mut progress: impl FnMut(&str),
) -> Result<()> {
    plan.check()?;
    let lan = match plan.lan_delay_ms {
        Some(ms) if ms >= 0.0 && ms.is_finite() => Some(Lan::create(
            plan.max_executors().max(1),
            Duration::from_secs_f64(ms / 1e3),
            LAN_RATE_MBIT,
            crate::lan::DelayVia::Auto,
        )?),
        Some(ms) => return Err(Error::Invalid(format!("delay {ms} ms"))),
        None => None,
    };
    if let Some(lan) = &lan {
        progress(&format!(
            "LAN mode: {} namespaces, delay via {}",
            plan.max_executors(),
            if lan.uses_netem() {
                "tc netem"
            } else {
                "userspace relay (no sch_netem in this kernel)"
            }
        ));
    }
    let total = plan.total_runs();
    let mut done = 0;
    for repeat in 0..plan.repeats {
        for &orders in &plan.orders {
            for &executors in &plan.executors {
                if interrupted() {
                    return Err(Error::Interrupted);
                }
                done += 1;
                let record = run_once(plan, lan.as_ref(), orders, executors, repeat)?;
                progress(&format!(
                    "[{done}/{total}] orders={orders} executors={executors} repeat={repeat}: {:.3} s, {:.0} orders/s, p50 {} us, p99 {} us",
                    record.elapsed_s, record.throughput, record.p50_us, record.p99_us
                ));
                on_record(&record)?;
            }
        }
    }
    Ok(())
}

/// Link rate of each emulated LAN link (a gigabit LAN).
pub const LAN_RATE_MBIT: u32 = 1000;

/// A random token for one run (executors authenticate with it), from /dev/urandom.
fn random_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::io("reading /dev/urandom", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Polls for the manager's ready file; returns its content (the bound address).
fn wait_ready_file(manager: &mut Guarded, path: &Path, timeout: Duration) -> Result<String> {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if !text.trim().is_empty() {
                return Ok(text.trim().to_owned());
            }
        }
        if interrupted() {
            return Err(Error::Interrupted);
        }
        if let Some(status) = manager.try_status()? {
            return Err(manager.failed(status));
        }
        if start.elapsed() > timeout {
            return Err(Error::Timeout {
                what: format!(
                    "manager ready file {}; last lines:\n{}",
                    path.display(),
                    manager.log_tail(10)
                ),
                secs: timeout.as_secs_f64(),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One run in a fresh data directory. Every process is stopped before this returns, on success
/// or error (guards drop in reverse order: user-sim, executors, then the manager).
pub fn run_once(
    plan: &Plan,
    lan: Option<&Lan>,
    orders: u64,
    executors: Executors,
    repeat: u32,
) -> Result<RunRecord> {
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let tmp = tempfile::Builder::new()
        .prefix("gridmatch-exp-")
        .tempdir()
        .map_err(|e| Error::io("creating a temp dir", e))?;
    let data = tmp.path().join("data");
    let ready = tmp.path().join("manager.ready");
    let token = random_token()?;
    let env_filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());

    let mut cmd = Command::new(plan.bin_dir.join("manager"));
    cmd.arg("--port")
        .arg("0")
        .arg("--data-dir")
        .arg(&data)
        .arg("--ready-file")
        .arg(&ready)
        .args(["--fsync", "never"]);
    if lan.is_some() {
        cmd.args(["--bind", "0.0.0.0"]);
    }
    if executors == Executors::Local {
        cmd.arg("--local");
    }
    cmd.env("GRIDMATCH_TOKEN", &token)
        .env("RUST_LOG", &env_filter);
    let (mut manager, _manager_lines) =
        Guarded::spawn_logged("manager", cmd, &tmp.path().join("manager.log"))?;
    let bound = wait_ready_file(&mut manager, &ready, plan.startup_timeout)?;
    let port: u16 = bound
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "manager ready file holds {bound:?}, expected ADDR:PORT"
            ))
        })?;
    let local_addr = format!("127.0.0.1:{port}");
    let ca = data.join("cert.pem");

    let n = match executors {
        Executors::Local => 0,
        Executors::Grid(n) => n,
    };
    let (targets, _relays) = match lan {
        Some(lan) => lan.links(port)?,
        None => (
            vec![local_addr.parse().expect("formatted address"); n as usize],
            Vec::new(),
        ),
    };
    let mut execs = Vec::new();
    for i in 1..=n {
        let program = plan.bin_dir.join("executor");
        let mut cmd = match lan {
            Some(lan) => lan.command(i, &program),
            None => Command::new(&program),
        };
        cmd.arg("--manager")
            .arg(targets[(i - 1) as usize].to_string())
            .arg("--ca")
            .arg(&ca)
            .arg("--name")
            .arg(format!("ex{i}"));
        if plan.work_us > 0 {
            cmd.arg("--work-us").arg(plan.work_us.to_string());
        }
        cmd.env("GRIDMATCH_TOKEN", &token)
            .env("RUST_LOG", &env_filter);
        let log = tmp.path().join(format!("executor{i}.log"));
        execs.push(Guarded::spawn_logged(format!("executor {i}"), cmd, &log)?);
    }
    for (guard, lines) in &mut execs {
        guard.wait_for_line(lines, &plan.ready_marker, plan.startup_timeout)?;
    }

    let report_path = tmp.path().join("report.json");
    let mut cmd = Command::new(plan.bin_dir.join("user-sim"));
    cmd.arg("--manager")
        .arg(&local_addr)
        .arg("--ca")
        .arg(&ca)
        .arg("--credentials")
        .arg(data.join("brokers.csv"))
        .arg("--orders")
        .arg(orders.to_string())
        .arg("--max")
        .arg("--seed")
        .arg(repeat.to_string())
        .arg("--json")
        .arg(&report_path)
        .arg("--quiet")
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        );
    if let Some(b) = plan.brokers {
        cmd.arg("--brokers").arg(b.to_string());
    }
    let (mut sim, _sim_lines) =
        Guarded::spawn_logged("user-sim", cmd, &tmp.path().join("user-sim.log"))?;
    let status = sim.wait_timeout(plan.run_timeout)?;
    if !status.success() {
        return Err(sim.failed(status));
    }
    // A grid process dying mid-run would make the numbers meaningless: check before recording.
    for (guard, _) in &mut execs {
        if let Some(status) = guard.try_status()? {
            return Err(guard.failed(status));
        }
    }
    if let Some(status) = manager.try_status()? {
        return Err(manager.failed(status));
    }
    let report = UserSimReport::read(&report_path)?;
    if report.orders != orders || report.elapsed_s <= 0.0 {
        return Err(Error::Invalid(format!(
            "user-sim reported {} orders in {} s, asked for {orders}",
            report.orders, report.elapsed_s
        )));
    }
    drop(sim);
    drop(execs);
    manager.stop();
    Ok(RunRecord {
        invocation: plan.invocation.clone(),
        cell: RunRecord::cell_label(orders, executors),
        orders,
        executors,
        repeat,
        mode: if lan.is_some() { "lan" } else { "loopback" }.into(),
        netem_ms: plan.lan_delay_ms.unwrap_or(0.0),
        work_us: plan.work_us,
        brokers: report.brokers,
        elapsed_s: report.elapsed_s,
        mean_us_per_order: report.elapsed_s * 1e6 / orders as f64,
        throughput: report.throughput,
        p50_us: report.final_us.p50,
        p99_us: report.final_us.p99,
        p999_us: report.final_us.p999,
        accept_p50_us: report.accept_us.p50,
        accept_p99_us: report.accept_us.p99,
        accepted: report.accepted,
        rejected: report.rejected,
        fills: report.fills,
        started_unix,
    })
}
