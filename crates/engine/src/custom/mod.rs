//! Custom operations added at run time (SPEC section 8): OperationDefinitions implemented by a
//! Bot (Medplum's way), and Apps (OctoFHIR's way), served through the one operations framework
//! like built-in ones.
//!
//! The registry is the store: [`Engine::reload_custom_operations`] reads every Bot, every
//! OperationDefinition carrying an implementation extension and every active App, builds their
//! handlers (JavaScript compiled once per version of the resource holding it, HTTP targets,
//! internal Rust operations by name) and swaps the whole catalog at once, so that no request
//! ever sees half of a change. It runs at start and after every committed write of a Bot, App
//! or OperationDefinition, before that write is answered.
//!
//! - `source.rs` reads Bots, Apps and implementation extensions, and checks them when they are
//!   written (a bad App is a 400 naming the element).
//! - `handler.rs` is the [`Operation`] of a custom operation: the event its code sees, the
//!   handler kinds, the shaping of what it answers, the audit record.
//! - `client.rs` is the sandbox's `client`: every call it makes is a request through the core
//!   with the invocation's context.
//! - `http.rs` forwards an invocation to an HTTP service.
//! - `audit.rs` writes an `AuditEvent` per invocation, off the request's path.
//! - `bot.rs` holds `Bot/[id]/$deploy` and `Bot/[id]/$execute`.

pub(crate) mod audit;
pub(crate) mod bot;
mod client;
mod handler;
mod http;
mod source;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use flint_fhir::{Error, IssueType, Result};
use flint_sandbox::{Sandbox, Script};
use flint_store::Store;
use serde_json::Value;

use crate::operations::{Catalog, Operation};
use crate::Engine;

pub use source::{FLINT_IMPLEMENTATION, MEDPLUM_IMPLEMENTATION};

/// `[apps]` and `[apps.sandbox]` of the configuration.
#[derive(Clone, Debug)]
pub struct AppLimits {
    /// Whether custom operations are served at all (Bots, Apps, implemented
    /// OperationDefinitions); `false` leaves only the built-in operations.
    pub enabled: bool,
    /// The most operations one App may declare.
    pub max_operations_per_app: usize,
    /// The longest one invocation may take, host calls and HTTP handlers included.
    pub operation_timeout: Duration,
    /// The JavaScript sandbox's limits.
    pub sandbox: flint_sandbox::Limits,
    /// Root certificates (PEM) that HTTP handlers trust instead of the Mozilla roots built
    /// in; `None` trusts the built-in roots. Check it with [`check_trusted_roots`].
    pub trusted_roots_pem: Option<String>,
}

/// Checks a PEM bundle of root certificates for [`AppLimits::trusted_roots_pem`]: the
/// number of certificates in it.
///
/// # Errors
/// A bundle that cannot be read or holds no certificate.
pub fn check_trusted_roots(pem: &str) -> std::result::Result<usize, String> {
    http::root_certificates(pem).map(|c| c.len())
}

impl Default for AppLimits {
    fn default() -> Self {
        AppLimits {
            enabled: true,
            max_operations_per_app: 50,
            operation_timeout: Duration::from_secs(30),
            sandbox: flint_sandbox::Limits::default(),
            trusted_roots_pem: None,
        }
    }
}

/// How a custom operation's own calls are made: with the caller's rights, or the Bot's or
/// App's own identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunAs {
    /// The caller's context (the default).
    Caller,
    /// The service identity of the Bot or App (`Bot/[id]`, `App/[id]`).
    Service,
}

/// The engine's state for custom operations.
#[derive(Default)]
pub(crate) struct State {
    /// Started on first use (tests and servers without scripts never start its threads).
    sandbox: OnceLock<Sandbox>,
    /// Compiled scripts by the version of what holds them (`Bot/1/_history/3`,
    /// `App/2/_history/1#risk`): compiled once per version, not per request.
    scripts: parking_lot::Mutex<HashMap<String, Arc<Script>>>,
    /// One reload at a time; a reload asked for while one runs is run again after it.
    reloading: parking_lot::Mutex<()>,
    pub(crate) audit: audit::Auditor,
    /// The HTTP client of HTTP handlers (built on first use).
    pub(crate) http: OnceLock<ureq::Agent>,
}

impl<S: Store> Engine<S> {
    /// The JavaScript sandbox (started on first use).
    pub(crate) fn sandbox(&self) -> &Sandbox {
        self.custom
            .sandbox
            .get_or_init(|| Sandbox::new(self.limits.apps.sandbox.clone()))
    }

    /// The compiled form of `code`, held by the version `key`: compiled on first use.
    ///
    /// # Errors
    /// A syntax error (400 naming the line), code without a handler, code too large.
    pub(crate) fn script(&self, key: &str, name: &str, code: &str) -> Result<Arc<Script>> {
        if let Some(s) = self.custom.scripts.lock().get(key) {
            return Ok(Arc::clone(s));
        }
        let script = self.sandbox().compile(name, code).map_err(|e| {
            let mut error =
                Error::invalid(format!("the JavaScript of {name} does not compile: {e}"));
            if let Some(line) = e.line {
                error = error.at(format!("line {line}"));
            }
            error
        })?;
        self.custom
            .scripts
            .lock()
            .insert(key.to_string(), Arc::clone(&script));
        Ok(script)
    }

