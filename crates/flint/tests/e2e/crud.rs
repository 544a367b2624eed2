//! read, vread, create, update, update-as-create, patch, delete.

use serde_json::{json, Value};

use crate::server::{outcome, Server};

fn patient() -> Value {
    json!({"resourceType": "Patient", "name": [{"family": "Chalmers", "given": ["Peter"]}], "birthDate": "1974-12-25", "gender": "male"})
}

#[test]
fn create_read_update_vread_delete() {
    let s = Server::start();
    let r = s.post("Patient", &patient());
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(r.headers()["etag"], "W/\"1\"");
    assert!(r.headers().contains_key("last-modified"));
    let created: Value = r.json().unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(location, s.url(&format!("Patient/{id}/_history/1")));
    assert_eq!(created["meta"]["versionId"], "1");
    assert!(created["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .ends_with('Z'));

    let r = s.get(&format!("Patient/{id}")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "W/\"1\"");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/fhir+json"));
    let read: Value = r.json().unwrap();
    assert_eq!(read, created);

    let mut changed = read.clone();
    changed["gender"] = json!("female");
    let r = s.put(&format!("Patient/{id}"), &changed);
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "W/\"2\"");
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        s.url(&format!("Patient/{id}/_history/2"))
    );
    let updated: Value = r.json().unwrap();
    assert_eq!(updated["gender"], "female");
    assert_eq!(updated["meta"]["versionId"], "2");

    let v1: Value = s
        .get(&format!("Patient/{id}/_history/1"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v1["gender"], "male");
    outcome(
        s.get(&format!("Patient/{id}/_history/9")).send().unwrap(),
        404,
    );
    outcome(
        s.get(&format!("Patient/{id}/_history/x")).send().unwrap(),
        404,
    );

    let r = s
        .client
        .delete(s.url(&format!("Patient/{id}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let gone = outcome(s.get(&format!("Patient/{id}")).send().unwrap(), 410);
    assert_eq!(gone["issue"][0]["code"], "deleted");
    // The deleted version is history; older versions stay readable.
    outcome(
        s.get(&format!("Patient/{id}/_history/3")).send().unwrap(),
        410,
    );
    assert_eq!(
        s.get(&format!("Patient/{id}/_history/2"))
            .send()
            .unwrap()
            .status(),
        200
    );
    // Deleting again, or deleting what never existed, succeeds.
    assert_eq!(
        s.client
            .delete(s.url(&format!("Patient/{id}")))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        s.client
            .delete(s.url("Patient/never"))
            .send()
            .unwrap()
            .status(),
        204
    );
    // Updating a deleted resource brings it back.
    let r = s.put(&format!("Patient/{id}"), &changed);
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["etag"], "W/\"4\"");
}

#[test]
fn update_as_create_keeps_the_client_id() {
    let s = Server::start();
    let mut p = patient();
    p["id"] = json!("client-chosen.1");
    let r = s.put("Patient/client-chosen.1", &p);
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        s.url("Patient/client-chosen.1/_history/1")
    );
    assert_eq!(
        s.get("Patient/client-chosen.1").send().unwrap().status(),
        200
    );
}

#[test]
fn create_ignores_a_client_id() {
    let s = Server::start();
    let mut p = patient();
    p["id"] = json!("mine");
    let created: Value = s.post("Patient", &p).json().unwrap();
    assert_ne!(created["id"], "mine");
}

#[test]
fn not_found_and_unknown_type() {
    let s = Server::start();
    let oo = outcome(s.get("Patient/nope").send().unwrap(), 404);
    assert_eq!(oo["issue"][0]["code"], "not-found");
    outcome(s.get("Patientx/1").send().unwrap(), 404);
    outcome(s.post("Nope", &json!({"resourceType": "Nope"})), 404);
    outcome(s.get("Patient/1/_history/1/extra").send().unwrap(), 404);
}

#[test]
fn json_patch() {
    let s = Server::start();
    let id = s.create(&patient());
    let patch = json!([
        {"op": "replace", "path": "/gender", "value": "female"},
        {"op": "add", "path": "/name/0/given/-", "value": "James"},
        {"op": "remove", "path": "/birthDate"}
    ]);
    let r = s
        .client
        .patch(s.url(&format!("Patient/{id}")))
        .header("content-type", "application/json-patch+json")
        .header("if-match", "W/\"1\"")
        .body(patch.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    assert_eq!(v["gender"], "female");
    assert_eq!(v["name"][0]["given"], json!(["Peter", "James"]));
    assert!(v.get("birthDate").is_none());
    assert_eq!(v["meta"]["versionId"], "2");

    let send = |body: Value, ct: &str, if_match: Option<&str>| {
        let mut req = s
            .client
            .patch(s.url(&format!("Patient/{id}")))
            .header("content-type", ct)
            .body(body.to_string());
        if let Some(m) = if_match {
            req = req.header("if-match", m);
        }
        req.send().unwrap()
    };
    // Version mismatch, failed test, invalid result, not a patch, wrong media type.
    outcome(
        send(
            json!([{"op": "remove", "path": "/gender"}]),
            "application/json-patch+json",
            Some("W/\"1\""),
        ),
        412,
    );
    outcome(
        send(
            json!([{"op": "test", "path": "/gender", "value": "male"}]),
            "application/json-patch+json",
            None,
        ),
        422,
    );
    let oo = outcome(
        send(
            json!([{"op": "add", "path": "/gender", "value": 7}]),
            "application/json-patch+json",
            None,
        ),
        400,
    );
    assert!(crate::server::has_expression(&oo, "Patient.gender"), "{oo}");
    outcome(
        send(json!({"op": "add"}), "application/json-patch+json", None),
        400,
    );
    outcome(
        send(
            json!([{"op": "jump", "path": "/x"}]),
            "application/json-patch+json",
            None,
        ),
        400,
    );
    outcome(
        send(
            json!([{"op": "replace", "path": "/id", "value": "other"}]),
            "application/json-patch+json",
            None,
        ),
        400,
    );
    outcome(send(json!([]), "text/plain", None), 415);
    let r = s
        .client
        .patch(s.url("Patient/none"))
        .header("content-type", "application/json-patch+json")
        .body("[]")
        .send()
        .unwrap();
    outcome(r, 404);
    // Nothing above changed the resource.
    let v: Value = s
        .get(&format!("Patient/{id}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["meta"]["versionId"], "2");
}
