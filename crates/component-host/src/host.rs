//! [`ComponentHost`]: the engine, linker and request slots shared by every
//! component; [`ServedComponent`]: one component, pre-linked, answering
//! requests with a fresh instance each.
//!
//! A request's life:
//! 1. A body declared over the limit gets 413 at once.
//! 2. It waits, for at most the queue timeout, for one of the slots; else
//!    503 with `Retry-After`.
//! 3. A new `Store` (no files, no sockets, the documented environment, the
//!    memory limiter, outbound HTTP through [`OutboundHooks`]) and an
//!    instance from the pooling allocator run the component's
//!    `wasi:http/incoming-handler` in a task of its own, so the component
//!    may keep streaming its body after its response has started.
//! 4. A guest that computes without pause yields to the other requests at
//!    every epoch tick; the whole task is dropped at the deadline.
//! 5. The component's response (any status) goes back as it is, its body
//!    streamed through [`ResponseBody`]; the host's own failures are
//!    answered from [`RequestError`]'s table.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::response::{IntoResponse, Response};
use function_host::cache::{CacheOutcome, ModuleCache};
use function_host::epoch::EpochTicker;
use function_host::limiter::MemoryLimiter;
use http::uri::{Authority, Scheme};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme as WasiScheme};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::body::{RequestBody, ResponseBody};
use crate::config::{ComponentHostConfig, ComponentSettings};
use crate::error::{LoadError, RequestError};
use crate::outbound::{Outbound, OutboundHooks};

/// Core instances, memories and tables one component may have: Rust's
/// wasm32-wasip2 components have one of each; components made by
/// adapters and other toolchains a few more.
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;
const MEMORIES_PER_COMPONENT: u32 = 2;
const TABLES_PER_COMPONENT: u32 = 4;
/// Bytes of each memory slot kept resident between requests and reset,
/// so the next instance does not page-fault its way back in.
const KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// The engine and slots shared by the components of one process.
#[derive(Clone)]
pub struct ComponentHost {
    inner: Arc<HostInner>,
}

struct HostInner {
    engine: Engine,
    linker: Linker<RequestState>,
    cache: Option<ModuleCache>,
    slots: Arc<Semaphore>,
    config: ComponentHostConfig,
    // Declared last: dropped after the engine's users.
    _ticker: EpochTicker,
}

