//! How well detection and remediation work, from what the store recorded: per respond
//! stage, per pipeline and per channel, over a period.
//!
//! - **Stages**: incidents opened, alarms per day, on-call's verdicts (the newest per
//!   incident), precision = true / (true + false positives) among incidents with a
//!   verdict, MTTA (open → acknowledgement) and MTTR (open → resolution), means over the
//!   incidents that got there, notifications per incident.
//! - **Pipelines**: the same verdicts plus the `missed` windows on-call reported; recall =
//!   true positives / (true positives + missed).
//! - **Channels**: notifications sent and failed for good, per respond stage and channel;
//!   for `exec`, the success rate (the command exited 0) and how many of the incidents
//!   it ran for resolved within `within` after it ran.
//!
//! Figures without data are `null`, never NaN.

use std::collections::BTreeMap;

use super::{AuditRecord, Incident};
use crate::feedback::{FeedbackRecord, Verdict};
use crate::time::Timestamp;

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Verdicts {
    pub true_positive: u64,
    pub false_positive: u64,
    pub duplicate: u64,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageReport {
    pub pipeline: String,
    pub stage: String,
    pub incidents: u64,
    pub alarms_per_day: f64,
    pub verdicts: Verdicts,
    pub precision: Option<f64>,
    pub mtta_seconds: Option<f64>,
    pub mttr_seconds: Option<f64>,
    pub notifications_per_incident: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PipelineReport {
    pub pipeline: String,
    pub incidents: u64,
    pub verdicts: Verdicts,
    pub missed: u64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExecReport {
    pub runs: u64,
    pub succeeded: u64,
    pub success_rate: Option<f64>,
    /// Incidents a `firing` run was for that resolved within `within` after it ran.
    pub resolved_within: u64,
    pub resolved_rate: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChannelReport {
    pub stage: String,
    pub channel: String,
    pub sent: u64,
    pub failed: u64,
    pub success_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecReport>,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub since: Timestamp,
    pub until: Timestamp,
    pub within_seconds: f64,
    pub stages: Vec<StageReport>,
    pub pipelines: Vec<PipelineReport>,
    pub channels: Vec<ChannelReport>,
}

/// A stage's figures while they are gathered: the report, the acknowledgement and
/// resolution times (seconds), and the notifications.
type StageAcc = (StageReport, Vec<f64>, Vec<f64>, u64);

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn count(v: &mut Verdicts, verdict: Option<Verdict>) {
    match verdict {
        Some(Verdict::TruePositive) => v.true_positive += 1,
        Some(Verdict::FalsePositive) => v.false_positive += 1,
        Some(Verdict::Duplicate) => v.duplicate += 1,
        _ => {}
    }
}

/// The report over `[since, until]`: `incidents` opened in it, every verdict, and the
/// audit records of sends (`sent`, `failed`) in it.
pub fn build(
    incidents: &[Incident],
    feedback: &[FeedbackRecord],
    audit: &[AuditRecord],
    since: Timestamp,
    until: Timestamp,
    within_ms: i64,
) -> Report {
    let days = ((until - since).max(1) as f64 / 86_400_000.0).max(1.0 / 24.0);
    let mut latest: BTreeMap<&str, Verdict> = BTreeMap::new();
    for f in feedback.iter().filter(|f| !f.incident.is_empty()) {
        latest.insert(&f.incident, f.verdict);
    }
    let incidents: Vec<&Incident> = incidents.iter().filter(|i| i.opened_at >= since && i.opened_at <= until).collect();
    let mut stages: BTreeMap<(String, String), StageAcc> = BTreeMap::new();
    let mut pipelines: BTreeMap<String, PipelineReport> = BTreeMap::new();
    for i in &incidents {
        let verdict = latest.get(i.id.as_str()).copied();
        let e = stages.entry((i.pipeline.clone(), i.stage.clone())).or_insert_with(|| {
            (StageReport { pipeline: i.pipeline.clone(), stage: i.stage.clone(), ..StageReport::default() }, Vec::new(), Vec::new(), 0)
        });
        e.0.incidents += 1;
        count(&mut e.0.verdicts, verdict);
        if let Some(a) = i.acknowledged_at {
            e.1.push((a - i.opened_at).max(0) as f64 / 1000.0);
        }
        if let Some(r) = i.resolved_at {
            e.2.push((r - i.opened_at).max(0) as f64 / 1000.0);
        }
        e.3 += u64::from(i.notifications);
        let p = pipelines
            .entry(i.pipeline.clone())
            .or_insert_with(|| PipelineReport { pipeline: i.pipeline.clone(), ..PipelineReport::default() });
        p.incidents += 1;
        count(&mut p.verdicts, verdict);
    }
    for f in feedback.iter().filter(|f| f.verdict == Verdict::Missed && f.from <= until && f.to >= since) {
        pipelines
            .entry(f.pipeline.clone())
            .or_insert_with(|| PipelineReport { pipeline: f.pipeline.clone(), ..PipelineReport::default() })
            .missed += 1;
    }
    let stages = stages
        .into_values()
        .map(|(mut r, acks, resolves, notes)| {
            r.alarms_per_day = r.incidents as f64 / days;
            r.precision = ratio(r.verdicts.true_positive, r.verdicts.true_positive + r.verdicts.false_positive);
            r.mtta_seconds = mean(&acks);
            r.mttr_seconds = mean(&resolves);
            r.notifications_per_incident = ratio(notes, r.incidents);
            r
        })
        .collect();
    let pipelines = pipelines
        .into_values()
        .map(|mut p| {
            p.precision = ratio(p.verdicts.true_positive, p.verdicts.true_positive + p.verdicts.false_positive);
            p.recall = ratio(p.verdicts.true_positive, p.verdicts.true_positive + p.missed);
            p
        })
        .collect();
    // Channels: "<channel> <transition>: <detail>" in sent and failed records.
    let resolved_at: BTreeMap<&str, Option<Timestamp>> = incidents.iter().map(|i| (i.id.as_str(), i.resolved_at)).collect();
    let mut channels: BTreeMap<(String, String), ChannelReport> = BTreeMap::new();
    for a in audit.iter().filter(|a| a.ts >= since && a.ts <= until && (a.event == "sent" || a.event == "failed")) {
        let channel = a.detail.split_whitespace().next().unwrap_or("").to_owned();
        let transition = a.detail.split_whitespace().nth(1).unwrap_or("").trim_end_matches(':').to_owned();
        let c = channels.entry((a.stage.clone(), channel.clone())).or_insert_with(|| ChannelReport {
            stage: a.stage.clone(),
            channel: channel.clone(),
            ..ChannelReport::default()
        });
        let ok = a.event == "sent";
        if ok {
            c.sent += 1;
        } else {
            c.failed += 1;
        }
        if channel == "exec" && transition == "firing" {
            let x = c.exec.get_or_insert_with(ExecReport::default);
            x.runs += 1;
            x.succeeded += u64::from(ok);
            if resolved_at.get(a.incident_id.as_str()).copied().flatten().is_some_and(|r| r >= a.ts && r - a.ts <= within_ms) {
                x.resolved_within += 1;
            }
        }
    }
    let channels = channels
        .into_values()
        .map(|mut c| {
            c.success_rate = ratio(c.sent, c.sent + c.failed);
            if let Some(x) = &mut c.exec {
                x.success_rate = ratio(x.succeeded, x.runs);
                x.resolved_rate = ratio(x.resolved_within, x.runs);
            }
            c
        })
        .collect();
    Report { since, until, within_seconds: within_ms as f64 / 1000.0, stages, pipelines, channels }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{:.0}%", x * 100.0))
}

fn secs(v: Option<f64>) -> String {
    v.map_or("-".into(), |s| crate::time::format_duration_ms((s * 1000.0) as i64))
}

impl Report {
    /// The report as a terminal table.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut t = String::new();
        let _ = writeln!(t, "from {} to {}\n", crate::time::format_rfc3339(self.since), crate::time::format_rfc3339(self.until));
        let _ = writeln!(
            t,
            "{:<32} {:>9} {:>8} {:>4} {:>4} {:>4} {:>9} {:>9} {:>9} {:>8}",
            "respond stage", "incidents", "per day", "tp", "fp", "dup", "precision", "MTTA", "MTTR", "notes/inc"
        );
        for s in &self.stages {
            let _ = writeln!(
                t,
                "{:<32} {:>9} {:>8.2} {:>4} {:>4} {:>4} {:>9} {:>9} {:>9} {:>8}",
                s.stage,
                s.incidents,
                s.alarms_per_day,
                s.verdicts.true_positive,
                s.verdicts.false_positive,
                s.verdicts.duplicate,
                pct(s.precision),
                secs(s.mtta_seconds),
                secs(s.mttr_seconds),
                s.notifications_per_incident.map_or("-".into(), |n| format!("{n:.1}"))
            );
        }
        let _ = writeln!(t, "\n{:<32} {:>9} {:>6} {:>9} {:>7}", "pipeline", "incidents", "missed", "precision", "recall");
        for p in &self.pipelines {
            let _ = writeln!(t, "{:<32} {:>9} {:>6} {:>9} {:>7}", p.pipeline, p.incidents, p.missed, pct(p.precision), pct(p.recall));
        }
        let _ = writeln!(t, "\n{:<32} {:<12} {:>6} {:>6} {:>8}  exec", "channel of stage", "channel", "sent", "failed", "success");
        for c in &self.channels {
            let exec = c.exec.as_ref().map_or(String::new(), |x| {
                format!(
                    "{}/{} exited 0, {} resolved within {}",
                    x.succeeded,
                    x.runs,
                    pct(x.resolved_rate),
                    crate::time::format_duration_ms((self.within_seconds * 1000.0) as i64)
                )
            });
            let _ = writeln!(t, "{:<32} {:<12} {:>6} {:>6} {:>8}  {exec}", c.stage, c.channel, c.sent, c.failed, pct(c.success_rate));
        }
        t
    }

    /// The report as Prometheus gauges (`vigil_report_*`, over the report's period).
    pub fn metrics(&self) -> String {
        use std::fmt::Write;
        let mut t = String::new();
        let esc = crate::text::escape_label;
        let gauge = |t: &mut String, name: &str, help: &str, rows: Vec<(String, f64)>| {
            let _ = writeln!(t, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (labels, v) in rows {
                let _ = writeln!(t, "{name}{{{labels}}} {v}");
            }
        };
        let stage = |s: &StageReport| format!("pipeline=\"{}\",stage=\"{}\"", esc(&s.pipeline), esc(&s.stage));
        gauge(
            &mut t,
            "vigil_report_alarms_per_day",
            "Incidents opened per day over the last 7 days, per respond stage.",
            self.stages.iter().map(|s| (stage(s), s.alarms_per_day)).collect(),
        );
        gauge(
            &mut t,
            "vigil_report_precision",
            "True positives over incidents with a true or false positive verdict, last 7 days.",
            self.stages.iter().filter_map(|s| Some((stage(s), s.precision?))).collect(),
        );
        gauge(
            &mut t,
            "vigil_report_mtta_seconds",
            "Mean time from open to acknowledgement, last 7 days.",
            self.stages.iter().filter_map(|s| Some((stage(s), s.mtta_seconds?))).collect(),
        );
        gauge(
            &mut t,
            "vigil_report_mttr_seconds",
            "Mean time from open to resolution, last 7 days.",
            self.stages.iter().filter_map(|s| Some((stage(s), s.mttr_seconds?))).collect(),
        );
        gauge(
            &mut t,
            "vigil_report_notifications_per_incident",
            "Notifications enqueued per incident, last 7 days.",
            self.stages.iter().filter_map(|s| Some((stage(s), s.notifications_per_incident?))).collect(),
        );
        gauge(
            &mut t,
            "vigil_report_recall",
            "True positives over true positives and missed windows, per pipeline, last 7 days.",
            self.pipelines.iter().filter_map(|p| Some((format!("pipeline=\"{}\"", esc(&p.pipeline)), p.recall?))).collect(),
        );
        gauge(
            &mut t,
            "vigil_report_exec_success_ratio",
            "Remediation commands that exited 0, per respond stage, last 7 days.",
            self.channels.iter().filter_map(|c| Some((format!("stage=\"{}\"", esc(&c.stage)), c.exec.as_ref()?.success_rate?))).collect(),
        );
        gauge(
            &mut t,
            "vigil_report_exec_resolved_ratio",
            "Remediation runs whose incident resolved within the stated time after, last 7 days.",
            self.channels.iter().filter_map(|c| Some((format!("stage=\"{}\"", esc(&c.stage)), c.exec.as_ref()?.resolved_rate?))).collect(),
        );
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(id: &str, opened: i64, ack: Option<i64>, resolved: Option<i64>) -> Incident {
        Incident {
            id: id.into(),
            key: id.into(),
            pipeline: "p".into(),
            stage: "p.page".into(),
            series: vec!["s".into()],
            labels: Default::default(),
            status: if resolved.is_some() { "resolved".into() } else { "firing".into() },
            acknowledged: ack.is_some(),
            acknowledged_by: None,
            acknowledged_at: ack,
            opened_at: opened,
            updated_at: opened,
            resolved_at: resolved,
            resolved_by: None,
            score: 1.0,
            value: 1.0,
            silenced: false,
            feedback: None,
            feedback_note: None,
            notifications: 2,
            last_notified_at: None,
            samples: Vec::new(),
        }
    }

    fn verdict(incident: &str, v: Verdict) -> FeedbackRecord {
        FeedbackRecord {
            id: 0,
            incident: incident.into(),
            pipeline: "p".into(),
            stage: "p.page".into(),
            series: vec!["s".into()],
            from: 0,
            to: 1,
            verdict: v,
            note: None,
            by: "t".into(),
            at: 1,
        }
    }

    fn sent(incident: &str, ts: i64, event: &str) -> AuditRecord {
        AuditRecord { ts, incident_id: incident.into(), stage: "p.fix".into(), event: event.into(), detail: "exec firing: exit 0".into() }
    }

    #[test]
    fn figures_from_incidents_verdicts_and_sends() {
        let day = 86_400_000;
        let incidents = [
            incident("a", 1000, Some(61_000), Some(301_000)),
            incident("b", 2000, None, None),
            incident("c", 3000, None, Some(3000 + 600_000)),
        ];
        let mut feedback =
            vec![verdict("a", Verdict::FalsePositive), verdict("a", Verdict::TruePositive), verdict("b", Verdict::FalsePositive)];
        feedback.push(FeedbackRecord {
            incident: String::new(),
            verdict: Verdict::Missed,
            from: 10,
            to: 20,
            ..verdict("", Verdict::Missed)
        });
        let audit = [sent("a", 2000, "sent"), sent("c", 4000, "failed")];
        let r = build(&incidents, &feedback, &audit, 0, 2 * day, 900_000);
        let s = &r.stages[0];
        assert_eq!(s.incidents, 3);
        assert_eq!(s.alarms_per_day, 1.5);
        assert_eq!((s.verdicts.true_positive, s.verdicts.false_positive), (1, 1));
        assert_eq!(s.precision, Some(0.5));
        assert_eq!(s.mtta_seconds, Some(60.0));
        assert_eq!(s.mttr_seconds, Some(450.0));
        assert_eq!(s.notifications_per_incident, Some(2.0));
        assert_eq!(r.pipelines[0].missed, 1);
        assert_eq!(r.pipelines[0].recall, Some(0.5));
        let x = r.channels[0].exec.as_ref().unwrap();
        assert_eq!((x.runs, x.succeeded, x.resolved_within), (2, 1, 2));
        let text = r.text();
        assert!(text.contains("p.page") && text.contains("50%"), "{text}");
        assert!(!r.metrics().contains("NaN"));
    }

    #[test]
    fn an_empty_period_has_no_figures_and_no_nan() {
        let r = build(&[], &[], &[], 0, 1000, 60_000);
        assert!(r.stages.is_empty() && r.channels.is_empty());
        assert!(!r.metrics().contains("NaN"));
    }
}
