//! The only crate that speaks HTTP: the axum router for the FHIR REST API, request context
//! extraction, content negotiation, FHIR headers (ETag, Location, conditional reads, Prefer)
//! and the mapping of every error — ours, axum's rejections, panics, unknown routes — to an
//! `OperationOutcome` with the right status.

mod capabilities;
pub mod format;
mod operations;
mod subset;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use flint_engine::{BundleOptions, Context, Engine, PreferReturn};
use flint_fhir::datetime::{
    format_http_date, format_instant, parse_date_time_lenient, parse_http_date,
};
use flint_fhir::Error;
use flint_store::{HistoryQuery, Store, Version};
use serde_json::Value;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::decompression::RequestDecompressionLayer;

use format::{negotiate, param, parse_query, MediaType, Output, Params};

/// Settings of the HTTP layer.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Absolute base URL to use in links; `None` derives it from each request.
    pub base_url: Option<String>,
    /// Where the FHIR API is mounted (`/fhir`).
    pub context_path: String,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Default and largest page size of history.
    pub default_page_size: usize,
    pub max_page_size: usize,
    /// How long a request run as a background job is waited for before the answer is
    /// `202 Accepted` with a status URL.
    pub async_budget: std::time::Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            base_url: None,
            context_path: "/fhir".into(),
            max_body_bytes: 16 * 1024 * 1024,
            default_page_size: 50,
            max_page_size: 1000,
            async_budget: std::time::Duration::from_secs(1),
        }
    }
}

struct AppState<S> {
    engine: Arc<Engine<S>>,
    config: HttpConfig,
}

type Shared<S> = Arc<AppState<S>>;

/// An error on its way to the client as an `OperationOutcome`.
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        if e.is_server_fault() {
            tracing::error!(error = ?e, "request failed");
        }
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        fhir_json(status, e.to_operation_outcome().to_string())
    }
}

type ApiResult = Result<Response, ApiError>;

fn fhir_json(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(MediaType::FhirJson.content_type()),
    );
    r
}

/// Builds the router with the FHIR API under the configured context path.
pub fn router<S: Store>(engine: Arc<Engine<S>>, config: HttpConfig) -> Router {
    let context_path = normalize_context_path(&config.context_path);
    let state: Shared<S> = Arc::new(AppState {
        engine,
        config: HttpConfig {
            context_path: context_path.clone(),
            ..config
        },
    });
    // Routes carry the context path themselves (rather than `nest`) so that the base answers
    // with and without a trailing slash.
    let cp = context_path.as_str();
    let at = |path: &str| format!("{cp}{path}");
    let mut app = Router::new()
        .route(&at("/"), get(root_get::<S>).post(system_post::<S>))
        .route(&at("/metadata"), get(metadata::<S>))
        .route(&at("/_history"), get(system_history::<S>))
        .route(
            &at("/{rt}"),
            get(type_search::<S>)
                .post(create::<S>)
                .put(conditional_update::<S>)
                .patch(conditional_patch::<S>)
                .delete(conditional_delete::<S>),
        )
        .route(
            &at("/{rt}/_search"),
            axum::routing::post(type_search_post::<S>),
        )
        .route(&at("/__page/{token}"), get(page::<S>))
        .route(
            &at("/__async-status/{id}"),
            get(operations::status::<S>).delete(operations::cancel::<S>),
        )
        .route(
            &at("/{compartment}/{id}/{rt}"),
            get(compartment_search::<S>).post(instance_operation::<S>),
        )
        .route(&at("/{rt}/_history"), get(type_history::<S>))
        .route(
            &at("/{rt}/{id}"),
            get(read::<S>)
                .post(type_operation::<S>)
                .put(update::<S>)
                .patch(patch::<S>)
                .delete(delete::<S>),
        )
        .route(
            &at("/{rt}/{id}/_history"),
            get(instance_history::<S>).delete(delete_history::<S>),
        )
        .route(&at("/{rt}/{id}/_history/{vid}"), get(vread::<S>));
    if !cp.is_empty() {
        app = app.route(cp, get(root_get::<S>).post(system_post::<S>));
    }
    app.method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .fallback(not_found)
        .layer(RequestDecompressionLayer::new())
        .layer(CompressionLayer::new())
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError(Error::internal("a request handler panicked")).into_response()
            },
        ))
}

