//! The respond lifecycle as a pure state machine: what a respond stage decides, item by
//! item and tick by tick — open (after `pending_for`), group, update a situation, resolve
//! (after `keep_firing_for`, or when its series fall silent for `resolve_timeout`),
//! repeat while unacknowledged, re-send while firing, escalate, silence, hold a first
//! start's backlog, rate-limit — with no I/O, no async and no store.
//!
//! A [`Lifecycle`] holds one stage's open incidents. [`Lifecycle::step`] takes one
//! [`Item`] (a scored sample, or an upstream stage's incident transition) and
//! [`Lifecycle::tick`] what time alone decides; both return [`Transition`]s, plain data:
//! an incident to record, an update for downstream stages, a notification to enqueue
//! (with its dedupe key), an escalation, an audit record. The clock is a parameter
//! (`now`, the wall clock the caller read once for the tick), and what people change
//! between ticks (acknowledgements, manual resolutions, silences) is read through the
//! [`World`] the caller passes. The runtime's respond operator
//! (`runtime::ops::respond`) is the adapter: it feeds items, renders and collects the
//! transitions, and records them in the store with `.await`; when the store refuses, it
//! keeps them and records them with the next tick, so a failed commit never decides
//! anything twice.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use super::{AuditRecord, Incident, IncidentUpdate};
use crate::expr::Template;
use crate::time::Timestamp;

/// The least time between two `updated-N` notifications of one incident (a situation
/// whose members change), so that a cascade still growing does not page on every join.
pub const UPDATE_EVERY_MS: i64 = 5 * 60_000;

/// What separates the lines of a `samples` annotation (log templates, a situation's
/// members).
pub const SAMPLE_SEPARATOR: &str = "\u{1e}";

/// Flap control and notification policy of a respond stage.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub pending_ms: i64,
    pub keep_firing_ms: i64,
    /// Repeat the notification of an unacknowledged incident this often.
    pub repeat_ms: Option<i64>,
    /// At most `count` notifications per `per_ms` from this stage.
    pub rate_limit: Option<(u64, i64)>,
    /// Re-send while firing (Alertmanager needs it to keep an alert alive).
    pub resend_ms: Option<i64>,
    /// Tell another respond stage (by name) when an incident is still unacknowledged
    /// this long after it opened.
    pub escalate: Option<(i64, String)>,
    /// Maintenance windows: a cron schedule (UTC) and a length; incidents opened inside
    /// one are silenced.
    pub maintenance: Vec<(croner::Cron, i64, String)>,
    /// A series silent this long stops keeping an incident firing.
    pub resolve_timeout_ms: Option<i64>,
}

impl Policy {
    /// The maintenance window `now` (ms since the epoch) falls in, if any: a window
    /// `[t, t + length)` holds `now` exactly when the schedule's first time after
    /// `now - length` is not later than `now`.
    pub fn in_maintenance(&self, now: i64) -> Option<&str> {
        let at = |ms: i64| chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms);
        self.maintenance.iter().find_map(|(cron, len, text)| {
            let next = cron.find_next_occurrence(&at(now.saturating_sub(*len))?, false).ok()?;
            (next.timestamp_millis() <= now).then_some(text.as_str())
        })
    }
}

/// What people change between ticks, as the machine reads it: acknowledgements,
/// feedback and manual resolutions of incidents, and silences. Read-only; the
/// [`super::Responder`] is one, and `()` knows nothing (no silence, no change).
pub trait World {
    /// The incident as last recorded (acknowledged, resolved by hand, given feedback).
    fn current(&self, id: &str) -> Option<Incident>;
    /// The active silence matching an incident opened by `series`, at `now`.
    fn silenced_by(&self, i: &Incident, series: &str, now: Timestamp) -> Option<i64>;
}

impl World for () {
    fn current(&self, _: &str) -> Option<Incident> {
        None
    }
    fn silenced_by(&self, _: &Incident, _: &str, _: Timestamp) -> Option<i64> {
        None
    }
}

impl World for super::Responder {
    fn current(&self, id: &str) -> Option<Incident> {
        self.get(id)
    }
    fn silenced_by(&self, i: &Incident, series: &str, now: Timestamp) -> Option<i64> {
        super::Responder::silenced_by(self, i, series, now)
    }
}

/// What a respond stage is, as its lifecycle needs it.
pub struct Config {
    pub pipeline: String,
    /// The stage's key (`pipeline.stage`).
    pub stage: String,
    /// The incident key's template (when `group_by` is empty).
    pub dedup: Template,
    /// Labels whose values make one incident of several series.
    pub group_by: Vec<String>,
    pub policy: Policy,
    /// The channel's name (`log`, `email`, ...): audit records say it, and an `exec`
    /// channel is not told that a situation's members changed.
    pub channel: String,
    /// Judge silences, maintenance windows and rate limits by the data's own time, and
    /// leave out what follows the wall clock (repeats, re-sends, escalation,
    /// `resolve_timeout`): `vigil test`, whose result must not depend on when it runs.
    pub data_time: bool,
}

/// One item a respond stage reads.
#[derive(Clone, Debug)]
pub struct Item<'a> {
    /// The incident key ([`Lifecycle::key`]).
    pub key: &'a str,
    pub series: &'a str,
    pub labels: &'a [(String, String)],
    /// The data's time.
    pub ts: Timestamp,
    /// Whether the stage's condition holds.
    pub matches: bool,
    /// Whether the item says anything about the anomaly: a sample its detector could not
    /// score yet (a window still filling) reports the series but never clears it.
    pub scored: bool,
    /// Whether the item ends what its series showed (an upstream incident resolved): no
    /// later item will come to end `keep_firing_for`, so it does not wait for one.
    pub ends: bool,
    pub score: f64,
    pub value: f64,
    /// The `samples` annotation (lines joined by [`SAMPLE_SEPARATOR`]).
    pub samples: Option<&'a str>,
    /// The `members` annotation of a situation (`correlate`): its member count.
    pub members: Option<&'a str>,
}

