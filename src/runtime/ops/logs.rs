//! The log path of a pipeline: the sources `logs.file` and `logs.jsonl` (log records as
//! Events), `templates` (each record's template from [`crate::logs::Miner`]) and
//! `new_templates` (Scores for templates never seen before, after a warm-up).
//!
//! A log record is an [`Event`]: the header fields (or the chosen JSON fields) are its
//! labels, annotation `message` holds the message (`<Content>` of the record's first line:
//! what `templates` mines) and annotation `line` the record as read (with its
//! continuation lines, such as a stack trace). Records are stamped with the time they were read unless the stage
//! takes the time from the record (`timestamp: "header"`, `timestamp_field`).
//!
//! Bad input is counted, never fatal (`vigil_skipped_total{reason}`; the record is kept
//! unless said otherwise): `unmatched_header` (kept with the whole line as message),
//! `not_json` (kept likewise), `invalid_utf8` (decoded lossily, each bad byte U+FFFD),
//! `line_truncated` (a line or record over `max_line` bytes is cut there, on a character
//! boundary), `bad_timestamp` (stamped with the read time instead), `no_message`
//! (`templates` drops an event without the field it mines). NUL bytes are ordinary
//! characters.
//!
//! State that must survive a restart: the sources' cursor (the [`Tail`] position and a
//! multi-line record still waiting for its continuation lines), `templates`' miner
//! ([`Operator::snapshot`]: the templates, aliases and next id, so ids are stable) and
//! `new_templates`' warm-up start and highest id seen.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use crate::data::{Data, Event, EventsData, ScoreColumn, ScoresData, SeriesId, Timestamp};
use crate::logs::{Config, Event as MinerEvent, HeaderFormat, Miner, TemplateId};
use crate::runtime::{BoxFuture, OpCtx, OpError, Operator, Source};

use super::tail::{Slot, StartAt, Tail, TailState};

/// The default bound on one line (and one multi-line record), in bytes.
pub const DEFAULT_MAX_LINE: usize = 64 << 10;

/// The default bound on the bytes read per tick: a log record in flight costs far more
/// memory than a CSV sample, so less than [`super::tail::MAX_READ`].
pub const DEFAULT_MAX_READ: usize = 16 << 20;

/// The most bytes of a message a `new_templates` score carries in its `sample` label.
pub const SAMPLE_MAX: usize = 1024;

/// The most bytes of one parameter in `templates`' `params` annotation.
pub const PARAM_MAX: usize = 1024;

/// How a record's text becomes labels and a message.
pub enum Format {
    /// `logs.file`: a header format; `from_header` takes the timestamp from its
    /// `Timestamp` field, or `Date` and `Time`.
    Header { format: HeaderFormat, from_header: bool },
    /// `logs.jsonl`: one JSON object per line.
    Json { message: String, label_fields: Vec<String>, timestamp_field: Option<String> },
}

/// A record waiting for continuation lines (persisted in the cursor).
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
struct Pending {
    text: String,
    /// When its last line was read.
    since: Timestamp,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct LogCursor {
    tail: TailState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<Pending>,
}

/// The settings of a log source.
pub struct LogConfig {
    pub path: PathBuf,
    pub format: Format,
    /// A line matching it continues the previous record.
    pub continuation: Option<regex::Regex>,
    /// How long the last record waits for continuation lines.
    pub continuation_wait: i64,
    pub max_line: usize,
    pub labels: Vec<(String, String)>,
    /// Start at the end of a file met for the first time (no cursor).
    /// Where to start in a file met for the first time.
    pub start_at: StartAt,
    /// The most bytes read per tick.
    pub max_read: usize,
}

/// `logs.file(...)` and `logs.jsonl(...)`.
pub struct LogSource {
    cfg: LogConfig,
    tail: Tail,
    pending: Option<Pending>,
    spans: crate::logs::header::Spans,
}

/// Cuts `s` to at most `max` bytes on a character boundary; whether it cut.
fn truncate(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    true
}

impl LogSource {
    pub fn new(cfg: LogConfig) -> LogSource {
        let mut tail = Tail::new(cfg.path.clone());
        tail.max_read = cfg.max_read;
        tail.start_at = cfg.start_at;
        LogSource { cfg, tail, pending: None, spans: Vec::new() }
    }

