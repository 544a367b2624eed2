//! The only crate that speaks HTTP: an adapter from HTTP requests to the engine's request
//! core and back. It reads the body (with size and time limits), negotiates the response
//! format, builds the request [`Context`] (base URL, request id, and an interrupt set when
//! the client goes away), hands a [`Request`] to [`Engine::handle`], and writes the
//! [`Response`]: status, FHIR headers and body. Every error — ours, the layers', panics,
//! unknown routes — leaves as an `OperationOutcome` with the right status.

pub mod format;
mod serve;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request as HttpRequest, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::any;
use axum::Router;
use flint_engine::{Context, Engine, Headers, HttpMethod, Payload, Request, Response};
use flint_fhir::datetime::format_http_date;
use flint_fhir::Error;
use flint_store::Store;
use serde_json::Value;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::decompression::RequestDecompressionLayer;

use format::{negotiate, MediaType, Output};
pub use serve::{serve, ServeLimits};

/// Settings of the HTTP layer.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Absolute base URL to use in links; `None` derives it from each request.
    pub base_url: Option<String>,
    /// Where the FHIR API is mounted (`/fhir`).
    pub context_path: String,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long a client may take to send its request body.
    pub body_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            base_url: None,
            context_path: "/fhir".into(),
            max_body_bytes: 16 * 1024 * 1024,
            body_timeout: Duration::from_secs(30),
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
    fn into_response(self) -> HttpResponse {
        let e = self.0;
        if e.is_server_fault() {
            tracing::error!(error = ?e, "request failed");
        }
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = fhir_json(status, e.to_operation_outcome().to_string());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

fn fhir_json(status: StatusCode, body: String) -> HttpResponse {
    let mut r = HttpResponse::new(Body::from(body));
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
    let cp = context_path.as_str();
    let mut app = Router::new()
        // Outside the FHIR base (unless the base is the root, where no resource type is
        // called `metrics`).
        .route("/metrics", axum::routing::get(metrics::<S>))
        .route(&format!("{cp}/"), any(fhir::<S>))
        .route(&format!("{cp}/{{*path}}"), any(fhir::<S>));
    if !cp.is_empty() {
        app = app.route(cp, any(fhir::<S>));
    }
    app.with_state(state)
        .fallback(not_found)
        .layer(RequestDecompressionLayer::new())
        .layer(CompressionLayer::new())
        .layer(axum::middleware::map_response(outcome_for_bare_errors))
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

/// `GET /metrics`: the request core's metrics for Prometheus.
async fn metrics<S: Store>(State(state): State<Shared<S>>) -> HttpResponse {
    // The gauges read the store: blocking work, off the runtime's threads.
    let engine = Arc::clone(&state.engine);
    let text = match tokio::task::spawn_blocking(move || engine.metrics_text()).await {
        Ok(text) => text,
        Err(_) => return ApiError(Error::internal("reading the metrics panicked")).into_response(),
    };
    (
        [(header::CONTENT_TYPE, flint_engine::metrics::CONTENT_TYPE)],
        text,
    )
        .into_response()
}

async fn not_found(request: HttpRequest) -> ApiError {
    ApiError(Error::not_found(format!(
        "no such endpoint: {} {}",
        request.method(),
        request.uri().path()
    )))
}

/// Errors made by layers below the FHIR handler (an unsupported `Content-Encoding`, a
/// malformed body stream) come without a body: they get an OperationOutcome too.
async fn outcome_for_bare_errors(response: HttpResponse) -> HttpResponse {
    let status = response.status();
    let is_fhir = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| {
            [
                MediaType::FhirJson,
                MediaType::Json,
                MediaType::FhirXml,
                MediaType::Xml,
            ]
            .iter()
            .any(|m| ct.as_bytes() == m.content_type().as_bytes())
        });
    if !(status.is_client_error() || status.is_server_error()) || is_fhir {
        return response;
    }
    let reason = status.canonical_reason().unwrap_or("error");
    let code = match status.as_u16() {
        415 => flint_fhir::IssueType::NotSupported,
        413 => flint_fhir::IssueType::TooLong,
        s if s >= 500 => flint_fhir::IssueType::Exception,
        _ => flint_fhir::IssueType::Invalid,
    };
    let diagnostics = match status.as_u16() {
        415 => "unsupported Content-Encoding or media type (gzip and deflate are accepted)".into(),
        _ => format!("the request failed: {reason}"),
    };
    ApiError(Error::new(code, diagnostics).with_status(status.as_u16())).into_response()
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

/// Sets the interrupt when dropped before the response is done: the client hung up (the
/// server drops the request's future), so its work stops.
struct HangUp(Option<flint_store::Interrupt>);

impl Drop for HangUp {
    fn drop(&mut self) {
        if let Some(interrupt) = self.0.take() {
            interrupt.cancel();
        }
    }
}

/// The headers an operation's handler may see: all but credentials and cookies.
fn operation_headers(headers: &header::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "authorization" | "cookie" | "proxy-authorization"
            )
        })
        .filter_map(|(name, value)| {
            Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
        })
        .collect()
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(&name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// The request id: the client's `X-Request-Id` when it is a sane token, else a new one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map_or_else(flint_engine::next_request_id, str::to_string)
}

