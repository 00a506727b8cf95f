//! The engine: builds each pipeline's stages from the plan, fires ticks from triggers,
//! and runs each tick down the DAG.
//!
//! - One task per pipeline owns its ticks and runs them one at a time; trigger tasks send
//!   into a channel of capacity one, so triggers that fire while a tick is pending are
//!   coalesced (and counted) rather than queued without bound.
//! - A tick is driven by the one executor ([`crate::runtime::exec::Tick`], the same that `replay`,
//!   `eval` and `test` run synchronously): it hands out the stages whose inputs are ready
//!   (a stage whose input produced nothing does not run); the engine runs each batch
//!   concurrently, every stage as its own tokio task.
//! - Each stage gets its timeout and retries (with exponential backoff) from its options.
//!   What a stage decided that must be recorded (a respond stage's incidents and
//!   notifications, [`crate::runtime::Operator::commit`]) is awaited right after it, tried again
//!   with the stage's backoff. A stage that still fails fails the tick: logged with its
//!   key and source position, recorded in the run history, counted in `/metrics`; no
//!   cursor is saved; the engine carries on.
//! - Cursors of collect stages are saved after each successful tick.
//! - Shutdown cancels the triggers and lets a running tick finish.
//!
//! # What a reload keeps
//!
//! A stage whose key and fingerprint (its resolved configuration and its input keys) are
//! unchanged is the same object after the reload: all of its state, and its generation.
//! A stage that changed is built anew (the next generation) and starts *warm*:
//!
//! - Every preprocess, predict and train stage keeps its recent inputs
//!   ([`InputHistory`]: the ticks holding the last 10 000 samples of each series, at most
//!   1 000 000 samples per stage). When a reload rebuilds the stage with the same input
//!   stages, the new stage takes the history over and, before its first tick, the engine
//!   replays it (the replay's outputs are discarded: downstream stages already saw those
//!   samples). Replaying inputs rather than migrating state works whatever the edit, for
//!   every operator, with no per-operator code, and is exact: the new stage holds what it
//!   would hold had it run from the start of the history.
//!   - A threshold change (`zscore(threshold: 6.0 → 8.0)`): the same window, now judged
//!     against the new threshold; an incident open downstream stays open while the new
//!     scores still match, and resolves when they do not.
//!   - A window length change: the new window is refilled from the history — exactly,
//!     up to 10 000 samples of each series (a longer window fills up as data comes).
//!   - A detector swap (`zscore` → `novelty`, another operator): the new detector is
//!     trained on the same replayed inputs, so it scores from its first live sample.
//!   - A model architecture change (a train stage's `lookback`, layers, …): the models
//!     of the old configuration stay in the registry but are not used by the new stage
//!     (a model made by another configuration is retrained). The new train stage refills
//!     its per-series training history from the replay and trains as soon as its policy
//!     allows — during the replay itself when it holds `min_samples` — instead of waiting
//!     for `min_samples` new samples; until a series has a model, predict uses the
//!     stage's `fallback`, or gives no score (which clears no incident, below).
//!   - Other input stages than before: nothing to replay; the stage starts empty.
//! - A stage whose operator keeps a snapshot (log templates) and is rebuilt with the
//!   same operator restores that snapshot instead (template ids must not change).
//! - Collect stages keep their cursor when the operator is the same; respond stages are
//!   never replayed (that would notify again): a rebuilt respond stage takes over its
//!   firing incidents from the responder.
//! - A respond stage never resolves an incident on a sample its detector could not score
//!   yet (a window still filling: [`crate::data::ScoreColumn::unscored`]), so a detector
//!   that starts cold (new input stages, a history shorter than its `min_samples`) does
//!   not clear open incidents either.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod reload;

use crate::dag::{PipelinePlan, Plan};
use crate::dag::{StageOpt, Trigger};
use crate::data::Data;
use crate::runtime::history::InputHistory;
use crate::runtime::metrics::Metrics;
use crate::runtime::ops::{self, collect, BuildEnv};
use crate::runtime::state::{RunRecord, Store};
use crate::runtime::{OpCtx, OpError, Step};
use crate::source::SourceMap;
use crate::syntax::ast::StageKind;

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{location}: stage `{key}`: {source}")]
    Build {
        key: String,
        location: String,
        #[source]
        source: ops::BuildError,
    },
    #[error("{0}")]
    Store(#[from] crate::persist::StoreError),
    #[error("invalid cron schedule `{0}`: {1}")]
    Cron(String, String),
}

/// A webhook path's destination.
#[derive(Clone)]
pub struct WebhookRoute {
    pub pipeline: String,
    /// `json` or `alertmanager`.
    pub format: String,
    pub max_body: usize,
    pub queue: collect::EventQueue,
    pub tick: mpsc::Sender<()>,
    /// What a request must carry to be accepted.
    pub auth: WebhookAuth,
    /// Requests per second, with bursts as large.
    pub limiter: Arc<Mutex<crate::access::RateLimiter>>,
}

/// A webhook path's authentication (from its `webhook_events` stage).
#[derive(Clone, Default)]
pub struct WebhookAuth {
    pub token: Option<String>,
    /// The HMAC key and the header holding the signature.
    pub hmac: Option<(String, String)>,
}

/// One stage in `/api/v1/status`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StageStatus {
    pub key: String,
    pub fingerprint: String,
    /// Changes only when the stage is rebuilt.
    pub generation: u64,
    pub pipeline: String,
    pub kind: StageKind,
    pub operator: String,
    /// The keys of the stages feeding it, in slot order.
    pub inputs: Vec<String>,
    /// `file:line:col` of the stage statement.
    pub location: String,
    /// The stage template it was called through (`robust_zscore` for a `zscore`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Its parameters, defaults filled, as source text (secrets are references only).
    pub params: std::collections::BTreeMap<String, String>,
}

