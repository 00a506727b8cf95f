//! Cardinality limits: how many series a stage may carry, and when an idle one is
//! forgotten.
//!
//! Every distinct label set is a series, and every series holds state (windows, models,
//! `/metrics` gauges). A flood of distinct label values — a webhook caller, a bad
//! exporter — would otherwise grow memory for ever. Each stage's output passes a
//! [`SeriesGuard`]:
//!
//! - **A cap** (`max_series 10000` by default, a stage option): a new series beyond it is
//!   dropped (its samples counted in `vigil_skipped_total{reason="series_limit"}`, a warning
//!   at most once a minute); series already known go on.
//! - **Idle expiry** (`series_idle 24h` by default, a stage option): a series that has not
//!   been seen for that long is forgotten by the stage and by every stage downstream of it
//!   (their windows, models in training, gauges and cardinality guards), which makes room
//!   under the cap and gives memory back. Idle series are swept at most every tenth of
//!   `series_idle`; a new series that finds the cap full does not wait for the sweep: the
//!   idle ones are forgotten first, so a series sent once is not lost to the sweep's timing.
//!
//! Events are not series; they become series where they are counted (`aggregate`), and
//! that stage's guard bounds them.

use std::collections::HashMap;
use std::sync::Arc;

use crate::data::{Data, FeaturesData, ScoresData, SeriesData, SeriesId, Timestamp};
use crate::runtime::OpCtx;

/// Series a stage carries at most, by default.
pub const DEFAULT_MAX_SERIES: usize = 10_000;
/// How long a series may be silent before it is forgotten, by default (a day: a series
/// reported once a day keeps its state).
pub const DEFAULT_SERIES_IDLE_MS: i64 = 86_400_000;

/// The guard of one stage's output.
#[derive(Debug)]
pub struct SeriesGuard {
    max: usize,
    idle_ms: i64,
    seen: HashMap<SeriesId, Timestamp>,
    last_sweep: Timestamp,
    last_warning: Option<Timestamp>,
}

impl SeriesGuard {
    pub fn new(max: usize, idle_ms: i64) -> SeriesGuard {
        SeriesGuard { max, idle_ms: idle_ms.max(1), seen: HashMap::new(), last_sweep: 0, last_warning: None }
    }

    /// Series known now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Lets through the series it knows and new ones while under the cap; the others are
    /// dropped (counted). Returns the data, the ids dropped and the ids forgotten as idle.
    ///
    /// When new series would not fit, the idle ones are forgotten first, whenever the last
    /// sweep ran: a series that arrives once, just after the old ones have fallen idle, is
    /// not lost to a sweep that has not come round yet.
    pub fn admit(&mut self, data: Data, now: Timestamp, ctx: &mut OpCtx) -> (Data, Vec<SeriesId>, Vec<SeriesId>) {
        let mut new = 0usize;
        for_each_id(&data, |id| match self.seen.get_mut(id) {
            Some(t) => *t = now,
            None => new += 1,
        });
        let mut expired = if new > 0 && self.seen.len() + new > self.max { self.expire(now) } else { Vec::new() };
        let mut dropped = Vec::new();
        let mut dropped_items = 0u64;
        let mut keep = |id: &SeriesId, items: usize| -> bool {
            if self.seen.contains_key(id) {
                return true;
            }
            if self.seen.len() < self.max {
                self.seen.insert(id.clone(), now);
                return true;
            }
            dropped.push(id.clone());
            dropped_items += items as u64;
            false
        };
        let out = match data {
            Data::Series(s) => match kept(&s.series, |c| (&c.id, c.ts.len()), &mut keep) {
                None => Data::Series(s),
                Some(series) => Data::Series(Arc::new(SeriesData { series })),
            },
            Data::Scores(s) => match kept(&s.series, |c| (&c.id, c.ts.len()), &mut keep) {
                None => Data::Scores(s),
                Some(series) => Data::Scores(Arc::new(ScoresData { series })),
            },
            Data::Features(f) => match kept(&f.matrices, |m| (&m.id, m.ts.len()), &mut keep) {
                None => Data::Features(f),
                Some(matrices) => Data::Features(Arc::new(FeaturesData { matrices })),
            },
            other => other,
        };
        if !dropped.is_empty() {
            ctx.skip_n("series_limit", dropped_items.max(1));
            if self.last_warning.is_none_or(|t| now - t >= 60_000) {
                self.last_warning = Some(now);
                tracing::warn!(
                    max_series = self.max,
                    dropped = dropped.len(),
                    example = %dropped[0],
                    "new series beyond the stage's max_series are dropped (raise `max_series` or lower `series_idle` if they are wanted)"
                );
            }
        }
        expired.extend(self.sweep(now));
        (out, dropped, expired)
    }

    /// Forgets these series (a stage upstream forgot them).
    pub fn forget(&mut self, ids: &[SeriesId]) {
        for id in ids {
            self.seen.remove(id);
        }
    }

