//! A Dapr-compatible sidecar: the same HTTP API, flags, env vars and
//! component YAML as daprd, for running Dapr apps on one machine without
//! Dapr.
//!
//! `dapr-wasm sidecar --app-id web-port --app-port 8080 --dapr-http-port 3500`
//! serves the HTTP API on `127.0.0.1:3500` and the gRPC API on
//! `127.0.0.1:50001` (`--dapr-grpc-port`), registers `web-port` in the
//! machine's name registry, and forwards invocations of `web-port` to the
//! app.
//!
//! # How a request moves through the sidecar
//!
//! Over HTTP, [`app`] routes it; the token layer ([`require_api_token`])
//! rejects it if `DAPR_API_TOKEN` is set and the request lacks it (the two
//! health checks excepted); then one of the API modules serves it. Over
//! gRPC, [`grpc`] does the same with an interceptor. Both doors call one
//! implementation of each building block on [`Sidecar`] (its stores,
//! registry and HTTP client). Errors are [`error::DaprError`]s: Dapr's
//! `{errorCode, message}` over HTTP, a status with `ErrorInfo` over gRPC.
//!
//! # Layout
//!
//! - [`actors`]: virtual actors: hosting, placement, calls, actor state,
//!   timers and reminders.
//! - [`app_health`]: probing the app (`--enable-app-health-check`).
//! - [`app_channel`]: the sidecar's own requests to its app (events,
//!   binding probes), while the app is healthy.
//! - [`args`]: flags and env vars → [`SidecarConfig`].
//! - [`bindings`]: binding components: `bindings.wasm` on the function
//!   host, `bindings.http`, `bindings.localstorage`,
//!   `bindings.postgresql`, `bindings.mysql`, `bindings.redis`,
//!   `bindings.rabbitmq`, `bindings.mqtt3`.
//! - [`components`]: component YAML files.
//! - [`configuration`]: the configuration API and its stores.
//! - [`grpc`]: the gRPC API (`dapr.proto.runtime.v1.Dapr`).
//! - [`input_bindings`]: input bindings triggering the app
//!   (`bindings.cron`, `bindings.rabbitmq`, `bindings.mqtt3`).
//! - [`http_endpoints`]: invoking non-Dapr endpoints (`HTTPEndpoint`
//!   resources, URL app ids).
//! - [`invoke`]: service invocation, local and through peer sidecars.
//! - [`jobs`]: the jobs API, its store (`jobs.db`) and its triggers.
//! - [`lock`]: the distributed lock API and its stores.
//! - [`nameres`]: the SQLite registry of app ids.
//! - [`pubsub`]: publishing, subscriptions, delivery, and the brokers.
//! - [`state`]: the state building block ([`state::ops`]), its HTTP API and
//!   its stores.
//! - [`secrets`]: the local secret stores (file, env) and the secrets API.
//! - [`metadata`]: metadata and health.
//! - [`metrics`]: daprd's Prometheus metrics, on `--metrics-port`.
//! - [`workflows`]: Dapr workflows: the Durable Task protocol the
//!   workflow SDKs' workers and clients speak, the engine, and Dapr's
//!   workflow API.
//! - [`error`]: the one table of statuses and error codes.
//! - `proto_json`: JSON and `google.protobuf.Value`, both ways.
//! - `redis_conn`, `rabbitmq_conn`: the connections the Redis and RabbitMQ
//!   components share, and how each comes back after it is lost.

pub mod actors;
mod app_channel;
pub mod app_health;
pub mod args;
pub mod bindings;
pub mod components;
pub mod configuration;
pub mod error;
pub mod grpc;
pub mod http_endpoints;
mod ids;
pub mod input_bindings;
pub mod invoke;
pub mod jobs;
pub mod lock;
pub mod metadata;
pub mod metrics;
pub mod nameres;
mod proto_json;
pub mod pubsub;
mod rabbitmq_conn;
mod redis_conn;
pub mod secrets;
mod sqlite_file;
pub mod state;
pub mod workflows;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use service_kit::trace::Tracer;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

