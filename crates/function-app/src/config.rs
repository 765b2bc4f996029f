//! The functions file: the YAML that declares which functions an app
//! serves, at which routes, with which limits, models and directories, and
//! how their exit codes become HTTP statuses.
//!
//! ```yaml
//! functions:
//!   - name: wordcount
//!     wasm: ../build/functions/wordcount-c.wasm   # relative to this file
//!     args: ["--top", "5"]            # argv after the name (optional)
//!     routes: [/count]                # aliases of POST /fn/wordcount
//!     contentType: application/json   # else sniffed from the output
//!     limits: {memory: 64Mi, timeout: 2s, maxInput: 1Mi, maxOutput: 1Mi}
//!     models: []                      # WASI-NN models it may load
//!     dirs: [{host: ./data, guest: /data}]   # read-only; none by default
//!     exitCodes:
//!       2: {status: 415, errorCode: ERR_UNSUPPORTED_FORMAT}
//!       default: {status: 422, errorCode: ERR_FUNCTION_REJECTED}
//!     refuseEmptyInput: false         # true: 400 ERR_EMPTY_BODY, no call
//!     strictSandbox: false            # true: deterministic clocks and random
//!     build:                          # for `--watch` (see crate::rebuild)
//!       command: bash build.sh        # run by sh in this file's folder
//!       watch: [src, Cargo.toml]      # files or folders it depends on
//! components:                         # wasi:http components (optional)
//!   - name: grayscale-service
//!     wasm: ../build/components/grayscale-service.wasm
//!     path: /svc/grayscale            # it answers this path and below,
//!                                     # seeing them without the prefix
//!     env: {RATE_LIMIT_PER_MINUTE: "60"}   # beside APP_ID, DAPR_HTTP_PORT
//!     allowOutbound: [api.example.com:443] # beside the app's sidecar
//!     limits: {memory: 64Mi, timeout: 5s, maxInput: 1Mi, maxOutput: 8Mi}
//! ```
//!
//! A component is served as `dapr-wasm serve` serves one
//! ([`component_host`]), mounted at its `path`, and reloaded live like the
//! functions. At least one function or component must be declared.
//!
//! [`FunctionsFile::parse`] checks the whole file (unknown fields, paths,
//! names, routes, limits, models) before anything is bound, and every error
//! names the file, the function and the field. The result is a list of
//! [`FunctionConfig`]s: what [`crate::catalog`] loads and reloads.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use function_host::{CallLimits, ReadOnlyDir};
use serde::Deserialize;
use service_kit::units::{parse_duration, parse_size};

/// One wasi:http component, checked and ready to mount.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentConfig {
    /// Its name, in logs and `GET /fn`.
    pub name: String,
    /// The wasm file (absolute, or relative to the working directory).
    pub wasm: PathBuf,
    /// The path prefix it is mounted at (`/svc/x`: it answers `/svc/x`
    /// and `/svc/x/...`, seeing `/` and `/...`).
    pub path: String,
    /// What it is served with: limits, environment, outbound rules (the
    /// app's `APP_ID` and `DAPR_HTTP_PORT` included).
    pub settings: component_host::ComponentSettings,
}

/// Routes the app itself answers; no function may take them.
pub const RESERVED_ROUTES: &[&str] = &["/", "/fn", "/healthz", "/models"];

/// One function, checked and ready to load.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionConfig {
    /// Its name: `argv[0]`, and the route `POST /fn/{name}`.
    pub name: String,
    /// The wasm file (absolute, or relative to the working directory).
    pub wasm: PathBuf,
    /// Arguments after the name, before any the call adds (`--model`).
    pub args: Vec<String>,
    /// Every route it answers, `/fn/{name}` first.
    pub routes: Vec<String>,
    /// The answer's content type; `None` sniffs it from the output.
    pub content_type: Option<String>,
    /// Per-call limits.
    pub limits: CallLimits,
    /// The WASI-NN models it may load, by name; the first is the default.
    pub models: Vec<String>,
    /// Host directories it may read.
    pub dirs: Vec<ReadOnlyDir>,
    /// How its non-zero exit codes become answers.
    pub exit_codes: ExitCodes,
    /// Whether an empty body is refused (400 `ERR_EMPTY_BODY`) before the
    /// function runs, as the image functions want; else the function gets
    /// empty stdin.
    pub refuse_empty_input: bool,
    /// Deterministic clocks and random numbers (Dapr's `strictSandbox`).
    pub strict_sandbox: bool,
    /// How to rebuild the wasm file from its sources, for `--watch`.
    pub build: Option<BuildSpec>,
}

