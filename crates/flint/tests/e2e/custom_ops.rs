//! Custom operations at run time (SPEC section 8): Bots with `$deploy` and `$execute`,
//! OperationDefinitions implemented by a Bot, Apps with JavaScript, HTTP and internal
//! handlers, hot deploy, the sandbox's limits, errors and the audit trail.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flint_engine::Limits;
use serde_json::{json, Value};

use crate::server::{outcome, Server};

const MEDPLUM: &str =
    "https://medplum.com/fhir/StructureDefinition/operationDefinition-implementation";

/// A request a test service received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

type Answer = (u16, String, Duration);

/// A tiny HTTP/1.1 service on a loopback port, answering each request with what `answer`
/// says (status, JSON body, delay); keeps connections alive.
pub struct Service {
    pub url: String,
    pub hits: Arc<AtomicUsize>,
    pub last: Arc<parking_lot::Mutex<Option<Received>>>,
}

type Answerer = Arc<dyn Fn(&Received) -> Answer + Send + Sync>;

impl Service {
    pub fn start(answer: impl Fn(&Received) -> Answer + Send + Sync + 'static) -> Service {
        Service::listen("http", None, Arc::new(answer))
    }

    /// The same service over TLS, with this certificate chain and PKCS #8 key.
    pub fn start_tls(
        chain: Vec<rustls::pki_types::CertificateDer<'static>>,
        key: Vec<u8>,
        answer: impl Fn(&Received) -> Answer + Send + Sync + 'static,
    ) -> Service {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()))
        .expect("server certificate");
        Service::listen("https", Some(Arc::new(config)), Arc::new(answer))
    }

    fn listen(scheme: &str, tls: Option<Arc<rustls::ServerConfig>>, answer: Answerer) -> Service {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("{scheme}://{}", listener.local_addr().expect("address"));
        let hits = Arc::new(AtomicUsize::new(0));
        let last = Arc::new(parking_lot::Mutex::new(None));
        let (h, l) = (Arc::clone(&hits), Arc::clone(&last));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (answer, hits, last) = (Arc::clone(&answer), Arc::clone(&h), Arc::clone(&l));
                let tls = tls.clone();
                std::thread::spawn(move || match tls {
                    None => serve_connection(stream, &*answer, &hits, &last),
                    Some(config) => {
                        let Ok(conn) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        let stream = rustls::StreamOwned::new(conn, stream);
                        serve_connection(stream, &*answer, &hits, &last);
                    }
                });
            }
        });
        Service { url, hits, last }
    }
}

/// Answers the requests of one kept-alive connection.
fn serve_connection(
    stream: impl Read + Write,
    answer: &(dyn Fn(&Received) -> Answer + Send + Sync),
    hits: &AtomicUsize,
    last: &parking_lot::Mutex<Option<Received>>,
) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                if k == "content-length" {
                    length = v.parse().unwrap_or(0);
                }
                headers.push((k, v));
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let received = Received {
            method,
            path,
            headers,
            body: String::from_utf8_lossy(&body).to_string(),
        };
        hits.fetch_add(1, Ordering::SeqCst);
        let (status, text, delay) = answer(&received);
        *last.lock() = Some(received);
        std::thread::sleep(delay);
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            text.len()
        );
        let writer = reader.get_mut();
        if writer.write_all(head.as_bytes()).is_err()
            || writer.write_all(text.as_bytes()).is_err()
            || writer.flush().is_err()
        {
            return;
        }
    }
}

fn json_of(r: reqwest::blocking::Response) -> Value {
    r.json().expect("json")
}

fn param<'a>(p: &'a Value, name: &str) -> &'a Value {
    p["parameter"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == name))
        .unwrap_or(&Value::Null)
}

fn patient(server: &Server, family: &str, birth: &str) -> String {
    server.create(&json!({
        "resourceType": "Patient",
        "name": [{"family": family, "given": ["Ann"]}],
        "birthDate": birth,
    }))
}

fn deploy(server: &Server, bot: &str, code: &str) -> reqwest::blocking::Response {
    server.post(
        &format!("Bot/{bot}/$deploy"),
        &json!({"resourceType": "Parameters", "parameter": [{"name": "code", "valueString": code}]}),
    )
}