/// What the lifecycle decided: data, recorded by the caller.
#[derive(Clone, Debug, PartialEq)]
pub enum Transition {
    /// Record the incident as it now is.
    Record(Incident),
    /// Tell the stages downstream (the stage's output).
    Update(IncidentUpdate),
    /// Queue a notification of `transition` on the stage's own channel; `dedupe` makes
    /// enqueueing it twice send it once.
    Notify { transition: String, dedupe: String, incident: Incident },
    /// Queue the incident's escalation on the channel of the respond stage `target`.
    Escalate { target: String, dedupe: String, incident: Incident },
    /// Append to the audit trail.
    Audit(AuditRecord),
}

/// An incident key the stage is watching: pending (not firing yet) or firing.
#[derive(Debug)]
struct Open {
    /// The incident, once it fires.
    incident: Option<Incident>,
    since: Timestamp,
    last_match: Timestamp,
    series: String,
    labels: BTreeMap<String, String>,
    score: f64,
    value: f64,
    repeats: u32,
    resends: u32,
    /// Wall-clock time of the last notification (repeats and re-sends count from it).
    last_sent: i64,
    /// Wall-clock time it opened (escalation counts from it), and whether it escalated.
    opened_wall: i64,
    escalated: bool,
    /// Updates sent (a situation's members changed), and when the last one was.
    updates: u32,
    last_update: i64,
    /// The series whose latest sample matched: a grouped incident resolves only when
    /// none does (series scraped at different offsets do not make it flap).
    matching: BTreeSet<String>,
    /// Wall-clock time each series last sent an item (matching or not), for
    /// `resolve_timeout`.
    heard: HashMap<String, i64>,
}

/// One respond stage's lifecycle: its open incidents, its rate limit, what a backlog
/// holds back.
pub struct Lifecycle {
    pub config: Config,
    open: HashMap<String, Open>,
    /// Wall-clock times of recent notifications, for the rate limit.
    sent: VecDeque<i64>,
    /// Whether this tick reads a first start's backlog: notifications are held.
    holding: bool,
    /// Incidents whose notifications a backlog held, by id.
    held: HashSet<String>,
}

fn audit(out: &mut Vec<Transition>, now: Timestamp, i: &Incident, event: &str, detail: String) {
    out.push(Transition::Audit(AuditRecord { ts: now, incident_id: i.id.clone(), stage: i.stage.clone(), event: event.into(), detail }));
}

/// Copies what people change through the API (acknowledgement, feedback) from the
/// recorded incident, so that a stage's own copy never overwrites it.
fn refresh(world: &dyn World, inc: &mut Incident) {
    if let Some(cur) = world.current(&inc.id) {
        inc.acknowledged = cur.acknowledged;
        inc.acknowledged_by = cur.acknowledged_by;
        inc.acknowledged_at = cur.acknowledged_at;
        inc.feedback = cur.feedback;
        inc.feedback_note = cur.feedback_note;
    }
}

fn lines(samples: &str) -> Vec<String> {
    samples.split(SAMPLE_SEPARATOR).map(str::to_owned).collect()
}

