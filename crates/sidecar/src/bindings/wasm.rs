//! `bindings.wasm`: Dapr's wasm output binding, run on dapr-wasm's
//! function host instead of daprd's wazero.
//!
//! A component of `type: bindings.wasm` names a WASI command by `url`:
//! `file://` relative to the working directory (or absolute), or
//! `http://` or `https://`, fetched at start-up into the data directory
//! ([`fetch_remote`]; the copy there is used when the server cannot be
//! reached; `https://` servers are checked against the system's trust
//! store, or the `SSL_CERT_FILE` / `SSL_CERT_DIR` it names). Its calls:
//!
//! - `POST /v1.0/bindings/{name}` with `{"operation": "execute", "data":
//!   ..., "metadata": {"args": "a,b"}}`, or gRPC `InvokeBinding`;
//! - stdin is the JSON encoding of `data` over HTTP (as daprd marshals it;
//!   a string arrives quoted), the request's bytes over gRPC;
//! - argv is the binding's name followed by the comma-split `args`;
//! - the answer is 200 with stdout (`data` over gRPC).
//!
//! Where daprd answers every failure with `ERR_INVOKE_OUTPUT_BINDING`, a
//! failed call answers from the function app's table instead (the exit
//! code and stderr line, a timeout, a trap, the memory limit: see
//! [`function_app::error`]).
//!
//! Unlike daprd's binding, each call has limits (component metadata
//! `memory`, `timeout`, `maxInput`, `maxOutput`, with the function app's
//! defaults), instances come from a pool of compiled modules cached on
//! disk, WASI-NN models can be named (`models`: `efficientnet-lite0,...`),
//! and a wasm file replaced on disk is loaded live ([`Catalog::watch`]).
//! `strictSandbox: "true"` gives the guest deterministic clocks and random
//! numbers ([`function_host::Function::with_strict_sandbox`]). Beyond
//! Dapr's metadata, `dirs: "HOST:GUEST,..."` gives the guest read-only
//! directories (HOST relative to the working directory, as `file://`
//! URLs are), e.g. the script a JavaScript function runs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use function_app::Catalog;
use function_app::catalog::Source;
use function_app::config::{
    Defaults, ExitCodes, FunctionConfig, LimitsSpec, check_dir, check_limits,
};
use function_app::error::ApiError;
use function_host::nn::{Backend, NnArgs, NnConfig};
use function_host::{CallLimits, FunctionHost, HostConfig};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;

use super::{BindingRequest, BindingResponse, OutputBinding};
use crate::components::Component;
use crate::error::DaprError;

/// The component type this module serves.
pub const WASM_BINDING: &str = "bindings.wasm";

/// How often replaced wasm files are looked for.
pub const RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The only operation `bindings.wasm` has.
pub const EXECUTE: &str = "execute";

/// The `bindings.wasm` components of a sidecar, loaded.
pub struct WasmBindings {
    catalog: Arc<Catalog>,
}

/// The most bytes a fetched wasm file may have.
const MAX_REMOTE_WASM_BYTES: usize = 256 << 20;
/// How long fetching one wasm file may take.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The `url` of a `bindings.wasm` component.
fn url_of(component: &Component) -> Result<String, String> {
    component
        .properties()
        .get("url")
        .filter(|u| !u.is_empty())
        .cloned()
        .ok_or_else(|| "metadata `url` is required (e.g. file://hello.wasm)".to_string())
}

/// Where the copy of a fetched wasm file is kept.
fn cached_copy(cache_dir: &std::path::Path, url: &str) -> PathBuf {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(url.as_bytes());
    cache_dir.join(format!("{}.wasm", hex::encode(&digest[..8])))
}

/// The HTTP client that fetches wasm files.
enum WasmFetcher {
    Http(hyper_util::client::legacy::Client<HttpConnector, Body>),
    /// `https://` too, trusting the system's roots
    /// ([`crate::http_endpoints::client_with_system_roots`]), loaded only
    /// when a URL needs them.
    Https(hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Body>),
}

impl WasmFetcher {
    fn new(https: bool) -> Result<WasmFetcher, String> {
        let builder =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new());
        if !https {
            return Ok(WasmFetcher::Http(builder.build_http()));
        }
        crate::http_endpoints::client_with_system_roots().map(WasmFetcher::Https)
    }

    async fn get(
        &self,
        uri: axum::http::Uri,
    ) -> Result<axum::http::Response<hyper::body::Incoming>, String> {
        let response = match self {
            WasmFetcher::Http(client) => client.get(uri).await,
            WasmFetcher::Https(client) => client.get(uri).await,
        };
        response.map_err(|e| crate::invoke::error_chain(&e))
    }
}

