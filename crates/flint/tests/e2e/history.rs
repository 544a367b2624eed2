//! History at instance, type and system level; `_since`, `_at`, `_count` and paging; delete
//! history.

use serde_json::{json, Value};

use crate::server::{outcome, Server};

fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| {
                    e["fullUrl"]
                        .as_str()
                        .unwrap_or("")
                        .rsplit('/')
                        .next()
                        .unwrap_or("")
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn instance_type_and_system_history_with_paging() {
    let s = Server::start();
    let id = s.create(&json!({"resourceType": "Patient", "active": true}));
    for active in [false, true] {
        let r = s.put(
            &format!("Patient/{id}"),
            &json!({"resourceType": "Patient", "id": id, "active": active}),
        );
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        s.client
            .delete(s.url(&format!("Patient/{id}")))
            .send()
            .unwrap()
            .status(),
        204
    );
    let other =
        s.create(&json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}));

    let h: Value = s
        .get(&format!("Patient/{id}/_history"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(h["type"], "history");
    assert_eq!(h["total"], 4);
    let entries = h["entry"].as_array().unwrap();
    let methods: Vec<&str> = entries
        .iter()
        .map(|e| e["request"]["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, vec!["DELETE", "PUT", "PUT", "POST"]);
    assert!(entries[0].get("resource").is_none());
    assert_eq!(entries[1]["resource"]["meta"]["versionId"], "3");
    assert_eq!(entries[3]["response"]["status"], "201 Created");

    let t: Value = s.get("Patient/_history").send().unwrap().json().unwrap();
    assert_eq!(t["total"], 4);
    let sys: Value = s.get("_history").send().unwrap().json().unwrap();
    assert_eq!(sys["total"], 5 + s.published());
    assert_eq!(ids(&sys)[0], other);

    // Paging with _count follows next links to the end, newest first, each version once.
    let mut url = s.url("_history?_count=2");
    let all = 5 + s.published();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page: Value = s.client.get(&url).send().unwrap().json().unwrap();
        pages += 1;
        assert_eq!(page["total"].as_u64(), Some(all));
        let entries = page["entry"].as_array().cloned().unwrap_or_default();
        assert!(entries.len() <= 2);
        for e in &entries {
            seen.push(format!("{}@{}", e["fullUrl"], e["response"]["etag"]));
        }
        let next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_string());
        match next {
            Some(n) => url = n,
            None => break,
        }
        // A write between pages does not shift later pages.
        if pages == 1 {
            s.create(&json!({"resourceType": "Patient"}));
        }
    }
    assert_eq!(pages, all.div_ceil(2));
    assert_eq!(seen.len() as u64, all);
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique.len() as u64, all);

    outcome(s.get("Patient/nope/_history").send().unwrap(), 404);
    outcome(s.get("Nope/_history").send().unwrap(), 404);
    outcome(s.get("_history?_count=x").send().unwrap(), 400);
    let empty: Value = s.get("_history?_count=0").send().unwrap().json().unwrap();
    assert!(empty.get("entry").is_none());
    assert_eq!(empty["total"].as_u64(), Some(all + 1));
}

#[test]
fn since_and_at() {
    let s = Server::start();
    let id = s.create(&json!({"resourceType": "Patient", "active": true}));
    let v1: Value = s
        .get(&format!("Patient/{id}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let t1 = v1["meta"]["lastUpdated"].as_str().unwrap().to_string();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let r = s.put(
        &format!("Patient/{id}"),
        &json!({"resourceType": "Patient", "id": id, "active": false}),
    );
    let v2: Value = r.json().unwrap();
    let t2 = v2["meta"]["lastUpdated"].as_str().unwrap().to_string();
    assert!(t2 > t1);

    let since: Value = s
        .get(&format!("Patient/{id}/_history?_since={t2}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(since["total"], 1);
    assert_eq!(since["entry"][0]["resource"]["meta"]["versionId"], "2");
    let all: Value = s
        .get(&format!("Patient/{id}/_history?_since={t1}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(all["total"], 2);
    // _at: the version current at t1 is version 1; at t2, version 2.
    let at1: Value = s
        .get(&format!("Patient/{id}/_history?_at={t1}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(at1["total"], 1);
    assert_eq!(at1["entry"][0]["resource"]["meta"]["versionId"], "1");
    let at2: Value = s
        .get(&format!("Patient/{id}/_history?_at={t2}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(at2["entry"][0]["resource"]["meta"]["versionId"], "2");
    // A whole-year _at covers both.
    let year = &t1[..4];
    let at_year: Value = s
        .get(&format!("Patient/{id}/_history?_at={year}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(at_year["total"], 2);
    outcome(
        s.get(&format!("Patient/{id}/_history?_since=yesterday"))
            .send()
            .unwrap(),
        400,
    );
    // Links are sealed: the self link reruns the same page without showing the query.
    let self_link = since["link"][0]["url"].as_str().unwrap();
    assert!(!self_link.contains("_since"), "{self_link}");
    let again: Value = s.client.get(self_link).send().unwrap().json().unwrap();
    assert_eq!(again["total"], 1);
}

#[test]
fn delete_history_keeps_only_the_current_version() {
    let s = Server::start();
    let id = s.create(&json!({"resourceType": "Patient", "active": true}));
    for _ in 0..3 {
        s.put(
            &format!("Patient/{id}"),
            &json!({"resourceType": "Patient", "id": id, "active": false}),
        );
    }
    let r = s
        .client
        .delete(s.url(&format!("Patient/{id}/_history")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let h: Value = s
        .get(&format!("Patient/{id}/_history"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(h["total"], 1);
    assert_eq!(h["entry"][0]["resource"]["meta"]["versionId"], "4");
    outcome(
        s.get(&format!("Patient/{id}/_history/1")).send().unwrap(),
        404,
    );
    assert_eq!(
        s.get(&format!("Patient/{id}")).send().unwrap().status(),
        200
    );
    outcome(
        s.client
            .delete(s.url("Patient/none/_history"))
            .send()
            .unwrap(),
        404,
    );
    // The next update continues the version sequence.
    let r = s.put(
        &format!("Patient/{id}"),
        &json!({"resourceType": "Patient", "id": id}),
    );
    assert_eq!(r.headers()["etag"], "W/\"5\"");
}
