//! Respond stages: every respond operator (`log`, `email`, `webhook`, `slack`,
//! `pagerduty`, `alertmanager`, `exec`) is a [`Respond`] with its channel — a thin adapter
//! around the stage's [`Lifecycle`], the pure state machine that decides every incident
//! transition ([`crate::respond::lifecycle`]). Each tick it evaluates the stage's `when:`
//! on the input's items (scored samples, or the incident transitions of an upstream
//! respond stage), feeds them to the machine with the responder's clock, renders the
//! notifications it decides on the stage's channel, and keeps the whole batch until
//! [`Operator::commit`] has recorded it in the durable outbox ([`crate::respond`]).

use std::borrow::Cow;
use std::sync::Arc;

use crate::data::{Data, IncidentUpdate, IncidentsData, ScoreColumn, Timestamp};
use crate::expr::{Condition, Fields, Template, Val};
use crate::respond::channels::Channel;
use crate::respond::lifecycle::{self, Config, Item, Lifecycle, Transition};
use crate::respond::{AuditRecord, Incident, Notification, Responder};
use crate::runtime::{Backlog, BoxFuture, OpCtx, OpError, Operator};

pub use crate::respond::lifecycle::{Policy, UPDATE_EVERY_MS};

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

/// One incident transition of an upstream respond stage, as conditions see it: `key`,
/// `status`, `severity` (its label `severity`, empty without one), `labels`,
/// `opened_at`, `score`, `value`, `series`, `stage`, `timestamp`.
pub struct IncidentItem<'a> {
    pub update: &'a IncidentUpdate,
    /// When the incident opened (the recorded incident's; the transition's time when
    /// it is not recorded).
    pub opened_at: Timestamp,
}

impl Fields for IncidentItem<'_> {
    fn field(&self, name: &str) -> Val<'_> {
        let u = self.update;
        match name {
            "key" => Val::Str(Cow::Borrowed(&u.key)),
            "status" => Val::Str(Cow::Borrowed(&u.status)),
            "severity" => Val::Str(Cow::Borrowed(u.labels.get("severity").map_or("", String::as_str))),
            "labels" => Val::Map(&u.labels),
            "opened_at" => Val::Int(self.opened_at),
            "timestamp" => Val::Int(u.ts),
            "score" => Val::Float(u.score),
            "value" => Val::Float(u.value),
            "series" => Val::Str(Cow::Borrowed(&u.series)),
            "stage" => Val::Str(Cow::Borrowed(&u.stage)),
            _ => Val::Null,
        }
    }
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
}

/// A respond stage: its lifecycle, its condition, its channel, and what it decided and
/// has not recorded yet.
pub struct Respond {
    pub when: Option<Condition>,
    pub lifecycle: Lifecycle,
    responder: Arc<Responder>,
    channel: Arc<Channel>,
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
        let config = Config {
            pipeline,
            stage,
            dedup,
            group_by,
            policy,
            channel: channel.kind.name().to_owned(),
            data_time: responder.is_capturing(),
        };
        let mut lifecycle = Lifecycle::new(config);
        lifecycle.restore(responder.firing_of(&lifecycle.config.stage), responder.clock.now());
        Respond { when, lifecycle, responder, channel, pending: Batch::default() }
    }
}

/// What one tick decided, to record in one go; and the transitions to tell the stages
/// downstream, which they see only once recorded (a tick whose commit fails outputs
/// nothing, and the next outputs them with its own).
#[derive(Default)]
struct Batch {
    incidents: Vec<Incident>,
    notes: Vec<Notification>,
    audit: Vec<AuditRecord>,
    updates: Vec<IncidentUpdate>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.incidents.is_empty() && self.notes.is_empty() && self.audit.is_empty() && self.updates.is_empty()
    }

    fn append(&mut self, mut other: Batch) {
        self.incidents.append(&mut other.incidents);
        self.notes.append(&mut other.notes);
        self.audit.append(&mut other.audit);
        self.updates.append(&mut other.updates);
    }
}

