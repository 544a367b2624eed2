//! # flint-sandbox
//!
//! Runs user JavaScript — FHIR custom operations and Medplum-style bots — inside
//! the Flint server process, on the QuickJS engine (through `rquickjs`), with
//! hard limits on time, memory and stack, and with nothing reachable from the
//! script but the FHIR API of the server it runs in.
//!
//! ## Using it
//!
//! ```
//! use std::sync::Arc;
//! use flint_sandbox::{Host, HostRequest, HostResponse, Invocation, Limits, LogLevel, Sandbox};
//!
//! struct MyHost;
//! impl Host for MyHost {
//!     fn request(&self, request: HostRequest) -> HostResponse {
//!         // Hand the request to the server's request core here.
//!         let _ = request;
//!         HostResponse { status: 200, body: Some(serde_json::json!({"resourceType": "Patient", "id": "1"})) }
//!     }
//!     fn log(&self, _level: LogLevel, _message: &str) {}
//! }
//!
//! let sandbox = Sandbox::new(Limits::default());
//! let script = sandbox
//!     .compile("Bot/example", "exports.handler = async (medplum, event) => {
//!         const p = await medplum.readResource('Patient', '1');
//!         return { id: p.id, input: event.input };
//!     }")
//!     .unwrap();
//! let answer = sandbox
//!     .run(&script, Invocation::new(serde_json::json!({"input": 7}), Arc::new(MyHost)))
//!     .unwrap();
//! assert_eq!(answer, Some(serde_json::json!({"id": "1", "input": 7})));
//! ```
//!
//! ## Script shapes
//!
//! [`Sandbox::compile`] detects one of three shapes:
//!
//! * **CommonJS** (Medplum bots, esbuild output): `exports.handler = …`,
//!   `module.exports.handler = …`, `module.exports = async (client, event) => …`,
//!   `Object.defineProperty(exports, …)`/`__export(…)`; a top-level function
//!   declared as `handler` is used when nothing is exported. `require` knows only
//!   `@medplum/core`. The code is wrapped in a function whose head sits on the
//!   user's first line, so line numbers are the user's.
//! * **ES module**: `export async function handler(medplum, event)`,
//!   `export const handler = …`, `export default …`; `import … from '@medplum/core'`
//!   resolves to the built-in module, any other specifier is refused.
//! * **Bare function expression** (OctoFHIR style): `function (resource, context) {…}`,
//!   `async (r, ctx) => …` — called as `fn(subject, context)` where `context` is the
//!   invocation's event object with a `client` property added.
//!
//! Shapes 1 and 2 are [`Shape::Handler`] and are called as `handler(client, event)`.
//! Compilation parses the code once and keeps QuickJS bytecode in the [`Script`];
//! it also runs the top-level code once, in a throw-away runtime with no host, to
//! make sure a handler really is defined (so a missing handler or an unknown
//! import is a [`CompileError`], not a failure on first use).
//!
//! ## Design and invariants
//!
//! * **Workers.** `Limits::workers` threads each own one QuickJS runtime for their
//!   whole life (a runtime is never shared between threads). Invocations wait in a
//!   bounded queue; when it is full, [`Sandbox::run`] answers [`RunError::Busy`] at once.
//!   Worker threads run at a lower priority (`Limits::niceness`), have a native
//!   stack several MiB larger than the QuickJS stack limit, and survive panics (the
//!   caller gets [`RunError::Internal`], the runtime is replaced).
//! * **A locked-down realm per runtime, reset between invocations.** Each runtime
//!   keeps one context (a realm) with the prelude installed and then locked down:
//!   every object reachable from the global object and the hidden intrinsics is
//!   frozen, every global binding is read-only, `Error.prepareStackTrace` and
//!   `Error.stackTraceLimit` are fixed, `FinalizationRegistry` is absent. Built-in
//!   prototypes' common methods (`toString`, `constructor`, `name`, `message`, …)
//!   become accessors whose setter gives the instance an own property, so ordinary
//!   code (`this.name = 'MyError'`) keeps working. Each invocation loads the user's
//!   code from bytecode and runs its top level again (a fresh module scope), gets a
//!   new client and its own event; afterwards any global property it added is
//!   deleted. A realm that cannot be cleaned, that ended by a limit, a stop, a
//!   never-settling promise or left jobs behind, that grew past its baseline, or
//!   that served 2,000 invocations (200 of ES modules) is dropped and rebuilt.
//!   Code that would close its CommonJS or expression wrapper early (and so declare
//!   bindings in the realm's global scope) is refused at compile time. A runtime
//!   that ran out of memory, overflowed its stack, panicked or served 20,000
//!   invocations is discarded and rebuilt. Building a realm takes about a
//!   millisecond; reusing one costs microseconds, where a fresh context with the
//!   prelude cost about 0.5 ms per invocation.
//! * **Limits.** Memory: enforced by the runtime's allocator (the C library's
//!   `malloc`, metered), which remembers a refusal, so running out of memory is
//!   reported as such even when QuickJS could only throw `null`, and ends the
//!   invocation even when the script catches the error. Stack: QuickJS' stack
//!   limit (a `RangeError`, never a native overflow). Time: an interrupt handler,
//!   polled by the interpreter, that compares the JavaScript time (wall time minus the
//!   time spent inside [`Host::request`]) with `max_execution`, the wall clock with the
//!   invocation's deadline, and polls the `cancelled` callback. Its error is
//!   uncatchable, so a script cannot swallow it.
//! * **Only safe globals.** The standard ECMAScript library, `console`, `crypto`
//!   (`randomUUID`, `getRandomValues`), `URL`, `URLSearchParams`, `TextEncoder`,
//!   `TextDecoder`, `atob`, `btoa`, `queueMicrotask`. No timers, no I/O, no `process`,
//!   no `std`/`os` modules. The only ways out are four host functions captured by the
//!   prelude's closures (FHIR request, log, UUID, random bytes); they are never
//!   globals.
//! * **The client.** A `MedplumClient`-compatible object (see the method list on
//!   [`Host`]) written in JavaScript; every call ends in one synchronous
//!   [`Host::request`] on the worker thread. Values cross the boundary as JSON text.
//!   A status ≥ 400 rejects with an `OperationOutcomeError`.
//!
//! ## Building
//!
//! rquickjs builds QuickJS (quickjs-ng) from its bundled C sources with `cc`; no
//! bindgen, no network. In debug builds the C code is unoptimised, which makes tests
//! slow; a workspace can set `[profile.dev.package.rquickjs-sys] opt-level = 2`.

