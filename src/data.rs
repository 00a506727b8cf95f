//! The data that flows along a pipeline's edges (DESIGN.md §4).
//!
//! Everything is columnar and shared: a stage's output is an `Arc`, so passing it to
//! several readers copies nothing. Timestamps are milliseconds since the Unix epoch (UTC).
//!
//! - [`SeriesData`]: samples `(timestamp, f64)` per series identity ([`SeriesId`]: metric
//!   name and sorted labels), one column pair per series.
//! - [`EventsData`]: timestamped structured records (alerts, log lines).
//! - [`FeaturesData`]: window matrices, one row per window.
//! - [`ScoresData`]: per series and timestamp, the value, a score in [0, 1], expected value
//!   and bounds where known (NaN otherwise) and an `anomalous` flag.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::expr::Val;
pub use crate::respond::IncidentUpdate;
pub use crate::text::escape_label;
pub use crate::time::Timestamp;

/// A series identity: a name and sorted labels. Cheap to clone and compare.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId(Arc<SeriesKey>);

#[derive(PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SeriesKey {
    name: String,
    labels: Vec<(String, String)>,
}

impl SeriesId {
    /// A series called `name` with `labels` (sorted here; a repeated label keeps its last
    /// value).
    pub fn new(name: impl Into<String>, labels: impl IntoIterator<Item = (String, String)>) -> SeriesId {
        let map: BTreeMap<String, String> = labels.into_iter().collect();
        SeriesId(Arc::new(SeriesKey { name: name.into(), labels: map.into_iter().collect() }))
    }

    /// A series with a name and no labels.
    pub fn named(name: impl Into<String>) -> SeriesId {
        SeriesId::new(name, [])
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The labels, sorted by name.
    pub fn labels(&self) -> &[(String, String)] {
        &self.0.labels
    }

    /// The value of label `name`; `__name__` is the series name.
    pub fn label(&self, name: &str) -> Option<&str> {
        if name == "__name__" {
            return Some(&self.0.name);
        }
        self.0.labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The same series with a label added or replaced.
    pub fn with_label(&self, name: &str, value: &str) -> SeriesId {
        let mut labels = self.0.labels.clone();
        match labels.iter_mut().find(|(k, _)| k == name) {
            Some(l) => l.1 = value.to_owned(),
            None => labels.push((name.to_owned(), value.to_owned())),
        }
        SeriesId::new(self.0.name.clone(), labels)
    }

    /// The same labels under another name.
    pub fn renamed(&self, name: &str) -> SeriesId {
        SeriesId::new(name, self.0.labels.clone())
    }
}

impl fmt::Display for SeriesId {
    /// Prometheus style: `name{a="1",b="2"}` (label values escaped).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.name)?;
        if self.0.labels.is_empty() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, (k, v)) in self.0.labels.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}=\"{}\"", escape_label(v))?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for SeriesId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The samples of one series: two columns of equal length, timestamps non-decreasing.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesColumn {
    pub id: SeriesId,
    pub ts: Vec<Timestamp>,
    pub values: Vec<f64>,
    /// Context for people, carried along to incidents (not part of the series' identity):
    /// `samples`, the last lines counted by `aggregate` over log events.
    pub annotations: Option<Arc<BTreeMap<String, String>>>,
}

impl SeriesColumn {
    pub fn new(id: SeriesId) -> SeriesColumn {
        SeriesColumn { id, ts: Vec::new(), values: Vec::new(), annotations: None }
    }

    pub fn push(&mut self, ts: Timestamp, v: f64) {
        self.ts.push(ts);
        self.values.push(v);
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Field `name` of sample `i`, typed as [`crate::types::Ty::fields`] lists the fields
    /// of Series. `None` for a name Series do not have, or an index out of range.
    pub fn field(&self, i: usize, name: &str) -> Option<Val<'_>> {
        if i >= self.len() {
            return None;
        }
        Some(match name {
            "value" => Val::Float(self.values[i]),
            "timestamp" => Val::Int(self.ts[i]),
            "series" => Val::Str(Cow::Owned(self.id.to_string())),
            "labels" => Val::Labels(self.id.labels()),
            _ => return None,
        })
    }
}

/// A batch of series: what a tick brings in or a stage makes of it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeriesData {
    pub series: Vec<SeriesColumn>,
}

impl SeriesData {
    /// How many samples, over all series.
    pub fn samples(&self) -> usize {
        self.series.iter().map(SeriesColumn::len).sum()
    }
}

/// A timestamped structured record: an alert, a log line.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Event {
    pub ts: Timestamp,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `firing` / `resolved` for alerts; empty otherwise.
    pub status: String,
    pub fingerprint: String,
}

