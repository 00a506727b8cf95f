//! Preprocess operators, streaming: each keeps per-series state across ticks, so that a
//! tick's output depends only on samples already seen.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use regex::Regex;

use crate::data::{Data, EventsData, FeatureMatrix, FeaturesData, SeriesColumn, SeriesData, SeriesId, Timestamp};
use crate::runtime::{OpCtx, OpError, Operator};
use crate::stats::RollingWindow;

/// The Series input of a stage, or an error naming what arrived instead.
pub fn series_input(inputs: &[Data]) -> Result<&SeriesData, OpError> {
    match inputs.first() {
        Some(Data::Series(s)) => Ok(s),
        Some(other) => Err(OpError::Invalid(format!("expected Series, got {}", other.kind()))),
        None => Err(OpError::Invalid("missing input".into())),
    }
}

fn series(out: Vec<SeriesColumn>) -> Data {
    Data::Series(Arc::new(SeriesData { series: out.into_iter().filter(|c| !c.is_empty()).collect() }))
}

/// How `resample` and `aggregate` combine the values of an interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Agg {
    Mean,
    Sum,
    Min,
    Max,
    First,
    Last,
    Count,
    Median,
}

impl Agg {
    pub fn parse(s: &str) -> Option<Agg> {
        Some(match s {
            "mean" => Agg::Mean,
            "sum" => Agg::Sum,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "first" => Agg::First,
            "last" => Agg::Last,
            "count" => Agg::Count,
            "median" => Agg::Median,
            _ => return None,
        })
    }

    pub fn apply(self, vals: &mut [f64]) -> f64 {
        if vals.is_empty() {
            return if self == Agg::Count || self == Agg::Sum { 0.0 } else { f64::NAN };
        }
        match self {
            Agg::Mean => vals.iter().sum::<f64>() / vals.len() as f64,
            Agg::Sum => vals.iter().sum(),
            Agg::Min => vals.iter().copied().fold(f64::INFINITY, f64::min),
            Agg::Max => vals.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Agg::First => vals[0],
            Agg::Last => vals[vals.len() - 1],
            Agg::Count => vals.len() as f64,
            Agg::Median => {
                vals.sort_by(f64::total_cmp);
                let n = vals.len();
                if n % 2 == 1 {
                    vals[n / 2]
                } else {
                    (vals[n / 2 - 1] + vals[n / 2]) / 2.0
                }
            }
        }
    }
}

/// `resample(every, agg)`: one sample per interval, emitted once the interval is over (a
/// later sample arrived, or the tick's time passed its end), stamped with its start.
pub struct Resample {
    pub every: i64,
    pub agg: Agg,
    open: HashMap<SeriesId, (Timestamp, Vec<f64>)>,
}

impl Resample {
    pub fn new(every: i64, agg: Agg) -> Resample {
        Resample { every: every.max(1), agg, open: HashMap::new() }
    }
}

impl Operator for Resample {
    fn forget(&mut self, ids: &[SeriesId]) {
        for id in ids {
            self.open.remove(id);
        }
    }

    fn process(&mut self, inputs: &[Data], ctx: &mut OpCtx) -> Result<Data, OpError> {
        let input = series_input(inputs)?;
        let mut out: BTreeMap<SeriesId, SeriesColumn> = BTreeMap::new();
        for col in &input.series {
            let o = out.entry(col.id.clone()).or_insert_with(|| SeriesColumn::new(col.id.clone()));
            let state = self.open.entry(col.id.clone()).or_insert((i64::MIN, Vec::new()));
            for (&ts, &v) in col.ts.iter().zip(&col.values) {
                let b = ts - ts.rem_euclid(self.every);
                if state.0 == i64::MIN {
                    state.0 = b;
                }
                if b < state.0 {
                    ctx.skip("out_of_order");
                    continue;
                }
                if b > state.0 {
                    if !state.1.is_empty() {
                        o.push(state.0, self.agg.apply(&mut state.1));
                    }
                    state.1.clear();
                    state.0 = b;
                }
                state.1.push(v);
            }
        }
        // Intervals the tick's time has passed are complete.
        for (id, state) in &mut self.open {
            if !state.1.is_empty() && ctx.now >= state.0 + self.every {
                let o = out.entry(id.clone()).or_insert_with(|| SeriesColumn::new(id.clone()));
                o.push(state.0, self.agg.apply(&mut state.1));
                state.1.clear();
            }
        }
        Ok(series(out.into_values().collect()))
    }
}

