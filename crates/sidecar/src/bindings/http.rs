//! `bindings.http`: an HTTP endpoint as an output binding, as Dapr's HTTP
//! binding calls it. Each call is one request to the component's `url`.
//!
//! Metadata:
//! - `url` (required): the base URL, `http://` or `https://`;
//! - `responseTimeout`: a Go duration that bounds a whole call, answer
//!   included (none by default, as in daprd);
//! - `maxResponseBodySize`: how much of an answer's body is read (`100Mi`
//!   by default; `0` or less: all of it). What is past it is cut off, as
//!   daprd cuts it, with a warning;
//! - `errorIfNot2XX` (default `true`): whether an answer other than 2xx is
//!   an error;
//! - `securityToken` and `securityTokenHeader`: a header sent on every call;
//! - `MTLSRootCA`, `MTLSClientCert`, `MTLSClientKey`: PEM, as text or the
//!   path of a file; `https://` is checked against the root CA (the
//!   system's trusted roots without it), and the client certificate is
//!   shown to the server. `MTLSRenegotiation` may only be
//!   `RenegotiateNever`: the TLS library never renegotiates.
//!
//! The operation is the method: `get`, `head`, `post`, `put`, `patch`,
//! `delete`, `options`, `trace`, and `create` for `POST`. The request's
//! metadata says the rest:
//! - `path` is appended to `url`, with one `/` between them;
//! - every key that starts with a capital letter is a header
//!   (`Content-Type` and `Accept` default to JSON);
//! - `traceparent`, `tracestate` and `baggage` are sent as headers: the
//!   sidecar puts the call's own trace context there ([`super::traced`]);
//! - `errorIfNot2XX` overrides the component's.
//!
//! The answer's body is the binding's data, and its metadata are
//! `statusCode`, `status` (`404 Not Found`) and each response header, its
//! name as Go writes it (`Content-Type`), its values joined by `, `. An
//! answer other than 2xx is an error (`received status code 404`) unless
//! `errorIfNot2XX` is false; that metadata comes with the error too, as
//! daprd sends it (`metadata.statusCode` headers over HTTP).

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, header};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use super::{BindingRequest, BindingResponse, OutputBinding, invoke_failed};
use crate::error::DaprError;
use crate::http_endpoints::{EndpointClient, NamedPem};

/// Dapr's default `maxResponseBodySize`.
const DEFAULT_MAX_RESPONSE_BODY: usize = 100 << 20;

/// The operations, in daprd's order.
const OPERATIONS: &[&str] = &[
    "create", "get", "head", "post", "put", "patch", "delete", "options", "trace",
];

/// The request metadata sent as headers whatever their case: the trace
/// context.
const TRACE_KEYS: &[&str] = &["traceparent", "tracestate", "baggage"];

/// A `bindings.http` component.
pub struct HttpBinding {
    name: String,
    url: String,
    client: EndpointClient,
    response_timeout: Option<Duration>,
    /// `None`: the whole body.
    max_response_body: Option<usize>,
    security_token: Option<(HeaderName, HeaderValue)>,
    error_if_not_2xx: bool,
}

/// Whether `text` is true as Dapr reads a flag (`true`, `t`, `yes`, `y`,
/// `on` or `1`, any case).
fn truthy(text: &str) -> bool {
    matches!(
        text.trim().to_ascii_lowercase().as_str(),
        "true" | "t" | "yes" | "y" | "on" | "1"
    )
}

