//! The function app's errors: one table of status, `errorCode` and message,
//! turned into a JSON `{errorCode, message}` body in one `IntoResponse`.
//! Every message about a call names the function.
//!
//! | variant            | status | errorCode                        |
//! |--------------------|--------|----------------------------------|
//! | `Body`             | 400, 408, 413 | `service_kit::body::BodyError`'s codes |
//! | `Rejected`         | from the function's `exitCodes` (default 422) | from `exitCodes` (default `ERR_FUNCTION_REJECTED`) |
//! | `UnknownModel`     | 400    | `ERR_UNKNOWN_MODEL`              |
//! | `BadQuery`         | 400    | `ERR_BAD_REQUEST`                |
//! | `NotFound`         | 404    | `ERR_NOT_FOUND`                  |
//! | `MethodNotAllowed` | 405    | `ERR_METHOD_NOT_ALLOWED`         |
//! | `Busy`             | 503    | `ERR_BUSY` (with `Retry-After`)  |
//! | `Timeout`          | 504    | `ERR_FUNCTION_TIMEOUT`           |
//! | `Function`         | 500    | `ERR_FUNCTION_TRAP`, `ERR_FUNCTION_MEMORY_LIMIT`, `ERR_FUNCTION_OUTPUT_TOO_LARGE`, `ERR_INTERNAL` |
//!
//! The image functions' codes (`ERR_INVALID_IMAGE`, `ERR_UNSUPPORTED_IMAGE`,
//! `ERR_IMAGE_TOO_LARGE`, `ERR_INFERENCE_FAILED`) are `Rejected` answers
//! their configuration gives ([`crate::image_api::image_exit_codes`]).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use function_host::CallError;
use service_kit::body::BodyError;
use service_kit::error_body;

use crate::config::ExitCodes;

/// Every way a request to a function app can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body could not be read: empty, too large, too slow, broken.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// The function exited non-zero: its configuration says what that means.
    #[error("{message}")]
    Rejected {
        /// The status its `exitCodes` give.
        status: StatusCode,
        /// The `errorCode` its `exitCodes` give.
        code: String,
        /// The function's name, exit code and stderr line.
        message: String,
    },
    /// The call named a model the function does not have.
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
    #[error("function `{0}`: {1}; retry shortly")]
    Busy(String, CallError),
    /// The function ran out of time.
    #[error("function `{0}`: {1}")]
    Timeout(String, CallError),
    /// The function failed in a way that is not the caller's fault.
    #[error("function `{0}`: {1}")]
    Function(String, CallError),
}

impl ApiError {
    /// The error a failed call of function `name` becomes, its non-zero
    /// exit codes read through `exit_codes`.
    pub fn from_call(name: &str, exit_codes: &ExitCodes, err: CallError) -> ApiError {
        match err {
            CallError::BadInput { exit_code, stderr } => {
                let answer = exit_codes.answer(exit_code);
                let message = if stderr.is_empty() {
                    format!("function `{name}` exited with code {exit_code}")
                } else {
                    format!("function `{name}` exited with code {exit_code}: {stderr}")
                };
                ApiError::Rejected {
                    status: StatusCode::from_u16(answer.status)
                        .unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
                    code: answer.error_code.clone(),
                    message,
                }
            }
            CallError::InputTooLarge { limit, .. } => ApiError::Body(BodyError::TooLarge { limit }),
            err @ CallError::Busy { .. } => ApiError::Busy(name.to_string(), err),
            err @ CallError::Timeout { .. } => ApiError::Timeout(name.to_string(), err),
            err => ApiError::Function(name.to_string(), err),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Body(body) => body.status(),
            ApiError::Rejected { status, .. } => *status,
            ApiError::UnknownModel(_) | ApiError::BadQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Busy(..) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(..) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Function(..) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable `errorCode` of this error.
    pub fn code(&self) -> &str {
        match self {
            ApiError::Body(body) => body.code(),
            ApiError::Rejected { code, .. } => code,
            ApiError::UnknownModel(_) => "ERR_UNKNOWN_MODEL",
            ApiError::BadQuery(_) => error_body::BAD_REQUEST,
            ApiError::NotFound(_) => error_body::NOT_FOUND,
            ApiError::MethodNotAllowed => error_body::METHOD_NOT_ALLOWED,
            ApiError::Busy(..) => "ERR_BUSY",
            ApiError::Timeout(..) => "ERR_FUNCTION_TIMEOUT",
            ApiError::Function(_, CallError::Trap { .. }) => "ERR_FUNCTION_TRAP",
            ApiError::Function(_, CallError::MemoryLimit { .. }) => "ERR_FUNCTION_MEMORY_LIMIT",
            ApiError::Function(_, CallError::OutputTooLarge { .. }) => {
                "ERR_FUNCTION_OUTPUT_TOO_LARGE"
            }
            ApiError::Function(..) => "ERR_INTERNAL",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = error_body::error_response(self.status(), self.code(), self.to_string());
        if let ApiError::Busy(..) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
