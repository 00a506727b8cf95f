//! `diff`: differences and counter rates. Environment: none.

use crate::operators::prelude::*;
use crate::runtime::ops::preprocess as ops;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "diff",
    kind: StageKind::Preprocess,
    summary: "Differences a series (or turns a counter into a rate).",
    doc: "Outputs `x[t] - x[t-lag]`. With `rate: true`, divides by the elapsed seconds and treats decreases as counter resets, like PromQL's `rate`.",
    inputs: &[input("input", NUMERIC, "The series to difference.")],
    params: &[min("lag", Ty::Int, Int(1), 1.0, "How many samples back to subtract."), p("rate", Ty::Bool, Bool(false), "Per-second rate with counter-reset handling.")],
    output: Output::Fixed(Ty::Series),
    example: r#"preprocess per_sec = diff(raw, rate: true)"#,
};

/// The parameters of `diff`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub lag: i64,
    pub rate: bool,
}

/// The `diff` operator.
pub struct Diff;

impl Definition for Diff {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, _node: &StageNode, _env: &BuildEnv) -> Result<Step, BuildError> {
        Ok(Step::Op(Box::new(ops::Diff::new(usize::try_from(p.lag).unwrap_or(1), p.rate))))
    }
}
