//! `drift`: a model's input drift as scores. Environment: none.

use crate::operators::prelude::*;
use crate::runtime::ops::learn;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "drift",
    kind: StageKind::Predict,
    summary: "How far a model's live input has drifted from its training data, as scores.",
    doc: "For every series of the train stage, the population stability index of its newest 256 values against the active version's training data (its deciles), each time the train stage computes it (every 32 samples): the value is the index, the score `psi / (psi + threshold)` (0.5 at the threshold), anomalous above the threshold. A respond stage over it alerts on drift like on any other anomaly. By the usual reading an index below 0.1 is stable, above 0.25 a major shift.",
    inputs: &[input("model", &[Ty::Model], "The trained model.")],
    params: &[min("threshold", Ty::Float, Float(0.25), 0.0, "The index above which the input has drifted.")],
    output: Output::Fixed(Ty::Scores),
    example: r#"predict moved = model.drift(threshold: 0.2)"#,
};

/// The parameters of `drift`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub threshold: f64,
}

/// The `drift` operator.
pub struct Drift;

impl Definition for Drift {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, _node: &StageNode, _env: &BuildEnv) -> Result<Step, BuildError> {
        Ok(Step::Op(Box::new(learn::DriftScores { threshold: p.threshold })))
    }
}
