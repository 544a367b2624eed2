//! A deterministic fuzz of every input-driven computation of `fhir`, `fhirpath` and `search`:
//! random and mutated FHIRPath expressions through the parser and the evaluator, random JSON
//! Patch documents (move and copy chains included) through `apply_json_patch`, random deep or
//! odd JSON through the validator, and random resources and custom parameters through index
//! extraction. Nothing may panic or overflow the stack, every error must be a 4xx, and what
//! succeeds must stay within the limits (no deeper than the patch limit, no infinite number
//! in an index).
//!
//! Each part runs a fixed number of cases from a fixed seed (`FUZZ_SEED` overrides it, and
//! `FUZZ_CASES` multiplies the counts, for longer runs by hand), on a thread with a small
//! stack so that unbounded recursion shows as a crash. `FUZZ_VERBOSE=1` prints each case
//! before it runs, to name the one that crashes the process.

use std::panic::{catch_unwind, AssertUnwindSafe};

use flint_fhir::patch::{apply_json_patch, MAX_PATCH_DEPTH};
use flint_fhir::validate::validate_resource;
use flint_fhirpath::{Context, Expression};
use flint_search::{IndexValue, Registry};
use serde_json::{json, Map, Value};

/// A small, fast, seedable generator (xorshift64*): no dependency, same cases every run.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn seed() -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_F117)
}

fn cases(n: usize) -> usize {
    let factor = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    n * factor
}

fn verbose() -> bool {
    std::env::var("FUZZ_VERBOSE").is_ok()
}

/// Runs a fuzz part on a thread with a 256 KiB stack. FHIRPath at its nesting limits needs more
/// in debug builds, whose frames are about ten times the size of release ones, so those parts
/// ask for `debug_kib` there; either way a recursion that follows the input (thousands of
/// levels) overflows it.
fn on_small_stack(debug_kib: usize, f: impl FnOnce() + Send + 'static) {
    let kib = if cfg!(debug_assertions) {
        debug_kib
    } else {
        256
    };
    std::thread::Builder::new()
        .stack_size(kib * 1024)
        .spawn(f)
        .expect("thread starts")
        .join()
        .expect("fuzz part passes");
}

/// Runs one case, naming its input if it panics.
fn case<T>(what: &str, input: &dyn std::fmt::Display, f: impl FnOnce() -> T) -> T {
    if verbose() {
        eprintln!("{what}: {}", shorten(&input.to_string()));
    }
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => panic!("{what} panicked on {}", shorten(&input.to_string())),
    }
}

fn shorten(s: &str) -> String {
    if s.len() <= 400 {
        return s.to_string();
    }
    let head: String = s.chars().take(200).collect();
    let tail: String = s
        .chars()
        .rev()
        .take(200)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{head} ...({} bytes)... {tail}", s.len())
}

fn assert_client_error(what: &str, input: &dyn std::fmt::Display, e: &flint_fhir::Error) {
    assert!(
        (400..500).contains(&e.status()),
        "{what} gave {e} on {}",
        shorten(&input.to_string())
    );
}

/// `{"key": value}` added to an object without `json!`, which would serialize (recursively)
/// a value it embeds.
fn with(mut obj: Value, key: &str, value: Value) -> Value {
    if let Some(map) = obj.as_object_mut() {
        // The value replaced may be a deep one.
        if let Some(old) = map.insert(key.to_string(), value) {
            dismantle(old);
        }
    } else {
        dismantle(value);
    }
    obj
}

/// Nests `inner` `depth` times in arrays or objects, without recursion.
fn nest(mut inner: Value, depth: usize, rng: &mut Rng) -> Value {
    for _ in 0..depth {
        inner = match rng.below(3) {
            0 => Value::Array(vec![inner]),
            1 => with(json!({}), "extension", Value::Array(vec![inner])),
            _ => with(
                json!({"url": "http://x"}),
                "extension",
                Value::Array(vec![inner]),
            ),
        };
    }
    inner
}

/// The nesting depth of a value (objects and arrays), without recursion.
fn depth(value: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, level)) = stack.pop() {
        match v {
            Value::Array(items) => {
                max = max.max(level + 1);
                stack.extend(items.iter().map(|i| (i, level + 1)));
            }
            Value::Object(map) => {
                max = max.max(level + 1);
                stack.extend(map.values().map(|i| (i, level + 1)));
            }
            _ => {}
        }
    }
    max
}

