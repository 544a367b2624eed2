//! One QuickJS runtime and everything needed to run one invocation on it.
//!
//! An [`Engine`] lives on one thread for its whole life. It keeps one realm (a context
//! with the prelude installed and locked down) that serves invocation after invocation;
//! the user's code is loaded into it from bytecode each time.

use std::cell::RefCell;
use std::ffi::CString;
use std::ptr;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rquickjs::context::intrinsic;
use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::module::Declared;
use rquickjs::promise::PromiseState;
use rquickjs::{
    qjs, Array, Context, Ctx, Exception, Function, Module, Object, Persistent, Promise, Runtime,
    Value,
};

use crate::compile::Kind;
use crate::memory::{Gauge, Metered};
use crate::{
    CancelFn, CompileError, Host, HostRequest, HostResponse, Invocation, Json, Limits, LogLevel,
    RunError, Script, Shape,
};

/// Name of the prelude in stack traces.
const PRELUDE_NAME: &str = "flint:prelude";
/// The prelude source (see `prelude.js`).
const PRELUDE_SOURCE: &str = include_str!("prelude.js");
/// The built-in module name.
pub(crate) const CORE_MODULE: &str = "@medplum/core";
/// Exports of the `@medplum/core` module; every name must exist on the prelude's core object.
pub(crate) const CORE_EXPORTS: &[&str] = &[
    "allOk",
    "accepted",
    "badRequest",
    "calculateAge",
    "calculateAgeString",
    "ContentType",
    "created",
    "createReference",
    "deepClone",
    "forbidden",
    "formatFamilyName",
    "formatGivenName",
    "formatHumanName",
    "getDisplayString",
    "getExtension",
    "getExtensionValue",
    "getIdentifier",
    "getReferenceString",
    "gone",
    "isEmpty",
    "isOk",
    "isString",
    "MedplumClient",
    "isOperationOutcome",
    "isReference",
    "isResource",
    "normalizeErrorString",
    "normalizeOperationOutcome",
    "notFound",
    "notModified",
    "OperationOutcomeError",
    "operationOutcomeToString",
    "resolveId",
    "setIdentifier",
    "unauthorized",
];

/// The message of a script with no handler.
pub(crate) const NO_HANDLER: &str = "the code defines no handler: export a function named handler \
(`exports.handler = async (medplum, event) => {…}` or `export async function handler(medplum, event) {…}`), \
or write a single function expression (`async (resource, context) => {…}`)";

/// JavaScript time after which an invocation's worker yields the CPU to every ordinary
/// thread (see `pool::demote`): past it, the script is a runaway until proven otherwise.
const DEMOTE_AFTER: Duration = Duration::from_millis(50);
/// Console output allowed per invocation before further lines are dropped.
const MAX_LOG_LINES: usize = 1000;
const MAX_LOG_BYTES: usize = 1024 * 1024;
/// A runtime is rebuilt after this many invocations, to bound any slow growth.
const MAX_SERVED: u32 = 20_000;
/// A realm is rebuilt after this many invocations…
const MAX_REALM_USES: u32 = 2_000;
/// …or this many invocations of ES modules (each stays in the realm's module list).
const MAX_REALM_MODULES: u32 = 200;
/// Growth over the realm's baseline (bytes) that makes the engine collect garbage
/// and, when that does not help, rebuild the realm.
const GROWTH_ALLOWED: usize = 4 * 1024 * 1024;

/// Bytecode of the prelude and of the `@medplum/core` facade module, compiled once
/// per process by the first engine.
struct Builtins {
    prelude: Vec<u8>,
    core_module: Vec<u8>,
}

static BUILTINS: OnceLock<Builtins> = OnceLock::new();

/// Why the interrupt handler stopped a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    TimeLimit,
    MemoryLimit,
    Timeout,
    Cancelled,
}

/// The clock and flags of the invocation in progress, shared by the interrupt
/// handler and the host functions (same thread).
struct Watch {
    gauge: Rc<Gauge>,
    active: bool,
    started: Instant,
    host_time: Duration,
    max_execution: Duration,
    deadline: Option<Instant>,
    cancelled: Option<CancelFn>,
    reason: Option<Stop>,
    /// A panic of the host, caught at the boundary; the invocation ends with it.
    fault: Option<String>,
    log_lines: usize,
    log_bytes: usize,
    /// Yielding of a long-running script (see [`Watch::yield_if_wanted`]).
    last_yield_check: Option<Instant>,
    preemptions: i64,
}

impl Watch {
    fn idle(gauge: Rc<Gauge>, max_execution: Duration) -> Watch {
        gauge.reset();
        Watch {
            gauge,
            active: false,
            started: Instant::now(),
            host_time: Duration::ZERO,
            max_execution,
            deadline: None,
            cancelled: None,
            reason: None,
            fault: None,
            last_yield_check: None,
            preemptions: 0,
            log_lines: 0,
            log_bytes: 0,
        }
    }

    /// True when the running script must stop now; records why.
    fn should_stop(&mut self) -> bool {
        if self.reason.is_some() || self.fault.is_some() {
            return true;
        }
        if !self.active {
            return false;
        }
        let now = Instant::now();
        if self.gauge.refused() {
            self.reason = Some(Stop::MemoryLimit);
        } else if matches!(self.deadline, Some(d) if now >= d) {
            self.reason = Some(Stop::Timeout);
        } else if matches!(&self.cancelled, Some(c) if c()) {
            self.reason = Some(Stop::Cancelled);
        } else {
            let js = now
                .saturating_duration_since(self.started)
                .saturating_sub(self.host_time);
            if js > self.max_execution {
                self.reason = Some(Stop::TimeLimit);
            } else if js > DEMOTE_AFTER {
                crate::pool::demote();
                self.yield_if_wanted(now);
            }
        }
        self.reason.is_some()
    }

