//! `threshold`: fixed bounds. Environment: none.

use crate::operators::prelude::*;
use crate::runtime::ops::predict;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "threshold",
    kind: StageKind::Predict,
    summary: "Flags values above or below fixed bounds.",
    doc: "A static rule: anomalous when the value is above `above` or below `below` for at least `for`. The score is 1 when anomalous, otherwise how close the value is to a bound.",
    inputs: &[input("input", &[Ty::Series, Ty::Scores], "A series, or scores (compared by their score).")],
    params: &[
        p("above", Ty::Float, Optional, "Upper bound."),
        p("below", Ty::Float, Optional, "Lower bound."),
        p("for", Ty::Duration, Dur(0), "How long a bound must be crossed."),
    ],
    output: Output::Fixed(Ty::Scores),
    example: r#"predict hot = threshold(raw, above: 90.0, for: 2m)"#,
};

/// The parameters of `threshold`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub above: Option<f64>,
    pub below: Option<f64>,
    #[serde(rename = "for")]
    pub for_: Ms,
}

/// The `threshold` operator.
pub struct Threshold;

impl Definition for Threshold {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, _node: &StageNode, _env: &BuildEnv) -> Result<Step, BuildError> {
        Ok(Step::Op(Box::new(predict::Threshold::new(p.above, p.below, p.for_.i64()))))
    }
}
