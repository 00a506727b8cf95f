//! The channels a respond stage notifies through, and how each one sends.
//!
//! A [`Channel`] is built with its stage (secrets resolved then, never logged) and sends
//! one [`Notification`] at a time, answering what happened: sent, worth retrying
//! (network errors, timeouts, HTTP 5xx and 429, transient SMTP replies), or failed for
//! good (other 4xx, permanent SMTP replies, a program that does not exist or fails).

use std::collections::BTreeMap;
use std::time::Duration;

use hmac::{Hmac, Mac};
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::Message;
use sha2::Sha256;

use super::{Incident, Notification};
use crate::expr::Template;

/// What a send did.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Delivered (with what the receiver said, for the audit trail).
    Sent(String),
    /// Not delivered; a later attempt may succeed.
    Retry(String),
    /// Not delivered, and retrying will not help.
    Fail(String),
}

/// SMTP settings from the `smtp` secret (`smtp://user:password@host:port`), and the
/// idle connections kept for the next mail.
///
/// Connections are made here rather than by lettre's transport so that they are
/// `TCP_NODELAY`: lettre writes a message and its terminating `.` in two writes, and with
/// Nagle's algorithm the second waits for the server's delayed ACK — 40 ms on every mail.
pub struct Smtp {
    host: String,
    port: u16,
    tls: SmtpTls,
    /// The certificate check for STARTTLS (lettre's parameters) and for implicit TLS.
    starttls: Option<TlsParameters>,
    tls_config: std::sync::Arc<rustls::ClientConfig>,
    credentials: Option<Credentials>,
    timeout: Duration,
    /// Idle connections with the time they went idle.
    idle: tokio::sync::Mutex<Vec<(AsyncSmtpConnection, std::time::Instant)>>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
}

/// How an SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq)]
enum SmtpTls {
    /// Plain text (`tls: "none"`; loopback relays and tests).
    None,
    /// STARTTLS after the greeting (the default; port 587).
    StartTls,
    /// TLS from the first byte (`tls: "tls"` or `smtps://`; port 465).
    Tls,
}

/// Idle SMTP connections kept per channel.
const SMTP_IDLE: usize = 4;

/// How long an idle SMTP connection is reused: servers drop idle clients after a while
/// (RFC 5321 asks for at least 5 minutes), and a connection that died silently would only
/// be noticed through the send timeout.
const SMTP_IDLE_FOR: Duration = Duration::from_secs(30);

/// How a channel delivers.
pub enum Kind {
    Log { outbox: Option<std::path::PathBuf> },
    Email(Box<Smtp>),
    Webhook { url: String, secret: Option<String>, client: reqwest::Client },
    Slack { url: String, client: reqwest::Client },
    PagerDuty { routing_key: String, severity: String, url: String, client: reqwest::Client },
    Alertmanager { url: String, labels: BTreeMap<String, String>, annotations: Vec<(String, Template)>, client: reqwest::Client },
    Exec(Box<Exec>),
}

/// An `exec` remediation.
pub struct Exec {
    pub argv: Vec<Template>,
    pub timeout: Duration,
    pub env: Vec<String>,
    /// Every value a template puts into an argument must match this, else the run is
    /// refused (and audited).
    pub allow: regex::Regex,
    /// Run again after a crash interrupted it (default: at most once).
    pub retry_on_crash: bool,
}

