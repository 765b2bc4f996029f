//! The seed's grayscale microservice, as a wasi:http component that reaches
//! Dapr only through its sidecar's HTTP API (standard wasi:http requests to
//! `127.0.0.1:$DAPR_HTTP_PORT`):
//!
//! - `POST /grayscale`: the uploaded image in grayscale (PNG, or GIF for a
//!   GIF), made by the grayscale function's own code.
//! - Each call saves the caller's address and the time in the Dapr state
//!   store (`STATE_STORE`, default `statestore`), under
//!   `grayscale-service||rate||ADDRESS`, as the seed does for rate limiting.
//! - A caller past `RATE_LIMIT_PER_MINUTE` calls (default 60) in its current
//!   minute gets 429 with `Retry-After`. The entry is written with its etag
//!   (first-write-wins), so two racing calls cannot both take the last one.
//! - Each image processed is published to `PUBSUB_NAME` (default `pubsub`)
//!   topic `EVENTS_TOPIC` (default `image-events`), as web-port publishes
//!   its uploads, for the events service. A failed publish is logged, not
//!   fatal: the image was made.
//! - `GET /healthz`: 200.
//!
//! The caller's address is the first `x-forwarded-for` entry (which
//! `dapr-wasm serve` sets from the connection when no proxy did).
//! Configuration is by environment: `dapr-wasm serve --env NAME=VALUE`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use wstd::http::{Body, Client, Error, HeaderMap, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    match (request.method().as_str(), request.uri().path()) {
        ("POST", "/grayscale") => grayscale_image(request).await,
        ("GET", "/healthz") => text(StatusCode::OK, "ok\n"),
        (_, "/grayscale") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "ERR_METHOD_NOT_ALLOWED",
            "use POST",
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "ERR_NOT_FOUND",
            "no such route: POST /grayscale",
        ),
    }
}

/// One configuration value from the environment, or its default.
fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn text(status: StatusCode, body: &str) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(body.to_string().into())?)
}

/// Dapr's error body.
fn error(status: StatusCode, code: &str, message: &str) -> Result<Response<Body>, Error> {
    let body = serde_json::json!({ "errorCode": code, "message": message });
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_string().into())?)
}

fn client_address(headers: &HeaderMap) -> String {
    headers
        .get("x-forwarded-for")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(',').next())
        .map(|address| address.trim().to_string())
        .filter(|address| !address.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

async fn grayscale_image(request: Request<Body>) -> Result<Response<Body>, Error> {
    let client = client_address(request.headers());
    let sidecar = match Sidecar::from_env() {
        Ok(sidecar) => sidecar,
        Err(message) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ERR_NO_SIDECAR",
                &message,
            );
        }
    };
    let per_minute: u32 = setting("RATE_LIMIT_PER_MINUTE", "60").parse().unwrap_or(60);
    match sidecar.take_one_call(&client, per_minute).await {
        Ok(Admission::Allowed) => {}
        Ok(Admission::Limited { retry_after }) => {
            let body = serde_json::json!({
                "errorCode": "ERR_RATE_LIMITED",
                "message": format!("{client} made {per_minute} calls this minute; retry in {retry_after} s"),
            });
            return Ok(Response::builder()
                .status(StatusCode::TOO_MANY_REQUESTS)
                .header("content-type", "application/json")
                .header("retry-after", retry_after.to_string())
                .body(body.to_string().into())?);
        }
        Err(message) => return error(StatusCode::BAD_GATEWAY, "ERR_STATE_STORE", &message),
    }

    let started = SystemTime::now();
    let input = request.into_body().contents().await?.to_vec();
    let (status, answer) = match grayscale::grayscale(&input, &grayscale::Limits::default()) {
        Ok((image, format)) => {
            let kind = match format {
                grayscale::OutputFormat::Png => "image/png",
                grayscale::OutputFormat::Gif => "image/gif",
            };
            (StatusCode::OK, Ok((image, kind)))
        }
        Err(err) => {
            let (status, code) = match err.exit_code() {
                2 => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "ERR_UNSUPPORTED_IMAGE"),
                3 => (StatusCode::PAYLOAD_TOO_LARGE, "ERR_IMAGE_TOO_LARGE"),
                _ => (StatusCode::BAD_REQUEST, "ERR_INVALID_IMAGE"),
            };
            (status, Err((code, err.to_string())))
        }
    };
    let output_bytes = answer.as_ref().map_or(0, |(image, _)| image.len());
    let event = ImageEvent {
        time: rfc3339(SystemTime::now()),
        api: "grayscale",
        input_bytes: input.len(),
        output_bytes,
        milliseconds: started.elapsed().unwrap_or_default().as_secs_f64() * 1000.0,
        status: status.as_u16(),
        client,
    };
    if let Err(message) = sidecar.publish(&event).await {
        eprintln!("grayscale-service: cannot publish the image event: {message}");
    }
    match answer {
        Ok((image, kind)) => Ok(Response::builder()
            .status(status)
            .header("content-type", kind)
            .body(image.into())?),
        Err((code, message)) => error(status, code, &message),
    }
}

