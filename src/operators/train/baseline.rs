//! `baseline`: a seasonal profile. Environment: none at build.

use crate::learn::Spec;
use crate::operators::prelude::*;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "baseline",
    kind: StageKind::Train,
    summary: "Fits a seasonal profile: the typical value and spread per time of day/week.",
    doc: "A classical baseline: for each bucket of the season (e.g. each 5 minutes of the day), the median and median absolute deviation of past values. Cheap, explainable, and strong on periodic series.",
    inputs: &[input("input", NUMERIC, "The series.")],
    params: &[min("season", Ty::Duration, Dur(86_400_000), 1.0, "The season's length."), min("bucket", Ty::Duration, Dur(300_000), 1.0, "The resolution within a season.")],
    output: Output::Fixed(Ty::Model),
    example: r#"train profile = baseline(raw, season: 1w, bucket: 15m)"#,
};

/// The parameters of `baseline`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub season: Ms,
    pub bucket: Ms,
}

/// The most buckets a season may have.
pub const MAX_BUCKETS: u64 = 1_000_000;

impl Params {
    /// What the stage trains.
    pub fn spec(&self) -> Spec {
        Spec::Baseline { season_ms: self.season.i64().max(1), bucket_ms: self.bucket.i64().max(1) }
    }
}

/// The `baseline` operator.
pub struct Baseline;

impl Definition for Baseline {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn validate(p: &Params) -> Vec<Refusal> {
        if p.season.0 / p.bucket.0.max(1) > MAX_BUCKETS {
            let d = |ms| crate::syntax::ast::Duration { millis: ms };
            return vec![Refusal::new(
                "bucket",
                format!("a season of {} in buckets of {} is more than a million buckets", d(p.season.0), d(p.bucket.0)),
                "use larger buckets or a shorter season",
            )];
        }
        Vec::new()
    }

    fn build(p: Params, node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
        Ok(crate::runtime::ops::learn::train_step(p.spec(), node, env))
    }
}
