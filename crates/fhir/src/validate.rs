//! The structural check of a resource against the R4 definitions, run on every write:
//! known elements only, JSON types and primitive formats, array-vs-single cardinality,
//! required elements, no empty values, one choice per `[x]`, contained and nested resources
//! checked as resources. Every problem found is reported, each with its FHIRPath location.
//! Profiles, invariants and bindings are `$validate`'s business, not this module's.

use serde_json::{Map, Value};

use crate::datetime;
use crate::error::{Error, Issue, IssueType};
use crate::model::{Model, TypeKind};

/// Most issues reported for one resource; past that the client has enough to go on.
const MAX_ISSUES: usize = 100;
/// Deepest nesting of elements (JSON objects, a resource counting as one) accepted: FHIR
/// resources are a dozen levels deep at most, and deeper input is refused (400) rather than
/// recursed into, so that no document can exhaust the stack.
pub const MAX_DEPTH: usize = 64;

/// Checks a resource. `resource` must be a JSON object with a known `resourceType`.
///
/// # Errors
/// A 400 error listing every problem found, each with `expression` set (nesting deeper than
/// [`MAX_DEPTH`] included); 500 only when the embedded definitions lack a type.
pub fn validate_resource(model: &Model, resource: &Value) -> Result<(), Error> {
    let mut v = Validator {
        model,
        issues: Vec::new(),
    };
    v.resource(resource, &mut Vec::new(), 0);
    if v.issues.is_empty() {
        return Ok(());
    }
    // Every problem of the input is the client's, `too-costly` nesting included.
    let fault = v.issues.iter().any(|i| i.code == IssueType::Exception);
    Err(Error::from_issues(v.issues).with_status(if fault { 500 } else { 400 }))
}

/// Whether `s` is a valid FHIR `id`.
pub fn is_valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// One step of a location: rendered to FHIRPath text only when a problem is reported, so that
/// valid resources (the common case) allocate no path strings.
#[derive(Clone, Copy)]
enum Seg<'v> {
    Name(&'v str),
    Index(usize),
}

struct Validator<'m> {
    model: &'m Model,
    issues: Vec<Issue>,
}

fn render(path: &[Seg], last: Option<&str>) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Name(n) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(n);
            }
            Seg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    if let Some(last) = last {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(last);
    }
    if out.is_empty() {
        out.push_str("$this");
    }
    out
}

