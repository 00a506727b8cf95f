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

pub mod check;
pub mod compile;
pub mod correlate;
pub mod data;
pub mod diagnostic;
pub mod eval;
pub mod learn;
pub mod logs;
pub mod operators;
pub mod plan;
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
pub mod time;
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
