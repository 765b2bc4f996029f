//! Unary gRPC over plain HTTP/2 requests, without tonic's generic server:
//! how `InvokeService`, the hot path of service invocation, is served.
//!
//! tonic serves a unary call through a decoder stream with a buffer of
//! its own, an encoder stream, boxed bodies and an interceptor. For one
//! small message each way that is measurable CPU on every call (see
//! docs/performance.md, "gRPC's fast path"), so the RPCs routed here read
//! their one message straight from the request's body, and answer with
//! one DATA frame and the `grpc-status` trailers.
//!
//! What a caller sees is what tonic gives: the same statuses, with the
//! same messages, for a compressed or truncated message, one over the
//! size limit (`RESOURCE_EXHAUSTED`, as [`super::serve`] rewrites tonic's),
//! or one that is not protobuf (`INTERNAL`). The tower layers around the
//! routes (metrics, tracing, `grpc-timeout`) apply as to every RPC.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response, header};
use bytes::{Buf, Bytes, BytesMut};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tonic::Status;

/// The length of a gRPC message's prefix: a compressed flag and a
/// big-endian length.
const PREFIX: usize = 5;

/// Reads the one message of a unary call from `body`, refusing one longer
/// than `limit` from its prefix, before its bytes are read.
pub(super) async fn read_message<M: prost::Message + Default>(
    headers: &HeaderMap,
    mut body: Body,
    limit: usize,
) -> Result<M, Status> {
    if let Some(encoding) = headers.get("grpc-encoding")
        && encoding != "identity"
    {
        let named = String::from_utf8_lossy(encoding.as_bytes());
        let mut status = Status::unimplemented(format!(
            "Content is compressed with `{named}` which isn't supported"
        ));
        status.metadata_mut().insert(
            "grpc-accept-encoding",
            tonic::metadata::MetadataValue::from_static("identity"),
        );
        return Err(status);
    }
    let mut buffered = BytesMut::new();
    let mut length = None;
    loop {
        if length.is_none() && buffered.len() >= PREFIX {
            length = Some(message_length(&buffered[..PREFIX], limit)?);
        }
        if let Some(length) = length
            && buffered.len() >= PREFIX + length
        {
            buffered.advance(PREFIX);
            return M::decode(&buffered[..length]).map_err(|e| Status::internal(e.to_string()));
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buffered.extend_from_slice(&data);
                }
            }
            Some(Err(error)) => {
                return Err(Status::cancelled(format!(
                    "cannot read the request: {error}"
                )));
            }
            None if buffered.is_empty() => {
                return Err(Status::internal("Missing request message."));
            }
            None => return Err(Status::internal("Unexpected EOF decoding stream.")),
        }
    }
}

/// The length a message's `prefix` gives, if the message may be read.
fn message_length(prefix: &[u8], limit: usize) -> Result<usize, Status> {
    match prefix[0] {
        0 => {}
        1 => {
            return Err(Status::internal(
                "protocol error: received message with compressed-flag but no grpc-encoding was specified",
            ));
        }
        flag => {
            return Err(Status::internal(format!(
                "protocol error: received message with invalid compression flag: {flag} (valid flags are 0 and 1), while sending request"
            )));
        }
    }
    let length = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if length > limit {
        return Err(Status::resource_exhausted(format!(
            "Error, decoded message length too large: found {length} bytes, the limit is: {limit} bytes"
        )));
    }
    Ok(length)
}

/// A successful answer: `message`, with `metadata` in the head and
/// `trailers` and `grpc-status: 0` in the trailers; `RESOURCE_EXHAUSTED`
/// for a message longer than a gRPC prefix can say (4 GiB;
/// `--max-body-size` may allow it).
pub(super) fn answer(
    message: &impl prost::Message,
    mut metadata: HeaderMap,
    mut trailers: HeaderMap,
) -> Result<Response<Body>, Status> {
    let length = message.encoded_len();
    let prefix_length = u32::try_from(length).map_err(|_| {
        Status::resource_exhausted(format!(
            "the answer is {length} bytes, more than one gRPC message can carry"
        ))
    })?;
    let mut framed = BytesMut::with_capacity(PREFIX + length);
    framed.extend_from_slice(&[0]);
    framed.extend_from_slice(&prefix_length.to_be_bytes());
    // A BytesMut grows as it is written, so encoding cannot run out of room.
    message
        .encode(&mut framed)
        .map_err(|e| Status::internal(format!("cannot encode the answer: {e}")))?;
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames = [Frame::data(Bytes::from(framed)), Frame::trailers(trailers)];
    let body = StreamBody::new(tokio_stream::iter(frames.map(Ok::<_, Infallible>)));
    metadata.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    let mut response = Response::new(Body::new(body));
    *response.headers_mut() = metadata;
    Ok(response)
}

