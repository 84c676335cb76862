//! Child processes that cannot outlive the experiment.
//!
//! Each child is started in its own process group, so a terminal's Ctrl-C reaches only the
//! driver (which then stops the children in order) and so stopping a child also stops anything
//! it started (`ip netns exec` keeps the same pid, but a wrapper script would not). Dropping a
//! [`Guarded`] sends SIGTERM to the group, waits a grace period, then SIGKILLs and reaps it.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::{Error, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// How often blocking waits look at the child and at the interrupt flag.
const POLL: Duration = Duration::from_millis(5);

/// True once SIGINT or SIGTERM arrived (or [`request_interrupt`] was called).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Marks the run as interrupted: every wait in this module then returns [`Error::Interrupted`].
pub fn request_interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs SIGINT/SIGTERM handlers that set the interrupt flag instead of killing the driver,
/// so guards run their cleanup on the way out. The signal streams are registered before this
/// returns, so there is no window in which a signal would kill the driver outright.
pub fn install_interrupt_handler() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| Error::io("signal runtime", e))?;
    let (mut int, mut term) = rt
        .block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            ))
        })
        .map_err(|e| Error::io("installing signal handlers", e))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async move {
                loop {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                    request_interrupt();
                    eprintln!("experiment: interrupt received, stopping children and cleaning up");
                }
            })
        })
        .map_err(|e| Error::io("spawning the signal thread", e))?;
    Ok(())
}

/// Sends `signal` to the whole process group `pgid`. ESRCH (group already gone) is not an error.
fn signal_group(pgid: u32, signal: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return; // never signal "every process" or init by accident
    }
    // SAFETY: kill(2) with a negative pid only sends a signal to that process group.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// A child process (and its process group) that is stopped and reaped when dropped.
#[derive(Debug)]
pub struct Guarded {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
    log: Option<PathBuf>,
    /// Disconnects when the log reader has copied everything up to the child's EOF on stderr.
    log_drained: Option<Receiver<()>>,
    grace: Duration,
}

