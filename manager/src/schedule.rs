//! The exchange clock and the trading day's schedule, pure: wall-clock instants in, exchange
//! times and due phase changes out.
//!
//! - `continuous` (the default): the exchange time is the wall clock and the market stays in
//!   the continuous phase (a stream starts there).
//! - `hose`: the HOSE day (Asia/Ho_Chi_Minh, UTC+7): ATO 09:00, continuous 09:15, break 11:30,
//!   continuous 13:00, ATC 14:30, closed 14:45, the day ending at 15:00. The 09:00-15:00 span is
//!   compressed into `day_length` of real time, for `days` trading days (weekdays from
//!   `start_date`); after the last day the market stays closed. Phase changes are stamped with
//!   the exact boundary time, orders with the scaled clock, so a day's times read like a real
//!   day's whatever the compression.
//!
//! The schedule's anchor (the wall-clock instant of day 1, 09:00) is kept in the data dir, so a
//! restarted manager resumes the same day at the same exchange time.

use std::time::Duration;

use matching::{Phase, Timestamp};
use serde::{Deserialize, Serialize};
use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset, Weekday};

/// Local offset of HOSE (no daylight saving in Vietnam).
const HOSE_OFFSET_HOURS: i8 = 7;
/// The compressed span of a day: 09:00 to 15:00 local.
const DAY_START_MIN: u32 = 9 * 60;
const DAY_SPAN_MIN: u32 = 6 * 60;
/// Phase boundaries, minutes after 09:00, and the phase each one starts.
pub const HOSE_DAY: [(u32, Phase); 6] = [
    (0, Phase::Ato),
    (15, Phase::Continuous),
    (150, Phase::Break),
    (240, Phase::Continuous),
    (330, Phase::Atc),
    (345, Phase::Closed),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// One endless continuous session on the wall clock.
    Continuous,
    /// The HOSE trading day, compressible.
    Hose,
}

/// A schedule as configured and anchored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub kind: ScheduleKind,
    /// Real duration of one trading day (09:00-15:00), milliseconds.
    pub day_length_ms: u64,
    pub days: u32,
    /// First trading day, `YYYY-MM-DD`.
    pub start_date: String,
    /// Wall clock (ms since the Unix epoch) at day 1, 09:00.
    pub anchor_unix_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("--start-date {0:?} is not a date YYYY-MM-DD")]
    BadDate(String),
    #[error("--day-length must be at least 1 s (a day of 6 h compressed into it)")]
    DayTooShort,
    #[error("--days must be at least 1")]
    NoDays,
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Result<Date, ScheduleError> {
    let bad = || ScheduleError::BadDate(s.to_string());
    let mut it = s.split('-');
    let (Some(y), Some(m), Some(d), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(bad());
    };
    let y: i32 = y.parse().map_err(|_| bad())?;
    let m: u8 = m.parse().map_err(|_| bad())?;
    let d: u8 = d.parse().map_err(|_| bad())?;
    let month = Month::try_from(m).map_err(|_| bad())?;
    Date::from_calendar_date(y, month, d).map_err(|_| bad())
}

fn next_weekday(mut d: Date) -> Date {
    while matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday) {
        d = d.next_day().expect("dates far from the end of time");
    }
    d
}

