//! FHIR date, dateTime, instant and time values: strict parsing with their precision, the
//! instant range a partial value covers, and the formats the server writes (`lastUpdated`,
//! HTTP dates). Times are microseconds since the Unix epoch, UTC.

/// How much of a date/time was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precision {
    Year,
    Month,
    Day,
    Minute,
    Second,
    /// Fractional seconds, with the number of digits given.
    Fraction(u8),
}

/// A parsed FHIR date, dateTime or instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartialDateTime {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// Fraction of the second in nanoseconds.
    pub nanos: u32,
    pub precision: Precision,
    /// Offset from UTC in minutes, when a time zone was given.
    pub offset_minutes: Option<i32>,
}

/// A parsed FHIR time (`hh:mm:ss(.f+)?`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Time {
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub nanos: u32,
    pub precision: Precision,
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, n: usize) -> Option<u32> {
        let slice = self.s.get(self.i..self.i + n)?;
        if !slice.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(
            slice
                .iter()
                .fold(0, |acc, d| acc * 10 + u32::from(d - b'0')),
        )
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn done(&self) -> bool {
        self.i == self.s.len()
    }
}

/// Parses `hh:mm:ss(.f+)?` (FHIR `time`); with `allow_partial`, `hh` and `hh:mm` too.
fn time_part(c: &mut Cursor, allow_partial: bool) -> Option<(u8, u8, u8, u32, Precision)> {
    let hour = c.digits(2)?;
    if hour > 23 {
        return None;
    }
    if !c.eat(b':') {
        return allow_partial.then_some((hour as u8, 0, 0, 0, Precision::Minute));
    }
    let minute = c.digits(2)?;
    if minute > 59 {
        return None;
    }
    if !c.eat(b':') {
        return allow_partial.then_some((hour as u8, minute as u8, 0, 0, Precision::Minute));
    }
    let second = c.digits(2)?;
    if second > 60 {
        return None;
    }
    let mut nanos = 0u32;
    let mut precision = Precision::Second;
    if c.eat(b'.') {
        let start = c.i;
        while c.s.get(c.i).is_some_and(u8::is_ascii_digit) {
            c.i += 1;
        }
        let digits = &c.s[start..c.i];
        if digits.is_empty() {
            return None;
        }
        for k in 0..9 {
            nanos = nanos * 10 + digits.get(k).map_or(0, |d| u32::from(d - b'0'));
        }
        precision = Precision::Fraction(digits.len().min(255) as u8);
    }
    Some((hour as u8, minute as u8, second as u8, nanos, precision))
}

fn zone(c: &mut Cursor) -> Option<i32> {
    if c.eat(b'Z') {
        return Some(0);
    }
    let sign = if c.eat(b'+') {
        1
    } else if c.eat(b'-') {
        -1
    } else {
        return None;
    };
    let h = c.digits(2)?;
    if !c.eat(b':') {
        return None;
    }
    let m = c.digits(2)?;
    if h > 14 || m > 59 || (h == 14 && m != 0) {
        return None;
    }
    Some(sign * (h as i32 * 60 + m as i32))
}

fn date_part(c: &mut Cursor) -> Option<PartialDateTime> {
    let year = c.digits(4)? as i32;
    let mut v = PartialDateTime {
        year,
        month: 1,
        day: 1,
        hour: 0,
        minute: 0,
        second: 0,
        nanos: 0,
        precision: Precision::Year,
        offset_minutes: None,
    };
    if c.eat(b'-') {
        let month = c.digits(2)?;
        if !(1..=12).contains(&month) {
            return None;
        }
        v.month = month as u8;
        v.precision = Precision::Month;
        if c.eat(b'-') {
            let day = c.digits(2)?;
            if day < 1 || day > days_in_month(year, month as u8) {
                return None;
            }
            v.day = day as u8;
            v.precision = Precision::Day;
        }
    }
    Some(v)
}

/// Parses a FHIR `date`: `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<PartialDateTime> {
    let mut c = Cursor {
        s: s.as_bytes(),
        i: 0,
    };
    let v = date_part(&mut c)?;
    c.done().then_some(v)
}

/// Parses a FHIR `dateTime`: a date, or a full date with `Thh:mm:ss(.f)` and a zone.
pub fn parse_date_time(s: &str) -> Option<PartialDateTime> {
    parse_date_time_with(s, false)
}

/// Parses a date-time as search parameters and FHIRPath allow it: also `Thh:mm` and a time
/// without a zone.
pub fn parse_date_time_lenient(s: &str) -> Option<PartialDateTime> {
    parse_date_time_with(s, true)
}

fn parse_date_time_with(s: &str, lenient: bool) -> Option<PartialDateTime> {
    let mut c = Cursor {
        s: s.as_bytes(),
        i: 0,
    };
    let mut v = date_part(&mut c)?;
    if c.eat(b'T') {
        if v.precision != Precision::Day {
            return None;
        }
        let (h, m, sec, nanos, precision) = time_part(&mut c, lenient)?;
        (v.hour, v.minute, v.second, v.nanos, v.precision) = (h, m, sec, nanos, precision);
        if c.done() && lenient {
            return Some(v);
        }
        v.offset_minutes = Some(zone(&mut c)?);
    }
    c.done().then_some(v)
}