/// Drops a value without recursion (dropping a very deep `Value` recurses).
fn dismantle(value: Value) {
    let mut stack = vec![value];
    while let Some(mut v) = stack.pop() {
        match &mut v {
            Value::Array(items) => stack.append(items),
            Value::Object(map) => {
                let taken = std::mem::take(map);
                stack.extend(taken.into_iter().map(|(_, child)| child));
            }
            _ => {}
        }
    }
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient", "id": "p1", "active": true,
        "identifier": [{"system": "urn:oid:1.2.3", "value": "12345", "type": {"coding": [{"system": "http://t", "code": "MR"}]}}],
        "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}, {"family": "Zoë", "given": ["Z"]}],
        "telecom": [{"system": "phone", "value": "(03) 5555 6473"}],
        "gender": "male", "birthDate": "1974-12-25",
        "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
        "contained": [{"resourceType": "Organization", "id": "o", "name": "Acme"}],
        "managingOrganization": {"reference": "#o"},
        "generalPractitioner": [{"reference": "Practitioner/gp"}],
        "multipleBirthInteger": 2
    })
}

fn observation() -> Value {
    serde_json::from_str(include_str!("../../fhirpath/benches/observation.json"))
        .expect("fixture parses")
}

fn bundle() -> Value {
    json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": patient()},
        {"fullUrl": "urn:uuid:2", "resource": observation()}
    ]})
}

// ----- FHIRPath ---------------------------------------------------------------------------

const NAMES: &[&str] = &[
    "name",
    "given",
    "family",
    "birthDate",
    "value",
    "code",
    "coding",
    "system",
    "display",
    "extension",
    "url",
    "id",
    "resourceType",
    "component",
    "entry",
    "resource",
    "contained",
    "telecom",
    "identifier",
    "type",
    "text",
    "status",
    "subject",
    "reference",
    "effective",
    "Patient",
    "Observation",
    "Bundle",
    "unknown",
    "`div`",
    "_birthDate",
    "valueQuantity",
];

const LITERALS: &[&str] = &[
    "1",
    "0",
    "-1",
    "2.5",
    "0.0",
    "1.50",
    "2147483647",
    "9223372036854775807L",
    "'str'",
    "''",
    "'a\\'b'",
    "'\\u00e9'",
    "@2020-01-01",
    "@2020",
    "@2020-01-01T10:00:00Z",
    "@T10:00",
    "5 'mg'",
    "3 days",
    "1 year",
    "1e3",
    "true",
    "false",
    "{}",
    "%resource",
    "%context",
    "%rootResource",
    "%ucum",
    "%`vs-x`",
    "%sct",
    "$this",
    "$index",
    "$total",
    "%undefined",
];

