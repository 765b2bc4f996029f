//! Reading a whole request body under a size limit, the same way in every
//! service: a `Content-Length` over the limit is refused before reading, a
//! body that grows past it while streaming is refused too, and an empty
//! body is its own error.

use axum::extract::Request;
use bytes::Bytes;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Over the limit (declared or streamed).
    #[error("the request body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body was empty.
    #[error("the request body is empty")]
    Empty,
    /// The connection failed while reading.
    #[error("cannot read the request body: {0}")]
    Read(String),
}

/// Reads the whole body of `request`, at most `limit` bytes.
pub async fn read_limited(request: Request, limit: usize) -> Result<Bytes, BodyError> {
    if crate::headers::content_length(request.headers()).is_some_and(|len| len > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let body = axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|err| {
            let err = err.into_inner();
            if err.is::<http_body_util::LengthLimitError>() {
                BodyError::TooLarge { limit }
            } else {
                BodyError::Read(err.to_string())
            }
        })?;
    if body.is_empty() {
        return Err(BodyError::Empty);
    }
    Ok(body)
}
