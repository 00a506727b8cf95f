//! Incidents and notifications (DESIGN.md §5).
//!
//! - [`Incident`]: what an anomaly becomes — keyed by the respond stage's dedup key (or
//!   its `group_by` labels), with flap control, acknowledgement, manual resolution and
//!   operator feedback. Incidents live in the state store and survive a restart.
//! - [`Responder`]: the engine-wide side of responding — the incident cache behind
//!   `/api/v1/incidents`, silences, the channels of the running respond stages, and the
//!   durable outbox: every notification is written to the store *before* it is sent, with
//!   a key `(incident, stage, transition)` that makes enqueueing idempotent, so a tick
//!   replayed after a crash never sends twice.
//! - [`lifecycle`]: what a respond stage decides — open, group, resolve, repeat,
//!   escalate, silence, rate-limit — as a pure state machine over items and a clock
//!   passed in; its transitions are data the runtime records.
//! - [`dispatch`]: the task that sends what the outbox holds, retrying with exponential
//!   backoff where a retry can help (network errors, 5xx, 429, transient SMTP replies)
//!   and recording every decision in the audit trail.
//! - [`channels`]: email (lettre), webhook (HMAC-SHA256), Slack, PagerDuty Events v2,
//!   Alertmanager, exec, log.

pub mod channels;
pub mod dispatch;
pub mod lifecycle;
pub mod report;
pub mod store;
pub mod templates;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use sha2::{Digest, Sha256};

use crate::feedback;
use crate::time::Timestamp;
use store::RespondStore;

/// An incident.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Incident {
    /// Stable: derived from the stage, the key and when it opened.
    pub id: String,
    pub key: String,
    pub pipeline: String,
    pub stage: String,
    /// The series that opened it (and, when grouped, the others that joined).
    pub series: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// `firing` or `resolved`.
    pub status: String,
    pub acknowledged: bool,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<Timestamp>,
    pub opened_at: Timestamp,
    pub updated_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    /// `auto` (the anomaly cleared) or `manual` (through the API).
    pub resolved_by: Option<String>,
    pub score: f64,
    pub value: f64,
    /// Whether a silence matched when it opened (nothing was sent).
    pub silenced: bool,
    /// Operator feedback: `true_positive` or `false_positive`, with a note.
    pub feedback: Option<String>,
    pub feedback_note: Option<String>,
    /// Notifications enqueued for it.
    pub notifications: u32,
    pub last_notified_at: Option<Timestamp>,
    /// Lines that show what happened (log incidents: the last lines of the template counted
    /// when it opened); `incident.samples` in templates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<String>,
}

impl Incident {
    /// The stable id of the incident a stage opened for `key` at `opened_at`.
    pub fn id_for(stage: &str, key: &str, opened_at: Timestamp) -> String {
        let d = Sha256::digest(format!("{stage}\0{key}\0{opened_at}").as_bytes());
        d.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// The context templates see: `incident`, `pipeline`, `stage`, `series`, `labels`.
    pub fn template_context(&self, transition: &str) -> serde_json::Value {
        serde_json::json!({
            "pipeline": self.pipeline,
            "stage": self.stage,
            "series": self.series.first().cloned().unwrap_or_default(),
            "labels": self.labels,
            "transition": transition,
            "incident": {
                "id": self.id, "key": self.key, "status": self.status, "score": (self.score * 1000.0).round() / 1000.0,
                "value": self.value, "series": self.series.first().cloned().unwrap_or_default(), "all_series": self.series,
                "labels": self.labels, "opened_at": crate::time::format_rfc3339(self.opened_at),
                "timestamp": crate::time::format_rfc3339(self.updated_at), "acknowledged": self.acknowledged,
                "acknowledged_by": self.acknowledged_by, "transition": transition,
                "samples": self.samples,
            },
        })
    }
}

/// How a silence matcher compares a label: as Alertmanager's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MatchOp {
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    /// The value is a regular expression matching the whole label value.
    #[serde(rename = "=~")]
    Re,
    #[serde(rename = "!~")]
    NotRe,
}

/// One matcher of a silence: `service=checkout`, `env!=dev`, `route=~/api/.*`,
/// `team!~"ops|sre"`. A label the incident does not have matches as the empty string.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SilenceMatcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    #[serde(skip)]
    re: Option<regex::Regex>,
}

