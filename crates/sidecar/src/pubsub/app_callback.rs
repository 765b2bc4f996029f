//! Pub/sub for gRPC apps (`--app-protocol grpc`), as daprd serves them.
//!
//! Their subscriptions come from `AppCallback.ListTopicSubscriptions`
//! ([`super::subscriptions::parse_app_callback`]; `UNIMPLEMENTED` means
//! none), and their events go to `OnTopicEvent`, or to `OnBulkTopicEvent`
//! for subscriptions with `bulkSubscribe`
//! (`AppCallbackAlpha.OnBulkTopicEventAlpha1` when the app implements only
//! that), instead of HTTP `POST`s. The
//! line, retries, dead letters and acknowledgements are the ones HTTP apps
//! get ([`super::delivery`], [`super::bulk_delivery`]); only the call
//! differs:
//!
//! | the app's answer | outcome |
//! |---|---|
//! | `SUCCESS` (an empty answer) | delivered |
//! | `DROP` | dropped (warning log) |
//! | status `UNIMPLEMENTED` | dropped (warning log), as daprd: the app has no handler |
//! | `RETRY`, an unknown status, any other gRPC status, no answer | retried |
//!
//! A CloudEvent's attributes become the request's fields as daprd fills
//! them: `id`, `source`, `type`, `specversion` and `datacontenttype`;
//! `data` as bytes (`data_base64` decoded, JSON data as JSON text, text as
//! itself); every other attribute (`topic`, `traceparent`, `time`, …) in
//! `extensions`. The request carries the event's trace context and the
//! app's API token as metadata.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};

use dapr::dapr::proto::runtime::v1 as pb;
use pb::app_callback_alpha_client::AppCallbackAlphaClient;
use pb::app_callback_client::AppCallbackClient;
use pb::topic_event_bulk_request_entry::Event as BulkEvent;
use pb::topic_event_response::TopicEventResponseStatus;
use serde_json::{Map, Value};
use service_kit::trace::TraceContext;

use super::delivery::{CloudEvent, DROP, SUCCESS};
use super::ops::new_event_id;
use super::subscriptions::{Subscription, parse_app_callback};
use crate::Sidecar;

/// The sidecar's client for its app's `AppCallback` service.
pub(crate) type AppCallback = AppCallbackClient<tonic::transport::Channel>;

/// What the app decided for one event: `Ok(SUCCESS | DROP)`, or why it is
/// to be retried.
pub(crate) type Verdict = Result<&'static str, String>;

/// The app's subscriptions, from `ListTopicSubscriptions`; why not, while
/// the app does not answer.
pub(crate) async fn list_subscriptions(mut app: AppCallback) -> Result<Vec<Subscription>, String> {
    match app.list_topic_subscriptions(tonic::Request::new(())).await {
        Ok(answer) => Ok(parse_app_callback(answer.into_inner())),
        Err(status) if status.code() == tonic::Code::Unimplemented => Ok(Vec::new()),
        Err(status) => Err(format!(
            "ListTopicSubscriptions answered {:?}: {}",
            status.code(),
            status.message()
        )),
    }
}

/// Delivers one event through `OnTopicEvent`.
pub(crate) async fn on_topic_event(
    sidecar: &Sidecar,
    mut app: AppCallback,
    subscription: &Subscription,
    event: &CloudEvent,
    trace: &TraceContext,
) -> Verdict {
    let request = topic_event_request(subscription, event)?;
    let answer = call_app(sidecar, request, trace, |request| async move {
        app.on_topic_event(request).await
    })
    .await;
    match answer {
        Ok(answer) => verdict(answer.status, subscription, &event.id),
        Err(reason) => unanswered(subscription, reason),
    }
}

/// `event` as `OnTopicEvent` (and a streaming subscription) gets it.
pub(crate) fn topic_event_request(
    subscription: &Subscription,
    event: &CloudEvent,
) -> Result<pb::TopicEventRequest, String> {
    let fields = fields(event)?;
    Ok(pb::TopicEventRequest {
        id: fields.id,
        source: fields.source,
        r#type: fields.r#type,
        spec_version: fields.spec_version,
        data_content_type: fields.data_content_type,
        data: fields.data,
        extensions: fields.extensions,
        topic: subscription.topic.clone(),
        pubsub_name: subscription.pubsub_name.clone(),
        path: subscription.route.clone(),
    })
}

