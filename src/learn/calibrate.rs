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

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The probability of an error at least `e`, or None while the history is short.
    pub fn tail(&self, e: f64) -> Option<f64> {
        let n = self.sorted.len();
        if n < self.min_history || e.is_nan() {
            return None;
        }
        if e == f64::INFINITY {
            return Some(f64::MIN_POSITIVE);
        }
        let at_least = n - self.sorted.partition_point(|&x| x < e);
        let empirical = (at_least as f64 + 1.0) / (n as f64 + 1.0);
        let q = (n * 9) / 10;
        let u = self.sorted[q.min(n - 1)];
        if e <= u {
            return Some(empirical);
        }
        // Exponential tail over the excesses above the 90th percentile.
        let excess: Vec<f64> = self.sorted[q..].iter().map(|x| x - u).collect();
        let beta = excess.iter().sum::<f64>() / excess.len().max(1) as f64;
        let p_u = (n - q) as f64 / (n as f64 + 1.0);
        let parametric = if beta > 0.0 { p_u * (-(e - u) / beta).exp() } else { 0.0 };
        Some(parametric.min(empirical).max(f64::MIN_POSITIVE))
    }

    /// The score of `e`: `1 - tail(e)`, 0 while the history is short.
    pub fn score(&self, e: f64) -> f64 {
        self.tail(e).map_or(0.0, |p| (1.0 - p).clamp(0.0, 1.0))
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
