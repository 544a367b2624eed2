//! Small helpers for reading resource JSON without panicking on any shape.

use serde_json::Value;

/// The string at `key`, when it is one.
pub(crate) fn str_of<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

/// The boolean at `key`, when it is one.
pub(crate) fn bool_of(v: &Value, key: &str) -> Option<bool> {
    v.get(key).and_then(Value::as_bool)
}

/// The items of the array at `key`; nothing when it is missing or not an array.
pub(crate) fn array<'v>(v: &'v Value, key: &str) -> std::slice::Iter<'v, Value> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter())
        .unwrap_or_default()
}

/// A canonical URL without its `|version` suffix.
pub(crate) fn strip_version(canonical: &str) -> &str {
    canonical.split_once('|').map_or(canonical, |(url, _)| url)
}

/// A canonical URL split into the URL and the version after `|`, if any (an empty version
/// counts as none).
pub(crate) fn split_canonical(canonical: &str) -> (&str, Option<&str>) {
    match canonical.split_once('|') {
        Some((url, version)) if !version.is_empty() => (url, Some(version)),
        Some((url, _)) => (url, None),
        None => (canonical, None),
    }
}

/// The `value[x]` of an element (a concept property, a parameter): its key and value.
pub(crate) fn value_x(v: &Value) -> Option<(&str, &Value)> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.len() > 5 && k.starts_with("value"))
        .map(|(k, v)| (k.as_str(), v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonicals_split_at_the_bar() {
        assert_eq!(split_canonical("http://x|1.0"), ("http://x", Some("1.0")));
        assert_eq!(split_canonical("http://x|"), ("http://x", None));
        assert_eq!(split_canonical("http://x"), ("http://x", None));
        assert_eq!(strip_version("http://x|2"), "http://x");
    }

    #[test]
    fn value_x_finds_the_typed_value() {
        let p = json!({"code": "a", "valueCoding": {"code": "b"}});
        assert_eq!(value_x(&p), Some(("valueCoding", &json!({"code": "b"}))));
        assert_eq!(value_x(&json!({"value": 1})), None);
        assert_eq!(value_x(&json!([1])), None);
    }
}
