//! `webhook`: signed JSON posted to a URL. Environment: the `secret` not set, an HTTP
//! client that cannot be made.

use super::common::{self, Common, Message, DEFAULT_SUBJECT};
use crate::operators::prelude::*;
use crate::operators::rules;
use crate::respond::channels;
use crate::runtime::ops::client_with_timeout;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "webhook",
    kind: StageKind::Respond,
    summary: "Posts incidents as signed JSON to a URL.",
    doc: "POSTs each incident transition as JSON. With `secret`, adds `X-Vigil-Signature: sha256=<hex>`, an HMAC-SHA256 of the body. 5xx and 429 answers are retried with backoff; other 4xx are not. Checked when the stage starts, not by `vigil check`: the `secret` must be set.",
    inputs: &[input("input", RESPONDABLE, "The scores to page on (a `correlate` stage's situations too), or another respond stage's incidents (`when:` routes them by `severity`, `labels`, `score`...).")],
    params: &[
        p("url", Ty::String, Required, "The receiver."),
        p("secret", Ty::Secret, Optional, "The HMAC key."),
        min("timeout", Ty::Duration, Dur(10_000), 1.0, "Request timeout."),
    ],
    output: Output::Fixed(Ty::Incidents),
    example: r#"respond hook = webhook(scores, url: "https://ops.example.com/hooks/vigil", secret: secret("env:HOOK_KEY"))"#,
};

/// The parameters of `webhook`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub url: String,
    pub secret: Option<SecretRef>,
    pub timeout: Ms,
    #[serde(flatten)]
    pub common: Common,
}

/// The `webhook` operator.
pub struct Webhook;

impl Definition for Webhook {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn validate(p: &Params) -> Vec<Refusal> {
        let mut out = Vec::new();
        p.common.validate(&mut out);
        rules::http_url("url", &p.url, &mut out);
        out
    }

    fn build(p: Params, node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
        let message = Message { subject: DEFAULT_SUBJECT, body: None, resend_ms: None };
        let (url, secret, timeout) = (p.url, p.secret, p.timeout);
        common::build(p.common, message, node, env, || {
            let client = client_with_timeout(env, Some(timeout.i64()))?;
            Ok(Box::new(channels::Webhook { url, secret: secret.as_ref().map(common::secret).transpose()?, client }))
        })
    }
}
