//! An operation's parameters in and out, checked against its definition: inputs from a
//! `Parameters` body, a bare resource or the query string (typed per the definition), checked
//! before the handler runs (400 naming the parameter); outputs checked after it ran (500: a
//! handler's mistake never reaches the client as a wrong answer).

use flint_fhir::{Error, IssueType, Result};
use serde_json::{json, Map, Value};

use super::definition::{Definition, Param};

/// The checked inputs of one invocation: the `parameter` entries of a `Parameters` resource.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    params: Vec<Value>,
}

/// The `value[x]` of a parameter entry, with its type's key (`valueInteger`).
fn value_of(entry: &Value) -> Option<(&str, &Value)> {
    entry
        .as_object()?
        .iter()
        .find(|(k, _)| k.starts_with("value") && k.len() > 5)
        .map(|(k, v)| (k.as_str(), v))
}

impl Inputs {
    pub fn new(params: Vec<Value>) -> Inputs {
        Inputs { params }
    }

    /// The first entry called `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.params.iter().find(|p| p["name"] == name)
    }

    /// The `value[x]` of the first entry called `name`.
    pub fn value(&self, name: &str) -> Option<&Value> {
        self.get(name).and_then(value_of).map(|(_, v)| v)
    }

    /// A string-like value (string, code, uri, id, date, …).
    pub fn str(&self, name: &str) -> Option<&str> {
        self.value(name).and_then(Value::as_str)
    }

    /// Every entry called `name`, in order.
    pub fn entries<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.params.iter().filter(move |p| p["name"] == name)
    }

    /// The `value[x]` of every entry called `name`, in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.params
            .iter()
            .filter(move |p| p["name"] == name)
            .filter_map(|p| value_of(p).map(|(_, v)| v))
    }

    /// Every string-like value of the entries called `name`.
    pub fn strs<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.values(name).filter_map(Value::as_str)
    }

    /// A boolean value (inputs are checked against their type before a handler runs).
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.value(name).and_then(Value::as_bool)
    }

    /// A count or offset: an integer that must not be negative.
    ///
    /// # Errors
    /// A negative value (400 naming the parameter).
    pub fn count(&self, name: &str) -> Result<Option<usize>> {
        match self.value(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    Error::invalid(format!("the parameter '{name}' must not be negative"))
                        .at(name.to_string())
                }),
        }
    }

    /// Takes the resource of the first entry called `name` out of the inputs.
    pub fn take_resource(&mut self, name: &str) -> Option<Value> {
        let entry = self.params.iter_mut().find(|p| p["name"] == name)?;
        entry
            .as_object_mut()?
            .shift_remove("resource")
            .filter(Value::is_object)
    }
}

/// `valueInteger` for `integer`, `valueCodeableConcept` for `CodeableConcept`.
pub fn value_key(type_code: &str) -> String {
    let mut chars = type_code.chars();
    match chars.next() {
        Some(first) => format!("value{}{}", first.to_ascii_uppercase(), chars.as_str()),
        None => "value".into(),
    }
}

/// Parameters that shape the response rather than feed the operation.
pub(crate) fn is_format_param(name: &str) -> bool {
    matches!(name, "_format" | "_pretty")
}

/// A query-string value typed per the definition (`valueInteger: 3`, `valueBoolean: true`).
fn typed_query_value(code: &str, param: &Param, text: &str) -> Result<Value> {
    let type_code = param.type_code.as_deref().unwrap_or("string");
    let bad = |what: &str| {
        Error::invalid(format!(
            "${code}: parameter '{}' must be {what}, not '{text}'",
            param.name
        ))
        .at(param.name.clone())
    };
    let value = match type_code {
        "integer" | "positiveInt" | "unsignedInt" | "integer64" => {
            let n: i64 = text.trim().parse().map_err(|_| bad("an integer"))?;
            json!(n)
        }
        "decimal" => {
            let v: Value = serde_json::from_str(text.trim()).map_err(|_| bad("a decimal"))?;
            if !v.is_number() {
                return Err(bad("a decimal"));
            }
            v
        }
        "boolean" => match text {
            "true" => json!(true),
            "false" => json!(false),
            _ => return Err(bad("true or false")),
        },
        _ => json!(text),
    };
    let mut entry = Map::new();
    entry.insert("name".into(), json!(param.name));
    entry.insert(value_key(type_code), value);
    Ok(Value::Object(entry))
}

