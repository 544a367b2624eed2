//! An exact decimal (a 128-bit mantissa and a decimal scale) for FHIRPath `Decimal`: `0.1 + 0.2`
//! is `0.3`, `1.0` keeps its precision, and JSON numbers are read from their text as written.

use std::cmp::Ordering;
use std::fmt;

/// Digits kept after the point when a quotient does not terminate (`1 / 3`).
const DIVISION_SCALE: u32 = 8;
/// The largest scale kept; beyond it a product is rounded.
const MAX_SCALE: u32 = 28;

#[derive(Clone, Copy, Debug)]
pub struct Decimal {
    mant: i128,
    scale: u32,
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

impl Decimal {
    pub const ZERO: Decimal = Decimal { mant: 0, scale: 0 };

    pub fn from_i64(v: i64) -> Decimal {
        Decimal {
            mant: i128::from(v),
            scale: 0,
        }
    }

    /// Parses `-12.340`, `1e3`, `1.5E-2` (JSON's number forms).
    pub fn parse(s: &str) -> Option<Decimal> {
        let b = s.as_bytes();
        let mut i = 0;
        let neg = match b.first() {
            Some(b'-') => {
                i = 1;
                true
            }
            Some(b'+') => {
                i = 1;
                false
            }
            _ => false,
        };
        // One pass over the digits; a u64 holds 19 of them, longer mantissas go on in i128.
        let (mut small, mut big): (u64, Option<i128>) = (0, None);
        let (mut int_digits, mut frac_digits, mut seen_point) = (0usize, 0u32, false);
        while let Some(&c) = b.get(i) {
            match c {
                b'0'..=b'9' => {
                    let d = u64::from(c - b'0');
                    match big {
                        Some(v) => big = Some(v.checked_mul(10)?.checked_add(i128::from(d))?),
                        None if small < 1_000_000_000_000_000_000 => small = small * 10 + d,
                        None => {
                            big = Some(
                                i128::from(small)
                                    .checked_mul(10)?
                                    .checked_add(i128::from(d))?,
                            )
                        }
                    }
                    if seen_point {
                        frac_digits += 1;
                    } else {
                        int_digits += 1;
                    }
                }
                b'.' if !seen_point => seen_point = true,
                b'e' | b'E' => break,
                _ => return None,
            }
            i += 1;
        }
        if int_digits == 0 || (seen_point && frac_digits == 0) {
            return None;
        }
        let exp: i32 = match b.get(i) {
            Some(_) => s.get(i + 1..)?.parse().ok()?,
            None => 0,
        };
        let mut mant = big.unwrap_or(i128::from(small));
        let mut scale = i64::from(frac_digits) - i64::from(exp);
        if scale < 0 {
            mant = mant.checked_mul(pow10(u32::try_from(-scale).ok()?)?)?;
            scale = 0;
        }
        let mut d = Decimal {
            mant: if neg { -mant } else { mant },
            scale: u32::try_from(scale).ok()?,
        };
        while d.scale > MAX_SCALE {
            d = d.round(MAX_SCALE);
        }
        Some(d)
    }

    /// The number of digits after the decimal point, as written.
    pub fn scale(&self) -> u32 {
        self.scale
    }

    pub fn is_zero(&self) -> bool {
        self.mant == 0
    }

    pub fn is_negative(&self) -> bool {
        self.mant < 0
    }

    fn rescale(&self, scale: u32) -> Option<i128> {
        if scale >= self.scale {
            self.mant.checked_mul(pow10(scale - self.scale)?)
        } else {
            None
        }
    }

    fn aligned(a: &Decimal, b: &Decimal) -> Option<(i128, i128, u32)> {
        let s = a.scale.max(b.scale);
        Some((a.rescale(s)?, b.rescale(s)?, s))
    }

