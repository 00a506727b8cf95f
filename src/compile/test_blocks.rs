//! Checking `test` blocks against the plan (`vigil check`, `vigil test`): a test's pipeline,
//! its fixtures and its expectations, before anything runs; `crate::testing` runs the
//! checked tests.
//!
//! An unknown pipeline (E0701), a fixture that is missing or has bad rows (E0702, see
//! [`super::fixtures`]), a collect stage without a fixture (E0703), an expectation that
//! reads something the run does not produce (E0704), and unknown stages (E0202) are
//! diagnostics with positions.

use std::path::Path;
use std::sync::Arc;

use super::fixtures::{events_fixture, fixture, Measure};
use crate::data::Data;
use crate::diagnostic::{suggest, Code, Diagnostic};
use crate::plan::{PipelinePlan, Plan};
use crate::source::{SourceMap, Span};
use crate::stages::Ty;
use crate::syntax::ast::{self, Expr, ExprKind, StageKind, TestStmt};

/// A checked test, ready to run.
#[derive(Clone, Debug)]
pub struct TestCase {
    pub name: String,
    pub pipeline: String,
    pub doc: Vec<String>,
    /// The test's position (for reports).
    pub span: Span,
    /// `file:line:col` of the test.
    pub location: String,
    /// Stage index → the data it is given (Series, Events or Scores).
    pub givens: Vec<(usize, Data)>,
    /// Per stage: whether it runs (it is not given, and what it makes is used).
    pub runs: Vec<bool>,
    pub expects: Vec<Expectation>,
}

/// One `expect`.
#[derive(Clone, Debug)]
pub struct Expectation {
    pub cond: Expr,
    /// The condition as written.
    pub text: String,
    /// `file:line:col`.
    pub location: String,
}

/// The functions expectations may call (`precision` and `recall` take a Scores stage
/// first, the others values).
pub const FUNCTIONS: &[&str] = &["count", "max", "min", "mean", "sum", "first", "last", "any", "all", "contains", "precision", "recall"];

/// The fields of a stage of this output type an expectation reads (each a list, one value
/// per item): a data type's fields ([`Ty::fields`], the list the checker types conditions
/// with and the data's readers follow) but its maps; for a respond stage, what it did.
pub fn fields_of(ty: Ty, kind: StageKind) -> Vec<&'static str> {
    match (ty, kind) {
        (Ty::Series | Ty::Events | Ty::Scores, _) => ty.fields().iter().filter(|(_, t)| *t != Ty::Map).map(|(n, _)| *n).collect(),
        (_, StageKind::Respond) | (Ty::Incidents, _) => RESPOND_FIELDS.to_vec(),
        _ => Vec::new(),
    }
}

/// What an expectation reads of a respond stage: `opened` and `resolved` (incident keys,
/// in order), `notifications` (their transitions), `subject` and `body` (rendered).
pub const RESPOND_FIELDS: &[&str] = &["opened", "resolved", "notifications", "subject", "body"];

/// Checks the `test` items of the compiled files against the plan.
pub fn check_tests(files: &[(crate::source::SourceId, &ast::File)], sources: &SourceMap, plan: &Plan) -> (Vec<TestCase>, Vec<Diagnostic>) {
    let mut tests = Vec::new();
    let mut diags = Vec::new();
    for (source, file) in files {
        let base = sources.get(*source).path.as_ref().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_default();
        for item in &file.items {
            let ast::Item::Test(t) = item else { continue };
            if let Some(case) = check_test(t, &base, sources, plan, &mut diags) {
                tests.push(case);
            }
        }
    }
    (tests, diags)
}

