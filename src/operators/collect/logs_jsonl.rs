//! `logs.jsonl`: JSON log records of a file. Environment: none at build.

use crate::operators::prelude::*;
use crate::runtime::ops::{logs, path, tail};

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "logs.jsonl",
    kind: StageKind::Collect,
    summary: "Reads JSON log records (one object per line) from a file as Events, following rotations.",
    doc: "Like `logs.file`, for structured logs: field `message` of each object is annotation `message`, the fields in `label_fields` are labels (non-strings as JSON text), the line is annotation `line`. A line that is not a JSON object is kept whole as the message and counted (`not_json`); an object without the message field likewise (`no_message`). Records carry the time they were read unless `timestamp_field` is given.",
    inputs: &[],
    params: &[
        p("path", Ty::String, Required, "The file to read, relative to the pipeline file."),
        p("message", Ty::String, Str("msg"), "The field holding the message."),
        p("label_fields", Ty::List(Scalar::String), Strs(&[]), "Fields copied into the labels."),
        p("timestamp_field", Ty::String, Optional, "A field holding the record's time (RFC 3339, `YYYY-MM-DD HH:MM:SS` or Unix seconds); the read time when absent."),
        choice("start_at", &["beginning", "end"], Optional, START_AT_DOC),
        range("max_line", Ty::Int, Int(65_536), 64.0, 67_108_864.0, "The longest line kept, in bytes; longer ones are cut."),
        range("max_read", Ty::Int, Int(16_777_216), 65_536.0, 67_108_864.0, "The most bytes read per tick (at most 64 MiB), as for `logs.file`."),
        p("labels", Ty::Map, Optional, "Labels added to every event."),
    ],
    output: Output::Fixed(Ty::Events),
    example: r#"collect lines = logs.jsonl(path: "/var/log/app.jsonl", message: "msg", label_fields: ["level", "service"])"#,
};

/// The parameters of `logs.jsonl`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub path: String,
    pub message: String,
    pub label_fields: Vec<String>,
    pub timestamp_field: Option<String>,
    pub start_at: Option<String>,
    pub max_line: i64,
    pub max_read: i64,
    pub labels: Option<Labels>,
}

/// The `logs.jsonl` operator.
pub struct LogsJsonl;

impl Definition for LogsJsonl {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn build(p: Params, _node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
        Ok(Step::Source(Box::new(logs::LogSource::new(logs::LogConfig {
            path: path(&env.base_dir, &p.path),
            format: logs::Format::Json {
                message: p.message,
                label_fields: p.label_fields,
                timestamp_field: p.timestamp_field.filter(|t| !t.is_empty()),
            },
            continuation: None,
            continuation_wait: 5_000,
            max_line: usize::try_from(p.max_line).unwrap_or(logs::DEFAULT_MAX_LINE),
            labels: p.labels.unwrap_or_default().0,
            start_at: tail::StartAt::from_param(p.start_at.as_deref().unwrap_or(""), env.live),
            max_read: usize::try_from(p.max_read).unwrap_or(logs::DEFAULT_MAX_READ),
        }))))
    }
}
