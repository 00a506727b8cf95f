//! Console sessions: logging in with an API token, the session cookie, and the checks
//! every page and every form goes through (see the module header of [`super`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::{Extension, Form};
use hmac::Mac;

use super::Console;
use crate::access::{Access, Role};
use crate::engine::Shared;

/// The session cookie's name.
pub const COOKIE: &str = "vigil_session";

/// Sessions idle longer than this are forgotten.
const IDLE: Duration = Duration::from_secs(12 * 3600);

/// At most this many sessions; the longest idle goes first.
const MAX_SESSIONS: usize = 1000;

/// A logged-in browser: the token it gave (kept here, never sent back) and who it is.
struct Session {
    /// The API token, checked again by [`Access::authorize`] on every request.
    token: String,
    /// The name typed at login, for the audit trail (`alice (token ops)`).
    person: Option<String>,
    last_seen: Instant,
}

/// The console's sessions, by random id, and the key of their CSRF tokens.
pub struct Sessions {
    key: [u8; 32],
    map: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes from the operating system.
fn random_bytes() -> std::io::Result<[u8; 32]> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    /// No sessions, and a fresh CSRF key (sessions do not outlive the process).
    ///
    /// # Panics
    /// When the system has no random source (`/dev/urandom`): the console could not
    /// make unguessable sessions.
    pub fn new() -> Sessions {
        let key = random_bytes().expect("reading /dev/urandom for the console's CSRF key");
        Sessions { key, map: Mutex::new(HashMap::new()) }
    }

    /// The CSRF token of a session: an HMAC of its id.
    fn csrf(&self, id: &str) -> String {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    fn create(&self, token: String, person: Option<String>) -> std::io::Result<String> {
        let id = hex(&random_bytes()?);
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.last_seen.elapsed() < IDLE);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| k.clone()) {
                map.remove(&oldest);
            }
        }
        map.insert(id.clone(), Session { token, person, last_seen: Instant::now() });
        Ok(id)
    }

    /// The token and name of a live session (marking it seen).
    fn get(&self, id: &str) -> Option<(String, Option<String>)> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let s = map.get_mut(id)?;
        if s.last_seen.elapsed() >= IDLE {
            map.remove(id);
            return None;
        }
        s.last_seen = Instant::now();
        Some((s.token.clone(), s.person.clone()))
    }

    fn remove(&self, id: &str) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions::new()
    }
}

/// Who is looking at a page.
#[derive(Clone, Debug, Default)]
pub struct Viewer {
    /// The session id, when logged in with a token the API still accepts.
    pub session: Option<String>,
    /// The token's name and role.
    pub token_name: Option<String>,
    pub role: Option<Role>,
    /// The name typed at login.
    pub person: Option<String>,
    /// Whether the API would accept this viewer's POSTs (an operator token, mutations
    /// enabled): the console shows its buttons then.
    pub operator: bool,
    /// The CSRF token forms carry.
    pub csrf: Option<String>,
    /// The bearer token, to check actions exactly as the API checks them.
    token: Option<String>,
}

impl Viewer {
    /// `alice (token ops)`, `token ops`, or nothing.
    pub fn name(&self) -> Option<String> {
        self.token_name.as_ref().map(|t| crate::server::by_whom(self.person.as_deref(), Some(t), ""))
    }
}

/// `Authorization: Bearer <token>`, as the API receives it.
fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
        h.insert(header::AUTHORIZATION, v);
    }
    h
}

