//! JSON comparisons as profiles define them: `fixed[x]` is equality, `pattern[x]` is
//! containment (every element of the pattern is in the value, array items matching some item),
//! decimals compare by value. Both are bounded in depth.

use serde_json::Value;

/// Deepest JSON compared; deeper values do not match.
const MAX_COMPARE_DEPTH: usize = 64;

/// Whether `value` equals `fixed` (numbers by their decimal value).
pub(crate) fn equal(value: &Value, fixed: &Value) -> bool {
    equal_at(value, fixed, 0)
}

fn equal_at(a: &Value, b: &Value, depth: usize) -> bool {
    if depth > MAX_COMPARE_DEPTH {
        return false;
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_equal(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal_at(a, b, depth + 1))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| equal_at(v, w, depth + 1)))
        }
        _ => a == b,
    }
}

fn numbers_equal(x: &serde_json::Number, y: &serde_json::Number) -> bool {
    if x.as_str() == y.as_str() {
        return true;
    }
    match (x.as_str().parse::<f64>(), y.as_str().parse::<f64>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Whether `value` contains `pattern`.
pub(crate) fn contains(value: &Value, pattern: &Value) -> bool {
    contains_at(value, pattern, 0)
}

fn contains_at(value: &Value, pattern: &Value, depth: usize) -> bool {
    if depth > MAX_COMPARE_DEPTH {
        return false;
    }
    match (value, pattern) {
        (Value::Object(v), Value::Object(p)) => p
            .iter()
            .all(|(k, pv)| v.get(k).is_some_and(|vv| contains_at(vv, pv, depth + 1))),
        (Value::Array(v), Value::Array(p)) => p
            .iter()
            .all(|pi| v.iter().any(|vi| contains_at(vi, pi, depth + 1))),
        // A single value against a one-item pattern array (and the reverse) as FHIR's
        // cardinality-blind comparison does.
        (v, Value::Array(p)) => p.iter().all(|pi| contains_at(v, pi, depth + 1)),
        (Value::Array(v), p) => v.iter().any(|vi| contains_at(vi, p, depth + 1)),
        (Value::Number(x), Value::Number(y)) => numbers_equal(x, y),
        _ => value == pattern,
    }
}

/// The `fixed[x]` or `pattern[x]` of an ElementDefinition: `(value, is_pattern)`.
pub(crate) fn fixed_or_pattern(element: &Value) -> Option<(&Value, bool)> {
    element.as_object()?.iter().find_map(|(k, v)| {
        if k.starts_with("fixed") && k.len() > 5 {
            Some((v, false))
        } else if k.starts_with("pattern") && k.len() > 7 {
            Some((v, true))
        } else {
            None
        }
    })
}

/// `Quantity` is the type of the choice key `valueQuantity` of element `value`.
pub(crate) fn choice_type<'k>(key: &'k str, base: &str) -> Option<&'k str> {
    let suffix = key.strip_prefix(base)?;
    suffix
        .chars()
        .next()
        .filter(char::is_ascii_uppercase)
        .map(|_| suffix)
}

/// Whether type code `ty` (`dateTime`) is written `suffix` (`DateTime`) in a choice key.
pub(crate) fn type_matches_suffix(ty: &str, suffix: &str) -> bool {
    let mut t = ty.chars();
    let mut s = suffix.chars();
    match (t.next(), s.next()) {
        (Some(a), Some(b)) => a.to_ascii_uppercase() == b && t.as_str() == s.as_str(),
        _ => false,
    }
}

/// The values at a simple dotted path (`code.coding.system`) below `value`, arrays flattened;
/// a name not present also matches a choice key (`value` finds `valueQuantity`). `None` when
/// the path uses anything but names and `$this`.
pub(crate) fn values_at<'v>(value: &'v Value, path: &str) -> Option<Vec<&'v Value>> {
    let mut current = vec![value];
    for seg in path.split('.') {
        if seg == "$this" {
            continue;
        }
        if !seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || seg.is_empty() {
            return None;
        }
        let mut next = Vec::new();
        for v in current {
            let Some(obj) = v.as_object() else { continue };
            let found = obj.get(seg).or_else(|| {
                obj.iter()
                    .find(|(k, _)| choice_type(k, seg).is_some())
                    .map(|(_, v)| v)
            });
            match found {
                Some(Value::Array(items)) => next.extend(items.iter()),
                Some(v) => next.push(v),
                None => {}
            }
        }
        current = next;
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equality_and_containment() {
        assert!(equal(&json!(1.0), &json!(1)));
        assert!(!equal(&json!({"a": 1, "b": 2}), &json!({"a": 1})));
        assert!(contains(&json!({"a": 1, "b": 2}), &json!({"a": 1})));
        let cc = json!({"coding": [{"system": "s", "code": "x"}, {"system": "t", "code": "y"}], "text": "t"});
        assert!(contains(
            &cc,
            &json!({"coding": [{"system": "t", "code": "y"}]})
        ));
        assert!(!contains(
            &cc,
            &json!({"coding": [{"system": "t", "code": "x"}]})
        ));
        assert!(!contains(&json!("a"), &json!("b")));
    }

    #[test]
    fn paths_and_choice_keys() {
        let v = json!({"code": {"coding": [{"code": "a"}, {"code": "b"}]}, "valueQuantity": {"value": 1}});
        let got = values_at(&v, "code.coding.code").unwrap();
        assert_eq!(got, [&json!("a"), &json!("b")]);
        assert_eq!(values_at(&v, "value.value").unwrap(), [&json!(1)]);
        assert!(values_at(&v, "extension('x')").is_none());
        assert_eq!(choice_type("valueQuantity", "value"), Some("Quantity"));
        assert_eq!(choice_type("values", "value"), None);
        assert!(type_matches_suffix("dateTime", "DateTime"));
    }
}
