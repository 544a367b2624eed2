//! The request core: one dispatcher that takes a FHIR [`Request`] with its [`Context`] and
//! returns a FHIR [`Response`]. The HTTP adapter, every entry of a batch or transaction, the
//! importer, and later operations and the sandbox's `client` all come through here, so that
//! limits, metrics, authorization and audit live in one place.
//!
//! [`Engine::handle`] runs the request in its lane (see `lanes`): no store call, search or
//! write waits on a thread of the async runtime. [`Engine::dispatch`] is the same work on the
//! calling (blocking) thread, for callers already off the runtime.

use std::sync::Arc;

use bytes::Bytes;
use flint_fhir::datetime::{format_instant, parse_date_time_lenient, parse_http_date};
use flint_fhir::{Error, Result};
use flint_store::{HistoryQuery, Store, Version};
use serde_json::{json, Value};

use crate::lanes::block_on;
use crate::request::{Body, Interaction, Payload, PreferReturn, Request, Response};
use crate::search::ParsedSearch;
use crate::subset::{self, Summary};
use crate::write::{Done, Intent};
use crate::{parse_etag, Context, Engine};

/// `_summary` / `_elements` as a request asked for them.
#[derive(Clone, Debug, Default)]
pub struct Subset {
    pub summary: Option<Summary>,
    pub elements: Option<Vec<String>>,
}

impl Subset {
    /// Reads `_summary` and `_elements`.
    ///
    /// # Errors
    /// A `_summary` value that is not one of the five.
    pub fn of(params: &[(String, String)]) -> Result<Subset> {
        let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let summary = get("_summary").map(|s| Summary::parse(s)).transpose()?;
        let elements = get("_elements")
            .map(|e| {
                e.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
            })
            .filter(|v| !v.is_empty());
        Ok(Subset { summary, elements })
    }

    /// Whether the stored bytes are the answer as they are.
    pub fn is_whole(&self) -> bool {
        self.elements.is_none() && matches!(self.summary, None | Some(Summary::False))
    }

