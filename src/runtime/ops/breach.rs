//! `forecast_breach(input, above, within, window, sigmas)`: an incident *before* a
//! threshold is crossed.
//!
//! Per series, a least-squares line through the samples of the last `window` (running
//! sums: O(1) per sample, memory bounded by the samples of one window). The line's level
//! now, `ŷ`, and its slope `b` with its standard error `se(b)` give a cautious trajectory:
//! the slope `b − sigmas·se(b)` (one-sided: 1.64 standard errors is 95%). A breach is
//! *forecast* when that trajectory reaches `above` within `within`: the time it needs,
//! `eta = (above − ŷ) / (b − sigmas·se(b))`, is at most `within`. A series already at or
//! above the bound is anomalous too (the breach is happening).
//!
//! Prometheus's `predict_linear(x[window], within) > above` is the same line with
//! `sigmas: 0.0`: it extrapolates every upswing of a noisy or daily-cycling series, so it
//! warns often and early; the standard error makes a short or noisy trend count for less.
//! `examples/breach.rs` measures both on generated disk-fill, memory-leak and saturation
//! scenarios (BENCHMARKS.md).
//!
//! Output per sample: the value; expected = the line's forecast at `within`; lower and upper
//! = the cautious and the bold trajectories at `within`; score `within / (within + eta)`
//! (0.5 when the breach is exactly `within` away, 1 when it is happening); anomalous when
//! the breach is forecast. Nothing is scored until the window holds 10 samples over a
//! quarter of its length.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::data::{Data, ScoreColumn, ScoresData, SeriesId, Timestamp};
use crate::runtime::{OpCtx, OpError, Operator};

/// Samples a line needs.
const MIN_POINTS: usize = 10;
const HOUR: f64 = 3_600_000.0;

/// Running least-squares sums over a window (time in hours from an origin).
#[derive(Default)]
struct Line {
    points: VecDeque<(Timestamp, f64)>,
    origin: Option<Timestamp>,
    n: f64,
    st: f64,
    sx: f64,
    stt: f64,
    stx: f64,
    sxx: f64,
}

/// The fit: level now, slope per hour, its standard error.
struct Fit {
    level: f64,
    slope: f64,
    se: f64,
}

impl Line {
    fn add(&mut self, t: Timestamp, x: f64, sign: f64) {
        let h = (t - self.origin.unwrap_or(t)) as f64 / HOUR;
        self.n += sign;
        self.st += sign * h;
        self.sx += sign * x;
        self.stt += sign * h * h;
        self.stx += sign * h * x;
        self.sxx += sign * x * x;
    }

    fn push(&mut self, t: Timestamp, x: f64, window: i64) {
        if self.origin.is_none() {
            self.origin = Some(t);
        }
        self.points.push_back((t, x));
        self.add(t, x, 1.0);
        while self.points.front().is_some_and(|&(u, _)| t - u > window) {
            let (u, y) = self.points.pop_front().expect("not empty");
            self.add(u, y, -1.0);
        }
        // Re-centre now and then so the sums stay small (and exact enough).
        if self.points.len() > 1 && self.points.front().is_some_and(|&(u, _)| u - self.origin.unwrap_or(u) > 30 * window) {
            self.refit();
        }
    }

    fn refit(&mut self) {
        let points: Vec<(Timestamp, f64)> = self.points.iter().copied().collect();
        *self = Line { origin: points.first().map(|p| p.0), ..Line::default() };
        for (t, x) in points {
            self.points.push_back((t, x));
            self.add(t, x, 1.0);
        }
    }

    fn fit(&self, now: Timestamp, window: i64) -> Option<Fit> {
        let span = self.points.back()?.0 - self.points.front()?.0;
        if self.points.len() < MIN_POINTS || span * 4 < window {
            return None;
        }
        let n = self.n;
        let sxx_t = self.stt - self.st * self.st / n;
        if sxx_t <= 0.0 {
            return None;
        }
        let slope = (self.stx - self.st * self.sx / n) / sxx_t;
        let intercept = (self.sx - slope * self.st) / n;
        let rss = (self.sxx - intercept * self.sx - slope * self.stx).max(0.0);
        let sigma2 = rss / (n - 2.0).max(1.0);
        let h_now = (now - self.origin?) as f64 / HOUR;
        Some(Fit { level: intercept + slope * h_now, slope, se: (sigma2 / sxx_t).sqrt() })
    }
}

pub struct ForecastBreach {
    above: f64,
    within_ms: i64,
    window_ms: i64,
    sigmas: f64,
    lines: HashMap<SeriesId, Line>,
}

impl ForecastBreach {
    pub fn new(above: f64, within_ms: i64, window_ms: i64, sigmas: f64) -> ForecastBreach {
        ForecastBreach { above, within_ms: within_ms.max(1), window_ms: window_ms.max(1), sigmas: sigmas.max(0.0), lines: HashMap::new() }
    }
}

