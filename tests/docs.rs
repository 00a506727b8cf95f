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
    for op in vigil::stages::OPERATORS {
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
