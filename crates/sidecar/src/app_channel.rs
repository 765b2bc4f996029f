//! The sidecar's own dealings with its app: pub/sub events
//! ([`crate::pubsub::delivery`]) and input binding events and probes
//! ([`crate::input_bindings`]). Invocations have their own path
//! ([`crate::invoke`]); these are what the sidecar sends on its own
//! account, each within `--app-max-concurrency` and the invoke timeout,
//! with the app's API token (`APP_API_TOKEN`) and the trace context
//! ([`send_to_app`]); they run while the app is healthy
//! ([`Sidecar::while_app_is_healthy`]), after asking the app what it
//! wants ([`Sidecar::ask_app_until_answered`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use bytes::Bytes;
use service_kit::trace::TraceContext;

use crate::Sidecar;

/// How often an app that does not answer yet is asked again.
const ASK_AGAIN: Duration = Duration::from_millis(250);

/// The most of an answer's body that is read (the rest is cut off).
const ANSWER_LIMIT: usize = 64 << 10;

/// Sends `method` `route` (a path from `/`) to the app, with `headers`
/// and `body` (of `content_type`); the app's status and body (up to 64
/// KiB; an answer over that reads as empty), or why there is none (no app,
/// no answer in time, no connection).
pub(crate) async fn send_to_app(
    sidecar: &Sidecar,
    method: Method,
    route: &str,
    headers: &[(&str, &str)],
    content_type: &'static str,
    body: Bytes,
    trace: &TraceContext,
) -> Result<(StatusCode, Bytes), String> {
    let mut header_map = HeaderMap::with_capacity(headers.len() + 1);
    header_map.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in headers {
        let name = HeaderName::try_from(*name).map_err(|e| format!("header `{name}`: {e}"))?;
        let value = HeaderValue::try_from(*value).map_err(|e| format!("header `{name}`: {e}"))?;
        header_map.append(name, value);
    }
    let (status, _, body) = call_app(
        sidecar,
        method,
        route,
        header_map,
        body,
        trace,
        ANSWER_LIMIT,
    )
    .await?;
    Ok((status, body.unwrap_or_default()))
}

/// [`send_to_app`] with any headers, answering the app's headers too and
/// its body up to `answer_limit` bytes (`Err` when it is over, or breaks
/// off).
pub(crate) async fn call_app(
    sidecar: &Sidecar,
    method: Method,
    route: &str,
    headers: HeaderMap,
    body: Bytes,
    trace: &TraceContext,
    answer_limit: usize,
) -> Result<(StatusCode, HeaderMap, Result<Bytes, String>), String> {
    let Some(port) = sidecar.config.app_port else {
        return Err("no app port".into());
    };
    let _slot = match &sidecar.app_slots {
        Some(slots) => slots.clone().acquire_owned().await.ok(),
        None => None,
    };
    let mut request = axum::http::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{route}"))
        .body(Body::from(body))
        .map_err(|e| format!("the request to the app cannot be built: {e}"))?;
    *request.headers_mut() = headers;
    trace.inject(request.headers_mut());
    if let Some(token) = sidecar
        .config
        .app_api_token
        .as_deref()
        .and_then(|t| HeaderValue::from_str(t).ok())
    {
        request.headers_mut().insert("dapr-api-token", token);
    }
    let answer = tokio::time::timeout(sidecar.config.invoke_timeout, async {
        let response = sidecar.client.request(request).await?;
        let (parts, body) = response.into_parts();
        use http_body_util::BodyExt;
        let body = http_body_util::Limited::new(body, answer_limit)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| format!("the app's answer cannot be read: {e}"));
        Ok::<_, hyper_util::client::legacy::Error>((parts.status, parts.headers, body))
    })
    .await;
    match answer {
        Err(_) => Err("the app did not answer in time".into()),
        Ok(Err(err)) => Err(format!("the app cannot be reached: {err}")),
        Ok(Ok(answer)) => Ok(answer),
    }
}

impl Sidecar {
    /// Asks the app with `ask` until it answers (`None` if the sidecar
    /// stops first), logging `what` is awaited once.
    pub(crate) async fn ask_app_until_answered<T, Ask, Fut>(
        &self,
        what: &str,
        mut ask: Ask,
    ) -> Option<T>
    where
        Ask: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let mut warned = false;
        loop {
            match ask().await {
                Ok(answer) => return Some(answer),
                Err(reason) if !warned => {
                    tracing::info!(%reason, "waiting for the app's {what}");
                    warned = true;
                }
                Err(_) => {}
            }
            tokio::select! {
                () = self.shutdown_was_requested() => return None,
                () = tokio::time::sleep(ASK_AGAIN) => {}
            }
        }
    }

    /// Runs work for the app (its `what`) each time it is healthy, until
    /// the sidecar stops: `start` starts the tasks (`None`: the sidecar
    /// stopped first), which are stopped when the app turns unhealthy or
    /// the sidecar stops; then `stopped` runs.
    pub(crate) async fn while_app_is_healthy<Start, Fut>(
        self: Arc<Self>,
        what: &str,
        mut start: Start,
        stopped: impl Fn(&Sidecar),
    ) where
        Start: FnMut(Arc<Sidecar>) -> Fut,
        Fut: Future<Output = Option<tokio::task::JoinSet<()>>>,
    {
        let mut healthy = self.app_healthy.subscribe();
        loop {
            tokio::select! {
                () = self.shutdown_was_requested() => return,
                _ = healthy.wait_for(|&h| h) => {}
            }
            let Some(mut tasks) = start(self.clone()).await else {
                return;
            };
            tokio::select! {
                () = self.shutdown_was_requested() => {}
                _ = healthy.wait_for(|&h| !h) => {
                    tracing::warn!("the app is unhealthy: its {what} stop until it recovers");
                }
            }
            tasks.shutdown().await;
            stopped(&self);
            if *self.shutdown_requested.borrow() {
                return;
            }
        }
    }
}
