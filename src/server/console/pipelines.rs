//! The pipelines pages: the list (status, last tick, errors, version, reloads with their
//! diagnostics) and each pipeline's DAG, drawn as inline SVG laid out in layers.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::session::Page;
use crate::engine::Shared;
use crate::server::read;

/// `GET /ui/`: the running pipelines and the reloads.
pub async fn list(State(shared): State<Arc<Shared>>, page: Page) -> Response {
    let Page { console, viewer: v, started } = page;
    let pipelines = read::pipelines(&shared).await;
    let status = shared.status.read().map(|s| s.clone()).unwrap_or_default();
    let reloads: Vec<_> = status.reloads.iter().rev().take(10).cloned().collect();
    let ctx = serde_json::json!({
        "page": "pipelines",
        "title": "Pipelines",
        "pipelines": pipelines,
        "version": status.version,
        "last_reload": status.last_reload,
        "reloads": reloads,
    });
    console.render("pipelines.html", &v, ctx, started)
}

/// Node size and gaps of the drawn graph, in SVG units.
const NODE_W: usize = 180;
const NODE_H: usize = 52;
const GAP_X: usize = 64;
const GAP_Y: usize = 22;
const MARGIN: usize = 12;

/// `GET /ui/pipelines/{name}` (`?stage=KEY` opens a stage's panel).
pub async fn show(
    State(shared): State<Arc<Shared>>,
    page: Page,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Page { console, viewer: v, started } = page;
    let Some(graph) = read::graph(&shared, &name) else {
        return console.error(&v, StatusCode::NOT_FOUND, format!("no pipeline `{name}` runs here"), started);
    };
    let pos = |level: usize, row: usize| (MARGIN + level * (NODE_W + GAP_X), MARGIN + row * (NODE_H + GAP_Y));
    let at: HashMap<&str, (usize, usize)> = graph.nodes.iter().map(|n| (n.stage.key.as_str(), pos(n.level, n.row))).collect();
    let nodes: Vec<serde_json::Value> = graph
        .nodes
        .iter()
        .map(|n| {
            let (x, y) = pos(n.level, n.row);
            let short = n.stage.key.strip_prefix(&format!("{name}.")).unwrap_or(&n.stage.key).to_owned();
            serde_json::json!({
                "key": n.stage.key, "short": short, "kind": n.stage.kind, "operator": n.stage.operator, "via": n.stage.via,
                "x": x, "y": y, "errors": n.stats.errors, "runs": n.stats.runs,
                "selected": q.get("stage") == Some(&n.stage.key),
            })
        })
        .collect();
    let edges: Vec<serde_json::Value> = graph
        .edges
        .iter()
        .filter_map(|(from, to)| {
            let ((x1, y1), (x2, y2)) = (at.get(from.as_str())?, at.get(to.as_str())?);
            let (sx, sy, ex, ey) = (x1 + NODE_W, y1 + NODE_H / 2, *x2, y2 + NODE_H / 2);
            let mid = (sx + ex) / 2;
            Some(serde_json::json!({ "from": from, "to": to, "d": format!("M{sx},{sy} C{mid},{sy} {mid},{ey} {ex},{ey}") }))
        })
        .collect();
    let selected = q.get("stage").and_then(|k| graph.nodes.iter().find(|n| &n.stage.key == k));
    if let (Some(k), None) = (q.get("stage"), selected) {
        return console.error(&v, StatusCode::NOT_FOUND, format!("pipeline `{name}` has no stage `{k}`"), started);
    }
    let firing = crate::server::list_incidents(
        &shared.responder.read().unwrap_or_else(|e| e.into_inner()).clone(),
        &crate::server::IncidentFilter { pipeline: Some(name.clone()), status: Some("firing".into()), ..Default::default() },
    )
    .map(|l| l.len())
    .unwrap_or(0);
    let ctx = serde_json::json!({
        "page": "pipelines",
        "title": format!("Pipeline {name}"),
        "name": name,
        "graph": graph,
        "nodes": nodes,
        "edges": edges,
        "width": MARGIN * 2 + graph.levels.max(1) * (NODE_W + GAP_X) - GAP_X,
        "height": MARGIN * 2 + graph.rows.max(1) * (NODE_H + GAP_Y) - GAP_Y,
        "node_w": NODE_W,
        "node_h": NODE_H,
        "selected": selected,
        "score_threshold": selected.and_then(|n| read::score_threshold(&n.stage)),
        "firing": firing,
    });
    console.render("pipeline.html", &v, ctx, started)
}
