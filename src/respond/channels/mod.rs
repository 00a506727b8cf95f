//! The channels a respond stage notifies through, one file each, behind [`Deliver`].
//!
//! A [`Channel`] is built with its stage (secrets resolved then, never logged) and sends
//! one [`Notification`] at a time, answering what happened: sent, worth retrying
//! (network errors, timeouts, HTTP 5xx and 429, transient SMTP replies), or failed for
//! good (other 4xx, permanent SMTP replies, a program that does not exist or fails).
//!
//! Adding a channel: a file here implementing [`Deliver`], one `mod` line and its
//! re-export below, and its operator under `src/operators/respond/`.

mod alertmanager;
mod email;
mod exec;
mod log;
mod pagerduty;
mod slack;
mod webhook;

use std::future::Future;
use std::pin::Pin;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{Incident, Notification};
use crate::expr::Template;

pub use alertmanager::Alertmanager;
pub use email::{message_id, smtp, Smtp};
pub use exec::{exec_args, Exec, DEFAULT_EXEC_ALLOW};
pub use log::Log;
pub use pagerduty::PagerDuty;
pub use slack::Slack;
pub use webhook::Webhook;

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

/// A send in progress.
pub type Sending<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// How a channel delivers: one implementation per channel.
pub trait Deliver: Send + Sync {
    /// The channel's name, as the audit trail and the outbox record it (`email`).
    fn name(&self) -> &'static str;

    /// Where it delivers, for logs: never a secret (Slack's and PagerDuty's URLs and keys
    /// are secrets; a URL's query string may hold one).
    fn destination(&self) -> String;

    /// Whether an interrupted send runs again after a restart (every channel but an
    /// `exec` remediation without `retry_on_crash`).
    fn retries_on_crash(&self) -> bool {
        true
    }

    /// Whether the channel is told about acknowledgements (PagerDuty's `acknowledge`
    /// events, a webhook's `transition: "acknowledged"`, Slack, the log). Email,
    /// Alertmanager and remediation commands are not (an alert has no acknowledged
    /// state, and a command must not run again).
    fn knows_acknowledgements(&self) -> bool {
        false
    }

    /// The JSON body of HTTP channels.
    fn payload(&self, _n: &Notification) -> Option<serde_json::Value> {
        None
    }

    /// What `--dry-run` prints for a notification.
    fn describe(&self, n: &Notification) -> String;

    /// Sends one notification.
    fn send<'a>(&'a self, n: &'a Notification) -> Sending<'a>;
}

/// What `--dry-run` prints for an HTTP channel: the request, with a PagerDuty routing key
/// masked.
fn describe_post(d: &dyn Deliver, url: &str, n: &Notification) -> String {
    let mut body = d.payload(n).unwrap_or_default();
    // The routing key is a secret: never printed.
    if body.get("routing_key").is_some() {
        body["routing_key"] = "***".into();
    }
    format!("{} POST {url}: {body}", d.name())
}

/// POSTs a channel's payload as JSON.
async fn post_json(d: &dyn Deliver, client: &reqwest::Client, target: &str, n: &Notification) -> Outcome {
    let body = d.payload(n).unwrap_or_default();
    http_outcome(client.post(target).json(&body).send().await).await
}

/// The path of a URL without its query and fragment (which may hold a credential).
fn no_query(u: &str) -> String {
    u.split(['?', '#']).next().unwrap_or("").to_owned()
}

/// A respond stage's channel: how it delivers, and its message templates.
pub struct Channel {
    pub kind: Box<dyn Deliver>,
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
        self.kind.describe(n)
    }

    /// The JSON body of HTTP channels.
    pub fn payload(&self, n: &Notification) -> Option<serde_json::Value> {
        self.kind.payload(n)
    }

    /// Sends one notification.
    pub async fn send(&self, n: &Notification) -> Outcome {
        self.kind.send(n).await
    }
}

/// HMAC-SHA256 of `body` under `key`, hex.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) async fn http_outcome(r: Result<reqwest::Response, reqwest::Error>) -> Outcome {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        assert_eq!(sign(b"Jefe", b"what do ya want for nothing?"), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
