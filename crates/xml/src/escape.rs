//! Attribute values: escaping on the way out (so that attribute-value normalisation keeps
//! every character), decoding and normalising on the way in, and the characters XML 1.0
//! cannot carry at all.

use std::borrow::Cow;

/// What a byte of UTF-8 needs when written into a double-quoted attribute value.
const PLAIN: u8 = 0;
const ESCAPE: u8 = 1;
const FORBIDDEN: u8 = 2;
/// `0xEF` starts U+FFFE and U+FFFF, which XML cannot carry; look closer.
const CHECK: u8 = 3;

static CLASS: [u8; 256] = {
    let mut table = [PLAIN; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = FORBIDDEN;
        b += 1;
    }
    table[b'\t' as usize] = ESCAPE;
    table[b'\n' as usize] = ESCAPE;
    table[b'\r' as usize] = ESCAPE;
    table[b'&' as usize] = ESCAPE;
    table[b'<' as usize] = ESCAPE;
    table[b'>' as usize] = ESCAPE;
    table[b'"' as usize] = ESCAPE;
    table[0xEF] = CHECK;
    table
};

/// A character that no XML 1.0 document can contain, not even as a character reference.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ForbiddenChar(pub char);

impl std::fmt::Display for ForbiddenChar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the character U+{:04X} cannot be represented in XML",
            u32::from(self.0)
        )
    }
}

/// Appends `value` escaped for a double-quoted attribute.
pub(crate) fn write_attribute_value(out: &mut Vec<u8>, value: &str) -> Result<(), ForbiddenChar> {
    let bytes = value.as_bytes();
    // Most values need nothing: find out with a branch-free pass the compiler vectorises.
    let special = bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'&') | (b == b'<') | (b == b'>') | (b == b'"') | (b == 0xEF)
    });
    if !special {
        out.extend_from_slice(bytes);
        return Ok(());
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let class = CLASS[usize::from(b)];
        if class == PLAIN {
            continue;
        }
        let replacement: &[u8] = match (class, b) {
            (ESCAPE, b'&') => b"&amp;",
            (ESCAPE, b'<') => b"&lt;",
            (ESCAPE, b'>') => b"&gt;",
            (ESCAPE, b'"') => b"&quot;",
            (ESCAPE, b'\t') => b"&#9;",
            (ESCAPE, b'\n') => b"&#10;",
            (ESCAPE, b'\r') => b"&#13;",
            (CHECK, _) => {
                if let [0xBF, last @ (0xBE | 0xBF), ..] = bytes[i + 1..] {
                    return Err(ForbiddenChar(if last == 0xBE {
                        '\u{FFFE}'
                    } else {
                        '\u{FFFF}'
                    }));
                }
                continue;
            }
            _ => return Err(ForbiddenChar(char::from(b))),
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(replacement);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    Ok(())
}

/// Whether XML 1.0 allows the character (production `Char`).
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// The first character of `text` that XML cannot carry.
pub(crate) fn find_forbidden(text: &str) -> Option<ForbiddenChar> {
    find_forbidden_at(text).map(|(_, c)| c)
}

/// The first character of `text` that XML cannot carry, with its byte offset.
pub(crate) fn find_forbidden_at(text: &str) -> Option<(usize, ForbiddenChar)> {
    text.bytes()
        .any(|b| matches!(CLASS[usize::from(b)], FORBIDDEN | CHECK))
        .then(|| {
            text.char_indices()
                .find(|&(_, c)| !is_xml_char(c))
                .map(|(i, c)| (i, ForbiddenChar(c)))
        })
        .flatten()
}

/// Resolves an entity or character reference without its `&` and `;` (`amp`, `#10`, `#x1F`):
/// the five predefined entities and character references of allowed characters only.
pub(crate) fn resolve_reference(name: &str) -> Result<char, String> {
    let c = match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => {
            let Some(number) = name.strip_prefix('#') else {
                return Err(format!(
                    "the entity '&{}' is not defined (XML documents for FHIR have no DTD)",
                    shorten(name)
                ));
            };
            let code = match number.strip_prefix('x') {
                Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    u32::from_str_radix(hex, 16).ok()
                }
                None if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) => {
                    number.parse().ok()
                }
                _ => None,
            };
            match code.and_then(char::from_u32) {
                Some(c) if is_xml_char(c) => c,
                _ => {
                    return Err(format!(
                        "'&{};' is not a valid character reference",
                        shorten(name)
                    ))
                }
            }
        }
    };
    Ok(c)
}

