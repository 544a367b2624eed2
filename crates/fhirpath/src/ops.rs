//! Item-level operators: equality (`=`), equivalence (`~`), ordering, and arithmetic over
//! System values, including Quantity unit conversion and date/time calendar arithmetic.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

use crate::ast::BinOp;
use crate::budget::{Steps, MAX_JSON_DEPTH};
use crate::decimal::Decimal;
use crate::temporal::{Precision, Temporal};
use crate::ucum;
use crate::value::{Item, Quantity};

/// A calendar or UCUM time unit normalised: calendar `year`/`month` stay apart from UCUM
/// `a`/`mo` (they are not equal, only equivalent); the definite durations share UCUM codes.
fn normalize_unit(u: &str) -> &str {
    match u {
        "year" | "years" => "year",
        "month" | "months" => "month",
        "week" | "weeks" => "wk",
        "day" | "days" => "d",
        "hour" | "hours" => "h",
        "minute" | "minutes" => "min",
        "second" | "seconds" => "s",
        "millisecond" | "milliseconds" => "ms",
        other => other,
    }
}

/// Converts `b` into `a`'s unit; `None` when not comparable. `equivalent` lets calendar years
/// and months match UCUM `a` and `mo`.
fn align_quantities(a: &Quantity, b: &Quantity, equivalent: bool) -> Option<(Decimal, Decimal)> {
    let (ua, ub) = (normalize_unit(&a.unit), normalize_unit(&b.unit));
    if ua == ub {
        return Some((a.value, b.value));
    }
    let calendar = |u: &str| match u {
        "year" => Some(12),
        "month" => Some(1),
        _ => None,
    };
    if let (Some(fa), Some(fb)) = (calendar(ua), calendar(ub)) {
        let fa = Decimal::from_i64(fa);
        let fb = Decimal::from_i64(fb);
        return Some((a.value.checked_mul(&fa)?, b.value.checked_mul(&fb)?));
    }
    let to_ucum = |u: &'static str| -> Option<&'static str> {
        match u {
            "year" if equivalent => Some("a"),
            "month" if equivalent => Some("mo"),
            "year" | "month" => None,
            _ => Some(u),
        }
    };
    let ua = if ua == "year" || ua == "month" {
        to_ucum(if ua == "year" { "year" } else { "month" })?
    } else {
        ua
    };
    let ub = if ub == "year" || ub == "month" {
        to_ucum(if ub == "year" { "year" } else { "month" })?
    } else {
        ub
    };
    let converted = ucum::convert(b.value.to_f64(), ub, ua)?;
    Some((a.value, Decimal::from_f64(converted)?))
}

fn close(a: &Decimal, b: &Decimal) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (x, y) = (a.to_f64(), b.to_f64());
    if (x - y).abs() <= 1e-8 * x.abs().max(y.abs()) {
        Ordering::Equal
    } else {
        x.total_cmp(&y)
    }
}

/// `=` on two System values: `None` when the answer is unknown (different date precisions,
/// incomparable quantities).
pub(crate) fn equal(a: &Item, b: &Item, steps: &Steps) -> Option<bool> {
    use Item::*;
    match (a, b) {
        (Bool(x), Bool(y)) => Some(x == y),
        (Int(x) | Long(x), Int(y) | Long(y)) => Some(x == y),
        (Int(x) | Long(x), Dec(y)) | (Dec(y), Int(x) | Long(x)) => {
            Some(Decimal::from_i64(*x) == *y)
        }
        (Dec(x), Dec(y)) => Some(x == y),
        (Str(x), Str(y)) => Some(x == y),
        (Date(x) | DateTime(x), Date(y) | DateTime(y)) | (Time(x), Time(y)) => {
            let cmp = if matches!(a, Time(_)) {
                x.compare_time(y)
            } else {
                x.compare(y)
            };
            cmp.map(|o| o == Ordering::Equal)
        }
        (Quantity(x), Quantity(y)) => {
            let (p, q) = align_quantities(x, y, false)?;
            Some(close(&p, &q) == Ordering::Equal)
        }
        (Elem(x), Elem(y)) => Some(match (x.value, y.value) {
            (Some(p), Some(q)) => json_equal(p, q, steps, 0),
            _ => false,
        }),
        (TypeInfo(n1, t1), TypeInfo(n2, t2)) => Some(n1 == n2 && t1 == t2),
        _ => Some(false),
    }
}

