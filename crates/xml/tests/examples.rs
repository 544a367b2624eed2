//! Round trips of the official R4 examples (`hl7.fhir.r4.examples` 4.0.1, vendored by
//! `tools/vendor-xml-examples.py`): JSON → XML → JSON gives back the same JSON, compact and
//! indented alike.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};

use flate2::read::GzDecoder;
use serde_json::Value;

/// Every example of the package and all but its 160 largest conformance resources.
const FIXTURE_RESOURCES: usize = 5145;
/// The resource types of the package, every one of them in the fixture.
const FIXTURE_TYPES: usize = 140;

fn examples() -> Vec<Value> {
    let file = std::fs::File::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/r4-examples.ndjson.gz"
    ))
    .expect("the fixture exists");
    BufReader::new(GzDecoder::new(file))
        .lines()
        .map(|line| serde_json::from_str(&line.expect("readable")).expect("JSON"))
        .collect()
}

fn name(resource: &Value) -> String {
    format!(
        "{}/{}",
        resource["resourceType"].as_str().unwrap_or("?"),
        resource["id"].as_str().unwrap_or("?")
    )
}

#[test]
fn every_example_round_trips() {
    let examples = examples();
    assert_eq!(examples.len(), FIXTURE_RESOURCES);
    let types: BTreeSet<&str> = examples
        .iter()
        .filter_map(|r| r["resourceType"].as_str())
        .collect();
    assert_eq!(types.len(), FIXTURE_TYPES);

    let mut failures = Vec::new();
    for resource in &examples {
        for (form, written) in [
            ("compact", flint_xml::to_xml(resource)),
            ("pretty", flint_xml::to_xml_pretty(resource)),
        ] {
            let outcome = written.and_then(|xml| flint_xml::from_xml(xml.as_bytes()));
            match outcome {
                Ok(back) if back == *resource => {}
                Ok(_) => failures.push(format!("{} ({form}): differs", name(resource))),
                Err(e) => failures.push(format!("{} ({form}): {e}", name(resource))),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} conversions fail:\n{}",
        failures.len(),
        2 * examples.len(),
        failures.join("\n")
    );
}
