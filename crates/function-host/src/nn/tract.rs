//! The tract backend: pure Rust, always available, the fallback.
//!
//! The model is parsed, typed and optimised once ([`TractGraph::load`]); the
//! resulting plan is immutable and shared, so concurrent calls each run it
//! with their own state and never wait for one another. tract runs one
//! inference on one thread.

use std::sync::Arc;

use tract_onnx::prelude::*;

use super::Model;

/// An optimised model.
pub struct TractGraph(Arc<TractModel>);

struct TractModel {
    plan: Arc<TypedRunnableModel>,
    input_shape: Vec<usize>,
}

impl TractGraph {
    /// Parses and optimises an ONNX model with a fixed input shape.
    pub fn load(onnx: &[u8]) -> Result<TractGraph, String> {
        let model = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(onnx))
            .map_err(|e| format!("{e:#}"))?;
        let typed = model.into_optimized().map_err(|e| format!("{e:#}"))?;
        let input_shape = typed
            .input_fact(0)
            .map_err(|e| format!("{e:#}"))?
            .shape
            .as_concrete()
            .ok_or("the model's input shape is not fixed")?
            .to_vec();
        let plan = typed.into_runnable().map_err(|e| format!("{e:#}"))?;
        Ok(TractGraph(Arc::new(TractModel { plan, input_shape })))
    }

    /// The model's input shape.
    pub fn input_shape(&self) -> &[usize] {
        &self.0.input_shape
    }

    /// Runs one inference: `input` in the model's input shape, row-major.
    /// Returns the first output's shape and elements.
    pub fn run(&self, input: Vec<f32>) -> Result<(Vec<usize>, Vec<f32>), String> {
        self.0.infer(input)
    }

    /// The loaded model, for WASI-NN to share between calls.
    pub(crate) fn into_model(self) -> Arc<dyn Model> {
        self.0
    }
}

impl TractModel {
    fn run(&self, input: Vec<f32>) -> TractResult<(Vec<usize>, Vec<f32>)> {
        let tensor = tract_ndarray::ArrayD::from_shape_vec(self.input_shape.as_slice(), input)?
            .into_tensor();
        let outputs = self.plan.run(tvec!(tensor.into_tvalue()))?;
        let output = outputs
            .first()
            .ok_or_else(|| TractError::msg("the model produced no output"))?;
        let values = output
            .to_plain_array_view::<f32>()?
            .iter()
            .copied()
            .collect();
        Ok((output.shape().to_vec(), values))
    }
}

impl Model for TractModel {
    fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    fn infer(&self, input: Vec<f32>) -> Result<(Vec<usize>, Vec<f32>), String> {
        self.run(input).map_err(|e| format!("tract: {e:#}"))
    }
}
