//! The novelty detector behind `stdlib/detect.vigil`'s `nab` stage (the `novelty`
//! operator): how new is this value, and this short shape, compared with everything the
//! series has done before — scaled by the series' own robust range and calibrated against
//! the detector's own history, so that one set of parameters serves very different series.
//!
//! Per point `i`, from `x[0..=i]` only (`P` = samples per day, inferred from the median
//! step of the first 50 timestamps; `m = max(4, round(P/48))`, a half-hour shape at
//! 5-minute data):
//! - value novelty `dv = max(0, min_{j<i} |x_i − x_j| − q)`, where `q` is the smallest
//!   non-zero step seen (the data's quantum: integer counts are not novel by one unit);
//! - shape novelty `ds` = the RMS distance of the last `m` values to the nearest earlier,
//!   non-overlapping window of `m` values;
//! - severity `u = d / S`, with `S` the spread between the 0.1% and 99.9% quantiles of the
//!   past values (one early spike does not shrink everything after it);
//! - surprise `zc`: `r = ln(1 + 100·u)` z-scored against its own past over 2, 4, 8 and 16
//!   days (standard deviation floored at 0.03), averaged, clipped at 0;
//! - the shape channel's severity is taken above its own 99th percentile of the last 16
//!   days (its noise floor);
//! - `z = max(u_v·zc_v^1.5, u_s'·zc_s^1.5)`, score `z / (1 + z)`, 0 for the first
//!   `max(50, P)` points;
//! - suppression: a score is kept only when it exceeds every score of the preceding
//!   `suppress` period (half a day by default), so a lasting anomaly is one detection.
//!
//! Memory per series is bounded by `memory` samples (the oldest are forgotten); time per
//! point grows with it (the shape search is linear in the history).

use std::collections::VecDeque;

use super::calibrate::TailCalibrator;
use crate::data::Timestamp;

/// Points used to infer the sampling step; nothing is scored before them.
pub const WARM: usize = 50;
const GAIN: f64 = 100.0;
const SD_FLOOR: f64 = 0.03;
const EXPONENT: f64 = 1.5;
const SCALES_DAYS: [f64; 4] = [2.0, 4.0, 8.0, 16.0];
const TAIL: f64 = 0.001;
const SHAPE_FLOOR_Q: f64 = 0.99;
const SHAPE_FLOOR_DAYS: f64 = 16.0;

/// A surprise channel: running sums of `r` over each scale.
struct Channel {
    r: VecDeque<f64>,
    sums: [(f64, f64); 4],
}

impl Channel {
    fn new() -> Channel {
        Channel { r: VecDeque::new(), sums: [(0.0, 0.0); 4] }
    }

    /// The surprise of `r` against the history (before adding it), then adds it.
    fn surprise_then_push(&mut self, r: f64, windows: &[usize; 4], min_n: usize) -> f64 {
        let i = self.r.len();
        let mut total = 0.0;
        for (k, &w) in windows.iter().enumerate() {
            let n = i.min(w);
            if n >= min_n && n > 0 {
                let (s, sq) = self.sums[k];
                let mu = s / n as f64;
                let sd = ((sq / n as f64 - mu * mu).max(0.0)).sqrt().max(SD_FLOOR);
                total += (r - mu) / sd;
            }
        }
        // Add r; drop what falls out of each window.
        self.r.push_back(r);
        let len = self.r.len();
        for (k, &w) in windows.iter().enumerate() {
            self.sums[k].0 += r;
            self.sums[k].1 += r * r;
            if len > w {
                let old = self.r[len - 1 - w];
                self.sums[k].0 -= old;
                self.sums[k].1 -= old * old;
            }
        }
        let keep = windows[3] + 1;
        while self.r.len() > keep {
            self.r.pop_front();
        }
        (total / windows.len() as f64).max(0.0)
    }
}

/// The detector's state for one series.
pub struct NoveltyState {
    memory: usize,
    suppress_ms: i64,
    pending: Vec<(Timestamp, f64)>,
    /// Samples per day, once inferred.
    per_day: usize,
    m: usize,
    windows: [usize; 4],
    x: VecDeque<f64>,
    sorted: Vec<f64>,
    quantum: f64,
    i: usize,
    value: Channel,
    shape: Channel,
    shape_floor: TailCalibrator,
    /// Scores of the suppression period, as a monotonic queue of (index, score).
    recent: VecDeque<(usize, f64)>,
    suppress_n: usize,
}