/// Everything one request's store holds.
struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundHooks,
    limiter: MemoryLimiter,
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl ComponentHost {
    /// Creates the engine (async, pooling allocator, epoch interruption),
    /// links WASI 0.2 and wasi:http, and starts the deadline clock.
    pub fn new(config: ComponentHostConfig) -> Result<ComponentHost, LoadError> {
        let engine_error = |e: wasmtime::Error| LoadError::Engine(format!("{e:#}"));
        // One spare instance so a request finishing its body does not make
        // the next one wait for the pool.
        let slots = u32::try_from(config.max_concurrent_requests.max(1))
            .unwrap_or(u32::MAX / CORE_INSTANCES_PER_COMPONENT)
            .saturating_add(1);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(slots)
            .total_core_instances(slots.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
            .total_memories(slots.saturating_mul(MEMORIES_PER_COMPONENT))
            .total_tables(slots.saturating_mul(TABLES_PER_COMPONENT))
            .total_stacks(slots)
            .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
            .max_memories_per_component(MEMORIES_PER_COMPONENT)
            .max_tables_per_component(TABLES_PER_COMPONENT)
            .max_memory_size(config.max_memory_bytes)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut wasm_config = wasmtime::Config::new();
        wasm_config
            .epoch_interruption(true)
            .profiler(function_host::profiler_from_env())
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm_config).map_err(engine_error)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(engine_error)?;

        let ticker = EpochTicker::start(&engine, config.epoch_tick)
            .map_err(|e| LoadError::Engine(format!("cannot start the deadline clock: {e}")))?;
        let cache = config
            .cache_dir
            .as_ref()
            .map(|dir| ModuleCache::new(dir, &engine));
        Ok(ComponentHost {
            inner: Arc::new(HostInner {
                slots: Arc::new(Semaphore::new(config.max_concurrent_requests.max(1))),
                engine,
                linker,
                cache,
                config,
                _ticker: ticker,
            }),
        })
    }

    /// The configuration this host was created with.
    pub fn config(&self) -> &ComponentHostConfig {
        &self.inner.config
    }

    /// How many request slots are free now.
    pub fn free_slots(&self) -> usize {
        self.inner.slots.available_permits()
    }

    /// Compiles (or loads from the cache) the component in `path` and
    /// links it, ready to serve with `settings`.
    pub fn load_file(
        &self,
        path: &Path,
        settings: ComponentSettings,
    ) -> Result<ServedComponent, LoadError> {
        let wasm = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.load_bytes(&path.display().to_string(), &wasm, settings)
    }

    /// Compiles (or loads from the cache) the component `wasm`, called
    /// `name` in errors and logs, ready to serve with `settings` (its
    /// memory limit capped at the host's).
    pub fn load_bytes(
        &self,
        name: &str,
        wasm: &[u8],
        mut settings: ComponentSettings,
    ) -> Result<ServedComponent, LoadError> {
        settings.limits.max_memory_bytes = settings
            .limits
            .max_memory_bytes
            .min(self.inner.config.max_memory_bytes);
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            path: name.to_string(),
            reason: format!("{e:#}"),
        };
        let engine = &self.inner.engine;
        let (component, cached) = match &self.inner.cache {
            Some(cache) => cache
                .load_or_compile_component(engine, wasm)
                .map_err(invalid)?,
            None => (
                Component::new(engine, wasm).map_err(invalid)?,
                CacheOutcome::Uncached,
            ),
        };
        let not_a_proxy = |e: wasmtime::Error| LoadError::NotAProxy {
            path: name.to_string(),
            reason: format!("{e:#}"),
        };
        let instance_pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(not_a_proxy)?;
        let pre = ProxyPre::new(instance_pre).map_err(not_a_proxy)?;
        tracing::debug!(component = name, cache = ?cached, "component loaded");
        Ok(ServedComponent {
            host: self.clone(),
            pre,
            cached,
            settings: Arc::new(Settings {
                outbound: Arc::new(settings.outbound.clone()),
                public: settings,
            }),
        })
    }

    fn new_store(&self, settings: &Settings) -> Store<RequestState> {
        let mut wasi = WasiCtx::builder();
        // Guest output goes to this process's stderr, as `wasmtime serve`
        // does; no files, no sockets, no name lookups.
        wasi.stdout(std::io::stderr()).stderr(std::io::stderr());
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for (name, value) in &settings.public.env {
            wasi.env(name, value);
        }
        let state = RequestState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutboundHooks {
                outbound: settings.outbound.clone(),
            },
            limiter: MemoryLimiter::new(settings.public.limits.max_memory_bytes),
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|state| &mut state.limiter);
        // A guest that computes without pause yields at every tick, so it
        // holds a thread for one tick at a time; the deadline is the
        // timeout around the whole request.
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        store
    }
}

/// One component, linked and ready: each request gets a fresh instance.
#[derive(Clone)]
pub struct ServedComponent {
    host: ComponentHost,
    pre: ProxyPre<RequestState>,
    cached: CacheOutcome,
    settings: Arc<Settings>,
}

/// A component's settings, with its outbound rules shared by its stores.
struct Settings {
    public: ComponentSettings,
    outbound: Arc<Outbound>,
}

/// How the guest's task ended, for a request it did not answer.
enum TaskEnd {
    Returned,
    Failed(wasmtime::Error, bool),
    TimedOut,
}

impl ServedComponent {
    /// The host serving it.
    pub fn host(&self) -> &ComponentHost {
        &self.host
    }

    /// What it is served with.
    pub fn settings(&self) -> &ComponentSettings {
        &self.settings.public
    }

