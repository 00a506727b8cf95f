//! A deterministic generator of labelled synthetic series, for checking that a detector's
//! threshold transfers to data it was not tuned on (`examples/nab_cv.rs`).
//!
//! Daily (and on every third series, weekly) seasonality plus noise, with injected
//! anomalies of the kinds NAB detectors miss on unseen data — contextual ones (a night
//! value at day level, a flat line at a normal level at the wrong time, a drop to the night
//! level during the day), level shifts, slow drifts, seasonality changes (amplitude or
//! phase), a noise burst, and a spike smaller than an unlabelled extreme of the first days
//! (inside the probationary period). Labels are NAB-style windows: `0.1·n / anomalies`
//! rows centred on each onset.
//!
//! Every series: 5-minute steps, 4 000 – 8 000 points, from 2020-01-06 00:00 UTC (a
//! Monday); a daily sine or business-hours profile, Gaussian noise of 3–12% of the
//! amplitude, integer values on every fourth series, an unlabelled extreme of 5× the
//! amplitude inside the probationary period of every other series. The first 4 series have
//! no anomaly, the others 1–3 (onsets after the probationary period and the first 3 days).
//! The same `(count, seed)` always gives the same set, bit for bit.

use std::path::Path;

use crate::eval::{FileScores, Windows};

/// Milliseconds between points (5 minutes).
const STEP_MS: i64 = 300_000;
/// Points per day.
const P: usize = 288;
/// 2020-01-06 00:00:00 UTC, a Monday.
const START_MS: i64 = 1_578_268_800_000;

/// SplitMix64, seeded with the seed itself. (Not [`crate::stats::Rng`], which mixes its
/// seed and draws nothing for an empty range: the generated set must stay what it was when
/// the detector's constants were chosen.)
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [a, b).
    fn between(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.uniform()
    }

    /// Uniform in `a..=b` (`a ≤ b`); always draws.
    fn int(&mut self, a: usize, b: usize) -> usize {
        a + (self.next_u64() % (b - a + 1) as u64) as usize
    }

    /// −1 or 1, evenly.
    fn sign(&mut self) -> f64 {
        if self.uniform() < 0.5 {
            -1.0
        } else {
            1.0
        }
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// The kinds of injected anomaly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// 2–4 h at the day's peak level around the day's trough.
    NightAtDayLevel,
    /// 3–8 h flat at the mean level.
    FlatAtWrongTime,
    /// 2–4 h at the night level around the day's peak.
    DayDropToNightLevel,
    /// A step of 0.4–0.8 amplitudes, for good.
    LevelShift,
    /// A ramp of 0.5–0.9 amplitudes over 12–24 h, then kept.
    SlowDrift,
    /// The seasonal amplitude ×0.2–0.5 or ×1.8–2.5, for good.
    AmplitudeChange,
    /// The daily profile shifted by 5–10 h, for good.
    PhaseShift,
    /// Noise ×5 for 2–6 h.
    NoiseBurst,
    /// One point at 2.5 amplitudes above the level: below the unlabelled early extreme.
    SmallSpikeAfterEarlyExtreme,
}

/// Every kind, in the order the generator draws from.
pub const KINDS: [Kind; 9] = [
    Kind::NightAtDayLevel,
    Kind::FlatAtWrongTime,
    Kind::DayDropToNightLevel,
    Kind::LevelShift,
    Kind::SlowDrift,
    Kind::AmplitudeChange,
    Kind::PhaseShift,
    Kind::NoiseBurst,
    Kind::SmallSpikeAfterEarlyExtreme,
];

impl Kind {
    /// The kind's name, as used in series names.
    pub fn name(self) -> &'static str {
        match self {
            Kind::NightAtDayLevel => "night_at_day_level",
            Kind::FlatAtWrongTime => "flat_at_wrong_time",
            Kind::DayDropToNightLevel => "day_drop_to_night_level",
            Kind::LevelShift => "level_shift",
            Kind::SlowDrift => "slow_drift",
            Kind::AmplitudeChange => "amplitude_change",
            Kind::PhaseShift => "phase_shift",
            Kind::NoiseBurst => "noise_burst",
            Kind::SmallSpikeAfterEarlyExtreme => "small_spike_after_early_extreme",
        }
    }
}

