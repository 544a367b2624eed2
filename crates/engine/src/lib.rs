//! The FHIR REST interactions, independent of HTTP: read, vread, create, update, patch,
//! delete, history, delete history, batch and transaction. Every write of every interaction
//! goes through [`Store::write`], the one transactional path; the HTTP layer, the importer and
//! (later) operations and the sandbox's `client` all call these functions.

pub mod bundle;
mod conditional;
mod context;
pub mod fulltext;
pub mod jobs;
pub mod paging;
pub mod patch;
pub mod search;
mod terminology;
mod transaction;

use std::sync::Arc;

use flint_fhir::{datetime, model, validate, Error, IssueType, Model, Result};
use flint_store::{HistoryPage, HistoryQuery, IndexedParam, Method, NewVersion, Store, Version};
use serde_json::{Map, Value};

pub use context::{Caller, Context};
pub use transaction::{parse_etag as parse_etag_header, BundleOptions, PreferReturn};

/// The result of an update or patch.
#[derive(Clone, Debug)]
pub struct Written {
    pub version: Version,
    /// Whether the write created the resource (update-as-create, or update of a deleted one).
    pub created: bool,
}

/// The interactions over one store.
pub struct Engine<S> {
    store: S,
    model: &'static Model,
    clock: Box<dyn paging::Clock>,
    /// The search parameters in force: the core ones and the SearchParameter resources
    /// stored (replaced whole when one of those changes).
    registry: parking_lot::RwLock<Arc<flint_search::Registry>>,
    /// Paging keys as last read from the store, newest first.
    paging_keys: parking_lot::RwLock<Vec<flint_store::PagingKey>>,
    /// The background jobs running on this node, with their cancellation flags.
    running:
        parking_lot::Mutex<std::collections::HashMap<String, Arc<std::sync::atomic::AtomicBool>>>,
}

impl<S: Store> Engine<S> {
    pub fn new(store: S) -> Arc<Engine<S>> {
        Engine::with_clock(store, Box::new(paging::SystemClock))
    }

    /// An engine reading time from `clock` (tests inject one).
    pub fn with_clock(store: S, clock: Box<dyn paging::Clock>) -> Arc<Engine<S>> {
        let engine = Engine {
            store,
            model: model::r4(),
            clock,
            registry: parking_lot::RwLock::new(Arc::new(flint_search::Registry::with(&[]))),
            paging_keys: Default::default(),
            running: Default::default(),
        };
        if let Err(e) = engine.reload_search_parameters() {
            tracing::error!(error = ?e, "cannot load the stored SearchParameters; using the core ones");
        }
        Arc::new(engine)
    }

    /// The search parameters in force.
    pub fn registry(&self) -> Arc<flint_search::Registry> {
        Arc::clone(&self.registry.read())
    }

    /// Rebuilds the search parameters from the core set and the stored SearchParameter
    /// resources. New and changed parameters apply to writes from now on; resources written
    /// before are indexed by them only once reindexed.
    ///
    /// # Errors
    /// A store fault.
    pub fn reload_search_parameters(&self) -> Result<()> {
        let query = flint_store::search::SearchQuery {
            resource_type: "SearchParameter".into(),
            limit: 100_000,
            ..Default::default()
        };
        let custom: Vec<Value> = self
            .store
            .search(&query)?
            .versions
            .iter()
            .filter_map(|v| parse_stored(v).ok())
            .collect();
        let registry = if custom.is_empty() {
            flint_search::Registry::with(&[])
        } else {
            flint_search::Registry::with(&custom)
        };
        *self.registry.write() = Arc::new(registry);
        Ok(())
    }

