//! The operation of a custom handler: the event its code sees, the handler kinds, the shape
//! of what it answers, and its audit record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flint_fhir::{Error, Issue, IssueSeverity, IssueType, Result};
use flint_sandbox::{Invocation, Json, Script};
use flint_store::Store;
use serde_json::{json, Map, Value};

use super::audit::Record;
use super::source::{HandlerSpec, Kind, Owner, Spec};
use super::RunAs;
use crate::operations::parameters::value_key;
use crate::operations::{Call, Definition, Level, Operation, Output};
use crate::request::{Payload, Response};
use crate::{Caller, Context, Engine};

/// What runs a custom operation, ready to run.
enum Built<S> {
    Script(Arc<Script>),
    Http(super::http::Target),
    Internal(Arc<dyn Operation<S>>),
}

/// A custom operation in the catalog.
pub(crate) struct Custom<S> {
    definition: Definition,
    handler: Built<S>,
    owner: Owner,
    kind: Kind,
    timeout: Duration,
    /// Whether the calls of its code run in one transaction (the default).
    transactional: bool,
}

/// The built-in operation called `name` (its definition's id, or its code when one
/// operation has it).
pub(crate) fn internal<S: Store>(name: &str) -> Option<Arc<dyn Operation<S>>> {
    let all = crate::operations::builtin::all::<S>();
    let defined: Vec<(Definition, Arc<dyn Operation<S>>)> =
        all.into_iter().map(|h| (h.definition(), h)).collect();
    if let Some((_, h)) = defined.iter().find(|(d, _)| d.id == name) {
        return Some(Arc::clone(h));
    }
    let mut by_code = defined.iter().filter(|(d, _)| d.code == name);
    match (by_code.next(), by_code.next()) {
        (Some((_, h)), None) => Some(Arc::clone(h)),
        _ => None,
    }
}

/// Builds the handler of a custom operation; returns the script key it holds, if any.
pub(crate) fn build<S: Store>(
    engine: &Engine<S>,
    spec: Spec,
) -> std::result::Result<(Custom<S>, Option<String>), (String, Error)> {
    let what = spec.definition.url.clone();
    let fail = |e: Error| (what.clone(), e);
    let mut definition = spec.definition;
    let mut key = None;
    let handler = match spec.handler {
        HandlerSpec::Script { key: k, code } => {
            let script = engine.script(&k, &definition.code, &code).map_err(fail)?;
            key = Some(k);
            Built::Script(script)
        }
        HandlerSpec::Http {
            url,
            method,
            headers,
        } => Built::Http(super::http::Target {
            url,
            method,
            headers,
        }),
        HandlerSpec::Internal { name } => {
            let handler = internal::<S>(&name).ok_or_else(|| {
                fail(Error::invalid(format!(
                    "no built-in operation is called '{name}'"
                )))
            })?;
            // The built-in's parameters, unless the App declared its own.
            if definition.inputs.is_empty() && definition.outputs.is_empty() {
                let builtin = handler.definition();
                definition.inputs = builtin.inputs;
                definition.outputs = builtin.outputs;
                if let Some(p) = builtin.json.get("parameter") {
                    definition.json["parameter"] = p.clone();
                }
                definition.raw_input = false;
            }
            Built::Internal(handler)
        }
    };
    let server = engine.limits().apps.operation_timeout;
    let timeout = spec.timeout.map_or(server, |t| t.min(server));
    Ok((
        Custom {
            definition,
            handler,
            owner: spec.owner,
            kind: spec.kind,
            timeout,
            transactional: spec.transactional,
        },
        key,
    ))
}

impl<S: Store> Operation<S> for Custom<S> {
    fn definition(&self) -> Definition {
        self.definition.clone()
    }

    fn waits_elsewhere(&self) -> bool {
        !matches!(self.handler, Built::Internal(_))
    }

