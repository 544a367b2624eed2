//! A FHIR request and response as the request core sees them, whoever sent them: the HTTP
//! adapter, an entry of a batch or transaction, the importer, and later operations and the
//! sandbox's `client`. [`route`] is the one place a method and a URL become an
//! [`Interaction`].

use bytes::Bytes;
use flint_fhir::{Error, Result};
use flint_store::Version;
use serde_json::Value;

/// The HTTP verb of a request (or of a Bundle entry's `request.method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn parse(s: &str) -> Option<Method> {
        Some(match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// Where an operation is invoked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperationTarget {
    System,
    Type(String),
    Instance(String, String),
    /// `[type]/[id]/_history/[vid]/$op`: one version of an instance.
    Version(String, String, String),
}

/// What a request asks for: the FHIR interaction and its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Interaction {
    Capabilities,
    Read {
        rt: String,
        id: String,
    },
    Vread {
        rt: String,
        id: String,
        vid: String,
    },
    /// `POST [type]`; with `If-None-Exist`, a conditional create.
    Create {
        rt: String,
    },
    Update {
        rt: String,
        id: String,
    },
    ConditionalUpdate {
        rt: String,
    },
    Patch {
        rt: String,
        id: String,
    },
    ConditionalPatch {
        rt: String,
    },
    Delete {
        rt: String,
        id: String,
    },
    ConditionalDelete {
        rt: String,
    },
    DeleteHistory {
        rt: String,
        id: String,
    },
    /// `GET [type]?…` or `POST [type]/_search`.
    SearchType {
        rt: String,
    },
    /// `GET [base]?_type=…`.
    SearchSystem,
    /// `GET [compartment]/[id]/[type]?…`.
    SearchCompartment {
        compartment: String,
        id: String,
        rt: String,
    },
    HistoryInstance {
        rt: String,
        id: String,
    },
    HistoryType {
        rt: String,
    },
    HistorySystem,
    /// `POST [base]` with a batch or transaction Bundle.
    Bundle,
    Operation {
        name: String,
        target: OperationTarget,
        method: Method,
    },
    /// A sealed paging link.
    Page {
        token: String,
    },
    AsyncStatus {
        id: String,
    },
    AsyncCancel {
        id: String,
    },
    /// One file of a finished bulk export (`__export/[job]/[file]`).
    ExportFile {
        job: String,
        file: String,
    },
}

impl Interaction {
    /// The FHIR name of the interaction, for logs, metrics and (later) authorization.
    pub fn name(&self) -> &'static str {
        match self {
            Interaction::Capabilities => "capabilities",
            Interaction::Read { .. } => "read",
            Interaction::Vread { .. } => "vread",
            Interaction::Create { .. } => "create",
            Interaction::Update { .. } | Interaction::ConditionalUpdate { .. } => "update",
            Interaction::Patch { .. } | Interaction::ConditionalPatch { .. } => "patch",
            Interaction::Delete { .. } | Interaction::ConditionalDelete { .. } => "delete",
            Interaction::DeleteHistory { .. } => "delete-history",
            Interaction::SearchType { .. }
            | Interaction::SearchCompartment { .. }
            | Interaction::Page { .. } => "search-type",
            Interaction::SearchSystem => "search-system",
            Interaction::HistoryInstance { .. } => "history-instance",
            Interaction::HistoryType { .. } => "history-type",
            Interaction::HistorySystem => "history-system",
            Interaction::Bundle => "batch",
            Interaction::Operation { .. } => "operation",
            Interaction::AsyncStatus { .. } | Interaction::AsyncCancel { .. } => "async-status",
            Interaction::ExportFile { .. } => "export-file",
        }
    }

    /// Whether the interaction is a read of one version by its key (read, vread, an
    /// asynchronous request's status): bounded work that runs on the thread it arrives on.
    pub fn is_point_read(&self) -> bool {
        matches!(
            self,
            Interaction::Read { .. } | Interaction::Vread { .. } | Interaction::AsyncStatus { .. }
        )
    }

    /// Whether `Prefer: respond-async` may run the interaction as a background job (SPEC
    /// section 5): searches, history, Bundles and operations.
    pub fn may_run_async(&self) -> bool {
        matches!(
            self,
            Interaction::SearchType { .. }
                | Interaction::SearchSystem
                | Interaction::SearchCompartment { .. }
                | Interaction::HistoryInstance { .. }
                | Interaction::HistoryType { .. }
                | Interaction::HistorySystem
                | Interaction::Bundle
                | Interaction::Operation { .. }
                | Interaction::Page { .. }
        )
    }

    /// Whether the interaction can take long or much memory (what may run in the
    /// background, and conditional writes, which search first): such work runs in the
    /// request core's bounded slow lane.
    pub fn is_costly(&self) -> bool {
        self.may_run_async()
            || matches!(
                self,
                Interaction::ConditionalUpdate { .. }
                    | Interaction::ConditionalPatch { .. }
                    | Interaction::ConditionalDelete { .. }
            )
    }
}

