//! Expands every ValueSet of the embedded R4 core terminology and prints how many expand,
//! why the others are refused, and how long a few typical expansions take once warm:
//! `cargo run --release --example core_survey`.

use std::collections::BTreeMap;
use std::time::Instant;

use flint_terminology::{Core, Definition, ExpandRequest, Resource, Terminology};

fn main() {
    let t = Terminology::new(&Core);
    let start = Instant::now();
    let mut expanded = 0;
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    for vs in flint_fhir::definitions::terminology() {
        if vs["resourceType"] != "ValueSet" {
            continue;
        }
        match t.expand(&ExpandRequest::new(Definition::resource(Resource::Core(
            vs,
        )))) {
            Ok(_) => expanded += 1,
            Err(e) => *refused.entry(e.code().code().to_string()).or_default() += 1,
        }
    }
    println!(
        "{expanded} core value sets expanded in {:?} (cold)",
        start.elapsed()
    );
    for (code, n) in &refused {
        println!("  {n} refused as {code}");
    }
    for url in [
        "http://hl7.org/fhir/ValueSet/administrative-gender",
        "http://terminology.hl7.org/ValueSet/v3-ActEncounterCode",
        "http://terminology.hl7.org/ValueSet/v3-ActCode",
    ] {
        let request = ExpandRequest::new(Definition::url(url));
        let Ok(first) = t.expand(&request) else {
            continue;
        };
        let rounds = 200;
        let start = Instant::now();
        for _ in 0..rounds {
            let _ = t.expand(&request);
        }
        println!(
            "{url} ({} codes): {:?} per expansion",
            first.total,
            start.elapsed() / rounds
        );
    }
}
