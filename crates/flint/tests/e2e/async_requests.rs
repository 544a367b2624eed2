//! `Prefer: respond-async` on every kind of request that may take long (SPEC section 5):
//! searches, history, batches, transactions and operations answer `202` with a status URL
//! when they outlast the budget, and their result is the response they would have had.

use std::time::{Duration, Instant};

use flint_engine::{Context, Limits};
use serde_json::{json, Value};

use crate::server::{outcome, Gate, Server};

/// An in-process server whose every background request answers 202 at once.
fn impatient() -> Server {
    Server::start_limited(Limits {
        async_budget: Duration::ZERO,
        ..Limits::default()
    })
}

fn send_async(
    s: &Server,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> reqwest::blocking::Response {
    let mut r = s
        .client
        .request(method.parse().unwrap(), s.url(path))
        .header("prefer", "respond-async");
    if let Some(body) = body {
        r = r
            .header("content-type", "application/fhir+json")
            .body(body.to_string());
    }
    r.send().unwrap()
}

/// The status URL of a 202 answer.
fn status_url(r: reqwest::blocking::Response) -> String {
    assert_eq!(r.status(), 202, "{}", r.text().unwrap());
    let url = r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    let oo: Value = r.json().unwrap();
    assert_eq!(oo["resourceType"], "OperationOutcome");
    url
}

/// Polls until the request ends; returns the single entry of the `batch-response` Bundle.
fn result(s: &Server, url: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = s.client.get(url).send().unwrap();
        match r.status().as_u16() {
            202 => {
                assert!(r.headers().get("x-progress").is_some());
                assert!(r.headers().get("retry-after").is_some());
                assert!(Instant::now() < deadline, "the request never ended");
                std::thread::sleep(Duration::from_millis(10));
            }
            200 => {
                let bundle: Value = r.json().unwrap();
                assert_eq!(bundle["type"], "batch-response");
                assert_eq!(bundle["entry"].as_array().unwrap().len(), 1);
                return bundle["entry"][0].clone();
            }
            other => panic!("status {other}: {}", r.text().unwrap()),
        }
    }
}

#[test]
fn every_kind_of_long_request_answers_202_then_its_response() {
    let s = impatient();
    for i in 0..3 {
        s.put(
            &format!("Patient/p{i}"),
            &json!({"resourceType": "Patient", "id": format!("p{i}"), "gender": "female"}),
        );
    }

    // Search, by GET and by POST with a form.
    let entry = result(
        &s,
        &status_url(send_async(
            &s,
            "GET",
            "Patient?gender=female&_count=2&_total=accurate",
            None,
        )),
    );
    assert_eq!(entry["response"]["status"], "200 OK");
    let page = &entry["resource"];
    assert_eq!(
        (page["type"].as_str(), page["total"].as_u64()),
        (Some("searchset"), Some(3))
    );
    assert_eq!(page["entry"].as_array().unwrap().len(), 2);
    // Its paging links work like any search's.
    let next = page["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap();
    let second: Value = s
        .client
        .get(next["url"].as_str().unwrap())
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(second["entry"].as_array().unwrap().len(), 1);
    let form = s
        .client
        .post(s.url("Patient/_search"))
        .header("prefer", "respond-async")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("gender=male")
        .send()
        .unwrap();
    let entry = result(&s, &status_url(form));
    assert_eq!(entry["resource"]["total"], 0);

    // History.
    let entry = result(
        &s,
        &status_url(send_async(&s, "GET", "Patient/p1/_history", None)),
    );
    assert_eq!(entry["resource"]["type"], "history");

    // A transaction: the result is its transaction-response, and the writes are there.
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "t1"}, "request": {"method": "PUT", "url": "Patient/t1"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
         "request": {"method": "POST", "url": "Observation"}}
    ]});
    let entry = result(&s, &status_url(send_async(&s, "POST", "", Some(&tx))));
    assert_eq!(entry["response"]["status"], "200 OK");
    assert_eq!(entry["resource"]["type"], "transaction-response");
    assert_eq!(s.get("Patient/t1").send().unwrap().status(), 200);

    // An operation: $validate's OperationOutcome, and a write through $meta-add.
    let entry = result(
        &s,
        &status_url(send_async(
            &s,
            "POST",
            "Patient/$validate",
            Some(&json!({"resourceType": "Patient", "gender": "nope"})),
        )),
    );
    assert_eq!(entry["resource"]["resourceType"], "OperationOutcome");
    let tag = json!({"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": {"tag": [{"system": "http://e.org", "code": "async"}]}}]});
    let entry = result(
        &s,
        &status_url(send_async(&s, "POST", "Patient/p0/$meta-add", Some(&tag))),
    );
    assert_eq!(entry["response"]["status"], "200 OK");
    let p0: Value = s.get("Patient/p0").send().unwrap().json().unwrap();
    assert_eq!(p0["meta"]["tag"][0]["code"], "async");

    // A request that fails still ends with its real status and OperationOutcome.
    let bad = s
        .client
        .get(s.url("Patient?nope=1"))
        .header("prefer", "respond-async, handling=strict")
        .send()
        .unwrap();
    let entry = result(&s, &status_url(bad));
    assert_eq!(entry["response"]["status"], "400 Bad Request");
    assert_eq!(entry["resource"]["resourceType"], "OperationOutcome");

    // Reads and single writes are answered at once: respond-async is a preference.
    let r = send_async(&s, "GET", "Patient/p0", None);
    assert_eq!(r.status(), 200);
}

