//! The R4 type model: every type and resource with its elements, derived once from the
//! embedded StructureDefinition snapshots. Backbone elements become types of their own, named
//! by their path (`Patient.contact`), so that navigation, validation and FHIRPath typing walk
//! one uniform tree; `contentReference` elements point at those types (`Questionnaire.item`).

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::definitions;

/// What kind of type a [`TypeDef`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeKind {
    Primitive,
    Complex,
    Resource,
    /// An anonymous type declared inline by a resource or type (a `BackboneElement` or an
    /// `Element` with children), named by its path.
    Backbone,
}

/// One element of a type: a property a resource's JSON may carry.
#[derive(Clone, Debug)]
pub struct ElementDef {
    /// The JSON name; for a choice element the name without `[x]` (`value`).
    pub name: String,
    /// The path in the defining StructureDefinition (`Observation.value[x]`).
    pub path: String,
    /// Type codes (`Quantity`, `string`, ...); for a backbone element the backbone's type name.
    /// Elements typed by FHIRPath system types (`Element.id`, primitives' `value`) carry
    /// `System.String` and the like.
    pub types: Vec<String>,
    /// For `Reference`/`canonical` types: the allowed target resource types (empty = any).
    pub target_types: Vec<String>,
    pub min: u32,
    /// `None` means unbounded (`*`).
    pub max: Option<u32>,
    pub is_choice: bool,
    /// Whether the element is a modifier element (`isModifier`).
    pub is_modifier: bool,
    /// Whether `_summary=true` keeps this element (`isSummary`).
    pub is_summary: bool,
}

impl ElementDef {
    /// Whether the element is a JSON array (its maximum cardinality is above one).
    pub fn is_array(&self) -> bool {
        self.max.is_none_or(|m| m > 1)
    }
}

/// A type: primitive, complex datatype, resource or backbone.
#[derive(Clone, Debug)]
pub struct TypeDef {
    pub name: String,
    pub kind: TypeKind,
    /// The base type's name (`DomainResource`, `BackboneElement`, ...).
    pub base: Option<String>,
    pub is_abstract: bool,
    /// Canonical URL of the defining StructureDefinition (none for backbones).
    pub url: Option<String>,
    /// The type's elements, in definition order; inherited ones included.
    pub elements: Vec<ElementDef>,
    index: HashMap<String, usize>,
}

impl TypeDef {
    /// The element with this name (choice elements by their name without `[x]`).
    pub fn element(&self, name: &str) -> Option<&ElementDef> {
        self.index.get(name).map(|&i| &self.elements[i])
    }
}

/// A JSON property resolved against its owning type.
#[derive(Clone, Copy, Debug)]
pub struct Child<'m> {
    pub element: &'m ElementDef,
    /// The concrete type of the property: for `valueQuantity` this is `Quantity`.
    pub type_code: &'m str,
}

/// All types of FHIR R4.
#[derive(Debug)]
pub struct Model {
    types: HashMap<String, TypeDef>,
    resource_types: Vec<String>,
}

/// The R4 model, built on first use from the embedded definitions.
pub fn r4() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| Model::from_structure_definitions(definitions::types()))
}

impl Model {
    /// Builds a model from StructureDefinitions with snapshots.
    pub fn from_structure_definitions(sds: &[Value]) -> Model {
        let mut types = HashMap::new();
        for sd in sds {
            add_structure_definition(&mut types, sd);
        }
        let mut resource_types: Vec<String> = types
            .values()
            .filter(|t: &&TypeDef| t.kind == TypeKind::Resource && !t.is_abstract)
            .map(|t| t.name.clone())
            .collect();
        resource_types.sort();
        Model {
            types,
            resource_types,
        }
    }

    /// The type with this name (`Patient`, `HumanName`, `date`, `Patient.contact`).
    pub fn get(&self, name: &str) -> Option<&TypeDef> {
        self.types.get(name)
    }

    /// Whether `name` is a concrete resource type (one a client may create).
    pub fn is_resource_type(&self, name: &str) -> bool {
        self.types
            .get(name)
            .is_some_and(|t| t.kind == TypeKind::Resource && !t.is_abstract)
    }

    /// The concrete resource types, sorted by name.
    pub fn resource_types(&self) -> &[String] {
        &self.resource_types
    }

    /// Whether the type is a FHIR primitive (`string`, `date`, ...).
    pub fn is_primitive(&self, name: &str) -> bool {
        self.types
            .get(name)
            .is_some_and(|t| t.kind == TypeKind::Primitive)
    }

