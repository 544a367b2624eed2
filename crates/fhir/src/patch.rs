//! JSON Patch (RFC 6902) on resource JSON: add, remove, replace, move, copy, test.

use crate::Error;
use serde_json::Value;

/// Applies a JSON Patch document to `doc`. Nothing is changed unless every operation applies.
///
/// # Errors
/// A malformed patch (400), or a failed `test` or a missing path (422: the patch does not fit
/// the resource).
pub fn apply_json_patch(doc: &mut Value, patch: &Value) -> Result<(), Error> {
    let ops = patch
        .as_array()
        .ok_or_else(|| Error::invalid("a JSON Patch document must be an array of operations"))?;
    let mut work = doc.clone();
    for (i, op) in ops.iter().enumerate() {
        apply_one(&mut work, op).map_err(|e| e.at(format!("patch[{i}]")))?;
    }
    *doc = work;
    Ok(())
}

fn unprocessable(msg: String) -> Error {
    Error::new(crate::IssueType::Processing, msg).with_status(422)
}

fn field<'a>(op: &'a Value, name: &str) -> Result<&'a str, Error> {
    op.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid(format!("a patch operation needs a string '{name}'")))
}

fn apply_one(doc: &mut Value, op: &Value) -> Result<(), Error> {
    let kind = field(op, "op")?;
    let path = parse_pointer(field(op, "path")?)?;
    let value = || {
        op.get("value")
            .cloned()
            .ok_or_else(|| Error::invalid(format!("'{kind}' needs a 'value'")))
    };
    match kind {
        "add" => add(doc, &path, value()?),
        "remove" => remove(doc, &path).map(drop),
        "replace" => {
            let v = value()?;
            let target = get_mut(doc, &path)?;
            *target = v;
            Ok(())
        }
        "move" => {
            let from = parse_pointer(field(op, "from")?)?;
            if path.len() > from.len() && path[..from.len()] == from[..] {
                return Err(Error::invalid("cannot move a value into itself"));
            }
            let v = remove(doc, &from)?;
            add(doc, &path, v)
        }
        "copy" => {
            let from = parse_pointer(field(op, "from")?)?;
            let v = get_mut(doc, &from)?.clone();
            add(doc, &path, v)
        }
        "test" => {
            let expected = value()?;
            let actual = get_mut(doc, &path)?;
            if json_equal(actual, &expected) {
                Ok(())
            } else {
                Err(unprocessable(format!(
                    "test failed at {}",
                    pointer_text(&path)
                )))
            }
        }
        other => Err(Error::invalid(format!("unknown patch operation '{other}'"))),
    }
}

/// Equality with numbers compared by value (`1.0` equals `1`).
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x.to_string() == y.to_string()
                || x.as_f64().zip(y.as_f64()).is_some_and(|(x, y)| x == y)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

fn parse_pointer(p: &str) -> Result<Vec<String>, Error> {
    if p.is_empty() {
        return Ok(Vec::new());
    }
    let rest = p
        .strip_prefix('/')
        .ok_or_else(|| Error::invalid(format!("'{p}' is not a JSON pointer")))?;
    Ok(rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn pointer_text(path: &[String]) -> String {
    path.iter().map(|s| format!("/{s}")).collect()
}

fn index(token: &str, len: usize, allow_end: bool) -> Result<usize, Error> {
    if allow_end && token == "-" {
        return Ok(len);
    }
    let valid = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    let i: usize = if valid {
        token
            .parse()
            .map_err(|_| unprocessable(format!("bad array index '{token}'")))?
    } else {
        return Err(unprocessable(format!("bad array index '{token}'")));
    };
    let max = if allow_end {
        len
    } else {
        len.saturating_sub(1)
    };
    if i > max || (!allow_end && len == 0) {
        return Err(unprocessable(format!("array index {i} is out of bounds")));
    }
    Ok(i)
}

fn get_mut<'a>(doc: &'a mut Value, path: &[String]) -> Result<&'a mut Value, Error> {
    let mut current = doc;
    for token in path {
        current = match current {
            Value::Object(map) => map
                .get_mut(token)
                .ok_or_else(|| unprocessable(format!("no value at {}", pointer_text(path))))?,
            Value::Array(items) => {
                let i = index(token, items.len(), false)?;
                &mut items[i]
            }
            _ => return Err(unprocessable(format!("no value at {}", pointer_text(path)))),
        };
    }
    Ok(current)
}

fn add(doc: &mut Value, path: &[String], value: Value) -> Result<(), Error> {
    let Some((last, parent)) = path.split_last() else {
        *doc = value;
        return Ok(());
    };
    match get_mut(doc, parent)? {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            let i = index(last, items.len(), true)?;
            items.insert(i, value);
            Ok(())
        }
        _ => Err(unprocessable(format!(
            "cannot add at {}",
            pointer_text(path)
        ))),
    }
}

fn remove(doc: &mut Value, path: &[String]) -> Result<Value, Error> {
    let Some((last, parent)) = path.split_last() else {
        return Err(Error::invalid("cannot remove the whole resource"));
    };
    match get_mut(doc, parent)? {
        Value::Object(map) => map
            .shift_remove(last)
            .ok_or_else(|| unprocessable(format!("no value at {}", pointer_text(path)))),
        Value::Array(items) => {
            let i = index(last, items.len(), false)?;
            Ok(items.remove(i))
        }
        _ => Err(unprocessable(format!("no value at {}", pointer_text(path)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The HL7 JSON Patch test cases (fhir-test-cases `r4/patch/json-patch-tests.json`).
    #[test]
    fn hl7_json_patch_cases() {
        let cases: Value =
            serde_json::from_str(include_str!("../tests/fixtures/json-patch-tests.json")).unwrap();
        let mut run = 0;
        for case in cases.as_array().unwrap() {
            let name = case["comment"]
                .as_str()
                .or(case["description"].as_str())
                .unwrap_or("?");
            let mut doc = case["doc"].clone();
            let result = apply_json_patch(&mut doc, &case["patch"]);
            if case.get("error").is_some() {
                assert!(result.is_err(), "{name}: expected an error");
            } else {
                assert!(result.is_ok(), "{name}: {result:?}");
                assert!(json_equal(&doc, &case["expected"]), "{name}: got {doc}");
            }
            run += 1;
        }
        assert!(run >= 16);
    }

    #[test]
    fn failing_patch_changes_nothing() {
        let mut doc = json!({"a": 1});
        let r = apply_json_patch(
            &mut doc,
            &json!([{"op": "add", "path": "/b", "value": 2}, {"op": "test", "path": "/a", "value": 9}]),
        );
        assert_eq!(r.unwrap_err().status(), 422);
        assert_eq!(doc, json!({"a": 1}));
    }
}
