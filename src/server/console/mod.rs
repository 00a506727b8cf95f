//! The web console served by `vigil run` at `/ui/` (`/` redirects there): pipelines as
//! graphs, live scores, incidents with their story, models — and one click to
//! acknowledge, resolve, silence or give feedback.
//!
//! - **Input**: the engine's [`Shared`] state, read through the same functions as the JSON
//!   API ([`super::list_incidents`], [`super::incident_story`], [`super::read`]); actions
//!   call the same functions as the API's POSTs ([`super::act_on_incident`],
//!   [`super::silence_from`] and the [`crate::respond::Responder`]), with the audit
//!   trail's `by` built the same way ([`super::by_whom`]).
//! - **Output**: server-rendered HTML (minijinja templates, auto-escaped) with a little
//!   script (live refresh by polling every 2 s, charts with the vendored uPlot); every
//!   asset is embedded in the binary (`assets/`), nothing is fetched from elsewhere.
//! - **Auth** (invariants): the console never bypasses the API's rules. Logging in
//!   (`/ui/login`) checks the token with [`crate::access::Access::authorize`] and keeps it
//!   on the server; the browser holds only a random session id in the `vigil_session`
//!   cookie (HttpOnly, SameSite=Strict, Secure over TLS). Every action re-checks the
//!   session's token as a `POST` of the API would be checked (an operator token), and
//!   needs the form's CSRF token (an HMAC of the session id under a per-process key); a
//!   cross-site `Origin` is refused. Pages need a session when read authentication is on
//!   (`--read-auth`), like the API's reads. The token never appears in a URL or a page.
//!   Login attempts are paced (5 a second over all clients: 429 beyond).
//! - Pages: `pipelines` (list, and each pipeline's DAG), `scores` (series search, live
//!   chart), `incidents` (filtered, paginated list; an incident's story and actions),
//!   `silences`, `situations` (correlated incidents: members, origin, timeline), `models`
//!   (versions, promote, rollback).
//! - Bad input never panics: an unknown id is a 404 page, a bad form a 400 with the
//!   reason.

mod assets;
mod incidents;
mod models;
mod pipelines;
mod scores;
mod session;
mod situations;

use std::sync::Arc;
use std::time::Instant;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};

use crate::engine::Shared;
use session::{Sessions, Viewer};

/// The console's own state: its sessions, its templates, and the pace of login attempts.
pub struct Console {
    sessions: Sessions,
    templates: minijinja::Environment<'static>,
    /// Login attempts, at most [`LOGINS_PER_SECOND`] a second (bursts as large), so that
    /// tokens cannot be guessed through the form at speed.
    logins: std::sync::Mutex<crate::access::RateLimiter>,
}

/// Login attempts accepted per second, over all clients.
const LOGINS_PER_SECOND: f64 = 5.0;

/// The templates, by name.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("assets/base.html")),
    ("login.html", include_str!("assets/login.html")),
    ("error.html", include_str!("assets/error.html")),
    ("pipelines.html", include_str!("assets/pipelines.html")),
    ("pipeline.html", include_str!("assets/pipeline.html")),
    ("scores.html", include_str!("assets/scores.html")),
    ("incidents.html", include_str!("assets/incidents.html")),
    ("incident.html", include_str!("assets/incident.html")),
    ("silences.html", include_str!("assets/silences.html")),
    ("models.html", include_str!("assets/models.html")),
    ("situations.html", include_str!("assets/situations.html")),
    ("situation.html", include_str!("assets/situation.html")),
];

