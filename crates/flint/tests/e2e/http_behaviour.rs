//! FHIR HTTP behaviour: conditional reads, If-Match, Prefer, formats, negotiation, gzip,
//! base URLs, body limits, unknown routes.

use std::io::Read;

use serde_json::{json, Value};

use crate::server::{outcome, Server};

#[test]
fn if_match_on_update_and_delete() {
    let s = Server::start();
    let id = s.create(&json!({"resourceType": "Patient", "active": true}));
    let body = json!({"resourceType": "Patient", "id": id, "active": false});
    let put = |m: &str| {
        s.client
            .put(s.url(&format!("Patient/{id}")))
            .header("content-type", "application/fhir+json")
            .header("if-match", m)
            .body(body.to_string())
            .send()
            .unwrap()
    };
    let oo = outcome(put("W/\"7\""), 412);
    assert_eq!(oo["issue"][0]["code"], "conflict");
    assert_eq!(put("W/\"1\"").status(), 200);
    outcome(put("W/\"1\""), 412);
    outcome(put("garbage"), 400);
    let r = s
        .client
        .delete(s.url(&format!("Patient/{id}")))
        .header("if-match", "W/\"1\"")
        .send()
        .unwrap();
    outcome(r, 412);
    let r = s
        .client
        .delete(s.url(&format!("Patient/{id}")))
        .header("if-match", "W/\"2\"")
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
}

