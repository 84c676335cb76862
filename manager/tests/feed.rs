//! The market-data feed through real processes: a manager, executors (one killed mid-run),
//! `user-sim replay` as order entry and `user-sim record` as L3 subscribers writing LOBSTER
//! files, plus raw subscribers in this process for the slow-subscriber and session tests.
//!
//! Exactness is checked against the sequential reference (the same stream sequenced through
//! one engine, its events through a `FeedBuilder`, its messages through the LOBSTER writer):
//! a lossless recording must equal it line for line (the message file without its time column,
//! the orderbook file entirely), so the subscriber's book equals the engine's after every
//! message, not only at the end. Recordings that went through resyncs (a lossy subscriber, a
//! feed rebuilt after its queue overflowed, a manager restart) must end on the engine's book.

mod feed_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use feed::lobster::{parse_orderbook_line, LobsterBook, LobsterMessage, PRICE_SCALE};
use feed::{FeedLevel, Securities, Subscription};
use feed_common::{reference_lobster, sequence, without_time, Sequenced};
use journal::Entry;
use matching::stream::{parse_orders, write_orders, OrderRow};
use matching::{Command, MarketRules, SecurityTable};
use proto::{Credentials, FeedRequest, FeedUpdate};
use testkit::nasty::{nasty_stream, Nasty};
use testkit::{bin, generate, Grid, GridOptions, Proc};

const LEVELS: usize = 10;

fn listing(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("listing.csv");
    std::fs::write(&path, SecurityTable::synthetic(n).unwrap().to_csv()).unwrap();
    path
}

fn grid(dir: &Path, executors: usize, securities: usize, manager_args: &[&str]) -> Grid {
    Grid::start(
        dir,
        GridOptions {
            executors,
            securities: Some(listing(dir, securities)),
            manager_args: manager_args.iter().map(|s| s.to_string()).collect(),
            ..GridOptions::default()
        },
    )
}

fn table(grid: &Grid) -> SecurityTable {
    SecurityTable::parse_csv(&std::fs::read_to_string(grid.securities()).unwrap()).unwrap()
}

