//! FHIRPath invariants: the `constraint[]` of the core definitions, compiled once per distinct
//! expression and indexed by element path, and their evaluation on one element with that
//! element as `%context`/`$this` and its resource as `%resource`.
//!
//! An invariant that fails to evaluate (an error of the engine, a result it cannot read as a
//! boolean, a spent budget) is reported as not checked, never as failed: an invariant that
//! cannot be decided must not turn a valid resource invalid.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use flint_fhir::{IssueSeverity, IssueType};
use flint_fhirpath::{Context, Elem, ErrorKind, Expression, Item, Resolver, Terminology};
use serde_json::Value;

use crate::report::{issue, Report};
use crate::walk::{Loc, Node, Scope};
use crate::ValueSets;

/// One invariant.
#[derive(Debug)]
pub(crate) struct Constraint {
    pub key: String,
    pub severity: IssueSeverity,
    pub human: String,
    /// The expression as the definition writes it.
    pub text: String,
    /// The compiled expression (of the corrected text, see [`CORRECTIONS`]), or why it does not compile.
    pub expression: Arc<Compiled>,
}

/// An expression compiled, or the reason it could not be.
pub(crate) type Compiled = Result<Expression, String>;

impl Constraint {
    /// Reads a `constraint` entry of an ElementDefinition; `None` without a key or an
    /// expression (R4 has a few XPath-only ones).
    pub(crate) fn from_json(
        c: &Value,
        compile: &mut dyn FnMut(&str) -> Arc<Compiled>,
    ) -> Option<Self> {
        let key = c.get("key")?.as_str()?;
        let text = c.get("expression")?.as_str()?;
        let severity = match c.get("severity").and_then(Value::as_str) {
            Some("error") => IssueSeverity::Error,
            Some("warning") => IssueSeverity::Warning,
            _ => IssueSeverity::Information,
        };
        Some(Constraint {
            key: key.to_string(),
            severity,
            human: c
                .get("human")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            text: text.to_string(),
            expression: compile(corrected(key, text)),
        })
    }
}

/// Core invariants whose R4 expression a FHIRPath engine cannot evaluate as written, with the
/// expression checked instead (matched on key and exact text, so another version's wording is
/// left alone). Each fixes a known erratum of the R4 definitions:
/// - `dom-3` applies `as()` to whole collections (`descendants().as(canonical)`), which
///   FHIRPath defines only on single items; `ofType()` is the intended filter.
/// - `que-7` tests `answer is Boolean`, the System type, which an `answerBoolean` element (FHIR
///   `boolean`) is not; later versions test `answer is boolean`.
const CORRECTIONS: &[(&str, &str, &str)] = &[
    (
        "dom-3",
        "contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical) | %resource.descendants().as(uri) | %resource.descendants().as(url))) or descendants().where(reference = '#').exists() or descendants().where(as(canonical) = '#').exists() or descendants().where(as(canonical) = '#').exists()).not()).trace('unmatched', id).empty()",
        "contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().ofType(canonical) | %resource.descendants().ofType(uri) | %resource.descendants().ofType(url))) or descendants().where(reference = '#').exists() or descendants().where(ofType(canonical) = '#').exists()).not()).empty()",
    ),
    (
        "que-7",
        "operator = 'exists' implies (answer is Boolean)",
        "operator = 'exists' implies (answer is boolean)",
    ),
];

/// The expression to evaluate for a core invariant: its own, or its correction.
fn corrected<'e>(key: &str, expression: &'e str) -> &'e str {
    CORRECTIONS
        .iter()
        .find(|(k, original, _)| *k == key && *original == expression)
        .map_or(expression, |(_, _, fixed)| fixed)
}

/// The invariants of the core definitions by element path.
pub(crate) struct Invariants {
    constraints: Vec<Constraint>,
    by_path: HashMap<String, Vec<usize>>,
}

/// Element types whose profiles carry invariants of their own (`sqty-1`): the profile's
/// invariants apply to the elements whose type names it.
fn type_profiles(e: &Value) -> impl Iterator<Item = &str> {
    e.get("type")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("profile").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
}

