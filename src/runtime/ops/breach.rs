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
//!
//! With a `season` (say `1d`), a series' cycle is not a trend. Per series a [`Profile`]
//! learns, after one season, the typical deviation of each 48th of the season from the
//! mean of the season before it; the line is fitted to the values less that profile, and
//! the forecast adds it back at each future time within `within` (checked every half
//! bucket). A daily peak that comes back to the same height is then not extrapolated
//! into a breach, and a rising trend warns before the peak that will cross. Memory: one
//! season of samples more per series; time per sample: at most `2 · 48 · within / season`
//! (16 for 4 h of a day) more evaluations of the trajectory.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::data::{Data, ScoreColumn, ScoresData, SeriesId, Timestamp};
use crate::runtime::{OpCtx, OpError, Operator};

/// Samples a line needs.
const MIN_POINTS: usize = 10;
/// Buckets of a season's profile.
const BUCKETS: usize = 48;
/// A profile bucket's smallest weight for a new deviation (an average over its first
/// samples, then exponential: about the last 20 samples of the bucket).
const PROFILE_ALPHA: f64 = 0.05;
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

/// A series' seasonal profile: per 48th of the season, the typical deviation of a value
/// from the mean of the season before it.
struct Profile {
    season: i64,
    /// The last season's samples and their sum.
    recent: VecDeque<(Timestamp, f64)>,
    sum: f64,
    first: Option<Timestamp>,
    dev: [f64; BUCKETS],
    n: [u32; BUCKETS],
    /// The mean of the learnt buckets' deviations (the profile is used centred on it).
    centre: f64,
}

impl Profile {
    fn new(season: i64) -> Profile {
        Profile { season, recent: VecDeque::new(), sum: 0.0, first: None, dev: [0.0; BUCKETS], n: [0; BUCKETS], centre: 0.0 }
    }

    fn bucket(&self, t: Timestamp) -> usize {
        ((t.rem_euclid(self.season) as i128 * BUCKETS as i128 / self.season as i128) as usize).min(BUCKETS - 1)
    }

    /// Learns from the sample `x` at `t` (after one season of samples).
    fn push(&mut self, t: Timestamp, x: f64) {
        let first = *self.first.get_or_insert(t);
        self.recent.push_back((t, x));
        self.sum += x;
        while self.recent.front().is_some_and(|&(u, _)| t - u >= self.season) {
            let (_, y) = self.recent.pop_front().expect("not empty");
            self.sum -= y;
        }
        if self.recent.len() == 1 {
            self.sum = x; // no drift in the running sum
        }
        if t - first >= self.season {
            let mean = self.sum / self.recent.len() as f64;
            let b = self.bucket(t);
            self.n[b] = self.n[b].saturating_add(1);
            let a = (1.0 / f64::from(self.n[b])).max(PROFILE_ALPHA);
            self.dev[b] += a * (x - mean - self.dev[b]);
            let (mut sum, mut learnt) = (0.0, 0usize);
            for (d, &n) in self.dev.iter().zip(&self.n) {
                if n > 0 {
                    sum += d;
                    learnt += 1;
                }
            }
            self.centre = sum / learnt.max(1) as f64;
        }
    }

    /// Whether a season has been learnt.
    fn ready(&self, t: Timestamp) -> bool {
        self.first.is_some_and(|f| t - f >= self.season) && self.n.iter().any(|&n| n > 0)
    }

    /// The seasonal term at `t` (0 for a bucket not learnt yet).
    fn at(&self, t: Timestamp) -> f64 {
        let b = self.bucket(t);
        if self.n[b] == 0 {
            0.0
        } else {
            self.dev[b] - self.centre
        }
    }
}

/// What a `forecast_breach` stage is asked.
#[derive(Clone, Copy, Debug)]
pub struct Breach {
    pub above: f64,
    pub within_ms: i64,
    pub window_ms: i64,
    pub sigmas: f64,
    /// The season's length (0: none).
    pub season_ms: i64,
}

/// One series' trend and profile.
struct SeriesState {
    line: Line,
    profile: Option<Profile>,
}

impl SeriesState {
    fn new(b: &Breach) -> SeriesState {
        SeriesState { line: Line::default(), profile: (b.season_ms > 0).then(|| Profile::new(b.season_ms)) }
    }

