//! `budget`: a threshold set from an alarm budget. Environment: none.

use crate::operators::prelude::*;
use crate::runtime::ops::budget;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "budget",
    kind: StageKind::Predict,
    summary: "Sets a detector's threshold from its own scores so it raises about `alarms` alarms per `per`.",
    doc: "Keeps each series' scores over the last `horizon` and chooses the lowest threshold at which the scores would have started no more than `alarms` alarms per `per` there (an alarm is the start of a run of scores at or above the threshold); a sample is anomalous at or above it. Until a full `per` of scores is in, nothing is anomalous. Verdicts adapt it: scores inside windows on-call marked `false_positive` do not count toward the budget and the threshold stays above the highest of them for `horizon`. The score is rescaled so that the threshold maps to 0.5.",
    inputs: &[input("input", &[Ty::Scores], "A detector's scores.")],
    params: &[
        min("alarms", Ty::Float, Float(1.0), 0.0, "Alarms allowed per period, per series."),
        min("per", Ty::Duration, Dur(86_400_000), 1.0, "The period."),
        min("horizon", Ty::Duration, Dur(604_800_000), 1.0, "How much score history sets the threshold."),
    ],
    output: Output::Fixed(Ty::Scores),
    example: r#"predict paged = budget(scores, alarms: 2, per: 1d)"#,
};

/// The parameters of `budget`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub alarms: f64,
    pub per: Ms,
    pub horizon: Ms,
}

/// The `budget` operator.
pub struct Budget;

impl Definition for Budget {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, _node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
        Ok(Step::Op(Box::new(budget::Budget::new(
            p.alarms,
            p.per.i64().max(1),
            p.horizon.i64().max(1),
            Some((env.pipeline.clone(), env.responder.feedback.clone())),
        ))))
    }
}
