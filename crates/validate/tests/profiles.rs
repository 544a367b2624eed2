//! Profiles given by a differential only: the snapshot is built on the base, and each rule of
//! the profile is checked, violated and satisfied.

mod common;

use flint_fhir::{Issue, IssueSeverity, IssueType};
use flint_validate::{snapshot, Validator};
use serde_json::{json, Value};

const FEMALE: &str = "http://example.org/fhir/StructureDefinition/female-patient";
const NAMED: &str = "http://example.org/fhir/StructureDefinition/named-female-patient";
const DOSE: &str = "http://example.org/fhir/StructureDefinition/dose-observation";

fn female_patient() -> Value {
    json!({
        "resourceType": "StructureDefinition", "url": FEMALE, "name": "FemalePatient",
        "status": "draft", "kind": "resource", "abstract": false, "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
        "derivation": "constraint",
        "differential": {"element": [
            {"id": "Patient", "path": "Patient", "constraint": [{"key": "fp-1", "severity": "error",
                "human": "A family name is required", "expression": "name.family.exists()"}]},
            {"id": "Patient.extension", "path": "Patient.extension",
                "slicing": {"discriminator": [{"type": "value", "path": "url"}], "rules": "open"}},
            {"id": "Patient.extension:birthPlace", "path": "Patient.extension", "sliceName": "birthPlace",
                "min": 1, "max": "1",
                "type": [{"code": "Extension", "profile": ["http://hl7.org/fhir/StructureDefinition/patient-birthPlace"]}]},
            {"id": "Patient.identifier", "path": "Patient.identifier", "min": 1},
            {"id": "Patient.identifier.system", "path": "Patient.identifier.system", "min": 1,
                "patternUri": "http://example.org/mrn"},
            {"id": "Patient.name.family", "path": "Patient.name.family", "maxLength": 20},
            {"id": "Patient.gender", "path": "Patient.gender", "min": 1, "fixedCode": "female"},
            {"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1},
            {"id": "Patient.maritalStatus", "path": "Patient.maritalStatus",
                "binding": {"strength": "required", "valueSet": "http://hl7.org/fhir/ValueSet/marital-status"}},
            {"id": "Patient.generalPractitioner", "path": "Patient.generalPractitioner",
                "type": [{"code": "Reference", "targetProfile": ["http://hl7.org/fhir/StructureDefinition/Practitioner"]}]}
        ]}
    })
}

/// A profile on the profile above: chained through the resolver.
fn named_female_patient() -> Value {
    json!({
        "resourceType": "StructureDefinition", "url": NAMED, "name": "NamedFemalePatient",
        "status": "draft", "kind": "resource", "abstract": false, "type": "Patient",
        "baseDefinition": FEMALE, "derivation": "constraint",
        "differential": {"element": [
            {"id": "Patient.name", "path": "Patient.name", "min": 1, "max": "1"}
        ]}
    })
}

fn dose_observation() -> Value {
    json!({
        "resourceType": "StructureDefinition", "url": DOSE, "name": "DoseObservation",
        "status": "draft", "kind": "resource", "abstract": false, "type": "Observation",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation",
        "derivation": "constraint",
        "differential": {"element": [
            {"id": "Observation.code.coding", "path": "Observation.code.coding",
                "slicing": {"discriminator": [{"type": "pattern", "path": "system"}], "rules": "open"}},
            {"id": "Observation.code.coding:local", "path": "Observation.code.coding", "sliceName": "local",
                "min": 1, "max": "1"},
            {"id": "Observation.code.coding:local.system", "path": "Observation.code.coding.system",
                "patternUri": "http://example.org/codes"},
            {"id": "Observation.code.coding:local.code", "path": "Observation.code.coding.code", "min": 1},
            {"id": "Observation.valueQuantity", "path": "Observation.valueQuantity", "min": 1},
            {"id": "Observation.valueQuantity.system", "path": "Observation.valueQuantity.system",
                "fixedUri": "http://unitsofmeasure.org"},
            {"id": "Observation.component", "path": "Observation.component",
                "slicing": {"discriminator": [{"type": "pattern", "path": "code"}], "rules": "closed"}},
            {"id": "Observation.component:route", "path": "Observation.component", "sliceName": "route",
                "min": 1, "max": "1"},
            {"id": "Observation.component:route.code", "path": "Observation.component.code",
                "patternCodeableConcept": {"coding": [{"system": "http://example.org/codes", "code": "route"}]}},
            {"id": "Observation.component:route.value[x]", "path": "Observation.component.value[x]",
                "type": [{"code": "CodeableConcept"}]},
            {"id": "Observation.performer", "path": "Observation.performer",
                "slicing": {"discriminator": [{"type": "profile", "path": "resolve()"}], "rules": "open"}},
            {"id": "Observation.performer:doctor", "path": "Observation.performer", "sliceName": "doctor",
                "type": [{"code": "Reference", "targetProfile": ["http://hl7.org/fhir/StructureDefinition/Practitioner"]}]}
        ]}
    })
}

fn resolver(url: &str) -> Option<Value> {
    [female_patient(), named_female_patient(), dose_observation()]
        .into_iter()
        .find(|p| p["url"] == url)
}

fn check(resource: &Value, profile: &Value) -> Vec<Issue> {
    Validator::core()
        .check_profile(
            resource,
            profile,
            &resolver,
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

fn good_patient() -> Value {
    json!({
        "resourceType": "Patient",
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
            "valueAddress": {"city": "Warsaw"}}],
        "identifier": [{"system": "http://example.org/mrn", "value": "1"}],
        "name": [{"family": "Curie", "given": ["Marie"]}],
        "gender": "female",
        "birthDate": "1867-11-07",
        "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]},
        "generalPractitioner": [{"reference": "Practitioner/1"}]
    })
}

#[test]
fn the_snapshot_is_built_from_the_differential() {
    let built = snapshot(&female_patient(), &resolver).unwrap();
    let ids: Vec<&str> = built
        .elements
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    for id in [
        "Patient.extension:birthPlace",
        "Patient.identifier.system",
        "Patient.name.family",
        "Patient.gender",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    let pos = |id: &str| ids.iter().position(|i| *i == id).unwrap();
    assert!(pos("Patient.extension") < pos("Patient.extension:birthPlace"));
    assert!(pos("Patient.identifier") < pos("Patient.identifier.system"));
    assert!(pos("Patient.identifier.system") < pos("Patient.active"));
    let gender = &built.elements[pos("Patient.gender")];
    assert_eq!(gender["min"], 1);
    assert_eq!(gender["fixedCode"], "female");
    assert!(built.issues.is_empty(), "{:?}", built.issues);
    // A chain: the base's differential first.
    let chained = snapshot(&named_female_patient(), &resolver).unwrap();
    let name = chained
        .elements
        .iter()
        .find(|e| e["id"] == "Patient.name")
        .unwrap();
    assert_eq!(
        (name["min"].clone(), name["max"].clone()),
        (json!(1), json!("1"))
    );
    assert!(chained.elements.iter().any(|e| e["fixedCode"] == "female"));
}

#[test]
fn a_conforming_patient_passes() {
    for profile in [female_patient(), named_female_patient()] {
        let issues = check(&good_patient(), &profile);
        assert!(issues.is_empty(), "{}: {issues:#?}", profile["url"]);
    }
}

type Case = (fn(&mut Value), &'static str, IssueType, &'static str);

#[test]
fn each_rule_of_the_profile_fails_at_its_location() {
    let cases: &[Case] = &[
        (
            |p| {
                p.as_object_mut().unwrap().remove("birthDate");
            },
            "Patient",
            IssueType::Required,
            "Patient.birthDate requires at least 1",
        ),
        (
            |p| p["gender"] = json!("male"),
            "Patient.gender",
            IssueType::Value,
            "fixed value \"female\"",
        ),
        (
            |p| {
                p.as_object_mut().unwrap().remove("gender");
            },
            "Patient",
            IssueType::Required,
            "Patient.gender requires at least 1",
        ),
        (
            |p| p["extension"][0]["url"] = json!("http://example.org/other"),
            "Patient",
            IssueType::Required,
            "slice Patient.extension:birthPlace requires at least 1",
        ),
        (
            |p| {
                let e = p["extension"][0].clone();
                p["extension"].as_array_mut().unwrap().push(e);
            },
            "Patient",
            IssueType::Structure,
            "allows at most 1",
        ),
        (
            |p| p["extension"][0] = json!({"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueString": "Warsaw"}),
            "Patient.extension[0].valueString",
            IssueType::Structure,
            "type string is not allowed",
        ),
        (
            |p| p["identifier"][0]["system"] = json!("http://example.org/other"),
            "Patient.identifier[0].system",
            IssueType::Value,
            "pattern",
        ),
        (
            |p| {
                p["identifier"][0].as_object_mut().unwrap().remove("system");
            },
            "Patient.identifier[0]",
            IssueType::Required,
            "Patient.identifier.system requires at least 1",
        ),
        (
            |p| {
                p.as_object_mut().unwrap().remove("identifier");
            },
            "Patient",
            IssueType::Required,
            "Patient.identifier requires at least 1",
        ),
        (
            |p| p["name"][0]["family"] = json!("Skłodowska-Curie-de-Varsovie"),
            "Patient.name[0].family",
            IssueType::Value,
            "at most 20",
        ),
        (
            |p| {
                p["name"][0].as_object_mut().unwrap().remove("family");
            },
            "Patient",
            IssueType::Invariant,
            "fp-1: A family name is required",
        ),
        (
            |p| p["maritalStatus"]["coding"][0]["code"] = json!("Z"),
            "Patient.maritalStatus",
            IssueType::CodeInvalid,
            "marital-status",
        ),
        (
            |p| p["generalPractitioner"][0]["reference"] = json!("Organization/1"),
            "Patient.generalPractitioner[0]",
            IssueType::Invalid,
            "points at a Organization",
        ),
    ];
    for (change, location, code, words) in cases {
        let mut patient = good_patient();
        change(&mut patient);
        let issues = check(&patient, &female_patient());
        let found = errors(&issues).iter().any(|i| {
            i.expression == [*location] && i.code == *code && i.diagnostics.contains(words)
        });
        assert!(
            found,
            "expected {code:?} '{words}' at {location}, got {issues:#?}"
        );
    }
    // The chained profile adds its rule and keeps its base's.
    let mut patient = good_patient();
    patient["gender"] = json!("male");
    patient["name"] = json!([{"family": "A"}, {"family": "B"}]);
    let issues = check(&patient, &named_female_patient());
    let at: Vec<&str> = errors(&issues)
        .iter()
        .map(|i| i.expression[0].as_str())
        .collect();
    assert_eq!(at, ["Patient.name", "Patient.gender"], "{issues:#?}");
}

/// A change to a valid resource, the location of the error it makes, words of the message.
type Change = (fn(&mut Value), &'static str, &'static str);

fn good_dose() -> Value {
    json!({
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "3141-9"},
                            {"system": "http://example.org/codes", "code": "dose"}]},
        "valueQuantity": {"value": 5, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"},
        "performer": [{"reference": "Practitioner/1"}],
        "component": [{"code": {"coding": [{"system": "http://example.org/codes", "code": "route"}], "text": "route"},
                       "valueCodeableConcept": {"text": "oral"}}]
    })
}