    /// Turns one record's text into an event.
    fn record(&mut self, text: String, ctx: &mut OpCtx) -> Event {
        let mut labels: BTreeMap<String, String> = self.cfg.labels.iter().cloned().collect();
        let mut annotations = BTreeMap::new();
        let mut ts = ctx.now;
        let message = match &self.cfg.format {
            Format::Header { format, from_header } => {
                let first = text.split('\n').next().unwrap_or("");
                if format.parse_into(first, &mut self.spans) {
                    let mut message = String::new();
                    for (i, name) in format.fields().iter().enumerate() {
                        let Some((s, e)) = self.spans.get(i).copied().flatten() else { continue };
                        if i == format.content_index() {
                            message = first[s..e].to_owned();
                        } else {
                            labels.insert(name.clone(), first[s..e].to_owned());
                        }
                    }
                    if *from_header {
                        let stamp = match (labels.get("Timestamp"), labels.get("Date"), labels.get("Time")) {
                            (Some(t), _, _) => crate::time::parse_timestamp(t),
                            (None, Some(d), Some(t)) => crate::time::parse_timestamp(&format!("{d} {t}")),
                            (None, Some(d), None) => crate::time::parse_timestamp(d),
                            _ => None,
                        };
                        match stamp {
                            Some(t) => ts = t,
                            None => ctx.skip("bad_timestamp"),
                        }
                    }
                    message
                } else {
                    ctx.skip("unmatched_header");
                    first.to_owned()
                }
            }
            Format::Json { message, label_fields, timestamp_field } => match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(serde_json::Value::Object(obj)) => {
                    let str_of = |v: &serde_json::Value| match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    for f in label_fields {
                        if let Some(v) = obj.get(f) {
                            labels.insert(f.clone(), str_of(v));
                        }
                    }
                    if let Some(field) = timestamp_field {
                        let stamp = match obj.get(field) {
                            Some(serde_json::Value::String(s)) => crate::time::parse_timestamp(s),
                            Some(serde_json::Value::Number(n)) => n.as_f64().filter(|f| f.is_finite()).map(|s| (s * 1000.0).round() as i64),
                            _ => None,
                        };
                        match stamp {
                            Some(t) => ts = t,
                            None => ctx.skip("bad_timestamp"),
                        }
                    }
                    match obj.get(message) {
                        Some(v) => str_of(v),
                        None => {
                            ctx.skip("no_message");
                            text.clone()
                        }
                    }
                }
                _ => {
                    ctx.skip("not_json");
                    text.clone()
                }
            },
        };
        annotations.insert("message".to_owned(), message);
        annotations.insert("line".to_owned(), text);
        Event { ts, labels, annotations, status: String::new(), fingerprint: String::new() }
    }

    /// Splits chunks into records; the last one may wait for continuation lines.
    fn records(&mut self, chunks: &[super::tail::Chunk], ctx: &mut OpCtx) -> Vec<Event> {
        let mut texts = Vec::new();
        let mut pending = self.pending.take();
        let max = self.cfg.max_line;
        for chunk in chunks {
            ctx.skip_n("invalid_utf8", chunk.invalid_utf8);
            let body = chunk.text.strip_suffix('\n').unwrap_or(&chunk.text);
            for line in body.split('\n') {
                let line = line.strip_suffix('\r').unwrap_or(line);
                let continues = self.cfg.continuation.as_ref().is_some_and(|re| re.is_match(line));
                match &mut pending {
                    Some(p) if continues => {
                        if p.text.len() < max {
                            p.text.push('\n');
                            p.text.push_str(line);
                        }
                        if truncate(&mut p.text, max) {
                            ctx.skip("line_truncated");
                        }
                        p.since = ctx.now;
                        continue;
                    }
                    _ => {}
                }
                if line.trim().is_empty() {
                    continue;
                }
                if let Some(p) = pending.take() {
                    texts.push(p.text);
                }
                let mut text = line.to_owned();
                if truncate(&mut text, max) {
                    ctx.skip("line_truncated");
                }
                pending = Some(Pending { text, since: ctx.now });
            }
            // A rotated file read to its end: its last record is complete.
            if chunk.slot == Slot::Drained {
                if let Some(p) = pending.take() {
                    texts.push(p.text);
                }
            }
        }
        // Without continuations a record is complete at its line break; with them, the
        // last one waits for the next line, at most `continuation_wait`.
        if let Some(p) = pending.take() {
            if self.cfg.continuation.is_none() || ctx.now - p.since >= self.cfg.continuation_wait {
                texts.push(p.text);
            } else {
                pending = Some(p);
            }
        }
        self.pending = pending;
        texts.into_iter().map(|t| self.record(t, ctx)).collect()
    }
}

