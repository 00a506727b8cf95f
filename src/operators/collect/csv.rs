//! `csv`: samples appended to a CSV file. Environment: none at build (a missing file is
//! read when it appears).

use crate::operators::prelude::*;
use crate::runtime::ops::{collect, path, tail};

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "csv",
    kind: StageKind::Collect,
    summary: "Reads samples from a CSV file, remembering how far it has read.",
    doc: "Reads rows `timestamp,value[,...]` appended to a CSV file since the last tick (a cursor kept in the state store). Timestamps are RFC 3339, `YYYY-MM-DD HH:MM:SS` (UTC) or Unix seconds. Malformed rows are logged, counted and skipped.",
    inputs: &[],
    params: &[
        p("path", Ty::String, Required, "The file to read, relative to the pipeline file."),
        p("timestamp_column", Ty::String, Str("timestamp"), "The column holding timestamps."),
        p("value_columns", Ty::List(Scalar::String), Strs(&["value"]), "Columns read as series, one series each."),
        p("labels", Ty::Map, Optional, "Labels added to every series read."),
        choice("start_at", &["beginning", "end"], Optional, START_AT_DOC),
    ],
    output: Output::Fixed(Ty::Series),
    example: r#"collect cpu = csv(path: "data/cpu.csv")"#,
};

/// The parameters of `csv`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub path: String,
    pub timestamp_column: String,
    pub value_columns: Vec<String>,
    pub labels: Option<Labels>,
    pub start_at: Option<String>,
}

/// The `csv` operator.
pub struct Csv;

impl Definition for Csv {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, _node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
        let source =
            collect::CsvSource::new(path(&env.base_dir, &p.path), p.timestamp_column, p.value_columns, p.labels.unwrap_or_default().0)
                .start_at(tail::StartAt::from_param(p.start_at.as_deref().unwrap_or(""), env.live));
        Ok(Step::Source(Box::new(source)))
    }
}
