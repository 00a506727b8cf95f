//! On-call's verdicts as data: what train stages learn from and reports count.
//!
//! A [`Verdict`] is given on an incident (`true_positive`, `false_positive`, `duplicate`)
//! or on a window of a series nobody was told about (`missed`). Each becomes a
//! [`FeedbackRecord`] with the series and the time window it covers — for an incident,
//! from when it opened to when it resolved (or to when the verdict was given, while it
//! fires). Records are kept in the state store and, in memory, in the [`FeedbackBook`]
//! that train and predict stages read:
//!
//! - windows confirmed as anomalies (`true_positive`, `missed`) are left out of what a
//!   model learns as normal;
//! - windows marked `false_positive` are learned as normal, weighted, and the errors a
//!   model made there raise its calibration, so the same error scores lower next time;
//! - `duplicate` says nothing about the data: reports count it, models ignore it.
//!
//! Contradictory verdicts on one incident: the last one wins (both stay in the audit
//! trail). The book answers for one series with the newest verdict per incident.

use std::collections::{BTreeMap, VecDeque};
use std::sync::RwLock;

use crate::time::Timestamp;

/// On-call's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The incident was real.
    TruePositive,
    /// Nothing was wrong: the data in the window is normal.
    FalsePositive,
    /// Real, but another incident already said so.
    Duplicate,
    /// Something was wrong in a window and no incident said so.
    Missed,
}

impl Verdict {
    /// Every verdict, as written.
    pub const ALL: [&'static str; 4] = ["true_positive", "false_positive", "duplicate", "missed"];

    /// The verdict written as `true_positive`, ...
    ///
    /// # Errors
    /// Any other word, with the ones that are accepted.
    pub fn parse(s: &str) -> Result<Verdict, String> {
        match s {
            "true_positive" => Ok(Verdict::TruePositive),
            "false_positive" => Ok(Verdict::FalsePositive),
            "duplicate" => Ok(Verdict::Duplicate),
            "missed" => Ok(Verdict::Missed),
            other => Err(format!("the verdict must be one of {}, not `{other}`", Verdict::ALL.join(", "))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::TruePositive => "true_positive",
            Verdict::FalsePositive => "false_positive",
            Verdict::Duplicate => "duplicate",
            Verdict::Missed => "missed",
        }
    }

    /// Whether the window held an anomaly (kept out of what models learn as normal).
    pub fn is_anomaly(self) -> bool {
        matches!(self, Verdict::TruePositive | Verdict::Missed)
    }
}

/// One verdict with what it covers.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeedbackRecord {
    /// The store's id (0 before it is stored).
    #[serde(default)]
    pub id: i64,
    /// The incident it is about; empty for `missed`.
    #[serde(default)]
    pub incident: String,
    pub pipeline: String,
    /// The respond stage of the incident (`pipeline.stage`); empty for `missed`.
    #[serde(default)]
    pub stage: String,
    /// The series it covers (Prometheus notation), as the incident names them.
    pub series: Vec<String>,
    pub from: Timestamp,
    pub to: Timestamp,
    pub verdict: Verdict,
    #[serde(default)]
    pub note: Option<String>,
    pub by: String,
    /// When it was given.
    pub at: Timestamp,
}

/// What a window of a series is known to be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub from: Timestamp,
    pub to: Timestamp,
    pub verdict: Verdict,
}

/// The verdicts in memory, for the stages that learn from them.
#[derive(Default)]
pub struct FeedbackBook {
    records: RwLock<Vec<FeedbackRecord>>,
    /// Bumped by every change, so readers know when to look again.
    generation: std::sync::atomic::AtomicU64,
    /// Verdicts given per caller in the last minute (the flood guard).
    recent: std::sync::Mutex<BTreeMap<String, VecDeque<Timestamp>>>,
}

/// Verdicts one caller may give per minute.
pub const PER_MINUTE: usize = 60;

impl FeedbackBook {
    /// A book holding `records` (from the store, oldest first).
    pub fn with(records: Vec<FeedbackRecord>) -> FeedbackBook {
        FeedbackBook { records: RwLock::new(records), ..FeedbackBook::default() }
    }

