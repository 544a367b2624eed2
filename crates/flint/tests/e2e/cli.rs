//! The command line: configuration handling and `flint import`.

use serde_json::{json, Value};

use crate::server::{flint, Server};

#[test]
fn config_prints_the_documented_defaults() {
    let out = flint().arg("config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("port = 8080")
            && text.contains("context_path = \"/fhir\"")
            && text.contains("max_execution_ms")
    );
}

#[test]
fn bad_configuration_stops_the_start_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("FLINT_SERVER__PORTT", "1")], "portt"),
        (vec![("FLINT_SERVER__PORT", "not-a-port")], "port"),
        (vec![("FLINT_NOPE", "1")], "nope"),
        (vec![("FLINT_SERVER__BASE_URL", "ftp://x")], "base_url"),
    ];
    for (env, needle) in cases {
        let mut cmd = flint();
        cmd.args(["serve", "--port", "0", "--data-dir"])
            .arg(dir.path());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{env:?} should stop the start");
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(err.contains(needle), "{env:?}: {err}");
    }
    let file = dir.path().join("flint.toml");
    std::fs::write(&file, "[server]\nport = 0\ncolour = \"red\"\n").unwrap();
    let out = flint()
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("colour"));
}

#[test]
fn configuration_file_and_environment_apply() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flint.toml");
    std::fs::write(&file, "[server]\ncontext_path = \"/r4\"\n").unwrap();
    let config = file.to_str().unwrap().to_string();
    let s = Server::start_with(
        &["--config", &config],
        &[("FLINT_SERVER__BASE_URL", "https://env.example/r4")],
    );
    assert!(s.base.ends_with("/r4"), "{}", s.base);
    let r = s.post("Patient", &json!({"resourceType": "Patient"}));
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("https://env.example/r4/Patient/"));
}

#[test]
fn import_loads_bundles_and_ndjson_and_reports_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir_all(input.join("nested")).unwrap();
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:6f1c3c2e-0000-4000-8000-000000000001", "resource": {"resourceType": "Patient", "name": [{"family": "Imported"}]}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "urn:uuid:6f1c3c2e-0000-4000-8000-000000000001"}}, "request": {"method": "POST", "url": "Observation"}}
    ]});
    std::fs::write(input.join("tx.json"), tx.to_string()).unwrap();
    let collection = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Organization", "id": "org1", "name": "A"}},
        {"resource": {"resourceType": "Organization", "id": "org2", "name": 5}}
    ]});
    std::fs::write(input.join("nested/collection.json"), collection.to_string()).unwrap();
    let ndjson = [
        json!({"resourceType": "Patient", "id": "nd1"}).to_string(),
        json!({"resourceType": "Patient", "id": "nd2", "gender": "male"}).to_string(),
        "{broken".to_string(),
        json!({"resourceType": "Patient", "birthDate": "x"}).to_string(),
    ]
    .join("\n");
    std::fs::write(input.join("nested/patients.ndjson"), ndjson).unwrap();
    std::fs::write(input.join("notes.txt"), "ignored").unwrap();
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Practitioner", "id": "pr1"}, "request": {"method": "PUT", "url": "Practitioner/pr1"}},
        {"request": {"method": "GET", "url": "Practitioner/missing"}}
    ]});
    std::fs::write(input.join("batch.json"), batch.to_string()).unwrap();
    // A response Bundle: entries without resources carry no data and are not rejections.
    let response = json!({"resourceType": "Bundle", "type": "batch-response", "entry": [{"response": {"status": "200 OK"}}]});
    std::fs::write(input.join("response.json"), response.to_string()).unwrap();
    let data = dir.path().join("data");
    let out = flint()
        .arg("import")
        .arg("--data-dir")
        .arg(&data)
        .arg(&input)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "rejections make the exit status fail"
    );
    assert!(stdout.contains("imported 6 resources"), "{stdout}");
    assert!(stdout.contains("4 rejected"), "{stdout}");
    assert!(stderr.contains("batch.json entry 1"), "{stderr}");
    assert!(
        stderr.contains("collection.json entry 1") && stderr.contains("Organization.name"),
        "{stderr}"
    );
    assert!(
        stderr.contains("patients.ndjson:3") && stderr.contains("not JSON"),
        "{stderr}"
    );
    assert!(
        stderr.contains("patients.ndjson:4") && stderr.contains("Patient.birthDate"),
        "{stderr}"
    );

    let s = Server::start_in(&data, &[], &[]);
    assert_eq!(s.get("Organization/org1").send().unwrap().status(), 200);
    assert_eq!(s.get("Practitioner/pr1").send().unwrap().status(), 200);
    assert_eq!(s.get("Patient/nd2").send().unwrap().status(), 200);
    let obs: Value = s
        .get("Observation/_history")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let subject = obs["entry"][0]["resource"]["subject"]["reference"]
        .as_str()
        .unwrap();
    assert!(subject.starts_with("Patient/"));
    assert_eq!(s.get(subject).send().unwrap().status(), 200);

    let missing = flint()
        .arg("import")
        .arg("--data-dir")
        .arg(&data)
        .arg(dir.path().join("nothing-here"))
        .output()
        .unwrap();
    assert!(!missing.status.success());
}

#[test]
fn fhirpath_evaluates_against_a_file_or_standard_input() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.json");
    let patient = json!({"resourceType": "Patient", "birthDate": "1974-12-25", "name": [{"given": ["Peter", "James"]}]});
    std::fs::write(&file, patient.to_string()).unwrap();
    let out = flint()
        .args(["fhirpath", "Patient.name.given"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0]["value"], "Peter");

    let mut child = flint()
        .args(["fhirpath", "birthDate + 1 year", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(patient.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["type"], "date");
    assert_eq!(v[0]["value"], "1975-12-25");

    let out = flint()
        .args(["fhirpath", "%limit > 3", "--var", "limit=5"])
        .arg(&file)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["value"], true);

    let out = flint()
        .args(["fhirpath", "Patient.name.where("])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!out.stderr.is_empty());
}
