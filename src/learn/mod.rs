//! Learning: models of each series' normal behaviour, trained from its history.
//!
//! - [`Spec`]: what a train stage builds (`autoencoder`, `forecaster`, `baseline`), made
//!   from the typed parameters of those operators (`src/operators/train/`).
//! - [`fit`]: trains one model version for one series from its recent history; the neural
//!   models with burn ([`net`]), the seasonal baseline in closed form.
//! - [`Fitted`]: a trained version and its [`ModelMeta`]data; [`Fitted::predict`] gives,
//!   for points of a series, the expected value and a raw error in units of the series'
//!   typical spread, which [`calibrate`] turns into a score in [0, 1].
//! - [`registry`]: versioned artifacts under `STATE/models/` (or, under `--cluster`, in
//!   the JetStream object store: [`artifacts`]) with metadata in the state store;
//!   [`jobs`]: trainings handed to any node of a cluster.
//!
//! Every model normalises its input by the training data's median and robust spread
//! (1.4826 × MAD, falling back to the standard deviation and then to a small floor, so a
//! constant series trains and scores without dividing by zero).

pub mod artifacts;
pub mod calibrate;
pub mod jobs;
pub mod monitor;
pub mod net;
pub mod novelty;
pub mod registry;
pub mod shadow;

use std::sync::atomic::AtomicBool;

use burn::store::ModuleRecord;

use crate::time::Timestamp;

pub use net::{TrainError, TrainParams};

/// Most recent samples a model trains on.
pub const MAX_TRAIN_SAMPLES: usize = 8192;

/// What a train stage builds.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Spec {
    /// Reconstructs windows of `window` values; with `mask_newest`, from the window with
    /// its newest value hidden (replaced by the one before), so that the newest value's
    /// reconstruction is a forecast from the window's shape.
    Autoencoder {
        window: usize,
        hidden: Vec<usize>,
        train: TrainParams,
        #[serde(default)]
        log: bool,
        #[serde(default)]
        mask_newest: bool,
    },
    /// Predicts the next `horizon` values from the last `lookback`; with `change`, the
    /// change from the newest value from the lookback's values relative to it (a model
    /// that does not depend on the level, so a level it never saw is no anomaly by itself).
    ///
    /// With `log` (either model), a version trained on non-negative data models
    /// `ln(1 + v / m)`, `m` the training data's median ([`log_base`]): values well above
    /// the median are compressed logarithmically, so a count series' bursts weigh by their
    /// ratio to its usual level.
    Forecaster {
        lookback: usize,
        horizon: usize,
        hidden: Vec<usize>,
        train: TrainParams,
        change: bool,
        #[serde(default)]
        log: bool,
    },
    /// The median and spread per `bucket` of a `season`.
    Baseline { season_ms: i64, bucket_ms: i64 },
}

impl Spec {
    /// The operator's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Spec::Autoencoder { .. } => "autoencoder",
            Spec::Forecaster { .. } => "forecaster",
            Spec::Baseline { .. } => "baseline",
        }
    }

    /// Values before a point the model needs to score it.
    pub fn context(&self) -> usize {
        match self {
            Spec::Autoencoder { window, .. } => window - 1,
            Spec::Forecaster { lookback, horizon, .. } => lookback + horizon - 1,
            Spec::Baseline { .. } => 0,
        }
    }

    /// Samples needed to train at all.
    pub fn min_samples(&self) -> usize {
        match self {
            Spec::Autoencoder { window, .. } => window + 10,
            Spec::Forecaster { lookback, horizon, .. } => lookback + horizon + 10,
            Spec::Baseline { .. } => 10,
        }
    }

    fn dims(&self) -> Vec<usize> {
        match self {
            Spec::Autoencoder { window, hidden, .. } => {
                let mut d = vec![*window];
                d.extend(hidden);
                d.extend(hidden.iter().rev().skip(1));
                d.push(*window);
                d
            }
            Spec::Forecaster { lookback, horizon, hidden, .. } => {
                let mut d = vec![*lookback];
                d.extend(hidden);
                d.push(*horizon);
                d
            }
            Spec::Baseline { .. } => Vec::new(),
        }
    }
}