    /// Whether `ty` is `ancestor` or derives from it (`Patient` is a `DomainResource`, `code`
    /// is a `string`, `Patient.contact` is a `BackboneElement`).
    pub fn is_subtype_of(&self, ty: &str, ancestor: &str) -> bool {
        let mut current = Some(ty);
        let mut depth = 0;
        while let Some(name) = current {
            if name == ancestor {
                return true;
            }
            depth += 1;
            if depth > 16 {
                return false;
            }
            current = self.types.get(name).and_then(|t| t.base.as_deref());
        }
        false
    }

    /// Resolves a JSON property name of an object of type `owner`: plain elements by name,
    /// choice elements by name plus type suffix (`valueQuantity`). A leading `_` (the JSON
    /// form of a primitive's id and extensions) is not handled here.
    pub fn child<'m>(&'m self, owner: &str, key: &str) -> Option<Child<'m>> {
        let ty = self.types.get(owner)?;
        if let Some(element) = ty.element(key) {
            if !element.is_choice {
                let type_code = element.types.first().map(String::as_str).unwrap_or("");
                return Some(Child { element, type_code });
            }
        }
        // A choice element: the longest element-name prefix whose remainder names a type.
        for element in ty.elements.iter().filter(|e| e.is_choice) {
            if let Some(suffix) = key.strip_prefix(element.name.as_str()) {
                if let Some(type_code) = element
                    .types
                    .iter()
                    .find(|t| type_suffix_matches(t, suffix))
                {
                    return Some(Child { element, type_code });
                }
            }
        }
        None
    }
}

/// `Quantity` matches `Quantity`, `dateTime` matches `DateTime`.
fn type_suffix_matches(type_code: &str, suffix: &str) -> bool {
    let mut t = type_code.chars();
    let mut s = suffix.chars();
    match (t.next(), s.next()) {
        (Some(a), Some(b)) if a.to_ascii_uppercase() == b => t.as_str() == s.as_str(),
        _ => false,
    }
}

fn add_structure_definition(types: &mut HashMap<String, TypeDef>, sd: &Value) {
    let Some(name) = sd.get("type").and_then(Value::as_str) else {
        return;
    };
    let kind = match sd.get("kind").and_then(Value::as_str) {
        Some("primitive-type") => TypeKind::Primitive,
        Some("complex-type") => TypeKind::Complex,
        Some("resource") => TypeKind::Resource,
        _ => return,
    };
    let base = sd
        .get("baseDefinition")
        .and_then(Value::as_str)
        .and_then(|u| u.rsplit('/').next())
        .map(str::to_string);
    let elements = sd
        .pointer("/snapshot/element")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut built: Vec<TypeDef> = vec![TypeDef {
        name: name.to_string(),
        kind,
        base,
        is_abstract: sd.get("abstract").and_then(Value::as_bool).unwrap_or(false),
        url: sd.get("url").and_then(Value::as_str).map(str::to_string),
        elements: Vec::new(),
        index: HashMap::new(),
    }];
    let mut by_path: HashMap<String, usize> = HashMap::from([(name.to_string(), 0)]);

    for e in &elements {
        let (Some(path), Some(id)) = (
            e.get("path").and_then(Value::as_str),
            e.get("id").and_then(Value::as_str),
        ) else {
            continue;
        };
        if id.contains(':') {
            continue; // slices constrain, they add no elements
        }
        let Some((parent, last)) = path.rsplit_once('.') else {
            continue;
        };
        let Some(&owner) = by_path.get(parent) else {
            continue;
        };
        let is_choice = last.ends_with("[x]");
        let element_name = last.trim_end_matches("[x]").to_string();
        let mut codes = Vec::new();
        let mut target_types = Vec::new();
        for t in e
            .get("type")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(code) = t.get("code").and_then(Value::as_str) else {
                continue;
            };
            codes.push(normalize_code(code, t, last));
            for p in t
                .get("targetProfile")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(target) = p.as_str().and_then(|u| u.rsplit('/').next()) {
                    target_types.push(target.to_string());
                }
            }
        }
        if let Some(reference) = e.get("contentReference").and_then(Value::as_str) {
            codes = vec![reference.trim_start_matches('#').to_string()];
        }
        // An element typed BackboneElement or Element whose children follow is a backbone.
        let is_backbone =
            codes.len() == 1 && (codes[0] == "BackboneElement" || codes[0] == "Element") && {
                let prefix = format!("{path}.");
                elements.iter().any(|c| {
                    c.get("path")
                        .and_then(Value::as_str)
                        .is_some_and(|p| p.starts_with(&prefix))
                })
            };
        if is_backbone {
            let base = codes[0].clone();
            codes = vec![path.to_string()];
            by_path.insert(path.to_string(), built.len());
            built.push(TypeDef {
                name: path.to_string(),
                kind: TypeKind::Backbone,
                base: Some(base),
                is_abstract: false,
                url: None,
                elements: Vec::new(),
                index: HashMap::new(),
            });
        }
        let max = match e.get("max").and_then(Value::as_str) {
            Some("*") | None => None,
            Some(n) => n.parse().ok(),
        };
        let def = ElementDef {
            name: element_name,
            path: path.to_string(),
            types: codes,
            target_types,
            min: e.get("min").and_then(Value::as_u64).unwrap_or(0) as u32,
            max,
            is_choice,
            is_modifier: e
                .get("isModifier")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            is_summary: e.get("isSummary").and_then(Value::as_bool).unwrap_or(false),
        };
        let owner = &mut built[owner];
        owner.index.insert(def.name.clone(), owner.elements.len());
        owner.elements.push(def);
    }
    for t in built {
        types.insert(t.name.clone(), t);
    }
}