/// The event each image makes, in the events service's shape.
#[derive(Serialize)]
struct ImageEvent {
    time: String,
    api: &'static str,
    #[serde(rename = "inputBytes")]
    input_bytes: usize,
    #[serde(rename = "outputBytes")]
    output_bytes: usize,
    milliseconds: f64,
    status: u16,
    client: String,
}

/// A caller's entry in the state store: its address, its current minute's
/// start and count, and its last call.
#[derive(Serialize, Deserialize)]
struct RateEntry {
    client: String,
    #[serde(rename = "windowStart")]
    window_start: u64,
    count: u32,
    #[serde(rename = "lastCall")]
    last_call: String,
}

enum Admission {
    Allowed,
    Limited { retry_after: u64 },
}

/// This app's Dapr sidecar, reached over wasi:http.
struct Sidecar {
    base: String,
    store: String,
}

impl Sidecar {
    fn from_env() -> Result<Sidecar, String> {
        let port = std::env::var("DAPR_HTTP_PORT").map_err(|_| {
            "DAPR_HTTP_PORT is not set: run this component with a Dapr sidecar".to_string()
        })?;
        Ok(Sidecar {
            base: format!("http://127.0.0.1:{port}"),
            store: setting("STATE_STORE", "statestore"),
        })
    }

    async fn send(
        &self,
        request: Request<Body>,
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), String> {
        let response = Client::new()
            .send(request)
            .await
            .map_err(|e| format!("the sidecar cannot be reached: {e:?}"))?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = response.into_body();
        let bytes = body
            .contents()
            .await
            .map_err(|e| format!("{e:?}"))?
            .to_vec();
        Ok((status, headers, bytes))
    }

    /// Counts one call of `client` against `per_minute`, retrying when
    /// another call changed the entry first.
    async fn take_one_call(&self, client: &str, per_minute: u32) -> Result<Admission, String> {
        let key = format!("grayscale-service||rate||{client}");
        for _attempt in 0..5 {
            let url = format!("{}/v1.0/state/{}/{key}", self.base, self.store);
            let get = Request::get(&url)
                .body(Body::empty())
                .map_err(|e| e.to_string())?;
            let (status, headers, body) = self.send(get).await?;
            let (entry, etag) = match status.as_u16() {
                200 => (
                    serde_json::from_slice::<RateEntry>(&body).ok(),
                    headers
                        .get("etag")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                ),
                204 => (None, None),
                other => {
                    return Err(format!(
                        "reading {key} answered {other}: {}",
                        String::from_utf8_lossy(&body)
                    ));
                }
            };
            let now = SystemTime::now();
            let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            let entry = match entry {
                Some(entry) if secs < entry.window_start + 60 => {
                    if entry.count >= per_minute {
                        return Ok(Admission::Limited {
                            retry_after: (entry.window_start + 60 - secs).max(1),
                        });
                    }
                    RateEntry {
                        count: entry.count + 1,
                        last_call: rfc3339(now),
                        ..entry
                    }
                }
                _ => RateEntry {
                    client: client.to_string(),
                    window_start: secs,
                    count: 1,
                    last_call: rfc3339(now),
                },
            };
            let mut item = serde_json::json!({ "key": key, "value": entry });
            if let Some(etag) = etag {
                item["etag"] = etag.into();
                item["options"] = serde_json::json!({ "concurrency": "first-write" });
            }
            let save = Request::post(format!("{}/v1.0/state/{}", self.base, self.store))
                .header("content-type", "application/json")
                .body(Body::from(serde_json::json!([item]).to_string()))
                .map_err(|e| e.to_string())?;
            let (status, _, body) = self.send(save).await?;
            match status.as_u16() {
                200..=299 => return Ok(Admission::Allowed),
                // Another call saved first: read again.
                409 => continue,
                other => {
                    return Err(format!(
                        "saving {key} answered {other}: {}",
                        String::from_utf8_lossy(&body)
                    ));
                }
            }
        }
        Err(format!(
            "{key} kept changing under five attempts to count this call"
        ))
    }

    async fn publish(&self, event: &ImageEvent) -> Result<(), String> {
        let url = format!(
            "{}/v1.0/publish/{}/{}",
            self.base,
            setting("PUBSUB_NAME", "pubsub"),
            setting("EVENTS_TOPIC", "image-events")
        );
        let body = serde_json::to_string(event).map_err(|e| e.to_string())?;
        let request = Request::post(url)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .map_err(|e| e.to_string())?;
        let (status, _, body) = self.send(request).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!(
                "{}: {}",
                status.as_u16(),
                String::from_utf8_lossy(&body)
            ))
        }
    }
}

/// `time` as RFC 3339 UTC with milliseconds (no date crate in the guest).
fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil-from-days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap_day = UNIX_EPOCH + Duration::from_millis(951_782_400_123);
        assert_eq!(rfc3339(leap_day), "2000-02-29T00:00:00.123Z");
        let later = UNIX_EPOCH + Duration::from_secs(1_798_761_599);
        assert_eq!(rfc3339(later), "2026-12-31T23:59:59.000Z");
    }
}
