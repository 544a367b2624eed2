//! `$meta`, `$meta-add` and `$meta-delete` (R4 `Resource-meta*`) on a resource or one of its
//! versions; `$meta` also at the system and type level, where it lists every profile, tag
//! and security label in use on the current resources (of the type). `$meta-add` and `$meta-delete` change the version's profiles, tags and security
//! labels in place: no new version, the same `lastUpdated` (R4: meta does not change what
//! the resource means), the version's index rows rewritten in the same store job.

use std::sync::Arc;

use flint_fhir::{Error, Result};
use flint_store::Store;
use serde_json::{json, Map, Value};

use crate::operations::{Call, Definition, Level, Operation, Output};
use crate::Engine;

pub(crate) struct Meta;
pub(crate) struct MetaAdd;
pub(crate) struct MetaDelete;

/// The meta of the target version.
fn target_meta(call: &Call<'_>) -> Result<Value> {
    let mut resource = call.target.resource()?;
    Ok(resource
        .get_mut("meta")
        .map(Value::take)
        .unwrap_or_else(|| json!({})))
}

/// Whether two codings are the same label: system and code (version and display ignored).
fn same_label(a: &Value, b: &Value) -> bool {
    a.get("system") == b.get("system") && a.get("code") == b.get("code")
}

/// Adds (or removes) the given profiles, tags and security labels; returns whether anything
/// changed.
fn change(meta: &mut Map<String, Value>, given: &Value, add: bool) -> bool {
    let mut changed = false;
    for key in ["profile", "tag", "security"] {
        let Some(items) = given.get(key).and_then(Value::as_array) else {
            continue;
        };
        let mut list = meta
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for item in items {
            let matches = |existing: &Value| {
                if key == "profile" {
                    existing == item
                } else {
                    same_label(existing, item)
                }
            };
            let present = list.iter().any(&matches);
            if add && !present {
                list.push(item.clone());
                changed = true;
            } else if !add && present {
                list.retain(|e| !matches(e));
                changed = true;
            }
        }
        if list.is_empty() {
            meta.shift_remove(key);
        } else {
            meta.insert(key.into(), Value::Array(list));
        }
    }
    changed
}

/// `$meta-add` / `$meta-delete`: the changed meta, written in place when it differs.
fn rewrite<S: Store>(engine: &Arc<Engine<S>>, call: &mut Call<'_>, add: bool) -> Result<Output> {
    let given = call
        .inputs
        .value("meta")
        .cloned()
        .ok_or_else(|| Error::invalid("the parameter 'meta' is required").at("meta"))?;
    let mut resource = call.target.resource()?;
    let stored = call
        .target
        .stored
        .clone()
        .ok_or_else(|| Error::internal("meta: no target version"))?;
    let fields = resource
        .as_object_mut()
        .ok_or_else(|| Error::internal("a stored resource is not an object"))?;
    let meta = fields
        .entry("meta")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| Error::internal("a stored meta is not an object"))?;
    let changed = change(meta, &given, add);
    let meta = Value::Object(meta.clone());
    if changed {
        let index = crate::index_values(&resource, &engine.registry())?;
        let json = resource.to_string();
        let (rt, id, version) = (
            stored.resource_type.clone(),
            stored.id.clone(),
            stored.version,
        );
        let before = stored.json.clone();
        call.changes.step(&stored.resource_type, move |txn| {
            // Two changes of one version's meta at once: the second must not undo the first.
            let now = txn.version(&rt, &id, version)?;
            if now.and_then(|v| v.json) != before {
                return Err(Error::conflict(format!(
                    "the meta of {rt}/{id}/_history/{version} changed meanwhile; send the request again"
                )));
            }
            if !txn.rewrite_meta(&rt, &id, version, json, index)? {
                return Err(Error::gone(format!("{rt}/{id}/_history/{version} is gone")));
            }
            Ok(())
        });
    }
    Ok(Output::value("return", "valueMeta", meta))
}

impl<S: Store> Operation<S> for Meta {
    fn definition(&self) -> Definition {
        Definition::r4("Resource-meta", |d| d["affectsState"] = json!(false))
    }