/// The request headers the FHIR interactions read. Everything else about HTTP stays in the
/// HTTP adapter.
#[derive(Clone, Debug, Default)]
pub struct Headers {
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    pub if_none_exist: Option<String>,
    /// Every `Prefer` header, joined with commas.
    pub prefer: Option<String>,
    pub content_type: Option<String>,
    /// The other headers of an operation's request, names in lower case (what a custom
    /// operation's code sees as `event.headers`); credentials and cookies are left out.
    pub others: Vec<(String, String)>,
}

impl Headers {
    /// The `Prefer` tokens (`return=minimal`, `handling=strict`, `respond-async`).
    fn prefer_tokens(&self) -> impl Iterator<Item = &str> {
        self.prefer
            .as_deref()
            .unwrap_or("")
            .split([',', ';'])
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }

    /// `Prefer: return=…` (representation when absent).
    pub fn prefer_return(&self) -> PreferReturn {
        for t in self.prefer_tokens() {
            match t.strip_prefix("return=").map(|s| s.trim_matches('"')) {
                Some("minimal") => return PreferReturn::Minimal,
                Some("representation") => return PreferReturn::Representation,
                Some("OperationOutcome") => return PreferReturn::OperationOutcome,
                _ => {}
            }
        }
        PreferReturn::Representation
    }

    /// `Prefer: respond-async`.
    pub fn respond_async(&self) -> bool {
        self.prefer_tokens().any(|t| t == "respond-async")
    }

    /// `Prefer: handling=strict`.
    pub fn strict_handling(&self) -> bool {
        self.prefer_tokens().any(|t| t == "handling=strict")
    }
}

/// What `Prefer: return=` asks to see of written resources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PreferReturn {
    Minimal,
    #[default]
    Representation,
    OperationOutcome,
}

/// A request body: bytes as they came over HTTP (parsed by the interaction that reads them),
/// or a value already parsed (a Bundle entry's resource).
#[derive(Clone, Debug, Default)]
pub enum Body {
    #[default]
    None,
    Bytes(Bytes),
    Json(Value),
}

/// One FHIR request.
#[derive(Clone, Debug)]
pub struct Request {
    pub interaction: Interaction,
    /// Query parameters in order (repeated ones kept); for `POST _search`, the form's too.
    pub params: Vec<(String, String)>,
    pub headers: Headers,
    pub body: Body,
    /// The method, path and query it was routed from ([`Request::parse`]): what a
    /// background job keeps to run it again after a restart.
    pub origin: Option<(Method, String, Option<String>)>,
}

impl Request {
    pub fn new(interaction: Interaction) -> Request {
        Request {
            interaction,
            params: Vec::new(),
            headers: Headers::default(),
            body: Body::None,
            origin: None,
        }
    }

    /// Routes `method path?query` (the path relative to the FHIR base).
    ///
    /// # Errors
    /// As [`route`].
    pub fn parse(method: Method, path: &str, query: Option<&str>) -> Result<Request> {
        let mut request = Request::new(route(method, path, query)?);
        request.params = query.map(crate::search::parse_query).unwrap_or_default();
        request.origin = Some((method, path.to_string(), query.map(str::to_string)));
        Ok(request)
    }

    pub fn with_body(mut self, body: Body) -> Request {
        self.body = body;
        self
    }

    pub fn with_headers(mut self, headers: Headers) -> Request {
        self.headers = headers;
        self
    }

