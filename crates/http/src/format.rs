//! Content negotiation and the request's FHIR parameters: `_format`, `_pretty`, `_summary`,
//! `_elements`, `Accept`, `Content-Type`, `Prefer`, and the base URL the client sees.

use axum::http::{header, HeaderMap};
use flint_fhir::Error;

/// The media type the response is written as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaType {
    FhirJson,
    Json,
    FhirXml,
    Xml,
}

impl MediaType {
    pub fn content_type(self) -> &'static str {
        match self {
            MediaType::FhirJson => "application/fhir+json;charset=utf-8",
            MediaType::Json => "application/json;charset=utf-8",
            MediaType::FhirXml => "application/fhir+xml;charset=utf-8",
            MediaType::Xml => "application/xml;charset=utf-8",
        }
    }

    pub fn is_xml(self) -> bool {
        matches!(self, MediaType::FhirXml | MediaType::Xml)
    }
}

/// Whether a request's `Content-Type` is one of the XML forms of FHIR.
pub fn is_xml_content(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        matches!(
            media_from_name(ct),
            Some(Some(MediaType::FhirXml | MediaType::Xml))
        )
    })
}

/// What the request asked for its response's form (`_summary` and `_elements` are the
/// engine's: they shape the resource, and apply in Bundle entries too).
#[derive(Clone, Debug)]
pub struct Output {
    pub media: MediaType,
    pub pretty: bool,
}

/// Decoded query parameters, in order, repeated ones kept.
pub type Params = Vec<(String, String)>;

pub fn parse_query(query: Option<&str>) -> Params {
    query
        .map(flint_engine::search::parse_query)
        .unwrap_or_default()
}

pub fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn media_from_name(name: &str) -> Option<Option<MediaType>> {
    let essence = name
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Some(match essence.as_str() {
        "json" | "application/fhir+json" | "application/json+fhir" => Some(MediaType::FhirJson),
        "application/json" => Some(MediaType::Json),
        "xml" | "application/fhir+xml" | "application/xml+fhir" => Some(MediaType::FhirXml),
        "application/xml" | "text/xml" => Some(MediaType::Xml),
        "*/*" | "application/*" | "" => None,
        _ => return None,
    })
}

/// Negotiates the response format from `_format` and `Accept`.
///
/// # Errors
/// 406 when the client accepts neither JSON nor XML.
pub fn negotiate(params: &Params, headers: &HeaderMap) -> Result<Output, Error> {
    let not_acceptable = |what: &str| {
        Error::not_supported(format!(
            "cannot produce {what}; this server speaks application/fhir+json and application/fhir+xml"
        ))
        .with_status(406)
    };
    let media = if let Some(f) = param(params, "_format") {
        match media_from_name(f) {
            Some(m) => m.unwrap_or(MediaType::FhirJson),
            None => return Err(not_acceptable(f)),
        }
    } else if let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
        let mut chosen = None;
        let mut any = false;
        for item in accept.split(',') {
            if let Some(m) = media_from_name(item) {
                any = true;
                if chosen.is_none() {
                    chosen = m;
                }
            }
        }
        if !any && !accept.trim().is_empty() {
            return Err(not_acceptable(accept));
        }
        chosen.unwrap_or(MediaType::FhirJson)
    } else {
        MediaType::FhirJson
    };
    let pretty = param(params, "_pretty") == Some("true");
    Ok(Output { media, pretty })
}

/// The absolute base URL: configured, else from forwarding headers, else the `Host` header.
pub fn base_url(configured: Option<&str>, context_path: &str, headers: &HeaderMap) -> String {
    if let Some(base) = configured {
        return base.trim_end_matches('/').to_string();
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let mut proto = None;
    let mut host = None;
    if let Some(forwarded) = header("forwarded") {
        // Only the first (client-nearest) element counts.
        for pair in forwarded.split(',').next().unwrap_or("").split(';') {
            if let Some((k, v)) = pair.split_once('=') {
                let v = v.trim().trim_matches('"');
                match k.trim().to_ascii_lowercase().as_str() {
                    "proto" => proto = Some(v.to_string()),
                    "host" => host = Some(v.to_string()),
                    _ => {}
                }
            }
        }
    }
    if host.is_none() {
        host =
            header("x-forwarded-host").map(|h| h.split(',').next().unwrap_or(h).trim().to_string());
        if proto.is_none() {
            proto = header("x-forwarded-proto")
                .map(|p| p.split(',').next().unwrap_or(p).trim().to_string());
        }
    }
    let host = host
        .or_else(|| header("host").map(str::to_string))
        .unwrap_or_else(|| "localhost:8080".into());
    let proto = proto.unwrap_or_else(|| "http".into());
    format!("{proto}://{host}{context_path}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn base_url_sources_in_order() {
        let h = headers(&[
            ("host", "a:1"),
            ("x-forwarded-host", "b.org"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(base_url(None, "/fhir", &h), "https://b.org/fhir");
        let h = headers(&[
            ("host", "a:1"),
            ("forwarded", "for=1.2.3.4;proto=https;host=c.org, host=d"),
        ]);
        assert_eq!(base_url(None, "/fhir", &h), "https://c.org/fhir");
        assert_eq!(
            base_url(None, "/fhir", &headers(&[("host", "a:1")])),
            "http://a:1/fhir"
        );
        assert_eq!(
            base_url(Some("https://x/y/"), "/fhir", &headers(&[("host", "a")])),
            "https://x/y"
        );
    }

    #[test]
    fn negotiation() {
        let p = parse_query(Some("_format=xml"));
        assert_eq!(
            negotiate(&p, &HeaderMap::new()).unwrap().media,
            MediaType::FhirXml
        );
        let p = parse_query(Some("_format=turtle"));
        assert_eq!(negotiate(&p, &HeaderMap::new()).unwrap_err().status(), 406);
        let h = headers(&[("accept", "application/fhir+xml")]);
        assert_eq!(
            negotiate(&Vec::new(), &h).unwrap().media,
            MediaType::FhirXml
        );
        let h = headers(&[("accept", "text/turtle")]);
        assert_eq!(negotiate(&Vec::new(), &h).unwrap_err().status(), 406);
        assert!(is_xml_content(Some("application/fhir+xml; charset=utf-8")));
        assert!(!is_xml_content(Some("application/fhir+json")));
        let h = headers(&[("accept", "application/json")]);
        assert_eq!(negotiate(&Vec::new(), &h).unwrap().media, MediaType::Json);
        let h = headers(&[("accept", "text/html, */*;q=0.8")]);
        assert_eq!(
            negotiate(&Vec::new(), &h).unwrap().media,
            MediaType::FhirJson
        );
        assert_eq!(
            parse_query(Some("a=b%20c&d=e+f&g")),
            vec![
                ("a".into(), "b c".into()),
                ("d".into(), "e f".into()),
                ("g".into(), String::new())
            ]
        );
    }
}
