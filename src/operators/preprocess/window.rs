//! `window`: sliding windows for models. Environment: none. `size` is at most 2^20 by its
//! spec (it was clamped silently before).

use crate::operators::prelude::*;
use crate::runtime::ops::preprocess as ops;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "window",
    kind: StageKind::Preprocess,
    summary: "Turns a series into sliding windows (Features) for models.",
    doc: "Emits, for each new sample, the vector of the last `size` values (every `stride` samples): the input of autoencoders and forecasters.",
    inputs: &[input("input", NUMERIC, "The series.")],
    params: &[range("size", Ty::Int, Int(32), 2.0, 1_048_576.0, "Values per window."), min("stride", Ty::Int, Int(1), 1.0, "Samples between windows.")],
    output: Output::Fixed(Ty::Features),
    example: r#"preprocess windows = window(raw, size: 64)"#,
};

/// The parameters of `window`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub size: i64,
    pub stride: i64,
}

/// The `window` operator.
pub struct Window;

impl Definition for Window {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, _node: &StageNode, _env: &BuildEnv) -> Result<Step, BuildError> {
        Ok(Step::Op(Box::new(ops::Window::new(usize::try_from(p.size).unwrap_or(2), usize::try_from(p.stride).unwrap_or(1)))))
    }
}
