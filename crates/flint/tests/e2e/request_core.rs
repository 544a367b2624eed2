//! The request core under pressure: one implementation of each write whatever the path,
//! costly work that cannot stall quick requests, limits that end in OperationOutcomes, and
//! work that stops when its client hangs up. Searches are held open with the engine's search
//! hook rather than by timing.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use flint_engine::Limits;
use serde_json::{json, Value};

use crate::server::{outcome, Gate, Server};

fn lanes(threads: usize, queue: usize) -> Limits {
    let mut limits = Limits::default();
    limits.lanes.costly_threads = threads;
    limits.lanes.costly_queue = queue;
    limits.lanes.costly_niceness = 0;
    limits
}

fn binary_patch(ops: &Value) -> Value {
    use base64::Engine as _;
    json!({
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64::engine::general_purpose::STANDARD.encode(ops.to_string())
    })
}

#[test]
fn a_patch_may_not_change_the_type_by_any_path() {
    let s = Server::start();
    let id = s.create(&json!({"resourceType": "Patient", "name": [{"family": "Kind"}]}));
    let ops = json!([
        {"op": "replace", "path": "/resourceType", "value": "Observation"},
        {"op": "remove", "path": "/name"},
        {"op": "add", "path": "/status", "value": "final"},
        {"op": "add", "path": "/code", "value": {"text": "x"}}
    ]);
    let direct = s
        .client
        .patch(s.url(&format!("Patient/{id}")))
        .header("content-type", "application/json-patch+json")
        .body(ops.to_string())
        .send()
        .unwrap();
    outcome(direct, 400);
    for kind in ["transaction", "batch"] {
        let bundle = json!({"resourceType": "Bundle", "type": kind, "entry": [{
            "resource": binary_patch(&ops),
            "request": {"method": "PATCH", "url": format!("Patient/{id}")}
        }]});
        let r = s.post("", &bundle);
        if kind == "transaction" {
            let oo = outcome(r, 400);
            assert!(oo.to_string().contains("may not change"), "{oo}");
        } else {
            let b: Value = r.json().unwrap();
            assert_eq!(
                b["entry"][0]["response"]["status"], "400 Bad Request",
                "{b}"
            );
        }
    }
    let now: Value = s
        .get(&format!("Patient/{id}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(now["resourceType"], "Patient");
    assert_eq!(now["meta"]["versionId"], "1");
}

#[test]
fn bundle_get_entries_go_through_the_core() {
    let s = Server::start();
    let id = s.create(&json!({"resourceType": "Patient", "name": [{"family": "Entry"}]}));
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient?family=Entry"}},
        {"request": {"method": "GET", "url": format!("Patient/{id}/_history")}},
        {"request": {"method": "GET", "url": "metadata"}},
        {"request": {"method": "GET", "url": format!("Patient/{id}?_elements=id")}}
    ]});
    let b: Value = s.post("", &bundle).json().unwrap();
    let e = &b["entry"];
    assert_eq!(e[0]["resource"]["type"], "searchset", "{b}");
    assert_eq!(e[0]["resource"]["entry"][0]["resource"]["id"], id.as_str());
    assert_eq!(e[1]["resource"]["type"], "history");
    assert_eq!(e[2]["resource"]["resourceType"], "CapabilityStatement");
    assert!(e[3]["resource"].get("name").is_none(), "{}", e[3]);
    // In a transaction, searches run after the writes and see them.
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": "Patient?family=Later"}},
        {"resource": {"resourceType": "Patient", "name": [{"family": "Later"}]},
         "request": {"method": "POST", "url": "Patient"}}
    ]});
    let b: Value = s.post("", &tx).json().unwrap();
    assert_eq!(b["entry"][0]["resource"]["total"], 1, "{b}");
    assert_eq!(b["entry"][1]["response"]["status"], "201 Created");
}

