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

/// The id of a type in the navigation index; [`UNKNOWN`] for types outside the model.
pub type TypeId = u32;

/// The id of a type the index does not know.
pub const UNKNOWN: TypeId = u32::MAX;

/// An element of a type, resolved for navigation.
#[derive(Debug)]
pub(crate) struct ChildInfo {
    /// The element's type (for a choice element: empty, see `choice`).
    pub ty: &'static str,
    pub tid: TypeId,
    pub primitive: bool,
    pub choice: bool,
}

/// A choice key (`valueQuantity`): its element name (`value`), type, type id and primitiveness.
pub(crate) type ChoiceKey = (&'static str, &'static str, TypeId, bool);

#[derive(Debug)]
pub(crate) struct TypeIndex {
    pub primitive: bool,
    /// The System type a primitive maps to.
    pub prim: Option<crate::value::PrimKind>,
    /// Whether the type is a Quantity (or a profile of it: Age, Duration...).
    pub quantity: bool,
    /// The type itself and its ancestors, nearest first.
    pub ancestors: Vec<&'static str>,
    pub children: FnvMap<&'static str, ChildInfo>,
    pub choice_keys: FnvMap<String, ChoiceKey>,
}

pub(crate) struct Nav {
    types: Vec<TypeIndex>,
    by_name: FnvMap<&'static str, TypeId>,
}

fn build() -> Nav {
    let model = model::r4();
    // First pass: every type reachable from the resources and common bases gets an id.
    let mut names: Vec<&'static str> = Vec::new();
    let mut by_name: FnvMap<&'static str, TypeId> = FnvMap::default();
    let mut queue: Vec<&'static str> = model.resource_types().iter().map(String::as_str).collect();
    queue.extend([
        "Resource",
        "DomainResource",
        "Element",
        "BackboneElement",
        "Extension",
        "Narrative",
        "Meta",
    ]);
    while let Some(name) = queue.pop() {
        let Some(td) = model.get(name) else { continue };
        let name = td.name.as_str();
        if by_name.contains_key(name) {
            continue;
        }
        by_name.insert(name, names.len() as TypeId);
        names.push(name);
        if let Some(b) = td.base.as_deref().and_then(|b| model.get(b)) {
            queue.push(b.name.as_str());
        }
        for el in &td.elements {
            for t in &el.types {
                if let Some(tt) = model.get(t) {
                    queue.push(tt.name.as_str());
                }
            }
        }
    }
    let id_of = |name: &str| by_name.get(name).copied().unwrap_or(UNKNOWN);
    let is_primitive = |name: &str| {
        model
            .get(name)
            .is_some_and(|t| t.kind == TypeKind::Primitive)
    };
    // Second pass: each type's ancestors and children, with the children's ids.
    let mut types = Vec::with_capacity(names.len());
    for name in &names {
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
            if el.is_choice {
                for t in &el.types {
                    let Some(tt) = model.get(t) else { continue };
                    let mut key = el.name.clone();
                    let mut chars = tt.name.chars();
                    if let Some(first) = chars.next() {
                        key.push(first.to_ascii_uppercase());
                        key.push_str(chars.as_str());
                    }
                    let ty = tt.name.as_str();
                    choice_keys.insert(key, (el.name.as_str(), ty, id_of(ty), is_primitive(ty)));
                }
                children.insert(
                    el.name.as_str(),
                    ChildInfo {
                        ty: "",
                        tid: UNKNOWN,
                        primitive: false,
                        choice: true,
                    },
                );
            } else {
                // The R4 snapshots type `Resource.id` as a System string; FHIR says `id`.
                let ty = if el.name == "id" && td.kind == TypeKind::Resource {
                    model.get("id").map_or("", |t| t.name.as_str())
                } else {
                    el.types
                        .first()
                        .and_then(|t| model.get(t))
                        .map_or("", |t| t.name.as_str())
                };
                children.insert(
                    el.name.as_str(),
                    ChildInfo {
                        ty,
                        tid: id_of(ty),
                        primitive: is_primitive(ty),
                        choice: false,
                    },
                );
            }
        }
        types.push(TypeIndex {
            primitive: td.kind == TypeKind::Primitive,
            prim: crate::value::prim_kind(name),
            quantity: crate::value::is_quantity_type(name),
            ancestors,
            children,
            choice_keys,
        });
    }
    Nav { types, by_name }
}

fn nav() -> &'static Nav {
    static INDEX: OnceLock<Nav> = OnceLock::new();
    INDEX.get_or_init(build)
}

/// The id of a type by name (`Patient`, `HumanName`, `Patient.contact`).
pub fn type_id(name: &str) -> TypeId {
    nav().by_name.get(name).copied().unwrap_or(UNKNOWN)
}

/// The navigation index of a type id.
pub(crate) fn by_id(id: TypeId) -> Option<&'static TypeIndex> {
    nav().types.get(id as usize)
}

/// The navigation index of a type by name.
#[cfg(test)]
pub(crate) fn type_index(name: &str) -> Option<&'static TypeIndex> {
    by_id(type_id(name))
}

/// Whether the type with this id is `ancestor` or derives from it.
pub(crate) fn id_is_subtype(id: TypeId, ty: &str, ancestor: &str) -> bool {
    ty == ancestor || by_id(id).is_some_and(|t| t.ancestors.contains(&ancestor))
}

/// Looks up `name` and its primitive extension object `_name` in one pass over the keys.
pub(crate) fn get_with_ext<'v>(
    obj: &'v serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> (Option<&'v serde_json::Value>, Option<&'v serde_json::Value>) {
    if obj.len() > 48 {
        let ext = obj.get(&*crate::eval::underscore(name));
        return (obj.get(name), ext);
    }
    let (mut value, mut ext) = (None, None);
    let n = name.len();
    let first = name.as_bytes().first().copied();
    for (k, v) in obj {
        let kb = k.as_bytes();
        // Length and first byte reject almost every other key without a memcmp call.
        if kb.len() == n {
            if kb.first().copied() == first && k == name {
                value = Some(v);
            }
        } else if kb.len() == n + 1
            && kb[0] == b'_'
            && kb.get(1).copied() == first
            && &k[1..] == name
        {
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
    if obj.len() <= 24 {
        let first = key.as_bytes().first().copied();
        obj.iter()
            .find(|(k, _)| {
                k.len() == key.len() && k.as_bytes().first().copied() == first && k.as_str() == key
            })
            .map(|(_, v)| v)
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
        assert_eq!(obs.children["code"].tid, type_id("CodeableConcept"));
        assert_eq!(obs.children["id"].ty, "id");
        assert!(obs.children["value"].choice);
        let q = obs.choice_keys["valueQuantity"];
        assert_eq!((q.0, q.1, q.3), ("value", "Quantity", false));
        assert_eq!(obs.choice_keys["valueDateTime"].1, "dateTime");
        assert!(id_is_subtype(
            type_id("Observation"),
            "Observation",
            "Resource"
        ));
        assert!(id_is_subtype(
            type_id("Patient.contact"),
            "Patient.contact",
            "BackboneElement"
        ));
        assert!(type_index("Questionnaire.item")
            .unwrap()
            .children
            .contains_key("item"));
        assert!(type_index("date").unwrap().primitive);
    }
}