impl Console {
    fn new() -> Console {
        let mut env = minijinja::Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source).unwrap_or_else(|e| panic!("the console template {name} does not compile: {e}"));
        }
        env.add_filter("ts", |ms: i64| crate::time::format_rfc3339(ms).replace('T', " ").replace(".000Z", "Z"));
        env.add_filter("ago", |ms: i64| {
            let d = crate::time::now_ms() - ms;
            if d < 0 {
                format!("in {}", crate::time::format_duration_ms((-d / 1000) * 1000))
            } else {
                format!("{} ago", crate::time::format_duration_ms((d / 1000) * 1000))
            }
        });
        env.add_filter(
            "num",
            |x: f64, digits: Option<usize>| {
                if x.is_finite() {
                    format!("{x:.*}", digits.unwrap_or(3))
                } else {
                    "–".to_owned()
                }
            },
        );
        env.add_filter("urlencode_component", |s: String| urlencode(&s));
        Console {
            sessions: Sessions::new(),
            templates: env,
            logins: std::sync::Mutex::new(crate::access::RateLimiter::new(LOGINS_PER_SECOND)),
        }
    }

    /// Renders page `name` with `ctx` plus what every page needs (the viewer, the CSRF
    /// token); a template error is a 500 page that says so.
    fn render(&self, name: &str, viewer: &Viewer, ctx: serde_json::Value, started: Instant) -> Response {
        self.render_status(StatusCode::OK, name, viewer, ctx, started)
    }

    fn render_status(&self, status: StatusCode, name: &str, viewer: &Viewer, mut ctx: serde_json::Value, started: Instant) -> Response {
        ctx["viewer"] = serde_json::json!({
            "name": viewer.name(),
            "operator": viewer.operator,
            "logged_in": viewer.session.is_some(),
            "csrf": viewer.csrf.clone().unwrap_or_default(),
        });
        ctx["vigil_version"] = env!("CARGO_PKG_VERSION").into();
        let html = match self.templates.get_template(name).and_then(|t| t.render(&ctx)) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(template = name, error = %e, "cannot render a console page");
                return (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot render the page {name}: {e}")).into_response();
            }
        };
        html_response(status, html, started)
    }

    /// An error page: `status` with `message`.
    fn error(&self, viewer: &Viewer, status: StatusCode, message: impl Into<String>, started: Instant) -> Response {
        let ctx = serde_json::json!({ "title": format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("")), "status": status.as_u16(), "reason": status.canonical_reason().unwrap_or(""), "message": message.into() });
        self.render_status(status, "error.html", viewer, ctx, started)
    }
}

/// An HTML page with the console's security headers and its server time
/// (`Server-Timing: render;dur=…`, milliseconds).
fn html_response(status: StatusCode, html: String, started: Instant) -> Response {
    let mut r = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    server_timing(&mut r, started);
    r
}

fn server_timing(r: &mut Response, started: Instant) {
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(v) = HeaderValue::from_str(&format!("render;dur={ms:.2}")) {
        r.headers_mut().insert("server-timing", v);
    }
}

/// Percent-encodes a query-string component.
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The console's routes, mounted in [`super::router`] (behind its Host check).
pub fn routes() -> Router<Arc<Shared>> {
    let console = Arc::new(Console::new());
    Router::new()
        // Other methods on `/` stay what they were: a webhook path, if one is declared.
        .route("/", get(|| async { Redirect::to("/ui/") }).fallback(super::webhook))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(pipelines::list))
        .route("/ui/pipelines/{name}", get(pipelines::show))
        .route("/ui/scores", get(scores::page))
        .route("/ui/scores/data", get(scores::data))
        .route("/ui/incidents", get(incidents::list))
        .route("/ui/incidents/{id}", get(incidents::show))
        .route("/ui/incidents/{id}/{action}", post(incidents::act))
        .route("/ui/silences", get(incidents::silences).post(incidents::add_silence))
        .route("/ui/silences/{id}/expire", post(incidents::expire_silence))
        .route("/ui/situations", get(situations::list))
        .route("/ui/situations/{id}", get(situations::show))
        .route("/ui/models", get(models::list))
        .route("/ui/models/rollback", post(models::rollback))
        .route("/ui/models/{id}/promote", post(models::promote))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/assets/{name}", get(assets::serve))
        .layer(Extension(console))
}

/// Where a page may send the browser back to: a console path, never another site.
fn local_path(p: Option<&str>) -> String {
    match p {
        Some(p) if p.starts_with("/ui/") && !p.starts_with("//") && !p.contains(['\\', '\r', '\n']) => p.to_owned(),
        _ => "/ui/".to_owned(),
    }
}

/// A 303 to `to` (after a form).
fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// The path and query of a request (where a login sends the browser back to).
fn here(uri: &axum::http::Uri) -> String {
    uri.path_and_query().map_or_else(|| "/ui/".to_owned(), |p| p.as_str().to_owned())
}
