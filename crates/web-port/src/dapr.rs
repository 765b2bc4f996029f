//! A small client for the Dapr sidecar: service invocation over its HTTP
//! API or its gRPC API (`InvokeService`, what the seed's Go SDK used for
//! classify), and the state API with etags. Every call has a timeout.

use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use service_kit::headers::server_timing_lines;
use service_kit::trace::TraceContext;

/// Why a call to the sidecar failed.
#[derive(Debug, thiserror::Error)]
pub enum DaprClientError {
    /// The sidecar could not be reached or did not answer in time.
    #[error("the Dapr sidecar at {url} is unreachable: {reason}")]
    Unreachable {
        /// What was called.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// A state write lost an etag race (409).
    #[error("the state changed since it was read (etag mismatch)")]
    EtagMismatch,
    /// The sidecar answered with an error.
    #[error("the Dapr sidecar answered {status}: {body}")]
    Status {
        /// Its status.
        status: StatusCode,
        /// Its body (Dapr's `{errorCode, message}`).
        body: String,
    },
    /// A stored value is not what this app wrote.
    #[error("a stored value cannot be read: {0}")]
    Decode(String),
}

/// An answer from an invoked app, passed through as is.
#[derive(Debug)]
pub struct Invoked {
    /// The app's status.
    pub status: StatusCode,
    /// Its `Content-Type`, if any.
    pub content_type: Option<String>,
    /// Its `Retry-After`, if any (a busy app says when to come back).
    pub retry_after: Option<String>,
    /// Its body.
    pub body: Bytes,
    /// Its `Server-Timing` entries, each hop's (empty when it gave none).
    pub server_timing: Vec<String>,
}

/// Which of the sidecar's APIs an invocation goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InvokeProtocol {
    /// `POST /v1.0/invoke/{app}/method/{method}` on the HTTP API.
    Http,
    /// `InvokeService` on the gRPC API.
    Grpc,
}

/// The sidecar at `127.0.0.1`: its HTTP API on `$DAPR_HTTP_PORT`, its
/// gRPC API on `$DAPR_GRPC_PORT`.
#[derive(Debug, Clone)]
pub struct DaprClient {
    base: String,
    http: reqwest::Client,
    grpc: GrpcApi,
    grpc_address: String,
    invoke_timeout: Duration,
}

/// The generated client of the sidecar's gRPC API, on one lazily connected
/// HTTP/2 channel.
type GrpcApi = dapr::dapr::proto::runtime::v1::dapr_client::DaprClient<tonic::transport::Channel>;

/// State calls are small and local: a short timeout.
const STATE_TIMEOUT: Duration = Duration::from_secs(5);

impl DaprClient {
    /// A client for the sidecar on `http_port` and `grpc_port`.
    pub fn new(http_port: u16, grpc_port: u16, invoke_timeout: Duration) -> DaprClient {
        let grpc_address = format!("http://127.0.0.1:{grpc_port}");
        // "http://127.0.0.1:PORT" is always a valid URI.
        let channel = tonic::transport::Endpoint::from_shared(grpc_address.clone())
            .unwrap_or_else(|_| tonic::transport::Endpoint::from_static("http://127.0.0.1:50001"))
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy();
        DaprClient {
            base: format!("http://127.0.0.1:{http_port}"),
            http: reqwest::Client::new(),
            grpc: GrpcApi::new(channel).max_decoding_message_size(usize::MAX),
            grpc_address,
            invoke_timeout,
        }
    }

    /// Invokes `method` of `app_id` with `body` through `protocol`
    /// (`method` may carry a query string).
    pub async fn invoke_with(
        &self,
        protocol: InvokeProtocol,
        app_id: &str,
        method: &str,
        body: Bytes,
        content_type: Option<&str>,
        trace: &TraceContext,
    ) -> Result<Invoked, DaprClientError> {
        match protocol {
            InvokeProtocol::Http => self.invoke(app_id, method, body, content_type, trace).await,
            InvokeProtocol::Grpc => {
                self.invoke_grpc(app_id, method, body, content_type, trace)
                    .await
            }
        }
    }

