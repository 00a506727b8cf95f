//! `correlate(a, b, ...)`: the incidents of several respond stages grouped into situations
//! by [`crate::correlate::Correlator`], each open situation a series of the output
//! Scores, so that an ordinary respond stage after it notifies once per situation (with
//! its silences, acknowledgements, rate limits and audit).
//!
//! - Input: the tick's incident transitions of every input stage, fed in time order.
//! - Time: the incidents' own timestamps; the tick's time closes situations whose members
//!   all resolved more than `window` ago.
//! - Output: per situation the tick changed (opened, joined, a member resolved, closed),
//!   one sample at the tick's time: anomalous (score 1, value = members firing) while it
//!   is open, quiet once closed (the respond stage resolves its incident then). A
//!   situation nothing happened to emits nothing: its incident stays as it is. The series is `situation`
//!   with label `situation` (its id) and the first member's labels — stable for the
//!   situation's life, so the respond stage keys one incident per situation, and silences
//!   on those labels apply to it. Annotations: `origin` (the probable origin's key),
//!   `origin_service`, `members` (how many) and `samples` (the origin and why, then one
//!   line per member: key, stage, state, why it joined), which the respond stage copies
//!   into the incident
//!   (`incident.samples`) and re-sends as `updated` when they change.
//! - State: the correlator is the stage's snapshot (restart, reload); a reload that
//!   changes the parameters keeps the situations ([`Correlator::reconfigure`]).
//! - The situations are published on the responder for `GET /api/v1/situations`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::correlate::{Alert, Change, Config, Correlator, JoinReason, Situation, Topology};
use crate::data::{Data, ScoreColumn, ScoresData, SeriesId};
use crate::respond::Responder;
use crate::runtime::{OpCtx, OpError, Operator};

/// Situations published for the API per stage: the newest this many.
pub const PUBLISHED: usize = 1000;

/// Members listed in a situation's `samples` annotation (the rest are counted).
const LISTED: usize = 20;

pub struct Correlate {
    stage: String,
    correlator: Correlator,
    responder: Arc<Responder>,
    /// The latest time seen (incidents' or ticks').
    clock: i64,
    /// Changed since the last snapshot, and that snapshot.
    dirty: bool,
    saved: Option<String>,
}

/// Reads a topology: a JSON file and inline `"a -> b"` edges.
///
/// # Errors
/// The file cannot be read or parsed; an edge is not `a -> b`.
pub fn topology(file: Option<(&std::path::Path, String)>, edges: &[String]) -> Result<Option<Topology>, String> {
    let mut all: Vec<(String, String)> = Vec::new();
    if let Some((path, text)) = file {
        let t = Topology::from_json(&text).map_err(|e| format!("the topology `{}`: {}", path.display(), e.message))?;
        all.extend(t.edges());
    }
    for e in edges {
        let Some((a, b)) = e.split_once("->") else {
            return Err(format!("the edge `{e}` is not `service -> dependency`"));
        };
        all.push((a.trim().to_owned(), b.trim().to_owned()));
    }
    if all.is_empty() {
        return Ok(None);
    }
    Topology::from_edges(all).map(Some).map_err(|e| e.message)
}

impl Correlate {
    pub fn new(stage: String, config: Config, responder: Arc<Responder>) -> Correlate {
        Correlate { stage, correlator: Correlator::new(config), responder, clock: i64::MIN, dirty: false, saved: None }
    }

