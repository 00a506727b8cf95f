//! The recent inputs of a stage, kept so that a reload that rebuilds the stage can replay
//! them into the new one before its first tick: a detector whose threshold changed
//! re-scores from the same window instead of starting empty (see the engine's
//! "What a reload keeps").
//!
//! Bound: the newest ticks that hold the last [`PER_SERIES`] samples of every series the
//! stage saw, and never more than [`MAX_SAMPLES`] samples in all (the oldest ticks go
//! first; a single tick larger than that is not kept). Ticks are kept whole and their
//! data is shared (`Arc`) with the rest of the engine, so the cost is what the bound holds
//! at most, often less: a tick's data is the same allocation for every stage it feeds.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use crate::data::{Data, Timestamp};

/// Samples of each series kept for replay: more than any window a stage holds in
/// practice (a 1 h robust z-score at one sample per second holds 3 600).
pub const PER_SERIES: usize = 10_000;

/// Samples kept for replay per stage, over all its series.
pub const MAX_SAMPLES: usize = 1_000_000;

struct Tick {
    now: Timestamp,
    inputs: Vec<Data>,
    /// Samples per series (hashed id) in this tick.
    series: Vec<(u64, usize)>,
    total: usize,
}

/// A stage's recent inputs, tick by tick (see the module documentation).
#[derive(Default)]
pub struct InputHistory {
    ticks: VecDeque<Tick>,
    /// Samples per series over the kept ticks.
    counts: HashMap<u64, usize>,
    total: usize,
}

fn hashed(what: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    what.hash(&mut h);
    h.finish()
}

/// Samples per series of one tick's inputs (models count for nothing: they come with the
/// samples they score).
fn series_counts(inputs: &[Data]) -> Vec<(u64, usize)> {
    let mut out = Vec::new();
    for (slot, d) in inputs.iter().enumerate() {
        match d {
            Data::Series(s) => out.extend(s.series.iter().map(|c| (hashed(&c.id), c.ts.len()))),
            Data::Scores(s) => out.extend(s.series.iter().map(|c| (hashed(&c.id), c.len()))),
            Data::Features(f) => out.extend(f.matrices.iter().map(|m| (hashed(&m.id), m.rows()))),
            Data::Events(e) => out.push((hashed(("events", slot)), e.events.len())),
            Data::Incidents(i) => out.push((hashed(("incidents", slot)), i.updates.len())),
            Data::Model(_) => {}
        }
    }
    out.retain(|(_, n)| *n > 0);
    out
}

impl InputHistory {
    /// Keeps one tick's inputs (a tick that brought no samples is not kept), then drops
    /// the oldest ticks the bound no longer needs.
    pub fn record(&mut self, now: Timestamp, inputs: &[Data]) {
        let series = series_counts(inputs);
        let total: usize = series.iter().map(|(_, n)| n).sum();
        if total == 0 {
            return;
        }
        for (k, n) in &series {
            *self.counts.entry(*k).or_default() += n;
        }
        self.total += total;
        self.ticks.push_back(Tick { now, inputs: inputs.to_vec(), series, total });
        while let Some(oldest) = self.ticks.front() {
            let newer_cover = oldest.series.iter().all(|(k, n)| self.counts.get(k).copied().unwrap_or(0).saturating_sub(*n) >= PER_SERIES);
            if !newer_cover && self.total <= MAX_SAMPLES {
                break;
            }
            let Some(oldest) = self.ticks.pop_front() else { break };
            for (k, n) in oldest.series {
                if let Some(c) = self.counts.get_mut(&k) {
                    *c = c.saturating_sub(n);
                    if *c == 0 {
                        self.counts.remove(&k);
                    }
                }
            }
            self.total -= oldest.total;
        }
    }

    /// Series the stage forgot (idle, or beyond `max_series`) no longer hold old ticks back
    /// (their samples stay in the ticks kept for other series).
    pub fn forget(&mut self, ids: &[crate::data::SeriesId]) {
        if ids.is_empty() || self.ticks.is_empty() {
            return;
        }
        let gone: std::collections::HashSet<u64> = ids.iter().map(hashed).collect();
        self.counts.retain(|k, _| !gone.contains(k));
        for t in &mut self.ticks {
            t.series.retain(|(k, _)| !gone.contains(k));
        }
        // Ticks only those series needed go now.
        while self
            .ticks
            .front()
            .is_some_and(|t| t.series.iter().all(|(k, n)| self.counts.get(k).copied().unwrap_or(0).saturating_sub(*n) >= PER_SERIES))
        {
            if let Some(t) = self.ticks.pop_front() {
                for (k, n) in t.series {
                    if let Some(c) = self.counts.get_mut(&k) {
                        *c = c.saturating_sub(n);
                    }
                }
                self.total -= t.total;
            }
        }
        self.counts.retain(|_, c| *c > 0);
    }

    /// The kept ticks, oldest first: each tick's time and inputs (shared, cheap to copy).
    pub fn ticks(&self) -> Vec<(Timestamp, Vec<Data>)> {
        self.ticks.iter().map(|t| (t.now, t.inputs.clone())).collect()
    }

    /// How many samples are kept.
    pub fn samples(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::data::{SeriesColumn, SeriesData, SeriesId};

    fn tick(series: &[(&str, usize)], from: i64) -> Vec<Data> {
        let cols = series
            .iter()
            .map(|(name, n)| {
                let mut c = SeriesColumn::new(SeriesId::named(*name));
                for i in 0..*n {
                    c.push(from + i as i64, 1.0);
                }
                c
            })
            .collect();
        vec![Data::Series(Arc::new(SeriesData { series: cols }))]
    }

    #[test]
    fn keeps_the_last_samples_of_every_series_and_no_more() {
        let mut h = InputHistory::default();
        // A dense series, 1 000 samples a tick: the last 10 ticks cover its last 10 000.
        for t in 0..20 {
            h.record(t, &tick(&[("dense", 1_000)], t * 1_000));
        }
        assert_eq!((h.ticks().len(), h.samples()), (10, PER_SERIES));
        assert_eq!(h.ticks()[0].0, 10, "the oldest kept tick");
        // A sparse series joins for 5 ticks: every one of its samples is needed.
        for t in 20..25 {
            h.record(t, &tick(&[("dense", 1_000), ("sparse", 1)], t * 1_000));
        }
        for t in 25..45 {
            h.record(t, &tick(&[("dense", 1_000)], t * 1_000));
        }
        assert_eq!(h.ticks().len(), 25, "from the sparse series' first sample on");
        assert_eq!(h.ticks()[0].0, 20);
        // Ticks with no samples are not kept.
        h.record(99, &tick(&[], 0));
        assert_eq!(h.ticks().len(), 25);
        // Once the stage forgets the sparse series, the dense one's bound applies again.
        h.forget(&[SeriesId::named("sparse")]);
        assert_eq!((h.ticks().len(), h.ticks()[0].0), (10, 35));
    }

    #[test]
    fn the_total_bound_holds_however_many_series() {
        let mut h = InputHistory::default();
        let names: Vec<String> = (0..2_000).map(|i| format!("s{i}")).collect();
        for t in 0..10 {
            let series: Vec<(&str, usize)> = names.iter().map(|n| (n.as_str(), 100)).collect();
            h.record(t, &tick(&series, t * 100));
        }
        assert!(h.samples() <= MAX_SAMPLES, "{}", h.samples());
        assert_eq!(h.ticks().len(), 5);
    }
}
