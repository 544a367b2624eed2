//! The lexical forms of the primitives whose JSON form is not a string: `boolean`, `integer`,
//! `positiveInt`, `unsignedInt` and `decimal`, checked against the R4 regular expressions
//! and turned into JSON values without passing through floating point: the digits stay as
//! written (`1.50` stays `1.50`); only an exponent is spelled the way `serde_json` spells it
//! when it parses the same number from JSON (`1E5` → `1e+5`).

use std::str::FromStr;

use serde_json::{Number, Value};

use crate::escape::shorten;
use crate::schema::Scalar;

/// The JSON value of an XML `value` attribute of a primitive of this kind.
pub(crate) fn json_value(scalar: Scalar, text: &str) -> Result<Value, String> {
    match scalar {
        Scalar::String | Scalar::Xhtml => Ok(Value::String(text.to_string())),
        Scalar::Boolean => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(invalid(scalar, text)),
        },
        Scalar::Integer | Scalar::PositiveInt | Scalar::UnsignedInt | Scalar::Decimal => {
            let canonical = check_number(scalar, text)?;
            Number::from_str(canonical)
                .map(Value::Number)
                .map_err(|_| invalid(scalar, text))
        }
    }
}

/// Checks the text of a number against its type and returns the form JSON takes (without the
/// `+` a `positiveInt` may have in XML).
pub(crate) fn check_number(scalar: Scalar, text: &str) -> Result<&str, String> {
    let ok = match scalar {
        Scalar::Integer => is_whole(text.strip_prefix('-').unwrap_or(text)) && fits_i32(text),
        Scalar::UnsignedInt => is_whole(text) && fits_i32(text),
        Scalar::PositiveInt => {
            let digits = text.strip_prefix('+').unwrap_or(text);
            return if is_whole(digits) && digits != "0" && fits_i32(digits) {
                Ok(digits)
            } else {
                Err(invalid(scalar, text))
            };
        }
        Scalar::Decimal => is_decimal(text),
        Scalar::Boolean | Scalar::String | Scalar::Xhtml => true,
    };
    if ok {
        Ok(text)
    } else {
        Err(invalid(scalar, text))
    }
}

fn invalid(scalar: Scalar, text: &str) -> String {
    format!("'{}' is not a valid {}", shorten(text), scalar.name())
}

/// `0|[1-9][0-9]*`
fn is_whole(digits: &str) -> bool {
    match digits.as_bytes() {
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

fn fits_i32(text: &str) -> bool {
    text.parse::<i32>().is_ok()
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
fn is_decimal(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (mantissa, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    is_whole(whole)
        && fraction.is_none_or(digits)
        && exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_exact_text() {
        let cases = [
            (Scalar::Decimal, "1.0", "1.0"),
            (Scalar::Decimal, "-0.00100", "-0.00100"),
            // Exponents take the form serde_json gives them when it parses JSON, so a
            // decimal read from XML is what the same decimal sent as JSON is.
            (Scalar::Decimal, "6.02e23", "6.02e+23"),
            (Scalar::Decimal, "1E-7", "1e-7"),
            (
                Scalar::Decimal,
                "3.14159265358979323846264338327950288419716939937510",
                "3.14159265358979323846264338327950288419716939937510",
            ),
            (Scalar::Integer, "-2147483648", "-2147483648"),
            (Scalar::Integer, "0", "0"),
            (Scalar::UnsignedInt, "2147483647", "2147483647"),
            (Scalar::PositiveInt, "+7", "7"),
            (Scalar::PositiveInt, "12", "12"),
        ];
        for (scalar, text, json) in cases {
            let value = json_value(scalar, text).unwrap();
            assert_eq!(value.to_string(), json, "{scalar:?} {text}");
            assert!(value.is_number());
        }
    }

    #[test]
    fn invalid_literals_are_refused() {
        let cases = [
            (Scalar::Boolean, "True"),
            (Scalar::Boolean, "1"),
            (Scalar::Boolean, " true"),
            (Scalar::Integer, "1.0"),
            (Scalar::Integer, "007"),
            (Scalar::Integer, "+1"),
            (Scalar::Integer, "2147483648"),
            (Scalar::Integer, ""),
            (Scalar::UnsignedInt, "-1"),
            (Scalar::PositiveInt, "0"),
            (Scalar::PositiveInt, "+0"),
            (Scalar::Decimal, "1."),
            (Scalar::Decimal, ".5"),
            (Scalar::Decimal, "01.5"),
            (Scalar::Decimal, "1e"),
            (Scalar::Decimal, "NaN"),
            (Scalar::Decimal, "Infinity"),
            (Scalar::Decimal, " 1"),
            (Scalar::Decimal, "1,5"),
        ];
        for (scalar, text) in cases {
            assert!(json_value(scalar, text).is_err(), "{scalar:?} {text:?}");
        }
        assert_eq!(
            json_value(Scalar::Integer, "x").unwrap_err(),
            "'x' is not a valid integer"
        );
    }

    #[test]
    fn other_primitives_are_strings() {
        assert_eq!(
            json_value(Scalar::String, " 1 ").unwrap(),
            Value::String(" 1 ".into())
        );
    }
}
