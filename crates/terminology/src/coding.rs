//! The inputs most operations share: a [`Coding`] (system, version, code, display), read from
//! a `Coding` or `CodeableConcept` JSON value or made from separate parameters, and
//! [`Definition`], how a CodeSystem, ValueSet or ConceptMap is named (by canonical URL, or
//! given whole).

use flint_fhir::{Error, Result};
use serde_json::{Map, Value};

use crate::json::split_canonical;
use crate::source::Resource;

/// A code with its system, as the operations take it: from `code` + `system` (+ `version`,
/// `display`) parameters, or from a `Coding`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coding {
    pub system: Option<String>,
    pub version: Option<String>,
    pub code: Option<String>,
    pub display: Option<String>,
}

impl Coding {
    /// A coding of `code` in `system`.
    pub fn new(system: impl Into<String>, code: impl Into<String>) -> Coding {
        Coding {
            system: Some(system.into()),
            code: Some(code.into()),
            ..Default::default()
        }
    }

    /// The same coding with a display.
    pub fn with_display(mut self, display: impl Into<String>) -> Coding {
        self.display = Some(display.into());
        self
    }

    /// The same coding with a code system version.
    pub fn with_version(mut self, version: impl Into<String>) -> Coding {
        self.version = Some(version.into());
        self
    }

    /// Reads a `Coding` JSON value.
    ///
    /// # Errors
    /// Invalid (400) when it is not an object or one of its elements is not a string.
    pub fn from_json(value: &Value) -> Result<Coding> {
        let Some(object) = value.as_object() else {
            return Err(Error::invalid("a Coding must be a JSON object"));
        };
        let field = |key: &str| -> Result<Option<String>> {
            match object.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(Error::invalid(format!("Coding.{key} must be a string"))),
            }
        };
        Ok(Coding {
            system: field("system")?,
            version: field("version")?,
            code: field("code")?,
            display: field("display")?,
        })
    }

    /// The codings of a `CodeableConcept` JSON value, in order.
    ///
    /// # Errors
    /// Invalid (400) when it is not an object, its `coding` is not an array, or a coding is
    /// not valid (see [`Coding::from_json`]).
    pub fn from_codeable_concept(value: &Value) -> Result<Vec<Coding>> {
        let Some(object) = value.as_object() else {
            return Err(Error::invalid("a CodeableConcept must be a JSON object"));
        };
        match object.get("coding") {
            None => Ok(Vec::new()),
            Some(Value::Array(codings)) => codings.iter().map(Coding::from_json).collect(),
            Some(_) => Err(Error::invalid("CodeableConcept.coding must be an array")),
        }
    }

    /// The coding as FHIR JSON, elements in their R4 order.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        for (key, value) in [
            ("system", &self.system),
            ("version", &self.version),
            ("code", &self.code),
            ("display", &self.display),
        ] {
            if let Some(v) = value {
                out.insert(key.into(), Value::String(v.clone()));
            }
        }
        Value::Object(out)
    }

    /// `system#code` for messages.
    pub(crate) fn label(&self) -> String {
        match (&self.system, &self.code) {
            (Some(s), Some(c)) => format!("{s}#{c}"),
            (None, Some(c)) => c.clone(),
            (Some(s), None) => format!("{s}#"),
            (None, None) => "(no code)".into(),
        }
    }

    /// The system and code, or an invalid-input error naming `what` is missing.
    pub(crate) fn require(&self, what: &str) -> Result<(&str, &str)> {
        let code = self
            .code
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| Error::invalid(format!("{what}: a code is needed")))?;
        let system = self
            .system
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{what}: the code '{code}' needs a system to be understood"
                ))
            })?;
        Ok((system, code))
    }
}

/// How an operation names the CodeSystem, ValueSet or ConceptMap it works on.
#[derive(Clone, Debug)]
pub enum Definition {
    /// A canonical URL (or a reference the [`crate::Source`] understands), with an optional
    /// version.
    Url {
        url: String,
        version: Option<String>,
    },
    /// The resource itself: a `valueSet`/`codeSystem`/`conceptMap` parameter, or the resource
    /// an instance-level operation was invoked on.
    Resource(Resource),
}

impl Definition {
    /// A definition named by canonical URL; a `|version` suffix becomes the version.
    pub fn url(canonical: &str) -> Definition {
        let (url, version) = split_canonical(canonical);
        Definition::Url {
            url: url.to_string(),
            version: version.map(str::to_string),
        }
    }

    /// A definition named by URL and an explicit version (`valueSetVersion`, ...), which wins
    /// over a `|version` suffix of the URL.
    pub fn url_version(canonical: &str, version: Option<&str>) -> Definition {
        match (Definition::url(canonical), version) {
            (Definition::Url { url, .. }, Some(v)) => Definition::Url {
                url,
                version: Some(v.to_string()),
            },
            (d, _) => d,
        }
    }

    /// A definition given as a resource.
    pub fn resource(resource: impl Into<Resource>) -> Definition {
        Definition::Resource(resource.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn codings_read_and_write() {
        let c =
            Coding::from_json(&json!({"system": "s", "code": "c", "userSelected": true})).unwrap();
        assert_eq!(c, Coding::new("s", "c"));
        assert_eq!(c.to_json(), json!({"system": "s", "code": "c"}));
        assert!(Coding::from_json(&json!({"code": 1})).is_err());
        assert!(Coding::from_json(&json!("s|c")).is_err());
        let cc = Coding::from_codeable_concept(
            &json!({"coding": [{"code": "a"}, {"code": "b"}], "text": "t"}),
        )
        .unwrap();
        assert_eq!(cc.len(), 2);
        assert!(Coding::from_codeable_concept(&json!({"coding": {}})).is_err());
        assert!(Coding::from_codeable_concept(&json!({"text": "only"}))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_code_needs_a_system() {
        let bare = Coding {
            code: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(bare.require("lookup").unwrap_err().status(), 400);
        assert!(Coding::default().require("lookup").is_err());
        assert_eq!(Coding::new("s", "x").require("lookup").unwrap(), ("s", "x"));
    }

    #[test]
    fn definitions_split_versions() {
        match Definition::url_version("http://v|1", Some("2")) {
            Definition::Url { url, version } => {
                assert_eq!(url, "http://v");
                assert_eq!(version.as_deref(), Some("2"));
            }
            Definition::Resource(_) => unreachable!("a URL stays a URL"),
        }
    }
}
