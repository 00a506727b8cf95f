//! The neural models, built with burn on the CPU: a dense autoencoder over windows and an
//! MLP forecaster. Both are a stack of linear layers with ReLU between them; they differ in
//! what goes in and what comes out.
//!
//! Training runs on the autodiff device, seeded (initialisation and shuffling), with a
//! chronological validation split (the last tenth of the examples), early stopping when
//! the validation loss stops improving, and cancellation between epochs. Inference uses the
//! plain device (`Module::valid`) in one batch per call.
//!
//! The loss is Huber's (squared up to `huber` normalised units, linear beyond;
//! [`TrainParams::huber`]): a spike in the training data — an anomaly not yet known as
//! one — pulls on the weights with a bounded force, where the squared error's pull grows
//! with the spike. `huber: 0` trains on the mean squared error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::{Device, Tensor, TensorData};
use burn::store::ModuleRecord;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// The CPU device models train and run on. One function, so that moving to burn's `flex`
/// backend is a one-line change.
#[allow(deprecated)]
pub fn device() -> Device {
    Device::ndarray()
}

/// A stack of linear layers with ReLU between them (none after the last).
#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    act: Relu,
}

/// burn's initialisers draw from the device's generator, which may be global: seeding and
/// initialising (forced, as burn defers it to first use) happen under one lock so that
/// concurrent trainings stay reproducible.
static INIT: Mutex<()> = Mutex::new(());

impl Mlp {
    /// A network with these layer widths (`dims[0]` inputs, `dims[last]` outputs).
    pub fn new(dims: &[usize], seed: u64, device: &Device) -> Mlp {
        let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(seed);
        let layers: Vec<Linear> = dims.windows(2).map(|w| LinearConfig::new(w[0], w[1]).init(device)).collect();
        // burn initialises parameters lazily, on first use: draw them now, under the lock,
        // or a training running at the same time takes numbers from the same generator.
        for l in &layers {
            let _ = l.weight.val();
            if let Some(b) = &l.bias {
                let _ = b.val();
            }
        }
        Mlp { layers, act: Relu::new() }
    }

    pub fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = self.act.forward(x);
            }
        }
        x
    }
}

/// How to train.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TrainParams {
    pub epochs: usize,
    pub learning_rate: f64,
    pub batch_size: usize,
    pub seed: u64,
    /// Huber loss's δ in normalised units (the series' robust spread): errors beyond it
    /// count linearly. 0: the mean squared error.
    pub huber: f64,
}

/// The training loss of residuals `diff` (prediction − target): the mean Huber loss with
/// `delta` (`½r²` for `|r| ≤ δ`, `δ(|r| − ½δ)` beyond), or the mean squared error when
/// `delta` is 0. Its gradient per element is bounded by δ.
pub fn loss(diff: Tensor<2>, delta: f64) -> Tensor<1> {
    if delta > 0.0 {
        let a = diff.abs();
        let q = a.clone().clamp_max(delta);
        // ½·q·(2|r| − q): ½r² below δ, δ(|r| − ½δ) above.
        (q.clone() * (a.mul_scalar(2.0) - q)).mul_scalar(0.5).mean()
    } else {
        diff.powf_scalar(2.0).mean()
    }
}

/// What a training run produced.
pub struct Trained {
    /// The weights (burnpack), for saving and for warm starts.
    pub record: ModuleRecord,
    /// The model for inference.
    pub model: Mlp,
    /// The training loss ([`loss`]) on the training examples in the last epoch.
    pub loss: f64,
    /// Mean squared error on the held-out examples (None when too few to hold out).
    pub val_loss: Option<f64>,
    pub epochs_run: usize,
}

/// Why training stopped without a model.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("training was cancelled")]
    Cancelled,
    #[error("{0}")]
    Invalid(String),
}

