//! Rebuilding functions from their sources: `dapr-wasm functions --watch`
//! (and `dapr-wasm up --watch`, which turns it on in every app).
//!
//! A function whose entry has a `build` section ([`BuildSpec`]: a command
//! and the files or folders it reads) is rebuilt when any of those change,
//! as `spin watch` does. The command runs in the functions file's folder,
//! off the request path; it writes the wasm file, and the catalog's live
//! reload ([`Catalog::watch`]) then swaps the new version in like any
//! other replaced file. A build that fails leaves the old version serving,
//! with its output in the log and in `GET /fn` (`buildError`).
//!
//! Sources are compared by a stamp of every file's path, size and
//! modification time (`.wasm` files, hidden folders, `target` and
//! `node_modules` left out, so a build's own output does not trigger the
//! next one). A function is built when its stamp changes, and, the first
//! time it is seen, when a source is newer than its wasm file (as `make`
//! would: sources edited while the app was down). A build starts once the
//! stamp has held still for one poll, so an editor saving several files
//! starts one build.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::Catalog;
use crate::config::BuildSpec;

/// Lines of a failed build's output kept for the log and `GET /fn`.
const OUTPUT_TAIL_LINES: usize = 20;

/// Polls every function's sources every `interval` and rebuilds what
/// changed, until the returned task is dropped or aborted.
pub fn watch_sources(catalog: Arc<Catalog>, interval: Duration) -> tokio::task::JoinHandle<()> {
    catalog.set_watching();
    tokio::spawn(async move {
        // Per function: the sources' stamp at the last build (or when first
        // seen, unless the wasm file is older than its sources), and at the
        // last poll.
        let mut built: HashMap<String, Option<u64>> = HashMap::new();
        let mut seen: HashMap<String, u64> = HashMap::new();
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let specs: Vec<(String, PathBuf, BuildSpec)> = catalog
                .current()
                .functions()
                .iter()
                .filter_map(|served| {
                    let build = served.config.build.clone()?;
                    Some((
                        served.config.name.clone(),
                        served.config.wasm.clone(),
                        build,
                    ))
                })
                .collect();
            let stamps = {
                let specs = specs.clone();
                tokio::task::spawn_blocking(move || {
                    specs
                        .iter()
                        .map(|(name, wasm, spec)| (name.clone(), Sources::of(&spec.watch, wasm)))
                        .collect::<HashMap<_, _>>()
                })
                .await
                .unwrap_or_default()
            };
            for (name, _, spec) in &specs {
                let Some(sources) = stamps.get(name) else {
                    continue;
                };
                let stamp = sources.stamp;
                let last_built = *built
                    .entry(name.clone())
                    .or_insert((!sources.newer_than_wasm).then_some(stamp));
                let settled = seen.insert(name.clone(), stamp) == Some(stamp);
                if last_built != Some(stamp) && settled {
                    built.insert(name.clone(), Some(stamp));
                    let error = run_build(name, spec).await.err();
                    catalog.set_build_error(name, error);
                }
            }
        }
    })
}

/// Runs `spec`'s command for the function `name`; the error is the end of
/// its output.
async fn run_build(name: &str, spec: &BuildSpec) -> Result<(), String> {
    tracing::info!(function = %name, command = %spec.command, "sources changed; rebuilding");
    let started = Instant::now();
    let output = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&spec.command)
        .current_dir(&spec.dir)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    let error = match output {
        Ok(output) if output.status.success() => {
            tracing::info!(function = %name, took = ?started.elapsed(), "rebuilt; the new wasm file loads at the next reload check");
            return Ok(());
        }
        Ok(output) => {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(OUTPUT_TAIL_LINES)..].join("\n");
            format!("`{}` failed ({}):\n{tail}", spec.command, output.status)
        }
        Err(e) => format!("`{}` could not start: {e}", spec.command),
    };
    tracing::error!(function = %name, error = %error, "the build failed; the old version keeps serving");
    Err(error)
}

/// What a function's sources look like now.
struct Sources {
    /// Changes when a file is added, removed, resized or modified.
    stamp: u64,
    /// Whether a source file was modified after the wasm file.
    newer_than_wasm: bool,
}

impl Sources {
    fn of(paths: &[PathBuf], wasm: &Path) -> Sources {
        let mut files = Vec::new();
        for path in paths {
            collect_files(path, &mut files);
        }
        files.sort();
        let mut hasher = DefaultHasher::new();
        files.hash(&mut hasher);
        let built = std::fs::metadata(wasm)
            .and_then(|meta| meta.modified())
            .ok();
        let newest = files.iter().filter_map(|(_, _, modified)| *modified).max();
        Sources {
            stamp: hasher.finish(),
            newer_than_wasm: match (newest, built) {
                (Some(newest), Some(built)) => newest > built,
                _ => false,
            },
        }
    }
}

/// Each source file under `path`: its path, size and modification time.
fn collect_files(path: &Path, files: &mut Vec<(PathBuf, u64, Option<SystemTime>)>) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let Ok(entries) = std::fs::read_dir(path) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name == "target" || name == "node_modules" {
                continue;
            }
            collect_files(&entry.path(), files);
        }
    } else if path.extension().is_none_or(|extension| extension != "wasm") {
        files.push((path.to_path_buf(), meta.len(), meta.modified().ok()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets `path`'s modification time to `seconds` ago (file times are
    /// as coarse as the kernel's clock tick, so the test does not rely on
    /// two writes in a row getting different ones).
    fn age(path: &Path, seconds: u64) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(seconds))
            .unwrap();
    }

    #[test]
    fn the_stamp_changes_with_sources_not_with_built_wasm() {
        let dir = tempfile::tempdir().unwrap();
        let watched = [dir.path().to_path_buf()];
        let wasm = dir.path().join("out.wasm");
        let stamp = || Sources::of(&watched, &wasm).stamp;
        let source = dir.path().join("main.c");
        std::fs::write(&source, "int main(){}").unwrap();
        age(&source, 20);
        let first = stamp();
        assert_eq!(first, stamp());
        assert!(!Sources::of(&watched, &wasm).newer_than_wasm, "no wasm yet");

        std::fs::write(&wasm, "built").unwrap();
        age(&wasm, 10);
        std::fs::create_dir(dir.path().join("target")).unwrap();
        std::fs::write(dir.path().join("target/x.o"), "built").unwrap();
        assert_eq!(first, stamp(), "build output changed it");
        assert!(!Sources::of(&watched, &wasm).newer_than_wasm);

        std::fs::write(&source, "int main(){return 1;}").unwrap();
        let edited = stamp();
        assert_ne!(first, edited);
        assert!(Sources::of(&watched, &wasm).newer_than_wasm);
        std::fs::write(dir.path().join("util.h"), "").unwrap();
        assert_ne!(edited, stamp());
    }
}