/// The status of a pipeline's running stages; `plan` (the plan the pipeline was built
/// from, stage for stage) adds their parameters.
fn stage_statuses(pipeline: &str, rt: &PipelineRt, plan: Option<&PipelinePlan>) -> Vec<StageStatus> {
    rt.stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let node = plan.and_then(|p| p.stages.get(i)).filter(|n| n.key.0 == s.key);
            StageStatus {
                key: s.key.clone(),
                fingerprint: s.fingerprint.clone(),
                generation: s.generation,
                pipeline: pipeline.to_owned(),
                kind: s.kind,
                operator: s.operator.to_owned(),
                inputs: rt.inputs[i].iter().map(|&j| rt.stages[j].key.clone()).collect(),
                location: s.location.clone(),
                via: node.and_then(|n| n.via.clone()),
                params: node
                    .map(|n| {
                        n.params.iter().filter(|(_, v)| **v != crate::value::Value::Null).map(|(k, v)| (k.clone(), v.to_string())).collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// The last reload's outcome.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReloadStatus {
    /// `applied`, `rejected` or `rolled_back`.
    pub outcome: String,
    pub at: String,
    /// The version of the sources the reload read.
    pub version: String,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// The diagnostics of a rejected reload, or the error of a rolled-back one, rendered.
    pub diagnostics: Vec<String>,
    /// The same diagnostics as data (as `vigil check --format json` prints them: code,
    /// message, file, line, column, labels, help); empty for a rolled-back reload.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<serde_json::Value>,
}

/// What `/api/v1/status` reports.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Status {
    pub version: String,
    pub pipelines: Vec<PipelineStatus>,
    pub stages: Vec<StageStatus>,
    pub last_reload: Option<ReloadStatus>,
    /// The last 64 reloads, oldest first.
    pub reloads: Vec<ReloadStatus>,
    /// In a cluster: how this node sees it (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::cluster::Health>,
    /// Whether the state store answers (probed every [`STORE_PROBE`]).
    pub store: StoreHealth,
}

/// How often the engine checks that its state store answers.
pub const STORE_PROBE: Duration = Duration::from_secs(2);

/// Whether the state store answered the engine's last probe: `/api/v1/status` `store`,
/// `/metrics` `vigil_store_up`, `/readyz`. While it does not, ticks wait for it (a tick
/// that could not record its results fails and runs again: cursors do not move, so no
/// input is lost) and notifications wait in the outbox; the API keeps answering.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StoreHealth {
    /// `ok`, or `unreachable` while the store does not answer.
    pub status: &'static str,
    /// Since when (Unix ms) it has not answered.
    pub unreachable_since: Option<i64>,
    /// The last probe's error, while it does not answer.
    pub error: Option<String>,
}

impl Default for StoreHealth {
    fn default() -> StoreHealth {
        StoreHealth { status: "ok", unreachable_since: None, error: None }
    }
}

/// Probes the store every [`STORE_PROBE`] until `cancel`, recording its health in the
/// status and metrics, and logging when it stops and starts answering again.
async fn probe_store(store: Arc<dyn Store>, shared: Arc<Shared>, cancel: CancellationToken) {
    let mut interval = tokio::time::interval(STORE_PROBE);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = interval.tick() => {}
        }
        let answer = match tokio::time::timeout(STORE_PROBE, store.ping()).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {} s", STORE_PROBE.as_secs())),
        };
        shared.metrics.store_up(answer.is_ok());
        let mut status = shared.status.write().unwrap_or_else(|e| e.into_inner());
        let since = status.store.unreachable_since;
        match answer {
            Ok(()) => {
                if let Some(since) = since {
                    tracing::info!(down_ms = crate::time::now_ms() - since, "the state store answers again");
                }
                status.store = StoreHealth::default();
            }
            Err(error) => {
                if since.is_none() {
                    tracing::error!(error = %error, "the state store does not answer: ticks wait for it (their input is kept), notifications wait in the outbox; retrying");
                }
                status.store = StoreHealth {
                    status: "unreachable",
                    unreachable_since: since.or_else(|| Some(crate::time::now_ms())),
                    error: Some(error),
                };
            }
        }
    }
}

/// A pipeline in `/api/v1/status`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PipelineStatus {
    pub name: String,
    pub triggers: Vec<Trigger>,
    pub stages: Vec<String>,
}

/// What the engine shares with the HTTP server.
#[derive(Default)]
pub struct Shared {
    pub metrics: Metrics,
    pub status: RwLock<Status>,
    pub webhooks: RwLock<HashMap<String, WebhookRoute>>,
    /// Incidents, silences, channels and the outbox.
    pub responder: RwLock<Arc<crate::respond::Responder>>,
    /// Where `POST /api/v1/reload` sends its request (set by `vigil run`).
    pub reload: RwLock<Option<mpsc::Sender<reload::ReloadRequest>>>,
    /// Who may call the API (tokens, read authentication, Host allowlist).
    pub access: RwLock<crate::access::Access>,
    /// The recent scores of every series, for the console's live charts.
    pub recent: crate::runtime::recent::RecentScores,
    /// The health of every trained model (drift, error ratio, challengers).
    pub monitor: Arc<crate::learn::monitor::Monitor>,
    /// The state store (set by [`Engine::start_with`]): runs and models for the API.
    pub store: RwLock<Option<Arc<dyn Store>>>,
    /// The effectiveness report's lines of `/metrics`, when they were computed and the
    /// responder's change count then: a scrape reuses them while nothing changed, for a
    /// minute at most, instead of reading a week of incidents each time.
    pub report_metrics: Mutex<Option<(Instant, u64, String)>>,
}