/// How `fill` fills.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FillMethod {
    Previous,
    Linear,
    Zero,
    Value(f64),
}

/// `fill(method, value, max_gap)`: replaces NaN values and inserts the missing points of
/// a regular series (its interval is the smallest step seen), except across gaps longer
/// than `max_gap`.
pub struct Fill {
    pub method: FillMethod,
    pub max_gap: Option<i64>,
    last: HashMap<SeriesId, (Timestamp, f64, i64)>,
}

impl Fill {
    pub fn new(method: FillMethod, max_gap: Option<i64>) -> Fill {
        Fill { method, max_gap, last: HashMap::new() }
    }
}

/// Points inserted into one gap at most, so that a wild timestamp cannot exhaust memory.
const MAX_FILL: i64 = 100_000;

impl Operator for Fill {
    fn forget(&mut self, ids: &[SeriesId]) {
        for id in ids {
            self.last.remove(id);
        }
    }

    fn process(&mut self, inputs: &[Data], ctx: &mut OpCtx) -> Result<Data, OpError> {
        let input = series_input(inputs)?;
        let mut out = Vec::new();
        for col in &input.series {
            let mut o = SeriesColumn::new(col.id.clone());
            let mut state = self.last.get(&col.id).copied();
            for (&ts, &v) in col.ts.iter().zip(&col.values) {
                let filled = |prev: Option<(Timestamp, f64, i64)>| match (self.method, prev) {
                    (FillMethod::Zero, _) => 0.0,
                    (FillMethod::Value(x), _) => x,
                    (_, Some((_, pv, _))) => pv,
                    (_, None) => f64::NAN,
                };
                let value = if v.is_nan() { filled(state) } else { v };
                if let Some((lt, lv, interval)) = state {
                    let gap = ts - lt;
                    if interval > 0 && gap > interval && self.max_gap.is_none_or(|m| gap <= m) && gap / interval <= MAX_FILL {
                        let mut t = lt + interval;
                        while t < ts {
                            let x = match self.method {
                                FillMethod::Linear if value.is_finite() => lv + (value - lv) * ((t - lt) as f64 / gap as f64),
                                _ => filled(state),
                            };
                            o.push(t, x);
                            t += interval;
                        }
                    }
                }
                if value.is_nan() {
                    ctx.skip("unfillable");
                    continue;
                }
                let interval = match state {
                    Some((lt, _, iv)) if ts > lt => {
                        if iv == 0 {
                            ts - lt
                        } else {
                            iv.min(ts - lt)
                        }
                    }
                    Some((_, _, iv)) => iv,
                    None => 0,
                };
                state = Some((ts, value, interval));
                o.push(ts, value);
            }
            if let Some(s) = state {
                self.last.insert(col.id.clone(), s);
            }
            out.push(o);
        }
        Ok(series(out))
    }
}

/// How `normalize` scales.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NormMethod {
    Z,
    MinMax,
    Robust,
}

/// `normalize(method, window)`: scales each sample by the statistics of the samples
/// before it (all history, up to [`HISTORY`] samples, or the trailing `window`).
pub struct Normalize {
    pub method: NormMethod,
    window: i64,
    state: HashMap<SeriesId, RollingWindow>,
}

/// The samples "all history" keeps per series.
pub const HISTORY: usize = 100_000;

impl Normalize {
    pub fn new(method: NormMethod, window: Option<i64>) -> Normalize {
        Normalize { method, window: window.unwrap_or(i64::MAX / 4), state: HashMap::new() }
    }
}

impl Operator for Normalize {
    fn forget(&mut self, ids: &[SeriesId]) {
        for id in ids {
            self.state.remove(id);
        }
    }

