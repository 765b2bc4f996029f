//! The `classify` function: which of the 1000 ImageNet classes a photo shows.
//!
//! This library is everything but the inference itself, so it can be tested
//! and benchmarked natively; `main.rs` wires it to stdin, stdout and
//! WASI-NN.
//!
//! 1. [`model`]: the model the caller named (`--model NAME`; by default
//!    EfficientNet-Lite0), one of [`MODELS`], with its input side.
//! 2. [`preprocess`]: decode the image (with `image-input`'s limits and
//!    errors), take TensorFlow's evaluation crop (the centre 224/256 of the
//!    short side), resize it to the model's side with bicubic
//!    interpolation, and scale each channel to `(pixel - 127) / 128`, laid
//!    out NCHW.
//! 3. The host runs the model on it (WASI-NN `load_by_name`).
//! 4. [`Classification::from_logits`]: softmax, top 5, and the seed's
//!    sentence, with the model's name.

use image_input::{Error, decode_rgb};
pub use image_input::{Limits, RgbImage};

/// A model the function can ask the host for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelInput {
    /// The name it is loaded by (`load_by_name`).
    pub name: &'static str,
    /// The side of its square input in pixels.
    pub side: usize,
}

impl ModelInput {
    /// Its input shape, NCHW.
    pub fn input_shape(&self) -> [usize; 4] {
        [1, 3, self.side, self.side]
    }
}

/// The models this function knows, smallest first; the first is the
/// default. (Their weights and ONNX files are the host's: `dapr-wasm models
/// fetch`.)
pub const MODELS: [ModelInput; 3] = [
    ModelInput {
        name: "efficientnet-lite0",
        side: 224,
    },
    ModelInput {
        name: "efficientnet-lite1",
        side: 240,
    },
    ModelInput {
        name: "efficientnet-lite2",
        side: 260,
    },
];

/// The model used when the caller names none.
pub const DEFAULT_MODEL: ModelInput = MODELS[0];

/// The number of classes.
pub const CLASSES: usize = 1000;

/// The model called `name`, or an error listing the models there are.
pub fn model(name: &str) -> Result<ModelInput, String> {
    MODELS
        .iter()
        .copied()
        .find(|m| m.name == name)
        .ok_or_else(|| {
            let known: Vec<String> = MODELS
                .iter()
                .map(|m| format!("{} ({}x{})", m.name, m.side, m.side))
                .collect();
            format!(
                "unknown model `{name}`; the models are: {}",
                known.join(", ")
            )
        })
}

/// What the command line asks for: `[--model NAME] [--timings]`. Other
/// arguments are ignored (a Dapr binding passes its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The model's name, if one is given.
    pub model: Option<String>,
    /// Whether to write the stage timings to stderr.
    pub timings: bool,
}

impl Options {
    /// Reads the arguments after `argv[0]`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Options {
        let mut options = Options {
            model: None,
            timings: false,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "--timings" {
                options.timings = true;
            } else if arg == "--model" {
                options.model = args.next();
            } else if let Some(name) = arg.strip_prefix("--model=") {
                options.model = Some(name.to_string());
            }
        }
        options
    }
}

/// The class names, in index order.
pub fn labels() -> impl Iterator<Item = &'static str> {
    include_str!("../imagenet-labels.txt").lines()
}

/// Decodes `input` and returns the input tensor of a model whose side is
/// `side`, NCHW, row-major.
pub fn preprocess(input: &[u8], limits: &Limits, side: usize) -> Result<Vec<f32>, Error> {
    Ok(to_tensor(&decode_rgb(input, limits)?, side))
}

