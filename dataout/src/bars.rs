//! OHLCV bars from the trade tape (pure: no I/O).
//!
//! A bar is one security over one bucket of exchange time. `open` is the bucket's earliest
//! trade and `close` its latest, by (time, tape position): with the schedule's monotonic clock
//! that is tape order, so the opening auction's trades open the day's bar and the closing
//! auction's trades close it. Buckets without trades produce no bar. Day buckets follow the
//! trading day's [`UtcOffset`] (see [`crate::time`]).

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use matching::{Price, Timestamp};
use rustc_hash::FxHashMap;

use crate::error::DataError;
use crate::record::TradeRecord;
use crate::time::{bucket, date_of_day, UtcOffset};

/// Largest value Parquet's DECIMAL(38, 0) holds; `value` stays within it.
pub const MAX_VALUE: i128 = 10i128.pow(38) - 1;

/// Bar length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interval {
    Second,
    Minute,
    Day,
}

impl Interval {
    pub const ALL: [Interval; 3] = [Interval::Second, Interval::Minute, Interval::Day];

    /// `1s`, `1m` or `1d` (file names, command-line flags).
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Second => "1s",
            Interval::Minute => "1m",
            Interval::Day => "1d",
        }
    }

    pub fn seconds(self) -> i64 {
        match self {
            Interval::Second => 1,
            Interval::Minute => 60,
            Interval::Day => 86_400,
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Interval {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, DataError> {
        Interval::ALL
            .into_iter()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| DataError::UnknownInterval(s.to_owned()))
    }
}

/// One security's trading over one bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bar {
    pub security: String,
    pub interval: Interval,
    /// Bucket start, a UTC instant (ns since the Unix epoch). A day bucket starts at local
    /// midnight: 17:00 UTC of the previous calendar day for HOSE.
    pub start: Timestamp,
    /// The local trading day the bucket starts on.
    pub date: NaiveDate,
    pub open: Price,
    pub high: Price,
    pub low: Price,
    pub close: Price,
    /// Shares traded.
    pub volume: u64,
    /// Sum of price x qty, exact.
    pub value: i128,
    /// Number of trades.
    pub trades: u64,
}

impl Bar {
    /// Volume-weighted average price, `value / volume`, rounded once to f64 (the integer part
    /// is split off first so a huge `value` keeps its precision). NaN for a bar without volume,
    /// which [`Bar::validate`] refuses.
    pub fn vwap(&self) -> f64 {
        if self.volume == 0 {
            return f64::NAN;
        }
        let volume = self.volume as i128;
        (self.value / volume) as f64 + (self.value % volume) as f64 / volume as f64
    }
}

/// Where in (time, tape position) a price was seen: orders the open and close.
type Stamp = (Timestamp, u64);

#[derive(Clone, Copy, Debug)]
struct Acc {
    first: Stamp,
    open: Price,
    last: Stamp,
    close: Price,
    high: Price,
    low: Price,
    volume: u64,
    value: i128,
    trades: u64,
    day: i32,
}

/// Accumulates trades into bars of one interval. Feed trades in tape order with
/// [`BarBuilder::push`], then take the bars with [`BarBuilder::finish`]. Memory is one entry per
/// bar (not per trade).
#[derive(Debug)]
pub struct BarBuilder {
    interval: Interval,
    offset: UtcOffset,
    codes: Vec<String>,
    index: FxHashMap<String, u32>,
    bars: FxHashMap<(u32, Timestamp), Acc>,
    position: u64,
}

impl BarBuilder {
    pub fn new(interval: Interval, offset: UtcOffset) -> BarBuilder {
        BarBuilder {
            interval,
            offset,
            codes: Vec::new(),
            index: FxHashMap::default(),
            bars: FxHashMap::default(),
            position: 0,
        }
    }

    /// Adds one trade. An invalid trade is refused and changes nothing.
    pub fn push(&mut self, t: &TradeRecord<'_>) -> Result<(), DataError> {
        t.validate()?;
        let (start, day) = bucket(t.time, self.interval.seconds(), self.offset)?;
        let security = match self.index.get(t.security) {
            Some(&i) => i,
            None => {
                let i = u32::try_from(self.codes.len()).map_err(|_| DataError::Overflow {
                    what: "number of securities",
                    security: t.security.to_owned(),
                })?;
                self.codes.push(t.security.to_owned());
                self.index.insert(t.security.to_owned(), i);
                i
            }
        };
        let stamp = (t.time, self.position);
        let value = t.price as i128 * t.qty as i128;
        let overflow = |what| DataError::Overflow {
            what,
            security: t.security.to_owned(),
        };
        match self.bars.get_mut(&(security, start)) {
            None => {
                self.bars.insert(
                    (security, start),
                    Acc {
                        first: stamp,
                        open: t.price,
                        last: stamp,
                        close: t.price,
                        high: t.price,
                        low: t.price,
                        volume: t.qty,
                        value,
                        trades: 1,
                        day,
                    },
                );
            }
            Some(acc) => {
                // Check every total before touching any, so a refused trade changes nothing.
                let volume = acc
                    .volume
                    .checked_add(t.qty)
                    .ok_or_else(|| overflow("volume"))?;
                let sum = acc
                    .value
                    .checked_add(value)
                    .filter(|v| *v <= MAX_VALUE)
                    .ok_or_else(|| overflow("value"))?;
                let trades = acc
                    .trades
                    .checked_add(1)
                    .ok_or_else(|| overflow("trade count"))?;
                acc.volume = volume;
                acc.value = sum;
                acc.trades = trades;
                acc.high = acc.high.max(t.price);
                acc.low = acc.low.min(t.price);
                if stamp < acc.first {
                    acc.first = stamp;
                    acc.open = t.price;
                }
                if stamp > acc.last {
                    acc.last = stamp;
                    acc.close = t.price;
                }
            }
        }
        self.position += 1;
        Ok(())
    }

    /// The bars, ordered by security code (bytewise), then start time.
    pub fn finish(self) -> Vec<Bar> {
        let mut keyed: Vec<((u32, Timestamp), Acc)> = self.bars.into_iter().collect();
        // Rank of each security in code order, so the sort compares integers.
        let mut order: Vec<u32> = (0..self.codes.len() as u32).collect();
        order.sort_by(|&a, &b| self.codes[a as usize].cmp(&self.codes[b as usize]));
        let mut rank = vec![0u32; order.len()];
        for (r, &i) in order.iter().enumerate() {
            rank[i as usize] = r as u32;
        }
        keyed.sort_unstable_by_key(|((s, start), _)| (rank[*s as usize], *start));
        keyed
            .into_iter()
            .map(|((s, start), a)| Bar {
                security: self.codes[s as usize].clone(),
                interval: self.interval,
                start,
                date: date_of_day(a.day),
                open: a.open,
                high: a.high,
                low: a.low,
                close: a.close,
                volume: a.volume,
                value: a.value,
                trades: a.trades,
            })
            .collect()
    }
}

/// The bars of `interval` for a whole tape.
pub fn bars<'a, 't: 'a>(
    interval: Interval,
    offset: UtcOffset,
    trades: impl IntoIterator<Item = &'a TradeRecord<'t>>,
) -> Result<Vec<Bar>, DataError> {
    let mut b = BarBuilder::new(interval, offset);
    for t in trades {
        b.push(t)?;
    }
    Ok(b.finish())
}