/// The values a template may put into a command's arguments by default: a word of
/// letters, digits and `._:@=+-` that does not start with `-` (no spaces, no slashes, no
/// option). `allow:` on the stage replaces it.
pub const DEFAULT_EXEC_ALLOW: &str = "^[A-Za-z0-9_][A-Za-z0-9._:@=+-]*$";

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Log { .. } => "log",
            Kind::Email(_) => "email",
            Kind::Webhook { .. } => "webhook",
            Kind::Slack { .. } => "slack",
            Kind::PagerDuty { .. } => "pagerduty",
            Kind::Alertmanager { .. } => "alertmanager",
            Kind::Exec(_) => "exec",
        }
    }

    /// Where it delivers, for logs: never a secret (Slack's and PagerDuty's URLs and keys
    /// are secrets; a URL's query string may hold one).
    pub fn destination(&self) -> String {
        let no_query = |u: &str| u.split(['?', '#']).next().unwrap_or("").to_owned();
        match self {
            Kind::Log { .. } => "console".into(),
            Kind::Email(s) => s.to.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            Kind::Webhook { url, .. } | Kind::Alertmanager { url, .. } => no_query(url),
            Kind::Slack { .. } => "slack".into(),
            Kind::PagerDuty { .. } => "pagerduty".into(),
            Kind::Exec(x) => x.argv.first().map(|a| a.source().to_owned()).unwrap_or_default(),
        }
    }

    /// Whether an interrupted send runs again after a restart: every channel but an
    /// `exec` remediation without `retry_on_crash`.
    pub fn retries_on_crash(&self) -> bool {
        !matches!(self, Kind::Exec(x) if !x.retry_on_crash)
    }

    /// Channels told about acknowledgements: PagerDuty (`acknowledge` events), webhooks
    /// (`transition: "acknowledged"`), Slack and the log. Email, Alertmanager and
    /// remediation commands are not (an alert has no acknowledged state, and a command
    /// must not run again).
    pub fn knows_acknowledgements(&self) -> bool {
        matches!(self, Kind::PagerDuty { .. } | Kind::Webhook { .. } | Kind::Slack { .. } | Kind::Log { .. })
    }
}

/// A respond stage's channel: how it delivers, and its message templates.
pub struct Channel {
    pub kind: Kind,
    pub subject: Template,
    pub body: Option<Template>,
}

const DEFAULT_BODY: &str = "Incident {{ incident.key }} is {{ incident.status }}.\n\nPipeline: {{ pipeline }}\nStage: {{ stage }}\nSeries: {{ incident.series }}\nScore: {{ incident.score }}\nValue: {{ incident.value }}\nOpened: {{ incident.opened_at }}\nUpdated: {{ incident.timestamp }}\nIncident id: {{ incident.id }}\n{% if incident.samples %}\nSample lines:\n{% for s in incident.samples %}{{ s }}\n{% endfor %}{% endif %}";

/// The subject sent when a stage's own template fails to render.
const FALLBACK_SUBJECT: &str = "[vigil] {{ incident.key }} is {{ incident.status }} ({{ transition }})";

impl Channel {
    /// Renders the subject (the whole message for single-text channels) and body. A
    /// template that fails to render is replaced by the default message (the incident's
    /// key, status and details), so the notification still says what happened and never
    /// carries an error text; the errors are returned for the audit trail.
    pub fn render(&self, i: &Incident, transition: &str) -> (String, String, Vec<String>) {
        let ctx = i.template_context(transition);
        let mut errors = Vec::new();
        let mut render = |t: &Template, fallback: &str| match t.try_render(&ctx) {
            Ok(s) => s,
            Err(e) => {
                errors.push(format!("`{}`: {e}", t.source()));
                Template::new(fallback).map(|f| f.render(&ctx)).unwrap_or_default()
            }
        };
        let subject = render(&self.subject, FALLBACK_SUBJECT);
        let body = match &self.body {
            Some(b) => render(b, DEFAULT_BODY),
            None => Template::new(DEFAULT_BODY).map(|t| t.render(&ctx)).unwrap_or_default(),
        };
        (subject, body, errors)
    }

    /// What `--dry-run` prints for a notification.
    pub fn describe(&self, n: &Notification) -> String {
        match &self.kind {
            Kind::Email(s) => format!(
                "email to {}: {} ({})",
                s.to.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                n.subject,
                n.transition
            ),
            Kind::Exec(x) => match exec_args(x, n) {
                Ok(args) => format!("exec {args:?}"),
                Err(why) => format!("exec refused: {why}"),
            },
            Kind::Webhook { url, .. } | Kind::Alertmanager { url, .. } | Kind::PagerDuty { url, .. } => {
                let mut body = self.payload(n).unwrap_or_default();
                // The routing key is a secret: never printed.
                if body.get("routing_key").is_some() {
                    body["routing_key"] = "***".into();
                }
                format!("{} POST {url}: {body}", self.kind.name())
            }
            Kind::Slack { .. } => format!("slack: {}", n.subject),
            Kind::Log { .. } => format!("log: {}", n.subject),
        }
    }