pub use args::{SidecarArgs, SidecarConfig};

use dapr::dapr::proto::runtime::v1::app_callback_alpha_client::AppCallbackAlphaClient;
use dapr::dapr::proto::runtime::v1::app_callback_client::AppCallbackClient;
use dapr::dapr::proto::runtime::v1::app_callback_health_check_client::AppCallbackHealthCheckClient;

use crate::components::Component;
use crate::error::DaprError;
use crate::nameres::Registry;
use crate::secrets::SecretStore;
use crate::state::StateStore;

/// Milliseconds since the Unix epoch (0 if the clock is before it): the
/// time base of TTLs and registry heartbeats.
pub(crate) fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A component as `GET /v1.0/metadata` lists it.
#[derive(Debug, Clone)]
pub struct ComponentInfo {
    /// Its name.
    pub name: String,
    /// Its Dapr type, e.g. `state.sqlite`.
    pub component_type: String,
    /// Its version, e.g. `v1`.
    pub version: String,
    /// What it supports, as daprd lists it.
    pub capabilities: Vec<&'static str>,
}

/// Everything the sidecar's handlers share.
pub struct Sidecar {
    config: SidecarConfig,
    stores: HashMap<String, Arc<dyn StateStore>>,
    secret_stores: HashMap<String, SecretStore>,
    components: Vec<ComponentInfo>,
    /// Non-Dapr endpoints invoked like apps ([`http_endpoints`]).
    http_endpoints: http_endpoints::HttpEndpoints,
    registry: Registry,
    client: Client<HttpConnector, Body>,
    /// HTTP/2 without TLS: proxied gRPC calls, to the app or a peer.
    h2_client: Client<HttpConnector, Body>,
    extended: Mutex<HashMap<String, String>>,
    /// The app's `AppCallback` service, when `--app-protocol grpc`.
    app_callback: Option<AppCallbackClient<tonic::transport::Channel>>,
    /// The same connection as a plain gRPC client, for `OnInvoke`, whose
    /// answer's trailers the generated client would merge into its
    /// metadata ([`invoke`]).
    app_on_invoke: Option<tonic::client::Grpc<tonic::transport::Channel>>,
    /// Its `AppCallbackAlpha` service (bulk events to apps written
    /// against daprd's older API).
    app_callback_alpha: Option<AppCallbackAlphaClient<tonic::transport::Channel>>,
    /// The app's `AppCallbackHealthCheck` service, when `--app-protocol grpc`.
    app_health_client: Option<AppCallbackHealthCheckClient<tonic::transport::Channel>>,
    /// Whether the app may be sent work ([`app_health`]).
    app_healthy: tokio::sync::watch::Sender<bool>,
    /// Lock components by name.
    locks: HashMap<String, lock::LockComponent>,
    /// Configuration stores by name.
    configurations: HashMap<String, Box<dyn configuration::ConfigurationStore>>,
    /// The configuration subscriptions open now.
    configuration_subscriptions: configuration::Subscriptions,
    /// Pub/sub components by name.
    pubsubs: HashMap<String, pubsub::PubsubComponent>,
    /// The `Subscription` documents for this app.
    declarative: Vec<pubsub::subscriptions::Subscription>,
    /// The subscriptions being consumed now.
    subscriptions: Mutex<Vec<pubsub::subscriptions::Subscription>>,
    /// The streaming subscriptions open now ([`pubsub::streaming`]).
    streams: Mutex<Vec<pubsub::subscriptions::Subscription>>,
    /// `--app-max-concurrency`, when set.
    app_slots: Option<Arc<tokio::sync::Semaphore>>,
    /// Set by the gRPC `Shutdown` call; both servers stop on it.
    shutdown_requested: tokio::sync::watch::Sender<bool>,
    /// The `bindings.wasm` components, when there are any (for their
    /// reloading and metrics; they are called through `output_bindings`).
    bindings: Option<Arc<bindings::WasmBindings>>,
    /// The output bindings by name ([`bindings`]).
    output_bindings: HashMap<String, Arc<dyn bindings::OutputBinding>>,
    /// The input bindings ([`input_bindings`]).
    input_bindings: Vec<input_bindings::InputBindingComponent>,
    /// Its Prometheus metrics.
    metrics: Arc<metrics::Metrics>,
    /// Its span recorder (spans named for the app id, as daprd's).
    tracer: Tracer,
    /// The jobs its app scheduled ([`jobs`]).
    jobs: jobs::JobStore,
    /// Its actor runtime ([`actors`]).
    actors: actors::Actors,
    /// Its app's workflows ([`workflows`]).
    workflows: workflows::Workflows,
}

