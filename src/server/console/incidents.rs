//! The incidents pages: the filtered, paginated list (refreshed live), an incident's
//! story (the scores that opened it, its audit trail as a timeline, its notifications)
//! with its actions, and the silences.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::session::{Action, Page};
use crate::engine::Shared;
use crate::server::{self as api, IncidentFilter};

/// Incidents per page unless `per_page` says otherwise, and the most it may say.
const PER_PAGE: usize = 50;
const MAX_PER_PAGE: usize = 500;

fn responder(shared: &Shared) -> Arc<crate::respond::Responder> {
    shared.responder.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// A positive integer from the query string, or `default`; `Err` names a bad value.
fn number(q: &HashMap<String, String>, k: &str, default: usize) -> Result<usize, String> {
    match q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| format!("`{k}` is a positive number, not `{v}`")),
    }
}

/// `GET /ui/incidents` (`status`, `pipeline`, `label`, `silenced`, `page`, `per_page`).
pub async fn list(State(shared): State<Arc<Shared>>, page: Page, Query(q): Query<HashMap<String, String>>) -> Response {
    let Page { console, viewer: v, started } = page;
    let filter = IncidentFilter {
        status: q.get("status").cloned(),
        pipeline: q.get("pipeline").cloned(),
        label: q.get("label").cloned(),
        silenced: q.get("silenced").cloned(),
    };
    let r = responder(&shared);
    let (page, per_page) = match (number(&q, "page", 1), number(&q, "per_page", PER_PAGE)) {
        (Ok(p), Ok(n)) => (p, n.min(MAX_PER_PAGE)),
        (Err(e), _) | (_, Err(e)) => return console.error(&v, StatusCode::BAD_REQUEST, e, started),
    };
    let listed = match api::list_incidents(&r, &filter) {
        Ok(l) => l,
        Err(e) => return console.error(&v, StatusCode::BAD_REQUEST, e, started),
    };
    let total = listed.len();
    let pages = total.div_ceil(per_page).max(1);
    let rows: Vec<serde_json::Value> = listed
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|l| {
            let silenced = l.silenced();
            serde_json::json!({ "i": l.incident, "silenced_by": l.silenced_by, "silenced": silenced })
        })
        .collect();
    let pipelines: Vec<String> = shared.status.read().map(|s| s.pipelines.iter().map(|p| p.name.clone()).collect()).unwrap_or_default();
    // The filters again, for the pager's links.
    let query: String =
        [("status", &filter.status), ("pipeline", &filter.pipeline), ("label", &filter.label), ("silenced", &filter.silenced)]
            .iter()
            .filter_map(|(k, v)| v.as_deref().filter(|v| !v.is_empty()).map(|v| format!("{k}={}&", super::urlencode(v))))
            .collect::<String>()
            + &(if per_page == PER_PAGE { String::new() } else { format!("per_page={per_page}&") });
    let ctx = serde_json::json!({
        "page": "incidents",
        "title": "Incidents",
        "rows": rows,
        "total": total,
        "pageno": page,
        "pages": pages,
        "query": query,
        "filter": { "status": filter.status, "pipeline": filter.pipeline, "label": filter.label, "silenced": filter.silenced },
        "pipelines": pipelines,
    });
    console.render("incidents.html", &v, ctx, started)
}

/// Silence matchers that match an incident, one per line: its pipeline, its labels, and
/// its series when a label cannot say it (none, or one a silence reads as the
/// incident's own `series`, `pipeline`, `stage` or `key`).
fn matchers_for(i: &crate::respond::Incident) -> String {
    const OWN: [&str; 4] = ["series", "pipeline", "stage", "key"];
    let mut lines = vec![format!("pipeline={}", i.pipeline)];
    lines.extend(i.labels.iter().filter(|(k, _)| !OWN.contains(&k.as_str())).map(|(k, v)| format!("{k}={v}")));
    if lines.len() == 1 || i.labels.keys().any(|k| OWN.contains(&k.as_str())) {
        lines.extend(i.series.first().map(|s| format!("series={s}")));
    }
    lines.join("\n")
}

