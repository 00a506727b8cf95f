//! Predict operators that need no training: `zscore` (standard or robust) and
//! `threshold`. Both score each sample causally: from state built from earlier samples.

use std::collections::HashMap;
use std::sync::Arc;

use crate::data::{Data, ScoreColumn, ScoresData, SeriesId, Timestamp};
use crate::learn::calibrate::Suppressor;
use crate::runtime::{OpCtx, OpError, Operator};
use crate::stats::RollingWindow;

/// Maps |z| to a score in [0, 1): `z² / (z² + t²)`, so that |z| = t gives 0.5 and larger
/// deviations approach 1.
pub fn z_to_score(z: f64, threshold: f64) -> f64 {
    let z2 = z * z;
    let t2 = (threshold * threshold).max(f64::MIN_POSITIVE);
    if !z2.is_finite() {
        return 1.0;
    }
    z2 / (z2 + t2)
}

/// `zscore(window, method, threshold, min_samples, suppress)`: each sample against the
/// statistics of the trailing window before it — mean and standard deviation, or median
/// and MAD (scaled by 1.4826 to estimate σ). Until `min_samples` samples are in the window
/// a sample scores 0. With `suppress`, event-level reports: within the quiet period a
/// sample keeps its score and flag only when it scores above every sample of the period
/// before it (the `score` stage's rule).
pub struct ZScore {
    pub window: i64,
    pub robust: bool,
    pub threshold: f64,
    pub min_samples: usize,
    state: HashMap<SeriesId, RollingWindow>,
    /// When each series was first seen, to tell a window still filling from one that can
    /// never hold `min_samples` at the series' step.
    first_seen: HashMap<SeriesId, Timestamp>,
    /// Whether the stage has said so (once).
    warned: bool,
    /// The quiet period after a detection (0: none), and each series' suppressor.
    suppress_ms: i64,
    suppressors: HashMap<SeriesId, Suppressor>,
}

impl ZScore {
    pub fn new(window: i64, robust: bool, threshold: f64, min_samples: usize) -> ZScore {
        ZScore {
            window: window.max(1),
            robust,
            threshold,
            min_samples: min_samples.max(1),
            state: HashMap::new(),
            first_seen: HashMap::new(),
            warned: false,
            suppress_ms: 0,
            suppressors: HashMap::new(),
        }
    }

    /// Event-level reports with this quiet period (0: none).
    pub fn with_suppress(self, suppress_ms: i64) -> ZScore {
        ZScore { suppress_ms: suppress_ms.max(0), ..self }
    }

    /// Scores one sample of a series and adds it to the window.
    #[inline]
    pub fn score_one(
        w: &mut RollingWindow,
        robust: bool,
        threshold: f64,
        min_samples: usize,
        ts: Timestamp,
        v: f64,
        out: &mut ScoreColumn,
    ) {
        // Robust: place the sample first (one shift of the sorted window in the steady
        // state) and read the median and MAD without it; otherwise read, then push.
        let stats = if robust {
            let at = w.push_at(ts, v);
            let before = w.len() - usize::from(at.is_some());
            let stats = if before >= min_samples {
                match at {
                    Some(j) => w.median_mad_excluding(j),
                    None => w.median_mad(),
                }
            } else {
                None
            };
            stats.map(|(m, mad)| (m, mad * 1.4826))
        } else {
            w.evict_until(ts);
            if w.len() >= min_samples {
                w.mean().zip(w.std())
            } else {
                None
            }
        };
        match stats {
            Some((center, sigma)) if center.is_finite() && sigma.is_finite() => {
                // A flat window (σ = 0): any change is infinitely surprising; keep it finite.
                let floor = 1e-9 * center.abs().max(1.0);
                let s = sigma.max(floor);
                let z = (v - center) / s;
                out.push(ts, v, z_to_score(z, threshold), center, center - threshold * s, center + threshold * s, z.abs() >= threshold);
            }
            // Too few samples in the window: no score yet.
            _ => out.push_unscored(ts, v),
        }
        if !robust {
            w.push(ts, v);
        }
    }
}

