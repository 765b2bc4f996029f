//! The converter against independent references: a hand-computed first
//! layer, its own determinism, and the labels compiled into `classify`.
//!
//! These use the pinned files that `scripts/test.sh` fetches (with
//! `dapr-wasm models fetch`) into the default models directory.

use std::path::PathBuf;

use models::efficientnet::{Until, to_onnx};
use models::torch_legacy::read_state_dict;
use tract_onnx::prelude::*;

fn models_dir() -> PathBuf {
    let dir = local_dirs::models_dir().expect("HOME is set");
    let weights = dir.join(model_files::EFFICIENTNET_LITE0_WEIGHTS.file_name);
    assert!(
        model_files::is_intact(&weights, &model_files::EFFICIENTNET_LITE0_WEIGHTS),
        "{} is missing or damaged: run `dapr-wasm models fetch` (scripts/test.sh does)",
        weights.display()
    );
    dir
}

fn weights() -> Vec<u8> {
    std::fs::read(models_dir().join(model_files::EFFICIENTNET_LITE0_WEIGHTS.file_name)).unwrap()
}

#[test]
fn the_state_dict_has_the_expected_tensors() {
    let state = read_state_dict(&weights()).unwrap();
    assert_eq!(state.len(), 296);
    assert_eq!(state.get("_conv_stem.weight").unwrap().shape, [32, 3, 3, 3]);
    assert_eq!(state.get("_fc.weight").unwrap().shape, [1000, 1280]);
    assert!(state.get("_blocks.15._project_conv.weight").is_ok());
}

/// The stem (3x3 stride-2 conv, batch norm, ReLU6) computed by hand from
/// the raw, unfolded weights, against the converted graph run by tract.
#[test]
fn the_converted_stem_matches_a_hand_computed_layer() {
    let state = read_state_dict(&weights()).unwrap();
    let model = to_onnx(&state, Until::Stem).unwrap().encode();
    let plan = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(&model))
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();

    // A fixed, varied input in roughly the model's range [-1, 1].
    let side = 224usize;
    let input: Vec<f32> = (0..3 * side * side)
        .map(|i| ((i * 7919 % 255) as f32 - 127.0) / 128.0)
        .collect();
    let tensor = tract_ndarray::ArrayD::from_shape_vec(vec![1, 3, side, side], input.clone())
        .unwrap()
        .into_tensor();
    let outputs = plan.run(tvec!(tensor.into_tvalue())).unwrap();
    let got: Vec<f32> = outputs[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect();
    assert_eq!(outputs[0].shape(), [1, 32, 112, 112]);

    let w = &state.get("_conv_stem.weight").unwrap().data;
    let gamma = &state.get("_bn0.weight").unwrap().data;
    let beta = &state.get("_bn0.bias").unwrap().data;
    let mean = &state.get("_bn0.running_mean").unwrap().data;
    let var = &state.get("_bn0.running_var").unwrap().data;
    // TensorFlow "same" for 224 -> 112 with a 3x3 kernel and stride 2:
    // one row of padding in all, at the bottom (and one column, at the right).
    let pad_top = 0i64;
    let mut worst = 0f64;
    for o in 0..32 {
        for oy in 0..112i64 {
            for ox in 0..112i64 {
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
                let at = (o * 112 + oy as usize) * 112 + ox as usize;
                worst = worst.max((expected - f64::from(got[at])).abs());
            }
        }
    }
    assert!(worst < 1e-4, "largest difference {worst}");
}

#[test]
fn conversion_is_deterministic_and_matches_the_pin() {
    let weights = weights();
    let first = models::convert_weights(&weights).unwrap();
    let second = models::convert_weights(&weights).unwrap();
    assert!(first == second, "two conversions differ");
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&first))
    };
    assert_eq!(sha, model_files::ONNX_SHA256);
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
