//! The core vital signs profiles (with snapshots) against the official examples, and broken
//! copies of them.

mod common;

use flint_fhir::{Issue, IssueSeverity};
use flint_validate::Validator;
use serde_json::{json, Value};

fn profile(url: &str) -> &'static Value {
    flint_fhir::definitions::profiles()
        .iter()
        .find(|p| p["url"] == url)
        .unwrap_or_else(|| panic!("no profile {url}"))
}

fn check(resource: &Value, url: &str) -> Vec<Issue> {
    Validator::core()
        .check_profile(
            resource,
            profile(url),
            &|_| None,
            &common::CoreValueSets::default(),
        )
        .unwrap()
}

fn errors(issues: &[Issue]) -> Vec<&Issue> {
    issues
        .iter()
        .filter(|i| i.severity == IssueSeverity::Error)
        .collect()
}

const VS: &str = "http://hl7.org/fhir/StructureDefinition/";

/// Each vital signs example with its own profile.
const EXAMPLES: &[(&str, &str)] = &[
    ("blood-pressure", "bp"),
    ("blood-pressure-cancel", "bp"),
    ("blood-pressure-dar", "bp"),
    ("heart-rate", "heartrate"),
    ("respiratory-rate", "resprate"),
    ("body-temperature", "bodytemp"),
    ("body-height", "bodyheight"),
    ("body-length", "bodyheight"),
    ("head-circumference", "headcircum"),
    ("satO2", "oxygensat"),
    ("bmi", "bmi"),
    ("example", "bodyweight"),
    ("vitals-panel", "vitalspanel"),
];

#[test]
fn official_vital_signs_examples_conform() {
    for (id, name) in EXAMPLES {
        let obs = common::example("Observation", id);
        for url in [format!("{VS}vitalsigns"), format!("{VS}{name}")] {
            let issues = check(&obs, &url);
            for i in &issues {
                eprintln!("{id} {url}: {i:?}");
            }
            assert!(
                errors(&issues).is_empty(),
                "{id} against {url}: {issues:#?}"
            );
        }
    }
}

/// `(profile, example, change, expected error location, words in the message)`.
type Broken = (
    &'static str,
    &'static str,
    fn(&mut Value),
    &'static str,
    &'static str,
);

#[test]
fn broken_copies_fail_at_the_right_location() {
    let cases: &[Broken] = &[
        (
            "bp",
            "blood-pressure",
            |o| o["component"][0]["code"]["coding"][0]["code"] = json!("1234-5"),
            "Observation",
            "slice Observation.component:SystolicBP requires at least 1",
        ),
        (
            "bp",
            "blood-pressure",
            |o| o["valueQuantity"] = json!({"value": 1, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}),
            "Observation",
            "slice Observation.value[x]:valueQuantity allows at most 0",
        ),
        (
            "bp",
            "blood-pressure",
            |o| o["component"][1]["valueQuantity"]["code"] = json!("mmHg"),
            "Observation.component[1].valueQuantity.code",
            "fixed value",
        ),
        (
            "heartrate",
            "heart-rate",
            |o| o["valueQuantity"]["code"] = json!("beats/min"),
            "Observation.valueQuantity.code",
            "\"/min\"",
        ),
        (
            "heartrate",
            "heart-rate",
            |o| {
                o.as_object_mut().unwrap().remove("valueQuantity");
                o["valueString"] = json!("44");
            },
            "Observation.valueString",
            "type string is not allowed",
        ),
        (
            "vitalsigns",
            "heart-rate",
            |o| o["category"][0]["coding"][0]["code"] = json!("laboratory"),
            "Observation",
            "slice Observation.category:VSCat requires at least 1",
        ),
        (
            "vitalsigns",
            "heart-rate",
            |o| {
                o.as_object_mut().unwrap().remove("effectiveDateTime");
            },
            "Observation",
            "Observation.effective[x] requires at least 1",
        ),
        (
            "vitalsigns",
            "heart-rate",
            |o| o["subject"] = json!({"reference": "Group/1"}),
            "Observation.subject",
            "points at a Group",
        ),
        (
            // vs-2: a value or components, or a dataAbsentReason (a constraint the profile adds).
            "vitalsigns",
            "heart-rate",
            |o| {
                o.as_object_mut().unwrap().remove("valueQuantity");
            },
            "Observation",
            "vs-2:",
        ),
    ];
    for (name, id, change, location, words) in cases {
        let mut obs = common::example("Observation", id);
        change(&mut obs);
        let issues = check(&obs, &format!("{VS}{name}"));
        let found = errors(&issues)
            .into_iter()
            .any(|i| i.expression == [*location] && i.diagnostics.contains(words));
        assert!(
            found,
            "{name} on a changed {id}: expected '{words}' at {location}, got {issues:#?}"
        );
    }
}

#[test]
fn every_example_conforms_to_the_core_profiles_it_claims() {
    let mut checked = 0;
    for r in common::examples() {
        for url in r["meta"]["profile"].as_array().into_iter().flatten() {
            let Some(profile) = flint_fhir::definitions::profiles()
                .iter()
                .find(|p| p["url"] == *url)
            else {
                continue;
            };
            let issues = Validator::core()
                .check_profile(&r, profile, &|_| None, &common::CoreValueSets::default())
                .unwrap();
            assert!(errors(&issues).is_empty(), "{} {url}: {issues:#?}", r["id"]);
            checked += 1;
        }
    }
    assert_eq!(checked, 13);
}
