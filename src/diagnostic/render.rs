//! Rendering diagnostics as text (with ariadne) and as JSON. The only file that knows the
//! renderer.

use std::collections::HashMap;

use ariadne::{Config, IndexType, Label as ALabel, Report, ReportKind};

use super::{Diagnostic, Severity};
use crate::source::{SourceId, SourceMap};

/// Renders one diagnostic as text: `error[E0201]: message`, the `file:line:col` header, the
/// source lines with carets, secondary labels (in any file), help and notes.
pub fn render(diag: &Diagnostic, sources: &SourceMap, color: bool) -> String {
    let primary = diag.span();
    let name_of = |id: SourceId| sources.get(id).name.clone();
    let kind = match diag.severity {
        Severity::Error => ReportKind::Error,
        Severity::Warning => ReportKind::Warning,
    };
    let config = Config::default().with_color(color).with_index_type(IndexType::Byte);
    let mut report = Report::build(kind, (name_of(primary.source), char_range(&sources.get(primary.source).text, primary.range())))
        .with_code(diag.code.as_str())
        .with_message(&diag.message)
        .with_config(config);
    // ariadne starts a new section whenever a label's line is above the previous one's,
    // so labels are ordered by file and position: one section per file.
    let mut by_position: Vec<usize> = (0..diag.labels.len()).collect();
    by_position.sort_by_key(|&i| (diag.labels[i].span.source, diag.labels[i].span.start));
    for (i, label) in diag.labels.iter().enumerate() {
        let i = by_position.iter().position(|&j| j == i).unwrap_or(i);
        let range = char_range(&sources.get(label.span.source).text, label.span.range());
        let mut l = ALabel::new((name_of(label.span.source), range)).with_order(i as i32);
        if !label.message.is_empty() {
            l = l.with_message(&label.message);
        }
        if label.primary {
            l = l.with_priority(1);
        }
        report = report.with_label(l);
    }
    if let Some(help) = &diag.help {
        report = report.with_help(help);
    }
    for note in &diag.notes {
        report = report.with_note(note);
    }
    let mut cache: HashMap<String, String> = HashMap::new();
    for label in &diag.labels {
        let file = sources.get(label.span.source);
        cache.entry(file.name.clone()).or_insert_with(|| printable(&file.text));
    }
    let mut out = Vec::new();
    let written = report.finish().write(ariadne::sources(cache), &mut out);
    match written {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        // ariadne only fails on a missing source, which cannot happen above; fall back to
        // a plain line rather than lose the diagnostic.
        Err(_) => format!("{}[{}]: {} at {}\n", severity_word(diag.severity), diag.code.as_str(), diag.message, sources.location(primary)),
    }
}

/// A byte range widened to char boundaries and clamped to the text, so that no span can
/// make the renderer slice inside a character.
fn char_range(text: &str, r: std::ops::Range<usize>) -> std::ops::Range<usize> {
    let mut start = r.start.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = r.end.clamp(start, text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    start..end
}

/// Replaces control characters (a NUL byte, say) with a visible placeholder of the same
/// byte length, so carets stay aligned and terminals are not disturbed.
fn printable(text: &str) -> String {
    if !text.bytes().any(|b| b < 0x20 && b != b'\n' && b != b'\t' && b != b'\r') {
        return text.to_owned();
    }
    text.chars().map(|c| if c.is_control() && c != '\n' && c != '\t' && c != '\r' && c.len_utf8() == 1 { '.' } else { c }).collect()
}

fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// Renders every diagnostic followed by a summary line (`2 errors, 1 warning`).
pub fn render_all(diags: &[Diagnostic], sources: &SourceMap, color: bool) -> String {
    let mut out = String::new();
    for d in diags {
        out.push_str(&render(d, sources, color));
    }
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let warnings = diags.len() - errors;
    if !diags.is_empty() {
        out.push_str(&format!("{} {}, {} {}\n", errors, plural(errors, "error"), warnings, plural(warnings, "warning")));
    }
    out
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}

/// The diagnostics as a JSON array: code, severity, message, file, line, column, labels
/// (each with file, line, column, end line, end column, byte offsets, message, primary),
/// help and notes.
pub fn to_json(diags: &[Diagnostic], sources: &SourceMap) -> serde_json::Value {
    let list = diags
        .iter()
        .map(|d| {
            let primary = d.span();
            let file = sources.get(primary.source);
            let (line, column) = file.line_col(primary.start);
            let labels: Vec<_> = d
                .labels
                .iter()
                .map(|l| {
                    let f = sources.get(l.span.source);
                    let (line, column) = f.line_col(l.span.start);
                    let (end_line, end_column) = f.line_col(l.span.end);
                    serde_json::json!({
                        "file": f.name, "line": line, "column": column,
                        "end_line": end_line, "end_column": end_column,
                        "start": l.span.start, "end": l.span.end,
                        "message": l.message, "primary": l.primary,
                    })
                })
                .collect();
            serde_json::json!({
                "code": d.code.as_str(),
                "severity": d.severity,
                "message": d.message,
                "file": file.name,
                "line": line,
                "column": column,
                "labels": labels,
                "help": d.help,
                "notes": d.notes,
            })
        })
        .collect();
    serde_json::Value::Array(list)
}
