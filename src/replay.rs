//! `vigil replay`: feeds a CSV of `timestamp,value` rows through a pipeline in order,
//! causally, and writes `timestamp,value,anomaly_score` — one row per input row, in the
//! same order.
//!
//! The CSV replaces the pipeline's (single) collect stage. Respond stages do not run: a
//! replay never notifies anyone. The scores written are those of the pipeline's last
//! predict stage. Rows are fed in chunks through the same streaming operators the engine
//! uses, synchronously (no async machinery), so a replay is exactly as causal as live
//! operation: each point is scored only from state built from earlier points.
//!
//! Bad rows are decided per case, counted in the [`ReplayReport`], and never stop a replay:
//! - a row whose timestamp or value does not parse, or whose value is NaN or infinite, is
//!   not fed; its output row has score 0;
//! - a row older than the previous one is not fed (score 0); a row with the same timestamp
//!   as the previous one is not fed and gets the previous row's score;
//! - scores for a timestamp that a stage (such as `resample`) emits only after the chunk
//!   ends are 0 for the rows of that timestamp.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use crate::dag::{PipelinePlan, Plan};
use crate::data::{Data, SeriesColumn, SeriesData, SeriesId};
use crate::runtime::ops::BuildEnv;
use crate::runtime::{OpCtx, Step};
use crate::syntax::ast::StageKind;

/// Rows fed per chunk.
pub const CHUNK_ROWS: usize = 1 << 13;

/// The longest line read; longer ones are skipped as malformed (and written with score 0
/// and empty fields), so that a file without line breaks cannot exhaust memory.
pub const MAX_LINE: usize = 1 << 20;

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("stage `{key}`: {message}")]
    Stage { key: String, message: String },
}

/// What a replay did.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ReplayReport {
    pub pipeline: String,
    /// The predict stage whose scores were written.
    pub stage: String,
    pub rows: u64,
    pub malformed: u64,
    pub non_finite: u64,
    pub out_of_order: u64,
    pub duplicate: u64,
    /// Rows scored at or above the stage's anomaly threshold.
    pub anomalous: u64,
}

/// Picks the pipeline to replay: the named one, or the only one.
///
/// # Errors
/// When the name is unknown, or there are several pipelines and none was named.
pub fn pick_pipeline<'p>(plan: &'p Plan, name: Option<&str>) -> Result<&'p PipelinePlan, ReplayError> {
    let names = || plan.pipelines.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ");
    match name {
        Some(n) => plan.pipeline(n).ok_or_else(|| ReplayError::Usage(format!("no pipeline `{n}`; the file has: {}", names()))),
        None if plan.pipelines.len() == 1 => Ok(&plan.pipelines[0]),
        None if plan.pipelines.is_empty() => Err(ReplayError::Usage("the file has no pipeline".into())),
        None => Err(ReplayError::Usage(format!("the file has several pipelines; choose one with --pipeline: {}", names()))),
    }
}

/// Replays `input` through pipeline `p`, writing `output`.
///
/// # Errors
/// When the pipeline has no single collect stage or no predict stage, a stage cannot be
/// built or fails, or a file cannot be read or written.
pub fn replay(p: &PipelinePlan, base_dir: &Path, input: &Path, output: &Path) -> Result<ReplayReport, ReplayError> {
    let wr = std::fs::File::create(output).map_err(|source| ReplayError::Write { path: output.display().to_string(), source })?;
    let mut wr = BufWriter::with_capacity(1 << 20, wr);
    let report = replay_to(p, base_dir, input, &mut wr, &output.display().to_string())?;
    wr.flush().map_err(|source| ReplayError::Write { path: output.display().to_string(), source })?;
    Ok(report)
}

/// Replays `input` through pipeline `p`, writing the scores CSV to `wr` (`out_name` names
/// it in errors).
///
/// # Errors
/// As [`replay`].
pub fn replay_to(p: &PipelinePlan, base_dir: &Path, input: &Path, wr: impl Write, out_name: &str) -> Result<ReplayReport, ReplayError> {
    replay_with(p, base_dir, input, wr, out_name, std::sync::Arc::new(crate::respond::Responder::default()))
}

