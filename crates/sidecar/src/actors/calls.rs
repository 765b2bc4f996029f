//! Calls of an actor's methods: checked as daprd checks them, routed to
//! the sidecar that hosts the actor ([`super::placement`]), and, on that
//! sidecar, sent to the app one at a time per actor (with reentrancy, a
//! call chain reenters its actor).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use bytes::Bytes;
use service_kit::trace::TraceContext;

use super::ActorKey;
use super::host::Activation;
use crate::Sidecar;
use crate::error::DaprError;

/// The header with which an app (the .NET SDK) says its answer is an
/// actor's error, not a success.
pub(crate) const ERROR_RESPONSE_HEADER: &str = "x-daprerrorresponseheader";
/// The call chain a call belongs to, with reentrancy.
const REENTRANCY_ID_HEADER: &str = "dapr-reentrancy-id";
/// The header with which an app cancels the reminder it was called for.
const REMINDER_CANCEL_HEADER: &str = "x-daprremindercancel";
/// Marks a peer sidecar's answer as the app's (any other answer is the
/// peer's own error, in Dapr's JSON).
const PEER_ANSWER_HEADER: HeaderName = HeaderName::from_static("dapr-wasm-actor-answer");
/// The route on which a sidecar takes calls for the actors it hosts from
/// its peers.
pub(crate) const INTERNAL_PREFIX: &str = "/_dapr-wasm/internal/actors";

/// daprd's check of an actor type, id or reminder name: no `/`, `\`, `#`,
/// `?`, NUL or control characters, and not `.` or `..`.
pub(crate) fn validate_name(what: &str, name: &str) -> Result<(), DaprError> {
    let bad = |why: String| DaprError::BadRequest(format!("invalid {what}: {why}"));
    if name.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if name.contains(['#', '?', '\0', '/', '\\']) {
        return Err(bad(format!("name contains forbidden character: {name:?}")));
    }
    if let Some(at) = name.bytes().position(|b| b < 0x20 || b == 0x7f) {
        return Err(bad(format!(
            "name contains control character at position {at}: {name:?}"
        )));
    }
    if name == "." || name == ".." {
        return Err(bad(format!("name is a path traversal sequence: {name:?}")));
    }
    Ok(())
}

/// daprd's normalisation of an actor method: no `#`, `?`, NUL or control
/// characters; `.` and `..` segments resolved, never above the method.
pub(crate) fn normalize_method(method: &str) -> Result<String, DaprError> {
    let bad = |why: String| DaprError::BadRequest(format!("invalid actor method: {why}"));
    if method.contains(['#', '?', '\0']) {
        return Err(bad(format!(
            "method contains forbidden character: {method:?}"
        )));
    }
    if let Some(at) = method.bytes().position(|b| b < 0x20 || b == 0x7f) {
        return Err(bad(format!(
            "method contains control character at position {at}: {method:?}"
        )));
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in method.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            segment => segments.push(segment),
        }
    }
    Ok(segments.join("/"))
}

/// A call of an actor's method.
#[derive(Debug, Clone)]
pub(crate) struct ActorCall {
    pub actor_type: String,
    pub actor_id: String,
    /// Normalised ([`normalize_method`]): `remind/{name}` and
    /// `timer/{name}` for reminders and timers.
    pub method: String,
    /// The caller's headers that go on to the app.
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trace: TraceContext,
}

impl ActorCall {
    /// A call of `method` (checked as daprd checks it) with `body`.
    pub(crate) fn new(
        actor_type: &str,
        actor_id: &str,
        method: &str,
        body: Bytes,
        trace: TraceContext,
    ) -> Result<ActorCall, DaprError> {
        validate_name("actorType", actor_type)?;
        validate_name("actorId", actor_id)?;
        Ok(ActorCall {
            actor_type: actor_type.to_string(),
            actor_id: actor_id.to_string(),
            method: normalize_method(method)?,
            headers: HeaderMap::new(),
            body,
            trace,
        })
    }

    pub(super) fn key(&self) -> ActorKey {
        (self.actor_type.clone(), self.actor_id.clone())
    }

    /// The app's route for this call.
    fn app_route(&self) -> String {
        format!("/actors/{}", self.path())
    }

    /// `{type}/{id}/method/{method}`, each part percent-encoded as a URL
    /// path needs it (an id may hold a space or a `%`).
    fn path(&self) -> String {
        let method: Vec<String> = self.method.split('/').map(path_segment).collect();
        format!(
            "{}/{}/method/{}",
            path_segment(&self.actor_type),
            path_segment(&self.actor_id),
            method.join("/")
        )
    }
}

