//! Timestamps: an instant (unix seconds + nanoseconds) with the UTC offset it was
//! written in, the proleptic Gregorian calendar conversion (days-from-civil /
//! civil-from-days, no external crate), and RFC 3339 formatting and parsing.

use alloc::vec::Vec;

use crate::error::Error;

/// 0000-01-01T00:00:00Z, the earliest instant RFC 3339 can write.
const MIN_UNIX_SECONDS: i64 = -62_167_219_200;
/// 9999-12-31T23:59:59Z, the latest whole second RFC 3339 can write.
const MAX_UNIX_SECONDS: i64 = 253_402_300_799;
/// RFC 3339 `time-numoffset` allows at most 23:59.
const MAX_OFFSET_MINUTES: i16 = 23 * 60 + 59;
const SECONDS_PER_DAY: i64 = 86_400;

/// A point in time with the UTC offset it is shown in.
///
/// Invariants: nanoseconds below 1e9; offset within +-23:59; the instant lies in years
/// 0000-9999 both in UTC and in its own offset (so it can always be written as RFC 3339).
/// RFC 5424 emission keeps microseconds (truncating the rest). Equality compares all
/// three parts (the same instant in two offsets is two different timestamps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp {
    unix_seconds: i64,
    nanos: u32,
    offset_minutes: i16,
}

/// A calendar date and wall-clock time, as shown in some UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DateTimeParts {
    /// Year, 0-9999.
    pub year: u16,
    /// Month, 1-12.
    pub month: u8,
    /// Day of the month, 1-31.
    pub day: u8,
    /// Hour, 0-23.
    pub hour: u8,
    /// Minute, 0-59.
    pub minute: u8,
    /// Second, 0-59 (no leap seconds).
    pub second: u8,
}

/// Whether `year` is a leap year in the proleptic Gregorian calendar.
pub fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days in `month` (1-12) of `year`; 0 for a month outside 1-12.
pub fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
/// The date is not checked: pass a valid one.
pub fn days_from_civil(year: i32, month: u8, day: u8) -> i64 {
    let month = i64::from(month);
    let day = i64::from(day);
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date `(year, month, day)` of a day count since 1970-01-01.
/// Exact for any day within +-5 million years.
pub fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // month is 1..=12 and day 1..=31 by construction.
    (year, month as u8, day as u8)
}

