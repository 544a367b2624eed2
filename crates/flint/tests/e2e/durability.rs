//! A 201 means the resource is on disk: SIGKILL right after loses nothing, and concurrent
//! writes acknowledged before the kill all survive.

use serde_json::{json, Value};

use crate::server::Server;

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start_in(&data, &[], &[]);
    let mut ids = Vec::new();
    // Concurrent writers, so that group commit batches them.
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let s = &s;
                scope.spawn(move || {
                    (0..25)
                        .map(|i| s.create(&json!({"resourceType": "Patient", "name": [{"family": format!("T{t}-{i}")}]})))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            ids.extend(h.join().unwrap());
        }
    });
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": (0..20).map(|i| json!({
        "fullUrl": format!("urn:uuid:00000000-0000-4000-8000-{i:012}"),
        "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000000"}},
        "request": {"method": "POST", "url": "Observation"}})).chain(std::iter::once(json!({
        "fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000000",
        "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}))).collect::<Vec<_>>()});
    // The first 20 entries reuse one placeholder range: make them unique per Observation.
    let r = s.post("", &tx);
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let last = s.create(&json!({"resourceType": "Patient", "active": true}));
    let data = s.kill();

    let s = Server::start_in(&data, &[], &[]);
    for id in ids.iter().chain(std::iter::once(&last)) {
        assert_eq!(
            s.get(&format!("Patient/{id}")).send().unwrap().status(),
            200,
            "Patient/{id} lost"
        );
    }
    let history: Value = s.get("_history").send().unwrap().json().unwrap();
    assert_eq!(history["total"], 200 + 21 + 1 + s.published());
    // Writes continue with later transaction numbers and timestamps.
    let again = s.create(&json!({"resourceType": "Patient"}));
    let newest: Value = s.get("_history?_count=1").send().unwrap().json().unwrap();
    assert!(newest["entry"][0]["fullUrl"]
        .as_str()
        .unwrap()
        .ends_with(&again));
}
