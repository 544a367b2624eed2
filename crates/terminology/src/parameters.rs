//! Building the `Parameters` resources the operations return: one entry with a `value[x]`,
//! one with `part`s, and the resource around them.

use serde_json::{json, Map, Value};

/// A parameter with a value: `{"name": name, key: value}` (`key` is `valueBoolean`, ...).
pub(crate) fn value(name: &str, key: &str, value: Value) -> Value {
    let mut entry = Map::new();
    entry.insert("name".into(), Value::String(name.into()));
    entry.insert(key.into(), value);
    Value::Object(entry)
}

/// A string-valued parameter.
pub(crate) fn string(name: &str, v: &str) -> Value {
    value(name, "valueString", Value::String(v.into()))
}

/// A code-valued parameter.
pub(crate) fn code(name: &str, v: &str) -> Value {
    value(name, "valueCode", Value::String(v.into()))
}

/// A parameter made of parts.
pub(crate) fn parts(name: &str, parts: Vec<Value>) -> Value {
    json!({"name": name, "part": parts})
}

/// The `Parameters` resource holding these entries.
pub(crate) fn resource(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Parameters", "parameter": entries})
}