impl Shared {
    /// The state store, when the engine has one.
    pub fn store(&self) -> Option<Arc<dyn Store>> {
        self.store.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A built stage.
pub struct StageRt {
    pub key: String,
    pub fingerprint: String,
    pub generation: u64,
    pub kind: StageKind,
    pub operator: &'static str,
    /// `file:line:col` of the stage statement.
    pub location: String,
    pub retries: u32,
    pub backoff_ms: u64,
    pub timeout_ms: Option<u64>,
    pub step: tokio::sync::Mutex<Step>,
    /// The stage's cardinality limits (`max_series`, `series_idle`).
    pub guard: Mutex<crate::runtime::cardinality::SeriesGuard>,
    /// The recent inputs of a preprocess, predict or train stage (see "What a reload
    /// keeps"): shared with the stage it replaces when a reload rebuilds it.
    pub history: Option<Arc<Mutex<InputHistory>>>,
    /// Set when the stage replaces another: `history` is replayed into it before its
    /// first tick (when every tick of the old version has finished).
    pub replay: std::sync::atomic::AtomicBool,
}

/// A built pipeline.
pub struct PipelineRt {
    pub name: String,
    pub version: String,
    pub stages: Vec<Arc<StageRt>>,
    /// For each stage, the indices of the stages feeding its inputs, in slot order.
    pub inputs: Vec<Vec<usize>>,
    /// Stage indices by level: every input of a stage is in an earlier level.
    pub levels: Vec<Vec<usize>>,
    pub triggers: Vec<Trigger>,
}

/// What a tick did.
#[derive(Debug)]
pub struct TickReport {
    pub ok: bool,
    pub items: usize,
    pub failed_stage: Option<String>,
    pub error: Option<String>,
    /// The output of every stage that ran, by index.
    pub outputs: Vec<Option<Data>>,
}

/// Builds a pipeline's stages.
///
/// # Errors
/// A stage that cannot be built, with its source position.
pub fn build_pipeline(
    p: &PipelinePlan,
    sources: &SourceMap,
    version: &str,
    state_dir: Option<PathBuf>,
    queue: Option<collect::EventQueue>,
) -> Result<PipelineRt, RuntimeError> {
    build_pipeline_from(p, sources, version, state_dir, queue, None, None, Arc::default()).map(|(rt, _)| rt)
}

/// What a rebuild did to a pipeline's stages.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct StageChanges {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

/// Builds a pipeline's stages, reusing from `old` every stage whose key and fingerprint
/// are unchanged — the same object, so its state (windows, cursors, open incidents) and
/// its generation carry over. Stages that changed get the next generation; a changed
/// source keeps its cursor when its operator is the same.
#[allow(clippy::too_many_arguments)] // one call site each; a build context would bundle these
async fn rebuild(
    p: &PipelinePlan,
    sources: &SourceMap,
    version: &str,
    state_dir: Option<PathBuf>,
    queue: Option<collect::EventQueue>,
    old: Option<&PipelineRt>,
    models: Option<ops::learn::BackgroundEnv>,
    responder: Arc<crate::respond::Responder>,
) -> Result<(PipelineRt, StageChanges), RuntimeError> {
    let (rt, changes) = build_pipeline_from(p, sources, version, state_dir, queue, old, models, responder)?;
    if let Some(old) = old {
        for s in &rt.stages {
            if let Some(prev) = old.stages.iter().find(|o| o.key == s.key && o.operator == s.operator && !Arc::ptr_eq(o, s)) {
                // A source's cursor, an operator's snapshot (log templates).
                let state = prev.step.lock().await.saved_state();
                if let Some(c) = state {
                    s.step.lock().await.restore_state(&c);
                    // Its snapshot carries its state: replaying would count things twice.
                    s.replay.store(false, std::sync::atomic::Ordering::Release);
                }
            }
        }
    }
    Ok((rt, changes))
}

#[allow(clippy::too_many_arguments)] // one call site each; a build context would bundle these
fn build_pipeline_from(
    p: &PipelinePlan,
    sources: &SourceMap,
    version: &str,
    state_dir: Option<PathBuf>,
    queue: Option<collect::EventQueue>,
    old: Option<&PipelineRt>,
    models: Option<ops::learn::BackgroundEnv>,
    responder: Arc<crate::respond::Responder>,
) -> Result<(PipelineRt, StageChanges), RuntimeError> {
    let file = sources.get(p.span.source);
    let base_dir = file.path.as_ref().and_then(|f| f.parent().map(PathBuf::from)).unwrap_or_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| RuntimeError::Build {
            key: p.name.clone(),
            location: sources.location(p.span),
            source: ops::BuildError::Invalid(e.to_string()),
        })?;
    let env = BuildEnv {
        pipeline: p.name.clone(),
        base_dir,
        state_dir,
        client,
        webhook_queue: queue,
        pipeline_version: version.to_owned(),
        models,
        responder,
        live: true,
    };
    let mut changes = StageChanges::default();
    let mut stages = Vec::with_capacity(p.stages.len());
    let mut all_inputs = Vec::with_capacity(p.stages.len());
    for node in &p.stages {
        let inputs: Vec<usize> = node.inputs.iter().map(|(_, j)| *j).collect();
        let previous = old.and_then(|o| o.stages.iter().find(|s| s.key == node.key.0));
        if let Some(prev) = previous.filter(|s| s.fingerprint == node.fingerprint.0) {
            // Unchanged: the same stage, with its state. (Its input indices may have
            // moved if other stages came or went; the fingerprint holds the input keys,
            // so the wiring is the same.)
            stages.push(prev.clone());
            all_inputs.push(inputs);
            continue;
        }
        match previous {
            Some(_) => changes.changed.push(node.key.0.clone()),
            None => changes.added.push(node.key.0.clone()),
        }
        // The inputs kept for replay: taken over from the stage this one replaces when it
        // reads the same stages, in the same slots.
        let keeps_history = matches!(node.kind, StageKind::Preprocess | StageKind::Predict | StageKind::Train);
        let same_inputs = |o: &PipelineRt, prev: &Arc<StageRt>| {
            o.stages.iter().position(|s| Arc::ptr_eq(s, prev)).is_some_and(|at| {
                o.inputs[at].iter().map(|&j| o.stages[j].key.as_str()).eq(inputs.iter().map(|&j| p.stages[j].key.0.as_str()))
            })
        };
        let taken_over = match (old, previous) {
            (Some(o), Some(prev)) if keeps_history && same_inputs(o, prev) => prev.history.clone(),
            _ => None,
        };
        let replay = taken_over.is_some();
        let history = keeps_history.then(|| taken_over.unwrap_or_default());
        let location = sources.location(node.span);
        let step = crate::operators::build(node, &env).map_err(|source| RuntimeError::Build {
            key: node.key.0.clone(),
            location: location.clone(),
            source,
        })?;
        let (mut retries, mut backoff_ms, mut timeout_ms) = (0, 1000, None);
        let (mut max_series, mut series_idle) =
            (crate::runtime::cardinality::DEFAULT_MAX_SERIES, crate::runtime::cardinality::DEFAULT_SERIES_IDLE_MS);
        for o in &node.options {
            match o {
                StageOpt::Retry { attempts, backoff_ms: b } => (retries, backoff_ms) = (*attempts, *b),
                StageOpt::Timeout { ms } => timeout_ms = Some(*ms),
                StageOpt::MaxSeries { count } => max_series = usize::try_from(*count).unwrap_or(usize::MAX),
                StageOpt::SeriesIdle { ms } => series_idle = i64::try_from(*ms).unwrap_or(i64::MAX),
                _ => {}
            }
        }
        stages.push(Arc::new(StageRt {
            key: node.key.0.clone(),
            fingerprint: node.fingerprint.0.clone(),
            generation: previous.map_or(1, |s| s.generation + 1),
            kind: node.kind,
            operator: node.operator,
            location,
            retries,
            backoff_ms,
            timeout_ms,
            step: tokio::sync::Mutex::new(step),
            guard: Mutex::new(crate::runtime::cardinality::SeriesGuard::new(max_series, series_idle)),
            history,
            replay: replay.into(),
        }));
        all_inputs.push(inputs);
    }
    if let Some(o) = old {
        changes.removed = o.stages.iter().filter(|s| !p.stages.iter().any(|n| n.key.0 == s.key)).map(|s| s.key.clone()).collect();
    }
    let levels = crate::runtime::exec::levels(&all_inputs);
    Ok((
        PipelineRt { name: p.name.clone(), version: version.to_owned(), stages, inputs: all_inputs, levels, triggers: p.triggers.clone() },
        changes,
    ))
}

/// Runs one stage with its timeout and retries.
async fn run_stage(
    stage: Arc<StageRt>,
    inputs: Vec<Data>,
    now: i64,
    backlog: crate::runtime::Backlog,
) -> (Result<Data, OpError>, OpCtx, f64) {
    let started = Instant::now();
    let mut step = stage.step.lock().await;
    if stage.replay.swap(false, std::sync::atomic::Ordering::AcqRel) {
        if let (Some(history), Step::Op(op)) = (&stage.history, &mut *step) {
            warm_up(&stage, history, op.as_mut());
        }
    }
    let mut attempt = 0;
    loop {
        let mut ctx = OpCtx::new(now);
        if !matches!(&*step, Step::Source(_)) {
            ctx.backlog = backlog;
        }
        let result = {
            let fut = async {
                match &mut *step {
                    Step::Source(s) => s.collect(&mut ctx).await,
                    Step::Op(o) => o.process(&inputs, &mut ctx),
                }
            };
            match stage.timeout_ms {
                Some(ms) => tokio::time::timeout(Duration::from_millis(ms), fut).await.unwrap_or(Err(OpError::Timeout(ms))),
                None => fut.await,
            }
        };
        match result {
            Err(e) if attempt < stage.retries => {
                let wait = stage.backoff_ms.saturating_mul(1 << attempt.min(16));
                tracing::warn!(stage = %stage.key, at = %stage.location, attempt = attempt + 1, error = %e, retry_in_ms = wait, "stage failed; retrying");
                tokio::time::sleep(Duration::from_millis(wait)).await;
                attempt += 1;
            }
            Ok(data) => {
                if let Step::Op(op) = &mut *step {
                    if let Err(e) = commit(&stage, op.as_mut()).await {
                        return (Err(e), ctx, started.elapsed().as_secs_f64());
                    }
                }
                // Cardinality limits: new series beyond the cap are dropped, idle ones
                // expire; the operator forgets both.
                let wall = crate::time::now_ms();
                let (data, dropped, expired) = stage.guard.lock().unwrap_or_else(|e| e.into_inner()).admit(data, wall, &mut ctx);
                step.forget(&dropped);
                step.forget(&expired);
                if let Some(h) = &stage.history {
                    let mut h = h.lock().unwrap_or_else(|e| e.into_inner());
                    h.record(now, &inputs);
                    h.forget(&dropped);
                    h.forget(&expired);
                }
                ctx.expired = expired;
                return (Ok(data), ctx, started.elapsed().as_secs_f64());
            }
            r => return (r, ctx, started.elapsed().as_secs_f64()),
        }
    }
}

/// How many times a stage's commit is tried within a tick at least (the stage's
/// `retry` option may allow more).
const COMMIT_ATTEMPTS: u32 = 3;

/// Records what a stage's `process` decided (see [`crate::runtime::Operator::commit`]), trying
/// again with the stage's backoff when the store refuses. An error fails the tick; the
/// stage keeps the transitions for the next tick's commit.
async fn commit(stage: &StageRt, op: &mut dyn crate::runtime::Operator) -> Result<(), OpError> {
    let attempts = COMMIT_ATTEMPTS.max(stage.retries + 1);
    let mut attempt = 0;
    loop {
        let Some(fut) = op.commit() else { return Ok(()) };
        match fut.await {
            Ok(()) => return Ok(()),
            Err(e) if attempt + 1 < attempts => {
                let wait = stage.backoff_ms.max(50).saturating_mul(1 << attempt.min(16));
                tracing::warn!(stage = %stage.key, at = %stage.location, attempt = attempt + 1, error = %e, retry_in_ms = wait, "cannot record the stage's transitions; retrying");
                tokio::time::sleep(Duration::from_millis(wait)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Replays a rebuilt stage's inherited inputs into it (see "What a reload keeps"); the
/// outputs are discarded. A tick of the history that fails is skipped.
fn warm_up(stage: &StageRt, history: &Mutex<InputHistory>, op: &mut dyn crate::runtime::Operator) {
    let ticks = history.lock().unwrap_or_else(|e| e.into_inner()).ticks();
    let clock = Instant::now();
    let (mut samples, mut failed) = (0usize, 0usize);
    for (now, inputs) in &ticks {
        samples += inputs.iter().filter(|d| !matches!(d, Data::Model(_))).map(Data::items).sum::<usize>();
        if op.process(inputs, &mut OpCtx::new(*now)).is_err() {
            failed += 1;
        }
    }
    tracing::info!(
        stage = %stage.key,
        generation = stage.generation,
        ticks = ticks.len(),
        samples,
        failed,
        ms = clock.elapsed().as_millis() as u64,
        "rebuilt stage warmed up from its recent inputs"
    );
}

/// Runs one tick of a pipeline through the executor ([`crate::runtime::exec::Tick`]): each batch
/// of ready stages runs concurrently, every stage as its own task (a panic fails that
/// stage, not the engine), with its timeout and retries.
pub async fn run_tick(p: &PipelineRt, shared: &Shared, now: i64) -> TickReport {
    let mut tick = crate::runtime::exec::Tick::with_levels(&p.inputs, std::borrow::Cow::Borrowed(&p.levels), vec![None; p.stages.len()]);
    let mut items = 0;
    // Set by the sources that read a first start's backlog, for the stages after them.
    let mut backlog = crate::runtime::Backlog::None;
    while let Some(ready) = tick.ready() {
        let handles: Vec<_> = ready
            .into_iter()
            .map(|(i, inputs)| {
                // The stage's writes carry the tick's fence (a task does not inherit it).
                let stage = run_stage(p.stages[i].clone(), inputs, now, backlog);
                (i, tokio::spawn(crate::persist::fenced(crate::persist::current_fence(), stage)))
            })
            .collect();
        let mut results = Vec::with_capacity(handles.len());
        for (i, h) in handles {
            match h.await {
                Ok(r) => results.push((i, r)),
                Err(e) => results.push((i, (Err(OpError::Invalid(format!("the stage panicked: {e}"))), OpCtx::new(now), 0.0))),
            }
        }
        let mut failure = None;
        for (i, (result, ctx, secs)) in results {
            let stage = &p.stages[i];
            backlog = backlog.max(ctx.backlog);
            if !ctx.expired.is_empty() {
                forget_downstream(p, i, &ctx.expired, shared).await;
            }
            for (reason, count) in &ctx.skipped {
                shared.metrics.skipped(&p.name, &stage.key, reason, *count);
                tracing::warn!(pipeline = %p.name, stage = %stage.key, reason, count, "skipped invalid input records");
            }
            for (event, count) in &ctx.counted {
                shared.metrics.counted(&p.name, &stage.key, event, *count);
            }
            for (reason, count) in &ctx.lost {
                shared.metrics.lost(&p.name, &stage.key, reason, *count);
                tracing::warn!(pipeline = %p.name, stage = %stage.key, reason, count, "rows lost before they could be read");
            }
            match result {
                Ok(data) => {
                    let count = data.items();
                    items += count;
                    shared.metrics.stage(&p.name, &stage.key, secs, count, false);
                    if let Data::Scores(s) = &data {
                        for col in &s.series {
                            if let Some(last) = col.score.last() {
                                shared.metrics.score(&p.name, &stage.key, &col.id.to_string(), *last);
                            }
                        }
                        shared.recent.record(&p.name, &stage.key, s);
                    }
                    tick.complete(i, Some(data));
                }
                Err(e) => {
                    shared.metrics.stage(&p.name, &stage.key, secs, 0, true);
                    tracing::error!(pipeline = %p.name, stage = %stage.key, at = %stage.location, error = %e, "stage failed; the tick fails");
                    failure.get_or_insert((stage.key.clone(), format!("{}: stage `{}`: {e}", stage.location, stage.key)));
                }
            }
        }
        if let Some((key, error)) = failure {
            return TickReport { ok: false, items, failed_stage: Some(key), error: Some(error), outputs: tick.into_outputs() };
        }
    }
    TickReport { ok: true, items, failed_stage: None, error: None, outputs: tick.into_outputs() }
}

/// Series that stage `from` forgot (idle): every stage downstream forgets them too, and
/// their gauges go.
async fn forget_downstream(p: &PipelineRt, from: usize, ids: &[crate::data::SeriesId], shared: &Shared) {
    tracing::debug!(pipeline = %p.name, stage = %p.stages[from].key, series = ids.len(), "forgetting idle series");
    let mut reached = vec![false; p.stages.len()];
    reached[from] = true;
    // Stages come in topological order: a stage is downstream when one of its inputs is.
    for i in from + 1..p.stages.len() {
        if p.inputs[i].iter().any(|&j| reached[j]) {
            reached[i] = true;
            p.stages[i].step.lock().await.forget(ids);
            p.stages[i].guard.lock().unwrap_or_else(|e| e.into_inner()).forget(ids);
            if let Some(h) = &p.stages[i].history {
                h.lock().unwrap_or_else(|e| e.into_inner()).forget(ids);
            }
        }
    }
    let names: std::collections::HashSet<String> = ids.iter().map(ToString::to_string).collect();
    let keys: std::collections::HashSet<&str> = p.stages.iter().zip(&reached).filter(|(_, r)| **r).map(|(s, _)| s.key.as_str()).collect();
    shared.metrics.forget_series(|stage, series| keys.contains(stage) && names.contains(series));
    shared.recent.forget(|stage, series| keys.contains(stage) && names.contains(series));
}

/// How a reload ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadOutcome {
    /// The new plan runs.
    Applied,
    /// The sources do not compile: the old plan keeps running.
    Rejected,
    /// The new plan compiled but a stage could not be built: the old plan keeps running.
    RolledBack,
    /// After a rejected or rolled-back reload, the sources are back to what runs: nothing
    /// to apply, and the configuration is good again.
    Restored,
}

impl ReloadOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadOutcome::Applied => "applied",
            ReloadOutcome::Rejected => "rejected",
            ReloadOutcome::RolledBack => "rolled_back",
            ReloadOutcome::Restored => "restored",
        }
    }

    /// Whether the configuration that runs is the one on disk afterwards.
    pub fn successful(self) -> bool {
        matches!(self, ReloadOutcome::Applied | ReloadOutcome::Restored)
    }
}

/// A running pipeline: the version its next tick runs, and what drives it.
struct PipelineHandle {
    current: Arc<Mutex<Arc<PipelineRt>>>,
    /// Cancels this pipeline's trigger tasks (replaced when its triggers change).
    triggers: CancellationToken,
    /// Stops this pipeline's loop after its running tick (when the pipeline is removed).
    stop: CancellationToken,
    tick: mpsc::Sender<()>,
    queue: Option<collect::EventQueue>,
    webhook: Option<String>,
    /// In a cluster: the lease under which its writes are made.
    fence: Option<Arc<crate::persist::Fence>>,
}

/// The running engine. One controller applies plans to it, one at a time.
pub struct Engine {
    pub shared: Arc<Shared>,
    store: Arc<dyn Store>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    state_dir: Option<PathBuf>,
    pipelines: tokio::sync::Mutex<std::collections::BTreeMap<String, PipelineHandle>>,
    /// In a cluster, the pipelines this node may run (those it holds the lease of), with
    /// their fences; `None`: every pipeline of the plan (one node).
    owned: RwLock<Option<HashMap<String, Arc<crate::persist::Fence>>>>,
    /// The plan last applied, its sources and version: applied again when the pipelines
    /// this node owns change.
    last_plan: Mutex<Option<(Plan, SourceMap, String)>>,
    /// In a cluster: the shared artifact store and the work queue that trains
    /// ([`Engine::train_remotely`]).
    remote: std::sync::OnceLock<crate::learn::jobs::Remote>,
}

impl Engine {
    /// An engine running nothing yet.
    pub fn new(store: Arc<dyn Store>, state_dir: Option<PathBuf>) -> Engine {
        Engine {
            shared: Arc::new(Shared::default()),
            store,
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            state_dir,
            pipelines: tokio::sync::Mutex::new(Default::default()),
            owned: RwLock::new(None),
            last_plan: Mutex::new(None),
            remote: std::sync::OnceLock::new(),
        }
    }

    /// The model registry under `STATE/models` (when the engine has a state directory),
    /// for train stages that run in the background.
    fn models(&self) -> Option<ops::learn::BackgroundEnv> {
        let dir = self.state_dir.as_ref()?.join("models");
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let remote = self.remote.get();
        let registry = match remote {
            Some(r) => crate::learn::registry::Registry { dir, store: self.store.clone(), artifacts: r.artifacts.clone() },
            None => crate::learn::registry::Registry::local(dir, self.store.clone()),
        };
        Some(ops::learn::BackgroundEnv {
            registry,
            handle,
            monitor: self.shared.monitor.clone(),
            trainer: remote.map(|r| r.trainer.clone()),
        })
    }

    /// In a cluster: train stages keep their artifacts in `remote`'s store and hand their
    /// trainings to its work queue. Set once, before the node runs any pipeline; false
    /// when it was set already.
    pub fn train_remotely(&self, remote: crate::learn::jobs::Remote) -> bool {
        self.remote.set(remote).is_ok()
    }

    /// Whether the plan has a stage `key` of this configuration (`fingerprint`): a
    /// training job for a stage that is gone, or was changed since, is dropped.
    pub fn has_stage(&self, key: &str, fingerprint: &str) -> bool {
        let last = self.last_plan.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref()
            .is_some_and(|(p, _, _)| p.pipelines.iter().flat_map(|p| &p.stages).any(|s| s.key.0 == key && s.fingerprint.0 == fingerprint))
    }

    /// Builds every pipeline of a plan and starts their triggers: applying the plan to an
    /// engine with nothing running.
    ///
    /// # Errors
    /// A stage that cannot be built (nothing is started then), or a cursor that cannot be
    /// loaded.
    pub async fn start(
        plan: &Plan,
        sources: &SourceMap,
        version: &str,
        store: Arc<dyn Store>,
        state_dir: Option<PathBuf>,
    ) -> Result<Engine, RuntimeError> {
        Engine::start_with(plan, sources, version, store, state_dir, false).await
    }

    /// Like [`start`](Self::start); with `dry_run`, notifications are printed instead of
    /// sent. Loads incidents and silences from the store and starts the outbox dispatcher
    /// (which sends what a previous run left pending, too).
    ///
    /// # Errors
    /// As [`start`](Self::start), or when the store cannot be read.
    pub async fn start_with(
        plan: &Plan,
        sources: &SourceMap,
        version: &str,
        store: Arc<dyn Store>,
        state_dir: Option<PathBuf>,
        dry_run: bool,
    ) -> Result<Engine, RuntimeError> {
        Engine::start_owned(plan, sources, version, store, state_dir, dry_run, false).await
    }

    /// Like [`start_with`](Self::start_with); `clustered`: the engine runs only the
    /// pipelines it is given with [`Engine::run_only`] (none at first) — the cluster's
    /// leases decide which.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn start_owned(
        plan: &Plan,
        sources: &SourceMap,
        version: &str,
        store: Arc<dyn Store>,
        state_dir: Option<PathBuf>,
        dry_run: bool,
        clustered: bool,
    ) -> Result<Engine, RuntimeError> {
        let mut engine = Engine::new(store.clone(), state_dir.clone());
        if clustered {
            engine.owned = RwLock::new(Some(HashMap::new()));
        }
        let responder = Arc::new(crate::respond::Responder::open(store.clone(), state_dir, dry_run).await?);
        *engine.shared.responder.write().unwrap_or_else(|e| e.into_inner()) = responder.clone();
        *engine.shared.store.write().unwrap_or_else(|e| e.into_inner()) = Some(engine.store.clone());
        engine.apply(plan, sources, version).await?;
        let shared = engine.shared.clone();
        let report: crate::respond::dispatch::Report =
            Arc::new(move |stage: &str, channel: &str, result: &str| shared.metrics.notification(stage, channel, result));
        engine.tracker.spawn(crate::respond::dispatch::run(responder, engine.cancel.clone(), report));
        engine.tracker.spawn(probe_store(engine.store.clone(), engine.shared.clone(), engine.cancel.clone()));
        Ok(engine)
    }

    /// Applies a new plan, make before break: every new or changed stage is built first;
    /// only then are the running pipelines switched over. Unchanged stages (same key and
    /// fingerprint) are the same objects in the new version, with their state. A tick
    /// already running finishes on the version it started with.
    ///
    /// # Errors
    /// When a stage cannot be built: nothing changed (the caller reports `rolled_back`).
    pub async fn apply(&self, plan: &Plan, sources: &SourceMap, version: &str) -> Result<StageChanges, RuntimeError> {
        self.apply_as(plan, sources, version, false).await
    }

    /// [`apply`](Self::apply); `ownership`: the plan is the same, the pipelines this node
    /// owns changed (a cluster) — not a reload, so not recorded as one.
    async fn apply_as(&self, plan: &Plan, sources: &SourceMap, version: &str, ownership: bool) -> Result<StageChanges, RuntimeError> {
        let mut pipelines = self.pipelines.lock().await;
        *self.last_plan.lock().unwrap_or_else(|e| e.into_inner()) = Some((plan.clone(), sources.clone(), version.to_owned()));
        // In a cluster, the pipelines this node holds the lease of, each under its fence.
        let owned = self.owned.read().unwrap_or_else(|e| e.into_inner()).clone();
        let fence_of = |name: &str| owned.as_ref().and_then(|o| o.get(name).cloned());
        let wanted: Vec<&PipelinePlan> = plan.pipelines.iter().filter(|p| owned.as_ref().is_none_or(|o| o.contains_key(&p.name))).collect();
        // A pipeline whose lease was lost and taken again runs anew under its new fence:
        // the old instance drains (its writes are refused) and a new one is built.
        let refenced: Vec<String> = pipelines
            .iter()
            .filter(|(name, h)| match (&h.fence, fence_of(name)) {
                (Some(a), Some(b)) => !Arc::ptr_eq(a, &b),
                _ => false,
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in &refenced {
            if let Some(h) = pipelines.remove(name) {
                h.triggers.cancel();
                h.stop.cancel();
            }
        }
        // Build everything first.
        let mut built = Vec::new();
        let mut changes = StageChanges::default();
        for p in wanted.iter().copied() {
            if owned.is_some() && !pipelines.contains_key(&p.name) {
                // Taken over: its incidents as the last owner left them.
                let responder = self.shared.responder.read().unwrap_or_else(|e| e.into_inner()).clone();
                responder.refresh_pipeline(&p.name).await?;
            }
            let old = pipelines.get(&p.name);
            let webhook = p.triggers.iter().find_map(|t| if let Trigger::Webhook { path } = t { Some(path.clone()) } else { None });
            let queue = match (old, &webhook) {
                (Some(h), Some(path)) if h.webhook.as_ref() == Some(path) => h.queue.clone(),
                (_, Some(_)) => Some(collect::EventQueue::default()),
                (_, None) => None,
            };
            let old_rt = old.map(|h| h.current.lock().unwrap_or_else(|e| e.into_inner()).clone());
            let responder = self.shared.responder.read().unwrap_or_else(|e| e.into_inner()).clone();
            let (rt, c) =
                rebuild(p, sources, version, self.state_dir.clone(), queue.clone(), old_rt.as_deref(), self.models(), responder).await?;
            // Stages new to this engine resume from their saved cursors (sources) and
            // snapshots (operators that keep one).
            for key in &c.added {
                if let Some(s) = rt.stages.iter().find(|s| &s.key == key) {
                    if let Some(cur) = self.store.load_cursor(&s.key).await? {
                        s.step.lock().await.restore_state(&cur);
                    }
                }
            }
            changes.added.extend(c.added);
            changes.changed.extend(c.changed);
            changes.removed.extend(c.removed);
            built.push((p, Arc::new(rt), webhook, queue));
        }
        let removed: Vec<String> = pipelines.keys().filter(|n| !wanted.iter().any(|p| &p.name == *n)).cloned().collect();
        for name in &removed {
            if let Some(h) = pipelines.get(name) {
                let rt = h.current.lock().unwrap_or_else(|e| e.into_inner()).clone();
                changes.removed.extend(rt.stages.iter().map(|s| s.key.clone()));
            }
        }
        // Switch over.
        let mut routes = HashMap::new();
        for (p, rt, webhook, queue) in built {
            let triggers_changed =
                pipelines.get(&p.name).is_none_or(|h| h.current.lock().map(|c| c.triggers != rt.triggers).unwrap_or(true));
            match pipelines.get_mut(&p.name) {
                Some(h) => {
                    *h.current.lock().unwrap_or_else(|e| e.into_inner()) = rt.clone();
                    h.queue = queue.clone();
                    h.webhook = webhook.clone();
                    if triggers_changed {
                        h.triggers.cancel();
                        h.triggers = self.cancel.child_token();
                        spawn_triggers(&rt, h.tick.clone(), &self.shared, &h.triggers, &self.tracker)?;
                    }
                }
                None => {
                    let (tick, ticks) = mpsc::channel::<()>(1);
                    let h = PipelineHandle {
                        current: Arc::new(Mutex::new(rt.clone())),
                        triggers: self.cancel.child_token(),
                        stop: self.cancel.child_token(),
                        tick,
                        queue: queue.clone(),
                        webhook: webhook.clone(),
                        fence: fence_of(&p.name),
                    };
                    spawn_triggers(&rt, h.tick.clone(), &self.shared, &h.triggers, &self.tracker)?;
                    self.tracker.spawn(pipeline_loop(
                        h.current.clone(),
                        ticks,
                        self.shared.clone(),
                        self.store.clone(),
                        h.stop.clone(),
                        h.fence.clone(),
                    ));
                    pipelines.insert(p.name.clone(), h);
                }
            }
            if let (Some(path), Some(queue)) = (webhook, queue) {
                let h = &pipelines[&p.name];
                let node = p.stages.iter().find(|s| s.operator == "webhook_events");
                let format = match node.and_then(|n| n.params.get("format")) {
                    Some(crate::value::Value::Str(f)) => f.clone(),
                    _ => "json".into(),
                };
                let max_body = match node.and_then(|n| n.params.get("max_body")) {
                    Some(crate::value::Value::Int(i)) => (*i).max(1) as usize,
                    _ => 1 << 20,
                };
                let param = |k: &str| node.and_then(|n| n.params.get(k));
                let secret = |k: &str| match param(k) {
                    Some(crate::value::Value::Secret(s)) => ops::resolve_secret(s).ok(),
                    _ => None,
                };
                let header = match param("signature_header") {
                    Some(crate::value::Value::Str(h)) => h.clone(),
                    _ => "X-Signature".into(),
                };
                let rate = match param("rate_limit") {
                    Some(crate::value::Value::Int(i)) => (*i).max(1) as f64,
                    _ => 100.0,
                };
                let auth = WebhookAuth { token: secret("token"), hmac: secret("hmac").map(|k| (k, header)) };
                let limiter = Arc::new(Mutex::new(crate::access::RateLimiter::new(rate)));
                routes
                    .insert(path, WebhookRoute { pipeline: p.name.clone(), format, max_body, queue, tick: h.tick.clone(), auth, limiter });
            }
        }
        // Removed pipelines drain: their running tick finishes, then their loop ends.
        for name in &removed {
            if let Some(h) = pipelines.remove(name) {
                h.triggers.cancel();
                h.stop.cancel();
            }
        }
        *self.shared.webhooks.write().unwrap_or_else(|e| e.into_inner()) = routes;
        let keys: std::collections::HashSet<String> = pipelines
            .values()
            .flat_map(|h| h.current.lock().map(|c| c.stages.iter().map(|s| s.key.clone()).collect::<Vec<_>>()).unwrap_or_default())
            .collect();
        self.shared.metrics.forget_stages(|_, stage| keys.contains(stage));
        self.shared.recent.forget(|stage, _| !keys.contains(stage));
        let mut status = self.shared.status.write().unwrap_or_else(|e| e.into_inner());
        status.version = version.to_owned();
        status.pipelines = wanted
            .iter()
            .map(|p| PipelineStatus {
                name: p.name.clone(),
                triggers: p.triggers.clone(),
                stages: p.stages.iter().map(|s| s.key.0.clone()).collect(),
            })
            .collect();
        status.stages = pipelines
            .iter()
            .flat_map(|(name, h)| {
                let rt = h.current.lock().map(|c| c.clone()).ok();
                let node = plan.pipelines.iter().find(|p| &p.name == name);
                rt.map(|rt| stage_statuses(name, &rt, node)).unwrap_or_default()
            })
            .collect();
        drop(status);
        if ownership {
            tracing::info!(
                running = pipelines.len(),
                added = changes.added.len(),
                removed = changes.removed.len(),
                "the pipelines this node runs changed"
            );
            return Ok(changes);
        }
        self.record_reload(ReloadOutcome::Applied, version, &changes, Vec::new(), Vec::new());
        tracing::info!(
            version,
            added = changes.added.len(),
            changed = changes.changed.len(),
            removed = changes.removed.len(),
            "reload applied"
        );
        Ok(changes)
    }

    /// Records a reload's outcome in the status, the metrics and the history.
    pub fn record_reload(
        &self,
        outcome: ReloadOutcome,
        version: &str,
        changes: &StageChanges,
        diagnostics: Vec<String>,
        errors: Vec<serde_json::Value>,
    ) {
        self.shared.metrics.reload(outcome.as_str(), outcome.successful());
        let r = ReloadStatus {
            outcome: outcome.as_str().into(),
            at: crate::time::format_rfc3339(crate::time::now_ms()),
            version: version.to_owned(),
            added: changes.added.clone(),
            changed: changes.changed.clone(),
            removed: changes.removed.clone(),
            diagnostics,
            errors,
        };
        let mut status = self.shared.status.write().unwrap_or_else(|e| e.into_inner());
        status.reloads.push(r.clone());
        if status.reloads.len() > 64 {
            status.reloads.remove(0);
        }
        status.last_reload = Some(r);
    }

    /// The names of the plan's pipelines (in a cluster, those the nodes share out),
    /// sorted.
    pub fn planned(&self) -> Vec<String> {
        let last = self.last_plan.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> =
            last.as_ref().map(|(p, _, _)| p.pipelines.iter().map(|p| p.name.clone()).collect()).unwrap_or_default();
        names.sort();
        names
    }

    /// In a cluster: runs exactly the pipelines of `owned` (each under its fence), starting
    /// those new to it and stopping the others (a running tick of a stopped pipeline
    /// finishes, and its writes are refused once another node holds the lease). Without
    /// a cluster this changes nothing.
    ///
    /// # Errors
    /// A pipeline that cannot be built or whose incidents cannot be read: the ownership
    /// is recorded, the running pipelines are as they were.
    pub async fn run_only(&self, owned: HashMap<String, Arc<crate::persist::Fence>>) -> Result<StageChanges, RuntimeError> {
        {
            let mut slot = self.owned.write().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                return Ok(StageChanges::default());
            }
            *slot = Some(owned);
        }
        let last = self.last_plan.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match last {
            Some((plan, sources, version)) => self.apply_as(&plan, &sources, &version, true).await,
            None => Ok(StageChanges::default()),
        }
    }

    /// The names of the running pipelines.
    pub async fn pipeline_names(&self) -> Vec<String> {
        self.pipelines.lock().await.keys().cloned().collect()
    }

    /// How many stages run, over all pipelines.
    pub async fn stage_count(&self) -> usize {
        self.pipelines.lock().await.values().map(|h| h.current.lock().map(|c| c.stages.len()).unwrap_or(0)).sum()
    }

    /// A token cancelled when the engine shuts down.
    pub fn cancellation(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Stops the triggers and waits (at most `grace`) for running ticks to finish.
    /// Returns whether everything finished in time.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.cancel.cancel();
        self.tracker.close();
        let done = tokio::time::timeout(grace, self.tracker.wait()).await.is_ok();
        if !done {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "ticks still running at shutdown; stopping anyway");
        }
        done
    }
}

impl crate::cluster::Owner for Engine {
    fn pipelines(&self) -> Vec<String> {
        self.planned()
    }

