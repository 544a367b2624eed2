//! FHIRPath benchmarks: a typical subscription filter on a compiled expression, evaluated over
//! a blood-pressure Observation (the figures are in BENCHMARKS.md).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use flint_fhirpath::Expression;
use serde_json::Value;

const FILTER: &str = "Observation.code.coding.where(system='http://loinc.org').code = '85354-9' and Observation.valueQuantity.value > 140";

fn observation() -> Value {
    serde_json::from_str(include_str!("observation.json")).expect("valid JSON")
}

fn filter(c: &mut Criterion) {
    let obs = observation();
    let expr = Expression::compile(FILTER).expect("compiles");
    assert_eq!(expr.evaluate_boolean(&obs).expect("evaluates"), Some(true));
    c.bench_function("fhirpath/subscription-filter (compiled)", |b| {
        b.iter(|| expr.evaluate_boolean(black_box(&obs)))
    });
    c.bench_function("fhirpath/compile filter", |b| {
        b.iter(|| Expression::compile(black_box(FILTER)))
    });
}

criterion_group!(benches, filter);
criterion_main!(benches);
