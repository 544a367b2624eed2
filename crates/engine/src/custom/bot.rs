//! `Bot/[id]/$deploy` (compile and store a Bot's JavaScript) and `Bot/[id]/$execute` (run it
//! with the request's body or query as its input), as Medplum has them.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use flint_fhir::{Error, Result};
use flint_store::Store;
use serde_json::{json, Value};

use super::audit::Record;
use super::source::{bot_info, Kind};
use crate::operations::{Call, Definition, Level, Operation, Output};
use crate::Engine;

pub(crate) struct Deploy;

impl<S: Store> Operation<S> for Deploy {
    fn definition(&self) -> Definition {
        Definition::flint(json!({
            "id": "Bot-deploy",
            "name": "Deploy",
            "title": "Deploy a Bot's code",
            "description": "Compiles the JavaScript given as `code` and stores it as the Bot's executableCode: every invocation from the response on runs it. A syntax error is a 400 naming the line.",
            "code": "deploy",
            "resource": ["Bot"],
            "system": false,
            "type": false,
            "instance": true,
            "affectsState": true,
            "parameter": [
                {"name": "code", "use": "in", "min": 1, "max": "1", "type": "string",
                 "documentation": "The JavaScript: exports.handler = async function (client, event) { … }, an ES module exporting handler, or a function expression."},
                {"name": "filename", "use": "in", "min": 0, "max": "1", "type": "string",
                 "documentation": "A name for the code (kept as the attachment's title)."},
                {"name": "return", "use": "out", "min": 1, "max": "1", "type": "OperationOutcome"}
            ]
        }))
    }

    fn invoke(&self, engine: &Arc<Engine<S>>, call: &mut Call<'_>) -> Result<Output> {
        let stored = call
            .target
            .stored
            .clone()
            .ok_or_else(|| Error::internal("$deploy needs its Bot"))?;
        let mut bot = call.target.resource()?;
        let code = call
            .inputs
            .str("code")
            .ok_or_else(|| Error::invalid("$deploy needs the code").at("code"))?
            .to_string();
        let id = stored.id.clone();
        let name = bot["name"].as_str().unwrap_or(&id).to_string();
        // Compiled now, under the version the deployment writes: invocations do not compile.
        let key = format!("Bot/{id}/_history/{}", stored.version + 1);
        engine
            .script(&key, &name, &code)
            .map_err(|e| e.at("code"))?;
        let mut attachment = json!({
            "contentType": "application/javascript",
            "data": base64::engine::general_purpose::STANDARD.encode(code.as_bytes()),
            "creation": flint_fhir::datetime::format_instant(
                crate::paging::Clock::now(&crate::paging::SystemClock)),
        });
        if let Some(f) = call.inputs.str("filename") {
            attachment["title"] = json!(f);
        }
        if let Some(o) = bot.as_object_mut() {
            o.insert("executableCode".into(), attachment);
            o.shift_remove("meta");
        }
        call.changes
            .update(engine, "Bot", &id, bot, Some(stored.version))?;
        Ok(Output::resource(flint_fhir::error::information(format!(
            "Bot/{id} deployed: its new code serves every invocation from now on"
        ))))
    }

    fn waits_elsewhere(&self) -> bool {
        true
    }
}

pub(crate) struct Execute;

impl<S: Store> Operation<S> for Execute {
    fn definition(&self) -> Definition {
        let mut d = Definition::flint(json!({
            "id": "Bot-execute",
            "name": "Execute",
            "title": "Run a Bot",
            "description": "Runs the Bot's deployed code with the request's body (on POST: any JSON, a FHIR resource or text) or its query parameters (on GET) as event.input, and answers what it returns. At the type level the Bot is named by `identifier` (or `id`) in the query.",
            "code": "execute",
            "resource": ["Bot"],
            "system": false,
            "type": true,
            "instance": true,
            "affectsState": false
        }));
        d.raw_input = true;
        d
    }

    fn invoke(&self, engine: &Arc<Engine<S>>, call: &mut Call<'_>) -> Result<Output> {
        let (bot, version) = match call.target.level {
            Level::Instance => {
                let stored = call
                    .target
                    .stored
                    .clone()
                    .ok_or_else(|| Error::internal("$execute needs its Bot"))?;
                (call.target.resource()?, stored.version)
            }
            _ => find_bot(engine, call)?,
        };
        let info = bot_info(engine, &bot, version)?;
        let Some(code) = &info.code else {
            return Err(Error::invalid(format!(
                "{} has no code yet: deploy it with POST {}/$deploy",
                info.owner.reference, info.owner.reference
            )));
        };
        let script = engine.script(&info.key(), &info.owner.name, code)?;
        let invocation = crate::new_id();
        let started = Instant::now();
        let what = format!("{} ({})", info.owner.reference, info.owner.name);
        let event = super::handler::event(call, &info.owner, &invocation, false);
        let server = engine.limits().apps.operation_timeout;
        let timeout = info.timeout.map_or(server, |t| t.min(server));
        let definition = <Execute as Operation<S>>::definition(self);
        let result = super::handler::run_script(
            engine,
            &script,
            call,
            &info.owner,
            &what,
            &invocation,
            event,
            timeout,
            true,
            |v| super::handler::shape(&definition, Kind::Execute, v, call.ctx),
        );
        engine.audit(Record::of(
            call,
            "execute",
            &info.owner,
            &invocation,
            started,
            result.as_ref().err(),
        ));
        result
    }

    fn waits_elsewhere(&self) -> bool {
        true
    }
}

/// The Bot a type-level `$execute` names by `identifier` or `id`.
fn find_bot<S: Store>(engine: &Arc<Engine<S>>, call: &Call<'_>) -> Result<(Value, u64)> {
    let wanted = |name: &str| {
        call.raw
            .query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if let Some(id) = wanted("id") {
        let v = engine.read("Bot", &id)?;
        return Ok((crate::parse_stored(&v)?, v.version));
    }
    let Some(identifier) = wanted("identifier") else {
        return Err(Error::invalid(
            "Bot/$execute names its Bot with identifier=[system|]value or id=[id] in the query",
        )
        .at("identifier"));
    };
    let query = format!(
        "identifier={}&_count=2",
        percent_encoding::utf8_percent_encode(&identifier, percent_encoding::NON_ALPHANUMERIC)
    );
    let request = crate::Request::parse(crate::HttpMethod::Get, "Bot", Some(&query))?;
    let response = engine.dispatch(call.ctx, request)?;
    let bundle: Value = match response.payload_text() {
        Some(t) => serde_json::from_str(&t).map_err(Error::internal)?,
        None => Value::Null,
    };
    let found: Vec<&Value> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] != "include")
        .map(|e| &e["resource"])
        .collect();
    match found.as_slice() {
        [one] => {
            let id = one["id"].as_str().unwrap_or_default();
            let v = engine.read("Bot", id)?;
            Ok((crate::parse_stored(&v)?, v.version))
        }
        [] => Err(Error::not_found(format!(
            "no Bot has the identifier {identifier}"
        ))),
        _ => Err(Error::new(
            flint_fhir::IssueType::MultipleMatches,
            format!("more than one Bot has the identifier {identifier}"),
        )),
    }
}
