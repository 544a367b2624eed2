//! Rough timing of `Validator::check` on the R4 examples (run with
//! `cargo run --release --example timing`): the core validator's build, then the mean time per
//! resource overall and for a few typical ones.

use std::io::{BufRead, BufReader};
use std::time::Instant;

use flint_validate::{NoValueSets, Validator};
use serde_json::Value;

fn main() {
    let gz = include_bytes!("../tests/fixtures/r4-examples.ndjson.gz");
    let examples: Vec<Value> = BufReader::new(flate2::read::GzDecoder::new(&gz[..]))
        .lines()
        .map(|l| serde_json::from_str(&l.expect("gzip")).expect("json"))
        .collect();
    let _ = flint_fhir::model::r4();
    let start = Instant::now();
    let validator = Validator::core();
    println!("building the core validator: {:?}", start.elapsed());

    let rounds = 5;
    let start = Instant::now();
    let mut issues = 0;
    for _ in 0..rounds {
        for r in &examples {
            issues += validator.check(r, &NoValueSets).len();
        }
    }
    let total = start.elapsed();
    println!(
        "{} examples x {rounds}: {:?} in all, {:?} per resource ({issues} issues)",
        examples.len(),
        total,
        total / (examples.len() * rounds) as u32
    );
    for (ty, id) in [
        ("Patient", "example"),
        ("Observation", "blood-pressure"),
        ("Questionnaire", "3141"),
        ("Bundle", "10bb101f-a121-4264-a920-67be9cb82c74"),
    ] {
        let Some(r) = examples
            .iter()
            .find(|r| r["resourceType"] == ty && r["id"] == id)
        else {
            continue;
        };
        let n = 200;
        let start = Instant::now();
        for _ in 0..n {
            std::hint::black_box(validator.check(r, &NoValueSets));
        }
        println!("{ty}/{id}: {:?} per check", start.elapsed() / n);
    }
}
