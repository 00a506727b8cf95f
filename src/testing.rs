//! Pipeline tests (`vigil test`): `test name for pipeline { given ...  expect ... }`.
//!
//! ```vigil
//! test spike_pages_once for checkout {
//!   given latency = csv("fixtures/spike.csv")
//!   expect max(scores.score) >= 0.9
//!   expect count(oncall.opened) == 1
//!   expect contains(first(oncall.subject), "firing")
//! }
//! ```
//!
//! A test runs its pipeline once, causally, over its fixtures — every collect stage is
//! *given* its data (a CSV file or inline points, with `labels:`; `events("file.csv")`
//! for Events) and any Series or Scores stage may be (a Scores fixture has a `score`
//! column, and may have `value` and `anomalous`) — through
//! the same operators as `vigil run` and `vigil replay` (training inline and seeded, so
//! results are reproducible). Respond stages are mocked: they open and resolve incidents
//! and render their notifications, which the test can read, but nothing is sent and no
//! secret is read. Then every `expect` is evaluated over what the stages produced.
//!
//! Tests are checked when compiled, with their fixtures ([`crate::compile::test_blocks`],
//! `vigil check` too); this module runs the checked tests and reports (text, JUnit).
//!
//! What an expectation can read, per port type of the stage (see `docs/testing.md`), is
//! a list, one value per item:
//! - Series, Events and Scores: their fields but the maps ([`crate::types::Ty::fields`],
//!   the fields conditions read): Series `value`, `timestamp` (ms since the epoch),
//!   `series`; Events `status`, `timestamp`, `fingerprint`; Scores `score`, `value`,
//!   `anomalous`, `expected`, `lower`, `upper`, `series`, `timestamp`;
//! - respond stages: `opened` and `resolved` (incident keys, in order), `notifications`
//!   (their transitions: `firing`, `resolved`, ...), `subject` and `body` (rendered).
//!
//! Functions: `count(list)` (of a list of booleans: how many are true), `max`, `min`,
//! `mean`, `sum`, `first`, `last`, `any`, `all`, `contains(list or string, value)`,
//! `precision(scores, windows: [[start, end], ...])` and `recall(scores, windows: ...)`
//! (anomalous samples inside labelled windows; windows with at least one anomalous
//! sample). Everything else — literals, comparisons, arithmetic, `and`, `or`, `not` — is
//! the language's one evaluator ([`crate::expr::eval`]), as in conditions at run time.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::compile::test_blocks::stage_index;
pub use crate::compile::test_blocks::{check_tests, Expectation, TestCase};
use crate::data::Data;
use crate::expr::{Env, EvalError, Val};
use crate::plan::{PipelinePlan, Plan};
use crate::runtime::ops::BuildEnv;
use crate::runtime::{OpCtx, Step};
use crate::source::Span;
use crate::syntax::ast::{Arg, BinaryOp, Expr, ExprKind};

/// What one test did.
#[derive(Clone, Debug)]
pub struct TestResult {
    pub name: String,
    pub pipeline: String,
    pub location: String,
    pub duration: std::time::Duration,
    /// Failed expectations: where, what was expected, what was found.
    pub failures: Vec<Failure>,
    /// A run that could not complete (a stage failed).
    pub error: Option<String>,
}

impl TestResult {
    /// A result for `t` with nothing recorded yet.
    fn of(t: &TestCase) -> TestResult {
        TestResult {
            name: t.name.clone(),
            pipeline: t.pipeline.clone(),
            location: t.location.clone(),
            duration: Default::default(),
            failures: Vec::new(),
            error: None,
        }
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.error.is_none()
    }
}

/// A failed expectation.
#[derive(Clone, Debug)]
pub struct Failure {
    pub location: String,
    pub expected: String,
    /// The values of the sides of the comparison (or of the whole condition).
    pub actual: String,
}

/// What the run produced: each stage's output, and each respond stage's notifications.
struct Outputs<'a> {
    p: &'a PipelinePlan,
    data: Vec<Option<Data>>,
    notes: Vec<crate::respond::Notification>,
}

