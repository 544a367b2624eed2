//! A fast well-formedness check of a narrative given as a JSON string, for the common case:
//! one pass over the bytes, no allocation but the stack of open element names.
//!
//! It accepts a subset of what the namespace-aware parser accepts (it is stricter about
//! names, `]]>` in text and comments), and hands over to that parser, by returning
//! [`Scan::Namespaced`], as soon as it meets an element name with a namespace prefix.

use super::DivError;
use crate::escape::{resolve_reference, shorten};
use crate::XHTML_NAMESPACE;

/// What the scan found out about a well-formed div.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Scan {
    /// Well-formed, unprefixed XHTML; `declare` when the div lacks its `xmlns` declaration.
    Plain { declare: bool },
    /// Uses prefixed element names: the namespace-aware check decides.
    Namespaced,
}

/// Checks `div`, which starts with `<div`.
pub(super) fn scan(div: &str, max_depth: usize) -> Result<Scan, DivError> {
    let mut scanner = Scanner {
        s: div.as_bytes(),
        pos: 0,
        attributes: Vec::new(),
    };
    scanner.run(max_depth)
}

struct Scanner<'d> {
    s: &'d [u8],
    pos: usize,
    /// The attribute names of the tag being read, for the duplicate check.
    attributes: Vec<&'d [u8]>,
}

/// The end of a start tag.
enum Tag {
    Open,
    Empty,
    Prefixed,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Bytes that may start a name (bit 0) and continue one (bit 1). Non-ASCII bytes are
/// accepted as name characters without looking closer: the input is valid UTF-8.
static NAME: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            table[b] = 0b11;
        } else if c.is_ascii_digit() || c == b'-' || c == b'.' || c == b':' {
            table[b] = 0b10;
        }
        b += 1;
    }
    table
};

fn is_name_start(b: u8) -> bool {
    NAME[usize::from(b)] & 0b01 != 0
}

fn is_name_byte(b: u8) -> bool {
    NAME[usize::from(b)] & 0b10 != 0
}

impl<'d> Scanner<'d> {
    fn error(&self, message: impl Into<String>) -> DivError {
        DivError {
            message: message.into(),
            offset: self.pos,
        }
    }

    fn malformed(&self, what: &str) -> DivError {
        self.error(format!("the narrative is not well-formed: {what}"))
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn starts_with(&self, prefix: &[u8]) -> bool {
        self.s[self.pos..].starts_with(prefix)
    }

    fn skip_spaces(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(is_space) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// An XML name at the current position.
    fn name(&mut self) -> Result<&'d [u8], DivError> {
        let start = self.pos;
        if !self.peek().is_some_and(is_name_start) {
            return Err(self.malformed("a name was expected"));
        }
        while self.peek().is_some_and(is_name_byte) {
            self.pos += 1;
        }
        Ok(&self.s[start..self.pos])
    }

    /// Moves past the next occurrence of `end`; returns what came before it.
    fn until(&mut self, end: &[u8], what: &str) -> Result<&'d [u8], DivError> {
        let start = self.pos;
        match self.s[start..].windows(end.len()).position(|w| w == end) {
            Some(i) => {
                self.pos = start + i + end.len();
                Ok(&self.s[start..start + i])
            }
            None => Err(self.malformed(&format!("{what} is not closed"))),
        }
    }

    /// A reference after its `&`.
    fn reference(&mut self) -> Result<(), DivError> {
        let start = self.pos;
        let end = self.s[start..]
            .iter()
            .take(40)
            .position(|&b| b == b';')
            .ok_or_else(|| self.malformed("an '&' must start a reference such as &amp;"))?;
        let name = std::str::from_utf8(&self.s[start..start + end])
            .map_err(|_| self.malformed("invalid reference"))?;
        resolve_reference(name).map_err(|m| self.error(m))?;
        self.pos = start + end + 1;
        Ok(())
    }