    /// The first value of a parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a response carries.
#[derive(Clone, Debug, Default)]
pub enum Payload {
    #[default]
    None,
    /// A stored resource, as the bytes it was stored as.
    Stored(Bytes),
    /// A resource the server built (an OperationOutcome, a subset, a CapabilityStatement).
    Value(Value),
    /// JSON text assembled by the server (a Bundle written as text).
    Text(String),
}

/// One FHIR response.
#[derive(Clone, Debug, Default)]
pub struct Response {
    pub status: u16,
    pub payload: Payload,
    /// The version the response is about: `ETag` and `Last-Modified`.
    pub version: Option<(u64, i64)>,
    /// `Location` (the versioned URL of what was written).
    pub location: Option<String>,
    /// `Content-Location` (a created resource, or an asynchronous request's status URL).
    pub content_location: Option<String>,
    /// Other headers (`X-Progress`, `Retry-After`).
    pub headers: Vec<(&'static str, String)>,
    /// The resource's URL, for the `fullUrl` of a Bundle entry.
    pub full_url: Option<String>,
    /// A body that is not a FHIR resource (a bulk export's manifest, its NDJSON files): its
    /// media type, written as it is whatever format was negotiated.
    pub content_type: Option<&'static str>,
}

impl Response {
    pub fn new(status: u16, payload: Payload) -> Response {
        Response {
            status,
            payload,
            ..Response::default()
        }
    }

    /// A stored version as the response's resource, with its ETag and Last-Modified.
    pub fn version(status: u16, v: &Version) -> Response {
        Response {
            status,
            payload: v.json.clone().map_or(Payload::None, Payload::Stored),
            version: Some((v.version, v.last_updated)),
            ..Response::default()
        }
    }