/// Today's date at HOSE (UTC+7), moved to a weekday.
pub fn today_at_hose(unix_ms: i64) -> String {
    let offset = UtcOffset::from_hms(HOSE_OFFSET_HOURS, 0, 0).expect("valid offset");
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(unix_ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(offset);
    let d = next_weekday(t.date());
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// The `n`-th trading day (0-based) from `start`: weekdays only.
/// Closed form (five weekdays a week), so a late day of a long run costs no more than the first.
fn trading_day(start: Date, n: u32) -> Date {
    let first = next_weekday(start);
    let weekday = i64::from(first.weekday().number_days_from_monday());
    let count = weekday + i64::from(n);
    let monday = first - time::Duration::days(weekday);
    monday + time::Duration::days(count / 5 * 7 + count % 5)
}

/// Exchange time of `minute` after midnight (local) on `date`, plus `nanos`.
fn stamp(date: Date, minute: u32, nanos: i64) -> Timestamp {
    let t = Time::from_hms((minute / 60) as u8, (minute % 60) as u8, 0).expect("valid time");
    let offset = UtcOffset::from_hms(HOSE_OFFSET_HOURS, 0, 0).expect("valid offset");
    let at = PrimitiveDateTime::new(date, t).assume_offset(offset);
    (at.unix_timestamp_nanos() as i64).saturating_add(nanos)
}

impl Schedule {
    pub fn new(
        kind: ScheduleKind,
        day_length: Duration,
        days: u32,
        start_date: &str,
        anchor_unix_ms: i64,
    ) -> Result<Schedule, ScheduleError> {
        parse_date(start_date)?;
        if kind == ScheduleKind::Hose {
            if day_length < Duration::from_secs(1) {
                return Err(ScheduleError::DayTooShort);
            }
            if days == 0 {
                return Err(ScheduleError::NoDays);
            }
        }
        Ok(Schedule {
            kind,
            day_length_ms: day_length.as_millis() as u64,
            days,
            start_date: start_date.to_string(),
            anchor_unix_ms,
        })
    }

    /// A short description for monitors and logs.
    pub fn describe(&self) -> String {
        match self.kind {
            ScheduleKind::Continuous => "continuous".into(),
            ScheduleKind::Hose => format!(
                "hose, {} day(s) from {}, {:.1} s per day",
                self.days,
                self.start_date,
                self.day_length_ms as f64 / 1000.0
            ),
        }
    }

    fn start(&self) -> Date {
        parse_date(&self.start_date).expect("validated at construction")
    }

    /// The exchange time at wall-clock `unix_ns`.
    pub fn time_at(&self, unix_ns: i64) -> Timestamp {
        match self.kind {
            ScheduleKind::Continuous => unix_ns,
            ScheduleKind::Hose => {
                let day_ns = self.day_length_ms as i128 * 1_000_000;
                let elapsed = (unix_ns as i128 - self.anchor_unix_ms as i128 * 1_000_000).max(0);
                let mut day = (elapsed / day_ns) as u64;
                let mut into = elapsed % day_ns;
                if day >= u64::from(self.days) {
                    // After the last day: the clock stops at its 15:00.
                    day = u64::from(self.days) - 1;
                    into = day_ns;
                }
                let span_ns = i128::from(DAY_SPAN_MIN) * 60_000_000_000;
                let sim = (into * span_ns / day_ns) as i64;
                stamp(trading_day(self.start(), day as u32), DAY_START_MIN, sim)
            }
        }
    }

    /// Every phase boundary of the schedule, in order: exchange time, phase, and the wall
    /// clock (ms since the epoch) at which it falls due.
    fn timeline(&self) -> impl Iterator<Item = (Timestamp, Phase, i64)> + '_ {
        self.timeline_from(0)
    }

    /// The boundaries of the days from `first_day` on (ordered by both times).
    fn timeline_from(&self, first_day: u32) -> impl Iterator<Item = (Timestamp, Phase, i64)> + '_ {
        let days = if self.kind == ScheduleKind::Hose {
            self.days
        } else {
            0
        };
        let start = self.start();
        let day_ms = self.day_length_ms as i64;
        (first_day.min(days)..days).flat_map(move |d| {
            let date = trading_day(start, d);
            HOSE_DAY.iter().map(move |&(m, p)| {
                let real = self.anchor_unix_ms
                    + i64::from(d) * day_ms
                    + (i64::from(m) * day_ms) / i64::from(DAY_SPAN_MIN);
                (stamp(date, DAY_START_MIN + m, 0), p, real)
            })
        })
    }

    /// Every phase boundary of the schedule, in order, with its exchange time.
    pub fn boundaries(&self) -> impl Iterator<Item = (Timestamp, Phase)> + '_ {
        self.timeline().map(|(t, p, _)| (t, p))
    }

    /// The phase changes due at wall-clock `unix_ns` that come after exchange time `issued`
    /// (the last phase change already sequenced; `None` before the first).
    ///
    /// Called for every submit: it looks only at the days from `issued`'s on and stops at the
    /// first boundary not yet due, so its cost does not grow with `--days` or the day reached.
    pub fn due(&self, unix_ns: i64, issued: Option<Timestamp>) -> Vec<(Timestamp, Phase)> {
        let now_ms = unix_ns.div_euclid(1_000_000);
        self.timeline_from(issued.map_or(0, |i| self.day_of(i)))
            .take_while(|(_, _, real)| *real <= now_ms)
            .filter(|(t, _, _)| issued.is_none_or(|i| *t > i))
            .map(|(t, p, _)| (t, p))
            .collect()
    }

    /// Wall-clock ms at which the next boundary after exchange time `after` falls due, if any.
    pub fn next_due_unix_ms(&self, after: Option<Timestamp>) -> Option<i64> {
        self.timeline_from(after.map_or(0, |a| self.day_of(a)))
            .find(|(t, _, _)| after.is_none_or(|a| *t > a))
            .map(|(_, _, real)| real)
    }

    /// The trading day (0-based) that exchange time `t` falls in or after: the last day whose
    /// 09:00 is not after `t` (0 before the first). A binary search over the days.
    fn day_of(&self, t: Timestamp) -> u32 {
        let start = self.start();
        let opens = |d: u32| stamp(trading_day(start, d), DAY_START_MIN, 0);
        let (mut lo, mut hi) = (0u32, self.days.max(1));
        // Invariant: opens(lo) <= t or lo == 0; every day from hi on opens after t.
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if opens(mid) <= t {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The day-by-day definition the closed form must equal.
    fn trading_day_by_steps(start: Date, n: u32) -> Date {
        let mut d = next_weekday(start);
        for _ in 0..n {
            d = next_weekday(d.next_day().unwrap());
        }
        d
    }

    #[test]
    fn the_closed_form_trading_day_counts_weekdays_like_the_calendar() {
        // Every weekday and weekend start over four weeks, up to three years of trading days.
        let first = parse_date("2026-01-01").unwrap();
        for offset in 0..28 {
            let start = first + time::Duration::days(offset);
            let mut by_steps = next_weekday(start);
            for n in 0..800 {
                assert_eq!(trading_day(start, n), by_steps, "start {start}, day {n}");
                by_steps = next_weekday(by_steps.next_day().unwrap());
            }
            assert_eq!(trading_day(start, 799), trading_day_by_steps(start, 799));
        }
    }

    #[test]
    fn due_on_a_long_schedule_equals_the_full_scan_at_every_point() {
        let s = Schedule::new(
            ScheduleKind::Hose,
            Duration::from_secs(60),
            1000,
            "2026-01-09",
            1_000_000,
        )
        .unwrap();
        let all: Vec<(Timestamp, Phase, i64)> = s.timeline().collect();
        let full_scan = |now_ms: i64, issued: Option<Timestamp>| -> Vec<(Timestamp, Phase)> {
            all.iter()
                .filter(|(t, _, real)| *real <= now_ms && issued.is_none_or(|i| *t > i))
                .map(|(t, p, _)| (*t, *p))
                .collect()
        };
        // Issued at every kind of point (none, each boundary of early, middle and late days,
        // between boundaries, after the last), asked at several later instants.
        let mut issued: Vec<Option<Timestamp>> = vec![None];
        for k in (0..all.len()).filter(|k| k % 997 < 8 || *k + 8 >= all.len()) {
            issued.push(Some(all[k].0));
            issued.push(Some(all[k].0 + 1));
            issued.push(Some(all[k].0 - 1));
        }
        for i in issued {
            for now_ms in [
                1_000_000,
                1_030_000,
                5_000_000,
                30_000_500,
                60_001_000,
                100_000_000,
            ] {
                assert_eq!(
                    s.due(now_ms * 1_000_000, i),
                    full_scan(now_ms, i),
                    "issued {i:?} at {now_ms}"
                );
            }
            let next = all
                .iter()
                .find(|(t, _, _)| i.is_none_or(|x| *t > x))
                .map(|(_, _, real)| *real);
            assert_eq!(s.next_due_unix_ms(i), next, "next after {i:?}");
        }
    }

    fn hose(days: u32) -> Schedule {
        // 2026-01-09 is a Friday: the second trading day is Monday the 12th.
        Schedule::new(
            ScheduleKind::Hose,
            Duration::from_secs(60),
            days,
            "2026-01-09",
            1_000_000,
        )
        .unwrap()
    }

    fn local(t: Timestamp) -> String {
        let offset = UtcOffset::from_hms(7, 0, 0).unwrap();
        let dt = time::OffsetDateTime::from_unix_timestamp_nanos(t as i128)
            .unwrap()
            .to_offset(offset);
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        )
    }

    #[test]
    fn a_compressed_day_maps_real_time_onto_the_session() {
        let s = hose(2);
        let at = |real_ms: i64| local(s.time_at((1_000_000 + real_ms) * 1_000_000));
        assert_eq!(at(0), "2026-01-09 09:00:00");
        // 60 s for 6 h: 1 s of real time is 6 minutes.
        assert_eq!(at(1_000), "2026-01-09 09:06:00");
        assert_eq!(at(30_000), "2026-01-09 12:00:00");
        // The second day skips the weekend.
        assert_eq!(at(60_000), "2026-01-12 09:00:00");
        // After the last day the clock stops at its end.
        assert_eq!(at(500_000), "2026-01-12 15:00:00");
        assert!(s.time_at(2_000_000_000) >= s.time_at(1_999_000_000));
    }

    #[test]
    fn phase_changes_fall_due_in_order_exactly_once() {
        let s = hose(2);
        let phases: Vec<_> = s.boundaries().map(|(_, p)| p).collect();
        assert_eq!(phases.len(), 12);
        assert_eq!(&phases[..6], &HOSE_DAY.map(|(_, p)| p));
        // 10 s in: 09:00 (ATO) and 09:15 (continuous) are due; 11:30 is not.
        let now = (1_000_000 + 10_000) * 1_000_000;
        let due = s.due(now, None);
        assert_eq!(
            due.iter().map(|d| d.1).collect::<Vec<_>>(),
            vec![Phase::Ato, Phase::Continuous]
        );
        assert_eq!(local(due[1].0), "2026-01-09 09:15:00");
        assert!(s.due(now, Some(due[1].0)).is_empty());
        // A manager down for a day and a half catches up on every missed change, in order:
        // day 1 from 11:30, and day 2 up to 13:00 (100 s = 40 s into a 60 s day = 13:00).
        let later = (1_000_000 + 100_000) * 1_000_000;
        let rest = s.due(later, Some(due[1].0));
        assert_eq!(rest.len(), 4 + 4);
        assert_eq!(local(rest[7].0), "2026-01-12 13:00:00");
        assert!(rest.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn the_next_boundary_is_found_in_real_time() {
        let s = hose(2);
        let first = s.boundaries().next().unwrap().0;
        assert_eq!(s.next_due_unix_ms(None), Some(1_000_000));
        // 09:15 is 2.5 s into a 60 s day.
        assert_eq!(s.next_due_unix_ms(Some(first)), Some(1_002_500));
        let last = s.boundaries().last().unwrap().0;
        assert_eq!(s.next_due_unix_ms(Some(last)), None);
    }

    #[test]
    fn bad_flags_are_clear_errors() {
        assert!(parse_date("2026-13-01").is_err());
        assert!(parse_date("yesterday").is_err());
        assert!(Schedule::new(
            ScheduleKind::Hose,
            Duration::from_millis(10),
            1,
            "2026-01-05",
            0
        )
        .is_err());
        assert!(Schedule::new(
            ScheduleKind::Hose,
            Duration::from_secs(60),
            0,
            "2026-01-05",
            0
        )
        .is_err());
        let c =
            Schedule::new(ScheduleKind::Continuous, Duration::ZERO, 0, "2026-01-05", 0).unwrap();
        assert_eq!(c.time_at(42), 42);
        assert!(c.due(i64::MAX, None).is_empty());
    }
}
