//! Service invocation: Dapr's `/v1.0/invoke/{app-id}/method/{method...}`.
//!
//! - Any HTTP verb; nested method paths and the query string pass through.
//! - The `dapr-app-id` header form: a call to `/<path>` with that header,
//!   or with basic auth `dapr-app-id:<app-id>` (the URL
//!   `http://dapr-app-id:<app-id>@localhost:3500/<path>`), as daprd takes.
//! - Calls for this sidecar's own app go to the app on `127.0.0.1:APP_PORT`.
//!   Calls for an `HTTPEndpoint`, or for an app id that is a URL, go
//!   straight to that endpoint ([`crate::http_endpoints`]).
//!   Calls for another app go to that app's sidecar (found through
//!   [`crate::nameres`]) at `/_dapr-wasm/internal/invoke/{app-id}/...`,
//!   which hands them to its app. Bodies stream both ways; connections are
//!   pooled and kept alive.
//! - Request headers pass except hop-by-hop ones and `dapr-api-token`. The
//!   sidecar sets `dapr-caller-app-id` and `dapr-callee-app-id` (overwriting
//!   what a client sent), `X-Forwarded-For`, `X-Forwarded-Host`, a W3C
//!   `traceparent` (a child of the incoming one, or a new trace), and
//!   `dapr-api-token` for the app when `APP_API_TOKEN` is set. The
//!   `traceparent` names this sidecar's span of the call (recorded when
//!   tracing is on: [`service_kit::trace`]), so the next hop is its child.
//! - The callee's status, headers and body come back unchanged, but for one
//!   more `Server-Timing` entry, `dapr;dur=MS;desc="APP-ID"`: the time
//!   this sidecar's hop took, so a client sees each sidecar's share. An
//!   unreachable target is 500 `ERR_DIRECT_INVOKE`; an unknown app id 404;
//!   a body over `--max-body-size` 413.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use dapr::dapr::proto::common::v1 as common;
use tonic::metadata::MetadataMap;

use service_kit::headers::{add_server_timing, timing_entry};
use service_kit::trace::TraceContext;

use crate::Sidecar;
use crate::error::DaprError;
use crate::grpc::app_status::{self, GrpcAppStatus, GrpcAppTrailers};
use crate::http_endpoints::ExternalTarget;

/// The route prefix sidecars use to hand a call to a peer.
pub(crate) const INTERNAL_PREFIX: &str = "/_dapr-wasm/internal/invoke";

const CALLER: HeaderName = HeaderName::from_static("dapr-caller-app-id");
const CALLEE: HeaderName = HeaderName::from_static("dapr-callee-app-id");
const APP_ID_HEADER: &str = "dapr-app-id";
const API_TOKEN: HeaderName = HeaderName::from_static("dapr-api-token");
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Where a call comes from: a client of this sidecar, a peer sidecar
/// (whose caller id is kept), or this sidecar itself (telling its app of a
/// configuration change).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Client,
    PeerSidecar,
    Sidecar,
}

