//! gRPC metadata and HTTP headers, translated as daprd translates them
//! where service invocation crosses from one protocol to the other.
//!
//! - [`metadata_to_headers`]: a gRPC caller's `InvokeService` metadata
//!   becomes the headers of the HTTP call to the app, and a gRPC app's
//!   `OnInvoke` answer metadata the headers of the HTTP answer. gRPC's own
//!   transport headers (`content-type`, `te`, `grpc-timeout`, ...) stay
//!   behind, as does the trace context, which each hop sets for its own
//!   span; any other `grpc-*` key goes as `dapr-grpc-*`, so that no HTTP
//!   hop mistakes it for its own. `InvokeService` adds the call's
//!   `:authority` as [`AUTHORITY`], as daprd does.
//! - [`headers_to_metadata`]: an HTTP app's answer headers become the
//!   `InvokeService` answer metadata, and a call's headers the metadata of
//!   `OnInvoke` for a gRPC app. IANA's permanent HTTP headers
//!   (`content-type`, `date`, `cookie`, ...) go as `dapr-content-type` and
//!   so on: each has a meaning in gRPC, or is forbidden in HTTP/2. The
//!   trace context passes: the sidecar has set it for its own span.
//!
//! Both leave out `dapr-app-id`: the call is already routed. A value that
//! is not printable ASCII, and a binary (`-bin`) key from an HTTP header
//! (its value need not be base64), cannot be gRPC metadata and are left
//! out.

use axum::http::{HeaderMap, HeaderName};

/// The key that routes a call, which neither direction carries.
const APP_ID: &str = "dapr-app-id";

/// The header that gives an app the `:authority` a gRPC caller used (the
/// address it dialled), as daprd names it.
pub(crate) const AUTHORITY: HeaderName = HeaderName::from_static("dapr-authority");

/// The trace context, which the next hop gets from this sidecar's span.
fn is_trace_context(name: &str) -> bool {
    matches!(name, "traceparent" | "tracestate")
}

/// The framing of the gRPC call itself (grpc-go keeps these out of an
/// RPC's metadata), which says nothing of the HTTP call's.
fn is_grpc_transport(name: &str) -> bool {
    matches!(
        name,
        "content-type"
            | "content-length"
            | "te"
            | "grpc-timeout"
            | "grpc-encoding"
            | "grpc-message-type"
            | "grpc-message"
            | "grpc-status"
            | "grpc-status-details-bin"
    )
}

/// The name daprd gives one of IANA's permanent HTTP headers (as daprd
/// lists them) in gRPC metadata; `None` for any other header. (Spelled out,
/// so that the hot path of invocation allocates no name.)
fn permanent_header_as_metadata(name: &str) -> Option<HeaderName> {
    let renamed = match name {
        "accept" => "dapr-accept",
        "accept-charset" => "dapr-accept-charset",
        "accept-language" => "dapr-accept-language",
        "accept-ranges" => "dapr-accept-ranges",
        "connection" => "dapr-connection",
        "keep-alive" => "dapr-keep-alive",
        "proxy-connection" => "dapr-proxy-connection",
        "transfer-encoding" => "dapr-transfer-encoding",
        "upgrade" => "dapr-upgrade",
        "cache-control" => "dapr-cache-control",
        "content-type" => "dapr-content-type",
        "content-length" => "dapr-content-length",
        "cookie" => "dapr-cookie",
        "date" => "dapr-date",
        "expect" => "dapr-expect",
        "from" => "dapr-from",
        "host" => "dapr-host",
        "if-match" => "dapr-if-match",
        "if-modified-since" => "dapr-if-modified-since",
        "if-none-match" => "dapr-if-none-match",
        "if-schedule-tag-match" => "dapr-if-schedule-tag-match",
        "if-unmodified-since" => "dapr-if-unmodified-since",
        "max-forwards" => "dapr-max-forwards",
        "origin" => "dapr-origin",
        "pragma" => "dapr-pragma",
        "referer" => "dapr-referer",
        "via" => "dapr-via",
        "warning" => "dapr-warning",
        _ => return None,
    };
    Some(HeaderName::from_static(renamed))
}

/// `name` with daprd's prefix, `dapr-`.
fn prefixed(name: &str) -> Option<HeaderName> {
    HeaderName::from_bytes(format!("dapr-{name}").as_bytes()).ok()
}

/// The HTTP headers for gRPC `metadata`.
pub(crate) fn metadata_to_headers(metadata: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(metadata.len());
    for (name, value) in metadata {
        let key = name.as_str();
        if key == APP_ID
            || is_trace_context(key)
            || is_grpc_transport(key)
            || value.to_str().is_err()
        {
            continue;
        }
        if key.starts_with("grpc-") {
            if let Some(renamed) = prefixed(key) {
                headers.append(renamed, value.clone());
            }
        } else {
            headers.append(name.clone(), value.clone());
        }
    }
    headers
}

/// The gRPC metadata for HTTP `headers`.
pub(crate) fn headers_to_metadata(headers: &HeaderMap) -> HeaderMap {
    let mut metadata = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let key = name.as_str();
        if key == APP_ID || key.ends_with("-bin") || value.to_str().is_err() {
            continue;
        }
        if let Some(renamed) = permanent_header_as_metadata(key) {
            metadata.append(renamed, value.clone());
        } else if key.starts_with("grpc-") {
            if let Some(renamed) = prefixed(key) {
                metadata.append(renamed, value.clone());
            }
        } else {
            metadata.append(name.clone(), value.clone());
        }
    }
    metadata
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn pairs(map: &HeaderMap) -> Vec<(String, String)> {
        let mut pairs: Vec<_> = map
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        pairs.sort();
        pairs
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_callers_metadata_reaches_an_http_app_as_daprd_passes_it() {
        let metadata = map(&[
            ("content-type", "application/grpc"),
            ("content-length", "27"),
            ("te", "trailers"),
            ("grpc-timeout", "5S"),
            ("grpc-accept-encoding", "gzip"),
            ("user-agent", "grpc-python/1.0"),
            ("x-tenant", "a"),
            ("x-tenant", "b"),
            ("dapr-app-id", "target"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ]);
        assert_eq!(
            pairs(&metadata_to_headers(&metadata)),
            owned(&[
                ("dapr-grpc-accept-encoding", "gzip"),
                ("user-agent", "grpc-python/1.0"),
                ("x-tenant", "a"),
                ("x-tenant", "b"),
            ])
        );
    }

    #[test]
    fn an_http_answers_headers_become_metadata_with_permanent_ones_prefixed() {
        let mut headers = map(&[
            ("content-type", "application/json"),
            ("content-length", "12"),
            ("date", "Mon, 07 Dec 2026 09:00:00 GMT"),
            ("x-from-app", "yes"),
            ("server-timing", "dapr;dur=1"),
            ("grpc-status", "0"),
            ("x-blob-bin", "not base64 at all"),
        ]);
        headers.insert(
            "x-accented",
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        assert_eq!(
            pairs(&headers_to_metadata(&headers)),
            owned(&[
                ("dapr-content-length", "12"),
                ("dapr-content-type", "application/json"),
                ("dapr-date", "Mon, 07 Dec 2026 09:00:00 GMT"),
                ("dapr-grpc-status", "0"),
                ("server-timing", "dapr;dur=1"),
                ("x-from-app", "yes"),
            ])
        );
    }
}
