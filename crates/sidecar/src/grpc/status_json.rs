//! A gRPC status as daprd writes it for an HTTP caller: the JSON of a
//! `google.rpc.Status` as Go's `protojson.Marshal` gives it.
//!
//! When a gRPC app's `OnInvoke` fails, daprd answers an HTTP caller with
//! the status as protojson: lowerCamelCase names, a field at its default
//! left out (`message` when empty, `details` when there are none), and
//! each detail, a `google.protobuf.Any`, written out as the message it
//! holds with its `@type` first:
//!
//! ```json
//! {"code":9,"message":"out of stock","details":[{"@type":
//!  "type.googleapis.com/google.rpc.ErrorInfo","reason":"STOCK","domain":
//!  "shop.example","metadata":{"sku":"A-1"}}]}
//! ```
//!
//! Go writes a detail out by finding its type among those linked into
//! daprd; this sidecar knows the ten of `google/rpc/error_details.proto`,
//! gRPC's richer error model, which are the ones apps send. A detail of any
//! other type, or one whose bytes are not its type, cannot be written, as
//! in daprd: [`to_json`] then gives the error daprd answers with
//! (`ERR_MALFORMED_RESPONSE`).

use std::collections::HashMap;

use prost::Message;
use serde_json::{Map, Value};
use tonic_types::pb;

/// Why a status cannot be written as JSON (the text of Go's error).
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum StatusJsonError {
    /// A detail of a type this sidecar does not know.
    #[error("proto: google.protobuf.Any: unable to resolve {0:?}: not found")]
    UnknownType(String),
    /// A detail whose bytes are not a message of its type.
    #[error("proto: cannot parse invalid wire-format data")]
    Invalid,
}

/// The protojson of a `google.rpc.Status` with `code`, `message` and
/// `details`.
pub(crate) fn to_json(
    code: i32,
    message: &str,
    details: &[prost_types::Any],
) -> Result<String, StatusJsonError> {
    let mut status = Map::new();
    if code != 0 {
        status.insert("code".into(), code.into());
    }
    if !message.is_empty() {
        status.insert("message".into(), message.into());
    }
    if !details.is_empty() {
        let details = details.iter().map(detail).collect::<Result<Vec<_>, _>>()?;
        status.insert("details".into(), Value::Array(details));
    }
    Ok(Value::Object(status).to_string())
}

/// One detail: its `@type` (the type URL as sent), then its fields. As in
/// Go, the type is the name after the URL's last `/`.
fn detail(any: &prost_types::Any) -> Result<Value, StatusJsonError> {
    let unknown = || StatusJsonError::UnknownType(any.type_url.clone());
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    let bytes = any.value.as_slice();
    let fields = match name.strip_prefix("google.rpc.") {
        Some("ErrorInfo") => error_info(decode(bytes)?),
        Some("RetryInfo") => retry_info(decode(bytes)?)?,
        Some("DebugInfo") => debug_info(decode(bytes)?),
        Some("QuotaFailure") => quota_failure(decode(bytes)?),
        Some("PreconditionFailure") => precondition_failure(decode(bytes)?),
        Some("BadRequest") => bad_request(decode(bytes)?),
        Some("RequestInfo") => request_info(decode(bytes)?),
        Some("ResourceInfo") => resource_info(decode(bytes)?),
        Some("Help") => help(decode(bytes)?),
        Some("LocalizedMessage") => localized_message(decode(bytes)?),
        _ => return Err(unknown()),
    };
    let mut object = Map::new();
    object.insert("@type".into(), any.type_url.clone().into());
    object.extend(fields);
    Ok(Value::Object(object))
}

fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M, StatusJsonError> {
    M::decode(bytes).map_err(|_| StatusJsonError::Invalid)
}

/// The fields of a message, each left out at its default (an empty
/// string, list or map; a zero; a `None`).
struct Fields(Map<String, Value>);

impl Fields {
    fn new() -> Self {
        Fields(Map::new())
    }

    fn text(mut self, name: &str, value: String) -> Self {
        if !value.is_empty() {
            self.0.insert(name.into(), value.into());
        }
        self
    }

    fn list(mut self, name: &str, values: Vec<Value>) -> Self {
        if !values.is_empty() {
            self.0.insert(name.into(), Value::Array(values));
        }
        self
    }

