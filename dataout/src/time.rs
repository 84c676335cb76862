//! Exchange time arithmetic: the trading day's UTC offset, bucket starts, local dates and the
//! text form of timestamps.
//!
//! Why an offset: a daily bar must hold one trading day. HOSE trades 09:00-14:45 in
//! Asia/Ho_Chi_Minh (UTC+7, no daylight saving), and the schedule stamps commands as UTC
//! instants, so a day starts at 17:00 UTC of the previous calendar day. Buckets are computed on
//! local time (time + offset) and reported back as UTC instants; with a whole-minute offset
//! this changes nothing for 1 s and 1 min bars.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, Timelike};
use matching::Timestamp;

use crate::error::DataError;

const NANOS_PER_SEC: i128 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;
/// Days from 0001-01-01 (chrono's day 1 of the common era) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// The fixed offset of the exchange's local time from UTC, in whole minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UtcOffset {
    seconds: i32,
}

impl UtcOffset {
    pub const UTC: UtcOffset = UtcOffset { seconds: 0 };
    /// Asia/Ho_Chi_Minh, the HOSE trading day (UTC+07:00, no daylight saving).
    pub const HOSE: UtcOffset = UtcOffset { seconds: 7 * 3600 };

    /// An offset of `seconds` east of UTC: whole minutes, strictly within one day.
    pub fn from_seconds(seconds: i32) -> Result<UtcOffset, DataError> {
        if seconds % 60 != 0 || seconds.unsigned_abs() >= SECS_PER_DAY as u32 {
            return Err(DataError::InvalidUtcOffset(seconds.to_string()));
        }
        Ok(UtcOffset { seconds })
    }

    pub fn seconds(self) -> i32 {
        self.seconds
    }

    fn nanos(self) -> i128 {
        self.seconds as i128 * NANOS_PER_SEC
    }
}

impl Default for UtcOffset {
    fn default() -> Self {
        UtcOffset::HOSE
    }
}

impl fmt::Display for UtcOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.seconds < 0 { '-' } else { '+' };
        let m = self.seconds.unsigned_abs() / 60;
        write!(f, "{sign}{:02}:{:02}", m / 60, m % 60)
    }
}

impl FromStr for UtcOffset {
    type Err = DataError;

    /// `+07:00`, `-05:30`, `Z` or `UTC`.
    fn from_str(s: &str) -> Result<Self, DataError> {
        let bad = || DataError::InvalidUtcOffset(s.to_owned());
        if s == "Z" || s.eq_ignore_ascii_case("UTC") {
            return Ok(UtcOffset::UTC);
        }
        let (sign, rest) = match s.as_bytes().first() {
            Some(b'+') => (1, &s[1..]),
            Some(b'-') => (-1, &s[1..]),
            _ => return Err(bad()),
        };
        let (h, m) = rest.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if m >= 60 {
            return Err(bad());
        }
        UtcOffset::from_seconds(sign * (h * 3600 + m * 60)).map_err(|_| bad())
    }
}

/// Start (UTC instant) of the bucket of `len_secs` local seconds that holds `t`, and the local
/// calendar day that bucket starts on (days since 1970-01-01).
pub(crate) fn bucket(
    t: Timestamp,
    len_secs: i64,
    offset: UtcOffset,
) -> Result<(Timestamp, i32), DataError> {
    let len = len_secs as i128 * NANOS_PER_SEC;
    let local = t as i128 + offset.nanos();
    let start_local = local.div_euclid(len) * len;
    let start = Timestamp::try_from(start_local - offset.nanos())
        .map_err(|_| DataError::TimeOutOfRange(t))?;
    let day = start_local.div_euclid(SECS_PER_DAY as i128 * NANOS_PER_SEC);
    let day = i32::try_from(day).map_err(|_| DataError::TimeOutOfRange(t))?;
    Ok((start, day))
}

/// The date of day number `day` (days since 1970-01-01).
pub fn date_of_day(day: i32) -> NaiveDate {
    // Every i64-nanosecond instant's day lies within chrono's range (about +-262,000 years).
    NaiveDate::from_num_days_from_ce_opt(day + UNIX_EPOCH_DAYS_FROM_CE).unwrap_or(NaiveDate::MIN)
}

/// Day number (days since 1970-01-01) of a date.
pub fn day_of_date(date: NaiveDate) -> i32 {
    date.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE
}

/// `YYYY-MM-DD`.
pub fn write_date(out: &mut String, date: NaiveDate) {
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}",
        date.year(),
        date.month(),
        date.day()
    );
}