    fn run(&mut self, max_depth: usize) -> Result<Scan, DivError> {
        // The root: `<div`, checked by the caller.
        self.pos = 1;
        let mut declared = false;
        let root = match self.start_tag(Some(&mut declared))? {
            Tag::Prefixed => return Ok(Scan::Namespaced),
            tag => tag,
        };
        let mut open: Vec<&'d [u8]> = Vec::new();
        if let Tag::Open = root {
            open.push(b"div");
        }
        while let Some(&current) = open.last() {
            let Some(i) = self.s[self.pos..]
                .iter()
                .position(|&b| matches!(b, b'<' | b'&' | b']'))
            else {
                return Err(self.error(format!(
                    "the narrative <{}> is not closed",
                    String::from_utf8_lossy(current)
                )));
            };
            self.pos += i;
            match self.s[self.pos] {
                b'&' => {
                    self.pos += 1;
                    self.reference()?;
                }
                b']' => {
                    if self.starts_with(b"]]>") {
                        return Err(self.malformed("']]>' is not allowed in text"));
                    }
                    self.pos += 1;
                }
                _ => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b'/') => {
                            self.pos += 1;
                            let name = self.name()?;
                            self.skip_spaces();
                            if self.peek() != Some(b'>') || name != current {
                                return Err(self.malformed(&format!(
                                    "</{}> does not close <{}>",
                                    shorten(&String::from_utf8_lossy(name)),
                                    String::from_utf8_lossy(current)
                                )));
                            }
                            self.pos += 1;
                            open.pop();
                        }
                        Some(b'!') => self.markup_declaration()?,
                        Some(b'?') => {
                            self.pos += 1;
                            let target = self.name()?;
                            if target.eq_ignore_ascii_case(b"xml") {
                                return Err(
                                    self.error("the narrative may not contain an XML declaration")
                                );
                            }
                            self.until(b"?>", "a processing instruction")?;
                        }
                        _ => {
                            let name_start = self.pos;
                            match self.start_tag(None)? {
                                Tag::Prefixed => return Ok(Scan::Namespaced),
                                Tag::Empty => {}
                                Tag::Open => {
                                    if open.len() >= max_depth {
                                        return Err(
                                            self.error("the narrative is nested too deeply")
                                        );
                                    }
                                    let name_end = self.s[name_start..]
                                        .iter()
                                        .position(|&b| !is_name_byte(b))
                                        .map_or(self.s.len(), |i| name_start + i);
                                    open.push(&self.s[name_start..name_end]);
                                }
                            }
                        }
                    }
                }
            }
        }
        if self.pos != self.s.len() {
            return Err(self.error("the narrative must be a single <div> element"));
        }
        Ok(Scan::Plain { declare: !declared })
    }

    /// `<!--…-->` and `<![CDATA[…]]>` after the `<`; anything else (`<!DOCTYPE`) is refused.
    fn markup_declaration(&mut self) -> Result<(), DivError> {
        if self.starts_with(b"!--") {
            self.pos += 3;
            let body = self.until(b"-->", "a comment")?;
            if body.windows(2).any(|w| w == b"--") || body.last() == Some(&b'-') {
                return Err(self.malformed("'--' is not allowed in a comment"));
            }
            Ok(())
        } else if self.starts_with(b"![CDATA[") {
            self.pos += 8;
            self.until(b"]]>", "a CDATA section").map(|_| ())
        } else {
            Err(self.error("the narrative may not contain a document type or other declaration"))
        }
    }

    /// A start tag after its `<` up to and including its `>`. For the root, `declared` learns
    /// whether it declares the XHTML namespace.
    fn start_tag(&mut self, mut declared: Option<&mut bool>) -> Result<Tag, DivError> {
        let name = if declared.is_some() {
            self.pos = 4; // after `<div`, which the caller checked
            &b"div"[..]
        } else {
            self.name()?
        };
        if name.contains(&b':') {
            return Ok(Tag::Prefixed);
        }
        self.attributes.clear();
        loop {
            let spaced = self.skip_spaces();
            match self.peek() {
                Some(b'>') => {
                    self.pos += 1;
                    return Ok(Tag::Open);
                }
                Some(b'/') if self.starts_with(b"/>") => {
                    self.pos += 2;
                    return Ok(Tag::Empty);
                }
                Some(_) if spaced => {}
                Some(_) => return Err(self.malformed("a space, '>' or '/>' was expected")),
                None => return Err(self.malformed("a start tag is not closed")),
            }
            let key = self.name()?;
            self.skip_spaces();
            if self.peek() != Some(b'=') {
                return Err(self.malformed("an attribute needs a value"));
            }
            self.pos += 1;
            self.skip_spaces();
            let quote = match self.peek() {
                Some(q @ (b'"' | b'\'')) => q,
                _ => return Err(self.malformed("an attribute value must be quoted")),
            };
            self.pos += 1;
            let value_start = self.pos;
            let Some(length) = self.s[value_start..].iter().position(|&b| b == quote) else {
                return Err(self.malformed("an attribute value is not closed"));
            };
            let value = &self.s[value_start..value_start + length];
            self.attribute(key, value, declared.as_deref_mut())?;
            self.pos = value_start + length + 1;
        }
    }

    fn attribute(
        &mut self,
        key: &'d [u8],
        value: &'d [u8],
        declared: Option<&mut bool>,
    ) -> Result<(), DivError> {
        let display = || shorten(&String::from_utf8_lossy(key));
        if self.attributes.contains(&key) {
            return Err(self.malformed(&format!("the attribute '{}' appears twice", display())));
        }
        self.attributes.push(key);
        let colon = key.iter().position(|&b| b == b':');
        if let Some((prefix, local)) = colon.map(|i| (&key[..i], &key[i + 1..])) {
            match prefix {
                b"xml" => {}
                b"xmlns" if !value.is_empty() && local != b"xml" && local != b"xmlns" => {}
                b"xmlns" => {
                    return Err(self.malformed(&format!(
                        "invalid namespace declaration '{}'",
                        display()
                    )))
                }
                _ => {
                    return Err(self.error(format!(
                        "the attribute '{}' in the narrative has a namespace prefix; only XHTML attributes are allowed",
                        display()
                    )))
                }
            }
        } else if key == b"xmlns" {
            if value != XHTML_NAMESPACE.as_bytes() {
                return Err(self.error(format!(
                    "an element in the narrative is in the namespace '{}', not in the XHTML namespace",
                    shorten(&String::from_utf8_lossy(value))
                )));
            }
            if let Some(declared) = declared {
                *declared = true;
            }
        }
        // The value: no markup, references valid.
        let mut i = 0;
        while let Some(j) = value[i..].iter().position(|&b| b == b'&' || b == b'<') {
            let at = i + j;
            if value[at] == b'<' {
                return Err(self.malformed("an attribute value may not contain '<'"));
            }
            let Some(end) = value[at..].iter().take(40).position(|&b| b == b';') else {
                return Err(self.malformed("an '&' must start a reference such as &amp;"));
            };
            let name = std::str::from_utf8(&value[at + 1..at + end])
                .map_err(|_| self.malformed("invalid reference"))?;
            resolve_reference(name).map_err(|m| self.error(m))?;
            i = at + end + 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanned(div: &str) -> Result<Scan, String> {
        scan(div, 16).map_err(|e| e.message)
    }

    #[test]
    fn well_formed_divs_pass() {
        let cases = [
            ("<div/>", true),
            ("<div xmlns=\"http://www.w3.org/1999/xhtml\"/>", false),
            ("<div xmlns='http://www.w3.org/1999/xhtml'></div >", false),
            (
                "<div xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\">\n<p class = 'a&amp;b'>x &lt; y &#160; ] ]]</p><br/><!-- - c --><![CDATA[<&]]><?pi x?></div>",
                false,
            ),
            ("<div><table><tr><td colspan=\"2\">é</td></tr></table></div>", true),
        ];
        for (div, declare) in cases {
            assert_eq!(scanned(div), Ok(Scan::Plain { declare }), "{div}");
        }
        assert_eq!(
            scanned("<div><h:p xmlns:h='x'/></div>"),
            Ok(Scan::Namespaced)
        );
    }

    #[test]
    fn malformed_divs_fail() {
        let cases = [
            ("<div>", "not closed"),
            ("<div><p></div>", "does not close"),
            ("<div></p>", "does not close"),
            ("<div a='1' a='2'/>", "appears twice"),
            ("<div a=1/>", "must be quoted"),
            ("<div a/>", "needs a value"),
            ("<div a='1'b='2'/>", "a space"),
            ("<div a='<'/>", "may not contain '<'"),
            ("<div a='&x;'/>", "not defined"),
            ("<div>&nbsp;</div>", "not defined"),
            ("<div>a & b</div>", "must start a reference"),
            ("<div>]]></div>", "']]>'"),
            ("<div><!-- a -- b --></div>", "'--'"),
            ("<div><!DOCTYPE x></div>", "document type"),
            ("<div><?xml version='1.0'?></div>", "XML declaration"),
            ("<div></div><p/>", "single <div>"),
            ("<div/>x", "single <div>"),
            ("<div xmlns='urn:x'/>", "not in the XHTML namespace"),
            (
                "<div><svg xmlns='http://www.w3.org/2000/svg'/></div>",
                "not in the XHTML namespace",
            ),
            ("<div><p xlink:href='x'/></div>", "namespace prefix"),
            ("<div xmlns:a=''/>", "namespace declaration"),
            ("<div><1p/></div>", "name was expected"),
            ("<div", "not closed"),
        ];
        for (div, expected) in cases {
            let message = scanned(div).expect_err(div);
            assert!(message.contains(expected), "{div}: {message}");
        }
        let deep = format!("<div>{}{}</div>", "<b>".repeat(20), "</b>".repeat(20));
        assert!(scanned(&deep).unwrap_err().contains("too deeply"));
    }
}
