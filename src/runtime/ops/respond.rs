//! Respond stages: every respond operator (`log`, `email`, `webhook`, `slack`,
//! `pagerduty`, `alertmanager`, `exec`) is a [`Respond`] with its channel. It opens an
//! incident per dedup key when items match the stage's condition (after `pending_for`),
//! resolves it when nothing matched for `keep_firing_for` (a sample its detector could
//! not score yet — see [`ScoreColumn::unscored`] — never clears it), repeats while unacknowledged,
//! honours silences and rate limits, and queues each transition's notification in the
//! durable outbox ([`crate::respond`]).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::data::{Data, IncidentUpdate, IncidentsData, ScoreColumn, Timestamp};
use crate::expr::{Condition, Fields, Template, Val};
use crate::respond::channels::Channel;
use crate::respond::{AuditRecord, Incident, Notification, Responder};
use crate::runtime::{Backlog, BoxFuture, OpCtx, OpError, Operator};

/// One scored sample, as conditions see it.
pub struct ScoreItem<'a> {
    pub col: &'a ScoreColumn,
    pub i: usize,
    pub series: &'a str,
}

impl Fields for ScoreItem<'_> {
    fn field(&self, name: &str) -> Val<'_> {
        match name {
            "series" => Val::Str(std::borrow::Cow::Borrowed(self.series)),
            _ => self.col.field(self.i, name).unwrap_or(Val::Null),
        }
    }
}

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
    matching: std::collections::BTreeSet<String>,
    /// Wall-clock time each series last sent an item (matching or not), for
    /// `resolve_timeout`.
    heard: HashMap<String, i64>,
}

/// The least time between two `updated-N` notifications of one incident (a situation
/// whose members change), so that a cascade still growing does not page on every join.
pub const UPDATE_EVERY_MS: i64 = 5 * 60_000;

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
    /// From a stage's options.
    pub fn from_options(options: &[crate::dag::StageOpt]) -> Policy {
        use crate::dag::StageOpt as O;
        let mut p = Policy::default();
        for o in options {
            match *o {
                O::PendingFor { ms } => p.pending_ms = ms as i64,
                O::KeepFiringFor { ms } => p.keep_firing_ms = ms as i64,
                O::ResolveTimeout { ms } => p.resolve_timeout_ms = Some(ms as i64),
                O::Repeat { ms } => p.repeat_ms = Some(ms as i64),
                O::RateLimit { count, per_ms } => p.rate_limit = Some((count, per_ms as i64)),
                O::Escalate { after_ms, ref to } => p.escalate = Some((after_ms as i64, to.clone())),
                O::Maintenance { ref schedule, ms } => match croner::parser::CronParser::new().parse(schedule) {
                    Ok(cron) => p.maintenance.push((cron, ms as i64, schedule.clone())),
                    Err(e) => tracing::error!("maintenance window `{schedule}` ignored: {e}"),
                },
                _ => {}
            }
        }
        p
    }

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

/// A respond stage: turns matching items into incidents (keyed by the `dedup` template,
/// or by the `group_by` labels) and each incident transition into a notification on its
/// channel, through the responder's durable outbox.
pub struct Respond {
    pub pipeline: String,
    pub stage: String,
    pub when: Option<Condition>,
    pub dedup: Template,
    pub group_by: Vec<String>,
    pub policy: Policy,
    responder: Arc<Responder>,
    channel: Arc<Channel>,
    open: HashMap<String, Open>,
    /// Wall-clock times of recent notifications, for the rate limit.
    sent: VecDeque<i64>,
    /// Whether this tick reads a first start's backlog: notifications are held.
    holding: bool,
    /// Incidents whose notifications a backlog held, by id.
    held: HashSet<String>,
    /// Transitions decided and not recorded yet: [`Operator::commit`] records them after
    /// `process`; when the store refuses, they stay here (the tick fails) and are recorded
    /// with the next tick's, in order.
    pending: Batch,
}

