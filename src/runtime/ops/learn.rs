//! The learning operators: train stages (`autoencoder`, `forecaster`, `baseline`) and the
//! predict stages that use their models (`score`, `forecast`), plus `ensemble`.
//!
//! A train stage keeps each series' recent history and trains a new version when its
//! policy says so: once `min_samples` samples are in, then every `retrain every` duration
//! or number of samples, warm started from the previous version when `warm_start true`.
//! Its output, every tick, is a [`ModelSet`]: for each series, the versions a point of the
//! tick may use. A version records the timestamp of the last sample it was trained on, and
//! a predict stage scores each point with the newest version trained on data strictly
//! before it — so scoring stays causal even when a replay feeds thousands of points per
//! tick and a version is trained in the middle of them.
//!
//! Under `vigil replay` and `vigil eval` training runs inline, at the exact sample the
//! policy names, so results are reproducible. Under `vigil run` it runs on its own thread
//! (cancelled between epochs when the stage is dropped), each version is saved to the
//! registry, and the active versions are loaded at start, so a restart does not retrain.
//! Until a series has a model, predict uses the stage's `fallback` (when declared) or
//! scores 0.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use crate::check::StageOpt;
use crate::data::{Data, ScoreColumn, ScoresData, SeriesId, Timestamp};
use crate::learn::calibrate::{Suppressor, TailCalibrator};
use crate::learn::registry::Registry;
use crate::learn::{self, Examples, FitContext, Fitted, Spec};
use crate::runtime::{OpCtx, OpError, Operator};

/// A fallback detector's point: score, value, expected, spread, anomalous.
type FallbackPoint = (f64, f64, f64, f64, bool);

/// The models a train stage offers for one tick: per series (by its Prometheus notation),
/// versions ordered by the last timestamp they were trained on.
#[derive(Default)]
pub struct ModelSet {
    pub key: String,
    pub series: HashMap<String, Vec<Arc<Fitted>>>,
}

impl fmt::Debug for ModelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelSet").field("key", &self.key).field("series", &self.series.len()).finish()
    }
}

impl ModelSet {
    /// The newest version trained only on data before `ts`.
    pub fn version_for(versions: &[Arc<Fitted>], ts: Timestamp) -> Option<usize> {
        versions.iter().rposition(|v| v.meta.data_to < ts)
    }
}

/// When to train.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub min_samples: usize,
    pub retrain_every_ms: Option<i64>,
    pub retrain_samples: Option<u64>,
    pub warm_start: bool,
}

impl Policy {
    /// The policy from a stage's options; `min_samples` defaults to 500 (and never below
    /// what the model needs).
    pub fn from_options(options: &[StageOpt], spec: &Spec) -> Policy {
        let mut p = Policy { min_samples: 500, retrain_every_ms: None, retrain_samples: None, warm_start: false };
        for o in options {
            match o {
                StageOpt::MinSamples { samples } => p.min_samples = usize::try_from(*samples).unwrap_or(usize::MAX),
                StageOpt::RetrainEvery { ms } => p.retrain_every_ms = Some(i64::try_from(*ms).unwrap_or(i64::MAX)),
                StageOpt::RetrainSamples { samples } => p.retrain_samples = Some(*samples),
                StageOpt::WarmStart { enabled } => p.warm_start = *enabled,
                _ => {}
            }
        }
        p.min_samples = p.min_samples.max(spec.min_samples());
        p
    }
}

/// What the engine gives stages for training in the background.
#[derive(Clone)]
pub struct BackgroundEnv {
    pub registry: Registry,
    pub handle: tokio::runtime::Handle,
}

/// Where trained versions go under `vigil run`.
pub struct Background {
    pub registry: Registry,
    pub handle: tokio::runtime::Handle,
}

enum Update {
    /// The registry's active versions at start (or after a promotion).
    Loaded(Vec<Arc<Fitted>>, HashMap<String, u32>),
    /// A training finished (or failed, with the reason).
    Trained(String, Result<Arc<Fitted>, String>),
}

