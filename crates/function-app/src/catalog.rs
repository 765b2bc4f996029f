//! The functions an app serves right now, and their live reload.
//!
//! A [`Catalog`] holds a [`Table`]: every loaded function ([`Served`]) and
//! the routes that reach it, and every wasi:http component ([`Mounted`])
//! and the path it is mounted at. A request takes the current table (an `Arc`)
//! once, so a call in flight finishes on the version it started with while
//! a reload swaps in a new table.
//!
//! [`Catalog::watch`] polls the functions file and every function's and
//! component's wasm file. A changed wasm file is compiled off the request path and swapped
//! in; a changed functions file is checked and loaded whole, keeping the
//! functions whose file and settings did not change. Anything that fails
//! (a file that does not compile, a config that does not validate) leaves
//! the old version serving, logs an error, and shows in `GET /fn`
//! ([`Catalog::listing`]).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use function_host::nn::{ModelSpec, NnConfig};
use function_host::{Function, FunctionHost};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use component_host::{ComponentHost, ComponentHostConfig, ServedComponent};

use crate::config::{ComponentConfig, Defaults, FunctionConfig, FunctionsFile};

/// Where a catalog's functions are declared.
#[derive(Debug, Clone)]
pub enum Source {
    /// A functions file, reread when it changes.
    File(PathBuf),
    /// A fixed list (`dapr-wasm image-api`); only the wasm files reload.
    Fixed(Vec<FunctionConfig>),
}

/// One loaded function, with what it was loaded from.
pub struct Served {
    /// Its checked configuration.
    pub config: FunctionConfig,
    /// The loaded function, limits, directories and models applied.
    pub function: Function,
    /// The first 16 hex digits of the wasm file's SHA-256.
    pub version: String,
    /// When this version was loaded.
    pub loaded_at: SystemTime,
    /// The wasm file as it was when it was read.
    stamp: Option<FileStamp>,
}

impl Served {
    /// A function loaded elsewhere, served as `config` says (it is not
    /// reloaded: there is no file to watch).
    pub fn preloaded(config: FunctionConfig, function: Function) -> Served {
        Served {
            config,
            function,
            version: "preloaded".into(),
            loaded_at: SystemTime::now(),
            stamp: None,
        }
    }
}

/// One loaded wasi:http component, with what it was loaded from.
pub struct Mounted {
    /// Its checked configuration.
    pub config: ComponentConfig,
    /// The component, ready to answer.
    pub component: ServedComponent,
    /// The first 16 hex digits of the wasm file's SHA-256.
    pub version: String,
    /// When this version was loaded.
    pub loaded_at: SystemTime,
    /// The wasm file as it was when it was read.
    stamp: Option<FileStamp>,
}

/// Every function and component being served, and their routes.
#[derive(Default)]
pub struct Table {
    functions: Vec<Arc<Served>>,
    routes: HashMap<String, Arc<Served>>,
    components: Vec<Arc<Mounted>>,
}

impl Table {
    fn new(functions: Vec<Arc<Served>>, components: Vec<Arc<Mounted>>) -> Table {
        let routes = functions
            .iter()
            .flat_map(|served| {
                served
                    .config
                    .routes
                    .iter()
                    .map(move |route| (route.clone(), served.clone()))
            })
            .collect();
        Table {
            functions,
            routes,
            components,
        }
    }

    /// The component mounted at `path` or above it, and the path it sees
    /// (`path` without the mount prefix; `/` for the prefix itself).
    pub fn mount(&self, path: &str) -> Option<(&Arc<Mounted>, String)> {
        self.components.iter().find_map(|mounted| {
            let rest = path.strip_prefix(mounted.config.path.as_str())?;
            match rest {
                "" => Some((mounted, "/".to_string())),
                rest if rest.starts_with('/') => Some((mounted, rest.to_string())),
                _ => None,
            }
        })
    }

    /// Every component, in the configuration's order.
    pub fn components(&self) -> &[Arc<Mounted>] {
        &self.components
    }

    /// The function that answers `path`, if any.
    pub fn route(&self, path: &str) -> Option<&Arc<Served>> {
        self.routes.get(path)
    }

    /// Every function, in the configuration's order.
    pub fn functions(&self) -> &[Arc<Served>] {
        &self.functions
    }
}

/// A file's identity and version, as far as `stat` tells: a replaced or
/// rewritten file changes at least one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: meta.ino(),
        })
    }
}

