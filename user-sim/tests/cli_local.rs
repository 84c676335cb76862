//! Runs the real `user-sim` binary in temporary directories: `generate` and `replay --local`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use matching::stream::{parse_orders, replay_local, Action, OrderRow};
use matching::{MarketRules, OrderType, SecurityTable};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_user-sim"))
}

fn run(args: &[&str], dir: &Path) -> Output {
    bin()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("spawn user-sim")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whether the run failed with status 1 and one `user-sim: error: ...` line containing `says`.
fn fails_saying(o: &Output, says: &str) -> bool {
    o.status.code() == Some(1)
        && stderr(o)
            .lines()
            .any(|l| l.starts_with("user-sim: error: ") && l.contains(says))
}

/// Generates `orders` rows with `seed` (plus extra flags) into `dir/name`; returns the path.
fn generate(dir: &Path, name: &str, orders: u64, seed: u64, extra: &[&str]) -> PathBuf {
    let orders = orders.to_string();
    let seed = seed.to_string();
    let mut args = vec![
        "generate",
        "--orders",
        &orders,
        "--seed",
        &seed,
        "--securities",
        "sec.csv",
        "--listings",
        "120",
        "--out",
        name,
    ];
    args.extend_from_slice(extra);
    let o = run(&args, dir);
    assert!(o.status.success(), "generate failed: {}", stderr(&o));
    dir.join(name)
}

fn rows_of(path: &Path) -> Vec<OrderRow> {
    parse_orders(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn securities(dir: &Path) -> SecurityTable {
    SecurityTable::parse_csv(&std::fs::read_to_string(dir.join("sec.csv")).unwrap()).unwrap()
}

#[test]
fn generate_is_reproducible_and_seed_dependent() {
    let dir = tempfile::tempdir().unwrap();
    let a = generate(dir.path(), "a.csv", 20_000, 42, &[]);
    let b = generate(dir.path(), "b.csv", 20_000, 42, &[]);
    let c = generate(dir.path(), "c.csv", 20_000, 43, &[]);
    let (a, b, c) = (
        std::fs::read(a).unwrap(),
        std::fs::read(b).unwrap(),
        std::fs::read(c).unwrap(),
    );
    assert_eq!(a, b, "same seed must give the same bytes");
    assert_ne!(a, c, "another seed must give another stream");
    // The listings file was created once and then reused.
    let sec = securities(dir.path());
    assert_eq!(sec.len(), 120);
    assert_eq!(sec.code(matching::SecurityId(0)), Some("AAA"));
}

#[test]
fn generated_stream_is_mostly_valid_with_expected_reject_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let path = generate(dir.path(), "o.csv", 100_000, 9, &["--invalid-pct", "0.5"]);
    let rows = rows_of(&path);
    assert_eq!(rows.len(), 100_000);
    let collector = replay_local(MarketRules::hose(), &securities(dir.path()), &rows);
    let rejects = collector.rejects_csv();
    let expected = [
        "zero_quantity",
        "odd_lot",
        "off_tick",
        "outside_band",
        "unknown_security",
        "not_owner",
    ];
    let mut by_reason: HashMap<String, usize> = HashMap::new();
    for line in rejects.lines().skip(1) {
        let reason = line.split(',').nth(1).unwrap().to_string();
        assert!(
            expected.contains(&reason.as_str()),
            "unexpected reject {line}"
        );
        *by_reason.entry(reason).or_default() += 1;
    }
    let total: usize = by_reason.values().sum();
    // 0.5% of 100,000 = 500, binomial sd about 22.
    assert!(
        (400..=600).contains(&total),
        "rejects {total}: {by_reason:?}"
    );
    // Every category shows up.
    assert_eq!(by_reason.len(), expected.len(), "{by_reason:?}");
    // And the stream really trades.
    assert!(collector.trade_count() > 10_000);

    // With no invalid share there is no reject at all: cancels only name live orders.
    let clean = generate(dir.path(), "clean.csv", 50_000, 9, &["--invalid-pct", "0"]);
    let collector = replay_local(
        MarketRules::hose(),
        &securities(dir.path()),
        &rows_of(&clean),
    );
    assert_eq!(collector.reject_count(), 0, "{}", collector.rejects_csv());
}

#[test]
fn type_mix_follows_the_configured_shares() {
    let dir = tempfile::tempdir().unwrap();
    let rows = rows_of(&generate(dir.path(), "o.csv", 50_000, 5, &[]));
    let n = rows.len() as f64;
    let share = |f: &dyn Fn(&OrderRow) -> bool| rows.iter().filter(|r| f(r)).count() as f64 / n;
    let lo = share(&|r| r.kind == Some(OrderType::Limit));
    let taker = share(&|r| {
        matches!(
            r.kind,
            Some(OrderType::Market | OrderType::Ioc | OrderType::Fok)
        )
    });
    let cancel = share(&|r| r.action == Action::Cancel);
    assert!((0.67..0.73).contains(&lo), "LO share {lo}");
    assert!((0.085..0.115).contains(&taker), "taker share {taker}");
    assert!((0.18..0.22).contains(&cancel), "cancel share {cancel}");
    for kind in [OrderType::Market, OrderType::Ioc, OrderType::Fok] {
        assert!(share(&|r| r.kind == Some(kind)) > 0.02, "{kind:?} missing");
    }

    let rows = rows_of(&generate(
        dir.path(),
        "p.csv",
        20_000,
        5,
        &[
            "--cancel-pct",
            "0",
            "--taker-pct",
            "50",
            "--invalid-pct",
            "0",
        ],
    ));
    assert!(rows.iter().all(|r| r.action == Action::New));
    let takers = rows
        .iter()
        .filter(|r| r.kind != Some(OrderType::Limit))
        .count();
    assert!((9_000..11_000).contains(&takers), "takers {takers}");
}

#[test]
fn new_order_ids_ascend_and_cancels_target_earlier_orders() {
    let dir = tempfile::tempdir().unwrap();
    let rows = rows_of(&generate(
        dir.path(),
        "o.csv",
        30_000,
        11,
        &["--brokers", "5"],
    ));
    let mut placed: HashMap<u64, &OrderRow> = HashMap::new();
    let mut foreign = 0;
    for (i, r) in rows.iter().enumerate() {
        let row_no = i as u64 + 1;
        assert!(["B01", "B02", "B03", "B04", "B05"].contains(&r.broker.as_str()));
        match r.action {
            Action::New => {
                assert_eq!(r.order_id, row_no, "new order ids are the row numbers");
                placed.insert(r.order_id, r);
            }
            Action::Cancel => {
                assert!(r.order_id < row_no);
                let target = placed.get(&r.order_id).expect("cancel of a placed order");
                assert_eq!(target.security, r.security);
                assert_eq!(target.kind, Some(OrderType::Limit));
                if target.broker != r.broker {
                    foreign += 1;
                }
            }
            other => panic!("a continuous stream has no {other:?} rows"),
        }
    }
    // Foreign cancels are only the deliberately invalid ones (~1/6 of 0.5%).
    assert!(foreign > 0 && foreign < 60, "foreign cancels {foreign}");
}

#[test]
fn replay_local_writes_the_three_files() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "o.csv", 20_000, 3, &[]);
    let o = run(
        &[
            "replay",
            "--local",
            "--securities",
            "sec.csv",
            "--orders",
            "o.csv",
            "--rules",
            "hose",
            "--trades-out",
            "t.csv",
            "--totals-out",
            "tot.csv",
            "--rejects-out",
            "r.csv",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap();
    let (trades, totals, rejects) = (read("t.csv"), read("tot.csv"), read("r.csv"));
    assert_eq!(
        trades.lines().next(),
        Some("security,price,qty,buy_order_id,sell_order_id,aggressor")
    );
    assert_eq!(totals.lines().next(), Some("security,bid_total,ask_total"));
    assert_eq!(rejects.lines().next(), Some("order_id,reason"));
    assert_eq!(totals.lines().count(), 121, "one totals row per listing");
    // The files are exactly what the library replay produces.
    let collector = replay_local(
        MarketRules::hose(),
        &securities(dir.path()),
        &rows_of(&dir.path().join("o.csv")),
    );
    assert_eq!(trades, collector.trades_csv());
    assert_eq!(totals, collector.totals_csv());
    assert_eq!(rejects, collector.rejects_csv());
    let summary = stderr(&o);
    assert!(summary.contains("replayed 20000 orders"), "{summary}");
    assert!(
        summary.contains(&format!("{} trades", collector.trade_count())),
        "{summary}"
    );
}

fn replay_bad(orders_csv: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sec.csv"),
        "security,reference_price\nAAA,10000\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("bad.csv"), orders_csv).unwrap();
    run(
        &[
            "replay",
            "--local",
            "--securities",
            "sec.csv",
            "--orders",
            "bad.csv",
            "--trades-out",
            "t.csv",
            "--totals-out",
            "tot.csv",
            "--rejects-out",
            "r.csv",
        ],
        dir.path(),
    )
}

#[test]
fn malformed_orders_fail_with_file_and_line() {
    let header = "action,order_id,broker,security,side,type,price,qty\n";
    let good = "NEW,1,B01,AAA,BUY,LO,10000,100\n";
    for (bad, needle) in [
        ("NEW,2,B01,AAA,HOLD,LO,10000,100\n", "side"),
        ("NEW,2,B01,AAA,BUY,LO,10000\n", "fields"),
        ("NEW,2,B01,AAA,BUY,LO,ten,100\n", "price"),
    ] {
        let o = replay_bad(&format!("{header}{good}{bad}"));
        assert!(!o.status.success(), "accepted {bad:?}");
        let err = stderr(&o);
        assert!(err.contains("bad.csv"), "no file name in {err}");
        assert!(err.contains("line 3"), "no line number in {err}");
        assert!(err.contains(needle), "no {needle:?} in {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // A missing input file is a clear error too.
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        &[
            "replay",
            "--local",
            "--securities",
            "nope.csv",
            "--orders",
            "o.csv",
            "--trades-out",
            "t",
            "--totals-out",
            "u",
            "--rejects-out",
            "v",
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nope.csv"), "{}", stderr(&o));
}

#[test]
fn malformed_securities_file_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sec.csv"),
        "security,reference_price\nAAA,x\n",
    )
    .unwrap();
    let o = run(
        &[
            "generate",
            "--orders",
            "10",
            "--securities",
            "sec.csv",
            "--out",
            "o.csv",
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("sec.csv") && err.contains("line 2"), "{err}");
}

#[test]
fn missing_securities_without_listings_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        &[
            "generate",
            "--orders",
            "10",
            "--securities",
            "none.csv",
            "--out",
            "o.csv",
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--listings"), "{}", stderr(&o));
    assert!(!dir.path().join("o.csv").exists());
}

#[test]
fn bad_flags_are_clap_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[&[&str]] = &[
        // --local (the only mode for now) is required.
        &[
            "replay",
            "--securities",
            "s",
            "--orders",
            "o",
            "--trades-out",
            "t",
            "--totals-out",
            "u",
            "--rejects-out",
            "v",
        ],
        &[
            "generate",
            "--orders",
            "ten",
            "--securities",
            "s",
            "--out",
            "o",
        ],
        &[
            "generate",
            "--orders",
            "10",
            "--securities",
            "s",
            "--out",
            "o",
            "--rules",
            "nyse",
        ],
        &["generate", "--bogus"],
        &["frobnicate"],
    ];
    for args in cases {
        let o = run(args, dir.path());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("error:"), "{args:?}: {}", stderr(&o));
    }
    // Out-of-range values checked by the library are clear errors as well.
    let o = run(
        &[
            "generate",
            "--orders",
            "10",
            "--securities",
            "s.csv",
            "--listings",
            "3",
            "--out",
            "o.csv",
            "--brokers",
            "0",
        ],
        dir.path(),
    );
    // Exit status 1, and the error's whole chain on one line named for the binary.
    assert!(fails_saying(&o, "--brokers"), "{}", stderr(&o));
}

#[test]
fn a_rate_that_cannot_be_scheduled_is_a_clear_error() {
    // Refused before any connection is tried: no manager is needed to see the error.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("brokers.csv"), "broker,secret\nb1,s1\n").unwrap();
    for (rate, says) in [
        ("0", "positive number"),
        ("-5", "positive number"),
        ("NaN", "positive number"),
        ("inf", "positive number"),
        ("1e-12", "may last at most"),
    ] {
        let o = run(
            &[
                "--manager",
                "127.0.0.1:9",
                "--ca",
                "missing.pem",
                "--credentials",
                "brokers.csv",
                "--orders",
                "1000",
                "--brokers",
                "1",
                &format!("--rate={rate}"),
            ],
            dir.path(),
        );
        assert!(fails_saying(&o, says), "--rate {rate}: {}", stderr(&o));
    }
}