    fn process(&mut self, inputs: &[Data], _ctx: &mut OpCtx) -> Result<Data, OpError> {
        let input = series_input(inputs)?;
        let mut out = Vec::new();
        for col in &input.series {
            let w = self.state.entry(col.id.clone()).or_insert_with(|| RollingWindow::with_max_len(self.window, HISTORY));
            let mut o = SeriesColumn::new(col.id.clone());
            for (&ts, &v) in col.ts.iter().zip(&col.values) {
                w.evict_until(ts);
                let (center, scale) = match self.method {
                    NormMethod::Z => (w.mean(), w.std()),
                    NormMethod::MinMax => (w.min(), w.max().zip(w.min()).map(|(a, b)| a - b)),
                    NormMethod::Robust => (w.median(), w.mad().map(|m| m * 1.4826)),
                };
                let x = match (center, scale) {
                    (Some(c), Some(s)) if s > 0.0 && s.is_finite() => (v - c) / s,
                    _ => 0.0,
                };
                o.push(ts, if x.is_finite() { x } else { 0.0 });
                w.push(ts, v);
            }
            out.push(o);
        }
        Ok(series(out))
    }
}

/// `diff(lag, rate)`: `x[t] - x[t-lag]`, or a per-second rate that treats a decrease as a
/// counter reset (like PromQL's `rate`).
pub struct Diff {
    pub lag: usize,
    pub rate: bool,
    history: HashMap<SeriesId, VecDeque<(Timestamp, f64)>>,
}

impl Diff {
    pub fn new(lag: usize, rate: bool) -> Diff {
        Diff { lag: lag.max(1), rate, history: HashMap::new() }
    }
}

impl Operator for Diff {
    fn forget(&mut self, ids: &[SeriesId]) {
        for id in ids {
            self.history.remove(id);
        }
    }

    fn process(&mut self, inputs: &[Data], _ctx: &mut OpCtx) -> Result<Data, OpError> {
        let input = series_input(inputs)?;
        let mut out = Vec::new();
        for col in &input.series {
            let h = self.history.entry(col.id.clone()).or_default();
            let mut o = SeriesColumn::new(col.id.clone());
            for (&ts, &v) in col.ts.iter().zip(&col.values) {
                if h.len() == self.lag {
                    let (pt, pv) = h[0];
                    let d = if self.rate && v < pv { v } else { v - pv };
                    if !self.rate {
                        o.push(ts, d);
                    } else if ts > pt {
                        o.push(ts, d / ((ts - pt) as f64 / 1000.0));
                    }
                    h.pop_front();
                }
                h.push_back((ts, v));
            }
            out.push(o);
        }
        Ok(series(out))
    }
}

/// `rolling(window, stats)`: for each sample, statistics of the trailing window ending
/// with it, one output series per statistic (label `stat`).
pub struct Rolling {
    window: i64,
    stats: Vec<String>,
    state: HashMap<SeriesId, (RollingWindow, Vec<SeriesId>)>,
}

impl Rolling {
    pub fn new(window: i64, stats: Vec<String>) -> Rolling {
        Rolling { window: window.max(1), stats, state: HashMap::new() }
    }

    fn stat(w: &RollingWindow, name: &str) -> Option<f64> {
        match name {
            "mean" => w.mean(),
            "std" => w.std(),
            "median" => w.median(),
            "mad" => w.mad(),
            "min" => w.min(),
            "max" => w.max(),
            "sum" => Some(w.sum()),
            "count" => Some(w.len() as f64),
            "p50" => w.quantile(0.5),
            "p90" => w.quantile(0.9),
            "p95" => w.quantile(0.95),
            "p99" => w.quantile(0.99),
            _ => None,
        }
    }
}

impl Operator for Rolling {
    fn forget(&mut self, ids: &[SeriesId]) {
        for id in ids {
            self.state.remove(id);
        }
    }

    fn process(&mut self, inputs: &[Data], _ctx: &mut OpCtx) -> Result<Data, OpError> {
        let input = series_input(inputs)?;
        let mut out = Vec::new();
        for col in &input.series {
            let (w, ids) = self
                .state
                .entry(col.id.clone())
                .or_insert_with(|| (RollingWindow::new(self.window), self.stats.iter().map(|s| col.id.with_label("stat", s)).collect()));
            let mut cols: Vec<SeriesColumn> = ids.iter().map(|id| SeriesColumn::new(id.clone())).collect();
            for (&ts, &v) in col.ts.iter().zip(&col.values) {
                w.push(ts, v);
                for (i, name) in self.stats.iter().enumerate() {
                    if let Some(x) = Self::stat(w, name) {
                        cols[i].push(ts, x);
                    }
                }
            }
            out.extend(cols);
        }
        Ok(series(out))
    }
}

