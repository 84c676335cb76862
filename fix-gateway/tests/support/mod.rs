//! Test support: the real `fix-gateway` process, the QuickFIX/C++ client process (built once
//! from tests/quickfix/fixclient.cpp against Debian's libquickfix-dev, cached in target/), and a
//! byte relay that can inject raw bytes between them.
#![allow(dead_code)]

pub mod grid;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const COMP_ID: &str = "GRIDMATCH";
pub const WAIT: Duration = Duration::from_secs(15);

fn target_dir() -> PathBuf {
    // target/debug/fix-gateway -> target/
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_fix-gateway"));
    bin.parent()
        .and_then(Path::parent)
        .expect("binary inside target/<profile>/")
        .to_path_buf()
}

/// The QuickFIX client binary, compiled on first use (keyed by the source's hash).
pub fn fixclient() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_fixclient).clone()
}

fn build_fixclient() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/quickfix/fixclient.cpp");
    let text = std::fs::read(&src).expect("fixclient.cpp");
    let hash = text.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    let bin = target_dir().join(format!("fixclient-{hash:016x}"));
    if bin.exists() {
        return bin;
    }
    assert!(
        Path::new("/usr/include/quickfix/Session.h").exists(),
        "QuickFIX headers missing: apt-get install libquickfix-dev (the tests' FIX client engine)"
    );
    let tmp = bin.with_extension(format!("tmp{}", std::process::id()));
    let out = Command::new("g++")
        .args(["-std=c++11", "-O1", "-w", "-o"])
        .arg(&tmp)
        .arg(&src)
        .args(["-lquickfix", "-lpthread"])
        .output()
        .expect("running g++");
    assert!(
        out.status.success(),
        "building fixclient failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Concurrent test processes may race here; rename is atomic, either copy is fine.
    if let Err(e) = std::fs::rename(&tmp, &bin) {
        assert!(bin.exists(), "moving fixclient into place: {e}");
    }
    bin
}

/// A running `fix-gateway` with the loopback backend.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    log: PathBuf,
}

impl Gateway {
    /// Starts a gateway storing in `dir`, with brokers `creds` (`broker,secret` lines), on `port`
    /// (0 = any free port).
    pub fn start(dir: &Path, creds: &str, port: u16) -> Gateway {
        Gateway::start_with(dir, creds, port, &[])
    }

    /// [`Gateway::start`] with extra command-line arguments.
    pub fn start_with(dir: &Path, creds: &str, port: u16, extra: &[&str]) -> Gateway {
        std::fs::create_dir_all(dir).unwrap();
        let cred_file = dir.join("creds.txt");
        std::fs::write(&cred_file, creds).unwrap();
        let mut args: Vec<String> = vec![
            "--loopback-credentials".into(),
            cred_file.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Gateway::spawn(dir, port, &args)
    }

    /// A gateway in front of the manager at `manager` (its certificate `ca`).
    pub fn for_manager(dir: &Path, manager: &str, ca: &Path, port: u16) -> Gateway {
        std::fs::create_dir_all(dir).unwrap();
        let args = [
            "--manager".to_string(),
            manager.to_string(),
            "--ca".into(),
            ca.display().to_string(),
        ];
        Gateway::spawn(dir, port, &args)
    }

    fn spawn(dir: &Path, port: u16, args: &[String]) -> Gateway {
        let log = dir.join(format!("gateway-{}.log", unique()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_fix-gateway"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir.join("store"))
            .arg("--comp-id")
            .arg(COMP_ID)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawning fix-gateway");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}; log: {}", read(&log)));
        Gateway {
            child,
            addr,
            dir: dir.to_path_buf(),
            log,
        }
    }

    /// The gateway's log so far.
    pub fn log(&self) -> String {
        read(&self.log)
    }

    /// SIGTERM; waits (bounded) for the exit and returns whether it was clean.
    pub fn terminate(&mut self, within: Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// kill -9: no Logout, nothing flushed beyond what was written.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Options of one client process.
pub struct ClientOpts<'a> {
    pub sender: &'a str,
    pub password: &'a str,
    pub heartbeat: u32,
    pub reset_on_logon: bool,
}

impl Default for ClientOpts<'_> {
    fn default() -> Self {
        ClientOpts {
            sender: "BRK1",
            password: "s3cret",
            heartbeat: 30,
            reset_on_logon: false,
        }
    }
}

/// A QuickFIX client process, driven by commands, read by its output lines.
pub struct Client {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
    /// Lines read but not yet matched by `expect`.
    pending: Vec<String>,
}

impl Client {
    /// Starts a client whose FileStore lives in `store` (kept across client restarts).
    pub fn start(port: u16, store: &Path, opts: ClientOpts) -> Client {
        let mut cmd = Command::new(fixclient());
        cmd.args(["--port", &port.to_string()])
            .args(["--sender", opts.sender, "--target", COMP_ID])
            .args(["--password", opts.password])
            .arg("--store")
            .arg(store)
            .args(["--heartbeat", &opts.heartbeat.to_string()]);
        if opts.reset_on_logon {
            cmd.arg("--reset-on-logon");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning fixclient");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Client {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Sends a command and waits for its `ok`.
    pub fn cmd(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("client stdin");
        let name = line.split(' ').next().unwrap().to_string();
        let ok = format!("ok {name}");
        self.expect(|l| l == ok || l.starts_with("error"), WAIT);
        if let Some(err) = self.seen.iter().rev().find(|l| l.starts_with("error")) {
            panic!("client: {err}");
        }
    }

    /// Sends an application or admin message, `|`-separated fields starting with 35=.
    pub fn send(&mut self, fields: &str) {
        self.cmd(&format!("send {fields}"));
    }

    /// Waits for a line matching `pred`; returns it. Panics with the history on timeout.
    pub fn expect(&mut self, pred: impl Fn(&str) -> bool, within: Duration) -> String {
        if let Some(i) = self.pending.iter().position(|l| pred(l)) {
            return self.pending.remove(i);
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                    self.pending.push(line);
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "expected line not seen within {within:?}; client saw:\n{}",
                        self.seen.join("\n")
                    )
                }
            }
        }
    }