/// Runs one test.
pub fn run_test(t: &TestCase, plan: &Plan, base_dir: &Path) -> TestResult {
    let started = std::time::Instant::now();
    let mut result = TestResult::of(t);
    match execute(t, plan, base_dir) {
        Err(e) => result.error = Some(e),
        Ok(out) => {
            let run = Run(&out);
            for x in &t.expects {
                match crate::expr::eval(&x.cond, &run) {
                    Ok(Val::Bool(true)) => {}
                    Ok(v) => result.failures.push(Failure {
                        location: x.location.clone(),
                        expected: x.text.clone(),
                        actual: explain(&x.cond, &run, &v),
                    }),
                    Err(e) => result.failures.push(Failure { location: x.location.clone(), expected: x.text.clone(), actual: e.message() }),
                }
            }
        }
    }
    result.duration = started.elapsed();
    result
}

fn execute<'a>(t: &TestCase, plan: &'a Plan, base_dir: &Path) -> Result<Outputs<'a>, String> {
    let p = plan.pipeline(&t.pipeline).ok_or_else(|| format!("no pipeline `{}`", t.pipeline))?;
    let responder = Arc::new(crate::respond::Responder::capturing());
    let env = BuildEnv::offline(&p.name, base_dir, responder.clone());
    let given: HashMap<usize, &Data> = t.givens.iter().map(|(i, d)| (*i, d)).collect();
    let mut data: Vec<Option<Data>> = vec![None; p.stages.len()];
    let now = t
        .givens
        .iter()
        .filter_map(|(_, d)| match d {
            Data::Series(s) => s.series.iter().filter_map(|c| c.ts.last().copied()).max(),
            Data::Events(e) => e.events.last().map(|e| e.ts),
            Data::Scores(s) => s.series.iter().filter_map(|c| c.ts.last().copied()).max(),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    for (i, d) in &given {
        data[*i] = Some((*d).clone());
    }
    let inputs: Vec<Vec<usize>> = p.stages.iter().map(|s| s.inputs.iter().map(|(_, j)| *j).collect()).collect();
    crate::runtime::exec::run(&inputs, &mut data, |i, ins| {
        let node = &p.stages[i];
        // Not built at all: a collect stage nothing running reads may need a secret or a
        // server.
        if !t.runs.get(i).copied().unwrap_or(true) {
            return Ok(None);
        }
        let mut op = match crate::operators::build(node, &env).map_err(|e| format!("stage `{}`: {e}", node.key))? {
            Step::Op(op) => op,
            Step::Source(_) => return Err(format!("collect stage `{}` has no fixture", node.key)),
        };
        crate::runtime::process_now(op.as_mut(), &ins, &mut OpCtx::new(now))
            .map(Some)
            .map_err(|e| format!("stage `{}` failed: {e}", node.key))
    })
    .map_err(|(_, e)| e)?;
    Ok(Outputs { p, data, notes: responder.captured() })
}

/// An expectation's names: the stages of the run, whose fields are lists.
struct Run<'o>(&'o Outputs<'o>);

/// An error of an expectation, in words.
fn refuse<T>(span: Span, message: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError::Operand { span, message: message.into() })
}

