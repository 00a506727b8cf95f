//! The plan: what the planner ([`crate::plan::plan`]) makes of a checked program and the
//! engine runs — one DAG per pipeline whose nodes are single operator instances, each
//! with a stable [`StageKey`], its evaluated parameters, its options ([`StageOpt`]) and a
//! [`Fingerprint`] of its canonical configuration; the pipeline's [`Trigger`]s.
//!
//! Invariants: `PipelinePlan::stages` is in topological order (every input precedes the
//! stages that read it) and `graph` has one node per stage with the same index; keys are
//! unique in a pipeline; a fingerprint changes exactly when the node's operator, kind,
//! parameters, options or the keys of its inputs change (upstream configuration is not
//! part of it: the reload diff follows edges when it needs to).
//!
//! These are data only, low in the layers, so that the operators and the runtime read a
//! plan without depending on the front end that makes it.

pub mod options;
mod render;

use std::collections::BTreeMap;

use petgraph::graph::DiGraph;
use sha2::{Digest, Sha256};

use crate::source::Span;
use crate::syntax::ast::StageKind;
use crate::types::Ty;
use crate::value::Value;

pub use options::StageOpt;
pub use render::{to_dot, to_mermaid};

/// A trigger, validated.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Trigger {
    Every { ms: u64 },
    Cron { schedule: String },
    Webhook { path: String },
}

/// The stable name of a stage: `pipeline.stage`, with `.inner` for the stages of an
/// expanded template and `~op` for anonymous steps of a chain.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct StageKey(pub String);

impl std::fmt::Display for StageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A hash of a stage's canonical resolved configuration (16 hex digits).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(pub String);

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The compiled program: every pipeline of the root files.
#[derive(Debug, Clone)]
pub struct Plan {
    pub pipelines: Vec<PipelinePlan>,
}

impl Plan {
    /// The pipeline called `name`.
    pub fn pipeline(&self, name: &str) -> Option<&PipelinePlan> {
        self.pipelines.iter().find(|p| p.name == name)
    }
}

/// One pipeline's DAG.
#[derive(Debug, Clone)]
pub struct PipelinePlan {
    pub name: String,
    pub doc: Vec<String>,
    pub triggers: Vec<Trigger>,
    /// The stages in topological order.
    pub stages: Vec<StageNode>,
    /// Node `i` is `stages[i]`; an edge `a → b` carries the name of `b`'s input slot.
    pub graph: DiGraph<usize, String>,
    pub span: Span,
}

impl PipelinePlan {
    /// The stage with this key.
    pub fn stage(&self, key: &str) -> Option<&StageNode> {
        self.stages.iter().find(|s| s.key.0 == key)
    }
}

/// One operator instance.
#[derive(Debug, Clone)]
pub struct StageNode {
    pub key: StageKey,
    pub kind: StageKind,
    /// The built-in operator it runs.
    pub operator: &'static str,
    /// Every parameter of the operator, evaluated, defaults filled (`Null` when an
    /// optional parameter is absent).
    pub params: BTreeMap<String, Value>,
    pub options: Vec<StageOpt>,
    /// Input slot name → index of the feeding stage in `PipelinePlan::stages`.
    pub inputs: Vec<(String, usize)>,
    /// The stage statement in the user's file this node comes from.
    pub span: Span,
    /// The operator call that made the node, which may be in a stdlib file.
    pub call_span: Span,
    /// Whether the user named this stage (as opposed to a template's or a chain's inner step).
    pub named: bool,
    /// The stage template (stdlib or the user's) the user's stage called, when the node
    /// comes from one: `robust_zscore` for a `zscore` node (graph labels, model names).
    pub via: Option<String>,
    pub doc: Vec<String>,
    pub fingerprint: Fingerprint,
    /// The output port type.
    pub output: Ty,
}

/// The fingerprint of a node's canonical configuration: SHA-256 over an unambiguous
/// encoding (each field length-prefixed) of kind, operator, parameters in name order with
/// canonical values, options in name order, and input slots with the keys feeding them.
pub fn fingerprint(
    kind: StageKind,
    operator: &str,
    params: &BTreeMap<String, Value>,
    options: &[StageOpt],
    inputs: &[(&str, &str)],
) -> Fingerprint {
    let mut h = Sha256::new();
    let field = |h: &mut Sha256, bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(&mut h, kind.as_str().as_bytes());
    field(&mut h, operator.as_bytes());
    for (k, v) in params {
        field(&mut h, k.as_bytes());
        // Values print canonically (`to_source` quotes strings, normalises durations and
        // floats), except that a Condition prints its text bare: tag it.
        let tagged = match v {
            Value::Condition(c) => format!("cond:{c}"),
            other => other.to_source(),
        };
        field(&mut h, tagged.as_bytes());
    }
    let mut opts: Vec<&StageOpt> = options.iter().collect();
    opts.sort_by_key(|o| o.name());
    for o in opts {
        field(&mut h, &serde_json::to_vec(o).expect("options serialise"));
    }
    for (slot, key) in inputs {
        field(&mut h, slot.as_bytes());
        field(&mut h, key.as_bytes());
    }
    Fingerprint(h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect())
}