#[test]
fn a_quick_request_is_answered_synchronously_within_the_budget() {
    let s = Server::start();
    s.put("Patient/a", &json!({"resourceType": "Patient", "id": "a"}));
    let r = send_async(&s, "GET", "Patient?_id=a", None);
    assert_eq!(r.status(), 200);
    let bundle: Value = r.json().unwrap();
    assert_eq!(
        (bundle["type"].as_str(), bundle["total"].as_u64()),
        (Some("searchset"), Some(1))
    );
}

#[test]
fn cancelling_stops_the_work_and_the_status_url_is_gone() {
    let s = impatient();
    let gate = Gate::default();
    s.engine().set_search_hook(Some(gate.hook()));
    let url = status_url(send_async(&s, "GET", "Patient", None));
    gate.wait_held(1);
    let r = s.client.get(&url).send().unwrap();
    assert_eq!(r.status(), 202);
    let cancelled = s.client.delete(&url).send().unwrap();
    assert_eq!(cancelled.status(), 202);
    let said: Value = cancelled.json().unwrap();
    assert!(said.to_string().contains("cancelled"), "{said}");
    outcome(s.client.get(&url).send().unwrap(), 404);
    // The held search saw its interrupt and stopped.
    let deadline = Instant::now() + Duration::from_secs(10);
    while gate.cancelled.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the search never stopped");
        std::thread::sleep(Duration::from_millis(5));
    }
    gate.release();
    // A DELETE of something that does not exist is a 404.
    outcome(
        s.client
            .delete(s.url("__async-status/nope"))
            .send()
            .unwrap(),
        404,
    );
}

#[test]
fn only_its_owner_sees_an_asynchronous_request() {
    let s = impatient();
    let url = status_url(send_async(&s, "GET", "Patient", None));
    result(&s, &url);
    let id = url.rsplit('/').next().unwrap();
    let mine = Context::new("http://localhost/fhir");
    assert!(s.engine().job_status(&mine, id).is_ok());
    let mut other = Context::new("http://localhost/fhir");
    other.caller.subject = Some("mallory".into());
    assert_eq!(s.engine().job_status(&other, id).unwrap_err().status(), 404);
    let mut elsewhere = Context::new("http://localhost/fhir");
    elsewhere.tenant = "other".into();
    assert_eq!(
        s.engine().job_status(&elsewhere, id).unwrap_err().status(),
        404
    );
}

/// A job record as another node left it: a deferred request of `body`'s kind.
fn orphan(
    id: &str,
    node: &str,
    lease_until: i64,
    commits: u64,
    request: Value,
) -> flint_store::JobRecord {
    flint_store::JobRecord {
        id: id.into(),
        kind: "request".into(),
        state: flint_store::JobState::Running,
        request: request.to_string(),
        progress: "{}".into(),
        result: None,
        created: 1,
        updated: 1,
        owner: Context::new("x").owner(),
        node: node.into(),
        lease_until,
        commits,
    }
}

fn kept(method: &str, path: &str, body: Value, read_only: bool) -> Value {
    json!({
        "method": method, "path": path, "query": null, "params": [], "headers": {},
        "body": if body.is_null() { Value::Null } else { json!({"json": body}) },
        "baseUrl": "http://localhost/fhir", "tenant": "default", "requestId": "r1",
        "caller": {"subject": null, "fhirUser": null, "scopes": []}, "readOnly": read_only
    })
}