#![warn(missing_docs)]

mod compile;
mod engine;
mod memory;
mod pool;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use pool::{Sandbox, Stats};

/// Resource limits of a [`Sandbox`]. Every field has a sensible default.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Number of worker threads, each owning one QuickJS runtime (default 2).
    pub workers: usize,
    /// Invocations that may wait beyond the busy workers before [`Sandbox::run`]
    /// answers [`RunError::Busy`] (default 64).
    pub queue: usize,
    /// Memory limit of one runtime, which serves one invocation at a time (default 64 MiB).
    pub max_memory_bytes: usize,
    /// JavaScript time of one invocation; time spent inside [`Host::request`] is not
    /// counted (default 5 s).
    pub max_execution: Duration,
    /// QuickJS stack limit (default 512 KiB). Worker threads get a native stack of
    /// twice this plus 4 MiB.
    pub max_stack_bytes: usize,
    /// Scripts larger than this are refused by [`Sandbox::compile`] (default 2 MiB).
    pub max_code_bytes: usize,
    /// Linux niceness given to every worker thread (default 10; 0 leaves it unchanged),
    /// so that runaway JavaScript never starves the server's other threads.
    pub niceness: i32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            workers: 2,
            queue: 64,
            max_memory_bytes: 64 * 1024 * 1024,
            max_execution: Duration::from_secs(5),
            max_stack_bytes: 512 * 1024,
            max_code_bytes: 2 * 1024 * 1024,
            niceness: 10,
        }
    }
}

/// How a compiled script is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// CommonJS or ES module exporting a handler, called as `handler(client, event)`.
    Handler,
    /// A bare function expression, called as `fn(subject, context)` where `context`
    /// is the event object with a `client` property.
    Function,
}

/// A script checked and compiled by [`Sandbox::compile`]: QuickJS bytecode that any
/// worker loads into its realm, for every invocation, without parsing the source again.
pub struct Script {
    pub(crate) name: String,
    pub(crate) shape: Shape,
    pub(crate) kind: compile::Kind,
    pub(crate) bytecode: Vec<u8>,
}

