//! Rolling statistics over a trailing time window.
//!
//! A [`RollingWindow`] holds the samples of the last `span` milliseconds of a series
//! and answers moments (sum, mean, standard deviation) and order statistics (min,
//! max, median, MAD, quantiles) about them:
//!
//! * the samples in arrival order, in a `VecDeque<(i64, f64)>`, so eviction pops the
//!   front;
//! * the same values sorted (by [`f64::total_cmp`]) in a `Vec<f64>`, kept sorted by
//!   binary-search insert and remove, so an update is O(log n + memmove) and the
//!   median and quantiles are O(1);
//! * the MAD in O(log n): the k-th smallest |x − median| is the k-th smallest element
//!   of two sorted sequences (the distances going left from the median and going
//!   right), found by a binary search without building either sequence;
//! * the sum and sum of squares of `x − shift` maintained incrementally, where
//!   `shift` is a sample value near the centre of the window. Shifting keeps the
//!   variance accurate for large offsets (values around 1e9 with small noise).
//!   To bound floating-point drift the sums are recomputed exactly every 4096
//!   evictions, and also as soon as cancellation threatens them: when the centred sum
//!   of squares falls below 2⁻²⁰ of the largest shifted sum of squares seen since the
//!   last recomputation (a huge sample left the window, or the level moved far from
//!   `shift`).
//!
//! ```
//! use vigil::stats::RollingWindow;
//! let mut w = RollingWindow::new(1_000);
//! for (ts, v) in [(0, 1.0), (400, 5.0), (800, 3.0), (1_200, 7.0)] {
//!     w.push(ts, v);
//! }
//! // the sample at 0 is out of the window [201, 1200]
//! assert_eq!(w.len(), 3);
//! assert_eq!(w.median(), Some(5.0));
//! assert_eq!(w.mean(), Some(5.0));
//! assert_eq!(w.std(), Some(2.0));
//! assert_eq!(w.mad(), Some(2.0));
//! assert_eq!(w.quantile(0.25), Some(4.0));
//! ```

use std::cmp::Ordering;
use std::collections::VecDeque;

/// Scale factor turning the unscaled [`RollingWindow::mad`] into a sigma estimate that
/// is consistent for normally distributed data (1 / Φ⁻¹(3/4)).
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// Evictions between two exact recomputations of the running sums.
const RECOMPUTE_EVERY: u32 = 4096;

/// The centred sum of squares may fall to this fraction of the peak shifted sum of
/// squares before the running sums are recomputed (cancellation guard).
const CANCELLATION_RATIO: f64 = 1.0 / 1_048_576.0; // 2^-20

/// Below this capacity the buffers are never shrunk.
const MIN_SHRINK_CAPACITY: usize = 256;

/// From this many samples evicted at once, the sorted values are filtered in one
/// merge pass (O(n + k log k)) instead of k binary-search removals (O(k n) memmove).
const BULK_EVICTION: usize = 8;