    /// The JSON body of HTTP channels.
    pub fn payload(&self, n: &Notification) -> Option<serde_json::Value> {
        let i = &n.incident;
        Some(match &self.kind {
            Kind::Webhook { .. } => serde_json::json!({
                "version": "1", "transition": n.transition,
                "status": if n.transition == "acknowledged" { "acknowledged" } else { i.status.as_str() },
                "subject": n.subject, "body": n.body, "incident": i,
            }),
            Kind::Slack { .. } => serde_json::json!({
                "text": n.subject,
                "blocks": [
                    { "type": "section", "text": { "type": "mrkdwn", "text": format!("*{}*", n.subject) } },
                    { "type": "section", "text": { "type": "mrkdwn", "text": format!("```{}```", n.body) } },
                ],
            }),
            Kind::PagerDuty { routing_key, severity, .. } => {
                let action = match n.transition.as_str() {
                    "resolved" => "resolve",
                    "acknowledged" => "acknowledge",
                    _ => "trigger",
                };
                let mut v = serde_json::json!({ "routing_key": routing_key, "event_action": action, "dedup_key": i.key });
                if action == "trigger" {
                    v["payload"] = serde_json::json!({
                        "summary": n.subject, "source": format!("vigil/{}", i.pipeline), "severity": severity,
                        "timestamp": crate::time::format_rfc3339(i.updated_at),
                        "custom_details": { "incident": i.id, "series": i.series, "score": i.score, "value": i.value, "labels": i.labels },
                    });
                }
                v
            }
            Kind::Alertmanager { labels, annotations, .. } => {
                let ctx = i.template_context(&n.transition);
                let mut l: BTreeMap<String, String> = i.labels.clone();
                l.insert("alertname".into(), "VigilIncident".into());
                l.insert("pipeline".into(), i.pipeline.clone());
                l.insert("stage".into(), i.stage.clone());
                l.insert("incident".into(), i.key.clone());
                l.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                let mut a: BTreeMap<String, String> = annotations.iter().map(|(k, t)| (k.clone(), t.render(&ctx))).collect();
                a.entry("summary".into()).or_insert_with(|| n.subject.clone());
                a.entry("description".into()).or_insert_with(|| n.body.clone());
                let mut alert = serde_json::json!({
                    "labels": l, "annotations": a, "startsAt": crate::time::format_rfc3339(i.opened_at),
                    "generatorURL": format!("vigil://{}/{}", i.pipeline, i.stage),
                });
                match i.resolved_at {
                    // Resolved: ended now (or when the data said, if earlier).
                    Some(t) if i.status == "resolved" => alert["endsAt"] = crate::time::format_rfc3339(t.min(crate::time::now_ms())).into(),
                    // While firing: valid for a while past the next re-send.
                    _ => alert["endsAt"] = crate::time::format_rfc3339(crate::time::now_ms() + 3_600_000).into(),
                }
                serde_json::json!([alert])
            }
            Kind::Log { .. } | Kind::Email(_) | Kind::Exec(_) => return None,
        })
    }

