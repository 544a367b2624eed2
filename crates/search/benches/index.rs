//! Index extraction benchmark: all SearchParameter values of a typical Observation (the
//! figures are in BENCHMARKS.md).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use flint_search::Registry;
use serde_json::Value;

fn extract_observation(c: &mut Criterion) {
    let obs: Value = serde_json::from_str(include_str!("../../fhirpath/benches/observation.json"))
        .expect("valid JSON");
    let registry = Registry::r4();
    let params = registry.params("Observation").len();
    let values: usize = registry.extract(&obs).iter().map(|e| e.values.len()).sum();
    println!("Observation: {params} parameters, {values} values");
    c.bench_function("search/extract all Observation parameters", |b| {
        b.iter(|| registry.extract(black_box(&obs)))
    });
}

criterion_group!(benches, extract_observation);
criterion_main!(benches);