/// How a function's wasm file is rebuilt when its sources change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSpec {
    /// A shell command (run by `sh -c`).
    pub command: String,
    /// Where it runs: the functions file's folder.
    pub dir: PathBuf,
    /// The files and folders whose change triggers it.
    pub watch: Vec<PathBuf>,
}

/// What a non-zero exit code becomes: a status and an `errorCode`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExitAnswer {
    /// An HTTP status from 400 to 599.
    pub status: u16,
    /// The `errorCode` of the JSON error.
    pub error_code: String,
}

/// How a function's non-zero exit codes become answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitCodes {
    /// Codes with their own answer.
    pub codes: BTreeMap<i32, ExitAnswer>,
    /// Every other non-zero code.
    pub default: ExitAnswer,
}

impl Default for ExitCodes {
    /// Any non-zero exit is 422 `ERR_FUNCTION_REJECTED`: the function ran
    /// and refused this input.
    fn default() -> Self {
        ExitCodes {
            codes: BTreeMap::new(),
            default: ExitAnswer {
                status: 422,
                error_code: "ERR_FUNCTION_REJECTED".into(),
            },
        }
    }
}

impl ExitCodes {
    /// The answer for exit code `code`.
    pub fn answer(&self, code: i32) -> &ExitAnswer {
        self.codes.get(&code).unwrap_or(&self.default)
    }
}

/// The file as written. Only [`FunctionsFile::parse`] reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    functions: Vec<RawFunction>,
    #[serde(default)]
    components: Vec<RawComponent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawComponent {
    name: String,
    wasm: PathBuf,
    path: String,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    allow_outbound: Vec<String>,
    #[serde(default)]
    limits: LimitsSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFunction {
    name: String,
    wasm: PathBuf,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    routes: Vec<String>,
    content_type: Option<String>,
    #[serde(default)]
    limits: LimitsSpec,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    dirs: Vec<RawDir>,
    #[serde(default)]
    exit_codes: BTreeMap<String, ExitAnswer>,
    #[serde(default)]
    refuse_empty_input: bool,
    #[serde(default)]
    strict_sandbox: bool,
    build: Option<RawBuild>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    command: String,
    watch: Vec<PathBuf>,
}

/// A function's limits as written: sizes (`64Mi`) and a duration (`2s`),
/// each optional. The functions file's `limits`, and the metadata of a
/// `bindings.wasm` component.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsSpec {
    /// Largest linear memory.
    pub memory: Option<String>,
    /// Deadline of one call.
    pub timeout: Option<String>,
    /// Largest input.
    pub max_input: Option<String>,
    /// Largest output.
    pub max_output: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDir {
    host: PathBuf,
    guest: String,
}

/// What every function gets unless the file says otherwise, and what bounds
/// it: the app's flags.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Limits of a function that sets none; `max_memory_bytes` is also the
    /// most any function may set (it sizes the instance pool).
    pub limits: CallLimits,
    /// The models the app can load, by name.
    pub models: Vec<String>,
    /// The app's id, given to its components as `APP_ID`.
    pub app_id: Option<String>,
    /// Its sidecar's HTTP port: given to its components as
    /// `DAPR_HTTP_PORT`, and where their outgoing requests may go.
    pub dapr_http_port: Option<u16>,
}

/// A checked functions file.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionsFile {
    /// The file it was read from.
    pub path: PathBuf,
    /// Its functions, in the file's order.
    pub functions: Vec<FunctionConfig>,
    /// Its components, in the file's order.
    pub components: Vec<ComponentConfig>,
}