/// `ANY /v1.0/invoke/{app_id}/method/{*method}`
pub(crate) async fn invoke_by_path(
    State(sidecar): State<Arc<Sidecar>>,
    Path((app_id, method)): Path<(String, String)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Response, DaprError> {
    sidecar
        .invoke(
            &app_id,
            &format!("/{method}"),
            peer,
            Origin::Client,
            request,
        )
        .await
}

/// `ANY /_dapr-wasm/internal/invoke/{app_id}/{*method}`: from a peer sidecar.
pub(crate) async fn invoke_from_peer(
    State(sidecar): State<Arc<Sidecar>>,
    Path((app_id, method)): Path<(String, String)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Response, DaprError> {
    if app_id != sidecar.config.app_id {
        return Err(DaprError::AppNotFound(app_id));
    }
    let mut response = sidecar
        .invoke(
            &app_id,
            &format!("/{method}"),
            peer,
            Origin::PeerSidecar,
            request,
        )
        .await?;
    // A gRPC app's failure, for the caller's sidecar to answer a gRPC
    // caller with.
    let carried = response
        .extensions()
        .get::<GrpcAppStatus>()
        .and_then(|GrpcAppStatus(status)| app_status::to_header(status));
    if let Some(value) = carried {
        response.headers_mut().insert(app_status::HEADER, value);
    }
    // And its answer's trailers.
    let trailers = response
        .extensions()
        .get::<GrpcAppTrailers>()
        .and_then(|GrpcAppTrailers(trailers)| app_status::trailers_to_header(trailers));
    if let Some(value) = trailers {
        response
            .headers_mut()
            .insert(app_status::TRAILERS_HEADER, value);
    }
    Ok(response)
}

/// The fallback: a request that names an app outside its path (the
/// `dapr-app-id` header, or basic auth: [`app_id_outside_path`]) is an
/// invocation of its path, and one for a URL written out in the path
/// ([`url_target_in_path`]) an invocation of that URL; anything else is
/// an unknown route.
pub(crate) async fn invoke_by_header_or_not_found(
    State(sidecar): State<Arc<Sidecar>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Response, DaprError> {
    let (app_id, method_path) = match app_id_outside_path(request.headers()) {
        Some(app_id) if !app_id.is_empty() => (app_id, request.uri().path().to_string()),
        Some(_) => return Err(DaprError::NoAppId),
        None => url_target_in_path(request.uri().path())
            .ok_or_else(|| DaprError::NotFound(request.uri().path().to_string()))?,
    };
    sidecar
        .invoke(&app_id, &method_path, peer, Origin::Client, request)
        .await
}

/// The URL and method path of `/v1.0/invoke/<URL>/method/<method>` with
/// the URL not encoded (`/v1.0/invoke/http://localhost:8000/method/x`),
/// which the route, taking one segment for the app id, does not match. As
/// daprd, the app id ends at the first `/method/`.
fn url_target_in_path(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/v1.0/invoke/")?;
    let (target, method) = rest.split_once("/method/")?;
    crate::http_endpoints::is_url_app_id(target).then(|| (target.to_string(), format!("/{method}")))
}

/// The app a request names outside its path, as daprd reads it: the
/// `dapr-app-id` header, else basic auth with the user `dapr-app-id` and
/// the app id as the password, which is what a client sends for the URL
/// `http://dapr-app-id:<app-id>@localhost:3500/<method>` (for a client
/// whose base URL is all that can be set).
fn app_id_outside_path(headers: &HeaderMap) -> Option<String> {
    if let Some(app_id) = headers.get(APP_ID_HEADER).and_then(|v| v.to_str().ok()) {
        return Some(app_id.to_string());
    }
    let credentials = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = STANDARD.decode(credentials.trim()).ok()?;
    let (user, app_id) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    (user == APP_ID_HEADER && !app_id.contains(':')).then(|| app_id.to_string())
}

impl Sidecar {
    /// Invokes `method_path` (with its query) of `app_id`: this sidecar's
    /// app, or another app through its sidecar. The service invocation
    /// building block, shared by the HTTP routes and gRPC `InvokeService`.
    pub(crate) async fn invoke(
        &self,
        app_id: &str,
        method_path: &str,
        peer: SocketAddr,
        origin: Origin,
        request: Request,
    ) -> Result<Response, DaprError> {
        let arrived = std::time::Instant::now();
        let (parts, body) = request.into_parts();
        let limit = self.config.max_body_size;
        if service_kit::headers::content_length(&parts.headers)
            .is_some_and(|len| len > limit as u64)
        {
            return Err(DaprError::BodyTooLarge(limit));
        }
        let direct_error = |reason: String| DaprError::DirectInvoke {
            id: app_id.to_string(),
            reason,
        };
        let query = parts
            .uri
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        if let Some(external) = self.http_endpoints.target(app_id) {
            return self
                .invoke_external(app_id, external, method_path, &query, parts, body)
                .await;
        }
        let local = app_id == self.config.app_id;
        if local {
            self.check_app_healthy()?;
        }
        let headers = self.outgoing_headers(app_id, local, peer, origin, &parts);
        if let (true, Some(app)) = (local, &self.app_on_invoke) {
            return self
                .invoke_grpc_app(app.clone(), method_path, parts, headers, body)
                .await;
        }
        let target: Uri = if local {
            let port = self
                .config
                .app_port
                .ok_or_else(|| direct_error("this sidecar has no app port".into()))?;
            format!("http://127.0.0.1:{port}{method_path}{query}")
        } else {
            let address = self
                .registry
                .lookup_cached(app_id)
                .await
                .map_err(|e| direct_error(e.to_string()))?
                .ok_or_else(|| DaprError::AppNotFound(app_id.to_string()))?
                .http;
            format!("http://{address}{INTERNAL_PREFIX}/{app_id}{method_path}{query}")
        }
        .parse()
        .map_err(|e| direct_error(format!("invalid method path: {e}")))?;

        let method = parts.method.clone();
        let mut outgoing = axum::http::Request::builder()
            .method(parts.method)
            .uri(target)
            .body(Body::new(http_body_util::Limited::new(body, limit)))
            .map_err(|e| direct_error(e.to_string()))?;
        *outgoing.headers_mut() = headers;

        let started = std::time::Instant::now();
        let answer =
            tokio::time::timeout(self.config.invoke_timeout, self.client.request(outgoing)).await;
        if local {
            let status = match &answer {
                Ok(Ok(response)) => response.status().as_u16(),
                _ => 0,
            };
            self.metrics
                .record_app_call(method.as_str(), method_path, status, started.elapsed());
        }
        let response = self.answer_of(app_id, answer, |e| {
            if !local && e.is_connect() {
                // The target sidecar may have restarted elsewhere.
                self.registry.forget(app_id);
            }
        })?;
        let (mut parts, body) = response.into_parts();
        // A gRPC app's failure or trailers, from its sidecar (never an
        // app's header).
        let app_failure = (!local)
            .then(|| parts.headers.get(&app_status::HEADER))
            .flatten()
            .and_then(app_status::from_header);
        let app_trailers = (!local)
            .then(|| parts.headers.get(&app_status::TRAILERS_HEADER))
            .flatten()
            .and_then(app_status::trailers_from_header);
        self.pass_back(&mut parts, arrived);
        if let Some(status) = app_failure {
            parts.extensions.insert(GrpcAppStatus(status));
        }
        if let Some(trailers) = app_trailers {
            parts.extensions.insert(GrpcAppTrailers(trailers));
        }
        Ok(Response::from_parts(parts, Body::new(body)))
    }

    /// Calls a non-Dapr endpoint ([`crate::http_endpoints`]): the method
    /// path and query after its base URL, with the caller's headers that
    /// may be forwarded, the trace context and the endpoint's headers. Its
    /// answer comes back as an app's.
    async fn invoke_external(
        &self,
        app_id: &str,
        target: ExternalTarget<'_>,
        method_path: &str,
        query: &str,
        parts: axum::http::request::Parts,
        body: Body,
    ) -> Result<Response, DaprError> {
        let arrived = std::time::Instant::now();
        let direct_error = |reason: String| DaprError::DirectInvoke {
            id: app_id.to_string(),
            reason,
        };
        let uri: Uri = format!(
            "{}{method_path}{query}",
            target.base_url.trim_end_matches('/')
        )
        .parse()
        .map_err(|e| direct_error(format!("invalid URL: {e}")))?;
        let mut headers = forwardable(&parts.headers);
        TraceContext::of(&parts.extensions, &parts.headers).inject(&mut headers);
        for (name, value) in target.headers {
            headers.insert(name.clone(), value.clone());
        }
        let client = self
            .http_endpoints
            .client_for(&target)
            .await
            .map_err(direct_error)?;
        let limit = self.config.max_body_size;
        let mut outgoing = axum::http::Request::builder()
            .method(parts.method)
            .uri(uri)
            .body(Body::new(http_body_util::Limited::new(body, limit)))
            .map_err(|e| direct_error(e.to_string()))?;
        *outgoing.headers_mut() = headers;
        let answer =
            tokio::time::timeout(self.config.invoke_timeout, client.request(outgoing)).await;
        let (mut parts, body) = self.answer_of(app_id, answer, |_| {})?.into_parts();
        self.pass_back(&mut parts, arrived);
        Ok(Response::from_parts(parts, Body::new(body)))
    }

    /// The answer of a call to `app_id` (`answer`, as the timeout gives
    /// it), or the error to give instead: a body over the limit is 413;
    /// no answer in time, or none at all, 500 `ERR_DIRECT_INVOKE`
    /// (`on_failure` sees the client's error first).
    fn answer_of<T>(
        &self,
        app_id: &str,
        answer: Result<Result<T, hyper_util::client::legacy::Error>, tokio::time::error::Elapsed>,
        on_failure: impl FnOnce(&hyper_util::client::legacy::Error),
    ) -> Result<T, DaprError> {
        let direct_error = |reason: String| DaprError::DirectInvoke {
            id: app_id.to_string(),
            reason,
        };
        let answer = answer.map_err(|_| {
            direct_error(format!(
                "no response within {:?}",
                self.config.invoke_timeout
            ))
        })?;
        answer.map_err(|e| {
            if is_length_limit(&e) {
                return DaprError::BodyTooLarge(self.config.max_body_size);
            }
            on_failure(&e);
            direct_error(error_chain(&e))
        })
    }

    /// Readies an answer's head to go back to the caller as it came: only
    /// the headers that may be forwarded, one more `Server-Timing` entry
    /// (this sidecar's time since the call `arrived`), and marked as the
    /// callee's own, so that no error body replaces it.
    fn pass_back(&self, parts: &mut axum::http::response::Parts, arrived: std::time::Instant) {
        parts.headers = forwardable(&parts.headers);
        let timing = timing_entry("dapr", arrived.elapsed(), Some(&self.config.app_id));
        add_server_timing(&mut parts.headers, &[timing]);
        parts
            .extensions
            .insert(service_kit::error_body::PassedThrough);
    }

    /// The headers of the call to `app_id` (this sidecar's app when
    /// `local`, else its sidecar): the incoming ones that may be forwarded,
    /// the caller and callee ids, `X-Forwarded-*` for a client's call, the
    /// trace context of this sidecar's span, and the token the next hop
    /// expects.
    fn outgoing_headers(
        &self,
        app_id: &str,
        local: bool,
        peer: SocketAddr,
        origin: Origin,
        incoming: &axum::http::request::Parts,
    ) -> HeaderMap {
        let mut headers = forwardable(&incoming.headers);
        let caller = match origin {
            Origin::PeerSidecar => incoming.headers.get(&CALLER).cloned(),
            Origin::Client | Origin::Sidecar => None,
        }
        .or_else(|| HeaderValue::from_str(&self.config.app_id).ok());
        if let Some(caller) = caller {
            headers.insert(CALLER, caller);
        }
        if let Ok(callee) = HeaderValue::from_str(app_id) {
            headers.insert(CALLEE, callee);
        }
        if origin == Origin::Client {
            append_forwarded(&mut headers, &incoming.headers, peer);
        }
        // The next hop is a child of this sidecar's span of the call.
        TraceContext::of(&incoming.extensions, &incoming.headers).inject(&mut headers);
        let token = if local {
            self.config.app_api_token.as_deref()
        } else {
            self.config.api_token.as_deref()
        };
        if let Some(token) = token.and_then(|t| HeaderValue::from_str(t).ok()) {
            headers.insert(API_TOKEN, token);
        }
        headers
    }
}

impl Sidecar {
    /// Calls this sidecar's gRPC app (`--app-protocol grpc`) through
    /// `AppCallback.OnInvoke`: the method, the body as `data`, the content
    /// type, and the HTTP verb and query as `http_extension`, with
    /// `headers` as metadata (as daprd passes them:
    /// [`crate::grpc::headers`]). Its answer comes back as a 200 with its
    /// content type and its metadata as headers, and its trailers as a
    /// [`GrpcAppTrailers`] extension for `InvokeService`; a failure (the app's
    /// status, or the call's: the app is not there) as daprd answers it
    /// ([`app_status::http_answer`]).
    async fn invoke_grpc_app(
        &self,
        app: tonic::client::Grpc<tonic::transport::Channel>,
        method_path: &str,
        parts: axum::http::request::Parts,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response, DaprError> {
        let limit = self.config.max_body_size;
        let data = axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| DaprError::BodyTooLarge(limit))?;
        let verb = common::http_extension::Verb::from_str_name(parts.method.as_str())
            .unwrap_or(common::http_extension::Verb::Post);
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let request = common::InvokeRequest {
            method: method_path.trim_start_matches('/').to_string(),
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: data.to_vec(),
            }),
            content_type,
            http_extension: Some(common::HttpExtension {
                verb: verb.into(),
                querystring: parts.uri.query().unwrap_or_default().to_string(),
            }),
        };
        let mut request = tonic::Request::from_parts(
            tonic::metadata::MetadataMap::from_headers(crate::grpc::headers::headers_to_metadata(
                &headers,
            )),
            Default::default(),
            request,
        );
        request.set_timeout(self.config.invoke_timeout);
        let (metadata, answer, trailers) = match on_invoke(app, request).await {
            Ok(answered) => answered,
            Err(status) => return Ok(app_status::http_answer(status)),
        };
        let mut response = Response::new(Body::from(
            answer.data.map(|any| any.value).unwrap_or_default(),
        ));
        *response.headers_mut() =
            crate::grpc::headers::metadata_to_headers(&metadata.into_headers());
        if let Ok(content_type) = HeaderValue::from_str(&answer.content_type) {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type);
        }
        response
            .extensions_mut()
            .insert(service_kit::error_body::PassedThrough);
        let trailers = app_status::app_trailers(trailers.into_headers());
        if !trailers.is_empty() {
            response.extensions_mut().insert(GrpcAppTrailers(trailers));
        }
        Ok(response)
    }
}

