//! gRPC service invocation by proxy, as daprd does it: a call on the
//! sidecar's gRPC port for any service but Dapr's own, carrying
//! `dapr-app-id` metadata, is forwarded as it came (any service, unary or
//! streaming both ways, trailers included) to that app.
//!
//! - For this sidecar's own app: over HTTP/2 (h2c) to `127.0.0.1:APP_PORT`.
//! - For another app: to that app's sidecar, whose gRPC address the name
//!   registry holds; that sidecar hands it to its app. A call a peer
//!   forwarded is never forwarded again.
//!
//! On the way the caller's `dapr-api-token` is checked (when
//! `DAPR_API_TOKEN` is set) and removed; between sidecars the sender's own
//! token is added. The app sees neither `dapr-app-id` nor the caller's
//! token, and gets `dapr-caller-app-id` and `dapr-callee-app-id` (and
//! `APP_API_TOKEN` as `dapr-api-token`, when set), and a `traceparent`
//! naming this sidecar's span of the call. Failures answer a gRPC
//! status from the one error table, never a bare HTTP error.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request, Response, Uri};

use crate::Sidecar;
use crate::error::DaprError;

const APP_ID: HeaderName = HeaderName::from_static("dapr-app-id");
const API_TOKEN: HeaderName = HeaderName::from_static("dapr-api-token");
const CALLER: HeaderName = HeaderName::from_static("dapr-caller-app-id");
const CALLEE: HeaderName = HeaderName::from_static("dapr-callee-app-id");
/// Set by a sidecar that forwards a call to a peer sidecar: the peer keeps
/// the caller id it names, and delivers the call to its own app or fails.
const FROM_PEER: HeaderName = HeaderName::from_static("dapr-wasm-proxied");

/// Headers that belong to one connection (RFC 9113 8.2.2), never forwarded.
const CONNECTION_HEADERS: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Serves one call the Dapr service does not own: forwards it, or answers
/// the gRPC status of why it cannot.
pub(crate) async fn proxy_call(sidecar: Arc<Sidecar>, request: Request<Body>) -> Response<Body> {
    match forward(&sidecar, request).await {
        Ok(response) => response,
        Err(status) => status.into_http(),
    }
}

async fn forward(
    sidecar: &Sidecar,
    request: Request<Body>,
) -> Result<Response<Body>, tonic::Status> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let Some(app_id) = parts
        .headers
        .get(&APP_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty())
        .map(str::to_string)
    else {
        return Err(tonic::Status::unimplemented(format!(
            "{path} is not served by this sidecar; to call an app's gRPC service, \
             send dapr-app-id metadata"
        )));
    };
    let config = &sidecar.config;
    if let Some(expected) = &config.api_token
        && parts.headers.get(&API_TOKEN).and_then(|v| v.to_str().ok()) != Some(expected.as_str())
    {
        return Err(DaprError::Unauthorized.into());
    }
    let direct_error = |reason: String| DaprError::DirectInvoke {
        id: app_id.clone(),
        reason,
    };
    let from_peer = parts.headers.contains_key(&FROM_PEER);
    let local = app_id == config.app_id;
    let mut headers = parts.headers.clone();
    for name in CONNECTION_HEADERS {
        headers.remove(name);
    }
    headers.remove(&API_TOKEN);
    headers.remove(&FROM_PEER);
    if !from_peer {
        headers.insert(CALLER, header_value(&config.app_id));
    }
    // The next hop is a child of this sidecar's span of the call.
    service_kit::trace::TraceContext::of(&parts.extensions, &parts.headers).inject(&mut headers);
    let target = if local {
        let port = config
            .app_port
            .ok_or_else(|| direct_error("this sidecar has no app port".into()))?;
        sidecar.check_app_healthy()?;
        headers.remove(&APP_ID);
        headers.insert(CALLEE, header_value(&app_id));
        if let Some(token) = &config.app_api_token {
            headers.insert(API_TOKEN, header_value(token));
        }
        format!("127.0.0.1:{port}")
    } else {
        if from_peer {
            // The registry sent a peer here for another app: a stale row.
            return Err(DaprError::AppNotFound(app_id).into());
        }
        let endpoints = sidecar
            .registry
            .lookup_cached(&app_id)
            .await
            .map_err(|e| direct_error(e.to_string()))?
            .ok_or_else(|| DaprError::AppNotFound(app_id.clone()))?;
        let grpc = endpoints
            .grpc
            .ok_or_else(|| direct_error("its sidecar serves no gRPC API".into()))?;
        headers.insert(FROM_PEER, HeaderValue::from_static("1"));
        if let Some(token) = &config.api_token {
            headers.insert(API_TOKEN, header_value(token));
        }
        grpc.to_string()
    };
    let uri: Uri = format!("http://{target}{path}")
        .parse()
        .map_err(|e| direct_error(format!("invalid method path: {e}")))?;
    let mut outgoing = Request::builder()
        .method(parts.method)
        .uri(uri)
        .version(axum::http::Version::HTTP_2)
        .body(body)
        .map_err(|e| direct_error(e.to_string()))?;
    *outgoing.headers_mut() = headers;
    let response = sidecar.h2_client.request(outgoing).await.map_err(|e| {
        if !local && e.is_connect() {
            // The target sidecar may have restarted elsewhere.
            sidecar.registry.forget(&app_id);
        }
        direct_error(crate::invoke::error_chain(&e))
    })?;
    Ok(response.map(Body::new))
}

/// `value` as a header value; ids and tokens were checked to be printable
/// ASCII, so this only falls back on a value no one can send.
fn header_value(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}
