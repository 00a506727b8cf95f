//! The HTTP API and `/metrics` (axum), bound to loopback unless told otherwise.
//!
//! - `GET /healthz`: `ok`. `GET /readyz`: 200 once pipelines run, else 503 (neither needs
//!   a token).
//! - `GET /metrics`: the Prometheus text format 0.0.4 (in a cluster, `vigil_cluster_*`
//!   too: nodes, their versions and pipelines, skew, NATS up).
//! - `GET /api/v1/status`: version, pipelines, stages (`key`, `fingerprint`, `generation`),
//!   `last_reload`; in a cluster, `cluster`: this node's name, whether NATS answers
//!   (`coordination`: `ok` or `unreachable`, `unreachable_since`), the live nodes it saw
//!   in its last round (`nodes`: name, pid, source `version`, `vigil_version`,
//!   `pipelines`, `draining`), version `skew` and `skew_since`, whether it drains, and
//!   the pipelines it holds.
//! - `GET /api/v1/incidents`: a JSON list, newest first (`?status=firing|resolved`,
//!   `pipeline=`, `label=name=value` or text, `silenced=true|false`);
//!   `GET /api/v1/incidents/{id}`: one incident with its audit trail and notifications.
//! - `POST /api/v1/incidents/{id}/ack`, `/resolve` (body optional: `{"by": "alice"}`) and
//!   `/feedback` (`{"verdict": "true_positive"|"false_positive"|"duplicate", "note": "..."}`;
//!   at most 60 verdicts a minute per caller, 429 beyond).
//! - `POST /api/v1/feedback`: a `missed` window (`{"pipeline", "series", "from", "to",
//!   "note"}`); `GET /api/v1/feedback`: every verdict.
//! - `GET /api/v1/report` (`?since=7d&within=15m`): alarms per day, precision, recall,
//!   MTTA, MTTR, notifications per incident, channel and `exec` success
//!   ([`crate::respond::report`]).
//! - `GET /api/v1/situations` (`?status=open|closed`) and `GET /api/v1/situations/{id}`:
//!   the situations of the `correlate` stages, with members, origin and timeline.
//! - `GET /api/v1/silences`; `POST /api/v1/silences`
//!   (`{"matchers": {"label": "value"}, "duration": "2h"` or `"ends_at": RFC 3339,
//!   optional `"starts_at"`, `"comment"`, `"created_by"`}; matchers may also be a list:
//!   `["service=checkout", "route=~/api/.*", "env!=dev", "team!~ops|sre"]`); `POST
//!   /api/v1/silences/{id}/expire` or `DELETE /api/v1/silences/{id}` ends one.
//! - Access ([`access`]): every POST of the API needs an operator token
//!   (`Authorization: Bearer <token>`); reads need a token when read authentication is on;
//!   the Host header is checked against an allowlist (loopback names on a loopback
//!   listener). The listener's limits (timeouts, connection cap, TLS) are in [`listen`].
//! - `POST /api/v1/reload`: recompiles and applies the sources; answers the reload's
//!   outcome (an operator token, like every POST of the API).
//! - `GET /api/v1/pipelines/{name}/graph`: a pipeline's stages placed in levels, with
//!   their inputs, parameters, source location and run statistics ([`read::graph`]).
//! - `GET /api/v1/scores`: the series with recent scores (`?stage=` one stage's);
//!   `?stage=&series=` (optional `since`, ms): that series' last 600 points — value,
//!   expected value and band where the detector gives them, score, anomalous.
//! - `GET /api/v1/models` (`?stage=`): the model registry's versions; `POST
//!   /api/v1/models/{id}/promote`; `POST /api/v1/models/rollback` (`{"stage": "p.train",
//!   "series": "…"}`, series optional).
//! - `/ui/…`: the web console ([`console`]); `GET /` redirects there. Its pages follow the
//!   API's read rules and its forms the API's POST rules (through a login session).
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

use crate::engine::Shared;
use crate::runtime::ops::collect;

pub mod console;
pub mod listen;
pub mod read;

use crate::access::{self, Caller};

