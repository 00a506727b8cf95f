//! `logs.file`: log records of a text file. Environment: none at build (a missing file is
//! read when it appears).

use crate::operators::prelude::*;
use crate::operators::rules;
use crate::runtime::ops::{logs, path, tail};

pub static SPEC: OperatorSpec = OperatorSpec {
    name: "logs.file",
    kind: StageKind::Collect,
    summary: "Reads log records from a text file as Events, following rotations.",
    doc: "Reads the lines appended since the last tick (a cursor kept in the state store; renames, delete-and-recreate and copytruncate are followed as for `csv`, a partial last line waits for the next tick). `header` splits each line into fields: every field but `<Content>` becomes a label, the message (`<Content>`) is annotation `message` and the whole record annotation `line`. A line the header does not match is kept, its whole text the message, and counted (`unmatched_header`). With `continuation`, a line matching that regex is appended (after a line break) to the record before it (stack traces): it is part of `line`, while `message` stays the first line's, so that `templates` groups records by their first line; the last record of a tick waits for the next line, at most `continuation_wait` (or until its file is rotated away), and is part of the cursor. Invalid UTF-8 is decoded lossily (`invalid_utf8`), a line or record over `max_line` bytes is cut (`line_truncated`); both are counted and kept. Records carry the time they were read unless `timestamp: \"header\"`. See docs/logs.md.",
    inputs: &[],
    params: &[
        p("path", Ty::String, Required, "The file to read, relative to the pipeline file."),
        p("header", Ty::String, Str("<Content>"), "The line's layout, e.g. `<Date> <Time> <Level> <Component>: <Content>` (docs/logs.md); `<Content>` is the message."),
        p("continuation", Ty::String, Optional, "A regular expression: a line it matches continues the previous record, e.g. `^\\s` for indented stack traces."),
        min("continuation_wait", Ty::Duration, Dur(5_000), 0.0, "How long the last record waits for continuation lines (it is emitted at the first tick after this)."),
        choice("start_at", &["beginning", "end"], Optional, START_AT_DOC),
        choice("timestamp", &["read", "header"], Str("read"), "The events' time: when the record was read, or the header's `<Timestamp>` field (else `<Date> <Time>`), parsed as in `csv`; a record whose time does not parse gets the read time and is counted (`bad_timestamp`)."),
        range("max_line", Ty::Int, Int(65_536), 64.0, 67_108_864.0, "The longest line (and multi-line record) kept, in bytes; longer ones are cut."),
        range("max_read", Ty::Int, Int(16_777_216), 65_536.0, 67_108_864.0, "The most bytes read per tick (at most 64 MiB); a backlog is read over the next ticks, so a log written faster than `max_read` per tick falls behind: raise it or tick more often. Each record in flight costs about 3 KB (16 MiB of HDFS lines: about 500 MB). A line longer than this is skipped (counted)."),
        p("labels", Ty::Map, Optional, "Labels added to every event."),
    ],
    output: Output::Fixed(Ty::Events),
    example: r#"collect lines = logs.file(path: "/var/log/app.log", header: "<Date> <Time> <Level> <Component>: <Content>", continuation: "^\\s")"#,
};

/// The parameters of `logs.file`.
#[derive(Debug, Deserialize)]
pub struct Params {
    pub path: String,
    pub header: String,
    pub continuation: Option<String>,
    pub continuation_wait: Ms,
    pub start_at: Option<String>,
    pub timestamp: String,
    pub max_line: i64,
    pub max_read: i64,
    pub labels: Option<Labels>,
}

impl Params {
    /// The continuation pattern (an empty one is none).
    fn continuation(&self) -> Option<&str> {
        self.continuation.as_deref().filter(|c| !c.is_empty())
    }
}

/// The `logs.file` operator.
pub struct LogsFile;

impl Definition for LogsFile {
    type Params = Params;
    const SPEC: &'static OperatorSpec = &SPEC;

    fn validate(p: &Params) -> Vec<Refusal> {
        let mut out = Vec::new();
        if let Err(e) = crate::logs::HeaderFormat::new(&p.header) {
            out.push(Refusal::new(
                "header",
                format!("not a valid header format: {}", e.0),
                "see docs/logs.md: fields in `<...>`, one `<Content>`",
            ));
        }
        if let Some(c) = p.continuation() {
            rules::regex("continuation", c, &mut out);
        }
        out
    }

    fn build(p: Params, _node: &StageNode, env: &BuildEnv) -> Result<Step, BuildError> {
        let invalid = |e: String| BuildError::Invalid(e);
        let header =
            crate::logs::HeaderFormat::new(&p.header).map_err(|e| invalid(format!("`header` is not a valid header format: {}", e.0)))?;
        let continuation = match p.continuation() {
            None => None,
            Some(c) => Some(regex::Regex::new(c).map_err(|e| invalid(format!("`continuation` is not a valid regular expression: {e}")))?),
        };
        Ok(Step::Source(Box::new(logs::LogSource::new(logs::LogConfig {
            path: path(&env.base_dir, &p.path),
            format: logs::Format::Header { format: header, from_header: p.timestamp == "header" },
            continuation,
            continuation_wait: p.continuation_wait.i64(),
            max_line: usize::try_from(p.max_line).unwrap_or(logs::DEFAULT_MAX_LINE),
            labels: p.labels.unwrap_or_default().0,
            start_at: tail::StartAt::from_param(p.start_at.as_deref().unwrap_or(""), env.live),
            max_read: usize::try_from(p.max_read).unwrap_or(logs::DEFAULT_MAX_READ),
        }))))
    }
}