impl Sidecar {
    /// Loads the components and opens the stores and the name registry.
    pub async fn new(config: SidecarConfig) -> anyhow::Result<Self> {
        let components = if config.resources_paths.is_empty() {
            vec![default_state_store()]
        } else {
            components::load(&config.resources_paths, &config.app_id)?
        };
        let metrics = Arc::new(
            metrics::Metrics::new(&config.app_id, config.metrics_port.is_some())
                .context("cannot set up the metrics")?,
        );
        let tracer = Tracer::start(&config.tracing, &config.app_id)?;
        let mut stores: HashMap<String, Arc<dyn StateStore>> = HashMap::new();
        let mut secret_stores = HashMap::new();
        let mut pubsubs = HashMap::new();
        let mut locks = HashMap::new();
        let mut configurations = HashMap::new();
        let mut infos = Vec::new();
        let mut wasm_bindings = Vec::new();
        let mut inputs = Vec::new();
        let mut output_bindings: HashMap<String, Arc<dyn bindings::OutputBinding>> = HashMap::new();
        let actor_state_store = actor_state_store(&components, config.resources_paths.is_empty())?;
        for component in &components {
            let name = component.metadata.name.clone();
            let mut component_type = component.spec.component_type.clone();
            let capabilities = if component_type.starts_with("state.") {
                let store = state::open(component, &config.data_dir).await?;
                stores.insert(name.clone(), Arc::from(store));
                vec!["ETAG", "TRANSACTIONAL", "TTL"]
            } else if component_type.starts_with("pubsub.") {
                let pubsub = pubsub::PubsubComponent::open_or_embedded(
                    component,
                    &config.app_id,
                    &config.data_dir,
                    config.embedded_pubsub_fallback,
                )
                .await
                .map_err(|e| anyhow::anyhow!("pub/sub `{name}`: {e}"))?;
                component_type = pubsub.component_type.clone();
                pubsubs.insert(name.clone(), pubsub);
                vec![]
            } else if component_type.starts_with("lock.") {
                let opened = lock::open(component, &config.app_id)
                    .await
                    .map_err(|e| anyhow::anyhow!("lock store `{name}` ({component_type}): {e}"))?;
                locks.insert(name.clone(), opened);
                vec![]
            } else if component_type.starts_with("configuration.") {
                let opened = configuration::open(component).await.map_err(|e| {
                    anyhow::anyhow!("configuration store `{name}` ({component_type}): {e}")
                })?;
                configurations.insert(name.clone(), opened);
                vec![]
            } else if component_type == bindings::WASM_BINDING {
                wasm_bindings.push(component.clone());
                vec!["OUTPUT_BINDING"]
            } else if bindings::BINDING_TYPES.contains(&component_type.as_str()) {
                let opened = bindings::open(component)
                    .await
                    .map_err(|e| anyhow::anyhow!("binding `{name}` ({component_type}): {e}"))?;
                let mut capabilities = Vec::new();
                if let Some(input) = opened.input {
                    inputs.push(input_bindings::InputBindingComponent::new(component, input));
                    capabilities.push("INPUT_BINDING");
                }
                if let Some(output) = opened.output {
                    output_bindings.insert(name.clone(), output);
                    capabilities.push("OUTPUT_BINDING");
                }
                capabilities
            } else if secrets::SECRET_STORE_TYPES.contains(&component_type.as_str()) {
                let store = SecretStore::open(component)
                    .map_err(|e| anyhow::anyhow!("secret store `{name}`: {e}"))?;
                secret_stores.insert(name.clone(), store);
                vec![]
            } else {
                tracing::warn!(component = %name, %component_type, "component type not supported; skipped");
                continue;
            };
            tracing::info!(component = %name, %component_type, "component loaded");
            metrics.component_loaded();
            infos.push(ComponentInfo {
                name,
                component_type,
                version: component.spec.version.clone(),
                capabilities,
            });
        }
        let bindings = if wasm_bindings.is_empty() {
            None
        } else {
            let max_input = config.max_body_size;
            let fetched = bindings::fetch_remote(&wasm_bindings, &config.data_dir.join("bindings"))
                .await
                .map_err(anyhow::Error::msg)?;
            let loaded = tokio::task::spawn_blocking(move || {
                bindings::WasmBindings::load(&wasm_bindings, &fetched, max_input)
            })
            .await
            .context("loading the wasm bindings panicked")?
            .map_err(anyhow::Error::msg)?;
            let loaded = Arc::new(loaded);
            for component in &components {
                if component.spec.component_type == bindings::WASM_BINDING {
                    let name = component.metadata.name.clone();
                    let binding = bindings::wasm::WasmBinding {
                        name: name.clone(),
                        bindings: loaded.clone(),
                    };
                    output_bindings.insert(name, Arc::new(binding));
                }
            }
            Some(loaded)
        };
        let http_endpoints = http_endpoints::HttpEndpoints::load(
            &config.resources_paths,
            &config.app_id,
            &secret_stores,
        )?;
        let declarative =
            pubsub::subscriptions::load_declarative(&config.resources_paths, &config.app_id)?;
        let registry = Registry::open(&config.data_dir.join("nameres.db"), nameres::DEFAULT_TTL)?;
        let jobs = jobs::JobStore::open(&config.data_dir.join("jobs.db"))
            .context("cannot open the jobs store")?;
        let app_channel = match (config.app_protocol, config.app_port) {
            (args::AppProtocol::Grpc, Some(port)) => Some(
                // Connected on first use, like the HTTP client's pool.
                tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?
                    .connect_timeout(std::time::Duration::from_secs(5))
                    .connect_lazy(),
            ),
            _ => None,
        };
        let app_callback = app_channel.clone().map(|channel| {
            AppCallbackClient::new(channel).max_decoding_message_size(config.max_body_size)
        });
        let app_on_invoke = app_channel.clone().map(|channel| {
            tonic::client::Grpc::new(channel).max_decoding_message_size(config.max_body_size)
        });
        let app_callback_alpha = app_channel.clone().map(|channel| {
            AppCallbackAlphaClient::new(channel).max_decoding_message_size(config.max_body_size)
        });
        let app_health_client = app_channel.map(AppCallbackHealthCheckClient::new);
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .build(connector.clone());
        let h2_client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .build(connector);
        let app_healthy = tokio::sync::watch::Sender::new(config.app_health.is_none());
        let app_slots = config
            .app_max_concurrency
            .map(|n| Arc::new(tokio::sync::Semaphore::new(n)));
        Ok(Sidecar {
            config,
            stores,
            secret_stores,
            components: infos,
            http_endpoints,
            registry,
            client,
            h2_client,
            extended: Mutex::new(HashMap::new()),
            app_callback,
            app_on_invoke,
            app_callback_alpha,
            app_health_client,
            app_healthy,
            locks,
            configurations,
            configuration_subscriptions: configuration::Subscriptions::default(),
            pubsubs,
            declarative,
            subscriptions: Mutex::new(Vec::new()),
            streams: Mutex::new(Vec::new()),
            app_slots,
            shutdown_requested: tokio::sync::watch::Sender::new(false),
            bindings,
            output_bindings,
            input_bindings: inputs,
            metrics,
            tracer,
            jobs,
            actors: actors::Actors::new(actor_state_store),
            workflows: workflows::Workflows::default(),
        })
    }