/// A trained version's metadata, kept in the state store and beside the artifact.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelMeta {
    /// The train stage's key (`pipeline.stage`).
    pub key: String,
    /// The series it models (Prometheus notation).
    pub series: String,
    pub version: u32,
    /// `autoencoder`, `forecaster` or `baseline`.
    pub kind: String,
    /// The train stage's fingerprint: a model only serves the configuration that made it.
    pub fingerprint: String,
    /// The content hash of the pipeline sources it was trained under.
    pub pipeline_version: String,
    /// The training data's first and last timestamps, and how many samples.
    pub data_from: Timestamp,
    pub data_to: Timestamp,
    pub samples: u64,
    /// Training loss (mean squared error in normalised units) and validation loss.
    pub loss: f64,
    pub val_loss: Option<f64>,
    pub epochs: usize,
    pub train_ms: u64,
    pub created_at: Timestamp,
    /// Normalisation: the training data's median and robust spread.
    pub center: f64,
    pub scale: f64,
    /// Layer widths (neural models).
    pub dims: Vec<usize>,
    /// Steps ahead (forecasters).
    pub horizon: usize,
    /// Whether the forecaster predicts the change from the newest value (from values
    /// relative to it) rather than the level.
    #[serde(default)]
    pub change: bool,
    /// What the training data looked like, for drift monitoring.
    #[serde(default)]
    pub summary: Option<monitor::DataSummary>,
    /// Samples left out because on-call confirmed them as anomalies, and samples of
    /// windows marked false positive, learned as normal with extra weight.
    #[serde(default)]
    pub feedback_excluded: u64,
    #[serde(default)]
    pub feedback_normal: u64,
    /// When the regime this version learned began (after a drift retrain), if known.
    #[serde(default)]
    pub regime_from: Option<Timestamp>,
    /// The version models `ln(1 + v / log_base)` rather than `v` (see [`Spec::Forecaster`]).
    #[serde(default)]
    pub log_base: Option<f64>,
    /// An autoencoder that reconstructs its windows with the newest value hidden.
    #[serde(default)]
    pub mask_newest: bool,
}

impl ModelMeta {
    /// The error a version made on data it did not train on (mean squared, in normalised
    /// units; the training loss when there was no validation split).
    pub fn reference_error(&self) -> f64 {
        self.val_loss.filter(|v| v.is_finite()).unwrap_or(self.loss)
    }
}

/// A seasonal profile: the median and robust spread per bucket of the season.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Profile {
    pub season_ms: i64,
    pub bucket_ms: i64,
    /// Per bucket: (median, spread); None where the bucket had too few samples.
    pub buckets: Vec<Option<(f64, f64)>>,
}

impl Profile {
    fn bucket(&self, ts: Timestamp) -> usize {
        ((ts.rem_euclid(self.season_ms)) / self.bucket_ms) as usize
    }
}

/// A trained model.
pub enum Body {
    Net { model: net::Mlp, record: ModuleRecord },
    Baseline(Profile),
}

/// One trained version of a model of one series.
pub struct Fitted {
    pub meta: ModelMeta,
    pub body: Body,
    /// The errors this version made on the newest tenth of its data, which the neural
    /// models did not train on (the validation split), oldest first: what a predict
    /// stage's calibration of this version starts from, so that a new version scores from
    /// its first point without borrowing another version's errors. Empty for versions
    /// trained on fewer than 50 examples and for versions loaded from the registry (their
    /// calibration starts from their live errors).
    pub calibration: Vec<f64>,
    /// At the same points, `|value − expected|` in the series' units: what the bounds of
    /// `forecast` start from.
    pub residuals: Vec<f64>,
}

/// What the model says about one point: the value it expected and its raw error, in
/// units of the series' robust spread.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    pub expected: f64,
    pub error: f64,
}

