//! A profiling harness: extracts the index values of the benchmark Observation N times and
//! evaluates the subscription filter M times, so that `valgrind --tool=callgrind` can count
//! instructions, a measure that a loaded machine does not disturb (see BENCHMARKS.md).
//!
//! `cargo build --release -p flint-search --example extract_loop` then
//! `valgrind --tool=callgrind target/release/examples/extract_loop N M`.

use flint_fhirpath::Expression;
use flint_search::Registry;

const FILTER: &str = "Observation.code.coding.where(system='http://loinc.org').code = '85354-9' and Observation.valueQuantity.value > 140";

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().unwrap_or(0));
    let (extracts, filters) = (args.next().unwrap_or(0), args.next().unwrap_or(0));
    let obs: serde_json::Value =
        serde_json::from_str(include_str!("../../fhirpath/benches/observation.json"))
            .expect("the fixture is JSON");
    let registry = Registry::r4();
    let filter = Expression::compile(FILTER).expect("the filter compiles");
    // Build the registry and the navigation index before the measured loops.
    std::hint::black_box(registry.extract(&obs));
    for _ in 0..extracts {
        std::hint::black_box(registry.extract(&obs));
    }
    for _ in 0..filters {
        std::hint::black_box(filter.evaluate_boolean(&obs).ok());
    }
}
