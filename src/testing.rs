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
//! Tests are checked when compiled ([`check_tests`], `vigil check` too): an unknown
//! pipeline (E0701), a fixture that is missing or has bad rows (E0702), a collect stage
//! without a fixture (E0703), an expectation that reads something the run does not
//! produce (E0704), and unknown stages (E0202) are diagnostics with positions.
//!
//! What an expectation can read, per port type of the stage (see `docs/testing.md`):
//! - Series: `value`, `timestamp` (ms since the epoch); Events: `timestamp`, `status`;
//! - Scores: `score`, `value`, `anomalous`, `expected`, `lower`, `upper`, `timestamp`;
//! - respond stages: `opened` and `resolved` (incident keys, in order), `notifications`
//!   (their transitions: `firing`, `resolved`, ...), `subject` and `body` (rendered).
//!
//! Functions: `count(list)` (of a list of booleans: how many are true), `max`, `min`,
//! `mean`, `sum`, `first`, `last`, `any`, `all`, `contains(list or string, value)`,
//! `precision(scores, windows: [[start, end], ...])` and `recall(scores, windows: ...)`
//! (anomalous samples inside labelled windows; windows with at least one anomalous
//! sample). Comparisons, arithmetic, `and`, `or` and `not` work as in conditions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::data::{Data, ScoreColumn, ScoresData, SeriesColumn, SeriesData, SeriesId};
use crate::diagnostic::{suggest, Code, Diagnostic};
use crate::plan::{PipelinePlan, Plan};
use crate::runtime::ops::BuildEnv;
use crate::runtime::{OpCtx, Step};
use crate::source::{SourceMap, Span};
use crate::stages::Ty;
use crate::syntax::ast::{self, BinaryOp, Expr, ExprKind, StageKind, TestStmt, UnaryOp};

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
const FUNCTIONS: &[&str] = &["count", "max", "min", "mean", "sum", "first", "last", "any", "all", "contains", "precision", "recall"];

