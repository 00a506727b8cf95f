//! `slack`: a Slack incoming webhook. Environment: the `url` secret not set or not an
//! http(s) URL.

use super::common::{self, Common, Message};
use crate::operators::prelude::*;
use crate::operators::rules;
use crate::respond::channels;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "slack",
    kind: StageKind::Respond,
    summary: "Posts incidents to a Slack incoming webhook.",
    doc: "Sends `{text, blocks}` to a Slack incoming webhook URL, which is a credential and so a secret. Checked when the stage starts, not by `vigil check`: the `url` secret must be set and an http(s) URL.",
    inputs: &[input("input", RESPONDABLE, "The scores to page on (a `correlate` stage's situations too), or another respond stage's incidents (`when:` routes them by `severity`, `labels`, `score`...).")],
    params: &[
        p("url", Ty::Secret, Required, "The incoming webhook URL."),
        p("text", Ty::String, Optional, "Message template (a default summary when absent)."),
    ],
    output: Output::Fixed(Ty::Incidents),
    example: r#"respond chat = slack(scores, url: secret("env:SLACK_WEBHOOK"))"#,
};

/// The parameters of `slack`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub url: SecretRef,
    pub text: Option<String>,
    #[serde(flatten)]
    pub common: Common,
}

/// The message when `text` is not given.
const DEFAULT_TEXT: &str = "{{ incident.status }}: {{ incident.key }} (score {{ incident.score }})";

impl Params {
    fn text(&self) -> &str {
        self.text.as_deref().filter(|t| !t.is_empty()).unwrap_or(DEFAULT_TEXT)
    }
}

/// The `slack` operator.
pub struct Slack;

impl Definition for Slack {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn validate(p: &Params) -> Vec<Refusal> {
        let mut out = Vec::new();
        p.common.validate(&mut out);
        rules::template("text", p.text(), &mut out);
        out
    }

    fn build(p: Params, node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
        let text = p.text().to_owned();
        let message = Message { subject: &text, body: None, resend_ms: None };
        let url = p.url;
        common::build(p.common, message, node, env, || {
            let url = common::secret(&url)?;
            if !rules::is_http_url(&url) {
                return Err(BuildError::Invalid("the Slack webhook secret is not an http(s) URL".into()));
            }
            Ok(Box::new(channels::Slack { url, client: env.client.clone() }))
        })
    }
}
