//! The terminology operations over HTTP: `ValueSet/$expand` and `$validate-code`,
//! `CodeSystem/$lookup`, `$validate-code` and `$subsumes`, `ConceptMap/$translate`, over the
//! core terminology and over resources stored in the server.

use serde_json::{json, Value};

use crate::server::{outcome, Server};

const GENDER_VS: &str = "http://hl7.org/fhir/ValueSet/administrative-gender";
const GENDER_CS: &str = "http://hl7.org/fhir/administrative-gender";

fn get(s: &Server, path: &str) -> Value {
    let r = s.get(path).send().unwrap();
    assert_eq!(r.status(), 200, "{path}: {}", r.text().unwrap());
    r.json().unwrap()
}

/// The value of the output parameter `name`.
fn out<'v>(parameters: &'v Value, name: &str) -> &'v Value {
    let entry = parameters["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no output {name} in {parameters}"));
    entry
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.starts_with("value"))
        .map_or(entry, |(_, v)| v)
}

fn codes(value_set: &Value) -> Vec<String> {
    value_set["expansion"]["contains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap().to_string())
        .collect()
}

fn colours() -> Value {
    json!({
        "resourceType": "CodeSystem", "id": "colours", "url": "http://example.org/colours",
        "version": "1", "status": "active", "content": "complete", "hierarchyMeaning": "is-a",
        "concept": [
            {"code": "warm", "display": "Warm colours", "concept": [
                {"code": "red", "display": "Red",
                 "designation": [{"language": "de", "value": "Rot"}]},
                {"code": "orange", "display": "Orange"}
            ]},
            {"code": "cool", "display": "Cool colours", "concept": [
                {"code": "blue", "display": "Blue"}
            ]}
        ]
    })
}

#[test]
fn expand_core_and_stored_value_sets() {
    let s = Server::start();
    let vs = get(&s, &format!("ValueSet/$expand?url={GENDER_VS}"));
    assert_eq!(vs["resourceType"], "ValueSet");
    assert_eq!(vs["expansion"]["total"], 4);
    assert_eq!(codes(&vs), ["male", "female", "other", "unknown"]);
    // Paging: total stays the whole expansion's size.
    let page = get(
        &s,
        &format!("ValueSet/$expand?url={GENDER_VS}&offset=1&count=2"),
    );
    assert_eq!(page["expansion"]["total"], 4);
    assert_eq!(codes(&page), ["female", "other"]);
    // A text filter.
    let f = get(&s, &format!("ValueSet/$expand?url={GENDER_VS}&filter=fem"));
    assert_eq!(codes(&f), ["female"]);

    // A stored code system and a value set over part of it, expanded by instance.
    assert_eq!(s.put("CodeSystem/colours", &colours()).status(), 201);
    let warm = json!({
        "resourceType": "ValueSet", "id": "warm", "url": "http://example.org/vs/warm", "status": "active",
        "compose": {"include": [{"system": "http://example.org/colours",
                                 "filter": [{"property": "concept", "op": "is-a", "value": "warm"}]}],
                    "exclude": [{"system": "http://example.org/colours", "concept": [{"code": "orange"}]}]}
    });
    assert_eq!(s.put("ValueSet/warm", &warm).status(), 201);
    let vs = get(&s, "ValueSet/warm/$expand");
    assert_eq!(codes(&vs), ["warm", "red"]);
    let de = get(&s, "ValueSet/warm/$expand?displayLanguage=de");
    assert_eq!(de["expansion"]["contains"][1]["display"], "Rot");
    // A value set given in the body (POST).
    let posted = s.post(
        "ValueSet/$expand",
        &json!({"resourceType": "Parameters", "parameter": [{"name": "valueSet", "resource": warm}]}),
    );
    assert_eq!(posted.status(), 200);
    assert_eq!(codes(&posted.json().unwrap()), ["warm", "red"]);
    // The search modifiers read the same resources.
    s.put(
        "Observation/o1",
        &json!({"resourceType": "Observation", "id": "o1", "status": "final",
                "code": {"coding": [{"system": "http://example.org/colours", "code": "red"}]}}),
    );
    let found = get(&s, "Observation?code:in=http://example.org/vs/warm");
    assert_eq!(found["entry"].as_array().map(Vec::len), Some(1));
    let below = get(&s, "Observation?code:below=http://example.org/colours|warm");
    assert_eq!(below["entry"].as_array().map(Vec::len), Some(1));
}

#[test]
fn expand_refuses_what_it_cannot_do() {
    let s = Server::start();
    outcome(s.get("ValueSet/$expand").send().unwrap(), 400);
    outcome(
        s.get("ValueSet/$expand?url=http://example.org/nope")
            .send()
            .unwrap(),
        404,
    );
    outcome(
        s.get(&format!("ValueSet/$expand?url={GENDER_VS}&count=-1"))
            .send()
            .unwrap(),
        400,
    );
    outcome(
        s.get(&format!("ValueSet/$expand?url={GENDER_VS}&count=x"))
            .send()
            .unwrap(),
        400,
    );
    let oo = outcome(
        s.get(&format!("ValueSet/$expand?url={GENDER_VS}&date=2020-01-01"))
            .send()
            .unwrap(),
        400,
    );
    assert!(oo.to_string().contains("date"), "{oo}");
    // SNOMED CT is not held here: refused, not answered wrongly.
    let r = s
        .get("ValueSet/$expand?url=http://hl7.org/fhir/ValueSet/clinical-findings")
        .send()
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    outcome(s.get("ValueSet/nope/$expand").send().unwrap(), 404);
}

#[test]
fn lookup_and_code_system_validate_code() {
    let s = Server::start();
    let male = get(
        &s,
        &format!("CodeSystem/$lookup?system={GENDER_CS}&code=male"),
    );
    assert_eq!(out(&male, "display"), "Male");
    assert!(out(&male, "name").is_string());
    let coding = s.post(
        "CodeSystem/$lookup",
        &json!({"resourceType": "Parameters", "parameter": [
            {"name": "coding", "valueCoding": {"system": GENDER_CS, "code": "female"}}]}),
    );
    assert_eq!(coding.status(), 200);
    assert_eq!(out(&coding.json().unwrap(), "display"), "Female");
    outcome(
        s.get(&format!("CodeSystem/$lookup?system={GENDER_CS}&code=nope"))
            .send()
            .unwrap(),
        404,
    );
    outcome(s.get("CodeSystem/$lookup?code=male").send().unwrap(), 400);
    outcome(s.get("CodeSystem/$lookup").send().unwrap(), 400);
    // Instance level is not where $lookup lives.
    s.put("CodeSystem/colours", &colours());
    outcome(
        s.get("CodeSystem/colours/$lookup?code=red").send().unwrap(),
        400,
    );
    // A stored code system: properties from its hierarchy.
    let red = get(
        &s,
        "CodeSystem/$lookup?system=http://example.org/colours&code=red&property=parent",
    );
    let parent = red["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "property")
        .unwrap();
    assert!(parent.to_string().contains("warm"), "{parent}");

    let ok = get(&s, "CodeSystem/colours/$validate-code?code=blue");
    assert_eq!(out(&ok, "result"), true);
    let no = get(&s, "CodeSystem/colours/$validate-code?code=green");
    assert_eq!(out(&no, "result"), false);
    assert!(out(&no, "message").is_string());
    let wrong_display = get(
        &s,
        "CodeSystem/colours/$validate-code?code=blue&display=Azure",
    );
    assert_eq!(out(&wrong_display, "result"), true);
    assert_eq!(out(&wrong_display, "display"), "Blue");
    let by_url = get(
        &s,
        &format!("CodeSystem/$validate-code?url={GENDER_CS}&code=other"),
    );
    assert_eq!(out(&by_url, "result"), true);
    outcome(
        s.get("CodeSystem/colours/$validate-code").send().unwrap(),
        400,
    );
}

#[test]
fn subsumes_and_value_set_validate_code() {
    let s = Server::start();
    s.put("CodeSystem/colours", &colours());
    let outcome_of = |q: &str| out(&get(&s, q), "outcome").as_str().unwrap().to_string();
    let sys = "system=http://example.org/colours";
    assert_eq!(
        outcome_of(&format!("CodeSystem/$subsumes?{sys}&codeA=warm&codeB=red")),
        "subsumes"
    );
    assert_eq!(
        outcome_of(&format!("CodeSystem/$subsumes?{sys}&codeA=red&codeB=warm")),
        "subsumed-by"
    );
    assert_eq!(
        outcome_of(&format!("CodeSystem/$subsumes?{sys}&codeA=red&codeB=red")),
        "equivalent"
    );
    assert_eq!(
        outcome_of("CodeSystem/colours/$subsumes?codeA=red&codeB=blue"),
        "not-subsumed"
    );
    outcome(
        s.get(&format!("CodeSystem/$subsumes?{sys}&codeA=red"))
            .send()
            .unwrap(),
        400,
    );
    outcome(
        s.get(&format!("CodeSystem/$subsumes?{sys}&codeA=red&codeB=nope"))
            .send()
            .unwrap(),
        400,
    );

    let yes = get(
        &s,
        &format!("ValueSet/$validate-code?url={GENDER_VS}&system={GENDER_CS}&code=male"),
    );
    assert_eq!(out(&yes, "result"), true);
    let no = get(
        &s,
        &format!("ValueSet/$validate-code?url={GENDER_VS}&system={GENDER_CS}&code=nope"),
    );
    assert_eq!(out(&no, "result"), false);
    // A CodeableConcept is valid when any of its codings is.
    let cc = s.post(
        "ValueSet/$validate-code",
        &json!({"resourceType": "Parameters", "parameter": [
            {"name": "url", "valueUri": GENDER_VS},
            {"name": "codeableConcept", "valueCodeableConcept": {"coding": [
                {"system": "http://example.org/other", "code": "x"},
                {"system": GENDER_CS, "code": "female"}]}}]}),
    );
    assert_eq!(cc.status(), 200);
    assert_eq!(out(&cc.json().unwrap(), "result"), true);
    outcome(
        s.get(&format!("ValueSet/$validate-code?url={GENDER_VS}"))
            .send()
            .unwrap(),
        400,
    );
}

#[test]
fn translate_with_stored_and_core_maps() {
    let s = Server::start();
    let map = json!({
        "resourceType": "ConceptMap", "id": "colours-to-rgb", "url": "http://example.org/cm/rgb",
        "status": "active",
        "group": [{"source": "http://example.org/colours", "target": "http://example.org/rgb",
                   "element": [{"code": "red", "target": [{"code": "ff0000", "equivalence": "equivalent"}]},
                               {"code": "blue", "target": [{"code": "0000ff", "equivalence": "wider"}]}]}]
    });
    assert_eq!(s.put("ConceptMap/colours-to-rgb", &map).status(), 201);
    let red = get(
        &s,
        "ConceptMap/colours-to-rgb/$translate?system=http://example.org/colours&code=red",
    );
    assert_eq!(out(&red, "result"), true);
    let found = red["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "match")
        .unwrap();
    assert!(found.to_string().contains("ff0000"), "{found}");
    // Without a named map: every map that fits.
    let any = get(&s, "ConceptMap/$translate?system=http://example.org/colours&code=blue&targetsystem=http://example.org/rgb");
    assert_eq!(out(&any, "result"), true);
    let none = get(
        &s,
        "ConceptMap/colours-to-rgb/$translate?system=http://example.org/colours&code=green",
    );
    assert_eq!(out(&none, "result"), false);
    // Backwards.
    let back = get(&s, "ConceptMap/colours-to-rgb/$translate?system=http://example.org/rgb&code=ff0000&reverse=true");
    assert_eq!(out(&back, "result"), true);
    outcome(
        s.get("ConceptMap/colours-to-rgb/$translate")
            .send()
            .unwrap(),
        400,
    );
    outcome(
        s.get("ConceptMap/$translate?url=http://example.org/cm/nope&system=a&code=b")
            .send()
            .unwrap(),
        404,
    );
}

#[test]
fn terminology_operations_are_advertised() {
    let s = Server::start();
    let cs = get(&s, "metadata");
    let text = cs.to_string();
    for url in [
        "http://hl7.org/fhir/OperationDefinition/ValueSet-expand",
        "http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup",
        "http://hl7.org/fhir/OperationDefinition/CodeSystem-subsumes",
        "http://hl7.org/fhir/OperationDefinition/ConceptMap-translate",
        "http://hl7.org/fhir/OperationDefinition/ValueSet-validate-code",
        "http://hl7.org/fhir/OperationDefinition/CodeSystem-validate-code",
    ] {
        assert!(text.contains(url), "{url} not in the CapabilityStatement");
    }
}
