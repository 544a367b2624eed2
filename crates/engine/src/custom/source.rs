//! Reading custom operations out of the store — Bots, OperationDefinitions that name their
//! implementation, Apps — and checking those resources when they are written.

use std::time::Duration;

use base64::Engine as _;
use flint_fhir::{Error, Result};
use flint_store::Store;
use serde_json::{json, Value};

use super::RunAs;
use crate::operations::{Definition, Level};
use crate::Engine;

/// Flint's implementation extension: its `valueReference` names the Bot that runs an
/// OperationDefinition.
pub const FLINT_IMPLEMENTATION: &str =
    "https://flint-fhir.dev/fhir/StructureDefinition/operationDefinition-implementation";
/// Medplum's, accepted as well so that Medplum's definitions move over unchanged.
pub const MEDPLUM_IMPLEMENTATION: &str =
    "https://medplum.com/fhir/StructureDefinition/operationDefinition-implementation";

/// The Bot or App an operation belongs to, at the version that holds its handler.
#[derive(Clone, Debug)]
pub(crate) struct Owner {
    /// `Bot/[id]` or `App/[id]`.
    pub reference: String,
    pub version: u64,
    pub name: String,
    pub run_as: RunAs,
}

impl Owner {
    /// `Bot/[id]/_history/[version]`: which handler version ran.
    pub fn versioned(&self) -> String {
        format!("{}/_history/{}", self.reference, self.version)
    }
}

/// What runs an operation, before it is built.
#[derive(Clone, Debug)]
pub(crate) enum HandlerSpec {
    /// JavaScript, compiled once per `key` (the version of what holds it).
    Script { key: String, code: String },
    Http {
        url: String,
        method: String,
        headers: Vec<(String, String)>,
    },
    /// A built-in Rust operation, by its definition's id or its code.
    Internal { name: String },
}

/// The kind of an App operation (`read | write | search | execute`), or an
/// OperationDefinition implemented by a Bot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Read,
    Write,
    Search,
    Execute,
    Defined,
}

/// One custom operation as the store declares it.
pub(crate) struct Spec {
    pub definition: Definition,
    pub handler: HandlerSpec,
    pub owner: Owner,
    pub kind: Kind,
    /// A Bot's own `timeout` (seconds), capped by the server's.
    pub timeout: Option<Duration>,
    /// Whether the calls its code makes through `client` commit together when it ends
    /// (the default), or each on its own.
    pub transactional: bool,
}

/// The extension by which an OperationDefinition says its code's calls commit each on its
/// own (`valueBoolean` false) rather than in the invocation's one transaction.
pub const TRANSACTION_EXTENSION: &str =
    "https://flint-fhir.dev/fhir/StructureDefinition/operationDefinition-transaction";