    /// Sends one notification.
    pub async fn send(&self, n: &Notification) -> Outcome {
        match &self.kind {
            Kind::Log { outbox } => {
                let i = &n.incident;
                tracing::info!(target: "vigil::incident", pipeline = %i.pipeline, stage = %i.stage, status = %i.status, key = %i.key, "{}", n.subject);
                if let Some(path) = outbox {
                    let update = super::IncidentUpdate {
                        id: i.id.clone(),
                        stage: i.stage.clone(),
                        labels: i.labels.clone(),
                        key: i.key.clone(),
                        status: i.status.clone(),
                        series: i.series.first().cloned().unwrap_or_default(),
                        score: i.score,
                        value: i.value,
                        ts: i.updated_at,
                    };
                    let record = serde_json::json!({
                        "channel": "log", "pipeline": i.pipeline, "stage": i.stage, "message": n.subject,
                        "transition": n.transition, "incident": i.id, "update": update,
                    });
                    if let Err(e) = super::append_line(path, &record.to_string()) {
                        return Outcome::Retry(format!("cannot append to `{}`: {e}", path.display()));
                    }
                }
                Outcome::Sent("logged".into())
            }
            Kind::Email(smtp) => send_email(smtp, n).await,
            Kind::Webhook { url, secret, client } => {
                let body = self.payload(n).unwrap_or_default().to_string();
                let mut req = client.post(url).header("content-type", "application/json").header("x-vigil-delivery", &n.dedupe);
                if let Some(key) = secret {
                    req = req.header("x-vigil-signature", format!("sha256={}", sign(key.as_bytes(), body.as_bytes())));
                }
                http_outcome(req.body(body).send().await).await
            }
            Kind::Slack { url, client } | Kind::PagerDuty { url, client, .. } | Kind::Alertmanager { url, client, .. } => {
                let target = match &self.kind {
                    Kind::Alertmanager { .. } => format!("{}/api/v2/alerts", url.trim_end_matches('/')),
                    _ => url.clone(),
                };
                let body = self.payload(n).unwrap_or_default();
                http_outcome(client.post(&target).json(&body).send().await).await
            }
            Kind::Exec(x) => run_exec(x, n).await,
        }
    }
}

/// HMAC-SHA256 of `body` under `key`, hex.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

async fn http_outcome(r: Result<reqwest::Response, reqwest::Error>) -> Outcome {
    match r {
        Err(e) => Outcome::Retry(format!("request failed: {}", without_url(&e))),
        Ok(resp) => {
            let code = resp.status();
            let text: String = resp.text().await.unwrap_or_default().chars().take(300).collect();
            if code.is_success() {
                Outcome::Sent(format!("HTTP {}", code.as_u16()))
            } else if code.as_u16() == 429 || code.is_server_error() {
                Outcome::Retry(format!("HTTP {}: {text}", code.as_u16()))
            } else {
                Outcome::Fail(format!("HTTP {}: {text}", code.as_u16()))
            }
        }
    }
}

/// A reqwest error without its URL (a Slack webhook URL is a credential).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "error"
    };
    let mut src = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = src {
        detail = s.to_string();
        src = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

/// Parses the SMTP secret and builds the transport. Errors never contain the password.
///
/// `ca` is a PEM bundle of the authorities that sign the server's certificate (an internal
/// CA); they replace the public web PKI roots for this server.
///
/// # Errors
/// When the URL, an address, the CA bundle or the TLS settings are invalid.
pub fn smtp(url: &str, tls: &str, from: &str, to: &[String], ca: Option<&[u8]>, timeout: Duration) -> Result<Smtp, String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("the smtp secret is not a URL ({e}); expected smtp://user:password@host:port"))?;
    if !matches!(u.scheme(), "smtp" | "smtps") {
        return Err(format!("the smtp secret must start with smtp:// or smtps://, not {}://", u.scheme()));
    }
    // `[::1]` in a URL is `::1` to connect to.
    let host = u.host_str().ok_or("the smtp secret has no host")?.trim_start_matches('[').trim_end_matches(']').to_owned();
    let tls = match if u.scheme() == "smtps" { "tls" } else { tls } {
        "none" => SmtpTls::None,
        "tls" => SmtpTls::Tls,
        _ => SmtpTls::StartTls,
    };
    let port = u.port().unwrap_or(match tls {
        SmtpTls::Tls => 465,
        SmtpTls::None => 25,
        SmtpTls::StartTls => 587,
    });
    let credentials =
        (!u.username().is_empty()).then(|| Credentials::new(percent_decode(u.username()), percent_decode(u.password().unwrap_or(""))));
    let from: Mailbox = from.parse().map_err(|e| format!("`from` is not an email address: {e}"))?;
    let to = to
        .iter()
        .map(|a| a.parse::<Mailbox>().map_err(|e| format!("`{a}` is not an email address: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if to.is_empty() {
        return Err("`to` names no recipient".into());
    }
    let authorities = match ca {
        None => None,
        Some(_) if tls == SmtpTls::None => return Err("`ca` is set but `tls` is \"none\": nothing would check it".into()),
        Some(pem) => Some(ca_certificates(pem)?),
    };
    let starttls = match (tls, &authorities) {
        (SmtpTls::StartTls, None) => Some(TlsParameters::new(host.clone()).map_err(|e| format!("TLS setup for {host}: {e}"))?),
        (SmtpTls::StartTls, Some(certs)) => {
            let mut b = TlsParameters::builder(host.clone()).certificate_store(lettre::transport::smtp::client::CertificateStore::None);
            for der in certs {
                b = b.add_root_certificate(
                    lettre::transport::smtp::client::Certificate::from_der(der.to_vec()).map_err(|e| format!("`ca`: {e}"))?,
                );
            }
            Some(b.build_rustls().map_err(|e| format!("TLS setup for {host}: {e}"))?)
        }
        _ => None,
    };
    if tls == SmtpTls::Tls {
        rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| format!("TLS with `{host}`: {e}"))?;
    }
    let tls_config = tls_client_config(authorities.as_deref())?;
    Ok(Smtp { host, port, tls, starttls, tls_config, credentials, timeout, idle: tokio::sync::Mutex::new(Vec::new()), from, to })
}