fn normalize_context_path(p: &str) -> String {
    let trimmed = p.trim().trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

async fn not_found(request: Request) -> ApiError {
    ApiError(Error::not_found(format!(
        "no such endpoint: {} {}",
        request.method(),
        request.uri().path()
    )))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError(
        Error::not_supported(format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ))
        .with_status(405),
    )
}

/// What every handler needs from the request: its context, parameters and output format.
struct Fhir {
    ctx: Context,
    params: Params,
    output: Output,
}

fn fhir<S>(state: &AppState<S>, headers: &HeaderMap, query: Option<&str>) -> Result<Fhir, Error> {
    let params = parse_query(query);
    let output = negotiate(&params, headers)?;
    let base = format::base_url(
        state.config.base_url.as_deref(),
        &state.config.context_path,
        headers,
    );
    Ok(Fhir {
        ctx: Context::new(base),
        params,
        output,
    })
}

/// How much of an over-long body is still read (and dropped) before answering 413, so that a
/// client still sending gets the answer rather than a reset connection.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Error> {
    use http_body_util::BodyExt;
    let too_large = || {
        Error::new(
            flint_fhir::IssueType::TooLong,
            format!("the request body exceeds {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    // A body declared far beyond what is drained is refused at once.
    if declared.is_some_and(|len| len > DRAIN_LIMIT) {
        return Err(too_large());
    }
    let mut body = body;
    let mut collected: Vec<u8> = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| Error::invalid(format!("cannot read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen > DRAIN_LIMIT {
            break;
        }
        if seen <= limit {
            collected.extend_from_slice(&data);
        }
    }
    if seen > limit {
        return Err(too_large());
    }
    Ok(Bytes::from(collected))
}

fn parse_json(bytes: &[u8]) -> Result<Value, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::invalid("the request has no body"));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid(format!("the body is not valid JSON: {e}")))
}

async fn resource_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Value, Error> {
    format::check_content_type(headers, &[])?;
    let bytes = read_body(headers, body, limit).await?;
    let value = parse_json(&bytes)?;
    if !value.is_object() {
        return Err(Error::invalid(
            "the body must be a JSON object (a FHIR resource)",
        ));
    }
    Ok(value)
}

/// The body of a resource response: the stored bytes, or a reduced/pretty rendering.
fn render(state_model: &flint_fhir::Model, output: &Output, json: &Bytes) -> Result<Bytes, Error> {
    if output.is_verbatim() {
        return Ok(json.clone());
    }
    let value: Value = serde_json::from_slice(json).map_err(Error::internal)?;
    let value = subset::apply(
        state_model,
        value,
        output.summary,
        output.elements.as_deref(),
    );
    Ok(Bytes::from(to_text(&value, output.pretty)))
}

fn to_text(value: &Value, pretty: bool) -> String {
    if pretty {
        serde_json::to_string_pretty(value).unwrap_or_default()
    } else {
        value.to_string()
    }
}

fn respond(output: &Output, status: StatusCode, body: Bytes) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(output.media.content_type()),
    );
    r
}

fn respond_text(output: &Output, status: StatusCode, text: String) -> Response {
    if output.pretty {
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            return respond(output, status, Bytes::from(to_text(&v, true)));
        }
    }
    respond(output, status, Bytes::from(text))
}

fn respond_value(output: &Output, status: StatusCode, value: &Value) -> Response {
    respond(output, status, Bytes::from(to_text(value, output.pretty)))
}

/// The answer to a write with nothing to send back: 204, or under
/// `Prefer: return=OperationOutcome` an informational outcome saying what happened.
fn no_content(output: &Output, message: impl FnOnce() -> String) -> Response {
    if output.prefer == PreferReturn::OperationOutcome {
        respond_value(
            output,
            StatusCode::OK,
            &flint_fhir::error::information(message()),
        )
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

fn version_headers(r: &mut Response, v: &Version) {
    let h = r.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{}\"", v.version)) {
        h.insert(header::ETAG, etag);
    }
    if let Ok(lm) = HeaderValue::from_str(&format_http_date(v.last_updated)) {
        h.insert(header::LAST_MODIFIED, lm);
    }
}

