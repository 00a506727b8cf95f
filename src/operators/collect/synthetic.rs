//! `synthetic`: a seeded generated series. Environment: none.

use crate::operators::prelude::*;
use crate::runtime::ops::collect;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "synthetic",
    kind: StageKind::Collect,
    summary: "Generates a seeded synthetic series with injected incidents.",
    doc: "Generates samples with a daily-like seasonal wave, Gaussian noise and, at intervals, injected incidents (level shifts and spikes). Deterministic for a seed. The demo pipeline's data source; `speedup` compresses time so that incidents happen within seconds.",
    inputs: &[],
    params: &[
        p("seed", Ty::Int, Int(1), "Seed of the random generator."),
        range("series", Ty::Int, Int(1), 1.0, 100_000.0, "How many series to generate."),
        min("interval", Ty::Duration, Dur(1000), 1.0, "Time between samples."),
        p("baseline", Ty::Float, Float(50.0), "Mean level."),
        min("noise", Ty::Float, Float(2.0), 0.0, "Standard deviation of the noise."),
        min("period", Ty::Duration, Dur(3_600_000), 1.0, "Period of the seasonal wave."),
        p("amplitude", Ty::Float, Float(10.0), "Amplitude of the seasonal wave."),
        min("incident_every", Ty::Duration, Dur(600_000), 1.0, "Mean time between injected incidents."),
        min("incident_length", Ty::Duration, Dur(60_000), 1.0, "How long an injected incident lasts."),
        p("incident_size", Ty::Float, Float(8.0), "Size of an incident, in noise standard deviations."),
        min("speedup", Ty::Float, Float(1.0), 0.001, "How much faster than real time samples are produced."),
    ],
    output: Output::Fixed(Ty::Series),
    example: r#"collect demo = synthetic(seed: 7, series: 3, speedup: 60.0)"#,
};

/// The parameters of `synthetic` (ranges as the spec declares them).
#[derive(Debug, Deserialize)]
pub struct Params {
    pub seed: i64,
    pub series: i64,
    pub interval: Ms,
    pub baseline: f64,
    pub noise: f64,
    pub period: Ms,
    pub amplitude: f64,
    pub incident_every: Ms,
    pub incident_length: Ms,
    pub incident_size: f64,
    pub speedup: f64,
}

/// The `synthetic` operator.
pub struct Synthetic;

impl Definition for Synthetic {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, _node: &StageNode, _env: &BuildEnv) -> Result<Step, BuildError> {
        Ok(Step::Source(Box::new(collect::SyntheticSource::new(collect::SyntheticConfig {
            seed: p.seed as u64,
            series: usize::try_from(p.series).unwrap_or(1),
            interval_ms: p.interval.i64(),
            baseline: p.baseline,
            noise: p.noise,
            period_ms: p.period.i64(),
            amplitude: p.amplitude,
            incident_every_ms: p.incident_every.i64(),
            incident_length_ms: p.incident_length.i64(),
            incident_size: p.incident_size,
            speedup: p.speedup,
        }))))
    }
}
