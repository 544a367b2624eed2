//! `_summary` and `_elements` on a resource: the subset the client asked for, marked with the
//! `SUBSETTED` tag as the specification requires.

use flint_fhir::model::Model;
use serde_json::{json, Map, Value};

/// `_summary` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Summary {
    True,
    Text,
    Data,
    Count,
    False,
}

impl Summary {
    /// Parses a `_summary` value.
    ///
    /// # Errors
    /// A value that is not one of the five.
    pub fn parse(value: &str) -> flint_fhir::Result<Summary> {
        Ok(match value {
            "true" => Summary::True,
            "text" => Summary::Text,
            "data" => Summary::Data,
            "count" => Summary::Count,
            "false" => Summary::False,
            other => {
                return Err(flint_fhir::Error::invalid(format!(
                    "_summary must be true, text, data, count or false, not '{other}'"
                )))
            }
        })
    }
}

/// Reduces `resource` per `_summary` / `_elements`.
pub fn apply(
    model: &Model,
    resource: Value,
    summary: Option<Summary>,
    elements: Option<&[String]>,
) -> Value {
    let Value::Object(fields) = resource else {
        return resource;
    };
    let rt = fields
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if model.get(&rt).is_none() {
        return Value::Object(fields);
    }
    let element_of = |key: &str| {
        model
            .child(&rt, key.trim_start_matches('_'))
            .map(|c| c.element)
    };
    let keep: Box<dyn Fn(&str) -> bool> = if let Some(list) = elements {
        // Mandatory elements come along whether asked for or not (R4 search, `_elements`:
        // "Servers SHOULD always return mandatory elements").
        Box::new(move |key: &str| {
            element_of(key).is_some_and(|e| e.min > 0 || list.contains(&e.name))
        })
    } else {
        match summary {
            Some(Summary::True) => {
                Box::new(move |key: &str| element_of(key).is_some_and(|e| e.is_summary))
            }
            Some(Summary::Text) => Box::new(move |key: &str| {
                key == "text" || element_of(key).is_some_and(|e| e.min > 0)
            }),
            Some(Summary::Data) => Box::new(|key: &str| key != "text"),
            _ => return Value::Object(fields),
        }
    };
    let mut out = Map::new();
    for (key, value) in fields {
        if matches!(key.as_str(), "resourceType" | "id" | "meta") || keep(&key) {
            out.insert(key, value);
        }
    }
    let meta = out.entry("meta").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        let tags = meta.entry("tag").or_insert_with(|| json!([]));
        if let Some(tags) = tags.as_array_mut() {
            tags.push(json!({
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "SUBSETTED",
                "display": "Resource encoded in summary mode",
            }));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_elements() {
        let m = flint_fhir::model::r4();
        let p = json!({"resourceType": "Patient", "id": "1", "text": {"status": "generated", "div": "<div/>"},
                       "name": [{"family": "x"}], "photo": [{"url": "u"}], "birthDate": "2000"});
        let s = apply(m, p.clone(), Some(Summary::True), None);
        assert!(s.get("name").is_some() && s.get("photo").is_none() && s.get("text").is_none());
        assert_eq!(s["meta"]["tag"][0]["code"], "SUBSETTED");
        let d = apply(m, p.clone(), Some(Summary::Data), None);
        assert!(d.get("text").is_none() && d.get("photo").is_some());
        let e = apply(m, p.clone(), None, Some(&["birthDate".to_string()]));
        assert_eq!(
            e.as_object().unwrap().keys().cloned().collect::<Vec<_>>(),
            vec!["resourceType", "id", "birthDate", "meta"]
        );
        let o = json!({"resourceType": "Observation", "id": "o", "status": "final",
                       "code": {"text": "x"}, "subject": {"reference": "Patient/1"}, "issued": "2020-01-01T00:00:00Z"});
        let kept = apply(m, o, None, Some(&["subject".to_string()]));
        assert_eq!(
            kept.as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>(),
            vec!["resourceType", "id", "status", "code", "subject", "meta"]
        );
        let t = apply(m, p, Some(Summary::Text), None);
        assert!(t.get("text").is_some() && t.get("name").is_none());
    }
}
