//! `alertmanager`: incidents pushed as alerts. Environment: none.

use super::common::{self, Common, Message, DEFAULT_SUBJECT};
use crate::expr::Template;
use crate::operators::prelude::*;
use crate::operators::rules;
use crate::respond::channels;

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "alertmanager",
    kind: StageKind::Respond,
    summary: "Pushes incidents to Alertmanager as alerts.",
    doc: "POSTs `/api/v2/alerts` with labels and annotations, re-sent every `resend` while the incident fires, with `endsAt` when it resolves.",
    inputs: &[input("input", RESPONDABLE, "The scores to page on (a `correlate` stage's situations too), or another respond stage's incidents (`when:` routes them by `severity`, `labels`, `score`...).")],
    params: &[
        p("url", Ty::String, Required, "The Alertmanager, e.g. `http://127.0.0.1:9093`."),
        p("labels", Ty::Map, Optional, "Extra alert labels."),
        p("annotations", Ty::Map, Optional, "Alert annotations (templates)."),
        min("resend", Ty::Duration, Dur(60_000), 1000.0, "Re-send interval while firing."),
    ],
    output: Output::Fixed(Ty::Incidents),
    example: r#"respond am = alertmanager(scores, url: "http://127.0.0.1:9093", labels: { team: "sre" })"#,
};

/// The parameters of `alertmanager`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub url: String,
    pub labels: Option<Labels>,
    pub annotations: Option<Labels>,
    pub resend: Ms,
    #[serde(flatten)]
    pub common: Common,
}

/// The `alertmanager` operator.
pub struct Alertmanager;

impl Definition for Alertmanager {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn validate(p: &Params) -> Vec<Refusal> {
        let mut out = Vec::new();
        p.common.validate(&mut out);
        rules::http_url("url", &p.url, &mut out);
        for (_, v) in p.annotations.iter().flat_map(|a| &a.0) {
            rules::template("annotations", v, &mut out);
        }
        out
    }

    fn build(p: Params, node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
        let message = Message { subject: DEFAULT_SUBJECT, body: None, resend_ms: Some(p.resend.i64()) };
        let annotations = p
            .annotations
            .unwrap_or_default()
            .0
            .into_iter()
            .map(|(k, v)| Template::new(&v).map(|t| (k, t)).map_err(BuildError::Invalid))
            .collect::<Result<Vec<_>, _>>()?;
        let labels = p.labels.unwrap_or_default().0.into_iter().collect();
        let url = p.url;
        common::build(p.common, message, node, env, || {
            Ok(Box::new(channels::Alertmanager { url, labels, annotations, client: env.client.clone() }))
        })
    }
}
