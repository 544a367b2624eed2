//! Batch and transaction Bundles.

use serde_json::{json, Value};

use crate::server::{outcome, Server};

fn entry(method: &str, url: &str, full_url: Option<&str>, resource: Option<Value>) -> Value {
    let mut e = json!({"request": {"method": method, "url": url}});
    if let Some(f) = full_url {
        e["fullUrl"] = json!(f);
    }
    if let Some(r) = resource {
        e["resource"] = r;
    }
    e
}

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

#[test]
fn transaction_resolves_placeholders_everywhere() {
    let s = Server::start();
    let org = "urn:uuid:2b4bde4c-3f43-4b4f-9f7a-5e1d0b0c1a01";
    let pat = "urn:uuid:9e8d7c6b-5a49-4382-a716-2b1c0d9e8f70";
    let enc = "urn:oid:1.2.3.4.5";
    let b = bundle(
        "transaction",
        vec![
            // Referenced before it is defined: order in the Bundle must not matter.
            entry(
                "POST",
                "Observation",
                None,
                Some(
                    json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                "subject": {"reference": pat}, "encounter": {"reference": enc},
                "performer": [{"reference": org}],
                "extension": [{"url": "http://x", "extension": [{"url": "deep", "valueReference": {"reference": pat}}]}],
                "contained": [{"resourceType": "Provenance", "id": "p", "recorded": "2020-01-01T00:00:00Z", "agent": [{"who": {"reference": org}}], "target": [{"reference": pat}]}]}),
                ),
            ),
            entry(
                "POST",
                "Patient",
                Some(pat),
                Some(
                    json!({"resourceType": "Patient", "managingOrganization": {"reference": org}}),
                ),
            ),
            entry(
                "POST",
                "Organization",
                Some(org),
                Some(json!({"resourceType": "Organization", "name": "Acme"})),
            ),
            entry(
                "POST",
                "Encounter",
                Some(enc),
                Some(
                    json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "subject": {"reference": pat}}),
                ),
            ),
            entry(
                "PUT",
                "Patient/fixed-id",
                Some("urn:uuid:00000000-0000-4000-8000-000000000001"),
                Some(
                    json!({"resourceType": "Patient", "id": "fixed-id", "link": [{"other": {"reference": pat}, "type": "seealso"}]}),
                ),
            ),
        ],
    );
    let r = s.post("", &b);
    assert_eq!(r.status(), 200);
    let resp: Value = r.json().unwrap();
    assert_eq!(resp["type"], "transaction-response");
    let entries = resp["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    let statuses: Vec<&str> = entries
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["201 Created"; 5]);
    let location = |i: usize| -> String {
        let l = entries[i]["response"]["location"].as_str().unwrap();
        let path = l.strip_prefix(&format!("{}/", s.base)).unwrap();
        path.split("/_history").next().unwrap().to_string()
    };
    let (obs, patient, organization, encounter) =
        (location(0), location(1), location(2), location(3));
    let o: Value = s.get(&obs).send().unwrap().json().unwrap();
    assert_eq!(o["subject"]["reference"], patient.as_str());
    assert_eq!(o["encounter"]["reference"], encounter.as_str());
    assert_eq!(o["performer"][0]["reference"], organization.as_str());
    assert_eq!(
        o["extension"][0]["extension"][0]["valueReference"]["reference"],
        patient.as_str()
    );
    assert_eq!(
        o["contained"][0]["agent"][0]["who"]["reference"],
        organization.as_str()
    );
    assert_eq!(
        o["contained"][0]["target"][0]["reference"],
        patient.as_str()
    );
    let p: Value = s.get(&patient).send().unwrap().json().unwrap();
    assert_eq!(
        p["managingOrganization"]["reference"],
        organization.as_str()
    );
    let fixed: Value = s.get("Patient/fixed-id").send().unwrap().json().unwrap();
    assert_eq!(fixed["link"][0]["other"]["reference"], patient.as_str());
    assert_eq!(location(4), "Patient/fixed-id");
}

#[test]
fn transaction_is_atomic() {
    let s = Server::start();
    let keep = s.create(&json!({"resourceType": "Patient", "active": true}));
    let before: Value = s.get("_history").send().unwrap().json().unwrap();
    // Valid entries, then one whose If-Match fails: nothing at all may be written.
    let b = bundle(
        "transaction",
        vec![
            entry(
                "POST",
                "Patient",
                Some("urn:uuid:11111111-1111-4111-8111-111111111111"),
                Some(json!({"resourceType": "Patient"})),
            ),
            entry("DELETE", &format!("Patient/{keep}"), None, None),
            {
                let mut e = entry(
                    "PUT",
                    "Patient/x1",
                    None,
                    Some(json!({"resourceType": "Patient", "id": "x1"})),
                );
                e["request"]["ifMatch"] = json!("W/\"3\"");
                e
            },
        ],
    );
    let oo = outcome(s.post("", &b), 412);
    assert!(
        oo["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Bundle.entry[2]"),
        "{oo}"
    );
    // An invalid resource in any entry: 400 naming the entry.
    let b = bundle(
        "transaction",
        vec![
            entry(
                "POST",
                "Patient",
                None,
                Some(json!({"resourceType": "Patient"})),
            ),
            entry(
                "POST",
                "Patient",
                None,
                Some(json!({"resourceType": "Patient", "birthDate": "never"})),
            ),
        ],
    );
    let oo = outcome(s.post("", &b), 400);
    assert!(
        crate::server::has_expression(&oo, "Bundle.entry[1].resource.birthDate"),
        "{oo}"
    );
    // A reference to a placeholder no entry defines.
    let b = bundle(
        "transaction",
        vec![entry(
            "POST",
            "Observation",
            None,
            Some(
                json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "urn:uuid:99999999-9999-4999-8999-999999999999"}}),
            ),
        )],
    );
    outcome(s.post("", &b), 400);
    // The same resource twice.
    let b = bundle(
        "transaction",
        vec![
            entry(
                "PUT",
                "Patient/dup",
                None,
                Some(json!({"resourceType": "Patient", "id": "dup"})),
            ),
            entry("DELETE", "Patient/dup", None, None),
        ],
    );
    outcome(s.post("", &b), 400);
    let after: Value = s.get("_history").send().unwrap().json().unwrap();
    assert_eq!(
        before["total"], after["total"],
        "failed transactions wrote nothing"
    );
    assert_eq!(
        s.get(&format!("Patient/{keep}")).send().unwrap().status(),
        200
    );
}

