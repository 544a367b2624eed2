//! JSON → XML: streams a resource straight into a byte buffer, one pass over the JSON, no
//! intermediate tree. Each object's properties are resolved against its type once, sorted
//! into definition order in a scratch buffer shared by all levels, and written.
//!
//! The writer reads JSON through the [`Json`] view, so that one writer serves both a
//! `serde_json::Value` ([`write_xml`]) and JSON text parsed into a borrowed [`Node`] tree
//! ([`write_xml_from_json`]).

use flint_fhir::{Error, IssueType, Result};
use serde_json::Value;

use crate::escape::write_attribute_value;
use crate::json::{Json, JsonObject, Node, SyntaxError, View};
use crate::lexical::check_number;
use crate::location::Path;
use crate::schema::{Repr, Scalar, Schema, Slot, TypeId, TypeInfo, ValueType};
use crate::xhtml::write_div;
use crate::MAX_DEPTH;

const DECLARATION: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>";
const ROOT_NAMESPACE: &[u8] = b" xmlns=\"http://hl7.org/fhir\"";

/// Converts a JSON resource to a compact FHIR XML document.
///
/// # Errors
/// A 400 [`Error`] naming the element if the resource has a property the R4 model does not
/// define, a value of the wrong JSON type, a number or boolean that is not a valid literal of
/// its type, a narrative that is not well-formed XHTML, a character XML cannot carry, or
/// nesting deeper than [`MAX_DEPTH`].
pub fn to_xml(resource: &Value) -> Result<String> {
    let mut out = Vec::with_capacity(1024);
    write_xml(resource, &mut out)?;
    into_string(out)
}

/// Like [`to_xml`], indented by two spaces per level (the narrative is kept as written).
///
/// # Errors
/// As [`to_xml`].
pub fn to_xml_pretty(resource: &Value) -> Result<String> {
    let mut out = Vec::with_capacity(2048);
    write_xml_pretty(resource, &mut out)?;
    into_string(out)
}

/// Appends the compact XML form of a JSON resource to `out`. On error `out` is left as it
/// was.
///
/// # Errors
/// As [`to_xml`].
pub fn write_xml(resource: &Value, out: &mut Vec<u8>) -> Result<()> {
    write_json(resource, out, false)
}

/// Appends the indented XML form of a JSON resource to `out`. On error `out` is left as it
/// was.
///
/// # Errors
/// As [`to_xml`].
pub fn write_xml_pretty(resource: &Value, out: &mut Vec<u8>) -> Result<()> {
    write_json(resource, out, true)
}

/// Appends the compact XML form of a JSON resource given as JSON text to `out`, exactly as
/// [`write_xml`] of `serde_json::from_slice::<Value>(json)` would (with the `preserve_order`
/// and `arbitrary_precision` features Flint uses), without building the `Value`: the text is
/// parsed into a borrowed tree in one pass. On error `out` is left as it was.
///
/// # Errors
/// As [`to_xml`], and a 400 `structure` [`Error`] giving the line and column if `json` is not
/// JSON that `serde_json` accepts (invalid UTF-8, a syntax error, a lone surrogate escape,
/// trailing characters, or nesting deeper than `serde_json`'s limit of 127 arrays and
/// objects).
pub fn write_xml_from_json(json: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let resource = parse_json(json)?;
    write_json(&resource, out, false)
}

/// Like [`write_xml_from_json`], indented as [`write_xml_pretty`] indents.
///
/// # Errors
/// As [`write_xml_from_json`].
pub fn write_xml_pretty_from_json(json: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let resource = parse_json(json)?;
    write_json(&resource, out, true)
}

fn parse_json(json: &[u8]) -> Result<Node<'_>> {
    crate::json::parse(json).map_err(|SyntaxError { offset, message }| {
        let (line, column) = crate::location::line_and_column(json, offset);
        Error::new(
            IssueType::Structure,
            format!("invalid JSON: {message} at line {line} column {column}"),
        )
    })
}

fn into_string(out: Vec<u8>) -> Result<String> {
    // Everything written is either ASCII markup or copied from `str`s.
    String::from_utf8(out).map_err(Error::internal)
}

