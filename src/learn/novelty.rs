//! The novelty detector behind `stdlib/detect.vigil`'s `nab` stage (the `novelty`
//! operator), version 2: the channels of version 1 (how new is this value against the
//! series' recent past, how far is it from what the series does *at this time of day and
//! week*, how new is the last half hour's shape against the same half hour on earlier
//! days), each scaled by the recent robust range, but calibrated by an HTM-style
//! likelihood — the Gaussian tail probability of the channel's current surprise under the
//! mean and variance of its own last two days — so that one threshold serves very
//! different series. Cost per point and memory are bounded.
//!
//! Per point `i` at time `t`, from the points before it only (`P` = samples per day,
//! inferred from the median step of the first 50 timestamps; `m = max(4, round(P/48))`, a
//! half-hour window at 5-minute data; `h = round(m/2)`):
//! - value novelty `dv = max(0, min_j |x_i − x_j| − q)` over the *reference*: the last
//!   `max(ref_days·P, 8 064)` points (8 064 = 28 days at 5-minute data, so that hourly
//!   and slower series keep as many points; at most `memory`), kept as an ordered
//!   multiset (a B-tree: O(log n) to add, forget and find the nearest value); `q` is the
//!   smallest non-zero step seen (integer counts are not novel by one unit);
//! - context novelty `dc`: the distance of `x_i` outside the envelope `[min, max]` of the
//!   *context* — the values at `t − k·day` (k = 1…7) and `t − k·week` (k = 1…`ctx_weeks`),
//!   each ±`h` steps (found by binary search on the timestamps, so gaps and irregular
//!   steps are fine), less `q`; it must persist: the channel takes the smallest `dc` of
//!   the last `ctx_persist·m` points;
//! - shape novelty `ds`: the RMS distance of the last `m` values to the nearest window of
//!   `m` values ending at one of those context positions (≤ 9·(2h+1) candidates, each
//!   abandoned as soon as it is farther than the best);
//! - severity `u = d / S`, with `S` the spread between the 0.1% and 99.9% quantiles of the
//!   reference (recomputed every `P/8` points);
//! - context noise floor: the context severity is taken above its own `floor_q_ctx`
//!   quantile over the last 16 days (a sliding 1 000-bin histogram of `r`, O(1));
//! - likelihood per channel: `r = ln(1 + 100·u)`; `z = (r − μ) / max(σ, 0.03)` with `μ`,
//!   `σ` the mean and standard deviation of the channel's `r` over the last `long_days`
//!   (2) days (none before one day of history); the evidence is the log-likelihood
//!   `e = −2·ln(2·Q(z))` for `z > 0` (0 otherwise; `Q` the standard normal upper tail,
//!   computed in log form so it never saturates; `e ≈ z²` for large `z`);
//! - odds `max_c u_c·e_c^0.75` (severity × evidence: a tail probability alone cannot tell a
//!   1%-of-range blip on a flat series from a jump), score `odds / (1 + odds)`, 0 for the
//!   first `max(50, 2·P)` points (a day of reference, then a day of each channel's own
//!   history for its likelihood: a no-anomaly series raises nothing while they fill);
//! - event-level reporting: a score is kept only when it exceeds every score of the
//!   preceding `suppress` period *and* its odds are at least `odds_factor` (2) times those
//!   of the last score reported within that period.
//!
//! Scores are invariant to scaling the series (every distance is divided by the range).
//! Memory per series is bounded by `max(ref_days·P, 8 064, 14·P)` points (and by
//! `memory`): timestamps and values in a ring (16 bytes a point), the reference multiset
//! (≤ ~40 bytes a distinct value), three likelihood histories of 2 days (8 bytes a point
//! each) and one 16-day histogram (2 bytes a point) — 178 688 B measured after 15 902
//! rows of a 5-minute series (Twitter CRM), 499 216 B in the worst case (every value
//! distinct) at 5-minute data, whatever the history's length; see
//! [`NoveltyState::memory_bytes`]. Time per point is bounded likewise
//! (≈ 2–3 µs on one core: 290 000–500 000 points/s on the NAB dev corpus).
//!
//! Chosen by leave-one-category-out cross-validation on NAB dev (`examples/nab_cv.rs`;
//! BENCHMARKS.md "Detection"): dev 79.88 at threshold 0.793, CV 77.83 (the version before
//! scored 78.89 and 77.25), the same setting in all 7 folds and a threshold of 0.793 in 5;
//! on the generated labelled set (`eval::synth`) 81.76 (66.88 at the dev threshold; the
//! version before 52.83 and 36.84).

