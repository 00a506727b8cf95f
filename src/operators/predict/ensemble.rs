//! `ensemble`: two detectors' scores combined. Environment: none.

use crate::operators::prelude::*;
use crate::runtime::ops::learn;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "ensemble",
    kind: StageKind::Predict,
    summary: "Combines two detectors' scores of the same series.",
    doc: "Joins two Scores inputs by series and timestamp and combines their scores: `max` raises an alarm when either detector does, `mean` when they agree. Points only one side scored keep that side's score. Nest ensembles to combine more detectors.",
    inputs: &[input("a", &[Ty::Scores], "One detector's scores."), input("b", &[Ty::Scores], "The other's.")],
    params: &[
        choice("op", &["max", "mean"], Str("max"), "How the two scores are combined."),
        min("threshold", Ty::Float, Float(0.99), 0.0, "Combined scores at or above this are anomalous."),
    ],
    output: Output::Fixed(Ty::Scores),
    example: r#"predict both = ensemble(scores, scores, op: "mean")"#,
};

/// The parameters of `ensemble`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub op: String,
    pub threshold: f64,
}

/// The `ensemble` operator.
pub struct Ensemble;

impl Definition for Ensemble {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, _node: &StageNode, _env: &BuildEnv) -> Result<Step, BuildError> {
        Ok(Step::Op(Box::new(learn::Ensemble { mean: p.op == "mean", threshold: p.threshold })))
    }
}