fn app_limits(execution_ms: u64, timeout: Duration) -> Limits {
    let mut limits = Limits::default();
    limits.apps.operation_timeout = timeout;
    limits.apps.sandbox.max_execution = Duration::from_millis(execution_ms);
    limits.apps.sandbox.max_memory_bytes = 32 * 1024 * 1024;
    limits
}

#[test]
fn a_medplum_bot_deploys_and_executes_unchanged() {
    let server = Server::start();
    let pid = patient(&server, "Medplum", "1970-01-01");
    let bot = server.create(
        &json!({"resourceType": "Bot", "name": "hello-patient", "runtimeVersion": "vmcontext"}),
    );
    // Not deployed yet.
    outcome(server.post(&format!("Bot/{bot}/$execute"), &json!({})), 400);
    // The code of Medplum's hello-patient example, compiled to CommonJS as Medplum deploys it.
    let code = r#""use strict";
Object.defineProperty(exports, "__esModule", { value: true });
exports.handler = void 0;
async function handler(medplum, event) {
  const patient = event.input;
  const firstName = patient.name?.[0]?.given?.[0];
  const lastName = patient.name?.[0]?.family;
  console.log(`Hello ${firstName} ${lastName}!`);
  const stored = await medplum.readResource('Patient', event.input.id);
  const found = await medplum.searchResources('Patient', { family: lastName });
  return { greeting: `Hello ${firstName} ${lastName}!`, birthDate: stored.birthDate, found: found.length };
}
exports.handler = handler;
"#;
    let r = deploy(&server, &bot, code);
    assert_eq!(r.status(), 200, "{:?}", r.text());
    let stored = json_of(server.get(&format!("Bot/{bot}")).send().unwrap());
    assert_eq!(
        stored["executableCode"]["contentType"],
        "application/javascript"
    );
    let input = json!({"resourceType": "Patient", "id": pid, "name": [{"family": "Medplum", "given": ["Ann"]}]});
    let r = server.post(&format!("Bot/{bot}/$execute"), &input);
    assert_eq!(r.status(), 200);
    let answer = json_of(r);
    assert_eq!(answer["greeting"], "Hello Ann Medplum!");
    assert_eq!(answer["birthDate"], "1970-01-01");
    assert_eq!(answer["found"], 1);

    // GET: the query parameters are the input.
    let echo = r#"exports.handler = async (client, event) => ({ input: event.input, method: event.target.level, ct: event.contentType });"#;
    assert_eq!(deploy(&server, &bot, echo).status(), 200);
    let answer = json_of(
        server
            .get(&format!("Bot/{bot}/$execute?a=1&b=x&b=y"))
            .send()
            .unwrap(),
    );
    assert_eq!(answer["input"], json!({"a": "1", "b": ["x", "y"]}));
    // A text body reaches the bot as a string.
    let r = server
        .client
        .post(server.url(&format!("Bot/{bot}/$execute")))
        .header("content-type", "text/plain")
        .body("MSH|^~\\&|")
        .send()
        .unwrap();
    let answer = json_of(r);
    assert_eq!(answer["input"], "MSH|^~\\&|");
    assert_eq!(answer["ct"], "text/plain");

    // A syntax error is a 400 naming the line.
    let r = deploy(
        &server,
        &bot,
        "exports.handler = async () => {\n  let x = ;\n};",
    );
    let oo = outcome(r, 400);
    assert!(oo.to_string().contains("line 2"), "{oo}");
    // The deployed code is unchanged.
    assert_eq!(
        server
            .get(&format!("Bot/{bot}/$execute?q=1"))
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn an_operation_definition_implemented_by_a_bot_is_served_as_soon_as_written() {
    let server = Server::start();
    let pid = patient(&server, "Risk", "1950-06-01");
    let bot = server.create(&json!({"resourceType": "Bot", "name": "age"}));
    let code = r#"export async function handler(medplum, event) {
  const p = event.target.resource;
  const years = 2026 - Number(p.birthDate.slice(0, 4));
  return { age: years, senior: years >= 65, note: `for ${event.target.id}` };
}"#;
    assert_eq!(deploy(&server, &bot, code).status(), 200);
    // Not an operation yet.
    outcome(
        server.get(&format!("Patient/{pid}/$age")).send().unwrap(),
        400,
    );
    let od = json!({
        "resourceType": "OperationDefinition",
        "extension": [{"url": MEDPLUM, "valueReference": {"reference": format!("Bot/{bot}")}}],
        "name": "age", "status": "active", "kind": "operation", "code": "age",
        "resource": ["Patient"], "system": false, "type": false, "instance": true,
        "affectsState": false,
        "parameter": [
            {"name": "age", "use": "out", "min": 1, "max": "1", "type": "integer"},
            {"name": "senior", "use": "out", "min": 1, "max": "1", "type": "boolean"},
            {"name": "note", "use": "out", "min": 0, "max": "1", "type": "string"}
        ]
    });
    let od_id = server.create(&od);
    let r = server.get(&format!("Patient/{pid}/$age")).send().unwrap();
    assert_eq!(r.status(), 200);
    let p = json_of(r);
    assert_eq!(p["resourceType"], "Parameters");
    assert_eq!(param(&p, "age")["valueInteger"], 76);
    assert_eq!(param(&p, "senior")["valueBoolean"], true);
    assert_eq!(param(&p, "note")["valueString"], format!("for {pid}"));
    // Listed in the CapabilityStatement.
    let cs = json_of(server.get("metadata").send().unwrap());
    let patient_ops = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap()["operation"]
        .to_string();
    assert!(patient_ops.contains("\"age\""), "{patient_ops}");
    // Not at the type level; and gone once the definition is deleted.
    outcome(server.get("Patient/$age").send().unwrap(), 400);
    assert!(server
        .client
        .delete(server.url(&format!("OperationDefinition/{od_id}")))
        .send()
        .unwrap()
        .status()
        .is_success());
    outcome(
        server.get(&format!("Patient/{pid}/$age")).send().unwrap(),
        400,
    );
    // A definition naming something that is not a Bot is refused.
    let mut bad = od.clone();
    bad["extension"][0]["valueReference"]["reference"] = json!("Patient/1");
    outcome(server.post("OperationDefinition", &bad), 400);
}

#[test]
fn app_operations_of_each_handler_kind_are_served_while_active() {
    let service = Service::start(|r| {
        let body: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        let birth = body["resource"]["birthDate"].as_str().unwrap_or("2000");
        let year: i64 = birth[..4].parse().unwrap_or(2000);
        let score = (2026 - year) as f64 / 100.0;
        let text = json!({"resourceType": "Parameters", "parameter": [
            {"name": "score", "valueDecimal": score},
            {"name": "requestId", "valueString": body["requestId"]}
        ]});
        (200, text.to_string(), Duration::ZERO)
    });
    let server = Server::start();
    let pid = patient(&server, "Portal", "1966-03-03");
    server.create(&json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{pid}")}, "valueQuantity": {"value": 150}}));
    let app = json!({
        "resourceType": "App", "name": "portal", "status": "active", "version": "1.0",
        "operations": [
            {"name": "risk-score", "type": "read", "resourceType": "Patient", "level": ["instance"],
             "handler": {"type": "http", "url": format!("{}/score", service.url), "headers": {"X-Api-Key": "secret"}}},
            {"name": "summary", "type": "read", "resourceType": "Patient", "level": ["instance"],
             "handler": {"type": "javascript", "code": "function(resource, context) {\n  return context.client.searchResources('Observation', { subject: 'Patient/' + resource.id }).then(obs => ({\n    name: resource.name[0].family, observations: obs.length, caller: context.caller.subject || 'anonymous' }));\n}"}},
            {"name": "health", "type": "read",
             "handler": {"type": "internal", "name": "healthcheck"}},
            {"name": "by-family", "type": "search", "resourceType": "Patient",
             "handler": {"type": "javascript", "code": "exports.handler = async (client, event) => client.searchResources('Patient', { family: event.input.family });"}}
        ]
    });
    let app_id = server.create(&app);
    // HTTP: the service gets the target and answers the Parameters.
    let r = server
        .get(&format!("Patient/{pid}/$risk-score"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let p = json_of(r);
    assert_eq!(param(&p, "score")["valueDecimal"], 0.6);
    let seen = service.last.lock().clone().unwrap();
    assert_eq!(
        (seen.method.as_str(), service.hits.load(Ordering::SeqCst)),
        ("POST", 1)
    );
    assert!(seen
        .headers
        .iter()
        .any(|(k, v)| k == "x-api-key" && v == "secret"));
    assert!(seen.body.contains(&pid));
    // JavaScript, the bare function form: an object becomes JSON.
    let r = server
        .get(&format!("Patient/{pid}/$summary"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let s = json_of(r);
    assert_eq!(s["name"], "Portal");
    assert_eq!(s["observations"], 1);
    // Internal: the built-in healthcheck, under the App's name.
    let h = json_of(server.get("$health").send().unwrap());
    assert_eq!(param(&h, "status")["valueCode"], "ok");
    // A named query.
    let b = json_of(
        server
            .get("Patient?_query=by-family&family=Portal")
            .send()
            .unwrap(),
    );
    assert_eq!(b["type"], "searchset");
    assert_eq!(b["total"], 1);
    // Listed, with synthesised definitions readable by id.
    let defs = json_of(
        server
            .get("OperationDefinition?code=risk-score")
            .send()
            .unwrap(),
    );
    assert_eq!(defs["entry"].as_array().map(Vec::len), Some(1), "{defs}");
    // write operations are POST only.
    let mut with_write = app.clone();
    with_write["id"] = json!(app_id);
    with_write["operations"].as_array_mut().unwrap().push(json!(
        {"name": "touch", "type": "write", "resourceType": "Patient",
         "handler": {"type": "javascript", "code": "exports.handler = async (c, e) => ({ ok: true })"}}));
    assert_eq!(
        server.put(&format!("App/{app_id}"), &with_write).status(),
        200
    );
    outcome(
        server.get(&format!("Patient/{pid}/$touch")).send().unwrap(),
        405,
    );
    assert_eq!(
        server
            .post(&format!("Patient/{pid}/$touch"), &json!({}))
            .status(),
        200
    );
    // Retired: nothing is served any more, and the definitions are gone.
    with_write["status"] = json!("retired");
    assert_eq!(
        server.put(&format!("App/{app_id}"), &with_write).status(),
        200
    );
    outcome(
        server
            .get(&format!("Patient/{pid}/$summary"))
            .send()
            .unwrap(),
        400,
    );
    let defs = json_of(
        server
            .get("OperationDefinition?code=risk-score")
            .send()
            .unwrap(),
    );
    assert_eq!(defs["total"], 0, "{defs}");
    let active = json_of(server.get("App?status=active").send().unwrap());
    assert_eq!(active["total"], 0);
}

#[test]
fn a_bad_app_is_refused_naming_the_element() {
    let server = Server::start();
    let base = json!({"resourceType": "App", "name": "bad", "status": "active",
        "operations": [{"name": "x", "type": "read", "resourceType": "Patient",
                        "handler": {"type": "http", "url": "http://127.0.0.1:9/x"}}]});
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/status", json!("live"), "App.status"),
        (
            "/operations/0/type",
            json!("poke"),
            "App.operations[0].type",
        ),
        (
            "/operations/0/resourceType",
            json!("Pationt"),
            "App.operations[0].resourceType",
        ),
        (
            "/operations/0/handler/url",
            json!("ftp://x"),
            "App.operations[0].handler.url",
        ),
        (
            "/operations/0/handler",
            json!({"type": "internal", "name": "no-such-op"}),
            "App.operations[0].handler.name",
        ),
        (
            "/operations/0/handler",
            json!({"type": "javascript", "code": "exports.handler = ("}),
            "App.operations[0].handler.code",
        ),
        (
            "/operations/0/name",
            json!("has space"),
            "App.operations[0].name",
        ),
        // The built-in $validate answers on every type: a Patient one would hide it there.
        (
            "/operations/0/name",
            json!("validate"),
            "App.operations[0].name",
        ),
        (
            "/subscriptions",
            json!([{"resourceType": "Observation", "events": ["create"],
            "filter": {"valueQuantity.value": {"above": 1}}, "handler": {"type": "webhook", "url": "http://127.0.0.1:9/h"}}]),
            "App.subscriptions[0].filter.valueQuantity.value",
        ),
        (
            "/subscriptions",
            json!([{"resourceType": "Observation", "events": ["touch"],
            "handler": {"type": "webhook", "url": "http://127.0.0.1:9/h"}}]),
            "App.subscriptions[0].events[0]",
        ),
        (
            "/subscriptions",
            json!([{"resourceType": "Observation",
            "filter": "Observation.value >", "handler": {"type": "webhook", "url": "http://127.0.0.1:9/h"}}]),
            "App.subscriptions[0].filter",
        ),
    ];
    for (pointer, value, element) in cases {
        let mut app = base.clone();
        if let Some(slot) = app.pointer_mut(pointer) {
            *slot = value;
        } else {
            app[&pointer[1..]] = value;
        }
        let oo = outcome(server.post("App", &app), 400);
        assert!(oo.to_string().contains(element), "{pointer}: {oo}");
    }
    // Two Apps cannot serve the same operation at the same place.
    server.create(&base);
    let oo = outcome(server.post("App", &base), 400);
    assert!(oo.to_string().contains("already served"), "{oo}");
    // Nor may an App take a built-in's place.
    let mut clash = base.clone();
    clash["operations"][0]["name"] = json!("everything");
    outcome(server.post("App", &clash), 400);
}

#[test]
fn http_handler_failures_are_clear_outcomes() {
    let service = Service::start(|r| {
        match r.path.as_str() {
        "/fail" => (500, "boom".into(), Duration::ZERO),
        "/refuse" => (
            422,
            json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "business-rule", "diagnostics": "too young"}]}).to_string(),
            Duration::ZERO,
        ),
        "/slow" => (200, "{}".into(), Duration::from_secs(3)),
        _ => (200, "not json".into(), Duration::ZERO),
    }
    });
    let server = Server::start_limited(app_limits(1000, Duration::from_secs(1)));
    let op = |name: &str, url: String| {
        json!({"name": name, "type": "execute",
        "handler": {"type": "http", "url": url}})
    };
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/x", dead.local_addr().unwrap());
    drop(dead);
    server.create(
        &json!({"resourceType": "App", "name": "failing", "status": "active", "operations": [
            op("fail", format!("{}/fail", service.url)),
            op("refuse", format!("{}/refuse", service.url)),
            op("slow", format!("{}/slow", service.url)),
            op("garbled", format!("{}/garbled", service.url)),
            op("dead", dead_url),
        ]}),
    );
    let call =
        |name: &str| server.post(&format!("${name}"), &json!({"resourceType": "Parameters"}));
    let oo = outcome(call("fail"), 502);
    assert!(oo.to_string().contains("answered 500"), "{oo}");
    let oo = outcome(call("refuse"), 422);
    assert!(oo.to_string().contains("too young"), "{oo}");
    let started = Instant::now();
    outcome(call("slow"), 504);
    assert!(started.elapsed() < Duration::from_millis(2900));
    outcome(call("garbled"), 502);
    let oo = outcome(call("dead"), 502);
    assert!(oo.to_string().contains("cannot be reached"), "{oo}");
}

#[test]
fn the_sandbox_enforces_its_limits_and_keeps_serving() {
    let server = Server::start_limited(app_limits(300, Duration::from_secs(3)));
    let pid = patient(&server, "Limits", "1990-01-01");
    let js = |name: &str, code: &str| {
        json!({"name": name, "type": "execute",
        "handler": {"type": "javascript", "code": code}})
    };
    server.create(&json!({"resourceType": "App", "name": "abuse", "status": "active", "operations": [
        js("loop", "exports.handler = async () => { while (true) {} }"),
        js("catchloop", "exports.handler = async () => { for (;;) { try { throw 1 } catch (e) {} } }"),
        js("memory", "exports.handler = async () => { const a = []; for (;;) a.push(new Array(100000).fill(1)); }"),
        js("string", "exports.handler = async () => { let s = 'x'; for (;;) s += s; }"),
        js("recurse", "exports.handler = async () => { function f(n) { return f(n + 1) + 1 } return f(0) }"),
        js("forever", "exports.handler = () => new Promise(() => {})"),
        js("throws", "exports.handler = async () => { throw new Error('kaput') }"),
        js("throws-outcome", "exports.handler = async () => { throw { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found', diagnostics: 'no such thing' }] } }"),
        js("returns-outcome", "exports.handler = async () => ({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'forbidden', diagnostics: 'not you' }] })"),
        js("leak-set", "exports.handler = async () => { globalThis.secret = 'mine'; Object.prototype.polluted = 1; return { set: true } }"),
        js("leak-get", "exports.handler = async () => ({ secret: typeof globalThis.secret, polluted: typeof ({}).polluted, fetch: typeof fetch, require: typeof process })"),
    ]}));
    let call = |name: &str| server.post(&format!("${name}"), &json!({}));
    for name in ["loop", "catchloop"] {
        let started = Instant::now();
        let oo = outcome(call(name), 500);
        assert!(oo.to_string().contains("limit"), "{name}: {oo}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{name} took {:?}",
            started.elapsed()
        );
    }
    for name in ["memory", "string"] {
        let oo = outcome(call(name), 500);
        assert!(oo.to_string().contains("memory limit"), "{name}: {oo}");
    }
    let oo = outcome(call("recurse"), 500);
    assert!(oo.to_string().contains("stack"), "{oo}");
    let oo = outcome(call("forever"), 500);
    assert!(oo.to_string().contains("never settles"), "{oo}");
    let oo = outcome(call("throws"), 500);
    assert!(oo.to_string().contains("kaput"), "{oo}");
    let oo = outcome(call("throws-outcome"), 404);
    assert!(oo.to_string().contains("no such thing"), "{oo}");
    let oo = outcome(call("returns-outcome"), 403);
    assert!(oo.to_string().contains("not you"), "{oo}");
    // Nothing leaks from one invocation to the next.
    assert_eq!(call("leak-set").status(), 200);
    let seen = json_of(call("leak-get"));
    assert_eq!(
        seen,
        json!({"secret": "undefined", "polluted": "undefined", "fetch": "undefined", "require": "undefined"})
    );
    // Reads were served throughout, and still are.
    assert_eq!(
        server
            .get(&format!("Patient/{pid}"))
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn hot_deploy_under_load_never_shows_a_half_state() {
    let server = Arc::new(Server::start());
    let bot = server.create(&json!({"resourceType": "Bot", "name": "versioned"}));
    assert_eq!(
        deploy(&server, &bot, "exports.handler = async () => ({ v: 1 })").status(),
        200
    );
    server.create(&json!({
        "resourceType": "OperationDefinition",
        "extension": [{"url": MEDPLUM, "valueReference": {"reference": format!("Bot/{bot}")}}],
        "name": "version", "status": "active", "kind": "operation", "code": "version",
        "system": true, "type": false, "instance": false, "affectsState": false,
    }));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for _ in 0..4 {
        let (server, stop, seen) = (Arc::clone(&server), Arc::clone(&stop), Arc::clone(&seen));
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let r = server.get("$version").send().unwrap();
                assert_eq!(r.status(), 200);
                let v: Value = r.json().unwrap();
                seen.lock().push(v["v"].as_i64().unwrap());
            }
        }));
    }
    for v in 2..=6 {
        let code = format!("exports.handler = async () => ({{ v: {v} }})");
        assert_eq!(deploy(&server, &bot, &code).status(), 200);
        // From the deploy's answer on, every request sees the new code.
        for _ in 0..5 {
            let now: Value = server.get("$version").send().unwrap().json().unwrap();
            assert_eq!(now["v"], v);
        }
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let seen = seen.lock();
    assert!(seen.iter().all(|v| (1..=6).contains(v)));
}