impl<'o> Env<'o> for Run<'o> {
    fn name(&self, name: &str, span: Span) -> Result<Val<'o>, EvalError> {
        refuse(span, format!("`{name}` is not allowed in an expectation"))
    }

    fn field(&self, stage: &str, field: &str, span: Span) -> Result<Val<'o>, EvalError> {
        let out = self.0;
        let Some(i) = stage_index(out.p, stage) else { return refuse(span, format!("no stage `{stage}`")) };
        let key = &out.p.stages[i].key.0;
        let missing = |kind: &str| EvalError::Operand { span, message: format!("{kind} have no field `{field}`") };
        let mut items = Vec::new();
        match (&out.data[i], field) {
            (None, _) => {}
            (Some(Data::Series(s)), f) => {
                for c in &s.series {
                    for k in 0..c.len() {
                        items.push(c.field(k, f).ok_or_else(|| missing("Series"))?);
                    }
                }
            }
            (Some(Data::Scores(s)), f) => {
                for c in &s.series {
                    for k in 0..c.len() {
                        items.push(c.field(k, f).ok_or_else(|| missing("Scores"))?);
                    }
                }
            }
            (Some(Data::Events(e)), f) => {
                for ev in &e.events {
                    items.push(ev.field(f).ok_or_else(|| missing("Events"))?);
                }
            }
            (Some(Data::Incidents(inc)), "opened" | "resolved") => {
                let want = if field == "opened" { "firing" } else { "resolved" };
                items.extend(inc.updates.iter().filter(|u| u.status == want).map(|u| Val::Str(u.key.as_str().into())));
            }
            (Some(Data::Incidents(_)), "notifications" | "subject" | "body") => {
                items.extend(out.notes.iter().filter(|n| n.stage == *key).map(|n| {
                    Val::Str(
                        match field {
                            "notifications" => n.transition.as_str(),
                            "subject" => n.subject.as_str(),
                            _ => n.body.as_str(),
                        }
                        .into(),
                    )
                }));
            }
            (Some(other), f) => return refuse(span, format!("{} has no field `{f}`", other.kind())),
        }
        Ok(Val::List(items))
    }

    fn call(&self, f: &str, args: &[Arg], span: Span) -> Result<Val<'o>, EvalError> {
        if matches!(f, "precision" | "recall") {
            let Some(ExprKind::Name(stage)) = args.first().map(|a| &a.value.kind) else {
                return refuse(span, format!("`{f}` takes a Scores stage"));
            };
            let Some(windows) = args.iter().find(|a| a.name.as_ref().is_some_and(|n| n.node == "windows")) else {
                return refuse(span, "no `windows`");
            };
            let windows = crate::expr::eval(&windows.value, self)?;
            let (precision, recall) = self.0.quality(stage, &windows).or_else(|m| refuse(span, m))?;
            return Ok(Val::Float(if f == "precision" { precision } else { recall }));
        }
        let vals: Vec<Val<'o>> = args.iter().map(|a| crate::expr::eval(&a.value, self)).collect::<Result<_, _>>()?;
        call(f, vals).or_else(|m| refuse(span, m))
    }
}

impl Outputs<'_> {
    /// (precision, recall) of a Scores stage's anomalous flags against windows.
    fn quality(&self, stage: &str, windows: &Val<'_>) -> Result<(f64, f64), String> {
        let i = stage_index(self.p, stage).ok_or_else(|| format!("no stage `{stage}`"))?;
        let Val::List(ws) = windows else { return Err("`windows` must be a list of [start, end]".into()) };
        let mut spans = Vec::new();
        for w in ws {
            let ts = |v: &Val<'_>| match v {
                Val::Str(s) => crate::time::parse_timestamp(s),
                Val::Int(n) => Some(*n),
                Val::Float(n) => Some(*n as i64),
                _ => None,
            };
            match w {
                Val::List(pair) if pair.len() == 2 => match (ts(&pair[0]), ts(&pair[1])) {
                    (Some(a), Some(b)) if a <= b => spans.push((a, b)),
                    _ => return Err(format!("window {w} is not [start, end]")),
                },
                _ => return Err(format!("window {w} is not [start, end]")),
            }
        }
        let Some(Data::Scores(s)) = &self.data[i] else { return Ok((f64::NAN, f64::NAN)) };
        let (mut hits, mut flagged) = (0usize, 0usize);
        let mut found = vec![false; spans.len()];
        for c in &s.series {
            for k in 0..c.len() {
                if !c.anomalous[k] {
                    continue;
                }
                flagged += 1;
                let mut hit = false;
                for (w, (a, b)) in spans.iter().enumerate() {
                    if *a <= c.ts[k] && c.ts[k] <= *b {
                        hit = true;
                        found[w] = true;
                    }
                }
                hits += usize::from(hit);
            }
        }
        let precision = if flagged == 0 { 0.0 } else { hits as f64 / flagged as f64 };
        let recall = if spans.is_empty() { 1.0 } else { found.iter().filter(|f| **f).count() as f64 / spans.len() as f64 };
        Ok((precision, recall))
    }
}

/// The numbers of a list (a Bool counts 1 or 0; a value not known is left out).
fn nums(v: &Val<'_>, f: &str) -> Result<Vec<f64>, String> {
    match v {
        Val::List(l) => l
            .iter()
            .filter(|x| !matches!(x, Val::Null))
            .map(|x| match x {
                Val::Int(n) => Ok(*n as f64),
                Val::Float(n) => Ok(*n),
                Val::Bool(b) => Ok(f64::from(u8::from(*b))),
                other => Err(format!("`{f}` of a list holding {other}")),
            })
            .collect(),
        other => Err(format!("`{f}` takes a list, not {other}")),
    }
}

