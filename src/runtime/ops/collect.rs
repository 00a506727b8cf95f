//! Collect operators: csv, jsonl, synthetic, prometheus.scrape, prometheus.query_range,
//! webhook_events.
//!
//! Bad input is handled per case (and tested in `tests/engine.rs`):
//! - a malformed row or line, a value that is not a number, NaN or ±Inf in a file: the row
//!   is skipped and counted (`malformed_row`, `non_finite`), with its line logged;
//! - a sample older than the last one of its series: skipped and counted (`out_of_order`);
//!   a sample with the same timestamp as the last: skipped and counted (`duplicate`), the
//!   first one wins — so downstream state never sees time go backwards;
//! - a file rotated (renamed, deleted and recreated, copytruncated), also while vigil was
//!   stopped: the rest of the old file is read, then the new one from its start; what
//!   cannot be found is counted (`vigil_source_lost_rows_total`) — see [`super::tail`];
//! - a huge file: read at most [`MAX_READ`] bytes per tick, the rest on later ticks;
//! - an unreachable server, an HTTP error, a body that is not the expected format: the
//!   stage fails the tick with the reason (retried per the stage's `retry` option); the
//!   cursor does not move, so nothing is lost.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::data::{Data, Event, EventsData, SeriesColumn, SeriesData, SeriesId, Timestamp};
use crate::runtime::{BoxFuture, OpCtx, OpError, Source};

pub use super::tail::MAX_READ;
use super::tail::{StartAt, Tail};

/// Per-series guard against time going backwards: drops out-of-order and duplicate
/// samples, counting them.
#[derive(Debug, Default)]
pub struct Monotonic {
    last: HashMap<SeriesId, Timestamp>,
}

impl Monotonic {
    /// Whether a sample at `ts` may follow the series' last one; counts the rejects.
    pub fn admit(&mut self, id: &SeriesId, ts: Timestamp, ctx: &mut OpCtx) -> bool {
        match self.last.get_mut(id) {
            Some(last) if ts < *last => {
                ctx.skip("out_of_order");
                false
            }
            Some(last) if ts == *last => {
                ctx.skip("duplicate");
                false
            }
            Some(last) => {
                *last = ts;
                true
            }
            None => {
                self.last.insert(id.clone(), ts);
                true
            }
        }
    }
}

/// Groups samples by series while keeping first-seen order.
#[derive(Default)]
pub struct Collector {
    index: HashMap<SeriesId, usize>,
    out: Vec<SeriesColumn>,
}

impl Collector {
    pub fn push(&mut self, id: &SeriesId, ts: Timestamp, v: f64) {
        let i = *self.index.entry(id.clone()).or_insert_with(|| {
            self.out.push(SeriesColumn::new(id.clone()));
            self.out.len() - 1
        });
        self.out[i].push(ts, v);
    }

    pub fn finish(self) -> SeriesData {
        SeriesData { series: self.out }
    }
}

/// Splits a CSV line into fields: commas, with `"quoted, fields"` and `""` escapes.
pub fn split_csv(line: &str) -> Vec<std::borrow::Cow<'_, str>> {
    use std::borrow::Cow;
    if !line.contains('"') {
        return line.split(',').map(|f| Cow::Borrowed(f.trim())).collect();
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(Cow::Owned(std::mem::take(&mut cur).trim().to_owned())),
            c => cur.push(c),
        }
    }
    out.push(Cow::Owned(cur.trim().to_owned()));
    out
}

/// `csv(path, timestamp_column, value_columns, labels)`.
pub struct CsvSource {
    pub path: PathBuf,
    pub timestamp_column: String,
    pub value_columns: Vec<String>,
    pub labels: Vec<(String, String)>,
    tail: Tail,
    monotonic: Monotonic,
    ids: Vec<SeriesId>,
}

