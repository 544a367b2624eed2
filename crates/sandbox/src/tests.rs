//! Unit tests of the whole crate through its public API (the integration tests in
//! `tests/` cover the limits and the pool).

use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::*;

/// A host that records requests and answers from a closure.
pub(crate) struct TestHost {
    pub requests: Mutex<Vec<HostRequest>>,
    pub logs: Mutex<Vec<(LogLevel, String)>>,
    #[allow(clippy::type_complexity)]
    pub answer: Box<dyn Fn(&HostRequest) -> HostResponse + Send + Sync>,
}

impl TestHost {
    pub fn new(
        answer: impl Fn(&HostRequest) -> HostResponse + Send + Sync + 'static,
    ) -> Arc<TestHost> {
        Arc::new(TestHost {
            requests: Mutex::new(Vec::new()),
            logs: Mutex::new(Vec::new()),
            answer: Box::new(answer),
        })
    }

    pub fn echo() -> Arc<TestHost> {
        TestHost::new(|r| HostResponse {
            status: 200,
            body: Some(json!({"method": r.method, "url": r.url, "body": r.body})),
        })
    }
}

impl Host for TestHost {
    fn request(&self, request: HostRequest) -> HostResponse {
        let response = (self.answer)(&request);
        self.requests.lock().push(request);
        response
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.logs.lock().push((level, message.to_string()));
    }
}

fn sandbox() -> Sandbox {
    Sandbox::new(Limits {
        workers: 1,
        ..Limits::default()
    })
}

fn run_code(sb: &Sandbox, code: &str, event: Value) -> Result<Option<Value>, RunError> {
    let script = sb
        .compile("test.js", code)
        .unwrap_or_else(|e| panic!("compile: {e}"));
    sb.run(&script, Invocation::new(event, TestHost::echo()))
}

fn ok(sb: &Sandbox, code: &str, event: Value) -> Value {
    match run_code(sb, code, event) {
        Ok(Some(v)) => v,
        other => panic!("unexpected {other:?} for {code}"),
    }
}

#[test]
fn shapes_are_detected() {
    let sb = sandbox();
    let cases: &[(&str, Shape)] = &[
        ("exports.handler = async function (client, event) { return event.n + 1 }", Shape::Handler),
        ("module.exports.handler = async (client, event) => event.n + 1;", Shape::Handler),
        ("module.exports = async (client, event) => event.n + 1;", Shape::Handler),
        ("'use strict';\nObject.defineProperty(exports, '__esModule', { value: true });\nexports.handler = handler;\nasync function handler(m, e) { return e.n + 1 }", Shape::Handler),
        ("async function handler(medplum, event) { return event.n + 1 }", Shape::Handler),
        ("export async function handler(medplum, event) { return event.n + 1 }", Shape::Handler),
        ("export const handler = async (m, e) => e.n + 1;", Shape::Handler),
        ("export default async function (m, e) { return e.n + 1 }", Shape::Handler),
        ("import { allOk } from '@medplum/core';\nexport async function handler(m, e) { return allOk.id ? e.n + 1 : 0 }", Shape::Handler),
    ];
    for (code, shape) in cases {
        let script = sb
            .compile("t.js", code)
            .unwrap_or_else(|e| panic!("{code}: {e}"));
        assert_eq!(script.shape(), *shape, "{code}");
        let out = sb
            .run(&script, Invocation::new(json!({"n": 1}), TestHost::echo()))
            .unwrap_or_else(|e| panic!("{code}: {e}"));
        assert_eq!(out, Some(json!(2)), "{code}");
    }
}

#[test]
fn esbuild_commonjs_output_runs() {
    let sb = sandbox();
    let code = r#""use strict";
var __defProp = Object.defineProperty;
var __getOwnPropDesc = Object.getOwnPropertyDescriptor;
var __getOwnPropNames = Object.getOwnPropertyNames;
var __hasOwnProp = Object.prototype.hasOwnProperty;
var __export = (target, all) => {
  for (var name in all)
    __defProp(target, name, { get: all[name], enumerable: true });
};
var __copyProps = (to, from, except, desc) => {
  if (from && typeof from === "object" || typeof from === "function") {
    for (let key of __getOwnPropNames(from))
      if (!__hasOwnProp.call(to, key) && key !== except)
        __defProp(to, key, { get: () => from[key], enumerable: !(desc = __getOwnPropDesc(from, key)) || desc.enumerable });
  }
  return to;
};
var __toCommonJS = (mod) => __copyProps(__defProp({}, "__esModule", { value: true }), mod);
var index_exports = {};
__export(index_exports, {
  handler: () => handler
});
module.exports = __toCommonJS(index_exports);
var import_core = require("@medplum/core");
async function handler(medplum, event) {
  const patient = await medplum.readResource("Patient", event.input.id);
  return (0, import_core.createReference)(patient);
}
"#;
    let script = sb.compile("bot.js", code).unwrap();
    assert_eq!(script.shape(), Shape::Handler);
    let host = TestHost::new(|_| HostResponse {
        status: 200,
        body: Some(
            json!({"resourceType": "Patient", "id": "p1", "name": [{"given": ["Ann"], "family": "Lee"}]}),
        ),
    });
    let out = sb
        .run(
            &script,
            Invocation::new(json!({"input": {"id": "p1"}}), host.clone()),
        )
        .unwrap();
    assert_eq!(
        out,
        Some(json!({"reference": "Patient/p1", "display": "Ann Lee"}))
    );
    assert_eq!(host.requests.lock()[0].url, "Patient/p1");
}

