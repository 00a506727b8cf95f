//! Source-file tests, as Gleam and Typst write them: every fixture is a `.vigil` file and
//! its expected output is an insta snapshot next to this file.
//!
//! - `fixtures/check/fail/<code>_*.vigil` must produce the diagnostic its name starts
//!   with; the rendered diagnostics are snapshotted. Together they cover every code.
//! - `fixtures/check/ok/*.vigil` must compile with no diagnostics at all.
//! - every file of `pipelines/` and `stdlib/` compiles with no diagnostics at all.
//! - `fixtures/plan/*.vigil`: the planned DAG (keys, operators, inputs, parameters,
//!   fingerprints) is snapshotted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use vigil::diagnostic::{render_all, to_json, Code};

fn compile(path: &Path) -> vigil::Compiled {
    vigil::compile(&[path.to_path_buf()]).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fixture's path relative to the crate root, so snapshots do not depend on where
/// the repository is checked out.
fn rel(path: &Path) -> PathBuf {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(path).to_path_buf()
}

fn expected_code(path: &Path) -> Code {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let code = stem.split('_').next().unwrap_or_default();
    Code::parse(code).unwrap_or_else(|| panic!("fixture {} must be named `<code>_...`", path.display()))
}

#[test]
fn failing_fixtures_report_their_code() {
    insta::glob!("fixtures/check/fail/*.vigil", |path| {
        let path = rel(path);
        let out = compile(&path);
        let code = expected_code(&path);
        assert!(
            out.diagnostics.0.iter().any(|d| d.code == code),
            "{} should report {}, got: {:?}",
            path.display(),
            code.as_str(),
            out.diagnostics.0.iter().map(|d| d.code.as_str()).collect::<Vec<_>>()
        );
        if code.as_str().starts_with('E') {
            assert!(out.plan.is_none(), "{}: an error must prevent a plan", path.display());
        }
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        let rendered = render_all(&out.diagnostics.0, &out.sources, false);
        insta::assert_snapshot!(format!("{text}\n----- diagnostics -----\n{rendered}"));
    });
}

#[test]
fn failing_fixtures_cover_every_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/check/fail");
    let mut covered = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "vigil") {
            covered.insert(expected_code(&path));
        }
    }
    let missing: Vec<&str> = Code::ALL.iter().filter(|c| !covered.contains(c)).map(|c| c.as_str()).collect();
    assert!(missing.is_empty(), "no failing fixture for {missing:?}");
    let count = std::fs::read_dir(&dir).unwrap().count();
    assert!(count >= 40, "only {count} failing fixtures");
}

#[test]
fn ok_fixtures_compile_clean() {
    insta::glob!("fixtures/check/ok/**/*.vigil", |path| {
        let out = compile(&rel(path));
        assert!(out.diagnostics.0.is_empty(), "{}:\n{}", path.display(), render_all(&out.diagnostics.0, &out.sources, false));
        assert!(out.plan.is_some());
    });
}

fn assert_tree_clean(dir: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = vigil::compile::source_files(&[root.join(dir)]).unwrap();
    assert!(!files.is_empty(), "no files in {dir}");
    for f in &files {
        let out = compile(&rel(f));
        assert!(out.diagnostics.0.is_empty(), "{}:\n{}", f.display(), render_all(&out.diagnostics.0, &out.sources, false));
        assert!(out.plan.is_some());
    }
    files.len()
}

#[test]
fn every_pipeline_checks_clean() {
    let n = assert_tree_clean("pipelines");
    assert!(n >= 5, "pipelines/ should hold demo, nab and three examples, found {n}");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in ["demo.vigil", "nab.vigil"] {
        assert!(root.join("pipelines").join(name).exists(), "pipelines/{name} is missing");
    }
}

#[test]
fn every_stdlib_module_checks_clean() {
    assert_tree_clean("stdlib");
    // And as the stdlib of a compilation: every module is embedded and warning-free.
    let out = vigil::compile_str("empty.vigil", "");
    assert!(out.diagnostics.0.is_empty(), "{}", render_all(&out.diagnostics.0, &out.sources, false));
}

#[test]
fn the_stdlib_on_disk_is_the_embedded_stdlib() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for m in vigil::stdlib::MODULES {
        let disk = std::fs::read_to_string(root.join(m.file)).unwrap();
        assert_eq!(disk, m.text, "{} differs from the embedded copy (rebuild)", m.file);
    }
}

#[test]
fn json_diagnostics_carry_positions_and_codes() {
    let path = rel(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/check/fail/e0202_unknown_stage_ref.vigil"));
    let out = compile(&path);
    let json = to_json(&out.diagnostics.0, &out.sources);
    insta::assert_json_snapshot!(json);
}

#[test]
fn plans() {
    insta::glob!("fixtures/plan/*.vigil", |path| {
        let out = compile(&rel(path));
        let plan = out.plan.unwrap_or_else(|| panic!("{}:\n{}", path.display(), render_all(&out.diagnostics.0, &out.sources, false)));
        let mut s = String::new();
        for p in &plan.pipelines {
            s.push_str(&format!("pipeline {} triggers={:?}\n", p.name, p.triggers));
            for st in &p.stages {
                let inputs: Vec<String> = st.inputs.iter().map(|(slot, i)| format!("{slot}={}", p.stages[*i].key)).collect();
                s.push_str(&format!(
                    "  {} [{}] {} -> {} fp={} named={}\n",
                    st.key, st.kind, st.operator, st.output, st.fingerprint, st.named
                ));
                if !inputs.is_empty() {
                    s.push_str(&format!("    inputs: {}\n", inputs.join(", ")));
                }
                for (k, v) in &st.params {
                    s.push_str(&format!("    {k} = {}\n", v.to_source()));
                }
                for o in &st.options {
                    s.push_str(&format!("    option {o:?}\n"));
                }
            }
        }
        insta::assert_snapshot!(s);
    });
}