    /// A stored resource reduced to the subset (the bytes themselves when whole).
    ///
    /// # Errors
    /// Stored bytes that are not JSON (a store fault).
    pub fn render(&self, json: &Bytes) -> Result<Payload> {
        if self.is_whole() {
            return Ok(Payload::Stored(json.clone()));
        }
        let value: Value = serde_json::from_slice(json).map_err(Error::internal)?;
        Ok(Payload::Value(subset::apply(
            flint_fhir::model::r4(),
            value,
            self.summary,
            self.elements.as_deref(),
        )))
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The largest body a bounded operation is answered with on the thread it arrives on;
/// larger ones go to the costly lane (parsing them is not bounded work).
const BOUNDED_BODY: usize = 64 * 1024;

impl<S: Store> Engine<S> {
    /// Handles one request in its lane.
    ///
    /// # Errors
    /// The request's FHIR error (to become an OperationOutcome); 503 when its lane is full.
    pub async fn handle(self: &Arc<Self>, ctx: Context, request: Request) -> Result<Response> {
        let started = std::time::Instant::now();
        let interaction = request.interaction.name();
        let entry = self.operation_entry(&request.interaction);
        // Only the codes of operations in force label a series: a client cannot add any.
        let operation = match (&request.interaction, &entry) {
            (Interaction::Operation { .. }, Some(e)) => Some(e.definition.code.clone()),
            (Interaction::Operation { .. }, None) => Some("unknown".to_string()),
            _ => None,
        };
        let small_body = match &request.body {
            crate::request::Body::None => true,
            crate::request::Body::Bytes(b) => b.len() <= BOUNDED_BODY,
            crate::request::Body::Json(_) => false,
        };
        let outcome = if entry.as_ref().is_some_and(|e| e.is_bounded())
            && small_body
            && !self.is_stopping()
        {
            // Bounded work (no store access beyond a point read, a few microseconds of CPU,
            // a small body to parse): answered where it arrives, as a point read is.
            self.dispatch(&ctx, request)
        } else {
            self.handle_counted(ctx, request, entry.as_ref()).await
        };
        let status = match &outcome {
            Ok(r) => r.status,
            Err(e) => e.status(),
        };
        self.metrics
            .observe(interaction, operation.as_deref(), status, started.elapsed());
        outcome
    }

    async fn handle_counted(
        self: &Arc<Self>,
        ctx: Context,
        request: Request,
        operation: Option<&crate::operations::Entry<S>>,
    ) -> Result<Response> {
        if request.interaction.is_point_read() {
            // A primary-key look-up of a few microseconds, answered where it arrives: handing
            // it to another thread and back costs more than the look-up (it halved read
            // throughput, BENCHMARKS.md), and it cannot hold the thread for long.
            return self.dispatch(&ctx, request);
        }
        if self.is_stopping() {
            return Err(stopping());
        }
        if request.headers.respond_async()
            && request.interaction.may_run_async()
            && request.origin.is_some()
            && !operation.is_some_and(|e| e.runs_as_job())
        {
            return self.defer(ctx, request).await;
        }
        // Known while it runs, so that `stop` can interrupt it.
        let number = self
            .next_request
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.in_flight.lock().insert(number, ctx.interrupt.clone());
        let _registered = Registered(self, number);
        if self.is_stopping() {
            return Err(stopping());
        }
        // An operation that waits on the sandbox or a remote service waits on the blocking
        // pool, so that a stuck script never holds a thread searches need.
        let costly =
            request.interaction.is_costly() && !operation.is_some_and(|e| e.waits_elsewhere());
        let engine = Arc::clone(self);
        let outcome = self
            .lanes
            .run(costly, move || engine.dispatch(&ctx, request))
            .await;
        match outcome {
            // Interrupted by `stop`, not by its client: a clean 503 the client can retry.
            Err(e) if e.status() == 499 && self.is_stopping() => Err(stopping()),
            other => other,
        }
    }

    /// Handles one request on the calling thread (which must not be a runtime thread).
    ///
    /// # Errors
    /// The request's FHIR error.
    pub fn dispatch(self: &Arc<Self>, ctx: &Context, request: Request) -> Result<Response> {
        let span = tracing::debug_span!(
            "request",
            id = %ctx.request_id,
            interaction = request.interaction.name()
        );
        let _entered = span.enter();
        ctx.interrupt.check()?;
        let Request {
            interaction,
            params,
            headers,
            body,
            ..
        } = request;
        let prefer = headers.prefer_return();
        match interaction {
            Interaction::Capabilities => {
                let date = format_instant(self.clock.now());
                let day = &date[..10];
                let registry = self.registry();
                let operations = self.operations();
                let ops_key = Arc::as_ptr(&operations) as usize;
                // Built once per base URL, day, set of search parameters and of operations:
                // it is large.
                let mut cached = self.capabilities.lock();
                let text = match &*cached {
                    Some((r, base, ops, d, text))
                        if Arc::ptr_eq(r, &registry)
                            && *base == ctx.base_url
                            && *ops == ops_key
                            && d == day =>
                    {
                        text.clone()
                    }
                    _ => {
                        let definitions: Vec<_> = operations.definitions().cloned().collect();
                        let text = crate::capabilities::capability_statement(
                            self.model(),
                            &registry,
                            &definitions,
                            &ctx.base_url,
                            day,
                        )
                        .to_string();
                        *cached = Some((
                            Arc::clone(&registry),
                            ctx.base_url.clone(),
                            ops_key,
                            day.to_string(),
                            text.clone(),
                        ));
                        text
                    }
                };
                Ok(Response::new(200, Payload::Text(text)))
            }
            Interaction::Read { rt, id } => {
                let v = self.read(&rt, &id)?;
                if not_modified(&headers, &v) {
                    let mut r = Response::new(304, Payload::None);
                    r.version = Some((v.version, v.last_updated));
                    return Ok(r);
                }
                self.resource_response(ctx, &v, &params)
            }
            Interaction::Vread { rt, id, vid } => {
                let v = self.vread(&rt, &id, &vid)?;
                self.resource_response(ctx, &v, &params)
            }
            Interaction::Create { .. }
            | Interaction::Update { .. }
            | Interaction::ConditionalUpdate { .. }
            | Interaction::Patch { .. }
            | Interaction::ConditionalPatch { .. }
            | Interaction::Delete { .. }
            | Interaction::ConditionalDelete { .. } => self.write_request(
                ctx,
                Request {
                    interaction,
                    params,
                    headers,
                    body,
                    origin: None,
                },
            ),
            Interaction::DeleteHistory { rt, id } => {
                let removed = self.delete_history(&rt, &id)?;
                Ok(no_content(prefer, || {
                    format!("{removed} earlier versions of {rt}/{id} removed")
                }))
            }
            Interaction::SearchType { rt } => {
                self.check_type(&rt)?;
                let params = form_params(&headers, body, params)?;
                if let Some((_, name)) = params.iter().find(|(k, _)| k == "_query") {
                    // A named query: an operation of kind `query`, answering a searchset.
                    let name = name.clone();
                    let rest: Vec<(String, String)> =
                        params.into_iter().filter(|(k, _)| k != "_query").collect();
                    return self.invoke_named_query(ctx, &name, &rt, &rest, &headers);
                }
                self.search_response(ctx, &rt, &params, headers.strict_handling(), None)
            }
            Interaction::SearchSystem => {
                if params.iter().all(|(k, _)| is_format_param(k)) {
                    return Err(Error::invalid(
                        "GET on the base is a system search and needs parameters (for example _type)",
                    ));
                }
                self.search_response(ctx, "", &params, true, None)
            }
            Interaction::SearchCompartment {
                compartment,
                id,
                rt,
            } => {
                self.check_type(&compartment)?;
                self.check_type(&rt)?;
                if !matches!(
                    compartment.as_str(),
                    "Patient" | "Encounter" | "RelatedPerson" | "Practitioner" | "Device"
                ) {
                    return Err(Error::not_found(format!(
                        "{compartment} is not a compartment"
                    )));
                }
                let mut params = params;
                // The compartment travels as a parameter of its own, so that paging links
                // keep it.
                params.push(("__compartment".into(), format!("{compartment}/{id}")));
                self.search_response(ctx, &rt, &params, headers.strict_handling(), None)
            }
            Interaction::Page { token } => self.page_response(ctx, &token, &headers),
            Interaction::HistoryInstance { rt, id } => {
                self.history_response(ctx, Some(rt), Some(id), &params, None, None)
            }
            Interaction::HistoryType { rt } => {
                self.history_response(ctx, Some(rt), None, &params, None, None)
            }
            Interaction::HistorySystem => {
                self.history_response(ctx, None, None, &params, None, None)
            }
            Interaction::Bundle => {
                let bundle = resource_body(&headers, body)?;
                let text = self.process_bundle(ctx, bundle, prefer)?;
                Ok(Response::new(200, Payload::Text(text)))
            }
            Interaction::Operation {
                name,
                target,
                method,
            } => self.invoke_operation(ctx, &name, target, method, &params, &headers, body),
            Interaction::AsyncStatus { id } => self.async_status(ctx, &id),
            Interaction::ExportFile { job, file } => self.export_file(ctx, &job, &file),
            Interaction::AsyncCancel { id } => {
                let said = block_on(self.cancel_job(ctx, &id))?;
                Ok(Response::new(
                    202,
                    Payload::Value(flint_fhir::error::information(said)),
                ))
            }
        }
    }

    /// Create, update, patch, delete and their conditional forms: the one write path
    /// (`write.rs`), answered as `Prefer: return` asks.
    fn write_request(&self, ctx: &Context, request: Request) -> Result<Response> {
        let prefer = request.headers.prefer_return();
        let (intent, if_match) =
            Intent::of(&request)?.ok_or_else(|| Error::internal("not a write"))?;
        let content = intent.content(&request.headers, request.body)?;
        let done = self.write_one(ctx, &intent, content, if_match)?;
        Ok(match &intent {
            Intent::Delete { rt, id } => delete_response(prefer, done, |n| match n {
                Some(v) => format!("{rt}/{id} deleted (version {v})"),
                None => format!("{rt}/{id} did not exist or was already deleted"),
            }),
            Intent::ConditionalDelete { rt, .. } => {
                let count = match &done {
                    Done::Deleted(d) => d.len(),
                    _ => 0,
                };
                delete_response(prefer, done, |_| format!("{count} {rt} resources deleted"))
            }
            _ => self.write_response(ctx, prefer, done),
        })
    }

    fn resource_response(
        &self,
        ctx: &Context,
        v: &Version,
        params: &[(String, String)],
    ) -> Result<Response> {
        let json = v.json.as_ref().ok_or_else(|| crate::gone(v))?;
        let mut r = Response::version(200, v);
        r.full_url = Some(ctx.url(&v.resource_type, &v.id));
        r.payload = Subset::of(params)?.render(json)?;
        Ok(r)
    }

    /// The response to a successful write, shaped by `Prefer: return`.
    pub(crate) fn write_response(
        &self,
        ctx: &Context,
        prefer: PreferReturn,
        done: Done,
    ) -> Response {
        let (status, v) = match done {
            Done::Written { version, created } => (if created { 201 } else { 200 }, version),
            Done::Existing(version) => (200, version),
            Done::Deleted(_) => return Response::new(204, Payload::None),
            // A transaction's read: answered as a read is.
            Done::Read(version) => {
                let mut r = Response::version(200, &version);
                r.full_url = Some(ctx.url(&version.resource_type, &version.id));
                return r;
            }
        };
        let mut r = match prefer {
            PreferReturn::Representation => Response::version(status, &v),
            PreferReturn::Minimal => {
                let mut r = Response::new(status, Payload::None);
                r.version = Some((v.version, v.last_updated));
                r
            }
            PreferReturn::OperationOutcome => {
                let mut r = Response::new(
                    status,
                    Payload::Value(flint_fhir::error::information(format!(
                        "{}/{} written as version {}",
                        v.resource_type, v.id, v.version
                    ))),
                );
                r.version = Some((v.version, v.last_updated));
                r
            }
        };
        let location = ctx.versioned_url(&v.resource_type, &v.id, v.version);
        if status == 201 {
            r.content_location = Some(location.clone());
        }
        r.location = Some(location);
        r
    }

    /// A search page as a `searchset` Bundle. `page` is the state of a paging link. `rt` is
    /// the type searched, empty for a system search, or the target of an `$everything`
    /// (`$everything/Patient/123`).
    pub(crate) fn search_response(
        self: &Arc<Self>,
        ctx: &Context,
        rt: &str,
        params: &[(String, String)],
        strict: bool,
        page: Option<crate::paging::PageState>,
    ) -> Result<Response> {
        let (snapshot, after, total) = match page {
            Some(p) => (Some(p.snapshot), p.after, p.total),
            None => (None, None, None),
        };
        let limits = &self.limits;
        // An empty type is a system search.
        let everything = rt.strip_prefix(crate::operations::builtin::EVERYTHING_SCOPE);
        let mut parsed: ParsedSearch = if let Some(target) = everything {
            self.parse_everything(ctx, target, params)?
        } else if rt.is_empty() {
            self.parse_system_search(ctx, params, limits.max_count, limits.default_count)?
        } else {
            self.parse_search(
                ctx,
                rt,
                params,
                strict,
                limits.max_count,
                limits.default_count,
            )?
        };
        parsed.query.interrupt = self.search_interrupt(ctx);
        self.search_hook(&parsed.query.interrupt)?;
        let position = after.as_deref().map(position_from_text).transpose()?;
        let outcome = self.run_search(&parsed, snapshot, position, total)?;
        // Links carry the session sealed: the query never shows in clear, and any node can
        // serve the next page from the same snapshot.
        let seal = |after: Option<String>| crate::paging::PageState {
            scope: format!("search:{rt}"),
            params: parsed.applied.clone(),
            snapshot: outcome.snapshot,
            after,
            issued: 0,
            total: outcome.total,
            owner: ctx.owner(),
        };
        let link = |token: String| format!("{}/__page/{token}", ctx.base_url);
        let mut links = vec![(
            "self",
            link(block_on(self.seal_page(&seal(after.clone())))?),
        )];
        if let Some(next) = &outcome.next {
            links.push((
                "next",
                link(block_on(self.seal_page(&seal(Some(position_text(next)))))?),
            ));
        }
        let subset = Subset::of(params)?;
        let mut bundle = crate::bundle::BundleBuilder::new("searchset", outcome.total, &links);
        let matched = [("search", json!({"mode": "match"}))];
        let included = [("search", json!({"mode": "include"}))];
        let entries = outcome
            .versions
            .iter()
            .map(|v| (v, &matched))
            .chain(outcome.included.iter().map(|v| (v, &included)));
        for (v, mode) in entries {
            let Some(json) = &v.json else { continue };
            let url = ctx.url(&v.resource_type, &v.id);
            match subset.render(json)? {
                Payload::Value(value) => {
                    bundle.entry(Some(&url), Some(value.to_string().as_bytes()), mode)
                }
                _ => bundle.entry(Some(&url), Some(json), mode),
            }
        }
        if let Some(note) = &outcome.truncated {
            let outcome = json!({
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "warning", "code": "incomplete", "diagnostics": note}]
            });
            bundle.entry(
                None,
                Some(outcome.to_string().as_bytes()),
                &[("search", json!({"mode": "outcome"}))],
            );
        }
        Ok(Response::new(200, Payload::Text(bundle.finish())))
    }

