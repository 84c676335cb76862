//! CSV and Parquet files of orders, trades and bars: the CSV read back in Rust equals the input
//! rows, and pyarrow (dataout/tests/py/check_tables.py) reads the documented schema and exactly
//! the CSV's rows from the Parquet file. Needs the venv (scripts/venv.sh).

mod common;

use std::fs;
use std::path::Path;

use chrono::DateTime;
use common::{checker_rejects, orders, run_checker, tape};
use dataout::{
    bars, write_table, DataError, Format, Interval, OrderRecord, TradeRecord, UtcOffset,
};
use matching::Command;

fn parse_time(s: &str) -> i64 {
    assert!(s.ends_with('Z') && s.len() == 30, "{s}");
    DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap()
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

/// Writes `rows` in both formats into `dir`; returns the paths.
fn write_both<T: dataout::Table + Copy>(
    dir: &Path,
    table: &str,
    rows: &[T],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let csv = dir.join(Format::Csv.file_name(table));
    let parquet = dir.join(Format::Parquet.file_name(table));
    assert_eq!(
        write_table(&csv, Format::Csv, rows.iter().copied()).unwrap(),
        rows.len() as u64
    );
    assert_eq!(
        write_table(&parquet, Format::Parquet, rows.iter().copied()).unwrap(),
        rows.len() as u64
    );
    (csv, parquet)
}

/// Rows and row groups pyarrow read.
fn pyarrow_read(table: &str, csv: &Path, parquet: &Path) -> (usize, usize) {
    let out = run_checker("check_tables.py", &[Path::new(table), csv, parquet]);
    let mut it = out.split_whitespace().map(|t| t.parse().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

fn pyarrow_rows(table: &str, csv: &Path, parquet: &Path) -> usize {
    pyarrow_read(table, csv, parquet).0
}

/// The expected orders CSV fields of a record, spelled out per action.
fn order_fields(o: &OrderRecord<'_>) -> Vec<String> {
    let s = |v: &str| v.to_owned();
    let mut f = vec![o.seq.to_string()];
    match o.command {
        Command::New(n) => f.extend([
            s("NEW"),
            n.id.0.to_string(),
            s(o.broker),
            s(o.security),
            s(n.side.as_str()),
            s(n.kind.as_str()),
            n.price.to_string(),
            n.qty.to_string(),
        ]),
        Command::Cancel(c) => f.extend([
            s("CANCEL"),
            c.id.0.to_string(),
            s(o.broker),
            s(o.security),
            s(""),
            s(""),
            s(""),
            s(""),
        ]),
        Command::Amend(a) => f.extend([
            s("AMEND"),
            a.id.0.to_string(),
            s(o.broker),
            s(o.security),
            s(""),
            s(""),
            a.price.to_string(),
            a.qty.to_string(),
        ]),
        Command::Phase(p) => f.extend([
            s("PHASE"),
            s(""),
            s(""),
            s(""),
            s(""),
            s(p.as_str()),
            s(""),
            s(""),
        ]),
    }
    f
}

#[test]
fn orders_csv_and_parquet_hold_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let rows = orders(11, 5_000);
    let (csv, parquet) = write_both(dir.path(), "orders", &rows);
    let (header, got) = read_csv(&csv);
    assert_eq!(
        header,
        [
            "time", "seq", "action", "order_id", "broker", "security", "side", "type", "price",
            "qty"
        ]
    );
    assert_eq!(got.len(), rows.len());
    for (o, g) in rows.iter().zip(&got) {
        assert_eq!(parse_time(&g[0]), o.time);
        assert_eq!(g[1..], order_fields(o)[..]);
    }
    // Every action and both extreme prices occur, so the check covers every null pattern.
    for action in ["NEW", "CANCEL", "AMEND", "PHASE"] {
        assert!(got.iter().any(|g| g[2] == action), "{action}");
    }
    assert!(got.iter().any(|g| g[8] == i64::MIN.to_string()));
    assert_eq!(pyarrow_rows("orders", &csv, &parquet), rows.len());

    // The check has teeth (edits on one-line records, no quoted fields): one changed
    // quantity, one row fewer, or a CANCEL's empty price turned into 0 are each caught.
    let text = fs::read_to_string(&csv).unwrap();
    let new_row = text
        .lines()
        .position(|l| l.contains(",NEW,") && !l.contains('"'))
        .unwrap();
    let cancel_row = text
        .lines()
        .position(|l| l.contains(",CANCEL,") && !l.contains('"'))
        .unwrap();
    let edit = |f: &dyn Fn(usize, &str) -> Option<String>| {
        let lines: Vec<String> = text
            .lines()
            .enumerate()
            .filter_map(|(i, l)| f(i, l))
            .collect();
        fs::write(&csv, lines.join("\n") + "\n").unwrap();
    };
    edit(&|i, l| {
        Some(if i == new_row {
            format!("{l}1")
        } else {
            l.to_owned()
        })
    });
    checker_rejects(
        "check_tables.py",
        &[Path::new("orders"), &csv, &parquet],
        "column qty",
    );
    edit(&|i, l| (i != new_row).then(|| l.to_owned()));
    checker_rejects(
        "check_tables.py",
        &[Path::new("orders"), &csv, &parquet],
        "rows",
    );
    edit(&|i, l| {
        Some(if i == cancel_row {
            format!("{}0,", &l[..l.len() - 1])
        } else {
            l.to_owned()
        })
    });
    checker_rejects(
        "check_tables.py",
        &[Path::new("orders"), &csv, &parquet],
        "column price",
    );
}

#[test]
fn trades_across_many_parquet_batches_read_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let rows = tape(5, 200_000, 12);
    let (csv, _) = write_both(dir.path(), "trades", &rows);
    // Seven row groups and a partial one.
    let parquet = dir.path().join("grouped.parquet");
    let n = dataout::write_file(&parquet, |w| {
        dataout::parquet_file::write_parquet_grouped(w, rows.iter().copied(), 25_000 - 1)
    })
    .unwrap();
    assert_eq!(n, rows.len() as u64);
    let (header, got) = read_csv(&csv);
    assert_eq!(
        header,
        [
            "time",
            "seq",
            "fill",
            "security",
            "price",
            "qty",
            "buy_order_id",
            "sell_order_id",
            "aggressor"
        ]
    );
    for (t, g) in rows.iter().zip(&got) {
        let want = [
            t.seq.to_string(),
            t.fill.to_string(),
            t.security.to_owned(),
            t.price.to_string(),
            t.qty.to_string(),
            t.buy_order_id.to_string(),
            t.sell_order_id.to_string(),
            t.aggressor.as_str().to_owned(),
        ];
        assert_eq!(parse_time(&g[0]), t.time);
        assert_eq!(g[1..], want[..]);
    }
    assert!(rows.len() > 7 * 24_999);
    assert_eq!(
        pyarrow_read("trades", &csv, &parquet),
        (rows.len(), rows.len().div_ceil(24_999))
    );
    // The default writer's file of the same rows (one row group) reads back identically too.
    let default = dir.path().join("trades.parquet");
    assert_eq!(pyarrow_read("trades", &csv, &default), (rows.len(), 1));
}

#[test]
fn bars_of_every_interval_read_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let trades = tape(8, 20_000, 10);
    for interval in Interval::ALL {
        let b = bars(interval, UtcOffset::HOSE, &trades).unwrap();
        let csv = dir.path().join(Format::Csv.bars_file_name(interval));
        let parquet = dir.path().join(Format::Parquet.bars_file_name(interval));
        write_table(&csv, Format::Csv, &b).unwrap();
        write_table(&parquet, Format::Parquet, &b).unwrap();
        let (header, got) = read_csv(&csv);
        assert_eq!(
            header,
            [
                "security", "date", "start", "open", "high", "low", "close", "volume", "value",
                "trades", "vwap"
            ]
        );
        assert_eq!(got.len(), b.len());
        for (bar, g) in b.iter().zip(&got) {
            assert_eq!(g[0], bar.security);
            assert_eq!(g[1], bar.date.to_string());
            assert_eq!(parse_time(&g[2]), bar.start);
            assert_eq!(
                g[3..8],
                [bar.open, bar.high, bar.low, bar.close]
                    .map(|p| p.to_string())
                    .iter()
                    .cloned()
                    .chain([bar.volume.to_string()])
                    .collect::<Vec<_>>()[..]
            );
            assert_eq!(g[8], bar.value.to_string());
            assert_eq!(g[9], bar.trades.to_string());
            assert_eq!(g[10].parse::<f64>().unwrap(), bar.vwap());
        }
        // The tape's extreme prices make values beyond i64: Decimal128 must carry them.
        assert!(
            b.iter().any(|bar| bar.value > i64::MAX as i128),
            "{interval}"
        );
        assert_eq!(pyarrow_rows("bars", &csv, &parquet), b.len());
    }
    assert!(fs::read_dir(dir.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));
}