/// Starts `user-sim record` into `out` and waits until it is subscribed and caught up.
fn record(grid: &Grid, name: &str, out: &Path, extra: &[&str]) -> Proc {
    let mut args: Vec<String> = [
        "record",
        "--manager",
        &grid.addr,
        "--ca",
        grid.ca().to_str().unwrap(),
        "--token",
        &grid.token(),
        "--out",
        out.to_str().unwrap(),
        "--levels",
        &LEVELS.to_string(),
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut p = Proc::spawn(
        name,
        &bin("user-sim"),
        &args,
        grid.dir.join(format!("{name}.log")),
    );
    p.wait_log("caught up", 1, Duration::from_secs(30));
    p
}

/// Waits until the recorder has caught up with everything completed so far (two heartbeats
/// after now: each is sent only with nothing queued for it), then stops it and returns its
/// log (the summary is its last line).
fn stop_recorder(p: &mut Proc) -> String {
    let seen = p.log_text().matches("caught up").count();
    p.wait_log("caught up", seen + 2, Duration::from_secs(60));
    assert!(
        p.terminate(Duration::from_secs(10)),
        "recorder did not exit cleanly:\n{}",
        p.log_text()
    );
    let log = p.log_text();
    assert!(log.contains("recorded "), "no summary:\n{log}");
    log
}

fn summary_number(log: &str, after_word: &str) -> u64 {
    let line = log
        .lines()
        .rev()
        .find(|l| l.starts_with("recorded "))
        .expect("summary line");
    let words: Vec<&str> = line
        .split([' ', ',', ';'])
        .filter(|w| !w.is_empty())
        .collect();
    let i = words
        .iter()
        .position(|w| *w == after_word)
        .unwrap_or_else(|| panic!("{after_word} in {line}"));
    words[i - 1].parse().unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn files(out: &Path, code: &str) -> (String, String) {
    let (m, b) = user_sim::record::file_names(code, LEVELS);
    (read(&out.join(m)), read(&out.join(b)))
}

/// The recording equals the reference line for line; every order id in it is a public id.
fn assert_exact(out: &Path, table: &SecurityTable, s: &Sequenced) {
    let mut lines = 0;
    for (sec, code, _) in table.iter() {
        let (msg, book) = files(out, code);
        let (ref_msg, ref_book) = reference_lobster(&s.items, table, sec, LEVELS);
        let (got, want) = (without_time(&msg), without_time(&ref_msg));
        if got != want {
            let i = got.iter().zip(&want).position(|(a, b)| a != b);
            panic!(
                "{code}: message file differs from the reference ({} vs {} lines), first at line {:?}: {:?} vs {:?}",
                got.len(),
                want.len(),
                i.map(|i| i + 1),
                i.map(|i| got[i]),
                i.map(|i| want[i])
            );
        }
        assert!(
            book == ref_book,
            "{code}: orderbook file differs from the reference"
        );
        lines += got.len();
        // Public ids: an order is published under the seq of the NEW (or the AMEND that lost
        // it its priority) that rested it, never under the broker's own id.
        let resting_seqs: std::collections::HashSet<u64> = s
            .records
            .iter()
            .filter(|r| match r.entry {
                Entry::Command(Command::New(o)) => o.security == sec,
                Entry::Command(Command::Amend(a)) => a.security == sec,
                _ => false,
            })
            .map(|r| r.seq)
            .collect();
        for l in msg.lines() {
            let m = LobsterMessage::parse(l).unwrap();
            if m.kind == 1 {
                assert!(
                    resting_seqs.contains(&m.order_id),
                    "{code}: order id {} is not a public id",
                    m.order_id
                );
            }
        }
    }
    assert!(
        lines > 1000,
        "the recording holds {lines} lines: too little to mean anything"
    );
}

/// The book rebuilt from each recorded message file equals the engine's final book, and the
/// last orderbook line shows its best levels.
fn assert_final_books(out: &Path, table: &SecurityTable, engine: &matching::Engine) {
    for (sec, code, _) in table.iter() {
        let (msg, book) = files(out, code);
        let mut b = LobsterBook::new();
        b.apply_file(&msg).unwrap_or_else(|e| panic!("{code}: {e}"));
        let want = engine.depth(sec, usize::MAX);
        assert_eq!(b.book.depth(usize::MAX), want, "{code}: final book");
        assert_eq!(b.book.totals(), engine.totals(sec), "{code}: totals");
        if let Some(last) = book.lines().last() {
            let levels = parse_orderbook_line(last).unwrap();
            for (i, (ap, aq, bp, bq)) in levels.into_iter().enumerate() {
                // At-market orders (price 0) lead a side in the file, not in Engine::depth.
                if ap > 0 && ap < feed::lobster::EMPTY_ASK_PRICE {
                    assert!(
                        want.1.contains(&(ap / PRICE_SCALE, aq)),
                        "{code}: ask level {i}"
                    );
                }
                if bp > 0 {
                    assert!(
                        want.0.contains(&(bp / PRICE_SCALE, bq)),
                        "{code}: bid level {i}"
                    );
                }
            }
        }
    }
}

/// The recorded trades are the reference's (as a set: the grid completes securities out of
/// global order), without their time column.
fn assert_trades(out: &Path, table: &SecurityTable, s: &Sequenced) {
    let mut builder = manager::feed::new_builder(table);
    let mut want = Vec::new();
    let mut items: Vec<&manager::feed::FeedItem> = s.items.iter().collect();
    items.sort_by_key(|i| i.seq);
    for it in items {
        builder
            .apply(feed::Completed {
                seq: it.seq,
                time: it.time,
                security: it.security,
                command: &it.command,
                events: &it.events,
            })
            .unwrap();
        for m in builder.last_batch().messages {
            if let feed::Body::Trade(t) = &m.body {
                let mut row = Vec::new();
                let code = table.code(t.security).unwrap();
                feed::export::write_trade_row(&mut row, 0, code, t).unwrap();
                want.push(
                    String::from_utf8(row)
                        .unwrap()
                        .trim_end()
                        .split_once(',')
                        .unwrap()
                        .1
                        .to_string(),
                );
            }
        }
    }
    let text = read(&out.join("trades.csv"));
    let mut got: Vec<String> = text
        .lines()
        .skip(1)
        .map(|l| l.split_once(',').unwrap().1.to_string())
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got.len(), want.len(), "trade count");
    assert!(got == want, "recorded trades differ from the reference");
    assert!(!want.is_empty());
}

fn rows_of(path: &Path) -> Vec<OrderRow> {
    parse_orders(&read(path)).unwrap()
}

#[test]
fn recorded_l3_feed_equals_the_sequential_engine_with_an_executor_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut grid = grid(dir, 3, 6, &[]);
    let table = table(&grid);
    let stream = dir.join("orders.csv");
    generate(&grid.securities(), 40_000, 7, &stream);
    let out = dir.join("rec");
    let mut rec = record(&grid, "record", &out, &[]);
    let mut replay = grid.spawn_replay(&stream, "grid", &[]);
    grid.wait_journal(&mut replay, 40_000 * 11 / 3);
    grid.executors[1].kill();
    grid.wait_replay(&mut replay);
    grid.manager
        .wait_log("exec-2 (node 2) lost", 1, Duration::from_secs(5));
    let log = stop_recorder(&mut rec);
    assert_eq!(summary_number(&log, "gaps"), 0, "{log}");
    let s = sequence(&rows_of(&stream), &table, MarketRules::hose());
    assert_exact(&out, &table, &s);
    assert_final_books(&out, &table, &s.engine);
    assert_trades(&out, &table, &s);
}

