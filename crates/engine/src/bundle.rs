//! Writing Bundles as text, with stored resources copied in as the bytes they were stored
//! as: a history page or a transaction response never re-parses or re-serializes resources.

use flint_store::Version;
use serde_json::{json, Value};

use crate::Context;

/// Builds a Bundle's JSON incrementally.
pub struct BundleBuilder {
    out: String,
    entries: usize,
}

impl BundleBuilder {
    /// Starts a Bundle of `bundle_type` with an optional `total` and `link`s (relation, URL).
    pub fn new(bundle_type: &str, total: Option<u64>, links: &[(&str, String)]) -> BundleBuilder {
        let mut head = json!({
            "resourceType": "Bundle",
            "id": crate::new_id(),
            "type": bundle_type,
        });
        if let Some(total) = total {
            head["total"] = json!(total);
        }
        if !links.is_empty() {
            head["link"] = Value::Array(
                links
                    .iter()
                    .map(|(rel, url)| json!({"relation": rel, "url": url}))
                    .collect(),
            );
        }
        let mut out = head.to_string();
        out.pop(); // reopen the object
        out.push_str(",\"entry\":[");
        BundleBuilder { out, entries: 0 }
    }

    /// Adds an entry. `fields` are the entry's other elements (`search`, `request`,
    /// `response`), written after `fullUrl` and `resource`.
    pub fn entry(
        &mut self,
        full_url: Option<&str>,
        resource: Option<&[u8]>,
        fields: &[(&str, Value)],
    ) {
        if self.entries > 0 {
            self.out.push(',');
        }
        self.entries += 1;
        self.out.push('{');
        let mut first = true;
        let mut sep = |out: &mut String| {
            if !first {
                out.push(',');
            }
            first = false;
        };
        if let Some(url) = full_url {
            sep(&mut self.out);
            self.out.push_str("\"fullUrl\":");
            self.out
                .push_str(&Value::String(url.to_string()).to_string());
        }
        if let Some(bytes) = resource {
            sep(&mut self.out);
            self.out.push_str("\"resource\":");
            // Stored resources are JSON written by this server from parsed values.
            self.out.push_str(&String::from_utf8_lossy(bytes));
        }
        for (name, value) in fields {
            sep(&mut self.out);
            self.out
                .push_str(&Value::String((*name).to_string()).to_string());
            self.out.push(':');
            self.out.push_str(&value.to_string());
        }
        self.out.push('}');
    }

    /// Adds a history entry for a stored version.
    pub fn history_entry(&mut self, ctx: &Context, v: &Version) {
        let url = ctx.url(&v.resource_type, &v.id);
        let request_url = match v.method {
            flint_store::Method::Create => v.resource_type.clone(),
            _ => format!("{}/{}", v.resource_type, v.id),
        };
        let status = match v.method {
            flint_store::Method::Create => "201 Created",
            flint_store::Method::Update if v.version == 1 => "201 Created",
            flint_store::Method::Update => "200 OK",
            flint_store::Method::Delete => "204 No Content",
        };
        let response = json!({
            "status": status,
            "etag": format!("W/\"{}\"", v.version),
            "lastModified": flint_fhir::datetime::format_instant(v.last_updated),
        });
        self.entry(
            Some(&url),
            v.json.as_deref(),
            &[
                (
                    "request",
                    json!({"method": v.method.http_method(), "url": request_url}),
                ),
                ("response", response),
            ],
        );
    }

    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    pub fn finish(mut self) -> String {
        if self.entries == 0 {
            // No entries: drop the opened array.
            let cut = self.out.len() - ",\"entry\":[".len();
            self.out.truncate(cut);
            self.out.push('}');
        } else {
            self.out.push_str("]}");
        }
        self.out
    }
}

/// The status line of an entry response (`201 Created`).
pub fn status_line(status: u16) -> String {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        _ if status >= 500 => "Internal Server Error",
        _ => "",
    };
    format!("{status} {reason}").trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_valid_json_with_raw_resources() {
        let mut b = BundleBuilder::new(
            "history",
            Some(2),
            &[("self", "http://x/fhir/_history".into())],
        );
        b.entry(
            Some("http://x/fhir/Patient/1"),
            Some(br#"{"resourceType":"Patient","id":"1"}"#),
            &[("request", json!({"method": "POST"}))],
        );
        b.entry(
            None,
            None,
            &[("response", json!({"status": "204 No Content"}))],
        );
        let v: Value = serde_json::from_str(&b.finish()).unwrap();
        assert_eq!(v["total"], 2);
        assert_eq!(v["entry"][0]["resource"]["id"], "1");
        assert_eq!(v["entry"][1]["response"]["status"], "204 No Content");
        let empty: Value =
            serde_json::from_str(&BundleBuilder::new("history", Some(0), &[]).finish()).unwrap();
        assert!(empty.get("entry").is_none());
    }
}
