//! Mining a whole file, for `vigil templates`: per-line ids resolved after the last line,
//! templates with counts, and the CSV, text and JSON outputs.

use super::header::{HeaderFormat, Spans};
use super::miner::{Config, Event, Miner, TemplateId};
use std::collections::HashMap;
use std::io::{self, BufRead, Write};

/// One template of a mined file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub id: TemplateId,
    pub count: u64,
    pub template: String,
    /// Evicted by the cap before the end of the file (its count stops there).
    pub evicted: bool,
}

/// The result of mining a file.
#[derive(Debug, Default)]
pub struct Mined {
    /// Lines read.
    pub lines: u64,
    /// Lines the header format did not match (mined whole).
    pub unparsed: u64,
    /// Lines that were not valid UTF-8 (decoded lossily).
    pub invalid_utf8: u64,
    /// Templates evicted by the cap.
    pub evictions: u64,
    /// Merges of templates into others.
    pub merges: u64,
    /// Every template, most frequent first (ties: lower id first).
    pub templates: Vec<Row>,
    /// Each line's template id, resolved through merges (when asked for).
    pub line_ids: Vec<TemplateId>,
    by_id: HashMap<TemplateId, usize>,
}

impl Mined {
    /// The template of an id from [`Mined::line_ids`].
    #[must_use]
    pub fn template(&self, id: TemplateId) -> Option<&Row> {
        self.by_id.get(&id).map(|&i| &self.templates[i])
    }
}

/// Mines every line of `input`. With `keep_lines`, records each line's template id
/// (8 bytes a line) for [`write_csv`]. Evicted templates are remembered here (not in the
/// miner) so that every line keeps a template.
///
/// # Errors
/// Reading `input`.
pub fn mine<R: BufRead>(mut input: R, header: Option<&HeaderFormat>, config: Config, keep_lines: bool) -> io::Result<Mined> {
    let mut miner = Miner::new(config);
    let mut out = Mined::default();
    let mut aliases: HashMap<TemplateId, TemplateId> = HashMap::new();
    let mut evicted: HashMap<TemplateId, (String, u64)> = HashMap::new();
    let mut raw = Vec::new();
    let mut spans: Spans = Vec::new();
    let mut ids = Vec::new();
    loop {
        raw.clear();
        if input.read_until(b'\n', &mut raw)? == 0 {
            break;
        }
        if raw.last() == Some(&b'\n') {
            raw.pop();
            if raw.last() == Some(&b'\r') {
                raw.pop();
            }
        }
        out.lines += 1;
        let text = match std::str::from_utf8(&raw) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => {
                out.invalid_utf8 += 1;
                String::from_utf8_lossy(&raw)
            }
        };
        let content = match header {
            Some(h) if h.parse_into(&text, &mut spans) => match spans[h.content_index()] {
                Some((s, e)) => &text[s..e],
                None => &text[..],
            },
            Some(_) => {
                out.unparsed += 1;
                &text[..]
            }
            None => &text[..],
        };
        let id = miner.ingest(content).id;
        if keep_lines {
            ids.push(id);
        }
        for ev in miner.take_events() {
            match ev {
                Event::Merged { from, into } => {
                    out.merges += 1;
                    aliases.insert(from, into);
                }
                Event::Evicted { id, template, count } => {
                    evicted.insert(id, (template, count));
                }
            }
        }
    }
    out.evictions = miner.evictions();
    let resolve = |mut id: TemplateId| {
        while let Some(&to) = aliases.get(&id) {
            id = to;
        }
        id
    };
    out.templates = miner.templates().map(|t| Row { id: t.id, count: t.count, template: t.text(), evicted: false }).collect();
    out.templates.extend(evicted.into_iter().map(|(id, (template, count))| Row { id, count, template, evicted: true }));
    out.templates.sort_by(|a, b| b.count.cmp(&a.count).then(a.id.cmp(&b.id)));
    out.by_id = out.templates.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
    out.line_ids = ids.into_iter().map(resolve).collect();
    Ok(out)
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        std::borrow::Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// Writes `line,template_id,template` (a header row, then one row per input line in order;
/// `line` is the 1-based line number).
///
/// # Errors
/// Writing.
pub fn write_csv<W: Write>(mut w: W, mined: &Mined) -> io::Result<()> {
    writeln!(w, "line,template_id,template")?;
    for (i, &id) in mined.line_ids.iter().enumerate() {
        let t = mined.template(id).map_or("", |r| r.template.as_str());
        writeln!(w, "{},{},{}", i + 1, id, csv_field(t))?;
    }
    w.flush()
}

/// Writes the templates as a table: count, id, template; most frequent first.
///
/// # Errors
/// Writing.
pub fn write_text<W: Write>(mut w: W, mined: &Mined) -> io::Result<()> {
    writeln!(w, "{:>10}  {:>8}  template", "count", "id")?;
    for r in &mined.templates {
        writeln!(w, "{:>10}  {:>8}  {}{}", r.count, r.id, r.template, if r.evicted { "  (evicted)" } else { "" })?;
    }
    writeln!(w, "{}", summary(mined))?;
    w.flush()
}

/// Writes the templates and the counts as one JSON object (streamed: one template a line).
///
/// # Errors
/// Writing.
pub fn write_json<W: Write>(mut w: W, mined: &Mined) -> io::Result<()> {
    writeln!(
        w,
        "{{\"lines\": {}, \"unparsed\": {}, \"invalid_utf8\": {}, \"merges\": {}, \"evictions\": {}, \"templates\": [",
        mined.lines, mined.unparsed, mined.invalid_utf8, mined.merges, mined.evictions
    )?;
    for (i, r) in mined.templates.iter().enumerate() {
        write!(w, "  {{\"id\": {}, \"count\": {}, \"template\": ", r.id, r.count)?;
        serde_json::to_writer(&mut w, &r.template)?;
        writeln!(w, ", \"evicted\": {}}}{}", r.evicted, if i + 1 < mined.templates.len() { "," } else { "" })?;
    }
    writeln!(w, "]}}")?;
    w.flush()
}

/// One line: lines, templates, and what was unusual.
#[must_use]
pub fn summary(mined: &Mined) -> String {
    format!(
        "{} lines, {} templates ({} merges, {} evicted); {} lines without the header, {} not valid UTF-8",
        mined.lines,
        mined.templates.len(),
        mined.merges,
        mined.evictions,
        mined.unparsed,
        mined.invalid_utf8
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("a b"), "a b");
        assert_eq!(csv_field("a, \"b\""), "\"a, \"\"b\"\"\"");
    }

    #[test]
    fn mines_a_file() {
        let h = HeaderFormat::new("<Level>: <Content>").unwrap();
        let text = b"INFO: took 5 ms\nWARN: took 7 ms\r\nno header here\n\xff\xfe: bad\n";
        let m = mine(&text[..], Some(&h), Config::default(), true).unwrap();
        assert_eq!((m.lines, m.unparsed, m.invalid_utf8), (4, 1, 1));
        assert_eq!(m.line_ids[0], m.line_ids[1]);
        assert_eq!(m.template(m.line_ids[0]).unwrap().template, "took <*>");
        assert_eq!(m.templates[0].count, 2);
        let mut csv = Vec::new();
        write_csv(&mut csv, &m).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert!(csv.starts_with("line,template_id,template\n1,1,took <*>\n2,1,took <*>\n3,"), "{csv}");
        let mut json = Vec::new();
        write_json(&mut json, &m).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["lines"], 4);
        assert_eq!(v["templates"][0]["template"], "took <*>");
        assert_eq!(v["templates"].as_array().unwrap().len(), 3);
    }
}