    /// A long-running script steps aside while other threads want the CPU: when its thread
    /// was preempted since the last look (every `YIELD_CHECK`), it sleeps for `YIELD_PAUSE`.
    /// Even in the idle scheduling class a running script costs the threads that preempt it
    /// a context switch each; paused, it costs nothing. The pause counts as the script's
    /// time: a runaway script still ends within its limit, and a busy server gives a heavy
    /// one less of the CPU within that limit.
    fn yield_if_wanted(&mut self, now: Instant) {
        if matches!(self.last_yield_check, Some(t) if now.saturating_duration_since(t) < YIELD_CHECK)
        {
            return;
        }
        let preempted = involuntary_switches();
        if self.last_yield_check.is_some() && preempted > self.preemptions {
            let pause = match self.deadline {
                Some(d) => YIELD_PAUSE.min(d.saturating_duration_since(now)),
                None => YIELD_PAUSE,
            };
            std::thread::sleep(pause);
        }
        self.preemptions = involuntary_switches();
        self.last_yield_check = Some(Instant::now());
    }
}

/// How often a long-running script looks whether others want the CPU.
const YIELD_CHECK: Duration = Duration::from_millis(2);
/// How long it then steps aside.
const YIELD_PAUSE: Duration = Duration::from_millis(10);

/// Involuntary context switches of the calling thread so far.
#[cfg(target_os = "linux")]
fn involuntary_switches() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: fills the struct for the calling thread.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    // SAFETY: initialised by getrusage (and zeroed before).
    #[allow(clippy::useless_conversion)] // `c_long` is not `i64` everywhere
    i64::from(unsafe { usage.assume_init() }.ru_nivcsw)
}

#[cfg(not(target_os = "linux"))]
fn involuntary_switches() -> i64 {
    0
}

/// What happened to the runtime during an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    Good,
    /// The runtime must not serve again (out of memory, stack overflow, internal error).
    Suspect,
}

/// A context with the prelude installed and locked down, serving invocation after
/// invocation (see `prelude.js`): each gets a fresh module scope, a fresh client and
/// event, frozen built-ins, and a global object cleaned afterwards.
struct Realm {
    // Dropped before the context it belongs to.
    runner: Persistent<Object<'static>>,
    ctx: Context,
    uses: u32,
    modules: u32,
    /// Bytes in use right after the realm was built.
    baseline: usize,
}

/// The host of the invocation in progress, reached by the realm's host functions.
type CurrentHost = Rc<RefCell<Option<Arc<dyn Host>>>>;

/// A QuickJS runtime owned by one thread.
pub(crate) struct Engine {
    // Dropped (in `Drop`) before the runtime.
    realm: Option<Realm>,
    rt: Runtime,
    gauge: Rc<Gauge>,
    watch: Rc<RefCell<Watch>>,
    current: CurrentHost,
    limits: Limits,
    served: u32,
    retired: bool,
}

/// Resolver that knows one module.
struct CoreResolver;

impl Resolver for CoreResolver {
    fn resolve<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        _base: &str,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        if name == CORE_MODULE {
            Ok(name.to_string())
        } else {
            Err(Exception::throw_reference(
                ctx,
                &format!("module '{name}' is not available in the sandbox"),
            ))
        }
    }
}

/// Loader of the `@medplum/core` facade module (precompiled bytecode).
struct CoreLoader;

impl Loader for CoreLoader {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, Declared>> {
        if name != CORE_MODULE {
            return Err(Exception::throw_reference(
                ctx,
                &format!("module '{name}' is not available in the sandbox"),
            ));
        }
        let builtins = BUILTINS.get().ok_or(rquickjs::Error::Unknown)?;
        // SAFETY: the bytes were produced by JS_WriteObject of this same QuickJS
        // build and live for the whole process ('static), as ROM data requires.
        unsafe { Module::load(ctx.clone(), &builtins.core_module) }
    }
}

fn core_module_source() -> String {
    let mut s = String::from(
        "const core = globalThis[Symbol.for('flint.sandbox.medplum-core')];\nexport default core;\n",
    );
    for name in CORE_EXPORTS {
        s.push_str(&format!("export const {name} = core.{name};\n"));
    }
    s
}

/// A compile failure with the position as QuickJS reported it (in the wrapped source).
pub(crate) struct RawSyntaxError {
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub message: String,
    /// False for other errors raised while compiling (an unknown import).
    pub syntax: bool,
}

impl Engine {
    /// A runtime with the limits applied, the interrupt handler and the module loader.
    pub(crate) fn new(limits: &Limits) -> Result<Engine, String> {
        let gauge = Rc::new(Gauge::default());
        let rt = Runtime::new_with_alloc(Metered {
            gauge: gauge.clone(),
        })
        .map_err(|e| format!("cannot create a QuickJS runtime: {e}"))?;
        let watch = Rc::new(RefCell::new(Watch::idle(
            gauge.clone(),
            limits.max_execution,
        )));
        let w = watch.clone();
        rt.set_interrupt_handler(Some(Box::new(move || match w.try_borrow_mut() {
            Ok(mut w) => w.should_stop(),
            Err(_) => false,
        })));
        rt.set_loader(CoreResolver, CoreLoader);
        rt.set_max_stack_size(limits.max_stack_bytes);
        let engine = Engine {
            realm: None,
            rt,
            gauge,
            watch,
            current: Rc::new(RefCell::new(None)),
            limits: limits.clone(),
            served: 0,
            retired: false,
        };
        if BUILTINS.get().is_none() {
            let builtins = engine.build_builtins()?;
            let _ = BUILTINS.set(builtins);
        }
        // The memory limit comes after compiling the built-ins, which must not fail.
        engine.gauge.set_limit(limits.max_memory_bytes);
        Ok(engine)
    }

