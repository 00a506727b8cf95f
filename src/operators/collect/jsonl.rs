//! `jsonl`: samples appended to a JSON Lines file. Environment: none at build.

use crate::operators::prelude::*;
use crate::runtime::ops::{collect, path, tail};

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "jsonl",
    kind: StageKind::Collect,
    summary: "Reads samples from a JSON Lines file, remembering how far it has read.",
    doc: "Reads one JSON object per line appended since the last tick. Each object gives a timestamp, a value and optional labels. Lines that are not JSON or lack the fields are logged, counted and skipped.",
    inputs: &[],
    params: &[
        p("path", Ty::String, Required, "The file to read, relative to the pipeline file."),
        p("timestamp_field", Ty::String, Str("timestamp"), "The field holding the timestamp."),
        p("value_field", Ty::String, Str("value"), "The field holding the value."),
        p("label_fields", Ty::List(Scalar::String), Strs(&[]), "Fields copied into the series labels."),
        choice("start_at", &["beginning", "end"], Optional, START_AT_DOC),
    ],
    output: Output::Fixed(Ty::Series),
    example: r#"collect errors = jsonl(path: "logs/errors.jsonl", label_fields: ["service"])"#,
};

/// The parameters of `jsonl`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub path: String,
    pub timestamp_field: String,
    pub value_field: String,
    pub label_fields: Vec<String>,
    pub start_at: Option<String>,
}

/// The `jsonl` operator.
pub struct Jsonl;

impl Definition for Jsonl {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, _node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
        let source = collect::JsonlSource::new(path(&env.base_dir, &p.path), p.timestamp_field, p.value_field, p.label_fields)
            .start_at(tail::StartAt::from_param(p.start_at.as_deref().unwrap_or(""), env.live));
        Ok(Step::Source(Box::new(source)))
    }
}