impl CsvSource {
    pub fn new(path: PathBuf, timestamp_column: String, value_columns: Vec<String>, labels: Vec<(String, String)>) -> CsvSource {
        let ids = value_columns.iter().map(|c| SeriesId::new(c.clone(), labels.clone())).collect();
        let mut tail = Tail::new(path.clone());
        tail.header_line = true;
        CsvSource { path, timestamp_column, value_columns, labels, tail, monotonic: Monotonic::default(), ids }
    }

    /// Where to start in a file met for the first time (the header is read either way).
    pub fn start_at(mut self, at: StartAt) -> CsvSource {
        self.tail.start_at = at;
        self
    }

    /// Parses whole lines of one file into `out`; the first is the header when `header`
    /// is not known yet (it is set then).
    pub fn parse_lines(
        &mut self,
        text: &str,
        header: &mut Option<Vec<String>>,
        out: &mut Collector,
        ctx: &mut OpCtx,
    ) -> Result<(), OpError> {
        let mut lines = text.split('\n');
        if header.is_none() {
            let Some(first) = lines.next() else { return Ok(()) };
            *header = Some(split_csv(first.trim_end_matches('\r')).into_iter().map(|c| c.into_owned()).collect());
        }
        let header = header.as_deref().unwrap_or_default();
        let ts_col = header.iter().position(|h| *h == self.timestamp_column).ok_or_else(|| {
            OpError::Invalid(format!(
                "`{}` has no column `{}`; its columns are: {}",
                self.path.display(),
                self.timestamp_column,
                header.join(", ")
            ))
        })?;
        let mut cols = Vec::new();
        for c in &self.value_columns {
            cols.push(header.iter().position(|h| h == c).ok_or_else(|| {
                OpError::Invalid(format!("`{}` has no column `{c}`; its columns are: {}", self.path.display(), header.join(", ")))
            })?);
        }
        for line in lines {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let fields = split_csv(line);
            let Some(ts) = fields.get(ts_col).and_then(|f| crate::time::parse_timestamp(f)) else {
                ctx.skip("malformed_row");
                tracing::debug!(file = %self.path.display(), line, "skipped a row: bad or missing timestamp");
                continue;
            };
            for (i, &c) in cols.iter().enumerate() {
                match fields.get(c).map(|f| f.parse::<f64>()) {
                    Some(Ok(v)) if v.is_finite() => {
                        if self.monotonic.admit(&self.ids[i], ts, ctx) {
                            out.push(&self.ids[i], ts, v);
                        }
                    }
                    Some(Ok(_)) => ctx.skip("non_finite"),
                    _ => {
                        ctx.skip("malformed_row");
                        tracing::debug!(file = %self.path.display(), line, "skipped a value: not a number");
                    }
                }
            }
        }
        Ok(())
    }
}

impl Source for CsvSource {
    fn forget(&mut self, ids: &[SeriesId]) {
        for id in ids {
            self.monotonic.last.remove(id);
        }
    }

    fn collect<'a>(&'a mut self, ctx: &'a mut OpCtx) -> BoxFuture<'a, Result<Data, OpError>> {
        Box::pin(async move {
            let mut read = self.tail.read(ctx).await?;
            let mut out = Collector::default();
            for chunk in std::mem::take(&mut read.chunks) {
                let mut header = chunk.header;
                self.parse_lines(&chunk.text, &mut header, &mut out, ctx)?;
                if let Some(h) = read.header_mut(chunk.slot) {
                    *h = header;
                }
            }
            // Commit only once parsing succeeded, so a failed tick reads the same rows
            // again.
            self.tail.commit(read.next);
            Ok(Data::Series(Arc::new(out.finish())))
        })
    }

    fn cursor(&self) -> Option<String> {
        self.tail.save()
    }

    fn restore(&mut self, cursor: &str) {
        self.tail.restore(cursor);
    }
}

/// `jsonl(path, timestamp_field, value_field, label_fields)`.
pub struct JsonlSource {
    pub path: PathBuf,
    pub timestamp_field: String,
    pub value_field: String,
    pub label_fields: Vec<String>,
    tail: Tail,
    monotonic: Monotonic,
}

