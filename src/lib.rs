//! vigil: a declarative engine for automated incident pipelines.
//!
//! Pipelines are written in the vigil language and compiled in phases, each consuming the
//! previous phase's type:
//!
//! ```text
//! bytes ──decode──▶ text ──syntax::parse──▶ ast::File ──check::check──▶ Checked ──plan::plan──▶ Plan
//!                                     (E01xx)            (E02xx–E04xx, W00xx)        (E05xx)
//! ```
//!
//! [`compile`] runs every phase over a set of files and the embedded stdlib:
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
//! assert_eq!(plan.pipelines[0].stages.len(), 3);
//! ```

pub mod check;
pub mod compile;
pub mod diagnostic;
pub mod plan;
pub mod source;
pub mod stages;
pub mod stdlib;
pub mod syntax;

pub use compile::{compile, compile_str, Compiled};