impl PartialEq for SilenceMatcher {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && self.op == o.op && self.value == o.value
    }
}

impl SilenceMatcher {
    /// A matcher; a regex is anchored (it must match the whole value).
    ///
    /// # Errors
    /// An empty label name or an invalid regular expression.
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<SilenceMatcher, String> {
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            return Err(format!("`{name}` is not a label name"));
        }
        let re = match op {
            MatchOp::Re | MatchOp::NotRe => {
                Some(regex::Regex::new(&format!("^(?:{value})$")).map_err(|e| format!("`{value}` is not a regular expression: {e}"))?)
            }
            _ => None,
        };
        Ok(SilenceMatcher { name: name.to_owned(), op, value: value.to_owned(), re })
    }

    /// Parses `NAME=VALUE`, `NAME!=VALUE`, `NAME=~REGEX` or `NAME!~REGEX` (a value may be
    /// in double quotes).
    ///
    /// # Errors
    /// No operator, an empty name, or an invalid regular expression.
    pub fn parse(s: &str) -> Result<SilenceMatcher, String> {
        let i = s.find(['=', '!']).ok_or_else(|| format!("`{s}` is not LABEL=VALUE (or !=, =~, !~)"))?;
        let (name, rest) = s.split_at(i);
        let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
            (MatchOp::Re, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (MatchOp::NotRe, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (MatchOp::Ne, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (MatchOp::Eq, v)
        } else {
            return Err(format!("`{s}` is not LABEL=VALUE (or !=, =~, !~)"));
        };
        let value = value.trim();
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
        SilenceMatcher::new(name, op, value)
    }

    pub fn matches(&self, got: Option<&str>) -> bool {
        let got = got.unwrap_or("");
        match (self.op, &self.re) {
            (MatchOp::Eq, _) => got == self.value,
            (MatchOp::Ne, _) => got != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(got),
            (MatchOp::NotRe, Some(re)) => !re.is_match(got),
            _ => false,
        }
    }
}

impl std::fmt::Display for SilenceMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        };
        write!(f, "{}{op}{}", self.name, self.value)
    }
}

/// Matchers as stored: a list of `{name, op, value}` (or strings such as `a=~b`), or the
/// first release's `{label: value}` map of equalities.
fn matchers_compat<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SilenceMatcher>, D::Error> {
    use serde::de::Error;
    use serde::Deserialize;
    parse_matchers(&serde_json::Value::deserialize(d)?).map_err(D::Error::custom)
}

/// Reads matchers from JSON: `{"label": "value"}` (equality), `["a=b", "c=~d"]` or
/// `[{"name": "a", "op": "=~", "value": "b"}]`.
///
/// # Errors
/// Another shape, or a matcher that does not parse.
pub fn parse_matchers(v: &serde_json::Value) -> Result<Vec<SilenceMatcher>, String> {
    match v {
        serde_json::Value::Object(m) => {
            m.iter().map(|(k, v)| SilenceMatcher::new(k, MatchOp::Eq, &v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect()
        }
        serde_json::Value::Array(items) => items
            .iter()
            .map(|it| match it {
                serde_json::Value::String(s) => SilenceMatcher::parse(s),
                serde_json::Value::Object(o) => {
                    let field = |k: &str| o.get(k).and_then(|v| v.as_str()).unwrap_or("");
                    let op: MatchOp = serde_json::from_value(o.get("op").cloned().unwrap_or_else(|| "=".into())).map_err(|_| {
                        format!("`op` must be one of =, !=, =~, !~, not {}", o.get("op").map(|v| v.to_string()).unwrap_or_default())
                    })?;
                    SilenceMatcher::new(field("name"), op, field("value"))
                }
                other => Err(format!("a matcher is a string such as \"service=~api-.*\" or an object, not {other}")),
            })
            .collect(),
        other => Err(format!("`matchers` is a list such as [\"service=checkout\"], not {other}")),
    }
}

/// A silence: while active, incidents whose labels match every matcher open without
/// notifications, and the later notifications of firing incidents it matches are held
/// back (all but a resolution owed to a channel that was told of the opening).
/// Maintenance windows are silences scheduled ahead (`starts_at`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Silence {
    pub id: i64,
    /// All must match; `series`, `pipeline`, `stage` and `key` match the incident's own.
    #[serde(deserialize_with = "matchers_compat")]
    pub matchers: Vec<SilenceMatcher>,
    pub comment: String,
    pub created_by: String,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub created_at: Timestamp,
}

impl Silence {
    pub fn active(&self, now: Timestamp) -> bool {
        self.starts_at <= now && now < self.ends_at
    }

    pub fn matches(&self, i: &Incident, series: &str) -> bool {
        self.matchers.iter().all(|m| {
            let got = match m.name.as_str() {
                "series" => Some(series),
                "pipeline" => Some(i.pipeline.as_str()),
                "stage" => Some(i.stage.as_str()),
                "key" => Some(i.key.as_str()),
                other => i.labels.get(other).map(String::as_str),
            };
            m.matches(got)
        })
    }
}

/// A notification in the outbox.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Notification {
    /// `(incident, stage, transition)`: unique, so enqueueing twice sends once.
    pub dedupe: String,
    pub incident_id: String,
    /// The respond stage whose channel sends it.
    pub stage: String,
    pub channel: String,
    /// `firing`, `resolved`, `acknowledged`, `repeat-N`, `resend-N`.
    pub transition: String,
    /// The rendered subject / text (templates are rendered when enqueued).
    pub subject: String,
    pub body: String,
    /// The incident as it was at this transition.
    pub incident: Incident,
}