/// Functions with the argument kinds they take: `E` an expression, `S` a string, `N` a
/// number, `T` a type.
const FUNCTIONS: &[(&str, &str)] = &[
    ("where", "E"),
    ("select", "E"),
    ("repeat", "E"),
    ("repeatAll", "E"),
    ("exists", ""),
    ("exists", "E"),
    ("all", "E"),
    ("empty", ""),
    ("count", ""),
    ("distinct", ""),
    ("isDistinct", ""),
    ("first", ""),
    ("last", ""),
    ("tail", ""),
    ("skip", "N"),
    ("take", "N"),
    ("single", ""),
    ("union", "E"),
    ("combine", "E"),
    ("intersect", "E"),
    ("exclude", "E"),
    ("subsetOf", "E"),
    ("supersetOf", "E"),
    ("iif", "EEE"),
    ("iif", "EE"),
    ("toString", ""),
    ("toInteger", ""),
    ("toDecimal", ""),
    ("toQuantity", ""),
    ("toQuantity", "S"),
    ("toDate", ""),
    ("toDateTime", ""),
    ("toTime", ""),
    ("toBoolean", ""),
    ("convertsToInteger", ""),
    ("convertsToQuantity", ""),
    ("indexOf", "S"),
    ("substring", "NN"),
    ("substring", "N"),
    ("startsWith", "S"),
    ("endsWith", "S"),
    ("contains", "S"),
    ("upper", ""),
    ("lower", ""),
    ("replace", "SS"),
    ("matches", "S"),
    ("replaceMatches", "SS"),
    ("length", ""),
    ("toChars", ""),
    ("split", "S"),
    ("join", "S"),
    ("trim", ""),
    ("encode", "S"),
    ("decode", "S"),
    ("escape", "S"),
    ("unescape", "S"),
    ("abs", ""),
    ("ceiling", ""),
    ("exp", ""),
    ("floor", ""),
    ("ln", ""),
    ("log", "N"),
    ("power", "N"),
    ("round", "N"),
    ("sqrt", ""),
    ("truncate", ""),
    ("children", ""),
    ("descendants", ""),
    ("trace", "S"),
    ("now", ""),
    ("today", ""),
    ("timeOfDay", ""),
    ("aggregate", "EE"),
    ("aggregate", "E"),
    ("type", ""),
    ("not", ""),
    ("extension", "S"),
    ("hasValue", ""),
    ("getValue", ""),
    ("resolve", ""),
    ("htmlChecks", ""),
    ("conformsTo", "S"),
    ("memberOf", "S"),
    ("lowBoundary", ""),
    ("highBoundary", "N"),
    ("precision", ""),
    ("comparable", "E"),
    ("sort", "E"),
    ("sort", ""),
    ("defineVariable", "SE"),
    ("ofType", "T"),
    ("as", "T"),
    ("is", "T"),
    ("nope", ""),
];

const STRINGS: &[&str] = &[
    "''",
    "'a'",
    "'base64'",
    "'hex'",
    "'urlbase64'",
    "'html'",
    "'json'",
    "'(a|b)*c'",
    "'((((((((((a))))))))))'",
    "'[a-'",
    "'.*'",
    "'x*'",
    "'$1'",
    "'http://x'",
    "'mg'",
    "' '",
    "'v'",
    "'\\\\'",
];

const TYPES: &[&str] = &[
    "Patient",
    "HumanName",
    "string",
    "FHIR.string",
    "System.String",
    "Integer",
    "Quantity",
    "Resource",
    "Nope",
    "System.Patient",
];

const OPERATORS: &[&str] = &[
    "+", "-", "*", "/", "div", "mod", "&", "|", "=", "!=", "~", "!~", "<", ">", "<=", ">=", "and",
    "or", "xor", "implies", "in", "contains",
];

fn expression(rng: &mut Rng, depth: usize) -> String {
    if depth == 0 || rng.chance(25) {
        return if rng.chance(50) {
            rng.pick(NAMES).to_string()
        } else {
            rng.pick(LITERALS).to_string()
        };
    }
    let d = depth - 1;
    match rng.below(7) {
        0 | 1 => {
            let (name, args) = *rng.pick(FUNCTIONS);
            let args: Vec<String> = args
                .chars()
                .map(|k| match k {
                    'E' => expression(rng, d),
                    'S' => rng.pick(STRINGS).to_string(),
                    'N' => rng
                        .pick(&["0", "1", "2", "-1", "30", "1000000"])
                        .to_string(),
                    _ => rng.pick(TYPES).to_string(),
                })
                .collect();
            let target = if rng.chance(20) {
                String::new()
            } else {
                format!("{}.", expression(rng, d))
            };
            format!("{target}{name}({})", args.join(", "))
        }
        2 => format!("{}.{}", expression(rng, d), rng.pick(NAMES)),
        3 => format!(
            "{} {} {}",
            expression(rng, d),
            rng.pick(OPERATORS),
            expression(rng, d)
        ),
        4 => format!("({})", expression(rng, d)),
        5 => format!(
            "{}[{}]",
            expression(rng, d),
            rng.pick(&["0", "1", "-1", "$index"])
        ),
        _ => match rng.below(3) {
            0 => format!("-{}", expression(rng, d)),
            1 => format!("{} is {}", expression(rng, d), rng.pick(TYPES)),
            _ => format!("{} as {}", expression(rng, d), rng.pick(TYPES)),
        },
    }
}

