//! `resample`: series on a regular grid. Environment: none.

use crate::operators::prelude::*;
use crate::runtime::ops::preprocess::{self as ops, Agg};

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "resample",
    kind: StageKind::Preprocess,
    summary: "Puts a series on a regular time grid.",
    doc: "Aggregates the samples of each interval of length `every` into one sample, using `agg`. Empty intervals produce no sample (use `fill`).",
    inputs: &[input("input", NUMERIC, "The series to resample.")],
    params: &[
        min("every", Ty::Duration, Required, 1.0, "The grid interval."),
        choice("agg", &["mean", "sum", "min", "max", "first", "last", "count", "median"], Str("mean"), "How samples in an interval are combined."),
    ],
    output: Output::Fixed(Ty::Series),
    example: r#"preprocess grid = resample(raw, every: 30s, agg: "max")"#,
};

/// The parameters of `resample`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub every: Ms,
    pub agg: String,
}

/// The `resample` operator.
pub struct Resample;

impl Definition for Resample {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, _node: &StageNode, _env: &BuildEnv) -> Result<Step, BuildError> {
        Ok(Step::Op(Box::new(ops::Resample::new(p.every.i64(), Agg::parse(&p.agg).unwrap_or(Agg::Mean)))))
    }
}