impl Timestamp {
    /// 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Timestamp = Timestamp {
        unix_seconds: 0,
        nanos: 0,
        offset_minutes: 0,
    };

    /// A UTC timestamp from unix seconds and nanoseconds (below 1e9), in years 0000-9999.
    pub fn from_unix(secs: i64, nanos: u32) -> Result<Self, Error> {
        if nanos >= 1_000_000_000 {
            return Err(Error::NanosOutOfRange { nanos });
        }
        if !(MIN_UNIX_SECONDS..=MAX_UNIX_SECONDS).contains(&secs) {
            return Err(Error::TimestampOutOfRange);
        }
        Ok(Timestamp {
            unix_seconds: secs,
            nanos,
            offset_minutes: 0,
        })
    }

    /// The same instant shown in another UTC offset (minutes east of UTC, within
    /// +-23:59); fails if the local date would leave years 0000-9999.
    pub fn with_offset_minutes(self, off: i16) -> Result<Self, Error> {
        if !(-MAX_OFFSET_MINUTES..=MAX_OFFSET_MINUTES).contains(&off) {
            return Err(Error::OffsetOutOfRange { minutes: off });
        }
        let local = self.unix_seconds + i64::from(off) * 60;
        if !(MIN_UNIX_SECONDS..=MAX_UNIX_SECONDS).contains(&local) {
            return Err(Error::TimestampOutOfRange);
        }
        Ok(Timestamp {
            offset_minutes: off,
            ..self
        })
    }

    /// Builds a timestamp from wall-clock parts shown in `offset_minutes`.
    pub fn from_local_parts(
        parts: DateTimeParts,
        nanos: u32,
        offset_minutes: i16,
    ) -> Result<Self, Error> {
        let year = i32::from(parts.year);
        if parts.year > 9999
            || parts.month == 0
            || parts.day == 0
            || parts.day > days_in_month(year, parts.month)
            || parts.hour > 23
            || parts.minute > 59
            || parts.second > 59
        {
            return Err(Error::TimestampOutOfRange);
        }
        let local = days_from_civil(year, parts.month, parts.day) * SECONDS_PER_DAY
            + i64::from(parts.hour) * 3600
            + i64::from(parts.minute) * 60
            + i64::from(parts.second);
        let utc = local - i64::from(offset_minutes) * 60;
        Timestamp::from_unix(utc, nanos)?.with_offset_minutes(offset_minutes)
    }

    /// Seconds since 1970-01-01T00:00:00Z (negative before).
    pub fn unix_seconds(&self) -> i64 {
        self.unix_seconds
    }

    /// Nanoseconds within the second (below 1e9).
    pub fn nanos(&self) -> u32 {
        self.nanos
    }

    /// The UTC offset it is shown in, minutes east of UTC.
    pub fn offset_minutes(&self) -> i16 {
        self.offset_minutes
    }

    /// The same timestamp with nanoseconds truncated to whole microseconds (what RFC 5424
    /// emission keeps).
    pub fn truncated_to_micros(self) -> Self {
        Timestamp {
            nanos: self.nanos - self.nanos % 1000,
            ..self
        }
    }

    /// The calendar date and wall-clock time in the timestamp's own offset.
    pub fn local_parts(&self) -> DateTimeParts {
        let local = self.unix_seconds + i64::from(self.offset_minutes) * 60;
        let days = local.div_euclid(SECONDS_PER_DAY);
        let secs_of_day = local.rem_euclid(SECONDS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        DateTimeParts {
            // The invariant keeps the local year within 0..=9999.
            year: u16::try_from(year).unwrap_or(0),
            month,
            day,
            hour: (secs_of_day / 3600) as u8,
            minute: (secs_of_day / 60 % 60) as u8,
            second: (secs_of_day % 60) as u8,
        }
    }

    /// Appends the RFC 3339 / RFC 5424 form: `YYYY-MM-DDThh:mm:ss[.ffffff](Z|+hh:mm)`.
    /// The fraction keeps microseconds with trailing zeros dropped (none when the
    /// microseconds are 0); offset 0 is written `Z`.
    pub fn write_rfc3339(&self, out: &mut Vec<u8>) {
        let parts = self.local_parts();
        let mut buf = [0u8; 32];
        let year = parts.year;
        buf[0] = b'0' + (year / 1000 % 10) as u8;
        buf[1] = b'0' + (year / 100 % 10) as u8;
        buf[2] = b'0' + (year / 10 % 10) as u8;
        buf[3] = b'0' + (year % 10) as u8;
        buf[4] = b'-';
        put2(&mut buf, 5, parts.month);
        buf[7] = b'-';
        put2(&mut buf, 8, parts.day);
        buf[10] = b'T';
        put2(&mut buf, 11, parts.hour);
        buf[13] = b':';
        put2(&mut buf, 14, parts.minute);
        buf[16] = b':';
        put2(&mut buf, 17, parts.second);
        let mut len = 19;
        let mut micros = self.nanos / 1000;
        if micros != 0 {
            let mut digits = 6;
            while micros.is_multiple_of(10) {
                micros /= 10;
                digits -= 1;
            }
            buf[len] = b'.';
            let mut i = len + digits;
            while i > len {
                buf[i] = b'0' + (micros % 10) as u8;
                micros /= 10;
                i -= 1;
            }
            len += 1 + digits;
        }
        if self.offset_minutes == 0 {
            buf[len] = b'Z';
            len += 1;
        } else {
            let abs = self.offset_minutes.unsigned_abs();
            buf[len] = if self.offset_minutes < 0 { b'-' } else { b'+' };
            put2(&mut buf, len + 1, (abs / 60) as u8);
            buf[len + 3] = b':';
            put2(&mut buf, len + 4, (abs % 60) as u8);
            len += 6;
        }
        out.extend_from_slice(&buf[..len]);
    }
}

