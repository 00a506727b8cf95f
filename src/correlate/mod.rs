//! Alert correlation (#17): incidents from several respond stages become *situations*.
//!
//! Input: [`Alert`]s — incident transitions (a firing incident, or its resolution) — fed one
//! at a time to [`Correlator::observe`], and the passing of time through
//! [`Correlator::advance`]. Output: [`Change`]s — a situation opened, a member joined (and
//! why), a member resolved, the probable origin changed, a situation closed — for the
//! respond side to notify once per situation and to audit. The correlator is pure: no
//! clock, no I/O, no other vigil module; the engine owns it and persists it with serde.
//!
//! # The model
//!
//! A *situation* is a set of member incidents, each joined for a recorded reason
//! ([`JoinReason`]). A firing alert joins an open situation when both hold:
//!
//! - **close in time**: its timestamp lies within `window_ms` of the situation's extent
//!   `[opened_at, last_joined_at]` (the earliest and latest member timestamps; each join
//!   stretches it, so a cascade that keeps arriving keeps the situation accepting), and the
//!   extent with the alert stays within `max_span_ms` (the cap);
//! - **related** to some member by any rule: a shared value of one of the `by` labels; a
//!   service within `hops` edges of the member's service in the [`Topology`] (either
//!   direction; the service is the `service_label` label); or titles whose word-token
//!   Jaccard similarity is at least `similarity` (see [`text`]).
//!
//! When several open situations qualify, the alert joins one: the strongest rule wins
//! (label, then topology by distance, then text by similarity), then the situation nearest
//! in time, then the newest. **Situations are never merged** (the issue left this open;
//! BigPanda merges): a merge lets one noisy alert that touches two unrelated cascades fuse
//! them — the worst error for an on-call who then chases one origin — and it would make an
//! already-notified situation vanish. The cost is that a cascade first seen from two ends
//! can stay two situations; each still has its own origin.
//!
//! An alert related to no open situation opens one. Its id is `sit-` and 16 hex digits of
//! a hash of the first member's key and timestamp (plus a counter in the rare case of a
//! clash), so a replay of the same alerts yields the same ids.
//!
//! # Time
//!
//! Time is the alerts' own timestamps (ms since the epoch), so replays and tests are
//! deterministic. Out-of-order timestamps (clock skew) are placed by their timestamp: an
//! alert up to `window_ms` *before* a situation's extent joins it, and `opened_at` moves
//! back. An alert older than the window of every open situation opens its own. Closing is
//! driven only by [`Correlator::advance`] (the caller's clock, e.g. the engine tick), never
//! by an alert's timestamp, so one alert stamped a day ahead cannot close everything. All
//! time arithmetic saturates: no timestamp can cause a panic.
//!
//! # Lifecycle
//!
//! - A situation is **open while any member fires**. When none fires and `window_ms` has
//!   passed since its last change (join or resolution), `advance` closes it; `closed_at` is
//!   that last change plus the window, whatever the granularity of `advance`.
//! - A member that resolves and fires again (same `key`) while its situation is open, within
//!   `window_ms` of its resolution or of the situation's extent, **rejoins** it
//!   ([`JoinReason::Rejoined`], a new incident id on the same member) — even past the span
//!   cap: a flapping member is the same trouble, not a new one. A firing alert for a key
//!   that is already firing is a [`Change::Duplicate`] (the incident id is updated).
//! - A resolution is matched by key to the open situation where the key last fired, and to
//!   the member's current incident id (an empty id matches any); anything else is
//!   [`Change::Unmatched`], counted — a late resolution of an older incident cannot resolve
//!   the one firing now.
//!
//! # Origin
//!
//! The probable origin is recomputed on every join: among the members whose service is in
//! the topology, those with no other member's service strictly upstream of theirs ("A
//! depends on B" makes B upstream of A, transitively); of those the earliest. Services on
//! one cycle are upstream of none of each other, so the origin among them is the earliest.
//! Without a topology, or when no member's service is in it, the origin is the earliest
//! member. A change is reported as [`Change::OriginChanged`].
//!
//! # Bounds (bounded, documented behaviour instead of unbounded work)
//!
//! - `max_open` open situations: opening one more first closes the oldest-opened
//!   ([`Change::Evicted`], counted in [`Stats::evicted`]); later resolutions of its
//!   members are unmatched.
//! - `max_members` per situation: later members are counted in `dropped_members`
//!   ([`Change::Overflowed`]), not stored; their resolutions are then unmatched.
//! - `keep_closed` closed situations stay readable through [`Correlator::get`]; older ones
//!   are forgotten (counted).
//! - Each lookup key (a label value, a service, a title token) examines at most the 32
//!   newest open situations that hold it; a topology neighbourhood holds at most 256
//!   services; a situation keeps at most 8 title signatures and 64 origin candidates. So
//!   `observe` costs O(1) in the number of open situations (plus a logarithm for indexes).
//!   Growing the hash indexes is the one pause: crossing 57 344 open situations rehashes
//!   them at once (about 25 ms measured on a loaded 2-core machine; p99 stays at tens of
//!   µs). The indexes hold integers (hashes, handles), so a rehash hashes no strings.
//!
//! # Errors
//!
//! `observe`, `advance` and `reconfigure` cannot fail: every input has a documented outcome.
//! [`Topology::from_json`] returns a [`TopologyError`]; restoring a snapshot returns the
//! deserialiser's error when the snapshot is malformed or inconsistent.
//!
//! # State
//!
//! [`Correlator`] serialises (serde) to a snapshot holding its config, situations, clock
//! and counters; deserialising rebuilds the indexes and checks the snapshot is consistent.
//! Restoring a snapshot behaves exactly like the correlator it was taken from.
//! [`Correlator::reconfigure`] (a reload) keeps every situation and re-indexes it under the
//! new config; origins are recomputed and reported.