fn constraints_of(e: &Value) -> impl Iterator<Item = &Value> {
    e.get("constraint")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

impl Invariants {
    pub(crate) fn build(types: &[Value], profiles: &[Value]) -> Invariants {
        let mut compiled: HashMap<String, Arc<Compiled>> = HashMap::new();
        let mut compile = |text: &str| {
            compiled
                .entry(text.to_string())
                .or_insert_with(|| Arc::new(Expression::compile(text).map_err(|e| e.to_string())))
                .clone()
        };
        let profile_roots: HashMap<&str, &Value> = profiles
            .iter()
            .filter_map(|sd| Some((sd.get("url")?.as_str()?, sd.pointer("/snapshot/element/0")?)))
            .collect();
        let mut table = Invariants {
            constraints: Vec::new(),
            by_path: HashMap::new(),
        };
        for sd in types {
            let elements = sd
                .pointer("/snapshot/element")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            for e in elements {
                let (Some(path), Some(id)) = (
                    e.get("path").and_then(Value::as_str),
                    e.get("id").and_then(Value::as_str),
                ) else {
                    continue;
                };
                if id.contains(':') {
                    continue; // slices of the core definitions add no invariants
                }
                let mut entries: Vec<&Value> = constraints_of(e).collect();
                for profile in type_profiles(e) {
                    if let Some(root) = profile_roots.get(profile) {
                        entries.extend(constraints_of(root));
                    }
                }
                for c in entries {
                    let Some(constraint) = Constraint::from_json(c, &mut compile) else {
                        continue;
                    };
                    let list = table.by_path.entry(path.to_string()).or_default();
                    if list
                        .iter()
                        .any(|&i| table.constraints[i].key == constraint.key)
                    {
                        continue;
                    }
                    list.push(table.constraints.len());
                    table.constraints.push(constraint);
                }
            }
        }
        table
    }

    /// Every key with its expression.
    pub(crate) fn keys(&self) -> HashMap<String, String> {
        self.constraints
            .iter()
            .map(|c| (c.key.clone(), c.text.clone()))
            .collect()
    }

    /// The core invariants that do not compile, as `(key, reason)`.
    #[cfg(test)]
    pub(crate) fn uncompiled(&self) -> Vec<(&str, &str)> {
        self.constraints
            .iter()
            .filter_map(|c| {
                Some((
                    c.key.as_str(),
                    c.expression.as_ref().as_ref().err()?.as_str(),
                ))
            })
            .collect()
    }

    /// Evaluates the invariants that apply to one element: those of its ElementDefinition and
    /// those of its type's root (`Period` for per-1), each key once.
    pub(crate) fn check_node<'v>(
        &self,
        node: &Node<'v>,
        scope: &Scope<'v>,
        loc: &Loc<'v>,
        value_sets: &dyn ValueSets,
        report: &mut Report,
    ) {
        let own = self.by_path.get(node.path).map_or(&[][..], Vec::as_slice);
        let of_type = if node.ty == node.path {
            &[][..]
        } else {
            self.by_path.get(node.ty).map_or(&[][..], Vec::as_slice)
        };
        if own.is_empty() && of_type.is_empty() {
            return;
        }
        let of_type = of_type.iter().filter(|&&i| {
            !own.iter()
                .any(|&j| self.constraints[j].key == self.constraints[i].key)
        });
        let list = own.iter().chain(of_type).map(|&i| &self.constraints[i]);
        evaluate_all(list, node, scope, loc, value_sets, report);
    }
}

