//! vigil: a declarative engine for automated incident pipelines.
//!
//! Pipelines are written in the vigil language and compiled in phases, each consuming the
//! previous phase's type:
//!
//! ```text
//! bytes ─decode─▶ text ─syntax::parse─▶ ast::File ─check::check─▶ Checked ─plan::plan─▶ Plan
//!        (E0100)          (E0101–E0111)          (E02xx–E05xx, W00xx)       (E0307, E0503, W0006)
//! ```
//!
//! [`compile()`] runs every phase over files and directories with the embedded stdlib;
//! [`compile_str`] over one in-memory file:
//!
//! ```
//! let src = r#"
//! pipeline demo {
//!   every 1s
//!   collect raw = synthetic(seed: 7)
//!   predict scores = zscore(raw, window: 5m)
//!   respond alert = log(scores, when: scores.anomalous)
//! }
//! "#;
//! let out = vigil::compile_str("demo.vigil", src);
//! assert!(!out.diagnostics.has_errors(), "{:?}", out.diagnostics);
//! let plan = out.plan.unwrap();
//! let demo = plan.pipeline("demo").unwrap();
//! assert_eq!(demo.stages.len(), 3);
//! assert_eq!(demo.stages[1].key.0, "demo.scores");
//! ```
//!
//! # Layers
//!
//! Layers, lowest first: a module may use the modules of its own line and the lines above
//! it, never one below (`tests/layering.rs` checks every `crate::` path outside comments
//! and unit tests):
//!
//! ```text
//! 1. text time source stats persist access
//! 2. diagnostic
//! 3. syntax
//! 4. types
//! 5. value
//! 6. expr
//! 7. dag
//! 8. feedback correlate logs
//! 9. respond
//! 10. learn
//! 11. data
//! 12. prom
//! 13. runtime
//! 14. stages
//! 15. operators
//! 16. check
//! 17. plan
//! 18. stdlib compile replay eval
//! 19. cluster
//! 20. store
//! 21. testing
//! 22. engine
//! 23. server
//! ```
//!
//! - 1–3: utilities (`access`: the API's tokens and rate limits), diagnostics and the
//!   language's syntax; 4–7: types, constant values, the language's one expression evaluator
//!   (constant folding, conditions per item and `vigil test`'s expectations all go through
//!   it), and the plan's data ([`dag`]: what the planner makes and the engine runs).
//! - 8–10: the domains: on-call's verdicts, correlation, log templates,
//!   incidents and channels, models. Each declares the store seam it needs
//!   ([`respond::store`], [`learn::registry::ModelStore`], [`runtime::state`]).
//! - 11–13: what flows between stages, wire formats, and the operators' implementations
//!   with the one DAG executor ([`runtime::exec`]).
//! - 14–18: the front end: what an operator spec is, the operators (one file each: spec,
//!   typed parameters, validation, build), the checker, the planner, compiling files (with
//!   `test` blocks, checked against the plan);
//!   `replay` runs a pipeline over a file, `eval` over labelled data and scores it.
//! - 19: several nodes: which node runs which pipeline, by lease in NATS JetStream; it
//!   declares what it needs from the store ([`cluster::LeaseStore`]) and the engine
//!   ([`cluster::Owner`]). Training as jobs ([`cluster::train`]) implements the learn
//!   layer's seams ([`learn::artifacts::ArtifactStore`], [`learn::jobs::Trainer`]).
//! - 20–23: the stores, SQLite and PostgreSQL (each implements every domain's seam and
//!   imports them, never the reverse), `vigil test`, the engine (ticks, triggers, hot
//!   reload) and the HTTP API and console.
//!
//! No import goes up: the test refuses any.

pub mod access;
pub mod check;
pub mod cluster;
pub mod compile;
pub mod correlate;
pub mod dag;
pub mod data;
pub mod diagnostic;
pub mod engine;
pub mod eval;
pub mod expr;
pub mod feedback;
pub mod learn;
pub mod logs;
pub mod operators;
pub mod persist;
pub mod plan;
pub mod prom;
pub mod replay;
pub mod respond;
pub mod runtime;
pub mod server;
pub mod source;
pub mod stages;
pub mod stats;
pub mod stdlib;
pub mod store;
pub mod syntax;
pub mod testing;
pub mod text;
pub mod time;
pub mod types;
pub mod value;

pub use compile::{compile, compile_str, Compiled};

/// Formats one file's source canonically. Returns the formatted text, or the syntax
/// diagnostics (with the source map to render them) when the file does not parse.
///
/// # Errors
/// The file's syntax errors.
#[allow(clippy::result_large_err)]
pub fn format_source(name: &str, text: &str) -> Result<String, (source::SourceMap, Vec<diagnostic::Diagnostic>)> {
    let mut sources = source::SourceMap::new();
    let id = sources.add(name, None, source::Origin::User, text);
    let parsed = syntax::parse(id, text);
    if parsed.has_errors() {
        return Err((sources, parsed.diagnostics));
    }
    Ok(syntax::format(&parsed.file, &parsed.comments, text))
}