    fn map(mut self, name: &str, entries: HashMap<String, String>) -> Self {
        if !entries.is_empty() {
            let entries: Map<String, Value> =
                entries.into_iter().map(|(k, v)| (k, v.into())).collect();
            self.0.insert(name.into(), Value::Object(entries));
        }
        self
    }

    fn value(mut self, name: &str, value: Option<Value>) -> Self {
        if let Some(value) = value {
            self.0.insert(name.into(), value);
        }
        self
    }

    fn object(self) -> Value {
        Value::Object(self.0)
    }
}

impl IntoIterator for Fields {
    type Item = (String, Value);
    type IntoIter = serde_json::map::IntoIter;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

fn error_info(m: pb::ErrorInfo) -> Fields {
    Fields::new()
        .text("reason", m.reason)
        .text("domain", m.domain)
        .map("metadata", m.metadata)
}

fn retry_info(m: pb::RetryInfo) -> Result<Fields, StatusJsonError> {
    let delay = m.retry_delay.map(duration).transpose()?;
    Ok(Fields::new().value("retryDelay", delay.map(Value::from)))
}

fn debug_info(m: pb::DebugInfo) -> Fields {
    Fields::new()
        .list(
            "stackEntries",
            m.stack_entries.into_iter().map(Value::from).collect(),
        )
        .text("detail", m.detail)
}

fn quota_failure(m: pb::QuotaFailure) -> Fields {
    let violations = m.violations.into_iter().map(|v| {
        Fields::new()
            .text("subject", v.subject)
            .text("description", v.description)
            .text("apiService", v.api_service)
            .text("quotaMetric", v.quota_metric)
            .text("quotaId", v.quota_id)
            .map("quotaDimensions", v.quota_dimensions)
            // int64 is a string in protojson; proto3 `optional` is written
            // whenever it is set.
            .value(
                "quotaValue",
                (v.quota_value != 0).then(|| v.quota_value.to_string().into()),
            )
            .value(
                "futureQuotaValue",
                v.future_quota_value.map(|q| q.to_string().into()),
            )
            .object()
    });
    Fields::new().list("violations", violations.collect())
}

fn precondition_failure(m: pb::PreconditionFailure) -> Fields {
    let violations = m.violations.into_iter().map(|v| {
        Fields::new()
            .text("type", v.r#type)
            .text("subject", v.subject)
            .text("description", v.description)
            .object()
    });
    Fields::new().list("violations", violations.collect())
}

fn bad_request(m: pb::BadRequest) -> Fields {
    let violations = m.field_violations.into_iter().map(|v| {
        Fields::new()
            .text("field", v.field)
            .text("description", v.description)
            .text("reason", v.reason)
            .value(
                "localizedMessage",
                v.localized_message.map(|l| localized_message(l).object()),
            )
            .object()
    });
    Fields::new().list("fieldViolations", violations.collect())
}

fn request_info(m: pb::RequestInfo) -> Fields {
    Fields::new()
        .text("requestId", m.request_id)
        .text("servingData", m.serving_data)
}

fn resource_info(m: pb::ResourceInfo) -> Fields {
    Fields::new()
        .text("resourceType", m.resource_type)
        .text("resourceName", m.resource_name)
        .text("owner", m.owner)
        .text("description", m.description)
}

fn help(m: pb::Help) -> Fields {
    let links = m.links.into_iter().map(|l| {
        Fields::new()
            .text("description", l.description)
            .text("url", l.url)
            .object()
    });
    Fields::new().list("links", links.collect())
}

fn localized_message(m: pb::LocalizedMessage) -> Fields {
    Fields::new()
        .text("locale", m.locale)
        .text("message", m.message)
}

/// A `google.protobuf.Duration` as protojson writes it: seconds with 0, 3,
/// 6 or 9 decimals and an `s` (`1s`, `1.500s`, `-0.000001s`).
fn duration(d: prost_types::Duration) -> Result<String, StatusJsonError> {
    let (seconds, nanos) = (d.seconds, d.nanos);
    if !(0..1_000_000_000).contains(&nanos.unsigned_abs())
        || (seconds > 0 && nanos < 0)
        || (seconds < 0 && nanos > 0)
    {
        return Err(StatusJsonError::Invalid);
    }
    let sign = if seconds < 0 || nanos < 0 { "-" } else { "" };
    let mut text = format!(
        "{sign}{}.{:09}",
        seconds.unsigned_abs(),
        nanos.unsigned_abs()
    );
    for _ in 0..2 {
        if let Some(shorter) = text.strip_suffix("000") {
            text.truncate(shorter.len());
        }
    }
    if let Some(whole) = text.strip_suffix(".000") {
        text.truncate(whole.len());
    }
    Ok(text + "s")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn any<M: Message>(name: &str, message: &M) -> prost_types::Any {
        prost_types::Any {
            type_url: format!("type.googleapis.com/google.rpc.{name}"),
            value: message.encode_to_vec(),
        }
    }

    #[test]
    fn a_status_without_details_leaves_out_what_is_empty() {
        assert_eq!(
            parsed(&to_json(5, "gone", &[]).unwrap()),
            json!({"code": 5, "message": "gone"})
        );
        assert_eq!(parsed(&to_json(13, "", &[]).unwrap()), json!({"code": 13}));
    }

    #[test]
    fn details_are_written_out_with_their_type() {
        let details = [
            any(
                "ErrorInfo",
                &pb::ErrorInfo {
                    reason: "STOCK".into(),
                    domain: "shop.example".into(),
                    metadata: [("sku".to_string(), "A-1".to_string())].into(),
                },
            ),
            any(
                "RetryInfo",
                &pb::RetryInfo {
                    retry_delay: Some(prost_types::Duration {
                        seconds: 1,
                        nanos: 500_000_000,
                    }),
                },
            ),
            any(
                "BadRequest",
                &pb::BadRequest {
                    field_violations: vec![pb::bad_request::FieldViolation {
                        field: "sku".into(),
                        description: "unknown".into(),
                        localized_message: Some(pb::LocalizedMessage {
                            locale: "fr".into(),
                            message: "inconnu".into(),
                        }),
                        ..Default::default()
                    }],
                },
            ),
            any(
                "QuotaFailure",
                &pb::QuotaFailure {
                    violations: vec![pb::quota_failure::Violation {
                        subject: "tenant:acme".into(),
                        quota_value: 10,
                        future_quota_value: Some(0),
                        ..Default::default()
                    }],
                },
            ),
            any("Help", &pb::Help { links: vec![] }),
        ];
        let written = parsed(&to_json(9, "out of stock", &details).unwrap());
        assert_eq!(
            written,
            json!({"code": 9, "message": "out of stock", "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                 "reason": "STOCK", "domain": "shop.example", "metadata": {"sku": "A-1"}},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.500s"},
                {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [
                    {"field": "sku", "description": "unknown",
                     "localizedMessage": {"locale": "fr", "message": "inconnu"}}]},
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                    {"subject": "tenant:acme", "quotaValue": "10", "futureQuotaValue": "0"}]},
                {"@type": "type.googleapis.com/google.rpc.Help"},
            ]})
        );
        // `@type` comes first, as Go writes it.
        assert!(
            to_json(9, "", &details[..1])
                .unwrap()
                .contains(r#"[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","#)
        );
    }

    #[test]
    fn a_detail_that_cannot_be_written_is_daprds_error() {
        let custom = prost_types::Any {
            type_url: "type.googleapis.com/shop.v1.StockError".into(),
            value: vec![],
        };
        assert_eq!(
            to_json(9, "x", &[custom]),
            Err(StatusJsonError::UnknownType(
                "type.googleapis.com/shop.v1.StockError".into()
            ))
        );
        let broken = prost_types::Any {
            type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
            value: vec![0x0a, 0x05, b'a'],
        };
        assert_eq!(to_json(9, "x", &[broken]), Err(StatusJsonError::Invalid));
    }

    #[test]
    fn durations_are_written_as_protojson_writes_them() {
        let d = |seconds, nanos| duration(prost_types::Duration { seconds, nanos });
        assert_eq!(d(1, 0).unwrap(), "1s");
        assert_eq!(d(0, 0).unwrap(), "0s");
        assert_eq!(d(1, 500_000_000).unwrap(), "1.500s");
        assert_eq!(d(0, 1_000).unwrap(), "0.000001s");
        assert_eq!(d(0, 1).unwrap(), "0.000000001s");
        assert_eq!(d(-2, -250_000_000).unwrap(), "-2.250s");
        assert!(d(1, -1).is_err());
        assert!(d(0, 1_000_000_000).is_err());
    }
}