#[test]
fn reads_are_answered_while_costly_searches_hold_every_thread() {
    let s = Server::start_limited(lanes(2, 8));
    let id = s.create(&json!({"resourceType": "Patient"}));
    let gate = Gate::default();
    s.engine().set_search_hook(Some(gate.hook()));
    let searches: Vec<_> = (0..2)
        .map(|_| {
            let (client, url) = (s.client.clone(), s.url("Patient?_count=1"));
            std::thread::spawn(move || client.get(url).send().unwrap().status().as_u16())
        })
        .collect();
    gate.wait_held(2);
    // Both costly threads are busy: a read still answers, and so does a write.
    let r = s.get(&format!("Patient/{id}")).send().unwrap();
    assert_eq!(r.status(), 200);
    s.create(&json!({"resourceType": "Patient"}));
    gate.release();
    for t in searches {
        assert_eq!(t.join().unwrap(), 200);
    }
}

#[test]
fn a_full_costly_lane_answers_503_with_retry_after() {
    // One thread and no queue: while a search is held, the next costly request is refused.
    let s = Server::start_limited(lanes(1, 0));
    let gate = Gate::default();
    s.engine().set_search_hook(Some(gate.hook()));
    let held = {
        let (client, url) = (s.client.clone(), s.url("Patient"));
        std::thread::spawn(move || client.get(url).send().unwrap().status().as_u16())
    };
    gate.wait_held(1);
    let r = s.get("Observation").send().unwrap();
    assert_eq!(r.headers()["retry-after"], "1");
    let oo = outcome(r, 503);
    assert_eq!(oo["issue"][0]["code"], "transient");
    // Quick requests are not affected.
    assert_eq!(s.get("metadata").send().unwrap().status(), 200);
    gate.release();
    assert_eq!(held.join().unwrap(), 200);
}