pub mod scenario;
pub mod text;
pub mod topology;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

pub use topology::{Neighbour, Topology, TopologyError, TopologyErrorKind};

/// Open situations examined per lookup key (label value, service, token), newest first.
const MAX_SCAN: usize = 32;
/// Services in one topology neighbourhood.
const MAX_NEIGHBOURS: usize = 256;
/// Distinct title signatures kept per situation.
const MAX_SIGNATURES: usize = 8;
/// Members considered for the origin per situation (the antichain of most-upstream members).
const MAX_CANDIDATES: usize = 64;

/// One incident transition fed to the correlator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The incident id (a re-fire of the same thing is a new incident id with the same `key`).
    pub id: String,
    /// The incident's dedup key: stable across re-fires of the same thing.
    pub key: String,
    /// The respond stage it came from, e.g. `shop.latency_page`.
    pub source: String,
    /// Ms since the epoch: when it opened (or resolved, for a resolution).
    pub ts: i64,
    /// `false`: this incident resolved at `ts`.
    pub firing: bool,
    pub labels: BTreeMap<String, String>,
    /// Text for similarity: series name, log template, message.
    pub title: String,
}

/// How alerts are correlated. Out-of-range values are clamped (see each field).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Join when within this of the situation's extent (default 5 min; negative → 0).
    pub window_ms: i64,
    /// A situation accepts no new member once its extent would exceed this (default 1 h).
    pub max_span_ms: i64,
    /// Label names: sharing any one value of these relates two alerts (default `service`, `host`).
    pub by: Vec<String>,
    pub topology: Option<Topology>,
    /// Topology distance (edges, either direction) within which members are related
    /// (default 1). A cascade moves one edge at a time and every alerting service becomes a
    /// member, so joining member by member follows it to any depth with 1; 2 also bridges a
    /// service that did not alert, but in a connected graph the 2-hop neighbourhood is a large
    /// share of all services and unrelated alerts join (measured: `examples/correlation.rs`).
    pub hops: usize,
    /// The label naming an alert's service in the topology (default `service`).
    pub service_label: String,
    /// Title similarity threshold in (0, 1] (Jaccard of word tokens); `None` = off. Clamped
    /// into (0, 1]; NaN = off.
    pub similarity: Option<f64>,
    /// Open situations kept; opening one more closes the oldest (default 100 000; 0 → 1).
    pub max_open: usize,
    /// Members stored per situation; later ones are counted, not stored (default 10 000; 0 → 1).
    pub max_members: usize,
    /// Closed situations kept readable (default 1 000).
    pub keep_closed: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            window_ms: 5 * 60_000,
            max_span_ms: 60 * 60_000,
            by: vec!["service".into(), "host".into()],
            topology: None,
            hops: 1,
            service_label: "service".into(),
            similarity: None,
            max_open: 100_000,
            max_members: 10_000,
            keep_closed: 1_000,
        }
    }
}

impl Config {
    fn sanitized(mut self) -> Config {
        self.window_ms = self.window_ms.max(0);
        self.max_span_ms = self.max_span_ms.max(0);
        self.max_open = self.max_open.max(1);
        self.max_members = self.max_members.max(1);
        self.similarity = self.similarity.filter(|s| !s.is_nan()).map(|s| s.clamp(f64::MIN_POSITIVE, 1.0));
        self
    }
}

/// A group of related incidents with a probable origin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Situation {
    /// `sit-` + 16 hex digits: deterministic from the first member's key and timestamp.
    pub id: String,
    /// The earliest member timestamp (moves back when an out-of-order member joins).
    pub opened_at: i64,
    /// The latest member timestamp.
    pub last_joined_at: i64,
    /// The latest join or resolution timestamp: closing counts the window from here.
    pub last_change_at: i64,
    pub closed_at: Option<i64>,
    pub members: Vec<Member>,
    /// The key of the member judged the probable origin.
    pub origin: Option<String>,
    /// Why that member: which rule chose it.
    pub origin_reason: String,
    /// Members that joined past `max_members`: counted, not stored.
    pub dropped_members: u64,
}

impl Situation {
    /// Whether it is still open.
    pub fn is_open(&self) -> bool {
        self.closed_at.is_none()
    }

    /// Members firing now.
    pub fn firing(&self) -> usize {
        self.members.iter().filter(|m| m.firing).count()
    }

    /// The member with this key.
    pub fn member(&self, key: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.key == key)
    }
}

/// One incident in a situation (all incidents of one key: a re-fire rejoins the same member).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub key: String,
    /// The current (latest) incident id of this key.
    pub incident_id: String,
    pub source: String,
    pub labels: BTreeMap<String, String>,
    pub title: String,
    /// The alert's timestamp when it first joined.
    pub joined_at: i64,
    pub firing: bool,
    /// Why it first joined.
    pub reason: JoinReason,
    /// The timestamp of its latest firing.
    pub last_fired_at: i64,
    pub resolved_at: Option<i64>,
    /// How many times it fired in this situation (1 + rejoins).
    pub fires: u32,
    /// Arrival order of its latest firing (which situation a key belongs to after a restore).
    pub seq: u64,
}