/// The certificates of a PEM bundle; an error when it holds none.
fn ca_certificates(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("`ca` is not a PEM certificate bundle: {e}"))?;
    if certs.is_empty() {
        return Err("`ca` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)".into());
    }
    Ok(certs)
}

/// A rustls client configuration trusting `authorities`, or the web PKI roots.
fn tls_client_config(
    authorities: Option<&[rustls::pki_types::CertificateDer<'static>]>,
) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    static WEB_PKI: std::sync::OnceLock<std::sync::Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    let build = |roots: rustls::RootCertStore| {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        std::sync::Arc::new(config)
    };
    match authorities {
        None => Ok(WEB_PKI.get_or_init(|| build(rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() })).clone()),
        Some(certs) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs {
                roots.add(c.clone()).map_err(|e| format!("`ca`: {e}"))?;
            }
            Ok(build(roots))
        }
    }
}

impl Smtp {
    /// A new connection: TCP with `TCP_NODELAY`, TLS as configured, EHLO, and
    /// authentication when the URL names a user.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SmtpError> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await.map_err(|e| SmtpError::Io(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let hello = ClientId::default();
        let mut conn = match self.tls {
            SmtpTls::Tls => {
                let stream = SmtpsStream(tls_connect(&self.tls_config, &self.host, tcp).await?);
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello).await?
            }
            _ => AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello).await?,
        };
        if let Some(params) = &self.starttls {
            if !conn.can_starttls() {
                return Err(SmtpError::Permanent(format!(
                    "{} does not offer STARTTLS (set `tls: \"none\"` for a plain-text relay)",
                    self.host
                )));
            }
            conn.starttls(params.clone(), &hello).await?;
        }
        if let Some(c) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], c).await?;
        }
        Ok(conn)
    }

    /// Sends one message on an idle connection (or a new one); a reused connection that
    /// turns out to be closed is replaced once.
    async fn send(
        &self,
        envelope: &lettre::address::Envelope,
        body: &[u8],
    ) -> Result<lettre::transport::smtp::response::Response, SmtpError> {
        let reused = {
            let mut idle = self.idle.lock().await;
            idle.retain(|(_, since)| since.elapsed() < SMTP_IDLE_FOR);
            idle.pop().map(|(c, _)| c)
        };
        let mut conn = match reused {
            Some(mut c) => match c.send(envelope, body).await {
                Ok(r) => {
                    self.keep(c).await;
                    return Ok(r);
                }
                Err(e) if e.is_permanent() => {
                    self.keep(c).await;
                    return Err(e.into());
                }
                Err(_) => {
                    c.abort().await;
                    self.connect().await?
                }
            },
            None => self.connect().await?,
        };
        let r = conn.send(envelope, body).await;
        match &r {
            Err(e) if !e.is_permanent() => conn.abort().await,
            _ => self.keep(conn).await,
        }
        Ok(r?)
    }

    async fn keep(&self, conn: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().await;
        if !conn.has_broken() && idle.len() < SMTP_IDLE {
            idle.push((conn, std::time::Instant::now()));
        }
    }
}

