//! Turning a model's raw error into a score in [0, 1] that one threshold can serve across
//! very different series, and suppressing repeated alerts.
//!
//! [`TailCalibrator`] keeps a rolling history of the model's own errors and scores a new
//! error by its tail probability against them: `score = 1 - p`, where `p` is the chance
//! of an error at least this large. The body of the distribution is empirical (a
//! conformal p-value, `(#{e_k >= e} + 1) / (n + 1)`); above the 90th percentile the tail is
//! an exponential fitted to the excesses over it (peaks over threshold), so that errors
//! beyond anything seen still get distinct, finite scores.
//!
//! Scores do not saturate: below a tail probability of [`FINE`] the score keeps growing
//! with `-ln p` toward 1 without reaching it, so the most extreme errors stay ordered and
//! a threshold can separate them.
//!
//! A calibration belongs to one model version: [`TailCalibrator::seeded`] starts one from
//! the version's own errors on data it did not train on.
//!
//! [`Suppressor`] keeps a score only when it exceeds every score of the preceding period.

use std::collections::VecDeque;

use crate::time::Timestamp;

/// A rolling, sorted history of errors.
#[derive(Clone, Debug)]
pub struct TailCalibrator {
    capacity: usize,
    /// Errors in arrival order (to evict the oldest).
    fifo: VecDeque<f64>,
    /// The same errors, sorted.
    sorted: Vec<f64>,
    /// Errors needed before anything is scored.
    pub min_history: usize,
}

impl TailCalibrator {
    pub fn new(capacity: usize) -> TailCalibrator {
        let capacity = capacity.max(10);
        TailCalibrator {
            capacity,
            fifo: VecDeque::with_capacity(capacity),
            sorted: Vec::with_capacity(capacity),
            min_history: (capacity / 10).clamp(10, 100),
        }
    }

    /// A calibration that starts from `seed` (a model version's errors on data it did not
    /// train on, oldest first): it scores as soon as it holds as many errors as the seed
    /// gave (at least 10, at most the usual minimum). An empty seed is [`Self::new`].
    pub fn seeded(capacity: usize, seed: &[f64]) -> TailCalibrator {
        let mut c = TailCalibrator::new(capacity);
        for &e in seed {
            c.push(e);
        }
        if !c.is_empty() {
            c.min_history = c.min_history.min(c.len().max(10));
        }
        c
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The probability of an error at least `e`, or None while the history is short.
    pub fn tail(&self, e: f64) -> Option<f64> {
        self.log_tail(e).map(|l| l.exp().max(f64::MIN_POSITIVE))
    }

    /// The natural logarithm of [`Self::tail`], finite for every finite error (the tail
    /// itself underflows for errors far beyond the history).
    pub fn log_tail(&self, e: f64) -> Option<f64> {
        let n = self.sorted.len();
        if n < self.min_history || e.is_nan() {
            return None;
        }
        if e == f64::INFINITY {
            return Some(f64::NEG_INFINITY);
        }
        let at_least = n - self.sorted.partition_point(|&x| x < e);
        let empirical = ((at_least as f64 + 1.0) / (n as f64 + 1.0)).ln();
        let q = (n * 9) / 10;
        let u = self.sorted[q.min(n - 1)];
        if e <= u {
            return Some(empirical);
        }
        // Exponential tail over the excesses above the 90th percentile.
        let excess: Vec<f64> = self.sorted[q..].iter().map(|x| x - u).collect();
        let beta = excess.iter().sum::<f64>() / excess.len().max(1) as f64;
        let p_u = (n - q) as f64 / (n as f64 + 1.0);
        let parametric = if beta > 0.0 { p_u.ln() - (e - u) / beta } else { f64::NEG_INFINITY };
        Some(parametric.min(empirical))
    }

    /// The score of `e`: `1 - tail(e)` down to a tail of [`FINE`], beyond it growing with
    /// `-ln tail(e)` toward 1 ([`score_of_log_tail`]); 0 while the history is short.
    pub fn score(&self, e: f64) -> f64 {
        self.log_tail(e).map_or(0.0, score_of_log_tail)
    }

    /// The error below which `q` of the history lies (None while empty).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.sorted.len();
        (n > 0).then(|| self.sorted[((q.clamp(0.0, 1.0) * (n - 1) as f64).round() as usize).min(n - 1)])
    }

    /// Adds an error to the history (after scoring it).
    pub fn push(&mut self, e: f64) {
        if !e.is_finite() {
            return;
        }
        if self.fifo.len() == self.capacity {
            if let Some(old) = self.fifo.pop_front() {
                let i = self.sorted.partition_point(|&x| x < old);
                if i < self.sorted.len() {
                    self.sorted.remove(i);
                }
            }
        }
        self.fifo.push_back(e);
        let i = self.sorted.partition_point(|&x| x < e);
        self.sorted.insert(i, e);
    }
}

/// The tail probability below which scores are compressed rather than `1 - p`: `1 - p`
/// would round to exactly 1.0 for every error beyond about 16 tail "decades" (and in
/// practice the exponential tail gets there within a few spreads), tying the most
/// anomalous points with merely very anomalous ones.
pub const FINE: f64 = 1e-6;

