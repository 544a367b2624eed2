//! The sandbox's `client`: each call a script makes is one request through the request core,
//! with the invocation's context (the caller's, or the Bot's or App's own), as if it came
//! over HTTP.

use std::cell::Cell;
use std::sync::Arc;

use flint_fhir::Error;
use flint_sandbox::{Host, HostRequest, HostResponse, Json, LogLevel};
use flint_store::Store;
use serde_json::{json, Value};

use crate::request::{Body, Headers, Method, Payload, Request};
use crate::{Context, Engine};

thread_local! {
    /// Set while a script's call runs on its sandbox worker: a script's call cannot run
    /// another script (it would wait for a worker while holding one).
    static IN_SCRIPT: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread is serving a script's call.
pub(crate) fn in_script() -> bool {
    IN_SCRIPT.with(Cell::get)
}

pub(crate) struct Client<S> {
    engine: Arc<Engine<S>>,
    ctx: Context,
    /// `[request id] [invocation id]`, for the log.
    tag: String,
    /// The operation, for the log.
    what: String,
    /// The writes of an invocation that runs in one transaction: held until it ends, then
    /// committed together (or dropped, when it fails). `None`: each call commits on its own.
    staged: Option<parking_lot::Mutex<Staged>>,
}

/// The most resources one invocation's transaction may write.
const MAX_STAGED: usize = 10_000;

/// Writes held for the invocation's one transaction, one entry per resource, and what they
/// make each resource (`None`: deleted), so that the script reads its own writes by id.
#[derive(Default)]
pub(crate) struct Staged {
    entries: Vec<((String, String), Value)>,
    overlay: std::collections::HashMap<(String, String), Option<Value>>,
    /// Resources the invocation created: written once, as they are when it ends, and not
    /// at all when it deletes them again.
    created: std::collections::HashSet<(String, String)>,
}

impl Staged {
    fn put(&mut self, key: (String, String), entry: Value, now: Option<Value>, create: bool) {
        if create {
            self.created.insert(key.clone());
        }
        let created = self.created.contains(&key);
        // The version the invocation first read stays the condition of the commit, however
        // many times it writes the resource again (a later write sees only the staged copy).
        let mut first_read = None;
        if self.overlay.contains_key(&key) {
            first_read = self
                .entries
                .iter()
                .find(|(k, _)| *k == key)
                .and_then(|(_, e)| e["request"].get("ifMatch").cloned());
            self.entries.retain(|(k, _)| *k != key);
        }
        if now.is_some() || !created {
            let mut entry = entry;
            if let Some(o) = entry["request"].as_object_mut() {
                if created {
                    o.shift_remove("ifMatch");
                } else if let (false, Some(v)) = (o.contains_key("ifMatch"), first_read) {
                    o.insert("ifMatch".into(), v);
                }
            }
            self.entries.push((key.clone(), entry));
        }
        self.overlay.insert(key, now);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Refuses a write to a resource not yet staged when the transaction is full: a script
    /// looping over `createResource` would otherwise hold memory without bound.
    fn room_for(&self, rt: &str, id: Option<&str>) -> Result<(), Error> {
        let known =
            id.is_some_and(|id| self.overlay.contains_key(&(rt.to_string(), id.to_string())));
        if known || self.entries.len() < MAX_STAGED {
            return Ok(());
        }
        Err(Error::new(
            flint_fhir::IssueType::TooCostly,
            format!(
                "an invocation's transaction holds at most {MAX_STAGED} writes; to commit each \
                 call on its own, set the operation's transaction extension (or an App \
                 operation's \"transaction\") to false"
            ),
        )
        .with_status(422))
    }

    /// The transaction Bundle of what is staged.
    pub(crate) fn bundle(&self) -> Value {
        let entries: Vec<Value> = self.entries.iter().map(|(_, e)| e.clone()).collect();
        json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    }
}

fn answer(status: u16, body: Option<Value>) -> HostResponse {
    HostResponse { status, body }
}

impl<S: Store> Client<S> {
    pub fn new(
        engine: &Arc<Engine<S>>,
        ctx: Context,
        tag: String,
        what: String,
        transactional: bool,
    ) -> Client<S> {
        Client {
            engine: Arc::clone(engine),
            ctx,
            tag,
            what,
            staged: transactional.then(parking_lot::Mutex::default),
        }
    }

    /// Commits what the invocation staged, as one transaction through the request core.
    ///
    /// # Errors
    /// The transaction's error (nothing of it is written).
    pub fn commit(&self) -> Result<(), Error> {
        let Some(staged) = &self.staged else {
            return Ok(());
        };
        let bundle = {
            let staged = staged.lock();
            if staged.is_empty() {
                return Ok(());
            }
            staged.bundle()
        };
        let request = Request::new(crate::Interaction::Bundle).with_body(Body::Json(bundle));
        self.engine.dispatch(&self.ctx, request).map(|_| ())
    }

    /// The current state of `rt/id` for a staged write: staged, else stored (with its
    /// version), else absent.
    fn current(&self, staged: &Staged, rt: &str, id: &str) -> Result<Current, Error> {
        let key = (rt.to_string(), id.to_string());
        if let Some(now) = staged.overlay.get(&key) {
            return Ok(Current::Staged(now.clone()));
        }
        self.engine.check_type(rt)?;
        match self.engine.store().read(rt, id)? {
            Some(v) if !v.is_deleted() => {
                let version = v.version;
                Ok(Current::Stored(crate::parse_stored(&v)?, version))
            }
            _ => Ok(Current::Absent),
        }
    }

    /// A write of the invocation's transaction, answered at once as the server would answer
    /// it; `None` for what is not a staged write.
    fn stage(&self, request: &mut Request) -> Result<Option<HostResponse>, Error> {
        let Some(staged) = &self.staged else {
            return Ok(None);
        };
        let interaction = request.interaction.clone();
        let body = std::mem::take(&mut request.body);
        let restore = |request: &mut Request, body: Body| {
            request.body = body;
            Ok(None)
        };
        match interaction {
            crate::Interaction::Read { rt, id } => {
                let staged = staged.lock();
                match staged.overlay.get(&(rt.clone(), id.clone())) {
                    Some(Some(r)) => Ok(Some(answer(200, Some(r.clone())))),
                    Some(None) => Err(Error::gone(format!("{rt}/{id} was deleted"))),
                    None => {
                        drop(staged);
                        restore(request, body)
                    }
                }
            }
            crate::Interaction::Create { rt } => {
                let Body::Json(mut resource) = body else {
                    return restore(request, body);
                };
                if let Some(criteria) = request.headers.if_none_exist.clone() {
                    let found = self.search(&rt, &criteria)?;
                    match found.as_slice() {
                        [] => {}
                        [one] => return Ok(Some(answer(200, Some(one.clone())))),
                        _ => {
                            return Err(Error::precondition_failed(format!(
                                "If-None-Exist {criteria} matches more than one {rt}"
                            )))
                        }
                    }
                }
                staged.lock().room_for(&rt, None)?;
                let id = crate::new_id();
                resource["id"] = json!(id);
                set_version(&mut resource, 1);
                self.engine.check_resource(&rt, &resource)?;
                let entry = json!({
                    "fullUrl": format!("{}/{rt}/{id}", self.ctx.base_url),
                    "resource": resource,
                    "request": {"method": "PUT", "url": format!("{rt}/{id}")},
                });
                staged
                    .lock()
                    .put((rt, id), entry, Some(resource.clone()), true);
                Ok(Some(answer(201, Some(resource))))
            }
            crate::Interaction::Update { rt, id } => {
                let Body::Json(mut resource) = body else {
                    return restore(request, body);
                };
                resource["id"] = json!(id);
                let mut staged = staged.lock();
                staged.room_for(&rt, Some(&id))?;
                let current = self.current(&staged, &rt, &id)?;
                let status = self.write(&mut staged, &rt, &id, &mut resource, &current)?;
                Ok(Some(answer(status, Some(resource))))
            }
            crate::Interaction::Patch { rt, id } => {
                let patch = match body {
                    Body::Json(v) => v,
                    Body::Bytes(b) => serde_json::from_slice(&b)
                        .map_err(|_| Error::invalid("the JSON Patch is not JSON"))?,
                    Body::None => {
                        return Err(Error::invalid("a PATCH needs a JSON Patch document"))
                    }
                };
                let mut staged = staged.lock();
                staged.room_for(&rt, Some(&id))?;
                let current = self.current(&staged, &rt, &id)?;
                let mut resource = match &current {
                    Current::Staged(Some(r)) | Current::Stored(r, _) => r.clone(),
                    _ => return Err(Error::not_found(format!("{rt}/{id} is not known"))),
                };
                flint_fhir::patch::apply_json_patch(&mut resource, &patch)?;
                if resource["resourceType"] != rt.as_str() || resource["id"] != id.as_str() {
                    return Err(Error::invalid(
                        "a patch may not change the resource's type or id",
                    ));
                }
                let status = self.write(&mut staged, &rt, &id, &mut resource, &current)?;
                Ok(Some(answer(status.min(200), Some(resource))))
            }
            crate::Interaction::Delete { rt, id } => {
                let mut staged = staged.lock();
                staged.room_for(&rt, Some(&id))?;
                let current = self.current(&staged, &rt, &id)?;
                let mut request = json!({"method": "DELETE", "url": format!("{rt}/{id}")});
                if let Current::Stored(_, v) = current {
                    request["ifMatch"] = json!(format!("W/\"{v}\""));
                }
                staged.put((rt, id), json!({"request": request}), None, false);
                Ok(Some(answer(204, None)))
            }
            _ => restore(request, body),
        }
    }

    /// Stages a new version of `rt/id`; the status a server would answer.
    fn write(
        &self,
        staged: &mut Staged,
        rt: &str,
        id: &str,
        resource: &mut Value,
        current: &Current,
    ) -> Result<u16, Error> {
        let (version, if_match, status) = match current {
            Current::Stored(_, v) => (v + 1, Some(*v), 200),
            Current::Staged(Some(r)) => (version_of(r) + 1, None, 200),
            Current::Staged(None) | Current::Absent => (1, None, 201),
        };
        set_version(resource, version);
        self.engine.check_resource(rt, resource)?;
        let mut request = json!({"method": "PUT", "url": format!("{rt}/{id}")});
        if let Some(v) = if_match {
            // What the script read must still be what is stored when it commits.
            request["ifMatch"] = json!(format!("W/\"{v}\""));
        }
        let entry = json!({
            "fullUrl": format!("{}/{rt}/{id}", self.ctx.base_url),
            "resource": resource.clone(),
            "request": request,
        });
        let create = matches!(current, Current::Absent);
        staged.put(
            (rt.to_string(), id.to_string()),
            entry,
            Some(resource.clone()),
            create,
        );
        Ok(status)
    }

    /// The resources of `rt?criteria` (committed ones).
    fn search(&self, rt: &str, criteria: &str) -> Result<Vec<Value>, Error> {
        let request = Request::parse(Method::Get, rt, Some(criteria))?;
        let response = self.engine.dispatch(&self.ctx, request)?;
        let bundle: Value = match response.payload_text() {
            Some(t) => serde_json::from_str(&t).map_err(Error::internal)?,
            None => Value::Null,
        };
        Ok(bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["search"]["mode"] != "include")
            .map(|e| e["resource"].clone())
            .collect())
    }

    fn send(&self, request: HostRequest) -> Result<(u16, Option<Json>), Error> {
        let upper = request.method.to_ascii_uppercase();
        let Some(method) = Method::parse(&upper) else {
            return Err(
                Error::not_supported(format!("the client cannot send a {upper} request"))
                    .with_status(405),
            );
        };
        let url = request.url.trim();
        let relative = if let Some(rest) = url.strip_prefix(&self.ctx.base_url) {
            rest
        } else if url.contains("://") {
            return Err(Error::new(
                flint_fhir::IssueType::Forbidden,
                format!(
                    "a script can only call this server ({}), not '{url}'",
                    self.ctx.base_url
                ),
            ));
        } else {
            url
        };
        let relative = relative.trim_start_matches('/');
        let (path, query) = match relative.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (relative, None),
        };
        let mut headers = Headers::default();
        for (name, value) in request.headers {
            match name.to_ascii_lowercase().as_str() {
                "if-match" => headers.if_match = Some(value),
                "if-none-match" => headers.if_none_match = Some(value),
                "if-modified-since" => headers.if_modified_since = Some(value),
                "if-none-exist" => headers.if_none_exist = Some(value),
                "prefer" => headers.prefer = Some(value),
                "content-type" => headers.content_type = Some(value),
                other => headers.others.push((other.to_string(), value)),
            }
        }
        let body = match request.body {
            None => Body::None,
            // A JSON Patch travels as bytes with its media type, as over HTTP.
            Some(v) if method == Method::Patch => {
                headers
                    .content_type
                    .get_or_insert_with(|| "application/json-patch+json".into());
                Body::Bytes(v.to_string().into())
            }
            Some(v) => Body::Json(v),
        };
        let mut request = Request::parse(method, path, query)?
            .with_headers(headers)
            .with_body(body);
        if let Some(done) = self.stage(&mut request)? {
            return Ok((done.status, done.body.map(Json::Value)));
        }
        let response = self.engine.dispatch(&self.ctx, request)?;
        // Stored JSON goes to the script as text: parsed once, in JavaScript.
        let body = match response.payload {
            Payload::None => None,
            Payload::Value(v) => Some(Json::Value(v)),
            Payload::Stored(b) => Some(Json::Text(
                String::from_utf8(b.to_vec()).map_err(Error::internal)?,
            )),
            Payload::Text(t) => Some(Json::Text(t)),
        };
        Ok((response.status, body))
    }
}