/// Decodes a raw attribute value as XML requires: references resolved, and each literal tab,
/// newline or carriage return (a `\r\n` pair counting once) normalised to a space.
pub(crate) fn decode_attribute_value(raw: &str) -> Result<Cow<'_, str>, String> {
    if !raw
        .bytes()
        .any(|b| matches!(b, b'&' | b'\t' | b'\n' | b'\r' | b'<'))
    {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find(['&', '\t', '\n', '\r', '<']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        match tail.as_bytes()[0] {
            b'&' => {
                let Some(end) = tail.find(';') else {
                    return Err("an '&' in an attribute value must start a reference".into());
                };
                out.push(resolve_reference(&tail[1..end])?);
                rest = &tail[end + 1..];
            }
            b'<' => return Err("an attribute value may not contain '<'".into()),
            b'\r' if tail.as_bytes().get(1) == Some(&b'\n') => {
                out.push(' ');
                rest = &tail[2..];
            }
            _ => {
                out.push(' ');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// At most 40 characters of `text`, for messages.
pub(crate) fn shorten(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(value: &str) -> Result<String, ForbiddenChar> {
        let mut out = Vec::new();
        write_attribute_value(&mut out, value)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn attribute_values_escape_markup_and_whitespace() {
        let cases = [
            ("plain", "plain"),
            (
                "a & b < c > d \"e\" 'f'",
                "a &amp; b &lt; c &gt; d &quot;e&quot; 'f'",
            ),
            ("line\nnext\r\n\tend", "line&#10;next&#13;&#10;&#9;end"),
            ("ünïcødé ✓ 𝄞", "ünïcødé ✓ 𝄞"),
            ("\u{FFFD}\u{EFFF}", "\u{FFFD}\u{EFFF}"),
        ];
        for (input, expected) in cases {
            assert_eq!(escaped(input).unwrap(), expected, "{input:?}");
        }
        assert_eq!(escaped("a\u{1}b"), Err(ForbiddenChar('\u{1}')));
        assert_eq!(escaped("a\u{FFFE}"), Err(ForbiddenChar('\u{FFFE}')));
        assert_eq!(escaped("\u{FFFF}"), Err(ForbiddenChar('\u{FFFF}')));
        assert_eq!(find_forbidden("ok\u{EFBF}\n"), None);
        assert_eq!(find_forbidden("no\u{0}"), Some(ForbiddenChar('\u{0}')));
    }

    #[test]
    fn attribute_values_decode_references_and_normalise_whitespace() {
        let cases = [
            ("plain", "plain"),
            ("a &amp; b &lt;&gt;&quot;&apos;", "a & b <>\"'"),
            ("&#10;&#x9;&#13;&#xD;", "\n\t\r\r"),
            ("a\nb\tc\r\nd\re", "a b c d e"),
            ("&#x1D11E;", "𝄞"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                decode_attribute_value(input).unwrap(),
                expected,
                "{input:?}"
            );
        }
        for bad in [
            "&nbsp;",
            "&",
            "&#;",
            "&#x;",
            "&#1;",
            "&#xD800;",
            "&#99999999999;",
            "a<b",
        ] {
            assert!(decode_attribute_value(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn escaping_round_trips_through_decoding() {
        let value = "tabs\tnewlines\nreturns\r\n& <markup> \"quoted\"";
        assert_eq!(
            decode_attribute_value(&escaped(value).unwrap()).unwrap(),
            value
        );
    }
}
