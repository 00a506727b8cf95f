//! `select`: series or events whose labels match a selector. Environment: none.

use crate::operators::prelude::*;
use crate::runtime::ops::preprocess::{self as ops, parse_selector};

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "select",
    kind: StageKind::Preprocess,
    summary: "Keeps the series or events whose labels match.",
    doc: "Filters by a Prometheus-style label selector: `{job=\"node\", instance=~\"web-.*\", env!=\"dev\"}`.",
    inputs: &[input("input", &[Ty::Series, Ty::Events], "Series or events to filter.")],
    params: &[p("match", Ty::String, Required, "The label selector.")],
    output: Output::SameAsInput(0),
    example: r#"preprocess web = select(raw, match: "{job=\"web\"}")"#,
};

/// The parameters of `select`.
#[derive(Debug, Deserialize)]
pub struct Params {
    #[serde(rename = "match")]
    pub selector: String,
}

/// The `select` operator.
pub struct Select;

impl Definition for Select {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn validate(p: &Params) -> Vec<Refusal> {
        match parse_selector(&p.selector) {
            Ok(_) => Vec::new(),
            Err(e) => vec![Refusal::new(
                "match",
                format!("invalid selector `{}`: {}", p.selector, crate::operators::rules::one_line(&e)),
                "write a Prometheus-style selector, such as `{job=\"web\", env!=\"dev\"}`",
            )],
        }
    }

    fn build(p: Params, _node: &StageNode, _env: &BuildEnv) -> Result<Step, BuildError> {
        let matchers = parse_selector(&p.selector).map_err(|e| BuildError::Invalid(format!("invalid selector `{}`: {e}", p.selector)))?;
        Ok(Step::Op(Box::new(ops::Select { matchers })))
    }
}