/// The median and the median absolute deviation of `values` (None when empty; NaNs are
/// ignored).
pub fn median_mad(values: &[f64]) -> Option<(f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable_by(f64::total_cmp);
    let mid = |s: &[f64]| if s.len() % 2 == 1 { s[s.len() / 2] } else { (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0 };
    let m = mid(&v);
    let mut dev: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
    dev.sort_unstable_by(f64::total_cmp);
    Some((m, mid(&dev)))
}

/// The values of the last `span` milliseconds of a series, with order statistics.
///
/// Timestamps are pushed in non-decreasing order (equal timestamps allowed). A
/// sample at `ts` stays in the window while `ts > now - span`, where `now` is the
/// newest timestamp pushed or passed to [`evict_until`](Self::evict_until): it covers
/// exactly the last `span` milliseconds, and two samples exactly `span` apart are
/// never in the window together.
///
/// All statistics describe the samples currently held; those that need at least one
/// sample return `None` on an empty window ([`std`](Self::std) needs two).
#[derive(Debug, Clone)]
pub struct RollingWindow {
    span_ms: i64,
    max_len: usize,
    /// Samples in arrival order.
    samples: VecDeque<(i64, f64)>,
    /// The same values, sorted by `f64::total_cmp`.
    sorted: Vec<f64>,
    /// Reference value the running sums are taken relative to.
    shift: f64,
    /// Σ (x − shift) over the window.
    sum_d: f64,
    /// Σ (x − shift)² over the window.
    sumsq_d: f64,
    /// The largest `sumsq_d` since the last exact recomputation: the scale of the
    /// rounding errors the running sums may carry.
    peak_sumsq_d: f64,
    /// Evictions since the last exact recomputation.
    evictions: u32,
}

impl RollingWindow {
    /// A window that keeps the samples of the last `span_ms` milliseconds: those whose
    /// `ts >= newest - span_ms + 1`. `span_ms` below 1 is taken as 1 (only samples at
    /// the newest timestamp).
    pub fn new(span_ms: i64) -> Self {
        Self::with_max_len(span_ms, usize::MAX)
    }

    /// Like [`new`](Self::new), but the window also never holds more than `max_len`
    /// samples: the oldest are dropped first. A `max_len` of 0 keeps nothing.
    pub fn with_max_len(span_ms: i64, max_len: usize) -> Self {
        RollingWindow {
            span_ms: span_ms.max(1),
            max_len,
            samples: VecDeque::new(),
            sorted: Vec::new(),
            shift: 0.0,
            sum_d: 0.0,
            sumsq_d: 0.0,
            peak_sumsq_d: 0.0,
            evictions: 0,
        }
    }

    /// The window's span in milliseconds.
    pub fn span_ms(&self) -> i64 {
        self.span_ms
    }

    /// The most samples the window holds (`usize::MAX` when unbounded).
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Adds the value `v` observed at `ts`, after evicting the samples that fell out of
    /// the window as seen from `ts` (and the oldest beyond `max_len`).
    ///
    /// `v` must be finite (callers skip NaN and infinities): a non-finite value trips
    /// a debug assertion, and release builds evict as usual but do not add it.
    /// Timestamps must be non-decreasing; an out-of-order sample does not panic, but
    /// eviction follows arrival order, so it leaves the window with its neighbours.
    pub fn push(&mut self, ts: i64, v: f64) {
        self.push_at(ts, v);
    }

    /// [`push`](Self::push), returning where `v` went in [`sorted_values`](Self::sorted_values)
    /// (None when it was not added), so that statistics of the window as it was before
    /// `v` — after the eviction by time and by `max_len` — can be read with [`median_mad_excluding`](Self::median_mad_excluding).
    ///
    /// In the steady state (one sample leaves as one arrives) the sorted values are
    /// shifted once, between the leaving value's place and the new one's, rather than by
    /// a removal and an insertion.
    pub fn push_at(&mut self, ts: i64, v: f64) -> Option<usize> {
        debug_assert!(v.is_finite(), "RollingWindow::push: non-finite value {v}");
        if v.is_finite() && self.samples.len() >= 2 && self.samples.len() <= self.max_len {
            if let Some(cutoff) = ts.checked_sub(self.span_ms) {
                if self.samples[0].0 <= cutoff && self.samples[1].0 > cutoff {
                    let (_, old) = self.samples.pop_front().expect("two samples");
                    self.samples.push_back((ts, v));
                    let at = replace_sorted(&mut self.sorted, old, v);
                    let (d_old, d) = (old - self.shift, v - self.shift);
                    self.sum_d += d - d_old;
                    self.sumsq_d += d * d - d_old * d_old;
                    self.peak_sumsq_d = self.peak_sumsq_d.max(self.sumsq_d);
                    self.evictions = self.evictions.saturating_add(1);
                    self.settle();
                    return Some(at);
                }
            }
        }
        self.evict_older(ts);
        if !v.is_finite() || self.max_len == 0 {
            self.settle();
            return None;
        }
        while self.samples.len() >= self.max_len {
            self.pop_oldest();
        }
        if self.samples.is_empty() {
            self.reset_sums(v);
        }
        self.samples.push_back((ts, v));
        let at = self.sorted.partition_point(|x| x.total_cmp(&v) != Ordering::Greater);
        self.sorted.insert(at, v);
        let d = v - self.shift;
        self.sum_d += d;
        self.sumsq_d += d * d;
        self.peak_sumsq_d = self.peak_sumsq_d.max(self.sumsq_d);
        self.settle();
        Some(at)
    }

    /// Evicts the samples that are out of the window as seen from time `now`, without
    /// adding one — so the statistics describe the window *before* a sample at `now`,
    /// for causal scoring.
    pub fn evict_until(&mut self, now: i64) {
        if self.evict_older(now) {
            self.settle();
        }
    }

    /// Removes every sample (keeping the span, the length limit and the allocations).
    pub fn clear(&mut self) {
        self.samples.clear();
        self.sorted.clear();
        self.reset_sums(0.0);
    }

    /// The number of samples in the window.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the window holds no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The samples `(ts, value)` in arrival order, oldest first.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (i64, f64)> + DoubleEndedIterator + '_ {
        self.samples.iter().copied()
    }

    /// The values in ascending order (by [`f64::total_cmp`]).
    pub fn sorted_values(&self) -> &[f64] {
        &self.sorted
    }

    /// The timestamp of the oldest sample held.
    pub fn oldest_ts(&self) -> Option<i64> {
        self.samples.front().map(|&(ts, _)| ts)
    }

    /// The timestamp of the newest sample held.
    pub fn newest_ts(&self) -> Option<i64> {
        self.samples.back().map(|&(ts, _)| ts)
    }

    /// The sum of the values (0 for an empty window).
    pub fn sum(&self) -> f64 {
        if self.samples.is_empty() {
            0.0
        } else {
            self.shift * self.len() as f64 + self.sum_d
        }
    }

    /// The arithmetic mean.
    pub fn mean(&self) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        Some(self.shift + self.sum_d / self.len() as f64)
    }

    /// The sample variance (n − 1 denominator); `None` below 2 samples.
    pub fn variance(&self) -> Option<f64> {
        let n = self.len();
        if n < 2 {
            return None;
        }
        Some(self.centred_sumsq() / (n - 1) as f64)
    }

    /// The sample standard deviation (n − 1 denominator); `None` below 2 samples.
    pub fn std(&self) -> Option<f64> {
        self.variance().map(f64::sqrt)
    }

    /// The smallest value.
    pub fn min(&self) -> Option<f64> {
        self.sorted.first().copied()
    }

    /// The largest value.
    pub fn max(&self) -> Option<f64> {
        self.sorted.last().copied()
    }

    /// The median: the middle value, or the midpoint of the two middle values for an
    /// even number of samples.
    pub fn median(&self) -> Option<f64> {
        let x = &self.sorted;
        let n = x.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(x[n / 2]),
            _ => Some(x[n / 2 - 1].midpoint(x[n / 2])),
        }
    }

    /// The median absolute deviation from the median, unscaled: the median of
    /// `|x - median|`. Multiply by [`MAD_TO_SIGMA`] for a normal-consistent sigma.
    /// O(log n).
    pub fn mad(&self) -> Option<f64> {
        self.median_mad().map(|(_, mad)| mad)
    }

    /// The median and the MAD together, sharing the median's computation (the robust
    /// z-score needs both for every sample).
    pub fn median_mad(&self) -> Option<(f64, f64)> {
        let x = &self.sorted;
        median_mad_of(x.len(), |i| x[i])
    }

    /// The median and MAD of the window without the value at position `j` of
    /// [`sorted_values`](Self::sorted_values): the statistics before the sample that
    /// [`push_at`](Self::push_at) placed there. `None` when nothing else is left.
    pub fn median_mad_excluding(&self, j: usize) -> Option<(f64, f64)> {
        let x = &self.sorted;
        if j >= x.len() {
            return self.median_mad();
        }
        median_mad_of(x.len() - 1, |i| x[i + usize::from(i >= j)])
    }

    /// The quantile `q` (in `[0, 1]`) with linear interpolation between order
    /// statistics — type 7 of Hyndman & Fan, numpy's default: with the values sorted
    /// as `x[0..n]`, `h = (n - 1) q` and the result is `x[⌊h⌋] + (h - ⌊h⌋)(x[⌊h⌋+1] - x[⌊h⌋])`.
    /// `None` on an empty window or when `q` is outside `[0, 1]` (or NaN).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.sorted.is_empty() || !(0.0..=1.0).contains(&q) {
            return None;
        }
        Some(quantile_sorted(&self.sorted, q))
    }

    /// Approximate heap bytes held by the window's buffers (their capacity), for memory
    /// accounting.
    pub fn heap_bytes(&self) -> usize {
        self.samples.capacity() * std::mem::size_of::<(i64, f64)>() + self.sorted.capacity() * std::mem::size_of::<f64>()
    }

    /// Pops the samples with `ts <= now - span` from the front. Returns whether any
    /// was evicted; the caller settles the running sums.
    fn evict_older(&mut self, now: i64) -> bool {
        // `now - span` below i64::MIN: nothing is that old.
        let Some(cutoff) = now.checked_sub(self.span_ms) else {
            return false;
        };
        let k = self.samples.iter().take_while(|&&(ts, _)| ts <= cutoff).count();
        if k == self.samples.len() {
            // everything goes (a gap in the data): settle() resets the sums
            self.samples.clear();
            self.sorted.clear();
        } else if k < BULK_EVICTION {
            for _ in 0..k {
                self.pop_oldest(); // counts the evictions
            }
        } else {
            let mut gone = Vec::with_capacity(k);
            for (_, v) in self.samples.drain(..k) {
                let d = v - self.shift;
                self.sum_d -= d;
                self.sumsq_d -= d * d;
                gone.push(v);
            }
            remove_sorted(&mut self.sorted, &mut gone);
            self.evictions = self.evictions.saturating_add(u32::try_from(k).unwrap_or(u32::MAX));
        }
        k > 0
    }

    /// Removes the oldest sample from the deque, the sorted values and the sums.
    fn pop_oldest(&mut self) {
        let Some((_, v)) = self.samples.pop_front() else {
            return;
        };
        if let Ok(at) = self.sorted.binary_search_by(|x| x.total_cmp(&v)) {
            self.sorted.remove(at);
        }
        let d = v - self.shift;
        self.sum_d -= d;
        self.sumsq_d -= d * d;
        self.evictions = self.evictions.saturating_add(1);
    }

    /// After a change: resets or recomputes the running sums when due, and returns
    /// memory when the window has shrunk a lot.
    fn settle(&mut self) {
        if self.samples.is_empty() {
            self.reset_sums(0.0);
        } else if self.evictions >= RECOMPUTE_EVERY || self.centred_sumsq_raw() < self.peak_sumsq_d * CANCELLATION_RATIO {
            self.recompute();
        }
        let cap = self.sorted.capacity();
        if cap > MIN_SHRINK_CAPACITY && self.sorted.len() * 4 < cap {
            let target = (self.sorted.len() * 2).max(MIN_SHRINK_CAPACITY);
            self.sorted.shrink_to(target);
            self.samples.shrink_to(target);
        }
    }

    /// Zero sums relative to `shift`.
    fn reset_sums(&mut self, shift: f64) {
        self.shift = shift;
        self.sum_d = 0.0;
        self.sumsq_d = 0.0;
        self.peak_sumsq_d = 0.0;
        self.evictions = 0;
    }

    /// Recomputes the sums exactly from the samples, relative to a new shift: the
    /// middle sample value, which is within one standard deviation of the mean.
    fn recompute(&mut self) {
        let n = self.sorted.len();
        if n == 0 {
            self.reset_sums(0.0);
            return;
        }
        let shift = self.sorted[n / 2];
        let (mut sum, mut sumsq) = (0.0, 0.0);
        for &(_, v) in &self.samples {
            let d = v - shift;
            sum += d;
            sumsq += d * d;
        }
        self.shift = shift;
        self.sum_d = sum;
        self.sumsq_d = sumsq;
        self.peak_sumsq_d = sumsq;
        self.evictions = 0;
    }

    /// Σ (x − mean)² from the running sums, possibly slightly negative from rounding.
    fn centred_sumsq_raw(&self) -> f64 {
        let n = self.len();
        if n == 0 {
            return 0.0;
        }
        self.sumsq_d - self.sum_d * self.sum_d / n as f64
    }

    /// Σ (x − mean)², clamped at 0.
    fn centred_sumsq(&self) -> f64 {
        self.centred_sumsq_raw().max(0.0)
    }
}