fn access(shared: &Shared) -> Access {
    shared.access.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The session id in the request's cookies.
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The viewer of a request: its session, checked against the API's current rules.
pub fn viewer(console: &Console, shared: &Shared, headers: &HeaderMap) -> Viewer {
    let Some(id) = session_id(headers) else { return Viewer::default() };
    let Some((token, person)) = console.sessions.get(&id) else { return Viewer::default() };
    let rules = access(shared);
    let Ok(caller) = rules.authorize(&Method::GET, &bearer(&token)) else {
        // The token is no longer accepted: the session ends.
        console.sessions.remove(&id);
        return Viewer::default();
    };
    let operator = rules.authorize(&Method::POST, &bearer(&token)).is_ok();
    Viewer {
        csrf: Some(console.sessions.csrf(&id)),
        session: Some(id),
        token_name: caller.token,
        role: caller.role,
        person,
        operator,
        token: Some(token),
    }
}

/// The viewer of a page, or the response to give instead: with read authentication on,
/// a browser without a session is sent to the login page (and back afterwards).
#[allow(clippy::result_large_err)] // a Response is the error: returned at once to the browser
fn reader(console: &Console, shared: &Shared, headers: &HeaderMap, uri: &axum::http::Uri) -> Result<Viewer, Response> {
    let v = viewer(console, shared, headers);
    if access(shared).read_auth && v.role.is_none() {
        let next = super::urlencode(&super::here(uri));
        return Err(super::see_other(&format!("/ui/login?next={next}")));
    }
    Ok(v)
}

/// What every console page starts with, as an extractor: the console, the viewer checked
/// as a read ([`reader`]: a login page when read authentication is on and there is no
/// session), and when the request started (its `Server-Timing`).
pub struct Page {
    pub console: std::sync::Arc<Console>,
    pub viewer: Viewer,
    pub started: Instant,
}

/// What every console action starts with, as an extractor: the form, checked by
/// [`operator`] (an operator session, its CSRF token, no cross-site `Origin`), the viewer,
/// the token's name for the audit trail, and when the request started.
pub struct Action {
    pub console: Arc<Console>,
    pub viewer: Viewer,
    pub token: String,
    pub form: HashMap<String, String>,
    pub started: Instant,
}

impl axum::extract::FromRequest<Arc<Shared>> for Action {
    type Rejection = Response;

    async fn from_request(req: Request, shared: &Arc<Shared>) -> Result<Action, Response> {
        let started = Instant::now();
        let console = req.extensions().get::<Arc<Console>>().cloned().ok_or_else(|| {
            axum::response::IntoResponse::into_response((StatusCode::INTERNAL_SERVER_ERROR, "the console is not mounted"))
        })?;
        let headers = req.headers().clone();
        let Form(form) =
            Form::<HashMap<String, String>>::from_request(req, shared).await.map_err(axum::response::IntoResponse::into_response)?;
        let (viewer, token) = operator(&console, shared, &headers, &form, started)?;
        Ok(Action { console, viewer, token, form, started })
    }
}

impl axum::extract::FromRequestParts<std::sync::Arc<Shared>> for Page {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, shared: &std::sync::Arc<Shared>) -> Result<Page, Response> {
        let started = Instant::now();
        let console = parts.extensions.get::<std::sync::Arc<Console>>().cloned().ok_or_else(|| {
            axum::response::IntoResponse::into_response((StatusCode::INTERNAL_SERVER_ERROR, "the console is not mounted"))
        })?;
        let viewer = reader(&console, shared, &parts.headers, &parts.uri)?;
        Ok(Page { console, viewer, started })
    }
}

/// Checks a console form that changes something, as the API checks a POST: the session's
/// token must be one the API accepts for mutations, the form must carry the session's
/// CSRF token, and a browser's `Origin`, when sent, must be this host. Returns the viewer
/// and the token's name (for the audit trail).
///
/// # Errors
/// A 403 page saying what is missing.
#[allow(clippy::result_large_err)] // a Response is the error: returned at once to the browser
pub fn operator(
    console: &Console,
    shared: &Shared,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    started: Instant,
) -> Result<(Viewer, String), Response> {
    let v = viewer(console, shared, headers);
    let refuse = |why: String| Err(console.error(&v, StatusCode::FORBIDDEN, why, started));
    if let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        let origin = origin.to_str().unwrap_or("");
        let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
        if origin_host != host.to_str().unwrap_or("") {
            return refuse(format!("this form was sent from another site ({origin}); it is refused"));
        }
    }
    let (Some(id), Some(token)) = (&v.session, &v.token) else {
        return refuse("this action needs an operator token: log in first".into());
    };
    let given = form.get("csrf").map(String::as_str).unwrap_or("");
    if !crate::access::same_secret(given, &console.sessions.csrf(id)) {
        return refuse("the form's CSRF token is missing or wrong: reload the page and try again".into());
    }
    match access(shared).authorize(&Method::POST, &bearer(token)) {
        Ok(caller) => {
            let name = caller.token.unwrap_or_default();
            Ok((v, name))
        }
        Err(r) => refuse(r.message),
    }
}