    fn own(&self, owned: HashMap<String, Arc<crate::persist::Fence>>) -> crate::persist::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.run_only(owned).await.map(|_| ()).map_err(|e| e.to_string()) })
    }

    fn report(&self, health: crate::cluster::Health) {
        self.shared.status.write().unwrap_or_else(|e| e.into_inner()).cluster = Some(health);
    }

    /// The version of the plan last applied in full (a rejected or rolled-back reload
    /// leaves it as it was).
    fn version(&self) -> String {
        self.shared.status.read().map(|s| s.version.clone()).unwrap_or_default()
    }
}

fn spawn_triggers(
    p: &Arc<PipelineRt>,
    tick: mpsc::Sender<()>,
    shared: &Arc<Shared>,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<(), RuntimeError> {
    // Validate every schedule before starting any task.
    for t in &p.triggers {
        if let Trigger::Cron { schedule } = t {
            croner::parser::CronParser::new().parse(schedule).map_err(|e| RuntimeError::Cron(schedule.clone(), e.to_string()))?;
        }
    }
    let fire = {
        let name = p.name.clone();
        let shared = shared.clone();
        move |tick: &mpsc::Sender<()>| {
            if let Err(mpsc::error::TrySendError::Full(())) = tick.try_send(()) {
                shared.metrics.coalesced(&name);
            }
        }
    };
    for t in &p.triggers {
        match t {
            Trigger::Every { ms } => {
                let (tick, cancel, fire, ms) = (tick.clone(), cancel.clone(), fire.clone(), *ms);
                tracker.spawn(async move {
                    let mut interval = tokio::time::interval(Duration::from_millis(ms.max(1)));
                    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    loop {
                        tokio::select! {
                            _ = cancel.cancelled() => break,
                            _ = interval.tick() => fire(&tick),
                        }
                    }
                });
            }
            Trigger::Cron { schedule } => {
                let cron =
                    croner::parser::CronParser::new().parse(schedule).map_err(|e| RuntimeError::Cron(schedule.clone(), e.to_string()))?;
                let (tick, cancel, fire) = (tick.clone(), cancel.clone(), fire.clone());
                tracker.spawn(async move {
                    loop {
                        let now = chrono::Utc::now();
                        let Ok(next) = cron.find_next_occurrence(&now, false) else { break };
                        let wait = (next - now).to_std().unwrap_or(Duration::ZERO);
                        tokio::select! {
                            _ = cancel.cancelled() => break,
                            _ = tokio::time::sleep(wait) => fire(&tick),
                        }
                    }
                });
            }
            // Requests to the path fire ticks through the route's sender.
            Trigger::Webhook { .. } => {}
        }
    }
    Ok(())
}

/// The task that owns a pipeline's ticks.
async fn pipeline_loop(
    current: Arc<Mutex<Arc<PipelineRt>>>,
    mut ticks: mpsc::Receiver<()>,
    shared: Arc<Shared>,
    store: Arc<dyn Store>,
    cancel: CancellationToken,
    fence: Option<Arc<crate::persist::Fence>>,
) {
    // The cursors last saved, so that a tick that read nothing writes nothing.
    let mut saved: HashMap<String, String> = HashMap::new();
    loop {
        if let Some(f) = fence.as_ref().filter(|f| f.refused()) {
            // Another node holds the lease now: nothing more from here (the cluster stops
            // the pipeline's triggers too).
            tracing::warn!(pipeline = %f.pipeline, revision = f.revision, "the store refused this node's writes for the pipeline (its lease was taken over): stopping it here");
            break;
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            t = ticks.recv() => if t.is_none() { break },
        }
        // While the store does not answer, the tick waits for it: its results could not be
        // recorded (the input stays where it is, and triggers meanwhile coalesce into this
        // tick), and the probe has said so once rather than every tick failing.
        while shared.status.read().is_ok_and(|s| s.store.unreachable_since.is_some()) {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                () = tokio::time::sleep(STORE_PROBE / 4) => {}
            }
        }
        // The version the tick runs: a reload during the tick affects the next one.
        let p = current.lock().unwrap_or_else(|e| e.into_inner()).clone();
        crate::persist::fenced(fence.clone(), tick_once(&p, &shared, store.as_ref(), &mut saved)).await;
    }
}