/// Writes a two-digit number (0-99) at `at`.
#[inline]
fn put2(buf: &mut [u8; 32], at: usize, value: u8) {
    buf[at] = b'0' + value / 10 % 10;
    buf[at + 1] = b'0' + value % 10;
}

/// How strictly [`parse_rfc3339`] reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TimeStrictness {
    /// RFC 5424: uppercase `T`/`Z`, 1-6 fraction digits, no leap second, offset required.
    Strict,
    /// What senders emit: lowercase `t`/`z`, any number of fraction digits (truncated to
    /// nanoseconds), second 60 read as 59.999999999, a missing offset read as the given
    /// default offset (minutes).
    Lenient {
        /// Offset assumed when the timestamp has none.
        default_offset: i16,
    },
}

fn digits_at(token: &[u8], at: usize, count: usize, base: usize) -> Result<u32, Error> {
    let mut value = 0u32;
    for i in at..at + count {
        match token.get(i) {
            Some(&b) if b.is_ascii_digit() => value = value * 10 + u32::from(b - b'0'),
            _ => {
                return Err(Error::InvalidTimestamp {
                    offset: base + i,
                    reason: "expected a digit",
                });
            }
        }
    }
    Ok(value)
}

fn expect_byte(
    token: &[u8],
    at: usize,
    want: u8,
    base: usize,
    lenient_alt: Option<u8>,
) -> Result<(), Error> {
    match token.get(at) {
        Some(&b) if b == want || Some(b) == lenient_alt => Ok(()),
        _ => Err(Error::InvalidTimestamp {
            offset: base + at,
            reason: match want {
                b'-' => "expected '-'",
                b':' => "expected ':'",
                b'T' => "expected 'T'",
                _ => "unexpected byte",
            },
        }),
    }
}

