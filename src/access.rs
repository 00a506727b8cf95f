//! Who may call the API: tokens with roles, optional read authentication, and the Host
//! header allowlist.
//!
//! - **Tokens** have a name and a role: `read` (every `GET` of the API and `/metrics`) or
//!   `operator` (also every mutation: ack, resolve, feedback, silences, reload). They come
//!   from `VIGIL_API_TOKEN` (an operator token named `operator`), `VIGIL_READ_TOKEN` (a
//!   read token named `reader`) and `--api-tokens FILE` (lines `NAME ROLE TOKEN`, `#`
//!   comments). A token is compared in constant time and never printed; the audit trail
//!   records the token's *name*.
//! - **Mutations** always need an operator token; with none configured they are disabled
//!   (403).
//! - **Reads** need a token when read authentication is on: `--read-auth`, or by default
//!   when the engine listens beyond loopback. `/healthz` and `/readyz` never do (probes),
//!   and webhook routes have their own authentication (`auth:` on the trigger).
//! - **Host header**: on a loopback listener only `localhost`, `127.0.0.1` and `[::1]`
//!   (any port) are accepted, which defeats DNS rebinding from a browser on the same
//!   machine; `--allowed-host NAME` replaces the list.

use std::path::Path;

use axum::http::{header, HeaderMap, Method, StatusCode};

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Read,
    Operator,
}

impl Role {
    fn parse(s: &str) -> Option<Role> {
        match s {
            "read" | "reader" => Some(Role::Read),
            "operator" | "write" => Some(Role::Operator),
            _ => None,
        }
    }
}

/// A named API token.
#[derive(Clone)]
pub struct Token {
    pub name: String,
    pub role: Role,
    secret: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("name", &self.name).field("role", &self.role).field("secret", &"<hidden>").finish()
    }
}

/// The caller of a request, once authenticated: put in the request's extensions.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token's name; `None` for an unauthenticated read.
    pub token: Option<String>,
    pub role: Option<Role>,
}

/// The access rules of one listener.
#[derive(Clone, Debug, Default)]
pub struct Access {
    pub tokens: Vec<Token>,
    pub read_auth: bool,
    /// Accepted Host names (without port), lowercase; `None`: any.
    pub allowed_hosts: Option<Vec<String>>,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

/// Compares in time independent of where the strings differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Access {
    /// Adds a token.
    ///
    /// # Errors
    /// An empty name or secret, or a name already used.
    pub fn add(&mut self, name: &str, role: Role, secret: &str) -> Result<(), String> {
        if name.is_empty() || secret.is_empty() {
            return Err("a token needs a name and a non-empty value".into());
        }
        if self.tokens.iter().any(|t| t.name == name) {
            return Err(format!("two tokens are named `{name}`"));
        }
        self.tokens.push(Token { name: name.to_owned(), role, secret: secret.to_owned() });
        Ok(())
    }

    /// Reads a tokens file: one `NAME ROLE TOKEN` per line (`ROLE`: read or operator),
    /// blank lines and `#` comments ignored.
    ///
    /// # Errors
    /// The file cannot be read, or a line is not of that form (its number is given; the
    /// token itself is never repeated).
    pub fn add_file(&mut self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the tokens file `{}`: {e}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            let at = || format!("{}:{}", path.display(), n + 1);
            let [name, role, secret] = parts[..] else {
                return Err(format!("{}: expected `NAME ROLE TOKEN` (ROLE: read or operator)", at()));
            };
            let role = Role::parse(role).ok_or_else(|| format!("{}: unknown role `{role}`: use read or operator", at()))?;
            self.add(name, role, secret).map_err(|e| format!("{}: {e}", at()))?;
        }
        Ok(())
    }

    /// The loopback Host names, the default allowlist of a loopback listener.
    pub fn loopback_hosts() -> Vec<String> {
        ["localhost", "127.0.0.1", "[::1]", "::1"].iter().map(|s| (*s).to_owned()).collect()
    }

    fn token_of(&self, headers: &HeaderMap) -> Option<&Token> {
        let given = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")?.trim();
        // Every token is compared, so the time taken does not tell which one matched.
        let mut found = None;
        for t in &self.tokens {
            if same_secret(given, &t.secret) {
                found = Some(t);
            }
        }
        found
    }

    /// Checks the Host header.
    ///
    /// # Errors
    /// A Host not on the allowlist (or missing while one is set).
    pub fn check_host(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(allowed) = &self.allowed_hosts else { return Ok(()) };
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        let name = if host.starts_with('[') {
            host.split_inclusive(']').next().unwrap_or("")
        } else {
            host.rsplit_once(':')
                .map_or(host.as_str(), |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host.as_str() })
        };
        if allowed.iter().any(|a| a == name) {
            Ok(())
        } else {
            Err(Refusal {
                status: StatusCode::MISDIRECTED_REQUEST,
                message: format!("the Host `{name}` is not served here (start vigil with --allowed-host to add it)"),
            })
        }
    }

    /// Authorises an API request (`/api/…` or `/metrics`).
    ///
    /// # Errors
    /// A missing or wrong token where one is needed, or a read token for a mutation.
    pub fn authorize(&self, method: &Method, headers: &HeaderMap) -> Result<Caller, Refusal> {
        let mutation = !(method == Method::GET || method == Method::HEAD || method == Method::OPTIONS);
        let token = self.token_of(headers);
        let has_header = headers.contains_key(header::AUTHORIZATION);
        if has_header && token.is_none() {
            return Err(Refusal { status: StatusCode::UNAUTHORIZED, message: "the bearer token is not valid".into() });
        }
        let caller = Caller { token: token.map(|t| t.name.clone()), role: token.map(|t| t.role) };
        if mutation {
            if !self.tokens.iter().any(|t| t.role == Role::Operator) {
                return Err(Refusal {
                    status: StatusCode::FORBIDDEN,
                    message: "mutating API calls are disabled: start vigil with VIGIL_API_TOKEN set (or an operator token in --api-tokens)"
                        .into(),
                });
            }
            return match caller.role {
                Some(Role::Operator) => Ok(caller),
                Some(Role::Read) => Err(Refusal {
                    status: StatusCode::FORBIDDEN,
                    message: "this token may only read; the call needs an operator token".into(),
                }),
                None => {
                    Err(Refusal { status: StatusCode::UNAUTHORIZED, message: "a valid `Authorization: Bearer <token>` is required".into() })
                }
            };
        }
        if self.read_auth && caller.role.is_none() {
            return Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                message: "reading the API needs a token here: `Authorization: Bearer <token>`".into(),
            });
        }
        Ok(caller)
    }
}

