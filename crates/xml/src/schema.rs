//! The XML view of the R4 model, built once: for every type, its elements in definition order
//! with their XML representation (element, `id`/`url` attribute) and, for every JSON property
//! or XML element name (`valueQuantity` included), the element and type it stands for. Types
//! are referred to by index, so that neither direction hashes a type name per element.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use flint_fhir::model::{self, Model, TypeKind};

/// Index of a type in [`Schema::types`].
pub(crate) type TypeId = usize;

/// A primitive type as far as XML and JSON differ about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scalar {
    Boolean,
    Integer,
    PositiveInt,
    UnsignedInt,
    Decimal,
    /// Every other primitive: a JSON string.
    String,
    /// `Narrative.div`: XHTML markup, a string in JSON.
    Xhtml,
}

impl Scalar {
    fn of(type_code: &str) -> Scalar {
        match type_code {
            "boolean" => Scalar::Boolean,
            "integer" => Scalar::Integer,
            "positiveInt" => Scalar::PositiveInt,
            "unsignedInt" => Scalar::UnsignedInt,
            "decimal" => Scalar::Decimal,
            "xhtml" => Scalar::Xhtml,
            _ => Scalar::String,
        }
    }

    /// The FHIR type name, for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scalar::Boolean => "boolean",
            Scalar::Integer => "integer",
            Scalar::PositiveInt => "positiveInt",
            Scalar::UnsignedInt => "unsignedInt",
            Scalar::Decimal => "decimal",
            Scalar::String => "string",
            Scalar::Xhtml => "xhtml",
        }
    }
}

/// What the value of an element is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValueType {
    Primitive(Scalar),
    /// A complex datatype or backbone element.
    Complex(TypeId),
    /// A resource, wrapped in its element in XML.
    Resource,
}

/// How an element appears in XML.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Repr {
    Element,
    /// `Element.id` of a non-resource type: the `id` attribute.
    IdAttribute,
    /// `Extension.url`: the `url` attribute.
    UrlAttribute,
}

/// One type of a (possibly choice) element, with its property name.
#[derive(Debug)]
pub(crate) struct Variant {
    /// The JSON property and XML element name: `valueQuantity`, or the element name.
    pub key: Box<str>,
    /// The JSON name of a primitive's companion: `_valueString`.
    pub companion_key: Box<str>,
    pub value: ValueType,
}

#[derive(Debug)]
pub(crate) struct Element {
    /// The element name (choice elements without `[x]`).
    pub name: Box<str>,
    pub is_array: bool,
    /// A choice element (`value[x]`): its property names carry a type suffix.
    pub is_choice: bool,
    pub repr: Repr,
    pub variants: Vec<Variant>,
}

/// Where a property name points: an element of the type and one of its variants.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    pub element: u16,
    pub variant: u16,
}

#[derive(Debug)]
pub(crate) struct TypeInfo {
    pub name: Box<str>,
    pub kind: TypeKind,
    /// The elements in definition order.
    pub elements: Vec<Element>,
    keys: HashMap<Box<str>, Slot, BuildHasherDefault<Fnv>>,
}

impl TypeInfo {
    /// Resolves a JSON property name (without a leading `_`) or an XML element name.
    pub(crate) fn slot(&self, key: &str) -> Option<(Slot, &Element, &Variant)> {
        let slot = *self.keys.get(key)?;
        let element = self.elements.get(usize::from(slot.element))?;
        let variant = element.variants.get(usize::from(slot.variant))?;
        Some((slot, element, variant))
    }

    /// Finds the slot of a property name like [`TypeInfo::slot`], trying the elements from
    /// `*cursor` on first, in definition order, where the next property of an object usually
    /// is, and moves the cursor to the element found. Properties out of order, and choice
    /// elements, fall back to the hash lookup.
    pub(crate) fn find_from(&self, key: &str, cursor: &mut usize) -> Option<Slot> {
        let key_bytes = key.as_bytes();
        let mut found = None;
        for (i, element) in self.elements.iter().enumerate().skip(*cursor) {
            let name = element.name.as_bytes();
            if element.is_choice {
                if key_bytes.len() > name.len() && key_bytes.starts_with(name) {
                    break;
                }
            } else if name == key_bytes {
                found = u16::try_from(i).ok().map(|element| Slot {
                    element,
                    variant: 0,
                });
                break;
            }
        }
        let slot = found.or_else(|| self.keys.get(key).copied())?;
        *cursor = usize::from(slot.element);
        Some(slot)
    }