use std::collections::{BTreeMap, VecDeque};

use crate::time::Timestamp;

/// Points used to infer the sampling step; nothing is scored before them.
pub const WARM: usize = 50;
const DAY_MS: i64 = 86_400_000;
/// Severity gain inside the log: `ln(1 + 100·u)` makes 1% of the range the knee between
/// "noise" and "novel" (kept from version 1).
const GAIN: f64 = 100.0;
/// The likelihood's standard-deviation floor on `r`: a channel that was flat for days does
/// not turn a tiny wobble into a huge z (kept from version 1).
const SD_FLOOR: f64 = 0.03;
/// Odds = severity × evidence^0.75: for large z that is `u·z^1.5`, version 1's exponent.
const EVIDENCE_EXP: f64 = 0.75;
/// Quantiles of the reference that bound the range `S`.
const TAIL: f64 = 0.001;
/// The reference holds at least this many points: 28 days at 5-minute data. An hourly
/// series has only 672 points in 28 days, too few for a slowly seasonal one (on dev:
/// ambient_temperature's false alarms 10 → 5).
const REF_MIN_POINTS: f64 = 8_064.0;
/// Days of context at the same time of day (one week: every weekday once).
const CTX_DAYS: i64 = 7;
/// Half-hour shape windows: `P / 48` points.
const SHAPES_PER_DAY: f64 = 48.0;
/// Days over which the context floor's quantile is taken.
const FLOOR_DAYS: f64 = 16.0;
/// Histogram of `r` for the floor: bins of 0.02 on [0, 20) (r = 20 is u ≈ 5·10⁶).
const QBINS: usize = 1000;
const QBIN_W: f64 = 0.02;

/// The constants searched by leave-one-category-out cross-validation (the scratch harness
/// `nabcv`); `Default` is the setting chosen in every fold.
#[derive(Clone, Debug)]
pub struct Params {
    /// Days of recent history a value is compared with (at least 8 064 points).
    pub ref_days: f64,
    /// Weeks of same-time-of-week context.
    pub ctx_weeks: f64,
    /// How long (in shape windows) a context deviation must last (grid: 0.5, 1).
    pub ctx_persist: f64,
    /// Noise-floor quantile of the context channel, 0 = none (grid: 0, 0.999).
    pub floor_q_ctx: f64,
    /// A later report within the suppression period needs this many times the odds of
    /// the last one (grid: 1, 2).
    pub odds_factor: f64,
    /// Days of history of each channel's likelihood (mean and variance of `r`).
    pub long_days: f64,
}

impl Default for Params {
    fn default() -> Params {
        Params { ref_days: 28.0, ctx_weeks: 2.0, ctx_persist: 0.5, floor_q_ctx: 0.999, odds_factor: 2.0, long_days: 2.0 }
    }
}

impl Params {
    /// Sets a field by name (for the evaluation harness); false if there is no such field.
    pub fn set(&mut self, k: &str, v: f64) -> bool {
        let f = match k {
            "ref_days" => &mut self.ref_days,
            "ctx_weeks" => &mut self.ctx_weeks,
            "ctx_persist" => &mut self.ctx_persist,
            "floor_q_ctx" => &mut self.floor_q_ctx,
            "odds_factor" => &mut self.odds_factor,
            "long_days" => &mut self.long_days,
            _ => return false,
        };
        *f = v;
        true
    }
}

/// A channel's likelihood: the running mean and variance of its `r` over the last `cap`
/// points (HTM's anomaly likelihood with an averaging window of one point).
struct Likelihood {
    hist: VecDeque<f64>,
    cap: usize,
    sum: f64,
    sq: f64,
}

impl Likelihood {
    fn new(cap: usize) -> Likelihood {
        Likelihood { hist: VecDeque::new(), cap: cap.max(2), sum: 0.0, sq: 0.0 }
    }