impl Respond {
    /// Collects the machine's transitions: incidents, audit records and downstream
    /// updates as they are; notifications rendered on their channel (a template that
    /// fails is audited), escalations on the target stage's.
    fn collect(&self, transitions: Vec<Transition>, now: Timestamp, b: &mut Batch) {
        let audit = |i: &Incident, event: &str, detail: String| AuditRecord {
            ts: now,
            incident_id: i.id.clone(),
            stage: i.stage.clone(),
            event: event.into(),
            detail,
        };
        for t in transitions {
            match t {
                Transition::Record(i) => b.incidents.push(i),
                Transition::Update(u) => b.updates.push(u),
                Transition::Audit(a) => b.audit.push(a),
                Transition::Notify { transition, dedupe, incident } => {
                    let (subject, body, errors) = self.channel.render(&incident, &transition);
                    for e in errors {
                        tracing::warn!(stage = %self.lifecycle.config.stage, incident = %incident.id, "template failed to render: {e}");
                        b.audit.push(audit(&incident, "render_failed", e));
                    }
                    b.notes.push(Notification {
                        dedupe,
                        incident_id: incident.id.clone(),
                        stage: self.lifecycle.config.stage.clone(),
                        channel: self.channel.kind.name().into(),
                        transition,
                        subject,
                        body,
                        incident,
                    });
                }
                Transition::Escalate { target, dedupe, incident } => {
                    let channel = self.responder.channels.read().unwrap_or_else(|e| e.into_inner()).get(&target).cloned();
                    let Some(channel) = channel else {
                        b.audit.push(audit(&incident, "failed", format!("escalation: no running respond stage `{target}`")));
                        continue;
                    };
                    let (subject, body, errors) = channel.render(&incident, "escalated");
                    for e in errors {
                        b.audit.push(audit(&incident, "render_failed", e));
                    }
                    let detail = format!("unacknowledged: queued on {target} ({})", channel.kind.name());
                    b.notes.push(Notification {
                        dedupe,
                        incident_id: incident.id.clone(),
                        stage: target,
                        channel: channel.kind.name().into(),
                        transition: "escalated".into(),
                        subject,
                        body,
                        incident: incident.clone(),
                    });
                    b.audit.push(audit(&incident, "escalated", detail));
                }
            }
        }
    }
}