    /// Takes the sample `x` at `t` and judges it: (score, expected, lower, upper,
    /// anomalous), or None while the line has too few samples.
    fn judge(&mut self, b: &Breach, t: Timestamp, x: f64) -> Option<(f64, f64, f64, f64, bool)> {
        let seasonal = match &mut self.profile {
            Some(p) => {
                p.push(t, x);
                p.ready(t).then_some(&*p)
            }
            None => None,
        };
        let now = seasonal.map_or(0.0, |p| p.at(t));
        self.line.push(t, x - now, b.window_ms);
        let fit = self.line.fit(t, b.window_ms)?;
        Some(judge(&fit, x, b, seasonal.map(|p| (p, t))))
    }
}

pub struct ForecastBreach {
    breach: Breach,
    series: HashMap<SeriesId, SeriesState>,
}

impl ForecastBreach {
    pub fn new(breach: Breach) -> ForecastBreach {
        let breach = Breach {
            within_ms: breach.within_ms.max(1),
            window_ms: breach.window_ms.max(1),
            sigmas: breach.sigmas.max(0.0),
            season_ms: breach.season_ms.max(0),
            ..breach
        };
        ForecastBreach { breach, series: HashMap::new() }
    }
}

/// What the line (and the profile, from `t` on) says for value `x`: (score, expected,
/// lower, upper, anomalous).
fn judge(fit: &Fit, x: f64, b: &Breach, season: Option<(&Profile, Timestamp)>) -> (f64, f64, f64, f64, bool) {
    let (above, sigmas) = (b.above, b.sigmas);
    let within_h = b.within_ms as f64 / HOUR;
    let cautious = fit.slope - sigmas * fit.se;
    let bold = fit.slope + sigmas * fit.se;
    let s = |h: f64| season.map_or(0.0, |(p, t)| p.at(t + (h * HOUR) as i64));
    let at = |slope: f64, h: f64| fit.level + slope * h + s(h);
    let (expected, lower, upper) = (at(fit.slope, within_h), at(cautious, within_h), at(bold, within_h));
    if x >= above || at(fit.slope, 0.0) >= above {
        return (1.0, expected, lower, upper, true);
    }
    let eta = match season {
        None if cautious > 0.0 => (above - fit.level) / cautious,
        None => f64::INFINITY,
        Some((p, _)) => {
            // The first time within `within`, every half bucket, the cautious trajectory
            // with the profile reaches the bound; beyond, the line's with the profile's peak.
            let step = (p.season as f64 / HOUR / (2 * BUCKETS) as f64).min(within_h / 8.0);
            let crossing = (1..).map(|k| k as f64 * step).take_while(|&h| h <= within_h + 1e-9).find(|&h| at(cautious, h) >= above);
            match crossing {
                Some(h) => h,
                None if cautious > 0.0 => {
                    let peak = p.dev.iter().zip(&p.n).filter(|(_, &n)| n > 0).map(|(d, _)| d - p.centre).fold(0.0, f64::max);
                    ((above - fit.level - peak) / cautious).max(within_h * 1.0001)
                }
                None => f64::INFINITY,
            }
        }
    };
    let score = within_h / (within_h + eta);
    (score, expected, lower, upper, eta <= within_h)
}

impl Operator for ForecastBreach {
    fn forget(&mut self, ids: &[SeriesId]) {
        for id in ids {
            self.series.remove(id);
        }
    }

