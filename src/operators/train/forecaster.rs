//! `forecaster`: an MLP forecasting the next values. Environment: none at build.
//! `epochs` has a spec maximum (it was clamped silently).

use crate::learn::{Spec, TrainParams};
use crate::operators::prelude::*;
use crate::operators::train::autoencoder::size;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "forecaster",
    kind: StageKind::Train,
    summary: "Trains a forecaster; anomalies are large residuals.",
    doc: "A small MLP (burn, CPU) that predicts the next `horizon` values from the last `lookback`. Predict with `score` (residual-based score) or `forecast` (bounds).",
    inputs: &[input("input", NUMERIC, "The series.")],
    params: &[
        range("lookback", Ty::Int, Int(32), 1.0, MAX_DIM, "Values the forecast looks at."),
        range("horizon", Ty::Int, Int(1), 1.0, MAX_DIM, "Values forecast ahead."),
        range("hidden", Ty::List(Scalar::Int), Ints(&[32]), 1.0, MAX_DIM, "Hidden layer sizes."),
        range("epochs", Ty::Int, Int(20), 1.0, 100_000.0, "Training epochs."),
        min("learning_rate", Ty::Float, Float(0.001), 0.0, "Adam's learning rate."),
        p("seed", Ty::Int, Int(42), "Seed for initialisation and shuffling."),
        min(
            "huber",
            Ty::Float,
            Float(1.0),
            0.0,
            "Huber loss's δ, in units of the series' robust spread: larger errors weigh linearly, so a spike in the training data pulls the model with bounded force. 0: mean squared error.",
        ),
        p(
            "change",
            Ty::Bool,
            Bool(false),
            "Forecast the change from the newest value, from the lookback's values relative to it, rather than the level: the model does not depend on the level, so a level it has not seen is not an anomaly by itself.",
        ),
        p("log", Ty::Bool, Bool(false), "Model `ln(1 + v / m)` instead of `v`, `m` the training data's median: values well above the median are compressed logarithmically (below it the map is nearly linear), so the bursts of a count or volume series weigh by their ratio to its usual level rather than by their size; forecasts are mapped back to the series' units. A version whose training data hold a negative value models the values themselves."),
    ],
    output: Output::Fixed(Ty::Model),
    example: r#"train fc = forecaster(raw, lookback: 48, horizon: 4)"#,
};

/// The parameters of `forecaster`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub lookback: i64,
    pub horizon: i64,
    pub hidden: Vec<i64>,
    pub epochs: i64,
    pub learning_rate: f64,
    pub seed: i64,
    pub huber: f64,
    pub change: bool,
    pub log: bool,
}

impl Params {
    /// What the stage trains.
    pub fn spec(&self) -> Spec {
        Spec::Forecaster {
            lookback: size(self.lookback),
            horizon: size(self.horizon),
            hidden: self.hidden.iter().map(|h| size(*h)).collect(),
            train: TrainParams {
                epochs: size(self.epochs),
                learning_rate: self.learning_rate,
                batch_size: 64,
                seed: self.seed as u64,
                huber: self.huber,
            },
            change: self.change,
            log: self.log,
        }
    }
}

/// The `forecaster` operator.
pub struct Forecaster;

impl Definition for Forecaster {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
        Ok(crate::runtime::ops::learn::train_step(p.spec(), node, env))
    }
}