#[derive(Default)]
struct SeriesTrain {
    ts: VecDeque<Timestamp>,
    values: VecDeque<f64>,
    since_train: u64,
    last_trained_ts: Option<Timestamp>,
    versions: Vec<Arc<Fitted>>,
    next_version: u32,
    busy: bool,
    /// After a failed training, wait for this many more samples before trying again.
    backoff_until: u64,
}

/// A train stage.
pub struct Train {
    spec: Spec,
    policy: Policy,
    key: String,
    fingerprint: String,
    pipeline_version: String,
    series: HashMap<String, SeriesTrain>,
    background: Option<Background>,
    updates: (mpsc::Sender<Update>, mpsc::Receiver<Update>),
    /// Whether the registry's versions have been loaded (training waits for them).
    loaded: bool,
    cancel: Arc<AtomicBool>,
    /// Samples seen, for the backoff after failures.
    seen: u64,
    last_poll: Option<std::time::Instant>,
}

impl Drop for Train {
    fn drop(&mut self) {
        // A stage removed or rebuilt by a reload stops its trainings between epochs.
        self.cancel.store(true, Ordering::Relaxed);
    }
}

impl Train {
    pub fn new(
        spec: Spec,
        policy: Policy,
        key: String,
        fingerprint: String,
        pipeline_version: String,
        background: Option<Background>,
    ) -> Train {
        let updates = mpsc::channel();
        let loaded = background.is_none();
        let train = Train {
            spec,
            policy,
            key,
            fingerprint,
            pipeline_version,
            series: HashMap::new(),
            background,
            updates,
            loaded,
            cancel: Arc::new(AtomicBool::new(false)),
            seen: 0,
            last_poll: Some(std::time::Instant::now()),
        };
        train.load_registry();
        train
    }

    /// Loads the active versions from the registry in the background. Versions of another
    /// configuration of the stage (another fingerprint), and artifacts that are missing or
    /// corrupt, are logged and skipped: that series trains anew.
    fn load_registry(&self) {
        let Some(bg) = &self.background else { return };
        let (registry, key, fingerprint, tx) = (bg.registry.clone(), self.key.clone(), self.fingerprint.clone(), self.updates.0.clone());
        // What is in use: only versions that differ are loaded.
        let current: HashMap<String, u32> =
            self.series.iter().filter_map(|(k, s)| s.versions.last().map(|f| (k.clone(), f.meta.version))).collect();
        bg.handle.spawn(async move {
            let mut next: HashMap<String, u32> = HashMap::new();
            let mut active = Vec::new();
            match registry.store.models(Some(&key)).await {
                Ok(rows) => {
                    for r in &rows {
                        let n = next.entry(r.meta.series.clone()).or_insert(1);
                        *n = (*n).max(r.meta.version + 1);
                    }
                }
                Err(e) => tracing::warn!(stage = %key, "cannot read the model registry: {e}"),
            }
            match registry.load_active(&key, &current).await {
                Ok(rows) => {
                    for (row, loaded) in rows {
                        match loaded {
                            Ok(_) if row.meta.fingerprint != fingerprint => tracing::warn!(
                                stage = %key, series = %row.meta.series, version = row.meta.version,
                                "the active model was trained by another configuration of this stage; training a new one"
                            ),
                            Ok(f) => {
                                tracing::info!(stage = %key, series = %row.meta.series, version = row.meta.version, "loaded model");
                                active.push(Arc::new(f));
                            }
                            Err(e) => tracing::warn!(stage = %key, series = %row.meta.series, "{e}; training a new model"),
                        }
                    }
                }
                Err(e) => tracing::warn!(stage = %key, "cannot read the model registry: {e}"),
            }
            let _ = tx.send(Update::Loaded(active, next));
        });
    }

    /// Under `vigil run`, looks for promotions and rollbacks (`vigil models`) every 10 s.
    fn poll_registry(&mut self) {
        if self.background.is_none() || !self.loaded {
            return;
        }
        let now = std::time::Instant::now();
        if self.last_poll.is_some_and(|t| now.duration_since(t) < std::time::Duration::from_secs(10)) {
            return;
        }
        self.last_poll = Some(now);
        self.load_registry();
    }