/// The training data of one series.
pub struct Examples<'a> {
    pub ts: &'a [Timestamp],
    pub values: &'a [f64],
    /// Per sample (or empty): confirmed anomalies, never learned as normal.
    pub exclude: &'a [bool],
    /// Per sample (or empty): windows marked false positive, learned as normal with
    /// [`FEEDBACK_WEIGHT`] times the weight.
    pub normal: &'a [bool],
}

/// How many times a sample of a window marked false positive counts in training (a reason:
/// a nightly job seen in a few windows of a training set of thousands of samples must
/// weigh enough to move the model; 4 keeps it below a tenth of a typical set).
pub const FEEDBACK_WEIGHT: usize = 4;

/// Robust centre and spread of values: median and 1.4826 × MAD, falling back to the
/// standard deviation and then to a floor relative to the level.
pub fn center_scale(values: &[f64]) -> (f64, f64) {
    let Some((median, mad)) = crate::stats::median_mad(values) else { return (0.0, 1.0) };
    let mut scale = 1.4826 * mad;
    if scale.is_nan() || scale <= 1e-12 {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        scale = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    }
    if scale.is_nan() || scale <= 1e-12 {
        scale = (median.abs() * 1e-3).max(1e-6);
    }
    (median, scale)
}

/// The base `m` of the log transform `ln(1 + v / m)` for these training values: their
/// median, at least a thousandth of their maximum (so that a mostly-zero series is not
/// divided by nothing). None when a value is negative (the transform needs `v ≥ 0`; such
/// a version models the values themselves) or there are none.
pub fn log_base(values: &[f64]) -> Option<f64> {
    if values.iter().any(|v| *v < 0.0) {
        return None;
    }
    let (median, _) = crate::stats::median_mad(values)?;
    let max = values.iter().copied().fold(0.0_f64, f64::max);
    Some(median.max(max * 1e-3).max(1e-9))
}

/// A version's map from the series' values to the values it models, and back.
#[derive(Clone, Copy, Debug)]
struct Transform(Option<f64>);

impl Transform {
    /// The modelled value (a negative value met after training, which the log cannot
    /// take, counts as 0).
    fn to_model(self, v: f64) -> f64 {
        self.0.map_or(v, |b| (v.max(0.0) / b).ln_1p())
    }

    fn to_series(self, v: f64) -> f64 {
        self.0.map_or(v, |b| b * v.exp_m1())
    }
}

/// Identifies what is trained: the stage and series, and the versioning context.
#[derive(Clone, Debug)]
pub struct FitContext {
    pub key: String,
    pub series: String,
    pub version: u32,
    pub fingerprint: String,
    pub pipeline_version: String,
    /// When the series' current regime began (set by a drift retrain): recorded with the
    /// version, so that predict stages recalibrate when a new regime's model arrives.
    pub regime_from: Option<Timestamp>,
}