/// Parses a FHIR `instant`: a full date-time with seconds and a zone.
pub fn parse_instant(s: &str) -> Option<PartialDateTime> {
    let v = parse_date_time(s)?;
    (v.precision >= Precision::Second && v.offset_minutes.is_some()).then_some(v)
}

/// Parses a FHIR `time`.
pub fn parse_time(s: &str) -> Option<Time> {
    let mut c = Cursor {
        s: s.as_bytes(),
        i: 0,
    };
    let (hour, minute, second, nanos, precision) = time_part(&mut c, false)?;
    c.done().then_some(Time {
        hour,
        minute,
        second,
        nanos,
        precision,
    })
}

pub fn is_leap_year(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

pub fn days_in_month(y: i32, m: u8) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i32, m: u8, d: u8) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    ((y + i64::from(m <= 2)) as i32, m, d)
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

impl PartialDateTime {
    /// The first instant covered, in microseconds since the epoch (UTC; values without a zone
    /// are taken as UTC).
    pub fn start_micros(&self) -> i64 {
        let days = days_from_civil(self.year, self.month, self.day);
        let secs =
            i64::from(self.hour) * 3600 + i64::from(self.minute) * 60 + i64::from(self.second);
        let offset = i64::from(self.offset_minutes.unwrap_or(0)) * 60;
        days * MICROS_PER_DAY + (secs - offset) * 1_000_000 + i64::from(self.nanos / 1000)
    }

    /// The instant just after the covered range (exclusive end), per the value's precision:
    /// `2020` covers the whole year, `2020-03-04T10:00:00` one second.
    pub fn end_micros(&self) -> i64 {
        let start = self.start_micros();
        match self.precision {
            Precision::Year => {
                let next = days_from_civil(self.year + 1, 1, 1) - days_from_civil(self.year, 1, 1);
                start + next * MICROS_PER_DAY
            }
            Precision::Month => {
                start + i64::from(days_in_month(self.year, self.month)) * MICROS_PER_DAY
            }
            Precision::Day => start + MICROS_PER_DAY,
            Precision::Minute => start + 60_000_000,
            Precision::Second => start + 1_000_000,
            Precision::Fraction(d) => start + 10i64.pow(6u32.saturating_sub(u32::from(d))).max(1),
        }
    }
}

/// Formats an instant as FHIR `instant` with millisecond precision (`meta.lastUpdated`).
pub fn format_instant(micros: i64) -> String {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let rem = micros.rem_euclid(MICROS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let secs = rem / 1_000_000;
    let millis = (rem % 1_000_000) / 1000;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Formats an instant as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn format_http_date(micros: i64) -> String {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let secs = micros.rem_euclid(MICROS_PER_DAY) / 1_000_000;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[usize::from(m - 1)],
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Parses an IMF-fixdate HTTP date; returns microseconds since the epoch.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let mut parts = s.split_whitespace();
    let _weekday = parts.next()?;
    let day: u8 = parts.next()?.parse().ok()?;
    let month_name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as u8 + 1;
    let year: i32 = parts.next()?.parse().ok()?;
    let time = parts.next()?;
    if parts.next()? != "GMT" {
        return None;
    }
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, se) = (t.next()??, t.next()??, t.next()??);
    if day == 0 || u32::from(day) > days_in_month(year, month) {
        return None;
    }
    Some((days_from_civil(year, month, day) * 86_400 + h * 3600 + mi * 60 + se) * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fhir_date_time_forms() {
        for ok in [
            "2020",
            "2020-02",
            "2020-02-29",
            "2020-02-29T10:11:12Z",
            "2020-02-29T10:11:12.5+14:00",
        ] {
            assert!(parse_date_time(ok).is_some(), "{ok}");
        }
        for bad in [
            "20",
            "2020-13",
            "2019-02-29",
            "2020-02-29T10:11Z",
            "2020-02-29T10:11:12",
            "2020-1-1",
            "x",
            "",
        ] {
            assert!(parse_date_time(bad).is_none(), "{bad}");
        }
        assert!(parse_date("2020-01-01T00:00:00Z").is_none());
        assert!(parse_instant("2020-01-01").is_none());
        assert!(parse_instant("2020-01-01T00:00:00.123Z").is_some());
        assert!(parse_time("23:59:60").is_some());
        assert!(parse_time("24:00:00").is_none());
        assert!(parse_date_time_lenient("2020-01-01T10:00").is_some());
    }

    #[test]
    fn ranges_follow_precision() {
        let y = parse_date("2020").unwrap();
        assert_eq!(format_instant(y.start_micros()), "2020-01-01T00:00:00.000Z");
        assert_eq!(format_instant(y.end_micros()), "2021-01-01T00:00:00.000Z");
        let m = parse_date("2020-02").unwrap();
        assert_eq!(format_instant(m.end_micros()), "2020-03-01T00:00:00.000Z");
        let t = parse_date_time("2020-02-01T10:00:00+02:00").unwrap();
        assert_eq!(format_instant(t.start_micros()), "2020-02-01T08:00:00.000Z");
    }

    #[test]
    fn http_dates_round_trip() {
        let s = "Sun, 06 Nov 1994 08:49:37 GMT";
        let micros = parse_http_date(s).unwrap();
        assert_eq!(format_http_date(micros), s);
        assert_eq!(civil_from_days(days_from_civil(1600, 2, 29)), (1600, 2, 29));
    }
}