    fn build_builtins(&self) -> Result<Builtins, String> {
        let prelude = self
            .compile_source(Kind::CommonJs, PRELUDE_NAME, PRELUDE_SOURCE, false)
            .map_err(|e| format!("the prelude does not compile: {:?} {}", e.line, e.message))?;
        let core_module = self
            .compile_source(Kind::Module, CORE_MODULE, &core_module_source(), false)
            .map_err(|e| format!("the core module does not compile: {}", e.message))?;
        Ok(Builtins {
            prelude,
            core_module,
        })
    }

    /// False once the runtime should be replaced.
    pub(crate) fn usable(&self) -> bool {
        !self.retired
    }

    fn new_context(&self) -> Result<Context, RunError> {
        let ctx = Context::custom::<(
            intrinsic::Date,
            intrinsic::Eval,
            intrinsic::RegExpCompiler,
            intrinsic::RegExp,
            intrinsic::Json,
            intrinsic::Proxy,
            intrinsic::MapSet,
            intrinsic::TypedArrays,
            intrinsic::Promise,
            intrinsic::DOMException,
        )>(&self.rt)
        .map_err(|_| RunError::MemoryLimit {
            limit_bytes: self.limits.max_memory_bytes,
        })?;
        // SAFETY: a fresh context of this runtime; adds atob/btoa to its global object.
        let rc = unsafe { qjs::JS_AddIntrinsicAToB(ctx.as_raw().as_ptr()) };
        if rc < 0 {
            return Err(RunError::MemoryLimit {
                limit_bytes: self.limits.max_memory_bytes,
            });
        }
        Ok(ctx)
    }

    /// Parses `source` (already wrapped for its kind) and returns its bytecode.
    pub(crate) fn compile_source(
        &self,
        kind: Kind,
        name: &str,
        source: &str,
        strip_source: bool,
    ) -> Result<Vec<u8>, RawSyntaxError> {
        let internal = |message: String| RawSyntaxError {
            line: None,
            column: None,
            message,
            syntax: false,
        };
        let ctx = self
            .new_context()
            .map_err(|e| internal(format!("cannot compile: {e}")))?;
        let file = CString::new(name.replace('\0', " ")).expect("no NUL left");
        let mut src = Vec::with_capacity(source.len() + 1);
        src.extend_from_slice(source.as_bytes());
        src.push(0);
        ctx.with(|ctx| {
            let raw = ctx.as_raw().as_ptr();
            let flags = match kind {
                Kind::Module => qjs::JS_EVAL_TYPE_MODULE | qjs::JS_EVAL_FLAG_COMPILE_ONLY,
                Kind::CommonJs | Kind::Expression => {
                    qjs::JS_EVAL_TYPE_GLOBAL | qjs::JS_EVAL_FLAG_COMPILE_ONLY
                }
            };
            // SAFETY: `src` is NUL-terminated and `source.len()` excludes the NUL.
            let value = unsafe {
                qjs::JS_Eval(
                    raw,
                    src.as_ptr().cast(),
                    source.len() as _,
                    file.as_ptr(),
                    flags as i32,
                )
            };
            // SAFETY: plain tag inspection.
            if unsafe { qjs::JS_IsException(value) } {
                let exc = ctx.catch();
                return Err(syntax_error_of(&ctx, exc, name));
            }
            let mut write_flags = qjs::JS_WRITE_OBJ_BYTECODE;
            if strip_source {
                write_flags |= qjs::JS_WRITE_OBJ_STRIP_SOURCE;
            }
            let mut len: qjs::size_t = 0;
            // SAFETY: `value` is the compiled function or module of this context.
            let buf = unsafe { qjs::JS_WriteObject(raw, &mut len, value, write_flags as i32) };
            let result = if buf.is_null() {
                let _ = ctx.catch();
                Err(internal("cannot serialise the compiled code".into()))
            } else {
                // SAFETY: JS_WriteObject returned `len` bytes at `buf`, freed right after.
                let bytes = unsafe { std::slice::from_raw_parts(buf, len as usize) }.to_vec();
                unsafe { qjs::js_free(raw, buf.cast()) };
                Ok(bytes)
            };
            // A compiled module belongs to the context's module list and is freed with
            // it; only a function bytecode value is ours to free.
            if kind != Kind::Module {
                // SAFETY: we own this reference.
                unsafe { qjs::JS_FreeValue(raw, value) };
            }
            result
        })
    }

    /// Runs the script's top-level code once, without a host, and checks that it
    /// defines a handler.
    pub(crate) fn probe(&mut self, script: &Script) -> Result<(), CompileError> {
        let invocation = Invocation::new(serde_json::Value::Null, Arc::new(NoHost));
        let (result, _) = self.execute(script, &invocation, true);
        match result {
            Ok(_) => Ok(()),
            Err(RunError::Thrown { message, line, .. }) if message == NO_HANDLER => {
                Err(CompileError {
                    line,
                    column: None,
                    message,
                })
            }
            Err(RunError::Thrown { message, line, .. }) => Err(CompileError {
                line,
                column: None,
                message: format!("the top-level code failed: {message}"),
            }),
            Err(other) => Err(CompileError {
                line: None,
                column: None,
                message: format!("the top-level code failed: {other}"),
            }),
        }
    }

    /// Runs one invocation. The runtime is retired afterwards when it became suspect.
    pub(crate) fn run(
        &mut self,
        script: &Script,
        invocation: &Invocation,
    ) -> Result<Option<serde_json::Value>, RunError> {
        let (result, health) = self.execute(script, invocation, false);
        self.served += 1;
        if health == Health::Suspect || self.rt.is_job_pending() || self.served >= MAX_SERVED {
            self.retired = true;
        }
        result
    }