impl Operator for ZScore {
    fn forget(&mut self, ids: &[SeriesId]) {
        for id in ids {
            self.state.remove(id);
            self.first_seen.remove(id);
            self.suppressors.remove(id);
        }
    }

    fn process(&mut self, inputs: &[Data], ctx: &mut OpCtx) -> Result<Data, OpError> {
        let input = super::preprocess::series_input(inputs)?;
        let mut out = Vec::with_capacity(input.series.len());
        for col in &input.series {
            let w = self.state.entry(col.id.clone()).or_insert_with(|| RollingWindow::new(self.window));
            let mut o = ScoreColumn::new(col.id.clone());
            o.annotations = col.annotations.clone();
            for (&ts, &v) in col.ts.iter().zip(&col.values) {
                ZScore::score_one(w, self.robust, self.threshold, self.min_samples, ts, v, &mut o);
            }
            if self.suppress_ms > 0 {
                let sup = self.suppressors.entry(col.id.clone()).or_insert_with(|| Suppressor::new(self.suppress_ms));
                for ((s, a), &ts) in o.score.iter_mut().zip(o.anomalous.iter_mut()).zip(&o.ts) {
                    let kept = sup.apply(ts, *s);
                    *a &= kept > 0.0;
                    *s = kept;
                }
            }
            if let (Some(&first), Some(&last)) = (col.ts.first(), col.ts.last()) {
                let since = *self.first_seen.entry(col.id.clone()).or_insert(first);
                // The window has been full for a while, yet holds fewer than `min_samples`:
                // at this step it never will, and nothing is ever scored.
                if !self.warned && last - since > self.window && w.len() < self.min_samples {
                    self.warned = true;
                    let step = self.window / w.len().max(1) as i64;
                    let needed = step.saturating_mul(self.min_samples as i64);
                    let dur = crate::time::format_duration_ms;
                    tracing::warn!(
                        series = %col.id,
                        window = %dur(self.window),
                        holds = w.len(),
                        step = %dur(step),
                        min_samples = self.min_samples,
                        "the window holds {} samples at this series' step of about {}, fewer than min_samples {}: nothing is scored; \
                         lengthen `window` to at least {} or lower `min_samples`",
                        w.len(),
                        dur(step),
                        self.min_samples,
                        dur(needed)
                    );
                    ctx.count("window_below_min_samples", 1);
                }
            }
            out.push(o);
        }
        Ok(Data::Scores(Arc::new(ScoresData { series: out })))
    }
}

/// `novelty(suppress, memory, threshold)`: the NAB detector ([`crate::learn::novelty`]),
/// per series.
pub struct Novelty {
    pub suppress_ms: i64,
    pub memory: usize,
    pub threshold: f64,
    state: HashMap<SeriesId, (crate::learn::novelty::NoveltyState, Timestamp)>,
}

impl Novelty {
    pub fn new(suppress_ms: i64, memory: usize, threshold: f64) -> Novelty {
        Novelty { suppress_ms, memory, threshold, state: HashMap::new() }
    }
}

impl Operator for Novelty {
    fn forget(&mut self, ids: &[SeriesId]) {
        for id in ids {
            self.state.remove(id);
        }
    }

    fn process(&mut self, inputs: &[Data], ctx: &mut OpCtx) -> Result<Data, OpError> {
        let input = super::preprocess::series_input(inputs)?;
        let mut out = Vec::with_capacity(input.series.len());
        for col in &input.series {
            let (memory, suppress) = (self.memory, self.suppress_ms);
            let (st, last) = self
                .state
                .entry(col.id.clone())
                .or_insert_with(|| (crate::learn::novelty::NoveltyState::new(memory, suppress), Timestamp::MIN));
            let mut o = ScoreColumn::new(col.id.clone());
            o.annotations = col.annotations.clone();
            for (&ts, &v) in col.ts.iter().zip(&col.values) {
                if !v.is_finite() || ts <= *last {
                    ctx.skip(if v.is_finite() { "out-of-order sample" } else { "non-finite value" });
                    o.push(ts, v, 0.0, f64::NAN, f64::NAN, f64::NAN, false);
                    continue;
                }
                *last = ts;
                let s = st.push(ts, v);
                o.push(ts, v, s, f64::NAN, f64::NAN, f64::NAN, s >= self.threshold);
            }
            out.push(o);
        }
        Ok(Data::Scores(Arc::new(ScoresData { series: out })))
    }
}