impl<'v> Validator<'_> {
    fn report(&mut self, code: IssueType, path: &[Seg<'v>], message: String) {
        self.report_at(code, path, None, message);
    }

    fn report_at(
        &mut self,
        code: IssueType,
        path: &[Seg<'v>],
        last: Option<&str>,
        message: String,
    ) {
        if self.issues.len() < MAX_ISSUES {
            self.issues
                .push(Issue::error(code, message).at(render(path, last)));
        }
    }

    /// `path` is the location of the resource within its parent (empty at the root).
    fn resource(&mut self, value: &'v Value, path: &mut Vec<Seg<'v>>, depth: usize) {
        let Some(obj) = value.as_object() else {
            self.report(
                IssueType::Structure,
                path,
                "a resource must be a JSON object".into(),
            );
            return;
        };
        let Some(rt) = obj.get("resourceType") else {
            self.report(
                IssueType::Required,
                path,
                "the resource has no resourceType".into(),
            );
            return;
        };
        let Some(rt) = rt.as_str().filter(|t| self.model.is_resource_type(t)) else {
            self.report_at(
                IssueType::Invalid,
                path,
                Some("resourceType"),
                format!("unknown resource type {}", describe(rt)),
            );
            return;
        };
        // Inside a parent the location reads `Bundle.entry[0].resource`; at the root, `Patient`.
        let at_root = path.is_empty();
        if at_root {
            path.push(Seg::Name(rt));
        }
        if let Some(id) = obj.get("id") {
            if !id.as_str().is_some_and(is_valid_id) {
                self.report_at(
                    IssueType::Value,
                    path,
                    Some("id"),
                    format!("invalid resource id {}", describe(id)),
                );
            }
        }
        self.object(rt, obj, path, depth + 1, true);
        if at_root {
            path.pop();
        }
    }

    fn object(
        &mut self,
        type_name: &str,
        obj: &'v Map<String, Value>,
        path: &mut Vec<Seg<'v>>,
        depth: usize,
        is_resource: bool,
    ) {
        if self.too_deep(path, depth) {
            return;
        }
        if obj.is_empty() {
            self.report(
                IssueType::Structure,
                path,
                "empty objects are not allowed".into(),
            );
            return;
        }
        let Some(ty) = self.model.get(type_name) else {
            self.report(
                IssueType::Exception,
                path,
                format!("no definition for type {type_name}"),
            );
            return;
        };
        let mut choices_seen: Vec<(&str, &str)> = Vec::new();
        for (key, value) in obj {
            if is_resource && key == "resourceType" {
                continue;
            }
            path.push(Seg::Name(key));
            self.property(
                type_name,
                &ty.name,
                obj,
                key,
                value,
                path,
                depth,
                is_resource,
                &mut choices_seen,
            );
            path.pop();
        }
        // Required elements (present directly, or for primitives through `_key` alone).
        for element in ty.elements.iter().filter(|e| e.min > 0) {
            let present = if element.is_choice {
                obj.keys().any(|k| {
                    self.model
                        .child(type_name, k.trim_start_matches('_'))
                        .is_some_and(|c| c.element.path == element.path)
                })
            } else {
                obj.contains_key(&element.name) || obj.contains_key(&format!("_{}", element.name))
            };
            if !present {
                let suffix = if element.is_choice { "[x]" } else { "" };
                let name = format!("{}{suffix}", element.name);
                self.report_at(
                    IssueType::Required,
                    path,
                    Some(&name),
                    format!("missing required element '{name}'"),
                );
            }
        }
    }

    /// One property `key` of `obj`; `path` already ends with `key`.
    #[allow(clippy::too_many_arguments)]
    fn property<'c>(
        &mut self,
        type_name: &str,
        type_label: &str,
        obj: &'v Map<String, Value>,
        key: &'v str,
        value: &'v Value,
        path: &mut Vec<Seg<'v>>,
        depth: usize,
        is_resource: bool,
        choices_seen: &mut Vec<(&'c str, &'c str)>,
    ) where
        'v: 'c,
    {
        if let Some(base) = key.strip_prefix('_') {
            self.primitive_companion(type_name, base, value, obj.get(base), path, depth);
            return;
        }
        let Some(child) = self.model.child(type_name, key) else {
            self.report(
                IssueType::Structure,
                path,
                format!("unknown element '{key}' in {type_label}"),
            );
            return;
        };
        if child.element.is_choice {
            if let Some((_, other)) = choices_seen.iter().find(|(n, _)| *n == child.element.name) {
                let message = format!(
                    "only one of {}[x] may be present (also {other})",
                    child.element.name
                );
                self.report(IssueType::Structure, path, message);
            }
            let name: &'c str = choice_name(key, &child.element.name);
            choices_seen.push((name, key));
        }
        let type_code = child.type_code;
        if child.element.is_array() {
            let Some(items) = value.as_array() else {
                self.report(
                    IssueType::Structure,
                    path,
                    format!("'{key}' must be an array"),
                );
                return;
            };
            if items.is_empty() {
                self.report(
                    IssueType::Structure,
                    path,
                    "empty arrays are not allowed".into(),
                );
            }
            if let Some(max) = child.element.max {
                if items.len() > max as usize {
                    self.report(
                        IssueType::Structure,
                        path,
                        format!("'{key}' allows at most {max} items"),
                    );
                }
            }
            let primitive = self.model.is_primitive(type_code);
            for (i, item) in items.iter().enumerate() {
                path.push(Seg::Index(i));
                // A null stands for an item present only through its `_key` companion.
                if item.is_null() && primitive {
                    let companion = obj.get(&format!("_{key}")).and_then(|c| c.get(i));
                    if companion.is_none_or(Value::is_null) {
                        self.report(
                            IssueType::Structure,
                            path,
                            "null items need a matching _ extension".into(),
                        );
                    }
                } else {
                    self.value(type_code, item, path, depth);
                }
                path.pop();
            }
        } else if value.is_array() {
            self.report(
                IssueType::Structure,
                path,
                format!("'{key}' must be a single value, not an array"),
            );
        } else if !(key == "id" && is_resource) {
            // A resource's id was checked as an id already.
            self.value(type_code, value, path, depth);
        }
    }

    /// `_key`: the id and extensions of primitive `key` (an object, or an array of them
    /// parallel to the primitive array).
    fn primitive_companion(
        &mut self,
        owner: &str,
        base: &str,
        value: &'v Value,
        primitive: Option<&Value>,
        path: &mut Vec<Seg<'v>>,
        depth: usize,
    ) {
        let Some(child) = self.model.child(owner, base) else {
            self.report(
                IssueType::Structure,
                path,
                format!("unknown element '_{base}'"),
            );
            return;
        };
        if !self.model.is_primitive(child.type_code) {
            self.report(
                IssueType::Structure,
                path,
                format!("'_{base}' is only allowed for primitive elements"),
            );
            return;
        }
        if child.element.is_array() {
            let Some(items) = value.as_array() else {
                self.report(
                    IssueType::Structure,
                    path,
                    format!("'_{base}' must be an array"),
                );
                return;
            };
            let count = primitive.and_then(Value::as_array).map_or(0, Vec::len);
            if primitive.is_some() && count != items.len() {
                self.report(
                    IssueType::Structure,
                    path,
                    format!("'_{base}' must have as many items as '{base}'"),
                );
            }
            for (i, item) in items.iter().enumerate() {
                if !item.is_null() {
                    path.push(Seg::Index(i));
                    self.element_extensions(item, path, depth);
                    path.pop();
                }
            }
        } else {
            self.element_extensions(value, path, depth);
        }
    }

    fn element_extensions(&mut self, item: &'v Value, path: &mut Vec<Seg<'v>>, depth: usize) {
        match item.as_object() {
            Some(o) => self.object("Element", o, path, depth + 1, false),
            None => self.report(
                IssueType::Structure,
                path,
                "primitive extensions must be objects".into(),
            ),
        }
    }

    fn value(&mut self, type_code: &str, value: &'v Value, path: &mut Vec<Seg<'v>>, depth: usize) {
        if type_code == "Resource" {
            self.resource(value, path, depth);
            return;
        }
        if type_code == crate::definitions::JSON_TYPE {
            self.free_json(value, path, depth);
            return;
        }
        match self.model.get(type_code).map(|t| t.kind) {
            Some(TypeKind::Primitive) => self.primitive(type_code, value, path),
            Some(TypeKind::Complex | TypeKind::Backbone) => match value.as_object() {
                Some(obj) => self.object(type_code, obj, path, depth + 1, false),
                None => self.report(
                    IssueType::Structure,
                    path,
                    format!("expected a {type_code} object"),
                ),
            },
            Some(TypeKind::Resource) => self.resource(value, path, depth),
            None if type_code.starts_with("System.") => self.primitive(type_code, value, path),
            None => self.report(
                IssueType::Exception,
                path,
                format!("no definition for type {type_code}"),
            ),
        }
    }

    /// Reports (and answers true) when `depth` passes the nesting limit.
    fn too_deep(&mut self, path: &[Seg<'v>], depth: usize) -> bool {
        if depth <= MAX_DEPTH {
            return false;
        }
        self.report(
            IssueType::TooCostly,
            path,
            format!("the resource is nested deeper than {MAX_DEPTH} elements"),
        );
        true
    }

    /// Any JSON (Flint's free-form elements): only its nesting is bounded, and no decimal
    /// may exceed what a double holds.
    fn free_json(&mut self, value: &'v Value, path: &mut Vec<Seg<'v>>, depth: usize) {
        if self.too_deep(path, depth) {
            return;
        }
        match value {
            Value::Object(o) => {
                for (k, v) in o {
                    path.push(Seg::Name(k));
                    self.free_json(v, path, depth + 1);
                    path.pop();
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    path.push(Seg::Index(i));
                    self.free_json(v, path, depth + 1);
                    path.pop();
                }
            }
            Value::Number(_) => {
                if let Some(problem) = decimal_problem(value) {
                    self.report(IssueType::Value, path, problem);
                }
            }
            _ => {}
        }
    }

    fn primitive(&mut self, type_code: &str, value: &Value, path: &[Seg<'v>]) {
        let problem = match type_code {
            "boolean" | "System.Boolean" => {
                (!value.is_boolean()).then(|| "expected true or false".to_string())
            }
            "integer" | "unsignedInt" | "positiveInt" | "System.Integer" => {
                integer_problem(type_code, value)
            }
            "decimal" | "System.Decimal" => decimal_problem(value),
            _ => match value.as_str() {
                None => Some(format!("expected a JSON string for a {type_code}")),
                Some(s) => string_problem(type_code, s),
            },
        };
        if let Some(problem) = problem {
            self.report(
                IssueType::Value,
                path,
                format!("invalid {type_code}: {problem}"),
            );
        }
    }
}

/// The name a choice element is tracked by: the element name, borrowed from the JSON key
/// (`value` out of `valueQuantity`) so that it lives as long as the resource.
fn choice_name<'k>(key: &'k str, element_name: &str) -> &'k str {
    &key[..element_name.len().min(key.len())]
}

/// A decimal must be a JSON number whose value a 64-bit float holds: `1e999999` is valid JSON
/// but would become infinity in every index and comparison downstream.
fn decimal_problem(value: &Value) -> Option<String> {
    let Some(n) = value.as_number() else {
        return Some("expected a JSON number for a decimal".into());
    };
    if n.as_f64().is_some_and(f64::is_finite) {
        return None;
    }
    // serde_json keeps the digits but writes an exponent's sign: `1e999999` is `1e+999999`.
    let text = n.to_string().replace("e+", "e");
    Some(format!(
        "the decimal {} is out of the range this server can store",
        truncate(&text, 40)
    ))
}

fn integer_problem(type_code: &str, value: &Value) -> Option<String> {
    let Some(n) = value.as_number() else {
        return Some("expected a JSON number".into());
    };
    let text = n.to_string();
    if text.contains(['.', 'e', 'E']) {
        return Some(format!("{} is not a whole number", truncate(&text, 40)));
    }
    let Ok(v) = text.parse::<i64>() else {
        return Some(format!("{} is out of range", truncate(&text, 40)));
    };
    match type_code {
        _ if v > i64::from(i32::MAX) || v < i64::from(i32::MIN) => {
            Some(format!("{v} is out of range"))
        }
        "unsignedInt" if v < 0 => Some(format!("{v} is negative")),
        "positiveInt" if v < 1 => Some(format!("{v} is not positive")),
        _ => None,
    }
}

fn string_problem(type_code: &str, s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("empty strings are not allowed".into());
    }
    let ok = match type_code {
        "string" | "markdown" | "System.String" => s.len() <= 1024 * 1024,
        "code" => {
            !s.starts_with(char::is_whitespace)
                && !s.ends_with(char::is_whitespace)
                && !s.contains("  ")
                && !s.contains(['\t', '\n', '\r'])
        }
        "id" => is_valid_id(s),
        "uri" | "url" | "canonical" => !s.contains(char::is_whitespace),
        "oid" => s.strip_prefix("urn:oid:").is_some_and(|rest| {
            let mut parts = rest.split('.');
            parts.next().is_some_and(|f| matches!(f, "0" | "1" | "2"))
                && rest.contains('.')
                && parts.all(|p| {
                    !p.is_empty()
                        && p.bytes().all(|b| b.is_ascii_digit())
                        && (p == "0" || !p.starts_with('0'))
                })
        }),
        "uuid" => s.strip_prefix("urn:uuid:").is_some_and(|u| {
            u.len() == 36
                && u.bytes().enumerate().all(|(i, b)| {
                    if matches!(i, 8 | 13 | 18 | 23) {
                        b == b'-'
                    } else {
                        b.is_ascii_hexdigit()
                    }
                })
        }),
        "base64Binary" => is_base64(s),
        "instant" => datetime::parse_instant(s).is_some(),
        "date" | "System.Date" => datetime::parse_date(s).is_some(),
        "dateTime" | "System.DateTime" => datetime::parse_date_time(s).is_some(),
        "time" | "System.Time" => datetime::parse_time(s).is_some(),
        "xhtml" => s.trim_start().starts_with("<div") && s.trim_end().ends_with('>'),
        _ => true,
    };
    (!ok).then(|| format!("'{}' is not a valid {type_code}", truncate(s, 80)))
}