    /// Collects lines for `dur` (for asserting that something did not happen).
    pub fn collect_for(&mut self, dur: Duration) -> Vec<String> {
        let deadline = Instant::now() + dur;
        let mut got = std::mem::take(&mut self.pending);
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line.clone());
            got.push(line);
        }
        got
    }

    /// Takes the first line read but not yet matched that satisfies `pred`.
    pub fn take_pending(&mut self, pred: impl Fn(&str) -> bool) -> Option<String> {
        let i = self.pending.iter().position(|l| pred(l))?;
        Some(self.pending.remove(i))
    }

    /// Reads what has arrived, waiting at most `wait` for the first line.
    pub fn poll(&mut self, wait: Duration) {
        let mut next = self.lines.recv_timeout(wait).ok();
        while let Some(line) = next {
            self.seen.push(line.clone());
            self.pending.push(line);
            next = self.lines.try_recv().ok();
        }
    }

    /// The client's (next sender, next target) sequence numbers.
    pub fn seqnums(&mut self) -> (u64, u64) {
        writeln!(self.stdin, "seqnums").unwrap();
        let line = self.expect(|l| l.starts_with("seqnums "), WAIT);
        let num = |key: &str| {
            line.split(' ')
                .find_map(|kv| kv.strip_prefix(key))
                .and_then(|v| v.parse().ok())
                .unwrap()
        };
        (num("sender="), num("target="))
    }

    /// Waits until the client's sequence numbers are `want` (QuickFIX counts a message after
    /// its callback has printed it), or panics with what they are.
    pub fn wait_seqnums(&mut self, want: (u64, u64)) {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.seqnums();
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "seqnums {got:?}, expected {want:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the session and waits for the logon.
    pub fn logon(&mut self) {
        self.cmd("start");
        self.expect(|l| l == "logon", WAIT);
    }

    /// Logs out and stops the process.
    pub fn stop(mut self) {
        let _ = writeln!(self.stdin, "stop");
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.wait();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `tag` in an `in`/`out` line (fields separated by `|`).
pub fn field(line: &str, tag: u32) -> Option<&str> {
    let prefix = format!("{tag}=");
    line.split('|').find_map(|f| {
        f.strip_prefix("in ")
            .or(f.strip_prefix("out "))
            .unwrap_or(f)
            .strip_prefix(prefix.as_str())
    })
}

/// Whether `line` is a received message of MsgType `t`.
pub fn is_in(line: &str, t: &str) -> bool {
    line.starts_with("in ") && field(line, 35) == Some(t)
}

/// A TCP relay client -> gateway that can inject raw bytes towards the gateway between the
/// client's writes.
pub struct Relay {
    pub port: u16,
    upstream: Arc<Mutex<Option<TcpStream>>>,
}

impl Relay {
    pub fn start(gateway: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream: Arc<Mutex<Option<TcpStream>>> = Arc::new(Mutex::new(None));
        let up = upstream.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut down) = conn else { break };
                let Ok(server) = TcpStream::connect(gateway) else {
                    break;
                };
                *up.lock().unwrap() = Some(server.try_clone().unwrap());
                let mut down_w = down.try_clone().unwrap();
                let mut server_r = server.try_clone().unwrap();
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut server_r, &mut down_w);
                    let _ = down_w.shutdown(std::net::Shutdown::Both);
                });
                let up2 = up.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    loop {
                        let n = match down.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let mut guard = up2.lock().unwrap();
                        let Some(s) = guard.as_mut() else { break };
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    if let Some(s) = up2.lock().unwrap().as_ref() {
                        let _ = s.shutdown(std::net::Shutdown::Both);
                    }
                });
            }
        });
        Relay { port, upstream }
    }

    /// Writes `bytes` to the gateway as if the client had sent them.
    pub fn inject(&self, bytes: &[u8]) {
        let mut guard = self.upstream.lock().unwrap();
        guard
            .as_mut()
            .expect("no connection through the relay")
            .write_all(bytes)
            .unwrap();
    }
}
