//! The Qlib directory read back by numpy (as Qlib's FileFeatureStorage reads it) and by Qlib's
//! own loader (dataout/tests/py/check_qlib.py), against the daily bars. Needs the venv
//! (scripts/venv.sh).

mod common;

use std::fs;
use std::path::Path;

use common::{checker_rejects, run_checker, tape, MONDAY_0900_LOCAL, NS};
use dataout::qlib::{qlib_layout, write_qlib, FIELDS};
use dataout::{bars, write_table, Bar, DataError, Format, Interval, TradeRecord, UtcOffset};
use matching::Aggressor;

fn check(dir: &Path, daily: &[Bar]) -> String {
    let csv = dir.join("bars_1d.csv");
    write_table(&csv, Format::Csv, daily).unwrap();
    run_checker("check_qlib.py", &[&dir.join("qlib"), &csv])
}

#[test]
fn qlib_reads_the_simulated_market_like_a_real_one() {
    let dir = tempfile::tempdir().unwrap();
    // Three weeks: holidays, a security that skips every other day, reserved names.
    let trades = tape(3, 6_000, 21);
    let daily = bars(Interval::Day, UtcOffset::HOSE, &trades).unwrap();
    let summary = write_qlib(&dir.path().join("qlib"), &daily).unwrap();
    let securities: std::collections::BTreeSet<_> = daily.iter().map(|b| &b.security).collect();
    let days: std::collections::BTreeSet<_> = daily.iter().map(|b| b.date).collect();
    assert_eq!(
        (summary.days, summary.instruments),
        (days.len(), securities.len())
    );
    assert!(days.len() >= 15, "{} trading days", days.len());
    let x_days = daily.iter().filter(|b| b.security == "X").count();
    assert!(
        x_days > 2 && x_days < days.len(),
        "X must have gaps inside its span"
    );

    let out = check(dir.path(), &daily);
    assert_eq!(out.trim(), format!("{} {}", days.len(), securities.len()));
    // The check has teeth: one changed value, a shifted start index, a lost calendar day.
    let csv = dir.path().join("bars_1d.csv");
    let qlib = dir.path().join("qlib");
    let bin = qlib.join("features/vnm/vwap.day.bin");
    let original = fs::read(&bin).unwrap();
    let mut bytes = original.clone();
    let last = bytes.len() - 4;
    let v = f32::from_le_bytes(bytes[last..].try_into().unwrap());
    bytes[last..].copy_from_slice(&(v * 1.001).to_le_bytes());
    fs::write(&bin, &bytes).unwrap();
    checker_rejects("check_qlib.py", &[&qlib, &csv], "vwap.day.bin");
    bytes = original.clone();
    let start = f32::from_le_bytes(bytes[..4].try_into().unwrap());
    bytes[..4].copy_from_slice(&(start + 1.0).to_le_bytes());
    fs::write(&bin, &bytes).unwrap();
    checker_rejects("check_qlib.py", &[&qlib, &csv], "start index");
    fs::write(&bin, &original).unwrap();
    let calendar = qlib.join("calendars/day.txt");
    let days_text = fs::read_to_string(&calendar).unwrap();
    fs::write(
        &calendar,
        days_text
            .lines()
            .skip(1)
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap();
    checker_rejects("check_qlib.py", &[&qlib, &csv], "calendar");
    fs::write(&calendar, days_text).unwrap();
    run_checker("check_qlib.py", &[&qlib, &csv]);

    // Reserved Windows names get Qlib's prefix, names are lowercased.
    let features = dir.path().join("qlib/features");
    for d in ["_qlib_con", "_qlib_lpt1", "vnm", "e1vfvn30", "a-b.c", "x"] {
        for f in FIELDS {
            assert!(
                features.join(d).join(format!("{f}.day.bin")).is_file(),
                "{d}/{f}"
            );
        }
    }
}

#[test]
fn a_single_trade_makes_a_one_day_data_set() {
    let dir = tempfile::tempdir().unwrap();
    let trades = [TradeRecord {
        time: MONDAY_0900_LOCAL + 15 * 60 * NS,
        seq: 1,
        fill: 0,
        security: "VNM",
        price: 61_500,
        qty: 300,
        buy_order_id: 1,
        sell_order_id: 2,
        aggressor: Aggressor::Auction,
    }];
    let daily = bars(Interval::Day, UtcOffset::HOSE, &trades).unwrap();
    write_qlib(&dir.path().join("qlib"), &daily).unwrap();
    let root = dir.path().join("qlib");
    assert_eq!(
        fs::read_to_string(root.join("calendars/day.txt")).unwrap(),
        "2025-06-02\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("instruments/all.txt")).unwrap(),
        "VNM\t2025-06-02\t2025-06-02\n"
    );
    let close = fs::read(root.join("features/vnm/close.day.bin")).unwrap();
    assert_eq!(
        close,
        [0f32.to_le_bytes(), 61_500f32.to_le_bytes()].concat()
    );
    let change = fs::read(root.join("features/vnm/change.day.bin")).unwrap();
    assert!(f32::from_le_bytes(change[4..8].try_into().unwrap()).is_nan());
    assert_eq!(check(dir.path(), &daily).trim(), "1 1");
}

#[test]
fn empty_bars_make_an_empty_but_loadable_layout() {
    let data = qlib_layout(&[]).unwrap();
    assert!(data.calendar.is_empty() && data.instruments.is_empty());
}

fn day_bar(security: &str, day: i64) -> Bar {
    let trades = [TradeRecord {
        time: MONDAY_0900_LOCAL + day * 86_400 * NS,
        seq: 1,
        fill: 0,
        security: "S",
        price: 100,
        qty: 100,
        buy_order_id: 1,
        sell_order_id: 2,
        aggressor: Aggressor::Buy,
    }];
    Bar {
        security: security.to_owned(),
        ..bars(Interval::Day, UtcOffset::HOSE, &trades)
            .unwrap()
            .remove(0)
    }
}

#[test]
fn bad_input_is_refused_and_the_target_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("qlib");
    let cases: Vec<(Vec<Bar>, &str)> = vec![
        (
            vec![day_bar("abc", 0), day_bar("ABC", 1)],
            "same Qlib directory",
        ),
        (vec![day_bar("A/B", 0)], "cannot be a Qlib instrument"),
        (vec![day_bar("..", 0)], "cannot be a Qlib instrument"),
        (vec![day_bar("S", 0), day_bar("S", 0)], "two daily bars"),
        (
            vec![Bar {
                interval: Interval::Minute,
                ..day_bar("S", 0)
            }],
            "needs daily bars",
        ),
        (
            vec![Bar {
                volume: 0,
                ..day_bar("S", 0)
            }],
            "at least one trade",
        ),
        (
            vec![Bar {
                high: 1,
                ..day_bar("S", 0)
            }],
            "low <= open",
        ),
    ];
    for (bars, message) in cases {
        let err = write_qlib(&target, &bars).unwrap_err();
        assert!(
            err.to_string().contains(message),
            "{err} (expected {message:?})"
        );
        assert!(!target.exists());
    }
    // An existing, non-empty directory is never overwritten.
    fs::create_dir(&target).unwrap();
    fs::write(target.join("keep.txt"), "mine").unwrap();
    let err = write_qlib(&target, &[day_bar("S", 0)]).unwrap_err();
    assert!(matches!(err, DataError::NotEmpty(_)), "{err}");
    assert_eq!(fs::read_to_string(target.join("keep.txt")).unwrap(), "mine");
    // An existing empty directory is filled.
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    write_qlib(&empty, &[day_bar("S", 0), day_bar("S", 2)]).unwrap();
    assert_eq!(
        fs::read_to_string(empty.join("calendars/day.txt")).unwrap(),
        "2025-06-02\n2025-06-04\n"
    );
    // Nothing temporary is left next to the targets.
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}