impl Respond {
    /// A respond stage; registers its channel with the responder and takes over the
    /// stage's firing incidents (after a restart or a reload).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pipeline: String,
        stage: String,
        when: Option<Condition>,
        dedup: Template,
        group_by: Vec<String>,
        policy: Policy,
        channel: Channel,
        responder: Arc<Responder>,
    ) -> Respond {
        let channel = Arc::new(channel);
        responder.channels.write().unwrap_or_else(|e| e.into_inner()).insert(stage.clone(), channel.clone());
        let mut open = HashMap::new();
        let now = responder.clock.now();
        for i in responder.firing_of(&stage) {
            open.insert(
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
        Respond {
            pipeline,
            stage,
            when,
            dedup,
            group_by,
            policy,
            responder,
            channel,
            open,
            sent: VecDeque::new(),
            holding: false,
            held: HashSet::new(),
            pending: Batch::default(),
        }
    }

    fn key(&self, series: &str, labels: &[(String, String)]) -> String {
        if self.group_by.is_empty() {
            let map: serde_json::Map<String, serde_json::Value> = labels.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
            return self
                .dedup
                .render(&serde_json::json!({ "pipeline": self.pipeline, "stage": self.stage, "series": series, "labels": map }));
        }
        let parts: Vec<String> =
            self.group_by.iter().map(|g| format!("{g}={}", labels.iter().find(|(k, _)| k == g).map_or("", |(_, v)| v.as_str()))).collect();
        format!("{}/{}", self.stage, parts.join(","))
    }

    /// Whether the rate limit lets one more notification through now.
    fn allow(&mut self, now: i64) -> bool {
        let Some((count, per)) = self.policy.rate_limit else { return true };
        while self.sent.front().is_some_and(|&t| t <= now - per) {
            self.sent.pop_front();
        }
        if self.sent.len() as u64 >= count {
            return false;
        }
        self.sent.push_back(now);
        true
    }
}

/// Copies what people change through the API (acknowledgement, feedback) from the
/// responder's copy of an incident, so that a stage's own copy never overwrites it.
fn refresh(responder: &Responder, inc: &mut Incident) {
    if let Some(cur) = responder.get(&inc.id) {
        inc.acknowledged = cur.acknowledged;
        inc.acknowledged_by = cur.acknowledged_by;
        inc.acknowledged_at = cur.acknowledged_at;
        inc.feedback = cur.feedback;
        inc.feedback_note = cur.feedback_note;
    }
}

/// What one tick decided, to record in one go.
#[derive(Default)]
struct Batch {
    incidents: Vec<Incident>,
    notes: Vec<Notification>,
    audit: Vec<AuditRecord>,
    /// When it was decided (the responder's clock).
    now: Timestamp,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.incidents.is_empty() && self.notes.is_empty() && self.audit.is_empty()
    }

    fn append(&mut self, mut other: Batch) {
        self.incidents.append(&mut other.incidents);
        self.notes.append(&mut other.notes);
        self.audit.append(&mut other.audit);
    }

    /// An empty batch of what is decided at `now` (the audit records' time).
    fn at(now: Timestamp) -> Batch {
        Batch { now, ..Batch::default() }
    }

    fn audit(&mut self, i: &Incident, event: &str, detail: String) {
        self.audit.push(AuditRecord { ts: self.now, incident_id: i.id.clone(), stage: i.stage.clone(), event: event.into(), detail });
    }
}

impl Respond {
    /// Queues the notification of a transition, unless silenced or rate-limited.
    fn notify(&mut self, inc: &mut Incident, transition: &str, b: &mut Batch) {
        let now = self.clock(inc.updated_at);
        if self.holding {
            b.audit(inc, "held", format!("{transition}: not sent yet (read from the backlog a first start found)"));
            self.held.insert(inc.id.clone());
            return;
        }
        if inc.silenced {
            b.audit(inc, "silenced", format!("{transition}: not sent (silenced when it opened)"));
            return;
        }
        // A resolution whose opening was sent always goes out: a channel must not be
        // left with an incident open for ever.
        let owed = transition == "resolved" && inc.notifications > 0;
        // A silence added while it fires holds its later notifications back.
        if !owed {
            let series = inc.series.first().cloned().unwrap_or_default();
            if let Some(sid) = self.responder.silenced_by(inc, &series, now) {
                b.audit(inc, "silenced", format!("{transition}: not sent (silence {sid})"));
                return;
            }
        }
        if !owed && !self.allow(now) {
            let (count, per) = self.policy.rate_limit.unwrap_or((0, 0));
            b.audit(inc, "rate_limited", format!("{transition}: not sent (more than {count} per {per} ms)"));
            return;
        }
        let (subject, body, errors) = self.channel.render(inc, transition);
        for e in errors {
            tracing::warn!(stage = %self.stage, incident = %inc.id, "template failed to render: {e}");
            b.audit(inc, "render_failed", e);
        }
        inc.notifications += 1;
        inc.last_notified_at = Some(now);
        // Repeats and re-sends are numbered from 1 again after a restart: their key carries
        // the time too, so that a new one is never taken for an old one.
        let dedupe = if transition.starts_with("repeat-") || transition.starts_with("resend-") || transition.starts_with("updated-") {
            format!("{}/{}/{transition}@{now}", inc.id, self.stage)
        } else {
            format!("{}/{}/{transition}", inc.id, self.stage)
        };
        b.notes.push(Notification {
            dedupe,
            incident_id: inc.id.clone(),
            stage: self.stage.clone(),
            channel: self.channel.kind.name().into(),
            transition: transition.into(),
            subject,
            body,
            incident: inc.clone(),
        });
        b.audit(inc, "queued", format!("{} {transition}", self.channel.kind.name()));
    }
}