fn check_test(t: &ast::Test, base: &Path, sources: &SourceMap, plan: &Plan, diags: &mut Vec<Diagnostic>) -> Option<TestCase> {
    let Some(p) = plan.pipeline(&t.pipeline.node) else {
        diags.push(
            Diagnostic::error(Code::E0701, t.pipeline.span, format!("no pipeline `{}`", t.pipeline.node))
                .with_label("not defined in the files compiled with this test")
                .with_help(
                    suggest(&t.pipeline.node, plan.pipelines.iter().map(|p| p.name.as_str()))
                        .unwrap_or_else(|| "compile the test together with its pipeline's file, e.g. `vigil test pipelines/`".into()),
                ),
        );
        return None;
    };
    let before = diags.len();
    let mut givens: Vec<(usize, Data)> = Vec::new();
    // Stages given something, valid or not (an invalid fixture is reported once).
    let mut given_any: Vec<usize> = Vec::new();
    let mut expects = Vec::new();
    for stmt in &t.body {
        match stmt {
            TestStmt::Given { stage, value, .. } => {
                let Some(i) = stage_index(p, &stage.node) else {
                    diags.push(unknown_stage(p, &stage.node, stage.span));
                    continue;
                };
                given_any.push(i);
                let out = p.stages[i].output;
                if !matches!(out, Ty::Series | Ty::Events | Ty::Scores) {
                    diags.push(
                        Diagnostic::error(
                            Code::E0702,
                            stage.span,
                            format!("`{}` yields {out}, and fixtures are Series, Events or Scores", stage.node),
                        )
                        .with_label("cannot be given a fixture")
                        .with_help("give a collect or preprocess stage (Series or Events), or a predict stage (Scores)"),
                    );
                    continue;
                }
                let is_events =
                    matches!(&value.kind, ExprKind::Call { callee, .. } if matches!(&callee.kind, ExprKind::Name(n) if n == "events"));
                if is_events != (out == Ty::Events) {
                    let want = match out {
                        Ty::Events => "`events(\"alerts.csv\")`",
                        Ty::Scores => "`csv(\"scores.csv\")` (with a `score` column) or `points([[timestamp, score], ...])`",
                        _ => "`csv(\"file.csv\")` or `points([...])`",
                    };
                    diags.push(
                        Diagnostic::error(Code::E0702, value.span, format!("`{}` yields {out}", stage.node))
                            .with_label(format!("this fixture is not {out}"))
                            .with_help(format!("give it {want}")),
                    );
                    continue;
                }
                let made = match out {
                    Ty::Events => events_fixture(value, base).map(|e| Data::Events(Arc::new(e))),
                    Ty::Scores => fixture(value, base, Measure::Score),
                    _ => fixture(value, base, Measure::Value),
                };
                match made {
                    // Several `given`s of one stage are several series (or more events).
                    Ok(data) => match (givens.iter_mut().find(|(g, _)| *g == i), data) {
                        (Some((_, Data::Series(d))), Data::Series(more)) => Arc::make_mut(d).series.extend(more.series.iter().cloned()),
                        (Some((_, Data::Scores(d))), Data::Scores(more)) => Arc::make_mut(d).series.extend(more.series.iter().cloned()),
                        (Some((_, Data::Events(d))), Data::Events(more)) => {
                            let all = Arc::make_mut(d);
                            all.events.extend(more.events.iter().cloned());
                            all.events.sort_by_key(|e| e.ts);
                        }
                        (Some(_), _) => {}
                        (None, data) => givens.push((i, data)),
                    },
                    Err((span, label, help)) => {
                        diags.push(Diagnostic::error(Code::E0702, span, "invalid fixture").with_label(label).with_help(help));
                    }
                }
            }
            TestStmt::Expect { cond, .. } => {
                expects.push(Expectation {
                    cond: cond.clone(),
                    text: sources.get(cond.span.source).slice(cond.span).to_owned(),
                    location: sources.location(cond.span),
                });
            }
        }
    }
    // Nothing reaches outside: every collect stage whose data is used needs a fixture. A
    // stage runs unless it is given; its data is used when a stage that runs reads it, or
    // when nothing reads it (its own output is the point).
    let mut used = vec![false; p.stages.len()];
    for i in (0..p.stages.len()).rev() {
        let read_by_running = p.stages.iter().enumerate().any(|(j, s)| used[j] && s.inputs.iter().any(|(_, k)| *k == i));
        let read_at_all = p.stages.iter().any(|s| s.inputs.iter().any(|(_, k)| *k == i));
        used[i] = !given_any.contains(&i) && (read_by_running || !read_at_all);
    }
    let live: Vec<bool> = (0..p.stages.len()).map(|i| used[i] || given_any.contains(&i)).collect();
    for x in &expects {
        check_expr(&x.cond, p, &live, diags);
    }
    for (i, s) in p.stages.iter().enumerate() {
        if s.kind == StageKind::Collect && used[i] {
            let name = s.key.0.rsplit('.').next().unwrap_or(&s.key.0);
            diags.push(
                Diagnostic::error(Code::E0703, t.name.span, format!("collect stage `{name}` has no fixture"))
                    .with_label("this test would have to reach outside")
                    .with_secondary(s.span, "the collect stage")
                    .with_help(format!("add `given {name} = csv(\"fixture.csv\")` or `given {name} = points([...])`")),
            );
        }
    }
    (diags.len() == before).then(|| TestCase {
        name: t.name.node.clone(),
        pipeline: p.name.clone(),
        doc: t.doc.clone(),
        span: t.span,
        location: sources.location(t.name.span),
        givens,
        runs: used,
        expects,
    })
}

/// The index of the stage the user calls `name` in pipeline `p`.
pub fn stage_index(p: &PipelinePlan, name: &str) -> Option<usize> {
    let key = format!("{}.{name}", p.name);
    p.stages.iter().position(|s| s.key.0 == key)
}

fn user_stage_names(p: &PipelinePlan) -> impl Iterator<Item = &str> {
    p.stages.iter().filter(|s| s.named).filter_map(|s| s.key.0.split_once('.').map(|(_, n)| n))
}

fn unknown_stage(p: &PipelinePlan, name: &str, span: Span) -> Diagnostic {
    Diagnostic::error(Code::E0202, span, format!("unknown stage `{name}`"))
        .with_label(format!("pipeline `{}` has no stage of this name", p.name))
        .with_help(
            suggest(name, user_stage_names(p))
                .unwrap_or_else(|| format!("its stages: {}", user_stage_names(p).collect::<Vec<_>>().join(", "))),
        )
}

