//! Hostile expressions fail with a clean error instead of exhausting the stack, memory or
//! time: nesting and length bounded by the parser, fan-out and string growth by the
//! evaluation budget (`ErrorKind::TooCostly`, which becomes a 422 `too-costly` outcome).

use flint_fhirpath::{Error, ErrorKind, Expression, MAX_EVALUATION_STEPS, MAX_STRING_BYTES};
use serde_json::{json, Value};

/// Runs `f` on a thread with a small stack, as hostile input must not need a big one. Debug
/// builds use about ten times the stack per level that release builds do.
fn small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let kib = if cfg!(debug_assertions) { 4096 } else { 256 };
    std::thread::Builder::new()
        .stack_size(kib * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

fn patient() -> Value {
    let names: Vec<Value> = (0..10)
        .map(|i| json!({"family": format!("Family{i}"), "given": ["Peter", "James"]}))
        .collect();
    json!({"resourceType": "Patient", "id": "p1", "name": names, "birthDate": "1974-12-25"})
}

fn run(expr: &str) -> Result<Vec<String>, Error> {
    let p = patient();
    let e = Expression::compile(expr)?;
    let items = e.evaluate(&p)?;
    Ok(items
        .iter()
        .map(|i| format!("{:?}", i.to_system()))
        .collect())
}

fn too_costly(expr: &str) -> Error {
    let text = expr.to_string();
    // Long expressions are named by their end in failure messages.
    let expr = &expr[expr.len().saturating_sub(120)..];
    let e = small_stack(move || run(&text).map(|r| r.len()));
    let e = e.expect_err(expr);
    assert_eq!(e.kind, ErrorKind::TooCostly, "{expr}: {e}");
    let outcome = flint_fhir::Error::from(e.clone());
    assert_eq!(outcome.status(), 422, "{expr}");
    assert_eq!(outcome.code(), flint_fhir::IssueType::TooCostly, "{expr}");
    e
}

#[test]
fn nested_select_over_the_resource_is_too_costly() {
    let mut expr = "%resource.name".to_string();
    for _ in 0..8 {
        expr = format!("%resource.name.select({expr})");
    }
    let expr = format!("Patient.name.select({expr})");
    let e = too_costly(&expr);
    assert!(e.to_string().contains("too costly"), "{e}");
    assert!(e.message.contains(&MAX_EVALUATION_STEPS.to_string()), "{e}");
}

/// `(1 | 2 | ... | n)`: n distinct items from a short text.
fn numbers(n: usize) -> String {
    let items: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    format!("({})", items.join(" | "))
}

#[test]
fn every_shape_of_fan_out_is_too_costly() {
    let cases = [
        // Collections that double: combine() keeps duplicates.
        format!("{}.aggregate($total.combine($total), name)", numbers(24)),
        format!("{n}.select({n}).select(name.combine(name).combine(name))", n = numbers(100)),
        // Cartesian products through lambdas.
        "name.select(%resource.name.select(%resource.name.select(%resource.name.select(%resource.name.select(%resource.name.select($this))))))".to_string(),
        "descendants().select(%resource.descendants()).select(%resource.descendants()).select(%resource.descendants())".to_string(),
        "name.repeatAll(%resource.name)".to_string(),
        "name.repeat(%resource.name.combine(%resource.name)).select(%resource.descendants()).select(%resource.descendants()).select(%resource.descendants()).select(%resource.descendants())".to_string(),
        format!("{}.repeat($this + 1)", numbers(30)),
        // Quadratic comparisons.
        format!("{}.aggregate($total.combine($total), name).distinct()", numbers(14)),
        format!("{}.select({}).select({}).distinct().count()", numbers(100), numbers(100), numbers(10)),
        format!("{n}.select({n}).select({n}).select($index).isDistinct()", n = numbers(30)),
        "descendants().select(%resource.descendants()).select(%resource.descendants()).union(name)".to_string(),
        format!("{n}.select({n}).select({n}) ~ {n}.select({n}).select({n})", n = numbers(12)),
        // Strings that double.
        format!("{}.aggregate($total & $total, 'ab')", numbers(40)),
        "name.given.aggregate($total & $total & $total & $total, 'abcdefgh')".to_string(),
        format!("{}.aggregate($total.replace('', 'xy'), 'ab')", numbers(40)),
        format!("{}.aggregate($total.replaceMatches('', 'x').replaceMatches('x*', 'yyyyyyyy'), 'ab')", numbers(40)),
        format!("{}.aggregate($total.combine($total).join($total), 'ab')", numbers(40)),
        format!("{}.aggregate($total.encode('hex'), 'ab')", numbers(40)),
    ];
    for expr in &cases {
        too_costly(expr);
    }
    // Legitimate expressions stay well within the budget.
    assert_eq!(run("name.given.distinct()").unwrap().len(), 2);
    assert_eq!(
        run("name.select(given.first() & ' ' & family)")
            .unwrap()
            .len(),
        10
    );
    assert_eq!(run("descendants().count() > 30").unwrap().len(), 1);
    assert_eq!(
        run(&format!("{}.select({}).count()", numbers(30), numbers(30)))
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn strings_are_bounded_before_they_are_built() {
    let big = "a".repeat(MAX_STRING_BYTES / 2 + 1);
    let p = json!({"resourceType": "Patient", "name": [{"family": big}]});
    let e = Expression::compile("name.family & name.family")
        .unwrap()
        .evaluate(&p)
        .map(|r| r.len())
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooCostly);
    assert!(e.message.contains("builds a string"), "{e}");
}

#[test]
fn deep_parentheses_and_long_chains_are_syntax_errors() {
    let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
    let e = small_stack(move || Expression::compile(&deep).map(|_| ())).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Syntax);
    assert!(e.message.contains("nested too deeply"), "{e}");
    let outcome = flint_fhir::Error::from(e);
    assert_eq!(outcome.status(), 400);
    for text in [
        "-".repeat(100_000) + "1",
        vec!["1"; 100_000].join(" + "),
        vec!["name"; 100_000].join("."),
        "name".to_string() + &".where(true)".repeat(100_000),
        "name[".repeat(100_000) + "0" + &"]".repeat(100_000),
        "iif(true, ".repeat(100_000) + "1" + &")".repeat(100_000),
    ] {
        let e = small_stack(move || Expression::compile(&text).map(|_| ())).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Syntax, "{e}");
    }
}

#[test]
fn deep_json_is_compared_without_recursion_past_a_limit() {
    // JSON deeper than any parser produces, built by hand.
    let mut v = json!("end");
    for _ in 0..100_000 {
        v = Value::Array(vec![v]);
    }
    let mut obj = serde_json::Map::new();
    obj.insert("resourceType".into(), json!("Patient"));
    obj.insert("a".into(), v);
    let resource = Value::Object(obj);
    let resource = small_stack(move || {
        for expr in [
            "a = a",
            "a ~ a",
            "a.descendants().count()",
            "(a | a).count()",
        ] {
            let e = Expression::compile(expr).unwrap();
            let _ = e.evaluate(&resource).map(|r| r.len());
        }
        resource
    });
    std::mem::forget(resource);
}