    /// Follows a sealed paging link, for the caller it was issued to.
    fn page_response(
        self: &Arc<Self>,
        ctx: &Context,
        token: &str,
        headers: &crate::request::Headers,
    ) -> Result<Response> {
        let page = self.open_page(token)?;
        if page.owner != ctx.owner() {
            return Err(Error::invalid(
                "this paging link is not valid (altered, or not issued by this server)",
            ));
        }
        if let Some(scope) = page.scope.strip_prefix("history:") {
            let (rt, id) = match scope.split_once('/') {
                Some((rt, id)) => (Some(rt.to_string()), Some(id.to_string())),
                None if scope.is_empty() => (None, None),
                None => (Some(scope.to_string()), None),
            };
            let page_params = page.params.clone();
            return self.history_response(
                ctx,
                rt,
                id,
                &page_params,
                Some(page.snapshot),
                page.after,
            );
        }
        let rt = page
            .scope
            .strip_prefix("search:")
            .ok_or_else(|| Error::invalid("not a paging link of this server"))?
            .to_string();
        let page_params = page.params.clone();
        self.search_response(
            ctx,
            &rt,
            &page_params,
            headers.strict_handling(),
            Some(page),
        )
    }

    /// A page of history. Later pages come through sealed links carrying the parameters, the
    /// snapshot of the first page and the keyset position.
    fn history_response(
        self: &Arc<Self>,
        ctx: &Context,
        resource_type: Option<String>,
        id: Option<String>,
        params: &[(String, String)],
        snapshot: Option<u64>,
        after: Option<String>,
    ) -> Result<Response> {
        let count = match param(params, "_count") {
            None => self.limits.history_default_count,
            Some(c) => c
                .parse::<usize>()
                .map_err(|_| Error::invalid(format!("_count '{c}' is not a non-negative integer")))?
                .min(self.limits.history_max_count),
        };
        let snapshot = match snapshot {
            Some(s) => s,
            None => self.store().last_tx()?,
        };
        let position = match &after {
            Some(s) => {
                let bad = || Error::invalid("bad paging position");
                let (t, seq) = s.split_once('.').ok_or_else(bad)?;
                Some((
                    t.parse().map_err(|_| bad())?,
                    seq.parse().map_err(|_| bad())?,
                ))
            }
            None => None,
        };
        let q = HistoryQuery {
            resource_type: resource_type.clone(),
            id: id.clone(),
            since: instant_param(params, "_since")?.map(|(start, _)| start),
            at: instant_param(params, "_at")?,
            snapshot: Some(snapshot),
            after: position,
            limit: count,
            interrupt: self.search_interrupt(ctx),
        };
        self.search_hook(&q.interrupt)?;
        let (page, total) = self.history(&q)?;
        let applied: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| matches!(k.as_str(), "_since" | "_at" | "_count"))
            .cloned()
            .collect();
        let seal = |after: Option<String>| crate::paging::PageState {
            scope: history_scope(resource_type.as_deref(), id.as_deref()),
            params: applied.clone(),
            snapshot,
            after,
            issued: 0,
            total: None,
            owner: ctx.owner(),
        };
        let link = |token: String| format!("{}/__page/{token}", ctx.base_url);
        let mut links = vec![(
            "self",
            link(block_on(self.seal_page(&seal(after.clone())))?),
        )];
        if let Some((t, seq)) = page.next {
            links.push((
                "next",
                link(block_on(self.seal_page(&seal(Some(format!("{t}.{seq}")))))?),
            ));
        }
        let mut bundle = crate::bundle::BundleBuilder::new("history", Some(total), &links);
        for v in &page.versions {
            bundle.history_entry(ctx, v);
        }
        Ok(Response::new(200, Payload::Text(bundle.finish())))
    }

    /// The answer to a request run as a job: its response when it ends within the budget,
    /// otherwise `202 Accepted` with the status URL to poll.
    pub(crate) fn answer_job(&self, ctx: &Context, id: &str) -> Result<Response> {
        use crate::jobs::JobStatus;
        match self.wait_job_blocking(ctx, id, self.limits.async_budget)? {
            JobStatus::Ended(_, response) => {
                let mut r = Response::new(response.status, Payload::Value(response.resource));
                r.location = response.location;
                Ok(r)
            }
            JobStatus::Running(progress) => Ok(crate::jobs::accepted(ctx, id, &progress)),
        }
    }

    /// `GET /__async-status/{id}`: `202` with `X-Progress` while running, then `200` with a
    /// `batch-response` Bundle holding the response; `404` once cancelled.
    fn async_status(&self, ctx: &Context, id: &str) -> Result<Response> {
        use crate::jobs::JobStatus;
        // One read of the job: its status, and its kind (an export answers as the IG says).
        let job = self.owned_job(ctx, id)?;
        let status = crate::jobs::status_of::<S>(&job)?;
        if let (JobStatus::Ended(state, response), true) = (&status, job.kind == "export") {
            // The Bulk Data IG: the manifest itself (plain JSON), or the error as it is.
            return Ok(match state {
                flint_store::JobState::Cancelled => {
                    return Err(Error::not_found(format!("the export '{id}' was cancelled")))
                }
                flint_store::JobState::Done => {
                    let mut r = Response::new(200, Payload::Value(response.resource.clone()));
                    r.content_type = Some("application/json");
                    r
                }
                _ => Response::new(response.status, Payload::Value(response.resource.clone())),
            });
        }
        match status {
            JobStatus::Running(progress) => {
                let mut r = Response::new(
                    202,
                    Payload::Value(flint_fhir::error::information(format!(
                        "running: {progress}"
                    ))),
                );
                r.headers.push(("x-progress", progress));
                r.headers.push(("retry-after", "1".into()));
                Ok(r)
            }
            JobStatus::Ended(flint_store::JobState::Cancelled, _) => Err(Error::not_found(
                format!("the asynchronous request '{id}' was cancelled"),
            )),
            JobStatus::Ended(_, response) => {
                Ok(Response::new(200, Payload::Value(response.bundle())))
            }
        }
    }

    /// The interrupt of a search: the request's, with the search time limit.
    /// A search run as a background job has the longer `async_search_timeout`.
    pub(crate) fn search_interrupt(&self, ctx: &Context) -> flint_store::Interrupt {
        let limit = if ctx.job.is_some() {
            self.limits.async_search_timeout
        } else {
            self.limits.search_timeout
        };
        ctx.interrupt.within(limit)
    }
}

