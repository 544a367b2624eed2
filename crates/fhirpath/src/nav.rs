//! A navigation index over the R4 model, built once: per type, its ancestors and, per element
//! name, the element's type, whether it is primitive, and for choice elements the JSON key of
//! each allowed type. Hashing uses FNV on short names, which is several times cheaper than the
//! model's general-purpose maps on the evaluation hot path.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use flint_fhir::model::{self, TypeKind};

/// A word-at-a-time multiplicative hash (as rustc's FxHash): fast for the short type and
/// element names hashed here, and these keys come from the model, not from clients.
#[derive(Default)]
pub(crate) struct Fnv(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Fnv {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// An element of a type, resolved for navigation.
#[derive(Debug)]
pub(crate) struct ChildInfo {
    /// The element's type (for a choice element: empty, see `choices`).
    pub ty: &'static str,
    pub primitive: bool,
    /// For a choice element: (JSON key such as `valueQuantity`, type, primitive) per type.
    pub choices: Vec<(String, &'static str, bool)>,
}

#[derive(Debug)]
pub(crate) struct TypeIndex {
    pub primitive: bool,
    /// The type itself and its ancestors, nearest first.
    pub ancestors: Vec<&'static str>,
    pub children: FnvMap<&'static str, ChildInfo>,
    /// Choice keys (`valueQuantity`) to the element name (`value`) and the key's type.
    pub choice_keys: FnvMap<String, (&'static str, &'static str, bool)>,
}

fn build() -> FnvMap<&'static str, TypeIndex> {
    let model = model::r4();
    let mut names: Vec<&'static str> = Vec::new();
    // The model exposes types by name; walk from the resource and datatype names it knows.
    for t in model.resource_types() {
        names.push(t.as_str());
    }
    let mut out: FnvMap<&'static str, TypeIndex> = FnvMap::default();
    let mut queue = names;
    for base in [
        "Resource",
        "DomainResource",
        "Element",
        "BackboneElement",
        "Extension",
        "Narrative",
        "Meta",
    ] {
        queue.push(base);
    }
    while let Some(name) = queue.pop() {
        if out.contains_key(name) {
            continue;
        }
        let Some(td) = model.get(name) else { continue };
        let mut ancestors = vec![td.name.as_str()];
        let mut current = td.base.as_deref();
        while let Some(b) = current {
            match model.get(b) {
                Some(bt) if ancestors.len() < 16 => {
                    ancestors.push(bt.name.as_str());
                    current = bt.base.as_deref();
                }
                _ => break,
            }
        }
        let mut children = FnvMap::default();
        let mut choice_keys = FnvMap::default();
        for el in &td.elements {
            if let Some(b) = td.base.as_deref() {
                queue.push(model.get(b).map_or("", |t| t.name.as_str()));
            }
            for t in &el.types {
                if let Some(tt) = model.get(t) {
                    queue.push(tt.name.as_str());
                }
            }
            if el.is_choice {
                let mut choices = Vec::new();
                for t in &el.types {
                    let Some(tt) = model.get(t) else { continue };
                    let mut key = el.name.clone();
                    let mut chars = tt.name.chars();
                    if let Some(first) = chars.next() {
                        key.push(first.to_ascii_uppercase());
                        key.push_str(chars.as_str());
                    }
                    let primitive = tt.kind == TypeKind::Primitive;
                    choice_keys
                        .insert(key.clone(), (el.name.as_str(), tt.name.as_str(), primitive));
                    choices.push((key, tt.name.as_str(), primitive));
                }
                children.insert(
                    el.name.as_str(),
                    ChildInfo {
                        ty: "",
                        primitive: false,
                        choices,
                    },
                );
            } else {
                let declared = el.types.first().and_then(|t| model.get(t));
                // The R4 snapshots type `Resource.id` as a System string; FHIR says `id`.
                let ty = if el.name == "id" && td.kind == TypeKind::Resource {
                    model.get("id").map_or("", |t| t.name.as_str())
                } else {
                    declared.map_or("", |t| t.name.as_str())
                };
                let primitive = model.get(ty).is_some_and(|t| t.kind == TypeKind::Primitive);
                children.insert(
                    el.name.as_str(),
                    ChildInfo {
                        ty,
                        primitive,
                        choices: Vec::new(),
                    },
                );
            }
        }
        out.insert(
            td.name.as_str(),
            TypeIndex {
                primitive: td.kind == TypeKind::Primitive,
                ancestors,
                children,
                choice_keys,
            },
        );
    }
    out
}

/// The navigation index of a type (`Patient`, `HumanName`, `Patient.contact`).
pub(crate) fn type_index(name: &str) -> Option<&'static TypeIndex> {
    static INDEX: OnceLock<FnvMap<&'static str, TypeIndex>> = OnceLock::new();
    INDEX.get_or_init(build).get(name)
}

/// Whether `ty` is `ancestor` or derives from it.
pub(crate) fn is_subtype(ty: &str, ancestor: &str) -> bool {
    ty == ancestor || type_index(ty).is_some_and(|t| t.ancestors.contains(&ancestor))
}

/// Looks up `name` and its primitive extension object `_name` in one pass over the keys.
pub(crate) fn get_with_ext<'v>(
    obj: &'v serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> (Option<&'v serde_json::Value>, Option<&'v serde_json::Value>) {
    if obj.len() > 32 {
        let ext = obj.get(&*crate::eval::underscore(name));
        return (obj.get(name), ext);
    }
    let (mut value, mut ext) = (None, None);
    let n = name.len();
    for (k, v) in obj {
        if k.len() == n {
            if k == name {
                value = Some(v);
            }
        } else if k.len() == n + 1 && k.as_bytes()[0] == b'_' && &k[1..] == name {
            ext = Some(v);
        }
    }
    (value, ext)
}

/// Looks a key up in a JSON object: small objects are scanned, which beats hashing the key.
pub(crate) fn get<'v>(
    obj: &'v serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Option<&'v serde_json::Value> {
    if obj.len() <= 16 {
        obj.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
    } else {
        obj.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_resolves_elements_choices_and_ancestors() {
        let obs = type_index("Observation").unwrap();
        assert_eq!(obs.children["code"].ty, "CodeableConcept");
        assert_eq!(obs.children["id"].ty, "id");
        assert!(obs.children["value"]
            .choices
            .iter()
            .any(|(k, t, _)| k == "valueQuantity" && *t == "Quantity"));
        assert_eq!(
            obs.choice_keys["valueDateTime"],
            ("value", "dateTime", true)
        );
        assert!(is_subtype("Observation", "Resource"));
        assert!(is_subtype("Patient.contact", "BackboneElement"));
        assert!(type_index("Questionnaire.item")
            .unwrap()
            .children
            .contains_key("item"));
        assert!(type_index("date").unwrap().primitive);
    }
}
