//! Input bindings: components that trigger the app, as daprd runs them.
//!
//! A binding component read for input (`direction` absent or naming
//! `input`) sends each of its events to the app once the app is healthy:
//!
//! - an HTTP app gets `POST /{route}` (`route` metadata, the component's
//!   name by default) with the event's data as the body
//!   (`application/json`) and its metadata as headers. The app is asked
//!   first with `OPTIONS /{route}`: a 2xx or 405 answer means it wants the
//!   binding's events; anything else (404) that it does not, and the
//!   binding is not read. `direction: input` skips that question.
//! - a gRPC app (`--app-protocol grpc`) is asked `ListInputBindings`, and
//!   gets each event of a binding it lists through `OnBindingEvent`. When
//!   its answer names output bindings (`to`), its `data` is sent to each
//!   of them with the operation `create`, in turn, or all at once for
//!   `concurrency: PARALLEL`, as daprd does.
//!
//! Reading stops while the app is unhealthy and when the sidecar stops.
//! Each event is counted in daprd's `dapr_component_input_binding_count`
//! and `_latencies`, with whether the app took it (a 2xx, or an `OK`
//! status). daprd's HTTP path ignores an app's `{to, data, state}` answer
//! body, and so does this sidecar.
//!
//! Each backend is a module implementing [`InputBinding`], opened by its
//! Dapr type in [`crate::bindings::open`]: `bindings.cron` ([`cron`]),
//! `bindings.rabbitmq` ([`crate::bindings::rabbitmq`], a queue whose
//! messages are acknowledged once the app took them, and requeued when it
//! did not: [`InputEvent::done`]) and `bindings.mqtt3`
//! ([`crate::bindings::mqtt`], a topic whose messages are acknowledged
//! once the app took them, or after its retries).

pub mod cron;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use axum::http::Method;
use bytes::Bytes;
use dapr::dapr::proto::runtime::v1 as pb;
use futures_util::StreamExt;
use service_kit::trace::{KeyValue, SpanKind, TraceContext};

use crate::Sidecar;
use crate::bindings::BindingRequest;
use crate::components::Component;
use crate::pubsub::app_callback::{Unanswered, call_app};

/// One event an input binding read.
#[derive(Debug)]
pub struct InputEvent {
    /// The body the app gets.
    pub data: Bytes,
    /// What the binding says about it (headers for an HTTP app).
    pub metadata: HashMap<String, String>,
    /// Told whether the app took the event, for a binding that settles
    /// it with its source (a queue's acknowledgement); dropped unsent when
    /// the sidecar stops first.
    pub done: Option<tokio::sync::oneshot::Sender<bool>>,
}

/// The events an input binding reads. Dropping it stops reading.
pub type Events = Pin<Box<dyn futures_util::Stream<Item = InputEvent> + Send>>;

/// An input binding backend failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputBindingError(pub String);

/// One input binding backend.
#[async_trait::async_trait]
pub trait InputBinding: Send + Sync {
    /// Starts reading: every event from now on is in the stream.
    async fn read(&self) -> Result<Events, InputBindingError>;
}

/// An input binding component, opened ([`crate::bindings::open`]).
pub struct InputBindingComponent {
    /// Its name.
    pub name: String,
    /// The path its events are `POST`ed to (from `/`).
    pub route: String,
    /// Whether its `direction` names `input`, so that the app is not asked.
    pub explicitly_input: bool,
    binding: Arc<dyn InputBinding>,
}

impl InputBindingComponent {
    /// `binding`, read for `component` (its `route`, its `direction`).
    pub fn new(component: &Component, binding: Arc<dyn InputBinding>) -> InputBindingComponent {
        let properties = component.properties();
        let name = component.metadata.name.clone();
        let route = properties
            .get("route")
            .filter(|r| !r.trim().is_empty())
            .unwrap_or(&name);
        InputBindingComponent {
            route: format!("/{}", route.trim_start_matches('/')),
            explicitly_input: crate::bindings::directions(component)
                .is_some_and(|d| d.iter().any(|d| d == "input")),
            name,
            binding,
        }
    }
}

impl Sidecar {
    /// Whether this sidecar has input bindings to read: one loaded, and an
    /// app to send events to.
    pub(crate) fn reads_input_bindings(&self) -> bool {
        !self.input_bindings.is_empty() && self.config.app_port.is_some()
    }

