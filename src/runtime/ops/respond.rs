//! Respond operators. This module holds `log`, which needs no server: it opens an
//! incident per dedup key when items match the stage's condition (after `pending_for`),
//! resolves it when nothing matched for `keep_firing_for`, and reports each transition on
//! the console and in `STATE/outbox.jsonl`. The other channels (email, webhook, Slack,
//! PagerDuty, Alertmanager, exec) come with the respond issue.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use crate::data::{Data, IncidentUpdate, IncidentsData, ScoreColumn, Timestamp};
use crate::runtime::cond::{Condition, Fields, Template, Val};
use crate::runtime::{OpCtx, OpError, Operator};

/// Appends one line to a file shared by stages that run concurrently: the line is
/// written with a single call, under a process-wide lock, so lines never interleave.
/// (A regression: `writeln!` on an unbuffered file wrote a record in several pieces, and
/// two respond stages of one tick interleaved them — found by tests/reload.rs under load.)
pub fn append_line(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    std::fs::OpenOptions::new().create(true).append(true).open(path)?.write_all(buf.as_bytes())
}

/// One scored sample, as conditions see it.
pub struct ScoreItem<'a> {
    pub col: &'a ScoreColumn,
    pub i: usize,
    pub series: &'a str,
}

impl Fields for ScoreItem<'_> {
    fn field(&self, name: &str) -> Val<'_> {
        let c = self.col;
        match name {
            "score" => Val::Num(c.score[self.i]),
            "value" => Val::Num(c.value[self.i]),
            "anomalous" => Val::Bool(c.anomalous[self.i]),
            "expected" => Val::Num(c.expected[self.i]),
            "lower" => Val::Num(c.lower[self.i]),
            "upper" => Val::Num(c.upper[self.i]),
            "timestamp" => Val::Num(c.ts[self.i] as f64),
            "series" => Val::Str(std::borrow::Cow::Borrowed(self.series)),
            "labels" => Val::Labels(c.id.labels()),
            _ => Val::Null,
        }
    }
}

#[derive(Debug)]
struct Open {
    since: Timestamp,
    last_match: Timestamp,
    firing: bool,
    series: String,
    score: f64,
    value: f64,
}

/// `log(message, when, dedup, group_by)`.
pub struct Log {
    pub pipeline: String,
    pub stage: String,
    pub when: Option<Condition>,
    pub dedup: Template,
    pub message: Template,
    pub pending_ms: i64,
    pub keep_firing_ms: i64,
    pub outbox: Option<PathBuf>,
    open: HashMap<String, Open>,
    /// The newest timestamp seen per series, to resolve incidents by data time.
    latest: HashMap<String, Timestamp>,
}

impl Log {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pipeline: String,
        stage: String,
        when: Option<Condition>,
        dedup: Template,
        message: Template,
        pending_ms: i64,
        keep_firing_ms: i64,
        outbox: Option<PathBuf>,
    ) -> Log {
        Log { pipeline, stage, when, dedup, message, pending_ms, keep_firing_ms, outbox, open: HashMap::new(), latest: HashMap::new() }
    }

    fn report(&self, u: &IncidentUpdate) {
        let ctx = serde_json::json!({
            "pipeline": self.pipeline, "stage": self.stage, "series": u.series,
            "incident": { "status": u.status, "key": u.key, "score": format!("{:.3}", u.score), "value": u.value, "series": u.series, "timestamp": crate::time::format_rfc3339(u.ts) },
        });
        let line = self.message.render(&ctx);
        tracing::info!(target: "vigil::incident", pipeline = %self.pipeline, stage = %self.stage, status = %u.status, key = %u.key, "{line}");
        if let Some(path) = &self.outbox {
            let record =
                serde_json::json!({ "channel": "log", "pipeline": self.pipeline, "stage": self.stage, "message": line, "update": u });
            if let Err(e) = append_line(path, &record.to_string()) {
                tracing::warn!(path = %path.display(), error = %e, "cannot append to the outbox");
            }
        }
    }
}

impl Operator for Log {
    fn process(&mut self, inputs: &[Data], _ctx: &mut OpCtx) -> Result<Data, OpError> {
        let mut updates = Vec::new();
        match inputs.first() {
            Some(Data::Scores(s)) => {
                for col in &s.series {
                    let series = col.id.to_string();
                    for i in 0..col.len() {
                        let item = ScoreItem { col, i, series: &series };
                        let matches = match &self.when {
                            Some(c) => c.holds(&item),
                            None => col.anomalous[i],
                        };
                        let ts = col.ts[i];
                        self.latest.insert(series.clone(), ts);
                        if !matches {
                            continue;
                        }
                        let labels: serde_json::Map<String, serde_json::Value> =
                            col.id.labels().iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
                        let key = self.dedup.render(
                            &serde_json::json!({ "pipeline": self.pipeline, "stage": self.stage, "series": series, "labels": labels }),
                        );
                        let open = self.open.entry(key.clone()).or_insert(Open {
                            since: ts,
                            last_match: ts,
                            firing: false,
                            series: series.clone(),
                            score: 0.0,
                            value: 0.0,
                        });
                        open.last_match = ts;
                        open.score = col.score[i];
                        open.value = col.value[i];
                        if !open.firing && ts - open.since >= self.pending_ms {
                            open.firing = true;
                            updates.push(IncidentUpdate {
                                key,
                                status: "firing".into(),
                                series: series.clone(),
                                score: col.score[i],
                                value: col.value[i],
                                ts,
                            });
                        }
                    }
                }
                // Resolve what has not matched for `keep_firing_for`, by data time.
                let mut resolved = Vec::new();
                for (key, o) in &self.open {
                    let now = self.latest.get(&o.series).copied().unwrap_or(o.last_match);
                    if now - o.last_match > self.keep_firing_ms {
                        resolved.push(key.clone());
                    }
                }
                resolved.sort();
                for key in resolved {
                    if let Some(o) = self.open.remove(&key) {
                        if o.firing {
                            let ts = self.latest.get(&o.series).copied().unwrap_or(o.last_match);
                            updates.push(IncidentUpdate {
                                key,
                                status: "resolved".into(),
                                series: o.series,
                                score: o.score,
                                value: o.value,
                                ts,
                            });
                        }
                    }
                }
            }
            Some(Data::Incidents(i)) => updates.extend(i.updates.iter().cloned()),
            Some(other) => return Err(OpError::Invalid(format!("log takes Scores or Incidents, got {}", other.kind()))),
            None => return Err(OpError::Invalid("missing input".into())),
        }
        for u in &updates {
            self.report(u);
        }
        Ok(Data::Incidents(Arc::new(IncidentsData { updates })))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn concurrent_appends_never_interleave() {
        let dir = std::env::temp_dir().join(format!("vigil-append-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("outbox.jsonl");
        let _ = std::fs::remove_file(&path);
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        super::append_line(&path, &format!("{{\"thread\":{t},\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(200))).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2000);
        assert!(text.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()), "every line is one whole record");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