    /// Whether the compiled component came from the disk cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cached
    }

    /// Answers `request` (from `peer`, if known) with a fresh instance, or
    /// with the host's own error. Never fails and never panics.
    pub async fn handle(
        &self,
        request: http::Request<axum::body::Body>,
        peer: Option<SocketAddr>,
    ) -> Response {
        match self.try_handle(request, peer).await {
            Ok(response) => response,
            Err(err) => err.into_response(),
        }
    }

    async fn try_handle(
        &self,
        request: http::Request<axum::body::Body>,
        peer: Option<SocketAddr>,
    ) -> Result<Response, RequestError> {
        let limits = self.settings.public.limits;
        if service_kit::headers::content_length(request.headers())
            .is_some_and(|length| length > limits.max_request_body_bytes)
        {
            return Err(RequestError::BodyTooLarge {
                limit: limits.max_request_body_bytes,
            });
        }
        let permit = self.acquire_slot().await?;

        let too_large = Arc::new(AtomicBool::new(false));
        let request = with_absolute_uri(request, peer)
            .map(|body| RequestBody::new(body, limits.max_request_body_bytes, too_large.clone()));
        let mut store = self.host.new_store(&self.settings);
        let internal = |e: wasmtime::Error| RequestError::Internal(format!("{e:#}"));
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(WasiScheme::Http, request)
            .map_err(internal)?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let outparam = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(internal)?;

        let pre = self.pre.clone();
        let task = tokio::spawn(async move {
            // The slot is held until the component has finished, its
            // response body included.
            let _permit = permit;
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, incoming, outparam)
                    .await
            };
            match tokio::time::timeout(limits.deadline, run).await {
                Ok(Ok(())) => TaskEnd::Returned,
                Ok(Err(err)) => TaskEnd::Failed(err, store.data().limiter.hit()),
                Err(_elapsed) => TaskEnd::TimedOut,
            }
        });
        let guard = GuestTask(task);

        let answer = receiver.await;
        if too_large.load(Ordering::Relaxed) {
            return Err(RequestError::BodyTooLarge {
                limit: limits.max_request_body_bytes,
            });
        }
        match answer {
            Ok(Ok(response)) => {
                let (parts, body) = response.into_parts();
                if let Some(length) = service_kit::headers::content_length(&parts.headers)
                    && length > limits.max_response_body_bytes
                {
                    return Err(RequestError::ResponseTooLarge {
                        length,
                        limit: limits.max_response_body_bytes,
                    });
                }
                let body = ResponseBody::new(body, limits.max_response_body_bytes);
                let mut response = Response::from_parts(parts, axum::body::Body::new(body));
                response
                    .extensions_mut()
                    .insert(service_kit::error_body::PassedThrough);
                Ok(response)
            }
            Ok(Err(code)) => Err(RequestError::GuestError(describe(&code))),
            Err(_no_response) => Err(match guard.finish().await {
                Some(TaskEnd::TimedOut) => RequestError::Timeout(limits.deadline),
                Some(TaskEnd::Failed(err, true)) => RequestError::MemoryLimit {
                    limit: limits.max_memory_bytes,
                    trap: format!("{err:#}"),
                },
                Some(TaskEnd::Failed(err, false)) => RequestError::Trap(format!("{err:#}")),
                Some(TaskEnd::Returned) => RequestError::NoResponse,
                None => RequestError::Internal("the component's task failed".into()),
            }),
        }
    }

    async fn acquire_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, RequestError> {
        let inner = &self.host.inner;
        let busy = || RequestError::Busy {
            slots: inner.config.max_concurrent_requests,
            waited: inner.config.queue_timeout,
        };
        if let Ok(permit) = inner.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        match tokio::time::timeout(
            inner.config.queue_timeout,
            inner.slots.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) | Err(_) => Err(busy()),
        }
    }
}

/// The guest's error code, as a message.
fn describe(code: &ErrorCode) -> String {
    match code {
        ErrorCode::InternalError(Some(message)) => message.clone(),
        other => format!("{other:?}"),
    }
}

/// The request as wasi:http wants it: a scheme and authority in its URI
/// (the `Host` header's, else `localhost`), and the client's address in
/// `x-forwarded-for` when no proxy put one there.
fn with_absolute_uri<B>(request: http::Request<B>, peer: Option<SocketAddr>) -> http::Request<B> {
    let (mut parts, body) = request.into_parts();
    let authority = parts
        .headers
        .get(http::header::HOST)
        .and_then(|host| host.to_str().ok())
        .and_then(|host| host.parse::<Authority>().ok())
        .unwrap_or_else(|| Authority::from_static("localhost"));
    let mut uri = http::uri::Parts::from(parts.uri.clone());
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(authority);
    if uri.path_and_query.is_none() {
        uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    if let Ok(absolute) = http::Uri::from_parts(uri) {
        parts.uri = absolute;
    }
    if let Some(peer) = peer
        && !parts.headers.contains_key(FORWARDED_FOR)
        && let Ok(value) = http::HeaderValue::from_str(&peer.ip().to_string())
    {
        parts.headers.insert(FORWARDED_FOR, value);
    }
    http::Request::from_parts(parts, body)
}

/// The header that tells a component who its client is.
const FORWARDED_FOR: &str = "x-forwarded-for";

/// The guest's task. Dropping it (the response is done, or the client went
/// away) lets the task run on to its end, which the deadline bounds: a
/// component may still work after its body is finished.
struct GuestTask(tokio::task::JoinHandle<TaskEnd>);

impl GuestTask {
    /// Waits for the task's end; `None` if it panicked.
    async fn finish(self) -> Option<TaskEnd> {
        self.0.await.ok()
    }
}
