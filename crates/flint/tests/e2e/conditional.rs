//! Conditional create, update, patch and delete, alone and inside transactions.

use serde_json::{json, Value};

use crate::server::{outcome, Server};

fn patient(mrn: &str) -> Value {
    json!({"resourceType": "Patient", "identifier": [{"system": "http://mrn", "value": mrn}], "gender": "female"})
}

fn total(s: &Server, query: &str) -> u64 {
    let b: Value = s.get(query).send().unwrap().json().unwrap();
    b["total"].as_u64().unwrap()
}

#[test]
fn conditional_create_update_patch_delete() {
    let s = Server::start();
    let create = |mrn: &str| {
        s.client
            .post(s.url("Patient"))
            .header("content-type", "application/fhir+json")
            .header("if-none-exist", format!("identifier=http://mrn|{mrn}"))
            .body(patient(mrn).to_string())
            .send()
            .unwrap()
    };
    let r = create("1");
    assert_eq!(r.status(), 201);
    let first: Value = r.json().unwrap();
    let r = create("1");
    assert_eq!(
        r.status(),
        200,
        "an existing match is returned, nothing created"
    );
    let again: Value = r.json().unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(total(&s, "Patient?identifier=http://mrn|1"), 1);
    // Unknown criteria are never ignored in a conditional interaction.
    let r = s
        .client
        .post(s.url("Patient"))
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", "nonsense=1")
        .body(patient("x").to_string())
        .send()
        .unwrap();
    outcome(r, 400);

    // Conditional update: no match creates, one match updates it.
    let put = |criteria: &str, body: &Value| {
        s.client
            .put(s.url(&format!("Patient?{criteria}")))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .unwrap()
    };
    let r = put("identifier=http://mrn|2", &patient("2"));
    assert_eq!(r.status(), 201);
    let two: Value = r.json().unwrap();
    let mut changed = patient("2");
    changed["gender"] = json!("male");
    let r = put("identifier=http://mrn|2", &changed);
    assert_eq!(r.status(), 200);
    let updated: Value = r.json().unwrap();
    assert_eq!(
        (updated["id"].clone(), updated["gender"].clone()),
        (two["id"].clone(), json!("male"))
    );
    let mut wrong_id = changed.clone();
    wrong_id["id"] = json!("someone-else");
    outcome(put("identifier=http://mrn|2", &wrong_id), 400);
    // Two matches: 412.
    assert_eq!(s.post("Patient", &patient("3")).status(), 201);
    assert_eq!(s.post("Patient", &patient("3")).status(), 201);
    let oo = outcome(put("identifier=http://mrn|3", &patient("3")), 412);
    assert_eq!(oo["issue"][0]["code"], "multiple-matches");
    let r = s
        .client
        .post(s.url("Patient"))
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", "identifier=http://mrn|3")
        .body(patient("3").to_string())
        .send()
        .unwrap();
    outcome(r, 412);

    // Conditional patch.
    let r = s
        .client
        .patch(s.url("Patient?identifier=http://mrn|1"))
        .header("content-type", "application/json-patch+json")
        .body(json!([{"op": "replace", "path": "/gender", "value": "other"}]).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(total(&s, "Patient?gender=other"), 1);
    let r = s
        .client
        .patch(s.url("Patient?identifier=http://mrn|404"))
        .header("content-type", "application/json-patch+json")
        .body("[]")
        .send()
        .unwrap();
    outcome(r, 404);

    // Conditional delete removes every match.
    assert_eq!(total(&s, "Patient?identifier=http://mrn|3"), 2);
    let r = s
        .client
        .delete(s.url("Patient?identifier=http://mrn|3"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(total(&s, "Patient?identifier=http://mrn|3"), 0);
    assert_eq!(
        s.client
            .delete(s.url("Patient?identifier=http://mrn|none"))
            .send()
            .unwrap()
            .status(),
        204
    );
    outcome(s.client.delete(s.url("Patient")).send().unwrap(), 400);
}

#[test]
fn conditional_entries_and_references_in_a_transaction() {
    let s = Server::start();
    assert_eq!(s.post("Organization", &json!({"resourceType": "Organization", "identifier": [{"system": "http://org", "value": "acme"}], "name": "Acme"})).status(), 201);
    let existing = s.create(&patient("10"));
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0d8e6c1e-0000-4000-8000-000000000001", "resource": patient("10"),
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=http://mrn|10"}},
        {"fullUrl": "urn:uuid:0d8e6c1e-0000-4000-8000-000000000002", "resource": patient("11"),
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=http://mrn|11"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "urn:uuid:0d8e6c1e-0000-4000-8000-000000000001"},
                      "performer": [{"reference": "Organization?identifier=http://org|acme"}],
                      "focus": [{"reference": "urn:uuid:0d8e6c1e-0000-4000-8000-000000000002"}]},
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Patient", "gender": "male", "identifier": [{"system": "http://mrn", "value": "12"}]},
         "request": {"method": "PUT", "url": "Patient?identifier=http://mrn|12"}}
    ]});
    let r = s.post("", &tx);
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let resp: Value = s.get("Observation").send().unwrap().json().unwrap();
    let obs = &resp["entry"][0]["resource"];
    assert_eq!(
        obs["subject"]["reference"],
        format!("Patient/{existing}"),
        "ifNoneExist matched the existing patient"
    );
    assert!(obs["performer"][0]["reference"]
        .as_str()
        .unwrap()
        .starts_with("Organization/"));
    let focus = obs["focus"][0]["reference"].as_str().unwrap();
    assert_eq!(s.get(focus).send().unwrap().status(), 200);
    assert_eq!(total(&s, "Patient?identifier=http://mrn|10"), 1);
    assert_eq!(total(&s, "Patient?identifier=http://mrn|12"), 1);

    // A conditional reference that matches nothing fails the whole transaction.
    let bad = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "Patient?identifier=http://mrn|nobody"}},
         "request": {"method": "POST", "url": "Observation"}}
    ]});
    outcome(s.post("", &bad), 412);
    assert_eq!(total(&s, "Observation"), 1);
}

/// Concurrent Bundles with the same conditional create: exactly one resource is created, in
/// transactions (the write job re-checks the search) and in batches (the search runs in it).
#[test]
fn concurrent_conditional_creates_in_bundles_create_once() {
    let s = Server::start();
    for (kind, mrn) in [("transaction", "race-t"), ("batch", "race-b")] {
        let bundle = json!({"resourceType": "Bundle", "type": kind, "entry": [{
            "resource": patient(mrn),
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier=http://mrn|{mrn}")}
        }]});
        let statuses: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (client, base, bundle) = (s.client.clone(), s.base.clone(), bundle.clone());
                    scope.spawn(move || {
                        let r = client.post(&base).json(&bundle).send().unwrap();
                        assert_eq!(r.status(), 200);
                        let b: Value = r.json().unwrap();
                        b["entry"][0]["response"]["status"]
                            .as_str()
                            .unwrap()
                            .to_string()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let created = statuses.iter().filter(|s| s.starts_with("201")).count();
        assert_eq!(created, 1, "{kind}: {statuses:?}");
        assert!(
            statuses
                .iter()
                .all(|s| s.starts_with("201") || s.starts_with("200")),
            "{statuses:?}"
        );
        assert_eq!(
            total(&s, &format!("Patient?identifier=http://mrn|{mrn}")),
            1,
            "{kind}"
        );
    }
}
