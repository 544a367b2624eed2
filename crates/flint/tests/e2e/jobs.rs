//! `$reindex` and the asynchronous request pattern: status URLs, progress, results,
//! cancellation, and jobs that outlive a restart.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::server::{outcome, Server};

fn nickname_parameter() -> Value {
    json!({
        "resourceType": "SearchParameter", "id": "patient-nickname", "url": "http://example.org/SearchParameter/patient-nickname",
        "name": "nickname", "status": "active", "description": "A patient's nickname", "code": "nickname",
        "base": ["Patient"], "type": "string", "expression": "Patient.name.where(use = 'nickname').given"
    })
}

fn patient(i: usize) -> Value {
    json!({"resourceType": "Patient", "id": format!("n{i}"),
           "name": [{"use": "nickname", "given": [format!("Nick{i}")]}, {"family": "Other"}]})
}

fn count(s: &Server, query: &str) -> u64 {
    let b: Value = s
        .get(&format!("{query}&_summary=count"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    b["total"].as_u64().unwrap()
}

fn post_empty(s: &Server, path: &str) -> reqwest::blocking::Response {
    s.client.post(s.url(path)).send().unwrap()
}

/// Polls a status URL until the request ends; returns the final answer.
fn poll(s: &Server, url: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = s.client.get(url).send().unwrap();
        match r.status().as_u16() {
            202 => {
                assert!(r.headers().get("x-progress").is_some());
                assert!(Instant::now() < deadline, "the job never ended");
                std::thread::sleep(Duration::from_millis(20));
            }
            200 => return r.json().unwrap(),
            other => panic!("status {other}: {}", r.text().unwrap()),
        }
    }
}

#[test]
fn reindex_applies_a_new_parameter_to_existing_resources() {
    let s = Server::start();
    for i in 0..30 {
        assert_eq!(s.put(&format!("Patient/n{i}"), &patient(i)).status(), 201);
    }
    assert_eq!(
        s.client
            .delete(s.url("Patient/n0"))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        s.put("Patient/n1", &{
            let mut p = patient(1);
            p["name"][0]["given"] = json!(["Renamed"]);
            p
        })
        .status(),
        200
    );
    assert_eq!(
        s.put("SearchParameter/patient-nickname", &nickname_parameter())
            .status(),
        201
    );
    // Written before the parameter existed: not indexed by it yet.
    assert_eq!(count(&s, "Patient?nickname=nick"), 0);

    // Within the budget the answer comes at once.
    let r = post_empty(&s, "Patient/$reindex");
    assert_eq!(r.status(), 200);
    let out: Value = r.json().unwrap();
    assert_eq!(out["resourceType"], "Parameters");
    assert_eq!(out["parameter"][0]["name"], "reindexed");
    // 29 current Patients (n0 is deleted), and no other type.
    assert_eq!(out["parameter"][0]["valueInteger"], 29);
    assert_eq!(count(&s, "Patient?nickname=nick"), 28);
    assert_eq!(count(&s, "Patient?nickname=renamed"), 1);
    // Other parameters still work after their rows were rewritten.
    assert_eq!(count(&s, "Patient?family=other"), 29);
    // Full text is kept as it was: every current Patient once, the renamed one by its new name.
    assert_eq!(count(&s, "Patient?_content=other"), 29);
    assert_eq!(count(&s, "Patient?_content=renamed"), 1);
    // System level, with a Parameters body that has no parameters.
    let r = s.post("$reindex", &json!({"resourceType": "Parameters"}));
    assert_eq!(r.status(), 200);
    let out: Value = r.json().unwrap();
    assert_eq!(
        out["parameter"][0]["valueInteger"].as_u64(),
        Some(30 + s.published()),
        "29 Patients, the SearchParameter and the published OperationDefinitions"
    );
    assert_eq!(count(&s, "Patient?_content=other"), 29);
}

#[test]
fn reindex_rejects_what_it_cannot_do() {
    let s = Server::start();
    outcome(s.get("Patient/$reindex").send().unwrap(), 405);
    outcome(s.get("$reindex").send().unwrap(), 405);
    let oo = outcome(
        s.post(
            "$reindex",
            &json!({"resourceType": "Parameters", "parameter": [{"name": "bogus", "valueString": "x"}]}),
        ),
        400,
    );
    assert!(oo.to_string().contains("bogus"));
    outcome(s.post("$reindex", &json!({"resourceType": "Patient"})), 400);
    outcome(post_empty(&s, "Nope/$reindex"), 404);
    outcome(post_empty(&s, "$no-such-operation"), 400);
    outcome(post_empty(&s, "Patient/x/$no-such-operation"), 400);
    outcome(s.get("__async-status/nope").send().unwrap(), 404);
}

#[test]
fn long_requests_answer_202_with_a_status_url() {
    // A zero budget: every background request answers 202 at once.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("FLINT_SERVER__ASYNC_BUDGET_MS", "0")];
    let s = Server::start_in(&data, &[], &env);
    // More than two batches of the job, written as transactions of 200.
    for first in (0..1200).step_by(200) {
        let entries: Vec<Value> = (first..first + 200)
            .map(|j| json!({"resource": patient(j), "request": {"method": "PUT", "url": format!("Patient/n{j}")}}))
            .collect();
        let r = s.post(
            "",
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
        );
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        s.put("SearchParameter/patient-nickname", &nickname_parameter())
            .status(),
        201
    );

    let r = post_empty(&s, "Patient/$reindex");
    assert_eq!(r.status(), 202);
    let status_url = r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        status_url.starts_with(&s.url("__async-status/")),
        "{status_url}"
    );
    let bundle = poll(&s, &status_url);
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "batch-response");
    assert_eq!(bundle["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(
        bundle["entry"][0]["resource"]["parameter"][0]["valueInteger"],
        1200
    );
    assert_eq!(count(&s, "Patient?nickname=nick"), 1200);
    // A finished request is not cancelled by a late DELETE.
    assert_eq!(s.client.delete(&status_url).send().unwrap().status(), 202);
    assert_eq!(poll(&s, &status_url)["type"], "batch-response");

    // Cancelled while running: the status URL is gone (404), as the Bulk Data IG says.
    let r = post_empty(&s, "$reindex");
    assert_eq!(r.status(), 202);
    let url = r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(s.client.delete(&url).send().unwrap().status(), 202);
    let after = s.client.get(&url).send().unwrap();
    // It may have finished before the DELETE arrived; otherwise it is cancelled.
    assert!(
        matches!(after.status().as_u16(), 200 | 404),
        "{}",
        after.status()
    );

    // A job interrupted by a stop resumes on the next start and still finishes.
    let r = post_empty(&s, "$reindex");
    assert_eq!(r.status(), 202);
    let path = r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    let path = path.rsplit_once("/fhir/").unwrap().1.to_string();
    let data = s.kill();
    let s = Server::start_in(&data, &[], &env);
    let bundle = poll(&s, &s.url(&path));
    assert_eq!(bundle["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(
        bundle["entry"][0]["resource"]["parameter"][0]["valueInteger"].as_u64(),
        Some(1201 + s.published())
    );
}

#[test]
fn compact_maintains_the_store_and_changes_no_resource() {
    let s = Server::start();
    for i in 0..20 {
        s.put(
            &format!("Patient/c{i}"),
            &json!({"resourceType": "Patient", "id": format!("c{i}"), "name": [{"family": format!("Compact{i}")}],
                    "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">patient number {i}</div>")}}),
        );
    }
    let before: Value = s.get("Patient?_count=100").send().unwrap().json().unwrap();
    let r = post_empty(&s, "$compact");
    let said: Value = match r.status().as_u16() {
        200 => r.json().unwrap(),
        202 => {
            let url = r.headers()["content-location"]
                .to_str()
                .unwrap()
                .to_string();
            poll(&s, &url)["entry"][0]["resource"].clone()
        }
        other => panic!("status {other}"),
    };
    assert_eq!(said["resourceType"], "OperationOutcome");
    assert!(said["issue"].as_array().unwrap().len() >= 3, "{said}");
    assert!(said.to_string().contains("full-text"), "{said}");
    // Nothing changed, and full-text search still finds what it found.
    let after: Value = s.get("Patient?_count=100").send().unwrap().json().unwrap();
    assert_eq!(before["entry"], after["entry"]);
    assert_eq!(count(&s, "Patient?_text=number"), 20);
    assert_eq!(count(&s, "Patient?_content=Compact3"), 1);
    // It changes the store's files: POST only.
    outcome(s.get("$compact").send().unwrap(), 405);
    outcome(post_empty(&s, "Patient/$compact"), 400);
}