impl NoveltyState {
    /// `memory`: samples kept per series; `suppress_ms`: the quiet period after a
    /// detection.
    pub fn new(memory: usize, suppress_ms: i64) -> NoveltyState {
        NoveltyState {
            memory: memory.max(WARM * 2),
            suppress_ms: suppress_ms.max(0),
            pending: Vec::with_capacity(WARM),
            per_day: 0,
            m: 4,
            windows: [0; 4],
            x: VecDeque::new(),
            sorted: Vec::new(),
            quantum: f64::INFINITY,
            i: 0,
            value: Channel::new(),
            shape: Channel::new(),
            shape_floor: TailCalibrator::new(10),
            recent: VecDeque::new(),
            suppress_n: 0,
        }
    }

    /// Samples per day, once the first 50 points have set it.
    pub fn samples_per_day(&self) -> Option<usize> {
        (self.per_day > 0).then_some(self.per_day)
    }

    /// Scores the next point (after suppression). Points must come in time order.
    pub fn push(&mut self, ts: Timestamp, x: f64) -> f64 {
        if self.per_day == 0 {
            self.pending.push((ts, x));
            if self.pending.len() < WARM {
                return 0.0;
            }
            self.start();
            let pending = std::mem::take(&mut self.pending);
            let mut last = 0.0;
            for (_, v) in pending {
                last = self.step(v);
            }
            return last;
        }
        self.step(x)
    }

    /// Infers the step from the pending points and sizes everything by it.
    fn start(&mut self) {
        let mut diffs: Vec<i64> = self.pending.windows(2).map(|w| w[1].0 - w[0].0).filter(|&d| d > 0).collect();
        diffs.sort_unstable();
        let step_s = if diffs.is_empty() {
            300.0
        } else {
            let n = diffs.len();
            let mid = if n % 2 == 1 { diffs[n / 2] as f64 } else { (diffs[n / 2 - 1] + diffs[n / 2]) as f64 / 2.0 };
            mid / 1000.0
        };
        let p = ((86_400.0 / step_s).round_ties_even() as usize).max(8);
        self.per_day = p;
        self.m = ((p as f64 / 48.0).round_ties_even() as usize).max(4);
        for (k, d) in SCALES_DAYS.iter().enumerate() {
            self.windows[k] = (d * p as f64) as usize;
        }
        self.shape_floor = TailCalibrator::new((SHAPE_FLOOR_DAYS * p as f64) as usize);
        self.shape_floor.min_history = 1;
        self.suppress_n = ((self.suppress_ms as f64 / 1000.0) / step_s) as usize;
    }

    fn quantile(&self, q: f64) -> f64 {
        let n = self.sorted.len();
        self.sorted[((q * (n - 1) as f64 + 0.5) as usize).min(n - 1)]
    }

    /// The nearest earlier non-overlapping window's RMS distance to the newest `m` values
    /// (with `x` not yet holding the newest value `v`).
    fn shape_distance(&self, v: f64) -> f64 {
        let m = self.m;
        let n = self.x.len() + 1; // including v
        if n < 2 * m {
            return 0.0;
        }
        let (a, b) = self.x.as_slices();
        let at = |k: usize| {
            if k == n - 1 {
                v
            } else if k < a.len() {
                a[k]
            } else {
                b[k - a.len()]
            }
        };
        let cur: Vec<f64> = (0..m).map(|t| at(n - 1 - t)).collect();
        let mut best = f64::INFINITY;
        // Window ends k from m-1 to n-1-m.
        for k in (m - 1)..=(n - 1 - m) {
            let mut acc = 0.0;
            for (t, c) in cur.iter().enumerate() {
                let d = c - at(k - t);
                acc += d * d;
                if acc >= best {
                    break;
                }
            }
            if acc < best {
                best = acc;
            }
        }
        (best / m as f64).sqrt()
    }

