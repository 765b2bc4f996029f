//! `components/grayscale-service` as a Dapr app: served by the component
//! host beside its own sidecar, called by another app through that app's
//! sidecar (two sidecars, as in production). It reaches the state store and
//! pub/sub only through wasi:http requests to its sidecar.

use std::time::Duration;

use component_host::outbound::Outbound;
use component_host::{ComponentHost, ComponentHostConfig, ComponentSettings};
use reqwest::StatusCode;
use serde_json::Value;
use test_support::metrics::Scrape;
use test_support::sidecar::{RunningSidecar, TestResources};
use test_support::{component_path, photo};

const PER_MINUTE: u32 = 3;

#[tokio::test]
async fn through_two_sidecars_it_grays_images_keeps_callers_in_state_and_limits_their_rate() {
    let resources = TestResources::new();
    // The pub/sub its events go to.
    std::fs::write(
        resources.resources.path().join("pubsub.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\n\
         spec:\n  type: pubsub.in-memory\n  version: v1\n",
    )
    .expect("write the pub/sub component");

    // The component's port first: its sidecar needs it, and the component
    // needs its sidecar's.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let app_port = listener.local_addr().expect("address").port();
    let own = RunningSidecar::start(resources.config("grayscale-service", Some(app_port))).await;
    let caller = RunningSidecar::start(resources.config("caller", None)).await;

    let sidecar_port = own.address.port();
    let component = tokio::task::spawn_blocking(move || {
        let settings = ComponentSettings {
            env: vec![
                ("APP_ID".into(), "grayscale-service".into()),
                ("DAPR_HTTP_PORT".into(), sidecar_port.to_string()),
                ("RATE_LIMIT_PER_MINUTE".into(), PER_MINUTE.to_string()),
            ],
            outbound: Outbound::sidecar_and(Some(sidecar_port), Vec::new()),
            ..ComponentSettings::default()
        };
        ComponentHost::new(ComponentHostConfig::default())
            .expect("host")
            .load_file(&component_path("grayscale-service"), settings)
            .expect("the component loads")
    })
    .await
    .expect("joined");
    let server = tokio::spawn(service_kit::serve::serve(
        listener,
        component_host::app::router(component),
        service_kit::serve::ConnectionLimit::default(),
        std::future::pending(),
    ));

    let client = reqwest::Client::new();
    let invoke = caller.url("/v1.0/invoke/grayscale-service/method/grayscale");
    let call = |body: Vec<u8>| {
        let request = client.post(&invoke).body(body).send();
        async move { request.await.expect("answered") }
    };

    let gray = call(photo("cat.jpg")).await;
    assert_eq!(gray.status(), StatusCode::OK);
    assert_eq!(gray.headers()["content-type"], "image/png");
    let png = gray.bytes().await.expect("body");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG comes back");

    let truncated = photo("cat.jpg")[..300].to_vec();
    let bad = call(truncated).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let body: Value = bad.json().await.expect("a JSON error");
    assert_eq!(body["errorCode"], "ERR_INVALID_IMAGE");

    // Its state entry, read through its own sidecar: the caller's address,
    // this minute's count, the last call's time.
    let state: Value = client
        .get(own.url("/v1.0/state/statestore/grayscale-service||rate||127.0.0.1"))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("the entry is JSON");
    assert_eq!(state["client"], "127.0.0.1");
    assert_eq!(state["count"], 2);
    assert!(
        state["lastCall"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{state}"
    );

    assert_eq!(call(photo("cat.jpg")).await.status(), StatusCode::OK);
    let limited = call(photo("cat.jpg")).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(
        (1..=60).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    let body: Value = limited.json().await.expect("a JSON error");
    assert_eq!(body["errorCode"], "ERR_RATE_LIMITED");

    // One event published per image it processed (not for the refused call).
    let scrape = Scrape::fetch_owned(format!("http://{}/metrics", own.metrics_address)).await;
    let published = scrape.sum(
        "dapr_component_pubsub_egress_count",
        &[("topic", "image-events"), ("success", "true")],
    );
    assert_eq!(published, 3.0);

    server.abort();
    tokio::time::timeout(Duration::from_secs(10), async {
        caller.stop().await;
        own.stop().await;
    })
    .await
    .expect("the sidecars stop");
}