/// The score of a tail probability given as its logarithm: `1 - p` for `p ≥ FINE`, else
/// `1 - FINE / (1 + ln(FINE / p))` — continuous, increasing, below 1 for every finite
/// error (distinct in f64 while `ln(FINE / p)` is below about 10⁹).
pub fn score_of_log_tail(log_p: f64) -> f64 {
    let fine = FINE.ln();
    if log_p >= fine {
        (1.0 - log_p.exp()).clamp(0.0, 1.0)
    } else {
        1.0 - FINE / (1.0 + (fine - log_p))
    }
}

/// Keeps a score only when it is higher than every score of the preceding `period`
/// (the scores before suppression); otherwise reports 0. A sustained anomaly therefore
/// yields one detection, and another only if it gets worse or after a quiet period.
#[derive(Clone, Debug)]
pub struct Suppressor {
    period: i64,
    /// (timestamp, score) of the period, scores decreasing (a monotonic queue).
    recent: VecDeque<(Timestamp, f64)>,
}

impl Suppressor {
    pub fn new(period: i64) -> Suppressor {
        Suppressor { period, recent: VecDeque::new() }
    }

    /// The suppression period in milliseconds (0: off).
    pub fn period(&self) -> i64 {
        self.period
    }

    /// The score to report for `score` at `ts`.
    pub fn apply(&mut self, ts: Timestamp, score: f64) -> f64 {
        if self.period <= 0 {
            return score;
        }
        while self.recent.front().is_some_and(|&(t, _)| t <= ts - self.period) {
            self.recent.pop_front();
        }
        let max_before = self.recent.front().map_or(0.0, |&(_, s)| s);
        while self.recent.back().is_some_and(|&(_, s)| s <= score) {
            self.recent.pop_back();
        }
        self.recent.push_back((ts, score));
        if score > max_before {
            score
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_probability_orders_errors_and_is_bounded() {
        let mut c = TailCalibrator::new(1000);
        assert_eq!(c.score(5.0), 0.0, "nothing scored before the history fills");
        for i in 0..1000 {
            c.push(((i * 7919) % 1000) as f64 / 1000.0);
        }
        let (a, b, d) = (c.score(0.5), c.score(0.99), c.score(1.05));
        assert!((a - 0.5).abs() < 0.01, "{a}");
        assert!(b > a && d > b && d < 1.0, "{a} {b} {d}");
        assert!(c.score(1.2) > d, "the exponential tail keeps ordering beyond the history");
        assert!(c.score(1e6) <= 1.0);
        assert!(c.score(-1.0) <= 0.001);
        assert_eq!(c.len(), 1000);
        c.push(f64::NAN);
        assert_eq!(c.len(), 1000, "non-finite errors are not kept");
    }

    #[test]
    fn extreme_errors_stay_ordered_below_one() {
        let mut c = TailCalibrator::new(1000);
        for i in 0..1000 {
            c.push(((i * 7919) % 1000) as f64 / 1000.0);
        }
        // With 1 − p these all round to exactly 1.0 (the tail is below 1e-16 from about
        // 4 tail spreads on); they must stay distinct, increasing and below 1.
        let scores: Vec<f64> = [1.5, 2.0, 5.0, 20.0, 100.0, 1e4].iter().map(|&e| c.score(e)).collect();
        assert!(scores.windows(2).all(|w| w[1] > w[0]), "{scores:?}");
        assert!(scores.iter().all(|&s| s < 1.0), "{scores:?}");
        assert!((1.0 - c.tail(20.0).unwrap()) == 1.0, "the old score saturated here");
        // Continuous at FINE: the two forms meet.
        let below = score_of_log_tail(FINE.ln() - 1e-9);
        let above = score_of_log_tail(FINE.ln() + 1e-9);
        assert!((below - above).abs() < 1e-12 && (above - (1.0 - FINE)).abs() < 1e-12);
    }

    #[test]
    fn a_seeded_calibration_scores_at_once_from_its_seed_only() {
        // A version whose held-out errors are around 1 ...
        let seed: Vec<f64> = (0..40).map(|i| 1.0 + (i % 5) as f64 * 0.1).collect();
        let c = TailCalibrator::seeded(1000, &seed);
        assert_eq!(c.len(), 40);
        assert!(c.score(1.2) > 0.3 && c.score(1.2) < 0.8, "{}", c.score(1.2));
        assert!(c.score(3.0) > 0.99, "{}", c.score(3.0));
        // ... and an empty seed waits for the usual history.
        assert_eq!(TailCalibrator::seeded(1000, &[]).min_history, TailCalibrator::new(1000).min_history);
    }

    #[test]
    fn constant_errors_do_not_divide_by_zero() {
        let mut c = TailCalibrator::new(100);
        for _ in 0..100 {
            c.push(0.0);
        }
        assert!(c.score(0.0) < 0.01);
        assert!(c.score(1.0) > 0.98);
    }

    #[test]
    fn suppression_keeps_only_new_maxima() {
        let mut s = Suppressor::new(10);
        let out: Vec<f64> = [(0, 0.9), (1, 0.5), (2, 0.95), (3, 0.9), (20, 0.5)].iter().map(|&(t, v)| s.apply(t, v)).collect();
        assert_eq!(out, vec![0.9, 0.0, 0.95, 0.0, 0.5]);
    }
}
