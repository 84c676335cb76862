//! The trading day's clock: HOSE phases over exchange time, compressed into N lockstep steps.
//!
//! A day runs from 09:00 to 14:45 exchange time (Asia/Ho_Chi_Minh, UTC+7): ATO 09:00-09:15,
//! continuous 09:15-11:30, break 11:30-13:00, continuous 13:00-14:30, ATC 14:30-14:45, then
//! CLOSED. The 345 minutes are cut into `steps_per_day` equal steps (345 steps = one minute
//! each); a step belongs to the phase its start time falls in. Trading days are consecutive
//! weekdays from a start date.

use matching::{Phase, Timestamp};

const NS_PER_MINUTE: i64 = 60_000_000_000;
const NS_PER_DAY: i64 = 24 * 60 * NS_PER_MINUTE;
/// 09:00 in UTC+7 is 02:00 UTC.
const OPEN_UTC_NS: i64 = 2 * 60 * NS_PER_MINUTE;

/// The HOSE day: `(start minute after 09:00, phase)`, then the close at minute 345.
const HOSE_SEGMENTS: [(i64, Phase); 5] = [
    (0, Phase::Ato),
    (15, Phase::Continuous),
    (150, Phase::Break),
    (240, Phase::Continuous),
    (330, Phase::Atc),
];
const HOSE_DAY_MINUTES: i64 = 345;

/// Smallest `steps_per_day` that gives every HOSE phase at least one step (345 / 15).
pub const MIN_STEPS_PER_DAY: u32 = 23;
/// Largest `steps_per_day`: one-second steps.
pub const MAX_STEPS_PER_DAY: u32 = 345 * 60;

/// A calendar date (proleptic Gregorian).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: i32,
    pub month: u8,
    pub day: u8,
}

impl Date {
    /// The date, if it exists.
    pub fn new(year: i32, month: u8, day: u8) -> Option<Date> {
        let d = Date { year, month, day };
        let days_in_month = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if is_leap(year) => 29,
            2 => 28,
            _ => return None,
        };
        (day >= 1 && day <= days_in_month && (1..=9999).contains(&year)).then_some(d)
    }

    /// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
    pub fn days_since_epoch(self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The inverse of [`Date::days_since_epoch`].
    pub fn from_days_since_epoch(z: i64) -> Date {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Date { year, month, day }
    }

    /// Saturday or Sunday.
    pub fn is_weekend(self) -> bool {
        // 1970-01-01 was a Thursday: (days + 4) mod 7 counts from Sunday = 0.
        matches!((self.days_since_epoch() + 4).rem_euclid(7), 0 | 6)
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Why a clock cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    #[error(
        "steps_per_day must be between {MIN_STEPS_PER_DAY} and {MAX_STEPS_PER_DAY} \
         (every phase needs a step; 345 = one-minute steps), got {0}"
    )]
    Steps(u32),
    #[error("days must be at least 1")]
    NoDays,
}

/// The lockstep clock: trading days x steps, each step with its exchange time and phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayClock {
    steps_per_day: u32,
    days: u32,
    /// Phase of each step of a day (the same every day).
    phases: Vec<Phase>,
    /// Which schedule segment each step falls in (tells the morning and afternoon sessions
    /// apart).
    segments: Vec<u8>,
    /// 09:00 exchange time of each trading day, ns since the epoch (UTC).
    opens: Vec<Timestamp>,
    dates: Vec<Date>,
}

impl DayClock {
    /// `days` trading days (weekdays from `start`, which moves to the next weekday if it falls
    /// on a weekend) of `steps_per_day` steps each.
    pub fn new(start: Date, days: u32, steps_per_day: u32) -> Result<DayClock, ClockError> {
        if !(MIN_STEPS_PER_DAY..=MAX_STEPS_PER_DAY).contains(&steps_per_day) {
            return Err(ClockError::Steps(steps_per_day));
        }
        if days == 0 {
            return Err(ClockError::NoDays);
        }
        let day_ns = HOSE_DAY_MINUTES * NS_PER_MINUTE;
        let mut phases = Vec::with_capacity(steps_per_day as usize);
        let mut segments = Vec::with_capacity(steps_per_day as usize);
        for step in 0..steps_per_day {
            let offset = step_offset(step, steps_per_day, day_ns);
            let seg = HOSE_SEGMENTS
                .iter()
                .rposition(|(m, _)| m * NS_PER_MINUTE <= offset)
                .unwrap_or(0);
            phases.push(HOSE_SEGMENTS[seg].1);
            segments.push(seg as u8);
        }
        // Every segment must own a step, or a phase (and its auction) would be skipped.
        if (0..HOSE_SEGMENTS.len()).any(|s| !segments.contains(&(s as u8))) {
            return Err(ClockError::Steps(steps_per_day));
        }
        let mut dates = Vec::with_capacity(days as usize);
        let mut d = start.days_since_epoch();
        while dates.len() < days as usize {
            let date = Date::from_days_since_epoch(d);
            if !date.is_weekend() {
                dates.push(date);
            }
            d += 1;
        }
        let opens = dates
            .iter()
            .map(|date| date.days_since_epoch() * NS_PER_DAY + OPEN_UTC_NS)
            .collect();
        Ok(DayClock {
            steps_per_day,
            days,
            phases,
            segments,
            opens,
            dates,
        })
    }

    pub fn steps_per_day(&self) -> u32 {
        self.steps_per_day
    }

    pub fn days(&self) -> u32 {
        self.days
    }

    /// The calendar date of trading day `day` (0-based).
    pub fn date(&self, day: u32) -> Option<Date> {
        self.dates.get(day as usize).copied()
    }