/// Calls the gRPC app's `OnInvoke`: its answer's metadata, message and
/// trailers. (Not through the generated client, which, as every unary call
/// of tonic's, merges the trailers into the metadata; daprd keeps them
/// apart.) A failure keeps the metadata sent before it, as tonic's does.
async fn on_invoke(
    mut app: tonic::client::Grpc<tonic::transport::Channel>,
    request: tonic::Request<common::InvokeRequest>,
) -> Result<(MetadataMap, common::InvokeResponse, MetadataMap), tonic::Status> {
    app.ready()
        .await
        .map_err(|e| tonic::Status::unknown(format!("Service was not ready: {e}")))?;
    let path =
        axum::http::uri::PathAndQuery::from_static("/dapr.proto.runtime.v1.AppCallback/OnInvoke");
    let (metadata, mut answers, _) = app
        .server_streaming(request, path, tonic_prost::ProstCodec::default())
        .await?
        .into_parts();
    let with_metadata = |mut status: tonic::Status| {
        let mut merged = metadata.clone().into_headers();
        merged.extend(std::mem::take(status.metadata_mut()).into_headers());
        *status.metadata_mut() = MetadataMap::from_headers(merged);
        status
    };
    let answer = answers
        .message()
        .await
        .map_err(with_metadata)?
        .ok_or_else(|| tonic::Status::internal("Missing response message."))?;
    let trailers = answers
        .trailers()
        .await
        .map_err(with_metadata)?
        .unwrap_or_default();
    Ok((metadata, answer, trailers))
}

