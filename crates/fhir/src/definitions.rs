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
    /// StructureDefinitions of the base types and resources (derivation `specialization`).
    types, "types.ndjson.gz"
);
embedded!(
    /// Constraining StructureDefinitions: core profiles and extension definitions.
    profiles, "profiles.ndjson.gz"
);
embedded!(
    /// The core SearchParameters.
    search_parameters, "search-parameters.ndjson.gz"
);
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
        assert_eq!(types().len(), 209);
        assert_eq!(search_parameters().len(), 1400);
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
