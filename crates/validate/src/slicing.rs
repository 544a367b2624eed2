//! Slicing: which slice each value of a sliced element belongs to, by the slicing's
//! discriminators. Supported: `value` and `pattern` on a dotted path (the slice's `fixed[x]`
//! or `pattern[x]` at that path, found in the slice's children or inside a pattern of one of
//! them; for extensions, `url` is also the slice's type profile), `exists`, and `type` on
//! `$this` or on a resource. Anything else (`profile`, paths with functions, a slice with no
//! value at the path) makes the whole slicing unsupported: the caller then warns, and checks
//! the values against the sliced element alone, so an unsupported slicing is never an error.

use serde_json::Value;

use crate::json::{contains, equal, fixed_or_pattern, values_at};
use crate::profile::{type_codes, Found, Tree};

/// What one discriminator requires of a value to be in one slice.
enum Test {
    /// Every expected value is found at the path: `(value, is_pattern)`.
    Values {
        path: String,
        expected: Vec<(Value, bool)>,
    },
    /// The path has (or has not) a value.
    Exists { path: String, exists: bool },
    /// The value at the path is of one of these types.
    Type { path: String, types: Vec<String> },
}

/// The slice of each value (`None`: in no slice), or why the slicing cannot be evaluated.
pub(crate) fn assign(
    tree: &Tree,
    sliced: usize,
    items: &[Found<'_>],
) -> Result<Vec<Option<usize>>, String> {
    let e = tree.element(sliced);
    let discriminators = e
        .pointer("/slicing/discriminator")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let is_extension = {
        let path = e.get("path").and_then(Value::as_str).unwrap_or("");
        path.ends_with(".extension")
            || path.ends_with(".modifierExtension")
            || path == "Extension.extension"
    };
    let discriminators: Vec<(String, String)> = if discriminators.is_empty() {
        if !is_extension {
            return Err("the slicing has no discriminator".into());
        }
        vec![("value".into(), "url".into())]
    } else {
        discriminators
            .iter()
            .map(|d| {
                (
                    d.get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    d.get("path")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                )
            })
            .collect()
    };
    let mut tests: Vec<(usize, Vec<Test>)> = Vec::new();
    for &s in &tree.nodes[sliced].slices {
        let mut slice_tests = Vec::new();
        for (kind, path) in &discriminators {
            slice_tests.push(test_for(tree, s, kind, path, is_extension)?);
        }
        tests.push((s, slice_tests));
    }
    let mut out = Vec::with_capacity(items.len());
    for found in items {
        let mut slice = None;
        for (s, slice_tests) in &tests {
            let mut all = true;
            for t in slice_tests {
                if !passes(t, found)? {
                    all = false;
                    break;
                }
            }
            if all {
                slice = Some(*s);
                break;
            }
        }
        out.push(slice);
    }
    Ok(out)
}

fn test_for(
    tree: &Tree,
    s: usize,
    kind: &str,
    path: &str,
    is_extension: bool,
) -> Result<Test, String> {
    let segs: Vec<&str> = path.split('.').filter(|p| *p != "$this").collect();
    let name = tree.id(s);
    match kind {
        "value" | "pattern" => {
            let mut expected = expected_values(tree, s, &segs, 0);
            if expected.is_empty() && is_extension && path == "url" {
                // An extension slice names its definition as its type's profile.
                if let Some(url) = tree
                    .element(s)
                    .pointer("/type/0/profile/0")
                    .and_then(Value::as_str)
                {
                    expected.push((
                        Value::String(url.split('|').next().unwrap_or(url).to_string()),
                        false,
                    ));
                }
            }
            if expected.is_empty() {
                return Err(format!("slice {name} states no value at '{path}'"));
            }
            Ok(Test::Values {
                path: path.to_string(),
                expected,
            })
        }
        "exists" => {
            let targets = elements_at(tree, s, &segs, 0);
            let Some(&t) = targets.first() else {
                return Err(format!("slice {name} has no element at '{path}'"));
            };
            let e = tree.element(t);
            let min = e.get("min").and_then(Value::as_u64).unwrap_or(0);
            let max = e.get("max").and_then(Value::as_str);
            let exists = if min >= 1 {
                true
            } else if max == Some("0") {
                false
            } else {
                return Err(format!(
                    "slice {name} neither requires nor forbids '{path}'"
                ));
            };
            Ok(Test::Exists {
                path: path.to_string(),
                exists,
            })
        }
        "type" => {
            let target = if segs.is_empty() {
                Some(s)
            } else {
                elements_at(tree, s, &segs, 0).first().copied()
            };
            let Some(t) = target else {
                return Err(format!("slice {name} has no element at '{path}'"));
            };
            let types: Vec<String> = type_codes(tree.element(t))
                .into_iter()
                .map(str::to_string)
                .collect();
            if types.is_empty() {
                return Err(format!("slice {name} states no type at '{path}'"));
            }
            Ok(Test::Type {
                path: path.to_string(),
                types,
            })
        }
        other => Err(format!("'{other}' discriminators are not supported")),
    }
}

/// Whether a value passes a test; `Err` when the path cannot be followed.
fn passes(test: &Test, found: &Found<'_>) -> Result<bool, String> {
    let unsupported = |path: &str| format!("the discriminator path '{path}' is not supported");
    match test {
        Test::Values { path, expected } => {
            let Some(value) = found.value else {
                return Ok(false);
            };
            let values = values_at(value, path).ok_or_else(|| unsupported(path))?;
            Ok(expected.iter().all(|(want, is_pattern)| {
                values.iter().any(|v| {
                    if *is_pattern {
                        contains(v, want)
                    } else {
                        equal(v, want)
                    }
                })
            }))
        }
        Test::Exists { path, exists } => {
            let present = match found.value {
                Some(v) => !values_at(v, path)
                    .ok_or_else(|| unsupported(path))?
                    .is_empty(),
                None => false,
            };
            Ok(present == *exists)
        }
        Test::Type { path, types } => {
            if path.split('.').all(|p| p == "$this") {
                return Ok(types.iter().any(|t| t == found.ty));
            }
            let Some(value) = found.value else {
                return Ok(false);
            };
            let values = values_at(value, path).ok_or_else(|| unsupported(path))?;
            // Only resources carry their type in the JSON.
            let mut any = false;
            for v in values {
                let Some(rt) = v.get("resourceType").and_then(Value::as_str) else {
                    return Err(unsupported(path));
                };
                any |= types.iter().any(|t| t == rt);
            }
            Ok(any)
        }
    }
}

/// The elements at a path below element `n` (children by name, and their slices).
fn elements_at(tree: &Tree, n: usize, segs: &[&str], depth: usize) -> Vec<usize> {
    let Some((first, rest)) = segs.split_first() else {
        return vec![n];
    };
    if depth > 32 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for &c in &tree.nodes[n].children {
        let name = tree.nodes[c].name.as_str();
        if name == *first || name.strip_suffix("[x]") == Some(first) {
            out.extend(elements_at(tree, c, rest, depth + 1));
            for &s in &tree.nodes[c].slices {
                out.extend(elements_at(tree, s, rest, depth + 1));
            }
        }
    }
    out
}

/// The fixed or pattern values a slice states at a path: on an element at the path, or inside
/// a fixed or pattern value of an element on the way (`code` with a pattern CodeableConcept
/// gives the codes for `code.coding.code`).
fn expected_values(tree: &Tree, n: usize, segs: &[&str], depth: usize) -> Vec<(Value, bool)> {
    if let Some((value, is_pattern)) = fixed_or_pattern(tree.element(n)) {
        if segs.is_empty() {
            return vec![(value.clone(), is_pattern)];
        }
        return values_at(value, &segs.join("."))
            .unwrap_or_default()
            .into_iter()
            .map(|v| (v.clone(), is_pattern))
            .collect();
    }
    let Some((first, rest)) = segs.split_first() else {
        return Vec::new();
    };
    if depth > 32 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for &c in &tree.nodes[n].children {
        let name = tree.nodes[c].name.as_str();
        if name == *first || name.strip_suffix("[x]") == Some(first) {
            out.extend(expected_values(tree, c, rest, depth + 1));
            for &s in &tree.nodes[c].slices {
                out.extend(expected_values(tree, s, rest, depth + 1));
            }
        }
    }
    out
}
