//! The operations framework (SPEC section 6): the one mechanism every operation runs
//! through, built-in or (later) custom.
//!
//! An operation is a [`Definition`] (read from its `OperationDefinition`) and a handler (an
//! [`Operation`]). The framework alone routes (by code, level and resource type together),
//! decides whether `GET` is allowed, reads inputs from a `Parameters` body, a bare resource
//! or the query string, checks them before the handler runs and checks its outputs after,
//! commits the writes the handler staged in one store job, and shapes the answer. Handlers
//! see only an [`Call`]: the caller's context, the headers, the target, the checked inputs
//! and the [`Changes`] they stage.
//!
//! The built-in operations live one per file under `builtin/`, registered by the one list in
//! `builtin::all`. The [`Catalog`] in force is swapped whole when operations are added at run
//! time.

pub mod definition;
pub mod parameters;

pub(crate) mod builtin;

use std::collections::HashSet;
use std::sync::Arc;

use flint_fhir::{Error, Result};
use flint_store::{Store, Transaction, Version};
use serde_json::{json, Value};

pub use definition::{Definition, Level, Param};
pub use parameters::Inputs;

use crate::request::{Body, Headers, Method, OperationTarget, Payload, Response};
use crate::write::{Check, Content, Plan, Target as WriteTarget};
use crate::{Context, Engine};

/// What an operation is invoked on.
#[derive(Clone, Debug)]
pub struct Target {
    pub level: Level,
    /// The type at the type and instance levels.
    pub resource_type: Option<String>,
    /// The id at the instance level.
    pub id: Option<String>,
    /// The version, for `[type]/[id]/_history/[vid]/$op`.
    pub version: Option<u64>,
    /// The target's version as stored (at the instance level): the current one, or the one
    /// named; a deletion when the resource is deleted.
    pub stored: Option<Version>,
}

impl Target {
    /// The type (type and instance levels).
    ///
    /// # Errors
    /// None at the system level (a handler registered at a level it does not handle).
    pub fn resource_type(&self) -> Result<&str> {
        self.resource_type
            .as_deref()
            .ok_or_else(|| Error::internal("the operation needs a resource type"))
    }

    /// `Type/id` of an instance-level target.
    pub fn reference(&self) -> String {
        format!(
            "{}/{}",
            self.resource_type.as_deref().unwrap_or(""),
            self.id.as_deref().unwrap_or("")
        )
    }

    /// The target resource: 410 when it (or the version named) is a deletion.
    ///
    /// # Errors
    /// Not an instance-level call; a deleted target (410); stored bytes that are not JSON.
    pub fn resource(&self) -> Result<Value> {
        let v = self
            .stored
            .as_ref()
            .ok_or_else(|| Error::internal("the operation needs an instance"))?;
        crate::parse_stored(v)
    }
}

/// The input of an invocation as the caller sent it (what custom operations hand their code).
#[derive(Clone, Debug, Default)]
pub struct Raw {
    /// The body: JSON as sent (a `Parameters` resource, another resource, any JSON), or a
    /// JSON string holding a text body; `None` without a body.
    pub body: Option<Value>,
    /// The query parameters, in order, `_format` and `_pretty` left out.
    pub query: Vec<(String, String)>,
}

/// One invocation, as its handler sees it.
pub struct Call<'a> {
    pub ctx: &'a Context,
    pub headers: &'a Headers,
    pub method: Method,
    pub target: Target,
    pub inputs: Inputs,
    pub raw: &'a Raw,
    /// The writes the handler stages; committed as one store job once it returns.
    pub changes: Changes,
}

/// What a handler answers.
pub enum Output {
    /// Output parameters (`Parameters.parameter` entries), checked against the definition;
    /// the resource `return` alone is answered bare when the definition says so.
    Parameters(Vec<Value>),
    /// A response as it is (status, headers, body), for handlers that answer with another
    /// status (`202` for a job still running) or a body of their own.
    Response(Response),
    /// An answer made once the staged writes committed (from what the job's steps recorded).
    After(Box<dyn FnOnce() -> Output + Send>),
}

