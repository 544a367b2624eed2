//! Bulk Data `$export` at system, `Patient` and `Group/[id]` level: kick-off, status polling,
//! the manifest, the NDJSON files, `_type`, `_since`, `_typeFilter`, and cancellation.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::server::{outcome, Server};

fn kick_off(s: &Server, path: &str) -> reqwest::blocking::Response {
    s.client
        .get(s.url(path))
        .header("accept", "application/fhir+json")
        .header("prefer", "respond-async")
        .send()
        .unwrap()
}

/// Kicks off an export and waits for its manifest.
fn export(s: &Server, path: &str) -> (String, Value) {
    let r = kick_off(s, path);
    assert_eq!(r.status(), 202, "{path}: {}", r.text().unwrap());
    let status = r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = s.client.get(&status).send().unwrap();
        match r.status().as_u16() {
            202 => {
                assert!(r.headers().get("x-progress").is_some());
                assert!(r.headers().get("retry-after").is_some());
                assert!(Instant::now() < deadline, "the export never ended");
                std::thread::sleep(Duration::from_millis(10));
            }
            200 => {
                assert!(r.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("application/json"));
                return (status, r.json().unwrap());
            }
            other => panic!("status {other}: {}", r.text().unwrap()),
        }
    }
}

/// Every exported resource, by type, as `id`s, read from the manifest's files.
fn exported(s: &Server, manifest: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in manifest["output"].as_array().unwrap() {
        let r = s.client.get(file["url"].as_str().unwrap()).send().unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/fhir+ndjson"));
        let text = r.text().unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len() as u64, file["count"].as_u64().unwrap());
        for line in lines {
            let resource: Value = serde_json::from_str(line).unwrap();
            assert_eq!(resource["resourceType"], file["type"]);
            out.entry(file["type"].as_str().unwrap().to_string())
                .or_default()
                .push(resource["id"].as_str().unwrap().to_string());
        }
    }
    for ids in out.values_mut() {
        ids.sort();
    }
    out
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn fill(s: &Server) {
    s.put(
        "Patient/p1",
        &json!({"resourceType": "Patient", "id": "p1"}),
    );
    s.put(
        "Patient/p2",
        &json!({"resourceType": "Patient", "id": "p2"}),
    );
    s.put(
        "Practitioner/dr",
        &json!({"resourceType": "Practitioner", "id": "dr"}),
    );
    for (id, patient, code) in [("o1", "p1", "a"), ("o2", "p1", "b"), ("o3", "p2", "a")] {
        s.put(
            &format!("Observation/{id}"),
            &json!({"resourceType": "Observation", "id": id, "status": "final",
                    "code": {"coding": [{"system": "http://e.org", "code": code}]},
                    "subject": {"reference": format!("Patient/{patient}")}}),
        );
    }
    s.put(
        "Group/g1",
        &json!({"resourceType": "Group", "id": "g1", "type": "person", "actual": true,
                              "member": [{"entity": {"reference": "Patient/p1"}}]}),
    );
}