impl Script {
    /// The shape detected at compile time.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The name given at compile time (used in stack traces and logs).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Size of the compiled bytecode in bytes.
    pub fn bytecode_len(&self) -> usize {
        self.bytecode.len()
    }
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Script")
            .field("name", &self.name)
            .field("shape", &self.shape)
            .field("kind", &self.kind)
            .field("bytecode_len", &self.bytecode.len())
            .finish()
    }
}

/// Why [`Sandbox::compile`] refused a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// 1-based line in the user's code, when known.
    pub line: Option<u32>,
    /// 1-based column in the user's code, when known.
    pub column: Option<u32>,
    /// What is wrong, in English.
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for CompileError {}

/// JSON handed into the sandbox: a value, or text that is already JSON (a stored
/// resource, say), which spares serializing it again.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// A parsed value.
    Value(serde_json::Value),
    /// JSON text; it must be valid JSON (a parse error fails the invocation).
    Text(String),
}

impl From<serde_json::Value> for Json {
    fn from(value: serde_json::Value) -> Json {
        Json::Value(value)
    }
}

impl Json {
    /// The JSON text.
    pub fn into_text(self) -> String {
        match self {
            Json::Value(v) => v.to_string(),
            Json::Text(t) => t,
        }
    }
}

/// The predicate behind [`Invocation::cancelled`].
pub type CancelFn = Arc<dyn Fn() -> bool + Send + Sync>;

/// One call of a script's handler.
#[derive(Clone)]
pub struct Invocation {
    /// Passed to a [`Shape::Handler`] script as `event`; for a [`Shape::Function`]
    /// script, the `context` argument is this object plus a `client` property.
    pub event: Json,
    /// First argument of a [`Shape::Function`] script (ignored by handlers).
    pub subject: Json,
    /// The server side of the client's requests and of `console`.
    pub host: Arc<dyn Host>,
    /// Wall-clock deadline of the whole invocation, host calls and queueing included.
    /// Past it the invocation ends with [`RunError::Timeout`].
    pub deadline: Option<Instant>,
    /// Polled while the invocation waits and runs; `true` ends it with
    /// [`RunError::Cancelled`] (client gone, server stopping).
    pub cancelled: Option<CancelFn>,
    /// The target resource, as JSON text, for `event.target.resource`: parsed only when the
    /// script reads it (many never do). Ignored when the event has no `target` object.
    pub resource: Option<String>,
}

impl Invocation {
    /// An invocation with `event`, a null subject, no deadline and no cancellation.
    pub fn new(event: impl Into<Json>, host: Arc<dyn Host>) -> Invocation {
        Invocation {
            event: event.into(),
            subject: Json::Value(serde_json::Value::Null),
            host,
            deadline: None,
            cancelled: None,
            resource: None,
        }
    }
}

impl fmt::Debug for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invocation")
            .field("event", &self.event)
            .field("subject", &self.subject)
            .field("deadline", &self.deadline)
            .field("cancellable", &self.cancelled.is_some())
            .field("resource_len", &self.resource.as_ref().map(String::len))
            .finish()
    }
}

/// What the sandbox may ask of the server. Implementations run on the worker thread,
/// synchronously; the time they take is excluded from `max_execution` but counts
/// against the invocation's deadline.
///
/// The client object given to scripts maps its methods onto [`Host::request`]:
/// `readResource`, `readReference`, `readVersion`, `readHistory`, `readPatientEverything`,
/// `search`, `searchOne`, `searchResources`, `createResource`,
/// `createResourceIfNoneExist` (header `If-None-Exist`), `upsertResource`,
/// `updateResource`, `patchResource` (header `Content-Type: application/json-patch+json`),
/// `deleteResource`, `validateResource`, `executeBatch` (POST to the empty url),
/// `executeOperation`, and the generic `get`, `post`, `put`, `patch`, `delete`.
pub trait Host: Send + Sync {
    /// One request through the server's request core. `url` is relative to the FHIR
    /// base (`Patient/1`, `Patient?name=x`, `$healthcheck`, `Patient/1/$everything`,
    /// `""` for a batch) or absolute, as the script wrote it. Returns the HTTP-like
    /// status and the JSON body (`None` when empty).
    fn request(&self, request: HostRequest) -> HostResponse;
    /// [`Host::request`] with the body as [`Json`]: a host that holds the answer as
    /// JSON text already (a stored resource) returns the text, and the sandbox parses
    /// it once, in JavaScript. The sandbox calls this method; by default it calls
    /// [`Host::request`].
    fn request_json(&self, request: HostRequest) -> (u16, Option<Json>) {
        let response = self.request(request);
        (response.status, response.body.map(Json::Value))
    }
    /// One line written by the script's `console`.
    fn log(&self, level: LogLevel, message: &str);
}

