//! Any input gives diagnostics with positions, or success: never a panic, a stack
//! overflow or a hang (issue: the vigil language, "Bad input").
//!
//! The pathological inputs run on a thread with a small (1 MiB) stack, so that unbounded
//! recursion anywhere in the compiler would overflow here long before it could on the
//! main thread's 8 MiB.

use proptest::prelude::*;
use vigil::diagnostic::{render_all, Code};

/// Compiles `text` on a 1 MiB stack and renders the diagnostics; returns the codes.
fn compile_small_stack(text: Vec<u8>) -> Vec<Code> {
    std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            let out = vigil::compile::compile_roots(
                vec![vigil::compile::Root { name: "input.vigil".into(), path: None, bytes: text }],
                vigil::stdlib::MODULES
                    .iter()
                    .map(|m| vigil::compile::StdModule { name: m.name.into(), file: m.file.into(), path: None, text: m.text.into() })
                    .collect(),
            );
            // Every diagnostic renders, and has a position inside its file.
            for d in &out.diagnostics.0 {
                let file = out.sources.get(d.span().source);
                assert!(d.span().end as usize <= file.text.len(), "{d:?} points past the end of the file");
            }
            let rendered = render_all(&out.diagnostics.0, &out.sources, false);
            assert!(out.diagnostics.0.is_empty() || rendered.contains("input.vigil:"), "{rendered}");
            out.diagnostics.0.iter().map(|d| d.code).collect::<Vec<_>>()
        })
        .unwrap()
        .join()
        .expect("the compiler panicked or overflowed its stack")
}

fn nested(open: &str, close: &str, depth: usize) -> Vec<u8> {
    format!("pipeline p {{\n  collect a = synthetic(seed: {}1{})\n}}\n", open.repeat(depth), close.repeat(depth)).into_bytes()
}

#[test]
fn deep_parentheses_are_refused_with_a_position() {
    let codes = compile_small_stack(nested("(", ")", 100_000));
    assert_eq!(codes, [Code::E0103]);
}

#[test]
fn deep_brackets_and_braces_are_refused() {
    assert_eq!(compile_small_stack(nested("[", "]", 100_000)), [Code::E0103]);
    assert_eq!(compile_small_stack(nested("{ a: ", "}", 100_000)), [Code::E0103]);
    // Unclosed: only the opening half.
    assert_eq!(compile_small_stack("(".repeat(100_000).into_bytes()), [Code::E0103]);
}

#[test]
fn nesting_at_the_limit_is_accepted() {
    // 64 levels of brackets in total: the pipeline's `{`, the call's `(`, and 62 more.
    let codes = compile_small_stack(nested("(", ")", 62));
    assert!(codes.iter().all(|c| c.as_str().starts_with('W')), "{codes:?}");
}

#[test]
fn long_operator_chains_are_bounded() {
    let sum = format!("pipeline p {{\n  collect a = synthetic(seed: {})\n}}\n", vec!["1"; 100_000].join(" + "));
    assert_eq!(compile_small_stack(sum.into_bytes()), [Code::E0104]);
    let neg = format!("pipeline p {{\n  collect a = synthetic(seed: {}1)\n}}\n", "- ".repeat(100_000));
    assert_eq!(compile_small_stack(neg.into_bytes()), [Code::E0104]);
    let not = format!("pipeline p {{\n  collect a = synthetic(seed: {}true)\n}}\n", "not ".repeat(100_000));
    assert_eq!(compile_small_stack(not.into_bytes()), [Code::E0104]);
    let fields = format!("pipeline p {{\n  collect a = synthetic(seed: x{})\n}}\n", ".f".repeat(100_000));
    assert_eq!(compile_small_stack(fields.into_bytes()), [Code::E0104]);
    let pipes = format!("pipeline p {{\n  collect a = synthetic(){}\n}}\n", " | fill()".repeat(100_000));
    assert_eq!(compile_small_stack(pipes.into_bytes()), [Code::E0104]);
}