    fn invoke(&self, engine: &Arc<Engine<S>>, call: &mut Call<'_>) -> Result<Output> {
        let meta = match call.target.level {
            Level::Instance => target_meta(call)?,
            Level::Type => engine.labels_in_use(call.ctx, Some(call.target.resource_type()?))?,
            Level::System => engine.labels_in_use(call.ctx, None)?,
        };
        Ok(Output::value("return", "valueMeta", meta))
    }
}

impl<S: Store> Operation<S> for MetaAdd {
    fn definition(&self) -> Definition {
        Definition::r4("Resource-meta-add", |d| d["affectsState"] = json!(true))
    }

    fn invoke(&self, engine: &Arc<Engine<S>>, call: &mut Call<'_>) -> Result<Output> {
        rewrite(engine, call, true)
    }
}

impl<S: Store> Operation<S> for MetaDelete {
    fn definition(&self) -> Definition {
        Definition::r4("Resource-meta-delete", |d| d["affectsState"] = json!(true))
    }

    fn invoke(&self, engine: &Arc<Engine<S>>, call: &mut Call<'_>) -> Result<Output> {
        rewrite(engine, call, false)
    }
}

/// Labels as read from a stored resource: only its `meta` is parsed; the rest is skipped.
#[derive(serde::Deserialize)]
struct Labelled {
    #[serde(default)]
    meta: Option<Labels>,
}

#[derive(serde::Deserialize, Default)]
struct Labels {
    #[serde(default)]
    profile: Vec<Value>,
    #[serde(default)]
    tag: Vec<Value>,
    #[serde(default)]
    security: Vec<Value>,
}

/// Versions read per step while gathering labels.
const LABEL_BATCH: usize = 5_000;

impl<S: Store> Engine<S> {
    /// Every profile, tag and security label on the current resources (of one type), each
    /// once (labels by system and code), in the order first met.
    ///
    /// # Errors
    /// The search time limit (the whole store is read); a store fault.
    fn labels_in_use(&self, ctx: &crate::Context, resource_type: Option<&str>) -> Result<Value> {
        let interrupt = self.search_interrupt(ctx);
        let mut all = Labels::default();
        let mut after = 0;
        loop {
            interrupt.check()?;
            let batch = self
                .store()
                .current_versions(resource_type, after, LABEL_BATCH)?;
            let Some((last, _)) = batch.last() else {
                break;
            };
            after = *last;
            for (_, v) in &batch {
                let Some(json) = &v.json else { continue };
                let Ok(Labelled { meta: Some(meta) }) = serde_json::from_slice::<Labelled>(json)
                else {
                    continue;
                };
                for p in meta.profile {
                    if !all.profile.contains(&p) {
                        all.profile.push(p);
                    }
                }
                for (list, found) in [(&mut all.tag, meta.tag), (&mut all.security, meta.security)]
                {
                    for label in found {
                        if !list.iter().any(|l| same_label(l, &label)) {
                            list.push(label);
                        }
                    }
                }
            }
        }
        let mut meta = Map::new();
        for (key, list) in [
            ("profile", all.profile),
            ("tag", all.tag),
            ("security", all.security),
        ] {
            if !list.is_empty() {
                meta.insert(key.into(), Value::Array(list));
            }
        }
        Ok(Value::Object(meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sets_by_system_and_code() {
        let mut meta =
            json!({"versionId": "1", "tag": [{"system": "s", "code": "a", "display": "A"}]})
                .as_object()
                .unwrap()
                .clone();
        let given = json!({"tag": [{"system": "s", "code": "a", "display": "other"}, {"system": "s", "code": "b"}],
                           "profile": ["http://p"]});
        assert!(change(&mut meta, &given, true));
        assert_eq!(meta["tag"].as_array().unwrap().len(), 2);
        assert_eq!(
            meta["tag"][0]["display"], "A",
            "the existing tag is kept as it was"
        );
        assert!(
            !change(&mut meta, &given, true),
            "adding again changes nothing"
        );
        assert!(change(
            &mut meta,
            &json!({"tag": [{"system": "s", "code": "a"}], "profile": ["http://p"]}),
            false
        ));
        assert_eq!(meta["tag"], json!([{"system": "s", "code": "b"}]));
        assert!(meta.get("profile").is_none());
        assert_eq!(meta["versionId"], "1");
    }
}
