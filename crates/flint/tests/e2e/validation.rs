//! Validation on write: every kind of malformed input is a 400 OperationOutcome naming the
//! path, and nothing is written.

use serde_json::{json, Value};

use crate::server::{has_expression, outcome, Server};

#[test]
fn malformed_resources_are_rejected_with_their_path() {
    let s = Server::start();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"resourceType": "Patient", "unknownElement": 1}),
            "Patient.unknownElement",
        ),
        (
            json!({"resourceType": "Patient", "active": "yes"}),
            "Patient.active",
        ),
        (
            json!({"resourceType": "Patient", "birthDate": "1974-02-30"}),
            "Patient.birthDate",
        ),
        (
            json!({"resourceType": "Patient", "birthDate": "74-12-25"}),
            "Patient.birthDate",
        ),
        (
            json!({"resourceType": "Patient", "deceasedDateTime": "2020-01-01T10:00:00"}),
            "Patient.deceasedDateTime",
        ),
        (
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "issued": "2020-01-01"}),
            "Observation.issued",
        ),
        (
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": "12"}}),
            "Observation.valueQuantity.value",
        ),
        (
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueTime": "25:00:00"}),
            "Observation.valueTime",
        ),
        (
            json!({"resourceType": "Patient", "multipleBirthBoolean": 1}),
            "Patient.multipleBirthBoolean",
        ),
        (
            json!({"resourceType": "Patient", "gender": " male"}),
            "Patient.gender",
        ),
        (
            json!({"resourceType": "Patient", "id": "has space"}),
            "Patient.id",
        ),
        (
            json!({"resourceType": "Patient", "implicitRules": "has space"}),
            "Patient.implicitRules",
        ),
        (
            json!({"resourceType": "Patient", "photo": [{"data": "@@@"}]}),
            "Patient.photo[0].data",
        ),
        (
            json!({"resourceType": "Patient", "extension": [{"url": "http://x", "valueOid": "urn:oid:1.2.x"}]}),
            "Patient.extension[0].valueOid",
        ),
        (
            json!({"resourceType": "Patient", "extension": [{"url": "http://x", "valueUuid": "urn:uuid:not-a-uuid"}]}),
            "Patient.extension[0].valueUuid",
        ),
        (
            json!({"resourceType": "Patient", "extension": [{"url": "http://x", "valuePositiveInt": 0}]}),
            "Patient.extension[0].valuePositiveInt",
        ),
        (
            json!({"resourceType": "Patient", "extension": [{"url": "http://x", "valueUnsignedInt": -1}]}),
            "Patient.extension[0].valueUnsignedInt",
        ),
        (
            json!({"resourceType": "Patient", "extension": [{"url": "http://x", "valueInstant": "2020-01-01T00:00:00"}]}),
            "Patient.extension[0].valueInstant",
        ),
        (
            json!({"resourceType": "Patient", "name": {"family": "x"}}),
            "Patient.name",
        ),
        (
            json!({"resourceType": "Patient", "birthDate": ["1974-12-25"]}),
            "Patient.birthDate",
        ),
        (
            json!({"resourceType": "Patient", "name": []}),
            "Patient.name",
        ),
        (
            json!({"resourceType": "Patient", "name": [{}]}),
            "Patient.name[0]",
        ),
        (
            json!({"resourceType": "Patient", "name": [{"family": ""}]}),
            "Patient.name[0].family",
        ),
        (
            json!({"resourceType": "Patient", "deceasedBoolean": false, "deceasedDateTime": "2020"}),
            "Patient.deceasedDateTime",
        ),
        (
            json!({"resourceType": "Observation", "status": "final"}),
            "Observation.code",
        ),
        (
            json!({"resourceType": "Patient", "extension": [{"url": "http://x", "valueFoo": 1}]}),
            "Patient.extension[0].valueFoo",
        ),
        (
            json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "name": 5}]}),
            "Patient.contained[0].name",
        ),
        (
            json!({"resourceType": "Patient", "contact": [{"gender": "x y  z"}]}),
            "Patient.contact[0].gender",
        ),
        (
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueInteger": 1.5}),
            "Observation.valueInteger",
        ),
        (
            json!({"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": "Patient/1"}, "prediction": [{"probabilityDecimal": "0.5"}]}),
            "RiskAssessment.prediction[0].probabilityDecimal",
        ),
    ];
    for (resource, expression) in &cases {
        let rt = resource["resourceType"].as_str().unwrap();
        let r = s.post(rt, resource);
        assert_eq!(r.status(), 400, "{resource} was accepted");
        let oo = outcome(r, 400);
        assert!(
            has_expression(&oo, expression),
            "{resource}: expected {expression} in {oo}"
        );
    }
    let history: Value = s.get("_history").send().unwrap().json().unwrap();
    assert_eq!(history["total"], s.published(), "nothing may be written");
}