    fn execute(
        &mut self,
        script: &Script,
        invocation: &Invocation,
        probe_only: bool,
    ) -> (Result<Option<serde_json::Value>, RunError>, Health) {
        {
            let mut w = self.watch.borrow_mut();
            *w = self.idle_watch();
            w.deadline = invocation.deadline;
            w.cancelled = invocation.cancelled.clone();
            w.active = true;
            w.started = Instant::now();
            if w.should_stop() {
                let stop = w.reason;
                *w = self.idle_watch();
                let error = match stop {
                    Some(stop) => self.stop_error(stop),
                    None => RunError::Internal("the invocation was stopped before it began".into()),
                };
                return (Err(error), Health::Good);
            }
        }
        *self.current.borrow_mut() = Some(invocation.host.clone());
        let realm = match self.realm.take() {
            Some(realm) => Ok(realm),
            None => self.new_realm(),
        };
        let (result, health) = match realm {
            Ok(mut realm) => {
                let ctx = realm.ctx.clone();
                let (result, health, clean) = ctx.with(|ctx| {
                    let runner = realm.runner.clone().restore(&ctx);
                    let Ok(runner) = runner else {
                        return (
                            Err(RunError::Internal("the realm lost its runner".into())),
                            Health::Suspect,
                            false,
                        );
                    };
                    let (result, health) =
                        self.invoke(&ctx, &runner, script, invocation, probe_only);
                    // A realm serves again only after an ordinary end and a clean reset.
                    let ordinary = health == Health::Good
                        && self.verdict().is_none()
                        && !matches!(result, Err(RunError::NeverSettled));
                    let clean = ordinary
                        && matches!(call_method(&runner, "reset", ()), Ok(v) if v.as_bool() == Some(true));
                    if !clean {
                        let _ = ctx.catch();
                    }
                    (result, health, clean)
                });
                drop(ctx);
                realm.uses += 1;
                if script.kind == Kind::Module {
                    realm.modules += 1;
                }
                let keep = clean
                    && !self.rt.is_job_pending()
                    && realm.uses < MAX_REALM_USES
                    && realm.modules < MAX_REALM_MODULES
                    && self.within_growth(&realm);
                if keep {
                    self.realm = Some(realm);
                } else {
                    drop(realm);
                    self.rt.run_gc();
                }
                (result, health)
            }
            Err(e) => (Err(e), Health::Suspect),
        };
        *self.current.borrow_mut() = None;
        *self.watch.borrow_mut() = self.idle_watch();
        (result, health)
    }

    /// False when the runtime grew well past the realm's baseline even after a
    /// garbage collection.
    fn within_growth(&self, realm: &Realm) -> bool {
        if self.gauge.used() <= realm.baseline + GROWTH_ALLOWED {
            return true;
        }
        self.rt.run_gc();
        self.gauge.used() <= realm.baseline + GROWTH_ALLOWED
    }

