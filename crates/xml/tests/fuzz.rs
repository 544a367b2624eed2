//! Hostile input, fuzz style: random cuts and mutations of valid documents, in both
//! directions, with a fixed seed so that a failure reproduces. Nothing may panic, and whatever
//! one direction accepts, the other gives back unchanged:
//! - `from_xml(x)` accepted ⇒ `to_xml` of the result is accepted and reads back the same;
//! - `to_xml(j)` accepted ⇒ `from_xml` of the result gives `j` back.
//!
//! And the fast path from JSON text agrees with the path through a `Value` on mutated JSON
//! text: `write_xml_from_json(t)` fails where `serde_json::from_slice(t)` fails, and otherwise
//! gives what `write_xml` gives (the same bytes, or the same error).

use std::io::{BufRead, BufReader};

use flate2::read::GzDecoder;
use serde_json::{json, Value};

/// How many mutations per seed document: `FUZZ_SCALE=20` runs twenty times as many (and
/// `FUZZ_SEED` changes the random sequence), for a longer hunt than the test suite makes.
fn scaled(default: usize) -> usize {
    let scale = std::env::var("FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    default * scale
}

fn rng(stream: u64) -> Rng {
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0x5EED_F1A7);
    Rng((seed << 8 | stream) | 1)
}

/// xorshift64*: small, deterministic, good enough to pick cuts and bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// A few examples of different shapes: narrative, extensions, primitives with companions,
/// contained and bundled resources, choice elements, decimals.
fn seeds() -> Vec<Value> {
    let file = std::fs::File::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/r4-examples.ndjson.gz"
    ))
    .expect("the fixture exists");
    let wanted = [
        "Patient/example",
        "Observation/example",
        "Bundle/bundle-transaction",
        "Questionnaire/3141",
        "Parameters/example",
        "MedicationRequest/medrx0301",
        "CodeSystem/example",
    ];
    let mut seeds: Vec<Value> = BufReader::new(GzDecoder::new(file))
        .lines()
        .map(|line| serde_json::from_str::<Value>(&line.expect("readable")).expect("JSON"))
        .filter(|r| {
            let key = format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap_or(""),
                r["id"].as_str().unwrap_or("")
            );
            wanted.contains(&key.as_str())
        })
        .collect();
    seeds.push(json!({
        "resourceType": "Patient",
        "name": [{"given": ["a", null], "_given": [null, {"id": "g", "extension": [{"url": "u", "valueDecimal": 1}]}]}],
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p a='1'>x &amp; y<br/><!-- c --><![CDATA[z]]></p></div>"}
    }));
    assert!(seeds.len() >= 6, "the seeds are in the fixture");
    seeds
}

const TOKENS: &[&str] = &[
    "<",
    ">",
    "/>",
    "</",
    "&",
    "&amp;",
    "&#0;",
    "&#x10FFFF;",
    "&lol;",
    "\"",
    "'",
    "=",
    " ",
    "\n",
    "\u{1}",
    "\u{FFFE}",
    "é",
    "<!DOCTYPE x [<!ENTITY lol \"lol\">]>",
    "<!--",
    "-->",
    "<![CDATA[",
    "]]>",
    "<?pi?>",
    "xmlns=\"urn:x\"",
    "xmlns:f=\"http://hl7.org/fhir\"",
    " id=\"i\"",
    " value=\"1.0\"",
    " url=\"u\"",
    "<extension url=\"u\"><valueString value=\"s\"/></extension>",
    "<div xmlns=\"http://www.w3.org/1999/xhtml\">",
    "</div>",
    "<contained>",
    "<Patient>",
    "<given value=\"g\"/>",
    "<valueBoolean value=\"true\"/>",
];

/// Pieces of JSON text to insert: escapes (some invalid), structure, numbers, FHIR.
const JSON_TOKENS: &[&str] = &[
    "\"",
    "\\",
    "\\u",
    "\\u00e9",
    "\\uD800",
    "\\uDC00",
    "\\uD83D\\uDE00",
    "\\n",
    "\\x",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    " ",
    "\n",
    "null",
    "true",
    "-0",
    "01",
    "1.",
    "1E5",
    "1.0e-7",
    "\u{1}",
    "é",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    "\"id\":\"i\",",
    "\"_given\":[null,{\"id\":\"g\"}],",
    "\"extension\":[{\"url\":\"u\",\"valueDecimal\":1E5}],",
    "{\"$serde_json::private::Number\":\"1\"}",
    "\"resourceType\":\"Basic\",",
];

/// One random edit of `bytes`.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    mutate_with(rng, bytes, TOKENS);
}

