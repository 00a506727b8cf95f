//! The engine: builds each pipeline's stages from the plan, fires ticks from triggers,
//! and runs each tick down the DAG.
//!
//! - One task per pipeline owns its ticks and runs them one at a time; trigger tasks send
//!   into a channel of capacity one, so triggers that fire while a tick is pending are
//!   coalesced (and counted) rather than queued without bound.
//! - A tick runs the stages level by level (a level's stages depend only on earlier
//!   levels); the stages of one level run concurrently as tokio tasks.
//! - Each stage gets its timeout and retries (with exponential backoff) from its options.
//!   A stage that still fails fails the tick: logged with its key and source position,
//!   recorded in the run history, counted in `/metrics`; the engine carries on.
//! - Cursors of collect stages are saved after each successful tick.
//! - Shutdown cancels the triggers and lets a running tick finish.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::metrics::Metrics;
use super::ops::{self, collect, BuildEnv};
use super::{OpCtx, OpError, Step};
use crate::check::{StageOpt, Trigger};
use crate::data::Data;
use crate::plan::{Plan, PipelinePlan};
use crate::source::SourceMap;
use crate::store::{RunRecord, Store};
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
    Store(#[from] crate::store::StoreError),
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
}

/// The last reload's outcome.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReloadStatus {
    pub outcome: String,
    pub at: String,
    pub version: String,
}

/// What `/api/v1/status` reports.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Status {
    pub version: String,
    pub pipelines: Vec<PipelineStatus>,
    pub stages: Vec<StageStatus>,
    pub last_reload: Option<ReloadStatus>,
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
    /// Incidents (the respond issue fills this in).
    pub incidents: Mutex<Vec<serde_json::Value>>,
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
    pub inputs: Vec<usize>,
    pub retries: u32,
    pub backoff_ms: u64,
    pub timeout_ms: Option<u64>,
    pub step: tokio::sync::Mutex<Step>,
}

/// A built pipeline.
pub struct PipelineRt {
    pub name: String,
    pub version: String,
    pub stages: Vec<Arc<StageRt>>,
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
pub fn build_pipeline(p: &PipelinePlan, sources: &SourceMap, version: &str, state_dir: Option<PathBuf>, queue: Option<collect::EventQueue>, generation: u64) -> Result<PipelineRt, RuntimeError> {
    let file = sources.get(p.span.source);
    let base_dir = file.path.as_ref().and_then(|f| f.parent().map(PathBuf::from)).unwrap_or_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| RuntimeError::Build { key: p.name.clone(), location: sources.location(p.span), source: ops::BuildError::Invalid(e.to_string()) })?;
    let env = BuildEnv { pipeline: p.name.clone(), base_dir, state_dir, client, webhook_queue: queue };
    let mut stages = Vec::with_capacity(p.stages.len());
    let mut level_of = vec![0usize; p.stages.len()];
    for (i, node) in p.stages.iter().enumerate() {
        let location = sources.location(node.span);
        let step = ops::build(node, &env).map_err(|source| RuntimeError::Build { key: node.key.0.clone(), location: location.clone(), source })?;
        let (mut retries, mut backoff_ms, mut timeout_ms) = (0, 1000, None);
        for o in &node.options {
            match o {
                StageOpt::Retry { attempts, backoff_ms: b } => (retries, backoff_ms) = (*attempts, *b),
                StageOpt::Timeout { ms } => timeout_ms = Some(*ms),
                _ => {}
            }
        }
        let inputs: Vec<usize> = node.inputs.iter().map(|(_, j)| *j).collect();
        level_of[i] = inputs.iter().map(|&j| level_of[j] + 1).max().unwrap_or(0);
        stages.push(Arc::new(StageRt {
            key: node.key.0.clone(),
            fingerprint: node.fingerprint.0.clone(),
            generation,
            kind: node.kind,
            operator: node.operator,
            location,
            inputs,
            retries,
            backoff_ms,
            timeout_ms,
            step: tokio::sync::Mutex::new(step),
        }));
    }
    let depth = level_of.iter().copied().max().map_or(0, |d| d + 1);
    let mut levels = vec![Vec::new(); depth];
    for (i, l) in level_of.iter().enumerate() {
        levels[*l].push(i);
    }
    Ok(PipelineRt { name: p.name.clone(), version: version.to_owned(), stages, levels, triggers: p.triggers.clone() })
}

