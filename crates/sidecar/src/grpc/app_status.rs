//! A gRPC app's failure, answered as daprd answers it, and its answer's
//! trailers, both carried intact across the HTTP hop between sidecars.
//!
//! When a gRPC app's `OnInvoke` fails, daprd answers an HTTP caller with
//! the HTTP status of the gRPC code (`FAILED_PRECONDITION` is 400,
//! `NOT_FOUND` 404, ...) and the status as JSON (`{"code": 9, "message":
//! "...", "details": [...]}`, [`super::status_json`]), and a gRPC caller
//! with the app's status itself: code, message and details.
//! [`http_answer`] builds the first and keeps the status with it as a
//! [`GrpcAppStatus`] extension, which `InvokeService` answers with.
//!
//! Between sidecars the status rides in one header, [`HEADER`] (an encoded
//! `google.rpc.Status`, base64): the target sidecar sets it for its peer
//! ([`to_header`]), and the caller's sidecar turns it back into the
//! extension ([`from_header`]) and never forwards it.
//!
//! A gRPC app's successful answer may end with trailers of its own, which
//! daprd sends a gRPC caller as trailers (an HTTP caller does not get
//! them). They are kept as a [`GrpcAppTrailers`] extension, and cross
//! between sidecars the same way, in [`TRAILERS_HEADER`]
//! ([`trailers_to_header`], [`trailers_from_header`]).

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prost::Message;
use tonic::{Code, Status};

use crate::error::DaprError;

/// The header that carries a gRPC app's status from its sidecar to the
/// caller's.
pub(crate) const HEADER: HeaderName = HeaderName::from_static("dapr-wasm-grpc-app-status");

/// The status a gRPC app failed with, kept with daprd's HTTP answer for it.
#[derive(Clone, Debug)]
pub(crate) struct GrpcAppStatus(pub(crate) Status);

/// The header that carries a gRPC app's answer trailers from its sidecar
/// to the caller's.
pub(crate) const TRAILERS_HEADER: HeaderName =
    HeaderName::from_static("dapr-wasm-grpc-app-trailers");

/// The trailers a gRPC app's successful answer ended with (without gRPC's
/// own status keys), kept with the HTTP answer for `InvokeService` to send
/// as trailers.
#[derive(Clone, Debug)]
pub(crate) struct GrpcAppTrailers(pub(crate) HeaderMap);

/// An answer's trailers as a gRPC client reads them, without the keys
/// that carry the call's status (`grpc-status` and the like), which each
/// hop sets for itself.
pub(crate) fn app_trailers(mut trailers: HeaderMap) -> HeaderMap {
    for own in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        trailers.remove(own);
    }
    trailers
}

/// `trailers` as the value of [`TRAILERS_HEADER`]: their pairs as JSON,
/// base64; `None` if there are none.
pub(crate) fn trailers_to_header(trailers: &HeaderMap) -> Option<HeaderValue> {
    let pairs: Vec<(&str, &str)> = trailers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    if pairs.is_empty() {
        return None;
    }
    let json = serde_json::to_vec(&pairs).ok()?;
    HeaderValue::from_str(&STANDARD.encode(json)).ok()
}

/// The trailers in a [`TRAILERS_HEADER`] value (a pair that cannot be a
/// header is left out); `None` if it is not one.
pub(crate) fn trailers_from_header(value: &HeaderValue) -> Option<HeaderMap> {
    let json = STANDARD.decode(value.as_bytes()).ok()?;
    let pairs: Vec<(String, String)> = serde_json::from_slice(&json).ok()?;
    let trailers: HeaderMap = pairs
        .into_iter()
        .filter_map(|(name, value)| {
            Some((
                HeaderName::from_bytes(name.as_bytes()).ok()?,
                HeaderValue::from_str(&value).ok()?,
            ))
        })
        .collect();
    Some(trailers)
}

/// daprd's HTTP status for a gRPC code.
pub(crate) fn http_status_of(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// daprd's HTTP answer for a gRPC app that failed with `status`: the HTTP
/// status of its code and the status as protojson, or, where a detail
/// cannot be written, daprd's 500 `ERR_MALFORMED_RESPONSE`; the app's
/// metadata as headers either way.
pub(crate) fn http_answer(status: Status) -> Response {
    let details = details_of(&status);
    let mut response = match super::status_json::to_json(
        status.code() as i32,
        status.message(),
        &details,
    ) {
        Ok(body) => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = http_status_of(status.code());
            response
        }
        Err(unwritable) => {
            tracing::warn!(error = %unwritable, "a gRPC app's failure cannot be written as JSON");
            DaprError::MalformedResponse(unwritable.to_string()).into_response()
        }
    };
    let mut headers =
        super::headers::metadata_to_headers(&status.metadata().clone().into_headers());
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    *response.headers_mut() = headers;
    response
        .extensions_mut()
        .insert(service_kit::error_body::PassedThrough);
    response.extensions_mut().insert(GrpcAppStatus(status));
    response
}

