//! The `request` job: a search, history, Bundle or operation sent with `Prefer:
//! respond-async` (SPEC section 5). It runs through the same request core as any request,
//! with a context of its own: the caller's identity, an interrupt that only cancellation or
//! a stopping server sets (not the client going away after its `202`), and the job's mark,
//! so that each store transaction it makes claims the job and is counted.
//!
//! Its record keeps the request whole (method, path, query, parameters, headers, body,
//! caller), so that after a restart it can run again: always when it only reads, and when
//! it changes state only if none of its transactions had committed. Otherwise it ends with
//! an error that says its changes may be in place.

use std::sync::Arc;

use base64::Engine as _;
use flint_fhir::{Error, IssueType, Result};
use flint_store::{JobRecord, Store};
use serde_json::{json, Value};

use super::{Kind, Running};
use crate::operations::Level;
use crate::request::{
    Body, Headers, Interaction, Method, OperationTarget, Payload, Request, Response,
};
use crate::{Caller, Context, Engine};

pub(crate) struct Deferred;

impl<S: Store> Kind<S> for Deferred {
    fn name(&self) -> &'static str {
        "request"
    }

    fn in_lane(&self) -> bool {
        true
    }

    fn run(&self, engine: &Arc<Engine<S>>, job: &Running) -> Result<Response> {
        let kept: Value = serde_json::from_str(&job.record.request).map_err(|e| {
            Error::internal(format!("a stored asynchronous request is not JSON: {e}"))
        })?;
        let (mut ctx, request) = restore(&kept)?;
        ctx.interrupt = job.interrupt.clone();
        ctx.job = Some(job.mark.clone());
        engine.dispatch(&ctx, request)
    }

    fn resume(&self, job: &JobRecord) -> Result<()> {
        let kept: Value = serde_json::from_str(&job.request).unwrap_or(Value::Null);
        if kept["readOnly"] == json!(true) || job.commits == 0 {
            return Ok(());
        }
        Err(Error::new(
            IssueType::Incomplete,
            format!(
                "the server stopped while this request ran, after {} of its store transactions had committed and before its response was recorded; check what it changed before sending it again",
                job.commits
            ),
        )
        .with_status(500))
    }

    fn progress(&self, _: &JobRecord) -> String {
        "in progress".into()
    }

    fn cancelled(&self, job: &JobRecord) -> String {
        match job.commits {
            0 => "; nothing it would have changed was kept".into(),
            1 => "; one store transaction of its work had committed before it stopped (a Bundle's entries or an operation's changes made by then stay)".into(),
            n => format!("; {n} store transactions of its work had committed before it stopped (a batch's entries made by then stay)"),
        }
    }
}

impl<S: Store> Engine<S> {
    /// Runs a request as a background job: its own response when it ends within
    /// `[server] async_budget_ms`, otherwise `202 Accepted` with the status URL.
    ///
    /// # Errors
    /// The request's error when it ended within the budget; a store fault.
    pub(crate) async fn defer(
        self: &Arc<Self>,
        ctx: Context,
        request: Request,
    ) -> Result<Response> {
        let read_only = self.only_reads(&request);
        let kept = keep(&ctx, &request, read_only)?;
        let (id, mut ended) = self.start_job(&ctx, "request", kept, json!({})).await?;
        let budget = self.limits.async_budget;
        if budget.is_zero() {
            // No budget: always answered through the status URL.
            return Ok(accepted(&ctx, &id, "in progress"));
        }
        let outcome = match tokio::time::timeout(budget, ended.wait_for(Option::is_some)).await {
            Ok(Ok(outcome)) => outcome.clone(),
            // Still running (or its task went without a word: the record tells).
            Ok(Err(_)) | Err(_) => None,
        };
        outcome.unwrap_or_else(|| Ok(accepted(&ctx, &id, "in progress")))
    }

    /// Whether a request only reads: searches, history and operations that do not change
    /// state. Such a job may simply run again after a restart.
    fn only_reads(&self, request: &Request) -> bool {
        match &request.interaction {
            Interaction::Bundle => false,
            Interaction::Operation { .. } => self
                .operation_entry(&request.interaction)
                .is_some_and(|e| !e.definition.affects_state),
            _ => true,
        }
    }

    /// The operation an interaction invokes, if it is one this server offers.
    pub(crate) fn operation_entry(
        &self,
        interaction: &Interaction,
    ) -> Option<crate::operations::Entry<S>> {
        let Interaction::Operation { name, target, .. } = interaction else {
            return None;
        };
        let (level, rt) = match target {
            OperationTarget::System => (Level::System, None),
            OperationTarget::Type(rt) => (Level::Type, Some(rt.as_str())),
            OperationTarget::Instance(rt, _) | OperationTarget::Version(rt, _, _) => {
                (Level::Instance, Some(rt.as_str()))
            }
        };
        self.operations().resolve(name, level, rt).cloned()
    }
}

/// `202 Accepted` for a job still running, with its status URL.
pub(crate) fn accepted(ctx: &Context, id: &str, progress: &str) -> Response {
    let url = format!("{}/__async-status/{id}", ctx.base_url);
    let mut r = Response::new(
        202,
        Payload::Value(flint_fhir::error::information(format!(
            "accepted and running ({progress}); poll {url} for the result"
        ))),
    );
    r.content_location = Some(url);
    r
}