/// Evaluates constraints on one element, reporting failures and evaluation problems.
pub(crate) fn evaluate_all<'v, 'c>(
    constraints: impl Iterator<Item = &'c Constraint>,
    node: &Node<'v>,
    scope: &Scope<'v>,
    loc: &Loc<'v>,
    value_sets: &dyn ValueSets,
    report: &mut Report,
) {
    let terminology = Terms(value_sets);
    let resolver = BundleEntries(scope.document);
    let focus = Item::Elem(Elem::new(node.value, node.ext, node.ty));
    let ctx = Context::new()
        .resource(scope.resource)
        .root_resource(scope.root)
        .var("context", vec![focus.clone()])
        .terminology(&terminology)
        .resolver(&resolver);
    let focus = [focus];
    for c in constraints {
        if !report.evaluation(|| loc.render()) {
            return;
        }
        let expression = match c.expression.as_ref() {
            Ok(e) => e,
            Err(reason) => {
                report.push(not_checked(c, reason, IssueType::NotSupported, loc));
                continue;
            }
        };
        match expression.evaluate_items(scope.resource, &focus, &ctx) {
            Ok(items) => match items.as_slice() {
                [] => {} // nothing to decide on: the invariant does not apply
                [one] => {
                    if let Some(Item::Bool(false)) = one.to_system() {
                        report.push(issue(
                            c.severity,
                            IssueType::Invariant,
                            format!("{}: {}", c.key, c.human),
                            loc.render(),
                        ));
                    }
                }
                many => report.push(not_checked(
                    c,
                    &format!("the expression gave {} items, not one boolean", many.len()),
                    IssueType::Invariant,
                    loc,
                )),
            },
            Err(e) => {
                let code = if e.kind == ErrorKind::TooCostly {
                    IssueType::TooCostly
                } else {
                    IssueType::Invariant
                };
                report.push(not_checked(c, &e.to_string(), code, loc));
            }
        }
    }
}

fn not_checked(c: &Constraint, reason: &str, code: IssueType, loc: &Loc<'_>) -> flint_fhir::Issue {
    issue(
        if code == IssueType::TooCostly {
            IssueSeverity::Warning
        } else {
            IssueSeverity::Information
        },
        code,
        format!("{}: the invariant could not be checked: {reason}", c.key),
        loc.render(),
    )
}

/// [`ValueSets`] as the FHIRPath engine's terminology, for `memberOf()`.
struct Terms<'t>(&'t dyn ValueSets);

impl Terminology for Terms<'_> {
    fn member_of(&self, value_set: &str, system: Option<&str>, code: &str) -> Option<bool> {
        self.0.contains(value_set, system, code).ok().flatten()
    }
}

/// `resolve()` across the entries of the document's Bundle (an entry's own resource is its
/// `%rootResource`, so the engine would not look beyond it).
struct BundleEntries<'v>(&'v Value);

impl Resolver for BundleEntries<'_> {
    fn resolve(&self, reference: &str) -> Option<&Value> {
        if self.0.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return None;
        }
        let entries = self.0.get("entry").and_then(Value::as_array)?;
        entries.iter().find_map(|entry| {
            let resource = entry.get("resource")?;
            if entry.get("fullUrl").and_then(Value::as_str) == Some(reference) {
                return Some(resource);
            }
            let ty = resource.get("resourceType").and_then(Value::as_str)?;
            let id = resource.get("id").and_then(Value::as_str)?;
            let rest = reference.strip_suffix(id)?.strip_suffix('/')?;
            (rest == ty || rest.ends_with(&format!("/{ty}"))).then_some(resource)
        })
    }
}

/// Profile invariants compiled on first use, keyed by expression; bounded, since profiles
/// come from clients.
#[derive(Default)]
pub(crate) struct CompileCache(Mutex<HashMap<String, Arc<Compiled>>>);

/// Most expressions the cache keeps before it starts over.
const MAX_CACHED: usize = 4096;

impl CompileCache {
    pub(crate) fn get(&self, text: &str) -> Arc<Compiled> {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(c) = map.get(text) {
            return c.clone();
        }
        if map.len() >= MAX_CACHED {
            map.clear();
        }
        let compiled = Arc::new(Expression::compile(text).map_err(|e| e.to_string()));
        map.insert(text.to_string(), compiled.clone());
        compiled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_invariant_compiles_and_corrections_match_the_definitions() {
        let table = Invariants::build(
            flint_fhir::definitions::types(),
            flint_fhir::definitions::profiles(),
        );
        assert_eq!(table.uncompiled(), Vec::<(&str, &str)>::new());
        assert!(
            table.constraints.len() > 1000,
            "{}",
            table.constraints.len()
        );
        // Each correction replaces an expression the core definitions really have.
        let keys = table.keys();
        for (key, original, _) in CORRECTIONS {
            assert_eq!(keys.get(*key).map(String::as_str), Some(*original), "{key}");
        }
        // Datatype profiles' invariants apply where an element names the profile.
        let low = &table.by_path["Observation.referenceRange.low"];
        assert!(low.iter().any(|&i| table.constraints[i].key == "sqty-1"));
    }
}