#[test]
fn function_shape_gets_subject_and_context() {
    let sb = sandbox();
    for code in [
        "function (resource, context) { return { id: resource.id, n: context.n, hasClient: typeof context.client.readResource } }",
        "async function(resource, context) { return { id: resource.id, n: context.n, hasClient: typeof context.client.readResource } };",
        "(resource, context) => ({ id: resource.id, n: context.n, hasClient: typeof context.client.readResource })",
        "// transform\nasync (resource, context) => {\n  return { id: resource.id, n: context.n, hasClient: typeof context.client.readResource };\n}\n",
    ] {
        let script = sb.compile("f.js", code).unwrap_or_else(|e| panic!("{code}: {e}"));
        assert_eq!(script.shape(), Shape::Function, "{code}");
        let mut inv = Invocation::new(json!({"n": 5}), TestHost::echo());
        inv.subject = json!({"resourceType": "Patient", "id": "x"}).into();
        let out = sb.run(&script, inv).unwrap();
        assert_eq!(out, Some(json!({"id": "x", "n": 5, "hasClient": "function"})), "{code}");
    }
}

#[test]
fn syntax_errors_report_user_lines() {
    let sb = sandbox();
    let cases: &[(&str, u32)] = &[
        ("exports.handler = async (c, e) => {\n  let x = ;\n  return x;\n};", 2),
        ("export async function handler(m, e) {\n  return 1 +;\n}", 2),
        ("import { allOk } from '@medplum/core';\n\nexport async function handler(m, e) {\n  return )\n}", 4),
        ("function (resource, context) {\n  const a = 1;\n  return a +* 2;\n}", 3),
        ("async (resource, context) => {\n\n\n  if (x {\n}", 4),
        ("exports.handler = async () => { return 1 ++ }", 1),
    ];
    for (code, line) in cases {
        let err = sb.compile("t.js", code).expect_err(code);
        assert_eq!(err.line, Some(*line), "{code}: {err}");
        assert!(
            err.to_string().starts_with(&format!("line {line}: ")),
            "{err}"
        );
    }
    // Column on the first line is relative to the user's code, not the wrapper.
    let err = sb.compile("t.js", "exports.handler = ) ;").unwrap_err();
    assert_eq!(err.line, Some(1));
    let col = err.column.expect("column");
    assert!((17..=20).contains(&col), "column {col}");
}

#[test]
fn missing_handler_and_unknown_modules_are_compile_errors() {
    let sb = sandbox();
    for code in [
        "const x = 1;",
        "exports.foo = () => 1;",
        "export const x = 1;",
        "module.exports = 42;",
    ] {
        let err = sb.compile("t.js", code).expect_err(code);
        assert!(err.message.contains("defines no handler"), "{code}: {err}");
    }
    let err = sb
        .compile(
            "t.js",
            "import fs from 'fs';\nexport async function handler() {}",
        )
        .unwrap_err();
    assert!(
        err.message
            .contains("module 'fs' is not available in the sandbox"),
        "{err}"
    );
    let err = sb
        .compile(
            "t.js",
            "const fs = require('fs');\nexports.handler = async () => 1;",
        )
        .unwrap_err();
    assert!(
        err.message
            .contains("module 'fs' is not available in the sandbox"),
        "{err}"
    );
    assert_eq!(err.line, Some(1), "{err}");
    let big = "x".repeat(3 * 1024 * 1024);
    let err = sb.compile("t.js", &big).unwrap_err();
    assert!(err.message.contains("limit"), "{err}");
}

