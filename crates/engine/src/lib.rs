//! The FHIR REST interactions, independent of HTTP: read, vread, create, update, patch,
//! delete, history, delete history, batch and transaction. Every write of every interaction
//! goes through [`Store::write`], the one transactional path; the HTTP layer, the importer and
//! (later) operations and the sandbox's `client` all call these functions.

pub mod bundle;
mod capabilities;
mod context;
mod core;
pub mod custom;
pub mod fulltext;
pub mod jobs;
pub mod lanes;
pub mod metrics;
pub mod operations;
pub mod paging;
pub mod request;
pub mod search;
pub mod subset;
mod terminology;
mod transaction;
mod write;

use std::sync::Arc;
use std::time::Duration;

use flint_fhir::{datetime, model, validate, Error, Model, Result};
use flint_store::{HistoryPage, HistoryQuery, IndexedParam, Method, NewVersion, Store, Version};
use serde_json::{Map, Value};

pub use crate::core::Subset;
pub use context::{next_request_id, Caller, Context};
pub use flint_fhir::patch;
pub use request::{
    Body, Headers, Interaction, Method as HttpMethod, OperationTarget, Payload, PreferReturn,
    Request, Response,
};
pub use write::{Done, MAX_CONDITIONAL_DELETE};

/// The limits the request core enforces, from configuration (`[search]`, `[history]`,
/// `[server]`).
#[derive(Clone, Debug)]
pub struct Limits {
    /// `[search] timeout_ms`: how long one search (or history page) may run.
    pub search_timeout: Duration,
    /// `[search] async_timeout_ms`: the same for a search run as a background job.
    pub async_search_timeout: Duration,
    /// `[search] default_count` and `max_count`: page sizes of search.
    pub default_count: usize,
    pub max_count: usize,
    /// `[search] max_include`: most resources one page's `_include`/`_revinclude` add.
    pub max_included: usize,
    /// `[history] default_page_size` and `max_page_size`.
    pub history_default_count: usize,
    pub history_max_count: usize,
    /// `[server] async_budget_ms`: how long a request run as a background job is waited for
    /// before the answer is `202 Accepted`.
    pub async_budget: Duration,
    /// `[server] async_results_kept_hours`: how long an ended job's result stays at its
    /// status URL.
    pub async_kept: Duration,
    /// Where bulk exports write their files (`[storage] data_dir/exports` for the server;
    /// `None` turns `$export` off).
    pub export_dir: Option<std::path::PathBuf>,
    /// `[server] node_id`: the name this node holds job leases under (the host's name by
    /// default). Nodes sharing a store need distinct names.
    pub node: String,
    /// The lanes requests run in.
    pub lanes: lanes::LaneLimits,
    /// `[apps]`: custom operations and their sandbox.
    pub apps: custom::AppLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            search_timeout: Duration::from_secs(10),
            async_search_timeout: Duration::from_secs(300),
            default_count: 50,
            max_count: 1000,
            max_included: 1000,
            history_default_count: 50,
            history_max_count: 1000,
            async_budget: Duration::from_secs(1),
            async_kept: Duration::from_secs(7 * 24 * 3600),
            node: jobs::host_name(),
            export_dir: Some(std::env::temp_dir().join(format!("flint-exports-{}", new_id()))),
            lanes: lanes::LaneLimits::default(),
            apps: custom::AppLimits::default(),
        }
    }
}

/// Runs at the start of every search and history page, on the thread that runs it, with
/// the search's interrupt: a hook for tests that must hold searches open (to show what
/// else still runs meanwhile) without relying on timing.
pub type SearchHook = Arc<dyn Fn(&flint_store::Interrupt) -> Result<()> + Send + Sync>;

/// The interactions over one store.
pub struct Engine<S> {
    store: S,
    model: &'static Model,
    clock: Box<dyn paging::Clock>,
    limits: Limits,
    lanes: lanes::Lanes,
    /// The search parameters in force: the core ones and the SearchParameter resources
    /// stored (replaced whole when one of those changes).
    registry: parking_lot::RwLock<Arc<flint_search::Registry>>,
    /// Paging keys as last read from the store, newest first.
    paging_keys: parking_lot::RwLock<Vec<flint_store::PagingKey>>,
    /// The background jobs running on this node, by id.
    running: parking_lot::Mutex<std::collections::HashMap<String, jobs::Live>>,
    /// The name this node holds job leases under.
    node: String,
    search_hook: parking_lot::RwLock<Option<SearchHook>>,
    /// The interrupts of the costly and quick requests running, by a number of their own,
    /// so that a stopping server can end them (see [`Engine::stop`]).
    in_flight: parking_lot::Mutex<std::collections::HashMap<u64, flint_store::Interrupt>>,
    next_request: std::sync::atomic::AtomicU64,
    stopping: std::sync::atomic::AtomicBool,
    /// The last CapabilityStatement served, with the search parameters, base URL and day it
    /// was built for.
    capabilities: parking_lot::Mutex<Option<CachedCapabilities>>,
    /// The operations in force (replaced whole when operations are added or removed).
    operations: parking_lot::RwLock<Arc<operations::Catalog<S>>>,
    /// Custom operations: the sandbox, compiled scripts, the audit writer.
    custom: custom::State,
    metrics: metrics::Metrics,
}