    /// Called after a successful write of `resource_type`.
    fn written(&self, resource_type: &str) {
        if resource_type == "SearchParameter" {
            if let Err(e) = self.reload_search_parameters() {
                tracing::error!(error = ?e, "cannot reload the SearchParameters");
            }
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn model(&self) -> &'static Model {
        self.model
    }

    /// 404 unless `resource_type` is a concrete R4 resource type.
    ///
    /// # Errors
    /// An unknown type.
    pub fn check_type(&self, resource_type: &str) -> Result<()> {
        if self.model.is_resource_type(resource_type) {
            Ok(())
        } else {
            Err(Error::not_found(format!(
                "unknown resource type '{resource_type}'"
            )))
        }
    }

    fn check_id(id: &str) -> Result<()> {
        if validate::is_valid_id(id) {
            Ok(())
        } else {
            Err(Error::invalid(format!("'{id}' is not a valid resource id")))
        }
    }

    /// The current version; 404 if it never existed, 410 if it is deleted.
    ///
    /// # Errors
    /// Unknown type or id, deleted resource, store fault.
    pub fn read(&self, resource_type: &str, id: &str) -> Result<Version> {
        self.check_type(resource_type)?;
        Self::check_id(id)
            .map_err(|_| Error::not_found(format!("{resource_type}/{id} is not known")))?;
        match self.store.read(resource_type, id)? {
            None => Err(Error::not_found(format!(
                "{resource_type}/{id} is not known"
            ))),
            Some(v) if v.is_deleted() => Err(gone(&v)),
            Some(v) => Ok(v),
        }
    }

    /// One version; 404 if it does not exist, 410 if that version is a deletion.
    ///
    /// # Errors
    /// Unknown type, id or version; deleted version; store fault.
    pub fn vread(&self, resource_type: &str, id: &str, version: &str) -> Result<Version> {
        self.check_type(resource_type)?;
        let not_found = || {
            Error::not_found(format!(
                "{resource_type}/{id}/_history/{version} is not known"
            ))
        };
        let number: u64 = version.parse().map_err(|_| not_found())?;
        match self.store.vread(resource_type, id, number)? {
            None => Err(not_found()),
            Some(v) if v.is_deleted() => Err(gone(&v)),
            Some(v) => Ok(v),
        }
    }

    /// Checks a resource body for `resource_type`: an object of that type, structurally valid.
    ///
    /// # Errors
    /// 400 with every problem found.
    pub fn check_resource(&self, resource_type: &str, resource: &Value) -> Result<()> {
        let actual = resource.get("resourceType").and_then(Value::as_str);
        if let Some(actual) = actual {
            if actual != resource_type && self.model.is_resource_type(actual) {
                return Err(Error::invalid(format!(
                    "the resource is a {actual} but the request is for {resource_type}"
                ))
                .at("resourceType"));
            }
        }
        validate::validate_resource(self.model, resource)?;
        if resource_type == "SearchParameter" {
            // A parameter whose expression does not compile would index nothing, silently.
            if let Some(expression) = resource.get("expression").and_then(Value::as_str) {
                flint_fhirpath::Expression::compile(expression).map_err(|e| {
                    Error::invalid(format!(
                        "the SearchParameter's expression does not compile: {}",
                        e.message
                    ))
                    .at("SearchParameter.expression")
                })?;
            }
        }
        Ok(())
    }

    /// Creates a resource with a new server-assigned id.
    ///
    /// # Errors
    /// Invalid resource (400), unknown type (404), store fault.
    pub async fn create(&self, resource_type: &str, resource: Value) -> Result<Version> {
        self.check_type(resource_type)?;
        self.check_resource(resource_type, &resource)?;
        let id = new_id();
        let rt = resource_type.to_string();
        let stamped = Stamped::new(resource, &id, 1, &self.registry());
        self.store
            .write(move |txn| txn.put(stamped.finish(&rt, &id, 1, Method::Create, txn.now())?))
            .await
            .inspect(|_| self.written(resource_type))
    }

    /// Updates (or creates, with the client's id) a resource. `if_match` is the version the
    /// client expects to replace.
    ///
    /// # Errors
    /// Invalid resource or id mismatch (400), version mismatch (412), store fault.
    pub async fn update(
        &self,
        resource_type: &str,
        id: &str,
        resource: Value,
        if_match: Option<u64>,
    ) -> Result<Written> {
        self.check_type(resource_type)?;
        Self::check_id(id)?;
        match resource.get("id") {
            None => {
                return Err(Error::invalid(
                    "the resource has no id; an update needs one matching the URL",
                )
                .at(format!("{resource_type}.id")))
            }
            Some(body_id) if body_id.as_str() != Some(id) => {
                return Err(Error::invalid(format!(
                    "the resource id {body_id} does not match the URL id '{id}'"
                ))
                .at(format!("{resource_type}.id")))
            }
            Some(_) => {}
        }
        self.check_resource(resource_type, &resource)?;
        // Serialize here for the version expected next; the job re-stamps only if another
        // write came in between.
        let guess = self
            .store
            .read(resource_type, id)?
            .map_or(1, |v| v.version + 1);
        let stamped = Stamped::new(resource, id, guess, &self.registry());
        let (rt, id) = (resource_type.to_string(), id.to_string());
        self.store
            .write(move |txn| {
                let current = txn.current(&rt, &id)?;
                check_if_match(&rt, &id, current.as_ref(), if_match)?;
                let created = current.as_ref().is_none_or(Version::is_deleted);
                let version = current.map_or(1, |c| c.version + 1);
                let v = txn.put(stamped.finish(&rt, &id, version, Method::Update, txn.now())?)?;
                Ok(Written {
                    version: v,
                    created,
                })
            })
            .await
            .inspect(|_| self.written(resource_type))
    }

    /// Applies a JSON Patch to the current version. The patch is applied and the result
    /// checked outside the writer; the write then insists the resource is still at the version
    /// patched, and the whole is retried if another write came in between.
    ///
    /// # Errors
    /// Unknown or deleted resource, bad patch (400/422), invalid result (400), version
    /// mismatch (412), store fault.
    pub async fn patch(
        &self,
        resource_type: &str,
        id: &str,
        patch: &Value,
        if_match: Option<u64>,
    ) -> Result<Written> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let current = self.read(resource_type, id)?;
            check_if_match(resource_type, id, Some(&current), if_match)?;
            let mut resource = parse_stored(&current)?;
            patch::apply_json_patch(&mut resource, patch)?;
            if resource.get("resourceType").and_then(Value::as_str) != Some(resource_type)
                || resource.get("id").and_then(Value::as_str) != Some(id)
            {
                return Err(Error::invalid(
                    "a patch may not change the resource's type or id",
                ));
            }
            self.check_resource(resource_type, &resource)?;
            let (rt, rid, base) = (resource_type.to_string(), id.to_string(), current.version);
            let stamped = Stamped::new(resource, id, base + 1, &self.registry());
            let result = self
                .store
                .write(move |txn| {
                    let now = txn.current(&rt, &rid)?;
                    if now.as_ref().map(|v| v.version) != Some(base) {
                        return Err(Error::new(IssueType::Conflict, "changed while patching")
                            .with_status(409));
                    }
                    let v =
                        txn.put(stamped.finish(&rt, &rid, base + 1, Method::Update, txn.now())?)?;
                    Ok(Written {
                        version: v,
                        created: false,
                    })
                })
                .await;
            match result {
                Err(e) if e.status() == 409 && e.code() == IssueType::Conflict && attempts < 5 => {
                    continue
                }
                other => return other.inspect(|_| self.written(resource_type)),
            }
        }
    }

    /// Deletes a resource. Deleting what does not exist or is already deleted succeeds and
    /// writes nothing (`Ok(None)`).
    ///
    /// # Errors
    /// Unknown type (404), version mismatch (412), store fault.
    pub async fn delete(
        &self,
        resource_type: &str,
        id: &str,
        if_match: Option<u64>,
    ) -> Result<Option<Version>> {
        self.check_type(resource_type)?;
        Self::check_id(id)?;
        let (rt, id) = (resource_type.to_string(), id.to_string());
        self.store
            .write(move |txn| {
                let current = txn.current(&rt, &id)?;
                check_if_match(&rt, &id, current.as_ref(), if_match)?;
                match current {
                    Some(c) if !c.is_deleted() => Ok(Some(txn.put(NewVersion {
                        resource_type: rt,
                        id,
                        version: c.version + 1,
                        method: Method::Delete,
                        json: None,
                        index: Vec::new(),
                    })?)),
                    _ => Ok(None),
                }
            })
            .await
            .inspect(|_| self.written(resource_type))
    }

    /// Removes all versions of a resource but the current one.
    ///
    /// # Errors
    /// Unknown type or resource (404), store fault.
    pub async fn delete_history(&self, resource_type: &str, id: &str) -> Result<u64> {
        self.check_type(resource_type)?;
        Self::check_id(id)?;
        if self.store.read(resource_type, id)?.is_none() {
            return Err(Error::not_found(format!(
                "{resource_type}/{id} is not known"
            )));
        }
        let (rt, id) = (resource_type.to_string(), id.to_string());
        self.store
            .write(move |txn| txn.delete_history(&rt, &id))
            .await
    }

    /// A page of history and the total it belongs to.
    ///
    /// # Errors
    /// Unknown type, store fault.
    pub fn history(&self, query: &HistoryQuery) -> Result<(HistoryPage, u64)> {
        if let Some(t) = &query.resource_type {
            self.check_type(t)?;
        }
        if let (Some(t), Some(id)) = (&query.resource_type, &query.id) {
            if self.store.read(t, id)?.is_none() {
                return Err(Error::not_found(format!("{t}/{id} is not known")));
            }
        }
        let page = self.store.history(query)?;
        let total = self.store.history_count(query)?;
        Ok((page, total))
    }
}