/// The details of `status` (tonic keeps them as an encoded
/// `google.rpc.Status`); none where they are not one.
fn details_of(status: &Status) -> Vec<prost_types::Any> {
    tonic_types::Status::decode(status.details())
        .map(|carried| carried.details)
        .unwrap_or_default()
}

/// `status` as the value of [`HEADER`]: code, message and details.
pub(crate) fn to_header(status: &Status) -> Option<HeaderValue> {
    let details = details_of(status);
    let encoded = tonic_types::Status {
        code: status.code() as i32,
        message: status.message().to_string(),
        details,
    }
    .encode_to_vec();
    HeaderValue::from_str(&STANDARD.encode(encoded)).ok()
}

/// The failure in a [`HEADER`] value; `None` if it is not one.
pub(crate) fn from_header(value: &HeaderValue) -> Option<Status> {
    let bytes = STANDARD.decode(value.as_bytes()).ok()?;
    let carried = tonic_types::Status::decode(bytes.as_slice()).ok()?;
    if carried.code == Code::Ok as i32 {
        return None;
    }
    // A client reads details as an encoded google.rpc.Status.
    let details = if carried.details.is_empty() {
        Vec::new()
    } else {
        bytes
    };
    Some(Status::with_details(
        Code::from(carried.code),
        carried.message,
        details.into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt};

    #[test]
    fn a_status_crosses_the_header_with_its_details() {
        let status = Status::with_error_details(
            Code::FailedPrecondition,
            "the app said no: 100% sure",
            ErrorDetails::with_error_info("APP_SAID_NO", "example.com", []),
        );
        let carried = from_header(&to_header(&status).unwrap()).unwrap();
        assert_eq!(carried.code(), Code::FailedPrecondition);
        assert_eq!(carried.message(), "the app said no: 100% sure");
        let info = carried.get_details_error_info().unwrap();
        assert_eq!(info.reason, "APP_SAID_NO");

        let plain = from_header(&to_header(&Status::not_found("gone")).unwrap()).unwrap();
        assert_eq!(plain.code(), Code::NotFound);
        assert!(plain.details().is_empty());
    }

    #[test]
    fn trailers_cross_the_header_and_the_status_keys_stay_behind() {
        let mut raw = HeaderMap::new();
        raw.insert("grpc-status", HeaderValue::from_static("0"));
        raw.insert("grpc-message", HeaderValue::from_static("fine"));
        raw.insert("x-served-by", HeaderValue::from_static("shard 7"));
        raw.append("x-served-by", HeaderValue::from_static("shard 8"));
        raw.insert("x-cost-bin", HeaderValue::from_static("AAEC"));
        let trailers = app_trailers(raw);
        assert_eq!(trailers.len(), 3, "{trailers:?}");
        let carried = trailers_from_header(&trailers_to_header(&trailers).unwrap()).unwrap();
        assert_eq!(carried, trailers);
        let values: Vec<_> = carried.get_all("x-served-by").iter().collect();
        assert_eq!(values, ["shard 7", "shard 8"]);

        assert!(trailers_to_header(&HeaderMap::new()).is_none());
        for value in ["not base64!", "e30=" /* {} */] {
            assert!(
                trailers_from_header(&HeaderValue::from_static(value)).is_none(),
                "{value}"
            );
        }
    }

    #[test]
    fn a_header_that_is_not_a_failure_is_none() {
        // Not base64; bytes that are not a Status (field 0); an empty
        // Status, whose code is OK.
        for value in ["not base64!", "AAAA", ""] {
            assert!(
                from_header(&HeaderValue::from_static(value)).is_none(),
                "{value}"
            );
        }
    }

    #[test]
    fn codes_map_to_daprds_http_statuses() {
        assert_eq!(http_status_of(Code::FailedPrecondition), 400);
        assert_eq!(http_status_of(Code::NotFound), 404);
        assert_eq!(http_status_of(Code::Aborted), 409);
        assert_eq!(http_status_of(Code::Unavailable), 503);
        assert_eq!(http_status_of(Code::DataLoss), 500);
    }
}
