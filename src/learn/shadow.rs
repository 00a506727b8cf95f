//! Challengers in shadow: a retrained version scores the same data as the active one for
//! a stated period; its would-be alarms are recorded, never notified; then a policy
//! decides.
//!
//! An *alarm* is the start of a run of anomalous points (one per event, however long it
//! lasts). Both versions' alarms over the same period are compared with what is known
//! about that period — on-call's verdicts and any labelled windows ([`Window`]):
//! - an alarm inside a window known as an anomaly (`true_positive`, `missed`, a label)
//!   is *confirmed*; the window is *found*;
//! - every other alarm is *unconfirmed* (inside a `false_positive` window, or where
//!   nothing is known);
//! - precision = confirmed / alarms, recall = found / anomaly windows (None without any).
//!
//! `promote when better` promotes the candidate when, over the shadow period, it finds at
//! least the windows the active version finds (recall no lower) **and** raises no more
//! unconfirmed alarms, and its scores are all finite. Otherwise it is rejected; both
//! outcomes are audited with these figures.

use crate::feedback::{Verdict, Window};
use crate::time::Timestamp;

/// One version's alarms over a shadow period.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub version: u32,
    /// When each alarm started (the first anomalous point of an event).
    pub alarms: Vec<Timestamp>,
    /// Points scored.
    pub points: u64,
    /// Points whose score was not a number (a broken model).
    pub nan: u64,
}

/// One challenger's shadow period: both versions' would-be alarms since it started.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Run {
    /// The candidate's last training sample: the period starts after it.
    pub from: Timestamp,
    pub active: Record,
    pub candidate: Record,
    /// The candidate's id in the registry (under `vigil run`).
    pub candidate_id: Option<i64>,
    /// The newest point both versions scored: the period is judged once it reaches the
    /// end of the shadow period.
    #[serde(default)]
    pub last: Timestamp,
}

/// Where a shadow period is recorded: beside the candidate's artifact.
pub fn run_path(models: &std::path::Path, meta: &super::ModelMeta) -> std::path::PathBuf {
    super::registry::series_dir(models, &meta.key, &meta.series).join(format!("shadow-v{}.json", meta.version))
}

/// The shadow period recorded for a candidate, if any.
pub fn load_run(models: &std::path::Path, meta: &super::ModelMeta) -> Option<Run> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(run_path(models, meta)).ok()?).ok()?;
    serde_json::from_value(v.get("run")?.clone()).ok()
}

/// The figures of a recorded shadow period in words (for the audit trail).
pub fn summary(models: &std::path::Path, meta: &super::ModelMeta) -> Option<String> {
    let run = load_run(models, meta)?;
    let to = run.active.alarms.iter().chain(&run.candidate.alarms).copied().max().unwrap_or(run.from);
    let c = compare(&run.active, &run.candidate, &[], run.from, to.max(run.from));
    Some(format!("in shadow v{} raised {} alarms, v{} {}", c.candidate.version, c.candidate.alarms, c.active.version, c.active.alarms))
}

/// Figures of one version against what is known.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Figures {
    pub version: u32,
    pub alarms: usize,
    pub confirmed: usize,
    pub unconfirmed: usize,
    pub found: usize,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub points: u64,
    pub nan: u64,
}

/// Both versions over the same period.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Comparison {
    pub from: Timestamp,
    pub to: Timestamp,
    pub active: Figures,
    pub candidate: Figures,
    /// Share of all alarms that the other version raised within `AGREE_MS` too.
    pub agreement: Option<f64>,
    /// Anomaly windows known in the period.
    pub windows: usize,
}

/// Two alarms this close agree.
pub const AGREE_MS: i64 = 3_600_000;

fn figures(r: &Record, windows: &[Window], from: Timestamp, to: Timestamp) -> Figures {
    let alarms: Vec<Timestamp> = r.alarms.iter().copied().filter(|&t| t >= from && t <= to).collect();
    let anomaly: Vec<&Window> = windows.iter().filter(|w| w.verdict.is_anomaly() && w.to >= from && w.from <= to).collect();
    let confirmed = alarms.iter().filter(|&&t| anomaly.iter().any(|w| t >= w.from && t <= w.to)).count();
    let found = anomaly.iter().filter(|w| alarms.iter().any(|&t| t >= w.from && t <= w.to)).count();
    Figures {
        version: r.version,
        alarms: alarms.len(),
        confirmed,
        unconfirmed: alarms.len() - confirmed,
        found,
        precision: (!alarms.is_empty()).then(|| confirmed as f64 / alarms.len() as f64),
        recall: (!anomaly.is_empty()).then(|| found as f64 / anomaly.len() as f64),
        points: r.points,
        nan: r.nan,
    }
}