/// One random edit of `bytes`, inserting `tokens` among others.
fn mutate_with(rng: &mut Rng, bytes: &mut Vec<u8>, tokens: &[&str]) {
    let at = rng.below(bytes.len() + 1);
    match rng.below(6) {
        0 => bytes.truncate(at),
        1 => {
            let end = (at + 1 + rng.below(16)).min(bytes.len());
            bytes.drain(at.min(end)..end);
        }
        2 => {
            let token = tokens[rng.below(tokens.len())].as_bytes();
            bytes.splice(at..at, token.iter().copied());
        }
        3 => {
            if at < bytes.len() {
                bytes[at] = (rng.next() & 0xFF) as u8;
            }
        }
        4 => {
            let end = (at + rng.below(64)).min(bytes.len());
            let copy = bytes[at.min(end)..end].to_vec();
            let to = rng.below(bytes.len() + 1);
            bytes.splice(to..to, copy);
        }
        _ => {
            if at < bytes.len() {
                let other = rng.below(bytes.len());
                bytes.swap(at, other);
            }
        }
    }
}

/// `from_xml` accepted `value`: writing it must work and read back the same.
fn check_accepted(value: &Value, what: &str) {
    let xml = flint_xml::to_xml(value)
        .unwrap_or_else(|e| panic!("accepted but not writable: {e}\n{value}\nfrom {what}"));
    let back = flint_xml::from_xml(xml.as_bytes())
        .unwrap_or_else(|e| panic!("written but not readable ({what}): {e}\n{xml}"));
    assert_eq!(&back, value, "{what}: {xml}");
}

#[test]
fn mutated_xml_never_panics_and_what_is_accepted_round_trips() {
    let mut rng = rng(1);
    let mut accepted = 0;
    let mut runs = 0;
    for seed in seeds() {
        let xml = flint_xml::to_xml_pretty(&seed).expect("the seed converts");
        for _ in 0..scaled(400) {
            let mut bytes = xml.clone().into_bytes();
            for _ in 0..=rng.below(3) {
                mutate(&mut rng, &mut bytes);
            }
            runs += 1;
            if let Ok(value) = flint_xml::from_xml(&bytes) {
                accepted += 1;
                check_accepted(&value, &String::from_utf8_lossy(&bytes));
            }
        }
    }
    // Most mutations break the document; enough stay valid to exercise the round trip.
    assert!(accepted > runs / 25, "{accepted} of {runs} accepted");
}

