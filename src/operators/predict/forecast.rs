//! `forecast`: a forecaster's or baseline's bounds. Environment: none.

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
}

/// The `forecast` operator.
pub struct Forecast;

impl Definition for Forecast {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, _node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
        Ok(Step::Op(Box::new(learn::ModelScore::new(
            learn::Mode::Forecast { step: usize::try_from(p.horizon).unwrap_or(1), interval: p.interval, suppress_ms: p.suppress.i64() },
            1000,
            Some((env.pipeline.clone(), env.responder.feedback.clone())),
        ))))
    }
}