/// Compares two versions' alarms over `[from, to]`.
pub fn compare(active: &Record, candidate: &Record, windows: &[Window], from: Timestamp, to: Timestamp) -> Comparison {
    let a = figures(active, windows, from, to);
    let c = figures(candidate, windows, from, to);
    let near = |t: Timestamp, other: &[Timestamp]| other.iter().any(|&u| (t - u).abs() <= AGREE_MS);
    let (aa, ca): (Vec<Timestamp>, Vec<Timestamp>) = (
        active.alarms.iter().copied().filter(|&t| t >= from && t <= to).collect(),
        candidate.alarms.iter().copied().filter(|&t| t >= from && t <= to).collect(),
    );
    let total = aa.len() + ca.len();
    let agreeing = aa.iter().filter(|&&t| near(t, &ca)).count() + ca.iter().filter(|&&t| near(t, &aa)).count();
    Comparison {
        from,
        to,
        agreement: (total > 0).then(|| agreeing as f64 / total as f64),
        windows: windows.iter().filter(|w| w.verdict.is_anomaly() && w.to >= from && w.from <= to).count(),
        active: a,
        candidate: c,
    }
}

/// `promote when better`: whether the candidate wins, and why, in words.
pub fn better(c: &Comparison) -> (bool, String) {
    let (a, k) = (&c.active, &c.candidate);
    if k.nan > 0 {
        return (false, format!("v{} produced {} scores that are not numbers", k.version, k.nan));
    }
    if k.points == 0 {
        return (false, format!("v{} scored nothing in its shadow period", k.version));
    }
    let recall_ok = k.found >= a.found;
    let quiet_ok = k.unconfirmed <= a.unconfirmed;
    let figures = format!(
        "v{}: {} alarms, {} unconfirmed, found {}/{} windows; v{}: {} alarms, {} unconfirmed, found {}/{} windows",
        k.version, k.alarms, k.unconfirmed, k.found, c.windows, a.version, a.alarms, a.unconfirmed, a.found, c.windows
    );
    match (recall_ok, quiet_ok) {
        (true, true) => (true, format!("no lower recall and no more unconfirmed alarms ({figures})")),
        (false, _) => (false, format!("finds fewer known anomalies ({figures})")),
        (true, false) => (false, format!("raises more unconfirmed alarms ({figures})")),
    }
}

/// Labelled anomaly windows of one series (a labels file in NAB's format,
/// `{"series": [["start", "end"], …]}`), as known anomalies.
pub fn labelled(windows: &[(Timestamp, Timestamp)]) -> Vec<Window> {
    windows.iter().map(|&(from, to)| Window { from, to, verdict: Verdict::Missed }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(version: u32, alarms: &[i64]) -> Record {
        Record { version, alarms: alarms.to_vec(), points: 100, nan: 0 }
    }

    #[test]
    fn a_quieter_candidate_that_finds_the_same_wins() {
        let h = 3_600_000;
        let windows = [
            Window { from: 100 * h, to: 200 * h, verdict: Verdict::TruePositive },
            Window { from: 500 * h, to: 600 * h, verdict: Verdict::FalsePositive },
        ];
        let c = compare(&rec(1, &[150 * h, 550 * h, 900 * h]), &rec(2, &[150 * h + h / 2]), &windows, 0, 1000 * h);
        assert_eq!((c.active.confirmed, c.active.unconfirmed, c.active.found), (1, 2, 1));
        assert_eq!((c.candidate.confirmed, c.candidate.unconfirmed), (1, 0));
        assert_eq!(c.candidate.precision, Some(1.0));
        assert_eq!(c.agreement, Some(0.5));
        assert!(better(&c).0);
        let worse = compare(&rec(1, &[150 * h]), &rec(2, &[550 * h]), &windows, 0, 1000 * h);
        let (ok, why) = better(&worse);
        assert!(!ok && why.contains("fewer known anomalies"), "{why}");
    }

    #[test]
    fn a_broken_candidate_is_never_promoted() {
        let mut k = rec(2, &[]);
        k.nan = 3;
        let (ok, why) = better(&compare(&rec(1, &[]), &k, &[], 0, 10));
        assert!(!ok && why.contains("not numbers"), "{why}");
    }
}