/// One outbox row.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct OutboxRow {
    pub id: i64,
    pub notification: Notification,
    /// `pending`, `sent`, `failed`, `dry_run`.
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
}

/// An audit record: why someone was paged — or not.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AuditRecord {
    pub ts: Timestamp,
    pub incident_id: String,
    pub stage: String,
    /// `opened`, `grouped`, `updated`, `silenced`, `rate_limited`, `queued`, `sent`,
    /// `failed`, `retried`, `acknowledged`, `resolved`, `feedback`, `render_failed`,
    /// `dry_run`.
    pub event: String,
    pub detail: String,
}

/// One incident transition reported by a respond stage.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct IncidentUpdate {
    /// The incident's id.
    pub id: String,
    /// The respond stage that reported it.
    pub stage: String,
    pub key: String,
    /// `firing` or `resolved`.
    pub status: String,
    pub series: String,
    pub score: f64,
    pub value: f64,
    pub ts: Timestamp,
    /// The incident's labels (its first series').
    pub labels: BTreeMap<String, String>,
}

/// Appends one line to a file shared by stages that run concurrently: the line is
/// written with a single call, under a process-wide lock, so lines never interleave.
/// (A regression: `writeln!` on an unbuffered file wrote a record in several pieces, and
/// two respond stages of one tick interleaved them — found by tests/reload.rs under load.)
pub fn append_line(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    std::fs::OpenOptions::new().create(true).append(true).open(path)?.write_all(buf.as_bytes())
}

/// The engine-wide side of responding.
#[derive(Default)]
pub struct Responder {
    store: Option<Arc<dyn RespondStore>>,
    /// Print notifications instead of sending them (`vigil run --dry-run`).
    pub dry_run: bool,
    /// Where `log` writes `outbox.jsonl`.
    pub state_dir: Option<PathBuf>,
    /// The channels of the running respond stages, by stage key.
    pub channels: RwLock<HashMap<String, Arc<channels::Channel>>>,
    /// Incidents: the open ones and the most recent resolved ones.
    incidents: Mutex<BTreeMap<String, Incident>>,
    silences: RwLock<Vec<Silence>>,
    /// Wakes the dispatcher when something is enqueued.
    pub wake: tokio::sync::Notify,
    /// Under `vigil test`: the notifications, kept instead of sent.
    captured: Option<Mutex<Vec<Notification>>>,
    /// The situations of the running `correlate` stages, newest first, by stage key.
    pub situations: RwLock<BTreeMap<String, Vec<crate::correlate::Situation>>>,
    /// On-call's verdicts, which train and predict stages learn from.
    pub feedback: Arc<feedback::FeedbackBook>,
    /// The wall clock respond stages judge repeats, re-sends, escalations, silences and
    /// rate limits by: the system's, or one a test sets.
    pub clock: Clock,
    /// Counts what changed what reports read (incidents, verdicts, sends), so that a
    /// cached report knows when it is stale.
    changes: std::sync::atomic::AtomicU64,
}

/// A clock: the system's wall clock by default; tests inject one they move by hand.
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<dyn Fn() -> Timestamp + Send + Sync>>);