    /// gRPC `InvokeService` (a `POST` of `body`; a query string in `method`
    /// goes in the HTTP extension). The answer is turned into
    /// the same [`Invoked`] the HTTP API gives: an app's error status comes
    /// back as daprd sends it over gRPC (the `dapr-http-status` header and an
    /// `ErrorInfo` whose `http.error_message` holds the body's first 63
    /// bytes), so its body becomes Dapr's JSON error with the app's
    /// `errorCode` when those bytes name one.
    pub async fn invoke_grpc(
        &self,
        app_id: &str,
        method: &str,
        body: Bytes,
        content_type: Option<&str>,
        trace: &TraceContext,
    ) -> Result<Invoked, DaprClientError> {
        use dapr::dapr::proto::common::v1 as common;
        use dapr::dapr::proto::runtime::v1 as pb;
        let (method, querystring) = method.split_once('?').unwrap_or((method, ""));
        let message = common::InvokeRequest {
            method: method.to_string(),
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: body.to_vec(),
            }),
            content_type: content_type.unwrap_or_default().to_string(),
            http_extension: Some(common::HttpExtension {
                verb: common::http_extension::Verb::Post.into(),
                querystring: querystring.to_string(),
            }),
        };
        let mut request = tonic::Request::new(pb::InvokeServiceRequest {
            id: app_id.to_string(),
            message: Some(message),
        });
        request.set_timeout(self.invoke_timeout);
        for (name, value) in &trace.headers() {
            if let (Ok(key), Ok(value)) = (
                tonic::metadata::MetadataKey::from_bytes(name.as_str().as_bytes()),
                tonic::metadata::MetadataValue::try_from(value.as_bytes()),
            ) {
                request.metadata_mut().insert(key, value);
            }
        }
        match self.grpc.clone().invoke_service(request).await {
            Ok(answer) => {
                let server_timing = server_timing_lines(&answer.metadata().clone().into_headers());
                let answer = answer.into_inner();
                Ok(Invoked {
                    server_timing,
                    status: StatusCode::OK,
                    content_type: Some(answer.content_type).filter(|c| !c.is_empty()),
                    retry_after: None,
                    body: answer
                        .data
                        .map(|d| Bytes::from(d.value))
                        .unwrap_or_default(),
                })
            }
            Err(status) => grpc_failure(&self.grpc_address, status),
        }
    }

    fn unreachable(url: &str, err: reqwest::Error) -> DaprClientError {
        let reason = if err.is_timeout() {
            "no answer in time".to_string()
        } else if err.is_connect() {
            "connection refused (is the sidecar running?)".to_string()
        } else {
            err.to_string()
        };
        DaprClientError::Unreachable {
            url: url.to_string(),
            reason,
        }
    }

    /// `POST /v1.0/invoke/{app_id}/method/{method}` with `body`.
    pub async fn invoke(
        &self,
        app_id: &str,
        method: &str,
        body: Bytes,
        content_type: Option<&str>,
        trace: &TraceContext,
    ) -> Result<Invoked, DaprClientError> {
        self.invoke_verb(
            reqwest::Method::POST,
            app_id,
            method,
            body,
            content_type,
            trace,
        )
        .await
    }

    /// `GET /v1.0/invoke/{app_id}/method/{method}` (`method` may carry a
    /// query string).
    pub async fn invoke_get(
        &self,
        app_id: &str,
        method: &str,
        trace: &TraceContext,
    ) -> Result<Invoked, DaprClientError> {
        self.invoke_verb(
            reqwest::Method::GET,
            app_id,
            method,
            Bytes::new(),
            None,
            trace,
        )
        .await
    }

    /// `POST /v1.0/publish/{pubsub}/{topic}` with `event` as JSON: returns
    /// once the broker has it.
    pub async fn publish<T: Serialize>(
        &self,
        pubsub: &str,
        topic: &str,
        event: &T,
        trace: &TraceContext,
    ) -> Result<(), DaprClientError> {
        let url = format!("{}/v1.0/publish/{pubsub}/{topic}", self.base);
        let response = self
            .http
            .post(&url)
            .headers(trace.headers())
            .timeout(STATE_TIMEOUT)
            .json(event)
            .send()
            .await
            .map_err(|e| Self::unreachable(&url, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(DaprClientError::Status { status, body })
    }

    /// Service invocation over the HTTP API with `verb`.
    async fn invoke_verb(
        &self,
        verb: reqwest::Method,
        app_id: &str,
        method: &str,
        body: Bytes,
        content_type: Option<&str>,
        trace: &TraceContext,
    ) -> Result<Invoked, DaprClientError> {
        let url = format!("{}/v1.0/invoke/{app_id}/method/{method}", self.base);
        let mut request = self
            .http
            .request(verb, &url)
            .headers(trace.headers())
            .timeout(self.invoke_timeout)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Self::unreachable(&url, e))?;
        let status = response.status();
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let retry_after = header(reqwest::header::RETRY_AFTER);
        let server_timing = server_timing_lines(response.headers());
        let body = response
            .bytes()
            .await
            .map_err(|e| Self::unreachable(&url, e))?;
        Ok(Invoked {
            status,
            content_type,
            retry_after,
            body,
            server_timing,
        })
    }

    /// `GET /v1.0/state/{store}/{key}`: the value and its etag, or `None`.
    pub async fn get_state<T: DeserializeOwned>(
        &self,
        store: &str,
        key: &str,
        trace: &TraceContext,
    ) -> Result<Option<(T, String)>, DaprClientError> {
        let url = format!("{}/v1.0/state/{store}/{key}", self.base);
        let response = self
            .http
            .get(&url)
            .headers(trace.headers())
            .timeout(STATE_TIMEOUT)
            .send()
            .await
            .map_err(|e| Self::unreachable(&url, e))?;
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(DaprClientError::Status { status, body });
        }
        let etag = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Self::unreachable(&url, e))?;
        if bytes.is_empty() {
            return Ok(None);
        }
        let value =
            serde_json::from_slice(&bytes).map_err(|e| DaprClientError::Decode(e.to_string()))?;
        Ok(Some((value, etag)))
    }

    /// Saves `value` under `key` with first-write concurrency: with `etag`
    /// only if it still matches, without one only if the key is new.
    pub async fn save_state_first_write<T: Serialize>(
        &self,
        store: &str,
        key: &str,
        value: &T,
        etag: Option<&str>,
        trace: &TraceContext,
    ) -> Result<(), DaprClientError> {
        let url = format!("{}/v1.0/state/{store}", self.base);
        let mut item = serde_json::json!({
            "key": key,
            "value": value,
            "options": { "concurrency": "first-write" },
        });
        if let Some(etag) = etag {
            item["etag"] = serde_json::Value::from(etag);
        }
        let response = self
            .http
            .post(&url)
            .headers(trace.headers())
            .timeout(STATE_TIMEOUT)
            .json(&[item])
            .send()
            .await
            .map_err(|e| Self::unreachable(&url, e))?;
        match response.status() {
            status if status.is_success() => Ok(()),
            StatusCode::CONFLICT => Err(DaprClientError::EtagMismatch),
            status => Err(DaprClientError::Status {
                status,
                body: response.text().await.unwrap_or_default(),
            }),
        }
    }
}