#[test]
fn forbidden_globals_are_absent() {
    let sb = sandbox();
    let code = r#"exports.handler = async () => {
        const names = ['std', 'os', 'process', 'fetch', 'XMLHttpRequest', 'setTimeout', 'setInterval',
          'clearTimeout', 'setImmediate', 'require', 'module', 'Deno', 'Bun', 'print', 'scriptArgs',
          'WebSocket', 'Worker', 'performance', 'global', 'Buffer', 'importScripts', 'gc'];
        const present = names.filter((n) => typeof globalThis[n] !== 'undefined');
        let fsError = null;
        try { require('fs'); } catch (e) { fsError = e.message; }
        let childError = null;
        try { require('child_process'); } catch (e) { childError = e.message; }
        let dyn = null;
        try { await import('os'); } catch (e) { dyn = e.message; }
        return { present, fsError, childError, dyn,
          typeofStd: typeof std, typeofOs: typeof os, typeofProcess: typeof process,
          typeofSetTimeout: typeof setTimeout, typeofFetch: typeof fetch };
    }"#;
    let out = ok(&sb, code, json!({}));
    assert_eq!(out["present"], json!([]), "{out}");
    assert_eq!(
        out["fsError"],
        json!("module 'fs' is not available in the sandbox")
    );
    assert_eq!(
        out["childError"],
        json!("module 'child_process' is not available in the sandbox")
    );
    assert_eq!(
        out["dyn"],
        json!("module 'os' is not available in the sandbox")
    );
    for k in [
        "typeofStd",
        "typeofOs",
        "typeofProcess",
        "typeofSetTimeout",
        "typeofFetch",
    ] {
        assert_eq!(out[k], json!("undefined"), "{k}");
    }
}

#[test]
fn safe_globals_work() {
    let sb = sandbox();
    let code = r#"exports.handler = async () => {
        const u = new URL('https://Example.org:443/a/./b/../c?x=1&y=two%20words#frag');
        u.searchParams.append('z', 'a b&c');
        const rel = new URL('../d?q=1', 'http://h.test/a/b/c');
        const p = new URLSearchParams({ name: 'Ann Lee', _count: 2 });
        p.append('name', 'x=y');
        const iter = [];
        for (const [k, v] of p) iter.push(k + ':' + v);
        const bytes = new TextEncoder().encode('héllo €𝄞');
        const back = new TextDecoder().decode(bytes);
        const bad = new TextDecoder().decode(new Uint8Array([0x61, 0xff, 0x62, 0xe2, 0x82]));
        const uuid = crypto.randomUUID();
        const rnd = crypto.getRandomValues(new Uint8Array(8));
        return {
          href: u.href, host: u.host, hostname: u.hostname, port: u.port, pathname: u.pathname,
          search: u.search, hash: u.hash, origin: u.origin, protocol: u.protocol,
          y: u.searchParams.get('y'), rel: rel.href, params: p.toString(), all: p.getAll('name'),
          has: p.has('_count'), iter, bytes: Array.from(bytes), back, bad,
          uuidOk: /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(uuid),
          rndLen: rnd.length, b64: btoa('hi there'), unb64: atob('aGkgdGhlcmU='),
          map: new Map([[1, 2]]).get(1), date: new Date(0).toISOString(), json: JSON.parse('{"a":[1]}').a[0],
          big: typeof 10n, typed: new Float64Array([1.5])[0],
        };
    }"#;
    let out = ok(&sb, code, json!({}));
    assert_eq!(
        out["href"],
        json!("https://example.org/a/c?x=1&y=two+words&z=a+b%26c#frag")
    );
    assert_eq!(out["host"], json!("example.org"));
    assert_eq!(out["port"], json!(""));
    assert_eq!(out["pathname"], json!("/a/c"));
    assert_eq!(out["search"], json!("?x=1&y=two+words&z=a+b%26c"));
    assert_eq!(out["hash"], json!("#frag"));
    assert_eq!(out["origin"], json!("https://example.org"));
    assert_eq!(out["protocol"], json!("https:"));
    assert_eq!(out["y"], json!("two words"));
    assert_eq!(out["rel"], json!("http://h.test/a/d?q=1"));
    assert_eq!(out["params"], json!("name=Ann+Lee&_count=2&name=x%3Dy"));
    assert_eq!(out["all"], json!(["Ann Lee", "x=y"]));
    assert_eq!(out["has"], json!(true));
    assert_eq!(out["iter"], json!(["name:Ann Lee", "_count:2", "name:x=y"]));
    assert_eq!(out["back"], json!("héllo €𝄞"));
    assert_eq!(out["bytes"].as_array().unwrap().len(), 14);
    assert_eq!(out["bad"], json!("a\u{fffd}b\u{fffd}"));
    assert_eq!(out["uuidOk"], json!(true));
    assert_eq!(out["rndLen"], json!(8));
    assert_eq!(out["b64"], json!("aGkgdGhlcmU="));
    assert_eq!(out["unb64"], json!("hi there"));
    assert_eq!(out["map"], json!(2));
    assert_eq!(out["date"], json!("1970-01-01T00:00:00.000Z"));
    assert_eq!(out["json"], json!(1));
    assert_eq!(out["big"], json!("bigint"));
    assert_eq!(out["typed"], json!(1.5));
}