/// The functions of expectations (but `precision` and `recall`, which read a stage).
fn call<'o>(f: &str, args: Vec<Val<'o>>) -> Result<Val<'o>, String> {
    let one = || args.first().cloned().ok_or_else(|| format!("`{f}` takes an argument"));
    let count = |n: usize| Val::Int(i64::try_from(n).unwrap_or(i64::MAX));
    Ok(match f {
        "count" => match one()? {
            Val::List(l) if l.iter().all(|x| matches!(x, Val::Bool(_))) && !l.is_empty() => {
                count(l.iter().filter(|x| matches!(x, Val::Bool(true))).count())
            }
            Val::List(l) => count(l.len()),
            Val::Str(s) => count(s.chars().count()),
            v => return Err(format!("`count` of {v}")),
        },
        "max" | "min" | "mean" | "sum" => {
            let xs: Vec<f64> = nums(&one()?, f)?.into_iter().filter(|x| !x.is_nan()).collect();
            Val::Float(match f {
                "max" => xs.iter().copied().fold(f64::NAN, f64::max),
                "min" => xs.iter().copied().fold(f64::NAN, f64::min),
                "sum" => xs.iter().sum(),
                _ if xs.is_empty() => f64::NAN,
                _ => xs.iter().sum::<f64>() / xs.len() as f64,
            })
        }
        "first" | "last" => match one()? {
            Val::List(l) => {
                let x = if f == "first" { l.first() } else { l.last() };
                x.cloned().ok_or_else(|| format!("`{f}` of an empty list"))?
            }
            v => return Err(format!("`{f}` takes a list, not {v}")),
        },
        "any" | "all" => {
            let xs = nums(&one()?, f)?;
            Val::Bool(if f == "any" { xs.iter().any(|x| *x != 0.0) } else { xs.iter().all(|x| *x != 0.0) })
        }
        "contains" => match (args.first(), args.get(1)) {
            (Some(Val::Str(hay)), Some(Val::Str(needle))) => Val::Bool(hay.contains(needle.as_ref())),
            (Some(Val::List(l)), Some(x)) => Val::Bool(l.iter().any(|y| y.equals(x))),
            _ => return Err("`contains(list or string, value)`".into()),
        },
        other => return Err(format!("unknown function `{other}`")),
    })
}

/// What a failed expectation found: the values of both sides of a comparison (or of
/// each part of an `and`), else the value of the whole.
fn explain(e: &Expr, run: &Run<'_>, whole: &Val<'_>) -> String {
    let show = |x: &Expr| crate::expr::eval(x, run).map_or_else(|e| format!("error: {e}"), |v| v.to_string());
    match &e.kind {
        ExprKind::Binary(op @ (BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge), a, b) => {
            format!("left: {}\nright: {}\n(`{}` does not hold)", show(a), show(b), op.as_str())
        }
        ExprKind::Binary(BinaryOp::And, a, b) => {
            let part = |x: &Expr| match crate::expr::eval(x, run) {
                Ok(Val::Bool(true)) => None,
                Ok(v) => Some(explain(x, run, &v)),
                Err(e) => Some(e.message()),
            };
            part(a).or_else(|| part(b)).unwrap_or_else(|| whole.to_string())
        }
        ExprKind::Call { callee, args } if matches!(&callee.kind, ExprKind::Name(f) if f == "contains") && args.len() == 2 => {
            format!("in: {}\nlooked for: {}\n(not found)", show(&args[0].value), show(&args[1].value))
        }
        _ => format!("found: {whole}"),
    }
}

/// Runs tests on up to `threads` threads; results in the tests' order.
pub fn run_all(tests: &[TestCase], plan: &Plan, base_dir: &Path, threads: usize) -> Vec<TestResult> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<Option<TestResult>>> = std::sync::Mutex::new(vec![None; tests.len()]);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1).min(tests.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(t) = tests.get(i) else { break };
                // A panic in an operator is a bug, reported as this test's error.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_test(t, plan, base_dir))).unwrap_or_else(|p| {
                    let why = p
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    TestResult { error: Some(format!("the run panicked (a bug in vigil): {why}")), ..TestResult::of(t) }
                });
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
            });
        }
    });
    results.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().flatten().collect()
}