/// Why an alert joined a situation: the rule, and which label, edge or text matched.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum JoinReason {
    /// It opened the situation.
    First,
    /// It shares `name=value` with member `with`.
    Label { name: String, value: String, with: String },
    /// Its service reaches member `with`'s service along `path` (services, its own first).
    Topology { path: Vec<String>, with: String },
    /// Its title is this similar to member `with`'s.
    Text { similarity: f64, with: String },
    /// It was already a member, resolved, and fired again.
    Rejoined,
}

/// What one call changed. Ids are situation ids, members are incident keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// A new situation, with its first member (notify once).
    Opened {
        situation: String,
        member: String,
    },
    /// A member joined (or rejoined) an open situation.
    Joined {
        situation: String,
        member: String,
        reason: JoinReason,
    },
    /// A firing alert for a member already firing, or a resolution of one already resolved:
    /// nothing changes but the incident id.
    Duplicate {
        situation: String,
        member: String,
        firing: bool,
    },
    /// A member past `max_members`: counted in `dropped_members`, not stored.
    Overflowed {
        situation: String,
        member: String,
    },
    MemberResolved {
        situation: String,
        member: String,
    },
    /// A resolution for a key no open situation holds firing under that incident id.
    Unmatched {
        key: String,
    },
    OriginChanged {
        situation: String,
        from: Option<String>,
        to: String,
    },
    /// No member fires and the window has passed since the last change.
    Closed {
        situation: String,
    },
    /// Closed early to keep `max_open`.
    Evicted {
        situation: String,
    },
}

impl Change {
    /// The situation it concerns; `None` for [`Change::Unmatched`].
    pub fn situation(&self) -> Option<&str> {
        match self {
            Change::Opened { situation, .. }
            | Change::Joined { situation, .. }
            | Change::Duplicate { situation, .. }
            | Change::Overflowed { situation, .. }
            | Change::MemberResolved { situation, .. }
            | Change::OriginChanged { situation, .. }
            | Change::Closed { situation }
            | Change::Evicted { situation } => Some(situation),
            Change::Unmatched { .. } => None,
        }
    }
}

/// Counters since the correlator was created (they survive a snapshot).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub alerts: u64,
    pub opened: u64,
    pub joined: u64,
    pub rejoined: u64,
    pub duplicates: u64,
    pub overflowed: u64,
    pub resolved: u64,
    pub unmatched: u64,
    pub closed: u64,
    pub evicted: u64,
    /// Closed situations forgotten past `keep_closed`.
    pub forgotten: u64,
    /// Firing alerts whose service label names a service the topology does not know.
    pub unknown_services: u64,
}

/// Groups alerts into situations. See the module documentation for the model.
pub struct Correlator {
    config: Config,
    /// Open and retained closed situations, by handle (handles grow in opening order).
    situations: BTreeMap<u64, Situation>,
    open: BTreeSet<u64>,
    /// Closed handles in the order they closed (the oldest is forgotten first).
    closed: VecDeque<u64>,
    next_handle: u64,
    /// The latest time given to `advance`.
    watermark: i64,
    /// Alerts observed: orders the firings of one key across situations.
    seq: u64,
    stats: Stats,
    rt: Runtime,
}

/// Indexes derived from the situations; rebuilt on restore and reconfigure, never saved.
#[derive(Default)]
struct Runtime {
    /// A B-tree, not a hash map: it is read rarely, and never stalls to rehash.
    ids: BTreeMap<String, u64>,
    /// Key → open situations that hold it (usually one).
    /// By hash of the key (a collision only adds a handle that `current` skips): growing
    /// it rehashes integers, not strings.
    keys: HashMap<u64, Vec<u64>>,
    /// Hash of (label name, value) → open situations.
    labels: HashMap<u64, BTreeSet<u64>>,
    services: HashMap<u32, BTreeSet<u64>>,
    tokens: HashMap<u64, BTreeSet<u64>>,
    /// Open situations with no firing member, by last change.
    quiet: BTreeSet<(i64, u64)>,
    // Boxed: growing the map then moves pointers, not indexes (a pause at 100 000 open).
    per: HashMap<u64, Box<Index>>,
    /// Topology neighbourhoods, computed on first use.
    near: HashMap<u32, Vec<Neighbour>>,
}

/// Per open situation.
#[derive(Default)]
struct Index {
    members: HashMap<String, usize>,
    /// Label hash → latest member with it.
    labels: HashMap<u64, usize>,
    /// Service → latest member on it.
    services: HashMap<u32, usize>,
    /// Each member's service id in the topology.
    service_of: Vec<Option<u32>>,
    signatures: Vec<(Vec<u64>, usize)>,
    firing: usize,
    /// Members with no other member upstream of them.
    candidates: Vec<usize>,
    earliest: usize,
    quiet_at: Option<i64>,
    /// `(opened_at, last_joined_at)` of the situation, here so a lookup touches one map.
    extent: (i64, i64),
}

