//! The HTTP API and `/metrics` (axum), bound to loopback unless told otherwise.
//!
//! - `GET /healthz`: `ok`.
//! - `GET /metrics`: the Prometheus text format 0.0.4.
//! - `GET /api/v1/status`: version, pipelines, stages (`key`, `fingerprint`, `generation`),
//!   `last_reload`.
//! - `GET /api/v1/incidents`: a JSON list, newest first (`?status=firing|resolved`);
//!   `GET /api/v1/incidents/{id}`: one incident with its audit trail and notifications.
//! - `POST /api/v1/incidents/{id}/ack`, `/resolve` (body optional: `{"by": "alice"}`) and
//!   `/feedback` (`{"verdict": "true_positive"|"false_positive", "note": "..."}`).
//! - `GET /api/v1/silences`; `POST /api/v1/silences`
//!   (`{"matchers": {"label": "value"}, "duration": "2h"` or `"ends_at": RFC 3339,
//!   optional `"starts_at"`, `"comment"`, `"created_by"`}); `POST
//!   /api/v1/silences/{id}/expire`.
//! - Every POST needs `Authorization: Bearer <token>` (the token in `VIGIL_API_TOKEN`,
//!   compared in constant time); without a configured token they are disabled (403).
//! - `POST /api/v1/reload`: recompiles and applies the sources; answers the reload's
//!   outcome. Needs `Authorization: Bearer <token>` with the token in `VIGIL_API_TOKEN`;
//!   without a configured token the endpoint is disabled (403).
//! - `POST <path>` for each `on webhook "<path>"` trigger: the body becomes events for the
//!   pipeline's `webhook_events` stage and fires a tick. Answers 202 with the number of
//!   events accepted, 400 for a body that cannot be read, 413 above the stage's
//!   `max_body`, 503 when the pipeline's queue is full.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::runtime::engine::Shared;
use crate::runtime::ops::collect;

/// The router over the engine's shared state.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/incidents", get(incidents))
        .route("/api/v1/incidents/{id}", get(incident))
        .route("/api/v1/incidents/{id}/{action}", axum::routing::post(incident_action))
        .route("/api/v1/silences", get(silences).post(add_silence))
        .route("/api/v1/silences/{id}/expire", axum::routing::post(expire_silence))
        .route("/api/v1/reload", axum::routing::post(reload))
        .fallback(webhook)
        .with_state(shared)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let version = shared.status.read().map(|s| s.version.clone()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], shared.metrics.render(&version)).into_response()
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    let s = shared.status.read().map(|s| s.clone()).unwrap_or_default();
    Json(s).into_response()
}

fn responder(shared: &Shared) -> Arc<crate::respond::Responder> {
    shared.responder.read().unwrap_or_else(|e| e.into_inner()).clone()
}

async fn incidents(
    State(shared): State<Arc<Shared>>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let mut list = responder(&shared).list();
    if let Some(status) = q.get("status") {
        list.retain(|i| &i.status == status);
    }
    Json(list).into_response()
}

async fn incident(State(shared): State<Arc<Shared>>, axum::extract::Path(id): axum::extract::Path<String>) -> Response {
    let r = responder(&shared);
    let Some(i) = r.get(&id) else { return error(StatusCode::NOT_FOUND, format!("no incident `{id}`")) };
    let (audit, notifications) = match r.store() {
        Some(store) => {
            let audit = store.audit_of(&id).await.unwrap_or_default();
            let outbox: Vec<_> =
                store.outbox(10_000).await.unwrap_or_default().into_iter().filter(|o| o.notification.incident_id == id).collect();
            let notes: Vec<serde_json::Value> = outbox
                .iter()
                .map(|o| {
                    serde_json::json!({ "id": o.id, "channel": o.notification.channel, "transition": o.notification.transition,
                        "status": o.status, "attempts": o.attempts, "last_error": o.last_error, "sent_at": o.sent_at })
                })
                .collect();
            (audit, notes)
        }
        None => (Vec::new(), Vec::new()),
    };
    Json(serde_json::json!({ "incident": i, "audit": audit, "notifications": notifications })).into_response()
}

/// Checks the bearer token of a mutating call; the error response when it fails.
fn authorize(shared: &Shared, headers: &axum::http::HeaderMap) -> Result<(), Response> {
    let token = shared.api_token.read().ok().and_then(|t| t.clone());
    let Some(token) = token else {
        return Err(error(StatusCode::FORBIDDEN, "mutating API calls are disabled: start vigil with VIGIL_API_TOKEN set"));
    };
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    if same_secret(given, &token) {
        Ok(())
    } else {
        Err(error(StatusCode::UNAUTHORIZED, "a valid `Authorization: Bearer <token>` is required"))
    }
}

/// Bodies of API calls are small.
const API_BODY: usize = 64 * 1024;

