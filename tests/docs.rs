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
    check_generated("docs/operators.md", &vigil::operators::operators_markdown());
}

#[test]
fn every_operator_example_compiles() {
    for op in vigil::operators::specs() {
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

/// The markdown files whose ```vigil blocks are checked: README.md and every file under
/// docs/, generated ones included.
fn markdown_files() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The ```vigil blocks of a markdown text: (line of the fence, the `##` heading above it,
/// the code).
fn vigil_blocks(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut heading = String::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        if let Some(h) = line.strip_prefix("## ") {
            heading = h.trim().to_owned();
        }
        let Some(info) = line.trim_start().strip_prefix("```") else { continue };
        let mut code = String::new();
        for (_, l) in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            code.push_str(l);
            code.push('\n');
        }
        if info.split(|c: char| c.is_whitespace() || c == ',').next() == Some("vigil") {
            out.push((n + 1, heading.clone(), code));
        }
    }
    out
}

/// Whether a block is a whole file (items at the top level) rather than a fragment of a
/// pipeline (stages, options).
fn is_whole_file(code: &str) -> bool {
    code.lines().map(str::trim_start).any(|l| {
        ["use ", "pipeline ", "stage ", "test ", "//!"].iter().any(|k| l.starts_with(k)) || l.starts_with("///") && !l.starts_with("////")
    })
}

/// The stages a fragment may refer to without defining them, as in the operators' examples.
const PRELUDE: &[(&str, &str)] = &[
    ("raw", "collect raw = synthetic()"),
    ("events", "collect events = webhook_events()"),
    ("feats", "preprocess feats = window(raw)"),
    ("model", "train model = autoencoder(feats)"),
    ("scores", "predict scores = model.score(feats)"),
];

/// A fragment of pipeline statements inside a pipeline, with the prelude's stages it does
/// not define itself.
fn wrap_fragment(code: &str) -> String {
    let defined: std::collections::HashSet<&str> = code
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let kind = w.next()?;
            ["collect", "preprocess", "train", "predict", "respond"].contains(&kind).then(|| w.next()).flatten()
        })
        .collect();
    let mut src = String::from("pipeline example {\n  every 1m\n  on webhook \"/hooks/example\"\n");
    for (name, stage) in PRELUDE {
        if !defined.contains(name) {
            src.push_str(&format!("  {stage}\n"));
        }
    }
    src.push_str(code);
    src.push_str("}\n");
    src
}

/// A test block (`test NAME for PIPELINE { ... }`) compiled with the file of pipelines/
/// that defines PIPELINE, in a scratch directory that also holds pipelines/fixtures.
fn compile_test_block(name: &str, code: &str) -> vigil::Compiled {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pipeline = code
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("test ").and_then(|r| r.split(" for ").nth(1)))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{name}: a test block names its pipeline"));
    let Some(file) = std::fs::read_dir(root.join("pipelines")).unwrap().map(|e| e.unwrap().path()).find(|p| {
        p.extension().is_some_and(|e| e == "vigil") && std::fs::read_to_string(p).unwrap().contains(&format!("pipeline {pipeline} {{"))
    }) else {
        // No such pipeline: compiled alone, the test reports E0701.
        return vigil::compile_str(name, code);
    };
    let dir = std::env::temp_dir().join(format!("vigil-docs-{}-{}", std::process::id(), pipeline));
    let fixtures = dir.join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    for e in std::fs::read_dir(root.join("pipelines/fixtures")).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, fixtures.join(p.file_name().unwrap())).unwrap();
        }
    }
    let stem = file.file_stem().unwrap().to_str().unwrap();
    std::fs::copy(&file, dir.join(file.file_name().unwrap())).unwrap();
    std::fs::write(dir.join(format!("{stem}.test.vigil")), code).unwrap();
    let out = vigil::compile(&[dir.join(file.file_name().unwrap()), dir.join(format!("{stem}.test.vigil"))]).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// Codes whose example in docs/diagnostics.md is a sketch (`...`, a fragment that needs
