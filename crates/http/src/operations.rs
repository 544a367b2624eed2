//! Operations (`$name` at system, type and instance level) and the status URLs of
//! asynchronous requests (`/__async-status/{id}`).
//!
//! Only `$reindex` exists so far. Invocation follows SPEC section 6 already — a `Parameters`
//! body whose parameters are checked before anything runs, no `GET` for an operation that
//! changes state — so that the operations framework can take this dispatch over unchanged.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use flint_engine::jobs::JobStatus;
use flint_fhir::Error;
use flint_store::{JobState, Store};
use serde_json::{json, Value};

use super::{fhir, read_body, respond_value, ApiResult, Fhir, Shared};

/// Where an operation is invoked.
pub(crate) enum Target<'a> {
    System,
    Type(&'a str),
    Instance(&'a str, &'a str),
}

/// The parameters of a `Parameters` body (none for an empty body).
fn parameters(bytes: &[u8]) -> Result<Vec<Value>, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let body: Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid(format!("the body is not valid JSON: {e}")))?;
    if body["resourceType"] != "Parameters" {
        return Err(Error::invalid(
            "the body of an operation must be a Parameters resource",
        ));
    }
    Ok(body["parameter"].as_array().cloned().unwrap_or_default())
}

/// `POST` of an operation.
pub(crate) async fn invoke<S: Store>(
    state: &Shared<S>,
    headers: &HeaderMap,
    query: Option<&str>,
    target: Target<'_>,
    name: &str,
    body: Body,
) -> ApiResult {
    let f = fhir(state, headers, query)?;
    let bytes = read_body(headers, body, state.config.max_body_bytes).await?;
    match (name, &target) {
        ("reindex", Target::System | Target::Type(_)) => {
            // No inputs: the target says what is reindexed.
            if let Some(p) = parameters(&bytes)?.first() {
                return Err(Error::invalid(format!(
                    "$reindex takes no parameter '{}'",
                    p["name"].as_str().unwrap_or("")
                ))
                .into());
            }
            let resource_type = match target {
                Target::Type(rt) => {
                    state.engine.check_type(rt)?;
                    Some(rt.to_string())
                }
                _ => None,
            };
            let id = state.engine.start_reindex(resource_type).await?;
            answer_job(state, &f, &id).await
        }
        _ => Err(unknown(name, &target).into()),
    }
}

/// `GET` of an operation: none of those offered so far may run on `GET`.
pub(crate) fn invoke_get(name: &str, target: Target<'_>) -> ApiResult {
    match name {
        "reindex" => Err(Error::new(
            flint_fhir::IssueType::NotSupported,
            "$reindex changes the server's state: invoke it with POST",
        )
        .with_status(405)
        .into()),
        _ => Err(unknown(name, &target).into()),
    }
}

fn unknown(name: &str, target: &Target<'_>) -> Error {
    let at = match target {
        Target::System => "the system level".to_string(),
        Target::Type(rt) => format!("type {rt}"),
        Target::Instance(rt, id) => format!("{rt}/{id}"),
    };
    Error::new(
        flint_fhir::IssueType::NotSupported,
        format!("this server has no operation ${name} at {at}"),
    )
}

/// The answer to a request run as a job: its response when it ends within the budget,
/// otherwise `202 Accepted` with the status URL to poll.
async fn answer_job<S: Store>(state: &Shared<S>, f: &Fhir, id: &str) -> ApiResult {
    match state.engine.wait_job(id, state.config.async_budget).await? {
        JobStatus::Ended(_, response) => Ok(respond_value(
            &f.output,
            StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK),
            &response.resource,
        )),
        JobStatus::Running(progress) => {
            let url = format!("{}/__async-status/{id}", f.ctx.base_url);
            let mut r = respond_value(
                &f.output,
                StatusCode::ACCEPTED,
                &flint_fhir::error::information(format!(
                    "accepted and running ({progress}); poll {url} for the result"
                )),
            );
            if let Ok(v) = HeaderValue::from_str(&url) {
                r.headers_mut().insert(header::CONTENT_LOCATION, v);
            }
            Ok(r)
        }
    }
}

/// `GET /__async-status/{id}`: `202` with `X-Progress` while running, then `200` with a
/// `batch-response` Bundle holding the response; `404` once cancelled.
pub(crate) async fn status<S: Store>(
    State(state): State<Shared<S>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let f = fhir(&state, &headers, q.as_deref())?;
    match state.engine.job_status(&id)? {
        JobStatus::Running(progress) => {
            let mut r = respond_value(
                &f.output,
                StatusCode::ACCEPTED,
                &flint_fhir::error::information(format!("running: {progress}")),
            );
            if let Ok(v) = HeaderValue::from_str(&progress) {
                r.headers_mut().insert("x-progress", v);
            }
            Ok(r)
        }
        JobStatus::Ended(JobState::Cancelled, _) => {
            Err(Error::not_found(format!("the asynchronous request '{id}' was cancelled")).into())
        }
        JobStatus::Ended(_, response) => {
            let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
            let reason = status.canonical_reason().unwrap_or("");
            let bundle = json!({
                "resourceType": "Bundle",
                "type": "batch-response",
                "entry": [{
                    "resource": response.resource,
                    "response": {"status": format!("{} {reason}", status.as_u16()).trim_end()}
                }]
            });
            Ok(respond_value(&f.output, StatusCode::OK, &bundle))
        }
    }
}

/// `DELETE /__async-status/{id}`: cancels the request (`202`).
pub(crate) async fn cancel<S: Store>(
    State(state): State<Shared<S>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let f = fhir(&state, &headers, q.as_deref())?;
    state.engine.cancel_job(&id).await?;
    Ok(respond_value(
        &f.output,
        StatusCode::ACCEPTED,
        &flint_fhir::error::information(format!("the asynchronous request '{id}' is cancelled")),
    ))
}

/// Splits `$name` off a path segment.
pub(crate) fn operation_name(segment: &str) -> Option<&str> {
    segment.strip_prefix('$').filter(|n| !n.is_empty())
}
