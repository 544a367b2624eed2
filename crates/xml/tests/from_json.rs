//! The fast path from JSON text: `write_xml_from_json(text)` writes exactly what
//! `write_xml(&serde_json::from_slice(text)?)` writes (the same bytes, or an error where it
//! fails), compact and indented, for every resource of the vendored R4 examples.

use std::io::{BufRead, BufReader};

use flate2::read::GzDecoder;
use serde_json::Value;

/// Every example of the package and all but its 160 largest conformance resources.
const FIXTURE_RESOURCES: usize = 5145;

fn lines() -> Vec<String> {
    let file = std::fs::File::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/r4-examples.ndjson.gz"
    ))
    .expect("the fixture exists");
    BufReader::new(GzDecoder::new(file))
        .lines()
        .map(|line| line.expect("readable"))
        .collect()
}

type Writer = fn(&Value, &mut Vec<u8>) -> flint_fhir::Result<()>;
type TextWriter = fn(&[u8], &mut Vec<u8>) -> flint_fhir::Result<()>;

const FORMS: [(&str, Writer, TextWriter); 2] = [
    (
        "compact",
        flint_xml::write_xml,
        flint_xml::write_xml_from_json,
    ),
    (
        "pretty",
        flint_xml::write_xml_pretty,
        flint_xml::write_xml_pretty_from_json,
    ),
];

/// Both paths on `text`, after a prefix already in the buffer: the same bytes, or errors with
/// the same outcome and the buffer untouched. Returns whether they wrote.
fn compare(text: &[u8], what: &str) -> bool {
    let mut wrote = false;
    for (form, from_value, from_text) in FORMS {
        let mut expected = b"prefix".to_vec();
        let by_value = serde_json::from_slice::<Value>(text)
            .map_err(|e| e.to_string())
            .and_then(|value| {
                from_value(&value, &mut expected).map_err(|e| format!("{:?}", e.issues))
            });
        let mut actual = b"prefix".to_vec();
        let by_text = from_text(text, &mut actual);
        match (&by_value, &by_text) {
            (Ok(()), Ok(())) => {
                assert!(
                    expected == actual,
                    "{what} ({form}): the outputs differ\n{}\n{}",
                    String::from_utf8_lossy(&expected),
                    String::from_utf8_lossy(&actual)
                );
                wrote = true;
            }
            (Err(e), Err(error)) => {
                assert_eq!(actual, b"prefix", "{what} ({form}): the buffer is restored");
                assert_eq!(error.status(), 400, "{what} ({form}): {error}");
                // Past the JSON syntax, the one writer fails in the same place.
                if serde_json::from_slice::<Value>(text).is_ok() {
                    assert_eq!(*e, format!("{:?}", error.issues), "{what} ({form})");
                }
            }
            _ => panic!("{what} ({form}): by value {by_value:?}, from text {by_text:?}"),
        }
    }
    wrote
}

#[test]
fn every_example_is_written_as_from_a_value() {
    let lines = lines();
    assert_eq!(lines.len(), FIXTURE_RESOURCES);
    let mut written = 0;
    for (i, line) in lines.iter().enumerate() {
        written += usize::from(compare(line.as_bytes(), &format!("line {}", i + 1)));
    }
    // Every example converts (the round-trip test checks the content).
    assert_eq!(written, FIXTURE_RESOURCES);
}

#[test]
fn indented_and_reordered_json_is_written_as_from_a_value() {
    for (i, line) in lines().iter().enumerate().step_by(7) {
        let value: Value = serde_json::from_str(line).expect("JSON");
        let pretty = serde_json::to_string_pretty(&value).expect("serialises");
        assert!(compare(
            pretty.as_bytes(),
            &format!("line {} indented", i + 1)
        ));
        // A duplicated key: `serde_json` keeps the first place and the last value.
        if let Some(rest) = line.strip_prefix('{') {
            let doubled = format!("{{\"id\":\"first\",\"id\":\"x\",{rest}");
            compare(
                doubled.as_bytes(),
                &format!("line {} with a repeated key", i + 1),
            );
        }
    }
}