#[test]
fn a_trading_day_of_nasty_orders_is_fed_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let grid = grid(dir, 2, 5, &[]);
    let table = table(&grid);
    let rows = nasty_stream(
        &Nasty {
            rows: 6_000,
            seed: 5,
            brokers: 4,
            day: true,
            sweep_every: 900,
        },
        &table,
    );
    let stream = dir.join("orders.csv");
    std::fs::write(&stream, write_orders(&rows)).unwrap();
    let out = dir.join("rec");
    let mut rec = record(&grid, "record", &out, &[]);
    let mut replay = grid.spawn_replay(&stream, "grid", &[]);
    grid.wait_replay(&mut replay);
    stop_recorder(&mut rec);
    let s = sequence(&rows, &table, MarketRules::hose());
    let phases = s
        .records
        .iter()
        .filter(|r| matches!(r.entry, Entry::Command(Command::Phase(_))))
        .count();
    assert!(phases > 20, "the day moved through its phases ({phases})");
    assert_exact(&out, &table, &s);
    assert_final_books(&out, &table, &s.engine);
    assert_trades(&out, &table, &s);
    // Auction trades (type 6) and phase lines (type 7) were recorded.
    let all: String = table.iter().map(|(_, c, _)| files(&out, c).0).collect();
    for kind in [",6,", ",7,", ",2,", ",3,", ",4,"] {
        assert!(all.contains(kind), "no type {kind} line in the recording");
    }
}

#[test]
fn a_lossy_subscriber_recovers_by_resync_while_a_lossless_one_stays_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Every resync request counts in the drop policy: allow this test's many.
    let grid = grid(dir, 2, 4, &["--feed-max-overflows", "1000"]);
    let table = table(&grid);
    let stream = dir.join("orders.csv");
    generate(&grid.securities(), 20_000, 8, &stream);
    let (good, lossy) = (dir.join("good"), dir.join("lossy"));
    let mut a = record(&grid, "good", &good, &[]);
    let mut b = record(&grid, "lossy", &lossy, &["--drop-every", "500"]);
    let mut replay = grid.spawn_replay(&stream, "grid", &[]);
    grid.wait_replay(&mut replay);
    stop_recorder(&mut a);
    let log = stop_recorder(&mut b);
    let s = sequence(&rows_of(&stream), &table, MarketRules::hose());
    assert_exact(&good, &table, &s);
    let (gaps, snapshots) = (
        summary_number(&log, "gaps"),
        summary_number(&log, "snapshots"),
    );
    // How many discarded messages fall while it is in sync (a gap) rather than while it waits
    // for a snapshot depends on timing; at least the first one is a gap, and it is repaired by
    // a snapshot. Gaps and snapshots need not pair up one to one: a heartbeat that arrives
    // while the snapshot is still on its way counts as another gap (and asks again), and a
    // discarded message may be a snapshot's own first one. On a loaded machine both happen.
    // That every gap was repaired is the exact final books below.
    assert!(gaps >= 1, "the lossy subscriber saw gaps: {log}");
    assert!(
        snapshots >= 2,
        "and was resynced after the first (besides its first snapshot): {log}"
    );
    assert!(log.contains("discarded on purpose"), "{log}");
    assert_final_books(&lossy, &table, &s.engine);
}

#[test]
fn overflowing_the_feed_queue_rebuilds_the_feed_from_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut grid = grid(dir, 2, 4, &["--feed-queue", "3"]);
    let table = table(&grid);
    let stream = dir.join("orders.csv");
    generate(&grid.securities(), 20_000, 9, &stream);
    let out = dir.join("rec");
    let mut rec = record(&grid, "record", &out, &[]);
    let mut replay = grid.spawn_replay(&stream, "grid", &[]);
    grid.wait_replay(&mut replay);
    grid.manager
        .wait_log("rebuilt from the journal", 1, Duration::from_secs(30));
    let log = stop_recorder(&mut rec);
    let text = grid.manager.log_text();
    assert!(
        text.contains("the feed queue was full"),
        "the core dropped items:\n{text}"
    );
    assert!(
        summary_number(&log, "snapshots") >= 2,
        "the subscriber was resynced: {log}"
    );
    let s = sequence(&rows_of(&stream), &table, MarketRules::hose());
    assert_final_books(&out, &table, &s.engine);
}