fn if_match(headers: &HeaderMap) -> Result<Option<u64>, Error> {
    match headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        None => Ok(None),
        Some(s) => flint_engine::parse_etag_header(s).map(Some).ok_or_else(|| {
            Error::invalid(format!(
                "If-Match '{s}' is not a version ETag such as W/\"3\""
            ))
        }),
    }
}

/// `GET [base]?...`: a system search (`_type` names the types).
async fn root_get<S: Store>(
    State(state): State<Shared<S>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    if q.as_deref().is_none_or(|q| q.trim().is_empty()) {
        return Err(Error::invalid(
            "GET on the base is a system search and needs parameters (for example _type)",
        )
        .into());
    }
    let f = fhir(&state, &headers, q.as_deref())?;
    run_search(&state, &headers, &f, "", &f.params, None).await
}

async fn metadata<S: Store>(
    State(state): State<Shared<S>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let f = fhir(&state, &headers, q.as_deref())?;
    let date = format_instant(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64),
    );
    let cs = capabilities::capability_statement(
        state.engine.model(),
        &state.engine.registry(),
        &f.ctx.base_url,
        &date[..10],
    );
    Ok(respond_value(&f.output, StatusCode::OK, &cs))
}

async fn read<S: Store>(
    State(state): State<Shared<S>>,
    Path((rt, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    if let Some(name) = operations::operation_name(&id) {
        return operations::invoke_get(name, operations::Target::Type(&rt));
    }
    let f = fhir(&state, &headers, q.as_deref())?;
    let v = state.engine.read(&rt, &id)?;
    if not_modified(&headers, &v) {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        version_headers(&mut r, &v);
        return Ok(r);
    }
    resource_response(&state, &f.output, StatusCode::OK, &v)
}

/// `If-None-Match` (an ETag or `*`) and `If-Modified-Since` on reads.
fn not_modified(headers: &HeaderMap, v: &Version) -> bool {
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|h| h.to_str().ok())
    {
        return inm.split(',').any(|tag| {
            tag.trim() == "*" || flint_engine::parse_etag_header(tag) == Some(v.version)
        });
    }
    if let Some(ims) = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|h| h.to_str().ok())
        .and_then(parse_http_date)
    {
        // HTTP dates have second precision.
        return v.last_updated / 1_000_000 <= ims / 1_000_000;
    }
    false
}

fn resource_response<S: Store>(
    state: &AppState<S>,
    output: &Output,
    status: StatusCode,
    v: &Version,
) -> ApiResult {
    let json = v.json.as_ref().ok_or_else(|| Error::gone("deleted"))?;
    let mut r = respond(output, status, render(state.engine.model(), output, json)?);
    version_headers(&mut r, v);
    Ok(r)
}

