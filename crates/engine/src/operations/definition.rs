//! An operation's declaration, read from its `OperationDefinition`: the levels and resource
//! types it is invoked at, whether it changes state, and its parameters in and out. The
//! framework derives routing, `GET` rules, input parsing and both checks from this alone.

use flint_fhir::{Error, Result};
use serde_json::Value;

/// Where an operation is invoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    /// `[base]/$op`
    System,
    /// `[base]/[type]/$op`
    Type,
    /// `[base]/[type]/[id]/$op` (and `…/_history/[vid]/$op`)
    Instance,
}

impl Level {
    pub fn describe(self) -> &'static str {
        match self {
            Level::System => "the system level",
            Level::Type => "the type level",
            Level::Instance => "the instance level",
        }
    }
}

/// One parameter of an operation (`OperationDefinition.parameter`).
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    pub min: u32,
    /// `None` for `*`.
    pub max: Option<u32>,
    /// The FHIR type; `None` for a parameter made of parts.
    pub type_code: Option<String>,
    /// `searchType` of a `string` parameter that carries a search value.
    pub search_type: Option<String>,
    /// The parts of a parameter without a type.
    pub parts: Vec<Param>,
}

impl Param {
    /// Whether the parameter carries a resource (`Resource`, `DomainResource` or a type).
    pub fn is_resource(&self) -> bool {
        self.type_code.as_deref().is_some_and(|t| {
            matches!(t, "Resource" | "DomainResource")
                || flint_fhir::model::r4().is_resource_type(t)
        })
    }

    /// Whether the parameter is a primitive value, as a query string can carry it.
    pub fn is_primitive(&self) -> bool {
        self.type_code
            .as_deref()
            .is_some_and(|t| flint_fhir::model::r4().is_primitive(t))
    }

    /// `0..1`, `1..*`.
    pub(crate) fn cardinality(&self) -> String {
        format!(
            "{}..{}",
            self.min,
            self.max.map_or("*".to_string(), |m| m.to_string())
        )
    }
}

/// An operation's declaration.
#[derive(Clone, Debug)]
pub struct Definition {
    /// The canonical URL (the R4 one where the specification defines the operation).
    pub url: String,
    /// The id it is served under at `/OperationDefinition/[id]`.
    pub id: String,
    /// The code it is invoked by (`$code`).
    pub code: String,
    pub system: bool,
    pub type_level: bool,
    pub instance: bool,
    /// The resource types of the type and instance levels; `Resource` stands for all.
    pub resource: Vec<String>,
    pub affects_state: bool,
    pub inputs: Vec<Param>,
    pub outputs: Vec<Param>,
    /// The `OperationDefinition` itself, as served.
    pub json: Value,
    /// A named query (`kind` `query`): invoked as `[type]?_query=[code]`, never as `$code`.
    pub query: bool,
    /// Custom operations take their input as the caller sent it: a body that is not a
    /// `Parameters` resource (any JSON, or text) is passed on unchecked, and so are query
    /// parameters when the definition declares no inputs.
    pub raw_input: bool,
}

fn bad(message: impl std::fmt::Display, at: &str) -> Error {
    Error::invalid(format!("the OperationDefinition is not usable: {message}"))
        .at(format!("OperationDefinition.{at}"))
}

fn parse_params(list: &[Value], path: &str) -> Result<(Vec<Param>, Vec<Param>)> {
    let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
    for (i, p) in list.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let name = p["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("a parameter has no name", &at))?;
        let min = p["min"]
            .as_u64()
            .ok_or_else(|| bad(format!("parameter '{name}' has no min"), &at))?
            as u32;
        let max = match p["max"].as_str() {
            Some("*") => None,
            Some(m) => Some(
                m.parse::<u32>()
                    .map_err(|_| bad(format!("parameter '{name}' has max '{m}'"), &at))?,
            ),
            None => return Err(bad(format!("parameter '{name}' has no max"), &at)),
        };
        if max.is_some_and(|m| m < min) {
            return Err(bad(format!("parameter '{name}' has max below min"), &at));
        }
        let parts = match p["part"].as_array() {
            Some(parts) => {
                let (ins, outs) = parse_params(parts, &format!("{at}.part"))?;
                // Parts carry the use of their parameter; accept either spelling.
                ins.into_iter().chain(outs).collect()
            }
            None => Vec::new(),
        };
        let type_code = p["type"].as_str().map(str::to_string);
        if type_code.is_none() && parts.is_empty() {
            return Err(bad(
                format!("parameter '{name}' has neither a type nor parts"),
                &at,
            ));
        }
        let param = Param {
            name: name.to_string(),
            min,
            max,
            type_code,
            search_type: p["searchType"].as_str().map(str::to_string),
            parts,
        };
        match p["use"].as_str() {
            Some("in") => inputs.push(param),
            Some("out") => outputs.push(param),
            _ => return Err(bad(format!("parameter '{name}' has no use in|out"), &at)),
        }
    }
    Ok((inputs, outputs))
}

