//! The models page: the registry's versions per train stage and series, their metrics,
//! which one is active; promote a version, roll a series back.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::session::{Action, Page};
use crate::engine::Shared;
use crate::server::read;

/// `GET /ui/models`.
pub async fn list(State(shared): State<Arc<Shared>>, page: Page) -> Response {
    let Page { console, viewer: v, started } = page;
    let rows = match read::models(&shared, None).await {
        Ok(r) => r,
        Err(e) => return console.error(&v, StatusCode::INTERNAL_SERVER_ERROR, e.to_string(), started),
    };
    // Stage → series → versions, newest version first.
    let mut groups: BTreeMap<String, BTreeMap<String, Vec<crate::store::ModelRow>>> = BTreeMap::new();
    for r in rows {
        groups.entry(r.meta.key.clone()).or_default().entry(r.meta.series.clone()).or_default().push(r);
    }
    let stages: Vec<serde_json::Value> = groups
        .into_iter()
        .map(|(stage, series)| {
            let series: Vec<serde_json::Value> = series
                .into_iter()
                .map(|(name, mut versions)| {
                    versions.reverse();
                    serde_json::json!({ "name": name, "versions": versions })
                })
                .collect();
            serde_json::json!({ "stage": stage, "series": series })
        })
        .collect();
    let train_stages: Vec<String> = shared
        .status
        .read()
        .map(|s| s.stages.iter().filter(|s| s.kind == crate::syntax::ast::StageKind::Train).map(|s| s.key.clone()).collect())
        .unwrap_or_default();
    let ctx = serde_json::json!({ "page": "models", "title": "Models", "stages": stages, "train_stages": train_stages });
    console.render("models.html", &v, ctx, started)
}

/// `POST /ui/models/{id}/promote`.
pub async fn promote(State(shared): State<Arc<Shared>>, Path(id): Path<String>, action: Action) -> Response {
    let Action { console, viewer: v, token, form: _, started } = action;
    let Ok(id) = id.parse::<i64>() else { return console.error(&v, StatusCode::NOT_FOUND, format!("no model version `{id}`"), started) };
    let by = crate::server::by_whom(v.person.as_deref(), Some(&token), "console");
    match read::promote_model(&shared, id, &by).await {
        Ok(()) => {
            tracing::info!(model = id, token = %token, "model promoted through the console");
            super::see_other("/ui/models")
        }
        Err((code, e)) => console.error(&v, code, e, started),
    }
}

/// `POST /ui/models/rollback` (`stage`, optional `series`).
pub async fn rollback(State(shared): State<Arc<Shared>>, action: Action) -> Response {
    let Action { console, viewer: v, token, form, started } = action;
    let Some(stage) = form.get("stage").filter(|s| !s.is_empty()) else {
        return console.error(&v, StatusCode::BAD_REQUEST, "a rollback needs a train stage", started);
    };
    let by = crate::server::by_whom(v.person.as_deref(), Some(&token), "console");
    match read::rollback_models(&shared, stage, form.get("series").map(String::as_str).filter(|s| !s.is_empty()), &by).await {
        Ok(_) => {
            tracing::info!(stage = %stage, token = %token, "models rolled back through the console");
            super::see_other("/ui/models")
        }
        Err((code, e)) => console.error(&v, code, e, started),
    }
}