#[test]
fn a_restarted_manager_rebuilds_its_feed_from_its_checkpoint_and_the_recorder_carries_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Checkpoints (the manager's and the feed's) twice a second.
    let mut grid = grid(dir, 2, 4, &["--snapshot-secs", "0.5"]);
    let table = table(&grid);
    let stream = dir.join("orders.csv");
    generate(&grid.securities(), 100_000, 10, &stream);
    let out = dir.join("rec");
    let mut rec = record(&grid, "record", &out, &[]);
    let mut replay = grid.spawn_replay(&stream, "grid", &[]);
    // A quarter of the way, once the feed saved its state again: the restart (the replay
    // usually dies with it; on a slow machine it may have finished).
    grid.wait_journal(&mut replay, 100_000 * 11 / 4);
    let saved = "feed: state saved";
    let so_far = grid.manager.log_text().matches(saved).count();
    grid.manager
        .wait_log(saved, so_far + 1, Duration::from_secs(30));
    let before = grid.manager.log_text();
    // Every checkpoint holds something new: none at seq 0 (an idle feed or the day's start),
    // each past the one before.
    let saved_through: Vec<u64> = before
        .lines()
        .filter(|l| l.contains(saved))
        .map(|l| logged_number(l, "through_seq"))
        .collect();
    assert!(
        saved_through.first().is_some_and(|&t| t > 0)
            && saved_through.windows(2).all(|w| w[0] < w[1]),
        "checkpoints through {saved_through:?}"
    );
    grid.restart_manager();
    let _ = replay.child.wait();
    grid.manager
        .wait_log("rebuilt from the journal", 1, Duration::from_secs(30));
    // The rebuild started from the feed's checkpoint, not from the day's first command.
    let log = grid.manager.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("rebuilt from the journal"))
        .unwrap();
    let from = logged_number(line, "from_checkpoint_seq");
    // A checkpoint written after the last one logged may have been cut short by the kill.
    assert!(
        from >= *saved_through.last().unwrap(),
        "the rebuild did not start from the last checkpoint: {}",
        before
            .lines()
            .chain(log.lines())
            .filter(|l| l.contains("feed:"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for e in &mut grid.executors {
        e.wait_log("executor joined the grid", 2, Duration::from_secs(30));
    }
    // The feed goes on live after the rebuild.
    let load = grid.load(&["--orders", "3000", "--quiet"]);
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    let log = stop_recorder(&mut rec);
    assert!(
        summary_number(&log, "sessions") >= 2,
        "the recorder redialled: {log}"
    );
    // The truth is what the journal holds: sequence its export again.
    let s = sequence(
        &rows_of(&export_journal(&grid)),
        &table,
        MarketRules::hose(),
    );
    assert_final_books(&out, &table, &s.engine);
}

/// The number a log line gives as `key=N`.
fn logged_number(line: &str, key: &str) -> u64 {
    testkit::logged_u64(line, key).unwrap_or_else(|| panic!("no {key} in {line}"))
}

/// The benchmark's subscribers: `record --count-only --sessions 3` (three subscriptions in one
/// process, no files) and a file-writing recorder both end with books equal to the sequential
/// engine's: their `--books-out` files equal `replay --local --books-out` byte for byte, and
/// the file recorder's LOBSTER files rebuild the same books.
#[test]
fn counting_subscribers_and_recorders_end_with_the_engines_books() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let grid = grid(dir, 2, 5, &[]);
    let table = table(&grid);
    let stream = dir.join("orders.csv");
    generate(&grid.securities(), 20_000, 11, &stream);
    let (out, books) = (dir.join("rec"), dir.join("books"));
    std::fs::create_dir_all(&books).unwrap();
    let file_books = books.join("files.csv");
    let counted_books = books.join("count.csv");
    let mut rec = record(
        &grid,
        "record",
        &out,
        &["--books-out", file_books.to_str().unwrap()],
    );
    let mut args: Vec<String> = [
        "record",
        "--manager",
        &grid.addr,
        "--ca",
        grid.ca().to_str().unwrap(),
        "--token",
        &grid.token(),
        "--count-only",
        "--sessions",
        "3",
        "--books-out",
        counted_books.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    args.push("--levels=5".into());
    let mut counter = Proc::spawn("count", &bin("user-sim"), &args, grid.dir.join("count.log"));
    counter.wait_log("caught up", 3, Duration::from_secs(30));
    let mut replay = grid.spawn_replay(&stream, "grid", &[]);
    grid.wait_replay(&mut replay);
    stop_recorder(&mut rec);
    // Every subscription of the counting process caught up (two heartbeats each after now).
    for i in 1..=3 {
        let tag = format!("subscription{{n={i}}}");
        let seen = |p: &Proc| {
            p.log_text()
                .lines()
                .filter(|l| l.contains(&tag) && l.contains("caught up"))
                .count()
        };
        let before = seen(&counter);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while seen(&counter) < before + 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "{tag} never caught up"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(counter.terminate(Duration::from_secs(10)));
    let log = counter.log_text();
    assert!(log.contains("counted only: no files"), "{log}");
    assert_eq!(summary_number(&log, "sessions"), 3, "{log}");
    assert_eq!(summary_number(&log, "gaps"), 0, "{log}");
    assert_eq!(summary_number(&log, "LOBSTER"), 0, "no file lines: {log}");
    // The reference books from the sequential exchange.
    let reference = books.join("reference.csv");
    let o = std::process::Command::new(bin("user-sim"))
        .args(["replay", "--local", "--securities"])
        .arg(grid.securities())
        .arg("--orders")
        .arg(&stream)
        .args(["--trades-out", "/dev/null", "--totals-out", "/dev/null"])
        .args(["--rejects-out", "/dev/null", "--books-out"])
        .arg(&reference)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = read(&reference);
    // Non-trivial: both sides of several books, and every security's totals.
    assert!(
        want.lines().filter(|l| l.contains(",bid,")).count() > 20,
        "{want}"
    );
    assert!(
        want.lines().filter(|l| l.contains(",ask,")).count() > 20,
        "{want}"
    );
    assert_eq!(
        want.lines().filter(|l| l.contains(",bid_total,")).count(),
        5
    );
    for got in [file_books.clone()]
        .into_iter()
        .chain((1..=3).map(|i| books.join(format!("count.csv.{i}"))))
    {
        assert!(
            read(&got) == want,
            "{} differs from the engine's books",
            got.display()
        );
    }
    assert!(
        !dir.join("rec").join("1").exists(),
        "a counting subscriber writes no files"
    );
    // The engine's books, independently of the books CSV writer.
    let s = sequence(&rows_of(&stream), &table, MarketRules::hose());
    assert_final_books(&out, &table, &s.engine);
    for (sec, code, _) in table.iter() {
        let (bid_total, ask_total) = s.engine.totals(sec);
        assert!(want.contains(&format!("{code},bid_total,,{bid_total}\n")));
        assert!(want.contains(&format!("{code},ask_total,,{ask_total}\n")));
        let (bids, _) = s.engine.depth(sec, 1);
        if let Some((p, q)) = bids.first() {
            assert!(want.contains(&format!("{code},bid,{p},{q}\n")));
        }
    }
}

// ------------------------------------------------------------------ raw sessions in-process

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

struct Raw {
    _endpoint: quinn::Endpoint,
    writer: transport::FrameWriter,
    reader: transport::FrameReader,
    welcome: proto::Welcome,
}

async fn dial(grid: &Grid, credentials: Credentials) -> Result<Raw, transport::WireError> {
    dial_with(grid, credentials, transport::quic::transport_config()).await
}

async fn dial_with(
    grid: &Grid,
    credentials: Credentials,
    transport: quinn::TransportConfig,
) -> Result<Raw, transport::WireError> {
    let endpoint = transport::quic::client_endpoint_with(&grid.ca(), transport)?;
    let addr = transport::quic::resolve(&grid.addr)?;
    let (_conn, writer, reader, welcome) =
        transport::quic::connect(&endpoint, addr, credentials).await?;
    Ok(Raw {
        _endpoint: endpoint,
        writer,
        reader,
        welcome,
    })
}

fn token(grid: &Grid) -> Credentials {
    Credentials::Feed {
        broker: None,
        secret: grid.token(),
    }
}

fn l3_all() -> FeedRequest {
    FeedRequest::Subscribe(Subscription {
        level: FeedLevel::L3,
        securities: Securities::All,
    })
}

/// Reads updates until the session ends, taking `pause` per 1,000 messages; returns (messages,
/// the Closed reason if any).
async fn read_all(raw: &mut Raw, pause: Duration) -> (u64, Option<String>) {
    let mut n = 0;
    loop {
        match raw.reader.recv::<FeedUpdate>().await {
            Ok(Some(FeedUpdate::Messages(m))) => {
                n += m.len() as u64;
                // `pause` per 1,000 messages: a reader with a fixed processing rate.
                tokio::time::sleep(pause * m.len() as u32 / 1000).await;
            }
            Ok(Some(FeedUpdate::Closed(why))) => return (n, Some(why)),
            Ok(None) | Err(_) => return (n, None),
        }
    }
}

/// What the stalled subscriber saw in one reading phase.
#[derive(Debug, Default)]
struct Phase {
    messages: u64,
    snapshots: u64,
    closed: Option<String>,
}

/// Reads until a snapshot begins (the resync after an overflow), or the session ends.
async fn read_until_snapshot(raw: &mut Raw) -> Phase {
    let mut p = Phase::default();
    loop {
        match raw.reader.recv::<FeedUpdate>().await {
            Ok(Some(FeedUpdate::Messages(m))) => {
                p.messages += m.len() as u64;
                let begins = m
                    .iter()
                    .filter(|m| matches!(m.body, feed::Body::SnapshotBegin { .. }))
                    .count() as u64;
                p.snapshots += begins;
                if begins > 0 {
                    return p;
                }
            }
            Ok(Some(FeedUpdate::Closed(why))) => {
                p.closed = Some(why);
                return p;
            }
            Ok(None) | Err(_) => return p,
        }
    }
}

/// A subscriber that stops reading while a burst of orders is sequenced overflows its queue
/// whatever the machine's speed (the burst is far larger than everything that can be buffered
/// for it: its queue, its session's channel, a small QUIC window); when it reads again it gets
/// a fresh snapshot; at the third overflow it is dropped with the reason. A recorder that
/// reads all along is never resynced and stays exact.
#[test]
fn a_slow_subscriber_is_resynced_then_dropped_while_others_continue() {
    const BURSTS: usize = 3;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut grid = grid(
        dir,
        2,
        4,
        &[
            "--feed-subscriber-queue",
            "3000",
            "--feed-max-overflows",
            "3",
            // Stalled on purpose: not disconnected for that while a burst runs.
            "--slow-client-ms",
            "600000",
        ],
    );
    let table = table(&grid);
    let out = dir.join("rec");
    let mut rec = record(&grid, "record", &out, &[]);
    let (addr, ca, secret) = (grid.addr.clone(), grid.ca(), grid.token());
    // The test says "read now"; the subscriber answers with what it read.
    let (go_tx, mut go_rx) = tokio::sync::mpsc::channel::<()>(1);
    let (seen_tx, seen_rx) = std::sync::mpsc::channel::<Phase>();
    let slow = std::thread::spawn(move || {
        runtime().block_on(async {
            // Small receive windows, like a subscriber on a slow link: the manager's writes
            // are held back as soon as it stops reading.
            let mut t = transport::quic::transport_config();
            t.stream_receive_window(quinn::VarInt::from_u32(16 * 1024))
                .receive_window(quinn::VarInt::from_u32(32 * 1024));
            let endpoint = transport::quic::client_endpoint_with(&ca, t).unwrap();
            let addr = transport::quic::resolve(&addr).unwrap();
            let creds = Credentials::Feed {
                broker: None,
                secret,
            };
            let (_conn, writer, reader, welcome) = transport::quic::connect(&endpoint, addr, creds)
                .await
                .unwrap();
            let mut raw = Raw {
                _endpoint: endpoint,
                writer,
                reader,
                welcome,
            };
            raw.writer.send(&l3_all()).await.unwrap();
            // The first snapshot, then stall until told to read.
            let _ = seen_tx.send(read_until_snapshot(&mut raw).await);
            while go_rx.recv().await.is_some() {
                let p = read_until_snapshot(&mut raw).await;
                let ended = p.closed.is_some();
                let _ = seen_tx.send(p);
                if ended {
                    break;
                }
            }
        })
    });
    let first = seen_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(first.snapshots, 1, "{first:?}");
    let mut phases = Vec::new();
    for burst in 0..BURSTS {
        // 10,000 orders make over 20,000 L3 messages; the stalled subscriber can hold about
        // 3,000 (queue) + 4 x 1,024 (channel) + one frame + 16 KiB of them. Paced, so that the
        // recorder (writing its files as it reads) keeps up on a busy machine.
        let seed = (burst + 1).to_string();
        let load = grid.load(&[
            "--orders", "10000", "--rate", "5000", "--seed", &seed, "--quiet",
        ]);
        assert!(
            load.status.success(),
            "{}",
            String::from_utf8_lossy(&load.stderr)
        );
        go_tx.blocking_send(()).unwrap();
        let p = seen_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the stalled subscriber read again");
        phases.push(p);
    }
    drop(go_tx);
    slow.join().unwrap();
    eprintln!("stalled subscriber: {phases:?}");
    // Resynced after the first two overflows, dropped at the third.
    for p in &phases[..BURSTS - 1] {
        assert_eq!(p.snapshots, 1, "resynced after the overflow: {phases:?}");
        assert!(p.closed.is_none(), "{phases:?}");
    }
    let last = &phases[BURSTS - 1];
    let why = last
        .closed
        .as_deref()
        .unwrap_or_else(|| panic!("not dropped: {phases:?}\n{}", grid.manager.log_text()));
    assert!(why.contains("too slow"), "{why}");
    assert_eq!(last.snapshots, 0, "{phases:?}");
    grid.manager
        .wait_log("subscriber dropped", 1, Duration::from_secs(5));
    let log = stop_recorder(&mut rec);
    assert_eq!(
        summary_number(&log, "snapshots"),
        1,
        "the other subscriber never had to resync: {log}"
    );
    assert_eq!(summary_number(&log, "gaps"), 0, "{log}");
    // The other subscriber is exact: against the sequential replay of what the journal holds.
    let s = sequence(
        &rows_of(&export_journal(&grid)),
        &table,
        MarketRules::hose(),
    );
    assert_exact(&out, &table, &s);
}

/// `manager journal export` of the grid's data dir; returns the orders file.
fn export_journal(grid: &Grid) -> PathBuf {
    let export = grid.dir.join("export");
    let o = std::process::Command::new(bin("manager"))
        .args(["journal", "export", "--csv", "--data-dir"])
        .arg(&grid.data_dir)
        .arg("--out-dir")
        .arg(&export)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    export.join("orders.csv")
}

#[test]
fn feed_sessions_authenticate_carry_no_order_entry_and_check_subscriptions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let grid = grid(dir, 1, 3, &[]);
    let creds = transport::credentials::parse(&read(&grid.credentials()), "brokers").unwrap();
    let (broker, secret) = creds.iter().next().unwrap();
    let rt = runtime();
    rt.block_on(async {
        // A broker's secret or the operator token opens a feed session...
        let by_broker = Credentials::Feed {
            broker: Some(broker.clone()),
            secret: secret.clone(),
        };
        let mut raw = dial(&grid, by_broker).await.unwrap();
        assert_eq!(
            raw.welcome.broker, None,
            "a feed session acts for no broker"
        );
        raw.writer.send(&l3_all()).await.unwrap();
        match raw.reader.recv::<FeedUpdate>().await.unwrap() {
            Some(FeedUpdate::Messages(m)) => {
                assert!(matches!(
                    m[0].body,
                    feed::Body::SnapshotBegin { securities: 3, .. }
                ))
            }
            other => panic!("expected the snapshot, got {other:?}"),
        }
        // ...a wrong one does not.
        for bad in [
            Credentials::Feed {
                broker: Some(broker.clone()),
                secret: "wrong".into(),
            },
            Credentials::Feed {
                broker: None,
                secret: "wrong".into(),
            },
        ] {
            match dial(&grid, bad).await {
                Err(transport::WireError::Refused(_)) => {}
                other => panic!("expected a refusal, got {:?}", other.map(|r| r.welcome)),
            }
        }
        // Order entry on a feed session: the frame is not a feed request; the session ends and
        // nothing is sequenced.
        let mut raw = dial(&grid, token(&grid)).await.unwrap();
        let submit = proto::ClientMsg::Submit(vec![proto::ClientCommand {
            client_ref: 1,
            command: Command::Phase(matching::Phase::Closed),
        }]);
        raw.writer.send(&submit).await.unwrap();
        // Whatever the manager makes of those bytes (a bad frame, at worst some subscription),
        // it never takes them as an order: checked below by what was sequenced.
        let _ = tokio::time::timeout(Duration::from_secs(3), raw.reader.recv::<FeedUpdate>()).await;
        // Subscriptions are checked.
        for (sub, needle) in [
            (
                Subscription {
                    level: FeedLevel::L3,
                    securities: Securities::Only(vec![matching::SecurityId(99)]),
                },
                "not listed",
            ),
            (
                Subscription {
                    level: FeedLevel::L2 { levels: 0 },
                    securities: Securities::All,
                },
                "levels",
            ),
        ] {
            let mut raw = dial(&grid, token(&grid)).await.unwrap();
            raw.writer.send(&FeedRequest::Subscribe(sub)).await.unwrap();
            let (n, closed) = read_all(&mut raw, Duration::ZERO).await;
            assert_eq!(n, 0);
            assert!(
                closed.as_deref().is_some_and(|w| w.contains(needle)),
                "{closed:?}"
            );
        }
        let again = dial(&grid, token(&grid)).await.unwrap();
        assert_eq!(
            again.welcome.sequenced, 0,
            "nothing was sequenced through feed sessions"
        );
    });
    // A manager without a feed refuses feed sessions with a reason.
    let tmp2 = tempfile::tempdir().unwrap();
    let nofeed = self::grid(tmp2.path(), 0, 2, &["--no-feed"]);
    match rt.block_on(dial(&nofeed, token(&nofeed))) {
        Err(transport::WireError::Refused(why)) => {
            assert!(why.contains("without a market-data feed"), "{why}")
        }
        other => panic!("expected a refusal, got {:?}", other.map(|r| r.welcome)),
    }
}

/// The value of the sample named exactly `name` (with its labels).
fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}")) as u64
}