/// Whether a comparison may go on: each node is a step of the evaluation's budget. Once the
/// budget is spent the answer is "different", which the evaluation never uses as it fails at
/// its next step.
fn step(steps: &Steps, depth: usize) -> bool {
    if depth > MAX_JSON_DEPTH {
        steps.exhaust();
    }
    steps.take(1)
}

/// Structural equality of JSON elements, numbers by value.
fn json_equal(a: &Value, b: &Value, steps: &Steps, depth: usize) -> bool {
    if !step(steps, depth) {
        return false;
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (Decimal::parse(x.as_str()), Decimal::parse(y.as_str())) {
                (Some(p), Some(q)) => p == q,
                _ => x == y,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(p, q)| json_equal(p, q, steps, depth + 1))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w, steps, depth + 1)))
        }
        // Scalars (or a scalar against a container): no recursion.
        _ => a == b,
    }
}

fn normalize_space(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// `~` on two System values.
pub(crate) fn equivalent(a: &Item, b: &Item, steps: &Steps) -> bool {
    use Item::*;
    match (a, b) {
        (Str(x), Str(y)) => normalize_space(x) == normalize_space(y),
        (Dec(_) | Int(_) | Long(_), Dec(_) | Int(_) | Long(_)) => {
            let x = to_decimal(a);
            let y = to_decimal(b);
            match (x, y) {
                (Some(x), Some(y)) => {
                    let s = x.scale().min(y.scale());
                    x.round(s) == y.round(s)
                }
                _ => false,
            }
        }
        (Date(x) | DateTime(x), Date(y) | DateTime(y)) | (Time(x), Time(y)) => {
            let same_precision = {
                let p = |t: &Temporal| {
                    if t.precision == Precision::Millisecond {
                        Precision::Second
                    } else {
                        t.precision
                    }
                };
                p(x) == p(y)
            };
            same_precision && equal(a, b, steps) == Some(true)
        }
        (Quantity(x), Quantity(y)) => match align_quantities(x, y, true) {
            Some((p, q)) => {
                let s = p.scale().min(q.scale());
                p.round(s) == q.round(s) || close(&p, &q) == Ordering::Equal
            }
            None => false,
        },
        (Elem(x), Elem(y)) => match (x.value, y.value) {
            (Some(p), Some(q)) => json_equivalent(p, q, steps, 0),
            _ => false,
        },
        _ => equal(a, b, steps) == Some(true),
    }
}

fn json_equivalent(a: &Value, b: &Value, steps: &Steps, depth: usize) -> bool {
    if !step(steps, depth) {
        return false;
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => normalize_space(x) == normalize_space(y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(p, q)| json_equivalent(p, q, steps, depth + 1))
        }
        (Value::Object(x), Value::Object(y)) => {
            let keys = |m: &serde_json::Map<String, Value>| m.keys().filter(|k| *k != "id").count();
            keys(x) == keys(y)
                && x.iter().filter(|(k, _)| *k != "id").all(|(k, v)| {
                    y.get(k)
                        .is_some_and(|w| json_equivalent(v, w, steps, depth + 1))
                })
        }
        _ => json_equal(a, b, steps, depth),
    }
}

pub(crate) fn to_decimal(i: &Item) -> Option<Decimal> {
    match i {
        Item::Int(x) | Item::Long(x) => Some(Decimal::from_i64(*x)),
        Item::Dec(d) => Some(*d),
        _ => None,
    }
}