/// A token bucket: `rate` requests per second, bursts of as many.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    tokens: f64,
    last: Option<std::time::Instant>,
}

impl RateLimiter {
    pub fn new(rate: f64) -> RateLimiter {
        RateLimiter { rate, tokens: rate, last: None }
    }

    /// Whether a request at `now` may go on (taking a token).
    pub fn allow(&mut self, now: std::time::Instant) -> bool {
        if let Some(last) = self.last {
            self.tokens = (self.tokens + now.saturating_duration_since(last).as_secs_f64() * self.rate).min(self.rate);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_allows_bursts_then_the_rate() {
        let mut r = RateLimiter::new(3.0);
        let t0 = std::time::Instant::now();
        assert_eq!((0..5).filter(|_| r.allow(t0)).count(), 3);
        assert!(r.allow(t0 + std::time::Duration::from_millis(340)));
        assert!(!r.allow(t0 + std::time::Duration::from_millis(350)));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn access() -> Access {
        let mut a = Access::default();
        a.add("ops", Role::Operator, "s3cret-op").unwrap();
        a.add("grafana", Role::Read, "s3cret-read").unwrap();
        a
    }

    #[test]
    fn roles_decide_what_a_token_may_do() {
        let a = access();
        let op = headers(&[("authorization", "Bearer s3cret-op")]);
        let read = headers(&[("authorization", "Bearer s3cret-read")]);
        assert_eq!(a.authorize(&Method::POST, &op).unwrap().token.as_deref(), Some("ops"));
        assert_eq!(a.authorize(&Method::POST, &read).unwrap_err().status, StatusCode::FORBIDDEN);
        assert_eq!(a.authorize(&Method::POST, &HeaderMap::new()).unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert_eq!(a.authorize(&Method::GET, &read).unwrap().token.as_deref(), Some("grafana"));
        assert!(a.authorize(&Method::GET, &HeaderMap::new()).is_ok(), "reads are open without --read-auth");
        let wrong = headers(&[("authorization", "Bearer nope")]);
        assert_eq!(a.authorize(&Method::GET, &wrong).unwrap_err().status, StatusCode::UNAUTHORIZED);
        let a = Access { read_auth: true, ..access() };
        assert_eq!(a.authorize(&Method::GET, &HeaderMap::new()).unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert!(a.authorize(&Method::GET, &read).is_ok());
    }

    #[test]
    fn without_an_operator_token_mutations_are_disabled() {
        let mut a = Access::default();
        a.add("grafana", Role::Read, "r").unwrap();
        let e = a.authorize(&Method::POST, &headers(&[("authorization", "Bearer r")])).unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert!(e.message.contains("VIGIL_API_TOKEN"), "{}", e.message);
    }

    #[test]
    fn host_allowlist_defeats_dns_rebinding() {
        let a = Access { allowed_hosts: Some(Access::loopback_hosts()), ..Access::default() };
        for ok in ["127.0.0.1:8080", "localhost", "LOCALHOST:1", "[::1]:8080"] {
            assert!(a.check_host(&headers(&[("host", ok)])).is_ok(), "{ok}");
        }
        for bad in ["evil.example:8080", "127.0.0.1.evil.example", ""] {
            assert_eq!(a.check_host(&headers(&[("host", bad)])).unwrap_err().status, StatusCode::MISDIRECTED_REQUEST, "{bad}");
        }
        assert!(a.check_host(&HeaderMap::new()).is_err());
    }

    #[test]
    fn tokens_file_errors_name_the_line_never_the_token() {
        let dir = std::env::temp_dir().join(format!("vigil-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("tokens");
        std::fs::write(&f, "# comment\nops operator abc\n\nbad line-with-secret-xyz\n").unwrap();
        let e = Access::default().add_file(&f).unwrap_err();
        assert!(e.ends_with(":4: expected `NAME ROLE TOKEN` (ROLE: read or operator)"), "{e}");
        assert!(!e.contains("xyz"));
        std::fs::write(&f, "ops boss abc\n").unwrap();
        assert!(Access::default().add_file(&f).unwrap_err().contains("unknown role `boss`"));
        std::fs::write(&f, "ops operator abc\ngrafana read def\n").unwrap();
        let mut a = Access::default();
        a.add_file(&f).unwrap();
        assert_eq!(a.tokens.len(), 2);
        assert!(!format!("{a:?}").contains("abc"), "tokens never printed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
