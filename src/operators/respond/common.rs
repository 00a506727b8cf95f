//! What every respond operator shares: the parameters of the stage kind (`when`,
//! `dedup`, `group_by`, from [`crate::stages::common_params`]), their validation, and the
//! stage built around a channel.

use crate::expr::{Condition, Template};
use crate::operators::prelude::*;
use crate::operators::rules;
use crate::respond::channels::{Channel, Deliver, Log};
use crate::runtime::ops::respond;
use crate::value::Value;

/// The parameters every respond stage takes (flattened into each operator's). `when:`
/// is not among them: the plan carries it resolved ([`crate::value::Cond`]), and the
/// build takes it from the node.
#[derive(Debug, Deserialize)]
pub struct Common {
    pub dedup: String,
    pub group_by: Vec<String>,
}

/// The subject of the default messages.
pub const DEFAULT_SUBJECT: &str = "[vigil] {{ incident.status }}: {{ incident.key }}";

impl Common {
    /// Refusals of the shared parameters.
    pub fn validate(&self, out: &mut Vec<Refusal>) {
        rules::template_syntax("dedup", &self.dedup, out);
    }
}

/// What a respond stage renders: a subject (a log line, a chat text), a body, and how
/// often a firing incident is re-sent.
pub struct Message<'a> {
    pub subject: &'a str,
    pub body: Option<&'a str>,
    pub resend_ms: Option<i64>,
}

/// Builds a respond stage around the channel `kind` makes (secrets resolved then; never
/// called under `vigil test`, where the channel only renders).
///
/// # Errors
/// What `kind` refuses (the environment), or a template (validated before).
pub fn build(
    common: Common,
    message: Message<'_>,
    node: &StageNode,
    env: &BuildEnv,
    kind: impl FnOnce() -> Result<Box<dyn Deliver>, BuildError>,
) -> Result<Step, BuildError> {
    let invalid = BuildError::Invalid;
    let mut policy = respond::Policy::from_options(&node.options);
    if message.resend_ms.is_some() {
        policy.resend_ms = message.resend_ms;
    }
    let kind = if env.responder.is_capturing() { Box::new(Log { outbox: None }) } else { kind()? };
    let body = message.body.filter(|b| !b.is_empty()).map(Template::new).transpose().map_err(invalid)?;
    let channel = Channel { kind, subject: Template::new(message.subject).map_err(invalid)?, body };
    let when = match node.params.get("when") {
        Some(Value::Condition(c)) => Some(Condition::new(c.clone())),
        _ => None,
    };
    Ok(Step::Op(Box::new(respond::Respond::new(
        env.pipeline.clone(),
        node.key.0.clone(),
        when,
        Template::new(&common.dedup).map_err(invalid)?,
        common.group_by,
        policy,
        channel,
        env.responder.clone(),
    ))))
}

/// A secret every build of the channel needs.
///
/// # Errors
/// When it is not set.
pub fn secret(s: &SecretRef) -> Result<String, BuildError> {
    crate::runtime::ops::resolve_secret(s)
}