    /// Its span recorder.
    pub fn tracer(&self) -> &Tracer {
        &self.tracer
    }

    /// The configuration.
    pub fn config(&self) -> &SidecarConfig {
        &self.config
    }

    /// Its metrics.
    pub fn metrics(&self) -> &Arc<metrics::Metrics> {
        &self.metrics
    }

    /// The name registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Asks the sidecar to stop (what the gRPC `Shutdown` call does).
    pub fn request_shutdown(&self) {
        self.shutdown_requested.send_replace(true);
    }

    /// Completes once [`Sidecar::request_shutdown`] has been called.
    pub(crate) async fn shutdown_was_requested(&self) {
        let mut requested = self.shutdown_requested.subscribe();
        let _ = requested.wait_for(|&stop| stop).await;
    }
}

/// With no `--resources-path`: an SQLite store named `statestore` in the
/// data directory, as `dapr init` gives a Redis one.
fn default_state_store() -> Component {
    serde_yaml::from_str(
        "kind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.sqlite\n  version: v1\n",
    )
    .expect("the built-in component is valid YAML")
}

/// The state store actors keep their state in: the one component marked
/// `actorStateStore: "true"`, or the built-in store (`builtin`), as `dapr
/// init`'s is marked. Two marked stores are an error, as in daprd.
fn actor_state_store(components: &[Component], builtin: bool) -> anyhow::Result<Option<String>> {
    if builtin {
        return Ok(components.first().map(|c| c.metadata.name.clone()));
    }
    let marked: Vec<&str> = components
        .iter()
        .filter(|c| c.spec.component_type.starts_with("state."))
        .filter(|c| {
            c.properties().iter().any(|(k, v)| {
                k.eq_ignore_ascii_case("actorStateStore") && v.trim().eq_ignore_ascii_case("true")
            })
        })
        .map(|c| c.metadata.name.as_str())
        .collect();
    match marked.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.to_string())),
        many => anyhow::bail!(
            "more than one state store is marked actorStateStore: \"true\" ({}); mark one",
            many.join(", ")
        ),
    }
}

