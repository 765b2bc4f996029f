//! The component host's errors: [`LoadError`] when a component cannot be
//! served at all, and [`RequestError`], one table of status and `errorCode`
//! for a request the component could not answer. What the guest itself
//! answers (any status) is passed through untouched; these are only the
//! host's answers, as Dapr's JSON `{errorCode, message}`.
//!
//! | variant            | status | errorCode                        |
//! |--------------------|--------|----------------------------------|
//! | `BodyTooLarge`     | 413    | `ERR_BODY_TOO_LARGE`             |
//! | `Busy`             | 503    | `ERR_BUSY` (with `Retry-After`)  |
//! | `Timeout`          | 504    | `ERR_COMPONENT_TIMEOUT`          |
//! | `MemoryLimit`      | 500    | `ERR_COMPONENT_MEMORY_LIMIT`     |
//! | `Trap`             | 500    | `ERR_COMPONENT_TRAP`             |
//! | `GuestError`       | 500    | `ERR_COMPONENT_ERROR`            |
//! | `NoResponse`       | 500    | `ERR_COMPONENT_NO_RESPONSE`      |
//! | `ResponseTooLarge` | 500    | `ERR_COMPONENT_RESPONSE_TOO_LARGE` |
//! | `Internal`         | 500    | `ERR_INTERNAL`                   |

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use service_kit::error_body;

/// A component that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The engine could not be set up.
    #[error("cannot set up the wasm engine: {0}")]
    Engine(String),
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// It is not a component, or does not compile.
    #[error("{path} is not a valid wasm component: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// wasmtime's reason.
        reason: String,
    },
    /// It is a component, but not a wasi:http one we can link.
    #[error(
        "{path} cannot be served: it must export wasi:http/incoming-handler@0.2 and import \
         nothing beyond WASI 0.2: {reason}"
    )]
    NotAProxy {
        /// The file.
        path: String,
        /// wasmtime's reason.
        reason: String,
    },
}

/// Every way the host itself answers a request.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request body is over the limit.
    #[error("the request body is larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// Every request slot stayed busy for the queue timeout.
    #[error("all {slots} request slots stayed busy for {waited:?}; retry shortly")]
    Busy {
        /// How many slots there are.
        slots: usize,
        /// How long the request waited.
        waited: Duration,
    },
    /// The component did not answer within the deadline.
    #[error("the component did not answer within {0:?}")]
    Timeout(Duration),
    /// The component ran out of memory at the limit.
    #[error("the component ran out of memory at the limit of {limit} bytes: {trap}")]
    MemoryLimit {
        /// The limit, in bytes.
        limit: usize,
        /// The trap that followed.
        trap: String,
    },
    /// The component trapped before answering.
    #[error("the component trapped: {0}")]
    Trap(String),
    /// The component answered with a wasi:http error code, not a response.
    #[error("the component answered with an error: {0}")]
    GuestError(String),
    /// The component returned without setting a response.
    #[error("the component returned without a response")]
    NoResponse,
    /// The component's response declares a body over the limit.
    #[error(
        "the component's response body ({length} bytes) is larger than the limit of {limit} bytes"
    )]
    ResponseTooLarge {
        /// The declared length.
        length: u64,
        /// The limit, in bytes.
        limit: u64,
    },
    /// Anything else: the host's own failure.
    #[error("{0}")]
    Internal(String),
}

impl RequestError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            RequestError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable `errorCode` of this error.
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::BodyTooLarge { .. } => error_body::BODY_TOO_LARGE,
            RequestError::Busy { .. } => "ERR_BUSY",
            RequestError::Timeout(_) => "ERR_COMPONENT_TIMEOUT",
            RequestError::MemoryLimit { .. } => "ERR_COMPONENT_MEMORY_LIMIT",
            RequestError::Trap(_) => "ERR_COMPONENT_TRAP",
            RequestError::GuestError(_) => "ERR_COMPONENT_ERROR",
            RequestError::NoResponse => "ERR_COMPONENT_NO_RESPONSE",
            RequestError::ResponseTooLarge { .. } => "ERR_COMPONENT_RESPONSE_TOO_LARGE",
            RequestError::Internal(_) => "ERR_INTERNAL",
        }
    }
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        let busy = matches!(self, RequestError::Busy { .. });
        let mut response = error_body::error_response(self.status(), self.code(), self.to_string());
        if busy {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