/// A request made by a script through its client.
#[derive(Debug, Clone, PartialEq)]
pub struct HostRequest {
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE` (as the script wrote it, upper case for the client's methods).
    pub method: String,
    /// Relative to the FHIR base, or absolute.
    pub url: String,
    /// Extra headers: `Content-Type` when there is a body, `If-None-Exist`, and any the script passed.
    pub headers: Vec<(String, String)>,
    /// The JSON body, if any.
    pub body: Option<serde_json::Value>,
}

/// The server's answer to a [`HostRequest`].
#[derive(Debug, Clone, PartialEq)]
pub struct HostResponse {
    /// HTTP status; ≥ 400 makes the client's promise reject with an `OperationOutcomeError`.
    pub status: u16,
    /// The JSON body, `None` when empty.
    pub body: Option<serde_json::Value>,
}

/// Level of a `console` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `console.debug`, `console.trace`.
    Debug,
    /// `console.log`, `console.info`.
    Info,
    /// `console.warn`.
    Warn,
    /// `console.error`.
    Error,
}

/// Why an invocation produced no result.
#[derive(Debug, Clone, PartialEq)]
pub enum RunError {
    /// The handler threw, or its promise rejected, and nothing caught it.
    Thrown {
        /// The error's message (`Name: message` for errors other than `Error`).
        message: String,
        /// The thrown value when it is an OperationOutcome, or its `outcome` property
        /// when that is one (Medplum's `OperationOutcomeError`).
        outcome: Option<serde_json::Value>,
        /// 1-based line in the user's code where the error was raised, when known.
        line: Option<u32>,
    },
    /// The script's JavaScript time passed `Limits::max_execution`.
    TimeLimit {
        /// The limit that was exceeded.
        limit: std::time::Duration,
    },
    /// The invocation's deadline passed.
    Timeout,
    /// The script ran out of memory (`Limits::max_memory_bytes`).
    MemoryLimit {
        /// The limit that was exceeded.
        limit_bytes: usize,
    },
    /// The script recursed past the stack limit.
    StackOverflow,
    /// The handler's promise was still pending when no job was left to run.
    NeverSettled,
    /// `Invocation::cancelled` said so.
    Cancelled,
    /// All workers were busy and the queue was full.
    Busy,
    /// The handler's result cannot become JSON (a BigInt, a cycle, a function…).
    BadResult(String),
    /// A failure of the sandbox itself.
    Internal(String),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Thrown { message, line, .. } => match line {
                Some(line) => write!(f, "the script failed at line {line}: {message}"),
                None => write!(f, "the script failed: {message}"),
            },
            RunError::TimeLimit { limit } => write!(
                f,
                "the script ran longer than its limit of {} ms",
                limit.as_millis()
            ),
            RunError::Timeout => {
                f.write_str("the operation's deadline passed before the script finished")
            }
            RunError::MemoryLimit { limit_bytes } => write!(
                f,
                "the script used more memory than its limit of {}",
                human_bytes(*limit_bytes)
            ),
            RunError::StackOverflow => {
                f.write_str("the script exceeded its stack limit (recursion too deep)")
            }
            RunError::NeverSettled => {
                f.write_str("the script's handler returned a promise that never settled")
            }
            RunError::Cancelled => f.write_str("the script was cancelled before it finished"),
            RunError::Busy => f.write_str("the script sandbox is busy; try again later"),
            RunError::BadResult(why) => {
                write!(f, "the script's result cannot be converted to JSON: {why}")
            }
            RunError::Internal(why) => write!(f, "the script sandbox failed: {why}"),
        }
    }
}

impl std::error::Error for RunError {}

fn human_bytes(n: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests;
