//! FHIRPath Date, DateTime and Time values with partial precision: parsing (FHIR text and
//! FHIRPath literals), precision-aware comparison (an unknown answer where precisions differ),
//! calendar arithmetic with quantities, and their canonical text.

use std::cmp::Ordering;
use std::fmt;

use flint_fhir::datetime::{civil_from_days, days_from_civil, days_in_month};

/// How much of a temporal value is known. Seconds and milliseconds compare as one precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precision {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
}

/// A date, date-time or time. For a time only the clock fields are meaningful.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Temporal {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub millis: u16,
    pub precision: Precision,
    /// Offset from UTC in minutes, when given.
    pub offset: Option<i16>,
}

const EPOCH: Temporal = Temporal {
    year: 1970,
    month: 1,
    day: 1,
    hour: 0,
    minute: 0,
    second: 0,
    millis: 0,
    precision: Precision::Year,
    offset: None,
};

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn num(&mut self, n: usize) -> Option<u32> {
        let slice = self.s.get(self.i..self.i + n)?;
        if !slice.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(slice.iter().fold(0, |a, d| a * 10 + u32::from(d - b'0')))
    }
    fn eat(&mut self, c: u8) -> bool {
        let hit = self.s.get(self.i) == Some(&c);
        self.i += usize::from(hit);
        hit
    }
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }
}

fn parse_clock(c: &mut Cursor, t: &mut Temporal) -> Option<()> {
    let h = c.num(2)?;
    if h > 23 {
        return None;
    }
    t.hour = h as u8;
    t.precision = Precision::Hour;
    if !c.eat(b':') {
        return Some(());
    }
    let m = c.num(2)?;
    if m > 59 {
        return None;
    }
    t.minute = m as u8;
    t.precision = Precision::Minute;
    if !c.eat(b':') {
        return Some(());
    }
    let s = c.num(2)?;
    if s > 59 {
        return None;
    }
    t.second = s as u8;
    t.precision = Precision::Second;
    if c.eat(b'.') {
        let start = c.i;
        while c.s.get(c.i).is_some_and(u8::is_ascii_digit) {
            c.i += 1;
        }
        let digits = &c.s[start..c.i];
        if digits.is_empty() {
            return None;
        }
        let mut ms = 0u16;
        for k in 0..3 {
            ms = ms * 10 + digits.get(k).map_or(0, |d| u16::from(d - b'0'));
        }
        t.millis = ms;
        t.precision = Precision::Millisecond;
    }
    Some(())
}

impl Temporal {
    /// Parses a date or date-time: `2020`, `2020-01-02`, `2020-01-02T10`, `2020-01-02T10:00:00.000Z`;
    /// `2020T` and `2020-01T` as FHIRPath literals allow. Returns the value and whether a time
    /// part (`T`) was present.
    pub fn parse_date_time(s: &str) -> Option<(Temporal, bool)> {
        let mut c = Cursor {
            s: s.as_bytes(),
            i: 0,
        };
        let mut t = EPOCH;
        t.year = c.num(4)? as i32;
        if c.eat(b'-') {
            let m = c.num(2)?;
            if !(1..=12).contains(&m) {
                return None;
            }
            t.month = m as u8;
            t.precision = Precision::Month;
            if c.eat(b'-') {
                let d = c.num(2)?;
                if d < 1 || d > days_in_month(t.year, t.month) {
                    return None;
                }
                t.day = d as u8;
                t.precision = Precision::Day;
            }
        }
        let mut has_time = false;
        if c.eat(b'T') {
            has_time = true;
            if !c.done() && t.precision == Precision::Day {
                parse_clock(&mut c, &mut t)?;
                if c.eat(b'Z') {
                    t.offset = Some(0);
                } else if let Some(&sign @ (b'+' | b'-')) = c.s.get(c.i) {
                    c.i += 1;
                    let h = c.num(2)?;
                    if !c.eat(b':') {
                        return None;
                    }
                    let m = c.num(2)?;
                    if h > 14 || m > 59 {
                        return None;
                    }
                    let off = (h * 60 + m) as i16;
                    t.offset = Some(if sign == b'-' { -off } else { off });
                }
            }
        }
        c.done().then_some((t, has_time))
    }

    /// Parses a time `hh(:mm(:ss(.fff)?)?)?`.
    pub fn parse_time(s: &str) -> Option<Temporal> {
        let mut c = Cursor {
            s: s.as_bytes(),
            i: 0,
        };
        let mut t = EPOCH;
        parse_clock(&mut c, &mut t)?;
        c.done().then_some(t)
    }