/// A model's input tensor for a decoded image: centre crop, bicubic resize
/// to `side` x `side`, `(pixel - 127) / 128`, NCHW.
///
/// The resize is separable: a horizontal pass takes the three channels of
/// each crop row together (one tap lookup for all three), and a vertical
/// pass makes each output row from four whole rows, so its inner loop runs
/// along a row and is vectorised (simd128 in wasm). Every value is summed
/// in the same order as one tap at a time, so the tensor is the same to
/// the bit (see the test against `to_tensor_one_tap_at_a_time`).
pub fn to_tensor(rgb: &RgbImage, side: usize) -> Vec<f32> {
    // TensorFlow's eval crop for 224: the centre 224 / (224 + 32) of the
    // short side, kept for every model (the crop is then resized to `side`).
    const CROP_FRACTION: f64 = 224.0 / 256.0;
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    let crop = (CROP_FRACTION * width.min(height) as f64) as usize;
    let crop = crop.max(1);
    let top = (height - crop).div_ceil(2);
    let left = (width - crop).div_ceil(2);

    let columns = Taps::new(crop, side);
    let rows = Taps::new(crop, side);
    let pixels = rgb.as_raw();

    // Horizontal pass: the crop's rows, `side` wide, one plane per channel.
    let plane = crop * side;
    let mut horizontal = vec![0f32; 3 * plane];
    let (red, rest) = horizontal.split_at_mut(plane);
    let (green, blue) = rest.split_at_mut(plane);
    for y in 0..crop {
        let start = ((top + y) * width + left) * 3;
        let row = &pixels[start..start + crop * 3];
        let out = y * side..(y + 1) * side;
        let outputs = red[out.clone()]
            .iter_mut()
            .zip(&mut green[out.clone()])
            .zip(&mut blue[out]);
        for (((r, g), b), taps) in outputs.zip(&columns.taps) {
            let (mut sum_r, mut sum_g, mut sum_b) = (0f32, 0f32, 0f32);
            for &(source, weight) in taps {
                let pixel = &row[source * 3..source * 3 + 3];
                sum_r += weight * f32::from(pixel[0]);
                sum_g += weight * f32::from(pixel[1]);
                sum_b += weight * f32::from(pixel[2]);
            }
            (*r, *g, *b) = (sum_r, sum_g, sum_b);
        }
    }

    // Vertical pass: each output row from four rows of the horizontal pass.
    let mut tensor = vec![0f32; 3 * side * side];
    for (out_plane, source) in tensor
        .chunks_exact_mut(side * side)
        .zip(horizontal.chunks_exact(plane))
    {
        for (out_row, taps) in out_plane.chunks_exact_mut(side).zip(&rows.taps) {
            let row = |k: usize| &source[taps[k].0 * side..(taps[k].0 + 1) * side];
            let [w0, w1, w2, w3] = taps.map(|(_, weight)| weight);
            let inputs = row(0).iter().zip(row(1)).zip(row(2)).zip(row(3));
            for (out, (((a, b), c), d)) in out_row.iter_mut().zip(inputs) {
                let sum = 0f32 + w0 * a + w1 * b + w2 * c + w3 * d;
                *out = (sum.clamp(0.0, 255.0) - 127.0) / 128.0;
            }
        }
    }
    tensor
}

/// Bicubic (Keys, a = -0.5) resampling taps from `input` samples to
/// `output` samples, with half-pixel centres and clamped edges: the same
/// kernel as TensorFlow 2's `tf.image.resize(method="bicubic")` without
/// antialiasing.
struct Taps {
    taps: Vec<[(usize, f32); 4]>,
}

impl Taps {
    fn new(input: usize, output: usize) -> Taps {
        let scale = input as f64 / output as f64;
        let last = input as i64 - 1;
        let taps = (0..output)
            .map(|o| {
                let centre = (o as f64 + 0.5) * scale - 0.5;
                let base = centre.floor();
                let t = centre - base;
                let base = base as i64;
                let weights = [cubic(t + 1.0), cubic(t), cubic(1.0 - t), cubic(2.0 - t)];
                let mut taps = [(0usize, 0f32); 4];
                for (k, weight) in weights.iter().enumerate() {
                    let index = (base - 1 + k as i64).clamp(0, last) as usize;
                    taps[k] = (index, *weight as f32);
                }
                taps
            })
            .collect();
        Taps { taps }
    }
}

fn cubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x <= 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
    } else {
        0.0
    }
}

/// One of the top classes.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The class name.
    pub label: &'static str,
    /// The class index (0..1000).
    pub index: usize,
    /// Its softmax probability.
    pub probability: f32,
}

/// The answer: the top class, the top 5 and a sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// The five most likely classes, most likely first.
    pub top5: Vec<Prediction>,
    /// The seed's sentence for the top class.
    pub sentence: String,
    /// The model that produced it.
    pub model: &'static str,
}

impl Classification {
    /// Softmax over `logits` of `model`, then the top 5 (ties go to the
    /// lower index).
    pub fn from_logits(logits: &[f32], model: &'static str) -> Classification {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
        let total: f64 = exps.iter().sum();
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| exps[b].total_cmp(&exps[a]).then(a.cmp(&b)));
        let names: Vec<&'static str> = labels().collect();
        let top5: Vec<Prediction> = order
            .iter()
            .take(5)
            .map(|&index| Prediction {
                label: names.get(index).copied().unwrap_or("unknown"),
                index,
                probability: (exps[index] / total) as f32,
            })
            .collect();
        let sentence = match top5.first() {
            Some(top) => sentence(top.label, top.probability),
            None => sentence("", 0.0),
        };
        Classification {
            top5,
            sentence,
            model,
        }
    }

    /// The JSON answer: `{label, index, confidence, top5, sentence, model}`.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        if let Some(top) = self.top5.first() {
            out.push_str(&format!(
                "\"label\":{},\"index\":{},\"confidence\":{},",
                json_string(top.label),
                top.index,
                top.probability
            ));
        }
        out.push_str("\"top5\":[");
        for (i, p) in self.top5.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&format!(
                "{{\"label\":{},\"index\":{},\"probability\":{}}}",
                json_string(p.label),
                p.index,
                p.probability
            ));
        }
        out.push_str(&format!(
            "],\"sentence\":{},\"model\":{}}}",
            json_string(&self.sentence),
            json_string(self.model)
        ));
        out
    }
}