/// The conditional criteria of a request: its parameters but those about the response's
/// form, as a query string.
///
/// # Errors
/// No criteria (400).
pub(crate) fn criteria_of(params: &[(String, String)]) -> Result<String> {
    let text: Vec<String> = params
        .iter()
        .filter(|(k, _)| !is_format_param(k))
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    if text.is_empty() {
        Err(Error::invalid(
            "a conditional interaction on a type needs search criteria in the query string",
        ))
    } else {
        Ok(text.join("&"))
    }
}

/// Removes a request from the engine's requests in flight when it ends.
struct Registered<'e, S>(&'e Engine<S>, u64);

impl<S> Drop for Registered<'_, S> {
    fn drop(&mut self) {
        self.0.in_flight.lock().remove(&self.1);
    }
}

fn stopping() -> Error {
    Error::new(
        flint_fhir::IssueType::Transient,
        "the server is stopping; send the request again shortly",
    )
    .with_status(503)
}

/// Query parameters about the response's form, not the request's meaning.
fn is_format_param(name: &str) -> bool {
    matches!(name, "_format" | "_pretty" | "_summary" | "_elements")
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `If-None-Match` (an ETag or `*`) and `If-Modified-Since` on reads.
fn not_modified(headers: &crate::request::Headers, v: &Version) -> bool {
    if let Some(inm) = headers.if_none_match.as_deref() {
        return inm
            .split(',')
            .any(|tag| tag.trim() == "*" || parse_etag(tag) == Some(v.version));
    }
    if let Some(ims) = headers
        .if_modified_since
        .as_deref()
        .and_then(parse_http_date)
    {
        // HTTP dates have second precision.
        return v.last_updated / 1_000_000 <= ims / 1_000_000;
    }
    false
}

/// The answer to a write with nothing to send back: 204, or under
/// `Prefer: return=OperationOutcome` an informational outcome saying what happened.
fn no_content(prefer: PreferReturn, message: impl FnOnce() -> String) -> Response {
    if prefer == PreferReturn::OperationOutcome {
        Response::new(
            200,
            Payload::Value(flint_fhir::error::information(message())),
        )
    } else {
        Response::new(204, Payload::None)
    }
}

fn delete_response(
    prefer: PreferReturn,
    done: Done,
    message: impl FnOnce(Option<u64>) -> String,
) -> Response {
    let last = match &done {
        Done::Deleted(d) => d.last().cloned(),
        _ => None,
    };
    let mut r = no_content(prefer, || message(last.as_ref().map(|v| v.version)));
    if let Some(v) = last {
        r.version = Some((v.version, v.last_updated));
    }
    r
}

/// The media types a resource body may come as.
fn check_content_type(content_type: Option<&str>, extra: &[&str]) -> Result<()> {
    let Some(ct) = content_type else {
        return Ok(());
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if matches!(
        essence.as_str(),
        "application/fhir+json" | "application/json" | "application/json+fhir"
    ) || extra.contains(&essence.as_str())
    {
        Ok(())
    } else {
        Err(Error::not_supported(format!(
            "unsupported media type '{ct}'; send application/fhir+json"
        ))
        .with_status(415))
    }
}

pub(crate) fn parse_json(bytes: &[u8]) -> Result<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::invalid("the request has no body"));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid(format!("the body is not valid JSON: {e}")))
}

