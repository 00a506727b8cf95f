//! Check ⇔ build: what `vigil check` accepts, the engine builds. Every operator's doc
//! example and every pipeline under `pipelines/`, `tests/fixtures/check/ok` and
//! `tests/fixtures/plan` builds offline (the stdlib is built through them); a sweep over
//! each operator's numeric parameters with edge values (zero, negatives, fractions, huge
//! numbers) finds no value that `vigil check` accepts and building refuses — or that makes
//! building panic; and a property test ([`mutations`]) sets random values of every type
//! (strings that break regular expressions, selectors, templates, URLs; lists empty or
//! long) and finds that `vigil check` accepts exactly what builds.

use std::path::Path;
use std::sync::Arc;

use vigil::operators::build;
use vigil::operators::specs as operators;
use vigil::plan::Plan;
use vigil::respond::Responder;
use vigil::runtime::ops::BuildEnv;
use vigil::stages::Ty;

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
    for op in operators() {
        let out = vigil::compile_str(&format!("{}.vigil", op.name), &example_pipeline(op.example));
        let plan = out.plan.unwrap_or_else(|| panic!("the example of `{}` compiles", op.name));
        failed.extend(build_plan(&plan, root));
    }
    for dir in ["pipelines", "tests/fixtures/check/ok", "tests/fixtures/plan"] {
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
    for op in operators() {
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

mod mutations {
    //! Check ⇔ build under random parameter values: for an operator's example with one
    //! parameter set to a random value of its type (numbers at and past their bounds,
    //! strings that break regular expressions, selectors, templates, URLs, addresses,
    //! headers and edges, lists empty or long), `vigil check` accepts the pipeline exactly
    //! when building the node with that value succeeds — but for what depends on the
    //! environment (a file that cannot be read).

    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Arc;

    use proptest::prelude::*;
    use vigil::diagnostic::Code;
    use vigil::operators::specs as operators;
    use vigil::respond::Responder;
    use vigil::runtime::ops::BuildEnv;
    use vigil::stages::{OperatorSpec, ParamSpec, Scalar, Ty};
    use vigil::value::Value;

    use super::{build_plan, example_pipeline, secrets, split_args};

    const GARBAGE: &[&str] = &[
        "",
        " ",
        "(",
        "[",
        "*",
        "\\",
        "{",
        "}",
        "a{2,1}",
        "{job=\"web\"}",
        "{job=",
        "{job=~\"(\"}",
        "up{job=\"web\", env!=\"dev\"}",
        "<Content>",
        "<Date> <Time> <Level>: <Content>",
        "<Date>",
        "<Content> <Content>",
        "{{ incident.key }}",
        "{{ incident.key",
        "{% if %}",
        "{{ nope }}",
        "{{ labels.service }}",
        "http://127.0.0.1:9/x",
        "https://example.com/hook",
        "ftp://example.com",
        "not a url",
        "a -> b",
        "a => b",
        "a -> a",
        "sre@example.com",
        "not an address",
        "x@",
        "^\\s",
        "é",
        "-rf",
        "a\nb",
    ];

    fn text() -> BoxedStrategy<String> {
        prop_oneof![3 => proptest::sample::select(GARBAGE).prop_map(str::to_owned), 1 => "[ -~]{0,12}"].boxed()
    }

    fn string(choices: &'static [&'static str]) -> BoxedStrategy<String> {
        if choices.is_empty() {
            text()
        } else {
            prop_oneof![proptest::sample::select(choices).prop_map(str::to_owned), text()].boxed()
        }
    }

    fn int() -> BoxedStrategy<i64> {
        prop_oneof![
            proptest::sample::select(vec![
                0,
                -1,
                1,
                2,
                7,
                64,
                4096,
                4097,
                100_000,
                1 << 20,
                (1 << 20) + 1,
                10_000_001,
                i64::MAX,
                i64::MIN + 1
            ]),
            -10i64..5000,
            any::<i64>().prop_filter("not i64::MIN", |i| *i != i64::MIN),
        ]
        .boxed()
    }

    /// A random value of a parameter's type, or `None` for the types not mutated
    /// (secrets, conditions).
    fn value(param: &'static ParamSpec) -> Option<BoxedStrategy<Value>> {
        use proptest::collection::{btree_map, vec};
        Some(match param.ty {
            Ty::Int => int().prop_map(Value::Int).boxed(),
            Ty::Float => prop_oneof![proptest::sample::select(vec![0.0, -1.0, 0.5, 1.0, 1.5, 0.001, 1e300, -1e300]), -10.0f64..10.0,]
                .prop_map(Value::Float)
                .boxed(),
            Ty::Duration => prop_oneof![proptest::sample::select(vec![0u64, 1, 999, 1000, 86_400_000_000, u64::MAX / 2]), 0u64..10_000_000]
                .prop_map(Value::Duration)
                .boxed(),
            Ty::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
            Ty::String => string(param.choices).prop_map(Value::Str).boxed(),
            Ty::List(Scalar::String) => {
                prop_oneof![Just(Vec::new()), vec(string(param.choices), 1..4), string(param.choices).prop_map(|s| vec![s; 300]),]
                    .prop_map(|v| Value::List(v.into_iter().map(Value::Str).collect()))
                    .boxed()
            }
            Ty::List(Scalar::Int) => prop_oneof![Just(Vec::new()), vec(int(), 1..4), Just(vec![1; 300])]
                .prop_map(|v| Value::List(v.into_iter().map(Value::Int).collect()))
                .boxed(),
            Ty::Map => btree_map("[a-z]{1,5}", text().prop_map(Value::Str), 0..3).prop_map(Value::Map).boxed(),
            _ => return None,
        })
    }

    /// An operator, one of its mutable parameters and a value for it.
    fn case() -> impl Strategy<Value = (&'static OperatorSpec, &'static ParamSpec, Value)> {
        let params: Vec<(&'static OperatorSpec, &'static ParamSpec)> =
            operators().flat_map(|op| op.all_params().map(move |p| (op, p))).filter(|(_, p)| value(p).is_some()).collect();
        proptest::sample::select(params).prop_flat_map(|(op, p)| value(p).expect("a mutable type").prop_map(move |v| (op, p, v)))
    }

    /// The operator's example with `param` set to `value` (added, or replacing its
    /// argument).
    fn with_param(op: &OperatorSpec, param: &str, value: &str) -> String {
        let example = op.example;
        let (head, last) = example.rsplit_once('\n').map_or(("", example), |(h, l)| (h, l));
        let open = last.find('(').expect("the example calls the operator");
        let call_end = last.rfind(')').unwrap_or(last.len());
        let mut args: Vec<String> = split_args(&last[open + 1..call_end])
            .into_iter()
            .filter(|a| !a.trim_start().starts_with(&format!("{param}:")))
            .map(|a| a.trim().to_owned())
            .collect();
        args.push(format!("{param}: {value}"));
        let head = if head.is_empty() { String::new() } else { format!("{head}\n") };
        format!("{head}{}({}){}", &last[..open], args.join(", "), &last[call_end + 1..])
    }

    /// Refusals that depend on the environment, not on the pipeline.
    fn environmental(why: &str) -> bool {
        why.contains("cannot read") || why.contains("is not set") || why.contains("cannot make an HTTP client")
    }

    fn runtime() -> &'static tokio::runtime::Runtime {
        static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
        RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 600, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn check_accepts_exactly_what_builds((op, param, value) in case()) {
            secrets();
            let _guard = runtime().enter();
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let src = example_pipeline(&with_param(op, param.name, &value.to_source()));
            let out = vigil::compile_str(&format!("{}.vigil", op.name), &src);
            let errors: Vec<_> = out.diagnostics.0.iter().filter(|d| d.is_error()).collect();
            if let Some(plan) = &out.plan {
                // Accepted: every node builds.
                let failed: Vec<String> = build_plan(plan, root).into_iter().filter(|f| !environmental(f)).collect();
                prop_assert!(failed.is_empty(), "`vigil check` accepts {}({}: {}) but building refuses: {:?}", op.name, param.name, value.to_source(), failed);
            } else if !errors.is_empty() && errors.iter().all(|d| d.code == Code::E0307) {
                // Refused for the value: building the example's node with it refuses too.
                let base = vigil::compile_str("base.vigil", &example_pipeline(op.example)).plan.expect("the example compiles");
                let p = &base.pipelines[0];
                let mut node = p.stages.iter().rev().find(|s| s.operator == op.name).expect("the example's node").clone();
                node.params.insert(param.name.to_owned(), value.clone().coerce(param.ty));
                let mut env = BuildEnv::offline(&p.name, root, Arc::new(Responder::capturing()));
                env.webhook_queue = Some(Default::default());
                let built = vigil::operators::build(&node, &env);
                prop_assert!(built.is_err(), "`vigil check` refuses {}({}: {}) ({:?}) but building accepts it", op.name, param.name, value.to_source(), errors.iter().map(|d| d.message.clone()).collect::<Vec<_>>());
                let refusals = vigil::operators::check(op.name, &node.params);
                prop_assert!(!refusals.is_empty(), "building refuses {}({}: {}) but the operator's check does not", op.name, param.name, value.to_source());
            }
        }
    }

    #[test]
    fn a_refusal_maps_to_its_parameter() {
        let mut params = BTreeMap::new();
        params.insert("match".to_owned(), Value::Str("{job=".into()));
        let r = vigil::operators::check("select", &params);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].param, "match");
    }
}