/// `window(size, stride)`: the last `size` values as one row, every `stride` samples.
pub struct Window {
    pub size: usize,
    pub stride: usize,
    state: HashMap<SeriesId, (VecDeque<f32>, usize)>,
}

impl Window {
    pub fn new(size: usize, stride: usize) -> Window {
        Window { size: size.max(1), stride: stride.max(1), state: HashMap::new() }
    }
}

impl Operator for Window {
    fn forget(&mut self, ids: &[SeriesId]) {
        for id in ids {
            self.state.remove(id);
        }
    }

    fn process(&mut self, inputs: &[Data], _ctx: &mut OpCtx) -> Result<Data, OpError> {
        let input = series_input(inputs)?;
        let mut out = Vec::new();
        for col in &input.series {
            let (buf, since) = self.state.entry(col.id.clone()).or_insert_with(|| (VecDeque::with_capacity(self.size), 0));
            let mut m = FeatureMatrix { id: col.id.clone(), ts: Vec::new(), width: self.size, values: Vec::new() };
            for (&ts, &v) in col.ts.iter().zip(&col.values) {
                if buf.len() == self.size {
                    buf.pop_front();
                }
                buf.push_back(v as f32);
                *since += 1;
                if buf.len() == self.size && *since >= self.stride {
                    *since = 0;
                    m.ts.push(ts);
                    m.values.extend(buf.iter());
                }
            }
            if !m.ts.is_empty() {
                out.push(m);
            }
        }
        Ok(Data::Features(Arc::new(FeaturesData { matrices: out })))
    }
}

/// One label matcher of a selector.
#[derive(Clone, Debug)]
pub enum Matcher {
    Eq(String, String),
    Ne(String, String),
    Re(String, Regex),
    NotRe(String, Regex),
}

impl Matcher {
    fn matches(&self, get: &dyn Fn(&str) -> Option<String>) -> bool {
        let val = |l: &str| get(l).unwrap_or_default();
        match self {
            Matcher::Eq(l, v) => val(l) == *v,
            Matcher::Ne(l, v) => val(l) != *v,
            Matcher::Re(l, r) => r.is_match(&val(l)),
            Matcher::NotRe(l, r) => !r.is_match(&val(l)),
        }
    }
}