impl Output {
    /// The output `return` holding `resource`.
    pub fn resource(resource: Value) -> Output {
        Output::Parameters(vec![json!({"name": "return", "resource": resource})])
    }

    /// One output value: `Output::value("return", "valueMeta", meta)`.
    pub fn value(name: &str, key: &str, value: Value) -> Output {
        let mut entry = serde_json::Map::new();
        entry.insert("name".into(), json!(name));
        entry.insert(key.into(), value);
        Output::Parameters(vec![Value::Object(entry)])
    }
}

/// One step a handler adds to its store job, run in the writer.
pub type Step = Box<dyn FnOnce(&mut dyn Transaction) -> Result<()> + Send>;

/// The writes an invocation stages: they commit together, in one store job, after the
/// handler returned, or not at all. Resources are validated, stamped and indexed when staged
/// (outside the single writer); the job checks that what they were based on has not moved
/// and, if it has, the handler runs again.
#[derive(Default)]
pub struct Changes {
    checks: Vec<Check>,
    plans: Vec<Plan>,
    steps: Vec<Step>,
    /// The resource types written (so that the engine can react: SearchParameters).
    types: HashSet<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.plans.is_empty() && self.steps.is_empty()
    }

    /// Stages a new version of `rt/id` holding `resource`, written only if the resource is
    /// still at version `base` when the job runs (a read-modify-write).
    ///
    /// # Errors
    /// An invalid resource (400), an index value too costly (422).
    pub fn update<S: Store>(
        &mut self,
        engine: &Engine<S>,
        rt: &str,
        id: &str,
        resource: Value,
        base: Option<u64>,
    ) -> Result<()> {
        let target = WriteTarget::Update {
            rt: rt.to_string(),
            id: id.to_string(),
        };
        let plan = match (
            engine.prepare(target, Content::Resource(resource), None)?,
            base,
        ) {
            (
                Plan::Update {
                    rt, id, stamped, ..
                },
                Some(base),
            ) => Plan::Patched {
                rt,
                id,
                stamped,
                base,
            },
            (plan, _) => plan,
        };
        self.types.insert(rt.to_string());
        self.plans.push(plan);
        Ok(())
    }

    /// Records a search the staged writes rely on: the job runs it again (or knows that
    /// nothing of its type was written since `seen`) and, if it answers other than `found`,
    /// writes nothing and the handler runs again.
    pub fn rely_on(
        &mut self,
        query: flint_store::search::SearchQuery,
        found: &[Version],
        seen: flint_store::TxNumber,
    ) {
        self.checks.push(Check {
            query,
            ids: found.iter().map(|v| v.id.clone()).collect(),
            seen,
        });
    }

    /// Stages a deletion of `rt/id` (nothing happens if it is already deleted).
    pub fn delete(&mut self, rt: &str, id: &str) {
        self.types.insert(rt.to_string());
        self.plans.push(Plan::Delete {
            rt: rt.to_string(),
            ids: vec![id.to_string()],
            if_match: None,
        });
    }

    /// Adds a step of its own to the job, run after the staged writes (a built-in's direct
    /// use of the store: `$purge`, `$meta-add`). `rt` is the type it changes.
    pub fn step(
        &mut self,
        rt: &str,
        step: impl FnOnce(&mut dyn Transaction) -> Result<()> + Send + 'static,
    ) {
        self.types.insert(rt.to_string());
        self.steps.push(Box::new(step));
    }
}

/// A handler of an operation.
pub trait Operation<S>: Send + Sync {
    /// The operation's declaration; read once, when the operation is registered.
    fn definition(&self) -> Definition;

