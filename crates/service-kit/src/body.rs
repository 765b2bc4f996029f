//! Reading a whole request body under a size limit, the same way in every
//! service: a `Content-Length` over the limit is refused before reading, a
//! body that grows past it while streaming is refused too, an empty body is
//! its own error, and a body that does not arrive within a deadline (a
//! slowly trickled upload) is refused rather than waited for forever.

use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use bytes::Bytes;

/// Why a body could not be read: the same status, `errorCode` and message
/// in every service.
///
/// | variant | status | errorCode |
/// |---|---|---|
/// | `TooLarge` | 413 | `ERR_BODY_TOO_LARGE` |
/// | `Empty` | 400 | `ERR_EMPTY_BODY` |
/// | `TimedOut` | 408 | `ERR_BODY_TIMEOUT` |
/// | `Read` | 400 | `ERR_BAD_REQUEST` |
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Over the limit (declared or streamed).
    #[error("the request body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body was empty.
    #[error("the request body is empty: send an image (JPEG, PNG, GIF, WebP or BMP)")]
    Empty,
    /// The whole body did not arrive in time.
    #[error("the request body did not arrive within {0:?}")]
    TimedOut(Duration),
    /// The connection failed while reading.
    #[error("cannot read the request body: {0}")]
    Read(String),
}

impl BodyError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Empty | BodyError::Read(_) => StatusCode::BAD_REQUEST,
            BodyError::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The stable `errorCode`.
    pub fn code(&self) -> &'static str {
        match self {
            BodyError::TooLarge { .. } => crate::error_body::BODY_TOO_LARGE,
            BodyError::Empty => "ERR_EMPTY_BODY",
            BodyError::TimedOut(_) => "ERR_BODY_TIMEOUT",
            BodyError::Read(_) => crate::error_body::BAD_REQUEST,
        }
    }
}

/// The default for how long a whole request body may take to arrive.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The bounds on one request body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// The most bytes.
    pub max_bytes: usize,
    /// How long the whole body may take to arrive.
    pub timeout: Duration,
}

impl BodyLimits {
    /// At most `max_bytes`, within [`DEFAULT_BODY_TIMEOUT`].
    pub fn max_bytes(max_bytes: usize) -> BodyLimits {
        BodyLimits {
            max_bytes,
            timeout: DEFAULT_BODY_TIMEOUT,
        }
    }
}

/// Reads the whole body of `request` within `limits`; an empty body is
/// [`BodyError::Empty`].
pub async fn read_limited(request: Request, limits: BodyLimits) -> Result<Bytes, BodyError> {
    let body = read_to_limit(request, limits).await?;
    if body.is_empty() {
        return Err(BodyError::Empty);
    }
    Ok(body)
}

/// Reads the whole body of `request` within `limits`; it may be empty.
pub async fn read_to_limit(request: Request, limits: BodyLimits) -> Result<Bytes, BodyError> {
    let BodyLimits {
        max_bytes: limit,
        timeout,
    } = limits;
    if crate::headers::content_length(request.headers()).is_some_and(|len| len > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let body = tokio::time::timeout(timeout, axum::body::to_bytes(request.into_body(), limit))
        .await
        .map_err(|_| BodyError::TimedOut(timeout))?
        .map_err(|err| {
            let err = err.into_inner();
            if err.is::<http_body_util::LengthLimitError>() {
                BodyError::TooLarge { limit }
            } else {
                BodyError::Read(err.to_string())
            }
        })?;
    Ok(body)
}