/// Orders a tick's items across series (a group's series interleave): by time, and at
/// one time a group's matching items first, so that one series' quiet sample does not
/// resolve what another still shows. Stable: one series' items keep their order.
pub fn order(items: &mut [Item<'_>]) {
    items.sort_by_key(|i| (i.ts, !i.matches));
}

impl Lifecycle {
    pub fn new(config: Config) -> Lifecycle {
        Lifecycle { config, open: HashMap::new(), sent: VecDeque::new(), holding: false, held: HashSet::new() }
    }

    /// Takes over the stage's firing incidents as recorded (after a restart or a
    /// reload): their openings were notified already and are not again.
    pub fn restore(&mut self, firing: impl IntoIterator<Item = Incident>, now: Timestamp) {
        for i in firing {
            self.open.insert(
                i.key.clone(),
                Open {
                    since: i.opened_at,
                    last_match: i.updated_at,
                    series: i.series.first().cloned().unwrap_or_default(),
                    labels: i.labels.clone(),
                    score: i.score,
                    value: i.value,
                    repeats: 0,
                    resends: 0,
                    last_sent: i.last_notified_at.unwrap_or(0),
                    opened_wall: i.opened_at.min(now),
                    escalated: false,
                    updates: 0,
                    // Restored: updates wait their interval from now.
                    last_update: now,
                    matching: i.series.iter().cloned().collect(),
                    // Restored: each series gets `resolve_timeout` from now to report.
                    heard: i.series.iter().map(|s| (s.clone(), now)).collect(),
                    incident: Some(i),
                },
            );
        }
    }

    /// The firing incidents, as the machine holds them.
    pub fn firing(&self) -> impl Iterator<Item = &Incident> {
        self.open.values().filter_map(|o| o.incident.as_ref())
    }

    /// How many keys are pending (matching, not firing yet).
    pub fn pending(&self) -> usize {
        self.open.values().filter(|o| o.incident.is_none()).count()
    }

    /// The incident key of a series: the `dedup` template, or the `group_by` labels.
    pub fn key(&self, series: &str, labels: &[(String, String)]) -> String {
        let c = &self.config;
        if c.group_by.is_empty() {
            let map: serde_json::Map<String, serde_json::Value> = labels.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
            return c.dedup.render(&serde_json::json!({ "pipeline": c.pipeline, "stage": c.stage, "series": series, "labels": map }));
        }
        let parts: Vec<String> =
            c.group_by.iter().map(|g| format!("{g}={}", labels.iter().find(|(k, _)| k == g).map_or("", |(_, v)| v.as_str()))).collect();
        format!("{}/{}", c.stage, parts.join(","))
    }

    /// The time silences, maintenance windows and rate limits are judged by: the wall
    /// clock, or the data's own under [`Config::data_time`].
    fn clock(&self, data_ts: Timestamp, now: Timestamp) -> i64 {
        if self.config.data_time {
            data_ts
        } else {
            now
        }
    }

    /// Whether the rate limit lets one more notification through at `at`.
    fn allow(&mut self, at: i64) -> bool {
        let Some((count, per)) = self.config.policy.rate_limit else { return true };
        while self.sent.front().is_some_and(|&t| t <= at - per) {
            self.sent.pop_front();
        }
        if self.sent.len() as u64 >= count {
            return false;
        }
        self.sent.push_back(at);
        true
    }

    /// The start of a tick: `holding` says whether it reads a first start's backlog
    /// (notifications are held until its end). Incidents resolved by hand since the last
    /// tick are forgotten, and the stages downstream are told (an update `resolved`, at
    /// the time it was resolved), so that an incident routed from one resolves with it —
    /// after a restart too, since the firing incidents are restored.
    pub fn begin(&mut self, holding: bool, world: &dyn World) -> Vec<Transition> {
        self.holding = holding;
        let mut out = Vec::new();
        let stage = &self.config.stage;
        self.open.retain(|key, o| {
            let Some(now) = o.incident.as_ref().and_then(|i| world.current(&i.id)).filter(|now| now.status != "firing") else {
                return true;
            };
            out.push(Transition::Update(IncidentUpdate {
                id: now.id.clone(),
                stage: stage.clone(),
                key: key.clone(),
                status: now.status.clone(),
                series: o.series.clone(),
                score: o.score,
                value: o.value,
                ts: now.resolved_at.unwrap_or(now.updated_at),
                labels: now.labels.clone(),
            }));
            false
        });
        out
    }

    /// The end of a tick; `release`: the end of a first start's backlog — the incidents
    /// it opened that are still open are notified now; those it opened and resolved stay
    /// recorded, unsent.
    pub fn end(&mut self, release: bool, now: Timestamp, world: &dyn World) -> Vec<Transition> {
        let mut out = Vec::new();
        if release {
            self.release_held(now, world, &mut out);
        }
        self.holding = false;
        out
    }

    /// Queues the notification of a transition, unless held, silenced or rate-limited.
    fn notify(&mut self, inc: &mut Incident, transition: &str, now: Timestamp, world: &dyn World, out: &mut Vec<Transition>) {
        let at = self.clock(inc.updated_at, now);
        if self.holding {
            audit(out, now, inc, "held", format!("{transition}: not sent yet (read from the backlog a first start found)"));
            self.held.insert(inc.id.clone());
            return;
        }
        if inc.silenced {
            audit(out, now, inc, "silenced", format!("{transition}: not sent (silenced when it opened)"));
            return;
        }
        // A resolution whose opening was sent always goes out: a channel must not be
        // left with an incident open for ever.
        let owed = transition == "resolved" && inc.notifications > 0;
        // A silence added while it fires holds its later notifications back.
        if !owed {
            let series = inc.series.first().cloned().unwrap_or_default();
            if let Some(sid) = world.silenced_by(inc, &series, at) {
                audit(out, now, inc, "silenced", format!("{transition}: not sent (silence {sid})"));
                return;
            }
        }
        if !owed && !self.allow(at) {
            let (count, per) = self.config.policy.rate_limit.unwrap_or((0, 0));
            audit(out, now, inc, "rate_limited", format!("{transition}: not sent (more than {count} per {per} ms)"));
            return;
        }
        inc.notifications += 1;
        inc.last_notified_at = Some(at);
        // Repeats and re-sends are numbered from 1 again after a restart: their key carries
        // the time too, so that a new one is never taken for an old one.
        let stage = &self.config.stage;
        let dedupe = if transition.starts_with("repeat-") || transition.starts_with("resend-") || transition.starts_with("updated-") {
            format!("{}/{stage}/{transition}@{at}", inc.id)
        } else {
            format!("{}/{stage}/{transition}", inc.id)
        };
        out.push(Transition::Notify { transition: transition.into(), dedupe, incident: inc.clone() });
        audit(out, now, inc, "queued", format!("{} {transition}", self.config.channel));
    }

    /// One item: it may open an incident (after `pending_for`), join one (grouping),
    /// update a situation's members, or clear one (after `keep_firing_for`). `now` is
    /// the wall clock of the tick.
    pub fn step(&mut self, item: &Item<'_>, now: Timestamp, world: &dyn World) -> Vec<Transition> {
        let mut out = Vec::new();
        let (key, series, ts) = (item.key, item.series, item.ts);
        if !item.matches {
            let keep = self.config.policy.keep_firing_ms;
            let Some(o) = self.open.get_mut(key) else { return out };
            o.heard.insert(series.to_owned(), now);
            if !item.scored {
                // No score yet (a detector rebuilt by a reload, or restarted, whose
                // window is still filling): the series reports, but says nothing about
                // whether the anomaly cleared.
                return out;
            }
            o.matching.remove(series);
            if o.incident.is_none() {
                // Pending: the condition must hold for all of `pending_for`.
                if o.matching.is_empty() {
                    self.open.remove(key);
                }
            } else if o.matching.is_empty() && (item.ends || ts - o.last_match > keep) {
                self.resolve(key, ts, "the anomaly cleared".into(), now, world, &mut out);
            }
            return out;
        }
        let o = self.open.entry(key.to_owned()).or_insert_with(|| Open {
            incident: None,
            since: ts,
            last_match: ts,
            series: series.to_owned(),
            labels: item.labels.iter().cloned().collect(),
            score: 0.0,
            value: 0.0,
            repeats: 0,
            resends: 0,
            last_sent: 0,
            opened_wall: 0,
            escalated: false,
            updates: 0,
            last_update: 0,
            matching: BTreeSet::new(),
            heard: HashMap::new(),
        });
        o.heard.insert(series.to_owned(), now);
        o.matching.insert(series.to_owned());
        o.last_match = ts;
        o.score = item.score;
        o.value = item.value;
        if let Some(inc) = &mut o.incident {
            // Grouping: another series joins the incident.
            if !inc.series.iter().any(|s| s == series) {
                inc.series.push(series.to_owned());
                inc.updated_at = ts;
                let mut inc = inc.clone();
                refresh(world, &mut inc);
                audit(&mut out, now, &inc, "grouped", format!("{series} joined"));
                out.push(Transition::Record(inc));
            }
            // A situation (`correlate`): its members changed.
            let members = item.members.and(item.samples).map(lines);
            if let Some(members) = members.filter(|m| *m != inc.samples) {
                inc.samples = members;
                inc.updated_at = ts;
                let mut inc = inc.clone();
                refresh(world, &mut inc);
                audit(&mut out, now, &inc, "updated", format!("{} members", item.members.unwrap_or_default()));
                let at = self.clock(ts, now);
                let o = self.open.get_mut(key).expect("open");
                let due = inc.notifications > 0 && at - o.last_update >= UPDATE_EVERY_MS;
                if due && self.config.channel != "exec" {
                    o.updates += 1;
                    o.last_update = at;
                    let transition = format!("updated-{}", o.updates);
                    self.notify(&mut inc, &transition, now, world, &mut out);
                }
                if let Some(o) = self.open.get_mut(key) {
                    o.incident = Some(inc.clone());
                }
                out.push(Transition::Record(inc));
            }
            return out;
        }
        if ts - o.since < self.config.policy.pending_ms {
            return out;
        }
        let c = &self.config;
        let mut inc = Incident {
            id: Incident::id_for(&c.stage, key, o.since),
            key: key.to_owned(),
            pipeline: c.pipeline.clone(),
            stage: c.stage.clone(),
            series: vec![o.series.clone()],
            labels: o.labels.clone(),
            status: "firing".into(),
            acknowledged: false,
            acknowledged_by: None,
            acknowledged_at: None,
            opened_at: o.since,
            updated_at: ts,
            resolved_at: None,
            resolved_by: None,
            score: item.score,
            value: item.value,
            silenced: false,
            feedback: None,
            feedback_note: None,
            notifications: 0,
            last_notified_at: None,
            samples: item.samples.map(lines).unwrap_or_default(),
        };
        out.push(Transition::Update(IncidentUpdate {
            id: inc.id.clone(),
            stage: c.stage.clone(),
            key: key.to_owned(),
            status: "firing".into(),
            series: series.to_owned(),
            score: inc.score,
            value: inc.value,
            ts,
            labels: inc.labels.clone(),
        }));
        audit(&mut out, now, &inc, "opened", format!("{series} score {:.3} value {}", inc.score, inc.value));
        let at = self.clock(ts, now);
        if let Some(sid) = world.silenced_by(&inc, series, at) {
            inc.silenced = true;
            audit(&mut out, now, &inc, "silenced", format!("by silence {sid}"));
        } else if let Some(window) = c.policy.in_maintenance(at) {
            inc.silenced = true;
            audit(&mut out, now, &inc, "silenced", format!("in the maintenance window `{window}`"));
        }
        self.notify(&mut inc, "firing", now, world, &mut out);
        let o = self.open.get_mut(key).expect("just inserted");
        o.last_sent = at;
        o.opened_wall = at;
        o.last_update = at;
        o.incident = Some(inc.clone());
        out.push(Transition::Record(inc));
        out
    }

    /// What time alone decides, at the wall-clock time `now` (after the tick's items):
    /// `resolve_timeout`, repeats while unacknowledged, re-sends while firing, and
    /// escalation. Nothing under [`Config::data_time`].
    pub fn tick(&mut self, now: Timestamp, world: &dyn World) -> Vec<Transition> {
        let mut out = Vec::new();
        if self.config.data_time {
            return out;
        }
        if let Some(timeout) = self.config.policy.resolve_timeout_ms {
            self.resolve_silent(timeout, now, world, &mut out);
        }
        let mut keys: Vec<String> = self.open.keys().cloned().collect();
        keys.sort();
        for key in &keys {
            let (repeat, resend) = (self.config.policy.repeat_ms, self.config.policy.resend_ms);
            let Some(o) = self.open.get_mut(key) else { continue };
            let Some(mut inc) = o.incident.clone() else { continue };
            let acked = world.current(&inc.id).is_some_and(|c| c.acknowledged);
            let due = |every: Option<i64>| every.is_some_and(|e| now - o.last_sent >= e);
            let transition = if due(resend) {
                o.resends += 1;
                format!("resend-{}", o.resends)
            } else if !acked && due(repeat) {
                o.repeats += 1;
                format!("repeat-{}", o.repeats)
            } else {
                continue;
            };
            o.last_sent = now;
            refresh(world, &mut inc);
            self.notify(&mut inc, &transition, now, world, &mut out);
            if let Some(o) = self.open.get_mut(key) {
                o.incident = Some(inc.clone());
            }
            out.push(Transition::Record(inc));
        }
        // Escalation: still firing and unacknowledged `after` it opened.
        if let Some((after, to)) = self.config.policy.escalate.clone() {
            let target = match self.config.stage.rsplit_once('.') {
                Some((parent, _)) => format!("{parent}.{to}"),
                None => to,
            };
            for key in &keys {
                let Some(o) = self.open.get_mut(key) else { continue };
                if o.escalated || now - o.opened_wall < after {
                    continue;
                }
                let Some(inc) = o.incident.clone().filter(|i| !i.silenced) else { continue };
                o.escalated = true;
                if world.current(&inc.id).is_some_and(|c| c.acknowledged) {
                    continue;
                }
                let dedupe = format!("{}/{target}/escalated", inc.id);
                out.push(Transition::Escalate { target: target.clone(), dedupe, incident: inc });
            }
        }
        out
    }

    /// Resolves the incident of `key` at time `ts` (or forgets it while pending); `why`
    /// goes to the audit trail.
    fn resolve(&mut self, key: &str, ts: Timestamp, why: String, now: Timestamp, world: &dyn World, out: &mut Vec<Transition>) {
        let Some(o) = self.open.remove(key) else { return };
        let Some(mut inc) = o.incident else { return };
        inc.status = "resolved".into();
        inc.resolved_at = Some(ts);
        inc.resolved_by = Some("auto".into());
        inc.updated_at = ts;
        inc.score = o.score;
        inc.value = o.value;
        refresh(world, &mut inc);
        out.push(Transition::Update(IncidentUpdate {
            id: inc.id.clone(),
            stage: self.config.stage.clone(),
            key: key.to_owned(),
            status: "resolved".into(),
            series: o.series,
            score: o.score,
            value: o.value,
            ts,
            labels: inc.labels.clone(),
        }));
        audit(out, now, &inc, "resolved", why);
        self.notify(&mut inc, "resolved", now, world, out);
        out.push(Transition::Record(inc));
    }

    /// `resolve_timeout`: series silent for `timeout` stop keeping their incident firing;
    /// a pending one left with no matching series is forgotten, and a firing one none of
    /// whose series has reported for `timeout` resolves — also one held by
    /// `keep_firing_for` after its last sample.
    /// An incident whose other series still report resolves through them as usual.
    fn resolve_silent(&mut self, timeout: i64, now: i64, world: &dyn World, out: &mut Vec<Transition>) {
        let mut done: Vec<(String, String)> = Vec::new();
        for (key, o) in &mut self.open {
            let quiet_for = |s: &String| now - o.heard.get(s).copied().unwrap_or(now);
            o.matching.retain(|s| quiet_for(s) < timeout);
            if !o.matching.is_empty() {
                continue;
            }
            if o.incident.is_none() {
                // Pending: the condition must hold for all of `pending_for`.
                done.push((key.clone(), String::new()));
                continue;
            }
            let mut series: Vec<&String> = o.heard.keys().collect();
            if series.is_empty() || series.iter().any(|s| quiet_for(s) < timeout) {
                continue;
            }
            series.sort();
            let names: Vec<&str> = series.iter().map(|s| s.as_str()).collect();
            done.push((key.clone(), format!("no data from {} for {}", names.join(", "), crate::time::format_duration_ms(timeout))));
        }
        done.sort();
        for (key, why) in done {
            match self.open.get(&key) {
                // The wall clock (no data marks the moment), never before the last
                // matching sample.
                Some(o) if o.incident.is_some() => {
                    let ts = now.max(o.last_match);
                    self.resolve(&key, ts, why, now, world, out);
                }
                _ => {
                    self.open.remove(&key);
                }
            }
        }
    }

    /// The end of a first start's backlog (see [`Lifecycle::end`]).
    fn release_held(&mut self, now: Timestamp, world: &dyn World, out: &mut Vec<Transition>) {
        self.holding = false;
        let held = std::mem::take(&mut self.held);
        if held.is_empty() {
            return;
        }
        let mut keys: Vec<String> =
            self.open.iter().filter(|(_, o)| o.incident.as_ref().is_some_and(|i| held.contains(&i.id))).map(|(k, _)| k.clone()).collect();
        keys.sort();
        for key in &keys {
            let Some(mut inc) = self.open.get(key).and_then(|o| o.incident.clone()) else { continue };
            refresh(world, &mut inc);
            self.notify(&mut inc, "firing", now, world, out);
            let sent_at = self.clock(inc.updated_at, now);
            if let Some(o) = self.open.get_mut(key) {
                o.last_sent = sent_at;
                o.incident = Some(inc.clone());
            }
            out.push(Transition::Record(inc));
        }
        tracing::info!(
            stage = %self.config.stage,
            still_open = keys.len(),
            resolved_in_backlog = held.len() - keys.len(),
            "read the backlog a first start found: incidents still open are notified now; those that opened and resolved in it are recorded, not sent"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap, HashSet};

    use super::*;

    const T0: Timestamp = 1_700_000_000_000;

    fn config(group_by: &[&str]) -> Config {
        Config {
            pipeline: "p".into(),
            stage: "p.out".into(),
            dedup: Template::new("{{ series }}").unwrap(),
            group_by: group_by.iter().map(|g| (*g).to_owned()).collect(),
            policy: Policy::default(),
            channel: "log".into(),
            data_time: false,
        }
    }

    fn job() -> Vec<(String, String)> {
        vec![("job".to_owned(), "api".to_owned())]
    }

    /// One scored sample of `series` (label `job=api`) at data time `ts`, fed at wall
    /// time `now`.
    fn feed(m: &mut Lifecycle, series: &str, ts: Timestamp, matches: bool, now: Timestamp, world: &dyn World) -> Vec<Transition> {
        let labels = job();
        let key = m.key(series, &labels);
        let item = Item {
            key: &key,
            series,
            labels: &labels,
            ts,
            matches,
            scored: true,
            ends: false,
            score: if matches { 0.99 } else { 0.0 },
            value: 1.0,
            samples: None,
            members: None,
        };
        m.step(&item, now, world)
    }

    /// A whole tick: `begin`, the samples `(series, ts, matches)`, `tick`, `end`.
    fn tick(m: &mut Lifecycle, samples: &[(&str, Timestamp, bool)], now: Timestamp, world: &dyn World) -> Vec<Transition> {
        let mut out = m.begin(false, world);
        for &(series, ts, matches) in samples {
            out.extend(feed(m, series, ts, matches, now, world));
        }
        out.extend(m.tick(now, world));
        out.extend(m.end(false, now, world));
        out
    }

    fn notes(t: &[Transition]) -> Vec<String> {
        t.iter()
            .filter_map(|t| match t {
                Transition::Notify { transition, .. } => Some(transition.clone()),
                Transition::Escalate { target, .. } => Some(format!("escalated to {target}")),
                _ => None,
            })
            .collect()
    }

    fn dedupes(t: &[Transition]) -> Vec<String> {
        t.iter()
            .filter_map(|t| match t {
                Transition::Notify { dedupe, .. } | Transition::Escalate { dedupe, .. } => Some(dedupe.clone()),
                _ => None,
            })
            .collect()
    }

    fn updates(t: &[Transition]) -> Vec<(String, Timestamp)> {
        t.iter()
            .filter_map(|t| match t {
                Transition::Update(u) => Some((u.status.clone(), u.ts)),
                _ => None,
            })
            .collect()
    }

    fn events(t: &[Transition]) -> Vec<String> {
        t.iter()
            .filter_map(|t| match t {
                Transition::Audit(a) => Some(a.event.clone()),
                _ => None,
            })
            .collect()
    }

    /// The incidents as the last transitions recorded them, by id.
    fn recorded(t: &[Transition]) -> BTreeMap<String, Incident> {
        let mut m = BTreeMap::new();
        for t in t {
            if let Transition::Record(i) = t {
                m.insert(i.id.clone(), i.clone());
            }
        }
        m
    }

    /// What people changed: incidents as recorded (acknowledgements, manual
    /// resolutions), and a silence matching everything from `silenced_from`.
    #[derive(Default)]
    struct Facts {
        incidents: HashMap<String, Incident>,
        silenced_from: Option<Timestamp>,
    }

    impl World for Facts {
        fn current(&self, id: &str) -> Option<Incident> {
            self.incidents.get(id).cloned()
        }
        fn silenced_by(&self, _: &Incident, _: &str, now: Timestamp) -> Option<i64> {
            self.silenced_from.filter(|&from| now >= from).map(|_| 7)
        }
    }

    #[test]
    fn an_incident_opens_fires_and_resolves() {
        let mut m = Lifecycle::new(config(&[]));
        let t = tick(&mut m, &[("a", 0, true), ("a", 10, true)], T0, &());
        assert_eq!(updates(&t), [("firing".to_owned(), 0)]);
        assert_eq!(notes(&t), ["firing"]);
        assert_eq!(events(&t), ["opened", "queued"]);
        let inc = recorded(&t).into_values().next().unwrap();
        assert_eq!((inc.status.as_str(), inc.opened_at, inc.notifications, inc.last_notified_at), ("firing", 0, 1, Some(T0)));
        assert_eq!(dedupes(&t), [format!("{}/p.out/firing", inc.id)]);
        let t = tick(&mut m, &[("a", 20, false)], T0 + 1000, &());
        assert_eq!(updates(&t), [("resolved".to_owned(), 20)]);
        assert_eq!(notes(&t), ["resolved"]);
        assert_eq!(events(&t), ["resolved", "queued"]);
        let done = recorded(&t).remove(&inc.id).unwrap();
        assert_eq!((done.status.as_str(), done.resolved_at, done.resolved_by.as_deref()), ("resolved", Some(20), Some("auto")));
        assert_eq!(m.firing().count() + m.pending(), 0);
    }

    #[test]
    fn pending_for_must_hold_all_along() {
        let mut c = config(&[]);
        c.policy.pending_ms = 30;
        let mut m = Lifecycle::new(c);
        // Matches for 20 ms, then a quiet sample: nothing fires, the pending key is gone.
        let t = tick(&mut m, &[("a", 0, true), ("a", 10, true), ("a", 20, true), ("a", 25, false)], T0, &());
        assert!(t.is_empty(), "{t:?}");
        assert_eq!(m.pending(), 0);
        // Matches from 40 on: fires at 70, opened at 40.
        let t = tick(&mut m, &[("a", 40, true), ("a", 60, true)], T0, &());
        assert!(t.is_empty() && m.pending() == 1);
        let t = tick(&mut m, &[("a", 70, true)], T0, &());
        assert_eq!(updates(&t), [("firing".to_owned(), 70)]);
        assert_eq!(recorded(&t).into_values().next().unwrap().opened_at, 40);
    }

    #[test]
    fn keep_firing_for_holds_an_incident_through_short_clears() {
        let mut c = config(&[]);
        c.policy.keep_firing_ms = 30;
        let mut m = Lifecycle::new(c);
        tick(&mut m, &[("a", 0, true)], T0, &());
        // Quiet within 30 ms of the last match: still firing; a match renews it.
        assert!(updates(&tick(&mut m, &[("a", 10, false), ("a", 30, false), ("a", 40, true), ("a", 60, false)], T0, &())).is_empty());
        assert!(updates(&tick(&mut m, &[("a", 70, false)], T0, &())).is_empty(), "70 - 40 is not more than 30");
        assert_eq!(updates(&tick(&mut m, &[("a", 71, false)], T0, &())), [("resolved".to_owned(), 71)]);
    }

    #[test]
    fn an_item_that_ends_its_series_does_not_wait_for_keep_firing_for() {
        let mut c = config(&[]);
        c.policy.keep_firing_ms = 3_600_000;
        let mut m = Lifecycle::new(c);
        tick(&mut m, &[("a", 0, true)], T0, &());
        let labels = job();
        let key = m.key("a", &labels);
        let end = Item {
            key: &key,
            series: "a",
            labels: &labels,
            ts: 10,
            matches: false,
            scored: true,
            ends: true,
            score: 0.0,
            value: 0.0,
            samples: None,
            members: None,
        };
        assert_eq!(updates(&m.step(&end, T0, &())), [("resolved".to_owned(), 10)]);
    }

    #[test]
    fn nothing_is_notified_twice() {
        let mut m = Lifecycle::new(config(&["job"]));
        let mut all = tick(&mut m, &[("a", 0, true), ("a", 10, true)], T0, &());
        // The same items again (a source that re-reads), and a series joining the group:
        // one incident, one `firing`.
        all.extend(tick(&mut m, &[("a", 0, true), ("a", 10, true)], T0, &()));
        let joined = tick(&mut m, &[("b", 11, true)], T0, &());
        assert_eq!(events(&joined), ["grouped"]);
        all.extend(joined);
        assert_eq!(notes(&all), ["firing"]);
        assert_eq!(recorded(&all).len(), 1);
        assert_eq!(recorded(&all).into_values().next().unwrap().series, ["a", "b"]);
        // The group resolves when neither matches, once.
        all.extend(tick(&mut m, &[("a", 20, false)], T0, &()));
        assert!(updates(&all).iter().all(|(s, _)| s == "firing"), "b still matches");
        all.extend(tick(&mut m, &[("b", 21, false), ("b", 22, false), ("a", 23, false)], T0, &()));
        assert_eq!(notes(&all), ["firing", "resolved"]);
        let keys = dedupes(&all);
        assert_eq!(keys.iter().collect::<HashSet<_>>().len(), keys.len());
    }

    #[test]
    fn repeats_resends_and_escalation_follow_the_clock_passed_in() {
        let mut c = config(&[]);
        c.policy.repeat_ms = Some(3_600_000);
        c.policy.escalate = Some((1_800_000, "boss".into()));
        let mut m = Lifecycle::new(c);
        let mut facts = Facts::default();
        assert_eq!(notes(&tick(&mut m, &[("a", 0, true)], T0, &facts)), ["firing"]);
        assert!(notes(&m.tick(T0 + 1_799_999, &facts)).is_empty());
        let t = m.tick(T0 + 1_800_000, &facts);
        assert_eq!(notes(&t), ["escalated to p.boss"]);
        let id = recorded(&tick(&mut m, &[], T0 + 1_800_001, &facts)).into_keys().next();
        assert!(id.is_none(), "nothing changed");
        assert!(notes(&m.tick(T0 + 3_000_000, &facts)).is_empty(), "escalated once");
        let t = m.tick(T0 + 3_600_000, &facts);
        assert_eq!(notes(&t), ["repeat-1"]);
        let inc = recorded(&t).into_values().next().unwrap();
        assert_eq!(dedupes(&t), [format!("{}/p.out/repeat-1@{}", inc.id, T0 + 3_600_000)]);
        // Acknowledged: no more repeats.
        let mut acked = inc.clone();
        acked.acknowledged = true;
        facts.incidents.insert(inc.id.clone(), acked);
        assert!(notes(&m.tick(T0 + 7_200_000, &facts)).is_empty());
        // Resolved by hand: forgotten, its series' next quiet sample resolves nothing, and
        // the stages downstream are told once, at the time it was resolved.
        let by_hand = facts.incidents.get_mut(&inc.id).unwrap();
        (by_hand.status, by_hand.resolved_at) = ("resolved".into(), Some(T0 + 7_250_000));
        let t = tick(&mut m, &[("a", 10, false)], T0 + 7_300_000, &facts);
        assert_eq!(updates(&t), [("resolved".to_owned(), T0 + 7_250_000)]);
        assert_eq!(t.len(), 1, "nothing recorded or sent: {t:?}");
        assert_eq!(m.firing().count(), 0);
        assert!(tick(&mut m, &[("a", 20, false)], T0 + 7_400_000, &facts).is_empty());
    }

    #[test]
    fn an_unacknowledged_escalation_is_not_sent_once_acknowledged() {
        let mut c = config(&[]);
        c.policy.escalate = Some((60_000, "boss".into()));
        let mut m = Lifecycle::new(c);
        let t = tick(&mut m, &[("a", 0, true)], T0, &());
        let mut inc = recorded(&t).into_values().next().unwrap();
        inc.acknowledged = true;
        let facts = Facts { incidents: [(inc.id.clone(), inc)].into(), silenced_from: None };
        assert!(notes(&m.tick(T0 + 60_000, &facts)).is_empty());
        assert!(notes(&m.tick(T0 + 120_000, &())).is_empty(), "decided once");
    }

    #[test]
    fn silences_and_rate_limits_hold_notifications_back_but_not_an_owed_resolution() {
        let mut c = config(&[]);
        c.policy.rate_limit = Some((1, 3_600_000));
        let mut m = Lifecycle::new(c);
        // `a` fires (sent); `b` fires over the limit; `c` opens under a silence.
        let t = tick(&mut m, &[("a", 0, true), ("b", 1, true)], T0, &());
        assert_eq!(notes(&t), ["firing"]);
        assert_eq!(events(&t), ["opened", "queued", "opened", "rate_limited"]);
        let silenced = Facts { silenced_from: Some(T0), ..Facts::default() };
        let t = tick(&mut m, &[("c", 2, true)], T0 + 3_600_000, &silenced);
        assert_eq!(events(&t), ["opened", "silenced", "silenced"]);
        assert!(recorded(&t).into_values().next().unwrap().silenced);
        // Resolutions under the silence: `a`'s is owed (its firing was sent); `c`'s is not.
        let t = tick(&mut m, &[("a", 3, false), ("c", 3, false)], T0 + 3_600_000, &silenced);
        assert_eq!(notes(&t), ["resolved"]);
        assert_eq!(recorded(&t).into_values().filter(|i| i.notifications > 0).count(), 1);
    }

    #[test]
    fn a_backlog_holds_notifications_until_its_end() {
        let mut m = Lifecycle::new(config(&[]));
        m.begin(true, &());
        let mut t = feed(&mut m, "a", 0, true, T0, &());
        t.extend(feed(&mut m, "a", 5, false, T0, &()));
        t.extend(feed(&mut m, "b", 6, true, T0, &()));
        assert!(notes(&t).is_empty());
        assert_eq!(events(&t).iter().filter(|e| *e == "held").count(), 3);
        let t = m.end(true, T0, &());
        assert_eq!(notes(&t), ["firing"], "only `b`, still open");
        assert_eq!(recorded(&t).into_values().next().unwrap().series, ["b"]);
    }

    /// Restarted from what was recorded, the machine takes the firing incidents over:
    /// nothing is opened or notified again, and they resolve as they would have.
    #[test]
    fn a_restored_machine_doubles_nothing() {
        let stream: Vec<(&str, Timestamp, bool)> =
            vec![("a", 0, true), ("b", 5, true), ("a", 10, true), ("b", 15, false), ("a", 20, false)];
        let mut whole = Lifecycle::new(config(&[]));
        let all = tick(&mut whole, &stream, T0, &());
        let mut before = Lifecycle::new(config(&[]));
        let first = tick(&mut before, &stream[..3], T0, &());
        let firing = recorded(&first).into_values().filter(|i| i.status == "firing");
        let mut after = Lifecycle::new(config(&[]));
        after.restore(firing, T0);
        assert_eq!(after.firing().count(), 2);
        let second = tick(&mut after, &stream[3..], T0, &());
        let mut both = dedupes(&first);
        both.extend(dedupes(&second));
        assert_eq!(both, dedupes(&all));
        assert_eq!([updates(&first), updates(&second)].concat(), updates(&all));
        assert_eq!(notes(&second), ["resolved", "resolved"]);
    }

    /// A sample of the situation `s` with its `samples` and `members` annotations.
    fn situation(m: &mut Lifecycle, ts: Timestamp, samples: &str, members: &str, now: Timestamp) -> Vec<Transition> {
        let labels = job();
        let key = m.key("s", &labels);
        let item = Item {
            key: &key,
            series: "s",
            labels: &labels,
            ts,
            matches: true,
            scored: true,
            ends: false,
            score: 1.0,
            value: 1.0,
            samples: Some(samples),
            members: Some(members),
        };
        m.step(&item, now, &())
    }

    #[test]
    fn a_situation_whose_members_change_is_updated_at_most_every_five_minutes() {
        let mut m = Lifecycle::new(config(&[]));
        let t = situation(&mut m, 0, "x", "1", T0);
        assert_eq!(notes(&t), ["firing"]);
        assert_eq!(recorded(&t).into_values().next().unwrap().samples, ["x"]);
        let t = situation(&mut m, 10, "x\u{1e}y", "2", T0 + 1000);
        assert_eq!((events(&t), notes(&t)), (vec!["updated".to_owned()], vec![]), "too soon to notify");
        assert!(situation(&mut m, 20, "x\u{1e}y", "2", T0 + UPDATE_EVERY_MS).is_empty(), "the same members");
        let t = situation(&mut m, 30, "x\u{1e}y\u{1e}z", "3", T0 + UPDATE_EVERY_MS);
        assert_eq!(notes(&t), ["updated-1"]);
        assert_eq!(recorded(&t).into_values().next().unwrap().samples, ["x", "y", "z"]);
    }

    // Time-driven resolution (`resolve_timeout`), with the clock moved by hand.

    #[test]
    fn series_that_fall_silent_stop_keeping_an_incident_firing() {
        let mut c = config(&["job"]);
        c.policy.resolve_timeout_ms = Some(60_000);
        let mut m = Lifecycle::new(c);
        // Both series match: one grouped incident. Then `a` clears; `b` says nothing.
        tick(&mut m, &[("a", 0, true), ("b", 5, true)], T0, &());
        assert!(updates(&tick(&mut m, &[("a", 10, false)], T0 + 50_000, &())).is_empty(), "`b` still matches");
        // `b` silent for less than the timeout: it still holds the incident.
        assert!(m.tick(T0 + 59_999, &()).is_empty());
        // `b` no longer holds it, but `a` still reports: `a` resolves it.
        assert!(m.tick(T0 + 60_000, &()).is_empty());
        assert_eq!(updates(&tick(&mut m, &[("a", 20, false)], T0 + 61_000, &())), [("resolved".to_owned(), 20)]);
        // A series that keeps reporting keeps its incident.
        tick(&mut m, &[("a", 30, true)], T0 + 100_000, &());
        assert!(m.tick(T0 + 159_999, &()).is_empty() && m.firing().count() == 1);
    }

    #[test]
    fn a_pending_incident_whose_matching_series_falls_silent_is_forgotten() {
        let mut c = config(&["job"]);
        c.policy.pending_ms = 3_600_000;
        c.policy.resolve_timeout_ms = Some(60_000);
        let mut m = Lifecycle::new(c);
        // `a` matches (pending), `b` reports quietly and goes on reporting.
        tick(&mut m, &[("a", 0, true), ("b", 5, false)], T0, &());
        tick(&mut m, &[("b", 6, false)], T0 + 50_000, &());
        assert_eq!(m.pending(), 1);
        assert!(m.tick(T0 + 60_000, &()).is_empty(), "forgotten, not resolved");
        assert_eq!(m.pending(), 0);
    }

    #[test]
    fn an_incident_held_by_keep_firing_for_resolves_when_its_series_falls_silent() {
        let mut c = config(&["job"]);
        c.policy.keep_firing_ms = 3_600_000;
        c.policy.resolve_timeout_ms = Some(60_000);
        let mut m = Lifecycle::new(c);
        // `a` fires, then clears once and stops: `keep_firing_for` holds the incident.
        tick(&mut m, &[("a", 0, true), ("a", 10, false)], T0, &());
        assert!(m.tick(T0 + 59_000, &()).is_empty(), "heard from less than the timeout ago");
        let t = m.tick(T0 + 60_000, &());
        assert_eq!(updates(&t), [("resolved".to_owned(), T0 + 60_000)]);
        let why = t
            .iter()
            .find_map(|t| match t {
                Transition::Audit(a) if a.event == "resolved" => Some(a.detail.clone()),
                _ => None,
            })
            .unwrap();
        assert!(why.starts_with("no data from a") && why.ends_with("for 1m"), "{why}");
        assert_eq!(m.firing().count(), 0);
    }

    #[test]
    fn under_data_time_the_wall_clock_decides_nothing() {
        let mut c = config(&[]);
        c.data_time = true;
        c.policy.repeat_ms = Some(1);
        c.policy.resolve_timeout_ms = Some(1);
        c.policy.escalate = Some((1, "boss".into()));
        let mut m = Lifecycle::new(c);
        let t = tick(&mut m, &[("a", 5, true)], T0, &());
        assert_eq!(recorded(&t).into_values().next().unwrap().last_notified_at, Some(5), "the data's time");
        assert!(m.tick(T0 + 3_600_000, &()).is_empty());
    }

    mod prop {
        use proptest::prelude::*;

        use super::*;

        /// Samples one per millisecond over three series, matching or not.
        fn stream() -> impl Strategy<Value = Vec<(usize, bool)>> {
            proptest::collection::vec((0usize..3, any::<bool>()), 0..60)
        }

        fn samples(s: &[(usize, bool)], from: usize) -> Vec<(&'static str, Timestamp, bool)> {
            s.iter().enumerate().map(|(i, &(k, m))| (["a", "b", "c"][k], (from + i) as Timestamp, m)).collect()
        }

        proptest! {
            /// The stream cut into ticks anywhere decides what it decides in one tick;
            /// and a machine that stopped at a cut (its decisions recorded) and was
            /// restored from the recorded incidents decides the rest as if it had not
            /// stopped: no notification lost, none twice.
            #[test]
            fn cuts_and_restarts_change_nothing(s in stream(), cut in 0usize..60, grouped in any::<bool>()) {
                let cut = cut.min(s.len());
                let group: &[&str] = if grouped { &["job"] } else { &[] };
                let all = tick(&mut Lifecycle::new(config(group)), &samples(&s, 0), T0, &());
                let mut one = Lifecycle::new(config(group));
                let mut ticks = tick(&mut one, &samples(&s[..cut], 0), T0, &());
                ticks.extend(tick(&mut one, &samples(&s[cut..], cut), T0, &()));
                prop_assert_eq!(&ticks, &all);
                // (A restored group waits for each of its series to clear again: the
                // recorded incident does not say which still matched.)
                if grouped {
                    return Ok(());
                }
                let first = tick(&mut Lifecycle::new(config(group)), &samples(&s[..cut], 0), T0, &());
                let mut restored = Lifecycle::new(config(group));
                restored.restore(recorded(&first).into_values().filter(|i| i.status == "firing"), T0);
                let second = tick(&mut restored, &samples(&s[cut..], cut), T0, &());
                let mut keys = dedupes(&first);
                keys.extend(dedupes(&second));
                prop_assert_eq!(&keys, &dedupes(&all));
                prop_assert_eq!([updates(&first), updates(&second)].concat(), updates(&all));
            }
        }
    }
}