/// Maps FHIRPath system type URLs to FHIR type codes where the definition says which FHIR
/// type is meant (`Element.id` is a `string`, `Extension.url` a `uri`); a primitive's own
/// `value` keeps its system type (`System.String`).
fn normalize_code(code: &str, ty: &Value, last: &str) -> String {
    let Some(system) = code.strip_prefix("http://hl7.org/fhirpath/") else {
        return code.to_string();
    };
    if last != "value" {
        let fhir_type = ty
            .get("extension")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find_map(|x| {
                (x.get("url").and_then(Value::as_str)
                    == Some(
                        "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type",
                    ))
                .then(|| x.get("valueUrl").and_then(Value::as_str))
                .flatten()
            });
        if let Some(t) = fhir_type {
            return t.to_string();
        }
    }
    system.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_and_types_are_known() {
        let m = r4();
        assert!(m.is_resource_type("Patient"));
        assert!(m.is_resource_type("Parameters"));
        assert!(!m.is_resource_type("DomainResource"));
        assert!(!m.is_resource_type("HumanName"));
        // R4's 146 and Flint's Bot and App.
        assert_eq!(m.resource_types().len(), 148);
        assert!(m.is_resource_type("Bot") && m.is_resource_type("App"));
        assert!(m.is_subtype_of("App", "DomainResource"));
        assert!(m.is_primitive("dateTime"));
        assert!(m.is_subtype_of("Patient", "Resource"));
        assert!(m.is_subtype_of("code", "string"));
        assert!(m.is_subtype_of("Patient.contact", "BackboneElement"));
    }

    #[test]
    fn children_resolve_plain_choice_backbone_and_content_references() {
        let m = r4();
        let c = m.child("Patient", "birthDate").unwrap();
        assert_eq!(c.type_code, "date");
        assert!(!c.element.is_array());
        let c = m.child("Patient", "name").unwrap();
        assert!(c.element.is_array());
        assert_eq!(c.type_code, "HumanName");
        let c = m.child("Observation", "valueQuantity").unwrap();
        assert_eq!(
            (c.element.name.as_str(), c.type_code),
            ("value", "Quantity")
        );
        let c = m.child("Observation", "effectiveDateTime").unwrap();
        assert_eq!(c.type_code, "dateTime");
        assert!(m.child("Observation", "valueFoo").is_none());
        assert_eq!(
            m.child("Patient", "contact").unwrap().type_code,
            "Patient.contact"
        );
        assert_eq!(
            m.child("Patient.contact", "name").unwrap().type_code,
            "HumanName"
        );
        let item = m.child("Questionnaire.item", "item").unwrap();
        assert_eq!(item.type_code, "Questionnaire.item");
        assert_eq!(m.child("Patient", "id").unwrap().type_code, "string");
        assert_eq!(m.child("Extension", "url").unwrap().type_code, "uri");
        assert_eq!(m.child("date", "value").unwrap().type_code, "System.Date");
        assert_eq!(
            m.child("Timing", "repeat").unwrap().type_code,
            "Timing.repeat"
        );
        assert_eq!(
            m.child("Timing.repeat", "boundsPeriod").unwrap().type_code,
            "Period"
        );
    }
}
