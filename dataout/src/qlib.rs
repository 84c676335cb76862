//! A Qlib data directory of daily bars, laid out as Qlib's `scripts/dump_bin.py` writes it and
//! as `qlib.data.storage.file_storage` reads it:
//!
//! ```text
//! calendars/day.txt                 one YYYY-MM-DD per trading day, ascending
//! instruments/all.txt               SYMBOL<TAB>first day<TAB>last day, one line per security
//! features/<symbol>/<field>.day.bin little-endian float32: [start index, value, value, ...]
//! ```
//!
//! A `.bin` file's first float is the index in the calendar of the security's first trading
//! day; one value per calendar day follows, up to its last trading day, NaN on days it did not
//! trade. Directory names are the code lowercased, with Qlib's `_qlib_` prefix for names
//! Windows reserves (CON, PRN, AUX, NUL, COM0-9, LPT0-9), as `qlib.utils.code_to_fname` does.
//! Symbols in `all.txt` are uppercase, as `dump_bin.py` writes them.
//!
//! Fields: `open`, `high`, `low`, `close`, `volume`, `vwap`, `amount` (the exact value, as a
//! float), `factor` (1.0: no corporate actions in a simulated market), and `change`
//! (close / previous trading day's close - 1, as Qlib's Yahoo collector computes it; its
//! backtest exchange needs it). float32 holds integers exactly up to 2^24 only: larger
//! volumes and amounts are rounded, as in any Qlib data set.
//!
//! The trading-day calendar holds the days on which at least one security traded.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use rustc_hash::FxHashMap;

use crate::bars::{Bar, Interval};
use crate::error::DataError;
use crate::time::write_date;

/// The feature files written per instrument, in this order.
pub const FIELDS: [&str; 9] = [
    "open", "high", "low", "close", "volume", "vwap", "amount", "factor", "change",
];

/// One instrument of a Qlib data set.
#[derive(Clone, Debug, PartialEq)]
pub struct QlibInstrument {
    /// The security code, as the bars name it.
    pub security: String,
    /// The name in `instruments/all.txt` (uppercase).
    pub symbol: String,
    /// The directory under `features/`.
    pub dir: String,
    /// Calendar index of the first and last trading day.
    pub first: usize,
    pub last: usize,
    /// One series per [`FIELDS`] entry, one value per calendar day from `first` to `last`.
    pub series: Vec<Vec<f32>>,
}

/// A whole Qlib data set, before it is written.
#[derive(Clone, Debug, PartialEq)]
pub struct QlibData {
    pub calendar: Vec<NaiveDate>,
    pub instruments: Vec<QlibInstrument>,
}

/// What [`write_qlib`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QlibSummary {
    pub days: usize,
    pub instruments: usize,
}

/// Qlib's `code_to_fname`, then lowercased (Qlib's feature storage lowercases the name).
fn feature_dir(code: &str) -> String {
    let upper = code.to_ascii_uppercase();
    let reserved = ["CON", "PRN", "AUX", "NUL"].contains(&upper.as_str())
        || ((upper.starts_with("COM") || upper.starts_with("LPT"))
            && upper.len() == 4
            && upper.as_bytes()[3].is_ascii_digit());
    let name = if reserved {
        format!("_qlib_{code}")
    } else {
        code.to_owned()
    };
    name.to_ascii_lowercase()
}

fn check_code(code: &str) -> Result<(), DataError> {
    let ok = !code.is_empty()
        && code != "."
        && code != ".."
        && code
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'\\');
    if ok {
        Ok(())
    } else {
        Err(DataError::QlibName(code.to_owned()))
    }
}

/// Lays out daily bars as a Qlib data set (pure). Bars may come in any order.
pub fn qlib_layout(daily: &[Bar]) -> Result<QlibData, DataError> {
    let mut by_security: FxHashMap<&str, Vec<&Bar>> = FxHashMap::default();
    for b in daily {
        if b.interval != Interval::Day {
            return Err(DataError::NotDaily(b.interval.as_str()));
        }
        b.validate()?;
        check_code(&b.security)?;
        by_security.entry(&b.security).or_default().push(b);
    }
    let mut calendar: Vec<NaiveDate> = daily.iter().map(|b| b.date).collect();
    calendar.sort_unstable();
    calendar.dedup();
    let index: FxHashMap<NaiveDate, usize> =
        calendar.iter().enumerate().map(|(i, d)| (*d, i)).collect();

    let mut codes: Vec<&str> = by_security.keys().copied().collect();
    codes.sort_unstable();
    let mut dirs: FxHashMap<String, &str> = FxHashMap::default();
    let mut instruments = Vec::with_capacity(codes.len());
    for code in codes {
        let dir = feature_dir(code);
        if let Some(other) = dirs.insert(dir.clone(), code) {
            return Err(DataError::QlibNameClash(other.to_owned(), code.to_owned()));
        }
        let mut bars = by_security.remove(code).unwrap_or_default();
        bars.sort_unstable_by_key(|b| b.date);
        if let Some(w) = bars.windows(2).find(|w| w[0].date == w[1].date) {
            let mut date = String::new();
            write_date(&mut date, w[0].date);
            return Err(DataError::DuplicateBar {
                security: code.to_owned(),
                date,
            });
        }
        let (first, last) = match (bars.first(), bars.last()) {
            (Some(f), Some(l)) => (index[&f.date], index[&l.date]),
            _ => continue,
        };
        let len = last - first + 1;
        let mut series = vec![vec![f32::NAN; len]; FIELDS.len()];
        let mut previous_close: Option<f64> = None;
        for b in bars {
            let i = index[&b.date] - first;
            let change = previous_close.map_or(f64::NAN, |p| b.close as f64 / p - 1.0);
            let values = [
                b.open as f32,
                b.high as f32,
                b.low as f32,
                b.close as f32,
                b.volume as f32,
                b.vwap() as f32,
                b.value as f32,
                1.0,
                change as f32,
            ];
            for (s, v) in series.iter_mut().zip(values) {
                s[i] = v;
            }
            previous_close = Some(b.close as f64);
        }
        instruments.push(QlibInstrument {
            security: code.to_owned(),
            symbol: code.to_ascii_uppercase(),
            dir,
            first,
            last,
            series,
        });
    }
    Ok(QlibData {
        calendar,
        instruments,
    })
}

