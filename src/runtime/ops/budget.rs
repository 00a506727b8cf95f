//! `budget(scores, alarms, per, horizon)`: a detector's threshold set from its own score
//! history so that each series raises about `alarms` alarms per `per`.
//!
//! Per series, the scores of the last `horizon` (at most [`MAX_POINTS`]) are kept. The
//! threshold is the lowest score level at which those scores would have started no more
//! than `alarms × span / per` alarms, where an alarm is the start of a run of scores at or
//! above the level and `span` is the time the history covers — walking down from the
//! highest score, and never so low that the series is anomalous more than [`MAX_ON`] of the
//! time. It is chosen again every
//! [`REFRESH`] points and whenever a verdict comes in. Scores inside windows marked
//! `false_positive` do not count toward the budget, and the threshold stays above the
//! highest of them while they are in the history: a pattern on-call called harmless does
//! not page again. Until the history covers one `per`, nothing is anomalous.
//!
//! The output keeps the input's value, expected value and band; the score is rescaled
//! piecewise-linearly so that the threshold maps to 0.5.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::data::{Data, ScoreColumn, ScoresData, SeriesId, Timestamp};
use crate::feedback::{FeedbackBook, Verdict};
use crate::runtime::{OpCtx, OpError, Operator};

/// Scores kept per series at most (memory: 16 bytes each).
pub const MAX_POINTS: usize = 20_000;
/// Points between two choices of the threshold.
pub const REFRESH: usize = 64;
/// The lowest threshold: a score of 0 is never an alarm.
const FLOOR: f64 = 1e-9;
/// The largest share of the time a threshold may hold a series anomalous (a reason: above
/// it the "alarms" are one long run that says nothing; 5% is 72 minutes a day).
pub const MAX_ON: f64 = 0.05;

#[derive(Default)]
struct State {
    history: VecDeque<(Timestamp, f64)>,
    threshold: Option<f64>,
    since: usize,
}

pub struct Budget {
    alarms: f64,
    per_ms: i64,
    horizon_ms: i64,
    feedback: Option<(String, Arc<FeedbackBook>)>,
    generation: u64,
    state: HashMap<SeriesId, State>,
}

impl Budget {
    pub fn new(alarms: f64, per_ms: i64, horizon_ms: i64, feedback: Option<(String, Arc<FeedbackBook>)>) -> Budget {
        Budget { alarms: alarms.max(0.0), per_ms, horizon_ms: horizon_ms.max(per_ms), feedback, generation: 0, state: HashMap::new() }
    }
}

/// Alarms the scores would start at `level`, skipping points in `quiet` windows.
#[cfg(test)]
fn alarms_at(history: &VecDeque<(Timestamp, f64)>, quiet: &[(Timestamp, Timestamp)], level: f64) -> usize {
    let mut n = 0;
    let mut above = false;
    for &(t, s) in history {
        if quiet.iter().any(|&(a, b)| t >= a && t <= b) {
            continue;
        }
        let now = s >= level;
        if now && !above {
            n += 1;
        }
        above = now;
    }
    n
}

/// The level from the history's own scores: walking down from the highest score, the
/// lowest level at which the alarms still fit the budget and the series is anomalous at
/// most [`MAX_ON`] of the time (further down, runs merge into one long alarm, which
/// would fit any budget and mean nothing), kept above the false-positive windows' scores.
/// None until the history covers `per`.
fn choose(history: &VecDeque<(Timestamp, f64)>, quiet: &[(Timestamp, Timestamp)], alarms: f64, per_ms: i64) -> Option<f64> {
    let (first, last) = (history.front()?.0, history.back()?.0);
    let span = last - first;
    if span < per_ms {
        return None;
    }
    let allowed = (alarms * span as f64 / per_ms as f64).floor() as usize;
    let seq: Vec<f64> = history.iter().filter(|(t, _)| !quiet.iter().any(|&(a, b)| *t >= a && *t <= b)).map(|&(_, s)| s).collect();
    let n = seq.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| seq[b].total_cmp(&seq[a]));
    let (mut on, mut runs, mut count) = (vec![false; n], 0usize, 0usize);
    let mut level = None;
    let mut k = 0;
    while k < n {
        let s = seq[order[k]];
        if s <= 0.0 {
            break;
        }
        let mut j = k;
        while j < n && seq[order[j]] == s {
            let i = order[j];
            on[i] = true;
            count += 1;
            let (left, right) = (i > 0 && on[i - 1], i + 1 < n && on[i + 1]);
            // A point joins, extends or bridges runs.
            match (left, right) {
                (false, false) => runs += 1,
                (true, true) => runs -= 1,
                _ => {}
            }
            j += 1;
        }
        if runs > allowed || count as f64 > MAX_ON * n as f64 {
            break;
        }
        level = Some(s);
        k = j;
    }
    // Nothing fits: above every score.
    let top = seq.iter().copied().fold(0.0, f64::max);
    let mut level = level.unwrap_or(top + FLOOR).max(FLOOR);
    // Never at or below what on-call called harmless.
    let harmless =
        history.iter().filter(|(t, _)| quiet.iter().any(|&(a, b)| *t >= a && *t <= b)).map(|&(_, s)| s).fold(f64::NEG_INFINITY, f64::max);
    if harmless.is_finite() && level <= harmless {
        level = harmless + FLOOR;
    }
    Some(level)
}