    pub fn checked_add(&self, o: &Decimal) -> Option<Decimal> {
        let (a, b, s) = Self::aligned(self, o)?;
        Some(Decimal {
            mant: a.checked_add(b)?,
            scale: s,
        })
    }

    pub fn checked_sub(&self, o: &Decimal) -> Option<Decimal> {
        let (a, b, s) = Self::aligned(self, o)?;
        Some(Decimal {
            mant: a.checked_sub(b)?,
            scale: s,
        })
    }

    pub fn checked_mul(&self, o: &Decimal) -> Option<Decimal> {
        let mut d = Decimal {
            mant: self.mant.checked_mul(o.mant)?,
            scale: self.scale + o.scale,
        };
        if d.scale > MAX_SCALE {
            d = d.round(MAX_SCALE);
        }
        Some(d)
    }

    /// Division rounded to [`DIVISION_SCALE`] digits, trailing zeros removed; `None` when
    /// dividing by zero or on overflow.
    pub fn checked_div(&self, o: &Decimal) -> Option<Decimal> {
        if o.mant == 0 {
            return None;
        }
        let target = DIVISION_SCALE.max(self.scale);
        // (a / 10^sa) / (b / 10^sb) = (a * 10^(target + sb - sa + 1)) / b / 10^(target + 1)
        let shift = (target + 1 + o.scale).checked_sub(self.scale)?;
        let num = self.mant.checked_mul(pow10(shift)?)?;
        let q = num / o.mant;
        // One guard digit, rounded half away from zero.
        let rounded = if q >= 0 { (q + 5) / 10 } else { (q - 5) / 10 };
        Some(
            Decimal {
                mant: rounded,
                scale: target,
            }
            .trimmed(),
        )
    }

    /// Truncating integer division (`div`).
    pub fn div_trunc(&self, o: &Decimal) -> Option<Decimal> {
        let (a, b, _) = Self::aligned(self, o)?;
        if b == 0 {
            return None;
        }
        Some(Decimal {
            mant: a / b,
            scale: 0,
        })
    }

    /// Remainder of truncating division (`mod`).
    pub fn rem(&self, o: &Decimal) -> Option<Decimal> {
        let (a, b, s) = Self::aligned(self, o)?;
        if b == 0 {
            return None;
        }
        Some(Decimal {
            mant: a % b,
            scale: s,
        })
    }

    pub fn neg(&self) -> Decimal {
        Decimal {
            mant: -self.mant,
            scale: self.scale,
        }
    }

    pub fn abs(&self) -> Decimal {
        Decimal {
            mant: self.mant.abs(),
            scale: self.scale,
        }
    }

    /// Removes trailing zeros after the point.
    pub fn trimmed(mut self) -> Decimal {
        while self.scale > 0 && self.mant % 10 == 0 {
            self.mant /= 10;
            self.scale -= 1;
        }
        self
    }

    /// Rounds half away from zero to `digits` after the point.
    pub fn round(&self, digits: u32) -> Decimal {
        if digits >= self.scale {
            return *self;
        }
        let Some(f) = pow10(self.scale - digits) else {
            return Decimal::ZERO;
        };
        let q = self.mant / f;
        let r = self.mant % f;
        let q = if r.abs() * 2 >= f { q + r.signum() } else { q };
        Decimal {
            mant: q,
            scale: digits,
        }
    }

    /// Largest integer not above the value.
    pub fn floor(&self) -> Option<i128> {
        let f = pow10(self.scale)?;
        Some(self.mant.div_euclid(f))
    }

    /// Smallest integer not below the value.
    pub fn ceiling(&self) -> Option<i128> {
        let f = pow10(self.scale)?;
        Some(-(-self.mant).div_euclid(f))
    }

    /// The integer part (towards zero).
    pub fn truncate(&self) -> Option<i128> {
        Some(self.mant / pow10(self.scale)?)
    }