    /// Reads the input bindings the app wants until the sidecar stops:
    /// waits for the app to be healthy, asks it which bindings it wants,
    /// sends it their events, and starts over when it turns unhealthy.
    pub(crate) async fn run_input_bindings(self: Arc<Self>) {
        if !self.reads_input_bindings() {
            return;
        }
        let start = |sidecar: Arc<Sidecar>| async move {
            let wanted = sidecar
                .ask_app_until_answered("input bindings", || async {
                    match &sidecar.app_callback {
                        Some(app) => sidecar.listed_input_bindings(app.clone()).await,
                        None => sidecar.probed_input_bindings().await,
                    }
                })
                .await?;
            let mut readers = tokio::task::JoinSet::new();
            for index in wanted {
                readers.spawn(sidecar.clone().read_input_binding(index));
            }
            Some(readers)
        };
        self.while_app_is_healthy("input bindings", start, |_| {})
            .await;
    }

    /// An HTTP app's bindings: those whose route answers `OPTIONS` with a
    /// 2xx or 405, and those declared `direction: input`.
    async fn probed_input_bindings(&self) -> Result<Vec<usize>, String> {
        let mut wanted = Vec::new();
        for (index, binding) in self.input_bindings.iter().enumerate() {
            if binding.explicitly_input {
                wanted.push(index);
                continue;
            }
            let (status, _) = crate::app_channel::send_to_app(
                self,
                Method::OPTIONS,
                &binding.route,
                &[],
                "application/json",
                Bytes::new(),
                &TraceContext::new_root(),
            )
            .await?;
            if status.is_success() || status == axum::http::StatusCode::METHOD_NOT_ALLOWED {
                wanted.push(index);
            } else {
                tracing::info!(binding = %binding.name, route = %binding.route, %status, "app has not subscribed to binding");
            }
        }
        Ok(wanted)
    }

    /// A gRPC app's bindings: those its `ListInputBindings` names (none
    /// when it does not implement it), and those declared `direction:
    /// input`.
    async fn listed_input_bindings(
        &self,
        mut app: crate::pubsub::app_callback::AppCallback,
    ) -> Result<Vec<usize>, String> {
        let listed = match app.list_input_bindings(tonic::Request::new(())).await {
            Ok(answer) => answer.into_inner().bindings,
            Err(status) if status.code() == tonic::Code::Unavailable => {
                return Err(format!("ListInputBindings: {}", status.message()));
            }
            Err(status) => {
                tracing::info!(code = ?status.code(), message = %status.message(), "ListInputBindings failed: no input bindings");
                Vec::new()
            }
        };
        Ok(self
            .input_bindings
            .iter()
            .enumerate()
            .filter(|(_, b)| b.explicitly_input || listed.contains(&b.name))
            .map(|(index, _)| index)
            .collect())
    }

    /// Reads input binding `index` and sends each event to the app, each
    /// on its own (a slow app does not hold the next event back), until
    /// the binding's events end or this task is stopped.
    async fn read_input_binding(self: Arc<Self>, index: usize) {
        let binding = &self.input_bindings[index];
        let mut events = match binding.binding.read().await {
            Ok(events) => events,
            Err(err) => {
                tracing::error!(binding = %binding.name, error = %err, "cannot read the input binding");
                return;
            }
        };
        tracing::info!(binding = %binding.name, route = %binding.route, "reading the input binding");
        let mut sent = tokio::task::JoinSet::new();
        while let Some(event) = events.next().await {
            // Reap the deliveries that are done.
            while sent.try_join_next().is_some() {}
            sent.spawn(self.clone().send_binding_event(index, event));
        }
        while sent.join_next().await.is_some() {}
    }

    /// Sends one event of input binding `index` to the app, in a span of
    /// its own (`bindings/{name}`), and counts it.
    async fn send_binding_event(self: Arc<Self>, index: usize, mut event: InputEvent) {
        let binding = &self.input_bindings[index];
        let done = event.done.take();
        let started = Instant::now();
        let mut parent = axum::http::HeaderMap::new();
        for name in ["traceparent", "tracestate"] {
            if let Some(value) = event.metadata.get(name).and_then(|v| v.parse().ok()) {
                parent.insert(name, value);
            }
        }
        let trace = self.tracer.start_span(
            format!("bindings/{}", binding.name),
            SpanKind::Client,
            &parent,
            vec![KeyValue::new("dapr.binding_name", binding.name.clone())],
        );
        let outcome = match &self.app_callback {
            Some(app) => {
                self.on_binding_event(app.clone(), binding, event, &trace)
                    .await
            }
            None => self.post_binding_event(binding, event, &trace).await,
        };
        if let Err(reason) = &outcome {
            tracing::warn!(binding = %binding.name, %reason, "error sending binding event to the app");
        }
        if let Some(done) = done {
            let _ = done.send(outcome.is_ok());
        }
        self.metrics
            .record_input_binding(&binding.name, outcome.is_ok(), started.elapsed());
        if trace.is_recording() {
            trace.end(outcome.err());
        }
    }

