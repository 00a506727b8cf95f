//! Models monitored like services: what each version learned from, and how far live data
//! and live errors have moved from it.
//!
//! - [`DataSummary`]: recorded with every trained version — the training data's deciles,
//!   the share of it in each decile bin, mean, spread and hour-of-day profile.
//! - [`psi`]: the population stability index of a window of live values against that
//!   summary, over the training deciles' bins. 0 is no shift; by the usual reading below
//!   0.1 is stable, 0.1–0.25 a moderate shift, above 0.25 a major one. Defined for every
//!   input: an empty window has none (`None`), a constant series 0.
//! - [`Monitor`]: the newest figures per (stage, series), which `/metrics` shows as
//!   `vigil_model_drift` and `vigil_model_error_ratio`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::time::Timestamp;

/// Bins of the drift statistic: the training data's deciles.
pub const BINS: usize = 10;

/// Live values the drift statistic compares (a reason: with 10 bins the index of a
/// window drawn from the training distribution itself averages about (bins − 1)/n =
/// 0.035 at n = 256, well under the 0.1 that reads as "stable").
pub const DRIFT_WINDOW: usize = 256;

/// What a model version was trained on.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DataSummary {
    /// The 0%, 10%, …, 100% quantiles.
    pub quantiles: Vec<f64>,
    /// The share of the training values in each bin between consecutive inner deciles
    /// (below the first inner decile, …, above the last).
    pub bins: Vec<f64>,
    pub mean: f64,
    pub sd: f64,
    /// The mean per hour of the day (UTC), where the hour had data.
    pub hourly: Vec<Option<f64>>,
}

impl DataSummary {
    /// The summary of training data (None when it is empty or has no finite value).
    pub fn of(ts: &[Timestamp], values: &[f64]) -> Option<DataSummary> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let q = |p: f64| sorted[((p * (n - 1) as f64).round() as usize).min(n - 1)];
        let quantiles: Vec<f64> = (0..=BINS).map(|k| q(k as f64 / BINS as f64)).collect();
        let mut counts = [0usize; BINS];
        for v in &sorted {
            counts[bin(&quantiles, *v)] += 1;
        }
        let bins = counts.iter().map(|&c| c as f64 / n as f64).collect();
        let mean = sorted.iter().sum::<f64>() / n as f64;
        let sd = (sorted.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
        let mut hours = [(0.0, 0usize); 24];
        for (&t, &v) in ts.iter().zip(values) {
            if v.is_finite() {
                let h = (t.rem_euclid(86_400_000) / 3_600_000) as usize;
                hours[h].0 += v;
                hours[h].1 += 1;
            }
        }
        let hourly = hours.iter().map(|&(s, c)| (c > 0).then(|| s / c as f64)).collect();
        Some(DataSummary { quantiles, bins, mean, sd, hourly })
    }
}

/// The bin of `v` among the inner deciles of `quantiles` (ties go to the lowest bin that
/// holds the value, the same rule for training and live data).
fn bin(quantiles: &[f64], v: f64) -> usize {
    let inner = &quantiles[1..quantiles.len().saturating_sub(1).max(1)];
    inner.partition_point(|&e| e < v).min(BINS - 1)
}

/// The population stability index of `live` against the training summary; None when
/// `live` holds no finite value. Each share is smoothed by half a sample, so an empty bin
/// does not make it infinite.
pub fn psi(summary: &DataSummary, live: impl IntoIterator<Item = f64>) -> Option<f64> {
    if summary.quantiles.len() != BINS + 1 || summary.bins.len() != BINS {
        return None;
    }
    let mut counts = [0usize; BINS];
    let mut n = 0usize;
    for v in live.into_iter().filter(|v| v.is_finite()) {
        counts[bin(&summary.quantiles, v)] += 1;
        n += 1;
    }
    if n == 0 {
        return None;
    }
    let eps = 0.5 / n as f64;
    let mut total = 0.0;
    for (k, &c) in counts.iter().enumerate() {
        let a = (c as f64 / n as f64).max(eps);
        let e = summary.bins[k].max(eps);
        total += (a - e) * (a / e).ln();
    }
    Some(total.max(0.0))
}

/// The health of one (stage, series).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Health {
    /// The active version.
    pub version: u32,
    /// The drift of the newest live window against the active version's training data.
    pub drift: Option<f64>,
    /// Live mean squared error over the version's validation error.
    pub error_ratio: Option<f64>,
    /// A challenger in shadow, when there is one.
    pub candidate: Option<u32>,
    pub updated_at: Timestamp,
}