/// Every FHIR request: routed by the engine, answered by the engine.
async fn fhir<S: Store>(State(state): State<Shared<S>>, request: HttpRequest) -> HttpResponse {
    let id = request_id(request.headers());
    let span = tracing::debug_span!("http", id = %id, method = %request.method(), path = %request.uri().path());
    let _entered = span.enter();
    let mut response = match handle(&state, id.clone(), request).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

async fn handle<S: Store>(
    state: &AppState<S>,
    request_id: String,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let query = parts.uri.query();
    let method = match parts.method {
        Method::GET => HttpMethod::Get,
        Method::HEAD => HttpMethod::Head,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::PATCH => HttpMethod::Patch,
        Method::DELETE => HttpMethod::Delete,
        ref other => {
            return Err(
                Error::not_supported(format!("{other} is not a FHIR method"))
                    .with_status(405)
                    .into(),
            )
        }
    };
    let path = parts.uri.path();
    let relative = path
        .strip_prefix(state.config.context_path.as_str())
        .unwrap_or(path);
    let fhir_request = Request::parse(method, relative, query)?;
    let output = negotiate(&fhir_request.params, headers)?;
    // From here on, errors are written in the negotiated format too.
    match answer(
        state,
        request_id,
        &parts,
        body,
        method,
        fhir_request,
        &output,
    )
    .await
    {
        Ok(r) => Ok(r),
        Err(e) => Ok(error_response(&output, e)),
    }
}

/// The request, negotiated: its body read (and turned from XML into JSON), run by the engine.
async fn answer<S: Store>(
    state: &AppState<S>,
    request_id: String,
    parts: &axum::http::request::Parts,
    body: Body,
    method: HttpMethod,
    mut fhir_request: Request,
    output: &Output,
) -> Result<HttpResponse, Error> {
    let headers = &parts.headers;
    fhir_request.headers = Headers {
        if_match: header_text(headers, header::IF_MATCH),
        if_none_match: header_text(headers, header::IF_NONE_MATCH),
        if_modified_since: header_text(headers, header::IF_MODIFIED_SINCE),
        if_none_exist: header_text(headers, header::HeaderName::from_static("if-none-exist")),
        prefer: header_text(headers, header::HeaderName::from_static("prefer")),
        content_type: header_text(headers, header::CONTENT_TYPE),
        others: if matches!(
            fhir_request.interaction,
            flint_engine::Interaction::Operation { .. }
        ) {
            operation_headers(headers)
        } else {
            Vec::new()
        },
    };
    if matches!(
        method,
        HttpMethod::Post | HttpMethod::Put | HttpMethod::Patch
    ) {
        let limit = state.config.max_body_bytes;
        let bytes =
            tokio::time::timeout(state.config.body_timeout, read_body(headers, body, limit))
                .await
                .map_err(|_| {
                    Error::new(
                        flint_fhir::IssueType::Timeout,
                        format!(
                            "the request body did not arrive within {} s",
                            state.config.body_timeout.as_secs()
                        ),
                    )
                    .with_status(408)
                })??;
        if format::is_xml_content(fhir_request.headers.content_type.as_deref()) {
            // XML in, JSON for the engine: one path for both formats.
            let resource = flint_xml::from_xml(&bytes)?;
            fhir_request.body = flint_engine::Body::Bytes(Bytes::from(resource.to_string()));
            fhir_request.headers.content_type = Some("application/fhir+json".into());
        } else {
            fhir_request.body = flint_engine::Body::Bytes(bytes);
        }
    }
    let ctx = Context::for_request(
        format::base_url(
            state.config.base_url.as_deref(),
            &state.config.context_path,
            headers,
        ),
        request_id,
    );
    let mut hang_up = HangUp(Some(ctx.interrupt.clone()));
    let answer = state.engine.handle(ctx, fhir_request).await;
    // Finished: the client did not hang up.
    hang_up.0 = None;
    Ok(to_http(output, answer?))
}

/// An error as an OperationOutcome in the negotiated format.
fn error_response(output: &Output, e: Error) -> HttpResponse {
    if !output.media.is_xml() {
        return ApiError(e).into_response();
    }
    if e.is_server_fault() {
        tracing::error!(error = ?e, "request failed");
    }
    let mut r = Response::new(e.status(), Payload::Value(e.to_operation_outcome()));
    if e.status() == 503 {
        r.headers.push(("retry-after", "1".into()));
    }
    to_http(output, r)
}

fn to_http(output: &Output, mut r: Response) -> HttpResponse {
    let payload = std::mem::take(&mut r.payload);
    // A body that is not a FHIR resource goes out as it is, in its own media type.
    let body = if r.content_type.is_some() {
        as_json(payload, output.pretty)
    } else if output.media.is_xml() {
        match as_xml(&payload, output.pretty) {
            Ok(body) => body,
            Err(e) => return ApiError(e).into_response(),
        }
    } else {
        as_json(payload, output.pretty)
    };
    respond(output, body, r)
}

/// The payload as JSON text (pretty when asked).
fn as_json(payload: Payload, pretty: bool) -> Option<Bytes> {
    match payload {
        Payload::None => None,
        Payload::Stored(bytes) if !pretty => Some(bytes),
        Payload::Stored(bytes) => Some(pretty_bytes(&bytes)),
        Payload::Value(v) => Some(Bytes::from(to_text(&v, pretty))),
        Payload::Text(t) if !pretty => Some(Bytes::from(t)),
        Payload::Text(t) => Some(pretty_bytes(t.as_bytes())),
    }
}

/// The payload as FHIR XML.
///
/// # Errors
/// A body that is not a resource the XML form can carry (a server fault).
fn as_xml(payload: &Payload, pretty: bool) -> Result<Option<Bytes>, Error> {
    let text: &[u8] = match payload {
        Payload::None => return Ok(None),
        Payload::Value(v) => return xml_bytes(v, pretty).map(Some),
        Payload::Stored(bytes) => bytes,
        Payload::Text(t) => t.as_bytes(),
    };
    // Straight from the JSON text: no tree of values is built.
    let mut out = Vec::with_capacity(text.len() + text.len() / 2);
    let written = if pretty {
        flint_xml::write_xml_pretty_from_json(text, &mut out)
    } else {
        flint_xml::write_xml_from_json(text, &mut out)
    };
    written.map_err(|e| {
        // What the server stored or built is JSON it wrote itself: a failure is its fault.
        let mut fault = Error::internal("a response could not be written as XML");
        fault.source = Some(format!("{e:?}").into());
        fault
    })?;
    Ok(Some(Bytes::from(out)))
}

fn xml_bytes(value: &Value, pretty: bool) -> Result<Bytes, Error> {
    let mut out = Vec::with_capacity(1024);
    if pretty {
        flint_xml::write_xml_pretty(value, &mut out)?;
    } else {
        flint_xml::write_xml(value, &mut out)?;
    }
    Ok(Bytes::from(out))
}

/// The HTTP response: `body` in the negotiated media type, with the status and headers of
/// `r` (whose payload `body` is).
fn respond(output: &Output, body: Option<Bytes>, r: Response) -> HttpResponse {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    let mut response = match body {
        Some(b) => {
            let mut resp = HttpResponse::new(Body::from(b));
            let media = r.content_type.unwrap_or(output.media.content_type());
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
            resp
        }
        None => HttpResponse::new(Body::empty()),
    };
    *response.status_mut() = status;
    let h = response.headers_mut();
    if let Some((version, last_updated)) = r.version {
        if let Ok(v) = HeaderValue::from_str(&format!("W/\"{version}\"")) {
            h.insert(header::ETAG, v);
        }
        if let Ok(v) = HeaderValue::from_str(&format_http_date(last_updated)) {
            h.insert(header::LAST_MODIFIED, v);
        }
    }
    if let Some(v) = r.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        h.insert(header::LOCATION, v);
    }
    if let Some(v) = r
        .content_location
        .and_then(|l| HeaderValue::from_str(&l).ok())
    {
        h.insert(header::CONTENT_LOCATION, v);
    }
    for (name, value) in r.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    response
}

fn pretty_bytes(bytes: &[u8]) -> Bytes {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => Bytes::from(to_text(&v, true)),
        Err(_) => Bytes::copy_from_slice(bytes),
    }
}

fn to_text(value: &Value, pretty: bool) -> String {
    if pretty {
        serde_json::to_string_pretty(value).unwrap_or_default()
    } else {
        value.to_string()
    }
}
