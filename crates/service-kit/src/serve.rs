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
//! - the peer's address in each request's [`ConnectInfo`];
//! - at most [`ConnectionLimit`] connections at once (`--max-connections`,
//!   [`DEFAULT_MAX_CONNECTIONS`]): at the limit it stops accepting, and new
//!   connections wait in the kernel's backlog until one closes, as
//!   mini-redis does.
//!
//! Bodies are bounded where they are read ([`crate::body::read_limited`]).
//! Once no request has run for a second, freed memory goes back to the
//! kernel ([`IdleTrim`]).
//! On shutdown it stops accepting, lets the requests in flight finish (for
//! at most [`DRAIN_TIMEOUT`]), then returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::idle_trim::IdleTrim;

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
/// How many connections a listener serves at once by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The connection flag every service takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// The most client connections served at once; more wait until one
    /// closes.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
}

impl ConnectionArgs {
    /// Checks the flag.
    pub fn validate(&self) -> Result<ConnectionLimit, String> {
        ConnectionLimit::new(self.max_connections)
            .ok_or_else(|| "--max-connections must be at least 1".to_string())
    }
}

/// How many connections one listener serves at once (at least one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimit(usize);

impl ConnectionLimit {
    /// `max` connections; `None` for zero.
    pub fn new(max: usize) -> Option<ConnectionLimit> {
        (max > 0).then_some(ConnectionLimit(max.min(Semaphore::MAX_PERMITS)))
    }

    /// The number.
    pub fn get(self) -> usize {
        self.0
    }
}

impl Default for ConnectionLimit {
    fn default() -> Self {
        ConnectionLimit(DEFAULT_MAX_CONNECTIONS)
    }
}

/// Serves `app` on `listener`, at most `connections` at once, until
/// `shutdown` completes, then finishes the requests in flight. Nothing
/// here fails: accept errors (such as running out of file descriptors) are
/// logged and retried.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    connections: ConnectionLimit,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_headers(MAX_HEADERS)
        .max_buf_size(READ_BUFFER_BYTES);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(connections.get()));
    let idle_trim = IdleTrim::default();
    let app = idle_trim.layer(app);
    let trimmer = tokio::spawn(idle_trim.run());
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_closed) => break,
            },
            () = &mut shutdown => break,
        };
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
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {DRAIN_TIMEOUT:?}; stopping anyway");
    }
    trimmer.abort();
}