/// Whether `url` is fetched over the network (`http://` or `https://`).
fn is_remote(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// Fetches the wasm file of each `http(s)://` binding in `components` into
/// `cache_dir`, and returns where each URL's copy is. A URL that cannot be
/// fetched falls back to the copy an earlier start kept (with a warning);
/// without one it is an error naming the binding.
pub async fn fetch_remote(
    components: &[Component],
    cache_dir: &std::path::Path,
) -> Result<HashMap<String, PathBuf>, String> {
    use http_body_util::BodyExt;
    let remote: Vec<(&String, String)> = components
        .iter()
        .filter_map(|c| Some((&c.metadata.name, url_of(c).ok()?)))
        .filter(|(_, url)| is_remote(url))
        .collect();
    let mut fetched = HashMap::new();
    if remote.is_empty() {
        return Ok(fetched);
    }
    // (Without a client, each URL falls back to its copy, or fails naming it.)
    let client = WasmFetcher::new(remote.iter().any(|(_, url)| url.starts_with("https://")));
    for (name, url) in remote {
        let copy = cached_copy(cache_dir, &url);
        let download = async {
            let uri: axum::http::Uri = url.parse().map_err(|e| format!("{e}"))?;
            let response = client.as_ref().map_err(Clone::clone)?.get(uri).await?;
            if !response.status().is_success() {
                return Err(format!("the server answered {}", response.status()));
            }
            let body = http_body_util::Limited::new(response.into_body(), MAX_REMOTE_WASM_BYTES)
                .collect()
                .await
                .map_err(|e| format!("{e}"))?;
            Ok::<_, String>(body.to_bytes())
        };
        let result = match tokio::time::timeout(FETCH_TIMEOUT, download).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {FETCH_TIMEOUT:?}")),
        };
        match result {
            Ok(bytes) => {
                let keep = || -> std::io::Result<()> {
                    std::fs::create_dir_all(cache_dir)?;
                    let partial = copy.with_extension("part");
                    std::fs::write(&partial, &bytes)?;
                    std::fs::rename(&partial, &copy)
                };
                keep().map_err(|e| {
                    format!("binding `{name}`: cannot keep {}: {e}", copy.display())
                })?;
                tracing::info!(binding = %name, %url, bytes = bytes.len(), "wasm file fetched");
            }
            Err(reason) if copy.is_file() => {
                tracing::warn!(binding = %name, %url, %reason, copy = %copy.display(),
                    "cannot fetch the wasm file; using the copy from an earlier start");
            }
            Err(reason) => {
                return Err(format!("binding `{name}`: cannot fetch {url}: {reason}"));
            }
        }
        fetched.insert(url, copy);
    }
    Ok(fetched)
}

