//! Documentation that is generated from code stays in sync, and every operator's doc
//! example compiles. Run with `VIGIL_BLESS=1` to rewrite the generated files.

use std::path::Path;

fn check_generated(rel: &str, content: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    if std::env::var_os("VIGIL_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(on_disk == content, "{rel} is out of date: run `VIGIL_BLESS=1 cargo test --test docs`");
}

#[test]
fn diagnostics_doc_is_in_sync() {
    check_generated("docs/diagnostics.md", &vigil::diagnostic::codes_markdown());
}

#[test]
fn operators_doc_is_in_sync() {
    check_generated("docs/operators.md", &vigil::stages::operators_markdown());
}

#[test]
fn every_operator_example_compiles() {
    for op in vigil::stages::operators() {
        let src = format!(
            "pipeline ex {{\n  every 1m\n  on webhook \"/hooks/ex\"\n  collect raw = synthetic()\n  collect events = webhook_events()\n  \
             preprocess feats = window(raw)\n  train model = autoencoder(feats)\n  predict scores = model.score(feats)\n  {}\n}}\n",
            op.example
        );
        let out = vigil::compile_str(&format!("{}.vigil", op.name), &src);
        let errors: Vec<_> = out.diagnostics.0.iter().filter(|d| d.is_error()).collect();
        assert!(errors.is_empty(), "the example of `{}` does not compile: {errors:#?}", op.name);
        let plan = out.plan.unwrap();
        assert!(plan.pipelines[0].stages.iter().any(|s| s.operator == op.name), "`{}`'s example does not use it", op.name);
    }
}

#[test]
fn every_code_has_a_complete_entry() {
    for c in vigil::diagnostic::Code::ALL {
        let i = c.info();
        assert!(!i.title.is_empty() && !i.explanation.is_empty() && !i.example.is_empty() && !i.fix.is_empty(), "{}", i.code);
    }
}

/// Every ```vigil block of the README and the guides that hold whole pipelines compiles (the stdlib
/// embedded). operators.md's examples are checked above; diagnostics.md's are wrong on
/// purpose; testing.md's is a test file, run by `vigil test` through the pipelines'.
#[test]
fn every_vigil_block_in_the_docs_compiles() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for path in [root.join("README.md"), root.join("docs/logs.md"), root.join("docs/correlation.md"), root.join("docs/mlops.md")] {
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, block) in text.split("```vigil\n").skip(1).enumerate() {
            let src = block.split("\n```").next().unwrap();
            let name = format!("{}#{}.vigil", path.display(), i + 1);
            let out = vigil::compile_str(&name, src);
            assert!(!out.diagnostics.has_errors(), "{name} does not compile:\n{src}\n{:?}", out.diagnostics);
            checked += 1;
        }
    }
    assert!(checked >= 2);
}
