//! The HTTP API and `/metrics` (axum), bound to loopback unless told otherwise.
//!
//! - `GET /healthz`: `ok`.
//! - `GET /metrics`: the Prometheus text format 0.0.4.
//! - `GET /api/v1/status`: version, pipelines, stages (`key`, `fingerprint`, `generation`),
//!   `last_reload`.
//! - `GET /api/v1/incidents`: a JSON list.
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

async fn incidents(State(shared): State<Arc<Shared>>) -> Response {
    let list = shared.incidents.lock().map(|l| l.clone()).unwrap_or_default();
    Json(list).into_response()
}

/// Compares in time independent of where the strings differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn reload(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let token = shared.api_token.read().ok().and_then(|t| t.clone());
    let Some(token) = token else {
        return error(StatusCode::FORBIDDEN, "the reload API is disabled: start vigil with VIGIL_API_TOKEN set");
    };
    let given =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    if !same_secret(given, &token) {
        return error(StatusCode::UNAUTHORIZED, "a valid `Authorization: Bearer <token>` is required");
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