/// What a failed `InvokeService` means for web-port: the app's own error
/// (it carries `dapr-http-status`), the sidecar's (its `ErrorInfo` reason,
/// such as `ERR_DIRECT_INVOKE`, as a 500), or no sidecar at all.
fn grpc_failure(address: &str, status: tonic::Status) -> Result<Invoked, DaprClientError> {
    use tonic_types::StatusExt;
    let info = status.get_details_error_info();
    let app_status = status
        .metadata()
        .get("dapr-http-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(|v| StatusCode::from_u16(v).ok());
    let json_error = |code: &str, message: String| {
        Bytes::from(serde_json::json!({ "errorCode": code, "message": message }).to_string())
    };
    if let Some(app_status) = app_status {
        let detail = info
            .as_ref()
            .and_then(|i| i.metadata.get("http.error_message").cloned())
            .unwrap_or_default();
        // The app's errorCode, when the 63 bytes daprd keeps include it.
        let code = detail
            .split("\"errorCode\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .filter(|code| code.starts_with("ERR_"))
            .unwrap_or("ERR_IMAGE_APP");
        return Ok(Invoked {
            status: app_status,
            content_type: Some("application/json".into()),
            retry_after: (app_status == StatusCode::SERVICE_UNAVAILABLE).then(|| "1".into()),
            body: json_error(code, format!("{}: {detail}", status.message())),
            server_timing: Vec::new(),
        });
    }
    match (status.code(), info) {
        (_, Some(info)) if info.domain == "dapr.io" => Ok(Invoked {
            status: if status.code() == tonic::Code::NotFound {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            },
            content_type: Some("application/json".into()),
            retry_after: None,
            body: json_error(&info.reason, status.message().to_string()),
            server_timing: Vec::new(),
        }),
        (tonic::Code::DeadlineExceeded, _) => Err(DaprClientError::Unreachable {
            url: address.to_string(),
            reason: "no answer in time".into(),
        }),
        _ => Err(DaprClientError::Unreachable {
            url: address.to_string(),
            reason: status.message().to_string(),
        }),
    }
}