impl Source for LogSource {
    fn collect<'a>(&'a mut self, ctx: &'a mut OpCtx) -> BoxFuture<'a, Result<Data, OpError>> {
        Box::pin(async move {
            let read = self.tail.read(ctx).await?;
            // Nothing fails after the read: a failed read left the cursor where it was.
            let events = self.records(&read.chunks, ctx);
            self.tail.commit(read.next);
            Ok(Data::Events(Arc::new(EventsData { events })))
        })
    }

    fn cursor(&self) -> Option<String> {
        serde_json::to_string(&LogCursor { tail: self.tail.state.clone(), pending: self.pending.clone() }).ok()
    }

    fn restore(&mut self, cursor: &str) {
        match serde_json::from_str::<LogCursor>(cursor) {
            Ok(c) => {
                if let Ok(t) = serde_json::to_string(&c.tail) {
                    self.tail.restore(&t);
                }
                self.pending = c.pending;
            }
            Err(e) => tracing::warn!(file = %self.cfg.path.display(), error = %e, "ignoring an unreadable cursor"),
        }
    }
}

/// `templates(input, field, masks, max_templates)`: each event gains label `template_id`
/// and label and annotation `template` (the template's text as of this event) and
/// annotation `params` (a JSON array of the message's text at each `<*>`, each cut to
/// [`PARAM_MAX`] bytes).
pub struct Templates {
    field: String,
    cfg: Config,
    miner: Miner,
    /// Template texts by id, dropped when a merge or an eviction changes them.
    texts: HashMap<TemplateId, Arc<str>>,
    /// The snapshot last made, and whether the templates changed since.
    saved: Option<String>,
    dirty: bool,
}

impl Templates {
    pub fn new(field: String, cfg: Config) -> Templates {
        Templates { field, miner: Miner::new(cfg.clone()), cfg, texts: HashMap::new(), saved: None, dirty: false }
    }

    /// The miner (tests, `vigil templates`).
    pub fn miner(&self) -> &Miner {
        &self.miner
    }
}

impl Operator for Templates {
    fn process(&mut self, inputs: &[Data], ctx: &mut OpCtx) -> Result<Data, OpError> {
        let events = match inputs.first() {
            Some(Data::Events(e)) => e,
            Some(other) => return Err(OpError::Invalid(format!("templates takes Events, got {}", other.kind()))),
            None => return Err(OpError::Invalid("missing input".into())),
        };
        let mut out = Vec::with_capacity(events.events.len());
        for ev in &events.events {
            let Some(msg) = ev.annotations.get(&self.field).or_else(|| ev.labels.get(&self.field)) else {
                ctx.skip("no_message");
                continue;
            };
            let (outcome, mut params) = self.miner.ingest_with_params(msg);
            // A masked piece may be a 64 KiB blob: parameters are for reading, not storage.
            for p in &mut params {
                truncate(p, PARAM_MAX);
            }
            if outcome.new {
                ctx.count("template_created", 1);
                self.dirty = true;
            }
            for e in self.miner.take_events() {
                self.dirty = true;
                match e {
                    MinerEvent::Merged { from, into } => {
                        ctx.count("template_merged", 1);
                        self.texts.remove(&from);
                        self.texts.remove(&into);
                    }
                    MinerEvent::Evicted { id, .. } => {
                        ctx.count("template_evicted", 1);
                        self.texts.remove(&id);
                    }
                }
            }
            let miner = &self.miner;
            let text =
                self.texts.entry(outcome.id).or_insert_with(|| miner.get(outcome.id).map(|t| t.text()).unwrap_or_default().into()).clone();
            let mut e = ev.clone();
            e.labels.insert("template_id".to_owned(), outcome.id.to_string());
            e.labels.insert("template".to_owned(), text.to_string());
            e.annotations.insert("template".to_owned(), text.to_string());
            e.annotations.insert("params".to_owned(), serde_json::to_string(&params).unwrap_or_default());
            out.push(e);
        }
        Ok(Data::Events(Arc::new(EventsData { events: out })))
    }