/// FNV-1a over parts separated by 0xff (which no UTF-8 text contains).
pub(crate) fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0xff;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Whether a situation accepts a new member at `ts`; if so, the distance from its extent.
fn accepts((first, last): (i64, i64), ts: i64, config: &Config) -> Option<u64> {
    if ts < first.saturating_sub(config.window_ms) || ts > last.saturating_add(config.window_ms) {
        return None;
    }
    if last.max(ts).abs_diff(first.min(ts)) > config.max_span_ms as u64 {
        return None;
    }
    Some(if ts < first {
        first.abs_diff(ts)
    } else if ts > last {
        ts.abs_diff(last)
    } else {
        0
    })
}

/// A relation found while searching, before it is turned into a [`JoinReason`].
#[derive(Clone, Copy)]
enum Pick {
    Label { name: usize, member: usize },
    Topology { pos: usize, member: usize },
    Text { similarity: f64, member: usize },
}

impl Correlator {
    /// An empty correlator.
    pub fn new(config: Config) -> Correlator {
        Correlator {
            config: config.sanitized(),
            situations: BTreeMap::new(),
            open: BTreeSet::new(),
            closed: VecDeque::new(),
            next_handle: 0,
            watermark: i64::MIN,
            seq: 0,
            stats: Stats::default(),
            rt: Runtime::default(),
        }
    }

    /// The config in force (after clamping).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Open situations.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Open and retained closed situations, oldest opened first.
    pub fn situations(&self) -> impl Iterator<Item = &Situation> {
        self.situations.values()
    }

    /// A situation by id (open, or closed and still retained).
    pub fn get(&self, id: &str) -> Option<&Situation> {
        self.rt.ids.get(id).and_then(|h| self.situations.get(h))
    }

    /// Feeds one alert; returns what happened: it opened a situation, joined one (and
    /// why), rejoined, resolved a member, or was a duplicate or unmatched; plus an origin
    /// change or an eviction it caused. Never panics; every alert is accounted for.
    pub fn observe(&mut self, alert: Alert) -> Vec<Change> {
        self.stats.alerts += 1;
        self.seq += 1;
        if !alert.firing {
            return self.resolve(alert);
        }
        if let Some((h, m)) = self.current(&alert.key) {
            let sit = &self.situations[&h];
            let member = &sit.members[m];
            if member.firing {
                return self.duplicate(h, m, alert);
            }
            let window = self.config.window_ms as u64;
            let near_resolution = member.resolved_at.is_some_and(|r| r.abs_diff(alert.ts) <= window);
            if near_resolution || accepts((sit.opened_at, sit.last_joined_at), alert.ts, &self.config).is_some() {
                return self.rejoin(h, m, alert);
            }
        }
        let service = self.service_of(&alert.labels);
        if service.is_none() && self.config.topology.is_some() && alert.labels.contains_key(&self.config.service_label) {
            self.stats.unknown_services += 1;
        }
        let tokens = if self.config.similarity.is_some() { text::tokens(&alert.title) } else { Vec::new() };
        match self.best(&alert, service, &tokens) {
            Some((h, pick)) => self.join(h, alert, pick, tokens),
            None => self.open(alert, tokens),
        }
    }

    /// Time passes: situations with no firing member whose last change is `window_ms` or
    /// more before `now` close. `now` earlier than a previous call changes nothing.
    pub fn advance(&mut self, now: i64) -> Vec<Change> {
        self.watermark = self.watermark.max(now);
        let mut changes = Vec::new();
        while let Some(&(t, h)) = self.rt.quiet.first() {
            let due = t.saturating_add(self.config.window_ms);
            if due > self.watermark {
                break;
            }
            self.close(h, due);
            self.stats.closed += 1;
            changes.push(Change::Closed { situation: self.situations.get(&h).map_or_else(String::new, |s| s.id.clone()) });
            self.forget_old();
        }
        changes
    }

    /// A reload: the new config applies from now on; every situation is kept and re-indexed
    /// under it. Returns the origins that changed (a new topology) and the situations
    /// evicted when `max_open` shrank.
    pub fn reconfigure(&mut self, config: Config) -> Vec<Change> {
        let before: Vec<(u64, Option<String>)> = self.open.iter().map(|h| (*h, self.situations[h].origin.clone())).collect();
        self.config = config.sanitized();
        self.rebuild();
        let mut changes = Vec::new();
        for (h, from) in before {
            let sit = &self.situations[&h];
            if sit.origin != from {
                if let Some(to) = sit.origin.clone() {
                    changes.push(Change::OriginChanged { situation: sit.id.clone(), from, to });
                }
            }
        }
        while self.open.len() > self.config.max_open {
            changes.push(self.evict_oldest());
        }
        while self.closed.len() > self.config.keep_closed {
            self.forget_old();
        }
        changes
    }

    // ---------------------------------------------------------------- firing alerts

    /// The open situation where `key` last fired, and the member's position.
    fn current(&self, key: &str) -> Option<(u64, usize)> {
        let handles = self.rt.keys.get(&fnv(&[key.as_bytes()]))?;
        let mut best: Option<(u64, u64, usize)> = None;
        for &h in handles {
            let (Some(idx), Some(sit)) = (self.rt.per.get(&h), self.situations.get(&h)) else { continue };
            let Some(&m) = idx.members.get(key) else { continue };
            let seq = sit.members[m].seq;
            if best.is_none_or(|(s, bh, _)| (seq, h) > (s, bh)) {
                best = Some((seq, h, m));
            }
        }
        best.map(|(_, h, m)| (h, m))
    }