#[test]
fn searches_and_history_stop_at_their_time_limit() {
    let s = Server::start_limited(Limits {
        search_timeout: Duration::from_millis(50),
        ..Limits::default()
    });
    s.create(&json!({"resourceType": "Patient"}));
    // The hook outlasts the deadline and then lets the search run: the store refuses it.
    s.engine().set_search_hook(Some(Arc::new(|interrupt| {
        while !interrupt.is_due() {
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    })));
    for path in ["Patient?_total=accurate", "Patient/_history"] {
        let oo = outcome(s.get(path).send().unwrap(), 422);
        assert_eq!(oo["issue"][0]["code"], "too-costly", "{oo}");
        assert!(oo.to_string().contains("timeout_ms"), "{oo}");
    }
    s.engine().set_search_hook(None);
    assert_eq!(s.get("Patient").send().unwrap().status(), 200);
}

#[test]
fn a_client_that_hangs_up_stops_its_search() {
    let s = Server::start();
    let gate = Gate::default();
    s.engine().set_search_hook(Some(gate.hook()));
    let impatient = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    assert!(impatient.get(s.url("Patient")).send().is_err());
    // The server saw the connection close and set the search's interrupt.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while gate.cancelled.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the search was not stopped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    gate.release();
}

#[test]
fn oversized_searches_are_refused_in_searches_and_conditional_urls() {
    let s = Server::start();
    let many: Vec<String> = (0..5000).map(|i| format!("id{i}")).collect();
    let oo = outcome(
        s.get(&format!("Patient?_id={}", many.join(",")))
            .send()
            .unwrap(),
        400,
    );
    assert_eq!(oo["issue"][0]["code"], "too-costly");
    let repeated: Vec<String> = (0..2000).map(|i| format!("family=f{i}")).collect();
    outcome(
        s.get(&format!("Patient?{}", repeated.join("&")))
            .send()
            .unwrap(),
        400,
    );
    let r = s
        .client
        .put(s.url(&format!("Patient?identifier={}", many.join(","))))
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Patient"}).to_string())
        .send()
        .unwrap();
    outcome(r, 400);
    // A quantity beyond any stored number is a clean error too.
    let oo = outcome(
        s.get("Observation?value-quantity=1e999999").send().unwrap(),
        400,
    );
    assert!(oo["issue"][0]["diagnostics"].is_string());
}

#[test]
fn includes_cut_at_their_limit_say_so() {
    let s = Server::start_limited(Limits {
        max_included: 3,
        ..Limits::default()
    });
    let p = s.create(&json!({"resourceType": "Patient"}));
    for _ in 0..5 {
        s.create(&json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "x"}, "subject": {"reference": format!("Patient/{p}")}}));
    }
    let b: Value = s
        .get(&format!("Patient?_id={p}&_revinclude=Observation:subject"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let entries = b["entry"].as_array().unwrap();
    let modes: Vec<&str> = entries
        .iter()
        .map(|e| e["search"]["mode"].as_str().unwrap())
        .collect();
    assert_eq!(
        modes,
        ["match", "include", "include", "include", "outcome"],
        "{b}"
    );
    let note = &entries[4]["resource"];
    assert_eq!(note["resourceType"], "OperationOutcome");
    assert!(note.to_string().contains("max_include"), "{note}");
}

#[test]
fn hostile_transport_input_gets_operation_outcomes() {
    let s = Server::start();
    // An id that is not UTF-8.
    outcome(s.get("Patient/%FF%FE").send().unwrap(), 404);
    // An encoding the server does not speak.
    let r = s
        .client
        .post(s.url("Patient"))
        .header("content-type", "application/fhir+json")
        .header("content-encoding", "br")
        .body("xxxx")
        .send()
        .unwrap();
    outcome(r, 415);
    // A URL over the HTTP layer's limit is refused before any handler runs, still with an
    // OperationOutcome.
    // (Sent by hand: HTTP clients refuse to build such a URL.)
    let answer = s.raw(
        format!(
            "GET /fhir/Patient?name={} HTTP/1.1\r\nHost: x\r\n\r\n",
            "a".repeat(70_000)
        )
        .as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer}");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("application/fhir+json"), "{head}");
    let oo: Value = serde_json::from_str(body).unwrap();
    assert_eq!(oo["issue"][0]["code"], "too-long");
}

#[test]
fn paging_links_open_only_for_their_caller() {
    let s = Server::start();
    for _ in 0..3 {
        s.create(&json!({"resourceType": "Patient"}));
    }
    let engine = s.engine();
    let mut alice = flint_engine::Context::new("http://x/fhir");
    alice.caller.subject = Some("alice".into());
    let search =
        flint_engine::Request::parse(flint_engine::HttpMethod::Get, "Patient", Some("_count=1"))
            .unwrap();
    let page = engine.dispatch(&alice, search).unwrap();
    let bundle: Value = serde_json::from_str(&page.payload_text().unwrap()).unwrap();
    let next = bundle["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://x/fhir/")
        .to_string();
    let follow = |ctx: &flint_engine::Context| {
        engine.dispatch(
            ctx,
            flint_engine::Request::parse(flint_engine::HttpMethod::Get, &next, None).unwrap(),
        )
    };
    assert_eq!(follow(&alice).unwrap().status, 200);
    let mut bob = flint_engine::Context::new("http://x/fhir");
    bob.caller.subject = Some("bob".into());
    assert_eq!(follow(&bob).unwrap_err().status(), 400);
    let mut other_tenant = alice.clone();
    other_tenant.tenant = "other".into();
    assert_eq!(follow(&other_tenant).unwrap_err().status(), 400);
}

#[test]
fn costly_patches_expressions_and_numbers_end_in_4xx() {
    let s = Server::start();
    let id = s.create(&json!({"resourceType": "Patient", "name": [{"family": "Deep"}]}));
    let send = |ops: &Value| {
        s.client
            .patch(s.url(&format!("Patient/{id}")))
            .header("content-type", "application/json-patch+json")
            .body(ops.to_string())
            .send()
            .unwrap()
    };
    // `move`s that nest the document ever deeper (three operations a level: the depth limit
    // stops it long before the operation limit).
    let mut ops = vec![json!({"op": "add", "path": "/extension", "value": [{"url": "u"}]})];
    for _ in 0..50_000 {
        ops.push(json!({"op": "move", "from": "/extension", "path": "/extension/0/extension"}));
        ops.push(json!({"op": "add", "path": "/extension", "value": []}));
        ops.push(json!({"op": "move", "from": "/extension/0/extension", "path": "/extension/0"}));
    }
    ops.truncate(9_000);
    let deep = send(&Value::Array(ops));
    assert!(deep.status().is_client_error(), "{}", deep.status());
    // `copy`s that double the document 23 times.
    let mut ops = vec![
        json!({"op": "add", "path": "/contact", "value": [{"name": {"text": "x".repeat(100)}}]}),
    ];
    for _ in 0..23 {
        ops.push(json!({"op": "copy", "from": "/contact", "path": "/contact/-"}));
    }
    let doubled = send(&Value::Array(ops));
    assert!(doubled.status().is_client_error(), "{}", doubled.status());
    outcome(doubled, 422);
    // A stored SearchParameter whose expression fans out refuses writes of its type with a
    // 4xx instead of exhausting memory.
    let mut expression = "%resource.name".to_string();
    for _ in 0..8 {
        expression = format!("%resource.name.select({expression})");
    }
    let sp = json!({"resourceType": "SearchParameter", "url": "http://example.org/fan", "name": "fan",
        "status": "active", "description": "fans out", "code": "fan", "base": ["Patient"],
        "type": "string", "expression": expression});
    assert_eq!(s.post("SearchParameter", &sp).status(), 201);
    let wide = json!({"resourceType": "Patient",
        "name": (0..12).map(|i| json!({"family": format!("F{i}")})).collect::<Vec<_>>()});
    let oo = outcome(s.post("Patient", &wide), 422);
    assert_eq!(oo["issue"][0]["code"], "too-costly", "{oo}");
    assert_eq!(s.get("metadata").send().unwrap().status(), 200);
    // A number no index can hold.
    let r = s
        .client
        .post(s.url("Observation"))
        .header("content-type", "application/fhir+json")
        .body(r#"{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1e999999}}"#)
        .send()
        .unwrap();
    outcome(r, 400);
}

#[test]
fn a_batch_writes_its_plain_entries_together_each_with_its_own_outcome() {
    let s = Server::start();
    let id = s.create(&json!({"resourceType": "Patient"}));
    let entries: Vec<Value> = (0..5)
        .map(|i| json!({"resource": {"resourceType": "Patient", "name": [{"family": format!("B{i}")}]},
                        "request": {"method": "POST", "url": "Patient"}}))
        .chain([
            json!({"resource": {"resourceType": "Patient", "id": id, "active": true},
                   "request": {"method": "PUT", "url": format!("Patient/{id}"), "ifMatch": "W/\"9\""}}),
            json!({"resource": {"resourceType": "Patient", "birthDate": "not a date"},
                   "request": {"method": "POST", "url": "Patient"}}),
            json!({"resource": {"resourceType": "Patient", "id": "kept", "active": false},
                   "request": {"method": "PUT", "url": "Patient/kept"}}),
        ])
        .collect();
    let b: Value = s
        .post(
            "",
            &json!({"resourceType": "Bundle", "type": "batch", "entry": entries}),
        )
        .json()
        .unwrap();
    let statuses: Vec<&str> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "201 Created",
            "201 Created",
            "201 Created",
            "201 Created",
            "201 Created",
            "412 Precondition Failed",
            "400 Bad Request",
            "201 Created"
        ],
        "{b}"
    );
    let found: Value = s.get("Patient?family=B3").send().unwrap().json().unwrap();
    assert_eq!(found["total"], 1);
    assert_eq!(s.get("Patient/kept").send().unwrap().status(), 200);
    let unchanged: Value = s
        .get(&format!("Patient/{id}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(unchanged["meta"]["versionId"], "1");
}

#[test]
fn stopping_interrupts_costly_work_and_refuses_new_requests() {
    let s = Server::start();
    let gate = Gate::default();
    s.engine().set_search_hook(Some(gate.hook()));
    let held = {
        let (client, url) = (s.client.clone(), s.url("Patient"));
        std::thread::spawn(move || client.get(url).send().unwrap())
    };
    gate.wait_held(1);
    s.engine().stop();
    // The held search is interrupted and answers a retryable 503, without being released.
    let oo = outcome(held.join().unwrap(), 503);
    assert!(oo.to_string().contains("stopping"), "{oo}");
    outcome(s.get("Observation").send().unwrap(), 503);
}
