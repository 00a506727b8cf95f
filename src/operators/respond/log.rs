//! `log`: incidents on the console and in `STATE/outbox.jsonl`. Environment: none.

use super::common::{self, Common, Message};
use crate::operators::prelude::*;
use crate::operators::rules;
use crate::respond::channels;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "log",
    kind: StageKind::Respond,
    summary: "Writes incidents to the console and STATE/outbox.jsonl.",
    doc: "Opens and resolves incidents like every respond operator and reports each transition on the console and in the outbox file. The demo's default: it works offline.",
    inputs: &[input("input", RESPONDABLE, "The scores to page on (a `correlate` stage's situations too), or another respond stage's incidents (`when:` routes them by `severity`, `labels`, `score`...).")],
    params: &[p("message", Ty::String, Str("{{ incident.status }} {{ incident.key }} score={{ incident.score }}"), "The line written (a template).")],
    output: Output::Fixed(Ty::Incidents),
    example: r#"respond console = log(scores, when: scores.score > 0.9)"#,
};

/// The parameters of `log`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub message: String,
    #[serde(flatten)]
    pub common: Common,
}

/// The `log` operator.
pub struct Log;

impl Definition for Log {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn validate(p: &Params) -> Vec<Refusal> {
        let mut out = Vec::new();
        p.common.validate(&mut out);
        rules::template("message", &p.message, &mut out);
        out
    }

    fn build(p: Params, node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
        let message = Message { subject: &p.message, body: None, resend_ms: None };
        common::build(p.common, message, node, env, || {
            Ok(Box::new(channels::Log { outbox: env.state_dir.as_ref().map(|d| d.join("outbox.jsonl")) }))
        })
    }
}