    /// Changes so far: a reader that saw this number has seen every record.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Adds a record.
    pub fn add(&self, r: FeedbackRecord) {
        self.records.write().unwrap_or_else(|e| e.into_inner()).push(r);
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Every record, oldest first.
    pub fn all(&self) -> Vec<FeedbackRecord> {
        self.records.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether `caller` may give another verdict at `now` (and counts it when so): at most
    /// [`PER_MINUTE`] per caller and minute.
    pub fn admit(&self, caller: &str, now: Timestamp) -> bool {
        let mut map = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let q = map.entry(caller.to_owned()).or_default();
        while q.front().is_some_and(|&t| now - t >= 60_000) {
            q.pop_front();
        }
        if q.len() >= PER_MINUTE {
            return false;
        }
        q.push_back(now);
        true
    }

    /// The windows known for `series` of `pipeline`: the newest verdict per incident, and
    /// every `missed` window, oldest first.
    pub fn windows(&self, pipeline: &str, series: &str) -> Vec<Window> {
        let records = self.records.read().unwrap_or_else(|e| e.into_inner());
        let mut by_incident: BTreeMap<&str, Window> = BTreeMap::new();
        let mut out = Vec::new();
        for r in records.iter().filter(|r| r.pipeline == pipeline && r.series.iter().any(|s| s == series)) {
            let w = Window { from: r.from, to: r.to, verdict: r.verdict };
            if r.incident.is_empty() {
                out.push(w);
            } else {
                by_incident.insert(&r.incident, w);
            }
        }
        out.extend(by_incident.into_values());
        out.sort_by_key(|w| (w.from, w.to));
        out
    }

    /// The newest verdict on each incident, by incident id.
    pub fn latest_by_incident(&self) -> BTreeMap<String, FeedbackRecord> {
        let records = self.records.read().unwrap_or_else(|e| e.into_inner());
        let mut out = BTreeMap::new();
        for r in records.iter().filter(|r| !r.incident.is_empty()) {
            out.insert(r.incident.clone(), r.clone());
        }
        out
    }
}

/// How the samples of a series relate to the verdicts: per sample, whether it lies in a
/// window confirmed as an anomaly (`exclude`) or in one marked false positive (`normal`).
/// Only windows that ended by `until` count (what was known when training starts).
pub fn mask(ts: &[Timestamp], windows: &[Window], until: Timestamp) -> (Vec<bool>, Vec<bool>) {
    let mut exclude = vec![false; ts.len()];
    let mut normal = vec![false; ts.len()];
    for w in windows.iter().filter(|w| w.to <= until) {
        let start = ts.partition_point(|&t| t < w.from);
        let end = ts.partition_point(|&t| t <= w.to);
        for i in start..end {
            match w.verdict {
                v if v.is_anomaly() => exclude[i] = true,
                Verdict::FalsePositive => normal[i] = true,
                _ => {}
            }
        }
    }
    // A sample in both kinds of window is left out: an anomaly must not be learned.
    for i in 0..ts.len() {
        if exclude[i] {
            normal[i] = false;
        }
    }
    (exclude, normal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(incident: &str, series: &str, from: i64, to: i64, v: Verdict) -> FeedbackRecord {
        FeedbackRecord {
            id: 0,
            incident: incident.into(),
            pipeline: "p".into(),
            stage: "p.r".into(),
            series: vec![series.into()],
            from,
            to,
            verdict: v,
            note: None,
            by: "t".into(),
            at: to,
        }
    }

    #[test]
    fn the_last_verdict_on_an_incident_wins() {
        let b = FeedbackBook::default();
        b.add(rec("a", "s", 10, 20, Verdict::TruePositive));
        b.add(rec("a", "s", 10, 20, Verdict::FalsePositive));
        b.add(rec("", "s", 40, 50, Verdict::Missed));
        b.add(rec("b", "other", 0, 5, Verdict::FalsePositive));
        let w = b.windows("p", "s");
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].verdict, Verdict::FalsePositive);
        assert_eq!(w[1].verdict, Verdict::Missed);
        assert_eq!(b.generation(), 4);
    }

    #[test]
    fn masks_cover_windows_that_ended() {
        let ts: Vec<i64> = (0..10).map(|i| i * 10).collect();
        let windows = [
            Window { from: 10, to: 30, verdict: Verdict::FalsePositive },
            Window { from: 30, to: 40, verdict: Verdict::TruePositive },
            Window { from: 80, to: 200, verdict: Verdict::FalsePositive },
        ];
        let (ex, normal) = mask(&ts, &windows, 100);
        assert_eq!(ex, [false, false, false, true, true, false, false, false, false, false]);
        assert_eq!(normal, [false, true, true, false, false, false, false, false, false, false]);
    }

    #[test]
    fn floods_are_refused_per_caller() {
        let b = FeedbackBook::default();
        for i in 0..PER_MINUTE as i64 {
            assert!(b.admit("alice", i));
        }
        assert!(!b.admit("alice", 100));
        assert!(b.admit("bob", 100));
        assert!(b.admit("alice", 60_000));
    }

    #[test]
    fn verdicts_parse_with_a_helpful_error() {
        assert_eq!(Verdict::parse("missed"), Ok(Verdict::Missed));
        let e = Verdict::parse("wrong").unwrap_err();
        assert!(e.contains("true_positive, false_positive, duplicate, missed"), "{e}");
    }
}