/// An SMTP failure, sorted by whether a retry can help.
enum SmtpError {
    Io(String),
    Permanent(String),
    Smtp(lettre::transport::smtp::Error),
}

impl From<lettre::transport::smtp::Error> for SmtpError {
    fn from(e: lettre::transport::smtp::Error) -> Self {
        SmtpError::Smtp(e)
    }
}

/// A TLS stream lettre can drive (it takes any [`AsyncTokioStream`]).
///
/// [`AsyncTokioStream`]: lettre::transport::smtp::client::AsyncTokioStream
#[derive(Debug)]
struct SmtpsStream(tokio_rustls::client::TlsStream<tokio::net::TcpStream>);

impl tokio::io::AsyncRead for SmtpsStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SmtpsStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl lettre::transport::smtp::client::AsyncTokioStream for SmtpsStream {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

/// Implicit TLS (`smtps://`) over a connected socket, checked against `config`'s roots.
async fn tls_connect(
    config: &std::sync::Arc<rustls::ClientConfig>,
    host: &str,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, SmtpError> {
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| SmtpError::Permanent(format!("`{host}`: {e}")))?;
    tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await.map_err(|e| {
        if bad_certificate(&e) {
            SmtpError::Permanent(format!("TLS with {host}: {e}"))
        } else {
            SmtpError::Io(format!("TLS with {host}: {e}"))
        }
    })
}

/// Whether `e` (or an error behind it) is a certificate the server will keep presenting:
/// not worth retrying.
fn bad_certificate(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        // An `io::Error`'s `source()` skips the error it wraps: look inside it too.
        let inner = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|i| i as &(dyn std::error::Error + 'static));
        for candidate in [Some(err), inner].into_iter().flatten() {
            if let Some(r) = candidate.downcast_ref::<rustls::Error>() {
                if matches!(r, rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented) {
                    return true;
                }
            }
        }
        cur = inner.and_then(|i| i.source()).or_else(|| err.source());
    }
    false
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The Message-ID of an incident's transition: one thread per incident.
pub fn message_id(incident: &str, transition: &str) -> String {
    format!("<{incident}.{transition}@vigil>")
}

async fn send_email(smtp: &Smtp, n: &Notification) -> Outcome {
    let mut b =
        Message::builder().from(smtp.from.clone()).subject(n.subject.clone()).message_id(Some(message_id(&n.incident_id, &n.transition)));
    for to in &smtp.to {
        b = b.to(to.clone());
    }
    if n.transition != "firing" {
        let root = message_id(&n.incident_id, "firing");
        b = b.in_reply_to(root.clone()).references(root);
    }
    let html = format!("<html><body><h3>{}</h3><pre>{}</pre></body></html>", escape_html(&n.subject), escape_html(&n.body));
    let msg = match b.multipart(
        MultiPart::alternative()
            .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(n.body.clone()))
            .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html)),
    ) {
        Ok(m) => m,
        Err(e) => return Outcome::Fail(format!("cannot build the message: {e}")),
    };
    let envelope = msg.envelope().clone();
    let body = msg.formatted();
    match tokio::time::timeout(smtp.timeout, smtp.send(&envelope, &body)).await {
        Err(_) => Outcome::Retry(format!("SMTP: no answer from {}:{} within {} ms", smtp.host, smtp.port, smtp.timeout.as_millis())),
        Ok(Ok(r)) => Outcome::Sent(format!("SMTP {}", r.code())),
        Ok(Err(SmtpError::Io(e))) => Outcome::Retry(format!("SMTP: cannot reach {}:{}: {e}", smtp.host, smtp.port)),
        Ok(Err(SmtpError::Permanent(e))) => Outcome::Fail(format!("SMTP: {e}")),
        // A permanent reply, or a client-side refusal (no common authentication mechanism,
        // an address the server cannot take): a retry would fail the same way.
        Ok(Err(SmtpError::Smtp(e))) if e.is_permanent() || e.is_client() || bad_certificate(&e) => Outcome::Fail(format!("SMTP: {e}")),
        Ok(Err(SmtpError::Smtp(e))) => Outcome::Retry(format!("SMTP: {e}")),
    }
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Output kept in the audit trail, per stream.
const EXEC_OUTPUT: usize = 4096;