/// Damages an expression the ways hostile or careless text does.
fn mutate(rng: &mut Rng, text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = rng.below(chars.len() + 1);
    let (head, tail): (String, String) =
        (chars[..at].iter().collect(), chars[at..].iter().collect());
    match rng.below(8) {
        0 => {
            let junk = *rng.pick(&[
                "(", ")", "[", "]", "{", "}", ".", ",", "'", "`", "%", "$", "@", "@T", "+", "-",
                "*", "/", "&", "|", "=", "<", ">", "!", "~", " ", "0", "9", "e", "L", "\\", "\"",
                "é", "\u{0}", "/*", "//", "\n",
            ]);
            format!("{head}{junk}{tail}")
        }
        1 => {
            let end = (at + rng.below(8)).min(chars.len());
            let rest: String = chars[end..].iter().collect();
            format!("{head}{rest}")
        }
        2 => {
            let n = 1 + rng.below(2000);
            format!("{}{text}{}", "(".repeat(n), ")".repeat(n))
        }
        3 => {
            let n = 1 + rng.below(300);
            format!(
                "{text}{}",
                rng.pick(&[".name", ".select($this)", " + 1", " | name", "[0]"])
                    .repeat(n)
            )
        }
        4 => {
            let n = 1 + rng.below(12);
            let mut e = "%resource.name".to_string();
            for _ in 0..n {
                e = format!("%resource.name.select({e})");
            }
            format!("{head}{e}{tail}")
        }
        5 => format!("{text}{text}"),
        6 => format!("{}{}", "-".repeat(1 + rng.below(500)), text),
        _ => format!("{head}{}{tail}", expression(rng, 3)),
    }
}

/// How the cases of a part ended, printed with `--nocapture` to see that the fuzz reaches
/// past the parser.
#[derive(Debug, Default)]
struct Outcomes {
    refused: usize,
    failed: usize,
    too_costly: usize,
    succeeded: usize,
}

fn fhirpath_case(rng: &mut Rng, text: &str, resources: &[Value], seen: &mut Outcomes) {
    let compiled = case("compiling", &text, || Expression::compile(text));
    let expr = match compiled {
        Ok(e) => e,
        Err(e) => {
            seen.refused += 1;
            assert_client_error("compiling", &text, &e.into());
            return;
        }
    };
    let resource = rng.pick(resources);
    let ctx = Context::new().json_var("v", &resource["id"]);
    let result = case("evaluating", &text, || {
        expr.evaluate_with(resource, &ctx).map(|items| items.len())
    });
    match result {
        Ok(_) => seen.succeeded += 1,
        Err(e) => {
            if e.kind == flint_fhirpath::ErrorKind::TooCostly {
                seen.too_costly += 1;
            } else {
                seen.failed += 1;
            }
            assert_client_error("evaluating", &text, &e.into());
        }
    }
}

#[test]
fn fhirpath_survives_random_and_mutated_expressions() {
    on_small_stack(4096, || {
        let mut rng = Rng::new(seed());
        // A resource as deep as no parser produces, which comparisons must not follow.
        let deep = with(
            json!({"resourceType": "Patient"}),
            "extension",
            nest(json!({"url": "u", "valueString": "x"}), 5000, &mut rng),
        );
        let names: Vec<Value> = (0..20)
            .map(|i| json!({"family": format!("F{i}"), "given": ["a", "b"]}))
            .collect();
        let many = json!({"resourceType": "Patient", "name": names});
        let resources = vec![
            patient(),
            observation(),
            bundle(),
            json!({"resourceType": "Basic"}),
            many,
            deep,
        ];
        let corpus: Vec<String> = Registry::r4()
            .params("Observation")
            .iter()
            .chain(Registry::r4().params("Patient"))
            .map(|p| p.expression.text().to_string())
            .collect();
        let mut seen = Outcomes::default();
        for _ in 0..cases(1500) {
            let text = match rng.below(4) {
                // Selects in selects over a resource with many names: a product that only
                // the evaluation budget stops (the costliest cases, so only a few).
                0 if rng.chance(5) => {
                    let mut e = "%resource.name".to_string();
                    for _ in 0..3 + rng.below(6) {
                        e = format!(
                            "%resource.name.{}({e})",
                            rng.pick(&["select", "select", "combine", "where", "repeat"])
                        );
                    }
                    format!("name.select({e})")
                }
                // Compositions that fan out over the resource.
                0 if rng.chance(40) => {
                    let pieces = [
                        "%resource.name",
                        "%resource.descendants()",
                        "name.combine(name)",
                        "descendants()",
                        "%resource.children()",
                        "(name | telecom)",
                        "%resource.repeat(children())",
                        "%resource.name.given & 'x'",
                    ];
                    let mut e = rng.pick(&pieces).to_string();
                    for _ in 0..1 + rng.below(6) {
                        let f =
                            rng.pick(&["select", "select", "repeat", "combine", "union", "where"]);
                        e = format!("{}.{f}({e})", rng.pick(&pieces));
                    }
                    e
                }
                0 => {
                    let depth = 1 + rng.below(5);
                    expression(&mut rng, depth)
                }
                1 => {
                    let seed = rng.pick(&corpus).clone();
                    mutate(&mut rng, &seed)
                }
                _ => {
                    let depth = 1 + rng.below(4);
                    let e = expression(&mut rng, depth);
                    mutate(&mut rng, &e)
                }
            };
            fhirpath_case(&mut rng, &text, &resources, &mut seen);
        }
        eprintln!("FHIRPath: {seen:?}");
        for r in resources {
            dismantle(r);
        }
    });
}

