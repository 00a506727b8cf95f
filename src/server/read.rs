//! What the JSON API and the web console both read, computed once: a pipeline's graph,
//! the stage panels (parameters, latency, errors) and the model registry's versions.
//! The API serialises these; the console renders them.

use std::collections::BTreeMap;

use crate::engine::{Shared, StageStatus};
use crate::runtime::metrics::{StageStats, TickStats};

/// A stage of a pipeline's graph, placed in layers: `level` is one more than the
/// deepest of its inputs (sources at 0), `row` its place within the level.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GraphNode {
    #[serde(flatten)]
    pub stage: StageStatus,
    pub level: usize,
    pub row: usize,
    pub stats: StageStats,
}

/// A pipeline's DAG as `GET /api/v1/pipelines/{name}/graph` gives it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Graph {
    pub pipeline: String,
    pub nodes: Vec<GraphNode>,
    /// `(from, to)` stage keys.
    pub edges: Vec<(String, String)>,
    /// How many levels (columns), and the most stages in one level (rows).
    pub levels: usize,
    pub rows: usize,
}

/// The graph of pipeline `name` as it runs; `None` when no such pipeline runs.
pub fn graph(shared: &Shared, name: &str) -> Option<Graph> {
    let status = shared.status.read().ok()?;
    if !status.pipelines.iter().any(|p| p.name == name) {
        return None;
    }
    // Stages in the status come in plan order (inputs before the stages they feed).
    let stages: Vec<StageStatus> = status.stages.iter().filter(|s| s.pipeline == name).cloned().collect();
    drop(status);
    let mut level: BTreeMap<&str, usize> = BTreeMap::new();
    let mut rows_in: Vec<usize> = Vec::new();
    let mut placed = Vec::with_capacity(stages.len());
    for s in &stages {
        let l = s.inputs.iter().filter_map(|i| level.get(i.as_str())).map(|l| l + 1).max().unwrap_or(0);
        level.insert(s.key.as_str(), l);
        if rows_in.len() <= l {
            rows_in.resize(l + 1, 0);
        }
        placed.push((l, rows_in[l]));
        rows_in[l] += 1;
    }
    let edges = stages.iter().flat_map(|s| s.inputs.iter().map(move |i| (i.clone(), s.key.clone()))).collect();
    let nodes = stages
        .iter()
        .zip(placed)
        .map(|(s, (level, row))| GraphNode { stats: shared.metrics.stage_stats(name, &s.key), stage: s.clone(), level, row })
        .collect();
    Some(Graph { pipeline: name.to_owned(), nodes, edges, levels: rows_in.len(), rows: rows_in.iter().copied().max().unwrap_or(0) })
}

/// A running pipeline as the console's list shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PipelineSummary {
    pub name: String,
    pub triggers: Vec<String>,
    pub stages: usize,
    pub ticks: TickStats,
    /// Stage failures over all its stages.
    pub errors: u64,
    /// The last tick recorded in the run history.
    pub last_run: Option<crate::store::RunRecord>,
    /// Firing incidents.
    pub firing: usize,
}

/// Every running pipeline with its ticks, errors, last run and firing incidents.
pub async fn pipelines(shared: &Shared) -> Vec<PipelineSummary> {
    let status = shared.status.read().map(|s| s.clone()).unwrap_or_default();
    let r = shared.responder.read().unwrap_or_else(|e| e.into_inner()).clone();
    let incidents = r.list();
    let mut out = Vec::with_capacity(status.pipelines.len());
    for p in &status.pipelines {
        let last_run = match shared.store() {
            Some(store) => store.recent_runs(&p.name, 1).await.ok().and_then(|mut v| v.pop()),
            None => None,
        };
        out.push(PipelineSummary {
            name: p.name.clone(),
            triggers: p.triggers.iter().map(trigger_text).collect(),
            stages: p.stages.len(),
            ticks: shared.metrics.tick_stats(&p.name),
            errors: p.stages.iter().map(|s| shared.metrics.stage_stats(&p.name, s).errors).sum(),
            last_run,
            firing: incidents.iter().filter(|i| i.pipeline == p.name && i.status == "firing").count(),
        });
    }
    out
}