/// The functions being served, how to load them again, and what went wrong
/// last time.
pub struct Catalog {
    host: FunctionHost,
    nn: NnConfig,
    defaults: Defaults,
    source: Source,
    table: RwLock<Arc<Table>>,
    /// The functions file as last read (or tried).
    config_stamp: Mutex<Option<FileStamp>>,
    /// Why the functions file as it is now is not the one being served.
    config_error: Mutex<Option<String>>,
    /// Per function: the wasm file that failed to load, and why.
    load_errors: Mutex<HashMap<String, (Option<FileStamp>, String)>>,
    /// Per function: why its last rebuild from sources failed
    /// ([`crate::rebuild`]).
    build_errors: Mutex<HashMap<String, String>>,
    /// Whether functions are rebuilt when their sources change.
    watching: AtomicBool,
    /// The host of the components, made when the first one is loaded.
    component_host: Mutex<Option<ComponentHost>>,
}

impl Catalog {
    /// Loads every function of `source` (blocking: compiles, loads models).
    pub fn load(
        host: FunctionHost,
        nn: NnConfig,
        defaults: Defaults,
        source: Source,
    ) -> Result<Catalog, String> {
        let config_stamp = match &source {
            Source::File(path) => FileStamp::of(path),
            Source::Fixed(_) => None,
        };
        let catalog = Catalog {
            host,
            nn,
            defaults,
            source,
            table: RwLock::new(Arc::new(Table::default())),
            config_stamp: Mutex::new(config_stamp),
            config_error: Mutex::new(None),
            load_errors: Mutex::new(HashMap::new()),
            build_errors: Mutex::new(HashMap::new()),
            watching: AtomicBool::new(false),
            component_host: Mutex::new(None),
        };
        let (configs, components) = catalog.read_source()?;
        let table = catalog.load_table(configs, components)?;
        catalog.swap(table);
        Ok(catalog)
    }

    /// The host the functions run on.
    pub fn host(&self) -> &FunctionHost {
        &self.host
    }

    /// A catalog of one function loaded elsewhere, never reloaded.
    pub fn with_loaded(served: Served) -> Catalog {
        let host = served.function.host();
        Catalog {
            host,
            nn: NnConfig::default(),
            defaults: Defaults {
                limits: *served.function.limits(),
                models: served.config.models.clone(),
                app_id: None,
                dapr_http_port: None,
            },
            source: Source::Fixed(vec![served.config.clone()]),
            table: RwLock::new(Arc::new(Table::new(vec![Arc::new(served)], Vec::new()))),
            config_stamp: Mutex::new(None),
            config_error: Mutex::new(None),
            load_errors: Mutex::new(HashMap::new()),
            build_errors: Mutex::new(HashMap::new()),
            watching: AtomicBool::new(false),
            component_host: Mutex::new(None),
        }
    }