/// The router over the engine's shared state.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/incidents", get(incidents))
        .route("/api/v1/incidents/{id}", get(incident))
        .route("/api/v1/incidents/{id}/{action}", axum::routing::post(incident_action))
        .route("/api/v1/situations", get(situations))
        .route("/api/v1/situations/{id}", get(situation))
        .route("/api/v1/silences", get(silences).post(add_silence))
        .route("/api/v1/silences/{id}/expire", axum::routing::post(expire_silence))
        .route("/api/v1/silences/{id}", axum::routing::delete(expire_silence))
        .route("/api/v1/reload", axum::routing::post(reload))
        .route("/api/v1/pipelines/{name}/graph", get(pipeline_graph))
        .route("/api/v1/scores", get(scores))
        .route("/api/v1/models", get(models))
        .route("/api/v1/models/rollback", axum::routing::post(rollback_models))
        .route("/api/v1/models/{id}/promote", axum::routing::post(promote_model))
        .route("/api/v1/feedback", get(list_feedback).post(add_feedback))
        .route("/api/v1/report", get(report_api))
        .merge(console::routes())
        .fallback(webhook)
        .layer(axum::middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

/// Every request: the Host allowlist; then the API's and `/metrics`' access rules (the
/// caller is put in the request's extensions for the audit trail).
async fn guard(State(shared): State<Arc<Shared>>, mut req: Request, next: axum::middleware::Next) -> Response {
    let access = shared.access.read().unwrap_or_else(|e| e.into_inner()).clone();
    if let Err(r) = access.check_host(req.headers()) {
        return error(r.status, r.message);
    }
    let path = req.uri().path();
    if path == "/metrics" || path.starts_with("/api/") {
        match access.authorize(req.method(), req.headers()) {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
            }
            Err(r) => return error(r.status, r.message),
        }
    }
    next.run(req).await
}

/// Who made a call, for the audit trail: the body's `by` (a person) and the token's name.
fn caller_name(req: &Request) -> Option<String> {
    req.extensions().get::<Caller>().and_then(|c| c.token.clone())
}

