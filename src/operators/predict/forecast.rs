//! `forecast`: a forecaster's or baseline's bounds. Environment: none.

use crate::learn::calibrate::Calibration;
use crate::operators::prelude::*;
use crate::runtime::ops::learn;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "forecast",
    kind: StageKind::Predict,
    summary: "Forecasts with bounds using a trained forecaster or baseline.",
    doc: "Emits the expected value and the lower and upper bounds of the `interval` for each sample; the sample is anomalous when outside the bounds.",
    inputs: &[input("model", &[Ty::Model], "A forecaster or baseline."), input("input", NUMERIC, "The series.")],
    params: &[
        min("horizon", Ty::Int, Int(1), 1.0, "Steps ahead."),
        range("interval", Ty::Float, Float(0.95), 0.0, 1.0, "Coverage of the bounds."),
        choice(
            "calibration",
            Calibration::NAMES,
            Str("tail"),
            concat!(calibration_doc!(), " With `likelihood` and `novelty` the scores are odds `o / (1 + o)`, not tail probabilities (a sample outside the bounds is anomalous when its score is at least `interval`)."),
        ),
        min("odds_factor", Ty::Float, Float(1.0), 1.0, "Within the quiet period, a later detection must have this many times the odds `s / (1 − s)` of the last one reported (1: any higher score)."),
        p("suppress", Ty::Duration, Dur(0), "Quiet period after a detection: a score is kept only when it exceeds every score of the period before it."),
    ],
    output: Output::Fixed(Ty::Scores),
    example: r#"predict fc = forecast(model, raw, interval: 0.99)"#,
};

/// The parameters of `forecast`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub horizon: i64,
    pub interval: f64,
    pub suppress: Ms,
    pub calibration: String,
    pub odds_factor: f64,
}

/// The `forecast` operator.
pub struct Forecast;

impl Definition for Forecast {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, _node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
        Ok(Step::Op(Box::new(
            learn::ModelScore::new(
                learn::Mode::Forecast {
                    step: usize::try_from(p.horizon).unwrap_or(1),
                    interval: p.interval,
                    suppress_ms: p.suppress.i64(),
                },
                1000,
                Some((env.pipeline.clone(), env.responder.feedback.clone())),
            )
            .with_calibration(Calibration::parse(&p.calibration).unwrap_or(Calibration::Tail))
            .with_odds_factor(p.odds_factor),
        )))
    }
}