    /// The element and variant of a slot found by [`TypeInfo::slot`] earlier.
    pub(crate) fn variant(&self, slot: Slot) -> Option<(&Element, &Variant)> {
        let element = self.elements.get(usize::from(slot.element))?;
        let variant = element.variants.get(usize::from(slot.variant))?;
        Some((element, variant))
    }
}

/// The XML view of every type reachable from the R4 resources.
#[derive(Debug)]
pub(crate) struct Schema {
    pub types: Vec<TypeInfo>,
    resources: HashMap<Box<str>, TypeId, BuildHasherDefault<Fnv>>,
    /// `Extension`, the type of a primitive's extensions.
    pub extension: TypeId,
}

impl Schema {
    /// The R4 schema, built on first use.
    pub(crate) fn r4() -> &'static Schema {
        static SCHEMA: OnceLock<Schema> = OnceLock::new();
        SCHEMA.get_or_init(|| Schema::build(model::r4()))
    }

    /// The concrete resource type of this name.
    pub(crate) fn resource(&self, name: &str) -> Option<(TypeId, &TypeInfo)> {
        let id = *self.resources.get(name)?;
        Some((id, self.types.get(id)?))
    }

    pub(crate) fn get(&self, id: TypeId) -> Option<&TypeInfo> {
        self.types.get(id)
    }

    fn build(model: &Model) -> Schema {
        let mut builder = Builder {
            model,
            ids: HashMap::new(),
            pending: Vec::new(),
            types: Vec::new(),
        };
        let mut resources = HashMap::default();
        for name in model.resource_types() {
            let id = builder.id(name);
            resources.insert(name.clone().into_boxed_str(), id);
        }
        let extension = builder.id("Extension");
        while let Some((id, name)) = builder.pending.pop() {
            let info = builder.type_info(&name);
            builder.types[id] = Some(info);
        }
        let types = builder
            .types
            .into_iter()
            .zip(0..)
            .map(|(info, id)| {
                info.unwrap_or_else(|| TypeInfo {
                    // Not reachable: every id handed out is built above.
                    name: format!("#{id}").into_boxed_str(),
                    kind: TypeKind::Complex,
                    elements: Vec::new(),
                    keys: HashMap::default(),
                })
            })
            .collect();
        Schema {
            types,
            resources,
            extension,
        }
    }
}

struct Builder<'m> {
    model: &'m Model,
    ids: HashMap<String, TypeId>,
    pending: Vec<(TypeId, String)>,
    types: Vec<Option<TypeInfo>>,
}

impl Builder<'_> {
    /// The id of a complex, backbone or resource type, queued for building on first use.
    fn id(&mut self, name: &str) -> TypeId {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.types.len();
        self.types.push(None);
        self.ids.insert(name.to_string(), id);
        self.pending.push((id, name.to_string()));
        id
    }

    fn value_type(&mut self, type_code: &str) -> ValueType {
        match self.model.get(type_code).map(|t| t.kind) {
            Some(TypeKind::Resource) => ValueType::Resource,
            Some(TypeKind::Complex | TypeKind::Backbone) => ValueType::Complex(self.id(type_code)),
            // Primitives, and the system types of `Element.id` and the like.
            Some(TypeKind::Primitive) | None => ValueType::Primitive(Scalar::of(type_code)),
        }
    }

    fn type_info(&mut self, name: &str) -> TypeInfo {
        let Some(def) = self.model.get(name) else {
            return TypeInfo {
                name: name.into(),
                kind: TypeKind::Complex,
                elements: Vec::new(),
                keys: HashMap::default(),
            };
        };
        let mut elements = Vec::with_capacity(def.elements.len());
        for e in &def.elements {
            let repr = match (e.name.as_str(), def.kind, name) {
                ("id", kind, _) if kind != TypeKind::Resource => Repr::IdAttribute,
                ("url", _, "Extension") => Repr::UrlAttribute,
                _ => Repr::Element,
            };
            let variants = e
                .types
                .iter()
                .map(|code| {
                    let key = if e.is_choice {
                        format!("{}{}", e.name, capitalized(code))
                    } else {
                        e.name.clone()
                    };
                    Variant {
                        companion_key: format!("_{key}").into_boxed_str(),
                        key: key.into_boxed_str(),
                        value: self.value_type(code),
                    }
                })
                .collect();
            elements.push(Element {
                name: e.name.as_str().into(),
                is_array: e.is_array(),
                is_choice: e.is_choice,
                repr,
                variants,
            });
        }
        let mut keys = HashMap::default();
        // Plain names first: they win over a choice name that happens to spell the same.
        for pass_choices in [false, true] {
            for (i, (element, def)) in elements.iter().zip(&def.elements).enumerate() {
                if def.is_choice != pass_choices {
                    continue;
                }
                for (j, variant) in element.variants.iter().enumerate() {
                    let (Ok(element_index), Ok(variant_index)) =
                        (u16::try_from(i), u16::try_from(j))
                    else {
                        continue;
                    };
                    keys.entry(variant.key.clone()).or_insert(Slot {
                        element: element_index,
                        variant: variant_index,
                    });
                }
            }
        }
        TypeInfo {
            name: name.into(),
            kind: def.kind,
            elements,
            keys,
        }
    }
}