impl Guarded {
    /// Spawns `cmd` in a new process group. stdin is closed; stdout/stderr are as configured on
    /// `cmd` unless [`Guarded::spawn_logged`] is used.
    pub fn spawn(name: impl Into<String>, mut cmd: Command) -> Result<Self> {
        let name = name.into();
        cmd.process_group(0).stdin(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("starting {name} ({:?})", cmd.get_program()), e))?;
        Ok(Guarded {
            name,
            child,
            status: None,
            log: None,
            log_drained: None,
            grace: Duration::from_secs(3),
        })
    }

    /// Spawns `cmd` with stdout and stderr appended to `log` (one file, so the order is kept)
    /// and returns the guard plus a channel of stderr lines, for waiting on a readiness line.
    pub fn spawn_logged(
        name: impl Into<String>,
        mut cmd: Command,
        log: &Path,
    ) -> Result<(Self, Receiver<String>)> {
        let out =
            File::create(log).map_err(|e| Error::io(format!("creating {}", log.display()), e))?;
        let out2 = out
            .try_clone()
            .map_err(|e| Error::io("cloning a log handle", e))?;
        cmd.stdout(Stdio::from(out)).stderr(Stdio::piped());
        let mut guard = Guarded::spawn(name, cmd)?;
        guard.log = Some(log.to_owned());
        let stderr = guard.child.stderr.take().expect("stderr was piped above");
        let (tx, rx) = mpsc::channel();
        let (drained_tx, drained_rx) = mpsc::channel::<()>();
        guard.log_drained = Some(drained_rx);
        std::thread::Builder::new()
            .name(format!("{}-stderr", guard.name))
            .spawn(move || {
                tee_lines(stderr, out2, tx);
                drop(drained_tx);
            })
            .map_err(|e| Error::io("spawning a log reader", e))?;
        Ok((guard, rx))
    }

    /// Sets how long a stop waits after SIGTERM before SIGKILL.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The child's pid (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Exit status if the child has exited (reaps it), else `None`.
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .map_err(|e| Error::io(format!("waiting for {}", self.name), e))?;
        }
        Ok(self.status)
    }

    /// Waits for the child to exit, giving up on timeout or interrupt (the child keeps running
    /// until the guard is dropped).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_status()? {
                return Ok(status);
            }
            if interrupted() {
                return Err(Error::Interrupted);
            }
            if start.elapsed() >= timeout {
                return Err(Error::Timeout {
                    what: format!("{} to finish", self.name),
                    secs: timeout.as_secs_f64(),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// An error describing an early exit, with the last lines of the child's log (once the log
    /// reader has caught up with the exited child, waiting at most a second for it).
    pub fn failed(&self, status: ExitStatus) -> Error {
        if let Some(drained) = &self.log_drained {
            // Disconnected = drained; a timeout means a grandchild still holds stderr open.
            let _ = drained.recv_timeout(Duration::from_secs(1));
        }
        Error::ChildFailed {
            what: self.name.clone(),
            status: status.to_string(),
            log_tail: self.log_tail(15),
        }
    }

    /// The last `n` lines of the child's log, if it has one.
    pub fn log_tail(&self, n: usize) -> String {
        let Some(log) = &self.log else {
            return String::from("(no log)");
        };
        let mut text = String::new();
        if File::open(log)
            .and_then(|mut f| f.read_to_string(&mut text))
            .is_err()
        {
            return format!("(cannot read {})", log.display());
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Waits until a stderr line containing `marker` arrives on `lines`. Fails early if the child
    /// exits, on timeout, or on interrupt.
    pub fn wait_for_line(
        &mut self,
        lines: &Receiver<String>,
        marker: &str,
        timeout: Duration,
    ) -> Result<String> {
        let start = Instant::now();
        loop {
            if interrupted() {
                return Err(Error::Interrupted);
            }
            match lines.recv_timeout(POLL * 4) {
                Ok(line) if line.contains(marker) => return Ok(line),
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {}
                // The reader ends at EOF: the child closed stderr, so it is exiting.
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(POLL),
            }
            if let Some(status) = self.try_status()? {
                return Err(self.failed(status));
            }
            if start.elapsed() >= timeout {
                return Err(Error::Timeout {
                    what: format!(
                        "{} to log {marker:?}; last lines:\n{}",
                        self.name,
                        self.log_tail(10)
                    ),
                    secs: timeout.as_secs_f64(),
                });
            }
        }
    }

    /// Stops the child: SIGTERM to its group, up to the grace period for a clean exit, then
    /// SIGKILL to the group, then reap. Returns the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let pgid = self.child.id();
        if self.try_status().ok().flatten().is_none() {
            signal_group(pgid, libc::SIGTERM);
            let start = Instant::now();
            while start.elapsed() < self.grace {
                if let Ok(Some(_)) = self.try_status() {
                    break;
                }
                std::thread::sleep(POLL);
            }
        }
        // Also catches grandchildren left in the group after the leader exited.
        signal_group(pgid, libc::SIGKILL);
        if self.status.is_none() {
            self.status = self.child.wait().ok();
        }
        // SIGKILL is asynchronous: wait (bounded) until no member of the group is left, so
        // "stopped" really means "nothing left behind".
        let start = Instant::now();
        while !group_members(pgid).is_empty() && start.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(POLL);
        }
        self.status
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Copies `from` line by line into `log` and sends each line on `tx` (until EOF).
fn tee_lines(from: impl Read, mut log: File, tx: mpsc::Sender<String>) {
    let mut reader = BufReader::new(from);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let _ = log.write_all(line.as_bytes());
                // The receiver may be gone once readiness was seen; keep draining the pipe
                // anyway so the child never blocks on a full stderr.
                let _ = tx.send(line.trim_end().to_owned());
            }
        }
    }
}

/// True if a process with this pid exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3 (after the parenthesised command name) is the state; Z = zombie, X = dead.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !matches!(rest.trim_start().chars().next(), Some('Z' | 'X')))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Pids of every live process in process group `pgid` (scans /proc).
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // rest = state ppid pgrp ...
        if fields.len() > 2 && fields[2] == pgid.to_string() && !matches!(fields[0], "Z" | "X") {
            out.push(pid);
        }
    }
    out
}