/// `GET /ui/login`.
pub async fn login_page(
    State(shared): State<Arc<Shared>>,
    Extension(console): Extension<Arc<Console>>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let v = viewer(&console, &shared, req.headers());
    let ctx = serde_json::json!({
        "page": "login",
        "title": "Log in",
        "next": super::local_path(q.get("next").map(String::as_str)),
        "no_tokens": access(&shared).tokens.is_empty(),
        "read_auth": access(&shared).read_auth,
    });
    console.render("login.html", &v, ctx, started)
}

/// `POST /ui/login` (`token`, optional `name`, `next`): checks the token with the API's
/// rules and starts a session.
pub async fn login(
    State(shared): State<Arc<Shared>>,
    Extension(console): Extension<Arc<Console>>,
    tls: TlsFlag,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let started = Instant::now();
    if !console.logins.lock().unwrap_or_else(|e| e.into_inner()).allow(Instant::now()) {
        return console.error(
            &Viewer::default(),
            StatusCode::TOO_MANY_REQUESTS,
            "too many login attempts; wait a second and try again",
            started,
        );
    }
    let token = form.get("token").map(|t| t.trim().to_owned()).unwrap_or_default();
    let next = super::local_path(form.get("next").map(String::as_str));
    let rules = access(&shared);
    let valid = !token.is_empty() && rules.authorize(&Method::GET, &bearer(&token)).is_ok_and(|c| c.role.is_some());
    if !valid {
        tracing::warn!("console login refused: the token is not valid");
        let ctx = serde_json::json!({ "page": "login", "title": "Log in", "next": next, "failed": true, "no_tokens": rules.tokens.is_empty(), "read_auth": rules.read_auth });
        return console.render_status(StatusCode::UNAUTHORIZED, "login.html", &Viewer::default(), ctx, started);
    }
    let person = form.get("name").map(|n| n.trim().chars().take(64).collect::<String>()).filter(|n| !n.is_empty());
    let id = match console.sessions.create(token, person) {
        Ok(id) => id,
        Err(e) => {
            return console.error(&Viewer::default(), StatusCode::INTERNAL_SERVER_ERROR, format!("cannot start a session: {e}"), started)
        }
    };
    let secure = if tls.0 { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}");
    let mut r = super::see_other(&next);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `POST /ui/logout` (with the form's CSRF token): ends the session.
pub async fn logout(
    State(shared): State<Arc<Shared>>,
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let started = Instant::now();
    let v = viewer(&console, &shared, &headers);
    if let Some(id) = &v.session {
        if !crate::access::same_secret(form.get("csrf").map(String::as_str).unwrap_or(""), &console.sessions.csrf(id)) {
            return console.error(&v, StatusCode::FORBIDDEN, "the form's CSRF token is missing or wrong", started);
        }
        console.sessions.remove(id);
    }
    let mut r = super::see_other("/ui/login");
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_static("vigil_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"));
    r
}

/// Whether the request came over TLS (for the cookie's `Secure`).
#[derive(Clone, Copy, Debug)]
pub struct TlsFlag(pub bool);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for TlsFlag {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<TlsFlag, Self::Rejection> {
        Ok(TlsFlag(parts.extensions.get::<crate::server::listen::OverTls>().is_some()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_come_only_from_the_session_cookie() {
        let mut h = HeaderMap::new();
        let id = "a".repeat(64);
        h.insert(header::COOKIE, HeaderValue::from_str(&format!("x=1; {COOKIE}={id}; y=2")).unwrap());
        assert_eq!(session_id(&h), Some(id));
        h.insert(header::COOKIE, HeaderValue::from_static("vigil_session=short"));
        assert_eq!(session_id(&h), None);
    }

    #[test]
    fn csrf_tokens_are_per_session_and_per_process() {
        let (a, b) = (Sessions::new(), Sessions::new());
        let id = a.create("t".into(), None).unwrap();
        assert_eq!(a.csrf(&id), a.csrf(&id));
        assert_ne!(a.csrf(&id), a.csrf("other"));
        assert_ne!(a.csrf(&id), b.csrf(&id));
        assert_eq!(a.get(&id).map(|(t, _)| t), Some("t".to_owned()));
        a.remove(&id);
        assert!(a.get(&id).is_none());
    }
}
