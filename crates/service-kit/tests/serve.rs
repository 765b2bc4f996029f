//! The server loop's connection limit, over real sockets.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use service_kit::serve::{ConnectionLimit, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Sends a keep-alive `GET /` on `stream`.
async fn send_get(stream: &mut TcpStream) {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
}

/// Reads until a whole answer (`ok` is the body) has arrived.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"\r\n\r\nok") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

async fn served_connection(address: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    send_get(&mut stream).await;
    assert!(read_answer(&mut stream).await.starts_with("HTTP/1.1 200"));
    stream
}

#[tokio::test]
async fn connections_past_the_limit_wait_until_one_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new().route("/", get(|| async { "ok" }));
    let limit = ConnectionLimit::new(2).unwrap();
    tokio::spawn(serve(listener, app, limit, std::future::pending()));

    // Two kept-alive connections hold both places.
    let first = served_connection(address).await;
    let mut second = served_connection(address).await;

    // A third connects (the kernel's backlog takes it) but is not served.
    let mut third = TcpStream::connect(address).await.unwrap();
    send_get(&mut third).await;
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut byte)).await;
    assert!(early.is_err(), "the third connection was served: {early:?}");

    // The held connections still work; once one closes, the third is served.
    send_get(&mut second).await;
    assert!(read_answer(&mut second).await.starts_with("HTTP/1.1 200"));
    drop(first);
    let answer = tokio::time::timeout(Duration::from_secs(10), read_answer(&mut third))
        .await
        .expect("served once a place is free");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn a_zero_limit_is_refused() {
    assert_eq!(ConnectionLimit::new(0), None);
    assert_eq!(ConnectionLimit::new(3).map(ConnectionLimit::get), Some(3));
}
