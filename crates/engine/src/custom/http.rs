//! The `http` handler: an invocation forwarded to a service, its answer relayed.
//!
//! The service receives, as JSON (`POST`, `PUT`, `PATCH`; for `GET` and `DELETE` the query
//! string and headers only): the operation's code and level, the target (type, id, and the
//! resource at the instance level), the input as the caller sent it, the caller, the request
//! and invocation ids, and the App. Headers `X-Request-Id`, `X-Flint-Invocation`,
//! `X-Flint-Operation` and the handler's own are sent. A 2xx JSON answer is shaped by the
//! definition's outputs like a script's; a non-2xx OperationOutcome is passed through with
//! the service's status; anything else, a timeout or a connection error is a clear
//! OperationOutcome (502 or 504).

use std::sync::Arc;
use std::time::Duration;

use flint_fhir::{Error, IssueType, Result};
use flint_store::Store;
use serde_json::{json, Value};

use super::source::Owner;
use crate::operations::Call;
use crate::Engine;

/// Where an `http` handler sends its invocations.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub url: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
}

/// The most a service's answer may hold.
const MAX_ANSWER: u64 = 16 * 1024 * 1024;

/// The certificates of a PEM bundle.
pub(crate) fn root_certificates(
    pem: &str,
) -> std::result::Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(pem.as_bytes()) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => out.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("the trusted roots are not valid PEM: {e}")),
        }
    }
    if out.is_empty() {
        return Err("the trusted roots hold no certificate".into());
    }
    Ok(out)
}

/// The engine's agent: its connections to each service are kept and reused. TLS trusts the
/// Mozilla roots built in, or only the configured roots.
fn agent<S: Store>(engine: &Engine<S>) -> &ureq::Agent {
    engine.custom.http.get_or_init(|| {
        let roots = engine
            .limits()
            .apps
            .trusted_roots_pem
            .as_deref()
            .map(root_certificates);
        let roots = match roots {
            None => ureq::tls::RootCerts::WebPki,
            Some(Ok(certs)) => ureq::tls::RootCerts::Specific(Arc::new(certs)),
            Some(Err(e)) => {
                // Checked at start; a bundle that went bad trusts nothing rather than all.
                tracing::error!(error = %e, "HTTP handlers cannot use the trusted roots");
                ureq::tls::RootCerts::Specific(Arc::new(Vec::new()))
            }
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("flint/", env!("CARGO_PKG_VERSION")))
            .tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build())
            .build();
        ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::new(),
            LiteralFirst::default(),
        )
    })
}

/// Resolves an IP address written in the URL on the spot. ureq's resolver, when the call has
/// a timeout, runs every lookup on a thread of its own, even for `127.0.0.1`, which cost a
/// thread start per invocation; names still go to it.
#[derive(Debug, Default)]
struct LiteralFirst {
    names: ureq::unversioned::resolver::DefaultResolver,
}

impl ureq::unversioned::resolver::Resolver for LiteralFirst {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let literal = uri.authority().and_then(|authority| {
            let host = authority.host();
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            let ip: std::net::IpAddr = host.parse().ok()?;
            let port = authority.port_u16().or(match uri.scheme_str() {
                Some("https") => Some(443),
                Some("http") => Some(80),
                _ => None,
            })?;
            Some(std::net::SocketAddr::new(ip, port))
        });
        match literal {
            Some(addr) => {
                let mut out = self.empty();
                out.push(addr);
                Ok(out)
            }
            None => self.names.resolve(uri, config, timeout),
        }
    }
}

/// The JSON a service receives.
fn payload(call: &Call<'_>, owner: &Owner, invocation: &str, code: &str) -> Value {
    let event = super::handler::event(call, owner, invocation, true);
    json!({
        "operation": code,
        "level": event["target"]["level"],
        "resourceType": event["target"]["resourceType"],
        "id": event["target"]["id"],
        "resource": event["target"]["resource"],
        "input": event["input"],
        "contentType": event["contentType"],
        "caller": event["caller"],
        "requestId": call.ctx.request_id,
        "invocationId": invocation,
        "app": {"reference": owner.reference, "display": owner.name, "version": owner.version},
        "baseUrl": call.ctx.base_url,
    })
}

fn bad_gateway(message: String) -> Error {
    Error::new(IssueType::Exception, message).with_status(502)
}