/// As [`replay_to`], with a responder of the caller's: its verdicts
/// ([`crate::respond::Responder::feedback`]) are what train and predict stages learn from,
/// as under `vigil run` (`vigil replay --feedback`).
///
/// # Errors
/// As [`replay`].
pub fn replay_with(
    p: &PipelinePlan,
    base_dir: &Path,
    input: &Path,
    mut wr: impl Write,
    out_name: &str,
    responder: std::sync::Arc<crate::respond::Responder>,
) -> Result<ReplayReport, ReplayError> {
    let collects: Vec<usize> = (0..p.stages.len()).filter(|&i| p.stages[i].kind == StageKind::Collect).collect();
    let [collect] = collects[..] else {
        return Err(ReplayError::Usage(format!(
            "pipeline `{}` has {} collect stages; replay feeds the CSV into exactly one",
            p.name,
            collects.len()
        )));
    };
    let target = (0..p.stages.len())
        .rev()
        .find(|&i| p.stages[i].kind == StageKind::Predict && p.stages[i].output == crate::types::Ty::Scores)
        .ok_or_else(|| ReplayError::Usage(format!("pipeline `{}` has no predict stage to take scores from", p.name)))?;
    // Only the stages the scores depend on run (no respond stage ever does).
    let mut needed = vec![false; p.stages.len()];
    needed[target] = true;
    for i in (0..=target).rev() {
        if needed[i] {
            for (_, j) in &p.stages[i].inputs {
                needed[*j] = true;
            }
        }
    }
    let env = BuildEnv::offline(&p.name, base_dir, responder);
    let mut steps: Vec<Option<Box<dyn crate::runtime::Operator>>> = Vec::with_capacity(p.stages.len());
    for (i, node) in p.stages.iter().enumerate() {
        if i == collect || !needed[i] {
            steps.push(None);
            continue;
        }
        match crate::operators::build(node, &env).map_err(|e| ReplayError::Stage { key: node.key.0.clone(), message: e.to_string() })? {
            Step::Op(op) => steps.push(Some(op)),
            Step::Source(_) => return Err(ReplayError::Usage(format!("stage `{}` is a source; replay feeds only one", node.key))),
        }
    }
    let rd = std::fs::File::open(input).map_err(|source| ReplayError::Read { path: input.display().to_string(), source })?;
    let mut rd = BufReader::with_capacity(1 << 20, rd);
    let werr = |source| ReplayError::Write { path: out_name.to_owned(), source };
    let rerr = |source| ReplayError::Read { path: input.display().to_string(), source };

    let mut header = String::new();
    rd.read_line(&mut header).map_err(rerr)?;
    let cols: Vec<&str> = header.trim_end_matches(['\n', '\r']).split(',').map(str::trim).collect();
    let (Some(ts_col), Some(v_col)) = (cols.iter().position(|c| *c == "timestamp"), cols.iter().position(|c| *c == "value")) else {
        return Err(ReplayError::Usage(format!(
            "`{}` must start with a `timestamp,value` header; it has `{}`",
            input.display(),
            header.trim()
        )));
    };
    writeln!(wr, "timestamp,value,anomaly_score").map_err(werr)?;

    let series_name = match p.stages[collect].params.get("value_columns") {
        Some(crate::value::Value::List(v)) => match v.first() {
            Some(crate::value::Value::Str(s)) => s.clone(),
            _ => "value".into(),
        },
        _ => "value".into(),
    };
    let id = SeriesId::named(series_name);
    let mut report = ReplayReport { pipeline: p.name.clone(), stage: p.stages[target].key.0.clone(), ..ReplayReport::default() };
    let mut last_ts = i64::MIN;
    let mut last_score = 0.0;
    // The chunk: raw lines, and for each its fed timestamp (or a marker).
    let mut lines: Vec<u8> = Vec::with_capacity(CHUNK_ROWS * 40);
    let mut spans: Vec<(usize, usize, usize, usize, Row)> = Vec::with_capacity(CHUNK_ROWS);
    let mut outputs: Vec<Option<Data>> = vec![None; p.stages.len()];
    let inputs: Vec<Vec<usize>> = p.stages.iter().map(|s| s.inputs.iter().map(|(_, j)| *j).collect()).collect();
    let mut out_buf: Vec<u8> = Vec::with_capacity(CHUNK_ROWS * 48);
    let mut eof = false;
    while !eof {
        lines.clear();
        spans.clear();
        let mut col = SeriesColumn::new(id.clone());
        while spans.len() < CHUNK_ROWS {
            let start = lines.len();
            let n = (&mut rd).take(MAX_LINE as u64).read_until(b'\n', &mut lines).map_err(rerr)?;
            if n == 0 {
                eof = true;
                break;
            }
            if n == MAX_LINE && lines.last() != Some(&b'\n') {
                // A line longer than any row: skip the rest of it, keep one output row.
                let mut rest = Vec::new();
                loop {
                    rest.clear();
                    let m = (&mut rd).take(MAX_LINE as u64).read_until(b'\n', &mut rest).map_err(rerr)?;
                    if m < MAX_LINE || rest.last() == Some(&b'\n') {
                        break;
                    }
                }
                lines.truncate(start);
                report.malformed += 1;
                spans.push((start, start, start, start, Row::Skipped));
                continue;
            }
            let mut end = lines.len();
            while end > start && (lines[end - 1] == b'\n' || lines[end - 1] == b'\r') {
                end -= 1;
            }
            if end == start {
                lines.truncate(start);
                continue;
            }
            let line = &lines[start..end];
            // The two fields, by position (fast path for `timestamp,value`).
            let (ts_field, v_field) = fields(line, ts_col, v_col);
            let row = match (
                ts_field.and_then(|f| crate::time::parse_timestamp_bytes(&line[f.0..f.1])),
                v_field.and_then(|f| fast_f64(&line[f.0..f.1])),
            ) {
                (Some(ts), Some(v)) if !v.is_finite() => {
                    report.non_finite += 1;
                    let _ = ts;
                    Row::Skipped
                }
                (Some(ts), Some(v)) => {
                    if ts < last_ts {
                        report.out_of_order += 1;
                        Row::Skipped
                    } else if ts == last_ts {
                        report.duplicate += 1;
                        Row::SameAsPrevious
                    } else {
                        last_ts = ts;
                        col.push(ts, v);
                        Row::Fed(col.len() - 1)
                    }
                }
                _ => {
                    report.malformed += 1;
                    Row::Skipped
                }
            };
            // Unreadable fields are written back empty.
            let (tf, vf) = (ts_field.unwrap_or((0, 0)), v_field.unwrap_or((0, 0)));
            spans.push((start + tf.0, start + tf.1, start + vf.0, start + vf.1, row));
        }
        if spans.is_empty() {
            break;
        }
        // Run the stages over the chunk.
        let now = col.ts.last().copied().unwrap_or(0);
        let fed = Arc::new(SeriesData { series: vec![col] });
        outputs[collect] = Some(Data::Series(fed.clone()));
        outputs.iter_mut().enumerate().filter(|(i, _)| *i != collect).for_each(|(_, o)| *o = None);
        crate::runtime::exec::run(&inputs, &mut outputs, |i, ins| match steps[i].as_mut() {
            Some(op) => crate::runtime::process_now(op.as_mut(), &ins, &mut OpCtx::new(now)).map(Some),
            None => Ok(None),
        })
        .map_err(|(i, e)| ReplayError::Stage { key: p.stages[i].key.0.clone(), message: e.to_string() })?;
        let fed_ts = &fed.series[0].ts;
        // Scores by fed row: 1:1 when the stage kept the timestamps, else by timestamp.
        let scores = match &outputs[target] {
            Some(Data::Scores(s)) => Some(s.clone()),
            _ => None,
        };
        let direct = scores.as_ref().and_then(|s| match &s.series[..] {
            [c] if c.ts == *fed_ts => Some(c),
            _ => None,
        });
        let by_ts: std::collections::HashMap<i64, (f64, bool)> = match (&scores, direct) {
            (Some(s), None) => s.series.iter().flat_map(|c| (0..c.len()).map(move |i| (c.ts[i], (c.score[i], c.anomalous[i])))).collect(),
            _ => Default::default(),
        };
        let score_of = |k: usize| -> (f64, bool) {
            match direct {
                Some(c) => (c.score[k], c.anomalous[k]),
                None => by_ts.get(&fed_ts[k]).copied().unwrap_or((0.0, false)),
            }
        };
        out_buf.clear();
        for (ts0, ts1, v0, v1, row) in &spans {
            let score = match row {
                Row::Fed(k) => {
                    let (s, a) = score_of(*k);
                    report.anomalous += a as u64;
                    last_score = s;
                    s
                }
                Row::SameAsPrevious => last_score,
                Row::Skipped => 0.0,
            };
            out_buf.extend_from_slice(&lines[*ts0..*ts1]);
            out_buf.push(b',');
            out_buf.extend_from_slice(&lines[*v0..*v1]);
            out_buf.push(b',');
            write_score(&mut out_buf, score).map_err(werr)?;
            report.rows += 1;
        }
        wr.write_all(&out_buf).map_err(werr)?;
        for o in outputs.iter_mut() {
            *o = None;
        }
    }
    wr.flush().map_err(werr)?;
    Ok(report)
}

