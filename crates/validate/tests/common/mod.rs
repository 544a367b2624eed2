//! Test support: the R4 examples and a [`ValueSets`] over the core terminology.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use flint_validate::ValueSets;
use serde_json::Value;

/// The example instances of the R4 package (see `tools/extract-examples.py`).
pub fn examples() -> Vec<Value> {
    let gz = include_bytes!("../fixtures/r4-examples.ndjson.gz");
    BufReader::new(flate2::read::GzDecoder::new(&gz[..]))
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect()
}

/// The example with this type and id.
pub fn example(ty: &str, id: &str) -> Value {
    examples()
        .into_iter()
        .find(|r| r["resourceType"] == ty && r["id"] == id)
        .unwrap_or_else(|| panic!("no example {ty}/{id}"))
}

/// Value sets of the core terminology, expanded from `compose.include` concept lists and
/// whole complete code systems; anything else (filters, nested value sets, excludes,
/// code systems not held) is unknown.
/// The `(system, code)` pairs of a value set.
type Expansion = HashSet<(String, String)>;

#[derive(Default)]
pub struct CoreValueSets {
    expanded: Mutex<HashMap<String, Option<Expansion>>>,
    /// Answers given: in the set, not in it, unknown.
    pub answers: [AtomicUsize; 3],
}

fn by_url(ty: &str, url: &str) -> Option<&'static Value> {
    let url = url.split('|').next().unwrap_or(url);
    flint_fhir::definitions::terminology()
        .iter()
        .find(|r| r["resourceType"] == ty && r["url"] == url)
}

fn all_codes(concepts: &Value, system: &str, out: &mut HashSet<(String, String)>) {
    for c in concepts.as_array().into_iter().flatten() {
        if let Some(code) = c["code"].as_str() {
            out.insert((system.to_string(), code.to_string()));
        }
        all_codes(&c["concept"], system, out);
    }
}

fn expand(url: &str) -> Option<HashSet<(String, String)>> {
    let vs = by_url("ValueSet", url)?;
    let compose = vs.get("compose")?;
    if compose.get("exclude").is_some() {
        return None;
    }
    let mut out = HashSet::new();
    for include in compose["include"].as_array()? {
        if include.get("filter").is_some() || include.get("valueSet").is_some() {
            return None;
        }
        let system = include["system"].as_str()?;
        match include.get("concept") {
            Some(concepts) => {
                for c in concepts.as_array()? {
                    out.insert((system.to_string(), c["code"].as_str()?.to_string()));
                }
            }
            None => {
                let cs = by_url("CodeSystem", system)?;
                if cs["content"] != "complete" {
                    return None;
                }
                all_codes(&cs["concept"], system, &mut out);
            }
        }
    }
    Some(out)
}

impl ValueSets for CoreValueSets {
    fn contains(
        &self,
        value_set: &str,
        system: Option<&str>,
        code: &str,
    ) -> flint_fhir::Result<Option<bool>> {
        let mut cache = self.expanded.lock().unwrap();
        let set = cache
            .entry(value_set.to_string())
            .or_insert_with(|| expand(value_set));
        let answer = set.as_ref().map(|set| {
            set.iter()
                .any(|(s, c)| c == code && system.is_none_or(|want| want == s))
        });
        let slot = match answer {
            Some(true) => 0,
            Some(false) => 1,
            None => 2,
        };
        self.answers[slot].fetch_add(1, Ordering::Relaxed);
        Ok(answer)
    }
}