/// JUnit XML for CI systems.
pub fn junit(results: &[TestResult]) -> String {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\n', "&#10;");
    let failed = results.iter().filter(|r| !r.passed()).count();
    let total: f64 = results.iter().map(|r| r.duration.as_secs_f64()).sum();
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"vigil\" tests=\"{}\" failures=\"{failed}\" time=\"{total:.3}\">\n  <testsuite name=\"vigil test\" tests=\"{}\" failures=\"{failed}\" time=\"{total:.3}\">\n",
        results.len(),
        results.len()
    );
    for r in results {
        s.push_str(&format!(
            "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\" time=\"{:.3}\"",
            esc(&r.pipeline),
            esc(&r.name),
            esc(r.location.rsplitn(3, ':').nth(2).unwrap_or_default()),
            r.duration.as_secs_f64()
        ));
        if r.passed() {
            s.push_str("/>\n");
            continue;
        }
        s.push_str(">\n");
        if let Some(e) = &r.error {
            s.push_str(&format!("      <error message=\"{}\"/>\n", esc(e)));
        }
        for f in &r.failures {
            s.push_str(&format!(
                "      <failure message=\"{}: expected {}\">{}</failure>\n",
                esc(&f.location),
                esc(&f.expected),
                esc(&f.actual)
            ));
        }
        s.push_str("    </testcase>\n");
    }
    s.push_str("  </testsuite>\n</testsuites>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{ScoreColumn, ScoresData, SeriesId};
    use crate::expr::{Condition, Val};
    use proptest::prelude::*;

    /// An expression over one scored sample, written for each of the three evaluators.
    #[derive(Clone, Debug)]
    enum E {
        Int(i64),
        Float(f64),
        Bool(bool),
        Str(&'static str),
        /// `score` (a Float), `anomalous` (a Bool), `expected` (NaN: not known).
        Field(&'static str),
        Not(Box<E>),
        Neg(Box<E>),
        Bin(BinaryOp, Box<E>, Box<E>),
    }

    /// The sample's values, as literals (`None`: NaN, which no literal writes).
    fn literal(field: &str, score: f64, anomalous: bool) -> Option<String> {
        match field {
            "score" => Some(format!("{score:?}")),
            "anomalous" => Some(anomalous.to_string()),
            _ => None,
        }
    }

    /// The expression as a condition at run time reads it (`item.score`), as `vigil test`
    /// reads it (`first(s.score)`), or folded (the value itself).
    fn text(e: &E, dialect: u8, score: f64, anomalous: bool) -> Option<String> {
        let go = |x: &E| text(x, dialect, score, anomalous);
        Some(match e {
            E::Int(i) => format!("{i}"),
            E::Float(f) => format!("{f:?}"),
            E::Bool(b) => b.to_string(),
            E::Str(s) => format!("{s:?}"),
            E::Field(f) => match dialect {
                0 => format!("item.{f}"),
                1 => format!("first(s.{f})"),
                _ => literal(f, score, anomalous)?,
            },
            E::Not(x) => format!("not ({})", go(x)?),
            E::Neg(x) => format!("-({})", go(x)?),
            E::Bin(op, l, r) => format!("({}) {} ({})", go(l)?, op.as_str(), go(r)?),
        })
    }

    fn expr() -> impl Strategy<Value = E> {
        use BinaryOp::*;
        let leaf = prop_oneof![
            (-3i64..4).prop_map(E::Int),
            prop::sample::select(vec![0.0, 0.5, -1.5, 2.0]).prop_map(E::Float),
            any::<bool>().prop_map(E::Bool),
            prop::sample::select(vec!["a", "b"]).prop_map(E::Str),
            prop::sample::select(vec!["score", "anomalous", "expected"]).prop_map(E::Field),
        ];
        leaf.prop_recursive(4, 24, 2, |inner| {
            prop_oneof![
                inner.clone().prop_map(|x| E::Not(Box::new(x))),
                inner.clone().prop_map(|x| E::Neg(Box::new(x))),
                (prop::sample::select(vec![And, Or, Eq, Ne, Lt, Le, Gt, Ge, Add, Sub, Mul, Div, Rem]), inner.clone(), inner)
                    .prop_map(|(op, l, r)| E::Bin(op, Box::new(l), Box::new(r))),
            ]
        })
    }

    fn same(a: &Result<Val<'_>, EvalError>, b: &Result<Val<'_>, EvalError>) -> bool {
        match (a, b) {
            (Ok(Val::Float(x)), Ok(Val::Float(y))) if x.is_nan() && y.is_nan() => true,
            (Ok(x), Ok(y)) => x.equals(y) && x.describe() == y.describe(),
            (Err(_), Err(_)) => true,
            _ => false,
        }
    }

    proptest! {
        /// Conditions at run time, `vigil test`'s expectations and constant folding are one
        /// evaluator: over one sample, an expression has one value (or is an error) in all
        /// three — `null` (a NaN field) included where a constant can write it.
        #[test]
        fn the_runtime_vigil_test_and_folding_agree(e in expr(), score in prop::sample::select(vec![0.0, 0.25, 0.5, 1.0]), anomalous in any::<bool>()) {
            let src = "pipeline p {\n  every 1s\n  collect raw = synthetic(seed: 7)\n  predict s = zscore(raw, window: 5m)\n  respond a = log(s)\n}\n";
            let plan = crate::compile_str("p.vigil", src).plan.expect("compiles");
            let p = plan.pipeline("p").expect("pipeline");
            let i = stage_index(p, "s").expect("stage");
            let mut col = ScoreColumn::new(SeriesId::named("x"));
            col.push(0, 1.0, score, f64::NAN, f64::NAN, f64::NAN, anomalous);
            let mut data = vec![None; p.stages.len()];
            data[i] = Some(Data::Scores(Arc::new(ScoresData { series: vec![col.clone()] })));
            let out = Outputs { p, data, notes: Vec::new() };

            let runtime_text = text(&e, 0, score, anomalous).unwrap();
            let item = crate::runtime::ops::respond::ScoreItem { col: &col, i: 0, series: "x" };
            let test_expr = crate::syntax::parse_expr(&text(&e, 1, score, anomalous).unwrap()).unwrap();
            let under_test = crate::expr::eval(&test_expr, &Run(&out));
            // The plan carries only conditions that resolve and type as a Bool; those that do
            // not are refused when the plan is made, and never reach the runtime.
            let resolved = crate::expr::resolve_text(&runtime_text, crate::types::Ty::Scores);
            let at_runtime = match resolved {
                Ok(cond) => {
                    let cond = Condition::new(Arc::new(cond));
                    let at_runtime = cond.eval(&item);
                    prop_assert!(same(&at_runtime, &under_test), "{runtime_text}: run time {at_runtime:?}, vigil test {under_test:?}");
                    prop_assert_eq!(cond.holds(&item), matches!(under_test, Ok(Val::Bool(true))));
                    at_runtime
                }
                Err(_) => under_test.clone(),
            };

            if let Some(folded_text) = text(&e, 2, score, anomalous) {
                let folded = crate::expr::fold(&crate::syntax::parse_expr(&folded_text).unwrap(), &|_| None).map(|v| Val::from_value(&v));
                prop_assert!(same(&at_runtime, &folded), "{runtime_text}: run time {at_runtime:?}, folded {folded:?}");
            }
        }
    }

    #[test]
    fn kleene_logic_in_expectations() {
        // `expected` is NaN in a fixture without it: comparing it is not known.
        let src = "pipeline p {\n  every 1s\n  collect raw = synthetic(seed: 7)\n  predict s = zscore(raw, window: 5m)\n  respond a = log(s)\n}\n";
        let plan = crate::compile_str("p.vigil", src).plan.expect("compiles");
        let p = plan.pipeline("p").expect("pipeline");
        let mut col = ScoreColumn::new(SeriesId::named("x"));
        col.push(0, 1.0, 0.9, f64::NAN, f64::NAN, f64::NAN, true);
        let mut data = vec![None; p.stages.len()];
        data[stage_index(p, "s").unwrap()] = Some(Data::Scores(Arc::new(ScoresData { series: vec![col] })));
        let out = Outputs { p, data, notes: Vec::new() };
        let eval = |t: &str| crate::expr::eval(&crate::syntax::parse_expr(t).unwrap(), &Run(&out)).unwrap().to_string();
        assert_eq!(eval("first(s.anomalous) or first(s.expected) > 1"), "true");
        assert_eq!(eval("not first(s.anomalous) and first(s.expected) > 1"), "false");
        assert_eq!(eval("first(s.expected) > 1 or false"), "null");
        assert_eq!(eval("not (first(s.expected) > 1)"), "null");
        assert_eq!(eval("count(s.score) + 1"), "2");
        assert_eq!(eval("first(s.series)"), "\"x\"");
    }
}
