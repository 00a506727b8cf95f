//! Timestamps: `i64` milliseconds since the Unix epoch, in UTC.
//!
//! [`parse_timestamp`] accepts the formats found in data files and APIs; the
//! `YYYY-MM-DD HH:MM:SS` form (the NAB corpus CSV format) is parsed byte by byte
//! without allocating, because replay parses millions of them per second.
//! [`format_timestamp`] writes that same form back, and [`format_rfc3339`] the
//! RFC 3339 form used in JSON and HTTP APIs.
//!
//! Calendar arithmetic uses the proleptic Gregorian calendar and the
//! days-from-civil / civil-from-days algorithms (Howard Hinnant), so dates before
//! 1970 (negative milliseconds) work the same as later ones.

/// Milliseconds since the Unix epoch, UTC.
pub type Timestamp = i64;

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds in one second.
pub const MS_PER_SECOND: i64 = 1_000;
/// Milliseconds in one minute.
pub const MS_PER_MINUTE: i64 = 60 * MS_PER_SECOND;
/// Milliseconds in one hour.
pub const MS_PER_HOUR: i64 = 60 * MS_PER_MINUTE;
/// Milliseconds in one (UTC, leap-second free) day.
pub const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// The earliest instant [`format_timestamp`] writes as a date: `0000-01-01 00:00:00`.
pub const MIN_FORMATTABLE_MS: i64 = days_from_civil(0, 1, 1) * MS_PER_DAY;
/// The latest instant [`format_timestamp`] writes as a date: `9999-12-31 23:59:59.999`.
pub const MAX_FORMATTABLE_MS: i64 = days_from_civil(10_000, 1, 1) * MS_PER_DAY - 1;

/// Parses a timestamp into milliseconds since the Unix epoch (UTC).
///
/// Accepted forms (surrounding ASCII whitespace is ignored):
///
/// * `YYYY-MM-DD HH:MM:SS` — the NAB CSV format, UTC — optionally with fractional
///   seconds (`.5`, `.123`, `.123456`, …; digits beyond milliseconds are truncated).
/// * `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` — RFC 3339 (`t`/`z` in lower case too).
///   Either separator may carry an offset, and a missing offset means UTC.
/// * `YYYY-MM-DD` — midnight UTC.
/// * Unix seconds as an integer or a decimal, optionally signed (`1435781430`,
///   `1435781430.781`, `-1.5`). Always seconds, never milliseconds.
///
/// Years are four digits (0000–9999); months, days (leap years included), hours
/// (0–23), minutes and seconds (0–59, no leap second) are validated. Returns `None`
/// for anything else: out-of-range fields, trailing garbage, an empty string, or a
/// number that overflows `i64` milliseconds. Never panics.
///
/// ```
/// use vigil::time::parse_timestamp;
/// assert_eq!(parse_timestamp("2014-04-01 00:00:00"), Some(1_396_310_400_000));
/// assert_eq!(parse_timestamp("2014-04-01T02:00:00.250+02:00"), Some(1_396_310_400_250));
/// assert_eq!(parse_timestamp("1396310400.25"), Some(1_396_310_400_250));
/// assert_eq!(parse_timestamp("2014-02-30 00:00:00"), None);
/// ```
pub fn parse_timestamp(s: &str) -> Option<i64> {
    parse_timestamp_bytes(s.as_bytes())
}

