//! Required bindings: the elements of the core definitions bound `required` to a value set,
//! and the check of one value against a value set through [`ValueSets`] — a `code` (its system
//! implied by the value set), a `Coding`, a `CodeableConcept` (one coding in the set suffices;
//! one with only text is not in any set), a `Quantity`'s unit code, a `string` or `uri`.
//! A value set the server cannot evaluate leaves the value unchecked.

use std::collections::HashMap;

use flint_fhir::{IssueSeverity, IssueType};
use serde_json::Value;

use crate::report::{issue, Report};
use crate::walk::{Loc, Node};
use crate::ValueSets;

/// Required bindings by element path.
pub(crate) struct Bindings {
    by_path: HashMap<String, String>,
}

/// The value set of a `required` binding of an ElementDefinition.
pub(crate) fn required_value_set(element: &Value) -> Option<&str> {
    let binding = element.get("binding")?;
    if binding.get("strength").and_then(Value::as_str) != Some("required") {
        return None;
    }
    binding.get("valueSet").and_then(Value::as_str)
}

impl Bindings {
    pub(crate) fn build(types: &[Value]) -> Bindings {
        let mut by_path = HashMap::new();
        for sd in types {
            let elements = sd
                .pointer("/snapshot/element")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            for e in elements {
                let Some(path) = e.get("path").and_then(Value::as_str) else {
                    continue;
                };
                if e.get("id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| id.contains(':'))
                {
                    continue;
                }
                if let Some(vs) = required_value_set(e) {
                    by_path.insert(path.to_string(), vs.to_string());
                }
            }
        }
        Bindings { by_path }
    }

    /// The required value set of the element at `path`.
    pub(crate) fn required(&self, path: &str) -> Option<&str> {
        self.by_path.get(path).map(String::as_str)
    }
}

/// Whether two canonical references name the same value set, versions aside.
pub(crate) fn same_value_set(a: &str, b: &str) -> bool {
    let strip = |s: &str| s.split('|').next().unwrap_or(s).to_string();
    strip(a) == strip(b)
}

fn str_of<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

/// One code to look up: `(system, code)`.
type Code<'v> = (Option<&'v str>, &'v str);

/// Checks one element's value against a required value set.
pub(crate) fn check(
    value_set: &str,
    node: &Node<'_>,
    loc: &Loc<'_>,
    value_sets: &dyn ValueSets,
    report: &mut Report,
) {
    let Some(value) = node.value else { return };
    let codes: Vec<Code<'_>> = match node.ty {
        "Coding" => match str_of(value, "code") {
            Some(code) => vec![(str_of(value, "system"), code)],
            None => return,
        },
        "CodeableConcept" => {
            let codes: Vec<Code<'_>> = value
                .get("coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| Some((str_of(c, "system"), str_of(c, "code")?)))
                .collect();
            if codes.is_empty() {
                report.push(issue(
                    IssueSeverity::Error,
                    IssueType::CodeInvalid,
                    format!(
                        "no code is given, and the value must come from the required value set {value_set}"
                    ),
                    loc.render(),
                ));
                return;
            }
            codes
        }
        "Quantity" | "Age" | "Count" | "Distance" | "Duration" | "MoneyQuantity"
        | "SimpleQuantity" => match str_of(value, "code") {
            Some(code) => vec![(str_of(value, "system"), code)],
            None => return,
        },
        _ => match value.as_str() {
            Some(code) => vec![(None, code)],
            None => return,
        },
    };
    let mut unknown = false;
    for &(system, code) in &codes {
        match value_sets.contains(value_set, system, code) {
            Ok(Some(true)) => return,
            Ok(Some(false)) => {}
            Ok(None) => unknown = true,
            Err(e) => {
                let reason = e
                    .issues
                    .first()
                    .map_or_else(String::new, |i| i.diagnostics.clone());
                report.push(issue(
                    IssueSeverity::Warning,
                    IssueType::NotSupported,
                    format!("the binding to {value_set} could not be checked: {reason}"),
                    loc.render(),
                ));
                return;
            }
        }
    }
    if unknown {
        return; // the server cannot tell: no error
    }
    let shown: Vec<String> = codes
        .iter()
        .map(|(system, code)| match system {
            Some(s) => format!("{s}#{code}"),
            None => format!("'{code}'"),
        })
        .collect();
    let what = if shown.len() == 1 {
        format!("the code {}", shown[0])
    } else {
        format!("none of the codes {}", shown.join(", "))
    };
    report.push(issue(
        IssueSeverity::Error,
        IssueType::CodeInvalid,
        format!(
            "{what} {} in the required value set {value_set}",
            if shown.len() == 1 { "is not" } else { "is" }
        ),
        loc.render(),
    ));
}