    fn service_of(&self, labels: &BTreeMap<String, String>) -> Option<u32> {
        let topology = self.config.topology.as_ref()?;
        topology.id(labels.get(&self.config.service_label)?)
    }

    /// The best open situation the alert relates to (see the module docs for the order).
    fn best(&mut self, alert: &Alert, service: Option<u32>, tokens: &[u64]) -> Option<(u64, Pick)> {
        // (rule, strength, distance in time, newest first)
        type Rank = (u8, u64, u64, u64);
        let mut best: Option<(Rank, u64, Pick)> = None;
        let consider = |best: &mut Option<(Rank, u64, Pick)>, rank: Rank, h: u64, pick: Pick| {
            if best.as_ref().is_none_or(|(r, _, _)| rank < *r) {
                *best = Some((rank, h, pick));
            }
        };
        let config = &self.config;
        for (i, name) in config.by.iter().enumerate() {
            let Some(value) = alert.labels.get(name) else { continue };
            let key = fnv(&[name.as_bytes(), value.as_bytes()]);
            let Some(posting) = self.rt.labels.get(&key) else { continue };
            // Newest first: once one overlaps in time, no older one can rank higher.
            for &h in posting.iter().rev().take(MAX_SCAN) {
                let Some(idx) = self.rt.per.get(&h) else { continue };
                let Some(gap) = accepts(idx.extent, alert.ts, config) else { continue };
                let Some(&m) = idx.labels.get(&key) else { continue };
                consider(&mut best, (0, 0, gap, u64::MAX - h), h, Pick::Label { name: i, member: m });
                if gap == 0 {
                    break;
                }
            }
        }
        // The hash found it; the label itself must match (no false relation on a collision).
        if let Some((_, h, Pick::Label { name, member })) = best {
            let name = &config.by[name];
            let matches =
                self.situations.get(&h).and_then(|s| s.members.get(member)).is_some_and(|m| m.labels.get(name) == alert.labels.get(name));
            if !matches {
                best = None;
            }
        }
        // A weaker rule cannot beat a stronger one: stop at the first rule that found one.
        if best.is_some() {
            return best.map(|(_, h, pick)| (h, pick));
        }
        if let (Some(s), Some(topology)) = (service, config.topology.as_ref()) {
            let near = self.rt.near.entry(s).or_insert_with(|| topology.neighbourhood(s, config.hops, MAX_NEIGHBOURS));
            for (pos, n) in near.iter().enumerate() {
                // Breadth-first order: once a distance has a candidate, farther ones cannot win.
                if best.as_ref().is_some_and(|((_, d, _, _), _, _)| u64::from(n.dist) > *d) {
                    break;
                }
                let Some(posting) = self.rt.services.get(&n.service) else { continue };
                for &h in posting.iter().rev().take(MAX_SCAN) {
                    let Some(idx) = self.rt.per.get(&h) else { continue };
                    let Some(gap) = accepts(idx.extent, alert.ts, config) else { continue };
                    let Some(&m) = idx.services.get(&n.service) else { continue };
                    consider(&mut best, (1, u64::from(n.dist), gap, u64::MAX - h), h, Pick::Topology { pos, member: m });
                    if gap == 0 {
                        break;
                    }
                }
            }
        }
        if best.is_some() {
            return best.map(|(_, h, pick)| (h, pick));
        }
        if let (Some(threshold), false) = (config.similarity, tokens.is_empty()) {
            let mut handles: Vec<u64> = Vec::new();
            for t in tokens {
                if let Some(posting) = self.rt.tokens.get(t) {
                    handles.extend(posting.iter().rev().take(MAX_SCAN));
                }
            }
            handles.sort_unstable();
            handles.dedup();
            for h in handles {
                let Some(idx) = self.rt.per.get(&h) else { continue };
                let Some(gap) = accepts(idx.extent, alert.ts, config) else { continue };
                let mut top: Option<(f64, usize)> = None;
                for (sig, m) in &idx.signatures {
                    let s = text::jaccard(tokens, sig);
                    if top.is_none_or(|(b, _)| s > b) {
                        top = Some((s, *m));
                    }
                }
                if let Some((similarity, m)) = top.filter(|(s, _)| *s >= threshold) {
                    let strength = ((1.0 - similarity) * 1e6) as u64;
                    consider(&mut best, (2, strength, gap, u64::MAX - h), h, Pick::Text { similarity, member: m });
                }
            }
        }
        best.map(|(_, h, pick)| (h, pick))
    }

    fn reason(&self, h: u64, alert: &Alert, pick: Pick) -> JoinReason {
        let sit = &self.situations[&h];
        match pick {
            Pick::Label { name, member } => {
                let name = self.config.by[name].clone();
                let value = alert.labels.get(&name).cloned().unwrap_or_default();
                JoinReason::Label { name, value, with: sit.members[member].key.clone() }
            }
            Pick::Topology { pos, member } => {
                let path = match (self.config.topology.as_ref(), self.service_of(&alert.labels)) {
                    (Some(t), Some(s)) => self.rt.near.get(&s).map(|near| t.path(near, pos)).unwrap_or_default(),
                    _ => Vec::new(),
                };
                JoinReason::Topology { path, with: sit.members[member].key.clone() }
            }
            Pick::Text { similarity, member } => JoinReason::Text { similarity, with: sit.members[member].key.clone() },
        }
    }