/// The seed's sentence: "very likely" above 0.78, "likely" above 0.49,
/// "could be" above 0.2.
pub fn sentence(label: &str, confidence: f32) -> String {
    let article = match label.chars().next() {
        Some(c) if "aeiouAEIOU".contains(c) => "an",
        _ => "a",
    };
    if confidence > 0.78 {
        format!("It is very likely {article} {label} in the picture")
    } else if confidence > 0.49 {
        format!("It is likely {article} {label} in the picture")
    } else if confidence > 0.2 {
        format!("It could be {article} {label} in the picture")
    } else {
        "It does not appear to be anything I know".to_string()
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_a_thousand_labels_in_imagenet_order() {
        let names: Vec<_> = labels().collect();
        assert_eq!(names.len(), CLASSES);
        assert_eq!(names[0], "tench");
        assert_eq!(names[282], "tiger cat");
        assert_eq!(names[967], "espresso");
    }

    #[test]
    fn the_cubic_kernel_interpolates_and_sums_to_one() {
        assert_eq!(cubic(0.0), 1.0);
        assert_eq!(cubic(1.0), 0.0);
        assert_eq!(cubic(2.0), 0.0);
        for t in [0.0, 0.25, 0.5, 0.9] {
            let sum = cubic(t + 1.0) + cubic(t) + cubic(1.0 - t) + cubic(2.0 - t);
            assert!((sum - 1.0).abs() < 1e-12, "{t}: {sum}");
        }
    }

    #[test]
    fn resizing_to_the_same_size_is_the_identity() {
        let taps = Taps::new(5, 5);
        for (o, t) in taps.taps.iter().enumerate() {
            let total: f32 = t.iter().filter(|(i, _)| *i == o).map(|(_, w)| w).sum();
            assert!((total - 1.0).abs() < 1e-6);
        }
    }

    /// `to_tensor` as it was first written: one channel and one tap at a
    /// time, the reference the faster one must match to the bit.
    fn to_tensor_one_tap_at_a_time(rgb: &RgbImage, side: usize) -> Vec<f32> {
        const CROP_FRACTION: f64 = 224.0 / 256.0;
        let (width, height) = (rgb.width() as usize, rgb.height() as usize);
        let crop = ((CROP_FRACTION * width.min(height) as f64) as usize).max(1);
        let top = (height - crop).div_ceil(2);
        let left = (width - crop).div_ceil(2);
        let (columns, rows) = (Taps::new(crop, side), Taps::new(crop, side));
        let pixels = rgb.as_raw();
        let mut tensor = vec![0f32; 3 * side * side];
        let mut horizontal = vec![0f32; crop * side];
        for channel in 0..3 {
            for y in 0..crop {
                let row = (top + y) * width;
                for (x, taps) in columns.taps.iter().enumerate() {
                    let mut sum = 0f32;
                    for &(source, weight) in taps {
                        sum += weight * f32::from(pixels[(row + left + source) * 3 + channel]);
                    }
                    horizontal[y * side + x] = sum;
                }
            }
            let plane = &mut tensor[channel * side * side..(channel + 1) * side * side];
            for (y, taps) in rows.taps.iter().enumerate() {
                for x in 0..side {
                    let mut sum = 0f32;
                    for &(source, weight) in taps {
                        sum += weight * horizontal[source * side + x];
                    }
                    plane[y * side + x] = (sum.clamp(0.0, 255.0) - 127.0) / 128.0;
                }
            }
        }
        tensor
    }

    #[test]
    fn the_tensor_is_the_same_to_the_bit_as_one_tap_at_a_time() {
        // Noise (a fixed xorshift), so that every tap and channel counts;
        // landscape, portrait, tiny, and smaller than the model's side.
        let mut state = 0x2545_f491_u32;
        for (width, height) in [(451, 300), (300, 451), (1, 1), (7, 3), (100, 130)] {
            let pixels = (0..width * height * 3)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            let rgb = RgbImage::from_raw(width, height, pixels).unwrap();
            for side in MODELS.map(|m| m.side) {
                let fast = to_tensor(&rgb, side);
                let reference = to_tensor_one_tap_at_a_time(&rgb, side);
                assert_eq!(fast.len(), reference.len());
                let differ = fast
                    .iter()
                    .zip(&reference)
                    .filter(|(a, b)| a.to_bits() != b.to_bits())
                    .count();
                assert_eq!(
                    differ, 0,
                    "{width}x{height} to {side}: {differ} values differ"
                );
            }
        }
    }

    #[test]
    fn a_uniform_image_gives_a_uniform_tensor() {
        // A 300x200 PNG of one colour: every tensor value is that colour, scaled.
        let png = solid_png(300, 200, [200, 100, 27]);
        for side in MODELS.map(|m| m.side) {
            let tensor = preprocess(&png, &Limits::default(), side).unwrap();
            assert_eq!(tensor.len(), 3 * side * side);
            for (channel, value) in [200.0f32, 100.0, 27.0].iter().enumerate() {
                let expected = (value - 127.0) / 128.0;
                let plane = &tensor[channel * side * side..(channel + 1) * side * side];
                assert!(plane.iter().all(|v| (v - expected).abs() < 1e-5));
            }
        }
    }

    #[test]
    fn bad_images_fail_like_everywhere_else() {
        assert_eq!(
            preprocess(b"", &Limits::default(), 224)
                .unwrap_err()
                .exit_code(),
            1
        );
        assert_eq!(
            preprocess(b"hello", &Limits::default(), 224)
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn an_image_with_no_rows_is_invalid_not_a_crash() {
        // The hostile-input suite found it: a GIF whose screen is 128x0
        // decodes, and the centre crop then underflowed.
        let mut gif = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/cat-round-transparent.gif"
        ))
        .unwrap();
        gif[8..10].copy_from_slice(&[0, 0]);
        let err = preprocess(&gif, &Limits::default(), 224).unwrap_err();
        assert_eq!(err.exit_code(), 1, "{err}");
        assert!(err.to_string().contains("no pixels"), "{err}");
    }

    #[test]
    fn top5_softmax_and_sentence() {
        let mut logits = vec![0f32; CLASSES];
        logits[282] = 10.0;
        logits[281] = 7.0;
        let c = Classification::from_logits(&logits, "efficientnet-lite1");
        assert_eq!(c.top5.len(), 5);
        assert_eq!(c.top5[0].index, 282);
        assert_eq!(c.top5[0].label, "tiger cat");
        assert_eq!(c.top5[1].index, 281);
        // Ties among the rest go to the lowest index.
        assert_eq!(c.top5[2].index, 0);
        let p0 = (10f64.exp() / (10f64.exp() + 7f64.exp() + 998.0)) as f32;
        assert!((c.top5[0].probability - p0).abs() < 1e-6);
        assert_eq!(c.sentence, "It is very likely a tiger cat in the picture");
        let json = c.to_json();
        assert!(
            json.starts_with("{\"label\":\"tiger cat\",\"index\":282,\"confidence\":0.9"),
            "{json}"
        );
        assert!(
            json.ends_with(
                "\"sentence\":\"It is very likely a tiger cat in the picture\",\"model\":\"efficientnet-lite1\"}"
            ),
            "{json}"
        );
    }

    #[test]
    fn models_are_found_by_name_and_unknown_names_list_the_models() {
        assert_eq!(model("efficientnet-lite2").unwrap().side, 260);
        assert_eq!(DEFAULT_MODEL.input_shape(), [1, 3, 224, 224]);
        let err = model("resnet50").unwrap_err();
        assert_eq!(
            err,
            "unknown model `resnet50`; the models are: efficientnet-lite0 (224x224), \
             efficientnet-lite1 (240x240), efficientnet-lite2 (260x260)"
        );
    }

    #[test]
    fn options_take_a_model_in_either_form_and_ignore_the_rest() {
        let parse = |args: &[&str]| Options::parse(args.iter().map(|a| a.to_string()));
        assert_eq!(parse(&[]).model, None);
        assert_eq!(
            parse(&["--model", "efficientnet-lite1", "--timings"]),
            Options {
                model: Some("efficientnet-lite1".into()),
                timings: true
            }
        );
        assert_eq!(
            parse(&["x", "--model=efficientnet-lite2"]).model.as_deref(),
            Some("efficientnet-lite2")
        );
    }

    #[test]
    fn sentences_follow_the_seed_thresholds() {
        assert_eq!(
            sentence("espresso", 0.6),
            "It is likely an espresso in the picture"
        );
        assert_eq!(sentence("tabby", 0.3), "It could be a tabby in the picture");
        assert_eq!(
            sentence("tabby", 0.2),
            "It does not appear to be anything I know"
        );
    }

    fn solid_png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(width, height, image::Rgb(rgb));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }
}
