//! `/ui/situations`: the situations of the `correlate` stages (docs/correlation.md) —
//! incidents grouped into one cascade each, with its probable origin, its members and why
//! each joined, its timeline, and the incident that pages for it. Read only: acting on a
//! situation is acting on that incident.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::session::Page;
use crate::engine::Shared;

/// `GET /ui/situations` (`?status=open|closed`).
pub async fn list(State(shared): State<Arc<Shared>>, page: Page, Query(q): Query<HashMap<String, String>>) -> Response {
    let Page { console, viewer: v, started } = page;
    let status = q.get("status").map(String::as_str).filter(|s| !s.is_empty());
    match super::super::list_situations(&shared, status) {
        Ok(rows) => {
            let ctx = serde_json::json!({ "page": "situations", "title": "Situations", "rows": rows, "status": status.unwrap_or("") });
            console.render("situations.html", &v, ctx, started)
        }
        Err(e) => console.error(&v, StatusCode::BAD_REQUEST, e, started),
    }
}

/// `GET /ui/situations/{id}`.
pub async fn show(State(shared): State<Arc<Shared>>, page: Page, Path(id): Path<String>) -> Response {
    let Page { console, viewer: v, started } = page;
    match super::super::situation_story(&shared, &id) {
        Some(s) => {
            let reasons: Vec<String> = s["members"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .map(|m| {
                            serde_json::from_value::<crate::correlate::JoinReason>(m["reason"].clone())
                                .map(|r| crate::runtime::ops::correlate::reason_text(&r))
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .unwrap_or_default();
            let ctx = serde_json::json!({ "page": "situations", "title": format!("Situation {id}"), "s": s, "reasons": reasons });
            console.render("situation.html", &v, ctx, started)
        }
        None => console.error(&v, StatusCode::NOT_FOUND, format!("no situation `{id}`"), started),
    }
}