/// `metadata.X=Y` query parameters as `X → Y`: the metadata a request
/// passes to a component, as daprd reads it.
pub(crate) fn query_metadata(
    query: impl IntoIterator<Item = (String, String)>,
) -> HashMap<String, String> {
    query
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("metadata.").map(|k| (k.to_string(), v)))
        .collect()
}

/// The sidecar's router.
pub fn app(sidecar: Arc<Sidecar>) -> Router {
    let max_body = sidecar.config.max_body_size;
    Router::new()
        .route(
            "/v1.0/invoke/{app_id}/method/{*method}",
            any(invoke::invoke_by_path),
        )
        .route(
            &format!("{}/{{app_id}}/{{*method}}", invoke::INTERNAL_PREFIX),
            any(invoke::invoke_from_peer),
        )
        .route(
            "/v1.0/actors/{actor_type}/{actor_id}/method/{*method}",
            any(actors::api::invoke),
        )
        .route(
            &format!(
                "{}/{{actor_type}}/{{actor_id}}/method/{{*method}}",
                actors::INTERNAL_PREFIX
            ),
            put(actors::api::invoke_from_peer),
        )
        .route(
            "/v1.0/actors/{actor_type}/{actor_id}/state",
            post(actors::api::state_transaction).put(actors::api::state_transaction),
        )
        .route(
            "/v1.0/actors/{actor_type}/{actor_id}/state/{key}",
            get(actors::api::state_get),
        )
        .route(
            "/v1.0/actors/{actor_type}/{actor_id}/reminders/{name}",
            post(actors::api::reminder_create)
                .put(actors::api::reminder_create)
                .get(actors::api::reminder_get)
                .delete(actors::api::reminder_delete),
        )
        .route(
            "/v1.0/actors/{actor_type}/{actor_id}/timers/{name}",
            post(actors::api::timer_create)
                .put(actors::api::timer_create)
                .delete(actors::api::timer_delete),
        )
        .route("/v1.0/state/{store}", post(state::api::state_save))
        .route("/v1.0/state/{store}/bulk", post(state::api::state_bulk_get))
        .route(
            "/v1.0/state/{store}/transaction",
            post(state::api::state_transaction),
        )
        .route(
            "/v1.0/state/{store}/{key}",
            get(state::api::state_get).delete(state::api::state_delete),
        )
        // A topic may have levels (`fleet/truck-7`), as daprd's `{topic:*}`.
        .route(
            "/v1.0/publish/{pubsub}/{*topic}",
            post(pubsub::api::publish).put(pubsub::api::publish),
        )
        .route(
            "/v1.0-alpha1/publish/bulk/{pubsub}/{*topic}",
            post(pubsub::api::publish_bulk).put(pubsub::api::publish_bulk),
        )
        .route(
            "/v1.0/bindings/{name}",
            post(bindings::invoke_http).put(bindings::invoke_http),
        )
        .route(
            "/v1.0/configuration/{store}",
            get(configuration::api::get_configuration),
        )
        .route(
            "/v1.0-alpha1/configuration/{store}",
            get(configuration::api::get_configuration),
        )
        .route(
            "/v1.0/configuration/{store}/subscribe",
            get(configuration::api::subscribe_configuration),
        )
        .route(
            "/v1.0-alpha1/configuration/{store}/subscribe",
            get(configuration::api::subscribe_configuration),
        )
        .route(
            "/v1.0/configuration/{store}/{id}/unsubscribe",
            get(configuration::api::unsubscribe_configuration),
        )
        .route(
            "/v1.0-alpha1/configuration/{store}/{id}/unsubscribe",
            get(configuration::api::unsubscribe_configuration),
        )
        .route(
            "/v1.0/jobs/{name}",
            post(jobs::api::schedule)
                .get(jobs::api::get)
                .delete(jobs::api::delete),
        )
        .route(
            "/v1.0-alpha1/jobs/{name}",
            post(jobs::api::schedule)
                .get(jobs::api::get)
                .delete(jobs::api::delete),
        )
        .route("/v1.0-alpha1/lock/{store}", post(lock::api::try_lock))
        .route("/v1.0-alpha1/unlock/{store}", post(lock::api::unlock))
        .route("/v1.0/secrets/{store}/bulk", get(secrets::secret_bulk))
        .route("/v1.0/secrets/{store}/{name}", get(secrets::secret_get))
        .route("/v1.0/metadata", get(metadata::metadata_get))
        .route("/v1.0/metadata/{key}", put(metadata::metadata_put))
        .route("/v1.0/healthz", get(metadata::healthz))
        .route("/v1.0/healthz/outbound", get(metadata::healthz))
        .merge(workflows_routes())
        .fallback(invoke::invoke_by_header_or_not_found)
        .layer(middleware::from_fn(service_kit::error_body::json_errors))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            sidecar.clone(),
            require_api_token,
        ))
        .layer(middleware::from_fn_with_state(
            sidecar.clone(),
            metrics::record_http,
        ))
        .layer(middleware::from_fn_with_state(
            sidecar.tracer.clone(),
            service_kit::trace::trace_request,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(sidecar)
}

/// Dapr's workflow API, under each of the versions daprd serves it.
fn workflows_routes() -> Router<Arc<Sidecar>> {
    use workflows::api;
    let mut router = Router::new();
    for version in ["v1.0", "v1.0-beta1", "v1.0-alpha1"] {
        let base = format!("/{version}/workflows/{{component}}/{{id}}");
        router = router
            .route(&base, get(api::http_get))
            .route(&format!("{base}/start"), post(api::http_start))
            .route(
                &format!("{base}/raiseEvent/{{event}}"),
                post(api::http_raise_event),
            )
            .route(&format!("{base}/{{operation}}"), post(api::http_operation));
    }
    router
}

/// With `DAPR_API_TOKEN` set, every request but the two health checks needs
/// the `dapr-api-token` header.
pub async fn require_api_token(
    State(sidecar): State<Arc<Sidecar>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(expected) = &sidecar.config.api_token {
        let given = request
            .headers()
            .get("dapr-api-token")
            .and_then(|v| v.to_str().ok());
        if !is_open_health_check(&request) && given != Some(expected.as_str()) {
            return DaprError::Unauthorized.into_response();
        }
    }
    next.run(request).await
}

/// Whether `request` is one of the two calls daprd answers without a token:
/// exactly `GET /v1.0/healthz` and `GET /v1.0/healthz/outbound`. The path
/// is compared as sent (no decoding, no prefix match), so no other route,
/// and in particular no header-routed invocation, can pass for one.
fn is_open_health_check(request: &Request) -> bool {
    request.method() == axum::http::Method::GET
        && matches!(
            request.uri().path(),
            "/v1.0/healthz" | "/v1.0/healthz/outbound"
        )
}

/// The sockets a sidecar serves on, bound before it starts (tests bind
/// port 0 and read the ports back).
pub struct SidecarListeners {
    /// The HTTP API.
    pub http: TcpListener,
    /// The gRPC API.
    pub grpc: TcpListener,
    /// `GET /metrics`, unless metrics are off.
    pub metrics: Option<TcpListener>,
}

impl SidecarListeners {
    /// Binds `--dapr-http-port`, `--dapr-grpc-port` and `--metrics-port`
    /// on `--bind`.
    pub async fn bind(config: &SidecarConfig) -> anyhow::Result<SidecarListeners> {
        let bind = |port: u16| async move {
            let address = SocketAddr::new(config.bind, port);
            TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address}"))
        };
        let metrics = match config.metrics_port {
            Some(port) => Some(
                bind(port)
                    .await
                    .context("the metrics port (--metrics-port)")?,
            ),
            None => None,
        };
        Ok(SidecarListeners {
            http: bind(config.dapr_http_port).await?,
            grpc: bind(config.dapr_grpc_port).await?,
            metrics,
        })
    }
}