/// The verdict on the app's `status` for the event with `id` (a
/// `TopicEventResponseStatus`, alone or per bulk entry).
pub(crate) fn verdict(status: i32, subscription: &Subscription, id: &str) -> Verdict {
    match TopicEventResponseStatus::try_from(status) {
        Ok(TopicEventResponseStatus::Success) => Ok(SUCCESS),
        Ok(TopicEventResponseStatus::Drop) => {
            tracing::warn!(topic = %subscription.topic, %id, "the app dropped an event");
            Ok(DROP)
        }
        Ok(TopicEventResponseStatus::Retry) => Err("the app asked to retry".into()),
        Err(_) => Err(format!("the app answered unknown status {status}")),
    }
}

/// Delivers a batch through `OnBulkTopicEvent`: each `(entry id, event)`'s
/// verdict, in order.
pub(crate) async fn on_bulk_topic_event(
    sidecar: &Sidecar,
    calls: &BulkCalls,
    subscription: &Subscription,
    entries: &[(&str, &CloudEvent)],
    trace: &TraceContext,
) -> Vec<Verdict> {
    let mut verdicts: Vec<Option<Verdict>> = vec![None; entries.len()];
    let mut sent = Vec::with_capacity(entries.len());
    for (i, (entry_id, event)) in entries.iter().enumerate() {
        match fields(event) {
            Ok(fields) => sent.push(pb::TopicEventBulkRequestEntry {
                entry_id: entry_id.to_string(),
                content_type: "application/cloudevents+json".into(),
                metadata: HashMap::new(),
                event: Some(BulkEvent::CloudEvent(fields)),
            }),
            Err(reason) => verdicts[i] = Some(Err(reason)),
        }
    }
    let request = pb::TopicEventBulkRequest {
        id: new_event_id(),
        entries: sent,
        metadata: HashMap::from([("pubsubName".into(), subscription.pubsub_name.clone())]),
        topic: subscription.topic.clone(),
        pubsub_name: subscription.pubsub_name.clone(),
        r#type: "com.dapr.event.sent.bulk".into(),
        path: subscription.route.clone(),
    };
    let answer = calls.call(sidecar, request, trace).await;
    let statuses: HashMap<String, i32> = match answer {
        Ok(answer) => answer
            .statuses
            .into_iter()
            .map(|s| (s.entry_id, s.status))
            .collect(),
        Err(reason) => {
            let for_all = unanswered(subscription, reason);
            return verdicts
                .into_iter()
                .map(|v| v.unwrap_or_else(|| for_all.clone()))
                .collect();
        }
    };
    verdicts
        .into_iter()
        .zip(entries)
        .map(|(decided, (entry_id, _))| {
            decided.unwrap_or_else(|| match statuses.get(*entry_id) {
                None => Err("the app gave no status for the event".into()),
                Some(&status) => verdict(status, subscription, entry_id),
            })
        })
        .collect()
}

/// A gRPC app's two bulk calls, for one subscription: `OnBulkTopicEvent`,
/// and `AppCallbackAlpha.OnBulkTopicEventAlpha1`, which apps written
/// against daprd's older API implement instead (the Java SDK's examples;
/// deprecated upstream but still called by daprd for such apps). Which
/// one the app answers is learnt from the first batch it accepts, so that
/// later batches are sent once, not copied for a fallback. A
/// subscription's consumer holds one; it starts over with the
/// subscriptions (when the app comes back).
pub(crate) struct BulkCalls {
    current: AppCallback,
    alpha: AppCallbackAlphaClient<tonic::transport::Channel>,
    answered_by: AtomicU8,
}

/// [`BulkCalls::answered_by`]'s values.
const NOT_YET_KNOWN: u8 = 0;
const CURRENT: u8 = 1;
const ALPHA1: u8 = 2;

impl BulkCalls {
    /// The calls of the sidecar's app, when it is a gRPC app.
    pub(crate) fn for_app(sidecar: &Sidecar) -> Option<Self> {
        Some(BulkCalls {
            current: sidecar.app_callback.clone()?,
            alpha: sidecar.app_callback_alpha.clone()?,
            answered_by: AtomicU8::new(NOT_YET_KNOWN),
        })
    }