    /// The series not seen for `series_idle`, forgotten (checked at most every tenth of
    /// that time, and at least once a minute).
    pub fn sweep(&mut self, now: Timestamp) -> Vec<SeriesId> {
        if now - self.last_sweep < (self.idle_ms / 10).min(60_000) {
            return Vec::new();
        }
        self.expire(now)
    }

    /// The series not seen for `series_idle`, forgotten now.
    fn expire(&mut self, now: Timestamp) -> Vec<SeriesId> {
        self.last_sweep = now;
        let cutoff = now - self.idle_ms;
        let expired: Vec<SeriesId> = self.seen.iter().filter(|(_, t)| **t < cutoff).map(|(id, _)| id.clone()).collect();
        for id in &expired {
            self.seen.remove(id);
        }
        if self.seen.capacity() > 4 * self.seen.len().max(64) {
            self.seen.shrink_to_fit();
        }
        expired
    }
}

/// Calls `f` with the id of every series (or matrix) in `data`.
fn for_each_id(data: &Data, mut f: impl FnMut(&SeriesId)) {
    match data {
        Data::Series(s) => s.series.iter().for_each(|c| f(&c.id)),
        Data::Scores(s) => s.series.iter().for_each(|c| f(&c.id)),
        Data::Features(m) => m.matrices.iter().for_each(|c| f(&c.id)),
        _ => {}
    }
}

/// The columns `keep` admits, or `None` when it admits them all (the data is then passed
/// on as it is, without a copy).
fn kept<T: Clone>(cols: &[T], id: impl Fn(&T) -> (&SeriesId, usize), keep: &mut impl FnMut(&SeriesId, usize) -> bool) -> Option<Vec<T>> {
    let flags: Vec<bool> = cols
        .iter()
        .map(|c| {
            let (i, n) = id(c);
            keep(i, n)
        })
        .collect();
    if flags.iter().all(|k| *k) {
        return None;
    }
    Some(cols.iter().zip(&flags).filter(|(_, k)| **k).map(|(c, _)| c.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::SeriesColumn;

    fn series(names: &[&str]) -> Data {
        let series = names
            .iter()
            .map(|n| {
                let mut c = SeriesColumn::new(SeriesId::new("v".to_owned(), vec![("k".to_owned(), (*n).to_owned())]));
                c.push(1, 1.0);
                c
            })
            .collect();
        Data::Series(Arc::new(SeriesData { series }))
    }

    fn ids(d: &Data) -> usize {
        match d {
            Data::Series(s) => s.series.len(),
            _ => 0,
        }
    }

    #[test]
    fn the_cap_drops_new_series_and_keeps_known_ones() {
        let mut g = SeriesGuard::new(2, 1000);
        let mut ctx = OpCtx::new(0);
        let (d, dropped, _) = g.admit(series(&["a", "b", "c"]), 0, &mut ctx);
        assert_eq!((ids(&d), dropped.len()), (2, 1));
        assert_eq!(ctx.skipped, vec![("series_limit", 1)]);
        let (d, dropped, _) = g.admit(series(&["a", "b", "d"]), 10, &mut ctx);
        assert_eq!((ids(&d), dropped.len()), (2, 1));
        // Idle series expire and make room.
        assert!(g.sweep(500).is_empty());
        let expired = g.sweep(2000);
        assert_eq!(expired.len(), 2);
        assert!(g.is_empty());
        let (d, dropped, _) = g.admit(series(&["d"]), 2000, &mut ctx);
        assert_eq!((ids(&d), dropped.len()), (1, 0));
    }

    #[test]
    fn a_new_series_at_the_cap_makes_room_from_idle_ones_before_the_next_sweep() {
        let mut g = SeriesGuard::new(1, 1000);
        let mut ctx = OpCtx::new(0);
        g.admit(series(&["a"]), 0, &mut ctx);
        assert!(g.sweep(500).is_empty());
        // "a" has been idle for longer than series_idle, but the next sweep is not due
        // (every 100 ms): "b", sent once, still gets in.
        let (d, dropped, expired) = g.admit(series(&["b"]), 1050, &mut ctx);
        assert_eq!((ids(&d), dropped.len(), expired.len()), (1, 0, 1));
        // A series in the batch is never the one forgotten to make room.
        let (d, dropped, expired) = g.admit(series(&["b", "c"]), 2100, &mut ctx);
        assert_eq!((ids(&d), dropped.len(), expired.len()), (1, 1, 0));
        assert!(ctx.skipped.iter().any(|(r, _)| *r == "series_limit"));
    }

    #[test]
    fn an_upstream_forget_frees_room() {
        let mut g = SeriesGuard::new(1, 1_000_000);
        let mut ctx = OpCtx::new(0);
        g.admit(series(&["a"]), 0, &mut ctx);
        let (_, dropped, _) = g.admit(series(&["b"]), 1, &mut ctx);
        assert_eq!(dropped.len(), 1);
        g.forget(&[SeriesId::new("v".to_owned(), vec![("k".to_owned(), "a".to_owned())])]);
        let (d, dropped, _) = g.admit(series(&["b"]), 2, &mut ctx);
        assert_eq!((ids(&d), dropped.len()), (1, 0));
    }
}