#[test]
fn every_invocation_is_audited() {
    let server = Server::start();
    let pid = patient(&server, "Audit", "1980-01-01");
    server.create(&json!({"resourceType": "App", "name": "audited", "status": "active", "operations": [
        {"name": "ok", "type": "read", "resourceType": "Patient",
         "handler": {"type": "javascript", "code": "exports.handler = async (c, e) => ({ id: e.target.id })"}},
        {"name": "bad", "type": "read", "resourceType": "Patient",
         "handler": {"type": "javascript", "code": "exports.handler = async () => { throw new Error('no') }"}}
    ]}));
    for _ in 0..3 {
        assert_eq!(
            server
                .get(&format!("Patient/{pid}/$ok"))
                .send()
                .unwrap()
                .status(),
            200
        );
    }
    outcome(
        server.get(&format!("Patient/{pid}/$bad")).send().unwrap(),
        500,
    );
    server.engine().flush_audit();
    let b = json_of(server.get("AuditEvent?action=E&_count=50").send().unwrap());
    let events: Vec<&Value> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    assert_eq!(events.len(), 4, "{b}");
    let failed: Vec<_> = events.iter().filter(|e| e["outcome"] == "8").collect();
    assert_eq!(failed.len(), 1);
    let e = events.iter().find(|e| e["outcome"] == "0").unwrap();
    assert_eq!(
        e["entity"][0]["what"]["reference"],
        format!("Patient/{pid}")
    );
    assert!(e["entity"][1]["what"]["reference"]
        .as_str()
        .unwrap()
        .contains("/_history/"));
    assert!(e["agent"][1]["who"]["reference"]
        .as_str()
        .unwrap()
        .starts_with("App/"));
}

