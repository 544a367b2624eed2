//! `Narrative.div`: XHTML markup, embedded as XML in the XHTML namespace in FHIR XML and held
//! as a string in FHIR JSON (`<div xmlns="http://www.w3.org/1999/xhtml">…</div>`).
//!
//! Both directions carry the markup over as written rather than re-serialising it, so a round
//! trip gives back the same string. What is checked on the way: well-formedness, that every
//! element is XHTML, that references are predefined entities or character references, and
//! that no attribute uses a namespace prefix other than `xml`/`xmlns` (the declaration of any
//! other would be lost outside the document). Only two things are rewritten: the `xmlns`
//! declaration the JSON form requires is added where the div lacks it, and on reading, an
//! XHTML element written with a namespace prefix loses it.

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, QName, ResolveResult};
use quick_xml::NsReader;

mod scan;

use crate::escape::{decode_attribute_value, find_forbidden, resolve_reference};
use crate::XHTML_NAMESPACE;
use scan::{scan, Scan};

const DECLARATION: &str = " xmlns=\"http://www.w3.org/1999/xhtml\"";

/// A problem in the narrative, with the byte offset where it was found (relative to the
/// string given, for [`write_div`]; absolute in the document, for [`read_div`]).
#[derive(Debug)]
pub(crate) struct DivError {
    pub message: String,
    pub offset: usize,
}

impl DivError {
    fn new(message: impl Into<String>, offset: u64) -> DivError {
        DivError {
            message: message.into(),
            offset: usize::try_from(offset).unwrap_or(usize::MAX),
        }
    }
}

fn is_xhtml(resolved: &ResolveResult<'_>) -> bool {
    matches!(resolved, ResolveResult::Bound(Namespace(ns)) if *ns == XHTML_NAMESPACE.as_bytes())
}

fn display(name: QName<'_>) -> String {
    String::from_utf8_lossy(name.as_ref()).into_owned()
}

/// Checks the attributes of an element of the narrative: well-formed, values with valid
/// references only, no prefixes but `xml` and `xmlns`.
fn check_attributes(start: &BytesStart<'_>, offset: u64) -> Result<(), DivError> {
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| DivError::new(e.to_string(), offset))?;
        let key = attribute.key;
        if let Some(prefix) = key.prefix() {
            if !matches!(prefix.as_ref(), b"xml" | b"xmlns") {
                return Err(DivError::new(
                    format!(
                        "the attribute '{}' in the narrative has a namespace prefix; only XHTML attributes are allowed",
                        display(key)
                    ),
                    offset,
                ));
            }
        }
        let raw = std::str::from_utf8(&attribute.value)
            .map_err(|_| DivError::new("the narrative is not UTF-8", offset))?;
        decode_attribute_value(raw).map_err(|m| DivError::new(m, offset))?;
    }
    Ok(())
}

/// Appends the JSON form of a narrative `div` to an XML document being written.
pub(crate) fn write_div(out: &mut Vec<u8>, div: &str, max_depth: usize) -> Result<(), DivError> {
    let div = div.trim_matches([' ', '\t', '\r', '\n']);
    if let Some(c) = find_forbidden(div) {
        return Err(DivError::new(c.to_string(), 0));
    }
    if !div.starts_with("<div") {
        return Err(DivError::new(
            "the narrative must be a <div> element in the XHTML namespace",
            0,
        ));
    }
    let declare = match scan(div, max_depth)? {
        Scan::Plain { declare } => declare,
        Scan::Namespaced => check_namespaced(div, max_depth)?,
    };
    out.extend_from_slice(b"<div");
    if declare {
        out.extend_from_slice(DECLARATION.as_bytes());
    }
    out.extend_from_slice(&div.as_bytes()[4..]);
    Ok(())
}

