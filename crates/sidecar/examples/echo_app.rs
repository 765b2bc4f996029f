//! A minimal app for the sidecar benchmark (`scripts/bench-sidecar.sh`):
//! every request is answered 200 with its own body, over HTTP/1.1 or
//! HTTP/2 (prior knowledge). Like the sidecars' listeners it sets
//! `TCP_NODELAY`: without it an HTTP/2 answer (HEADERS, then DATA in a write
//! of its own) waits on Nagle's algorithm, about 1.3 ms.
//!
//! `cargo run --release -p sidecar --example echo_app -- PORT`

use axum::Router;
use axum::body::Bytes;
use axum::routing::any;
use axum::serve::ListenerExt;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(18080);
    let app = Router::new().fallback(any(|body: Bytes| async move { body }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await?
        .tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                eprintln!("echo_app: cannot set TCP_NODELAY: {err}");
            }
        });
    axum::serve(listener, app).await
}
