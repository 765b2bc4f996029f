//! The image service's errors: one table of status, `errorCode` and message,
//! turned into a JSON `{errorCode, message}` body in one `IntoResponse`.
//!
//! | variant            | status | errorCode                        |
//! |--------------------|--------|----------------------------------|
//! | `Body`             | 400, 408, 413 | `service_kit::body::BodyError`'s codes |
//! | `InvalidImage`     | 400    | `ERR_INVALID_IMAGE`              |
//! | `UnsupportedImage` | 415    | `ERR_UNSUPPORTED_IMAGE`          |
//! | `ImageTooLarge`    | 413    | `ERR_IMAGE_TOO_LARGE`            |
//! | `UnknownModel`     | 400    | `ERR_UNKNOWN_MODEL`              |
//! | `BadQuery`         | 400    | `ERR_BAD_REQUEST`                |
//! | `NotFound`         | 404    | `ERR_NOT_FOUND`                  |
//! | `MethodNotAllowed` | 405    | `ERR_METHOD_NOT_ALLOWED`         |
//! | `Busy`             | 503    | `ERR_BUSY` (with `Retry-After`)  |
//! | `Timeout`          | 504    | `ERR_FUNCTION_TIMEOUT`           |
//! | `Inference`        | 500    | `ERR_INFERENCE_FAILED`           |
//! | `Function`         | 500    | `ERR_FUNCTION_TRAP`, `ERR_FUNCTION_MEMORY_LIMIT`, `ERR_FUNCTION_OUTPUT_TOO_LARGE`, `ERR_INTERNAL` |

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use function_host::{CallError, ExitKind};
use service_kit::body::BodyError;
use service_kit::error_body;

/// Every way a request to the image service can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body could not be read: empty, too large, too slow, broken.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// The function could not decode the image.
    #[error("{0}")]
    InvalidImage(String),
    /// The image's format is not supported.
    #[error("{0}")]
    UnsupportedImage(String),
    /// The image is over the function's own limits (a decompression bomb).
    #[error("{0}")]
    ImageTooLarge(String),
    /// The call named a model the function or the host does not have.
    #[error("{0}")]
    UnknownModel(String),
    /// The query string is not one this route takes.
    #[error("{0}")]
    BadQuery(String),
    /// No route matches.
    #[error("no route for {0}; see GET / for usage")]
    NotFound(String),
    /// The route exists for another method.
    #[error("method not allowed; see GET / for usage")]
    MethodNotAllowed,
    /// All call slots stayed busy.
    #[error("{0}; retry shortly")]
    Busy(CallError),
    /// The function ran out of time.
    #[error("{0}")]
    Timeout(CallError),
    /// The function's call to the host's inference failed (exit code 4).
    #[error("{0}")]
    Inference(String),
    /// The function failed in a way that is not the caller's fault.
    #[error("{0}")]
    Function(CallError),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Body(body) => body.status(),
            ApiError::InvalidImage(_) | ApiError::UnknownModel(_) | ApiError::BadQuery(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::UnsupportedImage(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::ImageTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Inference(_) | ApiError::Function(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable `errorCode` of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Body(body) => body.code(),
            ApiError::InvalidImage(_) => "ERR_INVALID_IMAGE",
            ApiError::UnsupportedImage(_) => "ERR_UNSUPPORTED_IMAGE",
            ApiError::ImageTooLarge(_) => "ERR_IMAGE_TOO_LARGE",
            ApiError::UnknownModel(_) => "ERR_UNKNOWN_MODEL",
            ApiError::BadQuery(_) => error_body::BAD_REQUEST,
            ApiError::NotFound(_) => error_body::NOT_FOUND,
            ApiError::MethodNotAllowed => error_body::METHOD_NOT_ALLOWED,
            ApiError::Busy(_) => "ERR_BUSY",
            ApiError::Timeout(_) => "ERR_FUNCTION_TIMEOUT",
            ApiError::Inference(_) => "ERR_INFERENCE_FAILED",
            ApiError::Function(CallError::Trap { .. }) => "ERR_FUNCTION_TRAP",
            ApiError::Function(CallError::MemoryLimit { .. }) => "ERR_FUNCTION_MEMORY_LIMIT",
            ApiError::Function(CallError::OutputTooLarge { .. }) => "ERR_FUNCTION_OUTPUT_TOO_LARGE",
            ApiError::Function(_) => "ERR_INTERNAL",
        }
    }
}

impl From<CallError> for ApiError {
    fn from(err: CallError) -> Self {
        match err {
            err @ CallError::BadInput { exit_code, .. } => {
                let reason = err.to_string();
                match ExitKind::from_code(exit_code) {
                    ExitKind::Unsupported => ApiError::UnsupportedImage(reason),
                    ExitKind::TooLarge => ApiError::ImageTooLarge(reason),
                    ExitKind::Invalid => ApiError::InvalidImage(reason),
                    ExitKind::HostService => ApiError::Inference(reason),
                    ExitKind::UnknownName => ApiError::UnknownModel(reason),
                }
            }
            CallError::InputTooLarge { limit, .. } => ApiError::Body(BodyError::TooLarge { limit }),
            err @ CallError::Busy { .. } => ApiError::Busy(err),
            err @ CallError::Timeout { .. } => ApiError::Timeout(err),
            err => ApiError::Function(err),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = error_body::error_response(self.status(), self.code(), self.to_string());
        if let ApiError::Busy(_) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