fn transactional(definition: &Value) -> bool {
    !definition["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|x| x["url"] == TRANSACTION_EXTENSION && x["valueBoolean"] == false)
}

/// Everything the store declares.
pub(crate) struct Loaded {
    pub operations: Vec<Spec>,
    /// The script keys of every Bot's current version (kept compiled for `$execute`).
    pub bot_keys: Vec<String>,
}

/// Every stored resource of a type, with its version.
pub(crate) fn all_of<S: Store>(
    engine: &Engine<S>,
    resource_type: &str,
) -> Result<Vec<(Value, u64)>> {
    let query = flint_store::search::SearchQuery {
        resource_type: resource_type.into(),
        limit: 100_000,
        ..Default::default()
    };
    Ok(engine
        .store()
        .search(&query)?
        .versions
        .iter()
        .filter_map(|v| crate::parse_stored(v).ok().map(|r| (r, v.version)))
        .collect())
}

/// A Bot as the registry needs it.
pub(crate) struct BotInfo {
    pub owner: Owner,
    /// The JavaScript, if the Bot has been deployed (or carries inline code).
    pub code: Option<String>,
    pub timeout: Option<Duration>,
}

impl BotInfo {
    pub fn key(&self) -> String {
        self.owner.versioned()
    }
}

/// How a Bot or App runs its own calls: `runAs` (`caller | service`), else Medplum's
/// `runAsUser` (false: the bot's own identity), else the caller.
fn run_as(resource: &Value) -> RunAs {
    match (resource["runAs"].as_str(), resource["runAsUser"].as_bool()) {
        (Some("service"), _) | (None, Some(false)) => RunAs::Service,
        _ => RunAs::Caller,
    }
}

/// Reads a Bot: its code is `executableCode` (base64 `data`, or a `url` naming a stored
/// Binary), else the inline `code`.
pub(crate) fn bot_info<S: Store>(engine: &Engine<S>, bot: &Value, version: u64) -> Result<BotInfo> {
    let id = bot["id"].as_str().unwrap_or_default();
    let code = match &bot["executableCode"] {
        Value::Object(att) => Some(attachment_text(engine, att, "Bot.executableCode")?),
        _ => bot["code"].as_str().map(str::to_string),
    };
    Ok(BotInfo {
        owner: Owner {
            reference: format!("Bot/{id}"),
            version,
            name: bot["name"].as_str().unwrap_or(id).to_string(),
            run_as: run_as(bot),
        },
        code,
        timeout: bot["timeout"]
            .as_u64()
            .filter(|t| *t > 0)
            .map(Duration::from_secs),
    })
}

fn attachment_text<S: Store>(
    engine: &Engine<S>,
    att: &serde_json::Map<String, Value>,
    at: &str,
) -> Result<String> {
    let bytes = if let Some(data) = att.get("data").and_then(Value::as_str) {
        base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|_| Error::invalid("the code's data is not base64").at(format!("{at}.data")))?
    } else if let Some(url) = att.get("url").and_then(Value::as_str) {
        let Some(("Binary", id)) = url.trim_start_matches('/').split_once('/') else {
            return Err(Error::invalid(format!(
                "the code's url must name a Binary of this server (Binary/[id]), not '{url}'"
            ))
            .at(format!("{at}.url")));
        };
        let binary = engine.read("Binary", id)?;
        let binary = crate::parse_stored(&binary)?;
        base64::engine::general_purpose::STANDARD
            .decode(binary["data"].as_str().unwrap_or_default())
            .map_err(|_| Error::invalid(format!("Binary/{id} holds no base64 data")))?
    } else {
        return Err(
            Error::invalid("the code attachment has neither data nor url").at(at.to_string()),
        );
    };
    String::from_utf8(bytes)
        .map_err(|_| Error::invalid("the code is not UTF-8 text").at(at.to_string()))
}

/// The Bot an OperationDefinition names as its implementation (`Bot/[id]`), if it names one.
pub(crate) fn implementation(definition: &Value) -> Option<String> {
    definition["extension"]
        .as_array()?
        .iter()
        .find(|x| x["url"] == FLINT_IMPLEMENTATION || x["url"] == MEDPLUM_IMPLEMENTATION)
        .and_then(|x| x["valueReference"]["reference"].as_str())
        .map(|r| r.trim_start_matches('/').to_string())
}

pub(crate) fn load<S: Store>(engine: &Engine<S>) -> Result<Loaded> {
    let mut bots = std::collections::HashMap::new();
    let mut bot_keys = Vec::new();
    for (bot, version) in all_of(engine, "Bot")? {
        match bot_info(engine, &bot, version) {
            Ok(info) => {
                bot_keys.push(info.key());
                bots.insert(info.owner.reference.clone(), info);
            }
            Err(e) => tracing::warn!(bot = ?bot["id"], error = %e, "a Bot's code cannot be read"),
        }
    }
    let mut operations = Vec::new();
    for (od, _) in all_of(engine, "OperationDefinition")? {
        let Some(reference) = implementation(&od) else {
            continue;
        };
        if !reference.starts_with("Bot/") {
            // Definitions Flint synthesises for Apps name the App: the App is their source.
            continue;
        }
        let id = od["id"].as_str().unwrap_or_default().to_string();
        let transactional = transactional(&od);
        let definition = match Definition::from_json(od) {
            Ok(mut d) => {
                d.raw_input = true;
                d
            }
            Err(e) => {
                tracing::warn!(definition = %id, error = %e, "an OperationDefinition is not usable");
                continue;
            }
        };
        let Some(bot) = bots.get(&reference) else {
            tracing::warn!(definition = %id, bot = %reference, "an OperationDefinition names a Bot that does not exist");
            continue;
        };
        let Some(code) = &bot.code else {
            tracing::warn!(definition = %id, bot = %reference, "an OperationDefinition names a Bot not deployed yet");
            continue;
        };
        operations.push(Spec {
            definition,
            handler: HandlerSpec::Script {
                key: bot.key(),
                code: code.clone(),
            },
            owner: bot.owner.clone(),
            kind: Kind::Defined,
            timeout: bot.timeout,
            transactional,
        });
    }
    for (app, version) in all_of(engine, "App")? {
        if app["status"] != "active" {
            continue;
        }
        match app_operations(&app, version) {
            Ok(specs) => operations.extend(specs),
            Err(e) => tracing::warn!(app = ?app["id"], error = %e, "an App is not served"),
        }
    }
    Ok(Loaded {
        operations,
        bot_keys,
    })
}