    /// A fresh context with the prelude installed and the realm locked down.
    fn new_realm(&self) -> Result<Realm, RunError> {
        let ctx = self.new_context()?;
        let runner = ctx.with(|ctx| -> Result<Persistent<Object<'static>>, RunError> {
            let failed =
                |what: &str| RunError::Internal(format!("cannot prepare the sandbox: {what}"));
            let builtins = BUILTINS
                .get()
                .ok_or_else(|| failed("the prelude is missing"))?;
            let installer: Function = match eval_bytecode(&ctx, &builtins.prelude) {
                Ok(v) => v.into_function().ok_or_else(|| failed("bad prelude"))?,
                Err(_) => return Err(self.realm_failure(&ctx)),
            };
            let (request, log, uuid, random) = self
                .host_functions(&ctx)
                .map_err(|_| self.realm_failure(&ctx))?;
            let runner: Object = installer
                .call((request, log, uuid, random))
                .map_err(|_| self.realm_failure(&ctx))?;
            Ok(Persistent::save(&ctx, runner))
        })?;
        self.rt.run_gc();
        Ok(Realm {
            runner,
            ctx,
            uses: 0,
            modules: 0,
            baseline: self.gauge.used(),
        })
    }

    fn realm_failure(&self, ctx: &Ctx<'_>) -> RunError {
        if let Some(stop) = self.verdict() {
            let _ = ctx.catch();
            return stop;
        }
        let exc = ctx.catch();
        let text = exc
            .as_object()
            .and_then(|o| o.get::<_, String>("message").ok())
            .unwrap_or_else(|| "the prelude failed".into());
        RunError::Internal(format!("cannot prepare the sandbox: {text}"))
    }

    fn idle_watch(&self) -> Watch {
        Watch::idle(self.gauge.clone(), self.limits.max_execution)
    }

    /// Why the invocation must end, if it must: an allocation refused, or a stop
    /// decided by the interrupt handler.
    fn verdict(&self) -> Option<RunError> {
        if self.gauge.refused() {
            return Some(self.stop_error(Stop::MemoryLimit));
        }
        let watch = self.watch.borrow();
        if let Some(fault) = &watch.fault {
            return Some(RunError::Internal(format!("the server failed: {fault}")));
        }
        watch.reason.map(|stop| self.stop_error(stop))
    }

    fn stop_error(&self, stop: Stop) -> RunError {
        match stop {
            Stop::MemoryLimit => RunError::MemoryLimit {
                limit_bytes: self.limits.max_memory_bytes,
            },
            Stop::TimeLimit => RunError::TimeLimit {
                limit: self.limits.max_execution,
            },
            Stop::Timeout => RunError::Timeout,
            Stop::Cancelled => RunError::Cancelled,
        }
    }

    fn invoke<'js>(
        &self,
        ctx: &Ctx<'js>,
        runner: &Object<'js>,
        script: &Script,
        invocation: &Invocation,
        probe_only: bool,
    ) -> (Result<Option<serde_json::Value>, RunError>, Health) {
        let result = self.invoke_inner(ctx, runner, script, invocation, probe_only);
        let result = match result {
            Ok(v) => Ok(v),
            Err(Failure::Js(err)) => Err(self.classify(ctx, Some(runner), err, &script.name)),
            Err(Failure::Run(e)) => Err(e),
        };
        // A stop decided by the interrupt handler wins over whatever error it caused.
        let result = match self.verdict() {
            Some(stop) if result.is_err() => Err(stop),
            _ => result,
        };
        let health = match &result {
            Err(RunError::MemoryLimit { .. })
            | Err(RunError::StackOverflow)
            | Err(RunError::Internal(_)) => Health::Suspect,
            _ => Health::Good,
        };
        (result, health)
    }

    fn invoke_inner<'js>(
        &self,
        ctx: &Ctx<'js>,
        runner: &Object<'js>,
        script: &Script,
        invocation: &Invocation,
        probe_only: bool,
    ) -> Result<Option<serde_json::Value>, Failure> {
        let handler: Value<'js> = match script.kind {
            Kind::CommonJs => {
                let wrapper = eval_bytecode(ctx, &script.bytecode)?;
                call_method(runner, "cjs", (wrapper, script.name.as_str()))?
            }
            Kind::Expression => {
                let f = eval_bytecode(ctx, &script.bytecode)?;
                call_method(runner, "expr", (f,))?
            }
            Kind::Module => {
                let namespace = self.eval_module(ctx, &script.bytecode)?;
                call_method(runner, "esm", (namespace,))?
            }
        };
        if !handler.is_function() {
            return Err(Failure::Run(RunError::Thrown {
                message: NO_HANDLER.to_string(),
                outcome: None,
                line: None,
            }));
        }
        if probe_only {
            return Ok(None);
        }

        let event = json_to_js(ctx, &invocation.event)?;
        let returned: Value<'js> = match script.shape {
            Shape::Handler => call_method(
                runner,
                "callHandler",
                (handler, event, resource_of(ctx, invocation)?),
            )?,
            Shape::Function => {
                let subject = json_to_js(ctx, &invocation.subject)?;
                let resource = resource_of(ctx, invocation)?;
                call_method(runner, "callFunction", (handler, subject, event, resource))?
            }
        };
        let value = if let Some(promise) = returned.as_promise().cloned() {
            self.drive_jobs(ctx)?;
            match promise.state() {
                PromiseState::Resolved => match promise.result::<Value<'js>>() {
                    Some(value) => value?,
                    None => return Err(Failure::Run(RunError::NeverSettled)),
                },
                PromiseState::Rejected => {
                    let reason = promise_reason(&promise);
                    return Err(Failure::Run(self.classify_value(
                        ctx,
                        Some(runner),
                        reason,
                        &script.name,
                    )));
                }
                PromiseState::Pending => return Err(Failure::Run(RunError::NeverSettled)),
            }
        } else {
            self.drive_jobs(ctx)?;
            returned
        };
        if let Some(stop) = self.verdict() {
            return Err(Failure::Run(stop));
        }
        self.to_json(ctx, value)
    }

    /// Loads, links and evaluates the module; returns its namespace.
    fn eval_module<'js>(&self, ctx: &Ctx<'js>, bytecode: &[u8]) -> Result<Value<'js>, Failure> {
        let raw = ctx.as_raw().as_ptr();
        // SAFETY: bytecode written by JS_WriteObject of this QuickJS build; the buffer is
        // copied (no ROM flag). The module value follows rquickjs' own protocol: one
        // reference is consumed by JS_EvalFunction, the other stays with the context's
        // module list, which frees it with the context.
        unsafe {
            let module = read_object(raw, bytecode)?;
            if qjs::JS_VALUE_GET_TAG(module) != qjs::JS_TAG_MODULE {
                qjs::JS_FreeValue(raw, module);
                return Err(Failure::Run(RunError::Internal(
                    "the compiled module is not a module".into(),
                )));
            }
            if qjs::JS_ResolveModule(raw, module) < 0 {
                return Err(Failure::Js(rquickjs::Error::Exception));
            }
            let def = qjs::JS_VALUE_GET_PTR(module) as *mut qjs::JSModuleDef;
            qjs::JS_DupValue(raw, module);
            let evaluated = qjs::JS_EvalFunction(raw, module);
            if qjs::JS_IsException(evaluated) {
                return Err(Failure::Js(rquickjs::Error::Exception));
            }
            let evaluated = Value::from_raw(ctx.clone(), evaluated);
            if let Some(promise) = evaluated.as_promise() {
                self.drive_jobs(ctx)?;
                match promise.state() {
                    PromiseState::Resolved => {}
                    PromiseState::Rejected => {
                        let reason = promise_reason(promise);
                        ctx.throw(reason);
                        return Err(Failure::Js(rquickjs::Error::Exception));
                    }
                    PromiseState::Pending => return Err(Failure::Run(RunError::NeverSettled)),
                }
            }
            let ns = qjs::JS_GetModuleNamespace(raw, def);
            if qjs::JS_IsException(ns) {
                return Err(Failure::Js(rquickjs::Error::Exception));
            }
            Ok(Value::from_raw(ctx.clone(), ns))
        }
    }

    /// Runs queued promise jobs until none is left.
    fn drive_jobs(&self, ctx: &Ctx<'_>) -> Result<(), Failure> {
        let rt = unsafe { qjs::JS_GetRuntime(ctx.as_raw().as_ptr()) };
        loop {
            let mut job_ctx: *mut qjs::JSContext = ptr::null_mut();
            // SAFETY: the runtime is locked by the enclosing `Context::with`.
            let r = unsafe { qjs::JS_ExecutePendingJob(rt, &mut job_ctx) };
            if r == 0 {
                return Ok(());
            }
            if r < 0 {
                // The exception is pending on the runtime (shared by its contexts).
                return Err(Failure::Js(rquickjs::Error::Exception));
            }
        }
    }

    /// The four host functions handed to the prelude's installer. They reach the
    /// host of the invocation in progress through `current`.
    #[allow(clippy::type_complexity)]
    fn host_functions<'js>(
        &self,
        ctx: &Ctx<'js>,
    ) -> rquickjs::Result<(Function<'js>, Function<'js>, Function<'js>, Function<'js>)> {
        let current = self.current.clone();
        let w = self.watch.clone();
        let request = Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  method: String,
                  url: String,
                  headers: Vec<String>,
                  body: Option<String>|
                  -> rquickjs::Result<Array<'js>> {
                let host = current.borrow().clone();
                match host {
                    Some(h) => host_request(&ctx, &*h, &w, method, url, headers, body),
                    None => Err(Exception::throw_internal(&ctx, "no invocation in progress")),
                }
            },
        )?;
        let current = self.current.clone();
        let w = self.watch.clone();
        let log = Function::new(ctx.clone(), move |level: i32, message: String| {
            let host = current.borrow().clone();
            if let Some(h) = host {
                host_log(&*h, &w, level, message)
            }
        })?;
        let uuid = Function::new(ctx.clone(), random_uuid)?;
        let random = Function::new(ctx.clone(), |ctx: Ctx<'js>, n: usize| {
            if n > 65536 {
                return Err(Exception::throw_range(&ctx, "too many random bytes"));
            }
            let mut buf = vec![0u8; n];
            getrandom::fill(&mut buf)
                .map_err(|e| Exception::throw_internal(&ctx, &format!("no randomness: {e}")))?;
            Ok(hex(&buf))
        })?;
        Ok((request, log, uuid, random))
    }

    /// Turns a JavaScript failure into a [`RunError`].
    fn classify<'js>(
        &self,
        ctx: &Ctx<'js>,
        runner: Option<&Object<'js>>,
        err: rquickjs::Error,
        name: &str,
    ) -> RunError {
        if let Some(stop) = self.verdict() {
            return stop;
        }
        match err {
            rquickjs::Error::Exception => {
                let value = ctx.catch();
                self.classify_value(ctx, runner, value, name)
            }
            rquickjs::Error::Allocation => RunError::MemoryLimit {
                limit_bytes: self.limits.max_memory_bytes,
            },
            other => RunError::Internal(other.to_string()),
        }
    }

    fn classify_value<'js>(
        &self,
        ctx: &Ctx<'js>,
        runner: Option<&Object<'js>>,
        value: Value<'js>,
        name: &str,
    ) -> RunError {
        if let Some(stop) = self.verdict() {
            return stop;
        }
        // SAFETY: tag inspection only.
        if unsafe { qjs::JS_IsUninitialized(value.as_raw()) } {
            // QuickJS could not even allocate the error object.
            return RunError::MemoryLimit {
                limit_bytes: self.limits.max_memory_bytes,
            };
        }
        if value.is_error() {
            if let Some(obj) = value.as_object() {
                let message: Option<String> = own_string(obj, "message");
                let message = message.as_deref();
                if is_native_error(ctx, obj, "InternalError") {
                    match message {
                        Some("out of memory" | "string too long") => {
                            return RunError::MemoryLimit {
                                limit_bytes: self.limits.max_memory_bytes,
                            }
                        }
                        Some("interrupted") => {
                            return RunError::Internal("the script was interrupted".into())
                        }
                        _ => {}
                    }
                }
                if message == Some("Maximum call stack size exceeded")
                    && is_native_error(ctx, obj, "RangeError")
                {
                    return RunError::StackOverflow;
                }
            }
        }
        let described = runner.and_then(|r| {
            let f: Function<'js> = r.get("describe").ok()?;
            let v: Array<'js> = f.call((value.clone(),)).ok()?;
            let message: String = v.get(0).ok()?;
            let outcome: Option<String> = v.get(1).ok()?;
            let stack: String = v.get(2).ok()?;
            Some((message, outcome, stack))
        });
        match described {
            Some((message, outcome, stack)) => RunError::Thrown {
                message,
                outcome: outcome.and_then(|s| serde_json::from_str(&s).ok()),
                line: line_in_stack(&stack, name),
            },
            None => {
                let _ = ctx.catch();
                if let Some(stop) = self.verdict() {
                    return stop;
                }
                let message = value
                    .as_string()
                    .and_then(|s| s.to_string().ok())
                    .unwrap_or_else(|| "the script threw a value that cannot be shown".into());
                RunError::Thrown {
                    message,
                    outcome: None,
                    line: None,
                }
            }
        }
    }

    fn to_json<'js>(
        &self,
        ctx: &Ctx<'js>,
        value: Value<'js>,
    ) -> Result<Option<serde_json::Value>, Failure> {
        if value.is_undefined() {
            return Ok(None);
        }
        match ctx.json_stringify(value) {
            Ok(Some(text)) => {
                let text = text.to_string()?;
                serde_json::from_str(&text)
                    .map(Some)
                    .map_err(|e| Failure::Run(RunError::BadResult(e.to_string())))
            }
            Ok(None) => Err(Failure::Run(RunError::BadResult(
                "a function or a symbol has no JSON form".into(),
            ))),
            Err(rquickjs::Error::Exception) => {
                let exc = ctx.catch();
                match self.classify_value(ctx, None, exc, "") {
                    RunError::Thrown { message, .. } => {
                        Err(Failure::Run(RunError::BadResult(message)))
                    }
                    other => Err(Failure::Run(other)),
                }
            }
            Err(other) => Err(Failure::Js(other)),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // The realm's context and values go before the runtime, and so does the
        // interrupt handler's closure (it holds the watch).
        self.realm = None;
        self.rt.set_interrupt_handler(None);
    }
}