    /// The miner's templates, aliases and next id, re-made when a template was created,
    /// merged or evicted (counts and recency are saved as of that moment).
    fn snapshot(&mut self) -> Option<String> {
        if self.dirty || self.saved.is_none() {
            self.saved = serde_json::to_string(&self.miner.snapshot()).ok();
            self.dirty = false;
        }
        self.saved.clone()
    }

    fn restore(&mut self, snapshot: &str) {
        let restored = serde_json::from_str::<crate::logs::Snapshot>(snapshot)
            .map_err(|e| e.to_string())
            .and_then(|s| Miner::restore(self.cfg.clone(), s));
        match restored {
            Ok(m) => {
                self.miner = m;
                self.texts.clear();
                self.saved = Some(snapshot.to_owned());
                self.dirty = false;
            }
            Err(e) => tracing::warn!(error = %e, "ignoring an unreadable template snapshot: template ids start afresh"),
        }
    }
}

/// `new_templates(input, after)`: a score of 1 (anomalous) for each event whose
/// `template_id` is higher than every id seen before — a template created since — once
/// `after` has passed since the first event the stage saw (data time: the events'
/// timestamps). Ids are counters, so the state is two numbers.
pub struct NewTemplates {
    after: i64,
    /// The first event's timestamp, and the highest id seen.
    start: Option<Timestamp>,
    max_seen: TemplateId,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct NewTemplatesState {
    start: Option<Timestamp>,
    max_seen: TemplateId,
}

impl NewTemplates {
    pub fn new(after: i64) -> NewTemplates {
        NewTemplates { after: after.max(0), start: None, max_seen: 0 }
    }
}

impl Operator for NewTemplates {
    fn process(&mut self, inputs: &[Data], ctx: &mut OpCtx) -> Result<Data, OpError> {
        let events = match inputs.first() {
            Some(Data::Events(e)) => e,
            Some(other) => return Err(OpError::Invalid(format!("new_templates takes Events, got {}", other.kind()))),
            None => return Err(OpError::Invalid("missing input".into())),
        };
        let mut out = Vec::new();
        for ev in &events.events {
            let Some(id) = ev.labels.get("template_id").and_then(|s| s.parse::<TemplateId>().ok()) else {
                ctx.skip("no_template_id");
                continue;
            };
            let start = *self.start.get_or_insert(ev.ts);
            if id <= self.max_seen {
                continue;
            }
            self.max_seen = id;
            if ev.ts < start.saturating_add(self.after) {
                continue;
            }
            let mut labels: Vec<(String, String)> = ev.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            if let Some(t) = ev.annotations.get("template") {
                labels.push(("template".to_owned(), t.clone()));
            }
            let mut sample = ev.annotations.get("message").or_else(|| ev.labels.get("message")).cloned().unwrap_or_default();
            truncate(&mut sample, SAMPLE_MAX);
            labels.push(("sample".to_owned(), sample));
            let mut col = ScoreColumn::new(SeriesId::new("new_template", labels));
            col.push(ev.ts, 1.0, 1.0, f64::NAN, f64::NAN, f64::NAN, true);
            out.push(col);
        }
        Ok(Data::Scores(Arc::new(ScoresData { series: out })))
    }