    /// The payload as JSON text (for a Bundle entry or a test).
    pub fn payload_text(&self) -> Option<std::borrow::Cow<'_, str>> {
        match &self.payload {
            Payload::None => None,
            Payload::Stored(b) => Some(String::from_utf8_lossy(b)),
            Payload::Value(v) => Some(v.to_string().into()),
            Payload::Text(t) => Some(t.as_str().into()),
        }
    }
}

/// `Type?criteria` / `Type/id` segments, with percent-decoding of each segment.
fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

/// Splits `$name` off a path segment.
fn operation_name(segment: &str) -> Option<&str> {
    segment.strip_prefix('$').filter(|n| !n.is_empty())
}

fn not_allowed(method: Method, path: &str) -> Error {
    Error::not_supported(format!("{} is not allowed on /{path}", method.as_str())).with_status(405)
}

/// The interaction that `method` on `path` (relative to the FHIR base) names. Types and ids
/// are checked by the interactions themselves (404 for an unknown type).
///
/// # Errors
/// 404 for a path that names nothing, 405 for a method the path does not take.
pub fn route(method: Method, path: &str, query: Option<&str>) -> Result<Interaction> {
    let path = path.trim_matches('/');
    let parts = segments(path);
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let has_query = query.is_some_and(|q| !q.trim().is_empty());
    let s = |x: &str| x.to_string();
    let op = |name: &str, target: OperationTarget| Interaction::Operation {
        name: s(name),
        target,
        method,
    };
    let get = matches!(method, Method::Get | Method::Head);
    Ok(match (parts.as_slice(), method) {
        ([], _) if get => Interaction::SearchSystem,
        ([], Method::Post) => Interaction::Bundle,
        (["metadata"], _) if get => Interaction::Capabilities,
        (["_history"], _) if get => Interaction::HistorySystem,
        (["__page", token], _) if get => Interaction::Page { token: s(token) },
        (["__async-status", id], _) if get => Interaction::AsyncStatus { id: s(id) },
        (["__async-status", id], Method::Delete) => Interaction::AsyncCancel { id: s(id) },
        (["__export", job, file], _) if get => Interaction::ExportFile {
            job: s(job),
            file: s(file),
        },
        (["metadata" | "_history"] | ["__page" | "__async-status", _] | ["__export", _, _], _) => {
            return Err(not_allowed(method, path))
        }
        ([name], Method::Get | Method::Head | Method::Post) if operation_name(name).is_some() => {
            op(&name[1..], OperationTarget::System)
        }
        ([rt], _) if get => Interaction::SearchType { rt: s(rt) },
        ([rt], Method::Post) => Interaction::Create { rt: s(rt) },
        ([rt], Method::Put) if has_query => Interaction::ConditionalUpdate { rt: s(rt) },
        ([rt], Method::Patch) if has_query => Interaction::ConditionalPatch { rt: s(rt) },
        ([rt], Method::Delete) if has_query => Interaction::ConditionalDelete { rt: s(rt) },
        ([_], Method::Put | Method::Patch | Method::Delete) => {
            return Err(Error::invalid(
                "a conditional interaction on a type needs search criteria in the query string",
            ))
        }
        ([rt, "_search"], Method::Post) => Interaction::SearchType { rt: s(rt) },
        ([rt, "_history"], _) if get => Interaction::HistoryType { rt: s(rt) },
        ([rt, name], Method::Get | Method::Head | Method::Post)
            if operation_name(name).is_some() =>
        {
            op(&name[1..], OperationTarget::Type(s(rt)))
        }
        ([rt, id], _) if get => Interaction::Read {
            rt: s(rt),
            id: s(id),
        },
        ([rt, id], Method::Put) => Interaction::Update {
            rt: s(rt),
            id: s(id),
        },
        ([rt, id], Method::Patch) => Interaction::Patch {
            rt: s(rt),
            id: s(id),
        },
        ([rt, id], Method::Delete) => Interaction::Delete {
            rt: s(rt),
            id: s(id),
        },
        ([_, _], Method::Post) => {
            return Err(
                Error::not_supported("POST is not allowed here (only operations: $name)")
                    .with_status(405),
            )
        }
        ([rt, id, "_history"], _) if get => Interaction::HistoryInstance {
            rt: s(rt),
            id: s(id),
        },
        ([rt, id, "_history"], Method::Delete) => Interaction::DeleteHistory {
            rt: s(rt),
            id: s(id),
        },
        ([rt, id, name], Method::Get | Method::Head | Method::Post)
            if operation_name(name).is_some() =>
        {
            op(&name[1..], OperationTarget::Instance(s(rt), s(id)))
        }
        ([compartment, id, rt], _) if get => Interaction::SearchCompartment {
            compartment: s(compartment),
            id: s(id),
            rt: s(rt),
        },
        ([rt, id, "_history", vid, name], Method::Get | Method::Head | Method::Post)
            if operation_name(name).is_some() =>
        {
            op(&name[1..], OperationTarget::Version(s(rt), s(id), s(vid)))
        }
        ([rt, id, "_history", vid], _) if get => Interaction::Vread {
            rt: s(rt),
            id: s(id),
            vid: s(vid),
        },
        ([] | [_] | [_, _] | [_, _, _] | [_, _, "_history", _], _) => {
            return Err(not_allowed(method, path))
        }
        _ => {
            return Err(Error::not_found(format!(
                "no such endpoint: {} /{path}",
                method.as_str()
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        use Interaction as I;
        let r = |m, p: &str, q: Option<&str>| route(m, p, q);
        assert_eq!(
            r(Method::Get, "Patient/1", None).unwrap(),
            I::Read {
                rt: "Patient".into(),
                id: "1".into()
            }
        );
        assert_eq!(
            r(Method::Get, "/Patient/1/_history/2", None).unwrap(),
            I::Vread {
                rt: "Patient".into(),
                id: "1".into(),
                vid: "2".into()
            }
        );
        assert_eq!(
            r(Method::Put, "Patient", Some("identifier=x")).unwrap(),
            I::ConditionalUpdate {
                rt: "Patient".into()
            }
        );
        assert_eq!(r(Method::Put, "Patient", None).unwrap_err().status(), 400);
        assert_eq!(
            r(Method::Post, "Patient/1", None).unwrap_err().status(),
            405
        );
        assert_eq!(
            r(Method::Delete, "metadata/x/y/z/w", None)
                .unwrap_err()
                .status(),
            404
        );
        assert!(matches!(
            r(Method::Post, "Patient/1/$everything", None).unwrap(),
            I::Operation {
                target: OperationTarget::Instance(..),
                ..
            }
        ));
        assert_eq!(
            r(Method::Get, "Patient/1/Observation", None).unwrap(),
            I::SearchCompartment {
                compartment: "Patient".into(),
                id: "1".into(),
                rt: "Observation".into()
            }
        );
        assert_eq!(r(Method::Post, "", None).unwrap(), I::Bundle);
        assert_eq!(
            r(Method::Delete, "__async-status/abc", None).unwrap(),
            I::AsyncCancel { id: "abc".into() }
        );
    }

    #[test]
    fn prefer() {
        let h = Headers {
            prefer: Some("handling=strict, return=minimal".into()),
            ..Headers::default()
        };
        assert!(h.strict_handling());
        assert_eq!(h.prefer_return(), PreferReturn::Minimal);
    }
}