#[derive(Clone, Copy, Debug)]
enum Row {
    Fed(usize),
    SameAsPrevious,
    Skipped,
}

type Field = Option<(usize, usize)>;

/// The byte ranges of two fields of a CSV line (no quoting: NAB files have none).
fn fields(line: &[u8], a: usize, b: usize) -> (Field, Field) {
    // The common case, `timestamp,value`: one comma, no padding.
    if (a, b) == (0, 1) {
        if let Some(c) = memchr::memchr(b',', line) {
            let plain = |s: &[u8]| s.first().is_some_and(|x| *x != b' ') && s.last().is_some_and(|x| *x != b' ');
            if !line[c + 1..].contains(&b',') && plain(&line[..c]) && plain(&line[c + 1..]) {
                return (Some((0, c)), Some((c + 1, line.len())));
            }
        }
    }
    let (mut fa, mut fb) = (None, None);
    let mut start = 0;
    let ends = memchr::memchr_iter(b',', line).chain(std::iter::once(line.len()));
    for (idx, end) in ends.enumerate() {
        let trim = |mut s: usize, mut e: usize| {
            while s < e && line[s] == b' ' {
                s += 1;
            }
            while e > s && line[e - 1] == b' ' {
                e -= 1;
            }
            (s, e)
        };
        if idx == a {
            fa = Some(trim(start, end));
        }
        if idx == b {
            fb = Some(trim(start, end));
        }
        if fa.is_some() && fb.is_some() || end == line.len() {
            break;
        }
        start = end + 1;
    }
    (fa, fb)
}

