//! The smallest wasi:http component: every request gets `200 Hello, world!`.
//!
//! `scripts/bench-serve.sh` serves this same file with `dapr-wasm serve` and
//! with `wasmtime serve`, so what it measures is the host, not the guest.

use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(_request: Request<Body>) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .header("content-type", "text/plain")
        .body("Hello, world!\n".into())?)
}