    fn snapshot(&mut self) -> Option<String> {
        serde_json::to_string(&NewTemplatesState { start: self.start, max_seen: self.max_seen }).ok()
    }

    fn restore(&mut self, snapshot: &str) {
        match serde_json::from_str::<NewTemplatesState>(snapshot) {
            Ok(s) => {
                self.start = s.start;
                self.max_seen = s.max_seen;
            }
            Err(e) => tracing::warn!(error = %e, "ignoring an unreadable new_templates state"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(format: Format, continuation: Option<&str>) -> LogSource {
        LogSource::new(LogConfig {
            path: PathBuf::from("/nonexistent"),
            format,
            continuation: continuation.map(|c| regex::Regex::new(c).unwrap()),
            continuation_wait: 5_000,
            max_line: 64,
            labels: vec![("app".into(), "db".into())],
            start_at: StartAt::Beginning,
            max_read: super::super::tail::MAX_READ,
        })
    }

    fn chunk(text: &str) -> super::super::tail::Chunk {
        super::super::tail::Chunk { text: text.into(), slot: Slot::Current, header: None, invalid_utf8: 0 }
    }

    #[test]
    fn header_records_with_continuations_wait_for_the_next_line() {
        let format =
            Format::Header { format: HeaderFormat::new("<Date> <Time> <Level> <Component>: <Content>").unwrap(), from_header: true };
        let mut s = source(format, Some(r"^\s"));
        let mut ctx = OpCtx::new(1_000);
        let ev = s.records(&[chunk("2026-12-02 10:00:00 ERROR db: query failed\n  at foo()\n  at bar()\n")], &mut ctx);
        assert!(ev.is_empty(), "the record waits for its continuation lines");
        let mut ctx = OpCtx::new(2_000);
        let ev = s.records(&[chunk("garbage line\n")], &mut ctx);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].annotations["message"], "query failed");
        assert_eq!(ev[0].annotations["line"], "2026-12-02 10:00:00 ERROR db: query failed\n  at foo()\n  at bar()");
        assert_eq!(ev[0].labels["Level"], "ERROR");
        assert_eq!(ev[0].labels["app"], "db");
        assert_eq!(ev[0].ts, crate::time::parse_timestamp("2026-12-02 10:00:00").unwrap());
        // The unmatched line waits too, then is flushed by time and counted.
        let mut ctx = OpCtx::new(7_000);
        let ev = s.records(&[], &mut ctx);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].annotations["message"], "garbage line");
        assert_eq!(ev[0].ts, 7_000);
        assert_eq!(ctx.skipped, vec![("unmatched_header", 1)]);
        // A long line is cut on a character boundary.
        let mut s = source(Format::Json { message: "msg".into(), label_fields: vec!["level".into()], timestamp_field: None }, None);
        let mut ctx = OpCtx::new(1);
        let ev = s.records(&[chunk(&format!("{}\n{{\"msg\": \"hi\", \"level\": \"warn\"}}\n", "é".repeat(100)))], &mut ctx);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].annotations["message"].len(), 64);
        assert_eq!(ev[1].annotations["message"], "hi");
        assert_eq!(ev[1].labels["level"], "warn");
        assert_eq!(ctx.skipped, vec![("line_truncated", 1), ("not_json", 1)]);
    }

    /// A real file renamed away (logrotate) while a multi-line record waits: the record is
    /// completed from the old file and emitted once it is drained; nothing is read twice.
    #[tokio::test]
    async fn a_rotation_completes_the_waiting_record_and_reads_the_new_file() {
        let dir = std::env::temp_dir().join(format!("vigil-logs-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("app.log");
        std::fs::write(&path, "2026-12-02 10:00:00 ERROR db: first failure\n  at a()\n").unwrap();
        let header = HeaderFormat::new("<Date> <Time> <Level> <Component>: <Content>").unwrap();
        let mut s = LogSource::new(LogConfig {
            path: path.clone(),
            format: Format::Header { format: header, from_header: false },
            continuation: Some(regex::Regex::new(r"^\s").unwrap()),
            continuation_wait: 60_000,
            max_line: DEFAULT_MAX_LINE,
            labels: Vec::new(),
            start_at: StartAt::Beginning,
            max_read: DEFAULT_MAX_READ,
        });
        let mut ctx = OpCtx::new(1_000);
        let Data::Events(e) = s.collect(&mut ctx).await.unwrap() else { panic!() };
        assert!(e.events.is_empty(), "the record waits");
        // Its cursor holds the waiting record; a restored source resumes with it.
        let cursor = s.cursor().unwrap();
        assert!(cursor.contains("first failure"), "{cursor}");
        // More of the trace, then the rotation: renamed, and a new file at the path.
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
            f.write_all(b"  at b()").unwrap();
        }
        std::fs::rename(&path, dir.join("app.log.1")).unwrap();
        std::fs::write(&path, "2026-12-02 10:00:05 INFO db: recovered\n").unwrap();
        let mut ctx = OpCtx::new(2_000);
        let Data::Events(e) = s.collect(&mut ctx).await.unwrap() else { panic!() };
        let lines: Vec<&str> = e.events.iter().map(|e| e.annotations["line"].as_str()).collect();
        assert_eq!(lines, vec!["2026-12-02 10:00:00 ERROR db: first failure\n  at a()\n  at b()"]);
        // The new file's record waits for its continuation lines, then comes by time.
        let mut ctx = OpCtx::new(70_000);
        let Data::Events(e) = s.collect(&mut ctx).await.unwrap() else { panic!() };
        assert_eq!(e.events.len(), 1);
        assert_eq!(e.events[0].annotations["message"], "recovered");
        assert_eq!(e.events[0].labels["Level"], "INFO");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn events(msgs: &[(i64, &str)]) -> Data {
        let events = msgs
            .iter()
            .map(|(ts, m)| Event {
                ts: *ts,
                labels: BTreeMap::new(),
                annotations: [("message".to_owned(), (*m).to_owned())].into(),
                status: String::new(),
                fingerprint: String::new(),
            })
            .collect();
        Data::Events(Arc::new(EventsData { events }))
    }

    #[test]
    fn template_ids_survive_a_snapshot_and_new_templates_wait_for_the_warm_up() {
        let mut t = Templates::new("message".into(), Config::default());
        let mut ctx = OpCtx::new(0);
        let Data::Events(out) =
            t.process(&[events(&[(0, "connection from 10.0.0.1 closed"), (1, "disk full on /var")])], &mut ctx).unwrap()
        else {
            panic!()
        };
        assert_eq!(out.events[0].labels["template_id"], "1");
        assert_eq!(out.events[0].annotations["template"], "connection from <*> closed");
        assert_eq!(out.events[0].annotations["params"], r#"["10.0.0.1"]"#);
        let snap = t.snapshot().unwrap();
        let mut u = Templates::new("message".into(), Config::default());
        u.restore(&snap);
        let Data::Events(again) = u.process(&[events(&[(2, "disk full on /var"), (3, "a brand new message")])], &mut ctx).unwrap() else {
            panic!()
        };
        assert_eq!(again.events[0].labels["template_id"], "2");
        assert_eq!(again.events[1].labels["template_id"], "3");

        let mut n = NewTemplates::new(10);
        let Data::Scores(s) = n.process(&[Data::Events(out.clone())], &mut ctx).unwrap() else { panic!() };
        assert!(s.series.is_empty(), "during the warm-up");
        let snap = n.snapshot().unwrap();
        let mut n = NewTemplates::new(10);
        n.restore(&snap);
        let mut late = (*again).clone();
        late.events.iter_mut().for_each(|e| e.ts += 100);
        let Data::Scores(s) = n.process(&[Data::Events(Arc::new(late))], &mut ctx).unwrap() else { panic!() };
        assert_eq!(s.series.len(), 1);
        assert_eq!(s.series[0].id.label("template"), Some("a brand new message"));
        assert_eq!(s.series[0].id.label("sample"), Some("a brand new message"));
        assert!(s.series[0].anomalous[0]);
    }
}
