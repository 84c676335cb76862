//! The real endpoint on 127.0.0.1:0, scraped while four threads record a seeded load; the
//! scrapes are parsed by prometheus_client's OpenMetrics parser
//! (metrics/tests/py/check_metrics.py) and the last one must hold exactly what the threads
//! recorded. Needs the venv (scripts/venv.sh).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use matching::{Aggressor, OrderType, Phase, RejectReason, Side};
use metrics::{
    AmendResult, FeedView, Metrics, OrderResult, SessionKind, LATENCY_BOUNDS_US, MAX_EXECUTORS,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

fn venv_python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        python.exists(),
        "the Python test venv is missing ({}): run scripts/venv.sh first",
        python.display()
    );
    python
}

/// One HTTP/1.1 request on a fresh connection; returns (status line, headers, body).
fn http(addr: SocketAddr, request: &str) -> (String, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (
        status.to_owned(),
        headers.to_ascii_lowercase(),
        body.to_owned(),
    )
}

fn get(addr: SocketAddr, path: &str) -> (String, String, String) {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
    )
}

/// What one load thread recorded, tallied by label set.
#[derive(Default)]
struct Tally {
    samples: BTreeMap<(String, Vec<(String, String)>), f64>,
}

impl Tally {
    fn add(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        *self.samples.entry((name.to_owned(), labels)).or_default() += v;
    }