impl FunctionsFile {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path, defaults: &Defaults) -> Result<FunctionsFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the functions file {}: {e}", path.display()))?;
        Self::parse(path, &text, defaults)
    }

    /// Checks `text`, the contents of the file at `path` (relative paths in
    /// it are relative to the file's directory).
    pub fn parse(path: &Path, text: &str, defaults: &Defaults) -> Result<FunctionsFile, String> {
        let file = path.display();
        let raw: RawFile = serde_yaml::from_str(text).map_err(|e| format!("{file}: {e}"))?;
        if raw.functions.is_empty() && raw.components.is_empty() {
            return Err(format!(
                "{file}: `functions` is empty; declare at least one function or component"
            ));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let mut functions = Vec::with_capacity(raw.functions.len());
        let mut names = HashSet::new();
        let mut routes: HashSet<String> = RESERVED_ROUTES.iter().map(|r| r.to_string()).collect();
        for (index, raw) in raw.functions.into_iter().enumerate() {
            let label = if raw.name.is_empty() {
                format!("{file}: functions[{index}]")
            } else {
                format!("{file}: function `{}`", raw.name)
            };
            let function =
                check_function(raw, base, defaults).map_err(|e| format!("{label}: {e}"))?;
            if !names.insert(function.name.clone()) {
                return Err(format!(
                    "{label}: name: `{}` is declared twice",
                    function.name
                ));
            }
            for route in &function.routes {
                if !routes.insert(route.clone()) {
                    return Err(format!(
                        "{label}: routes: `{route}` is taken by {}",
                        if RESERVED_ROUTES.contains(&route.as_str()) {
                            "the app itself".to_string()
                        } else {
                            "another function".to_string()
                        }
                    ));
                }
            }
            functions.push(function);
        }
        let mut components: Vec<ComponentConfig> = Vec::with_capacity(raw.components.len());
        for (index, raw) in raw.components.into_iter().enumerate() {
            let label = if raw.name.is_empty() {
                format!("{file}: components[{index}]")
            } else {
                format!("{file}: component `{}`", raw.name)
            };
            let component =
                check_component(raw, base, defaults).map_err(|e| format!("{label}: {e}"))?;
            if !names.insert(component.name.clone()) {
                return Err(format!(
                    "{label}: name: `{}` is declared twice",
                    component.name
                ));
            }
            let prefix = &component.path;
            let under = |route: &str| route == prefix || route.starts_with(&format!("{prefix}/"));
            if let Some(taken) = routes.iter().find(|route| under(route)) {
                return Err(format!(
                    "{label}: path: `{prefix}` would hide the route `{taken}`"
                ));
            }
            if let Some(other) = components.iter().find(|other| {
                under(&other.path)
                    || other.path == "/"
                    || prefix.starts_with(&format!("{}/", other.path))
            }) {
                return Err(format!(
                    "{label}: path: `{prefix}` overlaps component `{}` at `{}`",
                    other.name, other.path
                ));
            }
            components.push(component);
        }
        Ok(FunctionsFile {
            path: path.to_path_buf(),
            functions,
            components,
        })
    }
}

/// Whether `name` is usable as a function name (and in a route).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Checks an entry's name and that its wasm file (relative to `base`)
/// exists; returns the file's path.
fn check_name_and_wasm(name: &str, wasm: &Path, base: &Path) -> Result<PathBuf, String> {
    if !valid_name(name) {
        return Err(format!(
            "name: `{name}` must be letters, digits, `-` or `_`"
        ));
    }
    let wasm = base.join(wasm);
    if !wasm.is_file() {
        return Err(format!("wasm: {} does not exist", wasm.display()));
    }
    Ok(wasm)
}

