//! vigil: a declarative engine for automated incident pipelines.
//!
//! Pipelines are written in the vigil language and compiled in phases, each consuming the
//! previous phase's type:
//!
//! ```text
//! bytes ─decode─▶ text ─syntax::parse─▶ ast::File ─check::check─▶ Checked ─plan::plan─▶ Plan
//!        (E0100)          (E0101–E0111)          (E02xx–E05xx, W00xx)       (E0307, E0503)
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
//! 1. text time source stats persist
//! 2. diagnostic
//! 3. syntax
//! 4. types
//! 5. value
//! 6. expr
//! 7. feedback correlate logs
//! 8. respond
//! 9. learn
//! 10. data
//! 11. prom
//! 12. runtime
//! 13. stages
//! 14. operators
//! 15. check
//! 16. plan
//! 17. stdlib compile eval
//! 18. store
//! 19. testing
//! 20. server
//! ```
//!
//! - 1–3: utilities, diagnostics and the language's syntax; 4–6: types, constant values
//!   and the language's one expression evaluator (constant folding, conditions per item,
//!   `vigil test`'s expectations all go through it).
//! - 7–9: the domains: on-call's verdicts, correlation, log templates,
//!   incidents and channels, models. Each declares the store seam it needs
//!   ([`respond::store`], [`learn::registry::ModelStore`], [`runtime::state`]).
//! - 10–12: what flows between stages, wire formats, and the operators' implementations
//!   with the engine.
//! - 13–17: the front end: what an operator spec is, the operators (one file each: spec,
//!   typed parameters, validation, build), the checker, the planner, compiling files (with
//!   `test` blocks, checked against the plan);
//!   `eval` replays a pipeline over labelled data and scores it.
//! - 18–20: the SQLite store (it implements every domain's seam and imports them, never
//!   the reverse), `vigil test`, the HTTP API and console.
//!
//! Imports that still go up, to remove (the test refuses any other, and fails when one of
//! these is gone so that it is struck off):
//!
//! ```text
//! stages -> check: the operators' docs embed the stage options' table
//! runtime -> operators: `runtime::ops::build` is a wrapper over the registry's build
//! stages -> operators: the spec lookups are wrappers over the registry
//! operators -> check: validation reuses the checker's template checks
//! operators -> plan: an operator's build takes the planned node
//! runtime -> check: stage options and triggers are checker types the plan should own
//! runtime -> plan: the engine runs plans; it belongs above the front end
//! runtime -> compile: hot reload compiles; it belongs above the front end
//! runtime -> server: the engine's shared state holds the API's access rules and limiter
//! ```

pub mod check;
pub mod compile;
pub mod correlate;
pub mod data;
pub mod diagnostic;
pub mod eval;
pub mod expr;
pub mod feedback;
pub mod learn;
pub mod logs;
pub mod operators;
pub mod persist;
pub mod plan;
pub mod prom;
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