    /// The evidence `−2·ln(2·Q(z))` (0 for z ≤ 0, or with fewer than `min_n` points of
    /// history) of `r` against the history before it; then adds `r`.
    fn evidence_then_push(&mut self, r: f64, min_n: usize) -> f64 {
        let n = self.hist.len();
        let e = if n >= min_n.max(2) {
            let mu = self.sum / n as f64;
            let sd = ((self.sq / n as f64 - mu * mu).max(0.0)).sqrt().max(SD_FLOOR);
            (-2.0 * (ln_q((r - mu) / sd) + std::f64::consts::LN_2)).max(0.0)
        } else {
            0.0
        };
        self.hist.push_back(r);
        self.sum += r;
        self.sq += r * r;
        if self.hist.len() > self.cap {
            let o = self.hist.pop_front().unwrap_or(0.0);
            self.sum -= o;
            self.sq -= o * o;
        }
        e
    }
}

/// ln erfc(x) for x ≥ 0: Numerical Recipes' `erfcc` (relative error < 1.2·10⁻⁷ everywhere)
/// kept in log form, so that it never underflows.
fn ln_erfc_pos(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.5 * x);
    let poly = -1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07 + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    t.ln() - x * x + poly
}

/// ln Q(z), the log upper tail of the standard normal (never underflows).
pub fn ln_q(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    if x >= 0.0 {
        ln_erfc_pos(x) - std::f64::consts::LN_2
    } else {
        (1.0 - 0.5 * ln_erfc_pos(-x).exp()).ln()
    }
}

/// A sliding-window quantile of `r` by a fixed histogram: O(1) to add and forget.
struct WindowQuantile {
    counts: Vec<u32>,
    ring: VecDeque<u16>,
    cap: usize,
}

impl WindowQuantile {
    fn new(cap: usize) -> WindowQuantile {
        WindowQuantile { counts: vec![0; QBINS], ring: VecDeque::new(), cap: cap.max(1) }
    }

    fn push(&mut self, r: f64) {
        let b = ((r.max(0.0) / QBIN_W) as usize).min(QBINS - 1) as u16;
        self.counts[b as usize] += 1;
        self.ring.push_back(b);
        if self.ring.len() > self.cap {
            if let Some(old) = self.ring.pop_front() {
                self.counts[old as usize] -= 1;
            }
        }
    }

    /// The upper edge of the bin holding quantile `q` (0 while empty).
    fn quantile(&self, q: f64) -> f64 {
        let n = self.ring.len();
        let above = ((1.0 - q) * n as f64).floor() as usize;
        let mut seen = 0usize;
        for b in (0..QBINS).rev() {
            seen += self.counts[b] as usize;
            if seen > above {
                return (b + 1) as f64 * QBIN_W;
            }
        }
        0.0
    }
}

