//! What an operator's signature is made of: [`OperatorSpec`] — its stage kind, inputs,
//! parameters (name, type, default, range or choices, doc), output port type,
//! documentation and an example — and the Markdown generated from specs.
//!
//! Each operator's spec lives in its own file under `src/operators/` with its typed
//! parameters, validation and build; [`operators`] and [`operator`] read the registry
//! there. The checker reads specs to resolve calls and check arguments;
//! `docs/operators.md` is generated from them (`vigil explain operators`), and a test
//! compiles every example.

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

/// Every built-in operator's spec, in the registry's order (`src/operators/mod.rs`).
pub fn operators() -> impl Iterator<Item = &'static OperatorSpec> + Clone {
    crate::operators::OPERATORS.iter().map(|o| o.spec)
}

/// The operator called `name`.
pub fn operator(name: &str) -> Option<&'static OperatorSpec> {
    crate::operators::lookup(name).map(|o| o.spec)
}

/// Markdown documentation of every operator (the content of `docs/operators.md`).
pub fn operators_markdown() -> String {
    use std::fmt::Write;
    let mut s = String::from(
        "# Built-in operators\n\nGenerated from the specs in `src/operators/` by `vigil explain operators`; a test keeps this file in sync.\n\n",
    );
    s.push_str("Inputs are positional and connect a stage to other stages (DAG edges). Parameters are given by name (or by position after the inputs). `a | op(...)` passes `a` as the first input.\n");
    for kind in StageKind::ALL {
        let _ = write!(s, "\n## {kind}\n");
        for op in operators().filter(|o| o.kind == kind) {
            s.push('\n');
            s.push_str(&operator_markdown(op));
        }
    }
    s.push_str("\n## Stage options\n\nOptions go in braces after a stage's expression: `respond page = email(...) { pending for 2m  repeat every 4h }`.\n\n");
    s.push_str(&crate::check::options::options_markdown());
    s
}

/// Markdown documentation of one operator: summary, doc, inputs, parameters, output and
/// example.
pub fn operator_markdown(op: &OperatorSpec) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = write!(s, "### `{}` ({})\n\n{}\n\n{}\n\n", op.name, op.kind, op.summary, op.doc);
    let out = match op.output {
        Output::Fixed(t) => t.to_string(),
        Output::SameAsInput(i) => format!("the type of `{}`", op.inputs[i].name),
    };
    if !op.inputs.is_empty() {
        s.push_str("| input | accepts | |\n|---|---|---|\n");
        for i in op.inputs {
            let _ = writeln!(s, "| `{}` | {} | {} |", i.name, crate::types::one_of(i.types), i.doc);
        }
        s.push('\n');
    }
    s.push_str("| parameter | type | default | |\n|---|---|---|---|\n");
    for prm in op.all_params() {
        let mut doc = prm.doc.to_owned();
        if !prm.choices.is_empty() {
            doc.push_str(&format!(" One of: {}.", prm.choices.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")));
        }
        let shown =
            |m: f64| if prm.ty == Ty::Duration { crate::syntax::ast::Duration { millis: m as u64 }.to_string() } else { m.to_string() };
        match (prm.min, prm.max) {
            (Some(lo), Some(hi)) => doc.push_str(&format!(" From {} to {}.", shown(lo), shown(hi))),
            (Some(lo), None) => doc.push_str(&format!(" At least {}.", shown(lo))),
            (None, Some(hi)) => doc.push_str(&format!(" At most {}.", shown(hi))),
            (None, None) => {}
        }
        let _ = writeln!(s, "| `{}` | {} | {} | {} |", prm.name, prm.ty, default_str(&prm.default), doc.replace('|', "\\|"));
    }
    let _ = write!(s, "\nOutput: {out}.\n\n```vigil\n{}\n```\n", op.example);
    s
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