/// Runs one stage with its timeout and retries.
async fn run_stage(stage: Arc<StageRt>, inputs: Vec<Data>, now: i64) -> (Result<Data, OpError>, OpCtx, f64) {
    let started = Instant::now();
    let mut step = stage.step.lock().await;
    let mut attempt = 0;
    loop {
        let mut ctx = OpCtx::new(now);
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
            r => return (r, ctx, started.elapsed().as_secs_f64()),
        }
    }
}

/// Runs one tick of a pipeline: every stage, level by level.
pub async fn run_tick(p: &PipelineRt, shared: &Shared, now: i64) -> TickReport {
    let n = p.stages.len();
    let mut outputs: Vec<Option<Data>> = vec![None; n];
    let mut items = 0;
    for level in &p.levels {
        let mut results = Vec::with_capacity(level.len());
        if level.len() == 1 {
            let i = level[0];
            let inputs = p.stages[i].inputs.iter().filter_map(|&j| outputs[j].clone()).collect();
            results.push((i, run_stage(p.stages[i].clone(), inputs, now).await));
        } else {
            let handles: Vec<_> = level
                .iter()
                .map(|&i| {
                    let inputs: Vec<Data> = p.stages[i].inputs.iter().filter_map(|&j| outputs[j].clone()).collect();
                    (i, tokio::spawn(run_stage(p.stages[i].clone(), inputs, now)))
                })
                .collect();
            for (i, h) in handles {
                match h.await {
                    Ok(r) => results.push((i, r)),
                    Err(e) => results.push((i, (Err(OpError::Invalid(format!("the stage panicked: {e}"))), OpCtx::new(now), 0.0))),
                }
            }
        }
        let mut failure = None;
        for (i, (result, ctx, secs)) in results {
            let stage = &p.stages[i];
            for (reason, count) in &ctx.skipped {
                shared.metrics.skipped(&p.name, &stage.key, reason, *count);
                tracing::warn!(pipeline = %p.name, stage = %stage.key, reason, count, "skipped invalid input records");
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
                    }
                    outputs[i] = Some(data);
                }
                Err(e) => {
                    shared.metrics.stage(&p.name, &stage.key, secs, 0, true);
                    tracing::error!(pipeline = %p.name, stage = %stage.key, at = %stage.location, error = %e, "stage failed; the tick fails");
                    failure.get_or_insert((stage.key.clone(), format!("{}: stage `{}`: {e}", stage.location, stage.key)));
                }
            }
        }
        if let Some((key, error)) = failure {
            return TickReport { ok: false, items, failed_stage: Some(key), error: Some(error), outputs };
        }
    }
    TickReport { ok: true, items, failed_stage: None, error: None, outputs }
}

/// The running engine.
pub struct Engine {
    pub shared: Arc<Shared>,
    store: Arc<dyn Store>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    pipelines: Vec<Arc<PipelineRt>>,
}

