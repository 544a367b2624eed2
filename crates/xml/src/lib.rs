//! FHIR R4 XML ⇄ JSON conversion, driven by the type model of `flint-fhir`.
//!
//! Flint keeps resources as FHIR JSON (`serde_json::Value` with `preserve_order` and
//! `arbitrary_precision`); this crate converts them to the XML form of the specification for
//! clients that ask for `application/fhir+xml` ([`to_xml`], [`write_xml`],
//! [`write_xml_pretty`]) and back ([`from_xml`]). Stored JSON text can be written as XML
//! without building a `Value` first ([`write_xml_from_json`], [`write_xml_pretty_from_json`]):
//! the same bytes as [`write_xml`] of the parsed `Value`, at a fraction of the cost. Both
//! directions are pure functions of their input and the embedded R4 definitions: no IO, no
//! panics, bounded recursion whatever the input.
//!
//! ```
//! use serde_json::json;
//!
//! let patient = json!({"resourceType": "Patient", "active": true, "name": [{"given": ["Jo"]}]});
//! let xml = flint_xml::to_xml(&patient)?;
//! assert_eq!(
//!     xml,
//!     "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Patient xmlns=\"http://hl7.org/fhir\">\
//!      <active value=\"true\"/><name><given value=\"Jo\"/></name></Patient>"
//! );
//! assert_eq!(flint_xml::from_xml(xml.as_bytes())?, patient);
//! # Ok::<(), flint_fhir::Error>(())
//! ```
//!
//! # The R4 rules implemented
//!
//! These follow <https://hl7.org/fhir/R4/xml.html> and <https://hl7.org/fhir/R4/json.html>.
//!
//! - **Root and namespace.** The root element is named by `resourceType` and is in the
//!   namespace `http://hl7.org/fhir` (written as the default namespace); `resourceType` is not
//!   an element. Every FHIR element must be in that namespace; another namespace, a root that
//!   is not a resource type, or a missing root is an error.
//! - **Order.** Elements are written in the order of their type's definition (the model's
//!   `elements`), whatever the order of the JSON keys; a repeating element repeats the XML
//!   element. On reading, the elements of an object become JSON properties in document order
//!   (which is definition order in valid XML), `resourceType` first.
//! - **Primitives.** A primitive is an element with a `value` attribute:
//!   `<birthDate value="1970-01-01"/>`. Its element id and extensions, held in JSON by the
//!   `_birthDate` companion (`{"id": …, "extension": […]}`), become an `id` attribute and
//!   `<extension>` children. Arrays of primitives align item by item with their `_given`
//!   companion array, either of which holds `null` where an item has no value or no
//!   extensions; a primitive may carry extensions and no value.
//! - **Attributes.** `Element.id` (the id of any element that is not a resource) is an `id`
//!   attribute, `Extension.url` is a `url` attribute; a resource's own `id` is an element
//!   (`<id value="…"/>`). No other attributes exist in FHIR XML: namespace declarations and
//!   attributes in other namespaces (`xsi:schemaLocation`, `xml:lang`) are ignored on
//!   reading, any other attribute is an error.
//! - **Choice elements** carry their type as a suffix: `valueQuantity`, `deceasedBoolean`,
//!   `effectiveDateTime`, in both forms alike.
//! - **Numbers and booleans.** From JSON, numbers and booleans become `value` attributes with
//!   their text exactly as written (`1.0` stays `1.0`; numbers are never routed through
//!   `f64`). From XML, the model's primitive type decides: `integer`, `positiveInt`,
//!   `unsignedInt` and `decimal` become JSON numbers with the exact text, `boolean` becomes
//!   `true`/`false`, everything else a string. A value that is not a valid literal of its
//!   numeric or boolean type is an error in both directions, so that whatever [`to_xml`]
//!   writes, [`from_xml`] reads back.
//! - **Narrative.** `Narrative.div` is XHTML embedded as XML in the namespace
//!   `http://www.w3.org/1999/xhtml`; in JSON it is a string holding that XHTML,
//!   `<div xmlns="http://www.w3.org/1999/xhtml">…</div>`. The markup is carried over as
//!   written (no re-serialisation) after a well-formedness check, so a round trip is
//!   lossless; a JSON div without the `xmlns` declaration gets it, and an XML div whose
//!   namespace is declared elsewhere or by a prefix is rewritten to that default form.
//! - **Resources in resources** (`contained`, `Bundle.entry.resource`,
//!   `Bundle.entry.response.outcome`, `Parameters.parameter.resource`, any element typed
//!   `Resource`) are wrapped: `<contained><Patient>…</Patient></contained>`.
//! - **Text.** Attribute values are escaped so that they survive XML attribute-value
//!   normalisation: tabs, newlines and carriage returns are written as `&#9;`, `&#10;`,
//!   `&#13;`, and on reading, literal whitespace characters in attribute values become
//!   spaces as XML requires. Characters XML cannot carry at all (controls other than tab,
//!   newline and carriage return, U+FFFE, U+FFFF) are an error.
//! - **What a round trip normalises.** JSON → XML → JSON gives back the same JSON (as a
//!   value: key order aside) with three exceptions, all forms without meaning: a div without
//!   its `xmlns` declaration gets it, whitespace around the div is dropped, and a primitive's
//!   value or companion array holding only `null`s (`"_given": [null, null]`) is not written.
//!   A decimal's exponent read from XML is spelled as `serde_json` spells it when it parses
//!   JSON (`1E5` becomes `1e+5`), so XML and JSON input give the same value.
//! - **Unknown content** — an element or JSON property not in the model, text inside a FHIR
//!   element, an attribute FHIR does not define — is an error naming its location. Comments
//!   and processing instructions in XML input are ignored; the `fhir_comments` JSON property
//!   is not supported (it is an unknown property).
//!
//! # Errors
//!
//! Every problem is a [`flint_fhir::Error`] with a 400 status (`structure` for the shape of
//! the document, `value` for an invalid literal) whose issue carries the element path as its
//! `expression` (`Patient.name[0].given[1]`, in JSON property names) and, for XML input, the
//! line and column in its diagnostics.
//!
//! # Hostile input
//!
//! Document type declarations are refused, so no entity is ever expanded (no "billion
//! laughs"); only the five predefined entities and character references are understood.
//! Nesting is limited to [`MAX_DEPTH`] elements in both directions. The output of either
//! direction is proportional to its input.

mod escape;
mod json;
mod lexical;
mod location;
mod read;
mod schema;
mod write;
mod xhtml;

pub use read::from_xml;
pub use write::{
    to_xml, to_xml_pretty, write_xml, write_xml_from_json, write_xml_pretty,
    write_xml_pretty_from_json,
};

/// The FHIR namespace, the default namespace of every FHIR XML document.
pub const FHIR_NAMESPACE: &str = "http://hl7.org/fhir";

/// The XHTML namespace of `Narrative.div`.
pub const XHTML_NAMESPACE: &str = "http://www.w3.org/1999/xhtml";

/// The deepest nesting of XML elements read or written, the root and the narrative's XHTML
/// included. A valid resource is a few dozen levels deep; this leaves room for every resource
/// that passes `flint_fhir::validate` (at most 64 JSON levels, which a contained resource's
/// wrapper and a primitive's extensions can double) while bounding the recursion on any input.
pub const MAX_DEPTH: usize = 256;