#[test]
fn value_and_pattern_slicing_and_type_specific_choices() {
    let profile = dose_observation();
    let issues = check(&good_dose(), &profile);
    assert!(errors(&issues).is_empty(), "{issues:#?}");
    // The profile discriminator is not supported: a warning, never an error.
    assert!(
        issues.iter().any(|i| i.severity == IssueSeverity::Warning
            && i.code == IssueType::NotSupported
            && i.diagnostics.contains("Observation.performer")),
        "{issues:#?}"
    );
    let cases: &[Change] = &[
        (
            |o| o["code"]["coding"][1]["system"] = json!("http://example.org/else"),
            "Observation.code",
            "slice Observation.code.coding:local requires at least 1",
        ),
        (
            |o| {
                o["code"]["coding"][1]
                    .as_object_mut()
                    .unwrap()
                    .remove("code");
            },
            "Observation.code.coding[1]",
            "Observation.code.coding:local.code requires at least 1",
        ),
        (
            |o| o["valueQuantity"]["system"] = json!("http://example.org/units"),
            "Observation.valueQuantity.system",
            "fixed value",
        ),
        (
            |o| {
                o.as_object_mut().unwrap().remove("valueQuantity");
                o["valueString"] = json!("5 mg");
            },
            "Observation",
            "Observation.value[x]:valueQuantity requires at least 1",
        ),
        (
            |o| o["component"][0]["code"]["coding"][0]["code"] = json!("site"),
            "Observation.component[0]",
            "matches no slice",
        ),
        (
            |o| {
                o["component"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("valueCodeableConcept");
                o["component"][0]["valueString"] = json!("oral");
            },
            "Observation.component[0].valueString",
            "type string is not allowed",
        ),
    ];
    for (change, location, words) in cases {
        let mut obs = good_dose();
        change(&mut obs);
        let issues = check(&obs, &profile);
        let found = errors(&issues)
            .iter()
            .any(|i| i.expression == [*location] && i.diagnostics.contains(words));
        assert!(found, "expected '{words}' at {location}, got {issues:#?}");
    }
}

#[test]
fn unusable_profiles_are_errors_and_other_types_are_reported() {
    let validator = Validator::core();
    let vs = common::CoreValueSets::default();
    let mut orphan = female_patient();
    orphan["baseDefinition"] = json!("http://example.org/nowhere");
    let err = validator
        .check_profile(&good_patient(), &orphan, &resolver, &vs)
        .unwrap_err();
    assert_eq!(err.code(), IssueType::NotFound);
    let mut empty = female_patient();
    empty.as_object_mut().unwrap().remove("differential");
    assert!(validator
        .check_profile(&good_patient(), &empty, &resolver, &vs)
        .is_err());
    assert!(validator
        .check_profile(
            &good_patient(),
            &json!({"resourceType": "Patient"}),
            &resolver,
            &vs
        )
        .is_err());
    // A cycle of bases stops.
    let mut cyclic = female_patient();
    cyclic["baseDefinition"] = json!(FEMALE);
    assert!(validator
        .check_profile(&good_patient(), &cyclic, &|_| Some(cyclic.clone()), &vs)
        .is_err());
    // A profile of another type.
    let issues = check(&good_dose(), &female_patient());
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].expression, ["Observation"]);
}

#[test]
fn a_costly_profile_invariant_is_not_an_error() {
    let mut profile = female_patient();
    profile["differential"]["element"][0]["constraint"] = json!([{"key": "slow-1", "severity": "error",
        "human": "slow", "expression": "(1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10).repeat($this + 10).count() > 0 and name.select(%resource.descendants().descendants().descendants()).count() >= 0"}]);
    let issues = check(&good_patient(), &profile);
    assert!(errors(&issues).is_empty(), "{issues:#?}");
    assert!(
        issues
            .iter()
            .any(|i| i.code == IssueType::TooCostly && i.diagnostics.starts_with("slow-1")),
        "{issues:#?}"
    );
}