async fn vread<S: Store>(
    State(state): State<Shared<S>>,
    Path((rt, id, vid)): Path<(String, String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let f = fhir(&state, &headers, q.as_deref())?;
    let v = state.engine.vread(&rt, &id, &vid)?;
    resource_response(&state, &f.output, StatusCode::OK, &v)
}

/// The response to a successful write, shaped by `Prefer: return`.
fn write_response<S: Store>(
    state: &AppState<S>,
    f: &Fhir,
    status: StatusCode,
    v: &Version,
) -> ApiResult {
    let mut r = match f.output.prefer {
        PreferReturn::Representation => resource_response(state, &f.output, status, v)?,
        PreferReturn::Minimal => {
            let mut r = status.into_response();
            version_headers(&mut r, v);
            r
        }
        PreferReturn::OperationOutcome => {
            let oo = flint_fhir::error::information(format!(
                "{}/{} written as version {}",
                v.resource_type, v.id, v.version
            ));
            let mut r = respond_value(&f.output, status, &oo);
            version_headers(&mut r, v);
            r
        }
    };
    if let Ok(location) =
        HeaderValue::from_str(&f.ctx.versioned_url(&v.resource_type, &v.id, v.version))
    {
        r.headers_mut().insert(header::LOCATION, location.clone());
        if status == StatusCode::CREATED {
            r.headers_mut().insert(header::CONTENT_LOCATION, location);
        }
    }
    Ok(r)
}

async fn create<S: Store>(
    State(state): State<Shared<S>>,
    Path(rt): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> ApiResult {
    if let Some(name) = operations::operation_name(&rt) {
        let target = operations::Target::System;
        return operations::invoke(&state, &headers, q.as_deref(), target, name, body).await;
    }
    let f = fhir(&state, &headers, q.as_deref())?;
    state.engine.check_type(&rt)?;
    let resource = resource_body(&headers, body, state.config.max_body_bytes).await?;
    if let Some(criteria) = headers.get("if-none-exist") {
        let criteria = criteria
            .to_str()
            .map_err(|_| Error::invalid("If-None-Exist is not text"))?;
        let (v, created) = state
            .engine
            .conditional_create(&f.ctx, &rt, resource, criteria)
            .await?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        return write_response(&state, &f, status, &v);
    }
    let v = state.engine.create(&rt, resource).await?;
    write_response(&state, &f, StatusCode::CREATED, &v)
}

async fn update<S: Store>(
    State(state): State<Shared<S>>,
    Path((rt, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> ApiResult {
    let f = fhir(&state, &headers, q.as_deref())?;
    state.engine.check_type(&rt)?;
    let expected = if_match(&headers)?;
    let resource = resource_body(&headers, body, state.config.max_body_bytes).await?;
    let w = state.engine.update(&rt, &id, resource, expected).await?;
    let status = if w.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    write_response(&state, &f, status, &w.version)
}

/// The criteria of a conditional interaction: the query string, required.
fn conditional_criteria(q: Option<&str>) -> Result<String, Error> {
    match q {
        Some(q) if !q.trim().is_empty() => Ok(q.to_string()),
        _ => Err(Error::invalid(
            "a conditional interaction on a type needs search criteria in the query string",
        )),
    }
}

async fn conditional_update<S: Store>(
    State(state): State<Shared<S>>,
    Path(rt): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> ApiResult {
    let f = fhir(&state, &headers, q.as_deref())?;
    state.engine.check_type(&rt)?;
    let criteria = conditional_criteria(q.as_deref())?;
    let expected = if_match(&headers)?;
    let resource = resource_body(&headers, body, state.config.max_body_bytes).await?;
    let w = state
        .engine
        .conditional_update(&f.ctx, &rt, &criteria, resource, expected)
        .await?;
    let status = if w.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    write_response(&state, &f, status, &w.version)
}

async fn conditional_delete<S: Store>(
    State(state): State<Shared<S>>,
    Path(rt): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let f = fhir(&state, &headers, q.as_deref())?;
    let criteria = conditional_criteria(q.as_deref())?;
    let deleted = state
        .engine
        .conditional_delete(&f.ctx, &rt, &criteria)
        .await?;
    Ok(no_content(&f.output, || {
        format!("{deleted} {rt} resources deleted")
    }))
}

async fn conditional_patch<S: Store>(
    State(state): State<Shared<S>>,
    Path(rt): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> ApiResult {
    let f = fhir(&state, &headers, q.as_deref())?;
    state.engine.check_type(&rt)?;
    let criteria = conditional_criteria(q.as_deref())?;
    let document = patch_document(&headers, body, state.config.max_body_bytes).await?;
    let expected = if_match(&headers)?;
    let w = state
        .engine
        .conditional_patch(&f.ctx, &rt, &criteria, &document, expected)
        .await?;
    write_response(&state, &f, StatusCode::OK, &w.version)
}

/// A JSON Patch body (`application/json-patch+json`).
async fn patch_document(headers: &HeaderMap, body: Body, limit: usize) -> Result<Value, Error> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
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
    let bytes = read_body(headers, body, limit).await?;
    parse_json(&bytes)
}

async fn patch<S: Store>(
    State(state): State<Shared<S>>,
    Path((rt, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> ApiResult {
    let f = fhir(&state, &headers, q.as_deref())?;
    state.engine.check_type(&rt)?;
    let expected = if_match(&headers)?;
    let document = patch_document(&headers, body, state.config.max_body_bytes).await?;
    let w = state.engine.patch(&rt, &id, &document, expected).await?;
    write_response(&state, &f, StatusCode::OK, &w.version)
}

async fn delete<S: Store>(
    State(state): State<Shared<S>>,
    Path((rt, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let f = fhir(&state, &headers, q.as_deref())?;
    let expected = if_match(&headers)?;
    let deleted = state.engine.delete(&rt, &id, expected).await?;
    let mut r = no_content(&f.output, || match &deleted {
        Some(v) => format!("{rt}/{id} deleted (version {})", v.version),
        None => format!("{rt}/{id} did not exist or was already deleted"),
    });
    if let Some(v) = &deleted {
        if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{}\"", v.version)) {
            r.headers_mut().insert(header::ETAG, etag);
        }
    }
    Ok(r)
}

async fn delete_history<S: Store>(
    State(state): State<Shared<S>>,
    Path((rt, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let f = fhir(&state, &headers, q.as_deref())?;
    let removed = state.engine.delete_history(&rt, &id).await?;
    Ok(no_content(&f.output, || {
        format!("{removed} earlier versions of {rt}/{id} removed")
    }))
}

async fn type_search<S: Store>(
    State(state): State<Shared<S>>,
    Path(rt): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    if let Some(name) = operations::operation_name(&rt) {
        return operations::invoke_get(name, operations::Target::System);
    }
    let f = fhir(&state, &headers, q.as_deref())?;
    search(&state, &headers, &f, &rt, &f.params).await
}

/// `POST` on an instance or instance-level path that names no operation.
fn not_an_operation() -> ApiError {
    ApiError(
        Error::not_supported("POST is not allowed here (only operations: $name)").with_status(405),
    )
}

/// `POST [type]/$operation`.
async fn type_operation<S: Store>(
    State(state): State<Shared<S>>,
    Path((rt, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> ApiResult {
    match operations::operation_name(&id) {
        Some(name) => {
            let target = operations::Target::Type(&rt);
            operations::invoke(&state, &headers, q.as_deref(), target, name, body).await
        }
        None => Err(not_an_operation()),
    }
}

/// `POST [type]/[id]/$operation`.
async fn instance_operation<S: Store>(
    State(state): State<Shared<S>>,
    Path((rt, id, op)): Path<(String, String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> ApiResult {
    match operations::operation_name(&op) {
        Some(name) => {
            state.engine.check_type(&rt)?;
            let target = operations::Target::Instance(&rt, &id);
            operations::invoke(&state, &headers, q.as_deref(), target, name, body).await
        }
        None => Err(not_an_operation()),
    }
}

/// `POST [type]/_search`: parameters from the form body (and the query string).
async fn type_search_post<S: Store>(
    State(state): State<Shared<S>>,
    Path(rt): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> ApiResult {
    let f = fhir(&state, &headers, q.as_deref())?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(Error::not_supported(format!(
            "POST _search needs Content-Type application/x-www-form-urlencoded, not '{ct}'"
        ))
        .with_status(415)
        .into());
    }
    let bytes = read_body(&headers, body, state.config.max_body_bytes).await?;
    let form =
        std::str::from_utf8(&bytes).map_err(|_| Error::invalid("the form body is not UTF-8"))?;
    let mut params = f.params.clone();
    params.extend(parse_query(Some(form)));
    search(&state, &headers, &f, &rt, &params).await
}

/// `Prefer: handling=strict`.
fn strict_handling(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .any(|t| t.trim() == "handling=strict")
}

/// `GET [Compartment]/[id]/[type]?...`: a search within a compartment (`Patient/123/Observation`).
async fn compartment_search<S: Store>(
    State(state): State<Shared<S>>,
    Path((compartment, id, rt)): Path<(String, String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    if let Some(name) = operations::operation_name(&rt) {
        return operations::invoke_get(name, operations::Target::Instance(&compartment, &id));
    }
    let f = fhir(&state, &headers, q.as_deref())?;
    state.engine.check_type(&compartment)?;
    state.engine.check_type(&rt)?;
    if !matches!(
        compartment.as_str(),
        "Patient" | "Encounter" | "RelatedPerson" | "Practitioner" | "Device"
    ) {
        return Err(Error::not_found(format!("{compartment} is not a compartment")).into());
    }
    let mut params = f.params.clone();
    // The compartment travels as a parameter of its own, so that paging links keep it.
    params.push(("__compartment".into(), format!("{compartment}/{id}")));
    search(&state, &headers, &f, &rt, &params).await
}

/// Follows a sealed paging link.
async fn page<S: Store>(
    State(state): State<Shared<S>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let f = fhir(&state, &headers, q.as_deref())?;
    let page = state.engine.open_page(&token)?;
    if let Some(scope) = page.scope.strip_prefix("history:") {
        let (rt, id) = match scope.split_once('/') {
            Some((rt, id)) => (Some(rt.to_string()), Some(id.to_string())),
            None if scope.is_empty() => (None, None),
            None => (Some(scope.to_string()), None),
        };
        return history(
            &state,
            &f,
            rt,
            id,
            &page.params,
            Some(page.snapshot),
            page.after,
        )
        .await;
    }
    let rt = page
        .scope
        .strip_prefix("search:")
        .ok_or_else(|| Error::invalid("not a paging link of this server"))?
        .to_string();
    let params = page.params.clone();
    run_search(&state, &headers, &f, &rt, &params, Some(page)).await
}

async fn search<S: Store>(
    state: &AppState<S>,
    headers: &HeaderMap,
    f: &Fhir,
    rt: &str,
    params: &Params,
) -> ApiResult {
    run_search(state, headers, f, rt, params, None).await
}

fn position_text(p: &flint_store::search::Position) -> String {
    match p {
        flint_store::search::Position::Seq(s) => format!("s{s}"),
        flint_store::search::Position::Offset(n) => format!("o{n}"),
        flint_store::search::Position::Id(id) => format!("i{id}"),
        flint_store::search::Position::Key(value, seq) => format!("k{seq}:{value}"),
    }
}

fn position_from_text(s: &str) -> Result<flint_store::search::Position, Error> {
    let bad = || Error::invalid("bad paging position");
    match s.split_at_checked(1) {
        Some(("s", seq)) => Ok(flint_store::search::Position::Seq(
            seq.parse().map_err(|_| bad())?,
        )),
        Some(("i", id)) => Ok(flint_store::search::Position::Id(id.to_string())),
        Some(("o", n)) => Ok(flint_store::search::Position::Offset(
            n.parse().map_err(|_| bad())?,
        )),
        Some(("k", rest)) => {
            let (seq, value) = rest.split_once(':').ok_or_else(bad)?;
            Ok(flint_store::search::Position::Key(
                value.to_string(),
                seq.parse().map_err(|_| bad())?,
            ))
        }
        _ => Err(bad()),
    }
}

async fn run_search<S: Store>(
    state: &AppState<S>,
    headers: &HeaderMap,
    f: &Fhir,
    rt: &str,
    params: &Params,
    page: Option<flint_engine::paging::PageState>,
) -> ApiResult {
    // A later page: the link's snapshot, position and total.
    let (snapshot, after, total) = match page {
        Some(p) => (Some(p.snapshot), p.after, p.total),
        None => (None, None, None),
    };
    let engine = &state.engine;
    // An empty type is a system search.
    let parsed = if rt.is_empty() {
        engine.parse_system_search(
            &f.ctx,
            params,
            state.config.max_page_size,
            state.config.default_page_size,
        )?
    } else {
        engine.parse_search(
            &f.ctx,
            rt,
            params,
            strict_handling(headers),
            state.config.max_page_size,
            state.config.default_page_size,
        )?
    };
    let position = after.as_deref().map(position_from_text).transpose()?;
    let outcome = engine.run_search(&parsed, snapshot, position, total)?;
    // Links carry the session sealed: the query never shows in clear, and any node can serve
    // the next page from the same snapshot.
    let seal = |after: Option<String>| flint_engine::paging::PageState {
        scope: format!("search:{rt}"),
        params: parsed.applied.clone(),
        snapshot: outcome.snapshot,
        after,
        issued: 0,
        total: outcome.total,
    };
    let link = |token: String| format!("{}/__page/{token}", f.ctx.base_url);
    let mut links = vec![("self", link(engine.seal_page(&seal(after.clone())).await?))];
    if let Some(next) = &outcome.next {
        links.push((
            "next",
            link(engine.seal_page(&seal(Some(position_text(next)))).await?),
        ));
    }
    let mut bundle = flint_engine::bundle::BundleBuilder::new("searchset", outcome.total, &links);
    let matched = [("search", serde_json::json!({"mode": "match"}))];
    let included = [("search", serde_json::json!({"mode": "include"}))];
    let entries = outcome
        .versions
        .iter()
        .map(|v| (v, &matched))
        .chain(outcome.included.iter().map(|v| (v, &included)));
    for (v, mode) in entries {
        let Some(json) = &v.json else { continue };
        let url = f.ctx.url(&v.resource_type, &v.id);
        if f.output.summary.is_some() || f.output.elements.is_some() {
            let subset = Output {
                pretty: false,
                ..f.output.clone()
            };
            let body = render(engine.model(), &subset, json)?;
            bundle.entry(Some(&url), Some(&body), mode);
        } else {
            bundle.entry(Some(&url), Some(json), mode);
        }
    }
    Ok(respond_text(&f.output, StatusCode::OK, bundle.finish()))
}

async fn system_post<S: Store>(
    State(state): State<Shared<S>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> ApiResult {
    let f = fhir(&state, &headers, q.as_deref())?;
    let bundle = resource_body(&headers, body, state.config.max_body_bytes).await?;
    let text = state
        .engine
        .process_bundle(
            &f.ctx,
            bundle,
            BundleOptions {
                prefer: f.output.prefer,
            },
        )
        .await?;
    Ok(respond_text(&f.output, StatusCode::OK, text))
}

async fn system_history<S: Store>(
    State(state): State<Shared<S>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let f = fhir(&state, &headers, q.as_deref())?;
    history(&state, &f, None, None, &f.params, None, None).await
}

async fn type_history<S: Store>(
    State(state): State<Shared<S>>,
    Path(rt): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let f = fhir(&state, &headers, q.as_deref())?;
    history(&state, &f, Some(rt), None, &f.params, None, None).await
}

async fn instance_history<S: Store>(
    State(state): State<Shared<S>>,
    Path((rt, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let f = fhir(&state, &headers, q.as_deref())?;
    history(&state, &f, Some(rt), Some(id), &f.params, None, None).await
}

fn instant_param(params: &Params, name: &str) -> Result<Option<(i64, i64)>, Error> {
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

/// A page of history. Later pages come through sealed links (see `page`) carrying the
/// parameters, the snapshot of the first page and the keyset position.
async fn history<S: Store>(
    state: &AppState<S>,
    f: &Fhir,
    resource_type: Option<String>,
    id: Option<String>,
    params: &Params,
    snapshot: Option<u64>,
    after: Option<String>,
) -> ApiResult {
    let count = match param(params, "_count") {
        None => state.config.default_page_size,
        Some(c) => c
            .parse::<usize>()
            .map_err(|_| Error::invalid(format!("_count '{c}' is not a non-negative integer")))?
            .min(state.config.max_page_size),
    };
    let snapshot = match snapshot {
        Some(s) => s,
        None => state.engine.store().last_tx()?,
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
    };
    let (page, total) = state.engine.history(&q)?;
    let applied: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "_since" | "_at" | "_count"))
        .cloned()
        .collect();
    let seal = |after: Option<String>| flint_engine::paging::PageState {
        scope: history_scope(resource_type.as_deref(), id.as_deref()),
        params: applied.clone(),
        snapshot,
        after,
        issued: 0,
        total: None,
    };
    let link = |token: String| format!("{}/__page/{token}", f.ctx.base_url);
    let mut links = vec![(
        "self",
        link(state.engine.seal_page(&seal(after.clone())).await?),
    )];
    if let Some((t, seq)) = page.next {
        links.push((
            "next",
            link(
                state
                    .engine
                    .seal_page(&seal(Some(format!("{t}.{seq}"))))
                    .await?,
            ),
        ));
    }
    let mut bundle = flint_engine::bundle::BundleBuilder::new("history", Some(total), &links);
    for v in &page.versions {
        bundle.history_entry(&f.ctx, v);
    }
    Ok(respond_text(&f.output, StatusCode::OK, bundle.finish()))
}