impl Engine {
    /// Builds every pipeline of a plan and starts their triggers. Starting is applying
    /// the plan to an engine with nothing running.
    ///
    /// # Errors
    /// A stage that cannot be built (nothing is started then), or a cursor that cannot be
    /// loaded.
    pub async fn start(plan: &Plan, sources: &SourceMap, version: &str, store: Arc<dyn Store>, state_dir: Option<PathBuf>) -> Result<Engine, RuntimeError> {
        let shared = Arc::new(Shared::default());
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let mut built = Vec::new();
        let mut routes = HashMap::new();
        for p in &plan.pipelines {
            let webhook = p.triggers.iter().find_map(|t| if let Trigger::Webhook { path } = t { Some(path.clone()) } else { None });
            let queue: Option<collect::EventQueue> = webhook.as_ref().map(|_| Arc::default());
            let rt = build_pipeline(p, sources, version, state_dir.clone(), queue.clone(), 1)?;
            // Resume collect stages from their saved cursors.
            for s in &rt.stages {
                if let Some(c) = store.load_cursor(&s.key).await? {
                    if let Step::Source(src) = &mut *s.step.lock().await {
                        src.restore(&c);
                    }
                }
            }
            let (tick_tx, tick_rx) = mpsc::channel::<()>(1);
            if let (Some(path), Some(queue)) = (webhook, queue) {
                let node = p.stages.iter().find(|s| s.operator == "webhook_events");
                let (format, max_body) = match node {
                    Some(n) => (
                        match n.params.get("format") {
                            Some(crate::value::Value::Str(f)) => f.clone(),
                            _ => "json".into(),
                        },
                        match n.params.get("max_body") {
                            Some(crate::value::Value::Int(i)) => (*i).max(1) as usize,
                            _ => 1 << 20,
                        },
                    ),
                    None => ("json".into(), 1 << 20),
                };
                routes.insert(path, WebhookRoute { pipeline: p.name.clone(), format, max_body, queue, tick: tick_tx.clone() });
            }
            let rt = Arc::new(rt);
            spawn_triggers(&rt, tick_tx, &shared, &cancel, &tracker)?;
            tracker.spawn(pipeline_loop(rt.clone(), tick_rx, shared.clone(), store.clone(), cancel.clone()));
            built.push(rt);
        }
        *shared.webhooks.write().unwrap_or_else(|e| e.into_inner()) = routes;
        *shared.status.write().unwrap_or_else(|e| e.into_inner()) = Status {
            version: version.to_owned(),
            pipelines: plan
                .pipelines
                .iter()
                .map(|p| PipelineStatus { name: p.name.clone(), triggers: p.triggers.clone(), stages: p.stages.iter().map(|s| s.key.0.clone()).collect() })
                .collect(),
            stages: built
                .iter()
                .flat_map(|p| {
                    p.stages.iter().map(|s| StageStatus { key: s.key.clone(), fingerprint: s.fingerprint.clone(), generation: s.generation, pipeline: p.name.clone(), kind: s.kind, operator: s.operator.to_owned() })
                })
                .collect(),
            last_reload: Some(ReloadStatus { outcome: "applied".into(), at: crate::time::format_rfc3339(crate::time::now_ms()), version: version.to_owned() }),
        };
        shared.metrics.reload("applied");
        Ok(Engine { shared, store, cancel, tracker, pipelines: built })
    }

    /// The running pipelines.
    pub fn pipelines(&self) -> &[Arc<PipelineRt>] {
        &self.pipelines
    }

    /// A token cancelled when the engine shuts down.
    pub fn cancellation(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Stops the triggers and waits (at most `grace`) for running ticks to finish.
    /// Returns whether everything finished in time.
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.cancel.cancel();
        self.tracker.close();
        let done = tokio::time::timeout(grace, self.tracker.wait()).await.is_ok();
        if !done {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "ticks still running at shutdown; stopping anyway");
        }
        drop(self.store);
        done
    }
}

fn spawn_triggers(p: &Arc<PipelineRt>, tick: mpsc::Sender<()>, shared: &Arc<Shared>, cancel: &CancellationToken, tracker: &TaskTracker) -> Result<(), RuntimeError> {
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
                let cron = croner::parser::CronParser::new().parse(schedule).map_err(|e| RuntimeError::Cron(schedule.clone(), e.to_string()))?;
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
async fn pipeline_loop(p: Arc<PipelineRt>, mut ticks: mpsc::Receiver<()>, shared: Arc<Shared>, store: Arc<dyn Store>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            t = ticks.recv() => if t.is_none() { break },
        }
        // A tick that has started runs to the end, even during shutdown.
        let started_at = crate::time::now_ms();
        let clock = Instant::now();
        let report = run_tick(&p, &shared, started_at).await;
        let secs = clock.elapsed().as_secs_f64();
        shared.metrics.tick(&p.name, report.ok, secs);
        if report.ok {
            let mut cursors = Vec::new();
            for s in &p.stages {
                if s.kind == StageKind::Collect {
                    if let Step::Source(src) = &*s.step.lock().await {
                        if let Some(c) = src.cursor() {
                            cursors.push((s.key.clone(), c));
                        }
                    }
                }
            }
            if let Err(e) = store.save_cursors(&cursors).await {
                tracing::error!(pipeline = %p.name, error = %e, "cannot save cursors");
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
}
