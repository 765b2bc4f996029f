//! The tract backend: pure Rust, always available, the fallback.
//!
//! The model is parsed, typed and optimised once ([`TractGraph::load`]); the
//! resulting plan is immutable and shared, so concurrent calls each run it
//! with their own state and never wait for one another. tract runs one
//! inference on one thread.

use std::sync::Arc;

use tract_onnx::prelude::*;
use wasmtime_wasi_nn::backend::{
    BackendError, BackendExecutionContext, BackendGraph, Id, NamedTensor,
};
use wasmtime_wasi_nn::{ExecutionContext, Tensor as NnTensor};

use super::{ContextState, backend_error, compute_named};

type Plan = Arc<TypedRunnableModel>;

/// An optimised model.
pub struct TractGraph {
    plan: Plan,
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
        Ok(TractGraph { plan, input_shape })
    }

    /// Runs one inference: `input` in the model's input shape, row-major.
    /// Returns the first output's shape and elements.
    pub fn run(&self, input: Vec<f32>) -> Result<(Vec<usize>, Vec<f32>), String> {
        run(&self.plan, &self.input_shape, input).map_err(|e| format!("{e:#}"))
    }
}

fn run(plan: &Plan, shape: &[usize], input: Vec<f32>) -> TractResult<(Vec<usize>, Vec<f32>)> {
    let tensor = tract_ndarray::ArrayD::from_shape_vec(shape, input)?.into_tensor();
    let outputs = plan.run(tvec!(tensor.into_tvalue()))?;
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

impl BackendGraph for TractGraph {
    fn init_execution_context(&self) -> Result<ExecutionContext, BackendError> {
        let context: Box<dyn BackendExecutionContext> = Box::new(TractContext {
            plan: self.plan.clone(),
            state: ContextState::new(self.input_shape.clone()),
        });
        Ok(context.into())
    }
}

struct TractContext {
    plan: Plan,
    state: ContextState,
}

impl BackendExecutionContext for TractContext {
    fn set_input(&mut self, id: Id, tensor: &NnTensor) -> Result<(), BackendError> {
        self.state.set_input(id, tensor)
    }

    fn compute(
        &mut self,
        inputs: Option<Vec<NamedTensor>>,
    ) -> Result<Option<Vec<NamedTensor>>, BackendError> {
        if let Some(inputs) = inputs {
            return compute_named(self, inputs);
        }
        let input = self.state.take_input()?;
        let (shape, values) = run(&self.plan, &self.state.input_shape, input)
            .map_err(|e| backend_error(format!("tract: {e:#}")))?;
        self.state.set_output(&shape, &values);
        Ok(None)
    }

    fn get_output(&mut self, id: Id) -> Result<NnTensor, BackendError> {
        self.state.get_output(id)
    }
}