    fn duplicate(&mut self, h: u64, m: usize, alert: Alert) -> Vec<Change> {
        self.stats.duplicates += 1;
        let Some(sit) = self.situations.get_mut(&h) else { return Vec::new() };
        let member = &mut sit.members[m];
        if alert.firing && !alert.id.is_empty() {
            member.incident_id = alert.id;
        }
        vec![Change::Duplicate { situation: sit.id.clone(), member: member.key.clone(), firing: alert.firing }]
    }

    fn rejoin(&mut self, h: u64, m: usize, alert: Alert) -> Vec<Change> {
        self.stats.rejoined += 1;
        let seq = self.seq;
        let Some(sit) = self.situations.get_mut(&h) else { return Vec::new() };
        let member = &mut sit.members[m];
        member.firing = true;
        member.incident_id = alert.id;
        member.last_fired_at = alert.ts;
        member.fires = member.fires.saturating_add(1);
        member.seq = seq;
        let key = member.key.clone();
        sit.opened_at = sit.opened_at.min(alert.ts);
        sit.last_joined_at = sit.last_joined_at.max(alert.ts);
        sit.last_change_at = sit.last_change_at.max(alert.ts);
        let id = sit.id.clone();
        if let Some(idx) = self.rt.per.get_mut(&h) {
            idx.firing += 1;
            idx.extent = (sit.opened_at, sit.last_joined_at);
        }
        self.requeue(h);
        vec![Change::Joined { situation: id, member: key, reason: JoinReason::Rejoined }]
    }

    fn join(&mut self, h: u64, alert: Alert, pick: Pick, tokens: Vec<u64>) -> Vec<Change> {
        // A resolved member of this very situation (reached through a relation rather than
        // through its key) fires again: that is a rejoin, not a second member.
        if let Some(&m) = self.rt.per.get(&h).and_then(|idx| idx.members.get(&alert.key)) {
            return self.rejoin(h, m, alert);
        }
        let Some(sit) = self.situations.get(&h) else { return self.open(alert, tokens) };
        if sit.members.len() >= self.config.max_members {
            self.stats.overflowed += 1;
            let Some(sit) = self.situations.get_mut(&h) else { return Vec::new() };
            sit.dropped_members += 1;
            return vec![Change::Overflowed { situation: sit.id.clone(), member: alert.key }];
        }
        self.stats.joined += 1;
        let reason = self.reason(h, &alert, pick);
        let key = alert.key.clone();
        let Some(sit) = self.situations.get_mut(&h) else { return Vec::new() };
        sit.opened_at = sit.opened_at.min(alert.ts);
        sit.last_joined_at = sit.last_joined_at.max(alert.ts);
        sit.last_change_at = sit.last_change_at.max(alert.ts);
        sit.members.push(self::member(alert, reason.clone(), self.seq));
        let m = sit.members.len() - 1;
        let id = sit.id.clone();
        self.index_member(h, m, Some(tokens));
        self.requeue(h);
        let mut changes = vec![Change::Joined { situation: id, member: key, reason }];
        changes.extend(self.refresh_origin(h));
        changes
    }

    fn open(&mut self, alert: Alert, tokens: Vec<u64>) -> Vec<Change> {
        let mut changes = Vec::new();
        while self.open.len() >= self.config.max_open {
            changes.push(self.evict_oldest());
        }
        self.stats.opened += 1;
        let mut n = 0u64;
        let id = loop {
            let ts = alert.ts.to_le_bytes();
            let id = if n == 0 {
                format!("sit-{:016x}", fnv(&[alert.key.as_bytes(), &ts]))
            } else {
                format!("sit-{:016x}", fnv(&[alert.key.as_bytes(), &ts, &n.to_le_bytes()]))
            };
            if !self.rt.ids.contains_key(&id) {
                break id;
            }
            n += 1;
        };
        let h = self.next_handle;
        self.next_handle += 1;
        let key = alert.key.clone();
        let ts = alert.ts;
        let sit = Situation {
            id: id.clone(),
            opened_at: ts,
            last_joined_at: ts,
            last_change_at: ts,
            closed_at: None,
            members: vec![member(alert, JoinReason::First, self.seq)],
            origin: None,
            origin_reason: String::new(),
            dropped_members: 0,
        };
        self.situations.insert(h, sit);
        self.open.insert(h);
        self.rt.ids.insert(id.clone(), h);
        self.rt.per.insert(h, Box::default());
        self.index_member(h, 0, Some(tokens));
        self.requeue(h);
        self.refresh_origin(h);
        changes.push(Change::Opened { situation: id, member: key });
        changes
    }

    // ---------------------------------------------------------------- resolutions

    fn resolve(&mut self, alert: Alert) -> Vec<Change> {
        let Some((h, m)) = self.current(&alert.key) else {
            self.stats.unmatched += 1;
            return vec![Change::Unmatched { key: alert.key }];
        };
        let member = &self.situations[&h].members[m];
        if !alert.id.is_empty() && member.incident_id != alert.id {
            self.stats.unmatched += 1;
            return vec![Change::Unmatched { key: alert.key }];
        }
        if !member.firing {
            return self.duplicate(h, m, alert);
        }
        self.stats.resolved += 1;
        let Some(sit) = self.situations.get_mut(&h) else { return Vec::new() };
        let member = &mut sit.members[m];
        member.firing = false;
        member.resolved_at = Some(alert.ts);
        sit.last_change_at = sit.last_change_at.max(alert.ts);
        let id = sit.id.clone();
        if let Some(idx) = self.rt.per.get_mut(&h) {
            idx.firing = idx.firing.saturating_sub(1);
        }
        self.requeue(h);
        vec![Change::MemberResolved { situation: id, member: alert.key }]
    }