/// E0704 for a stage that does not run: every stage that reads it is given, or does not
/// run itself.
fn not_run(stage: &str, span: Span) -> Diagnostic {
    Diagnostic::error(Code::E0704, span, "invalid expectation")
        .with_label(format!("`{stage}` does not run in this test: every stage that reads it is given, or does not run"))
        .with_help("read a stage that runs or is given, or give the stages upstream of it instead")
}

/// Checks an expectation's names, fields and functions; `live[i]`: stage `i` produces something in this test (it runs,
/// or is given).
fn check_expr(e: &Expr, p: &PipelinePlan, live: &[bool], diags: &mut Vec<Diagnostic>) {
    let invalid = |span: Span, label: String, help: String| {
        Diagnostic::error(Code::E0704, span, "invalid expectation").with_label(label).with_help(help)
    };
    match &e.kind {
        ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Str(_) | ExprKind::Bool(_) | ExprKind::Duration(_) => {}
        ExprKind::List(items) => items.iter().for_each(|i| check_expr(i, p, live, diags)),
        ExprKind::Unary(_, inner) => check_expr(inner, p, live, diags),
        ExprKind::Binary(_, a, b) => {
            check_expr(a, p, live, diags);
            check_expr(b, p, live, diags);
        }
        ExprKind::Field(inner, field) => {
            let ExprKind::Name(stage) = &inner.kind else {
                diags.push(invalid(e.span, "not `stage.field`".into(), "read a field of a stage: `scores.score`".into()));
                return;
            };
            let Some(i) = stage_index(p, stage) else {
                diags.push(unknown_stage(p, stage, inner.span));
                return;
            };
            let s = &p.stages[i];
            let fields = fields_of(s.output, s.kind);
            if !live[i] {
                diags.push(not_run(stage, inner.span));
            } else if fields.is_empty() {
                diags.push(invalid(
                    inner.span,
                    format!("`{stage}` yields {}, which a test cannot read", s.output),
                    "read a Series, Scores or respond stage".into(),
                ));
            } else if !fields.contains(&field.node.as_str()) {
                diags.push(invalid(
                    field.span,
                    format!("{} stage `{stage}` has no field `{}`", s.output, field.node),
                    suggest(&field.node, fields.iter().copied()).unwrap_or_else(|| format!("its fields: {}", fields.join(", "))),
                ));
            }
        }
        ExprKind::Call { callee, args } => {
            let ExprKind::Name(f) = &callee.kind else {
                diags.push(invalid(callee.span, "not a function".into(), format!("functions: {}", FUNCTIONS.join(", "))));
                return;
            };
            if !FUNCTIONS.contains(&f.as_str()) {
                diags.push(invalid(
                    callee.span,
                    format!("unknown function `{f}`"),
                    suggest(f, FUNCTIONS.iter().copied()).unwrap_or_else(|| format!("functions: {}", FUNCTIONS.join(", "))),
                ));
                return;
            }
            if matches!(f.as_str(), "precision" | "recall") {
                let stage = args.first().and_then(|a| match &a.value.kind {
                    ExprKind::Name(n) => Some((n.as_str(), a.value.span)),
                    _ => None,
                });
                match stage {
                    Some((n, span)) => match stage_index(p, n) {
                        Some(i) if !live[i] => diags.push(not_run(n, span)),
                        Some(i) if p.stages[i].output == Ty::Scores => {}
                        Some(_) => diags.push(invalid(span, format!("`{n}` does not yield Scores"), format!("`{f}` reads a Scores stage"))),
                        None => diags.push(unknown_stage(p, n, span)),
                    },
                    None => diags.push(invalid(
                        e.span,
                        format!("`{f}` takes a Scores stage first"),
                        format!("`{f}(scores, windows: [[\"start\", \"end\"]])`"),
                    )),
                }
                if !args.iter().any(|a| a.name.as_ref().is_some_and(|n| n.node == "windows")) {
                    diags.push(invalid(e.span, "no labelled windows".into(), format!("`{f}(scores, windows: [[\"start\", \"end\"]])`")));
                }
                return;
            }
            for a in args {
                check_expr(&a.value, p, live, diags);
            }
        }
        ExprKind::Name(n) => diags.push(match stage_index(p, n) {
            Some(i) => {
                let fields = fields_of(p.stages[i].output, p.stages[i].kind);
                invalid(
                    e.span,
                    format!("`{n}` is a stage, not a value"),
                    format!("read one of its fields: {}", fields.iter().map(|f| format!("`{n}.{f}`")).collect::<Vec<_>>().join(", ")),
                )
            }
            None => unknown_stage(p, n, e.span),
        }),
        _ => diags.push(invalid(e.span, "not allowed in an expectation".into(), "use fields, functions, comparisons and literals".into())),
    }
}
