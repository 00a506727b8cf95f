//! Plans: fingerprints are stable under formatting and change exactly with a stage's
//! canonical configuration; template parameters are range-checked at expansion.

use vigil::diagnostic::Code;
use vigil::plan::Plan;

fn plan(src: &str) -> Plan {
    let out = vigil::compile_str("t.vigil", src);
    assert!(!out.diagnostics.has_errors(), "{:?}", out.diagnostics);
    out.plan.unwrap()
}

fn fingerprints(p: &Plan) -> Vec<(String, String)> {
    p.pipelines[0].stages.iter().map(|s| (s.key.0.clone(), s.fingerprint.0.clone())).collect()
}

const BASE: &str = "pipeline p {\n  every 30s\n  collect raw = csv(path: \"a.csv\")\n  preprocess clean = fill(raw, \"linear\")\n  predict s = zscore(clean, window: 10m, threshold: 4.0)\n  respond r = log(s)\n}\n";

#[test]
fn formatting_and_comments_do_not_change_fingerprints() {
    let messy = "// a comment\npipeline p { every 30s\n collect raw=csv(path:\"a.csv\",)\n\n preprocess clean = raw | fill(method: \"linear\") // why\n predict s = zscore(clean, threshold: 4, window: 600s)\n respond r = log(s) }";
    assert_eq!(fingerprints(&plan(BASE)), fingerprints(&plan(messy)));
}

#[test]
fn a_changed_parameter_changes_only_that_stage() {
    let changed = BASE.replace("threshold: 4.0", "threshold: 3.5");
    let (a, b) = (fingerprints(&plan(BASE)), fingerprints(&plan(&changed)));
    let differing: Vec<&str> = a.iter().zip(&b).filter(|(x, y)| x.1 != y.1).map(|(x, _)| x.0.as_str()).collect();
    assert_eq!(differing, ["p.s"]);
}

#[test]
fn options_and_defaults_are_part_of_the_fingerprint() {
    let with_timeout = BASE.replace("respond r = log(s)", "respond r = log(s) { timeout 5s }");
    let (a, b) = (fingerprints(&plan(BASE)), fingerprints(&plan(&with_timeout)));
    assert_ne!(a[3], b[3]);
    assert_eq!(a[..3], b[..3]);
    // Writing a default explicitly changes nothing.
    let explicit = BASE.replace("window: 10m,", "window: 10m, method: \"robust\", min_samples: 30,");
    assert_eq!(fingerprints(&plan(BASE)), fingerprints(&plan(&explicit)));
}

#[test]
fn stdlib_expansion_fills_defaults_and_keys_under_the_stage() {
    let p = plan("use std.detect.{robust_zscore}\npipeline p {\n  every 30s\n  collect raw = csv(path: \"a.csv\")\n  predict s = robust_zscore(raw)\n  respond r = log(s)\n}\n");
    let s = p.pipelines[0].stage("p.s").expect("the template's result is keyed by the calling stage");
    assert_eq!(s.operator, "zscore");
    assert_eq!(s.params["window"], vigil::value::Value::Duration(86_400_000));
    assert_eq!(s.params["suppress"], vigil::value::Value::Duration(86_400_000));
    assert!(s.named);
}

#[test]
fn a_template_parameter_out_of_range_points_at_the_caller() {
    let out = vigil::compile_str(
        "t.vigil",
        "stage w(input: Series, n: Int = 8) -> Features {\n  preprocess out = window(input, size: n)\n  out\n}\npipeline p {\n  every 1s\n  collect raw = synthetic()\n  preprocess f = w(raw, n: 1)\n  train m = autoencoder(f)\n  predict s = m.score(f)\n  respond r = log(s)\n}\n",
    );
    let d = out.diagnostics.0.iter().find(|d| d.code == Code::E0307).expect("E0307");
    let primary = out.sources.location(d.span());
    assert!(primary.starts_with("t.vigil:8:"), "{primary}");
    assert_eq!(d.labels.len(), 2, "a secondary label shows where the template passes the value on");
}

#[test]
fn stages_are_in_topological_order() {
    let p = plan("pipeline p {\n  every 1s\n  respond r = log(s)\n  predict s = zscore(c)\n  preprocess c = fill(raw)\n  collect raw = synthetic()\n}\n");
    let keys: Vec<&str> = p.pipelines[0].stages.iter().map(|s| s.key.0.as_str()).collect();
    assert_eq!(keys, ["p.raw", "p.c", "p.s", "p.r"]);
    for (i, s) in p.pipelines[0].stages.iter().enumerate() {
        assert!(s.inputs.iter().all(|(_, j)| *j < i));
    }
}

#[test]
fn secrets_are_references_never_values() {
    std::env::set_var("VIGIL_TEST_SMTP", "smtp://user:hunter2@localhost");
    let p = plan("pipeline p {\n  every 1s\n  collect raw = synthetic()\n  predict s = zscore(raw)\n  respond m = email(s, to: [\"a@b.c\"], smtp: secret(\"env:VIGIL_TEST_SMTP\"))\n}\n");
    let m = p.pipelines[0].stage("p.m").unwrap();
    let shown = format!("{:?} {}", m.params, m.params["smtp"].to_source());
    assert!(!shown.contains("hunter2"));
    assert!(shown.contains("env:VIGIL_TEST_SMTP"));
}

#[test]
fn conditions_are_resolved_with_template_conditions_inlined() {
    let p = plan(
        "stage page_when(s: Scores, only: Condition = s.anomalous) -> Incidents {\n  respond r = log(s, when: only and s.score > 0.5)\n  r\n}\npipeline p {\n  every 1s\n  collect raw = synthetic()\n  predict scores = zscore(raw)\n  respond a = page_when(scores, only: scores.value > 2 or scores.labels.env == \"prod\")\n  respond b = page_when(scores)\n}\n",
    );
    let when = |key: &str| match &p.pipelines[0].stage(key).expect(key).params["when"] {
        vigil::value::Value::Condition(c) => (c.text().to_owned(), c.reads().iter().map(|(f, t)| format!("{f}: {t}")).collect::<Vec<_>>()),
        other => panic!("{key}: {other:?}"),
    };
    // The Condition parameter is a subtree (parenthesised where precedence needs it), and
    // every field is typed against the input (Scores).
    assert_eq!(
        when("p.a"),
        (
            "(item.value > 2 or item.labels.env == \"prod\") and item.score > 0.5".to_owned(),
            vec!["labels: Map".into(), "score: Float".into(), "value: Float".into()]
        )
    );
    assert_eq!(when("p.b"), ("item.anomalous and item.score > 0.5".to_owned(), vec!["anomalous: Bool".into(), "score: Float".into()]));
}

#[test]
fn a_template_condition_inlined_over_another_type_is_refused_at_planning() {
    let out = vigil::compile_str(
        "t.vigil",
        "stage watch(events: Events, only: Condition) -> Incidents {\n  preprocess counts = aggregate(events, op: \"count\", every: 1m)\n  predict s = zscore(counts)\n  respond r = log(s, when: only)\n  r\n}\npipeline p {\n  every 1m\n  collect lines = logs.file(path: \"app.log\")\n  respond w = watch(lines, only: lines.status == \"firing\")\n}\n",
    );
    let d = out.diagnostics.0.iter().find(|d| d.code == Code::E0209).expect("E0209");
    assert_eq!(d.message, "Scores has no field `status`");
    let primary = out.sources.location(d.span());
    assert!(primary.starts_with("t.vigil:10:40"), "at the field the caller wrote: {primary}");
    assert!(out.plan.is_none());
}