/// A failed call's answer: `status` in the head, with no message (a
/// trailers-only answer).
pub(super) fn refusal(status: Status) -> Response<Body> {
    status.into_http()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(flag: u8, message: &[u8]) -> Vec<u8> {
        let mut framed = vec![flag];
        framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
        framed.extend_from_slice(message);
        framed
    }

    /// A body that arrives in `chunks`.
    fn chunked(chunks: Vec<Vec<u8>>) -> Body {
        let frames = chunks
            .into_iter()
            .map(|chunk| Ok::<_, Infallible>(Frame::data(Bytes::from(chunk))));
        Body::new(StreamBody::new(tokio_stream::iter(frames)))
    }

    async fn read(headers: HeaderMap, chunks: Vec<Vec<u8>>) -> Result<prost_types::Any, Status> {
        read_message(&headers, chunked(chunks), 64).await
    }

    #[tokio::test]
    async fn a_message_split_across_frames_is_read_whole() {
        let message = prost_types::Any {
            type_url: "t".into(),
            value: b"value".to_vec(),
        };
        let bytes = framed(0, &prost::Message::encode_to_vec(&message));
        let (head, rest) = bytes.split_at(3);
        let (middle, tail) = rest.split_at(4);
        let read = read(
            HeaderMap::new(),
            vec![head.into(), middle.into(), tail.into()],
        )
        .await;
        assert_eq!(read.unwrap(), message);
    }

    #[tokio::test]
    async fn bad_messages_get_the_statuses_tonic_gives() {
        use tonic::Code;
        let cases: Vec<(&str, Vec<Vec<u8>>, Code, &str)> = vec![
            (
                "no message",
                vec![],
                Code::Internal,
                "Missing request message.",
            ),
            (
                "a truncated message",
                vec![framed(0, b"\x0a\x03ab")[..6].to_vec()],
                Code::Internal,
                "Unexpected EOF decoding stream.",
            ),
            (
                "a compressed flag without an encoding",
                vec![framed(1, b"")],
                Code::Internal,
                "compressed-flag",
            ),
            (
                "a bad flag",
                vec![framed(7, b"")],
                Code::Internal,
                "invalid compression flag: 7",
            ),
            (
                "over the limit",
                vec![framed(0, &[0; 65])],
                Code::ResourceExhausted,
                "found 65 bytes, the limit is: 64 bytes",
            ),
            (
                "not protobuf",
                vec![framed(0, &[0xff; 8])],
                Code::Internal,
                "",
            ),
        ];
        for (case, chunks, code, message) in cases {
            let status = read(HeaderMap::new(), chunks).await.expect_err(case);
            assert_eq!(status.code(), code, "{case}: {status:?}");
            assert!(status.message().contains(message), "{case}: {status:?}");
        }
        let mut gzip = HeaderMap::new();
        gzip.insert("grpc-encoding", HeaderValue::from_static("gzip"));
        let status = read(gzip, vec![framed(1, b"")]).await.unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
        assert!(status.message().contains("`gzip`"), "{status:?}");
    }

    #[tokio::test]
    async fn an_answer_is_one_message_then_an_ok_status() {
        let message = prost_types::Any {
            type_url: String::new(),
            value: vec![7; 300],
        };
        let mut metadata = HeaderMap::new();
        metadata.insert("server-timing", HeaderValue::from_static("app;dur=1"));
        let mut app_trailers = HeaderMap::new();
        app_trailers.insert("x-served-by", HeaderValue::from_static("shard 7"));
        let response = answer(&message, metadata, app_trailers).unwrap();
        assert_eq!(response.headers()["content-type"], "application/grpc");
        assert_eq!(response.headers()["server-timing"], "app;dur=1");
        assert!(response.headers().get("x-served-by").is_none());
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap();
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(trailers["x-served-by"], "shard 7");
        let mut body = collected.to_bytes();
        assert_eq!(body[0], 0);
        body.advance(1);
        let length = body.get_u32() as usize;
        assert_eq!(length, body.len());
        assert_eq!(
            <prost_types::Any as prost::Message>::decode(body).unwrap(),
            message
        );
    }
}
