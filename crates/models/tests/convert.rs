//! The converter against independent references, for each model
//! (EfficientNet-Lite0, Lite1 and Lite2): a hand-computed first layer, an
//! independent forward pass on a photo, its own determinism, and the
//! labels compiled into `classify`.
//!
//! These use the pinned files that `scripts/test.sh` fetches (with
//! `dapr-wasm models fetch`) into the default models directory.

use std::path::PathBuf;

use function_host::nn::onnxruntime::{self, OrtGraph};
use model_files::{CLASSIFIERS, Classifier};
use models::efficientnet::{Until, to_onnx};
use models::torch_legacy::{StateDict, read_state_dict};
use test_support::repo_path;

fn models_dir() -> PathBuf {
    local_dirs::models_dir().expect("HOME is set")
}

fn weights(model: &Classifier) -> Vec<u8> {
    let path = models_dir().join(model.weights.file_name);
    assert!(
        model_files::is_intact(&path, &model.weights),
        "{} is missing or damaged: run `dapr-wasm models fetch` (scripts/test.sh does)",
        path.display()
    );
    std::fs::read(path).unwrap()
}

fn state_dict(model: &Classifier) -> StateDict {
    read_state_dict(&weights(model)).unwrap()
}

/// Runs an ONNX model with ONNX Runtime (the backend that serves the
/// models, from the pinned library the models fetch puts beside them) on
/// one NCHW input; returns the output's shape and values.
fn run_onnx(onnx: &[u8], side: usize, input: Vec<f32>) -> (Vec<usize>, Vec<f32>) {
    let library = model_files::ModelFiles::in_dir(&models_dir())
        .onnxruntime
        .expect("no ONNX Runtime is pinned for this platform; these tests need it");
    onnxruntime::init(&library).unwrap();
    let graph = OrtGraph::load(onnx, 1, 1).unwrap();
    assert_eq!(graph.input_shape(), [1, 3, side, side]);
    graph.run(input).unwrap()
}

#[test]
fn each_state_dict_has_the_expected_tensors() {
    for (model, tensors, blocks) in [(0, 296, 16), (1, 386, 21), (2, 386, 21)] {
        let model = &CLASSIFIERS[model];
        let state = state_dict(model);
        assert_eq!(state.len(), tensors, "{}", model.name);
        assert_eq!(state.get("_conv_stem.weight").unwrap().shape, [32, 3, 3, 3]);
        assert_eq!(state.get("_fc.weight").unwrap().shape, [1000, 1280]);
        let last = format!("_blocks.{}._project_conv.weight", blocks - 1);
        assert!(state.get(&last).is_ok(), "{}: {last}", model.name);
        assert!(!state.contains(&format!("_blocks.{blocks}._project_conv.weight")));
    }
}

/// The stem (3x3 stride-2 conv, batch norm, ReLU6) computed by hand from
/// the raw, unfolded weights, against the converted graph run by ONNX Runtime, at
/// each model's resolution.
#[test]
fn each_converted_stem_matches_a_hand_computed_layer() {
    for model in &CLASSIFIERS {
        let state = state_dict(model);
        let onnx = to_onnx(&state, model, Until::Stem).unwrap().encode();
        // A fixed, varied input in roughly the model's range [-1, 1].
        let side = model.input_size;
        let input: Vec<f32> = (0..3 * side * side)
            .map(|i| ((i * 7919 % 255) as f32 - 127.0) / 128.0)
            .collect();
        let (shape, got) = run_onnx(&onnx, side, input.clone());
        let out = side.div_ceil(2);
        assert_eq!(shape, [1, 32, out, out], "{}", model.name);

        let w = &state.get("_conv_stem.weight").unwrap().data;
        let gamma = &state.get("_bn0.weight").unwrap().data;
        let beta = &state.get("_bn0.bias").unwrap().data;
        let mean = &state.get("_bn0.running_mean").unwrap().data;
        let var = &state.get("_bn0.running_var").unwrap().data;
        // TensorFlow "same" for a 3x3 kernel and stride 2: (out - 1) * 2 + 3
        // - side rows of padding in all, the smaller half at the top.
        let pad_top = (((out - 1) * 2 + 3).saturating_sub(side) / 2) as i64;
        let mut worst = 0f64;
        for o in 0..32 {
            for oy in 0..out as i64 {
                for ox in 0..out as i64 {
                    let mut sum = 0f64;
                    for c in 0..3 {
                        for ky in 0..3i64 {
                            for kx in 0..3i64 {
                                let (y, x) = (oy * 2 + ky - pad_top, ox * 2 + kx - pad_top);
                                if y < 0 || x < 0 || y >= side as i64 || x >= side as i64 {
                                    continue;
                                }
                                let wi = ((o * 3 + c) * 3 + ky as usize) * 3 + kx as usize;
                                let xi = (c * side + y as usize) * side + x as usize;
                                sum += f64::from(w[wi]) * f64::from(input[xi]);
                            }
                        }
                    }
                    let bn = (sum - f64::from(mean[o])) / (f64::from(var[o]) + 1e-3).sqrt()
                        * f64::from(gamma[o])
                        + f64::from(beta[o]);
                    let expected = bn.clamp(0.0, 6.0);
                    let at = (o * out + oy as usize) * out + ox as usize;
                    worst = worst.max((expected - f64::from(got[at])).abs());
                }
            }
        }
        assert!(worst < 1e-4, "{}: largest difference {worst}", model.name);
    }
}