    /// Sends `request` through the call the app answers; while that is not
    /// known, `OnBulkTopicEvent` first and the Alpha1 call when the app
    /// answers `UNIMPLEMENTED`.
    async fn call(
        &self,
        sidecar: &Sidecar,
        request: pb::TopicEventBulkRequest,
        trace: &TraceContext,
    ) -> Result<pb::TopicEventBulkResponse, Unanswered> {
        let (mut current, mut alpha) = (self.current.clone(), self.alpha.clone());
        #[allow(deprecated)]
        let call_alpha = |request| async move { alpha.on_bulk_topic_event_alpha1(request).await };
        let known = self.answered_by.load(Ordering::Relaxed);
        if known == ALPHA1 {
            return call_app(sidecar, request, trace, call_alpha).await;
        }
        let again = (known == NOT_YET_KNOWN).then(|| request.clone());
        let answer = call_app(sidecar, request, trace, |request| async move {
            current.on_bulk_topic_event(request).await
        })
        .await;
        match (answer, again) {
            (Err(Unanswered::Status(status)), Some(request))
                if status.code() == tonic::Code::Unimplemented =>
            {
                let answer = call_app(sidecar, request, trace, call_alpha).await;
                if answer.is_ok() {
                    self.answered_by.store(ALPHA1, Ordering::Relaxed);
                }
                answer
            }
            (answer, _) => {
                if answer.is_ok() {
                    self.answered_by.store(CURRENT, Ordering::Relaxed);
                }
                answer
            }
        }
    }
}

/// Why a call had no answer: the app's gRPC status, or no answer at all.
pub(crate) enum Unanswered {
    Status(tonic::Status),
    Failed(String),
}

/// The verdict on a call the app did not answer: `UNIMPLEMENTED` drops
/// (the app has no handler for the topic, as daprd reads it); anything
/// else retries.
fn unanswered(subscription: &Subscription, reason: Unanswered) -> Verdict {
    match reason {
        Unanswered::Status(status) if status.code() == tonic::Code::Unimplemented => {
            tracing::warn!(topic = %subscription.topic, path = %subscription.route, message = %status.message(), "the gRPC app answered UNIMPLEMENTED to an event: dropped, as daprd does");
            Ok(DROP)
        }
        Unanswered::Status(status) => Err(format!(
            "the app answered {:?}: {}",
            status.code(),
            status.message()
        )),
        Unanswered::Failed(reason) => Err(reason),
    }
}