/// What the line says at `t` for value `x`: (score, expected, lower, upper, anomalous).
fn judge(fit: &Fit, x: f64, above: f64, within_h: f64, sigmas: f64) -> (f64, f64, f64, f64, bool) {
    let cautious = fit.slope - sigmas * fit.se;
    let bold = fit.slope + sigmas * fit.se;
    let (expected, lower, upper) = (fit.level + fit.slope * within_h, fit.level + cautious * within_h, fit.level + bold * within_h);
    if x >= above || fit.level >= above {
        return (1.0, expected, lower, upper, true);
    }
    let eta = if cautious > 0.0 { (above - fit.level) / cautious } else { f64::INFINITY };
    let score = within_h / (within_h + eta);
    (score, expected, lower, upper, eta <= within_h)
}

impl Operator for ForecastBreach {
    fn forget(&mut self, ids: &[SeriesId]) {
        for id in ids {
            self.lines.remove(id);
        }
    }

    fn process(&mut self, inputs: &[Data], ctx: &mut OpCtx) -> Result<Data, OpError> {
        let Some(Data::Series(input)) = inputs.first() else { return Err(OpError::Invalid("forecast_breach takes a Series".into())) };
        let within_h = self.within_ms as f64 / HOUR;
        let mut out = Vec::with_capacity(input.series.len());
        for c in &input.series {
            let line = self.lines.entry(c.id.clone()).or_default();
            let mut o = ScoreColumn::new(c.id.clone());
            for (&t, &x) in c.ts.iter().zip(&c.values) {
                if !x.is_finite() {
                    ctx.skip("non-finite value");
                    continue;
                }
                if line.points.back().is_some_and(|&(u, _)| t <= u) {
                    ctx.skip("out-of-order sample");
                    continue;
                }
                line.push(t, x, self.window_ms);
                match line.fit(t, self.window_ms) {
                    Some(fit) => {
                        let (s, e, lo, hi, a) = judge(&fit, x, self.above, within_h, self.sigmas);
                        o.push(t, x, s, e, lo, hi, a);
                    }
                    None => o.push_unscored(t, x),
                }
            }
            out.push(o);
        }
        Ok(Data::Scores(Arc::new(ScoresData { series: out })))
    }
}

/// The detector as a function over one series (for `examples/breach.rs`): when each
/// alarm starts (a breach forecast or happening, after a sample that was not).
pub fn alarms(ts: &[Timestamp], xs: &[f64], above: f64, within_ms: i64, window_ms: i64, sigmas: f64) -> Vec<Timestamp> {
    let mut line = Line::default();
    let within_h = within_ms as f64 / HOUR;
    let (mut out, mut on) = (Vec::new(), false);
    for (&t, &x) in ts.iter().zip(xs) {
        line.push(t, x, window_ms);
        let now = line.fit(t, window_ms).is_some_and(|fit| judge(&fit, x, above, within_h, sigmas).4);
        if now && !on {
            out.push(t);
        }
        on = now;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn a_steady_fill_is_forecast_before_it_crosses() {
        // 1% an hour from 50%: crosses 90% after 40 hours.
        let ts: Vec<i64> = (0..3000).map(|i| i * MIN).collect();
        let xs: Vec<f64> = ts.iter().map(|&t| 50.0 + t as f64 / HOUR + if (t / MIN) % 2 == 0 { 0.3 } else { -0.3 }).collect();
        let alarm = alarms(&ts, &xs, 90.0, 4 * 3_600_000, 6 * 3_600_000, 1.64)[0];
        let crossing = 40 * 3_600_000;
        let lead = (crossing - alarm) as f64 / HOUR;
        assert!((3.5..=4.5).contains(&lead), "lead {lead} h");
    }

    #[test]
    fn a_flat_noisy_series_never_alarms_and_noise_counts_against_a_short_trend() {
        let mut rng = crate::stats::Rng::new(7);
        let ts: Vec<i64> = (0..5000).map(|i| i * MIN).collect();
        let xs: Vec<f64> = ts.iter().map(|_| 70.0 + 3.0 * rng.normal()).collect();
        assert!(alarms(&ts, &xs, 90.0, 4 * 3_600_000, 6 * 3_600_000, 1.64).is_empty());
        // A noisy climb of 7 points an hour toward a bound 25 points away: bold
        // extrapolation warns, the cautious one waits for more evidence.
        let fit = Fit { level: 65.0, slope: 7.0, se: 3.5 };
        assert!(judge(&fit, 65.0, 90.0, 4.0, 0.0).4);
        assert!(!judge(&fit, 65.0, 90.0, 4.0, 1.64).4);
    }

    #[test]
    fn sums_stay_exact_over_a_long_series() {
        let ts: Vec<i64> = (0..200_000).map(|i| i * MIN).collect();
        let mut line = Line::default();
        for &t in &ts {
            line.push(t, 10.0 + 0.5 * (t as f64 / HOUR), 6 * 3_600_000);
        }
        let fit = line.fit(*ts.last().unwrap(), 6 * 3_600_000).unwrap();
        assert!((fit.slope - 0.5).abs() < 1e-6, "{}", fit.slope);
        assert!(line.points.len() <= 361);
    }
}
