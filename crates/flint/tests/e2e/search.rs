//! Search over HTTP against a small data set whose expected matches are worked out by hand.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::server::{outcome, Server};

fn load(s: &Server) {
    let resources = [
        json!({"resourceType": "Organization", "id": "org1", "name": "Acme Health"}),
        json!({"resourceType": "Patient", "id": "p1", "active": true, "managingOrganization": {"reference": "Organization/org1"}, "gender": "male", "birthDate": "1970-05-01",
               "name": [{"family": "Smith", "given": ["John"]}], "identifier": [{"system": "http://sys1", "value": "A1"}],
               "address": [{"city": "Boston"}]}),
        json!({"resourceType": "Patient", "id": "p2", "gender": "female", "birthDate": "1985-12-24",
               "name": [{"family": "Smythe", "given": ["Jane"]}], "identifier": [{"system": "http://sys1", "value": "A2"}]}),
        json!({"resourceType": "Patient", "id": "p3", "gender": "male", "birthDate": "1990",
               "name": [{"family": "Müller", "given": ["Jürgen"]}], "identifier": [{"system": "http://sys2", "value": "A1"}]}),
        json!({"resourceType": "Observation", "id": "o1", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}, "subject": {"reference": "Patient/p1"},
               "effectiveDateTime": "2020-01-15T10:00:00Z",
               "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}),
        json!({"resourceType": "Observation", "id": "o2", "status": "final",
               "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
               "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "subject": {"reference": "Patient/p1"},
               "effectivePeriod": {"start": "2021-03-01", "end": "2021-03-02"},
               "valueQuantity": {"value": 140, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}),
        json!({"resourceType": "Observation", "id": "o3", "status": "preliminary",
               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}, "subject": {"reference": "Patient/p2"},
               "effectiveDateTime": "2022-06", "valueQuantity": {"value": 88, "unit": "/min"}}),
        json!({"resourceType": "Observation", "id": "o4", "status": "final",
               "code": {"coding": [{"system": "http://snomed.info/sct", "code": "27113001"}], "text": "Body weight"},
               "subject": {"reference": "Patient/p3"},
               "valueQuantity": {"value": 70.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}),
    ];
    for r in resources {
        let path = format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        assert_eq!(s.put(&path, &r).status(), 201, "{path}");
    }
}

fn ids(s: &Server, query: &str) -> BTreeSet<String> {
    let r = s.get(query).send().unwrap();
    assert_eq!(r.status(), 200, "{query}");
    let b: Value = r.json().unwrap();
    assert_eq!(b["type"], "searchset", "{query}");
    let found: BTreeSet<String> = b["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    if let Some(total) = b["total"].as_u64() {
        assert_eq!(
            total as usize,
            found.len(),
            "{query}: total and entries disagree"
        );
    }
    found
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[test]
fn parameters_of_every_supported_type_find_the_expected_resources() {
    let s = Server::start();
    load(&s);
    let base = s.base.clone();
    let cases: Vec<(String, &[&str])> = vec![
        // string: prefix, case- and accent-insensitive; :exact; :contains; any name part
        ("Patient?family=smi".into(), &["p1"]),
        ("Patient?family=SM".into(), &["p1", "p2"]),
        ("Patient?family=muller".into(), &["p3"]),
        ("Patient?family:exact=Smith".into(), &["p1"]),
        ("Patient?family:exact=smith".into(), &[]),
        ("Patient?family:contains=yth".into(), &["p2"]),
        ("Patient?name=jane".into(), &["p2"]),
        ("Patient?address-city=bos".into(), &["p1"]),
        // token: code, system|code, |code, system|, :not, OR
        ("Patient?gender=male".into(), &["p1", "p3"]),
        ("Patient?gender=male,female".into(), &["p1", "p2", "p3"]),
        ("Patient?gender:not=male".into(), &["p2"]),
        ("Patient?identifier=http://sys1|A1".into(), &["p1"]),
        ("Patient?identifier=A1".into(), &["p1", "p3"]),
        ("Patient?identifier=http://sys1|".into(), &["p1", "p2"]),
        (
            "Observation?code=http://loinc.org|8867-4".into(),
            &["o1", "o3"],
        ),
        ("Observation?code=|8867-4".into(), &[]),
        ("Observation?code=8480-6".into(), &["o2"]),
        ("Observation?code:text=body".into(), &["o4"]),
        ("Patient?active=true".into(), &["p1"]),
        ("Patient?active:missing=true".into(), &["p2", "p3"]),
        ("Patient?active:missing=false".into(), &["p1"]),
        ("Observation?category=vital-signs".into(), &["o2"]),
        // :in / :not-in against core value sets
        (
            "Observation?category:in=http://hl7.org/fhir/ValueSet/observation-category".into(),
            &["o2"],
        ),
        (
            "Observation?category:not-in=http://hl7.org/fhir/ValueSet/observation-category".into(),
            &["o1", "o3", "o4"],
        ),
        // reference: Type/id, id, :Type, absolute with our base, patient parameter
        ("Observation?subject=Patient/p1".into(), &["o1", "o2"]),
        ("Observation?subject=p1".into(), &["o1", "o2"]),
        ("Observation?subject:Patient=p2".into(), &["o3"]),
        ("Observation?patient=p3".into(), &["o4"]),
        (
            format!("Observation?subject={base}/Patient/p1"),
            &["o1", "o2"],
        ),
        ("Observation?subject=Patient/nobody".into(), &[]),
        // date: precisions and prefixes against dates, date-times and periods
        ("Patient?birthdate=1970".into(), &["p1"]),
        ("Patient?birthdate=lt1980".into(), &["p1"]),
        ("Patient?birthdate=ge1985-12-24".into(), &["p2", "p3"]),
        ("Patient?birthdate=sa1985".into(), &["p3"]),
        ("Patient?birthdate=eb1980".into(), &["p1"]),
        ("Patient?birthdate=ne1970-05-01".into(), &["p2", "p3"]),
        ("Observation?date=2020".into(), &["o1"]),
        ("Observation?date=2021-03".into(), &["o2"]),
        ("Observation?date=ge2021".into(), &["o2", "o3"]),
        ("Observation?date=le2020-01-15T10:00:00Z".into(), &["o1"]),
        ("Observation?date=gt2022-06-15".into(), &["o3"]),
        // quantity: prefixes, precision, system and unit
        ("Observation?value-quantity=gt100".into(), &["o2"]),
        ("Observation?value-quantity=72".into(), &["o1"]),
        ("Observation?value-quantity=lt80".into(), &["o1", "o4"]),
        (
            "Observation?value-quantity=70.5|http://unitsofmeasure.org|kg".into(),
            &["o4"],
        ),
        ("Observation?value-quantity=70.5||g".into(), &[]),
        // Without a system the unit as written matches too; with one, only the coded unit.
        ("Observation?value-quantity=gt100||mmHg".into(), &["o2"]),
        ("Observation?value-quantity=gt100||mm[Hg]".into(), &["o2"]),
        (
            "Observation?value-quantity=gt100|http://unitsofmeasure.org|mmHg".into(),
            &[],
        ),
        ("Observation?value-quantity=ap88".into(), &["o3"]),
        // chains (one and two levels) and reverse chains (_has, nested)
        (
            "Observation?subject:Patient.name=smith".into(),
            &["o1", "o2"],
        ),
        ("Observation?subject.family=smythe".into(), &["o3"]),
        (
            "Observation?patient.gender=male".into(),
            &["o1", "o2", "o4"],
        ),
        (
            "Observation?subject:Patient.organization.name=acme".into(),
            &["o1", "o2"],
        ),
        ("Observation?subject:Patient.name=nobody".into(), &[]),
        (
            "Patient?_has:Observation:subject:code=8867-4".into(),
            &["p1", "p2"],
        ),
        (
            "Patient?_has:Observation:patient:value-quantity=gt100".into(),
            &["p1"],
        ),
        (
            "Patient?_has:Observation:subject:status=preliminary".into(),
            &["p2"],
        ),
        (
            "Organization?_has:Patient:organization:_has:Observation:subject:code=8480-6".into(),
            &["org1"],
        ),
        // compartments
        ("Patient/p1/Observation".into(), &["o1", "o2"]),
        ("Patient/p1/Observation?code=8480-6".into(), &["o2"]),
        ("Patient/p3/Observation".into(), &["o4"]),
        ("Patient/p1/Patient".into(), &["p1"]),
        ("Patient/p1/Organization".into(), &[]),
        // AND across parameters; _id; _lastUpdated
        ("Observation?status=final&code=8867-4".into(), &["o1"]),
        ("Observation?_id=o1,o2".into(), &["o1", "o2"]),
        (
            "Observation?_lastUpdated=ge2020-01-01".into(),
            &["o1", "o2", "o3", "o4"],
        ),
        ("Observation?_lastUpdated=lt2000".into(), &[]),
    ];
    for (query, expected) in cases {
        assert_eq!(ids(&s, &query), set(expected), "{query}");
    }
}

#[test]
fn results_follow_changes_and_deletions() {
    let s = Server::start();
    load(&s);
    let p = json!({"resourceType": "Patient", "id": "p2", "gender": "male", "name": [{"family": "Jones"}]});
    assert_eq!(s.put("Patient/p2", &p).status(), 200);
    assert_eq!(ids(&s, "Patient?family=smythe"), set(&[]));
    assert_eq!(ids(&s, "Patient?family=jones"), set(&["p2"]));
    assert_eq!(ids(&s, "Patient?gender=male"), set(&["p1", "p2", "p3"]));
    assert_eq!(
        s.client
            .delete(s.url("Patient/p1"))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert_eq!(ids(&s, "Patient?gender=male"), set(&["p2", "p3"]));
}

#[test]
fn paging_sorting_totals_and_summary() {
    let s = Server::start();
    load(&s);
    let b: Value = s
        .get("Observation?_summary=count")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(b["total"], 4);
    assert!(b.get("entry").is_none());
    let b: Value = s
        .get("Observation?_total=none")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(b.get("total").is_none());
    assert_eq!(b["entry"].as_array().unwrap().len(), 4);

    let order = |q: &str| -> Vec<String> {
        let b: Value = s.get(q).send().unwrap().json().unwrap();
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(order("Observation?_sort=_id"), vec!["o1", "o2", "o3", "o4"]);
    assert_eq!(
        order("Observation?_sort=-_id"),
        vec!["o4", "o3", "o2", "o1"]
    );
    assert_eq!(
        order("Observation?_sort=_lastUpdated"),
        vec!["o1", "o2", "o3", "o4"]
    );
    assert_eq!(
        order("Observation?_sort=-_lastUpdated"),
        vec!["o4", "o3", "o2", "o1"]
    );
    // By parameters: lowest value first (highest when descending), resources without a
    // value last, several keys, and paging through a sorted result.
    assert_eq!(order("Patient?_sort=birthdate"), vec!["p1", "p2", "p3"]);
    assert_eq!(order("Patient?_sort=-birthdate"), vec!["p3", "p2", "p1"]);
    assert_eq!(order("Patient?_sort=family"), vec!["p3", "p1", "p2"]);
    assert_eq!(
        order("Observation?_sort=date"),
        vec!["o1", "o2", "o3", "o4"]
    );
    assert_eq!(
        order("Observation?_sort=-value-quantity"),
        vec!["o2", "o3", "o1", "o4"]
    );
    assert_eq!(order("Patient?_sort=-family,_id"), vec!["p2", "p1", "p3"]);
    let mut sorted = Vec::new();
    let mut url = s.url("Observation?_sort=-date&_count=1");
    loop {
        let page: Value = s.client.get(&url).send().unwrap().json().unwrap();
        sorted.extend(
            page["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_string()),
        );
        match page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
        {
            Some(next) => url = next["url"].as_str().unwrap().to_string(),
            None => break,
        }
    }
    assert_eq!(sorted, vec!["o3", "o2", "o1", "o4"]);

    // Pages of 3 by id, and a snapshot: a change after page 1 does not move later pages.
    let first: Value = s
        .get("Patient?_count=1&_sort=_id&_total=accurate")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(first["entry"][0]["resource"]["id"], "p1");
    assert_eq!(first["total"], 3);
    // Without `_total` the total is given only when it is free: one page holds every match.
    let unasked: Value = s.get("Patient?_count=1").send().unwrap().json().unwrap();
    assert!(unasked.get("total").is_none(), "{unasked}");
    let whole: Value = s.get("Patient?_count=3").send().unwrap().json().unwrap();
    assert_eq!(whole["total"], 3);
    // `_count=0` is the total alone, whatever `_total` says.
    for q in ["Patient?_count=0", "Patient?_count=0&_total=accurate"] {
        let counted: Value = s.get(q).send().unwrap().json().unwrap();
        assert_eq!(counted["total"], 3, "{q}");
        assert!(counted.get("entry").is_none(), "{q}");
    }
    let changed = json!({"resourceType": "Patient", "id": "p2", "gender": "other"});
    assert_eq!(s.put("Patient/p2", &changed).status(), 200);
    assert_eq!(
        s.client
            .delete(s.url("Patient/p3"))
            .send()
            .unwrap()
            .status(),
        204
    );
    let mut url = first["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let mut seen = vec!["p1".to_string()];
    loop {
        let page: Value = s.client.get(&url).send().unwrap().json().unwrap();
        assert_eq!(page["total"], 3, "the total of the snapshot");
        for e in page["entry"].as_array().unwrap() {
            seen.push(e["resource"]["id"].as_str().unwrap().to_string());
            if e["resource"]["id"] == "p2" {
                assert_eq!(
                    e["resource"]["gender"], "female",
                    "p2 as it was when paging began"
                );
            }
        }
        match page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
        {
            Some(next) => url = next["url"].as_str().unwrap().to_string(),
            None => break,
        }
    }
    assert_eq!(seen, vec!["p1", "p2", "p3"]);
    // A new search sees the changes.
    assert_eq!(ids(&s, "Patient?_sort=_id"), set(&["p1", "p2"]));

    let b: Value = s
        .get("Patient?_elements=gender")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let r = &b["entry"][0]["resource"];
    assert!(r.get("gender").is_some() && r.get("name").is_none());
    assert_eq!(b["entry"][0]["search"]["mode"], "match");
    assert!(b["entry"][0]["fullUrl"]
        .as_str()
        .unwrap()
        .starts_with(&s.base));
}

#[test]
fn handling_of_unknown_unsupported_and_malformed_parameters() {
    let s = Server::start();
    load(&s);
    // Lenient (default): unknown parameters are ignored; the self link (sealed: the query is
    // not in it in clear) reruns exactly what was applied.
    let b: Value = s
        .get("Patient?gender=female&nonsense=1")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(b["total"], 1);
    let self_link = b["link"][0]["url"].as_str().unwrap();
    assert!(
        !self_link.contains("gender") && !self_link.contains("nonsense"),
        "{self_link}"
    );
    let again: Value = s.client.get(self_link).send().unwrap().json().unwrap();
    assert_eq!(again["total"], 1);
    assert_eq!(again["entry"][0]["resource"]["id"], "p2");
    // A link altered in any way is refused.
    let mut tampered = self_link.to_string();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    outcome(s.client.get(&tampered).send().unwrap(), 400);
    outcome(
        s.client.get(s.url("__page/not-a-token")).send().unwrap(),
        400,
    );
    // Strict: refused.
    let r = s
        .get("Patient?gender=female&nonsense=1")
        .header("prefer", "handling=strict")
        .send()
        .unwrap();
    let oo = outcome(r, 400);
    assert!(oo.to_string().contains("nonsense"));
    // Malformed values and modifiers that are not valid for the type: 400.
    outcome(s.get("Patient?birthdate=yesterday").send().unwrap(), 400);
    outcome(
        s.get("Observation?value-quantity=lots").send().unwrap(),
        400,
    );
    outcome(s.get("Patient?gender:exact=male").send().unwrap(), 400);
    outcome(s.get("Patient?active:missing=maybe").send().unwrap(), 400);
    outcome(s.get("Patient?_count=many").send().unwrap(), 400);
    // Features not offered yet say so rather than answering wrongly.
    let oo = outcome(s.get("Patient?_filter=name eq x").send().unwrap(), 400);
    assert_eq!(oo["issue"][0]["code"], "not-supported");
    outcome(
        s.get("Observation?code:in=http://x/vs").send().unwrap(),
        400,
    );
    outcome(s.get("Patient?_sort=nonsense").send().unwrap(), 400);
    outcome(
        s.get("Observation?code:in=http://example.org/no-such-valueset")
            .send()
            .unwrap(),
        400,
    );
    outcome(s.get("Patient?_sort=nonsense").send().unwrap(), 400);
    outcome(
        s.get("Observation?code:in=http://example.org/no-such-valueset")
            .send()
            .unwrap(),
        400,
    );
    outcome(s.get("Nope?x=1").send().unwrap(), 404);
    outcome(s.get("Observation/o1/Patient").send().unwrap(), 404);
    outcome(s.get("Nope/1/Observation").send().unwrap(), 404);
}

#[test]
fn post_search_with_a_form_body() {
    let s = Server::start();
    load(&s);
    let r = s
        .client
        .post(s.url("Patient/_search"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("family=sm&gender=female")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().unwrap();
    assert_eq!(b["total"], 1);
    assert_eq!(b["entry"][0]["resource"]["id"], "p2");
    let r = s
        .client
        .post(s.url("Patient/_search"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .unwrap();
    outcome(r, 415);
}

#[test]
fn transactions_and_patches_are_indexed_too() {
    let s = Server::start();
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:8c0d3f1e-1111-4aaa-8bbb-000000000001", "resource": {"resourceType": "Patient", "name": [{"family": "Tx"}]}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "urn:uuid:8c0d3f1e-1111-4aaa-8bbb-000000000001"}}, "request": {"method": "POST", "url": "Observation"}}
    ]});
    let resp: Value = s.post("", &tx).json().unwrap();
    let patient = resp["entry"][0]["response"]["location"]
        .as_str()
        .unwrap()
        .split("/_history")
        .next()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(ids(&s, "Patient?family=tx"), set(&[&patient]));
    assert_eq!(
        ids(&s, &format!("Observation?subject=Patient/{patient}")).len(),
        1
    );
    let r = s
        .client
        .patch(s.url(&format!("Patient/{patient}")))
        .header("content-type", "application/json-patch+json")
        .body(json!([{"op": "replace", "path": "/name/0/family", "value": "Patched"}]).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(ids(&s, "Patient?family=tx"), set(&[]));
    assert_eq!(ids(&s, "Patient?family=patched"), set(&[&patient]));
}

#[test]
fn include_and_revinclude() {
    let s = Server::start();
    load(&s);
    let entries = |q: &str| -> Vec<(String, String)> {
        let r = s.get(q).send().unwrap();
        assert_eq!(r.status(), 200, "{q}");
        let b: Value = r.json().unwrap();
        let mut v: Vec<(String, String)> = b["entry"]
            .as_array()
            .map(|e| {
                e.iter()
                    .map(|e| {
                        let r = &e["resource"];
                        (
                            format!(
                                "{}/{}",
                                r["resourceType"].as_str().unwrap(),
                                r["id"].as_str().unwrap()
                            ),
                            e["search"]["mode"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        entries("Observation?code=8867-4&_include=Observation:subject"),
        vec![
            pair("Observation/o1", "match"),
            pair("Observation/o3", "match"),
            pair("Patient/p1", "include"),
            pair("Patient/p2", "include")
        ]
    );
    // A target type that does not fit brings nothing.
    assert_eq!(
        entries("Observation?_id=o1&_include=Observation:subject:Device"),
        vec![pair("Observation/o1", "match")]
    );
    assert_eq!(
        entries("Patient?_id=p1&_revinclude=Observation:subject"),
        vec![
            pair("Observation/o1", "include"),
            pair("Observation/o2", "include"),
            pair("Patient/p1", "match")
        ]
    );
    // :iterate follows from included resources: observation -> patient -> organization.
    assert_eq!(
        entries(
            "Observation?_id=o1&_include=Observation:subject&_include:iterate=Patient:organization"
        ),
        vec![
            pair("Observation/o1", "match"),
            pair("Organization/org1", "include"),
            pair("Patient/p1", "include")
        ]
    );
    // Every reference parameter of the type.
    assert_eq!(
        entries("Patient?_id=p1&_include=Patient:*"),
        vec![
            pair("Organization/org1", "include"),
            pair("Patient/p1", "match")
        ]
    );
    outcome(
        s.get("Patient?_include=Patient:family").send().unwrap(),
        400,
    );
    outcome(s.get("Patient?_include=Nope:subject").send().unwrap(), 400);
}

#[test]
fn system_search_across_types() {
    let s = Server::start();
    load(&s);
    let found = |q: &str| -> BTreeSet<String> {
        let r = s.client.get(format!("{}{q}", s.base)).send().unwrap();
        assert_eq!(r.status(), 200, "{q}");
        let b: Value = r.json().unwrap();
        let found: BTreeSet<String> = b["entry"]
            .as_array()
            .map(|e| {
                e.iter()
                    .map(|e| {
                        format!(
                            "{}/{}",
                            e["resource"]["resourceType"].as_str().unwrap(),
                            e["resource"]["id"].as_str().unwrap()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(b["total"].as_u64().unwrap() as usize, found.len(), "{q}");
        found
    };
    assert_eq!(
        found("?_type=Patient,Observation&_id=p1,o2"),
        set(&["Patient/p1", "Observation/o2"])
    );
    assert_eq!(found("/?_id=o1"), set(&["Observation/o1"]));
    assert_eq!(
        found("?_type=Patient,Organization&_lastUpdated=ge2000"),
        set(&[
            "Patient/p1",
            "Patient/p2",
            "Patient/p3",
            "Organization/org1"
        ])
    );
    // identifier means something for both types; a parameter one type lacks is refused.
    assert_eq!(
        found("?_type=Patient,Organization&identifier=A1"),
        set(&["Patient/p1", "Patient/p3"])
    );
    outcome(
        s.client
            .get(format!("{}?_type=Patient,Observation&code=8480-6", s.base))
            .send()
            .unwrap(),
        400,
    );
    outcome(
        s.client
            .get(format!("{}?gender=male", s.base))
            .send()
            .unwrap(),
        400,
    );
    outcome(
        s.client
            .get(format!("{}?_type=Nope", s.base))
            .send()
            .unwrap(),
        400,
    );
    outcome(s.client.get(s.base.clone()).send().unwrap(), 400);
}

#[test]
fn custom_search_parameters_apply_to_new_writes_at_once() {
    // The data directory outlives the first server: the parameter must survive a restart.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(&dir.path().join("data"), &[], &[]);
    let nickname = json!({
        "resourceType": "SearchParameter", "id": "patient-nickname", "url": "http://example.org/SearchParameter/patient-nickname",
        "name": "nickname", "status": "active", "description": "A patient's nickname", "code": "nickname",
        "base": ["Patient"], "type": "string", "expression": "Patient.name.where(use = 'nickname').given"
    });
    assert_eq!(
        s.put("SearchParameter/patient-nickname", &nickname)
            .status(),
        201
    );
    let p = json!({"resourceType": "Patient", "id": "nick", "name": [{"use": "nickname", "given": ["Bubba"]}, {"use": "official", "given": ["Robert"]}]});
    assert_eq!(s.put("Patient/nick", &p).status(), 201);
    assert_eq!(ids(&s, "Patient?nickname=bub"), set(&["nick"]));
    assert_eq!(ids(&s, "Patient?nickname=rob"), set(&[]));
    let r = s
        .get("Patient?nickname=bub")
        .header("prefer", "handling=strict")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "a known parameter now");
    // It is advertised, and a restarted server still knows it.
    let cs: Value = s.get("metadata").send().unwrap().json().unwrap();
    let patient = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap()
        .clone();
    assert!(patient["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "nickname"));
    let data = s.kill();
    let s = Server::start_in(&data, &[], &[]);
    assert_eq!(ids(&s, "Patient?nickname=bub"), set(&["nick"]));
    // Deleting it takes it away.
    assert_eq!(
        s.client
            .delete(s.url("SearchParameter/patient-nickname"))
            .send()
            .unwrap()
            .status(),
        204
    );
    let r = s
        .get("Patient?nickname=bub")
        .header("prefer", "handling=strict")
        .send()
        .unwrap();
    outcome(r, 400);
    // An expression that does not compile is refused.
    let mut bad = nickname.clone();
    bad["expression"] = json!("Patient.name.where(");
    let oo = outcome(s.put("SearchParameter/patient-nickname", &bad), 400);
    assert!(
        crate::server::has_expression(&oo, "SearchParameter.expression"),
        "{oo}"
    );
}

fn put_all(s: &Server, resources: &[Value]) {
    for r in resources {
        let path = format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        assert_eq!(s.put(&path, r).status(), 201, "{path}");
    }
}

fn loinc(code: &str) -> Value {
    json!({"coding": [{"system": "http://loinc.org", "code": code}]})
}

fn mmhg(value: f64) -> Value {
    json!({"value": value, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"})
}

#[test]
fn composite_parameters_match_components_on_the_same_element() {
    let s = Server::start();
    let snomed =
        |code: &str| json!({"coding": [{"system": "http://snomed.info/sct", "code": code}]});
    put_all(
        &s,
        &[
            json!({"resourceType": "Observation", "id": "bp1", "status": "final", "code": loinc("85354-6"),
                   "component": [{"code": loinc("8480-6"), "valueQuantity": mmhg(120.0)},
                                 {"code": loinc("8462-4"), "valueQuantity": mmhg(80.0)}]}),
            json!({"resourceType": "Patient", "id": "pbp"}),
            json!({"resourceType": "Observation", "id": "bp2", "status": "final", "code": loinc("85354-6"), "subject": {"reference": "Patient/pbp"},
                   "component": [{"code": loinc("8480-6"), "valueQuantity": mmhg(150.0)},
                                 {"code": loinc("8462-4"), "valueQuantity": mmhg(95.0)}]}),
            json!({"resourceType": "Observation", "id": "w1", "status": "final", "code": loinc("29463-7"),
                   "valueQuantity": {"value": 70, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}),
            json!({"resourceType": "Observation", "id": "w2", "status": "final",
                   "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}, {"system": "http://loinc.org", "code": "3141-9"}]},
                   "valueQuantity": {"value": 90, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}),
            json!({"resourceType": "Observation", "id": "c1", "status": "final", "code": loinc("94500-6"),
                   "valueCodeableConcept": snomed("260385009")}),
            json!({"resourceType": "Observation", "id": "c2", "status": "final", "code": loinc("94500-6"),
                   "valueCodeableConcept": snomed("10828004")}),
            json!({"resourceType": "Observation", "id": "s1", "status": "final", "code": loinc("5778-6"),
                   "valueString": "Yellow, clear"}),
            json!({"resourceType": "Observation", "id": "d1", "status": "final", "code": loinc("21112-8"),
                   "valueDateTime": "2021-06-15"}),
            json!({"resourceType": "DocumentReference", "id": "d1", "status": "current",
                   "content": [{"attachment": {"contentType": "text/plain", "data": "aGk="}}],
                   "relatesTo": [{"code": "replaces", "target": {"reference": "DocumentReference/d0"}},
                                 {"code": "signs", "target": {"reference": "DocumentReference/dx"}}]}),
            json!({"resourceType": "DocumentReference", "id": "d2", "status": "current",
                   "content": [{"attachment": {"contentType": "text/plain", "data": "aGk="}}],
                   "relatesTo": [{"code": "signs", "target": {"reference": "DocumentReference/d0"}}]}),
            json!({"resourceType": "Group", "id": "g1", "type": "person", "actual": false,
                   "characteristic": [{"code": {"text": "gender"}, "valueCodeableConcept": {"coding": [{"system": "http://hl7.org/fhir/administrative-gender", "code": "female"}]}, "exclude": false},
                                      {"code": snomed("263495000"), "valueCodeableConcept": snomed("248152002"), "exclude": false}]}),
        ],
    );
    let cases: &[(&str, &[&str])] = &[
        // Components on the same Observation.component, not across components.
        ("Observation?component-code-value-quantity=http://loinc.org|8480-6$gt130", &["bp2"]),
        ("Observation?component-code-value-quantity=8480-6$lt90", &[]),
        ("Observation?component-code-value-quantity=8462-4$lt90", &["bp1"]),
        ("Observation?component-code-value-quantity=8480-6$gt100|http://unitsofmeasure.org|mm[Hg]", &["bp1", "bp2"]),
        ("Observation?component-code-value-quantity=8480-6$gt100||kg", &[]),
        // Tuples are ORed; AND with other parameters.
        ("Observation?component-code-value-quantity=8480-6$lt130,8462-4$ge95", &["bp1", "bp2"]),
        ("Observation?component-code-value-quantity=8480-6$lt130&component-code-value-quantity=8462-4$lt85", &["bp1"]),
        ("Observation?component-code-value-quantity=8480-6$lt130&component-code-value-quantity=8462-4$gt85", &[]),
        // The resource itself, and either for combo.
        ("Observation?code-value-quantity=http://loinc.org|29463-7$70", &["w1"]),
        ("Observation?code-value-quantity=3141-9$gt80", &["w2"]),
        ("Observation?code-value-quantity=29463-7$ge70|http://unitsofmeasure.org|kg", &["w1", "w2"]),
        ("Observation?code-value-quantity=8480-6$gt100", &[]),
        ("Observation?combo-code-value-quantity=8480-6$gt100", &["bp1", "bp2"]),
        ("Observation?combo-code-value-quantity=29463-7$lt80", &["w1"]),
        ("Observation?code-value-concept=94500-6$http://snomed.info/sct|260385009", &["c1"]),
        ("Observation?code-value-concept=94500-6$10828004,94500-6$260385009", &["c1", "c2"]),
        ("Observation?code-value-concept=5778-6$260385009", &[]),
        ("Observation?code-value-string=5778-6$yellow", &["s1"]),
        ("Observation?code-value-string=5778-6$clear", &[]),
        ("Observation?code-value-date=21112-8$ge2021-01-01", &["d1"]),
        ("Observation?code-value-date=21112-8$2021-06", &["d1"]),
        ("Observation?code-value-date=21112-8$lt2021", &[]),
        ("Observation?code-value-quantity:missing=false", &["w1", "w2"]),
        // Inside reverse chains and chains.
        (
            "Patient?_has:Observation:subject:component-code-value-quantity=8480-6$gt130",
            &["pbp"],
        ),
        (
            "Patient?_has:Observation:subject:component-code-value-quantity=8480-6$lt130",
            &[],
        ),
        // A reference first (R4 lists this one's component expressions swapped).
        ("DocumentReference?relationship=DocumentReference/d0$replaces", &["d1"]),
        ("DocumentReference?relationship=d0$signs", &["d2"]),
        ("DocumentReference?relationship=DocumentReference/dx$replaces", &[]),
        ("DocumentReference?relationship=d0$replaces,dx$signs", &["d1"]),
        // Group.characteristic: token and token.
        ("Group?characteristic-value=263495000$248152002", &["g1"]),
        ("Group?characteristic-value=263495000$female", &[]),
    ];
    for (query, expected) in cases {
        assert_eq!(ids(&s, query), set(expected), "{query}");
    }
    // An escaped `$` or `,` is part of a value.
    assert_eq!(
        ids(&s, "Observation?code-value-string=5778-6$yellow\\, clear"),
        set(&["s1"])
    );
    // Malformed: a missing component, a bad component value, a modifier.
    outcome(
        s.get("Observation?code-value-quantity=29463-7")
            .send()
            .unwrap(),
        400,
    );
    outcome(
        s.get("Observation?code-value-quantity=29463-7$heavy")
            .send()
            .unwrap(),
        400,
    );
    outcome(
        s.get("Observation?code-value-quantity:exact=29463-7$70")
            .send()
            .unwrap(),
        400,
    );
    // Advertised like every other parameter.
    let cs: Value = s.get("metadata").send().unwrap().json().unwrap();
    let observation = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Observation")
        .unwrap();
    assert!(observation["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "component-code-value-quantity" && p["type"] == "composite"));
}

#[test]
fn identifier_of_type_matches_type_and_value_on_one_identifier() {
    let s = Server::start();
    let v2 = "http://terminology.hl7.org/CodeSystem/v2-0203";
    put_all(
        &s,
        &[
            json!({"resourceType": "Patient", "id": "t1", "identifier": [
                {"type": {"coding": [{"system": v2, "code": "MR"}]}, "system": "http://hospital", "value": "123"},
                {"type": {"coding": [{"system": v2, "code": "SS"}]}, "system": "http://ssa", "value": "999"}]}),
            json!({"resourceType": "Patient", "id": "t2", "identifier": [
                {"type": {"coding": [{"system": v2, "code": "SS"}]}, "value": "123"}]}),
            json!({"resourceType": "Patient", "id": "t3", "identifier": [{"system": "http://hospital", "value": "123"}]}),
        ],
    );
    let cases: Vec<(String, &[&str])> = vec![
        (format!("Patient?identifier:of-type={v2}|MR|123"), &["t1"]),
        (format!("Patient?identifier:of-type={v2}|SS|123"), &["t2"]),
        (format!("Patient?identifier:of-type={v2}|SS|999"), &["t1"]),
        (format!("Patient?identifier:of-type={v2}|MR|999"), &[]),
        (
            format!("Patient?identifier:of-type={v2}|MR|123,{v2}|SS|123"),
            &["t1", "t2"],
        ),
        ("Patient?identifier:of-type=http://other|MR|123".into(), &[]),
        ("Patient?identifier=123".into(), &["t1", "t2", "t3"]),
    ];
    for (query, expected) in cases {
        assert_eq!(ids(&s, &query), set(expected), "{query}");
    }
    outcome(
        s.get("Patient?identifier:of-type=MR|123").send().unwrap(),
        400,
    );
    outcome(
        s.get(&format!("Patient?identifier:of-type={v2}|MR|"))
            .send()
            .unwrap(),
        400,
    );
    // Only Identifier parameters have a type to match.
    let oo = outcome(
        s.get(&format!("Patient?gender:of-type={v2}|MR|male"))
            .send()
            .unwrap(),
        400,
    );
    assert!(oo.to_string().contains("Identifier"), "{oo}");
}

#[test]
fn token_subsumption_and_value_sets_with_filters() {
    let s = Server::start();
    let clinical = "http://terminology.hl7.org/CodeSystem/condition-clinical";
    let condition = |id: &str, code: &str| {
        json!({"resourceType": "Condition", "id": id, "subject": {"reference": "Patient/x"},
               "clinicalStatus": {"coding": [{"system": clinical, "code": code}]}})
    };
    let role = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";
    let related = |id: &str, code: &str| {
        json!({"resourceType": "RelatedPerson", "id": id, "patient": {"reference": "Patient/x"},
               "relationship": [{"coding": [{"system": role, "code": code}]}]})
    };
    let act = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
    let encounter = |id: &str, code: &str| json!({"resourceType": "Encounter", "id": id, "status": "finished", "class": {"system": act, "code": code}});
    put_all(
        &s,
        &[
            condition("active", "active"),
            condition("recurrence", "recurrence"),
            condition("resolved", "resolved"),
            related("mother", "MTH"),
            related("friend", "FRND"),
            encounter("amb", "AMB"),
            encounter("abstract", "_ActEncounterCode"),
            // A code system and a value set stored in the server.
            json!({"resourceType": "CodeSystem", "id": "colours", "url": "http://example.org/colours", "status": "active",
                   "content": "complete", "hierarchyMeaning": "is-a",
                   "concept": [{"code": "warm", "concept": [{"code": "red", "concept": [{"code": "crimson"}]}, {"code": "orange"}]},
                               {"code": "cold", "concept": [{"code": "blue"}]}]}),
            json!({"resourceType": "ValueSet", "id": "warm-not-orange", "url": "http://example.org/vs/warm-not-orange", "status": "active",
                   "compose": {"include": [{"system": "http://example.org/colours", "filter": [{"property": "concept", "op": "is-a", "value": "warm"}]}],
                               "exclude": [{"system": "http://example.org/colours", "concept": [{"code": "orange"}]}]}}),
            json!({"resourceType": "Observation", "id": "crimson", "status": "final", "code": {"coding": [{"system": "http://example.org/colours", "code": "crimson"}]}}),
            json!({"resourceType": "Observation", "id": "orange", "status": "final", "code": {"coding": [{"system": "http://example.org/colours", "code": "orange"}]}}),
            json!({"resourceType": "Observation", "id": "blue", "status": "final", "code": {"coding": [{"system": "http://example.org/colours", "code": "blue"}]}}),
        ],
    );
    let cases: Vec<(String, &[&str])> =
        vec![
        // Core code system hierarchy: active ⊃ recurrence, relapse.
        (
            format!("Condition?clinical-status:below={clinical}|active"),
            &["active", "recurrence"],
        ),
        (
            format!("Condition?clinical-status:below={clinical}|recurrence"),
            &["recurrence"],
        ),
        (
            format!("Condition?clinical-status:above={clinical}|recurrence"),
            &["active", "recurrence"],
        ),
        (
            format!("Condition?clinical-status:above={clinical}|resolved"),
            &["resolved"],
        ),
        // Core value sets with an is-a filter, and with an exclude.
        (
            "RelatedPerson?relationship:in=http://terminology.hl7.org/ValueSet/v3-FamilyMember"
                .into(),
            &["mother"],
        ),
        (
            "RelatedPerson?relationship:not-in=http://terminology.hl7.org/ValueSet/v3-FamilyMember"
                .into(),
            &["friend"],
        ),
        (
            "Encounter?class:in=http://terminology.hl7.org/ValueSet/v3-ActEncounterCode".into(),
            &["amb"],
        ),
        (
            format!("Encounter?class:below={act}|_ActEncounterCode"),
            &["amb", "abstract"],
        ),
        // Stored code system and value set.
        (
            "Observation?code:below=http://example.org/colours|warm".into(),
            &["crimson", "orange"],
        ),
        (
            "Observation?code:above=http://example.org/colours|crimson".into(),
            &["crimson"],
        ),
        (
            "Observation?code:in=http://example.org/vs/warm-not-orange".into(),
            &["crimson"],
        ),
        (
            "Observation?code:not-in=http://example.org/vs/warm-not-orange".into(),
            &["orange", "blue"],
        ),
        ("Observation?code:in=ValueSet/warm-not-orange".into(), &["crimson"]),
    ];
    for (query, expected) in cases {
        assert_eq!(ids(&s, &query), set(expected), "{query}");
    }
    // A code system whose hierarchy this server does not hold: refused, not guessed.
    let oo = outcome(
        s.get("Condition?code:below=http://snomed.info/sct|404684003")
            .send()
            .unwrap(),
        400,
    );
    assert_eq!(oo["issue"][0]["code"], "not-supported");
    let oo = outcome(
        s.get("Condition?code:in=http://hl7.org/fhir/ValueSet/condition-code")
            .send()
            .unwrap(),
        400,
    );
    assert_eq!(oo["issue"][0]["code"], "not-supported");
    // Subsumption needs a system.
    outcome(
        s.get("Condition?clinical-status:below=active")
            .send()
            .unwrap(),
        400,
    );
}

#[test]
fn sorting_by_token_and_reference_parameters_and_in_system_search() {
    let s = Server::start();
    load(&s);
    let order = |q: &str| -> Vec<String> {
        let r = s.client.get(format!("{}/{q}", s.base)).send().unwrap();
        assert_eq!(r.status(), 200, "{q}");
        let b: Value = r.json().unwrap();
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
            .collect()
    };
    // Every page, following the next links.
    let paged = |q: &str| -> Vec<String> {
        let mut url = format!("{}/{q}", s.base);
        let mut out = Vec::new();
        loop {
            let b: Value = s.client.get(&url).send().unwrap().json().unwrap();
            out.extend(
                b["entry"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| e["resource"]["id"].as_str().unwrap().to_string()),
            );
            match b["link"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["relation"] == "next")
            {
                Some(next) => url = next["url"].as_str().unwrap().to_string(),
                None => return out,
            }
        }
    };
    assert_eq!(
        paged("?_type=Patient,Observation&_sort=-identifier,-_id&_count=2"),
        vec!["p3", "p2", "p1", "o4", "o3", "o2", "o1"]
    );
    assert_eq!(
        paged("Observation?_sort=subject,code&_count=1"),
        vec!["o2", "o1", "o3", "o4"]
    );
    // Tokens by system, then code; ties in the default order.
    assert_eq!(order("Patient?_sort=gender"), vec!["p2", "p1", "p3"]);
    assert_eq!(order("Patient?_sort=-gender"), vec!["p1", "p3", "p2"]);
    assert_eq!(order("Patient?_sort=identifier"), vec!["p1", "p2", "p3"]);
    assert_eq!(order("Patient?_sort=-identifier"), vec!["p3", "p2", "p1"]);
    assert_eq!(
        order("Observation?_sort=code,-_id"),
        vec!["o2", "o3", "o1", "o4"]
    );
    // References by the reference.
    assert_eq!(
        order("Observation?_sort=-subject"),
        vec!["o4", "o3", "o1", "o2"]
    );
    assert_eq!(
        order("Observation?_sort=subject,-_id"),
        vec!["o2", "o1", "o3", "o4"]
    );
    // System search: a parameter every type has; resources without a value last.
    assert_eq!(
        order("?_type=Patient,Observation&_sort=identifier&_count=3"),
        vec!["p1", "p2", "p3"]
    );
    assert_eq!(
        order("?_type=Patient,Organization&_sort=-_id"),
        vec!["p3", "p2", "p1", "org1"]
    );
    assert_eq!(
        order("?_type=Patient,Observation&_sort=identifier"),
        vec!["p1", "p2", "p3", "o1", "o2", "o3", "o4"]
    );
    outcome(
        s.client
            .get(format!("{}?_type=Patient,Observation&_sort=gender", s.base))
            .send()
            .unwrap(),
        400,
    );
}

#[test]
fn versions_stored_before_schema_9_are_reindexed_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start_in(&data, &[], &[]);
    let v2 = "http://terminology.hl7.org/CodeSystem/v2-0203";
    put_all(
        &s,
        &[
            json!({"resourceType": "Observation", "id": "bp", "status": "final", "code": loinc("85354-6"),
                   "component": [{"code": loinc("8480-6"), "valueQuantity": mmhg(150.0)},
                                 {"code": loinc("8462-4"), "valueQuantity": mmhg(70.0)}]}),
            json!({"resourceType": "Patient", "id": "a", "gender": "male",
                   "identifier": [{"type": {"coding": [{"system": v2, "code": "MR"}]}, "value": "1"}]}),
            json!({"resourceType": "Patient", "id": "b", "gender": "female"}),
        ],
    );
    let data = s.kill();
    // Take the database back to schema 8, as an older Flint left it (no composite rows, no
    // sort texts, no full text, jobs without owners and leases).
    let db = rusqlite::Connection::open(data.join("flint.sqlite")).unwrap();
    db.execute_batch(
        "DROP TABLE idx_composite;
         ALTER TABLE idx_token DROP COLUMN sort;
         ALTER TABLE idx_reference DROP COLUMN sort;
         DELETE FROM idx_fulltext;
         ALTER TABLE job DROP COLUMN owner;
         ALTER TABLE job DROP COLUMN node;
         ALTER TABLE job DROP COLUMN lease_until;
         ALTER TABLE job DROP COLUMN commits;
         PRAGMA user_version = 8;",
    )
    .unwrap();
    drop(db);
    let s = Server::start_in(&data, &[], &[]);
    // The upgrade queued a $reindex job; its status URL answers until it is done.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = s.get("__async-status/schema-9-reindex").send().unwrap();
        match r.status().as_u16() {
            200 => break,
            202 => assert!(
                std::time::Instant::now() < deadline,
                "the upgrade reindex never ended"
            ),
            other => panic!("status {other}"),
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(ids(&s, "Patient?_content=male"), set(&["a"]));
    assert_eq!(
        ids(&s, "Observation?component-code-value-quantity=8480-6$gt140"),
        set(&["bp"])
    );
    assert_eq!(
        ids(&s, "Observation?component-code-value-quantity=8480-6$lt100"),
        set(&[])
    );
    assert_eq!(
        ids(&s, &format!("Patient?identifier:of-type={v2}|MR|1")),
        set(&["a"])
    );
    let b: Value = s
        .get("Patient?_sort=gender")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(b["entry"][0]["resource"]["id"], "b");
    // The other indexes were rewritten, not doubled.
    assert_eq!(ids(&s, "Patient?gender=male"), set(&["a"]));
    let count: Value = s
        .get("Observation?code=85354-6&_summary=count")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(count["total"], 1);
}

/// A string prefix without `_sort` pages in index order: every match once, however many of its
/// names match, and later pages read the first page's snapshot.
#[test]
fn string_prefix_pages_hold_every_match_once() {
    let s = Server::start();
    let families: [&[&str]; 7] = [
        &["Smith"],
        &["Smithson", "Smith"],
        &["SMITH", "smith"],
        &["Smyth"],
        &["Brown", "Smitherson"],
        &["Jones"],
        &["Śmith"],
    ];
    for (i, names) in families.iter().enumerate() {
        let name: Vec<Value> = names.iter().map(|f| json!({"family": f})).collect();
        let p = json!({"resourceType": "Patient", "id": format!("s{i}"), "name": name});
        assert_eq!(s.put(&format!("Patient/s{i}"), &p).status(), 201);
    }
    let expected: BTreeSet<String> = ["s0", "s1", "s2", "s4", "s6"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for count in [1, 2, 3, 10] {
        let mut url = s.url(&format!("Patient?family=smith&_count={count}"));
        let mut seen = Vec::new();
        let mut first = true;
        loop {
            let page: Value = s.client.get(&url).send().unwrap().json().unwrap();
            for e in page["entry"].as_array().into_iter().flatten() {
                seen.push(e["resource"]["id"].as_str().unwrap().to_string());
            }
            if first {
                first = false;
                // A change after the first page is not seen by the later ones.
                let moved =
                    json!({"resourceType": "Patient", "id": "s5", "name": [{"family": "Smithy"}]});
                assert_eq!(s.put("Patient/s5", &moved).status(), 200);
            }
            match page["link"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["relation"] == "next")
            {
                Some(next) => url = next["url"].as_str().unwrap().to_string(),
                None => break,
            }
        }
        let unique: BTreeSet<String> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "_count={count}: {seen:?}");
        assert_eq!(unique, expected, "_count={count}");
        let back = json!({"resourceType": "Patient", "id": "s5", "name": [{"family": "Jones"}]});
        assert_eq!(s.put("Patient/s5", &back).status(), 200);
    }
}

#[test]
fn text_content_and_list_search() {
    let s = Server::start();
    let resources = [
        json!({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/x"},
               "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Persistent <b>dry</b> cough &amp; fever</div>"},
               "code": {"text": "Bronchitis"}}),
        json!({"resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/x"},
               "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Fèver after travel</div>"},
               "code": {"text": "Malaria"}, "note": [{"text": "Returned from Kenya with a cough"}]}),
        json!({"resourceType": "Condition", "id": "c3", "subject": {"reference": "Patient/x"}, "code": {"text": "Fracture"}}),
        // Same words in another type: never found by a Condition search.
        json!({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "cough fever"},
               "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">cough fever</div>"}}),
        json!({"resourceType": "List", "id": "l1", "status": "current", "mode": "working",
               "entry": [{"item": {"reference": "Condition/c1"}}, {"item": {"reference": "Condition/c3"}},
                         {"item": {"reference": "Observation/o1"}}, {"item": {"display": "no reference"}}]}),
        json!({"resourceType": "List", "id": "l2", "status": "current", "mode": "working",
               "entry": [{"item": {"reference": "http://example.org/fhir/Condition/c2/_history/1"}}]}),
    ];
    for r in resources {
        let path = format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        assert_eq!(s.put(&path, &r).status(), 201, "{path}");
    }
    let cases: Vec<(&str, &[&str])> = vec![
        // _text: the narrative only; every word must appear; case and accents ignored.
        ("Condition?_text=cough", &["c1"]),
        ("Condition?_text=FEVER", &["c1", "c2"]),
        ("Condition?_text=cough fever", &["c1"]),
        ("Condition?_text=cough,travel", &["c1", "c2"]),
        ("Condition?_text=bronchitis", &[]),
        // _content: all the text of the resource.
        ("Condition?_content=cough", &["c1", "c2"]),
        ("Condition?_content=bronchitis", &["c1"]),
        ("Condition?_content=kenya&_text=fever", &["c2"]),
        ("Condition?_content=\"OR\" cough*", &[]),
        ("Observation?_content=cough", &["o1"]),
        // _list: the members of the type.
        ("Condition?_list=l1", &["c1", "c3"]),
        ("Condition?_list=l2", &["c2"]),
        ("Condition?_list=l1,l2", &["c1", "c2", "c3"]),
        ("Condition?_list=l1&_content=fracture", &["c3"]),
        ("Observation?_list=l1", &["o1"]),
        ("Condition?_list=nope", &[]),
    ];
    for (query, expected) in cases {
        assert_eq!(ids(&s, query), set(expected), "{query}");
    }
    // A changed narrative is searched as it is now.
    let changed = json!({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/x"},
           "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Resolved</div>"}});
    assert_eq!(s.put("Condition/c1", &changed).status(), 200);
    assert_eq!(ids(&s, "Condition?_text=cough"), set(&[]));
    assert_eq!(ids(&s, "Condition?_text=resolved"), set(&["c1"]));
    outcome(s.get("Condition?_text:exact=x").send().unwrap(), 400);
    outcome(
        s.get("Condition?_content=%2C%3B")
            .header("prefer", "handling=strict")
            .send()
            .unwrap(),
        400,
    );
    outcome(
        s.get("Condition?_list=$current-problems")
            .header("prefer", "handling=strict")
            .send()
            .unwrap(),
        400,
    );
}

#[test]
fn contained_resources_are_searched_with_contained() {
    let s = Server::start();
    let med = |code: &str| json!({"resourceType": "Medication", "id": "m", "code": {"coding": [{"system": "http://rx", "code": code}]}});
    let resources = [
        json!({"resourceType": "Medication", "id": "top", "code": {"coding": [{"system": "http://rx", "code": "aspirin"}]}}),
        json!({"resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order",
               "contained": [med("aspirin")], "medicationReference": {"reference": "#m"}, "subject": {"reference": "Patient/p"}}),
        json!({"resourceType": "MedicationRequest", "id": "mr2", "status": "active", "intent": "order",
               "contained": [med("ibuprofen")], "medicationReference": {"reference": "#m"}, "subject": {"reference": "Patient/p"}}),
        json!({"resourceType": "MedicationRequest", "id": "mr3", "status": "active", "intent": "order",
               "medicationCodeableConcept": {"coding": [{"system": "http://rx", "code": "aspirin"}]}, "subject": {"reference": "Patient/p"}}),
        json!({"resourceType": "DiagnosticReport", "id": "dr1", "status": "final", "code": {"text": "panel"},
               "contained": [{"resourceType": "Observation", "id": "o", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
                              "valueQuantity": {"value": 13.2, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}}],
               "result": [{"reference": "#o"}]}),
    ];
    for r in resources {
        let path = format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        assert_eq!(s.put(&path, &r).status(), 201, "{path}");
    }
    let typed = |query: &str| -> BTreeSet<String> {
        let b: Value = s.get(query).send().unwrap().json().unwrap();
        b["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                format!(
                    "{}/{}",
                    e["resource"]["resourceType"].as_str().unwrap(),
                    e["resource"]["id"].as_str().unwrap()
                )
            })
            .collect()
    };
    let cases: Vec<(&str, &[&str])> = vec![
        ("Medication?code=aspirin", &["Medication/top"]),
        (
            "Medication?code=aspirin&_contained=false",
            &["Medication/top"],
        ),
        (
            "Medication?code=aspirin&_contained=true",
            &["MedicationRequest/mr1"],
        ),
        (
            "Medication?code=aspirin&_contained=true&_containedType=container",
            &["MedicationRequest/mr1"],
        ),
        (
            "Medication?code=aspirin,ibuprofen&_contained=true",
            &["MedicationRequest/mr1", "MedicationRequest/mr2"],
        ),
        (
            "Medication?code=aspirin&_contained=both",
            &["Medication/top", "MedicationRequest/mr1"],
        ),
        (
            "Medication?_contained=true",
            &["MedicationRequest/mr1", "MedicationRequest/mr2"],
        ),
        (
            "Medication?_contained=both",
            &[
                "Medication/top",
                "MedicationRequest/mr1",
                "MedicationRequest/mr2",
            ],
        ),
        (
            "Observation?_contained=true&value-quantity=gt13|http://unitsofmeasure.org|g/dL",
            &["DiagnosticReport/dr1"],
        ),
        ("Observation?_contained=true&value-quantity=lt13", &[]),
        ("Observation?code=718-7", &[]),
        // The containers' own parameters are not the contained resource's.
        ("MedicationRequest?code=ibuprofen", &[]),
        ("MedicationRequest?code=aspirin", &["MedicationRequest/mr3"]),
    ];
    for (query, expected) in cases {
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(typed(query), expected, "{query}");
    }
    outcome(s.get("Medication?_contained=maybe").send().unwrap(), 400);
    outcome(
        s.get("Medication?_contained=true&_containedType=contained")
            .send()
            .unwrap(),
        400,
    );
    outcome(
        s.get("Medication?_contained=true&_id=m").send().unwrap(),
        400,
    );
}
