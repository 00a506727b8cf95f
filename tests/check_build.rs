//! Check ⇔ build: what `vigil check` accepts, the engine builds. Every operator's doc
//! example and every pipeline under `pipelines/` and `tests/fixtures/check/ok` builds
//! offline (the stdlib is built through them); and a sweep over each operator's numeric
//! parameters with edge values (zero, negatives, fractions, huge numbers) finds no value
//! that `vigil check` accepts and building refuses — or that makes building panic.

use std::path::Path;
use std::sync::Arc;

use vigil::plan::Plan;
use vigil::respond::Responder;
use vigil::runtime::ops::{build, BuildEnv};
use vigil::stages::{Ty, OPERATORS};

/// The pipeline every example runs in (as in the operators' docs test).
fn example_pipeline(stage: &str) -> String {
    format!(
        "pipeline ex {{\n  every 1m\n  on webhook \"/hooks/ex\"\n  collect raw = synthetic()\n  collect events = webhook_events()\n  \
         preprocess feats = window(raw)\n  train model = autoencoder(feats)\n  predict scores = model.score(feats)\n  {stage}\n}}\n"
    )
}

/// Builds every stage of a plan offline; the stages that failed, with why.
fn build_plan(plan: &Plan, base: &Path) -> Vec<String> {
    let mut failed = Vec::new();
    for p in &plan.pipelines {
        let mut env = BuildEnv::offline(&p.name, base, Arc::new(Responder::capturing()));
        env.webhook_queue = Some(Default::default());
        for node in &p.stages {
            if let Err(e) = build(node, &env) {
                failed.push(format!("{}: {e}", node.key.0));
            }
        }
    }
    failed
}

fn secrets() {
    for name in ["HOOK_KEY", "PD_KEY", "SLACK_WEBHOOK", "SMTP_URL", "SLACK_URL", "PROMETHEUS_TOKEN"] {
        let value = if name == "SMTP_URL" { "smtp://127.0.0.1:2525" } else { "http://127.0.0.1:9/x" };
        std::env::set_var(name, value);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_and_pipeline_that_checks_builds() {
    secrets();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut failed = Vec::new();
    for op in OPERATORS {
        let out = vigil::compile_str(&format!("{}.vigil", op.name), &example_pipeline(op.example));
        let plan = out.plan.unwrap_or_else(|| panic!("the example of `{}` compiles", op.name));
        failed.extend(build_plan(&plan, root));
    }
    for dir in ["pipelines", "tests/fixtures/check/ok"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "vigil") || path.to_string_lossy().ends_with(".test.vigil") {
                continue;
            }
            let out = vigil::compile(std::slice::from_ref(&path)).unwrap();
            let Some(plan) = out.plan else { continue };
            failed.extend(build_plan(&plan, path.parent().unwrap()).into_iter().map(|f| format!("{}: {f}", path.display())));
        }
    }
    assert!(failed.is_empty(), "checked, but building refused:\n{}", failed.join("\n"));
}

/// Edge values of a parameter, as the language writes them: numbers around and far past
/// their bounds, and each of a string's choices.
fn edge_values(param: &vigil::stages::ParamSpec) -> Vec<String> {
    let fixed: &[&str] = match param.ty {
        Ty::Int => &["0", "1", "-1", "2", "1048577", "2147483648", "9223372036854775807"],
        Ty::Float => &["0.0", "-1.0", "0.5", "1.0", "1.5", "1e300", "-1e300"],
        Ty::Duration => &["0s", "1ms", "1s", "1000d"],
        Ty::List(vigil::stages::Scalar::Int) => &["[0]", "[5000]", "[1, 1]", "[]"],
        _ => &[],
    };
    fixed.iter().map(|v| (*v).to_owned()).chain(param.choices.iter().map(|c| format!("\"{c}\""))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_parameter_value_passes_check_and_fails_the_build() {
    secrets();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut mismatches = Vec::new();
    let mut tried = 0;
    for op in OPERATORS {
        for param in op.all_params() {
            for value in edge_values(param) {
                // The example's last stage with this parameter set (or replaced).
                let example = op.example;
                let (head, last) = example.rsplit_once('\n').map_or(("", example), |(h, l)| (h, l));
                let Some(open) = last.find('(') else { continue };
                let call_end = last.rfind(')').unwrap_or(last.len());
                let args = &last[open + 1..call_end];
                let kept: Vec<&str> =
                    split_args(args).into_iter().filter(|a| !a.trim_start().starts_with(&format!("{}:", param.name))).collect();
                let mut all = kept.join(",");
                if !all.trim().is_empty() {
                    all.push_str(", ");
                }
                all.push_str(&format!("{}: {value}", param.name));
                let stage = format!(
                    "{}{}({all}){}",
                    if head.is_empty() { String::new() } else { format!("{head}\n") },
                    &last[..open],
                    &last[call_end + 1..]
                );
                let out = vigil::compile_str(&format!("{}.vigil", op.name), &example_pipeline(&stage));
                if out.diagnostics.has_errors() {
                    continue;
                }
                let Some(plan) = out.plan else { continue };
                tried += 1;
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| build_plan(&plan, root)));
                match result {
                    Ok(failed) if failed.is_empty() => {}
                    Ok(failed) => mismatches.push(format!("{}({}: {value}): {}", op.name, param.name, failed.join("; "))),
                    Err(_) => mismatches.push(format!("{}({}: {value}): building panicked", op.name, param.name)),
                }
            }
        }
    }
    assert!(tried > 100, "the sweep built {tried} variants");
    assert!(mismatches.is_empty(), "`vigil check` accepts what building refuses:\n{}", mismatches.join("\n"));
}

/// Splits call arguments at top-level commas (not inside brackets, braces or strings).
fn split_args(args: &str) -> Vec<&str> {
    let (mut depth, mut in_str, mut start) = (0i32, false, 0);
    let mut out = Vec::new();
    let bytes = args.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_str => i += 1,
            b'"' => in_str = !in_str,
            b'(' | b'[' | b'{' if !in_str => depth += 1,
            b')' | b']' | b'}' if !in_str => depth -= 1,
            b',' if !in_str && depth == 0 => {
                out.push(&args[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < args.len() && !args[start..].trim().is_empty() {
        out.push(&args[start..]);
    }
    out
}
