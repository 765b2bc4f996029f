//! `dapr-wasm new NAME --lang rust|c|assemblyscript|js`: a function skeleton that builds,
//! added to a functions file, with the commands that build it, serve it
//! and call it over HTTP and as a Dapr binding.
//!
//! The templates are in `crates/cli/templates/`; `{{name}}` in them is
//! replaced with the function's name, `{{engine}}` with the path of the
//! JavaScript engine (`quickjs.wasm`) a JavaScript function runs on.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

/// The languages `new` has a template for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Lang {
    /// Rust, built with cargo for wasm32-wasip1.
    Rust,
    /// C, built with Debian's clang for wasm32-wasi.
    C,
    /// AssemblyScript, built with asc and the WASI shim from npm.
    Assemblyscript,
    /// JavaScript, run by the QuickJS function (no build).
    Js,
}

/// The folder the JavaScript function finds its script in.
const JS_GUEST_DIR: &str = "/app";

/// Flags of `dapr-wasm new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The function's name (letters, digits, `-` or `_`).
    pub name: String,

    /// The language of the skeleton.
    #[arg(long, value_enum, default_value = "rust")]
    pub lang: Lang,

    /// Where to write it [default: ./NAME].
    #[arg(long)]
    pub dir: Option<PathBuf>,

    /// The functions file to add it to (created if missing).
    #[arg(long, default_value = "functions.yaml")]
    pub config: PathBuf,
}

/// Each template file: its path in the skeleton, and its text.
fn template(lang: Lang) -> &'static [(&'static str, &'static str)] {
    match lang {
        Lang::Rust => &[
            (
                "Cargo.toml",
                include_str!("../templates/rust/Cargo.toml.txt"),
            ),
            (
                "src/main.rs",
                include_str!("../templates/rust/src/main.rs.txt"),
            ),
            ("build.sh", include_str!("../templates/rust/build.sh.txt")),
        ],
        Lang::C => &[
            ("main.c", include_str!("../templates/c/main.c.txt")),
            ("build.sh", include_str!("../templates/c/build.sh.txt")),
        ],
        Lang::Assemblyscript => &[
            (
                "package.json",
                include_str!("../templates/assemblyscript/package.json.txt"),
            ),
            (
                "assembly/index.ts",
                include_str!("../templates/assemblyscript/assembly/index.ts.txt"),
            ),
            (
                "build.sh",
                include_str!("../templates/assemblyscript/build.sh.txt"),
            ),
        ],
        Lang::Js => &[
            ("index.js", include_str!("../templates/js/index.js.txt")),
            ("build.sh", include_str!("../templates/js/build.sh.txt")),
        ],
    }
}

/// The JavaScript engine: `quickjs.wasm` in `$DAPR_WASM_FUNCTIONS_DIR`, or
/// in the `build/functions` of the checkout this `dapr-wasm` was built in,
/// or of the working directory.
fn find_js_engine() -> anyhow::Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("DAPR_WASM_FUNCTIONS_DIR") {
        candidates.push(PathBuf::from(dir).join("quickjs.wasm"));
    }
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(
            exe.ancestors()
                .skip(1)
                .map(|dir| dir.join("build/functions/quickjs.wasm")),
        );
    }
    candidates.push(PathBuf::from("build/functions/quickjs.wasm"));
    candidates
        .into_iter()
        .find(|path| path.is_file())
        .map(|path| std::path::absolute(&path).unwrap_or(path))
        .context(
            "cannot find the JavaScript engine, quickjs.wasm: build it with scripts/build-functions.sh \
             in the dapr-wasm repo (it needs Debian's clang for wasm32-wasi), or set \
             DAPR_WASM_FUNCTIONS_DIR to the folder that has it",
        )
}

