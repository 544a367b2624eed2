//! The core invariants and required bindings on small resources: each rule failing at its
//! location, contained resources and Bundle entries, and hostile input staying bounded.

mod common;

use flint_fhir::{Issue, IssueSeverity, IssueType};
use flint_validate::{NoValueSets, Validator, MAX_ISSUES};
use serde_json::{json, Value};

fn check(resource: &Value) -> Vec<Issue> {
    Validator::core().check(resource, &common::CoreValueSets::default())
}

/// The `(key or code, location)` of each error.
fn errors(resource: &Value) -> Vec<(String, String)> {
    check(resource)
        .into_iter()
        .filter(|i| i.severity == IssueSeverity::Error)
        .map(|i| {
            let what = match i.code {
                IssueType::Invariant => i.diagnostics.split(':').next().unwrap().to_string(),
                other => other.code().to_string(),
            };
            (what, i.expression.join(","))
        })
        .collect()
}

fn pair(what: &str, at: &str) -> (String, String) {
    (what.to_string(), at.to_string())
}

#[test]
fn invariants_fail_at_their_location() {
    let cases = [
        (
            json!({"resourceType": "Patient", "contact": [{"name": {"family": "A"}}, {"gender": "female"}]}),
            vec![pair("pat-1", "Patient.contact[1]")],
        ),
        (
            json!({"resourceType": "Patient", "name": [{"family": "A", "period": {"start": "2020-01-02", "end": "2019-05-01"}}]}),
            vec![pair("per-1", "Patient.name[0].period")],
        ),
        (
            json!({"resourceType": "Patient", "name": [{"family": "A", "period": {"start": "2019-01-02", "end": "2020"}}]}),
            vec![],
        ),
        (
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "valueQuantity": {"value": 1, "code": "mg"}}),
            vec![pair("qty-3", "Observation.valueQuantity")],
        ),
        (
            json!({"resourceType": "Patient", "extension": [{"url": "http://e.org/x", "valueString": "a",
                   "extension": [{"url": "y", "valueString": "b"}]}]}),
            vec![pair("ext-1", "Patient.extension[0]")],
        ),
        (
            json!({"resourceType": "Patient", "_birthDate": {"extension": [{"url": "http://e.org/x"}]}}),
            vec![pair("ext-1", "Patient.birthDate.extension[0]")],
        ),
        (
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "valueString": "a", "dataAbsentReason": {"text": "b"}}),
            vec![pair("obs-6", "Observation")],
        ),
        (
            json!({"resourceType": "Observation", "status": "final",
                   "code": {"coding": [{"system": "http://loinc.org", "code": "1-1"}]},
                   "valueString": "a",
                   "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "1-1"}]}, "valueString": "b"}]}),
            vec![pair("obs-7", "Observation")],
        ),
        (
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "referenceRange": [{"text": "normal"}, {"appliesTo": [{"text": "adults"}]}]}),
            vec![pair("obs-3", "Observation.referenceRange[1]")],
        ),
        (
            json!({"resourceType": "Patient", "managingOrganization": {"reference": "#missing"}}),
            vec![pair("ref-1", "Patient.managingOrganization")],
        ),
    ];
    for (resource, want) in cases {
        assert_eq!(errors(&resource), want, "{resource}");
    }
}