/// `threshold(above, below, for)`: anomalous when the value (or, for Scores, the score)
/// has been beyond a bound for at least `for`. Score: 1 when anomalous, 0.5 while a bound
/// is crossed but not yet for long enough, 0 otherwise.
pub struct Threshold {
    pub above: Option<f64>,
    pub below: Option<f64>,
    pub for_ms: i64,
    since: HashMap<SeriesId, Timestamp>,
}

impl Threshold {
    pub fn new(above: Option<f64>, below: Option<f64>, for_ms: i64) -> Threshold {
        Threshold { above, below, for_ms, since: HashMap::new() }
    }

    fn one(&mut self, id: &SeriesId, ts: Timestamp, v: f64, value: f64, out: &mut ScoreColumn) {
        let crossed = self.above.is_some_and(|a| v > a) || self.below.is_some_and(|b| v < b);
        let (score, anomalous) = if crossed {
            let since = *self.since.entry(id.clone()).or_insert(ts);
            if ts - since >= self.for_ms {
                (1.0, true)
            } else {
                (0.5, false)
            }
        } else {
            self.since.remove(id);
            (0.0, false)
        };
        let (lo, hi) = (self.below.unwrap_or(f64::NAN), self.above.unwrap_or(f64::NAN));
        out.push(ts, value, score, f64::NAN, lo, hi, anomalous);
    }
}

impl Operator for Threshold {
    fn forget(&mut self, ids: &[SeriesId]) {
        for id in ids {
            self.since.remove(id);
        }
    }