/// Order-preserving map of an f64 to a u64.
fn key(v: f64) -> u64 {
    let b = v.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

fn unkey(k: u64) -> f64 {
    if k >> 63 == 1 {
        f64::from_bits(k & !(1 << 63))
    } else {
        f64::from_bits(!k)
    }
}

/// The reference: an ordered multiset of the last values.
struct Multiset {
    map: BTreeMap<u64, u32>,
    len: usize,
}

impl Multiset {
    fn new() -> Multiset {
        Multiset { map: BTreeMap::new(), len: 0 }
    }

    fn insert(&mut self, v: f64) {
        *self.map.entry(key(v)).or_insert(0) += 1;
        self.len += 1;
    }

    fn remove(&mut self, v: f64) {
        let k = key(v);
        if let Some(c) = self.map.get_mut(&k) {
            *c -= 1;
            if *c == 0 {
                self.map.remove(&k);
            }
            self.len -= 1;
        }
    }

    /// The distance from `v` to the nearest value held (∞ when empty).
    fn nearest(&self, v: f64) -> f64 {
        let k = key(v);
        let mut best = f64::INFINITY;
        if let Some((&a, _)) = self.map.range(k..).next() {
            best = unkey(a) - v;
        }
        if let Some((&b, _)) = self.map.range(..k).next_back() {
            best = best.min(v - unkey(b));
        }
        best
    }

    /// The spread between the `q` and `1 − q` quantiles.
    fn spread(&self, q: f64) -> f64 {
        if self.len < 2 {
            return 0.0;
        }
        let lo_rank = (q * (self.len - 1) as f64).round() as usize;
        let hi_rank = ((1.0 - q) * (self.len - 1) as f64).round() as usize;
        let (mut seen, mut lo) = (0usize, None);
        for (&k, &c) in &self.map {
            let next = seen + c as usize;
            if lo.is_none() && lo_rank < next {
                lo = Some(unkey(k));
            }
            if hi_rank < next {
                return lo.map_or(0.0, |lo| unkey(k) - lo);
            }
            seen = next;
        }
        0.0
    }
}

/// The detector's state for one series.
pub struct NoveltyState {
    p: Params,
    memory: usize,
    suppress_ms: i64,
    pending: Vec<(Timestamp, f64)>,
    /// Samples per day, once inferred.
    per_day: usize,
    m: usize,
    h: usize,
    step_ms: i64,
    /// The history ring (values and their timestamps), at most `cap` points.
    xs: VecDeque<f64>,
    ts: VecDeque<Timestamp>,
    cap: usize,
    reference: Multiset,
    ref_len: usize,
    spread: f64,
    quantum: f64,
    i: usize,
    /// Likelihoods of the value, context and shape channels.
    lik: [Likelihood; 3],
    /// The context severities of the last `ctx_persist·m` points.
    ctx_recent: VecDeque<f64>,
    floor: WindowQuantile,
    floor_u: f64,
    /// Scores of the suppression period, as a monotonic queue of (index, score).
    recent: VecDeque<(usize, f64)>,
    /// The last reported (index, score).
    reported: Option<(usize, f64)>,
    suppress_n: usize,
}

impl NoveltyState {
    /// `memory`: samples kept per series at most; `suppress_ms`: the quiet period after a
    /// detection.
    pub fn new(memory: usize, suppress_ms: i64) -> NoveltyState {
        NoveltyState::with_params(memory, suppress_ms, Params::default())
    }

    /// As [`NoveltyState::new`], with other constants.
    pub fn with_params(memory: usize, suppress_ms: i64, p: Params) -> NoveltyState {
        NoveltyState {
            p,
            memory: memory.max(WARM * 2),
            suppress_ms: suppress_ms.max(0),
            pending: Vec::with_capacity(WARM),
            per_day: 0,
            m: 4,
            h: 2,
            step_ms: 300_000,
            xs: VecDeque::new(),
            ts: VecDeque::new(),
            cap: 0,
            reference: Multiset::new(),
            ref_len: 0,
            spread: 0.0,
            quantum: f64::INFINITY,
            i: 0,
            lik: [Likelihood::new(2), Likelihood::new(2), Likelihood::new(2)],
            ctx_recent: VecDeque::new(),
            floor: WindowQuantile::new(1),
            floor_u: 0.0,
            recent: VecDeque::new(),
            reported: None,
            suppress_n: 0,
        }
    }

    /// Samples per day, once the first 50 points have set it.
    pub fn samples_per_day(&self) -> Option<usize> {
        (self.per_day > 0).then_some(self.per_day)
    }

    /// An estimate of the bytes this series' state holds now.
    pub fn memory_bytes(&self) -> usize {
        let ring = self.xs.capacity() * 8 + self.ts.capacity() * 8;
        // A B-tree entry: key + count + node overhead, about 40 bytes.
        let reference = self.reference.map.len() * 40;
        let lik = self.lik.iter().map(|l| l.hist.capacity() * 8).sum::<usize>();
        let floor = self.floor.counts.capacity() * 4 + self.floor.ring.capacity() * 2;
        std::mem::size_of::<NoveltyState>() + ring + reference + lik + floor + self.recent.capacity() * 16 + self.ctx_recent.capacity() * 8
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
            for (t, v) in pending {
                last = self.step(t, v);
            }
            return last;
        }
        self.step(ts, x)
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
        self.step_ms = (step_s * 1000.0) as i64;
        let p = ((86_400.0 / step_s).round_ties_even() as usize).max(8);
        self.per_day = p;
        self.m = ((p as f64 / SHAPES_PER_DAY).round_ties_even() as usize).max(4);
        self.h = ((self.m as f64 / 2.0).round() as usize).max(1);
        self.ref_len = ((self.p.ref_days * p as f64).max(REF_MIN_POINTS) as usize).clamp(WARM, self.memory);
        let ctx_days = (CTX_DAYS as f64).max(7.0 * self.p.ctx_weeks);
        self.cap = (((ctx_days * p as f64) as usize + self.m + self.h + 2).max(self.ref_len)).min(self.memory);
        let lcap = (self.p.long_days * p as f64) as usize;
        self.lik = [Likelihood::new(lcap), Likelihood::new(lcap), Likelihood::new(lcap)];
        self.floor = WindowQuantile::new((FLOOR_DAYS * p as f64) as usize);
        self.suppress_n = ((self.suppress_ms as f64 / 1000.0) / step_s) as usize;
    }

    /// The ring position of the point nearest to time `t`, if the ring reaches back there.
    fn index_near(&self, t: Timestamp) -> Option<usize> {
        let first = *self.ts.front()?;
        if t < first - self.step_ms {
            return None;
        }
        let k = self.ts.partition_point(|&s| s < t);
        Some(if k == self.ts.len() || (k > 0 && t - self.ts[k - 1] < self.ts[k] - t) { k - 1 } else { k })
    }

    /// Context envelope distance and nearest context shape (squared sum) for `v` at `t`.
    fn context(&self, t: Timestamp, v: f64) -> (f64, f64) {
        let (m, h, n) = (self.m, self.h, self.xs.len());
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        let mut best = f64::INFINITY;
        let weeks = self.p.ctx_weeks as i64;
        let days = (1..=CTX_DAYS).map(|k| k * DAY_MS);
        let week_lags = (1..=weeks).filter(|w| w * 7 > CTX_DAYS).map(|w| w * 7 * DAY_MS);
        for lag in days.chain(week_lags) {
            let Some(c) = self.index_near(t - lag) else { continue };
            for j in c.saturating_sub(h)..=(c + h).min(n - 1) {
                let xj = self.xs[j];
                lo = lo.min(xj);
                hi = hi.max(xj);
                // The window of m values ending at j (not overlapping the newest m).
                if j + 1 >= m && j + m <= n {
                    let mut acc = (v - xj) * (v - xj);
                    for s in 1..m {
                        let d = self.xs[n - s] - self.xs[j - s];
                        acc += d * d;
                        if acc >= best {
                            break;
                        }
                    }
                    best = best.min(acc);
                }
            }
        }
        let dc = if lo.is_finite() { (v - hi).max(lo - v).max(0.0) } else { 0.0 };
        (dc, best)
    }

    fn step(&mut self, t: Timestamp, v: f64) -> f64 {
        let (i, p, m) = (self.i, self.per_day, self.m);
        if let Some(&last) = self.xs.back() {
            let d = (v - last).abs();
            if d > 0.0 {
                self.quantum = self.quantum.min(d);
            }
        }
        let q = if self.quantum.is_finite() { self.quantum } else { 0.0 };
        if i % (p / 8).max(1) == 0 {
            self.spread = self.reference.spread(TAIL);
        }
        let spread = self.spread;
        let dv = if self.reference.len == 0 { 0.0 } else { (self.reference.nearest(v) - q).max(0.0) };
        let (dc, ds2) = if self.xs.is_empty() { (0.0, f64::INFINITY) } else { self.context(t, v) };
        let dc = (dc - q).max(0.0);
        let ds = if ds2.is_finite() { (ds2 / m as f64).sqrt() } else { 0.0 };
        let sev = |d: f64| if i < WARM || spread <= 0.0 { 0.0 } else { d / spread };
        let (uv, mut uc, us) = (sev(dv), sev(dc), sev(ds));
        let persist = (self.p.ctx_persist * m as f64).round() as usize;
        if persist > 1 {
            self.ctx_recent.push_back(uc);
            if self.ctx_recent.len() > persist {
                self.ctx_recent.pop_front();
            }
            uc = self.ctx_recent.iter().copied().fold(f64::INFINITY, f64::min);
        }
        let r = |u: f64| (GAIN * u).ln_1p();
        // The context channel's noise floor (its own quantile over the last 16 days).
        if self.p.floor_q_ctx > 0.0 {
            if i % (m / 2).max(1) == 0 {
                self.floor_u = self.floor.quantile(self.p.floor_q_ctx).exp_m1() / GAIN;
            }
            self.floor.push(r(uc));
        }
        let uc = (uc - self.floor_u).max(0.0);
        // Severity × evidence, per channel; the strongest channel decides.
        let mut odds = 0.0f64;
        for (l, u) in self.lik.iter_mut().zip([uv, uc, us]) {
            let e = l.evidence_then_push(r(u), p);
            odds = odds.max(u * e.powf(EVIDENCE_EXP));
        }
        let s = if i < WARM.max(2 * p) { 0.0 } else { odds / (1.0 + odds) };
        // Remember v.
        self.xs.push_back(v);
        self.ts.push_back(t);
        self.reference.insert(v);
        if self.reference.len > self.ref_len {
            let old = self.xs[self.xs.len() - 1 - self.ref_len];
            self.reference.remove(old);
        }
        if self.xs.len() > self.cap {
            self.xs.pop_front();
            self.ts.pop_front();
        }
        self.i += 1;
        self.suppress(i, s)
    }

    /// Event-level reporting (see the module header).
    fn suppress(&mut self, i: usize, s: f64) -> f64 {
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
        let odds = |s: f64| s / (1.0 - s).max(1e-12);
        let last = match self.reported {
            Some((j, r)) if j + self.suppress_n >= i => r,
            _ => 0.0,
        };
        if s > max_before && odds(s) >= self.p.odds_factor * odds(last) {
            self.reported = Some((i, s));
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

    fn daily(i: usize) -> f64 {
        let day = 288;
        50.0 + 10.0 * (i as f64 * std::f64::consts::TAU / day as f64).sin() + ((i * 7919) % 13) as f64 * 0.1
    }

    fn scores(data: &[(Timestamp, f64)], memory: usize, suppress_ms: i64) -> Vec<f64> {
        let mut d = NoveltyState::new(memory, suppress_ms);
        data.iter().map(|&(t, v)| d.push(t, v)).collect()
    }

    #[test]
    fn the_gaussian_tail_is_accurate_and_never_saturates() {
        // Q(0) = 1/2, Q(1.959964) = 0.025, Q(−3) = 0.998650, Q(10) = 7.6199·10⁻²⁴.
        for (z, q) in [(0.0, 0.5f64), (1.959_964, 0.025), (-3.0, 0.998_650_1), (10.0, 7.619_853e-24)] {
            assert!((ln_q(z) - q.ln()).abs() < 1e-6 * q.ln().abs().max(1.0), "z {z}: {} vs {}", ln_q(z), q.ln());
        }
        // Far in the tail it keeps growing like z²/2 instead of underflowing to −∞.
        let (a, b) = (ln_q(40.0), ln_q(80.0));
        assert!(a.is_finite() && b.is_finite() && b < a && (b / a - 4.0).abs() < 0.05);
        // The evidence is 0 at and below the mean and ≈ z² far above it.
        let mut l = Likelihood::new(100);
        for k in 0..100 {
            l.evidence_then_push(if k % 2 == 0 { 1.0 } else { 0.0 }, 10);
        }
        assert_eq!(l.evidence_then_push(0.5, 10), 0.0);
        let e = l.evidence_then_push(0.5 + 0.5 * 8.0, 10); // z = 8
        assert!((e / 64.0 - 1.0).abs() < 0.1, "{e}");
    }

    #[test]
    fn flags_a_new_level_once_and_not_the_daily_rhythm() {
        // Eight days of a daily sine at 5-minute steps, with a jump to a level never seen.
        let day = 288;
        let data = series(day * 8, |i| if i >= day * 6 && i < day * 6 + 30 { daily(i) + 60.0 } else { daily(i) });
        let mut d = NoveltyState::new(25_000, 12 * 3_600_000);
        let scores: Vec<f64> = data.iter().map(|&(t, v)| d.push(t, v)).collect();
        assert_eq!(d.samples_per_day(), Some(288));
        assert!(scores[..day].iter().all(|&s| s == 0.0), "nothing scored during the first day (nor the second)");
        let normal_max = scores[day * 3..day * 6].iter().copied().fold(0.0, f64::max);
        let jump = scores[day * 6..day * 6 + 30].iter().copied().fold(0.0, f64::max);
        assert!(jump > 0.99 && normal_max < 0.5, "jump {jump} vs normal {normal_max}");
        let reports: Vec<f64> = scores[day * 6..day * 6 + 30].iter().copied().filter(|&s| s > 0.0).collect();
        assert!(reports[0] > 0.99 && reports.len() <= 2, "{reports:?}");
        assert!(scores.iter().all(|s| (0.0..1.0).contains(s)));
    }

    #[test]
    fn flags_a_night_at_day_level() {
        // The trough of day 8 held for two hours at the daily peak's level: values seen
        // every day, at the wrong time.
        let day = 288;
        let trough = day * 3 / 4;
        let (a, b) = (day * 8 + trough - 12, day * 8 + trough + 12);
        let data = series(day * 10, |i| if (a..b).contains(&i) { daily(i + day / 2) } else { daily(i) });
        let scores = scores(&data, 25_000, 12 * 3_600_000);
        let normal_max = scores[day * 3..a].iter().copied().fold(0.0, f64::max);
        let hit = scores[a..b].iter().copied().fold(0.0, f64::max);
        assert!(hit > 0.5 && hit > 2.0 * normal_max, "contextual anomaly {hit} vs normal {normal_max}");
        // The value channel alone cannot see it: every value was seen before.
        assert!(data[a..b].iter().all(|&(_, v)| v <= 61.3));
    }

    #[test]
    fn scores_do_not_depend_on_the_series_scale() {
        // ×4 is exact in floating point: every severity is a distance over the range.
        let day = 288;
        let data = series(day * 9, |i| if i >= day * 7 && i < day * 7 + 20 { daily(i) + 25.0 } else { daily(i) });
        let scaled: Vec<(Timestamp, f64)> = data.iter().map(|&(t, v)| (t, 4.0 * v)).collect();
        let (a, b) = (scores(&data, 25_000, 12 * 3_600_000), scores(&scaled, 25_000, 12 * 3_600_000));
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-12));
        assert!(a.iter().copied().fold(0.0, f64::max) > 0.9);
    }

    #[test]
    fn a_rising_score_is_reported_once_per_doubling() {
        let mut d = NoveltyState::new(1000, 3_600_000);
        d.suppress_n = 100;
        let out: Vec<f64> = [0.5, 0.55, 0.6, 0.7, 0.75, 0.8, 0.9].iter().enumerate().map(|(i, &s)| d.suppress(i, s)).collect();
        // Odds 1, then ≥ 2 (0.7: 2.33), then ≥ 4.67 (0.9: 9).
        assert_eq!(out, vec![0.5, 0.0, 0.0, 0.7, 0.0, 0.0, 0.9]);
    }

    #[test]
    fn constant_and_short_series_score_zero() {
        assert!(scores(&series(2000, |_| 7.0), 1000, 0).into_iter().all(|s| s == 0.0));
        assert!(scores(&series(20, |i| i as f64), 1000, 0).into_iter().all(|s| s == 0.0));
    }

    #[test]
    fn memory_is_bounded() {
        let mut d = NoveltyState::new(500, 0);
        for (t, v) in series(3000, |i| (i % 97) as f64) {
            d.push(t, v);
        }
        assert!(d.xs.len() <= 500 && d.ts.len() <= 500 && d.reference.len <= 500);
        // With the default memory, a long 5-minute series stays at its bounded size.
        let mut d = NoveltyState::new(25_000, 0);
        for (t, v) in series(288 * 60, daily) {
            d.push(t, v);
        }
        assert_eq!(d.xs.len(), d.cap);
        assert!(d.cap <= 288 * 28 + 20 && d.lik.iter().all(|l| l.hist.len() <= 288 * 2));
        assert!(d.memory_bytes() < 1_000_000, "{}", d.memory_bytes());
        // Worst case at 5-minute data: every value distinct (one B-tree entry per point).
        let mut d = NoveltyState::new(25_000, 0);
        for (t, v) in series(288 * 60, |i| daily(i) + i as f64 * 1e-6) {
            d.push(t, v);
        }
        assert_eq!(d.reference.map.len(), 8_064);
        assert!(d.memory_bytes() < 600_000, "{}", d.memory_bytes());
        // An hourly series keeps 8 064 points (336 days) in its reference, no more.
        let mut d = NoveltyState::new(25_000, 0);
        for i in 0..10_000usize {
            d.push(i as i64 * 3_600_000, (i % 1000) as f64);
        }
        assert_eq!((d.per_day, d.ref_len, d.reference.len), (24, 8_064, 8_064));
    }
}