/// A resource body: a JSON object.
pub(crate) fn resource_body(headers: &crate::request::Headers, body: Body) -> Result<Value> {
    let value = match body {
        Body::None => return Err(Error::invalid("the request has no body")),
        Body::Json(v) => v,
        Body::Bytes(bytes) => {
            check_content_type(headers.content_type.as_deref(), &[])?;
            parse_json(&bytes)?
        }
    };
    if !value.is_object() {
        return Err(Error::invalid(
            "the body must be a JSON object (a FHIR resource)",
        ));
    }
    Ok(value)
}

/// A JSON Patch document: over HTTP as `application/json-patch+json`; in a Bundle entry as a
/// `Binary` with the patch as base64 `data` (the R4 way), or a bare JSON array.
pub(crate) fn patch_body(headers: &crate::request::Headers, body: Body) -> Result<Value> {
    match body {
        Body::None => Err(Error::invalid("a PATCH needs a JSON Patch document")),
        Body::Bytes(bytes) => {
            let ct = headers.content_type.as_deref().unwrap_or("");
            if !ct
                .to_ascii_lowercase()
                .starts_with("application/json-patch+json")
            {
                let hint = if ct.contains("fhir+json") {
                    " (FHIRPath Patch is not supported yet)"
                } else {
                    ""
                };
                return Err(Error::not_supported(format!(
                    "PATCH needs Content-Type application/json-patch+json, not '{ct}'{hint}"
                ))
                .with_status(415));
            }
            parse_json(&bytes)
        }
        Body::Json(resource) => {
            if resource.is_array() {
                return Ok(resource);
            }
            match resource.get("resourceType").and_then(Value::as_str) {
                Some("Binary") => {
                    use base64::Engine as _;
                    let data = resource
                        .get("data")
                        .and_then(Value::as_str)
                        .ok_or_else(|| Error::invalid("the Binary has no data"))?;
                    let cleaned: String = data.chars().filter(|c| !c.is_whitespace()).collect();
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(cleaned.trim_end_matches('=').as_bytes())
                        .or_else(|_| {
                            base64::engine::general_purpose::STANDARD_NO_PAD
                                .decode(cleaned.trim_end_matches('=').as_bytes())
                        })
                        .map_err(|_| Error::invalid("the Binary's data is not base64"))?;
                    serde_json::from_slice(&bytes)
                        .map_err(|e| Error::invalid(format!("the patch is not JSON: {e}")))
                }
                Some("Parameters") => Err(Error::not_supported(
                    "FHIRPath Patch is not supported yet; send a JSON Patch in a Binary",
                )),
                _ => Err(Error::invalid(
                    "a PATCH entry needs a Binary resource holding a JSON Patch",
                )),
            }
        }
    }
}