    fn invoke(&self, engine: &Arc<Engine<S>>, call: &mut Call<'_>) -> Result<Output> {
        let invocation = crate::new_id();
        let started = Instant::now();
        let what = format!("${} of {}", self.definition.code, self.owner.reference);
        let result = match &self.handler {
            Built::Script(script) => {
                let event = event(call, &self.owner, &invocation, false);
                run_script(
                    engine,
                    script,
                    call,
                    &self.owner,
                    &what,
                    &invocation,
                    event,
                    self.timeout,
                    self.transactional,
                    |v| shape(&self.definition, self.kind, v, call.ctx),
                )
            }
            Built::Http(target) => super::http::forward(
                engine,
                target,
                call,
                &self.owner,
                &invocation,
                &self.definition.code,
                self.timeout,
            )
            .and_then(|v| shape(&self.definition, self.kind, v, call.ctx)),
            Built::Internal(handler) => handler.invoke(engine, call),
        };
        engine.audit(Record::of(
            call,
            &self.definition.code,
            &self.owner,
            &invocation,
            started,
            result.as_ref().err(),
        ));
        result
    }
}

/// The `event` a handler's code sees (Medplum's `BotEvent`, with Flint's additions). The
/// target resource (`target.resource`) is left out when `with_resource` is false: JavaScript
/// gets it as the stored text, parsed on first read (`Invocation::resource`).
pub(crate) fn event(
    call: &Call<'_>,
    owner: &Owner,
    invocation: &str,
    with_resource: bool,
) -> Value {
    let input = match call.method {
        crate::request::Method::Get | crate::request::Method::Head => {
            let mut q = Map::new();
            for (k, v) in &call.raw.query {
                match q.get_mut(k) {
                    None => {
                        q.insert(k.clone(), json!(v));
                    }
                    Some(Value::Array(a)) => a.push(json!(v)),
                    Some(first) => *first = json!([first.take(), v]),
                }
            }
            Value::Object(q)
        }
        _ => call.raw.body.clone().unwrap_or_else(|| json!({})),
    };
    let mut headers = Map::new();
    for (k, v) in &call.headers.others {
        headers.insert(k.clone(), json!(v));
    }
    let mut target = json!({"level": level_name(call.target.level)});
    if let Some(rt) = &call.target.resource_type {
        target["resourceType"] = json!(rt);
    }
    if let Some(id) = &call.target.id {
        target["id"] = json!(id);
        if let Some(v) = &call.target.stored {
            target["versionId"] = json!(v.version.to_string());
        }
        if with_resource {
            if let Ok(resource) = call.target.resource() {
                target["resource"] = resource;
            }
        }
    }
    let caller = &call.ctx.caller;
    let reference = json!({"reference": owner.reference, "display": owner.name});
    json!({
        "input": input,
        "contentType": call.headers.content_type.as_deref().unwrap_or("application/fhir+json"),
        "headers": headers,
        "target": target,
        "caller": {
            "subject": caller.subject,
            "fhirUser": caller.fhir_user,
            "scopes": caller.scopes,
        },
        "bot": reference,
        "app": reference,
        "handlerVersion": owner.versioned(),
        "secrets": {},
        "requestId": call.ctx.request_id,
        "traceId": call.ctx.request_id,
        "invocationId": invocation,
        "baseUrl": call.ctx.base_url,
    })
}

/// The stored JSON text of the call's target, when it has one.
fn target_text(call: &Call<'_>) -> Option<String> {
    let json = call.target.stored.as_ref()?.json.as_ref()?;
    String::from_utf8(json.to_vec()).ok()
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::System => "system",
        Level::Type => "type",
        Level::Instance => "instance",
    }
}

/// The context the handler's own calls run with.
pub(crate) fn run_context(ctx: &Context, owner: &Owner) -> Context {
    let mut ctx = ctx.clone();
    if owner.run_as == RunAs::Service {
        ctx.caller = Caller {
            subject: Some(owner.reference.clone()),
            fhir_user: Some(owner.reference.clone()),
            scopes: Vec::new(),
        };
    }
    ctx
}