pub(crate) fn gone(v: &Version) -> Error {
    Error::gone(format!(
        "{}/{} was deleted (version {})",
        v.resource_type, v.id, v.version
    ))
}

fn check_if_match(
    rt: &str,
    id: &str,
    current: Option<&Version>,
    if_match: Option<u64>,
) -> Result<()> {
    let Some(expected) = if_match else {
        return Ok(());
    };
    match current {
        Some(c) if c.version == expected && !c.is_deleted() => Ok(()),
        Some(c) => Err(Error::precondition_failed(format!(
            "{rt}/{id} is at version {}, not the version {expected} given in If-Match",
            c.version
        ))),
        None => Err(Error::precondition_failed(format!(
            "{rt}/{id} does not exist; If-Match {expected} cannot hold"
        ))),
    }
}

/// A new resource id: a random UUID, as most FHIR servers assign.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Parses a stored version's JSON.
///
/// # Errors
/// A deleted version, or stored bytes that are not JSON (a store fault).
pub fn parse_stored(v: &Version) -> Result<Value> {
    let json = v.json.as_ref().ok_or_else(|| gone(v))?;
    serde_json::from_slice(json).map_err(Error::internal)
}

/// A resource serialized with its id and version, waiting only for its transaction's time:
/// serialization happens on the caller's thread, and the write job only copies the time in.
pub struct Stamped {
    json: String,
    version: u64,
    /// The search index values, extracted before serializing.
    index: Vec<IndexedParam>,
    /// Where the `meta.lastUpdated` placeholder starts.
    at: Option<usize>,
}