#[test]
fn transaction_processes_in_specification_order() {
    let s = Server::start();
    let old = s.create(&json!({"resourceType": "Patient", "active": true}));
    let b = bundle(
        "transaction",
        vec![
            entry("GET", &format!("Patient/{old}"), None, None),
            entry(
                "PUT",
                "Patient/new-one",
                None,
                Some(json!({"resourceType": "Patient", "id": "new-one"})),
            ),
            entry("GET", "Patient/new-one", None, None),
            entry("DELETE", &format!("Patient/{old}"), None, None),
        ],
    );
    // GET runs after DELETE, so reading the deleted patient fails the transaction...
    outcome(s.post("", &b), 410);
    assert_eq!(
        s.get(&format!("Patient/{old}")).send().unwrap().status(),
        200,
        "...and rolls the delete back"
    );
    // ...while the GET of the resource created in the same transaction sees it.
    let b = bundle(
        "transaction",
        vec![
            entry("GET", "Patient/new-one", None, None),
            entry(
                "PUT",
                "Patient/new-one",
                None,
                Some(json!({"resourceType": "Patient", "id": "new-one", "active": true})),
            ),
        ],
    );
    let resp: Value = s.post("", &b).json().unwrap();
    assert_eq!(resp["entry"][0]["resource"]["active"], true);
    assert_eq!(resp["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(resp["entry"][1]["response"]["status"], "201 Created");
}

#[test]
fn batch_reports_each_entry() {
    let s = Server::start();
    let existing = s.create(&json!({"resourceType": "Patient", "active": true}));
    let b = bundle(
        "batch",
        vec![
            entry(
                "POST",
                "Patient",
                None,
                Some(json!({"resourceType": "Patient"})),
            ),
            entry(
                "POST",
                "Patient",
                None,
                Some(json!({"resourceType": "Patient", "gender": 3})),
            ),
            entry("GET", &format!("Patient/{existing}"), None, None),
            entry("GET", "Patient/missing", None, None),
            entry(
                "PUT",
                "Patient/b1",
                None,
                Some(json!({"resourceType": "Patient", "id": "b1"})),
            ),
            entry("DELETE", &format!("Patient/{existing}"), None, None),
            entry(
                "POST",
                "NoSuchType",
                None,
                Some(json!({"resourceType": "NoSuchType"})),
            ),
            json!({"request": {"method": "POST"}}),
            entry(
                "PUT",
                "http://elsewhere.example/fhir/Patient/abs1",
                None,
                Some(json!({"resourceType": "Patient", "id": "abs1"})),
            ),
        ],
    );
    let r = s.post("", &b);
    assert_eq!(r.status(), 200);
    let resp: Value = r.json().unwrap();
    assert_eq!(resp["type"], "batch-response");
    // Entries run in the specification's order: the DELETE of the existing patient comes
    // before the GET of it, whatever their order in the Bundle.
    let statuses: Vec<String> = resp["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        statuses,
        vec![
            "201 Created",
            "400 Bad Request",
            "410 Gone",
            "404 Not Found",
            "201 Created",
            "204 No Content",
            "404 Not Found",
            "400 Bad Request",
            "201 Created"
        ]
    );
    assert_eq!(
        resp["entry"][1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert_eq!(s.get("Patient/b1").send().unwrap().status(), 200);
    assert_eq!(
        s.get("Patient/abs1").send().unwrap().status(),
        200,
        "absolute request URLs name the resource"
    );
}

#[test]
fn bundle_endpoint_rejects_other_input() {
    let s = Server::start();
    outcome(
        s.post("", &json!({"resourceType": "Bundle", "type": "collection"})),
        400,
    );
    outcome(s.post("", &json!({"resourceType": "Patient"})), 400);
    outcome(
        s.post(
            "",
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": {"x": 1}}),
        ),
        400,
    );
    outcome(
        s.post(
            "",
            &bundle(
                "transaction",
                vec![json!({"resource": {"resourceType": "Patient"}})],
            ),
        ),
        400,
    );
    outcome(
        s.post(
            "",
            &bundle(
                "transaction",
                vec![entry(
                    "POST",
                    "Patient",
                    None,
                    Some(json!({"resourceType": "Observation"})),
                )],
            ),
        ),
        400,
    );
    outcome(
        s.post(
            "",
            &bundle("transaction", vec![entry("HEAD", "Patient/1", None, None)]),
        ),
        400,
    );
    let empty: Value = s.post("", &bundle("transaction", vec![])).json().unwrap();
    assert_eq!(empty["type"], "transaction-response");
}