    /// Parses a FHIR `date` (no time part).
    pub fn parse_date(s: &str) -> Option<Temporal> {
        match Self::parse_date_time(s)? {
            (t, false) => Some(t),
            _ => None,
        }
    }

    /// The value truncated to a coarser precision.
    pub fn truncated(&self, p: Precision) -> Temporal {
        let mut t = *self;
        if p < Precision::Millisecond {
            t.millis = 0;
        }
        if p < Precision::Second {
            t.second = 0;
        }
        if p < Precision::Minute {
            t.minute = 0;
        }
        if p < Precision::Hour {
            t.hour = 0;
            t.offset = None;
        }
        if p < Precision::Day {
            t.day = 1;
        }
        if p < Precision::Month {
            t.month = 1;
        }
        t.precision = p.min(self.precision);
        t
    }

    /// Milliseconds since the epoch of the fields as given (no offset applied).
    fn local_millis(&self) -> i64 {
        let days = days_from_civil(self.year, self.month, self.day);
        ((days * 24 + i64::from(self.hour)) * 60 + i64::from(self.minute)) * 60_000
            + i64::from(self.second) * 1000
            + i64::from(self.millis)
    }

    fn from_local_millis(ms: i64, like: &Temporal) -> Temporal {
        let days = ms.div_euclid(86_400_000);
        let rem = ms.rem_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        Temporal {
            year: y,
            month: m,
            day: d,
            hour: (rem / 3_600_000) as u8,
            minute: (rem / 60_000 % 60) as u8,
            second: (rem / 1000 % 60) as u8,
            millis: (rem % 1000) as u16,
            precision: like.precision,
            offset: like.offset,
        }
    }

    /// The same instant expressed in UTC (values without an offset are left as they are).
    fn to_utc(self) -> Temporal {
        match self.offset {
            Some(off) if off != 0 && self.precision >= Precision::Hour => {
                let mut t =
                    Self::from_local_millis(self.local_millis() - i64::from(off) * 60_000, &self);
                t.offset = Some(0);
                t
            }
            _ => self,
        }
    }

    /// Compares precision-aware: `None` when the answer depends on unknown parts
    /// (`@2012 < @2012-04`). Seconds and milliseconds count as one precision.
    pub fn compare(&self, other: &Temporal) -> Option<Ordering> {
        let (a, b) = if self.offset.is_some() && other.offset.is_some() {
            (self.to_utc(), other.to_utc())
        } else {
            (*self, *other)
        };
        // A time zone on one side only leaves the comparison of times undetermined.
        if a.offset.is_some() != b.offset.is_some()
            && a.precision >= Precision::Hour
            && b.precision >= Precision::Hour
        {
            return None;
        }
        let pa = if a.precision == Precision::Millisecond {
            Precision::Second
        } else {
            a.precision
        };
        let pb = if b.precision == Precision::Millisecond {
            Precision::Second
        } else {
            b.precision
        };
        let fields = [
            (Precision::Year, i64::from(a.year), i64::from(b.year)),
            (Precision::Month, i64::from(a.month), i64::from(b.month)),
            (Precision::Day, i64::from(a.day), i64::from(b.day)),
            (Precision::Hour, i64::from(a.hour), i64::from(b.hour)),
            (Precision::Minute, i64::from(a.minute), i64::from(b.minute)),
            (
                Precision::Second,
                i64::from(a.second) * 1000 + i64::from(a.millis),
                i64::from(b.second) * 1000 + i64::from(b.millis),
            ),
        ];
        for (p, x, y) in fields {
            let (ha, hb) = (pa >= p, pb >= p);
            if ha && hb {
                match x.cmp(&y) {
                    Ordering::Equal => continue,
                    o => return Some(o),
                }
            }
            if ha != hb {
                return None;
            }
            return Some(Ordering::Equal);
        }
        Some(Ordering::Equal)
    }

    /// Same as [`Temporal::compare`] for times (no date part).
    pub fn compare_time(&self, other: &Temporal) -> Option<Ordering> {
        let mut a = *self;
        let mut b = *other;
        (a.year, a.month, a.day) = (1970, 1, 1);
        (b.year, b.month, b.day) = (1970, 1, 1);
        a.precision = a.precision.max(Precision::Hour);
        b.precision = b.precision.max(Precision::Hour);
        a.compare(&b)
    }

