//! The recent scores of every (stage, series): what the web console's live charts and
//! `GET /api/v1/scores` show.
//!
//! A bounded ring per series ([`POINTS`] points, the newest kept), recorded where a tick
//! sets the score gauges, for at most [`MAX_SERIES`] series over all stages (a series past
//! the cap is not recorded until others go; the gauges have their own cap). A point takes
//! 56 bytes, so the rings take at most `POINTS × MAX_SERIES × 56` bytes (34 MB), allocated
//! as series appear. Series a stage forgets, and stages a reload removes, are dropped.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use crate::data::{ScoresData, Timestamp};

/// Points kept per series.
pub const POINTS: usize = 600;

/// Series kept over all stages.
pub const MAX_SERIES: usize = 1_000;

/// One scored sample. `expected`, `lower` and `upper` are `None` where the detector
/// gives none (NaN in [`crate::data::ScoreColumn`]).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct ScorePoint {
    pub ts: Timestamp,
    pub value: f64,
    pub score: f64,
    pub expected: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub anomalous: bool,
}

/// A series with recent points: its stage, its name (Prometheus notation) and its
/// newest point.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SeriesSummary {
    pub pipeline: String,
    pub stage: String,
    pub series: String,
    pub last: ScorePoint,
    pub points: usize,
}

/// A point as kept: NaN where the detector gives no expected value or band.
#[derive(Clone, Copy)]
struct Kept {
    ts: Timestamp,
    value: f64,
    score: f64,
    expected: f64,
    lower: f64,
    upper: f64,
    anomalous: bool,
}

impl Kept {
    fn point(&self) -> ScorePoint {
        ScorePoint {
            ts: self.ts,
            value: self.value,
            score: self.score,
            expected: finite(self.expected),
            lower: finite(self.lower),
            upper: finite(self.upper),
            anomalous: self.anomalous,
        }
    }
}

struct Ring {
    pipeline: String,
    points: VecDeque<Kept>,
}

/// The rings, by (stage key, series).
#[derive(Default)]
pub struct RecentScores {
    rings: Mutex<BTreeMap<(String, String), Ring>>,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

impl RecentScores {
    /// Records a stage's output of one tick.
    pub fn record(&self, pipeline: &str, stage: &str, scores: &ScoresData) {
        let Ok(mut rings) = self.rings.lock() else { return };
        for col in &scores.series {
            let key = (stage.to_owned(), col.id.to_string());
            if !rings.contains_key(&key) && rings.len() >= MAX_SERIES {
                continue;
            }
            let ring = rings.entry(key).or_insert_with(|| Ring { pipeline: pipeline.to_owned(), points: VecDeque::with_capacity(POINTS) });
            // Only the newest POINTS samples of a large batch (a replay, a backfill).
            let from = col.len().saturating_sub(POINTS);
            for i in from..col.len() {
                if ring.points.len() == POINTS {
                    ring.points.pop_front();
                }
                let at = |v: &[f64]| v.get(i).copied().unwrap_or(f64::NAN);
                ring.points.push_back(Kept {
                    ts: col.ts[i],
                    value: col.value[i],
                    score: col.score[i],
                    expected: at(&col.expected),
                    lower: at(&col.lower),
                    upper: at(&col.upper),
                    anomalous: col.anomalous.get(i).copied().unwrap_or(false),
                });
            }
        }
    }

    /// Series with points (of one stage, or of all), by stage then series.
    pub fn series(&self, stage: Option<&str>) -> Vec<SeriesSummary> {
        let Ok(rings) = self.rings.lock() else { return Vec::new() };
        rings
            .iter()
            .filter(|((s, _), _)| stage.is_none_or(|want| want == s))
            .filter_map(|((s, series), r)| {
                Some(SeriesSummary {
                    pipeline: r.pipeline.clone(),
                    stage: s.clone(),
                    series: series.clone(),
                    last: r.points.back()?.point(),
                    points: r.points.len(),
                })
            })
            .collect()
    }

    /// The points of one series, oldest first, newer than `since` when given.
    pub fn points(&self, stage: &str, series: &str, since: Option<Timestamp>) -> Option<Vec<ScorePoint>> {
        let rings = self.rings.lock().ok()?;
        let ring = rings.get(&(stage.to_owned(), series.to_owned()))?;
        Some(ring.points.iter().filter(|p| since.is_none_or(|t| p.ts > t)).map(Kept::point).collect())
    }

    /// Drops the series for which `drop(stage, series)` holds.
    pub fn forget(&self, drop: impl Fn(&str, &str) -> bool) {
        if let Ok(mut rings) = self.rings.lock() {
            rings.retain(|(stage, series), _| !drop(stage, series));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{ScoreColumn, SeriesId};

    fn scores(name: &str, n: usize, from: i64) -> ScoresData {
        let mut c = ScoreColumn::new(SeriesId::named(name));
        for i in 0..n {
            let t = from + i as i64;
            c.push(t, t as f64, 0.1, if i % 2 == 0 { f64::NAN } else { 1.0 }, 0.0, 2.0, i + 1 == n);
        }
        ScoresData { series: vec![c] }
    }

    #[test]
    fn a_point_is_small() {
        assert_eq!(std::mem::size_of::<Kept>(), 56, "the memory bound in the module header");
    }

    #[test]
    fn rings_keep_the_newest_points_and_forget() {
        let r = RecentScores::default();
        r.record("p", "p.s", &scores("a", 500, 0));
        r.record("p", "p.s", &scores("a", 500, 500));
        let pts = r.points("p.s", "a", None).unwrap();
        assert_eq!(pts.len(), POINTS);
        assert_eq!((pts[0].ts, pts[POINTS - 1].ts), (400, 999));
        assert!(pts[POINTS - 1].anomalous);
        assert_eq!(pts[0].expected, None, "NaN is no expected value");
        assert_eq!(r.points("p.s", "a", Some(990)).unwrap().len(), 9);
        assert_eq!(r.series(Some("p.s"))[0].last.ts, 999);
        assert!(r.series(Some("p.other")).is_empty());
        r.forget(|stage, _| stage == "p.s");
        assert!(r.points("p.s", "a", None).is_none());
    }
}