/// The inputs of a request: query parameters (typed per the definition) and the body (a
/// `Parameters` resource, or a bare resource when the definition's only resource input is
/// `resource`).
///
/// # Errors
/// A query parameter the definition does not declare or whose value does not parse (400);
/// a body that is not JSON, or neither `Parameters` nor an acceptable bare resource (400).
pub(crate) fn parse_inputs(
    definition: &Definition,
    query: &[(String, String)],
    body: Option<Value>,
) -> Result<Vec<Value>> {
    let code = &definition.code;
    let mut params = Vec::new();
    for (name, text) in query {
        if is_format_param(name) {
            continue;
        }
        let Some(param) = definition.input(name) else {
            return Err(unknown_input(definition, name));
        };
        if !param.is_primitive() {
            return Err(Error::invalid(format!(
                "${code}: parameter '{name}' is a {} and cannot be given in the URL",
                param.type_code.as_deref().unwrap_or("group of parts")
            ))
            .at(name.clone()));
        }
        params.push(typed_query_value(code, param, text)?);
    }
    match body {
        None => {}
        Some(body) if body["resourceType"] == "Parameters" => match body.get("parameter") {
            None => {}
            Some(Value::Array(list)) => params.extend(list.iter().cloned()),
            Some(_) => {
                return Err(Error::invalid("Parameters.parameter must be an array")
                    .at("Parameters.parameter"))
            }
        },
        Some(body) if body.get("resourceType").is_some_and(Value::is_string) => {
            if let Some(name) = definition.bare_resource_input() {
                params.push(json!({"name": name, "resource": body}));
            } else {
                return Err(Error::invalid(format!(
                    "the body of ${code} must be a Parameters resource, not a {}",
                    body["resourceType"].as_str().unwrap_or("")
                ))
                .at("resourceType"));
            }
        }
        Some(_) => {
            return Err(Error::invalid(format!(
                "the body of ${code} must be a Parameters resource"
            )))
        }
    }
    Ok(params)
}

fn unknown_input(definition: &Definition, name: &str) -> Error {
    let known: Vec<&str> = definition.inputs.iter().map(|p| p.name.as_str()).collect();
    let expected = if known.is_empty() {
        "it takes no parameters".to_string()
    } else {
        format!("its parameters are {}", known.join(", "))
    };
    Error::invalid(format!(
        "${} has no parameter '{name}': {expected}",
        definition.code
    ))
    .at(name.to_string())
}

/// Which side of the operation a check is for: inputs are the client's fault (400),
/// outputs the handler's (500).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    In,
    Out,
}

struct Checker<'a> {
    code: &'a str,
    side: Side,
}