/// The check of a div (starting with `<div`) that uses namespace prefixes, by the
/// namespace-aware parser; tells whether the div lacks its `xmlns` declaration.
fn check_namespaced(div: &str, max_depth: usize) -> Result<bool, DivError> {
    let mut reader = NsReader::from_str(div);
    reader.config_mut().check_comments = true;
    let mut depth = 0usize;
    let mut declare = false;
    loop {
        let offset = reader.buffer_position();
        let (resolved, event) = reader
            .read_resolved_event()
            .map_err(|e| DivError::new(format!("the narrative is not well-formed: {e}"), offset))?;
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                if depth == 0 {
                    if offset != 0 || start.name().as_ref() != b"div" {
                        return Err(DivError::new(
                            "the narrative must be a single <div> element",
                            offset,
                        ));
                    }
                    // Without a declaration the div gets one, and its unprefixed
                    // descendants are XHTML with it.
                    declare = matches!(resolved, ResolveResult::Unbound);
                }
                let xhtml = is_xhtml(&resolved) || declare && resolved == ResolveResult::Unbound;
                if !xhtml {
                    return Err(DivError::new(
                        format!(
                            "the element <{}> in the narrative is not in the XHTML namespace",
                            display(start.name())
                        ),
                        offset,
                    ));
                }
                check_attributes(start, offset)?;
                if matches!(event, Event::Start(_)) {
                    depth += 1;
                    if depth > max_depth {
                        return Err(DivError::new("the narrative is nested too deeply", offset));
                    }
                } else if depth == 0 {
                    break;
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            Event::GeneralRef(reference) => {
                let name = String::from_utf8_lossy(&reference);
                resolve_reference(&name).map_err(|m| DivError::new(m, offset))?;
            }
            Event::Text(_) | Event::CData(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::DocType(_) | Event::Decl(_) => {
                return Err(DivError::new(
                    "the narrative may not contain a document type or XML declaration",
                    offset,
                ))
            }
            Event::Eof => return Err(DivError::new("the narrative <div> is not closed", offset)),
        }
    }
    let end = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
    if end != div.len() {
        return Err(DivError::new(
            "the narrative must be a single <div> element",
            end as u64,
        ));
    }
    Ok(declare)
}

/// Reads the rest of a narrative `div` whose start tag `reader` has just returned, and gives
/// its JSON form. `input` is the whole document and `start_offset` the offset of the div's
/// `<`; `empty` tells a `<div/>`.
pub(crate) fn read_div(
    reader: &mut NsReader<&[u8]>,
    input: &str,
    start: &BytesStart<'_>,
    start_offset: u64,
    empty: bool,
    max_depth: usize,
) -> Result<String, DivError> {
    let slice = |from: u64, to: u64| {
        let (from, to) = (
            usize::try_from(from).unwrap_or(usize::MAX),
            usize::try_from(to).unwrap_or(usize::MAX),
        );
        input
            .get(from..to)
            .ok_or_else(|| DivError::new("the narrative is not UTF-8", from as u64))
    };
    let tag_end = reader.buffer_position();
    check_attributes(start, start_offset)?;
    let mut out = String::new();
    // The div as written is kept unless it lacks its own default namespace declaration.
    let declared = start.name().as_ref() == b"div"
        && start
            .attributes()
            .flatten()
            .any(|a| a.key.as_ref() == b"xmlns" && a.value.as_ref() == XHTML_NAMESPACE.as_bytes());
    let mut copied = start_offset;
    if !declared {
        out.push_str("<div");
        out.push_str(DECLARATION);
        write_attributes(&mut out, start, start_offset)?;
        out.push_str(if empty { "/>" } else { ">" });
        copied = tag_end;
    }
    let mut depth = usize::from(!empty);
    while depth > 0 {
        let offset = reader.buffer_position();
        let (resolved, event) = reader
            .read_resolved_event()
            .map_err(|e| DivError::new(format!("the narrative is not well-formed: {e}"), offset))?;
        let in_xhtml = is_xhtml(&resolved);
        let after = reader.buffer_position();
        match event {
            Event::Start(ref element) | Event::Empty(ref element) => {
                if !in_xhtml {
                    return Err(DivError::new(
                        format!(
                            "the element <{}> in the narrative is not in the XHTML namespace",
                            display(element.name())
                        ),
                        offset,
                    ));
                }
                check_attributes(element, offset)?;
                let is_start = matches!(event, Event::Start(_));
                if element.name().prefix().is_some() {
                    out.push_str(slice(copied, offset)?);
                    out.push('<');
                    out.push_str(slice_name(element.local_name().as_ref())?);
                    write_attributes(&mut out, element, offset)?;
                    out.push_str(if is_start { ">" } else { "/>" });
                    copied = after;
                }
                if is_start {
                    depth += 1;
                    if depth > max_depth {
                        return Err(DivError::new("the narrative is nested too deeply", offset));
                    }
                }
            }
            Event::End(ref element) => {
                depth -= 1;
                if element.name().prefix().is_some() {
                    out.push_str(slice(copied, offset)?);
                    out.push_str("</");
                    out.push_str(slice_name(element.local_name().as_ref())?);
                    out.push('>');
                    copied = after;
                }
            }
            Event::GeneralRef(reference) => {
                let name = String::from_utf8_lossy(&reference);
                resolve_reference(&name).map_err(|m| DivError::new(m, offset))?;
            }
            Event::Text(_) | Event::CData(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::DocType(_) | Event::Decl(_) => {
                return Err(DivError::new(
                    "the narrative may not contain a document type or XML declaration",
                    offset,
                ))
            }
            Event::Eof => return Err(DivError::new("the narrative <div> is not closed", offset)),
        }
    }
    out.push_str(slice(copied, reader.buffer_position())?);
    // What is read must be writable: the JSON form passes the check `write_div` makes (which
    // is stricter than the parser about names, comments and `]]>` in text).
    if let Some(c) = find_forbidden(&out) {
        return Err(DivError::new(c.to_string(), start_offset));
    }
    match scan(&out, max_depth) {
        Ok(Scan::Plain { .. }) => Ok(out),
        Ok(Scan::Namespaced) => Err(DivError::new(
            "the narrative uses a namespace prefix that is not XHTML",
            start_offset,
        )),
        Err(e) => Err(DivError {
            message: e.message,
            offset: usize::try_from(start_offset)
                .unwrap_or(usize::MAX)
                .saturating_add(e.offset),
        }),
    }
}

fn slice_name(name: &[u8]) -> Result<&str, DivError> {
    std::str::from_utf8(name).map_err(|_| DivError::new("the narrative is not UTF-8", 0))
}

/// Writes the attributes of a rewritten start tag, double-quoted, leaving out default
/// namespace declarations (the element's namespace is the div's own default).
fn write_attributes(out: &mut String, start: &BytesStart<'_>, offset: u64) -> Result<(), DivError> {
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| DivError::new(e.to_string(), offset))?;
        let key = slice_name(attribute.key.as_ref())?;
        if key == "xmlns" {
            continue;
        }
        let value = std::str::from_utf8(&attribute.value)
            .map_err(|_| DivError::new("the narrative is not UTF-8", offset))?;
        out.push(' ');
        out.push_str(key);
        out.push_str("=\"");
        // A value written in single quotes may hold a double quote.
        out.push_str(&value.replace('"', "&quot;"));
        out.push('"');
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(div: &str) -> Result<String, String> {
        let mut out = Vec::new();
        write_div(&mut out, div, 64).map_err(|e| e.message)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn read(document: &str) -> Result<String, String> {
        let mut reader = NsReader::from_str(document);
        loop {
            let offset = reader.buffer_position();
            match reader.read_resolved_event().unwrap() {
                (_, Event::Start(start)) if start.local_name().as_ref() == b"div" => {
                    let start = start.into_owned();
                    return read_div(&mut reader, document, &start, offset, false, 64)
                        .map_err(|e| e.message);
                }
                (_, Event::Empty(start)) if start.local_name().as_ref() == b"div" => {
                    let start = start.into_owned();
                    return read_div(&mut reader, document, &start, offset, true, 64)
                        .map_err(|e| e.message);
                }
                (_, Event::Eof) => panic!("no div"),
                _ => {}
            }
        }
    }

    #[test]
    fn json_divs_are_embedded_as_written() {
        let div = "<div xmlns=\"http://www.w3.org/1999/xhtml\">\n  <p class='x'>a &amp; b &#160; <br/><!-- c --></p>\n</div>";
        assert_eq!(written(div).unwrap(), div);
        assert_eq!(
            written("<div><p>x</p></div>").unwrap(),
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>x</p></div>"
        );
        assert_eq!(
            written(" <div xmlns=\"http://www.w3.org/1999/xhtml\"/>\n").unwrap(),
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"/>"
        );
    }

    #[test]
    fn bad_json_divs_are_refused() {
        let cases = [
            ("<p>x</p>", "must be a <div>"),
            ("text", "must be a <div>"),
            ("<div><p>x</div>", "not well-formed"),
            ("<div>", "not closed"),
            ("<div></div><div></div>", "single <div>"),
            ("<div></div>trailing", "single <div>"),
            ("<div>&nbsp;</div>", "not defined"),
            ("<div title=\"&bogus;\"></div>", "not defined"),
            ("<div>\u{1}</div>", "U+0001"),
            ("<div xmlns=\"urn:other\"></div>", "not in the XHTML namespace"),
            (
                "<div xmlns=\"http://www.w3.org/1999/xhtml\"><svg xmlns=\"http://www.w3.org/2000/svg\"/></div>",
                "not in the XHTML namespace",
            ),
            ("<div><x:p>1</x:p></div>", "<x:p> in the narrative is not in the XHTML namespace"),
            ("<div><p xlink:href=\"a\"/></div>", "namespace prefix"),
            ("<div><!DOCTYPE x></div>", "document type"),
        ];
        for (div, expected) in cases {
            let message = written(div).expect_err(div);
            assert!(message.contains(expected), "{div}: {message}");
        }
        let deep = format!("<div>{}{}</div>", "<b>".repeat(70), "</b>".repeat(70));
        assert!(written(&deep).unwrap_err().contains("too deeply"));
    }

    #[test]
    fn xml_divs_are_copied_as_written() {
        let div = "<div xmlns=\"http://www.w3.org/1999/xhtml\">\n\t<p>a &lt; b &#160;<br/></p><![CDATA[<x>]]>\n</div>";
        let document =
            format!("<Patient xmlns=\"http://hl7.org/fhir\"><text>{div}</text></Patient>");
        assert_eq!(read(&document).unwrap(), div);
        let empty = "<Patient><div xmlns=\"http://www.w3.org/1999/xhtml\"/></Patient>";
        assert_eq!(
            read(empty).unwrap(),
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"/>"
        );
    }

    #[test]
    fn xml_divs_get_the_default_namespace_form() {
        let document = "<f:Patient xmlns:f=\"http://hl7.org/fhir\" xmlns:h=\"http://www.w3.org/1999/xhtml\"><f:text><h:div class='a\"b'><h:p>x<h:br/></h:p><p xmlns=\"http://www.w3.org/1999/xhtml\">y</p></h:div></f:text></f:Patient>";
        assert_eq!(
            read(document).unwrap(),
            "<div xmlns=\"http://www.w3.org/1999/xhtml\" class=\"a&quot;b\"><p>x<br/></p><p xmlns=\"http://www.w3.org/1999/xhtml\">y</p></div>"
        );
        let inherited = "<f:Patient xmlns:f=\"http://hl7.org/fhir\" xmlns=\"http://www.w3.org/1999/xhtml\"><div><p>x</p></div></f:Patient>";
        assert_eq!(
            read(inherited).unwrap(),
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>x</p></div>"
        );
    }

    #[test]
    fn bad_xml_divs_are_refused() {
        let cases = [
            (
                "<P><div xmlns=\"http://www.w3.org/1999/xhtml\"><p>&nbsp;</p></div></P>",
                "not defined",
            ),
            (
                "<P><div xmlns=\"http://www.w3.org/1999/xhtml\"><o:p xmlns:o=\"urn:o\"/></div></P>",
                "not in the XHTML namespace",
            ),
            (
                "<P><div xmlns=\"http://www.w3.org/1999/xhtml\"><p>",
                "not closed",
            ),
        ];
        for (document, expected) in cases {
            let message = read(document).expect_err(document);
            assert!(message.contains(expected), "{document}: {message}");
        }
    }
}
