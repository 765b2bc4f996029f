//! A wasi:http component for the host's tests: each path exercises one
//! thing a component may do, or one way it may misbehave.
//!
//! - `/echo`: the request body streamed back; `x-method` and `x-query` say
//!   what arrived, and every `x-echo-*` request header is copied back.
//! - `/count`: reads the body chunk by chunk and answers how many bytes came.
//! - `/stream?bytes=N`: a response of N zero bytes, made 64 KiB at a time.
//! - `/fetch?url=URL`: a GET to URL through wasi:http's outgoing handler;
//!   the answer is the response's status and body, or 502 with the error
//!   code.
//! - `/env`: the environment the component sees, one `NAME=value` a line,
//!   then whether it could read a file or open a socket.
//! - `/spin`: loops forever; `/sleep?ms=N`: waits N ms without running.
//! - `/hog`: allocates until memory runs out; `/trap`: panics (a trap).

use std::time::Duration;

use wstd::http::BodyExt;
use wstd::http::body::Bytes;
use wstd::http::{Body, Error, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    match request.uri().path() {
        "/echo" => echo(request),
        "/count" => count(request).await,
        "/stream" => stream(&request),
        "/fetch" => fetch(&request).await,
        "/env" => env(),
        "/spin" => spin(),
        "/sleep" => sleep(&request).await,
        "/hog" => hog(),
        "/trap" => panic!("the probe was asked to trap"),
        _ => text(StatusCode::NOT_FOUND, "no such probe\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(body.into())?)
}

/// The value of `name` in the query string, if present.
fn query<'a>(request: &'a Request<Body>, name: &str) -> Option<&'a str> {
    request
        .uri()
        .query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value))
}

fn echo(request: Request<Body>) -> Result<Response<Body>, Error> {
    let (parts, body) = request.into_parts();
    let mut response = Response::builder()
        .header("x-method", parts.method.as_str())
        .header("x-query", parts.uri.query().unwrap_or(""));
    for (name, value) in &parts.headers {
        if name.as_str().starts_with("x-echo-") {
            response = response.header(name, value);
        }
    }
    if let Some(kind) = parts.headers.get("content-type") {
        response = response.header("content-type", kind);
    }
    Ok(response.body(body)?)
}

async fn count(request: Request<Body>) -> Result<Response<Body>, Error> {
    let mut body = request.into_body().into_boxed_body();
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => bytes += frame.data_ref().map_or(0, |data| data.len() as u64),
            Err(err) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("reading the body failed after {bytes} bytes: {err}\n"),
                );
            }
        }
    }
    text(StatusCode::OK, format!("{bytes}\n"))
}

fn stream(request: &Request<Body>) -> Result<Response<Body>, Error> {
    const CHUNK: u64 = 64 * 1024;
    let Some(total) = query(request, "bytes").and_then(|n| n.parse::<u64>().ok()) else {
        return text(StatusCode::BAD_REQUEST, "want ?bytes=N\n".into());
    };
    let chunk = Bytes::from(vec![0u8; CHUNK as usize]);
    let chunks = futures_lite::stream::unfold(total, move |left| {
        let chunk = chunk.clone();
        async move {
            (left > 0).then(|| {
                let n = left.min(CHUNK);
                (chunk.slice(..n as usize), left - n)
            })
        }
    });
    Ok(Response::builder()
        .header("content-type", "application/octet-stream")
        .body(Body::from_stream(chunks))?)
}

/// A GET through wasi:http's outgoing handler itself (not a client
/// library), so that a failure is reported as the exact error code.
async fn fetch(request: &Request<Body>) -> Result<Response<Body>, Error> {
    use wasip2::http::{outgoing_handler, types};
    let Some(url) = query(request, "url").and_then(|url| url.parse::<wstd::http::Uri>().ok())
    else {
        return text(StatusCode::BAD_REQUEST, "want ?url=URL\n".into());
    };
    let outgoing = types::OutgoingRequest::new(types::Fields::new());
    let _ = outgoing.set_scheme(Some(&types::Scheme::Http));
    let _ = outgoing.set_authority(url.authority().map(|a| a.as_str()));
    let _ = outgoing.set_path_with_query(url.path_and_query().map(|p| p.as_str()));
    let body = outgoing.body().expect("a new request's body");
    let answer = outgoing_handler::handle(outgoing, None);
    let _ = types::OutgoingBody::finish(body, None);
    let pending = match answer {
        Ok(pending) => pending,
        Err(code) => return text(StatusCode::BAD_GATEWAY, format!("{code:?}\n")),
    };
    wstd::runtime::AsyncPollable::new(pending.subscribe())
        .wait_for()
        .await;
    match pending.get() {
        Some(Ok(Ok(response))) => {
            let status = response.status();
            // (The stream is a child of the body, the body of the
            // response: each must be dropped before its parent.)
            let body = response.consume().expect("the body");
            let stream = body.stream().expect("its stream");
            let mut contents = Vec::new();
            while let Ok(chunk) = stream.blocking_read(64 * 1024) {
                contents.extend(chunk);
            }
            drop(stream);
            drop(body);
            text(
                StatusCode::OK,
                format!("{status}\n{}", String::from_utf8_lossy(&contents)),
            )
        }
        Some(Ok(Err(code))) => text(StatusCode::BAD_GATEWAY, format!("{code:?}\n")),
        other => text(StatusCode::BAD_GATEWAY, format!("{other:?}\n")),
    }
}

fn env() -> Result<Response<Body>, Error> {
    let mut out = String::new();
    for (name, value) in std::env::vars() {
        out.push_str(&format!("{name}={value}\n"));
    }
    let file = std::fs::read("/etc/passwd")
        .map(|_| "readable")
        .unwrap_or("unreadable");
    out.push_str(&format!("file:{file}\n"));
    let socket = std::net::TcpStream::connect("127.0.0.1:1").map_or_else(
        |err| format!("socket:{:?}", err.kind()),
        |_| "socket:connected".into(),
    );
    out.push_str(&format!("{socket}\n"));
    text(StatusCode::OK, out)
}

fn spin() -> Result<Response<Body>, Error> {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

async fn sleep(request: &Request<Body>) -> Result<Response<Body>, Error> {
    let ms = query(request, "ms")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    wstd::task::sleep(Duration::from_millis(ms).into()).await;
    text(StatusCode::OK, format!("slept {ms} ms\n"))
}

fn hog() -> Result<Response<Body>, Error> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}