/// Headers without hop-by-hop ones (RFC 9110 7.6.1, and those named in
/// `Connection`), `Host`, the caller's `dapr-api-token`, and the status
/// and trailers one sidecar hands another ([`app_status::HEADER`],
/// [`app_status::TRAILERS_HEADER`]).
pub(crate) fn forwardable(headers: &HeaderMap) -> HeaderMap {
    let named_in_connection: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let hop_by_hop = matches!(
            name.as_str(),
            "connection"
                | "keep-alive"
                | "proxy-connection"
                | "proxy-authenticate"
                | "proxy-authorization"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
                | "host"
                | "dapr-api-token"
                | "dapr-wasm-grpc-app-status"
                | "dapr-wasm-grpc-app-trailers"
        ) || named_in_connection.iter().any(|n| n == name.as_str());
        if !hop_by_hop {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

fn append_forwarded(headers: &mut HeaderMap, incoming: &HeaderMap, peer: SocketAddr) {
    let forwarded_for = match incoming.get(&FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(FORWARDED_FOR, value);
    }
    if let Some(host) = incoming.get(header::HOST) {
        headers.insert(FORWARDED_HOST, host.clone());
    }
}

fn is_length_limit(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        current = e.source();
    }
    false
}

pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut current = err.source();
    while let Some(e) = current {
        text.push_str(": ");
        text.push_str(&e.to_string());
        current = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_written_out_in_the_invoke_path_is_the_app_id() {
        let target = |path: &str| url_target_in_path(path);
        assert_eq!(
            target("/v1.0/invoke/http://127.0.0.1:8000/base/method/a/b"),
            Some(("http://127.0.0.1:8000/base".into(), "/a/b".into()))
        );
        assert_eq!(
            target("/v1.0/invoke/https://example.com/method/"),
            Some(("https://example.com".into(), "/".into()))
        );
        // Only a URL: other paths stay unknown routes.
        assert_eq!(target("/v1.0/invoke/an/app/method/x"), None);
        assert_eq!(target("/v1.0/invoke/http://example.com/no-method"), None);
        assert_eq!(target("/v1.0/state/http://x/method/y"), None);
    }

    #[test]
    fn an_app_id_is_named_by_header_or_by_basic_auth_as_daprd_reads_them() {
        let named = |pairs: &[(&'static str, &str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, HeaderValue::from_str(value).unwrap());
            }
            app_id_outside_path(&headers)
        };
        let basic = |credentials: &str| format!("Basic {}", STANDARD.encode(credentials));
        assert_eq!(
            named(&[("dapr-app-id", "orders")]).as_deref(),
            Some("orders")
        );
        assert_eq!(
            named(&[("authorization", &basic("dapr-app-id:orders"))]).as_deref(),
            Some("orders")
        );
        // The header wins over basic auth.
        assert_eq!(
            named(&[
                ("dapr-app-id", "orders"),
                ("authorization", &basic("dapr-app-id:billing")),
            ])
            .as_deref(),
            Some("orders")
        );
        // Not daprd's form: another user, a second colon, not base64, not
        // basic auth at all.
        for value in [
            basic("admin:orders"),
            basic("dapr-app-id:orders:extra"),
            "Basic !!!".to_string(),
            "Bearer dapr-app-id:orders".to_string(),
        ] {
            assert_eq!(named(&[("authorization", &value)]), None, "{value}");
        }
        assert_eq!(named(&[]), None);
    }

    #[test]
    fn hop_by_hop_headers_and_the_api_token_are_not_forwarded() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("dapr-api-token", HeaderValue::from_static("secret"));
        headers.insert("x-kept", HeaderValue::from_static("yes"));
        let out = forwardable(&headers);
        assert_eq!(out.len(), 1);
        assert_eq!(out["x-kept"], "yes");
    }
}
