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
//! Under `vigil run --cluster` a training is a job of the cluster's work queue
//! ([`crate::learn::jobs`], `src/cluster/train.rs`): any node with a free slot trains it
//! and registers the version, which this stage then loads from the shared artifact store.
//! Until a series has a model, predict uses the stage's `fallback` (when declared) or
//! scores 0.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::dag::StageOpt;
use crate::data::{Data, ScoreColumn, ScoresData, SeriesId, Timestamp};
use crate::feedback::{self, FeedbackBook, Verdict};
use crate::learn::calibrate::{Calibration, RecentLevel, SlidingRange, Suppressor, TailCalibrator, RANGE_POINTS};
use crate::learn::jobs::{Samples, TrainJob, Trainer, WarmStart};
use crate::learn::monitor::{Monitor, DRIFT_WINDOW};
use crate::learn::novelty::NoveltyState;
use crate::learn::registry::Registry;
use crate::learn::shadow::{self, Record};
use crate::learn::{self, Examples, FitContext, Fitted, Spec};
use crate::runtime::{OpCtx, OpError, Operator};

/// A fallback detector's point: score, value, expected, spread, anomalous.
type FallbackPoint = (f64, f64, f64, f64, bool);

pub use crate::data::ModelSet;
pub use crate::learn::shadow::Run as ShadowRun;

/// When to train, from what, and how a new version takes over.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub min_samples: usize,
    pub retrain_every_ms: Option<i64>,
    pub retrain_samples: Option<u64>,
    pub warm_start: bool,
    /// Retrain when the input's drift exceeds this.
    pub drift_above: Option<f64>,
    /// Learn from on-call's verdicts (`learn_from feedback`, the default).
    pub learn_from_feedback: bool,
    /// Run a retrained version in shadow for this long before it may take over.
    pub shadow_ms: Option<i64>,
    /// After the shadow period: promote when better (else wait for a person).
    pub promote_when_better: bool,
}

impl Default for Policy {
    /// 500 samples before the first version, no retraining, learning from verdicts, no
    /// shadow period.
    fn default() -> Policy {
        Policy {
            min_samples: 500,
            retrain_every_ms: None,
            retrain_samples: None,
            warm_start: false,
            drift_above: None,
            learn_from_feedback: true,
            shadow_ms: None,
            promote_when_better: true,
        }
    }
}

impl Policy {
    /// The policy from a stage's options; `min_samples` defaults to 500 (and never below
    /// what the model needs).
    pub fn from_options(options: &[StageOpt], spec: &Spec) -> Policy {
        let mut p = Policy::default();
        for o in options {
            match o {
                StageOpt::MinSamples { samples } => p.min_samples = usize::try_from(*samples).unwrap_or(usize::MAX),
                StageOpt::RetrainEvery { ms } => p.retrain_every_ms = Some(i64::try_from(*ms).unwrap_or(i64::MAX)),
                StageOpt::RetrainSamples { samples } => p.retrain_samples = Some(*samples),
                StageOpt::WarmStart { enabled } => p.warm_start = *enabled,
                StageOpt::RetrainOnDrift { above } => p.drift_above = Some(*above),
                StageOpt::LearnFrom { feedback } => p.learn_from_feedback = *feedback,
                StageOpt::Shadow { ms } => p.shadow_ms = Some(i64::try_from(*ms).unwrap_or(i64::MAX)),
                StageOpt::Promote { when_better } => p.promote_when_better = *when_better,
                _ => {}
            }
        }
        p.min_samples = p.min_samples.max(spec.min_samples());
        p
    }
}

/// The step of a train stage (`autoencoder`, `forecaster`, `baseline`) training `spec`:
/// in the background under `vigil run`, inline otherwise.
pub fn train_step(spec: Spec, node: &crate::dag::StageNode, env: &super::BuildEnv) -> crate::runtime::Step {
    let policy = Policy::from_options(&node.options, &spec);
    let background = env.models.as_ref().map(|m| Background { registry: m.registry.clone(), handle: m.handle.clone() });
    let cx = Context {
        pipeline: env.pipeline.clone(),
        feedback: policy.learn_from_feedback.then(|| env.responder.feedback.clone()),
        monitor: env.models.as_ref().map(|m| m.monitor.clone()),
    };
    crate::runtime::Step::Op(Box::new(
        Train::new(spec, policy, cx, node.key.0.clone(), node.fingerprint.0.clone(), env.pipeline_version.clone(), background)
            .with_trainer(env.models.as_ref().and_then(|m| m.trainer.clone())),
    ))
}

/// What the engine gives stages for training in the background.
#[derive(Clone)]
pub struct BackgroundEnv {
    pub registry: Registry,
    pub handle: tokio::runtime::Handle,
    /// Where models report their health (`/metrics`).
    pub monitor: Arc<Monitor>,
    /// Under `--cluster`: trainings go to the cluster's work queue instead of a thread
    /// of this node.
    pub trainer: Option<Arc<dyn Trainer>>,
}

/// Where trained versions go under `vigil run`.
pub struct Background {
    pub registry: Registry,
    pub handle: tokio::runtime::Handle,
}

/// A finished training: the version, its registry id, whether it went straight to active.
type TrainedVersion = (Arc<Fitted>, Option<i64>, bool);

enum Update {
    /// The registry's active versions at start (or after a promotion).
    Loaded(Vec<Arc<Fitted>>, HashMap<String, u32>),
    /// A training finished (or failed, with the reason).
    Trained(String, Result<TrainedVersion, String>),
}

/// What the verdicts and the engine give a train stage.
#[derive(Clone, Default)]
pub struct Context {
    /// The pipeline (verdicts are per pipeline and series).
    pub pipeline: String,
    /// On-call's verdicts (None: `learn_from nothing`).
    pub feedback: Option<Arc<FeedbackBook>>,
    pub monitor: Option<Arc<Monitor>>,
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
    /// Samples of this series so far.
    count: u64,
    /// The newest values, for the drift statistic.
    live: VecDeque<f64>,
    since_drift_check: usize,
    /// The sample count at which drift exceeded the policy's bound (a retrain is due once
    /// enough samples of the new regime are in).
    drift_from: Option<u64>,
    /// Whether the training running now was started by drift.
    drift_training: bool,
    /// A challenger in shadow and its registry id.
    candidate: Option<(Arc<Fitted>, Option<i64>)>,
    /// Where the current regime began (a drift retrain's first sample): later trainings
    /// learn from it on, not from the regime before the shift.
    regime_from: Option<Timestamp>,
}