impl JsonlSource {
    pub fn new(path: PathBuf, timestamp_field: String, value_field: String, label_fields: Vec<String>) -> JsonlSource {
        let tail = Tail::new(path.clone());
        JsonlSource { path, timestamp_field, value_field, label_fields, tail, monotonic: Monotonic::default() }
    }

    /// Where to start in a file met for the first time.
    pub fn start_at(mut self, at: StartAt) -> JsonlSource {
        self.tail.start_at = at;
        self
    }

    fn parse_line(&mut self, line: &str, out: &mut Collector, ctx: &mut OpCtx) {
        let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(line) else {
            ctx.skip("malformed_row");
            return;
        };
        let ts = match obj.get(&self.timestamp_field) {
            Some(serde_json::Value::String(s)) => crate::time::parse_timestamp(s),
            Some(serde_json::Value::Number(n)) => n.as_f64().filter(|f| f.is_finite()).map(|s| (s * 1000.0).round() as i64),
            _ => None,
        };
        let value = match obj.get(&self.value_field) {
            Some(serde_json::Value::Number(n)) => n.as_f64(),
            Some(serde_json::Value::String(s)) => s.parse::<f64>().ok(),
            _ => None,
        };
        let (Some(ts), Some(v)) = (ts, value) else {
            ctx.skip("malformed_row");
            return;
        };
        if !v.is_finite() {
            ctx.skip("non_finite");
            return;
        }
        let labels = self.label_fields.iter().filter_map(|f| {
            obj.get(f).map(|v| {
                let s = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (f.clone(), s)
            })
        });
        let id = SeriesId::new(self.value_field.clone(), labels);
        if self.monotonic.admit(&id, ts, ctx) {
            out.push(&id, ts, v);
        }
    }
}

impl Source for JsonlSource {
    fn forget(&mut self, ids: &[SeriesId]) {
        for id in ids {
            self.monotonic.last.remove(id);
        }
    }

    fn collect<'a>(&'a mut self, ctx: &'a mut OpCtx) -> BoxFuture<'a, Result<Data, OpError>> {
        Box::pin(async move {
            let read = self.tail.read(ctx).await?;
            let mut out = Collector::default();
            for chunk in &read.chunks {
                for line in chunk.text.split('\n') {
                    if !line.trim().is_empty() {
                        self.parse_line(line, &mut out, ctx);
                    }
                }
            }
            self.tail.commit(read.next);
            Ok(Data::Series(Arc::new(out.finish())))
        })
    }

    fn cursor(&self) -> Option<String> {
        self.tail.save()
    }

    fn restore(&mut self, cursor: &str) {
        self.tail.restore(cursor);
    }
}

pub use crate::stats::Rng;

/// The parameters of `synthetic`.
#[derive(Clone, Debug)]
pub struct SyntheticConfig {
    pub seed: u64,
    pub series: usize,
    pub interval_ms: i64,
    pub baseline: f64,
    pub noise: f64,
    pub period_ms: i64,
    pub amplitude: f64,
    pub incident_every_ms: i64,
    pub incident_length_ms: i64,
    pub incident_size: f64,
    pub speedup: f64,
}

/// `synthetic(...)`: a seasonal wave with noise and injected incidents (level shifts and
/// spikes), deterministic for a seed. Series time runs `speedup` times faster than the
/// wall clock from the first tick; the first tick also brings one period of history
/// without incidents (at most an hour), so that detectors have a baseline at once.
pub struct SyntheticSource {
    cfg: SyntheticConfig,
    ids: Vec<SeriesId>,
    /// Wall time and series time of the first tick.
    origin: Option<(Timestamp, Timestamp)>,
    /// The next sample's series time.
    next: Timestamp,
}

impl SyntheticSource {
    pub fn new(cfg: SyntheticConfig) -> SyntheticSource {
        let ids = (0..cfg.series).map(|i| SeriesId::new("synthetic", [("series".to_owned(), i.to_string())])).collect();
        SyntheticSource { cfg, ids, origin: None, next: 0 }
    }