#[test]
fn apps_can_be_turned_off() {
    let mut limits = Limits::default();
    limits.apps.enabled = false;
    let server = Server::start_limited(limits);
    server.create(
        &json!({"resourceType": "App", "name": "off", "status": "active", "operations": [
        {"name": "hello", "type": "execute",
         "handler": {"type": "javascript", "code": "exports.handler = async () => 1"}}]}),
    );
    outcome(server.post("$hello", &json!({})), 400);
}

#[test]
fn a_scripts_writes_commit_together_or_not_at_all() {
    let server = Server::start();
    let pid = patient(&server, "Txn", "1990-01-01");
    let js = |name: &str, code: &str| {
        json!({"name": name, "type": "write", "resourceType": "Patient",
        "handler": {"type": "javascript", "code": code}})
    };
    server.create(&json!({"resourceType": "App", "name": "txn", "status": "active", "operations": [
        js("flag", r#"exports.handler = async (client, event) => {
            const p = event.target.resource;
            const flag = await client.createResource({ resourceType: 'Flag', status: 'active',
                code: { text: 'checked' }, subject: { reference: 'Patient/' + p.id } });
            const again = await client.readResource('Flag', flag.id);
            await client.patchResource('Flag', flag.id, [{ op: 'replace', path: '/code/text', value: 'rechecked' }]);
            const patched = await client.readResource('Flag', flag.id);
            p.active = true;
            const updated = await client.updateResource(p);
            const gone = await client.createResource({ resourceType: 'Flag', status: 'active', code: { text: 'temp' },
                subject: { reference: 'Patient/' + p.id } });
            await client.deleteResource('Flag', gone.id);
            if (event.input.fail) { throw new Error('changed my mind'); }
            return { flag: flag.id, read: again.id, text: patched.code.text, version: updated.meta.versionId };
        }"#),
    ]}));
    // A failure after the writes: none of them happened.
    let oo = outcome(
        server.post(&format!("Patient/{pid}/$flag"), &json!({"fail": true})),
        500,
    );
    assert!(oo.to_string().contains("changed my mind"), "{oo}");
    let flags = json_of(server.get("Flag").send().unwrap());
    assert_eq!(flags["total"], 0, "{flags}");
    let p = json_of(server.get(&format!("Patient/{pid}")).send().unwrap());
    assert_eq!(p["meta"]["versionId"], "1");
    // Success: all of them, and the script read its own writes.
    let r = server.post(&format!("Patient/{pid}/$flag"), &json!({}));
    assert_eq!(r.status(), 200);
    let answer = json_of(r);
    assert_eq!(answer["read"], answer["flag"]);
    assert_eq!(answer["text"], "rechecked");
    assert_eq!(answer["version"], "2");
    let flags = json_of(server.get("Flag").send().unwrap());
    assert_eq!(flags["total"], 1, "{flags}");
    assert_eq!(flags["entry"][0]["resource"]["code"]["text"], "rechecked");
    let p = json_of(server.get(&format!("Patient/{pid}")).send().unwrap());
    assert_eq!(
        (p["meta"]["versionId"].as_str(), p["active"].as_bool()),
        (Some("2"), Some(true))
    );
}

