//! What an operator's signature is made of: [`OperatorSpec`] — its stage kind, inputs,
//! parameters (name, type, default, range or choices, doc), output port type,
//! documentation and an example — and the Markdown generated from specs.
//!
//! Each operator's spec lives in its own file under `src/operators/` with its typed
//! parameters, validation and build; the registry there lists them
//! (`crate::operators::specs`). The checker reads specs to resolve calls and check
//! arguments; `docs/operators.md` is generated from them (`vigil explain operators`), and
//! a test compiles every example.

use crate::syntax::ast::StageKind;
pub use crate::types::{Default, ParamSpec, Scalar, Ty};

/// One input port: positional, connected to another stage.
#[derive(Debug)]
pub struct InputSpec {
    pub name: &'static str,
    /// The port types this input accepts.
    pub types: &'static [Ty],
    pub doc: &'static str,
    /// Takes every positional argument from here on (`correlate(a, b, c)`): one or more
    /// stages. The parameters after it are given by name.
    pub many: bool,
}

/// What an operator's output is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Output {
    Fixed(Ty),
    /// The same port type as the input at this index (`select` passes Series or Events).
    SameAsInput(usize),
}

/// A built-in operator's signature and documentation.
#[derive(Debug)]
pub struct OperatorSpec {
    /// The name it is called by (`prometheus.query_range`).
    pub name: &'static str,
    pub kind: StageKind,
    pub summary: &'static str,
    pub doc: &'static str,
    pub inputs: &'static [InputSpec],
    pub params: &'static [ParamSpec],
    pub output: Output,
    /// A stage statement using it, compiled by a test inside a pipeline that defines
    /// `raw` (Series), `events` (Events), `feats` (Features), `model` (Model) and
    /// `scores` (Scores).
    pub example: &'static str,
}

impl OperatorSpec {
    /// All parameters: the operator's own, then those its stage kind shares.
    pub fn all_params(&self) -> impl Iterator<Item = &'static ParamSpec> + Clone {
        self.params.iter().chain(common_params(self.kind).iter())
    }

    pub fn param(&self, name: &str) -> Option<&'static ParamSpec> {
        self.all_params().find(|p| p.name == name)
    }
}

pub(crate) mod spec;

use self::Default::*;

/// Parameters every stage of a kind takes.
pub fn common_params(kind: StageKind) -> &'static [ParamSpec] {
    use self::spec::p;
    static RESPOND: &[ParamSpec] = &[
        p("when", Ty::Condition, Optional, "Acts only on items for which this condition holds, e.g. `scores.anomalous`. Default: anomalous scores, and every incident transition."),
        p("dedup", Ty::String, Str("{{ pipeline }}/{{ stage }}/{{ series }}"), "Template of the incident key: items with the same key update one incident."),
        p("group_by", Ty::List(Scalar::String), Strs(&[]), "Labels whose values group incidents into one notification."),
    ];
    match kind {
        StageKind::Respond => RESPOND,
        _ => &[],
    }
}

/// A default as shown in docs and `--help`.
pub fn default_str(d: &Default) -> String {
    match d {
        Required => "required".into(),
        Optional => "—".into(),
        Int(i) => format!("`{i}`"),
        Float(f) => format!("`{f:?}`"),
        Bool(b) => format!("`{b}`"),
        Str(s) => format!("`{}`", crate::syntax::print::quote(s)),
        Dur(ms) => format!("`{}`", crate::syntax::ast::Duration { millis: *ms }),
        Strs(v) => format!("`[{}]`", v.iter().map(|s| crate::syntax::print::quote(s)).collect::<Vec<_>>().join(", ")),
        Ints(v) => format!("`[{}]`", v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")),
    }
}
