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