    /// The value when it has no fractional part and fits an `i64`.
    pub fn to_i64_exact(&self) -> Option<i64> {
        let t = self.trimmed();
        if t.scale != 0 {
            return None;
        }
        i64::try_from(t.mant).ok()
    }

    pub fn to_f64(&self) -> f64 {
        // Exact for mantissas up to 2^53; beyond that the nearest float is close enough for
        // the conversions and tolerance comparisons it serves.
        match i32::try_from(self.scale) {
            Ok(s) if self.mant.unsigned_abs() < (1u128 << 53) => self.mant as f64 / 10f64.powi(s),
            _ => self.to_string().parse().unwrap_or(f64::NAN),
        }
    }

    /// Converts a float result (of `exp`, `ln`, `sqrt`...) keeping 8 decimal digits, as the
    /// reference implementations print them.
    pub fn from_f64(v: f64) -> Option<Decimal> {
        if !v.is_finite() {
            return None;
        }
        Decimal::parse(&format!("{v:.8}")).map(Decimal::trimmed)
    }

    /// The smallest step at this value's precision (`0.01` for `1.23`).
    pub fn ulp(&self) -> Decimal {
        Decimal {
            mant: 1,
            scale: self.scale,
        }
    }

    /// The value at `scale` digits, rounded down (towards negative infinity) or up.
    pub fn at_scale(&self, scale: u32, up: bool) -> Option<Decimal> {
        if scale >= self.scale {
            return Some(Decimal {
                mant: self.rescale(scale)?,
                scale,
            });
        }
        let f = pow10(self.scale - scale)?;
        let q = if up {
            -(-self.mant).div_euclid(f)
        } else {
            self.mant.div_euclid(f)
        };
        Some(Decimal { mant: q, scale })
    }

    pub fn with_scale(&self, scale: u32) -> Option<Decimal> {
        if scale >= self.scale {
            Some(Decimal {
                mant: self.rescale(scale)?,
                scale,
            })
        } else {
            Some(self.round(scale))
        }
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        match Self::aligned(self, other) {
            Some((a, b, _)) => a.cmp(&b),
            None => self.to_f64().total_cmp(&other.to_f64()),
        }
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mant.unsigned_abs().to_string();
        let sign = if self.mant < 0 { "-" } else { "" };
        let scale = self.scale as usize;
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded = if digits.len() <= scale {
            format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
        } else {
            digits
        };
        let (int, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn exact_arithmetic_and_text() {
        let cases = [
            (d("0.1").checked_add(&d("0.2")).unwrap(), "0.3"),
            (d("1.0"), "1.0"),
            (d("1e3"), "1000"),
            (d("1.5E-2"), "0.015"),
            (d("1.2").checked_div(&d("1.8")).unwrap(), "0.66666667"),
            (d("1").checked_div(&d("2")).unwrap(), "0.5"),
            (d("-0.05"), "-0.05"),
            (d("3.14159").round(3), "3.142"),
            (d("2.5").checked_mul(&d("2.5")).unwrap(), "6.25"),
            (d("5.5").rem(&d("0.7")).unwrap(), "0.6"),
        ];
        for (got, want) in cases {
            assert_eq!(got.to_string(), want);
        }
        assert_eq!(d("1.10"), d("1.1"));
        assert!(d("-1.1") < d("1"));
        assert_eq!(d("-1.1").ceiling(), Some(-1));
        assert_eq!(d("-2.1").floor(), Some(-3));
        assert!(Decimal::parse("1.").is_none());
        assert!(Decimal::parse("abc").is_none());
        for bad in [
            "",
            "-",
            ".5",
            "1e",
            "1e400",
            "1.2.3",
            "1,5",
            "12345678901234567890123456789012345678901",
        ] {
            assert!(Decimal::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(
            d("12345678901234567890.5").to_string(),
            "12345678901234567890.5"
        );
        assert_eq!(d("-0.0").to_string(), "0.0");
        assert_eq!(d("+2.50E+1").to_string(), "25.0");
    }
}
