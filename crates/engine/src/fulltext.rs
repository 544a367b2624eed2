//! The text `_text` and `_content` search: a resource's narrative as plain text, and all of
//! its text (every string value, the narrative's text included).

use serde_json::Value;

/// The narrative (`text.div`) without its markup, entities decoded.
pub fn narrative(resource: &Value) -> String {
    resource["text"]["div"]
        .as_str()
        .map(strip_markup)
        .unwrap_or_default()
}

/// Every string value of the resource, nested and contained resources included, separated by
/// spaces; the narrative contributes its text rather than its markup.
pub fn content(resource: &Value) -> String {
    let mut out = String::new();
    collect(resource, None, &mut out);
    out
}

fn collect(value: &Value, key: Option<&str>, out: &mut String) {
    match value {
        Value::String(s) => {
            let text = if key == Some("div") {
                strip_markup(s)
            } else {
                s.clone()
            };
            if !text.is_empty() {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(&text);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, key, out)),
        Value::Object(map) => {
            for (k, v) in map {
                // Binary data is not text.
                if k != "data" || !v.is_string() {
                    collect(v, Some(k), out);
                }
            }
        }
        _ => {}
    }
}

/// XHTML to text: tags become spaces, character references are decoded.
fn strip_markup(xhtml: &str) -> String {
    let mut out = String::with_capacity(xhtml.len());
    let mut rest = xhtml;
    while let Some(c) = rest.chars().next() {
        match c {
            '<' => {
                rest = rest.find('>').map_or("", |end| &rest[end + 1..]);
                out.push(' ');
            }
            '&' => {
                let end = rest.find(';').filter(|&e| e <= 10);
                let decoded = end.and_then(|e| decode_entity(&rest[1..e]));
                match (end, decoded) {
                    (Some(e), Some(ch)) => {
                        out.push(ch);
                        rest = &rest[e + 1..];
                    }
                    _ => {
                        out.push('&');
                        rest = &rest[1..];
                    }
                }
            }
            _ => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn decode_entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        _ => {
            let number = name.strip_prefix('#')?;
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            char::from_u32(code)?
        }
    })
}

/// The words of a `_text`/`_content` value: what the full-text index tokenizes as words
/// (letters and digits), so that punctuation in a query never becomes query syntax.
pub fn words(value: &str) -> Vec<String> {
    value
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn narrative_is_text_without_markup() {
        let r = json!({"text": {"div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Fever &amp; <b>cough</b>&#160;since&#x20;Monday</p></div>"}});
        assert_eq!(narrative(&r), "Fever & cough since Monday");
        assert_eq!(narrative(&json!({})), "");
    }

    #[test]
    fn content_holds_every_string_once() {
        let r = json!({"resourceType": "Patient", "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
                       "text": {"div": "<div>Peter <i>Chalmers</i></div>"}, "active": true,
                       "photo": [{"data": "AAAA", "title": "portrait"}]});
        let c = content(&r);
        assert!(c.contains("Chalmers") && c.contains("James") && c.contains("portrait"));
        assert!(c.contains("Peter Chalmers") && !c.contains("<i>"));
        assert!(!c.contains("AAAA") && !c.contains("true"));
    }

    #[test]
    fn words_drop_query_syntax() {
        assert_eq!(words("\"heart\" OR-attack*"), vec!["heart", "OR", "attack"]);
        assert!(words(" ,; ").is_empty());
    }
}