fn bad(message: impl Into<String>, at: &str) -> Error {
    Error::invalid(message.into()).at(at.to_string())
}

/// Whether `name` may be an operation's code: a letter, then letters, digits, `-`, `_`, `.`.
fn is_code(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.len() <= 64
}

/// The id a synthesised definition is served under: `app-[app id]-[operation]`, shortened
/// with a hash of the two when that is longer than an id may be.
fn synthesised_id(app_id: &str, name: &str) -> String {
    let id = format!("app-{app_id}-{name}");
    if id.len() <= 64 && flint_fhir::validate::is_valid_id(&id) {
        return id;
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (app_id, name).hash(&mut h);
    let short: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    format!("app-{short}-{:016x}", h.finish())
}

/// The operations of an App, each with the OperationDefinition Flint synthesises for it.
///
/// # Errors
/// The first problem found, naming its element (`App.operations[1].handler.url`).
pub(crate) fn app_operations(app: &Value, version: u64) -> Result<Vec<Spec>> {
    let app_id = app["id"].as_str().unwrap_or_default();
    let owner = Owner {
        reference: format!("App/{app_id}"),
        version,
        name: app["name"].as_str().unwrap_or(app_id).to_string(),
        run_as: run_as(app),
    };
    let mut specs: Vec<Spec> = Vec::new();
    let operations = app["operations"].as_array().map_or(&[][..], Vec::as_slice);
    for (i, op) in operations.iter().enumerate() {
        let at = format!("App.operations[{i}]");
        let name = op["name"].as_str().unwrap_or_default();
        if !is_code(name) {
            return Err(bad(
                format!("'{name}' cannot name an operation: a letter, then letters, digits, '-', '_' or '.' (at most 64)"),
                &format!("{at}.name"),
            ));
        }
        let kind = match op["type"].as_str() {
            Some("read") => Kind::Read,
            Some("write") => Kind::Write,
            Some("search") => Kind::Search,
            Some("execute") => Kind::Execute,
            other => {
                return Err(bad(
                    format!(
                        "the operation's type must be read, write, search or execute, not {}",
                        other.map_or("nothing".to_string(), |o| format!("'{o}'"))
                    ),
                    &format!("{at}.type"),
                ))
            }
        };
        let resource_type = op["resourceType"].as_str();
        if let Some(rt) = resource_type {
            if !flint_fhir::model::r4().is_resource_type(rt) {
                return Err(bad(
                    format!("'{rt}' is not a resource type"),
                    &format!("{at}.resourceType"),
                ));
            }
        }
        let mut levels: Vec<Level> = Vec::new();
        for (j, l) in op["level"].as_array().into_iter().flatten().enumerate() {
            let level = match l.as_str() {
                Some("system") => Level::System,
                Some("type") => Level::Type,
                Some("instance") => Level::Instance,
                _ => {
                    return Err(bad(
                        format!("a level is system, type or instance, not {l}"),
                        &format!("{at}.level[{j}]"),
                    ))
                }
            };
            levels.push(level);
        }
        if levels.is_empty() {
            levels = match (kind, resource_type) {
                (_, None) => vec![Level::System],
                (Kind::Search, Some(_)) => vec![Level::Type],
                (_, Some(_)) => vec![Level::Type, Level::Instance],
            };
        }
        if resource_type.is_none() && levels.iter().any(|l| *l != Level::System) {
            return Err(bad(
                "a type or instance operation needs a resourceType",
                &format!("{at}.resourceType"),
            ));
        }
        if kind == Kind::Search && (resource_type.is_none() || levels != [Level::Type]) {
            return Err(bad(
                "a search is a named query on a resource type ([type]?_query=name): give a resourceType and no level but type",
                &format!("{at}.level"),
            ));
        }
        let handler = handler_spec(&op["handler"], &format!("{at}.handler"), || {
            format!("{}/_history/{version}#{name}", owner.reference)
        })?;
        let id = synthesised_id(app_id, name);
        let mut od = json!({
            "resourceType": "OperationDefinition",
            "id": id,
            "extension": [{"url": FLINT_IMPLEMENTATION, "valueReference": {"reference": owner.reference, "display": owner.name}}],
            "url": format!("{}/OperationDefinition/{id}", flint_fhir::CANONICAL),
            "version": app["version"].as_str().unwrap_or("1"),
            "name": name,
            "title": format!("{} ({})", name, owner.name),
            "status": "active",
            "kind": if kind == Kind::Search { "query" } else { "operation" },
            "description": op["description"].as_str().map_or_else(
                || format!("The {} operation {name} of App {}", op["type"].as_str().unwrap_or(""), owner.name),
                str::to_string),
            "affectsState": matches!(kind, Kind::Write | Kind::Execute),
            "code": name,
            "system": levels.contains(&Level::System),
            "type": levels.contains(&Level::Type),
            "instance": levels.contains(&Level::Instance),
        });
        if let Some(rt) = resource_type {
            od["resource"] = json!([rt]);
        }
        if let Some(params) = op["parameter"].as_array() {
            od["parameter"] = Value::Array(params.clone());
        }
        let mut definition = Definition::from_json(od).map_err(|e| {
            let mut e = e;
            for issue in &mut e.issues {
                issue.expression = vec![format!("{at}.parameter")];
            }
            e
        })?;
        definition.raw_input = true;
        if let Some(other) = specs.iter().find(|s| {
            s.definition.code == definition.code
                && s.definition.query == definition.query
                && crate::operations::shadows(&s.definition, &definition)
        }) {
            return Err(bad(
                format!(
                    "the App declares '{name}' twice for the same level and type (also {})",
                    other.definition.id
                ),
                &format!("{at}.name"),
            ));
        }
        specs.push(Spec {
            definition,
            handler,
            owner: owner.clone(),
            kind,
            timeout: None,
            transactional: op["transaction"].as_bool() != Some(false),
        });
    }
    Ok(specs)
}

/// Reads an operation's `handler`.
fn handler_spec(h: &Value, at: &str, key: impl FnOnce() -> String) -> Result<HandlerSpec> {
    match h["type"].as_str() {
        Some("javascript") => {
            let code = h["code"]
                .as_str()
                .filter(|c| !c.trim().is_empty())
                .ok_or_else(|| bad("a javascript handler needs its code", &format!("{at}.code")))?;
            Ok(HandlerSpec::Script {
                key: key(),
                code: code.to_string(),
            })
        }
        Some("http") => {
            let (url, method, headers) =
                http_target(h, at, &["GET", "POST", "PUT", "PATCH", "DELETE"])?;
            Ok(HandlerSpec::Http {
                url,
                method,
                headers,
            })
        }
        Some("internal") => {
            let name = h["name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    bad(
                        "an internal handler needs the name of the operation",
                        &format!("{at}.name"),
                    )
                })?;
            Ok(HandlerSpec::Internal {
                name: name.to_string(),
            })
        }
        other => Err(bad(
            format!(
                "a handler's type must be javascript, http or internal, not {}",
                other.map_or("nothing".to_string(), |o| format!("'{o}'"))
            ),
            &format!("{at}.type"),
        )),
    }
}