    /// The output column of a situation: `open` or its closing sample.
    fn column(s: &Situation, ts: i64, open: bool) -> ScoreColumn {
        let first = s.members.first();
        let mut labels: Vec<(String, String)> =
            first.map(|m| m.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
        labels.retain(|(k, _)| k != "situation");
        labels.push(("situation".into(), s.id.clone()));
        let mut col = ScoreColumn::new(SeriesId::new("situation", labels));
        let firing = s.firing() as f64;
        col.push(ts, firing, if open { 1.0 } else { 0.0 }, f64::NAN, f64::NAN, f64::NAN, open);
        let origin = s.origin.as_deref().and_then(|o| s.member(o));
        let mut notes = BTreeMap::new();
        notes.insert("origin".to_owned(), s.origin.clone().unwrap_or_default());
        notes.insert("origin_service".to_owned(), origin.and_then(|m| m.labels.get("service").cloned()).unwrap_or_default());
        notes.insert("members".to_owned(), (s.members.len() as u64 + s.dropped_members).to_string());
        let mut lines: Vec<String> = Vec::with_capacity(LISTED + 2);
        if let Some(o) = &s.origin {
            lines.push(format!("origin: {o} — {}", s.origin_reason));
        }
        lines.extend(s.members.iter().take(LISTED).map(member_line));
        let more = s.members.len().saturating_sub(LISTED) as u64 + s.dropped_members;
        if more > 0 {
            lines.push(format!("… and {more} more"));
        }
        notes.insert("samples".to_owned(), lines.join(super::preprocess::SAMPLE_SEPARATOR));
        col.annotations = Some(Arc::new(notes));
        col
    }

    fn publish(&self) {
        // The newest PUBLISHED only are copied (there may be 100 000 open).
        let mut all: Vec<&Situation> = self.correlator.situations().collect();
        if all.len() > PUBLISHED {
            all.select_nth_unstable_by_key(PUBLISHED - 1, |s| std::cmp::Reverse(s.last_change_at));
            all.truncate(PUBLISHED);
        }
        all.sort_by_key(|s| std::cmp::Reverse(s.last_change_at));
        let all: Vec<Situation> = all.into_iter().cloned().collect();
        self.responder.situations.write().unwrap_or_else(|e| e.into_inner()).insert(self.stage.clone(), all);
    }
}

/// One member of a situation, for humans: `key (stage, firing) — why it joined`.
fn member_line(m: &crate::correlate::Member) -> String {
    let state = if m.firing { "firing" } else { "resolved" };
    format!("{} ({}, {state}) — {}", m.key, m.source, reason_text(&m.reason))
}

/// Why a member joined, for humans.
pub fn reason_text(r: &JoinReason) -> String {
    match r {
        JoinReason::First => "first".into(),
        JoinReason::Label { name, value, with } => format!("shares {name}={value} with {with}"),
        JoinReason::Topology { path, with } => format!("depends along {} ({with})", path.join(" → ")),
        JoinReason::Text { similarity, with } => format!("reads like {with} ({similarity:.2})"),
        JoinReason::Rejoined => "fired again".into(),
    }
}

impl Operator for Correlate {
    fn process(&mut self, inputs: &[Data], ctx: &mut OpCtx) -> Result<Data, OpError> {
        let mut alerts: Vec<Alert> = Vec::new();
        for d in inputs {
            let Data::Incidents(i) = d else {
                return Err(OpError::Invalid(format!("correlate takes incidents, got {}", d.kind())));
            };
            alerts.extend(i.updates.iter().map(|u| Alert {
                id: u.id.clone(),
                key: u.key.clone(),
                source: u.stage.clone(),
                ts: u.ts,
                firing: u.status == "firing",
                labels: u.labels.clone(),
                title: u.series.clone(),
            }));
        }
        alerts.sort_by_key(|a| a.ts);
        let mut changes = Vec::new();
        for a in alerts {
            self.clock = self.clock.max(a.ts);
            changes.extend(self.correlator.observe(a));
        }
        self.clock = self.clock.max(ctx.now);
        changes.extend(self.correlator.advance(self.clock));
        // The situations this tick changed, each once, in the order of their changes.
        let mut touched: Vec<&str> = Vec::new();
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for c in &changes {
            match c {
                Change::Unmatched { .. } => ctx.skip("unmatched_resolution"),
                Change::Overflowed { .. } => ctx.skip("situation_full"),
                Change::Opened { .. } => ctx.count("situations_opened", 1),
                _ => {}
            }
            if let Some(id) = c.situation().filter(|id| seen.insert(id)) {
                touched.push(id);
            }
        }
        let ts = self.clock;
        let opened: std::collections::HashSet<&str> =
            changes.iter().filter_map(|c| if let Change::Opened { situation, .. } = c { Some(situation.as_str()) } else { None }).collect();
        let series: Vec<ScoreColumn> = touched
            .iter()
            .filter_map(|id| self.correlator.get(id))
            .map(|s| {
                let mut col = Self::column(s, ts, s.is_open());
                if !s.is_open() && opened.contains(&s.id.as_str()) {
                    // Opened and closed within the tick: it fired, then cleared.
                    let mut open = Self::column(s, ts.saturating_sub(1), true);
                    open.push(col.ts[0], col.value[0], 0.0, f64::NAN, f64::NAN, f64::NAN, false);
                    col = open;
                }
                col
            })
            .collect();
        if !changes.is_empty() {
            self.dirty = true;
            self.publish();
        }
        Ok(Data::Scores(Arc::new(ScoresData { series })))
    }

    fn snapshot(&mut self) -> Option<String> {
        if self.dirty || self.saved.is_none() {
            self.saved = serde_json::to_string(&self.correlator).ok();
            self.dirty = false;
        }
        self.saved.clone()
    }

    fn restore(&mut self, snapshot: &str) {
        match serde_json::from_str::<Correlator>(snapshot) {
            Ok(mut c) => {
                // A reload with other parameters keeps the situations under the new ones.
                c.reconfigure(self.correlator.config().clone());
                self.correlator = c;
                self.dirty = true;
                self.publish();
            }
            Err(e) => tracing::warn!(stage = %self.stage, error = %e, "ignoring an unreadable correlation snapshot"),
        }
    }
}
