//! `correlate`: incidents grouped into situations. Environment: the `topology` file
//! unreadable or invalid (alone or with `edges`: a cycle across both).

use crate::operators::prelude::*;
use crate::runtime::ops::{correlate, path};

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "correlate",
    kind: StageKind::Predict,
    summary: "Groups the incidents of several respond stages into situations — one per cascade, with its probable origin — so that a respond stage after it pages once.",
    doc: "Incidents join an open situation when they are close in time (within `window` of its members, extended while members keep arriving, at most `max_span` in all) and related by any of: a shared value of one of the `by` labels, services within `hops` edges of each other in the topology (`topology`: a JSON file, `{\"edges\": [[\"checkout\", \"payments\"]]}` or `{\"checkout\": [\"payments\"]}` meaning checkout depends on payments; or inline `edges: [\"checkout -> payments\"]`; the service is the label `service_label`), or titles (their series) at least `similarity` alike (word Jaccard, digits masked). A situation is open while any member fires and closes `window` after the last member resolved; a member that fires again within the window rejoins it. Its probable origin is the member furthest upstream in the topology, else the earliest. Output: one series per situation (label `situation` and the first member's labels), anomalous while it is open, with annotations `origin`, `members` and `samples` (one line per member: key, stage, why it joined), so that a respond stage sends one notification per situation; `GET /api/v1/situations` and `vigil situations` show them. Time is the incidents' own. Situations survive restarts and reloads. See docs/correlation.md. Checked when the stage starts, not by `vigil check`: the `topology` file must be readable and valid.",
    inputs: &[inputs("input", &[Ty::Incidents], "One or more respond stages.")],
    params: &[
        min("window", Ty::Duration, Dur(300_000), 0.0, "How close in time incidents must be to join a situation."),
        min("max_span", Ty::Duration, Dur(3_600_000), 0.0, "The longest a situation accepts new members for, from its first."),
        p("by", Ty::List(Scalar::String), Strs(&["service", "host"]), "Labels: incidents sharing a value of any of them are related."),
        p("topology", Ty::String, Optional, "A JSON file of service dependencies, relative to the pipeline file."),
        p("edges", Ty::List(Scalar::String), Optional, "Service dependencies inline, `\"a -> b\"` meaning a depends on b (with `topology`, both count)."),
        min("hops", Ty::Int, Int(1), 0.0, "How many dependency edges (either direction) may separate related services."),
        p("service_label", Ty::String, Str("service"), "The label naming an incident's service in the topology."),
        min("similarity", Ty::Float, Optional, 0.0, "Relate incidents whose titles are at least this alike (0–1); unset: off."),
        min("max_open", Ty::Int, Int(100_000), 1.0, "Open situations kept; one more closes the oldest (counted)."),
        min("max_members", Ty::Int, Int(10_000), 1.0, "Members kept per situation; later ones are counted, not kept."),
    ],
    output: Output::Fixed(Ty::Scores),
    example: r#"respond latency = log(scores)
  respond errors = log(scores)
  predict situations = correlate(latency, errors, by: ["service"], edges: ["checkout -> payments"])"#,
};

/// The parameters of `correlate`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub window: Ms,
    pub max_span: Ms,
    pub by: Vec<String>,
    pub topology: Option<String>,
    pub edges: Option<Vec<String>>,
    pub hops: i64,
    pub service_label: String,
    pub similarity: Option<f64>,
    pub max_open: i64,
    pub max_members: i64,
}

/// The `correlate` operator.
pub struct Correlate;

impl Definition for Correlate {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn validate(p: &Params) -> Vec<Refusal> {
        match correlate::topology(None, p.edges.as_deref().unwrap_or_default()) {
            Ok(_) => Vec::new(),
            Err(e) => vec![Refusal::new("edges", e, "write each edge as `\"service -> dependency\"`, without cycles")],
        }
    }

    fn build(p: Params, node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
        let invalid = BuildError::Invalid;
        let file = match p.topology.as_deref().unwrap_or("") {
            "" => None,
            f => {
                let path = path(&env.base_dir, f);
                let text =
                    std::fs::read_to_string(&path).map_err(|e| invalid(format!("cannot read the topology `{}`: {e}", path.display())))?;
                Some((path, text))
            }
        };
        let topology = correlate::topology(file.as_ref().map(|(p, t)| (p.as_path(), t.clone())), p.edges.as_deref().unwrap_or_default())
            .map_err(invalid)?;
        let config = crate::correlate::Config {
            window_ms: p.window.i64(),
            max_span_ms: p.max_span.i64(),
            by: p.by,
            topology,
            hops: usize::try_from(p.hops).unwrap_or(1),
            service_label: p.service_label,
            similarity: p.similarity,
            max_open: usize::try_from(p.max_open).unwrap_or(100_000),
            max_members: usize::try_from(p.max_members).unwrap_or(10_000),
            ..crate::correlate::Config::default()
        };
        Ok(Step::Op(Box::new(correlate::Correlate::new(node.key.0.clone(), config, env.responder.clone()))))
    }
}
