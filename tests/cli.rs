//! The command-line contract: exit statuses (0 clean, 1 errors in the sources, 2 usage
//! or I/O), output formats, and `fmt --check`.

use std::process::Command;

fn vigil(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vigil")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).env("NO_COLOR", "1").output().unwrap()
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn check_exit_statuses() {
    let ok = vigil(&["check", "pipelines"]);
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(stderr.contains("pipelines"), "{stderr}");

    let bad = vigil(&["check", "tests/fixtures/check/fail/e0202_unknown_stage_ref.vigil"]);
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("E0202") && stderr.contains("e0202_unknown_stage_ref.vigil:"), "{stderr}");

    let missing = vigil(&["check", "no/such/file.vigil"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no/such/file.vigil"));

    let usage = vigil(&["check", "--format", "yaml"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn warnings_pass_unless_denied() {
    let w = "tests/fixtures/check/fail/w0001_unused_stage.vigil";
    assert_eq!(vigil(&["check", w]).status.code(), Some(0));
    assert_eq!(vigil(&["check", "--deny-warnings", w]).status.code(), Some(1));
}

#[test]
fn check_json_is_an_array_of_diagnostics() {
    let out = vigil(&["check", "--format", "json", "tests/fixtures/check/fail/e0202_unknown_stage_ref.vigil"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = &v.as_array().unwrap()[0];
    assert_eq!(first["code"], "E0202");
    assert!(first["line"].as_u64().unwrap() > 0 && first["column"].as_u64().unwrap() > 0);
    let ok = vigil(&["check", "--format", "json", "pipelines/demo.vigil"]);
    assert_eq!(ok.status.code(), Some(0));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&ok.stdout).unwrap(), serde_json::json!([]));
}

#[test]
fn fmt_check_and_rewrite() {
    let dir = tmpdir("fmt");
    let f = dir.join("messy.vigil");
    std::fs::write(&f, "pipeline   p {every 30s\ncollect a=csv(path:\"a.csv\")  // keep me\n    respond r = log(a)}\n").unwrap();
    let fp = f.to_str().unwrap();
    let check = vigil(&["fmt", "--check", fp]);
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stdout).contains("messy.vigil"));
    assert_eq!(vigil(&["fmt", fp]).status.code(), Some(0));
    let formatted = std::fs::read_to_string(&f).unwrap();
    assert!(formatted.contains("  collect a = csv(path: \"a.csv\")  // keep me\n"), "{formatted}");
    assert_eq!(vigil(&["fmt", "--check", fp]).status.code(), Some(0));
    // A file that does not parse is reported and left alone.
    let broken = dir.join("broken.vigil");
    std::fs::write(&broken, "pipeline p { collect a = csv(\n").unwrap();
    let out = vigil(&["fmt", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&broken).unwrap(), "pipeline p { collect a = csv(\n");
    assert_eq!(vigil(&["fmt", "--check", "pipelines", "stdlib"]).status.code(), Some(0));
}

#[test]
fn graph_formats() {
    let dot = vigil(&["graph", "pipelines/demo.vigil", "--format", "dot"]);
    assert_eq!(dot.status.code(), Some(0), "{}", String::from_utf8_lossy(&dot.stderr));
    let text = String::from_utf8_lossy(&dot.stdout);
    assert!(text.starts_with("digraph vigil {") && text.contains("->"), "{text}");
    let mermaid = vigil(&["graph", "pipelines/demo.vigil", "--format", "mermaid"]);
    let text = String::from_utf8_lossy(&mermaid.stdout);
    assert!(text.starts_with("flowchart LR") && text.contains("-->"), "{text}");
    let bad = vigil(&["graph", "pipelines/demo.vigil", "--pipeline", "nope"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn explain_codes_and_operators() {
    let out = vigil(&["explain", "E0202"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("unknown name"));
    let out = vigil(&["explain", "zscore"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("| `window` |"));
    let out = vigil(&["explain", "zscroe"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `zscore`?"));
}

#[test]
fn output_into_a_pipe_closed_early_ends_quietly() {
    use std::io::Read;
    let dir = tmpdir("cli-pipe");
    // Thousands of diagnostics: far more JSON than a pipe buffers.
    let src: String = (0..4000).map(|i| format!("pipeline p{i} {{\n  every 1x\n}}\n")).collect();
    std::fs::write(dir.join("many.vigil"), src).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["check", "--format", "json"])
        .arg(dir.join("many.vigil"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The reader is gone (like `| head`): the rest cannot be written.
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(out.status.code(), Some(101), "no panic: {err}");
}

#[test]
fn explain_covers_stdlib_stages_options_and_template_variables() {
    let text = |args: &[&str]| {
        let o = vigil(args);
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let z = text(&["explain", "robust_zscore"]);
    assert!(z.contains("std.detect") && z.contains("window: Duration = 1d") && z.contains("suppress: Duration = 1d"), "{z}");
    assert_eq!(text(&["explain", "std.detect.robust_zscore"]), z);
    let pending = text(&["explain", "pending"]);
    assert!(pending.contains("flap control") && pending.contains("pending for 2m"), "{pending}");
    assert_eq!(text(&["explain", "pending_for"]), pending, "the old name explains the option it became");
    assert!(text(&["explain", "E0112"]).contains("Replace `#` with `//`"));
    let templates = text(&["explain", "templates"]);
    assert!(templates.contains("incident.acknowledged_by") && templates.contains("incident.samples"), "{templates}");
    assert!(templates.contains("log template mining"), "the operator too: {templates}");
    let ops = text(&["explain", "operators"]);
    assert!(ops.contains("  zscore ") && ops.contains("std.detect.robust_zscore") && !ops.contains("| "), "a list, not markdown: {ops}");
}

#[test]
fn graph_labels_name_the_stdlib_stage_the_user_called() {
    let dir = tmpdir("cli-graph-via");
    let file = dir.join("g.vigil");
    std::fs::write(
        &file,
        "use std.detect.{robust_zscore}\npipeline p {\n  every 1m\n  collect raw = synthetic(seed: 1)\n  predict scores = robust_zscore(raw, window: 1h)\n  respond r = log(scores)\n}\n",
    )
    .unwrap();
    let o = vigil(&["graph", file.to_str().unwrap(), "--format", "mermaid"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("predict robust_zscore (zscore)"), "{out}");
}
