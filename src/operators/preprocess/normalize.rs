//! `normalize`: streaming scaling. Environment: none.

use crate::operators::prelude::*;
use crate::runtime::ops::preprocess::{self as ops, NormMethod};

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "normalize",
    kind: StageKind::Preprocess,
    summary: "Scales a series: z-score, min-max or robust.",
    doc: "Streaming normalisation with statistics carried across ticks: `z` subtracts the mean and divides by the standard deviation; `minmax` maps to [0,1]; `robust` uses the median and the median absolute deviation. With `window`, statistics cover only that trailing window.",
    inputs: &[input("input", NUMERIC, "The series to scale.")],
    params: &[
        choice("method", &["z", "minmax", "robust"], Str("z"), "The scaling."),
        p("window", Ty::Duration, Optional, "A trailing window for the statistics (all history when absent)."),
    ],
    output: Output::Fixed(Ty::Series),
    example: r#"preprocess scaled = normalize(raw, method: "robust", window: 6h)"#,
};

/// The parameters of `normalize`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub method: String,
    pub window: Option<Ms>,
}

/// The `normalize` operator.
pub struct Normalize;

impl Definition for Normalize {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, _node: &StageNode, _env: &BuildEnv) -> Result<Step, BuildError> {
        let method = match p.method.as_str() {
            "minmax" => NormMethod::MinMax,
            "robust" => NormMethod::Robust,
            _ => NormMethod::Z,
        };
        Ok(Step::Op(Box::new(ops::Normalize::new(method, p.window.map(Ms::i64)))))
    }
}