    // ---------------------------------------------------------------- indexes

    /// Adds member `m` of open situation `h` to the indexes and the origin candidates.
    fn index_member(&mut self, h: u64, m: usize, tokens: Option<Vec<u64>>) {
        let Some(sit) = self.situations.get(&h) else { return };
        let member = &sit.members[m];
        let service = self.service_of(&member.labels);
        let Some(idx) = self.rt.per.get_mut(&h) else { return };
        idx.extent = (sit.opened_at, sit.last_joined_at);
        idx.members.insert(member.key.clone(), m);
        let handles = self.rt.keys.entry(fnv(&[member.key.as_bytes()])).or_default();
        if !handles.contains(&h) {
            handles.push(h);
        }
        if member.firing {
            idx.firing += 1;
        }
        for name in &self.config.by {
            if let Some(value) = member.labels.get(name) {
                let key = fnv(&[name.as_bytes(), value.as_bytes()]);
                idx.labels.insert(key, m);
                self.rt.labels.entry(key).or_default().insert(h);
            }
        }
        idx.service_of.resize(m + 1, None);
        idx.service_of[m] = service;
        if let Some(s) = service {
            idx.services.insert(s, m);
            self.rt.services.entry(s).or_default().insert(h);
        }
        if self.config.similarity.is_some() && idx.signatures.len() < MAX_SIGNATURES {
            let tokens = tokens.unwrap_or_else(|| text::tokens(&member.title));
            if !tokens.is_empty() && !idx.signatures.iter().any(|(s, _)| *s == tokens) {
                for t in &tokens {
                    self.rt.tokens.entry(*t).or_default().insert(h);
                }
                idx.signatures.push((tokens, m));
            }
        }
        // Origin candidates: the members with nothing upstream of them (an antichain; see
        // the module docs). Upstream is transitive, so checking the candidates suffices.
        if m == 0 || member.joined_at < sit.members[idx.earliest].joined_at {
            idx.earliest = m;
        }
        if let (Some(topology), Some(x)) = (self.config.topology.as_ref(), service) {
            let of = |c: usize| idx.service_of.get(c).copied().flatten();
            let dominated = idx.candidates.iter().any(|&c| of(c).is_some_and(|cs| topology.is_upstream(cs, x)));
            if !dominated {
                let service_of = &idx.service_of;
                idx.candidates.retain(|&c| !service_of.get(c).copied().flatten().is_some_and(|cs| topology.is_upstream(x, cs)));
                if idx.candidates.len() < MAX_CANDIDATES {
                    idx.candidates.push(m);
                }
            }
        }
    }

    /// Sets the origin from the candidates; reports a change of an existing origin.
    fn refresh_origin(&mut self, h: u64) -> Option<Change> {
        let idx = self.rt.per.get(&h)?;
        let sit = self.situations.get(&h)?;
        let earliest_of = |ms: &mut dyn Iterator<Item = usize>| ms.min_by_key(|&m| (sit.members[m].joined_at, m));
        let (m, reason) = if let Some(m) = earliest_of(&mut idx.candidates.iter().copied()) {
            let service = sit.members[m].labels.get(&self.config.service_label).cloned().unwrap_or_default();
            let reason = if idx.candidates.len() == 1 {
                format!("furthest upstream: no other member's service is upstream of `{service}`")
            } else {
                format!("furthest upstream, earliest of {} members with nothing upstream of them (`{service}`)", idx.candidates.len())
            };
            (m, reason)
        } else {
            let why =
                if self.config.topology.is_some() { "earliest member (no member's service is in the topology)" } else { "earliest member" };
            (idx.earliest, why.to_string())
        };
        let to = sit.members.get(m)?.key.clone();
        let sit = self.situations.get_mut(&h)?;
        sit.origin_reason = reason;
        if sit.origin.as_deref() == Some(to.as_str()) {
            return None;
        }
        let from = sit.origin.replace(to.clone());
        from.map(|from| Change::OriginChanged { situation: sit.id.clone(), from: Some(from), to })
    }

    /// Files an open situation under `quiet` when no member fires (by its last change).
    fn requeue(&mut self, h: u64) {
        let (Some(idx), Some(sit)) = (self.rt.per.get_mut(&h), self.situations.get(&h)) else { return };
        if let Some(t) = idx.quiet_at.take() {
            self.rt.quiet.remove(&(t, h));
        }
        if idx.firing == 0 {
            idx.quiet_at = Some(sit.last_change_at);
            self.rt.quiet.insert((sit.last_change_at, h));
        }
    }

    fn evict_oldest(&mut self) -> Change {
        let Some(&h) = self.open.first() else { return Change::Evicted { situation: String::new() } };
        let at = self.situations.get(&h).map_or(self.watermark, |s| s.last_change_at.max(self.watermark));
        self.close(h, at);
        self.stats.evicted += 1;
        let change = Change::Evicted { situation: self.situations.get(&h).map_or_else(String::new, |s| s.id.clone()) };
        self.forget_old();
        change
    }