impl Clock {
    /// A clock that reads `now`.
    pub fn manual(now: impl Fn() -> Timestamp + Send + Sync + 'static) -> Clock {
        Clock(Some(Arc::new(now)))
    }

    /// The time now, in milliseconds since the epoch.
    pub fn now(&self) -> Timestamp {
        match &self.0 {
            Some(f) => f(),
            None => crate::time::now_ms(),
        }
    }
}

/// Whom the flood guard counts: the API token when the caller used one (the name in the
/// body is the caller's to choose), else the name.
fn flood_key(by: &str) -> &str {
    by.rfind("(token ").map_or(by, |i| &by[i..])
}

/// Resolved incidents kept in memory for the API (the store keeps them all).
const RECENT_RESOLVED: usize = 1000;

impl Responder {
    /// A responder over a store: loads the open incidents and the silences.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn open(
        store: Arc<dyn RespondStore>,
        state_dir: Option<PathBuf>,
        dry_run: bool,
    ) -> Result<Responder, crate::persist::StoreError> {
        let incidents = store.incidents(None, 10_000).await?;
        let silences = store.silences().await?;
        let verdicts = store.feedback().await?;
        let r = Responder {
            store: Some(store),
            dry_run,
            state_dir,
            silences: RwLock::new(silences),
            feedback: Arc::new(feedback::FeedbackBook::with(verdicts)),
            ..Responder::default()
        };
        {
            let mut map = r.incidents.lock().unwrap_or_else(|e| e.into_inner());
            for i in incidents {
                map.insert(i.id.clone(), i);
            }
        }
        Ok(r)
    }

    /// A responder without a store that knows these verdicts (replays that show what
    /// feedback changes).
    pub fn with_verdicts(records: Vec<feedback::FeedbackRecord>) -> Responder {
        Responder { feedback: Arc::new(feedback::FeedbackBook::with(records)), ..Responder::default() }
    }

    /// A responder that keeps every notification instead of sending it (`vigil test`).
    /// The same responder, judging time by `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Responder {
        self.clock = clock;
        self
    }

    pub fn capturing() -> Responder {
        Responder { captured: Some(Mutex::new(Vec::new())), ..Responder::default() }
    }

    /// Whether notifications are captured rather than sent.
    pub fn is_capturing(&self) -> bool {
        self.captured.is_some()
    }

    /// The captured notifications, in order.
    pub fn captured(&self) -> Vec<Notification> {
        self.captured.as_ref().map(|c| c.lock().unwrap_or_else(|e| e.into_inner()).clone()).unwrap_or_default()
    }

    pub fn store(&self) -> Option<&Arc<dyn RespondStore>> {
        self.store.as_ref()
    }

    /// The incidents, newest first.
    pub fn list(&self) -> Vec<Incident> {
        let map = self.incidents.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<Incident> = map.values().cloned().collect();
        v.sort_by(|a, b| b.opened_at.cmp(&a.opened_at).then_with(|| a.id.cmp(&b.id)));
        v
    }

    pub fn get(&self, id: &str) -> Option<Incident> {
        self.incidents.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    /// The firing incidents of a stage (a restarted respond stage takes them over).
    pub fn firing_of(&self, stage: &str) -> Vec<Incident> {
        self.incidents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|i| i.stage == stage && i.status == "firing")
            .cloned()
            .collect()
    }

    /// Reads pipeline `pipeline`'s incidents from the store again, replacing what the
    /// cache holds of them: in a cluster, another node may have opened, changed or resolved
    /// them while it owned the pipeline, and a respond stage built now must take over
    /// their current state (or it would open an incident twice).
    ///
    /// # Errors
    /// The store cannot be read: the cache is left as it was.
    pub async fn refresh_pipeline(&self, pipeline: &str) -> Result<(), crate::persist::StoreError> {
        let Some(store) = &self.store else { return Ok(()) };
        let fresh = store.incidents(None, 10_000).await?;
        let mut map = self.incidents.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, i| i.pipeline != pipeline);
        for i in fresh.into_iter().filter(|i| i.pipeline == pipeline) {
            map.insert(i.id.clone(), i);
        }
        Ok(())
    }

    /// The active silence matching an incident opened by `series`, if any.
    pub fn silenced_by(&self, i: &Incident, series: &str, now: Timestamp) -> Option<i64> {
        self.silences.read().unwrap_or_else(|e| e.into_inner()).iter().find(|s| s.active(now) && s.matches(i, series)).map(|s| s.id)
    }

    pub fn silences(&self) -> Vec<Silence> {
        self.silences.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records incidents, notifications and audit records in the store (one
    /// transaction), then updates the cache and wakes the dispatcher. Without a store
    /// only the cache changes.
    ///
    /// # Errors
    /// When the store cannot record them: nothing changed then, neither in the store nor
    /// in the cache, and the caller keeps the transitions to commit again (a respond
    /// stage fails its tick and retries with the next).
    pub async fn commit(&self, incidents: &[Incident], notifications: &[Notification], audit: &[AuditRecord]) -> Result<(), String> {
        if incidents.is_empty() && notifications.is_empty() && audit.is_empty() {
            return Ok(());
        }
        if let Some(store) = &self.store {
            store.record_respond(incidents, notifications, audit).await.map_err(|e| e.to_string())?;
        }
        {
            let mut map = self.incidents.lock().unwrap_or_else(|e| e.into_inner());
            for i in incidents {
                map.insert(i.id.clone(), i.clone());
            }
            let resolved: Vec<(Timestamp, String)> =
                map.values().filter(|i| i.status == "resolved").map(|i| (i.resolved_at.unwrap_or(i.updated_at), i.id.clone())).collect();
            if resolved.len() > RECENT_RESOLVED {
                let mut resolved = resolved;
                resolved.sort();
                for (_, id) in &resolved[..resolved.len() - RECENT_RESOLVED] {
                    map.remove(id);
                }
            }
        }
        if let Some(c) = &self.captured {
            c.lock().unwrap_or_else(|e| e.into_inner()).extend(notifications.iter().cloned());
        }
        if !notifications.is_empty() {
            self.wake.notify_one();
        }
        self.changed();
        Ok(())
    }

    /// Notes a change that reports read (see [`Responder::changes`]).
    pub fn changed(&self) {
        self.changes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many changes reports read there have been: equal counts, same report.
    pub fn changes(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Acknowledges an incident (API, CLI): channels that know acknowledgements
    /// (PagerDuty) are told; repeats stop.
    pub async fn acknowledge(&self, id: &str, by: &str) -> Result<Incident, String> {
        let mut i = self.get(id).ok_or_else(|| format!("no incident `{id}`"))?;
        if i.status != "firing" {
            return Err(format!("incident `{id}` is {}", i.status));
        }
        if i.acknowledged {
            // Once: a second acknowledgement changes nothing, notifies and audits nothing.
            return Ok(i);
        }
        let now = self.clock.now();
        i.acknowledged = true;
        i.acknowledged_by = Some(by.to_owned());
        i.acknowledged_at = Some(now);
        i.updated_at = now;
        let silenced = i.series.first().and_then(|s| self.silenced_by(&i, s, self.clock.now()));
        let notes =
            if silenced.is_some() { Vec::new() } else { self.notifications_for(&i, "acknowledged", |c| c.kind.knows_acknowledgements()) };
        let audit = [AuditRecord {
            ts: now,
            incident_id: i.id.clone(),
            stage: i.stage.clone(),
            event: "acknowledged".into(),
            detail: format!("by {by}"),
        }];
        self.commit(std::slice::from_ref(&i), &notes, &audit).await?;
        Ok(i)
    }

    /// Resolves an incident by hand: every channel is told.
    pub async fn resolve(&self, id: &str, by: &str) -> Result<Incident, String> {
        let mut i = self.get(id).ok_or_else(|| format!("no incident `{id}`"))?;
        if i.status != "firing" {
            return Err(format!("incident `{id}` is {} already", i.status));
        }
        let now = self.clock.now();
        i.status = "resolved".into();
        i.resolved_at = Some(now);
        i.resolved_by = Some("manual".into());
        i.updated_at = now;
        let notes = if i.silenced { Vec::new() } else { self.notifications_for(&i, "resolved", |_| true) };
        let audit = [AuditRecord {
            ts: now,
            incident_id: i.id.clone(),
            stage: i.stage.clone(),
            event: "resolved".into(),
            detail: format!("by {by}"),
        }];
        self.commit(std::slice::from_ref(&i), &notes, &audit).await?;
        Ok(i)
    }

    /// Stores on-call's verdict on an incident (`true_positive`, `false_positive`,
    /// `duplicate`) with the series and time window it covers — from the incident's
    /// opening to its resolution, or to now while it fires — for the stages that learn
    /// from verdicts. A later verdict replaces an earlier one; both are audited. `by` (who
    /// gave it) goes to the audit trail and is the unit of the flood guard.
    ///
    /// # Errors
    /// An unknown verdict or incident, `missed` (which is about a window, not an
    /// incident: [`Responder::missed`]), a caller over the rate limit, or a store failure.
    pub async fn feedback(&self, id: &str, verdict: &str, note: Option<String>, by: &str) -> Result<Incident, String> {
        let v = feedback::Verdict::parse(verdict)?;
        if v == feedback::Verdict::Missed {
            return Err("`missed` marks a window no incident covered: give it with the series and the window (POST /api/v1/feedback, `vigil feedback missed`)".into());
        }
        let mut i = self.get(id).ok_or_else(|| format!("no incident `{id}`"))?;
        let now = self.clock.now();
        if !self.feedback.admit(flood_key(by), now) {
            return Err(format!("too many verdicts from {by}: at most {} a minute", feedback::PER_MINUTE));
        }
        let previous = i.feedback.replace(verdict.to_owned());
        i.feedback_note = note.clone();
        let record = feedback::FeedbackRecord {
            id: 0,
            incident: i.id.clone(),
            pipeline: i.pipeline.clone(),
            stage: i.stage.clone(),
            series: i.series.clone(),
            from: i.opened_at,
            to: i.resolved_at.unwrap_or(now.max(i.updated_at)),
            verdict: v,
            note,
            by: by.to_owned(),
            at: now,
        };
        let detail = match previous {
            Some(p) if p != verdict => format!("{verdict} by {by} (replaces {p})"),
            _ => format!("{verdict} by {by}"),
        };
        let audit = AuditRecord { ts: now, incident_id: i.id.clone(), stage: i.stage.clone(), event: "feedback".into(), detail };
        self.store_feedback(record, Some(&i), &audit).await?;
        self.incidents.lock().unwrap_or_else(|e| e.into_inner()).insert(i.id.clone(), i.clone());
        Ok(i)
    }

    /// Records a window of `series` in `pipeline` that held an anomaly no incident
    /// reported (`missed`): train stages leave it out of what they learn as normal, and
    /// reports count it against recall.
    ///
    /// # Errors
    /// An empty series or window, a caller over the rate limit, or a store failure.
    pub async fn missed(
        &self,
        pipeline: &str,
        series: &str,
        from: Timestamp,
        to: Timestamp,
        note: Option<String>,
        by: &str,
    ) -> Result<feedback::FeedbackRecord, String> {
        if pipeline.trim().is_empty() || series.trim().is_empty() {
            return Err("a missed window needs the pipeline and the series (as `vigil models list` or the incident shows it)".into());
        }
        if to <= from {
            return Err("a missed window must end after it starts".into());
        }
        let now = self.clock.now();
        if !self.feedback.admit(flood_key(by), now) {
            return Err(format!("too many verdicts from {by}: at most {} a minute", feedback::PER_MINUTE));
        }
        let record = feedback::FeedbackRecord {
            id: 0,
            incident: String::new(),
            pipeline: pipeline.to_owned(),
            stage: String::new(),
            series: vec![series.to_owned()],
            from,
            to,
            verdict: feedback::Verdict::Missed,
            note,
            by: by.to_owned(),
            at: now,
        };
        let audit = AuditRecord {
            ts: now,
            incident_id: String::new(),
            stage: pipeline.to_owned(),
            event: "feedback".into(),
            detail: format!("missed {series} from {} to {} by {by}", crate::time::format_rfc3339(from), crate::time::format_rfc3339(to)),
        };
        self.store_feedback(record, None, &audit).await
    }

    async fn store_feedback(
        &self,
        mut record: feedback::FeedbackRecord,
        incident: Option<&Incident>,
        audit: &AuditRecord,
    ) -> Result<feedback::FeedbackRecord, String> {
        if let Some(store) = &self.store {
            record.id = store.record_feedback(&record, incident, audit).await.map_err(|e| e.to_string())?;
        }
        self.feedback.add(record.clone());
        self.changed();
        Ok(record)
    }

    /// Adds a silence.
    pub async fn add_silence(&self, mut s: Silence) -> Result<Silence, String> {
        if s.matchers.is_empty() {
            return Err("a silence needs at least one matcher (label=value)".into());
        }
        if s.ends_at <= s.starts_at {
            return Err("a silence must end after it starts".into());
        }
        s.created_at = self.clock.now();
        if let Some(store) = &self.store {
            s.id = store.insert_silence(&s).await.map_err(|e| e.to_string())?;
        } else {
            s.id = self.silences().iter().map(|s| s.id).max().unwrap_or(0) + 1;
        }
        self.silences.write().unwrap_or_else(|e| e.into_inner()).push(s.clone());
        Ok(s)
    }

    /// Ends a silence now.
    pub async fn expire_silence(&self, id: i64) -> Result<Silence, String> {
        let now = self.clock.now();
        let mut s = self.silences().into_iter().find(|s| s.id == id).ok_or_else(|| format!("no silence {id}"))?;
        s.ends_at = s.ends_at.min(now);
        if let Some(store) = &self.store {
            store.insert_silence(&s).await.map_err(|e| e.to_string())?;
        }
        for x in self.silences.write().unwrap_or_else(|e| e.into_inner()).iter_mut() {
            if x.id == id {
                x.ends_at = s.ends_at;
            }
        }
        Ok(s)
    }

    /// The notification of a transition for the channel of the incident's stage.
    fn notifications_for(&self, i: &Incident, transition: &str, want: impl Fn(&channels::Channel) -> bool) -> Vec<Notification> {
        let channels = self.channels.read().unwrap_or_else(|e| e.into_inner());
        let Some(c) = channels.get(&i.stage).filter(|c| want(c)) else { return Vec::new() };
        let (subject, body, _) = c.render(i, transition);
        vec![Notification {
            dedupe: format!("{}/{}/{transition}", i.id, i.stage),
            incident_id: i.id.clone(),
            stage: i.stage.clone(),
            channel: c.kind.name().into(),
            transition: transition.into(),
            subject,
            body,
            incident: i.clone(),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_matchers_parse_match_and_read_the_old_form() {
        let m = |s: &str| SilenceMatcher::parse(s).unwrap();
        assert!(m("route=~/api/.*").matches(Some("/api/v1")));
        assert!(!m("route=~/api/.*").matches(Some("x/api/v1")), "anchored");
        assert!(m("env!=dev").matches(None), "a missing label is empty");
        assert!(m("team!~\"ops|sre\"").matches(Some("db")));
        assert!(!m("team!~ops|sre").matches(Some("sre")));
        assert!(m("a=b=c").matches(Some("b=c")));
        assert!(SilenceMatcher::parse("=x").is_err());
        assert!(SilenceMatcher::parse("novalue").is_err());
        assert!(SilenceMatcher::parse("r=~(").unwrap_err().contains("not a regular expression"));
        // A silence stored by the first release: `{label: value}` equalities.
        let old = r#"{"id":1,"matchers":{"service":"checkout"},"comment":"","created_by":"api","starts_at":0,"ends_at":10,"created_at":0}"#;
        let s: Silence = serde_json::from_str(old).unwrap();
        assert_eq!(s.matchers, vec![SilenceMatcher::new("service", MatchOp::Eq, "checkout").unwrap()]);
        let again: Silence = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(again, s);
    }

    /// Commits are awaited by the engine (no thread blocks on the store), so a responder
    /// over a store works on a current-thread runtime too — which the first releases,
    /// committing from synchronous code, had to refuse.
    #[test]
    fn commits_work_on_a_current_thread_runtime() {
        let dir = std::env::temp_dir().join(format!("vigil-commit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let audits = rt.block_on(async {
            let store: Arc<dyn RespondStore> = Arc::new(crate::store::SqliteStore::open(&dir).await.unwrap());
            let responder = Arc::new(Responder::open(store.clone(), None, false).await.unwrap());
            let r = responder.clone();
            tokio::spawn(async move {
                for n in 0..12 {
                    let record = AuditRecord {
                        ts: n,
                        incident_id: "i1".into(),
                        stage: "p.s".into(),
                        event: "opened".into(),
                        detail: format!("#{n}"),
                    };
                    r.commit(&[], &[], &[record]).await.unwrap();
                }
            })
            .await
            .unwrap();
            store.audit_of("i1").await.unwrap().len()
        });
        assert_eq!(audits, 12);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
