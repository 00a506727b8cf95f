//! `vigil test`'s fixtures: the data a test gives a stage — `csv("file.csv")` or
//! `points([[ts, value], ...])` for Series and Scores, `events("alerts.csv")` for Events —
//! read and validated when the test is checked (E0702).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::data::{Data, ScoreColumn, ScoresData, SeriesColumn, SeriesData, SeriesId};
use crate::source::Span;
use crate::syntax::ast::{self, Expr, ExprKind, UnaryOp};

/// What a fixture feeds: a Series stage (`value`s) or a Scores stage (`score`s).
#[derive(Clone, Copy, PartialEq)]
pub enum Measure {
    Value,
    Score,
}

/// A Scores fixture's item is anomalous, when it has no `anomalous` column, from this
/// score up.
const FIXTURE_ANOMALOUS_FROM: f64 = 0.5;

/// A fixture: `csv("file.csv")` or `points([[ts, value], ...])`; for a Scores stage the
/// CSV has a `score` column (and may have `value` and `anomalous`) and the points are
/// `[ts, score]`.
pub fn fixture(e: &Expr, base: &Path, measure: Measure) -> Result<Data, (Span, String, String)> {
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
pub fn events_fixture(e: &Expr, base: &Path) -> Result<crate::data::EventsData, (Span, String, String)> {
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