/// Runs a sidecar: binds its ports, then [`run_on`].
pub async fn run(
    config: SidecarConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listeners = SidecarListeners::bind(&config).await?;
    let sidecar = Sidecar::new(config).await?;
    run_on(listeners, Arc::new(sidecar), shutdown).await
}

/// Serves `sidecar` on `listeners`: registers its app id at the HTTP
/// listener's address, heartbeats, serves HTTP and gRPC until `shutdown`
/// (or a gRPC `Shutdown` call), then deregisters.
pub async fn run_on(
    listeners: SidecarListeners,
    sidecar: Arc<Sidecar>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = listeners.http.local_addr()?;
    let grpc_address = listeners.grpc.local_addr()?;
    let endpoints = nameres::Endpoints {
        http: address,
        grpc: Some(grpc_address),
    };
    let app_id = sidecar.config.app_id.clone();
    // Only a sidecar with events to deliver starts the delivery thread.
    let subscriptions = if sidecar.delivers_events() {
        Some(spawn_on_delivery_thread(sidecar.clone().run_subscriptions()).await?)
    } else {
        None
    };
    if let Err(err) = sidecar.registry.register(&app_id, endpoints) {
        sidecar.request_shutdown();
        return Err(err).context("cannot register in the name registry");
    }
    let (stop_heartbeat, stop) = tokio::sync::oneshot::channel();
    let heartbeat = tokio::spawn(sidecar.registry.clone().heartbeat(
        app_id.clone(),
        endpoints,
        nameres::DEFAULT_HEARTBEAT,
        stop,
    ));
    // One stop for both servers: the caller's signal or a gRPC Shutdown.
    let stopping = {
        let sidecar = sidecar.clone();
        async move {
            tokio::select! {
                () = shutdown => {}
                () = sidecar.shutdown_was_requested() => {}
            }
            sidecar.request_shutdown();
        }
    };
    tokio::spawn(stopping);
    if let Some(health) = sidecar.config.app_health.clone() {
        tokio::spawn(sidecar.clone().watch_app_health(health));
    }
    let input_bindings = sidecar
        .reads_input_bindings()
        .then(|| tokio::spawn(sidecar.clone().run_input_bindings()));
    let actor_host = tokio::spawn(sidecar.clone().run_actor_host(endpoints));
    // Jobs trigger the app: only a sidecar with an app runs them.
    let jobs = sidecar
        .config
        .app_port
        .is_some()
        .then(|| tokio::spawn(sidecar.clone().run_jobs()));
    let reload_bindings = sidecar.bindings.as_ref().map(|b| b.watch());
    let metrics = listeners.metrics.map(|listener| {
        if let Ok(address) = listener.local_addr() {
            tracing::info!("metrics on http://{address}/metrics");
        }
        let bindings = sidecar.bindings.iter().map(|b| b.metrics().clone());
        tokio::spawn(metrics::serve(
            listener,
            sidecar.metrics.clone(),
            bindings.collect(),
            stopped(sidecar.clone()),
        ))
    });
    tracing::info!(app_id = %app_id, app_port = ?sidecar.config.app_port, grpc = %grpc_address, "sidecar listening on http://{address}");
    let connections = sidecar.config.max_connections;
    let http = service_kit::serve::serve(
        listeners.http,
        app(sidecar.clone()),
        connections,
        stopped(sidecar.clone()),
    );
    let grpc = grpc::serve(listeners.grpc, sidecar.clone(), stopped(sidecar.clone()));
    let ((), grpc_result) = tokio::join!(http, grpc);
    if let Some(subscriptions) = subscriptions {
        subscriptions.await;
    }
    if let Some(input_bindings) = input_bindings {
        let _ = input_bindings.await;
    }
    if let Some(jobs) = jobs {
        let _ = jobs.await;
    }
    let _ = actor_host.await;
    if let Some(metrics) = metrics {
        match metrics.await {
            Ok(Err(err)) => tracing::warn!(error = %err, "the metrics server failed"),
            Err(err) => tracing::warn!(error = %err, "the metrics server panicked"),
            Ok(Ok(())) => {}
        }
    }
    if let Some(reload) = reload_bindings {
        reload.abort();
    }
    // Wait for the heartbeat to end (and any refresh in flight) before
    // deregistering, or a late refresh could register us again.
    let _ = stop_heartbeat.send(());
    let _ = heartbeat.await;
    if let Err(err) = sidecar.registry.deregister(&app_id, endpoints) {
        tracing::warn!(error = %err, "cannot deregister from the name registry");
    }
    // Send the spans still batched (it blocks).
    let tracer = sidecar.tracer.clone();
    let _ = tokio::task::spawn_blocking(move || tracer.flush()).await;
    grpc_result.context("the sidecar's gRPC server failed")
}

