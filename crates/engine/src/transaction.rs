//! Batch and transaction Bundles. Every entry becomes a [`Request`] routed by the same
//! [`crate::request::route`] as HTTP requests, and goes through the request core:
//!
//! - a **batch** dispatches each entry on its own, phase by phase in the specification's
//!   order (DELETE, POST, PUT/PATCH, GET), the entries of a phase concurrently so that the
//!   store commits their writes together, and reports each entry's outcome;
//! - a **transaction** is one store job: its writes are resolved and prepared by the same
//!   functions as single writes (`write.rs`), with `urn:uuid:`/`urn:oid:` full URLs and the
//!   full URLs of created entries replaced in every reference of every entry, however deeply
//!   nested, and commit together or not at all. Its reads (GET by id or version) run last in
//!   the same job, so that they see its writes and a failing read fails the whole; its other
//!   GET entries (searches, history) are dispatched after the commit and see its writes, but
//!   cannot undo them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use flint_fhir::{model, Error, IssueType, Result};
use flint_store::Store;
use serde_json::{json, Value};

use crate::bundle::{status_line, BundleBuilder};
use crate::request::{
    Body, Headers, Interaction, Method, Payload, PreferReturn, Request, Response,
};
use crate::write::{run_plans, Content, Done, Intent, Target, ATTEMPTS};
use crate::{Context, Engine};

/// Entries of a batch phase dispatched at once.
const BATCH_PARALLEL: usize = 32;

/// One entry of a Bundle, as a request.
struct Entry {
    request: Request,
    full_url: Option<String>,
}

/// The specification's processing order: DELETE, POST, PUT/PATCH, GET (and the rest).
fn phase(interaction: &Interaction) -> usize {
    match interaction {
        Interaction::Delete { .. } | Interaction::ConditionalDelete { .. } => 0,
        Interaction::Create { .. } => 1,
        Interaction::Update { .. }
        | Interaction::ConditionalUpdate { .. }
        | Interaction::Patch { .. }
        | Interaction::ConditionalPatch { .. } => 2,
        _ => 3,
    }
}

/// A write that depends on nothing but itself: a create without `ifNoneExist`, an update or
/// a delete by id.
fn is_plain_write(request: &Request) -> bool {
    match &request.interaction {
        Interaction::Create { .. } => request.headers.if_none_exist.is_none(),
        Interaction::Update { .. } | Interaction::Delete { .. } => true,
        _ => false,
    }
}

/// A write entry of a transaction on its way to the job.
struct Write {
    index: usize,
    intent: Intent,
    content: Content,
    if_match: Option<u64>,
    full_url: Option<String>,
}

