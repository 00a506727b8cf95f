//! The engine's metrics, served at `/metrics` in the Prometheus text format 0.0.4.
//!
//! A small registry: counters and gauges keyed by label values, behind one mutex per
//! family (updates happen once per stage per tick, not per sample).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use crate::data::escape_label;

/// One metric family: label values → value.
#[derive(Default)]
struct Family {
    values: Mutex<BTreeMap<Vec<String>, f64>>,
}

impl Family {
    fn add(&self, labels: &[&str], v: f64) {
        if let Ok(mut m) = self.values.lock() {
            *m.entry(labels.iter().map(|s| (*s).to_owned()).collect()).or_insert(0.0) += v;
        }
    }

    fn set(&self, labels: &[&str], v: f64) {
        if let Ok(mut m) = self.values.lock() {
            m.insert(labels.iter().map(|s| (*s).to_owned()).collect(), v);
        }
    }

    /// Sets a value unless that would make more than `cap` label sets; false when it did
    /// not.
    fn set_capped(&self, labels: &[&str], v: f64, cap: usize) -> bool {
        let Ok(mut m) = self.values.lock() else { return false };
        let key: Vec<String> = labels.iter().map(|s| (*s).to_owned()).collect();
        if let Some(x) = m.get_mut(&key) {
            *x = v;
            return true;
        }
        if m.len() >= cap {
            return false;
        }
        m.insert(key, v);
        true
    }

    fn retain(&self, keep: impl Fn(&[String]) -> bool) {
        if let Ok(mut m) = self.values.lock() {
            m.retain(|k, _| keep(k));
        }
    }
}

/// Every metric the engine exports.
#[derive(Default)]
pub struct Metrics {
    ticks: Family,
    tick_seconds_sum: Family,
    tick_seconds_count: Family,
    ticks_coalesced: Family,
    stage_seconds_sum: Family,
    stage_seconds_count: Family,
    stage_errors: Family,
    stage_items: Family,
    skipped: Family,
    lost: Family,
    counted: Family,
    anomaly_score: Family,
    reloads: Family,
    webhook_requests: Family,
    http_connections: Family,
    http_shed: Family,
    gauges_dropped: Family,
    reload_ok: Family,
    reload_ok_at: Family,
    notifications: Family,
    store_up: Family,
}

/// Score gauges exported at most (each stage also caps its series: `max_series`).
pub const MAX_SCORE_GAUGES: usize = 100_000;

/// The families: name, type, help, label names.
const FAMILIES: &[(&str, &str, &str, &[&str])] = &[
    ("vigil_ticks_total", "counter", "Ticks run, by outcome.", &["pipeline", "outcome"]),
    ("vigil_tick_duration_seconds", "summary", "Time to run a tick.", &["pipeline"]),
    ("vigil_ticks_coalesced_total", "counter", "Triggers that fired while a tick was already pending.", &["pipeline"]),
    ("vigil_stage_duration_seconds", "summary", "Time a stage took per tick, retries included.", &["pipeline", "stage"]),
    ("vigil_stage_errors_total", "counter", "Stage failures (after retries).", &["pipeline", "stage"]),
    ("vigil_stage_items_total", "counter", "Items (samples, events, scores) a stage produced.", &["pipeline", "stage"]),
    ("vigil_skipped_total", "counter", "Input records skipped as invalid, by reason.", &["pipeline", "stage", "reason"]),
    (
        "vigil_source_lost_rows_total",
        "counter",
        "Rows a source could not read (a rotated file gone before it was read: counted once), by reason.",
        &["pipeline", "stage", "reason"],
    ),
    (
        "vigil_stage_events_total",
        "counter",
        "Things a stage counted besides its items (log templates created, merged, evicted), by event.",
        &["pipeline", "stage", "event"],
    ),
    ("vigil_anomaly_score", "gauge", "The latest anomaly score per series.", &["pipeline", "stage", "series"]),
    ("vigil_reloads_total", "counter", "Reloads, by outcome.", &["outcome"]),
    ("vigil_webhook_requests_total", "counter", "Webhook requests, by answer.", &["path", "code"]),
    ("vigil_http_connections", "gauge", "Open HTTP connections.", &[]),
    ("vigil_http_connections_shed_total", "counter", "HTTP connections closed or refused by a limit, by reason.", &["reason"]),
    ("vigil_metrics_series_dropped_total", "counter", "Score updates not exported because the gauge family is full.", &[]),
    (
        "vigil_config_last_reload_successful",
        "gauge",
        "1 when the configuration on disk is the one running (the last reload applied, or the sources were restored), else 0.",
        &[],
    ),
    ("vigil_config_last_reload_success_timestamp_seconds", "gauge", "When the configuration last became good (Unix seconds).", &[]),
    (
        "vigil_notifications_total",
        "counter",
        "Notification attempts by stage, channel and result (sent, retried, failed, dry_run, unknown).",
        &["stage", "channel", "result"],
    ),
    ("vigil_store_up", "gauge", "1 when the state store answered the engine's last probe (every 2 s), else 0.", &[]),
];