#[test]
fn system_export_with_types_since_and_filters() {
    let s = Server::start();
    fill(&s);
    let (_, manifest) = export(&s, "$export?_type=Patient,Observation,Practitioner");
    assert!(manifest["transactionTime"].is_string());
    assert!(manifest["request"].as_str().unwrap().contains("$export"));
    assert_eq!(manifest["error"], json!([]));
    let got = exported(&s, &manifest);
    assert_eq!(got["Patient"], ids(&["p1", "p2"]));
    assert_eq!(got["Observation"], ids(&["o1", "o2", "o3"]));
    assert_eq!(got["Practitioner"], ids(&["dr"]));
    assert!(!got.contains_key("Group"));

    // Everything: the Group and the server's own OperationDefinitions too.
    let (_, all) = export(&s, "$export");
    let got = exported(&s, &all);
    assert_eq!(got["Group"], ids(&["g1"]));
    assert!(got.contains_key("OperationDefinition"));

    // _typeFilter keeps matching resources of its type only.
    let (_, filtered) = export(
        &s,
        "$export?_type=Observation,Patient&_typeFilter=Observation%3Fcode%3Da",
    );
    let got = exported(&s, &filtered);
    assert_eq!(got["Observation"], ids(&["o1", "o3"]));
    assert_eq!(got["Patient"], ids(&["p1", "p2"]));

    // _since: only what changed since.
    std::thread::sleep(Duration::from_millis(5));
    let since = flint_fhir::datetime::format_instant(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64,
    );
    s.put(
        "Observation/o2",
        &json!({"resourceType": "Observation", "id": "o2", "status": "amended",
        "code": {"text": "b"}, "subject": {"reference": "Patient/p1"}}),
    );
    let (_, changed) = export(&s, &format!("$export?_since={}", since.replace('+', "%2B")));
    let got = exported(&s, &changed);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got["Observation"], ids(&["o2"]));
}

#[test]
fn patient_and_group_exports_hold_the_compartment() {
    let s = Server::start();
    fill(&s);
    let (_, manifest) = export(&s, "Patient/$export");
    let got = exported(&s, &manifest);
    assert_eq!(got["Patient"], ids(&["p1", "p2"]));
    assert_eq!(got["Observation"], ids(&["o1", "o2", "o3"]));
    // The Group lists a patient as a member: it is in that patient's compartment.
    assert_eq!(got["Group"], ids(&["g1"]));
    assert!(!got.contains_key("Practitioner"), "{got:?}");

    let (_, manifest) = export(&s, "Group/g1/$export?_type=Observation,Patient");
    let got = exported(&s, &manifest);
    assert_eq!(got["Patient"], ids(&["p1"]));
    assert_eq!(got["Observation"], ids(&["o1", "o2"]));

    outcome(kick_off(&s, "Group/nope/$export"), 404);
    outcome(kick_off(&s, "Patient/$export?_type=Practitioner"), 400);
}

#[test]
fn kick_off_refuses_what_it_cannot_do() {
    let s = Server::start();
    fill(&s);
    // The IG requires respond-async.
    outcome(s.get("$export").send().unwrap(), 400);
    outcome(kick_off(&s, "$export?_outputFormat=text/csv"), 400);
    outcome(kick_off(&s, "$export?_type=Nope"), 400);
    outcome(
        kick_off(&s, "$export?_typeFilter=Observation%3Fnope%3D1"),
        400,
    );
    outcome(
        kick_off(
            &s,
            "$export?_type=Patient&_typeFilter=Observation%3Fcode%3Da",
        ),
        400,
    );
    outcome(kick_off(&s, "$export?_since=yesterday"), 400);
    outcome(kick_off(&s, "Observation/$export"), 400);
    outcome(s.get("__export/nope/Patient-1.ndjson").send().unwrap(), 404);
}

#[test]
fn a_cancelled_export_and_its_files_are_gone() {
    let s = Server::start();
    fill(&s);
    let (status, manifest) = export(&s, "$export?_type=Patient");
    let file = manifest["output"][0]["url"].as_str().unwrap().to_string();
    assert_eq!(s.client.get(&file).send().unwrap().status(), 200);
    // A file name that tries to leave the job's directory.
    let sneaky = file.replace("Patient-1.ndjson", "..%2F..%2Fetc%2Fpasswd");
    outcome(s.client.get(&sneaky).send().unwrap(), 404);
    // DELETE after it finished: the IG says the files go too.
    let r = s.client.delete(&status).send().unwrap();
    assert_eq!(r.status(), 202);
    outcome(s.client.get(&status).send().unwrap(), 404);
    outcome(s.client.get(&file).send().unwrap(), 404);
    let r = kick_off(&s, "$export?_type=Observation");
    let running = r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(s.client.delete(&running).send().unwrap().status(), 202);
    outcome(s.client.get(&running).send().unwrap(), 404);
}
