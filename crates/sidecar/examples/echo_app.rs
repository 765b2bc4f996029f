//! A minimal app for the sidecar benchmark (`scripts/bench-sidecar.sh`):
//! every request is answered 200 with its own body.
//!
//! `cargo run --release -p sidecar --example echo_app -- PORT`

use axum::Router;
use axum::body::Bytes;
use axum::routing::any;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(18080);
    let app = Router::new().fallback(any(|body: Bytes| async move { body }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await
}
