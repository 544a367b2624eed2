//! Rough timing of the conversions against serving JSON, for a typical Patient (the R4
//! `patient-example`) and the largest resource of the vendored examples:
//! `cargo run --release --example timing`.
//!
//! The JSON is compact, as Flint stores it. A read served as XML from stored JSON costs
//! either `from_slice` + `write_xml` or `write_xml_from_json`; served as JSON, at most
//! `from_slice` + `to_writer`.

use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use serde_json::Value;

const PATIENT: &str = include_str!("../tests/fixtures/pairs/patient-example.json");

/// The time per call of `f`: the best of twenty rounds of about 25 ms each, so that other
/// work on the machine disturbs the figure as little as possible.
fn time(mut f: impl FnMut()) -> Duration {
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(50) {
        f();
    }
    let mut best = Duration::MAX;
    for _ in 0..20 {
        let start = Instant::now();
        let mut runs = 0u32;
        while start.elapsed() < Duration::from_millis(25) {
            f();
            runs += 1;
        }
        best = best.min(start.elapsed() / runs);
    }
    best
}

/// The largest resource of the vendored examples (a `Library` that is mostly one base64
/// attachment) and the largest `Bundle` (many small elements), compact.
fn large_examples() -> (Vec<u8>, Vec<u8>) {
    let file = std::fs::File::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/r4-examples.ndjson.gz"
    ))
    .expect("the fixture exists");
    let lines: Vec<Vec<u8>> = BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .map(|line| line.expect("readable").into_bytes())
        .collect();
    let largest = lines.iter().max_by_key(|l| l.len()).expect("examples");
    let bundle = lines
        .iter()
        .filter(|l| l.starts_with(br#"{"resourceType":"Bundle""#))
        .max_by_key(|l| l.len())
        .expect("bundles");
    (largest.clone(), bundle.clone())
}

fn report(name: &str, json: &[u8]) {
    let value: Value = serde_json::from_slice(json).expect("the example is JSON");
    let xml = flint_xml::to_xml(&value).expect("the example converts");
    let mut buffer = Vec::with_capacity(2 * xml.len());
    let parse = time(|| {
        black_box(serde_json::from_slice::<Value>(black_box(json)).expect("parses"));
    });
    let json_out = time(|| {
        buffer.clear();
        serde_json::to_writer(&mut buffer, black_box(&value)).expect("serialises");
    });
    let xml_out = time(|| {
        buffer.clear();
        flint_xml::write_xml(black_box(&value), &mut buffer).expect("converts");
    });
    let json_read = time(|| {
        buffer.clear();
        let value = serde_json::from_slice::<Value>(black_box(json)).expect("parses");
        serde_json::to_writer(&mut buffer, &value).expect("serialises");
    });
    let xml_read = time(|| {
        buffer.clear();
        let value = serde_json::from_slice::<Value>(black_box(json)).expect("parses");
        flint_xml::write_xml(&value, &mut buffer).expect("converts");
    });
    let fast = time(|| {
        buffer.clear();
        flint_xml::write_xml_from_json(black_box(json), &mut buffer).expect("converts");
    });
    let fast_pretty = time(|| {
        buffer.clear();
        flint_xml::write_xml_pretty_from_json(black_box(json), &mut buffer).expect("converts");
    });
    let xml_in = time(|| {
        black_box(flint_xml::from_xml(black_box(xml.as_bytes())).expect("parses"));
    });
    println!(
        "{name}: {} bytes of JSON, {} bytes of XML",
        json.len(),
        xml.len()
    );
    println!("  serde_json::from_slice::<Value>               {parse:>10.2?}");
    println!("  serde_json::to_writer                         {json_out:>10.2?}");
    println!("  flint_xml::write_xml                          {xml_out:>10.2?}");
    println!("  from_slice + to_writer (JSON baseline)        {json_read:>10.2?}");
    println!("  from_slice + write_xml                        {xml_read:>10.2?}");
    println!("  flint_xml::write_xml_from_json                {fast:>10.2?}");
    println!("  flint_xml::write_xml_pretty_from_json         {fast_pretty:>10.2?}");
    println!("  flint_xml::from_xml                           {xml_in:>10.2?}");
}

fn main() {
    let patient: Value = serde_json::from_str(PATIENT).expect("the example is JSON");
    report(
        "Patient/example",
        &serde_json::to_vec(&patient).expect("serialises"),
    );
    let (largest, bundle) = large_examples();
    report("largest example", &largest);
    report("largest Bundle", &bundle);
}