/// An HTTP target: its `url`, `method` and `headers`.
type HttpTarget = (String, String, Vec<(String, String)>);

/// An HTTP handler's `url`, `method` and `headers`.
fn http_target(h: &Value, at: &str, methods: &[&str]) -> Result<HttpTarget> {
    let url = h["url"].as_str().unwrap_or_default();
    let parsed = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    if parsed.is_none_or(|rest| rest.is_empty() || rest.starts_with('/')) {
        return Err(bad(
            format!("an http handler needs an absolute http:// or https:// url, not '{url}'"),
            &format!("{at}.url"),
        ));
    }
    let method = h["method"].as_str().unwrap_or("POST").to_ascii_uppercase();
    if !methods.contains(&method.as_str()) {
        return Err(bad(
            format!(
                "the method must be one of {}, not '{method}'",
                methods.join(", ")
            ),
            &format!("{at}.method"),
        ));
    }
    let mut headers = Vec::new();
    match &h["headers"] {
        Value::Null => {}
        Value::Object(map) => {
            for (name, value) in map {
                let ok_name = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                let Some(value) = value.as_str().filter(|v| !v.contains(['\r', '\n'])) else {
                    return Err(bad(
                        format!("the header '{name}' must have a one-line text value"),
                        &format!("{at}.headers.{name}"),
                    ));
                };
                if !ok_name {
                    return Err(bad(
                        format!("'{name}' is not a header name"),
                        &format!("{at}.headers"),
                    ));
                }
                headers.push((name.clone(), value.to_string()));
            }
        }
        _ => {
            return Err(bad(
                "headers are an object of header names to values",
                &format!("{at}.headers"),
            ))
        }
    }
    Ok((url.to_string(), method, headers))
}