    fn process(&mut self, inputs: &[Data], _ctx: &mut OpCtx) -> Result<Data, OpError> {
        let mut out = Vec::new();
        match inputs.first() {
            Some(Data::Series(s)) => {
                for col in &s.series {
                    let mut o = ScoreColumn::new(col.id.clone());
                    o.annotations = col.annotations.clone();
                    for (&ts, &v) in col.ts.iter().zip(&col.values) {
                        self.one(&col.id, ts, v, v, &mut o);
                    }
                    out.push(o);
                }
            }
            Some(Data::Scores(s)) => {
                for col in &s.series {
                    let mut o = ScoreColumn::new(col.id.clone());
                    o.annotations = col.annotations.clone();
                    for i in 0..col.len() {
                        self.one(&col.id, col.ts[i], col.score[i], col.value[i], &mut o);
                    }
                    out.push(o);
                }
            }
            Some(other) => return Err(OpError::Invalid(format!("threshold takes Series or Scores, got {}", other.kind()))),
            None => return Err(OpError::Invalid("missing input".into())),
        }
        Ok(Data::Scores(Arc::new(ScoresData { series: out })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{SeriesColumn, SeriesData};

    #[test]
    fn suppress_reports_a_sustained_shift_once_and_a_worse_one_again() {
        // Noise around 10 for 100 samples, then a shift to 30 for 20, then to 60 for 5.
        let mut c = SeriesColumn::new(SeriesId::named("x"));
        for i in 0..125i64 {
            let level = if i < 100 {
                10.0
            } else if i < 120 {
                30.0
            } else {
                60.0
            };
            c.push(i * 60_000, level + ((i * 7) % 5 - 2) as f64 * 0.3);
        }
        let data = Data::Series(Arc::new(SeriesData { series: vec![c] }));
        let flags = |suppress_ms: i64| {
            let mut z = ZScore::new(86_400_000, true, 4.0, 20).with_suppress(suppress_ms);
            let out = z.process(std::slice::from_ref(&data), &mut OpCtx::new(0)).unwrap();
            let Data::Scores(s) = out else { panic!("scores") };
            let col = &s.series[0];
            let reported: Vec<usize> = (0..col.len()).filter(|&i| col.anomalous[i]).collect();
            assert!(reported.iter().all(|&i| col.score[i] > 0.0), "a flag has its score");
            reported
        };
        let every = flags(0);
        assert!(every.len() >= 20, "point-wise: the shifted samples are flagged one by one: {every:?}");
        let events = flags(86_400_000);
        assert_eq!(events.first(), Some(&100), "the shift is reported when it starts: {events:?}");
        assert!(events.len() < every.len() / 4, "then not again and again: {events:?}");
        assert!(events.iter().any(|&i| i >= 120), "a worse deviation is reported again: {events:?}");
    }

    #[test]
    fn a_window_too_short_for_min_samples_says_so_once() {
        // Five-minute data in a one-hour window: 12 samples, never the 30 needed.
        let series = |from: i64, n: i64| {
            let mut c = SeriesColumn::new(SeriesId::named("x"));
            for i in from..from + n {
                c.push(i * 300_000, 10.0);
            }
            Data::Series(Arc::new(SeriesData { series: vec![c] }))
        };
        let mut z = ZScore::new(3_600_000, true, 4.0, 30);
        let mut ctx = OpCtx::new(0);
        z.process(&[series(0, 10)], &mut ctx).unwrap();
        assert!(ctx.counted.is_empty(), "the window is still filling");
        let mut ctx = OpCtx::new(0);
        z.process(&[series(10, 20)], &mut ctx).unwrap();
        assert_eq!(ctx.counted, [("window_below_min_samples", 1)]);
        let mut ctx = OpCtx::new(0);
        z.process(&[series(30, 20)], &mut ctx).unwrap();
        assert!(ctx.counted.is_empty(), "said once per stage");
        // A window that holds enough never warns.
        let mut ok = ZScore::new(3_600_000 * 3, true, 4.0, 30);
        let mut ctx = OpCtx::new(0);
        ok.process(&[series(0, 100)], &mut ctx).unwrap();
        assert!(ctx.counted.is_empty());
    }

    #[test]
    fn zscore_is_causal_and_flags_a_spike() {
        let mut c = SeriesColumn::new(SeriesId::named("x"));
        for i in 0..100 {
            c.push(i * 1000, 10.0 + (i % 3) as f64);
        }
        c.push(100_000, 50.0);
        let mut z = ZScore::new(3_600_000, true, 4.0, 30);
        let out = z.process(&[Data::Series(Arc::new(SeriesData { series: vec![c] }))], &mut OpCtx::new(0)).unwrap();
        let Data::Scores(s) = out else { panic!() };
        let col = &s.series[0];
        assert_eq!(col.len(), 101, "one score per input sample");
        assert_eq!(col.score[0], 0.0, "no score before min_samples");
        assert!(!col.is_scored(0) && !col.is_scored(29) && col.is_scored(30), "{:?}", col.unscored);
        assert!(col.anomalous[100] && col.score[100] > 0.9);
        assert!(!col.anomalous[50]);
        assert!(col.score.iter().all(|s| (0.0..=1.0).contains(s)));
    }

    #[test]
    fn threshold_waits_for_its_duration() {
        let mut c = SeriesColumn::new(SeriesId::named("x"));
        for (t, v) in [(0, 95.0), (60_000, 96.0), (120_000, 97.0), (180_000, 10.0)] {
            c.push(t, v);
        }
        let mut th = Threshold::new(Some(90.0), None, 120_000);
        let Data::Scores(s) = th.process(&[Data::Series(Arc::new(SeriesData { series: vec![c] }))], &mut OpCtx::new(0)).unwrap() else {
            panic!()
        };
        assert_eq!(s.series[0].anomalous, vec![false, false, true, false]);
    }
}