impl<S: Store> Engine<S> {
    /// Processes a `batch` or `transaction` Bundle and returns the response Bundle's JSON.
    ///
    /// # Errors
    /// Not a batch/transaction Bundle (400); for a transaction, any failing entry fails the
    /// whole with that entry's error.
    pub(crate) fn process_bundle(
        self: &Arc<Self>,
        ctx: &Context,
        mut bundle: Value,
        prefer: PreferReturn,
    ) -> Result<String> {
        if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(
                Error::invalid("expected a Bundle of type batch or transaction").at("resourceType"),
            );
        }
        let kind = bundle
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let raw_entries = match bundle.get_mut("entry").map(Value::take) {
            None => Vec::new(),
            Some(Value::Array(a)) => a,
            Some(_) => {
                return Err(Error::invalid("Bundle.entry must be an array").at("Bundle.entry"))
            }
        };
        match kind.as_str() {
            "transaction" => {
                let mut entries = Vec::with_capacity(raw_entries.len());
                for (i, raw) in raw_entries.into_iter().enumerate() {
                    entries.push(parse_entry(ctx, raw, prefer, true).map_err(|e| in_entry(e, i))?);
                }
                self.transaction(ctx, entries, prefer)
            }
            "batch" => Ok(self.batch(ctx, raw_entries, prefer)),
            other => Err(Error::invalid(format!(
                "a Bundle posted to the server base must be a batch or transaction, not '{other}'"
            ))
            .at("Bundle.type")),
        }
    }

    fn batch(
        self: &Arc<Self>,
        ctx: &Context,
        raw_entries: Vec<Value>,
        prefer: PreferReturn,
    ) -> String {
        let count = raw_entries.len();
        let mut outcomes: Vec<Option<Result<Response>>> = (0..count).map(|_| None).collect();
        let mut phases: [Vec<(usize, Request)>; 4] = Default::default();
        for (i, raw) in raw_entries.into_iter().enumerate() {
            match parse_entry(ctx, raw, prefer, false) {
                Ok(entry) => phases[phase(&entry.request.interaction)].push((i, entry.request)),
                Err(e) => outcomes[i] = Some(Err(e)),
            }
        }
        for phase in phases {
            // Plain writes (no conditions) share one store transaction; the rest go through
            // the core one by one.
            let (plain, phase): (Vec<_>, Vec<_>) =
                phase.into_iter().partition(|(_, r)| is_plain_write(r));
            if plain.len() > 1 {
                for (i, outcome) in self.write_together(ctx, plain) {
                    outcomes[i] = Some(outcome);
                }
            } else {
                for (i, outcome) in self.dispatch_all(ctx, plain) {
                    outcomes[i] = Some(outcome);
                }
            }
            let mut phase = phase.into_iter().peekable();
            while phase.peek().is_some() {
                let chunk: Vec<(usize, Request)> = phase.by_ref().take(BATCH_PARALLEL).collect();
                for (i, outcome) in self.dispatch_all(ctx, chunk) {
                    outcomes[i] = Some(outcome);
                }
            }
        }
        let mut out = BundleBuilder::new("batch-response", None, &[]);
        for outcome in outcomes {
            let outcome =
                outcome.unwrap_or_else(|| Err(Error::internal("the entry was not processed")));
            response_entry(&mut out, outcome);
        }
        out.finish()
    }

    /// Dispatches requests side by side on the runtime's blocking threads (a single one on
    /// the calling thread), and waits for all of them.
    fn dispatch_all(
        self: &Arc<Self>,
        ctx: &Context,
        mut requests: Vec<(usize, Request)>,
    ) -> Vec<(usize, Result<Response>)> {
        let runtime = tokio::runtime::Handle::try_current();
        let (Ok(runtime), true) = (runtime, requests.len() > 1) else {
            return requests
                .drain(..)
                .map(|(i, r)| (i, self.dispatch(ctx, r)))
                .collect();
        };
        let handles: Vec<_> = requests
            .into_iter()
            .map(|(i, request)| {
                let (engine, ctx) = (Arc::clone(self), ctx.clone());
                (
                    i,
                    runtime.spawn_blocking(move || engine.dispatch(&ctx, request)),
                )
            })
            .collect();
        handles
            .into_iter()
            .map(|(i, handle)| {
                let outcome = crate::lanes::block_on(handle)
                    .unwrap_or_else(|e| Err(Error::internal(format!("a batch entry failed: {e}"))));
                (i, outcome)
            })
            .collect()
    }

    /// Plain writes of a batch in one write job: each is prepared as a single write would
    /// be, and each keeps its own outcome.
    fn write_together(
        self: &Arc<Self>,
        ctx: &Context,
        requests: Vec<(usize, Request)>,
    ) -> Vec<(usize, Result<Response>)> {
        let prefer = requests
            .first()
            .map_or(PreferReturn::Representation, |(_, r)| {
                r.headers.prefer_return()
            });
        let mut outcomes = Vec::with_capacity(requests.len());
        let mut prepared = Vec::with_capacity(requests.len());
        for (i, request) in requests {
            let plan = (|| {
                let (intent, if_match) =
                    Intent::of(&request)?.ok_or_else(|| Error::internal("not a write"))?;
                let content = intent.content(&request.headers, request.body)?;
                let target = self.resolve(ctx, &intent, &content, &mut Vec::new())?;
                let rt = target.resource_type().to_string();
                Ok((rt, self.prepare(target, content, if_match)?))
            })();
            match plan {
                Ok((rt, plan)) => prepared.push((i, rt, plan)),
                Err(e) => outcomes.push((i, Err(e))),
            }
        }
        let indexes: Vec<(usize, String)> =
            prepared.iter().map(|(i, rt, _)| (*i, rt.clone())).collect();
        let plans: Vec<_> = prepared.into_iter().map(|(_, _, p)| p).collect();
        let job = ctx.job.clone();
        match crate::lanes::block_on(self.store().write(move |txn| {
            crate::jobs::claim(&job, txn)?;
            let done = crate::write::run_independent(txn, plans)?;
            crate::jobs::committed(&job, txn)?;
            Ok(done)
        })) {
            Ok(done) => {
                for ((i, rt), d) in indexes.into_iter().zip(done) {
                    if d.is_ok() {
                        self.written(&rt);
                    }
                    outcomes.push((i, d.map(|d| self.entry_response(ctx, prefer, d))));
                }
            }
            Err(e) => {
                if e.is_server_fault() {
                    tracing::error!(error = ?e, "a batch's write job failed");
                }
                outcomes.extend(indexes.into_iter().map(|(i, _)| {
                    (
                        i,
                        Err(Error::from_issues(e.issues.clone()).with_status(e.status())),
                    )
                }));
            }
        }
        outcomes
    }

    fn transaction(
        self: &Arc<Self>,
        ctx: &Context,
        entries: Vec<Entry>,
        prefer: PreferReturn,
    ) -> Result<String> {
        let mut writes = Vec::new();
        let mut reads = Vec::new();
        for (index, entry) in entries.into_iter().enumerate() {
            let Entry { request, full_url } = entry;
            match Intent::of(&request).map_err(|e| in_entry(e, index))? {
                Some((intent, if_match)) => {
                    let content = intent
                        .content(&request.headers, request.body)
                        .map_err(|e| in_entry(e, index))?;
                    writes.push(Write {
                        index,
                        intent,
                        content,
                        if_match,
                        full_url,
                    });
                }
                None => reads.push((index, request)),
            }
        }
        let total = writes.len() + reads.len();
        let mut responses: Vec<Option<Result<Response>>> = (0..total).map(|_| None).collect();
        if !writes.is_empty() {
            let mut done = None;
            for _ in 0..ATTEMPTS {
                if let Some(d) = self.transaction_once(ctx, &writes)? {
                    done = Some(d);
                    break;
                }
            }
            let done = done.ok_or_else(|| {
                Error::conflict(
                    "the resources this transaction's conditional entries, references or patches \
                     depend on kept changing while it ran; send it again",
                )
            })?;
            for (index, d) in done {
                responses[index] = Some(Ok(self.entry_response(ctx, prefer, d)));
            }
        }
        // Searches and the like run after the writes commit, as requests of their own.
        reads.sort_by_key(|(i, _)| *i);
        for (index, request) in reads {
            responses[index] = Some(self.dispatch(ctx, request).map_err(|e| in_entry(e, index)));
        }
        let mut out = BundleBuilder::new("transaction-response", None, &[]);
        for response in responses.into_iter().flatten() {
            response_entry(&mut out, response);
        }
        Ok(out.finish())
    }

    /// One attempt at a transaction's writes: `None` when a conditional or a patch resolved
    /// before the write job answers differently inside it (nothing was written).
    fn transaction_once(
        self: &Arc<Self>,
        ctx: &Context,
        writes: &[Write],
    ) -> Result<Option<Vec<(usize, Done)>>> {
        let mut checks = Vec::new();
        let mut targets = Vec::with_capacity(writes.len());
        for w in writes {
            let target = self
                .resolve(ctx, &w.intent, &w.content, &mut checks)
                .map_err(|e| in_entry(e, w.index))?;
            targets.push(target);
        }
        // Placeholders: every full URL of a created entry, and urn: full URLs of updates.
        let mut replacements: HashMap<String, String> = HashMap::new();
        for (w, target) in writes.iter().zip(&targets) {
            let Some(full_url) = &w.full_url else {
                continue;
            };
            match target {
                Target::Create { rt, id }
                | Target::Keep {
                    rt,
                    existing: Some(flint_store::Version { id, .. }),
                } => {
                    replacements.insert(full_url.clone(), format!("{rt}/{id}"));
                }
                Target::Update { rt, id } if full_url.starts_with("urn:") => {
                    replacements.insert(full_url.clone(), format!("{rt}/{id}"));
                }
                _ => {}
            }
        }
        // Conditional references (`Patient?identifier=x|1`) must match exactly one resource.
        for w in writes {
            let Content::Resource(resource) = &w.content else {
                continue;
            };
            let mut conditional = Vec::new();
            conditional_references(resource, &mut conditional);
            for reference in conditional {
                if replacements.contains_key(&reference) {
                    continue;
                }
                let (rt, criteria) = reference.split_once('?').unwrap_or((&reference, ""));
                let found = self
                    .checked_matches(ctx, rt, criteria, 2, &mut checks)
                    .map_err(|e| in_entry(e, w.index))?;
                let fail = |code, what: &str| {
                    in_entry(
                        Error::new(
                            code,
                            format!("the conditional reference '{reference}' {what}"),
                        )
                        .with_status(412),
                        w.index,
                    )
                };
                match found.as_slice() {
                    [one] => {
                        replacements.insert(reference.clone(), format!("{rt}/{}", one.id));
                    }
                    [] => return Err(fail(IssueType::NotFound, "matches nothing")),
                    _ => {
                        return Err(fail(
                            IssueType::MultipleMatches,
                            "matches more than one resource",
                        ))
                    }
                }
            }
        }
        let mut seen = HashSet::new();
        let mut issues = Vec::new();
        let mut plans = Vec::with_capacity(writes.len());
        let mut order: Vec<usize> = (0..writes.len()).collect();
        order.sort_by_key(|&k| match writes[k].intent {
            Intent::Delete { .. } | Intent::ConditionalDelete { .. } => 0,
            Intent::Create { .. } => 1,
            Intent::Read { .. } => 3,
            _ => 2,
        });
        let mut touches_search_parameters = false;
        for k in order {
            let (w, target) = (&writes[k], targets[k].clone());
            let rt = target.resource_type().to_string();
            touches_search_parameters |= rt == "SearchParameter";
            if !matches!(target, Target::Keep { .. } | Target::Read { .. }) {
                if let Some(id) = target.id() {
                    if !seen.insert(format!("{rt}/{id}")) {
                        return Err(in_entry(
                            Error::invalid(format!(
                                "{rt}/{id} is the target of more than one entry"
                            )),
                            w.index,
                        ));
                    }
                }
            }
            let mut content = w.content.clone();
            if let Content::Resource(resource) = &mut content {
                if let Err(unresolved) = rewrite_references(resource, &replacements) {
                    return Err(in_entry(
                        Error::invalid(format!(
                            "the reference '{unresolved}' matches no entry's fullUrl"
                        )),
                        w.index,
                    ));
                }
                if let (Target::Update { id, .. }, Value::Object(r)) = (&target, &mut *resource) {
                    r.insert("id".into(), Value::String(id.clone()));
                }
            }
            match self.prepare(target, content, w.if_match) {
                Ok(plan) => plans.push((w.index, plan)),
                // Validation problems of every entry are reported together.
                Err(e) if e.status() == 400 && e.code() != IssueType::NotSupported => {
                    issues.extend(e.issues.into_iter().map(|mut issue| {
                        issue.expression = issue
                            .expression
                            .iter()
                            .map(|x| {
                                x.replacen(&rt, &format!("Bundle.entry[{}].resource", w.index), 1)
                            })
                            .collect();
                        if issue.expression.is_empty() {
                            issue.diagnostics =
                                format!("Bundle.entry[{}]: {}", w.index, issue.diagnostics);
                        }
                        issue
                    }));
                }
                Err(e) => return Err(in_entry(e, w.index)),
            }
        }
        if !issues.is_empty() {
            return Err(Error::from_issues(issues));
        }
        let (indexes, plans): (Vec<usize>, Vec<_>) = plans.into_iter().unzip();
        let job = ctx.job.clone();
        let done = crate::lanes::block_on(self.store().write(move |txn| {
            crate::jobs::claim(&job, txn)?;
            let done = run_plans(txn, &checks, plans, |k, e| in_entry(e, indexes[k]))?;
            if done.is_some() {
                crate::jobs::committed(&job, txn)?;
            }
            Ok(done.map(|d| indexes.into_iter().zip(d).collect::<Vec<_>>()))
        }))?;
        if done.is_some() && touches_search_parameters {
            self.written("SearchParameter");
        }
        Ok(done)
    }

    /// A write's entry response: as the single interaction answers, except that an
    /// informational outcome has no place as an entry's resource.
    fn entry_response(&self, ctx: &Context, prefer: PreferReturn, done: Done) -> Response {
        let mut r = self.write_response(ctx, prefer, done);
        if prefer == PreferReturn::OperationOutcome {
            r.payload = Payload::None;
        }
        r
    }
}