#[test]
fn empty_tables_have_a_header_and_a_schema() {
    let dir = tempfile::tempdir().unwrap();
    let none: [TradeRecord<'static>; 0] = [];
    let (csv, parquet) = write_both(dir.path(), "trades", &none);
    assert_eq!(
        fs::read_to_string(&csv).unwrap(),
        "time,seq,fill,security,price,qty,buy_order_id,sell_order_id,aggressor\n"
    );
    assert_eq!(pyarrow_rows("trades", &csv, &parquet), 0);
    let no_orders: [OrderRecord<'static>; 0] = [];
    let (csv, parquet) = write_both(dir.path(), "orders", &no_orders);
    assert_eq!(pyarrow_rows("orders", &csv, &parquet), 0);
    let no_bars: Vec<dataout::Bar> = Vec::new();
    let csv = dir.path().join("bars.csv");
    let parquet = dir.path().join("bars.parquet");
    write_table(&csv, Format::Csv, &no_bars).unwrap();
    write_table(&parquet, Format::Parquet, &no_bars).unwrap();
    assert_eq!(pyarrow_rows("bars", &csv, &parquet), 0);
}

#[test]
fn an_invalid_row_leaves_no_file_and_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = tape(1, 100_000, 3);
    rows[90_000].qty = 0;
    for format in [Format::Csv, Format::Parquet] {
        let path = dir.path().join(format.file_name("trades"));
        let err = write_table(&path, format, rows.iter().copied()).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::InvalidTrade {
                    problem: "qty must be positive",
                    ..
                }
            ),
            "{err}"
        );
        assert!(!path.exists());
        fs::write(&path, "old").unwrap();
        assert!(write_table(&path, format, rows.iter().copied()).is_err());
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
    }
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        2,
        "temporary files were left behind"
    );
    // A missing directory is an I/O error naming the path, not a panic.
    let err = write_table(
        &dir.path().join("no/such/dir/t.csv"),
        Format::Csv,
        rows[..1].iter().copied(),
    )
    .unwrap_err();
    assert!(
        matches!(err, DataError::Io { .. }) && err.to_string().contains("no/such/dir"),
        "{err}"
    );
}

#[test]
fn formats_parse_and_name_files() {
    assert_eq!("csv".parse::<Format>().unwrap(), Format::Csv);
    assert_eq!("parquet".parse::<Format>().unwrap(), Format::Parquet);
    assert!(matches!(
        "CSV".parse::<Format>(),
        Err(DataError::UnknownFormat(_))
    ));
    assert_eq!(
        Format::Parquet.bars_file_name(Interval::Minute),
        "bars_1m.parquet"
    );
    assert_eq!(Format::Csv.file_name("orders"), "orders.csv");
}