#[test]
fn console_goes_to_host_log() {
    let sb = sandbox();
    let script = sb
        .compile(
            "t.js",
            "exports.handler = async () => { console.log('a', {b: 1}, 3, [1,'x'], undefined, null); console.warn('w'); console.error(new Error('boom')); console.debug('d'); }",
        )
        .unwrap();
    let host = TestHost::echo();
    let out = sb
        .run(&script, Invocation::new(json!({}), host.clone()))
        .unwrap();
    assert_eq!(out, None);
    let logs = host.logs.lock();
    assert_eq!(
        logs[0],
        (
            LogLevel::Info,
            "a {\"b\":1} 3 [1,\"x\"] undefined null".to_string()
        )
    );
    assert_eq!(logs[1], (LogLevel::Warn, "w".to_string()));
    assert_eq!(logs[2].0, LogLevel::Error);
    assert!(logs[2].1.starts_with("Error: boom"), "{}", logs[2].1);
    assert_eq!(logs[3], (LogLevel::Debug, "d".to_string()));
}

#[test]
fn client_methods_make_the_right_requests() {
    let sb = sandbox();
    let host = TestHost::new(|r| {
        let body = match (r.method.as_str(), r.url.as_str()) {
            (_, u) if u.starts_with("Patient?") || u.starts_with("Observation?") => Some(json!({
                "resourceType": "Bundle", "type": "searchset",
                "entry": [{"resource": {"resourceType": "Patient", "id": "1"}}, {"resource": {"resourceType": "Patient", "id": "2"}}]
            })),
            ("DELETE", _) => None,
            _ => Some(json!({"resourceType": "Patient", "id": "1", "echo": r.body})),
        };
        HostResponse {
            status: if body.is_some() { 200 } else { 204 },
            body,
        }
    });
    let code = r#"exports.handler = async (medplum, event) => {
        const out = {};
        out.read = (await medplum.readResource('Patient', '1')).id;
        out.ref = (await medplum.readReference({ reference: 'Patient/1' })).id;
        await medplum.readVersion('Patient', '1', '2');
        await medplum.readHistory('Patient', '1');
        const b = await medplum.search('Patient', { name: 'Ann Lee', _count: 2, identifier: ['a|1', 'b|2'] });
        out.bundleType = b.type;
        const list = await medplum.searchResources('Patient', 'name=x');
        out.listLen = list.length;
        out.listKeys = Object.keys(list);
        out.listBundle = list.bundle.type;
        out.one = (await medplum.searchOne('Patient', new URLSearchParams([['name', 'y']]))).id;
        await medplum.search('Observation', [['code', 'x'], ['code', 'y']]);
        out.created = (await medplum.createResource({ resourceType: 'Patient', active: true })).echo.active;
        await medplum.createResourceIfNoneExist({ resourceType: 'Patient' }, 'identifier=a|1');
        await medplum.updateResource({ resourceType: 'Patient', id: '1', active: false });
        await medplum.patchResource('Patient', '1', [{ op: 'replace', path: '/active', value: true }]);
        out.deleted = await medplum.deleteResource('Patient', '1');
        await medplum.executeBatch({ resourceType: 'Bundle', type: 'batch', entry: [] });
        await medplum.get('$healthcheck');
        await medplum.post(medplum.fhirUrl('Patient', '1', '$validate'), { resourceType: 'Patient' });
        await medplum.executeOperation('everything', { resourceType: 'Patient', id: '1', method: 'GET', parameters: { _count: 3 } });
        await medplum.executeOperation('$match', { resourceType: 'Patient', parameters: { onlyCertainMatches: true, count: 2 } });
        out.int = 3.0;
        return out;
    }"#;
    let script = sb.compile("bot.js", code).unwrap();
    let out = sb
        .run(&script, Invocation::new(json!({}), host.clone()))
        .unwrap()
        .unwrap();
    assert_eq!(out["read"], json!("1"));
    assert_eq!(out["ref"], json!("1"));
    assert_eq!(out["bundleType"], json!("searchset"));
    assert_eq!(out["listLen"], json!(2));
    assert_eq!(out["listKeys"], json!(["0", "1"]));
    assert_eq!(out["listBundle"], json!("searchset"));
    assert_eq!(out["one"], json!("1"));
    assert_eq!(out["created"], json!(true));
    assert_eq!(out.get("deleted"), None);
    assert_eq!(serde_json::to_string(&out["int"]).unwrap(), "3");
    let reqs = host.requests.lock();
    let summary: Vec<(String, String)> = reqs
        .iter()
        .map(|r| (r.method.clone(), r.url.clone()))
        .collect();
    let expect = [
        ("GET", "Patient/1"),
        ("GET", "Patient/1"),
        ("GET", "Patient/1/_history/2"),
        ("GET", "Patient/1/_history"),
        (
            "GET",
            "Patient?name=Ann+Lee&_count=2&identifier=a%7C1&identifier=b%7C2",
        ),
        ("GET", "Patient?name=x"),
        ("GET", "Patient?name=y&_count=1"),
        ("GET", "Observation?code=x&code=y"),
        ("POST", "Patient"),
        ("POST", "Patient"),
        ("PUT", "Patient/1"),
        ("PATCH", "Patient/1"),
        ("DELETE", "Patient/1"),
        ("POST", ""),
        ("GET", "$healthcheck"),
        ("POST", "Patient/1/$validate"),
        ("GET", "Patient/1/$everything?_count=3"),
        ("POST", "Patient/$match"),
    ];
    let expect: Vec<(String, String)> = expect
        .iter()
        .map(|(m, u)| (m.to_string(), u.to_string()))
        .collect();
    assert_eq!(summary, expect);
    let header = |i: usize, name: &str| {
        reqs[i]
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        header(9, "If-None-Exist").as_deref(),
        Some("identifier=a|1")
    );
    assert_eq!(
        header(11, "Content-Type").as_deref(),
        Some("application/json-patch+json")
    );
    assert_eq!(
        reqs[11].body,
        Some(json!([{"op": "replace", "path": "/active", "value": true}]))
    );
    assert_eq!(
        header(8, "Content-Type").as_deref(),
        Some("application/fhir+json")
    );
    assert_eq!(
        reqs[17].body,
        Some(json!({"resourceType": "Parameters", "parameter": [
            {"name": "onlyCertainMatches", "valueBoolean": true}, {"name": "count", "valueInteger": 2}]}))
    );
}