impl<S: Store> Host for Client<S> {
    fn request(&self, request: HostRequest) -> HostResponse {
        let (status, body) = self.request_json(request);
        let body = body.map(|json| match json {
            Json::Value(v) => v,
            Json::Text(t) => serde_json::from_str(&t).unwrap_or(Value::Null),
        });
        HostResponse { status, body }
    }

    fn request_json(&self, request: HostRequest) -> (u16, Option<Json>) {
        let was = IN_SCRIPT.with(|f| f.replace(true));
        let outcome = self.send(request);
        IN_SCRIPT.with(|f| f.set(was));
        match outcome {
            Ok(response) => response,
            Err(e) => {
                if e.is_server_fault() {
                    tracing::error!(operation = %self.what, invocation = %self.tag, error = ?e, "a script's call failed");
                }
                (e.status(), Some(Json::Value(e.to_operation_outcome())))
            }
        }
    }

    fn log(&self, level: LogLevel, message: &str) {
        let (what, tag) = (&self.what, &self.tag);
        match level {
            LogLevel::Debug => {
                tracing::debug!(operation = %what, invocation = %tag, "console: {message}")
            }
            LogLevel::Info => {
                tracing::info!(operation = %what, invocation = %tag, "console: {message}")
            }
            LogLevel::Warn => {
                tracing::warn!(operation = %what, invocation = %tag, "console: {message}")
            }
            LogLevel::Error => {
                tracing::error!(operation = %what, invocation = %tag, "console: {message}")
            }
        }
    }
}