/// The median and MAD of the `n` non-decreasing values `x(0..n)`.
#[inline]
fn median_mad_of(n: usize, x: impl Fn(usize) -> f64) -> Option<(f64, f64)> {
    let m = match n {
        0 => return None,
        _ if n % 2 == 1 => x(n / 2),
        _ => x(n / 2 - 1).midpoint(x(n / 2)),
    };
    // x[..p] < m <= x[p..]: usually p is the middle (no ties with the median).
    let mid = n / 2 - usize::from(n.is_multiple_of(2));
    let p = if mid == 0 || x(mid - 1) < m {
        if x(mid) < m {
            mid + 1
        } else {
            mid
        }
    } else {
        let (mut lo, mut hi) = (0, mid);
        while lo < hi {
            let h = lo + (hi - lo) / 2;
            if x(h) < m {
                lo = h + 1;
            } else {
                hi = h;
            }
        }
        lo
    };
    // Going left from the median, the distances m - x[p-1-i] grow with i; going right,
    // the distances x[p+j] - m grow with j.
    let left = |i: usize| m - x(p - 1 - i);
    let right = |j: usize| x(p + j) - m;
    let (lo, hi) = kth_pair_of_two(p, left, n - p, right, n / 2 - usize::from(n.is_multiple_of(2)));
    Some((m, if n % 2 == 1 { lo } else { lo.midpoint(hi) }))
}

