//! web-port's errors, each a status, an `errorCode` and a message, answered
//! as JSON `{errorCode, message}` the UI can show.
//!
//! | variant | status | errorCode |
//! |---|---|---|
//! | `UnknownApi` | 400 | `ERR_UNKNOWN_API` |
//! | `Body` | 400, 408, 413 | `service_kit::body::BodyError`'s codes |
//! | `ImageAppUnavailable` | 503 | `ERR_IMAGE_APP_UNAVAILABLE` |
//! | `Sidecar` | 502 | `ERR_SIDECAR` |
//! | `Stats` | 503 | `ERR_STATE_STORE` |
//! | `EventsUnavailable` | 503 | `ERR_EVENTS_UNAVAILABLE` |
//! | `NotFound` | 404 | `ERR_NOT_FOUND` |

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::dapr::DaprClientError;

/// Every way a web-port request can fail.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The `api` header names no known API.
    #[error("unknown api `{0}`: send the header `api: grayscale` or `api: classify`")]
    UnknownApi(String),
    /// The upload could not be read: empty, too large, too slow, broken.
    #[error(transparent)]
    Body(#[from] service_kit::body::BodyError),
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
    Sidecar(DaprClientError),
    /// The state store failed.
    #[error("the stats are unavailable: {0}")]
    Stats(DaprClientError),
    /// The events service could not be reached through the sidecar.
    #[error("the events service is unavailable: {0}")]
    EventsUnavailable(String),
    /// No such route or file.
    #[error("not found: {0}")]
    NotFound(String),
}

impl WebError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::UnknownApi(_) => StatusCode::BAD_REQUEST,
            WebError::Body(body) => body.status(),
            WebError::ImageAppUnavailable { .. }
            | WebError::Stats(_)
            | WebError::EventsUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Sidecar(_) => StatusCode::BAD_GATEWAY,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
        }
    }

    /// The stable `errorCode`.
    pub fn code(&self) -> &'static str {
        match self {
            WebError::UnknownApi(_) => "ERR_UNKNOWN_API",
            WebError::Body(body) => body.code(),
            WebError::ImageAppUnavailable { .. } => "ERR_IMAGE_APP_UNAVAILABLE",
            WebError::Sidecar(_) => "ERR_SIDECAR",
            WebError::Stats(_) => "ERR_STATE_STORE",
            WebError::EventsUnavailable(_) => "ERR_EVENTS_UNAVAILABLE",
            WebError::NotFound(_) => service_kit::error_body::NOT_FOUND,
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