    /// Adds an amount of a calendar unit (`year` ... `millisecond`). Amounts finer than the
    /// value's precision are first converted to its precision and truncated, as FHIRPath says.
    pub fn add(&self, amount: i64, unit: Precision, is_time: bool) -> Option<Temporal> {
        let (mut amount, mut unit) = (amount, unit);
        if unit > self.precision && !is_time {
            // Convert the amount into the value's own precision, dropping the remainder.
            let millis: i64 = match unit {
                Precision::Day => 86_400_000,
                Precision::Hour => 3_600_000,
                Precision::Minute => 60_000,
                Precision::Second => 1000,
                Precision::Millisecond => 1,
                _ => 0,
            };
            let total = amount.checked_mul(millis)?;
            (amount, unit) = match self.precision {
                Precision::Year => (total / (365 * 86_400_000), Precision::Year),
                Precision::Month => (total / (30 * 86_400_000), Precision::Month),
                Precision::Day => (total / 86_400_000, Precision::Day),
                Precision::Hour => (total / 3_600_000, Precision::Hour),
                Precision::Minute => (total / 60_000, Precision::Minute),
                Precision::Second | Precision::Millisecond => (total / 1000, Precision::Second),
            };
            if unit == Precision::Year && millis == 0 {
                return None;
            }
        }
        let mut t = *self;
        match unit {
            Precision::Year | Precision::Month => {
                if is_time {
                    return None;
                }
                let months = if unit == Precision::Year {
                    amount.checked_mul(12)?
                } else {
                    amount
                };
                let total = i64::from(t.year) * 12 + i64::from(t.month) - 1 + months;
                t.year = i32::try_from(total.div_euclid(12)).ok()?;
                t.month = (total.rem_euclid(12) + 1) as u8;
                t.day = t.day.min(days_in_month(t.year, t.month) as u8);
                Some(t)
            }
            _ => {
                let ms = match unit {
                    Precision::Day => amount.checked_mul(86_400_000)?,
                    Precision::Hour => amount.checked_mul(3_600_000)?,
                    Precision::Minute => amount.checked_mul(60_000)?,
                    Precision::Second => amount.checked_mul(1000)?,
                    _ => amount,
                };
                if is_time {
                    let day = 86_400_000;
                    let clock = (i64::from(t.hour) * 3_600_000
                        + i64::from(t.minute) * 60_000
                        + i64::from(t.second) * 1000
                        + i64::from(t.millis)
                        + ms)
                        .rem_euclid(day);
                    let mut n = Self::from_local_millis(clock, &t);
                    (n.year, n.month, n.day) = (t.year, t.month, t.day);
                    return Some(n);
                }
                let n = Self::from_local_millis(t.local_millis().checked_add(ms)?, &t);
                (1..=9999).contains(&n.year).then_some(n)
            }
        }
    }

    /// The earliest value this partial value could stand for, at millisecond precision
    /// (`lowBoundary`), or the latest (`highBoundary`); for dates to day precision.
    pub fn boundary(
        &self,
        high: bool,
        kind: TemporalKind,
        precision: Option<u8>,
    ) -> Option<Temporal> {
        let target = match (kind, precision) {
            (TemporalKind::Date, None) => Precision::Day,
            (_, None) => Precision::Millisecond,
            (TemporalKind::Time, Some(2)) => Precision::Hour,
            (TemporalKind::Time, Some(4)) => Precision::Minute,
            (TemporalKind::Time, Some(6)) => Precision::Second,
            (TemporalKind::Time, Some(9)) => Precision::Millisecond,
            (TemporalKind::Time, _) => return None,
            (_, Some(4)) => Precision::Year,
            (_, Some(6)) => Precision::Month,
            (_, Some(8)) => Precision::Day,
            (TemporalKind::Date, _) => return None,
            (_, Some(10)) => Precision::Hour,
            (_, Some(12)) => Precision::Minute,
            (_, Some(14)) => Precision::Second,
            (_, Some(17)) => Precision::Millisecond,
            _ => return None,
        };
        let mut t = *self;
        let p = self.precision;
        if p < Precision::Month {
            t.month = if high { 12 } else { 1 };
        }
        if p < Precision::Day {
            t.day = if high {
                days_in_month(t.year, t.month) as u8
            } else {
                1
            };
        }
        if p < Precision::Hour {
            t.hour = if high { 23 } else { 0 };
        }
        if p < Precision::Minute {
            t.minute = if high { 59 } else { 0 };
        }
        if p < Precision::Second {
            t.second = if high { 59 } else { 0 };
        }
        if p < Precision::Millisecond {
            t.millis = if high { 999 } else { 0 };
        }
        if kind == TemporalKind::DateTime && t.offset.is_none() && target >= Precision::Hour {
            // An unknown zone spans -12:00 .. +14:00: the earliest instant is at +14:00.
            t.offset = Some(if high { -720 } else { 840 });
        }
        t.precision = Precision::Millisecond;
        let mut out = t.truncated(target);
        out.offset = if target >= Precision::Hour {
            t.offset
        } else {
            None
        };
        Some(out)
    }