/// Runs a script with the event; what it resolved to.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_script<S: Store>(
    engine: &Arc<Engine<S>>,
    script: &Arc<Script>,
    call: &Call<'_>,
    owner: &Owner,
    what: &str,
    invocation: &str,
    event: Value,
    timeout: Duration,
    transactional: bool,
    shape: impl FnOnce(Option<Value>) -> Result<Output>,
) -> Result<Output> {
    if super::client::in_script() {
        return Err(Error::new(
            IssueType::NotSupported,
            format!("{what} is JavaScript and cannot be called from JavaScript (one script may not wait for another's worker)"),
        )
        .with_status(422));
    }
    let resource = target_text(call);
    let subject = if call.target.level == Level::Instance {
        resource
            .clone()
            .map_or(Json::Value(Value::Null), Json::Text)
    } else {
        Json::Value(event["input"].clone())
    };
    let event = Json::Value(event);
    let host = Arc::new(super::client::Client::new(
        engine,
        run_context(call.ctx, owner),
        format!("{} {}", call.ctx.request_id, invocation),
        what.to_string(),
        transactional,
    ));
    let interrupt = call.ctx.interrupt.clone();
    let deadline = Instant::now() + timeout;
    let limits = &engine.limits().apps;
    let value = engine
        .sandbox()
        .run(
            script,
            Invocation {
                event,
                subject,
                host: Arc::clone(&host) as Arc<dyn flint_sandbox::Host>,
                deadline: Some(deadline),
                cancelled: Some(Arc::new(move || interrupt.check().is_err())),
                // `event.target.resource`, parsed in JavaScript only if the script reads it.
                resource,
            },
        )
        .map_err(|e| super::run_error(what, e, limits))?;
    let output = shape(value)?;
    // The script's writes, all or none: only once it has succeeded.
    host.commit()?;
    Ok(output)
}

/// The error an OperationOutcome with errors stands for (its status from its first error's
/// code); `None` when it has no error issues.
pub(crate) fn outcome_error(outcome: &Value) -> Option<Error> {
    let issues: Vec<Issue> = outcome["issue"]
        .as_array()?
        .iter()
        .filter(|i| matches!(i["severity"].as_str(), Some("error" | "fatal")))
        .map(|i| {
            let code = i["code"]
                .as_str()
                .and_then(IssueType::from_code)
                .unwrap_or(IssueType::Processing);
            let diagnostics = i["diagnostics"]
                .as_str()
                .or_else(|| i["details"]["text"].as_str())
                .unwrap_or("the operation failed")
                .to_string();
            let mut issue = Issue::error(code, diagnostics);
            issue.severity = if i["severity"] == "fatal" {
                IssueSeverity::Fatal
            } else {
                IssueSeverity::Error
            };
            issue.expression = i["expression"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            issue
        })
        .collect();
    (!issues.is_empty()).then(|| Error::from_issues(issues))
}

/// The type key of a value whose output is not declared.
fn inferred(value: &Value) -> Option<(&'static str, Value)> {
    match value {
        Value::Bool(_) => Some(("valueBoolean", value.clone())),
        Value::Number(n) if n.is_i64() && n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()) => {
            Some(("valueInteger", value.clone()))
        }
        Value::Number(_) => Some(("valueDecimal", value.clone())),
        Value::String(_) => Some(("valueString", value.clone())),
        _ => None,
    }
}

/// One output entry for `value` under `name`: typed by the declared output, else inferred.
fn output_entries(definition: &Definition, name: &str, value: Value) -> Vec<Value> {
    let declared = definition.output(name);
    let many = declared.is_some_and(|p| p.max != Some(1));
    let values = match value {
        Value::Array(items) if many || declared.is_none() => items,
        v => vec![v],
    };
    values
        .into_iter()
        .filter(|v| !v.is_null())
        .map(|v| {
            let mut entry = Map::new();
            entry.insert("name".into(), json!(name));
            let is_resource = v.get("resourceType").is_some_and(Value::is_string);
            match declared.and_then(|p| p.type_code.as_deref()) {
                _ if is_resource => {
                    entry.insert("resource".into(), v);
                }
                Some(t) if !declared.is_some_and(|p| p.is_resource()) => {
                    entry.insert(value_key(t), v);
                }
                _ => match inferred(&v) {
                    Some((k, v)) => {
                        entry.insert(k.into(), v);
                    }
                    None => {
                        entry.insert("valueString".into(), json!(v.to_string()));
                    }
                },
            }
            Value::Object(entry)
        })
        .collect()
}