#[test]
fn a_dead_nodes_jobs_are_taken_over_or_ended_clearly() {
    use flint_store::Store;
    let s = Server::start();
    s.put("Patient/a", &json!({"resourceType": "Patient", "id": "a"}));
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "b"}, "request": {"method": "PUT", "url": "Patient/b"}}
    ]});
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let jobs = [
        // A search whose node's lease ran out: run again.
        orphan(
            "search",
            "dead",
            now - 1,
            0,
            kept("GET", "Patient", Value::Null, true),
        ),
        // A transaction that never committed: run again.
        orphan(
            "fresh-tx",
            "dead",
            now - 1,
            0,
            kept("POST", "", tx.clone(), false),
        ),
        // A transaction that had committed: ended, saying so.
        orphan(
            "done-tx",
            "dead",
            now - 1,
            1,
            kept("POST", "", tx.clone(), false),
        ),
        // A job whose node is alive (its lease holds): left alone.
        orphan(
            "alive",
            "other",
            now + 60_000_000,
            0,
            kept("GET", "Patient", Value::Null, true),
        ),
    ];
    let engine = s.engine().clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        for job in jobs {
            engine
                .store()
                .write(move |t| t.put_job(&job))
                .await
                .unwrap();
        }
        engine.keep_jobs().await.unwrap();
    });
    let ended = |id: &str| -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let job = engine.store().job(id).unwrap().unwrap();
            if job.state != flint_store::JobState::Running {
                return serde_json::from_str(job.result.as_deref().unwrap()).unwrap();
            }
            assert!(Instant::now() < deadline, "{id} never ended");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    assert_eq!(ended("search")["resource"]["total"], 1);
    assert_eq!(
        ended("fresh-tx")["resource"]["type"],
        "transaction-response"
    );
    assert_eq!(s.get("Patient/b").send().unwrap().status(), 200);
    let lost = ended("done-tx");
    assert_eq!(lost["status"], 500);
    assert!(lost["resource"].to_string().contains("committed"), "{lost}");
    let alive = engine.store().job("alive").unwrap().unwrap();
    assert_eq!(
        (alive.state, alive.node.as_str()),
        (flint_store::JobState::Running, "other")
    );
    // The taken-over jobs now carry this node's name.
    assert_eq!(
        engine.store().job("search").unwrap().unwrap().node,
        engine.node()
    );
}

#[test]
fn an_asynchronous_request_survives_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("FLINT_SERVER__ASYNC_BUDGET_MS", "0")];
    let s = Server::start_in(&data, &[], &env);
    let entries: Vec<Value> = (0..300)
        .map(|i| json!({"resource": {"resourceType": "Patient", "id": format!("k{i}")}, "request": {"method": "PUT", "url": format!("Patient/k{i}")}}))
        .collect();
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let url = status_url(send_async(&s, "POST", "", Some(&tx)));
    let path = url.rsplit_once("/fhir/").unwrap().1.to_string();
    let data = s.kill();
    // Whether it committed before the kill or not, it ends with its response or a clear
    // error, and never half-written.
    let s = Server::start_in(&data, &[], &env);
    let entry = result(&s, &s.url(&path));
    let total = |s: &Server| -> u64 {
        let b: Value = s
            .get("Patient?_summary=count")
            .send()
            .unwrap()
            .json()
            .unwrap();
        b["total"].as_u64().unwrap()
    };
    match entry["response"]["status"].as_str().unwrap() {
        "200 OK" => assert_eq!(total(&s), 300),
        other => {
            assert!(other.starts_with("500"), "{other}");
            assert!(entry["resource"].to_string().contains("committed"));
            assert_eq!(total(&s), 300);
        }
    }
}

#[test]
fn a_search_in_the_background_has_its_own_longer_time_limit() {
    let s = Server::start_limited(Limits {
        async_budget: Duration::ZERO,
        search_timeout: Duration::from_millis(50),
        async_search_timeout: Duration::from_secs(60),
        ..Limits::default()
    });
    s.put("Patient/a", &json!({"resourceType": "Patient", "id": "a"}));
    // Every search takes 200 ms before it reads: past the synchronous limit only.
    s.engine()
        .set_search_hook(Some(std::sync::Arc::new(|interrupt| {
            let until = Instant::now() + Duration::from_millis(200);
            while Instant::now() < until {
                interrupt.check()?;
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        })));
    outcome(s.get("Patient").send().unwrap(), 422);
    let entry = result(&s, &status_url(send_async(&s, "GET", "Patient", None)));
    assert_eq!(entry["response"]["status"], "200 OK");
    assert_eq!(entry["resource"]["total"], 1);
}