/// Samples between two computations of the drift statistic.
const DRIFT_EVERY: usize = 32;

/// A train stage.
pub struct Train {
    spec: Spec,
    policy: Policy,
    cx: Context,
    /// The shadow periods running, shared with the predict stages through [`ModelSet`].
    shadow: Arc<Mutex<HashMap<String, ShadowRun>>>,
    /// Drift figures of this tick, per series.
    drift_now: HashMap<String, Vec<(Timestamp, f64)>>,
    /// When each shadow period was last written for `vigil models compare`.
    persisted: HashMap<String, std::time::Instant>,
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
    /// Under `--cluster`: who trains (any node, through the work queue).
    trainer: Option<Arc<dyn Trainer>>,
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
        cx: Context,
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
            cx,
            shadow: Arc::default(),
            drift_now: HashMap::new(),
            persisted: HashMap::new(),
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
            trainer: None,
        };
        train.load_registry();
        train
    }

    /// Has `trainer` train this stage's versions (under `vigil run --cluster`: a job on
    /// the cluster's work queue) instead of a thread of this process.
    pub fn with_trainer(mut self, trainer: Option<Arc<dyn Trainer>>) -> Train {
        self.trainer = trainer;
        self
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
                        if s.candidate.as_ref().is_some_and(|(c, _)| c.meta.version == f.meta.version) {
                            // Promoted by hand (`vigil models promote`): the shadow ends.
                            s.candidate = None;
                            self.shadow.lock().unwrap_or_else(|e| e.into_inner()).remove(&f.meta.series);
                        }
                        // A promoted older version is used from the next point on.
                        let mut f = f;
                        if let Some(newest) = s.ts.back() {
                            if let Some(m) = Arc::get_mut(&mut f) {
                                m.meta.data_to = m.meta.data_to.min(*newest);
                            }
                        }
                        s.last_trained_ts = Some(s.last_trained_ts.map_or(f.meta.data_to, |t| t.max(f.meta.data_to)));
                        if let Some(m) = &self.cx.monitor {
                            // `vigil_model_version`: a loaded version is the active one too.
                            m.update(&self.key, &f.meta.series, |h| h.version = f.meta.version);
                        }
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
                    if std::mem::take(&mut s.drift_training) {
                        s.drift_from = None;
                    }
                    match result {
                        Ok((f, _, _)) if !(f.meta.loss.is_finite() && f.meta.val_loss.is_none_or(f64::is_finite)) => {
                            tracing::warn!(
                                stage = %self.key, series = %series, version = f.meta.version,
                                "the new version's loss is not a number; it is never used"
                            );
                            s.backoff_until = self.seen + self.policy.min_samples as u64;
                        }
                        Ok((f, id, activated)) => {
                            s.last_trained_ts = Some(f.meta.data_to);
                            if let Some(m) = &self.cx.monitor {
                                m.update(&self.key, &series, |h| {
                                    if activated {
                                        h.version = f.meta.version;
                                    } else {
                                        h.candidate = Some(f.meta.version);
                                    }
                                });
                            }
                            if activated {
                                s.versions.push(f);
                            } else {
                                let active = s.versions.last().map_or(0, |v| v.meta.version);
                                tracing::info!(
                                    stage = %self.key, series = %series, version = f.meta.version, active,
                                    "a retrained version runs in shadow"
                                );
                                self.shadow.lock().unwrap_or_else(|e| e.into_inner()).insert(
                                    series.clone(),
                                    ShadowRun {
                                        from: f.meta.data_to,
                                        active: Record { version: active, ..Record::default() },
                                        candidate: Record { version: f.meta.version, ..Record::default() },
                                        candidate_id: id,
                                        last: 0,
                                    },
                                );
                                s.candidate = Some((f, id));
                            }
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
            // A challenger in shadow is judged before another is trained.
            Some(_) if s.candidate.is_some() => false,
            Some(last) => {
                self.policy.retrain_every_ms.is_some_and(|every| ts - last >= every)
                    || self.policy.retrain_samples.is_some_and(|n| s.since_train >= n)
                    || self.drift_due(s)
            }
        }
    }

    /// Samples of a new regime a drift retrain learns from (and waits for): as many as a
    /// first version needs (`min_samples`), and at least the drift window.
    fn drift_samples(&self) -> u64 {
        (DRIFT_WINDOW.max(self.spec.min_samples()).max(self.policy.min_samples)) as u64
    }

    fn drift_due(&self, s: &SeriesTrain) -> bool {
        s.drift_from.is_some_and(|from| s.count - from >= self.drift_samples())
    }

    /// Computes the drift statistic of a series every [`DRIFT_EVERY`] samples against
    /// its active version, reports it, and notes when it crosses the policy's bound.
    fn check_drift(&mut self, series: &str, t: Timestamp, ctx: &mut OpCtx) {
        let s = self.series.get_mut(series).expect("series state exists");
        if s.live.len() < DRIFT_WINDOW || s.since_drift_check < DRIFT_EVERY {
            return;
        }
        s.since_drift_check = 0;
        let Some(summary) = s.versions.last().and_then(|v| v.meta.summary.as_ref()) else { return };
        let Some(psi) = learn::monitor::psi(summary, s.live.iter().copied()) else { return };
        self.drift_now.entry(series.to_owned()).or_default().push((t, psi));
        if let Some(m) = &self.cx.monitor {
            m.update(&self.key, series, |h| {
                h.drift = Some(psi);
                h.updated_at = t;
            });
        }
        if let Some(bound) = self.policy.drift_above {
            if psi > bound && s.drift_from.is_none() && !s.drift_training {
                s.drift_from = Some(s.count);
                ctx.counted.push(("drift_detected", 1));
                tracing::info!(stage = %self.key, series, psi, bound, "the input drifted; retraining once enough new samples are in");
            } else if psi <= bound / 2.0 && !s.drift_training {
                s.drift_from = None;
            }
        }
    }

    /// Ends shadow periods that have run their course: `promote when better` promotes or
    /// rejects the candidate with the figures; `promote manual` keeps it in shadow.
    fn judge_shadows(&mut self, ctx: &mut OpCtx) {
        let Some(period) = self.policy.shadow_ms else { return };
        let mut decided = Vec::new();
        let mut written = Vec::new();
        let now = std::time::Instant::now();
        for (series, s) in &self.series {
            let Some((c, _)) = &s.candidate else { continue };
            let run = self.shadow.lock().unwrap_or_else(|e| e.into_inner()).get(series).cloned().unwrap_or_default();
            // Judged on points both versions scored (predict runs after this stage).
            let newest = run.last.max(run.from);
            let over = newest >= c.meta.data_to.saturating_add(period);
            let decide = over && self.policy.promote_when_better;
            let persist = decide || self.persisted.get(series).is_none_or(|t| now.duration_since(*t) >= std::time::Duration::from_secs(60));
            if !decide && !persist {
                continue;
            }
            let windows = self.cx.feedback.as_ref().map(|b| b.windows(&self.cx.pipeline, series)).unwrap_or_default();
            let cmp = shadow::compare(&run.active, &run.candidate, &windows, run.from, newest);
            if persist && self.background.is_some() {
                self.persist_shadow(&c.meta, &run, &cmp);
                written.push(series.clone());
            }
            if decide {
                let (promote, why) = shadow::better(&cmp);
                decided.push((series.clone(), promote, why, newest));
            }
        }
        for series in written {
            self.persisted.insert(series, now);
        }
        for (series, promote, why, newest) in decided {
            let s = self.series.get_mut(&series).expect("series state exists");
            let Some((c, id)) = s.candidate.take() else { continue };
            self.shadow.lock().unwrap_or_else(|e| e.into_inner()).remove(&series);
            let (event, version) = (if promote { "promoted" } else { "rejected" }, c.meta.version);
            tracing::info!(stage = %self.key, series = %series, version, "{event}: {why}");
            ctx.counted.push((if promote { "model_promoted" } else { "model_rejected" }, 1));
            if let Some(m) = &self.cx.monitor {
                m.update(&self.key, &series, |h| {
                    h.candidate = None;
                    if promote {
                        h.version = version;
                    }
                });
            }
            if promote {
                let mut c = c;
                if let Some(m) = Arc::get_mut(&mut c) {
                    m.meta.data_to = m.meta.data_to.min(newest);
                }
                s.versions.push(c);
            }
            if let Some(bg) = &self.background {
                let (store, key) = (bg.registry.store.clone(), self.key.clone());
                let audit = crate::learn::registry::ModelEvent::now(
                    &key,
                    &series,
                    event,
                    format!("v{version} {event} after its shadow period: {why}"),
                );
                bg.handle.spawn(async move {
                    // Retried: the registry must end up saying what the engine uses.
                    for attempt in 0..5u32 {
                        let activated = match (promote, id) {
                            (true, Some(id)) => store.activate_model(id).await.map(|_| ()),
                            _ => Ok(()),
                        };
                        match activated {
                            Ok(()) => {
                                if let Err(e) = store.record_model_event(&audit).await {
                                    tracing::error!(stage = %key, "cannot audit a model decision: {e}");
                                }
                                return;
                            }
                            Err(e) => {
                                tracing::warn!(stage = %key, attempt = attempt + 1, "cannot record the promoted version yet: {e}");
                                tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
                            }
                        }
                    }
                    tracing::error!(stage = %key, "the promoted version is used but the registry could not record it; `vigil models promote` fixes the record");
                });
            }
        }
    }

    /// Writes a shadow period's records beside the candidate's artifact, for `vigil
    /// models compare` (under `vigil run`).
    fn persist_shadow(&self, candidate: &learn::ModelMeta, run: &ShadowRun, cmp: &shadow::Comparison) {
        let Some(bg) = &self.background else { return };
        let series = candidate.series.as_str();
        let path = shadow::run_path(&bg.registry.dir, candidate);
        let Some(dir) = path.parent() else { return };
        let body = serde_json::json!({ "key": self.key, "series": series, "run": run, "comparison": cmp });
        let tmp = path.with_extension("json.tmp");
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, serde_json::to_vec_pretty(&body).unwrap_or_default()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(stage = %self.key, series, "cannot record the shadow period in {}: {e}", path.display());
        }
    }

    fn start_training(&mut self, series: &str) {
        let name = series.to_owned();
        let drift = self.series.get(series).is_some_and(|s| self.drift_due(s));
        let drift_samples = self.drift_samples();
        let s = self.series.get_mut(series).expect("series state exists");
        s.busy = true;
        s.drift_training = drift;
        s.since_train = 0;
        s.next_version = s.next_version.max(1);
        let version = s.next_version;
        s.next_version += 1;
        // A drift retrain learns the new regime only, and so do the trainings after it.
        let skip = if drift {
            let skip = s.ts.len().saturating_sub(usize::try_from(drift_samples).unwrap_or(usize::MAX));
            s.regime_from = s.ts.get(skip).copied();
            skip
        } else {
            s.regime_from.map_or(0, |from| s.ts.partition_point(|&t| t < from))
        };
        let cx = FitContext {
            key: self.key.clone(),
            series: series.to_owned(),
            version,
            fingerprint: self.fingerprint.clone(),
            pipeline_version: self.pipeline_version.clone(),
            regime_from: s.regime_from,
        };
        let ts: Vec<Timestamp> = s.ts.iter().skip(skip).copied().collect();
        let values: Vec<f64> = s.values.iter().skip(skip).copied().collect();
        let (exclude, normal) = match (&self.cx.feedback, ts.last()) {
            (Some(book), Some(&until)) => feedback::mask(&ts, &book.windows(&self.cx.pipeline, series), until),
            _ => (Vec::new(), Vec::new()),
        };
        // The first version of a series is active at once; later ones wait in shadow
        // when the policy says so.
        let activate = self.policy.shadow_ms.is_none() || s.versions.is_empty();
        let warm = if self.policy.warm_start { s.versions.last().cloned() } else { None };
        let spec = self.spec.clone();
        match &self.background {
            None => {
                // Inline (replay, eval): exactly at this sample, reproducibly.
                let data = Examples { ts: &ts, values: &values, exclude: &exclude, normal: &normal };
                let r = learn::fit(&spec, &cx, data, warm.as_deref(), &self.cancel, &mut |_, _, _| {});
                let _ = self
                    .updates
                    .0
                    .send(Update::Trained(series.to_owned(), r.map(|f| (Arc::new(f), None, activate)).map_err(|e| e.to_string())));
            }
            Some(bg) if self.trainer.is_some() => {
                let samples = Samples { ts, values, exclude, normal };
                let trainer = self.trainer.clone().expect("checked above");
                let job = TrainJob {
                    id: format!("{}/{}/v{version}/{}", cx.key, cx.series, crate::time::now_ms()),
                    key: cx.key,
                    fingerprint: cx.fingerprint,
                    pipeline_version: cx.pipeline_version,
                    series: cx.series,
                    version,
                    regime_from: cx.regime_from,
                    spec,
                    activate,
                    samples: Some(samples),
                    samples_at: None,
                    warm: None,
                    owner: trainer.node().to_owned(),
                    reply: String::new(),
                    submitted_at: crate::time::now_ms(),
                };
                let warm = warm.map(|w| w.meta.version);
                let (tx, cancel, registry) = (self.updates.0.clone(), self.cancel.clone(), bg.registry.clone());
                bg.handle.spawn(async move {
                    let series = job.series.clone();
                    let result =
                        train_remotely(&*trainer, &registry, job, warm, cancel).await.map(|f| (Arc::new(f.0), Some(f.1), activate));
                    let _ = tx.send(Update::Trained(series, result));
                });
            }
            Some(bg) => {
                let (tx, cancel, registry, handle) = (self.updates.0.clone(), self.cancel.clone(), bg.registry.clone(), bg.handle.clone());
                let series = series.to_owned();
                let spawned = std::thread::Builder::new().name("vigil-train".into()).spawn(move || {
                    let data = Examples { ts: &ts, values: &values, exclude: &exclude, normal: &normal };
                    let result = train_with_progress(&spec, &cx, data, warm.as_deref(), &cancel).and_then(|f| {
                        let id = handle.block_on(registry.register(&f, activate))?;
                        tracing::info!(
                            stage = %cx.key, series = %cx.series, version = f.meta.version, id, loss = f.meta.loss,
                            val_loss = f.meta.val_loss.unwrap_or(f64::NAN), train_ms = f.meta.train_ms,
                            excluded = f.meta.feedback_excluded, learned_as_normal = f.meta.feedback_normal, active = activate,
                            "trained model"
                        );
                        Ok((Arc::new(f), Some(id), activate))
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

/// Has `trainer` train `job` on whichever node takes it, warm started from this series'
/// version `warm`, and loads the version it registered; returns it with its registry id.
async fn train_remotely(
    trainer: &dyn Trainer,
    registry: &Registry,
    mut job: TrainJob,
    warm: Option<u32>,
    cancel: Arc<AtomicBool>,
) -> Result<(Fitted, i64), String> {
    if let Some(v) = warm {
        // The worker reads the warm-start version from the shared artifact store.
        match registry.store.models(Some(&job.key)).await {
            Ok(rows) => {
                job.warm = rows
                    .into_iter()
                    .find(|r| r.meta.series == job.series && r.meta.version == v)
                    .map(|r| WarmStart { location: r.path, meta: r.meta });
            }
            Err(e) => {
                tracing::warn!(stage = %job.key, series = %job.series, "cannot find the warm-start version v{v} ({e}); training from scratch")
            }
        }
    }
    let (key, series, version) = (job.key.clone(), job.series.clone(), job.version);
    let started = std::time::Instant::now();
    let t = trainer.train(job, cancel).await?;
    let mut f = registry.load(&t.location, &t.meta).await?;
    f.calibration = t.calibration;
    f.residuals = t.residuals;
    tracing::info!(
        stage = %key, series = %series, version, id = t.id, node = %t.node, loss = f.meta.loss, train_ms = f.meta.train_ms,
        waited_ms = started.elapsed().as_millis() as u64, location = %t.location,
        "trained model (a job of the cluster's work queue)"
    );
    Ok((f, t.id))
}

/// Trains with progress: a bar on a terminal, tracing events otherwise.
fn train_with_progress(
    spec: &Spec,
    cx: &FitContext,
    data: Examples<'_>,
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
    let r = learn::fit(spec, cx, data, warm, cancel, &mut progress).map_err(|e| e.to_string());
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    r
}

impl Operator for Train {
    fn forget(&mut self, ids: &[SeriesId]) {
        for id in ids {
            let series = id.to_string();
            self.series.remove(&series);
            self.shadow.lock().unwrap_or_else(|e| e.into_inner()).remove(&series);
            if let Some(m) = &self.cx.monitor {
                m.forget(&self.key, &series);
            }
        }
    }

    fn process(&mut self, inputs: &[Data], ctx: &mut OpCtx) -> Result<Data, OpError> {
        self.apply_updates();
        self.poll_registry();
        self.drift_now.clear();
        // Versions offered this tick: the newest before the tick, plus those trained in it.
        for s in self.series.values_mut() {
            let keep = s.versions.len().saturating_sub(1);
            s.versions.drain(..keep);
        }
        let mut columns: Vec<(String, Vec<Timestamp>, Vec<f64>)> = Vec::new();
        let mut ids: HashMap<String, SeriesId> = HashMap::new();
        match inputs.first() {
            Some(Data::Series(d)) => {
                for c in &d.series {
                    ids.insert(c.id.to_string(), c.id.clone());
                    columns.push((c.id.to_string(), c.ts.clone(), c.values.clone()));
                }
            }
            Some(Data::Features(f)) => {
                // Windows: train on the newest value of each row (the rows overlap).
                for m in &f.matrices {
                    let last: Vec<f64> = (0..m.rows()).map(|r| f64::from(m.row(r)[m.width - 1])).collect();
                    ids.insert(m.id.to_string(), m.id.clone());
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
                s.count += 1;
                s.live.push_back(v);
                if s.live.len() > DRIFT_WINDOW {
                    s.live.pop_front();
                }
                s.since_drift_check += 1;
                self.seen += 1;
                self.check_drift(&series, t, ctx);
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
        self.judge_shadows(ctx);
        let set = ModelSet {
            key: self.key.clone(),
            series: self.series.iter().filter(|(_, s)| !s.versions.is_empty()).map(|(k, s)| (k.clone(), s.versions.clone())).collect(),
            candidates: self.series.iter().filter_map(|(k, s)| s.candidate.as_ref().map(|(c, _)| (k.clone(), c.clone()))).collect(),
            shadow: Some(self.shadow.clone()),
            drift: std::mem::take(&mut self.drift_now).into_iter().filter_map(|(k, v)| Some((ids.get(&k)?.clone(), v))).collect(),
            monitor: self.cx.monitor.clone(),
            learns_from_feedback: self.cx.feedback.is_some(),
        };
        Ok(Data::Model(Arc::new(set)))
    }
}

/// What a predict stage over a model reports.
#[derive(Clone, Debug)]
pub enum Mode {
    /// A calibrated anomaly score; anomalous at or above `threshold`.
    Score { threshold: f64, suppress_ms: i64 },
    /// The forecast `step` values ahead, with bounds covering `interval` of past residuals;
    /// scores suppressed for `suppress_ms` as in `Score`.
    Forecast { step: usize, interval: f64, suppress_ms: i64 },
}

struct ScoreState {
    recent: VecDeque<f64>,
    errors: TailCalibrator,
    /// The series' recent range and the version's recent level of residuals (only with
    /// [`Calibration::Likelihood`]; empty otherwise). The errors of windows marked false
    /// positive raise `errors` only (with the likelihood, verdicts act through the harmless
    /// level), and a challenger in shadow is compared by the tail calibration.
    range: SlidingRange,
    level: RecentLevel,
    residuals: TailCalibrator,
    /// With [`Calibration::Novelty`], the residual series' detector (its own suppression
    /// replaces `suppress`). It spans versions: residuals are in the series' units
    /// whichever version made them, and the detector needs two days before it scores.
    /// With the newest timestamp it was given: it takes points in time order only.
    novelty: Option<(NoveltyState, Timestamp)>,
    suppress: Suppressor,
    /// Recent (timestamp, error) pairs: the errors of a window marked false positive
    /// later raise the calibration.
    past_errors: VecDeque<(Timestamp, f64)>,
    /// False-positive windows already learned from, and those waiting for their end to
    /// be scored.
    learned: HashSet<(Timestamp, Timestamp)>,
    pending: Vec<(Timestamp, Timestamp)>,
    /// Per window marked false positive, the largest error made in it: an error no larger
    /// than one on-call called harmless does not alarm again (the newest [`HARMLESS`]).
    harmless: VecDeque<((Timestamp, Timestamp), f64)>,
    /// Squared errors of the newest points (the live error of the active version).
    squares: VecDeque<f64>,
    anomalous: bool,
    /// A challenger's own calibration while it runs in shadow: its version, calibration,
    /// suppression and whether its last point was anomalous.
    shadow: Option<(u32, TailCalibrator, Suppressor, bool)>,
    /// The version that scored last: each version has its own calibration, started from
    /// its errors on held-out data ([`Fitted::calibration`]) — the errors of one version
    /// say nothing about another's (a retrained model errs less where it learned more, a
    /// model of a new regime differently).
    version: Option<u32>,
}

/// Errors kept per series for learning from later verdicts.
const PAST_ERRORS: usize = 4096;
/// Windows marked false positive whose error level a series remembers.
const HARMLESS: usize = 100;
/// An error no larger than a harmless one scores at most this share of the threshold.
const HARMLESS_SCORE: f64 = 0.99;

impl ScoreState {
    /// Learns from the false-positive windows that ended by `t`: the errors made in them
    /// join the calibration history [`learn::FEEDBACK_WEIGHT`] times, so the same error
    /// scores lower from now on.
    fn learn(&mut self, t: Timestamp) {
        if self.pending.is_empty() {
            return;
        }
        let (done, waiting): (Vec<_>, Vec<_>) = self.pending.drain(..).partition(|&(_, to)| to <= t);
        self.pending = waiting;
        for (from, to) in done {
            self.learned.insert((from, to));
            let errors: Vec<f64> = self.past_errors.iter().filter(|(u, _)| *u >= from && *u <= to).map(|&(_, e)| e).collect();
            if let Some(level) = errors.iter().copied().filter(|e| e.is_finite()).reduce(f64::max) {
                self.harmless.push_back(((from, to), level));
                if self.harmless.len() > HARMLESS {
                    self.harmless.pop_front();
                }
            }
            for e in errors {
                for _ in 0..learn::FEEDBACK_WEIGHT {
                    self.errors.push(e);
                }
            }
        }
    }

    /// Starts the calibration of version `f`: its own held-out errors and residuals (the
    /// bounds'), nothing of the version before.
    fn start_version(&mut self, f: &Fitted, history: usize, calibration: Calibration) {
        self.version = Some(f.meta.version);
        self.errors = TailCalibrator::seeded(history, &f.calibration);
        if calibration == Calibration::Likelihood {
            let seed: Vec<f64> = f.calibration.iter().map(|e| e * f.meta.scale).collect();
            self.level = RecentLevel::seeded(history, &seed, self.range.spread());
        }
        self.residuals = TailCalibrator::seeded(history, &f.residuals);
        self.squares.clear();
    }

    /// The largest error on-call called harmless, if any.
    fn harmless_level(&self) -> Option<f64> {
        self.harmless.iter().map(|&(_, e)| e).reduce(f64::max)
    }
}

/// `score` and `forecast`: a model's predictions, calibrated.
pub struct ModelScore {
    mode: Mode,
    history: usize,
    calibration: Calibration,
    /// The suppression's odds factor ([`Suppressor::with_odds_factor`]).
    odds_factor: f64,
    state: HashMap<SeriesId, ScoreState>,
    /// The pipeline and its verdicts (None: not learned from).
    feedback: Option<(String, Arc<FeedbackBook>)>,
    /// The book's generation last learned from.
    generation: u64,
}

pub use crate::learn::registry::subject as model_subject;

/// Samples the novelty calibration remembers per series (the `novelty` operator's default).
const NOVELTY_MEMORY: usize = 25_000;

/// Values kept per series for the models' context.
const MAX_CONTEXT: usize = 4096;

impl ModelScore {
    pub fn new(mode: Mode, history: usize, feedback: Option<(String, Arc<FeedbackBook>)>) -> ModelScore {
        ModelScore {
            mode,
            history: history.max(10),
            calibration: Calibration::Tail,
            odds_factor: 1.0,
            state: HashMap::new(),
            feedback,
            generation: 0,
        }
    }

    /// Scores with `calibration` instead of the default [`Calibration::Tail`].
    pub fn with_calibration(mut self, calibration: Calibration) -> ModelScore {
        self.calibration = calibration;
        self
    }

    /// Suppresses a later report within the period unless its odds are `factor` times the
    /// last report's.
    pub fn with_odds_factor(mut self, factor: f64) -> ModelScore {
        self.odds_factor = factor.max(1.0);
        self
    }

    /// Notes the windows marked false positive that came in since last time, per series:
    /// once a window's end has been scored, [`ScoreState::learn`] raises the calibration
    /// with the errors made in it.
    fn learn_from_verdicts(&mut self) {
        let Some((pipeline, book)) = &self.feedback else { return };
        let generation = book.generation();
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        for (id, st) in &mut self.state {
            let fp: Vec<(Timestamp, Timestamp)> = book
                .windows(pipeline, &id.to_string())
                .into_iter()
                .filter(|w| w.verdict == Verdict::FalsePositive)
                .map(|w| (w.from, w.to))
                .collect();
            // A window no longer marked false positive (on-call changed their mind) is no
            // longer harmless.
            st.harmless.retain(|(w, _)| fp.contains(w));
            st.learned.retain(|w| fp.contains(w));
            st.pending.retain(|w| fp.contains(w));
            for w in fp {
                if !st.learned.contains(&w) && !st.pending.contains(&w) {
                    st.pending.push(w);
                }
            }
        }
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
        if models.learns_from_feedback {
            self.learn_from_verdicts();
        }
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
            // A series seen for the first time starts with the verdicts known for it.
            let known: Vec<(Timestamp, Timestamp)> = match &self.feedback {
                Some((pipeline, book)) if models.learns_from_feedback && !self.state.contains_key(&id) => book
                    .windows(pipeline, &id.to_string())
                    .into_iter()
                    .filter(|w| w.verdict == Verdict::FalsePositive)
                    .map(|w| (w.from, w.to))
                    .collect(),
                _ => Vec::new(),
            };
            let st = self.state.entry(id.clone()).or_insert_with(|| ScoreState {
                recent: VecDeque::new(),
                errors: TailCalibrator::new(history),
                range: SlidingRange::new(RANGE_POINTS),
                level: RecentLevel::new(history),
                residuals: TailCalibrator::new(history),
                novelty: None,
                suppress: Suppressor::new(0),
                past_errors: VecDeque::new(),
                learned: HashSet::new(),
                pending: known,
                harmless: VecDeque::new(),
                version: None,
                squares: VecDeque::new(),
                anomalous: false,
                shadow: None,
            });
            let (Mode::Score { suppress_ms, .. } | Mode::Forecast { suppress_ms, .. }) = self.mode;
            if self.calibration == Calibration::Novelty {
                // The detector suppresses by its own event-level rule.
                if st.novelty.is_none() {
                    st.novelty = Some((NoveltyState::new(NOVELTY_MEMORY, suppress_ms), Timestamp::MIN));
                }
                st.suppress = Suppressor::new(0);
            } else if st.suppress.period() != suppress_ms || st.suppress.odds_factor() != self.odds_factor {
                st.suppress = Suppressor::with_odds_factor(suppress_ms, self.odds_factor);
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
            let mut version_of: Vec<Option<usize>> = vec![None; ts.len()];
            for (j, &t) in ts.iter().enumerate() {
                if let Some(v) = ModelSet::version_for(versions, t) {
                    groups.entry(v).or_default().push(j);
                    version_of[j] = Some(v);
                }
            }
            for (v, js) in groups {
                let positions: Vec<usize> = js.iter().map(|j| base + j).collect();
                let tss: Vec<Timestamp> = js.iter().map(|&j| ts[j]).collect();
                for (j, p) in js.iter().zip(versions[v].predict(&hist, &positions, &tss, step)) {
                    preds[*j] = p;
                }
            }
            // A challenger in shadow scores the points after its training data too.
            let series_name = id.to_string();
            let candidate = models.candidates.get(&series_name).filter(|_| matches!(self.mode, Mode::Score { .. }));
            let mut shadow_preds: Vec<Option<learn::Prediction>> = vec![None; values.len()];
            if let Some(c) = candidate {
                let js: Vec<usize> = (0..ts.len()).filter(|&j| ts[j] > c.meta.data_to).collect();
                let positions: Vec<usize> = js.iter().map(|j| base + j).collect();
                let tss: Vec<Timestamp> = js.iter().map(|&j| ts[j]).collect();
                for (j, p) in js.iter().zip(c.predict(&hist, &positions, &tss, 1)) {
                    shadow_preds[*j] = p;
                }
                if st.shadow.as_ref().is_none_or(|(v, ..)| *v != c.meta.version) {
                    st.shadow = Some((c.meta.version, TailCalibrator::new(history), Suppressor::new(0), false));
                }
            } else {
                st.shadow = None;
            }
            let mut run = candidate.and_then(|_| models.shadow.as_ref()).map(|m| m.lock().unwrap_or_else(|e| e.into_inner()));
            let mut o = ScoreColumn::new(id.clone());
            let calibration = self.calibration;
            for (j, (&t, &v)) in ts.iter().zip(&values).enumerate() {
                st.learn(t);
                if let Some(f) = version_of[j].map(|v| &versions[v]).filter(|f| st.version != Some(f.meta.version)) {
                    st.start_version(f, history, calibration);
                }
                // The score of an error, by the stage's calibration (then the error joins it).
                let scale = version_of[j].map_or(1.0, |v| versions[v].meta.scale);
                let spread = st.range.spread();
                let calibrate = |st: &mut ScoreState, p: learn::Prediction| -> f64 {
                    let e = p.error;
                    let s = match (calibration, st.novelty.as_mut()) {
                        (Calibration::Novelty, Some((n, last))) if (v - p.expected).is_finite() && t > *last => {
                            *last = t;
                            n.push(t, v - p.expected)
                        }
                        (Calibration::Novelty, _) => 0.0,
                        (Calibration::Tail, _) => st.errors.score(e),
                        (Calibration::Likelihood, _) => st.level.score(e * scale, spread),
                    };
                    st.errors.push(e);
                    if calibration == Calibration::Likelihood {
                        st.level.push(e * scale, spread);
                    }
                    s
                };
                if let Some(p) = preds[j] {
                    st.past_errors.push_back((t, p.error));
                    if st.past_errors.len() > PAST_ERRORS {
                        st.past_errors.pop_front();
                    }
                    if p.error.is_finite() {
                        st.squares.push_back(p.error * p.error);
                        if st.squares.len() > DRIFT_WINDOW {
                            st.squares.pop_front();
                        }
                    }
                }
                match (preds[j], &self.mode) {
                    (Some(p), Mode::Score { threshold, suppress_ms }) => {
                        let harmless = st.harmless_level().is_some_and(|level| p.error <= level);
                        let mut raw = calibrate(st, p);
                        if harmless {
                            raw = raw.min(threshold * HARMLESS_SCORE);
                        }
                        let s = st.suppress.apply(t, raw);
                        let spread = st.residuals.quantile(0.99).unwrap_or(f64::NAN);
                        st.residuals.push((v - p.expected).abs());
                        let anomalous = s >= *threshold;
                        // The shadow period: both versions' would-be alarms (event starts).
                        if let (Some(run), Some(_)) = (run.as_mut().and_then(|r| r.get_mut(&series_name)), candidate) {
                            if t > run.from {
                                run.active.points += 1;
                                if anomalous && !st.anomalous {
                                    run.active.alarms.push(t);
                                }
                                if let (Some(cp), Some((_, cal, sup, prev))) = (shadow_preds[j], st.shadow.as_mut()) {
                                    run.candidate.points += 1;
                                    run.last = run.last.max(t);
                                    if !cp.error.is_finite() {
                                        run.candidate.nan += 1;
                                    }
                                    if sup.period() != *suppress_ms {
                                        *sup = Suppressor::new(*suppress_ms);
                                    }
                                    let cs = sup.apply(t, cal.score(cp.error));
                                    cal.push(cp.error);
                                    let ca = cs >= *threshold;
                                    if ca && !*prev {
                                        run.candidate.alarms.push(t);
                                    }
                                    *prev = ca;
                                }
                            }
                        }
                        st.anomalous = anomalous;
                        o.push(t, v, s, p.expected, p.expected - spread, p.expected + spread, anomalous);
                    }
                    (Some(p), Mode::Forecast { interval, .. }) => {
                        let score = calibrate(st, p);
                        let raw = st.suppress.apply(t, score);
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
                if calibration == Calibration::Likelihood {
                    st.range.push(v);
                }
            }
            drop(run);
            if let (Some(m), Some(active)) = (&models.monitor, versions.last()) {
                let reference = active.meta.reference_error();
                if st.squares.len() >= DRIFT_WINDOW / 4 && reference > 0.0 && reference.is_finite() {
                    let ratio = st.squares.iter().sum::<f64>() / st.squares.len() as f64 / reference;
                    m.update(&models.key, &series_name, |h| h.error_ratio = Some(ratio));
                }
            }
            // Keep the context the newest version (or the challenger) needs.
            let need = versions.last().map_or(0, |f| f.context()).max(candidate.map_or(0, |c| c.context())).min(MAX_CONTEXT);
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

/// `drift(model, threshold)`: the drift figures its train stage computed this tick, as
/// scores: the value is the population stability index, the score `psi / (psi +
/// threshold)` (0.5 at the threshold), anomalous above it.
pub struct DriftScores {
    pub threshold: f64,
}

impl Operator for DriftScores {
    fn process(&mut self, inputs: &[Data], _ctx: &mut OpCtx) -> Result<Data, OpError> {
        let Some(Data::Model(m)) = inputs.first() else { return Err(OpError::Invalid("drift takes a Model".into())) };
        let t = self.threshold.max(f64::MIN_POSITIVE);
        let series = m
            .drift
            .iter()
            .map(|(id, points)| {
                let mut o = ScoreColumn::new(id.clone());
                for &(ts, psi) in points {
                    o.push(ts, psi, psi / (psi + t), 0.0, 0.0, t, psi > t);
                }
                o
            })
            .collect();
        Ok(Data::Scores(Arc::new(ScoresData { series })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{SeriesColumn, SeriesData};
    use crate::learn::{net::TrainParams, Examples, FitContext};

    /// A forecaster version trained on `values[..end]` (timestamps = indices).
    fn version(values: &[f64], end: usize, version: u32) -> Fitted {
        version_at(values, end, version, 1)
    }

    /// The same with the samples `step` milliseconds apart.
    fn version_at(values: &[f64], end: usize, version: u32, step: i64) -> Fitted {
        let ts: Vec<i64> = (0..end as i64).map(|i| i * step).collect();
        let spec = Spec::Forecaster {
            lookback: 8,
            horizon: 1,
            hidden: vec![8],
            train: TrainParams { epochs: 10, learning_rate: 0.01, batch_size: 32, seed: 1, huber: 1.0 },
            change: false,
            log: false,
        };
        let cx = FitContext {
            key: "p.m".into(),
            series: "x".into(),
            version,
            fingerprint: "f".into(),
            pipeline_version: "v".into(),
            regime_from: None,
        };
        let data = Examples { ts: &ts, values: &values[..end], exclude: &[], normal: &[] };
        learn::fit(&spec, &cx, data, None, &AtomicBool::new(false), &mut |_, _, _| {}).unwrap()
    }

    /// The scores `score` gives `values` (one tick) with these versions offered.
    fn scores(versions: Vec<Arc<Fitted>>, values: &[f64]) -> Vec<f64> {
        scores_with(versions, values, Calibration::Tail)
    }

    fn scores_with(versions: Vec<Arc<Fitted>>, values: &[f64], calibration: Calibration) -> Vec<f64> {
        scores_at(versions, values, calibration, 1)
    }

    fn scores_at(versions: Vec<Arc<Fitted>>, values: &[f64], calibration: Calibration, step: i64) -> Vec<f64> {
        let points: Vec<(i64, f64)> = values.iter().enumerate().map(|(i, &v)| (i as i64 * step, v)).collect();
        scores_of(versions, &points, calibration)
    }

    /// The scores of these (timestamp, value) points, in the order given.
    fn scores_of(versions: Vec<Arc<Fitted>>, points: &[(i64, f64)], calibration: Calibration) -> Vec<f64> {
        let set = ModelSet {
            key: "p.m".into(),
            series: HashMap::from([("x".to_owned(), versions)]),
            candidates: HashMap::new(),
            shadow: None,
            drift: Vec::new(),
            monitor: None,
            learns_from_feedback: false,
        };
        let mut c = SeriesColumn::new(SeriesId::named("x"));
        for &(t, v) in points {
            c.push(t, v);
        }
        let inputs = [Data::Model(Arc::new(set)), Data::Series(Arc::new(SeriesData { series: vec![c] }))];
        let mut op = ModelScore::new(Mode::Score { threshold: 0.99, suppress_ms: 0 }, 1000, None).with_calibration(calibration);
        match op.process(&inputs, &mut OpCtx::new(0)).unwrap() {
            Data::Scores(s) => s.series[0].score.clone(),
            _ => panic!("not scores"),
        }
    }

    #[test]
    fn a_versions_calibration_ignores_another_versions_errors() {
        // A sine; version 1 learned it from 300 samples, version 2 from 600.
        let values: Vec<f64> = (0..900).map(|i| 10.0 * (i as f64 * 0.3).sin() + (i % 7) as f64 * 0.1).collect();
        let v2 = Arc::new(version(&values, 600, 2));
        assert!(v2.calibration.len() >= 50, "a version carries its held-out errors: {}", v2.calibration.len());
        // Version 1's errors are made huge by a broken version 1 (a model of another
        // series): whatever it scored before, version 2's scores must not change.
        let flat: Vec<f64> = (0..300).map(|i| 1000.0 + (i % 3) as f64).collect();
        let v1 = Arc::new(version(&flat, 300, 1));
        let with_v1 = scores(vec![v1, v2.clone()], &values);
        let alone = scores(vec![v2], &values);
        assert!(with_v1[300..600].iter().any(|&s| s > 0.0), "version 1 scored its points");
        assert_eq!(with_v1[600..], alone[600..], "version 2's scores do not depend on version 1's errors");
        // And version 2 scores from its first point, calibrated by its own held-out errors.
        assert!(alone[600..].iter().filter(|&&s| s > 0.0).count() > 250);
    }

    #[test]
    fn the_novelty_calibration_scores_a_new_residual_after_its_first_two_days() {
        // Five-minute samples of a daily wave with a little noise; a version from the first
        // 600, a jump at sample 1 500.
        const STEP: i64 = 300_000;
        let values: Vec<f64> =
            (0..1700).map(|i| 50.0 + 10.0 * (i as f64 * std::f64::consts::TAU / 288.0).sin() + (i % 7) as f64 * 0.2).collect();
        let v = Arc::new(version_at(&values, 600, 1, STEP));
        let mut jumped = values.clone();
        jumped[1500] += 15.0;
        let s = scores_at(vec![v], &jumped, Calibration::Novelty, STEP);
        assert!(s[..600].iter().all(|&x| x == 0.0), "nothing before the version");
        assert!(s[600..600 + 570].iter().all(|&x| x == 0.0), "nothing during the detector's first two days");
        let usual = s[1200..1500].iter().copied().fold(0.0, f64::max);
        assert!(s[1500] >= 0.9 && usual < 0.9, "the jump {} against at most {usual} before", s[1500]);
        // A sample out of time order, or not finite, scores 0 and does not reach the detector.
        let mut odd: Vec<(i64, f64)> = jumped.iter().enumerate().map(|(i, &x)| (i as i64 * STEP, x)).collect();
        odd.insert(1300, (1299 * STEP - 1, jumped[1299] + 15.0));
        odd.insert(1400, (1398 * STEP + 1, f64::NAN));
        let s2 = scores_of(vec![Arc::new(version_at(&values, 600, 1, STEP))], &odd, Calibration::Novelty);
        assert_eq!((s2[1300], s2[1400]), (0.0, 0.0));
        assert!(s2[1502] >= 0.9, "the jump still scores: {}", s2[1502]);
    }

    #[test]
    fn the_likelihood_calibration_scores_a_jump_and_not_the_usual_error() {
        let values: Vec<f64> = (0..900).map(|i| 10.0 * (i as f64 * 0.3).sin() + (i % 7) as f64 * 0.1).collect();
        let v = Arc::new(version(&values, 600, 1));
        let mut jumped = values.clone();
        jumped[800] += 15.0;
        let s = scores_with(vec![v.clone()], &jumped, Calibration::Likelihood);
        // The version scores from its first point, seeded by its held-out errors.
        assert!(s[..600].iter().all(|&x| x == 0.0), "nothing before the version");
        assert!(s[600..].iter().filter(|&&x| x > 0.0).count() > 10);
        let usual = s[600..800].iter().copied().fold(0.0, f64::max);
        assert!(s[800] > 0.9 && s[800] > usual, "the jump {} against at most {usual} before", s[800]);
        // Scaling the series scales the residuals and the range alike: the same scores.
        let scaled: Vec<f64> = jumped.iter().map(|x| x * 1000.0).collect();
        let big: Vec<f64> = values.iter().map(|x| x * 1000.0).collect();
        let s2 = scores_with(vec![Arc::new(version(&big, 600, 1))], &scaled, Calibration::Likelihood);
        assert!((s2[800] - s[800]).abs() < 0.02, "{} vs {}", s2[800], s[800]);
    }
}