/// `GET /ui/incidents/{id}`: the story and the actions.
pub async fn show(
    State(shared): State<Arc<Shared>>,
    page: Page,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Page { console, viewer: v, started } = page;
    let r = responder(&shared);
    let Some(story) = api::incident_story(&r, &id).await else {
        return console.error(&v, StatusCode::NOT_FOUND, format!("no incident `{id}`"), started);
    };
    let i = &story.incident;
    // The scores that opened it: the respond stage's input (the detector), around the
    // moment it opened.
    let status = shared.status.read().map(|s| s.clone()).unwrap_or_default();
    let detector = status.stages.iter().find(|s| s.key == i.stage).and_then(|s| s.inputs.first().cloned());
    let series = i.series.first().cloned().unwrap_or_default();
    let opening: Vec<_> = detector
        .as_deref()
        .and_then(|d| shared.recent.points(d, &series, None))
        .map(|pts| {
            let upto: Vec<_> = pts.into_iter().filter(|p| p.ts <= i.opened_at).collect();
            upto[upto.len().saturating_sub(8)..].to_vec()
        })
        .unwrap_or_default();
    let silence = story.silenced_by.and_then(|sid| r.silences().into_iter().find(|s| s.id == sid));
    // The timeline: the audit trail, with the silences that matched the incident while it
    // was open (a silence is not an event of one incident, so the trail does not hold it).
    let end = i.resolved_at.unwrap_or(i64::MAX);
    let mut timeline: Vec<serde_json::Value> =
        story.audit.iter().map(|a| serde_json::json!({ "ts": a.ts, "event": a.event, "detail": a.detail, "stage": a.stage })).collect();
    for s in r.silences().iter().filter(|s| s.starts_at < end && s.ends_at > i.opened_at && s.matches(i, &series)) {
        let matchers: Vec<String> = s.matchers.iter().map(ToString::to_string).collect();
        let detail = format!(
            "#{} by {} until {}: {}{}",
            s.id,
            s.created_by,
            crate::time::format_rfc3339(s.ends_at),
            matchers.join(", "),
            if s.comment.is_empty() { String::new() } else { format!(" — {}", s.comment) }
        );
        timeline.push(serde_json::json!({ "ts": s.created_at.max(s.starts_at), "event": "silence", "detail": detail, "stage": "" }));
    }
    timeline.sort_by_key(|e| e["ts"].as_i64().unwrap_or(0));
    let ctx = serde_json::json!({
        "page": "incidents",
        "title": format!("Incident {id}"),
        "i": i,
        "silenced_by": story.silenced_by,
        "silence": silence,
        "timeline": timeline,
        "notifications": story.notifications,
        "detector": detector,
        "series": series,
        "opening": opening,
        "matchers": matchers_for(i),
        "done": q.get("done"),
    });
    console.render("incident.html", &v, ctx, started)
}

/// `POST /ui/incidents/{id}/{action}` (`ack`, `resolve`, `feedback` with `verdict` and
/// `note`): the API's action, by the session's token.
pub async fn act(State(shared): State<Arc<Shared>>, Path((id, action)): Path<(String, String)>, act: Action) -> Response {
    let Action { console, viewer: v, token, form, started } = act;
    let by = api::by_whom(v.person.as_deref(), Some(&token), "console");
    let body = serde_json::json!({ "verdict": form.get("verdict"), "note": form.get("note") });
    if action == "feedback" && form.get("verdict").is_none_or(|x| x.is_empty()) {
        return console.error(&v, StatusCode::BAD_REQUEST, "choose a verdict: true positive, false positive or duplicate", started);
    }
    match api::act_on_incident(&responder(&shared), &id, &action, &body, &by).await {
        Ok(_) => {
            let done = match action.as_str() {
                "ack" => "acknowledged",
                "resolve" => "resolved",
                _ => "feedback",
            };
            super::see_other(&format!("/ui/incidents/{}?done={done}", super::urlencode(&id)))
        }
        Err((code, e)) => console.error(&v, code, e, started),
    }
}

