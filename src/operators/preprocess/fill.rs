//! `fill`: gaps and NaN values filled. Environment: none.

use crate::operators::prelude::*;
use crate::runtime::ops::preprocess::{self as ops, FillMethod};

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "fill",
    kind: StageKind::Preprocess,
    summary: "Fills gaps and NaN values.",
    doc: "Replaces missing grid points and NaN values: with the previous value, by linear interpolation, with zero, or with a constant. Gaps longer than `max_gap` are left open.",
    inputs: &[input("input", NUMERIC, "The series to fill.")],
    params: &[
        choice("method", &["previous", "linear", "zero", "value"], Str("previous"), "How gaps are filled."),
        p("value", Ty::Float, Optional, "The constant for `method: \"value\"`."),
        p("max_gap", Ty::Duration, Optional, "Leave gaps longer than this open."),
    ],
    output: Output::Fixed(Ty::Series),
    example: r#"preprocess filled = fill(raw, "linear", max_gap: 5m)"#,
};

/// The parameters of `fill`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub method: String,
    pub value: Option<f64>,
    pub max_gap: Option<Ms>,
}

/// The `fill` operator.
pub struct Fill;

impl Definition for Fill {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn validate(p: &Params) -> Vec<Refusal> {
        if p.method == "value" && p.value.is_none() {
            return vec![Refusal::new(
                "method",
                "`method: \"value\"` fills gaps with `value`, which is not given",
                "add the constant, such as `value: 0.0`, or choose another method",
            )];
        }
        Vec::new()
    }

    fn build(p: Params, _node: &StageNode, _env: &BuildEnv) -> Result<Step, BuildError> {
        let method = match (p.method.as_str(), p.value) {
            ("linear", _) => FillMethod::Linear,
            ("zero", _) => FillMethod::Zero,
            ("value", Some(v)) => FillMethod::Value(v),
            ("value", None) => return Err(BuildError::Invalid("fill(method: \"value\") needs `value`".into())),
            _ => FillMethod::Previous,
        };
        Ok(Step::Op(Box::new(ops::Fill::new(method, p.max_gap.map(Ms::i64)))))
    }
}
