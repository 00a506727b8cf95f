//! `score`: a trained model's calibrated anomaly score. Environment: none.

use crate::learn::calibrate::Calibration;
use crate::operators::prelude::*;
use crate::runtime::ops::learn;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "score",
    kind: StageKind::Predict,
    summary: "Scores data with a trained model, calibrated to [0,1].",
    doc: "Runs the model's active version on the input and turns its error into a score in [0,1]: the tail probability of the error against a rolling history of the model's own errors, so that one threshold serves very different series. After a detection, further detections are suppressed for `suppress`.",
    inputs: &[input("model", &[Ty::Model], "The trained model."), input("input", &[Ty::Series, Ty::Features], "The data to score.")],
    params: &[
        min("history", Ty::Int, Int(1000), 10.0, "Errors kept for calibration."),
        min("threshold", Ty::Float, Float(0.99), 0.0, "Scores at or above this are anomalous."),
        choice(
            "calibration",
            Calibration::NAMES,
            Str("tail"),
            concat!(calibration_doc!(), " With `likelihood` and `novelty` the scores are odds `o / (1 + o)`, not tail probabilities: thresholds near 0.8–0.93 rather than 0.999."),
        ),
        min("odds_factor", Ty::Float, Float(1.0), 1.0, "Within the quiet period, a later detection must have this many times the odds `s / (1 − s)` of the last one reported (1: any higher score)."),
        p("suppress", Ty::Duration, Dur(0), "Quiet period after a detection."),
    ],
    output: Output::Fixed(Ty::Scores),
    example: r#"predict s = model.score(raw, threshold: 0.995)"#,
};

/// The parameters of `score`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub history: i64,
    pub threshold: f64,
    pub suppress: Ms,
    pub calibration: String,
    pub odds_factor: f64,
}

/// The `score` operator.
pub struct Score;

impl Definition for Score {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, _node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
        Ok(Step::Op(Box::new(
            learn::ModelScore::new(
                learn::Mode::Score { threshold: p.threshold, suppress_ms: p.suppress.i64() },
                usize::try_from(p.history).unwrap_or(1000),
                Some((env.pipeline.clone(), env.responder.feedback.clone())),
            )
            .with_calibration(Calibration::parse(&p.calibration).unwrap_or(Calibration::Tail))
            .with_odds_factor(p.odds_factor),
        )))
    }
}