fn in_entry(e: Error, i: usize) -> Error {
    let mut e = e;
    for issue in &mut e.issues {
        if !issue.diagnostics.starts_with("Bundle.entry[") {
            issue.diagnostics = format!("Bundle.entry[{i}]: {}", issue.diagnostics);
        }
        if issue.expression.is_empty() {
            issue.expression.push(format!("Bundle.entry[{i}]"));
        }
    }
    e
}

/// Turns a Bundle entry into a request: `request.method` and `request.url` routed as HTTP
/// requests are, `ifMatch`/`ifNoneMatch`/`ifModifiedSince`/`ifNoneExist` as headers, the
/// resource as the body. `Prefer: return` is the Bundle request's.
fn parse_entry(
    ctx: &Context,
    mut raw: Value,
    prefer: PreferReturn,
    in_transaction: bool,
) -> Result<Entry> {
    let request = raw
        .get("request")
        .cloned()
        .ok_or_else(|| Error::invalid("the entry has no request"))?;
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid("the entry has no request.method"))?;
    let method = Method::parse(method)
        .filter(|m| *m != Method::Head)
        .ok_or_else(|| Error::invalid(format!("'{method}' is not a method of a Bundle entry")))?;
    let url = request
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid("the entry has no request.url"))?;
    let url = relative_url(ctx, url);
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url, None),
    };
    let mut parsed = Request::parse(method, path, query)?;
    if matches!(parsed.interaction, Interaction::Bundle) {
        return Err(Error::invalid("a Bundle entry cannot itself post a Bundle"));
    }
    if let Interaction::Create { rt } = &parsed.interaction {
        if query.is_some() {
            return Err(Error::invalid(
                "a POST entry's url is the type alone; criteria go in ifNoneExist",
            ));
        }
        let body_type = raw
            .get("resource")
            .and_then(|r| r.get("resourceType"))
            .and_then(Value::as_str);
        if model::r4().is_resource_type(rt) && body_type != Some(rt.as_str()) {
            return Err(Error::invalid(format!(
                "the entry's resource is not a {rt}"
            )));
        }
    }
    let text = |name: &str| {
        request
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let prefer_text = match prefer {
        PreferReturn::Minimal => "return=minimal",
        PreferReturn::Representation => "return=representation",
        PreferReturn::OperationOutcome => "return=OperationOutcome",
    };
    parsed.headers = Headers {
        if_match: text("ifMatch"),
        if_none_match: text("ifNoneMatch"),
        if_modified_since: text("ifModifiedSince"),
        if_none_exist: text("ifNoneExist"),
        prefer: Some(prefer_text.to_string()),
        content_type: None,
        others: Vec::new(),
    };
    parsed.body = match raw.get_mut("resource").map(Value::take) {
        Some(resource) => Body::Json(resource),
        None => Body::None,
    };
    if in_transaction
        && matches!(
            parsed.interaction,
            Interaction::Create { .. }
                | Interaction::Update { .. }
                | Interaction::ConditionalUpdate { .. }
        )
        && matches!(parsed.body, Body::None)
    {
        return Err(Error::invalid("the entry needs a resource"));
    }
    let full_url = raw
        .get("fullUrl")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Entry {
        request: parsed,
        full_url,
    })
}