// ----- JSON Patch ---------------------------------------------------------------------------

fn random_json(rng: &mut Rng, depth: usize) -> Value {
    if depth == 0 || rng.chance(30) {
        return match rng.below(7) {
            0 => Value::Null,
            1 => json!(rng.chance(50)),
            2 => json!(rng.below(1000)),
            3 => serde_json::from_str(rng.pick::<&str>(&[
                "1.50",
                "-0",
                "1e999999",
                "0e-5",
                "123456789012345678901234567890",
            ]))
            .unwrap_or(Value::Null),
            4 => json!(""),
            5 => json!("x".repeat(rng.below(40))),
            _ => json!(rng.pick(NAMES)),
        };
    }
    if rng.chance(50) {
        Value::Array(
            (0..rng.below(4))
                .map(|_| random_json(rng, depth - 1))
                .collect(),
        )
    } else {
        let mut map = Map::new();
        for _ in 0..rng.below(4) {
            let key = rng
                .pick(&["a", "b", "c", "name", "0", "-", "~", "/", "", "a/b", "m~n"])
                .to_string();
            map.insert(key, random_json(rng, depth - 1));
        }
        Value::Object(map)
    }
}

/// The JSON pointers of a value's members and items (the first few hundred).
fn pointers(value: &Value) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut stack = vec![(value, String::new())];
    while let Some((v, at)) = stack.pop() {
        if out.len() > 300 {
            break;
        }
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                    out.push(p.clone());
                    stack.push((child, p));
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    let p = format!("{at}/{i}");
                    out.push(p.clone());
                    stack.push((child, p));
                }
                out.push(format!("{at}/-"));
            }
            _ => {}
        }
    }
    out
}

fn pointer(rng: &mut Rng, known: &[String]) -> String {
    if rng.chance(75) {
        let p = rng.pick(known).clone();
        if rng.chance(30) {
            return format!("{p}/{}", rng.pick(&["x", "0", "-", "00", "1"]));
        }
        return p;
    }
    rng.pick(&[
        "",
        "/",
        "//",
        "/a/b/c",
        "a",
        "/~2",
        "/-/x",
        "/0/0/0",
        "/name/01",
        "/99999999999999999999",
    ])
    .to_string()
}

