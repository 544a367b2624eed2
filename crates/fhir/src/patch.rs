//! JSON Patch (RFC 6902) on resource JSON: add, remove, replace, move, copy, test, within
//! limits on the operations, the nesting, the size and the work a patch may ask for.

use crate::{Error, IssueType};
use serde_json::Value;

/// Most operations one patch may have; FHIR patches are a handful.
pub const MAX_PATCH_OPERATIONS: usize = 10_000;

/// Deepest nesting of objects and arrays a patched resource may have (the resource itself is
/// level 1). FHIR resources are shallow, and deeper JSON would later exhaust the stack of
/// whatever recurses over it (dropping or serializing a `Value` does), so an operation that
/// would nest deeper is refused before it applies.
pub const MAX_PATCH_DEPTH: usize = 100;

/// A patch may make the resource at most this many times the size of the resource and the
/// patch's own values together: copies cannot double a document over and over.
pub const MAX_PATCH_GROWTH_FACTOR: usize = 4;

/// ... and at most this many bytes larger, whatever its size.
pub const MAX_PATCH_GROWTH_BYTES: usize = 8 * 1024 * 1024;

/// Growth always allowed, so that patches on tiny resources are not held to tiny multiples.
pub const PATCH_GROWTH_FLOOR_BYTES: usize = 64 * 1024;

/// The work of a patch (bytes copied, measured and shifted within arrays) may be at most this
/// many times the largest size the result is allowed: repeated copies over the same target
/// cannot keep a thread busy.
pub const MAX_PATCH_WORK_FACTOR: usize = 16;

/// What sizes count per JSON value besides its text: roughly what a node costs in memory.
const NODE_BYTES: usize = 16;

/// Applies a JSON Patch document to `doc`. Nothing is changed unless every operation applies.
///
/// # Errors
/// A malformed patch (400), a failed `test` or a missing path (422: the patch does not fit the
/// resource), or a patch beyond the limits above (422, `too-costly`, naming the limit and the
/// operation).
pub fn apply_json_patch(doc: &mut Value, patch: &Value) -> Result<(), Error> {
    let ops = patch
        .as_array()
        .ok_or_else(|| Error::invalid("a JSON Patch document must be an array of operations"))?;
    if ops.len() > MAX_PATCH_OPERATIONS {
        return Err(too_costly(format!(
            "a JSON Patch may have at most {MAX_PATCH_OPERATIONS} operations; this one has {}",
            ops.len()
        ))
        .at(format!("patch[{MAX_PATCH_OPERATIONS}]")));
    }
    // Measured before the clone, which would recurse as deep as the document goes.
    let start = shape(doc, MAX_PATCH_DEPTH);
    if start.depth > MAX_PATCH_DEPTH {
        return Err(too_costly(format!(
            "the resource is nested deeper than {MAX_PATCH_DEPTH} levels"
        )));
    }
    let values: usize = ops
        .iter()
        .filter_map(|op| op.get("value"))
        .map(|v| shape(v, usize::MAX).bytes)
        .sum();
    let base = start.bytes.saturating_add(values);
    let growth = base
        .saturating_mul(MAX_PATCH_GROWTH_FACTOR - 1)
        .clamp(PATCH_GROWTH_FLOOR_BYTES, MAX_PATCH_GROWTH_BYTES);
    let max_bytes = base.saturating_add(growth);
    let mut budget = Budget {
        depth: start.depth,
        bytes: start.bytes,
        max_bytes,
        work: 0,
        max_work: max_bytes.saturating_mul(MAX_PATCH_WORK_FACTOR),
    };
    let mut work = doc.clone();
    for (i, op) in ops.iter().enumerate() {
        apply_one(&mut work, op, &mut budget).map_err(|e| e.at(format!("patch[{i}]")))?;
    }
    *doc = work;
    Ok(())
}

fn unprocessable(msg: String) -> Error {
    Error::new(IssueType::Processing, msg).with_status(422)
}

fn too_costly(msg: String) -> Error {
    Error::new(IssueType::TooCostly, msg)
}

/// The nesting depth and estimated size of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shape {
    /// Levels of objects and arrays: 0 for a scalar, 1 for `{}` or `[1]`.
    depth: usize,
    /// Text (strings, numbers, member names) plus [`NODE_BYTES`] per value.
    bytes: usize,
}