    fn step(&mut self, v: f64) -> f64 {
        let i = self.i;
        let p = self.per_day;
        // Robust spread of the past, value novelty and quantum.
        let spread = if self.sorted.len() >= 2 { self.quantile(1.0 - TAIL) - self.quantile(TAIL) } else { 0.0 };
        if let Some(&last) = self.x.back() {
            let d = (v - last).abs();
            if d > 0.0 {
                self.quantum = self.quantum.min(d);
            }
        }
        let q = if self.quantum.is_finite() { self.quantum } else { 0.0 };
        let dv = if self.sorted.is_empty() {
            0.0
        } else {
            let k = self.sorted.partition_point(|&s| s < v);
            let mut best = f64::INFINITY;
            if k < self.sorted.len() {
                best = self.sorted[k] - v;
            }
            if k > 0 {
                best = best.min(v - self.sorted[k - 1]);
            }
            (best - q).max(0.0)
        };
        let ds = if i >= WARM { self.shape_distance(v) } else { 0.0 };
        let sev = |d: f64| if i < WARM || spread <= 0.0 { 0.0 } else { d / spread };
        let (uv, us) = (sev(dv), sev(ds));
        let zv = self.value.surprise_then_push((GAIN * uv).ln_1p(), &self.windows, p);
        let zs = self.shape.surprise_then_push((GAIN * us).ln_1p(), &self.windows, p);
        let floor = self.shape_floor.quantile(SHAPE_FLOOR_Q).unwrap_or(0.0);
        self.shape_floor.push(us);
        let us_excess = (us - floor).max(0.0);
        let z = (uv * zv.powf(EXPONENT)).max(us_excess * zs.powf(EXPONENT)).max(0.0);
        let s = if i < WARM.max(p) { 0.0 } else { z / (1.0 + z) };
        // Remember v.
        self.x.push_back(v);
        let k = self.sorted.partition_point(|&s| s < v);
        self.sorted.insert(k, v);
        if self.x.len() > self.memory {
            if let Some(old) = self.x.pop_front() {
                let k = self.sorted.partition_point(|&s| s < old);
                if k < self.sorted.len() {
                    self.sorted.remove(k);
                }
            }
        }
        self.i += 1;
        // Suppression over the previous `suppress_n` scores.
        if self.suppress_n == 0 {
            return s;
        }
        while self.recent.front().is_some_and(|&(j, _)| j + self.suppress_n < i) {
            self.recent.pop_front();
        }
        let max_before = self.recent.front().map_or(0.0, |&(_, s)| s);
        while self.recent.back().is_some_and(|&(_, r)| r <= s) {
            self.recent.pop_back();
        }
        self.recent.push_back((i, s));
        if s > max_before {
            s
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(n: usize, f: impl Fn(usize) -> f64) -> Vec<(Timestamp, f64)> {
        (0..n).map(|i| (i as i64 * 300_000, f(i))).collect()
    }

    #[test]
    fn flags_a_new_level_once_and_not_the_daily_rhythm() {
        // Five days of a daily sine at 5-minute steps, then a jump to a level never seen.
        let day = 288;
        let data = series(day * 8, |i| {
            let base = 50.0 + 10.0 * (i as f64 * std::f64::consts::TAU / day as f64).sin() + ((i * 7919) % 13) as f64 * 0.1;
            if i >= day * 6 && i < day * 6 + 30 {
                base + 60.0
            } else {
                base
            }
        });
        let mut d = NoveltyState::new(25_000, 12 * 3_600_000);
        let scores: Vec<f64> = data.iter().map(|&(t, v)| d.push(t, v)).collect();
        assert_eq!(d.samples_per_day(), Some(288));
        assert!(scores[..day].iter().all(|&s| s == 0.0), "nothing scored during the first day");
        let normal_max = scores[day * 3..day * 6].iter().copied().fold(0.0, f64::max);
        let jump = scores[day * 6..day * 6 + 30].iter().copied().fold(0.0, f64::max);
        assert!(jump > 0.5 && jump > 2.0 * normal_max, "jump {jump} vs normal {normal_max}");
        let detections = scores[day * 6..day * 6 + 30].iter().filter(|&&s| s >= jump * 0.5).count();
        assert_eq!(detections, 1, "suppression leaves one detection per anomaly");
        assert!(scores.iter().all(|s| (0.0..1.0).contains(s)));
    }

    #[test]
    fn constant_and_short_series_score_zero() {
        let mut d = NoveltyState::new(1000, 0);
        assert!(series(2000, |_| 7.0).into_iter().all(|(t, v)| d.push(t, v) == 0.0));
        let mut d = NoveltyState::new(1000, 0);
        assert!(series(20, |i| i as f64).into_iter().all(|(t, v)| d.push(t, v) == 0.0));
    }

    #[test]
    fn memory_is_bounded() {
        let mut d = NoveltyState::new(500, 0);
        for (t, v) in series(3000, |i| (i % 97) as f64) {
            d.push(t, v);
        }
        assert!(d.x.len() <= 500 && d.sorted.len() <= 500);
    }
}