/// Parses one RFC 3339 timestamp that spans all of `token`. `base` is the token's offset
/// in the input, for error offsets.
pub(crate) fn parse_rfc3339(
    token: &[u8],
    base: usize,
    strictness: TimeStrictness,
) -> Result<Timestamp, Error> {
    let lenient = matches!(strictness, TimeStrictness::Lenient { .. });
    let year = digits_at(token, 0, 4, base)?;
    expect_byte(token, 4, b'-', base, None)?;
    let month = digits_at(token, 5, 2, base)?;
    expect_byte(token, 7, b'-', base, None)?;
    let day = digits_at(token, 8, 2, base)?;
    expect_byte(
        token,
        10,
        b'T',
        base,
        if lenient { Some(b't') } else { None },
    )?;
    let hour = digits_at(token, 11, 2, base)?;
    expect_byte(token, 13, b':', base, None)?;
    let minute = digits_at(token, 14, 2, base)?;
    expect_byte(token, 16, b':', base, None)?;
    let mut second = digits_at(token, 17, 2, base)?;
    if !(1..=12).contains(&month) {
        return Err(Error::InvalidTimestamp {
            offset: base + 5,
            reason: "month outside 01-12",
        });
    }
    // year <= 9999 and month valid, so the casts are exact.
    if day == 0 || day > u32::from(days_in_month(year as i32, month as u8)) {
        return Err(Error::InvalidTimestamp {
            offset: base + 8,
            reason: "day outside the month",
        });
    }
    if hour > 23 {
        return Err(Error::InvalidTimestamp {
            offset: base + 11,
            reason: "hour outside 00-23",
        });
    }
    if minute > 59 {
        return Err(Error::InvalidTimestamp {
            offset: base + 14,
            reason: "minute outside 00-59",
        });
    }
    let mut leap = false;
    if second == 60 {
        if lenient {
            second = 59;
            leap = true;
        } else {
            return Err(Error::LeapSecond { offset: base + 17 });
        }
    } else if second > 59 {
        return Err(Error::InvalidTimestamp {
            offset: base + 17,
            reason: "second outside 00-59",
        });
    }
    let mut at = 19;
    let mut nanos = 0u32;
    if token.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        let mut scale = 100_000_000u32;
        while let Some(&b) = token.get(at) {
            if !b.is_ascii_digit() {
                break;
            }
            if at - start == 6 && !lenient {
                return Err(Error::TooManyFractionDigits { offset: base + at });
            }
            nanos += u32::from(b - b'0') * scale;
            scale /= 10;
            at += 1;
        }
        if at == start {
            return Err(Error::InvalidTimestamp {
                offset: base + at,
                reason: "expected a fraction digit after '.'",
            });
        }
    }
    if leap {
        nanos = 999_999_999;
    }
    let offset_minutes: i16 = match token.get(at) {
        Some(b'Z') => {
            at += 1;
            0
        }
        Some(b'z') if lenient => {
            at += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits_at(token, at + 1, 2, base)?;
            expect_byte(token, at + 3, b':', base, None)?;
            let om = digits_at(token, at + 4, 2, base)?;
            if oh > 23 || om > 59 {
                return Err(Error::InvalidTimestamp {
                    offset: base + at,
                    reason: "offset outside +-23:59",
                });
            }
            at += 6;
            let minutes = (oh * 60 + om) as i16;
            if sign == b'-' { -minutes } else { minutes }
        }
        None => match strictness {
            TimeStrictness::Lenient { default_offset } => default_offset,
            TimeStrictness::Strict => {
                return Err(Error::InvalidTimestamp {
                    offset: base + at,
                    reason: "missing 'Z' or UTC offset",
                });
            }
        },
        Some(_) => {
            return Err(Error::InvalidTimestamp {
                offset: base + at,
                reason: "expected 'Z' or a UTC offset",
            });
        }
    };
    if at != token.len() {
        return Err(Error::InvalidTimestamp {
            offset: base + at,
            reason: "unexpected bytes after the timestamp",
        });
    }
    let parts = DateTimeParts {
        year: year as u16,
        month: month as u8,
        day: day as u8,
        hour: hour as u8,
        minute: minute as u8,
        second: second as u8,
    };
    Timestamp::from_local_parts(parts, nanos, offset_minutes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn civil_round_trip(y: i32, m: u8, d: u8, expected_days: i64) {
        assert_eq!(days_from_civil(y, m, d), expected_days, "{y}-{m}-{d}");
        assert_eq!(civil_from_days(expected_days), (i64::from(y), m, d));
    }

    #[test]
    fn known_dates() {
        civil_round_trip(1970, 1, 1, 0);
        civil_round_trip(2000, 2, 29, 11_016);
        civil_round_trip(2000, 3, 1, 11_017);
        civil_round_trip(2038, 1, 19, 24_855);
        civil_round_trip(1969, 12, 31, -1);
        civil_round_trip(0, 1, 1, MIN_UNIX_SECONDS / SECONDS_PER_DAY);
        civil_round_trip(9999, 12, 31, 2_932_896);
    }

    #[test]
    fn y2038_instant() {
        let ts = Timestamp::from_unix(2_147_483_647, 0).unwrap();
        let p = ts.local_parts();
        assert_eq!(
            (p.year, p.month, p.day, p.hour, p.minute, p.second),
            (2038, 1, 19, 3, 14, 7)
        );
        let mut out = Vec::new();
        ts.write_rfc3339(&mut out);
        assert_eq!(out, b"2038-01-19T03:14:07Z");
    }

    #[test]
    fn limits() {
        assert!(Timestamp::from_unix(MAX_UNIX_SECONDS, 999_999_999).is_ok());
        assert_eq!(
            Timestamp::from_unix(MAX_UNIX_SECONDS + 1, 0),
            Err(Error::TimestampOutOfRange)
        );
        assert!(Timestamp::from_unix(MIN_UNIX_SECONDS, 0).is_ok());
        assert_eq!(
            Timestamp::from_unix(MIN_UNIX_SECONDS - 1, 0),
            Err(Error::TimestampOutOfRange)
        );
        assert_eq!(
            Timestamp::from_unix(0, 1_000_000_000),
            Err(Error::NanosOutOfRange {
                nanos: 1_000_000_000
            })
        );
        let end = Timestamp::from_unix(MAX_UNIX_SECONDS, 0).unwrap();
        assert_eq!(end.with_offset_minutes(60), Err(Error::TimestampOutOfRange));
        assert!(end.with_offset_minutes(-60).is_ok());
        assert_eq!(
            Timestamp::UNIX_EPOCH.with_offset_minutes(24 * 60),
            Err(Error::OffsetOutOfRange { minutes: 1440 })
        );
        let mut out = Vec::new();
        end.write_rfc3339(&mut out);
        assert_eq!(out, b"9999-12-31T23:59:59Z");
    }

    #[test]
    fn negative_offset_formatting() {
        // 2003-08-24T05:14:15.000003-07:00 (RFC 5424 example 2)
        let ts = Timestamp::from_unix(1_061_727_255, 3_000)
            .unwrap()
            .with_offset_minutes(-7 * 60)
            .unwrap();
        let mut out = Vec::new();
        ts.write_rfc3339(&mut out);
        assert_eq!(out, b"2003-08-24T05:14:15.000003-07:00");
        let p = ts.local_parts();
        assert_eq!((p.year, p.month, p.day, p.hour), (2003, 8, 24, 5));
        // Negative unix time with a negative offset crossing midnight.
        let early = Timestamp::from_unix(-1, 500_000_000)
            .unwrap()
            .with_offset_minutes(-90)
            .unwrap();
        out.clear();
        early.write_rfc3339(&mut out);
        assert_eq!(out, b"1969-12-31T22:29:59.5-01:30");
        let parsed = parse_rfc3339(&out, 0, TimeStrictness::Strict).unwrap();
        assert_eq!(parsed, early);
    }

    #[test]
    fn parse_rules() {
        let strict = TimeStrictness::Strict;
        let lenient = TimeStrictness::Lenient { default_offset: 60 };
        assert!(parse_rfc3339(b"2000-02-29T00:00:00Z", 0, strict).is_ok());
        assert!(matches!(
            parse_rfc3339(b"2001-02-29T00:00:00Z", 0, strict),
            Err(Error::InvalidTimestamp { offset: 8, .. })
        ));
        assert_eq!(
            parse_rfc3339(b"2003-10-11T22:14:15.1234567Z", 10, strict),
            Err(Error::TooManyFractionDigits { offset: 36 })
        );
        let ts = parse_rfc3339(b"2003-10-11T22:14:15.123456789Z", 0, lenient).unwrap();
        assert_eq!(ts.nanos(), 123_456_789);
        assert_eq!(
            parse_rfc3339(b"2003-10-11T23:59:60Z", 0, strict),
            Err(Error::LeapSecond { offset: 17 })
        );
        let leap = parse_rfc3339(b"2003-10-11T23:59:60Z", 0, lenient).unwrap();
        assert_eq!(leap.nanos(), 999_999_999);
        assert!(parse_rfc3339(b"2003-10-11t22:14:15z", 0, strict).is_err());
        assert!(parse_rfc3339(b"2003-10-11t22:14:15z", 0, lenient).is_ok());
        assert!(parse_rfc3339(b"2003-10-11T22:14:15", 0, strict).is_err());
        let zoneless = parse_rfc3339(b"2003-10-11T22:14:15", 0, lenient).unwrap();
        assert_eq!(zoneless.offset_minutes(), 60);
        let minus_zero = parse_rfc3339(b"2003-10-11T22:14:15-00:00", 0, strict).unwrap();
        assert_eq!(minus_zero.offset_minutes(), 0);
        assert!(parse_rfc3339(b"2003-10-11T22:14:15+24:00", 0, strict).is_err());
        assert!(parse_rfc3339(b"2003-10-11T22:14:15.Z", 0, strict).is_err());
        assert!(parse_rfc3339(b"2003-10-11T22:14:15ZZ", 0, strict).is_err());
        assert!(parse_rfc3339(b"2003-13-11T22:14:15Z", 0, strict).is_err());
        assert!(parse_rfc3339(b"0000-01-01T00:00:00+00:01", 0, strict).is_err());
    }
}