impl Checker<'_> {
    fn fail(&self, message: String, at: &str) -> Error {
        match self.side {
            Side::In => Error::invalid(format!("${}: {message}", self.code)).at(at.to_string()),
            Side::Out => Error::new(
                IssueType::Exception,
                format!("the operation ${} gave a bad answer: {message}", self.code),
            )
            .with_status(500),
        }
    }

    /// Checks `entries` against `declared`: names, cardinality, and each entry's type.
    fn check(&self, declared: &[Param], entries: &[Value], path: &str) -> Result<()> {
        for (i, entry) in entries.iter().enumerate() {
            let at = format!("{path}[{i}]");
            let Some(name) = entry.get("name").and_then(Value::as_str) else {
                return Err(self.fail("a parameter has no name".into(), &at));
            };
            let Some(param) = declared.iter().find(|p| p.name == name) else {
                let known: Vec<&str> = declared.iter().map(|p| p.name.as_str()).collect();
                let message = match self.side {
                    Side::In if known.is_empty() => {
                        format!("there is no parameter '{name}': none is taken here")
                    }
                    Side::In => format!(
                        "there is no parameter '{name}'; the parameters are {}",
                        known.join(", ")
                    ),
                    Side::Out => format!("'{name}' is not one of its declared outputs"),
                };
                return Err(self.fail(message, name));
            };
            self.check_entry(param, entry, &at)?;
        }
        for param in declared {
            let n = entries
                .iter()
                .filter(|e| e["name"] == param.name.as_str())
                .count() as u32;
            if n < param.min {
                let message = if n == 0 {
                    format!("parameter '{}' is required", param.name)
                } else {
                    format!(
                        "parameter '{}' needs at least {} values, not {n}",
                        param.name, param.min
                    )
                };
                return Err(self.fail(message, &param.name));
            }
            if param.max.is_some_and(|max| n > max) {
                return Err(self.fail(
                    format!(
                        "parameter '{}' is given {n} times; it takes {}",
                        param.name,
                        param.cardinality()
                    ),
                    &param.name,
                ));
            }
        }
        Ok(())
    }

    fn check_entry(&self, param: &Param, entry: &Value, at: &str) -> Result<()> {
        let name = &param.name;
        let value = value_of(entry);
        let resource = entry.get("resource");
        let parts = entry.get("part");
        let Some(type_code) = param.type_code.as_deref() else {
            // A parameter made of parts.
            let Some(Value::Array(list)) = parts else {
                return Err(self.fail(format!("parameter '{name}' must have parts"), name));
            };
            return self.check(&param.parts, list, &format!("{at}.part"));
        };
        match type_code {
            "Any" | "Type" | "Element" | "DataType" => {
                if value.is_none() && !resource.is_some_and(Value::is_object) {
                    return Err(self.fail(format!("parameter '{name}' has no value"), name));
                }
            }
            _ if param.is_resource() => {
                let Some(resource) = resource.filter(|r| r.is_object()) else {
                    return Err(self.fail(
                        format!("parameter '{name}' must be a resource ({type_code})"),
                        name,
                    ));
                };
                let actual = resource["resourceType"].as_str().unwrap_or("");
                let model = flint_fhir::model::r4();
                let fits = match type_code {
                    "Resource" => model.is_resource_type(actual),
                    "DomainResource" => {
                        model.is_resource_type(actual)
                            && !matches!(actual, "Bundle" | "Binary" | "Parameters")
                    }
                    t => actual == t,
                };
                if !fits {
                    return Err(self.fail(
                        format!(
                            "parameter '{name}' must be a {type_code}, not {}",
                            if actual.is_empty() {
                                "a resource without a type"
                            } else {
                                actual
                            }
                        ),
                        name,
                    ));
                }
            }
            _ => {
                let expected = value_key(type_code);
                match value {
                    Some((key, _)) if key == expected => {}
                    Some((key, _)) => {
                        return Err(self.fail(
                            format!("parameter '{name}' must be given as {expected}, not {key}"),
                            name,
                        ))
                    }
                    None => {
                        return Err(self.fail(
                            format!("parameter '{name}' needs a value ({expected})"),
                            name,
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}

/// Entries without their resources (which the operation itself judges: `$validate` exists to
/// report on invalid ones), for the structural check of the values.
fn without_resources(entries: &[Value]) -> Vec<Value> {
    entries
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if let Some(o) = e.as_object_mut() {
                if o.shift_remove("resource").is_some() && o.len() == 1 {
                    // Keep the entry structurally valid on its own.
                    o.insert("valueString".into(), json!("resource"));
                }
                if let Some(Value::Array(parts)) = o.get("part") {
                    let parts = without_resources(parts);
                    o.insert("part".into(), Value::Array(parts));
                }
            }
            e
        })
        .collect()
}

/// The inputs of a custom operation (its definition says `raw_input`), and its input as
/// sent: a `Parameters` body is read and checked as for any operation; another body (a bare
/// resource, other JSON, text) stands for the bare resource input when the definition has
/// one, and is otherwise passed on as it is, unchecked. Query parameters the definition
/// declares are typed; others pass on as text when it declares no inputs at all.
///
/// # Errors
/// As [`parse_inputs`] and [`check_inputs`] for what is declared.
pub(crate) fn raw_inputs(
    definition: &Definition,
    query: &[(String, String)],
    body: Option<Value>,
) -> Result<(Vec<Value>, super::Raw)> {
    let open = definition.inputs.is_empty();
    let declared: Vec<(String, String)> = query
        .iter()
        .filter(|(name, _)| !is_format_param(name) && !open)
        .cloned()
        .collect();
    let raw_query: Vec<(String, String)> = query
        .iter()
        .filter(|(name, _)| !is_format_param(name))
        .cloned()
        .collect();
    let is_parameters = body
        .as_ref()
        .is_some_and(|b| b["resourceType"] == "Parameters");
    let bare = body
        .as_ref()
        .is_some_and(|b| b.get("resourceType").is_some_and(Value::is_string))
        && definition.bare_resource_input().is_some();
    let entries = if body.is_none() || is_parameters || bare {
        let entries = parse_inputs(definition, &declared, body.clone())?;
        if !open {
            check_inputs(definition, &entries)?;
        }
        entries
    } else {
        parse_inputs(definition, &declared, None)?
    };
    Ok((
        entries,
        super::Raw {
            body,
            query: raw_query,
        },
    ))
}

/// Checks inputs before the handler runs.
///
/// # Errors
/// 400 naming the parameter: unknown, missing, too many, wrong type, wrong resource type,
/// malformed value.
pub(crate) fn check_inputs(definition: &Definition, entries: &[Value]) -> Result<()> {
    Checker {
        code: &definition.code,
        side: Side::In,
    }
    .check(&definition.inputs, entries, "Parameters.parameter")?;
    if entries.is_empty() {
        return Ok(());
    }
    // Values must be well formed for their type (an integer, a date, a Coding's shape).
    let values = json!({"resourceType": "Parameters", "parameter": without_resources(entries)});
    flint_fhir::validate::validate_resource(flint_fhir::model::r4(), &values).map_err(|e| {
        let mut e = e;
        for issue in &mut e.issues {
            // `Parameters.parameter[2].valueDate`: name the parameter.
            let named = issue
                .expression
                .iter()
                .find_map(|x| x.strip_prefix("Parameters.parameter["))
                .and_then(|rest| rest.split(']').next())
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| entries.get(i))
                .and_then(|entry| entry["name"].as_str());
            issue.diagnostics = match named {
                Some(name) => format!(
                    "${}: parameter '{name}': {}",
                    definition.code, issue.diagnostics
                ),
                None => format!("${}: {}", definition.code, issue.diagnostics),
            };
        }
        e.with_status(400)
    })
}

/// Checks a handler's outputs and shapes the answer: the resource `return` alone when it is
/// the definition's only output, otherwise a `Parameters` resource.
///
/// # Errors
/// 500 with a clear message when the outputs do not fit the definition.
pub(crate) fn answer(definition: &Definition, mut entries: Vec<Value>) -> Result<Value> {
    if definition.raw_input && definition.outputs.is_empty() {
        // A custom operation that declares no outputs answers what its code gives.
        if entries.is_empty() {
            return Ok(json!({"resourceType": "Parameters"}));
        }
        return Ok(json!({"resourceType": "Parameters", "parameter": entries}));
    }
    Checker {
        code: &definition.code,
        side: Side::Out,
    }
    .check(&definition.outputs, &entries, "Parameters.parameter")?;
    if definition.returns_bare_resource() {
        if let Some(resource) = entries
            .pop()
            .and_then(|mut e| e.as_object_mut().and_then(|o| o.shift_remove("resource")))
        {
            return Ok(resource);
        }
    }
    Ok(json!({"resourceType": "Parameters", "parameter": entries}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn everything() -> Definition {
        Definition::r4("Patient-everything", |_| {})
    }

    #[test]
    fn query_values_are_typed_per_the_definition() {
        let d = everything();
        let q = vec![
            ("_count".to_string(), "10".to_string()),
            ("start".to_string(), "2020-01-01".to_string()),
            ("_format".to_string(), "json".to_string()),
        ];
        let params = parse_inputs(&d, &q, None).unwrap();
        assert_eq!(params[0], json!({"name": "_count", "valueInteger": 10}));
        assert_eq!(
            params[1],
            json!({"name": "start", "valueDate": "2020-01-01"})
        );
        check_inputs(&d, &params).unwrap();
        let bad = vec![("_count".to_string(), "ten".to_string())];
        let e = parse_inputs(&d, &bad, None).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(format!("{e}").contains("_count"));
        let unknown = vec![("bogus".to_string(), "1".to_string())];
        assert!(format!("{}", parse_inputs(&d, &unknown, None).unwrap_err()).contains("bogus"));
    }

    #[test]
    fn inputs_are_checked() {
        let d = everything();
        let check = |params: Value| check_inputs(&d, params.as_array().unwrap());
        assert!(check(json!([{"name": "_count", "valueInteger": 5}])).is_ok());
        for (params, mentions) in [
            (
                json!([{"name": "_count", "valueString": "5"}]),
                "valueInteger",
            ),
            (
                json!([{"name": "_count", "valueInteger": 5}, {"name": "_count", "valueInteger": 6}]),
                "_count",
            ),
            (json!([{"name": "nope", "valueInteger": 5}]), "nope"),
            (
                json!([{"name": "start", "valueDate": "not a date"}]),
                "start",
            ),
            (json!([{"valueDate": "2020"}]), "no name"),
        ] {
            let e = check(params).unwrap_err();
            assert_eq!(e.status(), 400, "{e}");
            assert!(
                format!("{e}").contains(mentions),
                "{e} should mention {mentions}"
            );
        }
        let v = Definition::r4("Resource-validate", |_| {});
        // A bare resource is the input `resource`, and is not judged here.
        let params = parse_inputs(
            &v,
            &[],
            Some(json!({"resourceType": "Patient", "gender": 7})),
        )
        .unwrap();
        check_inputs(&v, &params).unwrap();
        let e = check_inputs(&v, &[json!({"name": "resource", "valueString": "x"})]).unwrap_err();
        assert!(format!("{e}").contains("resource"));
        let add = Definition::r4("Resource-meta-add", |_| {});
        assert!(check_inputs(&add, &[])
            .unwrap_err()
            .to_string()
            .contains("required"));
        let e = parse_inputs(&add, &[], Some(json!({"resourceType": "Patient"}))).unwrap_err();
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn outputs_are_checked_and_shaped() {
        let d = everything();
        let bundle = json!({"resourceType": "Bundle", "type": "searchset"});
        assert_eq!(
            answer(
                &d,
                vec![json!({"name": "return", "resource": bundle.clone()})]
            )
            .unwrap(),
            bundle
        );
        for bad in [
            vec![],
            vec![json!({"name": "return", "resource": {"resourceType": "Patient"}})],
            vec![json!({"name": "other", "valueString": "x"})],
        ] {
            let e = answer(&d, bad).unwrap_err();
            assert_eq!(e.status(), 500);
            assert!(format!("{e}").contains("$everything"));
        }
        let meta = Definition::r4("Resource-meta", |_| {});
        let out = answer(&meta, vec![json!({"name": "return", "valueMeta": {}})]).unwrap();
        assert_eq!(out["resourceType"], "Parameters");
    }
}
