//! A small client for the Dapr sidecar's HTTP API: service invocation and
//! the state API with etags. Every call has a timeout.

use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;

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
}

/// The sidecar at `http://127.0.0.1:$DAPR_HTTP_PORT`.
#[derive(Debug, Clone)]
pub struct DaprClient {
    base: String,
    http: reqwest::Client,
    invoke_timeout: Duration,
}

/// State calls are small and local: a short timeout.
const STATE_TIMEOUT: Duration = Duration::from_secs(5);

impl DaprClient {
    /// A client for the sidecar on `port`.
    pub fn new(port: u16, invoke_timeout: Duration) -> DaprClient {
        DaprClient {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            invoke_timeout,
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
    ) -> Result<Invoked, DaprClientError> {
        let url = format!("{}/v1.0/invoke/{app_id}/method/{method}", self.base);
        let mut request = self.http.post(&url).timeout(self.invoke_timeout).body(body);
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
        let body = response
            .bytes()
            .await
            .map_err(|e| Self::unreachable(&url, e))?;
        Ok(Invoked {
            status,
            content_type,
            retry_after,
            body,
        })
    }

    /// `GET /v1.0/state/{store}/{key}`: the value and its etag, or `None`.
    pub async fn get_state<T: DeserializeOwned>(
        &self,
        store: &str,
        key: &str,
    ) -> Result<Option<(T, String)>, DaprClientError> {
        let url = format!("{}/v1.0/state/{store}/{key}", self.base);
        let response = self
            .http
            .get(&url)
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