/// Random edits of a JSON value: drop, retype or duplicate members, add unknown ones.
fn mutate_json(rng: &mut Rng, value: &mut Value, depth: usize) {
    match value {
        Value::Object(object) if !object.is_empty() => {
            let i = rng.below(object.len());
            let key = object.keys().nth(i).cloned().unwrap_or_default();
            match rng.below(8) {
                0 => {
                    object.shift_remove(&key);
                }
                1 => {
                    object.insert(format!("_{key}"), json!({"id": "x"}));
                }
                2 => {
                    object.insert(key, json!(null));
                }
                3 => {
                    object.insert("unknownElement".into(), json!(1));
                }
                _ => {
                    if let Some(child) = object.get_mut(&key) {
                        if depth < 12 {
                            mutate_json(rng, child, depth + 1);
                        }
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let i = rng.below(items.len());
            match rng.below(4) {
                0 => {
                    items.remove(i);
                }
                1 => {
                    let copy = items[i].clone();
                    items.push(copy);
                }
                _ => mutate_json(rng, &mut items[i], depth + 1),
            }
        }
        Value::String(text) => match rng.below(5) {
            0 => *value = json!(true),
            1 => *value = serde_json::from_str("1.50").expect("number"),
            2 => text.push('\u{2}'),
            _ => {
                // A byte-level edit on character boundaries (narratives get these too).
                let mut bytes = text.clone().into_bytes();
                mutate(rng, &mut bytes);
                *text = String::from_utf8_lossy(&bytes).into_owned();
            }
        },
        Value::Number(_) => *value = json!("7"),
        Value::Bool(b) => *b = !*b,
        _ => *value = json!({}),
    }
}

/// The normalisations writing makes: a div without its `xmlns` declaration (and with
/// surrounding whitespace) is written with it, and so read back; the value or companion array
/// of a primitive that holds only `null`s carries nothing and is not written.
fn normalised(value: &mut Value) {
    match value {
        Value::Object(object) => {
            object.retain(|_, v| {
                !matches!(v, Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_null))
            });
            for (key, v) in object.iter_mut() {
                match v {
                    Value::String(div) if key == "div" => {
                        let trimmed = div.trim_matches([' ', '\t', '\r', '\n']);
                        let mut reader = quick_xml::Reader::from_str(trimmed);
                        let declared = match reader.read_event() {
                            Ok(
                                quick_xml::events::Event::Start(e)
                                | quick_xml::events::Event::Empty(e),
                            ) => e.attributes().flatten().any(|a| a.key.as_ref() == b"xmlns"),
                            _ => true,
                        };
                        *div = if declared {
                            trimmed.to_string()
                        } else {
                            format!(
                                "<div xmlns=\"http://www.w3.org/1999/xhtml\"{}",
                                &trimmed[4..]
                            )
                        };
                    }
                    _ => normalised(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalised),
        _ => {}
    }
}

#[test]
fn mutated_json_never_panics_and_what_is_written_reads_back() {
    let mut rng = rng(2);
    let mut written = 0;
    let mut runs = 0;
    for seed in seeds() {
        for _ in 0..scaled(300) {
            let mut value = seed.clone();
            for _ in 0..=rng.below(2) {
                mutate_json(&mut rng, &mut value, 0);
            }
            runs += 1;
            if let Ok(xml) = flint_xml::to_xml(&value) {
                written += 1;
                let back = flint_xml::from_xml(xml.as_bytes())
                    .unwrap_or_else(|e| panic!("written but not readable: {e}\n{xml}"));
                normalised(&mut value);
                assert_eq!(back, value, "{xml}");
            }
        }
    }
    assert!(written > runs / 10, "{written} of {runs} written");
}

/// Both paths from JSON text, compact and indented: the same bytes, or both fail (with the
/// same error when `serde_json` parses the text), the buffer untouched. Returns whether they
/// wrote.
fn fast_path_agrees(text: &[u8]) -> bool {
    let parsed = serde_json::from_slice::<Value>(text);
    let mut wrote = false;
    for pretty in [false, true] {
        let mut expected = b"prefix".to_vec();
        let by_value = parsed
            .as_ref()
            .map_err(|e| e.to_string())
            .and_then(|value| {
                if pretty {
                    flint_xml::write_xml_pretty(value, &mut expected)
                } else {
                    flint_xml::write_xml(value, &mut expected)
                }
                .map_err(|e| format!("{:?}", e.issues))
            });
        let mut actual = b"prefix".to_vec();
        let by_text = if pretty {
            flint_xml::write_xml_pretty_from_json(text, &mut actual)
        } else {
            flint_xml::write_xml_from_json(text, &mut actual)
        };
        let what = String::from_utf8_lossy(text);
        match (by_value, by_text) {
            (Ok(()), Ok(())) => {
                assert!(expected == actual, "{what}: outputs differ");
                wrote = true;
            }
            (Err(e), Err(error)) => {
                assert_eq!(actual, b"prefix", "{what}: the buffer is restored");
                if parsed.is_ok() {
                    assert_eq!(e, format!("{:?}", error.issues), "{what}");
                }
            }
            (by_value, by_text) => {
                panic!("{what}: by value {by_value:?}, from text {by_text:?}")
            }
        }
    }
    wrote
}

#[test]
fn mutated_json_text_gives_what_the_value_gives() {
    let mut rng = rng(4);
    let mut parsed = 0;
    let mut written = 0;
    let mut runs = 0;
    for seed in seeds() {
        let texts = [
            serde_json::to_string(&seed).expect("serialises"),
            serde_json::to_string_pretty(&seed).expect("serialises"),
        ];
        for text in &texts {
            assert!(fast_path_agrees(text.as_bytes()), "the seed converts");
            for _ in 0..scaled(300) {
                let mut bytes = text.clone().into_bytes();
                for _ in 0..=rng.below(2) {
                    mutate_with(&mut rng, &mut bytes, JSON_TOKENS);
                }
                runs += 1;
                parsed += usize::from(serde_json::from_slice::<Value>(&bytes).is_ok());
                written += usize::from(fast_path_agrees(&bytes));
            }
        }
        // Value-level edits: valid JSON, so the writer's own errors are compared.
        for _ in 0..scaled(100) {
            let mut value = seed.clone();
            for _ in 0..=rng.below(2) {
                mutate_json(&mut rng, &mut value, 0);
            }
            written += usize::from(fast_path_agrees(value.to_string().as_bytes()));
        }
    }
    // Enough mutations stay JSON, and enough of those FHIR, to compare outputs too.
    assert!(parsed > runs / 10, "{parsed} of {runs} parsed");
    assert!(written > runs / 20, "{written} of {runs} written");
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut rng = rng(3);
    for _ in 0..scaled(2_000) {
        let length = rng.below(200);
        let mut bytes: Vec<u8> = (0..length).map(|_| (rng.next() & 0xFF) as u8).collect();
        // Mostly markup, so that the parser gets past the first byte.
        if rng.below(2) == 0 {
            bytes.splice(
                0..0,
                b"<Patient xmlns=\"http://hl7.org/fhir\">".iter().copied(),
            );
        }
        let _ = flint_xml::from_xml(&bytes);
        let json: Vec<u8> = [b"{\"resourceType\":\"Patient\",".as_slice(), &bytes].concat();
        fast_path_agrees(&bytes);
        fast_path_agrees(&json);
    }
}
