//! `novelty`: how new each value is against the series' past. Environment: none.
//! `memory` is bounded by its spec range (it was clamped silently).

use crate::operators::prelude::*;
use crate::runtime::ops::predict;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "novelty",
    kind: StageKind::Predict,
    summary: "Scores how new each value, its time-of-day context and its short shape are against the series' recent past; needs no training.",
    doc: "The detector behind the stdlib's `nab` stage. Three channels per sample, each relative to the series' robust range (0.1%–99.9% quantiles of the last 28 days, at least 8 064 samples): how far the value is from every value of that reference (less the data's smallest step); how far it is outside what the series did at the same time of day on each of the previous 7 days and the same time of week 1–2 weeks back (it must persist a few samples); and how far the last half hour's shape is from the same half hour on those days. Each channel's surprise is weighed by an HTM-style likelihood against its own last 2 days, so one threshold serves very different series. A new report within `suppress` needs a higher score and twice the odds of the last one, so a lasting anomaly is one detection. Time and memory per sample are bounded (not growing with the history). The sampling step is inferred from the first 50 samples; nothing is scored during the first two days (the likelihoods need them).",
    inputs: &[input("input", NUMERIC, "The series.")],
    params: &[
        p("suppress", Ty::Duration, Dur(43_200_000), "Quiet period after a detection."),
        range("memory", Ty::Int, Int(25_000), 100.0, 10_000_000.0, "At most this many samples remembered per series (the reference is 28 days, at least 8 064 samples)."),
        min("threshold", Ty::Float, Float(0.79), 0.0, "Scores at or above this are anomalous (0.79: the threshold cross-validation chose on NAB)."),
    ],
    output: Output::Fixed(Ty::Scores),
    example: r#"predict novel = novelty(raw, suppress: 6h)"#,
};

/// The parameters of `novelty`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub suppress: Ms,
    pub memory: i64,
    pub threshold: f64,
}

/// The `novelty` operator.
pub struct Novelty;

impl Definition for Novelty {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, _node: &StageNode, _env: &BuildEnv) -> Result<Step, BuildError> {
        Ok(Step::Op(Box::new(predict::Novelty::new(p.suppress.i64(), usize::try_from(p.memory).unwrap_or(25_000), p.threshold))))
    }
}