impl Respond {
    /// The time silences, maintenance windows and rate limits are judged by: the wall
    /// clock — or, under `vigil test`, the data's own time, so that a test gives the same
    /// result whenever it runs.
    fn clock(&self, data_ts: Timestamp) -> i64 {
        if self.responder.is_capturing() {
            data_ts
        } else {
            self.responder.clock.now()
        }
    }

    /// Resolves the incident of `key` at time `ts` (or forgets it while pending); `why`
    /// goes to the audit trail.
    fn resolve(&mut self, key: &str, ts: Timestamp, why: String, updates: &mut Vec<IncidentUpdate>, b: &mut Batch) {
        let Some(o) = self.open.remove(key) else { return };
        let Some(mut inc) = o.incident else { return };
        inc.status = "resolved".into();
        inc.resolved_at = Some(ts);
        inc.resolved_by = Some("auto".into());
        inc.updated_at = ts;
        inc.score = o.score;
        inc.value = o.value;
        refresh(&self.responder, &mut inc);
        updates.push(IncidentUpdate {
            id: inc.id.clone(),
            stage: self.stage.clone(),
            key: key.to_owned(),
            status: "resolved".into(),
            series: o.series,
            score: o.score,
            value: o.value,
            ts,
            labels: inc.labels.clone(),
        });
        b.audit(&inc, "resolved", why);
        self.notify(&mut inc, "resolved", b);
        b.incidents.push(inc);
    }

    /// `resolve_timeout`: series silent for `timeout` stop keeping their incident firing;
    /// a pending one left with no matching series is forgotten, and a firing one none of
    /// whose series has reported for `timeout` resolves — also one held by
    /// `keep_firing_for` after its last sample.
    /// An incident whose other series still report resolves through them as usual.
    fn resolve_silent(&mut self, timeout: i64, now: i64, updates: &mut Vec<IncidentUpdate>, b: &mut Batch) {
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
        for (key, why) in done {
            match self.open.get(&key) {
                // The wall clock (no data marks the moment), never before the last
                // matching sample.
                Some(o) if o.incident.is_some() => {
                    let ts = now.max(o.last_match);
                    self.resolve(&key, ts, why, updates, b);
                }
                _ => {
                    self.open.remove(&key);
                }
            }
        }
    }

    /// Queues an escalation: the incident's notification on the channel of the respond
    /// stage `to` (a sibling of this stage), once per incident.
    fn escalate(&mut self, inc: &Incident, to: &str, b: &mut Batch) {
        let target = match self.stage.rsplit_once('.') {
            Some((parent, _)) => format!("{parent}.{to}"),
            None => to.to_owned(),
        };
        let channel = self.responder.channels.read().unwrap_or_else(|e| e.into_inner()).get(&target).cloned();
        let Some(channel) = channel else {
            b.audit(inc, "failed", format!("escalation: no running respond stage `{target}`"));
            return;
        };
        let (subject, body, errors) = channel.render(inc, "escalated");
        for e in errors {
            b.audit(inc, "render_failed", e);
        }
        b.notes.push(Notification {
            dedupe: format!("{}/{target}/escalated", inc.id),
            incident_id: inc.id.clone(),
            stage: target.clone(),
            channel: channel.kind.name().into(),
            transition: "escalated".into(),
            subject,
            body,
            incident: inc.clone(),
        });
        b.audit(inc, "escalated", format!("unacknowledged: queued on {target} ({})", channel.kind.name()));
    }
}

impl Respond {
    /// The end of a first start's backlog: the incidents it opened that are still open
    /// are notified now; those it opened and resolved stay recorded, unsent.
    fn release_held(&mut self, b: &mut Batch) {
        self.holding = false;
        let held = std::mem::take(&mut self.held);
        if held.is_empty() {
            return;
        }
        let keys: Vec<String> =
            self.open.iter().filter(|(_, o)| o.incident.as_ref().is_some_and(|i| held.contains(&i.id))).map(|(k, _)| k.clone()).collect();
        for key in &keys {
            let Some(mut inc) = self.open.get(key).and_then(|o| o.incident.clone()) else { continue };
            refresh(&self.responder, &mut inc);
            self.notify(&mut inc, "firing", b);
            let sent_at = self.clock(inc.updated_at);
            if let Some(o) = self.open.get_mut(key) {
                o.last_sent = sent_at;
                o.incident = Some(inc.clone());
            }
            b.incidents.push(inc);
        }
        tracing::info!(
            stage = %self.stage,
            still_open = keys.len(),
            resolved_in_backlog = held.len() - keys.len(),
            "read the backlog a first start found: incidents still open are notified now; those that opened and resolved in it are recorded, not sent"
        );
    }
}