/// The part of an entry's `request.url` from the resource type on: relative URLs as they are,
/// absolute ones with this server's base (or any other base) removed.
fn relative_url<'u>(ctx: &Context, url: &'u str) -> &'u str {
    if let Some(rest) = url.strip_prefix(ctx.base_url.as_str()) {
        return rest.trim_start_matches('/');
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return url.trim_start_matches('/');
    }
    let path = url.split('?').next().unwrap_or(url);
    let mut offset = 0;
    for segment in path.split('/') {
        if model::r4().is_resource_type(segment) {
            return &url[offset..];
        }
        offset += segment.len() + 1;
    }
    url
}

/// Collects `Type?criteria` references.
fn conditional_references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (key, v) in fields {
                match (key.as_str(), v) {
                    ("reference", Value::String(s))
                        if s.split_once('?')
                            .is_some_and(|(rt, _)| model::r4().is_resource_type(rt)) =>
                    {
                        out.push(s.clone());
                    }
                    _ => conditional_references(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| conditional_references(v, out)),
        _ => {}
    }
}

/// Replaces placeholder references. Returns the first `urn:` reference that names no entry.
fn rewrite_references(
    value: &mut Value,
    map: &HashMap<String, String>,
) -> std::result::Result<(), String> {
    match value {
        Value::Object(fields) => {
            for (key, v) in fields.iter_mut() {
                if key == "reference" {
                    if let Value::String(s) = v {
                        if let Some(target) = map.get(s.as_str()) {
                            *s = target.clone();
                        } else if s.starts_with("urn:uuid:") || s.starts_with("urn:oid:") {
                            return Err(s.clone());
                        }
                        continue;
                    }
                }
                rewrite_references(v, map)?;
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|v| rewrite_references(v, map)),
        _ => Ok(()),
    }
}

/// Adds a response entry: `response` (status, location, etag, lastModified, or the
/// OperationOutcome of a failure) and the resource, if any.
fn response_entry(out: &mut BundleBuilder, outcome: Result<Response>) {
    match outcome {
        Ok(r) => {
            let mut response = json!({"status": status_line(r.status)});
            if let Some(location) = r.location.as_ref().or(r.content_location.as_ref()) {
                response["location"] = json!(location);
            }
            if let Some((version, last_updated)) = r.version {
                response["etag"] = json!(format!("W/\"{version}\""));
                response["lastModified"] =
                    json!(flint_fhir::datetime::format_instant(last_updated));
            }
            let full_url = r.full_url.as_deref().or_else(|| {
                r.location
                    .as_deref()
                    .and_then(|l| l.split("/_history/").next())
            });
            let text = r.payload_text();
            out.entry(
                full_url,
                text.as_deref().map(str::as_bytes),
                &[("response", response)],
            );
        }
        Err(e) => {
            if e.is_server_fault() {
                tracing::error!(error = ?e, "batch entry failed");
            }
            let response =
                json!({"status": status_line(e.status()), "outcome": e.to_operation_outcome()});
            out.entry(None, None, &[("response", response)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_nested_references_and_reports_unresolved_ones() {
        let map = HashMap::from([("urn:uuid:1".to_string(), "Patient/abc".to_string())]);
        let mut r = json!({"subject": {"reference": "urn:uuid:1"}, "contained": [{"x": [{"reference": "urn:uuid:1"}]}]});
        rewrite_references(&mut r, &map).unwrap();
        assert_eq!(r["subject"]["reference"], "Patient/abc");
        assert_eq!(r["contained"][0]["x"][0]["reference"], "Patient/abc");
        let mut bad = json!({"subject": {"reference": "urn:uuid:2"}});
        assert_eq!(
            rewrite_references(&mut bad, &map).unwrap_err(),
            "urn:uuid:2"
        );
    }

    #[test]
    fn etags_parse() {
        use crate::parse_etag;
        assert_eq!(parse_etag("W/\"3\""), Some(3));
        assert_eq!(parse_etag("\"3\""), Some(3));
        assert_eq!(parse_etag("3"), Some(3));
        assert_eq!(parse_etag("W/\"x\""), None);
    }
}
