//! The sidecar's integration tests, one binary (one link, and the shared
//! test helpers compiled once), one module per area:
//!
//! - `actors`: actors hosted by an HTTP app: calls, state, reminders,
//!   timers, deactivation, placement over sidecars, and the gRPC API;
//! - `state`: the state API over HTTP against the real stores;
//! - `invoke`: service invocation between sidecars and apps;
//! - `pubsub`: publishing and delivery on the real brokers;
//! - `grpc`: the gRPC API, its errors and its bounds;
//! - `grpc_app`: apps that speak gRPC, and proxied gRPC calls;
//! - `lock`: the distributed lock API on Redis;
//! - `configuration`: the configuration API on Redis;
//! - `python_sdk`, `js_sdk`: the official Dapr SDKs against a real sidecar;
//! - `bindings`: `bindings.wasm` output bindings on the function host;
//! - `http_binding`: the `bindings.http` output binding;
//! - `jobs`: the jobs API, its triggers, and its errors;
//! - `input_bindings`: input bindings (`bindings.cron`) triggering an app;
//! - `store_bindings`: the `bindings.postgresql`, `bindings.mysql`,
//!   `bindings.redis` and `bindings.localstorage` output bindings;
//! - `metrics`: `GET /metrics`, daprd's metric names and labels;
//! - `tracing`: spans to each exporter a Dapr `Configuration` can name;
//! - `workflows`: the Durable Task protocol of workflows, spoken by hand;
//! - `fuzz_seeds`: the `sidecar_request` fuzz target's seeds, replayed.

mod actors;
mod bindings;
mod configuration;
mod fuzz_seeds;
mod grpc;
mod grpc_app;
mod http_binding;
mod input_bindings;
mod invoke;
mod jobs;
mod js_sdk;
mod lock;
mod metrics;
mod pubsub;
mod python_sdk;
mod state;
mod store_bindings;
mod tracing;
mod workflows;