    /// The value of series `s` at series time `t`, and whether an incident is injected.
    pub fn value_at(&self, s: usize, t: Timestamp, with_incidents: bool) -> (f64, bool) {
        let c = &self.cfg;
        // Noise from a generator seeded by (seed, series, time): any sample can be
        // recomputed, so ticks of any size give the same data.
        let mut rng = Rng::new(c.seed.wrapping_mul(1_000_003).wrapping_add(s as u64).wrapping_mul(0x1000_0000_01B3) ^ t as u64);
        let phase = (s as f64) * 0.7;
        let wave = c.amplitude * ((t as f64 / c.period_ms.max(1) as f64) * 2.0 * std::f64::consts::PI + phase).sin();
        let mut v = c.baseline + wave + c.noise * rng.normal();
        let mut incident = false;
        if with_incidents {
            // Incident k starts at a seeded offset inside its slot of `incident_every`.
            let slot = t.div_euclid(c.incident_every_ms.max(1));
            let mut srng = Rng::new(c.seed ^ (slot as u64).wrapping_mul(0x2545_F491_4F6C_DD1D) ^ (s as u64) << 48);
            let room = (c.incident_every_ms - c.incident_length_ms).max(1);
            let start = slot * c.incident_every_ms + (srng.uniform() * room as f64) as i64;
            let hit_series = srng.uniform() < 0.6;
            if hit_series && t >= start && t < start + c.incident_length_ms {
                incident = true;
                let size = c.incident_size * c.noise.max(1e-9);
                if srng.uniform() < 0.5 {
                    v += size; // a level shift for the whole incident
                } else if (t - start) % (c.interval_ms.max(1) * 5) == 0 {
                    v += 2.0 * size; // spikes
                } else {
                    v += 0.5 * size;
                }
            }
        }
        (v, incident)
    }

    /// Generates every sample up to the series time that corresponds to `now_wall`.
    pub fn generate(&mut self, now_wall: Timestamp) -> SeriesData {
        let c = self.cfg.clone();
        let interval = c.interval_ms.max(1);
        let (wall0, _) = *self.origin.get_or_insert_with(|| {
            let history = c.period_ms.min(3_600_000).max(interval);
            let start = now_wall - history;
            let start = start - start.rem_euclid(interval);
            (now_wall, start)
        });
        if self.next == 0 {
            self.next = self.origin.map_or(now_wall, |(_, s)| s);
        }
        // Series time runs `speedup` times faster than the wall clock after the first tick;
        // samples before the first tick are history, without incidents.
        let until = wall0 + ((now_wall - wall0).max(0) as f64 * c.speedup) as i64;
        let mut out: Vec<SeriesColumn> = self.ids.iter().map(|id| SeriesColumn::new(id.clone())).collect();
        let mut t = self.next;
        // Never more than a million samples per series in one tick.
        let mut budget = 1_000_000;
        while t <= until && budget > 0 {
            for (s, col) in out.iter_mut().enumerate() {
                let (v, _) = self.value_at(s, t, t >= wall0);
                col.push(t, v);
            }
            t += interval;
            budget -= 1;
        }
        self.next = t;
        SeriesData { series: out }
    }
}

impl Source for SyntheticSource {
    fn collect<'a>(&'a mut self, ctx: &'a mut OpCtx) -> BoxFuture<'a, Result<Data, OpError>> {
        Box::pin(async move { Ok(Data::Series(Arc::new(self.generate(ctx.now)))) })
    }
}

/// `prometheus.scrape(url, metrics, labels, timeout)`.
pub struct ScrapeSource {
    pub url: String,
    pub metrics: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub client: reqwest::Client,
    monotonic: Monotonic,
}

impl ScrapeSource {
    pub fn new(url: String, metrics: Vec<String>, labels: Vec<(String, String)>, client: reqwest::Client) -> ScrapeSource {
        ScrapeSource { url, metrics, labels, client, monotonic: Monotonic::default() }
    }