/// What the metrics say of one stage since the engine started (the console's stage panel).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct StageStats {
    pub runs: u64,
    pub errors: u64,
    pub items: u64,
    /// Mean time per run, in seconds (0 before the first run).
    pub mean_seconds: f64,
}

/// What the metrics say of one pipeline's ticks since the engine started.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct TickStats {
    pub ok: u64,
    pub failed: u64,
    pub mean_seconds: f64,
}

impl Family {
    fn get(&self, labels: &[&str]) -> f64 {
        let key: Vec<String> = labels.iter().map(|s| (*s).to_owned()).collect();
        self.values.lock().ok().and_then(|m| m.get(&key).copied()).unwrap_or(0.0)
    }
}

fn mean(sum: f64, count: f64) -> f64 {
    if count > 0.0 {
        sum / count
    } else {
        0.0
    }
}

impl Metrics {
    /// A stage's runs, errors, items and mean latency.
    pub fn stage_stats(&self, pipeline: &str, stage: &str) -> StageStats {
        let l = [pipeline, stage];
        let count = self.stage_seconds_count.get(&l);
        StageStats {
            runs: count as u64,
            errors: self.stage_errors.get(&l) as u64,
            items: self.stage_items.get(&l) as u64,
            mean_seconds: mean(self.stage_seconds_sum.get(&l), count),
        }
    }

    /// A pipeline's ticks by outcome and their mean duration.
    pub fn tick_stats(&self, pipeline: &str) -> TickStats {
        TickStats {
            ok: self.ticks.get(&[pipeline, "ok"]) as u64,
            failed: self.ticks.get(&[pipeline, "failed"]) as u64,
            mean_seconds: mean(self.tick_seconds_sum.get(&[pipeline]), self.tick_seconds_count.get(&[pipeline])),
        }
    }

    pub fn tick(&self, pipeline: &str, ok: bool, seconds: f64) {
        self.ticks.add(&[pipeline, if ok { "ok" } else { "failed" }], 1.0);
        self.tick_seconds_sum.add(&[pipeline], seconds);
        self.tick_seconds_count.add(&[pipeline], 1.0);
    }

    pub fn coalesced(&self, pipeline: &str) {
        self.ticks_coalesced.add(&[pipeline], 1.0);
    }

    pub fn stage(&self, pipeline: &str, stage: &str, seconds: f64, items: usize, failed: bool) {
        self.stage_seconds_sum.add(&[pipeline, stage], seconds);
        self.stage_seconds_count.add(&[pipeline, stage], 1.0);
        self.stage_items.add(&[pipeline, stage], items as f64);
        if failed {
            self.stage_errors.add(&[pipeline, stage], 1.0);
        }
    }

    pub fn skipped(&self, pipeline: &str, stage: &str, reason: &str, n: u64) {
        self.skipped.add(&[pipeline, stage, reason], n as f64);
    }

    pub fn counted(&self, pipeline: &str, stage: &str, event: &str, n: u64) {
        self.counted.add(&[pipeline, stage, event], n as f64);
    }

    pub fn lost(&self, pipeline: &str, stage: &str, reason: &str, n: u64) {
        self.lost.add(&[pipeline, stage, reason], n as f64);
    }

    /// The latest score of a series; at most [`MAX_SCORE_GAUGES`] label sets in all
    /// (further ones are not exported: `vigil_metrics_series_dropped_total`).
    pub fn score(&self, pipeline: &str, stage: &str, series: &str, score: f64) {
        if !self.anomaly_score.set_capped(&[pipeline, stage, series], score, MAX_SCORE_GAUGES) {
            self.gauges_dropped.add(&[], 1.0);
        }
    }

