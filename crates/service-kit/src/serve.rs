//! Serving a router on a listener with the bounds every service needs
//! against slow or hostile clients.
//!
//! `axum::serve` has no timer, so a client that sends its headers one byte
//! a minute keeps its connection (and a task) forever. [`serve`] runs
//! hyper's HTTP/1 server itself with:
//! - [`HEADER_READ_TIMEOUT`]: a request's headers must arrive within it, or
//!   the connection is closed;
//! - at most [`MAX_HEADERS`] headers, and a request head (request line and
//!   headers) of at most [`MAX_HEADER_BYTES`]; past either, hyper answers
//!   `431 Request Header Fields Too Large`. (The byte limit is hyper's read
//!   buffer, which grows in steps: a head within `MAX_HEADER_BYTES / 2` is
//!   always accepted, one over `MAX_HEADER_BYTES` never is.)
//! - the peer's address in each request's [`ConnectInfo`].
//!
//! Bodies are bounded where they are read ([`crate::body::read_limited`]).
//! On shutdown it stops accepting, lets the requests in flight finish (for
//! at most [`DRAIN_TIMEOUT`]), then returns.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The most headers one request may carry.
pub const MAX_HEADERS: usize = 100;
/// The most bytes a request line plus headers may take.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// hyper's read buffer: it refuses a head once the buffer reaches this and
/// the head is still incomplete, after a read that may add as much again.
const READ_BUFFER_BYTES: usize = MAX_HEADER_BYTES / 2;
/// How long shutdown waits for requests in flight.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `shutdown` completes, then finishes the
/// requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_headers(MAX_HEADERS)
        .max_buf_size(READ_BUFFER_BYTES);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(err) => {
                    // Out of file descriptors and the like: back off rather
                    // than spin; the listener itself is still good.
                    tracing::warn!(error = %err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
        let service = app
            .clone()
            .map_request(move |mut request: http::Request<Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                request
            });
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {DRAIN_TIMEOUT:?}; stopping anyway");
    }
    Ok(())
}