/// `alice (token ops)`, `token ops`, or the body's name alone.
pub fn by_whom(given: Option<&str>, token: Option<&str>, default: &str) -> String {
    match (given, token) {
        (Some(by), Some(t)) => format!("{by} (token {t})"),
        (None, Some(t)) => format!("token {t}"),
        (Some(by), None) => by.to_owned(),
        (None, None) => default.to_owned(),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    use std::fmt::Write;
    let version = shared.status.read().map(|s| s.version.clone()).unwrap_or_default();
    let mut text = shared.metrics.render(&version);
    // Read from the incidents and the outbox when asked, so they are never stale.
    let r = responder(&shared);
    let mut firing: std::collections::BTreeMap<String, usize> =
        shared.status.read().map(|s| s.pipelines.iter().map(|p| (p.name.clone(), 0)).collect()).unwrap_or_default();
    for i in r.list().iter().filter(|i| i.status == "firing") {
        *firing.entry(i.pipeline.clone()).or_default() += 1;
    }
    let _ = writeln!(text, "# HELP vigil_incidents_firing Incidents firing now, per pipeline.\n# TYPE vigil_incidents_firing gauge");
    for (p, n) in firing {
        let _ = writeln!(text, "vigil_incidents_firing{{pipeline=\"{}\"}} {n}", crate::data::escape_label(&p));
    }
    // While the store does not answer, its figures are left out rather than waited for
    // (a scrape must not hang); `vigil_store_up` says why.
    let store_up = shared.status.read().is_ok_and(|s| s.store.unreachable_since.is_none());
    if let Some(store) = r.store().filter(|_| store_up) {
        if let Ok(Ok((depth, oldest))) = tokio::time::timeout(METRICS_STORE_WAIT, store.outbox_depth()).await {
            let age = oldest.map_or(0.0, |t| (crate::time::now_ms() - t).max(0) as f64 / 1000.0);
            let _ = writeln!(
                text,
                "# HELP vigil_outbox_pending Notifications waiting in the outbox.\n# TYPE vigil_outbox_pending gauge\nvigil_outbox_pending {depth}\n\
                 # HELP vigil_outbox_oldest_age_seconds How long the oldest waiting notification has waited (0 when none).\n\
                 # TYPE vigil_outbox_oldest_age_seconds gauge\nvigil_outbox_oldest_age_seconds {age}"
            );
        }
    }
    // In a cluster: the whole cluster as this node's last round saw it (no NATS request here).
    if let Some(h) = shared.status.read().ok().and_then(|s| s.cluster.clone()) {
        text.push_str(&h.metrics());
    }
    text.push_str(&shared.monitor.render());
    if store_up {
        if let Ok(report) = tokio::time::timeout(METRICS_STORE_WAIT, report_metrics(&shared)).await {
            text.push_str(&report);
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// How long `/metrics` reuses the effectiveness report's lines.
const REPORT_METRICS_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// The effectiveness report's lines of `/metrics` (`vigil_report_*`): the 7-day report,
/// computed again only when incidents, verdicts or sends changed, or after a minute (the
/// week slides).
/// How long `/metrics` waits for the store's figures (the outbox, the report) before
/// leaving them out.
const METRICS_STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

async fn report_metrics(shared: &Shared) -> String {
    let changes = responder(shared).changes();
    {
        let cache = shared.report_metrics.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, seen, text)) = cache.as_ref() {
            if *seen == changes && at.elapsed() < REPORT_METRICS_FOR {
                return text.clone();
            }
        }
    }
    let Ok(report) = report(shared, None, None).await else { return String::new() };
    let text = report.metrics();
    *shared.report_metrics.lock().unwrap_or_else(|e| e.into_inner()) = Some((std::time::Instant::now(), changes, text.clone()));
    text
}

/// Ready once the engine runs pipelines: 200, else 503.
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let (pipelines, store) = shared.status.read().map(|s| (s.pipelines.len(), s.store.clone())).unwrap_or_default();
    if let Some(since) = store.unreachable_since {
        let since = crate::time::format_timestamp(since);
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: the state store has not answered since {since}\n")).into_response()
    } else if pipelines > 0 {
        (StatusCode::OK, format!("ready: {pipelines} pipelines\n")).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: no pipeline running\n").into_response()
    }
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    let s = shared.status.read().map(|s| s.clone()).unwrap_or_default();
    Json(s).into_response()
}

fn responder(shared: &Shared) -> Arc<crate::respond::Responder> {
    shared.responder.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// A situation as the API shows it: its correlate stage, status, members (with why each
/// joined), origin, the incidents that notify about it, and a timeline.
fn situation_json(stage: &str, s: &crate::correlate::Situation, incidents: &[crate::respond::Incident]) -> serde_json::Value {
    let notified: Vec<&str> =
        incidents.iter().filter(|i| i.labels.get("situation").is_some_and(|v| *v == s.id)).map(|i| i.id.as_str()).collect();
    let mut timeline: Vec<(i64, String)> = Vec::new();
    for m in &s.members {
        timeline.push((m.joined_at, format!("{} joined: {}", m.key, crate::runtime::ops::correlate::reason_text(&m.reason))));
        if let Some(t) = m.resolved_at {
            timeline.push((t, format!("{} resolved", m.key)));
        }
    }
    if let Some(t) = s.closed_at {
        timeline.push((t, "closed".into()));
    }
    timeline.sort();
    serde_json::json!({
        "id": s.id, "stage": stage, "status": if s.is_open() { "open" } else { "closed" },
        "opened_at": s.opened_at, "closed_at": s.closed_at, "firing": s.firing(),
        "origin": s.origin, "origin_reason": s.origin_reason, "members": s.members, "dropped_members": s.dropped_members,
        "incidents": notified,
        "timeline": timeline.into_iter().map(|(ts, what)| serde_json::json!({ "ts": ts, "event": what })).collect::<Vec<_>>(),
    })
}

/// The situations of every `correlate` stage (`status`: `open` or `closed`, else all),
/// newest change first, as the API and the console show them.
///
/// # Errors
/// A `status` other than `open` or `closed`.
pub(crate) fn list_situations(shared: &Shared, status: Option<&str>) -> Result<Vec<serde_json::Value>, String> {
    if let Some(s) = status.filter(|s| !["open", "closed"].contains(s)) {
        return Err(format!("`status` is open or closed, not `{s}`"));
    }
    let r = responder(shared);
    let incidents = r.list();
    let all = r.situations.read().unwrap_or_else(|e| e.into_inner()).clone();
    let mut out: Vec<(i64, serde_json::Value)> = all
        .iter()
        .flat_map(|(stage, list)| list.iter().map(move |s| (stage, s)))
        .filter(|(_, s)| status.is_none_or(|st| (st == "open") == s.is_open()))
        .map(|(stage, s)| (s.last_change_at, situation_json(stage, s, &incidents)))
        .collect();
    out.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
    Ok(out.into_iter().map(|(_, v)| v).collect())
}

/// One situation, as the API and the console show it.
pub(crate) fn situation_story(shared: &Shared, id: &str) -> Option<serde_json::Value> {
    let r = responder(shared);
    let all = r.situations.read().unwrap_or_else(|e| e.into_inner()).clone();
    all.iter().find_map(|(stage, list)| list.iter().find(|s| s.id == id).map(|s| situation_json(stage, s, &r.list())))
}

/// `GET /api/v1/situations`: the situations of every `correlate` stage, newest change
/// first (`?status=open|closed`).
async fn situations(
    State(shared): State<Arc<Shared>>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    match list_situations(&shared, q.get("status").map(String::as_str)) {
        Ok(list) => Json(list).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

/// `GET /api/v1/situations/{id}`.
async fn situation(State(shared): State<Arc<Shared>>, axum::extract::Path(id): axum::extract::Path<String>) -> Response {
    match situation_story(&shared, &id) {
        Some(v) => Json(v).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no situation `{id}`")),
    }
}

/// Which incidents a list shows: the query string of `GET /api/v1/incidents` and of the
/// console's incidents page.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct IncidentFilter {
    /// `firing` or `resolved`.
    pub status: Option<String>,
    pub pipeline: Option<String>,
    /// `name=value` (a label, or `series`, `stage`, `key`, `pipeline`, equal), or text
    /// found in the series, the key or a label value.
    pub label: Option<String>,
    /// `true`: only incidents that were silenced when they opened or that an active
    /// silence holds back now; `false`: only the others.
    pub silenced: Option<String>,
}

/// A listed incident and the active silence that holds its notifications back, if any.
#[derive(Clone, Debug)]
pub struct Listed {
    pub incident: crate::respond::Incident,
    pub silenced_by: Option<i64>,
}

impl Listed {
    /// Silenced when it opened, or held back by a silence now.
    pub fn silenced(&self) -> bool {
        self.incident.silenced || self.silenced_by.is_some()
    }
}

/// The incidents a filter selects, newest first: what `GET /api/v1/incidents` and the
/// console list.
///
/// # Errors
/// A filter value that means nothing (a status other than firing or resolved, `silenced`
/// not a boolean), as a message for a 400.
pub fn list_incidents(r: &crate::respond::Responder, f: &IncidentFilter) -> Result<Vec<Listed>, String> {
    let empty = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    let status = empty(&f.status);
    if let Some(status) = &status {
        if !["firing", "resolved"].contains(&status.as_str()) {
            return Err(format!("`status` is firing or resolved, not `{status}`"));
        }
    }
    let silenced = match empty(&f.silenced).as_deref() {
        None => None,
        Some("true" | "yes" | "1") => Some(true),
        Some("false" | "no" | "0") => Some(false),
        Some(other) => return Err(format!("`silenced` is true or false, not `{other}`")),
    };
    let (pipeline, label) = (empty(&f.pipeline), empty(&f.label));
    let label_matches = |i: &crate::respond::Incident| -> bool {
        let Some(want) = &label else { return true };
        if let Some((name, value)) = want.split_once('=') {
            let (name, value) = (name.trim(), value.trim());
            let got = match name {
                "series" => return i.series.iter().any(|s| s == value),
                "pipeline" => Some(i.pipeline.as_str()),
                "stage" => Some(i.stage.as_str()),
                "key" => Some(i.key.as_str()),
                other => i.labels.get(other).map(String::as_str),
            };
            return got == Some(value);
        }
        i.key.contains(want.as_str())
            || i.series.iter().any(|s| s.contains(want.as_str()))
            || i.labels.values().any(|v| v.contains(want.as_str()))
    };
    let now = crate::time::now_ms();
    Ok(r.list()
        .into_iter()
        .filter(|i| status.as_ref().is_none_or(|s| &i.status == s))
        .filter(|i| pipeline.as_ref().is_none_or(|p| &i.pipeline == p))
        .filter(|i| label_matches(i))
        .map(|i| {
            // The active silence that holds a firing incident's notifications back.
            let silenced_by = (i.status == "firing").then(|| i.series.first().and_then(|s| r.silenced_by(&i, s, now))).flatten();
            Listed { incident: i, silenced_by }
        })
        .filter(|l| silenced.is_none_or(|want| l.silenced() == want))
        .collect())
}

async fn incidents(State(shared): State<Arc<Shared>>, axum::extract::Query(q): axum::extract::Query<IncidentFilter>) -> Response {
    let r = responder(&shared);
    let list = match list_incidents(&r, &q) {
        Ok(l) => l,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let out: Vec<serde_json::Value> = list
        .into_iter()
        .map(|l| {
            let mut v = serde_json::to_value(&l.incident).unwrap_or_default();
            v["silenced_by"] = l.silenced_by.map_or(serde_json::Value::Null, Into::into);
            v
        })
        .collect();
    Json(out).into_response()
}

/// A notification of an incident, as its story shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NotificationRow {
    pub id: i64,
    pub channel: String,
    /// Where the channel delivers (never a secret); empty when its stage no longer runs.
    pub destination: String,
    pub transition: String,
    /// `pending`, `sent`, `failed`, `dry_run`.
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: crate::data::Timestamp,
    pub sent_at: Option<crate::data::Timestamp>,
}

/// An incident's story: the incident, its audit trail (oldest first) and its
/// notifications (newest first), as `GET /api/v1/incidents/{id}` and the console's
/// incident page show it.
#[derive(Clone, Debug)]
pub struct Story {
    pub incident: crate::respond::Incident,
    pub silenced_by: Option<i64>,
    pub audit: Vec<crate::respond::AuditRecord>,
    pub notifications: Vec<NotificationRow>,
}

/// The story of incident `id`; `None` when there is no such incident.
pub async fn incident_story(r: &crate::respond::Responder, id: &str) -> Option<Story> {
    let i = r.get(id)?;
    let silenced_by = (i.status == "firing").then(|| i.series.first().and_then(|s| r.silenced_by(&i, s, crate::time::now_ms()))).flatten();
    let (audit, notifications) = match r.store() {
        Some(store) => {
            let audit = store.audit_of(id).await.unwrap_or_default();
            let destinations: std::collections::HashMap<String, String> =
                r.channels.read().map(|c| c.iter().map(|(stage, ch)| (stage.clone(), ch.kind.destination())).collect()).unwrap_or_default();
            let notes = store
                .outbox_of(id)
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|o| NotificationRow {
                    id: o.id,
                    destination: destinations.get(&o.notification.stage).cloned().unwrap_or_default(),
                    channel: o.notification.channel,
                    transition: o.notification.transition,
                    status: o.status,
                    attempts: o.attempts,
                    last_error: o.last_error,
                    created_at: o.created_at,
                    sent_at: o.sent_at,
                })
                .collect();
            (audit, notes)
        }
        None => (Vec::new(), Vec::new()),
    };
    Some(Story { incident: i, silenced_by, audit, notifications })
}

async fn incident(State(shared): State<Arc<Shared>>, axum::extract::Path(id): axum::extract::Path<String>) -> Response {
    let r = responder(&shared);
    let Some(story) = incident_story(&r, &id).await else { return error(StatusCode::NOT_FOUND, format!("no incident `{id}`")) };
    Json(serde_json::json!({ "incident": story.incident, "audit": story.audit, "notifications": story.notifications })).into_response()
}

/// Bodies of API calls are small.
const API_BODY: usize = 64 * 1024;

/// The announced length of a request's body, when it has one.
fn content_length(req: &Request) -> Option<u64> {
    req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

async fn json_body(req: Request) -> Result<serde_json::Value, Response> {
    // Refused before reading: a client announcing a huge body gets its answer at once.
    if content_length(&req).is_some_and(|n| n > API_BODY as u64) {
        return Err(error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {API_BODY} bytes")));
    }
    let bytes = axum::body::to_bytes(req.into_body(), API_BODY)
        .await
        .map_err(|_| error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {API_BODY} bytes")))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::json!({}));
    }
    serde_json::from_slice(&bytes).map_err(|e| error(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")))
}

/// Acknowledges, resolves or gives feedback on an incident (`action`: `ack`, `resolve`,
/// `feedback` with `verdict` and `note` in `body`), by `by` (see [`by_whom`]): what
/// `POST /api/v1/incidents/{id}/{action}` and the console's buttons do.
///
/// # Errors
/// 404 for an unknown incident or action, 409 for a change the incident's state refuses
/// (and a bad verdict), with the message.
pub async fn act_on_incident(
    r: &crate::respond::Responder,
    id: &str,
    action: &str,
    body: &serde_json::Value,
    by: &str,
) -> Result<crate::respond::Incident, (StatusCode, String)> {
    let result = match action {
        "ack" => r.acknowledge(id, by).await,
        "resolve" => r.resolve(id, by).await,
        "feedback" => {
            let verdict = body.get("verdict").and_then(|v| v.as_str()).unwrap_or("").to_owned();
            let note = body.get("note").and_then(|v| v.as_str()).map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned);
            r.feedback(id, &verdict, note, by).await
        }
        other => return Err((StatusCode::NOT_FOUND, format!("no action `{other}`; use ack, resolve or feedback"))),
    };
    result.map_err(|e| {
        if e.starts_with("no incident") {
            (StatusCode::NOT_FOUND, e)
        } else if e.starts_with("too many verdicts") {
            (StatusCode::TOO_MANY_REQUESTS, e)
        } else {
            (StatusCode::CONFLICT, e)
        }
    })
}

/// `POST /api/v1/feedback`: a window no incident reported (`missed`):
/// `{"pipeline": "p", "series": "cpu{host=\"a\"}", "from": RFC 3339 or ms, "to": …,
/// "note": "…", "by": "…"}`.
async fn add_feedback(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let token = caller_name(&req);
    let body = match json_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let text = |k: &str| body.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
    let time = |k: &str| match body.get(k) {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => crate::time::parse_timestamp(s),
        _ => None,
    };
    if let Some(v) = body.get("verdict").and_then(|v| v.as_str()).filter(|v| *v != "missed") {
        return error(
            StatusCode::BAD_REQUEST,
            format!("`{v}` is a verdict on an incident: POST /api/v1/incidents/{{id}}/feedback; this endpoint takes `missed` windows"),
        );
    }
    let (Some(from), Some(to)) = (time("from"), time("to")) else {
        return error(StatusCode::BAD_REQUEST, "`from` and `to` must be RFC 3339 timestamps or milliseconds since the epoch");
    };
    let note = Some(text("note")).filter(|n| !n.trim().is_empty());
    let by = by_whom(body.get("by").and_then(|v| v.as_str()), token.as_deref(), "api");
    match responder(&shared).missed(&text("pipeline"), &text("series"), from, to, note, &by).await {
        Ok(r) => (StatusCode::CREATED, Json(r)).into_response(),
        Err(e) if e.starts_with("too many verdicts") => error(StatusCode::TOO_MANY_REQUESTS, e),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

/// `GET /api/v1/feedback`: every verdict, oldest first.
async fn list_feedback(State(shared): State<Arc<Shared>>) -> Response {
    Json(responder(&shared).feedback.all()).into_response()
}

/// The report over the last `since` (default 7 days), exec runs counted as resolving
/// their incident within `within` (default 15 minutes).
///
/// # Errors
/// A duration that does not parse, or a store failure.
pub async fn report(
    shared: &Shared,
    since: Option<&str>,
    within: Option<&str>,
) -> Result<crate::respond::report::Report, (StatusCode, String)> {
    let dur = |v: Option<&str>, default: i64, name: &str| match v {
        None => Ok(default),
        Some(s) => crate::time::parse_duration(s)
            .filter(|d| *d > 0)
            .ok_or_else(|| (StatusCode::BAD_REQUEST, format!("`{name}` must be a duration such as 7d or 1h30m, not `{s}`"))),
    };
    let since_ms = dur(since, 7 * 86_400_000, "since")?;
    let within_ms = dur(within, 900_000, "within")?;
    let r = responder(shared);
    let until = crate::time::now_ms();
    let from = until.saturating_sub(since_ms);
    let (incidents, audit) = match r.store() {
        Some(store) => (
            store.incidents_since(from).await.map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?,
            store.audit_since(from, &["sent", "failed"]).await.map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?,
        ),
        None => (r.list(), Vec::new()),
    };
    Ok(crate::respond::report::build(&incidents, &r.feedback.all(), &audit, from, until, within_ms))
}

async fn report_api(State(shared): State<Arc<Shared>>, q: axum::extract::Query<std::collections::HashMap<String, String>>) -> Response {
    match report(&shared, q.get("since").map(String::as_str), q.get("within").map(String::as_str)).await {
        Ok(r) => Json(r).into_response(),
        Err((code, e)) => error(code, e),
    }
}

async fn incident_action(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path((id, action)): axum::extract::Path<(String, String)>,
    req: Request,
) -> Response {
    let token = caller_name(&req);
    let body = match json_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let r = responder(&shared);
    let by = by_whom(body.get("by").and_then(|v| v.as_str()), token.as_deref(), "api");
    match act_on_incident(&r, &id, &action, &body, &by).await {
        Ok(i) => Json(i).into_response(),
        Err((code, e)) => error(code, e),
    }
}

async fn silences(State(shared): State<Arc<Shared>>) -> Response {
    Json(responder(&shared).silences()).into_response()
}

/// A silence from a request body (`matchers`, `duration` or `ends_at`, optional
/// `starts_at`, `comment`, `created_by`), created by `token` (its name): what `POST
/// /api/v1/silences` and the console's silence form read.
///
/// # Errors
/// A body that does not describe a silence, with a message for a 400.
pub fn silence_from(body: &serde_json::Value, token: Option<&str>, now: crate::data::Timestamp) -> Result<crate::respond::Silence, String> {
    let time = |k: &str| -> Result<Option<i64>, String> {
        match body.get(k).and_then(|v| v.as_str()).map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(None),
            Some(t) => crate::time::parse_timestamp(t).map(Some).ok_or_else(|| format!("`{k}` is not a timestamp: `{t}`")),
        }
    };
    let starts_at = time("starts_at")?.unwrap_or(now);
    let ends_at = match (time("ends_at")?, body.get("duration").and_then(|v| v.as_str()).map(str::trim).filter(|d| !d.is_empty())) {
        (Some(t), _) => t,
        (None, Some(d)) => match crate::time::parse_duration(d) {
            Some(ms) => starts_at.saturating_add(ms),
            None => return Err(format!("`duration` is not a duration such as 2h: `{d}`")),
        },
        (None, None) => return Err("a silence needs `duration` (such as \"2h\") or `ends_at`".into()),
    };
    let matchers = match body.get("matchers").map(crate::respond::parse_matchers) {
        Some(Ok(m)) => m,
        Some(Err(e)) => return Err(e),
        None => return Err("a silence needs `matchers`: [\"service=checkout\", \"route=~/api/.*\"]".into()),
    };
    Ok(crate::respond::Silence {
        id: 0,
        matchers,
        comment: body.get("comment").and_then(|v| v.as_str()).unwrap_or("").to_owned(),
        created_by: by_whom(body.get("created_by").and_then(|v| v.as_str()).filter(|b| !b.trim().is_empty()), token, "api"),
        starts_at,
        ends_at,
        created_at: now,
    })
}

async fn add_silence(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let token = caller_name(&req);
    let body = match json_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let s = match silence_from(&body, token.as_deref(), crate::time::now_ms()) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match responder(&shared).add_silence(s).await {
        Ok(s) => (StatusCode::CREATED, Json(s)).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn expire_silence(State(shared): State<Arc<Shared>>, axum::extract::Path(id): axum::extract::Path<i64>, req: Request) -> Response {
    let token = caller_name(&req);
    match responder(&shared).expire_silence(id).await {
        Ok(s) => {
            tracing::info!(silence = id, token = token.as_deref().unwrap_or("-"), "silence expired through the API");
            Json(s).into_response()
        }
        Err(e) => error(StatusCode::NOT_FOUND, e),
    }
}

async fn reload(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let token = caller_name(&req);
    tracing::info!(token = token.as_deref().unwrap_or("-"), "reload asked through the API");
    let tx = shared.reload.read().ok().and_then(|t| t.clone());
    let Some(tx) = tx else { return error(StatusCode::SERVICE_UNAVAILABLE, "reloading is not available") };
    let (reply, answer) = tokio::sync::oneshot::channel();
    if tx.send(crate::engine::reload::ReloadRequest { reason: "api", reply: Some(reply) }).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "reloading is not available");
    }
    // Within the listener's request timeout (30 s).
    match tokio::time::timeout(std::time::Duration::from_secs(25), answer).await {
        Ok(Ok(Some(status))) => Json(status).into_response(),
        Ok(Ok(None)) => Json(serde_json::json!({ "outcome": "unchanged" })).into_response(),
        _ => error(StatusCode::GATEWAY_TIMEOUT, "the reload did not finish in time"),
    }
}

async fn pipeline_graph(State(shared): State<Arc<Shared>>, axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match read::graph(&shared, &name) {
        Some(g) => Json(g).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no pipeline `{name}` runs")),
    }
}

/// `GET /api/v1/scores` query: no `series`, the series with recent scores (of `stage`);
/// with `stage` and `series`, that series' points (newer than `since`, ms).
#[derive(Debug, Default, serde::Deserialize)]
pub struct ScoresQuery {
    pub stage: Option<String>,
    pub series: Option<String>,
    pub since: Option<i64>,
}

async fn scores(State(shared): State<Arc<Shared>>, axum::extract::Query(q): axum::extract::Query<ScoresQuery>) -> Response {
    match (&q.stage, &q.series) {
        (Some(stage), Some(series)) => match shared.recent.points(stage, series, q.since) {
            Some(points) => Json(serde_json::json!({ "stage": stage, "series": series, "points": points })).into_response(),
            None => error(StatusCode::NOT_FOUND, format!("no recent scores of `{series}` in stage `{stage}`")),
        },
        (None, Some(_)) => error(StatusCode::BAD_REQUEST, "`series` needs `stage`"),
        (stage, None) => Json(shared.recent.series(stage.as_deref())).into_response(),
    }
}

async fn models(
    State(shared): State<Arc<Shared>>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    match read::models(&shared, q.get("stage").map(String::as_str)).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn promote_model(State(shared): State<Arc<Shared>>, axum::extract::Path(id): axum::extract::Path<i64>, req: Request) -> Response {
    let token = caller_name(&req);
    let by = by_whom(None, token.as_deref(), "api");
    match read::promote_model(&shared, id, &by).await {
        Ok(()) => {
            tracing::info!(model = id, token = token.as_deref().unwrap_or("-"), "model promoted through the API");
            Json(serde_json::json!({ "promoted": id })).into_response()
        }
        Err((code, e)) => error(code, e),
    }
}

async fn rollback_models(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let token = caller_name(&req);
    let body = match json_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(stage) = body.get("stage").and_then(|v| v.as_str()) else {
        return error(StatusCode::BAD_REQUEST, "a rollback needs `stage` (a train stage's key), and optionally `series`");
    };
    let by = by_whom(body.get("by").and_then(|v| v.as_str()), token.as_deref(), "api");
    match read::rollback_models(&shared, stage, body.get("series").and_then(|v| v.as_str()), &by).await {
        Ok(done) => {
            tracing::info!(stage, token = token.as_deref().unwrap_or("-"), "models rolled back through the API");
            Json(done).into_response()
        }
        Err((code, e)) => error(code, e),
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
    let limited = !route.limiter.lock().unwrap_or_else(|e| e.into_inner()).allow(std::time::Instant::now());
    if limited {
        return answer(StatusCode::TOO_MANY_REQUESTS, error(StatusCode::TOO_MANY_REQUESTS, "too many requests on this path; retry later"));
    }
    if let Some(token) = &route.auth.token {
        let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| access::same_secret(g.trim(), token)) {
            tracing::warn!(path = %path, pipeline = %route.pipeline, "refused a webhook request: no valid bearer token");
            return answer(
                StatusCode::UNAUTHORIZED,
                error(StatusCode::UNAUTHORIZED, "a valid `Authorization: Bearer <token>` is required"),
            );
        }
    }
    if !is_json(req.headers()) {
        return answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "webhooks take JSON: send `Content-Type: application/json`"),
        );
    }
    let signature =
        route.auth.hmac.as_ref().map(|(_, h)| req.headers().get(h.as_str()).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned());
    if content_length(&req).is_some_and(|n| n > route.max_body as u64) {
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {} bytes", route.max_body)),
        );
    }
    let body = match axum::body::to_bytes(Body::new(req.into_body()), route.max_body).await {
        Ok(b) => b,
        Err(_) => {
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {} bytes", route.max_body)),
            )
        }
    };
    if let (Some((key, name)), Some(sig)) = (&route.auth.hmac, &signature) {
        if !valid_signature(key.as_bytes(), &body, sig) {
            tracing::warn!(path = %path, pipeline = %route.pipeline, "refused a webhook request: bad or missing signature");
            return answer(
                StatusCode::UNAUTHORIZED,
                error(StatusCode::UNAUTHORIZED, format!("`{name}` must hold the body's HMAC-SHA256 in hex")),
            );
        }
    }
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

/// `application/json`, or a `+json` type (parameters such as `charset` allowed).
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Checks an HMAC-SHA256 signature (hex, optionally `sha256=`-prefixed) in constant time.
fn valid_signature(key: &[u8], body: &[u8], given: &str) -> bool {
    use hmac::Mac;
    let hex = given.trim().strip_prefix("sha256=").unwrap_or(given.trim());
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let bytes: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0)).collect();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_and_content_types() {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"k").unwrap();
        mac.update(b"{}");
        let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert!(valid_signature(b"k", b"{}", &hex));
        assert!(valid_signature(b"k", b"{}", &format!("sha256={hex}")));
        assert!(!valid_signature(b"k", b"{ }", &hex));
        assert!(!valid_signature(b"other", b"{}", &hex));
        assert!(!valid_signature(b"k", b"{}", ""));
        let h = |ct: &str| {
            let mut m = axum::http::HeaderMap::new();
            m.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            is_json(&m)
        };
        assert!(h("application/json") && h("application/json; charset=utf-8") && h("application/vnd.x+json"));
        assert!(!h("text/plain") && !h("application/x-www-form-urlencoded") && !h("multipart/form-data"));
        assert!(!is_json(&axum::http::HeaderMap::new()));
    }
}