impl Operator for Respond {
    fn process(&mut self, inputs: &[Data], ctx: &mut OpCtx) -> Result<Data, OpError> {
        let now = self.responder.clock.now();
        let world: &Responder = &self.responder;
        let mut out = Vec::new();
        match inputs.first() {
            Some(Data::Scores(s)) => {
                out.extend(self.lifecycle.begin(ctx.backlog != Backlog::None, world));
                // Each column's series name and incident key.
                let cols: Vec<(&ScoreColumn, String, String)> = s
                    .series
                    .iter()
                    .map(|c| {
                        let series = c.id.to_string();
                        let key = self.lifecycle.key(&series, c.id.labels());
                        (c, series, key)
                    })
                    .collect();
                let when = &self.when;
                let mut items: Vec<Item<'_>> = cols
                    .iter()
                    .flat_map(|(col, series, key)| {
                        let notes = col.annotations.as_ref();
                        (0..col.len()).map(move |i| Item {
                            key,
                            series,
                            labels: col.id.labels(),
                            ts: col.ts[i],
                            matches: match when {
                                Some(cond) => cond.holds(&ScoreItem { col, i, series }),
                                None => col.anomalous[i],
                            },
                            scored: col.is_scored(i),
                            ends: false,
                            score: col.score[i],
                            value: col.value[i],
                            samples: notes.and_then(|a| a.get("samples")).map(String::as_str),
                            members: notes.and_then(|a| a.get("members")).map(String::as_str),
                        })
                    })
                    .collect();
                if cols.len() > 1 {
                    lifecycle::order(&mut items);
                }
                for item in &items {
                    out.extend(self.lifecycle.step(item, now, world));
                }
            }
            Some(Data::Incidents(i)) => {
                out.extend(self.lifecycle.begin(ctx.backlog != Backlog::None, world));
                // An upstream respond stage's transitions: one that fires and matches
                // opens (or joins) an incident of this stage; its resolution (by its
                // series, or by hand: the upstream stage tells it too) clears it.
                let feed: Vec<&IncidentUpdate> = i
                    .updates
                    .iter()
                    .filter(|u| {
                        u.status != "firing" || {
                            let opened_at = world.get(&u.id).map_or(u.ts, |i| i.opened_at);
                            self.when.as_ref().is_none_or(|c| c.holds(&IncidentItem { update: u, opened_at }))
                        }
                    })
                    .collect();
                let keyed: Vec<(Vec<(String, String)>, String)> = feed
                    .iter()
                    .map(|u| {
                        let labels: Vec<(String, String)> = u.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                        let key = self.lifecycle.key(&u.series, &labels);
                        (labels, key)
                    })
                    .collect();
                for (u, (labels, key)) in feed.iter().zip(&keyed) {
                    let firing = u.status == "firing";
                    let item = Item {
                        key,
                        series: &u.series,
                        labels,
                        ts: u.ts,
                        matches: firing,
                        scored: true,
                        ends: !firing,
                        score: u.score,
                        value: u.value,
                        samples: None,
                        members: None,
                    };
                    out.extend(self.lifecycle.step(&item, now, world));
                }
            }
            Some(other) => return Err(OpError::Invalid(format!("a respond stage takes Scores or Incidents, got {}", other.kind()))),
            None => return Err(OpError::Invalid("missing input".into())),
        }
        out.extend(self.lifecycle.tick(now, world));
        out.extend(self.lifecycle.end(ctx.backlog == Backlog::LastTick, now, world));
        let mut b = Batch::default();
        self.collect(out, now, &mut b);
        self.pending.append(b);
        Ok(Data::Incidents(Arc::new(IncidentsData { updates: self.pending.updates.clone() })))
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

    /// A stage fed another's incidents picks those its `when:` holds for, on their fields
    /// (`severity` is the label), and resolves its own when the upstream one resolves.
    /// Conditions over incidents read every field `Ty::Incidents` lists, with its type.
    #[test]
    fn incident_items_answer_every_listed_field() {
        use super::IncidentItem;
        use crate::data::IncidentUpdate;
        use crate::expr::Fields;
        let update = IncidentUpdate {
            id: "1".into(),
            stage: "p.team".into(),
            key: "k".into(),
            status: "firing".into(),
            series: "s".into(),
            score: 0.5,
            value: 1.0,
            ts: 7,
            labels: [("severity".to_owned(), "critical".to_owned())].into(),
        };
        let item = IncidentItem { update: &update, opened_at: 3 };
        for (name, ty) in crate::types::Ty::Incidents.fields() {
            assert_eq!(item.field(name).ty(), Some(*ty), "Incidents field `{name}`");
        }
    }

    #[test]
    fn a_stage_fed_incidents_routes_them_by_their_fields() {
        use crate::data::IncidentUpdate;
        let responder = Arc::new(Responder::capturing());
        let channel =
            Channel { kind: Box::new(Log { outbox: None }), subject: Template::new("{{ incident.status }}").unwrap(), body: None };
        let cond = crate::expr::resolve_text("item.severity == \"critical\" and item.score > 0.5", crate::types::Ty::Incidents).unwrap();
        let when = crate::expr::Condition::new(Arc::new(cond));
        let mut op = super::Respond::new(
            "p".into(),
            "p.page".into(),
            Some(when),
            Template::new("{{ series }}").unwrap(),
            Vec::new(),
            super::Policy::default(),
            channel,
            responder.clone(),
        );
        let up = |id: &str, status: &str, severity: &str, score: f64, ts: i64| IncidentUpdate {
            id: id.into(),
            stage: "p.team".into(),
            key: id.into(),
            status: status.into(),
            series: format!("s{id}"),
            score,
            value: 1.0,
            ts,
            labels: [("severity".to_owned(), severity.to_owned())].into(),
        };
        let mut feed = |ups: Vec<IncidentUpdate>, now: i64| {
            let input = Data::Incidents(Arc::new(IncidentsData { updates: ups }));
            updates(crate::runtime::process_now(&mut op, &[input], &mut OpCtx::new(now)).unwrap())
        };
        let got = feed(
            vec![up("1", "firing", "critical", 0.9, 10), up("2", "firing", "warning", 0.9, 10), up("3", "firing", "critical", 0.1, 10)],
            10,
        );
        assert_eq!(got, [("firing".to_owned(), 10)], "only the critical one with a high score");
        let got = feed(vec![up("2", "resolved", "warning", 0.9, 20), up("1", "resolved", "critical", 0.9, 30)], 30);
        assert_eq!(got, [("resolved".to_owned(), 30)]);
        let sent: Vec<(String, String)> =
            responder.captured().iter().map(|n| (n.transition.clone(), n.incident.series[0].clone())).collect();
        assert_eq!(sent, [("firing".to_owned(), "s1".to_owned()), ("resolved".to_owned(), "s1".to_owned())]);
        assert_eq!(responder.list()[0].labels["severity"], "critical");
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
        op.lifecycle.config.policy.repeat_ms = Some(3_600_000);
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