impl Definition {
    /// Reads an `OperationDefinition`.
    ///
    /// # Errors
    /// A definition the framework cannot serve (400 naming the element): no code, no level,
    /// a parameter without name, use, cardinality or type.
    pub fn from_json(json: Value) -> Result<Definition> {
        if json["resourceType"] != "OperationDefinition" {
            return Err(bad("not an OperationDefinition", "resourceType"));
        }
        let code = json["code"]
            .as_str()
            .map(|c| c.trim_start_matches('$'))
            .filter(|c| !c.is_empty())
            .ok_or_else(|| bad("it has no code", "code"))?
            .to_string();
        let flag = |k: &str| json[k].as_bool().unwrap_or(false);
        let (system, type_level, instance) = (flag("system"), flag("type"), flag("instance"));
        if !(system || type_level || instance) {
            return Err(bad("none of system, type and instance is true", "system"));
        }
        let resource: Vec<String> = json["resource"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        if (type_level || instance) && resource.is_empty() {
            return Err(bad(
                "a type or instance operation must name its resource types",
                "resource",
            ));
        }
        let (inputs, outputs) = parse_params(
            json["parameter"].as_array().map_or(&[][..], Vec::as_slice),
            "parameter",
        )?;
        Ok(Definition {
            url: json["url"].as_str().unwrap_or_default().to_string(),
            id: json["id"].as_str().unwrap_or(&code).to_string(),
            code,
            system,
            type_level,
            instance,
            resource,
            affects_state: flag("affectsState"),
            inputs,
            outputs,
            query: json["kind"] == "query",
            json,
            raw_input: false,
        })
    }

    /// The R4 core definition with this id (`Resource-meta`), with `edit` applied to its JSON
    /// first (R4 leaves `affectsState` out: the handler says it).
    ///
    /// # Panics
    /// An id the embedded core package does not have: a programming error in a built-in's
    /// registration, caught by the tests of the built-in catalog.
    pub fn r4(id: &str, edit: impl FnOnce(&mut Value)) -> Definition {
        let mut json = flint_fhir::definitions::operation_definitions()
            .iter()
            .find(|d| d["id"] == id)
            .unwrap_or_else(|| panic!("no R4 OperationDefinition '{id}'"))
            .clone();
        // The narrative is HL7's rendering of the unedited definition; meta is the store's.
        if let Some(o) = json.as_object_mut() {
            o.shift_remove("text");
            o.shift_remove("meta");
        }
        edit(&mut json);
        Definition::from_json(json).unwrap_or_else(|e| panic!("R4 OperationDefinition {id}: {e:?}"))
    }

    /// One of Flint's own definitions: `json` without `resourceType`, `url` and `status`,
    /// which are filled in.
    ///
    /// # Panics
    /// A malformed built-in definition (caught by the tests of the built-in catalog).
    pub fn flint(mut json: Value) -> Definition {
        let id = json["id"]
            .as_str()
            .expect("a Flint definition has an id")
            .to_string();
        let fields = json.as_object_mut().expect("a definition is an object");
        fields.insert("resourceType".into(), "OperationDefinition".into());
        fields.insert(
            "url".into(),
            format!("{}/OperationDefinition/{id}", flint_fhir::CANONICAL).into(),
        );
        fields.entry("status").or_insert_with(|| "active".into());
        fields.entry("kind").or_insert_with(|| "operation".into());
        fields.entry("publisher").or_insert_with(|| "Flint".into());
        let mut ordered = serde_json::Map::new();
        for k in ["resourceType", "id", "url"] {
            if let Some(v) = fields.shift_remove(k) {
                ordered.insert(k.into(), v);
            }
        }
        ordered.extend(std::mem::take(fields));
        Definition::from_json(Value::Object(ordered))
            .unwrap_or_else(|e| panic!("Flint OperationDefinition {id}: {e:?}"))
    }

    /// Whether the operation is offered at `level` on `resource_type` (`None` at the system
    /// level).
    pub fn serves(&self, level: Level, resource_type: Option<&str>) -> bool {
        match level {
            Level::System => self.system,
            Level::Type | Level::Instance => {
                let at_level = if level == Level::Type {
                    self.type_level
                } else {
                    self.instance
                };
                at_level && resource_type.is_some_and(|rt| self.applies_to(rt))
            }
        }
    }

    /// Whether the definition names `resource_type` itself (not through `Resource`).
    pub fn names_type(&self, resource_type: &str) -> bool {
        self.resource.iter().any(|r| r == resource_type)
    }

    fn applies_to(&self, resource_type: &str) -> bool {
        self.resource
            .iter()
            .any(|r| r == resource_type || r == "Resource" || r == "DomainResource")
    }

    /// The input parameter called `name`.
    pub fn input(&self, name: &str) -> Option<&Param> {
        self.inputs.iter().find(|p| p.name == name)
    }

    /// The output parameter called `name`.
    pub fn output(&self, name: &str) -> Option<&Param> {
        self.outputs.iter().find(|p| p.name == name)
    }

    /// Whether `GET` may invoke it: it changes nothing and every input it requires is a
    /// primitive (R4: a server SHALL allow GET when all inputs are primitive; optional
    /// complex inputs, such as `$expand`'s `valueSet`, just cannot be given in a URL).
    pub fn allows_get(&self) -> bool {
        !self.affects_state && self.inputs.iter().all(|p| p.is_primitive() || p.min == 0)
    }

    /// The input a bare resource body stands for: `resource` when it is the only resource
    /// input, or the one input when the operation takes nothing but a resource (`$convert`'s
    /// `input`).
    pub fn bare_resource_input(&self) -> Option<&str> {
        if let [only] = self.inputs.as_slice() {
            if only.is_resource() {
                return Some(&only.name);
            }
        }
        let mut resources = self.inputs.iter().filter(|p| p.is_resource());
        match (resources.next(), resources.next()) {
            (Some(p), None) if p.name == "resource" => Some("resource"),
            _ => None,
        }
    }

    /// Whether the answer is the resource `return` alone, not wrapped in `Parameters`.
    pub fn returns_bare_resource(&self) -> bool {
        matches!(self.outputs.as_slice(), [p] if p.name == "return" && p.is_resource() && p.max == Some(1))
    }

    /// The resource types the definition names at type or instance level (for the
    /// CapabilityStatement): `None` stands for every type.
    pub fn resource_types(&self) -> Option<&[String]> {
        if self
            .resource
            .iter()
            .any(|r| r == "Resource" || r == "DomainResource")
        {
            None
        } else {
            Some(&self.resource)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_r4_definitions() {
        for d in flint_fhir::definitions::operation_definitions() {
            Definition::from_json(d.clone()).unwrap_or_else(|e| panic!("{}: {e:?}", d["id"]));
        }
        let meta = Definition::r4("Resource-meta", |_| {});
        assert!(meta.system && meta.type_level && meta.instance);
        assert!(meta.serves(Level::Instance, Some("Patient")));
        assert!(meta.allows_get());
        assert!(
            !meta.returns_bare_resource(),
            "its return is a Meta, in Parameters"
        );
        let validate = Definition::r4("Resource-validate", |_| {});
        assert_eq!(validate.bare_resource_input(), Some("resource"));
        let convert = Definition::r4("Resource-convert", |_| {});
        assert_eq!(convert.bare_resource_input(), Some("input"));
        assert_eq!(
            Definition::r4("Patient-everything", |_| {}).bare_resource_input(),
            None
        );
        // Its resource is optional (mode delete needs none), so GET is allowed, without it.
        assert!(validate.allows_get());
        let expand = Definition::r4("ValueSet-expand", |_| {});
        assert!(expand.allows_get());
        let add = Definition::r4("Resource-meta-add", |_| {});
        assert!(!add.allows_get(), "it changes state");
        let everything = Definition::r4("Patient-everything", |_| {});
        assert!(everything.serves(Level::Type, Some("Patient")));
        assert!(!everything.serves(Level::Type, Some("Observation")));
        assert!(!everything.serves(Level::System, None));
        assert!(everything.returns_bare_resource());
        assert!(everything.allows_get());
    }

    #[test]
    fn refuses_unusable_definitions() {
        let base = json!({"resourceType": "OperationDefinition", "code": "x", "system": true,
                          "parameter": [{"name": "a", "use": "in", "min": 0, "max": "1", "type": "string"}]});
        assert!(Definition::from_json(base.clone()).is_ok());
        for (k, v) in [
            ("code", json!(null)),
            ("system", json!(false)),
            (
                "parameter",
                json!([{"name": "a", "use": "in", "min": 0, "max": "1"}]),
            ),
            (
                "parameter",
                json!([{"name": "a", "use": "sideways", "min": 0, "max": "1", "type": "string"}]),
            ),
            (
                "parameter",
                json!([{"name": "a", "use": "in", "min": 2, "max": "1", "type": "string"}]),
            ),
        ] {
            let mut d = base.clone();
            d[k] = v;
            let e = Definition::from_json(d).unwrap_err();
            assert_eq!(e.status(), 400);
        }
        let mut typed = base;
        typed["system"] = json!(false);
        typed["type"] = json!(true);
        assert!(
            Definition::from_json(typed).is_err(),
            "type level without resource"
        );
    }
}
