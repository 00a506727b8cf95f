//! `forecast_breach`: an incident before a bound is crossed. Environment: none. `above`
//! is required by the spec (the checker refuses a call without it).

use crate::operators::prelude::*;
use crate::runtime::ops::breach;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "forecast_breach",
    kind: StageKind::Predict,
    summary: "Raises an incident before a threshold is crossed, from the trend of the last `window`.",
    doc: "A least-squares line through the last `window` of each series, with the standard error of its slope: a breach is forecast when the cautious trajectory (the slope less `sigmas` standard errors) reaches `above` within `within`, and a series already at or above the bound is anomalous too. `sigmas: 0.0` is Prometheus's `predict_linear(x[window], within) > above`; the standard error makes a short or noisy trend count for less. Expected value: the line's forecast at `within`; bounds: the cautious and bold trajectories there; score 0.5 when the breach is exactly `within` away. O(1) per sample, memory of one window.",
    inputs: &[input("input", &[Ty::Series], "The series (a disk's used share, a process's memory, a queue's depth).")],
    params: &[
        p("above", Ty::Float, Required, "The bound whose crossing is forecast."),
        min("within", Ty::Duration, Dur(14_400_000), 1.0, "How far ahead a breach raises an incident."),
        min("window", Ty::Duration, Dur(21_600_000), 1.0, "The history the trend is fitted on."),
        min("sigmas", Ty::Float, Float(1.64), 0.0, "Standard errors taken off the slope (1.64: one-sided 95%; 0: plain extrapolation)."),
        p(
            "season",
            Ty::Duration,
            Dur(0),
            "The length of the series' cycle (`1d` for a daily one; `0s`: none). After one season, the trend is fitted to the values less their seasonal profile (the typical deviation of each 48th of the season from the season's mean) and the forecast adds the profile back: a daily peak that comes back to the same height is not a breach, and a rising trend warns before the peak that will cross.",
        ),
    ],
    output: Output::Fixed(Ty::Scores),
    example: r#"predict filling = forecast_breach(raw, above: 90.0, within: 4h)"#,
};

/// The parameters of `forecast_breach`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub above: f64,
    pub within: Ms,
    pub window: Ms,
    pub sigmas: f64,
    pub season: Ms,
}

/// The `forecast_breach` operator.
pub struct ForecastBreach;

impl Definition for ForecastBreach {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, _node: &StageNode, _env: &BuildEnv) -> Result<Step, BuildError> {
        Ok(Step::Op(Box::new(breach::ForecastBreach::new(breach::Breach {
            above: p.above,
            within_ms: p.within.i64(),
            window_ms: p.window.i64(),
            sigmas: p.sigmas,
            season_ms: p.season.i64(),
        }))))
    }
}