impl Event {
    /// Field `name`, typed as [`crate::types::Ty::fields`] lists the fields of Events.
    /// `None` for a name Events do not have.
    pub fn field(&self, name: &str) -> Option<Val<'_>> {
        Some(match name {
            "labels" => Val::Map(&self.labels),
            "annotations" => Val::Map(&self.annotations),
            "status" => Val::Str(Cow::Borrowed(&self.status)),
            "timestamp" => Val::Int(self.ts),
            "fingerprint" => Val::Str(Cow::Borrowed(&self.fingerprint)),
            _ => return None,
        })
    }
}

/// A batch of events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventsData {
    pub events: Vec<Event>,
}

/// Sliding windows of one series: `rows` windows of `width` values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureMatrix {
    pub id: SeriesId,
    /// The timestamp of each window's last value.
    pub ts: Vec<Timestamp>,
    pub width: usize,
    pub values: Vec<f32>,
}

impl FeatureMatrix {
    pub fn rows(&self) -> usize {
        self.ts.len()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.width..(i + 1) * self.width]
    }
}

/// A batch of windows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeaturesData {
    pub matrices: Vec<FeatureMatrix>,
}

/// The scores of one series: columns of equal length.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreColumn {
    pub id: SeriesId,
    pub ts: Vec<Timestamp>,
    pub value: Vec<f64>,
    /// In [0, 1].
    pub score: Vec<f64>,
    /// NaN where unknown.
    pub expected: Vec<f64>,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
    pub anomalous: Vec<bool>,
    /// Indices (ascending) of samples the detector could not score yet — a window still
    /// filling, no model and no fallback: their score is 0, but it says nothing about
    /// whether the anomaly has cleared, so a respond stage never resolves on them. Columns
    /// copied sample by sample with [`ScoreColumn::push`] lose the mark (old behaviour).
    pub unscored: Vec<usize>,
    /// The input series' [`SeriesColumn::annotations`], passed on.
    pub annotations: Option<Arc<BTreeMap<String, String>>>,
}

impl ScoreColumn {
    /// Field `name` of sample `i`, typed as [`crate::types::Ty::fields`] lists the fields of
    /// Scores (the checker's list): the one reading of them, for conditions at run time
    /// and `vigil test`'s expectations. `None` for a name Scores do not have, or an index
    /// out of range.
    pub fn field(&self, i: usize, name: &str) -> Option<Val<'_>> {
        if i >= self.len() {
            return None;
        }
        Some(match name {
            "score" => Val::Float(self.score[i]),
            "value" => Val::Float(self.value[i]),
            "anomalous" => Val::Bool(self.anomalous[i]),
            "expected" => Val::Float(self.expected[i]),
            "lower" => Val::Float(self.lower[i]),
            "upper" => Val::Float(self.upper[i]),
            "timestamp" => Val::Int(self.ts[i]),
            "series" => Val::Str(Cow::Owned(self.id.to_string())),
            "labels" => Val::Labels(self.id.labels()),
            _ => return None,
        })
    }

    pub fn new(id: SeriesId) -> ScoreColumn {
        ScoreColumn {
            id,
            ts: Vec::new(),
            value: Vec::new(),
            score: Vec::new(),
            expected: Vec::new(),
            lower: Vec::new(),
            upper: Vec::new(),
            anomalous: Vec::new(),
            unscored: Vec::new(),
            annotations: None,
        }
    }

    /// Appends a sample the detector could not score yet (see [`ScoreColumn::unscored`]):
    /// score 0, bounds unknown, not anomalous.
    pub fn push_unscored(&mut self, ts: Timestamp, value: f64) {
        self.unscored.push(self.len());
        self.push(ts, value, 0.0, f64::NAN, f64::NAN, f64::NAN, false);
    }

    /// Whether sample `i` was scored (see [`ScoreColumn::unscored`]).
    pub fn is_scored(&self, i: usize) -> bool {
        self.unscored.binary_search(&i).is_err()
    }

    /// Appends one scored sample.
    #[allow(clippy::too_many_arguments)]
    pub fn push(&mut self, ts: Timestamp, value: f64, score: f64, expected: f64, lower: f64, upper: f64, anomalous: bool) {
        self.ts.push(ts);
        self.value.push(value);
        self.score.push(score.clamp(0.0, 1.0));
        self.expected.push(expected);
        self.lower.push(lower);
        self.upper.push(upper);
        self.anomalous.push(anomalous);
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }
}

/// A batch of scores.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScoresData {
    pub series: Vec<ScoreColumn>,
}

/// A batch of incident transitions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IncidentsData {
    pub updates: Vec<IncidentUpdate>,
}