#[test]
fn bodies_that_are_not_resources() {
    let s = Server::start();
    let raw = |body: &str| {
        s.client
            .post(s.url("Patient"))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .unwrap()
    };
    outcome(raw("{not json"), 400);
    outcome(raw(""), 400);
    outcome(raw("[1,2]"), 400);
    outcome(raw("\"Patient\""), 400);
    outcome(raw("{}"), 400);
    outcome(raw(r#"{"name": [{"family": "x"}]}"#), 400);
    outcome(raw(r#"{"resourceType": 7}"#), 400);
    let oo = outcome(
        raw(r#"{"resourceType": "Observation", "status": "final", "code": {"text": "x"}}"#),
        400,
    );
    assert!(oo.to_string().contains("Observation"), "{oo}");
    // A type or id that does not match the URL.
    let oo = outcome(
        s.put("Patient/a", &json!({"resourceType": "Patient", "id": "b"})),
        400,
    );
    assert!(has_expression(&oo, "Patient.id"), "{oo}");
    outcome(s.put("Patient/a", &json!({"resourceType": "Patient"})), 400);
    outcome(
        s.put(
            "Patient/a",
            &json!({"resourceType": "Observation", "id": "a"}),
        ),
        400,
    );
    outcome(
        s.put(
            "Patient/bad%20id",
            &json!({"resourceType": "Patient", "id": "bad id"}),
        ),
        400,
    );
    // Deep nesting and odd input never crash the server.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    outcome(raw(&deep), 400);
    let mut nested = json!({"url": "http://x", "valueString": "x"});
    for _ in 0..200 {
        nested = json!({"url": "http://x", "extension": [nested]});
    }
    outcome(
        s.post(
            "Patient",
            &json!({"resourceType": "Patient", "extension": [nested]}),
        ),
        400,
    );
    outcome(
        raw("{\"resourceType\": \"Patient\", \"active\": true, \"active\": false"),
        400,
    );
    assert_eq!(
        s.get("metadata").send().unwrap().status(),
        200,
        "the server is still up"
    );
}

#[test]
fn valid_real_world_resources_are_accepted() {
    let s = Server::start();
    let resources = [
        json!({"resourceType": "Observation", "status": "final",
               "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
               "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}]},
               "subject": {"reference": "Patient/example"}, "effectiveDateTime": "2012-09-17",
               "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                              "valueQuantity": {"value": 107.0, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}]}),
        json!({"resourceType": "Patient", "name": [{"given": ["A", null], "_given": [null, {"extension": [{"url": "http://x", "valueCode": "x"}]}]}],
               "_gender": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]}}),
        json!({"resourceType": "Questionnaire", "status": "active", "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "boolean", "enableWhen": [{"question": "x", "operator": "exists", "answerBoolean": true}]}]}]}),
        json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": {"reference": "Patient/1"},
               "medicationCodeableConcept": {"text": "aspirin"}, "contained": [{"resourceType": "Medication", "id": "m1"}],
               "dosageInstruction": [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d", "boundsPeriod": {"start": "2020-01-01"}}}}]}),
    ];
    for r in resources {
        let rt = r["resourceType"].as_str().unwrap();
        let resp = s.post(rt, &r);
        assert_eq!(resp.status(), 201, "{rt}: {}", resp.text().unwrap());
    }
}
