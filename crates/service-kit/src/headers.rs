//! Reading request headers the services share.

use http::{HeaderMap, header};

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