/// RFC 3339 in UTC with nanoseconds: `2025-06-02T02:15:00.000000001Z`. Every i64 nanosecond
/// timestamp (years 1677-2262) has a four-digit year.
pub fn write_timestamp(out: &mut String, t: Timestamp) {
    let dt = DateTime::from_timestamp_nanos(t).naive_utc();
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.nanosecond()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: i64 = 1_000_000_000;

    fn ts(s: &str) -> Timestamp {
        DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    }

    fn text(t: Timestamp) -> String {
        let mut s = String::new();
        write_timestamp(&mut s, t);
        s
    }

    #[test]
    fn hose_day_runs_from_17_utc() {
        // 09:00 local on 2025-06-02 = 02:00Z.
        let (start, day) =
            bucket(ts("2025-06-02T02:00:00Z"), SECS_PER_DAY, UtcOffset::HOSE).unwrap();
        assert_eq!(text(start), "2025-06-01T17:00:00.000000000Z");
        assert_eq!(date_of_day(day).to_string(), "2025-06-02");
        // 23:59:59.999999999 local is still that day; one ns later is the next.
        let (s2, d2) = bucket(
            ts("2025-06-02T16:59:59.999999999Z"),
            SECS_PER_DAY,
            UtcOffset::HOSE,
        )
        .unwrap();
        assert_eq!((s2, d2), (start, day));
        let (s3, d3) = bucket(ts("2025-06-02T17:00:00Z"), SECS_PER_DAY, UtcOffset::HOSE).unwrap();
        assert_eq!(s3 - start, SECS_PER_DAY * NS);
        assert_eq!(d3, day + 1);
        // In UTC the same instant 16:59Z belongs to 2025-06-02, 17:00Z too.
        let (_, du) = bucket(ts("2025-06-02T17:00:00Z"), SECS_PER_DAY, UtcOffset::UTC).unwrap();
        assert_eq!(date_of_day(du).to_string(), "2025-06-02");
    }

    #[test]
    fn minute_and_second_buckets_floor_before_the_epoch_too() {
        let (s, d) = bucket(-1, 60, UtcOffset::UTC).unwrap();
        assert_eq!(s, -60 * NS);
        assert_eq!(date_of_day(d).to_string(), "1969-12-31");
        let (s, _) = bucket(ts("2025-06-02T02:15:59.999Z"), 60, UtcOffset::HOSE).unwrap();
        assert_eq!(text(s), "2025-06-02T02:15:00.000000000Z");
        let (s, _) = bucket(ts("2025-06-02T02:15:59.999Z"), 1, UtcOffset::HOSE).unwrap();
        assert_eq!(text(s), "2025-06-02T02:15:59.000000000Z");
        // A half-hour offset shifts day buckets, not minute ones.
        let india = "+05:30".parse().unwrap();
        let (s, _) = bucket(ts("2025-06-02T02:15:59Z"), 60, india).unwrap();
        assert_eq!(text(s), "2025-06-02T02:15:00.000000000Z");
        let (s, _) = bucket(ts("2025-06-02T02:15:59Z"), SECS_PER_DAY, india).unwrap();
        assert_eq!(text(s), "2025-06-01T18:30:00.000000000Z");
    }

    #[test]
    fn extremes_are_errors_not_panics() {
        // The first day's bucket starts before the earliest instant.
        assert!(matches!(
            bucket(i64::MIN, SECS_PER_DAY, UtcOffset::HOSE),
            Err(DataError::TimeOutOfRange(_))
        ));
        // The last instant's buckets start in range.
        let (s, _) = bucket(i64::MAX, SECS_PER_DAY, UtcOffset::HOSE).unwrap();
        assert!(i64::MAX - s < SECS_PER_DAY * NS);
        assert!(matches!(
            bucket(i64::MIN, 1, UtcOffset::UTC),
            Err(DataError::TimeOutOfRange(_))
        ));
        // The largest bucketable minute is fine.
        assert!(bucket(i64::MAX - 60 * NS, 60, UtcOffset::UTC).is_ok());
        assert_eq!(text(i64::MIN), "1677-09-21T00:12:43.145224192Z");
        assert_eq!(text(i64::MAX), "2262-04-11T23:47:16.854775807Z");
    }

    #[test]
    fn offsets_parse_and_print() {
        for (s, secs) in [
            ("+07:00", 25_200),
            ("-05:30", -19_800),
            ("Z", 0),
            ("UTC", 0),
            ("+00:00", 0),
        ] {
            let o: UtcOffset = s.parse().unwrap();
            assert_eq!(o.seconds(), secs, "{s}");
        }
        assert_eq!(UtcOffset::HOSE.to_string(), "+07:00");
        assert_eq!(
            UtcOffset::from_seconds(-19_800).unwrap().to_string(),
            "-05:30"
        );
        for bad in [
            "",
            "7",
            "+7:00",
            "+07",
            "+24:00",
            "+07:60",
            "07:00",
            "+0a:00",
            "+07:00:00",
            "+-7:00",
        ] {
            assert!(bad.parse::<UtcOffset>().is_err(), "{bad:?}");
        }
        assert!(UtcOffset::from_seconds(30).is_err());
        assert!(UtcOffset::from_seconds(86_400).is_err());
    }

    #[test]
    fn day_numbers_round_trip() {
        for day in [-106_752, -1, 0, 1, 20_241, 106_751] {
            assert_eq!(day_of_date(date_of_day(day)), day);
        }
        assert_eq!(date_of_day(0).to_string(), "1970-01-01");
    }
}