/// Writes the skeleton and the functions-file entry, and says what next.
pub fn new(args: NewArgs) -> anyhow::Result<ExitCode> {
    let name = &args.name;
    if !function_app::config::valid_name(name) {
        bail!("the name `{name}` must be letters, digits, `-` or `_`");
    }
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists()
        && dir
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!("{} already exists and is not empty", dir.display());
    }
    let existing = read_functions_file(&args.config)?;
    if declared_names(&existing, &args.config)?.contains(name) {
        bail!(
            "{} already declares a function `{name}`",
            args.config.display()
        );
    }
    let engine = match args.lang {
        Lang::Js => find_js_engine()?.display().to_string(),
        _ => String::new(),
    };
    for (path, text) in template(args.lang) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let text = text
            .replace("{{name}}", name)
            .replace("{{engine}}", &engine);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let wasm = dir.join(format!("{name}.wasm"));
    let mut entry = format!(
        "  - name: {name}\n    wasm: {}\n    contentType: application/json\n    # args: [--shout]\n",
        relative_to_file(&wasm, &args.config).display()
    );
    let folder = relative_to_file(&dir, &args.config);
    // The binding needs the same folder: `dirs` metadata, HOST:GUEST.
    let mut binding_dirs = String::new();
    if let Lang::Js = args.lang {
        // Read at each call: nothing to rebuild.
        entry.push_str(&format!(
            "    dirs: [{{host: {}, guest: {JS_GUEST_DIR}}}]   # where index.js is\n",
            folder.display()
        ));
        binding_dirs = format!(
            "\n      - name: dirs\n        value: \"{}:{JS_GUEST_DIR}\"",
            dir.display()
        );
    } else {
        entry.push_str(&format!(
            "    build:   # `dapr-wasm functions --watch` runs it when a file in `watch` changes\n      \
             command: bash {}\n      watch: [{}]\n",
            folder.join("build.sh").display(),
            folder.display()
        ));
    }
    let text = if existing.is_empty() {
        format!(
            "# Functions served by `dapr-wasm functions --config {}`.\nfunctions:\n{entry}",
            args.config.display()
        )
    } else {
        format!(
            "{}{}{entry}",
            existing,
            if existing.ends_with('\n') { "" } else { "\n" }
        )
    };
    std::fs::write(&args.config, text)
        .with_context(|| format!("cannot write {}", args.config.display()))?;

    let build = dir.join("build.sh");
    let config = args.config.display();
    println!(
        "Wrote a {lang:?} function `{name}` in {dir}, and added it to {config}.\n\
         \n\
         Build it:\n    bash {build}\n\
         \n\
         Serve it (it reloads when you build again; with --watch it also rebuilds when you save):\n    \
         dapr-wasm functions --config {config} --app-port 9010 --watch\n\
         \n\
         Call it over HTTP:\n    echo -n Dapr | curl --data-binary @- http://127.0.0.1:9010/fn/{name}\n    \
         {{\"greeting\":\"Hello, Dapr!\"}}\n\
         \n\
         Under Dapr, from any app:  POST http://127.0.0.1:$DAPR_HTTP_PORT/v1.0/invoke/<app-id>/method/fn/{name}\n\
         \n\
         Or run it as a Dapr output binding, with no app, from a component in your resources path:\n\
         \n    apiVersion: dapr.io/v1alpha1\n    kind: Component\n    metadata:\n      name: {name}\n    spec:\n      type: bindings.wasm\n      version: v1\n      metadata:\n      - name: url\n        value: \"file://{wasm}\"{binding_dirs}\n\
         \n    curl -d '{{\"operation\":\"execute\",\"data\":\"Dapr\",\"metadata\":{{\"args\":\"--shout\"}}}}' http://127.0.0.1:3500/v1.0/bindings/{name}",
        lang = args.lang,
        dir = dir.display(),
        build = build.display(),
        wasm = wasm.display(),
    );
    Ok(ExitCode::SUCCESS)
}

/// The functions file's text, or "" when there is none yet.
fn read_functions_file(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            if !text.lines().any(|line| line.trim_end() == "functions:") {
                bail!(
                    "{} has no `functions:` list to add to; add the entry by hand",
                    path.display()
                );
            }
            Ok(text)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The names a functions file's text declares.
fn declared_names(text: &str, path: &Path) -> anyhow::Result<Vec<String>> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let yaml: serde_yaml::Value = serde_yaml::from_str(text)
        .with_context(|| format!("{} is not valid YAML", path.display()))?;
    Ok(yaml["functions"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|f| f["name"].as_str().map(str::to_string))
        .collect())
}

/// `path` as the functions file at `file` should name it: relative to the
/// file's folder when both are relative, else as it is.
fn relative_to_file(path: &Path, file: &Path) -> PathBuf {
    let base = file.parent().unwrap_or(Path::new(""));
    let climbs = base
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir));
    if path.is_absolute() || base.is_absolute() || climbs {
        return std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    }
    let ups = base.components().filter(|c| c.as_os_str() != ".").count();
    let mut relative = PathBuf::new();
    for _ in 0..ups {
        relative.push("..");
    }
    relative.join(path)
}
