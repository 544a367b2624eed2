//! FHIR XML over HTTP: requests and responses in `application/fhir+xml` wherever JSON goes
//! (content negotiation by `Accept` and `_format`, bodies, Bundles, OperationOutcomes), and
//! `$convert` between the two.

use std::io::Read;

use serde_json::{json, Value};

use crate::server::Server;

const XML: &str = "application/fhir+xml";

fn send_xml(s: &Server, method: &str, path: &str, body: &str) -> reqwest::blocking::Response {
    s.client
        .request(method.parse().unwrap(), s.url(path))
        .header("content-type", XML)
        .header("accept", XML)
        .body(body.to_string())
        .send()
        .unwrap()
}

fn get_xml(s: &Server, path: &str) -> (u16, String, String) {
    let r = s
        .client
        .get(s.url(path))
        .header("accept", XML)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    (status, ct, r.text().unwrap())
}

#[test]
fn resources_travel_as_xml_both_ways() {
    let s = Server::start();
    let patient = r#"<Patient xmlns="http://hl7.org/fhir">
  <id value="x1"/>
  <text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p>Ann <b>Smith</b></p></div></text>
  <active value="true"/>
  <name><use value="official"/><family value="Smith"/><given value="Ann"/><given id="g2" value="Marie"><extension url="http://example.org/ext"><valueString value="note"/></extension></given></name>
  <birthDate value="1970-01-02"/>
  <multipleBirthInteger value="2"/>
</Patient>"#;
    let r = send_xml(&s, "PUT", "Patient/x1", patient);
    assert_eq!(r.status(), 201);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with(XML));
    let written = r.text().unwrap();
    assert!(
        written.contains("<Patient xmlns=\"http://hl7.org/fhir\">"),
        "{written}"
    );

    // Read back as JSON: the XML meant exactly this.
    let json: Value = s.get("Patient/x1").send().unwrap().json().unwrap();
    assert_eq!(json["active"], true);
    assert_eq!(json["multipleBirthInteger"], 2);
    assert_eq!(json["name"][0]["given"], json!(["Ann", "Marie"]));
    assert_eq!(json["name"][0]["_given"][1]["id"], "g2");
    assert_eq!(
        json["name"][0]["_given"][1]["extension"][0]["valueString"],
        "note"
    );
    assert!(json["text"]["div"]
        .as_str()
        .unwrap()
        .contains("<b>Smith</b>"));

    // Read back as XML, by Accept and by _format, and it parses to the same resource.
    let (status, ct, body) = get_xml(&s, "Patient/x1");
    assert_eq!((status, ct.starts_with(XML)), (200, true));
    assert!(body.contains("<birthDate value=\"1970-01-02\"/>"), "{body}");
    let by_format = s.get("Patient/x1?_format=xml").send().unwrap();
    assert!(by_format.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with(XML));
    let again = send_xml(&s, "PUT", "Patient/x1", &by_format.text().unwrap());
    assert_eq!(again.status(), 200);
    let json2: Value = s.get("Patient/x1").send().unwrap().json().unwrap();
    assert_eq!(json2["name"], json["name"]);
    assert_eq!(json2["text"], json["text"]);
    // Pretty XML is indented.
    let (_, _, pretty) = get_xml(&s, "Patient/x1?_pretty=true");
    assert!(pretty.contains("\n  <"), "{pretty}");
}

#[test]
fn bundles_and_outcomes_are_xml_too() {
    let s = Server::start();
    let tx = r#"<Bundle xmlns="http://hl7.org/fhir"><type value="transaction"/>
  <entry><fullUrl value="urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"/>
    <resource><Patient><gender value="female"/></Patient></resource>
    <request><method value="POST"/><url value="Patient"/></request></entry>
  <entry><resource><Observation><status value="final"/><code><text value="x"/></code>
      <subject><reference value="urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"/></subject>
      <valueQuantity><value value="1.50"/><unit value="mg"/></valueQuantity></Observation></resource>
    <request><method value="POST"/><url value="Observation"/></request></entry>
</Bundle>"#;
    let r = send_xml(&s, "POST", "", tx);
    assert_eq!(r.status(), 200);
    let body = r.text().unwrap();
    assert!(
        body.contains("<type value=\"transaction-response\"/>"),
        "{body}"
    );
    // Decimals keep their digits.
    let obs: Value = s.get("Observation").send().unwrap().json().unwrap();
    assert_eq!(
        obs["entry"][0]["resource"]["valueQuantity"]["value"].to_string(),
        "1.50"
    );
    let (status, _, search) = get_xml(&s, "Observation?_include=Observation:subject");
    assert_eq!(status, 200);
    assert!(search.contains("<type value=\"searchset\"/>"));
    assert!(
        search.contains("<resource><Patient>") || search.contains("<Patient>"),
        "{search}"
    );
    assert!(search.contains("<value value=\"1.50\"/>"), "{search}");

    // An error in the negotiated format.
    let (status, ct, oo) = get_xml(&s, "Patient/nope");
    assert_eq!(status, 404);
    assert!(ct.starts_with(XML), "{ct}: {oo}");
    assert!(
        oo.contains("<OperationOutcome xmlns=\"http://hl7.org/fhir\">"),
        "{oo}"
    );
    // The CapabilityStatement says so.
    let (_, _, cs) = get_xml(&s, "metadata");
    assert!(
        cs.contains("<format value=\"application/fhir+xml\"/>"),
        "{cs}"
    );
}