fn is_base64(s: &str) -> bool {
    let mut count = 0usize;
    let mut padding = 0usize;
    for b in s.bytes() {
        match b {
            b' ' | b'\n' | b'\r' | b'\t' => {}
            b'=' => {
                padding += 1;
                count += 1;
            }
            _ if padding > 0 => return false,
            _ if b.is_ascii_alphanumeric() || b == b'+' || b == b'/' => count += 1,
            _ => return false,
        }
    }
    count.is_multiple_of(4) && padding <= 2
}

/// A JSON value as a message shows it: scalars (cut short) as written, containers by kind, as
/// printing them would copy (and recurse into) all they hold.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{}'", truncate(s, 80)),
        Value::Number(n) => truncate(&n.to_string(), 40).to_string(),
        Value::Array(_) => "(an array)".into(),
        Value::Object(_) => "(an object)".into(),
        other => other.to_string(),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::r4;
    use serde_json::json;

    fn problems(resource: Value) -> Vec<String> {
        match validate_resource(r4(), &resource) {
            Ok(()) => Vec::new(),
            Err(e) => e.issues.iter().map(|i| i.expression.join(",")).collect(),
        }
    }

    #[test]
    fn accepts_valid_resources() {
        let ok = [
            json!({"resourceType": "Patient", "id": "p1", "active": true, "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
                   "birthDate": "1974-12-25", "_birthDate": {"extension": [{"url": "http://x", "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
                   "contact": [{"name": {"text": "x"}}], "contained": [{"resourceType": "Organization", "id": "o", "name": "x"}]}),
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "bp"}, "valueQuantity": {"value": 1.0, "unit": "mmHg"},
                   "component": [{"code": {"text": "s"}, "valueInteger": 3}]}),
            json!({"resourceType": "Patient", "name": [{"given": ["a", null], "_given": [null, {"extension": [{"url": "u", "valueString": "x"}]}]}]}),
            json!({"resourceType": "Questionnaire", "status": "draft", "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "string"}]}]}),
            json!({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Patient"}}]}),
        ];
        for r in ok {
            assert_eq!(problems(r.clone()), Vec::<String>::new(), "{r}");
        }
    }

    #[test]
    fn rejects_each_kind_of_bad_input_with_its_location() {
        let cases = [
            (json!({"resourceType": "Patient", "foo": 1}), "Patient.foo"),
            (
                json!({"resourceType": "Patient", "birthDate": "1974-13-01"}),
                "Patient.birthDate",
            ),
            (
                json!({"resourceType": "Patient", "active": "true"}),
                "Patient.active",
            ),
            (
                json!({"resourceType": "Patient", "name": {"family": "x"}}),
                "Patient.name",
            ),
            (
                json!({"resourceType": "Patient", "gender": ["male"]}),
                "Patient.gender",
            ),
            (
                json!({"resourceType": "Patient", "name": []}),
                "Patient.name",
            ),
            (
                json!({"resourceType": "Patient", "name": [{}]}),
                "Patient.name[0]",
            ),
            (
                json!({"resourceType": "Patient", "gender": ""}),
                "Patient.gender",
            ),
            (
                json!({"resourceType": "Patient", "id": "a b"}),
                "Patient.id",
            ),
            (
                json!({"resourceType": "Patient", "multipleBirthInteger": 1.5}),
                "Patient.multipleBirthInteger",
            ),
            (
                json!({"resourceType": "Patient", "deceasedBoolean": true, "deceasedDateTime": "2020"}),
                "Patient.deceasedDateTime",
            ),
            (
                json!({"resourceType": "Observation", "code": {"text": "x"}}),
                "Observation.status",
            ),
            (
                json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueFoo": 1}),
                "Observation.valueFoo",
            ),
            (
                json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "issued": "2020-01-01"}),
                "Observation.issued",
            ),
            (
                json!({"resourceType": "Patient", "photo": [{"data": "not base64!"}]}),
                "Patient.photo[0].data",
            ),
            (
                json!({"resourceType": "Patient", "extension": [{"valueString": "x"}]}),
                "Patient.extension[0].url",
            ),
            (
                json!({"resourceType": "Patient", "contained": [{"resourceType": "Nope"}]}),
                "Patient.contained[0].resourceType",
            ),
            (
                json!({"resourceType": "Patient", "gender": "ma  le"}),
                "Patient.gender",
            ),
            (
                json!({"resourceType": "Patient", "_birthDate": "x"}),
                "Patient._birthDate",
            ),
            (
                json!({"resourceType": "Patient", "communication": [{"language": {"text": "x"}, "preferred": 1}]}),
                "Patient.communication[0].preferred",
            ),
        ];
        for (r, at) in cases {
            let found = problems(r.clone());
            assert!(
                found.iter().any(|p| p == at),
                "{r}: expected an issue at {at}, got {found:?}"
            );
        }
    }

    #[test]
    fn flint_types_validate_with_their_free_form_elements() {
        let app = json!({
            "resourceType": "App", "name": "risk", "status": "active",
            "meta": {"versionId": "1"},
            "operations": [{
                "name": "risk-score", "type": "read", "resourceType": "Patient",
                "parameter": [{"name": "return", "use": "out", "min": 1, "max": "1", "type": "Parameters"}],
                "handler": {"type": "http", "url": "http://127.0.0.1:9/score",
                            "headers": {"X-Key": "k", "nested": {"a": [1, 2.5]}}}
            }],
            "subscriptions": [{"resourceType": "Observation", "events": ["create"],
                "filter": {"code": "8867-4", "valueQuantity.value": {"gt": 140}},
                "handler": {"type": "webhook", "url": "http://127.0.0.1:9/hook"},
                "retryPolicy": {"maxRetries": 3, "backoffSeconds": [1, 5]}}]
        });
        assert_eq!(problems(app.clone()), Vec::<String>::new());
        let mut bad = app;
        bad["operations"][0]["handler"]["colour"] = json!("red");
        bad["subscriptions"][0]["filter"] = serde_json::from_str(r#"{"x": 1e999}"#).unwrap();
        let found = problems(bad);
        assert_eq!(found.len(), 2, "{found:?}");
        let bot = json!({"resourceType": "Bot", "name": "b", "runtimeVersion": "vmcontext",
            "executableCode": {"contentType": "application/javascript", "data": "ZXhwb3J0cw=="}});
        assert_eq!(problems(bot), Vec::<String>::new());
    }

    #[test]
    fn resource_type_is_required_and_known() {
        assert_eq!(problems(json!({"id": "x"})), vec!["$this"]);
        assert_eq!(
            problems(json!({"resourceType": "Foo"})),
            vec!["resourceType"]
        );
        assert_eq!(problems(json!([1])), vec!["$this"]);
    }

    /// Drops a value without recursion (dropping a very deep `Value` would recurse).
    pub(crate) fn dismantle(value: Value) {
        let mut stack = vec![value];
        while let Some(mut v) = stack.pop() {
            match &mut v {
                Value::Array(items) => stack.append(items),
                Value::Object(map) => {
                    let keys: Vec<String> = map.keys().cloned().collect();
                    for k in keys {
                        if let Some(child) = map.shift_remove(&k) {
                            stack.push(child);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    #[test]
    fn decimals_out_of_range_are_refused_where_they_are() {
        let obs: Value = serde_json::from_str(
            r#"{"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                "valueQuantity": {"value": 1e999999, "unit": "mg"},
                "component": [{"code": {"text": "y"}, "valueQuantity": {"value": -1e400}}]}"#,
        )
        .unwrap();
        let e = validate_resource(r4(), &obs).unwrap_err();
        assert_eq!(e.status(), 400);
        assert_eq!(e.issues[0].expression, ["Observation.valueQuantity.value"]);
        assert!(
            e.issues[0]
                .diagnostics
                .contains("the decimal 1e999999 is out of the range this server can store"),
            "{e}"
        );
        assert_eq!(
            e.issues[1].expression,
            ["Observation.component[0].valueQuantity.value"]
        );
        // Tiny and long decimals are values a float holds (as zero, or rounded).
        let ok: Value = serde_json::from_str(
            r#"{"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                "valueQuantity": {"value": 1e-999999}}"#,
        )
        .unwrap();
        assert!(validate_resource(r4(), &ok).is_ok());
    }

    /// `{"key": [inner], ...rest}` without `json!`, which would serialize `inner` (recursively)
    /// to embed it.
    pub(crate) fn wrap(rest: Value, key: &str, inner: Value) -> Value {
        let mut v = rest;
        if let Some(map) = v.as_object_mut() {
            map.insert(key.to_string(), Value::Array(vec![inner]));
        }
        v
    }

    #[test]
    fn deep_documents_are_refused_without_exhausting_the_stack() {
        let result = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let mut outcomes = Vec::new();
                // Extensions in extensions, resources in resources, and JSON the model does
                // not know, each 100,000 deep.
                for shape in 0..3 {
                    let mut v = json!({"url": "http://x", "valueString": "end"});
                    for _ in 0..100_000 {
                        v = match shape {
                            0 => wrap(json!({"url": "http://x"}), "extension", v),
                            1 => wrap(json!({"resourceType": "Patient"}), "contained", v),
                            _ => wrap(json!({}), "a", v),
                        };
                    }
                    let key = if shape == 1 { "contained" } else { "extension" };
                    let resource = wrap(json!({"resourceType": "Patient"}), key, v);
                    let e = validate_resource(r4(), &resource).unwrap_err();
                    outcomes.push((e.status(), e.to_string()));
                    dismantle(resource);
                }
                outcomes
            })
            .unwrap()
            .join()
            .unwrap();
        for (status, text) in result {
            assert_eq!(status, 400, "{text}");
        }
    }
}