/// A failure inside an invocation: a pending JavaScript exception (or rquickjs error)
/// still to be classified, or a decided [`RunError`].
enum Failure {
    Js(rquickjs::Error),
    Run(RunError),
}

impl From<rquickjs::Error> for Failure {
    fn from(e: rquickjs::Error) -> Self {
        Failure::Js(e)
    }
}

/// The function or module that `bytecode` holds, read into the context (copied: no ROM
/// flag); an owned reference.
///
/// # Safety
/// `raw` is a live context of the runtime whose QuickJS build wrote `bytecode`.
unsafe fn read_object(raw: *mut qjs::JSContext, bytecode: &[u8]) -> Result<qjs::JSValue, Failure> {
    // SAFETY: the caller's promise; the slice outlives the call.
    let value = unsafe {
        qjs::JS_ReadObject(
            raw,
            bytecode.as_ptr(),
            bytecode.len() as _,
            qjs::JS_READ_OBJ_BYTECODE as i32,
        )
    };
    if unsafe { qjs::JS_IsException(value) } {
        return Err(Failure::Js(rquickjs::Error::Exception));
    }
    Ok(value)
}

/// Reads a bytecode function (script) into the context and evaluates it; returns its
/// completion value.
fn eval_bytecode<'js>(ctx: &Ctx<'js>, bytecode: &[u8]) -> Result<Value<'js>, Failure> {
    let raw = ctx.as_raw().as_ptr();
    // SAFETY: the bytes come from JS_WriteObject of this same QuickJS build; they are
    // copied (no ROM flag). JS_EvalFunction consumes the function value.
    unsafe {
        let f = read_object(raw, bytecode)?;
        let v = qjs::JS_EvalFunction(raw, f);
        if qjs::JS_IsException(v) {
            return Err(Failure::Js(rquickjs::Error::Exception));
        }
        Ok(Value::from_raw(ctx.clone(), v))
    }
}

