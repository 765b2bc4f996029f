//! gRPC apps (`--app-protocol grpc`): a real tonic `AppCallback` server,
//! invoked by app id from an HTTP caller and from a gRPC caller, each
//! through two sidecars, probed for health, and subscribed to pub/sub
//! topics (`ListTopicSubscriptions`, `OnTopicEvent`, `OnBulkTopicEvent`),
//! triggered by input bindings (`ListInputBindings`, `OnBindingEvent`);
//! and a plain gRPC service (`grpc.health.v1.Health`) reached through the
//! sidecars' gRPC proxy.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dapr::dapr::proto::common::v1 as common;
use dapr::dapr::proto::common::v1::http_extension::Verb;
use dapr::dapr::proto::runtime::v1 as pb;
use dapr::dapr::proto::runtime::v1::app_callback_alpha_server::{
    AppCallbackAlpha, AppCallbackAlphaServer,
};
use dapr::dapr::proto::runtime::v1::app_callback_health_check_server::{
    AppCallbackHealthCheck, AppCallbackHealthCheckServer,
};
use dapr::dapr::proto::runtime::v1::app_callback_server::{AppCallback, AppCallbackServer};
use dapr::dapr::proto::runtime::v1::dapr_client::DaprClient;
use serde_json::{Value, json};
use sidecar::args::{AppHealthConfig, AppProtocol};
use test_support::sidecar::*;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as Answered;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::server::HealthReporter;
use tonic_types::{ErrorDetails, StatusExt};

/// What the gRPC app received through pub/sub: each event (with its
/// `dapr-api-token` metadata) and each batch, in order.
#[derive(Default)]
struct Received {
    events: Mutex<Vec<(pb::TopicEventRequest, Option<String>)>>,
    batches: Mutex<Vec<pb::TopicEventBulkRequest>>,
    /// Ids of events answered RETRY once already.
    retried: Mutex<std::collections::HashSet<String>>,
    /// Input binding events (with their `dapr-api-token` metadata).
    binding_events: Mutex<Vec<(pb::BindingEventRequest, Option<String>)>>,
}