#[test]
fn host_errors_become_operation_outcome_errors() {
    let sb = sandbox();
    let host = TestHost::new(|r| match r.url.as_str() {
        "Patient/missing" => HostResponse {
            status: 404,
            body: Some(
                json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found", "diagnostics": "Patient/missing is not known"}]}),
            ),
        },
        _ => HostResponse {
            status: 500,
            body: None,
        },
    });
    let code = r#"const { OperationOutcomeError, normalizeErrorString } = require('@medplum/core');
exports.handler = async (medplum) => {
    let caught;
    try { await medplum.readResource('Patient', 'missing'); } catch (e) {
        caught = { isOOE: e instanceof OperationOutcomeError, message: e.message, code: e.outcome.issue[0].code, norm: normalizeErrorString(e) };
    }
    try { await medplum.get('boom'); } catch (e) { caught.other = e.message; }
    if (caught) return caught;
}"#;
    let script = sb.compile("t.js", code).unwrap();
    let out = sb
        .run(&script, Invocation::new(json!({}), host.clone()))
        .unwrap()
        .unwrap();
    assert_eq!(out["isOOE"], json!(true));
    assert_eq!(out["message"], json!("Patient/missing is not known"));
    assert_eq!(out["code"], json!("not-found"));
    assert_eq!(out["norm"], json!("Patient/missing is not known"));
    assert_eq!(out["other"], json!("HTTP 500"));

    // Uncaught: the outcome travels out in RunError::Thrown.
    let script = sb
        .compile(
            "t.js",
            "exports.handler = async (m) => {\n  await m.readResource('Patient', 'missing');\n}",
        )
        .unwrap();
    match sb.run(&script, Invocation::new(json!({}), host)) {
        Err(RunError::Thrown {
            message,
            outcome,
            line,
        }) => {
            assert_eq!(message, "Patient/missing is not known");
            assert_eq!(outcome.unwrap()["issue"][0]["code"], json!("not-found"));
            assert_eq!(line, Some(2));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn thrown_values_are_reported() {
    let sb = sandbox();
    let cases: &[(&str, &str, bool, Option<u32>)] = &[
        ("exports.handler = async () => {\n  throw new Error('nope');\n}", "nope", false, Some(2)),
        ("exports.handler = () => {\n\n  null.x;\n}", "TypeError: cannot read property 'x' of null", false, Some(3)),
        ("exports.handler = async () => { throw 'text' }", "text", false, None),
        ("exports.handler = async () => { throw {resourceType: 'OperationOutcome', issue: [{severity: 'error', code: 'invalid', details: {text: 'bad input'}}]} }", "bad input", true, None),
        ("const { OperationOutcomeError, badRequest } = require('@medplum/core');\nexports.handler = async () => {\n  throw new OperationOutcomeError(badRequest('missing x'));\n}", "missing x", true, Some(3)),
        ("export async function handler() {\n  await null;\n  throw new RangeError('r');\n}", "RangeError: r", false, Some(3)),
        ("exports.handler = () => Promise.reject(new Error('rejected'))", "rejected", false, Some(1)),
    ];
    for (code, message, has_outcome, line) in cases {
        match run_code(&sb, code, json!({})) {
            Err(RunError::Thrown {
                message: m,
                outcome,
                line: l,
            }) => {
                assert!(m.starts_with(message), "{code}: {m}");
                assert_eq!(outcome.is_some(), *has_outcome, "{code}");
                assert_eq!(l, *line, "{code}");
            }
            other => panic!("{code}: {other:?}"),
        }
    }
}

#[test]
fn results_become_json() {
    let sb = sandbox();
    assert_eq!(
        ok(
            &sb,
            "exports.handler = async () => ({ a: 1, b: 2.5, c: 'x', d: [true, null], e: 1e21 })",
            json!({})
        ),
        json!({"a": 1, "b": 2.5, "c": "x", "d": [true, null], "e": 1e21})
    );
    assert_eq!(
        run_code(&sb, "exports.handler = async () => undefined", json!({})),
        Ok(None)
    );
    assert_eq!(
        ok(&sb, "exports.handler = () => 'plain'", json!({})),
        json!("plain")
    );
    assert_eq!(
        ok(
            &sb,
            "exports.handler = (c, e) => e",
            json!({"big": 12345678901234_i64, "f": 0.1})
        ),
        json!({"big": 12345678901234_i64, "f": 0.1})
    );
    assert!(matches!(
        run_code(&sb, "exports.handler = async () => 10n", json!({})),
        Err(RunError::BadResult(_))
    ));
    assert!(matches!(
        run_code(
            &sb,
            "exports.handler = async () => { const a = {}; a.a = a; return a }",
            json!({})
        ),
        Err(RunError::BadResult(_))
    ));
    assert!(matches!(
        run_code(&sb, "exports.handler = async () => () => 1", json!({})),
        Err(RunError::BadResult(_))
    ));
}

#[test]
fn core_module_exports_exist() {
    let sb = sandbox();
    let names: Vec<String> = crate::engine::CORE_EXPORTS
        .iter()
        .map(|s| format!("'{s}'"))
        .collect();
    let code = format!(
        "import * as core from '@medplum/core';\nimport def from '@medplum/core';\nexport async function handler() {{ const names = [{}]; return names.filter((n) => core[n] === undefined || def[n] !== core[n]); }}",
        names.join(",")
    );
    assert_eq!(ok(&sb, &code, json!({})), json!([]));
    let code = r#"const core = require('@medplum/core');
exports.handler = async () => ({
  ref: core.createReference({ resourceType: 'Organization', id: 'o1', name: 'Acme' }),
  str: core.getReferenceString({ resourceType: 'Patient', id: 'p' }),
  str2: core.getReferenceString({ reference: 'Patient/q' }),
  id: core.resolveId({ reference: 'Patient/r' }),
  ok: core.isOk(core.allOk), notOk: core.isOk(core.notFound), bad: core.badRequest('x').issue[0].details.text,
  norm: core.normalizeErrorString(new Error('e1')), norm2: core.normalizeErrorString(core.notFound),
  err: new core.OperationOutcomeError(core.badRequest('oops')).message,
  isErr: new core.OperationOutcomeError(core.notFound) instanceof Error,
})"#;
    assert_eq!(
        ok(&sb, code, json!({})),
        json!({"ref": {"reference": "Organization/o1", "display": "Acme"}, "str": "Patient/p", "str2": "Patient/q",
               "id": "r", "ok": true, "notOk": false, "bad": "x", "norm": "e1", "norm2": "Not found",
               "err": "oops", "isErr": true})
    );
}

#[test]
fn invocations_are_isolated() {
    let sb = sandbox();
    let dirty = sb
        .compile(
            "dirty.js",
            r#"exports.handler = async () => {
                globalThis.x = 42;
                Object.prototype.polluted = 'yes';
                Array.prototype.push = function () { return 'hijacked' };
                JSON.parse = () => 'evil';
                JSON.stringify = () => '"evil"';
                console.log = () => {};
                Promise.prototype.then = function () { throw new Error('evil then') };
                return 'done';
            }"#,
        )
        .unwrap();
    let check = sb
        .compile(
            "check.js",
            r#"exports.handler = async () => {
                const a = [];
                a.push(1);
                return { x: typeof x, polluted: ({}).polluted === undefined, push: a.length,
                         parse: JSON.parse('[7]')[0], stringify: JSON.stringify({ y: 1 }) };
            }"#,
        )
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            sb.run(&dirty, Invocation::new(json!({}), TestHost::echo()))
                .unwrap(),
            Some(json!("done"))
        );
        let out = sb
            .run(&check, Invocation::new(json!({}), TestHost::echo()))
            .unwrap();
        assert_eq!(
            out,
            Some(
                json!({"x": "undefined", "polluted": true, "push": 1, "parse": 7, "stringify": "{\"y\":1}"})
            )
        );
    }
}