pub(crate) fn write_json<J: Json>(resource: &J, out: &mut Vec<u8>, pretty: bool) -> Result<()> {
    let start = out.len();
    let mut writer = Writer {
        schema: Schema::r4(),
        out,
        pretty,
        path: Path::with_capacity(32),
        scratch: Vec::with_capacity(128),
    };
    writer.out.extend_from_slice(DECLARATION);
    let result = writer.resource(resource, 0, true);
    match result {
        Ok(()) => {
            if pretty {
                writer.out.push(b'\n');
            }
            Ok(())
        }
        Err(error) => {
            writer.out.truncate(start);
            Err(error)
        }
    }
}

/// The id and extensions of a primitive.
type Companion<'v, J> = (Option<&'v str>, Option<&'v [J]>);

/// A property of the object being written, resolved against its type.
struct Entry<'v, J> {
    slot: Slot,
    /// Whether this is the `_name` companion of a primitive.
    companion: bool,
    value: &'v J,
}

impl<J> Clone for Entry<'_, J> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<J> Copy for Entry<'_, J> {}

struct Writer<'o, 'v, J> {
    schema: &'static Schema,
    out: &'o mut Vec<u8>,
    pretty: bool,
    path: Path<'v>,
    /// The properties of the objects being written, innermost last.
    scratch: Vec<Entry<'v, J>>,
}