/// [`parse_timestamp`] on bytes, for callers reading raw lines (no UTF-8 check needed:
/// every accepted form is ASCII, and any other byte is refused).
pub fn parse_timestamp_bytes(b: &[u8]) -> Option<i64> {
    // The fast path: exactly `YYYY-MM-DD HH:MM:SS`, the NAB format (millions per second
    // in replay).
    if let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1, b' ', h0, h1, b':', i0, i1, b':', s0, s1] = *b {
        let digits = [y0, y1, y2, y3, m0, m1, d0, d1, h0, h1, i0, i1, s0, s1];
        if digits.iter().all(u8::is_ascii_digit) {
            let n = |a: u8, b: u8| u32::from(a - b'0') * 10 + u32::from(b - b'0');
            let year = i64::from(n(y0, y1) * 100 + n(y2, y3));
            let (month, day, hour, min, sec) = (n(m0, m1), n(d0, d1), n(h0, h1), n(i0, i1), n(s0, s1));
            if (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month) && hour < 24 && min < 60 && sec < 60 {
                let days = days_from_civil(year, month, day);
                return Some(
                    days * MS_PER_DAY + i64::from(hour) * MS_PER_HOUR + i64::from(min) * MS_PER_MINUTE + i64::from(sec) * MS_PER_SECOND,
                );
            }
            return None;
        }
    }
    let b = b.trim_ascii();
    if b.len() >= 10 && b[4] == b'-' {
        parse_datetime(b)
    } else {
        parse_unix_seconds(b)
    }
}

/// Formats `ms` as `YYYY-MM-DD HH:MM:SS` (UTC), followed by `.mmm` only when the
/// milliseconds are not zero.
///
/// Instants outside years 0000–9999 ([`MIN_FORMATTABLE_MS`]..=[`MAX_FORMATTABLE_MS`])
/// are written as the plain integer millisecond count. Within that range,
/// [`parse_timestamp`] reads the result back to `ms`.
///
/// ```
/// use vigil::time::format_timestamp;
/// assert_eq!(format_timestamp(1_396_310_400_000), "2014-04-01 00:00:00");
/// assert_eq!(format_timestamp(1_396_310_400_007), "2014-04-01 00:00:00.007");
/// assert_eq!(format_timestamp(-1), "1969-12-31 23:59:59.999");
/// ```
pub fn format_timestamp(ms: i64) -> String {
    if !(MIN_FORMATTABLE_MS..=MAX_FORMATTABLE_MS).contains(&ms) {
        return ms.to_string();
    }
    let mut buf = [0u8; 23];
    write_datetime(&mut buf, ms, b' ');
    let len = if ms.rem_euclid(MS_PER_SECOND) == 0 { 19 } else { 23 };
    ascii_string(&buf[..len])
}

/// Formats a length of time the way the language writes durations: `90m` is `1h30m`,
/// `45000` ms is `45s`; a length that is not a whole second keeps its milliseconds.
///
/// ```
/// use vigil::time::format_duration_ms;
/// assert_eq!(format_duration_ms(5_400_000), "1h30m");
/// assert_eq!(format_duration_ms(45_000), "45s");
/// assert_eq!(format_duration_ms(1_500), "1s500ms");
/// assert_eq!(format_duration_ms(0), "0s");
/// ```
pub fn format_duration_ms(ms: i64) -> String {
    // Days at most: `14d` reads better than `2w` in "opened 14d ago".
    write_duration(u64::try_from(ms).unwrap_or(0), &DURATION_UNITS[..5])
}

/// Formats a duration as the language's canonical source writes it (`vigil fmt`, a
/// condition's text, a parameter's value): the largest units first, weeks included,
/// `0s` for zero. [`duration_ms`] reads it back.
///
/// ```
/// use vigil::time::{duration_ms, format_duration_source};
/// assert_eq!(format_duration_source(5_400_000), "1h30m");
/// assert_eq!(format_duration_source(15 * 86_400_000), "2w1d");
/// assert_eq!(duration_ms("2w1d"), Ok(15 * 86_400_000));
/// ```
pub fn format_duration_source(ms: u64) -> String {
    write_duration(ms, &DURATION_UNITS)
}

/// `ms` in `units` (of [`DURATION_UNITS`]), the largest first.
fn write_duration(ms: u64, units: &[(&str, u64)]) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, len) in units.iter().rev() {
        if rest >= *len {
            out.push_str(&format!("{}{unit}", rest / len));
            rest %= len;
        }
    }
    out
}