/// `text` as one segment of a URL path: every byte but RFC 3986's
/// unreserved characters and sub-delimiters (and `:`, `@`) percent-encoded.
pub(super) fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The app's answer to an actor call.
#[derive(Debug)]
pub(crate) struct ActorAnswer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ActorAnswer {
    /// Whether the app marked it as the actor's error (the .NET SDK's way).
    pub(crate) fn is_actor_error(&self) -> bool {
        self.headers.contains_key(ERROR_RESPONSE_HEADER)
    }

    /// The answer as the app gave it: status, headers and body (marked so
    /// that no error body replaces it).
    pub(crate) fn into_response(self) -> axum::response::Response {
        let mut response = axum::response::Response::new(axum::body::Body::from(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
            .extensions_mut()
            .insert(service_kit::error_body::PassedThrough);
        response
    }

    /// Whether the app asked for the reminder it was called for to end.
    pub(super) fn cancels_reminder(&self) -> bool {
        self.headers
            .get(REMINDER_CANCEL_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "true" | "1" | "yes" | "y" | "on"
                )
            })
    }
}

impl Sidecar {
    /// `Ok` if this sidecar's app hosts `actor_type`, else why not.
    pub(crate) fn check_hosted(&self, actor_type: &str) -> Result<(), String> {
        let hosted = self
            .actors
            .host_config()
            .is_some_and(|host| host.hosts(actor_type));
        if hosted {
            Ok(())
        } else {
            Err(format!(
                "actor type {actor_type} is not hosted by app {}",
                self.config.app_id
            ))
        }
    }

    /// Calls an actor's method wherever the actor lives: on this sidecar's
    /// app, or through the sidecar that hosts it.
    pub(crate) async fn call_actor(&self, call: ActorCall) -> Result<ActorAnswer, DaprError> {
        self.wait_for_actor_host().await;
        let host = self.actor_host(&call.actor_type, &call.actor_id).await?;
        if Some(&host) == self.actors.own_address.get() {
            return self.call_local_actor(call).await;
        }
        self.call_peer_actor(host, call).await
    }

    /// Until this sidecar knows what its app hosts (or the invoke timeout
    /// passes): a call that comes before would not find it.
    async fn wait_for_actor_host(&self) {
        if self.config.app_port.is_none() {
            return;
        }
        let mut host = self.actors.host.subscribe();
        let _ =
            tokio::time::timeout(self.config.invoke_timeout, host.wait_for(Option::is_some)).await;
    }