/// Ordering of two System values. `Ok(None)`: unknown (date precision); `Err`: the types
/// cannot be compared.
pub fn compare(a: &Item, b: &Item) -> Result<Option<Ordering>, String> {
    use Item::*;
    Ok(match (a, b) {
        (Int(x) | Long(x), Int(y) | Long(y)) => Some(x.cmp(y)),
        (Int(_) | Long(_) | Dec(_), Int(_) | Long(_) | Dec(_)) => {
            match (to_decimal(a), to_decimal(b)) {
                (Some(x), Some(y)) => Some(x.cmp(&y)),
                _ => None,
            }
        }
        (Str(x), Str(y)) => Some(x.as_ref().cmp(y.as_ref())),
        (Date(x) | DateTime(x), Date(y) | DateTime(y)) => x.compare(y),
        (Time(x), Time(y)) => x.compare_time(y),
        (Quantity(x), Quantity(y)) => match align_quantities(x, y, false) {
            Some((p, q)) => Some(close(&p, &q)),
            None => {
                if ucum::parse(&x.unit).is_some() && ucum::parse(&y.unit).is_some() {
                    return Err(format!(
                        "cannot compare quantities in '{}' and '{}'",
                        x.unit, y.unit
                    ));
                }
                None
            }
        },
        _ => {
            return Err(format!(
                "cannot compare {} with {}",
                a.type_name().1,
                b.type_name().1
            ));
        }
    })
}

/// The calendar step a duration unit stands for in date/time arithmetic; UCUM `a` and `mo`
/// are not calendar durations and are refused.
fn duration_unit(u: &str) -> Option<(Precision, i64)> {
    Some(match u {
        "year" | "years" => (Precision::Year, 1),
        "month" | "months" => (Precision::Month, 1),
        "week" | "weeks" | "wk" => (Precision::Day, 7),
        "day" | "days" | "d" => (Precision::Day, 1),
        "hour" | "hours" | "h" => (Precision::Hour, 1),
        "minute" | "minutes" | "min" => (Precision::Minute, 1),
        "second" | "seconds" | "s" => (Precision::Second, 1),
        "millisecond" | "milliseconds" | "ms" => (Precision::Millisecond, 1),
        _ => return None,
    })
}

fn add_duration(
    t: &Temporal,
    q: &Quantity,
    negate: bool,
    is_time: bool,
) -> Result<Option<Temporal>, String> {
    let (unit, factor) =
        duration_unit(&q.unit).ok_or_else(|| format!("'{}' is not a calendar duration", q.unit))?;
    let (unit, value) = (unit, q.value);
    let mut amount = i64::try_from(value.truncate().ok_or("overflow")?).map_err(|_| "overflow")?;
    amount = amount.checked_mul(factor).ok_or("overflow")?;
    if negate {
        amount = -amount;
    }
    Ok(t.add(amount, unit, is_time))
}

fn int_result(v: Option<i64>) -> Option<Item<'static>> {
    v.map(Item::Int)
}