/// Forwards one invocation; the JSON the service answered (`None` for an empty 2xx).
pub(crate) fn forward<S: Store>(
    engine: &Arc<Engine<S>>,
    target: &Target,
    call: &Call<'_>,
    owner: &Owner,
    invocation: &str,
    code: &str,
    timeout: Duration,
) -> Result<Option<Value>> {
    let mut url = target.url.clone();
    let with_body = matches!(target.method.as_str(), "POST" | "PUT" | "PATCH");
    if !with_body && !call.raw.query.is_empty() {
        let query: Vec<String> = call
            .raw
            .query
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&query.join("&"));
    }
    let mut headers: Vec<(String, String)> = vec![
        ("X-Request-Id".into(), call.ctx.request_id.clone()),
        ("X-Flint-Invocation".into(), invocation.to_string()),
        ("X-Flint-Operation".into(), code.to_string()),
        (
            "Accept".into(),
            "application/fhir+json, application/json".into(),
        ),
    ];
    if let Some(rt) = &call.target.resource_type {
        let mut t = rt.clone();
        if let Some(id) = &call.target.id {
            t.push('/');
            t.push_str(id);
        }
        headers.push(("X-Flint-Target".into(), t));
    }
    headers.extend(target.headers.iter().cloned());
    let agent = agent(engine);
    let sent = match target.method.as_str() {
        "POST" | "PUT" | "PATCH" => {
            let body = payload(call, owner, invocation, code).to_string();
            let mut request = match target.method.as_str() {
                "PUT" => agent.put(&url),
                "PATCH" => agent.patch(&url),
                _ => agent.post(&url),
            };
            for (k, v) in &headers {
                request = request.header(k, v);
            }
            request
                .header("Content-Type", "application/json")
                .config()
                .timeout_global(Some(timeout))
                .build()
                .send(body.as_bytes())
        }
        method => {
            let mut request = if method == "DELETE" {
                agent.delete(&url)
            } else {
                agent.get(&url)
            };
            for (k, v) in &headers {
                request = request.header(k, v);
            }
            request
                .config()
                .timeout_global(Some(timeout))
                .build()
                .call()
        }
    };
    let mut response = sent.map_err(|e| match e {
        ureq::Error::Timeout(_) => Error::new(
            IssueType::Timeout,
            format!(
                "the service at {} did not answer within {} ms",
                target.url,
                timeout.as_millis()
            ),
        )
        .with_status(504),
        other => bad_gateway(format!(
            "the service at {} cannot be reached: {other}",
            target.url
        )),
    })?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::Timeout(_) => Error::new(
                IssueType::Timeout,
                format!(
                    "the service at {} did not finish its answer in time",
                    target.url
                ),
            )
            .with_status(504),
            other => bad_gateway(format!(
                "the answer of the service at {} cannot be read: {other}",
                target.url
            )),
        })?;
    let json: Option<Value> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => Some(v),
            Err(_) if (200..300).contains(&status) => {
                return Err(bad_gateway(format!(
                    "the service at {} answered something that is not JSON",
                    target.url
                )))
            }
            Err(_) => None,
        }
    };
    if (200..300).contains(&status) {
        return Ok(json);
    }
    if let Some(outcome) = json
        .as_ref()
        .filter(|j| j["resourceType"] == "OperationOutcome")
    {
        // The service's own OperationOutcome, passed through with its status.
        let error = super::handler::outcome_error(outcome).unwrap_or_else(|| {
            Error::new(
                IssueType::Processing,
                format!("the service at {} answered {status}", target.url),
            )
        });
        return Err(error.with_status(status.clamp(400, 599)));
    }
    let snippet: String = String::from_utf8_lossy(&body).chars().take(200).collect();
    Err(bad_gateway(format!(
        "the service at {} answered {status}{}",
        target.url,
        if snippet.trim().is_empty() {
            String::new()
        } else {
            format!(": {}", snippet.trim())
        }
    )))
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod resolver_tests {
    use super::LiteralFirst;
    use ureq::unversioned::resolver::Resolver;
    use ureq::unversioned::transport::NextTimeout;

    fn resolve(url: &str) -> Vec<std::net::SocketAddr> {
        let uri: ureq::http::Uri = url.parse().unwrap();
        let config = ureq::Agent::config_builder().build();
        let timeout = NextTimeout {
            after: ureq::unversioned::transport::time::Duration::from_secs(5),
            reason: ureq::Timeout::Resolve,
            ..NextTimeout::default()
        };
        LiteralFirst::default()
            .resolve(&uri, &config, timeout)
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn literals_resolve_on_the_spot_and_names_still_resolve() {
        assert_eq!(
            resolve("http://127.0.0.1:8185/score"),
            vec!["127.0.0.1:8185".parse().unwrap()]
        );
        assert_eq!(resolve("http://[::1]/x"), vec!["[::1]:80".parse().unwrap()]);
        assert!(resolve("http://localhost:9/")
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 9));
    }
}