/// Checks an App about to be written: its operations (each would be served: its code
/// compiles, its internal operation exists, it clashes with nothing served by someone
/// else) and its subscriptions.
pub(crate) fn check_app<S: Store>(engine: &Engine<S>, app: &Value) -> Result<()> {
    let status = app["status"].as_str().unwrap_or_default();
    if !matches!(status, "draft" | "active" | "inactive" | "retired") {
        return Err(bad(
            format!("an App's status is draft, active, inactive or retired, not '{status}'"),
            "App.status",
        ));
    }
    let count = app["operations"].as_array().map_or(0, Vec::len);
    let max = engine.limits().apps.max_operations_per_app;
    if count > max {
        return Err(bad(
            format!("an App may declare at most {max} operations ([apps] max_operations_per_app), not {count}"),
            "App.operations",
        ));
    }
    let specs = app_operations(app, 0)?;
    let me = format!("App/{}", app["id"].as_str().unwrap_or_default());
    let catalog = engine.operations();
    for (i, spec) in specs.iter().enumerate() {
        let at = format!("App.operations[{i}]");
        match &spec.handler {
            HandlerSpec::Script { code, .. } => {
                engine
                    .sandbox()
                    .compile(&spec.definition.code, code)
                    .map_err(|e| {
                        bad(
                            format!("the handler's code does not compile: {e}"),
                            &format!("{at}.handler.code"),
                        )
                    })?;
            }
            HandlerSpec::Internal { name } => {
                if super::handler::internal::<S>(name).is_none() {
                    return Err(bad(
                        format!("no operation built into this server is called '{name}'"),
                        &format!("{at}.handler.name"),
                    ));
                }
            }
            HandlerSpec::Http { .. } => {}
        }
        let d = &spec.definition;
        // Only an active App serves: a draft may clash until it is activated.
        if status != "active" {
            continue;
        }
        if let Some(e) = catalog.entries().iter().find(|e| {
            let other = &e.definition;
            implementation(&other.json).as_deref() != Some(me.as_str())
                && other.code == d.code
                && other.query == d.query
                && crate::operations::shadows(other, d)
        }) {
            return Err(bad(
                format!(
                    "${} is already served there by {}",
                    d.code, e.definition.url
                ),
                &format!("{at}.name"),
            ));
        }
    }
    for (i, sub) in app["subscriptions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        check_subscription(engine, sub, &format!("App.subscriptions[{i}]"))?;
    }
    Ok(())
}

/// Checks one of an App's subscriptions (delivered by the subscriptions machinery).
fn check_subscription<S: Store>(engine: &Engine<S>, sub: &Value, at: &str) -> Result<()> {
    let rt = sub["resourceType"].as_str().unwrap_or_default();
    if !flint_fhir::model::r4().is_resource_type(rt) {
        return Err(bad(
            format!("'{rt}' is not a resource type"),
            &format!("{at}.resourceType"),
        ));
    }
    for (j, e) in sub["events"].as_array().into_iter().flatten().enumerate() {
        if !matches!(e.as_str(), Some("create" | "update" | "delete" | "vread")) {
            return Err(bad(
                format!("an event is create, update, delete or vread, not {e}"),
                &format!("{at}.events[{j}]"),
            ));
        }
    }
    let h = &sub["handler"];
    let hat = format!("{at}.handler");
    match h["type"].as_str() {
        Some("webhook" | "http") => {
            http_target(h, &hat, &["POST", "PUT"])?;
        }
        Some("javascript") => {
            let code = h["code"].as_str().unwrap_or_default();
            engine
                .sandbox()
                .compile("subscription", code)
                .map_err(|e| {
                    bad(
                        format!("the handler's code does not compile: {e}"),
                        &format!("{hat}.code"),
                    )
                })?;
        }
        other => {
            return Err(bad(
                format!(
                    "a subscription's handler type is webhook, http or javascript, not {}",
                    other.map_or("nothing".to_string(), |o| format!("'{o}'"))
                ),
                &format!("{hat}.type"),
            ))
        }
    }
    check_filter(&sub["filter"], &format!("{at}.filter"))?;
    let retry = &sub["retryPolicy"];
    if let Some(n) = retry["maxRetries"].as_i64() {
        if !(0..=100).contains(&n) {
            return Err(bad(
                "maxRetries is between 0 and 100",
                &format!("{at}.retryPolicy.maxRetries"),
            ));
        }
    }
    for (j, s) in retry["backoffSeconds"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if !s.as_i64().is_some_and(|s| (0..=86_400).contains(&s)) {
            return Err(bad(
                "a backoff is between 0 and 86400 seconds",
                &format!("{at}.retryPolicy.backoffSeconds[{j}]"),
            ));
        }
    }
    Ok(())
}

