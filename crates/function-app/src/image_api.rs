//! `dapr-wasm image-api --function NAME=PATH`: the image apps' shorthand for
//! a function app serving one image function. It is the same app as
//! `dapr-wasm functions` with this entry, which a functions file can spell
//! out (deploy/functions/grayscale.yaml):
//!
//! - routes `POST /fn/NAME`, `POST /api/image` (the seed's) and `POST /NAME`;
//! - the image exit codes ([`image_exit_codes`]);
//! - every model the app has, for a function that imports WASI-NN.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use function_host::{CallLimits, Function};

use crate::args::{AppConfig, ServeArgs};
use crate::catalog::{Served, Source};
use crate::config::{ExitAnswer, ExitCodes, FunctionConfig, RESERVED_ROUTES, valid_name};

/// Flags of `dapr-wasm image-api`.
#[derive(Debug, Clone, Args)]
pub struct ImageApiArgs {
    /// The function to serve, as NAME=PATH to a WASI command (.wasm).
    #[arg(long, value_name = "NAME=PATH", env = "DAPR_WASM_FUNCTION")]
    pub function: String,

    /// Everything else; `--app-port` defaults to 9003 for the `classify`
    /// function (the seed's classify port) and 9004 otherwise.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The app port when none is given: the seed's ports.
pub fn default_app_port(function_name: &str) -> u16 {
    if function_name == "classify" {
        9003
    } else {
        9004
    }
}

/// What the image functions' exit codes mean: 2 an unsupported format
/// (415), 3 an image over the function's limits (413), 4 a failed
/// inference (500), 5 an unknown model (400); anything else an invalid
/// image (400).
pub fn image_exit_codes() -> ExitCodes {
    let answer = |status, code: &str| ExitAnswer {
        status,
        error_code: code.to_string(),
    };
    ExitCodes {
        codes: BTreeMap::from([
            (2, answer(415, "ERR_UNSUPPORTED_IMAGE")),
            (3, answer(413, "ERR_IMAGE_TOO_LARGE")),
            (4, answer(500, "ERR_INFERENCE_FAILED")),
            (5, answer(400, "ERR_UNKNOWN_MODEL")),
        ]),
        default: answer(400, "ERR_INVALID_IMAGE"),
    }
}

/// The functions-file entry `image-api` serves `name` from `wasm` with,
/// with `limits` and (if it imports WASI-NN) `models`.
pub fn image_function(
    name: &str,
    wasm: PathBuf,
    limits: CallLimits,
    models: Vec<String>,
) -> FunctionConfig {
    // classify times its stages for the traces (`--timings`: one stderr
    // line the app reads, see `routes`).
    let args = if name == "classify" {
        vec!["--timings".to_string()]
    } else {
        Vec::new()
    };
    FunctionConfig {
        name: name.to_string(),
        wasm,
        args,
        routes: vec![
            format!("/fn/{name}"),
            "/api/image".into(),
            format!("/{name}"),
        ],
        content_type: None,
        limits,
        models,
        dirs: Vec::new(),
        exit_codes: image_exit_codes(),
        refuse_empty_input: true,
        strict_sandbox: false,
        build: None,
    }
}

impl ImageApiArgs {
    /// Checks the flags and derives the app's configuration.
    pub fn validate(&self) -> Result<AppConfig, String> {
        let (name, path) = self
            .function
            .split_once('=')
            .ok_or_else(|| format!("--function `{}` must be NAME=PATH", self.function))?;
        if !valid_name(name) {
            return Err(format!(
                "--function name `{name}` must be letters, digits, `-` or `_`"
            ));
        }
        if name == "api" || RESERVED_ROUTES.contains(&format!("/{name}").as_str()) {
            return Err(format!(
                "--function name `{name}` clashes with a built-in route"
            ));
        }
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(format!(
                "--function {name}: {} does not exist (build the functions first: bash scripts/up.sh)",
                path.display()
            ));
        }
        let mut config = self
            .serve
            .validate(Source::Fixed(Vec::new()), default_app_port(name))?;
        let function = image_function(
            name,
            path,
            config.defaults.limits,
            config.defaults.models.clone(),
        );
        config.source = Source::Fixed(vec![function]);
        Ok(config)
    }
}

/// `function`, already loaded with its limits and models, as the image
/// apps serve it; `max_input_bytes` caps its input.
pub fn loaded_image_function(function: Function, max_input_bytes: usize) -> Served {
    let limits = CallLimits {
        max_input_bytes,
        ..*function.limits()
    };
    let models = function
        .models()
        .map(|m| m.names().map(str::to_string).collect())
        .unwrap_or_default();
    let config = image_function(function.name(), PathBuf::new(), limits, models);
    Served::preloaded(config, function.with_limits(limits))
}
