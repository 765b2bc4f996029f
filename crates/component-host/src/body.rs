//! The bodies between hyper and a component, each bounded as it streams:
//! nothing is buffered whole, so a 1 GiB response needs no 1 GiB buffer.
//!
//! - [`RequestBody`] gives the component the client's body and ends it
//!   with an error once more than the limit has arrived; the host then
//!   answers 413 whatever the component did with the error.
//! - [`ResponseBody`] passes the component's body to the client and cuts
//!   the connection once more than the limit has gone out (the status was
//!   sent long before, so there is nothing better to do).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// The client's request body, cut off past `limit` bytes.
pub(crate) struct RequestBody {
    inner: axum::body::Body,
    limit: u64,
    seen: u64,
    exceeded: Arc<AtomicBool>,
}

impl RequestBody {
    /// `inner`, limited to `limit` bytes; `exceeded` is set if it goes over.
    pub(crate) fn new(inner: axum::body::Body, limit: u64, exceeded: Arc<AtomicBool>) -> Self {
        RequestBody {
            inner,
            limit,
            seen: 0,
            exceeded,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.exceeded.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpRequestBodySize(
                Some(this.seen),
            ))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.seen > this.limit {
                        this.exceeded.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(
                            wasmtime_wasi_http::Error::HttpRequestBodySize(Some(this.seen)),
                        )));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                tracing::debug!(error = %err, "the client's request body broke off");
                Poll::Ready(Some(Err(wasmtime_wasi_http::Error::ConnectionTerminated)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The component's response body, cut off past `limit` bytes.
pub(crate) struct ResponseBody {
    inner: HyperOutgoingBody,
    limit: u64,
    sent: u64,
}

impl ResponseBody {
    /// `inner`, limited to `limit` bytes.
    pub(crate) fn new(inner: HyperOutgoingBody, limit: u64) -> Self {
        ResponseBody {
            inner,
            limit,
            sent: 0,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = ResponseBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                    if this.sent > this.limit {
                        tracing::warn!(
                            limit = this.limit,
                            "a component's response body went over the limit; the connection is cut"
                        );
                        return Poll::Ready(Some(Err(ResponseBodyError::TooLarge(this.limit))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                tracing::warn!(error = %err, "a component's response body failed; the connection is cut");
                Poll::Ready(Some(Err(ResponseBodyError::Guest(err.to_string()))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a response body was cut off.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResponseBodyError {
    /// It went over the limit.
    #[error("the response body went over the limit of {0} bytes")]
    TooLarge(u64),
    /// The component's stream failed (a trap, a timeout, an error).
    #[error("the component's response body failed: {0}")]
    Guest(String),
}
