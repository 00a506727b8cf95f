//! `new_templates`: log templates never seen before. Environment: none.

use crate::operators::prelude::*;
use crate::runtime::ops::logs;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "new_templates",
    kind: StageKind::Predict,
    summary: "Scores log templates never seen before, after a warm-up, so that a respond stage can page on a new message.",
    doc: "Reads the output of `templates` and, for each template created after the warm-up, emits one anomalous score (1.0) at the event's time, as a series `new_template` whose labels are the event's, `template` (its text) and `sample` (the message, at most 1 KiB). The warm-up is `after` from the first event the stage saw, in data time (the events' timestamps: the read time with `logs.file`'s default). New means an id higher than every id seen: ids are counters, so the stage keeps two numbers (in the state store). A template evicted by `max_templates` that comes back counts as new. Each new template is a series that reports once: give the respond stage a `resolve_timeout` so its incident resolves.",
    inputs: &[input("input", &[Ty::Events], "The output of `templates`.")],
    params: &[min("after", Ty::Duration, Dur(3_600_000), 0.0, "The warm-up: templates first seen before it are known ones.")],
    output: Output::Fixed(Ty::Scores),
    example: r#"predict fresh = new_templates(events, after: 1h)"#,
};

/// The parameters of `new_templates`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub after: Ms,
}

/// The `new_templates` operator.
pub struct NewTemplates;

impl Definition for NewTemplates {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, _node: &StageNode, _env: &BuildEnv) -> Result<Step, BuildError> {
        Ok(Step::Op(Box::new(logs::NewTemplates::new(p.after.i64()))))
    }
}
