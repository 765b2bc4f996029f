//! WASI-NN through the host: the real `classify` guest on real photos, with
//! ONNX Runtime (and, with the `tract` feature, tract against it), and the
//! ways model loading can fail.
//!
//! Needs the guests (`build/functions/`) and the prepared models
//! (`dapr-wasm models fetch`); `scripts/test.sh` provides both.

use bytes::Bytes;
use function_host::nn::{Backend, ModelSpec, Models, NnConfig, NnError};
use function_host::{CallError, Function, FunctionHost, HostConfig};
use serde_json::Value;

use test_support::{repo_path, wasm_path};

fn model_files() -> model_files::ModelFiles {
    let dir = local_dirs::models_dir().expect("HOME is set");
    let files = model_files::ModelFiles::in_dir(&dir);
    assert!(
        files.all_converted(),
        "a model is missing from {}: run `dapr-wasm models fetch` (scripts/test.sh does)",
        dir.display()
    );
    files
}

fn nn_config(backend: Backend) -> NnConfig {
    let files = model_files();
    NnConfig {
        models: vec![ModelSpec {
            name: model_files::MODEL_NAME.into(),
            path: files.default_onnx(),
        }],
        backend,
        onnxruntime_lib: files.onnxruntime,
        threads: 1,
        sessions: 1,
    }
}

fn classify() -> Function {
    let host = FunctionHost::new(HostConfig {
        cache_dir: None,
        ..HostConfig::default()
    })
    .unwrap();
    host.load_file("classify", &wasm_path("classify")).unwrap()
}