    fn apply_updates(&mut self) {
        while let Ok(u) = self.updates.1.try_recv() {
            match u {
                Update::Loaded(active, next) => {
                    for f in active {
                        let s = self.series.entry(f.meta.series.clone()).or_default();
                        if s.versions.last().is_some_and(|v| v.meta.version == f.meta.version) {
                            continue;
                        }
                        // A promoted older version is used from the next point on.
                        let mut f = f;
                        if let Some(newest) = s.ts.back() {
                            if let Some(m) = Arc::get_mut(&mut f) {
                                m.meta.data_to = m.meta.data_to.min(*newest);
                            }
                        }
                        s.last_trained_ts = Some(s.last_trained_ts.map_or(f.meta.data_to, |t| t.max(f.meta.data_to)));
                        s.versions = vec![f];
                    }
                    for (series, n) in next {
                        let s = self.series.entry(series).or_default();
                        s.next_version = s.next_version.max(n);
                    }
                    self.loaded = true;
                }
                Update::Trained(series, result) => {
                    let s = self.series.entry(series.clone()).or_default();
                    s.busy = false;
                    match result {
                        Ok(f) => {
                            s.last_trained_ts = Some(f.meta.data_to);
                            s.versions.push(f);
                        }
                        Err(e) => {
                            tracing::warn!(stage = %self.key, series = %series, "training failed: {e}");
                            s.backoff_until = self.seen + self.policy.min_samples as u64;
                        }
                    }
                }
            }
        }
    }

    fn due(&self, s: &SeriesTrain, ts: Timestamp) -> bool {
        if s.busy || s.values.len() < self.policy.min_samples || self.seen < s.backoff_until {
            return false;
        }
        match s.last_trained_ts {
            None => true,
            Some(last) => {
                self.policy.retrain_every_ms.is_some_and(|every| ts - last >= every)
                    || self.policy.retrain_samples.is_some_and(|n| s.since_train >= n)
            }
        }
    }

    fn start_training(&mut self, series: &str) {
        let name = series.to_owned();
        let s = self.series.get_mut(series).expect("series state exists");
        s.busy = true;
        s.since_train = 0;
        s.next_version = s.next_version.max(1);
        let version = s.next_version;
        s.next_version += 1;
        let cx = FitContext {
            key: self.key.clone(),
            series: series.to_owned(),
            version,
            fingerprint: self.fingerprint.clone(),
            pipeline_version: self.pipeline_version.clone(),
        };
        let ts: Vec<Timestamp> = s.ts.iter().copied().collect();
        let values: Vec<f64> = s.values.iter().copied().collect();
        let warm = if self.policy.warm_start { s.versions.last().cloned() } else { None };
        let spec = self.spec.clone();
        match &self.background {
            None => {
                // Inline (replay, eval): exactly at this sample, reproducibly.
                let r = learn::fit(&spec, &cx, Examples { ts: &ts, values: &values }, warm.as_deref(), &self.cancel, &mut |_, _, _| {});
                let _ = self.updates.0.send(Update::Trained(series.to_owned(), r.map(Arc::new).map_err(|e| e.to_string())));
            }
            Some(bg) => {
                let (tx, cancel, registry, handle) = (self.updates.0.clone(), self.cancel.clone(), bg.registry.clone(), bg.handle.clone());
                let series = series.to_owned();
                let spawned = std::thread::Builder::new().name("vigil-train".into()).spawn(move || {
                    let result = train_with_progress(&spec, &cx, &ts, &values, warm.as_deref(), &cancel).and_then(|f| {
                        let id = handle.block_on(registry.register(&f))?;
                        tracing::info!(
                            stage = %cx.key, series = %cx.series, version = f.meta.version, id, loss = f.meta.loss,
                            val_loss = f.meta.val_loss.unwrap_or(f64::NAN), train_ms = f.meta.train_ms, "trained model"
                        );
                        Ok(Arc::new(f))
                    });
                    let _ = tx.send(Update::Trained(series, result));
                });
                if let Err(e) = spawned {
                    if let Some(s) = self.series.get_mut(&name) {
                        s.busy = false;
                    }
                    tracing::warn!(stage = %self.key, "cannot start a training thread: {e}");
                }
            }
        }
    }
}