/// The command's arguments for a notification; refused when a template put in a value
/// the stage's `allow` pattern does not match, or made an argument start with `-` that
/// its literal text does not.
///
/// # Errors
/// Why the arguments are refused (the offending value shortened).
pub fn exec_args(x: &Exec, n: &Notification) -> Result<Vec<String>, String> {
    let ctx = n.incident.template_context(&n.transition);
    let mut out = Vec::with_capacity(x.argv.len());
    for (i, t) in x.argv.iter().enumerate() {
        let arg = t.render_values(&ctx, &x.allow).map_err(|e| format!("argument {i} (`{}`): {e}", t.source()))?;
        if arg.starts_with('-') && !t.source().starts_with('-') {
            return Err(format!("argument {i} (`{}`) would start with `-`, which its template does not: refused", t.source()));
        }
        out.push(arg);
    }
    Ok(out)
}

/// Sends SIGKILL to a process group unless disarmed: a command that outlives its
/// timeout, or whose send is dropped, takes its children with it.
struct GroupKill(Option<i32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // SAFETY: kill(2) with a negative pid signals a process group; no memory is
            // touched.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

/// Spawns commands from one long-lived thread: a parent-death signal is tied to the
/// thread that forked, and the runtime's worker threads can end.
fn spawn_on_spawner(cmd: tokio::process::Command) -> std::io::Result<tokio::process::Child> {
    type Job = (tokio::process::Command, tokio::runtime::Handle, std::sync::mpsc::SyncSender<std::io::Result<tokio::process::Child>>);
    static SPAWNER: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Job>>> = std::sync::OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("vigil-exec-spawner".into())
            .spawn(move || {
                for (mut cmd, handle, reply) in rx {
                    let _guard = handle.enter();
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("starting the exec spawner thread");
        std::sync::Mutex::new(tx)
    });
    let (reply, answer) = std::sync::mpsc::sync_channel(1);
    let handle = tokio::runtime::Handle::current();
    tx.lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, handle, reply))
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    answer.recv().map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

async fn run_exec(x: &Exec, n: &Notification) -> Outcome {
    let args = match exec_args(x, n) {
        Ok(a) => a,
        Err(why) => return Outcome::Fail(format!("not run: {why}")),
    };
    let Some((program, rest)) = args.split_first() else { return Outcome::Fail("the command is empty".into()) };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(rest).env_clear().kill_on_drop(true).stdin(std::process::Stdio::null());
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    for name in &x.env {
        if let Ok(v) = std::env::var(name) {
            cmd.env(name, v);
        }
    }
    cmd.env("VIGIL_INCIDENT", &n.incident.id).env("VIGIL_TRANSITION", &n.transition).env("VIGIL_KEY", &n.incident.key);
    // Its own process group (killed whole on timeout), and killed if the engine dies.
    cmd.process_group(0);
    let parent = std::process::id() as i32;
    // SAFETY: between fork and exec only async-signal-safe calls: prctl, getppid, _exit.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                // The engine died before the signal was armed.
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let child = match spawn_on_spawner(cmd) {
        Ok(c) => c,
        Err(e) => return Outcome::Fail(format!("cannot run `{program}`: {e}")),
    };
    let mut group = GroupKill(child.id().map(|p| p as i32));
    let result = tokio::time::timeout(x.timeout, child.wait_with_output()).await;
    match result {
        Err(_) => Outcome::Fail(format!("`{program}` did not finish within {} ms and was killed", x.timeout.as_millis())),
        Ok(Err(e)) => Outcome::Fail(format!("`{program}` failed: {e}")),
        Ok(Ok(out)) => {
            // Finished: what it started in the background is its business.
            group.0 = None;
            let cut = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(EXEC_OUTPUT)]).into_owned();
            let detail = format!(
                "exit {}; stdout: {}; stderr: {}",
                out.status.code().map_or("signal".into(), |c| c.to_string()),
                cut(&out.stdout),
                cut(&out.stderr)
            );
            if out.status.success() {
                Outcome::Sent(detail)
            } else {
                Outcome::Fail(detail)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_runs_never_print_the_pagerduty_routing_key() {
        let c = Channel {
            kind: Kind::PagerDuty {
                routing_key: "R0UTING-SECRET".into(),
                severity: "error".into(),
                url: "https://events.pagerduty.com/v2/enqueue".into(),
                client: reqwest::Client::new(),
            },
            subject: Template::new("{{ incident.status }}").unwrap(),
            body: None,
        };
        let i = crate::respond::Incident {
            id: "i1".into(),
            key: "k".into(),
            pipeline: "p".into(),
            stage: "p.page".into(),
            series: vec!["s".into()],
            labels: Default::default(),
            status: "firing".into(),
            acknowledged: false,
            acknowledged_by: None,
            acknowledged_at: None,
            opened_at: 0,
            updated_at: 0,
            resolved_at: None,
            resolved_by: None,
            score: 1.0,
            value: 1.0,
            silenced: false,
            feedback: None,
            feedback_note: None,
            notifications: 0,
            last_notified_at: None,
            samples: Vec::new(),
        };
        let n = Notification {
            dedupe: "d".into(),
            incident_id: "i1".into(),
            stage: "p.page".into(),
            channel: "pagerduty".into(),
            transition: "firing".into(),
            subject: "firing".into(),
            body: String::new(),
            incident: i,
        };
        let shown = c.describe(&n);
        assert!(!shown.contains("R0UTING-SECRET") && shown.contains("\"routing_key\":\"***\""), "{shown}");
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        assert_eq!(sign(b"Jefe", b"what do ya want for nothing?"), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn smtp_urls_are_checked_without_echoing_passwords() {
        let e = smtp("smtp://u:hunter2@", "none", "a@b.c", &["x@y.z".into()], None, Duration::from_secs(1)).err().unwrap();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(smtp("http://h", "none", "a@b.c", &["x@y.z".into()], None, Duration::from_secs(1)).is_err());
        assert!(smtp("smtp://h:2525", "none", "not an address", &["x@y.z".into()], None, Duration::from_secs(1)).is_err());
        assert!(smtp("smtp://u:p%40ss@h:2525", "none", "a@b.c", &["x@y.z".into()], None, Duration::from_secs(1)).is_ok());
        assert_eq!(percent_decode("p%40ss"), "p@ss");
    }

    #[test]
    fn a_ca_bundle_must_hold_a_certificate_and_needs_tls() {
        let to = ["x@y.z".to_owned()];
        let e = smtp("smtp://h:2525", "starttls", "a@b.c", &to, Some(b"not a certificate"), Duration::from_secs(1)).err().unwrap();
        assert!(e.contains("no PEM certificate"), "{e}");
        let garbled = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let e = smtp("smtp://h:2525", "tls", "a@b.c", &to, Some(garbled), Duration::from_secs(1)).err().unwrap();
        assert!(e.contains("`ca`"), "{e}");
        let e = smtp("smtp://h:2525", "none", "a@b.c", &to, Some(b""), Duration::from_secs(1)).err().unwrap();
        assert!(e.contains("`tls` is \"none\""), "{e}");
    }
}
