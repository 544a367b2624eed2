//! XML → JSON: a recursive descent over the events of `quick-xml`'s namespace-aware pull
//! parser, typed by the schema, building the JSON object of each element as it is read.
//! Recursion follows the document's nesting, which is limited to [`MAX_DEPTH`].

use flint_fhir::{Error, IssueType, Result};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::NsReader;
use serde_json::{Map, Value};

use crate::escape::{decode_attribute_value, find_forbidden_at, shorten};
use crate::lexical::json_value;
use crate::location::{line_and_column, Path};
use crate::schema::{Repr, Scalar, Schema, Slot, TypeId, TypeInfo, ValueType, Variant};
use crate::xhtml::read_div;
use crate::{FHIR_NAMESPACE, MAX_DEPTH, XHTML_NAMESPACE};

/// Converts a FHIR XML document (UTF-8, a byte order mark allowed) to the JSON form of its
/// resource.
///
/// # Errors
/// A 400 [`Error`] naming the element path and the line and column for a document that is not
/// well-formed XML, has a document type declaration, is not UTF-8, has no root, has a root that
/// is not a resource in the FHIR namespace, or has an element, attribute or text the R4 model
/// does not define there; a number or boolean that is not a valid literal of its type; a
/// narrative that is not well-formed XHTML; nesting deeper than [`MAX_DEPTH`].
pub fn from_xml(bytes: &[u8]) -> Result<Value> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let input = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_and_column(bytes, e.valid_up_to());
        Error::new(
            IssueType::Structure,
            format!("the XML document is not UTF-8 (line {line}, column {column})"),
        )
    })?;
    if let Some((offset, c)) = find_forbidden_at(input) {
        let (line, column) = line_and_column(bytes, offset);
        return Err(Error::new(
            IssueType::Structure,
            format!("{c} (line {line}, column {column})"),
        ));
    }
    let mut xml = NsReader::from_str(input);
    let config = xml.config_mut();
    config.check_end_names = true;
    config.check_comments = true;
    config.expand_empty_elements = false;
    config.trim_text(false);
    let mut reader = Reader {
        xml,
        input,
        schema: Schema::r4(),
        path: Path::default(),
        seen: Vec::new(),
        offset: 0,
    };
    reader.document().map(Value::Object)
}

/// The namespace of an element, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ns {
    Fhir,
    Xhtml,
    /// Another namespace, none, or an undeclared prefix.
    Other,
}

impl Ns {
    fn of(resolved: &ResolveResult<'_>) -> Ns {
        match resolved {
            ResolveResult::Bound(Namespace(ns)) if *ns == FHIR_NAMESPACE.as_bytes() => Ns::Fhir,
            ResolveResult::Bound(Namespace(ns)) if *ns == XHTML_NAMESPACE.as_bytes() => Ns::Xhtml,
            _ => Ns::Other,
        }
    }
}

/// The element whose children are being read.
struct Parent {
    ty: &'static TypeInfo,
    /// Its nesting level.
    level: usize,
    /// Where its entries in [`Reader::seen`] start.
    seen: usize,
    /// Where in its type's elements the next child is looked for first.
    cursor: usize,
}

/// A primitive as JSON has it: the value and the `_` companion with id and extensions.
type Primitive = (Option<Value>, Option<Map<String, Value>>);

/// What to do with an event that is not an element inside a FHIR element.
enum Flow {
    Continue,
    End,
}

struct Reader<'x> {
    xml: NsReader<&'x [u8]>,
    input: &'x str,
    schema: &'static Schema,
    path: Path<'static>,
    /// The elements already read in the objects being read, innermost last.
    seen: Vec<Slot>,
    /// Where the event being handled starts.
    offset: u64,
}

impl<'x> Reader<'x> {
    fn error_at(&self, offset: u64, code: IssueType, last: Option<&str>, message: String) -> Error {
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        let (line, column) = line_and_column(self.input.as_bytes(), offset);
        self.path.error(
            code,
            last,
            format!("{message} (line {line}, column {column})"),
        )
    }

    fn error(&self, last: Option<&str>, message: String) -> Error {
        self.error_at(self.offset, IssueType::Structure, last, message)
    }

