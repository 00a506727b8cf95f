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
//! [`RecentLevel`] is the other calibration (`calibration: "likelihood"` of `score` and
//! `forecast`): the residual's *severity* relative to the series' recent range times its
//! *evidence* against the recent level of such severities (HTM's anomaly likelihood, as the
//! `novelty` detector calibrates its channels), so that a spike on a series whose range is
//! made of spikes, or a residual at the size the model has been making lately, scores low.
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
        push_window(&mut self.fifo, &mut self.sorted, self.capacity, e);
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

/// How a predict stage over a model turns its errors into scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Calibration {
    /// [`TailCalibrator`]: each error's tail probability against the version's errors.
    Tail,
    /// [`RecentLevel`]: severity against the series' recent range × evidence against the
    /// recent level of severities.
    Likelihood,
    /// The residuals `value − expected`, in the series' units, as a series scored by the
    /// `novelty` detector ([`crate::learn::novelty::NoveltyState`]): how new each residual
    /// is against the last 28 days of residuals, at this time of day and week, and in
    /// its short shape, each weighed by its likelihood — with the detector's event-level
    /// suppression.
    Novelty,
}

impl Calibration {
    /// The names [`Calibration::parse`] accepts, as the operators' `calibration` offers them.
    pub const NAMES: &'static [&'static str] = &["tail", "likelihood", "novelty"];

    /// The calibration named `tail` or `likelihood` (None otherwise).
    pub fn parse(name: &str) -> Option<Calibration> {
        match name {
            "tail" => Some(Calibration::Tail),
            "likelihood" => Some(Calibration::Likelihood),
            "novelty" => Some(Calibration::Novelty),
            _ => None,
        }
    }
}

/// Adds `v` to a sliding window kept twice — in arrival order (`fifo`) and sorted — and
/// forgets the oldest value beyond `capacity`; non-finite values are ignored.
fn push_window(fifo: &mut VecDeque<f64>, sorted: &mut Vec<f64>, capacity: usize, v: f64) {
    if !v.is_finite() {
        return;
    }
    if fifo.len() == capacity {
        if let Some(old) = fifo.pop_front() {
            let i = sorted.partition_point(|&x| x < old);
            if i < sorted.len() {
                sorted.remove(i);
            }
        }
    }
    fifo.push_back(v);
    let i = sorted.partition_point(|&x| x < v);
    sorted.insert(i, v);
}

/// The series' values of a sliding window, sorted: the recent range a residual is
/// measured against (the spread between the [`RANGE_TAIL`] and `1 − RANGE_TAIL` quantiles).
#[derive(Clone, Debug)]
pub struct SlidingRange {
    capacity: usize,
    fifo: VecDeque<f64>,
    sorted: Vec<f64>,
}

/// Values the range covers: 28 days at 5-minute data, as the `novelty` detector's
/// reference (so an hourly series keeps as many points).
pub const RANGE_POINTS: usize = 8_064;
/// The range's quantiles: the 0.1% and 99.9% (as the `novelty` detector's), so that a
/// handful of extremes does not set it.
pub const RANGE_TAIL: f64 = 0.001;

impl SlidingRange {
    pub fn new(capacity: usize) -> SlidingRange {
        let capacity = capacity.max(2);
        SlidingRange { capacity, fifo: VecDeque::new(), sorted: Vec::new() }
    }

    /// Adds a value (non-finite values are ignored), forgetting the oldest beyond capacity.
    pub fn push(&mut self, v: f64) {
        push_window(&mut self.fifo, &mut self.sorted, self.capacity, v);
    }

    /// The spread between the [`RANGE_TAIL`] and `1 − RANGE_TAIL` quantiles (0 while
    /// fewer than two values).
    pub fn spread(&self) -> f64 {
        let n = self.sorted.len();
        if n < 2 {
            return 0.0;
        }
        let q = |p: f64| self.sorted[((p * (n - 1) as f64).round() as usize).min(n - 1)];
        q(1.0 - RANGE_TAIL) - q(RANGE_TAIL)
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Bytes held (the two copies of the values).
    pub fn memory_bytes(&self) -> usize {
        (self.fifo.capacity() + self.sorted.capacity()) * std::mem::size_of::<f64>()
    }
}

/// Severity gain inside the log: `r = ln(1 + 100·u)` makes 1% of the range the knee
/// between noise and novelty (the `novelty` detector's constant).
const GAIN: f64 = 100.0;
/// Floor of the standard deviation of `r`: a model that was exact for days does not turn
/// a tiny wobble into a huge z (the `novelty` detector's constant).
const SD_FLOOR: f64 = 0.03;
/// Odds = severity × evidence^0.75 (the `novelty` detector's exponent).
const EVIDENCE_EXP: f64 = 0.75;

/// A model version's calibration relative to the recent level of its residuals: a
/// residual `d` (in the series' units) has severity `u = d / S`, `S` the series' recent
/// range ([`SlidingRange`]); `r = ln(1 + 100·u)`; the evidence is how far `r` is above the
/// mean of the last `capacity` values of `r`, in their standard deviations (`z`), as a
/// log-likelihood `e = −2·ln(2·Q(z))` (0 for `z ≤ 0`); the score is `odds / (1 + odds)`,
/// `odds = u·e^0.75` — the `novelty` detector's channel calibration. Starts, per version,
/// from the version's residuals on held-out data ([`Self::seeded`]).
#[derive(Clone, Debug)]
pub struct RecentLevel {
    hist: VecDeque<f64>,
    capacity: usize,
    sum: f64,
    sq: f64,
    /// Values of `r` needed before anything is scored.
    pub min_history: usize,
}

impl RecentLevel {
    pub fn new(capacity: usize) -> RecentLevel {
        let capacity = capacity.max(10);
        RecentLevel { hist: VecDeque::with_capacity(capacity), capacity, sum: 0.0, sq: 0.0, min_history: (capacity / 10).clamp(10, 100) }
    }