/// The request and its context as the job's record keeps them.
fn keep(ctx: &Context, request: &Request, read_only: bool) -> Result<Value> {
    let Some((method, path, query)) = &request.origin else {
        return Err(Error::internal(
            "a request without its method and path cannot run in the background",
        ));
    };
    let body = match &request.body {
        Body::None => Value::Null,
        Body::Json(v) => json!({"json": v}),
        Body::Bytes(b) => match std::str::from_utf8(b) {
            Ok(text) => json!({"text": text}),
            Err(_) => json!({"base64": base64::engine::general_purpose::STANDARD.encode(b)}),
        },
    };
    let h = &request.headers;
    Ok(json!({
        "method": method.as_str(),
        "path": path,
        "query": query,
        "params": request.params,
        "headers": {
            "ifMatch": h.if_match,
            "ifNoneMatch": h.if_none_match,
            "ifModifiedSince": h.if_modified_since,
            "ifNoneExist": h.if_none_exist,
            "prefer": h.prefer,
            "contentType": h.content_type,
            "others": h.others,
        },
        "body": body,
        "baseUrl": ctx.base_url,
        "tenant": ctx.tenant,
        "requestId": ctx.request_id,
        "caller": {
            "subject": ctx.caller.subject,
            "fhirUser": ctx.caller.fhir_user,
            "scopes": ctx.caller.scopes,
        },
        "readOnly": read_only,
    }))
}

/// The request and context a job's record keeps (see [`keep`]).
fn restore(kept: &Value) -> Result<(Context, Request)> {
    let bad = || Error::internal("a stored asynchronous request is malformed");
    let text = |v: &Value| v.as_str().map(str::to_string);
    let method = kept["method"]
        .as_str()
        .and_then(Method::parse)
        .ok_or_else(bad)?;
    let path = kept["path"].as_str().ok_or_else(bad)?;
    let mut request = Request::parse(method, path, kept["query"].as_str())?;
    request.params = kept["params"]
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|pair| match (pair[0].as_str(), pair[1].as_str()) {
            (Some(k), Some(v)) => Ok((k.to_string(), v.to_string())),
            _ => Err(bad()),
        })
        .collect::<Result<_>>()?;
    let h = &kept["headers"];
    request.headers = Headers {
        if_match: text(&h["ifMatch"]),
        if_none_match: text(&h["ifNoneMatch"]),
        if_modified_since: text(&h["ifModifiedSince"]),
        if_none_exist: text(&h["ifNoneExist"]),
        prefer: text(&h["prefer"]),
        content_type: text(&h["contentType"]),
        others: h["others"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string())))
            .collect(),
    };
    let body = &kept["body"];
    request.body = if let Some(t) = body["text"].as_str() {
        Body::Bytes(bytes::Bytes::from(t.to_string()))
    } else if let Some(b) = body["base64"].as_str() {
        Body::Bytes(bytes::Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|_| bad())?,
        ))
    } else if !body["json"].is_null() {
        Body::Json(body["json"].clone())
    } else {
        Body::None
    };
    let mut ctx = Context::for_request(
        kept["baseUrl"].as_str().ok_or_else(bad)?,
        text(&kept["requestId"]).unwrap_or_else(crate::context::next_request_id),
    );
    ctx.tenant = text(&kept["tenant"]).unwrap_or_else(|| "default".into());
    let caller = &kept["caller"];
    ctx.caller = Caller {
        subject: text(&caller["subject"]),
        fhir_user: text(&caller["fhirUser"]),
        scopes: caller["scopes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(text)
            .collect(),
    };
    Ok((ctx, request))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_survives_its_record() {
        let mut request =
            Request::parse(Method::Post, "Patient/_search", Some("name=a%20b&_count=2")).unwrap();
        request.params.push(("gender".into(), "female".into()));
        request.headers.prefer = Some("respond-async, handling=strict".into());
        request.headers.content_type = Some("application/x-www-form-urlencoded".into());
        request.body = Body::Bytes(bytes::Bytes::from_static(b"gender=female"));
        let mut ctx = Context::new("http://h/fhir");
        ctx.caller.subject = Some("alice".into());
        ctx.caller.scopes = vec!["system/*.read".into()];
        ctx.tenant = "t1".into();
        let kept = keep(&ctx, &request, true).unwrap();
        let (ctx2, back) = restore(&kept).unwrap();
        assert_eq!(ctx2.owner(), ctx.owner());
        assert_eq!(ctx2.caller, ctx.caller);
        assert_eq!(ctx2.base_url, "http://h/fhir");
        assert_eq!(back.params, request.params);
        assert_eq!(back.headers.prefer, request.headers.prefer);
        assert!(matches!(back.interaction, Interaction::SearchType { ref rt } if rt == "Patient"));
        assert!(matches!(back.body, Body::Bytes(ref b) if &b[..] == b"gender=female"));

        request.body = Body::Bytes(bytes::Bytes::from_static(&[0xff, 0x00, 0x41]));
        let (_, back) = restore(&keep(&ctx, &request, false).unwrap()).unwrap();
        assert!(matches!(back.body, Body::Bytes(ref b) if b[..] == [0xff, 0x00, 0x41]));
    }

    #[test]
    fn a_malformed_record_is_a_server_fault_not_a_panic() {
        for kept in [
            json!(null),
            json!({"method": "GET"}),
            json!({"method": "GET", "path": "Patient", "params": [[1]]}),
        ] {
            assert!(restore(&kept).unwrap_err().is_server_fault());
        }
    }
}
