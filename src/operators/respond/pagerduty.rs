//! `pagerduty`: PagerDuty Events v2. Environment: the `routing_key` secret not set.

use super::common::{self, Common, Message, DEFAULT_SUBJECT};
use crate::operators::prelude::*;
use crate::operators::rules;
use crate::respond::channels;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "pagerduty",
    kind: StageKind::Respond,
    summary: "Triggers, acknowledges and resolves PagerDuty incidents (Events v2).",
    doc:
        "Sends Events API v2 `trigger`, `acknowledge` and `resolve` events with the incident's key as `dedup_key`. 429 and 5xx are retried. Checked when the stage starts, not by `vigil check`: the `routing_key` secret must be set.",
    inputs: &[input("input", RESPONDABLE, "The scores to page on (a `correlate` stage's situations too), or another respond stage's incidents (`when:` routes them by `severity`, `labels`, `score`...).")],
    params: &[
        p("routing_key", Ty::Secret, Required, "The integration's routing key."),
        choice("severity", &["critical", "error", "warning", "info"], Str("error"), "The PagerDuty severity."),
        p("url", Ty::String, Str("https://events.pagerduty.com/v2/enqueue"), "The Events API endpoint."),
    ],
    output: Output::Fixed(Ty::Incidents),
    example: r#"respond page = pagerduty(scores, routing_key: secret("env:PD_KEY"), severity: "critical")"#,
};

/// The parameters of `pagerduty`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub routing_key: SecretRef,
    pub severity: String,
    pub url: String,
    #[serde(flatten)]
    pub common: Common,
}

/// The `pagerduty` operator.
pub struct PagerDuty;

impl Definition for PagerDuty {
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
        let (routing_key, severity, url) = (p.routing_key, p.severity, p.url);
        common::build(p.common, message, node, env, || {
            Ok(Box::new(channels::PagerDuty { routing_key: common::secret(&routing_key)?, severity, url, client: env.client.clone() }))
        })
    }
}