/// Measures a value without recursion; deeper than `max_depth`, the walk stops going down
/// (the depth reported is then `max_depth + 1` and the size only counts what was seen).
fn shape(value: &Value, max_depth: usize) -> Shape {
    let mut out = Shape { depth: 0, bytes: 0 };
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((v, level)) = stack.pop() {
        out.bytes = out.bytes.saturating_add(NODE_BYTES);
        match v {
            Value::String(s) => out.bytes = out.bytes.saturating_add(s.len()),
            Value::Number(n) => out.bytes = out.bytes.saturating_add(n.as_str().len()),
            Value::Array(items) => {
                out.depth = out.depth.max(level + 1);
                if level < max_depth {
                    stack.extend(items.iter().map(|item| (item, level + 1)));
                }
            }
            Value::Object(map) => {
                out.depth = out.depth.max(level + 1);
                if level < max_depth {
                    for (k, item) in map {
                        out.bytes = out.bytes.saturating_add(k.len());
                        stack.push((item, level + 1));
                    }
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
    }
    out
}

/// What a patch has used so far, checked by every operation that grows or reshapes the
/// document.
struct Budget {
    /// An upper bound of the document's depth, never above [`MAX_PATCH_DEPTH`].
    depth: usize,
    /// The document's size as [`shape`] counts it.
    bytes: usize,
    max_bytes: usize,
    work: usize,
    max_work: usize,
}

impl Budget {
    /// Counts `work` bytes copied, measured or shifted; past the budget the patch fails.
    fn spend(&mut self, work: usize) -> Result<(), Error> {
        self.work = self.work.saturating_add(work);
        if self.work > self.max_work {
            return Err(too_costly(format!(
                "the patch does too much work: it copies, moves or shifts more than {} bytes",
                self.max_work
            )));
        }
        Ok(())
    }

    /// Admits a value of `value`'s depth at a path of `at` steps, the document growing by
    /// `added` bytes and losing the `replaced` ones of the value it overwrites.
    fn admit(
        &mut self,
        at: usize,
        value: Shape,
        added: usize,
        replaced: usize,
    ) -> Result<(), Error> {
        let depth = at.saturating_add(value.depth);
        if depth > MAX_PATCH_DEPTH {
            return Err(too_costly(format!(
                "the patch nests the resource deeper than {MAX_PATCH_DEPTH} levels"
            )));
        }
        let bytes = self.bytes.saturating_sub(replaced).saturating_add(added);
        if bytes > self.max_bytes {
            return Err(too_costly(format!(
                "the patch grows the resource beyond {} bytes (at most {MAX_PATCH_GROWTH_FACTOR} \
                 times the resource and the patch's values, and {MAX_PATCH_GROWTH_BYTES} bytes more)",
                self.max_bytes
            )));
        }
        self.bytes = bytes;
        self.depth = self.depth.max(depth);
        Ok(())
    }
}

fn field<'a>(op: &'a Value, name: &str) -> Result<&'a str, Error> {
    op.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid(format!("a patch operation needs a string '{name}'")))
}