/// The models a train stage offers for one tick: per series (by its Prometheus notation),
/// versions ordered by the last timestamp they were trained on.
#[derive(Default)]
pub struct ModelSet {
    pub key: String,
    pub series: std::collections::HashMap<String, Vec<Arc<crate::learn::Fitted>>>,
    /// Challengers in shadow, per series: scored beside the active version, never used
    /// for alarms; their would-be alarms go to `shadow`.
    pub candidates: std::collections::HashMap<String, Arc<crate::learn::Fitted>>,
    /// What the shadow periods recorded so far, shared with the train stage that decides.
    pub shadow: Option<Arc<std::sync::Mutex<std::collections::HashMap<String, crate::learn::shadow::Run>>>>,
    /// Drift figures computed this tick: per series, (timestamp, population stability
    /// index), for `drift`.
    pub drift: Vec<(SeriesId, Vec<(Timestamp, f64)>)>,
    /// Where the predict stages report each version's live error.
    pub monitor: Option<Arc<crate::learn::monitor::Monitor>>,
    /// Whether the train stage learns from verdicts (its predict stages then raise their
    /// calibration where windows were marked false positive).
    pub learns_from_feedback: bool,
}

impl fmt::Debug for ModelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelSet").field("key", &self.key).field("series", &self.series.len()).finish()
    }
}

impl ModelSet {
    /// The newest version trained only on data before `ts`.
    pub fn version_for(versions: &[Arc<crate::learn::Fitted>], ts: Timestamp) -> Option<usize> {
        versions.iter().rposition(|v| v.meta.data_to < ts)
    }
}

/// What flows along an edge.
#[derive(Clone, Debug)]
pub enum Data {
    Series(Arc<SeriesData>),
    Events(Arc<EventsData>),
    Features(Arc<FeaturesData>),
    Scores(Arc<ScoresData>),
    Incidents(Arc<IncidentsData>),
    /// The trained models a train stage offers for this tick.
    Model(Arc<ModelSet>),
}

impl Data {
    /// The port type's name, for errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Data::Series(_) => "Series",
            Data::Events(_) => "Events",
            Data::Features(_) => "Features",
            Data::Scores(_) => "Scores",
            Data::Incidents(_) => "Incidents",
            Data::Model(_) => "Model",
        }
    }

    /// How many items (samples, events, windows, scores, updates) it holds.
    pub fn items(&self) -> usize {
        match self {
            Data::Series(s) => s.samples(),
            Data::Events(e) => e.events.len(),
            Data::Features(f) => f.matrices.iter().map(FeatureMatrix::rows).sum(),
            Data::Scores(s) => s.series.iter().map(ScoreColumn::len).sum(),
            Data::Incidents(i) => i.updates.len(),
            Data::Model(_) => 1,
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    /// The type of a value as `Ty::fields` names it.
    /// The one field list of each item type (`Ty::fields`, the checker's) is what the
    /// readers of the data read, with the types it says.
    #[test]
    fn every_listed_field_is_read_with_its_type() {
        use crate::types::Ty;
        let mut c = ScoreColumn::new(SeriesId::named("x"));
        c.push(1, 2.0, 0.5, 2.0, 1.0, 3.0, false);
        for (name, ty) in Ty::Scores.fields() {
            assert_eq!(c.field(0, name).as_ref().and_then(Val::ty), Some(*ty), "Scores field `{name}`");
        }
        assert!(c.field(0, "nope").is_none() && c.field(1, "score").is_none());
        let mut s = SeriesColumn::new(SeriesId::new("x", [("a".to_owned(), "b".to_owned())]));
        s.push(1, 2.0);
        for (name, ty) in Ty::Series.fields() {
            assert_eq!(s.field(0, name).as_ref().and_then(Val::ty), Some(*ty), "Series field `{name}`");
        }
        assert!(s.field(0, "score").is_none() && s.field(1, "value").is_none());
        let e = Event { ts: 1, labels: BTreeMap::new(), annotations: BTreeMap::new(), status: "firing".into(), fingerprint: String::new() };
        for (name, ty) in Ty::Events.fields() {
            assert_eq!(e.field(name).as_ref().and_then(Val::ty), Some(*ty), "Events field `{name}`");
        }
        assert!(e.field("value").is_none());
    }

    #[test]
    fn series_ids_sort_labels_and_print_like_prometheus() {
        let a = SeriesId::new("up", [("job".to_owned(), "node".to_owned()), ("instance".to_owned(), "a\"b".to_owned())]);
        let b = SeriesId::new("up", [("instance".to_owned(), "a\"b".to_owned()), ("job".to_owned(), "node".to_owned())]);
        assert_eq!(a, b);
        assert_eq!(a.to_string(), r#"up{instance="a\"b",job="node"}"#);
        assert_eq!(a.label("__name__"), Some("up"));
        assert_eq!(a.with_label("job", "x").label("job"), Some("x"));
    }
}
