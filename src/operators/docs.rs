//! The operators' documentation, generated from their specs: `docs/operators.md` and
//! `vigil explain OPERATOR`.

use super::{lookup, OPERATORS};
use crate::stages::OperatorSpec;
use crate::syntax::ast::StageKind;

/// Every built-in operator's spec, in the registry's order (`src/operators/mod.rs`).
pub fn specs() -> impl Iterator<Item = &'static OperatorSpec> + Clone {
    OPERATORS.iter().map(|o| o.spec)
}

/// The operator called `name`.
pub fn spec(name: &str) -> Option<&'static OperatorSpec> {
    lookup(name).map(|o| o.spec)
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
        for op in specs().filter(|o| o.kind == kind) {
            s.push('\n');
            s.push_str(&operator_markdown(op));
        }
    }
    s.push_str("\n## Stage options\n\nOptions go in braces after a stage's expression: `respond page = email(...) { pending for 2m  repeat every 4h }`.\n\n");
    s.push_str(&crate::dag::options::options_markdown());
    s
}

/// Markdown documentation of one operator: summary, doc, inputs, parameters, output and
/// example.
pub fn operator_markdown(op: &OperatorSpec) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = write!(s, "### `{}` ({})\n\n{}\n\n{}\n\n", op.name, op.kind, op.summary, op.doc);
    let out = match op.output {
        crate::stages::Output::Fixed(t) => t.to_string(),
        crate::stages::Output::SameAsInput(i) => format!("the type of `{}`", op.inputs[i].name),
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
        let shown = |m: f64| {
            if prm.ty == crate::types::Ty::Duration {
                crate::syntax::ast::Duration { millis: m as u64 }.to_string()
            } else {
                m.to_string()
            }
        };
        match (prm.min, prm.max) {
            (Some(lo), Some(hi)) => doc.push_str(&format!(" From {} to {}.", shown(lo), shown(hi))),
            (Some(lo), None) => doc.push_str(&format!(" At least {}.", shown(lo))),
            (None, Some(hi)) => doc.push_str(&format!(" At most {}.", shown(hi))),
            (None, None) => {}
        }
        let _ = writeln!(s, "| `{}` | {} | {} | {} |", prm.name, prm.ty, crate::stages::default_str(&prm.default), doc.replace('|', "\\|"));
    }
    let _ = write!(s, "\nOutput: {out}.\n\n```vigil\n{}\n```\n", op.example);
    s
}