    /// Calls an actor this sidecar's app hosts: activates it, waits for
    /// its turn, then `PUT /actors/{type}/{id}/method/{method}`.
    pub(crate) async fn call_local_actor(&self, call: ActorCall) -> Result<ActorAnswer, DaprError> {
        self.check_hosted(&call.actor_type)
            .map_err(DaprError::ActorInvoke)?;
        let key = call.key();
        let route = call.app_route();
        let mut headers = call.headers;
        let reentrancy = self
            .actors
            .host_config()
            .and_then(|host| host.reentrancy_of(&call.actor_type));
        let chain = reentrancy.map(|_| {
            headers
                .get(REENTRANCY_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .unwrap_or_else(crate::ids::new_uuid)
        });
        // A call of the chain that has the actor's turn enters at once.
        let reentered = match (&chain, reentrancy) {
            (Some(chain), Some(max_depth)) => {
                let activation = self.actors.activate(&key);
                match activation.reenter(chain, max_depth) {
                    Some(Ok(())) => Some(activation),
                    Some(Err(err)) => return Err(err),
                    None => None,
                }
            }
            _ => None,
        };
        let (activation, turn) = match reentered {
            Some(activation) => (activation, None),
            None => {
                let (activation, turn) = self.take_turn(&key).await?;
                if let Some(chain) = &chain {
                    *activation.chain.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some((chain.clone(), 1));
                }
                (activation, Some(turn))
            }
        };
        if let Some(value) = chain.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(REENTRANCY_ID_HEADER, value);
        }
        headers.remove(axum::http::header::CONTENT_LENGTH);
        if !headers.contains_key(axum::http::header::CONTENT_TYPE) {
            headers.insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        let answer = crate::app_channel::call_app(
            self,
            Method::PUT,
            &route,
            headers,
            call.body,
            &call.trace,
            self.config.max_body_size,
        )
        .await;
        activation.touch();
        match turn {
            Some(turn) => {
                *activation.chain.lock().unwrap_or_else(|e| e.into_inner()) = None;
                drop(turn);
            }
            None => activation.leave(),
        }
        let (status, headers, body) = answer.map_err(DaprError::ActorInvoke)?;
        let body = body.map_err(DaprError::ActorInvoke)?;
        let answer = ActorAnswer {
            status,
            headers: crate::invoke::forwardable(&headers),
            body,
        };
        if answer.is_actor_error() {
            return Ok(answer);
        }
        if status == StatusCode::NOT_FOUND {
            return Err(DaprError::ActorInvoke(format!(
                "actor method not found: {}",
                route.trim_start_matches('/')
            )));
        }
        if status != StatusCode::OK {
            return Err(DaprError::ActorInvoke(format!(
                "error from actor service: ({}) {}",
                status.as_u16(),
                String::from_utf8_lossy(&answer.body)
            )));
        }
        Ok(answer)
    }

    /// Waits (up to the invoke timeout) for the actor's turn, activating
    /// it again if it was deactivated meanwhile.
    async fn take_turn(
        &self,
        key: &ActorKey,
    ) -> Result<(Arc<Activation>, tokio::sync::OwnedMutexGuard<()>), DaprError> {
        let limit = self.config.invoke_timeout;
        let _pending = self.metrics.actors.pending_call(&key.0);
        let waited = tokio::time::timeout(limit, async {
            loop {
                let activation = self.actors.activate(key);
                let turn = activation.turn.clone().lock_owned().await;
                if self.actors.is_current(key, &activation) {
                    return (activation, turn);
                }
            }
        })
        .await;
        waited.map_err(|_| {
            DaprError::ActorInvoke(format!("actor {}/{} was busy for {limit:?}", key.0, key.1))
        })
    }

    /// Hands a call to the sidecar at `host`, which hosts the actor.
    async fn call_peer_actor(
        &self,
        host: SocketAddr,
        call: ActorCall,
    ) -> Result<ActorAnswer, DaprError> {
        let uri = format!("http://{host}{INTERNAL_PREFIX}/{}", call.path());
        let mut request = axum::http::Request::builder()
            .method(Method::PUT)
            .uri(uri)
            .body(axum::body::Body::from(call.body))
            .map_err(|e| DaprError::ActorInvoke(e.to_string()))?;
        let mut headers = call.headers;
        headers.remove(axum::http::header::CONTENT_LENGTH);
        call.trace.inject(&mut headers);
        if let Some(token) = self
            .config
            .api_token
            .as_deref()
            .and_then(|t| HeaderValue::from_str(t).ok())
        {
            headers.insert("dapr-api-token", token);
        }
        *request.headers_mut() = headers;
        let answer = tokio::time::timeout(self.config.invoke_timeout, async {
            let response = self.client.request(request).await?;
            let (parts, body) = response.into_parts();
            use http_body_util::BodyExt;
            let body = http_body_util::Limited::new(body, self.config.max_body_size)
                .collect()
                .await
                .map(|b| b.to_bytes());
            Ok::<_, hyper_util::client::legacy::Error>((parts, body))
        })
        .await;
        let (parts, body) = match answer {
            Err(_) => {
                return Err(DaprError::ActorInvoke(format!(
                    "the sidecar at {host} did not answer within {:?}",
                    self.config.invoke_timeout
                )));
            }
            Ok(Err(err)) => {
                self.actors.hosts_cache.forget(&call.actor_type);
                return Err(DaprError::ActorInvoke(format!(
                    "the sidecar at {host} cannot be reached: {}",
                    crate::invoke::error_chain(&err)
                )));
            }
            Ok(Ok(answer)) => answer,
        };
        let body = body.map_err(|e| {
            DaprError::ActorInvoke(format!("the answer from {host} cannot be read: {e}"))
        })?;
        let mut headers = parts.headers;
        if headers.remove(PEER_ANSWER_HEADER).is_some() {
            return Ok(ActorAnswer {
                status: parts.status,
                headers: crate::invoke::forwardable(&headers),
                body,
            });
        }
        Err(DaprError::peer(parts.status, &body))
    }
}

/// The answer a sidecar gives a peer for an actor it hosts: the app's
/// answer, marked as such ([`PEER_ANSWER_HEADER`]), or its own error.
pub(crate) fn peer_answer(answer: Result<ActorAnswer, DaprError>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match answer {
        Ok(answer) => {
            let mut response = answer.into_response();
            response
                .headers_mut()
                .insert(PEER_ANSWER_HEADER, HeaderValue::from_static("true"));
            response
        }
        Err(err) => err.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_methods_are_checked_as_daprd_checks_them() {
        for bad in ["", "a/b", "a\\b", "a?b", "a#b", ".", "..", "a\u{1}b"] {
            assert!(validate_name("actorId", bad).is_err(), "{bad:?}");
        }
        validate_name("actorId", "order-7.v2").unwrap();
        assert_eq!(normalize_method("remind/daily").unwrap(), "remind/daily");
        assert_eq!(normalize_method("../../state/x").unwrap(), "state/x");
        assert_eq!(normalize_method("a/./b/../c").unwrap(), "a/c");
        assert!(normalize_method("a?b").is_err());
        let call = ActorCall::new(
            "Cart",
            "user 7%",
            "remind/x y",
            Bytes::new(),
            TraceContext::new_root(),
        )
        .unwrap();
        assert_eq!(
            call.app_route(),
            "/actors/Cart/user%207%25/method/remind/x%20y"
        );
    }
}
