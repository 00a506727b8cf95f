//! A service topology: which service depends on which.
//!
//! Input: JSON (`{"edges": [["checkout", "payments"]]}` or `{"checkout": ["payments", "db"]}`)
//! or a list of edges `(dependant, dependency)`. Output: a [`Topology`] that answers the two
//! questions correlation asks:
//!
//! - *distance*: which services lie within `hops` of a service, counting edges in either
//!   direction ([`Topology::neighbourhood`], breadth-first, bounded by a visit cap);
//! - *upstream*: is service B upstream of A, i.e. does A depend on B, directly or
//!   transitively, while B does not depend back on A ([`Topology::is_upstream`]).
//!
//! Invariants and decisions:
//!
//! - Upstream queries are one bit test for topologies of up to 4 096 strongly connected
//!   components (the closure is precomputed), a pruned search beyond.
//! - Cycles are allowed. Services on a cycle (one strongly connected component) are upstream
//!   of none of each other, so the origin among them falls back to the earliest member.
//!   Strongly connected components are found iteratively (Tarjan without recursion), so no
//!   topology, however deep, can overflow the stack.
//! - Self-loops (`["a", "a"]`) are ignored and counted ([`Topology::ignored_self_loops`]):
//!   graphs exported from a service mesh often contain a service calling itself, and the
//!   edge carries no information about distance or order. Duplicate edges are merged.
//! - Empty (or whitespace-only) service names, malformed JSON and wrongly shaped values are
//!   errors ([`TopologyError`]) that say where the problem is.
//! - `{"edges": [...]}` is the edge form unless `edges` holds only strings (then it is a
//!   service named `edges` in the map form), so a broken edge is reported as an edge;
//!   an optional `"services": [...]` lists services without edges. Any other object is the
//!   map form, where every key is a service and its value the list of its dependencies.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a topology could not be read: what kind of problem, and a message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologyError {
    pub kind: TopologyErrorKind,
    /// Short, lowercase, says where: `edge 3: expected ["dependant", "dependency"]`.
    pub message: String,
}

/// The kinds of [`TopologyError`], for callers that react differently (or point at a line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopologyErrorKind {
    /// Not JSON; where the parser stopped (1-based).
    MalformedJson { line: usize, column: usize },
    /// JSON, but not an object.
    NotAnObject,
    /// An edge (1-based) that is not a pair of strings.
    BadEdge { edge: usize },
    /// A service entry of the wrong shape: its name, or its position in `services` (1-based).
    BadService { service: String },
    /// An empty or whitespace-only service name.
    EmptyName,
    /// A key beside `edges` other than `services`.
    UnknownKey { key: String },
}

impl TopologyError {
    fn new(kind: TopologyErrorKind, message: impl Into<String>) -> TopologyError {
        TopologyError { kind, message: message.into() }
    }
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid topology: {}", self.message)
    }
}

impl std::error::Error for TopologyError {}

/// One service found by [`Topology::neighbourhood`]: the service, its distance from the
/// start and the position of the service it was reached from (for the path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub service: u32,
    pub dist: u32,
    /// Position in the neighbourhood list of the previous service on the path; `u32::MAX` for the start.
    pub parent: u32,
}

/// A dependency graph of services. `A depends on B` makes B *upstream* of A.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(into = "TopologyRepr", try_from = "TopologyRepr")]
pub struct Topology {
    names: Vec<String>,
    index: HashMap<String, u32>,
    /// `deps[a]`: the services a depends on.
    deps: Vec<Vec<u32>>,
    /// `dependants[b]`: the services that depend on b.
    dependants: Vec<Vec<u32>>,
    /// Strongly connected component of each service.
    comp: Vec<u32>,
    /// Longest path from each component to a component with no dependencies.
    height: Vec<u32>,
    /// The condensation: component → components it depends on.
    comp_deps: Vec<Vec<u32>>,
    /// For up to [`CLOSURE_LIMIT`] components: the components each one reaches, as a
    /// bitset (4 096 components take 2 MB), so an upstream query is one bit test.
    closure: Vec<Vec<u64>>,
    self_loops: usize,
}

/// Components up to which the transitive closure is precomputed; beyond, queries search.
const CLOSURE_LIMIT: usize = 4_096;

/// The serialised form: every service, and every edge as `[dependant, dependency]`.
#[derive(Serialize, Deserialize)]
struct TopologyRepr {
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    edges: Vec<(String, String)>,
}

