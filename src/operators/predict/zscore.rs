//! `zscore`: (robust) z-scores over a trailing window. Environment: none.

use crate::operators::prelude::*;
use crate::runtime::ops::predict;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "zscore",
    kind: StageKind::Predict,
    summary: "Scores each sample by its (robust) z-score over a trailing window; needs no training.",
    doc: "Compares each sample with the statistics of the trailing `window` before it: mean and standard deviation (`standard`) or median and MAD (`robust`). The score maps |z| to [0,1] so that |z| = threshold gives 0.5 and larger deviations approach 1; samples with |z| ≥ threshold are anomalous.",
    inputs: &[input("input", NUMERIC, "The series.")],
    params: &[
        min("window", Ty::Duration, Dur(3_600_000), 1.0, "The trailing window."),
        choice("method", &["robust", "standard"], Str("robust"), "Median/MAD or mean/standard deviation."),
        min("threshold", Ty::Float, Float(4.0), 0.0, "|z| at which a sample is anomalous."),
        min("min_samples", Ty::Int, Int(30), 1.0, "Samples needed in the window before scoring."),
        min(
            "suppress",
            Ty::Duration,
            Dur(0),
            0.0,
            "Quiet period after a detection: within it a sample keeps its score (and its `anomalous` flag) only when it scores higher than every sample of the period before it, so a sustained deviation is reported once and again only if it gets worse. 0s: every sample on its own.",
        ),
    ],
    output: Output::Fixed(Ty::Scores),
    example: r#"predict z = zscore(raw, window: 30m, threshold: 3.5)"#,
};

/// The parameters of `zscore`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub window: Ms,
    pub method: String,
    pub threshold: f64,
    pub min_samples: i64,
    pub suppress: Ms,
}

/// The `zscore` operator.
pub struct ZScore;

impl Definition for ZScore {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, _node: &StageNode, _env: &BuildEnv) -> Result<Step, BuildError> {
        Ok(Step::Op(Box::new(
            predict::ZScore::new(p.window.i64(), p.method != "standard", p.threshold, usize::try_from(p.min_samples).unwrap_or(1).max(1))
                .with_suppress(p.suppress.i64()),
        )))
    }
}