async fn json_body(req: Request) -> Result<serde_json::Value, Response> {
    let bytes = axum::body::to_bytes(req.into_body(), API_BODY)
        .await
        .map_err(|_| error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {API_BODY} bytes")))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::json!({}));
    }
    serde_json::from_slice(&bytes).map_err(|e| error(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")))
}

async fn incident_action(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path((id, action)): axum::extract::Path<(String, String)>,
    req: Request,
) -> Response {
    if let Err(r) = authorize(&shared, req.headers()) {
        return r;
    }
    let body = match json_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let r = responder(&shared);
    let by = body.get("by").and_then(|v| v.as_str()).unwrap_or("api").to_owned();
    let result = match action.as_str() {
        "ack" => r.acknowledge(&id, &by).await,
        "resolve" => r.resolve(&id, &by).await,
        "feedback" => {
            let verdict = body.get("verdict").and_then(|v| v.as_str()).unwrap_or("").to_owned();
            let note = body.get("note").and_then(|v| v.as_str()).map(str::to_owned);
            r.feedback(&id, &verdict, note).await
        }
        other => return error(StatusCode::NOT_FOUND, format!("no action `{other}`; use ack, resolve or feedback")),
    };
    match result {
        Ok(i) => Json(i).into_response(),
        Err(e) if e.starts_with("no incident") => error(StatusCode::NOT_FOUND, e),
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

async fn silences(State(shared): State<Arc<Shared>>) -> Response {
    Json(responder(&shared).silences()).into_response()
}

async fn add_silence(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    if let Err(r) = authorize(&shared, req.headers()) {
        return r;
    }
    let body = match json_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let now = crate::time::now_ms();
    let time = |k: &str| -> Result<Option<i64>, Response> {
        match body.get(k).and_then(|v| v.as_str()) {
            None => Ok(None),
            Some(t) => crate::time::parse_timestamp(t)
                .map(Some)
                .ok_or_else(|| error(StatusCode::BAD_REQUEST, format!("`{k}` is not a timestamp: `{t}`"))),
        }
    };
    let starts_at = match time("starts_at") {
        Ok(t) => t.unwrap_or(now),
        Err(r) => return r,
    };
    let ends_at = match (time("ends_at"), body.get("duration").and_then(|v| v.as_str())) {
        (Err(r), _) => return r,
        (Ok(Some(t)), _) => t,
        (Ok(None), Some(d)) => match crate::time::parse_duration(d) {
            Some(ms) => starts_at.saturating_add(ms),
            None => return error(StatusCode::BAD_REQUEST, format!("`duration` is not a duration such as 2h: `{d}`")),
        },
        (Ok(None), None) => return error(StatusCode::BAD_REQUEST, "a silence needs `duration` (such as \"2h\") or `ends_at`"),
    };
    let matchers: std::collections::BTreeMap<String, String> = match body.get("matchers").and_then(|m| m.as_object()) {
        Some(m) => m.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect(),
        None => return error(StatusCode::BAD_REQUEST, "a silence needs `matchers`: {\"label\": \"value\"}"),
    };
    let s = crate::respond::Silence {
        id: 0,
        matchers,
        comment: body.get("comment").and_then(|v| v.as_str()).unwrap_or("").to_owned(),
        created_by: body.get("created_by").and_then(|v| v.as_str()).unwrap_or("api").to_owned(),
        starts_at,
        ends_at,
        created_at: now,
    };
    match responder(&shared).add_silence(s).await {
        Ok(s) => (StatusCode::CREATED, Json(s)).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn expire_silence(State(shared): State<Arc<Shared>>, axum::extract::Path(id): axum::extract::Path<i64>, req: Request) -> Response {
    if let Err(r) = authorize(&shared, req.headers()) {
        return r;
    }
    match responder(&shared).expire_silence(id).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, e),
    }
}

/// Compares in time independent of where the strings differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn reload(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    if let Err(r) = authorize(&shared, req.headers()) {
        return r;
    }
    let tx = shared.reload.read().ok().and_then(|t| t.clone());
    let Some(tx) = tx else { return error(StatusCode::SERVICE_UNAVAILABLE, "reloading is not available") };
    let (reply, answer) = tokio::sync::oneshot::channel();
    if tx.send(crate::runtime::reload::ReloadRequest { reason: "api", reply: Some(reply) }).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "reloading is not available");
    }
    match tokio::time::timeout(std::time::Duration::from_secs(60), answer).await {
        Ok(Ok(Some(status))) => Json(status).into_response(),
        Ok(Ok(None)) => Json(serde_json::json!({ "outcome": "unchanged" })).into_response(),
        _ => error(StatusCode::GATEWAY_TIMEOUT, "the reload did not finish in time"),
    }
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

async fn webhook(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let route = shared.webhooks.read().ok().and_then(|w| w.get(&path).cloned());
    let Some(route) = route else {
        return error(StatusCode::NOT_FOUND, format!("no route `{path}`"));
    };
    if req.method() != Method::POST {
        return error(StatusCode::METHOD_NOT_ALLOWED, "webhooks take POST");
    }
    let answer = |code: StatusCode, r: Response| {
        shared.metrics.webhook(&path, code.as_u16());
        r
    };
    let body = match axum::body::to_bytes(Body::new(req.into_body()), route.max_body).await {
        Ok(b) => b,
        Err(_) => {
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {} bytes", route.max_body)),
            )
        }
    };
    let events = match collect::parse_webhook(&route.format, &body, crate::time::now_ms()) {
        Ok(e) => e,
        Err(why) => {
            tracing::warn!(path = %path, pipeline = %route.pipeline, reason = %why, "refused a webhook request");
            return answer(StatusCode::BAD_REQUEST, error(StatusCode::BAD_REQUEST, why));
        }
    };
    let n = events.len();
    {
        let Ok(mut q) = route.queue.lock() else { return error(StatusCode::INTERNAL_SERVER_ERROR, "queue unavailable") };
        if q.len() + n > collect::MAX_QUEUED_EVENTS {
            drop(q);
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                error(StatusCode::SERVICE_UNAVAILABLE, "the pipeline's queue is full; retry later"),
            );
        }
        q.extend(events);
    }
    if let Err(tokio::sync::mpsc::error::TrySendError::Full(())) = route.tick.try_send(()) {
        shared.metrics.coalesced(&route.pipeline);
    }
    answer(StatusCode::ACCEPTED, (StatusCode::ACCEPTED, Json(serde_json::json!({ "accepted": n }))).into_response())
}