fn random_patch(rng: &mut Rng, doc: &Value) -> Value {
    let known = pointers(doc);
    match rng.below(6) {
        // A chain that wraps the document's content one level deeper at every pair.
        0 => {
            let n = rng.below(400);
            let mut ops = Vec::new();
            for i in 0..n {
                let (outer, inner) = if i % 2 == 0 { ("b", "a") } else { ("a", "b") };
                ops.push(json!({"op": "add", "path": format!("/{outer}"), "value": {}}));
                ops.push(json!({"op": "move", "from": format!("/{inner}"), "path": format!("/{outer}/{inner}")}));
            }
            Value::Array(ops)
        }
        // Copies of the whole document into itself: doubling.
        1 => Value::Array(
            (0..rng.below(30))
                .map(|i| json!({"op": "copy", "from": "", "path": format!("/x{i}")}))
                .collect(),
        ),
        // Copies of an array into itself.
        2 => Value::Array(
            (0..rng.below(30))
                .map(|_| json!({"op": "copy", "from": "/a", "path": "/a/0"}))
                .collect(),
        ),
        _ => Value::Array(
            (0..1 + rng.below(12))
                .map(|_| {
                    let path = pointer(rng, &known);
                    let from = pointer(rng, &known);
                    match rng.below(9) {
                        0 => json!({"op": "add", "path": path, "value": random_json(rng, 3)}),
                        1 => {
                            let mut deep = nest(json!(1), 90 + rng.below(20), rng);
                            if rng.chance(10) {
                                deep = nest(deep, 5000, rng);
                            }
                            with(json!({"op": "add", "path": path}), "value", deep)
                        }
                        2 => json!({"op": "remove", "path": path}),
                        3 => json!({"op": "replace", "path": path, "value": random_json(rng, 2)}),
                        4 | 5 => json!({"op": "move", "from": from, "path": path}),
                        6 => json!({"op": "copy", "from": from, "path": path}),
                        7 => json!({"op": "test", "path": path, "value": random_json(rng, 2)}),
                        _ => random_json(rng, 2),
                    }
                })
                .collect(),
        ),
    }
}

#[test]
fn json_patch_survives_random_documents() {
    on_small_stack(256, || {
        let mut rng = Rng::new(seed() ^ 0xA5A5);
        let mut seen = Outcomes::default();
        for _ in 0..cases(1500) {
            let mut doc = match rng.below(3) {
                0 => patient(),
                1 => json!({"a": [1, {"b": [2]}], "c": {"d": "e"}}),
                _ => random_json(&mut rng, 5),
            };
            let patch = if rng.chance(5) {
                random_json(&mut rng, 3)
            } else {
                random_patch(&mut rng, &doc)
            };
            let result = case("patching", &patch, || apply_json_patch(&mut doc, &patch));
            match result {
                Ok(()) => {
                    seen.succeeded += 1;
                    assert!(
                        depth(&doc) <= MAX_PATCH_DEPTH,
                        "a patch made the document {} deep: {}",
                        depth(&doc),
                        shorten(&patch.to_string())
                    );
                }
                Err(e) => {
                    if e.code() == flint_fhir::IssueType::TooCostly {
                        seen.too_costly += 1;
                    } else {
                        seen.failed += 1;
                    }
                    assert_client_error("patching", &patch, &e);
                }
            }
            dismantle(doc);
            dismantle(patch);
        }
        eprintln!("JSON Patch: {seen:?}");
    });
}

// ----- Validation ---------------------------------------------------------------------------

/// Puts an odd value somewhere in a resource: at a known element, an unknown one, a `_name`,
/// inside an array, or as a deeply nested extension or contained resource.
fn damage(rng: &mut Rng, mut resource: Value) -> Value {
    let odd = |rng: &mut Rng| -> Value {
        match rng.below(11) {
            10 => serde_json::from_str(rng.pick::<&str>(&[
                r#"{"value": 1e999999, "system": "http://unitsofmeasure.org", "code": "mg"}"#,
                r#"{"value": 0e999999, "unit": "x"}"#,
                r#"{"value": 1e300, "system": "http://unitsofmeasure.org", "code": "Gm"}"#,
                r#"[{"probabilityDecimal": 1e999999}]"#,
            ]))
            .unwrap_or(Value::Null),
            0 => serde_json::from_str(rng.pick::<&str>(&[
                "1e999999",
                "-1e400",
                "1e-999999",
                "0e999999",
                "1.7976931348623159e308",
                "12345678901234567890123",
            ]))
            .unwrap_or(Value::Null),
            1 => nest(json!({"url": "u"}), 1 + rng.below(200), rng),
            2 => nest(
                json!({"resourceType": "Patient"}),
                10_000 + rng.below(10_000),
                rng,
            ),
            _ => random_json(rng, 3),
        }
    };
    for _ in 0..1 + rng.below(3) {
        let key = rng
            .pick(&[
                "name",
                "birthDate",
                "_birthDate",
                "gender",
                "extension",
                "contained",
                "value",
                "valueQuantity",
                "active",
                "id",
                "resourceType",
                "multipleBirthInteger",
                "deceasedBoolean",
                "deceasedDateTime",
                "photo",
                "nope",
                "_given",
                "prediction",
                "valueQuantity",
                "component",
            ])
            .to_string();
        let value = odd(rng);
        if rng.chance(20) {
            // A contained resource many levels deep.
            let mut inner = json!({"resourceType": "Patient"});
            for _ in 0..rng.below(20_000) {
                inner = with(
                    json!({"resourceType": "Patient"}),
                    "contained",
                    Value::Array(vec![inner]),
                );
            }
            resource = with(resource, "contained", Value::Array(vec![inner]));
        }
        resource = with(resource, &key, value);
    }
    resource
}