/// Calls the app with `message`, within `--app-max-concurrency` and the
/// invoke timeout, with the trace context and the app's API token as
/// metadata.
pub(crate) async fn call_app<T, A, F, Fut>(
    sidecar: &Sidecar,
    message: T,
    trace: &TraceContext,
    call: F,
) -> Result<A, Unanswered>
where
    F: FnOnce(tonic::Request<T>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<A>, tonic::Status>>,
{
    let _slot = match &sidecar.app_slots {
        Some(slots) => slots.clone().acquire_owned().await.ok(),
        None => None,
    };
    let mut headers = trace.headers();
    if let Some(token) = sidecar.config.app_api_token.as_deref()
        && let Ok(value) = token.parse()
    {
        headers.insert("dapr-api-token", value);
    }
    let mut request = tonic::Request::from_parts(
        tonic::metadata::MetadataMap::from_headers(headers),
        Default::default(),
        message,
    );
    request.set_timeout(sidecar.config.invoke_timeout);
    match tokio::time::timeout(sidecar.config.invoke_timeout, call(request)).await {
        Err(_) => Err(Unanswered::Failed("the app did not answer in time".into())),
        Ok(Err(status)) => Err(Unanswered::Status(status)),
        Ok(Ok(answer)) => Ok(answer.into_inner()),
    }
}

/// The CloudEvent attributes that have fields of their own in the
/// request; every other one goes in `extensions`.
const OWN_FIELDS: [&str; 7] = [
    "id",
    "source",
    "type",
    "specversion",
    "datacontenttype",
    "data",
    "data_base64",
];

/// `event` as the request's fields, or why it cannot be (a `data_base64`
/// that is not base64; retried, then dead-lettered, as daprd).
fn fields(event: &CloudEvent) -> Result<pb::TopicEventCeRequest, String> {
    let mut attributes: Map<String, Value> = serde_json::from_slice(&event.json)
        .map_err(|e| format!("the event is not a JSON object: {e}"))?;
    let mut text = |name: &str| match attributes.remove(name) {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    let (id, source, r#type, spec_version, data_content_type) = (
        text("id"),
        text("source"),
        text("type"),
        text("specversion"),
        text("datacontenttype"),
    );
    let data = data(
        &data_content_type,
        attributes.remove("data"),
        attributes.remove("data_base64"),
    )?;
    attributes.retain(|name, _| !OWN_FIELDS.contains(&name.as_str()));
    let extensions = (!attributes.is_empty()).then(|| crate::proto_json::struct_of(attributes));
    Ok(pb::TopicEventCeRequest {
        id,
        source,
        r#type,
        spec_version,
        data_content_type,
        data,
        extensions,
    })
}

/// The event's data as bytes: `data_base64` decoded; for a JSON content
/// type, `data` as JSON text (a JSON string keeps its quotes, as daprd);
/// otherwise a string as itself and anything else as JSON text.
fn data(
    content_type: &str,
    data: Option<Value>,
    data_base64: Option<Value>,
) -> Result<Vec<u8>, String> {
    use base64::Engine;
    if let Some(Value::String(encoded)) = data_base64 {
        return base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| format!("the event's data_base64 is not base64: {e}"));
    }
    Ok(match data {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) if !super::ops::is_json(content_type) => text.into_bytes(),
        Some(value) => value.to_string().into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::value::Kind;

    fn event(json: Value) -> CloudEvent {
        let mut event = CloudEvent::default();
        event.id = json["id"].as_str().unwrap_or_default().to_string();
        event.json = json.to_string().into();
        event
    }

    #[test]
    fn a_cloudevent_becomes_the_requests_fields_and_extensions() {
        let fields = fields(&event(serde_json::json!({
            "id": "e1", "source": "pub", "type": "com.dapr.event.sent",
            "specversion": "1.0", "datacontenttype": "application/json",
            "data": {"n": 1}, "topic": "orders", "traceparent": "00-ab",
            "nested": {"list": [true, null, "x"]},
        })))
        .unwrap();
        assert_eq!(
            (
                fields.id.as_str(),
                fields.source.as_str(),
                fields.r#type.as_str(),
                fields.spec_version.as_str(),
                fields.data_content_type.as_str(),
            ),
            (
                "e1",
                "pub",
                "com.dapr.event.sent",
                "1.0",
                "application/json"
            )
        );
        assert_eq!(fields.data, br#"{"n":1}"#);
        let extensions = fields.extensions.unwrap().fields;
        let mut names: Vec<&str> = extensions.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(names, ["nested", "topic", "traceparent"]);
        assert_eq!(
            extensions["topic"].kind,
            Some(Kind::StringValue("orders".into()))
        );
        let Some(Kind::StructValue(nested)) = &extensions["nested"].kind else {
            panic!("nested is not a struct: {:?}", extensions["nested"]);
        };
        let Some(Kind::ListValue(list)) = &nested.fields["list"].kind else {
            panic!("list is not a list");
        };
        assert_eq!(
            list.values
                .iter()
                .map(|v| v.kind.clone().unwrap())
                .collect::<Vec<_>>(),
            [
                Kind::BoolValue(true),
                Kind::NullValue(0),
                Kind::StringValue("x".into())
            ]
        );
    }

    #[test]
    fn data_as_daprd_passes_it() {
        assert_eq!(
            data("text/plain", Some(Value::String("hi".into())), None).unwrap(),
            b"hi"
        );
        assert_eq!(
            data("application/json", Some(Value::String("hi".into())), None).unwrap(),
            br#""hi""#
        );
        assert_eq!(
            data(
                "application/octet-stream",
                None,
                Some(Value::String("AJ//".into()))
            )
            .unwrap(),
            [0x00, 0x9f, 0xff]
        );
        assert_eq!(data("", None, None).unwrap(), b"");
        let refused = data("", None, Some(Value::String("not base64!".into()))).unwrap_err();
        assert!(refused.contains("data_base64"), "{refused}");
    }
}