/// `dateTime` → `DateTime`, the suffix of a choice element's name.
fn capitalized(type_code: &str) -> String {
    let mut chars = type_code.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// FNV-1a: property names are short and trusted to be few per object, so a simple fast hash
/// beats SipHash here.
#[derive(Default)]
pub(crate) struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_to_elements_and_types() {
        let schema = Schema::r4();
        let (_, patient) = schema.resource("Patient").unwrap();
        let (_, element, variant) = patient.slot("birthDate").unwrap();
        assert_eq!(&*element.name, "birthDate");
        assert_eq!(variant.value, ValueType::Primitive(Scalar::String));
        let (_, element, variant) = patient.slot("deceasedBoolean").unwrap();
        assert_eq!(&*element.name, "deceased");
        assert_eq!(variant.value, ValueType::Primitive(Scalar::Boolean));
        assert!(patient.slot("deceased").is_none());
        let (_, element, variant) = patient.slot("contained").unwrap();
        assert!(element.is_array);
        assert_eq!(variant.value, ValueType::Resource);
        let (_, id, _) = patient.slot("id").unwrap();
        assert_eq!(id.repr, Repr::Element);

        let (_, _, name) = patient.slot("name").unwrap();
        let ValueType::Complex(human_name) = name.value else {
            panic!("HumanName is complex")
        };
        let human_name = schema.get(human_name).unwrap();
        assert_eq!(human_name.slot("id").unwrap().1.repr, Repr::IdAttribute);
        let extension = schema.get(schema.extension).unwrap();
        assert_eq!(extension.slot("url").unwrap().1.repr, Repr::UrlAttribute);
        let (_, _, quantity) = extension.slot("valueQuantity").unwrap();
        assert!(matches!(quantity.value, ValueType::Complex(_)));
        let (_, _, decimal) = extension.slot("valueDecimal").unwrap();
        assert_eq!(decimal.value, ValueType::Primitive(Scalar::Decimal));
        assert_eq!(&*decimal.companion_key, "_valueDecimal");
    }

    #[test]
    fn backbones_and_content_references_are_types() {
        let schema = Schema::r4();
        let (_, questionnaire) = schema.resource("Questionnaire").unwrap();
        let (_, _, item) = questionnaire.slot("item").unwrap();
        let ValueType::Complex(item_id) = item.value else {
            panic!("Questionnaire.item is a backbone")
        };
        let item_type = schema.get(item_id).unwrap();
        assert_eq!(&*item_type.name, "Questionnaire.item");
        assert_eq!(item_type.slot("id").unwrap().1.repr, Repr::IdAttribute);
        let (_, _, nested) = item_type.slot("item").unwrap();
        assert_eq!(nested.value, ValueType::Complex(item_id));
        let (_, bundle) = schema.resource("Bundle").unwrap();
        let (_, _, entry) = bundle.slot("entry").unwrap();
        let ValueType::Complex(entry) = entry.value else {
            panic!("Bundle.entry is a backbone")
        };
        let (_, _, resource) = schema.get(entry).unwrap().slot("resource").unwrap();
        assert_eq!(resource.value, ValueType::Resource);
    }
}