fn answer(function: &Function, photo: &str) -> Value {
    let input = std::fs::read(repo_path(&format!("testdata/{photo}"))).unwrap();
    let output = function
        .call_blocking(Bytes::from(input), &[] as &[&str])
        .unwrap_or_else(|e| panic!("{photo}: {e}"));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn top5(answer: &Value) -> Vec<(u64, f64)> {
    answer["top5"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["index"].as_u64().unwrap(),
                p["probability"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// ImageNet's domestic cats: tabby, tiger cat, Persian, Siamese, Egyptian cat.
const CAT_CLASSES: std::ops::RangeInclusive<u64> = 281..=285;
const ESPRESSO: u64 = 967;

const PHOTOS: [&str; 4] = [
    "cat.jpg",
    "coffee-1024x768.jpg",
    "coffee.png",
    "rocket.webp",
];

fn onnxruntime_models() -> Models {
    if model_files::onnxruntime_lib().is_none() {
        panic!("no ONNX Runtime is pinned for this platform; this test needs it");
    }
    let models = Models::load(&nn_config(Backend::OnnxRuntime)).unwrap();
    assert_eq!(models.backend(), Backend::OnnxRuntime);
    models
}

#[test]
fn photos_get_the_right_classes() {
    let function = classify();
    assert!(function.uses_wasi_nn());
    let function = function.with_models(onnxruntime_models());
    for photo in PHOTOS {
        let answer = answer(&function, photo);
        let index = answer["index"].as_u64().unwrap();
        match photo {
            "cat.jpg" => assert!(CAT_CLASSES.contains(&index), "cat.jpg: {answer}"),
            "coffee-1024x768.jpg" | "coffee.png" => {
                assert_eq!(index, ESPRESSO, "{photo}: {answer}")
            }
            _ => {}
        }
        assert_eq!(answer["label"], answer["top5"][0]["label"]);
        assert!(answer["sentence"].as_str().unwrap().starts_with("It "));
    }
}

#[cfg(feature = "tract")]
#[test]
fn both_backends_agree() {
    let tract = Models::load(&nn_config(Backend::Tract)).unwrap();
    assert_eq!(tract.backend(), Backend::Tract);
    let with_tract = classify().with_models(tract);
    let with_ort = classify().with_models(onnxruntime_models());
    for photo in PHOTOS {
        let a = answer(&with_tract, photo);
        let b = answer(&with_ort, photo);
        eprintln!("{photo}: tract {a}\n{photo}: onnxruntime {b}");
        assert_eq!(a["index"], b["index"], "{photo}: top-1 differs");
        for ((ia, pa), (ib, pb)) in top5(&a).into_iter().zip(top5(&b)) {
            assert_eq!(ia, ib, "{photo}: the top 5 differ");
            assert!((pa - pb).abs() < 1e-3, "{photo}: class {ia}: {pa} vs {pb}");
        }
    }
}

#[test]
fn bad_images_fail_before_inference_with_the_usual_exit_codes() {
    let function = classify().with_models(onnxruntime_models());
    for (input, code) in [
        (&b"not an image"[..], 2),
        (&b"\x89PNG\r\n\x1a\n\0\0"[..], 1),
    ] {
        match function.call_blocking(Bytes::from_static(input), &[] as &[&str]) {
            Err(CallError::BadInput { exit_code, .. }) => assert_eq!(exit_code, code),
            other => panic!("expected exit code {code}, got {other:?}"),
        }
    }
}

#[test]
fn without_models_the_guest_reports_a_failed_inference() {
    let photo = std::fs::read(repo_path("testdata/cat.jpg")).unwrap();
    match classify().call_blocking(Bytes::from(photo), &[] as &[&str]) {
        Err(CallError::BadInput {
            exit_code: 4,
            stderr,
        }) => {
            assert!(stderr.contains("efficientnet-lite0"), "{stderr}")
        }
        other => panic!("expected exit code 4, got {other:?}"),
    }
}

#[test]
fn only_functions_that_import_wasi_nn_get_it() {
    let host = FunctionHost::new(HostConfig {
        cache_dir: None,
        ..HostConfig::default()
    })
    .unwrap();
    let grayscale = host
        .load_file("grayscale", &wasm_path("grayscale"))
        .unwrap();
    assert!(!grayscale.uses_wasi_nn());
}

#[test]
fn asking_for_onnxruntime_without_its_library_fails_clearly() {
    let mut config = nn_config(Backend::OnnxRuntime);
    config.onnxruntime_lib = Some("/nonexistent/libonnxruntime.so".into());
    let err = Models::load(&config).unwrap_err();
    assert!(matches!(err, NnError::OnnxRuntimeUnavailable(_)), "{err}");
    assert!(
        err.to_string()
            .contains("/nonexistent/libonnxruntime.so does not exist"),
        "{err}"
    );

    config.onnxruntime_lib = None;
    let err = Models::load(&config).unwrap_err();
    assert!(err.to_string().contains("models fetch"), "{err}");
}

#[cfg(feature = "tract")]
#[test]
fn auto_falls_back_to_tract_when_the_library_is_missing() {
    let mut config = nn_config(Backend::Auto);
    config.onnxruntime_lib = Some("/nonexistent/libonnxruntime.so".into());
    assert_eq!(Models::load(&config).unwrap().backend(), Backend::Tract);
}

#[cfg(not(feature = "tract"))]
#[test]
fn auto_without_the_library_or_tract_fails_with_the_fix() {
    let mut config = nn_config(Backend::Auto);
    config.onnxruntime_lib = Some("/nonexistent/libonnxruntime.so".into());
    let err = Models::load(&config).unwrap_err();
    assert!(matches!(err, NnError::OnnxRuntimeUnavailable(_)), "{err}");
    assert!(err.to_string().contains("models fetch"), "{err}");

    let err = Models::load(&nn_config(Backend::Tract)).unwrap_err();
    assert!(matches!(err, NnError::TractNotBuilt), "{err}");
    assert!(err.to_string().contains("--features tract"), "{err}");
}

#[test]
fn a_missing_model_file_names_the_model() {
    let mut config = nn_config(Backend::OnnxRuntime);
    config.models[0].path = "/nonexistent/model.onnx".into();
    let err = Models::load(&config).unwrap_err();
    assert!(err.to_string().contains("efficientnet-lite0"), "{err}");
}

#[test]
fn a_guest_passing_bad_pointers_to_wasi_nn_gets_an_error_and_others_keep_working() {
    let host = FunctionHost::new(HostConfig {
        cache_dir: None,
        ..HostConfig::default()
    })
    .unwrap();
    let models = onnxruntime_models();
    let abuse = host
        .load_file("nn-abuse", &wasm_path("nn-abuse"))
        .unwrap()
        .with_models(models.clone());
    assert!(abuse.uses_wasi_nn());
    // wasmtime-wasi-nn 48 panics on an out-of-bounds guest pointer
    // (`unimplemented!` in its error conversion); the host contains it.
    match abuse.call_blocking(Bytes::new(), &[] as &[&str]) {
        Err(CallError::Trap { message, .. }) => {
            assert!(message.contains("a host function failed"), "{message}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    let classify = classify().with_models(models);
    let answer = answer(&classify, "coffee.png");
    assert_eq!(answer["index"].as_u64(), Some(ESPRESSO));
}

#[test]
fn concurrent_calls_on_a_pool_of_onnx_runtime_sessions_give_each_photo_its_own_answer() {
    if model_files::onnxruntime_lib().is_none() {
        panic!("no ONNX Runtime is pinned for this platform; this test needs it");
    }
    let alone = classify().with_models(Models::load(&nn_config(Backend::OnnxRuntime)).unwrap());
    let expected: Vec<Value> = ["cat.jpg", "coffee.png"]
        .iter()
        .map(|photo| answer(&alone, photo))
        .collect();
    let pooled = classify().with_models(
        Models::load(&NnConfig {
            sessions: 2,
            ..nn_config(Backend::OnnxRuntime)
        })
        .unwrap(),
    );
    // Two callers at once, each on its own photo, many times over: a
    // session shared by mistake, or answers crossed between sessions,
    // would give a caller the other photo's classes.
    std::thread::scope(|scope| {
        for (photo, expected) in ["cat.jpg", "coffee.png"].into_iter().zip(&expected) {
            let pooled = &pooled;
            scope.spawn(move || {
                for _ in 0..8 {
                    let got = answer(pooled, photo);
                    assert_eq!(got["index"], expected["index"], "{photo}: {got}");
                    for ((ia, pa), (ib, pb)) in top5(&got).into_iter().zip(top5(expected)) {
                        assert_eq!(ia, ib, "{photo}: the top 5 differ");
                        assert!((pa - pb).abs() < 1e-5, "{photo}: class {ia}: {pa} vs {pb}");
                    }
                }
            });
        }
    });
}

#[test]
fn a_model_asked_for_by_name_but_not_loaded_is_the_callers_mistake() {
    let function = classify();
    let photo = std::fs::read(repo_path("testdata/cat.jpg")).unwrap();
    // A name the function knows, but this host loaded no model.
    match function.call_blocking(
        Bytes::from(photo.clone()),
        &["--model", "efficientnet-lite2"],
    ) {
        Err(CallError::BadInput {
            exit_code: 5,
            stderr,
        }) => assert!(
            stderr.contains("no model `efficientnet-lite2` loaded"),
            "{stderr}"
        ),
        other => panic!("expected exit code 5, got {other:?}"),
    }
    // A name it does not know at all.
    match function.call_blocking(Bytes::from(photo), &["--model=squeezenet"]) {
        Err(CallError::BadInput {
            exit_code: 5,
            stderr,
        }) => assert!(
            stderr.starts_with(
                "unknown model `squeezenet`; the models are: efficientnet-lite0 (224x224)"
            ),
            "{stderr}"
        ),
        other => panic!("expected exit code 5, got {other:?}"),
    }
}