impl From<Topology> for TopologyRepr {
    fn from(t: Topology) -> TopologyRepr {
        TopologyRepr { services: t.names.clone(), edges: t.edges() }
    }
}

impl TryFrom<TopologyRepr> for Topology {
    type Error = TopologyError;
    fn try_from(r: TopologyRepr) -> Result<Topology, TopologyError> {
        Topology::from_parts(r.services, r.edges)
    }
}

/// Two topologies are equal when they have the same services and edges in the same order
/// (ignored self-loops do not count).
impl PartialEq for Topology {
    fn eq(&self, other: &Topology) -> bool {
        self.names == other.names && self.deps == other.deps
    }
}

impl Eq for Topology {}

/// Visits allowed to one upstream query before it answers "not known to be upstream".
const UPSTREAM_BUDGET: usize = 20_000;

impl Topology {
    /// Builds a topology from edges `(dependant, dependency)`: `("checkout", "payments")`
    /// means checkout depends on payments.
    ///
    /// # Errors
    /// An empty or whitespace-only service name.
    pub fn from_edges(edges: Vec<(String, String)>) -> Result<Topology, TopologyError> {
        Topology::from_parts(Vec::new(), edges)
    }

    /// Builds a topology from services (which may have no edges) and edges.
    ///
    /// # Errors
    /// An empty or whitespace-only service name.
    pub fn from_parts(services: Vec<String>, edges: Vec<(String, String)>) -> Result<Topology, TopologyError> {
        let mut t = Topology::default();
        for (i, s) in services.into_iter().enumerate() {
            if s.trim().is_empty() {
                return Err(TopologyError::new(TopologyErrorKind::EmptyName, format!("service {}: empty service name", i + 1)));
            }
            t.intern(s);
        }
        let mut seen = HashSet::new();
        for (i, (a, b)) in edges.into_iter().enumerate() {
            if a.trim().is_empty() || b.trim().is_empty() {
                return Err(TopologyError::new(TopologyErrorKind::EmptyName, format!("edge {}: empty service name", i + 1)));
            }
            let (a, b) = (t.intern(a), t.intern(b));
            if a == b {
                t.self_loops += 1;
            } else if seen.insert((a, b)) {
                t.deps[a as usize].push(b);
                t.dependants[b as usize].push(a);
            }
        }
        t.condense();
        Ok(t)
    }