    fn wanted(&self, name: &str) -> bool {
        if self.metrics.is_empty() {
            return true;
        }
        let family = ["_bucket", "_sum", "_count", "_total"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        self.metrics.iter().any(|m| m == name || m == family)
    }

    /// Turns an exposition into series: the sample's timestamp or the scrape time.
    pub fn convert(&mut self, text: &str, now: Timestamp, ctx: &mut OpCtx) -> SeriesData {
        let exp = crate::prom::parse_exposition(text);
        if !exp.issues.is_empty() {
            ctx.skip_n("malformed_line", exp.issues.len() as u64);
            for i in exp.issues.iter().take(3) {
                tracing::warn!(url = %self.url, line = i.line, reason = %i.message, "skipped a line of the exposition");
            }
        }
        let mut out = Collector::default();
        for s in exp.samples {
            if !self.wanted(s.id.name()) {
                continue;
            }
            let mut id = s.id;
            for (k, v) in &self.labels {
                id = id.with_label(k, v);
            }
            let ts = s.timestamp.unwrap_or(now);
            if self.monotonic.admit(&id, ts, ctx) {
                out.push(&id, ts, s.value);
            }
        }
        out.finish()
    }
}

impl Source for ScrapeSource {
    fn collect<'a>(&'a mut self, ctx: &'a mut OpCtx) -> BoxFuture<'a, Result<Data, OpError>> {
        Box::pin(async move {
            let resp = self
                .client
                .get(&self.url)
                .header("Accept", "text/plain;version=0.0.4")
                .send()
                .await
                .map_err(|e| OpError::Io(format!("cannot scrape `{}`: {}", self.url, error_chain(&e))))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(OpError::Io(format!("scraping `{}` answered {status}", self.url)));
            }
            let body = resp.text().await.map_err(|e| OpError::Io(format!("cannot read the scrape of `{}`: {e}", self.url)))?;
            let now = ctx.now;
            Ok(Data::Series(Arc::new(self.convert(&body, now, ctx))))
        })
    }
}

/// The causes of an error joined, so that "connection refused" is not hidden behind
/// "error sending request".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// `prometheus.query_range(url, query, step, lookback, timeout, bearer_token)`.
pub struct QueryRangeSource {
    pub url: String,
    pub query: String,
    pub step_ms: i64,
    pub lookback_ms: i64,
    pub bearer: Option<String>,
    pub client: reqwest::Client,
    /// The end of the last range fetched (ms).
    cursor: Option<Timestamp>,
}

impl QueryRangeSource {
    pub fn new(
        url: String,
        query: String,
        step_ms: i64,
        lookback_ms: i64,
        bearer: Option<String>,
        client: reqwest::Client,
    ) -> QueryRangeSource {
        QueryRangeSource {
            url: url.trim_end_matches('/').to_owned(),
            query,
            step_ms: step_ms.max(1),
            lookback_ms,
            bearer,
            client,
            cursor: None,
        }
    }
}

impl Source for QueryRangeSource {
    fn collect<'a>(&'a mut self, ctx: &'a mut OpCtx) -> BoxFuture<'a, Result<Data, OpError>> {
        Box::pin(async move {
            let end = ctx.now;
            let start = match self.cursor {
                Some(c) => c + self.step_ms,
                None => end - self.lookback_ms,
            };
            if start > end {
                return Ok(Data::Series(Arc::new(SeriesData::default())));
            }
            let secs = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
            let mut req = self.client.get(format!("{}/api/v1/query_range", self.url)).query(&[
                ("query", self.query.as_str()),
                ("start", &secs(start)),
                ("end", &secs(end)),
                ("step", &secs(self.step_ms)),
            ]);
            if let Some(token) = &self.bearer {
                req = req.bearer_auth(token);
            }
            let resp = req.send().await.map_err(|e| OpError::Io(format!("cannot query `{}`: {}", self.url, error_chain(&e))))?;
            let status = resp.status();
            let body = resp.bytes().await.map_err(|e| OpError::Io(format!("cannot read the answer of `{}`: {e}", self.url)))?;
            let parsed = crate::prom::parse_query_range(&body, "query");
            let (series, bad) = match parsed {
                Ok(r) => r,
                Err(e) => return Err(OpError::Io(format!("query_range on `{}` ({status}): {e}", self.url))),
            };
            ctx.skip_n("unparsable_value", bad as u64);
            // The range's last evaluation time: the next range starts one step after it.
            let steps = (end - start) / self.step_ms;
            self.cursor = Some(start + steps * self.step_ms);
            let mut out = SeriesData { series };
            for col in &mut out.series {
                let keep: Vec<usize> = (0..col.len()).filter(|&i| col.values[i].is_finite()).collect();
                if keep.len() != col.len() {
                    ctx.skip_n("non_finite", (col.len() - keep.len()) as u64);
                    col.ts = keep.iter().map(|&i| col.ts[i]).collect();
                    col.values = keep.iter().map(|&i| col.values[i]).collect();
                }
            }
            Ok(Data::Series(Arc::new(out)))
        })
    }