#[test]
fn required_bindings() {
    let cases = [
        (
            json!({"resourceType": "Patient", "gender": "boy"}),
            vec![pair("code-invalid", "Patient.gender")],
        ),
        (
            json!({"resourceType": "Patient", "gender": "female"}),
            vec![],
        ),
        (
            json!({"resourceType": "Patient", "name": [{"use": "nickname"}, {"use": "alias", "text": "x"}]}),
            vec![pair("code-invalid", "Patient.name[1].use")],
        ),
        (
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "valueQuantity": {"value": 1, "comparator": "<<"}}),
            vec![pair("code-invalid", "Observation.valueQuantity.comparator")],
        ),
        (
            json!({"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/1"},
                   "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "gone"}]}}),
            vec![pair("code-invalid", "AllergyIntolerance.clinicalStatus")],
        ),
        (
            json!({"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/1"},
                   "clinicalStatus": {"text": "active"}}),
            vec![pair("code-invalid", "AllergyIntolerance.clinicalStatus")],
        ),
        (
            json!({"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/1"},
                   "clinicalStatus": {"coding": [
                       {"system": "http://example.org/other", "code": "x"},
                       {"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]}}),
            vec![],
        ),
    ];
    for (resource, want) in cases {
        assert_eq!(errors(&resource), want, "{resource}");
    }
    // The message names the value set and the code.
    let issues = check(&json!({"resourceType": "Patient", "gender": "boy"}));
    let issues: Vec<_> = issues
        .into_iter()
        .filter(|i| i.severity == IssueSeverity::Error)
        .collect();
    assert_eq!(issues[0].code, IssueType::CodeInvalid);
    assert!(issues[0].diagnostics.contains("'boy'"), "{issues:?}");
    assert!(issues[0]
        .diagnostics
        .contains("http://hl7.org/fhir/ValueSet/administrative-gender"));
    // A server that cannot tell leaves the binding unchecked.
    let unknown = Validator::core().check(
        &json!({"resourceType": "Patient", "gender": "boy"}),
        &NoValueSets,
    );
    assert!(
        unknown.iter().all(|i| i.code != IssueType::CodeInvalid),
        "{unknown:?}"
    );
}

#[test]
fn contained_resources_and_bundle_entries_are_their_own_resource() {
    // `%resource` in obs-7 is the contained Observation: its own code matches the component.
    let contained_obs = json!({"resourceType": "Observation", "id": "o", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "1-1"}]}, "valueString": "a",
        "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "1-1"}]}, "valueString": "b"}]});
    let report = json!({"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "r"},
        "contained": [contained_obs], "result": [{"reference": "#o"}]});
    assert_eq!(
        errors(&report),
        [pair("obs-7", "DiagnosticReport.contained[0]")]
    );
    // ... and a container with that code does not make a contained one fail.
    let mut fine = report.clone();
    fine["contained"][0]["code"] =
        json!({"coding": [{"system": "http://loinc.org", "code": "2-2"}]});
    fine["code"] = json!({"coding": [{"system": "http://loinc.org", "code": "1-1"}]});
    assert_eq!(errors(&fine), []);
    // A contained resource's reference to a sibling resolves in its container (%rootResource).
    let siblings = json!({"resourceType": "Patient", "managingOrganization": {"reference": "#org"},
        "generalPractitioner": [{"reference": "#pr"}],
        "contained": [
            {"resourceType": "Organization", "id": "org", "name": "O"},
            {"resourceType": "PractitionerRole", "id": "pr", "organization": {"reference": "#org"}}]});
    assert_eq!(errors(&siblings), []);
    // A contained resource nobody refers to breaks dom-3.
    let mut orphan = siblings.clone();
    orphan["contained"][1]["id"] = json!("nobody");
    orphan["generalPractitioner"] = json!([{"display": "x"}]);
    assert_eq!(errors(&orphan), [pair("dom-3", "Patient")]);

    // Bundle entries: locations inside the entry, and each entry its own `%rootResource`.
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "http://e.org/Patient/1", "resource": {"resourceType": "Patient", "id": "1",
            "contained": [{"resourceType": "Organization", "id": "org", "name": "O"}],
            "managingOrganization": {"reference": "#org"}}},
        {"fullUrl": "http://e.org/Patient/2", "resource": {"resourceType": "Patient", "id": "2", "contact": [{"gender": "male"}]}}]});
    assert_eq!(
        errors(&bundle),
        [pair("pat-1", "Bundle.entry[1].resource.contact[0]")]
    );
    let mut doc = bundle.clone();
    doc["entry"][1]["resource"]["gender"] = json!("boy");
    assert!(errors(&doc).contains(&pair("code-invalid", "Bundle.entry[1].resource.gender")));
}

#[test]
fn hostile_resources_stay_bounded() {
    // Deep nesting: Questionnaire items nested far beyond any real resource.
    let mut item = json!({"linkId": "x", "type": "group"});
    for _ in 0..200 {
        item = json!({"linkId": "x", "type": "group", "item": [item]});
    }
    let deep = json!({"resourceType": "Questionnaire", "status": "active", "item": [item]});
    let issues = check(&deep);
    assert!(
        issues.iter().any(|i| i.code == IssueType::TooCostly),
        "{issues:?}"
    );

    // Many elements: the work budget stops the check with a warning.
    let names: Vec<Value> = (0..120_000)
        .map(|i| json!({"family": format!("n{i}")}))
        .collect();
    let wide = json!({"resourceType": "Patient", "name": names});
    let issues = Validator::core().check(&wide, &NoValueSets);
    assert!(
        issues
            .iter()
            .any(|i| i.code == IssueType::TooCostly && i.severity == IssueSeverity::Warning),
        "{:?}",
        &issues[..issues.len().min(3)]
    );
    assert!(issues.len() <= MAX_ISSUES + 2);

    // Many failures: the issues are capped.
    let contacts: Vec<Value> = (0..500).map(|_| json!({"gender": "male"})).collect();
    let issues = check(&json!({"resourceType": "Patient", "contact": contacts}));
    assert_eq!(issues.len(), MAX_ISSUES + 1);
    assert!(issues[MAX_ISSUES]
        .diagnostics
        .contains("more issues were found"));

    // Wrong JSON shapes everywhere: never a panic.
    let odd = [
        json!(null),
        json!([1, 2]),
        json!("Patient"),
        json!({"resourceType": 5}),
        json!({"resourceType": "Nope"}),
        json!({"resourceType": "Patient", "name": "x", "contact": [null, 3, {"name": []}],
               "birthDate": {"a": 1}, "_birthDate": [1], "extension": {"url": 1},
               "gender": 7, "contained": [{"resourceType": "Patient", "contained": "x"}, 1]}),
        json!({"resourceType": "Observation", "valueQuantity": "x", "component": {"code": 1},
               "referenceRange": [{"low": [1]}]}),
        json!({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Bundle",
               "entry": [{"resource": {"resourceType": "Patient", "contact": [{}]}}]}}]}),
    ];
    for r in odd {
        let _ = check(&r);
    }
}

#[test]
fn every_shape_of_every_example_is_checked_without_panic() {
    // Each example with its values replaced, one kind of JSON at a time.
    let replacements = [
        json!(null),
        json!("x"),
        json!(1.5),
        json!([]),
        json!({}),
        json!([{"a": null}]),
    ];
    for (n, r) in common::examples().iter().enumerate().step_by(7) {
        let Some(obj) = r.as_object() else { continue };
        for (k, _) in obj.iter().filter(|(k, _)| *k != "resourceType").take(6) {
            let mut changed = r.clone();
            changed[k] = replacements[n % replacements.len()].clone();
            let _ = Validator::core().check(&changed, &NoValueSets);
        }
    }
}