    /// `POST /{route}` with the event.
    async fn post_binding_event(
        &self,
        binding: &InputBindingComponent,
        event: InputEvent,
        trace: &TraceContext,
    ) -> Result<(), String> {
        let headers: Vec<(&str, &str)> = event
            .metadata
            .iter()
            .filter(|(name, value)| {
                axum::http::HeaderName::try_from(name.as_str()).is_ok()
                    && axum::http::HeaderValue::try_from(value.as_str()).is_ok()
            })
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let (status, body) = crate::app_channel::send_to_app(
            self,
            Method::POST,
            &binding.route,
            &headers,
            "application/json",
            event.data,
            trace,
        )
        .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!(
                "fails to send binding event to http app channel, status code: {} body: {}",
                status.as_u16(),
                String::from_utf8_lossy(&body)
            ))
        }
    }

    /// `OnBindingEvent` with the event; then the answer's `data` to the
    /// output bindings it names.
    async fn on_binding_event(
        &self,
        mut app: crate::pubsub::app_callback::AppCallback,
        binding: &InputBindingComponent,
        event: InputEvent,
        trace: &TraceContext,
    ) -> Result<(), String> {
        let request = pb::BindingEventRequest {
            name: binding.name.clone(),
            data: event.data.to_vec(),
            metadata: event.metadata,
        };
        let answer = call_app(self, request, trace, |request| async move {
            app.on_binding_event(request).await
        })
        .await
        .map_err(|reason| match reason {
            Unanswered::Status(status) => format!(
                "error invoking app: OnBindingEvent answered {:?}: {}",
                status.code(),
                status.message()
            ),
            Unanswered::Failed(reason) => format!("error invoking app: {reason}"),
        })?;
        if !answer.to.is_empty() {
            self.send_to_output_bindings(answer).await;
        }
        Ok(())
    }

    /// Sends a gRPC app's answer `data` (as JSON: `null` unless it is
    /// JSON) to the output bindings in its `to`, with the operation
    /// `create`: in turn, stopping at the first failure, or all at once
    /// for `PARALLEL`. Failures are logged, as daprd logs them.
    async fn send_to_output_bindings(&self, answer: pb::BindingEventResponse) {
        let data = serde_json::from_slice::<serde_json::Value>(&answer.data)
            .unwrap_or(serde_json::Value::Null)
            .to_string();
        let send = |name: String| {
            let data = Bytes::from(data.clone());
            async move {
                let request = BindingRequest {
                    operation: "create".into(),
                    data,
                    metadata: HashMap::new(),
                };
                let result = self.invoke_binding(&name, request).await;
                if let Err(err) = &result {
                    tracing::error!(binding = %name, error = %err, "error sending the app's answer to an output binding");
                }
                result.is_ok()
            }
        };
        let parallel = answer.concurrency
            == pb::binding_event_response::BindingEventConcurrency::Parallel as i32;
        if parallel {
            futures_util::future::join_all(answer.to.into_iter().map(send)).await;
        } else {
            for name in answer.to {
                if !send(name).await {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(yaml_metadata: &str) -> Component {
        serde_yaml::from_str(&format!(
            "kind: Component\nmetadata:\n  name: tick\nspec:\n  type: bindings.cron\n  version: v1\n  metadata:\n  - name: schedule\n    value: '@every 1s'\n{yaml_metadata}"
        ))
        .unwrap()
    }

    fn read(component: &Component) -> InputBindingComponent {
        let binding = cron::CronBinding::open(&component.properties()).unwrap();
        InputBindingComponent::new(component, Arc::new(binding))
    }

    #[test]
    fn route_and_direction_are_read_as_daprd_reads_them() {
        let plain = read(&component(""));
        assert_eq!(plain.route, "/tick", "the name by default");
        assert!(!plain.explicitly_input);

        let routed = read(&component(
            "  - name: route\n    value: /jobs/tick\n  - name: Direction\n    value: ' Output , INPUT'\n",
        ));
        assert_eq!(routed.route, "/jobs/tick");
        assert!(routed.explicitly_input, "the key's and value's case aside");
    }
}
