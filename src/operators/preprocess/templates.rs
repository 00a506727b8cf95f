//! `templates`: log records grouped into templates. Environment: none.

use crate::operators::prelude::*;
use crate::operators::rules;
use crate::runtime::ops::logs;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "templates",
    kind: StageKind::Preprocess,
    summary: "Groups log records into templates (the message with its variables as `<*>`).",
    doc: "Mines each event's message online with vigil's template miner (docs/logs.md) and passes the event on with label `template_id` (a number, stable across restarts and reloads: the templates are kept in the state store), label and annotation `template` (the template's text as of this event; a later merge may widen it) and annotation `params` (a JSON array of the message's text at each `<*>`, each at most 1 KiB). Count records per template with `aggregate(templates, by: [\"template_id\", \"template\"], op: \"count\", every: 1m)`. At most `max_templates` live templates: beyond it the least recently matched eighth are evicted (`vigil_stage_events_total{event=\"template_evicted\"}`; creations and merges are counted there too) and a message of an evicted template gets a new id. Events without the field are dropped and counted (`no_message`).",
    inputs: &[input("input", &[Ty::Events], "Log records, e.g. from `logs.file`.")],
    params: &[
        p("field", Ty::String, Str("message"), "The annotation (else label) holding the message."),
        p("masks", Ty::List(Scalar::String), Strs(&[]), "Extra variables: regular expressions whose every match is a `<*>`, e.g. `req-[0-9a-f]+`."),
        min("max_templates", Ty::Int, Int(10_000), 8.0, "The most live templates."),
    ],
    output: Output::Fixed(Ty::Events),
    example: r#"preprocess tpl = templates(events, masks: ["req-[0-9a-f]+"], max_templates: 5000)"#,
};

/// The parameters of `templates`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub field: String,
    pub masks: Vec<String>,
    pub max_templates: i64,
}

/// The `templates` operator.
pub struct Templates;

impl Definition for Templates {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn validate(p: &Params) -> Vec<Refusal> {
        let mut out = Vec::new();
        for m in &p.masks {
            rules::regex("masks", m, &mut out);
        }
        out
    }

    fn build(p: Params, _node: &StageNode, _env: &BuildEnv) -> Result<Step, BuildError> {
        let masks = p
            .masks
            .iter()
            .map(|m| {
                regex::Regex::new(m).map_err(|e| BuildError::Invalid(format!("the mask `{m}` is not a valid regular expression: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cfg = crate::logs::Config { max_templates: usize::try_from(p.max_templates).unwrap_or(10_000), masks, ..Default::default() };
        Ok(Step::Op(Box::new(logs::Templates::new(p.field, cfg))))
    }
}