#[test]
fn numbers_are_written_as_serde_json_spells_them() {
    for (number, written) in [
        ("1.0", "1.0"),
        ("1.50", "1.50"),
        ("-0", "-0"),
        ("1E5", "1e+5"),
        ("1e5", "1e+5"),
        ("1.0E-5", "1.0e-5"),
        ("1e+05", "1e+05"),
        (
            "123456789012345678901234567890.5",
            "123456789012345678901234567890.5",
        ),
    ] {
        let text = format!(
            r#"{{"resourceType":"Observation","status":"final","code":{{"text":"t"}},"valueQuantity":{{"value":{number}}}}}"#
        );
        assert!(compare(text.as_bytes(), number));
        let mut out = Vec::new();
        flint_xml::write_xml_from_json(text.as_bytes(), &mut out).expect("writes");
        let xml = String::from_utf8(out).expect("UTF-8");
        assert!(
            xml.contains(&format!("<value value=\"{written}\"/>")),
            "{number}: {xml}"
        );
    }
}

#[test]
fn escapes_and_unicode_are_written_as_from_a_value() {
    for name in [
        r#""plain""#,
        r#""\"quoted\" \\ \/ \b""#,
        r#""tab\tnew\nline\r""#,
        r#""\u00e9\u20AC\uD83D\uDE00 é €😀""#,
        r#""<&>'""#,
        r#""\u0001""#,
        r#""\uFFFE""#,
        r#""\uD800""#,
        r#""\uDC00x""#,
        "\"a\u{1}\"",
    ] {
        let text = format!(r#"{{"resourceType":"Patient","name":[{{"text":{name}}}]}}"#);
        compare(text.as_bytes(), name);
    }
}

#[test]
fn malformed_json_is_an_error() {
    let patient = br#"{"resourceType":"Patient","id":"a","name":[{"given":["b"]}]}"#;
    for cut in 0..patient.len() {
        let mut out = b"kept".to_vec();
        let error = flint_xml::write_xml_from_json(&patient[..cut], &mut out)
            .expect_err("a truncated document");
        assert_eq!(out, b"kept");
        assert_eq!(error.status(), 400);
        assert!(error.to_string().contains("invalid JSON"), "{error}");
    }
    let deep = |n: usize| {
        format!(
            r#"{{"resourceType":"Patient","extension":[{}{}]}}"#,
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    for text in [
        b"".to_vec(),
        b"  ".to_vec(),
        [patient.as_slice(), b"x"].concat(),
        [patient.as_slice(), b"{}"].concat(),
        b"{\"resourceType\":\"Patient\",\"id\":\"a\\q\"}".to_vec(),
        b"{\"resourceType\":\"Patient\",\"id\":\"\\uD800\"}".to_vec(),
        b"{\"resourceType\":\"Patient\",\"id\":\"\xff\"}".to_vec(),
        b"{\"resourceType\":\"Patient\",\"id\":\"a\nb\"}".to_vec(),
        b"{\"resourceType\":\"Patient\",}".to_vec(),
        b"\xef\xbb\xbf{\"resourceType\":\"Patient\"}".to_vec(),
        deep(126).into_bytes(),
        deep(10_000).into_bytes(),
        "[".repeat(100_000).into_bytes(),
    ] {
        let mut out = b"kept".to_vec();
        let error = flint_xml::write_xml_from_json(&text, &mut out).expect_err("malformed");
        assert_eq!(out, b"kept");
        assert!(
            error.to_string().contains("invalid JSON"),
            "{}: {error}",
            String::from_utf8_lossy(&text)
        );
        assert!(serde_json::from_slice::<Value>(&text).is_err());
    }
    let error = flint_xml::write_xml_from_json(b"{\"resourceType\":\n tru}", &mut Vec::new())
        .expect_err("malformed");
    assert!(error.to_string().contains("line 2 column 5"), "{error}");
}