/// Runs one tick of `p` and records it: its cursors (after a successful tick) and its run.
async fn tick_once(p: &PipelineRt, shared: &Shared, store: &dyn Store, saved: &mut HashMap<String, String>) {
    // A tick that has started runs to the end, even during shutdown.
    let started_at = crate::time::now_ms();
    let clock = Instant::now();
    let report = run_tick(p, shared, started_at).await;
    let secs = clock.elapsed().as_secs_f64();
    shared.metrics.tick(&p.name, report.ok, secs);
    if report.ok {
        let mut cursors = Vec::new();
        for s in &p.stages {
            if let Some(c) = s.step.lock().await.saved_state().filter(|c| saved.get(&s.key) != Some(c)) {
                cursors.push((s.key.clone(), c));
            }
        }
        match store.save_cursors(&cursors).await {
            Ok(()) => saved.extend(cursors),
            Err(e) => tracing::error!(pipeline = %p.name, error = %e, "cannot save cursors"),
        }
    }
    let run = RunRecord {
        pipeline: p.name.clone(),
        version: p.version.clone(),
        started_at,
        finished_at: crate::time::now_ms(),
        status: if report.ok { "ok".into() } else { "failed".into() },
        items: report.items as i64,
        error: report.error.clone(),
        failed_stage: report.failed_stage.clone(),
    };
    if let Err(e) = store.record_run(&run).await {
        tracing::error!(pipeline = %p.name, error = %e, "cannot record the run");
    }
    tracing::debug!(pipeline = %p.name, ok = report.ok, items = report.items, seconds = secs, "tick");
}