    fn latency(&mut self, name: &str, labels: &[(&str, &str)], d: Duration) {
        let ns = d.as_nanos() as u64;
        for &us in &LATENCY_BOUNDS_US {
            if ns <= us * 1_000 {
                // The checker compares `le` as a float, whatever its spelling.
                let le = format!("{}", us as f64 / 1e6);
                let mut l = labels.to_vec();
                l.push(("le", &le));
                self.add(&format!("{name}_bucket"), &l, 1.0);
            }
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        self.add(&format!("{name}_bucket"), &l, 1.0);
        self.add(&format!("{name}_count"), labels, 1.0);
        self.add(&format!("{name}_sum"), labels, ns as f64 / 1e9);
    }
}

/// Records random operations until it has done `min_ops` and the scraper has finished
/// `min_scrapes` scrapes, so scrapes certainly overlap the load.
fn load(
    seed: u64,
    m: &Metrics,
    min_ops: usize,
    scrapes: &AtomicUsize,
    min_scrapes: usize,
) -> Tally {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut t = Tally::default();
    let mut ops = 0;
    while ops < min_ops || scrapes.load(Ordering::Acquire) < min_scrapes {
        ops += 1;
        let latency = Duration::from_nanos(match rng.gen_range(0..10) {
            0 => 0,
            1 => rng.gen_range(0..20_000_000_000),
            2 => LATENCY_BOUNDS_US[rng.gen_range(0..LATENCY_BOUNDS_US.len())] * 1_000,
            _ => rng.gen_range(500..3_000_000),
        });
        match rng.gen_range(0..6) {
            0 | 1 => {
                let kind = OrderType::ALL[rng.gen_range(0..7)];
                let side = if rng.gen_bool(0.5) {
                    Side::Buy
                } else {
                    Side::Sell
                };
                let reason = RejectReason::ALL[rng.gen_range(0..RejectReason::ALL.len())];
                let (result, label) = match rng.gen_range(0..4) {
                    0 => (OrderResult::Filled, "filled"),
                    1 => (OrderResult::Rested, "rested"),
                    2 => (OrderResult::Cancelled, "cancelled"),
                    _ => (OrderResult::Rejected(reason), "rejected"),
                };
                m.order_final(kind, side, result, latency);
                t.add(
                    "gridmatch_orders_total",
                    &[
                        ("type", kind.as_str()),
                        ("side", side.as_str()),
                        ("result", label),
                    ],
                    1.0,
                );
                if label == "rejected" {
                    t.add(
                        "gridmatch_rejects_total",
                        &[("action", "new"), ("reason", reason.code())],
                        1.0,
                    );
                }
                t.latency(
                    "gridmatch_order_latency_seconds",
                    &[("action", "new")],
                    latency,
                );
            }
            2 => {
                let reason = RejectReason::ALL[rng.gen_range(0..RejectReason::ALL.len())];
                let amend = rng.gen_bool(0.5);
                let choice = rng.gen_range(0..3);
                let (action, label) = if amend {
                    let (result, label) = match choice {
                        0 => (AmendResult::PriorityKept, "priority_kept"),
                        1 => (AmendResult::PriorityLost, "priority_lost"),
                        _ => (AmendResult::Rejected(reason), "rejected"),
                    };
                    m.amend_final(result, latency);
                    t.add("gridmatch_amends_total", &[("result", label)], 1.0);
                    ("amend", label)
                } else {
                    let (result, label) = if choice == 0 {
                        (Err(reason), "rejected")
                    } else {
                        (Ok(()), "cancelled")
                    };
                    m.cancel_final(result, latency);
                    t.add("gridmatch_cancels_total", &[("result", label)], 1.0);
                    ("cancel", label)
                };
                if label == "rejected" {
                    t.add(
                        "gridmatch_rejects_total",
                        &[("action", action), ("reason", reason.code())],
                        1.0,
                    );
                }
                t.latency(
                    "gridmatch_order_latency_seconds",
                    &[("action", action)],
                    latency,
                );
            }
            3 | 4 => {
                let a = [Aggressor::Buy, Aggressor::Sell, Aggressor::Auction][rng.gen_range(0..3)];
                let qty = rng.gen_range(1..10_000u64) * 100;
                m.trade(a, qty);
                t.add("gridmatch_trades_total", &[("aggressor", a.as_str())], 1.0);
                t.add(
                    "gridmatch_traded_shares_total",
                    &[("aggressor", a.as_str())],
                    qty as f64,
                );
            }
            _ => {
                let records = rng.gen_range(1..500u64);
                m.journal_commit(latency, records);
                t.latency("gridmatch_journal_commit_seconds", &[], latency);
                t.add("gridmatch_journal_records_total", &[], records as f64);
            }
        }
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_during_a_load_the_endpoint_reports_exactly_what_was_recorded() {
    let python = venv_python();
    let metrics = Arc::new(Metrics::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(metrics::serve(listener, metrics.clone(), async {
        let _ = stopped.await;
    }));

    let dir = tempfile::tempdir().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let scraped = Arc::new(AtomicUsize::new(0));
    const MIN_SCRAPES: usize = 20;
    let recorders: Vec<_> = (0..4)
        .map(|i| {
            let m = metrics.clone();
            let scraped = scraped.clone();
            std::thread::spawn(move || load(i, &m, 50_000, &scraped, MIN_SCRAPES))
        })
        .collect();
    let scraper = {
        let done = done.clone();
        let scraped = scraped.clone();
        let dir = dir.path().to_owned();
        tokio::task::spawn_blocking(move || {
            let mut files = Vec::new();
            while !done.load(Ordering::Acquire) {
                let (status, headers, body) = get(addr, "/metrics");
                assert!(status.starts_with("HTTP/1.1 200"), "{status}");
                assert!(
                    headers.contains("content-type: application/openmetrics-text; version=1.0.0"),
                    "{headers}"
                );
                let path = dir.join(format!("scrape-{:04}.txt", files.len()));
                std::fs::write(&path, body).unwrap();
                files.push(path);
                scraped.store(files.len(), Ordering::Release);
                assert!(files.len() < 100_000, "scraper never saw the load end");
            }
            files
        })
    };
    let mut total = Tally::default();
    for r in recorders {
        for (k, v) in r.join().unwrap().samples {
            *total.samples.entry(k).or_default() += v;
        }
    }
    // Gauges and per-executor series, set after the load.
    metrics.set_in_flight(17);
    metrics.set_held(3);
    metrics.set_sessions(SessionKind::Broker, 12);
    metrics.set_sessions(SessionKind::Monitor, 1);
    metrics.set_feed_subscribers(5);
    metrics.feed_messages(FeedView::Canonical, 1_000);
    metrics.feed_messages(FeedView::L2, 640);
    metrics.feed_messages(FeedView::L2, 2);
    metrics.feed_sent(642, 20_000);
    metrics.feed_trouble(0, 2, 1);
    metrics.set_phase(Phase::Atc);
    metrics.executor_stats("exec-1", 1_000, 7);
    metrics.executor_stats("exec-1", 1_500, 2);
    metrics.executor_stats("exec-1", 40, 0); // reconnected: counts from 0 again
    metrics.executor_stats("exec \"2\"\n", 9, 1); // needs escaping
    done.store(true, Ordering::Release);
    let mut scrapes = scraper.await.unwrap();
    let (_, _, last) = get(addr, "/metrics");
    let last_path = dir.path().join("scrape-last.txt");
    std::fs::write(&last_path, &last).unwrap();
    scrapes.push(last_path);

    let mut samples: Vec<serde_like::Sample> = total
        .samples
        .iter()
        .map(|((name, labels), v)| (name.clone(), labels.clone(), *v))
        .collect();
    for (name, labels, v) in [
        ("gridmatch_in_flight_commands", vec![], 17.0),
        ("gridmatch_held_commands", vec![], 3.0),
        ("gridmatch_sessions", vec![("kind", "broker")], 12.0),
        ("gridmatch_sessions", vec![("kind", "fix")], 0.0),
        ("gridmatch_sessions", vec![("kind", "monitor")], 1.0),
        ("gridmatch_feed_subscribers", vec![], 5.0),
        (
            "gridmatch_feed_messages_total",
            vec![("view", "canonical")],
            1_000.0,
        ),
        ("gridmatch_feed_messages_total", vec![("view", "L2")], 642.0),
        ("gridmatch_feed_messages_total", vec![("view", "L3")], 0.0),
        ("gridmatch_feed_sent_messages_total", vec![], 642.0),
        ("gridmatch_feed_sent_bytes_total", vec![], 20_000.0),
        ("gridmatch_feed_dropped_items_total", vec![], 0.0),
        ("gridmatch_feed_overflows_total", vec![], 2.0),
        ("gridmatch_feed_rebuilds_total", vec![], 1.0),
        ("gridmatch_phase", vec![("phase", "ATC")], 1.0),
        ("gridmatch_phase", vec![("phase", "CONTINUOUS")], 0.0),
        (
            "gridmatch_executor_handled_total",
            vec![("executor", "exec-1")],
            1_540.0,
        ),
        (
            "gridmatch_executor_queue_depth",
            vec![("executor", "exec-1")],
            0.0,
        ),
        (
            "gridmatch_executor_handled_total",
            vec![("executor", "exec \"2\"\n")],
            9.0,
        ),
    ] {
        samples.push((
            name.to_owned(),
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            v,
        ));
    }
    let families = [
        "gridmatch_orders",
        "gridmatch_rejects",
        "gridmatch_cancels",
        "gridmatch_amends",
        "gridmatch_order_latency_seconds",
        "gridmatch_trades",
        "gridmatch_traded_shares",
        "gridmatch_journal_commit_seconds",
        "gridmatch_journal_records",
        "gridmatch_in_flight_commands",
        "gridmatch_held_commands",
        "gridmatch_sessions",
        "gridmatch_feed_subscribers",
        "gridmatch_feed_messages",
        "gridmatch_feed_sent_messages",
        "gridmatch_feed_sent_bytes",
        "gridmatch_feed_dropped_items",
        "gridmatch_feed_overflows",
        "gridmatch_feed_rebuilds",
        "gridmatch_phase",
        "gridmatch_executor_handled",
        "gridmatch_executor_queue_depth",
    ];
    let expected = dir.path().join("expected.json");
    std::fs::write(&expected, serde_like::to_json(&families, &samples)).unwrap();

    let check = |expected: &Path| {
        let out = std::process::Command::new(&python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/check_metrics.py"))
            .arg(expected)
            .args(&scrapes)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, stderr) = check(&expected);
    assert!(ok, "check_metrics.py failed:\n{stdout}\n{stderr}");
    assert_eq!(stdout.trim().parse::<usize>().unwrap(), samples.len());
    assert!(samples.len() > 200, "{} samples", samples.len());
    // The check has teeth: one trade more than recorded is caught.
    let i = samples
        .iter()
        .position(|s| s.0 == "gridmatch_trades_total")
        .unwrap();
    samples[i].2 += 1.0;
    let wrong = dir.path().join("wrong.json");
    std::fs::write(&wrong, serde_like::to_json(&families, &samples)).unwrap();
    let (ok, _, stderr) = check(&wrong);
    assert!(!ok && stderr.contains("gridmatch_trades_total"), "{stderr}");
    assert!(scrapes.len() > MIN_SCRAPES, "{} scrapes", scrapes.len());

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(
        TcpStream::connect(addr).is_err(),
        "still listening after shutdown"
    );
    let _ = MAX_EXECUTORS;
}

/// A tiny JSON writer for the expected values (no serde in this crate's tree).
mod serde_like {
    pub type Sample = (String, Vec<(String, String)>, f64);

    fn string(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    pub fn to_json(families: &[&str], samples: &[Sample]) -> String {
        let fams: Vec<String> = families.iter().map(|f| string(f)).collect();
        let rows: Vec<String> = samples
            .iter()
            .map(|(name, labels, v)| {
                let l: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{}: {}", string(k), string(v)))
                    .collect();
                format!("[{}, {{{}}}, {:e}]", string(name), l.join(", "), v)
            })
            .collect();
        format!(
            "{{\"families\": [{}], \"samples\": [\n{}\n]}}",
            fams.join(", "),
            rows.join(",\n")
        )
    }
}

#[tokio::test]
async fn other_paths_methods_and_too_many_connections_get_clear_answers() {
    let metrics = Arc::new(Metrics::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(metrics::serve(listener, metrics, async {
        let _ = stopped.await;
    }));
    tokio::task::spawn_blocking(move || {
        let (status, _, body) = get(addr, "/");
        assert!(status.starts_with("HTTP/1.1 404"), "{status}");
        assert!(body.contains("/metrics"), "{body}");
        let (status, headers, _) = http(addr, "POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc");
        assert!(status.starts_with("HTTP/1.1 405"), "{status}");
        assert!(headers.contains("allow: get, head"), "{headers}");
        let (status, headers, body) = http(addr, "HEAD /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(headers.contains("openmetrics"), "{headers}");
        assert!(body.is_empty(), "HEAD returned a body");
        // Garbage is answered with 400, never a crash; the server keeps serving.
        let (status, _, _) = http(addr, "NOT HTTP AT ALL\r\n\r\n");
        assert!(status.starts_with("HTTP/1.1 400"), "{status}");

        // Fill every connection slot with idle connections; one more is closed at once.
        let idle: Vec<TcpStream> = (0..metrics::http::MAX_CONNECTIONS).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(300));
        let mut extra = TcpStream::connect(addr).unwrap();
        extra.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = extra.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
        let mut buf = Vec::new();
        let n = extra.read_to_end(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "an over-limit connection was served");
        drop(idle);
        // Slots come back once the idle connections close.
        let mut ok = false;
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(100));
            if let Ok(mut s) = TcpStream::connect(addr) {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
                let mut r = String::new();
                if s.read_to_string(&mut r).is_ok() && r.starts_with("HTTP/1.1 200") {
                    ok = true;
                    break;
                }
            }
        }
        assert!(ok, "the endpoint did not recover after the idle connections closed");
    })
    .await
    .unwrap();
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