    /// Closes open situation `h` at `at`: out of every index, into the closed list.
    fn close(&mut self, h: u64, at: i64) {
        self.open.remove(&h);
        if let Some(idx) = self.rt.per.remove(&h) {
            if let Some(t) = idx.quiet_at {
                self.rt.quiet.remove(&(t, h));
            }
            for key in idx.labels.keys() {
                remove_from(&mut self.rt.labels, key, h);
            }
            for s in idx.services.keys() {
                remove_from(&mut self.rt.services, s, h);
            }
            for (sig, _) in &idx.signatures {
                for t in sig {
                    remove_from(&mut self.rt.tokens, t, h);
                }
            }
            for key in idx.members.keys() {
                let hash = fnv(&[key.as_bytes()]);
                if let Some(handles) = self.rt.keys.get_mut(&hash) {
                    handles.retain(|&x| x != h);
                    if handles.is_empty() {
                        self.rt.keys.remove(&hash);
                    }
                }
            }
        }
        if let Some(sit) = self.situations.get_mut(&h) {
            sit.closed_at = Some(at);
        }
        self.closed.push_back(h);
    }

    fn forget_old(&mut self) {
        while self.closed.len() > self.config.keep_closed {
            let Some(h) = self.closed.pop_front() else { break };
            if let Some(sit) = self.situations.remove(&h) {
                self.rt.ids.remove(&sit.id);
            }
            self.stats.forgotten += 1;
        }
    }

    /// Rebuilds every index from the situations (restore, reconfigure).
    fn rebuild(&mut self) {
        self.rt = Runtime::default();
        for (&h, sit) in &self.situations {
            self.rt.ids.insert(sit.id.clone(), h);
        }
        let open: Vec<u64> = self.open.iter().copied().collect();
        for h in open {
            self.rt.per.insert(h, Box::default());
            let n = self.situations.get(&h).map_or(0, |s| s.members.len());
            for m in 0..n {
                self.index_member(h, m, None);
            }
            self.requeue(h);
            self.refresh_origin(h);
        }
    }
}

fn member(alert: Alert, reason: JoinReason, seq: u64) -> Member {
    Member {
        key: alert.key,
        incident_id: alert.id,
        source: alert.source,
        labels: alert.labels,
        title: alert.title,
        joined_at: alert.ts,
        firing: true,
        reason,
        last_fired_at: alert.ts,
        resolved_at: None,
        fires: 1,
        seq,
    }
}

fn remove_from<K: std::hash::Hash + Eq + Copy>(map: &mut HashMap<K, BTreeSet<u64>>, key: &K, h: u64) {
    if let Some(set) = map.get_mut(key) {
        set.remove(&h);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

// -------------------------------------------------------------------- snapshots

#[derive(Serialize)]
struct SnapshotRef<'a> {
    version: u32,
    config: &'a Config,
    situations: &'a BTreeMap<u64, Situation>,
    open: &'a BTreeSet<u64>,
    closed: &'a VecDeque<u64>,
    next_handle: u64,
    watermark: i64,
    seq: u64,
    stats: &'a Stats,
}

#[derive(Deserialize)]
struct Snapshot {
    version: u32,
    config: Config,
    situations: BTreeMap<u64, Situation>,
    open: BTreeSet<u64>,
    closed: VecDeque<u64>,
    next_handle: u64,
    watermark: i64,
    seq: u64,
    stats: Stats,
}

const SNAPSHOT_VERSION: u32 = 1;

impl Serialize for Correlator {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SnapshotRef {
            version: SNAPSHOT_VERSION,
            config: &self.config,
            situations: &self.situations,
            open: &self.open,
            closed: &self.closed,
            next_handle: self.next_handle,
            watermark: self.watermark,
            seq: self.seq,
            stats: &self.stats,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Correlator {
    /// Restores a snapshot; rejects one whose parts disagree (a handle that names no
    /// situation, an open situation marked closed, a member list past its bound...).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Correlator, D::Error> {
        use serde::de::Error;
        let s = Snapshot::deserialize(deserializer)?;
        if s.version != SNAPSHOT_VERSION {
            return Err(D::Error::custom(format!("correlator snapshot version {} (expected {SNAPSHOT_VERSION})", s.version)));
        }
        for (&h, sit) in &s.situations {
            let open = s.open.contains(&h);
            if open == sit.closed_at.is_some() || (!open && !s.closed.contains(&h)) {
                return Err(D::Error::custom(format!("correlator snapshot: situation {} is neither open nor closed", sit.id)));
            }
            if h >= s.next_handle || sit.members.is_empty() {
                return Err(D::Error::custom(format!("correlator snapshot: situation {} is inconsistent", sit.id)));
            }
        }
        if s.open.iter().chain(&s.closed).any(|h| !s.situations.contains_key(h)) {
            return Err(D::Error::custom("correlator snapshot: a handle names no situation"));
        }
        let mut c = Correlator {
            config: s.config.sanitized(),
            situations: s.situations,
            open: s.open,
            closed: s.closed,
            next_handle: s.next_handle,
            watermark: s.watermark,
            seq: s.seq,
            stats: s.stats,
            rt: Runtime::default(),
        };
        c.rebuild();
        Ok(c)
    }
}
