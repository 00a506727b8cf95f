//! `rolling`: statistics over a trailing window. Environment: none.

use crate::operators::prelude::*;
use crate::runtime::ops::preprocess as ops;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "rolling",
    kind: StageKind::Preprocess,
    summary: "Rolling statistics over a trailing window.",
    doc: "For each sample, the statistics of the samples in the trailing `window`, one output series per statistic (label `stat`). Quantiles are `p50`, `p90`, `p95`, `p99`.",
    inputs: &[input("input", NUMERIC, "The series.")],
    params: &[
        min("window", Ty::Duration, Required, 1.0, "The trailing window."),
        ParamSpec {
            name: "stats",
            ty: Ty::List(Scalar::String),
            default: Strs(&["mean"]),
            choices: &["mean", "std", "median", "mad", "min", "max", "sum", "count", "p50", "p90", "p95", "p99"],
            min: None,
            max: None,
            doc: "The statistics computed.",
        },
    ],
    output: Output::Fixed(Ty::Series),
    example: r#"preprocess stats = rolling(raw, window: 1h, stats: ["median", "mad"])"#,
};

/// The parameters of `rolling`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub window: Ms,
    pub stats: Vec<String>,
}

/// The `rolling` operator.
pub struct Rolling;

impl Definition for Rolling {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, _node: &StageNode, _env: &BuildEnv) -> Result<Step, BuildError> {
        Ok(Step::Op(Box::new(ops::Rolling::new(p.window.i64(), p.stats))))
    }
}