/// A photo as a model's input: resized to `side` (a plain triangle
/// filter: any fixed input will do, the two computations get the same),
/// `(pixel - 127) / 128`, NCHW.
fn photo_tensor(side: usize) -> Vec<f32> {
    let photo = image::open(repo_path("testdata/cat.jpg"))
        .unwrap()
        .to_rgb8();
    let resized = image::imageops::resize(
        &photo,
        side as u32,
        side as u32,
        image::imageops::FilterType::Triangle,
    );
    let mut tensor = vec![0f32; 3 * side * side];
    for (i, pixel) in resized.pixels().enumerate() {
        for c in 0..3 {
            tensor[c * side * side + i] = (f32::from(pixel[c]) - 127.0) / 128.0;
        }
    }
    tensor
}

/// Each converted model, run by ONNX Runtime, against an independent forward pass
/// in numpy (scripts/efficientnet_reference.py): its own pickle reader, the
/// architecture from TensorFlow's published definition, unfolded batch
/// norm, float64.
#[test]
#[ignore = "needs numpy in build/test-venv (scripts/test.sh installs it and runs this)"]
fn each_converted_model_matches_an_independent_forward_pass_on_a_photo() {
    let python = repo_path("build/test-venv/bin/python");
    let work = tempfile::tempdir().unwrap();
    for model in &CLASSIFIERS {
        let side = model.input_size;
        let input = photo_tensor(side);
        let input_path = work.path().join(format!("{}.in", model.name));
        let output_path = work.path().join(format!("{}.out", model.name));
        let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&input_path, bytes).unwrap();
        let reference = std::process::Command::new(&python)
            .arg(repo_path("scripts/efficientnet_reference.py"))
            .arg(models_dir().join(model.weights.file_name))
            .arg(model.name)
            .args([&input_path, &output_path])
            .output()
            .unwrap();
        assert!(
            reference.status.success(),
            "{}: {}",
            model.name,
            String::from_utf8_lossy(&reference.stderr)
        );
        let expected: Vec<f32> = std::fs::read(&output_path)
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(expected.len(), 1000);

        let onnx = models::convert_weights(model, &weights(model)).unwrap();
        let (shape, got) = run_onnx(&onnx, side, input);
        assert_eq!(shape, [1, 1000]);
        let worst = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst < 1e-4,
            "{}: largest logit difference {worst}",
            model.name
        );
        let top = |logits: &[f32]| {
            let mut order: Vec<usize> = (0..logits.len()).collect();
            order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
            order.truncate(5);
            order
        };
        assert_eq!(top(&got), top(&expected), "{}: top 5", model.name);
        println!(
            "{}: top 5 {:?}, largest logit difference {worst:e}",
            model.name,
            top(&got)
        );
        // And the photo is a cat: ImageNet's domestic cats are 281-285.
        assert!(
            (281..=285).contains(&top(&got)[0]),
            "{}: {:?}",
            model.name,
            top(&got)
        );
    }
}

#[test]
fn conversion_is_deterministic_and_matches_the_pins() {
    for model in &CLASSIFIERS {
        let weights = weights(model);
        let first = models::convert_weights(model, &weights).unwrap();
        let second = models::convert_weights(model, &weights).unwrap();
        assert!(first == second, "{}: two conversions differ", model.name);
        let sha = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&first))
        };
        assert_eq!(sha, model.onnx_sha256, "{}", model.name);
    }
}

#[test]
fn labels_match_the_pinned_package() {
    let json =
        std::fs::read_to_string(models_dir().join(model_files::IMAGENET_LABELS.file_name)).unwrap();
    let names: std::collections::BTreeMap<String, String> = serde_json::from_str(&json).unwrap();
    let compiled = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../functions/classify/imagenet-labels.txt"
    ))
    .unwrap();
    let compiled: Vec<&str> = compiled.lines().collect();
    assert_eq!(compiled.len(), 1000);
    for (i, line) in compiled.iter().enumerate() {
        let full = &names[&i.to_string()];
        let first = full.split(',').next().unwrap().trim();
        assert_eq!(*line, first, "class {i}");
    }
}
