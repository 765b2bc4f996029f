//! quickjs: JavaScript functions for dapr-wasm.
//!
//! A plain WASI preview 1 command with the QuickJS engine (through the
//! crates.io crate `rquickjs`) inside. The user's script is not compiled
//! in: it is `/app/index.js`, a file in the read-only directory the
//! functions file (`dirs`) or the `bindings.wasm` component (`dirs`
//! metadata) gives the function, so one build of this engine serves every
//! script and changing a script needs no build.
//!
//! ```text
//! quickjs [--script PATH] [ARG...]
//! ```
//!
//! The script defines `function handle(input, args)`. `input` is stdin as
//! a string (it must be UTF-8), `args` the strings of argv after the
//! function's name (and `--script PATH`, which reads another file). What
//! `handle` returns is the answer: a string as it is, `undefined` or
//! `null` as nothing, anything else as JSON followed by a newline.
//! `console.log` and `console.error` write to stderr.
//!
//! Exit codes follow the other functions' convention (the functions file
//! maps them to statuses): 1 when the function cannot run (bad argv, a
//! script that cannot be read or parsed, no `handle`), 2 when `handle`
//! throws, which refuses the input (its message is the reason, on stderr).

use std::io::{Read, Write};
use std::process::ExitCode;

use rquickjs::context::EvalOptions;
use rquickjs::prelude::{Coerced, Rest};
use rquickjs::{CatchResultExt, CaughtError, Context, Ctx, Function, Object, Runtime, Value};

/// Where the script is unless `--script` says otherwise.
const DEFAULT_SCRIPT: &str = "/app/index.js";

/// Exit code: the function cannot run as configured.
const CANNOT_RUN: u8 = 1;
/// Exit code: the script's `handle` threw, refusing this input.
const REFUSED: u8 = 2;

/// Why the function stopped: an exit code and a one-line reason for stderr.
struct Failure {
    code: u8,
    reason: String,
}

impl Failure {
    fn cannot_run(reason: impl Into<String>) -> Self {
        Self {
            code: CANNOT_RUN,
            reason: reason.into(),
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(answer) => match std::io::stdout().lock().write_all(&answer) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("cannot write the answer: {error}");
                ExitCode::from(CANNOT_RUN)
            }
        },
        Err(failure) => {
            eprintln!("{}", failure.reason);
            ExitCode::from(failure.code)
        }
    }
}

fn run() -> Result<Vec<u8>, Failure> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let script_path = if args.first().is_some_and(|arg| arg == "--script") {
        if args.len() < 2 {
            return Err(Failure::cannot_run(
                "usage: quickjs [--script PATH] [ARG...]",
            ));
        }
        args.drain(..2).nth(1).unwrap_or_default()
    } else {
        DEFAULT_SCRIPT.to_string()
    };
    let script = std::fs::read_to_string(&script_path).map_err(|error| {
        Failure::cannot_run(format!(
            "cannot read the script {script_path}: {error} (give its folder to the function as the read-only directory /app)"
        ))
    })?;

    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|error| Failure::cannot_run(format!("cannot read stdin: {error}")))?;
    let input = String::from_utf8(input).map_err(|_| Failure {
        code: REFUSED,
        reason: "the input is not UTF-8 text".into(),
    })?;

    let runtime =
        Runtime::new().map_err(|error| Failure::cannot_run(format!("QuickJS: {error}")))?;
    let context = Context::full(&runtime)
        .map_err(|error| Failure::cannot_run(format!("QuickJS: {error}")))?;
    context.with(|ctx| {
        install_console(&ctx).map_err(|error| Failure::cannot_run(format!("QuickJS: {error}")))?;
        let mut options = EvalOptions::default();
        options.filename = Some(script_path.clone());
        ctx.eval_with_options::<(), _>(script, options)
            .catch(&ctx)
            .map_err(|error| {
                Failure::cannot_run(format!("{script_path}: {}", describe(&error, true)))
            })?;
        let handle: Function = ctx.globals().get("handle").map_err(|_| {
            Failure::cannot_run(format!("{script_path} defines no function `handle`"))
        })?;
        let answer: Value = handle
            .call((input, args))
            .catch(&ctx)
            .map_err(|error| Failure {
                code: REFUSED,
                reason: describe(&error, false),
            })?;
        encode(&ctx, answer)
    })
}

/// `console.log` and `console.error`, both to stderr: stdout is the answer.
fn install_console(ctx: &Ctx<'_>) -> rquickjs::Result<()> {
    let console = Object::new(ctx.clone())?;
    for name in ["log", "error"] {
        console.set(
            name,
            Function::new(ctx.clone(), |parts: Rest<Coerced<String>>| {
                let line: Vec<String> = parts.0.into_iter().map(|part| part.0).collect();
                eprintln!("{}", line.join(" "));
            })?,
        )?;
    }
    ctx.globals().set("console", console)
}

/// The answer's bytes: a string as it is, nothing for `undefined` and
/// `null`, JSON and a newline for anything else.
fn encode<'js>(ctx: &Ctx<'js>, answer: Value<'js>) -> Result<Vec<u8>, Failure> {
    if answer.is_undefined() || answer.is_null() {
        return Ok(Vec::new());
    }
    if let Some(text) = answer.as_string() {
        return text
            .to_string()
            .map(String::into_bytes)
            .map_err(|error| Failure::cannot_run(format!("the answer: {error}")));
    }
    let json = ctx
        .json_stringify(answer)
        .catch(ctx)
        .map_err(|error| {
            Failure::cannot_run(format!(
                "the answer is not JSON: {}",
                describe(&error, false)
            ))
        })?
        .ok_or_else(|| Failure::cannot_run("the answer is not JSON (a function?)"))?;
    let mut bytes = json
        .to_string()
        .map_err(|error| Failure::cannot_run(format!("the answer: {error}")))?
        .into_bytes();
    bytes.push(b'\n');
    Ok(bytes)
}

/// A thrown value as one line: an Error's message (with where the
/// script raised it, when `place` is asked for), or the value itself.
fn describe(error: &CaughtError<'_>, place: bool) -> String {
    match error {
        CaughtError::Exception(exception) => {
            let message = exception.message().unwrap_or_default();
            let name = exception.as_object().get::<_, String>("name").ok();
            let message = match name {
                Some(name) if name != "Error" => format!("{name}: {message}"),
                _ => message,
            };
            let at = exception
                .stack()
                .and_then(|stack| stack.lines().next().map(|line| line.trim().to_owned()))
                .filter(|line| !line.is_empty());
            match at {
                Some(at) if place => format!("{message} ({at})"),
                _ => message,
            }
        }
        CaughtError::Value(value) => match value.as_string().and_then(|text| text.to_string().ok())
        {
            Some(text) => text,
            None => format!("threw {value:?}"),
        },
        CaughtError::Error(error) => error.to_string(),
    }
}