impl HttpBinding {
    /// Reads the metadata and builds the client.
    pub async fn open(
        name: String,
        properties: &HashMap<String, String>,
    ) -> Result<HttpBinding, String> {
        let get = |key: &str| super::property(properties, key);
        let url = get("url").ok_or("metadata `url` is required")?.to_string();
        if !crate::http_endpoints::is_url_app_id(&url) {
            return Err(format!("url `{url}` is not an http:// or https:// URL"));
        }
        url.parse::<axum::http::Uri>()
            .map_err(|e| format!("url `{url}`: {e}"))?;
        let response_timeout = get("responseTimeout")
            .map(|text| {
                service_kit::units::parse_duration(text)
                    .map_err(|e| format!("responseTimeout: {e}"))
            })
            .transpose()?;
        let max_response_body = match get("maxResponseBodySize") {
            None => Some(DEFAULT_MAX_RESPONSE_BODY),
            Some(text) if text.starts_with('-') => None,
            Some(text) => match service_kit::units::parse_size(text)
                .map_err(|e| format!("invalid value for maxResponseBodySize: {e}"))?
            {
                0 => None,
                size => Some(size),
            },
        };
        let security_token = match (get("securityToken"), get("securityTokenHeader")) {
            (Some(token), Some(header)) => Some((
                HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| format!("securityTokenHeader `{header}` is not a header name"))?,
                HeaderValue::from_str(token)
                    .map_err(|_| "securityToken is not a valid header value".to_string())?,
            )),
            _ => None,
        };
        if let Some(renegotiation) = get("MTLSRenegotiation") {
            match renegotiation {
                "RenegotiateNever" => {}
                "RenegotiateOnceAsClient" | "RenegotiateFreelyAsClient" => {
                    return Err(format!(
                        "MTLSRenegotiation `{renegotiation}` is not supported (only RenegotiateNever: the TLS library never renegotiates)"
                    ));
                }
                other => return Err(format!("invalid renegotiation value: {other}")),
            }
        }
        let root_ca = match get("MTLSRootCA") {
            Some(value) => Some(pem("MTLSRootCA", value).await?),
            None => None,
        };
        let identity = match (get("MTLSClientCert"), get("MTLSClientKey")) {
            (Some(cert), Some(key)) => Some((
                pem("MTLSClientCert", cert).await?,
                pem("MTLSClientKey", key).await?,
            )),
            _ => None,
        };
        // Without a root CA the system's roots are read from files.
        let client = tokio::task::spawn_blocking(move || {
            crate::http_endpoints::client_with_pem(root_ca, identity)
        })
        .await
        .map_err(|e| format!("building the HTTP client failed: {e}"))??;
        Ok(HttpBinding {
            name,
            url,
            client,
            response_timeout,
            max_response_body,
            security_token,
            error_if_not_2xx: get("errorIfNot2XX").is_none_or(truthy),
        })
    }

    /// The request `request` asks for.
    fn request(&self, request: BindingRequest) -> Result<(Request<Body>, String), String> {
        let metadata = request.metadata;
        let mut url = self.url.clone();
        if let Some(path) = metadata.get("path").filter(|p| !p.is_empty()) {
            url = format!(
                "{}/{}",
                url.trim_end_matches('/'),
                path.trim_start_matches('/')
            );
        }
        let method = match request.operation.as_str() {
            "create" | "post" => Method::POST,
            "get" => Method::GET,
            "head" => Method::HEAD,
            "put" => Method::PUT,
            "patch" => Method::PATCH,
            "delete" => Method::DELETE,
            "options" => Method::OPTIONS,
            "trace" => Method::TRACE,
            other => return Err(format!("invalid operation: {other}")),
        };
        let has_body = matches!(method, Method::POST | Method::PUT | Method::PATCH);
        let mut builder = Request::builder().method(method.clone()).uri(url.as_str());
        let headers = builder
            .headers_mut()
            .ok_or_else(|| format!("parse {url:?}: not a valid URL"))?;
        const JSON: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");
        if has_body && !metadata.contains_key("Content-Type") {
            headers.insert(header::CONTENT_TYPE, JSON);
        }
        if !metadata.contains_key("Accept") {
            headers.insert(header::ACCEPT, JSON);
        }
        if let Some((name, value)) = &self.security_token {
            headers.insert(name.clone(), value.clone());
        }
        let is_header = |key: &str| {
            key.starts_with(|c: char| c.is_ascii_uppercase()) || TRACE_KEYS.contains(&key)
        };
        for (key, value) in metadata.iter().filter(|(key, _)| is_header(key)) {
            let name = HeaderName::from_bytes(key.as_bytes())
                .map_err(|_| format!("invalid header field name {key:?}"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("invalid header field value for {key:?}"))?;
            headers.insert(name, value);
        }
        let body = if has_body {
            Body::from(request.data)
        } else {
            Body::empty()
        };
        let request = builder
            .body(body)
            .map_err(|e| format!("parse {url:?}: {e}"))?;
        Ok((request, format!("{} {url:?}", title_case(method.as_str()))))
    }

    /// Sends `request` and reads its answer, as far as the limit.
    async fn send(
        &self,
        request: Request<Body>,
    ) -> Result<(axum::http::response::Parts, Bytes), String> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| crate::invoke::error_chain(&e))?;
        let (parts, mut body) = response.into_parts();
        let mut data = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| crate::invoke::error_chain(&e))?;
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            data.extend_from_slice(&chunk);
            if let Some(limit) = self.max_response_body
                && data.len() >= limit
            {
                if data.len() > limit || body.frame().await.is_some() {
                    tracing::warn!(
                        binding = %self.name,
                        limit,
                        "the answer's body is longer than maxResponseBodySize: cut off"
                    );
                }
                data.truncate(limit);
                break;
            }
        }
        Ok((parts, data.freeze()))
    }
}