/// A trigger as the language writes it: `every 1s`, `cron "0 * * * *"`, `on webhook "/x"`.
pub fn trigger_text(t: &crate::check::Trigger) -> String {
    match t {
        crate::check::Trigger::Every { ms } => format!("every {}", crate::time::format_duration_ms(i64::try_from(*ms).unwrap_or(i64::MAX))),
        crate::check::Trigger::Cron { schedule } => format!("cron {schedule:?}"),
        crate::check::Trigger::Webhook { path } => format!("on webhook {path:?}"),
    }
}

/// The model versions of the registry (of one train stage, or all), oldest first per
/// (stage, series); empty without a store.
///
/// # Errors
/// When the store cannot be read.
pub async fn models(shared: &Shared, stage: Option<&str>) -> Result<Vec<crate::store::ModelRow>, crate::store::StoreError> {
    match shared.store() {
        Some(store) => store.models(stage).await,
        None => Ok(Vec::new()),
    }
}

/// Makes model version `id` the active one of its (stage, series): `vigil models promote`.
/// The running engine switches to it within 10 s.
///
/// # Errors
/// No such version (404), or the store failed (500), with a message.
pub async fn promote_model(shared: &Shared, id: i64, by: &str) -> Result<(), (axum::http::StatusCode, String)> {
    use axum::http::StatusCode;
    let r = shared.responder.read().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(store) = shared.store() else { return Err((StatusCode::SERVICE_UNAVAILABLE, "this engine has no model registry".into())) };
    let models = r.state_dir.as_ref().map(|d| d.join("models"));
    match crate::learn::registry::promote(store.as_ref(), models.as_deref(), id, by).await {
        Ok(true) => Ok(()),
        Ok(false) => Err((StatusCode::NOT_FOUND, format!("no model version with id {id}"))),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// Rolls a train stage's series (or one of them) back to their previous versions:
/// `vigil models rollback`.
///
/// # Errors
/// A stage without models (404), or the store failed (500), with a message.
pub async fn rollback_models(
    shared: &Shared,
    stage: &str,
    series: Option<&str>,
    by: &str,
) -> Result<Vec<crate::learn::registry::RolledBack>, (axum::http::StatusCode, String)> {
    use axum::http::StatusCode;
    let Some(store) = shared.store() else { return Err((StatusCode::SERVICE_UNAVAILABLE, "this engine has no model registry".into())) };
    let internal = |e: crate::store::StoreError| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    if store.models(Some(stage)).await.map_err(internal)?.is_empty() {
        return Err((StatusCode::NOT_FOUND, format!("stage `{stage}` has no models")));
    }
    crate::learn::registry::rollback(store.as_ref(), stage, series, by).await.map_err(internal)
}

/// The score threshold of a detector's scores, where the operator defines one: z-score
/// detectors map |z| = threshold to 0.5; `novelty` and `threshold` compare the score to
/// their `threshold` parameter.
pub fn score_threshold(stage: &StageStatus) -> Option<f64> {
    match stage.operator.as_str() {
        "zscore" => Some(0.5),
        "novelty" => stage.params.get("threshold").and_then(|t| t.parse().ok()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{PipelineStatus, Status};
    use crate::syntax::ast::StageKind;

    fn stage(key: &str, kind: StageKind, inputs: &[&str]) -> StageStatus {
        StageStatus {
            key: key.into(),
            fingerprint: "f".into(),
            generation: 1,
            pipeline: "p".into(),
            kind,
            operator: "zscore".into(),
            inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
            location: "p.vigil:1:1".into(),
            via: None,
            params: BTreeMap::new(),
        }
    }

    #[test]
    fn graphs_are_laid_out_in_levels() {
        let shared = Shared::default();
        *shared.status.write().unwrap() = Status {
            pipelines: vec![PipelineStatus { name: "p".into(), triggers: Vec::new(), stages: Vec::new() }],
            stages: vec![
                stage("p.a", StageKind::Collect, &[]),
                stage("p.b", StageKind::Collect, &[]),
                stage("p.c", StageKind::Predict, &["p.a"]),
                stage("p.d", StageKind::Respond, &["p.c", "p.b"]),
            ],
            ..Status::default()
        };
        let g = graph(&shared, "p").unwrap();
        let at: Vec<(usize, usize)> = g.nodes.iter().map(|n| (n.level, n.row)).collect();
        assert_eq!(at, [(0, 0), (0, 1), (1, 0), (2, 0)]);
        assert_eq!((g.levels, g.rows), (3, 2));
        assert_eq!(g.edges.len(), 3);
        assert!(graph(&shared, "nope").is_none());
        assert_eq!(score_threshold(&g.nodes[2].stage), Some(0.5));
    }
}
