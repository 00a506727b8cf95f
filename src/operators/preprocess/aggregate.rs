//! `aggregate`: series combined, or events counted, by labels. Environment: none.

use crate::operators::prelude::*;
use crate::runtime::ops::preprocess::{self as ops, Agg};

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "aggregate",
    kind: StageKind::Preprocess,
    summary: "Aggregates series, or counts events, by labels.",
    doc: "Combines the series (or events) that share the values of the `by` labels into one series per group, at each timestamp, or per `every` interval. Events are counted; the last three records counted per group (their `line` or `message` annotation: log records) go along with the series as its samples, and an incident opened on it shows them (`incident.samples`).",
    inputs: &[input("input", &[Ty::Series, Ty::Events], "Series to combine or events to count.")],
    params: &[
        p("by", Ty::List(Scalar::String), Strs(&[]), "The labels that define a group (all series together when empty)."),
        choice("op", &["sum", "mean", "min", "max", "count"], Str("sum"), "How values are combined."),
        p("every", Ty::Duration, Optional, "Aggregate per interval rather than per timestamp."),
    ],
    output: Output::Fixed(Ty::Series),
    example: r#"preprocess per_job = aggregate(events, by: ["alertname"], op: "count", every: 1m)"#,
};

/// The parameters of `aggregate`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub by: Vec<String>,
    pub op: String,
    pub every: Option<Ms>,
}

/// The `aggregate` operator.
pub struct Aggregate;

impl Definition for Aggregate {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, _node: &StageNode, _env: &BuildEnv) -> Result<Step, BuildError> {
        Ok(Step::Op(Box::new(ops::Aggregate::new(p.by, Agg::parse(&p.op).unwrap_or(Agg::Sum), p.every.map(Ms::i64)))))
    }
}