/// Replaces the value `old` (present) with `v` in the sorted `x`, keeping it sorted with
/// one shift of the values between their places; returns where `v` went.
fn replace_sorted(x: &mut [f64], old: f64, v: f64) -> usize {
    let Ok(r) = x.binary_search_by(|e| e.total_cmp(&old)) else {
        debug_assert!(false, "replace_sorted: {old} is not in the window");
        return x.len();
    };
    if v.total_cmp(&old) != Ordering::Less {
        // v goes right of r: before the first value greater than it.
        let k = r + 1 + x[r + 1..].partition_point(|e| e.total_cmp(&v) != Ordering::Greater);
        x.copy_within(r + 1..k, r);
        x[k - 1] = v;
        k - 1
    } else {
        // v goes left of r: after the values not greater than it.
        let k = x[..r].partition_point(|e| e.total_cmp(&v) != Ordering::Greater);
        x.copy_within(k..r, k + 1);
        x[k] = v;
        k
    }
}

/// Removes the values `gone` (a sub-multiset of `sorted`; reordered here) from
/// `sorted` in one merge pass.
fn remove_sorted(sorted: &mut Vec<f64>, gone: &mut [f64]) {
    gone.sort_unstable_by(f64::total_cmp);
    let mut g = 0;
    sorted.retain(|x| {
        while g < gone.len() && gone[g].total_cmp(x) == Ordering::Less {
            g += 1; // not present (cannot happen): skip it
        }
        if g < gone.len() && gone[g].total_cmp(x) == Ordering::Equal {
            g += 1;
            false
        } else {
            true
        }
    });
}

/// The type-7 quantile of non-empty sorted `x`, `q` in `[0, 1]`.
fn quantile_sorted(x: &[f64], q: f64) -> f64 {
    let n = x.len();
    let h = (n - 1) as f64 * q;
    let lo = (h.floor() as usize).min(n - 1);
    let t = h - lo as f64;
    if lo + 1 >= n || t <= 0.0 {
        return x[lo];
    }
    let (a, b) = (x[lo], x[lo + 1]);
    // Interpolate from the nearer end (like numpy), and stay within [a, b].
    let r = if t < 0.5 { a + (b - a) * t } else { b - (b - a) * (1.0 - t) };
    r.max(a).min(b)
}

/// The k-th and (k+1)-th smallest (0-based) elements of the union of two non-decreasing
/// sequences, from one binary search: after the split that takes the k + 1 smallest, the
/// next element is the smaller of the two sequences' next ones. The second is NaN when
/// there is no (k+1)-th element.
fn kth_pair_of_two(a_len: usize, a: impl Fn(usize) -> f64, b_len: usize, b: impl Fn(usize) -> f64, k: usize) -> (f64, f64) {
    debug_assert!(k < a_len + b_len);
    let need = (k + 1).min(a_len + b_len);
    let mut lo = need.saturating_sub(b_len);
    let mut hi = need.min(a_len);
    while lo < hi {
        let i = lo + (hi - lo) / 2;
        let j = need - i;
        if b(j - 1) > a(i) {
            lo = i + 1;
        } else {
            hi = i;
        }
    }
    let (i, j) = (lo, need - lo);
    let kth = match (i > 0, j > 0) {
        (true, true) => a(i - 1).max(b(j - 1)),
        (true, false) => a(i - 1),
        (false, true) => b(j - 1),
        (false, false) => f64::NAN,
    };
    let next = match (i < a_len, j < b_len) {
        (true, true) => a(i).min(b(j)),
        (true, false) => a(i),
        (false, true) => b(j),
        (false, false) => f64::NAN,
    };
    (kth, next)
}