/// One generated series.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// `synth/sNN_<kinds joined by +, or none>.csv`.
    pub name: String,
    pub ts: Vec<i64>,
    pub xs: Vec<f64>,
    /// The kind and onset row of each injected anomaly.
    pub anomalies: Vec<(Kind, usize)>,
    /// One labelled `[start, end]` window (timestamps) per anomaly.
    pub windows: Vec<(i64, i64)>,
}

/// `count` series from `seed`: the first 4 have no anomaly, the others 1–3 each.
pub fn generate(count: usize, seed: u64) -> Vec<Series> {
    let mut rng = SplitMix(seed);
    (0..count).map(|k| one(k, &mut rng)).collect()
}

/// The `k`-th series (the draws depend on `k` and on every series before it).
fn one(k: usize, rng: &mut SplitMix) -> Series {
    let n = rng.int(4000, 8000);
    let level = 10f64.powf(rng.between(1.0, 3.0));
    let amp = level * rng.between(0.2, 0.6);
    let weekly = if k.is_multiple_of(3) { rng.between(0.2, 0.5) } else { 0.0 };
    let business = k % 2 == 1; // a smooth business-hours profile, else a sine
    let noise = amp * rng.between(0.03, 0.12);
    let integer = k % 4 == 2;
    let phase0 = rng.between(0.0, 1.0);
    // The seasonal profile in [0, 1] at the fraction `u` of the day, shifted by `shift` days.
    let prof = move |u: f64, shift: f64| -> f64 {
        let u = (u + phase0 + shift).rem_euclid(1.0);
        if business {
            let a = 1.0 / (1.0 + (-(u - 0.33) * 40.0).exp());
            let b = 1.0 / (1.0 + ((u - 0.75) * 40.0).exp());
            a * b
        } else {
            0.5 + 0.5 * (std::f64::consts::TAU * u).sin()
        }
    };
    let n_anom = if k < 4 { 0 } else { rng.int(1, 3) };
    let prob = super::probationary(n);
    // Onsets: after the probationary period and at least 3 days in, one per equal part of
    // the rest, half a day apart at least.
    let first = prob.max(3 * P) + P / 2;
    let span = n - P / 2 - first;
    let onsets: Vec<usize> = (0..n_anom)
        .map(|a| {
            let lo = first + span * a / n_anom;
            let hi = first + span * (a + 1) / n_anom - P / 2;
            rng.int(lo, hi.max(lo))
        })
        .collect();
    let kinds: Vec<Kind> = (0..n_anom).map(|a| KINDS[(k * 5 + a * 3 + rng.int(0, 8)) % KINDS.len()]).collect();
    // Per-row modifiers of the clean signal, and rows whose value is replaced.
    let mut shift = vec![0.0f64; n];
    let mut ampf = vec![1.0f64; n];
    let mut phase = vec![0.0f64; n];
    let mut noisef = vec![1.0f64; n];
    let mut overrides: Vec<(usize, usize, Kind)> = Vec::new();
    let mut anomalies = Vec::with_capacity(n_anom);
    for (&kind, &onset) in kinds.iter().zip(&onsets) {
        let mut t = onset;
        match kind {
            Kind::NightAtDayLevel | Kind::DayDropToNightLevel => {
                // Move the onset to just before the trough (or peak) of its day.
                let want_low = kind == Kind::NightAtDayLevel;
                let day0 = t - t % P;
                let mut best = day0;
                for j in 0..P {
                    let v = prof(j as f64 / P as f64, 0.0);
                    let bv = prof((best % P) as f64 / P as f64, 0.0);
                    if (want_low && v < bv) || (!want_low && v > bv) {
                        best = day0 + j;
                    }
                }
                t = best.saturating_sub(P / 48).clamp(first, n - P / 2);
                let len = rng.int(P / 12, P / 6); // 2–4 h
                overrides.push((t, (t + len).min(n), kind));
            }
            Kind::FlatAtWrongTime => {
                let len = rng.int(P / 8, P / 3); // 3–8 h
                overrides.push((t, (t + len).min(n), kind));
            }
            Kind::LevelShift => {
                let d = amp * rng.between(0.4, 0.8) * rng.sign();
                for s in &mut shift[t..] {
                    *s += d;
                }
            }
            Kind::SlowDrift => {
                let len = rng.int(P / 2, P);
                let d = amp * rng.between(0.5, 0.9) * rng.sign();
                for (j, s) in shift[t..].iter_mut().enumerate() {
                    *s += d * (j as f64 / len as f64).min(1.0);
                }
            }
            Kind::AmplitudeChange => {
                let f = if rng.uniform() < 0.5 { rng.between(0.2, 0.5) } else { rng.between(1.8, 2.5) };
                ampf[t..].fill(f);
            }
            Kind::PhaseShift => {
                let f = rng.between(0.2, 0.4) * rng.sign();
                phase[t..].fill(f);
            }
            Kind::NoiseBurst => {
                let len = rng.int(P / 12, P / 4);
                noisef[t..(t + len).min(n)].fill(5.0);
            }
            Kind::SmallSpikeAfterEarlyExtreme => overrides.push((t, t + 1, kind)),
        }
        anomalies.push((kind, t));
    }
    // An unlabelled early extreme (inside the probationary period) in every other series.
    let early = k.is_multiple_of(2).then(|| rng.int(P / 2, prob.clamp(P / 2 + 1, 2 * P)));
    let mut xs = Vec::with_capacity(n);
    let mut ts = Vec::with_capacity(n);
    for i in 0..n {
        let u = (i % P) as f64 / P as f64;
        let weekend = (i / P) % 7 >= 5;
        let wk = if weekend { 1.0 - weekly } else { 1.0 };
        let mean = (level + amp * ampf[i] * prof(u, phase[i])) * wk + shift[i];
        let mut x = mean + noise * noisef[i] * rng.normal();
        for &(a, b, kind) in &overrides {
            if (a..b).contains(&i) {
                x = match kind {
                    Kind::NightAtDayLevel => (level + amp * 0.95) * wk + shift[i] + noise * rng.normal(),
                    Kind::DayDropToNightLevel => (level + amp * 0.05) * wk + shift[i] + noise * rng.normal(),
                    Kind::FlatAtWrongTime => (level + amp * 0.5) * wk + shift[i],
                    Kind::SmallSpikeAfterEarlyExtreme => level + amp * 1.0 + amp * 1.5,
                    _ => x,
                };
            }
        }
        if early == Some(i) {
            x = level + amp * 1.0 + amp * 4.0;
        }
        if integer {
            x = x.round();
        }
        xs.push(x);
        ts.push(START_MS + i as i64 * STEP_MS);
    }
    // NAB-style windows centred on the onsets.
    let mut windows = Vec::with_capacity(n_anom);
    if n_anom > 0 {
        let w = (0.1 * n as f64 / n_anom as f64) as usize;
        for &(_, t) in &anomalies {
            let a = t.saturating_sub(w / 2);
            let b = (t + w / 2).min(n - 1);
            windows.push((ts[a], ts[b]));
        }
    }
    let label =
        if anomalies.is_empty() { "none".to_owned() } else { anomalies.iter().map(|(kind, _)| kind.name()).collect::<Vec<_>>().join("+") };
    Series { name: format!("synth/s{k:02}_{label}.csv"), ts, xs, anomalies, windows }
}

