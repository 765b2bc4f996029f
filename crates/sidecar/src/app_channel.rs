//! The sidecar's own HTTP requests to its app: pub/sub events
//! ([`crate::pubsub::delivery`]) and input binding events and probes
//! ([`crate::input_bindings`]). Invocations have their own path
//! ([`crate::invoke`]); these are what the sidecar sends on its own
//! account, each within `--app-max-concurrency` and the invoke timeout,
//! with the app's API token (`APP_API_TOKEN`) and the trace context.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use bytes::Bytes;
use service_kit::trace::TraceContext;

use crate::Sidecar;

/// The most of an answer's body that is read (the rest is cut off).
const ANSWER_LIMIT: usize = 64 << 10;

/// Sends `method` `route` (a path from `/`) to the app, with `headers`
/// and `body` (of `content_type`); the app's status and body (up to 64
/// KiB), or why there is none (no app, no answer in time, no connection).
pub(crate) async fn send_to_app(
    sidecar: &Sidecar,
    method: Method,
    route: &str,
    headers: &[(&str, &str)],
    content_type: &'static str,
    body: Bytes,
    trace: &TraceContext,
) -> Result<(StatusCode, Bytes), String> {
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
        .header("content-type", content_type);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    for (name, value) in &trace.headers() {
        request = request.header(name, value);
    }
    if let Some(token) = &sidecar.config.app_api_token {
        request = request.header("dapr-api-token", token);
    }
    let request = request
        .body(Body::from(body))
        .map_err(|e| format!("the request to the app cannot be built: {e}"))?;
    let answer = tokio::time::timeout(sidecar.config.invoke_timeout, async {
        let response = sidecar.client.request(request).await?;
        let status = response.status();
        use http_body_util::BodyExt;
        let body = http_body_util::Limited::new(response.into_body(), ANSWER_LIMIT)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok::<_, hyper_util::client::legacy::Error>((status, body))
    })
    .await;
    match answer {
        Err(_) => Err("the app did not answer in time".into()),
        Ok(Err(err)) => Err(format!("the app cannot be reached: {err}")),
        Ok(Ok(answer)) => Ok(answer),
    }
}