const TIME_PLACEHOLDER: &str = "0000-01-01T00:00:00.000Z";

impl Stamped {
    /// Serializes `resource` as version `version` of `id`.
    pub fn new(
        resource: Value,
        id: &str,
        version: u64,
        registry: &flint_search::Registry,
    ) -> Stamped {
        let index = index_values(&resource, registry);
        let json = stamp_with(resource, id, version, TIME_PLACEHOLDER);
        // The placeholder's first occurrence is `meta.lastUpdated`: it follows only
        // `resourceType` and `id`, neither of which can contain it.
        let at = json.find(TIME_PLACEHOLDER);
        Stamped {
            json,
            version,
            at,
            index,
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// The version to write: the final JSON as `version` written at `now` (re-stamped if the
    /// version differs from the one prepared, when another write came in between), with its
    /// index values.
    pub fn finish(
        mut self,
        resource_type: &str,
        id: &str,
        version: u64,
        method: Method,
        now: i64,
    ) -> Result<NewVersion> {
        let time = datetime::format_instant(now);
        let json = match self.at {
            Some(at) if version == self.version && time.len() == TIME_PLACEHOLDER.len() => {
                self.json
                    .replace_range(at..at + TIME_PLACEHOLDER.len(), &time);
                self.json
            }
            _ => {
                let value: Value = serde_json::from_str(&self.json).map_err(Error::internal)?;
                stamp(value, id, version, now)
            }
        };
        Ok(NewVersion {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            version,
            method,
            json: Some(json),
            index: self.index,
        })
    }
}

/// The search index values of a resource, for every parameter of the registry that applies
/// to its type. `_id` and `_lastUpdated` are answered from the version itself, not indexed.
///
/// `_text` and `_content` come last, each as one string value: the narrative as text, and
/// all the text of the resource (the store keeps them in its full-text index).
pub fn index_values(resource: &Value, registry: &flint_search::Registry) -> Vec<IndexedParam> {
    let mut values = Vec::new();
    extracted(resource, registry, "", &mut values);
    // Contained resources are searched with `_contained`: their values go under `#Type:code`
    // (the store keeps them apart from the container's own).
    for inner in resource["contained"].as_array().into_iter().flatten() {
        let Some(inner_type) = inner["resourceType"].as_str() else {
            continue;
        };
        let prefix = format!("#{inner_type}:");
        values.push(IndexedParam {
            code: format!("{prefix}{}", search::CONTAINED_MARKER),
            kind: flint_search::ParamType::Token,
            values: vec![flint_search::IndexValue::Token {
                system: None,
                code: Some(inner_type.to_string().into()),
                text: None,
            }],
        });
        extracted(inner, registry, &prefix, &mut values);
    }
    for (code, text) in [
        (
            flint_store::FULL_TEXT_NARRATIVE,
            fulltext::narrative(resource),
        ),
        (flint_store::FULL_TEXT_CONTENT, fulltext::content(resource)),
    ] {
        if !text.is_empty() {
            values.push(IndexedParam {
                code: code.into(),
                kind: flint_search::ParamType::Special,
                values: vec![flint_search::IndexValue::String {
                    normalized: text.into(),
                    original: "".into(),
                }],
            });
        }
    }
    values
}

/// The registry's values for a resource, each parameter's code prefixed: `_id` and
/// `_lastUpdated` are answered from the version itself, `_text` and `_content` from the full
/// text.
fn extracted(
    resource: &Value,
    registry: &flint_search::Registry,
    prefix: &str,
    out: &mut Vec<IndexedParam>,
) {
    for e in registry.extract(resource) {
        if e.values.is_empty()
            || matches!(
                e.param.code.as_str(),
                "_id"
                    | "_lastUpdated"
                    | flint_store::FULL_TEXT_NARRATIVE
                    | flint_store::FULL_TEXT_CONTENT
            )
        {
            continue;
        }
        out.push(IndexedParam {
            code: format!("{prefix}{}", e.param.code),
            kind: e.param.kind,
            values: e.values.into_iter().map(flint_store::owned_value).collect(),
        });
    }
}

/// Sets `id`, `meta.versionId` and `meta.lastUpdated` and serializes the resource with
/// `resourceType`, `id` and `meta` first.
pub fn stamp(resource: Value, id: &str, version: u64, last_updated: i64) -> String {
    stamp_with(
        resource,
        id,
        version,
        &datetime::format_instant(last_updated),
    )
}

fn stamp_with(resource: Value, id: &str, version: u64, last_updated: &str) -> String {
    let Value::Object(mut fields) = resource else {
        return resource.to_string();
    };
    let mut out = Map::with_capacity(fields.len() + 2);
    if let Some(rt) = fields.shift_remove("resourceType") {
        out.insert("resourceType".into(), rt);
    }
    fields.shift_remove("id");
    out.insert("id".into(), Value::String(id.to_string()));
    let mut meta = match fields.shift_remove("meta") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    meta.shift_remove("versionId");
    meta.shift_remove("lastUpdated");
    let mut new_meta = Map::with_capacity(meta.len() + 2);
    new_meta.insert("versionId".into(), Value::String(version.to_string()));
    new_meta.insert(
        "lastUpdated".into(),
        Value::String(last_updated.to_string()),
    );
    new_meta.extend(meta);
    out.insert("meta".into(), Value::Object(new_meta));
    out.extend(fields);
    Value::Object(out).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stamping_puts_id_and_meta_first_and_keeps_other_meta() {
        let r = json!({"name": [{"family": "x"}], "meta": {"profile": ["p"], "versionId": "9"}, "resourceType": "Patient", "id": "old"});
        let s = stamp(r.clone(), "new", 2, 0);
        assert_eq!(
            s,
            r#"{"resourceType":"Patient","id":"new","meta":{"versionId":"2","lastUpdated":"1970-01-01T00:00:00.000Z","profile":["p"]},"name":[{"family":"x"}]}"#
        );
        let finished = Stamped::new(r.clone(), "new", 2, flint_search::Registry::r4())
            .finish("Patient", "new", 2, Method::Update, 0)
            .unwrap();
        assert_eq!(finished.json.as_deref(), Some(s.as_str()));
        assert!(finished.index.iter().any(|p| p.code == "family"));
        // A different final version re-stamps.
        let again = Stamped::new(r, "new", 2, flint_search::Registry::r4())
            .finish("Patient", "new", 3, Method::Update, 0)
            .unwrap();
        assert!(again.json.unwrap().contains(r#""versionId":"3""#));
    }
}
