//! `autoencoder`: a dense autoencoder over windows. Environment: none at build (models
//! train later). `epochs` and `batch_size` have spec maxima (they were clamped silently).

use crate::learn::{Spec, TrainParams};
use crate::operators::prelude::*;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "autoencoder",
    kind: StageKind::Train,
    summary: "Trains an autoencoder over windows; anomalies reconstruct badly.",
    doc: "A dense autoencoder (burn, CPU) over sliding windows of the input, trained to reconstruct normal behaviour. Predict with `score`, which turns the reconstruction error into a calibrated anomaly score.",
    inputs: &[input("input", &[Ty::Series, Ty::Features], "A series (windowed with `window`) or windows.")],
    params: &[
        range("window", Ty::Int, Int(32), 2.0, MAX_DIM, "Values per window when the input is a series."),
        range("hidden", Ty::List(Scalar::Int), Ints(&[16, 4]), 1.0, MAX_DIM, "Sizes of the encoder's layers; the decoder mirrors them."),
        range("epochs", Ty::Int, Int(20), 1.0, 100_000.0, "Training epochs."),
        min("learning_rate", Ty::Float, Float(0.001), 0.0, "Adam's learning rate."),
        range("batch_size", Ty::Int, Int(64), 1.0, 1_048_576.0, "Windows per batch."),
        p("seed", Ty::Int, Int(42), "Seed for initialisation and shuffling."),
        min(
            "huber",
            Ty::Float,
            Float(1.0),
            0.0,
            "Huber loss's δ, in units of the series' robust spread: larger errors weigh linearly, so a spike in the training data pulls the model with bounded force. 0: mean squared error.",
        ),
        p("log", Ty::Bool, Bool(false), "Model `ln(1 + v / m)` instead of `v`, `m` the training data's median: values well above the median are compressed logarithmically (below it the map is nearly linear), so the bursts of a count or volume series weigh by their ratio to its usual level rather than by their size; forecasts are mapped back to the series' units. A version whose training data hold a negative value models the values themselves."),
        p(
            "mask_newest",
            Ty::Bool,
            Bool(false),
            "Hide each window's newest value from the encoder (it sees the value before twice) while the decoder still reconstructs the whole window: the newest value's reconstruction becomes a forecast from the window's shape, and its error measures how unexpected the value is rather than how well the network copies it.",
        ),
    ],
    output: Output::Fixed(Ty::Model),
    example: r#"train ae = autoencoder(raw, window: 64, hidden: [32, 8], epochs: 10) { retrain every 6h }"#,
};

/// The parameters of `autoencoder`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub window: i64,
    pub hidden: Vec<i64>,
    pub epochs: i64,
    pub learning_rate: f64,
    pub batch_size: i64,
    pub seed: i64,
    pub huber: f64,
    pub log: bool,
    pub mask_newest: bool,
}

impl Params {
    /// What the stage trains.
    pub fn spec(&self) -> Spec {
        Spec::Autoencoder {
            window: size(self.window),
            hidden: self.hidden.iter().map(|h| size(*h)).collect(),
            train: TrainParams {
                epochs: size(self.epochs),
                learning_rate: self.learning_rate,
                batch_size: size(self.batch_size),
                seed: self.seed as u64,
                huber: self.huber,
            },
            log: self.log,
            mask_newest: self.mask_newest,
        }
    }
}

/// A size the spec keeps positive.
pub(crate) fn size(v: i64) -> usize {
    usize::try_from(v).unwrap_or(1).max(1)
}

/// The `autoencoder` operator.
pub struct Autoencoder;

impl Definition for Autoencoder {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
        Ok(crate::runtime::ops::learn::train_step(p.spec(), node, env))
    }
}