/// Applies an arithmetic operator. `Ok(None)`: an empty result (overflow, division by zero);
/// `Err`: the operand types do not support the operator.
pub fn arithmetic<'a>(op: BinOp, a: &Item<'a>, b: &Item<'a>) -> Result<Option<Item<'a>>, String> {
    use Item::*;
    let bad = || {
        Err(format!(
            "cannot apply {op:?} to {} and {}",
            a.type_name().1,
            b.type_name().1
        ))
    };
    Ok(match (op, a, b) {
        (BinOp::Add, Int(x), Int(y)) => int_result(x.checked_add(*y)),
        (BinOp::Sub, Int(x), Int(y)) => int_result(x.checked_sub(*y)),
        (BinOp::Mul, Int(x), Int(y)) => int_result(x.checked_mul(*y)),
        (BinOp::IntDiv, Int(x), Int(y)) => int_result(x.checked_div(*y)),
        (BinOp::Mod, Int(x), Int(y)) => int_result(x.checked_rem(*y)),
        (
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::IntDiv | BinOp::Mod,
            Long(_) | Int(_),
            Long(_) | Int(_),
        ) => {
            let (Int(x) | Long(x), Int(y) | Long(y)) = (a, b) else {
                return bad();
            };
            let r = match op {
                BinOp::Add => x.checked_add(*y),
                BinOp::Sub => x.checked_sub(*y),
                BinOp::Mul => x.checked_mul(*y),
                BinOp::IntDiv => x.checked_div(*y),
                _ => x.checked_rem(*y),
            };
            r.map(Long)
        }
        (_, Int(_) | Long(_) | Dec(_), Int(_) | Long(_) | Dec(_)) => {
            let (Some(x), Some(y)) = (to_decimal(a), to_decimal(b)) else {
                return bad();
            };
            let r = match op {
                BinOp::Add => x.checked_add(&y),
                BinOp::Sub => x.checked_sub(&y),
                BinOp::Mul => x.checked_mul(&y),
                BinOp::Div => x.checked_div(&y),
                BinOp::IntDiv => {
                    return Ok(x.div_trunc(&y).and_then(|d| d.to_i64_exact()).map(Int));
                }
                BinOp::Mod => x.rem(&y),
                _ => return bad(),
            };
            r.map(Dec)
        }
        (BinOp::Add, Str(x), Str(y)) => Some(Str(Cow::Owned(format!("{x}{y}")))),
        (BinOp::Add | BinOp::Sub, Date(t), Quantity(q)) => {
            add_duration(t, q, op == BinOp::Sub, false)?.map(Date)
        }
        (BinOp::Add | BinOp::Sub, DateTime(t), Quantity(q)) => {
            add_duration(t, q, op == BinOp::Sub, false)?.map(DateTime)
        }
        (BinOp::Add | BinOp::Sub, Time(t), Quantity(q)) => {
            add_duration(t, q, op == BinOp::Sub, true)?.map(Time)
        }
        (BinOp::Add | BinOp::Sub, Quantity(x), Quantity(y)) => {
            let Some((p, q)) = align_quantities(x, y, false) else {
                return Err(format!(
                    "cannot add quantities in '{}' and '{}'",
                    x.unit, y.unit
                ));
            };
            let v = if op == BinOp::Add {
                p.checked_add(&q)
            } else {
                p.checked_sub(&q)
            };
            v.map(|value| {
                Quantity(Box::new(crate::value::Quantity {
                    value,
                    unit: x.unit.clone(),
                }))
            })
        }
        (BinOp::Mul, Quantity(x), Int(_) | Dec(_)) | (BinOp::Mul, Int(_) | Dec(_), Quantity(x)) => {
            let n =
                to_decimal(if matches!(a, Quantity(_)) { b } else { a }).ok_or("not a number")?;
            x.value.checked_mul(&n).map(|value| {
                Quantity(Box::new(crate::value::Quantity {
                    value,
                    unit: x.unit.clone(),
                }))
            })
        }
        (BinOp::Div, Quantity(x), Int(_) | Dec(_)) => {
            let n = to_decimal(b).ok_or("not a number")?;
            x.value.checked_div(&n).map(|value| {
                Quantity(Box::new(crate::value::Quantity {
                    value,
                    unit: x.unit.clone(),
                }))
            })
        }
        (BinOp::Mul | BinOp::Div, Quantity(x), Quantity(y)) => {
            let (ux, uy) = (normalize_unit(&x.unit), normalize_unit(&y.unit));
            let value = if op == BinOp::Mul {
                x.value.checked_mul(&y.value)
            } else {
                x.value.checked_div(&y.value)
            };
            let unit = match (op, ux == uy) {
                (BinOp::Div, true) => "1".to_string(),
                (BinOp::Mul, _) if ux == "1" => uy.to_string(),
                (BinOp::Mul, _) if uy == "1" => ux.to_string(),
                (BinOp::Mul, _) => format!("{ux}.{uy}"),
                _ => format!("{ux}/{uy}"),
            };
            value.map(|value| {
                Quantity(Box::new(crate::value::Quantity {
                    value,
                    unit: Cow::Owned(unit),
                }))
            })
        }
        _ => return bad(),
    })
}
