//! The live scores page: series with recent scores, searchable by label, and a chart of
//! one series — its values with the detector's expected value and band, its scores with
//! the threshold, anomalous samples and incidents shaded — refreshed every 2 s from
//! `/ui/scores/data` (the data of `GET /api/v1/scores`, under the console's session).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::session::{self, Page};
use super::Console;
use crate::engine::Shared;
use crate::server::read;

/// Series listed at most on the page (the search narrows them).
const LISTED: usize = 200;

/// Whether a series matches the search: every word is `label=value` (equal), or text
/// found in the series or its stage.
fn matches(search: &str, stage: &str, series: &str) -> bool {
    search.split_whitespace().all(|word| match word.split_once('=') {
        Some((name, value)) => {
            let quoted = format!("{name}=\"{value}\"");
            series.contains(&quoted) || (name == "stage" && stage == value) || (name == "__name__" && series.starts_with(value))
        }
        None => series.contains(word) || stage.contains(word),
    })
}

/// `GET /ui/scores` (`?q=` search, `?stage=&series=` the chart).
pub async fn page(State(shared): State<Arc<Shared>>, page: Page, Query(q): Query<HashMap<String, String>>) -> Response {
    let Page { console, viewer: v, started } = page;
    let search = q.get("q").map(|s| s.trim().to_owned()).unwrap_or_default();
    let all = shared.recent.series(None);
    let total = all.len();
    let found: Vec<_> = all.into_iter().filter(|s| matches(&search, &s.stage, &s.series)).collect();
    let shown: Vec<_> = found.iter().take(LISTED).cloned().collect();
    let chart = match (q.get("stage"), q.get("series")) {
        (Some(stage), Some(series)) => {
            let status = shared.status.read().map(|s| s.clone()).unwrap_or_default();
            let threshold = status.stages.iter().find(|s| &s.key == stage).and_then(read::score_threshold);
            if shared.recent.points(stage, series, None).is_none() {
                return console.error(&v, StatusCode::NOT_FOUND, format!("no recent scores of `{series}` in stage `{stage}`"), started);
            }
            Some(serde_json::json!({ "stage": stage, "series": series, "threshold": threshold }))
        }
        _ => None,
    };
    let ctx = serde_json::json!({
        "page": "scores",
        "title": "Live scores",
        "q": search,
        "series": shown,
        "found": found.len(),
        "total": total,
        "listed": LISTED,
        "chart": chart,
    });
    console.render("scores.html", &v, ctx, started)
}

/// `GET /ui/scores/data?stage=&series=`: the series' recent points, its threshold and
/// the incidents it opened (for shading), as JSON.
pub async fn data(
    State(shared): State<Arc<Shared>>,
    Extension(console): Extension<Arc<Console>>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    let v = session::viewer(&console, &shared, req.headers());
    let rules = shared.access.read().map(|a| a.read_auth).unwrap_or(true);
    if rules && v.role.is_none() {
        return (StatusCode::UNAUTHORIZED, Json(serde_json::json!({ "error": "log in to read scores" }))).into_response();
    }
    let (Some(stage), Some(series)) = (q.get("stage"), q.get("series")) else {
        return (StatusCode::BAD_REQUEST, Json(serde_json::json!({ "error": "`stage` and `series` are needed" }))).into_response();
    };
    let Some(points) = shared.recent.points(stage, series, None) else {
        return (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": format!("no recent scores of `{series}` in `{stage}`") })))
            .into_response();
    };
    let r = shared.responder.read().unwrap_or_else(|e| e.into_inner()).clone();
    let from = points.first().map_or(0, |p| p.ts);
    let incidents: Vec<serde_json::Value> = r
        .list()
        .into_iter()
        .filter(|i| i.series.iter().any(|s| s == series) && i.resolved_at.is_none_or(|t| t >= from))
        .map(|i| serde_json::json!({ "id": i.id, "status": i.status, "opened_at": i.opened_at, "resolved_at": i.resolved_at }))
        .collect();
    Json(serde_json::json!({ "stage": stage, "series": series, "points": points, "incidents": incidents })).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn search_by_label_or_text() {
        let s = "synthetic_value{series=\"1\"}";
        assert!(super::matches("", "demo.scores", s));
        assert!(super::matches("series=1", "demo.scores", s));
        assert!(!super::matches("series=2", "demo.scores", s));
        assert!(super::matches("synthetic stage=demo.scores", "demo.scores", s));
        assert!(!super::matches("checkout", "demo.scores", s));
    }
}