/// The CapabilityStatement's text with what it was built from: search parameters, base URL,
/// operations (their catalog's address) and day.
type CachedCapabilities = (Arc<flint_search::Registry>, String, usize, String, String);

impl<S: Store> Engine<S> {
    pub fn new(store: S) -> Arc<Engine<S>> {
        Engine::with(store, Limits::default(), Box::new(paging::SystemClock))
    }

    /// An engine reading time from `clock` (tests inject one).
    pub fn with_clock(store: S, clock: Box<dyn paging::Clock>) -> Arc<Engine<S>> {
        Engine::with(store, Limits::default(), clock)
    }

    /// An engine with these limits and clock.
    pub fn with(store: S, limits: Limits, clock: Box<dyn paging::Clock>) -> Arc<Engine<S>> {
        let node = limits.node.clone();
        let engine = Engine {
            store,
            model: model::r4(),
            clock,
            lanes: lanes::Lanes::new(limits.lanes.clone()),
            limits,
            registry: parking_lot::RwLock::new(Arc::new(flint_search::Registry::with(&[]))),
            paging_keys: Default::default(),
            running: Default::default(),
            node,
            search_hook: Default::default(),
            in_flight: Default::default(),
            next_request: Default::default(),
            stopping: Default::default(),
            capabilities: Default::default(),
            operations: parking_lot::RwLock::new(Arc::new(operations::Catalog::builtin())),
            custom: custom::State::default(),
            metrics: metrics::Metrics::default(),
        };
        if let Err(e) = engine.reload_search_parameters() {
            tracing::error!(error = ?e, "cannot load the stored SearchParameters; using the core ones");
        }
        Arc::new(engine)
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Stops the request core: requests running in the lanes are interrupted (their searches
    /// end at once and they answer 503), and new ones are refused with 503, so that a clean
    /// shutdown does not wait for long searches. Writes already in the writer's queue still
    /// commit or fail as a whole.
    pub fn stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for interrupt in self.in_flight.lock().values() {
            interrupt.cancel();
        }
        self.interrupt_jobs();
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Installs (or removes) the [`SearchHook`].
    pub fn set_search_hook(&self, hook: Option<SearchHook>) {
        *self.search_hook.write() = hook;
    }

    /// Runs the search hook, if one is installed.
    pub(crate) fn search_hook(&self, interrupt: &flint_store::Interrupt) -> Result<()> {
        let hook = self.search_hook.read().clone();
        match hook {
            Some(hook) => hook(interrupt),
            None => Ok(()),
        }
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
        if custom::is_registry_type(resource_type) {
            self.custom_written();
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
        self.check_custom(resource_type, resource)?;
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

    /// Removes all versions of a resource but the current one.
    ///
    /// # Errors
    /// Unknown type or resource (404), store fault.
    pub fn delete_history(&self, resource_type: &str, id: &str) -> Result<u64> {
        self.check_type(resource_type)?;
        Self::check_id(id)?;
        if self.store.read(resource_type, id)?.is_none() {
            return Err(Error::not_found(format!(
                "{resource_type}/{id} is not known"
            )));
        }
        let (rt, id) = (resource_type.to_string(), id.to_string());
        lanes::block_on(self.store.write(move |txn| txn.delete_history(&rt, &id)))
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

/// Parses `W/"3"` or `3`.
pub fn parse_etag(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_prefix("W/").unwrap_or(s);
    s.trim_matches('"').parse().ok()
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
    ) -> Result<Stamped> {
        let index = index_values(&resource, registry)?;
        let json = stamp_with(resource, id, version, TIME_PLACEHOLDER);
        // The placeholder's first occurrence is `meta.lastUpdated`: it follows only
        // `resourceType` and `id`, neither of which can contain it.
        let at = json.find(TIME_PLACEHOLDER);
        Ok(Stamped {
            json,
            version,
            at,
            index,
        })
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
///
/// # Errors
/// A parameter whose expression is too costly for this resource (4xx).
pub fn index_values(
    resource: &Value,
    registry: &flint_search::Registry,
) -> Result<Vec<IndexedParam>> {
    let mut values = Vec::new();
    extracted(resource, registry, "", &mut values)?;
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
        extracted(inner, registry, &prefix, &mut values)?;
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
    Ok(values)
}

/// The registry's values for a resource, each parameter's code prefixed: `_id` and
/// `_lastUpdated` are answered from the version itself, `_text` and `_content` from the full
/// text.
fn extracted(
    resource: &Value,
    registry: &flint_search::Registry,
    prefix: &str,
    out: &mut Vec<IndexedParam>,
) -> Result<()> {
    for e in registry.try_extract(resource)? {
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
    Ok(())
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
            .unwrap()
            .finish("Patient", "new", 2, Method::Update, 0)
            .unwrap();
        assert_eq!(finished.json.as_deref(), Some(s.as_str()));
        assert!(finished.index.iter().any(|p| p.code == "family"));
        // A different final version re-stamps.
        let again = Stamped::new(r, "new", 2, flint_search::Registry::r4())
            .unwrap()
            .finish("Patient", "new", 3, Method::Update, 0)
            .unwrap();
        assert!(again.json.unwrap().contains(r#""versionId":"3""#));
    }
}