/// The fields a stage of this output type offers.
fn fields_of(ty: Ty, kind: StageKind) -> &'static [&'static str] {
    match (ty, kind) {
        (Ty::Series, _) => &["value", "timestamp"],
        (Ty::Events, _) => &["timestamp", "status"],
        // The numeric and boolean fields of Scores (their one list is `Ty::fields`).
        (Ty::Scores, _) => {
            static SCORES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
            SCORES.get_or_init(|| {
                Ty::Scores.fields().iter().filter(|(_, t)| matches!(t, Ty::Float | Ty::Int | Ty::Bool)).map(|(n, _)| *n).collect()
            })
        }
        (_, StageKind::Respond) | (Ty::Incidents, _) => &["opened", "resolved", "notifications", "subject", "body"],
        _ => &[],
    }
}

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
fn stage_index(p: &PipelinePlan, name: &str) -> Option<usize> {
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

/// What a fixture feeds: a Series stage (`value`s) or a Scores stage (`score`s).
#[derive(Clone, Copy, PartialEq)]
enum Measure {
    Value,
    Score,
}

/// A Scores fixture's item is anomalous, when it has no `anomalous` column, from this
/// score up.
const FIXTURE_ANOMALOUS_FROM: f64 = 0.5;

/// A fixture: `csv("file.csv")` or `points([[ts, value], ...])`; for a Scores stage the
/// CSV has a `score` column (and may have `value` and `anomalous`) and the points are
/// `[ts, score]`.
fn fixture(e: &Expr, base: &Path, measure: Measure) -> Result<Data, (Span, String, String)> {
    let (column, example) = match measure {
        Measure::Value => ("value", "1.5"),
        Measure::Score => ("score", "0.97"),
    };
    let bad = |span: Span, label: String| {
        (span, label, format!("write `csv(\"file.csv\")` (relative to this file) or `points([[\"2024-01-01 00:00:00\", {example}], ...])`"))
    };
    let ExprKind::Call { callee, args } = &e.kind else { return Err(bad(e.span, "not a fixture".into())) };
    let ExprKind::Name(f) = &callee.kind else { return Err(bad(callee.span, "not a fixture".into())) };
    let (positional, named): (Vec<&ast::Arg>, Vec<&ast::Arg>) = args.iter().partition(|a| a.name.is_none());
    let [arg] = &positional[..] else { return Err(bad(e.span, format!("`{f}` takes one fixture, and `labels:`"))) };
    let mut labels: Vec<(String, String)> = Vec::new();
    for a in named {
        let name = a.name.as_ref().map(|n| n.node.as_str()).unwrap_or_default();
        match (name, &a.value.kind) {
            ("labels", ExprKind::Map(entries)) => {
                for (k, v) in entries {
                    let ExprKind::Str(v) = &v.kind else { return Err(bad(v.span, "label values are strings".into())) };
                    labels.push((k.node.clone(), v.value.clone()));
                }
            }
            _ => return Err(bad(a.value.span, format!("`{name}`: a fixture takes `labels: {{ name: \"value\" }}`"))),
        }
    }
    labels.sort();
    // Each row: time, the measure, and for scores the optional value and anomalous flag.
    let mut rows: Vec<(i64, f64, Option<f64>, Option<bool>)> = Vec::new();
    let mut push = |row: (i64, f64, Option<f64>, Option<bool>), span: Span, what: String| -> Result<(), (Span, String, String)> {
        if !row.1.is_finite() {
            return Err((span, format!("{what}: the {column} is not a finite number"), "fix or remove the row".into()));
        }
        if row.2.is_some_and(|v| !v.is_finite()) {
            return Err((span, format!("{what}: the value is not a finite number"), "fix or remove the row".into()));
        }
        if measure == Measure::Score && !(0.0..=1.0).contains(&row.1) {
            return Err((span, format!("{what}: the score {} is outside [0, 1]", row.1), "scores are between 0 and 1".into()));
        }
        if rows.last().is_some_and(|last| row.0 <= last.0) {
            return Err((span, format!("{what}: not after the previous row"), "put the rows in increasing time".into()));
        }
        rows.push(row);
        Ok(())
    };
    match f.as_str() {
        "csv" => {
            let ExprKind::Str(path) = &arg.value.kind else { return Err(bad(arg.value.span, "the file name must be a string".into())) };
            let full = if Path::new(&path.value).is_absolute() { PathBuf::from(&path.value) } else { base.join(&path.value) };
            let text = std::fs::read_to_string(&full).map(|t| t.trim_start_matches('\u{feff}').to_owned()).map_err(|e| {
                (arg.value.span, format!("cannot read `{}`: {e}", full.display()), "paths are relative to the test's file".to_owned())
            })?;
            let mut lines = text.lines().enumerate();
            let header = lines.next().map(|(_, h)| h.trim()).unwrap_or_default();
            let cols: Vec<&str> = header.split(',').map(str::trim).collect();
            let at = |name: &str| cols.iter().position(|c| *c == name);
            let (Some(tc), Some(mc)) = (at("timestamp"), at(column)) else {
                return Err((
                    arg.value.span,
                    format!("`{}` has no `timestamp,{column}` header", path.value),
                    format!("start the file with `timestamp,{column}`"),
                ));
            };
            let (vc, ac) = if measure == Measure::Score { (at("value"), at("anomalous")) } else { (None, None) };
            for (n, line) in lines {
                if line.trim().is_empty() {
                    continue;
                }
                let fields: Vec<&str> = line.split(',').map(str::trim).collect();
                let what = format!("`{}` row {}", path.value, n + 1);
                let num = |c: usize| fields.get(c).and_then(|v| v.parse::<f64>().ok());
                let ts = fields.get(tc).and_then(|t| crate::time::parse_timestamp(t));
                let value = vc.map(num);
                let anomalous = ac.map(|c| match fields.get(c).map(|f| f.to_ascii_lowercase()).as_deref() {
                    Some("true" | "1") => Some(true),
                    Some("false" | "0") => Some(false),
                    _ => None,
                });
                match (ts, num(mc), value, anomalous) {
                    (Some(ts), Some(m), None | Some(Some(_)), None | Some(Some(_))) => {
                        push((ts, m, value.flatten(), anomalous.flatten()), arg.value.span, what)?
                    }
                    _ => return Err((arg.value.span, format!("{what} is not `{header}`: `{line}`"), "fix or remove the row".into())),
                }
            }
        }
        "points" => {
            let ExprKind::List(points) = &arg.value.kind else {
                return Err(bad(arg.value.span, format!("`points` takes a list of [timestamp, {column}]")));
            };
            for (n, row) in points.iter().enumerate() {
                let what = format!("point {}", n + 1);
                let ExprKind::List(pair) = &row.kind else { return Err(bad(row.span, format!("{what} is not [timestamp, {column}]"))) };
                let ts = match pair.first().map(|e| &e.kind) {
                    Some(ExprKind::Str(s)) => crate::time::parse_timestamp(&s.value),
                    Some(ExprKind::Int(i)) => Some(*i),
                    _ => None,
                };
                let v = match pair.get(1).map(|e| &e.kind) {
                    Some(ExprKind::Int(i)) => Some(*i as f64),
                    Some(ExprKind::Float(f)) => Some(*f),
                    Some(ExprKind::Unary(UnaryOp::Neg, inner)) => match &inner.kind {
                        ExprKind::Int(i) => Some(-(*i as f64)),
                        ExprKind::Float(f) => Some(-f),
                        _ => None,
                    },
                    _ => None,
                };
                match (ts, v, pair.len()) {
                    (Some(ts), Some(v), 2) => push((ts, v, None, None), row.span, what)?,
                    _ => return Err(bad(row.span, format!("{what} is not [\"timestamp\", number]"))),
                }
            }
        }
        other => return Err(bad(callee.span, format!("`{other}` is not a fixture"))),
    }
    let id = SeriesId::new(column, labels);
    Ok(match measure {
        Measure::Value => {
            let mut col = SeriesColumn::new(id);
            for (ts, v, _, _) in rows {
                col.push(ts, v);
            }
            Data::Series(Arc::new(SeriesData { series: vec![col] }))
        }
        Measure::Score => {
            let mut col = ScoreColumn::new(id);
            for (ts, score, value, anomalous) in rows {
                let anomalous = anomalous.unwrap_or(score >= FIXTURE_ANOMALOUS_FROM);
                col.push(ts, value.unwrap_or(f64::NAN), score, f64::NAN, f64::NAN, f64::NAN, anomalous);
            }
            Data::Scores(Arc::new(ScoresData { series: vec![col] }))
        }
    })
}

/// An Events fixture: `events("alerts.csv")`, a CSV whose `timestamp` column is the time,
/// `status` (optional) the alert status, and every other column a label (empty: absent).
fn events_fixture(e: &Expr, base: &Path) -> Result<crate::data::EventsData, (Span, String, String)> {
    let help = || "write `events(\"alerts.csv\")`: a `timestamp,<label>,...` CSV, one event a row".to_owned();
    let ExprKind::Call { args, .. } = &e.kind else { return Err((e.span, "not a fixture".into(), help())) };
    let [arg] = &args[..] else { return Err((e.span, "`events` takes one file".into(), help())) };
    let ExprKind::Str(path) = &arg.value.kind else { return Err((arg.value.span, "the file name must be a string".into(), help())) };
    let full = if Path::new(&path.value).is_absolute() { PathBuf::from(&path.value) } else { base.join(&path.value) };
    let text = std::fs::read_to_string(&full).map(|t| t.trim_start_matches('\u{feff}').to_owned()).map_err(|err| {
        (arg.value.span, format!("cannot read `{}`: {err}", full.display()), "paths are relative to the test's file".to_owned())
    })?;
    let mut lines = text.lines().enumerate();
    let cols: Vec<&str> = lines.next().map(|(_, h)| h.split(',').map(str::trim).collect()).unwrap_or_default();
    let Some(tc) = cols.iter().position(|c| *c == "timestamp") else {
        return Err((arg.value.span, format!("`{}` has no `timestamp` column", path.value), help()));
    };
    let mut out = crate::data::EventsData::default();
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let bad = |why: &str| (arg.value.span, format!("`{}` row {}: {why}", path.value, n + 1), "fix or remove the row".to_owned());
        if fields.len() != cols.len() {
            return Err(bad(&format!("{} fields, the header has {}", fields.len(), cols.len())));
        }
        let ts = crate::time::parse_timestamp(fields[tc]).ok_or_else(|| bad("the timestamp does not parse"))?;
        if out.events.last().is_some_and(|l| ts < l.ts) {
            return Err(bad("earlier than the row before"));
        }
        let mut ev = crate::data::Event {
            ts,
            labels: Default::default(),
            annotations: Default::default(),
            status: "firing".into(),
            fingerprint: String::new(),
        };
        for (c, v) in cols.iter().zip(&fields) {
            match *c {
                "timestamp" => {}
                "status" if !v.is_empty() => ev.status = (*v).to_owned(),
                "status" => {}
                _ if v.is_empty() => {}
                _ => {
                    ev.labels.insert((*c).to_owned(), (*v).to_owned());
                }
            }
        }
        out.events.push(ev);
    }
    Ok(out)
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

// ---------------------------------------------------------------------------------------
// Running

/// A value an expectation computes with.
#[derive(Clone, Debug, PartialEq)]
pub enum V {
    Num(f64),
    Bool(bool),
    Str(String),
    List(Vec<V>),
}

impl std::fmt::Display for V {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            V::Num(n) => write!(f, "{n}"),
            V::Bool(b) => write!(f, "{b}"),
            V::Str(s) => write!(f, "{s:?}"),
            V::List(l) if l.len() > 8 => {
                write!(f, "[{}, ... {} more]", l[..8].iter().map(ToString::to_string).collect::<Vec<_>>().join(", "), l.len() - 8)
            }
            V::List(l) => write!(f, "[{}]", l.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
        }
    }
}

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
            for x in &t.expects {
                match eval(&x.cond, &out) {
                    Ok(V::Bool(true)) => {}
                    Ok(v) => result.failures.push(Failure {
                        location: x.location.clone(),
                        expected: x.text.clone(),
                        actual: explain(&x.cond, &out, &v),
                    }),
                    Err(e) => result.failures.push(Failure { location: x.location.clone(), expected: x.text.clone(), actual: e }),
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

impl Outputs<'_> {
    fn field(&self, stage: &str, field: &str) -> Result<V, String> {
        let i = stage_index(self.p, stage).ok_or_else(|| format!("no stage `{stage}`"))?;
        let nums = |v: &[f64]| V::List(v.iter().map(|x| V::Num(*x)).collect());
        let key = &self.p.stages[i].key.0;
        Ok(match (&self.data[i], field) {
            (None, _) => V::List(Vec::new()),
            (Some(Data::Series(s)), "value") => nums(&s.series.iter().flat_map(|c| c.values.iter().copied()).collect::<Vec<_>>()),
            (Some(Data::Series(s)), "timestamp") => V::List(s.series.iter().flat_map(|c| c.ts.iter().map(|t| V::Num(*t as f64))).collect()),
            (Some(Data::Events(e)), "timestamp") => V::List(e.events.iter().map(|e| V::Num(e.ts as f64)).collect()),
            (Some(Data::Events(e)), "status") => V::List(e.events.iter().map(|e| V::Str(e.status.clone())).collect()),
            (Some(Data::Scores(s)), f) => {
                let mut out = Vec::new();
                for c in &s.series {
                    for k in 0..c.len() {
                        out.push(match c.field(k, f) {
                            Some(crate::data::ScoreField::Num(x)) => V::Num(x),
                            Some(crate::data::ScoreField::Bool(b)) => V::Bool(b),
                            _ => return Err(format!("Scores have no field `{f}` an expectation can read")),
                        });
                    }
                }
                V::List(out)
            }
            (Some(Data::Incidents(inc)), "opened" | "resolved") => {
                let want = if field == "opened" { "firing" } else { "resolved" };
                V::List(inc.updates.iter().filter(|u| u.status == want).map(|u| V::Str(u.key.clone())).collect())
            }
            (Some(Data::Incidents(_)), "notifications" | "subject" | "body") => V::List(
                self.notes
                    .iter()
                    .filter(|n| n.stage == *key)
                    .map(|n| {
                        V::Str(match field {
                            "notifications" => n.transition.clone(),
                            "subject" => n.subject.clone(),
                            _ => n.body.clone(),
                        })
                    })
                    .collect(),
            ),
            (Some(other), f) => return Err(format!("{} has no field `{f}`", other.kind())),
        })
    }

    /// (precision, recall) of a Scores stage's anomalous flags against windows.
    fn quality(&self, stage: &str, windows: &V) -> Result<(f64, f64), String> {
        let i = stage_index(self.p, stage).ok_or_else(|| format!("no stage `{stage}`"))?;
        let V::List(ws) = windows else { return Err("`windows` must be a list of [start, end]".into()) };
        let mut spans = Vec::new();
        for w in ws {
            let ts = |v: &V| match v {
                V::Str(s) => crate::time::parse_timestamp(s),
                V::Num(n) => Some(*n as i64),
                _ => None,
            };
            match w {
                V::List(pair) if pair.len() == 2 => match (ts(&pair[0]), ts(&pair[1])) {
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

fn eval(e: &Expr, out: &Outputs<'_>) -> Result<V, String> {
    Ok(match &e.kind {
        ExprKind::Int(i) => V::Num(*i as f64),
        ExprKind::Float(f) => V::Num(*f),
        ExprKind::Duration(d) => V::Num(d.millis as f64),
        ExprKind::Str(s) => V::Str(s.value.clone()),
        ExprKind::Bool(b) => V::Bool(*b),
        ExprKind::List(items) => V::List(items.iter().map(|i| eval(i, out)).collect::<Result<_, _>>()?),
        ExprKind::Field(inner, field) => match &inner.kind {
            ExprKind::Name(stage) => out.field(stage, &field.node)?,
            _ => return Err("not `stage.field`".into()),
        },
        ExprKind::Unary(UnaryOp::Not, inner) => match eval(inner, out)? {
            V::Bool(b) => V::Bool(!b),
            v => return Err(format!("`not` of {v}")),
        },
        ExprKind::Unary(UnaryOp::Neg, inner) => match eval(inner, out)? {
            V::Num(n) => V::Num(-n),
            v => return Err(format!("`-` of {v}")),
        },
        // `and` / `or` stop at the left side when it decides.
        ExprKind::Binary(op @ (BinaryOp::And | BinaryOp::Or), a, b) => match eval(a, out)? {
            V::Bool(left) => {
                // The language's one rule for `and` / `or` (an expectation's values are
                // always known, or an error).
                let mut right_err = None;
                let r = crate::value::logic(*op == BinaryOp::And, Some(left), || match eval(b, out) {
                    Ok(V::Bool(r)) => Some(r),
                    Ok(v) => {
                        right_err = Some(format!("`{}` of {v}", if *op == BinaryOp::And { "and" } else { "or" }));
                        None
                    }
                    Err(e) => {
                        right_err = Some(e);
                        None
                    }
                });
                match (r, right_err) {
                    (Some(b), _) => V::Bool(b),
                    (None, Some(e)) => return Err(e),
                    (None, None) => return Err("an unknown value".into()),
                }
            }
            left => binary(*op, left, eval(b, out)?)?,
        },
        ExprKind::Binary(op, a, b) => binary(*op, eval(a, out)?, eval(b, out)?)?,
        ExprKind::Call { callee, args } => {
            let ExprKind::Name(f) = &callee.kind else { return Err("not a function".into()) };
            if matches!(f.as_str(), "precision" | "recall") {
                let Some(ExprKind::Name(stage)) = args.first().map(|a| &a.value.kind) else {
                    return Err(format!("`{f}` takes a Scores stage"));
                };
                let windows = args.iter().find(|a| a.name.as_ref().is_some_and(|n| n.node == "windows")).ok_or("no `windows`")?;
                let (precision, recall) = out.quality(stage, &eval(&windows.value, out)?)?;
                return Ok(V::Num(if f == "precision" { precision } else { recall }));
            }
            let vals: Vec<V> = args.iter().map(|a| eval(&a.value, out)).collect::<Result<_, _>>()?;
            call(f, vals)?
        }
        _ => return Err("not allowed in an expectation".into()),
    })
}

fn nums(v: &V, f: &str) -> Result<Vec<f64>, String> {
    match v {
        V::List(l) => l
            .iter()
            .map(|x| match x {
                V::Num(n) => Ok(*n),
                V::Bool(b) => Ok(f64::from(u8::from(*b))),
                other => Err(format!("`{f}` of a list holding {other}")),
            })
            .collect(),
        other => Err(format!("`{f}` takes a list, not {other}")),
    }
}

fn call(f: &str, args: Vec<V>) -> Result<V, String> {
    let one = || args.first().cloned().ok_or_else(|| format!("`{f}` takes an argument"));
    Ok(match f {
        "count" => match one()? {
            V::List(l) if l.iter().all(|x| matches!(x, V::Bool(_))) && !l.is_empty() => {
                V::Num(l.iter().filter(|x| **x == V::Bool(true)).count() as f64)
            }
            V::List(l) => V::Num(l.len() as f64),
            V::Str(s) => V::Num(s.chars().count() as f64),
            v => return Err(format!("`count` of {v}")),
        },
        "max" | "min" | "mean" | "sum" => {
            let xs: Vec<f64> = nums(&one()?, f)?.into_iter().filter(|x| !x.is_nan()).collect();
            V::Num(match f {
                "max" => xs.iter().copied().fold(f64::NAN, f64::max),
                "min" => xs.iter().copied().fold(f64::NAN, f64::min),
                "sum" => xs.iter().sum(),
                _ if xs.is_empty() => f64::NAN,
                _ => xs.iter().sum::<f64>() / xs.len() as f64,
            })
        }
        "first" | "last" => match one()? {
            V::List(l) => {
                let x = if f == "first" { l.first() } else { l.last() };
                x.cloned().ok_or_else(|| format!("`{f}` of an empty list"))?
            }
            v => return Err(format!("`{f}` takes a list, not {v}")),
        },
        "any" | "all" => {
            let xs = nums(&one()?, f)?;
            V::Bool(if f == "any" { xs.iter().any(|x| *x != 0.0) } else { xs.iter().all(|x| *x != 0.0) })
        }
        "contains" => match (args.first(), args.get(1)) {
            (Some(V::Str(hay)), Some(V::Str(needle))) => V::Bool(hay.contains(needle.as_str())),
            (Some(V::List(l)), Some(x)) => V::Bool(l.contains(x)),
            _ => return Err("`contains(list or string, value)`".into()),
        },
        other => return Err(format!("unknown function `{other}`")),
    })
}

fn binary(op: BinaryOp, a: V, b: V) -> Result<V, String> {
    use BinaryOp::*;
    Ok(match (op, &a, &b) {
        (And, V::Bool(x), V::Bool(y)) => V::Bool(*x && *y),
        (Or, V::Bool(x), V::Bool(y)) => V::Bool(*x || *y),
        (Eq, _, _) => V::Bool(a == b),
        (Ne, _, _) => V::Bool(a != b),
        (Lt | Le | Gt | Ge, V::Num(x), V::Num(y)) => V::Bool(match op {
            Lt => x < y,
            Le => x <= y,
            Gt => x > y,
            _ => x >= y,
        }),
        (Lt | Le | Gt | Ge, V::Str(x), V::Str(y)) => V::Bool(match op {
            Lt => x < y,
            Le => x <= y,
            Gt => x > y,
            _ => x >= y,
        }),
        (Add, V::Num(x), V::Num(y)) => V::Num(x + y),
        (Sub, V::Num(x), V::Num(y)) => V::Num(x - y),
        (Mul, V::Num(x), V::Num(y)) => V::Num(x * y),
        (Div, V::Num(x), V::Num(y)) => V::Num(x / y),
        (Rem, V::Num(x), V::Num(y)) => V::Num(x % y),
        _ => return Err(format!("cannot apply `{}` to {a} and {b}", op.as_str())),
    })
}

/// What a failed expectation found: the values of both sides of a comparison (or of
/// each part of an `and`), else the value of the whole.
fn explain(e: &Expr, out: &Outputs<'_>, whole: &V) -> String {
    match &e.kind {
        ExprKind::Binary(op @ (BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge), a, b) => {
            let show = |x: &Expr| eval(x, out).map_or_else(|e| format!("error: {e}"), |v| v.to_string());
            format!("left: {}\nright: {}\n(`{}` does not hold)", show(a), show(b), op.as_str())
        }
        ExprKind::Binary(BinaryOp::And, a, b) => {
            let part = |x: &Expr| match eval(x, out) {
                Ok(V::Bool(true)) => None,
                Ok(v) => Some(explain(x, out, &v)),
                Err(e) => Some(e),
            };
            part(a).or_else(|| part(b)).unwrap_or_else(|| whole.to_string())
        }
        ExprKind::Call { callee, args } if matches!(&callee.kind, ExprKind::Name(f) if f == "contains") && args.len() == 2 => {
            let show = |x: &Expr| eval(x, out).map_or_else(|e| format!("error: {e}"), |v| v.to_string());
            format!(
                "in: {}
looked for: {}
(not found)",
                show(&args[0].value),
                show(&args[1].value)
            )
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
