//! The operations framework over HTTP: definitions published and advertised, routing by
//! code, level and type, `GET` rules, input checks naming the parameter, and the built-in
//! `$meta*`, `$validate` and `$healthcheck`.

use serde_json::{json, Value};

use crate::server::{outcome, Server};

fn get_json(s: &Server, path: &str) -> (u16, Value) {
    let r = s.get(path).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap())
}

fn param<'a>(p: &'a Value, name: &str) -> &'a Value {
    p["parameter"]
        .as_array()
        .and_then(|l| l.iter().find(|e| e["name"] == name))
        .unwrap_or(&Value::Null)
}

#[test]
fn definitions_are_published_and_advertised() {
    let s = Server::start();
    let (_, cs) = get_json(&s, "metadata");
    let system: Vec<&str> = cs["rest"][0]["operation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert!(system.contains(&"reindex") && system.contains(&"healthcheck"));
    assert!(!system.contains(&"meta-add"), "instance-level only");
    let patient = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap();
    let ops = patient["operation"].as_array().unwrap();
    let validate = ops.iter().find(|o| o["name"] == "validate").unwrap();
    assert_eq!(
        validate["definition"],
        "http://hl7.org/fhir/OperationDefinition/Resource-validate"
    );
    // Every advertised definition is readable and found by its URL.
    for op in cs["rest"][0]["operation"]
        .as_array()
        .unwrap()
        .iter()
        .chain(ops)
    {
        let url = op["definition"].as_str().unwrap();
        let (status, found) = get_json(&s, &format!("OperationDefinition?url={url}"));
        assert_eq!(status, 200);
        assert_eq!(found["total"], 1, "{url}");
        let id = found["entry"][0]["resource"]["id"].as_str().unwrap();
        let (status, read) = get_json(&s, &format!("OperationDefinition/{id}"));
        assert_eq!(status, 200);
        assert_eq!(read["code"], op["name"]);
    }
    let (_, by_code) = get_json(&s, "OperationDefinition?code=meta-add");
    assert_eq!(by_code["total"], 1);
    let (_, reindex) = get_json(&s, "OperationDefinition/reindex");
    assert!(reindex["url"]
        .as_str()
        .unwrap()
        .ends_with("/OperationDefinition/reindex"));
    assert_eq!(reindex["affectsState"], true);
}

#[test]
fn meta_changes_labels_in_place() {
    let s = Server::start();
    let id = s.create(
        &json!({"resourceType": "Patient", "meta": {"tag": [{"system": "s", "code": "a"}]}}),
    );
    let (_, before) = get_json(&s, &format!("Patient/{id}"));
    let add = json!({"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": {
        "tag": [{"system": "s", "code": "b", "display": "B"}, {"system": "s", "code": "a"}],
        "profile": ["http://example.org/p"]}}]});
    let r = s.post(&format!("Patient/{id}/$meta-add"), &add);
    assert_eq!(r.status(), 200);
    let out: Value = r.json().unwrap();
    assert_eq!(out["resourceType"], "Parameters");
    let meta = &param(&out, "return")["valueMeta"];
    assert_eq!(meta["tag"].as_array().unwrap().len(), 2);
    assert_eq!(meta["versionId"], "1", "no new version");
    let (_, after) = get_json(&s, &format!("Patient/{id}"));
    assert_eq!(after["meta"]["versionId"], "1");
    assert_eq!(after["meta"]["lastUpdated"], before["meta"]["lastUpdated"]);
    assert_eq!(after["meta"]["profile"], json!(["http://example.org/p"]));
    // The version's index follows.
    let (_, found) = get_json(&s, "Patient?_tag=s|b");
    assert_eq!(found["total"], 1);
    // $meta answers the same meta, on GET.
    let (status, m) = get_json(&s, &format!("Patient/{id}/$meta"));
    assert_eq!(status, 200);
    assert_eq!(param(&m, "return")["valueMeta"], after["meta"]);
    // On a past version too.
    assert_eq!(
        s.put(
            &format!("Patient/{id}"),
            &json!({"resourceType": "Patient", "id": id})
        )
        .status(),
        200
    );
    let delete = json!({"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": {"tag": [{"system": "s", "code": "b"}]}}]});
    let r = s.post(&format!("Patient/{id}/_history/1/$meta-delete"), &delete);
    assert_eq!(r.status(), 200);
    let (_, v1) = get_json(&s, &format!("Patient/{id}/_history/1"));
    assert_eq!(v1["meta"]["tag"], json!([{"system": "s", "code": "a"}]));
    let (_, found) = get_json(&s, "Patient?_tag=s|b");
    assert_eq!(found.get("total"), Some(&json!(0)));
    // Errors.
    outcome(
        s.get(&format!("Patient/{id}/$meta-add")).send().unwrap(),
        405,
    );
    outcome(s.post("Patient/nope/$meta-add", &add), 404);
    let oo = outcome(
        s.post(
            &format!("Patient/{id}/$meta-add"),
            &json!({"resourceType": "Parameters"}),
        ),
        400,
    );
    assert!(oo.to_string().contains("meta"), "{oo}");
    let oo = outcome(
        s.post(
            &format!("Patient/{id}/$meta-add"),
            &json!({"resourceType": "Parameters", "parameter": [{"name": "meta", "valueString": "x"}]}),
        ),
        400,
    );
    assert!(oo.to_string().contains("valueMeta"), "{oo}");
    let oo = outcome(s.post("Patient/$meta-add", &add), 400);
    assert!(oo.to_string().contains("[id]/$meta-add"), "{oo}");
}