/// The labels of a generated set, keyed by series name.
pub fn labels(set: &[Series]) -> Windows {
    set.iter().map(|s| (s.name.clone(), s.windows.clone())).collect()
}

/// Writes a set under `dir` as NAB CSVs (`timestamp,value`, at their `synth/…` names) and
/// a NAB `windows.json`, for `vigil eval`, plotting or inspection.
///
/// # Errors
/// When a directory or file cannot be written.
pub fn write(set: &[Series], dir: &Path) -> std::io::Result<()> {
    use crate::time::format_timestamp;
    std::fs::create_dir_all(dir)?;
    let mut windows = serde_json::Map::new();
    for s in set {
        let path = dir.join(&s.name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut out = String::with_capacity(32 * (s.ts.len() + 1));
        out.push_str("timestamp,value\n");
        for (&t, x) in s.ts.iter().zip(&s.xs) {
            out.push_str(&format!("{},{x}\n", format_timestamp(t)));
        }
        std::fs::write(&path, out)?;
        let ws = s
            .windows
            .iter()
            .map(|&(a, b)| serde_json::json!([format!("{}.000000", format_timestamp(a)), format!("{}.000000", format_timestamp(b))]))
            .collect();
        windows.insert(s.name.clone(), serde_json::Value::Array(ws));
    }
    let json = serde_json::to_string_pretty(&serde_json::Value::Object(windows)).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("windows.json"), json)
}