const OPERATORS: [&str; 9] = [
    "gt", "ge", "lt", "le", "ne", "eq", "in", "exists", "contains",
];

/// A filter: a FHIRPath expression (a string, or `{"fhirpath": …}`), or an object of element
/// paths to values or operator objects (`{"gt": 140}`).
fn check_filter(filter: &Value, at: &str) -> Result<()> {
    let fhirpath = |e: &str, at: &str| {
        flint_fhirpath::Expression::compile(e)
            .map(|_| ())
            .map_err(|x| {
                bad(
                    format!("the FHIRPath expression does not compile: {}", x.message),
                    at,
                )
            })
    };
    match filter {
        Value::Null => Ok(()),
        Value::String(e) => fhirpath(e, at),
        Value::Object(map) => {
            for (path, v) in map {
                let here = format!("{at}.{path}");
                if path == "fhirpath" || path == "expression" {
                    match v.as_str() {
                        Some(e) => fhirpath(e, &here)?,
                        None => return Err(bad("a FHIRPath filter is a string", &here)),
                    }
                    continue;
                }
                let valid_path = !path.is_empty()
                    && path.split('.').all(|s| {
                        !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    });
                if !valid_path {
                    return Err(bad(format!("'{path}' is not an element path"), at));
                }
                match v {
                    Value::Object(ops) => {
                        if ops.is_empty() {
                            return Err(bad("an operator object needs an operator", &here));
                        }
                        for (op, operand) in ops {
                            if !OPERATORS.contains(&op.as_str()) {
                                return Err(bad(
                                    format!("'{op}' is not an operator ({})", OPERATORS.join(", ")),
                                    &here,
                                ));
                            }
                            let fits = match op.as_str() {
                                "in" => operand.is_array(),
                                "exists" => operand.is_boolean(),
                                _ => {
                                    !operand.is_object()
                                        && !operand.is_array()
                                        && !operand.is_null()
                                }
                            };
                            if !fits {
                                return Err(bad(
                                    format!("the operand of '{op}' does not fit it"),
                                    &here,
                                ));
                            }
                        }
                    }
                    Value::Array(_) | Value::Null => {
                        return Err(bad(
                            "a filter value is a primitive or an operator object",
                            &here,
                        ))
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        _ => Err(bad(
            "a filter is an object of element paths, or a FHIRPath expression",
            at,
        )),
    }
}

/// Checks a Bot about to be written: the code it carries compiles, `runAs` is known.
pub(crate) fn check_bot<S: Store>(engine: &Engine<S>, bot: &Value) -> Result<()> {
    if let Some(r) = bot["runAs"].as_str() {
        if !matches!(r, "caller" | "service") {
            return Err(bad(
                format!("runAs is caller or service, not '{r}'"),
                "Bot.runAs",
            ));
        }
    }
    let info = bot_info(engine, bot, 0)?;
    if let Some(code) = &info.code {
        engine
            .sandbox()
            .compile(&info.owner.name, code)
            .map_err(|e| {
                let at = if bot["executableCode"].is_object() {
                    "Bot.executableCode"
                } else {
                    "Bot.code"
                };
                bad(format!("the Bot's code does not compile: {e}"), at)
            })?;
    }
    Ok(())
}

/// Checks an OperationDefinition that names an implementation: it must be one the framework
/// can serve, and name a Bot.
pub(crate) fn check_implemented(od: &Value) -> Result<()> {
    let Some(reference) = implementation(od) else {
        return Ok(());
    };
    let synthesised =
        reference.starts_with("App/") && od["id"].as_str().is_some_and(|id| id.starts_with("app-"));
    if !reference.starts_with("Bot/") && !synthesised {
        return Err(bad(
            format!("the implementation must reference a Bot (Bot/[id]), not '{reference}'"),
            "OperationDefinition.extension",
        ));
    }
    Definition::from_json(od.clone()).map(|_| ())
}