#[test]
fn validation_survives_random_resources() {
    on_small_stack(256, || {
        let mut rng = Rng::new(seed() ^ 0x5A5A);
        let model = flint_fhir::model::r4();
        for _ in 0..cases(300) {
            let start = match rng.below(4) {
                0 => patient(),
                1 => observation(),
                2 => bundle(),
                _ => random_json(&mut rng, 4),
            };
            let resource = damage(&mut rng, start);
            let result = case("validating", &"(a random resource)", || {
                validate_resource(model, &resource)
            });
            if let Err(e) = result {
                // Not a fault of the server: a 400, whatever the input.
                assert_eq!(e.status(), 400, "{e}");
            }
            dismantle(resource);
        }
    });
}

// ----- Index extraction ---------------------------------------------------------------------

fn finite(v: &IndexValue) -> bool {
    match v {
        IndexValue::Number { low, high, .. } => low.is_finite() && high.is_finite(),
        IndexValue::Quantity {
            low,
            high,
            canonical,
            ..
        } => {
            low.is_finite()
                && high.is_finite()
                && canonical
                    .as_ref()
                    .is_none_or(|c| c.value.is_finite() && c.low.is_finite() && c.high.is_finite())
        }
        IndexValue::Composite(parts) => parts.iter().all(finite),
        _ => true,
    }
}

#[test]
fn extraction_survives_random_resources_and_parameters() {
    on_small_stack(4096, || {
        let mut rng = Rng::new(seed() ^ 0x3C3C);
        let kinds = [
            "string",
            "token",
            "reference",
            "date",
            "number",
            "quantity",
            "uri",
        ];
        for round in 0..cases(30) {
            // A few custom parameters with random (often costly, often broken) expressions.
            let custom: Vec<Value> = (0..3)
                .map(|i| {
                    let depth = 1 + rng.below(4);
                    let e = expression(&mut rng, depth);
                    let text = if rng.chance(50) {
                        mutate(&mut rng, &e)
                    } else {
                        e
                    };
                    json!({
                        "resourceType": "SearchParameter",
                        "url": format!("http://example.org/SearchParameter/fuzz-{round}-{i}"),
                        "code": format!("fuzz{i}"), "base": ["Resource"],
                        "type": rng.pick(&kinds), "expression": text
                    })
                })
                .collect();
            let registry = case("building a registry", &Value::Array(custom.clone()), || {
                Registry::with(&custom)
            });
            for _ in 0..5 {
                let start = match rng.below(3) {
                    0 => patient(),
                    1 => observation(),
                    _ => bundle(),
                };
                let resource = if rng.chance(70) {
                    damage(&mut rng, start)
                } else {
                    start
                };
                let result = case("extracting", &Value::Array(custom.clone()), || {
                    registry
                        .try_extract(&resource)
                        .map(|x| x.iter().all(|e| e.values.iter().all(finite)))
                });
                match result {
                    Ok(all_finite) => assert!(all_finite, "an index value is not finite"),
                    Err(e) => assert_client_error("extracting", &Value::Array(custom.clone()), &e),
                }
                let lenient = case("extracting", &"(lenient)", || {
                    registry.extract(&resource).len()
                });
                assert!(
                    lenient > 0
                        || registry
                            .params(resource["resourceType"].as_str().unwrap_or(""))
                            .is_empty()
                );
                dismantle(resource);
            }
        }
    });
}
