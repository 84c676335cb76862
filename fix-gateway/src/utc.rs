//! UTCTimestamp fields (`YYYYMMDD-HH:MM:SS[.sss]`): formatting for SendingTime, parsing for the
//! accuracy check. Times are milliseconds since the Unix epoch, given to the session by its shell.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// Formats `ms` since the epoch as a FIX UTCTimestamp with milliseconds.
pub fn format(ms: i64) -> String {
    let dt = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}-{:02}:{:02}:{:02}.{:03}",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.millisecond()
    )
}

/// Parses a UTCTimestamp (seconds, or with 3, 6 or 9 fraction digits) into ms since the epoch.
pub fn parse(v: &[u8]) -> Option<i64> {
    if v.len() < 17 || v[8] != b'-' || v[11] != b':' || v[14] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| crate::codec::parse_u64(&v[r]);
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, m, s) = (num(9..11)?, num(12..14)?, num(15..17)?);
    let millis = match &v[17..] {
        [] => 0,
        [b'.', frac @ ..] if matches!(frac.len(), 3 | 6 | 9) => {
            crate::codec::parse_u64(&frac[..3])?
        }
        _ => return None,
    };
    let date = Date::from_calendar_date(year as i32, Month::try_from(month as u8).ok()?, day as u8)
        .ok()?;
    // FIX allows a leap second (60); treat it as 59.
    let time = Time::from_hms_milli(h as u8, m as u8, s.min(59) as u8, millis as u16).ok()?;
    let nanos = PrimitiveDateTime::new(date, time)
        .assume_utc()
        .unix_timestamp_nanos();
    Some((nanos / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(format(0), "19700101-00:00:00.000");
        // 2024-02-29T13:45:30.123Z
        assert_eq!(format(1_709_214_330_123), "20240229-13:45:30.123");
        assert_eq!(parse(b"20240229-13:45:30.123"), Some(1_709_214_330_123));
        assert_eq!(parse(b"20240229-13:45:30"), Some(1_709_214_330_000));
        assert_eq!(parse(b"20240229-13:45:30.123456"), Some(1_709_214_330_123));
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            &b""[..],
            b"2024022913:45:30",
            b"20240230-13:45:30",
            b"20241301-00:00:00",
            b"20240229-25:00:00",
            b"20240229-13:45:30.1",
            b"2024O229-13:45:30",
        ] {
            assert_eq!(parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