/// The target resource's text as a JavaScript string, or `undefined`.
fn resource_of<'js>(ctx: &Ctx<'js>, invocation: &Invocation) -> rquickjs::Result<Value<'js>> {
    match &invocation.resource {
        Some(text) => Ok(rquickjs::String::from_str(ctx.clone(), text)?.into_value()),
        None => Ok(Value::new_undefined(ctx.clone())),
    }
}

fn call_method<'js, A>(obj: &Object<'js>, name: &str, args: A) -> rquickjs::Result<Value<'js>>
where
    A: rquickjs::function::IntoArgs<'js>,
{
    let f: Function<'js> = obj.get(name)?;
    f.call(args)
}

fn json_to_js<'js>(ctx: &Ctx<'js>, value: &Json) -> Result<Value<'js>, Failure> {
    let parsed = match value {
        Json::Value(v) => {
            let text = serde_json::to_string(v)
                .map_err(|e| Failure::Run(RunError::Internal(format!("bad JSON input: {e}"))))?;
            ctx.json_parse(text)
        }
        Json::Text(t) => ctx.json_parse(t.as_str()),
    };
    Ok(parsed?)
}

fn promise_reason<'js>(promise: &Promise<'js>) -> Value<'js> {
    let ctx = promise.ctx().clone();
    match promise.result::<Value<'js>>() {
        Some(Err(rquickjs::Error::Exception)) => ctx.catch(),
        Some(Ok(v)) => v,
        _ => Value::new_undefined(ctx),
    }
}

/// Whether `obj` was made by the built-in error constructor `name` (its prototype is
/// that constructor's; both are frozen, so this reads no script-controlled value).
fn is_native_error<'js>(ctx: &Ctx<'js>, obj: &Object<'js>, name: &str) -> bool {
    let Some(proto) = obj.get_prototype() else {
        return false;
    };
    let native = ctx
        .globals()
        .get::<_, Object<'js>>(name)
        .and_then(|ctor| ctor.get::<_, Object<'js>>("prototype"));
    match native {
        Ok(native) => native == proto,
        Err(_) => {
            let _ = ctx.catch();
            false
        }
    }
}

/// An own data property that is a string (never runs a getter of the script's).
fn own_string<'js>(obj: &Object<'js>, key: &str) -> Option<String> {
    let ctx = obj.ctx().clone();
    let raw = ctx.as_raw().as_ptr();
    let mut desc = std::mem::MaybeUninit::<qjs::JSPropertyDescriptor>::uninit();
    // SAFETY: a property-descriptor query with an atom freed right after; the
    // descriptor's values are taken over by `Value`s and so freed too.
    let found = unsafe {
        let atom = qjs::JS_NewAtomLen(raw, key.as_ptr().cast(), key.len() as _);
        let r = qjs::JS_GetOwnProperty(raw, desc.as_mut_ptr(), obj.as_raw(), atom);
        qjs::JS_FreeAtom(raw, atom);
        r
    };
    if found < 0 {
        let _ = ctx.catch();
        return None;
    }
    if found == 0 {
        // Inherited (e.g. `name` on the prototype of a genuine error).
        let proto = obj.get_prototype()?;
        return own_string(&proto, key);
    }
    // SAFETY: JS_GetOwnProperty returned 1, so the descriptor is initialised.
    let desc = unsafe { desc.assume_init() };
    let (value, _getter, _setter) = unsafe {
        (
            Value::from_raw(ctx.clone(), desc.value),
            Value::from_raw(ctx.clone(), desc.getter),
            Value::from_raw(ctx.clone(), desc.setter),
        )
    };
    value.as_string().and_then(|s| s.to_string().ok())
}