#[test]
fn top_level_state_does_not_leak_between_invocations() {
    let sb = sandbox();
    let code = "let count = 0;\nexports.handler = async () => { count += 1; globalThis.seen = (globalThis.seen || 0) + 1; return [count, globalThis.seen]; }";
    let script = sb.compile("t.js", code).unwrap();
    for _ in 0..3 {
        let out = sb
            .run(&script, Invocation::new(json!({}), TestHost::echo()))
            .unwrap();
        assert_eq!(out, Some(json!([1, 1])));
    }
}

#[test]
fn code_that_escapes_its_wrapper_is_refused() {
    let sb = sandbox();
    for code in [
        "}); let stash = []; (function () {",
        "exports.handler = () => 1 }); globalThis.x = 1; (function () {",
        "(r, c) => 1); let stash = 1; ((z) => 1",
    ] {
        let err = sb.compile("escape.js", code).unwrap_err();
        assert!(
            err.message.contains("closes the function") || err.line.is_some(),
            "{code}: {err:?}"
        );
    }
    // Ordinary code with nested blocks, strings and comments holding braces still compiles.
    sb.compile(
        "ok.js",
        "// }) {\nconst s = '})'; /* }) */\nexports.handler = async () => { if (1) { return `${s}}` } };",
    )
    .unwrap();
}