    /// A calibration that starts from a version's residuals on held-out data (series
    /// units, oldest first) against the range `spread`: it scores as soon as it holds as
    /// many values as the seed gave (at least 10, at most the usual minimum).
    pub fn seeded(capacity: usize, residuals: &[f64], spread: f64) -> RecentLevel {
        let mut c = RecentLevel::new(capacity);
        for &d in residuals {
            c.push(d, spread);
        }
        if !c.hist.is_empty() {
            c.min_history = c.min_history.min(c.hist.len().max(10));
        }
        c
    }

    pub fn len(&self) -> usize {
        self.hist.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// The severity of residual `d` against the range `spread` (0 for a non-positive
    /// spread: a constant series has no scale to measure a residual by).
    pub fn severity(d: f64, spread: f64) -> f64 {
        if spread > 0.0 && d.is_finite() {
            d.abs() / spread
        } else {
            0.0
        }
    }

    /// The score of residual `d` against the range `spread`, from the history before it
    /// (0 while the history is short).
    pub fn score(&self, d: f64, spread: f64) -> f64 {
        let n = self.hist.len();
        if n < self.min_history || d.is_nan() {
            return 0.0;
        }
        let u = Self::severity(d, spread);
        let r = (GAIN * u).ln_1p();
        let mu = self.sum / n as f64;
        let sd = ((self.sq / n as f64 - mu * mu).max(0.0)).sqrt().max(SD_FLOOR);
        let z = (r - mu) / sd;
        if z <= 0.0 {
            return 0.0;
        }
        let e = (-2.0 * (crate::learn::novelty::ln_q(z) + std::f64::consts::LN_2)).max(0.0);
        let odds = u * e.powf(EVIDENCE_EXP);
        odds / (1.0 + odds)
    }

    /// Adds residual `d` (after scoring it).
    pub fn push(&mut self, d: f64, spread: f64) {
        if !d.is_finite() {
            return;
        }
        let r = (GAIN * Self::severity(d, spread)).ln_1p();
        self.hist.push_back(r);
        self.sum += r;
        self.sq += r * r;
        if self.hist.len() > self.capacity {
            let o = self.hist.pop_front().unwrap_or(0.0);
            self.sum -= o;
            self.sq -= o * o;
        }
    }
}

/// Keeps a score only when it is higher than every score of the preceding `period`
/// (the scores before suppression); otherwise reports 0. A sustained anomaly therefore
/// yields one detection, and another only if it gets worse or after a quiet period.
#[derive(Clone, Debug)]
pub struct Suppressor {
    period: i64,
    /// A later report within the period needs this many times the odds `s / (1 − s)` of
    /// the last one reported (1: any higher score).
    odds_factor: f64,
    /// The last score reported and when.
    reported: Option<(Timestamp, f64)>,
    /// (timestamp, score) of the period, scores decreasing (a monotonic queue).
    recent: VecDeque<(Timestamp, f64)>,
}

impl Suppressor {
    pub fn new(period: i64) -> Suppressor {
        Suppressor { period, odds_factor: 1.0, recent: VecDeque::new(), reported: None }
    }

    /// A suppressor whose later reports within the period need `factor` times the odds of
    /// the last report (the `novelty` detector's event-level rule).
    pub fn with_odds_factor(period: i64, factor: f64) -> Suppressor {
        Suppressor { odds_factor: factor.max(1.0), ..Suppressor::new(period) }
    }