    fn process(&mut self, inputs: &[Data], ctx: &mut OpCtx) -> Result<Data, OpError> {
        let Some(Data::Series(input)) = inputs.first() else { return Err(OpError::Invalid("forecast_breach takes a Series".into())) };
        let b = self.breach;
        let mut out = Vec::with_capacity(input.series.len());
        for c in &input.series {
            let st = self.series.entry(c.id.clone()).or_insert_with(|| SeriesState::new(&b));
            let mut o = ScoreColumn::new(c.id.clone());
            for (&t, &x) in c.ts.iter().zip(&c.values) {
                if !x.is_finite() {
                    ctx.skip("non-finite value");
                    continue;
                }
                if st.line.points.back().is_some_and(|&(u, _)| t <= u) {
                    ctx.skip("out-of-order sample");
                    continue;
                }
                match st.judge(&b, t, x) {
                    Some((s, e, lo, hi, a)) => o.push(t, x, s, e, lo, hi, a),
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
pub fn alarms(ts: &[Timestamp], xs: &[f64], breach: &Breach) -> Vec<Timestamp> {
    let mut st = SeriesState::new(breach);
    let (mut out, mut on) = (Vec::new(), false);
    for (&t, &x) in ts.iter().zip(xs) {
        let now = st.judge(breach, t, x).is_some_and(|j| j.4);
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
    const DAY: i64 = 86_400_000;

    /// Above 90 within 4 h, from a 6 h trend.
    fn breach(sigmas: f64, season_ms: i64) -> Breach {
        Breach { above: 90.0, within_ms: 4 * 3_600_000, window_ms: 6 * 3_600_000, sigmas, season_ms }
    }

    fn daily(t: i64) -> f64 {
        (2.0 * std::f64::consts::PI * (t % DAY) as f64 / DAY as f64).sin()
    }

    #[test]
    fn a_daily_peak_below_the_bound_is_no_breach_with_a_season() {
        // Five-minute samples of a week of a daily cycle peaking near 86.
        let mut rng = crate::stats::Rng::new(3);
        let ts: Vec<i64> = (0..2016).map(|i| i * 5 * MIN).collect();
        let xs: Vec<f64> = ts.iter().map(|&t| 74.0 + 12.0 * daily(t) + 0.5 * rng.normal()).collect();
        assert!(!alarms(&ts, &xs, &breach(1.64, 0)).is_empty(), "the plain trend extrapolates the upswings");
        let seasonal = alarms(&ts, &xs, &breach(1.64, DAY));
        assert!(seasonal.iter().all(|&t| t < DAY + 6 * 3_600_000), "after its first season, no alarm: {seasonal:?}");
    }

    #[test]
    fn a_leak_under_a_daily_cycle_warns_before_the_peak_that_crosses() {
        // A leak of 0.25 an hour from 60 under a daily cycle of ±8: it crosses 90 at a peak.
        let mut rng = crate::stats::Rng::new(5);
        let ts: Vec<i64> = (0..2016).map(|i| i * 5 * MIN).collect();
        let xs: Vec<f64> = ts.iter().map(|&t| 60.0 + 0.25 * t as f64 / 3_600_000.0 + 8.0 * daily(t) + 0.5 * rng.normal()).collect();
        let crossing = ts[xs.iter().position(|&x| x >= 90.0).unwrap()];
        let warned = alarms(&ts, &xs, &breach(1.64, DAY)).into_iter().rfind(|&t| t <= crossing).expect("a warning");
        let lead = (crossing - warned) as f64 / 3_600_000.0;
        assert!((0.5..=4.5).contains(&lead), "lead {lead} h");
    }

    #[test]
    fn a_steady_fill_is_forecast_before_it_crosses() {
        // 1% an hour from 50%: crosses 90% after 40 hours.
        let ts: Vec<i64> = (0..3000).map(|i| i * MIN).collect();
        let xs: Vec<f64> = ts.iter().map(|&t| 50.0 + t as f64 / HOUR + if (t / MIN) % 2 == 0 { 0.3 } else { -0.3 }).collect();
        let alarm = alarms(&ts, &xs, &breach(1.64, 0))[0];
        let crossing = 40 * 3_600_000;
        let lead = (crossing - alarm) as f64 / HOUR;
        assert!((3.5..=4.5).contains(&lead), "lead {lead} h");
    }

    #[test]
    fn a_flat_noisy_series_never_alarms_and_noise_counts_against_a_short_trend() {
        let mut rng = crate::stats::Rng::new(7);
        let ts: Vec<i64> = (0..5000).map(|i| i * MIN).collect();
        let xs: Vec<f64> = ts.iter().map(|_| 70.0 + 3.0 * rng.normal()).collect();
        assert!(alarms(&ts, &xs, &breach(1.64, 0)).is_empty());
        // A noisy climb of 7 points an hour toward a bound 25 points away: bold
        // extrapolation warns, the cautious one waits for more evidence.
        let fit = Fit { level: 65.0, slope: 7.0, se: 3.5 };
        assert!(judge(&fit, 65.0, &breach(0.0, 0), None).4);
        assert!(!judge(&fit, 65.0, &breach(1.64, 0), None).4);
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