#[test]
fn conditional_reads() {
    let s = Server::start();
    let id = s.create(&json!({"resourceType": "Patient", "active": true}));
    let path = format!("Patient/{id}");
    let r = s
        .get(&path)
        .header("if-none-match", "W/\"1\"")
        .send()
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], "W/\"1\"");
    assert_eq!(
        s.get(&path)
            .header("if-none-match", "W/\"2\"")
            .send()
            .unwrap()
            .status(),
        200
    );
    let last_modified = s.get(&path).send().unwrap().headers()["last-modified"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        s.get(&path)
            .header("if-modified-since", &last_modified)
            .send()
            .unwrap()
            .status(),
        304
    );
    let earlier = "Mon, 01 Jan 2001 00:00:00 GMT";
    assert_eq!(
        s.get(&path)
            .header("if-modified-since", earlier)
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn prefer_return() {
    let s = Server::start();
    let p = json!({"resourceType": "Patient", "active": true});
    let send = |prefer: &str| {
        s.client
            .post(s.url("Patient"))
            .header("content-type", "application/fhir+json")
            .header("prefer", prefer)
            .body(p.to_string())
            .send()
            .unwrap()
    };
    let r = send("return=minimal");
    assert_eq!(r.status(), 201);
    assert!(r.headers().contains_key("location") && r.headers().contains_key("etag"));
    assert!(r.text().unwrap().is_empty());
    let v: Value = send("return=representation").json().unwrap();
    assert_eq!(v["resourceType"], "Patient");
    let v: Value = send("return=OperationOutcome").json().unwrap();
    assert_eq!(v["resourceType"], "OperationOutcome");
    assert_eq!(v["issue"][0]["severity"], "information");
    // Deletes answer 204, or an informational outcome when asked for one.
    let id = s.create(&json!({"resourceType": "Patient", "gender": "other"}));
    let delete = |path: String, prefer: Option<&str>| {
        let mut req = s.client.delete(s.url(&path));
        if let Some(p) = prefer {
            req = req.header("prefer", p);
        }
        req.send().unwrap()
    };
    assert_eq!(delete(format!("Patient/{id}/_history"), None).status(), 204);
    for path in [
        format!("Patient/{id}/_history"),
        format!("Patient/{id}"),
        "Patient?gender=other".to_string(),
    ] {
        let r = delete(path.clone(), Some("return=OperationOutcome"));
        assert_eq!(r.status(), 200, "{path}");
        let v: Value = r.json().unwrap();
        assert_eq!(v["issue"][0]["code"], "informational", "{path}");
    }
}

#[test]
fn formats_summary_elements_and_pretty() {
    let s = Server::start();
    let id = s.create(&json!({"resourceType": "Patient", "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
                              "name": [{"family": "F"}], "photo": [{"url": "http://x/p.png"}], "birthDate": "2000-01-01"}));
    let path = format!("Patient/{id}");
    let v: Value = s
        .get(&format!("{path}?_summary=true"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(v.get("name").is_some() && v.get("photo").is_none() && v.get("text").is_none());
    assert!(v["meta"]["tag"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["code"] == "SUBSETTED"));
    let v: Value = s
        .get(&format!("{path}?_summary=data"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(v.get("text").is_none() && v.get("photo").is_some());
    let v: Value = s
        .get(&format!("{path}?_summary=text"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(v.get("text").is_some() && v.get("name").is_none());
    let v: Value = s
        .get(&format!("{path}?_elements=birthDate,photo"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(v.get("birthDate").is_some() && v.get("photo").is_some() && v.get("name").is_none());
    outcome(
        s.get(&format!("{path}?_summary=maybe")).send().unwrap(),
        400,
    );
    let text = s
        .get(&format!("{path}?_pretty=true"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(text.contains("\n  \"resourceType\""), "{text}");
    let r = s.get(&format!("{path}?_format=json")).send().unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .get(&format!("{path}?_format=application/fhir%2Bjson"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let xml = s.get(&format!("{path}?_format=xml")).send().unwrap();
    assert_eq!(xml.status(), 200);
    assert!(xml.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/fhir+xml"));
    outcome(
        s.get(&format!("{path}?_format=turtle")).send().unwrap(),
        406,
    );
}

#[test]
fn content_negotiation() {
    let s = Server::start();
    let id = s.create(&json!({"resourceType": "Patient", "active": true}));
    let path = format!("Patient/{id}");
    let ct = |accept: &str| {
        let r = s.get(&path).header("accept", accept).send().unwrap();
        (
            r.status().as_u16(),
            r.headers()["content-type"].to_str().unwrap().to_string(),
        )
    };
    assert!(ct("application/fhir+json")
        .1
        .starts_with("application/fhir+json"));
    assert!(ct("application/json").1.starts_with("application/json"));
    assert_eq!(ct("*/*").0, 200);
    assert!(ct("application/fhir+xml")
        .1
        .starts_with("application/fhir+xml"));
    assert!(ct("application/xml").1.starts_with("application/xml"));
    assert_eq!(ct("text/html").0, 406);
    let r = s
        .client
        .post(s.url("Patient"))
        .header("content-type", "application/xml")
        .body("<Patient/>")
        .send()
        .unwrap();
    // XML is read, and this is not FHIR XML (no namespace).
    outcome(r, 400);
    let r = s
        .client
        .post(s.url("Patient"))
        .header("content-type", "image/png")
        .body("<Patient/>")
        .send()
        .unwrap();
    outcome(r, 415);
    let r = s
        .client
        .post(s.url("Patient"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .unwrap();
    outcome(r, 415);
    let r = s
        .client
        .post(s.url("Patient"))
        .header("content-type", "application/json; charset=utf-8")
        .body(json!({"resourceType": "Patient"}).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[test]
fn gzip_when_accepted() {
    let s = Server::start();
    let id =
        s.create(&json!({"resourceType": "Patient", "name": [{"family": "Gzip".repeat(200)}]}));
    let r = s
        .get(&format!("Patient/{id}"))
        .header("accept-encoding", "gzip")
        .send()
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let bytes = r.bytes().unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["id"], id.as_str());
    let r = s.get(&format!("Patient/{id}")).send().unwrap();
    assert!(!r.headers().contains_key("content-encoding"));
}

#[test]
fn absolute_urls_follow_configuration_then_forwarding_headers_then_host() {
    let s = Server::start();
    let r = s
        .client
        .post(s.url("Patient"))
        .header("content-type", "application/fhir+json")
        .header("x-forwarded-host", "fhir.example.org")
        .header("x-forwarded-proto", "https")
        .body(json!({"resourceType": "Patient"}).to_string())
        .send()
        .unwrap();
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("https://fhir.example.org/fhir/Patient/"));
    let r = s
        .client
        .post(s.url("Patient"))
        .header("content-type", "application/fhir+json")
        .header(
            "forwarded",
            "for=10.0.0.1;proto=https;host=proxy.example.com",
        )
        .body(json!({"resourceType": "Patient"}).to_string())
        .send()
        .unwrap();
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("https://proxy.example.com/fhir/Patient/"));
    let r = s.post("Patient", &json!({"resourceType": "Patient"}));
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with(&s.base));

    let configured = Server::start_with(&["--base-url", "https://configured.example/r4"], &[]);
    let r = configured
        .client
        .post(configured.url("Patient"))
        .header("content-type", "application/fhir+json")
        .header("x-forwarded-host", "ignored.example")
        .body(json!({"resourceType": "Patient"}).to_string())
        .send()
        .unwrap();
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("https://configured.example/r4/Patient/"));
}

#[test]
fn body_limit_gives_413() {
    let s = Server::start_with(&[], &[("FLINT_SERVER__MAX_BODY_BYTES", "2000")]);
    let big = json!({"resourceType": "Patient", "name": [{"family": "x".repeat(5000)}]});
    outcome(s.post("Patient", &big), 413);
    // Without a Content-Length (chunked), the limit holds too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(big.to_string().into_bytes())];
    let body = reqwest::blocking::Body::new(std::io::Cursor::new(
        chunks.into_iter().next().unwrap().unwrap(),
    ));
    let r = s
        .client
        .post(s.url("Patient"))
        .header("content-type", "application/fhir+json")
        .body(body)
        .send()
        .unwrap();
    outcome(r, 413);
    assert_eq!(
        s.post("Patient", &json!({"resourceType": "Patient"}))
            .status(),
        201
    );
}

#[test]
fn unknown_routes_and_methods_are_operation_outcomes() {
    let s = Server::start();
    outcome(
        s.client
            .get(format!("{}/../nothing", s.base.trim_end_matches("/fhir")))
            .send()
            .unwrap(),
        404,
    );
    outcome(
        s.client
            .get(s.base.replace("/fhir", "/other"))
            .send()
            .unwrap(),
        404,
    );
    outcome(
        s.client.post(s.url("metadata")).body("{}").send().unwrap(),
        405,
    );
    // PUT on a type is a conditional update, which needs criteria.
    outcome(
        s.client.put(s.url("Patient")).body("{}").send().unwrap(),
        400,
    );
    outcome(s.client.delete(s.url("metadata")).send().unwrap(), 405);
}

#[test]
fn capability_statement_is_generated_and_true() {
    let s = Server::start();
    let cs: Value = s.get("metadata").send().unwrap().json().unwrap();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    assert_eq!(cs["kind"], "instance");
    assert_eq!(cs["implementation"]["url"], s.base.as_str());
    let resources = cs["rest"][0]["resource"].as_array().unwrap();
    // The R4 types and Flint's own (Bot, App).
    assert_eq!(resources.len(), 148);
    let patient = resources.iter().find(|r| r["type"] == "Patient").unwrap();
    let codes: Vec<&str> = patient["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"read") && codes.contains(&"history-instance") && codes.contains(&"patch")
    );
    assert!(codes.contains(&"search-type"));
    let params: Vec<&str> = patient["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in [
        "_id",
        "_lastUpdated",
        "family",
        "birthdate",
        "identifier",
        "general-practitioner",
        "_text",
        "_content",
        "_list",
    ] {
        assert!(
            params.contains(&p),
            "Patient search parameter {p} is listed"
        );
    }
    assert!(
        !params.contains(&"_contained") && !params.contains(&"_filter"),
        "unsupported special parameters are not claimed"
    );
    let system: Vec<&str> = cs["rest"][0]["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        system,
        vec!["transaction", "batch", "history-system", "search-system"]
    );
    // Every claimed interaction answers: a smoke check over a few types.
    for rt in ["Observation", "Questionnaire", "Bundle"] {
        let r = s.post(rt, &json!({"resourceType": rt}));
        assert!(
            r.status() == 201 || r.status() == 400,
            "{rt}: {}",
            r.status()
        );
        outcome(s.get(&format!("{rt}/missing")).send().unwrap(), 404);
        assert_eq!(
            s.get(&format!("{rt}/_history")).send().unwrap().status(),
            200
        );
    }
}

/// The value of one sample in a metrics text (`name{labels} value`).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_count_interactions_operations_errors_and_latency() {
    let s = Server::start();
    let id = s.create(&json!({"resourceType": "Patient"}));
    for _ in 0..3 {
        assert_eq!(
            s.get(&format!("Patient/{id}")).send().unwrap().status(),
            200
        );
    }
    assert_eq!(s.get("Patient/nope").send().unwrap().status(), 404);
    assert_eq!(s.get("$healthcheck").send().unwrap().status(), 200);
    assert_eq!(s.get("$made-up-operation").send().unwrap().status(), 400);
    let r = s
        .client
        .get(
            s.url("")
                .replace("/fhir/", "/metrics")
                .trim_end_matches('/'),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = r.text().unwrap();
    assert_eq!(
        sample(
            &text,
            r#"flint_requests_total{interaction="read",status="200"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"flint_requests_total{interaction="read",status="404"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"flint_requests_total{interaction="create",status="201"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"flint_request_errors_total{interaction="read"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"flint_request_duration_seconds_count{interaction="read"}"#
        ),
        Some(4.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"flint_operation_requests_total{operation="healthcheck",status="200"}"#
        ),
        Some(1.0)
    );
    // An operation that does not exist is counted, under one label whatever its name.
    assert_eq!(
        sample(
            &text,
            r#"flint_operation_requests_total{operation="unknown",status="400"}"#
        ),
        Some(1.0)
    );
    assert!(!text.contains("made-up-operation"));
    assert!(sample(&text, "flint_store_last_transaction").unwrap() >= 1.0);
    assert!(sample(&text, r#"flint_jobs{state="running"}"#).is_some());
    assert!(text.trim_end().ends_with("# EOF"));
}