/// Parses a decimal number; plain `[-]digits[.digits]` without allocation, anything else
/// through the standard parser.
fn fast_f64(b: &[u8]) -> Option<f64> {
    let (neg, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        _ => (false, b),
    };
    let mut int: u64 = 0;
    let mut i = 0;
    while i < digits.len() && digits[i].is_ascii_digit() && i < 18 {
        int = int * 10 + (digits[i] - b'0') as u64;
        i += 1;
    }
    if i > 0 && i == digits.len() {
        let v = int as f64;
        return Some(if neg { -v } else { v });
    }
    if i > 0 && i < 16 && digits[i] == b'.' {
        let mut frac: u64 = 0;
        let mut scale = 1u64;
        let mut j = i + 1;
        while j < digits.len() && digits[j].is_ascii_digit() && scale < 1_000_000_000_000 {
            frac = frac * 10 + (digits[j] - b'0') as u64;
            scale *= 10;
            j += 1;
        }
        if j == digits.len() && j > i + 1 {
            let v = int as f64 + frac as f64 / scale as f64;
            return Some(if neg { -v } else { v });
        }
    }
    std::str::from_utf8(b).ok()?.trim().parse().ok()
}

/// Writes a score in [0, 1] with six decimals, without float formatting.
fn write_score(w: &mut impl Write, s: f64) -> std::io::Result<()> {
    let s = if s.is_finite() { s.clamp(0.0, 1.0) } else { 0.0 };
    let micro = (s * 1_000_000.0).round() as u32;
    let (int, frac) = (micro / 1_000_000, micro % 1_000_000);
    let mut buf = *b"0.000000\n";
    buf[0] = b'0' + int as u8;
    let mut f = frac;
    for k in (2..8).rev() {
        buf[k] = b'0' + (f % 10) as u8;
        f /= 10;
    }
    w.write_all(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_fast_and_exactly_enough() {
        for s in ["19.761251902999998", "0", "-3.5", "1e3", "12345678901234567890", "7.", "nan", "abc", ""] {
            let std: Option<f64> = s.parse().ok();
            let fast = fast_f64(s.as_bytes());
            match (std, fast) {
                (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-9 * a.abs().max(1.0) || (a.is_nan() && b.is_nan()), "{s}: {a} vs {b}"),
                (a, b) => assert_eq!(a.is_some(), b.is_some(), "{s}"),
            }
        }
    }

    #[test]
    fn scores_print_with_six_decimals() {
        let mut out = Vec::new();
        for s in [0.0, 0.5, 1.0, 0.1234567, f64::NAN, 2.0] {
            write_score(&mut out, s).unwrap();
        }
        assert_eq!(String::from_utf8(out).unwrap(), "0.000000\n0.500000\n1.000000\n0.123457\n0.000000\n1.000000\n");
    }
}