/// `GET /ui/silences`: active, scheduled and ended silences.
pub async fn silences(State(shared): State<Arc<Shared>>, page: Page) -> Response {
    let Page { console, viewer: v, started } = page;
    let now = crate::time::now_ms();
    let mut list = responder(&shared).silences();
    list.sort_by_key(|s| std::cmp::Reverse(s.id));
    let rows: Vec<serde_json::Value> = list
        .into_iter()
        .map(|s| {
            let state = if s.active(now) {
                "active"
            } else if s.starts_at > now {
                "scheduled"
            } else {
                "ended"
            };
            let matchers: Vec<String> = s.matchers.iter().map(ToString::to_string).collect();
            serde_json::json!({ "s": s, "state": state, "matchers": matchers })
        })
        .collect();
    let ctx = serde_json::json!({ "page": "silences", "title": "Silences", "rows": rows });
    console.render("silences.html", &v, ctx, started)
}

/// `POST /ui/silences` (`matchers`, one per line; `duration`; `comment`; `incident`, the
/// page to go back to): the API's silence, by the session's token.
pub async fn add_silence(State(shared): State<Arc<Shared>>, action: Action) -> Response {
    let Action { console, viewer: v, token, form, started } = action;
    let matchers: Vec<String> =
        form.get("matchers").map(|m| m.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()).unwrap_or_default();
    if matchers.is_empty() {
        return console.error(&v, StatusCode::BAD_REQUEST, "a silence needs at least one matcher, such as service=checkout", started);
    }
    let body = serde_json::json!({
        "matchers": matchers,
        "duration": form.get("duration"),
        "comment": form.get("comment"),
        "created_by": v.person,
    });
    let silence = match api::silence_from(&body, Some(&token), crate::time::now_ms()) {
        Ok(s) => s,
        Err(e) => return console.error(&v, StatusCode::BAD_REQUEST, e, started),
    };
    match responder(&shared).add_silence(silence).await {
        Ok(s) => {
            tracing::info!(silence = s.id, token = %token, "silence added through the console");
            match form.get("incident").filter(|i| !i.is_empty()) {
                Some(i) => super::see_other(&format!("/ui/incidents/{}?done=silenced", super::urlencode(i))),
                None => super::see_other("/ui/silences"),
            }
        }
        Err(e) => console.error(&v, StatusCode::BAD_REQUEST, e, started),
    }
}

/// `POST /ui/silences/{id}/expire`: ends a silence now.
pub async fn expire_silence(State(shared): State<Arc<Shared>>, Path(id): Path<String>, action: Action) -> Response {
    let Action { console, viewer: v, token, form: _, started } = action;
    let Ok(id) = id.parse::<i64>() else { return console.error(&v, StatusCode::NOT_FOUND, format!("no silence `{id}`"), started) };
    match responder(&shared).expire_silence(id).await {
        Ok(_) => {
            tracing::info!(silence = id, token = %token, "silence expired through the console");
            super::see_other("/ui/silences")
        }
        Err(e) => console.error(&v, StatusCode::NOT_FOUND, e, started),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefilled_matchers_match_the_incident() {
        let mut i: crate::respond::Incident = serde_json::from_value(serde_json::json!({
            "id": "x", "key": "k", "pipeline": "demo", "stage": "demo.r", "series": ["cpu{series=\"2\"}"],
            "labels": {"series": "2", "host": "a"}, "status": "firing", "acknowledged": false, "acknowledged_by": null,
            "acknowledged_at": null, "opened_at": 0, "updated_at": 0, "resolved_at": null, "resolved_by": null, "score": 1.0,
            "value": 1.0, "silenced": false, "feedback": null, "feedback_note": null, "notifications": 0, "last_notified_at": null
        }))
        .unwrap();
        let silence = |text: &str| crate::respond::Silence {
            id: 1,
            matchers: text.lines().map(|l| crate::respond::SilenceMatcher::parse(l).unwrap()).collect(),
            comment: String::new(),
            created_by: String::new(),
            starts_at: 0,
            ends_at: 10,
            created_at: 0,
        };
        let m = super::matchers_for(&i);
        assert_eq!(m, "pipeline=demo\nhost=a\nseries=cpu{series=\"2\"}");
        assert!(silence(&m).matches(&i, &i.series[0]));
        i.labels.remove("series");
        assert_eq!(super::matchers_for(&i), "pipeline=demo\nhost=a");
    }
}