    /// Rebuilds the operations in force from the built-in ones and what the store holds: every
    /// OperationDefinition implemented by a Bot, every active App. A custom operation that
    /// cannot be served (its Bot is missing or has no code that compiles, it clashes with one
    /// already served) is left out and logged; the rest are swapped in at once.
    ///
    /// # Errors
    /// A store fault (the operations in force stay as they were).
    pub fn reload_custom_operations(&self) -> Result<()> {
        let _one = self.custom.reloading.lock();
        if !self.limits.apps.enabled {
            self.set_operations(Catalog::builtin());
            return Ok(());
        }
        let loaded = source::load(self)?;
        let mut handlers: Vec<Arc<dyn Operation<S>>> = Vec::new();
        let mut keep: Vec<String> = Vec::new();
        for spec in loaded.operations {
            match handler::build(self, spec) {
                Ok((op, key)) => {
                    keep.extend(key);
                    handlers.push(Arc::new(op));
                }
                Err((what, e)) => {
                    tracing::warn!(operation = %what, error = %e, "a custom operation is not served");
                }
            }
        }
        let (catalog, refused) = Catalog::with_custom(handlers);
        for (url, e) in refused {
            tracing::warn!(operation = %url, error = %e, "a custom operation is not served");
        }
        self.set_operations(catalog);
        // Scripts of versions no longer served are dropped (Bots keep theirs: $execute).
        keep.extend(loaded.bot_keys);
        self.custom.scripts.lock().retain(|k, _| keep.contains(k));
        Ok(())
    }

    /// Checks a Bot, App or OperationDefinition about to be written, beyond its structure:
    /// what would make it unservable is refused now (400 naming the element), not discovered
    /// when it is invoked.
    ///
    /// # Errors
    /// The problem found.
    pub(crate) fn check_custom(&self, resource_type: &str, resource: &Value) -> Result<()> {
        match resource_type {
            "App" => source::check_app(self, resource),
            "Bot" => source::check_bot(self, resource),
            "OperationDefinition" => source::check_implemented(resource),
            _ => Ok(()),
        }
    }
}

impl<S: Store> Engine<S> {
    /// After a committed write of a Bot, App or OperationDefinition: the operations in force
    /// are rebuilt, and the synthesised definitions of App operations published, before the
    /// write is answered. (Publishing writes on the write path directly, so it does not come
    /// back here.)
    pub(crate) fn custom_written(&self) {
        if let Err(e) = self.reload_custom_operations() {
            tracing::error!(error = ?e, "cannot reload the custom operations");
            return;
        }
        if let Err(e) = self.publish_definitions(true) {
            tracing::error!(error = ?e, "cannot publish the definitions of App operations");
        }
    }
}

/// Whether a definition in force is synthesised for an App operation.
pub(crate) fn is_app_definition(definition: &crate::operations::Definition) -> bool {
    source::implementation(&definition.json).is_some_and(|r| r.starts_with("App/"))
}

/// Whether a definition in force is an OperationDefinition a user wrote (implemented by a
/// Bot): it is stored already, as written.
pub(crate) fn is_stored_definition(definition: &crate::operations::Definition) -> bool {
    source::implementation(&definition.json).is_some_and(|r| r.starts_with("Bot/"))
}

/// The ids of stored definitions of App operations that are no longer in force.
pub(crate) fn stale_app_definitions<S: Store>(
    engine: &Engine<S>,
    in_force: &std::collections::HashSet<String>,
) -> Result<Vec<String>> {
    Ok(source::all_of(engine, "OperationDefinition")?
        .into_iter()
        .map(|(od, _)| od)
        .filter(|od| source::implementation(od).is_some_and(|r| r.starts_with("App/")))
        .filter_map(|od| od["id"].as_str().map(str::to_string))
        .filter(|id| id.starts_with("app-") && !in_force.contains(id))
        .collect())
}

/// Whether writes of this type change the custom operations in force.
pub(crate) fn is_registry_type(resource_type: &str) -> bool {
    matches!(resource_type, "Bot" | "App" | "OperationDefinition")
}

/// The error of a sandbox run, as the client sees it.
pub(crate) fn run_error(what: &str, e: flint_sandbox::RunError, limits: &AppLimits) -> Error {
    use flint_sandbox::RunError as R;
    match e {
        R::Thrown {
            message,
            outcome: Some(outcome),
            ..
        } => handler::outcome_error(&outcome).unwrap_or_else(|| {
            Error::new(IssueType::Processing, format!("{what} failed: {message}")).with_status(400)
        }),
        R::Thrown { message, line, .. } => {
            let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
            Error::new(
                IssueType::Exception,
                format!("{what} failed: {message}{at}"),
            )
            .with_status(500)
        }
        R::TimeLimit { .. } => Error::new(
            IssueType::TooCostly,
            format!(
                "{what} ran longer than its limit of {} ms of JavaScript",
                limits.sandbox.max_execution.as_millis()
            ),
        )
        .with_status(500),
        R::Timeout => Error::new(
            IssueType::Timeout,
            format!(
                "{what} took longer than the operation timeout of {} s",
                limits.operation_timeout.as_secs()
            ),
        )
        .with_status(504),
        R::MemoryLimit { .. } => Error::new(
            IssueType::TooCostly,
            format!(
                "{what} used more than its memory limit of {} MB",
                limits.sandbox.max_memory_bytes / (1024 * 1024)
            ),
        )
        .with_status(500),
        R::StackOverflow => Error::new(
            IssueType::TooCostly,
            format!("{what} recursed too deeply (stack overflow)"),
        )
        .with_status(500),
        R::NeverSettled => Error::new(
            IssueType::Exception,
            format!("{what} returned a promise that never settles"),
        )
        .with_status(500),
        R::Cancelled => {
            Error::new(IssueType::Transient, format!("{what} was cancelled")).with_status(503)
        }
        R::Busy => crate::lanes::busy("every JavaScript worker is busy"),
        R::BadResult(why) => Error::new(
            IssueType::Exception,
            format!("{what} answered a value that is not JSON: {why}"),
        )
        .with_status(500),
        R::Internal(why) => Error::internal(format!("{what}: {why}")),
    }
}