    /// Drops the score gauges of series a stage forgot.
    pub fn forget_series(&self, drop: impl Fn(&str, &str) -> bool) {
        self.anomaly_score.retain(|k| !drop(&k[1], &k[2]));
    }

    /// A reload's outcome; `ok`: the configuration on disk is the one that runs.
    pub fn reload(&self, outcome: &str, ok: bool) {
        self.reloads.add(&[outcome], 1.0);
        self.reload_ok.set(&[], if ok { 1.0 } else { 0.0 });
        if ok {
            self.reload_ok_at.set(&[], crate::time::now_ms() as f64 / 1000.0);
        }
    }

    /// A notification's outcome (`sent`, `retried`, `failed`, `dry_run`, `unknown`).
    pub fn notification(&self, stage: &str, channel: &str, result: &str) {
        self.notifications.add(&[stage, channel, result], 1.0);
    }

    /// Whether the state store answered the last probe.
    pub fn store_up(&self, up: bool) {
        self.store_up.set(&[], if up { 1.0 } else { 0.0 });
    }

    pub fn webhook(&self, path: &str, code: u16) {
        self.webhook_requests.add(&[path, &code.to_string()], 1.0);
    }

    /// The listener's connection count and shed connections.
    pub fn http(&self, event: HttpEvent) {
        match event {
            HttpEvent::Open(n) => self.http_connections.set(&[], n as f64),
            HttpEvent::Shed(reason) => self.http_shed.add(&[reason], 1.0),
        }
    }

    /// Forgets the per-stage series of stages that no longer exist.
    pub fn forget_stages(&self, keep: impl Fn(&str, &str) -> bool) {
        for f in [
            &self.stage_seconds_sum,
            &self.stage_seconds_count,
            &self.stage_errors,
            &self.stage_items,
            &self.skipped,
            &self.lost,
            &self.counted,
            &self.anomaly_score,
        ] {
            f.retain(|k| keep(&k[0], &k[1]));
        }
    }

    /// Renders the text exposition format 0.0.4.
    pub fn render(&self, version: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP vigil_build_info The running version and the content hash of its sources.\n# TYPE vigil_build_info gauge"
        );
        let _ = writeln!(out, "vigil_build_info{{version=\"{}\",sources=\"{}\"}} 1", env!("CARGO_PKG_VERSION"), escape_label(version));
        let families: [(&Family, Option<&Family>); 19] = [
            (&self.ticks, None),
            (&self.tick_seconds_sum, Some(&self.tick_seconds_count)),
            (&self.ticks_coalesced, None),
            (&self.stage_seconds_sum, Some(&self.stage_seconds_count)),
            (&self.stage_errors, None),
            (&self.stage_items, None),
            (&self.skipped, None),
            (&self.lost, None),
            (&self.counted, None),
            (&self.anomaly_score, None),
            (&self.reloads, None),
            (&self.webhook_requests, None),
            (&self.http_connections, None),
            (&self.http_shed, None),
            (&self.gauges_dropped, None),
            (&self.reload_ok, None),
            (&self.reload_ok_at, None),
            (&self.notifications, None),
            (&self.store_up, None),
        ];
        debug_assert_eq!(FAMILIES.len(), families.len(), "every family is rendered");
        for ((name, kind, help, labels), (fam, count)) in FAMILIES.iter().zip(families) {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            let fmt_labels = |vals: &[String]| -> String {
                let parts: Vec<String> = labels.iter().zip(vals).map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
                if parts.is_empty() {
                    String::new()
                } else {
                    format!("{{{}}}", parts.join(","))
                }
            };
            let values = fam.values.lock().map(|m| m.clone()).unwrap_or_default();
            for (k, v) in &values {
                let suffix = if count.is_some() { "_sum" } else { "" };
                let _ = writeln!(out, "{name}{suffix}{} {}", fmt_labels(k), fmt_value(*v));
            }
            if let Some(c) = count {
                let counts = c.values.lock().map(|m| m.clone()).unwrap_or_default();
                for (k, v) in &counts {
                    let _ = writeln!(out, "{name}_count{} {}", fmt_labels(k), fmt_value(*v));
                }
            }
        }
        out
    }
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// What the HTTP listener ([`crate::server::listen`]) reports to the metrics.
#[derive(Debug, Clone, Copy)]
pub enum HttpEvent {
    /// Connections now open.
    Open(usize),
    /// A connection closed or refused by a limit.
    Shed(&'static str),
}