/// `POST _search`: the form body's parameters after the query string's.
fn form_params(
    headers: &crate::request::Headers,
    body: Body,
    mut params: Vec<(String, String)>,
) -> Result<Vec<(String, String)>> {
    let bytes = match body {
        Body::None => return Ok(params),
        Body::Bytes(b) => b,
        Body::Json(_) => return Err(Error::invalid("a search takes no resource body")),
    };
    let ct = headers.content_type.as_deref().unwrap_or("");
    if !ct
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        if bytes.is_empty() {
            return Ok(params);
        }
        return Err(Error::not_supported(format!(
            "POST _search needs Content-Type application/x-www-form-urlencoded, not '{ct}'"
        ))
        .with_status(415));
    }
    let form =
        std::str::from_utf8(&bytes).map_err(|_| Error::invalid("the form body is not UTF-8"))?;
    params.extend(crate::search::parse_query(form));
    Ok(params)
}

fn instant_param(params: &[(String, String)], name: &str) -> Result<Option<(i64, i64)>> {
    match param(params, name) {
        None => Ok(None),
        Some(s) => parse_date_time_lenient(s)
            .map(|d| Some((d.start_micros(), d.end_micros())))
            .ok_or_else(|| {
                Error::invalid(format!("{name} '{s}' is not a FHIR instant or dateTime"))
            }),
    }
}

