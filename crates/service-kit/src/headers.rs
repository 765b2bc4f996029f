//! Headers the services share: reading `Content-Length`, and writing
//! `Server-Timing`, which each hop of an upload adds to on the way back
//! so the browser can show where the time went.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};

/// The declared `Content-Length`, if present and valid. Services compare it
/// with their body limit to refuse a large upload before reading it.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// One `Server-Timing` entry: `name;dur=MS` with `;desc="..."` when given.
pub fn timing_entry(name: &str, duration: Duration, desc: Option<&str>) -> String {
    let millis = duration.as_secs_f64() * 1e3;
    match desc {
        Some(desc) => format!("{name};dur={millis:.2};desc=\"{desc}\""),
        None => format!("{name};dur={millis:.2}"),
    }
}

/// The `Server-Timing` lines of an answer, as they came.
pub fn server_timing_lines(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("server-timing")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect()
}

/// Appends `entries` (comma-separated [`timing_entry`]s) as one more
/// `Server-Timing` line, after those of the hops inside this one; a client
/// reads all the lines as one list.
pub fn add_server_timing(headers: &mut HeaderMap, entries: &[String]) {
    if let Ok(value) = HeaderValue::from_str(&entries.join(", ")) {
        headers.append("server-timing", value);
    }
}
