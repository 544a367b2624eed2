//! `CodeSystem/$lookup`: what a code system says about one of its codes: the code system's
//! name and version, the display (in `displayLanguage` where a designation has it), the
//! designations, and the properties, among them `parent` and `child` from the hierarchy,
//! `inactive` and `definition`, and each property the concept declares, with its typed
//! value.

use flint_fhir::{Error, Result};
use serde_json::{json, Value};

use crate::coding::Coding;
use crate::compose::entry_of;
use crate::hierarchy::Designation;
use crate::parameters;
use crate::{Source, Terminology};

/// The inputs of `$lookup`.
#[derive(Clone, Debug, Default)]
pub struct LookupRequest {
    /// `code` + `system` (+ `version`), or `coding`.
    pub coding: Coding,
    /// `property`: the properties wanted (`parent`, `child`, `inactive`, `definition`,
    /// `designation`, `lang.X` for the designations in language X, or any property code);
    /// all of them when empty. `name`, `version` and `display` always come back.
    pub properties: Vec<String>,
    /// `displayLanguage`.
    pub display_language: Option<String>,
}

impl LookupRequest {
    /// A lookup of one code with every property.
    pub fn new(coding: Coding) -> LookupRequest {
        LookupRequest {
            coding,
            ..Default::default()
        }
    }
}

/// One `property` of the `$lookup` output.
#[derive(Clone, Debug, PartialEq)]
pub struct LookupProperty {
    pub code: String,
    /// The `value[x]` key (`valueCode`, `valueBoolean`, ...) and value.
    pub value: Option<(String, Value)>,
    /// A human-readable form of the value (the display of a code it names).
    pub description: Option<String>,
}

impl LookupProperty {
    fn new(code: &str, key: &str, value: Value) -> LookupProperty {
        LookupProperty {
            code: code.to_string(),
            value: Some((key.to_string(), value)),
            description: None,
        }
    }
}

/// The result of `$lookup`.
#[derive(Clone, Debug, PartialEq)]
pub struct Lookup {
    /// The code system's name (its `name`, else `title`, else URL).
    pub name: String,
    pub version: Option<String>,
    /// The concept's display (its code when it has none: the output requires one).
    pub display: String,
    pub designations: Vec<Designation>,
    pub properties: Vec<LookupProperty>,
}

impl Lookup {
    /// The output `Parameters`: `name`, `version`, `display`, `designation` (parts `language`,
    /// `use`, `value`) and `property` (parts `code`, `value[x]`, `description`).
    pub fn to_parameters(&self) -> Value {
        let mut entries = vec![parameters::string("name", &self.name)];
        if let Some(v) = &self.version {
            entries.push(parameters::string("version", v));
        }
        entries.push(parameters::string("display", &self.display));
        for d in &self.designations {
            let mut parts = Vec::new();
            if let Some(l) = &d.language {
                parts.push(parameters::code("language", l));
            }
            if let Some(u) = &d.use_ {
                parts.push(parameters::value("use", "valueCoding", u.clone()));
            }
            parts.push(parameters::string("value", &d.value));
            entries.push(parameters::parts("designation", parts));
        }
        for p in &self.properties {
            let mut parts = vec![parameters::code("code", &p.code)];
            if let Some((key, value)) = &p.value {
                parts.push(parameters::value("value", key, value.clone()));
            }
            if let Some(d) = &p.description {
                parts.push(parameters::string("description", d));
            }
            entries.push(parameters::parts("property", parts));
        }
        parameters::resource(entries)
    }
}