/// Whether `route` is a route or mount path a file may give: `/` then
/// letters, digits, `-`, `_`, `.` or `/`, not ending in `/`.
fn valid_route(route: &str) -> bool {
    route.starts_with('/')
        && route.len() > 1
        && !route.ends_with('/')
        && route
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

fn check_component(
    raw: RawComponent,
    base: &Path,
    defaults: &Defaults,
) -> Result<ComponentConfig, String> {
    use component_host::outbound::{Destination, Outbound};
    let wasm = check_name_and_wasm(&raw.name, &raw.wasm, base)?;
    let path = raw.path;
    if !valid_route(&path) {
        return Err(format!(
            "path: `{path}` must start with `/` and be letters, digits, `-`, `_`, `.` or `/`"
        ));
    }
    let limits = check_limits(&raw.limits, &defaults.limits)?;
    let env = component_host::component_env(
        defaults.app_id.as_deref(),
        defaults.dapr_http_port,
        raw.env,
    )?;
    let allowed = raw
        .allow_outbound
        .iter()
        .map(|d| {
            d.parse::<Destination>()
                .map_err(|e| format!("allowOutbound: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ComponentConfig {
        name: raw.name,
        wasm,
        path,
        settings: component_host::ComponentSettings {
            limits: limits.into(),
            env,
            outbound: Outbound::sidecar_and(defaults.dapr_http_port, allowed),
        },
    })
}

fn check_function(
    raw: RawFunction,
    base: &Path,
    defaults: &Defaults,
) -> Result<FunctionConfig, String> {
    let wasm = check_name_and_wasm(&raw.name, &raw.wasm, base)?;
    let mut routes = vec![format!("/fn/{}", raw.name)];
    for route in raw.routes {
        if !valid_route(&route) {
            return Err(format!(
                "routes: `{route}` must start with `/` and be letters, digits, `-`, `_`, `.` or `/`"
            ));
        }
        if routes.contains(&route) {
            return Err(format!("routes: `{route}` is given twice"));
        }
        routes.push(route);
    }
    if let Some(content_type) = &raw.content_type
        && (content_type.parse::<axum::http::HeaderValue>().is_err() || !content_type.contains('/'))
    {
        return Err(format!("contentType: `{content_type}` is not a media type"));
    }
    let limits = check_limits(&raw.limits, &defaults.limits)?;
    for model in &raw.models {
        if !defaults.models.contains(model) {
            return Err(format!(
                "models: no model named `{model}`; the app has: {}",
                if defaults.models.is_empty() {
                    "none".to_string()
                } else {
                    defaults.models.join(", ")
                }
            ));
        }
    }
    let dirs = raw
        .dirs
        .into_iter()
        .map(|dir| check_dir(base.join(&dir.host), dir.guest))
        .collect::<Result<Vec<_>, _>>()?;
    let exit_codes = check_exit_codes(raw.exit_codes)?;
    let build = raw.build.map(|raw| check_build(raw, base)).transpose()?;
    Ok(FunctionConfig {
        name: raw.name,
        wasm,
        args: raw.args,
        routes,
        content_type: raw.content_type,
        limits,
        models: raw.models,
        dirs,
        exit_codes,
        refuse_empty_input: raw.refuse_empty_input,
        strict_sandbox: raw.strict_sandbox,
        build,
    })
}

fn check_build(raw: RawBuild, base: &Path) -> Result<BuildSpec, String> {
    if raw.command.trim().is_empty() {
        return Err("build.command: empty; give the command that builds the wasm file".into());
    }
    if raw.watch.is_empty() {
        return Err("build.watch: empty; list the files or folders the build reads".into());
    }
    let watch = raw
        .watch
        .iter()
        .map(|path| {
            let path = base.join(path);
            if path.exists() {
                Ok(path)
            } else {
                Err(format!("build.watch: {} does not exist", path.display()))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    // The folder of `functions.yaml` given as a bare name is "".
    let dir = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base.to_path_buf()
    };
    Ok(BuildSpec {
        command: raw.command,
        dir,
        watch,
    })
}

/// Checks a read-only directory: the host side must be a directory, the
/// guest side an absolute path. Errors name the field (`dirs: ...`).
pub fn check_dir(host: PathBuf, guest: String) -> Result<ReadOnlyDir, String> {
    if !host.is_dir() {
        return Err(format!("dirs: {} is not a directory", host.display()));
    }
    if !guest.starts_with('/') {
        return Err(format!("dirs: guest path `{guest}` must be absolute"));
    }
    Ok(ReadOnlyDir { host, guest })
}

/// Checks `raw` into limits, each one not given taken from `defaults`; the
/// memory limit may not exceed the default's (the instance pool's slots).
/// Errors name the field (`limits.memory: ...`).
pub fn check_limits(raw: &LimitsSpec, defaults: &CallLimits) -> Result<CallLimits, String> {
    let size = |field: &str, text: &Option<String>, default: usize| -> Result<usize, String> {
        match text {
            None => Ok(default),
            Some(text) => match parse_size(text) {
                Ok(0) => Err(format!("limits.{field}: must be greater than zero")),
                Ok(bytes) => Ok(bytes),
                Err(e) => Err(format!("limits.{field}: {e}")),
            },
        }
    };
    let deadline = match &raw.timeout {
        None => defaults.deadline,
        Some(text) => match parse_duration(text) {
            Ok(d) if d.is_zero() => return Err("limits.timeout: must be greater than zero".into()),
            Ok(d) => d,
            Err(e) => return Err(format!("limits.timeout: {e}")),
        },
    };
    let limits = CallLimits {
        max_memory_bytes: size("memory", &raw.memory, defaults.max_memory_bytes)?,
        deadline,
        max_input_bytes: size("maxInput", &raw.max_input, defaults.max_input_bytes)?,
        max_output_bytes: size("maxOutput", &raw.max_output, defaults.max_output_bytes)?,
    };
    if limits.max_memory_bytes > defaults.max_memory_bytes {
        return Err(format!(
            "limits.memory: {} bytes is over the app's --max-memory of {} bytes",
            limits.max_memory_bytes, defaults.max_memory_bytes
        ));
    }
    Ok(limits)
}

fn check_exit_codes(raw: BTreeMap<String, ExitAnswer>) -> Result<ExitCodes, String> {
    let mut exit_codes = ExitCodes::default();
    for (key, answer) in raw {
        if !(400..=599).contains(&answer.status) {
            return Err(format!(
                "exitCodes.{key}.status: {} is not an error status (400 to 599)",
                answer.status
            ));
        }
        if answer.error_code.is_empty() {
            return Err(format!("exitCodes.{key}.errorCode: must not be empty"));
        }
        if key == "default" {
            exit_codes.default = answer;
            continue;
        }
        match key.parse::<i32>() {
            Ok(code) if (1..=255).contains(&code) => {
                exit_codes.codes.insert(code, answer);
            }
            _ => {
                return Err(format!(
                    "exitCodes: `{key}` is not an exit code (1 to 255) or `default`"
                ));
            }
        }
    }
    Ok(exit_codes)
}