/// Parses a Prometheus-style selector: `name{a="x", b!="y", c=~"re", d!~"re"}`.
///
/// # Errors
/// What is wrong with it, in words.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, String> {
    let s = s.trim();
    let (name, body) = match s.find('{') {
        Some(i) => {
            let body = s[i + 1..].strip_suffix('}').ok_or("a selector ends with `}`")?;
            (s[..i].trim(), body)
        }
        None => (s, ""),
    };
    let mut out = Vec::new();
    if !name.is_empty() {
        out.push(Matcher::Eq("__name__".into(), name.into()));
    }
    let mut rest = body.trim();
    while !rest.is_empty() {
        let label_end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).ok_or("expected an operator after the label name")?;
        let label = &rest[..label_end];
        if label.is_empty() {
            return Err(format!("expected a label name at `{rest}`"));
        }
        rest = rest[label_end..].trim_start();
        let op = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .ok_or_else(|| format!("expected `=`, `!=`, `=~` or `!~` after `{label}`"))?;
        rest = rest[op.len()..].trim_start();
        let body = rest.strip_prefix('"').ok_or_else(|| format!("the value of `{label}` must be in double quotes"))?;
        let mut value = String::new();
        let mut end = None;
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(match n {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end.ok_or_else(|| format!("the value of `{label}` is not closed"))?;
        rest = body[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        let re = |v: &str| Regex::new(&format!("^(?:{v})$")).map_err(|e| format!("invalid regular expression for `{label}`: {e}"));
        out.push(match op {
            "=" => Matcher::Eq(label.into(), value),
            "!=" => Matcher::Ne(label.into(), value),
            "=~" => Matcher::Re(label.into(), re(&value)?),
            _ => Matcher::NotRe(label.into(), re(&value)?),
        });
    }
    Ok(out)
}

/// `select(match)`: keeps the series or events whose labels match.
pub struct Select {
    pub matchers: Vec<Matcher>,
}

impl Operator for Select {
    fn process(&mut self, inputs: &[Data], _ctx: &mut OpCtx) -> Result<Data, OpError> {
        match inputs.first() {
            Some(Data::Series(s)) => {
                let kept = s
                    .series
                    .iter()
                    .filter(|c| self.matchers.iter().all(|m| m.matches(&|l| c.id.label(l).map(str::to_owned))))
                    .cloned()
                    .collect();
                Ok(Data::Series(Arc::new(SeriesData { series: kept })))
            }
            Some(Data::Events(e)) => {
                let kept =
                    e.events.iter().filter(|ev| self.matchers.iter().all(|m| m.matches(&|l| ev.labels.get(l).cloned()))).cloned().collect();
                Ok(Data::Events(Arc::new(EventsData { events: kept })))
            }
            Some(other) => Err(OpError::Invalid(format!("select takes Series or Events, got {}", other.kind()))),
            None => Err(OpError::Invalid("missing input".into())),
        }
    }
}

/// `aggregate(by, op, every)`: combines series (or counts events) per group of the `by`
/// labels — per timestamp, or per `every` interval once it is over. Groups seen before
/// get a zero count for intervals without events, so that a burst visibly ends.
pub struct Aggregate {
    pub by: Vec<String>,
    pub agg: Agg,
    pub every: Option<i64>,
    /// Per group: the open interval's start and values.
    open: BTreeMap<SeriesId, (Timestamp, Vec<f64>)>,
    /// Per group of events, the last few lines counted (`line`, else `message`
    /// annotations): the `samples` annotation of its series, so incidents show them.
    samples: HashMap<SeriesId, VecDeque<String>>,
}

/// Sample lines kept per group, and the longest kept (in characters).
const SAMPLES: usize = 3;
const SAMPLE_CHARS: usize = 500;
/// Between the samples of the `samples` annotation (a record may span lines).
pub const SAMPLE_SEPARATOR: &str = crate::respond::lifecycle::SAMPLE_SEPARATOR;

impl Aggregate {
    pub fn new(by: Vec<String>, agg: Agg, every: Option<i64>) -> Aggregate {
        Aggregate { by, agg, every: every.map(|e| e.max(1)), open: BTreeMap::new(), samples: HashMap::new() }
    }

    fn group(&self, name: &str, get: &dyn Fn(&str) -> Option<String>) -> SeriesId {
        SeriesId::new(name, self.by.iter().map(|l| (l.clone(), get(l).unwrap_or_default())))
    }
}

impl Operator for Aggregate {
    fn forget(&mut self, ids: &[SeriesId]) {
        for id in ids {
            self.open.remove(id);
            self.samples.remove(id);
        }
    }

    fn process(&mut self, inputs: &[Data], ctx: &mut OpCtx) -> Result<Data, OpError> {
        // Samples to combine: (group, ts, value).
        let mut items: Vec<(SeriesId, Timestamp, f64)> = Vec::new();
        let counting = match inputs.first() {
            Some(Data::Series(s)) => {
                for c in &s.series {
                    let g = self.group(c.id.name(), &|l| c.id.label(l).map(str::to_owned));
                    items.extend(c.ts.iter().zip(&c.values).map(|(&t, &v)| (g.clone(), t, v)));
                }
                false
            }
            Some(Data::Events(e)) => {
                for ev in &e.events {
                    let g = self.group("events", &|l| ev.labels.get(l).cloned());
                    if let Some(line) = ev.annotations.get("line").or_else(|| ev.annotations.get("message")) {
                        let kept = self.samples.entry(g.clone()).or_default();
                        if kept.len() == SAMPLES {
                            kept.pop_front();
                        }
                        kept.push_back(line.chars().take(SAMPLE_CHARS).collect());
                    }
                    items.push((g, ev.ts, 1.0));
                }
                true
            }
            Some(other) => return Err(OpError::Invalid(format!("aggregate takes Series or Events, got {}", other.kind()))),
            None => return Err(OpError::Invalid("missing input".into())),
        };
        let agg = if counting && self.agg != Agg::Count { Agg::Sum } else { self.agg };
        let mut out: BTreeMap<SeriesId, SeriesColumn> = BTreeMap::new();
        match self.every {
            None => {
                // Per timestamp (events: per tick, at the tick's time).
                let mut groups: BTreeMap<(SeriesId, Timestamp), Vec<f64>> = BTreeMap::new();
                for (g, t, v) in items {
                    groups.entry((g, if counting { ctx.now } else { t })).or_default().push(v);
                }
                for ((g, t), mut vals) in groups {
                    out.entry(g.clone()).or_insert_with(|| SeriesColumn::new(g)).push(t, agg.apply(&mut vals));
                }
            }
            Some(every) => {
                items.sort_by_key(|(_, t, _)| *t);
                for (g, t, v) in items {
                    let b = t - t.rem_euclid(every);
                    let state = self.open.entry(g.clone()).or_insert((b, Vec::new()));
                    if b < state.0 {
                        ctx.skip("late");
                        continue;
                    }
                    if b > state.0 {
                        let o = out.entry(g.clone()).or_insert_with(|| SeriesColumn::new(g.clone()));
                        o.push(state.0, agg.apply(&mut state.1));
                        state.1.clear();
                        state.0 = b;
                    }
                    state.1.push(v);
                }
                // Close the intervals the tick's time has passed; for counts, a known group
                // with no events in them gets a zero.
                let now_bucket = ctx.now - ctx.now.rem_euclid(every);
                for (g, state) in &mut self.open {
                    if state.0 + every <= ctx.now {
                        let o = out.entry(g.clone()).or_insert_with(|| SeriesColumn::new(g.clone()));
                        if !state.1.is_empty() || counting {
                            o.push(state.0, agg.apply(&mut state.1));
                        }
                        state.1.clear();
                        if counting && now_bucket - every > state.0 {
                            o.push(now_bucket - every, 0.0);
                        }
                        state.0 = now_bucket;
                    }
                }
            }
        }
        let mut cols: Vec<SeriesColumn> = out.into_values().collect();
        for c in &mut cols {
            if let Some(kept) = self.samples.get(&c.id).filter(|k| !k.is_empty()) {
                let text = kept.iter().cloned().collect::<Vec<_>>().join(SAMPLE_SEPARATOR);
                c.annotations = Some(Arc::new(BTreeMap::from([("samples".to_owned(), text)])));
            }
        }
        Ok(series(cols))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(values: &[(i64, f64)]) -> Vec<Data> {
        let mut c = SeriesColumn::new(SeriesId::named("x"));
        for &(t, v) in values {
            c.push(t, v);
        }
        vec![Data::Series(Arc::new(SeriesData { series: vec![c] }))]
    }

    fn values(d: Data) -> Vec<(i64, f64)> {
        match d {
            Data::Series(s) => s.series.iter().flat_map(|c| c.ts.iter().copied().zip(c.values.iter().copied())).collect(),
            _ => panic!("not series"),
        }
    }

    #[test]
    fn resample_emits_closed_intervals_across_ticks() {
        let mut r = Resample::new(60_000, Agg::Mean);
        let out = values(r.process(&input(&[(0, 1.0), (30_000, 3.0), (61_000, 10.0)]), &mut OpCtx::new(61_000)).unwrap());
        assert_eq!(out, vec![(0, 2.0)]);
        let out = values(r.process(&input(&[(90_000, 20.0)]), &mut OpCtx::new(125_000)).unwrap());
        assert_eq!(out, vec![(60_000, 15.0)]);
    }

    #[test]
    fn fill_inserts_missing_grid_points() {
        let mut f = Fill::new(FillMethod::Linear, None);
        let out = values(f.process(&input(&[(0, 0.0), (10, 1.0), (40, 4.0), (50, f64::NAN)]), &mut OpCtx::new(0)).unwrap());
        assert_eq!(out, vec![(0, 0.0), (10, 1.0), (20, 2.0), (30, 3.0), (40, 4.0), (50, 4.0)]);
        let mut f = Fill::new(FillMethod::Previous, Some(15));
        let out = values(f.process(&input(&[(0, 1.0), (10, 2.0), (100, 3.0)]), &mut OpCtx::new(0)).unwrap());
        assert_eq!(out.len(), 3, "a gap longer than max_gap stays open");
    }

    #[test]
    fn diff_and_rate_with_counter_reset() {
        let mut d = Diff::new(1, true);
        let out = values(d.process(&input(&[(0, 10.0), (1000, 20.0), (2000, 5.0)]), &mut OpCtx::new(0)).unwrap());
        assert_eq!(out, vec![(1000, 10.0), (2000, 5.0)]);
    }

    #[test]
    fn normalize_uses_only_earlier_samples() {
        let mut n = Normalize::new(NormMethod::MinMax, None);
        let out = values(n.process(&input(&[(0, 5.0), (1, 0.0), (2, 10.0), (3, 5.0)]), &mut OpCtx::new(0)).unwrap());
        // The first two have no range before them; then min 0, max 5; then 0..10.
        assert_eq!(out, vec![(0, 0.0), (1, 0.0), (2, 2.0), (3, 0.5)]);
        let mut z = Normalize::new(NormMethod::Z, Some(1000));
        let out = values(z.process(&input(&[(0, 1.0), (1, 3.0), (2, 2.0)]), &mut OpCtx::new(0)).unwrap());
        assert_eq!(out[2], (2, 0.0), "2 is the mean of 1 and 3");
    }

    #[test]
    fn rolling_emits_one_series_per_statistic() {
        let mut r = Rolling::new(10, vec!["mean".into(), "max".into(), "p50".into()]);
        let Data::Series(s) = r.process(&input(&[(0, 1.0), (5, 3.0), (20, 10.0)]), &mut OpCtx::new(0)).unwrap() else { panic!() };
        assert_eq!(s.series.len(), 3);
        let by = |stat: &str| s.series.iter().find(|c| c.id.label("stat") == Some(stat)).unwrap().values.clone();
        assert_eq!(by("mean"), vec![1.0, 2.0, 10.0], "the 10 ms window forgets the first two");
        assert_eq!(by("max"), vec![1.0, 3.0, 10.0]);
        assert_eq!(by("p50"), vec![1.0, 2.0, 10.0]);
    }

    #[test]
    fn window_emits_full_rows_every_stride() {
        let mut w = Window::new(3, 2);
        let Data::Features(f) = w.process(&input(&[(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0), (4, 5.0)]), &mut OpCtx::new(0)).unwrap() else {
            panic!()
        };
        let m = &f.matrices[0];
        assert_eq!(m.ts, vec![2, 4]);
        assert_eq!(m.row(0), &[1.0, 2.0, 3.0]);
        assert_eq!(m.row(1), &[3.0, 4.0, 5.0]);
    }

    #[test]
    fn selectors_match_like_prometheus() {
        let m = parse_selector(r#"up{job="node", instance=~"web-.*", env!="dev"}"#).unwrap();
        let id = SeriesId::new("up", [("job".into(), "node".into()), ("instance".into(), "web-1".into())]);
        assert!(m.iter().all(|m| m.matches(&|l| id.label(l).map(str::to_owned))));
        assert!(parse_selector("{job=node}").is_err());
        assert!(parse_selector(r#"{a=~"("}"#).is_err());
    }

    #[test]
    fn aggregate_counts_events_per_interval_with_zeros() {
        use crate::data::Event;
        let ev = |t: i64, name: &str| Event {
            ts: t,
            labels: [("alertname".to_owned(), name.to_owned())].into(),
            annotations: BTreeMap::new(),
            status: "firing".into(),
            fingerprint: String::new(),
        };
        let mut a = Aggregate::new(vec!["alertname".into()], Agg::Count, Some(60_000));
        let batch = Data::Events(Arc::new(EventsData { events: vec![ev(1_000, "A"), ev(2_000, "A"), ev(61_000, "A")] }));
        let out = values(a.process(&[batch], &mut OpCtx::new(62_000)).unwrap());
        assert_eq!(out, vec![(0, 2.0)]);
        let out = values(a.process(&[Data::Events(Arc::new(EventsData::default()))], &mut OpCtx::new(200_000)).unwrap());
        assert_eq!(out, vec![(60_000, 1.0), (120_000, 0.0)]);
    }
}