    /// Phase of `step` (any day).
    pub fn phase(&self, step: u32) -> Phase {
        self.phases
            .get(step as usize)
            .copied()
            .unwrap_or(Phase::Closed)
    }

    /// Schedule segment of `step`: 0 ATO, 1 morning, 2 break, 3 afternoon, 4 ATC.
    pub fn segment(&self, step: u32) -> u8 {
        self.segments.get(step as usize).copied().unwrap_or(5)
    }

    /// Exchange time at which `step` of `day` starts (`step == steps_per_day`: the close).
    pub fn time(&self, day: u32, step: u32) -> Timestamp {
        let open = self.opens.get(day as usize).copied().unwrap_or(0);
        open + step_offset(step, self.steps_per_day, HOSE_DAY_MINUTES * NS_PER_MINUTE)
    }

    /// Exchange time of the day's close (the CLOSED phase change): 14:45.
    pub fn close_time(&self, day: u32) -> Timestamp {
        self.time(day, self.steps_per_day)
    }

    /// Nominal length of one step in nanoseconds (steps differ by at most 1 ns).
    pub fn step_ns(&self) -> i64 {
        HOSE_DAY_MINUTES * NS_PER_MINUTE / i64::from(self.steps_per_day)
    }

    /// Minutes after 09:00 at which `step` starts (for plots).
    pub fn minutes_after_open(&self, step: u32) -> f64 {
        step_offset(step, self.steps_per_day, HOSE_DAY_MINUTES * NS_PER_MINUTE) as f64
            / NS_PER_MINUTE as f64
    }
}

fn step_offset(step: u32, steps: u32, day_ns: i64) -> i64 {
    (i128::from(step) * i128::from(day_ns) / i128::from(steps)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip_and_weekdays() {
        let d = Date::new(2025, 6, 2).unwrap();
        assert_eq!(d.days_since_epoch(), 20_241);
        assert_eq!(
            Date::from_days_since_epoch(0),
            Date::new(1970, 1, 1).unwrap()
        );
        for z in [-800_000, -1, 0, 59, 60, 11_016, 20_241, 2_000_000] {
            assert_eq!(Date::from_days_since_epoch(z).days_since_epoch(), z);
        }
        assert!(!d.is_weekend()); // a Monday
        assert!(Date::new(2025, 6, 7).unwrap().is_weekend());
        assert!(Date::new(2025, 6, 8).unwrap().is_weekend());
        assert_eq!(Date::new(2024, 2, 30), None);
        assert!(Date::new(2024, 2, 29).is_some());
        assert_eq!(Date::new(2023, 2, 29), None);
        assert_eq!(Date::new(2023, 13, 1), None);
    }

    #[test]
    fn one_minute_steps_follow_the_hose_schedule() {
        let c = DayClock::new(Date::new(2025, 6, 2).unwrap(), 1, 345).unwrap();
        let count = |p| (0..345).filter(|&s| c.phase(s) == p).count();
        assert_eq!(count(Phase::Ato), 15);
        assert_eq!(count(Phase::Continuous), 135 + 90);
        assert_eq!(count(Phase::Break), 90);
        assert_eq!(count(Phase::Atc), 15);
        assert_eq!(c.phase(14), Phase::Ato);
        assert_eq!(c.phase(15), Phase::Continuous);
        assert_eq!(c.phase(150), Phase::Break);
        assert_eq!(c.segment(149), 1);
        assert_eq!(c.segment(240), 3);
        assert_eq!(c.phase(344), Phase::Atc);
        assert_eq!(c.step_ns(), NS_PER_MINUTE);
        // 2025-06-02 09:00 UTC+7 = 02:00 UTC.
        assert_eq!(c.time(0, 0), 20_241 * NS_PER_DAY + 2 * 3_600_000_000_000);
        assert_eq!(c.close_time(0) - c.time(0, 0), 345 * NS_PER_MINUTE);
    }

    #[test]
    fn compressed_days_keep_every_phase_and_skip_weekends() {
        let c = DayClock::new(Date::new(2025, 6, 6).unwrap(), 3, 23).unwrap();
        for p in [Phase::Ato, Phase::Continuous, Phase::Break, Phase::Atc] {
            assert!((0..23).any(|s| c.phase(s) == p), "{p:?}");
        }
        // Friday, then Monday and Tuesday.
        let dates: Vec<String> = (0..3).map(|d| c.date(d).unwrap().to_string()).collect();
        assert_eq!(dates, ["2025-06-06", "2025-06-09", "2025-06-10"]);
        assert_eq!(c.time(1, 0) - c.time(0, 0), 3 * NS_PER_DAY);
        // A weekend start moves to Monday.
        let c = DayClock::new(Date::new(2025, 6, 7).unwrap(), 1, 23).unwrap();
        assert_eq!(c.date(0).unwrap().to_string(), "2025-06-09");
    }

    #[test]
    fn too_few_or_too_many_steps_are_refused() {
        let d = Date::new(2025, 6, 2).unwrap();
        assert_eq!(DayClock::new(d, 1, 22), Err(ClockError::Steps(22)));
        assert_eq!(DayClock::new(d, 1, 0), Err(ClockError::Steps(0)));
        assert_eq!(
            DayClock::new(d, 1, MAX_STEPS_PER_DAY + 1),
            Err(ClockError::Steps(MAX_STEPS_PER_DAY + 1))
        );
        assert_eq!(DayClock::new(d, 0, 345), Err(ClockError::NoDays));
        assert!(DayClock::new(d, 1, MAX_STEPS_PER_DAY).is_ok());
    }
}