/// Trains a new version from `data` (its newest [`MAX_TRAIN_SAMPLES`] at most), warm
/// starting from `warm` when given and of the same shape.
///
/// # Errors
/// When there are too few samples, or training was cancelled.
pub fn fit(
    spec: &Spec,
    cx: &FitContext,
    data: Examples<'_>,
    warm: Option<&Fitted>,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> Result<Fitted, TrainError> {
    let started = std::time::Instant::now();
    let n = data.values.len().min(data.ts.len());
    let skip = n.saturating_sub(MAX_TRAIN_SAMPLES);
    let (ts, values) = (&data.ts[skip..n], &data.values[skip..n]);
    let flag = |m: &[bool], i: usize| m.get(skip + i).copied().unwrap_or(false);
    let excluded: Vec<bool> = (0..values.len()).map(|i| flag(data.exclude, i)).collect();
    let normal: Vec<bool> = (0..values.len()).map(|i| flag(data.normal, i) && !excluded[i]).collect();
    let kept: Vec<f64> = values.iter().zip(&excluded).filter(|(_, &x)| !x).map(|(v, _)| *v).collect();
    let kept_ts: Vec<Timestamp> = ts.iter().zip(&excluded).filter(|(_, &x)| !x).map(|(t, _)| *t).collect();
    if kept.len() < spec.min_samples() {
        return Err(TrainError::Invalid(format!(
            "{} samples{} are too few to train a {} (it needs {})",
            kept.len(),
            if kept.len() < values.len() { " outside confirmed anomalies" } else { "" },
            spec.kind(),
            spec.min_samples()
        )));
    }
    let log = match spec {
        Spec::Autoencoder { log: true, .. } | Spec::Forecaster { log: true, .. } => log_base(&kept),
        _ => None,
    };
    let tf = Transform(log);
    let modelled: Vec<f64> = kept.iter().map(|&v| tf.to_model(v)).collect();
    let (center, scale) = center_scale(&modelled);
    let norm: Vec<f32> = values.iter().map(|&v| ((tf.to_model(v) - center) / scale) as f32).collect();
    let dims = spec.dims();
    let mut meta = ModelMeta {
        key: cx.key.clone(),
        series: cx.series.clone(),
        version: cx.version,
        kind: spec.kind().to_owned(),
        fingerprint: cx.fingerprint.clone(),
        pipeline_version: cx.pipeline_version.clone(),
        data_from: ts[0],
        data_to: ts[ts.len() - 1],
        samples: values.len() as u64,
        loss: 0.0,
        val_loss: None,
        epochs: 0,
        train_ms: 0,
        created_at: crate::time::now_ms(),
        center,
        scale,
        dims: dims.clone(),
        horizon: 1,
        change: matches!(spec, Spec::Forecaster { change: true, .. }),
        summary: monitor::DataSummary::of(&kept_ts, &kept),
        feedback_excluded: excluded.iter().filter(|&&x| x).count() as u64,
        feedback_normal: normal.iter().filter(|&&x| x).count() as u64,
        regime_from: cx.regime_from,
        log_base: log,
        mask_newest: matches!(spec, Spec::Autoencoder { mask_newest: true, .. }),
    };
    // Rows of the neural models: a row touching a confirmed anomaly is left out; a row
    // ending in a window marked false positive counts FEEDBACK_WEIGHT times.
    let repeats = |start: usize, end: usize| -> usize {
        if excluded[start..end].iter().any(|&x| x) {
            0
        } else if normal[end - 1] {
            FEEDBACK_WEIGHT
        } else {
            1
        }
    };
    let warm = warm.and_then(|w| match &w.body {
        Body::Net { record, .. } if w.meta.dims == dims => Some(record),
        _ => None,
    });
    let body = match spec {
        Spec::Autoencoder { window, train, mask_newest, .. } => {
            let rows = norm.len() + 1 - window;
            let mut x = Vec::with_capacity(rows * window);
            for i in 0..rows {
                for _ in 0..repeats(i, i + window) {
                    x.extend_from_slice(&norm[i..i + window]);
                }
            }
            if x.len() < 2 * window {
                return Err(TrainError::Invalid("every window touches a confirmed anomaly: nothing normal to learn".into()));
            }
            let input = mask_newest.then(|| masked(&x, *window));
            let t = net::train(&dims, input.as_deref().unwrap_or(&x), &x, train, warm, cancel, progress)?;
            (meta.loss, meta.val_loss, meta.epochs) = (t.loss, t.val_loss, t.epochs_run);
            Body::Net { model: t.model, record: t.record }
        }
        Spec::Forecaster { lookback, horizon, train, change, .. } => {
            let rows = norm.len() + 1 - lookback - horizon;
            let mut x = Vec::with_capacity(rows * lookback);
            let mut y = Vec::with_capacity(rows * horizon);
            for i in 0..rows {
                // With `change`, everything relative to the newest value of the lookback.
                let base = if *change { norm[i + lookback - 1] } else { 0.0 };
                for _ in 0..repeats(i, i + lookback + horizon) {
                    x.extend(norm[i..i + lookback].iter().map(|v| v - base));
                    y.extend(norm[i + lookback..i + lookback + horizon].iter().map(|v| v - base));
                }
            }
            if x.len() < 2 * lookback {
                return Err(TrainError::Invalid("every window touches a confirmed anomaly: nothing normal to learn".into()));
            }
            let t = net::train(&dims, &x, &y, train, warm, cancel, progress)?;
            (meta.loss, meta.val_loss, meta.epochs, meta.horizon) = (t.loss, t.val_loss, t.epochs_run, *horizon);
            Body::Net { model: t.model, record: t.record }
        }
        Spec::Baseline { season_ms, bucket_ms } => {
            let mut p = Profile { season_ms: *season_ms, bucket_ms: *bucket_ms, buckets: Vec::new() };
            let slots = (season_ms / bucket_ms).max(1) as usize;
            let mut per: Vec<Vec<f64>> = vec![Vec::new(); slots];
            for (i, (&t, &v)) in ts.iter().zip(values).enumerate() {
                let times = if excluded[i] {
                    0
                } else if normal[i] {
                    FEEDBACK_WEIGHT
                } else {
                    1
                };
                for _ in 0..times {
                    per[p.bucket(t).min(slots - 1)].push(v);
                }
            }
            // A bucket's spread never falls below a tenth of the overall spread: a few
            // identical samples must not make the next slightly different one an anomaly.
            let floor = scale * 0.1;
            let mut sq = 0.0;
            p.buckets = per
                .into_iter()
                .map(|vals| match crate::stats::median_mad(&vals) {
                    Some((m, mad)) if vals.len() >= 3 => {
                        let s = (1.4826 * mad).max(floor);
                        sq += vals.iter().map(|v| ((v - m) / s).powi(2)).sum::<f64>();
                        Some((m, s))
                    }
                    _ => None,
                })
                .collect();
            meta.loss = sq / values.len() as f64;
            meta.epochs = 1;
            progress(1, 1, meta.loss);
            Body::Baseline(p)
        }
    };
    meta.train_ms = started.elapsed().as_millis() as u64;
    let mut f = Fitted { meta, body, calibration: Vec::new(), residuals: Vec::new() };
    {
        // The validation split: the newest tenth of the examples (as `net::train` holds
        // out), here the newest tenth of the positions a prediction exists for. (The
        // baseline, fitted in closed form by medians, holds nothing out: its newest tenth
        // is in sample, which a median and MAD per bucket barely notice.)
        let first = f.context();
        let rows = values.len().saturating_sub(first);
        let n_val = if rows >= 50 { rows / 10 } else { 0 };
        let positions: Vec<usize> = (values.len() - n_val..values.len()).filter(|&i| !excluded[i]).collect();
        let at: Vec<Timestamp> = positions.iter().map(|&i| ts[i]).collect();
        for (&i, p) in positions.iter().zip(f.predict(values, &positions, &at, 1)) {
            if let Some(p) = p.filter(|p| p.error.is_finite()) {
                f.calibration.push(p.error);
                f.residuals.push((values[i] - p.expected).abs());
            }
        }
    }
    Ok(f)
}

/// Rows of `width` values with each row's newest value replaced by the one before it.
fn masked(rows: &[f32], width: usize) -> Vec<f32> {
    let mut out = rows.to_vec();
    if width >= 2 {
        for row in out.chunks_exact_mut(width) {
            row[width - 1] = row[width - 2];
        }
    }
    out
}

impl Fitted {
    /// Values before a point this model needs.
    pub fn context(&self) -> usize {
        match &self.body {
            Body::Net { .. } if self.meta.kind == "autoencoder" => self.meta.dims[0] - 1,
            Body::Net { .. } => self.meta.dims[0] + self.meta.horizon - 1,
            Body::Baseline(_) => 0,
        }
    }

    /// Predicts the points at `positions` of `hist` (each with its timestamp in `ts`):
    /// the point's value is `hist[p]`, its context the values before it. `None` where the
    /// context is too short (or the baseline has no data for the bucket). `step` is the
    /// forecast distance for forecasters (1 = the next value), clamped to the horizon.
    pub fn predict(&self, hist: &[f64], positions: &[usize], ts: &[Timestamp], step: usize) -> Vec<Option<Prediction>> {
        let (c, s) = (self.meta.center, self.meta.scale);
        match &self.body {
            Body::Baseline(p) => positions
                .iter()
                .zip(ts)
                .map(|(&i, &t)| {
                    let (m, spread) = (*p.buckets.get(p.bucket(t))?)?;
                    Some(Prediction { expected: m, error: (hist[i] - m).abs() / spread })
                })
                .collect(),
            Body::Net { model, .. } => {
                let ae = self.meta.kind == "autoencoder";
                let width = self.meta.dims[0];
                let step = step.clamp(1, self.meta.horizon.max(1));
                let need = if ae { width - 1 } else { width + step - 1 };
                let ok: Vec<usize> = positions.iter().copied().filter(|&p| p >= need && p < hist.len()).collect();
                let mut x = Vec::with_capacity(ok.len() * width);
                let tf = Transform(self.meta.log_base);
                let modelled: Vec<f64>;
                let hist: &[f64] = if tf.0.is_some() {
                    modelled = hist.iter().map(|&v| tf.to_model(v)).collect();
                    &modelled
                } else {
                    hist
                };
                // A change forecaster sees values relative to the newest one it is given.
                let base = |p: usize| if self.meta.change && !ae { Some(hist[p - step]) } else { None };
                for &p in &ok {
                    let start = if ae { p + 1 - width } else { p + 1 - step - width };
                    let b = base(p);
                    x.extend(hist[start..start + width].iter().map(|v| (b.map_or((v - c) / s, |b| (v - b) / s)) as f32));
                }
                let input = if ae && self.meta.mask_newest { masked(&x, width) } else { x.clone() };
                let y = net::infer(model, input, ok.len());
                let n_out = self.meta.dims[self.meta.dims.len() - 1];
                let mut out: std::collections::HashMap<usize, Prediction> = std::collections::HashMap::with_capacity(ok.len());
                for (r, &p) in ok.iter().enumerate() {
                    let Some(row) = y.get(r * n_out..(r + 1) * n_out) else { continue };
                    let pred = if ae {
                        let input = &x[r * width..(r + 1) * width];
                        let mse = row.iter().zip(input).map(|(a, b)| f64::from(a - b).powi(2)).sum::<f64>() / width as f64;
                        Prediction { expected: tf.to_series(f64::from(row[width - 1]) * s + c), error: mse.sqrt() }
                    } else {
                        let expected = f64::from(row[step - 1]) * s + base(p).unwrap_or(c);
                        Prediction { expected: tf.to_series(expected), error: (hist[p] - expected).abs() / s }
                    };
                    out.insert(p, pred);
                }
                positions.iter().map(|p| out.get(p).copied()).collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> FitContext {
        FitContext {
            key: "p.m".into(),
            series: "x".into(),
            version: 1,
            fingerprint: "f".into(),
            pipeline_version: "v".into(),
            regime_from: None,
        }
    }

    #[test]
    fn baseline_learns_the_daily_profile() {
        let ts: Vec<i64> = (0..2016).map(|i| i * 300_000).collect();
        let values: Vec<f64> = ts.iter().map(|t| if (t / 3_600_000) % 24 < 12 { 10.0 } else { 100.0 } + (t / 300_000 % 3) as f64).collect();
        let spec = Spec::Baseline { season_ms: 86_400_000, bucket_ms: 3_600_000 };
        let f = fit(
            &spec,
            &cx(),
            Examples { ts: &ts, values: &values, exclude: &[], normal: &[] },
            None,
            &AtomicBool::new(false),
            &mut |_, _, _| {},
        )
        .unwrap();
        let hist = [11.0, 101.0, 11.0];
        let p = f.predict(&hist, &[0, 1, 2], &[0, 0, 13 * 3_600_000], 1);
        assert!((p[0].unwrap().expected - 11.0).abs() < 1.1);
        assert!(p[1].unwrap().error > 10.0, "a night value at noon is far off");
        assert!(p[2].unwrap().error > 10.0, "a noon value at night is far off");
    }

    #[test]
    fn forecaster_follows_a_sine_and_flags_a_jump() {
        let ts: Vec<i64> = (0..1200).map(|i| i * 60_000).collect();
        let values: Vec<f64> = (0..1200).map(|i| 50.0 + 10.0 * (i as f64 * 0.2).sin()).collect();
        let spec = Spec::Forecaster {
            lookback: 16,
            horizon: 1,
            hidden: vec![16],
            train: TrainParams { epochs: 30, learning_rate: 0.01, batch_size: 64, seed: 1, huber: 1.0 },
            change: false,
            log: false,
        };
        let f = fit(
            &spec,
            &cx(),
            Examples { ts: &ts, values: &values, exclude: &[], normal: &[] },
            None,
            &AtomicBool::new(false),
            &mut |_, _, _| {},
        )
        .unwrap();
        let mut hist = values[1000..1017].to_vec();
        let normal = f.predict(&hist, &[16], &[0], 1)[0].unwrap();
        hist[16] += 30.0;
        let jump = f.predict(&hist, &[16], &[0], 1)[0].unwrap();
        assert!(normal.error < 0.5, "{normal:?}");
        assert!(jump.error > 3.0 * normal.error.max(0.1), "{jump:?}");
        assert!(f.predict(&hist, &[3], &[0], 1)[0].is_none(), "too little context");
    }

    #[test]
    fn a_change_forecaster_follows_a_level_it_never_saw() {
        // A saw tooth at level 0, then at level 20; asked at level 300.
        let saw = |i: usize| 3.0 * ((i % 10) as f64 / 10.0);
        let wave = |i: usize| saw(i) + if i >= 300 { 20.0 } else { 0.0 };
        let ts: Vec<i64> = (0..600).collect();
        let values: Vec<f64> = (0..600).map(wave).collect();
        let fit_with = |change: bool| {
            let spec = Spec::Forecaster {
                lookback: 12,
                horizon: 1,
                hidden: vec![16],
                train: TrainParams { epochs: 60, learning_rate: 0.01, batch_size: 32, seed: 1, huber: 1.0 },
                change,
                log: false,
            };
            let data = Examples { ts: &ts, values: &values, exclude: &[], normal: &[] };
            fit(&spec, &cx(), data, None, &AtomicBool::new(false), &mut |_, _, _| {}).unwrap()
        };
        let (change, level) = (fit_with(true), fit_with(false));
        assert!(change.meta.change && !level.meta.change);
        let far: Vec<f64> = (0..13).map(|i| saw(i) + 300.0).collect();
        let pc = change.predict(&far, &[12], &[0], 1)[0].unwrap();
        let pl = level.predict(&far, &[12], &[0], 1)[0].unwrap();
        assert!((pc.expected - far[12]).abs() < 1.0, "change: {pc:?}, actual {}", far[12]);
        assert!((pl.expected - far[12]).abs() > 5.0, "level: {pl:?}, actual {}", far[12]);
        // On the levels it trained on, the change forecaster is as good as it was there.
        let near = &values[500..513];
        assert!(change.predict(near, &[12], &[0], 1)[0].unwrap().error < 1.0);
    }

    fn fit_spec(spec: &Spec, values: &[f64]) -> Fitted {
        let ts: Vec<i64> = (0..values.len() as i64).map(|i| i * 300_000).collect();
        let data = Examples { ts: &ts, values, exclude: &[], normal: &[] };
        fit(spec, &cx(), data, None, &AtomicBool::new(false), &mut |_, _, _| {}).unwrap()
    }

    #[test]
    fn the_log_base_is_the_median_and_needs_non_negative_values() {
        assert_eq!(log_base(&[1.0, 2.0, 3.0, 40.0, 50.0]), Some(3.0));
        assert_eq!(log_base(&[0.0, 0.0, 0.0, 1000.0]), Some(1.0), "a mostly-zero series: a thousandth of the maximum");
        assert_eq!(log_base(&[1.0, -2.0, 3.0]), None, "a negative value: no transform");
        assert_eq!(log_base(&[]), None);
    }

    #[test]
    fn a_log_forecaster_forecasts_in_the_series_units() {
        // A wave between 20 and 2 000, whose ups and downs are alike on a log scale.
        let values: Vec<f64> = (0..1200).map(|i| 200.0 * 10f64.powf((i as f64 * 0.2).sin())).collect();
        let spec = |log| Spec::Forecaster {
            lookback: 16,
            horizon: 1,
            hidden: vec![16],
            train: TrainParams { epochs: 40, learning_rate: 0.01, batch_size: 64, seed: 1, huber: 0.0 },
            change: false,
            log,
        };
        let logged = fit_spec(&spec(true), &values[..1000]);
        let base = logged.meta.log_base.expect("non-negative data are modelled on a log scale");
        assert!((base - 200.0).abs() < 20.0, "the base is the median: {base}");
        let positions: Vec<usize> = (1000..1200).collect();
        for (&i, p) in positions.iter().zip(logged.predict(&values, &positions, &[0; 200], 1)) {
            let p = p.unwrap();
            assert!((p.expected - values[i]).abs() < 0.1 * values[i], "forecast {} for {} at {i}", p.expected, values[i]);
        }
        // A negative value in the training data: the version models the values themselves.
        let shifted: Vec<f64> = values.iter().map(|v| v - 100.0).collect();
        assert_eq!(fit_spec(&spec(true), &shifted[..1000]).meta.log_base, None);
    }

    #[test]
    fn a_masked_autoencoder_forecasts_the_newest_value_instead_of_copying_it() {
        let values: Vec<f64> = (0..1200).map(|i| 50.0 + 10.0 * (i as f64 * 0.2).sin()).collect();
        let spec = Spec::Autoencoder {
            window: 16,
            hidden: vec![16, 8],
            train: TrainParams { epochs: 40, learning_rate: 0.01, batch_size: 64, seed: 1, huber: 1.0 },
            log: false,
            mask_newest: true,
        };
        let f = fit_spec(&spec, &values[..1000]);
        assert!(f.meta.mask_newest);
        let mut hist = values[1000..1016].to_vec();
        let normal = f.predict(&hist, &[15], &[0], 1)[0].unwrap();
        assert!((normal.expected - hist[15]).abs() < 2.0, "{normal:?} for {}", hist[15]);
        hist[15] += 15.0;
        let jumped = f.predict(&hist, &[15], &[0], 1)[0].unwrap();
        assert!((jumped.expected - normal.expected).abs() < 1.0, "the hidden value does not move its forecast: {jumped:?} vs {normal:?}");
        assert!(hist[15] - jumped.expected > 13.0, "{jumped:?}");
    }

    #[test]
    fn too_short_and_constant_series() {
        let spec = Spec::Autoencoder {
            window: 8,
            hidden: vec![4],
            train: TrainParams { epochs: 5, learning_rate: 0.01, batch_size: 16, seed: 1, huber: 1.0 },
            log: false,
            mask_newest: false,
        };
        let short = fit(
            &spec,
            &cx(),
            Examples { ts: &[1, 2, 3], values: &[1.0, 2.0, 3.0], exclude: &[], normal: &[] },
            None,
            &AtomicBool::new(false),
            &mut |_, _, _| {},
        );
        assert!(matches!(short, Err(TrainError::Invalid(m)) if m.contains("too few")));
        let ts: Vec<i64> = (0..200).collect();
        let flat = vec![5.0; 200];
        let f = fit(
            &spec,
            &cx(),
            Examples { ts: &ts, values: &flat, exclude: &[], normal: &[] },
            None,
            &AtomicBool::new(false),
            &mut |_, _, _| {},
        )
        .unwrap();
        assert!(f.meta.scale > 0.0 && f.meta.loss.is_finite());
        let p = f.predict(&flat[..8], &[7], &[7], 1)[0].unwrap();
        assert!(p.error.is_finite());
    }
}