/// Whether an OperationOutcome has no error-severity issue.
fn no_errors(oo: &Value) -> bool {
    oo["issue"].as_array().is_some_and(|issues| {
        issues
            .iter()
            .all(|i| i["severity"] != "error" && i["severity"] != "fatal")
    })
}

/// The error-severity issues of an OperationOutcome, as (expression, diagnostics).
fn errors(oo: &Value) -> Vec<(String, String)> {
    oo["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["severity"] == "error")
        .map(|i| {
            (
                i["expression"][0].as_str().unwrap_or("").to_string(),
                i["diagnostics"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn validate_checks_invariants_bindings_and_profiles() {
    let s = Server::start();
    // pat-1: a contact needs some detail.
    let oo: Value = s
        .post(
            "Patient/$validate",
            &json!({"resourceType": "Patient", "contact": [{"gender": "male"}]}),
        )
        .json()
        .unwrap();
    let found = errors(&oo);
    assert!(
        found
            .iter()
            .any(|(at, d)| at == "Patient.contact[0]" && d.contains("pat-1")),
        "{oo}"
    );
    // A required binding.
    let oo: Value = s
        .post(
            "Patient/$validate",
            &json!({"resourceType": "Patient", "gender": "boy"}),
        )
        .json()
        .unwrap();
    assert!(
        errors(&oo).iter().any(|(at, _)| at == "Patient.gender"),
        "{oo}"
    );
    // per-1 in a datatype.
    let oo: Value = s
        .post(
            "Patient/$validate",
            &json!({"resourceType": "Patient",
            "name": [{"family": "F", "period": {"start": "2020-01-02", "end": "2020-01-01"}}]}),
        )
        .json()
        .unwrap();
    assert!(errors(&oo).iter().any(|(_, d)| d.contains("per-1")), "{oo}");

    // A stored profile with only a differential: birthDate required.
    let profile = json!({
        "resourceType": "StructureDefinition", "id": "dob-required",
        "url": "http://example.org/StructureDefinition/dob-required", "name": "DobRequired",
        "status": "active", "kind": "resource", "abstract": false, "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient", "derivation": "constraint",
        "differential": {"element": [{"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1}]}
    });
    assert_eq!(
        s.put("StructureDefinition/dob-required", &profile).status(),
        201
    );
    let url = "http://example.org/StructureDefinition/dob-required";
    let by_input = |patient: Value| -> Value {
        s.post(
            "Patient/$validate",
            &json!({"resourceType": "Parameters", "parameter": [
            {"name": "resource", "resource": patient}, {"name": "profile", "valueUri": url}]}),
        )
        .json()
        .unwrap()
    };
    let oo = by_input(json!({"resourceType": "Patient", "gender": "male"}));
    assert!(
        errors(&oo).iter().any(|(_, d)| d.contains("birthDate")),
        "{oo}"
    );
    let oo = by_input(json!({"resourceType": "Patient", "birthDate": "2000-01-01"}));
    assert!(no_errors(&oo), "{oo}");
    // A claimed profile is checked too.
    let oo: Value = s
        .post(
            "Patient/$validate",
            &json!({"resourceType": "Patient", "meta": {"profile": [url]}}),
        )
        .json()
        .unwrap();
    assert!(
        errors(&oo).iter().any(|(_, d)| d.contains("birthDate")),
        "{oo}"
    );
    // A core profile: vital signs need a category and a subject.
    let oo: Value = s
        .post(
            "Observation/$validate?profile=http://hl7.org/fhir/StructureDefinition/vitalsigns",
            &json!({"resourceType": "Observation", "status": "final",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}}),
        )
        .json()
        .unwrap();
    assert!(!no_errors(&oo), "{oo}");
    // An unknown profile asked for: the validation cannot be done.
    outcome(
        s.post(
            "Patient/$validate?profile=http://example.org/nope",
            &json!({"resourceType": "Patient"}),
        ),
        404,
    );
}

#[test]
fn validate_reports_without_writing() {
    let s = Server::start();
    let published = s.published();
    // A bare resource, valid.
    let r = s.post(
        "Patient/$validate",
        &json!({"resourceType": "Patient", "gender": "male"}),
    );
    assert_eq!(r.status(), 200);
    let oo: Value = r.json().unwrap();
    assert_eq!(oo["resourceType"], "OperationOutcome");
    assert!(no_errors(&oo), "{oo}");
    // In Parameters, invalid: still 200, the problems with their locations.
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": {"resourceType": "Patient", "gender": 7, "bogus": true}},
        {"name": "mode", "valueCode": "create"}]});
    let r = s.post("Patient/$validate", &body);
    assert_eq!(r.status(), 200);
    let oo: Value = r.json().unwrap();
    let text = oo.to_string();
    assert!(oo["issue"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["severity"] == "error"));
    assert!(
        text.contains("Patient.gender") && text.contains("bogus"),
        "{oo}"
    );
    // A resource of another type than the target.
    let oo: Value = s
        .post(
            "Patient/$validate",
            &json!({"resourceType": "Observation", "status": "final", "code": {}}),
        )
        .json()
        .unwrap();
    assert_eq!(oo["issue"][0]["severity"], "error");
    // Update mode at the instance level checks the id.
    let id = s.create(&json!({"resourceType": "Patient"}));
    let update = |rid: &str| {
        json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": {"resourceType": "Patient", "id": rid}},
        {"name": "mode", "valueCode": "update"}]})
    };
    let oo: Value = s
        .post(&format!("Patient/{id}/$validate"), &update(&id))
        .json()
        .unwrap();
    assert!(no_errors(&oo), "{oo}");
    let oo: Value = s
        .post(&format!("Patient/{id}/$validate"), &update("other"))
        .json()
        .unwrap();
    assert_eq!(oo["issue"][0]["severity"], "error");
    // Bad inputs are 400s naming the parameter.
    let bad = json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": {"resourceType": "Patient"}}, {"name": "mode", "valueCode": "sideways"}]});
    assert!(outcome(s.post("Patient/$validate", &bad), 400)
        .to_string()
        .contains("mode"));
    let twice = json!({"resourceType": "Parameters", "parameter": [
        {"name": "mode", "valueCode": "create"}, {"name": "mode", "valueCode": "create"},
        {"name": "resource", "resource": {"resourceType": "Patient"}}]});
    assert!(outcome(s.post("Patient/$validate", &twice), 400)
        .to_string()
        .contains("mode"));
    let unknown = json!({"resourceType": "Parameters", "parameter": [{"name": "colour", "valueString": "red"}]});
    assert!(outcome(s.post("Patient/$validate", &unknown), 400)
        .to_string()
        .contains("colour"));
    let oo = outcome(
        s.post("Patient/$validate", &json!({"resourceType": "Parameters"})),
        400,
    );
    assert!(oo.to_string().contains("resource"), "{oo}");
    // A resource input cannot travel in a URL: GET can only validate a deletion.
    let oo = outcome(s.get("Patient/$validate").send().unwrap(), 400);
    assert!(oo.to_string().contains("POST"), "{oo}");
    outcome(s.get("Patient/$validate?resource=x").send().unwrap(), 400);
    outcome(
        s.post("$validate", &json!({"resourceType": "Patient"})),
        400,
    );
    // Nothing was written but the one Patient.
    let (_, h) = get_json(&s, "_history");
    assert_eq!(h["total"].as_u64(), Some(published + 1));
}

#[test]
fn healthcheck_and_unknown_operations() {
    let s = Server::start();
    let (status, p) = get_json(&s, "$healthcheck");
    assert_eq!(status, 200);
    assert_eq!(param(&p, "status")["valueCode"], "ok");
    let r = s.post("$healthcheck", &json!({"resourceType": "Parameters"}));
    assert_eq!(r.status(), 200);
    let oo = outcome(s.get("$healthcheck?verbose=true").send().unwrap(), 400);
    assert!(oo.to_string().contains("verbose"));
    outcome(s.get("Patient/$healthcheck").send().unwrap(), 400);
    outcome(s.get("$nothing-here").send().unwrap(), 400);
    outcome(s.get("Nope/$meta").send().unwrap(), 404);
}

#[test]
fn purge_removes_the_compartment_for_good() {
    let s = Server::start();
    let keep = s.create(&json!({"resourceType": "Patient", "name": [{"family": "Keep"}]}));
    let gone = s.create(&json!({"resourceType": "Patient", "name": [{"family": "Gone"}]}));
    let org = s.create(&json!({"resourceType": "Organization", "name": "Clinic"}));
    let obs = |p: &str| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                               "subject": {"reference": format!("Patient/{p}")}})
    };
    let mut theirs = Vec::new();
    for _ in 0..3 {
        theirs.push(s.create(&obs(&gone)));
    }
    let mine = s.create(&obs(&keep));
    // A second version, so history goes too.
    assert_eq!(
        s.put(
            &format!("Patient/{gone}"),
            &json!({"resourceType": "Patient", "id": gone, "active": true})
        )
        .status(),
        200
    );
    outcome(
        s.get(&format!("Patient/{gone}/$purge")).send().unwrap(),
        405,
    );
    let r = s
        .client
        .post(s.url(&format!("Patient/{gone}/$purge")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let out: Value = r.json().unwrap();
    assert_eq!(param(&out, "resources")["valueInteger"], 4);
    assert_eq!(param(&out, "versions")["valueInteger"], 5);
    // Gone for good: not read, not in history, not found.
    outcome(s.get(&format!("Patient/{gone}")).send().unwrap(), 404);
    outcome(
        s.get(&format!("Patient/{gone}/_history")).send().unwrap(),
        404,
    );
    for o in &theirs {
        outcome(s.get(&format!("Observation/{o}")).send().unwrap(), 404);
    }
    let (_, found) = get_json(&s, "Patient?family=gone");
    assert_eq!(found.get("total"), Some(&json!(0)));
    let (_, found) = get_json(&s, &format!("Observation?subject=Patient/{gone}"));
    assert_eq!(found.get("total"), Some(&json!(0)));
    let (_, h) = get_json(&s, "_history");
    assert!(!h.to_string().contains(&gone));
    // Everything else stays.
    for path in [
        format!("Patient/{keep}"),
        format!("Observation/{mine}"),
        format!("Organization/{org}"),
    ] {
        assert_eq!(s.get(&path).send().unwrap().status(), 200, "{path}");
    }
    // Purged twice: the patient is not known any more.
    outcome(
        s.client
            .post(s.url(&format!("Patient/{gone}/$purge")))
            .send()
            .unwrap(),
        404,
    );
    outcome(
        s.client
            .post(s.url(&format!("Observation/{mine}/$purge")))
            .send()
            .unwrap(),
        400,
    );
}

/// The resources of a searchset, page after page, as `Type/id` with their search mode.
fn all_pages(s: &Server, first: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut url = s.url(first);
    for _ in 0..100 {
        let r = s.client.get(&url).send().unwrap();
        assert_eq!(r.status(), 200, "{url}");
        let page: Value = r.json().unwrap();
        assert_eq!(page["type"], "searchset");
        for e in page["entry"].as_array().into_iter().flatten() {
            let res = &e["resource"];
            out.push((
                format!(
                    "{}/{}",
                    res["resourceType"].as_str().unwrap(),
                    res["id"].as_str().unwrap()
                ),
                e["search"]["mode"].as_str().unwrap_or("").to_string(),
            ));
        }
        match page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
        {
            Some(next) => url = next["url"].as_str().unwrap().to_string(),
            None => return out,
        }
    }
    panic!("too many pages");
}

fn matched(entries: &[(String, String)]) -> Vec<String> {
    let mut m: Vec<String> = entries
        .iter()
        .filter(|(_, mode)| mode == "match")
        .map(|(r, _)| r.clone())
        .collect();
    m.sort();
    m
}

#[test]
fn everything_gathers_a_patients_compartment() {
    let s = Server::start();
    s.put("Patient/p1", &json!({"resourceType": "Patient", "id": "p1", "generalPractitioner": [{"reference": "Practitioner/dr"}]}));
    s.put(
        "Patient/p2",
        &json!({"resourceType": "Patient", "id": "p2"}),
    );
    s.put(
        "Practitioner/dr",
        &json!({"resourceType": "Practitioner", "id": "dr"}),
    );
    for (id, patient, date) in [
        ("o1", "p1", "2020-01-01"),
        ("o2", "p1", "2021-06-01"),
        ("o3", "p2", "2021-06-01"),
    ] {
        s.put(
            &format!("Observation/{id}"),
            &json!({"resourceType": "Observation", "id": id, "status": "final", "code": {"text": "x"},
                    "subject": {"reference": format!("Patient/{patient}")}, "effectiveDateTime": date,
                    "performer": [{"reference": "Practitioner/dr"}]}),
        );
    }
    s.put(
        "Condition/c1",
        &json!({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}}),
    );
    s.put("Encounter/e1", &json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
        "class": {"code": "AMB"}, "subject": {"reference": "Patient/p1"}, "period": {"start": "2019-05-01", "end": "2019-05-02"}}));

    let all = all_pages(&s, "Patient/p1/$everything");
    assert_eq!(
        matched(&all),
        [
            "Condition/c1",
            "Encounter/e1",
            "Observation/o1",
            "Observation/o2",
            "Patient/p1"
        ]
    );
    // What they reference comes along.
    assert!(
        all.iter()
            .any(|(r, mode)| r == "Practitioner/dr" && mode == "include"),
        "{all:?}"
    );
    assert!(!all
        .iter()
        .any(|(r, _)| r.contains("p2") || r == "Observation/o3"));

    // Paged with the stable paging of search: the same set, a page at a time.
    let paged = all_pages(&s, "Patient/p1/$everything?_count=2");
    assert_eq!(matched(&paged), matched(&all));

    // _type, and dates of care (a type without a `date` parameter, such as Patient, keeps
    // all of its resources whatever the range).
    let typed = all_pages(&s, "Patient/p1/$everything?_type=Observation,Patient");
    assert_eq!(
        matched(&typed),
        ["Observation/o1", "Observation/o2", "Patient/p1"]
    );
    let dated = all_pages(
        &s,
        "Patient/p1/$everything?start=2021-01-01&_type=Observation,Encounter,Patient",
    );
    assert_eq!(matched(&dated), ["Observation/o2", "Patient/p1"]);
    let ended = all_pages(
        &s,
        "Patient/p1/$everything?end=2020-12-31&_type=Observation,Encounter",
    );
    assert_eq!(matched(&ended), ["Encounter/e1", "Observation/o1"]);

    // _since: only what changed since.
    std::thread::sleep(std::time::Duration::from_millis(5));
    let since = flint_fhir::datetime::format_instant(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64,
    );
    s.put("Condition/c1", &json!({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}, "note": [{"text": "later"}]}));
    let changed = all_pages(
        &s,
        &format!(
            "Patient/p1/$everything?_since={}",
            since.replace('+', "%2B")
        ),
    );
    assert_eq!(matched(&changed), ["Condition/c1"]);

    // The type level: every patient's compartment.
    let everyone = all_pages(&s, "Patient/$everything?_type=Observation");
    assert_eq!(
        matched(&everyone),
        ["Observation/o1", "Observation/o2", "Observation/o3"]
    );
    // By POST with Parameters too.
    let r = s.post(
        "Patient/p2/$everything",
        &json!({"resourceType": "Parameters", "parameter": [{"name": "_type", "valueCode": "Observation"}]}),
    );
    assert_eq!(r.status(), 200);
    let b: Value = r.json().unwrap();
    assert_eq!(b["entry"][0]["resource"]["id"], "o3");
}

