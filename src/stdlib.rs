//! The standard library: stage templates written in vigil, embedded in the binary.
//!
//! Each module is a file under `stdlib/` at the repository root, known to pipelines as
//! `std.<file stem>`. The engine uses these embedded copies unless it is given a stdlib
//! directory (hot reload watches `stdlib/` and compiles from disk).

/// One stdlib module: its name (`std.detect`), the name shown in diagnostics
/// (`stdlib/detect.vigil`) and its text.
#[derive(Clone, Copy, Debug)]
pub struct Module {
    pub name: &'static str,
    pub file: &'static str,
    pub text: &'static str,
}

/// Every embedded module.
pub const MODULES: &[Module] = &[
    Module { name: "std.collect", file: "stdlib/collect.vigil", text: include_str!("../stdlib/collect.vigil") },
    Module { name: "std.preprocess", file: "stdlib/preprocess.vigil", text: include_str!("../stdlib/preprocess.vigil") },
    Module { name: "std.detect", file: "stdlib/detect.vigil", text: include_str!("../stdlib/detect.vigil") },
    Module { name: "std.respond", file: "stdlib/respond.vigil", text: include_str!("../stdlib/respond.vigil") },
    Module { name: "std.logs", file: "stdlib/logs.vigil", text: include_str!("../stdlib/logs.vigil") },
];

/// The module name for a stdlib file stem (`detect` → `std.detect`).
pub fn module_name(stem: &str) -> String {
    format!("std.{stem}")
}
