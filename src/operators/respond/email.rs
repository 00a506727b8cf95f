//! `email`: mail over SMTP. Environment: the `smtp` secret not set or not an SMTP URL, the
//! `ca` file unreadable or not PEM, `ca` with `tls: "none"` (an `smtps://` URL overrides
//! `tls`, so this depends on the secret), TLS setup for the URL's host.

use super::common::{self, Common, Message};
use crate::operators::prelude::*;
use crate::operators::rules;
use crate::respond::channels;
use crate::runtime::ops::path;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "email",
    kind: StageKind::Respond,
    summary: "Sends email over SMTP, one thread per incident.",
    doc: "Opens or updates incidents and mails their transitions through lettre: STARTTLS or TLS (certificates checked against the web PKI roots, or the authorities in `ca`), optional authentication (PLAIN or LOGIN) from the SMTP URL (`smtp://user:pass@host:587`). Messages of one incident share a thread (stable Message-ID, In-Reply-To). Subject and body are minijinja templates over the incident. Checked when the stage starts, not by `vigil check`: the `smtp` secret must be set and an `smtp://` or `smtps://` URL; the `ca` file must be a readable PEM bundle, and `tls` not `none` with it (unless the URL is `smtps://`).",
    inputs: &[input("input", RESPONDABLE, "The scores to page on (a `correlate` stage's situations too), or another respond stage's incidents (`when:` routes them by `severity`, `labels`, `score`...).")],
    params: &[
        p("to", Ty::List(Scalar::String), Required, "Recipients."),
        p("smtp", Ty::Secret, Required, "The SMTP URL, as a secret (it may hold a password)."),
        p("from", Ty::String, Str("vigil@localhost"), "The sender."),
        choice("tls", &["starttls", "tls", "none"], Str("starttls"), "Transport security."),
        p("ca", Ty::String, Optional, "A PEM file of the authorities that sign the server's certificate (an internal CA), relative to the pipeline file; they replace the public web PKI roots for this server."),
        p("subject", Ty::String, Str("[vigil] {{ incident.status }}: {{ incident.key }}"), "Subject template."),
        p("body", Ty::String, Optional, "Body template (a default summary when absent)."),
    ],
    output: Output::Fixed(Ty::Incidents),
    example: r#"respond mail = email(scores, to: ["sre@example.com"], smtp: secret("env:SMTP_URL"))"#,
};

/// The parameters of `email`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub to: Vec<String>,
    pub smtp: SecretRef,
    pub from: String,
    pub tls: String,
    pub ca: Option<String>,
    pub subject: String,
    pub body: Option<String>,
    #[serde(flatten)]
    pub common: Common,
}

impl Params {
    fn from(&self) -> &str {
        if self.from.is_empty() {
            "vigil@localhost"
        } else {
            &self.from
        }
    }
}

/// The `email` operator.
pub struct Email;

impl Definition for Email {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn validate(p: &Params) -> Vec<Refusal> {
        use lettre::message::Mailbox;
        let mut out = Vec::new();
        p.common.validate(&mut out);
        rules::template("subject", &p.subject, &mut out);
        if let Some(b) = p.body.as_deref().filter(|b| !b.is_empty()) {
            rules::template("body", b, &mut out);
        }
        if let Err(e) = p.from().parse::<Mailbox>() {
            out.push(Refusal::new(
                "from",
                format!("`{}` is not an email address: {e}", p.from()),
                "write an address, such as `vigil@example.com`",
            ));
        }
        for a in &p.to {
            if let Err(e) = a.parse::<Mailbox>() {
                out.push(Refusal::new(
                    "to",
                    format!("`{a}` is not an email address: {e}"),
                    "write addresses, such as `[\"sre@example.com\"]`",
                ));
            }
        }
        if p.to.is_empty() {
            out.push(Refusal::new("to", "`to` names no recipient", "name at least one address, such as `[\"sre@example.com\"]`"));
        }
        out
    }

    fn build(p: Params, node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
        let from = p.from().to_owned();
        let Params { to, smtp, tls, ca, subject, body, common: shared, .. } = p;
        let message = Message { subject: &subject, body: body.as_deref(), resend_ms: None };
        common::build(shared, message, node, env, || {
            let invalid = BuildError::Invalid;
            let url = common::secret(&smtp)?;
            let tls = if tls.is_empty() { "starttls" } else { tls.as_str() };
            let ca = match ca.as_deref().unwrap_or("") {
                "" => None,
                file => {
                    let file = path(&env.base_dir, file);
                    Some(std::fs::read(&file).map_err(|e| invalid(format!("cannot read the `ca` file {}: {e}", file.display())))?)
                }
            };
            let smtp = channels::smtp(&url, tls, &from, &to, ca.as_deref(), std::time::Duration::from_secs(30)).map_err(invalid)?;
            Ok(Box::new(smtp))
        })
    }
}