/// The newest health per (stage key, series), for `/metrics` and the API.
#[derive(Default)]
pub struct Monitor {
    health: Mutex<BTreeMap<(String, String), Health>>,
}

impl Monitor {
    /// Changes the health of one (stage, series).
    pub fn update(&self, key: &str, series: &str, f: impl FnOnce(&mut Health)) {
        let mut map = self.health.lock().unwrap_or_else(|e| e.into_inner());
        f(map.entry((key.to_owned(), series.to_owned())).or_default());
    }

    /// Forgets a stage's series (a stage removed by a reload, an idle series).
    pub fn forget(&self, key: &str, series: &str) {
        self.health.lock().unwrap_or_else(|e| e.into_inner()).remove(&(key.to_owned(), series.to_owned()));
    }

    /// Every (stage, series) with its health.
    pub fn all(&self) -> Vec<(String, String, Health)> {
        self.health.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|((k, s), h)| (k.clone(), s.clone(), h.clone())).collect()
    }

    /// The Prometheus text of the gauges.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let all = self.all();
        let mut text = String::new();
        let label = |k: &str, s: &str| format!("stage=\"{}\",series=\"{}\"", crate::text::escape_label(k), crate::text::escape_label(s));
        let _ = writeln!(
            text,
            "# HELP vigil_model_drift Population stability index of the newest {DRIFT_WINDOW} live values against the active model's training data.\n# TYPE vigil_model_drift gauge"
        );
        for (k, s, h) in &all {
            if let Some(d) = h.drift {
                let _ = writeln!(text, "vigil_model_drift{{{}}} {d}", label(k, s));
            }
        }
        let _ = writeln!(
            text,
            "# HELP vigil_model_error_ratio Live mean squared error of the active model over its validation error.\n# TYPE vigil_model_error_ratio gauge"
        );
        for (k, s, h) in &all {
            if let Some(r) = h.error_ratio {
                let _ = writeln!(text, "vigil_model_error_ratio{{{}}} {r}", label(k, s));
            }
        }
        let _ = writeln!(text, "# HELP vigil_model_version The active model version.\n# TYPE vigil_model_version gauge");
        for (k, s, h) in &all {
            let _ = writeln!(text, "vigil_model_version{{{}}} {}", label(k, s), h.version);
        }
        let _ = writeln!(text, "# HELP vigil_model_candidate The version in shadow (0 when none).\n# TYPE vigil_model_candidate gauge");
        for (k, s, h) in &all {
            let _ = writeln!(text, "vigil_model_candidate{{{}}} {}", label(k, s), h.candidate.unwrap_or(0));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(values: &[f64]) -> DataSummary {
        let ts: Vec<i64> = (0..values.len() as i64).map(|i| i * 300_000).collect();
        DataSummary::of(&ts, values).unwrap()
    }

    #[test]
    fn the_same_distribution_is_stable_and_a_shift_is_not() {
        let train: Vec<f64> = (0..2000).map(|i| ((i * 37) % 100) as f64).collect();
        let s = summary(&train);
        let same: Vec<f64> = (0..256).map(|i| ((i * 53) % 100) as f64).collect();
        let shifted: Vec<f64> = same.iter().map(|v| v + 60.0).collect();
        let stable = psi(&s, same).unwrap();
        let drifted = psi(&s, shifted).unwrap();
        assert!(stable < 0.1, "{stable}");
        assert!(drifted > 1.0, "{drifted}");
    }

    #[test]
    fn constant_and_empty_series_are_defined() {
        let s = summary(&[5.0; 100]);
        assert_eq!(psi(&s, vec![5.0; 50]), Some(0.0));
        let moved = psi(&s, vec![7.0; 50]).unwrap();
        assert!(moved.is_finite() && moved > 1.0, "{moved}");
        assert_eq!(psi(&s, Vec::new()), None);
        assert_eq!(psi(&s, vec![f64::NAN]), None);
        assert!(DataSummary::of(&[], &[]).is_none());
    }

    #[test]
    fn metrics_have_no_nan() {
        let m = Monitor::default();
        m.update("p.t", "x", |h| h.drift = Some(0.2));
        m.update("p.t", "y", |h| h.version = 3);
        let text = m.render();
        assert!(text.contains("vigil_model_drift{stage=\"p.t\",series=\"x\"} 0.2"), "{text}");
        assert!(!text.contains("NaN"), "{text}");
    }
}