/// The paging scope of a history: `history:`, `history:Patient`, `history:Patient/123`.
fn history_scope(resource_type: Option<&str>, id: Option<&str>) -> String {
    match (resource_type, id) {
        (Some(rt), Some(id)) => format!("history:{rt}/{id}"),
        (Some(rt), None) => format!("history:{rt}"),
        _ => "history:".to_string(),
    }
}

fn position_text(p: &flint_store::search::Position) -> String {
    use flint_store::search::Position;
    match p {
        Position::Seq(s) => format!("s{s}"),
        Position::Offset(n) => format!("o{n}"),
        Position::Id(id) => format!("i{id}"),
        Position::Key(value, seq) => format!("k{seq}:{value}"),
    }
}

fn position_from_text(s: &str) -> Result<flint_store::search::Position> {
    use flint_store::search::Position;
    let bad = || Error::invalid("bad paging position");
    match s.split_at_checked(1) {
        Some(("s", seq)) => Ok(Position::Seq(seq.parse().map_err(|_| bad())?)),
        Some(("i", id)) => Ok(Position::Id(id.to_string())),
        Some(("o", n)) => Ok(Position::Offset(n.parse().map_err(|_| bad())?)),
        Some(("k", rest)) => {
            let (seq, value) = rest.split_once(':').ok_or_else(bad)?;
            Ok(Position::Key(
                value.to_string(),
                seq.parse().map_err(|_| bad())?,
            ))
        }
        _ => Err(bad()),
    }
}