/// Formats `ms` as RFC 3339 in UTC with millisecond precision, e.g.
/// `2014-04-01T00:00:00.000Z` (for JSON and HTTP APIs).
///
/// Instants outside years 0000–9999, which RFC 3339 cannot express, are written as
/// the plain integer millisecond count, like [`format_timestamp`].
///
/// ```
/// use vigil::time::format_rfc3339;
/// assert_eq!(format_rfc3339(1_396_310_400_000), "2014-04-01T00:00:00.000Z");
/// ```
pub fn format_rfc3339(ms: i64) -> String {
    if !(MIN_FORMATTABLE_MS..=MAX_FORMATTABLE_MS).contains(&ms) {
        return ms.to_string();
    }
    let mut buf = [0u8; 24];
    write_datetime(&mut buf, ms, b'T');
    buf[23] = b'Z';
    ascii_string(&buf)
}

/// Milliseconds since the Unix epoch now, from the system clock (floored; negative if
/// the clock is set before 1970).
pub fn now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            let partial = i64::from(d.subsec_nanos() % 1_000_000 != 0);
            (-ms).saturating_sub(partial)
        }
    }
}

/// Whether `year` is a leap year in the proleptic Gregorian calendar.
#[inline]
pub const fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// The number of days in `month` (1–12) of `year`; 0 for an invalid month.
#[inline]
pub const fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of the (proleptic Gregorian) date `year-month-day`.
/// `month` must be 1–12 and `day` 1–31; the day is not checked against the month.
#[inline]
pub const fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = (if y >= 0 { y } else { y - 399 }) / 400;
    let yoe = y - era * 400; // [0, 399]
    let m = month as i64;
    let mp = if m > 2 { m - 3 } else { m + 9 }; // March = 0
    let doy = (153 * mp + 2) / 5 + day as i64 - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The date `(year, month, day)` of `days` since 1970-01-01; the inverse of
/// [`days_from_civil`]. Valid for any `days` whose year fits in `i64` arithmetic
/// (far beyond any `i64` millisecond timestamp).
#[inline]
pub const fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = (if z >= 0 { z } else { z - 146_096 }) / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

/// One ASCII digit's value.
#[inline(always)]
fn digit(c: u8) -> Option<u32> {
    let d = c.wrapping_sub(b'0');
    if d < 10 {
        Some(u32::from(d))
    } else {
        None
    }
}

/// Two ASCII digits at `b[i]`, `b[i + 1]` (the caller guarantees the length).
#[inline(always)]
fn two_digits(b: &[u8], i: usize) -> Option<u32> {
    Some(digit(b[i])? * 10 + digit(b[i + 1])?)
}