/// The line of the first stack frame in the user's file.
pub(crate) fn line_in_stack(stack: &str, name: &str) -> Option<u32> {
    if name.is_empty() {
        return None;
    }
    let needle = format!("{name}:");
    for line in stack.lines() {
        let mut rest = line;
        while let Some(i) = rest.find(&needle) {
            let after = &rest[i + needle.len()..];
            let digits: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
            if !digits.is_empty() && after[digits.len()..].starts_with(':') {
                return digits.parse().ok();
            }
            rest = &rest[i + needle.len()..];
        }
    }
    None
}

/// Line and column of a syntax error from its stack (`    at name:LINE:COL`).
fn position_in_stack(stack: &str, name: &str) -> (Option<u32>, Option<u32>) {
    let needle = format!("at {name}:");
    if let Some(i) = stack.find(&needle) {
        let after = &stack[i + needle.len()..];
        let mut parts = after.splitn(3, |c: char| !c.is_ascii_digit());
        let line = parts.next().and_then(|s| s.parse().ok());
        let column = parts.next().and_then(|s| s.parse().ok());
        return (line, column);
    }
    (None, None)
}

fn syntax_error_of<'js>(ctx: &Ctx<'js>, exc: Value<'js>, name: &str) -> RawSyntaxError {
    let mut message = String::from("the code does not compile");
    let mut stack = String::new();
    let mut syntax = false;
    if let Some(obj) = exc.as_object() {
        if let Ok(m) = obj.get::<_, String>("message") {
            message = m;
        }
        if let Ok(s) = obj.get::<_, String>("stack") {
            stack = s;
        }
        if let Ok(n) = obj.get::<_, String>("name") {
            syntax = n == "SyntaxError";
            if !syntax && n != "ReferenceError" {
                message = format!("{n}: {message}");
            }
        }
    } else if let Some(s) = exc.as_string().and_then(|s| s.to_string().ok()) {
        message = s;
    }
    let _ = ctx.catch();
    let (line, column) = position_in_stack(&stack, name);
    RawSyntaxError {
        line,
        column,
        message,
        syntax,
    }
}

fn host_request<'js>(
    ctx: &Ctx<'js>,
    host: &dyn Host,
    watch: &RefCell<Watch>,
    method: String,
    url: String,
    headers: Vec<String>,
    body: Option<String>,
) -> rquickjs::Result<Array<'js>> {
    if watch.borrow_mut().should_stop() {
        return Err(throw_uncatchable(ctx));
    }
    let body = match body {
        Some(text) => Some(
            serde_json::from_str::<serde_json::Value>(&text).map_err(|e| {
                Exception::throw_type(ctx, &format!("the request body is not JSON: {e}"))
            })?,
        ),
        None => None,
    };
    let mut pairs = Vec::with_capacity(headers.len() / 2);
    let mut it = headers.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        pairs.push((k, v));
    }
    let started = Instant::now();
    let request = HostRequest {
        method,
        url,
        headers: pairs,
        body,
    };
    // A panic must not unwind through QuickJS, nor become an error the script can
    // catch: it ends the invocation.
    let (status, body) =
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| host.request_json(request)))
        {
            Ok(response) => response,
            Err(panic) => {
                watch.borrow_mut().fault = Some(crate::pool::panic_message(&*panic));
                return Err(throw_uncatchable(ctx));
            }
        };
    {
        let mut w = watch.borrow_mut();
        w.host_time += started.elapsed();
        if w.should_stop() {
            drop(w);
            return Err(throw_uncatchable(ctx));
        }
    }
    let out = Array::new(ctx.clone())?;
    out.set(0, status)?;
    match body {
        Some(json) => out.set(1, ctx.json_parse(json.into_text())?)?,
        None => out.set(1, Value::new_null(ctx.clone()))?,
    }
    Ok(out)
}

/// Throws an error that `catch` cannot intercept (like the interrupt handler's).
fn throw_uncatchable(ctx: &Ctx<'_>) -> rquickjs::Error {
    let _ = Exception::throw_internal(ctx, "interrupted");
    // SAFETY: re-throws the pending exception after flagging it uncatchable.
    unsafe {
        let raw = ctx.as_raw().as_ptr();
        let exc = qjs::JS_GetException(raw);
        qjs::JS_SetUncatchableError(raw, exc);
        qjs::JS_Throw(raw, exc);
    }
    rquickjs::Error::Exception
}

fn host_log(host: &dyn Host, watch: &RefCell<Watch>, level: i32, message: String) {
    let level = match level {
        0 => LogLevel::Debug,
        1 => LogLevel::Info,
        2 => LogLevel::Warn,
        _ => LogLevel::Error,
    };
    let notice = {
        let mut w = watch.borrow_mut();
        if w.log_lines > MAX_LOG_LINES || w.log_bytes > MAX_LOG_BYTES {
            return;
        }
        w.log_lines += 1;
        w.log_bytes += message.len();
        w.log_lines > MAX_LOG_LINES || w.log_bytes > MAX_LOG_BYTES
    };
    // A panicking logger loses its line, nothing more.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if notice {
            host.log(
                LogLevel::Warn,
                "further console output of this invocation is dropped (log limit reached)",
            );
        } else {
            host.log(level, &message);
        }
    }));
}

fn random_uuid() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Never expected on Linux; fall back to a time-derived value rather than fail.
        let t = Instant::now().elapsed().as_nanos() ^ (std::process::id() as u128) << 64;
        b = t.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// The host of compile-time probes: no requests, no logs.
struct NoHost;

impl Host for NoHost {
    fn request(&self, _request: HostRequest) -> HostResponse {
        HostResponse {
            status: 503,
            body: Some(serde_json::json!({
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "transient",
                           "diagnostics": "the FHIR client is not available while the script is compiled"}]
            })),
        }
    }

    fn log(&self, _level: LogLevel, _message: &str) {}
}