    /// Reads `{"edges": [["checkout", "payments"], ...], "services": [...]}` (services
    /// optional) or the map form `{"checkout": ["payments", "db"], "db": []}`.
    ///
    /// # Errors
    /// Malformed JSON (with line and column), a value of the wrong shape (with the edge
    /// number or service), an empty service name.
    pub fn from_json(text: &str) -> Result<Topology, TopologyError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            TopologyError::new(TopologyErrorKind::MalformedJson { line: e.line(), column: e.column() }, format!("malformed JSON: {e}"))
        })?;
        let serde_json::Value::Object(map) = value else {
            return Err(TopologyError::new(
                TopologyErrorKind::NotAnObject,
                "expected an object: {\"edges\": [[\"dependant\", \"dependency\"], ...]} or {\"service\": [\"dependency\", ...]}",
            ));
        };
        let edge_form = match map.get("edges") {
            Some(serde_json::Value::Array(items)) => items.is_empty() || !items.iter().all(|v| v.is_string()),
            _ => false,
        };
        let mut services = Vec::new();
        let mut edges = Vec::new();
        if edge_form {
            for (key, value) in &map {
                match key.as_str() {
                    "edges" => {
                        let items = value.as_array().map(Vec::as_slice).unwrap_or_default();
                        for (i, item) in items.iter().enumerate() {
                            match item.as_array().map(Vec::as_slice) {
                                Some([serde_json::Value::String(a), serde_json::Value::String(b)]) => edges.push((a.clone(), b.clone())),
                                _ => {
                                    return Err(TopologyError::new(
                                        TopologyErrorKind::BadEdge { edge: i + 1 },
                                        format!("edge {}: expected [\"dependant\", \"dependency\"], found {item}", i + 1),
                                    ))
                                }
                            }
                        }
                    }
                    "services" => {
                        let Some(items) = value.as_array() else {
                            return Err(TopologyError::new(
                                TopologyErrorKind::BadService { service: "services".into() },
                                "`services`: expected an array of service names",
                            ));
                        };
                        for (i, item) in items.iter().enumerate() {
                            match item.as_str() {
                                Some(s) => services.push(s.to_string()),
                                None => {
                                    return Err(TopologyError::new(
                                        TopologyErrorKind::BadService { service: (i + 1).to_string() },
                                        format!("service {}: expected a string, found {item}", i + 1),
                                    ))
                                }
                            }
                        }
                    }
                    other => {
                        return Err(TopologyError::new(
                            TopologyErrorKind::UnknownKey { key: other.to_string() },
                            format!("unknown key `{other}` beside `edges` (expected `edges` and `services`)"),
                        ))
                    }
                }
            }
        } else {
            for (service, value) in &map {
                services.push(service.clone());
                let Some(items) = value.as_array() else {
                    return Err(TopologyError::new(
                        TopologyErrorKind::BadService { service: service.clone() },
                        format!("service `{service}`: expected an array of dependencies, found {value}"),
                    ));
                };
                for item in items {
                    match item.as_str() {
                        Some(dep) => edges.push((service.clone(), dep.to_string())),
                        None => {
                            return Err(TopologyError::new(
                                TopologyErrorKind::BadService { service: service.clone() },
                                format!("service `{service}`: expected a service name, found {item}"),
                            ))
                        }
                    }
                }
            }
        }
        Topology::from_parts(services, edges)
    }

    /// The edge form as JSON text (what [`Topology::from_json`] reads back).
    pub fn to_json(&self) -> String {
        serde_json::json!({ "services": self.names, "edges": self.edges() }).to_string()
    }

    /// Every edge as `(dependant, dependency)`, in the order first given.
    pub fn edges(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (a, deps) in self.deps.iter().enumerate() {
            for &b in deps {
                out.push((self.names[a].clone(), self.names[b as usize].clone()));
            }
        }
        out
    }

    /// Number of services.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no services.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Whether the service is known.
    pub fn contains(&self, service: &str) -> bool {
        self.index.contains_key(service)
    }

    /// Self-loops that were ignored while building.
    pub fn ignored_self_loops(&self) -> usize {
        self.self_loops
    }

    /// Whether `dependant` depends directly on `dependency`.
    pub fn depends_on(&self, dependant: &str, dependency: &str) -> bool {
        match (self.id(dependant), self.id(dependency)) {
            (Some(a), Some(b)) => self.deps[a as usize].contains(&b),
            _ => false,
        }
    }

    /// The service's dense id.
    pub fn id(&self, service: &str) -> Option<u32> {
        self.index.get(service).copied()
    }

    /// The name of a dense id. Panics on an id this topology did not hand out (a bug).
    pub fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    /// Services within `hops` edges of `start` (either direction), breadth-first, the start
    /// first at distance 0; at most `cap` services (the nearest ones are kept).
    pub fn neighbourhood(&self, start: u32, hops: usize, cap: usize) -> Vec<Neighbour> {
        let mut out = vec![Neighbour { service: start, dist: 0, parent: u32::MAX }];
        let mut seen = HashSet::from([start]);
        let mut queue = VecDeque::from([0usize]);
        while let Some(pos) = queue.pop_front() {
            let here = out[pos];
            if here.dist as usize >= hops {
                continue;
            }
            let around = self.deps[here.service as usize].iter().chain(&self.dependants[here.service as usize]);
            for &next in around {
                if out.len() >= cap {
                    return out;
                }
                if seen.insert(next) {
                    out.push(Neighbour { service: next, dist: here.dist + 1, parent: pos as u32 });
                    queue.push_back(out.len() - 1);
                }
            }
        }
        out
    }

    /// The path of service names from the start of `list` to `list[pos]`.
    pub fn path(&self, list: &[Neighbour], pos: usize) -> Vec<String> {
        let mut path = Vec::new();
        let mut at = pos;
        while let Some(n) = list.get(at) {
            path.push(self.names[n.service as usize].clone());
            if n.parent == u32::MAX || path.len() > list.len() {
                break;
            }
            at = n.parent as usize;
        }
        path.reverse();
        path
    }

    /// Whether `upstream` is strictly upstream of `of`: `of` depends on it (transitively)
    /// and it does not depend back on `of` (services on one cycle are upstream of none of
    /// each other). A query that would visit more than 20 000 components answers `false`.
    pub fn is_upstream(&self, upstream: u32, of: u32) -> bool {
        let (Some(&from), Some(&to)) = (self.comp.get(of as usize), self.comp.get(upstream as usize)) else {
            return false;
        };
        if from == to || self.height[from as usize] <= self.height[to as usize] {
            return false;
        }
        if let Some(bits) = self.closure.get(from as usize) {
            return bits.get(to as usize / 64).is_some_and(|w| w & (1 << (to % 64)) != 0);
        }
        // Heights strictly fall along every edge of the condensation, so any component no
        // higher than the target cannot lead to it: prune those.
        let target_height = self.height[to as usize];
        let mut stack = vec![from];
        let mut seen = HashSet::from([from]);
        while let Some(c) = stack.pop() {
            for &next in &self.comp_deps[c as usize] {
                if next == to {
                    return true;
                }
                if self.height[next as usize] > target_height && seen.insert(next) {
                    if seen.len() > UPSTREAM_BUDGET {
                        return false;
                    }
                    stack.push(next);
                }
            }
        }
        false
    }

    fn intern(&mut self, name: String) -> u32 {
        if let Some(&id) = self.index.get(&name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.index.insert(name.clone(), id);
        self.names.push(name);
        self.deps.push(Vec::new());
        self.dependants.push(Vec::new());
        id
    }

    /// Strongly connected components (iterative Tarjan), their condensation and heights.
    fn condense(&mut self) {
        const UNSET: u32 = u32::MAX;
        let n = self.names.len();
        let mut index = vec![UNSET; n];
        let mut low = vec![0u32; n];
        let mut on_stack = vec![false; n];
        let mut stack: Vec<u32> = Vec::new();
        let mut comp = vec![UNSET; n];
        let mut next_index = 0u32;
        let mut comps = 0u32;
        for root in 0..n {
            if index[root] != UNSET {
                continue;
            }
            let mut calls: Vec<(u32, usize)> = vec![(root as u32, 0)];
            index[root] = next_index;
            low[root] = next_index;
            next_index += 1;
            stack.push(root as u32);
            on_stack[root] = true;
            while let Some(&mut (v, ref mut pos)) = calls.last_mut() {
                let v = v as usize;
                if let Some(&w) = self.deps[v].get(*pos) {
                    *pos += 1;
                    let w = w as usize;
                    if index[w] == UNSET {
                        index[w] = next_index;
                        low[w] = next_index;
                        next_index += 1;
                        stack.push(w as u32);
                        on_stack[w] = true;
                        calls.push((w as u32, 0));
                    } else if on_stack[w] {
                        low[v] = low[v].min(index[w]);
                    }
                } else {
                    calls.pop();
                    if let Some(&(parent, _)) = calls.last() {
                        low[parent as usize] = low[parent as usize].min(low[v]);
                    }
                    if low[v] == index[v] {
                        while let Some(w) = stack.pop() {
                            on_stack[w as usize] = false;
                            comp[w as usize] = comps;
                            if w as usize == v {
                                break;
                            }
                        }
                        comps += 1;
                    }
                }
            }
        }
        // Tarjan completes a component only after every component it depends on, so ids
        // are a topological order from the bottom: one pass in id order gives heights.
        let mut comp_deps: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); comps as usize];
        for (a, deps) in self.deps.iter().enumerate() {
            for &b in deps {
                if comp[a] != comp[b as usize] {
                    comp_deps[comp[a] as usize].insert(comp[b as usize]);
                }
            }
        }
        let mut height = vec![0u32; comps as usize];
        for c in 0..comps as usize {
            height[c] = comp_deps[c].iter().map(|&d| height[d as usize] + 1).max().unwrap_or(0);
        }
        let comp_deps: Vec<Vec<u32>> = comp_deps.into_iter().map(|s| s.into_iter().collect()).collect();
        let mut closure: Vec<Vec<u64>> = Vec::new();
        if (comps as usize) <= CLOSURE_LIMIT {
            let words = (comps as usize).div_ceil(64);
            // Ids are a bottom-up order: every dependency's closure is ready when needed.
            for deps in &comp_deps {
                let mut bits = vec![0u64; words];
                for &d in deps {
                    bits[d as usize / 64] |= 1 << (d % 64);
                    for (w, x) in bits.iter_mut().zip(&closure[d as usize]) {
                        *w |= x;
                    }
                }
                closure.push(bits);
            }
        }
        self.comp = comp;
        self.height = height;
        self.comp_deps = comp_deps;
        self.closure = closure;
    }
}