/// A script that writes a resource twice commits on the version it first read: when someone
/// else changed the resource meanwhile, the invocation fails and nothing of it is written.
#[test]
fn a_scripts_commit_keeps_the_version_it_read() {
    let server = Server::start();
    let pid = patient(&server, "Race", "1990-01-01");
    server.create(&json!({"resourceType": "App", "name": "race", "status": "active", "operations": [
        {"name": "twice", "type": "write", "resourceType": "Patient",
         "handler": {"type": "javascript", "code": r#"exports.handler = async (client, event) => {
            const p = await client.readResource('Patient', event.target.id);
            p.gender = 'female';
            await client.updateResource(p);
            // A batch commits on its own: another writer, as far as this script's writes go.
            await client.executeBatch({ resourceType: 'Bundle', type: 'batch', entry: [{
                resource: { resourceType: 'Patient', id: p.id, active: false },
                request: { method: 'PUT', url: 'Patient/' + p.id } }] });
            p.gender = 'male';
            await client.updateResource(p);
            return { done: true };
        }"#}}
    ]}));
    let r = server.post(&format!("Patient/{pid}/$twice"), &json!({}));
    assert!(
        matches!(r.status().as_u16(), 409 | 412),
        "{} {}",
        r.status(),
        r.text().unwrap_or_default()
    );
    let p = json_of(server.get(&format!("Patient/{pid}")).send().unwrap());
    // The batch's version stands; the script's writes did not overwrite it.
    assert_eq!(p["meta"]["versionId"], "2");
    assert_eq!(p["active"], false);
    assert!(p.get("gender").is_none(), "{p}");
}

/// A script may not stage more than 10,000 writes in its transaction: the call past that is
/// refused, the invocation ends with a 422, and nothing it staged is written.
#[test]
fn a_scripts_transaction_is_bounded() {
    let server = Server::start();
    server.create(
        &json!({"resourceType": "App", "name": "flood", "status": "active", "operations": [
            {"name": "flood", "type": "execute",
             "handler": {"type": "javascript", "code": r#"exports.handler = async (client) => {
            for (let i = 0; i < 20000; i++) {
                await client.createResource({ resourceType: 'Basic', code: { text: 'n' + i } });
            }
            return { done: true };
        }"#}}
        ]}),
    );
    let oo = outcome(
        server.post("$flood", &json!({"resourceType": "Parameters"})),
        422,
    );
    assert!(oo.to_string().contains("at most 10000"), "{oo}");
    let basics = json_of(server.get("Basic?_summary=count").send().unwrap());
    assert_eq!(basics["total"], 0, "{basics}");
}

/// An HTTP handler reaches an https service whose certificate chains to a configured root, and
/// a server trusting only the built-in roots refuses that service with a clear 502.
#[test]
fn https_services_are_reached_through_the_configured_roots() {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Flint test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let service = Service::start_tls(
        vec![leaf.der().clone(), ca.der().clone()],
        leaf_key.serialize_der(),
        |r| {
            let body: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            (
                200,
                json!({"resourceType": "Parameters", "parameter": [
                    {"name": "score", "valueDecimal": 0.7},
                    {"name": "operation", "valueString": body["operation"]}
                ]})
                .to_string(),
                Duration::ZERO,
            )
        },
    );
    assert!(service.url.starts_with("https://127.0.0.1:"));
    let app = json!({"resourceType": "App", "name": "tls", "status": "active", "operations": [
        {"name": "remote-score", "type": "execute",
         "handler": {"type": "http", "url": format!("{}/score", service.url)}}
    ]});

    let mut limits = Limits::default();
    limits.apps.trusted_roots_pem = Some(ca.pem());
    let server = Server::start_limited(limits);
    server.create(&app);
    let r = server.post("$remote-score", &json!({"resourceType": "Parameters"}));
    assert_eq!(r.status(), 200);
    let body = json_of(r);
    assert_eq!(param(&body, "score")["valueDecimal"], json!(0.7));
    assert_eq!(param(&body, "operation")["valueString"], "remote-score");
    assert_eq!(service.hits.load(Ordering::SeqCst), 1);

    // The built-in roots do not know the test CA: the handshake fails, the client gets a 502.
    let plain = Server::start();
    plain.create(&app);
    let r = plain.post("$remote-score", &json!({"resourceType": "Parameters"}));
    assert_eq!(r.status(), 502);
    let text = r.text().unwrap();
    assert!(
        text.to_ascii_lowercase().contains("certificate") || text.contains("tls"),
        "{text}"
    );
    assert_eq!(service.hits.load(Ordering::SeqCst), 1);
}

#[test]
fn trusted_roots_are_checked() {
    assert!(flint_engine::custom::check_trusted_roots("not pem").is_err());
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["x.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    assert_eq!(
        flint_engine::custom::check_trusted_roots(&format!("{}{}", cert.pem(), cert.pem())),
        Ok(2)
    );
}
