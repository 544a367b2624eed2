//! The request context every interaction receives: who is calling, for which tenant, and
//! under which base URL the server is seen. Authentication and authorization fill in the
//! caller later without touching the interactions.

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
}

impl Context {
    pub fn new(base_url: impl Into<String>) -> Context {
        Context {
            caller: Caller::default(),
            tenant: "default".into(),
            base_url: base_url.into(),
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
}