/// The bytes of one `.bin` file: the start index, then the values, as little-endian float32.
pub fn bin_bytes(start: usize, values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 * (values.len() + 1));
    out.extend_from_slice(&(start as f32).to_le_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let mut f = fs::File::create(path).map_err(|e| DataError::io(path, e))?;
    f.write_all(bytes).map_err(|e| DataError::io(path, e))
}

fn mkdir(path: &Path) -> Result<(), DataError> {
    fs::create_dir_all(path).map_err(|e| DataError::io(path, e))
}

fn write_tree(root: &Path, data: &QlibData) -> Result<(), DataError> {
    let mut text = String::with_capacity(11 * data.calendar.len());
    for d in &data.calendar {
        write_date(&mut text, *d);
        text.push('\n');
    }
    mkdir(&root.join("calendars"))?;
    write(&root.join("calendars/day.txt"), text.as_bytes())?;

    text.clear();
    for i in &data.instruments {
        text.push_str(&i.symbol);
        text.push('\t');
        write_date(&mut text, data.calendar[i.first]);
        text.push('\t');
        write_date(&mut text, data.calendar[i.last]);
        text.push('\n');
    }
    mkdir(&root.join("instruments"))?;
    write(&root.join("instruments/all.txt"), text.as_bytes())?;

    for i in &data.instruments {
        let dir = root.join("features").join(&i.dir);
        mkdir(&dir)?;
        for (field, values) in FIELDS.iter().zip(&i.series) {
            write(
                &dir.join(format!("{field}.day.bin")),
                &bin_bytes(i.first, values),
            )?;
        }
    }
    Ok(())
}

/// Writes the Qlib data set of `daily` bars to `dir`, which must be missing or empty. The set is
/// built in a sibling temporary directory and renamed into place, so on any error `dir` is left
/// as it was.
pub fn write_qlib(dir: &Path, daily: &[Bar]) -> Result<QlibSummary, DataError> {
    let data = qlib_layout(daily)?;
    if let Ok(mut entries) = fs::read_dir(dir) {
        if entries.next().is_some() {
            return Err(DataError::NotEmpty(dir.to_owned()));
        }
    }
    let tmp = sibling_tmp(dir);
    let _ = fs::remove_dir_all(&tmp);
    let result = write_tree(&tmp, &data).and_then(|()| {
        if dir.exists() {
            // An empty directory: rename(2) replaces it.
            fs::remove_dir(dir).map_err(|e| DataError::io(dir, e))?;
        }
        fs::rename(&tmp, dir).map_err(|e| DataError::io(dir, e))
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result?;
    Ok(QlibSummary {
        days: data.calendar.len(),
        instruments: data.instruments.len(),
    })
}

fn sibling_tmp(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    dir.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_windows_names_get_qlibs_prefix() {
        assert_eq!(feature_dir("VNM"), "vnm");
        assert_eq!(feature_dir("CON"), "_qlib_con");
        assert_eq!(feature_dir("com7"), "_qlib_com7");
        assert_eq!(feature_dir("COM"), "com");
        assert_eq!(feature_dir("COMA"), "coma");
        assert_eq!(feature_dir("LPT10"), "lpt10");
    }

    #[test]
    fn unsafe_codes_are_refused() {
        for bad in ["", ".", "..", "A/B", "A\\B", "A B", "A\tB"] {
            assert!(check_code(bad).is_err(), "{bad:?}");
        }
        for good in ["VNM", ".X", "E1VFVN30", "A-B"] {
            assert!(check_code(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn bin_layout_is_start_then_values_little_endian() {
        let b = bin_bytes(3, &[1.5, f32::NAN]);
        assert_eq!(&b[0..4], &3.0f32.to_le_bytes());
        assert_eq!(&b[4..8], &1.5f32.to_le_bytes());
        assert!(f32::from_le_bytes(b[8..12].try_into().unwrap()).is_nan());
    }
}