    /// Runs one invocation. Inputs are checked already; outputs are checked after.
    ///
    /// # Errors
    /// Whatever the operation refuses, as a FHIR error (its status travels with it).
    fn invoke(&self, engine: &Arc<Engine<S>>, call: &mut Call<'_>) -> Result<Output>;

    /// Whether the operation runs as a background job of its own (`$reindex`, `$export`):
    /// `Prefer: respond-async` then reaches it as it is instead of wrapping it in another.
    fn runs_as_job(&self) -> bool {
        false
    }

    /// Whether an invocation is bounded work — no store access beyond a point read, a few
    /// microseconds of CPU whatever the inputs — that may run on the thread it arrives on
    /// instead of the costly lane (`$healthcheck`).
    fn is_bounded(&self) -> bool {
        false
    }

    /// Whether an invocation spends its time waiting for work done elsewhere (the
    /// JavaScript sandbox's threads, a remote service) rather than on the store: it then waits
    /// on the blocking pool, never holding a thread of the costly lane.
    fn waits_elsewhere(&self) -> bool {
        false
    }
}

/// One registered operation.
pub struct Entry<S> {
    pub definition: Arc<Definition>,
    handler: Arc<dyn Operation<S>>,
}

impl<S> Entry<S> {
    /// See [`Operation::runs_as_job`].
    pub fn runs_as_job(&self) -> bool {
        self.handler.runs_as_job()
    }

    /// See [`Operation::is_bounded`].
    pub fn is_bounded(&self) -> bool {
        self.handler.is_bounded()
    }

    /// See [`Operation::waits_elsewhere`].
    pub fn waits_elsewhere(&self) -> bool {
        self.handler.waits_elsewhere()
    }

    /// The handler (custom operations delegate to built-in ones by name).
    pub fn handler(&self) -> &Arc<dyn Operation<S>> {
        &self.handler
    }
}

impl<S> Clone for Entry<S> {
    fn clone(&self) -> Self {
        Entry {
            definition: Arc::clone(&self.definition),
            handler: Arc::clone(&self.handler),
        }
    }
}

/// The operations in force.
pub struct Catalog<S> {
    entries: Vec<Entry<S>>,
}

impl<S: Store> Catalog<S> {
    /// The built-in operations.
    pub fn builtin() -> Catalog<S> {
        Catalog::new(builtin::all()).unwrap_or_else(|e| panic!("built-in operations: {e:?}"))
    }

    /// A catalog of these operations.
    ///
    /// # Errors
    /// Two operations that would answer the same code at the same level on the same type,
    /// or two definitions under one id (400).
    pub fn new(handlers: Vec<Arc<dyn Operation<S>>>) -> Result<Catalog<S>> {
        let entries: Vec<Entry<S>> = handlers
            .into_iter()
            .map(|handler| Entry {
                definition: Arc::new(handler.definition()),
                handler,
            })
            .collect();
        for (i, a) in entries.iter().enumerate() {
            for b in &entries[i + 1..] {
                let (a, b) = (&a.definition, &b.definition);
                if a.id == b.id {
                    return Err(Error::invalid(format!(
                        "two operations are defined as OperationDefinition/{}",
                        a.id
                    )));
                }
                if a.code == b.code && a.query == b.query && overlap(a, b) {
                    return Err(Error::invalid(format!(
                        "${} is defined twice for the same level and type ({} and {})",
                        a.code, a.url, b.url
                    )));
                }
            }
        }
        Ok(Catalog { entries })
    }
}

impl<S: Store> Catalog<S> {
    /// The built-in operations and, after them, custom ones: a custom operation that would
    /// answer where one already in the catalog does, or under an id already taken, is left
    /// out and returned with the reason.
    pub fn with_custom(custom: Vec<Arc<dyn Operation<S>>>) -> (Catalog<S>, Vec<(String, Error)>) {
        let mut catalog = Catalog::builtin();
        let mut refused = Vec::new();
        for handler in custom {
            let definition = Arc::new(handler.definition());
            let clash = catalog.entries.iter().find(|e| {
                let d = &e.definition;
                d.id == definition.id
                    || (d.code == definition.code
                        && d.query == definition.query
                        && shadows(d, &definition))
            });
            if let Some(e) = clash {
                let why = Error::conflict(format!(
                    "${} is already served there by {}",
                    definition.code, e.definition.url
                ));
                refused.push((definition.url.clone(), why));
                continue;
            }
            catalog.entries.push(Entry {
                definition,
                handler,
            });
        }
        (catalog, refused)
    }
}

impl<S> Catalog<S> {
    pub fn definitions(&self) -> impl Iterator<Item = &Arc<Definition>> {
        self.entries.iter().map(|e| &e.definition)
    }