#[test]
fn the_realm_is_locked_down_but_ordinary_code_works() {
    let sb = sandbox();
    let script = sb
        .compile(
            "lock.js",
            r#"'use strict';
            class ValidationError extends Error {
                constructor(m) { super(m); this.name = 'ValidationError'; }
            }
            exports.handler = async () => {
                const e = new ValidationError('bad');
                const o = {}; o.toString = () => 'mine'; o.constructor = 1;
                const attempts = {};
                for (const [k, f] of Object.entries({
                    proto: () => { Array.prototype.evil = 1 },
                    json: () => { JSON.parse = null },
                    global: () => { globalThis.JSON = null },
                    prepare: () => { Error.prepareStackTrace = () => 'x' },
                    limit: () => { Error.stackTraceLimit = 0 },
                    setProto: () => { Object.setPrototypeOf(Object.prototype, {}) },
                    generator: () => { Object.getPrototypeOf(function* () {}).evil = 1 },
                })) {
                    try { f(); attempts[k] = 'allowed' } catch (x) { attempts[k] = x instanceof TypeError ? 'refused' : String(x) }
                }
                globalThis.mine = 1;
                return { name: e.name, msg: String(e), own: String(o), ctor: o.constructor, attempts, mine: globalThis.mine };
            };"#,
        )
        .unwrap();
    let out = sb
        .run(&script, Invocation::new(json!({}), TestHost::echo()))
        .unwrap()
        .unwrap();
    assert_eq!(out["name"], "ValidationError");
    assert_eq!(out["msg"], "ValidationError: bad");
    assert_eq!(out["own"], "mine");
    assert_eq!(out["ctor"], 1);
    assert_eq!(out["mine"], 1);
    for (k, v) in out["attempts"].as_object().unwrap() {
        assert_eq!(v, "refused", "{k}");
    }
    let check = sb
        .compile(
            "check.js",
            "exports.handler = async () => [typeof mine, typeof Error.prepareStackTrace, Error.stackTraceLimit]",
        )
        .unwrap();
    assert_eq!(
        sb.run(&check, Invocation::new(json!({}), TestHost::echo()))
            .unwrap(),
        Some(json!(["undefined", "undefined", 10]))
    );
}

#[test]
fn module_and_expression_state_is_fresh_each_time_across_realm_rebuilds() {
    let sb = sandbox();
    let module = sb
        .compile(
            "m.mjs",
            "import { createReference } from '@medplum/core';\nlet count = 0;\nexport async function handler(m, e) { count += 1; globalThis.seen = (globalThis.seen || 0) + 1; return [count, globalThis.seen, createReference({ resourceType: 'Patient', id: 'p' }).reference]; }",
        )
        .unwrap();
    let expr = sb
        .compile(
            "f.js",
            "(resource, context) => { context.client.mine = 1; return [typeof globalThis.seen, resource.id]; }",
        )
        .unwrap();
    // More module invocations than one realm serves, so realms are rebuilt on the way.
    for i in 0..450 {
        let out = sb
            .run(&module, Invocation::new(json!({}), TestHost::echo()))
            .unwrap();
        assert_eq!(out, Some(json!([1, 1, "Patient/p"])), "invocation {i}");
        let mut inv = Invocation::new(json!({}), TestHost::echo());
        inv.subject = json!({"resourceType": "Patient", "id": "x"}).into();
        let out = sb.run(&expr, inv).unwrap();
        assert_eq!(out, Some(json!(["undefined", "x"])), "invocation {i}");
    }
}