/// Trains with progress: a bar on a terminal, tracing events otherwise.
fn train_with_progress(
    spec: &Spec,
    cx: &FitContext,
    ts: &[Timestamp],
    values: &[f64],
    warm: Option<&Fitted>,
    cancel: &AtomicBool,
) -> Result<Fitted, String> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] epoch {pos}/{len} {prefix}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(format!("training {} {} v{}", cx.key, cx.series, cx.version));
        bar
    });
    let mut progress = |epoch: usize, epochs: usize, loss: f64| match &bar {
        Some(b) => {
            b.set_length(epochs as u64);
            b.set_position(epoch as u64);
            b.set_prefix(format!("loss {loss:.4}"));
        }
        None => tracing::debug!(stage = %cx.key, series = %cx.series, epoch, epochs, loss, "training"),
    };
    let r = learn::fit(spec, cx, Examples { ts, values }, warm, cancel, &mut progress).map_err(|e| e.to_string());
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    r
}

impl Operator for Train {
    fn forget(&mut self, ids: &[SeriesId]) {
        for id in ids {
            self.series.remove(&id.to_string());
        }
    }

    fn process(&mut self, inputs: &[Data], ctx: &mut OpCtx) -> Result<Data, OpError> {
        self.apply_updates();
        self.poll_registry();
        // Versions offered this tick: the newest before the tick, plus those trained in it.
        for s in self.series.values_mut() {
            let keep = s.versions.len().saturating_sub(1);
            s.versions.drain(..keep);
        }
        let mut columns: Vec<(String, Vec<Timestamp>, Vec<f64>)> = Vec::new();
        match inputs.first() {
            Some(Data::Series(d)) => {
                for c in &d.series {
                    columns.push((c.id.to_string(), c.ts.clone(), c.values.clone()));
                }
            }
            Some(Data::Features(f)) => {
                // Windows: train on the newest value of each row (the rows overlap).
                for m in &f.matrices {
                    let last: Vec<f64> = (0..m.rows()).map(|r| f64::from(m.row(r)[m.width - 1])).collect();
                    columns.push((m.id.to_string(), m.ts.clone(), last));
                }
            }
            Some(other) => return Err(OpError::Invalid(format!("a train stage takes Series or Features, got {}", other.kind()))),
            None => return Err(OpError::Invalid("missing input".into())),
        }
        for (series, ts, values) in columns {
            for (t, v) in ts.into_iter().zip(values) {
                if !v.is_finite() {
                    ctx.skip("non-finite value");
                    continue;
                }
                let s = self.series.entry(series.clone()).or_default();
                if s.ts.back().is_some_and(|&last| t <= last) {
                    ctx.skip("out-of-order sample");
                    continue;
                }
                s.ts.push_back(t);
                s.values.push_back(v);
                if s.ts.len() > learn::MAX_TRAIN_SAMPLES {
                    s.ts.pop_front();
                    s.values.pop_front();
                }
                s.since_train += 1;
                self.seen += 1;
                if self.loaded && self.due(&self.series[&series], t) {
                    self.start_training(&series);
                    self.apply_updates();
                }
            }
        }
        // Series whose training could not start when their samples came (the registry was
        // still loading, or a training was running) start now.
        if self.loaded {
            let waiting: Vec<String> =
                self.series.iter().filter(|(_, s)| s.ts.back().is_some_and(|&t| self.due(s, t))).map(|(k, _)| k.clone()).collect();
            for series in waiting {
                self.start_training(&series);
            }
            self.apply_updates();
        }
        let set = ModelSet {
            key: self.key.clone(),
            series: self.series.iter().filter(|(_, s)| !s.versions.is_empty()).map(|(k, s)| (k.clone(), s.versions.clone())).collect(),
        };
        Ok(Data::Model(Arc::new(set)))
    }
}