impl Operator for Budget {
    fn forget(&mut self, ids: &[SeriesId]) {
        for id in ids {
            self.state.remove(id);
        }
    }

    fn process(&mut self, inputs: &[Data], _ctx: &mut OpCtx) -> Result<Data, OpError> {
        let Some(Data::Scores(input)) = inputs.first() else { return Err(OpError::Invalid("budget takes Scores".into())) };
        let changed = match &self.feedback {
            Some((_, book)) if book.generation() != self.generation => {
                self.generation = book.generation();
                true
            }
            _ => false,
        };
        let mut out = Vec::with_capacity(input.series.len());
        for c in &input.series {
            let st = self.state.entry(c.id.clone()).or_default();
            let quiet: Vec<(Timestamp, Timestamp)> = match &self.feedback {
                Some((pipeline, book)) => book
                    .windows(pipeline, &c.id.to_string())
                    .into_iter()
                    .filter(|w| w.verdict == Verdict::FalsePositive)
                    .map(|w| (w.from, w.to))
                    .collect(),
                None => Vec::new(),
            };
            if changed {
                st.threshold = choose(&st.history, &quiet, self.alarms, self.per_ms);
            }
            let mut o = ScoreColumn::new(c.id.clone());
            for i in 0..c.len() {
                let (t, s) = (c.ts[i], c.score[i]);
                if s.is_finite() {
                    st.history.push_back((t, s));
                }
                while st.history.len() > MAX_POINTS || st.history.front().is_some_and(|&(f, _)| t - f > self.horizon_ms) {
                    st.history.pop_front();
                }
                st.since += 1;
                if st.since >= REFRESH || st.threshold.is_none() && st.since >= REFRESH / 4 {
                    st.since = 0;
                    st.threshold = choose(&st.history, &quiet, self.alarms, self.per_ms);
                }
                let (score, anomalous) = match st.threshold {
                    Some(level) if s >= level => (0.5 + 0.5 * (s - level) / (1.0 - level).max(FLOOR), true),
                    Some(level) => (0.5 * s / level, false),
                    None => (s, false),
                };
                o.push(t, c.value[i], score, c.expected[i], c.lower[i], c.upper[i], anomalous);
            }
            out.push(o);
        }
        Ok(Data::Scores(Arc::new(ScoresData { series: out })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(scores: &[f64], step: i64) -> VecDeque<(Timestamp, f64)> {
        scores.iter().enumerate().map(|(i, &s)| (i as i64 * step, s)).collect()
    }

    #[test]
    fn the_threshold_fits_the_budget() {
        // Ten days of hourly scores with one spike a day at rising heights.
        let mut scores = vec![0.1; 240];
        for d in 0..10 {
            scores[d * 24 + 5] = 0.5 + d as f64 * 0.04;
        }
        let h = history(&scores, 3_600_000);
        let level = choose(&h, &[], 0.5, 86_400_000).unwrap();
        let n = alarms_at(&h, &[], level);
        assert!((3..=4).contains(&n), "level {level} gives {n} alarms");
        // A budget of 2 a day lets every spike through, not the noise floor.
        let loose = choose(&h, &[], 2.0, 86_400_000).unwrap();
        assert_eq!(alarms_at(&h, &[], loose), 10, "{loose}");
        // Too little history: no threshold yet.
        assert_eq!(choose(&history(&scores[..10], 3_600_000), &[], 1.0, 86_400_000), None);
    }

    #[test]
    fn harmless_windows_lift_the_threshold() {
        let mut scores = vec![0.0; 100];
        scores[10] = 0.9;
        scores[50] = 0.95;
        let h = history(&scores, 3_600_000);
        assert!(choose(&h, &[], 10.0, 86_400_000).unwrap() <= 0.9);
        let quiet = [(10 * 3_600_000, 11 * 3_600_000)];
        let level = choose(&h, &quiet, 10.0, 86_400_000).unwrap();
        assert!(level > 0.9 && level <= 0.95, "{level}");
    }

    #[test]
    fn all_zero_scores_never_alarm() {
        let h = history(&[0.0; 100], 3_600_000);
        let level = choose(&h, &[], 5.0, 86_400_000).unwrap();
        assert!(level > 0.0);
        assert_eq!(alarms_at(&h, &[], level), 0);
    }
}
