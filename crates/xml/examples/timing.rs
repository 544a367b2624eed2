//! Rough timing of the conversions against serving JSON, for a typical Patient (the R4
//! `patient-example`): `cargo run --release --example timing`.

use std::hint::black_box;
use std::time::{Duration, Instant};

const PATIENT: &str = include_str!("../tests/fixtures/pairs/patient-example.json");

/// Runs `f` repeatedly for about half a second and returns the time per call.
fn time(mut f: impl FnMut()) -> Duration {
    for _ in 0..1_000 {
        f();
    }
    let start = Instant::now();
    let mut runs = 0u32;
    while start.elapsed() < Duration::from_millis(500) {
        for _ in 0..100 {
            f();
        }
        runs += 100;
    }
    start.elapsed() / runs
}

fn main() {
    let patient: serde_json::Value = serde_json::from_str(PATIENT).expect("the example is JSON");
    let xml = flint_xml::to_xml(&patient).expect("the example converts");
    let mut buffer = Vec::with_capacity(8192);
    let json_out = time(|| {
        buffer.clear();
        serde_json::to_writer(&mut buffer, black_box(&patient)).expect("serialises");
    });
    let xml_out = time(|| {
        buffer.clear();
        flint_xml::write_xml(black_box(&patient), &mut buffer).expect("converts");
    });
    let json_in = time(|| {
        black_box(serde_json::from_str::<serde_json::Value>(black_box(PATIENT)).expect("parses"));
    });
    let xml_in = time(|| {
        black_box(flint_xml::from_xml(black_box(xml.as_bytes())).expect("parses"));
    });
    println!(
        "Patient: {} bytes of JSON, {} bytes of XML",
        PATIENT.len(),
        xml.len()
    );
    println!("serde_json::to_writer   {json_out:>10.2?}");
    println!("flint_xml::write_xml    {xml_out:>10.2?}");
    println!("serde_json::from_str    {json_in:>10.2?}");
    println!("flint_xml::from_xml     {xml_in:>10.2?}");
}