fn apply_one(doc: &mut Value, op: &Value, budget: &mut Budget) -> Result<(), Error> {
    let kind = field(op, "op")?;
    let path = parse_pointer(field(op, "path")?)?;
    let value = || {
        op.get("value")
            .ok_or_else(|| Error::invalid(format!("'{kind}' needs a 'value'")))
    };
    match kind {
        "add" => {
            let v = value()?;
            // Measured (and refused) before the clone, which recurses as deep as `v` goes.
            let s = shape(v, MAX_PATCH_DEPTH);
            let added = s.bytes.saturating_add(last_key_len(&path));
            budget.admit(path.len(), s, added, replaced_bytes(doc, &path))?;
            add(doc, &path, v.clone(), budget)
        }
        "remove" => {
            let old = remove(doc, &path, budget)?;
            let freed = shape(&old, usize::MAX).bytes + last_key_len(&path);
            budget.bytes = budget.bytes.saturating_sub(freed);
            Ok(())
        }
        "replace" => {
            let v = value()?;
            let s = shape(v, MAX_PATCH_DEPTH);
            let target = get_mut(doc, &path)?;
            // The old value is dropped right after, which costs as much as measuring it.
            let old = shape(target, usize::MAX).bytes;
            budget.admit(path.len(), s, s.bytes, old)?;
            *target = v.clone();
            Ok(())
        }
        "move" => {
            let from = parse_pointer(field(op, "from")?)?;
            if path.len() > from.len() && path[..from.len()] == from[..] {
                return Err(Error::invalid("cannot move a value into itself"));
            }
            let v = remove(doc, &from, budget)?;
            // The value was at depth `from.len()` of a document no deeper than the bound, so
            // it is measured only when moving it down could cross the limit.
            let bound = budget.depth.saturating_sub(from.len());
            let depth = if path.len().saturating_add(bound) > MAX_PATCH_DEPTH {
                let s = shape(&v, MAX_PATCH_DEPTH);
                budget.spend(s.bytes)?;
                s.depth
            } else {
                bound
            };
            let moved = Shape { depth, bytes: 0 };
            budget.admit(path.len(), moved, 0, replaced_bytes(doc, &path))?;
            add(doc, &path, v, budget)
        }
        "copy" => {
            let from = parse_pointer(field(op, "from")?)?;
            let source = get(doc, &from)?;
            let s = shape(source, MAX_PATCH_DEPTH);
            // Measuring and cloning each read the whole value.
            budget.spend(s.bytes.saturating_mul(2))?;
            let added = s.bytes.saturating_add(last_key_len(&path));
            budget.admit(path.len(), s, added, replaced_bytes(doc, &path))?;
            let v = source.clone();
            add(doc, &path, v, budget)
        }
        "test" => {
            let expected = value()?;
            let actual = get(doc, &path)?;
            if json_equal(actual, expected) {
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

/// The length of the member name a path ends with, counted in a document's size.
fn last_key_len(path: &[String]) -> usize {
    path.last().map_or(0, String::len)
}

/// The size of the value an `add` at `path` would replace: an existing object member, or the
/// whole document for the empty path. Array insertions replace nothing.
fn replaced_bytes(doc: &Value, path: &[String]) -> usize {
    let Some((last, parent)) = path.split_last() else {
        return shape(doc, usize::MAX).bytes;
    };
    match get(doc, parent) {
        Ok(Value::Object(map)) => map
            .get(last)
            .map_or(0, |v| shape(v, usize::MAX).bytes + last.len()),
        _ => 0,
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

fn get<'a>(doc: &'a Value, path: &[String]) -> Result<&'a Value, Error> {
    let mut current = doc;
    for token in path {
        current = match current {
            Value::Object(map) => map
                .get(token)
                .ok_or_else(|| unprocessable(format!("no value at {}", pointer_text(path))))?,
            Value::Array(items) => {
                let i = index(token, items.len(), false)?;
                &items[i]
            }
            _ => return Err(unprocessable(format!("no value at {}", pointer_text(path)))),
        };
    }
    Ok(current)
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

/// Inserts `value`, which the budget has admitted; shifting array items is work.
fn add(doc: &mut Value, path: &[String], value: Value, budget: &mut Budget) -> Result<(), Error> {
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
            budget.spend((items.len() - i).saturating_mul(NODE_BYTES))?;
            items.insert(i, value);
            Ok(())
        }
        _ => Err(unprocessable(format!(
            "cannot add at {}",
            pointer_text(path)
        ))),
    }
}

/// Takes a value out; shifting the members or items after it is work.
fn remove(doc: &mut Value, path: &[String], budget: &mut Budget) -> Result<Value, Error> {
    let Some((last, parent)) = path.split_last() else {
        return Err(Error::invalid("cannot remove the whole resource"));
    };
    match get_mut(doc, parent)? {
        Value::Object(map) => {
            budget.spend(map.len().saturating_mul(NODE_BYTES))?;
            map.shift_remove(last)
                .ok_or_else(|| unprocessable(format!("no value at {}", pointer_text(path))))
        }
        Value::Array(items) => {
            let i = index(last, items.len(), false)?;
            budget.spend((items.len() - i).saturating_mul(NODE_BYTES))?;
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

    /// Runs `f` on a thread with a small stack, as hostile input must not need a big one.
    fn small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    fn message(e: &Error) -> String {
        e.to_string()
    }

    #[test]
    fn a_move_chain_cannot_nest_the_resource_deeply() {
        // Each pair wraps the document's content one level deeper: `{"a": x}` becomes
        // `{"b": {"a": x}}`, then `{"a": {"b": ...}}`.
        let chain = |pairs: usize| {
            let mut ops = Vec::new();
            for i in 0..pairs {
                let (outer, inner) = if i % 2 == 0 { ("b", "a") } else { ("a", "b") };
                ops.push(json!({"op": "add", "path": format!("/{outer}"), "value": {}}));
                ops.push(json!({"op": "move", "from": format!("/{inner}"), "path": format!("/{outer}/{inner}")}));
            }
            Value::Array(ops)
        };
        let (deep, shallow) = small_stack(move || {
            // 50,000 levels take 100,000 operations: refused before anything applies.
            let mut doc = json!({"a": {}});
            let deep = apply_json_patch(&mut doc, &chain(50_000)).unwrap_err();
            // Within the operation limit, the move that would cross the depth limit fails (the
            // document starts two levels deep and gains one per pair).
            let mut doc = json!({"a": {}});
            let shallow = apply_json_patch(&mut doc, &chain(500)).unwrap_err();
            (
                message(&deep),
                (shallow.status(), shallow.code(), message(&shallow)),
            )
        });
        assert!(deep.starts_with("422 [too-costly]"), "{deep}");
        assert!(
            deep.contains("at most 10000 operations") && deep.contains("patch[10000]"),
            "{deep}"
        );
        let (status, code, text) = shallow;
        assert_eq!((status, code), (422, IssueType::TooCostly));
        assert!(
            text.contains("deeper than 100 levels") && text.contains("at patch[197]"),
            "{text}"
        );
    }

    #[test]
    fn copies_cannot_double_the_resource_over_and_over() {
        let mut doc = json!({"resourceType": "Patient", "name": [{"family": "Chalmers", "given": ["Peter", "James"]}]});
        let ops: Vec<Value> = (0..23)
            .map(|i| json!({"op": "copy", "from": "/name", "path": format!("/name/{}", if i == 0 { "-".to_string() } else { "0".to_string() })}))
            .collect();
        // Copying a whole document into a new member of itself doubles it (and deepens it).
        let doubling: Vec<Value> = (0..23)
            .map(|i| json!({"op": "copy", "from": "", "path": format!("/x{i}")}))
            .collect();
        let e = apply_json_patch(&mut doc, &Value::Array(ops)).unwrap_err();
        assert_eq!((e.status(), e.code()), (422, IssueType::TooCostly));
        assert!(message(&e).contains("grows the resource beyond"), "{e}");
        let e = small_stack(move || {
            let mut doc = json!({"resourceType": "Patient", "name": [{"family": "Chalmers"}]});
            message(&apply_json_patch(&mut doc, &Value::Array(doubling)).unwrap_err())
        });
        assert!(
            e.starts_with("422 [too-costly]") && e.contains("at patch["),
            "{e}"
        );
        // The original is untouched.
        assert_eq!(doc["name"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn repeated_copies_over_one_target_run_out_of_work() {
        let big: Vec<Value> = (0..2000)
            .map(|i| json!({"value": format!("item {i}")}))
            .collect();
        let mut doc = json!({"resourceType": "Patient", "a": big});
        let ops: Vec<Value> = (0..MAX_PATCH_OPERATIONS)
            .map(|_| json!({"op": "copy", "from": "/a", "path": "/b"}))
            .collect();
        let e = apply_json_patch(&mut doc, &Value::Array(ops)).unwrap_err();
        assert_eq!((e.status(), e.code()), (422, IssueType::TooCostly));
        assert!(message(&e).contains("too much work"), "{e}");
    }

    #[test]
    fn too_deep_a_resource_or_value_is_refused_before_it_is_copied() {
        let mut value = json!(1);
        for _ in 0..(MAX_PATCH_DEPTH + 1) {
            value = json!([value]);
        }
        let mut doc = json!({"a": 1});
        let e = apply_json_patch(
            &mut doc,
            &json!([{"op": "add", "path": "/b", "value": value.clone()}]),
        )
        .unwrap_err();
        assert!(
            message(&e).contains("deeper than 100 levels") && message(&e).contains("patch[0]"),
            "{e}"
        );
        let e = apply_json_patch(&mut value, &json!([])).unwrap_err();
        assert_eq!(e.status(), 422);
        // A legitimate patch at the limit still applies.
        let mut doc = json!({"a": 1});
        let mut ok = json!(1);
        for _ in 0..(MAX_PATCH_DEPTH - 1) {
            ok = json!([ok]);
        }
        apply_json_patch(&mut doc, &json!([{"op": "add", "path": "/b", "value": ok}])).unwrap();
    }
}