/// A resource's state as a staged write sees it.
enum Current {
    Staged(Option<Value>),
    Stored(Value, u64),
    Absent,
}

fn version_of(resource: &Value) -> u64 {
    resource["meta"]["versionId"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The version a staged write will have (`meta.lastUpdated` is the commit's, unknown yet).
fn set_version(resource: &mut Value, version: u64) {
    if !resource["meta"].is_object() {
        resource["meta"] = json!({});
    }
    resource["meta"]["versionId"] = json!(version.to_string());
    if let Some(m) = resource["meta"].as_object_mut() {
        m.shift_remove("lastUpdated");
    }
}

#[cfg(test)]
mod staged_tests {
    use super::Staged;
    use serde_json::json;

    fn key() -> (String, String) {
        ("Patient".into(), "1".into())
    }

    #[test]
    fn the_first_reads_version_stays_the_condition() {
        let mut s = Staged::default();
        let put = |m: Option<&str>| {
            let mut request = json!({"method": "PUT", "url": "Patient/1"});
            if let Some(m) = m {
                request["ifMatch"] = json!(m);
            }
            json!({"resource": {"resourceType": "Patient", "id": "1"}, "request": request})
        };
        s.put(key(), put(Some("W/\"3\"")), Some(json!({})), false);
        s.put(key(), put(None), Some(json!({})), false);
        let bundle = s.bundle();
        assert_eq!(bundle["entry"].as_array().unwrap().len(), 1);
        assert_eq!(bundle["entry"][0]["request"]["ifMatch"], "W/\"3\"");
        // A delete after it keeps the condition too.
        s.put(
            key(),
            json!({"request": {"method": "DELETE", "url": "Patient/1"}}),
            None,
            false,
        );
        let bundle = s.bundle();
        assert_eq!(bundle["entry"][0]["request"]["method"], "DELETE");
        assert_eq!(bundle["entry"][0]["request"]["ifMatch"], "W/\"3\"");
    }

    #[test]
    fn a_full_transaction_refuses_new_resources_but_not_known_ones() {
        let mut s = Staged::default();
        for i in 0..super::MAX_STAGED {
            let k = ("Flag".to_string(), i.to_string());
            s.put(
                k,
                json!({"request": {"method": "PUT"}}),
                Some(json!({})),
                true,
            );
        }
        assert!(s.room_for("Flag", None).is_err());
        assert!(s.room_for("Flag", Some("new")).is_err());
        assert!(s.room_for("Flag", Some("7")).is_ok());
    }

    #[test]
    fn a_created_resource_is_written_once_without_a_condition() {
        let mut s = Staged::default();
        let entry = json!({"resource": {"resourceType": "Patient", "id": "1"}, "request": {"method": "PUT", "url": "Patient/1"}});
        s.put(key(), entry.clone(), Some(json!({})), true);
        s.put(key(), entry, Some(json!({})), false);
        assert_eq!(s.bundle()["entry"].as_array().unwrap().len(), 1);
        assert!(s.bundle()["entry"][0]["request"].get("ifMatch").is_none());
        s.put(
            key(),
            json!({"request": {"method": "DELETE", "url": "Patient/1"}}),
            None,
            false,
        );
        assert!(s.is_empty());
    }
}