    /// The table being served now.
    pub fn current(&self) -> Arc<Table> {
        self.table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn swap(&self, table: Table) {
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
    }

    fn read_source(&self) -> Result<(Vec<FunctionConfig>, Vec<ComponentConfig>), String> {
        match &self.source {
            Source::File(path) => {
                let file = FunctionsFile::load(path, &self.defaults)?;
                Ok((file.functions, file.components))
            }
            Source::Fixed(configs) => Ok((configs.clone(), Vec::new())),
        }
    }

    /// Loads `configs` and `components`, reusing what the current table
    /// already has loaded from the same bytes and settings
    /// ([`Catalog::load_function`], [`Catalog::load_component`]).
    fn load_table(
        &self,
        configs: Vec<FunctionConfig>,
        components: Vec<ComponentConfig>,
    ) -> Result<Table, String> {
        let current = self.current();
        let mut functions = Vec::with_capacity(configs.len());
        for config in configs {
            let old = current
                .functions
                .iter()
                .find(|served| served.config.name == config.name);
            let served = Arc::new(self.load_function(config, old.map(|o| &**o))?);
            functions.push(served);
        }
        let mut mounted = Vec::with_capacity(components.len());
        for config in components {
            let old = current
                .components
                .iter()
                .find(|mounted| mounted.config.name == config.name);
            mounted.push(Arc::new(self.load_component(config, old.map(|o| &**o))?));
        }
        Ok(Table::new(functions, mounted))
    }

    /// The components' host, made on first use: its cache is the
    /// functions', its memory bound the app's `--max-memory`.
    fn component_host(&self) -> Result<ComponentHost, String> {
        let mut host = self
            .component_host
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(host) = &*host {
            return Ok(host.clone());
        }
        let made = ComponentHost::new(ComponentHostConfig {
            cache_dir: self.host.config().cache_dir.clone(),
            max_memory_bytes: self.defaults.limits.max_memory_bytes,
            ..ComponentHostConfig::default()
        })
        .map_err(|e| e.to_string())?;
        *host = Some(made.clone());
        Ok(made)
    }

    /// Loads one component (blocking), keeping `old` when it was loaded
    /// from the same bytes with the same settings.
    fn load_component(
        &self,
        config: ComponentConfig,
        old: Option<&Mounted>,
    ) -> Result<Mounted, String> {
        let stamp = FileStamp::of(&config.wasm);
        let wasm = std::fs::read(&config.wasm)
            .map_err(|e| format!("cannot read {}: {e}", config.wasm.display()))?;
        let version = hex::encode(&Sha256::digest(&wasm)[..8]);
        if let Some(old) = old.filter(|old| old.version == version && old.config == config) {
            return Ok(Mounted {
                config,
                component: old.component.clone(),
                version,
                loaded_at: old.loaded_at,
                stamp,
            });
        }
        let component = self
            .component_host()?
            .load_bytes(&config.name, &wasm, config.settings.clone())
            .map_err(|e| e.to_string())?;
        Ok(Mounted {
            config,
            component,
            version,
            loaded_at: SystemTime::now(),
            stamp,
        })
    }

    /// Loads one function (blocking). When `old` was loaded from the same
    /// bytes with the same settings it is kept as it is (only its file's
    /// stamp is renewed); else models already loaded for `old` are reused
    /// when the function lists the same ones.
    fn load_function(
        &self,
        config: FunctionConfig,
        old: Option<&Served>,
    ) -> Result<Served, String> {
        let stamp = FileStamp::of(&config.wasm);
        let wasm = std::fs::read(&config.wasm)
            .map_err(|e| format!("cannot read {}: {e}", config.wasm.display()))?;
        let version = hex::encode(&Sha256::digest(&wasm)[..8]);
        if let Some(old) = old.filter(|old| old.version == version && old.config == config) {
            return Ok(Served {
                config,
                function: old.function.clone(),
                version,
                loaded_at: old.loaded_at,
                stamp,
            });
        }
        let function = self
            .host
            .load_bytes(&config.name, &wasm)
            .map_err(|e| e.to_string())?
            .with_limits(config.limits)
            .with_read_only_dirs(config.dirs.clone())
            .with_strict_sandbox(config.strict_sandbox);
        let function = self.give_models(function, &config, old)?;
        Ok(Served {
            config,
            function,
            version,
            loaded_at: SystemTime::now(),
            stamp,
        })
    }

    fn give_models(
        &self,
        function: Function,
        config: &FunctionConfig,
        old: Option<&Served>,
    ) -> Result<Function, String> {
        if !function.uses_wasi_nn() {
            return Ok(function);
        }
        if config.models.is_empty() {
            return Err(format!(
                "function `{}` imports WASI-NN but `models` lists none",
                config.name
            ));
        }
        let reusable = old
            .filter(|old| old.config.models == config.models)
            .and_then(|old| old.function.models().cloned());
        if let Some(models) = reusable {
            return Ok(function.with_models(models));
        }
        let specs: Vec<ModelSpec> = config
            .models
            .iter()
            .filter_map(|name| {
                self.nn
                    .models
                    .iter()
                    .find(|spec| &spec.name == name)
                    .cloned()
            })
            .collect();
        let nn = NnConfig {
            models: specs,
            ..self.nn.clone()
        };
        function_host::nn::load_models_for(function, &nn).map_err(|e| e.to_string())
    }

    /// Polls for changes every `interval` until the returned task is
    /// dropped or aborted.
    pub fn watch(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let catalog = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let catalog = catalog.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || catalog.reload_changed()).await
                {
                    tracing::error!(error = %e, "the reload check failed");
                }
            }
        })
    }

    /// Reloads whatever changed on disk since the last look (blocking).
    pub fn reload_changed(&self) {
        if let Source::File(path) = &self.source {
            let stamp = FileStamp::of(path);
            let changed = {
                let mut last = self.config_stamp.lock().unwrap_or_else(|p| p.into_inner());
                let changed = *last != stamp;
                *last = stamp;
                changed
            };
            if changed {
                self.reload_config(path);
                return;
            }
        }
        let current = self.current();
        let mut replaced = false;
        let mut functions = current.functions.clone();
        for served in functions.iter_mut() {
            let stamp = FileStamp::of(&served.config.wasm);
            if stamp == served.stamp
                || stamp.is_none()
                || self.failed_before(&served.config.name, stamp)
            {
                continue;
            }
            let name = served.config.name.clone();
            match self.load_function(served.config.clone(), Some(&**served)) {
                Ok(new) if new.version == served.version => {
                    tracing::debug!(function = %name, "wasm file touched, same contents");
                    *served = Arc::new(new);
                    replaced = true;
                }
                Ok(new) => {
                    tracing::info!(function = %name, version = %new.version, "function reloaded");
                    *served = Arc::new(new);
                    self.clear_error(&name);
                    replaced = true;
                }
                Err(error) => {
                    tracing::error!(function = %name, %error, "the new wasm file did not load; the old version keeps serving");
                    self.load_errors
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(name, (stamp, error));
                }
            }
        }
        let mut components = current.components.clone();
        for mounted in components.iter_mut() {
            let stamp = FileStamp::of(&mounted.config.wasm);
            if stamp == mounted.stamp
                || stamp.is_none()
                || self.failed_before(&mounted.config.name, stamp)
            {
                continue;
            }
            let name = mounted.config.name.clone();
            match self.load_component(mounted.config.clone(), Some(&**mounted)) {
                Ok(new) => {
                    if new.version != mounted.version {
                        tracing::info!(component = %name, version = %new.version, "component reloaded");
                    }
                    *mounted = Arc::new(new);
                    self.clear_error(&name);
                    replaced = true;
                }
                Err(error) => {
                    tracing::error!(component = %name, %error, "the new wasm file did not load; the old version keeps serving");
                    self.load_errors
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(name, (stamp, error));
                }
            }
        }
        if replaced {
            self.swap(Table::new(functions, components));
        }
    }

    fn reload_config(&self, path: &Path) {
        let result = self
            .read_source()
            .and_then(|(configs, components)| self.load_table(configs, components));
        let mut config_error = self.config_error.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(table) => {
                tracing::info!(file = %path.display(), functions = table.functions.len(), "functions file reloaded");
                self.swap(table);
                *config_error = None;
                self.load_errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
            }
            Err(error) => {
                tracing::error!(%error, "the functions file did not load; the old functions keep serving");
                *config_error = Some(error);
            }
        }
    }

    fn failed_before(&self, name: &str, stamp: Option<FileStamp>) -> bool {
        self.load_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .is_some_and(|(failed, _)| *failed == stamp)
    }

    fn clear_error(&self, name: &str) {
        self.load_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// Marks the functions as rebuilt from their sources
    /// ([`crate::rebuild::watch_sources`]); `GET /fn` says so.
    pub fn set_watching(&self) {
        self.watching.store(true, Ordering::Relaxed);
    }

    /// Records how the last rebuild of `name` from its sources ended:
    /// `None` when it succeeded.
    pub fn set_build_error(&self, name: &str, error: Option<String>) {
        let mut errors = self.build_errors.lock().unwrap_or_else(|p| p.into_inner());
        match error {
            Some(error) => errors.insert(name.to_string(), error),
            None => errors.remove(name),
        };
    }

    /// `GET /fn`: every function with its routes, version, load time,
    /// limits and models, and any reload or rebuild that failed.
    pub fn listing(&self) -> Value {
        let table = self.current();
        let errors = self
            .load_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let build_errors = self
            .build_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let functions: Vec<Value> = table
            .functions
            .iter()
            .map(|served| {
                let config = &served.config;
                let limits = served.function.limits();
                json!({
                    "name": config.name,
                    "routes": config.routes,
                    "wasm": config.wasm.display().to_string(),
                    "version": served.version,
                    "loadedAt": httpdate::fmt_http_date(served.loaded_at),
                    "args": config.args,
                    "models": config.models,
                    "limits": {
                        "memoryBytes": limits.max_memory_bytes,
                        "timeoutMs": limits.deadline.as_millis() as u64,
                        "maxInputBytes": limits.max_input_bytes,
                        "maxOutputBytes": limits.max_output_bytes,
                    },
                    "reloadError": errors.get(&config.name).map(|(_, e)| e),
                    "build": config.build.as_ref().map(|build| json!({
                        "command": build.command,
                        "watch": build.watch.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                    })),
                    "buildError": build_errors.get(&config.name),
                })
            })
            .collect();
        let components: Vec<Value> = table
            .components
            .iter()
            .map(|mounted| {
                let config = &mounted.config;
                let limits = &config.settings.limits;
                json!({
                    "name": config.name,
                    "path": config.path,
                    "wasm": config.wasm.display().to_string(),
                    "version": mounted.version,
                    "loadedAt": httpdate::fmt_http_date(mounted.loaded_at),
                    "limits": {
                        "memoryBytes": limits.max_memory_bytes,
                        "timeoutMs": limits.deadline.as_millis() as u64,
                        "maxInputBytes": limits.max_request_body_bytes,
                        "maxOutputBytes": limits.max_response_body_bytes,
                    },
                    "allowOutbound": config.settings.outbound.allowed().iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "reloadError": errors.get(&config.name).map(|(_, e)| e),
                })
            })
            .collect();
        json!({
            "file": match &self.source {
                Source::File(path) => Some(path.display().to_string()),
                Source::Fixed(_) => None,
            },
            "configError": *self.config_error.lock().unwrap_or_else(|p| p.into_inner()),
            "watch": self.watching.load(Ordering::Relaxed),
            "functions": functions,
            "components": components,
        })
    }
}