impl Operator for Respond {
    fn process(&mut self, inputs: &[Data], ctx: &mut OpCtx) -> Result<Data, OpError> {
        let mut updates = Vec::new();
        let mut b = Batch::at(self.responder.clock.now());
        self.holding = ctx.backlog != Backlog::None;
        // Incidents resolved by hand (API, CLI) since the last tick: forget them.
        self.open.retain(|_, o| match &o.incident {
            Some(i) => self.responder.get(&i.id).is_none_or(|now| now.status == "firing"),
            None => true,
        });
        match inputs.first() {
            Some(Data::Scores(s)) => {
                // Each column's series name and incident key, and every item in time order
                // across the columns (a group's series interleave): an incident resolves
                // at the first item past `keep_firing_for`, before later items can match.
                let cols: Vec<(&ScoreColumn, String, String)> = s
                    .series
                    .iter()
                    .map(|c| {
                        let series = c.id.to_string();
                        let key = self.key(&series, c.id.labels());
                        (c, series, key)
                    })
                    .collect();
                let when = &self.when;
                let mut order: Vec<(Timestamp, bool, usize, usize)> = cols
                    .iter()
                    .enumerate()
                    .flat_map(|(c, (col, series, _))| {
                        (0..col.len()).map(move |i| {
                            let matches = match when {
                                Some(cond) => cond.holds(&ScoreItem { col, i, series }),
                                None => col.anomalous[i],
                            };
                            (col.ts[i], !matches, c, i)
                        })
                    })
                    .collect();
                // At one timestamp, a group's matching items come first, so that one
                // series' quiet sample does not resolve what another still shows.
                if cols.len() > 1 {
                    order.sort_by_key(|&(t, quiet, c, _)| (t, quiet, c));
                }
                let wall = self.responder.clock.now();
                for (ts, quiet, c, i) in order {
                    let (col, series, key) = (cols[c].0, &cols[c].1, &cols[c].2);
                    if quiet {
                        let keep = self.policy.keep_firing_ms;
                        let Some(o) = self.open.get_mut(key) else { continue };
                        o.heard.insert(series.clone(), wall);
                        if !col.is_scored(i) {
                            // No score yet (a detector rebuilt by a reload, or restarted,
                            // whose window is still filling): the series reports, but
                            // says nothing about whether the anomaly cleared.
                            continue;
                        }
                        o.matching.remove(series);
                        if o.incident.is_none() {
                            // Pending: the condition must hold for all of `pending_for`.
                            if o.matching.is_empty() {
                                self.open.remove(key);
                            }
                        } else if o.matching.is_empty() && ts - o.last_match > keep {
                            self.resolve(key, ts, "the anomaly cleared".into(), &mut updates, &mut b);
                        }
                        continue;
                    }
                    let key = key.clone();
                    let series = series.clone();
                    let labels: BTreeMap<String, String> = col.id.labels().iter().cloned().collect();
                    let o = self.open.entry(key.clone()).or_insert_with(|| Open {
                        incident: None,
                        since: ts,
                        last_match: ts,
                        series: series.clone(),
                        labels,
                        score: 0.0,
                        value: 0.0,
                        repeats: 0,
                        resends: 0,
                        last_sent: 0,
                        opened_wall: 0,
                        escalated: false,
                        updates: 0,
                        last_update: 0,
                        matching: Default::default(),
                        heard: HashMap::new(),
                    });
                    o.heard.insert(series.clone(), wall);
                    o.matching.insert(series.clone());
                    o.last_match = ts;
                    o.score = col.score[i];
                    o.value = col.value[i];
                    if let Some(inc) = &mut o.incident {
                        // Grouping: another series joins the incident.
                        if !inc.series.contains(&series) {
                            inc.series.push(series.clone());
                            inc.updated_at = ts;
                            let mut inc = inc.clone();
                            refresh(&self.responder, &mut inc);
                            b.audit(&inc, "grouped", format!("{series} joined"));
                            b.incidents.push(inc);
                        }
                        // A situation (`correlate`): its members changed.
                        let notes = col.annotations.as_ref().filter(|a| a.contains_key("members"));
                        let members: Option<Vec<String>> = notes
                            .and_then(|a| a.get("samples"))
                            .map(|s| s.split(super::preprocess::SAMPLE_SEPARATOR).map(str::to_owned).collect());
                        if let Some(members) = members.filter(|m| *m != inc.samples) {
                            inc.samples = members;
                            inc.updated_at = ts;
                            let mut inc = inc.clone();
                            refresh(&self.responder, &mut inc);
                            let count = notes.and_then(|a| a.get("members")).cloned().unwrap_or_default();
                            b.audit(&inc, "updated", format!("{count} members"));
                            let now = self.clock(ts);
                            let o = self.open.get_mut(&key).expect("open");
                            let due = inc.notifications > 0 && now - o.last_update >= UPDATE_EVERY_MS;
                            if due && self.channel.kind.name() != "exec" {
                                o.updates += 1;
                                o.last_update = now;
                                let transition = format!("updated-{}", o.updates);
                                self.notify(&mut inc, &transition, &mut b);
                            }
                            if let Some(o) = self.open.get_mut(&key) {
                                o.incident = Some(inc.clone());
                            }
                            b.incidents.push(inc);
                        }
                        continue;
                    }
                    if ts - o.since < self.policy.pending_ms {
                        continue;
                    }
                    let mut inc = Incident {
                        id: Incident::id_for(&self.stage, &key, o.since),
                        key: key.clone(),
                        pipeline: self.pipeline.clone(),
                        stage: self.stage.clone(),
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
                        score: col.score[i],
                        value: col.value[i],
                        silenced: false,
                        feedback: None,
                        feedback_note: None,
                        notifications: 0,
                        last_notified_at: None,
                        samples: col
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get("samples"))
                            .map(|s| s.split(super::preprocess::SAMPLE_SEPARATOR).map(str::to_owned).collect())
                            .unwrap_or_default(),
                    };
                    updates.push(IncidentUpdate {
                        id: inc.id.clone(),
                        stage: self.stage.clone(),
                        key,
                        status: "firing".into(),
                        series: series.clone(),
                        score: inc.score,
                        value: inc.value,
                        ts,
                        labels: inc.labels.clone(),
                    });
                    b.audit(&inc, "opened", format!("{series} score {:.3} value {}", inc.score, inc.value));
                    let now = self.clock(ts);
                    if let Some(sid) = self.responder.silenced_by(&inc, &series, now) {
                        inc.silenced = true;
                        b.audit(&inc, "silenced", format!("by silence {sid}"));
                    } else if let Some(window) = self.policy.in_maintenance(now) {
                        inc.silenced = true;
                        b.audit(&inc, "silenced", format!("in the maintenance window `{window}`"));
                    }
                    self.notify(&mut inc, "firing", &mut b);
                    let o = self.open.get_mut(&inc.key).expect("just inserted");
                    o.last_sent = now;
                    o.opened_wall = now;
                    o.last_update = now;
                    o.incident = Some(inc.clone());
                    b.incidents.push(inc);
                }
                // Repeats while unacknowledged, and re-sends while firing.
                let now = self.responder.clock.now();
                // (Both follow the wall clock: not under `vigil test`.)
                let capturing = self.responder.is_capturing();
                if let Some(timeout) = self.policy.resolve_timeout_ms.filter(|_| !capturing) {
                    self.resolve_silent(timeout, now, &mut updates, &mut b);
                }
                let keys: Vec<String> = if capturing { Vec::new() } else { self.open.keys().cloned().collect() };
                for key in keys {
                    let (repeat, resend) = (self.policy.repeat_ms, self.policy.resend_ms);
                    let Some(o) = self.open.get_mut(&key) else { continue };
                    let Some(mut inc) = o.incident.clone() else { continue };
                    let acked = self.responder.get(&inc.id).is_some_and(|c| c.acknowledged);
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
                    refresh(&self.responder, &mut inc);
                    self.notify(&mut inc, &transition, &mut b);
                    if let Some(o) = self.open.get_mut(&key) {
                        o.incident = Some(inc.clone());
                    }
                    b.incidents.push(inc);
                }
                // Escalation: still firing and unacknowledged `after` it opened.
                if let Some((after, to)) = self.policy.escalate.clone().filter(|_| !capturing) {
                    let due: Vec<String> = self
                        .open
                        .iter()
                        .filter(|(_, o)| o.incident.as_ref().is_some_and(|i| !i.silenced) && !o.escalated && now - o.opened_wall >= after)
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in due {
                        let Some(o) = self.open.get_mut(&key) else { continue };
                        o.escalated = true;
                        let Some(inc) = o.incident.clone() else { continue };
                        if self.responder.get(&inc.id).is_some_and(|c| c.acknowledged) {
                            continue;
                        }
                        self.escalate(&inc, &to, &mut b);
                    }
                }
            }
            Some(Data::Incidents(_)) => {
                return Err(OpError::Invalid("a respond stage takes scores; group incidents with `correlate` first".into()))
            }
            Some(other) => return Err(OpError::Invalid(format!("a respond stage takes Scores or Incidents, got {}", other.kind()))),
            None => return Err(OpError::Invalid("missing input".into())),
        }
        if ctx.backlog == Backlog::LastTick {
            self.release_held(&mut b);
        }
        self.holding = false;
        self.pending.append(b);
        Ok(Data::Incidents(Arc::new(IncidentsData { updates })))
    }

    fn commit(&mut self) -> Option<BoxFuture<'_, Result<(), OpError>>> {
        if self.pending.is_empty() {
            return None;
        }
        Some(Box::pin(async move {
            let b = &self.pending;
            let (incidents, notes, audit) = (b.incidents.len(), b.notes.len(), b.audit.len());
            self.responder.commit(&b.incidents, &b.notes, &b.audit).await.map_err(|e| {
                OpError::Io(format!(
                    "cannot record {incidents} incident changes, {notes} notifications and {audit} audit records \
                     (kept, recorded with the next tick): {e}"
                ))
            })?;
            self.pending = Batch::default();
            Ok(())
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::data::{Data, IncidentsData, ScoreColumn, ScoresData, SeriesId};
    use crate::expr::Template;
    use crate::respond::channels::{Channel, Log};
    use crate::respond::Responder;
    use crate::runtime::{OpCtx, Operator};

    fn grouped(responder: &Arc<Responder>) -> super::Respond {
        let channel =
            Channel { kind: Box::new(Log { outbox: None }), subject: Template::new("{{ incident.status }}").unwrap(), body: None };
        super::Respond::new(
            "p".into(),
            "p.out".into(),
            None,
            Template::new("{{ series }}").unwrap(),
            vec!["job".into()],
            super::Policy::default(),
            channel,
            responder.clone(),
        )
    }

    /// Two series of one group, sampled at different offsets: (ts, anomalous) each.
    fn scores(a: &[(i64, bool)], b: &[(i64, bool)]) -> Data {
        let col = |name: &str, pts: &[(i64, bool)]| {
            let mut c = ScoreColumn::new(SeriesId::new(name, [("job".to_owned(), "api".to_owned())]));
            for &(t, anomalous) in pts {
                c.push(t, 1.0, if anomalous { 0.99 } else { 0.0 }, f64::NAN, f64::NAN, f64::NAN, anomalous);
            }
            c
        };
        Data::Scores(Arc::new(ScoresData { series: vec![col("a", a), col("b", b)] }))
    }

    fn updates(d: Data) -> Vec<(String, i64)> {
        let Data::Incidents(i) = d else { panic!("not incidents") };
        let i: &IncidentsData = &i;
        i.updates.iter().map(|u| (u.status.clone(), u.ts)).collect()
    }

    #[test]
    fn a_backlog_notifies_only_the_incidents_still_open_at_its_end() {
        use crate::runtime::Backlog;
        let responder = Arc::new(Responder::capturing());
        let channel =
            Channel { kind: Box::new(Log { outbox: None }), subject: Template::new("{{ incident.status }}").unwrap(), body: None };
        let mut op = super::Respond::new(
            "p".into(),
            "p.out".into(),
            None,
            Template::new("{{ series }}").unwrap(),
            Vec::new(),
            super::Policy::default(),
            channel,
            responder.clone(),
        );
        let tick = |op: &mut super::Respond, a: &[(i64, bool)], b: &[(i64, bool)], backlog: Backlog| {
            let mut ctx = OpCtx::new(0);
            ctx.backlog = backlog;
            updates(crate::runtime::process_now(op, &[scores(a, b)], &mut ctx).unwrap())
        };
        // Two ticks of backlog: `a` opens and clears in the first, `b` opens in the second
        // and is still open at its end.
        let first = tick(&mut op, &[(0, true), (10, false)], &[(0, false)], Backlog::Reading);
        assert_eq!(first.len(), 2, "the backlog's incidents are built: {first:?}");
        assert!(responder.captured().is_empty(), "nothing sent while the backlog is read");
        tick(&mut op, &[(20, false)], &[(20, true)], Backlog::LastTick);
        let sent: Vec<(String, String)> =
            responder.captured().iter().map(|n| (n.transition.clone(), n.incident.series[0].clone())).collect();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0].0, "firing");
        assert!(sent[0].1.starts_with('b'), "{sent:?}");
        // Live from here: `b` clears, and its resolution goes out (its opening was sent).
        tick(&mut op, &[(30, false)], &[(30, false)], Backlog::None);
        let sent: Vec<String> = responder.captured().iter().map(|n| n.transition.clone()).collect();
        assert_eq!(sent, ["firing", "resolved"]);
    }

    #[test]
    fn a_group_does_not_flap_when_its_series_are_sampled_at_different_offsets() {
        let responder = Arc::new(Responder::default());
        let mut op = grouped(&responder);
        // `a` is anomalous until 40; `b`, sampled between, never is.
        let input = scores(&[(0, true), (20, true), (40, true), (60, false)], &[(10, false), (30, false), (50, false), (70, false)]);
        let got = updates(crate::runtime::process_now(&mut op, &[input], &mut OpCtx::new(70)).unwrap());
        assert_eq!(got, [("firing".to_owned(), 0), ("resolved".to_owned(), 60)], "one incident, resolved when `a` clears");
    }

    #[test]
    fn a_sample_without_a_score_does_not_resolve_an_incident() {
        // As after a reload that rebuilt the detector with a window still filling.
        let responder = Arc::new(Responder::default());
        let mut op = grouped(&responder);
        crate::runtime::process_now(&mut op, &[scores(&[(0, true)], &[])], &mut OpCtx::new(0)).unwrap();
        let mut warming = ScoreColumn::new(SeriesId::new("a", [("job".to_owned(), "api".to_owned())]));
        warming.push_unscored(10, 1.0);
        warming.push_unscored(20, 1.0);
        assert!(!warming.is_scored(0) && !warming.is_scored(1));
        let got = updates(
            crate::runtime::process_now(&mut op, &[Data::Scores(Arc::new(ScoresData { series: vec![warming] }))], &mut OpCtx::new(20))
                .unwrap(),
        );
        assert!(got.is_empty(), "no score is not a clear: {got:?}");
        assert_eq!(responder.list()[0].status, "firing");
        // A scored quiet sample clears it.
        let got = updates(crate::runtime::process_now(&mut op, &[scores(&[(30, false)], &[])], &mut OpCtx::new(30)).unwrap());
        assert_eq!(got, [("resolved".to_owned(), 30)]);
    }

    #[test]
    fn series_that_fall_silent_stop_keeping_an_incident_firing() {
        let responder = Arc::new(Responder::default());
        let mut op = grouped(&responder);
        // Both series match: one grouped incident. Then `a` clears and `b` says nothing.
        crate::runtime::process_now(&mut op, &[scores(&[(0, true)], &[(5, true)])], &mut OpCtx::new(5)).unwrap();
        let got = updates(crate::runtime::process_now(&mut op, &[scores(&[(10, false)], &[])], &mut OpCtx::new(10)).unwrap());
        assert!(got.is_empty(), "`b` still matches: {got:?}");
        // When each series was last heard from, on a clock of the test's own.
        let t0 = 1_700_000_000_000;
        let o = op.open.values_mut().next().unwrap();
        for (series, heard) in o.heard.iter_mut() {
            *heard = if series.starts_with('a') { t0 + 50_000 } else { t0 };
        }
        let (mut ups, mut b) = (Vec::new(), super::Batch::default());
        op.resolve_silent(60_000, t0 + 30_000, &mut ups, &mut b);
        assert!(ups.is_empty() && op.open.values().next().unwrap().matching.len() == 1, "silent for less than the timeout");
        // `b` no longer holds the incident, but `a` still reports: `a` resolves it.
        op.resolve_silent(60_000, t0 + 60_000, &mut ups, &mut b);
        assert!(ups.is_empty() && op.open.values().next().unwrap().matching.is_empty());
        let got = updates(crate::runtime::process_now(&mut op, &[scores(&[(20, false)], &[])], &mut OpCtx::new(20)).unwrap());
        assert_eq!(got, [("resolved".to_owned(), 20)]);
        // A series that keeps reporting keeps its incident.
        crate::runtime::process_now(&mut op, &[scores(&[(30, true)], &[])], &mut OpCtx::new(30)).unwrap();
        let (mut ups, mut b) = (Vec::new(), super::Batch::default());
        op.resolve_silent(60_000, crate::time::now_ms(), &mut ups, &mut b);
        assert!(ups.is_empty() && op.open.len() == 1);
    }

    #[test]
    fn a_pending_incident_whose_matching_series_falls_silent_is_forgotten() {
        let responder = Arc::new(Responder::default());
        let mut op = grouped(&responder);
        op.policy.pending_ms = 3_600_000;
        // `a` matches (pending), `b` reports quietly and goes on reporting.
        crate::runtime::process_now(&mut op, &[scores(&[(0, true)], &[(5, false)])], &mut OpCtx::new(5)).unwrap();
        let t0 = 1_700_000_000_000;
        let o = op.open.values_mut().next().unwrap();
        assert!(o.incident.is_none());
        for (series, heard) in o.heard.iter_mut() {
            *heard = if series.starts_with('a') { t0 } else { t0 + 50_000 };
        }
        let (mut ups, mut b) = (Vec::new(), super::Batch::default());
        op.resolve_silent(60_000, t0 + 60_000, &mut ups, &mut b);
        assert!(ups.is_empty() && b.audit.is_empty() && op.open.is_empty(), "forgotten, not resolved");
    }

    #[test]
    fn an_incident_held_by_keep_firing_for_resolves_when_its_series_falls_silent() {
        let responder = Arc::new(Responder::default());
        let mut op = grouped(&responder);
        op.policy.keep_firing_ms = 3_600_000;
        // `a` fires, then clears once and stops: `keep_firing_for` holds the incident.
        crate::runtime::process_now(&mut op, &[scores(&[(0, true), (10, false)], &[])], &mut OpCtx::new(10)).unwrap();
        let after = 1_700_000_000_000;
        op.open.values_mut().next().unwrap().heard.values_mut().for_each(|h| *h = after);
        let (mut ups, mut b) = (Vec::new(), super::Batch::default());
        op.resolve_silent(60_000, after + 59_000, &mut ups, &mut b);
        assert!(ups.is_empty(), "heard from less than the timeout ago");
        op.resolve_silent(60_000, after + 60_000, &mut ups, &mut b);
        assert_eq!(ups.iter().map(|u| u.status.as_str()).collect::<Vec<_>>(), ["resolved"]);
        let why = &b.audit.iter().find(|a| a.event == "resolved").unwrap().detail;
        assert!(why.starts_with("no data from a") && why.ends_with("for 1m"), "{why}");
        assert!(op.open.is_empty());
    }

    #[test]
    fn acknowledgements_survive_a_series_joining_the_group() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let responder = Arc::new(Responder::default());
        let mut op = grouped(&responder);
        crate::runtime::process_now(&mut op, &[scores(&[(0, true)], &[])], &mut OpCtx::new(0)).unwrap();
        let id = responder.list()[0].id.clone();
        rt.block_on(responder.acknowledge(&id, "alice")).unwrap();
        crate::runtime::process_now(&mut op, &[scores(&[(10, true)], &[(11, true)])], &mut OpCtx::new(11)).unwrap();
        let now = responder.get(&id).unwrap();
        assert_eq!(now.series.len(), 2, "b joined");
        assert!(now.acknowledged && now.acknowledged_by.as_deref() == Some("alice"), "{now:?}");
    }

    #[test]
    fn maintenance_windows_hold_exactly_their_span() {
        let opt = crate::dag::StageOpt::Maintenance { schedule: "0 2 * * SAT".into(), ms: 2 * 3_600_000 };
        let p = super::Policy::from_options(&[opt]);
        let at = |s: &str| crate::time::parse_timestamp(s).unwrap();
        // 2026-12-05 is a Saturday.
        assert_eq!(p.in_maintenance(at("2026-12-05 01:59:59")), None);
        assert_eq!(p.in_maintenance(at("2026-12-05 02:00:00")), Some("0 2 * * SAT"));
        assert_eq!(p.in_maintenance(at("2026-12-05 03:59:59")), Some("0 2 * * SAT"));
        assert_eq!(p.in_maintenance(at("2026-12-05 04:00:00")), None);
        assert_eq!(p.in_maintenance(at("2026-12-06 02:30:00")), None, "Sunday");
        assert_eq!(super::Policy::default().in_maintenance(at("2026-12-05 02:30:00")), None);
    }

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
                        crate::respond::append_line(&path, &format!("{{\"thread\":{t},\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(200)))
                            .unwrap();
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

    /// The clock is injected: repeats follow the responder's clock, not the machine's, so
    /// a test moves time by hand instead of sleeping.
    #[test]
    fn repeats_follow_the_injected_clock() {
        use std::sync::atomic::{AtomicI64, Ordering::SeqCst};
        let t0 = 1_700_000_000_000;
        let now = Arc::new(AtomicI64::new(t0));
        let read = now.clone();
        let responder = Arc::new(Responder::default().with_clock(crate::respond::Clock::manual(move || read.load(SeqCst))));
        let mut op = grouped(&responder);
        op.policy.repeat_ms = Some(3_600_000);
        let tick = |op: &mut super::Respond, ts: i64| {
            op.process(&[scores(&[(ts, true)], &[])], &mut OpCtx::new(ts)).unwrap();
            let sent: Vec<String> = op.pending.notes.iter().map(|n| n.transition.clone()).collect();
            if let Some(commit) = op.commit() {
                futures_util::FutureExt::now_or_never(commit).unwrap().unwrap();
            }
            sent
        };
        assert_eq!(tick(&mut op, 0), ["firing"]);
        now.store(t0 + 3_599_999, SeqCst);
        assert!(tick(&mut op, 1).is_empty(), "not an hour yet");
        now.store(t0 + 3_600_000, SeqCst);
        assert_eq!(tick(&mut op, 2), ["repeat-1"]);
        let audit = responder.get(&responder.list()[0].id).unwrap();
        assert_eq!(audit.last_notified_at, Some(t0 + 3_600_000), "stamped by the injected clock");
    }
}