/// What one raw subscriber received: every message, those that are not heartbeats, those
/// that are snapshots, and the bytes of the frames (re-encoded: the codec is deterministic).
#[derive(Default)]
struct Received {
    all: std::sync::atomic::AtomicU64,
    not_heartbeats: std::sync::atomic::AtomicU64,
    snapshots: std::sync::atomic::AtomicU64,
    bytes: std::sync::atomic::AtomicU64,
}

/// The feed's counters in /metrics equal what its subscribers received: messages and bytes
/// sent, messages produced per view kind, and the canonical feed (an L3 subscriber of every
/// security that joined before the first order received each canonical message once).
#[test]
fn the_feed_counters_in_the_metrics_equal_what_the_subscribers_received() {
    use std::sync::atomic::Ordering::SeqCst;
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut grid = grid(dir, 2, 4, &["--metrics-addr", "127.0.0.1:0"]);
    grid.manager
        .wait_log("metrics at /metrics", 1, Duration::from_secs(10));
    let addr = grid
        .manager
        .log_text()
        .lines()
        .find(|l| l.contains("metrics at /metrics"))
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .unwrap()
        .to_string();
    let subs = [
        Subscription {
            level: FeedLevel::L3,
            securities: Securities::All,
        },
        Subscription {
            level: FeedLevel::L2 { levels: 3 },
            securities: Securities::Only(vec![matching::SecurityId(1)]),
        },
        Subscription {
            level: FeedLevel::L1,
            securities: Securities::All,
        },
    ];
    let received: Vec<Arc<Received>> = subs.iter().map(|_| Arc::default()).collect();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (addr_q, ca, secret) = (grid.addr.clone(), grid.ca(), grid.token());
    let counts = received.clone();
    // Readers in a thread of their own for the whole test (ended with the process).
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let mut tasks = Vec::new();
            for (sub, got) in subs.into_iter().zip(counts) {
                let endpoint = transport::quic::client_endpoint(&ca).unwrap();
                let addr = transport::quic::resolve(&addr_q).unwrap();
                let creds = Credentials::Feed {
                    broker: None,
                    secret: secret.clone(),
                };
                let (conn, mut writer, mut reader, _) =
                    transport::quic::connect(&endpoint, addr, creds)
                        .await
                        .unwrap();
                writer.send(&FeedRequest::Subscribe(sub)).await.unwrap();
                let ready = ready_tx.clone();
                tasks.push(tokio::spawn(async move {
                    let _keep = (endpoint, conn, writer);
                    let mut buf = Vec::new();
                    while let Ok(Some(update)) = reader.recv::<FeedUpdate>().await {
                        let FeedUpdate::Messages(m) = &update else {
                            panic!("the feed ended: {update:?}")
                        };
                        buf.clear();
                        proto::codec::encode_frame(&update, &mut buf).unwrap();
                        let count = |f: fn(&feed::Body) -> bool| {
                            m.iter().filter(|m| f(&m.body)).count() as u64
                        };
                        got.not_heartbeats
                            .fetch_add(count(|b| *b != feed::Body::Heartbeat), SeqCst);
                        got.snapshots
                            .fetch_add(count(feed::Body::is_snapshot), SeqCst);
                        got.bytes.fetch_add(buf.len() as u64, SeqCst);
                        if got.all.fetch_add(m.len() as u64, SeqCst) == 0 {
                            let _ = ready.send(());
                        }
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        })
    });
    for _ in 0..received.len() {
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("every subscriber got its snapshot");
    }
    let load = grid.load(&["--orders", "6000", "--quiet"]);
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let get = |a: &std::sync::atomic::AtomicU64| a.load(SeqCst);
    let snapshot = || -> Vec<[u64; 4]> {
        received
            .iter()
            .map(|r| {
                [
                    get(&r.all),
                    get(&r.not_heartbeats),
                    get(&r.snapshots),
                    get(&r.bytes),
                ]
            })
            .collect()
    };
    loop {
        // Consistent when nothing arrived while the metrics were read (heartbeats keep
        // coming, once a second, so retry until a quiet moment matches).
        let before = snapshot();
        let text = testkit::scrape_metrics(&addr);
        let after = snapshot();
        let sum = |k: usize| after.iter().map(|r| r[k]).sum::<u64>();
        let got = [
            sample(&text, "gridmatch_feed_sent_messages_total"),
            sample(&text, "gridmatch_feed_sent_bytes_total"),
            sample(&text, "gridmatch_feed_messages_total{view=\"L3\"}"),
            sample(&text, "gridmatch_feed_messages_total{view=\"L2\"}"),
            sample(&text, "gridmatch_feed_messages_total{view=\"L1\"}"),
            sample(&text, "gridmatch_feed_messages_total{view=\"canonical\"}"),
            sample(&text, "gridmatch_feed_subscribers"),
        ];
        let want = [
            sum(0),
            sum(3),
            after[0][1],
            after[1][1],
            after[2][1],
            // The L3-of-all subscriber: every canonical message, plus its snapshot.
            after[0][1] - after[0][2],
            3,
        ];
        if before == after && got == want {
            eprintln!("feed metrics (sent, bytes, L3, L2, L1, canonical, subscribers) = {got:?}");
            assert!(after.iter().all(|r| r[1] > r[2]), "incrementals: {after:?}");
            assert!(got[5] > 6_000, "6,000 orders make more messages: {got:?}");
            assert_eq!(
                sample(&text, "gridmatch_feed_dropped_items_total"),
                0,
                "{text}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the metrics never matched what the subscribers received: got {got:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The totals line at shutdown.
    grid.manager.terminate(Duration::from_secs(10));
    let log = grid.manager.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("feed totals:"))
        .unwrap_or_else(|| panic!("no feed totals line:\n{log}"));
    assert!(line.contains("canonical messages"), "{line}");
}