/// What a predict stage over a model reports.
#[derive(Clone, Debug)]
pub enum Mode {
    /// A calibrated anomaly score; anomalous at or above `threshold`.
    Score { threshold: f64, suppress_ms: i64 },
    /// The forecast `step` values ahead, with bounds covering `interval` of past residuals.
    Forecast { step: usize, interval: f64 },
}

struct ScoreState {
    recent: VecDeque<f64>,
    errors: TailCalibrator,
    residuals: TailCalibrator,
    suppress: Suppressor,
}

/// `score` and `forecast`: a model's predictions, calibrated.
pub struct ModelScore {
    mode: Mode,
    history: usize,
    state: HashMap<SeriesId, ScoreState>,
}

/// Values kept per series for the models' context.
const MAX_CONTEXT: usize = 4096;

impl ModelScore {
    pub fn new(mode: Mode, history: usize) -> ModelScore {
        ModelScore { mode, history: history.max(10), state: HashMap::new() }
    }

    fn fallback_index(fallback: Option<&Data>) -> HashMap<(SeriesId, Timestamp), FallbackPoint> {
        let mut idx = HashMap::new();
        if let Some(Data::Scores(s)) = fallback {
            for c in &s.series {
                for i in 0..c.len() {
                    idx.insert((c.id.clone(), c.ts[i]), (c.score[i], c.expected[i], c.lower[i], c.upper[i], c.anomalous[i]));
                }
            }
        }
        idx
    }
}

impl Operator for ModelScore {
    fn forget(&mut self, ids: &[SeriesId]) {
        for id in ids {
            self.state.remove(id);
        }
    }

    fn process(&mut self, inputs: &[Data], _ctx: &mut OpCtx) -> Result<Data, OpError> {
        let models = match inputs.first() {
            Some(Data::Model(m)) => m.clone(),
            Some(other) => return Err(OpError::Invalid(format!("the first input must be a Model, got {}", other.kind()))),
            None => return Err(OpError::Invalid("missing model".into())),
        };
        let fallback = Self::fallback_index(inputs.get(2));
        let series: Vec<(SeriesId, Vec<Timestamp>, Vec<f64>)> = match inputs.get(1) {
            Some(Data::Series(d)) => d.series.iter().map(|c| (c.id.clone(), c.ts.clone(), c.values.clone())).collect(),
            Some(Data::Features(f)) => f
                .matrices
                .iter()
                .map(|m| (m.id.clone(), m.ts.clone(), (0..m.rows()).map(|r| f64::from(m.row(r)[m.width - 1])).collect()))
                .collect(),
            Some(other) => return Err(OpError::Invalid(format!("cannot score {}", other.kind()))),
            None => return Err(OpError::Invalid("missing input".into())),
        };
        let mut out = Vec::with_capacity(series.len());
        for (id, ts, values) in series {
            let history = self.history;
            let st = self.state.entry(id.clone()).or_insert_with(|| ScoreState {
                recent: VecDeque::new(),
                errors: TailCalibrator::new(history),
                residuals: TailCalibrator::new(history),
                suppress: Suppressor::new(0),
            });
            if let Mode::Score { suppress_ms, .. } = self.mode {
                if st.suppress.period() != suppress_ms {
                    st.suppress = Suppressor::new(suppress_ms);
                }
            }
            let versions = models.series.get(&id.to_string()).map(Vec::as_slice).unwrap_or(&[]);
            let base = st.recent.len();
            let mut hist: Vec<f64> = st.recent.iter().copied().collect();
            hist.extend_from_slice(&values);
            // Group the points by the version that may score them, and predict per group.
            let mut preds = vec![None; values.len()];
            let step = match self.mode {
                Mode::Forecast { step, .. } => step,
                Mode::Score { .. } => 1,
            };
            let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
            for (j, &t) in ts.iter().enumerate() {
                if let Some(v) = ModelSet::version_for(versions, t) {
                    groups.entry(v).or_default().push(j);
                }
            }
            for (v, js) in groups {
                let positions: Vec<usize> = js.iter().map(|j| base + j).collect();
                let tss: Vec<Timestamp> = js.iter().map(|&j| ts[j]).collect();
                for (j, p) in js.iter().zip(versions[v].predict(&hist, &positions, &tss, step)) {
                    preds[*j] = p;
                }
            }
            let mut o = ScoreColumn::new(id.clone());
            for (j, (&t, &v)) in ts.iter().zip(&values).enumerate() {
                match (preds[j], &self.mode) {
                    (Some(p), Mode::Score { threshold, .. }) => {
                        let raw = st.errors.score(p.error);
                        st.errors.push(p.error);
                        let s = st.suppress.apply(t, raw);
                        let spread = st.residuals.quantile(0.99).unwrap_or(f64::NAN);
                        st.residuals.push((v - p.expected).abs());
                        o.push(t, v, s, p.expected, p.expected - spread, p.expected + spread, s >= *threshold);
                    }
                    (Some(p), Mode::Forecast { interval, .. }) => {
                        let raw = st.errors.score(p.error);
                        st.errors.push(p.error);
                        let residual = (v - p.expected).abs();
                        let spread = if st.residuals.len() >= st.residuals.min_history { st.residuals.quantile(*interval) } else { None };
                        st.residuals.push(residual);
                        match spread {
                            Some(w) => o.push(t, v, raw, p.expected, p.expected - w, p.expected + w, residual > w && raw >= *interval),
                            None => o.push(t, v, 0.0, p.expected, f64::NAN, f64::NAN, false),
                        }
                    }
                    (None, _) => match fallback.get(&(id.clone(), t)) {
                        Some(&(s, e, lo, hi, a)) => o.push(t, v, s, e, lo, hi, a),
                        None => o.push_unscored(t, v),
                    },
                }
            }
            // Keep the context the newest version needs.
            let need = versions.last().map_or(0, |f| f.context()).min(MAX_CONTEXT);
            st.recent.extend(values.iter().copied());
            while st.recent.len() > need {
                st.recent.pop_front();
            }
            out.push(o);
        }
        Ok(Data::Scores(Arc::new(ScoresData { series: out })))
    }
}