/// Shapes what a handler answered by its definition's outputs (SPEC section 8): an
/// OperationOutcome with errors is an error; a resource is the output `return` (or the answer
/// itself, when nothing is declared); an object's keys are output names; a primitive is the
/// one output; a search answers a `searchset` Bundle.
pub(crate) fn shape(
    definition: &Definition,
    kind: Kind,
    value: Option<Value>,
    ctx: &Context,
) -> Result<Output> {
    let open = definition.outputs.is_empty();
    let Some(value) = value.filter(|v| !v.is_null()) else {
        if kind == Kind::Search {
            return Ok(Output::Response(Response::new(
                200,
                Payload::Value(searchset(Vec::new(), ctx)),
            )));
        }
        return Ok(Output::Parameters(Vec::new()));
    };
    if value["resourceType"] == "OperationOutcome" {
        if let Some(e) = outcome_error(&value) {
            return Err(e);
        }
        return Ok(Output::Response(Response::new(200, Payload::Value(value))));
    }
    if kind == Kind::Search {
        let resources = match value {
            Value::Array(items) => items,
            b if b["resourceType"] == "Bundle" => {
                let mut b = b;
                b["type"] = json!("searchset");
                return Ok(Output::Response(Response::new(200, Payload::Value(b))));
            }
            other => {
                return Err(Error::new(
                    IssueType::Exception,
                    format!(
                        "the search ${} answered {} instead of a list of resources or a Bundle",
                        definition.code,
                        describe(&other)
                    ),
                )
                .with_status(500))
            }
        };
        if let Some(bad) = resources
            .iter()
            .find(|r| !r.get("resourceType").is_some_and(Value::is_string))
        {
            return Err(Error::new(
                IssueType::Exception,
                format!(
                    "the search ${} answered {} among its resources",
                    definition.code,
                    describe(bad)
                ),
            )
            .with_status(500));
        }
        return Ok(Output::Response(Response::new(
            200,
            Payload::Value(searchset(resources, ctx)),
        )));
    }
    let is_resource = value.get("resourceType").is_some_and(Value::is_string);
    if is_resource {
        if open {
            return Ok(Output::Response(Response::new(200, Payload::Value(value))));
        }
        let wants_parameters = definition
            .outputs
            .iter()
            .any(|p| p.type_code.as_deref() == Some("Parameters"));
        if value["resourceType"] == "Parameters" && !wants_parameters {
            let entries = value["parameter"].as_array().cloned().unwrap_or_default();
            return Ok(Output::Parameters(entries));
        }
        let name = match definition.outputs.as_slice() {
            [only] => only.name.clone(),
            _ => "return".to_string(),
        };
        return Ok(Output::Parameters(output_entries(definition, &name, value)));
    }
    match value {
        Value::Object(map) => {
            if open {
                let mut r = Response::new(200, Payload::Value(Value::Object(map)));
                r.content_type = Some("application/json");
                return Ok(Output::Response(r));
            }
            let mut entries = Vec::new();
            for (k, v) in map {
                entries.extend(output_entries(definition, &k, v));
            }
            Ok(Output::Parameters(entries))
        }
        Value::Array(items) if open => {
            let mut r = Response::new(200, Payload::Value(Value::Array(items)));
            r.content_type = Some("application/json");
            Ok(Output::Response(r))
        }
        other => {
            let name = match definition.outputs.as_slice() {
                [only] => only.name.clone(),
                _ => "return".to_string(),
            };
            Ok(Output::Parameters(output_entries(definition, &name, other)))
        }
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(_) => "a number".into(),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "a list".into(),
        Value::Object(o) => match o.get("resourceType").and_then(Value::as_str) {
            Some(rt) => format!("a {rt}"),
            None => "an object".into(),
        },
    }
}

/// A `searchset` Bundle of what a named query answered.
fn searchset(resources: Vec<Value>, ctx: &Context) -> Value {
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|r| {
            let mut entry = Map::new();
            if let (Some(rt), Some(id)) = (r["resourceType"].as_str(), r["id"].as_str()) {
                entry.insert("fullUrl".into(), json!(ctx.url(rt, id)));
            }
            entry.insert("resource".into(), r);
            entry.insert("search".into(), json!({"mode": "match"}));
            Value::Object(entry)
        })
        .collect();
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": entries.len(),
    });
    if !entries.is_empty() {
        bundle["entry"] = Value::Array(entries);
    }
    bundle
}