/// The `dapr-api-token` a call to the app carried.
fn api_token<T>(request: &Request<T>) -> Option<String> {
    request
        .metadata()
        .get("dapr-api-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The gRPC app: answers `OnInvoke` with JSON describing what it
/// received; subscribes (`ListTopicSubscriptions`) to `bus/orders` (no
/// path, dead letters to `orders-dead`), `bus/orders-dead` (path `dead`),
/// `bus/batched` (bulk, 5 per batch, path `/batched`) and
/// `bus/batched-alpha` (bulk with daprd's defaults, path `/alpha`, served
/// only by `AppCallbackAlpha`); and answers each event as its data's
/// `answer` asks ([`GrpcApp::answer`]).
struct GrpcApp(Arc<Received>);

impl GrpcApp {
    /// The status for an event whose JSON data asks for `answer`:
    /// `retry-once` (RETRY the first time), `retry`, `drop`, or
    /// `unimplemented` (`Err`); SUCCESS otherwise.
    fn answer(&self, id: &str, data: &[u8]) -> Result<i32, Status> {
        use pb::topic_event_response::TopicEventResponseStatus as Answer;
        let data: Value = serde_json::from_slice(data).unwrap_or_default();
        let answer = match data["answer"].as_str() {
            Some("retry-once") if self.0.retried.lock().unwrap().insert(id.to_string()) => {
                Answer::Retry
            }
            Some("retry") => Answer::Retry,
            Some("drop") => Answer::Drop,
            Some("unimplemented") => return Err(Status::unimplemented("no handler")),
            _ => Answer::Success,
        };
        Ok(answer.into())
    }
}

#[tonic::async_trait]
impl AppCallback for GrpcApp {
    async fn on_invoke(
        &self,
        request: Request<common::InvokeRequest>,
    ) -> Result<Response<common::InvokeResponse>, Status> {
        let token = api_token(&request);
        let seen = |key: &str| {
            request
                .metadata()
                .get(key)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let metadata = json!({
            "x-tenant": seen("x-tenant"),
            "dapr-content-type": seen("dapr-content-type"),
            "dapr-caller-app-id": seen("dapr-caller-app-id"),
            "dapr-app-id": seen("dapr-app-id"),
        });
        let invoke = request.into_inner();
        if invoke.method == "fail" {
            let mut metadata = tonic::metadata::MetadataMap::new();
            metadata.insert("x-app-answer", "no".parse().unwrap());
            return Err(Status::with_error_details_and_metadata(
                tonic::Code::FailedPrecondition,
                "the app said no",
                ErrorDetails::with_error_info("APP_SAID_NO", "grpc-app.example", []),
                metadata,
            ));
        }
        if invoke.method == "fail-with-own-detail" {
            // A detail of the app's own type, which daprd cannot write as
            // JSON.
            let own = tonic_types::Status {
                code: tonic::Code::Aborted as i32,
                message: "out of stock".into(),
                details: vec![prost_types::Any {
                    type_url: "type.googleapis.com/shop.v1.StockError".into(),
                    value: b"\x0a\x03A-1".to_vec(),
                }],
            };
            return Err(Status::with_details(
                tonic::Code::Aborted,
                "out of stock",
                prost::Message::encode_to_vec(&own).into(),
            ));
        }
        let extension = invoke.http_extension.unwrap_or_default();
        let echo = json!({
            "method": invoke.method,
            "verb": extension.verb().as_str_name(),
            "query": extension.querystring,
            "content_type": invoke.content_type,
            "body": String::from_utf8_lossy(&invoke.data.map(|d| d.value).unwrap_or_default()),
            "token": token,
            "metadata": metadata,
        });
        let mut answer = Response::new(common::InvokeResponse {
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: echo.to_string().into_bytes(),
            }),
            content_type: "application/json".into(),
        });
        answer
            .metadata_mut()
            .insert("x-app-answer", "yes".parse().unwrap());
        answer
            .metadata_mut()
            .insert("grpc-app-note", "kept apart".parse().unwrap());
        Ok(answer)
    }

    async fn list_topic_subscriptions(
        &self,
        _: Request<()>,
    ) -> Result<Response<pb::ListTopicSubscriptionsResponse>, Status> {
        let subscription = |topic: &str, path: &str| pb::TopicSubscription {
            pubsub_name: "bus".into(),
            topic: topic.into(),
            routes: Some(pb::TopicRoutes {
                rules: Vec::new(),
                default: path.into(),
            }),
            ..Default::default()
        };
        Ok(Response::new(pb::ListTopicSubscriptionsResponse {
            subscriptions: vec![
                pb::TopicSubscription {
                    dead_letter_topic: "orders-dead".into(),
                    routes: None,
                    ..subscription("orders", "")
                },
                subscription("orders-dead", "dead"),
                pb::TopicSubscription {
                    bulk_subscribe: Some(pb::BulkSubscribeConfig {
                        enabled: true,
                        max_messages_count: 5,
                        max_await_duration_ms: 20,
                    }),
                    ..subscription("batched", "/batched")
                },
                pb::TopicSubscription {
                    bulk_subscribe: Some(pb::BulkSubscribeConfig {
                        enabled: true,
                        ..Default::default()
                    }),
                    ..subscription("batched-alpha", "/alpha")
                },
            ],
        }))
    }

    async fn on_topic_event(
        &self,
        request: Request<pb::TopicEventRequest>,
    ) -> Result<Response<pb::TopicEventResponse>, Status> {
        let token = api_token(&request);
        let event = request.into_inner();
        self.0.events.lock().unwrap().push((event.clone(), token));
        let status = self.answer(&event.id, &event.data)?;
        Ok(Response::new(pb::TopicEventResponse { status }))
    }

    async fn list_input_bindings(
        &self,
        _: Request<()>,
    ) -> Result<Response<pb::ListInputBindingsResponse>, Status> {
        Ok(Response::new(pb::ListInputBindingsResponse {
            bindings: vec!["tick".into()],
        }))
    }

    async fn on_binding_event(
        &self,
        request: Request<pb::BindingEventRequest>,
    ) -> Result<Response<pb::BindingEventResponse>, Status> {
        let token = api_token(&request);
        let event = request.into_inner();
        self.0.binding_events.lock().unwrap().push((event, token));
        Ok(Response::new(Default::default()))
    }

    async fn on_bulk_topic_event(
        &self,
        request: Request<pb::TopicEventBulkRequest>,
    ) -> Result<Response<pb::TopicEventBulkResponse>, Status> {
        let batch = request.into_inner();
        if batch.path == "/alpha" {
            return Err(Status::unimplemented("only in AppCallbackAlpha"));
        }
        self.bulk(batch)
    }

    async fn on_job_event(
        &self,
        _: Request<pb::JobEventRequest>,
    ) -> Result<Response<pb::JobEventResponse>, Status> {
        Err(Status::unimplemented("OnJobEvent"))
    }
}

/// daprd's older bulk call, which apps written against it implement
/// instead of `AppCallback.OnBulkTopicEvent` (here: for path `/alpha`).
#[tonic::async_trait]
impl AppCallbackAlpha for GrpcApp {
    async fn on_bulk_topic_event_alpha1(
        &self,
        request: Request<pb::TopicEventBulkRequest>,
    ) -> Result<Response<pb::TopicEventBulkResponse>, Status> {
        self.bulk(request.into_inner())
    }

    async fn on_job_event_alpha1(
        &self,
        _: Request<pb::JobEventRequest>,
    ) -> Result<Response<pb::JobEventResponse>, Status> {
        Err(Status::unimplemented("OnJobEventAlpha1"))
    }
}

impl GrpcApp {
    /// Records a batch and answers each entry as [`GrpcApp::answer`] says.
    fn bulk(
        &self,
        batch: pb::TopicEventBulkRequest,
    ) -> Result<Response<pb::TopicEventBulkResponse>, Status> {
        use pb::topic_event_bulk_request_entry::Event;
        self.0.batches.lock().unwrap().push(batch.clone());
        let statuses = batch
            .entries
            .iter()
            .map(|entry| {
                let Some(Event::CloudEvent(event)) = &entry.event else {
                    panic!("an entry without a CloudEvent: {entry:?}");
                };
                pb::TopicEventBulkResponseEntry {
                    entry_id: entry.entry_id.clone(),
                    status: self.answer(&event.id, &event.data).unwrap_or_default(),
                }
            })
            .collect();
        Ok(Response::new(pb::TopicEventBulkResponse { statuses }))
    }
}

/// The app's `AppCallbackHealthCheck`: healthy while its flag is set.
struct HealthFlag(Arc<AtomicBool>);

#[tonic::async_trait]
impl AppCallbackHealthCheck for HealthFlag {
    async fn health_check(
        &self,
        _: Request<()>,
    ) -> Result<Response<pb::HealthCheckResponse>, Status> {
        if self.0.load(Ordering::SeqCst) {
            Ok(Response::new(pb::HealthCheckResponse {}))
        } else {
            Err(Status::unavailable("draining"))
        }
    }
}

/// Ends every answer that has trailers (a successful one: a failure's
/// status comes in its head) with a trailer of the app's own, as a gRPC app
/// may send (tonic's handlers cannot).
fn with_app_trailer(
    response: tonic::codegen::http::Response<tonic::body::Body>,
) -> tonic::codegen::http::Response<tonic::body::Body> {
    use http_body_util::BodyExt;
    response.map(|body| {
        tonic::body::Body::new(body.map_frame(|frame| match frame.into_trailers() {
            Ok(mut trailers) => {
                trailers.insert("x-app-trailer", "yes".parse().unwrap());
                http_body::Frame::trailers(trailers)
            }
            Err(frame) => frame,
        }))
    })
}

/// Starts the gRPC app on a port of its own; returns its address, the
/// flag its health check answers from (set), and what it receives.
async fn start_grpc_app() -> (SocketAddr, Arc<AtomicBool>, Arc<Received>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let healthy = Arc::new(AtomicBool::new(true));
    let received = Arc::new(Received::default());
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(tower::util::MapResponseLayer::new(with_app_trailer))
            .add_service(AppCallbackServer::new(GrpcApp(received.clone())))
            .add_service(AppCallbackAlphaServer::new(GrpcApp(received.clone())))
            .add_service(AppCallbackHealthCheckServer::new(HealthFlag(
                healthy.clone(),
            )))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (address, healthy, received)
}

/// The gRPC app behind its sidecar (`grpc-app`), and a caller's sidecar.
async fn start_pair(data: &std::path::Path) -> (RunningSidecar, RunningSidecar) {
    let (app, _, _) = start_grpc_app().await;
    let mut target = config("grpc-app", Some(app.port()), data);
    target.app_protocol = AppProtocol::Grpc;
    target.app_api_token = Some("app-secret".into());
    let target = RunningSidecar::start(target).await;
    let caller = RunningSidecar::start(config("grpc-app-caller", None, data)).await;
    (target, caller)
}

#[tokio::test]
async fn an_http_caller_invokes_a_grpc_app_by_app_id() {
    let data = tempfile::tempdir().unwrap();
    let (target, caller) = start_pair(data.path()).await;
    let client = reqwest::Client::new();
    let response = client
        .put(caller.url("/v1.0/invoke/grpc-app/method/orders/new?x=1"))
        .header("content-type", "text/plain")
        .header("x-tenant", "acme")
        .body("hello grpc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    // The app's answer metadata comes back as headers, a gRPC key apart.
    assert_eq!(response.headers()["x-app-answer"], "yes");
    assert_eq!(response.headers()["dapr-grpc-app-note"], "kept apart");
    // The app's trailers go to gRPC callers only, as from daprd; the header
    // that carries them stays between the sidecars.
    assert!(response.headers().get("x-app-trailer").is_none());
    assert!(
        response
            .headers()
            .get("dapr-wasm-grpc-app-trailers")
            .is_none()
    );
    let echo: Value = response.json().await.unwrap();
    assert_eq!(
        echo,
        json!({
            "method": "orders/new",
            "verb": "PUT",
            "query": "x=1",
            "content_type": "text/plain",
            "body": "hello grpc",
            "token": "app-secret",
            // The call's headers as metadata, as daprd passes them: its
            // own, the caller's id, and permanent HTTP headers prefixed.
            "metadata": {
                "x-tenant": "acme",
                "dapr-content-type": "text/plain",
                "dapr-caller-app-id": "grpc-app-caller",
                "dapr-app-id": null,
            },
        })
    );

    // The app's failure, as daprd answers it: FAILED_PRECONDITION's HTTP
    // status, the status as protojson with its details, the app's metadata
    // as headers.
    let invoke = |method: &str| {
        client
            .post(caller.url(&format!("/v1.0/invoke/grpc-app/method/{method}")))
            .send()
    };
    let failed = invoke("fail").await.unwrap();
    assert_eq!(failed.status(), 400);
    assert_eq!(failed.headers()["x-app-answer"], "no");
    assert!(
        failed.headers().get("dapr-wasm-grpc-app-status").is_none(),
        "the sidecars' own header stays between them"
    );
    let body: Value = failed.json().await.unwrap();
    assert_eq!(
        body,
        json!({"code": 9, "message": "the app said no", "details": [{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "APP_SAID_NO",
            "domain": "grpc-app.example",
        }]})
    );

    // A detail of the app's own type cannot be written as JSON: daprd's
    // 500 ERR_MALFORMED_RESPONSE, naming the type.
    let failed = invoke("fail-with-own-detail").await.unwrap();
    assert_eq!(failed.status(), 500);
    let body: Value = failed.json().await.unwrap();
    assert_eq!(body["errorCode"], "ERR_MALFORMED_RESPONSE", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("unable to resolve \"type.googleapis.com/shop.v1.StockError\""),
        "{message}"
    );
    caller.stop().await;
    target.stop().await;
}

#[tokio::test]
async fn a_grpc_caller_invokes_a_grpc_app_by_app_id() {
    let data = tempfile::tempdir().unwrap();
    let (target, caller) = start_pair(data.path()).await;
    let mut dapr = DaprClient::connect(format!("http://{}", caller.grpc_address))
        .await
        .unwrap();
    let mut request = tonic::Request::new(pb::InvokeServiceRequest {
        id: "grpc-app".into(),
        message: Some(common::InvokeRequest {
            method: "orders".into(),
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: b"{\"n\":1}".to_vec(),
            }),
            content_type: "application/json".into(),
            http_extension: Some(common::HttpExtension {
                verb: Verb::Post.into(),
                querystring: "page=2".into(),
            }),
        }),
    });
    request
        .metadata_mut()
        .insert("x-tenant", "globex".parse().unwrap());
    let (metadata, answer, _) = dapr.invoke_service(request).await.unwrap().into_parts();
    assert_eq!(answer.content_type, "application/json");
    let echo: Value = serde_json::from_slice(&answer.data.unwrap().value).unwrap();
    assert_eq!(echo["method"], "orders");
    assert_eq!(echo["verb"], "POST");
    assert_eq!(echo["query"], "page=2");
    assert_eq!(echo["body"], "{\"n\":1}");
    // The caller's metadata reaches the app through both sidecars, and the
    // app's answer metadata comes back.
    assert_eq!(echo["metadata"]["x-tenant"], "globex");
    assert_eq!(echo["metadata"]["dapr-caller-app-id"], "grpc-app-caller");
    assert_eq!(metadata.get("x-app-answer").unwrap(), "yes");
    assert_eq!(metadata.get("dapr-grpc-app-note").unwrap(), "kept apart");

    // The app's trailers come back as trailers, as daprd sends them. (The
    // generated client merges trailers into the metadata: read them apart.)
    let mut grpc = tonic::client::Grpc::new(
        Channel::from_shared(format!("http://{}", caller.grpc_address))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    grpc.ready().await.unwrap();
    let (metadata, mut answers, _) = grpc
        .server_streaming(
            Request::new(crate::grpc::invoke("grpc-app", "orders", b"{}")),
            tonic::codegen::http::uri::PathAndQuery::from_static(
                "/dapr.proto.runtime.v1.Dapr/InvokeService",
            ),
            tonic_prost::ProstCodec::<pb::InvokeServiceRequest, common::InvokeResponse>::default(),
        )
        .await
        .unwrap()
        .into_parts();
    assert!(answers.message().await.unwrap().is_some());
    let trailers = answers.trailers().await.unwrap().expect("trailers");
    assert_eq!(
        trailers.get("x-app-trailer").unwrap(),
        "yes",
        "{trailers:?}"
    );
    assert!(metadata.get("x-app-trailer").is_none(), "{metadata:?}");
    assert_eq!(metadata.get("x-app-answer").unwrap(), "yes");

    // The app's failure reaches a gRPC caller as the app's own status:
    // code, message, details and metadata, through both sidecars.
    let failed = dapr
        .invoke_service(crate::grpc::invoke("grpc-app", "fail", b""))
        .await
        .unwrap_err();
    assert_eq!(failed.code(), tonic::Code::FailedPrecondition, "{failed:?}");
    assert_eq!(failed.message(), "the app said no");
    let info = failed
        .get_details_error_info()
        .expect("the app's ErrorInfo");
    assert_eq!(info.reason, "APP_SAID_NO");
    assert_eq!(info.domain, "grpc-app.example");
    assert_eq!(failed.metadata().get("x-app-answer").unwrap(), "no");

    // A detail of the app's own type, which an HTTP caller cannot be
    // given, reaches a gRPC caller as it was sent.
    let failed = dapr
        .invoke_service(crate::grpc::invoke("grpc-app", "fail-with-own-detail", b""))
        .await
        .unwrap_err();
    assert_eq!(failed.code(), tonic::Code::Aborted, "{failed:?}");
    assert_eq!(failed.message(), "out of stock");
    let carried: tonic_types::Status = prost::Message::decode(failed.details()).unwrap();
    assert_eq!(
        carried.details[0].type_url,
        "type.googleapis.com/shop.v1.StockError"
    );
    assert_eq!(carried.details[0].value, b"\x0a\x03A-1");
    caller.stop().await;
    target.stop().await;
}

/// What the proxied gRPC service saw of each call's metadata.
type SeenMetadata = Arc<Mutex<Vec<tonic::metadata::MetadataMap>>>;

/// A plain gRPC service, `grpc.health.v1.Health` (no Dapr in it), that
/// records every call's metadata; returns its address, its status setter
/// and the record.
async fn start_health_service() -> (SocketAddr, HealthReporter, SeenMetadata) {
    let (reporter, service) = tonic_health::server::health_reporter();
    let seen = SeenMetadata::default();
    let record = seen.clone();
    let service = InterceptedService::new(service, move |request: Request<()>| {
        record.lock().unwrap().push(request.metadata().clone());
        Ok(request)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (address, reporter, seen)
}

/// A `grpc.health.v1.Health` client of the sidecar at `sidecar`, whose
/// calls carry `dapr-app-id: app_id` (and `token`, if any).
async fn health_client_via(
    sidecar: SocketAddr,
    app_id: &'static str,
    token: Option<&'static str>,
) -> HealthClient<InterceptedService<Channel, impl tonic::service::Interceptor + Clone>> {
    let channel = Channel::from_shared(format!("http://{sidecar}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::with_interceptor(channel, move |mut request: Request<()>| {
        request
            .metadata_mut()
            .insert("dapr-app-id", app_id.parse().unwrap());
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("dapr-api-token", token.parse().unwrap());
        }
        Ok(request)
    })
}

fn check(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.into(),
    }
}

#[tokio::test]
async fn a_proxied_grpc_call_reaches_a_plain_grpc_service_in_another_app() {
    let data = tempfile::tempdir().unwrap();
    let (app, reporter, seen) = start_health_service().await;
    let mut target = config("health-app", Some(app.port()), data.path());
    target.app_protocol = AppProtocol::Grpc;
    let target = RunningSidecar::start(target).await;
    let caller = RunningSidecar::start(config("health-caller", None, data.path())).await;
    let mut health = health_client_via(caller.grpc_address, "health-app", None).await;

    // Unary, through both sidecars: the request reaches the service and
    // its answers (an OK, a status of its own) come back.
    reporter
        .set_service_status("orders", ServingStatus::NotServing)
        .await;
    let answer = health.check(check("orders")).await.unwrap().into_inner();
    assert_eq!(answer.status(), Answered::NotServing);
    let unknown = health.check(check("no-such-service")).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");

    // The app saw the caller and callee ids, and no Dapr routing metadata.
    let metadata = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(metadata.get("dapr-caller-app-id").unwrap(), "health-caller");
    assert_eq!(metadata.get("dapr-callee-app-id").unwrap(), "health-app");
    for hidden in ["dapr-app-id", "dapr-api-token", "dapr-wasm-proxied"] {
        assert!(metadata.get(hidden).is_none(), "{hidden} reached the app");
    }

    // Server streaming: the first status, then a change as it happens.
    let mut updates = health.watch(check("orders")).await.unwrap().into_inner();
    let first = updates.message().await.unwrap().unwrap();
    assert_eq!(first.status(), Answered::NotServing);
    reporter
        .set_service_status("orders", ServingStatus::Serving)
        .await;
    let next = updates.message().await.unwrap().unwrap();
    assert_eq!(next.status(), Answered::Serving);
    drop(updates);

    // A call to the sidecar's own app goes straight to it.
    let mut own = health_client_via(target.grpc_address, "health-app", None).await;
    let answer = own.check(check("orders")).await.unwrap().into_inner();
    assert_eq!(answer.status(), Answered::Serving);
    let metadata = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(metadata.get("dapr-caller-app-id").unwrap(), "health-app");

    // No app id, or an unknown one: clear statuses, and the sidecar goes on.
    let channel = Channel::from_shared(format!("http://{}", caller.grpc_address))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let no_id = HealthClient::new(channel)
        .check(check(""))
        .await
        .unwrap_err();
    assert_eq!(no_id.code(), tonic::Code::Unimplemented, "{no_id:?}");
    assert!(no_id.message().contains("dapr-app-id"), "{no_id:?}");
    let mut nowhere = health_client_via(caller.grpc_address, "no-such-app", None).await;
    let not_found = nowhere.check(check("")).await.unwrap_err();
    assert_eq!(not_found.code(), tonic::Code::NotFound, "{not_found:?}");
    assert!(
        not_found.message().contains("app id not found"),
        "{not_found:?}"
    );
    let answer = health.check(check("orders")).await.unwrap().into_inner();
    assert_eq!(answer.status(), Answered::Serving);
    caller.stop().await;
    target.stop().await;
}

#[tokio::test]
async fn proxied_grpc_calls_need_the_api_token_and_the_app_gets_its_own() {
    let data = tempfile::tempdir().unwrap();
    let (app, _reporter, seen) = start_health_service().await;
    let with_tokens = |id: &str, port: Option<u16>| {
        let mut config = config(id, port, data.path());
        config.api_token = Some("secret".into());
        config
    };
    let mut target = with_tokens("guarded-app", Some(app.port()));
    target.app_protocol = AppProtocol::Grpc;
    target.app_api_token = Some("app-secret".into());
    let target = RunningSidecar::start(target).await;
    let caller = RunningSidecar::start(with_tokens("guarded-caller", None)).await;

    for token in [None, Some("wrong")] {
        let mut health = health_client_via(caller.grpc_address, "guarded-app", token).await;
        let refused = health.check(check("")).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{token:?}");
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "a refused call reached the app"
    );

    let mut health = health_client_via(caller.grpc_address, "guarded-app", Some("secret")).await;
    let answer = health.check(check("")).await.unwrap().into_inner();
    assert_eq!(answer.status(), Answered::Serving);
    let metadata = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(metadata.get("dapr-api-token").unwrap(), "app-secret");
    caller.stop().await;
    target.stop().await;
}

/// Health checks every 20 ms; one failure makes the app unhealthy.
fn quick_health_checks(path: &str) -> Option<AppHealthConfig> {
    Some(AppHealthConfig {
        path: path.into(),
        interval: Duration::from_millis(20),
        timeout: Duration::from_millis(500),
        threshold: 1,
    })
}

/// Invokes `app_id` through `sidecar` over HTTP until its answer is a 200
/// (`healthy`) or the sidecar's refusal of an unhealthy app.
async fn invoke_until(sidecar: &RunningSidecar, app_id: &str, healthy: bool) {
    let url = sidecar.url(&format!("/v1.0/invoke/{app_id}/method/orders"));
    let client = reqwest::Client::new();
    let what = if healthy {
        "the app is probed healthy and invoked"
    } else {
        "the sidecar refuses to invoke its unhealthy app"
    };
    test_support::wait_until(what, Duration::from_secs(10), || {
        let request = client.post(&url).send();
        async move {
            let response = request.await.unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap_or_default();
            let refused = status == 500
                && body["errorCode"] == "ERR_DIRECT_INVOKE"
                && body["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("app is not in a healthy state"));
            if healthy { status == 200 } else { refused }
        }
    })
    .await;
}

#[tokio::test]
async fn a_grpc_app_that_fails_its_health_check_gets_no_invocations_until_it_recovers() {
    let data = tempfile::tempdir().unwrap();
    let (app, healthy, _) = start_grpc_app().await;
    let mut target = config("probed-app", Some(app.port()), data.path());
    target.app_protocol = AppProtocol::Grpc;
    target.app_health = quick_health_checks("/healthz");
    let target = RunningSidecar::start(target).await;

    invoke_until(&target, "probed-app", true).await;
    let metadata = get_json(target.url("/v1.0/metadata")).await;
    let connection = &metadata["appConnectionProperties"];
    assert_eq!(connection["protocol"], "grpc");
    assert_eq!(connection["health"]["healthThreshold"], 1);

    healthy.store(false, Ordering::SeqCst);
    invoke_until(&target, "probed-app", false).await;
    // Over gRPC too.
    let mut dapr = DaprClient::connect(format!("http://{}", target.grpc_address))
        .await
        .unwrap();
    let status = dapr
        .invoke_service(crate::grpc::invoke("probed-app", "orders", b""))
        .await
        .unwrap_err();
    assert!(
        status.message().contains("not in a healthy state"),
        "{status:?}"
    );

    healthy.store(true, Ordering::SeqCst);
    invoke_until(&target, "probed-app", true).await;
    target.stop().await;
}

#[tokio::test]
async fn an_http_app_that_stops_answering_its_health_path_gets_no_invocations() {
    let data = tempfile::tempdir().unwrap();
    let (app, stop_app) = start_echo_app().await;
    let mut target = config("probed-http-app", Some(app.port()), data.path());
    // The echo app answers 200 on every path but /status/{code}.
    target.app_health = quick_health_checks("/healthz");
    let target = RunningSidecar::start(target).await;
    invoke_until(&target, "probed-http-app", true).await;
    let _ = stop_app.send(());
    invoke_until(&target, "probed-http-app", false).await;
    target.stop().await;
}

/// A gRPC app subscribes as daprd lets it: the sidecar reads its
/// subscriptions with `ListTopicSubscriptions` and delivers through
/// `OnTopicEvent` (each CloudEvent attribute in its field or in
/// `extensions`, the app's token as metadata) and, for a bulk
/// subscription, `OnBulkTopicEvent` (or `OnBulkTopicEventAlpha1` where the
/// app implements only that). SUCCESS, RETRY, DROP and
/// `UNIMPLEMENTED` decide as they do in daprd, and an event the app never
/// takes reaches the dead-letter topic's path.
#[tokio::test]
async fn a_grpc_app_subscribes_and_gets_events_through_app_callback() {
    let resources = TestResources::new();
    resources.add_in_memory_pubsub("bus");
    let (app, _, received) = start_grpc_app().await;
    let mut config = resources.config("grpc-sub", Some(app.port()));
    config.app_protocol = AppProtocol::Grpc;
    config.app_api_token = Some("app-secret".into());
    config.pubsub_retry = sidecar::args::RetryPolicy {
        max_retries: 2,
        backoff: Duration::from_millis(10),
    };
    let sidecar = RunningSidecar::start(config).await;
    sidecar.wait_subscribed(4).await;
    let metadata = get_json(sidecar.url("/v1.0/metadata")).await;
    let mut subscribed: Vec<(String, String)> = metadata["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["topic"].as_str().unwrap().to_string(),
                s["type"].to_string(),
            )
        })
        .collect();
    subscribed.sort();
    assert_eq!(
        subscribed,
        [
            ("batched".to_string(), "\"PROGRAMMATIC\"".to_string()),
            ("batched-alpha".into(), "\"PROGRAMMATIC\"".into()),
            ("orders".into(), "\"PROGRAMMATIC\"".into()),
            ("orders-dead".into(), "\"PROGRAMMATIC\"".into()),
        ]
    );

    let client = reqwest::Client::new();
    let publish = |topic: &str, content_type: &str, body: String| {
        client
            .post(sidecar.url(&format!("/v1.0/publish/bus/{topic}")))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    for (n, answer) in [
        (1, "success"),
        (2, "retry-once"),
        (3, "drop"),
        (4, "retry"),
        (5, "unimplemented"),
    ] {
        let body = json!({"n": n, "answer": answer}).to_string();
        let response = publish("orders", "application/json", body).await.unwrap();
        assert_eq!(response.status(), 204);
    }
    let response = publish("orders", "text/plain", "plain words".into())
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    for n in 0..12 {
        let answer = if n == 7 { "retry-once" } else { "success" };
        let body = json!({"n": n, "answer": answer}).to_string();
        let response = publish("batched", "application/json", body).await.unwrap();
        assert_eq!(response.status(), 204);
    }
    for n in 100..103 {
        let body = json!({ "n": n }).to_string();
        let response = publish("batched-alpha", "application/json", body)
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }

    // n=2 comes twice, n=4 three times (then to the dead-letter path);
    // everything else once.
    let deliveries = |n: i64| {
        received
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|(e, _)| {
                e.topic == "orders"
                    && serde_json::from_slice::<Value>(&e.data)
                        .ok()
                        .map(|d| d["n"].clone())
                        == Some(json!(n))
            })
            .count()
    };
    let dead_lettered = || {
        received
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|(e, _)| e.topic == "orders-dead")
            .map(|(e, _)| e.clone())
            .collect::<Vec<_>>()
    };
    let batched_entries = |topic: &str| {
        received
            .batches
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b.topic == topic)
            .map(|b| b.entries.len())
            .sum::<usize>()
    };
    test_support::wait_until(
        "every event has had its answer",
        Duration::from_secs(20),
        || {
            let done = deliveries(2) == 2
                && deliveries(4) == 3
                && dead_lettered().len() == 1
                && batched_entries("batched") == 13
                && batched_entries("batched-alpha") == 3;
            async move { done }
        },
    )
    .await;
    assert_eq!(
        [1, 3, 5].map(deliveries),
        [1, 1, 1],
        "SUCCESS, DROP and UNIMPLEMENTED are not retried"
    );

    let events = received.events.lock().unwrap().clone();
    let (first, token) = events
        .iter()
        .find(|(e, _)| e.topic == "orders")
        .unwrap()
        .clone();
    assert_eq!(token.as_deref(), Some("app-secret"));
    assert!(!first.id.is_empty());
    assert_eq!(
        (
            first.source.as_str(),
            first.r#type.as_str(),
            first.spec_version.as_str(),
            first.data_content_type.as_str(),
            first.pubsub_name.as_str(),
            first.path.as_str(),
        ),
        (
            "grpc-sub",
            "com.dapr.event.sent",
            "1.0",
            "application/json",
            "bus",
            ""
        )
    );
    let data: Value = serde_json::from_slice(&first.data).unwrap();
    assert_eq!(data, json!({"n": 1, "answer": "success"}));
    let extensions = first.extensions.unwrap().fields;
    for name in ["topic", "pubsubname", "traceid", "traceparent", "time"] {
        assert!(extensions.contains_key(name), "no {name} in {extensions:?}");
    }
    for name in ["id", "data", "specversion", "datacontenttype"] {
        assert!(!extensions.contains_key(name), "{name} in extensions");
    }
    let plain = events
        .iter()
        .find(|(e, _)| e.data_content_type == "text/plain")
        .unwrap();
    assert_eq!(plain.0.data, b"plain words");

    let dead = &dead_lettered()[0];
    assert_eq!(dead.path, "dead");
    assert_eq!(serde_json::from_slice::<Value>(&dead.data).unwrap()["n"], 4);

    let batches = received.batches.lock().unwrap().clone();
    use pb::topic_event_bulk_request_entry::Event;
    let mut ns = Vec::new();
    for batch in &batches {
        if batch.topic == "batched-alpha" {
            // Answered by `OnBulkTopicEventAlpha1`, after `OnBulkTopicEvent`
            // said UNIMPLEMENTED.
            assert_eq!(batch.path, "/alpha");
            continue;
        }
        assert!(
            batch.entries.len() <= 5,
            "a batch of {}",
            batch.entries.len()
        );
        assert_eq!(
            (
                batch.path.as_str(),
                batch.topic.as_str(),
                batch.pubsub_name.as_str(),
                batch.r#type.as_str()
            ),
            ("/batched", "batched", "bus", "com.dapr.event.sent.bulk")
        );
        for entry in &batch.entries {
            let Some(Event::CloudEvent(event)) = &entry.event else {
                panic!("{entry:?}");
            };
            assert_eq!(event.data_content_type, "application/json");
            let data: Value = serde_json::from_slice(&event.data).unwrap();
            ns.push(data["n"].as_i64().unwrap());
        }
    }
    ns.sort();
    let mut expected: Vec<i64> = (0..12).collect();
    expected.push(7);
    expected.sort();
    assert_eq!(ns, expected, "each batched event once, n=7 twice");

    // The sidecar goes on serving.
    let health = client
        .get(sidecar.url("/v1.0/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 204);
    sidecar.stop().await;
}

/// A gRPC app gets the events of the input bindings its
/// `ListInputBindings` names, and of those declared `direction: input`,
/// through `OnBindingEvent`; not those of the others.
#[tokio::test]
async fn a_grpc_app_gets_the_input_binding_events_it_lists() {
    let (app, _, received) = start_grpc_app().await;
    let resources = TestResources::new();
    let dir = resources.resources.path();
    let every_second = ("schedule", "@every 1s");
    super::state::component_file(dir, "tick", "bindings.cron", &[every_second]);
    super::state::component_file(dir, "unlisted", "bindings.cron", &[every_second]);
    super::state::component_file(
        dir,
        "declared",
        "bindings.cron",
        &[every_second, ("direction", "input")],
    );
    let mut config = resources.config("grpc-cron-app", Some(app.port()));
    config.app_protocol = AppProtocol::Grpc;
    config.app_api_token = Some("app-secret".into());
    let sidecar = RunningSidecar::start(config).await;
    let names = |received: &Received| {
        received
            .binding_events
            .lock()
            .unwrap()
            .iter()
            .map(|(event, _)| event.name.clone())
            .collect::<Vec<_>>()
    };
    test_support::wait_until(
        "three ticks and a declared event",
        Duration::from_secs(30),
        || async {
            let names = names(&received);
            names.iter().filter(|n| *n == "tick").count() >= 3
                && names.iter().any(|n| n == "declared")
        },
    )
    .await;
    // `unlisted` fires every second too: three ticks are more than that.
    assert!(!names(&received).contains(&"unlisted".to_string()));
    let (event, token) = received.binding_events.lock().unwrap()[0].clone();
    assert!(event.data.is_empty());
    assert_eq!(event.metadata["timeZone"], "Local");
    assert!(event.metadata["readTimeUTC"].ends_with(" +0000 UTC"));
    assert_eq!(token.as_deref(), Some("app-secret"));
    sidecar.stop().await;
}