/// `ensemble(a, b, op, threshold)`: two detectors' scores of the same series combined per
/// timestamp — their maximum (either detector can raise an alarm) or their mean (both
/// must agree). Points only one side scored pass through with that side's score.
pub struct Ensemble {
    pub mean: bool,
    pub threshold: f64,
}

impl Operator for Ensemble {
    fn process(&mut self, inputs: &[Data], _ctx: &mut OpCtx) -> Result<Data, OpError> {
        let (Some(Data::Scores(a)), Some(Data::Scores(b))) = (inputs.first(), inputs.get(1)) else {
            return Err(OpError::Invalid("ensemble takes two Scores inputs".into()));
        };
        let mut out = Vec::new();
        let mut b_by_id: HashMap<&SeriesId, &ScoreColumn> = b.series.iter().map(|c| (&c.id, c)).collect();
        for ca in &a.series {
            let cb = b_by_id.remove(&ca.id);
            let at: HashMap<Timestamp, usize> = cb.map(|c| c.ts.iter().enumerate().map(|(i, &t)| (t, i)).collect()).unwrap_or_default();
            let mut o = ScoreColumn::new(ca.id.clone());
            for i in 0..ca.len() {
                let other = cb.and_then(|c| at.get(&ca.ts[i]).map(|&j| c.score[j]));
                let s = match other {
                    Some(sb) if self.mean => (ca.score[i] + sb) / 2.0,
                    Some(sb) => ca.score[i].max(sb),
                    None => ca.score[i],
                };
                o.push(ca.ts[i], ca.value[i], s, ca.expected[i], ca.lower[i], ca.upper[i], s >= self.threshold);
            }
            out.push(o);
        }
        for cb in b_by_id.into_values() {
            let mut o = cb.clone();
            o.anomalous = o.score.iter().map(|&s| s >= self.threshold).collect();
            out.push(o);
        }
        Ok(Data::Scores(Arc::new(ScoresData { series: out })))
    }
}