    /// The operation `code` at `level` on `resource_type`: one that names the type wins over
    /// one defined for every resource.
    pub fn resolve(
        &self,
        code: &str,
        level: Level,
        resource_type: Option<&str>,
    ) -> Option<&Entry<S>> {
        let mut found = self.entries.iter().filter(|e| {
            !e.definition.query
                && e.definition.code == code
                && e.definition.serves(level, resource_type)
        });
        let first = found.next()?;
        let named = |e: &Entry<S>| resource_type.is_some_and(|rt| e.definition.names_type(rt));
        if named(first) {
            return Some(first);
        }
        Some(found.find(|e| named(e)).unwrap_or(first))
    }

    /// The named query `name` on `resource_type` (`[type]?_query=name`).
    pub fn resolve_query(&self, name: &str, resource_type: &str) -> Option<&Entry<S>> {
        self.entries.iter().find(|e| {
            e.definition.query
                && e.definition.code == name
                && e.definition.serves(Level::Type, Some(resource_type))
        })
    }

    /// The operations in force, in order.
    pub fn entries(&self) -> &[Entry<S>] {
        &self.entries
    }

    /// Where `code` is offered, for the message of a call at the wrong place.
    fn offered(&self, code: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in self
            .entries
            .iter()
            .filter(|e| e.definition.code == code && !e.definition.query)
        {
            let d = &e.definition;
            let types = d.resource.join(", ");
            if d.system {
                out.push(format!("[base]/${code}"));
            }
            if d.type_level {
                out.push(format!("[{types}]/${code}"));
            }
            if d.instance {
                out.push(format!("[{types}]/[id]/${code}"));
            }
        }
        out
    }
}

/// Whether two definitions of one code answer some level on some type in common (a type
/// named by both, or both defined for every resource).
pub(crate) fn overlap(a: &Definition, b: &Definition) -> bool {
    if a.system && b.system {
        return true;
    }
    let levels = (a.type_level && b.type_level) || (a.instance && b.instance);
    let any = |d: &Definition| d.resource_types().is_none();
    levels && ((any(a) && any(b)) || a.resource.iter().any(|t| b.names_type(t)))
}

/// Whether a definition would take the place of another where they meet: they overlap, or one
/// is defined for every resource and the other for some type at a common level (a custom
/// `$validate` on Patient would hide the built-in one there).
pub(crate) fn shadows(a: &Definition, b: &Definition) -> bool {
    if overlap(a, b) {
        return true;
    }
    let levels = (a.type_level && b.type_level) || (a.instance && b.instance);
    levels && (a.resource_types().is_none() || b.resource_types().is_none())
}

/// The body of a custom operation's request as the caller sent it: JSON of any shape, or
/// text (as a JSON string) when its media type is not JSON.
fn raw_body(headers: &Headers, body: Body) -> Result<Option<Value>> {
    match body {
        Body::None => Ok(None),
        Body::Json(v) => Ok(Some(v)),
        Body::Bytes(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(None),
        Body::Bytes(b) => {
            let ct = headers
                .content_type
                .as_deref()
                .unwrap_or("")
                .to_ascii_lowercase();
            let media = ct.split(';').next().unwrap_or("").trim();
            if media.is_empty() || media.ends_with("json") || media.ends_with("+json") {
                crate::core::parse_json(&b).map(Some)
            } else {
                let text = String::from_utf8(b.to_vec())
                    .map_err(|_| Error::invalid(format!("the {media} body is not UTF-8 text")))?;
                Ok(Some(Value::String(text)))
            }
        }
    }
}

/// The body of an operation request as JSON (`None` when there is none).
fn body_json(headers: &Headers, body: Body) -> Result<Option<Value>> {
    match body {
        Body::None => Ok(None),
        Body::Bytes(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(None),
        body => crate::core::resource_body(headers, body).map(Some),
    }
}

impl<S: Store> Engine<S> {
    /// The operations in force.
    pub fn operations(&self) -> Arc<Catalog<S>> {
        Arc::clone(&self.operations.read())
    }

    /// Replaces the operations in force (custom operations added or removed at run time).
    pub fn set_operations(&self, catalog: Catalog<S>) {
        *self.operations.write() = Arc::new(catalog);
    }

    /// Writes the definition of every operation in force as an `OperationDefinition`
    /// resource (under its own id), unless the store holds it as it is already: so that each
    /// is read at `/OperationDefinition/[id]` and found by search on `url`, `code` and
    /// `name` like any resource. A stored definition of a built-in that differs is written
    /// again; definitions of App operations no longer served are deleted.
    ///
    /// # Errors
    /// A store fault.
    pub fn publish_operations(&self) -> Result<()> {
        self.publish_definitions(false)
    }

    /// [`Engine::publish_operations`]; with `apps_only`, only the synthesised definitions of
    /// App operations are looked at (after a custom write: the built-ins' are published at
    /// start). The writes take the write path directly: they change nothing that is served,
    /// so nothing is reloaded after them.
    pub(crate) fn publish_definitions(&self, apps_only: bool) -> Result<()> {
        let catalog = self.operations();
        let mut published = std::collections::HashSet::new();
        for definition in catalog.definitions() {
            if crate::custom::is_stored_definition(definition) {
                // An OperationDefinition a user wrote: it is its own publication.
                continue;
            }
            published.insert(definition.id.clone());
            if apps_only && !crate::custom::is_app_definition(definition) {
                continue;
            }
            let stored = self
                .store()
                .read("OperationDefinition", &definition.id)?
                .filter(|v| !v.is_deleted())
                .map(|v| crate::parse_stored(&v))
                .transpose()?;
            if let Some(mut stored) = stored {
                if let Some(o) = stored.as_object_mut() {
                    o.shift_remove("meta");
                }
                if stored == definition.json {
                    continue;
                }
            }
            let mut wanted = definition.json.clone();
            wanted["id"] = json!(definition.id);
            self.write_definition(&definition.id, Some(wanted))?;
        }
        for stale in crate::custom::stale_app_definitions(self, &published)? {
            self.write_definition(&stale, None)?;
        }
        Ok(())
    }

    /// Writes (or, with `None`, deletes) `OperationDefinition/[id]` in a job of its own.
    fn write_definition(&self, id: &str, json: Option<Value>) -> Result<()> {
        let plan = match json {
            Some(json) => {
                let target = crate::write::Target::Update {
                    rt: "OperationDefinition".into(),
                    id: id.to_string(),
                };
                self.prepare(target, crate::write::Content::Resource(json), None)?
            }
            None => crate::write::Plan::Delete {
                rt: "OperationDefinition".into(),
                ids: vec![id.to_string()],
                if_match: None,
            },
        };
        crate::lanes::block_on(
            self.store().write(move |txn| {
                crate::write::run_plans(txn, &[], vec![plan], |_, e| e).map(|_| ())
            }),
        )
    }

    /// Invokes an operation: resolves it, checks the method, reads and checks the inputs,
    /// runs the handler (again, when what its staged writes relied on moved before they
    /// committed), checks the outputs and shapes the response.
    ///
    /// # Errors
    /// An unknown type (404), target (404/410) or operation (400); `GET` on an operation that
    /// changes state or takes complex inputs (405); bad inputs (400); the handler's errors; a
    /// handler's bad output (500).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn invoke_operation(
        self: &Arc<Self>,
        ctx: &Context,
        code: &str,
        target: OperationTarget,
        method: Method,
        query: &[(String, String)],
        headers: &Headers,
        body: Body,
    ) -> Result<Response> {
        self.invoke(ctx, code, false, target, method, query, headers, body)
    }

    /// `[type]?_query=name&…`: the named query `name` (an operation of kind `query`).
    ///
    /// # Errors
    /// No such query (400); as [`Engine::invoke_operation`].
    pub(crate) fn invoke_named_query(
        self: &Arc<Self>,
        ctx: &Context,
        name: &str,
        resource_type: &str,
        query: &[(String, String)],
        headers: &Headers,
    ) -> Result<Response> {
        let target = OperationTarget::Type(resource_type.to_string());
        self.invoke(
            ctx,
            name,
            true,
            target,
            Method::Get,
            query,
            headers,
            Body::None,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn invoke(
        self: &Arc<Self>,
        ctx: &Context,
        code: &str,
        query_name: bool,
        target: OperationTarget,
        method: Method,
        query: &[(String, String)],
        headers: &Headers,
        body: Body,
    ) -> Result<Response> {
        let (level, resource_type, id, vid) = match target {
            OperationTarget::System => (Level::System, None, None, None),
            OperationTarget::Type(rt) => (Level::Type, Some(rt), None, None),
            OperationTarget::Instance(rt, id) => (Level::Instance, Some(rt), Some(id), None),
            OperationTarget::Version(rt, id, vid) => {
                (Level::Instance, Some(rt), Some(id), Some(vid))
            }
        };
        if let Some(rt) = &resource_type {
            self.check_type(rt)?;
        }
        let catalog = self.operations();
        let found = if query_name {
            catalog.resolve_query(code, resource_type.as_deref().unwrap_or(""))
        } else {
            catalog.resolve(code, level, resource_type.as_deref())
        };
        let Some(entry) = found.cloned() else {
            if query_name {
                return Err(Error::not_supported(format!(
                    "this server has no named query '{code}' on {}",
                    resource_type.as_deref().unwrap_or("")
                )));
            }
            let at = match (&resource_type, &id) {
                (None, _) => "the system level".to_string(),
                (Some(rt), None) => format!("type {rt}"),
                (Some(rt), Some(id)) => format!("{rt}/{id}"),
            };
            let offered = catalog.offered(code);
            let message = if offered.is_empty() {
                format!("this server has no operation ${code}")
            } else {
                format!(
                    "${code} is not offered at {at}; it is invoked as {}",
                    offered.join(" or ")
                )
            };
            return Err(Error::not_supported(message));
        };
        drop(catalog);
        let definition = &entry.definition;
        if matches!(method, Method::Get | Method::Head) && !definition.allows_get() {
            let why = if definition.affects_state {
                "it changes the server's state".to_string()
            } else {
                let complex: Vec<&str> = definition
                    .inputs
                    .iter()
                    .filter(|p| !p.is_primitive())
                    .map(|p| p.name.as_str())
                    .collect();
                format!("its input {} cannot travel in a URL", complex.join(", "))
            };
            return Err(
                Error::not_supported(format!("${code} must be invoked with POST: {why}"))
                    .with_status(405),
            );
        }
        // The target of an instance-level call must exist (a deleted one is passed on: the
        // handler says whether it works on deletions).
        let (version, stored) = match (&resource_type, &id) {
            (Some(rt), Some(id)) => {
                let not_known = || Error::not_found(format!("{rt}/{id} is not known"));
                if !flint_fhir::validate::is_valid_id(id) {
                    return Err(not_known());
                }
                match &vid {
                    None => (
                        None,
                        Some(self.store().read(rt, id)?.ok_or_else(not_known)?),
                    ),
                    Some(vid) => {
                        let missing =
                            || Error::not_found(format!("{rt}/{id}/_history/{vid} is not known"));
                        let n: u64 = vid.parse().map_err(|_| missing())?;
                        (
                            Some(n),
                            Some(self.store().vread(rt, id, n)?.ok_or_else(missing)?),
                        )
                    }
                }
            }
            _ => (None, None),
        };
        let (entries, raw) = if definition.raw_input {
            parameters::raw_inputs(definition, query, raw_body(headers, body)?)?
        } else {
            let body = body_json(headers, body)?;
            let entries = parameters::parse_inputs(definition, query, body)?;
            parameters::check_inputs(definition, &entries)?;
            (entries, Raw::default())
        };
        let target = Target {
            level,
            resource_type,
            id,
            version,
            stored,
        };
        let span = tracing::debug_span!("operation", code = %code, level = ?level);
        let _entered = span.enter();
        let mut output = self.run_handler(ctx, headers, method, &entry, target, entries, &raw)?;
        while let Output::After(answer) = output {
            output = answer();
        }
        match output {
            Output::After(_) => Err(Error::internal("an operation's answer was left unmade")),
            Output::Response(response) => Ok(response),
            Output::Parameters(entries) => {
                let answer = parameters::answer(definition, entries)?;
                Ok(Response::new(200, Payload::Value(answer)))
            }
        }
    }

    /// Runs the handler and commits what it staged; runs it again (up to the write path's
    /// attempts) when the staged writes find their ground moved.
    #[allow(clippy::too_many_arguments)]
    fn run_handler(
        self: &Arc<Self>,
        ctx: &Context,
        headers: &Headers,
        method: Method,
        entry: &Entry<S>,
        target: Target,
        entries: Vec<Value>,
        raw: &Raw,
    ) -> Result<Output> {
        for _ in 0..crate::write::ATTEMPTS {
            ctx.interrupt.check()?;
            let mut call = Call {
                ctx,
                headers,
                method,
                target: target.clone(),
                inputs: Inputs::new(entries.clone()),
                raw,
                changes: Changes::default(),
            };
            let output = entry.handler.invoke(self, &mut call)?;
            if call.changes.is_empty() {
                return Ok(output);
            }
            let Changes {
                checks,
                plans,
                steps,
                types,
            } = call.changes;
            let job = ctx.job.clone();
            let committed = crate::lanes::block_on(self.store().write(move |txn| {
                crate::jobs::claim(&job, txn)?;
                if crate::write::run_plans(txn, &checks, plans, |_, e| e)?.is_none() {
                    return Ok(false);
                }
                for step in steps {
                    step(txn)?;
                }
                crate::jobs::committed(&job, txn)?;
                Ok(true)
            }))?;
            if committed {
                for rt in &types {
                    self.written(rt);
                }
                return Ok(output);
            }
        }
        Err(Error::conflict(
            "what this operation depends on kept changing while it ran; send it again",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_catalog_is_consistent() {
        let catalog: Catalog<flint_store_sqlite::SqliteStore> = Catalog::builtin();
        for d in catalog.definitions() {
            assert!(!d.url.is_empty(), "{} has a canonical URL", d.id);
            assert!(d.json["resourceType"] == "OperationDefinition");
        }
        assert!(catalog.resolve("reindex", Level::System, None).is_some());
        assert!(catalog
            .resolve("reindex", Level::Type, Some("Patient"))
            .is_some());
        assert!(catalog
            .resolve("reindex", Level::Instance, Some("Patient"))
            .is_none());
        assert!(catalog
            .resolve("meta-add", Level::Instance, Some("Observation"))
            .is_some());
        assert!(catalog
            .resolve("meta-add", Level::Type, Some("Observation"))
            .is_none());
    }
}