/// `YYYY-MM-DD`, optionally followed by a separator, `HH:MM:SS`, a fraction and an
/// offset. The caller guarantees `b.len() >= 10`.
#[inline]
fn parse_datetime(b: &[u8]) -> Option<i64> {
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = i64::from(two_digits(b, 0)? * 100 + two_digits(b, 2)?);
    let month = two_digits(b, 5)?;
    let day = two_digits(b, 8)?;
    if day == 0 || day > days_in_month(year, month) {
        return None; // also rejects month 0 and months above 12 (0 days)
    }
    let midnight = days_from_civil(year, month, day) * MS_PER_DAY;
    if b.len() == 10 {
        return Some(midnight);
    }
    if b.len() < 19 || !matches!(b[10], b' ' | b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let hour = two_digits(b, 11)?;
    let minute = two_digits(b, 14)?;
    let second = two_digits(b, 17)?;
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut ms = i64::from((hour * 60 + minute) * 60 + second) * MS_PER_SECOND;

    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        let mut frac = 0u32;
        while let Some(d) = b.get(i).and_then(|&c| digit(c)) {
            if i - start < 3 {
                frac = frac * 10 + d;
            }
            i += 1;
        }
        match i - start {
            0 => return None,
            1 => frac *= 100,
            2 => frac *= 10,
            _ => {}
        }
        ms += i64::from(frac);
    }

    let offset_ms = match &b[i..] {
        [] | [b'Z'] | [b'z'] => 0,
        &[sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digit(h1)? * 10 + digit(h2)?;
            let m = digit(m1)? * 10 + digit(m2)?;
            if h > 23 || m > 59 {
                return None;
            }
            let off = i64::from(h * 60 + m) * MS_PER_MINUTE;
            if sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    Some(midnight + ms - offset_ms)
}

/// `[+-]digits[.digits]` seconds since the epoch, floored to milliseconds.
fn parse_unix_seconds(b: &[u8]) -> Option<i64> {
    let (negative, b) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    let int_len = b.iter().position(|c| !c.is_ascii_digit()).unwrap_or(b.len());
    if int_len == 0 {
        return None;
    }
    let mut secs: i64 = 0;
    for &c in &b[..int_len] {
        secs = secs.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
    }
    let mut frac_ms: i64 = 0;
    let mut below_ms = false;
    match &b[int_len..] {
        [] => {}
        [b'.', frac @ ..] if !frac.is_empty() => {
            for (k, &c) in frac.iter().enumerate() {
                let d = digit(c)?;
                match k {
                    0 => frac_ms += i64::from(d) * 100,
                    1 => frac_ms += i64::from(d) * 10,
                    2 => frac_ms += i64::from(d),
                    _ => below_ms |= d != 0,
                }
            }
        }
        _ => return None,
    }
    let whole = secs.checked_mul(MS_PER_SECOND)?;
    if negative {
        // Floor, like the date forms: -1.0005 s is -1000.5 ms, i.e. -1001.
        whole.checked_neg()?.checked_sub(frac_ms)?.checked_sub(i64::from(below_ms))
    } else {
        whole.checked_add(frac_ms)
    }
}

/// Writes `YYYY-MM-DD?HH:MM:SS.mmm` (23 bytes, `?` = `sep`) into `buf[..23]`.
/// `ms` must be within the formattable range (four-digit, non-negative year).
fn write_datetime(buf: &mut [u8], ms: i64, sep: u8) {
    let (year, month, day) = civil_from_days(ms.div_euclid(MS_PER_DAY));
    let in_day = ms.rem_euclid(MS_PER_DAY);
    let year = year.clamp(0, 9999) as u32;
    let secs = (in_day / MS_PER_SECOND) as u32;
    let millis = (in_day % MS_PER_SECOND) as u32;
    put_digits(&mut buf[0..4], year);
    buf[4] = b'-';
    put_digits(&mut buf[5..7], month);
    buf[7] = b'-';
    put_digits(&mut buf[8..10], day);
    buf[10] = sep;
    put_digits(&mut buf[11..13], secs / 3600);
    buf[13] = b':';
    put_digits(&mut buf[14..16], secs / 60 % 60);
    buf[16] = b':';
    put_digits(&mut buf[17..19], secs % 60);
    buf[19] = b'.';
    put_digits(&mut buf[20..23], millis);
}

/// Writes `value` zero-padded into all of `out` (its lowest `out.len()` digits).
#[inline]
fn put_digits(out: &mut [u8], mut value: u32) {
    for c in out.iter_mut().rev() {
        *c = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// A `String` of ASCII bytes.
fn ascii_string(bytes: &[u8]) -> String {
    bytes.iter().map(|&c| char::from(c)).collect()
}

/// The duration units and their size in milliseconds: the one list the language, the CLI
/// and the API read.
pub const DURATION_UNITS: [(&str, u64); 6] =
    [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000), ("w", 604_800_000)];

/// Why a duration does not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DurationError {
    /// Nothing, or something that is not digits followed by a unit.
    Malformed,
    /// A unit not in [`DURATION_UNITS`], at these byte offsets.
    UnknownUnit { start: usize, end: usize },
    /// Too long to count in milliseconds.
    Overflow,
}

/// Reads `500ms`, `30s`, `5m`, `6h`, `1d`, `2w` or a sum such as `1h30m`, in
/// milliseconds. The one duration codec: the language, the CLI and the API use it.
///
/// # Errors
/// See [`DurationError`].
pub fn duration_ms(text: &str) -> Result<u64, DurationError> {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return Err(DurationError::Malformed);
    }
    let (mut i, mut millis) = (0, 0u64);
    while i < bytes.len() {
        let num_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        if num_start == unit_start || unit_start == i {
            return Err(DurationError::Malformed);
        }
        let unit = &text[unit_start..i];
        let Some((_, size)) = DURATION_UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(DurationError::UnknownUnit { start: unit_start, end: i });
        };
        let n: u64 = text[num_start..unit_start].parse().map_err(|_| DurationError::Overflow)?;
        millis = n.checked_mul(*size).and_then(|v| millis.checked_add(v)).ok_or(DurationError::Overflow)?;
    }
    Ok(millis)
}

