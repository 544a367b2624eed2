//! The official R4 examples are valid: the core invariants and required bindings find no
//! error in any of them.

mod common;

use std::collections::BTreeMap;

use flint_fhir::IssueSeverity;
use flint_validate::Validator;

#[test]
fn r4_examples_have_no_errors() {
    let examples = common::examples();
    assert_eq!(examples.len(), 715);
    let value_sets = common::CoreValueSets::default();
    let validator = Validator::core();
    let mut by_kind: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for r in &examples {
        for issue in validator.check(r, &value_sets) {
            *counts.entry(issue.severity.code()).or_default() += 1;
            let key = issue
                .diagnostics
                .split(':')
                .next()
                .unwrap_or("")
                .to_string();
            let kind = format!("{} {} {}", issue.severity.code(), issue.code.code(), key);
            by_kind.entry(kind).or_default().push(format!(
                "{}/{} at {}: {}",
                r["resourceType"].as_str().unwrap_or(""),
                r["id"].as_str().unwrap_or(""),
                issue.expression.join(", "),
                issue.diagnostics
            ));
        }
    }
    for (kind, hits) in &by_kind {
        eprintln!("{kind}: {}", hits.len());
        for h in hits.iter().take(3) {
            eprintln!("    {h}");
        }
    }
    eprintln!("issues by severity: {counts:?}");
    let [yes, no, unknown] = &value_sets.answers;
    eprintln!(
        "required bindings looked up: {yes:?} in the value set, {no:?} not, {unknown:?} unknown"
    );
    let errors: Vec<_> = by_kind
        .iter()
        .filter(|(k, _)| k.starts_with(IssueSeverity::Error.code()))
        .collect();
    assert!(errors.is_empty(), "errors on valid examples: {errors:#?}");
}