/// Trains `dims`-shaped network to map `x` (rows of `dims[0]`) to `y` (rows of
/// `dims[last]`), both row-major f32. `warm` starts from earlier weights of the same shape.
/// `progress` is called after every epoch with (epoch, epochs, training loss).
///
/// # Errors
/// When cancelled between epochs, or when the examples do not fit the shape.
pub fn train(
    dims: &[usize],
    x: &[f32],
    y: &[f32],
    params: &TrainParams,
    warm: Option<&ModuleRecord>,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> Result<Trained, TrainError> {
    let (n_in, n_out) = (dims[0], dims[dims.len() - 1]);
    let n = x.len() / n_in.max(1);
    if n == 0 || x.len() != n * n_in || y.len() != n * n_out {
        return Err(TrainError::Invalid(format!("{n} examples do not fit a {n_in} → {n_out} network")));
    }
    let device = device().autodiff();
    let mut model = Mlp::new(dims, params.seed, &device);
    if let Some(record) = warm {
        model = model.try_load_record(record.clone()).map_err(|e| TrainError::Invalid(format!("cannot warm start: {e}")))?;
    }
    // Chronological split: the newest tenth validates (when there are enough examples).
    let n_val = if n >= 50 { n / 10 } else { 0 };
    let n_train = n - n_val;
    let batch = params.batch_size.clamp(1, n_train);
    let mut order: Vec<usize> = (0..n_train).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(params.seed);
    let mut optim = AdamConfig::new().init();
    let plain = device.clone().inner();
    let val = (n_val > 0).then(|| {
        (
            Tensor::<2>::from_data(TensorData::new(x[n_train * n_in..].to_vec(), [n_val, n_in]), &plain),
            Tensor::<2>::from_data(TensorData::new(y[n_train * n_out..].to_vec(), [n_val, n_out]), &plain),
        )
    });
    let (mut best_val, mut best_record, mut since_best) = (f64::INFINITY, None::<ModuleRecord>, 0usize);
    let mut best_mse = f64::NAN;
    let (mut loss_value, mut val_loss, mut epochs_run) = (f64::NAN, None, 0);
    let mut bx = Vec::with_capacity(batch * n_in);
    let mut by = Vec::with_capacity(batch * n_out);
    for epoch in 0..params.epochs.max(1) {
        if cancel.load(Ordering::Relaxed) {
            return Err(TrainError::Cancelled);
        }
        order.shuffle(&mut rng);
        let (mut sum, mut count) = (0.0, 0usize);
        for chunk in order.chunks(batch) {
            bx.clear();
            by.clear();
            for &i in chunk {
                bx.extend_from_slice(&x[i * n_in..(i + 1) * n_in]);
                by.extend_from_slice(&y[i * n_out..(i + 1) * n_out]);
            }
            let tx = Tensor::<2>::from_data(TensorData::new(bx.clone(), [chunk.len(), n_in]), &device);
            let ty = Tensor::<2>::from_data(TensorData::new(by.clone(), [chunk.len(), n_out]), &device);
            let loss = loss(model.forward(tx) - ty, params.huber);
            sum += f64::from(loss.clone().into_scalar::<f32>()) * chunk.len() as f64;
            count += chunk.len();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(params.learning_rate, model, grads);
        }
        loss_value = sum / count.max(1) as f64;
        epochs_run = epoch + 1;
        if let Some((vx, vy)) = &val {
            let diff = model.valid().forward(vx.clone()) - vy.clone();
            // Early stopping follows the training loss on the held-out examples; the
            // recorded validation loss is their mean squared error.
            let (v, mse) = (
                f64::from(loss(diff.clone(), params.huber).into_scalar::<f32>()),
                f64::from(diff.powf_scalar(2.0).mean().into_scalar::<f32>()),
            );
            val_loss = Some(mse);
            if v < best_val * 0.999 {
                best_val = v;
                best_mse = mse;
                best_record = Some(model.clone().into_record());
                since_best = 0;
            } else {
                since_best += 1;
            }
        }
        progress(epoch + 1, params.epochs.max(1), loss_value);
        // Early stopping: three epochs without a better validation loss.
        if since_best >= 3 {
            break;
        }
    }
    let record = match best_record {
        Some(r) => {
            val_loss = Some(best_mse);
            r
        }
        None => model.clone().into_record(),
    };
    let model = load(dims, &record)?;
    Ok(Trained { record, model, loss: loss_value, val_loss, epochs_run })
}

/// Rebuilds an inference model of shape `dims` from saved weights.
///
/// # Errors
/// When the weights do not fit the shape.
pub fn load(dims: &[usize], record: &ModuleRecord) -> Result<Mlp, TrainError> {
    Mlp::new(dims, 0, &device())
        .try_load_record(record.clone())
        .map_err(|e| TrainError::Invalid(format!("the weights do not fit the model: {e}")))
}

/// Runs the model on `rows` inputs of `dims[0]` values; returns `rows` outputs, row-major.
pub fn infer(model: &Mlp, x: Vec<f32>, rows: usize) -> Vec<f32> {
    if rows == 0 {
        return Vec::new();
    }
    let n_in = x.len() / rows;
    let t = Tensor::<2>::from_data(TensorData::new(x, [rows, n_in]), &device());
    model.forward(t).into_data().try_into_vec::<f32>().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_identity_and_is_reproducible() {
        // 200 examples of 4 values; an autoencoder 4 → 2 → 4 on data of rank 2.
        let mut x = Vec::new();
        for i in 0..200 {
            let (a, b) = ((i as f32 * 0.1).sin(), (i as f32 * 0.07).cos());
            x.extend_from_slice(&[a, b, a + b, a - b]);
        }
        let params = TrainParams { epochs: 60, learning_rate: 0.01, batch_size: 32, seed: 7, huber: 0.0 };
        let cancel = AtomicBool::new(false);
        let mut losses = Vec::new();
        let t1 = train(&[4, 8, 2, 8, 4], &x, &x, &params, None, &cancel, &mut |_, _, l| losses.push(l)).unwrap();
        let t2 = train(&[4, 8, 2, 8, 4], &x, &x, &params, None, &cancel, &mut |_, _, _| {}).unwrap();
        assert!(losses.len() >= 3);
        assert!(t1.loss < losses[0] * 0.5, "training reduces the loss: {losses:?}");
        assert!(t1.val_loss.is_some_and(f64::is_finite));
        assert_eq!(t1.loss, t2.loss, "same seed, same training");
        let y = infer(&t1.model, x[..8].to_vec(), 2);
        assert_eq!(y.len(), 8);
        // Cancelled before the first epoch.
        cancel.store(true, Ordering::Relaxed);
        assert!(matches!(train(&[4, 2, 4], &x, &x, &params, None, &cancel, &mut |_, _, _| {}), Err(TrainError::Cancelled)));
    }

    #[test]
    fn huber_loss_is_bounded_under_a_spike() {
        let dev = device();
        let t = |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [v.len(), 1]), &dev);
        let l = |v: &[f32], d: f64| f64::from(loss(t(v), d).into_scalar::<f32>());
        // Squared below δ, linear above: a spike 10× larger adds 10× the excess, not 100×.
        assert!((l(&[0.5, 0.0], 1.0) - 0.0625).abs() < 1e-6);
        assert!((l(&[3.0, 0.0], 1.0) - 1.25).abs() < 1e-6, "δ(|r| − δ/2) / 2 rows");
        let (a, b) = (l(&[0.0, 10.0], 1.0), l(&[0.0, 100.0], 1.0));
        assert!(((b - a) - 45.0).abs() < 1e-3, "slope δ/n beyond δ: {a} {b}");
        assert!((l(&[0.0, 100.0], 0.0) - 5000.0).abs() < 1e-2, "δ = 0 is the mean squared error");

        // Training y = x on 40 points (too few to hold any out: no early stopping) where one
        // target is a spike of +200: the squared error's fit is dragged toward the spike
        // (by 200/40 at the optimum), Huber's stays on the line.
        let x: Vec<f32> = (0..40).map(|i| (i % 20) as f32 / 10.0 - 1.0).collect();
        let mut y = x.clone();
        y[25] += 200.0;
        let fit = |huber: f64| {
            let p = TrainParams { epochs: 400, learning_rate: 0.05, batch_size: 40, seed: 3, huber };
            let t = train(&[1, 1], &x, &y, &p, None, &AtomicBool::new(false), &mut |_, _, _| {}).unwrap();
            infer(&t.model, vec![0.5], 1)[0]
        };
        let (robust, squared) = (fit(1.0), fit(0.0));
        assert!((robust - 0.5).abs() < 0.1, "Huber fit at 0.5: {robust}");
        assert!((squared - 0.5).abs() > 0.5, "MSE fit at 0.5: {squared}");
    }
}
