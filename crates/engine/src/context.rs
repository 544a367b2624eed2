//! The request context every interaction receives: who is calling, for which tenant, under
//! which base URL the server is seen, the request's id for logs, and when its work must stop.
//! Authentication and authorization fill in the caller later without touching the
//! interactions.

use flint_store::Interrupt;

/// Who is calling.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// The authenticated subject (user, client or service), `None` when anonymous.
    pub subject: Option<String>,
    /// The FHIR resource the caller is linked to (`Patient/123`), if any.
    pub fhir_user: Option<String>,
    /// Granted scopes (SMART style); empty when anonymous access is open.
    pub scopes: Vec<String>,
}

/// One request's context.
#[derive(Clone, Debug)]
pub struct Context {
    pub caller: Caller,
    /// The tenant served; `default` on a single-tenant server.
    pub tenant: String,
    /// The absolute base URL, without a trailing slash (`http://localhost:8080/fhir`).
    pub base_url: String,
    /// The request's id, in every log line about it (and the `X-Request-Id` header).
    pub request_id: String,
    /// Set when the client has gone; carries the deadline of costly work.
    pub interrupt: Interrupt,
    /// The background job the work belongs to (an asynchronous request), if any: its store
    /// transactions claim the job and are counted.
    pub job: Option<crate::jobs::JobMark>,
}

/// A request id unique within this process's life and across processes in practice: a
/// random prefix drawn once, and a counter (no randomness, no system call per request).
pub fn next_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| crate::new_id()[..8].to_string());
    format!("{prefix}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

impl Context {
    pub fn new(base_url: impl Into<String>) -> Context {
        Context::for_request(base_url, next_request_id())
    }

    /// The context of a request whose id the caller already has (`X-Request-Id`).
    pub fn for_request(base_url: impl Into<String>, request_id: String) -> Context {
        Context {
            caller: Caller::default(),
            tenant: "default".into(),
            base_url: base_url.into(),
            request_id,
            interrupt: Interrupt::new(),
            job: None,
        }
    }

    /// `base/Type/id`.
    pub fn url(&self, resource_type: &str, id: &str) -> String {
        format!("{}/{resource_type}/{id}", self.base_url)
    }

    /// `base/Type/id/_history/version`.
    pub fn versioned_url(&self, resource_type: &str, id: &str, version: u64) -> String {
        format!("{}/{resource_type}/{id}/_history/{version}", self.base_url)
    }

    /// Whose state a paging link or an asynchronous request is: the tenant and the caller.
    pub fn owner(&self) -> String {
        format!(
            "{}\u{1}{}",
            self.tenant,
            self.caller.subject.as_deref().unwrap_or("")
        )
    }
}