    /// The number of digits of precision (`precision()`): 4 for a year, 17 for milliseconds.
    pub fn precision_digits(&self, kind: TemporalKind) -> i64 {
        if kind == TemporalKind::Time {
            return match self.precision {
                Precision::Hour => 2,
                Precision::Minute => 4,
                Precision::Second => 6,
                _ => 9,
            };
        }
        match self.precision {
            Precision::Year => 4,
            Precision::Month => 6,
            Precision::Day => 8,
            Precision::Hour => 10,
            Precision::Minute => 12,
            Precision::Second => 14,
            Precision::Millisecond => 17,
        }
    }

    /// Canonical text of a date or date-time (no `@`).
    pub fn date_time_text(&self, kind: TemporalKind) -> String {
        let mut s = format!("{:04}", self.year);
        if self.precision >= Precision::Month {
            s += &format!("-{:02}", self.month);
        }
        if self.precision >= Precision::Day {
            s += &format!("-{:02}", self.day);
        }
        if kind == TemporalKind::DateTime && self.precision >= Precision::Hour {
            s.push('T');
            s += &self.clock_text();
            match self.offset {
                Some(0) => s.push('Z'),
                Some(off) => {
                    let sign = if off < 0 { '-' } else { '+' };
                    s += &format!("{sign}{:02}:{:02}", off.abs() / 60, off.abs() % 60);
                }
                None => {}
            }
        }
        s
    }

    /// Canonical text of the clock part (`10`, `10:30`, `10:30:00.000`).
    pub fn clock_text(&self) -> String {
        let mut s = format!("{:02}", self.hour);
        if self.precision >= Precision::Minute {
            s += &format!(":{:02}", self.minute);
        }
        if self.precision >= Precision::Second {
            s += &format!(":{:02}", self.second);
        }
        if self.precision >= Precision::Millisecond {
            s += &format!(".{:03}", self.millis);
        }
        s
    }
}

/// Which of the three temporal types a [`Temporal`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemporalKind {
    Date,
    DateTime,
    Time,
}

impl fmt::Display for Temporal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.date_time_text(TemporalKind::DateTime))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(s: &str) -> Temporal {
        Temporal::parse_date_time(s).unwrap().0
    }

    #[test]
    fn comparison_respects_precision() {
        assert_eq!(
            dt("2012-04-15").compare(&dt("2012-04-15")),
            Some(Ordering::Equal)
        );
        assert_eq!(dt("2012").compare(&dt("2012-04")), None);
        assert_eq!(dt("2011").compare(&dt("2012-04")), Some(Ordering::Less));
        assert_eq!(
            dt("2012-04-15T15:30:31").compare(&dt("2012-04-15T15:30:31.0")),
            Some(Ordering::Equal)
        );
        assert_eq!(
            dt("2017-11-05T01:30:00.0-04:00").compare(&dt("2017-11-05T01:15:00.0-05:00")),
            Some(Ordering::Less)
        );
    }

    #[test]
    fn calendar_arithmetic() {
        let t = dt("1973-12-25");
        assert_eq!(
            t.add(1, Precision::Month, false)
                .unwrap()
                .date_time_text(TemporalKind::Date),
            "1974-01-25"
        );
        assert_eq!(
            t.add(7, Precision::Day, false)
                .unwrap()
                .date_time_text(TemporalKind::Date),
            "1974-01-01"
        );
        let m = dt("2020-01-31");
        assert_eq!(
            m.add(1, Precision::Month, false)
                .unwrap()
                .date_time_text(TemporalKind::Date),
            "2020-02-29"
        );
        assert!(Temporal::parse_date_time("2020-13").is_none());
    }
}
