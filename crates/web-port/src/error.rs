//! web-port's errors, each a status, an `errorCode` and a message, answered
//! as JSON `{errorCode, message}` the UI can show.
//!
//! | variant | status | errorCode |
//! |---|---|---|
//! | `UnknownApi` | 400 | `ERR_UNKNOWN_API` |
//! | `EmptyBody` | 400 | `ERR_EMPTY_BODY` |
//! | `BodyRead` | 400 | `ERR_BAD_REQUEST` |
//! | `BodyTooLarge` | 413 | `ERR_BODY_TOO_LARGE` |
//! | `BodyTimeout` | 408 | `ERR_BODY_TIMEOUT` |
//! | `ImageAppUnavailable` | 503 | `ERR_IMAGE_APP_UNAVAILABLE` |
//! | `Sidecar` | 502 | `ERR_SIDECAR` |
//! | `Stats` | 503 | `ERR_STATE_STORE` |
//! | `NotFound` | 404 | `ERR_NOT_FOUND` |

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::dapr::DaprError;

/// Every way a web-port request can fail.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The `api` header names no known API.
    #[error("unknown api `{0}`: send the header `api: grayscale` or `api: classify`")]
    UnknownApi(String),
    /// No upload.
    #[error("the request body is empty: upload an image")]
    EmptyBody,
    /// The upload could not be read.
    #[error("cannot read the upload: {0}")]
    BodyRead(String),
    /// The upload did not arrive in time (a slowly trickled body).
    #[error("the upload did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    /// The upload is over the limit.
    #[error("the upload exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The image app could not be reached through the sidecar.
    #[error("the {api} service is unavailable: {reason}")]
    ImageAppUnavailable {
        /// The API asked for.
        api: String,
        /// What the sidecar said.
        reason: String,
    },
    /// Our own sidecar could not be reached.
    #[error("{0}")]
    Sidecar(DaprError),
    /// The state store failed.
    #[error("the stats are unavailable: {0}")]
    Stats(DaprError),
    /// No such route or file.
    #[error("not found: {0}")]
    NotFound(String),
}

impl WebError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::UnknownApi(_) | WebError::EmptyBody | WebError::BodyRead(_) => {
                StatusCode::BAD_REQUEST
            }
            WebError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            WebError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::ImageAppUnavailable { .. } | WebError::Stats(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            WebError::Sidecar(_) => StatusCode::BAD_GATEWAY,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
        }
    }

    /// The stable `errorCode`.
    pub fn code(&self) -> &'static str {
        match self {
            WebError::UnknownApi(_) => "ERR_UNKNOWN_API",
            WebError::EmptyBody => "ERR_EMPTY_BODY",
            WebError::BodyRead(_) => "ERR_BAD_REQUEST",
            WebError::BodyTooLarge { .. } => "ERR_BODY_TOO_LARGE",
            WebError::BodyTimeout(_) => "ERR_BODY_TIMEOUT",
            WebError::ImageAppUnavailable { .. } => "ERR_IMAGE_APP_UNAVAILABLE",
            WebError::Sidecar(_) => "ERR_SIDECAR",
            WebError::Stats(_) => "ERR_STATE_STORE",
            WebError::NotFound(_) => "ERR_NOT_FOUND",
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response =
            service_kit::error_body::error_response(status, self.code(), self.to_string());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // The app or the store may be back soon; say when to retry.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}