impl<'v, J: Json> Writer<'_, 'v, J> {
    fn error(&self, last: Option<&str>, message: String) -> Error {
        self.path.error(IssueType::Structure, last, message)
    }

    fn value_error(&self, message: String) -> Error {
        self.path.error(IssueType::Value, None, message)
    }

    fn indent(&mut self, level: usize) {
        if self.pretty {
            self.out.push(b'\n');
            self.out.resize(self.out.len() + 2 * level, b' ');
        }
    }

    fn start_tag(&mut self, name: &str, level: usize) -> Result<()> {
        if level > MAX_DEPTH {
            return Err(self.error(
                None,
                format!("the resource is nested deeper than {MAX_DEPTH} XML elements"),
            ));
        }
        self.indent(level);
        self.out.push(b'<');
        self.out.extend_from_slice(name.as_bytes());
        Ok(())
    }

    fn end_tag(&mut self, name: &str, level: usize) {
        self.indent(level);
        self.out.extend_from_slice(b"</");
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'>');
    }

    fn attribute(&mut self, name: &str, value: &str) -> Result<()> {
        self.out.push(b' ');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"=\"");
        write_attribute_value(self.out, value).map_err(|c| self.value_error(c.to_string()))?;
        self.out.push(b'"');
        Ok(())
    }

    /// A resource, as the root (`root`) or inside its wrapper element.
    fn resource(&mut self, value: &'v J, level: usize, root: bool) -> Result<()> {
        let View::Object(object) = value.view() else {
            return Err(self.error(None, "a resource must be a JSON object".into()));
        };
        let resource_type = match object.get("resourceType").map(J::view) {
            Some(View::String(rt)) => rt,
            Some(_) => {
                return Err(self.error(Some("resourceType"), "resourceType must be a string".into()))
            }
            None => return Err(self.error(None, "the resource has no resourceType".into())),
        };
        let Some((type_id, _)) = self.schema.resource(resource_type) else {
            return Err(self.error(
                Some("resourceType"),
                format!(
                    "unknown resource type '{}'",
                    crate::escape::shorten(resource_type)
                ),
            ));
        };
        if root {
            self.path.push(resource_type, None);
        }
        let result = self.object(resource_type, type_id, object, level, root);
        if root {
            self.path.pop();
        }
        result
    }

    /// An object of a complex, backbone or resource type as the element `name`.
    fn object(
        &mut self,
        name: &str,
        type_id: TypeId,
        object: &'v J::Object,
        level: usize,
        root: bool,
    ) -> Result<()> {
        let schema = self.schema;
        let Some(ty) = schema.get(type_id) else {
            return Err(Error::internal(format!("no type #{type_id}")));
        };
        let base = self.scratch.len();
        let result = self.object_entries(name, ty, object, level, root, base);
        self.scratch.truncate(base);
        result
    }

    fn object_entries(
        &mut self,
        name: &str,
        ty: &'static TypeInfo,
        object: &'v J::Object,
        level: usize,
        root: bool,
        base: usize,
    ) -> Result<()> {
        let mut id = None;
        let mut url = None;
        let mut cursor = 0;
        for (key, value) in object.members() {
            if ty.kind == flint_fhir::model::TypeKind::Resource && key == "resourceType" {
                continue;
            }
            let (companion, plain) = match key.strip_prefix('_') {
                Some(plain) => (true, plain),
                None => (false, key),
            };
            let found = ty
                .find_from(plain, &mut cursor)
                .and_then(|slot| Some((slot, ty.variant(slot)?)));
            let Some((slot, (element, variant))) = found else {
                return Err(self.error(
                    Some(key),
                    format!("unknown property '{key}' in {}", ty.name),
                ));
            };
            let primitive = matches!(variant.value, ValueType::Primitive(_));
            if companion && (!primitive || element.repr != Repr::Element) {
                return Err(self.error(
                    Some(key),
                    format!(
                        "unknown property '{key}' in {} ('{plain}' is not a primitive element)",
                        ty.name
                    ),
                ));
            }
            match element.repr {
                Repr::IdAttribute => id = Some((key, value)),
                Repr::UrlAttribute => url = Some((key, value)),
                Repr::Element => self.scratch.push(Entry {
                    slot,
                    companion,
                    value,
                }),
            }
        }
        self.scratch[base..]
            .sort_unstable_by_key(|e| (e.slot.element, e.slot.variant, e.companion));

        self.start_tag(name, level)?;
        if root {
            self.out.extend_from_slice(ROOT_NAMESPACE);
        }
        for (attribute, found) in [("id", id), ("url", url)] {
            if let Some((key, value)) = found {
                let View::String(text) = value.view() else {
                    return Err(self.error(Some(key), format!("'{key}' must be a string")));
                };
                self.path.push(key, None);
                let written = self.attribute(attribute, text);
                self.path.pop();
                written?;
            }
        }
        let end = self.scratch.len();
        if end == base {
            self.out.extend_from_slice(b"/>");
            return Ok(());
        }
        self.out.push(b'>');
        let mut i = base;
        while i < end {
            let first = self.scratch[i];
            let mut next = i + 1;
            while next < end && self.scratch[next].slot.element == first.slot.element {
                next += 1;
            }
            let (value, companion) = match self.scratch[i..next] {
                [only] if !only.companion => (Some(only.value), None),
                [only] => (None, Some(only.value)),
                [value, companion] if value.slot.variant == companion.slot.variant => {
                    (Some(value.value), Some(companion.value))
                }
                _ => return Err(self.several_types(ty, i, next)),
            };
            self.element(ty, first.slot, value, companion, level + 1)?;
            i = next;
        }
        self.end_tag(name, level);
        Ok(())
    }

    /// The error for a choice element given with more than one type.
    fn several_types(&self, ty: &TypeInfo, from: usize, to: usize) -> Error {
        let mut keys: Vec<&str> = self.scratch[from..to]
            .iter()
            .filter_map(|e| ty.variant(e.slot).map(|(_, v)| &*v.key))
            .collect();
        keys.dedup();
        let first = keys.first().copied().unwrap_or_default();
        let element = self
            .scratch
            .get(from)
            .and_then(|e| ty.variant(e.slot))
            .map_or("", |(element, _)| &*element.name);
        self.error(
            Some(first),
            format!(
                "the choice element '{element}[x]' has more than one type: '{}'",
                keys.join("', '")
            ),
        )
    }

    /// One element of an object (every item of it if it repeats): `value` is the JSON
    /// property, `companion` its `_` companion.
    fn element(
        &mut self,
        ty: &'static TypeInfo,
        slot: Slot,
        value: Option<&'v J>,
        companion: Option<&'v J>,
        level: usize,
    ) -> Result<()> {
        let Some((element, variant)) = ty.variant(slot) else {
            return Err(Error::internal("slot without element"));
        };
        let key: &'static str = &variant.key;
        if !element.is_array {
            let is_array = |v: Option<&J>| v.is_some_and(|v| matches!(v.view(), View::Array(_)));
            if is_array(value) || is_array(companion) {
                return Err(self.error(
                    Some(key),
                    format!("'{key}' must be a single value, not an array"),
                ));
            }
            self.path.push(key, None);
            let result = self.item(key, variant.value, value, companion, level);
            self.path.pop();
            return result;
        }
        let values = match value.map(J::view) {
            Some(View::Array(items)) => Some(items),
            None => None,
            Some(_) => return Err(self.error(Some(key), format!("'{key}' must be an array"))),
        };
        let companions = match companion.map(J::view) {
            Some(View::Array(items)) => Some(items),
            None => None,
            Some(_) => {
                return Err(self.error(
                    Some(&variant.companion_key),
                    format!("'{}' must be an array", variant.companion_key),
                ))
            }
        };
        let count = match (values, companions) {
            (Some(v), Some(c)) if v.len() != c.len() => {
                return Err(self.error(
                    Some(&variant.companion_key),
                    format!(
                        "'{}' must have as many items as '{key}'",
                        variant.companion_key
                    ),
                ))
            }
            (Some(v), _) => v.len(),
            (None, Some(c)) => c.len(),
            (None, None) => 0,
        };
        if count == 0 {
            return Err(self.error(Some(key), format!("'{key}' must not be an empty array")));
        }
        for i in 0..count {
            let item = values.and_then(|v| v.get(i)).filter(|v| !v.is_null());
            let item_companion = companions.and_then(|c| c.get(i)).filter(|c| !c.is_null());
            self.path.push(key, Some(i));
            let result = if item.is_none() && item_companion.is_none() {
                Err(self.error(
                    None,
                    "an array item must have a value or a companion in '_' with extensions".into(),
                ))
            } else {
                self.item(key, variant.value, item, item_companion, level)
            };
            self.path.pop();
            result?;
        }
        Ok(())
    }

    /// One item of an element.
    fn item(
        &mut self,
        key: &'static str,
        value_type: ValueType,
        value: Option<&'v J>,
        companion: Option<&'v J>,
        level: usize,
    ) -> Result<()> {
        match value_type {
            ValueType::Primitive(scalar) => self.primitive(key, scalar, value, companion, level),
            ValueType::Complex(type_id) => match value.map(J::view) {
                Some(View::Object(object)) => self.object(key, type_id, object, level, false),
                _ => Err(self.error(None, format!("'{key}' must be a JSON object"))),
            },
            ValueType::Resource => {
                let Some(resource) = value else {
                    return Err(self.error(None, format!("'{key}' must be a resource")));
                };
                self.start_tag(key, level)?;
                self.out.push(b'>');
                self.resource(resource, level + 1, false)?;
                self.end_tag(key, level);
                Ok(())
            }
        }
    }

    fn primitive(
        &mut self,
        key: &'static str,
        scalar: Scalar,
        value: Option<&'v J>,
        companion: Option<&'v J>,
        level: usize,
    ) -> Result<()> {
        if scalar == Scalar::Xhtml {
            if companion.is_some() {
                return Err(self.error(
                    None,
                    format!("'_{key}' is not allowed: the narrative has no id or extensions"),
                ));
            }
            let Some(View::String(div)) = value.map(J::view) else {
                return Err(self.error(None, format!("'{key}' must be a string of XHTML")));
            };
            if level > MAX_DEPTH {
                return Err(self.error(
                    None,
                    format!("the resource is nested deeper than {MAX_DEPTH} XML elements"),
                ));
            }
            self.indent(level);
            return write_div(self.out, div, MAX_DEPTH - level).map_err(|e| {
                self.error(
                    None,
                    format!("invalid narrative: {} (at byte {})", e.message, e.offset),
                )
            });
        }
        let (id, extensions) = match companion.map(J::view) {
            None => (None, None),
            Some(View::Object(c)) => match self.companion(key, c)? {
                (None, None) => {
                    return Err(self.error(None, format!("'_{key}' must have an id or extensions")))
                }
                found => found,
            },
            Some(_) => return Err(self.error(None, format!("'_{key}' must be a JSON object"))),
        };
        let text = match value {
            None => None,
            Some(v) => Some(self.primitive_text(key, scalar, v)?),
        };
        self.start_tag(key, level)?;
        if let Some(id) = id {
            self.path.push("id", None);
            let written = self.attribute("id", id);
            self.path.pop();
            written?;
        }
        if let Some(text) = text {
            self.attribute("value", text)?;
        }
        let Some(extensions) = extensions else {
            self.out.extend_from_slice(b"/>");
            return Ok(());
        };
        self.out.push(b'>');
        let extension = self.schema.extension;
        for (i, item) in extensions.iter().enumerate() {
            self.path.push("extension", Some(i));
            let result = match item.view() {
                View::Object(object) => {
                    self.object("extension", extension, object, level + 1, false)
                }
                _ => Err(self.error(None, "an extension must be a JSON object".into())),
            };
            self.path.pop();
            result?;
        }
        self.end_tag(key, level);
        Ok(())
    }

    /// The `id` and `extension` of a primitive's `_` companion.
    fn companion(&self, key: &str, companion: &'v J::Object) -> Result<Companion<'v, J>> {
        let mut id = None;
        let mut extensions = None;
        for (name, value) in companion.members() {
            match (name, value.view()) {
                ("id", View::String(s)) => id = Some(s),
                ("extension", View::Array(items)) if !items.is_empty() => extensions = Some(items),
                ("id", _) => return Err(self.error(Some("id"), "'id' must be a string".into())),
                ("extension", _) => {
                    return Err(self.error(
                        Some("extension"),
                        "'extension' must be a non-empty array".into(),
                    ))
                }
                _ => {
                    return Err(self.error(
                        Some(name),
                        format!(
                        "unknown property '{name}' in '_{key}' (only id and extension are allowed)"
                    ),
                    ))
                }
            }
        }
        Ok((id, extensions))
    }

    /// The text of a primitive's `value` attribute, checked against the JSON type its FHIR
    /// type has.
    fn primitive_text(&self, key: &str, scalar: Scalar, value: &'v J) -> Result<&'v str> {
        match (scalar, value.view()) {
            (Scalar::Boolean, View::Bool(true)) => Ok("true"),
            (Scalar::Boolean, View::Bool(false)) => Ok("false"),
            (
                Scalar::Integer | Scalar::PositiveInt | Scalar::UnsignedInt | Scalar::Decimal,
                View::Number(n),
            ) => check_number(scalar, n).map_err(|m| self.value_error(m)),
            (Scalar::String | Scalar::Xhtml, View::String(s)) => Ok(s),
            (Scalar::Boolean, _) => {
                Err(self.value_error(format!("'{key}' must be a JSON boolean")))
            }
            (Scalar::String | Scalar::Xhtml, _) => {
                Err(self.value_error(format!("'{key}' must be a JSON string")))
            }
            _ => {
                Err(self.value_error(format!("'{key}' must be a JSON number ({})", scalar.name())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";

    /// JSON as Flint holds it (numbers exactly as written, which `json!` does not keep).
    fn parse(json: &str) -> Value {
        serde_json::from_str(json).expect("JSON")
    }

    fn xml(resource: Value) -> String {
        to_xml(&resource).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The document without the XML declaration.
    fn body(resource: Value) -> String {
        xml(resource)
            .strip_prefix(HEAD)
            .expect("declaration")
            .to_string()
    }

    #[test]
    fn the_rules_of_r4_xml() {
        let cases = [
            (
                "root named by resourceType, in the FHIR namespace; resource id is an element",
                json!({"resourceType": "Patient", "id": "a"}),
                r#"<Patient xmlns="http://hl7.org/fhir"><id value="a"/></Patient>"#,
            ),
            (
                "elements in definition order whatever the key order",
                json!({"birthDate": "1970", "gender": "male", "resourceType": "Patient", "active": true, "id": "a"}),
                r#"<Patient xmlns="http://hl7.org/fhir"><id value="a"/><active value="true"/><gender value="male"/><birthDate value="1970"/></Patient>"#,
            ),
            (
                "repeating elements repeat",
                json!({"resourceType": "Patient", "name": [{"given": ["a", "b"]}, {"family": "c"}]}),
                r#"<Patient xmlns="http://hl7.org/fhir"><name><given value="a"/><given value="b"/></name><name><family value="c"/></name></Patient>"#,
            ),
            (
                "a primitive's id and extensions come from its _ companion",
                json!({"resourceType": "Patient", "birthDate": "1970", "_birthDate": {"id": "b", "extension": [{"url": "http://x", "valueBoolean": true}]}}),
                r#"<Patient xmlns="http://hl7.org/fhir"><birthDate id="b" value="1970"><extension url="http://x"><valueBoolean value="true"/></extension></birthDate></Patient>"#,
            ),
            (
                "a primitive with extensions and no value",
                json!({"resourceType": "Patient", "_gender": {"extension": [{"url": "http://x", "valueCode": "u"}]}}),
                r#"<Patient xmlns="http://hl7.org/fhir"><gender><extension url="http://x"><valueCode value="u"/></extension></gender></Patient>"#,
            ),
            (
                "arrays of primitives align with their companion, nulls included",
                json!({"resourceType": "Patient", "name": [{"given": ["a", null, "c"], "_given": [{"id": "1"}, {"id": "2"}, null]}]}),
                r#"<Patient xmlns="http://hl7.org/fhir"><name><given id="1" value="a"/><given id="2"/><given value="c"/></name></Patient>"#,
            ),
            (
                "Element.id and Extension.url are attributes",
                json!({"resourceType": "Patient", "name": [{"id": "n", "extension": [{"id": "e", "url": "http://x", "valueString": "v"}], "family": "f"}]}),
                r#"<Patient xmlns="http://hl7.org/fhir"><name id="n"><extension id="e" url="http://x"><valueString value="v"/></extension><family value="f"/></name></Patient>"#,
            ),
            (
                "choice elements carry their type",
                parse(
                    r#"{"resourceType": "Observation", "status": "final", "code": {"text": "t"}, "effectiveDateTime": "2020", "valueQuantity": {"value": 1.50, "unit": "kg"}}"#,
                ),
                r#"<Observation xmlns="http://hl7.org/fhir"><status value="final"/><code><text value="t"/></code><effectiveDateTime value="2020"/><valueQuantity><value value="1.50"/><unit value="kg"/></valueQuantity></Observation>"#,
            ),
            (
                "numbers and booleans keep their text",
                parse(
                    r#"{"resourceType": "Patient", "multipleBirthInteger": -0, "deceasedBoolean": false, "extension": [{"url": "u", "valueDecimal": 1.0e+5}]}"#,
                ),
                r#"<Patient xmlns="http://hl7.org/fhir"><extension url="u"><valueDecimal value="1.0e+5"/></extension><deceasedBoolean value="false"/><multipleBirthInteger value="-0"/></Patient>"#,
            ),
            (
                "the narrative is embedded XHTML",
                json!({"resourceType": "Patient", "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>a &amp; <b>b</b></p></div>"}}),
                r#"<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p>a &amp; <b>b</b></p></div></text></Patient>"#,
            ),
            (
                "resources in resources are wrapped",
                json!({"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": "urn:a", "resource": {"resourceType": "Patient", "contained": [{"resourceType": "Organization", "name": "o"}]}}]}),
                r#"<Bundle xmlns="http://hl7.org/fhir"><type value="collection"/><entry><fullUrl value="urn:a"/><resource><Patient><contained><Organization><name value="o"/></Organization></contained></Patient></resource></entry></Bundle>"#,
            ),
            (
                "Parameters.parameter.resource is wrapped",
                json!({"resourceType": "Parameters", "parameter": [{"name": "p", "resource": {"resourceType": "Basic", "code": {"text": "x"}}}]}),
                r#"<Parameters xmlns="http://hl7.org/fhir"><parameter><name value="p"/><resource><Basic><code><text value="x"/></code></Basic></resource></parameter></Parameters>"#,
            ),
            (
                "attribute values are escaped so that they survive normalisation",
                json!({"resourceType": "Patient", "id": "a", "name": [{"text": "<a & \"b\">\n\t'c'\r"}]}),
                r#"<Patient xmlns="http://hl7.org/fhir"><id value="a"/><name><text value="&lt;a &amp; &quot;b&quot;&gt;&#10;&#9;'c'&#13;"/></name></Patient>"#,
            ),
            (
                "an empty object is an empty element",
                json!({"resourceType": "Patient", "maritalStatus": {}}),
                r#"<Patient xmlns="http://hl7.org/fhir"><maritalStatus/></Patient>"#,
            ),
        ];
        for (rule, resource, expected) in cases {
            assert_eq!(body(resource.clone()), expected, "{rule}");
            assert_eq!(
                crate::from_xml(xml(resource.clone()).as_bytes()).unwrap(),
                resource,
                "{rule}: read back"
            );
        }
    }

    #[test]
    fn pretty_output_is_indented() {
        let resource = json!({"resourceType": "Patient", "id": "a", "name": [{"given": ["b"]}],
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}});
        let expected = format!(
            "{HEAD}\n<Patient xmlns=\"http://hl7.org/fhir\">\n  <id value=\"a\"/>\n  <text>\n    <status value=\"generated\"/>\n    <div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>\n  </text>\n  <name>\n    <given value=\"b\"/>\n  </name>\n</Patient>\n"
        );
        assert_eq!(to_xml_pretty(&resource).unwrap(), expected);
        let mut out = b"prefix".to_vec();
        write_xml_pretty(&resource, &mut out).unwrap();
        assert_eq!(out, [b"prefix".as_slice(), expected.as_bytes()].concat());
    }

    #[test]
    fn a_div_without_its_namespace_gets_it() {
        let resource = json!({"resourceType": "Patient", "text": {"status": "generated", "div": "<div><p>x</p></div>"}});
        assert!(
            xml(resource).contains(r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div>"#)
        );
    }

    #[test]
    fn what_has_no_xml_form_is_refused_naming_the_element() {
        let cases = [
            (json!([]), "must be a JSON object", ""),
            (json!({"id": "a"}), "no resourceType", ""),
            (
                json!({"resourceType": 1}),
                "must be a string",
                "resourceType",
            ),
            (
                json!({"resourceType": "Nope"}),
                "unknown resource type 'Nope'",
                "resourceType",
            ),
            (
                json!({"resourceType": "Resource"}),
                "unknown resource type",
                "resourceType",
            ),
            (
                json!({"resourceType": "Patient", "foo": 1}),
                "unknown property 'foo' in Patient",
                "Patient.foo",
            ),
            (
                json!({"resourceType": "Patient", "fhir_comments": ["x"]}),
                "unknown property 'fhir_comments'",
                "Patient.fhir_comments",
            ),
            (
                json!({"resourceType": "Patient", "name": [{"given": ["a"], "nick": "b"}]}),
                "unknown property 'nick' in HumanName",
                "Patient.name[0].nick",
            ),
            (
                json!({"resourceType": "Patient", "deceased": true}),
                "unknown property 'deceased'",
                "Patient.deceased",
            ),
            (
                json!({"resourceType": "Patient", "deceasedString": "x"}),
                "unknown property 'deceasedString'",
                "Patient.deceasedString",
            ),
            (
                json!({"resourceType": "Patient", "_name": [{"id": "x"}]}),
                "'name' is not a primitive element",
                "Patient._name",
            ),
            (
                json!({"resourceType": "Patient", "name": [{"_id": "x"}]}),
                "unknown property '_id'",
                "Patient.name[0]._id",
            ),
            (
                json!({"resourceType": "Patient", "active": "true"}),
                "'active' must be a JSON boolean",
                "Patient.active",
            ),
            (
                json!({"resourceType": "Patient", "gender": 1}),
                "'gender' must be a JSON string",
                "Patient.gender",
            ),
            (
                json!({"resourceType": "Patient", "multipleBirthInteger": "2"}),
                "must be a JSON number",
                "Patient.multipleBirthInteger",
            ),
            (
                parse(r#"{"resourceType": "Patient", "multipleBirthInteger": 1.5}"#),
                "'1.5' is not a valid integer",
                "Patient.multipleBirthInteger",
            ),
            (
                json!({"resourceType": "Patient", "multipleBirthInteger": 3000000000u64}),
                "not a valid integer",
                "Patient.multipleBirthInteger",
            ),
            (
                json!({"resourceType": "Patient", "name": {"family": "x"}}),
                "'name' must be an array",
                "Patient.name",
            ),
            (
                json!({"resourceType": "Patient", "gender": ["male"]}),
                "must be a single value",
                "Patient.gender",
            ),
            (
                json!({"resourceType": "Patient", "name": []}),
                "must not be an empty array",
                "Patient.name",
            ),
            (
                json!({"resourceType": "Patient", "name": ["x"]}),
                "must be a JSON object",
                "Patient.name[0]",
            ),
            (
                json!({"resourceType": "Patient", "name": [{"given": ["a"], "_given": [null, null]}]}),
                "as many items",
                "Patient.name[0]._given",
            ),
            (
                json!({"resourceType": "Patient", "name": [{"given": [null]}]}),
                "must have a value or a companion",
                "Patient.name[0].given[0]",
            ),
            (
                json!({"resourceType": "Patient", "gender": null}),
                "must be a JSON string",
                "Patient.gender",
            ),
            (
                json!({"resourceType": "Patient", "_gender": {"foo": 1}}),
                "unknown property 'foo' in '_gender'",
                "Patient.gender.foo",
            ),
            (
                json!({"resourceType": "Patient", "_gender": {}}),
                "must have an id or extensions",
                "Patient.gender",
            ),
            (
                json!({"resourceType": "Patient", "_gender": {"extension": "x"}}),
                "non-empty array",
                "Patient.gender.extension",
            ),
            (
                json!({"resourceType": "Patient", "_gender": {"extension": ["x"]}}),
                "extension must be a JSON object",
                "Patient.gender.extension[0]",
            ),
            (
                json!({"resourceType": "Patient", "deceasedBoolean": true, "deceasedDateTime": "2020"}),
                "'deceased[x]' has more than one type",
                "Patient.deceasedBoolean",
            ),
            (
                json!({"resourceType": "Patient", "name": [{"id": 1}]}),
                "'id' must be a string",
                "Patient.name[0].id",
            ),
            (
                json!({"resourceType": "Patient", "id": "a\u{1}"}),
                "U+0001",
                "Patient.id",
            ),
            (
                json!({"resourceType": "Patient", "text": {"div": "<p>x</p>"}}),
                "invalid narrative",
                "Patient.text.div",
            ),
            (
                json!({"resourceType": "Patient", "text": {"div": "<div>&nbsp;</div>"}}),
                "not defined",
                "Patient.text.div",
            ),
            (
                json!({"resourceType": "Patient", "text": {"div": 1}}),
                "string of XHTML",
                "Patient.text.div",
            ),
            (
                json!({"resourceType": "Patient", "text": {"_div": {"id": "x"}}}),
                "'_div' is not allowed",
                "Patient.text.div",
            ),
            (
                json!({"resourceType": "Patient", "contained": [{"resourceType": "Nope"}]}),
                "unknown resource type",
                "Patient.contained[0].resourceType",
            ),
            (
                json!({"resourceType": "Patient", "contained": [{"id": "x"}]}),
                "no resourceType",
                "Patient.contained[0]",
            ),
            (
                json!({"resourceType": "Patient", "contained": [{"resourceType": "Basic", "bad": 1}]}),
                "unknown property 'bad' in Basic",
                "Patient.contained[0].bad",
            ),
        ];
        for (resource, message, expression) in cases {
            let mut out = b"kept".to_vec();
            let error = write_xml(&resource, &mut out).expect_err(&resource.to_string());
            assert_eq!(out, b"kept", "the buffer is restored on error");
            assert_eq!(error.status(), 400, "{resource}");
            let issue = &error.issues[0];
            assert!(
                issue.diagnostics.contains(message),
                "{resource}: {}",
                issue.diagnostics
            );
            let at = issue.expression.first().map_or("", String::as_str);
            assert_eq!(at, expression, "{resource}: {}", issue.diagnostics);
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let mut item = json!({"linkId": "leaf"});
        for _ in 0..MAX_DEPTH {
            item = json!({"linkId": "x", "item": [item]});
        }
        let questionnaire =
            json!({"resourceType": "Questionnaire", "status": "draft", "item": [item]});
        let error = to_xml(&questionnaire).unwrap_err();
        assert!(error.to_string().contains("nested deeper"), "{error}");
    }
}