/// The k-th smallest (0-based) element of the union of two non-decreasing sequences
/// `a(0..a_len)` and `b(0..b_len)`, for `k < a_len + b_len`, by binary search on how
/// many of the `k + 1` smallest come from `a`. O(log min(a_len, b_len)) lookups.
#[cfg(test)]
fn kth_of_two(a_len: usize, a: impl Fn(usize) -> f64, b_len: usize, b: impl Fn(usize) -> f64, k: usize) -> f64 {
    kth_pair_of_two(a_len, a, b_len, b, k).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious implementation: a list of samples, sorted copies on demand.
    #[derive(Debug)]
    struct Naive {
        span: i64,
        max_len: usize,
        samples: Vec<(i64, f64)>,
    }

    impl Naive {
        fn new(span: i64, max_len: usize) -> Self {
            Naive { span: span.max(1), max_len, samples: Vec::new() }
        }
        fn evict_until(&mut self, now: i64) {
            let span = self.span;
            self.samples.retain(|&(ts, _)| i128::from(ts) > i128::from(now) - i128::from(span));
        }
        fn push(&mut self, ts: i64, v: f64) {
            self.evict_until(ts);
            self.samples.push((ts, v));
            while self.samples.len() > self.max_len {
                self.samples.remove(0);
            }
        }
        fn sorted(&self) -> Vec<f64> {
            let mut x: Vec<f64> = self.samples.iter().map(|s| s.1).collect();
            x.sort_by(f64::total_cmp);
            x
        }
        fn sum(&self) -> f64 {
            self.samples.iter().map(|s| s.1).sum()
        }
        /// The mean, refined once (so it is accurate for large offsets too).
        fn mean(&self) -> Option<f64> {
            let n = self.samples.len() as f64;
            if self.samples.is_empty() {
                return None;
            }
            let rough = self.sum() / n;
            Some(rough + self.samples.iter().map(|s| s.1 - rough).sum::<f64>() / n)
        }
        /// The corrected two-pass algorithm.
        fn std(&self) -> Option<f64> {
            let n = self.samples.len();
            if n < 2 {
                return None;
            }
            let mean = self.mean()?;
            let m2: f64 = self.samples.iter().map(|s| (s.1 - mean) * (s.1 - mean)).sum();
            let c: f64 = self.samples.iter().map(|s| s.1 - mean).sum();
            Some(((m2 - c * c / n as f64) / (n - 1) as f64).max(0.0).sqrt())
        }
        fn median_of(x: &[f64]) -> Option<f64> {
            let n = x.len();
            match n {
                0 => None,
                _ if n % 2 == 1 => Some(x[n / 2]),
                _ => Some(x[n / 2 - 1].midpoint(x[n / 2])),
            }
        }
        fn mad(&self) -> Option<f64> {
            let x = self.sorted();
            let m = Self::median_of(&x)?;
            let mut dev: Vec<f64> = x.iter().map(|v| (v - m).abs()).collect();
            dev.sort_by(f64::total_cmp);
            Self::median_of(&dev)
        }
        fn quantile(&self, q: f64) -> Option<f64> {
            let x = self.sorted();
            if x.is_empty() {
                return None;
            }
            Some(quantile_sorted(&x, q))
        }
    }

    fn close(a: f64, b: f64, rel: f64, abs: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(a.abs()) + abs
    }

    /// Compares every statistic of `w` with the naive implementation.
    fn check(w: &RollingWindow, naive: &Naive) -> Result<(), TestCaseError> {
        let x = naive.sorted();
        prop_assert_eq!(w.len(), x.len());
        prop_assert_eq!(w.is_empty(), x.is_empty());
        prop_assert_eq!(w.sorted_values(), &x[..]);
        let same_samples: Vec<(i64, f64)> = w.iter().collect();
        prop_assert_eq!(&same_samples, &naive.samples);
        prop_assert_eq!(w.min(), x.first().copied());
        prop_assert_eq!(w.max(), x.last().copied());
        prop_assert_eq!(w.median(), Naive::median_of(&x));
        prop_assert_eq!(w.mad(), naive.mad());
        for q in [0.0, 0.1, 0.25, 0.333, 0.5, 0.75, 0.9, 0.99, 1.0] {
            prop_assert_eq!(w.quantile(q), naive.quantile(q), "q = {}", q);
        }
        let abs_sum: f64 = x.iter().map(|v| v.abs()).sum();
        let max_abs = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        // rounding errors of the running sums scale with the spread of the values
        let spread = x.last().map_or(0.0, |hi| hi - x[0]);
        let n = x.len() as f64;
        prop_assert!(close(w.sum(), naive.sum(), 1e-12, 1e-12 * abs_sum + 1e-9 * spread * n), "sum {} vs {}", w.sum(), naive.sum());
        match (w.mean(), naive.mean()) {
            (None, None) => {}
            (Some(m), Some(nm)) => {
                prop_assert!(close(m, nm, 1e-12, 1e-9 * spread), "mean {} vs {}", m, nm);
            }
            (m, nm) => prop_assert!(false, "mean {:?} vs {:?}", m, nm),
        }
        match (w.std(), naive.std()) {
            (None, None) => {}
            (Some(s), Some(ns)) => {
                prop_assert!(close(s, ns, 1e-7, 1e-12 * max_abs), "std {} vs {} over {:?}", s, ns, x);
            }
            (s, ns) => prop_assert!(false, "std {:?} vs {:?}", s, ns),
        }
        Ok(())
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Push after advancing the clock by `dt`.
        Push(i64, f64),
        /// Evict as seen from the clock advanced by `dt` (the clock keeps the advance).
        Evict(i64),
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            3 => (0i32..4).prop_map(f64::from),             // duplicates and equal runs
            3 => -1e3f64..1e3,
            1 => (-1.0f64..1.0).prop_map(|e| 1e9 + e),      // large offset, small noise
            1 => (-1e-6f64..1e-6).prop_map(|e| -5e7 + e),
            1 => Just(0.0),
            1 => Just(-0.0),
            1 => (-150i32..150).prop_map(|e| 10f64.powi(e)), // extreme magnitudes (squares stay finite)
        ]
    }

    fn ops(span: i64) -> impl Strategy<Value = Vec<Op>> {
        let dt = prop_oneof![3 => Just(0i64), 4 => 0..=span, 2 => Just(span), 1 => Just(span - 1), 1 => 0..=3 * span];
        prop::collection::vec(
            prop_oneof![
                6 => (dt.clone(), value()).prop_map(|(d, v)| Op::Push(d, v)),
                1 => dt.prop_map(Op::Evict),
            ],
            0..300,
        )
    }

    fn run(span: i64, max_len: usize, start: i64, ops: &[Op]) -> Result<(), TestCaseError> {
        let mut w = RollingWindow::with_max_len(span, max_len);
        let mut naive = Naive::new(span, max_len);
        let mut now = start;
        check(&w, &naive)?;
        for op in ops {
            match *op {
                Op::Push(dt, v) => {
                    now = now.saturating_add(dt);
                    // The statistics before the sample, read after it was placed.
                    naive.evict_until(now);
                    let mut pre = Naive::new(span, usize::MAX);
                    let keep = naive.samples.len().min(max_len.saturating_sub(1));
                    pre.samples = naive.samples[naive.samples.len() - keep..].to_vec();
                    let before = pre.mad().zip(Naive::median_of(&pre.sorted()));
                    let at = w.push_at(now, v);
                    naive.push(now, v);
                    if let Some(j) = at {
                        prop_assert!(w.sorted_values()[j].total_cmp(&v).is_eq(), "push_at returned where {v} is");
                        let got = w.median_mad_excluding(j).map(|(m, mad)| (mad, m));
                        match (got, before) {
                            (None, None) => {}
                            (Some((a, b)), Some((c, d))) => {
                                prop_assert!(close(a, c, 1e-12, 1e-12) && close(b, d, 1e-12, 1e-12), "excluding: {got:?} vs {before:?}")
                            }
                            _ => prop_assert!(false, "excluding: {got:?} vs {before:?}"),
                        }
                    }
                }
                Op::Evict(dt) => {
                    now = now.saturating_add(dt);
                    w.evict_until(now);
                    naive.evict_until(now);
                }
            }
            check(&w, &naive)?;
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn matches_naive((span, ops) in (1i64..=50).prop_flat_map(|s| (Just(s), ops(s))), start in -1_000_000i64..1_000_000) {
            run(span, usize::MAX, start, &ops)?;
        }

        #[test]
        fn matches_naive_with_max_len(
            (span, ops) in (1i64..=200).prop_flat_map(|s| (Just(s), ops(s))),
            max_len in 0usize..20,
        ) {
            run(span, max_len, 0, &ops)?;
        }

        #[test]
        fn matches_naive_near_i64_limits((span, ops) in (1i64..=50).prop_flat_map(|s| (Just(s), ops(s))), low: bool) {
            run(span, usize::MAX, if low { i64::MIN } else { i64::MAX - 5_000 }, &ops)?;
        }

        #[test]
        fn kth_of_two_matches_merge(
            a in prop::collection::vec(-20i32..20, 0..30),
            b in prop::collection::vec(-20i32..20, 0..30),
        ) {
            let (mut a, mut b) = (a, b);
            a.sort();
            b.sort();
            let mut all: Vec<i32> = a.iter().chain(&b).copied().collect();
            all.sort();
            for (k, &expected) in all.iter().enumerate() {
                let got = kth_of_two(a.len(), |i| f64::from(a[i]), b.len(), |j| f64::from(b[j]), k);
                prop_assert_eq!(got, f64::from(expected));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Many samples in a window, long sequences: exercises the periodic
        /// recomputation and the sums' drift.
        #[test]
        fn long_sequences_match_naive(
            values in prop::collection::vec(value(), 5_000..12_000),
            span in 1i64..400,
            group in 1i64..40,
        ) {
            let mut w = RollingWindow::new(span);
            let mut naive = Naive::new(span, usize::MAX);
            for (i, &v) in values.iter().enumerate() {
                // `group` samples per timestamp: evictions come in batches
                let ts = i as i64 / group;
                w.push(ts, v);
                naive.push(ts, v);
                if i % 97 == 0 {
                    check(&w, &naive)?;
                }
            }
            check(&w, &naive)?;
        }
    }

    fn filled(span: i64, values: &[f64]) -> RollingWindow {
        let mut w = RollingWindow::new(span);
        for (i, &v) in values.iter().enumerate() {
            w.push(i as i64, v);
        }
        w
    }

    #[test]
    fn empty_window() {
        let w = RollingWindow::new(1000);
        assert!(w.is_empty());
        assert_eq!(w.len(), 0);
        assert_eq!(w.sum(), 0.0);
        assert_eq!(w.mean(), None);
        assert_eq!(w.std(), None);
        assert_eq!(w.variance(), None);
        assert_eq!(w.min(), None);
        assert_eq!(w.max(), None);
        assert_eq!(w.median(), None);
        assert_eq!(w.mad(), None);
        assert_eq!(w.quantile(0.5), None);
        assert_eq!(w.oldest_ts(), None);
        assert_eq!(w.heap_bytes(), 0);
    }

    #[test]
    fn single_sample() {
        let w = filled(1000, &[42.5]);
        assert_eq!(w.len(), 1);
        assert_eq!(w.sum(), 42.5);
        assert_eq!(w.mean(), Some(42.5));
        assert_eq!(w.std(), None);
        assert_eq!(w.min(), Some(42.5));
        assert_eq!(w.max(), Some(42.5));
        assert_eq!(w.median(), Some(42.5));
        assert_eq!(w.mad(), Some(0.0));
        assert_eq!(w.quantile(0.0), Some(42.5));
        assert_eq!(w.quantile(0.37), Some(42.5));
        assert_eq!(w.quantile(1.0), Some(42.5));
        assert!(w.heap_bytes() >= 24);
    }

    #[test]
    fn odd_and_even_sizes() {
        let odd = filled(1000, &[5.0, 1.0, 9.0, 3.0, 7.0]);
        assert_eq!(odd.median(), Some(5.0));
        assert_eq!(odd.mad(), Some(2.0)); // |x-5| = 0 4 4 2 2
        assert_eq!(odd.quantile(0.25), Some(3.0));
        assert!((odd.quantile(0.1).unwrap() - 1.8).abs() < 1e-12);
        assert_eq!(odd.quantile(0.75), Some(7.0));
        assert_eq!(odd.quantile(0.625), Some(6.0));
        assert_eq!(odd.std(), Some(10f64.sqrt()));
        let even = filled(1000, &[4.0, 1.0, 10.0, 2.0]);
        assert_eq!(even.median(), Some(3.0));
        assert_eq!(even.mad(), Some(1.5)); // |x-3| = 1 2 7 1 → 1 1 2 7
        assert_eq!(even.quantile(0.5), Some(3.0));
        assert_eq!(even.quantile(1.0 / 3.0), Some(2.0));
        assert_eq!(even.min(), Some(1.0));
        assert_eq!(even.max(), Some(10.0));
        assert_eq!(even.sum(), 17.0);
        assert_eq!(even.mean(), Some(4.25));
        let two = filled(1000, &[1.0, 2.0]);
        assert_eq!(two.median(), Some(1.5));
        assert_eq!(two.mad(), Some(0.5));
        assert_eq!(two.std(), Some(0.5f64.sqrt()));
        // out-of-range quantiles
        assert_eq!(odd.quantile(-0.1), None);
        assert_eq!(odd.quantile(1.1), None);
        assert_eq!(odd.quantile(f64::NAN), None);
    }

    #[test]
    fn many_equal_values() {
        let w = filled(10_000, &[7.0; 1001]);
        assert_eq!(w.median(), Some(7.0));
        assert_eq!(w.mad(), Some(0.0));
        assert_eq!(w.std(), Some(0.0));
        assert_eq!(w.mean(), Some(7.0));
        let mut values = vec![7.0; 1000];
        values.extend([1e6, -1e6, 8.0]);
        let w = filled(10_000, &values);
        assert_eq!(w.median(), Some(7.0));
        assert_eq!(w.mad(), Some(0.0));
    }

    #[test]
    fn eviction_boundaries() {
        let mut w = RollingWindow::new(1000);
        w.push(0, 1.0);
        w.push(999, 2.0);
        assert_eq!(w.len(), 2, "999 ms apart: both inside");
        w.push(1000, 3.0);
        assert_eq!(w.len(), 2, "exactly span apart: the older leaves");
        assert_eq!(w.oldest_ts(), Some(999));
        assert_eq!(w.min(), Some(2.0));
        w.evict_until(1998);
        assert_eq!(w.len(), 2);
        w.evict_until(1999);
        assert_eq!(w.len(), 1);
        assert_eq!(w.newest_ts(), Some(1000));
        // evict_until does not add: the stats describe the window before a new sample
        w.evict_until(2000);
        assert!(w.is_empty());
        assert_eq!(w.mean(), None);
        w.push(2000, 5.0);
        assert_eq!(w.mean(), Some(5.0));

        // equal timestamps stay together
        let mut w = RollingWindow::new(10);
        for v in [1.0, 2.0, 3.0] {
            w.push(100, v);
        }
        assert_eq!(w.len(), 3);
        w.push(109, 4.0);
        assert_eq!(w.len(), 4);
        w.push(110, 5.0);
        assert_eq!(w.len(), 2);

        // span 1: only the newest timestamp; span below 1 is taken as 1
        for span in [1, 0, -5] {
            let mut w = RollingWindow::new(span);
            w.push(5, 1.0);
            w.push(5, 2.0);
            assert_eq!(w.len(), 2);
            w.push(6, 3.0);
            assert_eq!(w.len(), 1);
            assert_eq!(w.span_ms(), 1);
        }
    }

    #[test]
    fn extreme_timestamps() {
        let mut w = RollingWindow::new(i64::MAX);
        w.push(i64::MIN, 1.0);
        w.push(-2, 2.0);
        assert_eq!(w.len(), 2, "-2 - i64::MAX is below i64::MIN: nothing to evict");
        w.push(-1, 3.0);
        assert_eq!(w.len(), 2, "i64::MIN is exactly i64::MAX before -1");
        assert_eq!(w.oldest_ts(), Some(-2));
        w.push(i64::MAX, 4.0);
        assert_eq!(w.len(), 1);
        let mut w = RollingWindow::new(10);
        w.push(i64::MIN, 1.0);
        w.evict_until(i64::MIN + 9);
        assert_eq!(w.len(), 1);
        w.evict_until(i64::MIN + 10);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn max_len() {
        let mut w = RollingWindow::with_max_len(1_000_000, 3);
        for (i, v) in [1.0, 2.0, 3.0, 4.0, 5.0].into_iter().enumerate() {
            w.push(i as i64, v);
            assert!(w.len() <= 3);
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.iter().map(|s| s.1).collect::<Vec<_>>(), vec![3.0, 4.0, 5.0]);
        assert_eq!(w.sum(), 12.0);
        assert_eq!(w.min(), Some(3.0));
        assert_eq!(w.max_len(), 3);
        // time still evicts
        w.push(1_000_003, 6.0);
        assert_eq!(w.iter().map(|s| s.1).collect::<Vec<_>>(), vec![5.0, 6.0]);

        let mut none = RollingWindow::with_max_len(1000, 0);
        none.push(0, 1.0);
        assert!(none.is_empty());
        assert_eq!(none.mean(), None);
    }

    /// Values around 1e9 with small noise: the shifted sums keep std accurate to 1e-6.
    #[test]
    fn large_offsets_keep_std_accurate() {
        let mut w = RollingWindow::new(500);
        let mut naive = Naive::new(500, usize::MAX);
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut noise = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        for i in 0..200_000i64 {
            // a level that jumps by 1e3 every 50 000 ms, noise of ±0.5e-3
            let level = 1e9 + (i / 50_000) as f64 * 1e3;
            let v = level + noise() * 1e-3;
            w.push(i, v);
            naive.push(i, v);
            if i % 1_000 == 999 || i % 50_000 == 249 {
                let (s, ns) = (w.std().unwrap(), naive.std().unwrap());
                assert!(((s - ns) / ns).abs() < 1e-6, "at {i}: std {s} vs {ns}");
                let (m, nm) = (w.mean().unwrap(), naive.mean().unwrap());
                assert!((m - nm).abs() < 1e-6, "at {i}: mean {m} vs {nm}");
            }
        }
    }

    /// A huge sample leaving a window of small values must not leave its rounding
    /// error behind in the variance.
    #[test]
    fn huge_sample_leaving_does_not_corrupt_std() {
        let mut w = RollingWindow::new(100);
        let mut naive = Naive::new(100, usize::MAX);
        for i in 0..1000i64 {
            let v = if i % 250 == 0 { 1e15 } else { (i % 7) as f64 * 1e-3 };
            w.push(i, v);
            naive.push(i, v);
            let (s, ns) = (w.std().unwrap_or(0.0), naive.std().unwrap_or(0.0));
            assert!(close(s, ns, 1e-9, 1e-15), "at {i}: std {s} vs {ns}");
        }
    }

    /// A level jump far from the shift keeps the variance accurate.
    #[test]
    fn level_jump_keeps_std_accurate() {
        let mut w = RollingWindow::new(1000);
        let mut naive = Naive::new(1000, usize::MAX);
        for i in 0..5000i64 {
            let base = if i < 2500 { 0.0 } else { 3e12 };
            let v = base + (i % 5) as f64 * 0.01;
            w.push(i, v);
            naive.push(i, v);
            if i % 10 == 9 {
                let (s, ns) = (w.std().unwrap(), naive.std().unwrap());
                assert!(close(s, ns, 1e-7, 0.0), "at {i}: std {s} vs {ns}");
            }
        }
    }

    /// Groups of samples at one timestamp leave together (the bulk eviction path).
    #[test]
    fn bulk_eviction_matches_naive() {
        let mut w = RollingWindow::new(100);
        let mut naive = Naive::new(100, usize::MAX);
        for i in 0..1000i64 {
            let v = ((i * 37) % 11) as f64 - 5.0;
            let ts = i / 25 * 10;
            w.push(ts, v);
            naive.push(ts, v);
            check(&w, &naive).unwrap();
            if i % 100 == 50 {
                w.evict_until(ts + 45);
                naive.evict_until(ts + 45);
                check(&w, &naive).unwrap();
            }
        }
    }

    #[test]
    fn clear_and_heap_bytes() {
        let mut w = RollingWindow::new(1_000_000);
        for i in 0..10_000 {
            w.push(i, i as f64);
        }
        let big = w.heap_bytes();
        assert!(big >= 10_000 * 24, "{big}");
        // shrinking after most samples left
        w.evict_until(1_009_990);
        assert_eq!(w.len(), 9);
        assert!(w.heap_bytes() < big / 4, "{} vs {big}", w.heap_bytes());
        w.clear();
        assert!(w.is_empty());
        assert_eq!(w.sum(), 0.0);
        w.push(0, 2.0);
        assert_eq!(w.mean(), Some(2.0));
    }

    #[test]
    #[cfg(not(debug_assertions))]
    fn non_finite_values_are_ignored_in_release() {
        let mut w = filled(1000, &[1.0, 2.0]);
        w.push(5, f64::NAN);
        w.push(6, f64::INFINITY);
        assert_eq!(w.len(), 2);
        assert_eq!(w.mean(), Some(1.5));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "non-finite")]
    fn non_finite_values_trip_the_debug_assertion() {
        let mut w = RollingWindow::new(1000);
        w.push(0, f64::NAN);
    }
}

/// A small, fast, seeded generator (SplitMix64), the same on every platform: reproducible
/// synthetic data (`synthetic`, the correlation scenarios, benches).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// Uniform in `lo..=hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            lo
        } else {
            lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
        }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}