/// context, a second file) and reports another diagnostic when compiled alone. Every
/// other code's example must report that code.
const LOOSE_EXAMPLES: &[&str] = &[
    "E0100", "E0101", "E0103", "E0104", "E0108", "E0111", "E0201", "E0208", "E0209", "E0308", "E0309", "E0312", "E0318", "E0401", "E0403",
    "E0405", "E0408", "E0503", "E0702", "E0703", "E0704", "W0003",
];

/// Every ```vigil block of README.md and of every file under docs/ compiles (the stdlib
/// embedded), without a deprecated spelling (W0005):
/// - a whole file (with `use`, `pipeline`, `stage`, doc comments) as it is;
/// - a `test ... for PIPELINE` block together with the pipeline's file of pipelines/;
/// - a fragment of stages and options inside a pipeline that also has the stages of
///   [`PRELUDE`] it does not define (`raw`, `events`, `feats`, `model`, `scores`), as the
///   operators' examples are checked.
///
/// docs/diagnostics.md shows what each code rejects: its examples must fail, each with its
/// own code (but for [`LOOSE_EXAMPLES`]) or at least some diagnostic.
#[test]
fn every_vigil_block_in_the_docs_compiles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    let mut failures = Vec::new();
    for path in markdown_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let counter_examples = rel == "docs/diagnostics.md";
        for (line, heading, code) in vigil_blocks(&text) {
            let name = format!("{rel}:{line}.vigil");
            checked += 1;
            let is_test = code.lines().any(|l| l.trim_start().starts_with("test ") && l.contains(" for "));
            let (src, out) = if is_test {
                (code.clone(), compile_test_block(&name, &code))
            } else if is_whole_file(&code) {
                (code.clone(), vigil::compile_str(&name, &code))
            } else {
                let src = wrap_fragment(&code);
                let out = vigil::compile_str(&name, &src);
                (src, out)
            };
            let rendered = vigil::diagnostic::render_all(&out.diagnostics.0, &out.sources, false);
            if counter_examples {
                let codes: Vec<&str> = out.diagnostics.0.iter().map(|d| d.code.as_str()).collect();
                if codes.is_empty() {
                    failures.push(format!("{name} ({heading}) is an example of a diagnostic but reports none:\n{src}"));
                } else if !codes.contains(&heading.as_str()) && !LOOSE_EXAMPLES.contains(&heading.as_str()) {
                    failures.push(format!("{name}: the example of {heading} reports {codes:?} instead:\n{src}"));
                }
                continue;
            }
            let deprecated = out.diagnostics.0.iter().any(|d| d.code == vigil::diagnostic::Code::W0005);
            if out.diagnostics.has_errors() || deprecated {
                failures.push(format!("{name} does not compile cleanly:\n{src}\n{rendered}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} blocks fail:\n\n{}", failures.len(), failures.join("\n\n"));
    assert!(checked >= 100, "only {checked} ```vigil blocks found");
}

/// The block extraction sees the README's examples, fragments included, and a block that
/// uses an old spelling or does not compile is caught.
#[test]
fn the_docs_check_finds_blocks_and_failures() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let blocks = vigil_blocks(&readme);
    assert!(blocks.len() >= 4, "{blocks:?}");
    let respond = blocks.iter().find(|(_, _, code)| code.contains("escalate after 30m to manager")).expect("the respond example");
    assert!(!is_whole_file(&respond.2));
    let out = vigil::compile_str("fragment.vigil", &wrap_fragment(&respond.2));
    assert!(out.diagnostics.0.iter().all(|d| !d.is_error()), "{:?}", out.diagnostics);
    let old = wrap_fragment("respond r = log(scores) { pending_for 2m }\n");
    assert!(vigil::compile_str("old.vigil", &old).diagnostics.0.iter().any(|d| d.code == vigil::diagnostic::Code::W0005));
    let hash = wrap_fragment("# a comment\nrespond r = log(scores)\n");
    assert!(vigil::compile_str("hash.vigil", &hash).diagnostics.0.iter().any(|d| d.code == vigil::diagnostic::Code::E0112));
}