/// A duration as [`duration_ms`] reads it, or a plain number of milliseconds; surrounding
/// space is ignored.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    duration_ms(s).ok().and_then(|ms| i64::try_from(ms).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_duration_codec_for_the_language_the_cli_and_the_api() {
        assert_eq!(duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(duration_ms("500ms"), Ok(500));
        assert_eq!(duration_ms("2w1d"), Ok(15 * 86_400_000));
        assert_eq!(duration_ms("30sec"), Err(DurationError::UnknownUnit { start: 2, end: 5 }));
        assert_eq!(duration_ms(""), Err(DurationError::Malformed));
        assert_eq!(duration_ms("h"), Err(DurationError::Malformed));
        assert_eq!(duration_ms("5"), Err(DurationError::Malformed));
        assert_eq!(duration_ms("99999999999999999999w"), Err(DurationError::Overflow));
        assert_eq!(parse_duration(" 1h30m "), Some(5_400_000));
        assert_eq!(parse_duration("250"), Some(250), "a plain number is milliseconds");
    }
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    use proptest::prelude::*;

    /// chrono's milliseconds for a valid date and time, or None for an invalid date.
    fn chrono_ms(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, ms: u32) -> Option<i64> {
        Some(NaiveDate::from_ymd_opt(y, mo, d)?.and_hms_milli_opt(h, mi, s, ms)?.and_utc().timestamp_millis())
    }

    #[test]
    fn known_values() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_timestamp("1970-01-01"), Some(0));
        assert_eq!(parse_timestamp("2014-04-01 00:00:00"), Some(1_396_310_400_000));
        assert_eq!(parse_timestamp("2015-07-01 20:10:30.781"), Some(1_435_781_430_781));
        assert_eq!(parse_timestamp("2015-07-01 20:10:30.781999"), Some(1_435_781_430_781));
        assert_eq!(parse_timestamp("2015-07-01 20:10:30.7"), Some(1_435_781_430_700));
        assert_eq!(parse_timestamp("2015-07-01 20:10:30.78"), Some(1_435_781_430_780));
        assert_eq!(parse_timestamp("1435781430.781"), Some(1_435_781_430_781));
        assert_eq!(parse_timestamp("1435781430"), Some(1_435_781_430_000));
        assert_eq!(parse_timestamp("+1435781430"), Some(1_435_781_430_000));
        assert_eq!(parse_timestamp("  2014-04-01 00:00:00\r\n"), Some(1_396_310_400_000));
        assert_eq!(parse_timestamp("0"), Some(0));
        assert_eq!(parse_timestamp("-0"), Some(0));
        assert_eq!(parse_timestamp("-1.5"), Some(-1500));
        assert_eq!(parse_timestamp("-1.0005"), Some(-1001));
        assert_eq!(parse_timestamp("1.0005"), Some(1000));
        assert_eq!(parse_timestamp("0000-01-01 00:00:00"), Some(MIN_FORMATTABLE_MS));
        assert_eq!(parse_timestamp("9999-12-31 23:59:59.999"), Some(MAX_FORMATTABLE_MS));
        assert_eq!(parse_timestamp("9223372036854775.807"), Some(i64::MAX));
        assert_eq!(parse_timestamp("-9223372036854775.808"), Some(i64::MIN));
    }

    #[test]
    fn leap_years() {
        assert!(parse_timestamp("2016-02-29 00:00:00").is_some());
        assert!(parse_timestamp("2000-02-29 00:00:00").is_some());
        assert!(parse_timestamp("0000-02-29").is_some());
        assert!(parse_timestamp("1600-02-29").is_some());
        assert!(parse_timestamp("2014-02-29 00:00:00").is_none());
        assert!(parse_timestamp("1900-02-29 00:00:00").is_none());
        assert!(parse_timestamp("2100-02-29").is_none());
        assert!(parse_timestamp("2014-04-31").is_none());
        assert!(parse_timestamp("2014-12-31 23:59:59").is_some());
    }

    #[test]
    fn rejections() {
        for s in [
            "2014-13-01 00:00:00",
            "2014-00-01 00:00:00",
            "2014-02-30 00:00:00",
            "2014-01-00 00:00:00",
            "2014-01-32 00:00:00",
            "2014-01-01 24:00:00",
            "2014-01-01 00:60:00",
            "2014-01-01 00:00:60",
            "2014-01-01 00:00",
            "2014-01-01 00:00:0",
            "2014-01-01 00:00:00x",
            "2014-01-01 00:00:00.",
            "2014-01-01 00:00:00.12a",
            "2014-01-01x00:00:00",
            "2014-01-01 00-00-00",
            "2014-01-01T00:00:00+24:00",
            "2014-01-01T00:00:00+01:60",
            "2014-01-01T00:00:00+0100",
            "2014-01-01T00:00:00+01",
            "2014-01-01T00:00:00ZZ",
            "2014-01-01T00:00:00 Z",
            "2014-1-01 00:00:00",
            "2014-01-1",
            "201a-01-01",
            "-014-01-01",
            "2014/01/01",
            "abc",
            "",
            "   ",
            "-",
            "+",
            "1.",
            ".5",
            "1e9",
            "--1",
            "1.2.3",
            "1,5",
            "0x10",
            "9223372036854775808",
            "9223372036854776",
            "-9223372036854775.809",
        ] {
            assert_eq!(parse_timestamp(s), None, "{s:?}");
        }
        // the whitespace trim is only around the text
        assert_eq!(parse_timestamp("2014-01-01 00:00:00 x"), None);
        assert_eq!(parse_timestamp("2014-01-01\t00:00:00"), None);
    }

    #[test]
    fn rfc3339_offsets() {
        let utc = parse_timestamp("2014-04-01 00:00:00").unwrap();
        let mut checked_with_chrono = 0;
        for s in [
            "2014-04-01T00:00:00Z",
            "2014-04-01t00:00:00z",
            "2014-04-01T00:00:00",
            "2014-04-01T00:00:00+00:00",
            "2014-04-01T00:00:00-00:00",
            "2014-04-01T02:00:00+02:00",
            "2014-03-31T19:30:00-04:30",
            "2014-04-01T05:45:00+05:45",
            "2014-04-01 02:00:00+02:00",
            "2014-04-01T00:00:00.000Z",
            "2014-04-01T00:00:00.000000000Z",
            "2014-04-01T23:59:00+23:59",
            "2014-03-31T00:01:00-23:59",
        ] {
            assert_eq!(parse_timestamp(s), Some(utc), "{s:?}");
            if let Ok(c) = DateTime::parse_from_rfc3339(s) {
                assert_eq!(c.timestamp_millis(), utc, "{s:?} vs chrono");
                checked_with_chrono += 1;
            }
        }
        assert!(checked_with_chrono >= 8, "{checked_with_chrono}");
        assert_eq!(parse_timestamp("2014-04-01T00:00:00.5+01:00"), Some(utc - MS_PER_HOUR + 500));
        // offsets may cross the day, month and year
        assert_eq!(parse_timestamp("2015-01-01T00:30:00+01:00"), parse_timestamp("2014-12-31 23:30:00"));
    }

    #[test]
    fn before_1970() {
        assert_eq!(parse_timestamp("1969-12-31 23:59:59"), Some(-1000));
        assert_eq!(parse_timestamp("1969-12-31 23:59:59.999"), Some(-1));
        assert_eq!(parse_timestamp("1900-01-01"), Some(-2_208_988_800_000));
        assert_eq!(parse_timestamp("-1"), Some(-1000));
        assert_eq!(format_timestamp(-1), "1969-12-31 23:59:59.999");
        assert_eq!(format_timestamp(-1000), "1969-12-31 23:59:59");
        assert_eq!(format_timestamp(-2_208_988_800_000), "1900-01-01 00:00:00");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_timestamp(MIN_FORMATTABLE_MS), "0000-01-01 00:00:00");
        assert_eq!(parse_timestamp("0000-03-01"), chrono_ms(0, 3, 1, 0, 0, 0, 0));
    }

    #[test]
    fn formatting() {
        assert_eq!(format_timestamp(0), "1970-01-01 00:00:00");
        assert_eq!(format_timestamp(1_435_781_430_781), "2015-07-01 20:10:30.781");
        assert_eq!(format_timestamp(1_435_781_430_001), "2015-07-01 20:10:30.001");
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(1_396_310_400_000), "2014-04-01T00:00:00.000Z");
        assert_eq!(format_timestamp(MAX_FORMATTABLE_MS), "9999-12-31 23:59:59.999");
        assert_eq!(format_rfc3339(MAX_FORMATTABLE_MS), "9999-12-31T23:59:59.999Z");
        // outside years 0000-9999: the integer
        assert_eq!(format_timestamp(MAX_FORMATTABLE_MS + 1), (MAX_FORMATTABLE_MS + 1).to_string());
        assert_eq!(format_timestamp(MIN_FORMATTABLE_MS - 1), (MIN_FORMATTABLE_MS - 1).to_string());
        assert_eq!(format_timestamp(i64::MAX), i64::MAX.to_string());
        assert_eq!(format_timestamp(i64::MIN), i64::MIN.to_string());
        assert_eq!(format_rfc3339(i64::MIN), i64::MIN.to_string());
    }

    #[test]
    fn now_is_recent() {
        let now = now_ms();
        let chrono_now = chrono::Utc::now().timestamp_millis();
        assert!((now - chrono_now).abs() < 60_000, "{now} vs {chrono_now}");
        assert!(now > parse_timestamp("2020-01-01").unwrap());
    }

    #[test]
    fn civil_round_trip_every_day_of_years_0_to_10000() {
        let mut expected = days_from_civil(0, 1, 1);
        for year in 0..=10_000 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    assert_eq!(days_from_civil(year, month, day), expected);
                    assert_eq!(civil_from_days(expected), (year, month, day));
                    expected += 1;
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The NAB form, with every day number 1-31: valid exactly when chrono says so,
        /// and then the same instant.
        #[test]
        fn nab_form_matches_chrono(
            y in 0i32..=9999, mo in 1u32..=12, d in 1u32..=31,
            h in 0u32..24, mi in 0u32..60, s in 0u32..60, ms in 0u32..1000, with_ms: bool,
        ) {
            let text = if with_ms {
                format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{ms:03}")
            } else {
                format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
            };
            let expected = chrono_ms(y, mo, d, h, mi, s, if with_ms { ms } else { 0 });
            prop_assert_eq!(parse_timestamp(&text), expected);
            if let Some(expected) = expected {
                prop_assert_eq!(format_timestamp(expected), text.trim_end_matches(".000"));
            }
        }

        /// Fractions of any length agree with chrono's `%.f` (floored to milliseconds).
        #[test]
        fn fractions_match_chrono(
            y in 0i32..=9999, mo in 1u32..=12, d in 1u32..=28,
            h in 0u32..24, mi in 0u32..60, s in 0u32..60, frac in "[0-9]{1,9}",
        ) {
            let text = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{frac}");
            let c = NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f")
                .unwrap().and_utc().timestamp_millis();
            prop_assert_eq!(parse_timestamp(&text), Some(c));
        }

        /// RFC 3339 with random offsets agrees with chrono.
        #[test]
        fn rfc3339_matches_chrono(
            y in 1i32..=9998, mo in 1u32..=12, d in 1u32..=28,
            h in 0u32..24, mi in 0u32..60, s in 0u32..60, frac in "(\\.[0-9]{1,9})?",
            off in prop_oneof![Just("Z".to_string()), (any::<bool>(), 0u32..24, 0u32..60)
                .prop_map(|(neg, oh, om)| format!("{}{oh:02}:{om:02}", if neg { '-' } else { '+' }))],
        ) {
            let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{off}");
            let c = DateTime::parse_from_rfc3339(&text).unwrap().timestamp_millis();
            prop_assert_eq!(parse_timestamp(&text), Some(c));
        }

        /// Formatting agrees with chrono and round-trips through parsing.
        #[test]
        fn format_matches_chrono_and_round_trips(ms in MIN_FORMATTABLE_MS..=MAX_FORMATTABLE_MS) {
            let dt = DateTime::from_timestamp_millis(ms).unwrap();
            let c = dt.format("%Y-%m-%d %H:%M:%S%.3f").to_string();
            let text = format_timestamp(ms);
            prop_assert_eq!(&text, c.trim_end_matches(".000"));
            prop_assert_eq!(parse_timestamp(&text), Some(ms));
            let rfc = format_rfc3339(ms);
            prop_assert_eq!(&rfc, &dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
            prop_assert_eq!(parse_timestamp(&rfc), Some(ms));
        }

        /// Instants near 1970 (both signs) round-trip too.
        #[test]
        fn round_trip_near_epoch(ms in -5_000_000_000_000i64..5_000_000_000_000) {
            prop_assert_eq!(parse_timestamp(&format_timestamp(ms)), Some(ms));
            prop_assert_eq!(parse_timestamp(&format_rfc3339(ms)), Some(ms));
        }

        /// Unix seconds: integers and decimals.
        #[test]
        fn unix_seconds(secs in -9_000_000_000_000i64..9_000_000_000_000, ms in 0i64..1000) {
            prop_assert_eq!(parse_timestamp(&secs.to_string()), Some(secs * 1000));
            let text = format!("{secs}.{ms:03}");
            let expected = if secs < 0 { secs * 1000 - ms } else { secs * 1000 + ms };
            prop_assert_eq!(parse_timestamp(&text), Some(expected));
        }

        /// Arbitrary text never panics, and whatever parses as a date-time formats back
        /// to an instant that parses to the same value.
        #[test]
        fn never_panics(s in "\\PC{0,40}", t in "[0-9 :.TZtz+-]{0,32}") {
            for text in [&s, &t] {
                if let Some(ms) = parse_timestamp(text) {
                    if (MIN_FORMATTABLE_MS..=MAX_FORMATTABLE_MS).contains(&ms) {
                        prop_assert_eq!(parse_timestamp(&format_timestamp(ms)), Some(ms));
                    }
                }
            }
        }
    }
}