    fn cursor(&self) -> Option<String> {
        self.cursor.map(|c| c.to_string())
    }

    fn restore(&mut self, cursor: &str) {
        match cursor.parse() {
            Ok(c) => self.cursor = Some(c),
            Err(_) => tracing::warn!(url = %self.url, "ignoring an unreadable cursor"),
        }
    }
}

/// The events posted to a pipeline's webhook, waiting for the next tick.
pub type EventQueue = Arc<Mutex<VecDeque<Event>>>;

/// The most events waiting per pipeline; a request beyond it is refused with 503.
pub const MAX_QUEUED_EVENTS: usize = 100_000;

/// `webhook_events(format, max_body)`: the events posted since the last tick.
pub struct WebhookSource {
    pub queue: EventQueue,
}

impl Source for WebhookSource {
    fn collect<'a>(&'a mut self, _ctx: &'a mut OpCtx) -> BoxFuture<'a, Result<Data, OpError>> {
        Box::pin(async move {
            // Taken whole: a flood's queue gives its memory back instead of keeping the
            // capacity for ever.
            let events: Vec<Event> = self.queue.lock().map(|mut q| Vec::from(std::mem::take(&mut *q))).unwrap_or_default();
            Ok(Data::Events(Arc::new(EventsData { events })))
        })
    }
}