/// The function's configuration a `bindings.wasm` component describes;
/// `fetched` holds the local copies of `http(s)://` URLs ([`fetch_remote`]).
pub fn function_config(
    component: &Component,
    defaults: &Defaults,
    fetched: &HashMap<String, PathBuf>,
) -> Result<FunctionConfig, String> {
    let name = component.metadata.name.clone();
    let properties = component.properties();
    let url = url_of(component)?;
    let wasm = match url.split_once("://") {
        Some(("file", path)) => PathBuf::from(path),
        Some(("http" | "https", _)) => fetched
            .get(&url)
            .cloned()
            .ok_or_else(|| format!("url `{url}` was not fetched"))?,
        _ => {
            return Err(format!(
                "url `{url}` must be file://PATH, http://... or https://..."
            ));
        }
    };
    if !wasm.is_file() {
        return Err(format!("url `{url}`: {} does not exist", wasm.display()));
    }
    let strict_sandbox = match properties.get("strictSandbox").map(String::as_str) {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(format!("strictSandbox `{other}` must be true or false")),
    };
    let limits = check_limits(
        &LimitsSpec {
            memory: properties.get("memory").cloned(),
            timeout: properties.get("timeout").cloned(),
            max_input: properties.get("maxInput").cloned(),
            max_output: properties.get("maxOutput").cloned(),
        },
        &defaults.limits,
    )
    .map_err(|e| e.replace("limits.", "metadata "))?;
    let models: Vec<String> = properties
        .get("models")
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if let Some(unknown) = models.iter().find(|m| !defaults.models.contains(m)) {
        return Err(format!(
            "metadata models: no model named `{unknown}` (run `dapr-wasm models fetch`; the models are: {})",
            defaults.models.join(", ")
        ));
    }
    let dirs = properties
        .get("dirs")
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|dir| !dir.is_empty())
                .map(|dir| match dir.split_once(':') {
                    Some((host, guest)) => check_dir(PathBuf::from(host), guest.to_string()),
                    None => Err(format!(
                        "dirs: `{dir}` must be HOST:GUEST (e.g. ./scripts:/app)"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(|e| format!("metadata {e}"))?
        .unwrap_or_default();
    Ok(FunctionConfig {
        routes: vec![format!("/fn/{name}")],
        name,
        wasm,
        args: Vec::new(),
        content_type: None,
        limits,
        models,
        dirs,
        exit_codes: ExitCodes::default(),
        refuse_empty_input: false,
        strict_sandbox,
        build: None,
    })
}

impl WasmBindings {
    /// Loads `components` (all `bindings.wasm`; `fetched` holds the copies
    /// of their `http(s)://` URLs), with at most `max_input` bytes per call:
    /// compiles each (or finds it in the module cache) and loads the models
    /// they name (blocking).
    pub fn load(
        components: &[Component],
        fetched: &HashMap<String, PathBuf>,
        max_input: usize,
    ) -> Result<WasmBindings, String> {
        let nn = NnArgs {
            models: Vec::new(),
            models_dir: None,
            nn_backend: Backend::Auto,
            onnxruntime_lib: None,
            nn_threads: 1,
        }
        .validate()?;
        let host_config = HostConfig {
            cache_dir: local_dirs::module_cache_dir(),
            limits: CallLimits {
                max_input_bytes: CallLimits::default().max_input_bytes.min(max_input),
                ..CallLimits::default()
            },
            ..HostConfig::default()
        };
        let nn = NnConfig {
            sessions: host_config.max_concurrent_calls,
            ..nn
        };
        let defaults = Defaults {
            limits: host_config.limits,
            models: nn.models.iter().map(|m| m.name.clone()).collect(),
            app_id: None,
            dapr_http_port: None,
        };
        let mut configs = Vec::new();
        for component in components {
            let config = function_config(component, &defaults, fetched)
                .map_err(|e| format!("binding `{}`: {e}", component.metadata.name))?;
            configs.push(config);
        }
        let host = FunctionHost::new(host_config).map_err(|e| e.to_string())?;
        let catalog = Catalog::load(host, nn, defaults, Source::Fixed(configs))?;
        Ok(WasmBindings {
            catalog: Arc::new(catalog),
        })
    }

    /// Starts reloading replaced wasm files; stops when the task is aborted.
    pub fn watch(&self) -> tokio::task::JoinHandle<()> {
        self.catalog.watch(RELOAD_INTERVAL)
    }

    /// The function host's metrics (`dapr_wasm_function_*`, by binding
    /// name), which the sidecar serves with its own.
    pub fn metrics(&self) -> &prometheus::Registry {
        self.catalog.host().metrics()
    }

    /// Whether there is a binding called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.catalog
            .current()
            .functions()
            .iter()
            .any(|served| served.config.name == name)
    }

    /// Runs the binding `name` once.
    pub async fn invoke(&self, name: &str, request: BindingRequest) -> Result<Bytes, DaprError> {
        let table = self.catalog.current();
        let served = table
            .functions()
            .iter()
            .find(|served| served.config.name == name)
            .cloned()
            .ok_or_else(|| super::not_found(name))?;
        let args: Vec<&str> = match request.metadata.get("args") {
            Some(args) if !args.is_empty() => args.split(',').collect(),
            _ => Vec::new(),
        };
        let output = served
            .function
            .call(request.data, &args)
            .await
            .map_err(|e| DaprError::BindingFunction {
                name: name.to_string(),
                error: ApiError::from_call(name, &served.config.exit_codes, e),
            })?;
        Ok(output.stdout)
    }
}

/// One `bindings.wasm` component: a name in the shared [`WasmBindings`].
pub struct WasmBinding {
    /// The component's name.
    pub name: String,
    /// The loaded bindings it is one of.
    pub bindings: Arc<WasmBindings>,
}

#[async_trait::async_trait]
impl OutputBinding for WasmBinding {
    fn operations(&self) -> &'static [&'static str] {
        &[EXECUTE]
    }

    async fn invoke(&self, request: BindingRequest) -> Result<Option<BindingResponse>, DaprError> {
        let data = self.bindings.invoke(&self.name, request).await?;
        Ok(Some(BindingResponse {
            data,
            metadata: HashMap::new(),
        }))
    }
}
