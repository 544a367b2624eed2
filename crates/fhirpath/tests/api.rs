//! The public API beyond the conformance suite: typed JSON output for the CLI, variables,
//! hooks (resolver, terminology, trace), strict mode, primitive extensions and error reports.

use std::sync::Mutex;

use flint_fhirpath::{
    evaluate_to_json, Context, ErrorKind, Expression, Item, Resolver, Terminology,
};
use serde_json::{json, Value};

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "birthDate": "1974-12",
        "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
        "name": [{"family": "Chalmers", "given": ["Peter", "James"], "_given": [null, {"extension": [{"url": "http://example.org/nick", "valueString": "Jim"}]}]}],
        "contained": [{"resourceType": "Organization", "id": "org", "name": "Acme"}],
        "managingOrganization": {"reference": "#org"},
        "generalPractitioner": [{"reference": "Practitioner/gp"}],
        "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]},
        "multipleBirthInteger": 2
    })
}

#[test]
fn expression_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Expression>();
}

/// JSON as written: the workspace's serde_json keeps `3.00` as `3.00`, `json!` would not.
fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn evaluate_to_json_types_every_item() {
    let p = patient();
    let cases = [
        (
            "birthDate",
            json!([{"type": "date", "value": "1974-12", "extension": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1974-12-25T14:35:45-05:00"}]}}]),
        ),
        (
            "name.family",
            json!([{"type": "string", "value": "Chalmers"}]),
        ),
        (
            "1.50 'mg' * 2",
            parse(
                r#"[{"type": "Quantity", "value": {"value": 3.00, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}]"#,
            ),
        ),
        (
            "4 days",
            json!([{"type": "Quantity", "value": {"value": 4, "unit": "days"}}]),
        ),
        (
            "@2020-01 + 1 month",
            json!([{"type": "date", "value": "2020-02"}]),
        ),
        (
            "@2020-01-01T10:00:00Z",
            json!([{"type": "dateTime", "value": "2020-01-01T10:00:00Z"}]),
        ),
        ("@T10:30", json!([{"type": "time", "value": "10:30"}])),
        (
            "1.0 + 0.10",
            parse(r#"[{"type": "decimal", "value": 1.10}]"#),
        ),
        (
            "multipleBirth + 1",
            json!([{"type": "integer", "value": 3}]),
        ),
        ("%who & '!'", json!([{"type": "string", "value": "world!"}])),
        ("{}", json!([])),
    ];
    for (expr, want) in cases {
        let got = evaluate_to_json(expr, &p, &[("who".to_string(), json!("world"))]).unwrap();
        assert_eq!(got, want, "{expr}");
    }
    // Decimals keep their digits as written.
    let got = evaluate_to_json("1.0 + 0.10", &p, &[]).unwrap();
    assert_eq!(got[0]["value"].to_string(), "1.10");
}

#[test]
fn errors_become_invalid_operation_outcomes_with_a_position() {
    let p = patient();
    let e = evaluate_to_json("name.given +", &p, &[]).unwrap_err();
    assert_eq!(e.code(), flint_fhir::IssueType::Invalid);
    assert!(e.to_string().contains("position"), "{e}");
    let e = evaluate_to_json("%missing", &p, &[]).unwrap_err();
    assert!(e.to_string().contains("%missing"), "{e}");
    // Hostile nesting and very long chains fail cleanly instead of exhausting the stack.
    let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
    assert_eq!(
        Expression::compile(&deep).unwrap_err().kind,
        ErrorKind::Syntax
    );
    let long = vec!["1"; 5000].join(" + ");
    assert_eq!(
        Expression::compile(&long).unwrap_err().kind,
        ErrorKind::Syntax
    );
    let chain = vec!["name"; 5000].join(".");
    assert_eq!(
        Expression::compile(&chain).unwrap_err().kind,
        ErrorKind::Syntax
    );
    let e = Expression::compile("name.`given").unwrap_err();
    assert_eq!((e.kind, e.position), (ErrorKind::Syntax, 5));
}

#[test]
fn primitive_extensions_and_polymorphic_elements() {
    let p = patient();
    let eval = |expr: &str| -> Vec<Value> {
        Expression::compile(expr)
            .unwrap()
            .evaluate(&p)
            .unwrap()
            .iter()
            .map(Item::to_typed_json)
            .map(|v| v["value"].clone())
            .collect()
    };
    assert_eq!(eval("birthDate.extension('http://hl7.org/fhir/StructureDefinition/patient-birthTime').value"), vec![json!("1974-12-25T14:35:45-05:00")]);
    assert_eq!(
        eval("name.given.where(extension('http://example.org/nick').exists())"),
        vec![json!("James")]
    );
    assert_eq!(eval("multipleBirth"), vec![json!(2)]);
    assert_eq!(eval("multipleBirth is integer"), vec![json!(true)]);
    assert_eq!(eval("birthDate < @1975"), vec![json!(true)]);
    assert_eq!(eval("birthDate = @1974-12-25"), Vec::<Value>::new());
    assert_eq!(eval("birthDate.hasValue()"), vec![json!(true)]);
}

struct Directory(Value);

impl Resolver for Directory {
    fn resolve(&self, reference: &str) -> Option<&Value> {
        (reference == "Practitioner/gp").then_some(&self.0)
    }
}

struct MaritalStatuses;

impl Terminology for MaritalStatuses {
    fn member_of(&self, value_set: &str, system: Option<&str>, code: &str) -> Option<bool> {
        (value_set == "http://hl7.org/fhir/ValueSet/marital-status").then(|| {
            system == Some("http://terminology.hl7.org/CodeSystem/v3-MaritalStatus") && code == "M"
        })
    }
}

#[test]
fn hooks_resolve_references_answer_terminology_and_trace() {
    let p = patient();
    let gp = json!({"resourceType": "Practitioner", "id": "gp", "name": [{"family": "Who"}]});
    let directory = Directory(gp);
    let traced = Mutex::new(Vec::new());
    let tracer = |name: &str, items: &[Item<'_>]| {
        if let Ok(mut t) = traced.lock() {
            t.push((name.to_string(), items.len()));
        }
    };
    let ctx = Context::new()
        .resolver(&directory)
        .terminology(&MaritalStatuses)
        .tracer(&tracer);
    let run = |expr: &str| -> Vec<Value> {
        let e = Expression::compile(expr).unwrap();
        e.evaluate_with(&p, &ctx)
            .unwrap()
            .iter()
            .map(|i| i.to_typed_json()["value"].clone())
            .collect()
    };
    assert_eq!(
        run("managingOrganization.resolve().name"),
        vec![json!("Acme")]
    );
    assert_eq!(
        run("generalPractitioner.resolve().name.family"),
        vec![json!("Who")]
    );
    assert_eq!(
        run("generalPractitioner.resolve() is Practitioner"),
        vec![json!(true)]
    );
    assert_eq!(
        run("maritalStatus.memberOf(%vs-marital-status)"),
        vec![json!(true)]
    );
    assert_eq!(
        run("maritalStatus.memberOf('http://example.org/unknown')"),
        Vec::<Value>::new()
    );
    assert_eq!(run("name.given.trace('given').count()"), vec![json!(2)]);
    assert_eq!(
        traced.lock().unwrap().as_slice(),
        &[("given".to_string(), 2)]
    );
}

#[test]
fn strict_mode_rejects_unknown_elements_and_type_suffixed_choices() {
    let obs =
        json!({"resourceType": "Observation", "status": "final", "valueQuantity": {"value": 1}});
    let strict = Context::new().strict(true);
    for expr in [
        "Observation.valueQuantity",
        "Observation.nope",
        "Patient.name",
    ] {
        let e = Expression::compile(expr).unwrap();
        assert_eq!(
            e.evaluate_with(&obs, &strict).unwrap_err().kind,
            ErrorKind::Semantic,
            "{expr}"
        );
        // Lenient by default: subscription filters write `valueQuantity`.
        assert!(e.evaluate(&obs).is_ok(), "{expr}");
    }
}

#[test]
fn environment_variables_and_fixed_clock() {
    let p = patient();
    let other = json!({"resourceType": "Bundle", "type": "collection"});
    let now = flint_fhirpath::temporal::Temporal::parse_date_time("2024-02-29T23:30:00Z")
        .map(|t| t.0)
        .unwrap();
    let three = Value::from(3);
    let ctx = Context::new()
        .resource(&other)
        .now(now)
        .json_var("n", &three);
    let run = |expr: &str| -> Vec<Value> {
        let e = Expression::compile(expr).unwrap();
        e.evaluate_with(&p, &ctx)
            .unwrap()
            .iter()
            .map(|i| i.to_typed_json()["value"].clone())
            .collect()
    };
    assert_eq!(run("%resource.type"), vec![json!("collection")]);
    assert_eq!(run("%context.id"), vec![json!("p1")]);
    assert_eq!(
        run("%ucum & ' ' & %loinc & ' ' & %sct"),
        vec![json!(
            "http://unitsofmeasure.org http://loinc.org http://snomed.info/sct"
        )]
    );
    assert_eq!(
        run("%ext-patient-birthTime"),
        vec![json!(
            "http://hl7.org/fhir/StructureDefinition/patient-birthTime"
        )]
    );
    assert_eq!(run("today()"), vec![json!("2024-02-29")]);
    assert_eq!(run("today() + 1 year"), vec![json!("2025-02-28")]);
    assert_eq!(run("%n * 2"), vec![json!(6)]);
}