/// The set as scorer input, every score 0 (detecting nothing).
pub fn empty_scores(set: &[Series]) -> Vec<FileScores> {
    set.iter().map(|s| FileScores { name: s.name.clone(), ts: s.ts.clone(), scores: vec![0.0; s.ts.len()] }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{probationary, window_rows, Corpus, PROFILES};

    #[test]
    fn the_same_seed_gives_the_same_set() {
        let a = generate(12, 7);
        assert!(a == generate(12, 7), "two sets from seed 7 differ");
        let b = generate(12, 8);
        assert!(a.iter().zip(&b).all(|(x, y)| x.xs != y.xs), "seeds 7 and 8 share a series");
        // A shorter set is a prefix of a longer one.
        assert!(generate(5, 7)[..] == a[..5]);
    }

    #[test]
    fn windows_are_inside_their_series_and_only_where_anomalies_are() {
        let set = generate(30, 20_240_601);
        for (k, s) in set.iter().enumerate() {
            let n = s.ts.len();
            assert!((4000..=8000).contains(&n) && s.xs.len() == n, "{}: {n} rows", s.name);
            assert!(s.xs.iter().all(|x| x.is_finite()), "{}", s.name);
            assert_eq!(s.windows.len(), s.anomalies.len(), "{}", s.name);
            if k < 4 {
                assert!(s.anomalies.is_empty() && s.name.ends_with("_none.csv"), "{}", s.name);
            } else {
                assert!((1..=3).contains(&s.anomalies.len()), "{}", s.name);
            }
            let rows = window_rows(&s.ts, &s.windows);
            for (&(a, b), (r, &(kind, onset))) in s.windows.iter().zip(rows.iter().zip(&s.anomalies)) {
                assert!(s.ts[0] <= a && a < b && b <= s.ts[n - 1], "{}: window ({a}, {b})", s.name);
                let (first, last) = r.unwrap_or_else(|| panic!("{}: window ({a}, {b}) has no row", s.name));
                // The onset is inside its window, and after the probationary period (so the
                // window is scored).
                assert!(first <= onset && onset <= last, "{}: {kind:?} at {onset} outside rows {first}..={last}", s.name);
                assert!(onset >= probationary(n), "{}: {kind:?} at {onset}, in the probationary period", s.name);
            }
        }
        // Detecting nothing scores 0; the set has windows to find.
        let c = Corpus::new(&empty_scores(&set), &labels(&set));
        let (null, perfect) = c.null_perfect(&PROFILES[0]);
        assert!(perfect > 0.0 && null == -perfect, "{null} {perfect}");
        assert!(c.normalise(&PROFILES[0], c.raw_at(&PROFILES[0], 0.5)).abs() < 1e-9);
    }
}
