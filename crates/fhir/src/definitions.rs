//! The R4 core package, embedded in the binary as gzipped NDJSON (see
//! `tools/vendor-definitions.py`) and parsed lazily, once, on first use.

use std::io::{BufRead, BufReader};
use std::sync::OnceLock;

use flate2::read::GzDecoder;
use serde_json::Value;

macro_rules! embedded {
    ($(#[$doc:meta])* $fn:ident, $file:literal) => {
        $(#[$doc])*
        pub fn $fn() -> &'static [Value] {
            static CELL: OnceLock<Vec<Value>> = OnceLock::new();
            CELL.get_or_init(|| parse(include_bytes!(concat!("../definitions/", $file))))
        }
    };
}

embedded!(
    /// The R4 StructureDefinitions of the base types and resources.
    r4_types, "types.ndjson.gz"
);
embedded!(
    /// Constraining StructureDefinitions: core profiles and extension definitions.
    profiles, "profiles.ndjson.gz"
);
embedded!(
    /// The R4 core SearchParameters.
    r4_search_parameters, "search-parameters.ndjson.gz"
);

/// The type code of an element that holds any JSON value (a Flint resource's free-form part:
/// an App's subscription filter, a map of headers). Never used by R4 definitions.
pub const JSON_TYPE: &str = "Flint.Json";

/// StructureDefinitions of the base types and resources (derivation `specialization`): the
/// R4 ones and Flint's own resource types (`Bot`, `App`), whose snapshots are made here from
/// their differentials over `DomainResource`.
pub fn types() -> &'static [Value] {
    static CELL: OnceLock<Vec<Value>> = OnceLock::new();
    CELL.get_or_init(|| {
        let mut all = r4_types().to_vec();
        all.extend(flint_types().iter().cloned());
        all
    })
}

/// Flint's own resource types (`Bot`, `App`), with snapshots.
pub fn flint_types() -> &'static [Value] {
    static CELL: OnceLock<Vec<Value>> = OnceLock::new();
    CELL.get_or_init(|| {
        let domain = r4_types()
            .iter()
            .find(|sd| sd["type"] == "DomainResource")
            .expect("the R4 types hold DomainResource");
        let written: Vec<Value> =
            serde_json::from_str(include_str!("../definitions/flint-types.json"))
                .expect("Flint's type definitions are valid JSON");
        written
            .into_iter()
            .map(|sd| with_snapshot(sd, domain))
            .collect()
    })
}

/// The snapshot of a specialization of `DomainResource`: its inherited elements renamed to the
/// new type, then the differential's, each with its id.
fn with_snapshot(mut sd: Value, domain: &Value) -> Value {
    let name = sd["type"].as_str().unwrap_or_default().to_string();
    let rename = |s: &str| format!("{name}{}", s.strip_prefix("DomainResource").unwrap_or(s));
    let mut elements: Vec<Value> = Vec::new();
    let own = sd
        .pointer("/differential/element")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut own = own.into_iter().map(|mut e| {
        let path = e["path"].as_str().unwrap_or_default().to_string();
        e["id"] = Value::String(path);
        e
    });
    if let Some(root) = own.next() {
        elements.push(root);
    }
    for e in domain
        .pointer("/snapshot/element")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .skip(1)
    {
        let mut e = e.clone();
        for key in ["id", "path"] {
            if let Some(s) = e[key].as_str() {
                e[key] = Value::String(rename(s));
            }
        }
        elements.push(e);
    }
    elements.extend(own);
    sd["snapshot"] = serde_json::json!({ "element": elements });
    sd
}

/// The core SearchParameters: R4's and those of Flint's own resource types.
pub fn search_parameters() -> &'static [Value] {
    static CELL: OnceLock<Vec<Value>> = OnceLock::new();
    CELL.get_or_init(|| {
        let mut all = r4_search_parameters().to_vec();
        let flint: Vec<Value> =
            serde_json::from_str(include_str!("../definitions/flint-search-parameters.json"))
                .expect("Flint's search parameters are valid JSON");
        all.extend(flint);
        all
    })
}
embedded!(
    /// The core OperationDefinitions.
    operation_definitions, "operation-definitions.ndjson.gz"
);
embedded!(
    /// The core CompartmentDefinitions.
    compartment_definitions, "compartment-definitions.ndjson.gz"
);
embedded!(
    /// Core ValueSets, CodeSystems, ConceptMaps and NamingSystems.
    terminology, "terminology.ndjson.gz"
);

fn parse(gz: &[u8]) -> Vec<Value> {
    // The embedded files are produced by our own tool and checked by the tests below; a
    // failure here is a broken build, not bad input.
    BufReader::new(GzDecoder::new(gz))
        .lines()
        .map(|line| {
            let line = line.expect("embedded definitions are valid gzip");
            serde_json::from_str(&line).expect("embedded definitions are valid JSON")
        })
        .collect()
}

/// Finds an embedded conformance resource of any kind by its canonical URL.
pub fn by_url(url: &str) -> Option<&'static Value> {
    let url = url.split('|').next().unwrap_or(url);
    [
        types(),
        profiles(),
        search_parameters(),
        operation_definitions(),
        compartment_definitions(),
        terminology(),
    ]
    .into_iter()
    .flatten()
    .find(|r| r.get("url").and_then(Value::as_str) == Some(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_set_loads_with_expected_counts() {
        assert_eq!(r4_types().len(), 209);
        assert_eq!(types().len(), 211);
        assert_eq!(r4_search_parameters().len(), 1400);
        assert_eq!(search_parameters().len(), 1407);
        assert_eq!(operation_definitions().len(), 47);
        assert_eq!(compartment_definitions().len(), 6);
        assert!(terminology().len() > 2000);
        assert!(profiles().len() > 400);
    }

    #[test]
    fn finds_by_canonical_url() {
        let sd = by_url("http://hl7.org/fhir/StructureDefinition/Patient|4.0.1").unwrap();
        assert_eq!(sd["type"], "Patient");
    }
}