#[test]
fn bad_xml_is_a_clear_400() {
    let s = Server::start();
    for (body, says) in [
        ("<Patient xmlns=\"http://hl7.org/fhir\"><active value=\"yes\"/></Patient>", "active"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><colour value=\"red\"/></Patient>", "colour"),
        ("<Patient><active value=\"true\"/></Patient>", "namespace"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><active value=\"true\">", ""),
        ("<?xml version=\"1.0\"?><!DOCTYPE lol [<!ENTITY a \"aaaa\">]><Patient xmlns=\"http://hl7.org/fhir\"/>", "DTD"),
        ("not xml at all", ""),
    ] {
        let r = s
            .client
            .post(s.url("Patient"))
            .header("content-type", XML)
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let oo: Value = r.json().unwrap();
        assert_eq!(oo["resourceType"], "OperationOutcome");
        assert!(oo.to_string().to_lowercase().contains(&says.to_lowercase()), "{body}: {oo}");
    }
    // Nothing was written.
    let b: Value = s.get("Patient").send().unwrap().json().unwrap();
    assert!(b["entry"].is_null());
    // A format nobody speaks.
    let r = s
        .client
        .get(s.url("Patient"))
        .header("accept", "text/turtle")
        .send()
        .unwrap();
    assert_eq!(r.status(), 406);
}

#[test]
fn convert_between_json_and_xml() {
    let s = Server::start();
    let json_in = json!({"resourceType": "Observation", "status": "final", "code": {"text": "t"},
                         "valueQuantity": {"value": 2.0, "unit": "kg"}});
    let r = s
        .client
        .post(s.url("$convert"))
        .header("content-type", "application/fhir+json")
        .header("accept", XML)
        .body(json_in.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let xml = r.text().unwrap();
    assert!(
        xml.contains("<Observation xmlns=\"http://hl7.org/fhir\">"),
        "{xml}"
    );
    assert!(xml.contains("<value value=\"2.0\"/>"), "{xml}");
    let back = s
        .client
        .post(s.url("$convert"))
        .header("content-type", XML)
        .header("accept", "application/fhir+json")
        .body(xml)
        .send()
        .unwrap();
    assert_eq!(back.status(), 200);
    let v: Value = back.json().unwrap();
    assert_eq!(v, json_in);
    // $convert writes nothing.
    let found: Value = s.get("Observation").send().unwrap().json().unwrap();
    assert!(found["entry"].is_null());
    // Something that is not a valid resource is refused.
    let r = s.post(
        "$convert",
        &json!({"resourceType": "Observation", "status": 7}),
    );
    assert_eq!(r.status(), 400);
}

#[test]
fn official_examples_round_trip_through_the_server_as_xml() {
    // The R4 examples the search tests use: each written as JSON, read as XML, written back
    // as XML under another id, and read as JSON: the same resource.
    let gz = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/r4-examples.ndjson.gz"
    ))
    .unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .unwrap();
    let s = Server::start();
    let mut checked = 0;
    for line in text.lines().take(120) {
        let resource: Value = serde_json::from_str(line).unwrap();
        let rt = resource["resourceType"].as_str().unwrap().to_string();
        let id = resource["id"].as_str().unwrap().to_string();
        if !s
            .put(&format!("{rt}/{id}"), &resource)
            .status()
            .is_success()
        {
            continue;
        }
        let (status, _, xml) = get_xml(&s, &format!("{rt}/{id}"));
        assert_eq!(status, 200);
        let copy = xml.replacen(
            &format!("<id value=\"{id}\"/>"),
            &format!("<id value=\"{id}-x\"/>"),
            1,
        );
        let r = send_xml(&s, "PUT", &format!("{rt}/{id}-x"), &copy);
        assert!(r.status().is_success(), "{rt}/{id}: {}", r.text().unwrap());
        let strip = |mut v: Value| {
            v.as_object_mut().unwrap().remove("meta");
            v.as_object_mut().unwrap().remove("id");
            v
        };
        let a: Value = s.get(&format!("{rt}/{id}")).send().unwrap().json().unwrap();
        let b: Value = s
            .get(&format!("{rt}/{id}-x"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(strip(a), strip(b), "{rt}/{id}");
        checked += 1;
    }
    assert!(checked >= 100, "only {checked} examples checked");
}

#[test]
fn errors_keep_their_message_whatever_the_json_flavour() {
    let s = Server::start();
    for accept in [
        "application/json",
        "application/fhir+json",
        "application/xml",
    ] {
        let r = s
            .client
            .get(s.url("Patient/nope"))
            .header("accept", accept)
            .send()
            .unwrap();
        assert_eq!(r.status(), 404);
        let text = r.text().unwrap();
        assert!(text.contains("nope"), "{accept}: {text}");
    }
}