impl<S: Source + ?Sized> Terminology<'_, S> {
    /// `CodeSystem/$lookup`.
    ///
    /// # Errors
    /// Invalid without a code and a system; not found for an unknown code system or a code
    /// not in a code system held in full; not supported when the code system's concepts are
    /// not held (or the code is not in the part held).
    pub fn lookup(&self, request: &LookupRequest) -> Result<Lookup> {
        let (system, code) = request.coding.require("$lookup")?;
        let version = request.coding.version.as_deref();
        let h = self.code_system(system, version)?.ok_or_else(|| {
            Error::not_found(match version {
                Some(v) => {
                    format!("the code system '{system}' version '{v}' is not known to this server")
                }
                None => format!("the code system '{system}' is not known to this server"),
            })
        })?;
        let Some(c) = h.concept(code) else {
            // Held only in part (or not at all), the code system cannot say a code is not in it.
            h.require_complete()?;
            return Err(Error::not_found(format!(
                "the code '{code}' is not in the code system '{system}'"
            )));
        };
        let wanted = |name: &str| {
            request.properties.is_empty() || request.properties.iter().any(|p| p == name)
        };
        let language_wanted = |language: Option<&str>| {
            wanted("designation")
                || language.is_some_and(|l| {
                    request.properties.iter().any(|p| {
                        p.strip_prefix("lang.")
                            .is_some_and(|x| x.eq_ignore_ascii_case(l))
                    })
                })
        };
        let entry = entry_of(&h, c);
        let display = request
            .display_language
            .as_deref()
            .and_then(|l| entry.display_in(l))
            .or(c.display.as_deref())
            .unwrap_or(&c.code)
            .to_string();
        let designations = c
            .designations
            .iter()
            .filter(|d| language_wanted(d.language.as_deref()))
            .cloned()
            .collect();
        let mut properties = Vec::new();
        let describe = |code: &str| h.concept(code).and_then(|c| c.display.clone());
        if wanted("parent") {
            for p in h.parents_of(&c.code) {
                properties.push(LookupProperty {
                    description: p.display.clone(),
                    ..LookupProperty::new("parent", "valueCode", json!(p.code))
                });
            }
        }
        if wanted("child") {
            for p in h.children_of(&c.code) {
                properties.push(LookupProperty {
                    description: p.display.clone(),
                    ..LookupProperty::new("child", "valueCode", json!(p.code))
                });
            }
        }
        if wanted("inactive") && c.property("inactive").next().is_none() {
            properties.push(LookupProperty::new(
                "inactive",
                "valueBoolean",
                json!(c.inactive),
            ));
        }
        if wanted("definition") {
            if let Some(d) = &c.definition {
                properties.push(LookupProperty::new("definition", "valueString", json!(d)));
            }
        }
        for p in &c.properties {
            // The hierarchy is reported above, from every way it is written.
            if matches!(p.code.as_str(), "parent" | "child" | "subsumedBy") || !wanted(&p.code) {
                continue;
            }
            let description = match (&p.value, p.key.as_str()) {
                (Value::String(code), "valueCode") => describe(code),
                (Value::Object(coding), "valueCoding") => coding
                    .get("display")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                _ => None,
            };
            properties.push(LookupProperty {
                code: p.code.clone(),
                value: Some((p.key.clone(), p.value.clone())),
                description,
            });
        }
        Ok(Lookup {
            name: h.name.clone().unwrap_or_else(|| h.system.clone()),
            version: h.version.clone(),
            display,
            designations,
            properties,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Core, Resources};
    use flint_fhir::IssueType;

    fn source() -> Resources {
        let mut weight = json!({"code": "weight"});
        // Parsed from text, as a stored resource is, so the decimal keeps its written form.
        weight["valueDecimal"] = serde_json::from_str("1.50").unwrap();
        Resources::new([
            json!({
                "resourceType": "CodeSystem", "url": "http://example.org/cs", "version": "3", "name": "Example",
                "content": "complete",
                "property": [{"code": "weight", "type": "decimal"}, {"code": "related", "type": "code"}],
                "concept": [
                    {"code": "top", "display": "Top", "definition": "The top.", "concept": [
                        {"code": "mid", "display": "Middle",
                         "designation": [{"language": "de", "use": {"system": "http://snomed.info/sct", "code": "900000000000013009"}, "value": "Mitte"},
                                         {"language": "fr", "value": "Milieu"}],
                         "property": [weight, {"code": "related", "valueCode": "top"},
                                      {"code": "status", "valueCode": "retired"}],
                         "concept": [{"code": "low"}]}
                    ]}
                ]
            }),
            json!({"resourceType": "CodeSystem", "url": "http://example.org/part", "content": "example",
                   "concept": [{"code": "e"}]}),
        ])
    }

    fn lookup(
        t: &Terminology<'_, impl Source>,
        system: &str,
        code: &str,
        properties: &[&str],
    ) -> Result<Lookup> {
        t.lookup(&LookupRequest {
            coding: Coding::new(system, code),
            properties: properties.iter().map(|p| p.to_string()).collect(),
            display_language: None,
        })
    }

    fn codes(l: &Lookup) -> Vec<&str> {
        l.properties.iter().map(|p| p.code.as_str()).collect()
    }

    #[test]
    fn everything_about_a_code() {
        let s = source();
        let t = Terminology::new(&s);
        let l = lookup(&t, "http://example.org/cs", "mid", &[]).unwrap();
        assert_eq!(l.name, "Example");
        assert_eq!(l.version.as_deref(), Some("3"));
        assert_eq!(l.display, "Middle");
        assert_eq!(l.designations.len(), 2);
        assert_eq!(
            codes(&l),
            ["parent", "child", "inactive", "weight", "related", "status"]
        );
        assert_eq!(
            l.properties[0].value,
            Some(("valueCode".into(), json!("top")))
        );
        assert_eq!(l.properties[0].description.as_deref(), Some("Top"));
        assert_eq!(
            l.properties[2].value,
            Some(("valueBoolean".into(), json!(true)))
        );
        assert_eq!(
            l.properties[3].value.as_ref().unwrap().1.to_string(),
            "1.50"
        );
        assert_eq!(l.properties[4].description.as_deref(), Some("Top"));
        let p = l.to_parameters();
        assert_eq!(
            p["parameter"][0],
            json!({"name": "name", "valueString": "Example"})
        );
        assert_eq!(
            p["parameter"][2],
            json!({"name": "display", "valueString": "Middle"})
        );
        assert_eq!(
            p["parameter"][3]["part"],
            json!([
                {"name": "language", "valueCode": "de"},
                {"name": "use", "valueCoding": {"system": "http://snomed.info/sct", "code": "900000000000013009"}},
                {"name": "value", "valueString": "Mitte"}
            ])
        );
        assert_eq!(
            p["parameter"][5]["part"],
            json!([{"name": "code", "valueCode": "parent"}, {"name": "value", "valueCode": "top"}, {"name": "description", "valueString": "Top"}])
        );
        let top = lookup(&t, "http://example.org/cs", "top", &[]).unwrap();
        assert_eq!(codes(&top), ["child", "inactive", "definition"]);
        let low = lookup(&t, "http://example.org/cs", "low", &[]).unwrap();
        assert_eq!(low.display, "low", "without a display, the code");
    }

    #[test]
    fn only_the_properties_asked_for() {
        let s = source();
        let t = Terminology::new(&s);
        let l = lookup(&t, "http://example.org/cs", "mid", &["weight", "lang.fr"]).unwrap();
        assert_eq!(codes(&l), ["weight"]);
        assert_eq!(l.designations.len(), 1);
        assert_eq!(l.designations[0].value, "Milieu");
        let mut r = LookupRequest::new(Coding::new("http://example.org/cs", "mid"));
        r.display_language = Some("de".into());
        assert_eq!(t.lookup(&r).unwrap().display, "Mitte");
    }

    #[test]
    fn unknown_codes_and_systems() {
        let s = source();
        let t = Terminology::new(&s);
        assert_eq!(
            lookup(&t, "http://example.org/cs", "nope", &[])
                .unwrap_err()
                .status(),
            404
        );
        assert_eq!(
            lookup(&t, "http://example.org/none", "x", &[])
                .unwrap_err()
                .status(),
            404
        );
        assert!(lookup(&t, "http://example.org/part", "e", &[]).is_ok());
        assert_eq!(
            lookup(&t, "http://example.org/part", "f", &[])
                .unwrap_err()
                .code(),
            IssueType::NotSupported
        );
        let bare = LookupRequest::new(Coding {
            code: Some("x".into()),
            ..Default::default()
        });
        assert_eq!(t.lookup(&bare).unwrap_err().status(), 400);
        let mut versioned =
            LookupRequest::new(Coding::new("http://example.org/cs", "mid").with_version("9"));
        versioned.properties.clear();
        assert_eq!(t.lookup(&versioned).unwrap_err().status(), 404);
    }

    #[test]
    fn core_lookups() {
        let t = Terminology::new(&Core);
        let male = lookup(&t, "http://hl7.org/fhir/administrative-gender", "male", &[]).unwrap();
        assert_eq!(male.name, "AdministrativeGender");
        assert_eq!(male.version.as_deref(), Some("4.0.1"));
        assert_eq!(male.display, "Male");
        assert_eq!(codes(&male), ["inactive", "definition"]);
        let cc = lookup(
            &t,
            "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "CC",
            &["parent", "child"],
        )
        .unwrap();
        assert_eq!(cc.display, "credit card");
        assert_eq!(codes(&cc)[0], "parent");
        assert_eq!(
            cc.properties[0].value,
            Some(("valueCode".into(), json!("_ActAccountCode")))
        );
        assert_eq!(codes(&cc).iter().filter(|c| **c == "child").count(), 5);
        let snomed = lookup(&t, "http://snomed.info/sct", "22298006", &[]).unwrap_err();
        assert_eq!(snomed.code(), IssueType::NotSupported);
    }
}
