//! Traces from a sidecar, sent to each exporter a Dapr `Configuration` can
//! name: OTLP over HTTP, OTLP over gRPC, and Zipkin.

use std::time::Duration;

use serde_json::Value;
use service_kit::trace::{OtlpProtocol, SpanExport, TracingConfig};
use test_support::otlp::SpanReceiver;
use test_support::sidecar::*;

/// Each exporter gets the sidecar's span of an invocation: in the caller's
/// trace, the child of the caller's span, named by its route; the app is
/// called with a `traceparent` naming that span, so the app's own span
/// will be its child.
#[tokio::test]
async fn a_sidecar_sends_its_spans_over_otlp_http_otlp_grpc_and_zipkin() {
    let data = tempfile::tempdir().unwrap();
    let collector = SpanReceiver::start().await;
    let (app, _app) = start_echo_app().await;
    let exporters = [
        (
            "otlp-http",
            SpanExport::Otlp {
                endpoint: format!("http://{}/v1/traces", collector.address()),
                protocol: OtlpProtocol::HttpProtobuf,
            },
        ),
        (
            "otlp-grpc",
            SpanExport::Otlp {
                endpoint: format!("http://{}", collector.grpc_address()),
                protocol: OtlpProtocol::Grpc,
            },
        ),
        (
            "zipkin",
            SpanExport::Zipkin {
                endpoint: format!("http://{}/api/v2/spans", collector.address()),
            },
        ),
    ];
    let client = reqwest::Client::new();
    for (i, (app_id, export)) in exporters.into_iter().enumerate() {
        let mut config = config(app_id, Some(app.port()), data.path());
        config.tracing = TracingConfig {
            sampling_rate: 1.0,
            export: Some(export),
        };
        let sidecar = RunningSidecar::start(config).await;
        let trace_id = format!("4bf92f3577b34da6a3ce929d0e0e473{i}");
        let caller_span = "00f067aa0ba902b7";
        let echo: Value = client
            .post(sidecar.url(&format!("/v1.0/invoke/{app_id}/method/echo")))
            .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let to_app = echo["headers"]["traceparent"].as_str().unwrap().to_string();
        // Stopping sends the spans still batched.
        sidecar.stop().await;
        let spans = collector
            .wait_for_trace(
                &trace_id,
                &format!("{app_id}'s span"),
                Duration::from_secs(10),
                |spans| !spans.is_empty(),
            )
            .await;
        let span = &spans[0];
        assert_eq!(spans.len(), 1, "{spans:?}");
        assert_eq!(span.service, app_id);
        assert_eq!(span.name, "POST /v1.0/invoke/{app_id}/method/{*method}");
        assert_eq!(span.parent_span_id, caller_span);
        assert_eq!(span.kind, 2, "a server span: {span:?}");
        assert_eq!(span.attribute("http.response.status_code"), Some("200"));
        assert!(span.start < span.end, "{span:?}");
        assert_eq!(
            to_app,
            format!("00-{trace_id}-{}-01", span.span_id),
            "the app's parent is the sidecar's span"
        );
    }
}

/// A published event carries the trace to its delivery: the sidecar's
/// span of the publish is the child of the publisher's, and the span of
/// the delivery to the subscriber (`process TOPIC`, a consumer span) is
/// the child of the publish.
#[tokio::test]
async fn a_published_event_carries_its_trace_to_the_delivery() {
    let data = tempfile::tempdir().unwrap();
    let resources = tempfile::tempdir().unwrap();
    write_in_memory_pubsub(resources.path(), "pubsub");
    std::fs::write(
        resources.path().join("subscription.yaml"),
        "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: orders\nspec:\n  pubsubname: pubsub\n  topic: orders\n  routes:\n    default: /orders\n",
    )
    .unwrap();
    let collector = SpanReceiver::start().await;
    let (app, _received) = crate::pubsub::start_subscriber(serde_json::json!([])).await;
    let mut config = config("traced-pubsub", Some(app.port()), data.path());
    config.resources_paths = vec![resources.path().to_path_buf()];
    config.tracing = TracingConfig {
        sampling_rate: 1.0,
        export: Some(SpanExport::Otlp {
            endpoint: format!("http://{}/v1/traces", collector.address()),
            protocol: OtlpProtocol::HttpProtobuf,
        }),
    };
    let sidecar = RunningSidecar::start(config).await;
    sidecar.wait_subscribed(1).await;
    let trace_id = "5bf92f3577b34da6a3ce929d0e0e4736";
    let publisher_span = "10f067aa0ba902b7";
    let published = reqwest::Client::new()
        .post(sidecar.url("/v1.0/publish/pubsub/orders"))
        .header("traceparent", format!("00-{trace_id}-{publisher_span}-01"))
        .json(&serde_json::json!({"order": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 204);
    let metrics = format!("http://{}/metrics", sidecar.metrics_address);
    test_support::wait_until("the event's delivery", Duration::from_secs(10), || {
        let metrics = metrics.clone();
        async move {
            let scrape = test_support::metrics::Scrape::fetch_owned(metrics).await;
            scrape.sum(
                "dapr_component_pubsub_ingress_count",
                &[("topic", "orders"), ("process_status", "success")],
            ) >= 1.0
        }
    })
    .await;
    sidecar.stop().await;
    let spans = collector
        .wait_for_trace(
            trace_id,
            "the publish and delivery spans",
            Duration::from_secs(10),
            |spans| spans.len() >= 2,
        )
        .await;
    let publish = spans
        .iter()
        .find(|s| s.name == "POST /v1.0/publish/{pubsub}/{*topic}")
        .expect("the publish's span");
    assert_eq!(publish.parent_span_id, publisher_span);
    let delivery = spans
        .iter()
        .find(|s| s.name == "process orders")
        .expect("the delivery's span");
    assert_eq!(delivery.parent_span_id, publish.span_id, "{spans:?}");
    assert_eq!(delivery.kind, 5, "a consumer span: {delivery:?}");
    assert_eq!(delivery.attribute("dapr.process_status"), Some("success"));
    assert_eq!(
        delivery.attribute("messaging.destination.name"),
        Some("orders")
    );
}
