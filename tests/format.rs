//! The canonical printer: snapshots of `vigil fmt` on messy inputs, idempotence, and the
//! round trip parse → print → parse = identity on every source file in the repository.

use std::path::Path;

use vigil::source::{Origin, SourceMap};
use vigil::syntax;

fn parse(text: &str) -> syntax::Parsed {
    let mut sources = SourceMap::new();
    let id = sources.add("t.vigil", None, Origin::User, text);
    syntax::parse(id, text)
}

fn format(text: &str) -> String {
    vigil::format_source("t.vigil", text).unwrap_or_else(|(_, d)| panic!("does not parse: {d:?}"))
}

/// parse(print(parse(x))) == parse(x), and formatting is idempotent.
fn assert_round_trip(name: &str, text: &str) {
    let first = parse(text);
    assert!(!first.has_errors(), "{name}: {:?}", first.diagnostics);
    let printed = format(text);
    let second = parse(&printed);
    assert!(!second.has_errors(), "{name}: the formatted text does not parse: {:?}\n{printed}", second.diagnostics);
    assert_eq!(first.file, second.file, "{name}: the AST changed when formatted:\n{printed}");
    assert_eq!(format(&printed), printed, "{name}: formatting is not idempotent");
    // The bare AST printer agrees too (no comments to keep).
    let bare = first.file.to_string();
    assert_eq!(parse(&bare).file, first.file, "{name}: Display for File does not round-trip:\n{bare}");
}

#[test]
fn fmt_snapshots() {
    insta::glob!("fixtures/fmt/*.vigil", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let formatted = format(&text);
        assert_round_trip(&path.display().to_string(), &text);
        // Comments survive formatting.
        let comments = |t: &str| t.lines().filter_map(|l| l.find("//").map(|i| l[i..].trim_end().to_owned())).collect::<Vec<_>>();
        let mut before = comments(&text);
        let mut after = comments(&formatted);
        before.sort();
        after.sort();
        assert_eq!(before, after, "{}: comments were lost or changed", path.display());
        insta::assert_snapshot!(formatted);
    });
}

#[test]
fn round_trip_every_source_in_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dirs = ["pipelines", "stdlib", "tests/fixtures/check/ok", "tests/fixtures/fmt", "tests/fixtures/plan"];
    let files = vigil::compile::source_files(&dirs.iter().map(|d| root.join(d)).collect::<Vec<_>>()).unwrap();
    assert!(files.len() > 20);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert_round_trip(&f.display().to_string(), &text);
    }
}

#[test]
fn pipelines_and_stdlib_are_formatted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = vigil::compile::source_files(&[root.join("pipelines"), root.join("stdlib")]).unwrap();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert_eq!(format(&text), text, "{} is not formatted: run `vigil fmt {}`", f.display(), f.display());
    }
}

#[test]
fn durations_print_canonically() {
    let out = format("pipeline p {\n  every 90m\n  collect a = csv(path: \"x\", labels: {}) { timeout 1500ms }\n}\n");
    assert!(out.contains("every 1h30m"), "{out}");
    assert!(out.contains("timeout 1s500ms"), "{out}");
}

#[test]
fn precedence_parentheses_are_kept_where_needed() {
    let src = "pipeline p {\n  collect a = synthetic(baseline: (1 + 2) * 3, noise: 1 + 2 * 3, amplitude: -(4 - 5))\n}\n";
    let out = format(src);
    assert!(out.contains("baseline: (1 + 2) * 3"), "{out}");
    assert!(out.contains("noise: 1 + 2 * 3"), "{out}");
    assert!(out.contains("amplitude: -(4 - 5)"), "{out}");
    assert_round_trip("precedence", src);
}

/// `vigil fmt` rewrites the old spellings that W0005 warns about into the current ones.
#[test]
fn fmt_rewrites_deprecated_spellings() {
    let old = "pipeline p {\n  every 30s\n  collect raw = synthetic()\n  predict s = zscore(raw)\n  \
               respond a = log(s) {\n    pending_for 2m\n    keep_firing_for 1h30m\n    escalate after 30m to \"b\"\n  }\n  \
               respond b = log(s, when: s.score > 0.99) { escalate after 1h to \"not a name\" }\n}\n";
    let new = format(old);
    assert!(new.contains("    pending for 2m\n"), "{new}");
    assert!(new.contains("    keep_firing for 1h30m\n"), "{new}");
    assert!(new.contains("    escalate after 30m to b\n"), "{new}");
    assert!(new.contains("escalate after 1h to \"not a name\""), "a string that cannot be a name stays: {new}");
    assert_eq!(format(&new), new, "idempotent");
    let out = vigil::compile_str("p.vigil", &new);
    let deprecated: Vec<_> = out.diagnostics.0.iter().filter(|d| d.code == vigil::diagnostic::Code::W0005).collect();
    assert_eq!(deprecated.len(), 1, "only the target that cannot be a name is left: {deprecated:?}");
}