#[test]
fn nul_bytes_and_invalid_utf8() {
    assert_eq!(compile_small_stack(b"pipeline p {\n  every 1s\0\n}\n".to_vec()), [Code::E0101]);
    assert_eq!(compile_small_stack(b"pipeline p {\xff\xfe}".to_vec()), [Code::E0100]);
    assert_eq!(compile_small_stack(vec![0u8; 10_000]), [Code::E0101]);
}

#[test]
fn truncated_files_report_errors() {
    let full = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/demo.vigil")).unwrap();
    // Every prefix of the demo (at char boundaries, every 7th) compiles or reports errors.
    let mut cut = 0;
    while cut < full.len() {
        if full.is_char_boundary(cut) {
            compile_small_stack(full.as_bytes()[..cut].to_vec());
        }
        cut += 7;
    }
}

#[test]
fn a_two_megabyte_line() {
    let line = format!("pipeline p {{ collect a = csv(path: \"{}\") }}", "x".repeat(2 << 20));
    let codes = compile_small_stack(line.into_bytes());
    assert!(codes.iter().all(|c| *c == Code::W0001 || *c == Code::W0003), "{codes:?}");
    let garbage = "x = = ".repeat(350_000);
    assert!(!compile_small_stack(garbage.into_bytes()).is_empty());
}

#[test]
fn a_fifty_megabyte_file() {
    // 50 MB of valid pipelines.
    let one = "pipeline p_N {\n  every 30s\n  collect raw = csv(path: \"a.csv\")\n  predict s = zscore(raw, window: 10m)\n  respond r = log(s)\n}\n";
    let mut text = String::with_capacity(50 << 20);
    let mut i = 0;
    while text.len() < 50 << 20 {
        text.push_str(&one.replace('N', &i.to_string()));
        i += 1;
    }
    assert!(compile_small_stack(text.clone().into_bytes()).is_empty());
    // The same with a syntax error in the middle: reported, with the rest still parsed.
    let mid = text.len() / 2;
    let at = text[mid..].find("every").unwrap() + mid;
    text.replace_range(at..at + 5, "evry ");
    assert_eq!(compile_small_stack(text.into_bytes()), [Code::E0101]);
}

/// Pieces of the language, so that random inputs get deep into the grammar.
fn token() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "pipeline",
        "stage",
        "use",
        "std.detect",
        "collect",
        "preprocess",
        "train",
        "predict",
        "respond",
        "every",
        "cron",
        "on",
        "webhook",
        "secret",
        "as",
        "and",
        "or",
        "not",
        "true",
        "p",
        "x",
        "raw",
        "csv",
        "zscore",
        "log",
        "fill",
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        "=",
        ":",
        ",",
        ".",
        "|",
        "+",
        "-",
        "*",
        "/",
        "->",
        "==",
        "<",
        "30s",
        "1h30m",
        "5sec",
        "42",
        "1e999",
        "99999999999999999999",
        "0.5",
        "\"s\"",
        "\"{{ x }}\"",
        "\"{{\"",
        "\"\\q\"",
        "\"",
        "//",
        "///",
        "//!",
        "\n",
        " ",
        "\t",
        "\0",
        "é",
        "Series",
        "Scores",
        "List[Int]",
        ";",
        "when:",
        "retry 3 backoff 1s",
        "{ timeout 5s }",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        compile_small_stack(bytes);
    }

    #[test]
    fn random_token_soup_never_panics(tokens in prop::collection::vec(token(), 0..300)) {
        compile_small_stack(tokens.join(" ").into_bytes());
    }

    #[test]
    fn mutated_pipelines_never_panic(cuts in prop::collection::vec((any::<prop::sample::Index>(), token()), 1..8)) {
        let mut text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/demo.vigil")).unwrap();
        for (at, tok) in cuts {
            let mut i = at.index(text.len() + 1);
            while !text.is_char_boundary(i) { i -= 1; }
            text.insert_str(i, tok);
        }
        compile_small_stack(text.into_bytes());
    }
}