/// Parses a webhook body: `alertmanager` (payload version 4: one event per alert) or
/// `json` (an object, or an array of objects: one event each; string fields become
/// labels, a `timestamp` field the time).
///
/// # Errors
/// What is wrong with the body, for a 400 answer.
pub fn parse_webhook(format: &str, body: &[u8], now: Timestamp) -> Result<Vec<Event>, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let strings = |v: Option<&serde_json::Value>| -> BTreeMap<String, String> {
        v.and_then(|m| m.as_object())
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect())
            .unwrap_or_default()
    };
    if format == "alertmanager" {
        let alerts = v.get("alerts").and_then(|a| a.as_array()).ok_or("an Alertmanager payload has an `alerts` array")?;
        if let Some(ver) = v.get("version").and_then(|x| x.as_str()) {
            if ver != "4" {
                tracing::warn!(version = ver, "Alertmanager payload version is not 4; reading it anyway");
            }
        }
        return Ok(alerts
            .iter()
            .map(|a| Event {
                ts: a.get("startsAt").and_then(|s| s.as_str()).and_then(crate::time::parse_timestamp).unwrap_or(now),
                labels: strings(a.get("labels")),
                annotations: strings(a.get("annotations")),
                status: a.get("status").and_then(|s| s.as_str()).unwrap_or("firing").to_owned(),
                fingerprint: a.get("fingerprint").and_then(|s| s.as_str()).unwrap_or_default().to_owned(),
            })
            .collect());
    }
    let items: Vec<&serde_json::Value> = match &v {
        serde_json::Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::new();
    for item in items {
        let Some(obj) = item.as_object() else { return Err("expected a JSON object or an array of objects".into()) };
        let ts = obj
            .get("timestamp")
            .and_then(|t| t.as_str().and_then(crate::time::parse_timestamp).or_else(|| t.as_f64().map(|s| (s * 1000.0) as i64)))
            .unwrap_or(now);
        let labels =
            obj.iter().filter(|(k, _)| *k != "timestamp").filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned()))).collect();
        out.push(Event {
            ts,
            labels,
            annotations: BTreeMap::new(),
            status: obj.get("status").and_then(|s| s.as_str()).unwrap_or_default().to_owned(),
            fingerprint: String::new(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_skip_and_count_bad_input() {
        let mut src = CsvSource::new("t.csv".into(), "timestamp".into(), vec!["value".into()], vec![]);
        let mut ctx = OpCtx::new(0);
        let text = "timestamp,value\n2014-04-01 00:00:00,1.5\nnot a date,2\n2014-04-01 00:05:00,abc\n2014-04-01 00:05:00,NaN\n2014-04-01 00:10:00,3\n2014-04-01 00:10:00,4\n2014-04-01 00:05:00,5\n";
        let mut out = Collector::default();
        src.parse_lines(text, &mut None, &mut out, &mut ctx).unwrap();
        let data = out.finish();
        assert_eq!(data.series.len(), 1);
        assert_eq!(data.series[0].values, vec![1.5, 3.0]);
        let count = |r: &str| ctx.skipped.iter().find(|(k, _)| *k == r).map_or(0, |(_, n)| *n);
        assert_eq!((count("malformed_row"), count("non_finite"), count("duplicate"), count("out_of_order")), (2, 1, 1, 1));
    }

    #[test]
    fn csv_without_the_timestamp_column_is_an_error() {
        let mut src = CsvSource::new("t.csv".into(), "timestamp".into(), vec!["value".into()], vec![]);
        let err = src.parse_lines("time,value\n1,2\n", &mut None, &mut Collector::default(), &mut OpCtx::new(0)).unwrap_err();
        assert!(err.to_string().contains("no column `timestamp`"), "{err}");
    }

    #[test]
    fn quoted_csv_fields() {
        assert_eq!(split_csv(r#"a,"b, c","d ""e""""#), vec!["a", "b, c", "d \"e\""]);
    }

    #[test]
    fn synthetic_is_deterministic_and_injects_incidents() {
        let cfg = SyntheticConfig {
            seed: 7,
            series: 2,
            interval_ms: 1000,
            baseline: 50.0,
            noise: 2.0,
            period_ms: 3_600_000,
            amplitude: 10.0,
            incident_every_ms: 120_000,
            incident_length_ms: 20_000,
            incident_size: 8.0,
            speedup: 60.0,
        };
        let mut a = SyntheticSource::new(cfg.clone());
        let mut b = SyntheticSource::new(cfg.clone());
        let (x, y) = (a.generate(10_000_000), b.generate(10_000_000));
        assert_eq!(x, y);
        // One hour of history at 1 s per sample.
        assert_eq!(x.series[0].len(), 3601);
        let later = a.generate(10_060_000);
        assert_eq!(later.series[0].len(), 3600, "a minute of wall time at speedup 60 is an hour of series time");
        let incidents = (0..3600).filter(|&i| a.value_at(0, later.series[0].ts[i], true).1).count();
        assert!(incidents > 0, "an hour holds injected incidents");
    }

    #[test]
    fn alertmanager_payloads_become_events() {
        let body = br#"{"version":"4","status":"firing","receiver":"vigil","groupKey":"{}:{}","alerts":[{"status":"firing","labels":{"alertname":"HighCPU","instance":"a"},"annotations":{"summary":"hot"},"startsAt":"2024-01-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"abc"}]}"#;
        let ev = parse_webhook("alertmanager", body, 5).unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].labels["alertname"], "HighCPU");
        assert_eq!(ev[0].ts, 1_704_067_200_000);
        assert!(parse_webhook("alertmanager", b"{}", 0).is_err());
        assert!(parse_webhook("json", b"not json", 0).is_err());
        assert_eq!(parse_webhook("json", br#"[{"service":"a"},{"service":"b"}]"#, 9).unwrap().len(), 2);
    }
}