/// Starts `task` (the app's subscriptions: reading the brokers and
/// delivering to the app) on a thread of its own, with a single-threaded
/// runtime of its own; the returned future completes when it is done.
///
/// The sidecar serves its APIs on one thread (a proxy needs no second
/// core, and one thread spares every request a cross-thread wake-up), so
/// under a steady stream of events, delivery would take turns with
/// publishing and invocation on one core. On its own thread it uses a
/// second core when there is one, and still none of the API's requests
/// cross threads.
async fn spawn_on_delivery_thread(
    task: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<impl Future<Output = ()>> {
    let (ready, started) = tokio::sync::oneshot::channel::<std::io::Result<()>>();
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("pubsub-delivery".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => {
                    let _ = ready.send(Ok(()));
                    runtime.block_on(task);
                }
                Err(err) => {
                    let _ = ready.send(Err(err));
                }
            }
            drop(done);
        })
        .context("cannot start the pub/sub delivery thread")?;
    started
        .await
        .context("the pub/sub delivery thread ended at start")?
        .context("cannot start the pub/sub delivery thread's runtime")?;
    Ok(async move {
        let _ = finished.await;
    })
}

/// Completes when the sidecar is asked to stop.
async fn stopped(sidecar: Arc<Sidecar>) {
    sidecar.shutdown_was_requested().await;
}
