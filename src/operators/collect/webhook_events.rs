//! `webhook_events`: requests posted to the pipeline's `on webhook` trigger. Environment:
//! the trigger missing (the checker requires it, but a plan may be built elsewhere), the
//! `token` or `hmac` secret not set. The engine's HTTP route reads `format`, `max_body`,
//! `signature_header` and `rate_limit` from the node.

use crate::operators::prelude::*;
use crate::runtime::ops::{collect, resolve_secret};

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "webhook_events",
    kind: StageKind::Collect,
    summary: "Receives the requests posted to the pipeline's `on webhook` trigger as Events.",
    doc: "Each request to the pipeline's webhook path becomes events: an Alertmanager webhook (payload version 4) gives one event per alert with its labels, annotations and status; a generic JSON object or array gives one event per object. Bodies over `max_body` bytes are refused with 413, content types other than JSON with 415, requests beyond `rate_limit` per second with 429. With `token` or `hmac` (secrets), unauthenticated requests get 401; without them the path is open to whoever can reach the listener (loopback by default). Checked when the stage starts, not by `vigil check`: the `token` and `hmac` secrets must be set.",
    inputs: &[],
    params: &[
        choice("format", &["json", "alertmanager"], Str("json"), "How to read request bodies."),
        min("max_body", Ty::Int, Int(1_048_576), 1.0, "The largest body accepted, in bytes."),
        p("token", Ty::Secret, Optional, "Requests must carry `Authorization: Bearer <token>` (401 otherwise)."),
        p("hmac", Ty::Secret, Optional, "Requests must carry the body's HMAC-SHA256 (hex, `sha256=` prefix optional) in `signature_header` (401 otherwise)."),
        p("signature_header", Ty::String, Str("X-Signature"), "The header holding the HMAC signature."),
        min("rate_limit", Ty::Int, Int(100), 1.0, "Requests per second accepted on the path (bursts up to as many); more get 429."),
    ],
    output: Output::Fixed(Ty::Events),
    example: r#"collect alerts = webhook_events(format: "alertmanager")"#,
};

/// The parameters of `webhook_events`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub format: String,
    pub max_body: i64,
    pub token: Option<SecretRef>,
    pub hmac: Option<SecretRef>,
    pub signature_header: String,
    pub rate_limit: i64,
}

/// The `webhook_events` operator.
pub struct WebhookEvents;

impl Definition for WebhookEvents {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, _node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
        let queue = env.webhook_queue.clone().ok_or_else(|| BuildError::Invalid("webhook_events needs an `on webhook` trigger".into()))?;
        // The route checks these on every request: a secret that does not resolve fails
        // the build (and so the reload) rather than leaving the path open.
        p.token.as_ref().map(resolve_secret).transpose()?;
        p.hmac.as_ref().map(resolve_secret).transpose()?;
        Ok(Step::Source(Box::new(collect::WebhookSource { queue })))
    }
}