    /// The odds factor (1: none).
    pub fn odds_factor(&self) -> f64 {
        self.odds_factor
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
        let odds = |s: f64| s / (1.0 - s).max(1e-300);
        let last = match self.reported {
            Some((t, r)) if t > ts - self.period => r,
            _ => 0.0,
        };
        if score > max_before && (last == 0.0 || odds(score) >= self.odds_factor * odds(last)) {
            self.reported = Some((ts, score));
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
    fn the_sliding_range_ignores_a_few_extremes_and_forgets_old_values() {
        let mut r = SlidingRange::new(2000);
        assert_eq!(r.spread(), 0.0, "no range before two values");
        for i in 0..2000 {
            r.push((i % 100) as f64);
        }
        r.push(f64::NAN);
        assert_eq!(r.len(), 2000, "non-finite values are not kept");
        // One extreme in 2 000 values is beyond the 99.9% quantile.
        r.push(1e6);
        assert!((r.spread() - 99.0).abs() < 1e-9, "{}", r.spread());
        // 2 000 values later the window holds only the new level.
        for _ in 0..2000 {
            r.push(5.0);
        }
        assert_eq!(r.spread(), 0.0);
        assert!(r.memory_bytes() >= 2 * 2000 * 8);
    }

    /// Residuals around `level` with a little noise, against the range `spread`.
    fn level_with(level: f64, spread: f64) -> RecentLevel {
        let mut c = RecentLevel::new(1000);
        for i in 0..1000 {
            c.push(level * (1.0 + 0.2 * ((i * 7919 % 100) as f64 / 100.0 - 0.5)), spread);
        }
        c
    }

    #[test]
    fn recent_level_scores_a_residual_against_the_recent_residuals() {
        let c = level_with(1.0, 100.0);
        assert_eq!(RecentLevel::new(1000).score(50.0, 100.0), 0.0, "nothing scored before the history fills");
        let (usual, big, huge) = (c.score(1.0, 100.0), c.score(10.0, 100.0), c.score(80.0, 100.0));
        assert!(usual < 0.5, "a residual at the recent level: {usual}");
        assert!(big > usual && huge > big && huge < 1.0, "{usual} {big} {huge}");
        // The same residual after a noisy spell (the recent level ten times higher) is no
        // news.
        let noisy = level_with(10.0, 100.0);
        assert!(noisy.score(10.0, 100.0) < 0.5 && noisy.score(10.0, 100.0) < big, "{}", noisy.score(10.0, 100.0));
    }

    #[test]
    fn with_severity_a_residual_counts_relative_to_the_range() {
        // The same residual and the same recent level, on a series whose range is ten
        // times wider (a heavy-tailed series whose spikes make its range): lower score.
        let narrow = level_with(1.0, 100.0).score(20.0, 100.0);
        let wide = level_with(1.0, 1000.0).score(20.0, 1000.0);
        assert!(narrow > 0.9 && wide < narrow, "{narrow} {wide}");
        // Scaling the series (residuals and range alike) changes nothing.
        let scaled = level_with(1000.0, 100_000.0).score(20_000.0, 100_000.0);
        assert!((scaled - narrow).abs() < 1e-9, "{scaled} {narrow}");
        // A constant series (no range) scores nothing rather than dividing by zero.
        assert_eq!(level_with(1.0, 0.0).score(5.0, 0.0), 0.0);
    }

    #[test]
    fn a_seeded_recent_level_scores_at_once() {
        let seed: Vec<f64> = (0..40).map(|i| 1.0 + (i % 5) as f64 * 0.1).collect();
        let c = RecentLevel::seeded(1000, &seed, 100.0);
        assert_eq!(c.len(), 40);
        assert!(c.score(1.1, 100.0) < 0.2, "{}", c.score(1.1, 100.0));
        assert!(c.score(30.0, 100.0) > 0.9, "{}", c.score(30.0, 100.0));
        assert_eq!(RecentLevel::seeded(1000, &[], 100.0).min_history, RecentLevel::new(1000).min_history);
        let mut c = c;
        c.push(f64::INFINITY, 100.0);
        assert_eq!(c.len(), 40, "non-finite residuals are not kept");
        assert_eq!(Calibration::parse("likelihood"), Some(Calibration::Likelihood));
        assert!(Calibration::NAMES.iter().all(|n| Calibration::parse(n).is_some()));
        assert_eq!(Calibration::parse("nope"), None);
    }

    #[test]
    fn suppression_keeps_only_new_maxima() {
        let mut s = Suppressor::new(10);
        let out: Vec<f64> = [(0, 0.9), (1, 0.5), (2, 0.95), (3, 0.9), (20, 0.5)].iter().map(|&(t, v)| s.apply(t, v)).collect();
        assert_eq!(out, vec![0.9, 0.0, 0.95, 0.0, 0.5]);
        // With an odds factor of 2, 0.94 (odds 15.7) is no news after 0.9 (odds 9) within
        // the period; 0.99 (odds 99) is.
        let mut s = Suppressor::with_odds_factor(10, 2.0);
        let out: Vec<f64> = [(0, 0.9), (2, 0.94), (3, 0.99), (20, 0.5)].iter().map(|&(t, v)| s.apply(t, v)).collect();
        assert_eq!(out, vec![0.9, 0.0, 0.99, 0.5]);
    }
}