/// `GET` as Go names the method in an error (`Get "http://..."`).
fn title_case(method: &str) -> String {
    let mut chars = method.chars();
    chars
        .next()
        .map(|first| first.to_string() + &chars.as_str().to_ascii_lowercase())
        .unwrap_or_default()
}

/// A header's name as Go writes it: each word capitalised
/// (`content-type` is `Content-Type`).
fn canonical_header_name(name: &str) -> String {
    let mut upper = true;
    name.chars()
        .map(|c| {
            let mapped = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            mapped
        })
        .collect()
}

/// An answer's status and headers as the binding's metadata.
fn answer_metadata(parts: &axum::http::response::Parts) -> HashMap<String, String> {
    let mut metadata = HashMap::with_capacity(parts.headers.keys_len() + 2);
    let code = parts.status.as_u16();
    let reason = parts
        .extensions
        .get::<hyper::ext::ReasonPhrase>()
        .map(|reason| String::from_utf8_lossy(reason.as_bytes()).into_owned())
        .or_else(|| parts.status.canonical_reason().map(str::to_string));
    metadata.insert("statusCode".to_string(), code.to_string());
    metadata.insert(
        "status".to_string(),
        match reason {
            Some(reason) => format!("{code} {reason}"),
            None => code.to_string(),
        },
    );
    for name in parts.headers.keys() {
        let values: Vec<String> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect();
        metadata.insert(canonical_header_name(name.as_str()), values.join(", "));
    }
    metadata
}

/// A PEM setting's text: the value itself when it is PEM, else the file it
/// names, as daprd reads it.
async fn pem(what: &'static str, value: &str) -> Result<NamedPem, String> {
    let text = if value.contains("-----BEGIN") {
        value.to_string()
    } else {
        tokio::fs::read_to_string(value).await.map_err(|e| {
            format!("provided {what:?} value is neither a valid file path or nor a valid pem encoded string: {e}")
        })?
    };
    Ok(NamedPem { what, text })
}

#[async_trait::async_trait]
impl OutputBinding for HttpBinding {
    fn operations(&self) -> &'static [&'static str] {
        OPERATIONS
    }

    async fn invoke(&self, request: BindingRequest) -> Result<Option<BindingResponse>, DaprError> {
        let error_if_not_2xx = request
            .metadata
            .get("errorIfNot2XX")
            .filter(|v| !v.is_empty())
            .map_or(self.error_if_not_2xx, |v| truthy(v));
        let (request, call) = self
            .request(request)
            .map_err(|reason| invoke_failed(&self.name, reason))?;
        let sent = match self.response_timeout {
            Some(limit) => tokio::time::timeout(limit, self.send(request))
                .await
                .unwrap_or_else(|_| Err("context deadline exceeded".to_string())),
            None => self.send(request).await,
        };
        let (parts, data) =
            sent.map_err(|reason| invoke_failed(&self.name, format!("{call}: {reason}")))?;
        let metadata = answer_metadata(&parts);
        if error_if_not_2xx && !parts.status.is_success() {
            return Err(super::invoke_failed_answering(
                &self.name,
                format!("received status code {}", parts.status.as_u16()),
                metadata,
            ));
        }
        Ok(Some(BindingResponse { data, metadata }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_written_as_go_writes_them() {
        assert_eq!(canonical_header_name("content-type"), "Content-Type");
        assert_eq!(canonical_header_name("x-from-app"), "X-From-App");
        assert_eq!(canonical_header_name("etag"), "Etag");
    }

    #[test]
    fn flags_are_read_as_dapr_reads_them() {
        for yes in ["true", "TRUE", "t", "yes", "Y", "on", "1", " true "] {
            assert!(truthy(yes), "{yes}");
        }
        for no in ["false", "0", "no", "off", "", "nope"] {
            assert!(!truthy(no), "{no}");
        }
    }

    #[test]
    fn methods_are_named_as_go_names_them_in_errors() {
        assert_eq!(title_case("GET"), "Get");
        assert_eq!(title_case("OPTIONS"), "Options");
    }
}