#[test]
fn parser_bombs_are_compile_errors() {
    let sb = sandbox();
    for code in [
        format!(
            "exports.handler = () => {}1{}",
            "(".repeat(100_000),
            ")".repeat(100_000)
        ),
        format!("exports.handler = () => {}", "[".repeat(200_000)),
        format!("exports.handler = () => 1{}", " + 1".repeat(300_000)),
        "{".repeat(100_000),
    ] {
        match sb.compile("bomb.js", &code) {
            Err(e) => assert!(!e.message.is_empty()),
            // A long but flat expression may well compile; it must then run.
            Ok(script) => {
                let _ = sb.run(&script, Invocation::new(json!({}), TestHost::echo()));
            }
        }
    }
    // The sandbox still works.
    let ok = sb.compile("ok.js", "exports.handler = () => 1").unwrap();
    assert_eq!(
        sb.run(&ok, Invocation::new(json!({}), TestHost::echo()))
            .unwrap(),
        Some(json!(1))
    );
}

#[test]
fn medplum_core_helpers_work() {
    let sb = sandbox();
    let script = sb
        .compile(
            "helpers.mjs",
            r#"import { formatHumanName, getIdentifier, setIdentifier, getExtensionValue, calculateAge, calculateAgeString, ContentType, isEmpty, MedplumClient } from '@medplum/core';
            export async function handler(medplum, event) {
                const p = { resourceType: 'Patient', name: [{ prefix: ['Dr'], given: ['Ann', 'B'], family: 'Lee' }],
                    identifier: [{ system: 'urn:mrn', value: '42' }],
                    extension: [{ url: 'a', extension: [{ url: 'b', valueString: 'deep' }] }] };
                setIdentifier(p, 'urn:ssn', '7');
                return [formatHumanName(p.name[0]), formatHumanName(p.name[0], { prefix: true }), getIdentifier(p, 'urn:mrn'),
                    getIdentifier(p, 'urn:ssn'), getExtensionValue(p, 'a', 'b'), calculateAge('1990-06-15', '2026-06-14').years,
                    calculateAgeString('2026-01-01', '2026-01-20'), ContentType.FHIR_JSON, isEmpty({}), medplum instanceof MedplumClient];
            }"#,
        )
        .unwrap();
    assert_eq!(
        sb.run(&script, Invocation::new(json!({}), TestHost::echo()))
            .unwrap(),
        Some(json!([
            "Ann B Lee",
            "Dr Ann B Lee",
            "42",
            "7",
            "deep",
            35,
            "019D",
            "application/fhir+json",
            true,
            true
        ]))
    );
}

#[test]
fn importing_an_unknown_core_name_is_a_compile_error() {
    let sb = sandbox();
    let err = sb
        .compile(
            "m.mjs",
            "import { evalFhirPath } from '@medplum/core';\nexport async function handler() { return evalFhirPath; }",
        )
        .unwrap_err();
    assert!(err.message.contains("evalFhirPath"), "{err:?}");
}

#[test]
fn the_target_resource_is_parsed_when_read() {
    let sb = sandbox();
    let script = sb
        .compile(
            "lazy.js",
            "exports.handler = async (m, e) => { const keys = Object.keys(e.target); const whole = JSON.parse(JSON.stringify(e)); const id = e.target.resource.id; e.target.resource = { replaced: true }; return [keys, whole.target.resource.resourceType, id, e.target.resource.replaced, e.n]; }",
        )
        .unwrap();
    let mut inv = Invocation::new(
        json!({"n": 1, "target": {"level": "instance", "id": "p1"}}),
        TestHost::echo(),
    );
    inv.resource = Some(r#"{"resourceType":"Patient","id":"p1"}"#.to_string());
    assert_eq!(
        sb.run(&script, inv).unwrap(),
        Some(json!([
            ["level", "id", "resource"],
            "Patient",
            "p1",
            true,
            1
        ]))
    );
    // Without a target object the text is ignored.
    let plain = sb
        .compile(
            "plain.js",
            "exports.handler = async (m, e) => typeof e.target",
        )
        .unwrap();
    let mut inv = Invocation::new(json!({}), TestHost::echo());
    inv.resource = Some("{}".to_string());
    assert_eq!(sb.run(&plain, inv).unwrap(), Some(json!("undefined")));
}