#[test]
fn everything_refuses_bad_input() {
    let s = Server::start();
    s.put(
        "Patient/p1",
        &json!({"resourceType": "Patient", "id": "p1"}),
    );
    outcome(s.get("Patient/nope/$everything").send().unwrap(), 404);
    let oo = outcome(
        s.get("Patient/p1/$everything?_type=Medication")
            .send()
            .unwrap(),
        400,
    );
    assert!(oo.to_string().contains("_type"), "{oo}");
    outcome(
        s.get("Patient/p1/$everything?_type=Nope").send().unwrap(),
        400,
    );
    outcome(
        s.get("Patient/p1/$everything?start=yesterday")
            .send()
            .unwrap(),
        400,
    );
    outcome(
        s.get("Patient/p1/$everything?_count=-1").send().unwrap(),
        400,
    );
    outcome(
        s.get("Patient/p1/$everything?colour=red").send().unwrap(),
        400,
    );
    outcome(s.get("Observation/$everything").send().unwrap(), 400);
    // A deleted patient is gone.
    assert_eq!(
        s.client
            .delete(s.url("Patient/p1"))
            .send()
            .unwrap()
            .status(),
        204
    );
    outcome(s.get("Patient/p1/$everything").send().unwrap(), 410);
}

#[test]
fn meta_at_system_and_type_level_lists_the_labels_in_use() {
    let s = Server::start();
    s.put("Patient/a", &json!({"resourceType": "Patient", "id": "a", "meta": {
        "tag": [{"system": "http://e.org/t", "code": "x", "display": "X"}],
        "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
        "profile": ["http://e.org/StructureDefinition/p"]}}));
    s.put("Patient/b", &json!({"resourceType": "Patient", "id": "b", "meta": {
        "tag": [{"system": "http://e.org/t", "code": "x"}, {"system": "http://e.org/t", "code": "y"}]}}));
    s.put(
        "Observation/o",
        &json!({"resourceType": "Observation", "id": "o", "status": "final",
        "code": {"text": "t"}, "meta": {"tag": [{"system": "http://e.org/t", "code": "obs"}]}}),
    );
    let (_, p) = get_json(&s, "Patient/$meta");
    let meta = &p["parameter"][0]["valueMeta"];
    assert_eq!(
        meta["tag"],
        json!([{"system": "http://e.org/t", "code": "x", "display": "X"}, {"system": "http://e.org/t", "code": "y"}])
    );
    assert_eq!(meta["security"].as_array().unwrap().len(), 1);
    assert_eq!(
        meta["profile"],
        json!(["http://e.org/StructureDefinition/p"])
    );
    let (_, all) = get_json(&s, "$meta");
    let codes: Vec<&str> = all["parameter"][0]["valueMeta"]["tag"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"obs") && codes.contains(&"x") && codes.contains(&"y"),
        "{codes:?}"
    );
    // A type with no labels: an empty Meta.
    let (_, none) = get_json(&s, "Encounter/$meta");
    assert_eq!(none["parameter"][0]["valueMeta"], json!({}));
}
