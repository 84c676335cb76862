//! Helpers for tests that run the real `tui` binary inside a detached tmux session.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of a sibling workspace binary (the grid's test kit finds and checks it).
pub use testkit::bin as sibling_bin;

/// Fails loudly when tmux is missing: these tests must not pass silently.
pub fn require_tmux() {
    let ok = Command::new("tmux")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "tmux is required for this test and was not found on PATH (apt-get install -y tmux)"
    );
}

/// Kills and reaps every child on drop, so a failing test leaves no process behind.
#[derive(Default)]
pub struct Children(pub Vec<(String, Child)>);

impl Children {
    pub fn spawn(&mut self, name: &str, cmd: &mut Command, log_dir: &Path) -> &mut Child {
        let out = std::fs::File::create(log_dir.join(format!("{name}.out"))).expect("log file");
        let err = std::fs::File::create(log_dir.join(format!("{name}.err"))).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.0.push((name.to_string(), child));
        &mut self.0.last_mut().expect("just pushed").1
    }

    /// Kills (SIGKILL) and reaps the child started as `name`.
    pub fn kill(&mut self, name: &str) {
        let (_, child) = self
            .0
            .iter_mut()
            .find(|(n, _)| n == name)
            .expect("no such child");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in self.0.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A private tmux server (own socket) running one command in a fixed-size window; the server
/// is killed on drop.
pub struct Tmux {
    socket: String,
    /// The wrapper shell writes the command's exit status here.
    exit_file: PathBuf,
}

pub const SESSION: &str = "tui";

impl Tmux {
    /// Starts `command` (a shell command line) in a detached `width`x`height` session. A
    /// wrapper shell records the command's exit status in a file: tmux's own
    /// `pane_dead_status` proved unreliable (the exited process was sometimes left unreaped).
    pub fn start(command: &str, width: u16, height: u16, exit_file: &Path) -> Tmux {
        require_tmux();
        // A private socket beside the exit file (in the test's temp dir): no clash with other
        // tmux servers, and nothing left behind once the temp dir is removed.
        let socket = exit_file.with_file_name("tmux.sock").display().to_string();
        let command = format!("{command}; echo $? > {}", shell_quote(exit_file));
        let t = Tmux {
            socket,
            exit_file: exit_file.to_path_buf(),
        };
        let out = t.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            SESSION,
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            &command,
            ";",
            "set-option",
            "-t",
            SESSION,
            "remain-on-exit",
            "on",
        ]);
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("running tmux")
    }

    /// The visible screen as text.
    pub fn capture(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", SESSION]).stdout)
            .into_owned()
    }

    pub fn send_keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", SESSION];
        args.extend_from_slice(keys);
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "tmux send-keys failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `Some(exit status)` once the command has exited.
    pub fn exit_status(&self) -> Option<i32> {
        let text = std::fs::read_to_string(&self.exit_file).ok()?;
        // The file may be seen between its creation and the write.
        text.trim().parse().ok()
    }

    /// Captures the screen until `pred` holds or `timeout` passes; returns the last capture.
    pub fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.capture();
            if pred(&screen) {
                return Ok(screen);
            }
            if Instant::now() >= deadline {
                return Err(screen);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sends `q` and waits for the tui to exit; returns its exit status.
    pub fn quit(&self) -> i32 {
        self.send_keys(&["q"]);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = self.exit_status() {
                return status;
            }
            if Instant::now() >= deadline {
                panic!("tui did not exit within 5 s of `q`:\n{}", self.capture());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// True when `line` is a row of the matching-log table: time, security, price, qty, buy id,
/// sell id (borders stripped).
pub fn is_trade_row(line: &str) -> bool {
    let inner = line.trim().trim_matches('│').trim();
    let tokens: Vec<&str> = inner.split_whitespace().collect();
    if tokens.len() != 6 {
        return false;
    }
    let time = tokens[0].as_bytes();
    let time_ok = time.len() == 12
        && time.iter().enumerate().all(|(i, c)| match i {
            2 | 5 => *c == b':',
            8 => *c == b'.',
            _ => c.is_ascii_digit(),
        });
    let numeric = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == ',');
    time_ok && tokens[2..].iter().all(|t| numeric(t))
}

pub fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

#[test]
fn trade_row_detection() {
    assert!(is_trade_row(
        "│00:01:01.234  FPT       25,350     300       4242           4243          │"
    ));
    assert!(!is_trade_row(
        "│Time          Security  Price      Qty       Buy order      Sell order    │"
    ));
    assert!(!is_trade_row(
        "│00:00:00.000 info   tui: connected to 127.0.0.1:7000 (session 3)   │"
    ));
}