    fn next(&mut self) -> Result<(Ns, Event<'x>)> {
        self.offset = self.xml.buffer_position();
        match self.xml.read_resolved_event() {
            Ok((resolved, event)) => Ok((Ns::of(&resolved), event)),
            Err(e) => {
                let at = self.xml.error_position();
                Err(self.error_at(
                    at,
                    IssueType::Structure,
                    None,
                    format!("the XML is not well-formed: {e}"),
                ))
            }
        }
    }

    fn name<'n>(&self, name: &'n [u8]) -> Result<&'n str> {
        std::str::from_utf8(name).map_err(|_| self.error(None, "a name is not UTF-8".into()))
    }

    fn document(&mut self) -> Result<Map<String, Value>> {
        let resource = loop {
            let (ns, event) = self.next()?;
            match event {
                Event::Start(ref start) | Event::Empty(ref start) => {
                    let empty = matches!(event, Event::Empty(_));
                    break self.root(ns, start, empty)?;
                }
                Event::Decl(declaration) => {
                    if let Some(Ok(encoding)) = declaration.encoding() {
                        let supported = [&b"UTF-8"[..], b"UTF8", b"US-ASCII", b"ASCII"]
                            .iter()
                            .any(|e| e.eq_ignore_ascii_case(&encoding));
                        if !supported {
                            return Err(self.error(
                                None,
                                format!(
                                    "the encoding '{}' is not supported; FHIR XML is UTF-8",
                                    shorten(&String::from_utf8_lossy(&encoding))
                                ),
                            ));
                        }
                    }
                }
                Event::Eof => {
                    return Err(self.error(None, "the document has no root element".into()))
                }
                other => self.outside_elements(other)?,
            }
        };
        loop {
            let (_, event) = self.next()?;
            match event {
                Event::Eof => return Ok(resource),
                Event::Start(_) | Event::Empty(_) => {
                    return Err(
                        self.error(None, "the document has more than one root element".into())
                    )
                }
                other => self.outside_elements(other)?,
            }
        }
    }

    /// Before and after the root: whitespace, comments and processing instructions only.
    fn outside_elements(&self, event: Event<'x>) -> Result<()> {
        match event {
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) => Ok(()),
            Event::Text(text) if is_whitespace(&text) => Ok(()),
            Event::DocType(_) => Err(self.doctype()),
            _ => Err(self.error(None, "text is not allowed outside the root element".into())),
        }
    }

    fn doctype(&self) -> Error {
        self.error(
            None,
            "document type declarations (DTDs) are not allowed in FHIR XML".into(),
        )
    }

    fn root(&mut self, ns: Ns, start: &BytesStart<'x>, empty: bool) -> Result<Map<String, Value>> {
        let name = self.name(start.local_name().into_inner())?;
        if ns != Ns::Fhir {
            return Err(self.error(
                None,
                format!(
                    "the root element <{}> is not in the FHIR namespace {FHIR_NAMESPACE}",
                    self.name(start.name().into_inner())?
                ),
            ));
        }
        let schema = self.schema;
        let Some((type_id, ty)) = schema.resource(name) else {
            return Err(self.error(
                None,
                format!("the root element <{name}> is not a FHIR resource type"),
            ));
        };
        self.path.push(&ty.name, None);
        let resource = self.resource(start, empty, type_id, 1)?;
        self.path.pop();
        Ok(resource)
    }

    /// A resource element (the root or inside its wrapper) at nesting `level`.
    fn resource(
        &mut self,
        start: &BytesStart<'x>,
        empty: bool,
        type_id: TypeId,
        level: usize,
    ) -> Result<Map<String, Value>> {
        let schema = self.schema;
        let Some(ty) = schema.get(type_id) else {
            return Err(Error::internal(format!("no type #{type_id}")));
        };
        let mut object = Map::new();
        object.insert("resourceType".into(), Value::String(ty.name.to_string()));
        self.attributes(start, |name, _| {
            Err(format!(
                "the attribute '{name}' is not allowed on a resource (its id is an <id> element)"
            ))
        })?;
        if !empty {
            self.children(ty, &mut object, level)?;
        }
        Ok(object)
    }

    /// Calls `handle` with the name and decoded value of each attribute FHIR could define
    /// (those without a prefix), skipping namespace declarations and attributes of other
    /// namespaces. `handle` returns a message to refuse one.
    fn attributes(
        &self,
        start: &BytesStart<'x>,
        mut handle: impl FnMut(&str, String) -> Result<(), String>,
    ) -> Result<()> {
        for attribute in start.attributes() {
            let attribute = attribute
                .map_err(|e| self.error(None, format!("the XML is not well-formed: {e}")))?;
            let key = attribute.key;
            if key.as_ref() == b"xmlns" || key.prefix().is_some_and(|p| p.as_ref() == b"xmlns") {
                continue;
            }
            if key.prefix().is_some() {
                let (resolved, _) = self.xml.resolve_attribute(key);
                if Ns::of(&resolved) != Ns::Fhir {
                    continue; // xsi:schemaLocation, xml:lang and the like
                }
            }
            let name = self.name(key.as_ref())?;
            let raw = self.name(&attribute.value)?;
            let value = decode_attribute_value(raw).map_err(|m| self.error(None, m))?;
            handle(name, value.into_owned()).map_err(|m| self.error(None, m))?;
        }
        Ok(())
    }

    /// Handles an event inside a FHIR element that is not a child element.
    fn inside_element(&self, event: &Event<'x>, owner: &str) -> Result<Flow> {
        match event {
            Event::End(_) => Ok(Flow::End),
            Event::Comment(_) | Event::PI(_) => Ok(Flow::Continue),
            Event::Text(text) if is_whitespace(text) => Ok(Flow::Continue),
            Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => Err(self.error(
                None,
                format!("text is not allowed in <{owner}>; FHIR values are value attributes"),
            )),
            Event::DocType(_) => Err(self.doctype()),
            Event::Decl(_) => Err(self.error(None, "misplaced XML declaration".into())),
            Event::Eof => Err(self.error(
                None,
                format!("the document ends before <{owner}> is closed"),
            )),
            Event::Start(_) | Event::Empty(_) => Ok(Flow::Continue),
        }
    }

    /// The child elements of an element of type `ty` at nesting `level`, into `object`.
    fn children(
        &mut self,
        ty: &'static TypeInfo,
        object: &mut Map<String, Value>,
        level: usize,
    ) -> Result<()> {
        let mut parent = Parent {
            ty,
            level,
            seen: self.seen.len(),
            cursor: 0,
        };
        let result = loop {
            let (ns, event) = match self.next() {
                Ok(next) => next,
                Err(e) => break Err(e),
            };
            let outcome = match event {
                Event::Start(ref start) => self.child(&mut parent, object, ns, start, false),
                Event::Empty(ref start) => self.child(&mut parent, object, ns, start, true),
                ref other => match self.inside_element(other, &ty.name) {
                    Ok(Flow::Continue) => Ok(()),
                    Ok(Flow::End) => break Ok(()),
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = outcome {
                break Err(e);
            }
        };
        self.seen.truncate(parent.seen);
        result
    }

    /// One child element of `parent`.
    fn child(
        &mut self,
        parent: &mut Parent,
        object: &mut Map<String, Value>,
        ns: Ns,
        start: &BytesStart<'x>,
        empty: bool,
    ) -> Result<()> {
        let (ty, level, base) = (parent.ty, parent.level + 1, parent.seen);
        let local = self.name(start.local_name().into_inner())?;
        if level > MAX_DEPTH {
            return Err(self.error(
                Some(local),
                format!("the document is nested deeper than {MAX_DEPTH} elements"),
            ));
        }
        let found = ty
            .find_from(local, &mut parent.cursor)
            .and_then(|slot| Some((slot, ty.variant(slot)?)));
        let Some((slot, (element, variant))) = found else {
            return Err(self.error(
                Some(local),
                format!("unknown element <{local}> in {}", ty.name),
            ));
        };
        let is_div = variant.value == ValueType::Primitive(Scalar::Xhtml);
        if is_div && ns != Ns::Xhtml || !is_div && ns != Ns::Fhir {
            let expected = if is_div {
                XHTML_NAMESPACE
            } else {
                FHIR_NAMESPACE
            };
            return Err(self.error(
                Some(local),
                format!(
                    "the element <{}> is not in the namespace {expected}",
                    self.name(start.name().into_inner())?
                ),
            ));
        }
        match element.repr {
            Repr::Element => {}
            Repr::IdAttribute | Repr::UrlAttribute => {
                return Err(self.error(
                    Some(local),
                    format!("'{local}' is an attribute of <{}>, not an element", ty.name),
                ))
            }
        }
        if let Some(previous) = self.seen[base..].iter().find(|s| s.element == slot.element) {
            if previous.variant != slot.variant {
                let other = ty.variant(*previous).map_or("", |(_, v)| &*v.key);
                return Err(self.error(
                    Some(local),
                    format!(
                        "the choice element '{}[x]' has more than one type: <{other}> and <{local}>",
                        element.name
                    ),
                ));
            }
            if !element.is_array {
                return Err(self.error(
                    Some(local),
                    format!("<{local}> appears more than once but does not repeat"),
                ));
            }
        } else {
            self.seen.push(slot);
        }
        let index = element.is_array.then(|| item_count(object, variant));
        self.path.push(&variant.key, index);
        let result = self.child_value(object, variant, element.is_array, start, empty, level);
        self.path.pop();
        result
    }

    fn child_value(
        &mut self,
        object: &mut Map<String, Value>,
        variant: &'static Variant,
        is_array: bool,
        start: &BytesStart<'x>,
        empty: bool,
        level: usize,
    ) -> Result<()> {
        let value = match variant.value {
            ValueType::Primitive(Scalar::Xhtml) => {
                let div = read_div(
                    &mut self.xml,
                    self.input,
                    start,
                    self.offset,
                    empty,
                    MAX_DEPTH - level + 1,
                )
                .map_err(|e| {
                    self.error_at(
                        e.offset as u64,
                        IssueType::Structure,
                        None,
                        format!("invalid narrative: {}", e.message),
                    )
                })?;
                Value::String(div)
            }
            ValueType::Primitive(scalar) => {
                let (value, companion) = self.primitive(start, empty, scalar, level)?;
                insert_primitive(object, variant, is_array, value, companion);
                return Ok(());
            }
            ValueType::Complex(type_id) => {
                Value::Object(self.complex(start, empty, type_id, level)?)
            }
            ValueType::Resource => Value::Object(self.wrapped(start, empty, level)?),
        };
        if is_array {
            match object.get_mut(&*variant.key) {
                Some(Value::Array(items)) => items.push(value),
                _ => {
                    object.insert(variant.key.to_string(), Value::Array(vec![value]));
                }
            }
        } else {
            object.insert(variant.key.to_string(), value);
        }
        Ok(())
    }

    /// A primitive element: its value, and the `_` companion with its id and extensions.
    fn primitive(
        &mut self,
        start: &BytesStart<'x>,
        empty: bool,
        scalar: Scalar,
        level: usize,
    ) -> Result<Primitive> {
        let mut value = None;
        let mut id = None;
        let mut invalid = None;
        self.attributes(start, |name, text| {
            match name {
                "value" => match json_value(scalar, &text) {
                    Ok(v) => value = Some(v),
                    Err(message) => invalid = Some(message),
                },
                "id" => id = Some(text),
                _ => return Err(format!("unknown attribute '{name}' on a primitive element")),
            }
            Ok(())
        })?;
        if let Some(message) = invalid {
            return Err(self.error_at(self.offset, IssueType::Value, None, message));
        }
        let mut extensions = Vec::new();
        if !empty {
            let extension = self.schema.extension;
            loop {
                let (ns, event) = self.next()?;
                match event {
                    Event::Start(ref child) | Event::Empty(ref child) => {
                        let local = self.name(child.local_name().into_inner())?;
                        if ns != Ns::Fhir || local != "extension" {
                            return Err(self.error(
                                Some(local),
                                format!(
                                    "unknown element <{local}> in a primitive element (only <extension> is allowed)"
                                ),
                            ));
                        }
                        if level + 1 > MAX_DEPTH {
                            return Err(self.error(
                                None,
                                format!("the document is nested deeper than {MAX_DEPTH} elements"),
                            ));
                        }
                        let child_empty = matches!(event, Event::Empty(_));
                        self.path.push("extension", Some(extensions.len()));
                        let item = self.complex(child, child_empty, extension, level + 1);
                        self.path.pop();
                        extensions.push(Value::Object(item?));
                    }
                    ref other => match self.inside_element(other, "extension")? {
                        Flow::Continue => {}
                        Flow::End => break,
                    },
                }
            }
        }
        let companion = (id.is_some() || !extensions.is_empty()).then(|| {
            let mut companion = Map::new();
            if let Some(id) = id {
                companion.insert("id".into(), Value::String(id));
            }
            if !extensions.is_empty() {
                companion.insert("extension".into(), Value::Array(extensions));
            }
            companion
        });
        if value.is_none() && companion.is_none() {
            return Err(self.error(
                None,
                "a primitive element needs a value attribute or extensions".into(),
            ));
        }
        Ok((value, companion))
    }

    /// An element of a complex or backbone type.
    fn complex(
        &mut self,
        start: &BytesStart<'x>,
        empty: bool,
        type_id: TypeId,
        level: usize,
    ) -> Result<Map<String, Value>> {
        let schema = self.schema;
        let Some(ty) = schema.get(type_id) else {
            return Err(Error::internal(format!("no type #{type_id}")));
        };
        let mut object = Map::new();
        self.attributes(start, |name, value| {
            let repr = ty.slot(name).map(|(_, element, _)| element.repr);
            match repr {
                Some(Repr::IdAttribute | Repr::UrlAttribute) => {
                    if object
                        .insert(name.to_string(), Value::String(value))
                        .is_some()
                    {
                        return Err(format!("the attribute '{name}' appears twice"));
                    }
                    Ok(())
                }
                _ => Err(format!(
                    "unknown attribute '{name}' on an element of type {}",
                    ty.name
                )),
            }
        })?;
        if !empty {
            self.children(ty, &mut object, level)?;
        }
        Ok(object)
    }

    /// The wrapper of a resource inside a resource (`<contained><Patient>…</Patient></contained>`).
    fn wrapped(
        &mut self,
        start: &BytesStart<'x>,
        empty: bool,
        level: usize,
    ) -> Result<Map<String, Value>> {
        let wrapper = self.name(start.local_name().into_inner())?;
        self.attributes(start, |name, _| {
            Err(format!("unknown attribute '{name}' on <{wrapper}>"))
        })?;
        let mut resource = None;
        if !empty {
            loop {
                let (ns, event) = self.next()?;
                match event {
                    Event::Start(ref inner) | Event::Empty(ref inner) => {
                        let name = self.name(inner.local_name().into_inner())?;
                        if resource.is_some() {
                            return Err(self
                                .error(None, format!("<{wrapper}> holds more than one resource")));
                        }
                        let schema = self.schema;
                        let found = schema.resource(name).filter(|_| ns == Ns::Fhir);
                        let Some((type_id, _)) = found else {
                            return Err(self.error(
                                None,
                                format!("<{name}> in <{wrapper}> is not a FHIR resource"),
                            ));
                        };
                        if level + 1 > MAX_DEPTH {
                            return Err(self.error(
                                None,
                                format!("the document is nested deeper than {MAX_DEPTH} elements"),
                            ));
                        }
                        let inner_empty = matches!(event, Event::Empty(_));
                        resource = Some(self.resource(inner, inner_empty, type_id, level + 1)?);
                    }
                    ref other => match self.inside_element(other, wrapper)? {
                        Flow::Continue => {}
                        Flow::End => break,
                    },
                }
            }
        }
        resource.ok_or_else(|| self.error(None, format!("<{wrapper}> must hold a resource")))
    }
}

fn is_whitespace(text: &[u8]) -> bool {
    text.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// How many items a repeating element has so far (for a primitive, in its value array or its
/// companion, whichever is longer: both are padded with `null` only once they exist).
fn item_count(object: &Map<String, Value>, variant: &Variant) -> usize {
    let len = |key: &str| {
        object
            .get(key)
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
    };
    match variant.value {
        ValueType::Primitive(_) => len(&variant.key).max(len(&variant.companion_key)),
        _ => len(&variant.key),
    }
}

/// Adds a primitive (or one item of a repeating one) and its companion to `object`, keeping
/// a repeating primitive's value and companion arrays aligned with `null`s.
fn insert_primitive(
    object: &mut Map<String, Value>,
    variant: &Variant,
    is_array: bool,
    value: Option<Value>,
    companion: Option<Map<String, Value>>,
) {
    let companion = companion.map(Value::Object);
    if !is_array {
        if let Some(value) = value {
            object.insert(variant.key.to_string(), value);
        }
        if let Some(companion) = companion {
            object.insert(variant.companion_key.to_string(), companion);
        }
        return;
    }
    let count = item_count(object, variant);
    for (key, item) in [(&variant.key, value), (&variant.companion_key, companion)] {
        match (object.get_mut(&**key), item) {
            (Some(Value::Array(items)), item) => items.push(item.unwrap_or(Value::Null)),
            (_, Some(item)) => {
                let mut items = vec![Value::Null; count];
                items.push(item);
                object.insert(key.to_string(), Value::Array(items));
            }
            (_, None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Value {
        serde_json::from_str(text).expect("JSON")
    }

    fn read(xml: &str) -> Value {
        from_xml(xml.as_bytes()).unwrap_or_else(|e| panic!("{xml}: {e}"))
    }

    #[test]
    fn the_rules_of_r4_xml() {
        let cases = [
            (
                "declaration, comments, processing instructions, schema location and whitespace are ignored",
                "\u{FEFF}<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<!-- c --><?pi x?>\n<Patient xmlns=\"http://hl7.org/fhir\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:schemaLocation=\"http://hl7.org/fhir fhir.xsd\">\n  <!-- c -->\n  <id value=\"a\"/>\n</Patient>\n<!-- after -->\n",
                r#"{"resourceType": "Patient", "id": "a"}"#,
            ),
            (
                "a prefixed FHIR namespace",
                r#"<f:Patient xmlns:f="http://hl7.org/fhir"><f:active value="true"/></f:Patient>"#,
                r#"{"resourceType": "Patient", "active": true}"#,
            ),
            (
                "the model types numbers and booleans; other primitives are strings",
                r#"<Patient xmlns="http://hl7.org/fhir"><active value="false"/><gender value="male"/><birthDate value="1970"/><multipleBirthInteger value="-3"/></Patient>"#,
                r#"{"resourceType": "Patient", "active": false, "gender": "male", "birthDate": "1970", "multipleBirthInteger": -3}"#,
            ),
            (
                "decimals keep their text; a positiveInt may have a '+'",
                r#"<Observation xmlns="http://hl7.org/fhir"><status value="final"/><code><text value="1.0"/></code><valueQuantity><value value="1.50"/></valueQuantity><component><code><text value="t"/></code><valueSampledData><origin><value value="0.0"/></origin><period value="10"/><dimensions value="+1"/></valueSampledData></component></Observation>"#,
                r#"{"resourceType": "Observation", "status": "final", "code": {"text": "1.0"}, "valueQuantity": {"value": 1.50}, "component": [{"code": {"text": "t"}, "valueSampledData": {"origin": {"value": 0.0}, "period": 10, "dimensions": 1}}]}"#,
            ),
            (
                "id and extensions of primitives go to the companion; arrays align with nulls",
                r#"<Patient xmlns="http://hl7.org/fhir"><name><given id="g0"><extension url="u"><valueString value="x"/></extension></given><given value="b"/><given value="c" id="g2"/><given value="d"/></name><birthDate id="b" value="1970"/></Patient>"#,
                r#"{"resourceType": "Patient", "name": [{"given": [null, "b", "c", "d"], "_given": [{"id": "g0", "extension": [{"url": "u", "valueString": "x"}]}, null, {"id": "g2"}, null]}], "birthDate": "1970", "_birthDate": {"id": "b"}}"#,
            ),
            (
                "no companion array when no item has an id or extensions; no value array when none has a value",
                r#"<Patient xmlns="http://hl7.org/fhir"><name><given value="a"/><given value="b"/><prefix id="p1"/><prefix id="p2"/></name></Patient>"#,
                r#"{"resourceType": "Patient", "name": [{"given": ["a", "b"], "_prefix": [{"id": "p1"}, {"id": "p2"}]}]}"#,
            ),
            (
                "Element.id and Extension.url are attributes",
                r#"<Patient xmlns="http://hl7.org/fhir"><extension url="http://x" id="e"><valueCode value="c"/></extension><name id="n"><family value="f"/></name></Patient>"#,
                r#"{"resourceType": "Patient", "extension": [{"id": "e", "url": "http://x", "valueCode": "c"}], "name": [{"id": "n", "family": "f"}]}"#,
            ),
            (
                "attribute values are normalised as XML requires; references are resolved",
                "<Patient xmlns=\"http://hl7.org/fhir\"><name><text value=\"a\nb\tc &#10;d&#x9;&lt;&amp;&quot;&apos;\"/></name></Patient>",
                r#"{"resourceType": "Patient", "name": [{"text": "a b c \nd\t<&\"'"}]}"#,
            ),
            (
                "wrapped resources",
                r#"<Bundle xmlns="http://hl7.org/fhir"><type value="batch-response"/><entry><resource><Patient><id value="p"/></Patient></resource><response><status value="200"/><outcome><OperationOutcome><issue><severity value="information"/><code value="informational"/></issue></OperationOutcome></outcome></response></entry></Bundle>"#,
                r#"{"resourceType": "Bundle", "type": "batch-response", "entry": [{"resource": {"resourceType": "Patient", "id": "p"}, "response": {"status": "200", "outcome": {"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational"}]}}}]}"#,
            ),
            (
                "contained resources",
                r#"<Patient xmlns="http://hl7.org/fhir"><contained><Organization><id value="o"/></Organization></contained><contained>  <Practitioner/>  </contained></Patient>"#,
                r#"{"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o"}, {"resourceType": "Practitioner"}]}"#,
            ),
            (
                "the narrative becomes a string of XHTML",
                r#"<Patient xmlns="http://hl7.org/fhir"><text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p>a&amp;b <!-- c --></p></div></text></Patient>"#,
                r#"{"resourceType": "Patient", "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>a&amp;b <!-- c --></p></div>"}}"#,
            ),
            (
                "an empty element of a complex type",
                r#"<Patient xmlns="http://hl7.org/fhir"><maritalStatus/></Patient>"#,
                r#"{"resourceType": "Patient", "maritalStatus": {}}"#,
            ),
        ];
        for (rule, xml, expected) in cases {
            assert_eq!(read(xml), json(expected), "{rule}");
        }
    }

    #[test]
    fn resource_type_comes_first() {
        let value = read(r#"<Patient xmlns="http://hl7.org/fhir"><id value="a"/></Patient>"#);
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["resourceType", "id"]);
    }

    /// (document, part of the message, expression).
    const BAD: &[(&str, &str, &str)] = &[
        ("", "no root element", ""),
        ("<!-- only a comment -->", "no root element", ""),
        ("<Patient xmlns=\"http://hl7.org/fhir\">", "ends before <Patient> is closed", "Patient"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"></Patent>", "not well-formed", "Patient"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"a\"></Patient>", "not well-formed", "Patient.id"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"/><Patient xmlns=\"http://hl7.org/fhir\"/>", "more than one root", ""),
        ("<Patient xmlns=\"http://hl7.org/fhir\"/>text", "outside the root", ""),
        ("<!DOCTYPE Patient [<!ENTITY a \"aaaa\">]><Patient xmlns=\"http://hl7.org/fhir\"/>", "document type declarations", ""),
        ("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><Patient xmlns=\"http://hl7.org/fhir\"/>", "encoding 'ISO-8859-1' is not supported", ""),
        ("<Patient/>", "is not in the FHIR namespace", ""),
        ("<Patient xmlns=\"http://hl7.org/fhir/\"/>", "is not in the FHIR namespace", ""),
        ("<Foo xmlns=\"http://hl7.org/fhir\"/>", "<Foo> is not a FHIR resource type", ""),
        ("<Patient xmlns=\"http://hl7.org/fhir\" id=\"a\"/>", "attribute 'id' is not allowed on a resource", "Patient"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><foo/></Patient>", "unknown element <foo> in Patient", "Patient.foo"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><name><foo/></name></Patient>", "unknown element <foo> in HumanName", "Patient.name[0].foo"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><name/><name><given value=\"a\"/><given><foo/></given></name></Patient>", "only <extension> is allowed", "Patient.name[1].given[1].foo"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><deceased value=\"true\"/></Patient>", "unknown element <deceased>", "Patient.deceased"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><active xmlns=\"urn:other\" value=\"true\"/></Patient>", "not in the namespace http://hl7.org/fhir", "Patient.active"),
        ("<Patient xmlns=\"http://hl7.org/fhir\">text</Patient>", "text is not allowed in <Patient>", "Patient"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><active value=\"true\">x</active></Patient>", "text is not allowed", "Patient.active"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><active value=\"yes\"/></Patient>", "'yes' is not a valid boolean", "Patient.active"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><multipleBirthInteger value=\"1.5\"/></Patient>", "not a valid integer", "Patient.multipleBirthInteger"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><active/></Patient>", "needs a value attribute or extensions", "Patient.active"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><active valu=\"true\"/></Patient>", "unknown attribute 'valu'", "Patient.active"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><name value=\"x\"/></Patient>", "unknown attribute 'value' on an element of type HumanName", "Patient.name[0]"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><name><id value=\"x\"/></name></Patient>", "'id' is an attribute of <HumanName>", "Patient.name[0].id"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><extension><url value=\"x\"/></extension></Patient>", "'url' is an attribute of <Extension>", "Patient.extension[0].url"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><active value=\"true\"/><active value=\"false\"/></Patient>", "appears more than once", "Patient.active"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><deceasedBoolean value=\"true\"/><deceasedDateTime value=\"2020\"/></Patient>", "'deceased[x]' has more than one type", "Patient.deceasedDateTime"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><contained/></Patient>", "<contained> must hold a resource", "Patient.contained[0]"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><contained><Foo/></contained></Patient>", "<Foo> in <contained> is not a FHIR resource", "Patient.contained[0]"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><contained><Basic/><Basic/></contained></Patient>", "more than one resource", "Patient.contained[0]"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><contained><Basic><foo/></Basic></contained></Patient>", "unknown element <foo> in Basic", "Patient.contained[0].foo"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><text><div/></text></Patient>", "not in the namespace http://www.w3.org/1999/xhtml", "Patient.text.div"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><text><div xmlns=\"http://www.w3.org/1999/xhtml\">&nbsp;</div></text></Patient>", "invalid narrative", "Patient.text.div"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><name><text value=\"&nbsp;\"/></name></Patient>", "the entity '&nbsp' is not defined", "Patient.name[0].text"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><name><text value=\"a\" value=\"b\"/></name></Patient>", "not well-formed", "Patient.name[0].text"),
        ("<Patient xmlns=\"http://hl7.org/fhir\"><!-- a -- b --></Patient>", "not well-formed", "Patient"),
    ];

    #[test]
    fn bad_documents_are_refused_naming_the_element_and_position() {
        for &(xml, message, expression) in BAD {
            let error = from_xml(xml.as_bytes()).expect_err(xml);
            assert_eq!(error.status(), 400, "{xml}");
            let issue = &error.issues[0];
            assert!(
                issue.diagnostics.contains(message),
                "{xml}: {}",
                issue.diagnostics
            );
            assert!(
                issue.diagnostics.contains("(line 1, column "),
                "{xml}: {}",
                issue.diagnostics
            );
            let at = issue.expression.first().map_or("", String::as_str);
            assert_eq!(at, expression, "{xml}: {}", issue.diagnostics);
        }
    }

    #[test]
    fn positions_are_lines_and_columns() {
        let xml =
            "<Patient xmlns=\"http://hl7.org/fhir\">\n  <id value=\"a\"/>\n  <bogus/>\n</Patient>";
        let error = from_xml(xml.as_bytes()).unwrap_err();
        assert!(
            error.issues[0].diagnostics.ends_with("(line 3, column 3)"),
            "{error}"
        );
        let error = from_xml(b"<Patient xmlns=\"http://hl7.org/fhir\">\xff</Patient>").unwrap_err();
        assert!(
            error.to_string().contains("not UTF-8 (line 1, column 38)"),
            "{error}"
        );
    }

    #[test]
    fn invalid_values_are_value_issues() {
        let error =
            from_xml(br#"<Patient xmlns="http://hl7.org/fhir"><active value="1"/></Patient>"#)
                .unwrap_err();
        assert_eq!(error.code(), IssueType::Value);
        assert_eq!(error.status(), 400);
    }

    #[test]
    fn nesting_is_bounded() {
        let depth = MAX_DEPTH + 1;
        let xml = format!(
            "<Questionnaire xmlns=\"http://hl7.org/fhir\">{}{}</Questionnaire>",
            "<item>".repeat(depth),
            "</item>".repeat(depth)
        );
        let error = from_xml(xml.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("nested deeper"), "{error}");
        let extensions = format!(
            "<Patient xmlns=\"http://hl7.org/fhir\"><active value=\"true\">{}{}</active></Patient>",
            "<extension url=\"u\">".repeat(depth),
            "</extension>".repeat(depth)
        );
        let error = from_xml(extensions.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("nested deeper"), "{error}");
    }

    #[test]
    fn the_billion_laughs_is_refused_before_any_expansion() {
        let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<Patient xmlns="http://hl7.org/fhir"><name><text value="&lol3;"/></name></Patient>"#;
        let error = from_xml(bomb.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("DTD"), "{error}");
        let without_dtd =
            r#"<Patient xmlns="http://hl7.org/fhir"><name><text value="&lol3;"/></name></Patient>"#;
        assert!(from_xml(without_dtd.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("not defined"));
    }
}
