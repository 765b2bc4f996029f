//! A gRPC app (`--app-protocol grpc`): a real tonic `AppCallback` server,
//! invoked by app id from an HTTP caller and from a gRPC caller, each
//! through two sidecars.

use std::net::SocketAddr;

use dapr::dapr::proto::common::v1 as common;
use dapr::dapr::proto::common::v1::http_extension::Verb;
use dapr::dapr::proto::runtime::v1 as pb;
use dapr::dapr::proto::runtime::v1::app_callback_server::{AppCallback, AppCallbackServer};
use dapr::dapr::proto::runtime::v1::dapr_client::DaprClient;
use serde_json::{Value, json};
use sidecar::args::AppProtocol;
use test_support::sidecar::*;
use tonic::{Request, Response, Status};

/// Answers `OnInvoke` with JSON describing what it received; every other
/// callback is not used by these tests.
struct EchoApp;

#[tonic::async_trait]
impl AppCallback for EchoApp {
    async fn on_invoke(
        &self,
        request: Request<common::InvokeRequest>,
    ) -> Result<Response<common::InvokeResponse>, Status> {
        let token = request
            .metadata()
            .get("dapr-api-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let invoke = request.into_inner();
        if invoke.method == "fail" {
            return Err(Status::failed_precondition("the app said no"));
        }
        let extension = invoke.http_extension.unwrap_or_default();
        let echo = json!({
            "method": invoke.method,
            "verb": extension.verb().as_str_name(),
            "query": extension.querystring,
            "content_type": invoke.content_type,
            "body": String::from_utf8_lossy(&invoke.data.map(|d| d.value).unwrap_or_default()),
            "token": token,
        });
        Ok(Response::new(common::InvokeResponse {
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: echo.to_string().into_bytes(),
            }),
            content_type: "application/json".into(),
        }))
    }

    async fn list_topic_subscriptions(
        &self,
        _: Request<()>,
    ) -> Result<Response<pb::ListTopicSubscriptionsResponse>, Status> {
        Ok(Response::new(Default::default()))
    }

    async fn on_topic_event(
        &self,
        _: Request<pb::TopicEventRequest>,
    ) -> Result<Response<pb::TopicEventResponse>, Status> {
        Err(Status::unimplemented("OnTopicEvent"))
    }

    async fn list_input_bindings(
        &self,
        _: Request<()>,
    ) -> Result<Response<pb::ListInputBindingsResponse>, Status> {
        Ok(Response::new(Default::default()))
    }

    async fn on_binding_event(
        &self,
        _: Request<pb::BindingEventRequest>,
    ) -> Result<Response<pb::BindingEventResponse>, Status> {
        Err(Status::unimplemented("OnBindingEvent"))
    }

    async fn on_bulk_topic_event(
        &self,
        _: Request<pb::TopicEventBulkRequest>,
    ) -> Result<Response<pb::TopicEventBulkResponse>, Status> {
        Err(Status::unimplemented("OnBulkTopicEvent"))
    }

    async fn on_job_event(
        &self,
        _: Request<pb::JobEventRequest>,
    ) -> Result<Response<pb::JobEventResponse>, Status> {
        Err(Status::unimplemented("OnJobEvent"))
    }
}

/// Starts the gRPC app on a port of its own; returns its address.
async fn start_grpc_app() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AppCallbackServer::new(EchoApp))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    address
}

/// The gRPC app behind its sidecar (`grpc-app`), and a caller's sidecar.
async fn start_pair(data: &std::path::Path) -> (RunningSidecar, RunningSidecar) {
    let app = start_grpc_app().await;
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
    let response = reqwest::Client::new()
        .put(caller.url("/v1.0/invoke/grpc-app/method/orders/new?x=1"))
        .header("content-type", "text/plain")
        .body("hello grpc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
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
        })
    );

    // The app's error: a clear 500, and the sidecars go on.
    let failed = reqwest::Client::new()
        .post(caller.url("/v1.0/invoke/grpc-app/method/fail"))
        .send()
        .await
        .unwrap();
    let message = assert_dapr_error(failed, 500, "ERR_DIRECT_INVOKE").await;
    assert!(message.contains("the app said no"), "{message}");
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
    let answer = dapr
        .invoke_service(pb::InvokeServiceRequest {
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
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.content_type, "application/json");
    let echo: Value = serde_json::from_slice(&answer.data.unwrap().value).unwrap();
    assert_eq!(echo["method"], "orders");
    assert_eq!(echo["verb"], "POST");
    assert_eq!(echo["query"], "page=2");
    assert_eq!(echo["body"], "{\"n\":1}");
    caller.stop().await;
    target.stop().await;
}
